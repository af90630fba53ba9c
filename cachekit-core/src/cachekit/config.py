"""Settings read from the environment, lazily (at a function's first call).

Every variable is validated with a message naming the variable and a valid
example. docs/configuration.md lists them all; a test keeps that list and
:data:`ENVIRONMENT` in step.
"""

from __future__ import annotations

import math
import os

from cachekit.errors import ConfigurationError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any

__all__ = [
    "BACKEND_VARIABLES",
    "DEFAULT_TTL",
    "ENVIRONMENT",
    "SECURE_MAX_TTL",
    "Settings",
    "backend_from_env",
    "parse_bool",
    "parse_ttl",
]

#: Default time to live of cached values, in seconds (CACHEKIT_DEFAULT_TTL overrides it).
DEFAULT_TTL = 3600.0
#: With encryption and a backend, ``ttl=None`` means this many seconds (one day):
#: every encrypted entry carries an authenticated expiry, so a copy put back later
#: is refused.
SECURE_MAX_TTL = 86400.0

#: Where the backend URL comes from when ``backend=`` is not given, in order.
BACKEND_VARIABLES = ("CACHEKIT_BACKEND", "CACHEKIT_REDIS_URL", "REDIS_URL")

#: Every environment variable cachekit (core and official plugins) reads, and what for.
ENVIRONMENT: dict[str, str] = {
    "CACHEKIT_BACKEND": "backend URL of any registered scheme (memory://, redis://, ...)",
    "CACHEKIT_REDIS_URL": "Redis URL for the L2 (used when CACHEKIT_BACKEND is unset)",
    "REDIS_URL": "fallback Redis URL (used when neither variable above is set)",
    "CACHEKIT_ENABLED": "false turns every cache into a pass-through (default true)",
    "CACHEKIT_DEFAULT_TTL": "default time to live in seconds, or 'none' for no expiry (3600)",
    "CACHEKIT_L1_MAX_SIZE_MB": "process-wide byte budget of all L1 caches in MB (100)",
    "CACHEKIT_L1_MAX_ENTRIES": "default entry bound of each function's L1 (10000)",
    "CACHEKIT_MAX_VALUE_SIZE_MB": "values larger than this are returned but not cached (64)",
    "CACHEKIT_SOCKET_TIMEOUT": "backend socket read/write timeout in seconds (cachekit-redis)",
    "CACHEKIT_SOCKET_CONNECT_TIMEOUT": "backend connect timeout in seconds (cachekit-redis)",
    "CACHEKIT_REDIS_POOL_SIZE": "most connections one Redis client opens (cachekit-redis, 32)",
    "CACHEKIT_REDIS_POOL_TIMEOUT": "seconds to wait for a free pooled connection (cachekit-redis)",
    "CACHEKIT_CIRCUIT_BREAKER": "false disables the circuit breaker (default true)",
    "CACHEKIT_CIRCUIT_BREAKER_FAILURE_THRESHOLD": "consecutive failures that open it (5)",
    "CACHEKIT_CIRCUIT_BREAKER_RECOVERY_TIMEOUT": "seconds it stays open (60)",
    "CACHEKIT_CIRCUIT_BREAKER_HALF_OPEN_CALLS": "probes admitted at once when half-open (1)",
    "CACHEKIT_MASTER_KEY": "hex master key, >= 32 bytes, for @cache.secure (cachekit-crypto)",
    "CACHEKIT_PREVIOUS_MASTER_KEYS": "comma-separated retired master keys still readable",
    "CACHEKIT_SIGNING_KEY": "hex key, >= 32 bytes, signing pickle payloads in shared backends",
    "CACHEKIT_ARROW_COMPRESSION": "none, lz4 or zstd: default of ArrowSerializer (cachekit-arrow)",
    "CACHEKIT_STRICT_PLUGINS": "1 makes a plugin that fails to load an error (E042)",
    "CACHEKIT_DISABLE_PLUGIN_AUTOLOAD": "1 loads only the core's built-in plugin",
}

_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


def parse_bool(name: str, raw: str, default: bool) -> bool:
    value = raw.strip().lower()
    if not value:
        return default
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ConfigurationError(f"{name}={raw!r} must be one of: true, false, 1, 0, yes, no, on, off.")


def parse_ttl(value: Any, what: str = "ttl", no_expiry: str = "ttl=None") -> float | None:
    """Seconds as a float, ``None`` for no expiry. Accepts int, float and timedelta.

    0 is refused, here and in CACHEKIT_DEFAULT_TTL: some caches read it as "never
    expires", others as "do not cache", so either reading would surprise someone.
    ``no_expiry`` is how the caller spells "no expiry" in messages.
    """
    if value is None:
        return None
    if type(value).__name__ == "timedelta" and hasattr(value, "total_seconds"):
        value = value.total_seconds()
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigurationError(
            f"{what} must be a number of seconds, a timedelta or None (no expiry); "
            f"got {type(value).__name__} {value!r}."
        )
    if math.isnan(value):
        raise ConfigurationError(f"{what} must be a number of seconds, got {value!r}.")
    if value == 0:
        raise ConfigurationError(
            f"{what}=0 is ambiguous (some caches read it as 'never expires', others as "
            f"'do not cache'), so cachekit refuses it. Use {no_expiry} for no expiry, or "
            "a number of seconds greater than 0."
        )
    if value < 0:
        raise ConfigurationError(
            f"{what} must be greater than 0 seconds (use {no_expiry} for no expiry); got {value!r}."
        )
    if value == float("inf"):
        raise ConfigurationError(
            f"{what} must be a finite number of seconds; for no expiry use {no_expiry}."
        )
    return float(value)


