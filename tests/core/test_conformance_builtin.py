"""The core's own backends and serializers pass the suites of cachekit.testing.

The second half of the file checks the suites themselves: each one must fail on
an implementation that breaks the rule it claims to check, and must not need
pytest to be imported.
"""

from __future__ import annotations

import dataclasses
import datetime
import decimal
import hashlib
import hmac
import os
import re
import subprocess
import sys
import threading
import types
import unittest
from typing import Any

import pluggy
import pytest

from cachekit import hookspecs
from cachekit.backends.memory import AsyncMemoryBackend, MemoryBackend, from_url
from cachekit.errors import DecryptionError
from cachekit.protocols import MISSING
from cachekit.serializers import MessagePackSerializer, PickleSerializer
from cachekit.testing import (
    AsyncBackendConformance,
    BackendConformance,
    EncryptorConformance,
    SerializerConformance,
)

# --- the built-ins pass ------------------------------------------------------------------


class TestMemoryBackend(BackendConformance):
    def make_backend(self):
        return MemoryBackend()


class TestNamedMemoryBackendFromUrl(BackendConformance):
    def make_backend(self):
        return from_url("memory://conformance-shared")


class TestAsyncMemoryBackend(AsyncBackendConformance):
    def make_backend(self):
        return AsyncMemoryBackend()


class TestAsyncMemoryBackendBuiltInsideTheLoop(AsyncBackendConformance):
    async def make_backend(self):
        return MemoryBackend("conformance-async").to_async()


class TestMessagePackSerializer(SerializerConformance):
    def make_serializer(self):
        return MessagePackSerializer()

    def sample_values(self):
        return [
            *super().sample_values(),
            b"",
            b"\x00\xff raw bytes",
            {1: "int key", "b": b"bytes value"},
            2**63 - 1,
            -(2**63),
            2**64 - 1,
            [b"", {"deep": [b"x", None]}],
            {(1, "a"): "tuple key", (2, (3, 4)): "nested tuple key"},
        ]

    def unsupported_values(self):
        return [
            datetime.datetime(2024, 5, 17, 12, 0),
            {1, 2, 3},
            object(),
            2**64,
            decimal.Decimal("1.5"),
            {"nested": [frozenset()]},
        ]


@dataclasses.dataclass(frozen=True)
class _Point:
    x: int
    y: int


class TestPickleSerializer(SerializerConformance):
    def make_serializer(self):
        return PickleSerializer()

    def sample_values(self):
        return [
            *super().sample_values(),
            b"bytes",
            (1, "tuple", (2,)),
            {1, 2, 3},
            frozenset({"a"}),
            datetime.datetime(2024, 5, 17, 12, 0, tzinfo=datetime.timezone.utc),
            decimal.Decimal("1.10"),
            2**100,
            1 + 2j,
            _Point(1, 2),
            {(1, 2): [_Point(3, 4)]},
        ]

    def unsupported_values(self):
        return [lambda: None, threading.Lock(), (i for i in range(3))]


class TestPickleSerializerProtocol2(TestPickleSerializer):
    def make_serializer(self):
        return PickleSerializer(protocol=2)


# --- a stdlib-only authenticated cipher, to exercise EncryptorConformance -----------------


class ToyAead:
    """SHAKE-256 keystream + HMAC-SHA256 tag (encrypt-then-MAC). Only for these tests."""

    def __init__(self, key: bytes, key_id: str = "toy-1") -> None:
        self._key = key
        self.key_id = key_id

    def _xor(self, nonce: bytes, data: bytes) -> bytes:
        stream = hashlib.shake_256(self._key + nonce).digest(len(data))
        return (int.from_bytes(data, "big") ^ int.from_bytes(stream, "big")).to_bytes(
            len(data), "big"
        )

    def _tag(self, nonce: bytes, aad: bytes, body: bytes) -> bytes:
        msg = nonce + len(aad).to_bytes(8, "big") + aad + body
        return hmac.new(self._key, msg, hashlib.sha256).digest()

    def encrypt(self, plaintext: bytes, aad: bytes) -> bytes:
        nonce = os.urandom(16)
        body = self._xor(nonce, plaintext)
        return nonce + body + self._tag(nonce, aad, body)

    def decrypt(self, blob: bytes, aad: bytes, *, key_id: str) -> bytes:
        if key_id != self.key_id or len(blob) < 48:
            raise DecryptionError()
        nonce, body, tag = blob[:16], blob[16:-32], blob[-32:]
        if not hmac.compare_digest(tag, self._tag(nonce, aad, body)):
            raise DecryptionError()
        return self._xor(nonce, body)


