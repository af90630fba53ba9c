"""`@cache.secure` as an attacker with read and write access to the backend sees it
(issue 11): integrity failures under encryption, key names that link functions,
entries without an expiry, how previous keys are parsed, compression, and key
compromise. Each test here failed before the fix it names."""

from __future__ import annotations

import logging

import pytest
from dict_backend import DictBackend

from cachekit import cache
from cachekit.envelope import FLAG_EXPIRES, read_header, seal
from cachekit.errors import ConfigurationError, DecryptionError, MasterKeyFormatError
from cachekit_crypto.keys import Keyring, keyring_from_env

K1 = "a1" * 32
K2 = "b2" * 32
K3 = "c3" * 32
MASTER = "CACHEKIT_MASTER_KEY"
PREVIOUS = "CACHEKIT_PREVIOUS_MASTER_KEYS"


@pytest.fixture
def master_key(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv(MASTER, K1)
    return K1


def secure_fn(store: DictBackend, **options):
    calls: list[int] = []

    @cache.secure(backend=store, l1=False, ttl=300, **options)
    def record(patient: int) -> dict:
        calls.append(patient)
        return {"patient": patient, "result": "negative"}

    record.calls = calls  # type: ignore[attr-defined]
    return record


def _flip(blob: bytes, index: int) -> bytes:
    return blob[:index] + bytes([blob[index] ^ 0x01]) + blob[index + 1 :]


# --- item 4: under encryption every integrity failure is E003 ------------------------------


def test_fail_closed_raises_e003_for_a_flipped_byte_anywhere(master_key):
    store = DictBackend()
    fn = secure_fn(store, fail_closed=True)
    fn(4711)
    (key,) = store.store
    original = store.store[key]
    crc = range(4, 8)  # the CRC is not a security field: the AEAD tag stands in for it
    for index in range(len(original)):
        store.store[key] = _flip(original, index)
        if index in crc:
            assert fn(4711)["patient"] == 4711  # everything authenticated is intact
            continue
        with pytest.raises(DecryptionError) as err:
            fn(4711)
        assert err.value.code == "E003", index
    assert fn.calls == [4711], "fail_closed never recomputes over a damaged entry"


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(lambda blob: blob[: len(blob) // 2], id="truncated"),
        pytest.param(lambda blob: blob[:9], id="truncated-in-header"),
        pytest.param(lambda blob: blob + b"\x00" * 64, id="extended"),
        pytest.param(lambda blob: blob + b"x" * 100_000, id="oversized"),
        pytest.param(lambda blob: b"not an envelope", id="garbage"),
        pytest.param(lambda blob: b"", id="empty"),
    ],
)
def test_fail_closed_raises_e003_for_truncated_extended_or_foreign_blobs(master_key, damage):
    store = DictBackend()
    fn = secure_fn(store, fail_closed=True)
    fn(4711)
    (key,) = store.store
    store.store[key] = damage(store.store[key])
    with pytest.raises(DecryptionError):
        fn(4711)


def test_a_flipped_byte_is_logged_as_e003_and_recomputed_without_fail_closed(master_key, caplog):
    store = DictBackend()
    fn = secure_fn(store)
    fn(4711)
    (key,) = store.store
    store.store[key] = _flip(store.store[key], len(store.store[key]) - 3)
    caplog.set_level(logging.WARNING, logger="cachekit")
    assert fn(4711)["patient"] == 4711
    assert fn.calls == [4711, 4711]
    assert fn.cache_info().invalid == 1
    assert "[E003]" in caplog.text and "[E006]" not in caplog.text


# --- the keyed digest binds the function ----------------------------------------------------


def test_the_same_argument_of_two_functions_gives_unrelated_digests(master_key):
    store = DictBackend()

    @cache.secure(backend=store)
    def patient_record(patient: int) -> str:
        return "record"

    @cache.secure(backend=store)
    def hiv_test_result(patient: int) -> str:
        return "result"

    digests = {f.cache_key(4711).rsplit(":", 1)[1] for f in (patient_record, hiv_test_result)}
    assert len(digests) == 2, "a Redis reader must not link the two calls"


def test_the_same_function_name_in_two_namespaces_gives_unrelated_digests(master_key):
    def lookup(patient: int) -> str:
        return "x"

    a = cache.secure(backend=DictBackend(), namespace="clinic-a")(lookup)
    b = cache.secure(backend=DictBackend(), namespace="clinic-b")(lookup)
    assert a.cache_key(1).rsplit(":", 1)[1] != b.cache_key(1).rsplit(":", 1)[1]


def test_secure_key_names_carry_the_key_format_version(master_key):
    fn = secure_fn(DictBackend())
    name = fn.cache_key(4711)
    prefix, digest = name.rsplit(":", 1)
    assert prefix.endswith(":s2")
    assert len(digest) == 32
    assert ":s2:" not in cache(backend=None)(lambda patient: 1).cache_key(4711)


def test_an_entry_under_the_old_key_format_is_a_miss(master_key):
    """An entry written before the format change (no version segment, digest keyed by
    the shared naming key) is never found: the new key names differ."""
    from cachekit.keys import canonical_args, digest

    store = DictBackend()
    fn = secure_fn(store)
    ring = keyring_from_env()
    new_key = fn.cache_key(4711)
    old_key = new_key.replace(":s2:", ":").rsplit(":", 1)[0] + ":"
    old_key += digest(canonical_args((4711,)), ring.digest_key)
    store.store[old_key] = b"whatever the old format held"
    fn(4711)
    assert fn.calls == [4711]
    assert old_key != new_key


def test_a_blob_swapped_between_functions_fails_authentication(master_key):
    store = DictBackend()
    a = secure_fn(store, fail_closed=True)
    b = secure_fn(store, fail_closed=True, namespace="other")
    a(4711), b(4711)
    store.store[b.cache_key(4711)] = store.store[a.cache_key(4711)]
    with pytest.raises(DecryptionError):
        b(4711)


# --- ttl=None under encryption: an authenticated expiry bounds replays -----------------------


def test_ttl_none_under_encryption_still_records_an_authenticated_expiry(master_key, monkeypatch):
    from cachekit._engine import l2  # seals and reads the entries
    from cachekit.config import SECURE_MAX_TTL

    now = 1_800_000_000.0
    monkeypatch.setattr(l2, "time", lambda: now)
    store = DictBackend()
    calls = []

    @cache.secure(backend=store, l1=False, ttl=None)
    def record(patient: int) -> str:
        calls.append(patient)
        return "result"

    record(4711)
    (blob,) = store.store.values()
    header = read_header(blob)
    assert header.flags & FLAG_EXPIRES
    assert header.expires_at == pytest.approx(now + SECURE_MAX_TTL, abs=0.01)
    record(4711)
    assert calls == [4711]  # within the bound: a hit

    # An attacker keeps the blob and puts it back later: refused once the bound is past.
    key = record.cache_key(4711)
    now += SECURE_MAX_TTL + 1
    store.store[key] = blob
    record(4711)
    assert calls == [4711, 4711]


def test_ttl_none_stays_unbounded_for_a_secure_function_without_a_backend(master_key):
    """Nothing leaves the process, so nothing can be replayed: L1 keeps ttl=None."""

    @cache.secure(backend=None, ttl=None)
    def record(patient: int) -> str:
        return "result"

    record(4711)
    assert record.__cachekit__.resolve().ttl is None  # type: ignore[attr-defined]


def test_an_encrypted_entry_without_an_expiry_is_refused(master_key):
    store = DictBackend()
    fn = secure_fn(store)
    fn(4711)
    key = fn.cache_key(4711)
    encryptor = fn.__cachekit__.resolve().encryptor  # type: ignore[attr-defined]
    payload = b"\x81\xa7patient\xcd\x12g"  # any authentic payload
    store.store[key] = seal(payload, serializer="msgpack", key=key, encryptor=encryptor)
    fn(4711)
    assert fn.calls == [4711, 4711], "an authentic entry that never expires is a replay hazard"


# --- CACHEKIT_PREVIOUS_MASTER_KEYS separated by whitespace ------------------------------------


@pytest.mark.parametrize("separator", [" ", "\n", "\t", " ,\n", "\r\n"])
def test_previous_keys_separated_by_whitespace_are_separate_keys(separator):
    ring = keyring_from_env({MASTER: K3, PREVIOUS: K2 + separator + K1})
    expected = Keyring(bytes.fromhex(K3), [bytes.fromhex(K2), bytes.fromhex(K1)])
    assert ring.key_ids == expected.key_ids
    assert ring.digest_key == expected.digest_key


def test_a_previous_key_broken_by_whitespace_is_e002_naming_its_position():
    broken = K1[:30] + "\n" + K1[30:]
    with pytest.raises(MasterKeyFormatError) as err:
        keyring_from_env({MASTER: K3, PREVIOUS: f"{K2}, {broken}"})
    assert "item 2" in str(err.value)
    assert K1[:30] not in str(err.value)


@pytest.mark.parametrize("separator", [" ", "\n", ","])
def test_two_keys_in_the_master_key_variable_are_e002(separator):
    with pytest.raises(MasterKeyFormatError) as err:
        keyring_from_env({MASTER: K2 + separator + K1})
    assert err.value.code == "E002"
    assert K1 not in str(err.value) and K2 not in str(err.value)


def test_surrounding_whitespace_around_the_master_key_is_still_accepted():
    ring = keyring_from_env({MASTER: f"  {K1}\n"})
    assert ring.key_ids == Keyring(bytes.fromhex(K1)).key_ids


# --- compression leaks through length under encryption ---------------------------------------


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda: cache.secure(compress=True), id="secure"),
        pytest.param(lambda: cache(encryption=True, compress=True), id="encryption=True"),
    ],
)
def test_compress_with_encryption_is_refused_at_decoration(make):
    with pytest.raises(ConfigurationError) as err:
        make()
    assert err.value.code == "E040"
    assert "compress" in str(err.value)


