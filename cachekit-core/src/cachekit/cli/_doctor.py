"""``cachekit doctor``: the configuration cachekit sees, checked.

Secrets (master and signing keys, URL passwords) are never printed: the report shows
only their length and whether they are valid, and any text that came from outside
(exception messages, plugin errors) passes through a :class:`_Scrubber` first.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from cachekit.cli._common import fmt_seconds, load_registry, one_line, version
from cachekit.errors import CachekitError

TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse

    from cachekit.plugins import Registry

__all__ = ["run"]

#: Environment variables whose values are secrets: shown as "set (N hex characters)".
SECRET_VARIABLES = ("CACHEKIT_MASTER_KEY", "CACHEKIT_SIGNING_KEY", "CACHEKIT_PREVIOUS_MASTER_KEYS")
#: Environment variables holding URLs: shown with any password redacted.
URL_VARIABLES = ("CACHEKIT_BACKEND", "CACHEKIT_REDIS_URL", "REDIS_URL")

OK, WARN, FAIL = "ok", "warn", "FAIL"


class _Scrubber:
    """Replaces known secret values in text that came from outside (exception messages)."""

    def __init__(self, environ: dict[str, str]) -> None:
        from urllib.parse import parse_qs, urlsplit

        found: set[str] = set()
        for name in SECRET_VARIABLES:
            for part in environ.get(name, "").split(","):
                found.add(part.strip())
        for name in URL_VARIABLES:
            try:
                parts = urlsplit(environ.get(name, ""))
                found.add(parts.password or "")
                found.update(parse_qs(parts.query).get("password", ()))
            except ValueError:
                pass
        # Very short strings would mangle ordinary words; keys are long, and URLs are
        # always printed through redact_url anyway.
        self.secrets = sorted((s for s in found if len(s) >= 8), key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, "***")
        return text


@dataclass
class _Check:
    name: str
    status: str
    detail: str
    code: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "status": self.status.lower(),
            "detail": self.detail,
            "code": self.code,
        }


@dataclass
class _Report:
    python: str
    cachekit: str
    environment: dict[str, str] = field(default_factory=dict)
    checks: list[_Check] = field(default_factory=list)
    backend: dict[str, Any] = field(default_factory=dict)
    plugins: list[dict[str, Any]] = field(default_factory=list)

    def add(self, name: str, status: str, detail: str, code: str | None = None) -> None:
        self.checks.append(_Check(name, status, one_line(detail), code))

    def fail(self, name: str, exc: BaseException, prefix: str = "") -> None:
        code = getattr(exc, "code", None)
        message = getattr(exc, "message", None) or str(exc)
        hint = getattr(exc, "hint", "")
        text = f"[{code}] {prefix}{message}" if code else f"{prefix}{type(exc).__name__}: {message}"
        if hint:
            text = f"{text} {hint}"
        self.add(name, FAIL, text, code)

    @property
    def problems(self) -> list[_Check]:
        return [c for c in self.checks if c.status == FAIL]

    @property
    def warnings(self) -> list[_Check]:
        return [c for c in self.checks if c.status == WARN]

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": not self.problems,
            "python": self.python,
            "cachekit": self.cachekit,
            "environment": dict(self.environment),
            "checks": [c.as_dict() for c in self.checks],
            "backend": dict(self.backend),
            "plugins": list(self.plugins),
        }


def _describe_key(name: str, raw: str) -> tuple[str, str | None]:
    """How a secret variable is shown, and the problem with it (None when valid)."""
    from cachekit.signing import MIN_KEY_BYTES as MIN_BYTES

    parts = (
        [p.strip() for p in raw.split(",")]
        if name == "CACHEKIT_PREVIOUS_MASTER_KEYS"
        else [raw.strip()]
    )
    parts = [p for p in parts if p]
    all_hex = all(_is_hex(p) for p in parts)
    shown = f"set ({len(raw.strip())} {'hex ' if all_hex else ''}characters"
    if len(parts) > 1:
        shown += f", {len(parts)} keys"
    shown += ")"
    bad: list[str] = []
    for i, part in enumerate(parts, 1):
        which = f"key {i}" if len(parts) > 1 else "the key"
        try:
            size = len(bytes.fromhex(part))
        except ValueError:
            bad.append(f"{which} is not valid hex")
            continue
        if size < MIN_BYTES:
            bad.append(f"{which} is {size} bytes, below the {MIN_BYTES}-byte minimum")
    if not parts:
        return "set (empty)", None
    if bad:
        return f"{shown}: INVALID ({'; '.join(bad)})", (
            f"[E002] {name} must be hex-encoded, at least {MIN_BYTES} bytes: {'; '.join(bad)}. "
            "Generate one with `cachekit keygen`."
        )
    sizes = sorted({len(bytes.fromhex(p)) for p in parts})
    return f"{shown}: valid hex, {'/'.join(map(str, sizes))} bytes", None


def _is_hex(text: str) -> bool:
    try:
        bytes.fromhex(text)
    except ValueError:
        return False
    return True


def _environment_section(report: _Report, environ: dict[str, str]) -> None:
    import difflib

    from cachekit.config import ENVIRONMENT, redact_url

    names = sorted(n for n in environ if n.startswith("CACHEKIT_") or n in ENVIRONMENT)
    for name in names:
        raw = environ[name]
        if name in SECRET_VARIABLES:
            shown, problem = _describe_key(name, raw)
            if problem:
                report.add(name, FAIL, problem, "E002")
        elif name in URL_VARIABLES:
            shown = redact_url(raw.strip()) if raw.strip() else "(empty)"
        elif name in ENVIRONMENT:
            shown = raw
        else:
            # Unknown to cachekit: maybe a typo, maybe another tool's. Never echo the value.
            close = difflib.get_close_matches(name, list(ENVIRONMENT), n=1)
            shown = "set (not a cachekit variable)"
            report.add(
                name,
                WARN,
                f"{name} is not a variable cachekit reads"
                + (f"; did you mean {close[0]}?" if close else "; see docs/configuration.md."),
            )
        report.environment[name] = shown


def _validation_section(report: _Report) -> None:
    from cachekit.breaker import BreakerConfig
    from cachekit.config import Settings
    from cachekit.signing import signer_from_env

    try:
        settings = Settings.from_env()
    except CachekitError as exc:
        report.fail("settings", exc)
    else:
        ttl = "no expiry" if settings.default_ttl is None else _fmt_ttl(settings.default_ttl)
        report.add(
            "settings",
            OK,
            f"default TTL {ttl}, L1 up to {settings.l1_max_entries} entries per function, "
            f"values up to {settings.max_value_size // (1024 * 1024)} MB",
        )
        if not settings.enabled:
            report.add(
                "caching",
                WARN,
                "CACHEKIT_ENABLED is false: every cached function runs uncached (pass-through)",
            )
    try:
        from cachekit.l1 import max_bytes_from_env

        l1_bytes = max_bytes_from_env()
    except CachekitError as exc:
        report.fail("L1 budget", exc)
    else:
        report.add("L1 budget", OK, f"{l1_bytes / (1024 * 1024):g} MB shared by every L1 cache")
    try:
        breaker = BreakerConfig.from_env()
    except CachekitError as exc:
        report.fail("circuit breaker", exc)
    else:
        if breaker.enabled:
            report.add(
                "circuit breaker",
                OK,
                f"opens after {breaker.failure_threshold} consecutive backend failures, "
                f"probes again after {breaker.recovery_timeout:g} s",
            )
        else:
            report.add(
                "circuit breaker",
                WARN,
                "disabled (CACHEKIT_CIRCUIT_BREAKER=false): a down backend costs a timeout "
                "on every call",
            )
    try:
        signer = signer_from_env()
    except CachekitError as exc:
        report.fail("signing key", exc)
    else:
        if signer is None:
            detail = (
                "none: pickled values stay in L1 (set CACHEKIT_SIGNING_KEY or "
                "CACHEKIT_MASTER_KEY to share them through a backend)"
            )
        else:
            source = (
                "CACHEKIT_SIGNING_KEY"
                if os.environ.get("CACHEKIT_SIGNING_KEY", "").strip()
                else "derived from CACHEKIT_MASTER_KEY"
            )
            detail = f"{source} (key id {signer.key_id})"
        report.add("signing key", OK, detail)


def _fmt_ttl(seconds: float) -> str:
    return f"{seconds:g} s"


def _plugins_section(report: _Report, reg: Registry, strict_error: CachekitError | None) -> None:
    report.plugins = [p.as_dict() for p in reg.plugins]
    loaded = [p.name for p in reg.plugins if not p.error]
    broken = reg.errors()
    detail = f"{len(loaded)} loaded ({', '.join(loaded)})"
    if not reg.autoload:
        detail += "; CACHEKIT_DISABLE_PLUGIN_AUTOLOAD is set: built-ins only"
    report.add("plugins", OK if not broken else WARN, detail)
    for info in broken:
        what = "provides nothing" if info.status == "empty" else "failed to load"
        report.add(
            f"plugin {info.name}",
            FAIL if strict_error is not None else WARN,
            f"[E042] {info.name} from {info.distribution} {info.version} {what}: "
            f"{one_line(info.error or '').removeprefix('provides nothing: ')}; "
            + (
                "CACHEKIT_STRICT_PLUGINS is set, so cachekit raises this error"
                if strict_error is not None
                else "it is left out and the other plugins work"
            ),
            "E042",
        )
    conflicts = reg.conflicts()
    if strict_error is not None and not broken and not conflicts:
        report.fail("plugins", strict_error)
    for message in conflicts:
        report.add("plugin conflict", FAIL, f"[E043] {message}", "E043")
    if not os.environ.get("CACHEKIT_MASTER_KEY", ""):
        return
    if "aes-gcm" not in reg.encryptors:
        report.add(
            "encryption",
            WARN,
            "CACHEKIT_MASTER_KEY is set but no encryptor is installed: @cache.secure needs "
            "cachekit-crypto (pip install cachekit-crypto)",
        )
        return
    _encryption_check(report, reg)


def _encryption_check(report: _Report, reg: Registry) -> None:
    """Build the aes-gcm encryptor as @cache.secure would; show its public key ids."""
    from cachekit.plugins import build

    try:
        encryptor = build(
            reg.encryptor("aes-gcm").factory, "encryptor aes-gcm", tenant=None, environ=os.environ
        )
    except CachekitError as exc:
        report.fail("encryption", exc)
        return
    readable = list(getattr(encryptor, "key_ids", None) or [encryptor.key_id])
    detail = f"aes-gcm: new entries use key id {encryptor.key_id}"
    if len(readable) > 1:
        detail += f"; entries of key ids {', '.join(readable[1:])} stay readable"
    naming = getattr(encryptor, "naming_key_id", None)
    if naming and naming != encryptor.key_id:
        detail += f"; key names come from key id {naming} (retiring it renames every entry)"
    report.add("encryption", OK, detail)


def _ping(factory: Callable[..., Any], url: str, timeout: float) -> dict[str, Any]:
    """Build the backend and ping it in a daemon thread, waiting at most ``timeout``."""
    import threading
    from time import perf_counter

    from cachekit.plugins import build

    result: dict[str, Any] = {}

    def probe() -> None:
        try:
            backend = build(factory, "backend", url)
        except BaseException as exc:  # reported, not raised: this runs in a thread
            result["error"] = exc
            result["stage"] = "build"
            return
        try:
            start = perf_counter()
            result["ok"] = bool(backend.ping())
            result["latency"] = perf_counter() - start
        except BaseException as exc:
            result["error"] = exc
            result["stage"] = "ping"
        finally:
            close = getattr(backend, "close", None)
            if callable(close):
                with contextlib.suppress(Exception):
                    close()

    thread = threading.Thread(target=probe, name="cachekit-doctor-ping", daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        return {"timeout": True}
    return result


def _installed_backends(reg: Registry) -> list[dict[str, Any]]:
    """Every backend the loaded plugins offer: name, URL schemes, distribution, version."""
    found: dict[int, dict[str, Any]] = {}
    for scheme, entry in sorted(reg.backends.items()):
        item = found.setdefault(
            id(entry.spec),
            {
                "backend": entry.spec.name,
                "schemes": [],
                "distribution": entry.plugin.distribution,
                "version": entry.plugin.version,
            },
        )
        item["schemes"].append(scheme)
    return sorted(
        found.values(), key=lambda b: (b["distribution"] != "cachekit-core", b["backend"])
    )


def _backend_choices(installed: list[dict[str, Any]], autoload: bool) -> str:
    """What could serve as L2 here, and how to pick it (doctor, nothing configured)."""
    listed = "; ".join(
        f"{b['backend']} ({', '.join(s + '://' for s in b['schemes'])}) from "
        f"{b['distribution']} {b['version']}"
        for b in installed
    )
    parts = [f"Installed backends: {listed or 'none'}."]
    if not autoload:
        parts.append("(CACHEKIT_DISABLE_PLUGIN_AUTOLOAD is set: installed plugins are not loaded.)")
    shared = [b for b in installed if b["distribution"] != "cachekit-core"]
    if shared:
        scheme = shared[0]["schemes"][0]
        parts.append(f"Pick one with CACHEKIT_BACKEND={scheme}://... (memory:// is per process).")
    else:
        parts.append("memory:// is per process: it shares nothing between processes.")
    if not any(b["distribution"] == "cachekit-redis" for b in installed):
        parts.append(
            "For Redis as a shared L2: pip install cachekit-redis and export "
            "CACHEKIT_REDIS_URL=redis://host:6379/0."
        )
    return " ".join(parts)


def _backend_section(
    report: _Report, reg: Registry, environ: dict[str, str], timeout: float, scrub: _Scrubber
) -> None:
    from urllib.parse import urlsplit

    from cachekit.config import backend_from_env, redact_url
    from cachekit.errors import PluginNotFoundError

    url, variable = backend_from_env(environ)
    if url is None or variable is None:
        installed = _installed_backends(reg)
        report.backend = {
            "url": None,
            "variable": None,
            "mode": "L1 only",
            "installed": installed,
        }
        report.add(
            "backend",
            OK,
            "none: L1 only (in-process). " + _backend_choices(installed, reg.autoload),
        )
        return
    shown = redact_url(url)
    report.backend = {"url": shown, "variable": variable, "mode": "L1 + L2"}
    try:
        scheme = urlsplit(url).scheme
    except ValueError:
        scheme = ""
    if not scheme:
        report.add(
            "backend",
            FAIL,
            f"[E040] {variable}={shown!r} has no URL scheme; expected e.g. "
            "redis://localhost:6379/0 or memory://",
            "E040",
        )
        return
    report.add("backend", OK, f"{shown} (from {variable})")
    try:
        spec = reg.backend(scheme)
    except PluginNotFoundError as exc:
        if variable == "REDIS_URL":
            # The decorator ignores REDIS_URL it cannot serve (other tools use it too).
            report.backend["mode"] = "L1 only (REDIS_URL ignored)"
            report.add(
                "backend plugin",
                WARN,
                f"[{exc.code}] {exc.message}; REDIS_URL is ignored and caching is L1 only",
                exc.code,
            )
        else:
            report.fail("backend plugin", exc)
        return
    except CachekitError as exc:
        report.fail("backend plugin", exc)
        return
    owner = reg.backends[scheme].plugin
    report.backend["plugin"] = owner.name
    report.backend["distribution"] = f"{owner.distribution} {owner.version}"
    report.add(
        "backend plugin",
        OK,
        f"{scheme}:// is served by backend {spec.name!r} of {owner.distribution} {owner.version}",
    )
    outcome = _ping(spec.factory, url, timeout)
    if outcome.get("timeout"):
        report.backend["reachable"] = False
        report.add(
            "reachability",
            FAIL,
            f"no answer from {shown} within {timeout:g} s (is the server up? is the host "
            "reachable from here?)",
        )
        return
    error = outcome.get("error")
    if error is not None:
        report.backend["reachable"] = False
        if isinstance(error, CachekitError):
            stage = "could not create the backend: " if outcome.get("stage") == "build" else ""
            report.fail("reachability", error, stage)
            report.checks[-1].detail = scrub(report.checks[-1].detail)
        else:
            report.add(
                "reachability",
                FAIL,
                scrub(f"{shown}: {type(error).__name__}: {error}"),
            )
        return
    latency = float(outcome.get("latency", 0.0))
    report.backend["reachable"] = bool(outcome.get("ok"))
    report.backend["latency_ms"] = round(latency * 1e3, 3)
    if not outcome.get("ok"):
        report.add("reachability", FAIL, f"{shown}: ping() returned False")
        return
    detail = f"ping answered in {fmt_seconds(latency)}"
    if scheme == "memory":
        detail += " (memory:// lives in this process: it is not shared between processes)"
    report.add("reachability", OK, detail)


def _print_doctor(report: _Report) -> None:
    lines = [
        "cachekit doctor",
        "",
        f"  python     {report.python}",
        f"  cachekit   {report.cachekit}",
        "",
        "environment",
    ]
    if report.environment:
        width = max(len(n) for n in report.environment)
        lines += [f"  {n:<{width}}  {v}" for n, v in report.environment.items()]
    else:
        lines.append("  (no CACHEKIT_* variable or REDIS_URL set: every default applies)")
    lines += ["", "checks"]
    width = max(len(c.name) for c in report.checks)
    lines += [f"  {c.status:<4}  {c.name:<{width}}  {c.detail}" for c in report.checks]
    problems, warnings = report.problems, report.warnings
    lines.append("")
    if problems:
        lines.append(
            f"{len(problems)} problem(s), {len(warnings)} warning(s): see the {FAIL} lines above."
        )
    elif warnings:
        lines.append(f"no problem, {len(warnings)} warning(s).")
    else:
        lines.append("everything looks fine.")
    print("\n".join(lines))


def run(args: argparse.Namespace) -> int:
    import platform

    from cachekit.config import ENVIRONMENT

    environ = {n: v for n, v in os.environ.items() if n.startswith("CACHEKIT_") or n in ENVIRONMENT}
    scrub = _Scrubber(environ)
    import cachekit

    report = _Report(
        python=f"{platform.python_version()} ({sys.executable})",
        cachekit=f"{version()} ({os.path.dirname(cachekit.__file__)})",
    )
    _environment_section(report, environ)
    _validation_section(report)
    reg, strict_error = load_registry()
    _plugins_section(report, reg, strict_error)
    _backend_section(report, reg, environ, args.timeout, scrub)
    for check in report.checks:  # plugin errors are foreign text too
        check.detail = scrub(check.detail)
    if args.json:
        print(json.dumps(report.as_dict(), indent=2))
    else:
        _print_doctor(report)
    return 1 if report.problems else 0
