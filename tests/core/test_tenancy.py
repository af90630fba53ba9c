"""Multi-tenant caches (tenant_extractor=, missing_tenant=) without encryption plugins.

The encrypted multi-tenant path (one key per tenant) is tested with cachekit-crypto
in tests/crypto; here: keys, L1 and backend entries kept apart, E044, bypass,
cache_key/invalidate_cache, threads and tasks, and the per-tenant encryptor facade.
"""

from __future__ import annotations

import asyncio
import contextvars
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from cachekit import cache
from cachekit.errors import ConfigurationError, TenantRequiredError
from cachekit.tenancy import TenantEncryptors, current_tenant, tenant_scope

REQUEST_TENANT: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "request_tenant", default=None
)


def from_request(*args: object, **kwargs: object) -> str | None:
    return REQUEST_TENANT.get()


def in_tenant(tenant: str | None, fn, *args):
    token = REQUEST_TENANT.set(tenant)
    try:
        return fn(*args)
    finally:
        REQUEST_TENANT.reset(token)


_namespaces = iter(range(10**6))


def make_profile(**options):
    calls: list[tuple[str | None, int]] = []
    namespace = f"tenancy-{next(_namespaces)}"  # memory:// is shared by the process

    @cache(backend="memory://", namespace=namespace, tenant_extractor=from_request, **options)
    def profile(user_id: int) -> dict:
        calls.append((REQUEST_TENANT.get(), user_id))
        return {"tenant": REQUEST_TENANT.get(), "user": user_id}

    return profile, calls


def test_tenants_never_share_an_entry():
    profile, calls = make_profile()
    assert in_tenant("acme", profile, 1) == {"tenant": "acme", "user": 1}
    assert in_tenant("globex", profile, 1) == {"tenant": "globex", "user": 1}
    assert in_tenant("acme", profile, 1) == {"tenant": "acme", "user": 1}
    assert in_tenant("globex", profile, 1) == {"tenant": "globex", "user": 1}
    assert calls == [("acme", 1), ("globex", 1)]
    info = profile.cache_info()
    assert (info.misses, info.l1_hits) == (2, 2)


def test_backend_entries_are_kept_apart_too():
    profile, calls = make_profile(l1=False)
    for _ in range(2):
        assert in_tenant("acme", profile, 7)["tenant"] == "acme"
        assert in_tenant("globex", profile, 7)["tenant"] == "globex"
    assert len(calls) == 2
    assert profile.cache_info().l2_hits == 2


def test_the_key_depends_on_the_tenant_and_names_neither():
    profile, _ = make_profile()
    acme = in_tenant("acme", profile.cache_key, 1)
    globex = in_tenant("globex", profile.cache_key, 1)
    assert acme != globex
    assert acme.rsplit(":", 1)[0] == globex.rsplit(":", 1)[0]  # same function prefix
    assert "acme" not in acme and "globex" not in globex


@pytest.mark.parametrize("tenant", [None, ""])
def test_a_call_without_tenant_raises_e044_and_computes_nothing(tenant):
    profile, calls = make_profile()
    with pytest.raises(TenantRequiredError) as err:
        in_tenant(tenant, profile, 1)
    assert err.value.code == "E044"
    assert "missing_tenant='bypass'" in str(err.value)
    assert calls == []


def test_missing_tenant_bypass_runs_uncached():
    profile, calls = make_profile(missing_tenant="bypass")
    assert in_tenant(None, profile, 1) == {"tenant": None, "user": 1}
    assert in_tenant(None, profile, 1) == {"tenant": None, "user": 1}
    assert len(calls) == 2
    assert profile.cache_info().bypassed == 2
    in_tenant("acme", profile, 1)
    assert profile.cache_info().size == 1  # only the tenant's entry


def test_cache_key_and_invalidate_need_the_tenant():
    profile, calls = make_profile()
    in_tenant("acme", profile, 1)
    in_tenant("globex", profile, 1)
    with pytest.raises(TenantRequiredError):
        in_tenant(None, profile.cache_key, 1)
    with pytest.raises(TenantRequiredError):
        in_tenant(None, profile.invalidate_cache, 1)
    assert in_tenant("acme", profile.invalidate_cache, 1) >= 1
    in_tenant("acme", profile, 1)
    in_tenant("globex", profile, 1)  # still cached
    assert calls == [("acme", 1), ("globex", 1), ("acme", 1)]


def test_invalidating_everything_reaches_every_tenant():
    profile, calls = make_profile()
    in_tenant("acme", profile, 1)
    in_tenant("globex", profile, 1)
    profile.invalidate_cache()
    in_tenant("acme", profile, 1)
    in_tenant("globex", profile, 1)
    assert len(calls) == 4


def test_bypass_cache_keyword_is_not_passed_to_the_extractor():
    seen = []

    def extractor(user_id):
        seen.append(user_id)
        return "acme"

    @cache(backend=None, tenant_extractor=extractor)
    def f(user_id):
        return user_id

    assert f(1, _bypass_cache=True) == 1
    assert f(2, _bypass_cache=False) == 2
    assert seen == [2]
    assert f.cache_info().bypassed == 1


@pytest.mark.parametrize("bad", [42, b"acme", ["acme"], "x" * 2000, "tab\there"])
def test_an_extractor_returning_a_non_tenant_is_a_configuration_error(bad):
    @cache(backend=None, tenant_extractor=lambda x: bad)
    def f(x):
        return x

    with pytest.raises(ConfigurationError) as err:
        f(1)
    assert "tenant_extractor" in str(err.value)


def test_options_are_validated_when_decorating():
    with pytest.raises(ConfigurationError, match="tenant_extractor"):
        cache(tenant_extractor="acme")
    with pytest.raises(ConfigurationError, match="missing_tenant"):
        cache(tenant_extractor=from_request, missing_tenant="shared")


