"""Building redis-py clients (sync and asyncio) from a parsed URL and settings."""

from __future__ import annotations

from typing import Any

from cachekit_redis.settings import RedisSettings
from cachekit_redis.urls import Target

__all__ = ["build_async_client", "build_sync_client", "no_retry"]


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


def build_sync_client(target: Target, settings: RedisSettings) -> Any:
    import redis
    from redis.connection import BlockingConnectionPool

    conn = {**settings.connection_kwargs(), "retry": no_retry()}
    if target.kind == "standalone":
        pool = BlockingConnectionPool(
            max_connections=settings.pool_size,
            timeout=settings.effective_pool_timeout,
            **{**target.connection, **conn},
        )
        return redis.Redis(connection_pool=pool)
    if target.kind == "cluster":
        from redis.cluster import ClusterNode, RedisCluster

        return RedisCluster(
            startup_nodes=[ClusterNode(h, p) for h, p in target.nodes],
            retry=no_retry(),
            max_connections=settings.pool_size,
            ssl=target.tls,
            **_auth(target),
            **conn,
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
    return sentinel.master_for(target.service, db=target.db, max_connections=settings.pool_size)


def build_async_client(target: Target, settings: RedisSettings) -> Any:
    import redis.asyncio as aredis

    conn = {**settings.connection_kwargs(), "retry": no_retry(asyncio=True)}
    if target.kind == "standalone":
        pool = aredis.BlockingConnectionPool(
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
            **conn,
        )
    from redis.asyncio.sentinel import Sentinel

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
    return sentinel.master_for(target.service, db=target.db, max_connections=settings.pool_size)


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
