"""Violations found by the history checker, reproduced deterministically.

Each is a strict xfail while the engine has the bug (when it is fixed, the test passes
and xfail_strict fails it: drop the marker, and the checker's allowance if it has one),
and stays afterwards as a regression test.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import stale_generation_child as shared

HERE = Path(__file__).resolve().parent


def test_an_entry_invalidation_right_after_another_process_bumped_the_namespace(
    redis_server: Any, tcp_proxy: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from redis_fixtures import wait_for_stream

    import cachekit

    redis_server.reset()
    # This process reaches Redis through a proxy that will hold its replies and notices
    # back for a second: it hears of the other process's bump late.
    proxy = tcp_proxy(redis_server)
    monkeypatch.setenv("CACHEKIT_BACKEND", proxy.url)
    monkeypatch.setenv("CACHEKIT_SOCKET_TIMEOUT", "5")
    child = subprocess.Popen(
        [sys.executable, "-c", "import stale_generation_child as m; m.main()"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**_environment(), "CACHEKIT_BACKEND": redis_server.url},
    )
    try:
        shared.SOURCE["k"] = 1
        _expect(shared.profile("k"), 1)
        wait_for_stream(shared.profile)
        assert child.stdout is not None and child.stdin is not None
        _expect(child.stdout.readline().strip(), "READY")
        proxy.delay(1.0)
        child.stdin.write("go\n")
        child.stdin.flush()
        # The other process bumped the namespace and stored the value under the new
        # generation (computed from the source before our change).
        _expect(child.stdout.readline().strip(), "DONE 1")
        shared.SOURCE["k"] = 2  # change the source, then invalidate: the writer protocol
        # Before the fix, the key carried the generation this process last heard of:
        # the tombstone replaced the old generation's entry, not the live one.
        shared.profile.invalidate_cache("k")
        proxy.pass_through()
        time.sleep(0.5)  # the delayed notice of the bump has arrived
        assert shared.profile("k") == 2
    finally:
        child.kill()
        child.wait(5)
        cachekit.close()


def _expect(got: object, wanted: object) -> None:
    """A set-up step's check: not an AssertionError, which the xfail stands for."""
    if got != wanted:
        raise RuntimeError(f"set-up: expected {wanted!r}, got {got!r}")


def _environment() -> dict[str, str]:
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith("CACHEKIT_")}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(HERE), env.get("PYTHONPATH", "")) if p)
    return env


def test_a_call_after_an_invalidation_does_not_join_a_computation_from_before_it() -> None:
    import cachekit
    from cachekit import cache

    source = {"v": 1}
    release = threading.Event()

    @cache(ttl=60, namespace="flightjoin", backend=None)
    def slow(key: str) -> int:
        value = source["v"]
        _wait_for(release)
        return value

    first: dict[str, int] = {}
    leader = threading.Thread(target=lambda: first.setdefault("v", slow("k")))
    leader.start()
    try:
        time.sleep(0.05)  # the leader has read the source and computes
        source["v"] = 2  # change the source, then invalidate: the writer protocol
        cachekit.invalidate(namespace="flightjoin")
        second: dict[str, int] = {}
        late = threading.Thread(target=lambda: second.setdefault("v", slow("k")))
        late.start()
        time.sleep(0.05)
    finally:
        release.set()
        leader.join(5)
    late.join(5)
    assert first["v"] == 1  # started before the invalidation: may be old
    assert second["v"] == 2


def test_an_awaited_call_after_an_invalidation_does_not_join_a_computation_from_before_it() -> None:
    from cachekit import cache

    source = {"v": 1}

    gate: dict[str, asyncio.Event] = {}

    @cache(ttl=60, backend=None)
    async def slow(key: str) -> int:
        value = source["v"]
        await gate["release"].wait()
        return value

    async def scenario() -> tuple[int, int]:
        gate["release"] = asyncio.Event()
        leader = asyncio.create_task(slow("k"))
        await asyncio.sleep(0.05)
        source["v"] = 2  # change the source, then invalidate: the writer protocol
        await slow.ainvalidate_cache("k")
        late = asyncio.create_task(slow("k"))
        await asyncio.sleep(0.05)
        gate["release"].set()
        return await leader, await late

    first, second = asyncio.run(scenario())
    assert first == 1
    assert second == 2


def _wait_for(event: threading.Event) -> None:
    if not event.wait(5):
        raise RuntimeError("set-up: never released")
