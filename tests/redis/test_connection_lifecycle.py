"""Connections are closed when what opened them ends (issue 11 items 22 and 23).

* An event loop's redis.asyncio connections are closed when the loop ends: at the end
  of ``asyncio.run`` (or of an ``asyncio.Runner``), and, for a loop closed without
  shutting down its async generators, at the backend's next use from any loop.
* ``cachekit.close()`` / ``await cachekit.aclose()`` close every backend and
  notification connection cachekit opened; calling them twice is harmless and the
  next call reconnects.

Connections are counted with CLIENT LIST on a private redis-server, by client name.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from fault_load import async_wait_until
from faults import wait_until
from redis_servers import RedisServer

import cachekit
from cachekit import cache
from cachekit_redis import AsyncRedisBackend


def named(server: RedisServer, name: str) -> int:
    """How many connections named ``name`` the server has."""
    text = server.execute("CLIENT", "LIST")
    text = text.decode() if isinstance(text, bytes) else text
    return sum(1 for line in text.splitlines() if f" name={name} " in f" {line} ")


def all_closed(server: RedisServer, name: str, timeout: float = 5.0) -> None:
    """Wait until the server has no connection named ``name``; say how many are left."""
    try:
        wait_until(lambda: named(server, name) == 0, timeout=timeout)
    except AssertionError:
        raise AssertionError(f"{named(server, name)} connections named {name} still open") from None


async def some_traffic(backend: Any) -> None:
    """A few concurrent commands: the loop's pool opens several connections."""
    await asyncio.gather(*(backend.get(f"k{i}") for i in range(4)))


def test_the_connections_of_finished_event_loops_are_closed(make_redis_server, backends):
    server = make_redis_server(name="loops")
    backend = AsyncRedisBackend(server.url + "?client_name=ck-loops")
    backends.append(backend)
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            for _ in range(6):
                asyncio.run(some_traffic(backend))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors, errors[0]
    # 48 loops have come and gone: none of their connections may stay open.
    all_closed(server, "ck-loops")


def test_a_loop_closed_without_asyncio_run_has_its_connections_closed_at_the_next_use(
    make_redis_server, backends
):
    server = make_redis_server(name="bare-loop")
    backend = AsyncRedisBackend(server.url + "?client_name=ck-bare")
    backends.append(backend)
    loop = asyncio.new_event_loop()
    loop.run_until_complete(some_traffic(backend))
    loop.close()  # no shutdown_asyncgens(): nothing ran at its end
    assert named(server, "ck-bare") >= 1
    asyncio.run(backend.get("k"))  # another loop uses the backend
    all_closed(server, "ck-bare")


def test_cachekit_close_closes_every_connection_and_the_next_call_reconnects(make_redis_server):
    server = make_redis_server(name="close")
    url = server.url + "?client_name=ck-close"

    @cache(backend=url, ttl=60)
    def square(x: int) -> int:
        return x * x

    assert [square(2), square(3)] == [4, 9]
    wait_until(lambda: named(server, "cachekit-coherence") == 1)  # the notification stream
    assert named(server, "ck-close") >= 1
    cachekit.close()
    all_closed(server, "ck-close")
    all_closed(server, "cachekit-coherence")
    cachekit.close()  # twice: nothing left to close, no error
    # The next call reconnects: the stream comes back and L2 still holds the value.
    hits = square.cache_info().l2_hits
    assert square(2) == 4
    assert square.cache_info().l2_hits == hits + 1
    wait_until(lambda: named(server, "cachekit-coherence") == 1)
    cachekit.close()
    all_closed(server, "cachekit-coherence")


def test_cachekit_aclose_closes_the_loops_connections_and_the_next_call_reconnects(
    make_redis_server,
):
    server = make_redis_server(name="aclose")
    url = server.url + "?client_name=ck-aclose"

    @cache(backend=url, ttl=60, l1=False)
    async def square(x: int) -> int:
        return x * x

    async def scenario() -> None:
        assert await square(2) == 4
        assert named(server, "ck-aclose") >= 1
        await cachekit.aclose()
        await async_wait_until(lambda: named(server, "ck-aclose") == 0)
        await cachekit.aclose()  # twice: harmless
        assert await square(2) == 4  # reconnected: an L2 hit
        assert square.cache_info().l2_hits == 1
        assert named(server, "ck-aclose") >= 1

    asyncio.run(scenario())
    cachekit.close()
