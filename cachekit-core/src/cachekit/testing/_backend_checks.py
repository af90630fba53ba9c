"""What the two backend suites share: their settings and the checks of each reply.

A check takes what the backend returned (or the backend, to inspect its attributes)
and fails with a message that names the broken rule and the fix; it never calls a
method that is a coroutine on an async backend, so both suites use it.
"""

from __future__ import annotations

import inspect
import json
import re
import time
import uuid
from typing import Any, ClassVar, NoReturn

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
from cachekit.testing._checks import _check, _fail, _lacking, _short

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


# --- generations and change notifications (the 'invalidation' capability) -----------------


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
