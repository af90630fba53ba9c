"""The coherence rules (docs/architecture.md, "Coherence rules") against real Redis.

Faults are real: the tracking connection is killed with CLIENT KILL, counters are
rewritten by a plain client, as another process or an attacker would. Each test
uses its own server (make_redis_server), so a fresh notification stream.
"""

from __future__ import annotations

import threading
import time

import pytest
import redis

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


# --- rule: pending own writes have deadlines and die with the stream (issue 11 item 7) ---


def _wait_reconnected(coherence, before: int) -> None:
    deadline = time.monotonic() + 5
    while coherence.reconnects <= before or not coherence.healthy:
        assert time.monotonic() < deadline, "the notification stream did not come back"
        time.sleep(0.005)


def test_a_write_whose_notice_was_lost_does_not_hide_the_next_foreign_change(
    make_redis_server, monkeypatch
):
    server = make_redis_server()
    admin = redis.Redis.from_url(server.url)
    source = {1: "v1"}

    @cache(backend=server.url, ttl=300)
    def f(x):
        return {"v": source[x]}

    state = f.__cachekit__
    key = f.cache_key(1)  # resolves the plan and brings the stream up
    _wait_healthy(state.coherence)
    backend = state.plan.backend
    before = state.coherence.reconnects

    def while_tracking_dies(write):
        def wrapped(*args):
            admin.client_kill_filter(_type="pubsub")  # the tracking connection
            return write(*args)

        return wrapped

    with monkeypatch.context() as patch:
        for name in ("set", "set_guarded", "set_and_unlock"):  # whichever stores the value
            if hasattr(backend, name):
                patch.setattr(backend, name, while_tracking_dies(getattr(backend, name)))
        assert f(1) == {"v": "v1"}  # stored; its notice is lost with the connection
    _wait_reconnected(state.coherence, before)
    time.sleep(0.1)
    assert f(1) == {"v": "v1"}  # from L2, back in L1
    source[1] = "v2"
    admin.delete(key)  # another process's invalidate_cache(1)
    deadline = time.monotonic() + 2
    while f(1) != {"v": "v2"}:
        assert time.monotonic() < deadline, "L1 kept the old value: the notice was swallowed"
        time.sleep(0.01)


# --- rule: epochs around every read of generations (issue 11 item 8) ----------------------


def _wait_for(predicate, what: str) -> None:
    deadline = time.monotonic() + 5
    while not predicate():
        assert time.monotonic() < deadline, what
        time.sleep(0.002)


def test_a_generation_read_older_than_a_notice_received_during_it_is_not_trusted(
    make_redis_server, monkeypatch
):
    server = make_redis_server()
    admin = redis.Redis.from_url(server.url)
    source = {1: "v1"}

    @cache(backend=server.url, ttl=300)
    def f(x):
        return {"v": source[x]}

    state = f.__cachekit__
    assert f(1) == {"v": "v1"}
    coherence = state.coherence
    _wait_healthy(coherence)
    real_read = coherence.generations
    raced = []

    def read_then_another_process_invalidates(keys):
        values = real_read(keys)  # the reply ...
        if not raced:
            raced.append(True)
            seen = state.resets
            admin.incr(state.gen_keys[0])  # ... is older than this cache_clear() elsewhere,
            _wait_for(lambda: state.resets > seen, "no notice of the bump")
        return values  # ... whose notice this process handled first

    monkeypatch.setattr(coherence, "generations", read_then_another_process_invalidates)
    source[1] = "v2"
    state.coherence_reset()  # the generations must be read again
    assert f(1) == {"v": "v2"}
    assert f(1) == {"v": "v2"}


# --- rule: generations only go up; a broken counter never freezes invalidation (item 11) ---


