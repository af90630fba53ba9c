"""Violations found by the history checker, reproduced deterministically.

Each was a strict xfail until the engine fixed it, and stays as a regression test.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import stale_generation_child as shared

HERE = Path(__file__).resolve().parent


def test_an_entry_invalidation_right_after_another_process_bumped_the_namespace(
    redis_server: Any, tcp_proxy: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from redis_fixtures import wait_for_stream

    import cachekit

    redis_server.reset()
    # This process reaches Redis through a proxy that will hold its replies and notices
    # back for a second: it hears of the other process's bump late.
    proxy = tcp_proxy(redis_server)
    monkeypatch.setenv("CACHEKIT_BACKEND", proxy.url)
    monkeypatch.setenv("CACHEKIT_SOCKET_TIMEOUT", "5")
    child = subprocess.Popen(
        [sys.executable, "-c", "import stale_generation_child as m; m.main()"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**_environment(), "CACHEKIT_BACKEND": redis_server.url},
    )
    try:
        shared.SOURCE["k"] = 1
        _expect(shared.profile("k"), 1)
        wait_for_stream(shared.profile)
        assert child.stdout is not None and child.stdin is not None
        _expect(child.stdout.readline().strip(), "READY")
        proxy.delay(1.0)
        child.stdin.write("go\n")
        child.stdin.flush()
        # The other process bumped the namespace and stored the value under the new
        # generation (computed from the source before our change).
        _expect(child.stdout.readline().strip(), "DONE 1")
        shared.SOURCE["k"] = 2  # change the source, then invalidate: the writer protocol
        # Before the fix, the key carried the generation this process last heard of:
        # the tombstone replaced the old generation's entry, not the live one.
        shared.profile.invalidate_cache("k")
        proxy.pass_through()
        time.sleep(0.5)  # the delayed notice of the bump has arrived
        assert shared.profile("k") == 2
    finally:
        child.kill()
        child.wait(5)
        cachekit.close()


def _expect(got: object, wanted: object) -> None:
    """A set-up step's check: not an AssertionError, which the xfail stands for."""
    if got != wanted:
        raise RuntimeError(f"set-up: expected {wanted!r}, got {got!r}")


def _environment() -> dict[str, str]:
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith("CACHEKIT_")}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(HERE), env.get("PYTHONPATH", "")) if p)
    return env
