"""cachekit-redis configuration: explicit client settings, validation, URL parsing."""

from __future__ import annotations

import re

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


# --- query parameters: one policy ---------------------------------------------------------


def test_supported_query_parameters_become_settings():
    backend = RedisBackend(
        "redis://127.0.0.1:1/0?socket_timeout=0.3&socket_connect_timeout=0.2&client_name=app-1"
    )
    kw = backend.client.connection_pool.connection_kwargs
    assert (kw["socket_timeout"], kw["socket_connect_timeout"]) == (0.3, 0.2)
    assert kw["client_name"] == "app-1"
    assert backend.client.connection_pool.timeout == 0.3  # the pool wait follows it
    assert "socket_timeout" not in backend.target.connection  # only in the settings
    settings = backend.settings.for_target(backend.target)
    assert (settings.socket_timeout, settings.client_name) == (0.3, "app-1")
    backend.close()


def test_query_parameters_sit_between_the_environment_and_options_in_code():
    target = parse("redis://127.0.0.1:1/0?socket_timeout=0.3")
    env = {"CACHEKIT_SOCKET_TIMEOUT": "2", "CACHEKIT_SOCKET_CONNECT_TIMEOUT": "0.7"}
    from_env = RedisSettings.from_env(env).for_target(target)
    assert (from_env.socket_timeout, from_env.socket_connect_timeout) == (0.3, 0.7)
    in_code = RedisSettings.from_env(env, socket_timeout=0.1).for_target(target)
    assert in_code.socket_timeout == 0.1
    assert in_code.for_target(target) == in_code  # idempotent


def test_db_in_the_query():
    assert parse("unix:///tmp/x.sock?db=3").db == 3
    assert parse("redis://h:1/?db=4").connection["db"] == 4
    assert parse("redis://h:1/4?db=4").db == 4


REJECTED = [
    ("max_connections=5", "CACHEKIT_REDIS_POOL_SIZE"),
    ("pool_size=5", "CACHEKIT_REDIS_POOL_SIZE"),
    ("timeout=1", "CACHEKIT_REDIS_POOL_TIMEOUT"),
    ("protocol=3", "RESP2"),
    ("retry_on_timeout=true", "never retries"),
    ("retry_on_error=x", "never retries"),
    ("health_check_interval=5", "health_check_interval=N"),
    ("socket_keepalive=false", "keepalive"),
    ("password=x", "redis://user:password@host"),
    ("decode_responses=true", "raw replies"),
    ("ssl=true", "rediss://"),
    ("bogus=1", "unsupported query parameter 'bogus'; supported: socket_timeout"),
    ("socket_timeout=0", "socket_timeout must be a number of seconds > 0"),
    ("socket_timeout=fast", "?socket_timeout='fast' must be a number of seconds"),
    ("socket_timeout=inf", "socket_timeout must be"),
    ("socket_connect_timeout=-1", "socket_connect_timeout must be"),
    ("socket_timeout=", "?socket_timeout= has no value"),
    ("client_name=two%20words", "client_name must be"),
    ("db=x", "?db='x' is not a database number"),
    ("db=1&db=2", "?db= given twice"),
    ("socket_timeout=1&socket_timeout=1", "given twice"),
    ("ssl_ca_certs=/ca.pem", "is a TLS option"),
    ("sentinel_password=x", "redis+sentinel:// URLs only"),
    ("loose", "a query item without '='"),
]


@pytest.mark.parametrize(("query", "match"), REJECTED)
def test_other_query_parameters_are_e040_at_construction(query, match):
    """Nothing in a URL is silently ignored, nor fails later at the first call."""
    from cachekit_redis import AsyncRedisBackend

    for make in (RedisBackend, AsyncRedisBackend):
        with pytest.raises(ConfigurationError, match=re.escape(match)) as err:
            make(f"redis://127.0.0.1:1/0?{query}")
        assert err.value.code == "E040"


@pytest.mark.parametrize(
    ("url", "match"),
    [
        ("redis+cluster://h:7000?db=1", "only db 0"),
        ("redis+sentinel://h/svc?db=1", "in the path"),
        ("redis+sentinel://h/svc/0?sentinel_password=p&max_connections=2", "POOL_SIZE"),
        ("rediss://h:1/0?ssl_cert_reqs=sometimes", "ssl_cert_reqs must be"),
        ("rediss://h:1/0?ssl_check_hostname=maybe", "must be true or false"),
        ("redis://h:1/1?db=2", "two databases"),
        ("unix://tmp/redis.sock", "three slashes"),
        ("unix://", "no socket path"),
        ("redis://h1:1,h2:2/0", "several hosts"),
        ("redis://h:0/0", "port '0'"),
        ("redis+sentinel://h/svc/0/extra", "/service or /service/db"),
        ("redis://h:1/0#frag", "fragment"),
    ],
)
def test_scheme_specific_query_and_path_rules(url, match):
    with pytest.raises(ConfigurationError, match=match) as err:
        parse(url)
    assert err.value.code == "E040"


