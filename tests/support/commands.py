"""Running the commands of install tests: builds, fresh virtualenvs, pip, scripts."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path


def clean_environment() -> dict[str, str]:
    """This process's environment (pip's index and cache settings) minus cachekit's."""
    return {
        k: v
        for k, v in os.environ.items()
        if not (k.startswith(("CACHEKIT_", "PYTHON")) or k in ("REDIS_URL", "VIRTUAL_ENV"))
    } | {"PYTHONDONTWRITEBYTECODE": "1"}


def run_checked(*cmd: str | Path, **kwargs) -> subprocess.CompletedProcess[str]:
    """Run ``cmd`` in the clean environment; fail the test with its output if it fails."""
    done = subprocess.run(
        [str(c) for c in cmd],
        env=clean_environment(),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        **kwargs,
    )
    shown = " ".join(str(c) for c in cmd if "\n" not in str(c))
    assert done.returncode == 0, f"{shown} failed:\n{done.stdout}\n{done.stderr}"
    return done
