"""Master keys, their public ids, and the subkeys derived from them.

The environment holds the keys:

* ``CACHEKIT_MASTER_KEY``: the current master key, hex, at least 32 bytes. Every
  new entry is encrypted under it. Unset or empty is E001; anything else that is
  not a valid key (not hex, odd length, too short, only whitespace) is E002.
* ``CACHEKIT_PREVIOUS_MASTER_KEYS``: retired keys that stay readable, newest
  first, separated by commas, spaces or newlines (empty items are ignored). Each
  item is checked like the current key; E002 names the variable and the item's
  position, never its value.

A :class:`Keyring` holds them, current first. Nothing else here ever sees the raw
key material: reprs, errors and logs show only **key ids**, a 12-hex-character
public fingerprint of each master key (the first 48 bits of
HMAC-SHA256(master, ``b"cachekit/v1/key-id"``)). The key id is written in every
envelope, so a reader picks the right key directly (no trial decryption).

Subkeys come from HKDF-SHA256 (``cryptography``), one purpose label each. The HKDF
``info`` is a sequence of length-prefixed fields, so no two (label, tenant) pairs
can produce the same input:

* encryption, per tenant: ``info = [b"cachekit/v1/encryption", tenant]`` where the
  tenant field is ``b"\\x00"`` for no tenant and ``b"\\x01" + utf-8`` otherwise;
* key naming: ``info = [b"cachekit/v1/key-naming"]``, tenant-independent. It keys
  the BLAKE2b digest of the arguments in backend key names
  (:attr:`Keyring.digest_key`; the core keys each function's digests with keyed
  BLAKE2b of it over the function's key prefix), and is derived from the **oldest**
  key still listed, so a rotation keeps every key name (see
  :attr:`Keyring.naming_key_id`). After a leak, stop listing the leaked key: that
  is what moves the names away from it.

The core's pickle-signing key (``cachekit.signing``) is HKDF of the same master key
under the bare label ``b"cachekit/v1/pickle-signing"``; the framed ``info`` used
here always starts with a length prefix (a zero byte), so it can never equal it.

Parsed keyrings are cached per (master, previous) pair of strings, and the
per-tenant subkeys per keyring in a bounded LRU, so building one encryptor per
tenant costs a dictionary lookup once a tenant has been seen.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import threading
import weakref
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from typing import Any, Generic, NoReturn, TypeVar

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from cachekit.errors import ConfigurationError, MasterKeyFormatError, MasterKeyMissingError
from cachekit.signing import MIN_KEY_BYTES, parse_hex_key

__all__ = [
    "ENCRYPTION_LABEL",
    "KEY_ID_LABEL",
    "KEY_NAMING_LABEL",
    "MASTER_KEY_ENV",
    "PREVIOUS_KEYS_ENV",
    "SUBKEY_CACHE_SIZE",
    "Keyring",
    "clear_caches",
    "hkdf_info",
    "key_id_of",
    "keyring_from_env",
    "tenant_field",
]

MASTER_KEY_ENV = "CACHEKIT_MASTER_KEY"
PREVIOUS_KEYS_ENV = "CACHEKIT_PREVIOUS_MASTER_KEYS"

KEY_ID_LABEL = b"cachekit/v1/key-id"
ENCRYPTION_LABEL = b"cachekit/v1/encryption"
KEY_NAMING_LABEL = b"cachekit/v1/key-naming"

#: Hex characters of a key id (48 bits: ids only need to tell a handful of keys apart).
KEY_ID_CHARS = 12
#: Derived (master key, tenant) subkeys kept per keyring.
SUBKEY_CACHE_SIZE = 4096
#: Parsed keyrings kept (one per distinct pair of environment strings).
KEYRING_CACHE_SIZE = 32
SUBKEY_BYTES = 32

_K = TypeVar("_K")
_V = TypeVar("_V")


_all_lrus: weakref.WeakSet[_Lru[Any, Any]] = weakref.WeakSet()


def _reset_locks_after_fork() -> None:
    for lru in list(_all_lrus):
        lru.after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_locks_after_fork)


class _Lru(Generic[_K, _V]):
    """A small thread-safe LRU mapping (it never prints its contents)."""

    __slots__ = ("__weakref__", "_data", "_lock", "maxsize")

    def __init__(self, maxsize: int) -> None:
        self.maxsize = maxsize
        self._data: OrderedDict[_K, _V] = OrderedDict()
        self._lock = threading.Lock()
        _all_lrus.add(self)

    def after_fork(self) -> None:
        """In a forked child: a lock the parent held at the fork would never be freed."""
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"<LRU {len(self._data)}/{self.maxsize}>"

    def __len__(self) -> int:
        return len(self._data)

    def get(self, key: _K) -> _V | None:
        with self._lock:
            value = self._data.get(key)
            if value is not None:
                self._data.move_to_end(key)
            return value

    def put(self, key: _K, value: _V) -> None:
        with self._lock:
            self._data[key] = value
            self._data.move_to_end(key)
            while len(self._data) > self.maxsize:
                self._data.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._data.clear()


# --- encodings ---------------------------------------------------------------------


def tenant_field(tenant: str | None) -> bytes:
    """The tenant as one unambiguous field: ``b"\\x00"`` for None, ``b"\\x01"`` + UTF-8."""
    if tenant is None:
        return b"\x00"
    if not isinstance(tenant, str):
        raise ConfigurationError(f"tenant must be a str or None, not {type(tenant).__name__}.")
    # surrogatepass: every str has exactly one encoding, so distinct tenants never meet.
    return b"\x01" + tenant.encode("utf-8", "surrogatepass")


def hkdf_info(*fields: bytes) -> bytes:
    """Length-prefixed concatenation: ``("a", "bc")`` and ``("ab", "c")`` differ."""
    return b"".join(len(field).to_bytes(4, "big") + field for field in fields)


def key_id_of(master: bytes) -> str:
    """The public id of a master key: 12 hex characters, the same in every process."""
    return hmac.digest(master, KEY_ID_LABEL, "sha256").hex()[:KEY_ID_CHARS]


def _hkdf(master: bytes, info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=SUBKEY_BYTES, salt=None, info=info).derive(master)


# --- the keyring -------------------------------------------------------------------


class _MasterKey:
    """One master key. Its bytes stay private; only the id is ever shown."""

    __slots__ = ("_material", "key_id")

    def __init__(self, material: bytes) -> None:
        self._material = material
        self.key_id = key_id_of(material)

    def __repr__(self) -> str:
        return f"<master key {self.key_id}>"

    def __reduce__(self) -> NoReturn:
        raise TypeError("master keys cannot be pickled")


class Keyring:
    """The current master key and the previous ones that stay readable.

    ``key_ids`` lists the ids, current first. Build one from the environment with
    :func:`keyring_from_env`, or from raw bytes with ``Keyring(current, previous)``
    (each key at least 32 bytes; previous keys newest first). A key listed twice is
    kept once, at its first position.
    """

    __slots__ = ("_by_id", "_digest_key", "_keys", "_subkeys", "key_id", "key_ids")

    def __init__(self, current: bytes, previous: Iterable[bytes] = ()) -> None:
        keys: list[_MasterKey] = []
        seen: set[bytes] = set()
        for position, given in enumerate((current, *previous)):
            if not isinstance(given, (bytes, bytearray)):
                raise ConfigurationError(
                    f"master key #{position} must be bytes, not {type(given).__name__}."
                )
            material = bytes(given)
            if len(material) < MIN_KEY_BYTES:
                raise MasterKeyFormatError(
                    f"master key #{position} is {len(material)} bytes; "
                    f"at least {MIN_KEY_BYTES} bytes are required."
                )
            if material in seen:
                continue
            seen.add(material)
            keys.append(_MasterKey(material))
        by_id: dict[str, _MasterKey] = {}
        for key in keys:
            if key.key_id in by_id:  # two different keys, same 48-bit id: never in practice
                raise ConfigurationError(
                    f"two different master keys share the key id {key.key_id!r}; "
                    "generate a new key with `cachekit keygen`."
                )
            by_id[key.key_id] = key
        self._keys: tuple[_MasterKey, ...] = tuple(keys)
        self._by_id = by_id
        self.key_id: str = keys[0].key_id
        self.key_ids: tuple[str, ...] = tuple(key.key_id for key in keys)
        self._digest_key = _hkdf(keys[-1]._material, hkdf_info(KEY_NAMING_LABEL))
        self._subkeys: _Lru[tuple[str, str | None], bytes] = _Lru(SUBKEY_CACHE_SIZE)

    def __repr__(self) -> str:
        return f"Keyring(key_ids={self.key_ids!r})"

    def __reduce__(self) -> NoReturn:
        raise TypeError("a Keyring holds key material and cannot be pickled")

    @property
    def naming_key_id(self) -> str:
        """Id of the key the digest key comes from: the oldest key still listed.

        It stays the same while a rotation adds keys in front of it, so backend key
        names do not move; it changes (and every key name with it, once) when that
        key is removed from ``CACHEKIT_PREVIOUS_MASTER_KEYS``.
        """
        return self.key_ids[-1]

    @property
    def digest_key(self) -> bytes:
        """The key-naming subkey (32 bytes), independent of the tenant."""
        return self._digest_key

    def encryption_key(self, key_id: str, tenant: str | None) -> bytes:
        """The encryption subkey of master key ``key_id`` for ``tenant`` (LRU-cached).

        Raises KeyError for a key id this keyring does not hold.
        """
        cache_key = (key_id, tenant)
        subkey = self._subkeys.get(cache_key)
        if subkey is None:
            master = self._by_id[key_id]
            subkey = _hkdf(master._material, hkdf_info(ENCRYPTION_LABEL, tenant_field(tenant)))
            self._subkeys.put(cache_key, subkey)
        return subkey

    def encryption_keys(self, tenant: str | None) -> dict[str, bytes]:
        """key id -> encryption subkey for ``tenant``, for every key of the ring."""
        return {key_id: self.encryption_key(key_id, tenant) for key_id in self.key_ids}


# --- reading the environment -------------------------------------------------------

_keyrings: _Lru[bytes, Keyring] = _Lru(KEYRING_CACHE_SIZE)


def _split_previous(raw: str) -> list[tuple[int, str]]:
    """(1-based position, item) of every key, separated by commas and/or whitespace.

    Whitespace separates too: ``bytes.fromhex`` skips it, so two keys joined by a
    space or a newline would otherwise parse silently as one long, wrong key.
    """
    return list(enumerate(raw.replace(",", " ").split(), start=1))


def _parse(master_raw: str, previous_raw: str) -> Keyring:
    current = parse_hex_key(master_raw, MASTER_KEY_ENV)
    previous: list[bytes] = []
    for position, item in _split_previous(previous_raw):
        previous.append(parse_hex_key(item, f"{PREVIOUS_KEYS_ENV} (item {position})"))
    return Keyring(current, previous)


def _cache_key(master_raw: str, previous_raw: str) -> bytes:
    # A one-way fingerprint of the two strings: the cache never holds them verbatim.
    fields = [s.encode("utf-8", "surrogatepass") for s in (master_raw, previous_raw)]
    return hashlib.sha256(hkdf_info(b"cachekit/v1/keyring-cache", *fields)).digest()


def keyring_from_env(environ: Mapping[str, str] | None = None) -> Keyring:
    """The keyring described by ``CACHEKIT_MASTER_KEY`` and ``CACHEKIT_PREVIOUS_MASTER_KEYS``.

    ``environ`` defaults to ``os.environ``. Raises
    :class:`~cachekit.errors.MasterKeyMissingError` (E001) when the master key is
    unset or empty and :class:`~cachekit.errors.MasterKeyFormatError` (E002) for any
    key that is not hex or shorter than 32 bytes. There is no fallback key.
    """
    env = os.environ if environ is None else environ
    master_raw = env.get(MASTER_KEY_ENV)
    if not master_raw:
        raise MasterKeyMissingError()
    previous_raw = env.get(PREVIOUS_KEYS_ENV) or ""
    if not isinstance(master_raw, str) or not isinstance(previous_raw, str):
        raise ConfigurationError(
            f"{MASTER_KEY_ENV} and {PREVIOUS_KEYS_ENV} must be strings in the environment."
        )
    cache_key = _cache_key(master_raw, previous_raw)
    keyring = _keyrings.get(cache_key)
    if keyring is None:
        keyring = _parse(master_raw, previous_raw)
        _keyrings.put(cache_key, keyring)
    return keyring


def clear_caches() -> None:
    """Forget every parsed keyring (tests; a process that dropped its keys)."""
    _keyrings.clear()
