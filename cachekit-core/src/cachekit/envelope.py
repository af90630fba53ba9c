"""The stored envelope: what every L2 backend holds for one cached value.

Layout (version 1, all integers big-endian)::

    0   2  magic  b"CK"
    2   1  format version (1)
    3   1  flags: 0x01 compressed (zlib), 0x02 encrypted, 0x04 signed, 0x08 expires
    4   4  CRC-32 of bytes 0-3 followed by every byte from offset 8 to the end
    8   1  length n of the serializer id, then n bytes of ASCII id
    .   8  [expires] when the backend drops the entry, ms since the epoch (wall clock)
    .   1  [encrypted] length m of the key id, then m bytes of ASCII key id
    .  32  [signed] HMAC-SHA256 tag
    .   *  payload (serializer output; compressed, then encrypted, when flagged)

:func:`open_envelope` raises :class:`~cachekit.errors.EnvelopeError` for anything
that is not an intact envelope written for this key and serializer: wrong magic,
unknown version or flags, CRC mismatch, truncation, another serializer id, a
payload that needs authentication but carries none. The decorator turns every
such error into a cache miss. Authentication (signature or AEAD tag) is checked
before anything reaches a serializer, so unauthenticated pickle is never loaded.

The signature and the encryption AAD both cover the format version, the flags,
the serializer id, the expiry, the key id and the full backend key: an envelope copied to
another key, or relabelled as another serializer, fails authentication.
"""

from __future__ import annotations

import zlib
from collections import namedtuple

from cachekit.errors import DecryptionError, EnvelopeError, IntegrityError

# Not typing.TYPE_CHECKING: importing typing costs `import cachekit` about 7 ms.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any, NamedTuple

    from cachekit.protocols import Encryptor
    from cachekit.signing import Signer

__all__ = [
    "DEFAULT_MAX_SIZE",
    "FLAG_COMPRESSED",
    "FLAG_ENCRYPTED",
    "FLAG_EXPIRES",
    "FLAG_SIGNED",
    "MAGIC",
    "VERSION",
    "Header",
    "open_encrypted",
    "open_envelope",
    "unseal",
    "read_header",
    "seal",
]

MAGIC = b"CK"
VERSION = 1
FLAG_COMPRESSED = 0x01
FLAG_ENCRYPTED = 0x02
FLAG_SIGNED = 0x04
FLAG_EXPIRES = 0x08
_KNOWN_FLAGS = FLAG_COMPRESSED | FLAG_ENCRYPTED | FLAG_SIGNED | FLAG_EXPIRES
_SIG_SIZE = 32
#: Largest payload :func:`open_envelope` inflates from a compressed envelope (512 MiB).
DEFAULT_MAX_SIZE = 512 * 1024 * 1024
_crc32 = zlib.crc32


if TYPE_CHECKING:

    class _HeaderFields(NamedTuple):
        version: int
        flags: int
        serializer: str
        key_id: str
        signature: bytes
        payload_offset: int
        expires_ms: int | None = None  # wall-clock ms since the epoch; None = not recorded

else:
    # The same tuple, built without importing typing at run time.
    _HeaderFields = namedtuple(
        "_HeaderFields",
        "version flags serializer key_id signature payload_offset expires_ms",
        defaults=(None,),
    )


class Header(_HeaderFields):
    """The fixed part of an envelope, as :func:`read_header` parsed it."""

    __slots__ = ()

    @property
    def expires_at(self) -> float | None:
        """When the writer's backend drops the entry (wall-clock seconds), if known."""
        return None if self.expires_ms is None else self.expires_ms / 1000.0


def _ascii_id(value: str, what: str) -> bytes:
    raw = value.encode("ascii")
    if not 0 < len(raw) < 256:
        raise ValueError(f"{what} must be 1-255 ASCII characters")
    return bytes([len(raw)]) + raw


def _decode_id(raw: bytes, what: str) -> str:
    # Ids are ASCII by construction (_ascii_id); anything else is corruption, and
    # must not surface later as a UnicodeEncodeError while building the context.
    try:
        return raw.decode("ascii")
    except UnicodeDecodeError:
        raise EnvelopeError(f"envelope {what} is not ASCII (corrupted)") from None


def _context(flags: int, serializer: str, key_id: str, key: str, expires: bytes = b"") -> bytes:
    """What the signature and the AAD cover besides the payload."""
    return b"\x00".join(
        (
            b"cachekit-envelope",
            bytes([VERSION, flags]),
            serializer.encode("ascii"),
            key_id.encode("ascii"),
            key.encode("utf-8", "surrogatepass"),
            expires,
        )
    )


