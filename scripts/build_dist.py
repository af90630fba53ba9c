"""Build the sdist and wheel of every workspace package, then check what was built.

    python scripts/build_dist.py [OUTDIR]        (default: dist/; `make dist` runs this)

Each package is copied to a temporary directory and built there with `python -m
build --no-isolation` (the workspace's setuptools, so no index is needed), the wheel
from the sdist: a file missing from the sdist fails the build. Then every artifact's
core metadata is parsed and validated with `packaging.metadata` and checked against
the package's pyproject.toml (name, version, Python bound, license, readme, extras,
dependencies between the packages), and each archive against its contents (py.typed,
the license file, entry points; no tests or bytecode). Any problem is listed and the
exit status is 1. With `pip install --find-links OUTDIR "cachekit-core[all]"` the
result installs without an index that has cachekit.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

from packaging.metadata import Metadata
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

if sys.version_info >= (3, 11):
    import tomllib
else:  # build itself depends on tomli there
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent
CORE = "cachekit-core"
# The import package and the entry points each distribution must ship.
IMPORTS = {
    "cachekit-core": "cachekit",
    "cachekit-redis": "cachekit_redis",
    "cachekit-arrow": "cachekit_arrow",
    "cachekit-crypto": "cachekit_crypto",
}
ENTRY_POINTS = {
    "cachekit-core": ("console_scripts", "cachekit", "cachekit.cli:main"),
    "cachekit-redis": ("cachekit", "redis", "cachekit_redis.plugin"),
    "cachekit-arrow": ("cachekit", "arrow", "cachekit_arrow.plugin"),
    "cachekit-crypto": ("cachekit", "crypto", "cachekit_crypto.plugin"),
}


def members() -> list[str]:
    root = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return list(root["tool"]["cachekit-workspace"]["members"])


def project(member: str) -> dict:
    return tomllib.loads((ROOT / member / "pyproject.toml").read_text())["project"]


def build(member: str, outdir: Path) -> None:
    with tempfile.TemporaryDirectory(prefix=f"{member}-") as tmp:
        source = Path(tmp) / member
        shutil.copytree(
            ROOT / member,
            source,
            ignore=shutil.ignore_patterns("build", "dist", "*.egg-info", "__pycache__"),
        )
        done = subprocess.run(
            [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(outdir), str(source)],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            raise SystemExit(f"building {member} failed:\n{done.stdout}\n{done.stderr}")


def _wheel_files(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as zf:
        return {name: zf.read(name) for name in zf.namelist()}


def _sdist_files(path: Path) -> dict[str, bytes]:
    files = {}
    with tarfile.open(path) as tf:
        for info in tf.getmembers():
            if info.isfile():
                handle = tf.extractfile(info)
                assert handle is not None
                # Drop the leading "<name>-<version>/" directory.
                files[info.name.split("/", 1)[1]] = handle.read()
    return files


def check_metadata(member: str, raw: bytes, where: str, version: str) -> list[str]:
    """Problems with one artifact's core metadata (PKG-INFO or METADATA)."""
    problems: list[str] = []
    try:
        meta = Metadata.from_email(raw, validate=True)
    except Exception as exc:  # packaging raises an ExceptionGroup of every problem
        errors = getattr(exc, "exceptions", [exc])
        return [f"{where}: invalid metadata: {e}" for e in errors]
    want = project(member)
    if canonicalize_name(meta.name) != canonicalize_name(want["name"]):
        problems.append(f"{where}: name {meta.name!r}, pyproject says {want['name']!r}")
    if str(meta.version) != version:
        problems.append(f"{where}: version {meta.version}, expected {version}")
    if str(meta.requires_python) != want["requires-python"]:
        problems.append(f"{where}: Requires-Python {meta.requires_python}")
    if meta.license_expression != "MIT":
        problems.append(f"{where}: License-Expression {meta.license_expression!r}, not MIT")
    if "LICENSE" not in (meta.license_files or []):
        problems.append(f"{where}: no License-File: LICENSE")
    if not meta.description or meta.description_content_type != "text/markdown":
        problems.append(f"{where}: the README is missing or not text/markdown")
    if not meta.summary:
        problems.append(f"{where}: no summary")
    requires = [Requirement(str(r)) for r in meta.requires_dist or []]
    if member == CORE:
        siblings = {canonicalize_name(m) for m in IMPORTS if m != CORE}
        extras = {str(e) for e in meta.provides_extra or []}
        if extras != {"redis", "arrow", "crypto", "all"}:
            problems.append(f"{where}: extras {sorted(extras)}")
        named = {canonicalize_name(r.name) for r in requires if r.marker is not None}
        if named != siblings:
            problems.append(f"{where}: the extras pull {sorted(named)}, not {sorted(siblings)}")
    else:
        core = [r for r in requires if canonicalize_name(r.name) == CORE]
        if len(core) != 1 or not core[0].specifier.contains(version, prereleases=True):
            problems.append(f"{where}: must require {CORE} admitting {version}, has {core}")
    return problems


