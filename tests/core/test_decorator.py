"""Behaviour of @cache on plain functions: forms, keywords, attributes, copy safety."""

from __future__ import annotations

import asyncio
import datetime
import logging

import pytest

import cachekit
from cachekit import cache
from cachekit.errors import CacheKeyError, ConfigurationError, SerializationError
from cachekit.serializers import PickleSerializer


def counting(func):
    """Wrap ``func`` so tests can see how often it really ran."""
    calls: list[tuple] = []

    def inner(*args, **kwargs):
        calls.append((args, kwargs))
        return func(*args, **kwargs)

    inner.__name__ = func.__name__
    inner.__qualname__ = func.__qualname__
    inner.calls = calls
    return inner


def test_bare_and_called_forms_both_cache():
    runs = []

    @cache
    def bare(x):
        runs.append(x)
        return x * 2

    @cache()
    def called(x):
        runs.append(x)
        return x * 3

    assert [bare(2), bare(2), called(2), called(2)] == [4, 4, 6, 6]
    assert runs == [2, 2]


def test_second_call_is_served_from_l1():
    runs = []

    @cache(backend=None)
    def get_user(user_id: int) -> dict:
        runs.append(user_id)
        return {"id": user_id, "roles": ["a"]}

    assert get_user(1) == get_user(1) == {"id": 1, "roles": ["a"]}
    info = get_user.cache_info()
    assert (info.hits, info.misses, info.l1_hits, info.l2_hits) == (1, 1, 1, 0)
    assert runs == [1]


def test_keyword_positional_and_default_forms_share_one_entry():
    runs = []

    @cache()
    def f(x, y=2):
        runs.append((x, y))
        return x + y

    assert f(1) == f(x=1) == f(1, 2) == f(1, y=2) == f(y=2, x=1) == 3
    assert runs == [(1, 2)]
    assert f(1, 3) == 4
    assert len(runs) == 2


def test_one_true_and_one_point_zero_are_different_entries():
    @cache()
    def ident(x):
        return [type(x).__name__, x]

    assert ident(1) == ["int", 1]
    assert ident(True) == ["bool", True]
    assert ident(1.0) == ["float", 1.0]
    assert ident("1") == ["str", "1"]
    assert ident(b"1") == ["bytes", b"1"]
    assert ident.cache_info().misses == 5


def test_none_is_a_cacheable_value():
    runs = []

    @cache()
    def nothing(x):
        runs.append(x)

    assert nothing(1) is None
    assert nothing(1) is None
    assert runs == [1]


def test_mutating_a_returned_value_never_changes_the_next_result():
    @cache()
    def config(name):
        return {"name": name, "tags": ["x"], "nested": {"n": 1}}

    first = config("a")
    first["name"] = "changed"
    first["tags"].append("y")
    first["nested"]["n"] = 99
    second = config("a")
    assert second == {"name": "a", "tags": ["x"], "nested": {"n": 1}}
    second["tags"].clear()
    assert config("a")["tags"] == ["x"]


def test_every_call_returns_the_same_shape_tuples_become_lists():
    @cache()
    def pair():
        return (1, 2)

    assert pair() == [1, 2]  # the miss returns what a hit returns
    assert pair() == [1, 2]


def test_unsupported_return_type_raises_e004_and_pickle_caches_it():
    @cache()
    def get_timestamp():
        return datetime.datetime.now()

    with pytest.raises(SerializationError) as err:
        get_timestamp()
    assert err.value.code == "E004"
    assert isinstance(err.value, TypeError)
    assert "Could not serialize object of type datetime" in str(err.value)
    assert "PickleSerializer" in str(err.value)

    @cache(serializer=PickleSerializer(), backend=None)
    def get_timestamp2():
        return datetime.datetime.now()

    assert get_timestamp2() == get_timestamp2()


def test_serializer_by_registered_name():
    @cache(serializer="pickle")
    def when():
        return datetime.date(2020, 1, 2)

    assert when() == datetime.date(2020, 1, 2)
    assert when() == datetime.date(2020, 1, 2)
    assert when.cache_info().hits == 1


