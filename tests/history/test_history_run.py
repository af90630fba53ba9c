"""A randomized, multi-process history with faults against real Redis, checked whole.

Several worker processes (threads and asyncio tasks each) read through cached
functions, change the source of truth and invalidate, while Redis is killed and
restarted, paused, slowed down and cut off (history_run.py); the checker
(history_checker.py) then verifies the whole history. ``make soak`` runs the same with
random seeds for longer. A seed that ever failed is added to REGRESSION_SEEDS.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from history_run import FAULT_KINDS, replay_command, report_text, run_history

# Both tests start processes and burn CPU: keep them on one xdist worker, one at a time.
pytestmark = pytest.mark.xdist_group("history")

SECONDS = 20.0
WORKERS = 3
SEED = 12
# Seeds that once found a violation, replayed in every run of the suite.
REGRESSION_SEEDS: list[int] = []


@pytest.mark.timeout(240)
@pytest.mark.parametrize("seed", [SEED, *REGRESSION_SEEDS])
def test_a_random_history_with_faults_keeps_every_rule(
    seed: int,
    tmp_path: Path,
    redis_binaries_installed: Any,
    report_figures: Any,
) -> None:
    began = time.monotonic()
    report, _, _ = run_history(seed, SECONDS, workers=WORKERS, directory=tmp_path)
    elapsed = time.monotonic() - began
    report_figures(
        "history checker: "
        + report_text(report, seed, SECONDS, WORKERS, elapsed).replace("\n", "; ")
    )
    assert report.reads > 1000 and report.invalidations > 100, report.summary()
    assert report.invalidations > report.uncertain_invalidations, "no invalidation was checked"
    assert len(report.faults) == len(FAULT_KINDS), report.summary()  # every kind of fault
    assert report.ok, (
        "\n".join(str(v) for v in report.violations[:10])
        + f"\nreplay: {replay_command(seed, SECONDS, WORKERS)}; history in {tmp_path}"
    )


@pytest.mark.timeout(120)
def test_the_checker_fails_processes_whose_l1_no_invalidation_reaches(
    tmp_path: Path, redis_binaries_installed: Any
) -> None:
    # Without a shared backend every process keeps its own L1, and another process's
    # invalidation never reaches it: the checker must see stale reads.
    report, _, _ = run_history(
        SEED, 4.0, workers=2, faults=False, shared_backend=False, directory=tmp_path
    )
    assert report.violations, report.summary()
    assert {v.rule for v in report.violations} == {"stale"}, report.summary()
