"""``cachekit demo``: a slow function behind @cache, on the embedded default (L1 only)."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from typing import IO, Any

from cachekit.cli._common import fmt_seconds

TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse

__all__ = ["run"]


def _is_tty(stream: IO[str]) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # closed or replaced streams
        return False


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
            self._draw(done, f"{label}  {fmt_seconds(seconds)}")
        else:
            self.stream.write(f"  [{done}/{self.total}] {label}  {fmt_seconds(seconds)}\n")
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


def run(args: argparse.Namespace) -> int:
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
                fmt_seconds(first[uid]),
                fmt_seconds(cached[uid]),
                f"{speedup:,.0f}x",
            )
        )
    total_first, total_cached = sum(first.values()), sum(cached.values())
    rows.append((f"all {keys} calls", fmt_seconds(total_first), fmt_seconds(total_cached), ""))
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
