"""A default miss with the stampede lock costs exactly two round trips on Redis (issue 12
item 2): read-or-lock, then store-and-unlock. Counted where redis-py writes to a socket,
for a decorated function (sync and async) with its L1, coherence and lock all on."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from cachekit import cache


@contextmanager
def sends(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[bytes]]:
    """Every packed command redis-py sends meanwhile (sync and asyncio connections)."""
    import redis.asyncio.connection as aconn
    import redis.connection as conn

    sent: list[bytes] = []

    def packed(command: Any) -> bytes:
        data = command if isinstance(command, (bytes, str)) else b"".join(command)
        return data.encode() if isinstance(data, str) else bytes(data)

    sync_send = conn.AbstractConnection.send_packed_command
    async_send = aconn.AbstractConnection.send_packed_command

    def send(self: Any, command: Any, check_health: bool = True) -> None:
        sent.append(packed(command))
        sync_send(self, command, check_health)

    async def asend(self: Any, command: Any, check_health: bool = True) -> None:
        sent.append(packed(command))
        await async_send(self, command, check_health)

    with monkeypatch.context() as patch:
        patch.setattr(conn.AbstractConnection, "send_packed_command", send)
        patch.setattr(aconn.AbstractConnection, "send_packed_command", asend)
        yield sent


def _settled(fn: Any) -> None:
    """Wait until the function's notification stream is up (its setup traffic is over)."""
    coherence = fn.__cachekit__.coherence
    deadline = time.monotonic() + 5
    while coherence is not None and not coherence.healthy:
        assert time.monotonic() < deadline, "the notification stream did not come up"
        time.sleep(0.005)
    time.sleep(0.05)


def test_a_sync_miss_is_two_round_trips(redis_url, monkeypatch):
    @cache(backend=redis_url, ttl=60)
    def f(x: int) -> dict[str, int]:
        return {"x": x}

    assert f(0) == {"x": 0}  # plan, connections, scripts, notification stream
    _settled(f)
    with sends(monkeypatch) as sent:
        assert f(1) == {"x": 1}
    # Before issue 12: GET, SET NX (lock), EVALSHA (guarded set), EVALSHA (unlock).
    assert len(sent) == 2, sent
    assert all(b"EVALSHA" in s for s in sent), sent
    with sends(monkeypatch) as sent:
        assert f(1) == {"x": 1}  # an L1 hit: no traffic
    assert sent == []


def test_an_async_miss_is_two_round_trips(redis_url, monkeypatch):
    @cache(backend=redis_url, ttl=60)
    async def f(x: int) -> dict[str, int]:
        return {"x": x}

    async def main() -> list[bytes]:
        assert await f(0) == {"x": 0}
        await asyncio.to_thread(_settled, f)
        with sends(monkeypatch) as sent:
            assert await f(1) == {"x": 1}
        return sent

    sent = asyncio.run(main())
    assert len(sent) == 2, sent
    assert all(b"EVALSHA" in s for s in sent), sent
