"""What the sync and async Redis backends share, none of it I/O.

The URL, settings, node breakers and coherence of an endpoint; the operations that
need the client's state to be built (a stampede lock depends on when the key's server
became master); what a multi-key result or a health report says. The backends
(backend.py, aio.py) are the shells that send.
"""

from __future__ import annotations

from typing import Any

from cachekit.constants import (
    CAP_ATOMIC_MISS,
    CAP_GUARDED_WRITES,
    CAP_INVALIDATION,
    CAP_LOCKING,
    CAP_TTL,
)
from cachekit.errors import BackendError
from cachekit_redis import ops
from cachekit_redis.coherence import RedisCoherence, coherence_for, finish_health
from cachekit_redis.failover import command_failed, takeover_window, watch_for
from cachekit_redis.nodes import Batch, NodeBreakers, node_breaker_config
from cachekit_redis.ops import Many, Op
from cachekit_redis.settings import RedisSettings
from cachekit_redis.urls import parse

__all__ = ["SCAN_BATCH", "RedisEndpoint"]

#: SCAN COUNT, and how many keys one UNLINK of clear() takes.
SCAN_BATCH = 500


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
        if self._cluster:
            config = node_breaker_config(self.settings.circuit_breaker)
            if config is not None:
                self._nodes = NodeBreakers(self.endpoint, config)

    def coherence(self) -> RedisCoherence:
        """Generations and change notifications (shared per URL within the process)."""
        return coherence_for(self.url, self.target, self.settings)

    def node_breakers(self) -> list[dict[str, Any]]:
        """Cluster: the per-node circuit breakers seen so far (JSON-ready); else []."""
        return [] if self._nodes is None else self._nodes.snapshot()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.endpoint!r})"

    # -- building operations -------------------------------------------------------------

    def _window(self, client: Any, key: str, lease_ms: int) -> int:
        """failover.takeover_window for the server holding ``key`` (-1: no recent change).

        ``client``: a connected one (a Cluster's slot map is read).
        """
        changes: Any = self._watch if self._watch is not None else self._nodes
        if changes is None:
            return -1
        return takeover_window(changes.changed_at(client, key), lease_ms)

    def _lock_op(self, client: Any, key: str, token: str, lease: float) -> Op:
        lease_ms = ops.ttl_ms(lease) or 1
        return ops.acquire_lock(key, token, lease, self._window(client, key, lease_ms))

    def _get_or_lock_op(self, client: Any, key: str, lock_key: str, token: str, lease: int) -> Op:
        window = self._window(client, key, lease)
        return ops.get_or_lock(key, lock_key, token, lease, window, self._cluster)

    # -- reading outcomes ----------------------------------------------------------------

    def _failed(self, exc: BaseException, op: str) -> BackendError:
        """The error to raise for ``exc`` (a Sentinel master's demotion recorded)."""
        return command_failed(exc, self.endpoint, op)

    def _scan_options(self, client: Any, prefix: str) -> dict[str, Any]:
        """SCAN arguments matching ``prefix`` literally (every primary of a Cluster)."""
        options: dict[str, Any] = {"match": ops.glob_escape(prefix) + "*", "count": SCAN_BATCH}
        if self._cluster:
            options["target_nodes"] = client.PRIMARIES
        return options

    @staticmethod
    def _finish(nodes: NodeBreakers, many: Many, batch: Batch) -> Any:
        """A Cluster multi-key result: the nodes' errors raised unless ``many`` is partial
        and some node answered."""
        if batch.errors and not (many.partial and batch.ok):
            raise nodes.combine(batch.errors, many.name)
        return many.reply(batch.values)

    def _health_report(self) -> dict[str, Any]:
        return {"backend": "redis", "endpoint": self.endpoint, "topology": self.target.kind}

    def _health_done(
        self, report: dict[str, Any], latency: float, exc: BaseException | None, info: Any = None
    ) -> dict[str, Any]:
        """Fill ``report`` with the PING's outcome (``latency`` in seconds) and the server's
        INFO when it was read."""
        if exc is not None:
            report["healthy"] = False
            report["error"] = str(self._failed(exc, "PING"))
        else:
            report["latency_ms"] = round(latency * 1000, 3)
            if info is not None:
                report["redis_version"] = _one_server(info, self._cluster).get("redis_version")
            report["healthy"] = True
        return finish_health(report, self._nodes, self.url, self.settings)


def _one_server(info: Any, cluster: bool) -> Any:
    """A Cluster client's INFO holds one dict per node: the first one."""
    if (
        cluster
        and isinstance(info, dict)
        and info
        and all(isinstance(v, dict) for v in info.values())
    ):
        return next(iter(info.values()))
    return info
