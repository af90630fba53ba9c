"""Concurrent misses across real processes compute once (distributed lock with a lease)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis

HERE = Path(__file__).parent


def run_child(redis_url: str, *args: object, work: float = 0.3) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CACHEKIT_")}
    env.update(CACHEKIT_BACKEND=redis_url, PYTHONPATH=str(HERE), STAMPEDE_WORK=str(work))
    return subprocess.Popen(
        [sys.executable, "-c", "import stampede_child; stampede_child.main()", *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def finish(child: subprocess.Popen[str]) -> list[str]:
    out, err = child.communicate(timeout=60)
    assert child.returncode == 0, err
    return out.split()


@pytest.mark.parametrize("mode", ["threads", "tasks"])
def test_four_processes_with_a_hundred_callers_each_compute_once(redis_url, mode):
    start_at = time.time() + 1.5  # after every child has imported cachekit and redis
    children = [run_child(redis_url, mode, "report", start_at, 100) for _ in range(4)]
    outputs = [finish(child) for child in children]
    client = redis.Redis.from_url(redis_url)
    assert client.get("computations:report") == b"1"
    pids = set()
    for words in outputs:
        i = words.index("RESULTS")
        assert words[i + 1] == "100"  # every caller got a result
        assert words[i + 3] == "1"  # ...and they were all the same
        pids.add(words[i + 4])
    assert len(pids) == 1  # the one value computed by one process, everywhere


def test_a_killed_lock_holder_is_recovered_within_the_lease(redis_url):
    client = redis.Redis.from_url(redis_url)
    holder = run_child(redis_url, "hold", "orphan", 0, 1, work=30)
    assert holder.stdout.readline().startswith("CALLING")
    deadline = time.monotonic() + 10
    # Wait until the holder is inside the function (lock taken, computation counted).
    while client.get("computations:orphan") != b"1" and time.monotonic() < deadline:
        time.sleep(0.01)
    assert list(client.scan_iter("cachekit-lock:*")), "the holder never took the lock"
    assert client.get("computations:orphan") == b"1"
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait(10)
    waiter = run_child(redis_url, "after-holder", "orphan", 0, 1, work=0.05)
    words = finish(waiter)
    waited = float(words[words.index("WAITED") + 1])
    print(f"\n[stampede] a SIGKILLed holder's lock was recovered after {waited:.3f} s (lease 1 s)")
    assert client.get("computations:orphan") == b"2"
    assert waited < 5  # the lease (1 s) plus process start-up, not the holder's 30 s
