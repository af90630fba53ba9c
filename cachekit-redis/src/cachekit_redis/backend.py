"""The synchronous Redis backend (redis.Redis / RedisCluster / Sentinel master)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from contextlib import suppress
from time import monotonic
from typing import Any

from cachekit.constants import CAP_INVALIDATION, CAP_LOCKING, CAP_TTL, MISSING, Missing
from cachekit_redis.clients import build_sync_client
from cachekit_redis.coherence import RedisCoherence, coherence_for
from cachekit_redis.errors import translate
from cachekit_redis.settings import RedisSettings
from cachekit_redis.urls import parse

__all__ = ["RELEASE_SCRIPT", "RedisBackend", "glob_escape", "ttl_ms"]

_SCAN_COUNT = 1000

#: Delete the lock only if it still holds our token (safe release).
RELEASE_SCRIPT = """
if redis.call('get', KEYS[1]) == ARGV[1] then
    return redis.call('del', KEYS[1])
end
return 0
"""
_DELETE_BATCH = 500


def glob_escape(text: str) -> str:
    """Escape SCAN MATCH metacharacters so a prefix matches literally."""
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


def ttl_ms(ttl: float | None) -> int | None:
    """Seconds to whole milliseconds for SET PX (at least 1 ms); None = no expiry."""
    if ttl is None:
        return None
    return max(1, int(ttl * 1000))


class RedisBackend:
    """cachekit's Backend protocol on Redis.

    ``RedisBackend("redis://localhost:6379/0", socket_timeout=0.2)``; options
    override the ``CACHEKIT_*`` variables (see :class:`RedisSettings`). Errors are
    raised as :class:`cachekit.errors.BackendUnavailableError` (transient) or
    :class:`cachekit.errors.BackendError`; the decorator fails open on both.
    """

    capabilities = frozenset({CAP_TTL, CAP_INVALIDATION, CAP_LOCKING})

    def __init__(self, url: str, **options: Any) -> None:
        self.settings = RedisSettings.from_env(**options)
        self.url = url
        self.target = parse(url)
        self.endpoint = self.target.endpoint
        self.client = build_sync_client(self.target, self.settings)
        self._release: Any = None

    def coherence(self) -> RedisCoherence:
        """Generations and change notifications (shared per URL within the process)."""
        return coherence_for(self.url, self.target, self.settings)

    def __repr__(self) -> str:
        return f"RedisBackend({self.endpoint!r})"

    def get(self, key: str) -> bytes | Missing:
        try:
            value = self.client.get(key)
        except Exception as exc:
            raise translate(exc, self.endpoint, "GET") from exc
        return MISSING if value is None else value

    def set(self, key: str, value: bytes, ttl: float | None = None) -> None:
        try:
            self.client.set(key, value, px=ttl_ms(ttl))
        except Exception as exc:
            raise translate(exc, self.endpoint, "SET") from exc

    def delete(self, key: str) -> bool:
        try:
            return bool(self.client.delete(key))
        except Exception as exc:
            raise translate(exc, self.endpoint, "DEL") from exc

    def get_many(self, keys: Sequence[str]) -> list[bytes | Missing]:
        keys = list(keys)
        if not keys:
            return []
        try:
            if self.target.kind == "cluster":
                values = self.client.mget_nonatomic(keys)
            else:
                values = self.client.mget(keys)
        except Exception as exc:
            raise translate(exc, self.endpoint, "MGET") from exc
        return [MISSING if v is None else v for v in values]

    def set_many(self, items: Mapping[str, bytes], ttl: float | None = None) -> None:
        if not items:
            return
        px = ttl_ms(ttl)
        try:
            pipe = self.client.pipeline(transaction=False)
            for key, value in items.items():
                pipe.set(key, value, px=px)
            pipe.execute()
        except Exception as exc:
            raise translate(exc, self.endpoint, "SET (pipeline)") from exc

    def delete_many(self, keys: Iterable[str]) -> int:
        keys = list(keys)
        if not keys:
            return 0
        try:
            return int(self.client.delete(*keys))
        except Exception as exc:
            raise translate(exc, self.endpoint, "DEL") from exc

    def clear(self, prefix: str = "") -> int:
        """Delete every key under ``prefix`` with SCAN + UNLINK in batches.

        An administrative operation (``cache_clear()``, ``cachekit.invalidate``): its
        cost grows with the size of the database, not of the prefix. It never runs on
        a cache hit or miss.
        """
        pattern = glob_escape(prefix) + "*"
        removed = 0
        try:
            batch: list[Any] = []
            if self.target.kind == "cluster":
                keys = self.client.scan_iter(
                    match=pattern, count=_SCAN_COUNT, target_nodes=self.client.PRIMARIES
                )
            else:
                keys = self.client.scan_iter(match=pattern, count=_SCAN_COUNT)
            for key in keys:
                batch.append(key)
                if len(batch) >= _DELETE_BATCH:
                    removed += int(self.client.unlink(*batch))
                    batch.clear()
            if batch:
                removed += int(self.client.unlink(*batch))
        except Exception as exc:
            raise translate(exc, self.endpoint, "SCAN/UNLINK") from exc
        return removed

    def ttl(self, key: str) -> float | Missing | None:
        try:
            ms = self.client.pttl(key)
        except Exception as exc:
            raise translate(exc, self.endpoint, "PTTL") from exc
        if ms == -2:
            return MISSING
        if ms == -1:
            return None
        return float(ms) / 1000.0

    def acquire_lock(self, key: str, token: str, lease: float) -> bool:
        """SET key token NX PX lease: True when this caller now holds the lock."""
        try:
            return bool(self.client.set(key, token, nx=True, px=ttl_ms(lease)))
        except Exception as exc:
            raise translate(exc, self.endpoint, "SET NX (lock)") from exc

    def release_lock(self, key: str, token: str) -> bool:
        """Delete the lock only while ``token`` holds it (a Lua compare-and-delete)."""
        try:
            if self._release is None:
                self._release = self.client.register_script(RELEASE_SCRIPT)
            return bool(self._release(keys=[key], args=[token]))
        except Exception as exc:
            raise translate(exc, self.endpoint, "EVALSHA (unlock)") from exc

    def ping(self) -> bool:
        try:
            return bool(self.client.ping())
        except Exception as exc:
            raise translate(exc, self.endpoint, "PING") from exc

    def health(self) -> dict[str, Any]:
        start = monotonic()
        report: dict[str, Any] = {
            "backend": "redis",
            "endpoint": self.endpoint,
            "topology": self.target.kind,
        }
        try:
            self.client.ping()
            report["latency_ms"] = round((monotonic() - start) * 1000, 3)
            info = self.client.info("server")
            if (
                self.target.kind == "cluster"
                and isinstance(info, dict)
                and info
                and all(isinstance(v, dict) for v in info.values())
            ):
                info = next(iter(info.values()))
            report["redis_version"] = info.get("redis_version")
            report["healthy"] = True
        except Exception as exc:
            report["healthy"] = False
            report["error"] = str(translate(exc, self.endpoint, "PING"))
        return report

    def close(self) -> None:
        with suppress(Exception):  # closing a broken client must not raise
            self.client.close()
