"""Run cachekit's benchmarks and print figures and ratios against same-run baselines.

    python bench/run.py                   every benchmark
    python bench/run.py l1 import         the named ones
    python bench/run.py --quick           a short smoke run (fewer, shorter repeats)
    python bench/run.py --json out.json   also write the results as JSON
    python bench/run.py --check           exit 1 when a target is missed

The exit status is 0 when every benchmark ran, whether or not its targets were met,
unless --check is given; 2 when a benchmark failed to run or a name is unknown.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import os
import platform
import sys
import time
import traceback
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from harness import Section  # noqa: E402

#: Benchmark name -> module, in the order they run.
BENCHMARKS = {
    "l1": "bench_l1",
    "memory": "bench_memory",
    "threads": "bench_threads",
    "import": "bench_import",
    "redis": "bench_redis",
    "crypto": "bench_crypto",
    "arrow": "bench_arrow",
}


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bench/run.py",
        description="cachekit benchmarks: ratios against baselines measured in the same run.",
    )
    parser.add_argument(
        "names",
        nargs="*",
        metavar="NAME",
        help=f"benchmarks to run (default: all): {', '.join(BENCHMARKS)}",
    )
    parser.add_argument("--quick", action="store_true", help="a short smoke run")
    parser.add_argument("--json", metavar="PATH", help="write the results as JSON to PATH")
    parser.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    parser.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    args = parser.parse_args(argv)
    unknown = [n for n in args.names if n not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark {unknown[0]!r}; choose from {', '.join(BENCHMARKS)}")
    return args


def _run_one(name: str, quick: bool) -> Section:
    start = time.perf_counter()
    try:
        module = importlib.import_module(BENCHMARKS[name])
        section: Section = module.run(quick)
    except Exception as exc:
        traceback.print_exc()
        section = Section(name, "failed to run", error=f"{type(exc).__name__}: {exc}")
    section.seconds = time.perf_counter() - start
    return section


def _summary(sections: list[Section]) -> tuple[str, int, int, int]:
    rows = [(s.name, ln) for s in sections for ln in s.lines if ln.is_target]
    met = sum(1 for _, ln in rows if ln.passed)
    failed = sum(1 for s in sections if s.error)
    width = max((len(ln.name) for _, ln in rows), default=0)
    out = ["== summary =="]
    for bench, ln in rows:
        out.append(
            f"   {ln.status}  {bench:<8} {ln.name:<{width}}  {ln.value_text():>10}  "
            f"{ln.target_text()}"
        )
    out.extend(f"   ERROR {s.name:<8} {s.error}" for s in sections if s.error)
    out.append(
        f"   {met} of {len(rows)} targets met"
        + (f", {failed} benchmark(s) failed to run" if failed else "")
    )
    return "\n".join(out), met, len(rows), failed


def _load() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        return None


def _environment() -> dict[str, Any]:
    import cachekit

    return {
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "cachekit": cachekit.__version__,
        "load_average_at_start": _load(),
    }


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    if args.list:
        for name, module in BENCHMARKS.items():
            print(f"{name:<8} {importlib.import_module(module).TITLE}")
        return 0
    names = args.names or list(BENCHMARKS)
    env = _environment()
    print(
        f"cachekit {env['cachekit']} benchmarks on {env['implementation']} {env['python']}, "
        f"{env['platform']}, {env['cpus']} CPUs, load average "
        f"{env['load_average_at_start']}{' (quick run)' if args.quick else ''}\n",
        flush=True,
    )
    sections = []
    for name in names:
        section = _run_one(name, args.quick)
        sections.append(section)
        print(section.render() + "\n", flush=True)
    text, met, total, failed = _summary(sections)
    env["load_average_at_end"] = _load()
    print(text, flush=True)
    busiest = max((x for x in (env["load_average_at_start"], _load()) if x is not None), default=0)
    if busiest > 0.5 * (os.cpu_count() or 1):
        print(
            f"   note: the machine was busy (load average up to {busiest:.2f} on "
            f"{env['cpus']} CPUs); figures are noisier than on an idle machine, "
            "rerun before acting on a MISS",
            flush=True,
        )

    if args.json:
        payload = {
            "environment": env,
            "quick": args.quick,
            "benchmarks": [
                {
                    **dataclasses.asdict(s),
                    "lines": [{**dataclasses.asdict(ln), "status": ln.status} for ln in s.lines],
                }
                for s in sections
            ],
            "summary": {"targets": total, "met": met, "failed_to_run": failed},
        }
        path = Path(args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(payload, indent=2) + "\n")
        print(f"\nresults written to {path}")

    if failed:
        return 2
    if args.check and met < total:
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
