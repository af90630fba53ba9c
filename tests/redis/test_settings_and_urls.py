"""cachekit-redis configuration: explicit client settings, validation, URL parsing."""

from __future__ import annotations

import pytest

from cachekit.errors import ConfigurationError
from cachekit_redis import RedisBackend
from cachekit_redis.settings import RedisSettings
from cachekit_redis.urls import parse


def test_defaults_are_short_and_explicit():
    s = RedisSettings.from_env({})
    assert (s.socket_timeout, s.socket_connect_timeout, s.pool_size) == (0.5, 0.5, 32)
    assert s.effective_pool_timeout == 0.5
    assert s.retries == 0


def test_the_client_configuration_is_pinned():
    """A redis-py upgrade must never bring back its own timeouts, retries or pool size."""
    from redis.connection import BlockingConnectionPool

    backend = RedisBackend("redis://127.0.0.1:1/0", socket_timeout=0.25, pool_size=7)
    pool = backend.client.connection_pool
    assert isinstance(pool, BlockingConnectionPool)
    assert pool.max_connections == 7
    assert pool.timeout == 0.25
    kw = pool.connection_kwargs
    assert kw["socket_timeout"] == 0.25
    assert kw["socket_connect_timeout"] == 0.5
    assert kw["retry_on_timeout"] is False
    assert kw["retry_on_error"] == []
    assert kw["health_check_interval"] == 0
    assert kw["protocol"] == 2
    retry = kw["retry"]
    assert retry._retries == 0
    conn = pool.make_connection()
    assert conn.socket_timeout == 0.25
    assert conn.socket_connect_timeout == 0.5
    assert conn.retry._retries == 0
    backend.close()


def test_the_async_client_configuration_is_pinned():
    import asyncio

    from cachekit_redis import AsyncRedisBackend

    async def main():
        backend = AsyncRedisBackend("redis://127.0.0.1:1/0", socket_connect_timeout=0.3)
        pool = backend.client.connection_pool
        kw = pool.connection_kwargs
        assert pool.max_connections == 32
        assert kw["socket_timeout"] == 0.5
        assert kw["socket_connect_timeout"] == 0.3
        assert kw["retry"]._retries == 0
        assert kw["retry_on_timeout"] is False
        await backend.close()

    asyncio.run(main())


def test_environment_variables_are_read_and_validated():
    env = {
        "CACHEKIT_SOCKET_TIMEOUT": "5.0",
        "CACHEKIT_SOCKET_CONNECT_TIMEOUT": "2",
        "CACHEKIT_REDIS_POOL_SIZE": "10",
        "CACHEKIT_REDIS_POOL_TIMEOUT": "0.1",
    }
    s = RedisSettings.from_env(env)
    assert (s.socket_timeout, s.socket_connect_timeout, s.pool_size, s.pool_timeout) == (
        5.0,
        2.0,
        10,
        0.1,
    )
    # explicit options win over the environment
    assert RedisSettings.from_env(env, socket_timeout=1.0).socket_timeout == 1.0


@pytest.mark.parametrize(
    ("env", "match"),
    [
        ({"CACHEKIT_SOCKET_TIMEOUT": "fast"}, "CACHEKIT_SOCKET_TIMEOUT"),
        ({"CACHEKIT_SOCKET_TIMEOUT": "0"}, "socket_timeout"),
        ({"CACHEKIT_SOCKET_CONNECT_TIMEOUT": "-1"}, "socket_connect_timeout"),
        ({"CACHEKIT_REDIS_POOL_SIZE": "0"}, "pool_size"),
        ({"CACHEKIT_REDIS_POOL_SIZE": "2.5"}, "CACHEKIT_REDIS_POOL_SIZE"),
    ],
)
def test_bad_environment_values_are_e040(env, match):
    with pytest.raises(ConfigurationError, match=match) as err:
        RedisSettings.from_env(env)
    assert err.value.code == "E040"


def test_unknown_options_and_retries_are_rejected():
    with pytest.raises(ConfigurationError, match="does not take"):
        RedisSettings.from_env({}, sockettimeout=1)
    with pytest.raises(ConfigurationError, match="never retries"):
        RedisSettings(retries=3)


def test_environment_is_read_when_the_backend_is_built(monkeypatch):
    from cachekit import cache

    monkeypatch.setenv("CACHEKIT_SOCKET_TIMEOUT", "nope")
    monkeypatch.setenv("CACHEKIT_REDIS_URL", "redis://127.0.0.1:1/15")

    @cache()
    def f():
        return 1

    with pytest.raises(ConfigurationError, match="CACHEKIT_SOCKET_TIMEOUT"):
        f()


@pytest.mark.parametrize(
    ("url", "kind", "endpoint"),
    [
        ("redis://localhost:6379/0", "standalone", "redis://localhost:6379/0"),
        ("redis://:s3cret@localhost:6379/2", "standalone", "redis://***@localhost:6379/2"),
        ("rediss://user:s3cret@h:6380/0", "standalone", "rediss://user:***@h:6380/0"),
        ("unix:///tmp/redis.sock?db=3", "standalone", "unix:///tmp/redis.sock?db=3"),
        ("redis+cluster://h1:7000,h2:7001", "cluster", "redis+cluster://h1:7000,h2:7001"),
        (
            "redis+cluster://:s3cret@h1:7000",
            "cluster",
            "redis+cluster://***@h1:7000",
        ),
        (
            "redis+sentinel://h1:26379,h2:26380/mymaster/4",
            "sentinel",
            "redis+sentinel://h1:26379,h2:26380/mymaster/4",
        ),
        (
            "redis+sentinel://u:s3cret@h1/svc?sentinel_password=s3cret",
            "sentinel",
            "redis+sentinel://u:***@h1/svc?sentinel_password=***",
        ),
    ],
)
def test_url_schemes_parse_and_never_show_passwords(url, kind, endpoint):
    target = parse(url)
    assert target.kind == kind
    assert target.endpoint == endpoint
    assert "s3cret" not in target.endpoint


def test_sentinel_and_cluster_details():
    t = parse("redis+sentinel://h1:26379,h2/mymaster/4")
    assert t.nodes == (("h1", 26379), ("h2", 26379))
    assert (t.service, t.db) == ("mymaster", 4)
    c = parse("rediss+cluster://h1:7000")
    assert c.tls
    assert c.nodes == (("h1", 7000),)


@pytest.mark.parametrize(
    "url",
    [
        "redis+sentinel://h1:26379",  # no service
        "redis+cluster://h1:7000/3",  # clusters have only db 0
        "redis+cluster://h1:notaport",
        "redis+sentinel://h1/svc/notadb",
        "redis://localhost:6379/notadb",
    ],
)
def test_bad_urls_are_e040(url):
    with pytest.raises(ConfigurationError) as err:
        parse(url)
    assert err.value.code == "E040"


def test_the_plugin_module_imports_no_redis():
    import subprocess
    import sys

    code = (
        "import sys, cachekit_redis.plugin, cachekit_redis;"
        "from cachekit import plugins; plugins.registry().backend('redis');"
        "assert 'redis' not in sys.modules, 'redis imported';"
        "print('ok')"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert out.stdout.strip() == "ok", out.stderr
