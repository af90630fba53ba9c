"""Following a Sentinel master across failovers (``redis+sentinel://``).

redis-py's Sentinel clients ask Sentinel where the master is only when they open a
connection: pooled connections keep using the server they were opened to. After a
planned failover (``SENTINEL FAILOVER``) the old master stays up, and writable, until
Sentinel reconfigures it as a replica about 10 s later; until then writes made there
are lost and reads from it are stale.

One :class:`MasterWatch` per Sentinel service and process knows the master last
reported by Sentinel and counts its changes in ``epoch``. The coherence listener
feeds it (at once on Sentinel's ``+switch-master`` message, otherwise with its check
every second), and so does any client whose master answers ``READONLY``. On a change:

* every synchronous pool of the service is reset by the thread that noticed: idle
  connections are closed, so that their next use asks Sentinel again, and connections
  in use are closed when they are released;
* an asyncio client belongs to its event loop and is never touched from another
  thread: the backend compares the client's epoch with the watch's on each operation
  (one attribute check) and, when it is behind, replaces the client in its own loop
  (:func:`retire_async_client` closes the old one once calls in flight are over).

Stampede locks and failovers: a lock taken on the old master just before the promotion
reaches the new master by replication, while its holder's release (and value) may land
on the old master and be lost, leaving an orphan that would hold every caller for the
rest of its lease. For a lease after a change (:func:`takeover_window`), the lock is taken with
a script that also takes over a lock older than the change as this process saw it (on
a Cluster, a replica promoted in a master's place: ``NodeBreakers.changed_at``).
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import weakref
from collections.abc import Sequence
from contextlib import suppress
from time import monotonic
from typing import Any

from cachekit.errors import BackendError
from cachekit_redis.errors import master_demoted, translate

__all__ = [
    "LOCK_TAKEOVER_SCRIPT",
    "MasterWatch",
    "SwitchSubscription",
    "demoted",
    "command_failed",
    "retire_async_client",
    "takeover_window",
    "watch_for",
]

log = logging.getLogger("cachekit.redis")

#: READONLY comes back once per pooled connection still on the demoted master: one
#: reset of every pool per this many seconds is enough.
_DEMOTED_INTERVAL = 1.0
SWITCH_CHANNEL = "+switch-master"


class MasterWatch:
    """The master of one Sentinel service, as last reported, and the pools to reset."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.master: tuple[str, int] | None = None
        #: Grows at every change; asyncio clients remember the value they were built at.
        self.epoch = 0
        #: Set when a client met a demoted master: the listener asks Sentinel at once.
        self.check_now = False
        self._pools: weakref.WeakSet[Any] = weakref.WeakSet()
        self._lock = threading.Lock()
        self._last_reset = float("-inf")
        #: When this process last saw the master change (monotonic; -inf: never).
        self.moved_at = float("-inf")

    def __repr__(self) -> str:
        return f"MasterWatch({self.name!r}, master={self.master}, epoch={self.epoch})"

    def changed_at(self, client: Any, key: str) -> float:
        """When this process last saw the master change (for :func:`takeover_window`)."""
        return self.moved_at

    def register(self, pool: Any) -> None:
        """A synchronous SentinelConnectionPool to reset when the master moves."""
        with self._lock:
            self._pools.add(pool)

    def seen(self, address: Sequence[Any]) -> bool:
        """Sentinel reports ``address`` as the master. True if that is a move (pools reset)."""
        master = (str(address[0]), int(address[1]))
        with self._lock:
            previous, self.master = self.master, master
            self.check_now = False
            if previous is None or previous == master:
                return False  # first sight, or after a READONLY reset: nothing to drop
            self.epoch += 1
            self._last_reset = self.moved_at = monotonic()
            pools = list(self._pools)
        log.info(
            "Sentinel %s: the master moved from %s:%s to %s:%s; reconnecting",
            self.name,
            *previous,
            *master,
        )
        _reset_sync_pools(pools, master)
        return True

    def demoted(self) -> None:
        """A client's master answered READONLY: it is a replica now; forget it everywhere."""
        now = monotonic()
        with self._lock:
            if now - self._last_reset < _DEMOTED_INTERVAL:
                return
            self._last_reset = self.moved_at = now
            self.master = None
            self.epoch += 1
            self.check_now = True
            pools = list(self._pools)
        log.info("Sentinel %s: the master answered READONLY; reconnecting", self.name)
        _reset_sync_pools(pools, None)


#: SET NX PX, or take over a lock older than ARGV[3] ms (taken before the master change
#: this process saw that long ago; its age assumes our lease). 1: the caller holds it.
LOCK_TAKEOVER_SCRIPT = """
if redis.call('set', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return 1 end
local left = redis.call('pttl', KEYS[1])
if left > 0 and tonumber(ARGV[2]) - left > tonumber(ARGV[3]) then
    redis.call('set', KEYS[1], ARGV[1], 'PX', ARGV[2])
    return 1
end
return 0
"""


def takeover_window(changed_at: float, lease_ms: int) -> int:
    """Milliseconds since the key's server became master, while that is within a lease.

    ``changed_at``: when this process saw the server that holds the key become its
    master (monotonic; -inf: long ago). -1 once a whole lease has passed since (or there
    was no change): a stampede lock is taken with ``SET NX PX``. Otherwise with
    :data:`LOCK_TAKEOVER_SCRIPT`, which also takes over a lock whose age (``lease_ms``
    minus its PTTL) exceeds the returned value: taken before the change, its holder's
    release may have been lost with the old master. A lock taken on the new master by a
    process that saw the change earlier is taken over too (the key is computed twice),
    never one taken after this process saw it by more than a round trip (the window and
    the lock's age are whole milliseconds, the age read on the server). The one decision behind
    ``acquire_lock`` and ``get_or_lock`` (cachekit_redis.ops), on every topology.
    """
    since = monotonic() - changed_at
    if since * 1000 >= lease_ms:
        return -1
    return int(since * 1000)


