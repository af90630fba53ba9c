"""The rules both backend suites check, each written once as a scenario.

:class:`_BackendRules` holds every ``test_*`` method the sync and the async suite share.
Each builds a scenario (see :mod:`cachekit.testing._scenarios`) and hands it to
``_play``, which :class:`~cachekit.testing.BackendConformance` implements with a
synchronous driver and :class:`~cachekit.testing.AsyncBackendConformance` with an
async one. What differs between the two (the protocol check, the second ``close()``)
stays in the suites themselves.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any, ClassVar

from cachekit.constants import (
    CAP_ATOMIC_MISS,
    CAP_GUARDED_WRITES,
    CAP_INVALIDATION,
    CAP_LOCKING,
    CAP_TTL,
    MISSING,
)
from cachekit.testing._backend_checks import (
    _PATTERN_PREFIX,
    _BackendSettings,
    _check_bool_reply,
    _check_capabilities,
    _check_coherence,
    _check_declared_methods,
    _check_endpoint,
    _check_got,
    _check_guarded_replies,
    _check_health,
    _check_literal_clear,
    _check_missing,
    _check_ttl_replies,
    _lease_outlived,
    _literal_prefix_keys,
    _sha1,
    _still_there,
)
from cachekit.testing._checks import _check, _fail, _short, _skip
from cachekit.testing._scenarios import (
    _BLOCKING,
    _SLEEP,
    _TOGETHER,
    _atomic_lease_steps,
    _atomic_miss_steps,
    _Scenario,
    _step,
)

#: A rule: given the backend (to read its attributes, never to call it) and the test's
#: key prefix, the scenario that checks it, or None when reading attributes is all.
_Rule = Callable[[Any, str], _Scenario | None]


class _BackendRules(_BackendSettings):
    """The ``test_*`` methods of both backend suites."""

    #: Whether ``_play`` drives an async backend (which methods must be coroutines).
    _is_async: ClassVar[bool]

    def _play(self, rule: _Rule) -> None:
        """Run ``rule`` on a new backend, under a fresh key prefix."""
        raise NotImplementedError

    def _until_missing(self, key: str, what: str) -> _Scenario:
        """Poll ``key`` until it reads as MISSING (an entry with ``short_ttl`` expiring)."""
        deadline = time.monotonic() + self.expiry_deadline
        while _still_there((yield _step("get", key)), self, what, time.monotonic() > deadline):
            yield _step(_SLEEP, self.poll_interval)

    # -- shape --------------------------------------------------------------------

    def test_endpoint_is_a_string_without_credentials(self) -> None:
        self._play(lambda b, ns: _check_endpoint(b, self.secret))

    def test_capabilities_are_a_frozenset_of_known_names(self) -> None:
        def rule(b: Any, ns: str) -> None:
            _check_capabilities(b)

        self._play(rule)

    def test_declared_capabilities_have_their_methods(self) -> None:
        self._play(lambda b, ns: _check_declared_methods(b, is_async=self._is_async))

    def test_ping_returns_true(self) -> None:
        def rule(b: Any, ns: str) -> _Scenario:
            result = yield _step("ping")
            _check(result is True, f"ping() on a working backend must return True, got {result!r}")

        self._play(rule)

    def test_health_returns_a_json_ready_dict(self) -> None:
        def rule(b: Any, ns: str) -> _Scenario:
            _check_health((yield _step("health")), self.secret)

        self._play(rule)

    # -- get / set / delete -------------------------------------------------------

    def test_absent_key_reads_as_missing(self) -> None:
        def rule(b: Any, ns: str) -> _Scenario:
            _check_missing((yield _step("get", ns + "absent")), "get() of a key never set")

        self._play(rule)

    def test_values_round_trip_unchanged(self) -> None:
        def rule(b: Any, ns: str) -> _Scenario:
            values = self.sample_values()
            for i, value in enumerate(values):
                yield _step("set", f"{ns}v{i}", value)
            for i, value in enumerate(values):
                got = yield _step("get", f"{ns}v{i}")
                _check_got(got, value, f"get() after set({_short(value, 30)})")

        self._play(rule)

    def test_empty_bytes_are_a_value_not_a_miss(self) -> None:
        def rule(b: Any, ns: str) -> _Scenario:
            yield _step("set", ns + "empty", b"")
            _check_got((yield _step("get", ns + "empty")), b"", "get() of a key set to b''")

        self._play(rule)

    def test_large_value_round_trips(self) -> None:
        value = os.urandom(self.large_value_size)

        def rule(b: Any, ns: str) -> _Scenario:
            yield _step("set", ns + "large", value)
            got = yield _step("get", ns + "large")
            _check_got(got, value, f"get() of a {len(value)}-byte value")

        self._play(rule)

    def test_key_shapes_are_stored_apart(self) -> None:
        def rule(b: Any, ns: str) -> _Scenario:
            keys = self.sample_keys()
            for i, key in enumerate(keys):
                yield _step("set", ns + key, f"value {i}".encode())
            for i, key in enumerate(keys):
                _check_got((yield _step("get", ns + key)), f"value {i}".encode(), f"get({key!r})")

        self._play(rule)

    def test_set_overwrites_the_previous_value(self) -> None:
        def rule(b: Any, ns: str) -> _Scenario:
            yield _step("set", ns + "k", b"first")
            yield _step("set", ns + "k", b"second")
            _check_got((yield _step("get", ns + "k")), b"second", "get() after two set()")

        self._play(rule)

    def test_delete_reports_whether_the_key_existed(self) -> None:
        def rule(b: Any, ns: str) -> _Scenario:
            yield _step("set", ns + "k", b"v")
            yield _step("set", ns + "other", b"v")
            reply = yield _step("delete", ns + "k")
            _check_bool_reply(reply, True, "delete() of a present key")
            _check_missing((yield _step("get", ns + "k")), "get() after delete()")
            reply = yield _step("delete", ns + "k")
            _check_bool_reply(reply, False, "a second delete() of a key")
            reply = yield _step("delete", ns + "never")
            _check_bool_reply(reply, False, "delete() of an absent key")
            got = yield _step("get", ns + "other")
            _check_got(got, b"v", "a key next to the deleted one")

        self._play(rule)

    # -- many ---------------------------------------------------------------------

    def test_get_many_keeps_order_and_marks_misses(self) -> None:
        def rule(b: Any, ns: str) -> _Scenario:
            yield _step("set", ns + "a", b"A")
            yield _step("set", ns + "c", b"")
            got = yield _step("get_many", [ns + "a", ns + "b", ns + "c", ns + "a"])
            _check(
                isinstance(got, list), f"get_many() must return a list, got {type(got).__name__}"
            )
            _check(len(got) == 4, f"get_many() of 4 keys returned {len(got)} items")
            _check_got(got[0], b"A", "get_many()[0]")
            _check_missing(got[1], "get_many()[1] (absent key)")
            _check_got(got[2], b"", "get_many()[2] (empty value)")
            _check_got(got[3], b"A", "get_many()[3] (repeated key)")

        self._play(rule)

    def test_get_many_of_no_keys_is_an_empty_list(self) -> None:
        def rule(b: Any, ns: str) -> _Scenario:
            got = yield _step("get_many", [])
            _check(got == [], f"get_many([]) must return [], got {got!r}")

        self._play(rule)

    def test_set_many_stores_every_item(self) -> None:
        def rule(b: Any, ns: str) -> _Scenario:
            items = {f"{ns}m{i}": v for i, v in enumerate(self.sample_values())}
            yield _step("set_many", items)
            yield _step("set_many", {})
            for key, value in items.items():
                _check_got((yield _step("get", key)), value, f"get({key!r}) after set_many()")

        self._play(rule)

    def test_delete_many_counts_the_keys_it_removed(self) -> None:
        def rule(b: Any, ns: str) -> _Scenario:
            yield _step("set_many", {ns + "a": b"1", ns + "b": b"2", ns + "keep": b"3"})
            removed = yield _step("delete_many", [ns + "a", ns + "b", ns + "absent"])
            _check(removed == 2, f"delete_many() of 2 present + 1 absent keys returned {removed!r}")
            _check_missing((yield _step("get", ns + "a")), "get() after delete_many()")
            got = yield _step("get", ns + "keep")
            _check_got(got, b"3", "a key delete_many() was not given")
            none = yield _step("delete_many", [])
            _check(none == 0, f"delete_many([]) must return 0, got {none!r}")

        self._play(rule)

    # -- clear --------------------------------------------------------------------

    def test_clear_removes_only_keys_with_the_prefix(self) -> None:
        def rule(b: Any, ns: str) -> _Scenario:
            yield _step(
                "set_many", {ns + "users:1": b"a", ns + "users:2": b"b", ns + "users:3": b"c"}
            )
            yield _step(
                "set_many", {ns + "orders:1": b"d", ns + "user": b"e", ns + "xusers:1": b"f"}
            )
            removed = yield _step("clear", ns + "users:")
            _check(removed == 3, f"clear() of a prefix holding 3 keys returned {removed!r}")
            for key in ("users:1", "users:2", "users:3"):
                got = yield _step("get", ns + key)
                _check_missing(got, f"get({key!r}) after clear('users:')")
            for key, value in (("orders:1", b"d"), ("user", b"e"), ("xusers:1", b"f")):
                got = yield _step("get", ns + key)
                _check_got(got, value, f"get({key!r}) after clear('users:')")

        self._play(rule)

    def test_clear_takes_the_prefix_literally(self) -> None:
        def rule(b: Any, ns: str) -> _Scenario:
            target, decoys = _literal_prefix_keys(ns)
            yield _step("set_many", {key: b"v" for key in (target, *decoys)})
            removed = yield _step("clear", ns + _PATTERN_PREFIX)
            wrongly_removed = []
            for key in decoys:
                if (yield _step("get", key)) is MISSING:
                    wrongly_removed.append(key)  # noqa: PERF401 (no yield in a comprehension)
            _check_literal_clear(removed, wrongly_removed)
            got = yield _step("get", target)
            _check_missing(got, "get() of the key under the cleared prefix")

        self._play(rule)

    def test_clear_of_an_unused_prefix_removes_nothing(self) -> None:
        def rule(b: Any, ns: str) -> _Scenario:
            yield _step("set", ns + "k", b"v")
            removed = yield _step("clear", ns + "nothing-here:")
            _check(removed == 0, f"clear() of an unused prefix returned {removed!r}")
            got = yield _step("get", ns + "k")
            _check_got(got, b"v", "get() after clearing another prefix")

        self._play(rule)

    # -- expiry -------------------------------------------------------------------

    def test_value_with_a_ttl_is_readable_before_it_expires(self) -> None:
        def rule(b: Any, ns: str) -> _Scenario:
            yield _step("set", ns + "k", b"v", ttl=self.long_ttl)
            got = yield _step("get", ns + "k")
            _check_got(got, b"v", f"get() right after set(ttl={self.long_ttl})")

        self._play(rule)

    def test_value_expires_after_its_ttl(self) -> None:
        def rule(b: Any, ns: str) -> _Scenario:
            yield _step("set", ns + "k", b"v", ttl=self.short_ttl)
            yield from self._until_missing(ns + "k", f"set(ttl={self.short_ttl})")

        self._play(rule)

    def test_set_many_applies_the_ttl_to_every_item(self) -> None:
        def rule(b: Any, ns: str) -> _Scenario:
            yield _step("set_many", {ns + "a": b"1", ns + "b": b"2"}, ttl=self.short_ttl)
            what = f"set_many(ttl={self.short_ttl})"
            yield from self._until_missing(ns + "a", what)
            yield from self._until_missing(ns + "b", what)

        self._play(rule)

    def test_value_without_ttl_outlives_a_short_ttl(self) -> None:
        def rule(b: Any, ns: str) -> _Scenario:
            yield _step("set", ns + "forever", b"v", ttl=None)
            yield _step("set", ns + "brief", b"v", ttl=self.short_ttl)
            yield from self._until_missing(ns + "brief", f"set(ttl={self.short_ttl})")
            got = yield _step("get", ns + "forever")
            _check_got(got, b"v", "get() of a ttl=None entry (no expiry)")

        self._play(rule)

    def test_overwrite_without_ttl_drops_the_old_expiry(self) -> None:
        def rule(b: Any, ns: str) -> _Scenario:
            yield _step("set", ns + "k", b"old", ttl=self.short_ttl)
            yield _step("set", ns + "k", b"new")
            yield _step("set", ns + "marker", b"v", ttl=self.short_ttl)
            yield from self._until_missing(ns + "marker", f"set(ttl={self.short_ttl})")
            _check_got(
                (yield _step("get", ns + "k")),
                b"new",
                "an entry set with a ttl, then overwritten with ttl=None (which must drop the "
                "old expiry)",
            )

        self._play(rule)

    def test_delete_of_an_expired_key_returns_false(self) -> None:
        def rule(b: Any, ns: str) -> _Scenario:
            yield _step("set", ns + "k", b"v", ttl=self.short_ttl)
            yield from self._until_missing(ns + "k", f"set(ttl={self.short_ttl})")
            reply = yield _step("delete", ns + "k")
            _check_bool_reply(reply, False, "delete() of an expired key")

        self._play(rule)

    def test_ttl_inspection_when_declared(self) -> None:
        def rule(b: Any, ns: str) -> _Scenario:
            if CAP_TTL not in _check_capabilities(b):
                _skip("backend does not declare the 'ttl' capability")
            yield _step("set", ns + "forever", b"v")
            yield _step("set", ns + "timed", b"v", ttl=self.long_ttl)
            _check_ttl_replies(
                (yield _step("ttl", ns + "absent")),
                (yield _step("ttl", ns + "forever")),
                (yield _step("ttl", ns + "timed")),
                self.long_ttl,
            )

        self._play(rule)

    # -- optional capabilities ----------------------------------------------------

    def test_guarded_writes_refuse_a_key_that_changed_when_declared(self) -> None:
        def rule(b: Any, ns: str) -> _Scenario:
            if CAP_GUARDED_WRITES not in _check_capabilities(b):
                _skip("backend does not declare the 'guarded_writes' capability")
            key, ttl = ns + "k", self.long_ttl
            _check_guarded_replies(
                [
                    (yield _step("set_guarded", key, b"v1", ttl, "")),  # absent, as read: written
                    (yield _step("set_guarded", key, b"v2", ttl, "")),  # read absent, now v1: no
                    (yield _step("set_guarded", key, b"v2", ttl, _sha1(b"v1"))),  # still v1: yes
                    (yield _step("tombstone", key, ttl)),  # held v2: True
                ],
                (yield _step("get", key)),
                [
                    (yield _step("set_guarded", key, b"v3", ttl, _sha1(b"v2"))),
                    (yield _step("tombstone", key, ttl)),
                ],
            )

        self._play(rule)

    def test_a_lock_is_exclusive_and_released_only_by_its_token(self) -> None:
        def rule(b: Any, ns: str) -> _Scenario:
            if CAP_LOCKING not in getattr(b, "capabilities", ()):
                _skip("the backend does not declare the 'locking' capability")
            key = ns + "lock"
            reply = yield _step("acquire_lock", key, "t1", self.long_ttl)
            _check_bool_reply(reply, True, "acquire_lock() of a free key")
            reply = yield _step("acquire_lock", key, "t2", self.long_ttl)
            _check_bool_reply(reply, False, "acquire_lock() of a held key")
            reply = yield _step("release_lock", key, "t2")
            _check_bool_reply(reply, False, "release_lock() with another token")
            reply = yield _step("release_lock", key, "t1")
            _check_bool_reply(reply, True, "release_lock() by its holder")
            reply = yield _step("acquire_lock", key, "t2", self.long_ttl)
            _check_bool_reply(reply, True, "acquire_lock() after the holder released")
            yield _step("release_lock", key, "t2")

        self._play(rule)

    def test_a_lock_is_free_again_after_its_lease(self) -> None:
        def rule(b: Any, ns: str) -> _Scenario:
            if CAP_LOCKING not in getattr(b, "capabilities", ()):
                _skip("the backend does not declare the 'locking' capability")
            key = ns + "lease"
            yield _step("acquire_lock", key, "dead-holder", self.short_ttl)
            deadline = time.monotonic() + self.expiry_deadline
            while not (yield _step("acquire_lock", key, "next", self.long_ttl)):
                if time.monotonic() > deadline:
                    _fail(_lease_outlived(self))
                yield _step(_SLEEP, self.poll_interval)
            yield _step("release_lock", key, "next")

        self._play(rule)

    def test_atomic_miss_reads_or_locks_and_stores_then_unlocks_when_declared(self) -> None:
        def rule(b: Any, ns: str) -> _Scenario:
            caps = _check_capabilities(b)
            if CAP_ATOMIC_MISS not in caps:
                _skip("the backend does not declare the 'atomic_miss' capability")
            return _atomic_miss_steps(ns, self.long_ttl, CAP_GUARDED_WRITES in caps)

        self._play(rule)

    def test_an_atomic_miss_lock_is_free_again_after_its_lease(self) -> None:
        def rule(b: Any, ns: str) -> _Scenario:
            if CAP_ATOMIC_MISS not in _check_capabilities(b):
                _skip("the backend does not declare the 'atomic_miss' capability")
            return _atomic_lease_steps(ns, self)

        self._play(rule)

    def test_generations_and_change_notifications(self) -> None:
        def rule(b: Any, ns: str) -> _Scenario:
            if CAP_INVALIDATION not in getattr(b, "capabilities", ()):
                _skip("the backend does not declare the 'invalidation' capability")
            poll = self.poll_interval
            counter, key, notices, end = yield _step(
                _BLOCKING, _check_coherence, b, self.expiry_deadline, poll
            )
            try:
                yield _step("set", key, b"v")
                yield _step(_BLOCKING, notices.wait, key, end, poll, "a write")
                notices.seen.clear()
                yield _step("delete", key)
                yield _step(_BLOCKING, notices.wait, key, end, poll, "a delete")
            finally:
                yield _step("delete", key)
                yield _step("delete", counter)

        self._play(rule)

    # -- robustness ---------------------------------------------------------------

    def test_concurrent_writers_lose_nothing(self) -> None:
        def writer(ns: str, worker: int) -> _Scenario:
            for i in range(25):
                yield _step("set", f"{ns}{worker}:{i}", f"{worker}/{i}".encode())
                got = yield _step("get", f"{ns}{worker}:{i}")
                _check_got(got, f"{worker}/{i}".encode(), "own write")

        def rule(b: Any, ns: str) -> _Scenario:
            yield _step(_TOGETHER, *(writer(ns, w) for w in range(self.concurrency)))
            for worker in range(self.concurrency):
                got = yield _step("get_many", [f"{ns}{worker}:{i}" for i in range(25)])
                for i, value in enumerate(got):
                    what = f"write {i} of {'task' if self._is_async else 'thread'} {worker}"
                    _check_got(value, f"{worker}/{i}".encode(), what)

        self._play(rule)
