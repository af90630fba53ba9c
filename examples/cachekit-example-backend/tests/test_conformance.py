"""Our backend and serializer against cachekit's conformance suites."""

import datetime
from importlib.metadata import entry_points

from cachekit_example_backend.backend import DictBackend
from cachekit_example_backend.serializer import JsonSerializer

from cachekit.testing import BackendConformance, SerializerConformance


class TestDictBackend(BackendConformance):
    def make_backend(self):
        return DictBackend.from_url("example://conformance")


class TestDictBackendWithCredentials(BackendConformance):
    secret = "pa55word"

    def make_backend(self):
        return DictBackend.from_url("example://admin:pa55word@conformance")


class TestJsonSerializer(SerializerConformance):
    detects_garbage = False  # "1234" is valid JSON, so a cut "12345" goes unnoticed

    def make_serializer(self):
        return JsonSerializer()

    def unsupported_values(self):
        return [b"bytes", datetime.date(2024, 1, 1), {1, 2}, float("nan")]


def test_the_cachekit_entry_point_is_installed():
    (ep,) = [ep for ep in entry_points(group="cachekit") if ep.name == "example"]
    assert ep.value == "cachekit_example_backend.plugin"
    assert ep.dist.name == "cachekit-example-backend"