class TestToyAead(EncryptorConformance):
    def make_encryptor(self):
        return ToyAead(b"k" * 32)

    def make_other_encryptor(self):
        return ToyAead(b"o" * 32, key_id="toy-2")


def _toy_plugin() -> types.ModuleType:
    module = types.ModuleType("toy_encryptor_plugin")

    @hookspecs.hookimpl
    def cachekit_encryptors():
        return [
            hookspecs.EncryptorSpec(
                name="toy", factory=lambda *, tenant=None, environ=None: ToyAead(b"t" * 32)
            )
        ]

    module.cachekit_encryptors = cachekit_encryptors  # type: ignore[attr-defined]
    return module


class TestEncryptorBuiltThroughTheHook(EncryptorConformance):
    """An encryptor registered through cachekit_encryptors passes once its factory runs."""

    def make_encryptor(self):
        pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
        pm.add_hookspecs(hookspecs)
        pm.register(_toy_plugin())
        (specs,) = pm.hook.cachekit_encryptors()
        (spec,) = specs
        assert isinstance(spec, hookspecs.EncryptorSpec)
        return spec.factory(tenant=None, environ={})

    def make_other_encryptor(self):
        return ToyAead(b"another key", key_id="toy-other")


# --- the suites have teeth ---------------------------------------------------------------


class _NoneForMissBackend(MemoryBackend):
    def get(self, key):
        value = super().get(key)
        return None if value is MISSING else value


class _GreedyClearBackend(MemoryBackend):
    def clear(self, prefix=""):
        return super().clear("")


class _ImmortalBackend(MemoryBackend):
    def set(self, key, value, ttl=None):
        super().set(key, value, None)

    def set_many(self, items, ttl=None):
        super().set_many(items, None)


class _LeakyEndpointBackend(MemoryBackend):
    def __init__(self) -> None:
        super().__init__()
        self.endpoint = "fake://admin:hunter2@db.example:1234/0"


class _UnknownCapabilityBackend(MemoryBackend):
    capabilities = frozenset({"ttl", "teleportation"})


def _backend_suite(backend_cls: type, **settings: Any) -> BackendConformance:
    suite_cls = type(
        "Suite", (BackendConformance,), {"make_backend": lambda self: backend_cls(), **settings}
    )
    return suite_cls()


@pytest.mark.parametrize(
    ("backend_cls", "test_name", "message"),
    [
        (_NoneForMissBackend, "test_absent_key_reads_as_missing", "never None"),
        (_GreedyClearBackend, "test_clear_removes_only_keys_with_the_prefix", "clear"),
        (_ImmortalBackend, "test_value_expires_after_its_ttl", "still readable"),
        (_LeakyEndpointBackend, "test_endpoint_is_a_string_without_credentials", "credentials"),
        (_UnknownCapabilityBackend, "test_capabilities_are_a_frozenset_of_known_names", "unknown"),
    ],
)
def test_backend_suite_fails_a_backend_that_breaks_the_rule(backend_cls, test_name, message):
    suite = _backend_suite(backend_cls, expiry_deadline=0.3)
    with pytest.raises(AssertionError, match=message):
        getattr(suite, test_name)()


def test_backend_suite_checks_the_declared_secret_stays_hidden():
    class ShowsSecretInHealth(MemoryBackend):
        def health(self):
            return {**super().health(), "url": "fake://:s3cret-pw@host"}

    suite = _backend_suite(ShowsSecretInHealth, secret="s3cret-pw")
    with pytest.raises(AssertionError, match="secret"):
        suite.test_health_returns_a_json_ready_dict()


