"""cachekit-redis writes each operation once (issue 12 item 3): pure operations in ops.py,
thin sync and async shells that send them, error translation without side effects, Lua
scripts sent by their SHA once a server knows them."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

import pytest
from round_trips import sends

import cachekit_redis
from cachekit.constants import MISSING
from cachekit_redis import AsyncRedisBackend, RedisBackend, failover, ops
from cachekit_redis.errors import translate


def test_operations_are_built_without_io():
    assert ops.get("k").args == ("GET", "k")
    assert ops.get("k").reply(None) is MISSING
    assert ops.set("k", b"v", 1.5).args == ("SET", "k", b"v", "PX", 1500)
    assert ops.set("k", b"v", None).args == ("SET", "k", b"v")
    assert ops.ttl("k").reply(-2) is MISSING and ops.ttl("k").reply(-1) is None
    assert ops.acquire_lock("k", "t", 2.0, -1).args == ("SET", "k", "t", "NX", "PX", 2000)
    takeover = ops.acquire_lock("k", "t", 2.0, 150)
    assert takeover.args[:2] == ("EVALSHA", ops.LOCK_TAKEOVER.sha)
    assert takeover.script is ops.LOCK_TAKEOVER
    many = ops.delete_many(["a", "b"])
    assert many.commands == [("DEL", "a"), ("DEL", "b")] and many.reply([1, 0]) == 1


def _readonly_from_a_demoted_master() -> Exception:
    """What redis-py's Sentinel connection raises when its master answered READONLY."""
    import redis.exceptions as rx

    try:
        try:
            raise rx.ReadOnlyError("You can't write against a read only replica.")
        except rx.ReadOnlyError:
            raise rx.ConnectionError("The previous master is now a slave")  # noqa: B904
    except rx.ConnectionError as exc:
        return exc


def test_translating_an_error_has_no_side_effects(monkeypatch):
    """errors.translate only returns the error; the shells record what it means (here: a
    demoted Sentinel master, whose pools must be reset)."""
    seen: list[str] = []
    monkeypatch.setattr(failover, "demoted", seen.append)
    exc = _readonly_from_a_demoted_master()
    err = translate(exc, "redis+sentinel://s:26379/mymaster", "SET")
    assert err.code == "E010" and not isinstance(err, ConnectionError)
    assert seen == []
    failover.command_failed(exc, "redis+sentinel://s:26379/mymaster", "SET")
    assert seen == ["redis+sentinel://s:26379/mymaster"]


@pytest.mark.parametrize("flavor", ["sync", "async"])
def test_every_script_is_sent_by_its_sha_once_the_server_knows_it(redis_url, monkeypatch, flavor):
    """Guarded writes, tombstones, unlocks and the atomic miss: EVALSHA, never the script
    body, once each script has been used on the server."""
    key = f"cachekit:ops:{uuid.uuid4().hex}"
    lock = "cachekit-lock:{" + key + "}"
    calls: list[tuple[str, tuple[Any, ...]]] = [
        ("set_guarded", (key, b"v", 10, "")),
        ("tombstone", (key, 10)),
        ("acquire_lock", (lock, "t", 5.0)),
        ("release_lock", (lock, "t")),
        ("get_or_lock", (key, lock, "t", 5000)),
        ("set_and_unlock", (key, b"v", 10, lock, "t", None)),
    ]

    async def main() -> list[bytes]:
        backend = AsyncRedisBackend(redis_url) if flavor == "async" else RedisBackend(redis_url)

        async def run(name: str, args: tuple[Any, ...]) -> Any:
            result = getattr(backend, name)(*args)
            return await result if flavor == "async" else result

        try:
            for _ in range(2):  # the first round loads what the server lacks
                await run("delete", (key,))
                with sends(monkeypatch) as sent:
                    for name, args in calls:
                        await run(name, args)
            return sent
        finally:
            await run("close", ())

    sent = asyncio.run(main())
    assert len(sent) == len(calls), sent
    scripts = [ops.GUARDED_SET, ops.TOMBSTONE, ops.RELEASE, ops.GET_OR_LOCK, ops.SET_AND_UNLOCK]
    for packed in sent:
        assert b"EVAL\r\n" not in packed
        assert not any(s.text.encode() in packed for s in scripts)
    assert sum(b"EVALSHA" in packed for packed in sent) == 5  # all but SET NX (the lock)


def test_no_module_of_cachekit_redis_exceeds_600_lines():
    root = Path(cachekit_redis.__file__).parent
    sizes = {p.name: len(p.read_text().splitlines()) for p in root.glob("*.py")}
    assert max(sizes.values()) <= 600, sizes
