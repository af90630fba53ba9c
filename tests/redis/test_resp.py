"""The listener's RESP2 reader: every frame shape, any chunking, and hostile input.

The reference is a small RESP2 encoder written here; the comparison with redis-py's own
reader runs over a socket pair, as the listener reads it.
"""

from __future__ import annotations

import socket
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from redis.connection import Connection

from cachekit_redis.resp import MAX_BULK, ProtocolError, ReplyError, RespReader

CHANNEL = b"__redis__:invalidate"


def encode(value: Any) -> bytes:
    if value is None:
        return b"$-1\r\n"
    if isinstance(value, bytes):
        return b"$%d\r\n%s\r\n" % (len(value), value)
    if isinstance(value, int):
        return b":%d\r\n" % value
    if isinstance(value, list):
        return b"*%d\r\n" % len(value) + b"".join(encode(v) for v in value)
    raise TypeError(value)


def notice(*keys: bytes) -> bytes:
    return encode([b"message", CHANNEL, list(keys)])


def read_all(data: bytes, cuts: list[int]) -> list[Any]:
    reader = RespReader()
    out: list[Any] = []
    last = 0
    for cut in [*sorted(set(cuts)), len(data)]:
        reader.feed(data[last:cut])
        out.extend(reader.frames())
        last = cut
    assert reader.buffered() == 0
    return out


scalars = st.none() | st.binary(max_size=80) | st.integers(-(2**62), 2**62)
# Nesting up to the reader's limit (an array of arrays of arrays of arrays).
frames = scalars
for _ in range(4):
    frames = scalars | st.lists(frames, max_size=4)


@settings(max_examples=300, deadline=None)
@given(values=st.lists(frames, min_size=1, max_size=6), data=st.data())
def test_any_frames_in_any_chunks_round_trip(values: list[Any], data: st.DataObject) -> None:
    stream = b"".join(encode(v) for v in values)
    cuts = data.draw(st.lists(st.integers(0, len(stream)), max_size=12))
    assert read_all(stream, cuts) == values


def test_one_key_notices_take_the_fast_path_and_agree_with_the_general_one() -> None:
    keys = [b"cachekit:m.f:" + b"a" * 32, b"", b"x" * 300, b"cachekit:gen:f:m.f"]
    stream = b"".join(notice(k) for k in keys)
    expected = [[b"message", CHANNEL, [k]] for k in keys]
    assert read_all(stream, []) == expected
    for cut in range(len(stream)):  # split at every byte
        assert read_all(stream, [cut]) == expected


def test_other_frames_a_subscribed_connection_sees() -> None:
    stream = (
        b":42\r\n"  # CLIENT ID
        b"+OK\r\n"  # CLIENT TRACKING
        + encode([b"subscribe", CHANNEL, 1])
        + encode([b"pong", b""])
        + encode([b"message", CHANNEL, None])  # FLUSHALL
        + notice(b"k1", b"k2")  # several keys in one frame
        + b"-ERR unknown command\r\n"
    )
    out = read_all(stream, [3, 17, 40])
    assert out[:6] == [
        42,
        b"OK",
        [b"subscribe", CHANNEL, 1],
        [b"pong", b""],
        [b"message", CHANNEL, None],
        [b"message", CHANNEL, [b"k1", b"k2"]],
    ]
    assert isinstance(out[6], ReplyError) and "unknown command" in str(out[6])


def test_agrees_with_redis_py_over_a_socket() -> None:
    a, b = socket.socketpair()
    try:
        conn = Connection(protocol=2, socket_timeout=1.0)
        conn._sock = b
        conn._parser.on_connect(conn)
        stream = notice(b"cachekit:m.f:abc") + encode([b"pong", b""]) + notice(b"a", b"b")
        a.sendall(stream)
        theirs = [conn.read_response() for _ in range(3)]
    finally:
        a.close()
        b.close()
    assert read_all(stream, [5]) == theirs


@pytest.mark.parametrize(
    "stream",
    [
        b"?3\r\n",  # unknown type byte
        b"$abc\r\nxyz\r\n",  # length not a number
        b"$-2\r\n",  # negative length
        b"$-01\r\n",  # a nil spelled oddly
        b"$3\r\nabcd\r\n",  # bulk longer than announced
        b"*2\r\n$1\r\na\r\n?\r\n",  # bad element
        b"$%d\r\n" % (MAX_BULK + 1),  # oversized bulk
        b"*99999999999999\r\n",  # oversized array
        b"*1\r\n" * 6 + b"$1\r\na\r\n",  # nested too deeply
        b":12x\r\n",  # bad integer
        b"+" + b"A" * 70_000,  # a line that never ends
        notice(b"abc").replace(b"$3\r\nabc\r\n", b"$3\r\nabcXY"),  # fast path, no CRLF
    ],
)
def test_malformed_streams_raise_protocol_error(stream: bytes) -> None:
    reader = RespReader()
    reader.feed(stream)
    with pytest.raises(ProtocolError):
        reader.frames()


@pytest.mark.parametrize("size", [0, 1, 5, 22, 44, 49, 60])
def test_truncated_frames_wait_for_more_bytes(size: int) -> None:
    frame = notice(b"cachekit:m.f:" + b"b" * 32)
    reader = RespReader()
    reader.feed(frame[:size])
    assert reader.frames() == []
    reader.feed(frame[size:])
    assert reader.frames() == [[b"message", CHANNEL, [b"cachekit:m.f:" + b"b" * 32]]]


def test_an_announced_huge_bulk_does_not_allocate_it() -> None:
    reader = RespReader()
    reader.feed(b"$%d\r\n" % MAX_BULK + b"x" * 10)
    assert reader.frames() == []  # waits; holds only the bytes received
    assert reader.buffered() < 100
