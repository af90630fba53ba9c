"""The checker of a randomized history: pure functions over recorded operations.

A history is a list of records (dicts), each with ``op`` and ``start``/``end`` times
from time.monotonic() (one clock for every process of the machine):

    {"op": "read", "fn", "key", "value": {"fn", "key", "v"}}  or  "error": "..."
    {"op": "write", "key", "version"}      the source of truth of key is now version
    {"op": "inv", "scope": {...}}          an invalidation returned (or "error": "...")
    {"op": "fault", "kind"}                a fault was active from start to end
    {"op": "final", "key", "version"}      the source's version at the end (start=end)

Scopes: {"kind": "entry", "fn", "key"}, {"kind": "function", "fn"},
{"kind": "namespace", "namespace"}, {"kind": "tag", "tag"}; ``groups`` maps each
function name to its {"namespace": ..., "tags": [...]}.

Rules (each broken one is a Violation):

exception   no caller ever gets an exception from the cache (reads and invalidations).
foreign     a read returns a value of its own function and key, never another's.
future      a read never returns a version that no write had started to make.
lost-write  each key's writes made versions 1..n, each once, and the source ends at n.
stale       no read returns a version older than what the last *certain* invalidation
            covering it guarantees, once that invalidation returned more than ``bound``
            before the read started. An invalidation guarantees, for every key it covers,
            the newest version whose write ended before the invalidation started (the
            writer protocol: change the source, then invalidate). An invalidation is
            *uncertain* (not checked) when it overlaps a fault window widened by
            ``before`` and ``after`` seconds: its backend operation may not have reached
            Redis (a timeout, an open breaker, a restart that lost it), or the other
            processes' notification streams may have been down (their new L1 entries are
            capped at 1 s then, not at ``bound``).

Staleness of a read: how long before its start the first invalidation that required a
newer version returned (0 when none did). The worst one is reported, violations or not.
"""

from __future__ import annotations

import bisect
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

BOUND = 0.05  # B: how soon after an invalidation returned every process stops serving the old value
FAULT_BEFORE = 0.5  # an invalidation this close before a fault started is uncertain
FAULT_AFTER = (
    1.0  # ... and this long after it ended (a timeout, breaker recovery, stream reconnect)
)


@dataclass(frozen=True)
class Violation:
    rule: str
    message: str
    record: dict[str, Any]
    cause: dict[str, Any] | None = None

    def __str__(self) -> str:
        text = f"[{self.rule}] {self.message}\n    op:    {_show(self.record)}"
        if self.cause is not None:
            text += f"\n    cause: {_show(self.cause)}"
        return text


@dataclass
class Report:
    operations: int = 0
    reads: int = 0
    writes: int = 0
    invalidations: int = 0
    uncertain_invalidations: int = 0
    faults: Counter[str] = field(default_factory=Counter)
    stale_reads: int = 0  # reads staler than some certain invalidation, within the bound or not
    worst_staleness: float = 0.0
    worst_read: dict[str, Any] | None = None
    # The same, counting only invalidations made by the reading process itself.
    worst_own_staleness: float = 0.0
    stream_outages: int = 0  # times a process's notification stream was down (or stalled)
    stalls: int = 0  # times a process was not scheduled for a while (of stream_outages)
    missed_reads: int = 0  # stale reads left out: the reader's stream was down meanwhile
    bound: float = BOUND
    violations: list[Violation] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.violations

    def summary(self) -> str:
        faults = ", ".join(f"{kind} {n}" for kind, n in sorted(self.faults.items())) or "none"
        lines = [
            f"operations checked: {self.operations} (reads {self.reads}, writes {self.writes}, "
            f"invalidations {self.invalidations}, "
            f"of which uncertain {self.uncertain_invalidations})",
            f"faults injected: {sum(self.faults.values())} ({faults})",
            f"violations: {len(self.violations)}",
            f"worst staleness: {self.worst_staleness * 1000:.1f} ms "
            f"({self.stale_reads} reads behind a returned invalidation, "
            f"bound {self.bound * 1000:.0f} ms); after the reader's own process's "
            f"invalidations: {self.worst_own_staleness * 1000:.1f} ms",
            f"notification stream outages: {self.stream_outages}, of which process stalls "
            f"{self.stalls} ({self.missed_reads} old reads left out: the reader's stream "
            f"was down)",
        ]
        by_rule = Counter(v.rule for v in self.violations)
        if by_rule:
            lines.append("violations by rule: " + ", ".join(f"{r} {n}" for r, n in by_rule.items()))
        return "\n".join(lines)


def _show(record: dict[str, Any]) -> str:
    keys = ("op", "process", "actor", "fn", "key", "value", "version", "scope", "kind", "error")
    parts = [f"{k}={record[k]!r}" for k in keys if k in record]
    if "start" in record:
        parts.append(f"start={record['start']:.6f} end={record.get('end', record['start']):.6f}")
    return " ".join(parts)


