"""The coherence rules (docs/architecture.md, "Coherence rules") against real Redis.

Faults are real: the tracking connection is killed with CLIENT KILL, counters are
rewritten by a plain client, as another process or an attacker would. Each test
uses its own server (make_redis_server), so a fresh notification stream.
"""

from __future__ import annotations

import threading
import time

from cachekit import cache
from cachekit.coherence import DEGRADED_L1_TTL


def _wait_healthy(coherence, up: bool = True) -> None:
    deadline = time.monotonic() + 5
    while coherence.healthy is not up:
        assert time.monotonic() < deadline, (
            f"the notification stream is not {'up' if up else 'down'}"
        )
        time.sleep(0.005)


def _full_lifetimes(state) -> list[float]:
    now = time.monotonic()
    return [entry[0] - now for entry in state.l1.data.values()]


# --- rule: tracking starts before the first store (issue 11 item 15) ---------------------


def test_the_first_stores_of_a_function_stay_in_l1_when_tracking_starts(make_redis_server):
    server = make_redis_server()

    @cache(backend=server.url, ttl=300)
    def f(x):
        return [x]

    for i in range(10):
        f(i)
    state = f.__cachekit__
    _wait_healthy(state.coherence)
    time.sleep(0.2)  # any notice of the start-up has been handled by now
    assert len(state.l1) == 10
    assert min(_full_lifetimes(state)) > DEGRADED_L1_TTL  # stored while tracking was on


def test_fifty_threads_first_calls_all_stay_in_l1(make_redis_server):
    server = make_redis_server()

    @cache(backend=server.url, ttl=300)
    def f(x):
        return [x]

    barrier = threading.Barrier(50)

    def call(i: int) -> None:
        barrier.wait()
        f(i)

    threads = [threading.Thread(target=call, args=(i,)) for i in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    state = f.__cachekit__
    _wait_healthy(state.coherence)
    time.sleep(0.2)
    assert len(state.l1) == 50
    assert min(_full_lifetimes(state)) > DEGRADED_L1_TTL
