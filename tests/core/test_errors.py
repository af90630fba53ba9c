"""The error hierarchy: stable unique codes, messages that start with the code, pickling."""

from __future__ import annotations

import pickle

import pytest

import cachekit
from cachekit import errors
from cachekit.errors import (
    CacheKeyError,
    CachekitError,
    ConfigurationError,
    DecryptionError,
    DeserializationError,
    MasterKeyFormatError,
    MasterKeyMissingError,
    PluginConflictError,
    PluginLoadError,
    PluginNotFoundError,
    SerializationError,
    error_codes,
)


def cachekit_error_classes() -> list[type[CachekitError]]:
    """Every error class cachekit itself defines (test-local subclasses excluded)."""
    found, pending = [], [CachekitError]
    while pending:
        cls = pending.pop()
        if cls.__module__.split(".")[0] == "cachekit":
            found.append(cls)
        pending.extend(cls.__subclasses__())
    return found


ALL_CLASSES = cachekit_error_classes()


def test_every_error_class_has_its_own_code():
    codes = [cls.code for cls in ALL_CLASSES]
    assert len(codes) == len(set(codes)), sorted(codes)
    for code in codes:
        assert len(code) == 4 and code[0] == "E" and code[1:].isdigit()


def test_error_codes_maps_each_code_to_its_class():
    table = error_codes()
    assert set(table.values()) >= set(ALL_CLASSES)
    for code, cls in table.items():
        assert cls.code == code
    assert list(table) == sorted(table)
    for name in errors.__all__:
        obj = getattr(errors, name)
        if isinstance(obj, type):
            assert table[obj.code] is obj, name


@pytest.mark.parametrize(
    ("code", "cls", "bases"),
    [
        ("E001", MasterKeyMissingError, ()),
        ("E002", MasterKeyFormatError, (ValueError,)),
        ("E003", DecryptionError, ()),
        ("E004", SerializationError, (TypeError,)),
        ("E005", DeserializationError, ()),
        ("E020", CacheKeyError, (TypeError,)),
        ("E040", ConfigurationError, (ValueError,)),
        ("E041", PluginNotFoundError, (ImportError, ConfigurationError)),
        ("E042", PluginLoadError, (ImportError,)),
        ("E043", PluginConflictError, (ConfigurationError,)),
    ],
)
def test_documented_codes_mean_what_issue_2_says(code, cls, bases):
    assert error_codes()[code] is cls
    assert issubclass(cls, CachekitError)
    for base in bases:
        assert issubclass(cls, base)


def test_the_errors_are_exported_from_the_package():
    for cls in (SerializationError, ConfigurationError, CacheKeyError, MasterKeyMissingError):
        assert getattr(cachekit, cls.__name__, cls) is cls


@pytest.mark.parametrize("cls", ALL_CLASSES, ids=lambda c: c.__name__)
def test_str_starts_with_the_code(cls):
    error = cls("something happened")
    text = str(error)
    assert text.startswith(f"[{cls.code}] something happened")
    assert error.code == cls.code
    assert error.message == "something happened"
    if cls.hint:
        assert text.endswith(cls.hint)


@pytest.mark.parametrize("cls", ALL_CLASSES, ids=lambda c: c.__name__)
def test_errors_survive_pickling(cls):
    for error in (cls("what happened"), cls("what happened", hint="do this instead")):
        copy = pickle.loads(pickle.dumps(error))
        assert type(copy) is cls
        assert str(copy) == str(error)
        assert copy.code == error.code
        assert copy.message == error.message
        assert copy.hint == error.hint
        assert copy.args == error.args


@pytest.mark.parametrize("cls", [MasterKeyMissingError, MasterKeyFormatError, DecryptionError])
def test_default_messages_survive_pickling(cls):
    error = cls()
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is cls
    assert str(copy) == str(error)


def test_a_hint_can_be_replaced_or_dropped():
    assert str(MasterKeyFormatError("bad key", hint="Try again.")) == "[E002] bad key Try again."
    assert str(MasterKeyFormatError("bad key", hint="")) == "[E002] bad key"
    assert str(CacheKeyError("no key")) == "[E020] no key"  # no default hint: nothing appended


def test_e001_default_message_states_the_problem_and_the_fix():
    text = str(MasterKeyMissingError())
    assert text.startswith("[E001] ")
    assert "CACHEKIT_MASTER_KEY environment variable must be set" in text
    assert "CACHEKIT_MASTER_KEY not set" in text
    assert "cachekit keygen" in text


def test_e002_default_message_states_the_format():
    text = str(MasterKeyFormatError())
    assert text.startswith("[E002] ")
    assert "CACHEKIT_MASTER_KEY must be hex-encoded, minimum 32 bytes" in text


def test_e003_default_message_states_the_failure():
    text = str(DecryptionError())
    assert text.startswith("[E003] ")
    assert "Decryption failed: authentication tag verification failed" in text


def test_serialization_error_is_a_type_error_and_plugin_not_found_an_import_error():
    with pytest.raises(TypeError):
        raise SerializationError("x")
    with pytest.raises(ImportError):
        raise PluginNotFoundError("x")
    with pytest.raises(CachekitError):
        raise PluginNotFoundError("x")


def test_every_error_can_be_caught_as_cachekit_error_and_exception():
    for cls in ALL_CLASSES:
        assert issubclass(cls, Exception)
        with pytest.raises(CachekitError):
            raise cls("x")
