"""Run a randomized history against real Redis with faults, then check it.

    run_history(seed, seconds) -> (Report, records, directory)

Starts two private redis-servers (the cache, reached through a TcpProxy, and the
source of truth, which no fault touches), several worker processes
(history_worker.py: threads and asyncio tasks each), and a fault schedule drawn from
the seed in this process: kill -9 and restart on the same port, SIGSTOP/SIGCONT, reply
delays and connection resets at the proxy, and CLIENT KILL TYPE pubsub (the
notification streams). Then history_checker.check() reads every record.

Command line (``make soak`` runs it):

    python tests/history/history_run.py --seed 7 --seconds 30      # one run; replays a seed
    python tests/history/history_run.py --soak 600                 # random seeds for 10 min

Exit status 1 when a run found a violation; each failing seed is printed with the
command that replays it.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
TESTS = HERE.parent
ROOT = TESTS.parent
for _path in (HERE, TESTS / "support", TESTS):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

from faults import TcpProxy  # noqa: E402
from history_checker import Report, check  # noqa: E402
from redis_servers import RedisServer  # noqa: E402

SOCKET_TIMEOUT = 0.2
BREAKER_RECOVERY = 0.5
FAULT_KINDS = ("kill-restart", "pause", "delay", "reset", "pubsub-kill")


def replay_command(seed: int, seconds: float, workers: int) -> str:
    return (
        f".venv/bin/python tests/history/history_run.py --seed {seed} --seconds {seconds:g} "
        f"--workers {workers}"
    )


def _worker_env(cache_url: str | None, source_url: str) -> dict[str, str]:
    """The workers' environment; ``cache_url`` None leaves them with L1 only."""
    env = {
        k: v for k, v in os.environ.items() if not k.startswith("CACHEKIT_") and k != "REDIS_URL"
    }
    if cache_url is not None:
        env["CACHEKIT_BACKEND"] = cache_url
    env.update(
        HISTORY_SOURCE_URL=source_url,
        CACHEKIT_SOCKET_TIMEOUT=str(SOCKET_TIMEOUT),
        CACHEKIT_SOCKET_CONNECT_TIMEOUT=str(SOCKET_TIMEOUT),
        CACHEKIT_CIRCUIT_BREAKER_RECOVERY_TIMEOUT=str(BREAKER_RECOVERY),
        PYTHONPATH=os.pathsep.join([str(HERE), env.get("PYTHONPATH", "")]).rstrip(os.pathsep),
        PYTHONUNBUFFERED="1",
    )
    return env


class FaultSchedule:
    """Faults drawn from the seed, one at a time, with calm gaps between them; every
    kind comes once in each round of len(FAULT_KINDS) faults."""

    def __init__(self, seed: int, cache: RedisServer, proxy: TcpProxy) -> None:
        self.rng = random.Random(seed * 7919 + 1)
        self.cache = cache
        self.proxy = proxy
        self.records: list[dict[str, Any]] = []
        self.errors: list[str] = []
        self.stop = threading.Event()

    def run(self, deadline: float) -> None:
        try:
            kinds: list[str] = []
            while not self.stop.wait(self.rng.uniform(1.5, 4.0)):
                if time.monotonic() + 2.0 > deadline:
                    return
                if not kinds:  # every kind once, in a random order, then again
                    kinds = list(FAULT_KINDS)
                    self.rng.shuffle(kinds)
                self.inject(kinds.pop())
        except Exception as exc:  # the run is void, not silently fault-free
            self.errors.append(f"fault schedule: {type(exc).__name__}: {exc}")
        finally:
            self.proxy.pass_through()
            if self.cache.paused:
                self.cache.resume()
            if not self.cache.is_alive():
                self.cache.restart()

    def inject(self, kind: str) -> None:
        rng = self.rng
        start = time.monotonic()
        if kind == "kill-restart":
            self.cache.kill()
            time.sleep(rng.uniform(0.05, 0.5))
            self.cache.restart()
        elif kind == "pause":
            self.cache.pause()
            time.sleep(rng.uniform(0.1, 0.8))
            self.cache.resume()
        elif kind == "delay":
            self.proxy.delay(rng.uniform(0.05, 0.4))
            time.sleep(rng.uniform(0.2, 1.0))
            self.proxy.pass_through()
        elif kind == "reset":
            self.proxy.reset()
            time.sleep(rng.uniform(0.0, 0.2))
            self.proxy.pass_through()
        else:
            self.cache.execute("CLIENT", "KILL", "TYPE", "pubsub")
        self.records.append({"op": "fault", "kind": kind, "start": start, "end": time.monotonic()})


