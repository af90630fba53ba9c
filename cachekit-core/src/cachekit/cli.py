"""The ``cachekit`` command line: ``plugins``, ``doctor``, ``keygen`` and ``demo``.

    cachekit plugins [--json]      what is installed and what each plugin provides
    cachekit doctor [--json]       the configuration cachekit sees, checked
    cachekit keygen [--bytes N]    a fresh master key, for CACHEKIT_MASTER_KEY
    cachekit demo                  a slow function behind @cache, on the L1 default

Reports go to stdout, progress and errors to stderr. A :class:`CachekitError`
ends the command with its code and message on one line (exit status 1), never a
traceback. Secrets (master and signing keys, URL passwords) are never printed:
``doctor`` shows only their length and whether they are valid.

Only the standard library and cachekit itself are used; each command imports
what it needs when it runs, so ``cachekit keygen`` stays instant.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import IO, Any

from cachekit.errors import CachekitError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from cachekit.plugins import PluginInfo, Registry

__all__ = ["build_parser", "main"]

#: Environment variables whose values are secrets: shown as "set (N hex characters)".
SECRET_VARIABLES = ("CACHEKIT_MASTER_KEY", "CACHEKIT_SIGNING_KEY", "CACHEKIT_PREVIOUS_MASTER_KEYS")
#: Environment variables holding URLs: shown with any password redacted.
URL_VARIABLES = ("CACHEKIT_BACKEND", "CACHEKIT_REDIS_URL", "REDIS_URL")

#: The floor of cachekit.signing.MIN_KEY_BYTES, repeated here so keygen imports nothing.
MIN_KEY_BYTES = 32
MAX_KEY_BYTES = 1024

OK, WARN, FAIL = "ok", "warn", "FAIL"

_Handler = Callable[[argparse.Namespace], int]


# --- small helpers -----------------------------------------------------------------------


def _version() -> str:
    from cachekit import __version__

    return __version__


def _fmt_seconds(seconds: float) -> str:
    """A duration with a unit a human reads at a glance (ASCII only)."""
    if seconds >= 1:
        return f"{seconds:.2f} s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.1f} ms"
    return f"{seconds * 1e6:.1f} us"


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _is_tty(stream: IO[str]) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # closed or replaced streams
        return False


@contextlib.contextmanager
def _quiet_plugin_warnings() -> Iterator[None]:
    """Silence the registry's own E042/E043 warnings: the commands report them."""
    logger = logging.getLogger("cachekit.plugins")

    def drop_all(record: logging.LogRecord) -> bool:
        return False

    logger.addFilter(drop_all)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r"\[E04[23]\]")
            yield
    finally:
        logger.removeFilter(drop_all)


def _load_registry() -> tuple[Registry, CachekitError | None]:
    """The process registry; with CACHEKIT_STRICT_PLUGINS, a lenient one plus the error.

    Strict mode turns a broken plugin into an exception, which is right for an
    application but would leave ``plugins`` and ``doctor`` with nothing to show.
    """
    from cachekit import plugins
    from cachekit.errors import PluginConflictError, PluginLoadError

    with _quiet_plugin_warnings():
        try:
            return plugins.registry(), None
        except (PluginLoadError, PluginConflictError) as exc:
            lenient = plugins.Registry()
            lenient.strict = False
            return lenient.load(), exc


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


# --- cachekit plugins --------------------------------------------------------------------


_STATUS_LABELS = {"ok": "ok", "failed": "FAILED TO LOAD", "empty": "PROVIDES NOTHING"}


def _plugin_lines(info: PluginInfo, verbose: bool) -> list[str]:
    """The ``cachekit plugins`` entry of one plugin."""
    out = [
        f"{info.name}  ({info.distribution} {info.version})  "
        f"{_STATUS_LABELS.get(info.status, info.status)}",
        f"  module    {info.module}",
    ]
    if info.error:
        out.append(f"  error     {_one_line(info.error)}")
        if verbose and info.traceback:
            out += ["  traceback", *("    " + line for line in info.traceback.splitlines())]
        return out
    out.append(f"  hooks     {', '.join(info.hooks) or '(none)'}")
    label = "provides"
    for item in info.provides or ["(nothing: its hooks returned no records)"]:
        note = info.descriptions.get(item, "")
        out.append(f"  {label:<9} {item}" + (f"  - {note}" if note else ""))
        label = ""
    label = "conflict"
    for item in info.conflicts:
        out.append(f"  {label:<9} {item}")
        label = ""
    return out


