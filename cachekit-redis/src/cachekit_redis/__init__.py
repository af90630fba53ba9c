"""cachekit-redis: the Redis L2 for cachekit.

Installing this distribution is enough: it registers the ``redis://``,
``rediss://``, ``unix://``, ``redis+cluster://`` and ``redis+sentinel://`` schemes
through the ``cachekit`` entry point, so ``CACHEKIT_REDIS_URL=redis://host:6379/0``
or ``@cache(backend="redis://...")`` just works.

Importing this package is cheap: redis-py is imported when a backend is built.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["AsyncRedisBackend", "RedisBackend", "RedisSettings", "__version__"]

TYPE_CHECKING = False
if TYPE_CHECKING:
    from cachekit_redis.aio import AsyncRedisBackend
    from cachekit_redis.backend import RedisBackend
    from cachekit_redis.settings import RedisSettings


def __getattr__(name: str) -> object:
    if name == "RedisBackend":
        from cachekit_redis.backend import RedisBackend

        return RedisBackend
    if name == "AsyncRedisBackend":
        from cachekit_redis.aio import AsyncRedisBackend

        return AsyncRedisBackend
    if name == "RedisSettings":
        from cachekit_redis.settings import RedisSettings

        return RedisSettings
    raise AttributeError(f"module 'cachekit_redis' has no attribute {name!r}")
