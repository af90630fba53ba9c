"""Each hit returns a private copy: L1 keeps small plain data as a template it copies,
anything else as the serializer's bytes it decodes. Either way a hit returns what a
decode of the stored bytes returns (same types, same contents), and no caller's change,
at any depth, reaches the next caller."""

from __future__ import annotations

import pickle
from typing import Any

import msgpack
from hypothesis import given, settings
from hypothesis import strategies as st

from cachekit import cache
from cachekit._engine.clone import MAX_ITEMS, l1_form
from cachekit.l1 import entry_size
from cachekit.serializers import PickleSerializer

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**64 - 1),
    st.floats(allow_nan=False),
    st.text(max_size=6),
    st.binary(max_size=6),
)
plain = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=6), st.dictionaries(st.text(max_size=4), inner, max_size=6)
    ),
    max_leaves=40,
)


def _same(a: Any, b: Any) -> bool:
    """Equal with exactly the same types at every depth (1 == 1.0 == True is not enough)."""
    if type(a) is not type(b):
        return False
    if type(a) is dict:
        return list(a) == list(b) and all(_same(a[k], b[k]) for k in a)
    if type(a) is list:
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def _containers(value: Any) -> list[Any]:
    found = []
    if type(value) in (dict, list):
        found.append(value)
        for item in value.values() if type(value) is dict else value:
            found.extend(_containers(item))
    return found


@settings(max_examples=300, deadline=None)
@given(plain)
def test_a_hit_returns_what_a_decode_returns_and_shares_nothing_mutable(value: Any) -> None:
    payload = msgpack.packb(value)
    caller = msgpack.unpackb(payload)
    stored, loads = l1_form(caller, payload, msgpack.unpackb)
    first, second = loads(stored), loads(stored)
    assert _same(first, msgpack.unpackb(payload))
    assert _same(second, msgpack.unpackb(payload))
    # No container is shared between two hits, the template or the first caller's copy.
    mine = {id(c) for c in _containers(first)}
    for other in (second, caller, stored if loads is not msgpack.unpackb else None):
        assert mine.isdisjoint(id(c) for c in _containers(other))


def test_small_plain_data_is_kept_as_a_template_larger_or_deeper_as_bytes() -> None:
    def form(value: Any) -> Any:
        payload = msgpack.packb(value)
        return l1_form(msgpack.unpackb(payload), payload, msgpack.unpackb)[1]

    assert form({"id": 1, "name": "alice"}) is dict.copy
    assert form([1, "a", None]) is list.copy
    assert form({"id": 1, "tags": ["a", "b"]}) not in (dict.copy, msgpack.unpackb)
    assert form([{"id": 1}, {"id": 2}]) not in (list.copy, msgpack.unpackb)
    assert form({"a": {"b": {"c": 1}}}) is msgpack.unpackb  # deeper than one level
    assert form([1, {"id": 1}]) is msgpack.unpackb  # rows mixed with scalars
    assert form(list(range(MAX_ITEMS + 1))) is msgpack.unpackb
    assert form({"rows": list(range(MAX_ITEMS))}) is msgpack.unpackb  # items in all


def test_one_container_in_two_places_keeps_the_serializer_s_aliasing() -> None:
    shared = [1, 2]
    value = {"a": shared, "b": shared}
    payload = pickle.dumps(value)
    caller = pickle.loads(payload)
    stored, loads = l1_form(caller, payload, pickle.loads)
    assert loads is pickle.loads and stored is payload
    hit = loads(stored)
    assert hit["a"] is hit["b"]  # as pickle decodes it, not two separate copies


def test_a_template_is_charged_with_its_nested_items() -> None:
    flat = {"id": 1, "tags": []}
    nested = {"id": 1, "tags": ["x" * 100, "y" * 100]}
    assert entry_size(nested) > entry_size(flat) + 200


