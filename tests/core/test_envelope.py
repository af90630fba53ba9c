"""The stored envelope: round trips, and every way a hostile or broken backend can lie.

Whatever comes back from a shared backend is untrusted. ``open_envelope`` either
returns exactly the payload that was sealed for this key and serializer, or raises
one of the cachekit errors the decorator turns into a miss. Pickle payloads never
reach ``pickle.loads`` unless they were authenticated.
"""

from __future__ import annotations

import hashlib
import hmac
import inspect
import os
import pickle
import zlib
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cachekit.envelope import (
    FLAG_COMPRESSED,
    FLAG_ENCRYPTED,
    FLAG_SIGNED,
    MAGIC,
    VERSION,
    open_encrypted,
    open_envelope,
    open_plain,
    plain_reader,
    read_header,
    seal,
    seal_plain,
    unseal,
)
from cachekit.errors import (
    DecryptionError,
    EnvelopeError,
    IntegrityError,
)
from cachekit.serializers import PickleSerializer
from cachekit.signing import Signer

KEY = "cachekit:users:app.get_user:0123456789abcdef0123456789abcdef"
OTHER_KEY = "cachekit:users:app.get_user:fedcba9876543210fedcba9876543210"
SIGNER = Signer(bytes(range(32)))
OTHER_SIGNER = Signer(bytes(range(1, 33)))
REJECTED = (EnvelopeError, IntegrityError, DecryptionError)
PAYLOAD = b"\x82\xa2id\x07\xa4name\xa3Ann" * 3


# --- a stand-in for cachekit-crypto's encryptor -------------------------------------------


