"""Client settings: explicit timeouts, a bounded pool, no retries, validated.

cachekit never relies on redis-py's defaults for anything that decides how long a
call may block: those defaults have changed between releases (redis-py 6 added
retries with backoff; with a frozen server the defaults of 8.1 made one call block
for about a minute). Every value below is set explicitly on every client.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any, Protocol

from cachekit.breaker import BreakerConfig
from cachekit.errors import ConfigurationError

__all__ = ["ENVIRONMENT", "RedisSettings"]


class Target(Protocol):
    """What :meth:`RedisSettings.for_target` reads of a parsed URL (cachekit_redis.urls.Target).

    A protocol, so that this module does not import urls.py, which validates a URL's
    query with RedisSettings: the dependency runs one way, urls -> settings.
    """

    @property
    def options(self) -> tuple[tuple[str, Any], ...]: ...

    @property
    def tls(self) -> bool: ...

    @property
    def unix(self) -> bool: ...

    @property
    def endpoint(self) -> str: ...


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
_CERT_REQS = ("none", "optional", "required")


def _check_ssl(options: tuple[tuple[str, Any], ...]) -> None:
    import ssl

    for name, value in options:
        if name not in _SSL_OPTIONS:
            raise ConfigurationError(
                f"unknown TLS option {name!r}; the TLS options are {sorted(_SSL_OPTIONS)}."
            )
        if name == "ssl_check_hostname":
            ok = isinstance(value, bool)
            want = "True or False"
        elif name == "ssl_cert_reqs":
            ok = isinstance(value, ssl.VerifyMode) or (
                isinstance(value, str) and value in _CERT_REQS
            )
            want = "'none', 'optional', 'required' or an ssl.VerifyMode"
        else:
            ok = isinstance(value, (str, os.PathLike)) and bool(os.fspath(value))
            want = "a file path"
        if not ok:
            raise ConfigurationError(f"{name} must be {want}, got {value!r}.")


def _check_client_name(value: object) -> None:
    # Redis refuses names with spaces or special characters (CLIENT SETNAME).
    if not isinstance(value, str) or not value or any(not "!" <= c <= "~" for c in value):
        raise ConfigurationError(
            "client_name must be a non-empty name of printable ASCII characters without "
            f"spaces, got {value!r}."
        )


def _check_circuit_breaker(value: object) -> None:
    if value is not None and not isinstance(value, (bool, BreakerConfig)):
        raise ConfigurationError(
            "circuit_breaker (the Redis Cluster per-node breakers) must be a "
            "cachekit.breaker.BreakerConfig, True (settings from the "
            f"CACHEKIT_CIRCUIT_BREAKER_* variables) or False (no per-node breakers), got {value!r}."
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
    ``client_name``: what CLIENT LIST shows for cachekit's connections.
    ``ssl``: TLS options (``ssl_ca_certs``, ``ssl_certfile``, ``ssl_keyfile``,
    ``ssl_cert_reqs``, ``ssl_check_hostname``) as sorted (name, value) pairs; they need
    a TLS URL (``rediss://`` and relatives).
    The URL's query may set ``socket_timeout``, ``socket_connect_timeout``,
    ``client_name`` and the TLS options too (:mod:`cachekit_redis.urls`); see
    :meth:`for_target` for which wins.
    ``circuit_breaker``: Redis Cluster only - the settings of the breaker kept per
    cluster node (see :mod:`cachekit_redis.nodes`): a
    :class:`cachekit.breaker.BreakerConfig`, True/None for the
    ``CACHEKIT_CIRCUIT_BREAKER_*`` variables (default), or False for none (then every
    node's failures count on the endpoint's one breaker, as for a single server).
    """

    socket_timeout: float = 0.5
    socket_connect_timeout: float = 0.5
    pool_size: int = 32
    pool_timeout: float | None = None
    client_name: str = "cachekit"
    retries: int = 0
    health_check_interval: int = 0
    ssl: tuple[tuple[str, Any], ...] = ()
    circuit_breaker: BreakerConfig | bool | None = None
    #: The fields passed in code (to :meth:`from_env`): a URL's query does not override them.
    _explicit: frozenset[str] = field(default=frozenset(), repr=False, compare=False)

    def __post_init__(self) -> None:
        _check_circuit_breaker(self.circuit_breaker)
        for name in ("socket_timeout", "socket_connect_timeout"):
            value = getattr(self, name)
            if (
                isinstance(value, bool)
                or not isinstance(value, (int, float))
                or not value > 0
                or not math.isfinite(value)
            ):
                raise ConfigurationError(f"{name} must be a number of seconds > 0, got {value!r}.")
        _check_client_name(self.client_name)
        _check_ssl(self.ssl)
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
        known = {f.name for f in fields(cls)} - {"ssl", "retries", "_explicit"}
        ssl = {
            k: v.lower() if k == "ssl_cert_reqs" and isinstance(v, str) else v
            for k, v in overrides.items()
            if k in _SSL_OPTIONS
        }
        unknown = set(overrides) - known - _SSL_OPTIONS
        if unknown:
            raise ConfigurationError(
                f"the redis backend does not take option(s) {sorted(unknown)}; it accepts "
                f"{sorted(known | _SSL_OPTIONS)}."
            )
        values.update({k: v for k, v in overrides.items() if k in known})
        # Options from code only: checked before the hint about the variables below.
        _check_circuit_breaker(values.get("circuit_breaker"))
        if "client_name" in values:
            _check_client_name(values["client_name"])
        try:
            settings = cls(**values)
        except ConfigurationError as exc:
            names = ", ".join(sorted(ENVIRONMENT))
            raise ConfigurationError(f"{exc.message} (check {names})") from None
        return replace(
            settings,
            ssl=tuple(sorted(ssl.items())),
            _explicit=frozenset(overrides) & (known | _SSL_OPTIONS),
        )

    def for_target(self, target: Target) -> RedisSettings:
        """These settings with the URL's query parameters (``target.options``) applied.

        The order, last wins: defaults, ``CACHEKIT_*`` variables, the URL's query,
        options in code. TLS options (from the URL or code) need a TLS URL: E040
        otherwise. Idempotent; the clients are always built from its result.
        """
        from_url = dict(target.options)
        ssl = {k: v for k, v in from_url.items() if k in _SSL_OPTIONS}
        ssl.update(self.ssl)
        if ssl and not target.tls:
            where = "a unix socket" if target.unix else f"{target.endpoint.split(':')[0]}://"
            raise ConfigurationError(
                f"TLS options {sorted(ssl)} were given for {target.endpoint!r}, but "
                f"{where} is not TLS: use rediss://, rediss+cluster:// or rediss+sentinel://."
            )
        changes: dict[str, Any] = {
            k: v for k, v in from_url.items() if k not in _SSL_OPTIONS and k not in self._explicit
        }
        if tuple(sorted(ssl.items())) != self.ssl:
            changes["ssl"] = tuple(sorted(ssl.items()))
        return replace(self, **changes) if changes else self

    def connection_kwargs(self, unix: bool = False) -> dict[str, Any]:
        """The keyword arguments every connection is created with (pinned by a test).

        ``unix``: for a unix socket, which takes no TCP options (keepalive).
        """
        tcp = {} if unix else {"socket_keepalive": True}
        return {
            "socket_timeout": float(self.socket_timeout),
            "socket_connect_timeout": float(self.socket_connect_timeout),
            **tcp,
            "health_check_interval": self.health_check_interval,
            "client_name": self.client_name,
            "retry_on_timeout": False,
            # RESP2, always: redis-py 8 switched its default to RESP3, whose push
            # messages change how replies and notifications are read.
            "protocol": 2,
            "retry_on_error": [],
            **dict(self.ssl),
        }
