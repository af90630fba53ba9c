"""Whatever comes back from the backend, decrypt() either returns the exact plaintext
sealed for this key, tenant and AAD, or raises DecryptionError (E003). Nothing else:
no other exception type, no partial plaintext, no detail about why."""

from __future__ import annotations

import hashlib
import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cachekit.errors import DecryptionError, EncryptionError
from cachekit_crypto.aesgcm import OVERHEAD, AesGcmEncryptor
from cachekit_crypto.keys import Keyring

MASTER = hashlib.sha256(b"cachekit-crypto test key 1").digest()
AAD = b"cachekit-envelope\x00\x01\x02\x00msgpack\x00kid\x00cachekit:app:f:digest"
PLAINTEXT = b"a secret worth 32 bytes of data!"
DEFAULT_MESSAGE = "Decryption failed: authentication tag verification failed."

# Regions of a blob of PLAINTEXT: (name, start, end)
REGIONS = [
    ("version byte", 0, 1),
    ("salt", 1, 17),
    ("nonce", 17, 29),
    ("ciphertext", 29, 29 + len(PLAINTEXT)),
    ("tag", 29 + len(PLAINTEXT), 29 + len(PLAINTEXT) + 16),
]


@pytest.fixture(scope="module")
def enc() -> AesGcmEncryptor:
    return AesGcmEncryptor(Keyring(MASTER), tenant="acme")


@pytest.fixture
def blob(enc: AesGcmEncryptor) -> bytes:
    return enc.encrypt(PLAINTEXT, AAD)


def rejected(enc: AesGcmEncryptor, data: object, aad: object = AAD, key_id: object = None) -> None:
    with pytest.raises(DecryptionError) as caught:
        enc.decrypt(data, aad, key_id=enc.key_id if key_id is None else key_id)  # type: ignore[arg-type]
    assert caught.value.code == "E003"
    assert DEFAULT_MESSAGE in str(caught.value)
    error = caught.value  # no chained detail either
    assert error.__cause__ is None and (error.__context__ is None or error.__suppress_context__)


def test_the_untouched_blob_decrypts(enc, blob):
    assert enc.decrypt(blob, AAD, key_id=enc.key_id) == PLAINTEXT


@pytest.mark.parametrize(("region", "start", "end"), REGIONS, ids=[r[0] for r in REGIONS])
def test_every_bit_flip_in_every_region_is_rejected(enc, blob, region, start, end):
    for position in range(start, end):
        for bit in range(8):
            tampered = bytearray(blob)
            tampered[position] ^= 1 << bit
            rejected(enc, bytes(tampered))


@pytest.mark.parametrize("version", [0, 2, 0x7F, 0x81, 0xFF])
def test_an_unknown_format_version_is_rejected(enc, blob, version):
    rejected(enc, bytes([version]) + blob[1:])


def test_truncation_to_any_length_is_rejected(enc, blob):
    for length in (0, 1, 11, 12, 16, 17, 27, 28, 29, 44, 45):
        rejected(enc, blob[:length])
    for length in range(len(blob)):
        rejected(enc, blob[:length])
    for cut in range(1, len(blob)):  # and from the front
        rejected(enc, blob[cut:])


def test_a_blob_of_an_empty_plaintext_is_exactly_the_overhead_and_cannot_shrink(enc):
    empty = enc.encrypt(b"", AAD)
    assert len(empty) == OVERHEAD
    assert enc.decrypt(empty, AAD, key_id=enc.key_id) == b""
    rejected(enc, empty[:-1])


@pytest.mark.parametrize(
    "suffix", [b"\x00", b"\x01" * 16, bytes(range(100))], ids=["1 byte", "16 bytes", "100 bytes"]
)
def test_extended_blobs_are_rejected(enc, blob, suffix):
    rejected(enc, blob + suffix)
    rejected(enc, blob[:1] + suffix + blob[1:])


def test_salt_and_nonce_swapped_between_two_blobs_are_rejected(enc):
    # Two writers (two sessions, so two salts) with the same keys and tenant.
    other_writer = AesGcmEncryptor(Keyring(MASTER), tenant="acme")
    first, second = enc.encrypt(PLAINTEXT, AAD), other_writer.encrypt(PLAINTEXT, AAD)
    assert first[1:17] != second[1:17]
    assert enc.decrypt(second, AAD, key_id=enc.key_id) == PLAINTEXT  # readable as is
    rejected(enc, first[:1] + second[1:17] + first[17:])  # second's salt
    rejected(enc, first[:17] + second[17:29] + first[29:])  # second's nonce
    rejected(enc, first[:1] + second[1:29] + first[29:])  # both
    rejected(enc, first[:29] + second[29:])  # second's ciphertext and tag
    rejected(enc, first[:-16] + second[-16:])  # second's tag
    rejected(enc, first[:1] + first[17:29] + first[1:17] + first[29:])  # salt/nonce order


