"""Backend operations written once: the command, the key it routes by, the reply mapping.

An operation is an :class:`Op`, built by a pure function of its arguments; it does no
I/O. The synchronous backend runs it with :func:`call`, the asyncio backend with
:func:`acall` (the only two places where a command is sent), each through its own
error translation and, on a Cluster, the breaker of the key's node.

Lua scripts run with ``EVALSHA``: the script body travels only when a server answers
``NOSCRIPT`` (the first use on each server, and after a restart or ``SCRIPT FLUSH``),
and the ``EVAL`` that follows loads it there for every later call, whatever the client.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any, NamedTuple

from cachekit.constants import TOMBSTONE_PREFIX
from cachekit.errors import BackendError

__all__ = [
    "GET_OR_LOCK",
    "GUARDED_SET",
    "RELEASE",
    "SET_AND_UNLOCK",
    "TOMBSTONE",
    "Op",
    "Script",
    "acall",
    "call",
    "check_same_slot",
    "get_or_lock",
    "set_and_unlock",
    "ttl_ms",
]


def ttl_ms(ttl: float | None) -> int | None:
    """Seconds to whole milliseconds for SET PX (at least 1 ms); None = no expiry."""
    if ttl is None:
        return None
    return max(1, int(ttl * 1000))


class Script:
    """A Lua script and its SHA-1, for ``EVALSHA``."""

    __slots__ = ("name", "sha", "text")

    def __init__(self, name: str, text: str) -> None:
        self.name = name
        self.text = text
        self.sha = hashlib.sha1(text.encode(), usedforsecurity=False).hexdigest()

    def __repr__(self) -> str:
        return f"Script({self.name!r}, sha={self.sha[:12]})"


class Op(NamedTuple):
    """One round trip: ``execute_command(*args)``, then ``reply(result)``."""

    #: In error messages ("GET", "EVALSHA (get_or_lock)").
    name: str
    #: The key that decides the Cluster node (and its breaker).
    key: str
    args: tuple[Any, ...]
    reply: Callable[[Any], Any]
    #: For EVALSHA: the script to send with EVAL when the server does not know it.
    script: Script | None = None


def _script_op(name: str, script: Script, keys: tuple[str, ...], *args: Any) -> Op:
    return Op(
        f"EVALSHA ({name})",
        keys[0],
        ("EVALSHA", script.sha, len(keys), *keys, *args),
        _identity,
        script,
    )


def _identity(reply: Any) -> Any:
    return reply


def _noscript(exc: Exception) -> bool:
    import redis.exceptions as rx

    return isinstance(exc, rx.NoScriptError)


def call(client: Any, op: Op) -> Any:
    """Send ``op`` on a synchronous redis-py client (one round trip; two on NOSCRIPT)."""
    try:
        return client.execute_command(*op.args)
    except Exception as exc:
        if op.script is None or not _noscript(exc):
            raise
    return client.execute_command("EVAL", op.script.text, *op.args[2:])


async def acall(client: Any, op: Op) -> Any:
    """:func:`call` on a redis.asyncio client."""
    try:
        return await client.execute_command(*op.args)
    except Exception as exc:
        if op.script is None or not _noscript(exc):
            raise
    return await client.execute_command("EVAL", op.script.text, *op.args[2:])


# -- scripts -----------------------------------------------------------------------------

#: ``unchanged(key, seen)``: the key holds what a miss read: nothing when ``seen`` is "",
#: else bytes whose SHA-1 hex is ``seen`` (tombstones included).
_UNCHANGED = """
local function unchanged(key, seen)
    local cur = redis.call('get', key)
    if cur then return redis.sha1hex(cur) == seen end
    return seen == ''
end
"""
#: ``store(key, value, px)``: SET, with PX unless px is '0'.
_STORE = """
local function store(key, value, px)
    if px == '0' then
        redis.call('set', key, value)
    else
        redis.call('set', key, value, 'PX', px)
    end
end
"""

#: Delete the lock only if it still holds our token (safe release).
RELEASE = Script(
    "unlock",
    """
if redis.call('get', KEYS[1]) == ARGV[1] then
    return redis.call('del', KEYS[1])
end
return 0
""",
)

#: SET only while the key holds what a miss read (ARGV[3], see _UNCHANGED).
#: 1 when written, 0 when the key changed meanwhile.
GUARDED_SET = Script(
    "guarded SET",
    _UNCHANGED
    + _STORE
    + """
