"""How large a compressed Arrow IPC stream becomes once decompressed, read before it is.

Arrow compresses each buffer of a record batch separately (lz4 frame or zstd) and
stores its uncompressed length in the buffer's first 8 bytes. pyarrow inflates every
buffer of a batch as it reads it, trusting those lengths: a stream of a few kilobytes
could claim gigabytes. This module walks the IPC messages (zero-copy), reads each
record or dictionary batch's buffer list from its flatbuffer header, and adds up the
lengths the buffers claim, so the reader can refuse a stream before inflating it.

Only what that needs is parsed, with bounds checks on every offset: a malformed header
raises :class:`ValueError` (the reader turns it into E005).

Flatbuffer layout used (Arrow ``Message.fbs`` / ``Schema.fbs``): ``Message`` table
fields 1 ``header_type`` (ubyte: 2 DictionaryBatch, 3 RecordBatch) and 2 ``header``;
``DictionaryBatch`` field 1 ``data`` (a RecordBatch); ``RecordBatch`` field 2
``buffers`` (a vector of 16-byte structs: int64 offset, int64 length) and field 3
``compression`` (present only when the body is compressed).
"""

from __future__ import annotations

import struct
from typing import Any

__all__ = ["declared_size"]

_DICTIONARY_BATCH = 2
_RECORD_BATCH = 3
_UNCOMPRESSED = -1  # a buffer Arrow left uncompressed (it did not shrink)


class _Table:
    """One flatbuffer table in ``buf`` at ``pos`` (every read bounds-checked)."""

    __slots__ = ("buf", "pos", "vsize", "vtable")

    def __init__(self, buf: bytes, pos: int) -> None:
        self.buf = buf
        self.pos = pos
        self.vtable = pos - _i32(buf, pos)
        self.vsize = _u16(buf, self.vtable)
        if self.vsize < 4 or self.vsize % 2:
            raise ValueError("bad flatbuffer vtable")

    def _field(self, index: int) -> int:
        """Absolute position of field ``index``, or 0 when it is absent."""
        slot = 4 + 2 * index
        if slot + 2 > self.vsize:
            return 0
        offset = _u16(self.buf, self.vtable + slot)
        return self.pos + offset if offset else 0

    def ubyte(self, index: int) -> int:
        at = self._field(index)
        return _u8(self.buf, at) if at else 0

    def table(self, index: int) -> _Table | None:
        at = self._field(index)
        return _Table(self.buf, at + _u32(self.buf, at)) if at else None

    def has(self, index: int) -> bool:
        return self._field(index) != 0

    def structs(self, index: int, size: int) -> tuple[int, int]:
        """(start, count) of a vector of ``size``-byte structs (count 0 when absent)."""
        at = self._field(index)
        if not at:
            return 0, 0
        start = at + _u32(self.buf, at)
        count = _u32(self.buf, start)
        if start + 4 + count * size > len(self.buf):
            raise ValueError("flatbuffer vector out of bounds")
        return start + 4, count


def _read(fmt: str, buf: bytes, pos: int) -> Any:
    if pos < 0 or pos + struct.calcsize(fmt) > len(buf):
        raise ValueError("flatbuffer offset out of bounds")
    return struct.unpack_from(fmt, buf, pos)[0]


def _u8(buf: bytes, pos: int) -> int:
    return int(_read("<B", buf, pos))


def _u16(buf: bytes, pos: int) -> int:
    return int(_read("<H", buf, pos))


def _u32(buf: bytes, pos: int) -> int:
    return int(_read("<I", buf, pos))


def _i32(buf: bytes, pos: int) -> int:
    return int(_read("<i", buf, pos))


def _batch(message_metadata: bytes) -> _Table | None:
    """The RecordBatch table of a record or dictionary batch message, else None."""
    message = _Table(message_metadata, _u32(message_metadata, 0))
    kind = message.ubyte(1)
    header = message.table(2) if kind in (_DICTIONARY_BATCH, _RECORD_BATCH) else None
    if header is not None and kind == _DICTIONARY_BATCH:
        header = header.table(1)
    return header


def declared_size(messages: Any) -> int:
    """Bytes the batches of ``messages`` (pyarrow Messages) will take once read."""
    total = 0
    for message in messages:
        batch = _batch(message.metadata.to_pybytes())
        if batch is None:
            continue
        body = message.body
        if not batch.has(3):  # not compressed: the buffers are slices of the body
            total += body.size if body is not None else 0
            continue
        start, count = batch.structs(2, 16)
        meta = batch.buf
        view = memoryview(body) if body is not None else memoryview(b"")
        for i in range(count):
            offset, length = struct.unpack_from("<qq", meta, start + 16 * i)
            if length == 0:
                continue
            if offset < 0 or length < 8 or offset + length > len(view):
                raise ValueError("compressed buffer outside the message body")
            claimed = struct.unpack_from("<q", view, offset)[0]
            total += length - 8 if claimed == _UNCOMPRESSED else claimed
            if claimed < _UNCOMPRESSED:
                raise ValueError("negative uncompressed length")
    return total
