"""Parsing of the URL schemes cachekit-redis serves.

* ``redis://[[user]:password@]host[:port][/db]`` and ``rediss://`` (TLS)
* ``unix://[[user]:password@]/path/to/redis.sock[?db=N]``
* ``redis+cluster://[[user]:password@]host:port[,host:port...]`` (``rediss+cluster`` for TLS)
* ``redis+sentinel://[[user]:password@]host:port[,host:port...]/service_name[/db]``
  (``rediss+sentinel`` for TLS); ``?sentinel_password=...`` when the sentinels
  have a password of their own.

Query parameters (one policy for every scheme): the ones in :data:`QUERY_PARAMETERS`
are read, validated like the ``CACHEKIT_*`` variables and become
:class:`~cachekit_redis.settings.RedisSettings` values (``Target.options``; options
passed in code win over them, and they win over the variables). Every other
parameter - redis-py's ``max_connections``, ``timeout``, ``protocol``, ``retry_on_*``
among them, which cachekit sets itself - is rejected with E040 naming it and what to
use instead. Nothing in a URL is ever silently ignored.

Every error message shows the URL through :func:`cachekit.config.redact_url`, which
masks the password whatever characters it holds; when a password with an unencoded
``/``, ``?``, ``#`` or ``&`` makes the URL unreadable, the message quotes nothing
else from it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

from cachekit.config import redact_url
from cachekit.errors import ConfigurationError

__all__ = ["QUERY_PARAMETERS", "Target", "parse"]

_KINDS = {
    "redis": "standalone",
    "rediss": "standalone",
    "unix": "standalone",
    "redis+cluster": "cluster",
    "rediss+cluster": "cluster",
    "redis+sentinel": "sentinel",
    "rediss+sentinel": "sentinel",
}

#: The query parameters cachekit reads, with what they hold. Each of the first seven
#: sets the RedisSettings option of the same name.
QUERY_PARAMETERS = {
    "socket_timeout": "seconds a command may wait for its reply (> 0)",
    "socket_connect_timeout": "seconds to establish a connection (> 0)",
    "client_name": "the name CLIENT LIST shows for cachekit's connections",
    "ssl_ca_certs": "TLS schemes only: the CA certificates file",
    "ssl_certfile": "TLS schemes only: the client certificate file",
    "ssl_keyfile": "TLS schemes only: the client key file",
    "ssl_cert_reqs": "TLS schemes only: none, optional or required (default)",
    "ssl_check_hostname": "TLS schemes only: true or false",
    "db": "redis://, rediss:// and unix:// only: the database number",
    "sentinel_password": "redis+sentinel:// only: the Sentinels' own password",
}

_POOL_SIZE = (
    "the pool size is cachekit's: set CACHEKIT_REDIS_POOL_SIZE or RedisBackend(url, pool_size=N)"
)
_POOL_TIMEOUT = (
    "the wait for a free pooled connection is cachekit's: set CACHEKIT_REDIS_POOL_TIMEOUT "
    "or RedisBackend(url, pool_timeout=seconds)"
)
_RETRIES = "cachekit never retries a command (the circuit breaker handles failures); remove it"
_RAW = "cachekit reads raw replies itself; remove it"
_USERINFO = (
    "write the credentials before the host: redis://user:password@host:6379/0 "
    "(percent-encode '/', '?', '#' and '%' in them as %2F, %3F, %23 and %25)"
)
#: redis-py URL parameters cachekit refuses, and what to do instead.
_REJECTED = {
    "max_connections": _POOL_SIZE,
    "pool_size": _POOL_SIZE,
    "timeout": _POOL_TIMEOUT,
    "pool_timeout": _POOL_TIMEOUT,
    "protocol": "cachekit always speaks RESP2, which its change notifications need; remove it",
    "retry_on_timeout": _RETRIES,
    "retry_on_error": _RETRIES,
    "retry": _RETRIES,
    "retries": _RETRIES,
    "health_check_interval": "pass it in code: RedisBackend(url, health_check_interval=N)",
    "socket_keepalive": "cachekit always turns TCP keepalive on; remove it",
    "socket_keepalive_options": "cachekit always turns TCP keepalive on; remove it",
    "password": _USERINFO,
    "username": _USERINFO,
    "ssl": "use a TLS scheme: rediss://, rediss+cluster:// or rediss+sentinel://",
    "decode_responses": _RAW,
    "encoding": _RAW,
    "encoding_errors": _RAW,
    "legacy_responses": _RAW,
    "socket_read_size": _RAW,
}
_TLS_PARAMETERS = frozenset(
    {"ssl_ca_certs", "ssl_certfile", "ssl_keyfile", "ssl_cert_reqs", "ssl_check_hostname"}
)
_BOOLEANS = {"true": True, "yes": True, "on": True, "1": True}
_BOOLEANS.update({"false": False, "no": False, "off": False, "0": False})
_SECRET_NAME = re.compile(r"pass|pwd|secret|token", re.IGNORECASE)
_HOST = re.compile(r"[\w.~%-]+|\[[0-9A-Fa-f:.]+(?:%25[\w.~-]+)?\]")
_SERVICE = re.compile(r"[^\s@/?#]+")
_UNREADABLE = (
    "it cannot be read as a Redis URL. A password (or user name) holding '/', '?', '#' or "
    "'&' must have them percent-encoded: %2F, %3F, %23, %26 (and '%' as %25); an '@' "
    "after the host, in a query value, as %40"
)


@dataclass(frozen=True)
class Target:
    kind: str  # "standalone" | "cluster" | "sentinel"
    endpoint: str  # the URL with any password masked
    # Standalone: the server's redis-py connection kwargs - connection_class, host and
    # port or path, db, username, password, and the TLS options of the query (also in
    # ``options``). Nothing else: every other setting comes from RedisSettings.
    connection: dict[str, Any] = field(default_factory=dict)
    nodes: tuple[tuple[str, int], ...] = ()  # cluster startup nodes or sentinels
    service: str | None = None
    db: int = 0
    username: str | None = None
    password: str | None = None
    sentinel_password: str | None = None
    tls: bool = False
    path: str | None = None  # unix:// - the socket
    #: RedisSettings values from the query string: (name, value) pairs, validated.
    options: tuple[tuple[str, Any], ...] = ()

    @property
    def unix(self) -> bool:
        return self.path is not None

    def __repr__(self) -> str:  # never the password, whatever the dataclass would print
        return f"Target({self.kind!r}, {self.endpoint!r})"


class _Invalid(Exception):
    """Why a URL is refused; ``parse`` turns it into E040 with the URL redacted."""


def _bad(url: str, why: str) -> ConfigurationError:
    return ConfigurationError(
        f"invalid Redis URL {redact_url(url)!r}: {why.rstrip('.')}. Examples: "
        "redis://localhost:6379/0, redis+cluster://host1:7000,host2:7001, "
        "redis+sentinel://host:26379/mymaster/0."
    )


def parse(url: str) -> Target:
    """A URL's :class:`Target`; E040 (:class:`ConfigurationError`) for anything wrong in it."""
    if not isinstance(url, str) or "://" not in url:
        raise _bad(str(url), "not a URL")
    scheme, rest = url.split("://", 1)
    scheme = scheme.lower()
    if scheme not in _KINDS:
        shown = repr(scheme) if re.fullmatch(r"[a-z][a-z0-9+.-]*", scheme) else "in it"
        raise _bad(url, f"unknown scheme {shown}")
    # RFC 3986: the authority (user info and hosts) ends at the first '/', '?' or '#'.
    end = min([i for i in (rest.find(c) for c in "/?#") if i >= 0] or [len(rest)])
    authority, tail = rest[:end], rest[end:]
    try:
        return _parse(scheme, authority, tail)
    except _Invalid as exc:
        # An '@' past the authority: most likely a password with an unencoded '/', '?'
        # or '#'. Then any detail could quote part of it: say nothing but how to fix it.
        why = _UNREADABLE if "@" in tail else str(exc)
        raise _bad(url, why) from None