def test_async_backend_suite_rejects_a_sync_backend():
    class Suite(AsyncBackendConformance):
        def make_backend(self):
            return MemoryBackend()

    with pytest.raises(AssertionError, match="use BackendConformance"):
        Suite().test_satisfies_the_async_backend_protocol()


def test_async_backend_suite_fails_a_backend_returning_none_for_misses():
    class Suite(AsyncBackendConformance):
        def make_backend(self):
            return AsyncMemoryBackend(_NoneForMissBackend())

    with pytest.raises(AssertionError, match="never None"):
        Suite().test_absent_key_reads_as_missing()


def test_ttl_test_is_skipped_for_a_backend_without_the_capability():
    class NoTtlBackend(MemoryBackend):
        capabilities = frozenset()

    with pytest.raises(unittest.SkipTest, match="ttl"):
        _backend_suite(NoTtlBackend).test_ttl_inspection_when_declared()


class _RawErrorsSerializer:
    """Leaks the underlying library's exceptions instead of cachekit's E004/E005."""

    name = "raw"

    def serialize(self, obj: Any) -> bytes:
        import json

        return json.dumps(obj).encode()

    def deserialize(self, data: bytes) -> Any:
        import json

        return json.loads(data)


def _serializer_suite(serializer: Any, **settings: Any) -> SerializerConformance:
    suite_cls = type(
        "Suite", (SerializerConformance,), {"make_serializer": lambda self: serializer, **settings}
    )
    return suite_cls()


def test_serializer_suite_fails_a_serializer_that_raises_plain_type_error():
    suite = _serializer_suite(_RawErrorsSerializer(), unsupported_values=lambda self: [{1, 2}])
    with pytest.raises(AssertionError, match="E004"):
        suite.test_unsupported_values_raise_serialization_error()


@pytest.mark.parametrize("detects_garbage", [True, False])
def test_serializer_suite_fails_a_serializer_leaking_decode_errors(detects_garbage):
    suite = _serializer_suite(_RawErrorsSerializer(), detects_garbage=detects_garbage)
    with pytest.raises(AssertionError, match="DeserializationError"):
        suite.test_garbage_is_rejected_cleanly()


def test_serializer_suite_notices_a_changed_type():
    class TupleLosingPickle(PickleSerializer):
        def deserialize(self, data):
            value = super().deserialize(data)
            return list(value) if isinstance(value, tuple) else value

    suite = _serializer_suite(TupleLosingPickle(), sample_values=lambda self: [(1, 2)])
    with pytest.raises(AssertionError, match="round trip changed the value"):
        suite.test_sample_values_round_trip()


def test_serializer_suite_rejects_a_long_or_non_ascii_name():
    for name in ("x" * 33, "sérialiseur", "two words"):
        serializer = MessagePackSerializer()
        serializer.name = name  # type: ignore[misc]
        with pytest.raises(AssertionError, match="ASCII"):
            _serializer_suite(serializer).test_name_is_a_short_ascii_id()


class _UnauthenticatedCipher(ToyAead):
    """Keystream only, no tag: confidentiality without integrity."""

    def encrypt(self, plaintext: bytes, aad: bytes) -> bytes:
        nonce = os.urandom(16)
        return nonce + self._xor(nonce, plaintext)

    def decrypt(self, blob: bytes, aad: bytes, *, key_id: str) -> bytes:
        if key_id != self.key_id or len(blob) < 16:
            raise DecryptionError()
        return self._xor(blob[:16], blob[16:])


class _FixedNonceCipher(ToyAead):
    def encrypt(self, plaintext: bytes, aad: bytes) -> bytes:
        nonce = b"\x00" * 16
        body = self._xor(nonce, plaintext)
        return nonce + body + self._tag(nonce, aad, body)