def _reset_sync_pools(pools: list[Any], master: tuple[str, int] | None) -> None:
    for pool in pools:
        try:
            # Connections in use are dropped when released (SentinelConnectionPool keeps
            # only those whose address is its master_address; None matches none)...
            getattr(pool, "proxy", pool).master_address = master
            # ...idle ones now: their next use connects again, asking Sentinel where to.
            pool.disconnect(inuse_connections=False)
        except Exception as exc:  # a pool being torn down: nothing to reset
            log.debug("Sentinel pool reset failed: %r", exc)


_watches: dict[tuple[Any, ...], MasterWatch] = {}
_by_endpoint: dict[str, MasterWatch] = {}
_lock = threading.Lock()


def watch_for(target: Any) -> MasterWatch:
    """The process's watch of a sentinel target's service (shared by every URL naming it)."""
    key = (tuple(sorted(target.nodes)), target.service)
    found = _watches.get(key)
    if found is None or target.endpoint not in _by_endpoint:
        with _lock:
            found = _watches.get(key)
            if found is None:
                found = _watches[key] = MasterWatch(target.endpoint)
            _by_endpoint.setdefault(target.endpoint, found)
    return found


def demoted(endpoint: str) -> None:
    """``READONLY`` from the master of ``endpoint``: the other pooled connections are
    still on the demoted master; drop them all."""
    watch = _by_endpoint.get(endpoint)
    if watch is not None:
        watch.demoted()


def command_failed(exc: BaseException, endpoint: str, op: str) -> BackendError:
    """The error to raise for a failed command (errors.translate), after recording
    what it tells about a Sentinel master (:func:`demoted`)."""
    if master_demoted(exc):
        demoted(endpoint)
    return translate(exc, endpoint, op)


# -- asyncio clients ---------------------------------------------------------------------

_retiring: set[asyncio.Task[None]] = set()


def retire_async_client(client: Any, delay: float) -> None:
    """Close a replaced asyncio client in ``delay`` seconds, when calls in flight are done.

    Called in the client's own event loop. Nothing takes a connection from its pool any
    more; closing it at once would cut the commands still running on it.
    """
    loop = asyncio.get_running_loop()

    def close() -> None:
        task = loop.create_task(_close(client))
        _retiring.add(task)
        task.add_done_callback(_retiring.discard)

    loop.call_later(delay, close)


async def _close(client: Any) -> None:
    with suppress(Exception):
        await client.aclose()


# -- +switch-master ---------------------------------------------------------------------


class SwitchSubscription:
    """A best-effort ``SUBSCRIBE +switch-master`` on one of the Sentinels.

    Used by the coherence listener, which adds ``sock`` to its selector: Sentinel
    publishes the message the moment it names the new master, so the listener checks
    (and the pools are reset) without waiting for its periodic check. When no Sentinel
    can be subscribed to, or the subscription breaks, the periodic check remains.
    """

    def __init__(self, target: Any, settings: Any) -> None:
        self.target = target
        self.settings = settings
        self.conn: Any = None
        self.broken = False  # read() failed: unregister ``sock``, then close()

    @property
    def sock(self) -> Any:
        return None if self.conn is None else self.conn._sock

    def open(self) -> bool:
        """Subscribe on the first Sentinel that answers; False if none did."""
        from redis.connection import Connection

        connection: Any = Connection  # redis-py's Connection is not annotated
        self.close()
        for host, port in self.target.nodes:
            conn = connection(
                host=host,
                port=port,
                password=self.target.sentinel_password,
                socket_timeout=self.settings.socket_timeout,
                socket_connect_timeout=self.settings.socket_connect_timeout,
                protocol=2,
                retry=None,
            )
            try:
                conn.connect()
                conn.send_command("SUBSCRIBE", SWITCH_CHANNEL)
                conn.read_response()
            except Exception as exc:
                log.debug("cannot subscribe to %s on %s:%s: %r", SWITCH_CHANNEL, host, port, exc)
                with suppress(Exception):
                    conn.disconnect()
                continue
            self.conn = conn
            return True
        return False

    def read(self) -> bool:
        """Drain the messages; True if one may be about our service (or the link broke)."""
        conn = self.conn
        if conn is None:
            return False
        service = (self.target.service or "").encode()
        moved = False
        try:
            while True:
                message = conn.read_response()
                if isinstance(message, list) and len(message) >= 3:
                    data = message[2]
                    data = data if isinstance(data, bytes) else str(data).encode()
                    if message[0] in (b"message", "message") and data.split(b" ")[0] == service:
                        moved = True
                if not conn.can_read(timeout=0):
                    return moved
        except Exception as exc:
            log.debug("%s subscription lost: %r", SWITCH_CHANNEL, exc)
            self.broken = True
            return True  # messages may have been missed: check now

    def close(self) -> None:
        conn, self.conn, self.broken = self.conn, None, False
        if conn is not None:
            with suppress(Exception):
                conn.disconnect()


def _after_fork() -> None:
    global _lock
    _lock = threading.Lock()
    for watch in _watches.values():
        watch._lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork)
