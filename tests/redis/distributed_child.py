"""Functions shared by the Cluster/Sentinel tests and the child processes they start.

The parent test imports this module by name and runs children with
``python -c "import distributed_child; distributed_child.main()" <mode> ...`` so both
sides decorate the same ``distributed_child.lookup`` and share its keys. The backend
comes from CACHEKIT_BACKEND (a ``redis+cluster://`` or ``redis+sentinel://`` URL); the
"database" is a JSON file named by DIST_SOURCE, ``{key: version}``, that the parent
rewrites before it invalidates.

The parent side (``Child``, ``reset``, ``write_source``, ``make_copy``, ``wait_for``) lives
here too, so both test files share it.

Modes (each prints one line per event, flushed):

* ``read KEY...``: call lookup(KEY) once each, then print ``RESULT <json>`` with, per
  key, the version, the pid that computed it and whether this call was an L2 hit.
* ``watch SECONDS KEY...``: warm every key, wait for the notification stream, print
  ``READY <json>``; then keep calling lookup over all keys and print
  ``CHANGED <key> <monotonic time> <version> <healthy> <notifications>`` whenever a
  key's version differs from the last one seen, and ``HEALTH <healthy> <monotonic time>``
  whenever the notification stream is lost or back. Ends after SECONDS.
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cachekit import cache
from cachekit.coherence import router_for

NAMESPACE = "dist"
TAG = "dist-tag"


def source() -> dict[str, str]:
    with open(os.environ["DIST_SOURCE"]) as handle:
        return json.load(handle)


@cache(ttl=60, namespace=NAMESPACE, tags=[TAG])
def lookup(key: str) -> dict:
    return {"key": key, "v": source().get(key, "v0"), "pid": os.getpid()}


def _notifications() -> int:
    coherence = lookup.__cachekit__.coherence
    return router_for(coherence).notifications if coherence is not None else -1


def _healthy() -> bool:
    coherence = lookup.__cachekit__.coherence
    return bool(coherence is not None and coherence.healthy)


def _read(keys: list[str]) -> None:
    out = {}
    for key in keys:
        before = lookup.cache_info().l2_hits
        value = lookup(key)
        out[key] = [value["v"], value["pid"], lookup.cache_info().l2_hits > before]
    print("RESULT " + json.dumps(out), flush=True)


def _watch(seconds: float, keys: list[str]) -> None:
    deadline = time.monotonic() + seconds
    seen = {key: lookup(key)["v"] for key in keys}
    while not _healthy() and time.monotonic() < deadline:
        time.sleep(0.005)
    healthy = _healthy()
    print("READY " + json.dumps({"versions": seen, "healthy": healthy}), flush=True)
    while time.monotonic() < deadline:
        if _healthy() != healthy:
            healthy = not healthy
            print(f"HEALTH {healthy} {time.monotonic():.6f}", flush=True)
        for key in keys:
            version = lookup(key)["v"]
            if version != seen[key]:
                seen[key] = version
                print(
                    f"CHANGED {key} {time.monotonic():.6f} {version} {_healthy()} "
                    f"{_notifications()}",
                    flush=True,
                )
        time.sleep(0.0005)


def main() -> None:
    mode = sys.argv[1]
    if mode == "read":
        _read(sys.argv[2:])
    elif mode == "watch":
        _watch(float(sys.argv[2]), sys.argv[3:])
    else:
        raise SystemExit(f"unknown mode {mode}")


# --------------------------------------------------------------------------------------------
# The parent side

HERE = Path(__file__).parent


def write_source(path: Path, versions: dict[str, str]) -> None:
    """Atomically replace the "database" the functions read."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(versions))
    os.replace(tmp, path)


def reset(*functions: object) -> None:
    """Forget what earlier tests resolved (backend, generations, L1, counters)."""
    for fn in functions or (lookup,):
        state = fn.__cachekit__  # type: ignore[attr-defined]
        state.plan = None
        state.coherence = None
        state.gens_ok = False
        state.builder.salt = b""
        state.index.clear()
        state.own_writes.clear()
        state.reset_stats()
        if state.l1 is not None:
            state.l1.clear()


class Child:
    """A child process running ``main()``; its lines are read by a thread into a queue."""

    def __init__(
        self, backend_url: str, source: Path, *args: object, env: dict[str, str] | None = None
    ) -> None:
        environ = {k: v for k, v in os.environ.items() if not k.startswith("CACHEKIT_")}
        environ.update(CACHEKIT_BACKEND=backend_url, DIST_SOURCE=str(source), PYTHONPATH=str(HERE))
        environ.update(env or {})
        self.process = subprocess.Popen(
            [sys.executable, "-c", "import distributed_child; distributed_child.main()"]
            + [str(a) for a in args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=environ,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self._pumper = threading.Thread(target=self._pump, daemon=True)
        self._pumper.start()

    def _pump(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put("")  # EOF

    def line(self, timeout: float = 15.0) -> str:
        """The next line; fails with the child's stderr on EOF or timeout."""
        try:
            line = self.lines.get(timeout=timeout)
        except queue.Empty:
            line = ""
        if not line:
            self.stop()
            assert self.process.stderr is not None
            raise AssertionError(f"child said nothing more; stderr:\n{self.process.stderr.read()}")
        return line

    def expect(self, word: str, timeout: float = 15.0) -> str:
        """The rest of the next line, which must start with ``word`` (HEALTH lines are
        skipped unless asked for)."""
        line = self.line(timeout)
        while line.startswith("HEALTH ") and word != "HEALTH":
            line = self.line(timeout)
        assert line.startswith(word + " "), line
        return line.split(" ", 1)[1]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(10)

    def __enter__(self) -> Child:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
        self._pumper.join(10)
        for stream in (self.process.stdout, self.process.stderr):
            if stream is not None:
                stream.close()


def make_copy(url: str, **options: Any) -> Callable[[str], dict]:
    """One more decorated copy of the same function: every copy has the same qualname (and
    so the same keys) unless ``options`` give it another namespace."""

    @cache(backend=url, ttl=60, **options)
    def shared(key: str) -> dict:
        return {"key": key, "pid": os.getpid()}

    return shared


def make_async_copy(url: str, **options: Any) -> Callable[[str], Any]:
    @cache(backend=url, ttl=60, **options)
    async def ashared(key: str) -> dict:
        return {"key": key, "pid": os.getpid()}

    return ashared


def wait_for(predicate: Callable[[], bool], timeout: float = 10.0) -> float:
    """Poll until ``predicate()``; return the seconds it took (fails after ``timeout``)."""
    start = time.monotonic()
    while not predicate():
        assert time.monotonic() - start < timeout, f"still false after {timeout}s"
        time.sleep(0.005)
    return time.monotonic() - start
