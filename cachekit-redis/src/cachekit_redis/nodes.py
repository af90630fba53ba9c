"""A circuit breaker per Redis Cluster node.

The engine keeps one breaker per backend endpoint. On a Cluster URL that endpoint is
several servers: successes on the healthy masters keep resetting the consecutive
failure count of a frozen one (so its keys pay a full socket timeout on every call),
while a burst of one dead master's failures can open the breaker for the whole cluster.
So the Cluster backends (sync, asyncio, and the generation counters) keep one breaker
per node (``host:port``), in cachekit's process-wide registry under the name
``redis cluster node <host:port>``:

* Before a single-key command the key's node is read from redis-py's current slot map
  (CRC16 of the key, one dict lookup); while that node's breaker is open the command
  raises :class:`NodeUnavailableError` at once, without I/O.
* A connection failure or timeout on a node counts on that node's breaker only: the
  error raised is a :class:`NodeUnavailableError`, whose ``transient = False`` tells
  the engine not to count it again on the endpoint's breaker. Errors of the whole
  cluster (no startup node answers) stay transient and open the endpoint's breaker.
* Multi-key operations group their keys by node and skip isolated nodes.
* While a node is isolated no command reaches it, so nothing would tell redis-py that
  its replica was promoted: the slot map would keep naming the dead node until the
  breaker's next probe (60 s by default). So a command refused by an isolated node's
  breaker also has the slot map re-read, at most once a second per cluster, off the
  caller's path (a thread, or a task of the client's event loop).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from time import monotonic
from typing import Any

from cachekit.breaker import BreakerConfig, CircuitBreaker, breaker_for
from cachekit.errors import BackendError, BackendUnavailableError
from cachekit_redis.errors import translate

__all__ = [
    "FAILED",
    "NODE_PREFIX",
    "Batch",
    "NodeBreakers",
    "NodeUnavailableError",
    "node_breaker_config",
]

log = logging.getLogger("cachekit.redis")

#: Registry name of a node's breaker: ``redis cluster node 10.0.0.5:6379``.
NODE_PREFIX = "redis cluster node "
#: While a node is isolated, the slot map is re-read at most this often (seconds).
REFRESH_INTERVAL = 1.0


class NodeUnavailableError(BackendUnavailableError):
    """E011 for one Cluster node: unreachable, or isolated by its own circuit breaker.

    The node's breaker has already counted it, so ``transient`` is False: the engine
    gives its endpoint-wide breaker no failure for it (the rest of the cluster is up).
    """

    transient = False


def node_breaker_config(option: BreakerConfig | bool | None) -> BreakerConfig | None:
    """The node breakers' settings: None/True -> ``CACHEKIT_CIRCUIT_BREAKER_*``; False -> none."""
    if option is False:
        return None
    config = option if isinstance(option, BreakerConfig) else BreakerConfig.from_env()
    return config if config.enabled else None


#: The breaker of a key whose slot is not in the map (redis-py raises for it itself).
_UNROUTED = CircuitBreaker("unrouted cluster slot", BreakerConfig(enabled=False))


def _cluster_wide(exc: BaseException) -> bool:
    """Did redis-py fail for the whole cluster (no startup node answered), not one node?"""
    import redis.exceptions as rx

    return isinstance(exc, rx.RedisClusterException)