def seal(
    payload: bytes,
    *,
    serializer: str,
    key: str,
    encryptor: Encryptor | None = None,
    signer: Signer | None = None,
    compress: bool = False,
    expires_at: float | None = None,
) -> bytes:
    """Wrap serializer output for storage under backend key ``key``.

    ``expires_at`` (wall-clock seconds) records when the backend will drop the
    entry, so a reader that copies it into L1 never keeps it longer.
    """
    if type(payload) is not bytes:
        payload = bytes(payload)  # a serializer's bytearray or memoryview
    flags = 0
    expires = b""
    if expires_at is not None:
        flags |= FLAG_EXPIRES
        expires = int(expires_at * 1000).to_bytes(8, "big")
    if compress:
        packed = zlib.compress(payload, 1)
        if len(packed) < len(payload):
            payload = packed
            flags |= FLAG_COMPRESSED
    key_id = ""
    if encryptor is not None:
        flags |= FLAG_ENCRYPTED
        key_id = encryptor.key_id
    elif signer is not None:
        flags |= FLAG_SIGNED
    ctx = _context(flags, serializer, key_id, key, expires)
    parts = [_ascii_id(serializer, "serializer id"), expires]
    if encryptor is not None:
        parts.append(_ascii_id(key_id, "key id"))
        payload = encryptor.encrypt(payload, ctx)
    elif signer is not None:
        parts.append(signer.sign(ctx + payload))
    parts.append(payload)
    body = b"".join(parts)
    head = MAGIC + bytes([VERSION, flags])
    return head + _crc32(body, _crc32(head)).to_bytes(4, "big") + body


def read_header(blob: bytes) -> Header:
    """Parse and check the fixed part of an envelope (no authentication)."""
    if not isinstance(blob, (bytes, bytearray, memoryview)):
        raise EnvelopeError(f"stored value is {type(blob).__name__}, not bytes")
    blob = bytes(blob)
    if len(blob) < 10 or blob[:2] != MAGIC:
        raise EnvelopeError("not a cachekit envelope (bad magic or too short)")
    version, flags = blob[2], blob[3]
    if version != VERSION:
        raise EnvelopeError(f"unsupported envelope version {version}")
    if flags & ~_KNOWN_FLAGS or (flags & FLAG_ENCRYPTED and flags & FLAG_SIGNED):
        raise EnvelopeError(f"unknown envelope flags 0x{flags:02x}")
    # The checksum covers the flags too: a flipped "compressed" bit must not pass.
    if int.from_bytes(blob[4:8], "big") != _crc32(memoryview(blob)[8:], _crc32(blob[:4])):
        raise EnvelopeError("envelope checksum mismatch (corrupted or truncated)")
    pos = 8
    n = blob[pos]
    serializer_raw = blob[pos + 1 : pos + 1 + n]
    pos += 1 + n
    expires_ms = None
    if flags & FLAG_EXPIRES:
        raw_expiry = blob[pos : pos + 8]
        if len(raw_expiry) != 8:
            raise EnvelopeError("envelope truncated in expiry")
        expires_ms = int.from_bytes(raw_expiry, "big")
        pos += 8
    key_id = ""
    signature = b""
    if flags & FLAG_ENCRYPTED:
        if pos >= len(blob):
            raise EnvelopeError("envelope truncated in key id")
        m = blob[pos]
        kid_raw = blob[pos + 1 : pos + 1 + m]
        if len(kid_raw) != m or m == 0:
            raise EnvelopeError("envelope truncated in key id")
        key_id = _decode_id(kid_raw, "key id")
        pos += 1 + m
    elif flags & FLAG_SIGNED:
        signature = blob[pos : pos + _SIG_SIZE]
        if len(signature) != _SIG_SIZE:
            raise EnvelopeError("envelope truncated in signature")
        pos += _SIG_SIZE
    if len(serializer_raw) != n or n == 0 or pos > len(blob):
        raise EnvelopeError("envelope truncated in header")
    return Header(
        version,
        flags,
        _decode_id(serializer_raw, "serializer id"),
        key_id,
        signature,
        pos,
        expires_ms,
    )


_PLAIN_IDS: dict[str, bytes] = {}


def _serializer_id(serializer: str) -> bytes:
    """The length-prefixed id of ``serializer`` as the envelope stores it (memoized)."""
    sid = _PLAIN_IDS[serializer] = _ascii_id(serializer, "serializer id")
    return sid


_HEAD_EXPIRES = MAGIC + bytes([VERSION, FLAG_EXPIRES])
_HEAD_PLAIN = MAGIC + bytes([VERSION, 0])
_CRC_EXPIRES = _crc32(_HEAD_EXPIRES)
_CRC_PLAIN = _crc32(_HEAD_PLAIN)


