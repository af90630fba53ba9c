"""Master keys from the environment: E001 when missing, E002 when malformed, never a
fallback, and never a byte of key material in a message, a repr or a log line."""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import pickle
import subprocess
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cachekit.errors import (
    ConfigurationError,
    DecryptionError,
    MasterKeyFormatError,
    MasterKeyMissingError,
)
from cachekit.hookspecs import EncryptorSpec
from cachekit.signing import hkdf_sha256
from cachekit_crypto import keys as keys_module
from cachekit_crypto import plugin
from cachekit_crypto.aesgcm import AesGcmEncryptor
from cachekit_crypto.keys import (
    ENCRYPTION_LABEL,
    KEY_NAMING_LABEL,
    Keyring,
    hkdf_info,
    key_id_of,
    keyring_from_env,
    tenant_field,
)


def _hex(n: int) -> str:
    return hashlib.sha256(b"cachekit-crypto test key %d" % n).hexdigest()


K1, K2, K3 = _hex(1), _hex(2), _hex(3)
MASTER = "CACHEKIT_MASTER_KEY"
PREVIOUS = "CACHEKIT_PREVIOUS_MASTER_KEYS"
FORMAT_MESSAGE = "CACHEKIT_MASTER_KEY must be hex-encoded, minimum 32 bytes"


def _fragments(secret: str, width: int = 12) -> set[str]:
    """Every `width`-character window of a secret, in both cases."""
    text = secret.strip()
    windows = {text[i : i + width] for i in range(max(1, len(text) - width + 1))}
    return windows | {w.upper() for w in windows} | {w.lower() for w in windows}


def assert_no_secret(text: str, *secrets: str | bytes) -> None:
    for secret in secrets:
        raw = secret if isinstance(secret, bytes) else None
        hexed = secret.hex() if isinstance(secret, bytes) else secret
        for fragment in _fragments(hexed):
            assert fragment not in text, f"a piece of key material leaked into {text!r}"
        if raw is not None:
            assert repr(raw)[2:-1][:24] not in text


# --- E001: no key ---------------------------------------------------------------------


@pytest.mark.parametrize("environ", [{}, {MASTER: ""}, {PREVIOUS: K1}, {MASTER: "", PREVIOUS: K1}])
def test_a_missing_or_empty_master_key_is_e001(environ):
    with pytest.raises(MasterKeyMissingError) as caught:
        keyring_from_env(environ)
    assert caught.value.code == "E001"
    assert "CACHEKIT_MASTER_KEY environment variable must be set" in str(caught.value)


def test_the_process_environment_is_read_by_default(monkeypatch):
    with pytest.raises(MasterKeyMissingError):
        keyring_from_env()
    monkeypatch.setenv(MASTER, K1)
    assert keyring_from_env().key_id == key_id_of(bytes.fromhex(K1))


def test_the_plugin_factory_raises_e001_without_a_key_instead_of_falling_back():
    with pytest.raises(MasterKeyMissingError):
        plugin.make_encryptor(tenant=None, environ={})
    with pytest.raises(MasterKeyMissingError):
        plugin.make_encryptor(tenant="acme", environ={"CACHEKIT_SIGNING_KEY": K1})


# --- E002: a key that is not a key ----------------------------------------------------

BAD_MASTER_KEYS = {
    "not hex at all": "this-is-my-super-secret-password-nobody-will-guess-it-ever!!",
    "one byte short": K1[:62],
    "far too short": "abcd1234",
    "odd length": K1 + "a",
    "hex with a stray letter": K1[:30] + "g" + K1[31:],
    "0x prefix": "0x" + K1,
    "only spaces": "   ",
    "only whitespace": " \t\n ",
    "non-ascii digits": "\u0661" * 64,
    "base64 of 32 bytes": "q83vEjRWeJCrze8SNFZ4kKvN7xI0VniQq83vEjRWeJA=",
}


