"""Backend operations written once: the command, the key it routes by, the reply mapping.

A single-key operation is an :class:`Op`, a multi-key one a :class:`Many`, each built by
a pure function of its arguments; none does I/O. The synchronous backend runs them with
:func:`call` (or a pipeline), the asyncio backend with :func:`acall`: the shells only
send, translate errors (cachekit_redis.errors) and, on a Cluster, go through the
breaker of the key's node (cachekit_redis.nodes).

Lua scripts run with ``EVALSHA``: the script body travels only when a server answers
``NOSCRIPT`` (the first use on each server, and after a restart or ``SCRIPT FLUSH``),
and the ``EVAL`` that follows loads it there for every later call, whatever the client.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

from cachekit.constants import MISSING, TOMBSTONE_PREFIX, Missing
from cachekit.errors import BackendError
from cachekit_redis.failover import LOCK_TAKEOVER_SCRIPT
from cachekit_redis.nodes import FAILED

__all__ = [
    "FAILED",
    "GET_OR_LOCK",
    "GUARDED_SET",
    "LOCK_TAKEOVER",
    "RELEASE",
    "SET_AND_UNLOCK",
    "TOMBSTONE",
    "Many",
    "Op",
    "Script",
    "acall",
    "acquire_lock",
    "call",
    "check_same_slot",
    "delete",
    "delete_many",
    "get",
    "get_many",
    "get_or_lock",
    "glob_escape",
    "release_lock",
    "set",
    "set_and_unlock",
    "set_guarded",
    "set_many",
    "tombstone",
    "ttl",
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


class Many(NamedTuple):
    """A command per key, sent in one round trip per server (a pipeline, or per node)."""

    name: str
    keys: list[str]
    #: ``commands[i]`` is about ``keys[i]``.
    commands: list[tuple[Any, ...]]
    #: The per-key replies (FAILED where a node did not answer) -> the result.
    reply: Callable[[list[Any]], Any]
    #: A Cluster node's failure leaves its keys FAILED (read as misses) while any node
    #: answered; otherwise any failure raises.
    partial: bool = False


_new = tuple.__new__  # about 150 ns faster than Op(...): GET and SET are on every miss


def _op(
    name: str, key: str, args: tuple[Any, ...], reply: Callable[[Any], Any], script: Any = None
) -> Op:
    op: Op = _new(Op, (name, key, args, reply, script))
    return op


def _script_op(
    name: str, script: Script, keys: tuple[str, ...], *args: Any, reply: Any = bool
) -> Op:
    args = ("EVALSHA", script.sha, len(keys), *keys, *args)
    return _op(f"EVALSHA ({name})", keys[0], args, reply, script)


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

#: SET NX PX, or take over a lock older than a master change (failover.py).
LOCK_TAKEOVER = Script("lock", LOCK_TAKEOVER_SCRIPT)

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


# -- single-key operations ----------------------------------------------------------------


def _value(reply: Any) -> bytes | Missing:
    return MISSING if reply is None else reply


def _nothing(reply: Any) -> None:
    return None


def get(key: str) -> Op:
    op: Op = _new(Op, ("GET", key, ("GET", key), _value, None))  # _op inlined: every miss
    return op


def set(key: str, value: bytes, ttl: float | None) -> Op:
    """``SET key value [PX ms]``.

    Sent with ``execute_command``: redis-py's ``set()`` spends about 250 bytecodes per
    call validating options cachekit never passes (5% of a miss).
    """
    args = ("SET", key, value) if ttl is None else ("SET", key, value, "PX", ttl_ms(ttl))
    op: Op = _new(Op, ("SET", key, args, _nothing, None))  # _op inlined: every miss
    return op


def delete(key: str) -> Op:
    return _op("DEL", key, ("DEL", key), bool)


def _seconds_left(ms: Any) -> float | Missing | None:
    if ms == -2:
        return MISSING
    if ms == -1:
        return None
    return float(ms) / 1000.0


def ttl(key: str) -> Op:
    return _op("PTTL", key, ("PTTL", key), _seconds_left)


def set_guarded(key: str, value: bytes, ttl: float | None, seen: str) -> Op:
    """SET only while the key holds what a miss read (see cachekit.protocols.Backend)."""
    return _script_op("guarded SET", GUARDED_SET, (key,), value, ttl_ms(ttl) or 0, seen)


def tombstone(key: str, ttl: float | None) -> Op:
    """Replace the key with a fresh tombstone; the reply says whether it held a value."""
    mark = TOMBSTONE_PREFIX + os.urandom(8).hex().encode()
    return _script_op("tombstone", TOMBSTONE, (key,), mark, ttl_ms(ttl) or 1, TOMBSTONE_PREFIX)


def acquire_lock(key: str, token: str, lease: float, window: int) -> Op:
    """Take the lock: ``SET NX PX``, or within ``window`` (failover.takeover_window) of a
    master change, the script that also takes over a lock older than the change."""
    lease_ms = ttl_ms(lease) or 1
    if window < 0:
        return _op("SET NX (lock)", key, ("SET", key, token, "NX", "PX", lease_ms), bool)
    return _script_op("lock", LOCK_TAKEOVER, (key,), token, lease_ms, window)


def release_lock(key: str, token: str) -> Op:
    return _script_op("unlock", RELEASE, (key,), token)


# -- multi-key operations -----------------------------------------------------------------


def _values(replies: list[Any]) -> list[bytes | Missing]:
    return [MISSING if v is None or v is FAILED else v for v in replies]


def _count(replies: list[Any]) -> int:
    return sum(int(v) for v in replies)


def get_many(keys: Sequence[str]) -> Many:
    keys = list(keys)
    return Many("MGET", keys, [("GET", k) for k in keys], _values, partial=True)


def set_many(items: Mapping[str, bytes], ttl: float | None) -> Many:
    px = ttl_ms(ttl)
    extra = () if px is None else ("PX", px)
    commands = [("SET", key, value, *extra) for key, value in items.items()]
    return Many("SET (pipeline)", list(items), commands, _nothing)


def delete_many(keys: Sequence[str]) -> Many:
    keys = list(keys)
    return Many("DEL", keys, [("DEL", k) for k in keys], _count)


def glob_escape(text: str) -> str:
    """Escape SCAN MATCH metacharacters so a prefix matches literally."""
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


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
    lease_ms = max(1, int(lease_ms))
    return _script_op(
        "get_or_lock",
        GET_OR_LOCK,
        (key, lock_key),
        token,
        lease_ms,
        window,
        TOMBSTONE_PREFIX,
        reply=_got_or_locked,
    )


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
    px = ttl_ms(ttl) or 0
    return _script_op("set_and_unlock", SET_AND_UNLOCK, (key, lock_key), value, px, *guard, token)


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
