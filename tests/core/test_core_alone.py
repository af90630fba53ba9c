"""cachekit-core installs and works on its own, and never imports the extras' heavy libraries.

The slow test builds a wheel from a copy of cachekit-core, installs it (not
editable) into a fresh virtualenv whose only other packages are pluggy and msgpack
from the package index, and runs a script there. The wheel is built with the
workspace's setuptools instead of an isolated build environment, and the virtualenv
is created without pip (the workspace's pip installs into it with ``--python``):
the result is the same installed package, in about half the time.

The fast test checks the same import rule in the development environment, where the
extras and their libraries may well be installed: importing cachekit, calling a
cached function and loading every installed plugin must still import none of them.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from commands import run_checked

REPO = Path(__file__).resolve().parents[2]
HEAVY = ("redis", "pyarrow", "pandas", "cryptography")

_CHECK_IMPORTS = f"""
import sys

HEAVY = {HEAVY!r}


def heavy_modules():
    return sorted(m for m in sys.modules if m.split(".")[0] in HEAVY)


def no_heavy(stage):
    found = heavy_modules()
    assert not found, f"{{stage}} imported {{found}}"
"""

_ALONE = """
import asyncio
import importlib.metadata
import json

no_heavy("python startup")
import cachekit
from cachekit import cache

no_heavy("import cachekit")

calls = []


@cache(ttl=60)
def load(user_id):
    calls.append(user_id)
    return {"id": user_id, "tags": ["a"]}


first, second = load(1), load(1)
assert first == second == {"id": 1, "tags": ["a"]}, (first, second)
assert calls == [1], calls
assert load.cache_info().hits == 1, load.cache_info()


@cache
async def aload(user_id):
    calls.append(("async", user_id))
    return user_id * 2


assert asyncio.run(aload(4)) == asyncio.run(aload(4)) == 8
assert calls.count(("async", 4)) == 1, calls
no_heavy("calling cached functions")

from cachekit import plugins

reg = plugins.registry()
assert [p.name for p in reg.plugins] == ["cachekit"], reg.plugins
assert not reg.errors()
no_heavy("cachekit.plugins.registry()")

try:
    from cachekit.serializers import ArrowSerializer
except ImportError as exc:
    arrow_error = str(exc)
else:
    raise AssertionError(f"ArrowSerializer resolved to {ArrowSerializer!r} without cachekit-arrow")
assert "cachekit-arrow" in arrow_error and "pip install cachekit-arrow" in arrow_error, arrow_error


@cache(backend="redis://localhost:6379/0")
def remote(x):
    return x


try:
    remote(1)
except ImportError as exc:
    redis_error = str(exc)
else:
    raise AssertionError("a redis:// backend worked without cachekit-redis")
expected = "backend scheme 'redis' is provided by cachekit-redis: pip install cachekit-redis"
assert expected in redis_error, redis_error


def decorate_and_call_secure():
    @cache.secure(ttl=60)
    def secret(x):
        return x

    return secret(1)


try:
    decorate_and_call_secure()  # raises when decorating (today) or at the first call
except ImportError as exc:
    crypto_error = str(exc)
else:
    raise AssertionError("@cache.secure worked without cachekit-crypto")
assert "pip install cachekit-crypto" in crypto_error, crypto_error

import cachekit.testing  # usable by plugin authors without pytest installed

no_heavy("everything above")
assert "pytest" not in sys.modules

installed = sorted(d.metadata["Name"].lower() for d in importlib.metadata.distributions())
print(json.dumps({"installed": installed, "cachekit": cachekit.__file__}))
"""


@pytest.mark.slow
def test_cachekit_core_installs_and_works_alone(tmp_path: Path):
    source = tmp_path / "cachekit-core"
    shutil.copytree(
        REPO / "cachekit-core",
        source,
        ignore=shutil.ignore_patterns("build", "dist", "*.egg-info", "__pycache__"),
    )
    pip = (sys.executable, "-m", "pip", "--disable-pip-version-check", "--quiet")
    run_checked(
        *pip, "wheel", "--no-deps", "--no-build-isolation", "-w", tmp_path / "wheels", source
    )
    (wheel,) = (tmp_path / "wheels").glob("cachekit_core-*.whl")

    venv = tmp_path / "venv"
    run_checked(sys.executable, "-m", "venv", "--without-pip", venv)
    python = venv / "bin" / "python"
    run_checked(*pip, "--python", python, "install", wheel)

    done = run_checked(python, "-c", _CHECK_IMPORTS + textwrap.dedent(_ALONE), cwd=tmp_path)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["installed"] == ["cachekit-core", "msgpack", "pluggy"]
    assert result["cachekit"].startswith(str(venv))  # the installed copy, not the workspace

    listing = run_checked(venv / "bin" / "cachekit", "plugins", "--json", cwd=tmp_path)
    assert [p["name"] for p in json.loads(listing.stdout)] == ["cachekit"]

    demo = ("demo", "--delay", "0", "--keys", "1", "--no-progress")
    shown = run_checked(venv / "bin" / "cachekit", *demo, cwd=tmp_path).stdout
    # The next step names an install that works today, from a checkout, too.
    assert 'pip install --find-links dist "cachekit-core[redis]"' in shown, shown


def test_loading_every_installed_plugin_imports_no_heavy_library(tmp_path: Path):
    code = _CHECK_IMPORTS + textwrap.dedent("""
        import cachekit
        from cachekit import cache, plugins

        @cache
        def f(x):
            return x

        f(1)
        reg = plugins.registry()
        no_heavy(f"loading the plugins {[p.name for p in reg.plugins]}")
    """)
    env = {"PATH": os.environ.get("PATH", ""), "PYTHONDONTWRITEBYTECODE": "1"}
    done = subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
