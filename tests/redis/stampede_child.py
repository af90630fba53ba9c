"""Child process for the cross-process stampede tests (see test_stampede.py)."""

from __future__ import annotations

import asyncio
import os
import sys
import threading
import time

import redis

from cachekit import cache


def _count(name: str) -> None:
    redis.Redis.from_url(os.environ["CACHEKIT_BACKEND"]).incr(f"computations:{name}")


@cache(ttl=60, lock_lease=5)
def expensive(name: str) -> dict:
    _count(name)
    time.sleep(float(os.environ.get("STAMPEDE_WORK", "0.3")))
    return {"name": name, "pid": os.getpid()}


@cache(ttl=60, lock_lease=5)
async def aexpensive(name: str) -> dict:
    _count(name)
    await asyncio.sleep(float(os.environ.get("STAMPEDE_WORK", "0.3")))
    return {"name": name, "pid": os.getpid()}


@cache(ttl=60, lock_lease=1)
def short_lease(name: str) -> dict:
    _count(name)
    time.sleep(float(os.environ.get("STAMPEDE_WORK", "0.3")))
    return {"name": name, "pid": os.getpid()}


def main() -> None:
    mode, name, start_at, workers = sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4])
    time.sleep(max(0.0, start_at - time.time()))
    results: list[dict] = []
    if mode == "threads":
        barrier = threading.Barrier(workers)

        def call() -> None:
            barrier.wait()
            results.append(expensive(name))

        threads = [threading.Thread(target=call) for _ in range(workers)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    elif mode == "tasks":

        async def run() -> None:
            results.extend(await asyncio.gather(*(aexpensive(name) for _ in range(workers))))

        asyncio.run(run())
    elif mode == "hold":
        print("CALLING", flush=True)
        results.append(short_lease(name))
    elif mode == "after-holder":
        started = time.monotonic()
        results.append(short_lease(name))
        print(f"WAITED {time.monotonic() - started:.3f}", flush=True)
    distinct = {tuple(sorted(r.items())) for r in results}
    print(f"RESULTS {len(results)} DISTINCT {len(distinct)} {results[0]['pid']}", flush=True)
