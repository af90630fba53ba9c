"""Entries planted in a real Redis by someone who can write to it (issue 11, items 13 and 14).

Whoever can write to the backend can put any bytes under a function's key. A planted
entry must cost a reader no more than the function's own limits allow, and must never
hand the caller something the function could not have returned: such an entry is a
miss (counted in ``cache_info().invalid``), the function runs, and its result
overwrites the entry.

Memory is measured with ``tracemalloc`` (zlib's and msgpack's buffers are allocated
through Python's allocators, so they are traced), not with timings.
"""

from __future__ import annotations

import datetime
import itertools
import os
import tracemalloc
import zlib
from collections.abc import Callable
from typing import Any

import msgpack
import pytest

from cachekit import cache
from cachekit.envelope import FLAG_COMPRESSED, MAGIC, VERSION

MiB = 1024 * 1024
LIMIT = 1 * MiB  # max_value_size of the victims
BOMB = 48 * MiB  # what the planted payload inflates to: far above LIMIT, below 512 MiB
_names = itertools.count()


def _victim(url: str, **options: Any) -> Callable[[int], Any]:
    """A fresh cached function (L1 off, so every call reads Redis) returning ``"own"``."""
    calls: list[int] = []

    def victim(x: int) -> Any:
        calls.append(x)
        return {"own": x}

    victim.__qualname__ = victim.__name__ = f"victim_{os.getpid()}_{next(_names)}"
    fn = cache(backend=url, l1=False, ttl=60, **options)(victim)
    fn.calls = calls  # type: ignore[attr-defined]
    return fn


def _msgpack_bin_bomb(size: int) -> bytes:
    """zlib of a MessagePack bin of ``size`` zero bytes, built without holding them."""
    packer = zlib.compressobj(9)
    parts = [packer.compress(b"\xc6" + size.to_bytes(4, "big"))]
    chunk = bytes(MiB)
    for start in range(0, size, len(chunk)):
        parts.append(packer.compress(chunk[: size - start]))
    parts.append(packer.flush())
    return b"".join(parts)


def _compressed_envelope(packed: bytes, serializer: str = "msgpack") -> bytes:
    """A well-formed (valid CRC) but unauthenticated envelope flagged as compressed."""
    head = MAGIC + bytes([VERSION, FLAG_COMPRESSED])
    body = bytes([len(serializer)]) + serializer.encode() + packed
    return head + zlib.crc32(body, zlib.crc32(head)).to_bytes(4, "big") + body


def _plain_envelope(payload: bytes, serializer: str = "msgpack") -> bytes:
    head = MAGIC + bytes([VERSION, 0])
    body = bytes([len(serializer)]) + serializer.encode() + payload
    return head + zlib.crc32(body, zlib.crc32(head)).to_bytes(4, "big") + body


def _call_and_trace(fn: Callable[[int], Any], x: int) -> tuple[Any, int]:
    """fn(x) and the peak of traced memory during the call."""
    tracemalloc.start()
    try:
        value = fn(x)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return value, peak


def _warm_up_on_a_refused_entry(fn: Any, raw: Any) -> None:
    """One call of ``fn`` that reads an unreadable entry (a compressed envelope whose
    payload is not valid zlib), recomputes and overwrites it."""
    raw.set(fn.cache_key(0), _compressed_envelope(b"not zlib"))
    assert fn(0) == {"own": 0}
    assert fn.cache_info().invalid == 1
    fn.calls.clear()


# --- item 13: compressed entries --------------------------------------------------------------


@pytest.fixture(scope="module")
def bomb() -> bytes:
    packed = _msgpack_bin_bomb(BOMB)
    assert len(packed) < 100 * 1024  # 48 MiB of zeros in well under 100 KiB
    return packed


def test_a_zlib_bomb_under_a_function_that_never_compresses_is_a_miss(redis_url, raw, bomb):
    fn = _victim(redis_url, max_value_size=LIMIT)
    # Warm up outside the trace (plan, connection, and what a first refused entry
    # imports and logs): what is measured is the read of the planted bomb, not a first
    # call's setup, which on Python 3.10 with the oldest libraries alone peaks near 1 MiB.
    _warm_up_on_a_refused_entry(fn, raw)
    raw.set(fn.cache_key(1), _compressed_envelope(bomb))

    value, peak = _call_and_trace(fn, 1)

    assert value == {"own": 1}  # the function ran: not 48 MiB of planted zeros
    assert fn.calls == [1]
    assert fn.cache_info().invalid == 2  # the warm-up's entry, then the bomb
    # Refused without inflating: the peak is the ~50 KB entry plus storing the result.
    # (msgpack < 1.1's packb allocates a 1 MiB buffer for any value, hence 2 x LIMIT;
    # the refusal itself, before any inflation, is checked at the envelope level in
    # tests/core/test_envelope.py.)
    assert peak < 2 * LIMIT, f"reading the planted entry peaked at {peak} bytes"
    assert raw.get(fn.cache_key(1))[3] & FLAG_COMPRESSED == 0  # overwritten
    assert fn(1) == {"own": 1} and fn.calls == [1]  # now a genuine L2 hit


def test_a_zlib_bomb_inflates_no_further_than_max_value_size(redis_url, raw, bomb):
    fn = _victim(redis_url, max_value_size=LIMIT, compress=True)
    _warm_up_on_a_refused_entry(fn, raw)  # as above
    raw.set(fn.cache_key(2), _compressed_envelope(bomb))

    value, peak = _call_and_trace(fn, 2)

    assert value == {"own": 2}
    assert fn.calls == [2]
    assert fn.cache_info().invalid == 2
    # The inflater stops one byte past the limit: memory stays within a few limits,
    # nowhere near the 48 MiB the entry claims.
    assert peak < 4 * LIMIT, f"reading the planted entry peaked at {peak} bytes"


def test_a_compressing_function_still_reads_its_own_compressed_entries(redis_url, raw):
    fn = _victim(redis_url, compress=True)
    big = {"own": 3, "text": "abc" * 10_000}
    key = fn.cache_key(3)
    packed = zlib.compress(msgpack.packb(big))
    raw.set(key, _compressed_envelope(packed))
    assert fn(3) == big  # a compressed entry is an ordinary hit for compress=True
    assert fn.calls == []


# --- item 14: MessagePack extension types -----------------------------------------------------


@pytest.mark.parametrize(
    "planted",
    [
        msgpack.ExtType(42, b"\x00" * 8),
        {"nested": [msgpack.ExtType(1, b"x")]},
        msgpack.Timestamp(1_700_000_000, 0),
        datetime.datetime(2024, 1, 1, tzinfo=datetime.timezone.utc),
    ],
    ids=["ext-42", "nested-ext", "timestamp", "datetime-as-timestamp"],
)
def test_a_planted_msgpack_extension_is_a_miss(redis_url, raw, planted):
    fn = _victim(redis_url)
    payload = msgpack.packb(planted, datetime=True)
    raw.set(fn.cache_key(4), _plain_envelope(payload))

    assert fn(4) == {"own": 4}
    assert fn.calls == [4]
    assert fn.cache_info().invalid == 1
