"""The asyncio Redis backend (redis.asyncio).

redis.asyncio connections belong to the event loop that opened them, while a
cachekit backend lives as long as the process (one per URL). So the backend keeps
one client per running event loop, created on first use in that loop, and closes
it when the loop shuts down (or, for a loop closed without shutting down its async
generators, at the backend's next use).
"""

from __future__ import annotations

import asyncio
import atexit
import weakref
from collections.abc import AsyncGenerator, Iterable, Mapping, Sequence
from contextlib import suppress
from time import monotonic
from typing import Any

from cachekit.constants import MISSING, Missing
from cachekit.errors import BackendError
from cachekit_redis import ops
from cachekit_redis.backend import (
    RELEASE_SCRIPT,
    RedisEndpoint,
    _delete,
    _get,
    _guarded_set,
    _lock,
    _pttl,
    _set,
    _tombstone,
    glob_escape,
    set_command,
    ttl_ms,
)
from cachekit_redis.clients import build_async_client
from cachekit_redis.coherence import finish_health
from cachekit_redis.errors import translate
from cachekit_redis.failover import retire_async_client
from cachekit_redis.nodes import FAILED, Batch, NodeBreakers
from cachekit_redis.ops import Op, acall

__all__ = ["AsyncRedisBackend"]

_instances: weakref.WeakSet[AsyncRedisBackend] = weakref.WeakSet()


def _drop_clients() -> None:
    """At exit, release clients while the modules their finalizers need still exist."""
    import gc

    for backend in list(_instances):
        backend._clients.clear()
    gc.collect()


atexit.register(_drop_clients)


def _shut_down_sockets(client: Any) -> None:
    """Shut down the sockets of a redis.asyncio client whose event loop is closed.

    ``aclose()`` needs the client's loop; with the loop gone, the connections' sockets
    are shut down directly, which makes the server drop them at once (the file
    descriptors go with the garbage). Standalone and Sentinel clients (one pool) and
    Cluster clients (a pool per node).
    """
    import socket

    if client is None:
        return
    pools = [getattr(client, "connection_pool", None)]
    get_nodes = getattr(client, "get_nodes", None)
    if callable(get_nodes):
        with suppress(Exception):
            pools.extend(get_nodes())
    for pool in pools:
        connections = [
            *getattr(pool, "_available_connections", ()),
            *getattr(pool, "_in_use_connections", ()),
            *getattr(pool, "_connections", ()),  # a Cluster node
        ]
        for connection in connections:
            writer = getattr(connection, "_writer", None)
            sock = None if writer is None else writer.get_extra_info("socket")
            if sock is not None:
                with suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)


async def _aclose_client(client: Any) -> None:
    """Close a redis.asyncio client and its pool (a client given a pool leaves it open)."""
    with suppress(Exception):
        if callable(getattr(client, "get_nodes", None)):  # a Cluster: its nodes' pools
            await client.aclose()
        else:
            await client.aclose(close_connection_pool=True)


def _unlock(client: Any, key: str, token: str) -> Any:
    return client.register_script(RELEASE_SCRIPT)(keys=[key], args=[token])


