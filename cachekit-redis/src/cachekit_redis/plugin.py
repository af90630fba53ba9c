"""The cachekit plugin module named by this distribution's entry point.

It imports nothing heavy: the factories import redis-py when a backend is built.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from cachekit.hookspecs import BackendSpec, hookimpl

SCHEMES = (
    "redis",
    "rediss",
    "unix",
    "redis+cluster",
    "rediss+cluster",
    "redis+sentinel",
    "rediss+sentinel",
)


def _sync(url: str, **options: Any) -> Any:
    from cachekit_redis.backend import RedisBackend

    return RedisBackend(url, **options)


def _async(url: str, **options: Any) -> Any:
    from cachekit_redis.aio import AsyncRedisBackend

    return AsyncRedisBackend(url, **options)


@hookimpl
def cachekit_backends() -> Iterable[BackendSpec]:
    return [
        BackendSpec(
            name="redis",
            schemes=SCHEMES,
            factory=_sync,
            async_factory=_async,
            description="Redis (standalone, TLS, unix socket, Cluster, Sentinel) via redis-py",
        )
    ]
