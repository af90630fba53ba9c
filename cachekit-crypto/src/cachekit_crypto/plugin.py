"""The cachekit plugin module named by this distribution's entry point.

It registers the ``aes-gcm`` encryptor that ``@cache.secure`` and
``@cache(encryption=True)`` use. Importing it is cheap: ``cryptography`` is imported
by the factory, the first time an encryptor is built.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from cachekit.errors import ConfigurationError
from cachekit.hookspecs import EncryptorSpec, hookimpl
from cachekit.protocols import Encryptor

__all__ = ["ENCRYPTOR_NAME", "cachekit_encryptors", "make_encryptor"]

ENCRYPTOR_NAME = "aes-gcm"
_OPTIONS = ("tenant", "environ", "max_size")


def make_encryptor(
    tenant: str | None = None,
    environ: Mapping[str, str] | None = None,
    **options: Any,
) -> Encryptor:
    """Build the ``aes-gcm`` encryptor for ``tenant`` from the keys in ``environ``.

    ``environ`` defaults to ``os.environ``; the only other option is ``max_size``
    (largest value encrypted, in bytes). Raises E001/E002 for a missing or malformed
    ``CACHEKIT_MASTER_KEY`` / ``CACHEKIT_PREVIOUS_MASTER_KEYS`` and E040 for an
    unknown option.
    """
    max_size = options.pop("max_size", None)
    if options:
        raise ConfigurationError(
            f"encryptor {ENCRYPTOR_NAME!r} got unknown option(s) {', '.join(sorted(options))}; "
            f"it accepts {', '.join(_OPTIONS)}."
        )
    from cachekit_crypto.aesgcm import DEFAULT_MAX_SIZE, AesGcmEncryptor

    return AesGcmEncryptor.from_env(
        environ,
        tenant=tenant,
        max_size=DEFAULT_MAX_SIZE if max_size is None else max_size,
    )


@hookimpl
def cachekit_encryptors() -> Iterable[EncryptorSpec]:
    return [
        EncryptorSpec(
            name=ENCRYPTOR_NAME,
            factory=make_encryptor,
            description="AES-256-GCM under short-lived derived keys, from CACHEKIT_MASTER_KEY",
        )
    ]
