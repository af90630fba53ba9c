"""L2 behaviour through the Backend protocol: sharing, fail-open, unreadable entries."""

from __future__ import annotations

import asyncio
import logging
import pickle

import pytest
from dict_backend import DictBackend

from cachekit import cache
from cachekit.breaker import BreakerConfig
from cachekit.errors import BackendError, ConfigurationError, PluginNotFoundError
from cachekit.serializers import PickleSerializer

HEX_KEY = "ab" * 32


class BrokenBackend(DictBackend):
    def __init__(self, name, exc=ConnectionError("connection refused")):
        super().__init__(name)
        self.exc = exc

    def get(self, key):
        self.calls.append("get")
        raise self.exc

    def set(self, key, value, ttl=None):
        self.calls.append("set")
        raise self.exc

    def ping(self):
        raise self.exc


def twin_functions(backend, **options):
    """Two separately decorated copies of one function: like two processes sharing L2."""
    runs = []

    def make():
        @cache(backend=backend, **options)
        def shared(x):
            runs.append(x)
            return {"x": x}

        return shared

    return make(), make(), runs


def test_a_second_process_reads_what_the_first_stored():
    first, second, runs = twin_functions(DictBackend("share"))
    assert first(1) == {"x": 1}
    assert second(1) == {"x": 1}
    assert runs == [1]
    assert second.cache_info().l2_hits == 1
    assert second(1) == {"x": 1}
    assert second.cache_info().l1_hits == 1


def test_backend_keys_and_values_are_envelopes_without_raw_arguments():
    backend = DictBackend("keys")
    first, _, _ = twin_functions(backend, namespace="ns1")
    first("secret-argument")
    [(key, blob)] = backend.store.items()
    assert key.startswith("cachekit:ns1:")
    assert "secret-argument" not in key
    assert blob[:2] == b"CK"


def test_backend_down_fails_open_and_the_breaker_stops_io():
    backend = BrokenBackend("down")
    f, _, runs = twin_functions(backend, circuit_breaker=BreakerConfig(failure_threshold=3))
    for i in range(10):
        assert f(i) == {"x": i}
    assert runs == list(range(10))
    # 3 failures open the breaker; after that no I/O is attempted.
    assert len(backend.calls) == 3
    info = f.cache_info()
    assert info.errors == 3
    assert f(1) == {"x": 1}  # L1 still serves while the breaker is open
    health = f.check_health()
    assert health["status"] == "degraded"
    assert health["backend"]["circuit_breaker"]["state"] == "open"


@pytest.mark.parametrize("l1", [True, False])
def test_a_miss_whose_read_could_not_reach_the_backend_does_not_also_write(l1):
    # One timeout per miss, not two: the write after an unreachable read is skipped.
    backend = BrokenBackend("one-call", exc=TimeoutError("timed out"))
    f, _, runs = twin_functions(
        backend, l1=l1, circuit_breaker=BreakerConfig(failure_threshold=100)
    )
    for i in range(5):
        assert f(i) == {"x": i}
    assert runs == list(range(5))
    assert backend.calls == ["get"] * 5


def test_a_miss_whose_read_failed_non_transiently_still_writes():
    # The server answered (say, a reply that could not be parsed): writing may work.
    class AnswersBadly(DictBackend):
        def get(self, key):
            self.calls.append("get")
            raise BackendError("garbled reply")

    backend = AnswersBadly("bad-reply")
    f, _, _ = twin_functions(backend)
    assert f(1) == {"x": 1}
    assert backend.calls == ["get", "set"]


def test_an_async_miss_whose_read_could_not_reach_the_backend_does_not_also_write():
    backend = BrokenBackend("one-call-async", exc=TimeoutError("timed out"))
    runs = []

    @cache(backend=backend, circuit_breaker=BreakerConfig(failure_threshold=100))
    async def f(x):
        runs.append(x)
        return {"x": x}

    async def main():
        return [await f(i) for i in range(3)]

    assert asyncio.run(main()) == [{"x": i} for i in range(3)]
    assert backend.calls == ["get"] * 3