@pytest.mark.parametrize(
    "other_aad",
    [
        AAD.replace(b"digest", b"digesu"),  # another cache key
        AAD + b"\x00",
        AAD[:-1],
        b"",
        AAD.replace(b"msgpack", b"pickle!"),  # another serializer
    ],
    ids=["other key", "one byte more", "one byte less", "empty", "other serializer"],
)
def test_a_blob_replayed_under_another_aad_is_rejected(enc, blob, other_aad):
    rejected(enc, blob, aad=other_aad)


def test_a_key_id_that_is_not_one_of_ours_is_rejected(enc, blob):
    for key_id in ("", "000000000000", enc.key_id.upper(), enc.key_id + " ", "x" * 300):
        rejected(enc, blob, key_id=key_id)
    for key_id in (None, 0, enc.key_id.encode(), [enc.key_id]):
        with pytest.raises(DecryptionError):
            enc.decrypt(blob, AAD, key_id=key_id)  # type: ignore[arg-type]


@pytest.mark.parametrize("data", [None, 0, 3.5, "a str blob" * 10, ["list"], {"b": b"x"}, object()])
def test_non_bytes_input_is_rejected(enc, data):
    rejected(enc, data)


def test_non_bytes_aad_is_rejected(enc, blob):
    for aad in (None, AAD.decode("latin-1"), 1):
        rejected(enc, blob, aad=aad)


def test_bytes_like_inputs_are_accepted(enc, blob):
    assert enc.decrypt(bytearray(blob), bytearray(AAD), key_id=enc.key_id) == PLAINTEXT
    assert enc.decrypt(memoryview(blob), memoryview(AAD), key_id=enc.key_id) == PLAINTEXT
    sealed = enc.encrypt(memoryview(PLAINTEXT), bytearray(AAD))
    assert enc.decrypt(sealed, AAD, key_id=enc.key_id) == PLAINTEXT
    # Non-contiguous or multi-byte-item buffers are read as their raw bytes.
    strided = memoryview(PLAINTEXT * 2)[::2]
    sealed = enc.encrypt(strided, memoryview(AAD).cast("B"))
    assert enc.decrypt(memoryview(sealed)[::1], AAD, key_id=enc.key_id) == bytes(strided)
    words = memoryview(bytearray(AAD[:40])).cast("I")
    sealed = enc.encrypt(PLAINTEXT, words)
    assert enc.decrypt(sealed, AAD[:40], key_id=enc.key_id) == PLAINTEXT
    assert enc.decrypt(memoryview(sealed), words, key_id=enc.key_id) == PLAINTEXT
    rejected(enc, memoryview(sealed)[::2])


def test_oversized_input_is_rejected_before_any_work():
    small = AesGcmEncryptor(Keyring(MASTER), max_size=1024)
    fits = small.encrypt(os.urandom(1024), AAD)
    assert len(small.decrypt(fits, AAD, key_id=small.key_id)) == 1024
    too_big = b"\x01" + os.urandom(1024 + OVERHEAD)
    rejected(small, too_big)
    rejected(small, memoryview(too_big))
    rejected(small, bytearray(too_big))
    with pytest.raises(EncryptionError, match="max_size"):
        small.encrypt(os.urandom(1025), AAD)


def test_huge_garbage_is_rejected(enc):
    garbage = b"\x01" + bytes(32 * 1024 * 1024)
    rejected(enc, garbage)
    rejected(enc, b"\x01" + os.urandom(4 * 1024 * 1024))


def test_encrypt_refuses_what_is_not_bytes(enc):
    with pytest.raises(EncryptionError):
        enc.encrypt("text", AAD)  # type: ignore[arg-type]
    with pytest.raises(EncryptionError):
        enc.encrypt(b"bytes", "text aad")  # type: ignore[arg-type]


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_random_bytes_never_decrypt_and_never_raise_anything_else(data):
    enc = AesGcmEncryptor(Keyring(MASTER))
    for candidate in (data, b"\x01" + data):
        with pytest.raises(DecryptionError):
            enc.decrypt(candidate, AAD, key_id=enc.key_id)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300), st.binary(max_size=100), st.data())
def test_any_single_byte_change_is_rejected(plaintext, aad, data):
    enc = AesGcmEncryptor(Keyring(MASTER), tenant="t")
    sealed = enc.encrypt(plaintext, aad)
    assert enc.decrypt(sealed, aad, key_id=enc.key_id) == plaintext
    position = data.draw(st.integers(0, len(sealed) - 1))
    delta = data.draw(st.integers(1, 255))
    tampered = bytearray(sealed)
    tampered[position] ^= delta
    with pytest.raises(DecryptionError):
        enc.decrypt(bytes(tampered), aad, key_id=enc.key_id)
