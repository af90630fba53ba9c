"""Building redis-py clients (sync and asyncio) from a parsed URL and settings."""

from __future__ import annotations

import threading
from contextlib import suppress
from contextvars import ContextVar
from queue import LifoQueue
from time import monotonic
from typing import Any

from cachekit_redis.failover import watch_for
from cachekit_redis.settings import RedisSettings
from cachekit_redis.urls import Target

__all__ = [
    "LazyClient",
    "build_async_client",
    "build_sync_client",
    "close_client",
    "no_retry",
    "raw_connection",
]


def no_retry(asyncio: bool = False) -> Any:
    """A Retry object that never retries (redis-py's default would)."""
    if asyncio:
        from redis.asyncio.retry import Retry as AsyncRetry
        from redis.backoff import NoBackoff

        return AsyncRetry(NoBackoff(), 0)
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    return Retry(NoBackoff(), 0)


def _auth(target: Target) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if target.username:
        out["username"] = target.username
    if target.password:
        out["password"] = target.password
    return out


_queue_get = LifoQueue.get


class _PoolQueue(LifoQueue[Any]):
    """The free connections of a :func:`_pool`, which knows when one came back broken.

    A caller that waited for a connection while another one failed (redis-py disconnects
    a connection on a timeout or connection error before releasing it) gets a
    ConnectionError at once instead of the connection: the server has just stopped
    answering, and using it would add a second timeout to the wait.
    """

    #: How many connections came back broken so far (counted by the pool's release).
    broken = 0

    def get(self, block: bool = True, timeout: float | None = None) -> Any:
        seen = self.broken
        item = _queue_get(self, block, timeout)  # not super().get: every command comes here
        if self.broken != seen:
            self.put_nowait(item)
            from redis.exceptions import ConnectionError

            raise ConnectionError(
                "a pooled connection failed while this call waited for one; not retried"
            )
        return item


def _pool(**kwargs: Any) -> Any:
    """A redis-py BlockingConnectionPool on a :class:`_PoolQueue` (built on first use, so
    that importing this module does not import redis)."""
    from redis.connection import BlockingConnectionPool

    base_release = BlockingConnectionPool.release

    class Pool(BlockingConnectionPool):
        def release(self, connection: Any) -> None:
            if getattr(connection, "_sock", True) is None:  # disconnected after an error
                self.pool.broken += 1
            base_release(self, connection)  # not super().release: every command comes here

    return Pool(queue_class=_PoolQueue, **kwargs)


#: When the running task's current wait for a pooled connection began (asyncio pool).
_waiting_since: ContextVar[float | None] = ContextVar("cachekit_pool_wait", default=None)


def _async_pool(**kwargs: Any) -> Any:
    """:func:`_pool` for redis.asyncio: a caller that waited while a connection came back
    broken gets a ConnectionError instead of reconnecting to the frozen server."""
    import asyncio
    import sys

    import redis.asyncio as aredis
    from redis.exceptions import ConnectionError

    class Pool(aredis.BlockingConnectionPool):
        broken_at = float("-inf")

        async def get_connection(self, *args: Any, **options: Any) -> Any:
            token = _waiting_since.set(monotonic())
            try:
                return await super().get_connection(*args, **options)
            finally:
                _waiting_since.reset(token)

        async def ensure_connection(self, connection: Any) -> None:
            since = _waiting_since.get()
            if since is not None and self.broken_at >= since:
                # get_connection releases it again
                raise ConnectionError(
                    "a pooled connection failed while this call waited for one; not retried"
                )
            await super().ensure_connection(connection)

        async def release(self, connection: Any) -> None:
            # Disconnected after an error; not after a cancellation (redis-py 8 drops a
            # cancelled request's connection too): the caller gave up, the server is fine.
            if not connection.is_connected and not isinstance(
                sys.exc_info()[1], asyncio.CancelledError
            ):
                self.broken_at = monotonic()
            await super().release(connection)

    return Pool(**kwargs)


class LazyClient:
    """A client built at its first use, then used directly.

    redis-py's synchronous RedisCluster connects (CLUSTER SLOTS) in its constructor:
    built eagerly, a Cluster that is unreachable when a function is first called would
    raise out of the call instead of failing open. Built here, the failure surfaces
    from the backend operation (translated, counted by the breaker) and the next
    operation tries again.
    """

    def __init__(self, make: Any) -> None:
        self._make = make
        self._client: Any = None
        self._lock = threading.Lock()

    def __getattr__(self, name: str) -> Any:
        client = self._client
        if client is None:
            with self._lock:
                if self._client is None:
                    self._client = self._make()
                client = self._client
        return getattr(client, name)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()


def close_client(client: Any, kind: str) -> None:
    """Close a sync client's connections, its pool's included (redis-py's ``close()``
    leaves a pool it was given open). The client stays usable: it reconnects."""
    with suppress(Exception):  # closing a broken client must not raise
        client.close()
        if kind != "cluster":  # a LazyClient's close() closes the Cluster's node pools
            client.connection_pool.disconnect()


def _cluster_kwargs(conn: dict[str, Any]) -> dict[str, Any]:
    """Connection kwargs for RedisCluster: its ``retry`` is an argument of its own (redis-py
    rejects one among the node kwargs) and it has no ``retry_on_timeout`` (redis.asyncio's
    rejects it, the sync one deprecates it): the node connections never retry anyway."""
    return {k: v for k, v in conn.items() if k not in ("retry", "retry_on_timeout")}


