"""The benchmarks still run: ``bench/run.py --quick`` exits 0 and prints its ratios.

Only that they run and report; no timing threshold here (timings belong to the
benchmark, whose targets are printed as PASS/MISS, not to the test suite).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RUN = ROOT / "bench" / "run.py"

# One worker runs the whole module, so the quick benchmark runs once.
pytestmark = pytest.mark.xdist_group(name="bench-smoke")


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CACHEKIT_")}
    env.pop("REDIS_URL", None)
    return subprocess.run(
        [sys.executable, str(RUN), *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=110,
    )


@pytest.fixture(scope="module")
def quick_run(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[subprocess.CompletedProcess[str], dict]:
    out = tmp_path_factory.mktemp("bench") / "results.json"
    proc = _run("--quick", "--json", str(out))
    return proc, json.loads(out.read_text()) if out.exists() else {}


def test_quick_run_exits_zero_whatever_the_timings(quick_run) -> None:
    proc, _ = quick_run
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_quick_run_prints_every_ratio_against_its_baseline(quick_run) -> None:
    proc, _ = quick_run
    ratio_lines = [ln for ln in proc.stdout.splitlines() if ln.strip().startswith("ratio ")]
    text = "\n".join(ratio_lines)
    assert "cachekit L1 hit / cachetools(lock), dict" in text
    assert "cachekit L1 hit / cachetools(lock), int" in text
    assert "cachekit L1 hit / cachetools(lock), str" in text
    assert "cachekit / cachetools(TTLCache) memory per entry, int" in text
    assert "cachekit: 8 threads / 1 thread throughput" in text
    assert "cachetools(lock): 8 threads / 1 thread throughput" in text
    assert "import cachekit / python -c pass" in text
    assert "L2 hit (l1=False) / raw GET + unpackb, small" in text
    assert "miss, l1=False, no lock / raw miss" in text
    assert "miss, l1=True, no lock / raw miss" in text
    assert "L1 hit in front of Redis / L1-only hit" in text
    assert "secure / plain L2 hit (l1=False), 1 KB" in text
    assert "secure / plain miss (l1=False, no lock), 1 KB" in text
    assert "secure / plain L1 hit in front of Redis, small" in text
    assert "arrow / pickle 5 round trip, numeric" in text
    assert "arrow / pickle 5 round trip, strings" in text
    assert "msgpack records / arrow round trip, numeric" in text
    assert "msgpack records / arrow round trip, strings" in text
    assert "L2 hit (l1=False) / raw GET + deserialize, numeric" in text
    assert "import cachekit adds, wall" in proc.stdout
    assert "L2 hit: cachekit adds per call, small" in proc.stdout
    assert "cachekit L1 memory per entry over the value, int" in proc.stdout
    assert all(re.search(r" \d+\.\d\dx ", line) for line in ratio_lines)


def test_quick_run_reports_each_target_with_pass_or_miss(quick_run) -> None:
    proc, results = quick_run
    assert "== summary ==" in proc.stdout
    benchmarks = {b["name"]: b for b in results["benchmarks"]}
    assert set(benchmarks) == {"l1", "memory", "threads", "import", "redis", "crypto", "arrow"}
    for bench in benchmarks.values():
        assert bench["error"] is None
        assert any(line["limit"] is not None for line in bench["lines"])
        for line in bench["lines"]:
            assert line["status"] in {"PASS", "MISS", "info"}
    summary = results["summary"]
    assert summary["failed_to_run"] == 0
    assert summary["targets"] >= 16


def test_round_trips_per_miss_are_counted_on_the_client(quick_run) -> None:
    proc, results = quick_run
    redis = next(b for b in results["benchmarks"] if b["name"] == "redis")
    lines = {line["name"]: line for line in redis["lines"]}
    # the counter's own sanity check: a raw GET + SET is two sends
    assert lines["round trips per call: raw miss (GET + SET PX)"]["value"] == 2
    assert lines["round trips per call: raw miss with SET NX lock + Lua unlock"]["value"] == 4
    assert lines["round trips per call: cachekit L2 hit (l1=False)"]["value"] == 1
    default = lines["round trips per call: cachekit miss, l1=True, lock (default)"]
    assert default["limit"] == 2 and default["op"] == "=="


def test_copy_safety_and_module_checks_are_reported(quick_run) -> None:
    proc, _ = quick_run
    assert "cachekit: a mutated result stays private" in proc.stdout
    for module in ("redis", "pyarrow", "pandas", "cryptography", "typing", "logging"):
        assert f"{module} not in sys.modules" in proc.stdout
    assert "entries in Redis checked: ciphertext for @cache.secure" in proc.stdout


def test_an_unknown_benchmark_name_is_a_usage_error() -> None:
    proc = _run("no-such-benchmark")
    assert proc.returncode == 2
    assert "unknown benchmark" in proc.stderr
