"""Client settings: explicit timeouts, a bounded pool, no retries, validated.

cachekit never relies on redis-py's defaults for anything that decides how long a
call may block: those defaults have changed between releases (redis-py 6 added
retries with backoff; with a frozen server the defaults of 8.1 made one call block
for about a minute). Every value below is set explicitly on every client.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import Any

from cachekit.errors import ConfigurationError

__all__ = ["ENVIRONMENT", "RedisSettings"]

#: Variables read by cachekit-redis (documented in docs/backends/redis.md).
ENVIRONMENT = {
    "CACHEKIT_SOCKET_TIMEOUT": ("socket_timeout", float),
    "CACHEKIT_SOCKET_CONNECT_TIMEOUT": ("socket_connect_timeout", float),
    "CACHEKIT_REDIS_POOL_SIZE": ("pool_size", int),
    "CACHEKIT_REDIS_POOL_TIMEOUT": ("pool_timeout", float),
}

_SSL_OPTIONS = frozenset(
    {"ssl_ca_certs", "ssl_certfile", "ssl_keyfile", "ssl_cert_reqs", "ssl_check_hostname"}
)


@dataclass(frozen=True)
class RedisSettings:
    """How cachekit talks to Redis. Every field has an explicit, short default.

    ``socket_timeout``: seconds a command may wait for its reply (default 0.5).
    ``socket_connect_timeout``: seconds to establish a connection (default 0.5).
    ``pool_size``: connections per client, at most (default 32).
    ``pool_timeout``: seconds to wait for a free pooled connection (default: the
    socket timeout); the pool never grows past ``pool_size``.
    ``retries``: always 0 - the circuit breaker decides what happens after a failure.
    """

    socket_timeout: float = 0.5
    socket_connect_timeout: float = 0.5
    pool_size: int = 32
    pool_timeout: float | None = None
    client_name: str = "cachekit"
    retries: int = 0
    health_check_interval: int = 0
    ssl: tuple[tuple[str, Any], ...] = ()

    def __post_init__(self) -> None:
        for name in ("socket_timeout", "socket_connect_timeout"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise ConfigurationError(f"{name} must be a number of seconds > 0, got {value!r}.")
        if (
            isinstance(self.pool_size, bool)
            or not isinstance(self.pool_size, int)
            or (self.pool_size < 1)
        ):
            raise ConfigurationError(f"pool_size must be an integer >= 1, got {self.pool_size!r}.")
        pt = self.pool_timeout
        if pt is not None and (isinstance(pt, bool) or not isinstance(pt, (int, float)) or pt < 0):
            raise ConfigurationError(f"pool_timeout must be seconds >= 0, got {pt!r}.")
        if self.retries != 0:
            raise ConfigurationError(
                "cachekit-redis never retries a command (the circuit breaker handles failures); "
                f"retries must be 0, got {self.retries!r}."
            )

    @property
    def effective_pool_timeout(self) -> float:
        return self.socket_timeout if self.pool_timeout is None else float(self.pool_timeout)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> RedisSettings:
        """Defaults, then ``CACHEKIT_*`` variables, then explicit ``overrides``."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for var, (name, conv) in ENVIRONMENT.items():
            raw = env.get(var, "").strip()
            if not raw:
                continue
            try:
                values[name] = conv(raw)
            except ValueError:
                kind = "a number of seconds" if conv is float else "a whole number"
                raise ConfigurationError(f"{var}={raw!r} must be {kind}.") from None
        known = {f.name for f in fields(cls)} - {"ssl", "retries"}
        ssl = {k: v for k, v in overrides.items() if k in _SSL_OPTIONS}
        unknown = set(overrides) - known - _SSL_OPTIONS
        if unknown:
            raise ConfigurationError(
                f"the redis backend does not take option(s) {sorted(unknown)}; it accepts "
                f"{sorted(known | _SSL_OPTIONS)}."
            )
        values.update({k: v for k, v in overrides.items() if k in known})
        try:
            settings = cls(**values)
        except ConfigurationError as exc:
            names = ", ".join(sorted(ENVIRONMENT))
            raise ConfigurationError(f"{exc.message} (check {names})") from None
        return replace(settings, ssl=tuple(sorted(ssl.items())))

    def connection_kwargs(self) -> dict[str, Any]:
        """The keyword arguments every connection is created with (pinned by a test)."""
        return {
            "socket_timeout": float(self.socket_timeout),
            "socket_connect_timeout": float(self.socket_connect_timeout),
            "socket_keepalive": True,
            "health_check_interval": self.health_check_interval,
            "client_name": self.client_name,
            "retry_on_timeout": False,
            # RESP2, always: redis-py 8 switched its default to RESP3, whose push
            # messages change how replies and notifications are read.
            "protocol": 2,
            "retry_on_error": [],
            **dict(self.ssl),
        }