def test_user_exceptions_propagate_and_are_not_cached():
    runs = []

    @cache()
    def flaky(x):
        runs.append(x)
        if len(runs) == 1:
            raise ValueError("boom")
        return x

    with pytest.raises(ValueError, match="boom"):
        flaky(1)
    assert flaky(1) == 1
    assert flaky(1) == 1
    assert runs == [1, 1]


def test_bypass_cache_runs_the_function_and_stores_nothing():
    runs = []

    @cache()
    def f(x):
        runs.append(x)
        return x

    assert f(1, _bypass_cache=True) == 1
    assert f(1) == 1
    assert f(1, _bypass_cache=True) == 1
    assert runs == [1, 1, 1]
    assert f.cache_info().bypassed == 2


def test_condition_and_unless_control_what_is_cached():
    runs = []

    @cache(condition=lambda x: x > 0, unless=lambda result: result is None)
    def f(x):
        runs.append(x)
        return None if x == 5 else x

    f(-1)
    f(-1)
    f(5)
    f(5)
    f(3)
    f(3)
    assert runs == [-1, -1, 5, 5, 3]


def test_ttl_expiry_recomputes(monkeypatch):
    import cachekit._engine.hit as hit_mod
    import cachekit._engine.store as store_mod
    import cachekit.cached as cached_mod
    import cachekit.l1 as l1_mod

    now = [1000.0]
    monkeypatch.setattr(l1_mod, "monotonic", lambda: now[0])
    monkeypatch.setattr(cached_mod, "monotonic", lambda: now[0])
    monkeypatch.setattr(store_mod, "monotonic", lambda: now[0])  # the slower paths' lookup
    monkeypatch.setattr(hit_mod, "monotonic", lambda: now[0])  # the hit wrappers
    runs = []

    @cache(ttl=10)
    def f(x):
        runs.append(x)
        return x

    f(1)
    now[0] += 9.9
    f(1)
    assert runs == [1]
    now[0] += 0.2
    f(1)
    assert runs == [1, 1]


def test_ttl_none_never_expires_and_timedelta_is_accepted():
    @cache(ttl=None)
    def f():
        return 1

    @cache(ttl=datetime.timedelta(minutes=5))
    def g():
        return 2

    assert f() == 1
    assert g() == 2
    assert g.__cachekit__.plan.ttl == 300.0
    assert f.__cachekit__.plan.ttl is None


@pytest.mark.parametrize(
    "kwargs",
    [
        {"tll": 5},
        {"ttl": 0},
        {"ttl": -1},
        {"ttl": "60"},
        {"namespace": "a:b"},
        {"namespace": "has space"},
        {"serializer": PickleSerializer},
        {"serializer": object()},
        {"backend": "localhost:6379"},
        {"backend": object()},
        {"key": "not callable"},
        {"l1": "yes"},
        {"l1_max_entries": 0},
        {"tags": [1]},
        {"circuit_breaker": "on"},
        {"max_value_size": -5},
    ],
)
def test_bad_keywords_fail_at_decoration_with_e040(kwargs):
    with pytest.raises(ConfigurationError) as err:
        cache(**kwargs)
    assert err.value.code == "E040"


def test_unknown_keyword_suggests_the_closest_one():
    with pytest.raises(ConfigurationError, match="Did you mean 'ttl'"):
        cache(tll=3)


def test_positional_option_is_rejected():
    with pytest.raises(ConfigurationError):
        cache(60)


def test_generator_functions_are_rejected():
    with pytest.raises(ConfigurationError, match="generator"):

        @cache()
        def gen():
            yield 1


def test_decorated_function_keeps_name_doc_signature_and_wrapped():
    import inspect

    def original(a: int, b: str = "x") -> dict:
        """Docstring."""
        return {}

    wrapped = cache()(original)
    assert wrapped.__name__ == "original"
    assert wrapped.__doc__ == "Docstring."
    assert wrapped.__wrapped__ is original
    assert inspect.signature(wrapped) == inspect.signature(original)