class AsyncRedisBackend(RedisEndpoint):
    """cachekit's AsyncBackend protocol on redis.asyncio.

    On a Cluster every node has its own circuit breaker (:mod:`cachekit_redis.nodes`),
    shared with the synchronous backend of the same nodes and settings.
    """

    def __init__(self, url: str, **options: Any) -> None:
        super().__init__(url, **options)
        # Each value holds its loop strongly (through its connections): an entry goes
        # when its loop shuts down (_until_loop_ends) or is seen closed (_drop_ended_loops).
        self._clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Any] = (
            weakref.WeakKeyDictionary()
        )
        self._enders: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Any] = (
            weakref.WeakKeyDictionary()
        )
        # Sentinel: clients whose epoch is behind self._watch's are replaced (failover.py).
        _instances.add(self)

    @property
    def client(self) -> Any:
        """The client of the running event loop (built at the loop's first use)."""
        loop = asyncio.get_running_loop()
        client = self._clients.get(loop)
        if client is None:
            self._drop_ended_loops()
            client = self._clients[loop] = build_async_client(self.target, self.settings)
            self._close_at_loop_end(loop)
        return client

    def _close_at_loop_end(self, loop: asyncio.AbstractEventLoop) -> None:
        """Close the loop's client when the loop shuts down.

        asyncio offers one hook before a loop closes: ``asyncio.run`` (and Runner)
        finalize every async generator still suspended (``shutdown_asyncgens``), in the
        loop. So a generator suspended here, registered with the running loop by its
        first step, closes the client in its ``finally``. A loop closed without that
        step is handled by :meth:`_drop_ended_loops` at the next use.
        """
        ender = self._until_loop_ends(loop)
        self._enders[loop] = ender  # the loop holds its generators weakly
        step = ender.asend(None)  # registers ender with the running loop
        try:
            step.send(None)  # runs it to its yield, which awaits nothing
        except StopIteration:
            pass

    async def _until_loop_ends(self, loop: asyncio.AbstractEventLoop) -> AsyncGenerator[None, None]:
        try:
            yield
        finally:
            self._enders.pop(loop, None)
            client = self._clients.pop(loop, None)
            if client is not None and not loop.is_closed():
                await _aclose_client(client)

    def _drop_ended_loops(self) -> None:
        """Clients of loops that closed without shutting down their async generators:
        their connections cannot be closed through the loop any more, so their sockets
        are shut down directly (the server closes its side at once)."""
        for old in [lp for lp in self._clients if lp.is_closed()]:
            self._enders.pop(old, None)
            _shut_down_sockets(self._clients.pop(old, None))

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
        elif self._watch is not None and client.cachekit_epoch != self._watch.epoch:
            client = self._renew(client)
        return client

    def _renew(self, stale: Any) -> Any:
        """The Sentinel master moved: a new client for the running loop, whose connections
        ask Sentinel again. The old one is closed once the calls still using it are done."""
        loop = asyncio.get_running_loop()
        client = self._clients[loop] = build_async_client(self.target, self.settings)
        retire_async_client(stale, 2 * self.settings.socket_timeout + 1.0)
        return client

    # -- Cluster: a breaker per node ---------------------------------------------------

    async def _connected(self, op: str) -> Any:
        try:
            return await self._ready()
        except Exception as exc:  # no node answered: cluster-wide
            raise translate(exc, self.endpoint, op) from exc

    async def _on_node(
        self, nodes: NodeBreakers, key: str, op: str, command: Any, *args: Any
    ) -> Any:
        """``await command(client, *args)`` through the breaker of ``key``'s node."""
        return await nodes.acall(await self._connected(op), key, op, command, *args)

    async def _batch(self, nodes: NodeBreakers, keys: list[str], commands: Any, op: str) -> Batch:
        """Commands grouped by node, the nodes asked concurrently; isolated ones skipped."""
        client = await self._connected(op)
        try:
            return await nodes.arun(client, keys, commands, op)
        except BackendError:
            raise
        except Exception as exc:  # not a node's verdict
            raise translate(exc, self.endpoint, op) from exc

    async def _run(self, op: Op) -> Any:
        """Send ``op`` (through its node's breaker on a Cluster) and map its reply."""
        nodes = self._nodes
        if nodes is not None:
            client = await self._connected(op.name)
            return op.reply(await nodes.acall(client, op.key, op.name, acall, op))
        try:
            client = await self._ready()
            return op.reply(await acall(client, op))
        except Exception as exc:
            raise translate(exc, self.endpoint, op.name) from exc

    # -- the AsyncBackend protocol -------------------------------------------------------

    async def get(self, key: str) -> bytes | Missing:
        nodes = self._nodes
        if nodes is not None:
            value = await self._on_node(nodes, key, "GET", _get, key)
            return MISSING if value is None else value
        try:
            client = await self._ready()
            value = await client.execute_command("GET", key)
        except Exception as exc:
            raise translate(exc, self.endpoint, "GET") from exc
        return MISSING if value is None else value

    async def set(self, key: str, value: bytes, ttl: float | None = None) -> None:
        nodes = self._nodes
        if nodes is not None:
            await self._on_node(nodes, key, "SET", _set, key, value, ttl)
            return
        try:
            client = await self._ready()
            await client.execute_command(*set_command(key, value, ttl))
        except Exception as exc:
            raise translate(exc, self.endpoint, "SET") from exc

    async def delete(self, key: str) -> bool:
        nodes = self._nodes
        if nodes is not None:
            return bool(await self._on_node(nodes, key, "DEL", _delete, key))
        try:
            client = await self._ready()
            return bool(await client.delete(key))
        except Exception as exc:
            raise translate(exc, self.endpoint, "DEL") from exc

    async def set_guarded(self, key: str, value: bytes, ttl: float | None, seen: str) -> bool:
        """RedisBackend.set_guarded for redis.asyncio."""
        nodes = self._nodes
        op = "EVALSHA (guarded SET)"
        if nodes is not None:
            return bool(await self._on_node(nodes, key, op, _guarded_set, key, value, ttl, seen))
        try:
            client = await self._ready()
            return bool(await _guarded_set(client, key, value, ttl, seen))
        except Exception as exc:
            raise translate(exc, self.endpoint, op) from exc

    async def tombstone(self, key: str, ttl: float | None) -> bool:
        """RedisBackend.tombstone for redis.asyncio."""
        nodes = self._nodes
        op = "EVALSHA (tombstone)"
        if nodes is not None:
            return bool(await self._on_node(nodes, key, op, _tombstone, key, ttl))
        try:
            client = await self._ready()
            return bool(await _tombstone(client, key, ttl))
        except Exception as exc:
            raise translate(exc, self.endpoint, op) from exc

    async def get_or_lock(
        self, key: str, lock_key: str, token: str, lease_ms: int
    ) -> tuple[bytes | None, bool]:
        """RedisBackend.get_or_lock for redis.asyncio (one round trip)."""
        client = await self._connected("EVALSHA (get_or_lock)")
        op = self._get_or_lock_op(client, key, lock_key, token, lease_ms)
        result: tuple[bytes | None, bool] = await self._run(op)
        return result

    async def set_and_unlock(
        self,
        key: str,
        value: bytes,
        ttl: float | None,
        lock_key: str,
        token: str,
        seen: str | None,
    ) -> bool:
        """RedisBackend.set_and_unlock for redis.asyncio (one round trip)."""
        op = ops.set_and_unlock(key, value, ttl, lock_key, token, seen, self._cluster)
        return bool(await self._run(op))

    async def get_many(self, keys: Sequence[str]) -> list[bytes | Missing]:
        keys = list(keys)
        if not keys:
            return []
        nodes = self._nodes
        if nodes is not None:
            # Keys of an isolated or failing node read as misses, unless no node answered.
            batch = await self._batch(nodes, keys, [("GET", key) for key in keys], "MGET")
            if batch.errors and not batch.ok:
                raise nodes.combine(batch.errors, "MGET")
            return [MISSING if v is None or v is FAILED else v for v in batch.values]
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
        nodes = self._nodes
        if nodes is not None:
            # Every node that can be reached is written; then any failure is raised.
            extra = () if px is None else ("PX", px)
            commands = [("SET", key, value, *extra) for key, value in items.items()]
            batch = await self._batch(nodes, list(items), commands, "SET (pipeline)")
            if batch.errors:
                raise nodes.combine(batch.errors, "SET (pipeline)")
            return
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
        nodes = self._nodes
        if nodes is not None:
            # A delete that did not happen must not pass unnoticed: any failure raises.
            batch = await self._batch(nodes, keys, [("DEL", key) for key in keys], "DEL")
            if batch.errors:
                raise nodes.combine(batch.errors, "DEL")
            return sum(int(v) for v in batch.values)
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
        nodes = self._nodes
        if nodes is not None:
            ms = await self._on_node(nodes, key, "PTTL", _pttl, key)
        else:
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
        nodes = self._nodes
        if nodes is not None:
            lock = (_lock, key, token, lease, nodes)
            return bool(await self._on_node(nodes, key, "SET NX (lock)", *lock))
        try:
            client = await self._ready()
            return bool(await _lock(client, key, token, lease, self._watch))
        except Exception as exc:
            raise translate(exc, self.endpoint, "SET NX (lock)") from exc

    async def release_lock(self, key: str, token: str) -> bool:
        nodes = self._nodes
        if nodes is not None:
            return bool(await self._on_node(nodes, key, "EVALSHA (unlock)", _unlock, key, token))
        try:
            client = await self._ready()
            return bool(await _unlock(client, key, token))
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
        return finish_health(report, self._nodes, self.url, self.settings)

    async def close(self) -> None:
        """Close the running loop's connections, and those of loops that have ended.

        The next command in this loop reconnects; calling it twice is harmless. A loop
        still running in another thread keeps its connections until it ends.
        """
        self._drop_ended_loops()
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        ender = self._enders.pop(loop, None)
        if ender is not None:
            await ender.aclose()  # its finally closes the loop's client
        client = self._clients.pop(loop, None)
        if client is not None:
            await _aclose_client(client)
