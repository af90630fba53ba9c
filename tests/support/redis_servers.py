"""Private redis-server processes for the test suite: single servers, a Cluster, a Sentinel setup.

Every server listens on a free loopback port with its own temp dir, persistence off, and is
stopped by pid. Nothing here ever talks to the machine's shared Redis on 6379.

    server = RedisServer(maxmemory="1mb", maxmemory_policy="noeviction")
    server.client().set("k", b"v")
    server.kill(); server.restart()      # same port, always empty (no RDB is ever loaded)
    server.cleanup()                     # stop + remove the temp dir (idempotent)

Leaks are prevented three ways: the pytest fixtures clean up in finalizers, an ``atexit`` hook
kills whatever is still running, and (when started from the main thread) every child gets
``PR_SET_PDEATHSIG=SIGKILL`` through ``setpriv`` so it dies with the test process even after a
SIGKILL of pytest itself.

Ports: each server holds a *reservation* on its port, a socket bound with SO_REUSEADDR that never
listens. The kernel then never hands that port to ``bind(0)`` or to an outgoing connection, while
redis-server (which also sets SO_REUSEADDR) can still listen on it. So ``restart()`` gets its port
back even after the server was dead for a while, and the find-a-port/start race is closed; a start
that still fails with "Address already in use" is retried on a new port.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import redis
import redis.cluster
import redis.sentinel
from redis.backoff import NoBackoff
from redis.retry import Retry

HOST = "127.0.0.1"
STARTUP_TIMEOUT = 10.0
STOP_TIMEOUT = 5.0
SHARED_MACHINE_PORT = 6379  # the machine's own Redis: never used by the tests
_POLL = 0.01
_INSTALL_LOCK = Path(tempfile.gettempdir()) / "cachekit-tests-redis-install.lock"


class RedisSetupError(RuntimeError):
    """A Redis process (or the redis binaries) could not be provided. Tests must fail, not skip."""


# --------------------------------------------------------------------------------------------
# Binaries


_binaries: tuple[str, str] | None = None
_binaries_lock = threading.Lock()


def _which(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    for folder in ("/usr/bin", "/usr/local/bin", "/usr/sbin"):
        candidate = os.path.join(folder, name)
        if os.access(candidate, os.X_OK):
            return candidate
    return None


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    with open(path, "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _run_apt(args: Sequence[str], timeout: float) -> None:
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(
        ["apt-get", *args],
        check=True,
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
    )


def _apt_install_redis() -> None:
    """apt-get install redis-server redis-tools, without starting the distribution's service."""
    if os.geteuid() != 0:
        raise RedisSetupError(
            "redis-server/redis-cli are not installed and the tests are not running as root, "
            "so they cannot `apt-get install -y redis-server redis-tools`. Install Redis >= 6.2 "
            "(redis-server and redis-cli on PATH) and run the tests again."
        )
    if _which("apt-get") is None:
        raise RedisSetupError(
            "redis-server/redis-cli are not installed and apt-get is not available to install "
            "them. Install Redis >= 6.2 (redis-server and redis-cli on PATH)."
        )
    # A policy-rc.d that forbids service starts keeps the package from starting its own
    # redis-server on 6379 (where the machine may already run one, failing the postinst).
    policy = Path("/usr/sbin/policy-rc.d")
    created_policy = False
    if not policy.exists():
        with contextlib.suppress(OSError):
            policy.write_text("#!/bin/sh\nexit 101\n")
            policy.chmod(0o755)
            created_policy = True
    try:
        _run_apt(["update"], timeout=600)
        _run_apt(["install", "-y", "--no-install-recommends", "redis-server", "redis-tools"], 900)
    except subprocess.CalledProcessError as exc:
        tail = "\n".join(((exc.stdout or "") + (exc.stderr or "")).splitlines()[-20:])
        raise RedisSetupError(
            f"installing Redis failed: `apt-get {' '.join(exc.cmd[1:])}` exited with "
            f"{exc.returncode}:\n{tail}"
        ) from exc
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise RedisSetupError(f"installing Redis failed: {exc}") from exc
    finally:
        if created_policy:
            with contextlib.suppress(OSError):
                policy.unlink()


def redis_binaries() -> tuple[str, str]:
    """Paths of (redis-server, redis-cli); installs them with apt-get once if missing.

    The install runs once per machine under a file lock (xdist workers race for it). Raises
    RedisSetupError with a clear message when Redis cannot be provided.
    """
    global _binaries
    with _binaries_lock:
        if _binaries is not None:
            return _binaries
        server, cli = _which("redis-server"), _which("redis-cli")
        if not (server and cli):
            with _file_lock(_INSTALL_LOCK):
                server, cli = _which("redis-server"), _which("redis-cli")
                if not (server and cli):
                    _apt_install_redis()
                    server, cli = _which("redis-server"), _which("redis-cli")
        if not (server and cli):
            raise RedisSetupError(
                "apt-get installed redis-server and redis-tools, yet redis-server/redis-cli "
                f"are still not found (redis-server={server}, redis-cli={cli})"
            )
        _binaries = (server, cli)
        return _binaries


_version: tuple[int, int, int] | None = None


def redis_version() -> tuple[int, int, int]:
    """Version of the redis-server binary, e.g. (7, 0, 15)."""
    global _version
    if _version is None:
        server, _ = redis_binaries()
        out = subprocess.run(
            [server, "--version"], capture_output=True, text=True, timeout=10, check=False
        ).stdout
        match = re.search(r"v=(\d+)\.(\d+)\.(\d+)", out)
        if not match:
            raise RedisSetupError(f"cannot read the version of {server}: {out!r}")
        _version = (int(match[1]), int(match[2]), int(match[3]))
    return _version


# --------------------------------------------------------------------------------------------
# Ports