def test_cache_key_is_the_exact_backend_key():
    @cache(namespace="users")
    def get_user(user_id):
        return user_id

    key = get_user.cache_key(42)
    assert key.startswith("cachekit:users:")
    assert key.endswith(get_user.cache_key(user_id=42)[-32:])
    from cachekit.core import generate_cache_key

    assert generate_cache_key(get_user, (42,), {}) == key


def test_unkeyable_argument_raises_e020():
    class Thing:
        pass

    @cache()
    def f(x):
        return 1

    with pytest.raises(CacheKeyError) as err:
        f(Thing())
    assert err.value.code == "E020"


def test_custom_key_function_and_cache_key_dunder():
    class User:
        def __init__(self, uid):
            self.uid = uid

        def __cache_key__(self):
            return self.uid

    runs = []

    @cache()
    def by_user(user):
        runs.append(user.uid)
        return user.uid

    by_user(User(1))
    by_user(User(1))
    assert runs == [1]

    @cache(key=lambda user, verbose=False: user.uid)
    def by_key(user, verbose=False):
        runs.append(("k", user.uid))
        return user.uid

    by_key(User(2))
    by_key(User(2), verbose=True)
    assert runs == [1, ("k", 2)]


def test_wrong_arguments_raise_the_functions_own_type_error():
    @cache()
    def f(x):
        return x

    with pytest.raises(TypeError, match="argument"):
        f()
    with pytest.raises(TypeError):
        f(1, 2)
    with pytest.raises(TypeError):
        f(1, z=3)


def test_varargs_kwargs_and_keyword_only_signatures():
    runs = []

    @cache()
    def f(a, *rest, scale=1, **options):
        runs.append(1)
        return [a, list(rest), scale, options]

    assert f(1, 2, 3, scale=2, x=1, y=2) == [1, [2, 3], 2, {"x": 1, "y": 2}]
    assert f(1, 2, 3, y=2, scale=2, x=1) == [1, [2, 3], 2, {"x": 1, "y": 2}]
    assert len(runs) == 1
    f(1, 2)
    assert len(runs) == 2


def test_invalidate_one_entry_and_all_entries():
    runs = []

    @cache()
    def f(x):
        runs.append(x)
        return x

    f(1)
    f(2)
    assert f.invalidate_cache(1) == 1
    f(1)
    f(2)
    assert runs == [1, 2, 1]
    f.invalidate_cache()  # no arguments: every entry
    f(1)
    f(2)
    assert runs == [1, 2, 1, 1, 2]
    assert f.cache_clear() == 2
    assert f.cache_info().size == 0


def test_l1_can_be_disabled():
    runs = []

    @cache(l1=False, backend="memory://test_l1_disabled")
    def f(x):
        runs.append(x)
        return {"x": x}

    f(1)
    f(1)
    assert runs == [1]
    info = f.cache_info()
    assert (info.l1_hits, info.l2_hits, info.size) == (0, 1, 0)


def test_l1_max_entries_bounds_each_function():
    @cache(l1_max_entries=3)
    def f(x):
        return x

    for i in range(10):
        f(i)
    assert f.cache_info().size == 3


def test_cachekit_enabled_false_turns_caching_off(monkeypatch):
    monkeypatch.setenv("CACHEKIT_ENABLED", "false")
    runs = []

    @cache()
    def f(x):
        runs.append(x)
        return x

    f(1)
    f(1)
    assert runs == [1, 1]


def test_default_ttl_comes_from_the_environment_at_first_call(monkeypatch):
    @cache()
    def f():
        return 1

    monkeypatch.setenv("CACHEKIT_DEFAULT_TTL", "12")
    f()
    assert f.__cachekit__.plan.ttl == 12.0


def test_bad_environment_value_raises_e040_at_first_call(monkeypatch):
    @cache()
    def f():
        return 1

    monkeypatch.setenv("CACHEKIT_DEFAULT_TTL", "soon")
    with pytest.raises(ConfigurationError, match="CACHEKIT_DEFAULT_TTL"):
        f()


