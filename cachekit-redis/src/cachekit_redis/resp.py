"""A small incremental RESP2 reader for the notification connection.

The coherence listener reads one kind of traffic: replies to the few commands it
sends (``CLIENT ID``, ``CLIENT TRACKING``, ``SUBSCRIBE``, ``PING``) and the
``message`` frames of the invalidation channel. Every write to a cached key in
every process sharing the Redis costs each listener one such frame, so reading
them is on a busy path. redis-py's general-purpose reader spends most of the
listener's time on them (its layered socket buffer, per-call timeouts, checks for
features a subscribed connection never uses); this reader parses whole frames out
of the bytes one ``recv`` returned.

It only understands RESP2 (the connection is opened with ``protocol=2``) and is
strict: a malformed frame, an unexpected type byte, a negative or oversized length
or nesting deeper than a notification ever has raises :class:`ProtocolError`, which
the listener treats like a lost connection (reconnect, flush the L1s). It never
allocates more than the bytes the server actually sent plus one frame's length
field, so a hostile or corrupted stream cannot make it reserve huge buffers.
"""

from __future__ import annotations

from typing import Any

__all__ = ["MAX_BULK", "ProtocolError", "ReplyError", "RespReader"]

#: Longest bulk string accepted (a key name; Redis allows 512 MB, nobody caches that).
MAX_BULK = 64 * 1024 * 1024
#: Most elements accepted in one array.
MAX_ARRAY = 1024 * 1024
#: Longest header, status or error line accepted.
MAX_LINE = 64 * 1024
#: Deepest nesting accepted (a notification is an array holding an array of keys).
MAX_DEPTH = 4

_CRLF = b"\r\n"
#: The start of a ``message`` frame on a 20-byte channel carrying one key, up to the
#: key's length ("__redis__:invalidate" is 20 bytes).
_ONE_KEY_MESSAGE = b"*3\r\n$7\r\nmessage\r\n$20\r\n"
_CHANNEL_START = len(_ONE_KEY_MESSAGE)
_CHANNEL_END = _CHANNEL_START + 20
_ONE_KEY_TAIL = b"\r\n*1\r\n$"
_ONE_KEY_LEN = _CHANNEL_END + len(_ONE_KEY_TAIL)


class ProtocolError(ValueError):
    """The bytes are not a RESP2 stream this reader accepts."""


class ReplyError(Exception):
    """An error reply (``-ERR ...``) from the server, returned as a value."""


class _Incomplete(Exception):
    """The buffer ends inside a frame; wait for more bytes."""


_INCOMPLETE = _Incomplete()


class RespReader:
    """Feed bytes with :meth:`feed`; take complete frames with :meth:`frames`."""

    __slots__ = ("_buf", "_pos")

    def __init__(self) -> None:
        self._buf = b""
        self._pos = 0

    def feed(self, data: bytes) -> None:
        if self._pos:
            self._buf = self._buf[self._pos :] + data
            self._pos = 0
        else:
            self._buf += data

    def buffered(self) -> int:
        """Bytes received but not yet parsed into a frame."""
        return len(self._buf) - self._pos

    def frames(self) -> list[Any]:
        """Every complete frame buffered so far, in order (may be empty)."""
        out: list[Any] = []
        buf = self._buf
        end = len(buf)
        pos = self._pos
        fast = _ONE_KEY_MESSAGE
        while pos < end:
            if buf.startswith(fast, pos) and buf.startswith(_ONE_KEY_TAIL, pos + _CHANNEL_END):
                # The common frame: one invalidated key on a channel named with 20
                # bytes. Same checks as the general path, without its calls.
                head = pos + _ONE_KEY_LEN
                nl = buf.find(_CRLF, head, head + 14)
                if nl > head:
                    n = self._length(buf[head:nl], MAX_BULK)
                    if n >= 0 and len(buf) >= nl + 4 + n:
                        stop = nl + 2 + n
                        if buf[stop : stop + 2] != _CRLF:
                            raise ProtocolError("RESP bulk string not followed by CRLF")
                        channel = buf[pos + _CHANNEL_START : pos + _CHANNEL_END]
                        out.append([b"message", channel, [buf[nl + 2 : stop]]])
                        pos = self._pos = stop + 2
                        continue
            try:
                value, pos = self._parse(buf, pos, 0)
            except _Incomplete:
                break
            out.append(value)
            self._pos = pos
        return out

    def _line(self, buf: bytes, pos: int) -> tuple[bytes, int]:
        nl = buf.find(_CRLF, pos)
        if nl < 0:
            if len(buf) - pos > MAX_LINE:
                raise ProtocolError("RESP line without CRLF")
            raise _INCOMPLETE
        return buf[pos:nl], nl + 2

    def _length(self, text: bytes, limit: int) -> int:
        if not text or len(text) > 12:
            raise ProtocolError(f"bad RESP length {text[:16]!r}")
        try:
            n = int(text)
        except ValueError:
            raise ProtocolError(f"bad RESP length {text[:16]!r}") from None
        if n < -1 or n > limit or (n == -1 and text != b"-1"):
            raise ProtocolError(f"RESP length {text[:16]!r} out of range")
        return n

    def _parse(self, buf: bytes, pos: int, depth: int) -> tuple[Any, int]:
        if pos >= len(buf):
            raise _INCOMPLETE
        kind = buf[pos]
        line, pos = self._line(buf, pos + 1)
        if kind == 0x24:  # $ bulk string
            n = self._length(line, MAX_BULK)
            if n == -1:
                return None, pos
            stop = pos + n
            if len(buf) < stop + 2:
                raise _INCOMPLETE
            if buf[stop : stop + 2] != _CRLF:
                raise ProtocolError("RESP bulk string not followed by CRLF")
            return buf[pos:stop], stop + 2
        if kind == 0x2A:  # * array
            n = self._length(line, MAX_ARRAY)
            if n == -1:
                return None, pos
            if depth >= MAX_DEPTH:
                raise ProtocolError("RESP arrays nested too deeply")
            items = []
            for _ in range(n):
                item, pos = self._parse(buf, pos, depth + 1)
                items.append(item)
            return items, pos
        if kind == 0x2B:  # + simple string
            return line, pos
        if kind == 0x3A:  # : integer
            try:
                return int(line), pos
            except ValueError:
                raise ProtocolError(f"bad RESP integer {line[:16]!r}") from None
        if kind == 0x2D:  # - error
            return ReplyError(line.decode("utf-8", "replace")), pos
        raise ProtocolError(f"unexpected RESP type byte {bytes([kind])!r}")