class _IgnoresKeyIdCipher(ToyAead):
    def decrypt(self, blob: bytes, aad: bytes, *, key_id: str) -> bytes:
        return super().decrypt(blob, aad, key_id=self.key_id)


@pytest.mark.parametrize(
    ("cipher", "test_name", "message"),
    [
        (_UnauthenticatedCipher, "test_every_flipped_bit_is_rejected", "flipped"),
        (_UnauthenticatedCipher, "test_other_aad_is_rejected", "aad"),
        (_UnauthenticatedCipher, "test_extended_blobs_are_rejected", r"blob \+"),
        (_FixedNonceCipher, "test_same_plaintext_encrypts_differently_each_time", "nonce"),
        (_IgnoresKeyIdCipher, "test_unknown_key_id_is_rejected", "key_id"),
    ],
)
def test_encryptor_suite_fails_a_broken_cipher(cipher, test_name, message):
    suite_cls = type(
        "Suite", (EncryptorConformance,), {"make_encryptor": lambda self: cipher(b"k" * 32)}
    )
    with pytest.raises(AssertionError, match=message):
        getattr(suite_cls(), test_name)()


def test_sync_and_async_backend_suites_check_the_same_rules():
    def rules(cls: type) -> set[str]:
        return {name for name in dir(cls) if name.startswith("test_")}

    sync_only = rules(BackendConformance) - rules(AsyncBackendConformance)
    async_only = rules(AsyncBackendConformance) - rules(BackendConformance)
    assert sync_only == {"test_satisfies_the_backend_protocol"}
    assert async_only == {"test_satisfies_the_async_backend_protocol"}


def test_importing_cachekit_testing_does_not_import_pytest():
    code = (
        "import sys, cachekit.testing\n"
        "assert 'pytest' not in sys.modules and '_pytest' not in sys.modules, 'pytest imported'\n"
    )
    env = {"PATH": os.environ.get("PATH", ""), "PYTHONDONTWRITEBYTECODE": "1"}
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize(
    "endpoint", ["fake://admin:***@db.example:1234/0", "fake://:***@db.example", "fake://db:1"]
)
def test_backend_suite_accepts_an_endpoint_with_a_masked_password(endpoint):
    class Masked(MemoryBackend):
        def __init__(self) -> None:
            super().__init__()
            self.endpoint = endpoint

    _backend_suite(Masked).test_endpoint_is_a_string_without_credentials()


# --- failures name their cause -----------------------------------------------------------


class _ProtocolOnly:
    """The ten Backend methods over a MemoryBackend, and nothing else: no capability method."""

    capabilities: frozenset[str] = frozenset()

    def __init__(self) -> None:
        self.inner = MemoryBackend()
        self.endpoint = self.inner.endpoint

    def get(self, key):
        return self.inner.get(key)

    def set(self, key, value, ttl=None):
        self.inner.set(key, value, ttl)

    def delete(self, key):
        return self.inner.delete(key)

    def get_many(self, keys):
        return self.inner.get_many(keys)

    def set_many(self, items, ttl=None):
        self.inner.set_many(items, ttl)

    def delete_many(self, keys):
        return self.inner.delete_many(keys)

    def clear(self, prefix):
        return self.inner.clear(prefix)

    def ping(self):
        return True

    def health(self):
        return {"ok": True}

    def close(self):
        pass


class _AsyncProtocolOnly:
    """The async twin of _ProtocolOnly."""

    capabilities: frozenset[str] = frozenset()

    def __init__(self) -> None:
        self.sync = _ProtocolOnly()
        self.endpoint = self.sync.endpoint

    async def get(self, key):
        return self.sync.get(key)

    async def set(self, key, value, ttl=None):
        self.sync.set(key, value, ttl)

    async def delete(self, key):
        return self.sync.delete(key)

    async def get_many(self, keys):
        return self.sync.get_many(keys)

    async def set_many(self, items, ttl=None):
        self.sync.set_many(items, ttl)

    async def delete_many(self, keys):
        return self.sync.delete_many(keys)

    async def clear(self, prefix):
        return self.sync.clear(prefix)

    async def ping(self):
        return True

    async def health(self):
        return {"ok": True}

    async def close(self):
        pass


