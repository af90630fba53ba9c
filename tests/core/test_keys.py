"""Cache keys: equal iff typed-equal, no delimiter collisions, fixed length, canonical binding.

The central property: two argument values share a key exactly when they have the
same type and are equal, recursively (so 1, 1.0, True, "1" and b"1" are five keys,
a tuple is not a list, and dict/set order does not matter). The encoding fed to
the digest is tested directly (collisions there are real, not a 2**-128 accident),
and the full backend key is tested through ``KeyBuilder`` and ``generate_cache_key``.
"""

from __future__ import annotations

import datetime
import enum
import math
import random
import re
import uuid
from collections import OrderedDict
from decimal import Decimal, localcontext
from pathlib import Path, PurePosixPath
from typing import Any, NamedTuple

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from cachekit.core import generate_cache_key
from cachekit.errors import CacheKeyError, ConfigurationError
from cachekit.keys import (
    DIGEST_HEX_LENGTH,
    KeyBuilder,
    canonical_bytes,
    digest,
    validate_namespace,
)

HEX_DIGEST = re.compile(r"[0-9a-f]{32}")

# --- strategies ---------------------------------------------------------------------------

# Strings built from the encoding's own tag and delimiter characters, so that a
# string can look like an encoded item and containers can be mimicked in text.
TRICKY_ALPHABET = "ab:()[]{}<>,0123456789-sifbBNTFkSeE\x00\r\n *é\U0001f600"
tricky_text = st.text(alphabet=TRICKY_ALPHABET, max_size=8)
texts = st.one_of(tricky_text, st.text(max_size=8))
floats = st.floats(allow_nan=False)  # NaN != NaN: handled by its own test
ints = st.one_of(st.integers(-3, 3), st.integers())

scalars = st.one_of(
    st.none(),
    st.booleans(),
    ints,
    floats,
    texts,
    st.binary(max_size=8),
)
hashables = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.tuples(inner, inner),
        st.lists(inner, max_size=3).map(tuple),
        st.frozensets(inner, max_size=3),
    ),
    max_leaves=6,
)
values = st.recursive(
    st.one_of(scalars, st.binary(max_size=4).map(bytearray)),
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.lists(inner, max_size=4).map(tuple),
        st.dictionaries(hashables, inner, max_size=4),
        st.sets(hashables, max_size=4),
        st.frozensets(hashables, max_size=4),
    ),
    max_leaves=12,
)