class HmacEncryptor:
    """Implements the Encryptor protocol with HMAC-SHA256 only (no cryptography).

    Keystream: HMAC(key, nonce || counter); tag: HMAC over the AAD length, the AAD,
    the nonce and the ciphertext. Good enough to show that the envelope passes the
    right AAD and key id and that a wrong AAD is refused. Records every call.
    """

    def __init__(self, secret: bytes, key_id: str = "k1") -> None:
        self._secret = secret
        self.key_id = key_id
        self.calls: list[tuple[str, bytes, str]] = []

    def _stream(self, nonce: bytes, length: int) -> bytes:
        blocks = []
        for counter in range(length // 32 + 1):
            blocks.append(
                hmac.new(self._secret, nonce + counter.to_bytes(8, "big"), hashlib.sha256).digest()
            )
        return b"".join(blocks)[:length]

    def _tag(self, aad: bytes, nonce: bytes, body: bytes) -> bytes:
        message = len(aad).to_bytes(8, "big") + aad + nonce + body
        return hmac.new(self._secret, b"tag" + message, hashlib.sha256).digest()

    def encrypt(self, plaintext: bytes, aad: bytes) -> bytes:
        self.calls.append(("encrypt", aad, self.key_id))
        nonce = os.urandom(16)
        body = bytes(
            a ^ b for a, b in zip(plaintext, self._stream(nonce, len(plaintext)), strict=True)
        )
        return nonce + body + self._tag(aad, nonce, body)

    def decrypt(self, blob: bytes, aad: bytes, *, key_id: str) -> bytes:
        self.calls.append(("decrypt", aad, key_id))
        if key_id != self.key_id or len(blob) < 48:
            raise DecryptionError()
        nonce, body, tag = blob[:16], blob[16:-32], blob[-32:]
        if not hmac.compare_digest(tag, self._tag(aad, nonce, body)):
            raise DecryptionError()
        return bytes(a ^ b for a, b in zip(body, self._stream(nonce, len(body)), strict=True))


ENCRYPTOR = HmacEncryptor(b"e" * 32)


# --- helpers ------------------------------------------------------------------------------


def with_valid_crc(blob: bytes | bytearray) -> bytes:
    """Recompute the checksum the way an attacker who knows the format would."""
    blob = bytes(blob)
    crc = zlib.crc32(blob[8:], zlib.crc32(blob[:4]))
    return blob[:4] + crc.to_bytes(4, "big") + blob[8:]


def flip(blob: bytes, bit: int) -> bytes:
    mutable = bytearray(blob)
    mutable[bit // 8] ^= 1 << (bit % 8)
    return bytes(mutable)


def relabel(blob: bytes, serializer: str) -> bytes:
    """Swap the serializer id for another one and fix the checksum."""
    n = blob[8]
    body = bytes([len(serializer)]) + serializer.encode() + blob[9 + n :]
    return with_valid_crc(blob[:8] + body)


# Each configuration: (seal kwargs, open kwargs).
CONFIGURATIONS = {
    "plain": ({}, {}),
    "compressed": ({"compress": True}, {}),
    "signed": ({"signer": SIGNER}, {"signer": SIGNER, "require_authentication": True}),
    "signed-compressed": (
        {"signer": SIGNER, "compress": True},
        {"signer": SIGNER, "require_authentication": True},
    ),
    "encrypted": ({"encryptor": ENCRYPTOR}, {"encryptor": ENCRYPTOR}),
    "encrypted-compressed": (
        {"encryptor": ENCRYPTOR, "compress": True},
        {"encryptor": ENCRYPTOR},
    ),
}
AUTHENTICATED = ["signed", "signed-compressed", "encrypted", "encrypted-compressed"]


def sealed(name: str, payload: bytes = PAYLOAD, key: str = KEY, serializer: str = "pickle"):
    seal_kwargs, open_kwargs = CONFIGURATIONS[name]
    blob = seal(payload, serializer=serializer, key=key, **seal_kwargs)
    return blob, open_kwargs


def open_as(blob: Any, open_kwargs: dict[str, Any], key: str = KEY, serializer: str = "pickle"):
    return open_envelope(blob, serializer=serializer, key=key, **open_kwargs)


# --- round trips --------------------------------------------------------------------------


@settings(max_examples=200)
@given(
    payload=st.one_of(
        st.binary(max_size=2048), st.binary(min_size=1, max_size=16).map(lambda b: b * 200)
    ),
    key=st.text(min_size=1, max_size=200),
    serializer=st.sampled_from(["msgpack", "pickle", "arrow", "x" * 255]),
    mode=st.sampled_from(sorted(CONFIGURATIONS)),
)
def test_sealed_payload_opens_to_the_same_bytes(payload, key, serializer, mode):
    blob, open_kwargs = sealed(mode, payload, key, serializer)
    assert blob[:2] == MAGIC and blob[2] == VERSION
    assert open_as(blob, open_kwargs, key, serializer) == payload
    assert open_as(bytearray(blob), open_kwargs, key, serializer) == payload
    assert open_as(memoryview(blob), open_kwargs, key, serializer) == payload


def test_header_reports_what_was_sealed():
    compressible = b"abc" * 1000
    header = read_header(
        seal(compressible, serializer="msgpack", key=KEY, signer=SIGNER, compress=True)
    )
    assert header.version == VERSION
    assert header.flags == FLAG_SIGNED | FLAG_COMPRESSED
    assert header.serializer == "msgpack"
    assert len(header.signature) == 32
    header = read_header(seal(b"x", serializer="pickle", key=KEY, encryptor=ENCRYPTOR))
    assert header.flags == FLAG_ENCRYPTED
    assert header.key_id == "k1"
    assert header.signature == b""


def test_compression_is_used_only_when_it_pays():
    assert read_header(seal(os.urandom(64), serializer="s", key=KEY, compress=True)).flags == 0
    big = seal(b"a" * 10_000, serializer="s", key=KEY, compress=True)
    assert read_header(big).flags == FLAG_COMPRESSED
    assert len(big) < 200


def test_empty_payload_round_trips():
    for mode in CONFIGURATIONS:
        blob, open_kwargs = sealed(mode, b"")
        assert open_as(blob, open_kwargs) == b""


# --- corruption ---------------------------------------------------------------------------


@pytest.mark.parametrize("mode", sorted(CONFIGURATIONS))
def test_every_single_bit_flip_is_rejected(mode):
    blob, open_kwargs = sealed(mode)
    for bit in range(len(blob) * 8):
        with pytest.raises(REJECTED):
            open_as(flip(blob, bit), open_kwargs)


@pytest.mark.parametrize("mode", AUTHENTICATED)
def test_bit_flips_with_a_recomputed_checksum_fail_authentication(mode):
    """The checksum only catches accidents; the signature or AEAD tag catches attackers."""
    blob, open_kwargs = sealed(mode)
    for bit in [*range(0, 32), *range(64, len(blob) * 8)]:  # everything but the CRC itself
        with pytest.raises(REJECTED):
            open_as(with_valid_crc(flip(blob, bit)), open_kwargs)


def test_a_flipped_compressed_flag_is_caught_without_a_signature():
    blob, open_kwargs = sealed("compressed", b"z" * 5000)
    assert read_header(blob).flags == FLAG_COMPRESSED
    with pytest.raises(EnvelopeError, match="checksum"):
        open_as(flip(blob, 3 * 8), open_kwargs)


@pytest.mark.parametrize("mode", sorted(CONFIGURATIONS))
def test_every_truncation_is_rejected(mode):
    blob, open_kwargs = sealed(mode)
    for length in range(len(blob)):
        with pytest.raises(REJECTED):
            open_as(blob[:length], open_kwargs)


@pytest.mark.parametrize("mode", sorted(CONFIGURATIONS))
def test_appended_bytes_are_rejected(mode):
    blob, open_kwargs = sealed(mode)
    for tail in (b"\x00", b"junk", blob):
        with pytest.raises(REJECTED):
            open_as(blob + tail, open_kwargs)


@settings(max_examples=200)
@given(st.binary(max_size=600))
def test_arbitrary_bytes_never_open(garbage):
    for blob in (garbage, MAGIC + bytes([VERSION]) + garbage):
        with pytest.raises(REJECTED):
            open_as(blob, {"signer": SIGNER, "require_authentication": True})


def test_unknown_version_is_rejected():
    blob, open_kwargs = sealed("plain")
    for version in (0, 2, 255):
        forged = with_valid_crc(blob[:2] + bytes([version]) + blob[3:])
        with pytest.raises(EnvelopeError, match="version"):
            open_as(forged, open_kwargs)


@pytest.mark.parametrize("flags", [0x10, 0x20, 0x80, 0xFF, FLAG_ENCRYPTED | FLAG_SIGNED])
def test_unknown_or_contradictory_flags_are_rejected(flags):
    blob, open_kwargs = sealed("signed")
    forged = with_valid_crc(blob[:3] + bytes([flags]) + blob[4:])
    with pytest.raises(EnvelopeError, match="flags"):
        open_as(forged, open_kwargs)
    with pytest.raises(EnvelopeError, match="flags"):
        read_header(forged)


@pytest.mark.parametrize("magic", [b"CL", b"ck", b"\x00\x00", b"KC"])
def test_wrong_magic_is_rejected(magic):
    blob, open_kwargs = sealed("plain")
    with pytest.raises(EnvelopeError, match="magic"):
        open_as(magic + blob[2:], open_kwargs)


@pytest.mark.parametrize(
    "value",
    [None, "CK\x01\x00", 42, ["CK"], {"a": 1}, 3.5, object()],
    ids=lambda v: type(v).__name__,
)
def test_non_bytes_values_are_rejected(value):
    with pytest.raises(EnvelopeError, match="not bytes"):
        open_envelope(value, serializer="msgpack", key=KEY)


def test_ten_megabytes_of_random_bytes_are_rejected_cleanly():
    noise = os.urandom(10 * 1024 * 1024)
    with pytest.raises(EnvelopeError):
        open_envelope(noise, serializer="msgpack", key=KEY)
    # Noise behind a believable header with a correct checksum: refused past the CRC.
    for flags, error in (
        (FLAG_COMPRESSED, EnvelopeError),
        (FLAG_SIGNED, IntegrityError),
        (FLAG_SIGNED | FLAG_COMPRESSED, IntegrityError),
    ):
        forged = with_valid_crc(MAGIC + bytes([VERSION, flags]) + bytes(4) + b"\x07msgpack" + noise)
        with pytest.raises(error):
            open_envelope(forged, serializer="msgpack", key=KEY, signer=SIGNER)


# --- wrong context ------------------------------------------------------------------------


@pytest.mark.parametrize("mode", AUTHENTICATED)
def test_an_envelope_copied_to_another_key_fails(mode):
    blob, open_kwargs = sealed(mode)
    with pytest.raises((IntegrityError, DecryptionError)):
        open_as(blob, open_kwargs, key=OTHER_KEY)
    with pytest.raises((IntegrityError, DecryptionError)):
        open_as(blob, open_kwargs, key=KEY + " ")


def test_a_signed_envelope_fails_under_another_signing_key():
    blob, _ = sealed("signed")
    with pytest.raises(IntegrityError):
        open_as(blob, {"signer": OTHER_SIGNER})


def test_a_signed_envelope_needs_a_signer_to_be_read():
    blob, _ = sealed("signed")
    with pytest.raises(EnvelopeError, match="signed"):
        open_as(blob, {})


@pytest.mark.parametrize("mode", ["plain", "compressed", "signed", "encrypted"])
def test_another_serializer_id_is_rejected_as_is(mode):
    blob, open_kwargs = sealed(mode, serializer="pickle")
    with pytest.raises(EnvelopeError, match="serializer"):
        open_as(blob, open_kwargs, serializer="msgpack")


@pytest.mark.parametrize(
    ("mode", "original", "forged"),
    [
        ("signed", "pickle", "msgpack"),
        ("signed", "msgpack", "pickle"),
        ("signed", "pickle", "pickle2"),
        ("encrypted", "msgpack", "pickle"),
    ],
)
def test_a_relabelled_serializer_id_fails_authentication(mode, original, forged):
    blob, open_kwargs = sealed(mode, serializer=original)
    relabelled = relabel(blob, forged)
    assert read_header(relabelled).serializer == forged  # the attacker's header is well formed
    with pytest.raises((IntegrityError, DecryptionError)):
        open_as(relabelled, open_kwargs, serializer=forged)


def test_unsigned_pickle_is_refused_when_authentication_is_required():
    blob, _ = sealed("plain")
    with pytest.raises(EnvelopeError, match="signature"):
        open_as(blob, {"require_authentication": True})
    with pytest.raises(EnvelopeError, match="signature"):
        open_as(blob, {"signer": SIGNER, "require_authentication": True})
    # The same bytes are fine for a serializer that needs no authentication.
    assert open_as(blob, {"signer": SIGNER}) == PAYLOAD


def test_stripping_the_signature_does_not_help_an_attacker():
    blob, open_kwargs = sealed("signed")
    header = read_header(blob)
    stripped = with_valid_crc(
        blob[:3]
        + bytes([header.flags & ~FLAG_SIGNED])
        + blob[4 : 9 + len("pickle")]
        + blob[header.payload_offset :]
    )
    with pytest.raises(EnvelopeError, match="signature"):
        open_as(stripped, open_kwargs)


# --- poisoned pickle ----------------------------------------------------------------------

SENTINEL_CALLS: list[str] = []


def sentinel(marker: str) -> str:
    SENTINEL_CALLS.append(marker)
    return marker


class Poison:
    def __reduce__(self):
        return (sentinel, ("executed",))


POISON = pickle.dumps(Poison())


def read_pickle_like_the_decorator(blob: bytes, **open_kwargs: Any) -> Any:
    """Authenticate first, unpickle only what passed (the order cached.py uses)."""
    payload = open_envelope(blob, serializer="pickle", key=KEY, **open_kwargs)
    return PickleSerializer().deserialize(payload)


@pytest.fixture
def poison_watch():
    SENTINEL_CALLS.clear()
    # The poison is live: unpickling it really would call the sentinel.
    assert pickle.loads(POISON) == "executed"
    assert SENTINEL_CALLS == ["executed"]
    SENTINEL_CALLS.clear()
    yield SENTINEL_CALLS
    SENTINEL_CALLS.clear()


def test_poisoned_pickle_is_never_loaded(poison_watch):
    legit = seal(pickle.dumps({"x": 1}), serializer="pickle", key=KEY, signer=SIGNER)
    header = read_header(legit)
    attempts = {
        "unsigned": seal(POISON, serializer="pickle", key=KEY),
        "unsigned-compressed": seal(POISON * 20, serializer="pickle", key=KEY, compress=True),
        "signed by someone else": seal(POISON, serializer="pickle", key=KEY, signer=OTHER_SIGNER),
        "signed for another key": seal(POISON, serializer="pickle", key=OTHER_KEY, signer=SIGNER),
        "payload swapped in a legit envelope": with_valid_crc(
            legit[: header.payload_offset] + POISON
        ),
        "legit signature, relabelled from msgpack": relabel(
            seal(POISON, serializer="msgpack", key=KEY, signer=SIGNER), "pickle"
        ),
        "relabelled, signature stripped": relabel(
            seal(POISON, serializer="msgpack", key=KEY), "pickle"
        ),
        "garbage flags": with_valid_crc(legit[:3] + b"\x08" + legit[4:]),
    }
    for name, blob in attempts.items():
        with pytest.raises(REJECTED):
            read_pickle_like_the_decorator(blob, signer=SIGNER, require_authentication=True)
        assert poison_watch == [], name
    # And the legitimate envelope still loads.
    assert read_pickle_like_the_decorator(legit, signer=SIGNER, require_authentication=True) == {
        "x": 1
    }


# --- encryption (through the protocol only) -----------------------------------------------


def test_the_aad_binds_key_serializer_and_version():
    encryptor = HmacEncryptor(b"s" * 32, key_id="tenant-key-7")
    blob = seal(PAYLOAD, serializer="pickle", key=KEY, encryptor=encryptor)
    assert open_envelope(blob, serializer="pickle", key=KEY, encryptor=encryptor) == PAYLOAD
    (op, aad, _), (op2, aad2, key_id) = encryptor.calls
    assert (op, op2) == ("encrypt", "decrypt")
    assert aad == aad2
    assert KEY.encode() in aad
    assert b"pickle" in aad
    assert b"tenant-key-7" in aad
    assert key_id == "tenant-key-7"
    assert PAYLOAD not in blob
    # Another key or serializer gives another AAD.
    seal(PAYLOAD, serializer="pickle", key=OTHER_KEY, encryptor=encryptor)
    seal(PAYLOAD, serializer="msgpack", key=KEY, encryptor=encryptor)
    aads = [call[1] for call in encryptor.calls if call[0] == "encrypt"]
    assert len(set(aads)) == 3


def test_an_envelope_for_another_key_id_is_refused():
    blob = seal(PAYLOAD, serializer="pickle", key=KEY, encryptor=HmacEncryptor(b"s" * 32, "old"))
    with pytest.raises(DecryptionError):
        open_envelope(blob, serializer="pickle", key=KEY, encryptor=HmacEncryptor(b"t" * 32, "new"))


@pytest.mark.parametrize("mode", ["plain", "compressed", "signed"])
def test_plaintext_is_refused_when_an_encryptor_is_configured(mode):
    blob, _ = sealed(mode)
    with pytest.raises(DecryptionError) as err:
        open_as(blob, {"encryptor": ENCRYPTOR, "signer": SIGNER})
    assert err.value.code == "E003"


def test_an_encrypted_envelope_without_an_encryptor_is_refused():
    blob, _ = sealed("encrypted")
    with pytest.raises(EnvelopeError, match="encrypt"):
        open_as(blob, {})
    with pytest.raises(EnvelopeError, match="encrypt"):
        open_as(blob, {"signer": SIGNER, "require_authentication": True})


# --- decompression bombs ------------------------------------------------------------------


def test_default_decompression_limit_is_512_mib():
    default = inspect.signature(open_envelope).parameters["max_size"].default
    assert default == 512 * 1024 * 1024


def bomb(size: int) -> bytes:
    """A zlib stream that inflates to ``size`` zero bytes, built without holding them."""
    packer = zlib.compressobj(9)
    chunk = bytes(1024 * 1024)
    parts = []
    for start in range(0, size, len(chunk)):
        parts.append(packer.compress(chunk[: size - start]))
    parts.append(packer.flush())
    return b"".join(parts)


def test_a_zlib_bomb_is_refused_before_it_inflates():
    limit = 1024 * 1024
    packed = bomb(64 * limit)
    assert len(packed) < limit // 10  # 64 MiB of zeros in well under 100 KiB
    head = MAGIC + bytes([VERSION, FLAG_COMPRESSED]) + bytes(4) + b"\x06pickle"
    blob = with_valid_crc(head + packed)
    with pytest.raises(EnvelopeError, match="max_size"):
        open_envelope(blob, serializer="pickle", key=KEY, max_size=limit)


@pytest.mark.parametrize("mode", ["compressed", "signed-compressed", "encrypted-compressed"])
def test_even_an_authentic_payload_beyond_max_size_is_refused(mode):
    limit = 64 * 1024
    blob, open_kwargs = sealed(mode, bytes(8 * limit))
    assert read_header(blob).flags & FLAG_COMPRESSED
    with pytest.raises(EnvelopeError, match="max_size"):
        open_envelope(blob, serializer="pickle", key=KEY, max_size=limit, **open_kwargs)
    assert open_envelope(blob, serializer="pickle", key=KEY, **open_kwargs) == bytes(8 * limit)


def test_a_zlib_bomb_costs_no_more_memory_than_max_size():
    import tracemalloc

    limit = 1024 * 1024
    head = MAGIC + bytes([VERSION, FLAG_COMPRESSED]) + bytes(4) + b"\x07msgpack"
    blob = with_valid_crc(head + bomb(256 * limit))
    tracemalloc.start()
    try:
        with pytest.raises(EnvelopeError, match="max_size"):
            unseal(blob, serializer="msgpack", key=KEY, max_size=limit)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 3 * limit, f"a 256 MiB bomb peaked at {peak} bytes under a 1 MiB limit"


@pytest.mark.parametrize("mode", ["compressed", "signed-compressed", "encrypted-compressed"])
def test_a_compressed_entry_is_refused_where_compression_is_not_expected(mode):
    blob, open_kwargs = sealed(mode, PAYLOAD * 20)
    assert read_header(blob).flags & FLAG_COMPRESSED
    with pytest.raises(EnvelopeError, match="compress"):
        unseal(blob, serializer="pickle", key=KEY, allow_compressed=False, **open_kwargs)
    assert unseal(blob, serializer="pickle", key=KEY, **open_kwargs)[0] == PAYLOAD * 20
    uncompressed, open_kwargs = sealed({"compressed": "plain"}.get(mode, mode[:-11]), PAYLOAD)
    assert not read_header(uncompressed).flags & FLAG_COMPRESSED
    opened = unseal(
        uncompressed, serializer="pickle", key=KEY, allow_compressed=False, **open_kwargs
    )
    assert opened[0] == PAYLOAD


def test_a_payload_of_exactly_max_size_opens():
    payload = b"q" * 4096
    blob = seal(payload, serializer="pickle", key=KEY, compress=True)
    assert open_envelope(blob, serializer="pickle", key=KEY, max_size=4096) == payload
    with pytest.raises(EnvelopeError, match="max_size"):
        open_envelope(blob, serializer="pickle", key=KEY, max_size=4095)


def test_a_truncated_or_padded_zlib_stream_is_refused():
    packed = zlib.compress(b"data " * 100)
    head = MAGIC + bytes([VERSION, FLAG_COMPRESSED]) + bytes(4) + b"\x07msgpack"
    for stream in (packed[:-4], packed[:10], packed + b"trailing", b"", b"not zlib at all"):
        with pytest.raises(EnvelopeError, match="compressed"):
            open_envelope(with_valid_crc(head + stream), serializer="msgpack", key=KEY)


# --- the read path of @cache.secure (open_encrypted) -----------------------------------------


def _encrypted(expires_at: float | None = 4_102_444_800.0, payload: bytes = PAYLOAD) -> bytes:
    return seal(payload, serializer="msgpack", key=KEY, encryptor=ENCRYPTOR, expires_at=expires_at)


@pytest.mark.parametrize("expires_at", [None, 4_102_444_800.0])
def test_open_encrypted_agrees_with_unseal(expires_at):
    blob = _encrypted(expires_at)
    payload, header = unseal(blob, serializer="msgpack", key=KEY, encryptor=ENCRYPTOR)
    assert open_encrypted(blob, "msgpack", KEY, ENCRYPTOR) == (payload, header.expires_at)
    assert payload == PAYLOAD


@pytest.mark.parametrize(
    "blob",
    [
        seal(PAYLOAD, serializer="msgpack", key=KEY),  # plain
        seal(PAYLOAD * 20, serializer="msgpack", key=KEY, encryptor=ENCRYPTOR, compress=True),
        seal(PAYLOAD, serializer="msgpack", key=KEY, signer=SIGNER),
        seal(PAYLOAD, serializer="pickle", key=KEY, encryptor=ENCRYPTOR),  # another serializer
        b"",
        b"CK",
        bytearray(_encrypted()),
    ],
    ids=["plain", "compressed", "signed", "other-serializer", "empty", "magic-only", "bytearray"],
)
def test_open_encrypted_leaves_other_shapes_to_unseal(blob):
    assert open_encrypted(blob, "msgpack", KEY, ENCRYPTOR) is None


def test_open_encrypted_truncations_are_left_to_unseal_or_rejected():
    blob = _encrypted()
    for length in range(len(blob)):
        try:
            got = open_encrypted(blob[:length], "msgpack", KEY, ENCRYPTOR)
        except DecryptionError:
            continue
        assert got is None, length
        with pytest.raises(REJECTED):
            unseal(blob[:length], serializer="msgpack", key=KEY, encryptor=ENCRYPTOR)


def test_open_encrypted_treats_corruption_as_tampering():
    """Under encryption a rotted bit and a forged one look the same: both are E003
    (issue 11 item 4), so that fail_closed raises for either."""
    blob = _encrypted()
    corrupted = flip(blob, 8 * (len(blob) - 5))  # a payload bit; the CRC no longer matches
    with pytest.raises(DecryptionError):
        open_encrypted(corrupted, "msgpack", KEY, ENCRYPTOR)
    with pytest.raises(DecryptionError):
        unseal(corrupted, serializer="msgpack", key=KEY, encryptor=ENCRYPTOR)
    with pytest.raises(DecryptionError):  # the same change with a valid CRC
        open_encrypted(with_valid_crc(corrupted), "msgpack", KEY, ENCRYPTOR)
    bad_magic = b"XK" + blob[2:]
    with pytest.raises(DecryptionError):  # not even an envelope: still E003 under encryption
        unseal(bad_magic, serializer="msgpack", key=KEY, encryptor=ENCRYPTOR)
    with pytest.raises(EnvelopeError):  # without an encryptor it stays E006
        unseal(corrupted, serializer="msgpack", key=KEY)
    with pytest.raises(DecryptionError):  # copied to another key
        open_encrypted(blob, "msgpack", OTHER_KEY, ENCRYPTOR)


def test_open_encrypted_checks_every_header_bit_through_the_tag():
    blob = _encrypted()
    kid_end = 8 + 1 + len("msgpack") + 8 + 1 + len(ENCRYPTOR.key_id)
    header_bits = [*range(24, 32), *range(64, 8 * kid_end)]  # flags, ids, expiry, key id
    for bit in header_bits:
        tampered = with_valid_crc(flip(blob, bit))
        try:
            got = open_encrypted(tampered, "msgpack", KEY, ENCRYPTOR)
        except DecryptionError:
            continue
        assert got is None, bit


# --- the read of an L2 hit (plain_reader) ------------------------------------------------


def _plain(expires_at: float | None = 4_102_444_800.0, serializer: str = "msgpack") -> bytes:
    return seal_plain(PAYLOAD, serializer, expires_at)


@given(payload=st.binary(max_size=300), expires_ms=st.integers(0, 2**63 - 1))
@settings(max_examples=200, deadline=None)
def test_plain_reader_agrees_with_open_plain_and_unseal(payload, expires_ms):
    blob = seal_plain(payload, "msgpack", expires_ms / 1000.0)
    read = plain_reader("msgpack")
    assert read is not None
    opened = read(blob)
    assert opened == open_plain(blob, "msgpack")
    unsealed, header = unseal(blob, serializer="msgpack", key=KEY)
    assert opened == (unsealed, header.expires_at) == (payload, header.expires_at)


def test_plain_reader_rejects_every_single_bit_flip():
    blob = _plain()
    read = plain_reader("msgpack")
    assert read is not None and read(blob) == (PAYLOAD, 4_102_444_800.0)
    for bit in range(8 * len(blob)):
        assert read(flip(blob, bit)) is None, bit  # header bits, the CRC and the payload
    flipped_crc_byte = blob[:5] + bytes([blob[5] ^ 0xFF]) + blob[6:]
    assert read(flipped_crc_byte) is None


def test_plain_reader_rejects_every_truncation_and_other_shapes():
    read = plain_reader("msgpack")
    assert read is not None
    blob = _plain()
    for length in range(len(blob)):
        assert read(blob[:length]) is None, length
    assert read(blob + b"x") is None  # the CRC covers the whole payload
    for other in (
        _plain(None),  # no expiry: open_plain's other branch
        _plain(serializer="json"),
        seal(PAYLOAD, serializer="msgpack", key=KEY, signer=SIGNER, expires_at=4_102_444_800.0),
        seal(PAYLOAD, serializer="msgpack", key=KEY, encryptor=ENCRYPTOR),
        bytearray(blob),
        memoryview(blob),
        None,
        b"",
    ):
        assert read(other) is None


def test_plain_reader_is_made_once_per_serializer_and_never_for_an_invalid_name():
    assert plain_reader("msgpack") is plain_reader("msgpack")
    assert plain_reader("json") is not plain_reader("msgpack")
    assert plain_reader("sérialiseur") is None  # not ASCII: no envelope can carry it
    assert plain_reader("x" * 300) is None