def covers(scope: dict[str, Any], fn: str, key: str, groups: dict[str, dict[str, Any]]) -> bool:
    kind = scope["kind"]
    if kind == "entry":
        return bool(scope["fn"] == fn and scope["key"] == key)
    if kind == "function":
        return bool(scope["fn"] == fn)
    if kind == "namespace":
        return bool(groups[fn]["namespace"] == scope["namespace"])
    if kind == "tag":
        return scope["tag"] in groups[fn]["tags"]
    raise ValueError(f"unknown scope {scope!r}")


def _overlaps(record: dict[str, Any], windows: list[tuple[float, float]]) -> bool:
    return any(record["start"] <= hi and record["end"] >= lo for lo, hi in windows)


def check(
    records: list[dict[str, Any]],
    groups: dict[str, dict[str, Any]],
    *,
    bound: float = BOUND,
    before: float = FAULT_BEFORE,
    after: float = FAULT_AFTER,
) -> Report:
    report = Report(bound=bound)
    reads = [r for r in records if r["op"] == "read"]
    writes = [r for r in records if r["op"] == "write"]
    invs = [r for r in records if r["op"] == "inv"]
    faults = [r for r in records if r["op"] == "fault"]
    finals = {r["key"]: r["version"] for r in records if r["op"] == "final"}
    report.reads, report.writes, report.invalidations = len(reads), len(writes), len(invs)
    report.operations = len(reads) + len(writes) + len(invs)
    report.faults.update(f["kind"] for f in faults)
    violations = report.violations

    for r in reads + invs:
        if "error" in r:
            violations.append(Violation("exception", "the caller got an exception", r))

    # Writes: versions 1..n per key, each once; the source ends at n.
    by_key: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for w in writes:
        by_key[w["key"]].append(w)
    for key in sorted(set(by_key) | set(finals)):
        versions = sorted(w["version"] for w in by_key.get(key, ()))
        if versions != list(range(1, len(versions) + 1)):
            dupes = sorted(v for v, n in Counter(versions).items() if n > 1)
            violations.append(
                Violation(
                    "lost-write",
                    f"key {key!r}: versions written are not 1..{len(versions)} "
                    f"(repeated: {dupes[:5]}, highest {versions[-1] if versions else None})",
                    {"op": "write", "key": key},
                )
            )
        if key in finals and finals[key] != len(versions):
            violations.append(
                Violation(
                    "lost-write",
                    f"key {key!r}: the source ends at version {finals[key]}, "
                    f"but {len(versions)} writes were made",
                    {"op": "final", "key": key, "version": finals[key]},
                )
            )
    # Per key: write ends (for the floor an invalidation guarantees) and write starts
    # (for "no version from the future").
    ends: dict[str, tuple[list[float], list[int]]] = {}
    starts: dict[str, tuple[list[float], list[int]]] = {}
    for key, ws in by_key.items():
        ends[key] = _prefix_max(sorted((w["end"], w["version"]) for w in ws))
        starts[key] = _prefix_max(sorted((w["start"], w["version"]) for w in ws))

    windows = [(f["start"] - before, f["end"] + after) for f in faults]
    certain = []
    for inv in invs:
        if "error" in inv or _overlaps(inv, windows):
            report.uncertain_invalidations += 1
        else:
            certain.append(inv)

    # For each (fn, key) read: the certain invalidations covering it, by end time, with
    # the prefix maximum of the version each guarantees; and the same for those made by
    # each process (the reader's own invalidations, a figure of its own).
    outages = stream_outages(records)
    report.stream_outages = sum(len(w) for w in outages.values())
    report.stalls = sum(1 for r in records if r["op"] == "stall")
    timelines: dict[tuple[str, str], _Timeline] = {}
    own: dict[tuple[str, str, Any], _Timeline] = {}
    for fn, key in {(r["fn"], r["key"]) for r in reads}:
        entries = sorted(
            (
                (inv["end"], _latest(ends.get(key), inv["start"]), inv)
                for inv in certain
                if covers(inv["scope"], fn, key, groups)
            ),
            key=lambda e: e[0],
        )
        timelines[(fn, key)] = _timeline(entries)
        for process in {inv.get("process") for _, _, inv in entries}:
            own[(fn, key, process)] = _timeline(
                [e for e in entries if e[2].get("process") == process]
            )

    for r in reads:
        if "error" in r:
            continue
        value = r.get("value")
        if (
            not isinstance(value, dict)
            or value.get("fn") != r["fn"]
            or value.get("key") != r["key"]
        ):
            violations.append(Violation("foreign", "the value is not this function's and key's", r))
            continue
        version = value["v"]
        if version > _latest(starts.get(r["key"]), r["end"], strict=False):
            violations.append(
                Violation("future", f"version {version} was never written before the read ended", r)
            )
        down = outages.get(r.get("process"), [])
        mine = own.get((r["fn"], r["key"], r.get("process")))
        if mine is not None:
            found = _behind(mine, version, r["start"], down, bound)
            if found is not None:
                report.worst_own_staleness = max(report.worst_own_staleness, found[0])
        found = _behind(timelines[(r["fn"], r["key"])], version, r["start"], down, bound)
        if found is None:
            if _behind(timelines[(r["fn"], r["key"])], version, r["start"], [], bound):
                report.missed_reads += 1
            continue
        staleness, floor, cause = found
        report.stale_reads += 1
        if staleness > bound:
            violation = Violation(
                "stale",
                f"returned version {version} {staleness * 1000:.1f} ms after an "
                f"invalidation that guarantees version >= {floor} returned",
                r,
                cause,
            )
            violations.append(violation)
        if staleness > report.worst_staleness:
            report.worst_staleness = staleness
            report.worst_read = r
    return report