def build_sync_client(target: Target, settings: RedisSettings) -> Any:
    import redis

    settings = settings.for_target(target)  # the URL's query; E040 for TLS options sans TLS
    conn = {**settings.connection_kwargs(unix=target.unix), "retry": no_retry()}
    if target.kind == "standalone":
        pool = _pool(
            max_connections=settings.pool_size,
            timeout=settings.effective_pool_timeout,
            **{**target.connection, **conn},
        )
        return redis.Redis(connection_pool=pool)
    if target.kind == "cluster":
        from redis.cluster import ClusterNode, RedisCluster

        return LazyClient(
            lambda: RedisCluster(
                startup_nodes=[ClusterNode(h, p) for h, p in target.nodes],
                retry=no_retry(),
                max_connections=settings.pool_size,
                ssl=target.tls,
                **_auth(target),
                **_cluster_kwargs(conn),
            )
        )
    from redis.sentinel import Sentinel

    sentinel_kwargs = {
        "socket_timeout": settings.socket_timeout,
        "socket_connect_timeout": settings.socket_connect_timeout,
        "retry": no_retry(),
    }
    if target.sentinel_password:
        sentinel_kwargs["password"] = target.sentinel_password
    sentinel = Sentinel(
        list(target.nodes),
        sentinel_kwargs=sentinel_kwargs,
        ssl=target.tls,
        **_auth(target),
        **conn,
    )
    assert target.service is not None
    client = sentinel.master_for(target.service, db=target.db, max_connections=settings.pool_size)
    # Reset when the master moves (cachekit_redis.failover).
    watch_for(target).register(client.connection_pool)
    return client


def build_async_client(target: Target, settings: RedisSettings) -> Any:
    import redis.asyncio as aredis

    settings = settings.for_target(target)
    conn = {**settings.connection_kwargs(unix=target.unix), "retry": no_retry(asyncio=True)}
    if target.kind == "standalone":
        pool = _async_pool(
            max_connections=settings.pool_size,
            timeout=settings.effective_pool_timeout,
            **{**_async_connection(target.connection), **conn},
        )
        return aredis.Redis(connection_pool=pool)
    if target.kind == "cluster":
        from redis.asyncio.cluster import ClusterNode, RedisCluster

        return RedisCluster(
            startup_nodes=[ClusterNode(h, p) for h, p in target.nodes],
            retry=no_retry(asyncio=True),
            max_connections=settings.pool_size,
            ssl=target.tls,
            **_auth(target),
            **_cluster_kwargs(conn),
        )
    from redis.asyncio.sentinel import Sentinel

    # Read first: a move while the client is built only makes it renewed once more.
    epoch = watch_for(target).epoch
    sentinel_kwargs = {
        "socket_timeout": settings.socket_timeout,
        "socket_connect_timeout": settings.socket_connect_timeout,
        "retry": no_retry(asyncio=True),
    }
    if target.sentinel_password:
        sentinel_kwargs["password"] = target.sentinel_password
    sentinel = Sentinel(
        list(target.nodes),
        sentinel_kwargs=sentinel_kwargs,
        ssl=target.tls,
        **_auth(target),
        **conn,
    )
    assert target.service is not None
    client = sentinel.master_for(target.service, db=target.db, max_connections=settings.pool_size)
    # The backend replaces a client whose epoch is behind its watch's (the master moved).
    client.cachekit_epoch = epoch
    return client


def _async_connection(kwargs: dict[str, Any]) -> dict[str, Any]:
    """Swap redis-py's sync connection classes (from parse_url) for the asyncio ones."""
    from redis import connection as sync_conn
    from redis.asyncio import connection as async_conn

    out = dict(kwargs)
    cls = out.get("connection_class")
    if cls is sync_conn.SSLConnection:
        out["connection_class"] = async_conn.SSLConnection
    elif cls is sync_conn.UnixDomainSocketConnection:
        out["connection_class"] = async_conn.UnixDomainSocketConnection
    elif cls is not None:
        out["connection_class"] = async_conn.Connection
    return out


def raw_connection(
    target: Target,
    settings: RedisSettings,
    address: dict[str, Any] | None = None,
    *,
    client_name: str | None = None,
) -> Any:
    """An unpooled, unconnected redis-py (sync) connection to one server of ``target``.

    Configured as the clients' connections are: the URL's query applied, explicit
    timeouts, RESP2, no retries, TCP keepalive (not on a unix socket), the TLS options
    and class on a TLS URL, the URL's credentials. ``address``: ``{"host": ..., "port":
    ...}`` of a Cluster primary or Sentinel-named master (extra keys, such as ``db``,
    win); default: the standalone server of ``target``. For the coherence listener.
    """
    from redis.connection import Connection, SSLConnection, UnixDomainSocketConnection

    settings = settings.for_target(target)
    kwargs: dict[str, Any] = dict(target.connection) if address is None else {}
    if target.kind != "standalone":
        kwargs.update(_auth(target), db=target.db)
    kwargs.update(address or {})
    kwargs.pop("connection_class", None)
    kwargs.update(settings.connection_kwargs(unix=target.unix), retry=no_retry())
    if client_name is not None:
        kwargs["client_name"] = client_name
    cls: Any = (
        UnixDomainSocketConnection if target.unix else SSLConnection if target.tls else Connection
    )
    return cls(**kwargs)
