"""Serializers: MessagePack round trips and its refusals, Pickle, and the defaults."""

from __future__ import annotations

import contextlib
import datetime
import math
import pickle
import threading
import uuid
from decimal import Decimal

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import cachekit
from cachekit import serializers
from cachekit.errors import ConfigurationError, DeserializationError, SerializationError
from cachekit.serializers import (
    DEFAULT_SERIALIZER,
    DefaultSerializer,
    MessagePackSerializer,
    PickleSerializer,
)

MSGPACK = MessagePackSerializer()

int64 = st.integers(-(2**63), 2**64 - 1)
msgpack_scalars = st.one_of(
    st.none(),
    st.booleans(),
    int64,
    st.floats(allow_nan=False),
    st.text(),
    st.binary(),
)
msgpack_values = st.recursive(
    msgpack_scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=5),
        st.lists(inner, max_size=5).map(tuple),
        st.dictionaries(
            st.one_of(st.text(max_size=10), int64, st.lists(int64, max_size=3).map(tuple)),
            inner,
            max_size=5,
        ),
    ),
    max_leaves=20,
)


def as_read_back(value):
    """What MessagePack gives back: tuples become lists, the rest is unchanged."""
    if isinstance(value, (list, tuple)):
        return [as_read_back(v) for v in value]
    if isinstance(value, dict):
        return {k: as_read_back(v) for k, v in value.items()}
    return value


