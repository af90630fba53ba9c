"""Counting round trips to Redis: every packed command, pipeline or script redis-py sends."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest


@contextmanager
def sends(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[bytes]]:
    """Every packed command redis-py sends meanwhile (sync and asyncio connections).

    One entry per write to a socket: a command, a whole pipeline, or a script call.
    """
    import redis.asyncio.connection as aconn
    import redis.connection as conn

    sent: list[bytes] = []

    def packed(command: Any) -> bytes:
        data = command if isinstance(command, (bytes, str)) else b"".join(command)
        return data.encode() if isinstance(data, str) else bytes(data)

    sync_send = conn.AbstractConnection.send_packed_command
    async_send = aconn.AbstractConnection.send_packed_command

    def send(self: Any, command: Any, check_health: bool = True) -> None:
        sent.append(packed(command))
        sync_send(self, command, check_health)

    async def asend(self: Any, command: Any, check_health: bool = True) -> None:
        sent.append(packed(command))
        await async_send(self, command, check_health)

    with monkeypatch.context() as patch:
        patch.setattr(conn.AbstractConnection, "send_packed_command", send)
        patch.setattr(aconn.AbstractConnection, "send_packed_command", asend)
        yield sent