# A TTL of 0 means "never expires" in some caches and "do not cache" in others, so
# cachekit reads it as neither, in the decorator and in the environment alike.


@pytest.mark.parametrize("zero", [0, 0.0, -0.0, datetime.timedelta(0)])
def test_ttl_zero_is_refused_and_names_none_for_no_expiry(zero):
    with pytest.raises(ConfigurationError) as err:
        cache(ttl=zero)
    assert err.value.code == "E040"
    assert "ttl=None" in str(err.value)


@pytest.mark.parametrize("raw", ["0", "0.0", " 0 ", "-0"])
def test_default_ttl_zero_in_the_environment_is_refused_like_ttl_zero(monkeypatch, raw):
    @cache()
    def f():
        return 1

    monkeypatch.setenv("CACHEKIT_DEFAULT_TTL", raw)
    with pytest.raises(ConfigurationError) as err:
        f()
    assert err.value.code == "E040"
    assert "CACHEKIT_DEFAULT_TTL" in str(err.value) and "'none'" in str(err.value)


@pytest.mark.parametrize("raw", ["none", "None", "never", "NEVER"])
def test_the_environment_spells_no_expiry_as_a_word(monkeypatch, raw):
    @cache()
    def f():
        return 1

    monkeypatch.setenv("CACHEKIT_DEFAULT_TTL", raw)
    f()
    assert f.__cachekit__.plan.ttl is None


def test_an_infinite_ttl_is_refused_with_a_pointer_to_none():
    with pytest.raises(ConfigurationError) as err:
        cache(ttl=float("inf"))
    text = str(err.value)
    assert "greater than 0" not in text  # inf is greater than 0: say what is wrong
    assert "finite" in text and "ttl=None" in text


def test_an_infinite_default_ttl_in_the_environment_points_to_none(monkeypatch):
    @cache()
    def f():
        return 1

    monkeypatch.setenv("CACHEKIT_DEFAULT_TTL", "inf")
    with pytest.raises(ConfigurationError) as err:
        f()
    text = str(err.value)
    assert "greater than 0" not in text and "finite" in text and "'none'" in text


def test_nothing_configured_logs_one_info_line(caplog, monkeypatch):
    import cachekit._engine.plan as plan_mod

    monkeypatch.setattr(plan_mod, "_announced_l1_only", False)
    caplog.set_level(logging.INFO, logger="cachekit")

    @cache()
    def f():
        return 1

    @cache()
    def g():
        return 2

    f()
    g()
    lines = [r for r in caplog.records if "no backend configured" in r.getMessage()]
    assert len(lines) == 1
    assert lines[0].levelno == logging.INFO


def test_intent_presets_set_their_documented_defaults():
    from cachekit.decorator import INTENTS

    assert set(INTENTS) == {"minimal", "production", "dev", "test", "local", "secure"}

    @cache.test
    def t():
        return 1

    @cache.local(ttl=5)
    def loc():
        return 1

    @cache.minimal
    def m():
        return 1

    @cache.dev()
    def d():
        return 1

    @cache.production(backend=None)
    def p():
        return 1

    for fn in (t, loc, m, d, p):
        assert fn() == 1
    assert t.__cachekit__.options.backend is None
    assert t.__cachekit__.plan.ttl is None
    assert loc.__cachekit__.plan.ttl == 5.0
    assert m.__cachekit__.options.single_flight is False
    assert d.__cachekit__.plan.ttl == 60.0
    assert p.__cachekit__.options.single_flight is True


def test_test_and_local_intents_ignore_the_environment_backend(monkeypatch):
    monkeypatch.setenv("CACHEKIT_BACKEND", "memory://env-backend")

    @cache.test
    def t():
        return 1

    @cache()
    def normal():
        return 1

    t()
    normal()
    assert t.__cachekit__.plan.endpoint is None
    assert normal.__cachekit__.plan.endpoint == "memory://env-backend"


