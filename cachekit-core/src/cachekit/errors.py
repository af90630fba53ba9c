"""The cachekit error hierarchy.

Every error has a stable ``code`` (``E001`` ...). Codes are part of the public API:
they are safe to match on, to alert on and to search for in the docs
(docs/errors.md lists each one with its fix). Messages say what happened and how
to fix it; they never contain key material or cached values.

This module imports nothing from cachekit.
"""

from __future__ import annotations

__all__ = [
    "BackendError",
    "BackendUnavailableError",
    "CacheKeyError",
    "CachekitError",
    "CircuitOpenError",
    "ConfigurationError",
    "DecryptionError",
    "DeserializationError",
    "EncryptionError",
    "EnvelopeError",
    "GenerationRollbackError",
    "IntegrityError",
    "MasterKeyFormatError",
    "MasterKeyMissingError",
    "PluginConflictError",
    "PluginLoadError",
    "PluginNotFoundError",
    "SerializationError",
    "TenantRequiredError",
    "ValueTooLargeError",
    "error_codes",
]


class CachekitError(Exception):
    """Base class of every error raised by cachekit. ``code`` is stable."""

    code: str = "E000"
    #: One line telling the user what to do; appended to the message.
    hint: str = ""

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        self.message = message
        if hint is not None:
            self.hint = hint
        text = f"[{self.code}] {message}"
        if self.hint:
            text = f"{text} {self.hint}"
        super().__init__(text)

    def __reduce__(self) -> tuple[object, ...]:
        # Keep errors picklable (multiprocessing, concurrent.futures).
        return (_rebuild_error, (type(self), self.message, self.hint))


def _rebuild_error(cls: type[CachekitError], message: str, hint: str) -> CachekitError:
    return cls(message, hint=hint)


# --- keys and encryption -------------------------------------------------------------


class MasterKeyMissingError(CachekitError):
    """E001: encryption was requested but ``CACHEKIT_MASTER_KEY`` is not set."""

    code = "E001"
    hint = (
        "Generate one with `cachekit keygen` (or `openssl rand -hex 32`) and export it as "
        "CACHEKIT_MASTER_KEY."
    )

    def __init__(self, message: str | None = None, *, hint: str | None = None) -> None:
        super().__init__(
            message
            or (
                "CACHEKIT_MASTER_KEY not set: the CACHEKIT_MASTER_KEY environment variable "
                "must be set to use encryption."
            ),
            hint=hint,
        )


class MasterKeyFormatError(CachekitError, ValueError):
    """E002: the master key is not hex or is shorter than 32 bytes."""

    code = "E002"
    hint = "Generate a valid key with `cachekit keygen` (64 hex characters = 32 bytes)."

    def __init__(self, message: str | None = None, *, hint: str | None = None) -> None:
        super().__init__(
            message or "CACHEKIT_MASTER_KEY must be hex-encoded, minimum 32 bytes.", hint=hint
        )


class DecryptionError(CachekitError):
    """E003: authenticated decryption failed (wrong key, tampering, moved blob)."""

    code = "E003"
    hint = (
        "The entry was written under another key, tenant or cache key, or was modified. "
        "It is safe to delete it; check CACHEKIT_MASTER_KEY / CACHEKIT_PREVIOUS_MASTER_KEYS "
        "if this happens after a key change."
    )

    def __init__(self, message: str | None = None, *, hint: str | None = None) -> None:
        super().__init__(
            message or "Decryption failed: authentication tag verification failed.", hint=hint
        )


class SerializationError(CachekitError, TypeError):
    """E004: the serializer cannot encode this value (unsupported type)."""

    code = "E004"


class DeserializationError(CachekitError, ValueError):
    """E005: bytes could not be decoded by the serializer that claims them."""

    code = "E005"


class EnvelopeError(CachekitError, ValueError):
    """E006: a stored envelope is corrupt, truncated, of an unknown version or serializer.

    Inside the decorator this is always handled as a cache miss; it only reaches
    code that calls :mod:`cachekit.envelope` directly.
    """

    code = "E006"


class ValueTooLargeError(CachekitError, ValueError):
    """E007: a serialized value exceeds the configured ``max_value_size``."""

    code = "E007"


class IntegrityError(CachekitError):
    """E008: a signed payload (pickle) failed authentication or carries no signature."""

    code = "E008"
    hint = "The entry was not written by a process holding the same signing key; it is ignored."


class EncryptionError(CachekitError):
    """E009: encryption could not be performed (encryptor misconfigured)."""

    code = "E009"


# --- backends ------------------------------------------------------------------------


class BackendError(CachekitError):
    """E010: a backend operation failed. Inside the decorator this fails open."""

    code = "E010"


class BackendUnavailableError(BackendError, ConnectionError):
    """E011: the backend cannot be reached (refused, timed out, reset)."""

    code = "E011"


class GenerationRollbackError(BackendError):
    """E012: a generation counter read lower than this process has seen it, or broken.

    Someone who can write to the backend set it back (or replaced it with another
    type), or it was lost with its data. cachekit handles it: the counter is raised
    past the highest value seen, which invalidates the entries that depend on it.
    """

    code = "E012"
    hint = (
        "Check who writes to the backend's cachekit:gen: keys; restrict write access "
        "(ACLs) where invalidation matters."
    )


# --- keys ----------------------------------------------------------------------------


class CacheKeyError(CachekitError, TypeError):
    """E020: an argument cannot be turned into a stable cache key."""

    code = "E020"


# --- reliability ---------------------------------------------------------------------


class CircuitOpenError(BackendError):
    """E030: the circuit breaker for a backend endpoint is open; no I/O was attempted."""

    code = "E030"


# --- configuration and plugins -------------------------------------------------------


class ConfigurationError(CachekitError, ValueError):
    """E040: invalid decorator option, environment variable or setting."""

    code = "E040"


class PluginNotFoundError(ConfigurationError, ImportError):
    """E041: nothing registered provides the requested backend, serializer or encryptor."""

    code = "E041"


class PluginLoadError(CachekitError, ImportError):
    """E042: a plugin's entry point failed to import or register."""

    code = "E042"


class PluginConflictError(ConfigurationError):
    """E043: two plugins claim the same name or URL scheme."""

    code = "E043"


class TenantRequiredError(ConfigurationError):
    """E044: a multi-tenant cache was called without a tenant."""

    code = "E044"


def error_codes() -> dict[str, type[CachekitError]]:
    """Map every stable code to its exception class (used by docs and tests)."""
    found: dict[str, type[CachekitError]] = {}
    pending: list[type[CachekitError]] = [CachekitError]
    while pending:
        cls = pending.pop()
        found.setdefault(cls.code, cls)
        pending.extend(cls.__subclasses__())
    return dict(sorted(found.items()))
