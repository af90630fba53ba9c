"""Unix sockets, TLS and passwords in URLs, against real private redis-servers.

* ``unix://`` URLs: decorated sync and async functions, the notification listener, and
  the backend conformance suites, through a server's unix socket (with a password full
  of URL metacharacters, percent-encoded).
* TLS: options given in the URL's query or in code reach the sync and async clients.
* Passwords, whatever their characters, never show in errors, ``repr``, ``health()``
  or log records.
"""

from __future__ import annotations

import asyncio
import logging
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from redis_fixtures import AsyncRedisBackendSuite, RedisBackendSuite
from redis_servers import PortReservation, RedisServer

from cachekit import cache
from cachekit.errors import ConfigurationError
from cachekit_redis import AsyncRedisBackend, RedisBackend
from cachekit_redis.clients import raw_connection
from cachekit_redis.settings import RedisSettings
from cachekit_redis.urls import parse

# Every piece of it holds "zq": no "zq" may appear in anything shown.
PASSWORD = "zq/a?zq#b@zq:c%zq&d=zq€ü+zq"


def _clients(server: RedisServer) -> list[dict[str, str]]:
    """CLIENT LIST as dicts."""
    text = server.execute("CLIENT", "LIST")
    text = text.decode() if isinstance(text, bytes) else text
    return [dict(f.split("=", 1) for f in line.split() if "=" in f) for line in text.splitlines()]


# --- unix sockets -------------------------------------------------------------------------


def test_a_decorated_function_runs_through_a_unix_socket(make_redis_server, backends):
    server = make_redis_server()
    url = f"unix://{server.unix_socket}?db=0&client_name=ck-unix"
    calls = []

    @cache(backend=url, ttl=60, l1=False)
    def square(x: int) -> int:
        calls.append(x)
        return x * x

    assert [square(7), square(7), square(8)] == [49, 49, 64]
    assert calls == [7, 8]
    info = square.cache_info()
    assert (info.l2_hits, info.errors) == (1, 0)
    assert len(server.client().keys("cachekit:*")) >= 2
    # cachekit's connections really are on the socket (CLIENT LIST: addr=<path>:0)
    ours = [c for c in _clients(server) if c.get("name") == "ck-unix"]
    assert ours
    assert all(c["addr"].startswith(str(server.unix_socket)) for c in ours)
    health = square.check_health()
    assert health["status"] == "healthy", health
    assert health["backend"]["reachable"] is True, health
    backends.append(RedisBackend(url))  # the same coherence object: stopped afterwards


def test_an_async_decorated_function_runs_through_a_unix_socket(make_redis_server, backends):
    server = make_redis_server()
    url = f"unix://{server.unix_socket}?db=0&client_name=ck-aio-unix"
    calls = []

    @cache(backend=url, ttl=60, l1=False)
    async def square(x: int) -> int:
        calls.append(x)
        return x * x

    async def main() -> list[int]:
        return [await square(7), await square(7), await square(8)]

    assert asyncio.run(main()) == [49, 49, 64]
    assert calls == [7, 8]
    info = square.cache_info()
    assert (info.l2_hits, info.errors) == (1, 0)
    ours = [c for c in _clients(server) if c.get("name") == "ck-aio-unix"]
    assert ours
    assert all(c["addr"].startswith(str(server.unix_socket)) for c in ours)
    backends.append(AsyncRedisBackend(url))


def test_the_notification_listener_works_over_a_unix_socket(make_redis_server, backends):
    server = make_redis_server()
    backend = RedisBackend(server.unix_url)
    backends.append(backend)
    coherence = backend.coherence()
    seen: list[Any] = []
    coherence.listen(seen.append)
    deadline = time.monotonic() + 10
    while not coherence.healthy:
        assert time.monotonic() < deadline, "the listener did not connect over the socket"
        time.sleep(0.02)
    backend.set("cachekit:unix-notice", b"1")
    while not any(keys and b"cachekit:unix-notice" in keys for keys in seen):
        assert time.monotonic() < deadline, seen
        time.sleep(0.02)


def test_raw_connection_builds_the_listener_connection_for_a_unix_socket(make_redis_server):
    """cachekit_redis.clients.raw_connection: what the listener's connections should use."""
    server = make_redis_server()
    target = parse(server.unix_url)
    conn = raw_connection(target, RedisSettings.from_env({}), client_name="ck-raw")
    try:
        conn.connect()
        conn.send_command("PING")
        assert conn.read_response() in (b"PONG", "PONG")
    finally:
        conn.disconnect()