if not unchanged(KEYS[1], ARGV[3]) then return 0 end
store(KEYS[1], ARGV[1], ARGV[2])
return 1
""",
)

#: Replace the key with a tombstone (ARGV[1]) for ARGV[2] ms; 1 if it held a value.
TOMBSTONE = Script(
    "tombstone",
    """
local cur = redis.call('get', KEYS[1])
redis.call('set', KEYS[1], ARGV[1], 'PX', ARGV[2])
if cur and string.sub(cur, 1, string.len(ARGV[3])) ~= ARGV[3] then return 1 end
return 0
""",
)

#: KEYS: the value's key, its lock. ARGV: token, lease ms, takeover window ms (-1: none,
#: see failover.takeover_window), TOMBSTONE_PREFIX. {value, 0} when the key holds a
#: value; else {nothing or the tombstone, 1 if the lock is now ours else 0}.
GET_OR_LOCK = Script(
    "get_or_lock",
    """
local v = redis.call('get', KEYS[1])
if v and string.sub(v, 1, string.len(ARGV[4])) ~= ARGV[4] then return {v, 0} end
if redis.call('set', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2]) then return {v, 1} end
local since = tonumber(ARGV[3])
if since >= 0 then
    local left = redis.call('pttl', KEYS[2])
    if left > 0 and tonumber(ARGV[2]) - left > since then
        redis.call('set', KEYS[2], ARGV[1], 'PX', ARGV[2])
        return {v, 1}
    end
end
return {v, 0}
""",
)

#: KEYS: the value's key, its lock. ARGV: value, PX ms ('0': none), '1' to guard with
#: ARGV[4] (see _UNCHANGED), token. Stores (1) or refuses (0), then releases the lock
#: if the token still holds it.
SET_AND_UNLOCK = Script(
    "set_and_unlock",
    _UNCHANGED
    + _STORE
    + """
local stored = 1
if ARGV[3] == '1' and not unchanged(KEYS[1], ARGV[4]) then stored = 0 end
if stored == 1 then store(KEYS[1], ARGV[1], ARGV[2]) end
if redis.call('get', KEYS[2]) == ARGV[5] then redis.call('del', KEYS[2]) end
return stored
""",
)


# -- the atomic miss (capability "atomic_miss") ------------------------------------------


def _got_or_locked(reply: Any) -> tuple[bytes | None, bool]:
    value, acquired = reply
    return value, bool(acquired)


def get_or_lock(
    key: str, lock_key: str, token: str, lease_ms: int, window: int, cluster: bool = False
) -> Op:
    """Read ``key`` or take ``lock_key`` (``window``: failover.takeover_window)."""
    if cluster:
        check_same_slot(key, lock_key)
    op = _script_op(
        "get_or_lock",
        GET_OR_LOCK,
        (key, lock_key),
        token,
        max(1, int(lease_ms)),
        window,
        TOMBSTONE_PREFIX,
    )
    return op._replace(reply=_got_or_locked)


def set_and_unlock(
    key: str,
    value: bytes,
    ttl: float | None,
    lock_key: str,
    token: str,
    seen: str | None,
    cluster: bool = False,
) -> Op:
    """Store ``value`` (guarded when ``seen`` is not None), then release ``lock_key``."""
    if cluster:
        check_same_slot(key, lock_key)
    guard = ("0", "") if seen is None else ("1", seen)
    op = _script_op(
        "set_and_unlock",
        SET_AND_UNLOCK,
        (key, lock_key),
        value,
        ttl_ms(ttl) or 0,
        *guard,
        token,
    )
    return op._replace(reply=bool)


def check_same_slot(key: str, lock_key: str) -> None:
    """On a Cluster both keys of a script must hash to one slot; say how when they do not.

    cachekit's engine builds ``lock_key`` as ``"cachekit-lock:{" + key + "}"`` (or
    ``"cachekit-lock:" + key`` when ``key`` has a ``{``), which always shares the slot.
    """
    from redis.crc import key_slot

    if key_slot(key.encode()) != key_slot(lock_key.encode()):
        raise BackendError(
            f"get_or_lock/set_and_unlock on Redis Cluster need the lock key in the value's "
            f"hash slot, but {lock_key!r} and {key!r} hash apart. Build the lock key as "
            '"cachekit-lock:{" + key + "}" (or "cachekit-lock:" + key when the key '
            "already holds a {hash tag})."
        )
