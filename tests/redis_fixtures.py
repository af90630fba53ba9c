"""pytest fixtures: real Redis processes and network faults (plugin loaded by tests/conftest.py).

Session scope means one per xdist worker; session fixtures start lazily, on first use.

    redis_server           session: the worker's shared private RedisServer (never 6379)
    redis_url              function: that server reset (flushed, unpaused, config restored); URL
    make_redis_server      function: factory of disposable RedisServer(*args, **options) for
                           destructive tests (kill -9, SIGSTOP, maxmemory...); all cleaned up
    tcp_proxy              function: factory tcp_proxy(target=None, mode="pass") -> TcpProxy;
                           target: a RedisServer, (host, port), "host:port" or a port, None ->
                           the shared server, reset; mode: a name or ("delay", 0.5)-style tuple
    full_backlog_listener  function: a FullBacklogListener (connects to it time out)
    report_figures         function: report_figures(line) prints a measured figure and repeats
                           it in the "figures" section of the terminal summary (which, unlike
                           a print in a pytest-xdist worker, reaches the terminal)
    redis_cluster          session: LocalRedisCluster, 3 masters (tests: xdist_group("cluster"))
    clean_redis_cluster    function: redis_cluster with every node up and all data flushed
    redis_sentinel         session: LocalRedisSentinel, master + replica + one sentinel
                           (tests: xdist_group("sentinel"))
    clean_redis_sentinel   function: redis_sentinel with every process up, master flushed

Nothing is ever skipped: if Redis cannot be started (or installed), the test fails with the reason.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import pytest
from faults import FullBacklogListener, TcpProxy
from redis_servers import (
    LocalRedisCluster,
    LocalRedisSentinel,
    RedisServer,
    RedisSetupError,
    redis_binaries,
)

from cachekit.testing import AsyncBackendConformance, BackendConformance

T = TypeVar("T")


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Make ``--dist loadgroup`` honour ``xdist_group`` again on pytest >= 9.2.

    pytest-xdist 3.8 groups tests by appending ``@<group>`` to ``item._nodeid`` on each worker;
    pytest 9.2 builds ``nodeid`` from the structured ``item._id`` instead, so the suffix is lost
    and grouped tests are spread over all workers (pytest-dev/pytest-xdist#1386). Where the
    suffix is missing, put it on the structured id. A no-op when xdist's own suffix took effect.
    """
    if not getattr(config.option, "loadgroup", False):
        return
    for item in items:
        names = {
            str(mark.args[0] if mark.args else mark.kwargs.get("name", "default"))
            for mark in item.iter_markers("xdist_group")
        }
        if not names:
            continue
        suffix = "@" + "_".join(sorted(names))
        if item.nodeid.endswith(suffix) or not hasattr(item, "_id"):
            continue
        from _pytest.nodeid import coerce_node_id

        item._id = coerce_node_id(item.nodeid + suffix)


def _provide(make: Callable[[], T]) -> T:
    """Run a setup step; turn RedisSetupError into a plain test failure with its message."""
    try:
        return make()
    except RedisSetupError as exc:
        pytest.fail(f"Redis test infrastructure: {exc}", pytrace=False)


@pytest.fixture(scope="session")
def redis_binaries_installed() -> tuple[str, str]:
    """(redis-server, redis-cli); apt-get installed (as root, once, under a lock) if missing."""
    return _provide(redis_binaries)


@pytest.fixture(scope="session")
def redis_server(redis_binaries_installed: tuple[str, str]) -> Iterator[RedisServer]:
    server = _provide(lambda: RedisServer(name="shared"))
    try:
        yield server
    finally:
        server.cleanup()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    _provide(redis_server.reset)
    return redis_server.url


@pytest.fixture
def raw(redis_url: str) -> Iterator[Any]:
    """A plain redis-py client on the test's private server: the attacker's or the
    operator's view of what cachekit stored."""
    import redis

    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


@pytest.fixture
def make_redis_server(
    redis_binaries_installed: tuple[str, str],
) -> Iterator[Callable[..., RedisServer]]:
    servers: list[RedisServer] = []

    def make(*args: str, **options: Any) -> RedisServer:
        server = _provide(lambda: RedisServer(*args, **options))
        servers.append(server)
        return server

    try:
        yield make
    finally:
        for server in servers:
            server.cleanup(graceful=False)


def _target_address(target: Any) -> tuple[str, int]:
    if isinstance(target, (RedisServer, TcpProxy, FullBacklogListener)):
        return target.address
    if isinstance(target, int):
        return ("127.0.0.1", target)
    if isinstance(target, str):
        host, _, port = target.rpartition(":")
        return (host or "127.0.0.1", int(port))
    host, port = target
    return (str(host), int(port))


