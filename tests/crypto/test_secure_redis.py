"""``@cache.secure`` end to end, against a real redis-server: what an attacker who can
read or write Redis learns and can do.

Every test here goes through the decorator, cachekit-crypto's ``aes-gcm`` encryptor
(found through its entry point) and cachekit-redis. The attacker's moves are made
with a raw redis-py client on the same server: reading MONITOR, copying blobs
between keys and tenants, relabelling envelopes, planting pickles.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import pickle
import threading
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import redis
from redis_fixtures import wait_for_stream

from cachekit import cache
from cachekit.envelope import MAGIC, read_header
from cachekit.errors import (
    DecryptionError,
    MasterKeyFormatError,
    MasterKeyMissingError,
)
from cachekit.keys import generate_cache_key
from cachekit.serializers import PickleSerializer

K1 = "11" * 32
K2 = "22" * 32
TENANT: contextvars.ContextVar[str | None] = contextvars.ContextVar("tenant", default=None)

#: Set by Planted.__reduce__ if a planted pickle is ever loaded.
SENTINEL_CALLS: list[str] = []


def _sentinel(marker: str) -> str:
    SENTINEL_CALLS.append(marker)
    return marker


class Planted:
    """A pickle that calls _sentinel when loaded."""

    def __reduce__(self) -> tuple[Any, ...]:
        return (_sentinel, ("the planted pickle was loaded",))


PLANTED = pickle.dumps(Planted())
_names = iter(range(10**6))


def secure_fn(url: str, *, name: str | None = None, **options: Any):
    """A fresh ``@cache.secure`` function; ``name`` gives copies the same keys."""
    calls: list[Any] = []
    options.setdefault("l1", False)  # every read goes to Redis unless a test says otherwise
    options.setdefault("ttl", 300)

    def profile(user: str) -> dict[str, Any]:
        calls.append(user)
        return {"user": user, "ssn": f"ssn-of-{user}", "tenant": TENANT.get()}

    profile.__qualname__ = profile.__name__ = name or f"profile_{next(_names)}"
    fn = cache.secure(backend=url, **options)(profile)
    fn.calls = calls  # type: ignore[attr-defined]
    return fn


@pytest.fixture
def master_key(monkeypatch):
    monkeypatch.setenv("CACHEKIT_MASTER_KEY", K1)
    return K1


def in_tenant(tenant: str | None, fn, *args):
    token = TENANT.set(tenant)
    try:
        return fn(*args)
    finally:
        TENANT.reset(token)


def reseal(
    blob: bytes,
    *,
    version: int | None = None,
    serializer: str | None = None,
    key_id: str | None = None,
) -> bytes:
    """Relabel an envelope the way an attacker with write access could: change its
    version, serializer id or key id and recompute the (unkeyed) CRC."""
    header = read_header(blob)
    version = header.version if version is None else version
    sid = (header.serializer if serializer is None else serializer).encode()
    rest = blob[8 + 1 + len(header.serializer.encode()) :]
    if key_id is not None:
        expires = 8 if header.expires_ms is not None else 0
        old_kid = header.key_id.encode()
        kid = key_id.encode()
        rest = rest[:expires] + bytes([len(kid)]) + kid + rest[expires + 1 + len(old_kid) :]
    body = bytes([len(sid)]) + sid + rest
    head = MAGIC + bytes([version, header.flags])
    return head + zlib.crc32(body, zlib.crc32(head)).to_bytes(4, "big") + body


def move(raw_client, source: str, target: str) -> None:
    """Copy the stored bytes of ``source`` over ``target`` (keeping a TTL)."""
    raw_client.set(target, raw_client.get(source), px=300_000)


# --- what Redis sees --------------------------------------------------------------------


def test_monitor_shows_neither_values_nor_arguments(master_key, redis_url, raw):
    fn = secure_fn(redis_url)
    seen: list[str] = []
    ready = threading.Event()

    def watch() -> None:
        with raw.monitor() as monitor:
            ready.set()
            for event in monitor.listen():
                seen.append(str(event["command"]))
                if "end-of-test" in event["command"]:
                    return

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    assert ready.wait(5)
    for user in ("alice@example.com", "bob@example.com"):
        assert fn(user)["ssn"] == f"ssn-of-{user}"  # miss: GET + SET
        assert fn(user)["ssn"] == f"ssn-of-{user}"  # L2 hit: GET
    redis.Redis.from_url(redis_url).echo("end-of-test")
    watcher.join(5)
    traffic = "\n".join(seen)
    assert "GET" in traffic and "SET" in traffic  # the monitor did see the calls
    for secret in ("alice", "bob", "example.com", "ssn-of", "ssn", "user"):
        assert secret not in traffic, f"{secret!r} visible in MONITOR output"
    assert fn.cache_info().l2_hits == 2


def test_stored_bytes_hold_no_plaintext(master_key, redis_url, raw):
    fn = secure_fn(redis_url)
    fn("carol")
    entries = [k for k in raw.keys("cachekit:*") if not k.startswith(b"cachekit:gen:")]
    assert [k.decode() for k in entries] == [fn.cache_key("carol")]
    blob = raw.get(entries[0])
    assert b"carol" not in blob and b"ssn" not in blob
    assert read_header(blob).flags & 0x02  # encrypted


def test_key_digest_is_keyed_so_arguments_cannot_be_guessed(master_key, redis_url):
    fn = secure_fn(redis_url, name="lookup")
    plain = generate_cache_key("lookup", ("user-1",))
    assert fn.cache_key("user-1").rsplit(":", 1)[1] != plain.rsplit(":", 1)[1]


# --- moved, relabelled and planted entries -----------------------------------------------


def test_a_blob_moved_to_another_key_is_a_miss_logged_once_and_overwritten(
    master_key, redis_url, raw, caplog
):
    fn = secure_fn(redis_url)
    fn("alice"), fn("bob")
    move(raw, fn.cache_key("alice"), fn.cache_key("bob"))
    caplog.set_level(logging.WARNING, logger="cachekit")
    assert fn("bob")["user"] == "bob"  # recomputed, never alice's value
    assert fn.calls == ["alice", "bob", "bob"]
    info = fn.cache_info()
    assert (info.invalid, info.errors) == (1, 0)
    assert fn("bob")["user"] == "bob"  # the entry was overwritten: now an L2 hit
    assert fn.cache_info().l2_hits == 1
    move(raw, fn.cache_key("alice"), fn.cache_key("bob"))
    fn("bob")
    warnings = [r for r in caplog.records if "E003" in r.getMessage()]
    assert len(warnings) == 1, "E003 is logged once per function, then only counted"
    assert fn.cache_info().invalid == 2
    assert K1 not in caplog.text


def test_fail_closed_raises_e003_instead(master_key, redis_url, raw):
    fn = secure_fn(redis_url, fail_closed=True)
    fn("alice"), fn("bob")
    move(raw, fn.cache_key("alice"), fn.cache_key("bob"))
    with pytest.raises(DecryptionError) as err:
        fn("bob")
    assert err.value.code == "E003"
    assert "authentication tag verification failed" in str(err.value)


def test_a_blob_moved_across_tenants_is_a_miss(master_key, redis_url, raw):
    fn = secure_fn(redis_url, tenant_extractor=lambda user: TENANT.get())
    assert in_tenant("acme", fn, "alice")["tenant"] == "acme"
    assert in_tenant("globex", fn, "alice")["tenant"] == "globex"
    acme_key = in_tenant("acme", fn.cache_key, "alice")
    globex_key = in_tenant("globex", fn.cache_key, "alice")
    assert acme_key != globex_key
    move(raw, acme_key, globex_key)
    assert in_tenant("globex", fn, "alice")["tenant"] == "globex"
    assert fn.cache_info().invalid == 1
    assert len(fn.calls) == 3


@pytest.mark.parametrize(
    "relabel",
    [
        pytest.param({"serializer": "pickle"}, id="claims-another-serializer"),
        pytest.param({"version": 0}, id="old-envelope-version"),
        pytest.param({"version": 2}, id="future-envelope-version"),
        pytest.param({"key_id": "000000000000"}, id="unknown-key-id"),
    ],
)
def test_relabelled_envelopes_are_misses(master_key, redis_url, raw, relabel):
    fn = secure_fn(redis_url)
    fn("alice")
    key = fn.cache_key("alice")
    raw.set(key, reseal(raw.get(key), **relabel), px=300_000)
    assert fn("alice")["user"] == "alice"
    assert fn.calls == ["alice", "alice"]
    assert fn.cache_info().invalid == 1


def test_the_same_key_id_with_a_swapped_key_does_not_decrypt(redis_url, raw, monkeypatch):
    monkeypatch.setenv("CACHEKIT_MASTER_KEY", K1)
    writer = secure_fn(redis_url, name="shared_profile")
    writer("alice")
    key = writer.cache_key("alice")
    blob = raw.get(key)
    monkeypatch.setenv("CACHEKIT_MASTER_KEY", K2)
    reader = secure_fn(redis_url, name="shared_profile")
    # Force the blob under the reader's key name, claiming the reader's key id.
    reader_key = reader.cache_key("alice")
    reader_id = read_header(_fresh_blob(reader, raw)).key_id
    raw.set(reader_key, reseal(blob, key_id=reader_id), px=300_000)
    assert reader("alice")["user"] == "alice"
    assert reader.cache_info().invalid == 1


def _fresh_blob(fn, raw_client) -> bytes:
    fn("probe-user")
    return raw_client.get(fn.cache_key("probe-user"))


@pytest.mark.parametrize(
    "planted",
    [
        pytest.param(lambda key: PLANTED, id="bare-pickle"),
        pytest.param(lambda key: _plain_envelope(key, PLANTED), id="plain-envelope"),
        pytest.param(lambda key: b"CK\x01\x00" + b"\x00" * 4 + PLANTED, id="bad-crc"),
    ],
)
def test_a_planted_pickle_is_never_loaded(master_key, redis_url, raw, planted):
    SENTINEL_CALLS.clear()
    fn = secure_fn(redis_url, serializer=PickleSerializer())
    key = fn.cache_key("mallory")
    raw.set(key, planted(key), px=300_000)
    assert fn("mallory")["user"] == "mallory"
    assert SENTINEL_CALLS == []
    assert fn.cache_info().invalid == 1


def _plain_envelope(key: str, payload: bytes) -> bytes:
    from cachekit.envelope import seal

    return seal(payload, serializer="pickle", key=key)


def test_unencrypted_pickle_signed_with_the_master_key_still_needs_the_signature(
    master_key, redis_url, raw
):
    """Without ``secure``, pickle over a shared backend is signed with a subkey of the
    master key; an unsigned or wrongly signed entry is never unpickled."""
    from cachekit.envelope import seal
    from cachekit.signing import Signer

    SENTINEL_CALLS.clear()
    calls = []

    @cache(backend=redis_url, ttl=300, l1=False, serializer=PickleSerializer())
    def report(name: str) -> dict:
        calls.append(name)
        return {"name": name}

    report("q1")
    key = report.cache_key("q1")
    assert read_header(raw.get(key)).flags & 0x04  # signed
    forged = seal(pickle.dumps(Planted()), serializer="pickle", key=key, signer=Signer(b"x" * 32))
    for blob in (_plain_envelope(key, pickle.dumps(Planted())), forged):
        raw.set(key, blob, px=300_000)
        assert report("q1") == {"name": "q1"}
    assert SENTINEL_CALLS == []
    assert report.cache_info().invalid == 2


# --- keys and rotation ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "error", "code"),
    [
        (None, MasterKeyMissingError, "E001"),
        ("", MasterKeyMissingError, "E001"),
        ("my-secret-key", MasterKeyFormatError, "E002"),
        ("abcd1234", MasterKeyFormatError, "E002"),
        ("zz" * 32, MasterKeyFormatError, "E002"),
        ("11" * 31, MasterKeyFormatError, "E002"),
    ],
)
def test_a_bad_master_key_fails_the_first_call_and_writes_nothing(
    redis_url, raw, monkeypatch, value, error, code
):
    if value is not None:
        monkeypatch.setenv("CACHEKIT_MASTER_KEY", value)
    fn = secure_fn(redis_url)
    with pytest.raises(error) as err:
        fn("alice")
    assert err.value.code == code
    if value:
        assert value not in str(err.value)
    if code == "E001":
        assert "CACHEKIT_MASTER_KEY environment variable must be set" in str(err.value)
    else:
        assert "CACHEKIT_MASTER_KEY must be hex-encoded, minimum 32 bytes" in str(err.value)
    assert fn.calls == []
    assert raw.dbsize() == 0


def test_rotation_keeps_old_entries_readable_until_the_key_is_retired(redis_url, raw, monkeypatch):
    monkeypatch.setenv("CACHEKIT_MASTER_KEY", K1)
    before = secure_fn(redis_url, name="rotating")
    before("alice")
    old_id = read_header(raw.get(before.cache_key("alice"))).key_id

    monkeypatch.setenv("CACHEKIT_MASTER_KEY", K2)
    monkeypatch.setenv("CACHEKIT_PREVIOUS_MASTER_KEYS", K1)
    during = secure_fn(redis_url, name="rotating")
    assert during.cache_key("alice") == before.cache_key("alice")  # names kept
    assert during("alice")["user"] == "alice"
    assert during.calls == []  # read with the previous key, no recomputation
    during("bob")
    new_id = read_header(raw.get(during.cache_key("bob"))).key_id
    assert new_id != old_id  # new writes use the current key

    monkeypatch.delenv("CACHEKIT_PREVIOUS_MASTER_KEYS")
    after = secure_fn(redis_url, name="rotating")
    assert after("alice")["user"] == "alice"
    assert after.calls == ["alice"]  # retired: a miss, never an error


# --- tenants under load, async -----------------------------------------------------------------


def test_two_tenants_with_1000_concurrent_calls_see_only_their_own_values(master_key, redis_url):
    fn = secure_fn(redis_url, tenant_extractor=lambda user: TENANT.get(), l1=True)
    # Let the notification stream come up first: its first connect empties the L1s,
    # which would make the miss count below depend on timing.
    wait_for_stream(fn, lambda: in_tenant("acme", fn.cache_key, "warm-up"))
    wrong: list[Any] = []

    def call(i: int) -> None:
        tenant = ("acme", "globex")[i % 2]
        got = in_tenant(tenant, fn, f"user-{i % 20}")
        if got["tenant"] != tenant or got["user"] != f"user-{i % 20}":
            wrong.append((tenant, got))

    with ThreadPoolExecutor(16) as pool:
        list(pool.map(call, range(1000)))
    assert wrong == []
    info = fn.cache_info()
    assert info.misses == 20  # 10 users per tenant, computed once each
    assert info.errors == info.invalid == 0


def test_async_secure_calls_round_trip_per_tenant(master_key, redis_url, raw):
    calls = []

    @cache.secure(backend=redis_url, ttl=300, l1=False, tenant_extractor=lambda user: TENANT.get())
    async def aprofile(user: str) -> dict:
        calls.append((TENANT.get(), user))
        return {"user": user, "tenant": TENANT.get()}

    async def main() -> None:
        async def one(tenant: str) -> None:
            TENANT.set(tenant)
            for _ in range(3):
                assert await aprofile("dave") == {"user": "dave", "tenant": tenant}

        await asyncio.gather(one("acme"), one("globex"))

    asyncio.run(main())
    assert sorted(calls) == [("acme", "dave"), ("globex", "dave")]
    assert aprofile.cache_info().l2_hits == 4
    for key in raw.keys("cachekit:*"):
        assert b"dave" not in raw.get(key)


def test_an_expired_entry_put_back_is_a_miss(master_key, redis_url, raw):
    """Replay: the expiry is inside the authenticated envelope, so a copy of an entry
    restored after its TTL (here with a fresh, long Redis TTL) is refused."""
    fn = secure_fn(redis_url, ttl=0.3)
    fn("alice")
    key = fn.cache_key("alice")
    old = raw.get(key)
    time.sleep(0.4)
    raw.set(key, old, px=300_000)
    assert fn("alice")["user"] == "alice"
    assert fn.calls == ["alice", "alice"]
    assert fn.cache_info().l2_hits == 0


def test_an_entry_put_back_after_a_whole_function_invalidation_is_never_read(
    master_key, redis_url, raw
):
    fn = secure_fn(redis_url)
    fn("alice")
    key = fn.cache_key("alice")
    old = raw.get(key)
    fn.invalidate_cache()  # bumps the function's generation: new key names
    raw.set(key, old, px=300_000)
    assert fn("alice")["user"] == "alice"
    assert fn.calls == ["alice", "alice"]
    assert fn.cache_key("alice") != key
