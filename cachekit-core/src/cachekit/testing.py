"""Conformance suites for third-party backends, serializers and encryptors.

Each suite is a plain class of ``test_*`` methods. Subclass it in your plugin's
tests under a name pytest collects (``Test...``), say how to build the object
under test, and every behaviour cachekit relies on is checked::

    from cachekit.testing import BackendConformance

    from cachekit_mybackend import MyBackend


    class TestMyBackend(BackendConformance):
        def make_backend(self):
            return MyBackend("mybackend://localhost/0")

The suites:

* :class:`BackendConformance` -- :class:`cachekit.protocols.Backend`
  (``make_backend``; optional ``close_backend``);
* :class:`AsyncBackendConformance` -- :class:`cachekit.protocols.AsyncBackend`
  (``make_backend`` may be ``async def``; each test runs its own event loop
  with :func:`asyncio.run`, so no pytest-asyncio is needed);
* :class:`SerializerConformance` -- :class:`cachekit.protocols.Serializer`
  (``make_serializer``; declare what the serializer handles with
  ``sample_values`` / ``unsupported_values``);
* :class:`EncryptorConformance` -- :class:`cachekit.protocols.Encryptor`
  (``make_encryptor``; optional ``make_other_encryptor`` holding another key).

The module does not import pytest: failures are plain :class:`AssertionError`
with a message that names the broken rule, and tests that do not apply (a
capability the object does not declare) raise :class:`unittest.SkipTest`,
which pytest and unittest both report as skipped. The classes work with
``unittest.TestCase`` as a second base class too.

Backend tests use keys under a fresh random prefix (``key_prefix`` followed by
a random token) and remove them afterwards, so a suite can run against a shared
server. Expiry is checked by polling against a generous deadline, never by
timing assertions.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import os
import re
import threading
import time
import unittest
import uuid
from collections.abc import Awaitable, Callable, Generator, Iterator
from contextlib import contextmanager, suppress
from typing import Any, ClassVar, NoReturn, cast

from cachekit.constants import (
    CAP_ATOMIC_MISS,
    CAP_GUARDED_WRITES,
    CAP_INVALIDATION,
    CAP_LOCKING,
    CAP_NONBLOCKING,
    CAP_TRUSTED,
    CAP_TTL,
    MISSING,
    TOMBSTONE_PREFIX,
)
from cachekit.errors import CachekitError, DecryptionError, DeserializationError, SerializationError
from cachekit.protocols import AsyncBackend, Backend, Encryptor, Serializer

__all__ = [
    "CAPABILITY_METHODS",
    "KNOWN_CAPABILITIES",
    "AsyncBackendConformance",
    "BackendConformance",
    "EncryptorConformance",
    "SerializerConformance",
]

#: Every capability name a backend may declare in its ``capabilities`` frozenset.
KNOWN_CAPABILITIES = frozenset(
    {
        CAP_INVALIDATION,
        CAP_LOCKING,
        CAP_NONBLOCKING,
        CAP_TRUSTED,
        CAP_TTL,
        CAP_GUARDED_WRITES,
        CAP_ATOMIC_MISS,
    }
)

# "scheme://user:password@host" -- credentials in what should be a public identifier.
# A password masked as "***" (what cachekit.config.redact_url writes) is fine.
_USERINFO_WITH_PASSWORD = re.compile(r"://[^/@\s:]*:(?!\*\*\*@)[^/@\s]*@")


# --- small assertion helpers (no pytest at import time) ---------------------------------


def _fail(message: str) -> NoReturn:
    raise AssertionError(message)


def _check(condition: object, message: str) -> None:
    if not condition:
        _fail(message)


def _short(value: object, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else f"{text[: limit - 20]}...<{len(text)} chars>"


@contextmanager
def _raises(error: type[CachekitError], action: str) -> Iterator[None]:
    """Expect ``error`` (checked by class and by its stable code) from the block."""
    try:
        yield
    except error as exc:
        _check(
            getattr(exc, "code", None) == error.code,
            f"{action}: raised {type(exc).__name__} with code {getattr(exc, 'code', None)!r}, "
            f"expected {error.code}",
        )
        return
    except Exception as exc:
        _fail(
            f"{action}: raised {type(exc).__name__}: {exc}; expected "
            f"cachekit.errors.{error.__name__} ({error.code})"
        )
    _fail(f"{action}: returned normally; expected cachekit.errors.{error.__name__} ({error.code})")


def _skip(reason: str) -> NoReturn:
    raise unittest.SkipTest(reason)


def _run_threads(count: int, work: Callable[[int], None]) -> None:
    """Run ``work(i)`` in ``count`` threads started together; re-raise the first failure."""
    barrier = threading.Barrier(count)
    failures: list[BaseException] = []

    def target(i: int) -> None:
        try:
            barrier.wait()
            work(i)
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=target, args=(i,), daemon=True) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if failures:
        raise failures[0]


def _same(expected: Any, actual: Any) -> bool:
    """Equal *and* of the same types, recursively (``True`` is not ``1``, a tuple not a list)."""
    if type(expected) is not type(actual):
        return False
    if isinstance(expected, dict):
        return expected.keys() == actual.keys() and all(
            _same(v, actual[k]) for k, v in expected.items()
        )
    if isinstance(expected, (list, tuple)):
        return len(expected) == len(actual) and all(map(_same, expected, actual))
    return bool(expected == actual)


# --- shared configuration of the two backend suites --------------------------------------


class _BackendSettings:
    """The settings both backend suites share; override any of them in a subclass."""

    #: Keys written by the suite start with this, followed by a random token per test
    #: (so a suite can share a server with other data, and cleans up after itself).
    key_prefix: ClassVar[str] = "cachekit-conformance:"
    #: TTL, in seconds, of the entries (and the lease of the lock) that the expiry
    #: tests wait for. Raise it for a store whose expiry is coarser (whole seconds).
    short_ttl: ClassVar[float] = 0.1
    #: A TTL, in seconds, that never runs out during a test: entries that must stay
    #: readable, lock leases that must hold, and the ceiling ttl() may report.
    long_ttl: ClassVar[float] = 300.0
    #: How long, in seconds, the suite waits for something that must happen: an entry
    #: with ``short_ttl`` to disappear, a lock lease to run out, ``coherence().healthy``
    #: to become True, a change notification to arrive. A deadline, not a timing
    #: assertion: a slower backend passes, it only waits longer.
    expiry_deadline: ClassVar[float] = 10.0
    #: Pause, in seconds, between two checks while waiting (see ``expiry_deadline``).
    poll_interval: ClassVar[float] = 0.02
    #: Size, in bytes, of the value in ``test_large_value_round_trips``.
    large_value_size: ClassVar[int] = 1024 * 1024
    #: A secret the backend under test was configured with (a password in its URL,
    #: say). When set, the suite checks it appears in neither ``endpoint``,
    #: ``repr(backend)`` nor ``health()``.
    secret: ClassVar[str | None] = None
    #: Threads (sync suite) or tasks (async suite) writing at once in
    #: ``test_concurrent_writers_lose_nothing``, 25 keys each.
    concurrency: ClassVar[int] = 8

    def sample_values(self) -> list[bytes]:
        """Byte strings every backend must store and return unchanged."""
        return [
            b"",
            b"\x00",
            b"plain ascii",
            "ünïcødé ✓".encode(),
            bytes(range(256)),
            b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n",  # looks like a Redis command
            b"\xff" * 1000,
        ]

    def sample_keys(self) -> list[str]:
        """Key shapes cachekit produces (appended to the per-test prefix)."""
        digest = "0123456789abcdef" * 4
        return [
            "k",
            f"cachekit:users:app.models.load_user:{digest}",
            f"cachekit:tests.test_app.test_fn.<locals>.inner:{digest}",
            f"cachekit:café.überfunc:{digest}",
            "a:b",
            "a:b:",
            "a" * 200,
        ]

    def _namespace(self) -> str:
        return f"{self.key_prefix}{uuid.uuid4().hex[:16]}:"


#: The methods each capability requires (``async def`` on an async backend, except
#: ``coherence()``, which is a plain method on both). ``nonblocking`` and ``trusted``
#: are promises about behaviour, not methods.
CAPABILITY_METHODS: dict[str, tuple[str, ...]] = {
    CAP_TTL: ("ttl",),
    CAP_LOCKING: ("acquire_lock", "release_lock"),
    CAP_INVALIDATION: ("coherence",),
    CAP_GUARDED_WRITES: ("set_guarded", "tombstone"),
    CAP_ATOMIC_MISS: ("get_or_lock", "set_and_unlock"),
    CAP_NONBLOCKING: (),
    CAP_TRUSTED: (),
}

_SIGNATURES = {
    "ttl": "ttl(key) -> seconds left | None | MISSING",
    "acquire_lock": "acquire_lock(key, token, lease) -> bool",
    "release_lock": "release_lock(key, token) -> bool",
    "coherence": "coherence() -> Coherence",
    "set_guarded": "set_guarded(key, value, ttl, seen) -> bool",
    "tombstone": "tombstone(key, ttl) -> bool",
    "get_or_lock": "get_or_lock(key, lock_key, token, lease_ms) -> (bytes | None, bool)",
    "set_and_unlock": "set_and_unlock(key, value, ttl, lock_key, token, seen) -> bool",
}

#: Every method of the Backend / AsyncBackend protocols.
_BACKEND_METHODS = (
    "get",
    "set",
    "delete",
    "get_many",
    "set_many",
    "delete_many",
    "clear",
    "ping",
    "health",
    "close",
)


def _lacking(obj: Any, names: tuple[str, ...] | list[str]) -> list[str]:
    return [name for name in names if not callable(getattr(obj, name, None))]


def _check_protocol(obj: Any, names: tuple[str, ...], protocol: str, maker: str) -> None:
    """Name what is missing instead of "not an instance of the protocol"."""
    _check(obj is not None, f"{maker} returned None; it must return the object under test")
    missing = _lacking(obj, names)
    _check(
        not missing,
        f"{_short(obj)} does not implement cachekit.protocols.{protocol}: it has no "
        f"{', '.join(m + '()' for m in missing)}",
    )


def _sha1(data: bytes) -> str:
    import hashlib

    return hashlib.sha1(data, usedforsecurity=False).hexdigest()


def _check_guarded_replies(first: list[Any], stored: Any, after: list[Any]) -> None:
    """The replies of the guarded-writes scenario (see the suites' test of it)."""
    names = [
        'set_guarded(k, b"v1", ttl, "") of an absent key',
        'set_guarded(k, b"v2", ttl, "") of a key that now holds b"v1"',
        'set_guarded(k, b"v2", ttl, sha1(b"v1")) of a key that holds b"v1"',
        'tombstone(k, ttl) of a key that holds b"v2"',
    ]
    for reply, expected, what in zip(first, [True, False, True, True], names, strict=True):
        _check_bool_reply(reply, expected, what)
    _check(
        isinstance(stored, bytes) and stored.startswith(TOMBSTONE_PREFIX),
        f"after tombstone(k, ttl), get(k) returned {_short(stored, 60)}; expected bytes "
        f"starting with TOMBSTONE_PREFIX {TOMBSTONE_PREFIX!r}",
    )
    _check_bool_reply(
        after[0], False, 'set_guarded(k, ..., sha1(b"v2")) after tombstone(k) replaced b"v2"'
    )
    _check_bool_reply(after[1], False, "tombstone(k, ttl) of a key that holds a tombstone")


def _capability_method(backend: Any, cap: str, name: str, is_async: bool) -> Any:
    """The method a declared capability requires, or a failure saying what is wrong."""
    method = getattr(backend, name, None)
    fix = f"implement it, or remove {cap!r} from capabilities"
    if method is None:
        _fail(f"the backend declares the {cap!r} capability but has no {_SIGNATURES[name]}: {fix}")
    if not callable(method):
        _fail(
            f"the backend declares the {cap!r} capability, but its {name} is "
            f"{_short(method, 40)}, not a method {_SIGNATURES[name]}: {fix}"
        )
    coroutine = inspect.iscoroutinefunction(method)
    if name == "coherence":
        _check(
            not coroutine,
            "coherence() must be a plain method, also on an async backend: cachekit calls it "
            "synchronously, once per decorated function, and the Coherence object it returns "
            "is synchronous too",
        )
    elif is_async:
        _check(
            coroutine,
            f"{name}() of an async backend must be a coroutine function (async def), as its "
            f"{cap!r} capability requires: cachekit awaits it",
        )
    else:
        _check(
            not coroutine,
            f"{name}() is a coroutine function on a synchronous backend; cachekit calls it "
            "without awaiting",
        )
    return method


def _check_declared_methods(backend: Any, is_async: bool) -> None:
    for cap in sorted(_check_capabilities(backend)):
        for name in CAPABILITY_METHODS.get(cap, ()):
            _capability_method(backend, cap, name, is_async)


def _check_bool_reply(reply: Any, expected: bool, what: str) -> None:
    if reply is expected:
        return
    if type(reply) is not bool:
        _fail(f"{what} returned {_short(reply)}; it must return True or False (a bool)")
    _fail(f"{what} returned {reply}, expected {expected}")


# --- the atomic miss: one scenario, driven by the sync and the async suite ---------------

#: A step of an atomic-miss scenario: (method name, args) -> its reply is sent back;
#: ("sleep", (seconds,)) pauses.
_Step = tuple[str, tuple[Any, ...]]
_Scenario = Generator[_Step, Any, None]
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
    reply = yield ("get_or_lock", (key, lock, "t1", lease))
    _check_got_or_locked(reply, None, True, "an absent key")
    reply = yield ("get_or_lock", (key, lock, "t2", lease))
    _check_got_or_locked(reply, None, False, "an absent key whose lock another caller holds")
    reply = yield ("set_and_unlock", (key, b"v1", ttl, lock, "t2", None))
    _check_bool_reply(reply, True, "set_and_unlock(seen=None) of an absent key")
    reply = yield ("get_or_lock", (key, lock, "t3", lease))
    _check_got_or_locked(reply, b"v1", False, "a key holding b'v1'")
    yield ("delete", (key,))
    reply = yield ("get_or_lock", (key, lock, "t3", lease))
    _check_got_or_locked(
        reply, None, False, "set_and_unlock() with another caller's token released the lock"
    )
    reply = yield ("set_and_unlock", (key, b"v2", ttl, lock, "t1", ""))
    _check_bool_reply(reply, True, 'set_and_unlock(seen="") by the holder of an absent key')
    _check_got((yield ("get", (key,))), b"v2", "the value set_and_unlock() stored")
    yield ("delete", (key,))
    reply = yield ("get_or_lock", (key, lock, "t4", lease))
    _check_got_or_locked(reply, None, True, "after its holder's set_and_unlock()")
    yield ("set", (key, b"another writer", ttl))
    reply = yield ("set_and_unlock", (key, b"v3", ttl, lock, "t4", ""))
    _check_bool_reply(reply, False, 'set_and_unlock(seen="") after another writer stored')
    _check_got((yield ("get", (key,))), b"another writer", "a refused set_and_unlock()")
    yield ("delete", (key,))
    reply = yield ("get_or_lock", (key, lock, "t5", lease))
    _check_got_or_locked(reply, None, True, "after a refused set_and_unlock() (lock released)")
    if guarded_writes:
        yield ("tombstone", (key, ttl))
        reply = yield ("get_or_lock", (key, lock, "t5", lease))
        _check_got_or_locked(reply, _A_TOMBSTONE, False, "a tombstoned key whose lock is held")
        tomb = reply[0]
        reply = yield ("set_and_unlock", (key, b"v4", ttl, lock, "t5", _sha1(tomb)))
        _check_bool_reply(reply, True, "set_and_unlock(seen=sha1(tombstone)) of a tombstone")
        yield ("tombstone", (key, ttl))
        reply = yield ("get_or_lock", (key, lock, "t6", lease))
        _check_got_or_locked(reply, _A_TOMBSTONE, True, "a tombstoned key (no value)")
        yield ("tombstone", (key, ttl))
        reply = yield ("set_and_unlock", (key, b"v5", ttl, lock, "t6", _sha1(reply[0])))
        _check_bool_reply(reply, False, "set_and_unlock() of a key tombstoned again meanwhile")
    else:
        yield ("set_and_unlock", (key, b"v4", ttl, lock, "t5", None))
    yield ("delete", (key,))


def _atomic_lease_steps(ns: str, settings: _BackendSettings) -> _Scenario:
    """A lock taken by get_or_lock is free again after its lease."""
    key = ns + "lease"
    lock = _lock_key_for(key)
    reply = yield ("get_or_lock", (key, lock, "dead-holder", int(settings.short_ttl * 1000)))
    _check_got_or_locked(reply, None, True, "an absent key")
    deadline = time.monotonic() + settings.expiry_deadline
    while True:
        reply = yield ("get_or_lock", (key, lock, "next", int(settings.long_ttl * 1000)))
        if reply[1] is True:
            break
        if time.monotonic() > deadline:
            message = _lease_outlived(settings)
            _fail(message.replace("acquire_lock(key, token, lease)", "get_or_lock(...)"))
        yield ("sleep", (settings.poll_interval,))
    yield ("set_and_unlock", (key, b"v", settings.long_ttl, lock, "next", None))
    yield ("delete", (key,))


def _atomic_method(backend: Any, name: str, is_async: bool) -> Any:
    if name in CAPABILITY_METHODS[CAP_ATOMIC_MISS]:
        return _capability_method(backend, CAP_ATOMIC_MISS, name, is_async)
    return getattr(backend, name)


def _drive(backend: Backend, steps: _Scenario) -> None:
    """Run a scenario on a synchronous backend."""
    reply: Any = None
    while True:
        try:
            name, args = steps.send(reply)
        except StopIteration:
            return
        if name == "sleep":
            time.sleep(*args)
            reply = None
        else:
            reply = _atomic_method(backend, name, False)(*args)


async def _adrive(backend: AsyncBackend, steps: _Scenario) -> None:
    """Run a scenario on an async backend."""
    reply: Any = None
    while True:
        try:
            name, args = steps.send(reply)
        except StopIteration:
            return
        if name == "sleep":
            await asyncio.sleep(*args)
            reply = None
        else:
            reply = await _atomic_method(backend, name, True)(*args)


class _Notices:
    """What a coherence listener received, and what was wrong with how it was called."""

    def __init__(self) -> None:
        self.seen: list[str] = []
        self.resets = 0
        self.problems: list[str] = []

    def __call__(self, keys: Any) -> None:
        if keys is None:
            self.resets += 1
            return
        if isinstance(keys, (str, bytes)):
            self.problems.append(
                f"callback got one {type(keys).__name__} ({_short(keys, 40)}) instead of a "
                "sequence of keys"
            )
            keys = [keys]
        try:
            self.seen.extend(k.decode() if isinstance(k, bytes) else str(k) for k in keys)
        except TypeError:
            self.problems.append(f"callback got {_short(keys, 40)}, not a sequence of keys")

    def wait(self, key: str, end: float, poll: float, what: str) -> None:
        while key not in self.seen or self.problems:
            if self.problems:
                _fail(
                    f"listen(callback) called callback the wrong way: {'; '.join(self.problems)}. "
                    "It takes a list of keys (str or bytes), or None when notices may have been "
                    "lost"
                )
            if time.monotonic() > end:
                seen = ", ".join(map(repr, self.seen[-5:])) or "none"
                _fail(
                    f"no change notification for {what} of {key!r} before the deadline: "
                    "listen(callback) must call callback([key, ...]) for every write and "
                    "delete of a key under 'cachekit:', by any process, this one included "
                    "(cachekit discounts its own writes itself). "
                    f"Keys received: {seen}; callback(None) calls: {self.resets}"
                )
            time.sleep(poll)


def _check_coherence(
    backend: Any, deadline: float, poll: float
) -> tuple[str, str, _Notices, float]:
    """Generations and notifications of a backend declaring CAP_INVALIDATION."""
    coherence_of = _capability_method(backend, CAP_INVALIDATION, "coherence", False)
    coherence = coherence_of()
    _check(
        coherence is not None,
        "coherence() returned None although the backend declares 'invalidation'; cachekit "
        "then runs without cross-process invalidation. Return the endpoint's Coherence, or "
        "remove 'invalidation' from capabilities",
    )
    missing = _lacking(coherence, ["generations", "bump", "listen"])
    if not hasattr(coherence, "healthy"):
        missing.append("healthy")
    _check(
        not missing,
        f"coherence() returned {_short(coherence, 60)}, which lacks "
        f"{', '.join(missing)} of cachekit.protocols.Coherence",
    )
    _check(
        coherence_of() is coherence,
        "coherence() returned a new object on its second call; return one shared object per "
        "endpoint: cachekit calls coherence() for every decorated function and subscribes "
        "each distinct object with listen(), so a new one per call means a listener per "
        "function",
    )
    token = uuid.uuid4().hex[:16]
    counter = f"cachekit:gen:conformance-{token}"

    def read() -> int:
        got = coherence.generations([counter])
        _check(
            isinstance(got, (list, tuple)) and len(got) == 1,
            f"generations([one key]) returned {_short(got)}; expected a list of one int",
        )
        value = got[0]
        _check(
            type(value) is int,
            f"generations() returned {_short(value)} ({type(value).__name__}) for a counter, "
            "not an int",
        )
        return int(value)

    start = read()
    again = read()
    _check(again == start, f"an unchanged counter moved from {start} to {again}")
    first, second = coherence.bump(counter), coherence.bump(counter)
    _check(
        first == start + 1,
        f"bump() returned {_short(first)} for a counter at {start}; expected {start + 1} "
        "(the new value)",
    )
    _check(second == start + 2, f"the second bump() returned {_short(second)}, not {start + 2}")
    after = read()
    _check(after == start + 2, f"generations() read {after} after two bumps from {start}")
    notices = _Notices()
    try:
        coherence.listen(notices)
    except Exception as exc:
        _fail(
            f"listen() raised {type(exc).__name__}: {exc}. It must not raise: cachekit calls it "
            "during the first call of a cached function, so the error would reach that caller "
            "and notifications would never start. Keep the callback, connect in the "
            "background, and report trouble with healthy = False and callback(None)"
        )
    end = time.monotonic() + deadline
    while not coherence.healthy:
        if time.monotonic() > end:
            _fail(
                f"coherence().healthy stayed False for {deadline}s after listen(): set it True "
                "once notifications flow (while it is False, cachekit keeps L1 entries at "
                "most 1 s)"
            )
        time.sleep(poll)
    return counter, f"cachekit:conformance-{token}:k", notices, end


def _check_endpoint(backend: Any, secret: str | None) -> None:
    endpoint = getattr(backend, "endpoint", None)
    _check(
        isinstance(endpoint, str) and endpoint,
        f"backend.endpoint must be a non-empty str, got {endpoint!r}",
    )
    assert isinstance(endpoint, str)
    _check(
        not _USERINFO_WITH_PASSWORD.search(endpoint),
        f"backend.endpoint {endpoint!r} contains credentials; redact the password",
    )
    if secret:
        _check(secret not in endpoint, "backend.endpoint contains the configured secret")
        _check(secret not in repr(backend), "repr(backend) contains the configured secret")


def _check_capabilities(backend: Any) -> frozenset[str]:
    caps = getattr(backend, "capabilities", None)
    if caps is None:
        return frozenset()
    _check(
        isinstance(caps, frozenset),
        f"backend.capabilities must be a frozenset, got {type(caps).__name__}",
    )
    unknown = set(caps) - KNOWN_CAPABILITIES
    _check(
        not unknown,
        f"backend.capabilities has unknown names {sorted(unknown)}; "
        f"known: {sorted(KNOWN_CAPABILITIES)}",
    )
    return frozenset(caps)


def _check_health(report: Any, secret: str | None) -> None:
    _check(isinstance(report, dict), f"health() must return a dict, got {type(report).__name__}")
    _check(
        all(isinstance(k, str) for k in report),
        f"health() keys must be str, got {sorted(map(repr, report))}",
    )
    try:
        text = json.dumps(report)
    except (TypeError, ValueError) as exc:
        _fail(f"health() must be JSON-serializable (it feeds HTTP health endpoints): {exc}")
    if secret:
        _check(secret not in text, "health() contains the configured secret")


def _check_got(got: Any, expected: bytes, what: str) -> None:
    if got is MISSING:
        _fail(f"{what}: got MISSING, expected {_short(expected)}")
    if got is None:
        _fail(
            f"{what}: got None, expected {_short(expected)}; the value was not found (and a "
            "miss must be cachekit.protocols.MISSING, not None)"
        )
    _check(isinstance(got, bytes), f"{what}: got {type(got).__name__}, expected bytes")
    _check(got == expected, f"{what}: got {_short(got)}, expected {_short(expected)}")


def _check_missing(got: Any, what: str) -> None:
    if got is None:
        _fail(
            f"{what}: got None; a miss must be cachekit.protocols.MISSING, never None "
            "(None is a value cachekit can cache)"
        )
    _check(got is MISSING, f"{what}: got {_short(got)}, expected MISSING")


def _still_there(got: Any, settings: _BackendSettings, what: str, timed_out: bool) -> bool:
    """One poll of an entry that should expire: False once it reads as MISSING."""
    if got is MISSING:
        return False
    if got is None:
        _fail(
            f"{what}: get() returned None for the entry once it expired; a miss must be "
            "cachekit.protocols.MISSING, never None (None is a value cachekit can cache)"
        )
    if timed_out:
        _fail(
            f"{what}: the entry was still readable {settings.expiry_deadline}s after "
            f"being set with ttl={settings.short_ttl} (got {_short(got, 40)}). ttl is in "
            "seconds, a float that may be below 1: keep it with the entry and read the "
            "entry as MISSING once it has passed"
        )
    return True


#: A prefix made of characters that SQL LIKE (``_``, ``%``) and glob patterns (``*``,
#: ``?``, ``[...]``) treat as wildcards. cachekit's prefixes contain ``_`` whenever a
#: module or function name does.
_PATTERN_PREFIX = "a_b%c*d?e[f]:"


def _literal_prefix_keys(ns: str) -> tuple[str, list[str]]:
    """A key under ``_PATTERN_PREFIX``, and keys that only match it as a pattern."""
    decoys = [
        "aXb%c*d?e[f]:1",  # _ as "any character"
        "a_bXYc*d?e[f]:1",  # % as "any run"
        "a_b%cXYd?e[f]:1",  # * as "any run"
        "a_b%c*dXe[f]:1",  # ? as "any character"
        "a_b%c*d?ef:1",  # [f] as "one of f"
    ]
    return ns + _PATTERN_PREFIX + "1", [ns + key for key in decoys]


def _check_literal_clear(removed: Any, wrongly_removed: list[str]) -> None:
    _check(
        not wrongly_removed,
        f"clear({_PATTERN_PREFIX!r}) also removed {wrongly_removed}, which only match the "
        "prefix as a pattern: take the prefix literally (escape _ and % in SQL LIKE, or "
        "compare with substr(); escape * ? [ in glob patterns)",
    )
    _check(removed == 1, f"clear() of a prefix holding 1 key returned {removed!r}")


def _check_ttl_replies(absent: Any, forever: Any, timed: Any, long_ttl: float) -> None:
    """ttl() of an absent key, of a ttl=None entry and of one set with ``long_ttl``."""
    if absent is None:
        _fail(
            "ttl() of an absent key returned None, which means 'present, no expiry'; an "
            "absent key must be cachekit.protocols.MISSING"
        )
    _check_missing(absent, "ttl() of an absent key")
    _check(
        forever is None,
        f"ttl() of an entry set with ttl=None returned {_short(forever)}; it must be None "
        "(no expiry)",
    )
    hint = ""
    if isinstance(timed, (int, float)) and timed > long_ttl:
        hint = " (milliseconds? ttl() returns seconds)"
    _check(
        isinstance(timed, (int, float)) and not isinstance(timed, bool) and 0 < timed <= long_ttl,
        f"ttl() of an entry set with ttl={long_ttl} returned {_short(timed)}; expected the "
        f"seconds left, above 0 and at most {long_ttl}{hint}",
    )


def _lease_outlived(settings: _BackendSettings) -> str:
    return (
        f"a lock taken with lease={settings.short_ttl} was still held "
        f"{settings.expiry_deadline}s later; acquire_lock(key, token, lease) must let the "
        "lock go after lease seconds, so that a crashed holder does not block others for good"
    )


def _second_close_failed(exc: Exception) -> NoReturn:
    _fail(
        f"a second close() raised {type(exc).__name__}: {exc}; close() must be safe to "
        "call twice (an application and a test fixture may both close a backend)"
    )


# --- BackendConformance ---------------------------------------------------------------


class BackendConformance(_BackendSettings):
    """Checks a synchronous :class:`~cachekit.protocols.Backend`.

    Implement :meth:`make_backend`; override :meth:`close_backend` when closing
    takes more than ``backend.close()``. Example::

        from cachekit.backends.memory import MemoryBackend
        from cachekit.testing import BackendConformance

        class TestMemoryBackend(BackendConformance):
            def make_backend(self):
                return MemoryBackend()

    Class attributes tune the suite (each is documented where it is defined, and
    in docs/plugins.md): ``key_prefix``, ``short_ttl``, ``long_ttl``,
    ``expiry_deadline``, ``poll_interval``, ``large_value_size``, ``secret`` (a
    password the backend must never show) and ``concurrency``; ``sample_values()``
    and ``sample_keys()`` can be extended.
    """

    def make_backend(self) -> Backend:
        """Return a new, connected backend (called once per test)."""
        raise NotImplementedError(f"{type(self).__name__} must implement make_backend()")

    def close_backend(self, backend: Backend) -> None:
        """Release ``backend`` after a test (default: ``backend.close()``)."""
        backend.close()

    @contextmanager
    def _opened(self) -> Iterator[tuple[Backend, str]]:
        backend = self.make_backend()
        _check(backend is not None, "make_backend() returned None; return the backend to test")
        ns = self._namespace()
        try:
            yield backend, ns
        finally:
            with suppress(Exception):  # best effort: the keys sit under a random prefix
                backend.clear(ns)
            self.close_backend(backend)

    def _wait_until_missing(self, backend: Backend, key: str, what: str) -> None:
        deadline = time.monotonic() + self.expiry_deadline
        while _still_there(backend.get(key), self, what, time.monotonic() > deadline):
            time.sleep(self.poll_interval)

    # -- shape --------------------------------------------------------------------

    def test_satisfies_the_backend_protocol(self) -> None:
        with self._opened() as (b, _):
            _check_protocol(b, _BACKEND_METHODS, "Backend", "make_backend()")
            for name in _BACKEND_METHODS:
                _check(
                    not inspect.iscoroutinefunction(getattr(b, name)),
                    f"{name}() is a coroutine function: test an async backend with "
                    "AsyncBackendConformance",
                )

    def test_endpoint_is_a_string_without_credentials(self) -> None:
        with self._opened() as (b, _):
            _check_endpoint(b, self.secret)

    def test_capabilities_are_a_frozenset_of_known_names(self) -> None:
        with self._opened() as (b, _):
            _check_capabilities(b)

    def test_declared_capabilities_have_their_methods(self) -> None:
        with self._opened() as (b, _):
            _check_declared_methods(b, is_async=False)

    def test_ping_returns_true(self) -> None:
        with self._opened() as (b, _):
            result = b.ping()
            _check(result is True, f"ping() on a working backend must return True, got {result!r}")

    def test_health_returns_a_json_ready_dict(self) -> None:
        with self._opened() as (b, _):
            _check_health(b.health(), self.secret)

    # -- get / set / delete -------------------------------------------------------

    def test_absent_key_reads_as_missing(self) -> None:
        with self._opened() as (b, ns):
            _check_missing(b.get(ns + "absent"), "get() of a key never set")

    def test_values_round_trip_unchanged(self) -> None:
        with self._opened() as (b, ns):
            values = self.sample_values()
            for i, value in enumerate(values):
                b.set(f"{ns}v{i}", value)
            for i, value in enumerate(values):
                _check_got(b.get(f"{ns}v{i}"), value, f"get() after set({_short(value, 30)})")

    def test_empty_bytes_are_a_value_not_a_miss(self) -> None:
        with self._opened() as (b, ns):
            b.set(ns + "empty", b"")
            _check_got(b.get(ns + "empty"), b"", "get() of a key set to b''")

    def test_large_value_round_trips(self) -> None:
        value = os.urandom(self.large_value_size)
        with self._opened() as (b, ns):
            b.set(ns + "large", value)
            _check_got(b.get(ns + "large"), value, f"get() of a {len(value)}-byte value")

    def test_key_shapes_are_stored_apart(self) -> None:
        with self._opened() as (b, ns):
            keys = self.sample_keys()
            for i, key in enumerate(keys):
                b.set(ns + key, f"value {i}".encode())
            for i, key in enumerate(keys):
                _check_got(b.get(ns + key), f"value {i}".encode(), f"get({key!r})")

    def test_set_overwrites_the_previous_value(self) -> None:
        with self._opened() as (b, ns):
            b.set(ns + "k", b"first")
            b.set(ns + "k", b"second")
            _check_got(b.get(ns + "k"), b"second", "get() after two set()")

    def test_delete_reports_whether_the_key_existed(self) -> None:
        with self._opened() as (b, ns):
            b.set(ns + "k", b"v")
            b.set(ns + "other", b"v")
            _check_bool_reply(b.delete(ns + "k"), True, "delete() of a present key")
            _check_missing(b.get(ns + "k"), "get() after delete()")
            _check_bool_reply(b.delete(ns + "k"), False, "a second delete() of a key")
            _check_bool_reply(b.delete(ns + "never"), False, "delete() of an absent key")
            _check_got(b.get(ns + "other"), b"v", "a key next to the deleted one")

    # -- many ---------------------------------------------------------------------

    def test_get_many_keeps_order_and_marks_misses(self) -> None:
        with self._opened() as (b, ns):
            b.set(ns + "a", b"A")
            b.set(ns + "c", b"")
            got = b.get_many([ns + "a", ns + "b", ns + "c", ns + "a"])
            _check(
                isinstance(got, list), f"get_many() must return a list, got {type(got).__name__}"
            )
            _check(len(got) == 4, f"get_many() of 4 keys returned {len(got)} items")
            _check_got(got[0], b"A", "get_many()[0]")
            _check_missing(got[1], "get_many()[1] (absent key)")
            _check_got(got[2], b"", "get_many()[2] (empty value)")
            _check_got(got[3], b"A", "get_many()[3] (repeated key)")

    def test_get_many_of_no_keys_is_an_empty_list(self) -> None:
        with self._opened() as (b, _):
            got = b.get_many([])
            _check(got == [], f"get_many([]) must return [], got {got!r}")

    def test_set_many_stores_every_item(self) -> None:
        with self._opened() as (b, ns):
            items = {f"{ns}m{i}": v for i, v in enumerate(self.sample_values())}
            b.set_many(items)
            b.set_many({})
            for key, value in items.items():
                _check_got(b.get(key), value, f"get({key!r}) after set_many()")

    def test_delete_many_counts_the_keys_it_removed(self) -> None:
        with self._opened() as (b, ns):
            b.set_many({ns + "a": b"1", ns + "b": b"2", ns + "keep": b"3"})
            removed = b.delete_many([ns + "a", ns + "b", ns + "absent"])
            _check(removed == 2, f"delete_many() of 2 present + 1 absent keys returned {removed!r}")
            _check_missing(b.get(ns + "a"), "get() after delete_many()")
            _check_got(b.get(ns + "keep"), b"3", "a key delete_many() was not given")
            none = b.delete_many([])
            _check(none == 0, f"delete_many([]) must return 0, got {none!r}")

    # -- clear --------------------------------------------------------------------

    def test_clear_removes_only_keys_with_the_prefix(self) -> None:
        with self._opened() as (b, ns):
            b.set_many({ns + "users:1": b"a", ns + "users:2": b"b", ns + "users:3": b"c"})
            b.set_many({ns + "orders:1": b"d", ns + "user": b"e", ns + "xusers:1": b"f"})
            removed = b.clear(ns + "users:")
            _check(removed == 3, f"clear() of a prefix holding 3 keys returned {removed!r}")
            for key in ("users:1", "users:2", "users:3"):
                _check_missing(b.get(ns + key), f"get({key!r}) after clear('users:')")
            for key, value in (("orders:1", b"d"), ("user", b"e"), ("xusers:1", b"f")):
                _check_got(b.get(ns + key), value, f"get({key!r}) after clear('users:')")

    def test_clear_takes_the_prefix_literally(self) -> None:
        with self._opened() as (b, ns):
            target, decoys = _literal_prefix_keys(ns)
            b.set_many({key: b"v" for key in (target, *decoys)})
            removed = b.clear(ns + _PATTERN_PREFIX)
            _check_literal_clear(removed, [key for key in decoys if b.get(key) is MISSING])
            _check_missing(b.get(target), "get() of the key under the cleared prefix")

    def test_clear_of_an_unused_prefix_removes_nothing(self) -> None:
        with self._opened() as (b, ns):
            b.set(ns + "k", b"v")
            removed = b.clear(ns + "nothing-here:")
            _check(removed == 0, f"clear() of an unused prefix returned {removed!r}")
            _check_got(b.get(ns + "k"), b"v", "get() after clearing another prefix")

    # -- expiry -------------------------------------------------------------------

    def test_value_with_a_ttl_is_readable_before_it_expires(self) -> None:
        with self._opened() as (b, ns):
            b.set(ns + "k", b"v", ttl=self.long_ttl)
            _check_got(b.get(ns + "k"), b"v", f"get() right after set(ttl={self.long_ttl})")

    def test_value_expires_after_its_ttl(self) -> None:
        with self._opened() as (b, ns):
            b.set(ns + "k", b"v", ttl=self.short_ttl)
            self._wait_until_missing(b, ns + "k", f"set(ttl={self.short_ttl})")

    def test_set_many_applies_the_ttl_to_every_item(self) -> None:
        with self._opened() as (b, ns):
            b.set_many({ns + "a": b"1", ns + "b": b"2"}, ttl=self.short_ttl)
            what = f"set_many(ttl={self.short_ttl})"
            self._wait_until_missing(b, ns + "a", what)
            self._wait_until_missing(b, ns + "b", what)

    def test_value_without_ttl_outlives_a_short_ttl(self) -> None:
        with self._opened() as (b, ns):
            b.set(ns + "forever", b"v", ttl=None)
            b.set(ns + "brief", b"v", ttl=self.short_ttl)
            self._wait_until_missing(b, ns + "brief", f"set(ttl={self.short_ttl})")
            _check_got(b.get(ns + "forever"), b"v", "get() of a ttl=None entry (no expiry)")

    def test_overwrite_without_ttl_drops_the_old_expiry(self) -> None:
        with self._opened() as (b, ns):
            b.set(ns + "k", b"old", ttl=self.short_ttl)
            b.set(ns + "k", b"new")
            b.set(ns + "marker", b"v", ttl=self.short_ttl)
            self._wait_until_missing(b, ns + "marker", f"set(ttl={self.short_ttl})")
            _check_got(
                b.get(ns + "k"),
                b"new",
                "an entry set with a ttl, then overwritten with ttl=None (which must drop the "
                "old expiry)",
            )

    def test_delete_of_an_expired_key_returns_false(self) -> None:
        with self._opened() as (b, ns):
            b.set(ns + "k", b"v", ttl=self.short_ttl)
            self._wait_until_missing(b, ns + "k", f"set(ttl={self.short_ttl})")
            _check_bool_reply(b.delete(ns + "k"), False, "delete() of an expired key")

    def test_ttl_inspection_when_declared(self) -> None:
        with self._opened() as (b, ns):
            if CAP_TTL not in _check_capabilities(b):
                _skip("backend does not declare the 'ttl' capability")
            ttl = _capability_method(b, CAP_TTL, "ttl", is_async=False)
            b.set(ns + "forever", b"v")
            b.set(ns + "timed", b"v", ttl=self.long_ttl)
            _check_ttl_replies(
                ttl(ns + "absent"), ttl(ns + "forever"), ttl(ns + "timed"), self.long_ttl
            )

    # -- optional capabilities ----------------------------------------------------

    def test_guarded_writes_refuse_a_key_that_changed_when_declared(self) -> None:
        with self._opened() as (b, ns):
            if CAP_GUARDED_WRITES not in _check_capabilities(b):
                _skip("backend does not declare the 'guarded_writes' capability")
            guarded = _capability_method(b, CAP_GUARDED_WRITES, "set_guarded", is_async=False)
            tomb = _capability_method(b, CAP_GUARDED_WRITES, "tombstone", is_async=False)
            key, ttl = ns + "k", self.long_ttl
            _check_guarded_replies(
                [
                    guarded(key, b"v1", ttl, ""),  # absent, as read: written
                    guarded(key, b"v2", ttl, ""),  # read absent, now v1: refused
                    guarded(key, b"v2", ttl, _sha1(b"v1")),  # still v1: written
                    tomb(key, ttl),  # held v2: True
                ],
                b.get(key),
                [guarded(key, b"v3", ttl, _sha1(b"v2")), tomb(key, ttl)],
            )

    def test_a_lock_is_exclusive_and_released_only_by_its_token(self) -> None:
        with self._opened() as (b, ns):
            if CAP_LOCKING not in getattr(b, "capabilities", ()):
                _skip("the backend does not declare the 'locking' capability")
            key = ns + "lock"
            lock = _capability_method(b, CAP_LOCKING, "acquire_lock", is_async=False)
            release = _capability_method(b, CAP_LOCKING, "release_lock", is_async=False)
            _check_bool_reply(lock(key, "t1", self.long_ttl), True, "acquire_lock() of a free key")
            _check_bool_reply(lock(key, "t2", self.long_ttl), False, "acquire_lock() of a held key")
            _check_bool_reply(release(key, "t2"), False, "release_lock() with another token")
            _check_bool_reply(release(key, "t1"), True, "release_lock() by its holder")
            _check_bool_reply(
                lock(key, "t2", self.long_ttl), True, "acquire_lock() after the holder released"
            )
            release(key, "t2")

    def test_a_lock_is_free_again_after_its_lease(self) -> None:
        with self._opened() as (b, ns):
            if CAP_LOCKING not in getattr(b, "capabilities", ()):
                _skip("the backend does not declare the 'locking' capability")
            key = ns + "lease"
            lock = _capability_method(b, CAP_LOCKING, "acquire_lock", is_async=False)
            release = _capability_method(b, CAP_LOCKING, "release_lock", is_async=False)
            lock(key, "dead-holder", self.short_ttl)
            deadline = time.monotonic() + self.expiry_deadline
            while not lock(key, "next", self.long_ttl):
                if time.monotonic() > deadline:
                    _fail(_lease_outlived(self))
                time.sleep(self.poll_interval)
            release(key, "next")

    def test_atomic_miss_reads_or_locks_and_stores_then_unlocks_when_declared(self) -> None:
        with self._opened() as (b, ns):
            caps = _check_capabilities(b)
            if CAP_ATOMIC_MISS not in caps:
                _skip("the backend does not declare the 'atomic_miss' capability")
            _drive(b, _atomic_miss_steps(ns, self.long_ttl, CAP_GUARDED_WRITES in caps))

    def test_an_atomic_miss_lock_is_free_again_after_its_lease(self) -> None:
        with self._opened() as (b, ns):
            if CAP_ATOMIC_MISS not in _check_capabilities(b):
                _skip("the backend does not declare the 'atomic_miss' capability")
            _drive(b, _atomic_lease_steps(ns, self))

    def test_generations_and_change_notifications(self) -> None:
        with self._opened() as (b, _):
            if CAP_INVALIDATION not in getattr(b, "capabilities", ()):
                _skip("the backend does not declare the 'invalidation' capability")
            counter, key, notices, end = _check_coherence(
                b, self.expiry_deadline, self.poll_interval
            )
            try:
                b.set(key, b"v")
                notices.wait(key, end, self.poll_interval, "a write")
                notices.seen.clear()
                b.delete(key)
                notices.wait(key, end, self.poll_interval, "a delete")
            finally:
                b.delete(key)
                b.delete(counter)

    # -- robustness ---------------------------------------------------------------

    def test_concurrent_writers_lose_nothing(self) -> None:
        with self._opened() as (b, ns):

            def work(worker: int) -> None:
                for i in range(25):
                    b.set(f"{ns}{worker}:{i}", f"{worker}/{i}".encode())
                    _check_got(b.get(f"{ns}{worker}:{i}"), f"{worker}/{i}".encode(), "own write")

            _run_threads(self.concurrency, work)
            for worker in range(self.concurrency):
                got = b.get_many([f"{ns}{worker}:{i}" for i in range(25)])
                for i, value in enumerate(got):
                    _check_got(value, f"{worker}/{i}".encode(), f"write {i} of thread {worker}")

    def test_close_can_be_called_twice(self) -> None:
        backend = self.make_backend()
        backend.close()
        try:
            self.close_backend(backend)
        except Exception as exc:
            _second_close_failed(exc)


# --- AsyncBackendConformance ----------------------------------------------------------


class AsyncBackendConformance(_BackendSettings):
    """Checks an :class:`~cachekit.protocols.AsyncBackend`: the same rules as the sync suite.

    ``make_backend`` runs inside the test's event loop and may be ``async def``
    (clients that bind to a loop are created there). Example::

        from cachekit.backends.memory import AsyncMemoryBackend
        from cachekit.testing import AsyncBackendConformance

        class TestAsyncMemoryBackend(AsyncBackendConformance):
            def make_backend(self):
                return AsyncMemoryBackend()

    It is tuned with the same class attributes and methods as
    :class:`BackendConformance`; ``close_backend`` is ``async def`` here.
    """

    def make_backend(self) -> AsyncBackend | Awaitable[AsyncBackend]:
        """Return a new backend, or a coroutine producing one (called once per test)."""
        raise NotImplementedError(f"{type(self).__name__} must implement make_backend()")

    async def close_backend(self, backend: AsyncBackend) -> None:
        """Release ``backend`` after a test (default: ``await backend.close()``)."""
        await backend.close()

    async def _make(self) -> AsyncBackend:
        made = self.make_backend()
        backend = await made if inspect.isawaitable(made) else made
        _check(backend is not None, "make_backend() returned None; return the backend to test")
        _check(
            inspect.iscoroutinefunction(getattr(backend, "get", None)),
            f"make_backend() returned {backend!r}, whose get() is not async: "
            "use BackendConformance for a synchronous backend",
        )
        return backend

    def _run(self, body: Callable[[AsyncBackend, str], Awaitable[None]]) -> None:
        async def main() -> None:
            backend = await self._make()
            ns = self._namespace()
            try:
                await body(backend, ns)
            finally:
                with suppress(Exception):  # best effort: the keys sit under a random prefix
                    await backend.clear(ns)
                await self.close_backend(backend)

        asyncio.run(main())

    async def _wait_until_missing(self, backend: AsyncBackend, key: str, what: str) -> None:
        deadline = time.monotonic() + self.expiry_deadline
        while True:
            got = await backend.get(key)
            if not _still_there(got, self, what, time.monotonic() > deadline):
                return
            await asyncio.sleep(self.poll_interval)

    # -- shape --------------------------------------------------------------------

    def test_satisfies_the_async_backend_protocol(self) -> None:
        async def body(b: AsyncBackend, ns: str) -> None:
            _check_protocol(b, _BACKEND_METHODS, "AsyncBackend", "make_backend()")
            for name in _BACKEND_METHODS:
                _check(
                    inspect.iscoroutinefunction(getattr(b, name)),
                    f"{name}() must be a coroutine function (async def)",
                )

        self._run(body)

    def test_endpoint_is_a_string_without_credentials(self) -> None:
        async def body(b: AsyncBackend, ns: str) -> None:
            _check_endpoint(b, self.secret)

        self._run(body)

    def test_capabilities_are_a_frozenset_of_known_names(self) -> None:
        async def body(b: AsyncBackend, ns: str) -> None:
            _check_capabilities(b)

        self._run(body)

    def test_declared_capabilities_have_their_methods(self) -> None:
        async def body(b: AsyncBackend, ns: str) -> None:
            _check_declared_methods(b, is_async=True)

        self._run(body)

    def test_ping_returns_true(self) -> None:
        async def body(b: AsyncBackend, ns: str) -> None:
            result = await b.ping()
            _check(result is True, f"ping() on a working backend must return True, got {result!r}")

        self._run(body)

    def test_health_returns_a_json_ready_dict(self) -> None:
        async def body(b: AsyncBackend, ns: str) -> None:
            _check_health(await b.health(), self.secret)

        self._run(body)

    # -- get / set / delete -------------------------------------------------------

    def test_absent_key_reads_as_missing(self) -> None:
        async def body(b: AsyncBackend, ns: str) -> None:
            _check_missing(await b.get(ns + "absent"), "get() of a key never set")

        self._run(body)

    def test_values_round_trip_unchanged(self) -> None:
        async def body(b: AsyncBackend, ns: str) -> None:
            values = self.sample_values()
            for i, value in enumerate(values):
                await b.set(f"{ns}v{i}", value)
            for i, value in enumerate(values):
                _check_got(await b.get(f"{ns}v{i}"), value, f"get() after set({_short(value, 30)})")

        self._run(body)

    def test_empty_bytes_are_a_value_not_a_miss(self) -> None:
        async def body(b: AsyncBackend, ns: str) -> None:
            await b.set(ns + "empty", b"")
            _check_got(await b.get(ns + "empty"), b"", "get() of a key set to b''")

        self._run(body)

    def test_large_value_round_trips(self) -> None:
        value = os.urandom(self.large_value_size)

        async def body(b: AsyncBackend, ns: str) -> None:
            await b.set(ns + "large", value)
            _check_got(await b.get(ns + "large"), value, f"get() of a {len(value)}-byte value")

        self._run(body)

    def test_key_shapes_are_stored_apart(self) -> None:
        async def body(b: AsyncBackend, ns: str) -> None:
            keys = self.sample_keys()
            for i, key in enumerate(keys):
                await b.set(ns + key, f"value {i}".encode())
            for i, key in enumerate(keys):
                _check_got(await b.get(ns + key), f"value {i}".encode(), f"get({key!r})")

        self._run(body)

    def test_set_overwrites_the_previous_value(self) -> None:
        async def body(b: AsyncBackend, ns: str) -> None:
            await b.set(ns + "k", b"first")
            await b.set(ns + "k", b"second")
            _check_got(await b.get(ns + "k"), b"second", "get() after two set()")

        self._run(body)

    def test_delete_reports_whether_the_key_existed(self) -> None:
        async def body(b: AsyncBackend, ns: str) -> None:
            await b.set(ns + "k", b"v")
            await b.set(ns + "other", b"v")
            _check_bool_reply(await b.delete(ns + "k"), True, "delete() of a present key")
            _check_missing(await b.get(ns + "k"), "get() after delete()")
            _check_bool_reply(await b.delete(ns + "k"), False, "a second delete() of a key")
            _check_bool_reply(await b.delete(ns + "never"), False, "delete() of an absent key")
            _check_got(await b.get(ns + "other"), b"v", "a key next to the deleted one")

        self._run(body)

    # -- many ---------------------------------------------------------------------

    def test_get_many_keeps_order_and_marks_misses(self) -> None:
        async def body(b: AsyncBackend, ns: str) -> None:
            await b.set(ns + "a", b"A")
            await b.set(ns + "c", b"")
            got = await b.get_many([ns + "a", ns + "b", ns + "c", ns + "a"])
            _check(
                isinstance(got, list), f"get_many() must return a list, got {type(got).__name__}"
            )
            _check(len(got) == 4, f"get_many() of 4 keys returned {len(got)} items")
            _check_got(got[0], b"A", "get_many()[0]")
            _check_missing(got[1], "get_many()[1] (absent key)")
            _check_got(got[2], b"", "get_many()[2] (empty value)")
            _check_got(got[3], b"A", "get_many()[3] (repeated key)")

        self._run(body)

    def test_get_many_of_no_keys_is_an_empty_list(self) -> None:
        async def body(b: AsyncBackend, ns: str) -> None:
            got = await b.get_many([])
            _check(got == [], f"get_many([]) must return [], got {got!r}")

        self._run(body)

    def test_set_many_stores_every_item(self) -> None:
        async def body(b: AsyncBackend, ns: str) -> None:
            items = {f"{ns}m{i}": v for i, v in enumerate(self.sample_values())}
            await b.set_many(items)
            await b.set_many({})
            for key, value in items.items():
                _check_got(await b.get(key), value, f"get({key!r}) after set_many()")

        self._run(body)

    def test_delete_many_counts_the_keys_it_removed(self) -> None:
        async def body(b: AsyncBackend, ns: str) -> None:
            await b.set_many({ns + "a": b"1", ns + "b": b"2", ns + "keep": b"3"})
            removed = await b.delete_many([ns + "a", ns + "b", ns + "absent"])
            _check(removed == 2, f"delete_many() of 2 present + 1 absent keys returned {removed!r}")
            _check_missing(await b.get(ns + "a"), "get() after delete_many()")
            _check_got(await b.get(ns + "keep"), b"3", "a key delete_many() was not given")
            none = await b.delete_many([])
            _check(none == 0, f"delete_many([]) must return 0, got {none!r}")

        self._run(body)

    # -- clear --------------------------------------------------------------------

    def test_clear_removes_only_keys_with_the_prefix(self) -> None:
        async def body(b: AsyncBackend, ns: str) -> None:
            await b.set_many({ns + "users:1": b"a", ns + "users:2": b"b", ns + "users:3": b"c"})
            await b.set_many({ns + "orders:1": b"d", ns + "user": b"e", ns + "xusers:1": b"f"})
            removed = await b.clear(ns + "users:")
            _check(removed == 3, f"clear() of a prefix holding 3 keys returned {removed!r}")
            for key in ("users:1", "users:2", "users:3"):
                _check_missing(await b.get(ns + key), f"get({key!r}) after clear('users:')")
            for key, value in (("orders:1", b"d"), ("user", b"e"), ("xusers:1", b"f")):
                _check_got(await b.get(ns + key), value, f"get({key!r}) after clear('users:')")

        self._run(body)

    def test_clear_takes_the_prefix_literally(self) -> None:
        async def body(b: AsyncBackend, ns: str) -> None:
            target, decoys = _literal_prefix_keys(ns)
            await b.set_many({key: b"v" for key in (target, *decoys)})
            removed = await b.clear(ns + _PATTERN_PREFIX)
            _check_literal_clear(removed, [key for key in decoys if await b.get(key) is MISSING])
            _check_missing(await b.get(target), "get() of the key under the cleared prefix")

        self._run(body)

    def test_clear_of_an_unused_prefix_removes_nothing(self) -> None:
        async def body(b: AsyncBackend, ns: str) -> None:
            await b.set(ns + "k", b"v")
            removed = await b.clear(ns + "nothing-here:")
            _check(removed == 0, f"clear() of an unused prefix returned {removed!r}")
            _check_got(await b.get(ns + "k"), b"v", "get() after clearing another prefix")

        self._run(body)

    # -- expiry -------------------------------------------------------------------

    def test_value_with_a_ttl_is_readable_before_it_expires(self) -> None:
        async def body(b: AsyncBackend, ns: str) -> None:
            await b.set(ns + "k", b"v", ttl=self.long_ttl)
            _check_got(await b.get(ns + "k"), b"v", f"get() right after set(ttl={self.long_ttl})")

        self._run(body)

    def test_value_expires_after_its_ttl(self) -> None:
        async def body(b: AsyncBackend, ns: str) -> None:
            await b.set(ns + "k", b"v", ttl=self.short_ttl)
            await self._wait_until_missing(b, ns + "k", f"set(ttl={self.short_ttl})")

        self._run(body)

    def test_set_many_applies_the_ttl_to_every_item(self) -> None:
        async def body(b: AsyncBackend, ns: str) -> None:
            await b.set_many({ns + "a": b"1", ns + "b": b"2"}, ttl=self.short_ttl)
            what = f"set_many(ttl={self.short_ttl})"
            await self._wait_until_missing(b, ns + "a", what)
            await self._wait_until_missing(b, ns + "b", what)

        self._run(body)

    def test_value_without_ttl_outlives_a_short_ttl(self) -> None:
        async def body(b: AsyncBackend, ns: str) -> None:
            await b.set(ns + "forever", b"v", ttl=None)
            await b.set(ns + "brief", b"v", ttl=self.short_ttl)
            await self._wait_until_missing(b, ns + "brief", f"set(ttl={self.short_ttl})")
            _check_got(await b.get(ns + "forever"), b"v", "get() of a ttl=None entry (no expiry)")

        self._run(body)

    def test_overwrite_without_ttl_drops_the_old_expiry(self) -> None:
        async def body(b: AsyncBackend, ns: str) -> None:
            await b.set(ns + "k", b"old", ttl=self.short_ttl)
            await b.set(ns + "k", b"new")
            await b.set(ns + "marker", b"v", ttl=self.short_ttl)
            await self._wait_until_missing(b, ns + "marker", f"set(ttl={self.short_ttl})")
            _check_got(
                await b.get(ns + "k"),
                b"new",
                "an entry set with a ttl, then overwritten with ttl=None (which must drop the "
                "old expiry)",
            )

        self._run(body)

    def test_delete_of_an_expired_key_returns_false(self) -> None:
        async def body(b: AsyncBackend, ns: str) -> None:
            await b.set(ns + "k", b"v", ttl=self.short_ttl)
            await self._wait_until_missing(b, ns + "k", f"set(ttl={self.short_ttl})")
            _check_bool_reply(await b.delete(ns + "k"), False, "delete() of an expired key")

        self._run(body)

    def test_ttl_inspection_when_declared(self) -> None:
        async def body(b: AsyncBackend, ns: str) -> None:
            if CAP_TTL not in _check_capabilities(b):
                _skip("backend does not declare the 'ttl' capability")
            ttl = _capability_method(b, CAP_TTL, "ttl", is_async=True)
            await b.set(ns + "forever", b"v")
            await b.set(ns + "timed", b"v", ttl=self.long_ttl)
            _check_ttl_replies(
                await ttl(ns + "absent"),
                await ttl(ns + "forever"),
                await ttl(ns + "timed"),
                self.long_ttl,
            )

        self._run(body)

    # -- optional capabilities ----------------------------------------------------

    def test_guarded_writes_refuse_a_key_that_changed_when_declared(self) -> None:
        async def body(b: AsyncBackend, ns: str) -> None:
            if CAP_GUARDED_WRITES not in _check_capabilities(b):
                _skip("backend does not declare the 'guarded_writes' capability")
            guarded = _capability_method(b, CAP_GUARDED_WRITES, "set_guarded", is_async=True)
            tomb = _capability_method(b, CAP_GUARDED_WRITES, "tombstone", is_async=True)
            key, ttl = ns + "k", self.long_ttl
            _check_guarded_replies(
                [
                    await guarded(key, b"v1", ttl, ""),
                    await guarded(key, b"v2", ttl, ""),
                    await guarded(key, b"v2", ttl, _sha1(b"v1")),
                    await tomb(key, ttl),
                ],
                await b.get(key),
                [await guarded(key, b"v3", ttl, _sha1(b"v2")), await tomb(key, ttl)],
            )

        self._run(body)

    def test_a_lock_is_exclusive_and_released_only_by_its_token(self) -> None:
        async def body(b: AsyncBackend, ns: str) -> None:
            if CAP_LOCKING not in getattr(b, "capabilities", ()):
                _skip("the backend does not declare the 'locking' capability")
            key = ns + "lock"
            lock = _capability_method(b, CAP_LOCKING, "acquire_lock", is_async=True)
            release = _capability_method(b, CAP_LOCKING, "release_lock", is_async=True)
            reply = await lock(key, "t1", self.long_ttl)
            _check_bool_reply(reply, True, "acquire_lock() of a free key")
            reply = await lock(key, "t2", self.long_ttl)
            _check_bool_reply(reply, False, "acquire_lock() of a held key")
            reply = await release(key, "t2")
            _check_bool_reply(reply, False, "release_lock() with another token")
            _check_bool_reply(await release(key, "t1"), True, "release_lock() by its holder")
            reply = await lock(key, "t2", self.long_ttl)
            _check_bool_reply(reply, True, "acquire_lock() after the holder released")
            await release(key, "t2")

        self._run(body)

    def test_a_lock_is_free_again_after_its_lease(self) -> None:
        async def body(b: AsyncBackend, ns: str) -> None:
            if CAP_LOCKING not in getattr(b, "capabilities", ()):
                _skip("the backend does not declare the 'locking' capability")
            key = ns + "lease"
            lock = _capability_method(b, CAP_LOCKING, "acquire_lock", is_async=True)
            release = _capability_method(b, CAP_LOCKING, "release_lock", is_async=True)
            await lock(key, "dead-holder", self.short_ttl)
            deadline = time.monotonic() + self.expiry_deadline
            while not await lock(key, "next", self.long_ttl):
                if time.monotonic() > deadline:
                    _fail(_lease_outlived(self))
                await asyncio.sleep(self.poll_interval)
            await release(key, "next")

        self._run(body)

    def test_atomic_miss_reads_or_locks_and_stores_then_unlocks_when_declared(self) -> None:
        async def body(b: AsyncBackend, ns: str) -> None:
            caps = _check_capabilities(b)
            if CAP_ATOMIC_MISS not in caps:
                _skip("the backend does not declare the 'atomic_miss' capability")
            await _adrive(b, _atomic_miss_steps(ns, self.long_ttl, CAP_GUARDED_WRITES in caps))

        self._run(body)

    def test_an_atomic_miss_lock_is_free_again_after_its_lease(self) -> None:
        async def body(b: AsyncBackend, ns: str) -> None:
            if CAP_ATOMIC_MISS not in _check_capabilities(b):
                _skip("the backend does not declare the 'atomic_miss' capability")
            await _adrive(b, _atomic_lease_steps(ns, self))

        self._run(body)

    def test_generations_and_change_notifications(self) -> None:
        async def body(b: AsyncBackend, ns: str) -> None:
            if CAP_INVALIDATION not in getattr(b, "capabilities", ()):
                _skip("the backend does not declare the 'invalidation' capability")
            counter, key, notices, end = await asyncio.to_thread(
                _check_coherence, b, self.expiry_deadline, self.poll_interval
            )
            try:
                await b.set(key, b"v")
                await asyncio.to_thread(notices.wait, key, end, self.poll_interval, "a write")
                notices.seen.clear()
                await b.delete(key)
                await asyncio.to_thread(notices.wait, key, end, self.poll_interval, "a delete")
            finally:
                await b.delete(key)
                await b.delete(counter)

        self._run(body)

    # -- robustness ---------------------------------------------------------------

    def test_concurrent_writers_lose_nothing(self) -> None:
        async def body(b: AsyncBackend, ns: str) -> None:
            async def work(worker: int) -> None:
                for i in range(25):
                    await b.set(f"{ns}{worker}:{i}", f"{worker}/{i}".encode())
                    got = await b.get(f"{ns}{worker}:{i}")
                    _check_got(got, f"{worker}/{i}".encode(), "own write")

            await asyncio.gather(*(work(w) for w in range(self.concurrency)))
            for worker in range(self.concurrency):
                got = await b.get_many([f"{ns}{worker}:{i}" for i in range(25)])
                for i, value in enumerate(got):
                    _check_got(value, f"{worker}/{i}".encode(), f"write {i} of task {worker}")

        self._run(body)

    def test_close_can_be_called_twice(self) -> None:
        async def main() -> None:
            backend = await self._make()
            await backend.close()
            try:
                await self.close_backend(backend)
            except Exception as exc:
                _second_close_failed(exc)

        asyncio.run(main())


# --- SerializerConformance ------------------------------------------------------------


class SerializerConformance:
    """Checks a :class:`~cachekit.protocols.Serializer`.

    Implement :meth:`make_serializer`; extend :meth:`sample_values` with what the
    serializer claims to handle and :meth:`unsupported_values` with what it must
    refuse. Example::

        import datetime
        from cachekit.serializers import MessagePackSerializer
        from cachekit.testing import SerializerConformance

        class TestMessagePack(SerializerConformance):
            def make_serializer(self):
                return MessagePackSerializer()

            def sample_values(self):
                return [*super().sample_values(), b"raw bytes"]

            def unsupported_values(self):
                return [datetime.date(2024, 1, 1), {1, 2}]

    ``detects_garbage = False`` declares a format that cannot tell every corrupt
    input from a valid one (JSON reads a truncated ``12345`` as ``1234``): such a
    serializer may return a value for garbage, but must never raise anything other
    than DeserializationError (E005).
    """

    #: True: every input from :meth:`garbage_inputs`, and every truncated sample
    #: payload, must raise DeserializationError (E005). False: the format cannot tell
    #: some garbage from data, so a value may come back, but any exception must still
    #: be DeserializationError.
    detects_garbage: ClassVar[bool] = True
    #: Threads sharing one instance in ``test_one_instance_is_safe_to_share_between_threads``.
    concurrency: ClassVar[int] = 8

    def make_serializer(self) -> Serializer:
        """Return the serializer under test."""
        raise NotImplementedError(f"{type(self).__name__} must implement make_serializer()")

    def sample_values(self) -> list[Any]:
        """Values that must come back equal and of the same type (JSON-like by default)."""
        return [
            None,
            True,
            False,
            0,
            -1,
            2**53,
            1.5,
            -0.25,
            "",
            "text",
            "ünïcødé ✓ \x00 \n",
            [],
            [1, "a", None, [2.5, [False]]],
            {},
            {"id": 42, "name": "Ada", "tags": ["x", "y"], "nested": {"ok": True, "none": None}},
        ]

    def unsupported_values(self) -> list[Any]:
        """Values ``serialize`` must refuse with SerializationError (E004). Default: none."""
        return []

    def garbage_inputs(self) -> list[bytes]:
        """Bytes that are not a valid payload; truncated sample payloads are added to these."""
        return [b"", b"\xc1", b"\xff" * 16, b"\x00\xff\x00garbage\xfe", b"\x80\x05\x95"]

    def assert_round_trip(self, original: Any, restored: Any) -> None:
        """Fail unless ``restored`` equals ``original`` with the same types, recursively.

        Override for values whose ``==`` does not return a bool (data frames, arrays).
        """
        _check(
            _same(original, restored),
            f"round trip changed the value: {_short(original)} came back as {_short(restored)}",
        )

    def _round_trip(self, ser: Serializer, value: Any, reader: Serializer | None = None) -> None:
        try:
            data = ser.serialize(value)
        except Exception as exc:
            _fail(
                f"serialize({_short(value, 40)}) raised {type(exc).__name__}: {exc}; "
                "sample_values() lists values the serializer must round-trip: support it, or "
                "override sample_values() to leave it out (and unsupported_values() to list it)"
            )
        _check(
            isinstance(data, (bytes, bytearray))
            or (isinstance(data, memoryview) and data.c_contiguous),
            f"serialize({_short(value, 40)}) returned {type(data).__name__}, expected bytes "
            "(or a bytearray / C-contiguous memoryview)",
        )
        # What a backend hands back is bytes; L1 hands back what serialize returned.
        self.assert_round_trip(value, _deserialize(reader or ser, bytes(data), value))
        if type(data) is not bytes:
            self.assert_round_trip(value, _deserialize(ser, cast(bytes, data), value))

    def test_satisfies_the_serializer_protocol(self) -> None:
        ser = self.make_serializer()
        _check_protocol(ser, ("serialize", "deserialize"), "Serializer", "make_serializer()")
        _check(
            hasattr(ser, "name"),
            f"{_short(ser)} has no name attribute: the serializer's id written into every "
            "stored envelope",
        )

    def test_name_is_a_short_ascii_id(self) -> None:
        name: Any = getattr(self.make_serializer(), "name", None)
        _check(isinstance(name, str), f"name must be a str, got {type(name).__name__}")
        _check(
            0 < len(name) <= 32 and name.isascii() and name.isprintable() and " " not in name,
            f"name {name!r} must be 1-32 printable ASCII characters without spaces "
            "(it is written into every stored envelope)",
        )

    def test_name_is_the_same_for_every_instance(self) -> None:
        first, second = self.make_serializer().name, self.make_serializer().name
        _check(first == second, f"two instances are named {first!r} and {second!r}")

    def test_requires_authentication_is_a_bool_when_declared(self) -> None:
        flag = getattr(self.make_serializer(), "requires_authentication", False)
        _check(isinstance(flag, bool), f"requires_authentication must be a bool, got {flag!r}")

    def test_sample_values_round_trip(self) -> None:
        ser = self.make_serializer()
        for value in self.sample_values():
            self._round_trip(ser, value)

    def test_another_instance_reads_what_one_wrote(self) -> None:
        writer, reader = self.make_serializer(), self.make_serializer()
        for value in self.sample_values():
            self._round_trip(writer, value, reader)

    def test_unsupported_values_raise_serialization_error(self) -> None:
        values = self.unsupported_values()
        if not values:
            _skip("unsupported_values() lists nothing")
        ser = self.make_serializer()
        for value in values:
            with _raises(SerializationError, f"serialize({_short(value, 40)})"):
                ser.serialize(value)

    def test_garbage_is_rejected_cleanly(self) -> None:
        ser = self.make_serializer()
        inputs = list(self.garbage_inputs())
        for value in self.sample_values():
            data = bytes(ser.serialize(value))
            if len(data) >= 2:
                inputs += [data[:-1], data[: len(data) // 2]]
        for data in inputs:
            action = f"deserialize({_short(data, 40)})"
            if self.detects_garbage:
                with _raises(DeserializationError, action):
                    ser.deserialize(data)
                continue
            try:
                ser.deserialize(data)
            except DeserializationError as exc:
                _check(exc.code == "E005", f"{action}: DeserializationError with code {exc.code}")
            except Exception as exc:
                _fail(
                    f"{action}: raised {type(exc).__name__}: {exc}; a serializer must raise "
                    "cachekit.errors.DeserializationError (E005) for bytes it cannot read"
                )

    def test_one_instance_is_safe_to_share_between_threads(self) -> None:
        ser = self.make_serializer()
        values = self.sample_values()

        def work(_: int) -> None:
            for _round in range(20):
                for value in values:
                    self._round_trip(ser, value)

        _run_threads(self.concurrency, work)


def _deserialize(ser: Serializer, data: bytes, value: Any) -> Any:
    try:
        return ser.deserialize(data)
    except Exception as exc:
        _fail(
            f"deserialize() of what serialize({_short(value, 40)}) returned raised "
            f"{type(exc).__name__}: {exc}"
        )


# --- EncryptorConformance -------------------------------------------------------------


class EncryptorConformance:
    """Checks an :class:`~cachekit.protocols.Encryptor` (authenticated encryption).

    Implement :meth:`make_encryptor`; implement :meth:`make_other_encryptor` to
    also check that a different key cannot read the data. Example::

        from cachekit.testing import EncryptorConformance
        from cachekit_myaead import MyEncryptor

        class TestMyEncryptor(EncryptorConformance):
            def make_encryptor(self):
                return MyEncryptor(key=b"k" * 32)

            def make_other_encryptor(self):
                return MyEncryptor(key=b"o" * 32)

    Every rejection must be :class:`cachekit.errors.DecryptionError` (E003): wrong
    AAD, any flipped bit, truncation, extension, an unknown key id.
    """

    #: Threads sharing one instance in ``test_one_instance_is_safe_to_share_between_threads``.
    concurrency: ClassVar[int] = 8

    def make_encryptor(self) -> Encryptor:
        """Return the encryptor under test."""
        raise NotImplementedError(f"{type(self).__name__} must implement make_encryptor()")

    def make_other_encryptor(self) -> Encryptor | None:
        """An encryptor with a different key, or None to skip the wrong-key test."""
        return None

    def sample_plaintexts(self) -> list[bytes]:
        """Plaintexts that must round-trip (empty, short, binary, 64 KiB)."""
        return [b"", b"x", b"a secret value " * 8, bytes(range(256)), os.urandom(64 * 1024)]

    def _decrypt(self, enc: Encryptor, blob: bytes, aad: bytes, key_id: str | None = None) -> bytes:
        try:
            return enc.decrypt(blob, aad, key_id=enc.key_id if key_id is None else key_id)
        except TypeError as exc:
            if "key_id" not in str(exc):
                raise
            _fail(
                f"decrypt() does not take key_id ({exc}); its signature must be "
                "decrypt(blob, aad, *, key_id): cachekit passes the key id stored in the "
                "envelope, so that a rotated key needs no trial decryption"
            )

    def test_satisfies_the_encryptor_protocol(self) -> None:
        enc = self.make_encryptor()
        _check_protocol(enc, ("encrypt", "decrypt"), "Encryptor", "make_encryptor()")
        _check(
            hasattr(enc, "key_id"),
            f"{_short(enc)} has no key_id attribute: the id of the key new blobs are "
            "encrypted with, stored in every envelope",
        )
        try:
            inspect.signature(enc.decrypt).bind(b"", b"", key_id="k")
        except TypeError as exc:
            _fail(f"decrypt(blob, aad, *, key_id) cannot be called that way: {exc}")
        except ValueError:  # no signature to inspect (a builtin): the other tests call it
            pass

    def test_key_id_is_a_short_ascii_string(self) -> None:
        key_id: Any = getattr(self.make_encryptor(), "key_id", None)
        _check(isinstance(key_id, str), f"key_id must be a str, got {type(key_id).__name__}")
        _check(
            0 < len(key_id) < 256 and key_id.isascii() and key_id.isprintable(),
            f"key_id {key_id!r} must be 1-255 printable ASCII characters (it is stored in "
            "the envelope)",
        )

    def test_plaintexts_round_trip(self) -> None:
        enc = self.make_encryptor()
        for plaintext in self.sample_plaintexts():
            blob = enc.encrypt(plaintext, b"aad")
            _check(isinstance(blob, bytes), f"encrypt() returned {type(blob).__name__}, not bytes")
            got = self._decrypt(enc, blob, b"aad")
            _check(got == plaintext, f"decrypt(encrypt(p)) != p for p={_short(plaintext)}")

    def test_ciphertext_does_not_contain_the_plaintext(self) -> None:
        enc = self.make_encryptor()
        plaintext = b"card=4111111111111111;" * 4
        blob = enc.encrypt(plaintext, b"aad")
        _check(b"4111111111111111" not in blob, "the ciphertext contains the plaintext")

    def test_same_plaintext_encrypts_differently_each_time(self) -> None:
        enc = self.make_encryptor()
        first, second = enc.encrypt(b"same", b"aad"), enc.encrypt(b"same", b"aad")
        _check(first != second, "two encryptions of one plaintext are identical (nonce reuse?)")

    def test_other_aad_is_rejected(self) -> None:
        enc = self.make_encryptor()
        blob = enc.encrypt(b"value", b"cachekit:users:load_user:1")
        for aad in (b"cachekit:users:load_user:2", b"", b"cachekit:users:load_user:1\x00"):
            with _raises(DecryptionError, f"decrypt() with aad={aad!r}"):
                self._decrypt(enc, blob, aad)
        empty = enc.encrypt(b"value", b"")
        with _raises(DecryptionError, "decrypt() of a blob sealed with empty aad, given b'x'"):
            self._decrypt(enc, empty, b"x")

    def test_every_flipped_bit_is_rejected(self) -> None:
        enc = self.make_encryptor()
        blob = enc.encrypt(b"sixteen byte msg", b"aad")
        for position in range(len(blob)):
            for bit in range(8):
                tampered = bytearray(blob)
                tampered[position] ^= 1 << bit
                with _raises(
                    DecryptionError, f"decrypt() with bit {bit} of byte {position} flipped"
                ):
                    self._decrypt(enc, bytes(tampered), b"aad")

    def test_truncated_blobs_are_rejected(self) -> None:
        enc = self.make_encryptor()
        blob = enc.encrypt(b"sixteen byte msg", b"aad")
        for length in range(len(blob)):
            with _raises(DecryptionError, f"decrypt() of the first {length}/{len(blob)} bytes"):
                self._decrypt(enc, blob[:length], b"aad")

    def test_extended_blobs_are_rejected(self) -> None:
        enc = self.make_encryptor()
        blob = enc.encrypt(b"value", b"aad")
        for suffix in (b"\x00", b"extra bytes"):
            with _raises(DecryptionError, f"decrypt() of the blob + {suffix!r}"):
                self._decrypt(enc, blob + suffix, b"aad")

    def test_unknown_key_id_is_rejected(self) -> None:
        enc = self.make_encryptor()
        blob = enc.encrypt(b"value", b"aad")
        with _raises(DecryptionError, "decrypt() with a key_id nobody has"):
            self._decrypt(enc, blob, b"aad", key_id="no-such-key-id")

    def test_another_key_cannot_decrypt(self) -> None:
        other = self.make_other_encryptor()
        if other is None:
            _skip("make_other_encryptor() returns None")
        enc = self.make_encryptor()
        blob = enc.encrypt(b"value", b"aad")
        for key_id in dict.fromkeys((other.key_id, enc.key_id)):
            with _raises(DecryptionError, f"decrypt() by another key, key_id={key_id!r}"):
                other.decrypt(blob, b"aad", key_id=key_id)

    def test_one_instance_is_safe_to_share_between_threads(self) -> None:
        enc = self.make_encryptor()

        def work(worker: int) -> None:
            for i in range(50):
                plaintext = f"{worker}:{i}".encode()
                aad = f"aad {worker}".encode()
                got = self._decrypt(enc, enc.encrypt(plaintext, aad), aad)
                _check(got == plaintext, f"thread {worker} read back {got!r} for {plaintext!r}")

        _run_threads(self.concurrency, work)