def _async_suite(make: Any, **settings: Any) -> AsyncBackendConformance:
    suite_cls = type(
        "Suite", (AsyncBackendConformance,), {"make_backend": lambda self: make(), **settings}
    )
    return suite_cls()


def _declaring(base: type, *caps: str, **attributes: Any) -> type:
    return type("Declaring", (base,), {"capabilities": frozenset(caps), **attributes})


@pytest.mark.parametrize(
    ("caps", "attributes", "test_name", "message"),
    [
        (("locking",), {}, "test_declared_capabilities_have_their_methods",
         "declares the 'locking' capability but has no acquire_lock"),
        (("locking",), {}, "test_a_lock_is_exclusive_and_released_only_by_its_token",
         "declares the 'locking' capability but has no acquire_lock"),
        (("locking",), {"acquire_lock": None, "release_lock": None},
         "test_a_lock_is_free_again_after_its_lease",
         "declares the 'locking' capability but has no acquire_lock"),
        (("ttl",), {"ttl": 300}, "test_ttl_inspection_when_declared",
         "its ttl is 300, not a method ttl"),
        (("invalidation",), {}, "test_generations_and_change_notifications",
         "declares the 'invalidation' capability but has no coherence"),
        (("ttl", "invalidation"), {}, "test_declared_capabilities_have_their_methods",
         "has no coherence"),
    ],
)  # fmt: skip
def test_a_capability_declared_without_its_method_is_named(caps, attributes, test_name, message):
    suite = _backend_suite(_declaring(_ProtocolOnly, *caps, **attributes))
    with pytest.raises(AssertionError, match=message):
        getattr(suite, test_name)()


def test_async_capability_methods_must_be_coroutines():
    class SyncLockMethods(_AsyncProtocolOnly):
        capabilities = frozenset({"locking"})

        def acquire_lock(self, key, token, lease):
            return True

        def release_lock(self, key, token):
            return True

    suite = _async_suite(SyncLockMethods)
    for test_name in (
        "test_declared_capabilities_have_their_methods",
        "test_a_lock_is_exclusive_and_released_only_by_its_token",
    ):
        with pytest.raises(AssertionError, match=r"acquire_lock\(\) of an async backend must be"):
            getattr(suite, test_name)()


def test_async_capability_declared_without_its_method_is_named():
    suite = _async_suite(_declaring(_AsyncProtocolOnly, "ttl"))
    with pytest.raises(AssertionError, match="declares the 'ttl' capability but has no ttl"):
        suite.test_ttl_inspection_when_declared()


def test_an_expired_entry_read_as_none_is_named_as_such():
    suite = _backend_suite(_NoneForMissBackend, expiry_deadline=5.0)
    for test_name in (
        "test_value_expires_after_its_ttl",
        "test_set_many_applies_the_ttl_to_every_item",
        "test_delete_of_an_expired_key_returns_false",
    ):
        with pytest.raises(AssertionError, match="returned None for the entry once it expired"):
            getattr(suite, test_name)()


def test_async_expired_entry_read_as_none_is_named_as_such():
    suite = _async_suite(lambda: AsyncMemoryBackend(_NoneForMissBackend()), expiry_deadline=5.0)
    with pytest.raises(AssertionError, match=r"must be cachekit\.protocols\.MISSING, never None"):
        suite.test_value_expires_after_its_ttl()


def test_an_entry_that_never_expires_says_ttl_is_in_seconds():
    suite = _backend_suite(_ImmortalBackend, expiry_deadline=0.3)
    with pytest.raises(AssertionError, match=r"set_many\(ttl=0.1\).*ttl is in seconds"):
        suite.test_set_many_applies_the_ttl_to_every_item()