class NodeBreakers:
    """The breakers of one Cluster's nodes, found by key (slot map) or node name."""

    def __init__(self, endpoint: str, config: BreakerConfig) -> None:
        from redis.crc import key_slot

        self.endpoint = endpoint
        self.config = config
        self._slot = key_slot
        self._by_node: dict[str, CircuitBreaker] = {}
        self._next_refresh = 0.0
        self._refresher: threading.Thread | None = None
        # Primary name -> when this process first saw it own slots (see changed_at).
        self._primaries_seen: dict[str, float] | None = None

    def __repr__(self) -> str:
        return f"NodeBreakers({self.endpoint!r}, {sorted(self._by_node)})"

    def node(self, name: str) -> CircuitBreaker:
        """The breaker of node ``host:port`` (shared process-wide per node and settings)."""
        found = self._by_node.get(name)
        if found is None:
            found = self._by_node.setdefault(name, breaker_for(NODE_PREFIX + name, self.config))
        return found

    def node_of(self, manager: Any, key: str) -> Any:
        """The primary ClusterNode that owns ``key`` in redis-py's current slot map, or None."""
        nodes = manager.slots_cache.get(self._slot(key.encode()))
        return nodes[0] if nodes else None

    def admit(self, manager: Any, key: str, op: str, aclient: Any = None) -> CircuitBreaker:
        """The breaker of ``key``'s node, once it allows a call; raises (no I/O) if not.

        ``manager`` is the client's ``nodes_manager``. The hot path: CRC16, two dict
        lookups and ``allow()``, which reads one attribute while the breaker is closed.
        A refused call has the slot map re-read off the caller's path: by a thread, or
        for ``aclient`` (a redis.asyncio RedisCluster) by a task of its event loop.
        """
        nodes = manager.slots_cache.get(self._slot(key.encode()))
        if not nodes:
            return _UNROUTED
        name = nodes[0].name
        breaker = self._by_node.get(name)
        if breaker is None:
            breaker = self.node(name)
        if breaker.allow():
            return breaker
        if aclient is None:
            self.refresh_soon(manager, name)
        else:
            self.arefresh_soon(aclient, name)
        raise self.isolated(name, op)

    def call(self, manager: Any, client: Any, key: str, op: str, command: Any, *args: Any) -> Any:
        """``command(client, *args)``, a command about ``key``, through its node's breaker.

        Raises :class:`NodeUnavailableError` without I/O while that node is isolated;
        a failure is translated (:meth:`failed`). For an async client, see ``acall``.
        """
        breaker = self.admit(manager, key, op)
        try:
            result = command(client, *args)
        except BaseException as exc:
            if not isinstance(exc, Exception):  # interrupted: no verdict
                breaker.release_probe()
                raise
            raise self.failed(breaker, exc, op) from exc
        breaker.success()
        return result

    async def acall(self, client: Any, key: str, op: str, command: Any, *args: Any) -> Any:
        """:meth:`call` on a redis.asyncio RedisCluster: ``await command(client, *args)``.

        The same admission and verdicts; two steps more, for what redis.asyncio does
        not do itself: idle connections to a node that was isolated are dropped before
        its next use, and a node's failure has the slot map re-read at once.
        """
        breaker = self.admit(client.nodes_manager, key, op, client)
        try:
            if breaker.transitions["opened"]:
                node = self.node_of(client.nodes_manager, key)
                if node is not None and _stale(client, node, breaker):
                    await _drop_idle(client, node, breaker)
            result = await command(client, *args)
        except BaseException as exc:
            if not isinstance(exc, Exception):  # cancelled: no verdict
                breaker.release_probe()
                raise
            err = self.failed(breaker, exc, op)
            if isinstance(err, NodeUnavailableError):
                await _arefresh(client, breaker.endpoint.removeprefix(NODE_PREFIX))
            raise err from exc
        breaker.success()
        return result

    def changed_at(self, client: Any, key: str) -> float:
        """When this process first saw the primary that owns ``key``'s slot (monotonic).

        -inf for the primaries of the first slot map it looked at: a later one is a
        replica promoted in a master's place (or a node added), and the locks it carried
        over may be orphans whose release went to the dead master (failover.takeover_window).
        """
        manager = client.nodes_manager
        seen = self._primaries_seen
        if seen is None:
            first = {nodes[0].name for nodes in list(manager.slots_cache.values()) if nodes}
            seen = self._primaries_seen = dict.fromkeys(first, float("-inf"))
        node = self.node_of(manager, key)
        if node is None:
            return float("-inf")
        at = seen.get(node.name)
        if at is None:
            at = seen.setdefault(node.name, monotonic())
        return at

    def _refresh_due(self) -> bool:
        """True at most once per REFRESH_INTERVAL (a benign race may allow two)."""
        now = monotonic()
        if now < self._next_refresh:
            return False
        self._next_refresh = now + REFRESH_INTERVAL
        return True

    def refresh_soon(self, manager: Any, isolated: str) -> None:
        """A synchronous client's slot map, re-read in a thread (a promotion moves slots)."""
        running = self._refresher
        if (running is not None and running.is_alive()) or not self._refresh_due():
            return
        thread = threading.Thread(
            target=_refresh_map,
            args=(manager, isolated),
            name="cachekit-cluster-slots",
            daemon=True,
        )
        self._refresher = thread
        thread.start()

    def arefresh_soon(self, client: Any, isolated: str) -> None:
        """A redis.asyncio RedisCluster's slot map, re-read by a task of its event loop."""
        import asyncio

        if not self._refresh_due():
            return
        client._initialize = True  # what redis.asyncio sets after a connection failure
        task = asyncio.get_running_loop().create_task(_arefresh(client, isolated))
        _refreshing.add(task)
        task.add_done_callback(_refreshing.discard)

    def isolated(self, name: str, op: str) -> NodeUnavailableError:
        return NodeUnavailableError(
            f"{op} on {self.endpoint} skipped: cluster node {name} is isolated by its "
            "circuit breaker (no I/O attempted)"
        )

    def judge(
        self, breaker: CircuitBreaker, exc: BaseException, op: str
    ) -> tuple[BackendError, bool]:
        """The error to raise for a failure on ``breaker``'s node, and whether it is that
        node's failure (no side effects: :meth:`failed` records the verdict)."""
        err = translate(exc, self.endpoint, op)
        if breaker is _UNROUTED:
            return err, False
        if isinstance(err, BackendUnavailableError) and not _cluster_wide(exc):
            node = breaker.endpoint.removeprefix(NODE_PREFIX)
            return NodeUnavailableError(
                f"{op} on cluster node {node} of {self.endpoint} failed: "
                f"{type(exc).__name__}: {exc}"
            ), True
        # The server answered, or the whole cluster failed: no verdict on this node.
        return err, False

    def failed(self, breaker: CircuitBreaker, exc: BaseException, op: str) -> BackendError:
        """:meth:`judge` a failure of a command on ``breaker``'s node; record the verdict."""
        err, node_failed = self.judge(breaker, exc, op)
        if node_failed:
            breaker.failure(exc)
        elif breaker is not _UNROUTED:
            breaker.release_probe()
        return err

    def group(self, manager: Any, keys: Sequence[str]) -> list[tuple[Any, list[int]]]:
        """Positions of ``keys`` per owning primary: [(ClusterNode or None, [index...])]."""
        groups: dict[str | None, tuple[Any, list[int]]] = {}
        for index, key in enumerate(keys):
            node = self.node_of(manager, key)
            name = None if node is None else node.name
            entry = groups.get(name)
            if entry is None:
                entry = groups[name] = (node, [])
            entry[1].append(index)
        return list(groups.values())

    def _admit_groups(
        self,
        manager: Any,
        keys: Sequence[str],
        op: str,
        errors: list[BackendError],
        isolated: list[str],
    ) -> list[tuple[Any, list[int], CircuitBreaker]]:
        """The groups whose node's breaker allows a call; the others go to ``errors``
        (and their node names to ``isolated``)."""
        admitted = []
        for node, positions in self.group(manager, keys):
            breaker = _UNROUTED if node is None else self.node(node.name)
            if breaker.allow():
                admitted.append((node, positions, breaker))
            else:
                errors.append(self.isolated(node.name, op))
                isolated.append(node.name)
        return admitted

    def run(
        self,
        client: Any,
        keys: Sequence[str],
        commands: Sequence[tuple[Any, ...]],
        op: str,
        *,
        strict: bool = False,
    ) -> Batch:
        """``commands[i]`` (about ``keys[i]``) grouped by node: one round trip per node.

        Isolated nodes are skipped and failed ones recorded, each on its own breaker;
        their positions stay :data:`FAILED` in the result. ``strict``: all or nothing -
        no I/O at all while any node involved is isolated, and the first failure raises.
        """
        batch = Batch(len(keys))
        isolated: list[str] = []
        admitted = self._admit_groups(client.nodes_manager, keys, op, batch.errors, isolated)
        if isolated:
            self.refresh_soon(client.nodes_manager, isolated[0])
        if strict and batch.errors:
            for _, _, breaker in admitted:
                breaker.release_probe()
            raise batch.errors[0]
        for done, (node, positions, breaker) in enumerate(admitted):
            try:
                values = run_on_node(client, node, [commands[i] for i in positions])
            except BaseException as exc:
                if not isinstance(exc, Exception):  # interrupted: no verdict anywhere
                    for _, _, other in admitted[done:]:
                        other.release_probe()
                    raise
                batch.errors.append(self.failed(breaker, exc, op))
                if strict:
                    for _, _, other in admitted[done + 1 :]:
                        other.release_probe()
                    raise batch.errors[-1] from exc
                continue
            breaker.success()
            batch.fill(positions, values)
        return batch

    async def arun(
        self, client: Any, keys: Sequence[str], commands: Sequence[tuple[Any, ...]], op: str
    ) -> Batch:
        """:meth:`run` on a redis.asyncio RedisCluster: the nodes are asked concurrently."""
        import asyncio

        batch = Batch(len(keys))
        isolated: list[str] = []
        admitted = self._admit_groups(client.nodes_manager, keys, op, batch.errors, isolated)
        if isolated:
            self.arefresh_soon(client, isolated[0])
        try:
            for node, _, breaker in admitted:
                if breaker.transitions["opened"] and _stale(client, node, breaker):
                    await _drop_idle(client, node, breaker)
            outcomes = await asyncio.gather(
                *(
                    arun_on_node(client, [commands[i] for i in positions])
                    for _, positions, _ in admitted
                ),
                return_exceptions=True,
            )
        except BaseException:  # cancelled: no verdict
            for _, _, breaker in admitted:
                breaker.release_probe()
            raise
        failed_node = None
        for (node, positions, breaker), outcome in zip(admitted, outcomes, strict=True):
            if isinstance(outcome, BaseException):
                err = self.failed(breaker, outcome, op)
                batch.errors.append(err)
                if isinstance(err, NodeUnavailableError) and node is not None:
                    failed_node = node.name
            else:
                breaker.success()
                batch.fill(positions, outcome)
        if failed_node is not None:
            # A pipeline that lost its node does not flag the client for a new slot map
            # (a single command does): flag it, and refresh now, asking that node last.
            client._initialize = True
            await _arefresh(client, failed_node)
        return batch

    def combine(self, errors: Sequence[BackendError], op: str) -> BackendError:
        """One error for a multi-key operation that failed on several nodes.

        Node-scoped only when every part was: a cluster-wide or a server error wins.
        """
        for err in errors:
            if not isinstance(err, NodeUnavailableError):
                return err
        if len(errors) == 1:
            return errors[0]
        return NodeUnavailableError(
            f"{op} on {self.endpoint} failed on {len(errors)} cluster nodes; first: "
            f"{errors[0].message}"
        )

    def snapshot(self) -> list[dict[str, Any]]:
        """The node breakers seen so far (JSON-ready), for health reports."""
        return [{**self._by_node[name].snapshot(), "node": name} for name in sorted(self._by_node)]


