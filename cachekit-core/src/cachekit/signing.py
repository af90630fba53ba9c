"""Authentication of payloads that must not be trusted blindly (pickle).

A :class:`Signer` computes HMAC-SHA256 tags and verifies them in constant time.
Its key comes from ``CACHEKIT_SIGNING_KEY`` (hex, at least 32 bytes) or, when
that is unset, is derived from ``CACHEKIT_MASTER_KEY`` with HKDF-SHA256 under a
purpose label of its own, so the signing key is never the encryption key.

The core cannot depend on ``cryptography``; HKDF (RFC 5869) is two HMAC
invocations, done here with the standard library. cachekit-crypto derives its
own subkeys with ``cryptography``'s HKDF.

This module imports nothing from cachekit but errors.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Mapping

from cachekit.errors import ConfigurationError, MasterKeyFormatError

__all__ = [
    "MIN_KEY_BYTES",
    "TAG_SIZE",
    "Signer",
    "hkdf_sha256",
    "parse_hex_key",
    "signer_from_env",
]

MIN_KEY_BYTES = 32
TAG_SIZE = 32
_SIGNING_INFO = b"cachekit/v1/pickle-signing"


def hkdf_sha256(ikm: bytes, info: bytes, length: int = 32, salt: bytes = b"") -> bytes:
    """HKDF-SHA256 (RFC 5869): extract then expand ``length`` bytes for ``info``."""
    if length > 255 * 32:
        raise ValueError("HKDF-SHA256 can produce at most 8160 bytes")
    prk = hmac.new(salt or bytes(32), ikm, hashlib.sha256).digest()
    out, block, counter = b"", b"", 1
    while len(out) < length:
        block = hmac.new(prk, block + info + bytes([counter]), hashlib.sha256).digest()
        out += block
        counter += 1
    return out[:length]


def parse_hex_key(value: str, variable: str = "CACHEKIT_MASTER_KEY") -> bytes:
    """Decode a hex key of at least 32 bytes; raise E002 (never echoing the key) otherwise."""
    text = value.strip()
    if any(c.isspace() for c in text):
        # bytes.fromhex skips whitespace: two keys joined by a space or newline would
        # pass as one long key, silently different from either.
        raise MasterKeyFormatError(
            f"{variable} must be hex-encoded, minimum 32 bytes, and one key: it contains "
            "whitespace inside the key. Give a single key of hex characters only."
        )
    try:
        key = bytes.fromhex(text)
    except ValueError:
        key = b""
    if len(key) < MIN_KEY_BYTES:
        raise MasterKeyFormatError(
            f"{variable} must be hex-encoded, minimum 32 bytes "
            f"(got {len(text)} characters; expected at least 64 hex characters)."
        )
    return key


class Signer:
    """HMAC-SHA256 tags over payloads; constant-time verification."""

    __slots__ = ("_key", "key_id")

    def __init__(self, key: bytes) -> None:
        if len(key) < MIN_KEY_BYTES:
            raise ConfigurationError("a signing key must be at least 32 bytes.")
        self._key = key
        # A short public fingerprint, for logs and `cachekit doctor` only.
        self.key_id = hashlib.sha256(b"cachekit-key-id" + key).hexdigest()[:8]

    def __repr__(self) -> str:
        return f"Signer(key_id={self.key_id!r})"

    def sign(self, data: bytes) -> bytes:
        return hmac.new(self._key, data, hashlib.sha256).digest()

    def verify(self, data: bytes, tag: bytes) -> bool:
        return hmac.compare_digest(self.sign(data), tag)


def signer_from_env(environ: Mapping[str, str] | None = None) -> Signer | None:
    """The signer configured by the environment, or None when no key is set."""
    env = os.environ if environ is None else environ
    # Empty means unset; anything else must be a valid key (whitespace only is E002,
    # as cachekit-crypto says for the same variable).
    raw = env.get("CACHEKIT_SIGNING_KEY", "")
    if raw:
        return Signer(parse_hex_key(raw, "CACHEKIT_SIGNING_KEY"))
    master = env.get("CACHEKIT_MASTER_KEY", "")
    if master:
        return Signer(hkdf_sha256(parse_hex_key(master), _SIGNING_INFO))
    return None
