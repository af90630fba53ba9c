"""The ``cachekit`` command line, run for real as a subprocess (``python -m cachekit``).

Plugins used here are real distributions as far as ``importlib.metadata`` is
concerned: a ``.dist-info`` folder with an ``entry_points.txt`` on PYTHONPATH.
"""

from __future__ import annotations

import importlib.util
import io
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from cachekit import __version__, cli
from cachekit.cli import _demo

MASTER_KEY = "0123456789abcdef" * 4  # 32 bytes: a valid, recognisable key
SIGNING_KEY = "fedcba9876543210" * 4
RETIRED_KEY = "a1b2c3d4e5f60718" * 4


def clean_env(**extra: str) -> dict[str, str]:
    """The test process's environment without cachekit's variables, plus ``extra``."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith("CACHEKIT_") and name != "REDIS_URL"
    }
    env.update(extra)
    return env


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cachekit", *args],
        env=clean_env() if env is None else env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def output(result: subprocess.CompletedProcess[str]) -> str:
    return result.stdout + result.stderr


@pytest.fixture
def plugin_dir(tmp_path: Path) -> Path:
    """Two plugin distributions: one that works (schemes slow:// and down://), one broken."""
    site = tmp_path / "site"
    site.mkdir()
    for dist, version, entry in (
        ("ck_cli_fixture_good", "2.3", "fixture = ck_cli_fixture_plugin"),
        ("ck_cli_fixture_broken", "1.0", "broken = ck_cli_fixture_module_that_does_not_exist"),
    ):
        info = site / f"{dist}-{version}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(
            f"Metadata-Version: 2.1\nName: {dist.replace('_', '-')}\nVersion: {version}\n"
        )
        (info / "entry_points.txt").write_text(f"[cachekit]\n{entry}\n")
    (site / "ck_cli_fixture_plugin.py").write_text(
        textwrap.dedent(
            """
            import time

            from cachekit.backends.memory import MemoryBackend
            from cachekit.hookspecs import BackendSpec, hookimpl


            class Frozen(MemoryBackend):
                def ping(self):
                    time.sleep(10)
                    return True


            class Down(MemoryBackend):
                def ping(self):
                    raise ConnectionRefusedError("connection refused by the fixture server")


            @hookimpl
            def cachekit_backends():
                return [
                    BackendSpec(name="frozen", schemes=("slow",),
                                factory=lambda url, **o: Frozen(),
                                description="never answers a ping in time"),
                    BackendSpec(name="down", schemes=("down",), factory=lambda url, **o: Down()),
                ]
            """
        )
    )
    return site


def with_plugins(site: Path, **extra: str) -> dict[str, str]:
    path = os.pathsep.join(p for p in (str(site), os.environ.get("PYTHONPATH", "")) if p)
    return clean_env(PYTHONPATH=path, **extra)


# --- top level -----------------------------------------------------------------------------


def test_version_names_the_package_version() -> None:
    result = run("--version")
    assert result.returncode == 0
    assert f"cachekit {__version__}" in result.stdout


def test_no_command_prints_the_help_and_exits_2() -> None:
    result = run()
    assert result.returncode == 2
    for command in ("plugins", "doctor", "keygen", "demo"):
        assert command in result.stderr


@pytest.mark.parametrize("command", ["plugins", "doctor", "keygen", "demo"])
def test_every_command_has_help(command: str) -> None:
    result = run(command, "--help")
    assert result.returncode == 0
    assert f"usage: cachekit {command}" in result.stdout


def test_the_console_script_is_installed_and_runs() -> None:
    script = shutil.which("cachekit", path=str(Path(sys.executable).parent))
    if script is None:
        pytest.skip("the cachekit console script is not installed next to this interpreter")
    result = subprocess.run(
        [script, "keygen"], env=clean_env(), capture_output=True, text=True, check=False
    )
    assert result.returncode == 0
    assert re.fullmatch(r"[0-9a-f]{64}\n", result.stdout)