def _parse(scheme: str, authority: str, tail: str) -> Target:
    kind = _KINDS[scheme]
    tls = scheme.startswith("rediss")
    tail, hash_sign, _ = tail.partition("#")
    if hash_sign:
        raise _Invalid("'#' starts a fragment; a Redis URL has none (in a password: %23)")
    path, _, query = tail.partition("?")
    userinfo, at, hostpart = authority.rpartition("@")
    username = password = None
    shown_userinfo = ""
    if at:
        user, colon, secret = userinfo.partition(":")
        username = unquote(user) or None
        password = unquote(secret) if colon else None
        # A lone word before '@' is a user name (as for redis-py), but shown masked:
        # it is often a password that lost its ':'.
        shown_userinfo = f"{user}:***@" if colon and user else "***@"
    values = _query(query, scheme, kind, tls)
    db = values.pop("db", None)
    sentinel_password = values.pop("sentinel_password", None)
    options = tuple(sorted(values.items()))
    shown_query = _shown_query(query)
    endpoint = f"{scheme}://{shown_userinfo}{hostpart}{path}{shown_query}"
    if kind == "cluster":
        if path.strip("/"):
            raise _Invalid("a cluster URL has no database path (Redis Cluster has only db 0)")
        return Target(
            "cluster",
            endpoint,
            nodes=_hosts(hostpart, 6379),
            username=username,
            password=password,
            tls=tls,
            options=options,
        )
    if kind == "sentinel":
        parts = [p for p in path.split("/") if p]
        if not parts:
            raise _Invalid(
                "a sentinel URL needs the service name: redis+sentinel://host:26379/mymaster"
            )
        if len(parts) > 2:
            raise _Invalid("a sentinel URL's path is /service or /service/db")
        service = unquote(parts[0])
        if not _SERVICE.fullmatch(service):
            raise _Invalid(f"service name {service!r} is not valid")
        sentinel_db = 0
        if len(parts) > 1:
            sentinel_db = _database(parts[1])
        return Target(
            "sentinel",
            endpoint,
            nodes=_hosts(hostpart, 26379),
            service=service,
            db=sentinel_db,
            username=username,
            password=password,
            sentinel_password=sentinel_password,
            tls=tls,
            options=options,
        )
    from redis.connection import SSLConnection, UnixDomainSocketConnection

    connection: dict[str, Any] = {}
    socket_path = None
    if scheme == "unix":
        if hostpart:
            raise _Invalid(
                "a unix:// URL has no host; the path needs three slashes: "
                "unix:///var/run/redis/redis.sock"
            )
        socket_path = unquote(path)
        if not socket_path.strip("/"):
            raise _Invalid("no socket path given: unix:///var/run/redis/redis.sock")
        connection.update(connection_class=UnixDomainSocketConnection, path=socket_path)
    else:
        ((host, port),) = _hosts(hostpart, 6379, single=True)
        connection.update(host=host, port=port)
        if tls:
            connection["connection_class"] = SSLConnection
        if "@" in path:
            raise _Invalid("an '@' in the database path")
        in_path = path.strip("/")
        if in_path:
            path_db = _database(in_path)
            if db is not None and db != path_db:
                raise _Invalid(f"two databases: /{path_db} in the path and ?db={db}")
            db = path_db
    db = db or 0
    connection["db"] = db
    connection.update((k, v) for k, v in options if k in _TLS_PARAMETERS)
    if username:
        connection["username"] = username
    if password:
        connection["password"] = password
    return Target(
        "standalone",
        endpoint,
        connection=connection,
        db=db,
        username=username,
        password=password,
        tls=tls,
        path=socket_path,
        options=options,
    )


