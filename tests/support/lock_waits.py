"""Two-process stampede scenes in one process: a holder computing under the lock and a
loser waiting for its value (tests/core/test_lock_wakeup.py and its Redis twin)."""

from __future__ import annotations

import threading
import time
from typing import Any

from cachekit import cache

#: A pause no test waits out: a loser that returns sooner was woken.
LONG_PAUSE = 5.0


def twins(backend: str, work: float) -> tuple[Any, Any, Any, list[str]]:
    """(holder, sync waiter, async waiter, runs): one function decorated three times."""
    runs: list[str] = []

    def make(role: str, is_async: bool) -> Any:
        if is_async:

            @cache(backend=backend, ttl=60)
            async def load(key: str) -> dict[str, Any]:
                runs.append(role)
                return {"key": key, "by": role}

            return load

        @cache(backend=backend, ttl=60)
        def load(key: str) -> dict[str, Any]:  # type: ignore[misc]
            runs.append(role)
            if role == "holder":
                time.sleep(work)
            return {"key": key, "by": role}

        return load

    return make("holder", False), make("waiter", False), make("awaiter", True), runs


def hold_then(backend: str, call_waiter: Any, work: float = 0.3) -> tuple[Any, float, list]:
    holder, waiter, awaiter, runs = twins(backend, work)
    started = threading.Thread(target=holder, args=("k",))
    started.start()
    deadline = time.monotonic() + 5
    while not runs:  # the holder has the lock and computes
        assert time.monotonic() < deadline
        time.sleep(0.005)
    begun = time.monotonic()
    got = call_waiter(waiter, awaiter)
    took = time.monotonic() - begun
    started.join()
    return got, took, runs
