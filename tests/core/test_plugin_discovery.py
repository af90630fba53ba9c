"""Plugins are discovered for real: installed distributions, entry points, fresh interpreters.

Three distributions are installed once per test session with
``pip install --no-deps --no-build-isolation --target <dir>``, each into its own
directory:

* ``examples/cachekit-example-backend`` -- a well-behaved third-party plugin
  (``example://`` backend, ``json`` serializer / ``JsonSerializer``);
* ``tests/plugins/cachekit-broken-plugin`` -- its module raises at import;
* ``tests/plugins/cachekit-conflict-plugin`` -- claims ``example://`` and ``json`` too;
* ``tests/plugins/cachekit-empty-plugin`` -- four entry points that load and provide
  nothing (aimed at a package, a function, a dict; a hook without ``@hookimpl``).

Every scenario then runs in a subprocess whose PYTHONPATH lists the directories
it needs, so ``importlib.metadata`` finds exactly those entry points, and the
plugin registry is built from scratch as in a user's process.
"""

from __future__ import annotations

import fcntl
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
DISTRIBUTIONS = {
    "example": REPO / "examples" / "cachekit-example-backend",
    "broken": REPO / "tests" / "plugins" / "cachekit-broken-plugin",
    "conflict": REPO / "tests" / "plugins" / "cachekit-conflict-plugin",
    "empty": REPO / "tests" / "plugins" / "cachekit-empty-plugin",
}
_BUILD_LEFTOVERS = shutil.ignore_patterns("build", "dist", "*.egg-info", "__pycache__", ".*")


# --- installing the distributions ---------------------------------------------------------


