"""What ``import cachekit`` costs a process: wall time and the modules it pulls in.

Time: ``python -c pass`` and ``python -c "import cachekit"`` run as child processes,
interleaved (pass, import, import, pass, ...), and the target is the difference of
their minimums (the runs a busy machine disturbed least; the difference of medians and
the median of paired differences are printed alongside). Both sides start from
bytecode: cachekit's sources are compiled with compileall first and the children run
without PYTHONDONTWRITEBYTECODE (which would otherwise make every cachekit import
compile from source while the standard library loads its .pyc files).

Modules: a child imports cachekit, then decorates and calls functions, and reports
which watched packages are in ``sys.modules`` at each step. The heavy optional
dependencies (redis, pyarrow, pandas, cryptography) are a target; pluggy, asyncio,
typing, logging, inspect and concurrent.futures are information (they cost start-up
time but are not forbidden). The time that decorating and the first calls add on top of
the import is reported too, for information.
"""

from __future__ import annotations

import ast
import compileall
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

from harness import Section, median

NAME = "import"
TITLE = "import cachekit: added start-up time and modules pulled in"

ROOT = Path(__file__).resolve().parent.parent
ADDED_MS_TARGET = 25.0
HEAVY = ("redis", "pyarrow", "pandas", "cryptography")
LIGHT = ("pluggy", "asyncio", "typing", "logging", "inspect", "concurrent.futures")
FIRST_CALL = (
    "import cachekit\n"
    "@cachekit.cache(backend=None)\n"
    "def user(user_id):\n"
    "    return {'id': user_id, 'roles': ['a', 'b']}\n"
    "user(1)\n"
    "user(1)\n"
)

_PROBE = """
import sys
WATCH = {watch!r}
def present():
    names = list(sys.modules)
    return [w for w in WATCH if any(m == w or m.startswith(w + ".") for m in names)]
steps = []
import cachekit
steps.append(("import cachekit", present()))
from cachekit import cache
@cache(backend=None)
def user(user_id):
    return {{"id": user_id, "roles": ["a", "b"]}}
steps.append(("@cache(backend=None) decorates", present()))
user(1)
steps.append(("first call (miss)", present()))
user(1)
steps.append(("second call (hit)", present()))
@cache
def double(user_id):
    return user_id * 2
double(1)
double(1)
steps.append(("@cache, no backend in env: decorate, miss, hit", present()))
print(repr(steps))
"""


def child_env() -> dict[str, str]:
    """The parent's environment without the variables that would skew the children."""
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    for name in list(env):
        if name.startswith("CACHEKIT_") or name == "REDIS_URL":
            del env[name]
    return env


def compile_sources() -> None:
    """Write bytecode for every workspace package's sources (quietly, once)."""
    for src in sorted(ROOT.glob("cachekit-*/src")):
        compileall.compile_dir(str(src), quiet=1)


