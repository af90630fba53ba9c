"""The asyncio Redis backend (redis.asyncio).

redis.asyncio connections belong to the event loop that opened them, while a
cachekit backend lives as long as the process (one per URL). So the backend keeps
one client per running event loop, created on first use in that loop; a loop
that ends takes its client with it (weak references).
"""

from __future__ import annotations

import asyncio
import atexit
import weakref
from collections.abc import Iterable, Mapping, Sequence
from contextlib import suppress
from time import monotonic
from typing import Any

from cachekit.constants import CAP_INVALIDATION, CAP_LOCKING, CAP_TTL, MISSING, Missing
from cachekit_redis.backend import RELEASE_SCRIPT, glob_escape, ttl_ms
from cachekit_redis.clients import build_async_client
from cachekit_redis.coherence import RedisCoherence, coherence_for
from cachekit_redis.errors import translate
from cachekit_redis.settings import RedisSettings
from cachekit_redis.urls import parse

__all__ = ["AsyncRedisBackend"]

_instances: weakref.WeakSet[AsyncRedisBackend] = weakref.WeakSet()


def _drop_clients() -> None:
    """At exit, release clients while the modules their finalizers need still exist."""
    import gc

    for backend in list(_instances):
        backend._clients.clear()
    gc.collect()


atexit.register(_drop_clients)


class AsyncRedisBackend:
    """cachekit's AsyncBackend protocol on redis.asyncio."""

    capabilities = frozenset({CAP_TTL, CAP_INVALIDATION, CAP_LOCKING})

    def __init__(self, url: str, **options: Any) -> None:
        self.settings = RedisSettings.from_env(**options)
        self.url = url
        self.target = parse(url)
        self.endpoint = self.target.endpoint
        self._clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Any] = (
            weakref.WeakKeyDictionary()
        )
        _instances.add(self)

    def coherence(self) -> RedisCoherence:
        """Generations and change notifications (shared per URL within the process)."""
        return coherence_for(self.url, self.target, self.settings)

    def __repr__(self) -> str:
        return f"AsyncRedisBackend({self.endpoint!r})"

    @property
    def client(self) -> Any:
        """The client of the running event loop."""
        loop = asyncio.get_running_loop()
        client = self._clients.get(loop)
        if client is None:
            # Clients of loops that have ended cannot be used (or closed) any more.
            for old in [lp for lp in self._clients if lp.is_closed()]:
                self._clients.pop(old, None)
            client = self._clients[loop] = build_async_client(self.target, self.settings)
        return client

    async def _ready(self) -> Any:
        """The running loop's client; a Cluster client knows the slot map before any command.

        redis.asyncio's RedisCluster (8.1) sends the commands issued before its first
        ``initialize()`` to a default node; the MOVED replies that follow make it drop
        connections that concurrent tasks are still using (ConnectionError on a healthy
        cluster). ``initialize()`` runs once under the client's own lock, then is a no-op.
        """
        client = self.client
        if self.target.kind == "cluster":
            await client.initialize()
        return client

    async def get(self, key: str) -> bytes | Missing:
        try:
            client = await self._ready()
            value = await client.get(key)
        except Exception as exc:
            raise translate(exc, self.endpoint, "GET") from exc
        return MISSING if value is None else value

    async def set(self, key: str, value: bytes, ttl: float | None = None) -> None:
        try:
            client = await self._ready()
            await client.set(key, value, px=ttl_ms(ttl))
        except Exception as exc:
            raise translate(exc, self.endpoint, "SET") from exc

    async def delete(self, key: str) -> bool:
        try:
            client = await self._ready()
            return bool(await client.delete(key))
        except Exception as exc:
            raise translate(exc, self.endpoint, "DEL") from exc

    async def get_many(self, keys: Sequence[str]) -> list[bytes | Missing]:
        keys = list(keys)
        if not keys:
            return []
        try:
            client = await self._ready()
            if self.target.kind == "cluster":
                values = await client.mget_nonatomic(keys)
            else:
                values = await client.mget(keys)
        except Exception as exc:
            raise translate(exc, self.endpoint, "MGET") from exc
        return [MISSING if v is None else v for v in values]

    async def set_many(self, items: Mapping[str, bytes], ttl: float | None = None) -> None:
        if not items:
            return
        px = ttl_ms(ttl)
        try:
            client = await self._ready()
            pipe = client.pipeline(transaction=False)
            for key, value in items.items():
                pipe.set(key, value, px=px)
            await pipe.execute()
        except Exception as exc:
            raise translate(exc, self.endpoint, "SET (pipeline)") from exc

    async def delete_many(self, keys: Iterable[str]) -> int:
        keys = list(keys)
        if not keys:
            return 0
        try:
            client = await self._ready()
            return int(await client.delete(*keys))
        except Exception as exc:
            raise translate(exc, self.endpoint, "DEL") from exc

    async def clear(self, prefix: str = "") -> int:
        pattern = glob_escape(prefix) + "*"
        removed = 0
        try:
            client = await self._ready()
            batch: list[Any] = []
            if self.target.kind == "cluster":
                keys = client.scan_iter(match=pattern, count=1000, target_nodes=client.PRIMARIES)
            else:
                keys = client.scan_iter(match=pattern, count=1000)
            async for key in keys:
                batch.append(key)
                if len(batch) >= 500:
                    removed += int(await client.unlink(*batch))
                    batch.clear()
            if batch:
                removed += int(await client.unlink(*batch))
        except Exception as exc:
            raise translate(exc, self.endpoint, "SCAN/UNLINK") from exc
        return removed

    async def ttl(self, key: str) -> float | Missing | None:
        try:
            client = await self._ready()
            ms = await client.pttl(key)
        except Exception as exc:
            raise translate(exc, self.endpoint, "PTTL") from exc
        if ms == -2:
            return MISSING
        if ms == -1:
            return None
        return float(ms) / 1000.0

    async def acquire_lock(self, key: str, token: str, lease: float) -> bool:
        try:
            client = await self._ready()
            return bool(await client.set(key, token, nx=True, px=ttl_ms(lease)))
        except Exception as exc:
            raise translate(exc, self.endpoint, "SET NX (lock)") from exc

    async def release_lock(self, key: str, token: str) -> bool:
        try:
            client = await self._ready()
            script = client.register_script(RELEASE_SCRIPT)
            return bool(await script(keys=[key], args=[token]))
        except Exception as exc:
            raise translate(exc, self.endpoint, "EVALSHA (unlock)") from exc

    async def ping(self) -> bool:
        try:
            client = await self._ready()
            return bool(await client.ping())
        except Exception as exc:
            raise translate(exc, self.endpoint, "PING") from exc

    async def health(self) -> dict[str, Any]:
        start = monotonic()
        report: dict[str, Any] = {
            "backend": "redis",
            "endpoint": self.endpoint,
            "topology": self.target.kind,
        }
        try:
            client = await self._ready()
            await client.ping()
            report["latency_ms"] = round((monotonic() - start) * 1000, 3)
            report["healthy"] = True
        except Exception as exc:
            report["healthy"] = False
            report["error"] = str(translate(exc, self.endpoint, "PING"))
        return report

    async def close(self) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        client = self._clients.pop(loop, None)
        if client is not None:
            with suppress(Exception):
                await client.aclose()