def test_a_missing_protocol_method_is_named():
    class NoGetMany(_ProtocolOnly):
        get_many = None

    with pytest.raises(AssertionError, match=r"has no get_many\(\)"):
        _backend_suite(NoGetMany).test_satisfies_the_backend_protocol()

    class AsyncNoHealth(_AsyncProtocolOnly):
        health = None

    with pytest.raises(AssertionError, match=r"has no health\(\)"):
        _async_suite(AsyncNoHealth).test_satisfies_the_async_backend_protocol()


def test_make_backend_returning_none_is_named():
    suite = _backend_suite(lambda: None)
    with pytest.raises(AssertionError, match=r"make_backend\(\) returned None"):
        suite.test_ping_returns_true()
    with pytest.raises(AssertionError, match=r"make_backend\(\) returned None"):
        _async_suite(lambda: None).test_ping_returns_true()


def test_a_non_bool_reply_is_shown():
    class CountingDelete(_ProtocolOnly):
        def delete(self, key):
            return int(self.inner.delete(key))

    with pytest.raises(AssertionError, match=r"returned 1; it must return True or False"):
        _backend_suite(CountingDelete).test_delete_reports_whether_the_key_existed()


def test_ttl_in_milliseconds_is_suspected():
    class MillisecondTtl(MemoryBackend):
        def ttl(self, key):
            left = super().ttl(key)
            return left * 1000 if isinstance(left, float) else left

    with pytest.raises(AssertionError, match=r"milliseconds\? ttl\(\) returns seconds"):
        _backend_suite(MillisecondTtl).test_ttl_inspection_when_declared()


def test_ttl_of_an_absent_key_as_none_is_named():
    class NoneTtl(MemoryBackend):
        def ttl(self, key):
            left = super().ttl(key)
            return None if left is MISSING else left

    with pytest.raises(AssertionError, match="absent key returned None, which means"):
        _backend_suite(NoneTtl).test_ttl_inspection_when_declared()


def test_a_second_close_that_raises_is_named():
    class CloseOnce(_ProtocolOnly):
        closed = False

        def close(self):
            if self.closed:
                raise RuntimeError("already closed")
            self.closed = True

    with pytest.raises(AssertionError, match=r"a second close\(\) raised RuntimeError"):
        _backend_suite(CloseOnce).test_close_can_be_called_twice()


# The coherence rules, each broken on its own.


class _OwnCoherence(MemoryBackend):
    """A MemoryBackend whose coherence() is built by ``make_coherence``."""

    def __init__(self, make_coherence: Any) -> None:
        super().__init__()
        self._coherence = make_coherence(super().coherence())

    def coherence(self):
        return self._coherence


class _Silent:
    """A coherence that hears nothing: listen() records the callback and never calls it."""

    healthy = True

    def __init__(self, real: Any) -> None:
        self.real = real

    def generations(self, keys):
        return self.real.generations(keys)

    def bump(self, key):
        return self.real.bump(key)

    def listen(self, callback):
        pass


class _RaisingListen(_Silent):
    def listen(self, callback):
        raise ConnectionError("cannot subscribe")


class _TextGenerations(_Silent):
    def generations(self, keys):
        return [str(v) for v in self.real.generations(keys)]


class _OneStringCallback(_Silent):
    def listen(self, callback):
        self.real.listen(lambda keys: callback(keys[0]) if keys else callback(keys))


@pytest.mark.parametrize(
    ("make_coherence", "message"),
    [
        (lambda real: None, r"coherence\(\) returned None although"),
        (lambda real: object(), "lacks generations, bump, listen, healthy"),
        (_Silent, "this one included"),
        (_RaisingListen, r"listen\(\) raised ConnectionError: cannot subscribe. It must not raise"),
        (_TextGenerations, r"returned '\d+' \(str\) for a counter, not an int"),
        (_OneStringCallback, "called callback the wrong way: callback got one str"),
    ],
)
def test_a_broken_coherence_rule_is_named(make_coherence, message):
    suite = _backend_suite(lambda: _OwnCoherence(make_coherence), expiry_deadline=0.3)
    with pytest.raises(AssertionError, match=message):
        suite.test_generations_and_change_notifications()