def seal_plain(
    payload: bytes | bytearray | memoryview, serializer: str, expires_at: float | None
) -> bytes:
    """:func:`seal` without compression, encryption or signing (same bytes, less work).

    The payload is copied once, into the envelope (a large payload is not first
    joined to its header and then copied again).
    """
    sid = _PLAIN_IDS.get(serializer) or _serializer_id(serializer)
    if expires_at is None:
        crc = _crc32(payload, _crc32(sid, _CRC_PLAIN))
        return b"".join((_HEAD_PLAIN, crc.to_bytes(4, "big"), sid, payload))
    expires = int(expires_at * 1000).to_bytes(8, "big")
    crc = _crc32(payload, _crc32(expires, _crc32(sid, _CRC_EXPIRES)))
    return b"".join((_HEAD_EXPIRES, crc.to_bytes(4, "big"), sid, expires, payload))


def open_plain(blob: bytes, serializer: str) -> tuple[bytes, float | None] | None:
    """(payload, expires_at) of an unencrypted, unsigned, uncompressed envelope written
    by ``serializer``; None for anything else (then :func:`unseal` decides).

    The fast path of a read without encryption or signing: the same checks as
    :func:`read_header` (magic, version, flags, CRC, serializer id, expiry length)
    without building a Header or the authentication context, which is unused then.
    """
    sid = _PLAIN_IDS.get(serializer) or _serializer_id(serializer)
    if type(blob) is bytes and blob[:4] == _HEAD_PLAIN:
        pos = 8 + len(sid)
        if len(blob) < pos or not blob.startswith(sid, 8):
            return None
        if int.from_bytes(blob[4:8], "big") != _crc32(memoryview(blob)[8:], _CRC_PLAIN):
            return None
        return blob[pos:], None
    reader = _READERS.get(serializer) or plain_reader(serializer)
    assert reader is not None  # the serializer id was valid above
    return reader(blob)


_READERS: dict[str, Callable[[Any], tuple[bytes, float] | None]] = {}


def plain_reader(serializer: str) -> Callable[[Any], tuple[bytes, float] | None] | None:
    """:func:`open_plain` for the envelope that records an expiry (what a function with
    a ttl writes), made for ``serializer`` once: ``reader(blob)`` is (payload,
    expires_at), or None for any other blob. None when ``serializer`` cannot name an
    envelope (then nothing it could read exists).

    The read of an L2 hit: the fixed header (magic, version, flags, CRC, serializer id,
    expiry) is unpacked in one call of a precompiled Struct, then checked as
    :func:`read_header` would, CRC included.
    """
    reader = _READERS.get(serializer)
    if reader is not None:
        return reader
    try:
        sid = _PLAIN_IDS.get(serializer) or _serializer_id(serializer)
    except ValueError:
        return None
    from struct import Struct

    unpack = Struct(f">4sI{len(sid)}sQ").unpack_from
    pos = 16 + len(sid)
    head, crc0, crc32 = _HEAD_EXPIRES, _CRC_EXPIRES, _crc32

    def read(blob: Any) -> tuple[bytes, float] | None:
        if type(blob) is not bytes or len(blob) < pos:
            return None
        magic, crc, found, expires_ms = unpack(blob)
        if magic != head or found != sid or crc != crc32(memoryview(blob)[8:], crc0):
            return None
        return blob[pos:], expires_ms / 1000.0

    _READERS[serializer] = read
    return read


_HEAD_ENC = MAGIC + bytes([VERSION, FLAG_ENCRYPTED])
_HEAD_ENC_EXPIRES = MAGIC + bytes([VERSION, FLAG_ENCRYPTED | FLAG_EXPIRES])


def open_encrypted(
    blob: bytes, serializer: str, key: str, encryptor: Encryptor
) -> tuple[bytes, float | None] | None:
    """(payload, expires_at) of an encrypted, uncompressed envelope written by
    ``serializer`` under ``key``; None for any other shape (then :func:`unseal` decides).

    The read path of ``@cache.secure``: the AEAD tag covers every header field the
    CRC does (version, flags, serializer id, expiry, key id), so the CRC is not
    checked. A blob that fails authentication raises DecryptionError (E003), whether
    a bit rotted or someone changed it: under encryption the two cannot be told
    apart, so both count as tampering (``fail_closed`` raises).
    """
    if type(blob) is not bytes:
        return None
    head = blob[:4]
    if head == _HEAD_ENC_EXPIRES:
        flags = FLAG_ENCRYPTED | FLAG_EXPIRES
    elif head == _HEAD_ENC:
        flags = FLAG_ENCRYPTED
    else:
        return None
    sid = _PLAIN_IDS.get(serializer) or _serializer_id(serializer)
    if not blob.startswith(sid, 8):
        return None
    pos = 8 + len(sid)
    expires = b""
    if flags & FLAG_EXPIRES:
        expires = blob[pos : pos + 8]
        pos += 8
    if len(expires) != (8 if flags & FLAG_EXPIRES else 0) or pos >= len(blob):
        return None
    m = blob[pos]
    kid_raw = blob[pos + 1 : pos + 1 + m]
    if m == 0 or len(kid_raw) != m or not kid_raw.isascii():
        return None
    key_id = kid_raw.decode("ascii")
    pos += 1 + m
    ctx = _context(flags, serializer, key_id, key, expires)
    payload = encryptor.decrypt(blob[pos:], ctx, key_id=key_id)
    return payload, (int.from_bytes(expires, "big") / 1000.0 if expires else None)


