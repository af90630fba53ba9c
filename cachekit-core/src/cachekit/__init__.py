"""cachekit: a function-result cache with an in-process L1 and an optional shared L2.

    from cachekit import cache

    @cache(ttl=300)
    def get_user(user_id: int) -> dict: ...

Nothing configured means L1 only. Set CACHEKIT_REDIS_URL (with cachekit-redis
installed) or pass ``backend=`` for a shared L2. See docs/ for the full guide.
"""

from __future__ import annotations

from cachekit._version import __version__
from cachekit.constants import MISSING
from cachekit.decorator import cache
from cachekit.errors import (
    CacheKeyError,
    CachekitError,
    ConfigurationError,
    DecryptionError,
    MasterKeyFormatError,
    MasterKeyMissingError,
    SerializationError,
)
from cachekit.ops import aclose, close, health, invalidate, stats

__all__ = [
    "MISSING",
    "CacheKeyError",
    "CachedFunction",
    "CachekitError",
    "ConfigurationError",
    "DecryptionError",
    "MasterKeyFormatError",
    "MasterKeyMissingError",
    "SerializationError",
    "__version__",
    "aclose",
    "cache",
    "close",
    "health",
    "hookimpl",
    "invalidate",
    "stats",
]


TYPE_CHECKING = False
if TYPE_CHECKING:
    from cachekit.hookspecs import hookimpl
    from cachekit.types import CachedFunction


def __getattr__(name: str) -> object:
    # Loaded on demand: the plugin marker pulls in pluggy, the types pull in typing.
    if name == "hookimpl":
        from cachekit.hookspecs import hookimpl

        return hookimpl
    if name == "CachedFunction":
        from cachekit.types import CachedFunction

        return CachedFunction
    raise AttributeError(f"module 'cachekit' has no attribute {name!r}")