@pytest.fixture(scope="module")
def password_server(redis_binaries_installed) -> Iterator[RedisServer]:
    """A private server whose default user needs PASSWORD (set once it answers)."""
    server = RedisServer(name="password")
    try:
        server.execute("CONFIG", "SET", "requirepass", PASSWORD)
        yield server
    finally:
        server.cleanup(graceful=False)


def _unix_url(server: RedisServer, password: str = PASSWORD) -> str:
    return f"unix://:{quote(password, safe='')}@{server.unix_socket}?db=0"


class _UnixSocketUrl:
    secret = PASSWORD

    @pytest.fixture(autouse=True)
    def _url(self, password_server):
        self.url = _unix_url(password_server)


class TestUnixSocketBackend(_UnixSocketUrl, RedisBackendSuite):
    pass


class TestAsyncUnixSocketBackend(_UnixSocketUrl, AsyncRedisBackendSuite):
    pass


# --- TLS ----------------------------------------------------------------------------------


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


@pytest.fixture(scope="module")
def tls_server(
    redis_binaries_installed, tmp_path_factory
) -> Iterator[tuple[RedisServer, int, Path]]:
    """(server, its TLS port, its CA file): a private server that also listens with TLS."""
    d = tmp_path_factory.mktemp("tls")
    # Key usages and key identifiers: Python 3.13 verifies with VERIFY_X509_STRICT.
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out",
             "ca.crt", "-days", "2", "-subj", "/CN=cachekit-test-ca",
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=d)  # fmt: skip
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out",
             "server.csr", "-subj", "/CN=localhost", cwd=d)  # fmt: skip
    (d / "ext").write_text(
        "subjectAltName=DNS:localhost,IP:127.0.0.1\n"
        "keyUsage=critical,digitalSignature,keyEncipherment\n"
        "extendedKeyUsage=serverAuth\n"
        "authorityKeyIdentifier=keyid\n"
    )
    _openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
             "-CAcreateserial", "-out", "server.crt", "-days", "2", "-extfile", "ext",
             cwd=d)  # fmt: skip
    reservation = PortReservation()  # redis-server listens on it all the same (SO_REUSEADDR)
    server = RedisServer(
        name="tls",
        tls_port=reservation.port,
        tls_cert_file=d / "server.crt",
        tls_key_file=d / "server.key",
        tls_ca_cert_file=d / "ca.crt",
        tls_auth_clients="no",
    )
    try:
        yield server, reservation.port, d / "ca.crt"
    finally:
        server.cleanup(graceful=False)
        reservation.release()


def _tls_cases(port: int, ca: Path) -> list[tuple[str, dict[str, Any]]]:
    base = f"rediss://127.0.0.1:{port}/0"
    return [
        (f"{base}?ssl_ca_certs={quote(str(ca))}", {}),  # in the URL
        (base, {"ssl_ca_certs": str(ca)}),  # in code
        (f"{base}?ssl_cert_reqs=none", {}),  # no verification
        (base, {"ssl_ca_certs": ca, "ssl_check_hostname": True, "ssl_cert_reqs": "required"}),
    ]


def test_tls_options_reach_the_sync_client(tls_server):
    _, port, ca = tls_server
    for url, options in _tls_cases(port, ca):
        backend = RedisBackend(url, **options)
        try:
            report = backend.health()
            assert report["healthy"] is True, (url, options, report)
            backend.set("tls-k", b"v")
            assert backend.get("tls-k") == b"v"
        finally:
            backend.close()
    # and without the CA, the server's certificate is refused: the options did matter
    backend = RedisBackend(f"rediss://127.0.0.1:{port}/0")
    assert "CERTIFICATE_VERIFY_FAILED" in backend.health()["error"]
    backend.close()


def test_tls_options_reach_the_async_client(tls_server):
    _, port, ca = tls_server

    async def main() -> None:
        for url, options in _tls_cases(port, ca):
            backend = AsyncRedisBackend(url, **options)
            try:
                report = await backend.health()
                assert report["healthy"] is True, (url, options, report)
                await backend.set("tls-k", b"v")
                assert await backend.get("tls-k") == b"v"
            finally:
                await backend.close()
        backend = AsyncRedisBackend(f"rediss://127.0.0.1:{port}/0")
        assert "CERTIFICATE_VERIFY_FAILED" in (await backend.health())["error"]
        await backend.close()

    asyncio.run(main())


