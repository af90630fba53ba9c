"""A default miss with the stampede lock costs exactly two round trips on Redis (issue 12
item 2): read-or-lock, then store-and-unlock. Counted where redis-py writes to a socket,
for a decorated function (sync and async) with its L1, coherence and lock all on."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from round_trips import sends

from cachekit import cache


def _settled(fn: Any) -> None:
    """Wait until the function's notification stream is up (its setup traffic is over)."""
    coherence = fn.__cachekit__.coherence
    deadline = time.monotonic() + 5
    while coherence is not None and not coherence.healthy:
        assert time.monotonic() < deadline, "the notification stream did not come up"
        time.sleep(0.005)
    time.sleep(0.05)


def _quiet_miss(fn: Any, call: Any, monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """What one miss sends, measured while the function's stream is up and settled.

    A notification-stream reset meanwhile (another test's CLIENT KILL on the shared
    server) rightly makes the miss read the generation counters again: measure anew.
    """
    state = fn.__cachekit__
    for x in range(1, 6):
        _settled(fn)
        resets = state.resets
        if not state.gens_ok:
            state.refresh_generations()
            continue
        with sends(monkeypatch) as sent:
            assert call(x) == {"x": x}
        if state.resets == resets:
            return sent
    raise AssertionError("the notification stream kept resetting")


def test_a_sync_miss_is_two_round_trips(redis_url, monkeypatch):
    @cache(backend=redis_url, ttl=60)
    def f(x: int) -> dict[str, int]:
        return {"x": x}

    assert f(0) == {"x": 0}  # plan, connections, scripts, notification stream
    sent = _quiet_miss(f, f, monkeypatch)
    # Before issue 12: GET, SET NX (lock), EVALSHA (guarded set), EVALSHA (unlock).
    assert len(sent) == 2, sent
    assert all(b"EVALSHA" in s for s in sent), sent


def test_an_async_miss_is_two_round_trips(redis_url, monkeypatch):
    @cache(backend=redis_url, ttl=60)
    async def f(x: int) -> dict[str, int]:
        return {"x": x}

    loop = asyncio.new_event_loop()  # one loop for every call: its connections stay
    try:
        assert loop.run_until_complete(f(0)) == {"x": 0}
        sent = _quiet_miss(f, lambda x: loop.run_until_complete(f(x)), monkeypatch)
    finally:
        loop.run_until_complete(f.__cachekit__.plan.abackend.close())
        loop.close()
    assert len(sent) == 2, sent
    assert all(b"EVALSHA" in s for s in sent), sent
