"""Load generators and bookkeeping for the fault-injection suite (tests/redis/test_faults.py).

A :class:`Load` keeps a few threads (or asyncio tasks, :class:`AsyncLoad`) calling a cached
function over a set of keys and records every call: its argument, start and end, the exception
if one reached the caller, and the value when it was not the expected one. The tests inject a
fault between two :meth:`mark` calls and then ask how many calls in that window were *slow*
(paid a timeout), and whether any caller saw an exception or a wrong value.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from time import monotonic
from typing import Any

from faults import wait_until


def expected(x: int) -> dict[str, int]:
    """What the cached functions return: derived from the argument, so a mix-up shows."""
    return {"x": x, "sq": x * x}


@dataclass(frozen=True)
class Call:
    x: int
    started: float
    ended: float
    error: BaseException | None = None
    wrong: Any = None  # the value returned, when it was not expected(x)

    @property
    def seconds(self) -> float:
        return self.ended - self.started


class _Recorder:
    def __init__(self) -> None:
        self.calls: list[Call] = []
        self._lock = threading.Lock()

    def record(self, x: int, started: float, value: Any, error: BaseException | None) -> None:
        wrong = None if error is not None or value == expected(x) else value
        call = Call(x, started, monotonic(), error, wrong)
        with self._lock:
            self.calls.append(call)

    def __len__(self) -> int:
        return len(self.calls)

    @property
    def errors(self) -> int:
        """Calls that raised (the tests expect 0)."""
        return sum(1 for c in self.calls if c.error is not None)

    @staticmethod
    def mark() -> float:
        return monotonic()

    def overlapping(self, start: float, end: float) -> list[Call]:
        """Calls that were running at some point between ``start`` and ``end``."""
        with self._lock:
            return [c for c in self.calls if c.started <= end and c.ended >= start]

    def slow(self, start: float, end: float, limit: float) -> int:
        """How many calls running between ``start`` and ``end`` took longer than ``limit``."""
        return sum(1 for c in self.overlapping(start, end) if c.seconds > limit)

    def check(self) -> None:
        """No exception reached a caller and every value was the right one."""
        with self._lock:
            errors = [c for c in self.calls if c.error is not None]
            wrong = [c for c in self.calls if c.wrong is not None]
        assert not errors, f"{len(errors)} calls raised, first: {errors[0].error!r}"
        assert not wrong, f"{len(wrong)} wrong values, first: {wrong[0]}"


class Load(_Recorder):
    """``threads`` threads calling ``fn(x)`` over ``keys`` until stopped (or ``max_calls``)."""

    def __init__(
        self,
        fn: Callable[[int], Any],
        keys: Sequence[int],
        *,
        threads: int = 4,
        pause: float = 0.001,
        max_calls: int = 200_000,
    ) -> None:
        super().__init__()
        self.fn = fn
        self.keys = list(keys)
        self.threads = threads
        self.pause = pause
        self.max_calls = max_calls
        self._stop = threading.Event()
        self._workers = [
            threading.Thread(target=self._run, args=(i,), name=f"load-{i}", daemon=True)
            for i in range(threads)
        ]

    def __enter__(self) -> Load:
        for worker in self._workers:
            worker.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        for worker in self._workers:
            worker.join(10)
        assert not any(w.is_alive() for w in self._workers), "a load thread hangs"

    def _run(self, index: int) -> None:
        n = 0
        while not self._stop.is_set() and len(self.calls) < self.max_calls:
            x = self.keys[(index + n * self.threads) % len(self.keys)]
            n += 1
            started = monotonic()
            try:
                value = self.fn(x)
            except Exception as exc:
                self.record(x, started, None, exc)
            else:
                self.record(x, started, value, None)
            self._stop.wait(self.pause)

    def wait_calls(self, n: int, timeout: float = 10.0) -> None:
        """Wait until ``n`` more calls have completed."""
        target = len(self.calls) + n
        wait_until(lambda: len(self.calls) >= target, timeout)


class AsyncLoad(_Recorder):
    """``tasks`` asyncio tasks calling ``await fn(x)`` over ``keys`` until stopped."""

    def __init__(
        self,
        fn: Callable[[int], Awaitable[Any]],
        keys: Sequence[int],
        *,
        tasks: int = 8,
        pause: float = 0.001,
    ) -> None:
        super().__init__()
        self.fn = fn
        self.keys = list(keys)
        self.ntasks = tasks
        self.pause = pause
        self._running = True
        self._tasks: list[asyncio.Task[None]] = []

    async def __aenter__(self) -> AsyncLoad:
        self._tasks = [asyncio.create_task(self._run(i)) for i in range(self.ntasks)]
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._running = False
        done, pending = await asyncio.wait(self._tasks, timeout=10)
        assert not pending, "a load task hangs"
        for task in done:
            task.result()

    async def _run(self, index: int) -> None:
        n = 0
        while self._running:
            x = self.keys[(index + n * self.ntasks) % len(self.keys)]
            n += 1
            started = monotonic()
            try:
                value = await self.fn(x)
            except Exception as exc:
                self.record(x, started, None, exc)
            else:
                self.record(x, started, value, None)
            await asyncio.sleep(self.pause)

    async def wait_calls(self, n: int, timeout: float = 10.0) -> None:
        target = len(self.calls) + n
        await async_wait_until(lambda: len(self.calls) >= target, timeout)


async def async_wait_until(
    predicate: Callable[[], Any], timeout: float = 5.0, interval: float = 0.005
) -> Any:
    """:func:`faults.wait_until` for coroutines: poll without blocking the event loop."""
    deadline = monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s: {predicate!r}")
        await asyncio.sleep(interval)


class BreakerLog(logging.Handler):
    """Collects the E030 "opened" warnings of ``cachekit.breaker``: after how many failures."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.opened: list[tuple[str, int]] = []  # (endpoint, consecutive failures)

    def emit(self, record: logging.LogRecord) -> None:
        if "[E030]" in str(record.msg) and "opened" in str(record.msg):
            args = record.args  # (endpoint, previous state, consecutive failures, ...)
            if isinstance(args, tuple) and len(args) >= 3:
                self.opened.append((str(args[0]), int(str(args[2]))))

    def opened_after(self, endpoint: str) -> list[int]:
        return [n for ep, n in self.opened if ep == endpoint]
