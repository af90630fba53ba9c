"""One worker process of the randomized history run (see history_run.py).

Threads call the sync cached functions and tasks of one asyncio loop call the async
ones; every thread and task picks random operations from a seeded generator:

    read     call a cached function; its value names the function, the key and the
             version of the source it read
    write    INCR the key's version in the source of truth (a Redis the faults never
             touch), then invalidate a scope that covers the key: the writer protocol
    inv      an invalidation on its own (one entry, a function, a namespace, a tag)

Every operation is recorded with its start and end (time.monotonic(), which every
process of the machine shares), its result, or the exception the caller got. The
records go to a JSON-lines file when the run ends.

    python history_worker.py --index I --seed S --seconds D --out FILE [--keys K]

It prints READY once its functions are warm, starts when a line arrives on stdin,
and prints DONE <records> when the file is written.

Environment: CACHEKIT_BACKEND (the faulted Redis, usually through a proxy),
HISTORY_SOURCE_URL (the source of truth).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
import threading
import time
import traceback
from collections.abc import Generator
from typing import Any

import redis

import cachekit
from cachekit import cache

_source_client = redis.Redis.from_url(os.environ.get("HISTORY_SOURCE_URL", "redis://127.0.0.1:1/0"))


def source_version(key: str) -> int:
    value = _source_client.get(f"src:{key}")
    return int(value) if value is not None else 0


WORKER = {"index": -1}


def _value(fn: str, key: str) -> dict[str, Any]:
    """What every function returns: whose and which value, and (for diagnosis) which
    process computed it and when it read the source."""
    at = time.monotonic()
    return {"fn": fn, "key": key, "v": source_version(key), "by": WORKER["index"], "at": at}


# The functions under test: sync and async, with and without L1, in two namespaces,
# with tags and without. The "scope" table below says what each invalidation covers;
# the checker reads the same table from the history file's header.


@cache(ttl=60, namespace="hist1", tags=["ht1"])
def s_l1(key: str) -> dict[str, Any]:
    time.sleep(random.random() * 0.003)  # a compute long enough for races to happen
    return _value("s_l1", key)


@cache(ttl=60, namespace="hist1", l1=False)
def s_nol1(key: str) -> dict[str, Any]:
    time.sleep(random.random() * 0.003)
    return _value("s_nol1", key)


@cache(ttl=60)
def s_plain(key: str) -> dict[str, Any]:
    time.sleep(random.random() * 0.003)
    return _value("s_plain", key)


@cache(ttl=60, namespace="hist2", tags=["ht1"])
async def a_l1(key: str) -> dict[str, Any]:
    await asyncio.sleep(random.random() * 0.003)
    return _value("a_l1", key)


@cache(ttl=60, namespace="hist2", tags=["ht2"], l1=False)
async def a_nol1(key: str) -> dict[str, Any]:
    await asyncio.sleep(random.random() * 0.003)
    return _value("a_nol1", key)


SYNC = {"s_l1": s_l1, "s_nol1": s_nol1, "s_plain": s_plain}
ASYNC = {"a_l1": a_l1, "a_nol1": a_nol1}
FUNCTIONS: dict[str, Any] = {**SYNC, **ASYNC}
# What each function is grouped under, for the checker: namespace and tags.
GROUPS = {
    "s_l1": {"namespace": "hist1", "tags": ["ht1"]},
    "s_nol1": {"namespace": "hist1", "tags": []},
    "s_plain": {"namespace": None, "tags": []},
    "a_l1": {"namespace": "hist2", "tags": ["ht1"]},
    "a_nol1": {"namespace": "hist2", "tags": ["ht2"]},
}


def covering_scopes(fn: str, key: str) -> list[dict[str, Any]]:
    """Every invalidation scope that covers (fn, key)."""
    scopes: list[dict[str, Any]] = [
        {"kind": "entry", "fn": fn, "key": key},
        {"kind": "function", "fn": fn},
    ]
    if GROUPS[fn]["namespace"] is not None:
        scopes.append({"kind": "namespace", "namespace": GROUPS[fn]["namespace"]})
    scopes += [{"kind": "tag", "tag": tag} for tag in GROUPS[fn]["tags"]]
    return scopes


class Recorder:
    def __init__(self, process: int) -> None:
        self.process = process
        self.records: list[dict[str, Any]] = []
        self.lock = threading.Lock()

    def add(self, actor: str, record: dict[str, Any]) -> None:
        record["process"] = self.process
        record["actor"] = actor
        with self.lock:
            self.records.append(record)


#: A sleep overshooting by this much (seconds) is recorded as a stall of the process.
STALL = 0.02


def watch_stream(rec: Recorder, deadline: float, every: float = 0.005) -> None:
    """Sample the notification stream's state (check_health() of an async function does
    no I/O) and record the samples around each change, and the stalls of this process:
    the checker's stream outages."""
    last: dict[str, Any] | None = None
    recorded = False
    while time.monotonic() < deadline:
        stream = (a_l1.check_health()["backend"] or {}).get("notifications")
        if stream is None:
            return  # no shared backend, or one without a notification stream
        sample = {"op": "stream", "start": time.monotonic(), **stream}
        sample["end"] = sample["start"]
        changed = last is None or (last["connected"], last["reconnects"]) != (
            sample["connected"],
            sample["reconnects"],
        )
        if changed:
            if last is not None and not recorded:
                rec.add("stream", last)
            rec.add("stream", sample)
        recorded = changed
        last = sample
        before = time.monotonic()
        time.sleep(every)
        after = time.monotonic()
        if after - before > every + STALL:
            # This process was not scheduled for a while (the machine is busy): its
            # listener could not hand notices on meanwhile either.
            rec.add("stream", {"op": "stall", "start": before + every, "end": after})
    if last is not None and not recorded:
        rec.add("stream", last)


