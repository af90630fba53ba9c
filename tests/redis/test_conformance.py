"""cachekit-redis passes cachekit.testing's backend suites against a real redis-server."""

from __future__ import annotations

import pytest
from redis_fixtures import AsyncRedisBackendSuite, RedisBackendSuite


class _ServerUrl:
    @pytest.fixture(autouse=True)
    def _url(self, redis_url):
        self.url = redis_url


class TestRedisBackend(_ServerUrl, RedisBackendSuite):
    pass


class TestAsyncRedisBackend(_ServerUrl, AsyncRedisBackendSuite):
    pass