_Timeline = tuple[list[float], list[int], list[int], list[dict[str, Any]]]
_Windows = list[tuple[float, float]]


def _timeline(entries: list[tuple[float, int, dict[str, Any]]]) -> _Timeline:
    """(end times, floors, prefix maxima of the floors, invalidations), by end time."""
    times = [end for end, _, _ in entries]
    floors = [floor for _, floor, _ in entries]
    best: list[int] = []
    for floor in floors:
        best.append(max(floor, best[-1] if best else 0))
    return times, floors, best, [inv for _, _, inv in entries]


def _behind(
    timeline: _Timeline, version: int, start: float, outages: _Windows, bound: float
) -> tuple[float, int, dict[str, Any]] | None:
    """(staleness, floor, invalidation) of the first invalidation that returned before
    ``start`` guaranteeing more than ``version``, leaving out those the reader's
    notification stream may have missed; None when there is none."""
    times, floors, best, causes = timeline
    i = bisect.bisect_right(best, version)  # before i, nothing guarantees more
    while i < len(times) and times[i] < start:
        cause = causes[i]
        if floors[i] > version and not _missed(cause, start, outages, bound):
            return start - times[i], floors[i], cause
        i += 1
    return None


def _missed(inv: dict[str, Any], start: float, outages: _Windows, bound: float) -> bool:
    """May the reader's process have missed this invalidation's notice, with a read
    starting at ``start``? Yes when its stream was down at some time from the
    invalidation's start to ``bound`` after its end, and came back (which resets every
    L1 and generation it feeds) later than ``bound`` before the read started."""
    latest = max(inv["start"], start - bound)
    return any(lo <= inv["end"] + bound and hi >= latest for lo, hi in outages)


def stream_outages(records: list[dict[str, Any]]) -> dict[Any, _Windows]:
    """Per process, when its notification stream was (or may have been) down.

    From "stream" samples (connected, reconnects) taken every few milliseconds: from the
    last sample that saw it up to the first that sees it up again; a reconnect between
    two samples that both saw it up counts as down between them. A "stall" (the process
    was not scheduled: a sampler's sleep overshot) counts as down while it lasted.
    """
    by_process: dict[Any, list[dict[str, Any]]] = defaultdict(list)
    for r in records:
        if r["op"] == "stream":
            by_process[r.get("process")].append(r)
    outages: dict[Any, _Windows] = {}
    for process, samples in by_process.items():
        samples.sort(key=lambda r: r["start"])
        windows: _Windows = []
        last_up: dict[str, Any] | None = None
        down_since: float | None = None
        for sample in samples:
            if not sample["connected"]:
                if down_since is None:
                    down_since = last_up["start"] if last_up is not None else sample["start"]
                continue
            if down_since is not None:
                windows.append((down_since, sample["start"]))
                down_since = None
            elif last_up is not None and sample["reconnects"] != last_up["reconnects"]:
                windows.append((last_up["start"], sample["start"]))
            last_up = sample
        if down_since is not None:
            windows.append((down_since, float("inf")))
        outages[process] = windows
    for r in records:
        if r["op"] == "stall":
            outages.setdefault(r.get("process"), []).append((r["start"], r["end"]))
    return outages


def _prefix_max(pairs: list[tuple[float, int]]) -> tuple[list[float], list[int]]:
    times, best, highest = [], [], 0
    for t, v in pairs:
        highest = max(highest, v)
        times.append(t)
        best.append(highest)
    return times, best


def _latest(table: tuple[list[float], list[int]] | None, t: float, strict: bool = True) -> int:
    """The highest version among entries before t (at or before t when not strict)."""
    if table is None:
        return 0
    times, best = table
    i = (bisect.bisect_left if strict else bisect.bisect_right)(times, t)
    return best[i - 1] if i else 0
