"""cachekit-redis passes cachekit.testing's backend suites against a real redis-server."""

from __future__ import annotations

import pytest

from cachekit.testing import AsyncBackendConformance, BackendConformance
from cachekit_redis import AsyncRedisBackend, RedisBackend


class TestRedisBackend(BackendConformance):
    @pytest.fixture(autouse=True)
    def _url(self, redis_url):
        self.url = redis_url

    def make_backend(self):
        return RedisBackend(self.url)

    def close_backend(self, backend):
        backend.close()


class TestAsyncRedisBackend(AsyncBackendConformance):
    @pytest.fixture(autouse=True)
    def _url(self, redis_url):
        self.url = redis_url

    def make_backend(self):
        return AsyncRedisBackend(self.url)