def test_a_new_coherence_object_per_call_is_named():
    class FreshEachTime(MemoryBackend):
        def coherence(self):
            return _Silent(super().coherence())

    suite = _backend_suite(FreshEachTime)
    with pytest.raises(AssertionError, match="returned a new object on its second call"):
        suite.test_generations_and_change_notifications()


def test_async_suite_checks_change_notifications_of_a_delete():
    class ForgetsDeletes(AsyncMemoryBackend):
        async def delete(self, key):
            store = self.sync._store
            with store.lock:
                return store.items.pop(key, None) is not None  # no notice

    suite = _async_suite(ForgetsDeletes, expiry_deadline=0.5)
    with pytest.raises(AssertionError, match="no change notification for a delete"):
        suite.test_generations_and_change_notifications()


def test_a_sample_value_the_serializer_refuses_is_named():
    suite = _serializer_suite(MessagePackSerializer(), sample_values=lambda self: [{1, 2}])
    with pytest.raises(AssertionError, match=r"sample_values\(\) lists values"):
        suite.test_sample_values_round_trip()


def test_a_serializer_without_a_name_is_named():
    class Nameless:
        def serialize(self, obj):
            return b""

        def deserialize(self, data):
            return None

    suite = _serializer_suite(Nameless())
    with pytest.raises(AssertionError, match="has no name attribute"):
        suite.test_satisfies_the_serializer_protocol()
    with pytest.raises(AssertionError, match="name must be a str, got NoneType"):
        suite.test_name_is_a_short_ascii_id()


def test_an_encryptor_whose_decrypt_takes_no_key_id_is_named():
    class NoKeyId(ToyAead):
        def decrypt(self, blob, aad):  # type: ignore[override]
            return super().decrypt(blob, aad, key_id=self.key_id)

    suite_cls = type(
        "Suite", (EncryptorConformance,), {"make_encryptor": lambda self: NoKeyId(b"k" * 32)}
    )
    with pytest.raises(AssertionError, match=r"decrypt\(blob, aad, \*, key_id\)"):
        suite_cls().test_satisfies_the_encryptor_protocol()
    with pytest.raises(AssertionError, match=r"decrypt\(\) does not take key_id"):
        suite_cls().test_plaintexts_round_trip()


# --- the suites' settings are documented ---------------------------------------------------


@pytest.mark.parametrize(
    "suite", [BackendConformance, AsyncBackendConformance, SerializerConformance,
              EncryptorConformance],
    ids=lambda cls: cls.__name__,
)  # fmt: skip
def test_every_setting_of_a_suite_is_documented(suite):
    """Each public attribute a plugin's test class may set or override (anything but the
    test_* rules) has a docstring or comment in cachekit/testing/ and is named in
    docs/plugins.md."""
    from pathlib import Path

    import cachekit.testing

    docs = (Path(__file__).resolve().parents[2] / "docs" / "plugins.md").read_text()
    package = Path(cachekit.testing.__file__).parent
    source = "\n".join(path.read_text() for path in sorted(package.glob("*.py")))
    settings = [n for n in dir(suite) if not n.startswith(("_", "test_"))]
    assert settings
    for name in settings:
        assert f"`{name}" in docs, f"{suite.__name__}.{name} is not named in docs/plugins.md"
        value = getattr(suite, name)
        if callable(value):
            assert value.__doc__, f"{suite.__name__}.{name}() has no docstring"
        else:
            assert re.search(rf"#: .*\n(\s*#: .*\n)*\s*{name}: ClassVar", source), (
                f"{suite.__name__}.{name} has no #: comment in cachekit/testing/"
            )


def test_clear_that_reads_the_prefix_as_a_pattern_is_caught():
    import fnmatch

    class GlobClear(MemoryBackend):
        def clear(self, prefix=""):
            doomed = [k for k in self._store.items if fnmatch.fnmatchcase(k, prefix + "*")]
            return self.delete_many(doomed)

    with pytest.raises(AssertionError, match="only match the prefix as a pattern"):
        _backend_suite(GlobClear).test_clear_takes_the_prefix_literally()