def _error(exc: BaseException) -> str:
    return "".join(traceback.format_exception_only(type(exc), exc)).strip()


def _sync_invalidate(scope: dict[str, Any]) -> None:
    kind = scope["kind"]
    if kind == "entry":
        FUNCTIONS[scope["fn"]].invalidate_cache(scope["key"])
    elif kind == "function":
        FUNCTIONS[scope["fn"]].cache_clear()
    elif kind == "namespace":
        cachekit.invalidate(namespace=scope["namespace"])
    else:
        cachekit.invalidate(tags=scope["tag"])


async def _async_invalidate(scope: dict[str, Any]) -> None:
    kind = scope["kind"]
    if kind == "entry" and scope["fn"] in ASYNC:
        await FUNCTIONS[scope["fn"]].ainvalidate_cache(scope["key"])
    elif kind == "function" and scope["fn"] in ASYNC:
        await FUNCTIONS[scope["fn"]].ainvalidate_cache()
    else:
        _sync_invalidate(scope)  # sync functions and process-wide invalidation


def _choose(rng: random.Random, keys: list[str], names: list[str]) -> tuple[str, Any]:
    """(operation, its arguments)."""
    roll = rng.random()
    if roll < 0.75:
        return "read", (rng.choice(names), rng.choice(keys))
    key = rng.choice(keys)
    scope = rng.choice(covering_scopes(rng.choice(list(FUNCTIONS)), key))
    return ("write" if roll < 0.95 else "inv"), (key, scope)


def _write_source(key: str) -> int:
    return int(_source_client.incr(f"src:{key}"))


# One actor's operations, written once as a generator that does no I/O of its own: it
# yields what to do, ("read", (fn, key)), ("inv", scope) or ("sleep", seconds), receives
# (result, exception) and records. A thread and an asyncio task drive it.
Step = tuple[str, Any]
Outcome = tuple[Any, BaseException | None]