#: A position of a :class:`Batch` whose node was isolated or failed.
FAILED: Any = object()


class Batch:
    """Results of a multi-key operation by key position, and the nodes' errors."""

    __slots__ = ("errors", "ok", "values")

    def __init__(self, size: int) -> None:
        self.values: list[Any] = [FAILED] * size
        self.errors: list[BackendError] = []
        self.ok = 0  # nodes that answered

    def fill(self, positions: Sequence[int], values: Sequence[Any]) -> None:
        self.ok += 1
        for index, value in zip(positions, values, strict=True):
            self.values[index] = value


# -- multi-key commands ---------------------------------------------------------------------


def run_on_node(client: Any, node: Any, commands: Sequence[tuple[Any, ...]]) -> list[Any]:
    """Send ``commands`` to one node in one round trip, without any retry.

    redis-py's ClusterPipeline sends every command of a node that timed out again, one
    at a time, each waiting for its own timeout; this pipeline on the node's own client
    costs one timeout at most. A command answered with MOVED/ASK/TRYAGAIN (resharding,
    failover) is sent again through the cluster client, which follows the redirection
    and updates its slot map. A connection failure refreshes the slot map, as redis-py
    does after a single command's failure. ``node`` None: through the cluster client.
    """
    import redis.exceptions as rx

    if node is None:
        return [client.execute_command(*args) for args in commands]
    pipe = client.get_redis_connection(node).pipeline(transaction=False)
    for args in commands:
        pipe.execute_command(*args)
    try:
        results: list[Any] = pipe.execute(raise_on_error=False)
    except (rx.ConnectionError, rx.TimeoutError, OSError):
        _refresh(client, node.name)
        raise
    for index, result in enumerate(results):
        if isinstance(result, (rx.MovedError, rx.AskError, rx.TryAgainError)):
            results[index] = client.execute_command(*commands[index])
        elif isinstance(result, Exception):
            raise result
    return results