def run_history(
    seed: int,
    seconds: float,
    *,
    workers: int = 3,
    keys: int = 4,
    faults: bool = True,
    shared_backend: bool = True,
    directory: str | Path | None = None,
) -> tuple[Report, list[dict[str, Any]], Path]:
    """One run; the worker records and the fault log stay in the returned directory.

    ``shared_backend=False`` gives the workers no shared backend (each keeps its own L1,
    which no other process's invalidation reaches): a run the checker must fail.
    """
    from history_worker import GROUPS

    out = Path(directory or tempfile.mkdtemp(prefix=f"cachekit-history-{seed}-"))
    out.mkdir(parents=True, exist_ok=True)
    source = RedisServer(name="history-source")
    cache = RedisServer(name="history-cache")
    proxy = TcpProxy(cache.address)
    procs: list[subprocess.Popen[str]] = []
    schedule = FaultSchedule(seed, cache, proxy)
    schedule_thread: threading.Thread | None = None
    errors = [open(out / f"worker{i}.err", "w") for i in range(workers)]  # noqa: SIM115
    try:
        env = _worker_env(proxy.url if shared_backend else None, source.url)
        for index in range(workers):
            procs.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        str(HERE / "history_worker.py"),
                        "--index",
                        str(index),
                        "--seed",
                        str(seed),
                        "--seconds",
                        str(seconds),
                        "--keys",
                        str(keys),
                        "--out",
                        str(out / f"worker{index}.jsonl"),
                    ],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=errors[index],
                    text=True,
                    env=env,
                    cwd=str(ROOT),
                )
            )
        for index, proc in enumerate(procs):
            line = proc.stdout.readline() if proc.stdout else ""
            if line.strip() != "READY":
                raise RuntimeError(
                    f"worker {index} did not start: {line!r}; see {out}/worker{index}.err"
                )
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write("GO\n")
            proc.stdin.flush()
        deadline = time.monotonic() + seconds
        if faults:
            schedule_thread = threading.Thread(target=schedule.run, args=(deadline,), daemon=True)
            schedule_thread.start()
        for index, proc in enumerate(procs):
            try:
                proc.wait(timeout=max(1.0, deadline - time.monotonic()) + 60)
            except subprocess.TimeoutExpired:
                proc.kill()
            if proc.returncode != 0:
                raise RuntimeError(
                    f"worker {index} exited with {proc.returncode}; see {out}/worker{index}.err"
                )
        if schedule_thread is not None:
            schedule.stop.set()
            schedule_thread.join(30)
            if schedule.errors:
                raise RuntimeError("; ".join(schedule.errors))
        records: list[dict[str, Any]] = list(schedule.records)
        for index in range(workers):
            with open(out / f"worker{index}.jsonl", encoding="utf-8") as lines:
                records += [json.loads(line) for line in lines]
        client = source.client(decode_responses=True)
        try:
            for i in range(keys):
                value = client.get(f"src:k{i}")
                now = time.monotonic()
                records.append(
                    {
                        "op": "final",
                        "key": f"k{i}",
                        "version": int(value or 0),
                        "start": now,
                        "end": now,
                    }
                )
        finally:
            client.close()
        with open(out / "faults.jsonl", "w", encoding="utf-8") as log:
            for record in schedule.records:
                log.write(json.dumps(record) + "\n")
        return check(records, GROUPS), records, out
    finally:
        schedule.stop.set()  # no restart may start a server after the clean-up below
        if schedule_thread is not None:
            schedule_thread.join(30)
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(5)
        for file in errors:
            file.close()
        proxy.close()
        cache.cleanup(graceful=False)
        source.cleanup(graceful=False)


def report_text(report: Report, seed: int, seconds: float, workers: int, elapsed: float) -> str:
    text = f"seed {seed}, {seconds:g} s, {workers} workers ({elapsed:.1f} s with start-up)\n"
    text += report.summary()
    if report.violations:
        text += "\n" + "\n".join(str(v) for v in report.violations[:10])
        text += f"\nreplay: {replay_command(seed, seconds, workers)}"
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seed", type=int, default=None, help="first seed (default: random)")
    parser.add_argument("--seconds", type=float, default=30.0, help="length of one run")
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument(
        "--soak",
        type=float,
        default=0.0,
        help="keep running runs with new seeds for this many seconds in all",
    )
    args = parser.parse_args(argv)
    # Interrupted (Ctrl-C, or SIGTERM; a background job ignores SIGINT), the run still
    # stops its workers and Redis servers: the exception unwinds through run_history.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1, 10**6)
    began = time.monotonic()
    totals: dict[str, Any] = {
        "runs": 0,
        "operations": 0,
        "faults": 0,
        "violations": 0,
        "worst": 0.0,
    }
    failing: list[tuple[int, float]] = []
    while True:
        started = time.monotonic()
        seconds = args.seconds
        if args.soak:
            seconds = max(10.0, min(args.seconds, args.soak - (started - began)))
        report, _, out = run_history(seed, seconds, workers=args.workers)
        print(report_text(report, seed, seconds, args.workers, time.monotonic() - started))
        if report.ok:
            shutil.rmtree(out, ignore_errors=True)
        else:
            print(f"history: {out}", flush=True)
        print(flush=True)
        totals["runs"] += 1
        totals["operations"] += report.operations
        totals["faults"] += sum(report.faults.values())
        totals["violations"] += len(report.violations)
        totals["worst"] = max(totals["worst"], report.worst_staleness)
        if report.violations:
            failing.append((seed, seconds))
        if not args.soak or time.monotonic() - began >= args.soak - 10:
            break
        seed = random.SystemRandom().randrange(1, 10**6)
    if args.soak:
        print(
            f"soak: {totals['runs']} runs in {time.monotonic() - began:.0f} s; operations checked "
            f"{totals['operations']}; faults injected {totals['faults']}; violations "
            f"{totals['violations']}; worst staleness {totals['worst'] * 1000:.1f} ms"
        )
    for bad, seconds in failing:
        print(f"failing seed {bad}: {replay_command(bad, seconds, args.workers)}")
    return 1 if failing else 0


if __name__ == "__main__":
    sys.exit(main())