@pytest.mark.parametrize("value", BAD_MASTER_KEYS.values(), ids=BAD_MASTER_KEYS.keys())
def test_a_malformed_master_key_is_e002_without_echoing_it(value):
    with pytest.raises(MasterKeyFormatError) as caught:
        keyring_from_env({MASTER: value})
    error = caught.value
    assert error.code == "E002"
    assert FORMAT_MESSAGE in str(error)
    if value.strip():
        assert_no_secret(str(error), value)
        assert_no_secret(repr(error), value)


def test_a_valid_key_with_a_typo_never_shows_the_valid_part():
    value = K1 + "zz"
    with pytest.raises(MasterKeyFormatError) as caught:
        keyring_from_env({MASTER: value})
    assert_no_secret(str(caught.value), K1)


@pytest.mark.parametrize(
    "value",
    [K1, K1.upper(), f"  {K1}\n", K1 + K2[:32], K1 + K2],
    ids=["lower", "upper", "surrounding whitespace", "48 bytes", "64 bytes"],
)
def test_valid_master_keys_are_accepted(value):
    ring = keyring_from_env({MASTER: value})
    assert ring.key_id == key_id_of(bytes.fromhex(value.strip()))


@pytest.mark.parametrize(
    ("previous", "position"),
    [
        ("abcd", 1),
        (f"{K2},not-a-key-at-all-but-long-enough-to-look-like-one-xxxxxxxxxxxxxx", 2),
        (f"{K2}, {K3}, {K1[:40]}", 3),
        (f"{K2},,{K3[:-1]}", 2),  # positions count keys, not separators
        (f"{K2}, {K3}\t,   ,{K1}  ,{'0x' + K1}", 4),
    ],
)
def test_a_malformed_previous_key_is_e002_naming_the_variable_and_position(previous, position):
    with pytest.raises(MasterKeyFormatError) as caught:
        keyring_from_env({MASTER: K1, PREVIOUS: previous})
    message = str(caught.value)
    assert caught.value.code == "E002"
    assert f"{PREVIOUS} (item {position}) must be hex-encoded, minimum 32 bytes" in message
    for item in previous.split(","):
        if item.strip():
            assert_no_secret(message, item)
    assert_no_secret(message, K1)


def test_previous_keys_allow_spaces_and_empty_items_and_keep_their_order():
    ring = keyring_from_env({MASTER: K3, PREVIOUS: f" {K2} ,, {K1},  "})
    assert ring.key_ids == tuple(key_id_of(bytes.fromhex(k)) for k in (K3, K2, K1))
    assert ring.key_id == ring.key_ids[0]
    assert ring.naming_key_id == key_id_of(bytes.fromhex(K1))


def test_a_key_listed_twice_is_kept_once_at_its_first_position():
    ring = keyring_from_env({MASTER: K2, PREVIOUS: f"{K2},{K1},{K1.upper()}"})
    assert ring.key_ids == (key_id_of(bytes.fromhex(K2)), key_id_of(bytes.fromhex(K1)))


def test_an_empty_previous_variable_means_no_previous_keys():
    assert keyring_from_env({MASTER: K1, PREVIOUS: ""}).key_ids == (key_id_of(bytes.fromhex(K1)),)
    assert len(keyring_from_env({MASTER: K1, PREVIOUS: " , ,"}).key_ids) == 1


@pytest.mark.parametrize("bad", [b"short", b"", "a str" * 10, 12345])
def test_a_keyring_built_in_code_checks_its_keys(bad):
    with pytest.raises((MasterKeyFormatError, ConfigurationError)):
        Keyring(bad)
    with pytest.raises((MasterKeyFormatError, ConfigurationError)):
        Keyring(bytes.fromhex(K1), [bad])


# --- key ids ---------------------------------------------------------------------------


def test_key_ids_are_short_printable_public_fingerprints():
    master = bytes.fromhex(K1)
    key_id = key_id_of(master)
    assert key_id == hmac.new(master, b"cachekit/v1/key-id", hashlib.sha256).hexdigest()[:12]
    assert len(key_id) == 12 and key_id.isascii() and key_id.isprintable()
    assert key_id not in K1  # not a piece of the key itself
    assert len({key_id_of(bytes.fromhex(k)) for k in (K1, K2, K3)}) == 3


