"""A fresh clone, with nothing beside it, passes its own tests.

A user clones the repository into an empty directory: no ``../shared`` (where CI
keeps the user's troubleshooting guide), no virtualenv, nothing else. These tests
copy exactly the files a clone has (``git ls-files``, as they are in the work tree)
into a directory of their own and run pytest there:

* collecting the whole suite must succeed: a module that reads a file outside the
  repository at import time would break a user's ``make test`` before any test ran;
* the tests that read the guide (tests/docs) pass with the guide reported as
  skipped and why, and fail instead when ``CACHEKIT_REQUIRE_SEED_GUIDE=1`` asks for it;
* no other test file names a path beside the repository.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
# The one test module allowed to look beside the repository, and only for the guide.
GUIDE_TESTS = "tests/docs/test_seed_guide.py"
ALLOWED = {GUIDE_TESTS, "tests/workspace/test_fresh_clone.py"}  # this one names it in prose


def _tracked_files() -> list[str]:
    out = subprocess.run(
        ["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True
    ).stdout.decode()
    return [name for name in out.split("\0") if name and (REPO / name).is_file()]


@pytest.fixture(scope="module")
def clone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """What ``git clone`` of this work tree gives, alone in an otherwise empty directory."""
    root = tmp_path_factory.mktemp("lonely") / "cachekit"
    for name in _tracked_files():
        target = root / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, target)
    assert sorted(p.name for p in root.parent.iterdir()) == ["cachekit"]
    return root


def _pytest(
    clone: Path, *args: str, require_guide: bool = False
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CACHEKIT_", "PYTEST_"))}
    env.pop("REDIS_URL", None)
    if require_guide:
        env["CACHEKIT_REQUIRE_SEED_GUIDE"] = "1"
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args],
        cwd=clone,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_the_whole_suite_collects_in_a_fresh_clone(clone: Path):
    run = _pytest(clone, "--collect-only", "-q")
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    assert re.search(r"^\d+ tests collected", run.stdout, re.MULTILINE), run.stdout[-2000:]


def test_the_docs_tests_pass_in_a_fresh_clone_and_skip_the_missing_guide(clone: Path):
    run = _pytest(clone, "-rs", "tests/docs")
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    assert "failed" not in run.stdout.splitlines()[-1], run.stdout[-2000:]
    assert "the user's troubleshooting guide is not at" in run.stdout, run.stdout[-2000:]
    assert "only CI has a copy of shared/ beside the checkout" in run.stdout


def test_ci_turns_the_missing_guide_into_a_failure(clone: Path):
    run = _pytest(clone, "-q", GUIDE_TESTS, require_guide=True)
    assert run.returncode == 1, run.stdout[-4000:]
    assert "CACHEKIT_REQUIRE_SEED_GUIDE=1 requires it" in run.stdout


def test_ci_sets_the_variable_that_requires_the_guide():
    assert "export CACHEKIT_REQUIRE_SEED_GUIDE=1" in (REPO / ".ci" / "run").read_text()


def test_no_other_test_module_reads_beside_the_repository():
    # The repository's parent, reached by name, by "..", or as the parent of a root.
    outside = re.compile(
        r"\.\./shared|/ *[\"']shared[\"']|[\"']shared[\"'] */|(ROOT|REPO)\.parent\b"
    )
    offenders = []
    for name in _tracked_files():
        if not (name.startswith("tests/") and name.endswith(".py")) or name in ALLOWED:
            continue
        for number, line in enumerate((REPO / name).read_text().splitlines(), 1):
            if outside.search(line):
                offenders.append(f"{name}:{number}: {line.strip()}")
    assert not offenders, "test code that looks beside the repository:\n" + "\n".join(offenders)
