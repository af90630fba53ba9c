"""A million encryptions, no repeated (salt, nonce) pair, and no key over its budget.

A salt names the derived session key that sealed a blob; each session key seals at
most SESSION_MESSAGES messages under random 96-bit nonces. Here the budget is cut
to 1000 so a million writes go through a thousand sessions. Pairs are sorted into
256 buckets by the first nonce byte (28 MB of bytearrays in all), then each bucket
is checked with a small set, so memory stays near the raw data.
"""

from __future__ import annotations

import hashlib
import os
from collections import Counter

import pytest

import cachekit_crypto.aesgcm as aesgcm
from cachekit.errors import DecryptionError
from cachekit_crypto.aesgcm import NONCE_BYTES, SALT_BYTES, AesGcmEncryptor
from cachekit_crypto.keys import Keyring

WRITES = 1_000_000
BUDGET = 1000
PAIR = SALT_BYTES + NONCE_BYTES


@pytest.mark.timeout(300)
def test_a_million_encryptions_never_repeat_a_salt_and_nonce(monkeypatch):
    monkeypatch.setattr(aesgcm, "SESSION_MESSAGES", BUDGET)
    enc = AesGcmEncryptor(Keyring(hashlib.sha256(b"nonce test").digest()))
    encrypt = enc.encrypt
    buckets = [bytearray() for _ in range(256)]
    for _ in range(WRITES):
        pair = encrypt(b"", b"")[1 : 1 + PAIR]
        buckets[pair[SALT_BYTES]] += pair
    total = 0
    per_salt: Counter[bytes] = Counter()
    for bucket in buckets:
        records = {bytes(bucket[i : i + PAIR]) for i in range(0, len(bucket), PAIR)}
        assert len(records) * PAIR == len(bucket), "a (salt, nonce) pair was drawn twice"
        per_salt.update(record[:SALT_BYTES] for record in records)
        total += len(records)
    assert total == WRITES
    assert len(per_salt) == WRITES // BUDGET  # a new session key every BUDGET messages
    assert max(per_salt.values()) == BUDGET  # and never a message over the budget
    # The nonces look uniform: no bucket is wildly off its expected 1/256 share.
    expected = WRITES / 256
    assert all(abs(len(b) / PAIR - expected) < expected * 0.15 for b in buckets)


def test_every_blob_of_a_session_decrypts_and_old_sessions_stay_readable(monkeypatch):
    monkeypatch.setattr(aesgcm, "SESSION_MESSAGES", 3)
    enc = AesGcmEncryptor(Keyring(hashlib.sha256(b"sessions").digest()))
    blobs = [enc.encrypt(f"v{i}".encode(), b"aad") for i in range(10)]
    assert len({b[1 : 1 + SALT_BYTES] for b in blobs}) == 4  # 3 + 3 + 3 + 1
    reader = AesGcmEncryptor(Keyring(hashlib.sha256(b"sessions").digest()))
    assert [reader.decrypt(b, b"aad", key_id=enc.key_id) for b in blobs] == [
        f"v{i}".encode() for i in range(10)
    ]


def test_the_reader_cache_of_session_keys_is_bounded(monkeypatch):
    monkeypatch.setattr(aesgcm, "OPENER_CACHE_SIZE", 4)
    key = hashlib.sha256(b"readers").digest()
    writers = [AesGcmEncryptor(Keyring(key)) for _ in range(10)]  # ten sessions
    reader = AesGcmEncryptor(Keyring(key))
    for writer in writers * 2:
        blob = writer.encrypt(b"x", b"")
        assert reader.decrypt(blob, b"", key_id=reader.key_id) == b"x"
    assert len(reader._openers) == 4


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_starts_its_own_session():
    enc = AesGcmEncryptor(Keyring(hashlib.sha256(b"fork").digest()))
    parent_salt = enc.encrypt(b"p", b"")[1 : 1 + SALT_BYTES]
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report the salt it seals with
        try:
            os.write(write, enc.encrypt(b"c", b"")[1 : 1 + SALT_BYTES])
        finally:
            os._exit(0)
    os.close(write)
    child_salt = os.read(read, SALT_BYTES)
    os.close(read)
    os.waitpid(pid, 0)
    assert len(child_salt) == SALT_BYTES
    assert child_salt != parent_salt
    assert enc.encrypt(b"p", b"")[1 : 1 + SALT_BYTES] == parent_salt


def test_a_session_key_in_use_is_kept_and_forged_blobs_do_not_push_it_out(monkeypatch):
    monkeypatch.setattr(aesgcm, "OPENER_CACHE_SIZE", 4)
    key = hashlib.sha256(b"lru").digest()
    writer, reader = AesGcmEncryptor(Keyring(key)), AesGcmEncryptor(Keyring(key))
    good = writer.encrypt(b"v", b"")
    assert reader.decrypt(good, b"", key_id=reader.key_id) == b"v"
    for _ in range(10):  # forged blobs under fresh salts: fail, and are never cached
        forged = good[:1] + os.urandom(SALT_BYTES) + good[1 + SALT_BYTES :]
        with pytest.raises(DecryptionError):
            reader.decrypt(forged, b"", key_id=reader.key_id)
    assert list(reader._openers) == [(reader.key_id, good[1 : 1 + SALT_BYTES])]
    others = [AesGcmEncryptor(Keyring(key)) for _ in range(6)]
    for other in others:  # real sessions, read between reads of the first one
        reader.decrypt(other.encrypt(b"x", b""), b"", key_id=reader.key_id)
        reader.decrypt(good, b"", key_id=reader.key_id)
    assert (reader.key_id, good[1 : 1 + SALT_BYTES]) in reader._openers
    assert len(reader._openers) == 4
