"""Generations and change notifications on Redis (cachekit.protocols.Coherence).

* Generation counters are plain integer keys under ``cachekit:gen:`` (GET/INCR,
  no expiry).
* Change notifications use server-assisted client-side caching: one dedicated
  connection per Redis primary runs ``CLIENT TRACKING ON REDIRECT <own id> BCAST
  PREFIX cachekit:`` and ``SUBSCRIBE __redis__:invalidate``. Redis then reports every
  key under ``cachekit:`` that any client writes, deletes, or that expires or is
  evicted, within a round trip. RESP2 is enough (Redis >= 6).
* A background thread per primary reads the notifications, pings every second
  to notice a dead or frozen server, and reconnects with a capped backoff. When a
  connection is lost, after every reconnect, and after a Sentinel failover moved
  the master, it reports ``None`` ("notifications may have been lost") so cachekit
  drops the L1s fed by this Redis; ``healthy`` is False until the stream is back.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
from collections.abc import Callable, Sequence
from contextlib import suppress
from time import monotonic, sleep
from typing import Any

from cachekit_redis.clients import build_sync_client, close_client, raw_connection
from cachekit_redis.errors import translate
from cachekit_redis.failover import SwitchSubscription, command_failed, watch_for
from cachekit_redis.nodes import NodeBreakers, node_breaker_config
from cachekit_redis.resp import ReplyError, RespReader
from cachekit_redis.settings import RedisSettings
from cachekit_redis.urls import Target

__all__ = ["CHANNEL", "PREFIX", "RedisCoherence", "coherence_for"]

log = logging.getLogger("cachekit.redis")

PREFIX = "cachekit:"
CHANNEL = b"__redis__:invalidate"
_KEEPALIVE = 1.0
_BATCH_WAIT = 0.002  # seconds to gather more notices once one arrived
# A steady stream wakes the listener at most this often. Each wake-up costs the process
# far more than a notice (select, recv, GIL hand-offs): under load, batching them
# cut the listener's CPU per notice from 22 to 10 us and a writer's miss by about 4%.
_WAKE_INTERVAL = 0.010
_RECV_SIZE = 256 * 1024

#: A counter is a string of at most 15 digits (Lua reads numbers as doubles).
_IS_COUNTER = """
local function counter(key)
    local v = redis.pcall('get', key)
    if type(v) == 'string' and #v <= 15 and string.match(v, '^%d+$') then
        return tonumber(v)
    end
    return nil
end
"""
#: INCR that starts a counter afresh at a random value when it is missing, of another
#: type or not a counter: none of those may make an invalidation a no-op (WRONGTYPE).
_BUMP_SCRIPT = (
    _IS_COUNTER
    + """
if counter(KEYS[1]) == nil then
    redis.call('set', KEYS[1], ARGV[1])
end
return redis.call('incr', KEYS[1])
"""
)
#: Make a counter at least ARGV[1] (replacing anything that is not a counter).
_RAISE_SCRIPT = (
    _IS_COUNTER
    + """
local n = counter(KEYS[1])
if n ~= nil and n >= tonumber(ARGV[1]) then
    return n
