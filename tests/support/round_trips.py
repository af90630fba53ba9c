"""Counting round trips to Redis: every packed command, pipeline or script redis-py sends."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

_PING = b"*1\r\n$4\r\nPING\r\n"


@contextmanager
def sends(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[bytes]]:
    """Every packed command redis-py sends meanwhile (sync and asyncio connections).

    One entry per write to a socket: a command, a whole pipeline, or a script call.
    A bare PING is left out: cachekit never sends one on a call's path, but the
    keepalive of a notification stream that an earlier test left running in this
    process can (the patch covers every connection of the process).
    """
    import redis.asyncio.connection as aconn
    import redis.connection as conn

    sent: list[bytes] = []

    def packed(command: Any) -> bytes:
        data = command if isinstance(command, (bytes, str)) else b"".join(command)
        return data.encode() if isinstance(data, str) else bytes(data)

    sync_send = conn.AbstractConnection.send_packed_command
    async_send = aconn.AbstractConnection.send_packed_command

    def record(command: Any) -> None:
        data = packed(command)
        if data != _PING:
            sent.append(data)

    def send(self: Any, command: Any, check_health: bool = True) -> None:
        record(command)
        sync_send(self, command, check_health)

    async def asend(self: Any, command: Any, check_health: bool = True) -> None:
        record(command)
        await async_send(self, command, check_health)

    with monkeypatch.context() as patch:
        patch.setattr(conn.AbstractConnection, "send_packed_command", send)
        patch.setattr(aconn.AbstractConnection, "send_packed_command", asend)
        yield sent
