"""AES-256-GCM under short-lived derived keys: the ``aes-gcm`` encryptor.

Blob layout (format version 1)::

    offset  size  field
    0       1     format version (0x01)
    1       16    salt: names the derived key that sealed this blob
    17      12    nonce, random per message
    29      n+16  AES-256-GCM ciphertext of the n-byte plaintext, then its 16-byte tag

    overhead: 45 bytes per value


Why nonces never repeat under one key
-------------------------------------
AES-GCM breaks badly if one key ever encrypts two messages under the same nonce
(the authentication key leaks and forgeries become possible). With random 96-bit
nonces under a single key, NIST SP 800-38D caps usage at 2**32 messages per key;
a busy cache shared by many processes for a long time could get near that, and
nothing in a cache coordinates a counter between processes.

So no AES key is used for long. An encryptor draws a random 16-byte salt and
derives a *session key* from the tenant's encryption subkey::

    session_key = HKDF-Expand(PRK=subkey, info=b"cachekit/v1/message" || salt, L=32)
                = HMAC-SHA256(subkey, b"cachekit/v1/message" || salt || 0x01)

(for L <= 32, HKDF-Expand is exactly that one HMAC, RFC 5869 section 2.3). It
seals at most 2**28 messages with that key, each under a fresh random 96-bit nonce,
then draws a new salt; a forked child draws its own at once. Under one key the
chance that two of those 2**28 nonces collide is below 2**-41, far inside NIST's
2**-32; two sessions share a key only if their 128-bit salts collide (about 2**64
sessions). The 2**32 limit of a single key therefore never comes into play, and no
counter has to be shared between processes.

Readers keep the keys of the salts they have seen in a small bounded cache (most
entries are read many times, and a writer produces one salt per 2**28 writes), so a
read usually costs one AES-GCM decryption: no HMAC, no AES key schedule.

What the tag covers
-------------------
The AAD given to AES-GCM is ``version byte || caller's aad || tenant binding``. The
envelope's aad already binds the envelope version, flags, serializer id, key id,
expiry and the full backend key, so a blob copied to another cache key fails. The
tenant binding (``b"\\x00cachekit-tenant"``, then for a tenant its UTF-8 bytes,
their 4-byte length and ``0x01``; for no tenant ``0x00``) is decodable from the end,
so no (aad, tenant) pair can impersonate another; with per-tenant subkeys on top, a
blob moved to another tenant fails twice over.

Every failure to decrypt, whatever its cause (unknown key id, unknown format
version, short, oversized or non-bytes input, a wrong tag), raises the same
:class:`~cachekit.errors.DecryptionError` (E003) with the same message: the error
never says which check failed, and never carries key material.

One instance is safe to share between threads: subkeys are HMAC templates that
are copied, never updated; the session counter is an ``itertools.count`` (atomic);
a lock guards only the switch to a new session and the reader's key cache.
"""

from __future__ import annotations

import hmac
import itertools
import os
import threading
import weakref
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from typing import Any, NoReturn

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from cachekit.errors import ConfigurationError, DecryptionError, EncryptionError
from cachekit_crypto.keys import Keyring, keyring_from_env, tenant_field

__all__ = [
    "DEFAULT_MAX_SIZE",
    "FORMAT_VERSION",
    "MESSAGE_LABEL",
    "NONCE_BYTES",
    "OPENER_CACHE_SIZE",
    "OVERHEAD",
    "SALT_BYTES",
    "SESSION_MESSAGES",
    "TAG_BYTES",
    "AesGcmEncryptor",
]

FORMAT_VERSION = 1
SALT_BYTES = 16
NONCE_BYTES = 12
TAG_BYTES = 16
_HEADER = 1 + SALT_BYTES + NONCE_BYTES  # 29: where the ciphertext starts
OVERHEAD = _HEADER + TAG_BYTES  # 45
MESSAGE_LABEL = b"cachekit/v1/message"
#: Largest plaintext encrypted (and so largest blob decrypted, plus OVERHEAD): 512 MiB.
DEFAULT_MAX_SIZE = 512 * 1024 * 1024
#: AES-GCM in ``cryptography`` takes at most 2**31 - 1 bytes of data.
_HARD_MAX_SIZE = 2**31 - 1 - TAG_BYTES

#: Messages sealed under one session key before a new salt is drawn.
SESSION_MESSAGES = 2**28
#: Session keys of other writers (and earlier sessions) a reader keeps, per encryptor.
OPENER_CACHE_SIZE = 1024