end
redis.call('set', KEYS[1], ARGV[1])
return tonumber(ARGV[1])
"""
)
#: The largest counter value read as one (more digits could lose precision in Lua).
_MAX_COUNTER = 10**15 - 1


def _random_start() -> int:
    """A 48-bit random counter start: a recreated counter never repeats an old value."""
    return int.from_bytes(os.urandom(6), "big") + 1  # seconds without traffic before a PING


def _create(client: Any, key: str) -> Any:
    """SET NX of a missing counter at a random start (True when this call created it)."""
    return client.set(key, _random_start(), nx=True)


_MAX_BACKOFF = 1.0
_SUBSCRIBE_RETRY = 5.0  # seconds between attempts to subscribe to +switch-master


class RedisCoherence:
    """One per Redis endpoint and process, shared by the sync and async backends."""

    def __init__(self, target: Target, settings: RedisSettings) -> None:
        self.target = target
        self.settings = settings
        self.endpoint = target.endpoint
        self.client = build_sync_client(target, settings)
        self.healthy = False
        self.reconnects = 0
        self._listeners: list[Callable[[Sequence[str | bytes] | None], None]] = []
        self._threads: list[threading.Thread] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._connected_once = False
        self._bump: Any = None
        self._raise: Any = None
        # Cluster: the node breakers, shared with the backends of the same nodes (nodes.py).
        config = node_breaker_config(settings.circuit_breaker)
        self._nodes = (
            NodeBreakers(self.endpoint, config)
            if target.kind == "cluster" and config is not None
            else None
        )
        # Counters this process just created: their creation notice is no invalidation.
        # Several threads may try to create one counter at once: each expects a notice
        # until its SET NX says another won (key -> [expected notices, deadline]).
        self._created: dict[bytes, list[float]] = {}
        # The outcome of the stream's first connect, which the first caller waits for.
        self._first_attempt = threading.Event()
        self._first_failure: BaseException | None = None

    def __repr__(self) -> str:
        return f"RedisCoherence({self.endpoint!r}, healthy={self.healthy})"

    # -- generations -----------------------------------------------------------------

    def generations(self, keys: Sequence[str]) -> list[int]:
        """Current counters; a missing counter is created at a random value first.

        Random, not 0: a counter lost with its server (a restart without persistence,
        a failover that lost the last INCR) must never come back to a value it had
        before, or entries invalidated under that old value would be served again.

        On a Cluster the counters must all be read, exactly: while a node that holds
        one is isolated by its breaker this raises (node-scoped) without any I/O.
        """
        from cachekit.errors import BackendError

        self._ensure_started()
        if not self._first_attempt.is_set():
            # Tracking goes on before the first read and the first store: the first
            # connect's "may have lost notices" reset then finds nothing to drop, and the
            # first entries get their full lifetime (about one connection set-up, once).
            wait = self.settings.socket_connect_timeout + 2 * self.settings.socket_timeout
            self._first_attempt.wait(wait)
        failed, self._first_failure = self._first_failure, None
        if failed is not None:
            # The stream's first connect just paid a timeout: the caller pays no second one.
            raise translate(failed, self.endpoint, "listen") from failed
        keys = list(keys)
        try:
            values = self._mget(keys)
            missing = [k for k, v in zip(keys, values, strict=True) if v is None]
            if missing:
                for key in missing:
                    # Expect the creation notice only while the stream is up (otherwise it
                    # never comes), and only for a moment: an expectation left behind
                    # must not swallow a later, real bump.
                    expect = self.healthy
                    if expect:
                        self._expect_created(key.encode(), 1)
                    if not self._on_node(key, "SET NX generation", _create, key) and expect:
                        self._expect_created(key.encode(), -1)  # someone else created it
                values = self._mget(keys)
            found = [_counter(v) for v in values]
            for i, key in enumerate(keys):
                if found[i] is None:
                    # Of another type (MGET reads it as nil) or not a counter: replaced,
                    # or every bump of it would fail and invalidation would do nothing.
                    log.warning(
                        "[E012] generation counter %s on %s is not a counter (%s); "
                        "replacing it, which invalidates what depends on it",
                        key,
                        self.endpoint,
                        "another type or missing" if values[i] is None else "not an integer",
                    )
                    found[i] = int(self._on_node(key, "INCR generation", self._incr, key))
        except BackendError:
            raise  # a node's verdict, already translated
        except Exception as exc:
            raise command_failed(exc, self.endpoint, "MGET generations") from exc
        return [int(v) for v in found if v is not None]

    def _expect_created(self, key: bytes, delta: int) -> None:
        with self._lock:
            entry = self._created.setdefault(key, [0.0, 0.0])
            entry[0] += delta
            entry[1] = monotonic() + 2.0
            if entry[0] <= 0:
                del self._created[key]

    def _forget_created(self, key: bytes) -> bool:
        """Consume the expected notice of our own counter creation; True if expected."""
        with self._lock:
            entry = self._created.pop(key, None)
        return entry is not None and entry[1] >= monotonic()

    def _mget(self, keys: list[str]) -> list[Any]:
        nodes = self._nodes
        if nodes is not None:
            # One round trip per node; all or nothing (an isolated node: no I/O at all).
            commands = [("GET", key) for key in keys]
            return nodes.run(self.client, keys, commands, "MGET generations", strict=True).values
        if self.target.kind == "cluster":
            return list(self.client.mget_nonatomic(keys))
        return list(self.client.mget(keys))

    def _on_node(self, key: str, op: str, command: Any, *args: Any) -> Any:
        """``command(client, *args)``; on a Cluster through the breaker of ``key``'s node."""
        nodes = self._nodes
        if nodes is None:
            return command(self.client, *args)
        return nodes.call(self.client.nodes_manager, self.client, key, op, command, *args)

    def bump(self, key: str) -> int:
        """Increment a counter (creating a lost one at a random value, never at 1)."""
        from cachekit.errors import BackendError

        try:
            return int(self._on_node(key, "INCR generation", self._incr, key))
        except BackendError:
            raise  # a node's verdict, already translated
        except Exception as exc:
            raise command_failed(exc, self.endpoint, "INCR generation") from exc

    def _incr(self, client: Any, key: str) -> Any:
        if self._bump is None:
            self._bump = client.register_script(_BUMP_SCRIPT)
        return self._bump(keys=[key], args=[_random_start()])

    def raise_to(self, key: str, value: int) -> int:
        """Make a counter at least ``value`` (see cachekit.protocols.Coherence)."""
        from cachekit.errors import BackendError

        value = min(int(value), _MAX_COUNTER)
        try:
            return int(self._on_node(key, "raise generation", self._raise_counter, key, value))
        except BackendError:
            raise  # a node's verdict, already translated
        except Exception as exc:
            raise command_failed(exc, self.endpoint, "raise generation") from exc

    def _raise_counter(self, client: Any, key: str, value: int) -> Any:
        if self._raise is None:
            self._raise = client.register_script(_RAISE_SCRIPT)
        return self._raise(keys=[key], args=[value])

    # -- notifications -----------------------------------------------------------------

    def listen(self, callback: Callable[[Sequence[str | bytes] | None], None]) -> None:
        with self._lock:
            self._listeners.append(callback)
        self._ensure_started()

    def _emit(self, keys: Sequence[str | bytes] | None) -> None:
        for listener in list(self._listeners):
            try:
                listener(keys)
            except Exception:  # a broken listener must not stop the stream
                log.exception("coherence listener failed")

    def _ensure_started(self) -> None:
        """Start the listener thread (without waiting: listen() must not block).

        generations() waits for the thread's first connect; when that fails, the
        waiting read raises at once, so the first call pays one timeout, not two.
        """
        if self._threads and all(t.is_alive() for t in self._threads):
            return
        if not self._listeners:
            return
        with self._lock:
            if self._threads and all(t.is_alive() for t in self._threads):
                return
            self._stop.clear()
            self._first_attempt.clear()
            thread = threading.Thread(
                target=self._run, name=f"cachekit-coherence {self.endpoint}", daemon=True
            )
            self._threads = [thread]
            thread.start()

    def close(self) -> None:
        """Stop the notification stream and close this object's connections (waiting up
        to 2 s for the listener thread). Twice is harmless; the next read of the
        generations starts them again (the functions re-read them after the reset)."""
        self._stop.set()
        for thread in list(self._threads):
            if thread is not threading.current_thread():
                thread.join(2.0)
        close_client(self.client, self.target.kind)

    def _run(self) -> None:
        backoff = 0.05
        while not self._stop.is_set():
            conns: list[_Stream] = []
            try:
                conns = self._connect_all()
                self._created.clear()
                # Whatever changed before the stream was up (or while it was down) is
                # unknown - including a bump between a first generations read and the
                # first subscription - so every L1 fed by this Redis starts over.
                self._emit(None)
                if self._connected_once:
                    self.reconnects += 1
                self._connected_once = True
                self.healthy = True
                self._first_attempt.set()
                backoff = 0.05
                self._serve(conns)
            except Exception as exc:
                from cachekit.errors import BackendUnavailableError

                if not self._first_attempt.is_set():
                    self._first_failure = exc
                    self._first_attempt.set()

                if isinstance(translate(exc, self.endpoint, "listen"), BackendUnavailableError):
                    log.debug("notification stream of %s interrupted: %r", self.endpoint, exc)
                else:  # not the network: a bug or an unexpected reply, say so loudly
                    log.warning(
                        "notification stream of %s failed (%s: %s); reconnecting",
                        self.endpoint,
                        type(exc).__name__,
                        exc,
                    )
            finally:
                for conn in conns:
                    conn.disconnect()
            if self.healthy:
                self.healthy = False
                self._emit(None)
            if self._stop.wait(backoff):
                return
            backoff = min(backoff * 2, _MAX_BACKOFF)

    # -- connections -------------------------------------------------------------------

    def _addresses(self) -> list[dict[str, Any] | None]:
        """Where to subscribe: None for a standalone server, else each primary's address."""
        t = self.target
        if t.kind == "standalone":
            return [None]
        if t.kind == "sentinel":
            host, port = self._sentinel_master()
            return [{"host": host, "port": port}]
        self.client.nodes_manager.initialize()
        return [{"host": node.host, "port": node.port} for node in self.client.get_primaries()]

    def _sentinel_master(self) -> tuple[str, int]:
        pool = self.client.connection_pool
        host, port = pool.sentinel_manager.discover_master(pool.service_name)
        # A new master: every pooled connection of this service is dropped now, not
        # when the old master is demoted (cachekit_redis.failover).
        watch_for(self.target).seen((host, port))
        return str(host), int(port)

    def _connect_all(self) -> list[_Stream]:
        streams: list[_Stream] = []
        try:
            for address in self._addresses():
                # Built like the clients' connections (TLS, unix socket, credentials,
                # timeouts, RESP2, no retries); redis-py connects and authenticates it.
                conn = raw_connection(
                    self.target, self.settings, address, client_name="cachekit-coherence"
                )
                conn.connect()
                stream = _Stream(conn, address)
                streams.append(stream)
                client_id = stream.request("CLIENT", "ID")
                stream.request(
                    "CLIENT", "TRACKING", "ON", "REDIRECT", client_id, "BCAST", "PREFIX", PREFIX
                )
                stream.request("SUBSCRIBE", CHANNEL)
        except BaseException:
            for stream in streams:
                stream.disconnect()
            raise
        return streams

    def _serve(self, conns: list[_Stream]) -> None:
        import selectors

        selector = selectors.DefaultSelector()
        for conn in conns:
            selector.register(conn.sock, selectors.EVENT_READ, conn)
        last_traffic = {id(c): monotonic() for c in conns}
        ping_sent: dict[int, float] = {}
        dead_after = self.settings.socket_timeout + _KEEPALIVE
        next_topology_check = monotonic() + _KEEPALIVE
        next_wake = 0.0
        # Sentinel: its +switch-master message triggers the master check at once.
        watch = switches = None
        next_subscribe = monotonic() + _SUBSCRIBE_RETRY
        if self.target.kind == "sentinel":
            watch = watch_for(self.target)
            switches = SwitchSubscription(self.target, self.settings)
            if switches.open():
                selector.register(switches.sock, selectors.EVENT_READ, switches)
        try:
            while not self._stop.is_set():
                ready = selector.select(timeout=0.25)
                if ready:
                    # Let a burst of notices accumulate and handle it in one wake-up: a
                    # lone notice waits 2 ms, a steady stream is read every 10 ms. The
                    # writers' CPU matters more than those ms of coherence delay.
                    sleep(max(_BATCH_WAIT, next_wake - monotonic()))
                    next_wake = monotonic() + _WAKE_INTERVAL
                for key, _ in ready:
                    conn = key.data
                    if conn is switches:
                        if switches.read():
                            next_topology_check = 0.0
                        if switches.broken:  # resubscribed by the next check
                            selector.unregister(key.fileobj)
                            switches.close()
                        continue
                    # Every frame that arrived so far, parsed from one read.
                    frames = conn.receive()
                    last_traffic[id(conn)] = monotonic()
                    ping_sent.pop(id(conn), None)
                    self._handle(frames)
                now = monotonic()
                for conn in conns:
                    cid = id(conn)
                    if cid in ping_sent:
                        if now - ping_sent[cid] > dead_after:
                            raise TimeoutError("no reply to PING on the notification connection")
                    elif now - last_traffic[cid] > _KEEPALIVE:
                        conn.send("PING")
                        ping_sent[cid] = now
                if watch is not None and (now >= next_topology_check or watch.check_now):
                    next_topology_check = now + _KEEPALIVE
                    if switches is not None and switches.conn is None and now >= next_subscribe:
                        next_subscribe = now + _SUBSCRIBE_RETRY
                        if switches.open():
                            selector.register(switches.sock, selectors.EVENT_READ, switches)
                    if self._sentinel_master() != tuple(conns[0].master_address):
                        return  # failover: reconnect to the new master
        finally:
            selector.close()
            if switches is not None:
                switches.close()

    def _handle(self, frames: list[Any]) -> None:
        """Route the notices of one read, every frame's keys in one call."""
        keys: list[bytes] = []
        for message in frames:
            if type(message) is not list or len(message) < 3:
                continue
            if message[0] != b"message" or message[1] != CHANNEL:
                continue
            data = message[2]
            if data is None:  # FLUSHDB / FLUSHALL: what came before it is moot
                keys.clear()
                self._emit(None)
            elif type(data) is list:
                keys.extend(data)
            else:
                keys.append(data)
        if keys and self._created:
            keys = [k for k in keys if not self._forget_created(k)]
        if keys:
            self._emit(keys)