def _shared_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory shared by every xdist worker of this run (the run's own basetemp)."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


def _install_all(root: Path) -> dict[str, Path]:
    """Copy each distribution (builds write into the source tree) and pip-install it."""
    sites = {name: root / "site" / name for name in DISTRIBUTIONS}
    running = []
    for name, source in DISTRIBUTIONS.items():
        copy = root / "src" / name
        shutil.rmtree(copy, ignore_errors=True)
        shutil.rmtree(sites[name], ignore_errors=True)
        shutil.copytree(source, copy, ignore=_BUILD_LEFTOVERS)
        cmd = [
            sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
            "--no-build-isolation", "--no-compile", "--disable-pip-version-check",
            "--target", str(sites[name]), str(copy),
        ]  # fmt: skip
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        running.append((name, proc))  # the installs run in parallel
    for name, proc in running:
        output, _ = proc.communicate(timeout=300)
        if proc.returncode != 0:
            raise RuntimeError(f"pip could not install {DISTRIBUTIONS[name]}:\n{output}")
    return sites


@pytest.fixture(scope="session")
def sites(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """name -> the --target directory holding that installed distribution."""
    root = _shared_dir(tmp_path_factory) / "plugin-distributions"
    root.mkdir(exist_ok=True)
    done = root / "installed.json"
    with open(root / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one worker installs, the others wait for it
        if not done.exists():
            installed = _install_all(root)
            done.write_text(json.dumps({k: str(v) for k, v in installed.items()}))
    return {k: Path(v) for k, v in json.loads(done.read_text()).items()}


def run_python(
    code: str, *paths: Path, env: dict[str, str] | None = None, cwd: Path | None = None
) -> Any:
    """Run ``code`` in a fresh interpreter; it must print one JSON document last."""
    environ = {
        "PATH": os.environ.get("PATH", ""),
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONPATH": os.pathsep.join(str(p) for p in paths),
        **(env or {}),
    }
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env=environ,
        cwd=cwd or Path(__file__).parent,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, f"subprocess failed:\n{done.stdout}\n{done.stderr}"
    return json.loads(done.stdout.strip().splitlines()[-1])


# The scripts report errors as {"type", "code", "message", "is_import_error"}.
_PRELUDE = """
import json, sys, warnings
def describe(exc):
    return {"type": type(exc).__name__, "code": getattr(exc, "code", None),
            "message": str(exc), "is_import_error": isinstance(exc, ImportError)}
def attempt(fn):
    try:
        return {"ok": fn()}
    except Exception as exc:
        return {"error": describe(exc)}
"""


def script(body: str) -> str:
    return _PRELUDE + textwrap.dedent(body)


# --- the well-behaved plugin --------------------------------------------------------------


def test_example_backend_serves_cached_calls_through_its_url_scheme(sites):
    result = run_python(
        script("""
            from cachekit import cache
            from cachekit_example_backend.backend import DictBackend

            calls = []

            @cache(backend="example://discovery", ttl=60)
            def square(x):
                calls.append(x)
                return x * x

            results = [square(3), square(3), square(4)]
            stored = DictBackend.from_url("example://discovery").get(square.cache_key(3))
            print(json.dumps({"results": results, "calls": calls,
                              "stored_type": type(stored).__name__,
                              "envelope": stored[:2].decode()}))
        """),
        sites["example"],
    )
    assert result["results"] == [9, 9, 16]
    assert result["calls"] == [3, 4]
    assert result["stored_type"] == "bytes"  # the value went to the plugin's backend
    assert result["envelope"] == "CK"


def test_json_serializer_is_importable_from_cachekit_serializers(sites):
    result = run_python(
        script("""
            from cachekit import cache
            from cachekit.serializers import JsonSerializer
            from cachekit_example_backend.backend import DictBackend

            @cache(backend="example://json", serializer="json")
            def profile(user_id):
                return {"id": user_id, "name": "Ada"}

            value = profile(7)
            stored = DictBackend.from_url("example://json").get(profile.cache_key(7))
            print(json.dumps({"module": JsonSerializer.__module__, "name": JsonSerializer.name,
                              "value": value, "json_in_backend": b'"name":"Ada"' in stored}))
        """),
        sites["example"],
    )
    assert result["module"] == "cachekit_example_backend.serializer"
    assert result["name"] == "json"
    assert result["value"] == {"id": 7, "name": "Ada"}
    assert result["json_in_backend"]


def test_registry_lists_the_plugin_with_its_distribution_and_version(sites):
    result = run_python(
        script("""
            from cachekit import plugins
            print(json.dumps([p.as_dict() for p in plugins.registry().plugins]))
        """),
        sites["example"],
    )
    by_name = {p["name"]: p for p in result if isinstance(p, dict)}
    assert next(iter(by_name)) == "cachekit"  # the core's own plugin comes first
    example = by_name["example"]
    assert example["distribution"] == "cachekit-example-backend"
    assert example["version"] == "0.1.0"
    assert example["module"] == "cachekit_example_backend.plugin"
    assert example["error"] is None
    assert sorted(example["hooks"]) == ["cachekit_backends", "cachekit_serializers"]
    assert "backend example (example://)" in example["provides"]
    assert "serializer json" in example["provides"]


def test_plugin_modules_load_lazily(sites):
    result = run_python(
        script("""
            def loaded():
                return sorted(m for m in sys.modules if m.startswith("cachekit_example_backend"))

            from cachekit import cache
            steps = {"after import cachekit": loaded()}
            from cachekit import plugins
            plugins.registry()
            steps["after registry()"] = loaded()

            @cache(backend="example://lazy")
            def f(x):
                return x

            f(1)
            steps["after the first call"] = loaded()
            print(json.dumps(steps))
        """),
        sites["example"],
    )
    assert result["after import cachekit"] == []
    assert result["after registry()"] == [
        "cachekit_example_backend",
        "cachekit_example_backend.plugin",
    ]
    assert "cachekit_example_backend.backend" in result["after the first call"]
    assert "cachekit_example_backend.serializer" not in result["after the first call"]


def run_cli(*args: str, paths: tuple[Path, ...], env: dict[str, str] | None = None) -> Any:
    """``python -m cachekit ARGS`` with exactly ``paths`` on PYTHONPATH."""
    return subprocess.run(
        [sys.executable, "-m", "cachekit", *args],
        env={
            "PATH": os.environ.get("PATH", ""),
            "PYTHONDONTWRITEBYTECODE": "1",
            "PYTHONPATH": os.pathsep.join(map(str, paths)),
            **(env or {}),
        },
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_cachekit_plugins_command_shows_the_installed_plugin(sites):
    done = run_cli("plugins", "--json", paths=(sites["example"], sites["broken"]))
    assert done.returncode == 1, done.stderr  # a plugin failed to load
    listed = {p["name"]: p for p in json.loads(done.stdout)}
    assert listed["example"]["distribution"] == "cachekit-example-backend"
    assert listed["example"]["version"] == "0.1.0"
    assert listed["example"]["status"] == "ok"
    assert "RuntimeError" in listed["broken"]["error"]
    assert listed["broken"]["status"] == "failed"
    assert "broken on purpose" in listed["broken"]["traceback"]


def test_cachekit_plugins_exits_0_when_every_plugin_loads(sites):
    done = run_cli("plugins", paths=(sites["example"],))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "example  (cachekit-example-backend 0.1.0)  ok" in done.stdout
    assert "conflicts" not in done.stdout


def test_cachekit_plugins_shows_conflicts_and_exits_1(sites):
    done = run_cli("plugins", paths=(sites["example"], sites["conflict"]))
    assert done.returncode == 1
    text = done.stdout
    assert "[E043] backend scheme 'example' is claimed by both" in text
    assert "[E043] serializer 'json' is claimed by both" in text
    assert (
        "  conflict  backend scheme 'example' (also claimed by cachekit-example-backend, "
        "plugin 'example')"
    ) in text
    assert "2 name(s) claimed twice (E043)" in text
    records = json.loads(
        run_cli("plugins", "--json", paths=(sites["example"], sites["conflict"])).stdout
    )
    by_name = {r["name"]: r for r in records}
    assert by_name["conflict"]["conflicts"] == [
        "backend scheme 'example' (also claimed by cachekit-example-backend, plugin 'example')",
        "serializer 'json' (also claimed by cachekit-example-backend, plugin 'example')",
    ]


@pytest.mark.parametrize("where", ["before", "after"])
def test_cachekit_plugins_verbose_prints_the_traceback_of_a_broken_plugin(sites, where):
    args = ("-v", "plugins") if where == "before" else ("plugins", "-v")
    done = run_cli(*args, paths=(sites["broken"],))
    assert done.returncode == 1
    assert "  traceback" in done.stdout
    assert "Traceback (most recent call last)" in done.stdout
    assert 'cachekit_broken_plugin/plugin.py", line' in done.stdout

    quiet = run_cli("plugins", paths=(sites["broken"],))
    assert "Traceback (most recent call last)" not in quiet.stdout
    assert "Run `cachekit plugins -v` to see the tracebacks." in quiet.stdout


# --- a plugin that provides nothing -------------------------------------------------------


def test_doctor_without_a_backend_names_the_installed_backend_plugins(sites):
    done = run_cli("doctor", "--json", paths=(sites["example"],))
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(done.stdout)
    installed = {b["backend"]: b for b in report["backend"]["installed"]}
    assert installed["example"] == {
        "backend": "example",
        "schemes": ["example"],
        "distribution": "cachekit-example-backend",
        "version": "0.1.0",
    }
    assert installed["memory"]["distribution"] == "cachekit-core"
    text = run_cli("doctor", paths=(sites["example"],)).stdout
    assert "example (example://) from cachekit-example-backend 0.1.0" in text
    assert "memory (memory://) from cachekit-core" in text


def test_a_plugin_providing_nothing_is_reported_with_what_to_change(sites):
    result = run_python(
        script("""
            from cachekit import plugins

            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                reg = plugins.registry()
            print(json.dumps({
                "plugins": {p.name: p.as_dict() for p in reg.plugins},
                "errors": sorted(p.name for p in reg.errors()),
                "warnings": [str(w.message) for w in caught],
                "memory": plugins.backend_spec("memory").name,
            }))
        """),
        sites["empty"],
    )
    names = ["aimed-at-function", "aimed-at-object", "aimed-at-package", "unmarked"]
    assert result["errors"] == names
    by_name = result["plugins"]
    for name in names:
        assert by_name[name]["status"] == "empty"
        assert by_name[name]["distribution"] == "cachekit-empty-plugin"
        assert by_name[name]["provides"] == []
        assert by_name[name]["error"].startswith("provides nothing: ")
    assert (
        "names the function cachekit_backends, not a module"
        in (by_name["aimed-at-function"]["error"])
    )
    assert "'cachekit_empty_plugin.plugin'" in by_name["aimed-at-function"]["error"]
    assert "names a dict object, not a module" in by_name["aimed-at-object"]["error"]
    assert (
        "module cachekit_empty_plugin has no @hookimpl function"
        in (by_name["aimed-at-package"]["error"])
    )
    assert "defines cachekit_backends() without cachekit's marker" in (by_name["unmarked"]["error"])
    assert len(result["warnings"]) == 4
    assert all(w.startswith("[E042] cachekit plugin '") for w in result["warnings"])
    assert all("provides nothing and is ignored" in w for w in result["warnings"])
    assert result["memory"] == "memory"


def test_strict_plugins_makes_a_plugin_providing_nothing_an_error(sites):
    result = run_python(
        script("""
            from cachekit import plugins
            print(json.dumps(attempt(lambda: len(plugins.registry().plugins))))
        """),
        sites["empty"],
        env={"CACHEKIT_STRICT_PLUGINS": "1"},
    )
    error = result["error"]
    assert error["code"] == "E042"
    assert "provides nothing" in error["message"]


def test_cachekit_plugins_flags_a_plugin_providing_nothing_and_exits_1(sites):
    done = run_cli("plugins", paths=(sites["empty"],))
    assert done.returncode == 1
    text = done.stdout
    assert "aimed-at-function  (cachekit-empty-plugin 0.0.3)  PROVIDES NOTHING" in text
    assert "names the function cachekit_backends, not a module" in text
    assert "4 provide nothing" in text


def test_a_missing_scheme_names_the_plugins_that_could_not_be_used(sites):
    result = _ask_for(["lite://db"], paths=(sites["empty"], sites["broken"]))
    error = result["lite://db"]["error"]
    assert error["code"] == "E041"
    message = error["message"]
    assert "no plugin provides backend scheme 'lite'" in message
    assert "5 installed plugin(s) could not be used" in message
    assert "'aimed-at-function' from cachekit-empty-plugin 0.0.3 (provides nothing)" in message
    assert "'broken' from cachekit-broken-plugin 0.0.1 (RuntimeError:" in message
    assert "cachekit plugins -v" in message


def test_a_missing_scheme_says_autoload_is_disabled():
    result = _ask_for(["lite://db"], env={"CACHEKIT_DISABLE_PLUGIN_AUTOLOAD": "1"})
    message = result["lite://db"]["error"]["message"]
    assert "no plugin provides backend scheme 'lite'" in message
    assert "CACHEKIT_DISABLE_PLUGIN_AUTOLOAD is set" in message
    assert "unset it" in message


def test_pluggy_accepts_a_misspelled_hook_until_check_pending():
    """What docs/plugins.md says about checking a hook module by hand."""
    import types

    import pluggy

    from cachekit import hookspecs

    module = types.ModuleType("typo_plugin")

    @hookspecs.hookimpl
    def cachekit_backend():  # missing the final "s"
        return []

    module.cachekit_backend = cachekit_backend  # type: ignore[attr-defined]
    pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
    pm.add_hookspecs(hookspecs)
    pm.register(module)  # accepted: pluggy only checks hooks it has a spec for
    with pytest.raises(pluggy.PluginValidationError, match="unknown hook 'cachekit_backend'"):
        pm.check_pending()


def test_example_plugin_passes_its_own_conformance_tests(sites, tmp_path):
    project = tmp_path / "cachekit-example-backend"
    shutil.copytree(DISTRIBUTIONS["example"], project, ignore=_BUILD_LEFTOVERS)
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:xdist", "-p", "no:randomly"],
        env={
            "PATH": os.environ.get("PATH", ""),
            "PYTHONDONTWRITEBYTECODE": "1",
            "PYTHONPATH": str(sites["example"]),
        },
        cwd=project,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert " passed" in done.stdout
    assert "failed" not in done.stdout


# --- a broken plugin ----------------------------------------------------------------------

_USE_EVERYTHING = """
    from cachekit import cache, plugins

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        reg = attempt(lambda: [p.as_dict() for p in plugins.registry().plugins])

    @cache(backend="example://still-works")
    def double(x):
        return 2 * x

    print(json.dumps({
        "registry": reg,
        "warnings": [f"{w.category.__name__}: {w.message}" for w in caught],
        "example": attempt(lambda: [double(21), double(21)]),
        "memory": attempt(lambda: plugins.backend_spec("memory").name),
    }))
"""


def test_broken_plugin_is_reported_and_the_others_keep_working(sites):
    result = run_python(script(_USE_EVERYTHING), sites["example"], sites["broken"])
    (warning,) = result["warnings"]
    assert warning.startswith("RuntimeWarning: [E042]")
    assert "cachekit-broken-plugin" in warning
    assert "RuntimeError" in warning and "broken on purpose" in warning
    assert "CACHEKIT_STRICT_PLUGINS" in warning
    broken = next(p for p in result["registry"]["ok"] if p["name"] == "broken")
    assert broken["distribution"] == "cachekit-broken-plugin"
    assert broken["version"] == "0.0.1"
    assert broken["provides"] == []
    assert result["example"] == {"ok": [42, 42]}
    assert result["memory"] == {"ok": "memory"}


def test_strict_plugins_turns_a_broken_plugin_into_an_error(sites):
    result = run_python(
        script(_USE_EVERYTHING),
        sites["example"],
        sites["broken"],
        env={"CACHEKIT_STRICT_PLUGINS": "1"},
    )
    for failed in (result["registry"], result["example"]):
        error = failed["error"]
        assert error["type"] == "PluginLoadError"
        assert error["code"] == "E042"
        assert error["is_import_error"]
        assert "cachekit-broken-plugin" in error["message"]
        # It is set: the error must not advise setting it.
        assert "set CACHEKIT_STRICT_PLUGINS" not in error["message"]
        assert "CACHEKIT_STRICT_PLUGINS is set" in error["message"]


def test_disable_autoload_loads_only_the_builtin_plugin(sites):
    result = run_python(
        script(_USE_EVERYTHING),
        sites["example"],
        sites["broken"],
        sites["conflict"],
        env={"CACHEKIT_DISABLE_PLUGIN_AUTOLOAD": "1"},
    )
    assert [p["name"] for p in result["registry"]["ok"]] == ["cachekit"]
    assert result["warnings"] == []  # the broken plugin is never even imported
    error = result["example"]["error"]
    assert error["code"] == "E041"
    assert "no plugin provides backend scheme 'example'" in error["message"]
    assert result["memory"] == {"ok": "memory"}


# --- two plugins claiming one name --------------------------------------------------------

_USE_CONTESTED_NAMES = """
    from cachekit import cache, plugins

    @cache(backend="example://contested")
    def by_scheme(x):
        return x

    @cache(backend="memory://", serializer="json")
    def by_serializer(x):
        return x

    @cache(backend="conflictonly://")
    def uncontested(x):
        return x

    print(json.dumps({
        "scheme": attempt(lambda: by_scheme(1)),
        "serializer": attempt(lambda: by_serializer(1)),
        "uncontested": attempt(lambda: uncontested(1)),
    }))
"""


def test_two_plugins_claiming_a_scheme_fail_naming_both_distributions(sites):
    result = run_python(script(_USE_CONTESTED_NAMES), sites["example"], sites["conflict"])
    for contested, what in ((result["scheme"], "'example'"), (result["serializer"], "'json'")):
        error = contested["error"]
        assert error["type"] == "PluginConflictError"
        assert error["code"] == "E043"
        assert what in error["message"]
        assert "cachekit-example-backend" in error["message"]
        assert "cachekit-conflict-plugin" in error["message"]
    assert result["uncontested"] == {"ok": 1}  # the rest of the plugin is usable


def test_strict_plugins_reports_a_conflict_when_the_registry_loads(sites):
    result = run_python(
        script("""
            from cachekit import plugins
            print(json.dumps(attempt(lambda: len(plugins.registry().plugins))))
        """),
        sites["example"],
        sites["conflict"],
        env={"CACHEKIT_STRICT_PLUGINS": "1"},
    )
    error = result["error"]
    assert error["code"] == "E043"
    assert "cachekit-example-backend" in error["message"]
    assert "cachekit-conflict-plugin" in error["message"]


# --- plugins that are not installed -------------------------------------------------------

_ASK_FOR = """
    from cachekit import cache

    def call_with(url):
        @cache(backend=url)
        def f(x):
            return x
        return attempt(lambda: f(1))

    print(json.dumps({url: call_with(url) for url in URLS}))
"""


def _ask_for(
    urls: list[str], env: dict[str, str] | None = None, paths: tuple[Path, ...] = ()
) -> dict:
    return run_python(script(f"URLS = {urls!r}\n" + textwrap.dedent(_ASK_FOR)), *paths, env=env)


def test_redis_urls_name_cachekit_redis_when_it_is_missing():
    urls = ["redis://localhost:6379/0", "rediss+sentinel://h:26379/m"]
    if importlib.util.find_spec("cachekit_redis") is not None:
        # Installed: the same schemes must be served by it instead.
        result = run_python(
            script("""
                from cachekit import plugins
                reg = plugins.registry()
                print(json.dumps([reg.backends[s].plugin.distribution
                                  for s in ("redis", "rediss+sentinel")]))
            """)
        )
        assert result == ["cachekit-redis", "cachekit-redis"]
        return
    result = _ask_for(urls)
    for url, scheme in zip(urls, ("redis", "rediss+sentinel"), strict=True):
        error = result[url]["error"]
        assert error["code"] == "E041"
        assert error["is_import_error"]
        assert (
            f"backend scheme '{scheme}' is provided by cachekit-redis: pip install cachekit-redis"
            in error["message"]
        )


def test_disabled_autoload_still_names_the_package_that_provides_a_scheme():
    result = _ask_for(["redis://localhost:6379/0"], env={"CACHEKIT_DISABLE_PLUGIN_AUTOLOAD": "1"})
    message = result["redis://localhost:6379/0"]["error"]["message"]
    assert "backend scheme 'redis' is provided by cachekit-redis: pip install cachekit-redis" in (
        message
    )
    assert "CACHEKIT_DISABLE_PLUGIN_AUTOLOAD" in message


def test_unknown_scheme_says_no_plugin_provides_it_and_lists_the_known_ones():
    result = _ask_for(["nosuch://somewhere"])
    error = result["nosuch://somewhere"]["error"]
    assert error["code"] == "E041"
    assert "no plugin provides backend scheme 'nosuch'" in error["message"]
    assert "memory" in error["message"]


def test_arrow_serializer_import_names_its_package_or_resolves_it():
    load = script("""
        def load():
            from cachekit import plugins
            from cachekit.serializers import ArrowSerializer
            spec = plugins.serializer_spec("arrow")
            return [ArrowSerializer.__module__, spec.name, ArrowSerializer().name]
        print(json.dumps(attempt(load)))
    """)
    result = run_python(load)
    if importlib.util.find_spec("cachekit_arrow") is not None:
        # Installed (the workspace installs it): both names resolve to cachekit-arrow...
        assert result["ok"] == ["cachekit_arrow.serializer", "arrow", "arrow"]
        # ...and kept from loading, it is missing as far as cachekit knows (the state
        # tests/core/test_core_alone.py checks in a venv without it): the error names it.
        result = run_python(load, env={"CACHEKIT_DISABLE_PLUGIN_AUTOLOAD": "1"})
    error = result["error"]
    assert error["is_import_error"]
    assert error["code"] == "E041"
    assert "cachekit-arrow" in error["message"]
    assert "pip install cachekit-arrow" in error["message"]
