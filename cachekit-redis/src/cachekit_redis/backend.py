"""The synchronous Redis backend (redis.Redis / RedisCluster / Sentinel master)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from time import monotonic
from typing import Any

from cachekit.constants import (
    CAP_ATOMIC_MISS,
    CAP_GUARDED_WRITES,
    CAP_INVALIDATION,
    CAP_LOCKING,
    CAP_TTL,
    MISSING,
    TOMBSTONE_PREFIX,
    Missing,
)
from cachekit.errors import BackendError
from cachekit_redis import ops
from cachekit_redis.clients import build_sync_client, close_client
from cachekit_redis.coherence import RedisCoherence, coherence_for, finish_health
from cachekit_redis.errors import translate
from cachekit_redis.failover import lock_command, takeover_window, watch_for
from cachekit_redis.nodes import FAILED, NodeBreakers, node_breaker_config
from cachekit_redis.ops import Op, call, ttl_ms
from cachekit_redis.settings import RedisSettings
from cachekit_redis.urls import parse

__all__ = [
    "GUARDED_SET_SCRIPT",
    "RELEASE_SCRIPT",
    "TOMBSTONE_SCRIPT",
    "RedisBackend",
    "RedisEndpoint",
    "glob_escape",
    "ttl_ms",
]

_SCAN_COUNT = 1000

#: Delete the lock only if it still holds our token (safe release).
RELEASE_SCRIPT = """
if redis.call('get', KEYS[1]) == ARGV[1] then
    return redis.call('del', KEYS[1])
end
return 0
"""
_DELETE_BATCH = 500

#: SET only while the key holds what a miss read: nothing (ARGV[3] == "") or bytes
#: whose SHA-1 is ARGV[3]. 1 when written, 0 when the key changed meanwhile.
GUARDED_SET_SCRIPT = """
local cur = redis.call('get', KEYS[1])
if cur then
    if redis.sha1hex(cur) ~= ARGV[3] then return 0 end
elseif ARGV[3] ~= '' then
    return 0
end
if ARGV[2] == '0' then
    redis.call('set', KEYS[1], ARGV[1])
else
    redis.call('set', KEYS[1], ARGV[1], 'PX', ARGV[2])