def _counter(value: Any) -> int | None:
    """A counter's value as MGET returned it; None when it is not a counter."""
    if type(value) is not bytes or not 0 < len(value) <= 15 or not value.isdigit():
        return None
    return int(value)


class _Stream:
    """One notification connection: redis-py connects it, :class:`RespReader` reads it.

    Everything the server sends after the connection's own handshake is read here, in
    whole frames per ``recv`` (redis-py's reader costs several times more per notice).
    """

    __slots__ = ("conn", "master_address", "reader", "sock")

    def __init__(self, conn: Any, address: dict[str, Any] | None) -> None:
        self.conn = conn
        self.sock = conn._sock
        self.reader = RespReader()
        where = address or {}
        self.master_address = (where.get("host"), where.get("port"))

    def send(self, *args: Any) -> None:
        self.conn.send_command(*args)

    def receive(self) -> list[Any]:
        """The frames completed by one read (waits at most the socket timeout)."""
        sock = self.sock
        data = sock.recv(_RECV_SIZE)
        if not data:
            raise ConnectionError("the server closed the notification connection")
        # TLS: bytes already decrypted into the SSL object are invisible to select().
        pending = getattr(sock, "pending", None)
        while pending is not None and pending():
            data += sock.recv(_RECV_SIZE)
        self.reader.feed(data)
        return self.reader.frames()

    def request(self, *args: Any) -> Any:
        """Send a command and return its reply (a ReplyError is raised)."""
        self.send(*args)
        while True:
            for frame in self.receive():
                if isinstance(frame, list) and frame and frame[0] == b"message":
                    continue  # a notice before the stream is declared up: superseded
                if isinstance(frame, ReplyError):
                    raise ReplyError(f"{args[0]} {args[1]!s}: {frame}")
                return frame

    def disconnect(self) -> None:
        with suppress(Exception):  # closing a broken connection must not raise
            self.conn.disconnect()