def same_types(a, b) -> bool:
    if type(a) is not type(b):
        return False
    if isinstance(a, list):
        return all(same_types(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return all(same_types(a[k], b[k]) for k in a)
    return True


class Thing:
    def __init__(self, n: int) -> None:
        self.n = n

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Thing) and other.n == self.n

    __hash__ = None  # type: ignore[assignment]


# --- MessagePack --------------------------------------------------------------------------


@settings(max_examples=200)
@given(msgpack_values)
def test_msgpack_round_trips_basic_values(value):
    data = MSGPACK.serialize(value)
    assert isinstance(data, bytes)
    back = MSGPACK.deserialize(data)
    expected = as_read_back(value)
    assert back == expected
    assert same_types(back, expected)  # True stays bool, 1.0 stays float, bytes stay bytes


def test_tuples_come_back_as_lists():
    assert MSGPACK.deserialize(MSGPACK.serialize((1, (2, 3), {"t": (4,)}))) == [
        1,
        [2, 3],
        {"t": [4]},
    ]


def test_dicts_with_tuple_keys_round_trip_with_tuple_keys():
    value = {(1, (2, "a")): [1, (2,)], "plain": {(3,): None}, (): 0}
    back = MSGPACK.deserialize(MSGPACK.serialize(value))
    assert back == {(1, (2, "a")): [1, [2]], "plain": {(3,): None}, (): 0}


def test_special_floats_and_integer_bounds_round_trip():
    for value in (math.inf, -math.inf, -0.0, 5e-324, 2**63 - 1, -(2**63), 2**64 - 1):
        back = MSGPACK.deserialize(MSGPACK.serialize(value))
        assert back == value and type(back) is type(value)
    assert math.copysign(1.0, MSGPACK.deserialize(MSGPACK.serialize(-0.0))) == -1.0
    assert math.isnan(MSGPACK.deserialize(MSGPACK.serialize(math.nan)))


@pytest.mark.parametrize(
    ("value", "name"),
    [
        (datetime.datetime(2024, 1, 2, 3, 4, 5), "datetime"),
        (datetime.date(2024, 1, 2), "date"),
        ({1, 2}, "set"),
        (frozenset({1}), "frozenset"),
        (Decimal("1.5"), "Decimal"),
        (Thing(1), "Thing"),
        (uuid.UUID(int=7), "UUID"),
        (2**64, "int"),
        (-(2**63) - 1, "int"),
        (10**30, "int"),
        (1 + 2j, "complex"),
        ({"nested": [1, {"deep": datetime.time(1)}]}, "time"),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_unsupported_types_raise_e004_naming_the_type_and_the_fix(value, name):
    with pytest.raises(SerializationError) as err:
        MSGPACK.serialize(value)
    error = err.value
    assert isinstance(error, TypeError)
    assert error.code == "E004"
    text = str(error)
    assert text.startswith(f"[E004] Could not serialize object of type {name}")
    assert "PickleSerializer" in text


@pytest.mark.parametrize(
    "data",
    [
        b"\xc1",  # a never-used MessagePack byte
        b"\x92\x01",  # an array of two items with one present
        b"",
        b"\x01\x02",  # extra data after a complete value
        b"\xdb\xff\xff\xff\xff",  # a 4 GiB string announced, nothing present
        b"\xdd\x7f\xff\xff\xff",  # a huge array announced
        b"\x81\x81\x01\x02\x03",  # a map whose key is a map (unhashable dict)
    ],
)
def test_garbage_bytes_raise_e005(data):
    with pytest.raises(DeserializationError) as err:
        MSGPACK.deserialize(data)
    assert err.value.code == "E005"
    assert str(err.value).startswith("[E005] ")


@pytest.mark.parametrize(
    "data",
    [
        msgpack.packb(msgpack.ExtType(42, b"\x00" * 8)),
        msgpack.packb(msgpack.ExtType(0, b"")),  # ext 8 with no data
        msgpack.packb({"a": [1, msgpack.ExtType(127, b"x")]}),
        msgpack.packb(msgpack.Timestamp(1_700_000_000, 0)),  # 4-byte timestamp
        msgpack.packb(msgpack.Timestamp(1_700_000_000, 5)),  # 8-byte timestamp
        msgpack.packb(msgpack.Timestamp(2**40, 5)),  # 12-byte timestamp
        b"\xc7\x00\xff",  # a timestamp extension with no data
        msgpack.packb({(1, 2): msgpack.ExtType(1, b"x")}),  # the tuple-key retry path
    ],
    ids=["ext", "empty-ext", "nested-ext", "ts32", "ts64", "ts96", "empty-ts", "tuple-key"],
)
def test_msgpack_extension_types_are_never_returned(data):
    # MessagePackSerializer never writes an extension type (datetime raises E004), so
    # one read back was planted: E005, which the decorator turns into a miss.
    with pytest.raises(DeserializationError) as err:
        MSGPACK.deserialize(data)
    assert err.value.code == "E005"


@pytest.mark.parametrize("value", [2**64, -(2**63) - 1, 10**30, [1, 2**70], {"n": -(2**80)}])
def test_an_int_outside_64_bits_names_the_range_it_missed(value):
    with pytest.raises(SerializationError) as err:
        MSGPACK.serialize(value)
    text = str(err.value)
    assert "-9223372036854775808" in text and "18446744073709551615" in text
    assert "supports dict, list, tuple, str, int" not in text  # "int is supported": no
    assert "PickleSerializer" in text


@settings(max_examples=200)
@given(st.binary(max_size=64))
def test_arbitrary_bytes_either_decode_or_raise_e005(data):
    with contextlib.suppress(DeserializationError):
        MSGPACK.deserialize(data)


# --- Pickle -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        datetime.datetime(2024, 1, 2, tzinfo=datetime.timezone.utc),
        {1, 2, 3},
        frozenset("ab"),
        Decimal("1.10"),
        Thing(3),
        (1, [2, (3,)]),
        {"when": datetime.date(2024, 1, 1), "ids": {uuid.UUID(int=1)}},
        2**200,
        None,
    ],
    ids=lambda v: type(v).__name__,
)
def test_pickle_round_trips_arbitrary_objects(value):
    serializer = PickleSerializer()
    back = serializer.deserialize(serializer.serialize(value))
    assert back == value
    assert type(back) is type(value)


@pytest.mark.parametrize("protocol", [2, 3, 4, 5, pickle.HIGHEST_PROTOCOL])
def test_every_supported_pickle_protocol_works(protocol):
    serializer = PickleSerializer(protocol=protocol)
    assert serializer.protocol == protocol
    assert serializer.deserialize(serializer.serialize((1, "a"))) == (1, "a")


@pytest.mark.parametrize("protocol", [-1, 0, 1, pickle.HIGHEST_PROTOCOL + 1, 99])
def test_bad_pickle_protocol_is_a_configuration_error(protocol):
    with pytest.raises(ConfigurationError) as err:
        PickleSerializer(protocol=protocol)
    assert err.value.code == "E040"
    assert str(protocol) in str(err.value)


@pytest.mark.parametrize(
    ("value", "name"),
    [(lambda: 1, "function"), (threading.Lock(), "lock"), ((x for x in ()), "generator")],
    ids=["lambda", "lock", "generator"],
)
def test_unpicklable_values_raise_e004(value, name):
    with pytest.raises(SerializationError) as err:
        PickleSerializer().serialize(value)
    assert err.value.code == "E004"
    assert isinstance(err.value, TypeError)
    assert str(err.value).startswith(f"[E004] Could not serialize object of type {name}")


@pytest.mark.parametrize("data", [b"", b"not a pickle", b"\x80\x05", pickle.dumps([1, 2])[:-3]])
def test_pickle_garbage_raises_e005(data):
    with pytest.raises(DeserializationError) as err:
        PickleSerializer().deserialize(data)
    assert err.value.code == "E005"


def test_pickle_requires_authentication_and_msgpack_does_not():
    assert PickleSerializer.requires_authentication is True
    assert MessagePackSerializer.requires_authentication is False
    assert PickleSerializer().name == "pickle"
    assert MessagePackSerializer().name == "msgpack"


def test_serializers_compare_by_configuration():
    assert MessagePackSerializer() == MessagePackSerializer()
    assert hash(MessagePackSerializer()) == hash(MessagePackSerializer())
    assert PickleSerializer(4) == PickleSerializer(4)
    assert PickleSerializer(4) != PickleSerializer(5)
    assert PickleSerializer() != MessagePackSerializer()


# --- defaults -----------------------------------------------------------------------------


def test_default_serializer_is_messagepack():
    assert DefaultSerializer is MessagePackSerializer
    assert isinstance(DEFAULT_SERIALIZER, MessagePackSerializer)
    assert DEFAULT_SERIALIZER.name == "msgpack"


def test_default_serializer_prints_readably(capsys):
    print(DEFAULT_SERIALIZER)
    print(PickleSerializer(4))
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "MessagePackSerializer(name='msgpack')"
    assert out[1] == "PickleSerializer(protocol=4)"


def test_unknown_serializer_attribute_is_an_error():
    with pytest.raises((AttributeError, ImportError)):
        serializers.NoSuchSerializerAnywhere  # noqa: B018
    with pytest.raises(AttributeError):
        serializers.__no_such_dunder__  # noqa: B018


@pytest.mark.parametrize("name", ["сериализатор", "x" * 33, "x" * 300, "tab\tname"])
def test_a_serializer_name_that_cannot_go_into_an_envelope_is_refused_when_decorating(name):
    # Before: accepted, then a raw UnicodeEncodeError or ValueError from the envelope
    # at the first store in a backend.
    class Named:
        def serialize(self, obj):
            return b"x"

        def deserialize(self, data):
            return None

    Named.name = name
    with pytest.raises(ConfigurationError, match="1-32 printable ASCII characters"):
        cachekit.cache(serializer=Named(), backend="memory://bad-serializer-name")