def _run_child(code: str, env: dict[str, str]) -> tuple[float, float]:
    """(wall ms, CPU ms) of one ``python -c code`` child, start to exit."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter_ns()
    subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wall = (time.perf_counter_ns() - start) / 1e6
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime) * 1000
    return wall, cpu


def _import_profile(env: dict[str, str], top: int = 6) -> list[tuple[str, int]]:
    """The largest self times (us) of modules that ``import cachekit`` adds."""

    def table(code: str) -> dict[str, int]:
        proc = subprocess.run(
            [sys.executable, "-X", "importtime", "-c", code],
            env=env,
            check=True,
            capture_output=True,
            text=True,
        )
        rows: dict[str, int] = {}
        for line in proc.stderr.splitlines():
            if not line.startswith("import time:") or "|" not in line:
                continue
            parts = [p.strip() for p in line[len("import time:") :].split("|")]
            if parts[0].isdigit():
                rows[parts[2]] = int(parts[0])
        return rows

    base = table("pass")
    added = {m: us for m, us in table("import cachekit").items() if m not in base}
    return sorted(added.items(), key=lambda kv: kv[1], reverse=True)[:top]


def run(quick: bool) -> Section:
    pairs = 15 if quick else 31
    sec = Section(
        NAME,
        TITLE,
        method=(
            f"ms per child process (wall clock, and CPU = user + system), min of {pairs} "
            "interleaved runs each (median in brackets), bytecode compiled, "
            "PYTHONDONTWRITEBYTECODE unset"
        ),
    )
    env = child_env()
    compile_sources()
    for _ in range(2):  # warm the OS caches and any bytecode still missing
        _run_child("pass", env)
        _run_child("import cachekit", env)

    bare: list[tuple[float, float]] = []
    with_ck: list[tuple[float, float]] = []
    first_call: list[tuple[float, float]] = []
    for i in range(pairs):
        runs = [("pass", bare), ("import cachekit", with_ck), (FIRST_CALL, first_call)]
        for code, into in runs if i % 2 == 0 else reversed(runs):
            into.append(_run_child(code, env))
    bare_wall, bare_cpu = [w for w, _ in bare], [c for _, c in bare]
    ck_wall, ck_cpu = [w for w, _ in with_ck], [c for _, c in with_ck]
    sec.figure("python -c pass", min(bare_wall), median(bare_wall), "ms wall")
    sec.figure('python -c "import cachekit"', min(ck_wall), median(ck_wall), "ms wall")
    sec.figure(
        "  + decorate, miss, hit",
        min(w for w, _ in first_call),
        median([w for w, _ in first_call]),
        "ms wall",
    )
    sec.figure("python -c pass", min(bare_cpu), median(bare_cpu), "ms CPU")
    sec.figure('python -c "import cachekit"', min(ck_cpu), median(ck_cpu), "ms CPU")
    added = median(ck_wall) - median(bare_wall)
    paired = median([b - a for a, b in zip(bare_wall, ck_wall, strict=True)])
    # The target is best against best: waiting for a CPU only ever adds time, so the
    # fastest runs are the ones a busy machine disturbed least (medians alongside).
    sec.line(
        "delta",
        "import cachekit adds, wall (min - min)",
        min(ck_wall) - min(bare_wall),
        unit="ms",
        limit=ADDED_MS_TARGET,
        note=f"median - median {added:.1f} ms, paired median {paired:.1f} ms",
    )
    sec.line(
        "delta",
        "import cachekit adds, CPU (median - median)",
        median(ck_cpu) - median(bare_cpu),
        unit="ms",
        note="user + system time of the child: insensitive to waiting for a CPU",
    )
    sec.line(
        "delta",
        "@cache(backend=None) + first miss + hit add, wall",
        median([w for w, _ in first_call]) - median(ck_wall),
        unit="ms",
        note="over import cachekit: the lazy imports of the first call",
    )
    sec.line("ratio", "import cachekit / python -c pass, wall", median(ck_wall) / median(bare_wall))

    profile = _import_profile(env)
    if profile:
        sec.notes.append(
            "largest self import times added by cachekit (-X importtime): "
            + ", ".join(f"{m} {us / 1000:.1f} ms" for m, us in profile)
        )

    proc = subprocess.run(
        [sys.executable, "-c", _PROBE.format(watch=HEAVY + LIGHT)],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    steps: list[tuple[str, list[str]]] = ast.literal_eval(proc.stdout.strip())
    for module in HEAVY + LIGHT:
        loaded_at = [step for step, present in steps if module in present]
        sec.line(
            "check",
            f"{module} not in sys.modules",
            not loaded_at,
            unit="",
            limit=True if module in HEAVY else None,
            op="==",
            note=f"loaded by: {loaded_at[0]}" if loaded_at else "",
        )
    sec.notes.append("steps checked: " + "; ".join(step for step, _ in steps))
    return sec