@pytest.fixture
def tcp_proxy(request: pytest.FixtureRequest) -> Iterator[Callable[..., TcpProxy]]:
    proxies: list[TcpProxy] = []

    def make(
        target: Any = None, *, mode: str | tuple[Any, ...] = "pass", **kwargs: Any
    ) -> TcpProxy:
        if target is None:
            request.getfixturevalue("redis_url")  # resets the shared server
            target = request.getfixturevalue("redis_server")
        proxy = TcpProxy(_target_address(target), mode=mode, **kwargs)
        proxies.append(proxy)
        return proxy

    try:
        yield make
    finally:
        for proxy in proxies:
            proxy.close()


@pytest.fixture
def full_backlog_listener() -> Iterator[FullBacklogListener]:
    listener = FullBacklogListener()
    try:
        yield listener
    finally:
        listener.close()


_FIGURES = "figures"


@pytest.fixture
def backends() -> Iterator[list[Any]]:
    """Redis backends a test builds; their notification listeners are stopped afterwards.

    Joining the listener threads makes a later test on the same URL start a fresh one.
    The sync backends are closed too (an async backend's clients die with their loop).
    """
    import inspect

    made: list[Any] = []
    try:
        yield made
    finally:
        for backend in made:
            coherence = backend.coherence()
            coherence.close()
            for thread in getattr(coherence, "_threads", ()):
                thread.join(2)
            if not inspect.iscoroutinefunction(backend.close):
                backend.close()


@pytest.fixture
def report_figures(record_property: Callable[[str, object], None]) -> Callable[[str], None]:
    def report(line: str) -> None:
        print(f"\n{line}")
        record_property(_FIGURES, line)

    return report


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """List every figure reported by a test, in source order, under a "figures" heading."""
    lines = sorted(
        (report.location[0], report.location[1] or 0, report.nodeid, index, str(value))
        for reports in terminalreporter.stats.values()
        for report in reports
        if getattr(report, "when", None) == "call"
        for index, (name, value) in enumerate(getattr(report, "user_properties", ()))
        if name == _FIGURES
    )
    if lines:
        terminalreporter.section(_FIGURES)
        for *_, line in lines:
            terminalreporter.write_line(line)


@pytest.fixture(scope="session")
def redis_cluster(redis_binaries_installed: tuple[str, str]) -> Iterator[LocalRedisCluster]:
    cluster = _provide(LocalRedisCluster)
    try:
        yield cluster
    finally:
        cluster.cleanup()


@pytest.fixture
def clean_redis_cluster(redis_cluster: LocalRedisCluster) -> LocalRedisCluster:
    _provide(redis_cluster.reset)
    return redis_cluster


@pytest.fixture(scope="session")
def redis_sentinel(redis_binaries_installed: tuple[str, str]) -> Iterator[LocalRedisSentinel]:
    setup = _provide(LocalRedisSentinel)
    try:
        yield setup
    finally:
        setup.cleanup()


@pytest.fixture
def clean_redis_sentinel(redis_sentinel: LocalRedisSentinel) -> LocalRedisSentinel:
    _provide(redis_sentinel.reset)
    return redis_sentinel


def wait_for_stream(fn: Any, start: Callable[[], object] | None = None) -> None:
    """Start ``fn``'s notification stream and let its start-up pass.

    The stream's first connect empties every L1 it feeds, and so does the notice of a
    generation counter created before the stream was declared up: a test that counts
    L1 hits or misses waits for both before its first call. ``start`` triggers the
    listener (default: ``fn.cache_key("warm-up")``, which reads the generations).
    """
    import time

    (start or (lambda: fn.cache_key("warm-up")))()
    coherence = fn.__cachekit__.coherence
    deadline = time.monotonic() + 5.0
    while not coherence.healthy:
        assert time.monotonic() < deadline, "the notification stream did not come up in 5 s"
        time.sleep(0.005)
    time.sleep(0.2)


# --- cachekit.testing's backend suites on a Redis URL ------------------------------------------


class RedisBackendSuite(BackendConformance):
    """The sync backend suite on ``RedisBackend(self.url)``; a subclass (or a mixin before
    it) sets ``self.url`` in an autouse fixture."""

    url: str

    def make_backend(self) -> Any:
        from cachekit_redis import RedisBackend

        return RedisBackend(self.url)

    def close_backend(self, backend: Any) -> None:
        backend.close()


class AsyncRedisBackendSuite(AsyncBackendConformance):
    """The asyncio backend suite on ``AsyncRedisBackend(self.url)`` (see RedisBackendSuite)."""

    url: str

    def make_backend(self) -> Any:
        from cachekit_redis import AsyncRedisBackend

        return AsyncRedisBackend(self.url)