def test_the_notification_listener_works_over_tls_with_options_given_in_code(tls_server):
    _, port, ca = tls_server
    backend = RedisBackend(f"rediss://127.0.0.1:{port}/0", ssl_ca_certs=str(ca))
    try:
        coherence = backend.coherence()
        seen: list[Any] = []
        coherence.listen(seen.append)
        deadline = time.monotonic() + 10
        while not coherence.healthy:
            assert time.monotonic() < deadline, "the listener did not connect over TLS"
            time.sleep(0.02)
        # A burst: several notices in one TLS record exercise the SSL-buffered bytes.
        names = [f"cachekit:tls-notice-{i}".encode() for i in range(200)]
        pipe = backend.client.pipeline(transaction=False)
        for name in names:
            pipe.set(name, b"1")
        pipe.execute()
        while not set(names) <= {k for keys in seen if keys for k in keys}:
            assert time.monotonic() < deadline, len(seen)
            time.sleep(0.02)
    finally:
        backend.close()


def test_raw_connection_carries_the_tls_options_given_in_code(tls_server):
    """What the notification listener uses: the options given in code reach it."""
    _, port, ca = tls_server
    target = parse(f"rediss://127.0.0.1:{port}/0")
    settings = RedisSettings.from_env({}, ssl_ca_certs=str(ca))
    conn = raw_connection(target, settings, client_name="ck-raw-tls")
    try:
        conn.connect()
        conn.send_command("PING")
        assert conn.read_response() in (b"PONG", "PONG")
    finally:
        conn.disconnect()


# --- passwords never shown ----------------------------------------------------------------

UNREACHABLE = [  # well-formed URLs, percent-encoded password; nothing listens there
    "redis://:{pw}@127.0.0.1:1/0",
    "redis://user:{pw}@127.0.0.1:1/0",
    "rediss://:{pw}@127.0.0.1:1/0",
    "unix://:{pw}@/tmp/cachekit-no-such-dir/redis.sock?db=0",
    "redis+cluster://:{pw}@127.0.0.1:1,127.0.0.1:2",
    "redis+sentinel://:{pw}@127.0.0.1:1/svc/0?sentinel_password={pw}",
]


@pytest.fixture
def records() -> Iterator[list[logging.LogRecord]]:
    """Every record the cachekit loggers emit, at any level."""
    got: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            got.append(record)

    logger = logging.getLogger("cachekit")
    handler, level = Keep(level=logging.DEBUG), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        yield got
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def _text(record: logging.LogRecord) -> str:
    text = record.getMessage()
    if record.exc_info:
        text += logging.Formatter().formatException(record.exc_info)
    return text


@pytest.mark.parametrize("template", UNREACHABLE)
def test_passwords_never_show_in_health_errors_or_logs(template, records, backends):
    url = template.format(pw=quote(PASSWORD, safe=""))
    backend = RedisBackend(url, socket_timeout=0.2, socket_connect_timeout=0.2)
    backends.append(backend)
    shown = [backend.endpoint, repr(backend), str(backend.health())]

    @cache(backend=backend, ttl=60, l1=False)
    def f(x: int) -> int:
        return x

    assert f(1) == 1  # fails open
    shown.append(str(f.check_health()))
    for error in (backend.ping, lambda: backend.get("k")):
        try:
            error()
        except Exception as exc:
            shown += [str(exc), repr(exc)]

    async def main() -> None:
        aio = AsyncRedisBackend(url, socket_timeout=0.2, socket_connect_timeout=0.2)
        shown.extend([aio.endpoint, repr(aio), str(await aio.health())])
        await aio.close()

    asyncio.run(main())
    shown += [_text(r) for r in records]
    assert any("E01" in text for text in shown)  # the failures were reported...
    for text in shown:
        assert "zq" not in text, text  # ...without the password


def test_a_wrong_password_is_reported_without_it(password_server, records, backends):
    wrong = PASSWORD.replace("€", "$")
    backend = RedisBackend(_unix_url(password_server, wrong))
    backends.append(backend)
    report = backend.health()
    assert "AuthenticationError" in report["error"] or "WRONGPASS" in report["error"], report
    assert "zq" not in str(report)
    assert "zq" not in " ".join(_text(r) for r in records)


@pytest.mark.parametrize(
    "template",
    [
        "redis://:{pw}@127.0.0.1:1/0",
        "unix://:{pw}@/tmp/x.sock?db=0",
        "redis+sentinel://:{pw}@127.0.0.1:1/svc",
        "redis://:{pw}@127.0.0.1:1/0?max_connections=2",
    ],
)
def test_a_malformed_url_fails_at_the_first_call_without_the_password(template, records):
    url = template.format(pw=PASSWORD)  # as written, not percent-encoded

    @cache(backend=url, ttl=60)
    def f() -> int:
        return 1

    with pytest.raises(ConfigurationError) as err:
        f()
    assert err.value.code == "E040"
    assert "percent-encode" in str(err.value) or "max_connections" in str(err.value)
    for text in [str(err.value), repr(err.value), *(_text(r) for r in records)]:
        assert "zq" not in text, text
