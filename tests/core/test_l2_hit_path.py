"""The L2 hit of a function without L1 (issue 12): the backend is read directly while
the breaker is closed, and an unencrypted entry with an expiry is opened by the plan's
plain reader. Both are shortcuts of the general path (miss.get_steps, L2Access._decode):
every outcome - values, counters, breaker, log lines - must be the general path's.
"""

from __future__ import annotations

import logging
import pickle
import time
from itertools import count

import pytest
from dict_backend import DictBackend

from cachekit import cache
from cachekit._engine import l2 as l2_module
from cachekit._engine.options import Plan
from cachekit.breaker import CLOSED, HALF_OPEN, OPEN, BreakerConfig
from cachekit.constants import TOMBSTONE_PREFIX
from cachekit.envelope import open_plain, seal_plain

_names = count()


class FlakyBackend(DictBackend):
    """A DictBackend whose get raises ``fail`` while it is set."""

    def __init__(self) -> None:
        # A new endpoint per test: breakers are shared per endpoint in the process.
        super().__init__(f"hit-path-{next(_names)}")
        self.fail: BaseException | None = None

    def get(self, key):
        if self.fail is not None:
            self.calls.append("get")
            raise self.fail
        return super().get(key)


def make(backend, l1=False, **options):
    runs = []

    @cache(backend=backend, l1=l1, ttl=300, **options)
    def f(x):
        runs.append(x)
        return {"x": x}

    return f, runs


def replan(f, **fields):
    """Replace fields of ``f``'s plan (built by its first call)."""
    state = f.__cachekit__
    values = {name: getattr(state.plan, name) for name in Plan.__slots__}
    values.update(fields)
    state.plan = Plan(**values)


@pytest.fixture
def general_reads(monkeypatch):
    """Counts the reads that went through miss.get_steps and its driver."""
    calls = []
    original = l2_module.run_sync

    def counting(state, plan, steps, *rest):
        calls.append(steps.__name__)
        return original(state, plan, steps, *rest)

    monkeypatch.setattr(l2_module, "run_sync", counting)
    return calls


def test_the_closed_state_is_the_breaker_modules_object():
    # l2 compares with `is` without importing cachekit.breaker (it imports logging).
    assert l2_module._CLOSED is CLOSED


@pytest.mark.parametrize("breaker", ["closed", "none"])
def test_an_l2_hit_with_the_breaker_closed_reads_the_backend_directly(breaker, general_reads):
    backend = FlakyBackend()
    writer, _ = make(backend, l1=True)
    writer(1)
    f, runs = make(backend)
    f(2)  # builds the plan (a miss)
    if breaker == "none":
        replan(f, breaker=None)
    general_reads.clear()
    assert f(1) == {"x": 1}
    assert runs == [2]
    assert general_reads == []
    info = f.cache_info()
    assert (info.l2_hits, info.errors, info.invalid) == (1, 0, 0)


@pytest.mark.parametrize("l1", [False, True], ids=["direct read", "general path"])
@pytest.mark.parametrize(
    ("error", "transient"), [(ConnectionError("refused"), True), (ValueError("garbled"), False)]
)
def test_a_failed_read_fails_open_with_the_same_accounting_either_way(l1, error, transient, caplog):
    caplog.set_level(logging.WARNING, logger="cachekit")
    backend = FlakyBackend()
    f, runs = make(backend, l1=l1, circuit_breaker=BreakerConfig(failure_threshold=3))
    backend.fail = error
    assert f(1) == {"x": 1}
    assert runs == [1]
    breaker = f.__cachekit__.plan.breaker
    assert breaker.state is CLOSED
    assert breaker.failures == (1 if transient else 0)
    # Unreachable: no write that would pay a second timeout. Answered: the write is tried.
    assert backend.calls == (["get"] if transient else ["get", "set"])
    assert f.cache_info().errors == 1
    [warning] = [r.getMessage() for r in caplog.records if "E010" in r.getMessage()]
    assert "during get" in warning and type(error).__name__ in warning


def test_a_success_after_failures_resets_the_closed_breakers_count(general_reads):
    backend = FlakyBackend()
    f, _ = make(backend, circuit_breaker=BreakerConfig(failure_threshold=5))
    backend.fail = ConnectionError("refused")
    f(1)
    f(2)
    breaker = f.__cachekit__.plan.breaker
    assert (breaker.state, breaker.failures) == (CLOSED, 2)
    backend.fail = None
    general_reads.clear()
    f(1)  # a direct read that reached the backend (a miss: the value was never stored)
    assert general_reads == []
    assert (breaker.state, breaker.failures) == (CLOSED, 0)


def test_an_open_breaker_is_asked_through_the_general_path(general_reads):
    backend = FlakyBackend()
    f, runs = make(backend, circuit_breaker=BreakerConfig(failure_threshold=1))
    backend.fail = ConnectionError("refused")
    f(1)
    breaker = f.__cachekit__.plan.breaker
    assert breaker.state is OPEN
    rejected, calls = breaker.rejected, len(backend.calls)
    general_reads.clear()
    assert f(2) == {"x": 2}
    assert general_reads == ["get_steps"]
    assert len(backend.calls) == calls  # no I/O while open
    assert breaker.rejected == rejected + 2  # the read, then the write
    assert f.cache_info().errors == 1
    assert runs == [1, 2]


