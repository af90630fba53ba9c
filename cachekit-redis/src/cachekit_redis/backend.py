"""The synchronous Redis backend (redis.Redis / RedisCluster / Sentinel master).

A thin shell: each operation is built once in :mod:`cachekit_redis.ops` (shared with
the asyncio backend, aio.py); this module sends it, translates its failure and, on a
Cluster, goes through the breaker of the key's node (:mod:`cachekit_redis.nodes`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from time import monotonic
from typing import Any

from cachekit.constants import MISSING, Missing
from cachekit.errors import BackendError
from cachekit_redis import ops
from cachekit_redis.clients import build_sync_client, close_client
from cachekit_redis.endpoint import SCAN_BATCH, RedisEndpoint
from cachekit_redis.nodes import Batch, NodeBreakers
from cachekit_redis.ops import Many, Op, call

__all__ = ["RedisBackend", "RedisEndpoint"]


class RedisBackend(RedisEndpoint):
    """cachekit's Backend protocol on Redis.

    ``RedisBackend("redis://localhost:6379/0", socket_timeout=0.2)``; options
    override the ``CACHEKIT_*`` variables (see :class:`RedisSettings`). Errors are
    raised as :class:`cachekit.errors.BackendUnavailableError` (transient) or
    :class:`cachekit.errors.BackendError`; the decorator fails open on both.

    On a Cluster every node has its own circuit breaker (:mod:`cachekit_redis.nodes`):
    a command for an isolated node raises ``NodeUnavailableError`` without I/O, and
    multi-key operations skip that node.
    """

    def __init__(self, url: str, **options: Any) -> None:
        super().__init__(url, **options)
        self.client = build_sync_client(self.target, self.settings)
        self._manager: Any = None  # the Cluster client's nodes_manager, once connected

    # -- sending -------------------------------------------------------------------------

    def _connected(self, op: str) -> Any:
        """The client, connected: a Cluster client's slot map read (a cluster-wide failure
        if no node answers)."""
        if self._nodes is not None and self._manager is None:
            try:
                self._manager = self.client.nodes_manager
            except Exception as exc:
                raise self._failed(exc, op) from exc
        return self.client

    def _run(self, op: Op) -> Any:
        """Send ``op`` (through its node's breaker on a Cluster) and map its reply."""
        nodes = self._nodes
        if nodes is not None:
            manager = self._manager or self._connected(op.name).nodes_manager
            return op.reply(nodes.call(manager, self.client, op.key, op.name, call, op))
        try:
            if op.script is None:  # call() inlined: GET and SET are on every miss
                return op.reply(self.client.execute_command(*op.args))
            return op.reply(call(self.client, op))
        except Exception as exc:
            raise self._failed(exc, op.name) from exc

    def _run_many(self, many: Many) -> Any:
        """Send ``many`` in one round trip per server (per node on a Cluster, where
        isolated nodes are skipped)."""
        if not many.keys:
            return many.reply([])
        nodes = self._nodes
        if nodes is not None:
            return self._finish(nodes, many, self._batch(nodes, many))
        try:
            pipe = self.client.pipeline(transaction=False)
            for args in many.commands:
                pipe.execute_command(*args)
            return many.reply(pipe.execute())
        except Exception as exc:
            raise self._failed(exc, many.name) from exc

    def _batch(self, nodes: NodeBreakers, many: Many) -> Batch:
        client = self._connected(many.name)
        try:
            return nodes.run(client, many.keys, many.commands, many.name)
        except BackendError:
            raise
        except Exception as exc:  # not a node's verdict: slot map unavailable, a bug
            raise self._failed(exc, many.name) from exc

    # -- the Backend protocol ------------------------------------------------------------

    def get(self, key: str) -> bytes | Missing:
        if self._nodes is not None:
            value: bytes | Missing = self._run(ops.get(key))
            return value
        # _run(ops.get(key)) inlined (the read of every L2 hit): the same command, reply
        # mapping (ops._value) and error translation.
        try:
            reply = self.client.execute_command("GET", key)
        except Exception as exc:
            raise self._failed(exc, "GET") from exc
        return MISSING if reply is None else reply

    def set(self, key: str, value: bytes, ttl: float | None = None) -> None:
        self._run(ops.set(key, value, ttl))

    def delete(self, key: str) -> bool:
        return bool(self._run(ops.delete(key)))

    def set_guarded(self, key: str, value: bytes, ttl: float | None, seen: str) -> bool:
        """SET only while the key holds what a miss read (a Lua compare-and-set)."""
        return bool(self._run(ops.set_guarded(key, value, ttl, seen)))

    def tombstone(self, key: str, ttl: float | None) -> bool:
        """Invalidate one key with a tombstone; True when it held a value."""
        return bool(self._run(ops.tombstone(key, ttl)))

    def get_or_lock(
        self, key: str, lock_key: str, token: str, lease_ms: int
    ) -> tuple[bytes | None, bool]:
        """Read ``key`` or, when it holds no value, take ``lock_key``: one round trip.

        See cachekit.protocols.Backend ("atomic_miss"). A lock older than a master
        change this process saw is taken over, as in :meth:`acquire_lock`.
        """
        client = self._connected("EVALSHA (get_or_lock)")
        result: tuple[bytes | None, bool] = self._run(
            self._get_or_lock_op(client, key, lock_key, token, lease_ms)
        )
        return result

    def set_and_unlock(
        self, key: str, value: bytes, ttl: float | None, lock_key: str, token: str, seen: str | None
    ) -> bool:
        """Store ``value`` (guarded when ``seen`` is not None) and release the lock: one
        round trip. True when the value was stored."""
        op = ops.set_and_unlock(key, value, ttl, lock_key, token, seen, self._cluster)
        return bool(self._run(op))

    def get_many(self, keys: Sequence[str]) -> list[bytes | Missing]:
        """Keys of an isolated or failing Cluster node read as misses, unless no node answered."""
        values: list[bytes | Missing] = self._run_many(ops.get_many(keys))
        return values

    def set_many(self, items: Mapping[str, bytes], ttl: float | None = None) -> None:
        """Every node that can be reached is written; then any failure is raised."""
        self._run_many(ops.set_many(items, ttl))

    def delete_many(self, keys: Iterable[str]) -> int:
        """A delete that did not happen must not pass unnoticed: any failure raises."""
        return int(self._run_many(ops.delete_many(list(keys))))

    def clear(self, prefix: str = "") -> int:
        """Delete every key under ``prefix`` with SCAN + UNLINK in batches.

        An administrative operation (``cache_clear()``, ``cachekit.invalidate``): its
        cost grows with the size of the database, not of the prefix. It never runs on
        a cache hit or miss.
        """
        removed = 0
        try:
            batch: list[Any] = []
            for key in self.client.scan_iter(**self._scan_options(self.client, prefix)):
                batch.append(key)
                if len(batch) >= SCAN_BATCH:
                    removed += int(self.client.unlink(*batch))
                    batch.clear()
            if batch:
                removed += int(self.client.unlink(*batch))
        except Exception as exc:
            raise self._failed(exc, "SCAN/UNLINK") from exc
        return removed

    def ttl(self, key: str) -> float | Missing | None:
        left: float | Missing | None = self._run(ops.ttl(key))
        return left

    def acquire_lock(self, key: str, token: str, lease: float) -> bool:
        """SET key token NX PX lease: True when this caller now holds the lock."""
        client = self._connected("SET NX (lock)")
        return bool(self._run(self._lock_op(client, key, token, lease)))

    def release_lock(self, key: str, token: str) -> bool:
        """Delete the lock only while ``token`` holds it (a Lua compare-and-delete)."""
        return bool(self._run(ops.release_lock(key, token)))

    def ping(self) -> bool:
        try:
            return bool(self.client.ping())
        except Exception as exc:
            raise self._failed(exc, "PING") from exc

    def health(self) -> dict[str, Any]:
        report = self._health_report()
        start = monotonic()
        try:
            self.client.ping()
            latency = monotonic() - start
            info = self.client.info("server")
        except Exception as exc:
            return self._health_done(report, 0.0, exc)
        return self._health_done(report, latency, None, info)

    def close(self) -> None:
        """Close the pooled connections; the next command reconnects. Twice is harmless."""
        close_client(self.client, self.target.kind)
