"""The atomic miss on Redis (capability "atomic_miss", issue 12 item 6): get_or_lock and
set_and_unlock are one round trip each, on a single server and on a Cluster, keep working
after the server forgot its scripts, and take over a lock older than a master change."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import pytest
from round_trips import sends

from cachekit.constants import CAP_ATOMIC_MISS, TOMBSTONE_PREFIX
from cachekit.errors import BackendError
from cachekit_redis import AsyncRedisBackend, RedisBackend


def lock_of(key: str) -> str:
    return "cachekit-lock:{" + key + "}"


def test_the_redis_backends_declare_the_atomic_miss(redis_url):
    assert CAP_ATOMIC_MISS in RedisBackend(redis_url).capabilities
    assert CAP_ATOMIC_MISS in AsyncRedisBackend(redis_url).capabilities


def test_a_locked_miss_is_two_round_trips(redis_url, monkeypatch):
    backend = RedisBackend(redis_url)
    key = f"cachekit:atomic:{uuid.uuid4().hex}"
    try:
        backend.get_or_lock(key + "w", lock_of(key + "w"), "t", 5000)  # connect, load scripts
        backend.set_and_unlock(key + "w", b"warm", 10, lock_of(key + "w"), "t", None)
        with sends(monkeypatch) as sent:
            assert backend.get_or_lock(key, lock_of(key), "token", 5000) == (None, True)
            assert backend.set_and_unlock(key, b"value", 10, lock_of(key), "token", "")
        assert len(sent) == 2, sent
        assert all(b"EVALSHA" in s for s in sent), "the script body travels every time"
        assert backend.get(key) == b"value"
        assert backend.get_or_lock(key, lock_of(key), "another", 5000) == (b"value", False)
    finally:
        backend.close()


def test_an_async_locked_miss_is_two_round_trips(redis_url, monkeypatch):
    async def main() -> list[bytes]:
        backend = AsyncRedisBackend(redis_url)
        key = f"cachekit:atomic:{uuid.uuid4().hex}"
        try:
            await backend.get_or_lock(key + "w", lock_of(key + "w"), "t", 5000)
            await backend.set_and_unlock(key + "w", b"warm", 10, lock_of(key + "w"), "t", None)
            with sends(monkeypatch) as sent:
                assert await backend.get_or_lock(key, lock_of(key), "token", 5000) == (None, True)
                assert await backend.set_and_unlock(key, b"value", 10, lock_of(key), "token", "")
            assert await backend.get(key) == b"value"
            return sent
        finally:
            await backend.close()

    sent = asyncio.run(main())
    assert len(sent) == 2, sent


@pytest.mark.parametrize("flavor", ["sync", "async"])
def test_scripts_forgotten_by_the_server_are_sent_again_once(redis_url, raw, monkeypatch, flavor):
    """EVALSHA first; NOSCRIPT (a restart, SCRIPT FLUSH) costs one EVAL, then EVALSHA works."""
    key = f"cachekit:atomic:{uuid.uuid4().hex}"

    async def run(backend: Any) -> list[list[bytes]]:
        rounds = []
        for _ in range(2):
            with sends(monkeypatch) as sent:
                got = backend.get_or_lock(key, lock_of(key), "token", 5000)
                got = await got if flavor == "async" else got
                assert got[1] is True
                done = backend.set_and_unlock(key, b"v", 10, lock_of(key), "token", None)
                assert (await done if flavor == "async" else done) is True
            raw.delete(key)
            rounds.append(sent)
        return rounds

    async def main() -> list[list[bytes]]:
        backend = AsyncRedisBackend(redis_url) if flavor == "async" else RedisBackend(redis_url)
        await backend.ping() if flavor == "async" else backend.ping()
        raw.script_flush()
        try:
            return await run(backend)
        finally:
            await backend.close() if flavor == "async" else backend.close()

    first, second = asyncio.run(main())
    assert [b"EVALSHA" in s for s in first] == [True, False, True, False], first
    assert len(second) == 2 and all(b"EVALSHA" in s for s in second), second


class FakeChange:
    """A master change this process saw ``ago`` seconds ago (a MasterWatch's changed_at)."""

    def __init__(self, ago: float) -> None:
        self.at = time.monotonic() - ago

    def changed_at(self, client: Any, key: str) -> float:
        return self.at


def test_get_or_lock_takes_over_a_lock_older_than_a_master_change(redis_url, raw):
    """The failover decision of acquire_lock (failover.takeover_window) applies inside
    get_or_lock: a lock taken before the change may be an orphan whose release was lost."""
    backend = RedisBackend(redis_url)
    key = f"cachekit:atomic:{uuid.uuid4().hex}"
    lock = lock_of(key)
    try:
        raw.set(lock, "before-the-change", px=10_000)
        time.sleep(0.3)
        backend._watch = FakeChange(0.1)  # changed 0.1 s ago; the lock is 0.3 s old
        assert backend.get_or_lock(key, lock, "mine", 10_000) == (None, True)
        assert raw.get(lock) == b"mine"
        raw.set(lock, "after-the-change", px=10_000)  # taken after this process saw it
        assert backend.get_or_lock(key, lock, "again", 10_000) == (None, False)
        backend._watch = FakeChange(60.0)  # a change longer than a lease ago: plain SET NX
        raw.set(lock, "old", px=10_000)
        time.sleep(0.05)
        assert backend.get_or_lock(key, lock, "mine", 10_000) == (None, False)
    finally:
        raw.delete(lock)
        backend.close()


def test_get_or_lock_returns_a_tombstone_and_takes_the_lock(redis_url, raw):
    """A tombstone is no value: the miss takes the lock, and learns what guards its store."""
    backend = RedisBackend(redis_url)
    key = f"cachekit:atomic:{uuid.uuid4().hex}"
    try:
        backend.set(key, b"old")
        assert backend.tombstone(key, 10) is True
        held, acquired = backend.get_or_lock(key, lock_of(key), "t", 5000)
        assert acquired and held is not None and held.startswith(TOMBSTONE_PREFIX)
    finally:
        raw.delete(key, lock_of(key))
        backend.close()


@pytest.mark.xdist_group("cluster")
@pytest.mark.parametrize("flavor", ["sync", "async"])
def test_cluster_keys_and_their_locks_share_a_slot_on_every_master(clean_redis_cluster, flavor):
    """No CROSSSLOT for lock keys built by cachekit's rule, whatever node owns the key; a lock
    key that hashes elsewhere is refused before any I/O with an error saying how to build it."""
    from redis.crc import key_slot

    url = clean_redis_cluster.url
    keys = [f"cachekit:atomic:{uuid.uuid4().hex}:{i}" for i in range(30)]
    assert len({key_slot(k.encode()) * 3 // 16384 for k in keys}) == 3  # every master

    async def main() -> None:
        backend = AsyncRedisBackend(url) if flavor == "async" else RedisBackend(url)

        async def do(name: str, *args: Any) -> Any:
            result = getattr(backend, name)(*args)
            return await result if flavor == "async" else result

        try:
            for key in keys:
                assert await do("get_or_lock", key, lock_of(key), "t", 5000) == (None, True)
                assert await do("set_and_unlock", key, b"v", 10, lock_of(key), "t", "")
                assert await do("get_or_lock", key, lock_of(key), "u", 5000) == (b"v", False)
                await do("delete", key)
            tagged = "cachekit:{user42}:atomic"
            assert await do("get_or_lock", tagged, "cachekit-lock:" + tagged, "t", 5000)
            await do("set_and_unlock", tagged, b"v", 10, "cachekit-lock:" + tagged, "t", None)
            await do("delete", tagged)
            apart = next(k for k in keys if key_slot(k.encode()) != key_slot(b"elsewhere"))
            with pytest.raises(BackendError, match="cachekit-lock:"):
                await do("get_or_lock", apart, "elsewhere", "t", 5000)
            with pytest.raises(BackendError, match="hash slot"):
                await do("set_and_unlock", apart, b"v", 10, "elsewhere", "t", None)
        finally:
            await do("close")

    asyncio.run(main())
