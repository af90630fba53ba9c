"""`make dist` builds installable packages, and the README's install command works.

The packages are not on any package index yet, so `pip install "cachekit-core[all]"`
cannot resolve its extras there. What works today is installing from the built
distributions: `pip install --find-links dist "cachekit-core[all]"`. These tests
build dist/ exactly as `make dist` does (scripts/build_dist.py, into a temporary
directory), install from it into a fresh virtualenv (regular installs, not editable;
third-party libraries from the index), and make a Redis-backed call against a
private redis-server, an Arrow call and a `@cache.secure` call there.
"""

from __future__ import annotations

import json
import re
import sys
import tarfile
import textwrap
import zipfile
from pathlib import Path

import pytest
from commands import run_checked

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("cachekit-core", "cachekit-redis", "cachekit-arrow", "cachekit-crypto")
sys.path.insert(0, str(REPO / "scripts"))
import build_dist  # noqa: E402

VERSION = build_dist.project("cachekit-core")["version"]


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    done = run_checked(sys.executable, REPO / "scripts" / "build_dist.py", out)
    assert "metadata checked" in done.stdout
    return out


def test_make_dist_runs_the_build_script():
    text = (REPO / "Makefile").read_text()
    assert "dist: $(STAMP)\n\t$(BIN)/python scripts/build_dist.py dist\n" in text


def test_the_readme_installs_from_dist_with_extras_that_exist():
    readme = (REPO / "README.md").read_text()
    commands = re.findall(r'^pip install --find-links dist "([\w-]+)\[(\w+)\]"', readme, re.M)
    assert ("cachekit-core", "redis") in commands and ("cachekit-core", "all") in commands
    for package, extra in commands:
        extras = build_dist.project(package).get("optional-dependencies", {})
        assert extra in extras, f"README installs {package}[{extra}], which does not exist"


def test_every_package_has_a_wheel_and_an_sdist(dist: Path):
    names = sorted(p.name for p in dist.iterdir())
    expected = []
    for package in PACKAGES:
        stem = package.replace("-", "_")
        expected += [f"{stem}-{VERSION}-py3-none-any.whl", f"{stem}-{VERSION}.tar.gz"]
    assert names == sorted(expected)


def test_the_metadata_check_refuses_what_a_release_must_not_have(dist: Path):
    (wheel,) = dist.glob("cachekit_redis-*.whl")
    info = f"cachekit_redis-{VERSION}.dist-info/METADATA"
    with zipfile.ZipFile(wheel) as zf:
        metadata = zf.read(info)
    assert build_dist.check_metadata("cachekit-redis", metadata, "ok", VERSION) == []

    broken = metadata.replace(b"License-Expression: MIT", b"License-Expression: not a licence")
    assert any(
        "invalid metadata" in p
        for p in build_dist.check_metadata("cachekit-redis", broken, "bad", VERSION)
    )
    unpinned = metadata.replace(b"Requires-Dist: cachekit-core>=", b"Requires-Dist: cachekit-core<")
    assert any(
        "must require cachekit-core" in p
        for p in build_dist.check_metadata("cachekit-redis", unpinned, "bad", VERSION)
    )
    assert build_dist.check_metadata("cachekit-redis", metadata, "old", "9.9.9")


def test_the_sdists_carry_what_a_rebuild_needs(dist: Path):
    for package in PACKAGES:
        (sdist,) = dist.glob(f"{package.replace('-', '_')}-*.tar.gz")
        with tarfile.open(sdist) as tf:
            names = {n.split("/", 1)[1] for n in tf.getnames() if "/" in n}
        assert {"pyproject.toml", "README.md", "LICENSE", "PKG-INFO"} <= names, names


_USE_EVERYTHING = """
import importlib.metadata
import json
import os
import sys

import pyarrow as pa
import redis

import cachekit
import cachekit_arrow
import cachekit_crypto
import cachekit_redis
from cachekit import cache
from cachekit.serializers import ArrowSerializer

url = sys.argv[1]
raw = redis.Redis.from_url(url)
calls = []


@cache(backend=url, ttl=60, namespace="from-dist")
def profile(user_id):
    calls.append(("profile", user_id))
    return {"id": user_id, "tags": ["a", "b"]}


assert profile(1) == profile(1) == {"id": 1, "tags": ["a", "b"]}
assert raw.exists(profile.cache_key(1)), "the value did not reach Redis"


@cache(backend=url, ttl=60, serializer=ArrowSerializer(), l1=False)
def frame(rows):  # no L1: the second call decodes the Arrow stream from Redis
    calls.append(("frame", rows))
    return pa.table({"n": list(range(rows)), "s": [str(i) for i in range(rows)]})


assert frame(3).equals(frame(3))
assert frame(3).equals(pa.table({"n": [0, 1, 2], "s": ["0", "1", "2"]}))
assert frame.cache_info().l2_hits == 2, frame.cache_info()
assert raw.get(frame.cache_key(3)) is not None

os.environ["CACHEKIT_MASTER_KEY"] = "ab" * 32


@cache.secure(backend=url, ttl=60)
def secret(user_id):
    calls.append(("secret", user_id))
    return {"ssn": "078-05-1120"}


assert secret(7) == secret(7) == {"ssn": "078-05-1120"}
stored = raw.get(secret.cache_key(7))
assert stored is not None and b"078-05-1120" not in stored, stored

assert calls == [("profile", 1), ("frame", 3), ("secret", 7)], calls
# pandas is cachekit-arrow's optional extra: [all] does not pull it in.
assert "pandas" not in sys.modules
modules = (cachekit, cachekit_redis, cachekit_arrow, cachekit_crypto)
files = {m.__name__: m.__file__ for m in modules}
direct = {
    name: importlib.metadata.distribution(name).read_text("direct_url.json")
    for name in ("cachekit-core", "cachekit-redis", "cachekit-arrow", "cachekit-crypto")
}
print(json.dumps({"prefix": sys.prefix, "files": files, "direct_url": direct}))
"""


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_the_readme_install_from_dist_works_in_a_fresh_virtualenv(
    dist: Path, tmp_path: Path, redis_url: str
):
    venv = tmp_path / "venv"
    run_checked(sys.executable, "-m", "venv", "--without-pip", venv)
    python = venv / "bin" / "python"
    # The README's command, run with the workspace's pip for the fresh interpreter.
    pip = (sys.executable, "-m", "pip", "--disable-pip-version-check", "--quiet")
    run_checked(*pip, "--python", python, "install", "--find-links", dist, "cachekit-core[all]")

    done = run_checked(python, "-c", textwrap.dedent(_USE_EVERYTHING), redis_url)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    site = str(venv)
    assert all(path.startswith(site) for path in result["files"].values()), result
    # Installed from the wheels, not editable and not from a URL or a directory.
    assert result["direct_url"] == dict.fromkeys(PACKAGES), result

    listing = run_checked(venv / "bin" / "cachekit", "plugins", "--json")
    names = {p["name"] for p in json.loads(listing.stdout)}
    assert {"cachekit", "redis", "arrow", "crypto"} <= names, names