_VERSION = bytes([FORMAT_VERSION])
_TENANT_MARK = b"\x00cachekit-tenant"
_BUFFERS = (bytes, bytearray, memoryview)
_urandom = os.urandom


def _tenant_binding(tenant: str | None) -> bytes:
    field = tenant_field(tenant)  # b"\x00" or b"\x01" + utf-8 (validates the type)
    if tenant is None:
        return _TENANT_MARK + b"\x00"
    name = field[1:]
    return _TENANT_MARK + name + len(name).to_bytes(4, "big") + b"\x01"


def _fail() -> NoReturn:
    raise DecryptionError()


class AesGcmEncryptor:
    """Authenticated encryption for ``@cache.secure`` (the ``aes-gcm`` encryptor).

    Build it from the environment with :meth:`from_env` (what the plugin does), or
    from a :class:`~cachekit_crypto.keys.Keyring`. ``key_id`` is the current key's
    id (written into each envelope); ``key_ids`` lists every readable key, current
    first; ``tenant`` is the tenant every blob is bound to (None: no tenant);
    ``digest_key`` is the key-naming subkey the core uses to hash arguments into
    backend key names (tenant-independent, stable across a rotation).

    ``max_size`` bounds the plaintext of :meth:`encrypt` (E009 beyond it) and the
    blob :meth:`decrypt` accepts (E003 beyond it plus 45 bytes).
    """

    __slots__ = (
        "__weakref__",
        "_aad_suffix",
        "_current",
        "_lock",
        "_max_blob",
        "_openers",
        "_session",
        "_templates",
        "digest_key",
        "key_id",
        "key_ids",
        "max_size",
        "naming_key_id",
        "tenant",
    )

    def __init__(
        self,
        keyring: Keyring,
        tenant: str | None = None,
        *,
        max_size: int = DEFAULT_MAX_SIZE,
    ) -> None:
        if not isinstance(keyring, Keyring):
            raise ConfigurationError(
                f"AesGcmEncryptor needs a Keyring, not {type(keyring).__name__}."
            )
        if (
            not isinstance(max_size, int)
            or isinstance(max_size, bool)
            or not 0 < max_size <= _HARD_MAX_SIZE
        ):
            raise ConfigurationError(
                f"max_size must be an int between 1 and {_HARD_MAX_SIZE} bytes, got {max_size!r}."
            )
        self._aad_suffix = _tenant_binding(tenant)  # also rejects a tenant that is no str
        self.tenant = tenant
        self.key_id = keyring.key_id
        self.key_ids = keyring.key_ids
        self.naming_key_id = keyring.naming_key_id
        self.digest_key = keyring.digest_key
        self.max_size = max_size
        self._max_blob = max_size + OVERHEAD
        # HKDF-Expand's first block, keyed and fed the label once; copied per message.
        self._templates = {
            key_id: hmac.new(subkey, MESSAGE_LABEL, "sha256")
            for key_id, subkey in keyring.encryption_keys(tenant).items()
        }
        self._current = self._templates[self.key_id]
        self._lock = threading.Lock()
        self._session = self._new_session()
        # (key id, salt) -> AESGCM of a session key that opened a blob, least recently
        # used first.
        self._openers: OrderedDict[tuple[str, bytes], AESGCM] = OrderedDict()
        _live.add(self)

    def _derive(self, template: Any, salt: bytes) -> AESGCM:
        expand = template.copy()
        expand.update(salt + b"\x01")
        return AESGCM(expand.digest())

    def _new_session(self) -> tuple[bytes, AESGCM, Iterator[int]]:
        salt = _urandom(SALT_BYTES)
        return salt, self._derive(self._current, salt), itertools.count(1)

    def _writer(self) -> tuple[bytes, AESGCM, Iterator[int]]:
        """The session to seal the next message with (a new one every 2**28 messages)."""
        session = self._session
        if next(session[2]) <= SESSION_MESSAGES:  # next() on a count is atomic
            return session
        with self._lock:
            if self._session is session:
                self._session = self._new_session()
            session = self._session
        next(session[2])
        return session

    def _opener(self, key_id: str, salt: bytes) -> tuple[AESGCM, bool] | None:
        """The AESGCM of (key id, salt) and whether it is cached; None for an unknown id.

        A cached one is marked recently used; a new one is derived but only kept once
        it has opened a blob (forged blobs must not push real sessions out).
        """
        found = self._openers.get((key_id, salt))
        if found is not None:
            # No lock on this (cache-hit) path: move_to_end is one atomic C call; the
            # key may have been evicted since the get, which only loses the reordering.
            try:
                self._openers.move_to_end((key_id, salt))
            except KeyError:
                pass
            return found, True
        template = self._templates.get(key_id)
        if template is None:
            return None
        return self._derive(template, salt), False

    def _keep(self, key_id: str, salt: bytes, opener: AESGCM) -> None:
        with self._lock:
            self._openers[key_id, salt] = opener
            while len(self._openers) > OPENER_CACHE_SIZE:
                self._openers.popitem(last=False)

    def _after_fork(self) -> None:
        """A child must not continue its parent's session (their nonces could meet)."""
        self._lock = threading.Lock()
        self._session = self._new_session()

    @classmethod
    def from_env(
        cls,
        environ: Mapping[str, str] | None = None,
        *,
        tenant: str | None = None,
        max_size: int = DEFAULT_MAX_SIZE,
    ) -> AesGcmEncryptor:
        """The encryptor for ``tenant`` keyed by ``CACHEKIT_MASTER_KEY`` (E001/E002)
        and ``CACHEKIT_PREVIOUS_MASTER_KEYS`` in ``environ`` (default ``os.environ``)."""
        return cls(keyring_from_env(environ), tenant, max_size=max_size)

    def __repr__(self) -> str:
        return f"AesGcmEncryptor(key_id={self.key_id!r}, tenant={self.tenant!r})"

    def __reduce__(self) -> NoReturn:
        raise TypeError("an AesGcmEncryptor holds key material and cannot be pickled")

    def encrypt(self, plaintext: bytes, aad: bytes) -> bytes:
        """Encrypt ``plaintext`` bound to ``aad`` under the current key (see module doc)."""
        if not isinstance(plaintext, _BUFFERS) or not isinstance(aad, _BUFFERS):
            raise EncryptionError(
                "encrypt() takes bytes for plaintext and aad, not "
                f"{type(plaintext).__name__} and {type(aad).__name__}."
            )
        if type(plaintext) is not bytes:
            plaintext = bytes(plaintext)  # any buffer, even non-contiguous: one copy
        if type(aad) is not bytes:
            aad = bytes(aad)
        if len(plaintext) > self.max_size:
            raise EncryptionError(
                f"a value of {len(plaintext)} bytes exceeds the encryptor's max_size "
                f"({self.max_size} bytes)."
            )
        salt, sealer, _ = self._writer()
        nonce = _urandom(NONCE_BYTES)
        sealed = sealer.encrypt(nonce, plaintext, _VERSION + aad + self._aad_suffix)
        return _VERSION + salt + nonce + sealed

    def decrypt(self, blob: bytes, aad: bytes, *, key_id: str) -> bytes:
        """The plaintext of ``blob``; DecryptionError (E003) for anything not sealed by
        :meth:`encrypt` under key ``key_id``, this tenant and exactly this ``aad``."""
        if type(key_id) is not str or not isinstance(aad, _BUFFERS):
            _fail()
        if type(aad) is not bytes:
            aad = bytes(aad)
        if type(blob) is not bytes:
            if not isinstance(blob, _BUFFERS) or memoryview(blob).nbytes > self._max_blob:
                _fail()
            blob = bytes(blob)  # bytearray, memoryview, bytes subclass: one copy
        if not OVERHEAD <= len(blob) <= self._max_blob or blob[0] != FORMAT_VERSION:
            _fail()
        salt = blob[1 : 1 + SALT_BYTES]
        found = self._opener(key_id, salt)
        if found is None:
            _fail()  # a key id this keyring does not hold
        opener, cached = found
        try:
            plaintext = opener.decrypt(
                blob[1 + SALT_BYTES : _HEADER], blob[_HEADER:], _VERSION + aad + self._aad_suffix
            )
        except (InvalidTag, ValueError, OverflowError, TypeError):
            raise DecryptionError() from None
        if not cached:
            self._keep(key_id, salt, opener)
        return plaintext


_live: weakref.WeakSet[AesGcmEncryptor] = weakref.WeakSet()


def _reseed_after_fork() -> None:
    for encryptor in list(_live):
        encryptor._after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reseed_after_fork)