_registry: dict[tuple[str, RedisSettings], RedisCoherence] = {}
_registry_lock = threading.Lock()


def coherence_for(url: str, target: Target, settings: RedisSettings) -> RedisCoherence:
    """The process's coherence object for one URL (shared by sync and async backends)."""
    key = (url, settings)
    found = _registry.get(key)
    if found is None:
        with _registry_lock:
            found = _registry.get(key)
            if found is None:
                found = _registry[key] = RedisCoherence(target, settings)
    return found


def stream_status(url: str, settings: RedisSettings) -> dict[str, Any] | None:
    """The notification stream of ``url`` for a health report; None when none was started.

    ``connected`` is False while notices may be lost (L1 entries then live at most
    DEGRADED_L1_TTL); ``reconnects`` counts the times the stream came back.
    """
    found = _registry.get((url, settings))
    if found is None or not found._threads:
        return None
    return {"connected": found.healthy, "reconnects": found.reconnects}


def finish_health(
    report: dict[str, Any], nodes: NodeBreakers | None, url: str, settings: RedisSettings
) -> dict[str, Any]:
    """Add what the sync and async backends' health reports share past the ping."""
    if nodes is not None:
        report["node_breakers"] = nodes.snapshot()
    stream = stream_status(url, settings)
    if stream is not None:
        report["notifications"] = stream
    return report


def _after_fork() -> None:
    global _registry_lock
    _registry_lock = threading.Lock()
    for coherence in _registry.values():
        coherence._threads = []
        coherence._lock = threading.Lock()
        coherence.healthy = False
        coherence._connected_once = True  # the child must treat its first connect as a gap


def _shutdown() -> None:
    """Stop the listener threads before the interpreter tears modules down."""
    for coherence in list(_registry.values()):
        coherence._stop.set()
    for coherence in list(_registry.values()):
        for thread in coherence._threads:
            thread.join(timeout=0.5)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork)
atexit.register(_shutdown)
