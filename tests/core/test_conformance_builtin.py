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