def typed_equal(a: Any, b: Any) -> bool:
    """Same type and equal, recursively (the relation keys must respect)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(typed_equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        if len(a) != len(b):
            return False
        for ka, va in a.items():
            match = [kb for kb in b if typed_equal(ka, kb)]
            if len(match) != 1 or not typed_equal(va, b[match[0]]):
                return False
        return True
    if isinstance(a, (set, frozenset)):
        return len(a) == len(b) and all(any(typed_equal(x, y) for y in b) for x in a)
    return bool(a == b)


def equal_copy(value: Any, rnd: random.Random) -> Any:
    """A typed-equal value built afresh: containers reordered, 0.0 <-> -0.0, new objects."""
    kind = type(value)
    if kind is float and value == 0.0:
        return rnd.choice([0.0, -0.0])
    if kind is int:
        return int(str(value)) if value.bit_length() < 1000 else value + 0
    if kind is str:
        return "".join(list(value))
    if kind in (bytes, bytearray):
        return kind(bytes(value))
    if kind in (list, tuple):
        return kind(equal_copy(v, rnd) for v in value)
    if kind is dict:
        items = list(value.items())
        rnd.shuffle(items)
        return {equal_copy(k, rnd): equal_copy(v, rnd) for k, v in items}
    if kind in (set, frozenset):
        items = list(value)
        rnd.shuffle(items)
        return kind(equal_copy(v, rnd) for v in items)
    return value


def near_miss(value: Any, rnd: random.Random) -> Any:
    """``value`` with one part swapped for something confusable (usually unequal)."""
    kind = type(value)
    if kind in (list, tuple) and value and rnd.random() < 0.7:
        i = rnd.randrange(len(value))
        items = list(value)
        items[i] = near_miss(items[i], rnd)
        return kind(items)
    if kind is dict and value and rnd.random() < 0.7:
        k = rnd.choice(list(value))
        changed = dict(value)
        changed[k] = near_miss(changed[k], rnd)
        return changed
    options: list[Any] = [
        [value],
        (value,),
        [value, None],
    ]
    if kind is int:
        options += [float(value) if abs(value) < 2**53 else value + 1, str(value), value + 1]
        if value in (0, 1):
            options.append(bool(value))
    elif kind is bool:
        options += [int(value), float(value), str(value)]
    elif kind is float:
        options += [str(value), math.nextafter(value, math.inf)]
        if value.is_integer():
            options.append(int(value))
    elif kind is str:
        options += [value.encode(), value + ":", ":" + value, value[:-1]]
    elif kind is bytes:
        options += [bytearray(value), value.decode("latin-1"), value + b"\x00"]
    elif kind in (list, tuple):
        options += [tuple(value) if kind is list else list(value), kind(value[1:])]
    elif kind is dict:
        options += [list(value.items()), tuple(value.items())]
    elif kind in (set, frozenset):
        options += [frozenset(value) if kind is set else set(value), sorted(value, key=repr)]
    elif value is None:
        options += ["None", "", b"", (), False]
    return rnd.choice(options)


def enc(value: Any) -> bytes:
    return canonical_bytes(value)


def plain(x, y=5):
    return x, y


# --- equal iff typed-equal ----------------------------------------------------------------


@settings(max_examples=200)
@given(values, st.randoms(use_true_random=False))
def test_typed_equal_values_have_the_same_encoding(value, rnd):
    copy = equal_copy(value, rnd)
    assert typed_equal(value, copy)
    assert enc(value) == enc(copy)


@settings(max_examples=200)
@given(values, st.randoms(use_true_random=False))
def test_a_confusable_variant_gets_another_encoding_unless_typed_equal(value, rnd):
    other = near_miss(value, rnd)
    assert (enc(value) == enc(other)) == typed_equal(value, other)


@settings(max_examples=200)
@given(values, values)
def test_two_arbitrary_values_share_an_encoding_iff_typed_equal(a, b):
    assert (enc(a) == enc(b)) == typed_equal(a, b)


@settings(max_examples=100)
@given(st.lists(values, min_size=2, max_size=2), st.randoms(use_true_random=False))
def test_backend_keys_follow_typed_equality(pair, rnd):
    builder = KeyBuilder(plain)
    a, b = pair
    key_a = builder.backend_key((a,), {})
    assert builder.backend_key((equal_copy(a, rnd),), {}) == key_a
    assert (builder.backend_key((b,), {}) == key_a) == typed_equal(a, b)


def test_one_in_every_guise_is_a_different_key():
    guises = [1, 1.0, True, "1", b"1", bytearray(b"1"), (1,), [1], {1}, frozenset({1}), 1 + 0j]
    keys = {generate_cache_key(plain, (g,), {}) for g in guises}
    assert len(keys) == len(guises)
    names = {generate_cache_key("by_name", (g,), {}) for g in guises}
    assert len(names) == len(guises)


def test_zero_and_negative_zero_share_a_key_but_false_does_not():
    assert enc(0.0) == enc(-0.0)
    assert enc([0.0, {"x": -0.0}]) == enc([-0.0, {"x": 0.0}])
    assert enc(complex(-0.0, -0.0)) == enc(0j)
    assert enc(0.0) != enc(0) != enc(False)


def test_nan_has_a_stable_key_distinct_from_infinity_and_its_string():
    nan = float("nan")
    assert enc(nan) == enc(float("nan"))  # not equal in Python, but one stable key
    assert len({enc(nan), enc(math.inf), enc(-math.inf), enc("nan"), enc(None)}) == 5


def test_dict_and_set_order_do_not_matter():
    assert enc({"a": 1, "b": 2}) == enc({"b": 2, "a": 1})
    assert enc({3, 1, 2}) == enc({2, 3, 1})
    assert enc(frozenset("xyz")) == enc(frozenset("zyx"))
    assert enc({1: 2, 3: 4}) != enc({1: 4, 3: 2})  # the pairing matters


def test_ordered_dict_keys_respect_its_order_sensitive_equality():
    first, second = OrderedDict(a=1, b=2), OrderedDict(b=2, a=1)
    assert first != second
    assert enc(first) != enc(second)
    assert enc(first) == enc(OrderedDict([("a", 1), ("b", 2)]))
    assert enc(first) != enc({"a": 1, "b": 2})


def test_big_integers_encode_without_hitting_the_int_str_limit():
    huge = 10**5000
    assert enc(huge) == enc(10**5000)
    assert enc(huge) != enc(huge + 1)
    assert enc(-huge) != enc(huge)
    assert enc(2**2048) != enc(2**2048 - 1)


# --- delimiters and nesting ---------------------------------------------------------------

COLLISION_CANDIDATES = [
    (("a:b", "c"), ("a", "b:c")),
    (("a", "b"), ("ab",)),
    (("a", "b"), ("a", "", "b")),
    (("a)", "b"), ("a", ")b")),
    (("s1:a",), ("a",)),
    ("s1:a", "a"),
    (("i1:1",), (1,)),
    ("(1:i1:1)", (1,)),
    ("N", None),
    ("T", True),
    (b"s1:a", "a"),
    (((1, 2), 3), (1, (2, 3))),
    (((1, 2), 3), (1, 2, 3)),
    ([[1], 2], [1, [2]]),
    ([[]], []),
    (([],), ()),
    ([()], [[]]),
    ({"a": 1}, [("a", 1)]),
    ({"a": 1}, {("a", 1)}),
    ({"a": {"b": 1}}, {"a": {"b": "1"}}),
    ({"a": 1, "b": 2}, {"a": 2, "b": 1}),
    ({"a": "b"}, {"a:b": ""}),
    ({1: None}, {None: 1}),
    ({"": ""}, {}),
    (("",), ()),
    ((None,), ()),
    ({frozenset(): ()}, {(): frozenset()}),
    (10**16, 1e16),
    (1, 1 + 0j),
    ("e\u0301", "\u00e9"),  # NFD and NFC are different strings
]


@pytest.mark.parametrize(("left", "right"), COLLISION_CANDIDATES, ids=repr)
def test_lookalike_arguments_get_different_keys(left, right):
    assert not typed_equal(left, right)
    assert enc(left) != enc(right)
    assert generate_cache_key(plain, (left,), {}) != generate_cache_key(plain, (right,), {})
    # The same pair in an argument list, or spread over two parameters.
    assert enc([left, right]) != enc([right, left])


@settings(max_examples=200)
@given(st.lists(tricky_text, max_size=4), st.lists(tricky_text, max_size=4))
def test_string_sequences_never_collide_by_concatenation(left, right):
    assert (enc(tuple(left)) == enc(tuple(right))) == (left == right)
    joined = ":".join(left)
    if left != [joined]:
        assert enc(tuple(left)) != enc((joined,))


# --- the key's shape ----------------------------------------------------------------------


@settings(max_examples=100)
@given(values)
def test_backend_key_is_prefix_plus_32_hex_whatever_the_argument(value):
    key = KeyBuilder(plain, namespace="ns").backend_key((value,), {})
    prefix = f"cachekit:ns:{__name__}.plain:"
    assert key.startswith(prefix)
    assert HEX_DIGEST.fullmatch(key[len(prefix) :])


@pytest.mark.parametrize("size", [0, 1, 1000, 1_000_000])
def test_key_length_does_not_depend_on_argument_size(size):
    short = generate_cache_key(plain, ("",), {})
    assert len(generate_cache_key(plain, ("x" * size,), {})) == len(short)
    assert len(generate_cache_key(plain, (list(range(size // 10)),), {})) == len(short)
    assert len(generate_cache_key("get_user", ("x" * size,), {"y": b"z" * size})) == len(
        generate_cache_key("get_user", (), {})
    )


@pytest.mark.parametrize(
    "evil",
    [
        "*",
        "user:*",
        "{tag}",
        "a\r\nDEL *\r\n",
        "with spaces",
        "ünïcödé ✓ \U0001f600",
        "\x00",
        "../../etc/passwd",
        "' OR 1=1 --",
    ],
)
def test_keys_never_contain_raw_user_data(evil):
    for key in (
        generate_cache_key(plain, (evil,), {}),
        generate_cache_key(plain, (1,), {"y": {evil: [evil]}}),
        generate_cache_key("get_user", (evil,), {evil: evil}),
        KeyBuilder(plain, namespace="users").backend_key((evil, evil), {}),
    ):
        assert evil not in key
        assert key.isascii() and key.isprintable()
        assert not set(key) & set("*{}[] \r\n\x00'")
        assert HEX_DIGEST.fullmatch(key.rsplit(":", 1)[1])


def test_generate_cache_key_by_name():
    key = generate_cache_key("get_user", (123,), {})
    assert key.startswith("cachekit:get_user:")
    assert HEX_DIGEST.fullmatch(key.removeprefix("cachekit:get_user:"))
    assert key == generate_cache_key("get_user", [123], None)
    assert key != generate_cache_key("get_user", (124,), {})
    assert key != generate_cache_key("get_user", ("123",), {})
    assert key != generate_cache_key("get_users", (123,), {})
    ns_key = generate_cache_key("get_user", (123,), {}, namespace="users")
    assert ns_key.startswith("cachekit:users:get_user:")
    # Keyword arguments by name are order-independent and distinct from positionals.
    assert generate_cache_key("f", (), {"a": 1, "b": 2}) == generate_cache_key(
        "f", (), {"b": 2, "a": 1}
    )
    assert generate_cache_key("f", (1,), {}) != generate_cache_key("f", (), {"a": 1})


@pytest.mark.parametrize("name", ["", "a:b", ":"])
def test_generate_cache_key_rejects_unusable_names(name):
    with pytest.raises(ConfigurationError) as err:
        generate_cache_key(name, (), {})
    assert err.value.code == "E040"


# --- namespaces ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "namespace",
    ["a:b", "with space", "users*", "*", "", "x" * 129, "tab\there", "new\nline", "{tag}", 7],
    ids=repr,
)
def test_invalid_namespaces_raise_e040(namespace):
    with pytest.raises(ConfigurationError) as err:
        validate_namespace(namespace)
    assert err.value.code == "E040"
    with pytest.raises(ConfigurationError):
        KeyBuilder(plain, namespace=namespace)
    with pytest.raises(ConfigurationError):
        generate_cache_key("get_user", (1,), {}, namespace=namespace)


@pytest.mark.parametrize("namespace", [None, "users", "a.b-c_1", "x" * 128, "V2"])
def test_valid_namespaces_are_accepted(namespace):
    assert validate_namespace(namespace) == namespace


def test_namespace_separates_otherwise_identical_keys():
    keys = {
        KeyBuilder(plain).backend_key((1,), {}),
        KeyBuilder(plain, namespace="a").backend_key((1,), {}),
        KeyBuilder(plain, namespace="b").backend_key((1,), {}),
    }
    assert len(keys) == 3


# --- binding to the signature -------------------------------------------------------------


def test_positional_keyword_and_default_spellings_share_a_key():
    builder = KeyBuilder(plain)
    spellings = [
        ((1,), {}),
        ((), {"x": 1}),
        ((1, 5), {}),
        ((1,), {"y": 5}),
        ((), {"y": 5, "x": 1}),
        ((), {"x": 1, "y": 5}),
    ]
    backend = {builder.backend_key(a, k) for a, k in spellings}
    via_module = {generate_cache_key(plain, a, k) for a, k in spellings}
    l1 = {builder.l1_key(a, k) for a, k in spellings}
    assert len(backend) == 1
    assert via_module == backend
    assert len(l1) == 1
    assert builder.backend_key((1, 6), {}) not in backend
    assert builder.backend_key((), {"x": 1, "y": 6}) not in backend


def test_the_key_binds_values_to_names_not_to_call_order():
    def f(a, b):
        return a, b

    assert generate_cache_key(f, (1, 2), {}) == generate_cache_key(f, (), {"b": 2, "a": 1})
    assert generate_cache_key(f, (1, 2), {}) != generate_cache_key(f, (2, 1), {})
    assert generate_cache_key(f, (1, 2), {}) != generate_cache_key(f, (), {"a": 2, "b": 1})


def test_star_args_and_star_kwargs_bind_canonically():
    def f(a, *args, b=2, **kw):
        return a

    def key(*args, **kwargs):
        return generate_cache_key(f, args, kwargs)

    assert key(1) == key(a=1) == key(1, b=2) == key(b=2, a=1)
    assert key(1, c=3, d=4) == key(1, d=4, c=3) == key(a=1, d=4, b=2, c=3)
    distinct = [
        key(1),
        key(1, 2),
        key(1, (2,)),
        key(1, 2, 3),
        key(1, b=3),
        key(1, c=2),
        key(1, c=3),
        key(1, 2, c=3),
    ]
    assert len(set(distinct)) == len(distinct)


def test_positional_only_and_keyword_only_parameters_bind_canonically():
    def pos(a, /, b=2):
        return a

    def kwo(a, *, b=2):
        return a

    assert (
        len(
            {generate_cache_key(pos, a, k) for a, k in [((1,), {}), ((1, 2), {}), ((1,), {"b": 2})]}
        )
        == 1
    )
    assert (
        len(
            {
                generate_cache_key(kwo, a, k)
                for a, k in [((1,), {}), ((), {"a": 1}), ((1,), {"b": 2}), ((), {"b": 2, "a": 1})]
            }
        )
        == 1
    )
    assert generate_cache_key(pos, (1,), {}) != generate_cache_key(pos, (1, 3), {})
    assert generate_cache_key(kwo, (1,), {}) != generate_cache_key(kwo, (1,), {"b": 3})


@pytest.mark.parametrize(
    ("args", "kwargs"),
    [((1, 2, 3), {}), ((), {}), ((1,), {"z": 1}), ((1,), {"x": 1})],
)
def test_arguments_that_do_not_fit_the_signature_raise_e020(args, kwargs):
    with pytest.raises(CacheKeyError) as err:
        generate_cache_key(plain, args, kwargs)
    assert err.value.code == "E020"
    assert "plain" in str(err.value)


def test_skip_first_leaves_self_out_of_the_key():
    class Repo:
        def get(self, uid, full=False):
            return uid

    builder = KeyBuilder(Repo.get, skip_first=True)
    one, two = Repo(), Repo()  # plain instances: not encodable, so never encoded
    assert builder.backend_key((one, 7), {}) == builder.backend_key((two, 7), {})
    assert builder.backend_key((one, 7), {}) == builder.backend_key((one,), {"uid": 7})
    assert builder.backend_key((one, 7), {}) == builder.backend_key((one, 7, False), {})
    assert builder.backend_key((one, 7), {}) != builder.backend_key((one, 8), {})
    assert builder.l1_key((one, 7), {}) == builder.l1_key((two,), {"uid": 7, "full": False})
    # Without skip_first the instance is an argument like any other (and not encodable).
    with pytest.raises(CacheKeyError):
        KeyBuilder(Repo.get).backend_key((one, 7), {})


def test_skip_first_with_an_inspected_signature():
    class Repo:
        def find(self, *names, limit=10):
            return names

    builder = KeyBuilder(Repo.find, skip_first=True)
    assert builder.backend_key((Repo(), "a", "b"), {}) == builder.backend_key(
        (Repo(), "a", "b"), {"limit": 10}
    )
    assert builder.backend_key((Repo(), "a"), {}) != builder.backend_key((Repo(), "a", "b"), {})


def test_key_func_replaces_binding():
    builder = KeyBuilder(plain, key_func=lambda x, y=5: x)
    assert builder.backend_key((1, 2), {}) == builder.backend_key((1, 3), {})
    assert builder.backend_key((1,), {}) != builder.backend_key((2,), {})
    l1, backend = builder.keys((1, 2), {})
    assert backend == builder.backend_key((1, 2), {})
    assert l1 == builder.l1_key((1, 2), {})


# --- richer argument types ----------------------------------------------------------------


class User:
    def __init__(self, uid: int, name: str = "") -> None:
        self.uid = uid
        self.name = name

    def __cache_key__(self) -> int:
        return self.uid


class Account:
    def __init__(self, uid: int) -> None:
        self.uid = uid

    def __cache_key__(self) -> int:
        return self.uid


class Color(enum.Enum):
    RED = 1
    GREEN = 2


class Shade(enum.Enum):
    RED = 1


class Level(enum.IntEnum):
    LOW = 1


class Point(NamedTuple):
    x: int
    y: int


def test_cache_key_dunder_opts_objects_in():
    assert enc(User(1, "ann")) == enc(User(1, "bob"))
    assert enc(User(1)) != enc(User(2))
    assert enc(User(1)) != enc(1)
    assert enc(User(1)) != enc(Account(1))  # the class is part of the key
    assert enc([User(1), {"u": User(2)}]) == enc([User(1), {"u": User(2)}])


def test_enums_are_keyed_by_class_and_value():
    assert enc(Color.RED) == enc(Color(1)) == enc(Color["RED"])
    assert enc(Color.RED) != enc(Color.GREEN)
    assert enc(Color.RED) != enc(1)
    assert enc(Color.RED) != enc(Shade.RED)
    assert enc(Level.LOW) != enc(1)
    assert Level.LOW == 1  # equal, but not typed-equal


def test_tuple_and_str_subclasses_are_not_their_base_type():
    class Name(str):
        pass

    assert enc(Point(1, 2)) == enc(Point(x=1, y=2))
    assert enc(Point(1, 2)) != enc((1, 2))
    assert enc(Point(1, 2)) != enc(Point(2, 1))
    assert enc(Name("a")) != enc("a")
    assert enc(Name("a")) == enc(Name("a"))


fixed_offsets = st.integers(-23 * 60 + 1, 23 * 60 - 1).map(
    lambda m: datetime.timezone(datetime.timedelta(minutes=m))
)


@settings(max_examples=200)
@given(st.datetimes(), fixed_offsets, fixed_offsets)
def test_aware_datetimes_for_the_same_instant_share_a_key(naive, tz_a, tz_b):
    a = naive.replace(tzinfo=tz_a)
    try:
        b = a.astimezone(tz_b)
    except OverflowError:
        assume(False)
    assert a == b
    assert enc(a) == enc(b)
    assert enc(a) != enc(naive)  # naive and aware never compare equal
    later = a + datetime.timedelta(microseconds=1) if naive.year < 9999 else a
    assert (enc(later) == enc(a)) == (later == a)


@settings(max_examples=200)
@given(st.datetimes(), st.datetimes(), fixed_offsets, fixed_offsets)
def test_aware_datetimes_share_a_key_iff_equal(x, y, tz_a, tz_b):
    a, b = x.replace(tzinfo=tz_a), y.replace(tzinfo=tz_b)
    assert (enc(a) == enc(b)) == (a == b)


def test_datetimes_at_the_edge_of_the_range_are_keyed():
    west = datetime.timezone(datetime.timedelta(hours=-5))
    east = datetime.timezone(datetime.timedelta(hours=5))
    assert enc(datetime.datetime.max.replace(tzinfo=west)) != enc(
        datetime.datetime.max.replace(tzinfo=east)
    )
    assert enc(datetime.datetime.min.replace(tzinfo=east))


@settings(max_examples=200)
@given(st.times(), st.times(), fixed_offsets, fixed_offsets)
def test_aware_times_share_a_key_iff_equal(x, y, tz_a, tz_b):
    a, b = x.replace(tzinfo=tz_a), y.replace(tzinfo=tz_b)
    assert (enc(a) == enc(b)) == (a == b)
    assert enc(x) != enc(a)


@settings(max_examples=200)
@given(st.times(), fixed_offsets, fixed_offsets)
def test_an_aware_time_shifted_to_another_offset_keys_like_its_equality(x, tz_a, tz_b):
    a = x.replace(tzinfo=tz_a)
    shifted = datetime.datetime.combine(datetime.date(2000, 1, 2), a).astimezone(tz_b)
    b = shifted.timetz()
    # Equal unless the shift wrapped past midnight (time equality does not wrap).
    assert (enc(a) == enc(b)) == (a == b)
    if shifted.date() == datetime.date(2000, 1, 2):
        assert enc(a) == enc(b)


def test_dates_times_and_durations_are_distinct_types():
    day = datetime.date(2024, 1, 2)
    moment = datetime.datetime(2024, 1, 2)
    assert len({enc(day), enc(moment), enc(datetime.time(0)), enc(datetime.timedelta(0))}) == 4
    assert enc(datetime.timedelta(days=1)) == enc(datetime.timedelta(hours=24))
    assert enc(moment) == enc(datetime.datetime(2024, 1, 2, fold=1))  # fold is ignored by ==


@pytest.mark.parametrize(
    ("left", "right"),
    [
        ("1", "1.0"),
        ("1.0", "1.00"),
        ("100", "1E+2"),
        ("-0", "0"),
        ("-0.00", "0E+5"),
        ("0.10", "0.1"),
        ("123.4500", "123.45"),
        ("Infinity", "inf"),
    ],
)
def test_equal_decimals_share_a_key(left, right):
    assert Decimal(left) == Decimal(right)
    assert enc(Decimal(left)) == enc(Decimal(right))


@pytest.mark.parametrize(
    ("left", "right"),
    [
        ("1.0000000000000000000000000001", "1.0000000000000000000000000002"),
        ("1", "-1"),
        ("1E+2", "1E+3"),
        ("0.1", "0.01"),
        ("Infinity", "-Infinity"),
    ],
)
def test_unequal_decimals_get_different_keys(left, right):
    assert Decimal(left) != Decimal(right)
    assert enc(Decimal(left)) != enc(Decimal(right))


def test_decimal_keys_do_not_depend_on_the_decimal_context():
    value = Decimal("3.14159265358979323846264338327950288")
    expected = enc(value)
    with localcontext() as ctx:
        ctx.prec = 3
        assert enc(value) == expected
    assert enc(Decimal("1E+999999999"))  # beyond the default context's Emax: no Overflow


@settings(max_examples=200)
@given(st.decimals(allow_nan=False), st.decimals(allow_nan=False))
def test_decimals_share_a_key_iff_equal(a, b):
    assert (enc(a) == enc(b)) == (a == b)
    assert enc(a) != enc(str(a))


def test_decimals_floats_and_ints_stay_apart():
    assert len({enc(Decimal(1)), enc(1), enc(1.0), enc("1")}) == 4


def test_uuids_paths_and_their_text_are_distinct():
    ident = uuid.UUID("12345678-1234-5678-1234-567812345678")
    assert enc(ident) == enc(uuid.UUID(str(ident)))
    assert enc(ident) != enc(uuid.uuid4())
    assert enc(ident) != enc(str(ident))
    assert enc(ident) != enc(ident.bytes)
    assert enc(PurePosixPath("a/b")) == enc(PurePosixPath("a//b/"))
    assert enc(PurePosixPath("a/b")) != enc(PurePosixPath("a/c"))
    assert enc(PurePosixPath("a/b")) != enc("a/b")
    assert enc(Path("a") / "b") == enc(Path("a/b"))


def test_unsupported_object_raises_e020_naming_path_and_type():
    class Widget:
        pass

    with pytest.raises(CacheKeyError) as err:
        KeyBuilder(plain).backend_key((1, [0, {"slot": Widget()}]), {})
    error = err.value
    assert isinstance(error, TypeError)
    assert error.code == "E020"
    text = str(error)
    assert text.startswith("[E020] ")
    assert "[1][1]['slot']" in text
    assert "Widget" in text
    assert "__cache_key__" in text  # the fix is named
    with pytest.raises(CacheKeyError):
        generate_cache_key(plain, (Widget(),), {})
    with pytest.raises(CacheKeyError):
        generate_cache_key("by_name", (), {"w": Widget()})
    with pytest.raises(CacheKeyError):
        canonical_bytes({Widget(): 1})
    with pytest.raises(CacheKeyError):
        canonical_bytes(object())
    with pytest.raises(CacheKeyError):
        canonical_bytes(lambda: None)


# --- digests ------------------------------------------------------------------------------


@settings(max_examples=100)
@given(
    st.binary(max_size=256), st.binary(min_size=1, max_size=64), st.binary(min_size=1, max_size=64)
)
def test_keyed_digests_differ_from_plain_and_from_other_secrets(data, secret, other):
    assume(secret != other)
    keyed = digest(data, secret)
    assert len(keyed) == len(digest(data)) == DIGEST_HEX_LENGTH
    assert keyed == digest(data, secret)
    assert keyed != digest(data)
    assert keyed != digest(data, other)


def test_key_builder_with_a_secret_changes_only_the_digest():
    plain_key = KeyBuilder(plain).backend_key((1,), {})
    secret_a = KeyBuilder(plain, secret=b"a" * 32).backend_key((1,), {})
    secret_b = KeyBuilder(plain, secret=b"b" * 32).backend_key((1,), {})
    prefix = plain_key.rsplit(":", 1)[0]
    assert secret_a.rsplit(":", 1)[0] == secret_b.rsplit(":", 1)[0] == prefix
    assert len({plain_key, secret_a, secret_b}) == 3
    assert secret_a == KeyBuilder(plain, secret=b"a" * 32).backend_key((), {"x": 1})


# --- the L1 key ---------------------------------------------------------------------------


def test_l1_key_keeps_one_true_and_one_point_zero_apart():
    builder = KeyBuilder(plain)
    store = {}
    for value in (1, True, 1.0, "1", b"1", None):
        store[builder.l1_key((value,), {})] = value
    assert len(store) == 6
    assert store[builder.l1_key((1,), {})] == 1 and type(store[builder.l1_key((1,), {})]) is int
    assert store[builder.l1_key((True,), {})] is True
    assert type(store[builder.l1_key((1.0,), {})]) is float


@settings(max_examples=200)
@given(values, values)
def test_l1_keys_agree_with_backend_keys(a, b):
    builder = KeyBuilder(plain)
    l1_a, backend_a = builder.keys((a,), {})
    l1_b, backend_b = builder.keys((b,), {})
    assert l1_a == builder.l1_key((a,), {})
    assert backend_a == builder.backend_key((a,), {})
    # Two calls share an L1 entry exactly when they share a backend entry.
    assert (l1_a == l1_b) == (backend_a == backend_b)
    if l1_a == l1_b:
        assert hash(l1_a) == hash(l1_b)


def test_l1_key_of_keyword_and_default_spellings_agree_with_keys():
    builder = KeyBuilder(plain)
    for args, kwargs in [((1,), {}), ((), {"x": 1}), ((1, 5), {}), (([1],), {"y": {"a": 1}})]:
        l1, backend = builder.keys(args, kwargs)
        assert l1 == builder.l1_key(args, kwargs)
        assert backend == builder.backend_key(args, kwargs)