end
return 1
"""
#: Replace the key with a tombstone (ARGV[1]) for ARGV[2] ms; 1 if it held a value.
TOMBSTONE_SCRIPT = """
local cur = redis.call('get', KEYS[1])
redis.call('set', KEYS[1], ARGV[1], 'PX', ARGV[2])
if cur and string.sub(cur, 1, string.len(ARGV[3])) ~= ARGV[3] then return 1 end
return 0
"""


# EVAL, like the lock take-over script (failover.py): one command for every client and
# topology, sync or async, and no NOSCRIPT round trip; register_script() per call cost
# a miss about 15-25 us of client-side work, more than the script itself.
def _guarded_set(client: Any, key: str, value: bytes, ttl: float | None, seen: str) -> Any:
    """Run GUARDED_SET_SCRIPT (sync or redis.asyncio client: awaitable for the latter)."""
    return client.execute_command("EVAL", GUARDED_SET_SCRIPT, 1, key, value, ttl_ms(ttl) or 0, seen)


def _tombstone(client: Any, key: str, ttl: float | None) -> Any:
    """Run TOMBSTONE_SCRIPT with a fresh tombstone (see cachekit.protocols.Backend)."""
    import os

    mark = TOMBSTONE_PREFIX + os.urandom(8).hex().encode()
    return client.execute_command(
        "EVAL", TOMBSTONE_SCRIPT, 1, key, mark, ttl_ms(ttl) or 1, TOMBSTONE_PREFIX
    )


def glob_escape(text: str) -> str:
    """Escape SCAN MATCH metacharacters so a prefix matches literally."""
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


def set_command(key: str, value: bytes, ttl: float | None) -> tuple[Any, ...]:
    """``SET key value [PX ms]`` for ``execute_command``.

    GET and SET go to ``execute_command`` directly: redis-py's ``set()`` spends about
    250 bytecodes per call validating options cachekit never passes (5% of a miss).
    """
    px = ttl_ms(ttl)
    return ("SET", key, value) if px is None else ("SET", key, value, "PX", px)


# Single-key commands for RedisBackend._on_node (module functions: no closure per call).
def _get(client: Any, key: str) -> Any:
    return client.execute_command("GET", key)


def _set(client: Any, key: str, value: bytes, ttl: float | None) -> Any:
    return client.execute_command(*set_command(key, value, ttl))


def _delete(client: Any, key: str) -> Any:
    return client.delete(key)


def _pttl(client: Any, key: str) -> Any:
    return client.pttl(key)


def _lock(client: Any, key: str, token: str, lease: float, changes: Any = None) -> Any:
    # ``changes`` (a Sentinel MasterWatch, a Cluster's NodeBreakers): when the key's
    # server became master; a lock from before a failover may be taken over (failover.py).
    changed_at = float("-inf") if changes is None else changes.changed_at(client, key)
    return client.execute_command(*lock_command(changed_at, key, token, ttl_ms(lease) or 1))


class RedisEndpoint:
    """What the sync and async backends share: URL, settings, node breakers, coherence."""

    capabilities = frozenset(
        {CAP_TTL, CAP_INVALIDATION, CAP_LOCKING, CAP_GUARDED_WRITES, CAP_ATOMIC_MISS}
    )

    def __init__(self, url: str, **options: Any) -> None:
        self.url = url
        self.target = parse(url)
        # The URL's query applied (and checked) here, not at the first call.
        self.settings = RedisSettings.from_env(**options).for_target(self.target)
        self.endpoint = self.target.endpoint
        self._cluster = self.target.kind == "cluster"
        # Sentinel: the master as this process knows it (failover.py).
        self._watch = watch_for(self.target) if self.target.kind == "sentinel" else None
        self._nodes: NodeBreakers | None = None
        if self.target.kind == "cluster":
            config = node_breaker_config(self.settings.circuit_breaker)
            if config is not None:
                self._nodes = NodeBreakers(self.endpoint, config)

    def coherence(self) -> RedisCoherence:
        """Generations and change notifications (shared per URL within the process)."""
        return coherence_for(self.url, self.target, self.settings)

    def _lock_window(self, client: Any, key: str, lease_ms: int) -> int:
        """failover.takeover_window for the server holding ``key`` (-1: no recent change)."""
        changes: Any = self._watch if self._watch is not None else self._nodes
        if changes is None:
            return -1
        return takeover_window(changes.changed_at(client, key), lease_ms)

    def _get_or_lock_op(
        self, client: Any, key: str, lock_key: str, token: str, lease_ms: int
    ) -> Op:
        window = self._lock_window(client, key, lease_ms)
        return ops.get_or_lock(key, lock_key, token, lease_ms, window, self._cluster)

    def node_breakers(self) -> list[dict[str, Any]]:
        """Cluster: the per-node circuit breakers seen so far (JSON-ready); else []."""
        return [] if self._nodes is None else self._nodes.snapshot()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.endpoint!r})"


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
        self._release: Any = None
        self._manager: Any = None  # the Cluster client's nodes_manager, once connected

    # -- Cluster: a breaker per node ---------------------------------------------------

    def _connected(self, op: str) -> Any:
        """The Cluster client's nodes_manager (connecting first: a cluster-wide failure)."""
        manager = self._manager
        if manager is None:
            try:
                manager = self._manager = self.client.nodes_manager
            except Exception as exc:
                raise translate(exc, self.endpoint, op) from exc
        return manager

    def _on_node(self, nodes: NodeBreakers, key: str, op: str, command: Any, *args: Any) -> Any:
        """``command(client, *args)`` through the breaker of ``key``'s node."""
        manager = self._manager or self._connected(op)
        return nodes.call(manager, self.client, key, op, command, *args)

    def _batch(self, nodes: NodeBreakers, keys: list[str], commands: Any, op: str) -> Any:
        """Commands grouped by node (isolated nodes skipped); a :class:`nodes.Batch`."""
        self._connected(op)
        try:
            return nodes.run(self.client, keys, commands, op)
        except BackendError:
            raise
        except Exception as exc:  # not a node's verdict: slot map unavailable, a bug
            raise translate(exc, self.endpoint, op) from exc

    def _run(self, op: Op) -> Any:
        """Send ``op`` (through its node's breaker on a Cluster) and map its reply."""
        nodes = self._nodes
        if nodes is not None:
            manager = self._manager or self._connected(op.name)
            reply = nodes.call(manager, self.client, op.key, op.name, call, op)
            return op.reply(reply)
        try:
            return op.reply(call(self.client, op))
        except Exception as exc:
            raise translate(exc, self.endpoint, op.name) from exc

    # -- the Backend protocol ------------------------------------------------------------

    def get(self, key: str) -> bytes | Missing:
        nodes = self._nodes
        if nodes is not None:  # _on_node inlined: this is the L2-hit path
            breaker = nodes.admit(self._manager or self._connected("GET"), key, "GET")
            try:
                value = self.client.execute_command("GET", key)
            except BaseException as exc:
                if not isinstance(exc, Exception):
                    breaker.release_probe()
                    raise
                raise nodes.failed(breaker, exc, "GET") from exc
            breaker.success()
            return MISSING if value is None else value
        try:
            value = self.client.execute_command("GET", key)
        except Exception as exc:
            raise translate(exc, self.endpoint, "GET") from exc
        return MISSING if value is None else value

    def set(self, key: str, value: bytes, ttl: float | None = None) -> None:
        nodes = self._nodes
        if nodes is not None:
            self._on_node(nodes, key, "SET", _set, key, value, ttl)
            return
        try:
            self.client.execute_command(*set_command(key, value, ttl))
        except Exception as exc:
            raise translate(exc, self.endpoint, "SET") from exc

    def delete(self, key: str) -> bool:
        nodes = self._nodes
        if nodes is not None:
            return bool(self._on_node(nodes, key, "DEL", _delete, key))
        try:
            return bool(self.client.delete(key))
        except Exception as exc:
            raise translate(exc, self.endpoint, "DEL") from exc

    def set_guarded(self, key: str, value: bytes, ttl: float | None, seen: str) -> bool:
        """SET only while the key holds what a miss read (a Lua compare-and-set)."""
        nodes = self._nodes
        if nodes is not None:
            op = "EVALSHA (guarded SET)"
            return bool(self._on_node(nodes, key, op, _guarded_set, key, value, ttl, seen))
        try:
            return bool(_guarded_set(self.client, key, value, ttl, seen))
        except Exception as exc:
            raise translate(exc, self.endpoint, "EVALSHA (guarded SET)") from exc

    def tombstone(self, key: str, ttl: float | None) -> bool:
        """Invalidate one key with a tombstone; True when it held a value."""
        nodes = self._nodes
        if nodes is not None:
            return bool(self._on_node(nodes, key, "EVALSHA (tombstone)", _tombstone, key, ttl))
        try:
            return bool(_tombstone(self.client, key, ttl))
        except Exception as exc:
            raise translate(exc, self.endpoint, "EVALSHA (tombstone)") from exc

    def get_or_lock(
        self, key: str, lock_key: str, token: str, lease_ms: int
    ) -> tuple[bytes | None, bool]:
        """Read ``key`` or, when it holds no value, take ``lock_key``: one round trip.

        See cachekit.protocols.Backend ("atomic_miss"). A lock older than a master
        change this process saw is taken over, as in :meth:`acquire_lock`.
        """
        if self._nodes is not None:
            self._manager or self._connected("EVALSHA (get_or_lock)")
        op = self._get_or_lock_op(self.client, key, lock_key, token, lease_ms)
        result: tuple[bytes | None, bool] = self._run(op)
        return result

    def set_and_unlock(
        self,
        key: str,
        value: bytes,
        ttl: float | None,
        lock_key: str,
        token: str,
        seen: str | None,
    ) -> bool:
        """Store ``value`` (guarded when ``seen`` is not None) and release the lock: one
        round trip. True when the value was stored."""
        op = ops.set_and_unlock(key, value, ttl, lock_key, token, seen, self._cluster)
        return bool(self._run(op))

    def get_many(self, keys: Sequence[str]) -> list[bytes | Missing]:
        keys = list(keys)
        if not keys:
            return []
        nodes = self._nodes
        if nodes is not None:
            # Keys of an isolated or failing node read as misses, unless no node answered.
            batch = self._batch(nodes, keys, [("GET", key) for key in keys], "MGET")
            if batch.errors and not batch.ok:
                raise nodes.combine(batch.errors, "MGET")
            return [MISSING if v is None or v is FAILED else v for v in batch.values]
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
        nodes = self._nodes
        if nodes is not None:
            # Every node that can be reached is written; then any failure is raised.
            extra = () if px is None else ("PX", px)
            commands = [("SET", key, value, *extra) for key, value in items.items()]
            batch = self._batch(nodes, list(items), commands, "SET (pipeline)")
            if batch.errors:
                raise nodes.combine(batch.errors, "SET (pipeline)")
            return
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
        nodes = self._nodes
        if nodes is not None:
            # A delete that did not happen must not pass unnoticed: any failure raises.
            batch = self._batch(nodes, keys, [("DEL", key) for key in keys], "DEL")
            if batch.errors:
                raise nodes.combine(batch.errors, "DEL")
            return sum(int(v) for v in batch.values)
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
        nodes = self._nodes
        if nodes is not None:
            ms = self._on_node(nodes, key, "PTTL", _pttl, key)
        else:
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
        nodes = self._nodes
        if nodes is not None:
            lock = (_lock, key, token, lease, nodes)
            return bool(self._on_node(nodes, key, "SET NX (lock)", *lock))
        try:
            return bool(_lock(self.client, key, token, lease, self._watch))
        except Exception as exc:
            raise translate(exc, self.endpoint, "SET NX (lock)") from exc

    def release_lock(self, key: str, token: str) -> bool:
        """Delete the lock only while ``token`` holds it (a Lua compare-and-delete)."""
        nodes = self._nodes
        if nodes is not None:
            return bool(self._on_node(nodes, key, "EVALSHA (unlock)", self._unlock, key, token))
        try:
            return self._unlock(self.client, key, token)
        except Exception as exc:
            raise translate(exc, self.endpoint, "EVALSHA (unlock)") from exc

    def _unlock(self, client: Any, key: str, token: str) -> bool:
        if self._release is None:
            self._release = client.register_script(RELEASE_SCRIPT)
        return bool(self._release(keys=[key], args=[token]))

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
        return finish_health(report, self._nodes, self.url, self.settings)

    def close(self) -> None:
        """Close the pooled connections; the next command reconnects. Twice is harmless."""
        close_client(self.client, self.target.kind)