class PortReservation:
    """A loopback port held by a bound, never-listening SO_REUSEADDR socket.

    No other ``bind(0)`` or outgoing connection is given the port while it is held, but a
    listener that sets SO_REUSEADDR (redis-server, our proxies) can still bind and listen on it.
    """

    def __init__(self, port: int = 0, host: str = HOST) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            sock.close()
            raise
        self._sock: socket.socket | None = sock
        self.host = host
        self.port: int = sock.getsockname()[1]

    def release(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def __repr__(self) -> str:
        return f"PortReservation({self.host}:{self.port})"


def free_port() -> int:
    """A port that was free a moment ago (prefer PortReservation, which keeps it free)."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


# --------------------------------------------------------------------------------------------
# Registry of live processes (atexit safety net)

_live: dict[int, RedisServer] = {}
_live_lock = threading.Lock()


def _register(server: RedisServer) -> None:
    with _live_lock:
        _live[id(server)] = server


def _unregister(server: RedisServer) -> None:
    with _live_lock:
        _live.pop(id(server), None)


def cleanup_all() -> None:
    """Kill every server this process started and remove their temp dirs."""
    with _live_lock:
        servers = list(_live.values())
    for server in servers:
        with contextlib.suppress(Exception):
            server.cleanup(graceful=False)


atexit.register(cleanup_all)


def _setpriv_prefix() -> list[str]:
    """``setpriv --pdeathsig KILL --`` when usable: the child dies with the forking thread.

    The parent-death signal fires when the *thread* that forked exits, so it is only used from
    the main thread (a server restarted from a helper thread must not die with that thread).
    """
    if threading.current_thread() is not threading.main_thread():
        return []
    setpriv = _which("setpriv")
    if setpriv is None or not _setpriv_supports_pdeathsig(setpriv):
        return []
    return [setpriv, "--pdeathsig", "KILL", "--"]


_pdeathsig_ok: bool | None = None


def _setpriv_supports_pdeathsig(setpriv: str) -> bool:
    global _pdeathsig_ok
    if _pdeathsig_ok is None:
        try:
            result = subprocess.run(
                [setpriv, "--pdeathsig", "KILL", "--", "true"], capture_output=True, timeout=5
            )
            _pdeathsig_ok = result.returncode == 0
        except (OSError, subprocess.TimeoutExpired):
            _pdeathsig_ok = False
    return _pdeathsig_ok


_OWNER_FILE = ".cachekit-owner"


def _temp_base() -> str:
    base = tempfile.gettempdir()
    if len(base) > 40 and os.path.isdir("/tmp"):
        base = "/tmp"  # keep unix socket paths well under the 107-byte limit
    return base


def _start_time(pid: int) -> str | None:
    """A process's start time (clock ticks since boot): tells a pid from its reuse."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _temp_dir(name: str) -> Path:
    path = Path(tempfile.mkdtemp(prefix=f"cachekit-{name}-", dir=_temp_base()))
    (path / _OWNER_FILE).write_text(f"{os.getpid()} {_start_time(os.getpid())}\n")
    return path


_swept = False


def sweep_stale_dirs() -> int:
    """Remove leftovers of test processes that died without cleaning up (SIGKILL, SIGTERM).

    Only dirs carrying our owner file are considered, and only when the owning process
    (pid + start time) is gone; a redis-server still running in such a dir (its working
    directory) is SIGKILLed first. Returns the number of dirs removed.
    """
    removed = 0
    for path in Path(_temp_base()).glob("cachekit-*"):
        try:
            pid_text, start = (path / _OWNER_FILE).read_text().split()
        except (OSError, ValueError):
            continue
        pid = int(pid_text)
        if _start_time(pid) == start:
            continue  # the owner is alive
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit():
                continue
            try:
                cwd = os.readlink(proc / "cwd")
                exe = os.path.basename(os.readlink(proc / "exe"))
            except OSError:
                continue
            if exe.startswith("redis-") and (cwd == str(path) or cwd.startswith(f"{path} ")):
                with contextlib.suppress(OSError):
                    os.kill(int(proc.name), signal.SIGKILL)
        shutil.rmtree(path, ignore_errors=True)
        removed += 1
    return removed


def _sweep_once() -> None:
    global _swept
    if not _swept:
        _swept = True
        with contextlib.suppress(OSError):
            sweep_stale_dirs()


def _ping(host: str, port: int, timeout: float = 0.5) -> bool:
    """True when the server answers PING with +PONG (not -LOADING and the like)."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(b"PING\r\n")
            data = b""
            while not data.endswith(b"\r\n"):
                chunk = sock.recv(256)
                if not chunk:
                    return False
                data += chunk
            return data.startswith(b"+PONG")
    except OSError:
        return False


def _config_value(value: object) -> str:
    if value is True:
        return "yes"
    if value is False:
        return "no"
    return str(value)


def no_retry() -> Retry:
    """A redis-py Retry that never retries (redis-py 8's default retries would hide faults)."""
    return Retry(NoBackoff(), 0)


# --------------------------------------------------------------------------------------------
# One server


class RedisServer:
    """A private redis-server on a free loopback port, with its own temp dir.

    ``RedisServer(*args, **options)``: ``args`` are raw redis-server arguments appended last
    (``"--cluster-enabled", "yes"``); ``options`` are config directives with ``_`` for ``-``
    (``maxmemory="1mb", maxmemory_policy="noeviction"``); True/False become yes/no. Started (and
    waited for) on construction unless ``start=False``.
    """

    kind = "redis"

    def __init__(
        self,
        *args: str,
        name: str = "redis",
        start: bool = True,
        startup_timeout: float = STARTUP_TIMEOUT,
        cluster: bool = False,
        unix_socket: bool = True,
        **options: object,
    ) -> None:
        self.server_binary, self.cli_binary = redis_binaries()
        self.version = redis_version()
        _sweep_once()
        self.name = name
        self.host = HOST
        self.startup_timeout = startup_timeout
        self.args: list[str] = list(args)
        self.options: dict[str, str] = {
            key.replace("_", "-"): _config_value(value) for key, value in options.items()
        }
        self.cluster = cluster
        self.dir = _temp_dir(name)
        self.log_path = self.dir / f"{self.kind}.log"
        self.stdout_path = self.dir / "stdout.log"
        self.unix_socket: str | None = None
        if unix_socket and len(str(self.dir / "redis.sock")) < 100:
            self.unix_socket = str(self.dir / "redis.sock")
        self.process: subprocess.Popen[bytes] | None = None
        self._reservation = PortReservation()
        self.port: int = self._reservation.port
        self._bus_reservation: PortReservation | None = None
        if cluster:
            self._reserve_bus_port()
        self._paused = False
        self._original_config: dict[str, str] = {}
        self._closed = False
        self._lock = threading.RLock()
        _register(self)
        if start:
            try:
                self.start()
            except BaseException:
                self.cleanup(graceful=False)
                raise

    # ---- addresses

    @property
    def address(self) -> tuple[str, int]:
        return (self.host, self.port)

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    @property
    def unix_url(self) -> str:
        if self.unix_socket is None:
            raise RuntimeError(f"{self!r} has no unix socket")
        return f"unix://{self.unix_socket}?db=0"

    @property
    def bus_port(self) -> int | None:
        """Cluster bus port (cluster servers only)."""
        if not self.cluster:
            return None
        return self._bus_reservation.port if self._bus_reservation else None

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def __repr__(self) -> str:
        state = "alive" if self.is_alive() else "down"
        return f"<{type(self).__name__} {self.name} {self.host}:{self.port} pid={self.pid} {state}>"

    # ---- command line

    def _base_options(self) -> dict[str, str]:
        opts = {
            "port": str(self.port),
            "bind": self.host,
            "daemonize": "no",
            "save": "",
            "appendonly": "no",
            "dir": str(self.dir),
            "logfile": str(self.log_path),
            # Replicas sync at once instead of after the default 5 s diskless delay.
            "repl-diskless-sync-delay": "0",
        }
        if self.unix_socket:
            opts["unixsocket"] = self.unix_socket
            opts["unixsocketperm"] = "700"
        if self.version >= (7, 0, 0):
            opts["enable-debug-command"] = "local"  # DEBUG SLEEP etc. for fault tests
            opts["shutdown-timeout"] = "1"  # SIGTERM never waits 10 s for lagging replicas
        if self.cluster:
            opts["cluster-enabled"] = "yes"
            opts["cluster-config-file"] = str(self.dir / "nodes.conf")
            opts["cluster-node-timeout"] = "1000"
            # Keys on live masters keep working while one master is down.
            opts["cluster-require-full-coverage"] = "no"
            if self._bus_reservation is not None and self.version >= (7, 0, 0):
                opts["cluster-port"] = str(self._bus_reservation.port)
        return opts

    def command(self) -> list[str]:
        opts = {**self._base_options(), **self.options}
        cmd = [self.server_binary]
        for key, value in opts.items():
            cmd += [f"--{key}", value]
        return cmd + self.args

    # ---- lifecycle

    def start(self) -> RedisServer:
        """Start the process (if not running) and wait until it answers PING."""
        with self._lock:
            if self._closed:
                raise RuntimeError(f"{self!r} was cleaned up")
            if self.is_alive():
                return self
            attempts = 3 if self.process is None else 1  # a first start may move ports
            for attempt in range(attempts):
                self._spawn()
                try:
                    self.wait_ready()
                    return self
                except RedisSetupError:
                    if attempt + 1 < attempts and "Address already in use" in self.log_tail():
                        self.kill()
                        self._move_to_new_ports()
                        continue
                    self.kill()
                    raise
            return self  # pragma: no cover

    def _reserve_bus_port(self) -> None:
        """Redis >= 7: any free port (cluster-port). Older: the fixed port + 10000 must be free."""
        if self.version >= (7, 0, 0):
            self._bus_reservation = PortReservation()
            return
        for _ in range(100):
            if self.port + 10000 <= 65535:
                with contextlib.suppress(OSError):
                    self._bus_reservation = PortReservation(self.port + 10000)
                    return
            self._reservation.release()
            self._reservation = PortReservation()
            self.port = self._reservation.port
        raise RedisSetupError("no free port pair (port, port + 10000) for a cluster node")

    def _move_to_new_ports(self) -> None:
        self._reservation.release()
        self._reservation = PortReservation()
        self.port = self._reservation.port
        if self._bus_reservation is not None:
            self._bus_reservation.release()
            self._bus_reservation = None
            self._reserve_bus_port()

    def _spawn(self) -> None:
        self._paused = False
        # A replica's full sync leaves a dump.rdb behind; a (re)start always begins empty.
        with contextlib.suppress(FileNotFoundError):
            (self.dir / "dump.rdb").unlink()
        with open(self.stdout_path, "ab") as out:
            self.process = subprocess.Popen(
                _setpriv_prefix() + self.command(),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self.dir,
                start_new_session=True,  # Ctrl-C in the terminal does not hit it first
            )

    def wait_ready(self, timeout: float | None = None) -> None:
        """Poll PING until it answers; raise RedisSetupError with the log tail otherwise."""
        timeout = self.startup_timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        while True:
            if self.process is None:
                raise RedisSetupError(f"{self!r} was never started")
            code = self.process.poll()
            if code is not None:
                raise RedisSetupError(
                    f"{self.kind}-server {self.name} on port {self.port} exited with code {code} "
                    f"during startup; command: {' '.join(self.command())}\n{self.log_tail()}"
                )
            if _ping(self.host, self.port):
                return
            if time.monotonic() > deadline:
                raise RedisSetupError(
                    f"{self.kind}-server {self.name} on port {self.port} (pid {self.pid}) did "
                    f"not answer PING within {timeout:.1f}s\n{self.log_tail()}"
                )
            time.sleep(_POLL)

    def is_alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def paused(self) -> bool:
        return self._paused and self.is_alive()

    def _signal(self, sig: int) -> None:
        if self.process is not None and self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.process.pid, sig)

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """SIGTERM, wait up to ``timeout``, then SIGKILL. Works on a paused server too."""
        with self._lock:
            if self.process is None:
                return
            if self.process.poll() is None:
                self._signal(signal.SIGTERM)
                self._signal(signal.SIGCONT)  # a SIGSTOPped process handles SIGTERM only now
                try:
                    self.process.wait(timeout)
                except subprocess.TimeoutExpired:
                    self._signal(signal.SIGKILL)
                    self.process.wait(STOP_TIMEOUT)
            self._paused = False

    def kill(self) -> None:
        """SIGKILL now (kill -9) and reap the process."""
        with self._lock:
            if self.process is None:
                return
            self._signal(signal.SIGKILL)
            self.process.wait(STOP_TIMEOUT)
            self._paused = False

    def pause(self) -> None:
        """SIGSTOP: connections stay open, nothing is answered (a frozen server)."""
        if not self.is_alive():
            raise RuntimeError(f"cannot pause {self!r}")
        self._signal(signal.SIGSTOP)
        self._paused = True
        self._wait_state(stopped=True)

    def resume(self) -> None:
        """SIGCONT after pause()."""
        self._signal(signal.SIGCONT)
        self._paused = False
        self._wait_state(stopped=False)

    def _wait_state(self, *, stopped: bool, timeout: float = 2.0) -> None:
        """Wait until /proc shows the process stopped (T) or running again."""
        deadline = time.monotonic() + timeout
        while self.pid is not None and time.monotonic() < deadline:
            try:
                stat = Path(f"/proc/{self.pid}/stat").read_text()
            except OSError:
                return
            state = stat.rsplit(")", 1)[1].split()[0]
            if (state in ("T", "t")) == stopped:
                return
            time.sleep(0.002)

    def restart(self, timeout: float | None = None) -> RedisServer:
        """Start again on the same port (after kill()/stop(); stops first if still running)."""
        with self._lock:
            if self.is_alive():
                self.stop()
            self._spawn()
            try:
                self.wait_ready(timeout)
            except RedisSetupError:
                self.kill()
                raise
            return self

    def cleanup(self, graceful: bool = True) -> None:
        """Stop the process, release the ports and remove the temp dir. Idempotent."""
        with self._lock:
            try:
                if graceful:
                    self.stop(timeout=2.0)
                else:
                    self.kill()
            finally:
                self._closed = True
                self._reservation.release()
                if self._bus_reservation is not None:
                    self._bus_reservation.release()
                shutil.rmtree(self.dir, ignore_errors=True)
                _unregister(self)

    close = cleanup

    def __enter__(self) -> RedisServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.cleanup()

    # ---- talking to it

    def client(self, **kwargs: Any) -> redis.Redis:
        """A redis.Redis for this server: 1 s timeouts, no retries; ``kwargs`` override."""
        settings: dict[str, Any] = {
            "host": self.host,
            "port": self.port,
            "db": 0,
            "socket_timeout": 1.0,
            "socket_connect_timeout": 1.0,
            "retry": no_retry(),
        }
        settings.update(kwargs)
        return redis.Redis(**settings)

    def execute(self, *command: Any, timeout: float = 2.0) -> Any:
        """Run one command on a fresh connection (closed afterwards)."""
        client = self.client(socket_timeout=timeout, socket_connect_timeout=timeout)
        try:
            return client.execute_command(*command)
        finally:
            client.close()

    def config_get(self, name: str) -> str | None:
        """One config value as a string (None if the server has no such setting)."""
        client = self.client(decode_responses=True)
        try:
            value = client.config_get(name).get(name)
        finally:
            client.close()
        return None if value is None else str(value)

    def config_set(self, name: str, value: object) -> None:
        """CONFIG SET; the first value seen is remembered and restored by reset()."""
        if name not in self._original_config:
            original = self.config_get(name)
            if original is not None:
                self._original_config[name] = original
        self.execute("CONFIG", "SET", name, _config_value(value))

    def reset(self) -> None:
        """Make the server fresh for the next test: running, unpaused, config restored, empty."""
        with self._lock:
            if self._paused:
                self.resume()
            if not self.is_alive():
                self.restart()
            client = self.client(socket_timeout=2.0, socket_connect_timeout=2.0)
            try:
                if self.version >= (6, 2, 0):
                    client.execute_command("CLIENT", "UNPAUSE")
                for name, value in self._original_config.items():
                    client.execute_command("CONFIG", "SET", name, value)
                self._original_config.clear()
                client.execute_command("FLUSHALL")
                client.execute_command("SCRIPT", "FLUSH")
                if self.version >= (7, 0, 0):
                    client.execute_command("FUNCTION", "FLUSH")
            finally:
                client.close()

    def log_tail(self, lines: int = 30) -> str:
        parts = []
        for path in (self.log_path, self.stdout_path):
            try:
                text = path.read_text(errors="replace")
            except OSError:
                continue
            if text.strip():
                tail = "\n".join(text.splitlines()[-lines:])
                parts.append(f"--- {path.name} (last {lines} lines) ---\n{tail}")
        return "\n".join(parts) or "(no log output)"

    def info(self, section: str | None = None) -> dict[str, Any]:
        client = self.client()
        try:
            return client.info(section) if section else client.info()
        finally:
            client.close()


# --------------------------------------------------------------------------------------------
# Sentinel process


class SentinelServer(RedisServer):
    """``redis-server <conf> --sentinel`` monitoring one master, with a rewritable conf file."""

    kind = "sentinel"

    def __init__(
        self,
        master: tuple[str, int],
        *,
        service_name: str = "mymaster",
        quorum: int = 1,
        down_after_ms: int = 500,
        failover_timeout_ms: int = 2000,
        name: str = "sentinel",
        start: bool = True,
        startup_timeout: float = STARTUP_TIMEOUT,
    ) -> None:
        self.monitored = master
        self.service_name = service_name
        self.quorum = quorum
        self.down_after_ms = down_after_ms
        self.failover_timeout_ms = failover_timeout_ms
        super().__init__(name=name, start=False, startup_timeout=startup_timeout, unix_socket=False)
        self.conf_path = self.dir / "sentinel.conf"
        self._write_conf()
        if start:
            try:
                self.start()
            except BaseException:
                self.cleanup(graceful=False)
                raise

    def _write_conf(self) -> None:
        host, port = self.monitored
        name = self.service_name
        self.conf_path.write_text(
            "\n".join(
                [
                    f"port {self.port}",
                    f"bind {self.host}",
                    "daemonize no",
                    f'dir "{self.dir}"',
                    f'logfile "{self.log_path}"',
                    f"sentinel monitor {name} {host} {port} {self.quorum}",
                    f"sentinel down-after-milliseconds {name} {self.down_after_ms}",
                    f"sentinel failover-timeout {name} {self.failover_timeout_ms}",
                    f"sentinel parallel-syncs {name} 1",
                    "",
                ]
            )
        )

    def _move_to_new_ports(self) -> None:
        super()._move_to_new_ports()
        self._write_conf()

    def command(self) -> list[str]:
        return [self.server_binary, str(self.conf_path), "--sentinel", *self.args]

    def reset(self) -> None:  # a sentinel holds no data
        if self._paused:
            self.resume()
        if not self.is_alive():
            self.restart()


# --------------------------------------------------------------------------------------------
# Cluster


def _serving(node: RedisServer) -> bool:
    """Does this cluster node say cluster_state:ok (it answers commands for its slots)?"""
    try:
        return (
            _parse_info(node.execute("CLUSTER", "INFO", timeout=0.5)).get("cluster_state") == "ok"
        )
    except redis.RedisError:
        return False


def _parse_info(text: str | bytes) -> dict[str, str]:
    if isinstance(text, bytes):
        text = text.decode()
    out = {}
    for line in text.splitlines():
        if ":" in line:
            key, value = line.split(":", 1)
            out[key] = value.strip()
    return out


class LocalRedisCluster:
    """A real Redis Cluster of ``masters`` nodes (no replicas), made with ``redis-cli --cluster``.

    Nodes run with cluster-node-timeout 1000 and cluster-require-full-coverage no, so while one
    master is down the others keep serving their slots.
    """

    def __init__(self, masters: int = 3, *, timeout: float = 30.0, name: str = "cluster") -> None:
        started = time.monotonic()
        self.name = name
        self.nodes: list[RedisServer] = []
        self.replicas: list[RedisServer] = []  # add_replica(); not in ``nodes``
        self._slot_owner: list[int] | None = None
        try:
            for index in range(masters):
                self.nodes.append(RedisServer(name=f"{name}{index}", cluster=True))
            self._create(timeout)
            self.wait_ok(timeout)
            self.refresh_slots()
        except BaseException:
            self.cleanup()
            raise
        self.startup_seconds = time.monotonic() - started

    def _create(self, timeout: float) -> None:
        cli = self.nodes[0].cli_binary
        cmd = [cli, "--cluster", "create"]
        cmd += [f"{node.host}:{node.port}" for node in self.nodes]
        cmd += ["--cluster-replicas", "0", "--cluster-yes"]
        try:
            result = subprocess.run(
                cmd, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
            )
        except subprocess.TimeoutExpired as exc:
            raise RedisSetupError(f"`{' '.join(cmd)}` did not finish in {timeout}s") from exc
        if result.returncode != 0 or "[OK] All 16384 slots covered" not in result.stdout:
            raise RedisSetupError(
                f"`{' '.join(cmd)}` failed (exit {result.returncode}):\n"
                f"{result.stdout[-2000:]}\n{result.stderr[-2000:]}"
            )

    # ---- addresses

    @property
    def addresses(self) -> list[tuple[str, int]]:
        return [node.address for node in self.nodes]

    @property
    def startup_nodes(self) -> list[redis.cluster.ClusterNode]:
        return [redis.cluster.ClusterNode(node.host, node.port) for node in self.nodes]

    @property
    def url(self) -> str:
        node = self.nodes[0]
        return f"redis+cluster://{node.host}:{node.port}"

    def client(self, **kwargs: Any) -> redis.cluster.RedisCluster:
        """A redis.cluster.RedisCluster on all nodes: 1 s timeouts; ``kwargs`` override."""
        settings: dict[str, Any] = {
            "startup_nodes": self.startup_nodes,
            "socket_timeout": 1.0,
            "socket_connect_timeout": 1.0,
        }
        settings.update(kwargs)
        return redis.cluster.RedisCluster(**settings)

    def node_for_key(self, key: str | bytes) -> int:
        """Index in ``nodes`` of the master that owns ``key``'s slot (works with nodes down).

        Slot ownership never moves in this cluster (no replicas, no resharding), so the map
        read once from CLUSTER SLOTS is kept; refresh_slots() re-reads it.
        """
        slot = redis.cluster.key_slot(key.encode() if isinstance(key, str) else key)
        if self._slot_owner is None:
            self.refresh_slots()
        assert self._slot_owner is not None
        return self._slot_owner[slot]

    def refresh_slots(self) -> None:
        for node in self.nodes:
            if not node.is_alive() or node.paused:
                continue
            owners = [-1] * 16384
            for entry in node.execute("CLUSTER", "SLOTS"):
                start, end, owner = entry[0], entry[1], entry[2]
                index = self._index_of(int(owner[1]))
                for slot in range(start, end + 1):
                    owners[slot] = index
            if -1 not in owners:
                self._slot_owner = owners
                return
        raise RedisSetupError("no live node reports an owner for every slot")

    def _index_of(self, port: int) -> int:
        for index, node in enumerate(self.nodes):
            if node.port == port:
                return index
        raise KeyError(port)

    # ---- state

    def cluster_info(self, index: int = 0) -> dict[str, str]:
        return _parse_info(self.nodes[index].execute("CLUSTER", "INFO"))

    def _healthy(self) -> bool:
        for node in self.nodes:
            if not node.is_alive() or node.paused:
                return False
            try:
                info = _parse_info(node.execute("CLUSTER", "INFO", timeout=0.5))
                nodes = node.execute("CLUSTER", "NODES", timeout=0.5)
            except redis.RedisError:
                return False
            if info.get("cluster_state") != "ok" or info.get("cluster_slots_ok") != "16384":
                return False
            text = nodes.decode() if isinstance(nodes, bytes) else str(nodes)
            lines = [line for line in text.splitlines() if line.strip()]
            if len(lines) != len(self.nodes) + len(self.replicas):
                return False
            for line in lines:
                fields = line.split()
                if "fail" in fields[2] or fields[7] != "connected":  # flags, link-state
                    return False
        return True

    def wait_ok(self, timeout: float = 20.0) -> None:
        """Wait until every node says cluster_state:ok and sees all others connected, no FAIL."""
        deadline = time.monotonic() + timeout
        while not self._healthy():
            if time.monotonic() > deadline:
                states = []
                for node in self.nodes:
                    try:
                        states.append(f"{node!r}: {node.execute('CLUSTER', 'NODES', timeout=0.5)}")
                    except redis.RedisError as exc:
                        states.append(f"{node!r}: {exc}")
                raise RedisSetupError(
                    f"cluster not healthy within {timeout}s:\n" + "\n".join(map(str, states))
                )
            time.sleep(0.05)

    def add_replica(self, index: int, timeout: float = 20.0) -> RedisServer:
        """Start one more node as a replica of master ``index`` and wait until it replicates.

        Kept in ``replicas``, not ``nodes`` (whose slots never move otherwise): for tests
        of a promotion. Kill the master and the replica takes its slots once the others
        flag it as failed (cluster-node-timeout 1000 ms, then an election).
        """
        master = self.nodes[index]
        replica = RedisServer(name=f"{self.name}-replica{len(self.replicas)}", cluster=True)
        self.replicas.append(replica)
        replica.execute("CLUSTER", "MEET", master.host, str(master.port), str(master.bus_port))
        master_id = master.execute("CLUSTER", "MYID")
        master_id = master_id.decode() if isinstance(master_id, bytes) else str(master_id)
        deadline = time.monotonic() + timeout
        while True:
            try:
                replica.execute("CLUSTER", "REPLICATE", master_id)
                break
            except redis.ResponseError:  # does not know the master yet
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        while replica.info("replication").get("master_link_status") != "up":
            if time.monotonic() > deadline:
                raise RedisSetupError(f"{replica!r} did not replicate from {master!r}")
            time.sleep(0.05)
        self.wait_ok(max(1.0, deadline - time.monotonic()))
        return replica

    def kill_node(self, index: int) -> RedisServer:
        """kill -9 one master (its slots become unreachable; others keep serving)."""
        node = self.nodes[index]
        node.kill()
        return node

    def wait_promoted(
        self, replica: RedisServer, timeout: float = 20.0, election: float = 8.0
    ) -> str:
        """Wait until ``replica`` (of a killed master) is a master; return how it got there.

        The cluster's own election usually promotes it within 2-3 s (node-timeout 1000 ms,
        then a vote). On a loaded machine an election can miss its vote window and the
        retry comes seconds later; after ``election`` seconds the replica is promoted with
        ``CLUSTER FAILOVER TAKEOVER`` (no vote needed), so tests of what a client does
        after a promotion do not depend on how quickly Redis elects. Returns ``"election"``
        or ``"takeover"``. Promoted means serving: the replica also says cluster_state:ok
        (just after the switch it can still answer CLUSTERDOWN for a moment).
        """
        start = time.monotonic()
        how = "election"
        while not (replica.info("replication").get("role") == "master" and _serving(replica)):
            waited = time.monotonic() - start
            if how == "election" and waited > election:
                how = "takeover"
                with contextlib.suppress(redis.RedisError):
                    replica.execute("CLUSTER", "FAILOVER", "TAKEOVER")
            if waited > timeout:
                raise RedisSetupError(
                    f"{replica!r} was not promoted within {timeout}s "
                    f"(election, then CLUSTER FAILOVER TAKEOVER after {election}s)\n"
                    + replica.log_tail()
                )
            time.sleep(0.05)
        return how

    def wait_node_failed(self, index: int, timeout: float = 10.0) -> None:
        """Wait until the other nodes flag node ``index`` as ``fail`` (after node-timeout)."""
        dead_port = self.nodes[index].port
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            seen = 0
            others = [n for i, n in enumerate(self.nodes) if i != index and n.is_alive()]
            for node in others:
                text = node.execute("CLUSTER", "NODES").decode()
                for line in text.splitlines():
                    fields = line.split()
                    if f":{dead_port}@" in fields[1] and "fail" in fields[2].split(","):
                        seen += 1
            if others and seen == len(others):
                return
            time.sleep(0.05)
        raise RedisSetupError(f"node {index} was not flagged as failed within {timeout}s")

    def restart_node(self, index: int, timeout: float = 20.0) -> RedisServer:
        """Start a killed/stopped node again (same port, same nodes.conf) and wait until healthy."""
        node = self.nodes[index]
        if node.paused:
            node.resume()
        if not node.is_alive():
            node.restart()
        self.wait_ok(timeout)
        return node

    def flushall(self) -> None:
        for node in self.nodes:
            if node.is_alive() and not node.paused:
                node.execute("FLUSHALL")

    def reset(self, timeout: float = 20.0) -> None:
        """Every node running and healthy again, all data flushed."""
        for index, node in enumerate(self.nodes):
            if node.paused or not node.is_alive():
                if node.paused:
                    node.resume()
                if not node.is_alive():
                    self.nodes[index].restart()
        self.wait_ok(timeout)
        self.flushall()

    def cleanup(self) -> None:
        for node in self.nodes + self.replicas:
            node.cleanup(graceful=False)

    def __repr__(self) -> str:
        return f"<LocalRedisCluster {self.addresses}>"


# --------------------------------------------------------------------------------------------
# Sentinel


class LocalRedisSentinel:
    """A master, one replica (``--replicaof``) and one Sentinel monitoring them (quorum 1).

    ``failover()`` moves the master role to the replica and waits until Sentinel reports it;
    ``master`` / ``replica`` always name the current roles. The replication topology is written
    back into each server's arguments, so ``restart()`` of either brings it back in its role.
    """

    def __init__(
        self,
        *,
        service_name: str = "mymaster",
        down_after_ms: int = 500,
        failover_timeout_ms: int = 2000,
        timeout: float = 30.0,
    ) -> None:
        started = time.monotonic()
        self.service_name = service_name
        self.servers: list[RedisServer] = []
        self._master_index = 0
        self.sentinel_server: SentinelServer | None = None
        self._demotion: tuple[RedisServer, RedisServer, float] | None = None
        try:
            master = RedisServer(name="sentinel-master")
            self.servers.append(master)
            replica = RedisServer("--replicaof", master.host, str(master.port), name="sentinel-rep")
            self.servers.append(replica)
            self._wait_replication(master, replica, timeout)
            self.sentinel_server = SentinelServer(
                master.address,
                service_name=service_name,
                down_after_ms=down_after_ms,
                failover_timeout_ms=failover_timeout_ms,
            )
            self.wait_sentinel_ready(timeout)
        except BaseException:
            self.cleanup()
            raise
        self.startup_seconds = time.monotonic() - started

    # ---- roles and addresses

    @property
    def master(self) -> RedisServer:
        return self.servers[self._master_index]

    @property
    def replica(self) -> RedisServer:
        return self.servers[1 - self._master_index]

    @property
    def sentinel(self) -> tuple[str, int]:
        assert self.sentinel_server is not None
        return self.sentinel_server.address

    @property
    def sentinels(self) -> list[tuple[str, int]]:
        return [self.sentinel]

    @property
    def url(self) -> str:
        host, port = self.sentinel
        return f"redis+sentinel://{host}:{port}/{self.service_name}"

    def client(self, **kwargs: Any) -> redis.sentinel.Sentinel:
        """A redis.sentinel.Sentinel on our sentinel: 1 s timeouts, no retries."""
        settings: dict[str, Any] = {
            "socket_timeout": 1.0,
            "socket_connect_timeout": 1.0,
            "retry": no_retry(),
        }
        settings.update(kwargs)
        return redis.sentinel.Sentinel(
            self.sentinels, sentinel_kwargs={"socket_timeout": 1.0}, **settings
        )

    def _sentinel_execute(self, *command: Any) -> Any:
        assert self.sentinel_server is not None
        return self.sentinel_server.execute(*command)

    def master_address(self) -> tuple[str, int] | None:
        """What Sentinel currently reports for the service (GET-MASTER-ADDR-BY-NAME)."""
        reply = self._sentinel_execute("SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.service_name)
        if not reply:
            return None
        host, port = reply
        return (host.decode() if isinstance(host, bytes) else host, int(port))

    def wait_for_master(
        self, expected: RedisServer | tuple[str, int] | None = None, timeout: float = 20.0
    ) -> tuple[str, int]:
        """Wait until Sentinel reports ``expected`` (default: the current ``replica``) as master."""
        target = expected if expected is not None else self.replica
        want = target.address if isinstance(target, RedisServer) else tuple(target)
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            with contextlib.suppress(redis.RedisError):
                last = self.master_address()
                if last == want:
                    return last
            time.sleep(0.05)
        raise RedisSetupError(f"Sentinel still reports {last} as master, expected {want}")

    # ---- waiting helpers

    @staticmethod
    def _wait_replication(master: RedisServer, replica: RedisServer, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                rep = replica.info("replication")
                mas = master.info("replication")
                if (
                    rep.get("role") == "slave"
                    and rep.get("master_port") == master.port
                    and rep.get("master_link_status") == "up"
                    and mas.get("role") == "master"
                    and mas.get("connected_slaves", 0) >= 1
                ):
                    return
            except redis.RedisError:
                pass
            if time.monotonic() > deadline:
                raise RedisSetupError(
                    f"{replica!r} did not replicate from {master!r} within {timeout}s\n"
                    f"{replica.log_tail()}"
                )
            time.sleep(0.02)

    def wait_sentinel_ready(self, timeout: float = 20.0) -> None:
        """Wait until Sentinel reports our master and sees the replica up, as a replica.

        (Not its master-link-status or role-reported: Sentinel refreshes those from the replica's
        INFO only every 10 s, and neither stops it from promoting the replica.)
        """
        deadline = time.monotonic() + timeout
        problem = "no answer"
        while time.monotonic() < deadline:
            try:
                if self.master_address() != self.master.address:
                    problem = f"master address is {self.master_address()}"
                else:
                    replicas = self._sentinel_execute("SENTINEL", "REPLICAS", self.service_name)
                    problem = f"replicas: {replicas}"
                    for entry in replicas:
                        fields = _pairs(entry)
                        if (
                            int(fields.get("port", 0)) == self.replica.port
                            and fields.get("flags") == "slave"
                        ):
                            return
            except redis.RedisError as exc:
                problem = repr(exc)
            time.sleep(0.05)
        assert self.sentinel_server is not None
        raise RedisSetupError(
            f"Sentinel not ready within {timeout}s ({problem})\n{self.sentinel_server.log_tail()}"
        )

    def _set_replicaof(self, server: RedisServer, master: RedisServer | None) -> None:
        """Record the role in the server's args so a restart keeps it."""
        args = server.args
        if "--replicaof" in args:
            at = args.index("--replicaof")
            del args[at : at + 3]
        if master is not None:
            args += ["--replicaof", master.host, str(master.port)]

    # ---- faults

    def failover(
        self, *, kill: bool = False, demote: bool = True, timeout: float = 30.0
    ) -> RedisServer:
        """Move the master role to the replica and wait until Sentinel reports it.

        ``kill=False``: ``SENTINEL FAILOVER`` (a clean, forced failover). ``kill=True``: SIGKILL
        the master, let Sentinel detect it (down-after-milliseconds) and promote the replica,
        then restart the old master as a replica of the new one. Returns the new master; when
        this returns the old master replicates from it and Sentinel knows that.

        ``demote=False`` (with ``kill=False``): return as soon as Sentinel has settled on the
        new master and leave the old one as Sentinel leaves it - still a master, writable,
        with its clients connected, until Sentinel reconfigures it ~8-18 s later. Call
        ``demote_old_master()`` to finish the failover then.
        """
        old, new = self.master, self.replica
        started = time.monotonic()
        deadline = started + timeout
        if kill:
            old.kill()
        else:
            while True:
                try:
                    self._sentinel_execute("SENTINEL", "FAILOVER", self.service_name)
                    break
                except redis.ResponseError as exc:
                    # NOGOODSLAVE right after a previous failover: Sentinel has not refreshed
                    # the replica's INFO yet. INPROG: one is already running.
                    if "INPROG" in str(exc):
                        break
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.1)
        self.wait_for_master(new, timeout=max(1.0, deadline - time.monotonic()))
        self._master_index = self.servers.index(new)
        self._set_replicaof(new, None)
        self._set_replicaof(old, new)
        self._wait_role(new, "master", deadline)
        self.wait_sentinel_settled(max(1.0, deadline - time.monotonic()))
        if not demote and not kill:
            self._demotion = (old, new, started)
            self.last_failover_seconds = time.monotonic() - started
            return new
        return self._demote(old, new, kill, started, deadline)

    def demote_old_master(self, timeout: float = 30.0) -> None:
        """Finish a ``failover(demote=False)``: the old master becomes a replica now."""
        assert self._demotion is not None, "no failover(demote=False) to finish"
        (old, new, started), self._demotion = self._demotion, None
        self._demote(old, new, False, started, time.monotonic() + timeout)

    def _demote(
        self, old: RedisServer, new: RedisServer, kill: bool, started: float, deadline: float
    ) -> RedisServer:
        # Sentinel would demote the old master itself, but only after ~8-18 s; do it now.
        if kill or not old.is_alive():
            old.restart()
        else:
            # As Sentinel's own reconfiguration does: drop the clients still connected to
            # the old master, or they would keep reading from (and failing to write to) a
            # replica with no reason to ask Sentinel where the master went.
            old.execute("REPLICAOF", new.host, str(new.port))
            old.execute("CLIENT", "KILL", "TYPE", "normal")
            old.execute("CLIENT", "KILL", "TYPE", "pubsub")
        self._wait_replication(new, old, max(1.0, deadline - time.monotonic()))
        self.wait_sentinel_ready(max(1.0, deadline - time.monotonic()))
        self.last_failover_seconds = time.monotonic() - started
        return new

    def wait_sentinel_settled(self, timeout: float = 20.0) -> None:
        """Wait until Sentinel's failover is over and its new link to the master has a PONG.

        After +switch-master Sentinel opens a fresh link to the new master; until that link
        has answered a PING, a slow first reply can make Sentinel flag the new master s_down
        and fail over straight back. ``last-ping-sent`` is 0 only once a PONG came back.
        """
        deadline = time.monotonic() + timeout
        state: dict[str, str] = {}
        while time.monotonic() < deadline:
            with contextlib.suppress(redis.RedisError):
                state = _pairs(self._sentinel_execute("SENTINEL", "MASTER", self.service_name))
                if (
                    int(state.get("port", 0)) == self.master.port
                    and state.get("flags") == "master"
                    and state.get("last-ping-sent") == "0"
                ):
                    return
            time.sleep(0.02)
        raise RedisSetupError(f"Sentinel did not settle on {self.master!r}: {state}")

    @staticmethod
    def _wait_role(server: RedisServer, role: str, deadline: float) -> None:
        while True:
            with contextlib.suppress(redis.RedisError):
                if server.info("replication").get("role") == role:
                    return
            if time.monotonic() > deadline:
                raise RedisSetupError(f"{server!r} did not become {role}")
            time.sleep(0.02)

    def reset(self, timeout: float = 30.0) -> None:
        """All three processes running, roles as Sentinel reports them, master flushed.

        Also repairs what a test may have done behind our back (killed or paused a server,
        a failover Sentinel ran on its own): the master is whatever Sentinel reports.
        """
        assert self.sentinel_server is not None
        deadline = time.monotonic() + timeout
        self.sentinel_server.reset()
        for server in self.servers:
            if server.paused:
                server.resume()
        if self._demotion is not None:  # a failover(demote=False) that a test left unfinished
            with contextlib.suppress(RedisSetupError, redis.RedisError):
                self.demote_old_master(timeout)
        self._follow_sentinel()
        if not self.master.is_alive() and self.replica.is_alive():
            # A test killed the master: Sentinel promotes the replica by itself; finish that
            # failover properly (restarting the old master as a master would take ~15 s to heal).
            self.failover(kill=True, timeout=timeout)
        while True:
            self._align_with_sentinel()
            step = max(1.0, min(5.0, deadline - time.monotonic()))
            try:
                self._wait_replication(self.master, self.replica, step)
                self.wait_sentinel_ready(step)
                break
            except RedisSetupError:
                if time.monotonic() > deadline:
                    raise
        self.master.execute("FLUSHALL")

    def _follow_sentinel(self) -> None:
        """Take Sentinel's word for which server is the master."""
        with contextlib.suppress(redis.RedisError):
            reported = self.master_address()
            for index, server in enumerate(self.servers):
                if server.address == reported:
                    self._master_index = index

    def _align_with_sentinel(self) -> None:
        self._follow_sentinel()
        master, replica = self.master, self.replica
        self._set_replicaof(master, None)
        self._set_replicaof(replica, master)
        for server in self.servers:
            if not server.is_alive():
                server.restart()
        with contextlib.suppress(redis.RedisError):
            info = replica.info("replication")
            if info.get("role") != "slave" or info.get("master_port") != master.port:
                replica.execute("REPLICAOF", master.host, str(master.port))

    def cleanup(self) -> None:
        if self.sentinel_server is not None:
            self.sentinel_server.cleanup(graceful=False)
        for server in self.servers:
            server.cleanup(graceful=False)

    def __repr__(self) -> str:
        return (
            f"<LocalRedisSentinel {self.service_name} master={self.master.port} "
            f"replica={self.replica.port} sentinel={self.sentinel[1]}>"
        )


def _pairs(entry: Any) -> dict[str, str]:
    """SENTINEL REPLICAS entries come as flat [k, v, k, v] lists (RESP2) or dicts."""
    items = entry.items() if isinstance(entry, dict) else zip(entry[::2], entry[1::2], strict=False)
    return {
        (k.decode() if isinstance(k, bytes) else str(k)): (
            v.decode() if isinstance(v, bytes) else str(v)
        )
        for k, v in items
    }
