"""Parsing of the URL schemes cachekit-redis serves.

* ``redis://[[user]:password@]host[:port][/db]`` and ``rediss://`` (TLS)
* ``unix://[[user]:password@]/path/to/redis.sock[?db=N]``
* ``redis+cluster://[[user]:password@]host:port[,host:port...]`` (``rediss+cluster`` for TLS)
* ``redis+sentinel://[[user]:password@]host:port[,host:port...]/service_name[/db]``
  (``rediss+sentinel`` for TLS); ``?sentinel_password=...`` when the sentinels
  have a password of their own.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from cachekit.config import redact_url
from cachekit.errors import ConfigurationError

__all__ = ["Target", "parse"]


@dataclass(frozen=True)
class Target:
    kind: str  # "standalone" | "cluster" | "sentinel"
    endpoint: str  # the URL with any password masked
    connection: dict[str, Any] = field(default_factory=dict)  # for standalone
    nodes: tuple[tuple[str, int], ...] = ()  # cluster startup nodes or sentinels
    service: str | None = None
    db: int = 0
    username: str | None = None
    password: str | None = None
    sentinel_password: str | None = None
    tls: bool = False


def _bad(url: str, why: str) -> ConfigurationError:
    return ConfigurationError(
        f"invalid Redis URL {redact_url(url)!r}: {why}. Examples: redis://localhost:6379/0, "
        "redis+cluster://host1:7000,host2:7001, redis+sentinel://host:26379/mymaster/0."
    )


def _hosts(url: str, text: str, default_port: int) -> tuple[tuple[str, int], ...]:
    out = []
    for raw in text.split(","):
        item = raw.strip()
        if not item:
            continue
        host, _, port = item.rpartition(":") if ":" in item else (item, "", str(default_port))
        host = host.strip("[]")
        try:
            out.append((host or "localhost", int(port)))
        except ValueError:
            raise _bad(url, f"port {port!r} is not a number") from None
    if not out:
        raise _bad(url, "no host given")
    return tuple(out)


def parse(url: str) -> Target:
    if not isinstance(url, str) or "://" not in url:
        raise _bad(str(url), "not a URL")
    scheme, rest = url.split("://", 1)
    scheme = scheme.lower()
    endpoint = redact_url(url) if scheme in ("redis", "rediss", "unix") else _redact_multi(url)
    if scheme in ("redis", "rediss", "unix"):
        from redis.connection import parse_url

        if scheme != "unix":
            path = urlsplit(url).path.strip("/")
            if path and not path.isdigit():
                raise _bad(url, f"database {path!r} is not a number")
        try:
            kwargs = parse_url(url)
        except ValueError as exc:
            raise _bad(url, str(exc)) from None
        return Target("standalone", endpoint, connection=kwargs, db=int(kwargs.get("db") or 0))
    if scheme not in ("redis+cluster", "rediss+cluster", "redis+sentinel", "rediss+sentinel"):
        raise _bad(url, f"unknown scheme {scheme!r}")
    tls = scheme.startswith("rediss")
    query = ""
    if "?" in rest:
        rest, query = rest.split("?", 1)
    params = {k: v[-1] for k, v in parse_qs(query).items()}
    userinfo, _, hostpart = rest.rpartition("@")
    username = password = None
    if userinfo:
        user, _, pw = userinfo.partition(":")
        username = unquote(user) or None
        password = unquote(pw) or None
    hostlist, _, path = hostpart.partition("/")
    if scheme.endswith("cluster"):
        if path.strip("/"):
            raise _bad(url, "a cluster URL has no database path (Redis Cluster has only db 0)")
        return Target(
            "cluster",
            endpoint,
            nodes=_hosts(url, hostlist, 6379),
            username=username,
            password=password,
            tls=tls,
        )
    parts = [p for p in path.split("/") if p]
    if not parts:
        raise _bad(
            url, "a sentinel URL needs the service name: redis+sentinel://host:26379/mymaster"
        )
    db = 0
    if len(parts) > 1:
        try:
            db = int(parts[1])
        except ValueError:
            raise _bad(url, f"database {parts[1]!r} is not a number") from None
    return Target(
        "sentinel",
        endpoint,
        nodes=_hosts(url, hostlist, 26379),
        service=parts[0],
        db=db,
        username=username,
        password=password,
        sentinel_password=params.get("sentinel_password"),
        tls=tls,
    )


def _redact_multi(url: str) -> str:
    scheme, rest = url.split("://", 1)
    head, sep, tail = rest.partition("?")
    userinfo, at, hostpart = head.rpartition("@")
    if at:
        user = userinfo.partition(":")[0]
        head = f"{user}:***@{hostpart}" if user else f"***@{hostpart}"
    if "password" in tail:
        tail = "&".join(
            f"{k}=***" if "password" in k else f"{k}={v}"
            for k, _, v in (p.partition("=") for p in tail.split("&"))
        )
    return f"{scheme}://{head}{sep}{tail}"