def _database(text: str) -> int:
    if not text.isdigit():
        raise _Invalid(f"database {text!r} is not a number")
    return int(text)


def _hosts(text: str, default_port: int, single: bool = False) -> tuple[tuple[str, int], ...]:
    out = []
    for raw in text.split(","):
        item = raw.strip()
        if not item:
            continue
        if item.startswith("["):  # [IPv6] or [IPv6]:port
            host, _, rest = item.partition("]")
            host += "]"
            port = rest[1:] if rest.startswith(":") else rest
        else:
            host, _, port = item.partition(":")
        if host and not _HOST.fullmatch(host):
            raise _Invalid(f"host {host!r} is not valid")
        if port and not (port.isdigit() and 0 < int(port) < 65536):
            raise _Invalid(f"port {port!r} is not a number from 1 to 65535")
        out.append((unquote(host.strip("[]")) or "localhost", int(port or default_port)))
    if not out:
        if single:  # redis:// without a host: redis-py's default, the local server
            return (("localhost", default_port),)
        raise _Invalid("no host given")
    if single and len(out) > 1:
        raise _Invalid(
            "several hosts for one server: use redis+cluster:// or redis+sentinel:// for those"
        )
    return tuple(out)


def _query(query: str, scheme: str, kind: str, tls: bool) -> dict[str, Any]:
    """Validated query parameters: RedisSettings values, plus ``db``/``sentinel_password``."""
    from cachekit_redis.settings import RedisSettings

    out: dict[str, Any] = {}
    after_secret = False  # a value after a password may be the rest of it ('&' unencoded)
    for item in query.split("&"):
        if not item:
            continue
        raw_name, equals, raw_value = item.partition("=")
        if not equals:
            raise _Invalid(
                "a query item without '=' (in a query password, percent-encode '&' as %26)"
            )
        name, value = unquote(raw_name), unquote(raw_value)
        shown = "(not shown)" if after_secret else repr(value)
        if name in _REJECTED:
            raise _Invalid(f"cachekit does not take ?{name}= in the URL: {_REJECTED[name]}")
        if name not in QUERY_PARAMETERS:
            if after_secret or _SECRET_NAME.search(name):
                raise _Invalid(
                    "an unsupported query parameter (in a query password, percent-encode "
                    f"'&' as %26); supported: {', '.join(QUERY_PARAMETERS)}"
                )
            raise _Invalid(
                f"unsupported query parameter {name!r}; supported: {', '.join(QUERY_PARAMETERS)}"
            )
        if name in out:
            raise _Invalid(f"?{name}= given twice")
        if name == "sentinel_password":
            after_secret = True
            if kind != "sentinel":
                raise _Invalid("?sentinel_password= is for redis+sentinel:// URLs only")
            out[name] = value
            continue
        if value == "":
            raise _Invalid(f"?{name}= has no value")
        if "@" in raw_value:  # only a password may hold one (else the URL is ambiguous)
            raise _Invalid(f"an '@' in the value of ?{name}= (percent-encode it as %40)")
        if name == "db":
            if kind == "cluster":
                raise _Invalid("Redis Cluster has only db 0: remove ?db=")
            if kind == "sentinel":
                raise _Invalid(
                    "put the database in the path: redis+sentinel://host:26379/service/db"
                )
            if not value.isdigit():
                raise _Invalid(f"?db={shown} is not a database number")
            out[name] = int(value)
        elif name in _TLS_PARAMETERS:
            if not tls:
                raise _Invalid(
                    f"?{name}= is a TLS option, and {scheme}:// is not TLS: use "
                    "rediss://, rediss+cluster:// or rediss+sentinel://"
                )
            out[name] = _tls_value(name, value, shown)
        elif name == "client_name":
            out[name] = value
        else:  # the timeouts
            try:
                out[name] = float(value)
            except ValueError:
                raise _Invalid(f"?{name}={shown} must be a number of seconds") from None
    settings = {k: v for k, v in out.items() if k not in ("db", "sentinel_password")}
    tls_options = {k: settings.pop(k) for k in list(settings) if k in _TLS_PARAMETERS}
    try:  # the same checks as for the CACHEKIT_* variables and options in code
        RedisSettings(**settings, ssl=tuple(sorted(tls_options.items())))
    except ConfigurationError as exc:
        why = "a query value is not valid" if after_secret else f"in the query: {exc.message}"
        raise _Invalid(why) from None
    return out


def _tls_value(name: str, value: str, shown: str) -> Any:
    if name == "ssl_check_hostname":
        try:
            return _BOOLEANS[value.lower()]
        except KeyError:
            raise _Invalid(f"?{name}={shown} must be true or false") from None
    if name == "ssl_cert_reqs":
        return value.lower()  # RedisSettings checks it
    return value


def _shown_query(query: str) -> str:
    """The query as given, with the value of every password-like parameter masked."""
    if not query:
        return ""
    items = []
    for item in query.split("&"):
        name, equals, _ = item.partition("=")
        items.append(f"{name}=***" if equals and _SECRET_NAME.search(unquote(name)) else item)
    return "?" + "&".join(items)