def test_secure_without_its_encryptor_names_the_package(monkeypatch):
    """Without cachekit-crypto's plugin, @cache.secure fails at decoration, naming the
    package. (tests/core/test_core_alone.py checks the same in a virtualenv that has
    only cachekit-core; here the installed plugin is kept from loading.)"""
    monkeypatch.setenv("CACHEKIT_DISABLE_PLUGIN_AUTOLOAD", "1")
    with pytest.raises(ImportError, match="cachekit-crypto"):

        @cache.secure(ttl=300)
        def secret():
            return 1

    with pytest.raises(ImportError, match="pip install cachekit-crypto"):
        cache(encryption=True)


def test_stats_and_health_cover_every_function():
    @cache()
    def stats_probe(x):
        return x

    stats_probe(1)
    stats_probe(1)
    report = cachekit.stats()
    names = [n for n in report["functions"] if n.endswith("stats_probe")]
    assert names
    assert report["functions"][names[0]]["hits"] == 1
    health = cachekit.health()
    assert health["status"] in ("healthy", "degraded")
    import json

    json.dumps(health)  # fit for an HTTP endpoint
    check = stats_probe.check_health()
    assert check["status"] == "healthy"
    assert check["backend"] is None


def test_invalidate_by_namespace_and_tags():
    runs = []

    @cache(namespace="inv_ns", backend="memory://inv")
    def a(x):
        runs.append(("a", x))
        return x

    @cache(tags=["inv_tag"], backend="memory://inv")
    def b(x):
        runs.append(("b", x))
        return x

    a(1)
    b(1)
    assert cachekit.invalidate(namespace="inv_ns") >= 1
    a(1)
    b(1)
    assert runs == [("a", 1), ("b", 1), ("a", 1)]
    assert cachekit.invalidate(tags="inv_tag") >= 1
    b(1)
    assert runs[-1] == ("b", 1)
    with pytest.raises(ConfigurationError):
        cachekit.invalidate()


def test_async_functions_cache_and_keep_coroutine_nature():
    import inspect

    runs = []

    @cache()
    async def fetch(x):
        await asyncio.sleep(0)
        runs.append(x)
        return {"x": x}

    assert inspect.iscoroutinefunction(fetch)

    async def main():
        a = await fetch(1)
        a["x"] = 2
        b = await fetch(1)
        await fetch.ainvalidate_cache(1)
        c = await fetch(1)
        return b, c

    b, c = asyncio.run(main())
    assert b == c == {"x": 1}
    assert runs == [1, 1]


def test_async_user_exception_propagates_and_is_not_cached():
    runs = []

    @cache()
    async def boom(x):
        runs.append(x)
        raise KeyError(x)

    async def main():
        for _ in range(2):
            with pytest.raises(KeyError):
                await boom(1)

    asyncio.run(main())
    assert runs == [1, 1]


def test_debug_logging_names_misses_with_the_hashed_key_only(caplog):
    caplog.set_level(logging.DEBUG, logger="cachekit")

    @cache()
    def lookup(secret_argument):
        return 1

    lookup("s3cr3t-value")
    lookup("s3cr3t-value")
    lines = [r.getMessage() for r in caplog.records if r.name == "cachekit"]
    assert any(line.startswith("miss ") and "lookup" in line for line in lines)
    assert not any("s3cr3t-value" in line for line in lines)


@pytest.mark.parametrize("call", ["positional", "keyword"])
def test_debug_logging_names_l2_hits_without_l1(caplog, call):
    # The L1-less fast path of a sync function used to skip the "L2 hit" line for
    # positional calls, while keyword calls and async functions logged it.
    caplog.set_level(logging.DEBUG, logger="cachekit")

    @cache(backend="memory://debug-l2-" + call, l1=False)
    def lookup(x):
        return x

    for _ in range(2):
        lookup(1) if call == "positional" else lookup(x=1)
    lines = [r.getMessage() for r in caplog.records if r.name == "cachekit"]
    assert [line.split()[0] for line in lines if "lookup" in line] == ["miss", "L2"], lines
    assert lookup.cache_info().l2_hits == 1
