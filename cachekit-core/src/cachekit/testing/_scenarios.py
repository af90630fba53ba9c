"""The backend rules' steps, and the two drivers that run them on a backend.

A scenario is a generator that checks one rule: it yields steps -- ``_step("get", key)``
stands for the call ``backend.get(key)`` -- and is sent each reply, which it checks as it
goes. It does no I/O itself. :func:`_drive` performs the steps on a synchronous backend,
:func:`_adrive` awaits them on an async one, so each rule is written once and both
suites check exactly the same thing (httpx's auth flows work this way).

Besides the backend's methods, a step may be

* ``_step(_SLEEP, seconds)``: pause (``time.sleep`` / ``asyncio.sleep``);
* ``_step(_BLOCKING, function, *args)``: call a blocking function (in a worker thread
  on the async driver, so that the event loop keeps running);
* ``_step(_TOGETHER, *scenarios)``: run scenarios at once, each in its own thread
  started together (sync) or task (async).

A step that raises is raised inside the scenario, at its ``yield``: a scenario's
``try``/``finally`` cleans up as it would in plain code.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Generator
from typing import Any, NamedTuple

from cachekit.constants import TOMBSTONE_PREFIX
from cachekit.testing._backend_checks import (
    CAPABILITY_METHODS,
    _BackendSettings,
    _capability_method,
    _check_bool_reply,
    _check_got,
    _lease_outlived,
    _sha1,
)
from cachekit.testing._checks import _check, _fail, _run_threads, _short


class _Step(NamedTuple):
    """One call of a backend method (or one of the special steps below)."""

    method: str
    args: tuple[Any, ...]
    kwargs: dict[str, Any]


_Scenario = Generator[_Step, Any, None]

#: The special steps (not method names, so that no backend method can collide).
_SLEEP = "<sleep>"
_BLOCKING = "<blocking>"
_TOGETHER = "<together>"


def _step(method: str, /, *args: Any, **kwargs: Any) -> _Step:
    return _Step(method, args, kwargs)


#: Method name -> the capability that requires it. Each call of such a method checks it
#: first (present, callable, ``async def`` exactly on an async backend), so a failure
#: names the capability instead of raising AttributeError or TypeError.
_REQUIRED_BY = {name: cap for cap, names in CAPABILITY_METHODS.items() for name in names}


def _method(backend: Any, name: str, is_async: bool) -> Any:
    cap = _REQUIRED_BY.get(name)
    if cap is None:
        return getattr(backend, name)
    return _capability_method(backend, cap, name, is_async)


def _advance(steps: _Scenario, reply: Any, error: BaseException | None) -> _Step | None:
    """The scenario's next step, sent the reply to its last one (or that step's error,
    raised in the scenario at its ``yield``); None once the scenario has ended."""
    try:
        return steps.send(reply) if error is None else steps.throw(error)
    except StopIteration:
        return None


def _drive(backend: Any, steps: _Scenario) -> None:
    """Run a scenario on a synchronous backend."""
    reply: Any = None
    error: BaseException | None = None
    while (step := _advance(steps, reply, error)) is not None:
        reply, error = None, None
        try:
            reply = _perform(backend, step)
        except BaseException as exc:
            error = exc


def _perform(backend: Any, step: _Step) -> Any:
    method, args, kwargs = step
    if method == _SLEEP:
        time.sleep(*args)
        return None
    if method == _BLOCKING:
        return args[0](*args[1:])
    if method == _TOGETHER:
        _run_threads(len(args), lambda i: _drive(backend, args[i]))
        return None
    return _method(backend, method, is_async=False)(*args, **kwargs)


async def _adrive(backend: Any, steps: _Scenario) -> None:
    """Run a scenario on an async backend."""
    reply: Any = None
    error: BaseException | None = None
    while (step := _advance(steps, reply, error)) is not None:
        reply, error = None, None
        try:
            reply = await _aperform(backend, step)
        except BaseException as exc:
            error = exc


async def _aperform(backend: Any, step: _Step) -> Any:
    method, args, kwargs = step
    if method == _SLEEP:
        await asyncio.sleep(*args)
        return None
    if method == _BLOCKING:
        return await asyncio.to_thread(args[0], *args[1:])
    if method == _TOGETHER:
        await asyncio.gather(*(_adrive(backend, steps) for steps in args))
        return None
    return await _method(backend, method, is_async=True)(*args, **kwargs)


# --- the atomic miss ---------------------------------------------------------------------

#: Stands for "a tombstone" where a scenario expects what get_or_lock returned.
_A_TOMBSTONE: Any = object()


def _lock_key_for(key: str) -> str:
    """The lock key cachekit uses for ``key`` (the same hash slot on Redis Cluster)."""
    return "cachekit-lock:" + key if "{" in key else "cachekit-lock:{" + key + "}"


def _check_got_or_locked(reply: Any, value: Any, acquired: bool, what: str) -> None:
    shape = (
        isinstance(reply, (tuple, list))
        and len(reply) == 2
        and (reply[0] is None or isinstance(reply[0], bytes))
        and type(reply[1]) is bool
    )
    _check(
        shape,
        f"{what}: get_or_lock() returned {_short(reply)}; it must return a pair "
        "(the value as bytes, or None; whether the lock was taken, a bool)",
    )
    got, taken = reply
    if value is _A_TOMBSTONE:
        _check(
            isinstance(got, bytes) and got.startswith(TOMBSTONE_PREFIX),
            f"{what}: get_or_lock() returned {_short(got, 60)} as the key's content; "
            "expected the tombstone the key holds (a tombstone is no value, but the miss "
            "needs it to guard its store)",
        )
    else:
        found = _short(got, 60)
        _check(got == value, f"{what}: get_or_lock() returned {found}, expected {value!r}")
    _check(
        taken is acquired,
        f"{what}: get_or_lock() said the lock was {'' if taken else 'not '}taken; expected "
        f"{'' if acquired else 'not '}taken",
    )


def _atomic_miss_steps(ns: str, ttl: float, guarded_writes: bool) -> _Scenario:
    """Values, locks, tokens and guards of get_or_lock / set_and_unlock."""
    key = ns + "miss"
    lock = _lock_key_for(key)
    lease = int(ttl * 1000)
    reply = yield _step("get_or_lock", key, lock, "t1", lease)
    _check_got_or_locked(reply, None, True, "an absent key")
    reply = yield _step("get_or_lock", key, lock, "t2", lease)
    _check_got_or_locked(reply, None, False, "an absent key whose lock another caller holds")
    reply = yield _step("set_and_unlock", key, b"v1", ttl, lock, "t2", None)
    _check_bool_reply(reply, True, "set_and_unlock(seen=None) of an absent key")
    reply = yield _step("get_or_lock", key, lock, "t3", lease)
    _check_got_or_locked(reply, b"v1", False, "a key holding b'v1'")
    yield _step("delete", key)
    reply = yield _step("get_or_lock", key, lock, "t3", lease)
    _check_got_or_locked(
        reply, None, False, "set_and_unlock() with another caller's token released the lock"
    )
    reply = yield _step("set_and_unlock", key, b"v2", ttl, lock, "t1", "")
    _check_bool_reply(reply, True, 'set_and_unlock(seen="") by the holder of an absent key')
    _check_got((yield _step("get", key)), b"v2", "the value set_and_unlock() stored")
    yield _step("delete", key)
    reply = yield _step("get_or_lock", key, lock, "t4", lease)
    _check_got_or_locked(reply, None, True, "after its holder's set_and_unlock()")
    yield _step("set", key, b"another writer", ttl)
    reply = yield _step("set_and_unlock", key, b"v3", ttl, lock, "t4", "")
    _check_bool_reply(reply, False, 'set_and_unlock(seen="") after another writer stored')
    _check_got((yield _step("get", key)), b"another writer", "a refused set_and_unlock()")
    yield _step("delete", key)
    reply = yield _step("get_or_lock", key, lock, "t5", lease)
    _check_got_or_locked(reply, None, True, "after a refused set_and_unlock() (lock released)")
    if guarded_writes:
        yield _step("tombstone", key, ttl)
        reply = yield _step("get_or_lock", key, lock, "t5", lease)
        _check_got_or_locked(reply, _A_TOMBSTONE, False, "a tombstoned key whose lock is held")
        tomb = reply[0]
        reply = yield _step("set_and_unlock", key, b"v4", ttl, lock, "t5", _sha1(tomb))
        _check_bool_reply(reply, True, "set_and_unlock(seen=sha1(tombstone)) of a tombstone")
        yield _step("tombstone", key, ttl)
        reply = yield _step("get_or_lock", key, lock, "t6", lease)
        _check_got_or_locked(reply, _A_TOMBSTONE, True, "a tombstoned key (no value)")
        yield _step("tombstone", key, ttl)
        reply = yield _step("set_and_unlock", key, b"v5", ttl, lock, "t6", _sha1(reply[0]))
        _check_bool_reply(reply, False, "set_and_unlock() of a key tombstoned again meanwhile")
    else:
        yield _step("set_and_unlock", key, b"v4", ttl, lock, "t5", None)
    yield _step("delete", key)


def _atomic_lease_steps(ns: str, settings: _BackendSettings) -> _Scenario:
    """A lock taken by get_or_lock is free again after its lease."""
    key = ns + "lease"
    lock = _lock_key_for(key)
    reply = yield _step("get_or_lock", key, lock, "dead-holder", int(settings.short_ttl * 1000))
    _check_got_or_locked(reply, None, True, "an absent key")
    deadline = time.monotonic() + settings.expiry_deadline
    while True:
        reply = yield _step("get_or_lock", key, lock, "next", int(settings.long_ttl * 1000))
        if reply[1] is True:
            break
        if time.monotonic() > deadline:
            message = _lease_outlived(settings)
            _fail(message.replace("acquire_lock(key, token, lease)", "get_or_lock(...)"))
        yield _step(_SLEEP, settings.poll_interval)
    yield _step("set_and_unlock", key, b"v", settings.long_ttl, lock, "next", None)
    yield _step("delete", key)
