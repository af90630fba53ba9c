"""cachekit-crypto: client-side AES-256-GCM for cachekit (``@cache.secure``).

Installing this distribution is enough: it registers the ``aes-gcm`` encryptor
through the ``cachekit`` entry point, and ``@cache.secure`` encrypts every value
with it before it reaches the shared backend. Keys come from
``CACHEKIT_MASTER_KEY`` (and ``CACHEKIT_PREVIOUS_MASTER_KEYS`` during a rotation).

Importing this package is cheap: ``cryptography`` is imported when an encryptor or
a keyring is first built.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["AesGcmEncryptor", "Keyring", "__version__", "keyring_from_env"]

TYPE_CHECKING = False
if TYPE_CHECKING:
    from cachekit_crypto.aesgcm import AesGcmEncryptor
    from cachekit_crypto.keys import Keyring, keyring_from_env


def __getattr__(name: str) -> object:
    if name == "AesGcmEncryptor":
        from cachekit_crypto.aesgcm import AesGcmEncryptor

        return AesGcmEncryptor
    if name == "Keyring":
        from cachekit_crypto.keys import Keyring

        return Keyring
    if name == "keyring_from_env":
        from cachekit_crypto.keys import keyring_from_env

        return keyring_from_env
    raise AttributeError(f"module 'cachekit_crypto' has no attribute {name!r}")