def test_tls_query_parameters_are_read_for_every_tls_scheme():
    q = "ssl_ca_certs=/etc/ca.pem&ssl_cert_reqs=REQUIRED&ssl_check_hostname=false"
    for url in (
        f"rediss://h:1/0?{q}",
        f"rediss+cluster://h:7000?{q}",
        f"rediss+sentinel://h:26379/svc?{q}",
    ):
        options = dict(parse(url).options)
        assert options == {
            "ssl_ca_certs": "/etc/ca.pem",
            "ssl_cert_reqs": "required",
            "ssl_check_hostname": False,
        }


# --- TLS options passed in code -----------------------------------------------------------


def test_tls_options_in_code_reach_the_sync_and_async_standalone_clients():
    import asyncio

    from redis.asyncio.connection import SSLConnection as AsyncSSL
    from redis.connection import SSLConnection

    from cachekit_redis import AsyncRedisBackend

    url = "rediss://127.0.0.1:1/0?ssl_cert_reqs=optional"
    options = {"ssl_ca_certs": "/etc/ca.pem", "ssl_check_hostname": False}
    backend = RedisBackend(url, **options)
    pool = backend.client.connection_pool
    assert pool.connection_class is SSLConnection
    kw = pool.connection_kwargs
    assert (kw["ssl_ca_certs"], kw["ssl_check_hostname"], kw["ssl_cert_reqs"]) == (
        "/etc/ca.pem",
        False,
        "optional",
    )
    backend.close()

    async def main():
        backend = AsyncRedisBackend(url, **options, ssl_cert_reqs="required")
        pool = backend.client.connection_pool
        assert pool.connection_class is AsyncSSL
        kw = pool.connection_kwargs
        assert kw["ssl_ca_certs"] == "/etc/ca.pem"
        assert kw["ssl_cert_reqs"] == "required"  # code wins over the URL
        await backend.close()

    asyncio.run(main())


def test_tls_options_in_code_reach_sentinel_clients():
    import asyncio

    from cachekit_redis.clients import build_async_client, build_sync_client

    target = parse("rediss+sentinel://127.0.0.1:1/svc")
    settings = RedisSettings.from_env({}, ssl_ca_certs="/etc/ca.pem")
    pool = build_sync_client(target, settings).connection_pool
    assert pool.connection_kwargs["ssl_ca_certs"] == "/etc/ca.pem"
    assert pool.connection_class.__name__ == "SentinelManagedSSLConnection"

    async def main():
        client = build_async_client(target, settings)
        pool = client.connection_pool
        assert pool.connection_kwargs["ssl_ca_certs"] == "/etc/ca.pem"
        assert pool.connection_class.__name__ == "SentinelManagedSSLConnection"
        await client.aclose()

    asyncio.run(main())


@pytest.mark.parametrize(
    "url", ["redis://127.0.0.1:1/0", "unix:///tmp/x.sock", "redis+cluster://127.0.0.1:1"]
)
def test_tls_options_without_a_tls_url_are_e040(url):
    with pytest.raises(ConfigurationError, match="not TLS") as err:
        RedisBackend(url, ssl_ca_certs="/etc/ca.pem")
    assert err.value.code == "E040"
    # The async backend builds its clients in the event loop: the same check, same words.
    settings = RedisSettings.from_env({}, ssl_ca_certs="/etc/ca.pem")
    with pytest.raises(ConfigurationError, match="not TLS"):
        settings.for_target(parse(url))


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"ssl_cert_reqs": "sometimes"}, "ssl_cert_reqs must be"),
        ({"ssl_check_hostname": "no"}, "ssl_check_hostname must be True or False"),
        ({"ssl_ca_certs": ""}, "ssl_ca_certs must be a file path"),
        ({"client_name": "a b"}, "client_name must be"),
    ],
)
def test_bad_options_in_code_are_e040(options, match):
    with pytest.raises(ConfigurationError, match=match):
        RedisSettings.from_env({}, **options)


# --- unix sockets -------------------------------------------------------------------------


def test_unix_socket_connections_get_no_tcp_options():
    """redis-py's UnixDomainSocketConnection takes no socket_keepalive: a TypeError before."""
    import asyncio

    from cachekit_redis import AsyncRedisBackend

    backend = RedisBackend("unix:///tmp/cachekit-no-such.sock?db=2", socket_timeout=0.25)
    pool = backend.client.connection_pool
    assert "socket_keepalive" not in pool.connection_kwargs
    conn = pool.make_connection()  # raised TypeError before
    assert (conn.path, conn.db, conn.socket_timeout) == ("/tmp/cachekit-no-such.sock", 2, 0.25)
    assert conn.retry._retries == 0
    assert conn.protocol == 2
    backend.close()

    async def main():
        backend = AsyncRedisBackend("unix:///tmp/cachekit-no-such.sock")
        conn = backend.client.connection_pool.make_connection()
        assert conn.path == "/tmp/cachekit-no-such.sock"
        assert conn.socket_timeout == 0.5
        await backend.close()

    asyncio.run(main())


