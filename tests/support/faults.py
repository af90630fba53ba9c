"""Network fault injectors for one machine: a loopback TCP proxy and a full-backlog listener.

TcpProxy sits between a client and a server (usually a private redis-server) and can be switched
at runtime between modes:

    pass                  forward bytes both ways
    delay(seconds)        hold every server->client chunk for ``seconds`` (order kept)
    blackhole             accept connections and read what clients send, never answer
                          (and forward nothing to the server)
    reset                 RST every open connection now (SO_LINGER 0) and every new one on accept
    corrupt(n | fn)       flip ``n`` bytes of each server->client chunk (``at="start"`` breaks the
                          RESP framing: a protocol error; ``at="end"`` changes the payload bytes
                          just before the final CRLF: wrong bytes), or replace each chunk by
                          ``fn(chunk)``; ``count=k`` limits it to the next k chunks
    refuse                close the listener (new connects get ECONNREFUSED) and close all open
                          connections; any other mode re-opens the listener on the same port

    proxy = TcpProxy(("127.0.0.1", server.port))
    proxy.set_mode("delay", 0.5)      # or proxy.delay(0.5)
    with proxy.mode_during("blackhole"):
        ...

The proxy runs an asyncio loop in one daemon thread; set_mode() returns once the mode is in force
(resets sent, listener closed); every wait is bounded (5 s) and close() is idempotent.

FullBacklogListener is a listening socket with backlog 0 whose accept queue has been filled by
one connection that is never accepted. Linux drops a SYN when the accept queue is full
(tcp_conn_request: sk_acceptq_is_full -> drop, before syncookies are considered), so further
connects are neither accepted nor refused: the client retransmits its SYN and its connect times
out. The constructor checks this with a probe connect and raises if the kernel behaves otherwise.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import select
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from redis_servers import HOST, PortReservation

_WAIT = 5.0
_READ = 65536

MODES = ("pass", "delay", "blackhole", "reset", "corrupt", "refuse")


def flip_bytes(data: bytes, nbytes: int = 1, at: str = "start") -> bytes:
    """XOR 0xFF into ``nbytes`` bytes at the start of ``data`` or just before its final CRLF."""
    if not data or nbytes <= 0:
        return data
    buf = bytearray(data)
    if at == "start":
        positions = range(min(nbytes, len(buf)))
    elif at == "end":
        end = len(buf) - 2 if buf.endswith(b"\r\n") else len(buf)
        positions = range(max(0, end - nbytes), end)
    else:
        raise ValueError(f"at must be 'start' or 'end', not {at!r}")
    for i in positions:
        buf[i] ^= 0xFF
    return bytes(buf)


@dataclass
class _Mode:
    name: str = "pass"
    delay: float = 0.0
    transform: Callable[[bytes], bytes] | None = None
    remaining: int | None = None  # corrupt: chunks left to corrupt (None: all)

    def describe(self) -> str:
        if self.name == "delay":
            return f"delay({self.delay})"
        if self.name == "corrupt":
            return f"corrupt(remaining={self.remaining})"
        return self.name


def _make_mode(name: str, *args: Any, **kwargs: Any) -> _Mode:
    if name == "pass":
        return _Mode("pass")
    if name == "delay":
        if not args and "seconds" not in kwargs:
            raise TypeError("mode 'delay' needs the delay in seconds")
        seconds = float(args[0] if args else kwargs.pop("seconds"))
        if seconds < 0:
            raise ValueError("delay must be >= 0")
        return _Mode("delay", delay=seconds)
    if name in ("blackhole", "reset", "refuse"):
        if args or kwargs:
            raise TypeError(f"mode {name!r} takes no arguments")
        return _Mode(name)
    if name == "corrupt":
        what = args[0] if args else kwargs.pop("nbytes", kwargs.pop("fn", 1))
        at = kwargs.pop("at", "start")
        count = kwargs.pop("count", None)
        if kwargs:
            raise TypeError(f"unexpected arguments {sorted(kwargs)}")
        if callable(what):
            transform = what
        else:
            nbytes = int(what)
            flip_bytes(b"xx\r\n", nbytes, at)  # validates ``at``

            def transform(data: bytes) -> bytes:
                return flip_bytes(data, nbytes, at)

        return _Mode("corrupt", transform=transform, remaining=count)
    raise ValueError(f"unknown proxy mode {name!r}; expected one of {MODES}")


def _rst(writer: asyncio.StreamWriter | None) -> None:
    """Close a connection with an RST (SO_LINGER on, timeout 0)."""
    if writer is None:
        return
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


def _fin(writer: asyncio.StreamWriter | None) -> None:
    if writer is not None:
        writer.transport.close()


class _Link:
    """One proxied connection: client side, server side, and the pump tasks."""

    def __init__(self, client: asyncio.StreamWriter) -> None:
        self.client = client
        self.server: asyncio.StreamWriter | None = None
        self.tasks: list[asyncio.Task[None]] = []
        self.closed = False

    def close(self, *, rst: bool) -> None:
        if self.closed:
            return
        self.closed = True
        close = _rst if rst else _fin
        close(self.client)
        close(self.server)
        current = asyncio.current_task()
        for task in self.tasks:
            if task is not current:
                task.cancel()


class TcpProxy:
    """A loopback TCP proxy in front of ``target`` with fault modes switchable at runtime."""

    def __init__(
        self,
        target: tuple[str, int],
        *,
        mode: str | tuple[Any, ...] = "pass",
        host: str = HOST,
        connect_timeout: float = 1.0,
        db: int = 0,
    ) -> None:
        self.target = (target[0], int(target[1]))
        self.host = host
        self.db = db
        self.connect_timeout = connect_timeout
        self._reservation = PortReservation(host=host)
        self.port = self._reservation.port
        self._mode = _Mode()
        self._links: set[_Link] = set()
        self._server: asyncio.AbstractServer | None = None
        self._closed = False
        self.connections_accepted = 0
        self.bytes_to_server = 0
        self.bytes_to_client = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._run, name=f"tcp-proxy-{self.port}", daemon=True
        )
        self._thread.start()
        try:
            self._call(self._listen())
            if mode != "pass":
                self.set_mode(*((mode,) if isinstance(mode, str) else mode))
        except BaseException:
            self.close()
            raise

    # ---- addresses

    @property
    def address(self) -> tuple[str, int]:
        return (self.host, self.port)

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/{self.db}"

    @property
    def mode(self) -> str:
        return self._mode.name

    @property
    def active_connections(self) -> int:
        return len(self._links)

    def __repr__(self) -> str:
        return (
            f"<TcpProxy {self.host}:{self.port} -> {self.target[0]}:{self.target[1]} "
            f"{self._mode.describe()}>"
        )

    # ---- modes

    def set_mode(self, name: str, *args: Any, **kwargs: Any) -> None:
        """Switch mode: set_mode("delay", 0.5), set_mode("corrupt", 1, at="end"), ..."""
        new = _make_mode(name, *args, **kwargs)
        self._call(self._apply(new))

    def pass_through(self) -> None:
        self.set_mode("pass")

    def delay(self, seconds: float) -> None:
        self.set_mode("delay", seconds)

    def blackhole(self) -> None:
        self.set_mode("blackhole")

    def reset(self) -> None:
        self.set_mode("reset")

    def corrupt(
        self,
        what: int | Callable[[bytes], bytes] = 1,
        *,
        at: str = "start",
        count: int | None = None,
    ) -> None:
        self.set_mode("corrupt", what, at=at, count=count)

    def refuse(self) -> None:
        self.set_mode("refuse")

    @contextlib.contextmanager
    def mode_during(self, name: str, *args: Any, **kwargs: Any) -> Iterator[TcpProxy]:
        """Apply a mode for the ``with`` block, then go back to pass."""
        self.set_mode(name, *args, **kwargs)
        try:
            yield self
        finally:
            if not self._closed:
                self.set_mode("pass")

    # ---- lifecycle

    def close(self) -> None:
        """Close every connection and the listener, stop the thread. Idempotent, bounded."""
        if self._closed:
            return
        self._closed = True
        try:
            if self._thread.is_alive():
                with contextlib.suppress(Exception):
                    self._call(self._shutdown())
                self._loop.call_soon_threadsafe(self._loop.stop)
                self._thread.join(_WAIT)
        finally:
            if not self._thread.is_alive() and not self._loop.is_closed():
                self._loop.close()
            self._reservation.release()

    def __enter__(self) -> TcpProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- loop thread

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_forever()
        # Let cancelled tasks finish so none is destroyed pending.
        pending = [t for t in asyncio.all_tasks(self._loop) if not t.done()]
        for task in pending:
            task.cancel()
        if pending:
            self._loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))

    def _call(self, coro: Any) -> Any:
        if self._loop.is_closed() or not self._thread.is_alive():
            coro.close()
            raise RuntimeError(f"{self!r} is closed")
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(_WAIT)

    async def _listen(self) -> None:
        if self._server is not None:
            return
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.host, self.port))
            sock.listen(128)
            sock.setblocking(False)
            self._server = await asyncio.start_server(self._accept, sock=sock)
        except BaseException:
            sock.close()
            raise

    async def _unlisten(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None

    async def _apply(self, mode: _Mode) -> None:
        self._mode = mode
        if mode.name == "refuse":
            await self._unlisten()
            for link in list(self._links):
                link.close(rst=False)
            self._links.clear()
            return
        await self._listen()
        if mode.name == "reset":
            for link in list(self._links):
                link.close(rst=True)
            self._links.clear()

    async def _shutdown(self) -> None:
        await self._unlisten()
        for link in list(self._links):
            link.close(rst=True)
        self._links.clear()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections_accepted += 1
        mode = self._mode
        if mode.name in ("reset", "refuse") or self._closed:
            _rst(writer)
            return
        link = _Link(writer)
        self._links.add(link)
        try:
            if mode.name == "blackhole":
                # Never connect upstream: read and drop whatever the client sends.
                await self._drain_forever(reader)
                return
            try:
                up_reader, up_writer = await asyncio.wait_for(
                    asyncio.open_connection(*self.target), self.connect_timeout
                )
            except (OSError, asyncio.TimeoutError):
                link.close(rst=True)  # the upstream is down: the client sees a reset
                return
            if link.closed:  # reset/refuse arrived while connecting
                _rst(up_writer)
                return
            link.server = up_writer
            up = asyncio.ensure_future(self._pump(link, reader, up_writer, upstream=True))
            down = asyncio.ensure_future(self._pump(link, up_reader, writer, upstream=False))
            link.tasks += [up, down]
            await asyncio.gather(up, down, return_exceptions=True)
        except asyncio.CancelledError:
            pass
        except Exception:  # a broken connection is an expected event here
            pass
        finally:
            link.close(rst=False)
            self._links.discard(link)

    async def _drain_forever(self, reader: asyncio.StreamReader) -> None:
        while True:
            data = await reader.read(_READ)
            if not data:
                return

    async def _pump(
        self,
        link: _Link,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        upstream: bool,
    ) -> None:
        """Copy one direction, applying the mode to each chunk; closes the link at EOF."""
        queue: asyncio.Queue[tuple[float, bytes] | None] = asyncio.Queue()
        sender = asyncio.ensure_future(self._send(queue, writer, upstream=upstream))
        link.tasks.append(sender)
        loop = asyncio.get_running_loop()
        try:
            while True:
                data = await reader.read(_READ)
                if not data:
                    break
                mode = self._mode
                if mode.name == "blackhole":
                    continue
                due = loop.time()
                if not upstream:
                    if mode.name == "delay":
                        due += mode.delay
                    elif (
                        mode.name == "corrupt"
                        and mode.transform is not None
                        and mode.remaining != 0
                    ):
                        data = mode.transform(data)
                        if mode.remaining is not None:
                            mode.remaining -= 1
                queue.put_nowait((due, data))
            queue.put_nowait(None)
            await sender
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            sender.cancel()
            link.close(rst=False)

    async def _send(
        self,
        queue: asyncio.Queue[tuple[float, bytes] | None],
        writer: asyncio.StreamWriter,
        *,
        upstream: bool,
    ) -> None:
        loop = asyncio.get_running_loop()
        with contextlib.suppress(OSError):
            while True:
                item = await queue.get()
                if item is None:
                    return
                due, data = item
                wait = due - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                if self._mode.name == "blackhole":
                    continue  # held data is dropped if a blackhole started meanwhile
                writer.write(data)
                await writer.drain()
                if upstream:
                    self.bytes_to_server += len(data)
                else:
                    self.bytes_to_client += len(data)


# --------------------------------------------------------------------------------------------


class FullBacklogListener:
    """A listening socket whose accept queue is full: connects to it time out.

    ``listen(0)`` leaves room for one established connection; the constructor fills it with
    client connections that are never accepted until a probe connect times out, then checks once
    more that a fresh connect times out (rather than being refused or accepted).
    """

    def __init__(self, host: str = HOST, *, probe_timeout: float = 0.1, db: int = 0) -> None:
        self.host = host
        self.db = db
        self._fillers: list[socket.socket] = []
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            self._listener.bind((host, 0))
            self._listener.listen(0)
            self.port: int = self._listener.getsockname()[1]
            self._fill(probe_timeout)
            outcome = self.probe(probe_timeout)
            if outcome != "timeout":
                raise RuntimeError(
                    f"a connect to the full-backlog listener on {host}:{self.port} gave "
                    f"{outcome!r} instead of a timeout; this kernel does not drop SYNs when the "
                    "accept queue is full, so connect timeouts cannot be simulated this way"
                )
        except BaseException:
            self.close()
            raise

    def _fill(self, probe_timeout: float) -> None:
        for _ in range(64):
            outcome, sock = self._connect(probe_timeout)
            if outcome == "connected":
                assert sock is not None
                self._fillers.append(sock)
                continue
            if outcome == "timeout":
                return
            raise RuntimeError(f"filling the backlog of {self.host}:{self.port} gave {outcome!r}")
        raise RuntimeError(f"the backlog of {self.host}:{self.port} never filled up")

    def _connect(self, timeout: float) -> tuple[str, socket.socket | None]:
        """Non-blocking connect: ("connected", sock) | ("timeout", None) | ("error: ...", None)."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        code = sock.connect_ex((self.host, self.port))
        if code not in (0, errno.EINPROGRESS):
            sock.close()
            return (f"error: {errno.errorcode.get(code, code)}", None)
        _, writable, _ = select.select([], [sock], [], timeout)
        if not writable:
            sock.close()
            return ("timeout", None)
        code = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if code:
            sock.close()
            return (f"error: {errno.errorcode.get(code, code)}", None)
        return ("connected", sock)

    def probe(self, timeout: float = 0.1) -> str:
        """Try one connect now: "timeout" (the expected outcome), "connected" or "error: ..."."""
        outcome, sock = self._connect(timeout)
        if sock is not None:
            self._fillers.append(sock)  # it took a queue slot: keep it so the queue stays full
        return outcome

    @property
    def address(self) -> tuple[str, int]:
        return (self.host, self.port)

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/{self.db}"

    @property
    def filled_with(self) -> int:
        return len(self._fillers)

    def close(self) -> None:
        for sock in self._fillers:
            sock.close()
        self._fillers.clear()
        self._listener.close()

    def __enter__(self) -> FullBacklogListener:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<FullBacklogListener {self.host}:{self.port} filled={self.filled_with}>"


def wait_until(predicate: Callable[[], Any], timeout: float = 5.0, interval: float = 0.01) -> Any:
    """Poll ``predicate`` until truthy; return its value or raise AssertionError at ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s: {predicate!r}")
        time.sleep(interval)