def test_backend_errors_are_logged_once_not_per_call(caplog):
    caplog.set_level(logging.DEBUG, logger="cachekit")
    f, _, _ = twin_functions(
        BrokenBackend("noisy", TimeoutError("timed out")),
        circuit_breaker=False,
    )
    for i in range(20):
        f(i)
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING and "E010" in r.message]
    assert len(warnings) == 1
    assert f.cache_info().errors == 20  # one failed read per miss; no write after it


@pytest.mark.parametrize(
    "garbage",
    [
        b"",
        b"\x00",
        b"not an envelope at all",
        b"CK\x01\x00" + b"\x00" * 20,
        b"CK\x09\x00\x00\x00\x00\x00\x07msgpack\x81\xa1x\x01",
        pickle.dumps({"x": 1}),
    ],
)
def test_garbage_in_the_backend_is_a_miss_and_gets_overwritten(garbage):
    backend = DictBackend("garbage")
    f, g, runs = twin_functions(backend)
    f(1)
    key = f.cache_key(1)
    backend.store[key] = garbage
    assert g(1) == {"x": 1}
    assert runs == [1, 1]
    assert g.cache_info().invalid == 1
    assert backend.store[key][:2] == b"CK"  # self-healed


def test_an_entry_written_by_another_serializer_is_a_miss():
    backend = DictBackend("other-ser")
    f, _, runs = twin_functions(backend)
    f(1)
    key = f.cache_key(1)
    from cachekit.envelope import seal

    backend.store[key] = seal(pickle.dumps({"x": "evil"}), serializer="pickle", key=key)

    reader, _, reader_runs = twin_functions(backend)
    assert reader(1) == {"x": 1}
    assert reader_runs == [1]
    assert reader.cache_info().invalid == 1


class Sentinel:
    called = False


def _poison():
    Sentinel.called = True
    return "poisoned"


class Poison:
    def __reduce__(self):
        return (_poison, ())


def test_unsigned_pickle_from_a_shared_backend_is_never_loaded(caplog):
    backend = DictBackend("pickle-nokey")
    runs = []

    @cache(backend=backend, serializer=PickleSerializer())
    def f(x):
        runs.append(x)
        return {"x": x}

    caplog.set_level(logging.WARNING, logger="cachekit")
    f(1)
    f(1)
    assert runs == [1]  # L1 works
    assert backend.calls == []  # but nothing goes to (or comes from) the shared backend
    assert any("signing key" in r.message for r in caplog.records)


def test_signed_pickle_round_trips_and_tampering_is_a_miss(monkeypatch):
    monkeypatch.setenv("CACHEKIT_SIGNING_KEY", HEX_KEY)
    backend = DictBackend("pickle-signed")
    first, second, runs = twin_functions(backend, serializer=PickleSerializer())
    first(1)
    assert second(1) == {"x": 1}
    assert runs == [1]
    key = first.cache_key(1)
    blob = bytearray(backend.store[key])
    # Replace the payload by a poisoned pickle and fix the CRC like an attacker would.
    from cachekit.envelope import read_header

    header = read_header(bytes(blob))
    body = bytes(blob[8 : header.payload_offset]) + pickle.dumps(Poison())
    import zlib

    crc = zlib.crc32(body, zlib.crc32(bytes(blob[:4])))  # the CRC covers bytes 0-3 too
    forged = bytes(blob[:4]) + crc.to_bytes(4, "big") + body
    backend.store[key] = forged
    from cachekit.envelope import open_envelope
    from cachekit.errors import IntegrityError
    from cachekit.signing import signer_from_env

    with pytest.raises(IntegrityError):  # the CRC is right: only the signature stops it
        open_envelope(forged, serializer="pickle", key=key, signer=signer_from_env())

    third, _, third_runs = twin_functions(backend, serializer=PickleSerializer())
    assert third(1) == {"x": 1}
    assert third_runs == [1]
    assert Sentinel.called is False
    assert third.cache_info().invalid == 1


