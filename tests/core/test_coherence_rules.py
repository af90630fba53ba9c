"""The coherence rules (docs/architecture.md, "Coherence rules"), on the memory backend.

Each test names the rule it checks; the Redis-specific faults (a killed tracking
connection, counters rewritten behind cachekit's back) are in tests/redis.
"""

from __future__ import annotations

import pytest

import cachekit
from cachekit import cache
from cachekit.coherence import GENERATION_PREFIX
from cachekit.errors import ConfigurationError
from cachekit.keys import KeyBuilder, validate_namespace

# --- rule: no namespace collides with the keyspace's own structure (issue 11 item 10) ---


def test_namespace_gen_is_refused_because_generation_counters_live_there():
    with pytest.raises(ConfigurationError) as err:

        @cache(namespace="gen", backend="memory://ns-gen")
        def f(x):
            return x

    assert err.value.code == "E040"
    assert "reserved" in str(err.value)
    with pytest.raises(ConfigurationError):
        validate_namespace("gen")
    with pytest.raises(ConfigurationError):
        cachekit.invalidate(namespace="gen")


@pytest.mark.parametrize("namespace", ["gen.x", "GEN", "generation", "x-gen"])
def test_names_that_only_look_like_the_reserved_segment_are_fine(namespace):
    builder = KeyBuilder(lambda x: x, namespace=namespace)
    assert not builder.backend_key((1,), {}).startswith(GENERATION_PREFIX)


def test_a_tag_may_be_called_gen():
    @cache(tags=["gen"], backend="memory://tag-gen")
    def f(x):
        return x

    assert f(1) == 1


# --- rule: pending own writes have deadlines, settle at once, die with the stream (item 7) ---


def _warm(name: str):
    source = {1: "v1"}

    @cache(backend=f"memory://{name}", ttl=300)
    def f(x):
        return {"v": source[x]}

    assert f(1) == {"v": "v1"}
    state = f.__cachekit__
    bkey = f.cache_key(1)
    return f, state, bkey, bkey[-32:]


def test_one_notice_settles_two_own_writes_that_redis_reported_once():
    # BCAST reports a key once per server cycle, however many writes it saw.
    f, state, bkey, digest = _warm("own-coalesced")
    state._own_write(bkey, 1)
    state._own_write(bkey, 1)
    state.coherence_key_changed(digest)  # the one notice of both writes
    assert len(state.l1) == 1
    state.coherence_key_changed(digest)  # then another process writes the key
    assert len(state.l1) == 0


def test_an_own_write_record_expires_when_its_notice_never_comes(monkeypatch):
    import cachekit._engine.coherence as coherence_module
    from cachekit.coherence import OWN_WRITE_WAIT

    f, state, bkey, digest = _warm("own-deadline")
    state._own_write(bkey, 1)  # its notice is lost
    now = coherence_module.monotonic()
    monkeypatch.setattr(coherence_module, "monotonic", lambda: now + OWN_WRITE_WAIT + 0.1)
    state.coherence_key_changed(digest)  # another process's write, later
    assert len(state.l1) == 0


def test_a_stream_reset_forgets_the_own_writes_it_may_have_lost():
    f, state, bkey, digest = _warm("own-reset")
    state._own_write(bkey, 1)
    state.coherence_reset()  # the stream dropped: that write's notice is gone
    assert state.own_writes == {}


# --- rule: generations only go up (issue 11 item 11) --------------------------------------


def test_a_generation_set_back_is_raised_past_the_highest_seen(caplog):
    source = {1: "v1"}

    @cache(backend="memory://gen-rollback", ttl=300)
    def f(x):
        return {"v": source[x]}

    assert f(1) == {"v": "v1"}
    state = f.__cachekit__
    coherence = state.coherence
    counter = state.gen_keys[0]
    old = coherence.generations([counter])[0]
    source[1] = "v2"
    f.cache_clear()
    assert f(1) == {"v": "v2"}
    with coherence._lock:
        coherence._counters[counter] = old  # set back behind cachekit's back
    coherence.notify([counter])
    with caplog.at_level("WARNING", logger="cachekit"):
        assert f(1) == {"v": "v2"}
    assert coherence.generations([counter])[0] > old + 1
    assert any("[E012]" in r.getMessage() for r in caplog.records)


# --- rule: a write never outlives an invalidation made during its computation (item 9) ---


def _slow_copies(name: str, source: dict, started, gate):
    """Two decorations of one function: two processes' views of the same keys."""

    def make():
        @cache(backend=f"memory://{name}", ttl=300)
        def slow(x):
            value = source[x]  # the old input ...
            started.set()
            gate.wait(5)  # ... while the function is still computing
            return {"v": value}

        return slow

    return make(), make()


def test_a_miss_computing_during_an_invalidation_does_not_store_its_old_value():
    import threading

    started, gate = threading.Event(), threading.Event()
    source = {1: "v1"}
    mine, other = _slow_copies("write-after-invalidate", source, started, gate)
    other.cache_key(1)  # resolved before the race
    runner = threading.Thread(target=mine, args=(1,))
    runner.start()
    assert started.wait(5)
    source[1] = "v2"
    other.invalidate_cache(1)  # the input changed: another process invalidates
    gate.set()
    runner.join(5)
    assert other(1) == {"v": "v2"}  # not the old value, stored after the invalidation
    assert mine(1) == {"v": "v2"}


# --- rule: an L1-only function does not resurrect a value computed before its invalidation ---


@pytest.mark.parametrize("how", ["one entry", "whole function", "namespace"])
def test_an_l1_only_miss_computing_during_an_invalidation_does_not_fill_l1(how):
    import threading

    source = {"v": 1}
    reading, release = threading.Event(), threading.Event()

    @cache(ttl=60, backend=None, namespace="l1only-resurrect", single_flight=False)
    def slow(key: str) -> int:
        value = source["v"]
        reading.set()
        assert release.wait(5)
        return value

    out: dict[str, int] = {}
    miss = threading.Thread(target=lambda: out.setdefault("v", slow("k")))
    miss.start()
    assert reading.wait(5)  # the miss has read the old source
    source["v"] = 2
    if how == "one entry":
        slow.invalidate_cache("k")
    elif how == "whole function":
        slow.cache_clear()
    else:
        cachekit.invalidate(namespace="l1only-resurrect")
    release.set()
    miss.join(5)
    assert out["v"] == 1  # it started before the invalidation: may return the old value
    reading.clear()
    assert slow("k") == 2  # ...but must not leave it in L1 for later callers


def test_an_async_l1_only_miss_computing_during_an_invalidation_does_not_fill_l1():
    import asyncio

    source = {"v": 1}

    @cache(ttl=60, backend=None, single_flight=False)
    async def slow(key: str) -> int:
        value = source["v"]
        await asyncio.sleep(0.05)
        return value

    async def scenario() -> tuple[int, int]:
        miss = asyncio.create_task(slow("k"))
        await asyncio.sleep(0.01)  # the miss has read the old source
        source["v"] = 2
        await slow.ainvalidate_cache("k")
        first = await miss
        return first, await slow("k")

    assert asyncio.run(scenario()) == (1, 2)
