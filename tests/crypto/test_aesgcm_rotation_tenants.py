"""Key rotation and tenants at the encryptor level, and the blob format pinned down."""

from __future__ import annotations

import hashlib
import hmac

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from hypothesis import given
from hypothesis import strategies as st

from cachekit import envelope
from cachekit.errors import DecryptionError
from cachekit_crypto import aesgcm
from cachekit_crypto.aesgcm import MESSAGE_LABEL, AesGcmEncryptor, _tenant_binding
from cachekit_crypto.keys import Keyring, key_id_of, keyring_from_env
from cachekit_crypto.plugin import make_encryptor


def _hex(n: int) -> str:
    return hashlib.sha256(b"cachekit-crypto test key %d" % n).hexdigest()


K1, K2, K3 = _hex(1), _hex(2), _hex(3)
AAD = b"cachekit-envelope\x00ctx\x00cachekit:app:load_user:digest"


def encryptor(current: str, *previous: str, tenant: str | None = None) -> AesGcmEncryptor:
    environ = {"CACHEKIT_MASTER_KEY": current}
    if previous:
        environ["CACHEKIT_PREVIOUS_MASTER_KEYS"] = ",".join(previous)
    enc = make_encryptor(tenant=tenant, environ=environ)
    assert isinstance(enc, AesGcmEncryptor)
    return enc


# --- rotation ----------------------------------------------------------------------------


def test_a_previous_key_stays_readable_and_new_writes_use_the_current_key():
    old = encryptor(K1)
    blob = old.encrypt(b"written before the rotation", AAD)

    rotated = encryptor(K2, K1)
    assert rotated.key_id == key_id_of(bytes.fromhex(K2)) != old.key_id
    assert rotated.key_ids == (rotated.key_id, old.key_id)
    assert rotated.decrypt(blob, AAD, key_id=old.key_id) == b"written before the rotation"

    fresh = rotated.encrypt(b"written after", AAD)
    assert encryptor(K2).decrypt(fresh, AAD, key_id=rotated.key_id) == b"written after"
    with pytest.raises(DecryptionError):
        old.decrypt(fresh, AAD, key_id=rotated.key_id)
    with pytest.raises(DecryptionError):
        old.decrypt(fresh, AAD, key_id=old.key_id)


def test_without_the_previous_key_old_entries_do_not_decrypt():
    old = encryptor(K1)
    blob = old.encrypt(b"value", AAD)
    new_only = encryptor(K2)
    for key_id in (old.key_id, new_only.key_id):
        with pytest.raises(DecryptionError):
            new_only.decrypt(blob, AAD, key_id=key_id)


def test_the_key_id_picks_the_key_without_trial_decryption():
    rotated = encryptor(K2, K1)
    blob = encryptor(K1).encrypt(b"value", AAD)
    # Labelled with the current key's id, K1's blob is tried with K2 only, and fails.
    with pytest.raises(DecryptionError):
        rotated.decrypt(blob, AAD, key_id=rotated.key_id)


def test_rotation_works_per_tenant_too():
    blob = encryptor(K1, tenant="acme").encrypt(b"value", AAD)
    rotated = encryptor(K3, K2, K1, tenant="acme")
    assert rotated.decrypt(blob, AAD, key_id=key_id_of(bytes.fromhex(K1))) == b"value"
    with pytest.raises(DecryptionError):
        encryptor(K3, K2, K1, tenant="globex").decrypt(
            blob, AAD, key_id=key_id_of(bytes.fromhex(K1))
        )


def test_an_envelope_sealed_before_a_rotation_opens_after_it():
    key = "cachekit:app:load_user:abc"
    stored = envelope.seal(b"payload", serializer="msgpack", key=key, encryptor=encryptor(K1))
    header = envelope.read_header(stored)
    assert header.key_id == key_id_of(bytes.fromhex(K1))
    payload = envelope.open_envelope(
        stored, serializer="msgpack", key=key, encryptor=encryptor(K2, K1)
    )
    assert payload == b"payload"
    with pytest.raises(DecryptionError):
        envelope.open_envelope(stored, serializer="msgpack", key=key, encryptor=encryptor(K2))
    with pytest.raises(DecryptionError):  # copied to another backend key
        envelope.open_envelope(
            stored, serializer="msgpack", key=key + "x", encryptor=encryptor(K2, K1)
        )