def backend_from_env(env: Mapping[str, str]) -> tuple[str | None, str | None]:
    """(URL, variable it came from) per BACKEND_VARIABLES, or (None, None)."""
    for name in BACKEND_VARIABLES:
        value = env.get(name, "").strip()
        if value:
            return value, name
    return None, None


def _positive(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise ConfigurationError(f"{name}={raw!r} must be a positive number.")
    return value


def _positive_int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise ConfigurationError(f"{name}={raw!r} must be a whole number of at least 1.")
    return value


class Settings:
    """The environment as cachekit understands it, validated. Read-only by convention."""

    __slots__ = (
        "backend_url",
        "backend_variable",
        "default_ttl",
        "enabled",
        "l1_max_entries",
        "max_value_size",
    )

    def __init__(
        self,
        *,
        enabled: bool = True,
        default_ttl: float | None = DEFAULT_TTL,
        l1_max_entries: int = 10_000,
        max_value_size: int = 64 * 1024 * 1024,
        backend_url: str | None = None,
        backend_variable: str | None = None,
    ) -> None:
        self.enabled = enabled
        self.default_ttl = default_ttl
        self.l1_max_entries = l1_max_entries
        self.max_value_size = max_value_size
        self.backend_url = backend_url
        self.backend_variable = backend_variable

    def __repr__(self) -> str:
        from cachekit.config import redact_url

        url = redact_url(self.backend_url) if self.backend_url else None
        return (
            f"Settings(enabled={self.enabled}, default_ttl={self.default_ttl}, "
            f"l1_max_entries={self.l1_max_entries}, max_value_size={self.max_value_size}, "
            f"backend_url={url!r}, backend_variable={self.backend_variable!r})"
        )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        raw_ttl = env.get("CACHEKIT_DEFAULT_TTL", "").strip()
        if not raw_ttl:
            ttl: float | None = DEFAULT_TTL
        elif raw_ttl.lower() in ("none", "never"):
            ttl = None
        else:
            try:
                seconds = float(raw_ttl)
            except ValueError:
                raise ConfigurationError(
                    f"CACHEKIT_DEFAULT_TTL={raw_ttl!r} must be seconds (e.g. 300) or 'none'."
                ) from None
            ttl = parse_ttl(seconds, "CACHEKIT_DEFAULT_TTL", "'none'")
        url, variable = backend_from_env(env)
        return cls(
            enabled=parse_bool("CACHEKIT_ENABLED", env.get("CACHEKIT_ENABLED", ""), True),
            default_ttl=ttl,
            l1_max_entries=_positive_int(env, "CACHEKIT_L1_MAX_ENTRIES", 10_000),
            max_value_size=int(_positive(env, "CACHEKIT_MAX_VALUE_SIZE_MB", 64) * 1024 * 1024),
            backend_url=url,
            backend_variable=variable,
        )


def redact_url(url: str) -> str:
    """``url`` with any password replaced by ``***`` (for logs, reprs and errors).

    Written for malformed URLs too: a password with an unencoded ``/``, ``?``, ``#``,
    ``@`` or ``&`` is masked whichever way the URL is read. Everything between the
    first ``:`` after ``://`` and the last ``@`` is masked (all of it when what comes
    before that ``:`` cannot be a user name), and so is everything after a query
    parameter whose name mentions a password. A URL may be masked more than needed.
    """
    import re

    text = str(url)
    scheme, sep, rest = text.partition("://")
    if not sep:  # not a URL ("host:6379", "redis:/user:pw@host"): mask all before the "@"
        head = re.match(r"[A-Za-z][A-Za-z0-9+.-]*:/*(?=.*@)", text)
        scheme = head.group(0) if head else ""
        rest = text[len(scheme) :]
    spans: list[tuple[int, int]] = []
    at = rest.rfind("@")
    if at >= 0:
        colon = rest.find(":", 0, at)
        user = bool(sep) and colon > 0 and not re.search(r"[/?#@]", rest[:colon])
        spans.append((colon + 1 if user else 0, at))
    key = r"(?:^|[?&;])[^=&?#;/@:]*(?:pass|pwd|secret|token)[^=&?#;/@:]*="
    found = re.search(key, rest, re.IGNORECASE)
    if found:  # its value may hold '&', even '&name=': mask all that follows
        spans.append((found.end(), len(rest)))
    merged: list[tuple[int, int]] = []
    for begin, end in sorted(spans):
        if merged and begin <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
        else:
            merged.append((begin, end))
    out, last = [], 0
    for begin, end in merged:
        out += [rest[last:begin], "***"]
        last = end
    return f"{scheme}{sep}{''.join(out)}{rest[last:]}"