def check_wheel(member: str, path: Path, version: str) -> list[str]:
    files = _wheel_files(path)
    info = f"{path.name.split('-')[0]}-{version}.dist-info"
    problems = check_metadata(member, files.get(f"{info}/METADATA", b""), path.name, version)
    package = IMPORTS[member]
    if f"{package}/__init__.py" not in files or f"{package}/py.typed" not in files:
        problems.append(f"{path.name}: {package}/__init__.py or py.typed missing")
    if f"{info}/licenses/LICENSE" not in files:
        problems.append(f"{path.name}: the license file is missing")
    strays = [n for n in files if not n.startswith((f"{package}/", f"{info}/"))]
    strays += [n for n in files if "__pycache__" in n or n.endswith(".pyc")]
    if strays:
        problems.append(f"{path.name}: unexpected files {sorted(strays)[:5]}")
    group, name, target = ENTRY_POINTS[member]
    text = files.get(f"{info}/entry_points.txt", b"").decode()
    if f"[{group}]" not in text or f"{name} = {target}" not in text:
        problems.append(f"{path.name}: entry point [{group}] {name} = {target} missing")
    return problems


def check_sdist(member: str, path: Path, version: str) -> list[str]:
    files = _sdist_files(path)
    problems = check_metadata(member, files.get("PKG-INFO", b""), path.name, version)
    for needed in ("pyproject.toml", "README.md", "LICENSE", f"src/{IMPORTS[member]}/py.typed"):
        if needed not in files:
            problems.append(f"{path.name}: {needed} missing")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("outdir", nargs="?", default=str(ROOT / "dist"), type=Path)
    args = parser.parse_args(argv)
    outdir: Path = args.outdir.resolve()
    outdir.mkdir(parents=True, exist_ok=True)
    for old in [*outdir.glob("cachekit_*.whl"), *outdir.glob("cachekit_*.tar.gz")]:
        old.unlink()

    names = members()
    versions = {project(m)["version"] for m in names}
    if len(versions) != 1:
        print(f"the packages disagree on their version: {sorted(versions)}", file=sys.stderr)
        return 1
    (version,) = versions
    problems: list[str] = []
    for member in names:
        build(member, outdir)
        stem = member.replace("-", "_")
        wheels = sorted(outdir.glob(f"{stem}-{version}-*.whl"))
        sdists = sorted(outdir.glob(f"{stem}-{version}.tar.gz"))
        if len(wheels) != 1 or len(sdists) != 1:
            problems.append(f"{member}: expected one wheel and one sdist, got {wheels + sdists}")
            continue
        problems += check_wheel(member, wheels[0], version)
        problems += check_sdist(member, sdists[0], version)
        print(f"{member} {version}: {wheels[0].name}, {sdists[0].name}")
    if problems:
        print("\n".join(["the built distributions have problems:", *problems]), file=sys.stderr)
        return 1
    print(f"{2 * len(names)} files in {outdir}; metadata checked.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