def _cmd_plugins(args: argparse.Namespace) -> int:
    """List the plugins; exit 1 when one is left out (E042) or two claim a name (E043)."""
    reg, strict_error = _load_registry()
    broken = reg.errors()
    conflicts = reg.conflicts()
    status = 1 if broken or conflicts else 0
    if args.json:
        records = [{**p.as_dict(), "traceback": p.traceback} for p in reg.plugins]
        print(json.dumps(records, indent=2))
        return status
    out: list[str] = []
    for info in reg.plugins:
        out += [*_plugin_lines(info, args.verbose > 0), ""]
    if conflicts:
        out += ["conflicts", *(f"  [E043] {c}" for c in conflicts), ""]
    loaded = [p for p in reg.plugins if not p.error]
    summary = f"{len(loaded)} plugin(s) loaded"
    failed = [p for p in broken if p.status != "empty"]
    empty = [p for p in broken if p.status == "empty"]
    if failed:
        summary += f", {len(failed)} failed to load"
    if empty:
        summary += f", {len(empty)} provide nothing"
    if broken:
        summary += " (left out; the others work)"
    if conflicts:
        summary += f", {len(conflicts)} name(s) claimed twice (E043)"
    if not reg.autoload:
        summary += "; CACHEKIT_DISABLE_PLUGIN_AUTOLOAD is set: built-ins only"
    out.append(summary)
    if broken and not args.verbose and any(p.traceback for p in broken):
        out.append("Run `cachekit plugins -v` to see the tracebacks.")
    if strict_error is not None:
        out.append(
            "note: CACHEKIT_STRICT_PLUGINS is set, so applications using cachekit will fail "
            f"with: {_one_line(str(strict_error))}"
        )
    print("\n".join(out))
    return status


# --- cachekit doctor ---------------------------------------------------------------------


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
        self.checks.append(_Check(name, status, _one_line(detail), code))

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
            f"{_one_line(info.error or '').removeprefix('provides nothing: ')}; "
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
    detail = f"ping answered in {_fmt_seconds(latency)}"
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


def _cmd_doctor(args: argparse.Namespace) -> int:
    import platform

    from cachekit.config import ENVIRONMENT

    environ = {n: v for n, v in os.environ.items() if n.startswith("CACHEKIT_") or n in ENVIRONMENT}
    scrub = _Scrubber(environ)
    import cachekit

    report = _Report(
        python=f"{platform.python_version()} ({sys.executable})",
        cachekit=f"{_version()} ({os.path.dirname(cachekit.__file__)})",
    )
    _environment_section(report, environ)
    _validation_section(report)
    reg, strict_error = _load_registry()
    _plugins_section(report, reg, strict_error)
    _backend_section(report, reg, environ, args.timeout, scrub)
    for check in report.checks:  # plugin errors are foreign text too
        check.detail = scrub(check.detail)
    if args.json:
        print(json.dumps(report.as_dict(), indent=2))
    else:
        _print_doctor(report)
    return 1 if report.problems else 0


# --- cachekit keygen ---------------------------------------------------------------------


def _key_bytes(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a whole number of bytes, got {text!r}"
        ) from None
    if n < MIN_KEY_BYTES:
        raise argparse.ArgumentTypeError(
            f"a master key must be at least {MIN_KEY_BYTES} bytes (got {n}); "
            f"the default, {MIN_KEY_BYTES}, gives 64 hex characters"
        )
    if n > MAX_KEY_BYTES:
        raise argparse.ArgumentTypeError(f"at most {MAX_KEY_BYTES} bytes (got {n})")
    return n


def _cmd_keygen(args: argparse.Namespace) -> int:
    import secrets

    print(secrets.token_hex(args.bytes))
    return 0


# --- cachekit demo -----------------------------------------------------------------------


