"""The asyncio Redis backend (redis.asyncio).

redis.asyncio connections belong to the event loop that opened them, while a
cachekit backend lives as long as the process (one per URL). So the backend keeps
one client per running event loop, created on first use in that loop, and closes
it when the loop shuts down (or, for a loop closed without shutting down its async
generators, at the backend's next use).

Like backend.py, a thin shell: the operations are built once in
:mod:`cachekit_redis.ops`; this module awaits them.
"""

from __future__ import annotations

import asyncio
import atexit
import weakref
from collections.abc import AsyncGenerator, Iterable, Mapping, Sequence
from contextlib import suppress
from time import monotonic
from typing import Any

from cachekit.constants import Missing
from cachekit.errors import BackendError
from cachekit_redis import ops
from cachekit_redis.clients import build_async_client
from cachekit_redis.endpoint import SCAN_BATCH, RedisEndpoint
from cachekit_redis.failover import retire_async_client
from cachekit_redis.nodes import Batch, NodeBreakers
from cachekit_redis.ops import Many, Op, acall

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

    # -- sending -------------------------------------------------------------------------

    async def _connected(self, op: str) -> Any:
        """The running loop's client, ready (a Cluster's slot map read)."""
        try:
            return await self._ready()
        except Exception as exc:  # no node answered: cluster-wide
            raise self._failed(exc, op) from exc

    async def _run(self, op: Op) -> Any:
        """Send ``op`` (through its node's breaker on a Cluster) and map its reply."""
        client = await self._connected(op.name)
        nodes = self._nodes
        if nodes is not None:
            return op.reply(await nodes.acall(client, op.key, op.name, acall, op))
        try:
            return op.reply(await acall(client, op))
        except Exception as exc:
            raise self._failed(exc, op.name) from exc

    async def _run_many(self, many: Many) -> Any:
        """Send ``many`` in one round trip per server (the nodes of a Cluster asked
        concurrently, isolated ones skipped)."""
        if not many.keys:
            return many.reply([])
        client = await self._connected(many.name)
        nodes = self._nodes
        if nodes is not None:
            return self._finish(nodes, many, await self._batch(nodes, client, many))
        try:
            pipe = client.pipeline(transaction=False)
            for args in many.commands:
                pipe.execute_command(*args)
            return many.reply(await pipe.execute())
        except Exception as exc:
            raise self._failed(exc, many.name) from exc

    async def _batch(self, nodes: NodeBreakers, client: Any, many: Many) -> Batch:
        try:
            return await nodes.arun(client, many.keys, many.commands, many.name)
        except BackendError:
            raise
        except Exception as exc:  # not a node's verdict
            raise self._failed(exc, many.name) from exc

    # -- the AsyncBackend protocol (see RedisBackend) ------------------------------------

    async def get(self, key: str) -> bytes | Missing:
        value: bytes | Missing = await self._run(ops.get(key))
        return value

    async def set(self, key: str, value: bytes, ttl: float | None = None) -> None:
        await self._run(ops.set(key, value, ttl))

    async def delete(self, key: str) -> bool:
        return bool(await self._run(ops.delete(key)))

    async def set_guarded(self, key: str, value: bytes, ttl: float | None, seen: str) -> bool:
        return bool(await self._run(ops.set_guarded(key, value, ttl, seen)))

    async def tombstone(self, key: str, ttl: float | None) -> bool:
        return bool(await self._run(ops.tombstone(key, ttl)))

    async def get_or_lock(
        self, key: str, lock_key: str, token: str, lease_ms: int
    ) -> tuple[bytes | None, bool]:
        client = await self._connected("EVALSHA (get_or_lock)")
        result: tuple[bytes | None, bool] = await self._run(
            self._get_or_lock_op(client, key, lock_key, token, lease_ms)
        )
        return result

    async def set_and_unlock(
        self, key: str, value: bytes, ttl: float | None, lock_key: str, token: str, seen: str | None
    ) -> bool:
        op = ops.set_and_unlock(key, value, ttl, lock_key, token, seen, self._cluster)
        return bool(await self._run(op))

    async def get_many(self, keys: Sequence[str]) -> list[bytes | Missing]:
        values: list[bytes | Missing] = await self._run_many(ops.get_many(keys))
        return values

    async def set_many(self, items: Mapping[str, bytes], ttl: float | None = None) -> None:
        await self._run_many(ops.set_many(items, ttl))

    async def delete_many(self, keys: Iterable[str]) -> int:
        return int(await self._run_many(ops.delete_many(list(keys))))

    async def clear(self, prefix: str = "") -> int:
        removed = 0
        try:
            client = await self._ready()
            batch: list[Any] = []
            async for key in client.scan_iter(**self._scan_options(client, prefix)):
                batch.append(key)
                if len(batch) >= SCAN_BATCH:
                    removed += int(await client.unlink(*batch))
                    batch.clear()
            if batch:
                removed += int(await client.unlink(*batch))
        except Exception as exc:
            raise self._failed(exc, "SCAN/UNLINK") from exc
        return removed

    async def ttl(self, key: str) -> float | Missing | None:
        left: float | Missing | None = await self._run(ops.ttl(key))
        return left

    async def acquire_lock(self, key: str, token: str, lease: float) -> bool:
        client = await self._connected("SET NX (lock)")
        return bool(await self._run(self._lock_op(client, key, token, lease)))

    async def release_lock(self, key: str, token: str) -> bool:
        return bool(await self._run(ops.release_lock(key, token)))

    async def ping(self) -> bool:
        try:
            client = await self._ready()
            return bool(await client.ping())
        except Exception as exc:
            raise self._failed(exc, "PING") from exc

    async def health(self) -> dict[str, Any]:
        report = self._health_report()
        start = monotonic()
        try:
            client = await self._ready()
            await client.ping()
        except Exception as exc:
            return self._health_done(report, 0.0, exc)
        return self._health_done(report, monotonic() - start, None)

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
