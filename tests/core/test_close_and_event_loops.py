"""cachekit.close() / aclose() and sync functions inside event loops (issue 11 item 23).

The Redis versions (connections counted on a private server) are in
tests/redis/test_connection_lifecycle.py.
"""

from __future__ import annotations

import asyncio
import logging

import pytest
from dict_backend import DictBackend

import cachekit
from cachekit import cache
from cachekit.backends.memory import MemoryBackend

IN_LOOP = "inside a running event loop"


def warnings_about_loops(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelno == logging.WARNING and IN_LOOP in r.getMessage()
    ]


def test_a_sync_function_doing_backend_io_inside_an_event_loop_warns_once(caplog):
    backend = DictBackend("in-loop")

    @cache(backend=backend, l1=False)
    def lookup(x):
        return {"x": x}

    async def handler():
        for x in range(5):
            assert lookup(x) == {"x": x}  # misses: backend I/O that blocks the loop

    with caplog.at_level(logging.WARNING, logger="cachekit"):
        asyncio.run(handler())
        asyncio.run(handler())  # L2 hits now: no more warnings either
    [message] = warnings_about_loops(caplog)
    assert "lookup" in message
    assert "blocks the event loop" in message
    assert "asyncio.to_thread" in message


def test_no_warning_outside_event_loops_on_hits_or_with_a_non_blocking_backend(caplog):
    @cache(backend=DictBackend("outside-loop"))
    def outside(x):
        return {"x": x}

    @cache(backend=MemoryBackend("in-loop-memory"))
    def in_memory(x):
        return {"x": x}

    with caplog.at_level(logging.WARNING, logger="cachekit"):
        outside(1)  # a miss, but no loop is running

        async def handler():
            outside(1)  # an L1 hit inside a loop: no backend I/O
            in_memory(1)  # a miss, but the memory backend never blocks

        asyncio.run(handler())
    assert warnings_about_loops(caplog) == []


def test_close_and_aclose_are_safe_to_repeat_and_the_cache_keeps_working():
    @cache(backend="memory://close-twice")
    def f(x):
        return {"x": x}

    @cache(backend="memory://close-twice")
    async def af(x):
        return {"x": x}

    assert f(1) == {"x": 1}
    cachekit.close()
    cachekit.close()
    assert f(2) == {"x": 2}

    async def scenario():
        assert await af(1) == {"x": 1}
        await cachekit.aclose()
        await cachekit.aclose()
        assert await af(2) == {"x": 2}

    asyncio.run(scenario())


def test_close_inside_an_event_loop_points_to_aclose(caplog):
    @cache(backend="memory://close-in-loop")
    async def af(x):
        return x

    async def scenario():
        await af(1)
        cachekit.close()

    with caplog.at_level(logging.WARNING, logger="cachekit"):
        asyncio.run(scenario())
    assert any("await cachekit.aclose()" in r.getMessage() for r in caplog.records)