class _Progress:
    """A one-line bar redrawn with '\\r' on a terminal; one line per step elsewhere."""

    WIDTH = 24

    def __init__(self, total: int, stream: IO[str] | None) -> None:
        self.total = total
        self.stream = stream
        self.tty = stream is not None and _is_tty(stream)
        self._shown = 0

    def _draw(self, done: int, text: str) -> None:
        assert self.stream is not None
        filled = round(self.WIDTH * done / self.total) if self.total else self.WIDTH
        line = f"  [{'#' * filled}{'-' * (self.WIDTH - filled)}] {done}/{self.total}  {text}"
        pad = max(0, self._shown - len(line))
        self.stream.write("\r" + line + " " * pad)
        self.stream.flush()
        self._shown = len(line)

    def step(self, done: int, label: str) -> None:
        """About to run step ``done + 1``."""
        if self.stream is not None and self.tty:
            self._draw(done, f"{label} ...")

    def stepped(self, done: int, label: str, seconds: float) -> None:
        """Step ``done`` finished after ``seconds``."""
        if self.stream is None:
            return
        if self.tty:
            self._draw(done, f"{label}  {_fmt_seconds(seconds)}")
        else:
            self.stream.write(f"  [{done}/{self.total}] {label}  {_fmt_seconds(seconds)}\n")
            self.stream.flush()

    def close(self) -> None:
        if self.stream is not None and self.tty and self._shown:
            self.stream.write("\n")
            self.stream.flush()


@contextlib.contextmanager
def _embedded_defaults() -> Iterator[list[str]]:
    """Hide CACHEKIT_* and REDIS_URL from cachekit for the duration (restored after)."""
    hidden = {n: v for n, v in os.environ.items() if n.startswith("CACHEKIT_") or n == "REDIS_URL"}
    for name in hidden:
        del os.environ[name]
    try:
        yield sorted(hidden)
    finally:
        os.environ.update(hidden)


def _cmd_demo(args: argparse.Namespace) -> int:
    with _embedded_defaults() as ignored:
        return _run_demo(args.keys, args.delay, None if args.no_progress else sys.stderr, ignored)


def _run_demo(keys: int, delay: float, progress_stream: IO[str] | None, ignored: list[str]) -> int:
    import time

    from cachekit import cache

    ttl = 60

    # backend=None: L1 only, whatever the environment says (CACHEKIT_REDIS_URL, REDIS_URL).
    @cache(ttl=ttl, namespace="demo", backend=None)
    def load_report(user_id: int) -> dict[str, Any]:
        time.sleep(delay)  # stands in for a slow query or HTTP call
        return {
            "user_id": user_id,
            "name": f"user-{user_id}",
            "orders": [user_id * 100 + i for i in range(3)],
            "total": round(user_id * 42.5, 2),
        }

    say = print
    say("cachekit demo: a slow function behind @cache, on the embedded default (L1 only)")
    if ignored:
        say(f"  (ignoring {', '.join(ignored)}: the demo always runs on the defaults)")
    say("")
    say(f"    @cache(ttl={ttl}, backend=None)")
    say("    def load_report(user_id: int) -> dict:")
    say(f"        time.sleep({delay:g})  # a slow query")
    say('        return {"user_id": user_id, "name": ..., "orders": [...], "total": ...}')
    say("")
    ids = list(range(1, keys + 1))
    say(f"1. First calls, {keys} distinct user ids: each is a miss, so the function runs.")
    sys.stdout.flush()
    progress = _Progress(keys, progress_stream)
    first: dict[int, float] = {}
    try:
        for i, uid in enumerate(ids):
            label = f"load_report({uid})"
            progress.step(i, label)
            start = time.perf_counter()
            load_report(uid)
            first[uid] = time.perf_counter() - start
            progress.stepped(i + 1, label, first[uid])
    finally:
        progress.close()
    say("2. The same calls again: every one is answered from L1, the function does not run.")
    cached: dict[int, float] = {}
    for uid in ids:
        start = time.perf_counter()
        load_report(uid)
        cached[uid] = time.perf_counter() - start
    say("")

    rows = [("call", "first call", "cached call", "speedup")]
    for uid in ids:
        speedup = first[uid] / cached[uid] if cached[uid] > 0 else float("inf")
        rows.append(
            (
                f"load_report({uid})",
                _fmt_seconds(first[uid]),
                _fmt_seconds(cached[uid]),
                f"{speedup:,.0f}x",
            )
        )
    total_first, total_cached = sum(first.values()), sum(cached.values())
    rows.append((f"all {keys} calls", _fmt_seconds(total_first), _fmt_seconds(total_cached), ""))
    widths = [max(len(r[c]) for r in rows) for c in range(4)]
    for n, row in enumerate(rows):
        cells = (cell.rjust(w) for cell, w in zip(row[1:], widths[1:], strict=True))
        say(("  " + row[0].ljust(widths[0]) + "".join("   " + c for c in cells)).rstrip())
        if n == 0 or n == len(rows) - 2:
            say("  " + "-" * (sum(widths) + 3 * 3))
    say("")

    info = load_report.cache_info()
    say(
        f"cache_info(): hits={info.hits} misses={info.misses} l1_hits={info.l1_hits} "
        f"l2_hits={info.l2_hits} size={info.size} hit_rate={info.hit_rate:.0%}"
    )
    as_expected = info.hits == keys and info.misses == keys
    if not as_expected:
        say(f"  unexpected: {keys} hits and {keys} misses were expected")
    say("")

    uid = ids[0]
    before = load_report(uid)
    expected = dict(before, orders=list(before["orders"]))
    mine = load_report(uid)
    mine["name"] = "changed by the caller"
    mine["orders"].append(-1)
    after = load_report(uid)
    copy_safe = after == expected
    say(f"Copy safety: r = load_report({uid}); r['name'] = '...'; r['orders'].append(-1)")
    if copy_safe:
        say(
            f"  next load_report({uid}) -> name={after['name']!r}, orders={after['orders']}: "
            "unchanged, every caller gets its own copy"
        )
    else:
        say(f"  next load_report({uid}) -> {after!r}: the cached value was CHANGED")
    say("")
    say("This run used L1 only: an in-process cache, gone when the process exits.")
    say("To share results between processes and hosts, add Redis as the L2:")
    for line in _redis_next_steps():
        say(f"    {line}")
    return 0 if as_expected and copy_safe else 1