def test_changes_to_a_hit_at_any_depth_do_not_reach_the_next_hit() -> None:
    calls = []

    @cache(backend=None, ttl=60)
    def user(user_id: int) -> dict[str, Any]:
        calls.append(user_id)
        return {"id": user_id, "name": "alice", "tags": ["a", "b"], "meta": {"x": 1}}

    @cache(backend=None, ttl=60)
    def rows(n: int) -> list[dict[str, Any]]:
        return [{"id": i} for i in range(n)]

    first = user(1)
    first["tags"].append("mutated")
    first["meta"]["x"] = 99
    first["name"] = "bob"
    hit = user(1)
    hit["tags"].clear()
    assert user(1) == {"id": 1, "name": "alice", "tags": ["a", "b"], "meta": {"x": 1}}
    assert calls == [1]

    table = rows(3)
    table[0]["id"] = -1
    table.append({"id": 9})
    assert rows(3) == [{"id": 0}, {"id": 1}, {"id": 2}]


def test_the_pickle_serializer_s_hits_are_private_copies_too() -> None:
    @cache(backend=None, ttl=60, serializer=PickleSerializer())
    def record(key: str) -> dict[str, Any]:
        return {"key": key, "items": [1, 2]}

    record("k")["items"].append(3)
    assert record("k") == {"key": "k", "items": [1, 2]}


# --- L1 keys: one int argument is its own key --------------------------------------------


def _l1_keys(fn: Any) -> list[Any]:
    return list(fn.__cachekit__.l1.data)


def test_one_int_argument_is_its_own_l1_key_and_equal_guises_stay_apart() -> None:
    calls = []

    @cache(backend=None, ttl=60)
    def f(x: Any) -> Any:
        calls.append(x)
        return [x]

    for arg in (1, True, 1.0, "1", b"1", None):
        f(arg)
    assert len(calls) == 6  # 1, True and 1.0 are equal but three entries
    assert 1 in _l1_keys(f) and (True, bool) in _l1_keys(f) and (1.0, float) in _l1_keys(f)
    assert f(x=1) == [1] and f(True) == [True] and f(1.0) == [1.0]  # the slow path agrees
    assert type(f(True)[0]) is bool and type(f(1.0)[0]) is float
    assert len(calls) == 6 and f.cache_info().l1_hits == 5


def test_the_fast_and_slow_paths_build_the_same_key_for_every_shape() -> None:
    """A call spelled with keywords takes the slow path; its L1 key must be the one the
    positional fast path looks up (else a hit is lost or an entry duplicated)."""
    import asyncio

    calls: list[Any] = []

    class Repo:
        @cache(backend=None, ttl=60, include_self=False)
        def get(self, key: int) -> list[int]:
            calls.append(("method", key))
            return [key]

    @cache(backend=None, ttl=60)
    async def aget(key: int) -> list[int]:
        calls.append(("async", key))
        return [key]

    @cache(backend=None, ttl=60)
    def pair(a: int, b: int) -> list[int]:
        calls.append(("pair", a, b))
        return [a, b]

    repo = Repo()
    assert repo.get(7) == repo.get(key=7) == [7]
    assert asyncio.run(aget(7)) == asyncio.run(aget(key=7)) == [7]
    assert pair(1, 2) == pair(1, b=2) == [1, 2]
    assert calls == [("method", 7), ("async", 7), ("pair", 1, 2)]
    assert _l1_keys(aget) == [7] and _l1_keys(pair) == [(1, 2, int, int)]


def test_the_generated_hit_wrappers_show_their_source_in_tracebacks() -> None:
    """The fixed-arity hit wrappers are compiled from one source (sync and async, one
    argument or several); their lines are registered with linecache, so tracebacks and
    debuggers show them."""
    import asyncio
    import linecache

    @cache(backend=None, ttl=60)
    def one(x: int) -> list[int]:
        return [x]

    @cache(backend=None, ttl=60)
    async def two(x: int, y: int) -> list[int]:
        return [x, y]

    assert one(1) == [1] and asyncio.run(two(1, 2)) == [1, 2]
    for fn, marker in ((one, "def wrapper"), (two, "async def wrapper")):
        code = getattr(fn, "__code__", None) or fn.__wrapped__.__code__
        assert code.co_filename.startswith("<cachekit hit path"), code.co_filename
        assert marker in linecache.getline(code.co_filename, code.co_firstlineno)
