"""Signing: HKDF-SHA256 per RFC 5869, HMAC tags, key parsing that never echoes a key."""

from __future__ import annotations

import traceback

import pytest

from cachekit.errors import ConfigurationError, MasterKeyFormatError
from cachekit.signing import (
    MIN_KEY_BYTES,
    TAG_SIZE,
    Signer,
    hkdf_sha256,
    parse_hex_key,
    signer_from_env,
)

MASTER_HEX = "a1" * 32
SIGNING_HEX = "5e" * 32

# RFC 5869 appendix A, test cases 1-3 (SHA-256): (IKM, salt, info, L, OKM).
RFC5869_SHA256 = [
    pytest.param(
        bytes([0x0B] * 22),
        bytes(range(0x00, 0x0D)),
        bytes(range(0xF0, 0xFA)),
        42,
        "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865",
        id="case-1-basic",
    ),
    pytest.param(
        bytes(range(0x00, 0x50)),
        bytes(range(0x60, 0xB0)),
        bytes(range(0xB0, 0x100)),
        82,
        "b11e398dc80327a1c8e7f78c596a49344f012eda2d4efad8a050cc4c19afa97c"
        "59045a99cac7827271cb41c65e590e09da3275600c2f09b8367793a9aca3db71"
        "cc30c58179ec3e87c14c01d5c1f3434f1d87",
        id="case-2-long-inputs",
    ),
    pytest.param(
        bytes([0x0B] * 22),
        b"",
        b"",
        42,
        "8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d9d201395faa4b61a96c8",
        id="case-3-no-salt-no-info",
    ),
]


@pytest.mark.parametrize(("ikm", "salt", "info", "length", "okm"), RFC5869_SHA256)
def test_hkdf_matches_rfc5869_vectors(ikm, salt, info, length, okm):
    assert hkdf_sha256(ikm, info, length, salt=salt).hex() == okm


def test_hkdf_output_is_a_prefix_of_a_longer_output_and_depends_on_info():
    ikm = bytes(range(32))
    long = hkdf_sha256(ikm, b"purpose", 100)
    assert hkdf_sha256(ikm, b"purpose", 32) == long[:32]
    assert len(long) == 100
    assert hkdf_sha256(ikm, b"other purpose", 32) != long[:32]
    assert len(hkdf_sha256(ikm, b"x", 255 * 32)) == 255 * 32
    with pytest.raises(ValueError):
        hkdf_sha256(ikm, b"x", 255 * 32 + 1)


# --- Signer -------------------------------------------------------------------------------


def test_a_tag_verifies_only_for_its_data_and_key():
    signer = Signer(bytes.fromhex(SIGNING_HEX))
    tag = signer.sign(b"payload")
    assert len(tag) == TAG_SIZE
    assert signer.sign(b"payload") == tag  # deterministic
    assert signer.verify(b"payload", tag) is True
    assert signer.verify(b"payload!", tag) is False
    assert Signer(bytes.fromhex(MASTER_HEX)).verify(b"payload", tag) is False
    for bad in (b"", tag[:-1], tag + b"\x00", bytes(TAG_SIZE), bytes([tag[0] ^ 1]) + tag[1:]):
        assert signer.verify(b"payload", bad) is False


def test_short_signing_keys_are_refused():
    with pytest.raises(ConfigurationError):
        Signer(b"k" * (MIN_KEY_BYTES - 1))
    assert Signer(b"k" * MIN_KEY_BYTES).sign(b"")


def test_signer_repr_never_shows_the_key():
    key = bytes.fromhex(SIGNING_HEX)
    signer = Signer(key)
    for text in (repr(signer), str(signer), f"{signer!r}"):
        assert SIGNING_HEX not in text
        assert SIGNING_HEX[:16] not in text
        assert repr(key) not in text
        assert repr(key)[2:18] not in text
    assert signer.key_id in repr(signer)
    assert not SIGNING_HEX.startswith(signer.key_id)
    assert not hasattr(signer, "__dict__")


# --- parse_hex_key ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        "not-a-hex-key-but-a-secret-passphrase-that-is-long-enough-xxxxxxx",
        "zz" * 32,
        "ab" * 31,  # 31 bytes: one short
        "abc",  # odd length
        "",
        "   ",
        "\n\t",
    ],
    ids=["text", "non-hex", "short", "odd", "empty", "spaces", "whitespace"],
)
def test_bad_keys_raise_e002_without_echoing_the_key(value):
    with pytest.raises(MasterKeyFormatError) as err:
        parse_hex_key(value)
    error = err.value
    assert error.code == "E002"
    assert isinstance(error, ValueError)
    text = str(error)
    assert "must be hex-encoded, minimum 32 bytes" in text
    assert "CACHEKIT_MASTER_KEY" in text
    rendered = "".join(traceback.format_exception(error)) + repr(error) + repr(error.args)
    if value.strip():
        assert value.strip() not in rendered
        assert value.strip()[:12] not in rendered