@pytest.mark.parametrize("secure", [False, True], ids=["plain", "secure"])
def test_a_counter_set_back_never_serves_values_from_before_the_invalidation(
    make_redis_server, caplog, monkeypatch, secure
):
    server = make_redis_server()
    admin = redis.Redis.from_url(server.url)
    source = {1: "v1"}
    decorate = cache(backend=server.url, ttl=300)
    if secure:  # encryption authenticates entries, not the counters that name them
        monkeypatch.setenv("CACHEKIT_MASTER_KEY", "ab" * 32)
        decorate = cache.secure(backend=server.url, ttl=300)

    @decorate
    def f(x):
        return {"v": source[x]}

    state = f.__cachekit__
    assert f(1) == {"v": "v1"}
    _wait_healthy(state.coherence)
    counter = state.gen_keys[0]
    old = int(admin.get(counter))
    source[1] = "v2"
    seen = state.resets
    admin.incr(counter)  # another process's cache_clear()
    _wait_for(lambda: state.resets > seen, "no notice of the bump")
    time.sleep(0.05)  # the reset empties L1 just after counting itself
    assert f(1) == {"v": "v2"}
    seen = state.resets
    admin.set(counter, old)  # someone who can write to Redis sets it back
    _wait_for(lambda: state.resets > seen, "no notice of the rollback")
    time.sleep(0.05)
    with caplog.at_level("WARNING", logger="cachekit"):
        assert f(1) == {"v": "v2"}  # not v1, stored under the old generation
    assert int(admin.get(counter)) > old + 1  # raised past what this process saw
    assert any("E012" in r.getMessage() for r in caplog.records)


def test_a_counter_of_another_type_does_not_freeze_invalidation(make_redis_server):
    from cachekit.coherence import generation_keys

    server = make_redis_server()
    admin = redis.Redis.from_url(server.url)
    source = {1: "v1"}

    @cache(backend=server.url, ttl=300)
    def f(x):
        return {"v": source[x]}

    counter = generation_keys(f.__cachekit__.builder.prefix, None, ())[0]
    admin.rpush(counter, "not a counter")  # before this process ever read it
    assert f(1) == {"v": "v1"}
    source[1] = "v2"
    f.cache_clear()
    assert f(1) == {"v": "v2"}
    assert admin.type(counter) == b"string"


# --- rule: a write never outlives an invalidation made during its computation (item 9) ---


def _run_child(url: str, mode: str) -> str:
    import os
    import subprocess
    import sys
    from pathlib import Path

    here = Path(__file__).parent
    env = {k: v for k, v in os.environ.items() if not k.startswith("CACHEKIT_")}
    env.update(CACHEKIT_BACKEND=url, PYTHONPATH=str(here))
    done = subprocess.run(
        [sys.executable, "-c", "import coherence_child; coherence_child.main()", mode],
        capture_output=True,
        text=True,
        env=env,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_a_miss_computing_during_another_processes_invalidation_stores_nothing_old(
    make_redis_server, monkeypatch
):
    import sys
    from pathlib import Path

    server = make_redis_server()
    admin = redis.Redis.from_url(server.url)
    monkeypatch.setenv("CACHEKIT_BACKEND", server.url)
    sys.path.insert(0, str(Path(__file__).parent))
    try:
        import coherence_child
    finally:
        sys.path.pop(0)
    gated = coherence_child.gated
    state = gated.__cachekit__
    state.plan = None  # resolve against this test's server
    state.coherence = None
    state.gens_ok = False
    if state.l1 is not None:
        state.l1.clear()
    admin.set("source:1", "v1")
    runner = threading.Thread(target=gated, args=(1,))
    runner.start()
    _wait_for(lambda: admin.exists("started:1"), "the miss did not start")
    admin.set("source:1", "v2")
    assert _run_child(server.url, "invalidate-gated") == "DONE"
    admin.set("gate:1", 1)  # the miss finishes with the old input
    runner.join(10)
    assert _run_child(server.url, "read-gated") == "VALUE v2"  # every process reads...
    time.sleep(0.2)
    assert gated(1)["v"] == "v2"  # ... the new value, this one included
