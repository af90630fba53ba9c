"""The circuit breaker state machine, on a fake monotonic clock."""

from __future__ import annotations

import logging
import threading

import pytest

import cachekit.breaker as breaker_mod
from cachekit.breaker import CLOSED, HALF_OPEN, OPEN, BreakerConfig, CircuitBreaker, breaker_for
from cachekit.errors import ConfigurationError


@pytest.fixture
def clock(monkeypatch):
    now = [100.0]
    monkeypatch.setattr(breaker_mod, "monotonic", lambda: now[0])
    return now


def test_opens_after_threshold_consecutive_failures(clock):
    b = CircuitBreaker("redis://h:1/0", BreakerConfig(failure_threshold=3, recovery_timeout=10))
    for _ in range(2):
        assert b.allow()
        b.failure()
    assert b.state is CLOSED
    b.success()  # a success resets the count
    for _ in range(3):
        assert b.allow()
        b.failure()
    assert b.state is OPEN
    assert not b.allow()
    assert b.snapshot()["rejected_calls"] == 1


def test_half_open_admits_limited_probes_and_a_success_closes(clock):
    b = CircuitBreaker(
        "e", BreakerConfig(failure_threshold=1, recovery_timeout=10, half_open_max_calls=2)
    )
    b.failure()
    assert b.state is OPEN
    clock[0] += 9.9
    assert not b.allow()
    clock[0] += 0.2
    assert b.allow()
    assert b.state is HALF_OPEN
    assert b.allow()
    assert not b.allow()  # third concurrent probe refused
    b.success()
    assert b.state is CLOSED
    assert b.allow()
    assert b.transitions == {"opened": 1, "half_opened": 1, "closed": 1}


def test_a_failed_probe_reopens_for_another_timeout(clock):
    b = CircuitBreaker("e", BreakerConfig(failure_threshold=1, recovery_timeout=5))
    b.failure()
    clock[0] += 6
    assert b.allow()
    b.failure()
    assert b.state is OPEN
    clock[0] += 4
    assert not b.allow()
    clock[0] += 2
    assert b.allow()


def test_a_cancelled_probe_frees_its_slot(clock):
    b = CircuitBreaker("e", BreakerConfig(failure_threshold=1, recovery_timeout=1))
    b.failure()
    clock[0] += 2
    assert b.allow()
    assert not b.allow()
    b.release_probe()
    assert b.allow()


def test_disabled_breaker_never_opens():
    b = CircuitBreaker("e", BreakerConfig(failure_threshold=1, enabled=False))
    for _ in range(10):
        b.failure()
    assert b.state is CLOSED and b.allow()


def test_transitions_are_logged_with_e030(clock, caplog):
    caplog.set_level(logging.INFO, logger="cachekit.breaker")
    b = CircuitBreaker(
        "redis://host:6379/0", BreakerConfig(failure_threshold=1, recovery_timeout=1)
    )
    b.failure(ConnectionError("refused"))
    clock[0] += 2
    b.allow()
    b.success()
    messages = [r.getMessage() for r in caplog.records]
    assert any("[E030]" in m and "opened" in m and "ConnectionError" in m for m in messages)
    assert sum("[E030]" in m for m in messages) == 3


def test_one_breaker_per_endpoint_and_config():
    a = breaker_for("redis://x:1/0")
    assert breaker_for("redis://x:1/0") is a
    assert breaker_for("redis://y:1/0") is not a
    assert breaker_for("redis://x:1/0", BreakerConfig(failure_threshold=9)) is not a


def test_thread_safety_of_failures():
    b = CircuitBreaker("e", BreakerConfig(failure_threshold=1000))

    def hammer():
        for _ in range(100):
            b.failure()

    threads = [threading.Thread(target=hammer) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert b.failures == 800
    assert b.state is CLOSED


@pytest.mark.parametrize(
    "kwargs",
    [{"failure_threshold": 0}, {"recovery_timeout": 0}, {"half_open_max_calls": 0}],
)
def test_invalid_settings_are_e040(kwargs):
    with pytest.raises(ConfigurationError):
        BreakerConfig(**kwargs)


def test_settings_from_the_environment():
    cfg = BreakerConfig.from_env(
        {
            "CACHEKIT_CIRCUIT_BREAKER_FAILURE_THRESHOLD": "7",
            "CACHEKIT_CIRCUIT_BREAKER_RECOVERY_TIMEOUT": "2.5",
            "CACHEKIT_CIRCUIT_BREAKER": "off",
        }
    )
    assert (cfg.failure_threshold, cfg.recovery_timeout, cfg.enabled) == (7, 2.5, False)
    with pytest.raises(ConfigurationError, match="CACHEKIT_CIRCUIT_BREAKER_RECOVERY_TIMEOUT"):
        BreakerConfig.from_env({"CACHEKIT_CIRCUIT_BREAKER_RECOVERY_TIMEOUT": "soon"})
    with pytest.raises(ConfigurationError):
        BreakerConfig.from_env({"CACHEKIT_CIRCUIT_BREAKER_FAILURE_THRESHOLD": "-1"})