def _redis_next_steps() -> list[str]:
    """What adding Redis takes from here: the install (unless done), then the URL."""
    import importlib.util

    steps = ["export CACHEKIT_REDIS_URL=redis://localhost:6379/0"]
    if importlib.util.find_spec("cachekit_redis") is not None:
        return ["# cachekit-redis is installed here", *steps]
    return [
        'pip install "cachekit-core[redis]"',
        '# from a checkout: make dist && pip install --find-links dist "cachekit-core[redis]"',
        *steps,
    ]


# --- the parser ----------------------------------------------------------------------------


def _non_negative_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds, got {text!r}") from None
    if not 0 <= value <= 60:
        raise argparse.ArgumentTypeError(f"must be between 0 and 60 seconds, got {text!r}")
    return value


def _positive_seconds(text: str) -> float:
    value = _non_negative_seconds(text)
    if value == 0:
        raise argparse.ArgumentTypeError("must be greater than 0")
    return value


def _key_count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if not 1 <= value <= 1000:
        raise argparse.ArgumentTypeError(f"must be between 1 and 1000, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(
        prog="cachekit",
        formatter_class=formatter,
        description="cachekit: a function-result cache (in-process L1, optional shared L2).",
        epilog=(
            "examples:\n"
            "  cachekit demo                        see @cache at work (no Redis needed)\n"
            "  cachekit doctor                      check what cachekit sees in this environment\n"
            "  cachekit plugins                     list installed plugins and what they provide\n"
            "  export CACHEKIT_MASTER_KEY=$(cachekit keygen)\n"
            "\n"
            "Run `cachekit COMMAND --help` for the options of a command."
        ),
    )
    parser.add_argument(
        "--version",
        action="version",
        version=f"cachekit {_version()} (Python {sys.version.split()[0]})",
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help=_VERBOSE_HELP)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands")

    p = sub.add_parser(
        "plugins",
        formatter_class=formatter,
        help="list installed plugins, what they provide, and load errors",
        description=(
            "List every cachekit plugin: the core's built-in one and each entry point of the\n"
            "'cachekit' group, with its distribution and version, the hooks it implements,\n"
            "the backends (URL schemes), serializers and encryptors it provides, the error\n"
            "of any plugin that failed to load or provides nothing (the others keep working;\n"
            "-v adds the traceback), and every name two plugins claim (E043).\n"
            "\n"
            "exit status: 0 every plugin loaded and no name is claimed twice; 1 a plugin\n"
            "failed to load or provides nothing (E042), or two plugins claim one name (E043);\n"
            "2 wrong usage."
        ),
    )
    p.add_argument("--json", action="store_true", help="print a JSON list instead of text")
    _add_verbose(p, f"also print the traceback of each plugin that failed to load; {_VERBOSE_HELP}")
    p.set_defaults(handler=_cmd_plugins)

    p = sub.add_parser(
        "doctor",
        formatter_class=formatter,
        help="check the configuration cachekit sees; exit 1 on a problem",
        description=(
            "Show the configuration cachekit sees (versions, CACHEKIT_* variables; secrets\n"
            "only as their length and validity, URL passwords redacted), validate it, name\n"
            "the backend that would be used and from which variable, check that a plugin\n"
            "serves its URL scheme and that the backend answers a ping, and report plugins\n"
            "that failed to load. Exit status: 0 when everything is fine, 1 on a problem\n"
            "(warnings alone do not fail)."
        ),
    )
    p.add_argument("--json", action="store_true", help="print a JSON report instead of text")
    p.add_argument(
        "--timeout",
        type=_positive_seconds,
        default=3.0,
        metavar="SECONDS",
        help="how long to wait for the backend's ping (default: 3)",
    )
    _add_verbose(p)
    p.set_defaults(handler=_cmd_doctor)

    p = sub.add_parser(
        "keygen",
        formatter_class=formatter,
        help="print a new random master key (hex) for CACHEKIT_MASTER_KEY",
        description=(
            "Print a new random key, hex-encoded, on stdout and nothing else, so that\n"
            "\n"
            "  export CACHEKIT_MASTER_KEY=$(cachekit keygen)\n"
            "\n"
            "works. The key comes from the operating system's CSPRNG (secrets.token_hex).\n"
            "Keep it out of version control; whoever holds it can read encrypted entries."
        ),
    )
    p.add_argument(
        "--bytes",
        type=_key_bytes,
        default=MIN_KEY_BYTES,
        metavar="N",
        help=f"key length in bytes, at least {MIN_KEY_BYTES} (default: {MIN_KEY_BYTES} = 64 hex "
        "characters)",
    )
    _add_verbose(p)
    p.set_defaults(handler=_cmd_keygen)

    p = sub.add_parser(
        "demo",
        formatter_class=formatter,
        help="watch @cache turn a slow function into a fast one (L1 only, no Redis)",
        description=(
            "Decorate a deliberately slow function with @cache, call it for a few keys\n"
            "(misses: the function runs), then call the same keys again (hits: served from\n"
            "the in-process L1), and show the timings, cache_info() and copy safety.\n"
            "Runs on the embedded default: no Redis, no environment needed."
        ),
    )
    p.add_argument(
        "--keys",
        type=_key_count,
        default=5,
        metavar="N",
        help="how many distinct keys to call (default: 5)",
    )
    p.add_argument(
        "--delay",
        type=_non_negative_seconds,
        default=0.3,
        metavar="SECONDS",
        help="how long the slow function takes per call (default: 0.3)",
    )
    p.add_argument("--no-progress", action="store_true", help="do not show progress on stderr")
    _add_verbose(p)
    p.set_defaults(handler=_cmd_demo)
    return parser


_VERBOSE_HELP = "log cachekit's own messages to stderr (-v: INFO, -vv: DEBUG)"


def _add_verbose(command: argparse.ArgumentParser, help: str = _VERBOSE_HELP) -> None:
    """-v/--verbose after the command too (`cachekit doctor -vv`), as before it."""
    command.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=argparse.SUPPRESS,  # keeps a `cachekit -v doctor` given before the command
        help=help,
    )


def _configure_logging(verbosity: int) -> None:
    if verbosity <= 0:
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    logger = logging.getLogger("cachekit")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG if verbosity > 1 else logging.INFO)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status (the console script exits with it)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: _Handler | None = getattr(args, "handler", None)
    if handler is None:
        parser.print_help(sys.stderr)
        return 2
    _configure_logging(args.verbose)
    try:
        return handler(args)
    except CachekitError as exc:
        print(f"cachekit: error: {_one_line(str(exc))}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("cachekit: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # `cachekit plugins | head`: the reader left. Silence the flush at exit.
        with contextlib.suppress(OSError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        return 1