def _refresh(client: Any, failed: str) -> None:
    """Re-read the slot map after a node failed (a failover may have moved its slots).

    Asking the failed node last, as redis-py does: a frozen node would cost a timeout.
    """
    _refresh_map(client.nodes_manager, failed)


def _refresh_map(manager: Any, failed: str) -> None:
    """:func:`_refresh` on a synchronous client's ``nodes_manager``."""
    import inspect

    try:
        if "last_failed_node_name" in inspect.signature(manager.initialize).parameters:
            manager.initialize(last_failed_node_name=failed)
        else:  # older redis-py
            manager.initialize()
    except Exception as exc:  # the next command reports it
        log.debug("slot map refresh after %s failed: %r", failed, exc)


#: Slot map refreshes running in event loops (a task must be referenced until done).
_refreshing: set[Any] = set()


async def _arefresh(client: Any, failed: str) -> None:
    """After a node failed: the slot map again now, asking the failed node last.

    redis.asyncio only flags its client for a refresh, which the next command (of any
    key) then runs asking the startup nodes in random order: one frozen among them
    would make that unrelated command wait a full timeout. The sync client refreshes
    at once, the failed node last; this does the same.
    """
    import inspect

    if not getattr(client, "_initialize", False):
        return
    try:
        if "last_failed_node_name" in inspect.signature(client.initialize).parameters:
            await client.initialize(last_failed_node_name=failed)
    except Exception as exc:  # the next command reports it
        log.debug("slot map refresh after %s failed: %r", failed, exc)