def test_pickle_in_the_trusted_memory_backend_needs_no_key():
    first, second, runs = twin_functions("memory://trusted-pickle", serializer=PickleSerializer())
    first(1)
    assert second(1) == {"x": 1}
    assert runs == [1]


def test_value_larger_than_max_value_size_is_returned_but_not_stored():
    backend = DictBackend("big")
    f, _, runs = twin_functions(backend, max_value_size=64)

    @cache(backend=backend, max_value_size=64)
    def big():
        runs.append("big")
        return "x" * 1000

    assert big() == "x" * 1000
    assert big() == "x" * 1000
    assert runs == ["big", "big"]
    assert backend.store == {}


def test_invalidate_reaches_the_backend():
    backend = DictBackend("inv")
    first, second, runs = twin_functions(backend)
    first(1)
    first(2)
    assert first.invalidate_cache(1) == 2  # L1 + L2
    assert second(1) == {"x": 1}
    assert runs == [1, 2, 1]
    first.cache_clear()
    assert backend.store == {}


def test_async_function_with_sync_backend_runs_io_in_a_thread():
    backend = DictBackend("async-thread")
    runs = []

    def make():
        @cache(backend=backend)
        async def f(x):
            runs.append(x)
            return [x]

        return f

    a, b = make(), make()

    async def main():
        return [await a(1), await b(1)]

    assert asyncio.run(main()) == [[1], [1]]
    assert runs == [1]
    assert a.__cachekit__.plan.abackend_mode == "thread"


def test_async_function_with_memory_url_uses_the_async_twin():
    runs = []

    def make():
        @cache(backend="memory://async-twin")
        async def f(x):
            runs.append(x)
            return [x]

        return f

    a, b = make(), make()

    async def main():
        r = [await a(1), await b(1)]
        await b.ainvalidate_cache(1)
        r.append(await a(1))  # the memory backend is coherent: a's L1 entry is gone too
        return r

    assert asyncio.run(main()) == [[1], [1], [1]]
    assert runs == [1, 1]


def test_async_backend_on_a_sync_function_is_a_configuration_error():
    from cachekit.backends.memory import AsyncMemoryBackend

    @cache(backend=AsyncMemoryBackend())
    def f():
        return 1

    with pytest.raises(ConfigurationError, match="asynchronous"):
        f()


def test_backend_from_the_environment(monkeypatch):
    monkeypatch.setenv("CACHEKIT_BACKEND", "memory://from-env")

    @cache()
    def f():
        return 1

    f()
    assert f.__cachekit__.plan.endpoint == "memory://from-env"


def test_redis_url_without_the_plugin_degrades_to_l1(monkeypatch, caplog):
    # Autoload off: the registry then behaves as if cachekit-redis were not installed.
    monkeypatch.setenv("CACHEKIT_DISABLE_PLUGIN_AUTOLOAD", "1")
    monkeypatch.setenv("REDIS_URL", "redis://localhost:6379/0")
    caplog.set_level(logging.WARNING, logger="cachekit")

    @cache()
    def f():
        return 1

    assert f() == 1
    assert f.__cachekit__.plan.endpoint is None
    assert any("cachekit-redis" in r.message for r in caplog.records)


def test_cachekit_redis_url_without_the_plugin_names_the_package(monkeypatch):
    monkeypatch.setenv("CACHEKIT_DISABLE_PLUGIN_AUTOLOAD", "1")
    monkeypatch.setenv("CACHEKIT_REDIS_URL", "redis://localhost:6379/0")

    @cache()
    def f():
        return 1

    with pytest.raises(PluginNotFoundError) as err:
        f()
    expected = "backend scheme 'redis' is provided by cachekit-redis: pip install cachekit-redis"
    assert expected in str(err.value)
    assert err.value.code == "E041"


def test_unknown_scheme_lists_what_is_available():
    @cache(backend="nosuch://x")
    def f():
        return 1

    with pytest.raises(PluginNotFoundError, match="memory"):
        f()


