"""The Redis side of an L2 hit (issue 12): RedisBackend.get sends GET without building an
Op on a standalone or Sentinel server, and the connection pool notices a connection that
came back broken with a counter. Both must behave exactly as before."""

from __future__ import annotations

import threading
import time

import pytest
import redis.exceptions as rx

from cachekit.constants import MISSING
from cachekit_redis import RedisBackend, ops
from cachekit_redis.clients import _pool, _PoolQueue


def test_get_answers_as_the_general_operation_does(redis_url, raw):
    backend = RedisBackend(redis_url)
    try:
        raw.set("cachekit:hit-read:k", b"\x00value")
        for key in ("cachekit:hit-read:k", "cachekit:hit-read:absent"):
            assert backend.get(key) == backend._run(ops.get(key))
        assert backend.get("cachekit:hit-read:absent") is MISSING
        assert backend.get("cachekit:hit-read:k") == b"\x00value"
    finally:
        backend.close()


class _Failing:
    """A client whose every command raises ``exc``."""

    def __init__(self, exc: Exception) -> None:
        self.exc = exc

    def execute_command(self, *args):
        raise self.exc


@pytest.mark.parametrize(
    "exc",
    [
        rx.ConnectionError("Connection refused"),
        rx.TimeoutError("Timeout reading from socket"),
        rx.ResponseError("OOM command not allowed"),
        rx.ReadOnlyError("You can't write against a read only replica."),
        ValueError("a bug"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_a_failed_get_raises_what_the_general_operation_raises(exc):
    backend = RedisBackend("redis://127.0.0.1:1/0")
    backend.client = _Failing(exc)
    raised = []
    for call in (lambda: backend.get("k"), lambda: backend._run(ops.get("k"))):
        with pytest.raises(Exception) as info:
            call()
        raised.append(info.value)
    direct, general = raised
    assert type(direct) is type(general)
    assert str(direct) == str(general)
    assert getattr(direct, "transient", None) == getattr(general, "transient", None)
    assert direct.__cause__ is exc and general.__cause__ is exc


def _waiting_get(queue: _PoolQueue, outcome: list) -> threading.Thread:
    def wait() -> None:
        try:
            outcome.append(queue.get(True, 5))
        except Exception as exc:
            outcome.append(exc)

    thread = threading.Thread(target=wait)
    thread.start()
    deadline = time.monotonic() + 5
    while not queue.not_empty._waiters and time.monotonic() < deadline:  # type: ignore[attr-defined]
        time.sleep(0.001)
    return thread


def test_a_connection_that_broke_while_a_caller_waited_fails_that_caller_at_once():
    queue = _PoolQueue()
    outcome: list = []
    thread = _waiting_get(queue, outcome)
    queue.broken += 1  # what the pool's release counts for a disconnected connection
    queue.put("connection")
    thread.join(5)
    [error] = outcome
    assert isinstance(error, rx.ConnectionError) and "while this call waited" in str(error)
    assert queue.get(False) == "connection"  # handed back for the next caller


def test_a_connection_that_broke_before_the_wait_does_not_fail_it():
    queue = _PoolQueue()
    queue.broken += 1
    outcome: list = []
    thread = _waiting_get(queue, outcome)
    queue.put("connection")
    thread.join(5)
    assert outcome == ["connection"]


def test_the_pool_counts_the_connections_released_broken(redis_url):
    pool = _pool(host="127.0.0.1", port=int(redis_url.rsplit(":", 1)[1].split("/")[0]))
    try:
        healthy = pool.get_connection()
        pool.release(healthy)
        assert pool.pool.broken == 0
        broken = pool.get_connection()
        broken.disconnect()  # what redis-py does after a timeout or connection error
        pool.release(broken)
        assert pool.pool.broken == 1
    finally:
        pool.disconnect()
