"""What every benchmark shares: result records, timing loops and the printed report.

A benchmark module exposes ``NAME``, ``TITLE`` and ``run(quick: bool) -> Section``.
A :class:`Section` holds *figures* (raw measurements, for reading) and *lines*
(ratios or checks, each either a target with PASS/MISS or information).
"""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from itertools import repeat
from typing import Any

__all__ = [
    "Figure",
    "Line",
    "Section",
    "calibrate",
    "gc_paused",
    "rotated",
    "time_calls",
]


@dataclass
class Figure:
    """One measured quantity: ``best`` (min of repeats, or the headline) and ``median``."""

    name: str
    best: float
    median: float | None
    unit: str
    note: str = ""


@dataclass
class Line:
    """A ratio or a check. With ``limit`` set it is a target (PASS/MISS); else information."""

    kind: str  # "ratio" | "delta" | "check"
    name: str
    value: float | bool
    unit: str = "x"
    limit: float | bool | None = None
    op: str = "<="  # "<=" | ">=" | "=="
    note: str = ""

    @property
    def is_target(self) -> bool:
        return self.limit is not None

    @property
    def passed(self) -> bool | None:
        if self.limit is None:
            return None
        if self.op == "<=":
            return bool(self.value <= self.limit)
        if self.op == ">=":
            return bool(self.value >= self.limit)
        return self.value == self.limit

    @property
    def status(self) -> str:
        passed = self.passed
        return "info" if passed is None else ("PASS" if passed else "MISS")

    def value_text(self) -> str:
        return _fmt_value(self.value, self.unit)

    def target_text(self) -> str:
        if self.limit is None:
            return "(information)"
        if self.kind == "check":
            return f"expected {_fmt_value(self.limit, self.unit)}"
        return f"target {self.op} {_fmt_value(self.limit, self.unit)}"


@dataclass
class Section:
    """The outcome of one benchmark."""

    name: str
    title: str
    method: str = ""
    figures: list[Figure] = field(default_factory=list)
    lines: list[Line] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    error: str | None = None

    def figure(self, *args: Any, **kwargs: Any) -> Figure:
        fig = Figure(*args, **kwargs)
        self.figures.append(fig)
        return fig

    def line(self, *args: Any, **kwargs: Any) -> Line:
        ln = Line(*args, **kwargs)
        self.lines.append(ln)
        return ln

    def render(self) -> str:
        out = [f"== {self.name}: {self.title} =="]
        if self.method:
            out.append(f"   {self.method}")
        if self.error:
            out.append(f"   ERROR {self.error}")
        width = max((len(f.name) for f in self.figures), default=0)
        for f in self.figures:
            med = f"  (median {_fmt_num(f.median)})" if f.median is not None else ""
            note = f"  {f.note}" if f.note else ""
            out.append(f"   {f.name:<{width}}  {_fmt_num(f.best):>11} {f.unit}{med}{note}")
        if self.lines:
            out.append("")
        lwidth = max((len(ln.name) for ln in self.lines), default=0)
        for ln in self.lines:
            note = f"  {ln.note}" if ln.note else ""
            out.append(
                f"   {ln.kind:<5}  {ln.name:<{lwidth}}  {ln.value_text():>10}  "
                f"{ln.target_text():<20}  {ln.status}{note}"
            )
        out.extend(f"   note: {n}" for n in self.notes)
        out.append(f"   ({self.seconds:.1f} s)")
        return "\n".join(out)


def _fmt_num(value: float | None) -> str:
    if value is None:
        return "-"
    if abs(value) >= 1e6:
        return f"{value:,.0f}"
    if abs(value) >= 100:
        return f"{value:.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def _fmt_value(value: float | bool, unit: str) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if unit == "x":
        return f"{value:.2f}x"
    return f"{_fmt_num(value)} {unit}"


@contextmanager
def gc_paused() -> Iterator[None]:
    """Collect once, then keep the cyclic GC out of the timed region."""
    was_enabled = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def time_calls(fn: Callable[[Any], Any], arg: Any, n: int) -> float:
    """Nanoseconds per call of ``fn(arg)`` over ``n`` calls (timeit-style: all locals)."""
    clock = time.perf_counter_ns
    it = repeat(None, n)
    start = clock()
    for _ in it:
        fn(arg)
    return (clock() - start) / n


def time_empty_loop(n: int) -> float:
    """Nanoseconds per iteration of the bare loop that :func:`time_calls` runs."""
    clock = time.perf_counter_ns
    it = repeat(None, n)
    start = clock()
    for _ in it:
        pass
    return (clock() - start) / n


def calibrate(fn: Callable[[Any], Any], arg: Any, budget_s: float) -> int:
    """A loop count that makes one timing of ``fn(arg)`` last about ``budget_s``.

    The per-call estimate is the best of three timings, so that a busy moment during
    calibration does not shrink every later timing.
    """
    n = 100
    while True:
        per_call = time_calls(fn, arg, n)
        if per_call * n >= 0.05 * budget_s * 1e9 or n >= 10_000_000:
            break
        n *= 4
    per_call = min(per_call, time_calls(fn, arg, n), time_calls(fn, arg, n))
    return max(100, int(budget_s * 1e9 / max(per_call, 1.0)))


def rotated(items: Sequence[Any], shift: int) -> list[Any]:
    """``items`` rotated by ``shift``, so every contender runs in every position."""
    if not items:
        return []
    k = shift % len(items)
    return [*items[k:], *items[:k]]


def median(values: Sequence[float]) -> float:
    return statistics.median(values)