def test_a_bad_signing_key_names_its_own_variable():
    with pytest.raises(MasterKeyFormatError) as err:
        parse_hex_key("12" * 16, "CACHEKIT_SIGNING_KEY")
    assert "CACHEKIT_SIGNING_KEY must be hex-encoded, minimum 32 bytes" in str(err.value)
    assert "12" * 16 not in str(err.value)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (MASTER_HEX, bytes.fromhex(MASTER_HEX)),
        (f"  {MASTER_HEX}\n", bytes.fromhex(MASTER_HEX)),
        (MASTER_HEX.upper(), bytes.fromhex(MASTER_HEX)),
        ("0f" * 64, bytes([0x0F] * 64)),
    ],
)
def test_good_keys_are_decoded(value, expected):
    assert parse_hex_key(value) == expected


# --- signer_from_env ----------------------------------------------------------------------


def tag_of(signer: Signer | None) -> bytes:
    assert signer is not None
    return signer.sign(b"probe")


def test_no_key_in_the_environment_means_no_signer():
    assert signer_from_env({}) is None
    assert signer_from_env({"CACHEKIT_SIGNING_KEY": "", "CACHEKIT_MASTER_KEY": ""}) is None


@pytest.mark.parametrize("variable", ["CACHEKIT_SIGNING_KEY", "CACHEKIT_MASTER_KEY"])
def test_a_whitespace_only_key_is_e002_not_unset(variable):
    """The same verdict cachekit-crypto gives: a set but blank key is a mistake."""
    with pytest.raises(MasterKeyFormatError) as err:
        signer_from_env({variable: "   "})
    assert variable in str(err.value)


def test_the_signing_key_is_used_as_is():
    signer = signer_from_env({"CACHEKIT_SIGNING_KEY": SIGNING_HEX})
    assert tag_of(signer) == Signer(bytes.fromhex(SIGNING_HEX)).sign(b"probe")


def test_the_signing_key_takes_precedence_over_the_master_key():
    both = signer_from_env({"CACHEKIT_SIGNING_KEY": SIGNING_HEX, "CACHEKIT_MASTER_KEY": MASTER_HEX})
    assert tag_of(both) == tag_of(signer_from_env({"CACHEKIT_SIGNING_KEY": SIGNING_HEX}))
    assert tag_of(both) != tag_of(signer_from_env({"CACHEKIT_MASTER_KEY": MASTER_HEX}))


def test_a_key_derived_from_the_master_key_is_not_the_master_key():
    derived = signer_from_env({"CACHEKIT_MASTER_KEY": MASTER_HEX})
    assert tag_of(derived) != Signer(bytes.fromhex(MASTER_HEX)).sign(b"probe")
    # Stable across calls and processes: the derivation has no randomness.
    assert tag_of(derived) == tag_of(signer_from_env({"CACHEKIT_MASTER_KEY": MASTER_HEX}))
    assert tag_of(derived) != tag_of(signer_from_env({"CACHEKIT_MASTER_KEY": "a2" * 32}))


def test_a_bad_signing_key_is_an_error_even_when_a_master_key_is_set():
    with pytest.raises(MasterKeyFormatError) as err:
        signer_from_env({"CACHEKIT_SIGNING_KEY": "nope", "CACHEKIT_MASTER_KEY": MASTER_HEX})
    assert "CACHEKIT_SIGNING_KEY" in str(err.value)
    with pytest.raises(MasterKeyFormatError) as err:
        signer_from_env({"CACHEKIT_MASTER_KEY": "ab" * 8})
    assert "CACHEKIT_MASTER_KEY" in str(err.value)


def test_signer_from_env_reads_the_process_environment(monkeypatch):
    assert signer_from_env() is None
    monkeypatch.setenv("CACHEKIT_MASTER_KEY", MASTER_HEX)
    assert tag_of(signer_from_env()) == tag_of(signer_from_env({"CACHEKIT_MASTER_KEY": MASTER_HEX}))
    monkeypatch.setenv("CACHEKIT_SIGNING_KEY", SIGNING_HEX)
    assert tag_of(signer_from_env()) == Signer(bytes.fromhex(SIGNING_HEX)).sign(b"probe")