def open_envelope(
    blob: bytes,
    *,
    serializer: str,
    key: str,
    encryptor: Encryptor | None = None,
    signer: Signer | None = None,
    require_authentication: bool = False,
    max_size: int = DEFAULT_MAX_SIZE,
    allow_compressed: bool = True,
) -> bytes:
    """Return the serializer payload stored in ``blob`` (see :func:`unseal`)."""
    return unseal(
        blob,
        serializer=serializer,
        key=key,
        encryptor=encryptor,
        signer=signer,
        require_authentication=require_authentication,
        max_size=max_size,
        allow_compressed=allow_compressed,
    )[0]


def unseal(
    blob: bytes,
    *,
    serializer: str,
    key: str,
    encryptor: Encryptor | None = None,
    signer: Signer | None = None,
    require_authentication: bool = False,
    max_size: int = DEFAULT_MAX_SIZE,
    allow_compressed: bool = True,
) -> tuple[bytes, Header]:
    """Return (payload, header) of the envelope ``blob`` stored under backend key ``key``.

    With an ``encryptor``, anything that fails before or during authentication is
    :class:`DecryptionError` (E003), a header that does not parse included. Otherwise
    it raises :class:`EnvelopeError` (corrupt, foreign, wrong serializer, missing
    authentication, a compressed payload that would expand beyond ``max_size``
    bytes, or any compressed payload when ``allow_compressed`` is false: a reader
    that never writes compressed entries has no reason to inflate one),
    :class:`IntegrityError` (bad signature) or :class:`DecryptionError` (AEAD failure).
    """
    if encryptor is not None:
        # Under encryption, whatever is not an authentic envelope is E003 (fail_closed
        # raises): a bad header is a failed authentication, not mere corruption.
        try:
            header = read_header(blob)
        except EnvelopeError as exc:
            reason = exc.message.rstrip(".")
            raise DecryptionError(f"entry is not an intact encrypted envelope: {reason}.") from None
    else:
        header = read_header(blob)
    payload = bytes(blob)[header.payload_offset :]
    flags = header.flags
    expires = b"" if header.expires_ms is None else header.expires_ms.to_bytes(8, "big")
    ctx = _context(flags, header.serializer, header.key_id, key, expires)
    if flags & FLAG_ENCRYPTED:
        if encryptor is None:
            raise EnvelopeError("entry is encrypted but this cache has no encryptor")
        payload = encryptor.decrypt(payload, ctx, key_id=header.key_id)
    elif encryptor is not None:
        # A secure cache never accepts plaintext from the backend.
        raise DecryptionError("entry is not encrypted but this cache requires encryption.")
    elif flags & FLAG_SIGNED:
        if signer is None:
            raise EnvelopeError("entry is signed but no signing key is configured")
        if not signer.verify(ctx + payload, header.signature):
            raise IntegrityError("signature verification failed for a signed cache entry.")
    elif require_authentication:
        raise EnvelopeError("entry carries no signature and its serializer requires one")
    # Checked after authentication, so that under encryption a changed serializer id or
    # compressed flag fails as E003 above; an authentic entry of another shape is E006.
    if header.serializer != serializer:
        raise EnvelopeError(
            f"entry was written by serializer {header.serializer!r}, expected {serializer!r}"
        )
    if flags & FLAG_COMPRESSED and not allow_compressed:
        raise EnvelopeError(
            "entry is compressed but this cache does not compress (compress=False): refused "
            "without inflating it. If another process writes it with compress=True, give "
            "every process the same compress= setting."
        )
    if flags & FLAG_COMPRESSED:
        # Bounded: a small blob must not expand into gigabytes (decompression bomb).
        inflater = zlib.decompressobj()
        try:
            payload = inflater.decompress(payload, max_size + 1)
        except zlib.error as exc:
            raise EnvelopeError(f"compressed payload is corrupt: {exc}") from None
        if len(payload) > max_size or inflater.unconsumed_tail:
            raise EnvelopeError(
                f"compressed payload expands beyond {max_size} bytes (max_size); refused."
            )
        if not inflater.eof or inflater.unused_data:
            raise EnvelopeError("compressed payload is corrupt: truncated or trailing data")
    return payload, header
