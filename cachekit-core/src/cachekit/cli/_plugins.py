"""``cachekit plugins``: what is installed and what each plugin provides."""

from __future__ import annotations

import json

from cachekit.cli._common import load_registry, one_line

TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse

    from cachekit.plugins import PluginInfo

__all__ = ["run"]

_STATUS_LABELS = {"ok": "ok", "failed": "FAILED TO LOAD", "empty": "PROVIDES NOTHING"}


def _plugin_lines(info: PluginInfo, verbose: bool) -> list[str]:
    """The ``cachekit plugins`` entry of one plugin."""
    out = [
        f"{info.name}  ({info.distribution} {info.version})  "
        f"{_STATUS_LABELS.get(info.status, info.status)}",
        f"  module    {info.module}",
    ]
    if info.error:
        out.append(f"  error     {one_line(info.error)}")
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


def run(args: argparse.Namespace) -> int:
    """List the plugins; exit 1 when one is left out (E042) or two claim a name (E043)."""
    reg, strict_error = load_registry()
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
            f"with: {one_line(str(strict_error))}"
        )
    print("\n".join(out))
    return status