@pytest.mark.parametrize("probe", ["succeeds", "fails"])
def test_a_half_open_breakers_probe_goes_through_the_general_path(probe, general_reads):
    backend = FlakyBackend()
    writer, _ = make(backend, l1=True)
    writer(1)
    f, runs = make(backend, circuit_breaker=BreakerConfig(failure_threshold=1))
    backend.fail = ConnectionError("refused")
    f(2)
    breaker = f.__cachekit__.plan.breaker
    breaker.opened_at -= breaker.config.recovery_timeout + 1  # recovery time is over
    if probe == "succeeds":
        backend.fail = None
    general_reads.clear()
    assert f(1) == {"x": 1}
    assert general_reads[0] == "get_steps"
    if probe == "succeeds":
        assert breaker.state is CLOSED
        assert f.cache_info().l2_hits == 1
        assert runs == [2]
    else:
        assert breaker.state is OPEN
        assert runs == [2, 1]
    assert breaker.state is not HALF_OPEN


# --- what was stored: the plain reader and the general path agree ----------------------


def _payload(blob):
    payload, expires_at = open_plain(blob, "msgpack")
    assert expires_at is not None  # the writer has a ttl: the envelope records an expiry
    return payload


def _valid(blob):
    return blob


def _no_expiry(blob):
    return seal_plain(_payload(blob), "msgpack", None)


def _flipped_crc(blob):
    return blob[:5] + bytes([blob[5] ^ 0x01]) + blob[6:]


def _flipped_payload(blob):
    return blob[:-1] + bytes([blob[-1] ^ 0x01])


def _tombstone(blob):
    return TOMBSTONE_PREFIX + b"1"


def _expired(blob):
    return seal_plain(_payload(blob), "msgpack", time.time() - 10)


def _foreign_serializer(blob):
    return seal_plain(pickle.dumps({"x": "evil"}), "pickle", time.time() + 300)


def _undecodable(blob):
    return seal_plain(b"\xc1", "msgpack", time.time() + 300)  # 0xc1: never used by msgpack


ENTRIES = {
    "valid": (_valid, True),
    "no expiry": (_no_expiry, True),
    "flipped CRC byte": (_flipped_crc, False),
    "flipped payload byte": (_flipped_payload, False),
    "tombstone": (_tombstone, False),
    "expired": (_expired, False),
    "foreign serializer": (_foreign_serializer, False),
    "undecodable payload": (_undecodable, False),
}


def _outcome(entry, l1, plain_reader, caplog):
    """Store f(1), replace its entry, read it back with a fresh function: what happened."""
    backend = FlakyBackend()
    writer, _ = make(backend, l1=True)
    writer(1)
    key = writer.cache_key(1)
    backend.store[key] = entry(backend.store[key])
    f, runs = make(backend, l1=l1)
    f(2)  # builds the plan
    if not plain_reader:
        replan(f, read_plain=None)
    else:
        assert f.__cachekit__.plan.read_plain is not None
    caplog.clear()
    value = f(1)
    info = f.cache_info()
    logged = [(r.levelname, r.getMessage()) for r in caplog.records if r.name == "cachekit"]
    stored = backend.store[key]
    return value, runs, (info.l2_hits, info.misses, info.errors, info.invalid), logged, stored


@pytest.mark.parametrize("l1", [False, True], ids=["no L1", "L1"])
@pytest.mark.parametrize("name", list(ENTRIES))
def test_every_entry_reads_as_the_general_path_reads_it(name, l1, caplog):
    caplog.set_level(logging.WARNING, logger="cachekit")
    entry, readable = ENTRIES[name]
    fast = _outcome(entry, l1, True, caplog)
    general = _outcome(entry, l1, False, caplog)
    assert fast[:4] == general[:4]
    value, runs, (l2_hits, _, errors, invalid), logged, stored = fast
    assert value == {"x": 1}
    assert (l2_hits, errors) == (1 if readable else 0, 0)
    assert runs == ([2] if readable else [2, 1])
    counted = name not in ("valid", "no expiry", "tombstone", "expired")
    assert invalid == (1 if counted else 0)  # counted once, though read twice
    assert len(logged) == (1 if counted else 0)
    if not readable:
        assert _payload(stored)  # overwritten with a readable entry


def test_a_debug_line_for_an_l2_hit_only_when_debug_is_enabled(caplog, monkeypatch):
    backend = FlakyBackend()
    writer, _ = make(backend, l1=True)
    writer(1)
    f, _ = make(backend)
    f(2)
    state = f.__cachekit__
    asked = []
    original = state.debug
    monkeypatch.setattr(state, "debug", lambda *a: asked.append(a) or original(*a))
    caplog.set_level(logging.INFO, logger="cachekit")
    f(1)
    assert asked == []
    caplog.set_level(logging.DEBUG, logger="cachekit")
    f(1)
    assert [a[0] for a in asked] == ["L2 hit"]
    assert any(r.getMessage().startswith("L2 hit ") for r in caplog.records)
