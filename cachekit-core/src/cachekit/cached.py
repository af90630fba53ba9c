"""The per-call engine: what happens when a decorated function is called.

Decoration builds a :class:`CachedState` (key builder, L1, counters) and a thin
wrapper. The wrapper's hit path touches only local variables of its closure::

    typed tuple key  ->  L1 dict lookup  ->  expiry check  ->  fresh copy / immutable value

No plugin hook, lock or logging call runs on a hit. Everything else - reading the
environment, building the backend, resolving serializer and encryptor, the circuit
breaker - happens once, on the first miss, and is frozen into a :class:`Plan`.

A miss goes through *single flight*: concurrent callers of the same key in this
process (threads and asyncio tasks alike) wait for one computation. If that
computation raises, every waiter gets the exception and nothing is stored.

Backend trouble never reaches the caller: any exception from the backend is
counted, fed to the endpoint's circuit breaker and turns into "run the function";
unreadable entries (corrupt, foreign, failing authentication) are misses that get
overwritten. The caller's own exceptions propagate unchanged and are not cached.
"""

from __future__ import annotations

import os
import sys
import weakref
from _thread import allocate_lock
from contextlib import nullcontext
from time import monotonic

from cachekit._engine.coherence import CoherenceBook
from cachekit._engine.drivers import run_async, run_sync
from cachekit._engine.flight import SingleFlight
from cachekit._engine.hit import make_wrapper
from cachekit._engine.l2 import L2Access, _log
from cachekit._engine.miss import maintenance_steps
from cachekit._engine.options import (
    UNSET,
    Options,
    Plan,
    _defining_class,
    _is_method,
    _Place,
    check_backend,
    check_serializer,
)
from cachekit._engine.plan import _url_backends, build_plan, degraded
from cachekit._engine.store import L1Store
from cachekit.coherence import DEGRADED_L1_TTL
from cachekit.constants import (
    CAP_NONBLOCKING,
)
from cachekit.errors import (
    CacheKeyError,
    ConfigurationError,
)
from cachekit.keys import KeyBuilder, _Unbindable
from cachekit.l1 import L1Cache
from cachekit.stats import (
    CacheInfo,
    new_counters,
)
from cachekit.tenancy import (
    TenantEncryptors,
    current_tenant,
    required_tenant,
    tenant_scope,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

__all__ = [
    "_url_backends",  # the same dict as cachekit._engine.plan's (bench/bench_redis.py)
    "UNSET",
    "CachedState",
    "Options",
    "Plan",
    "all_states",
    "check_backend",
    "check_serializer",
    "make_wrapper",
]

_DEBUG = 10
# Invalidation tasks started for callers that may never await them (invalidate_in_loop).
_UNAWAITED: set[Any] = set()


_states: weakref.WeakSet[CachedState] = weakref.WeakSet()


def all_states() -> list[CachedState]:
    """Every live decorated function's state (for stats, health and invalidate)."""
    return list(_states)


# --- per-function state -----------------------------------------------------------------


class CachedState(L1Store, SingleFlight, L2Access, CoherenceBook):
    """All state of one decorated function, shared by its wrapper and attributes."""

    #: The ``cachekit`` logger's isEnabledFor, set with the first plan.
    debug_on: Callable[[int], bool]

    def __init__(self, func: Callable[..., Any], options: Options, *, is_async: bool) -> None:
        from cachekit.keys import function_name

        self.func = func
        self.options = options
        self.is_async = is_async
        self.name = function_name(func)
        skip_first = _is_method(func) if options.include_self is None else not options.include_self
        self.skip_first = skip_first
        self.builder = KeyBuilder(
            func,
            namespace=options.namespace,
            skip_first=skip_first,
            owner=options.include_self is None,
            key_func=options.key,
            tenant=current_tenant if options.tenant_extractor is not None else None,
            secure=options.encryption not in (False, None),
        )
        self.l1: L1Cache | None = None
        if options.l1:
            self.l1 = L1Cache(
                max_entries=options.l1_max_entries or 10_000,
                max_bytes=int(options.l1_max_size_mb * 1024 * 1024)
                if options.l1_max_size_mb
                else None,
                name=self.name,
            )
        self.counts = new_counters()
        self.plan: Plan | None = None
        # A plan built while the backend failed is L1 only, and rebuilt at this time.
        self.replan_at: float | None = None
        self._plan_lock = allocate_lock()
        self._init_flights()
        self._last_error_log = -1e9
        self._warned: set[str] = set()
        self._init_coherence()
        self.locking = False  # stampede lock across processes (backends with "locking")
        self.guarded = False  # writes guarded against invalidations ("guarded_writes")
        self.atomic = False  # a locked miss in two round trips ("atomic_miss")
        _states.add(self)

    def __repr__(self) -> str:
        return f"<cachekit state {self.name}>"

    # -- plan ----------------------------------------------------------------------

    def resolve(self) -> Plan:
        plan = self.plan
        if plan is not None:
            due = self.replan_at
            if due is None or monotonic() < due:
                return plan
        with self._plan_lock:
            due = self.replan_at
            if self.plan is None or (due is not None and monotonic() >= due):
                self.replan_at = None
                self.plan = self._build_plan()
                if self.coherence is not None and not self.gens_ok:
                    # First read of the generations, before any miss notes its epoch: a
                    # backend may wait there for its notification stream, whose "notices
                    # may be lost" reset then lands before the first store, not after it.
                    self.refresh_generations()
            return self.plan

    def _build_plan(self) -> Plan:
        """Resolve the plan (cachekit._engine.plan), then take on what it found."""
        found = build_plan(
            self.options,
            name=self.name,
            is_async=self.is_async,
            has_naming_key=self.builder.secret is not None,
        )
        for tag, msg, *args in found.warnings:
            self._warn_once(tag, msg, *args)
        if self.l1 is not None and found.l1_max_entries is not None:
            self.l1.max_entries = found.l1_max_entries
        if found.naming_key:
            self.builder.use_naming_key(found.naming_key)
        plan: Plan = found.plan
        if found.listen_to is not None and not self._attach_coherence(
            found.listen_to, plan.breaker, plan.endpoint
        ):
            # Its notifications cannot be heard (a backend failure, counted and logged):
            # L1 only, short-lived as while notifications are down; the plan is rebuilt
            # after that time (without I/O while the breaker is open).
            plan = degraded(plan)
            self.replan_at = monotonic() + DEGRADED_L1_TTL
        self.locking, self.guarded, self.atomic = found.locking, found.guarded, found.atomic
        # Bound once (logging is imported on first use, not with cachekit): the L2 hit
        # of a function without L1 asks it before calling debug().
        self.debug_on = _log().isEnabledFor
        return plan

    # -- coherence (see cachekit.coherence) ----------------------------------------

    def _attach_coherence(self, backend: Any, breaker: Any, endpoint: str | None) -> bool:
        """Subscribe to the backend's notifications; False when that failed (or its
        breaker is open): a backend failure like any other, never the caller's."""
        from cachekit.coherence import generation_keys, router_for

        if breaker is not None and not breaker.allow():
            return False
        gen_keys = generation_keys(self.builder.prefix, self.options.namespace, self.options.tags)
        try:
            coherence = backend.coherence()
            if coherence is not None:
                router_for(coherence).register(self, gen_keys)
        except Exception as exc:
            self._backend_failed(_Place(breaker=breaker, endpoint=endpoint), "listen", exc)
            return False
        if breaker is not None:
            breaker.release_probe()  # no verdict: subscribing need not reach the server
        if coherence is not None:
            self.gen_keys = gen_keys
            self.coherence = coherence
        return True

    def debug(self, event: str, bkey: str | None, args: Any, kwargs: Any) -> None:
        """DEBUG line for a miss-path event, naming only the hashed part of the key."""
        log = _log()
        if log.isEnabledFor(_DEBUG):
            if bkey is None:
                try:
                    bkey = self.builder.backend_key(args, kwargs)
                except Exception:
                    bkey = "?"
            log.debug("%s %s key=...%s", event, self.name, bkey[-12:])

    def _warn_once(self, tag: str, msg: str, *args: Any) -> None:
        if tag not in self._warned:
            self._warned.add(tag)
            _log().warning(msg, *args)

    def check_event_loop(self, plan: Plan) -> None:
        """Say once that a sync function's backend I/O blocks a running event loop.

        Called on the miss path only, before its backend I/O: a loop is running in
        this thread only if asyncio was imported, so programs without asyncio pay a
        dict lookup.
        """
        if "in-loop" in self._warned:
            return
        asyncio = sys.modules.get("asyncio")
        if asyncio is None or asyncio._get_running_loop() is None:
            return
        if CAP_NONBLOCKING in getattr(plan.backend, "capabilities", ()):
            return
        self._warn_once(
            "in-loop",
            "%s is a regular function called inside a running event loop: its backend I/O "
            "on a miss blocks the event loop (up to the socket timeout per operation). Make "
            "it `async def`, or call it with `await asyncio.to_thread(...)`. Logged once "
            "per function.",
            self.name,
        )

    # -- attributes of the decorated function -------------------------------------

    def _key_args(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, ...]:
        """A call's arguments, from what invalidate_cache()/cache_key() take.

        They take no self/cls; ``_self=`` among ``kwargs`` (taken out) gives one, an
        instance or a class. Without it, a method whose keys carry its class uses the
        class it is defined in (E040 when that is unknown, or when its instances are
        keyed by ``__cache_key__``: then only an instance names an entry).
        """
        given = kwargs.pop("_self", None)
        if not self.skip_first:
            if given is not None:
                raise ConfigurationError(
                    f"_self= was given, but {self.name} keys its first argument like any other."
                )
            return args
        if given is None and self.builder.owner:
            given, first = _defining_class(self.func)
            if given is None:
                raise ConfigurationError(
                    f"cannot tell which class {self.name} belongs to; pass _self= (an "
                    "instance, or a class), since the class is part of a method's keys."
                )
            if first != "cls" and getattr(given, "__cache_key__", None) is not None:
                raise ConfigurationError(
                    f"{given.__qualname__} defines __cache_key__, so each of its instances "
                    f"has its own entries of {self.name}: pass _self=<the instance>."
                )
        return (given, *args)

    def _fresh_salt(self, reread: bool = False) -> None:
        """Keys computed outside a call (cache_key, invalidate) need current generations.

        ``reread``: read them even when no notice said they changed. An entry's
        invalidation does: another process may have bumped a generation whose notice
        has not arrived yet, and a key with the old one would replace an entry nobody
        reads any more while the live one keeps its old value.
        """
        self.resolve()
        if self.coherence is not None and (reread or not self.gens_ok):
            self.refresh_generations()

    def _tenant_scope(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """The tenant of a key computed outside a call (E044 when it has none).

        ``_tenant=`` among ``kwargs`` (taken out) names it directly; otherwise the
        extractor sees ``args``, with self/cls as _key_args made them.
        """
        extractor = self.options.tenant_extractor
        given = kwargs.pop("_tenant", None)
        if extractor is None:
            if given is not None:
                raise ConfigurationError(
                    f"_tenant= was given, but {self.name} has no tenant_extractor."
                )
            return nullcontext()
        if given is not None:
            tenant = required_tenant(lambda: given, self.name, (), {})
        else:
            tenant = required_tenant(extractor, self.name, args, kwargs)
        assert tenant is not None
        return tenant_scope(tenant)

    def cache_key(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
        self._fresh_salt()
        try:
            args = self._key_args(args, kwargs)
            with self._tenant_scope(args, kwargs):
                return self.builder.backend_key(args, kwargs)
        except _Unbindable:
            raise CacheKeyError(
                f"the arguments do not match the signature of {self.name}."
            ) from None

    def _targets(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, str] | None:
        """(L1 key, backend key) of one entry, or None meaning "every entry"."""
        if not args and set(kwargs) <= {"_tenant"} and self.builder._names:
            if kwargs:
                raise ConfigurationError(
                    f"invalidate_cache(_tenant=...) without arguments: {self.name} cannot "
                    "drop one tenant's entries at once; pass the arguments of the entry, "
                    "or call invalidate_cache() to drop every tenant's entries."
                )
            return None
        self._fresh_salt(reread=True)
        try:
            args = self._key_args(args, kwargs)
            with self._tenant_scope(args, kwargs):
                return self.builder.keys(args, kwargs)
        except _Unbindable:
            raise CacheKeyError(
                f"the arguments do not match the signature of {self.name}."
            ) from None

    def invalidate(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> int:
        target = self._targets(args, kwargs)
        if target is None:
            return self.clear()
        plan = self.resolve()
        self._check_sync_maintenance(plan)
        bkey, removed = self._drop_l1(target)
        assert bkey is not None
        return removed + int(bool(self._backend_call(plan, *self._remove_op(plan, bkey))))

    async def ainvalidate(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> int:
        return await self._ainvalidate_backend(*self._invalidate_l1(args, kwargs))

    def invalidate_in_loop(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """``invalidate_cache()`` of an async function, called inside a running loop.

        The arguments are checked and this process's L1 entry is dropped before it
        returns, so the next call sees no old value even if nobody awaits the result;
        the backend's part runs in a task, which the caller awaits for the count.
        """
        import asyncio

        task = asyncio.get_running_loop().create_task(
            self._ainvalidate_backend(*self._invalidate_l1(args, kwargs))
        )
        # The loop keeps only a weak reference to a task: hold it until it is done.
        _UNAWAITED.add(task)
        task.add_done_callback(_UNAWAITED.discard)
        return task

    def _invalidate_l1(
        self, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> tuple[str | None, int]:
        """(backend key, L1 entries dropped) of one entry; the key is None for every entry."""
        return self._drop_l1(self._targets(args, kwargs))

    def _drop_l1(self, target: tuple[Any, str] | None) -> tuple[str | None, int]:
        """The L1 part of an invalidation (one decision for the sync and async paths)."""
        self.note_invalidation()
        if target is None:
            return None, self.l1.clear() if self.l1 is not None else 0
        lkey, bkey = target
        return bkey, 1 if self.l1 is not None and self.l1.pop(lkey) else 0

    async def _ainvalidate_backend(self, bkey: str | None, removed: int) -> int:
        if bkey is None:
            return removed + await self.aclear()
        plan = self.resolve()
        return removed + int(bool(await self._abackend_call(plan, *self._remove_op(plan, bkey))))

    def clear(self, reset_stats: bool = False) -> int:
        plan = self.resolve()
        if reset_stats:
            self.reset_stats()
        if self.coherence is not None:
            # O(1) for every process: move the function's generation, so all of its
            # keys change; the old entries expire by their TTL.
            removed = len(self.l1) if self.l1 is not None else 0
            self.bump_generation(self.gen_keys[0])
            return removed
        self._check_sync_maintenance(plan)
        self.note_invalidation()
        removed = self.l1.clear() if self.l1 is not None else 0
        return removed + int(self._backend_call(plan, "clear", self.builder.prefix) or 0)

    async def aclear(self) -> int:
        if self.coherence is not None:
            import asyncio

            return await asyncio.to_thread(self.clear)
        self.note_invalidation()
        removed = self.l1.clear() if self.l1 is not None else 0
        plan = self.resolve()
        return removed + int(await self._abackend_call(plan, "clear", self.builder.prefix) or 0)

    def _check_sync_maintenance(self, plan: Plan) -> None:
        """A sync invalidation of an async-only backend cannot run inside an event loop."""
        if plan.backend is None and plan.abackend_mode == "async":
            import asyncio

            try:
                asyncio.get_running_loop()
            except RuntimeError:
                return
            raise ConfigurationError(
                f"{self.name} uses an asynchronous backend and was invalidated from inside a "
                "running event loop; use `await func.ainvalidate_cache(...)` there."
            )

    def _backend_call(self, plan: Plan, method: str, *args: Any) -> Any:
        """A maintenance call (delete/clear) from synchronous code, failing open."""
        if plan.backend is None and plan.abackend is None:
            return 0
        self._check_sync_maintenance(plan)
        steps = maintenance_steps(self, plan, method, *args)
        if plan.backend is None and plan.abackend_mode == "async":
            import asyncio

            return asyncio.run(run_async(self, plan, steps))
        return run_sync(self, plan, steps)

    async def _abackend_call(self, plan: Plan, method: str, *args: Any) -> Any:
        """A maintenance call from async code, failing open."""
        if plan.backend is None and plan.abackend is None:
            return 0
        return await run_async(self, plan, maintenance_steps(self, plan, method, *args))

    def info(self) -> CacheInfo:
        l1 = self.l1
        return CacheInfo.from_counters(
            self.counts,
            size=len(l1) if l1 is not None else 0,
            maxsize=l1.max_entries if l1 is not None else 0,
            nbytes=l1.nbytes if l1 is not None else 0,
        )

    def reset_stats(self) -> None:
        self.counts[:] = new_counters()

    def health(self) -> dict[str, Any]:
        plan = self.resolve()
        report: dict[str, Any] = {
            "function": self.name,
            "status": "healthy",
            "l1": {
                "enabled": self.l1 is not None,
                "entries": len(self.l1) if self.l1 is not None else 0,
                "bytes": self.l1.nbytes if self.l1 is not None else 0,
            },
            "backend": None,
            "stats": self.info().as_dict(),
        }
        backend = plan.backend if plan.backend is not None else plan.abackend
        if backend is not None:
            entry: dict[str, Any] = {"endpoint": plan.endpoint}
            if plan.breaker is not None:
                entry["circuit_breaker"] = plan.breaker.snapshot()
            if plan.backend is not None or plan.abackend_mode != "async":
                start = monotonic()
                try:
                    ok = bool(backend.ping())
                    entry["error"] = None
                except Exception as exc:
                    ok = False
                    entry["error"] = f"{type(exc).__name__}: {exc}"
                entry["latency_ms"] = round((monotonic() - start) * 1000, 3)
                entry["reachable"] = ok
            else:
                entry["reachable"] = None  # async-only: use check_health from a loop
            coherence = self.coherence
            if coherence is not None and hasattr(coherence, "healthy"):
                # While the change notifications are down, L1 entries live at most
                # DEGRADED_L1_TTL: worth seeing on a health page.
                entry["notifications"] = {
                    "connected": bool(coherence.healthy),
                    "reconnects": int(getattr(coherence, "reconnects", 0)),
                }
            nodes = getattr(backend, "node_breakers", None)
            found = nodes() if callable(nodes) else None
            if found:  # a Cluster's per-node breakers (cachekit-redis)
                entry["node_breakers"] = found
            report["backend"] = entry
            if (
                entry.get("reachable") is False
                or (plan.breaker is not None and plan.breaker.state != "closed")
                or any(node.get("state") != "closed" for node in found or ())
            ):
                report["status"] = "degraded"
        return report

    def after_fork(self) -> None:
        self._init_flights()
        self._plan_lock = allocate_lock()
        encryptor = self.plan.encryptor if self.plan is not None else None
        if isinstance(encryptor, TenantEncryptors):
            encryptor.after_fork()


def _after_fork() -> None:
    for state in list(_states):
        state.after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork)