def test_key_ids_are_the_same_in_another_process():
    code = (
        "import sys; from cachekit_crypto.keys import keyring_from_env; "
        "print(keyring_from_env({'CACHEKIT_MASTER_KEY': sys.argv[1]}).key_id)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, K1], capture_output=True, text=True, check=True, timeout=60
    )
    assert done.stdout.strip() == keyring_from_env({MASTER: K1}).key_id


# --- derivation --------------------------------------------------------------------------


def test_subkeys_are_rfc5869_hkdf_sha256_with_their_purpose_labels():
    master = bytes.fromhex(K1)
    ring = Keyring(master)
    # cachekit.signing.hkdf_sha256 is an independent stdlib implementation.
    for tenant in (None, "", "acme"):
        info = hkdf_info(ENCRYPTION_LABEL, tenant_field(tenant))
        assert ring.encryption_key(ring.key_id, tenant) == hkdf_sha256(master, info)
    assert ring.digest_key == hkdf_sha256(master, hkdf_info(KEY_NAMING_LABEL))
    # Never the core's pickle-signing key, never the master key itself.
    signing = hkdf_sha256(master, b"cachekit/v1/pickle-signing")
    derived = {ring.digest_key, ring.encryption_key(ring.key_id, None)}
    assert signing not in derived and master not in derived


def test_length_prefixed_fields_never_collide():
    assert hkdf_info(b"a", b"bc") != hkdf_info(b"ab", b"c")
    assert hkdf_info(b"a", b"") != hkdf_info(b"a")
    assert hkdf_info(b"", b"a") != hkdf_info(b"a", b"")


@given(
    st.lists(st.binary(max_size=8), max_size=4),
    st.lists(st.binary(max_size=8), max_size=4),
)
def test_hkdf_info_is_injective(first, second):
    if first != second:
        assert hkdf_info(*first) != hkdf_info(*second)


@given(st.none() | st.text(max_size=8), st.none() | st.text(max_size=8))
def test_tenant_fields_are_injective_and_none_differs_from_every_string(a, b):
    if a != b:
        assert hkdf_info(ENCRYPTION_LABEL, tenant_field(a)) != hkdf_info(
            ENCRYPTION_LABEL, tenant_field(b)
        )


def test_tenants_that_concatenate_alike_get_different_subkeys():
    ring = Keyring(bytes.fromhex(K1))
    tenants = [None, "", "\x00", "\x01", "a", "ab", "a\x00", "abc", "bc", "c", "A", "\ud800"]
    subkeys = [ring.encryption_key(ring.key_id, t) for t in tenants]
    assert len(set(subkeys)) == len(tenants)
    # ("a", "bc") vs ("ab", "c"): a label that ends where a tenant begins cannot shift.
    assert hkdf_info(ENCRYPTION_LABEL + b"a", tenant_field("bc")) != hkdf_info(
        ENCRYPTION_LABEL, tenant_field("abc")
    )


def test_a_tenant_must_be_a_string_or_none():
    with pytest.raises(ConfigurationError, match="tenant must be a str or None"):
        plugin.make_encryptor(tenant=42, environ={MASTER: K1})
    with pytest.raises(ConfigurationError):
        plugin.make_encryptor(tenant=b"acme", environ={MASTER: K1})


def test_digest_key_does_not_depend_on_the_tenant():
    environ = {MASTER: K1}
    digests = {
        plugin.make_encryptor(tenant=t, environ=environ).digest_key
        for t in (None, "", "acme", "globex")
    }
    assert len(digests) == 1
    (digest,) = digests
    assert isinstance(digest, bytes) and len(digest) == 32


# --- caches ------------------------------------------------------------------------------


def test_keyrings_are_parsed_once_per_pair_of_strings():
    first = keyring_from_env({MASTER: K1, PREVIOUS: K2})
    assert keyring_from_env({MASTER: K1, PREVIOUS: K2, "OTHER": "x"}) is first
    assert keyring_from_env({MASTER: K1}) is not first
    assert keyring_from_env({MASTER: K1, PREVIOUS: f"{K2},"}) is not first