# --- passwords never shown ----------------------------------------------------------------

# Every piece of every password holds "zq": no "zq" may appear in anything shown.
PASSWORDS = [
    "zqplain",
    "zqa/zqb",
    "zqa?zqb",
    "zqa#zqb",
    "zqa@zqb",
    "zqa:zqb",
    "zqa%zqb",
    "zqa%2Fzqb",
    "zqa&zqb=zqc",
    "zqä€zqö",
    "zq/?#@:%&=zq",
    "/zq",
    "?zq=1",
    "#zq",
    "zq@",
    "@zq/0",
]
TEMPLATES = [
    "redis://:{pw}@h:6380/0",
    "redis://user:{pw}@h:6380/0",
    "rediss://:{pw}@h:6380/2",
    "redis://{pw}@h:6380/0",
    "unix://:{pw}@/tmp/redis.sock?db=1",
    "redis+cluster://:{pw}@h1:7000,h2:7001",
    "rediss+cluster://u:{pw}@h1:7000",
    "redis+sentinel://:{pw}@h:26379/svc/0",
    "redis+sentinel://h:26379/svc?sentinel_password={pw}",
    "redis+sentinel://:{pw}@h:26379/svc?sentinel_password={pw}",
    # malformed in other ways too
    "redis://:{pw}@h:port/0",
    "redis://:{pw}@h:6380/db",
    "redis://:{pw}@h:6380/0?max_connections=3",
    "redis://:{pw}@h:6380/0?bogus=1",
    "redis://:{pw}@h1,h2/0",
    "unix://:{pw}@tmp/redis.sock",
    "redis+sentinel://:{pw}@h:26379",
    "redis+cluster://:{pw}@h:1/3",
    "redis:/:{pw}@h:6380/0",
    "redis//:{pw}@h",
]


def _shown(url):
    """Everything derived from ``url`` that a user can see: error or endpoint and repr."""
    from cachekit.config import redact_url

    texts = [redact_url(url)]
    try:
        target = parse(url)
    except ConfigurationError as exc:
        texts += [str(exc), repr(exc), exc.message]
        return texts, None
    texts += [target.endpoint, repr(target)]
    return texts, target


@pytest.mark.parametrize("template", TEMPLATES)
@pytest.mark.parametrize("pw", PASSWORDS)
def test_passwords_never_shown_as_written(template, pw):
    from urllib.parse import quote

    for password in (pw, quote(pw, safe="")):  # unencoded (often malformed), percent-encoded
        if template.startswith("redis://{pw}@") and ":" in password:
            continue  # "redis://user:password@..." as written: the user name is shown
        url = template.format(pw=password)
        texts, target = _shown(url)
        for text in texts:
            assert "zq" not in text, (url, text)
        if target is not None and password != pw:  # well formed: the password is read back
            read = (target.password, target.sentinel_password, target.username)
            assert pw in read, (url, target)  # a lone word before '@': a user name


def test_passwords_percent_encoded_are_read_exactly():
    from urllib.parse import quote

    for pw in PASSWORDS:
        t = parse(f"redis://user:{quote(pw, safe='')}@h:6380/0")
        assert (t.username, t.password) == ("user", pw)
        assert t.connection["password"] == pw
        assert t.endpoint == "redis://user:***@h:6380/0"
        s = parse(f"redis+sentinel://h:26379/svc?sentinel_password={quote(pw, safe='')}")
        assert s.sentinel_password == pw


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://:s3cret@h:1/0", "redis://***@h:1/0"),
        ("redis://user:s3cret@h:1/0", "redis://user:***@h:1/0"),
        ("redis://s3cret@h:1/0", "redis://***@h:1/0"),  # a password without its ':'
        ("redis://:pa/s3cret@h:1/0", "redis://***@h:1/0"),
        ("redis://:pa?s3cret@h:1/0", "redis://***@h:1/0"),
        ("redis://:pa#s3cret@h:1/0", "redis://***@h:1/0"),
        ("redis://u:p@s3c/ret@h:1/0", "redis://u:***@h:1/0"),
        ("redis://h:1/0?db=1&password=s3cret&db=1", "redis://h:1/0?db=1&password=***"),
        ("redis://s3c/ret:x@h:1/0", "redis://***@h:1/0"),  # no user name holds a '/'
        ("redis://s3c@ret:x@h:1/0", "redis://***@h:1/0"),
        ("redis+sentinel://h/s?sentinel_password=p@s3cret", "redis+sentinel://***"),
        (
            "redis+sentinel://h/s?sentinel_password=a&s3=cret",
            "redis+sentinel://h/s?sentinel_password=***",
        ),
        ("redis:/u:s3cret@h", "redis:/***@h"),
        ("localhost:6379", "localhost:6379"),
        ("unix:///tmp/r.sock?db=1", "unix:///tmp/r.sock?db=1"),
    ],
)
def test_redact_url_masks_any_password(url, shown):
    from cachekit.config import redact_url

    assert redact_url(url) == shown
    assert "s3cret" not in redact_url(url)