# --- rotating away from a compromised key -----------------------------------------------------


def test_dropping_a_compromised_key_moves_the_key_names_and_refuses_its_blobs(monkeypatch):
    """The documented compromise procedure: K1 leaked; deploy K2 with no previous keys."""
    store = DictBackend()
    monkeypatch.setenv(MASTER, K1)
    before = secure_fn(store)
    before(4711)
    leaked_name = before.cache_key(4711)
    leaked_blob = store.store[leaked_name]

    monkeypatch.setenv(MASTER, K2)
    monkeypatch.setenv(PREVIOUS, K1)  # the naive rotation keeps the leaked key naming
    naive = secure_fn(store)
    assert naive.cache_key(4711) == leaked_name

    monkeypatch.delenv(PREVIOUS)  # the procedure: drop it at once
    after = secure_fn(store, fail_closed=True)
    assert after.cache_key(4711) != leaked_name
    store.store[after.cache_key(4711)] = leaked_blob  # a blob made with the leaked key
    with pytest.raises(DecryptionError):
        after(4711)


# --- the new key names through the rest of the engine -----------------------------------------


def test_async_fail_closed_raises_e003_for_a_flipped_byte(master_key):
    import asyncio

    store = DictBackend()

    @cache.secure(backend=store, l1=False, ttl=300, fail_closed=True)
    async def record(patient: int) -> dict:
        return {"patient": patient}

    asyncio.run(record(4711))
    (key,) = store.store
    store.store[key] = _flip(store.store[key], len(store.store[key]) - 1)
    with pytest.raises(DecryptionError):
        asyncio.run(record(4711))


def test_change_notices_reach_the_l1_of_a_secure_function(master_key):
    """The version segment is part of the prefix the coherence router matches on: a
    write by another process (here another decoration of the function) evicts L1."""
    url = "memory://secure-review-coherence"
    calls = []

    def lookup(patient: int) -> int:
        calls.append(patient)
        return len(calls)

    reader = cache.secure(backend=url, ttl=300)(lookup)
    writer = cache.secure(backend=url, ttl=300)(lookup)
    assert ":s2:" in reader.cache_key(4711) == writer.cache_key(4711)
    assert reader(4711) == 1
    assert reader(4711) == 1  # L1
    writer.invalidate_cache(4711)  # deletes the backend entry: a change notice
    assert reader(4711) == 2, "the notice for an s2 key must reach the reader's L1"
    reader.invalidate_cache()  # every entry of the function: a generation bump
    assert reader(4711) == 3
