"""Serializers may return a bytearray or memoryview (to spare a copy of a large payload).

The envelope then copies the payload once; L1 keeps what the serializer returned;
backends always get bytes.
"""

from __future__ import annotations

import json

import pytest

from cachekit import cache
from cachekit.envelope import open_plain, seal_plain
from cachekit.errors import SerializationError
from cachekit.testing import SerializerConformance


class JsonBuffers:
    """JSON whose serialize returns a bytearray, or a memoryview with ``view=True``."""

    name = "json-buffers"

    def __init__(self, view: bool = False) -> None:
        self.view = view

    def serialize(self, obj):
        try:
            data = bytearray(json.dumps(obj).encode())
        except TypeError as exc:
            raise SerializationError(f"not JSON: {exc}") from None
        return memoryview(data) if self.view else data

    def deserialize(self, data):
        from cachekit.errors import DeserializationError

        try:
            return json.loads(bytes(data))
        except ValueError as exc:
            raise DeserializationError(f"not JSON: {exc}") from None


class TestBytearraySerializer(SerializerConformance):
    detects_garbage = False

    def make_serializer(self):
        return JsonBuffers()

    def unsupported_values(self):
        return [{1, 2}, object()]


class TestMemoryviewSerializer(TestBytearraySerializer):
    def make_serializer(self):
        return JsonBuffers(view=True)


@pytest.mark.parametrize("view", [False, True])
def test_buffer_payloads_go_through_l1_and_the_backend(view):
    calls = []

    def make():
        @cache(backend="memory://buffers", serializer=JsonBuffers(view), namespace=f"v{view}")
        def report(n: int) -> dict:
            calls.append(n)
            return {"n": n, "rows": list(range(n))}

        return report

    first, second = make(), make()
    assert first(3) == {"n": 3, "rows": [0, 1, 2]}
    assert first(3) == {"n": 3, "rows": [0, 1, 2]}  # L1, from the buffer
    assert second(3) == {"n": 3, "rows": [0, 1, 2]}  # the backend's bytes
    assert calls == [3]
    assert (first.cache_info().l1_hits, second.cache_info().l2_hits) == (1, 1)


@pytest.mark.parametrize("expires_at", [None, 4_102_444_800.0])
@pytest.mark.parametrize("kind", [bytes, bytearray, memoryview])
def test_seal_plain_gives_the_same_envelope_for_any_buffer(kind, expires_at):
    payload = b"payload bytes " * 100
    blob = seal_plain(kind(payload), "json", expires_at)
    assert type(blob) is bytes
    assert blob == seal_plain(payload, "json", expires_at)
    assert open_plain(blob, "json") == (payload, expires_at)


def test_a_serializer_returning_something_else_is_e004():
    class Wrong:
        name = "wrong"

        def serialize(self, obj):
            return "text, not bytes"

        def deserialize(self, data):
            return data

    @cache(backend=None, serializer=Wrong())
    def f():
        return {"a": 1}

    with pytest.raises(SerializationError, match="must return bytes"):
        f()
