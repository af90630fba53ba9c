"""Functions shared by the coherence tests and the child processes they start.

The parent test imports this module by name and runs children with
``python -c "import coherence_child; coherence_child.main()"`` so both sides
decorate the same ``coherence_child.<name>`` functions and share their keys.
The backend comes from CACHEKIT_BACKEND; the "database" is a raw Redis key
``source:<id>`` that the functions read.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time

import redis

from cachekit import cache


def _source(user_id: int) -> str | None:
    client = redis.Redis.from_url(os.environ["CACHEKIT_BACKEND"])
    value = client.get(f"source:{user_id}")
    return value.decode() if value is not None else None


@cache(ttl=60, namespace="coherence", tags=["profiles"])
def profile(user_id: int) -> dict:
    return {"id": user_id, "v": _source(user_id)}


@cache(ttl=60, namespace="coherence")
async def aprofile(user_id: int) -> dict:
    return {"id": user_id, "v": _source(user_id)}


@cache(ttl=60, namespace="coherence")
def gated(user_id: int) -> dict:
    """Reads the source, then waits until the raw key ``gate:<id>`` exists."""
    value = _source(user_id)
    client = redis.Redis.from_url(os.environ["CACHEKIT_BACKEND"])
    client.set(f"started:{user_id}", 1)
    deadline = time.monotonic() + 10
    while not client.exists(f"gate:{user_id}") and time.monotonic() < deadline:
        time.sleep(0.005)
    return {"id": user_id, "v": value}


def _watch(call, deadline: float) -> None:
    """Print READY, then the monotonic time at which the result changed."""
    first = call()
    assert profile.cache_info().misses <= 1
    print(f"READY {first['v']}", flush=True)
    while time.monotonic() < deadline:
        value = call()
        if value["v"] != first["v"]:
            print(f"CHANGED {time.monotonic():.6f} {value['v']}", flush=True)
            return
        time.sleep(0.0005)
    print("TIMEOUT", flush=True)


def main() -> None:
    mode = sys.argv[1]
    deadline = time.monotonic() + float(sys.argv[2] if len(sys.argv) > 2 else 10)
    if mode == "watch":
        _watch(lambda: profile(1), deadline)
    elif mode == "awatch":

        async def run() -> None:
            first = await aprofile(1)
            print(f"READY {first['v']}", flush=True)
            while time.monotonic() < deadline:
                value = await aprofile(1)
                if value["v"] != first["v"]:
                    print(f"CHANGED {time.monotonic():.6f} {value['v']}", flush=True)
                    return
                await asyncio.sleep(0.0005)
            print("TIMEOUT", flush=True)

        asyncio.run(run())
    elif mode == "invalidate-gated":
        gated.invalidate_cache(1)
        print("DONE", flush=True)
    elif mode == "read-gated":
        print(f"VALUE {gated(1)['v']}", flush=True)
    else:
        raise SystemExit(f"unknown mode {mode}")