def test_threads_each_see_their_own_tenant():
    @cache(backend="memory://", tenant_extractor=lambda key: key.split("/")[0])
    def load(key: str) -> str:
        return f"{current_tenant()}:{key}"

    def work(i: int) -> None:
        key = f"t{i % 2}/{i % 10}"
        assert load(key) == f"t{i % 2}:{key}"

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(work, range(1000)))
    assert load.cache_info().misses == 10


def test_async_tasks_each_see_their_own_tenant():
    @cache(backend="memory://", tenant_extractor=from_request)
    async def load(i: int) -> str:
        await asyncio.sleep(0)
        return f"{REQUEST_TENANT.get()}:{i}"

    async def one(tenant: str, i: int) -> None:
        REQUEST_TENANT.set(tenant)  # each task runs in its own copy of the context
        assert await load(i) == f"{tenant}:{i}"
        assert await load(i) == f"{tenant}:{i}"

    async def main() -> None:
        await asyncio.gather(*(one(f"t{n % 3}", n % 5) for n in range(300)))

    asyncio.run(main())
    assert load.cache_info().misses == 15


def test_current_tenant_outside_a_call_raises():
    with pytest.raises(TenantRequiredError):
        current_tenant()
    with tenant_scope("acme"):
        assert current_tenant() == "acme"
    with pytest.raises(TenantRequiredError):
        current_tenant()


class _Tagged:
    """A stand-in encryptor that records which tenant it was built for."""

    def __init__(self, tenant: str) -> None:
        self.tenant = tenant
        self.key_id = f"k-{tenant}"
        self.digest_key = b"d" * 32

    def encrypt(self, plaintext: bytes, aad: bytes) -> bytes:
        return self.tenant.encode() + b"|" + plaintext

    def decrypt(self, blob: bytes, aad: bytes, *, key_id: str) -> bytes:
        tenant, _, plaintext = blob.partition(b"|")
        assert tenant == self.tenant.encode()
        return plaintext


def test_tenant_encryptors_dispatch_on_the_current_tenant_and_build_once():
    built: list[str] = []

    def build(tenant: str) -> _Tagged:
        built.append(tenant)
        return _Tagged(tenant)

    facade = TenantEncryptors(build, _Tagged("base"))
    assert facade.digest_key == b"d" * 32
    with pytest.raises(TenantRequiredError):
        facade.encrypt(b"x", b"aad")
    with tenant_scope("acme"):
        blob = facade.encrypt(b"secret", b"aad")
        assert facade.key_id == "k-acme"
        assert facade.decrypt(blob, b"aad", key_id="k-acme") == b"secret"
    with tenant_scope("globex"):
        assert facade.encrypt(b"x", b"aad").startswith(b"globex|")
    with tenant_scope("acme"):
        facade.encrypt(b"again", b"aad")
    assert built == ["acme", "globex"]


def test_tenant_encryptors_are_bounded(monkeypatch):
    import cachekit.tenancy as tenancy

    monkeypatch.setattr(tenancy, "_MAX_ENCRYPTORS", 3)
    built: list[str] = []
    facade = TenantEncryptors(lambda t: built.append(t) or _Tagged(t), _Tagged("base"))
    for tenant in ("a", "b", "c", "d", "a"):
        with tenant_scope(tenant):
            facade.encrypt(b"x", b"")
    assert built == ["a", "b", "c", "d", "a"]  # "a" was dropped to make room for "d"


def test_tenant_encryptors_build_each_tenant_once_under_threads():
    built: list[str] = []
    lock = threading.Lock()

    def build(tenant: str) -> _Tagged:
        with lock:
            built.append(tenant)
        return _Tagged(tenant)

    facade = TenantEncryptors(build, _Tagged("base"))

    def work(i: int) -> None:
        with tenant_scope(f"t{i % 4}"):
            assert facade.encrypt(b"v", b"").startswith(f"t{i % 4}|".encode())

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(work, range(400)))
    assert sorted(set(built)) == ["t0", "t1", "t2", "t3"]


class Accounts:
    def __init__(self, tenant: str) -> None:
        self.tenant = tenant
        self.calls: list[int] = []

    @cache(backend="memory://tenant-methods", tenant_extractor=lambda self, n: self.tenant)
    def balance(self, n: int) -> dict:
        self.calls.append(n)
        return {"tenant": self.tenant, "n": n}


def test_methods_name_their_tenant_with_the_tenant_keyword():
    acme, globex = Accounts("acme"), Accounts("globex")
    assert acme.balance(1)["tenant"] == "acme"
    assert globex.balance(1)["tenant"] == "globex"
    # cache_key()/invalidate_cache() take no instance: the extractor cannot read self.
    with pytest.raises(AttributeError):
        Accounts.balance.cache_key(1)
    key = Accounts.balance.cache_key(1, _tenant="acme")
    assert key != Accounts.balance.cache_key(1, _tenant="globex")
    assert Accounts.balance.invalidate_cache(1, _tenant="acme") >= 1
    acme.balance(1)
    globex.balance(1)
    assert (acme.calls, globex.calls) == ([1, 1], [1])


def test_the_tenant_keyword_is_checked():
    with pytest.raises(ConfigurationError, match="drop one tenant"):
        Accounts.balance.invalidate_cache(_tenant="acme")
    with pytest.raises(TenantRequiredError):
        Accounts.balance.cache_key(1, _tenant="")

    @cache(backend=None)
    def plain(n):
        return n

    with pytest.raises(ConfigurationError, match="no tenant_extractor"):
        plain.cache_key(1, _tenant="acme")