def test_a_cachekit_error_ends_with_one_clean_line_and_exit_1(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from cachekit.errors import ConfigurationError

    def broken(args: object) -> int:
        raise ConfigurationError("CACHEKIT_SOMETHING='x' is not valid.")

    monkeypatch.setattr(cli, "_cmd_keygen", broken)
    assert cli.main(["keygen"]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == "cachekit: error: [E040] CACHEKIT_SOMETHING='x' is not valid.\n"


# --- plugins -------------------------------------------------------------------------------


def test_plugins_lists_the_builtin_plugin_with_its_backend_and_serializers() -> None:
    result = run("plugins")
    assert result.returncode == 0, output(result)
    text = result.stdout
    assert f"cachekit  (cachekit-core {__version__})" in text
    assert "cachekit_backends" in text
    assert "cachekit_serializers" in text
    assert "backend memory (memory://)" in text
    assert "serializer msgpack" in text
    assert "serializer pickle" in text


def test_plugins_json_is_a_list_of_plugin_records() -> None:
    result = run("plugins", "--json")
    assert result.returncode == 0, output(result)
    records = json.loads(result.stdout)
    builtin = next(r for r in records if r["name"] == "cachekit")
    assert builtin["distribution"] == "cachekit-core"
    assert builtin["version"] == __version__
    assert builtin["error"] is None
    assert "backend memory (memory://)" in builtin["provides"]
    assert {"serializer msgpack", "serializer pickle"} <= set(builtin["provides"])


def test_a_broken_plugin_shows_its_error_and_the_others_are_still_listed(
    plugin_dir: Path,
) -> None:
    result = run("plugins", env=with_plugins(plugin_dir))
    assert result.returncode == 1, output(result)  # a plugin failed to load
    text = result.stdout
    assert "broken  (ck-cli-fixture-broken 1.0)  FAILED TO LOAD" in text
    assert "ModuleNotFoundError" in text
    assert "fixture  (ck-cli-fixture-good 2.3)  ok" in text
    assert "backend frozen (slow://)" in text
    assert "backend memory (memory://)" in text
    assert "Traceback" not in result.stderr

    records = json.loads(run("plugins", "--json", env=with_plugins(plugin_dir)).stdout)
    by_name = {r["name"]: r for r in records}
    assert "ck_cli_fixture_module_that_does_not_exist" in by_name["broken"]["error"]
    assert by_name["fixture"]["error"] is None


def test_plugins_still_lists_everything_under_strict_plugins(plugin_dir: Path) -> None:
    result = run("plugins", env=with_plugins(plugin_dir, CACHEKIT_STRICT_PLUGINS="1"))
    assert result.returncode == 1, output(result)
    assert "FAILED TO LOAD" in result.stdout
    assert "CACHEKIT_STRICT_PLUGINS is set" in result.stdout
    assert "set CACHEKIT_STRICT_PLUGINS=1" not in output(result)  # it is set already


def test_plugins_exits_0_when_every_plugin_loads() -> None:
    for args in (("plugins",), ("plugins", "--json")):
        result = run(*args)
        assert result.returncode == 0, output(result)


def test_plugins_help_states_the_exit_status() -> None:
    text = run("plugins", "--help").stdout
    assert "exit status: 0" in text
    assert "(E043)" in text


def test_plugins_verbose_shows_where_a_plugin_failed(plugin_dir: Path) -> None:
    result = run("plugins", "-v", env=with_plugins(plugin_dir))
    assert result.returncode == 1
    assert "Traceback (most recent call last)" in result.stdout
    assert "ModuleNotFoundError: No module named 'ck_cli_fixture_module_that_does_not_exist'" in (
        result.stdout
    )


# --- keygen --------------------------------------------------------------------------------


def test_keygen_prints_64_hex_characters_and_nothing_else() -> None:
    first, second = run("keygen"), run("keygen")
    assert first.returncode == 0
    assert re.fullmatch(r"[0-9a-f]{64}\n", first.stdout)
    assert first.stderr == ""
    assert first.stdout != second.stdout


def test_keygen_output_is_a_valid_master_key() -> None:
    from cachekit.signing import parse_hex_key

    key = run("keygen", "--bytes", "48").stdout.strip()
    assert len(key) == 96
    assert len(parse_hex_key(key)) == 48


def test_keygen_rejects_fewer_than_32_bytes() -> None:
    result = run("keygen", "--bytes", "16")
    assert result.returncode == 2
    assert result.stdout == ""
    assert "at least 32 bytes" in result.stderr
    assert "Traceback" not in result.stderr


# --- doctor --------------------------------------------------------------------------------


def test_doctor_with_nothing_configured_says_l1_only_and_exits_0() -> None:
    result = run("doctor")
    assert result.returncode == 0, output(result)
    assert "none: L1 only" in result.stdout
    assert f"Installed backends: memory (memory://) from cachekit-core {__version__}" in (
        result.stdout
    )
    assert f"cachekit   {__version__}" in result.stdout
    assert "everything looks fine" in result.stdout


def test_doctor_with_a_redis_backend_names_the_package_it_needs() -> None:
    result = run("doctor", env=clean_env(CACHEKIT_BACKEND="redis://localhost:6379/0"))
    assert "redis://localhost:6379/0 (from CACHEKIT_BACKEND)" in result.stdout
    if importlib.util.find_spec("cachekit_redis") is None:
        assert result.returncode == 1
        assert (
            "[E041] backend scheme 'redis' is provided by cachekit-redis: "
            "pip install cachekit-redis"
        ) in result.stdout
    else:  # installed: the verdict depends on whether a Redis answers on 6379
        assert result.returncode in (0, 1)
        assert "reachability" in result.stdout


def test_doctor_shows_which_variable_selects_the_backend_and_pings_it() -> None:
    env = clean_env(CACHEKIT_REDIS_URL="redis://elsewhere:1/0", CACHEKIT_BACKEND="memory://doc")
    result = run("doctor", "--json", env=env)
    assert result.returncode == 0, output(result)
    report = json.loads(result.stdout)
    assert report["ok"] is True
    assert report["backend"]["variable"] == "CACHEKIT_BACKEND"
    assert report["backend"]["url"] == "memory://doc"
    assert report["backend"]["reachable"] is True
    assert isinstance(report["backend"]["latency_ms"], float)


def test_doctor_never_prints_a_secret() -> None:
    env = clean_env(
        CACHEKIT_MASTER_KEY=MASTER_KEY,
        CACHEKIT_SIGNING_KEY=SIGNING_KEY,
        CACHEKIT_PREVIOUS_MASTER_KEYS=f"{RETIRED_KEY},{MASTER_KEY}",
        CACHEKIT_BACKEND="memory://x",
        CACHEKIT_REDIS_URL="redis://admin:hunter2-password@cache.internal:6379/0",
        REDIS_URL="redis://cache.internal:6379/0?password=query-password-123",
    )
    for args in (("doctor",), ("doctor", "--json")):
        result = run(*args, env=env)
        text = output(result)
        for secret in (
            MASTER_KEY,
            SIGNING_KEY,
            RETIRED_KEY,
            "hunter2-password",
            "query-password-123",
        ):
            assert secret not in text
        assert "Traceback" not in text
    text = run("doctor", env=env).stdout
    assert "CACHEKIT_MASTER_KEY" in text
    assert "set (64 hex characters): valid hex, 32 bytes" in text
    assert "redis://admin:***@cache.internal:6379/0" in text


def test_doctor_reports_an_invalid_master_key_as_e002_without_echoing_it() -> None:
    bad = "not-a-hex-key-but-a-long-secret-string"
    result = run("doctor", env=clean_env(CACHEKIT_MASTER_KEY=bad))
    assert result.returncode == 1
    assert "E002" in result.stdout
    assert bad not in output(result)


def test_doctor_with_a_bad_default_ttl_exits_1_with_e040() -> None:
    result = run("doctor", env=clean_env(CACHEKIT_DEFAULT_TTL="soon"))
    assert result.returncode == 1
    assert "[E040]" in result.stdout
    assert "CACHEKIT_DEFAULT_TTL" in result.stdout
    report = json.loads(run("doctor", "--json", env=clean_env(CACHEKIT_DEFAULT_TTL="soon")).stdout)
    assert report["ok"] is False
    assert any(c["code"] == "E040" and c["status"] == "fail" for c in report["checks"])


def test_doctor_flags_an_invalid_circuit_breaker_setting() -> None:
    result = run("doctor", env=clean_env(CACHEKIT_CIRCUIT_BREAKER_FAILURE_THRESHOLD="many"))
    assert result.returncode == 1
    assert "CACHEKIT_CIRCUIT_BREAKER_FAILURE_THRESHOLD" in result.stdout


def test_doctor_suggests_the_variable_a_typo_meant() -> None:
    result = run("doctor", env=clean_env(CACHEKIT_REDIS_ULR="redis://localhost"))
    assert result.returncode == 0
    assert "did you mean CACHEKIT_REDIS_URL?" in result.stdout
    assert "redis://localhost" not in result.stdout  # unknown variables are never echoed


def test_doctor_reports_a_backend_that_refuses_connections(plugin_dir: Path) -> None:
    result = run("doctor", env=with_plugins(plugin_dir, CACHEKIT_BACKEND="down://db:1"))
    assert result.returncode == 1
    assert "ConnectionRefusedError" in result.stdout
    assert "connection refused by the fixture server" in result.stdout


def test_doctor_gives_up_on_a_backend_that_does_not_answer(plugin_dir: Path) -> None:
    env = with_plugins(plugin_dir, CACHEKIT_BACKEND="slow://db:1")
    result = run("doctor", "--timeout", "0.2", env=env)
    assert result.returncode == 1
    assert "no answer from slow://db:1 within 0.2 s" in result.stdout


def test_doctor_without_a_backend_lists_every_installed_backend(plugin_dir: Path) -> None:
    result = run("doctor", "--json", env=with_plugins(plugin_dir))
    installed = json.loads(result.stdout)["backend"]["installed"]
    by_name = {b["backend"]: b for b in installed}
    assert by_name["frozen"] == {
        "backend": "frozen",
        "schemes": ["slow"],
        "distribution": "ck-cli-fixture-good",
        "version": "2.3",
    }
    assert by_name["down"]["schemes"] == ["down"]
    assert by_name["memory"]["distribution"] == "cachekit-core"
    text = run("doctor", env=with_plugins(plugin_dir)).stdout
    assert "frozen (slow://) from ck-cli-fixture-good 2.3" in text


def test_doctor_reports_plugin_load_problems(plugin_dir: Path) -> None:
    result = run("doctor", env=with_plugins(plugin_dir))
    assert result.returncode == 0  # a broken plugin is ignored: a warning
    assert "[E042] broken from ck-cli-fixture-broken 1.0 failed to load" in result.stdout

    strict = run("doctor", env=with_plugins(plugin_dir, CACHEKIT_STRICT_PLUGINS="1"))
    assert strict.returncode == 1  # ... unless the application would fail on it


# --- demo ----------------------------------------------------------------------------------


def test_demo_shows_misses_then_hits_with_timings() -> None:
    result = run("demo", "--delay", "0.05", "--keys", "3", "--no-progress")
    assert result.returncode == 0, output(result)
    text = result.stdout
    assert "hits=3 misses=3 l1_hits=3 l2_hits=0" in text
    for uid in (1, 2, 3):
        assert f"load_report({uid})" in text
    assert "first call" in text
    assert "cached call" in text
    assert "unchanged, every caller gets its own copy" in text
    assert "L1 only" in text
    assert "CACHEKIT_REDIS_URL" in text
    assert result.stderr == ""  # --no-progress: nothing on stderr


def test_demo_does_not_ask_to_install_redis_support_that_is_installed() -> None:
    # The workspace has cachekit-redis; a core-only install is checked in test_core_alone.
    result = run("demo", "--delay", "0", "--keys", "1", "--no-progress")
    assert result.returncode == 0, output(result)
    assert "cachekit-redis is installed here" in result.stdout
    assert "pip install" not in result.stdout


def test_demo_progress_is_one_line_per_step_when_stderr_is_not_a_terminal() -> None:
    result = run("demo", "--delay", "0.01", "--keys", "3")
    assert result.returncode == 0, output(result)
    lines = result.stderr.splitlines()
    assert [line.split()[0] for line in lines] == ["[1/3]", "[2/3]", "[3/3]"]
    assert "\r" not in result.stderr


def test_demo_ignores_a_configured_redis() -> None:
    env = clean_env(
        CACHEKIT_REDIS_URL="redis://127.0.0.1:1/0",
        REDIS_URL="redis://127.0.0.1:1/0",
        CACHEKIT_DEFAULT_TTL="not-a-number",
    )
    result = run("demo", "--delay", "0", "--keys", "2", "--no-progress", env=env)
    assert result.returncode == 0, output(result)
    assert "hits=2 misses=2" in result.stdout
    assert "ignoring" in result.stdout


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_redraws_one_line_on_a_terminal() -> None:
    stream = _Terminal()
    progress = _demo._Progress(2, stream)
    progress.step(0, "load_report(1)")
    progress.stepped(1, "load_report(1)", 0.25)
    progress.step(1, "load_report(2)")
    progress.stepped(2, "load_report(2)", 0.25)
    progress.close()
    text = stream.getvalue()
    assert text.count("\n") == 1
    assert text.endswith("\n")
    frames = text.rstrip("\n").split("\r")[1:]
    assert len(frames) == 4
    assert "[" + "#" * _demo._Progress.WIDTH + "] 2/2" in frames[-1]
    assert "250.0 ms" in frames[-1]


def test_doctor_checks_the_l1_byte_budget() -> None:
    assert "100 MB shared by every L1 cache" in run("doctor").stdout
    result = run("doctor", env=clean_env(CACHEKIT_L1_MAX_SIZE_MB="lots"))
    assert result.returncode == 1
    assert "CACHEKIT_L1_MAX_SIZE_MB" in result.stdout


# --- options after the command -------------------------------------------------------------


@pytest.mark.parametrize("command", ["plugins", "doctor", "keygen", "demo"])
@pytest.mark.parametrize(
    ("flags", "level"), [(["-v"], 1), (["-vv"], 2), (["--verbose", "-v"], 2), ([], 0)]
)
def test_verbose_is_accepted_after_every_command(command: str, flags: list[str], level: int):
    assert cli.build_parser().parse_args([command, *flags]).verbose == level
    # ... and before it, as before.
    assert cli.build_parser().parse_args([*flags, command]).verbose == level


def test_doctor_vv_after_the_command_runs_the_doctor() -> None:
    result = run("doctor", "-vv")
    assert result.returncode == 0, output(result)
    assert "unrecognized arguments" not in result.stderr
    assert "everything looks fine" in result.stdout