def actor_steps(
    rec: Recorder, actor: str, seed: int, deadline: float, keys: list[str], names: list[str]
) -> Generator[Step, Outcome | None, None]:
    rng = random.Random(seed)
    while time.monotonic() < deadline:
        op, args = _choose(rng, keys, names)
        if op == "write":
            write_start = time.monotonic()
            version = _write_source(args[0])
            rec.add(
                actor,
                {
                    "op": "write",
                    "key": args[0],
                    "version": version,
                    "start": write_start,
                    "end": time.monotonic(),
                },
            )
        start = time.monotonic()
        if op == "read":
            fn, key = args
            outcome = yield "read", args
            record: dict[str, Any] = {"op": "read", "fn": fn, "key": key}
        else:
            outcome = yield "inv", args[1]
            record = {"op": "inv", "scope": args[1]}
        assert outcome is not None
        record.update(start=start, end=time.monotonic())
        value, exc = outcome
        if exc is not None:
            record["error"] = _error(exc)
        elif op == "read":
            record["value"] = value
        rec.add(actor, record)
        yield "sleep", rng.random() * 0.008


def run_thread(rec: Recorder, actor: str, seed: int, deadline: float, keys: list[str]) -> None:
    steps = actor_steps(rec, actor, seed, deadline, keys, list(SYNC))
    outcome: Outcome | None = None
    while (step := _next(steps, outcome)) is not None:
        kind, arg = step
        outcome = None
        try:
            if kind == "sleep":
                time.sleep(arg)
            elif kind == "read":
                outcome = (FUNCTIONS[arg[0]](arg[1]), None)
            else:
                outcome = (_sync_invalidate(arg), None)
        except Exception as exc:
            outcome = (None, exc)


async def run_task(rec: Recorder, actor: str, seed: int, deadline: float, keys: list[str]) -> None:
    steps = actor_steps(rec, actor, seed, deadline, keys, list(ASYNC))
    outcome: Outcome | None = None
    while (step := _next(steps, outcome)) is not None:
        kind, arg = step
        outcome = None
        try:
            if kind == "sleep":
                await asyncio.sleep(arg)
            elif kind == "read":
                outcome = (await FUNCTIONS[arg[0]](arg[1]), None)
            else:
                outcome = (await _async_invalidate(arg), None)
        except Exception as exc:
            outcome = (None, exc)


def _next(steps: Generator[Step, Outcome | None, None], outcome: Outcome | None) -> Step | None:
    """The next step, sent the outcome of the last one; None when the actor is done."""
    try:
        return steps.send(outcome)
    except StopIteration:
        return None


async def run_loop(rec: Recorder, seed: int, tasks: int, deadline: float, keys: list[str]) -> None:
    await asyncio.gather(
        *(run_task(rec, f"task{i}", seed * 1000 + 100 + i, deadline, keys) for i in range(tasks))
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--index", type=int, required=True)
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--seconds", type=float, required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--keys", type=int, default=4)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--tasks", type=int, default=2)
    args = parser.parse_args(argv)
    keys = [f"k{i}" for i in range(args.keys)]
    rec = Recorder(args.index)
    WORKER["index"] = args.index
    seed = args.seed * 100 + args.index
    # Warm up: the first call of each function builds its plan and starts the stream.
    for fn in SYNC.values():
        fn("warm-up")

    async def warm() -> None:
        for afn in ASYNC.values():
            await afn("warm-up")

    asyncio.run(warm())
    print("READY", flush=True)
    sys.stdin.readline()  # every worker starts when the runner says so
    deadline = time.monotonic() + args.seconds
    threads = [
        threading.Thread(
            target=run_thread, args=(rec, f"thread{i}", seed * 1000 + i, deadline, keys)
        )
        for i in range(args.threads)
    ]
    threads.append(threading.Thread(target=watch_stream, args=(rec, deadline)))
    for thread in threads:
        thread.start()
    asyncio.run(run_loop(rec, seed, args.tasks, deadline, keys))
    for thread in threads:
        thread.join()
    with open(args.out, "w", encoding="utf-8") as out:
        for record in sorted(rec.records, key=lambda r: r["start"]):
            out.write(json.dumps(record) + "\n")
    cachekit.close()
    print(f"DONE {len(rec.records)}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