def _stale(client: Any, node: Any, breaker: CircuitBreaker) -> bool:
    """Was ``node`` isolated since ``client`` last dropped its idle connections to it?"""
    seen = getattr(client, "_cachekit_isolations", None)
    return seen is None or seen.get(node.name) != breaker.transitions["opened"]


async def _drop_idle(client: Any, node: Any, breaker: CircuitBreaker) -> None:
    """Before ``client`` uses ``node`` again after its breaker opened: close its idle sockets.

    redis.asyncio hands out a pooled connection without checking it (redis-py's sync pools
    do): after a restart of the node every idle connection is dead, and a burst of calls
    on them would fail together - often enough to isolate the node once more. Once per
    isolation and client; closing sockets only, no command.
    """
    opened = breaker.transitions["opened"]
    disconnect = getattr(node, "disconnect_free_connections", None)  # recent redis-py
    if disconnect is not None:
        await disconnect()
    seen = getattr(client, "_cachekit_isolations", None)
    if seen is None:
        seen = client._cachekit_isolations = {}
    seen[node.name] = opened  # after the await: concurrent calls wait for it too


async def arun_on_node(client: Any, commands: Sequence[tuple[Any, ...]]) -> list[Any]:
    """``commands`` (all owned by one node) through a redis.asyncio ClusterPipeline.

    That pipeline follows MOVED/ASK itself and never resends a command after a
    connection failure (one timeout at most); the first failed command raises.
    """
    pipe = client.pipeline(transaction=False)
    for args in commands:
        pipe.execute_command(*args)
    results = list(await pipe.execute(raise_on_error=False))
    for result in results:
        if isinstance(result, Exception):
            raise result
    return results