def test_digest_key_survives_a_rotation_until_the_oldest_key_is_retired():
    only_k1 = encryptor(K1).digest_key
    assert encryptor(K2, K1).digest_key == only_k1
    assert encryptor(K3, K2, K1).digest_key == only_k1
    assert encryptor(K3, K1).digest_key == only_k1
    # Retiring K1 moves every key name, once.
    assert encryptor(K3, K2).digest_key == encryptor(K2).digest_key != only_k1
    assert encryptor(K2).digest_key != only_k1
    assert encryptor(K2, K1).naming_key_id == key_id_of(bytes.fromhex(K1))


# --- tenants -----------------------------------------------------------------------------


@pytest.mark.parametrize("reader", ["globex", None, "", "ACME", "acme ", "acm"])
def test_a_blob_of_one_tenant_does_not_decrypt_for_another(reader):
    blob = encryptor(K1, tenant="acme").encrypt(b"acme's secret", AAD)
    other = encryptor(K1, tenant=reader)
    with pytest.raises(DecryptionError):
        other.decrypt(blob, AAD, key_id=other.key_id)


def test_a_blob_without_tenant_does_not_decrypt_for_a_tenant():
    blob = encryptor(K1).encrypt(b"value", AAD)
    for tenant in ("", "\x00", "acme"):
        other = encryptor(K1, tenant=tenant)
        with pytest.raises(DecryptionError):
            other.decrypt(blob, AAD, key_id=other.key_id)


def test_the_tenant_binding_alone_stops_a_moved_blob_even_with_equal_keys():
    acme, globex = encryptor(K1, tenant="acme"), encryptor(K1, tenant="globex")
    globex._templates = acme._templates  # as if both tenants had the same subkeys
    blob = acme.encrypt(b"value", AAD)
    assert acme.decrypt(blob, AAD, key_id=acme.key_id) == b"value"
    with pytest.raises(DecryptionError):
        globex.decrypt(blob, AAD, key_id=acme.key_id)


@given(
    st.binary(max_size=12),
    st.none() | st.text(max_size=6),
    st.binary(max_size=12),
    st.none() | st.text(max_size=6),
)
def test_aad_and_tenant_binding_never_concatenate_alike(aad1, tenant1, aad2, tenant2):
    if (aad1, tenant1) != (aad2, tenant2):
        assert aad1 + _tenant_binding(tenant1) != aad2 + _tenant_binding(tenant2)


def test_tricky_aad_and_tenant_pairs_stay_apart():
    pairs = [
        (b"k", "ab"),
        (b"k" + _tenant_binding("ab")[:-6], "x"),
        (b"ka", "b"),
        (b"k", None),
        (b"k" + b"\x00cachekit-tenant", None),
        (b"", "k"),
    ]
    bound = {aad + _tenant_binding(tenant) for aad, tenant in pairs}
    assert len(bound) == len(pairs)


def test_one_encryptor_per_tenant_is_cheap_and_they_agree():
    first, second = encryptor(K1, tenant="acme"), encryptor(K1, tenant="acme")
    assert first is not second
    blob = first.encrypt(b"value", AAD)
    assert second.decrypt(blob, AAD, key_id=second.key_id) == b"value"
    ring = keyring_from_env({"CACHEKIT_MASTER_KEY": K1})
    assert ring is keyring_from_env({"CACHEKIT_MASTER_KEY": K1})


# --- the format, pinned ------------------------------------------------------------------


def test_the_blob_layout_is_version_salt_nonce_ciphertext_tag():
    master = bytes.fromhex(K1)
    enc = AesGcmEncryptor(Keyring(master), tenant="acme")
    plaintext = b"sixteen byte msg"
    blob = enc.encrypt(plaintext, AAD)
    assert len(blob) == 1 + 16 + 12 + len(plaintext) + 16 == len(plaintext) + aesgcm.OVERHEAD
    assert blob[0] == 1
    salt, nonce, sealed = blob[1:17], blob[17:29], blob[29:]
    # Rebuilt from the documented derivation alone:
    subkey = Keyring(master).encryption_key(enc.key_id, "acme")
    message_key = hmac.digest(subkey, MESSAGE_LABEL + salt + b"\x01", "sha256")
    tenant = b"acme"
    binding = b"\x00cachekit-tenant" + tenant + len(tenant).to_bytes(4, "big") + b"\x01"
    assert AESGCM(message_key).decrypt(nonce, sealed, b"\x01" + AAD + binding) == plaintext


def test_no_tenant_is_bound_as_its_own_marker():
    assert _tenant_binding(None) == b"\x00cachekit-tenant\x00"
    assert _tenant_binding("") == b"\x00cachekit-tenant" + bytes(4) + b"\x01"