def test_an_l1_copy_never_outlives_the_l2_entry():
    import time as _time

    from cachekit.envelope import seal

    backend = DictBackend("expiry")
    first, second, runs = twin_functions(backend, ttl=3600)
    first(1)
    key = first.cache_key(1)
    payload = second.__cachekit__.resolve().serializer.serialize({"x": 1})
    # Another process wrote this entry a while ago: the backend drops it in 0.5 s.
    backend.store[key] = seal(payload, serializer="msgpack", key=key, expires_at=_time.time() + 0.5)
    assert second(1) == {"x": 1}
    assert runs == [1]
    from cachekit.cached import monotonic

    [entry] = second.__cachekit__.l1.data.values()
    assert entry[0] - monotonic() <= 0.5
    # An entry whose recorded expiry has passed (a stale copy put back, or a backend
    # that kept it too long) is a miss: computed again and overwritten.
    third, _, third_runs = twin_functions(backend, ttl=3600)
    stale = seal(payload, serializer="msgpack", key=key, expires_at=_time.time() - 1)
    backend.store[key] = stale
    assert third(1) == {"x": 1}
    assert third_runs == [1]
    assert backend.store[key] != stale
    assert third.cache_info().l2_hits == 0


class _DeafCoherence:
    """A coherence whose listen() fails, as a third-party backend's may."""

    healthy = False

    def __init__(self, real):
        self.real = real
        self.listen_calls = 0
        self.refuse = True

    def generations(self, keys):
        return self.real.generations(keys)

    def bump(self, key):
        return self.real.bump(key)

    def listen(self, callback):
        self.listen_calls += 1
        if self.refuse:
            raise OSError("notification channel refused")
        self.real.listen(callback)


def test_a_coherence_whose_listen_raises_fails_open(caplog):
    from cachekit.backends.memory import MemoryBackend

    class DeafBackend(MemoryBackend):
        def __init__(self):
            super().__init__("deaf-listener")
            self.deaf = _DeafCoherence(super().coherence())

        def coherence(self):
            return self.deaf

    backend = DeafBackend()
    runs = []

    @cache(backend=backend)
    def f(x):
        runs.append(x)
        return {"x": x}

    @cache(backend=backend)
    async def af(x):
        runs.append(-x)
        return {"x": x}

    with caplog.at_level(logging.WARNING, logger="cachekit"):
        assert f(1) == {"x": 1}  # before the fix: OSError from listen()
        assert asyncio.run(af(1)) == {"x": 1}
    assert f(1) == {"x": 1}
    assert runs == [1, -1]
    assert f.cache_info().errors >= 1
    assert "[E010]" in caplog.text and "notification channel refused" in caplog.text
    # L1 only meanwhile: nothing written to a backend whose notifications are unheard.
    assert backend._store.items == {}
    calls = backend.deaf.listen_calls
    state = f.__cachekit__
    state.replan_at = 0.0  # the retry time has come
    backend.deaf.refuse = False
    assert f(2) == {"x": 2}
    assert backend.deaf.listen_calls == calls + 1
    assert state.coherence is backend.deaf and state.replan_at is None
    assert len(backend._store.items) == 1  # the backend is used again


@pytest.mark.parametrize("is_async", [False, True])
def test_own_write_records_do_not_pile_up_without_an_l1(is_async):
    # Without an L1 there is nothing a notice could wrongly evict, so no record of
    # this process's writes is kept (it was, per call, on the async path).
    from cachekit.backends.memory import MemoryBackend

    backend = MemoryBackend(f"own-writes-{is_async}")
    if is_async:

        @cache(backend=backend, l1=False)
        async def fn(x):
            return x

        async def run_all():
            for i in range(50):
                await fn(i)

        asyncio.run(run_all())
    else:

        @cache(backend=backend, l1=False)
        def fn(x):
            return x

        for i in range(50):
            fn(i)
    state = fn.__cachekit__
    assert state.coherence is not None
    assert fn.cache_info().stores == 50
    assert state.own_writes == {}