def test_the_keyring_cache_keeps_no_key_in_the_clear():
    keyring_from_env({MASTER: K3, PREVIOUS: K2})
    cache = keys_module._keyrings
    for cache_key in list(cache._data):
        assert isinstance(cache_key, bytes) and len(cache_key) == 32
        assert_no_secret(cache_key.hex(), K3, K2)
        assert bytes.fromhex(K3) not in cache_key


def test_derived_subkeys_are_cached_and_bounded():
    ring = Keyring(bytes.fromhex(K2))
    first = ring.encryption_key(ring.key_id, "acme")
    assert ring.encryption_key(ring.key_id, "acme") is first
    for n in range(keys_module.SUBKEY_CACHE_SIZE + 50):
        ring.encryption_key(ring.key_id, f"tenant-{n}")
    assert len(ring._subkeys) == keys_module.SUBKEY_CACHE_SIZE
    assert ring.encryption_key(ring.key_id, "acme") == first  # evicted, derived again alike


def test_an_unknown_key_id_has_no_subkey():
    ring = Keyring(bytes.fromhex(K1))
    with pytest.raises(KeyError):
        ring.encryption_key("000000000000", None)


# --- no key material anywhere ---------------------------------------------------------


def test_no_public_object_shows_key_material(caplog):
    caplog.set_level(logging.DEBUG)
    environ = {MASTER: K3, PREVIOUS: f"{K2},{K1}"}
    ring = keyring_from_env(environ)
    enc = plugin.make_encryptor(tenant="acme", environ=environ)
    assert isinstance(enc, AesGcmEncryptor)
    spec = list(plugin.cachekit_encryptors())
    secrets: list[str | bytes] = [K1, K2, K3, ring.digest_key]
    secrets += [ring.encryption_key(k, "acme") for k in ring.key_ids]
    objects = [
        ring,
        enc,
        *ring._keys,
        ring._subkeys,
        keys_module._keyrings,
        *spec,
        enc.key_ids,
    ]
    for obj in objects:
        assert_no_secret(repr(obj), *secrets)
        assert_no_secret(str(obj), *secrets)
    assert repr(enc) == f"AesGcmEncryptor(key_id={ring.key_id!r}, tenant='acme')"
    assert repr(ring) == f"Keyring(key_ids={ring.key_ids!r})"
    assert isinstance(spec[0], EncryptorSpec)
    # A failed decryption says nothing about keys either.
    with pytest.raises(DecryptionError) as caught:
        enc.decrypt(b"\x01" + os.urandom(60), b"aad", key_id=enc.key_id)
    assert_no_secret(str(caught.value), *secrets)
    for record in caplog.records:
        assert_no_secret(record.getMessage(), *secrets)


@pytest.mark.parametrize("make", ["keyring", "encryptor", "master key"])
def test_objects_holding_keys_refuse_to_be_pickled(make):
    ring = Keyring(bytes.fromhex(K1))
    obj = {
        "keyring": ring,
        "encryptor": AesGcmEncryptor(ring),
        "master key": ring._keys[0],
    }[make]
    with pytest.raises(TypeError, match="pickle"):
        pickle.dumps(obj)


def test_the_factory_rejects_unknown_options_by_name():
    with pytest.raises(ConfigurationError) as caught:
        plugin.make_encryptor(tenant=None, environ={MASTER: K1}, key="x", rounds=3)
    message = str(caught.value)
    assert caught.value.code == "E040"
    assert "key, rounds" in message and "aes-gcm" in message
    assert_no_secret(message, K1)


@pytest.mark.parametrize("max_size", [0, -1, 2**31, 1.5, True, "10"])
def test_max_size_must_be_a_sane_positive_int(max_size):
    with pytest.raises(ConfigurationError, match="max_size"):
        plugin.make_encryptor(environ={MASTER: K1}, max_size=max_size)
