"""The test matrix: the whole suite on each supported Python, newest and oldest libraries.

    nox -l                                  list the legs
    nox -s "oldest(3.10)" "newest(3.13)"    what `make test` runs after the main suite
    nox                                     every leg (`make matrix`)
    nox -s "oldest(3.12)" -- tests/arrow    arguments after `--` go to pytest

Two legs per Python, each a fresh virtualenv under .nox/ built by uv, running the whole suite
with pytest-xdist (PYTEST_WORKERS workers; by default twice the CPUs, as `make test`):

* ``newest``: the four packages (editable, from this checkout) with the ``test`` and ``lint``
  dependency groups (tests/typing runs mypy), at the newest releases that install.
* ``oldest``: the same requirements resolved with ``--resolution lowest-direct``: every bound we
  declare (the packages' dependencies, the ``pandas`` extra of cachekit-arrow, the groups) is
  taken at its lower end, and only what those need is taken at its newest. ``--only-binary``
  makes "lowest" mean "the lowest release within our bounds that ships a wheel for this Python"
  (pandas 2.2.2 has none for 3.13, so 3.13's oldest leg gets 2.2.3): a user on that Python gets no
  older one either.

A leg whose interpreter is not on this machine is skipped with the reason, or fails with
``--error-on-missing-interpreters`` (nox's default when CI is set). Interpreters are found on PATH,
among the pyenv versions selected and, failing those, among the versions pyenv has installed but
not selected (a pyenv shim for those answers "command not found").
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import nox

nox.needs_version = ">=2025.5.1"
nox.options.default_venv_backend = "uv"
nox.options.download_python = "never"  # a missing Python is skipped (or fails on CI), never fetched
os.environ.setdefault("UV_PYTHON_DOWNLOADS", "never")

ROOT = Path(__file__).parent
PYTHONS = ["3.10", "3.11", "3.12", "3.13"]
PACKAGES = ["cachekit-core", "cachekit-redis", "cachekit-arrow[pandas]", "cachekit-crypto"]
# The suite needs the test group, and mypy from the lint group (tests/typing).
TEST_GROUP = nox.project.dependency_groups(
    nox.project.load_toml(ROOT / "pyproject.toml"), "test", "lint"
)


def _runs(executable: str) -> bool:
    try:
        probe = subprocess.run([executable, "-c", ""], capture_output=True, check=False)  # noqa: S603
    except OSError:
        return False
    return probe.returncode == 0


def _interpreter(version: str) -> str:
    """``version`` itself when nox can find it; else pyenv's installed, unselected X.Y, if any."""
    name = f"python{version}"
    found = shutil.which(name)
    if found and _runs(found):
        return version
    versions = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    candidates = [
        path
        for path in versions.glob(f"{version}.*/bin/{name}")
        if re.fullmatch(rf"{re.escape(version)}\.\d+", path.parent.parent.name) and _runs(str(path))
    ]
    if not candidates:
        return version  # nox reports it missing
    return str(max(candidates, key=lambda path: int(path.parent.parent.name.rsplit(".", 1)[1])))


INTERPRETERS = [_interpreter(version) for version in PYTHONS]


def _run_suite(session: nox.Session, *resolution: str) -> None:
    # pip comes first and on its own: the suite's wheel-building tests call `python -m pip`, and
    # pip is nobody's declared dependency, so it must not take part in a lowest resolution.
    session.install("pip")
    editables = [arg for package in PACKAGES for arg in ("-e", f"./{package}")]
    session.install(*resolution, *editables, *TEST_GROUP)
    session.run("uv", "pip", "list", "--python", session.virtualenv.location, external=True)
    workers = os.environ.get("PYTEST_WORKERS") or str(2 * (os.cpu_count() or 1))
    session.run("python", "-m", "pytest", "-n", workers, "--dist", "loadgroup", *session.posargs)


@nox.session
@nox.parametrize("python", INTERPRETERS, ids=PYTHONS)
def newest(session: nox.Session) -> None:
    """The whole suite with the newest releases of everything."""
    _run_suite(session)


@nox.session
@nox.parametrize("python", INTERPRETERS, ids=PYTHONS)
def oldest(session: nox.Session) -> None:
    """The whole suite with every declared lower bound (wheels only)."""
    _run_suite(session, "--resolution", "lowest-direct", "--only-binary", ":all:")
