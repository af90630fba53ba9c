"""Lock losers on Redis are woken by the holder's write: the notice comes through the
real tracking connection (BCAST on "cachekit:") to the listener thread, which wakes the
waiting thread or task (tests/core/test_lock_wakeup.py has the rules on memory://)."""

from __future__ import annotations

import asyncio

import pytest
from lock_waits import LONG_PAUSE, hold_then

import cachekit._engine.miss as miss


@pytest.fixture
def long_pauses(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(miss, "_FIRST_PAUSE", LONG_PAUSE)
    monkeypatch.setattr(miss, "_NOTIFIED_PAUSE", LONG_PAUSE)


@pytest.mark.parametrize("flavor", ["sync", "async"])
def test_a_lock_loser_is_woken_by_the_holder_s_write_through_redis(
    redis_url: str, long_pauses: None, flavor: str, report_figures
) -> None:
    def call(waiter, awaiter):
        return waiter("k") if flavor == "sync" else asyncio.run(awaiter("k"))

    got, took, runs = hold_then(redis_url, call, work=0.3)
    assert got == {"key": "k", "by": "holder"}
    assert runs == ["holder"]
    assert took < LONG_PAUSE / 2, f"the loser slept {took:.2f} s: not woken"
    report_figures(
        f"[lock] {flavor} loser woken by the holder's write through Redis: returned "
        f"{took * 1000:.0f} ms after it started waiting (holder computed 300 ms; "
        f"its pause would have been {LONG_PAUSE / 2:.1f}-{LONG_PAUSE * 1.5:.1f} s)"
    )
