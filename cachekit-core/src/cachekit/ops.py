"""Operations across every cached function of the process: invalidate, stats, health,
close."""

from __future__ import annotations

from cachekit.cached import all_states
from cachekit.errors import ConfigurationError
from cachekit.keys import validate_namespace
from cachekit.l1 import budget

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable
    from typing import Any

__all__ = ["aclose", "close", "health", "invalidate", "stats"]


def invalidate(*, namespace: str | None = None, tags: str | Iterable[str] | None = None) -> int:
    """Remove every entry of a namespace and/or of functions carrying any of ``tags``.

    L1 entries of matching functions in this process are dropped, and their L2
    entries are removed from the backend, so other processes sharing it miss too.
    Returns the number of entries removed (L1 and L2 together).
    """
    if namespace is None and tags is None:
        raise ConfigurationError(
            "cachekit.invalidate() needs namespace=... and/or tags=...; "
            "use func.cache_clear() for a single function."
        )
    validate_namespace(namespace)
    wanted = {tags} if isinstance(tags, str) else set(tags or ())
    removed = 0
    # Backends with generations: one counter increment per namespace/tag and backend
    # invalidates every process, including functions this process never imported.
    from cachekit.coherence import GENERATION_PREFIX

    counters = ([f"{GENERATION_PREFIX}n:{namespace}"] if namespace is not None else []) + [
        f"{GENERATION_PREFIX}t:{tag}" for tag in sorted(wanted)
    ]
    matching = [
        state
        for state in all_states()
        if (namespace is not None and state.options.namespace == namespace)
        or wanted.intersection(state.options.tags)
    ]
    # Counted before the bump: its notification may empty these L1s right away.
    removed += sum(
        len(state.l1) for state in matching if state.coherence is not None and state.l1 is not None
    )
    for state in matching:
        state.resolve()  # a function not called yet still learns its backend's coherence
    coherences = {id(s.coherence): s.coherence for s in all_states() if s.coherence is not None}
    default = _environment_coherence()
    if default is not None:
        coherences.setdefault(id(default), default)
    bumped: set[int] = set()
    for coherence in coherences.values():
        if id(coherence) in bumped:
            continue
        bumped.add(id(coherence))
        for key in counters:
            try:
                coherence.bump(key)
            except Exception as exc:  # fail open, like every backend call
                _log_bump_failure(key, exc)
    for state in matching:
        if state.coherence is not None:
            state.coherence_reset()  # don't wait for the notification
        else:
            removed += state.clear()
    if namespace is not None:
        # Backends without generations: entries written by functions this process
        # never imported live under the same prefix; clear it once per backend.
        prefix = f"cachekit:{namespace}:"
        seen: set[int] = set()
        for state in all_states():
            plan = state.plan
            backend = None if plan is None else (plan.backend or plan.abackend)
            if plan is None or backend is None or state.coherence is not None:
                continue
            if id(backend) in seen:
                continue
            seen.add(id(backend))
            removed += int(state._backend_call(plan, "clear", prefix) or 0)
    return removed


def _environment_coherence() -> Any:
    """The coherence of the environment's backend, so that functions this process
    never imported are invalidated too (None when there is none or it fails)."""
    from cachekit._engine.plan import _backend_from_url
    from cachekit.config import Settings
    from cachekit.constants import CAP_INVALIDATION

    try:
        url = Settings.from_env().backend_url
        if url is None:
            return None
        backend = _backend_from_url(url, "sync")
        if CAP_INVALIDATION not in getattr(backend, "capabilities", ()):
            return None
        return backend.coherence()
    except Exception as exc:  # never fail an invalidation on the environment
        _log_bump_failure("environment backend", exc)
        return None


def _log_bump_failure(key: str, exc: BaseException) -> None:
    import logging

    logging.getLogger("cachekit").warning(
        "[E010] invalidation could not reach the backend (%s: %s: %s); entries expire "
        "with their TTL",
        key,
        type(exc).__name__,
        exc,
    )


def stats() -> dict[str, Any]:
    """Counters of every cached function, totals, and the L1 byte budget."""
    functions: dict[str, dict[str, Any]] = {}
    totals = {"hits": 0, "misses": 0, "l1_hits": 0, "l2_hits": 0, "errors": 0}
    for state in sorted(all_states(), key=lambda s: s.name):
        info = state.info().as_dict()
        name = state.name
        if name in functions:  # two functions with one qualname (redefinitions)
            name = f"{name}#{id(state):x}"
        functions[name] = info
        for k in totals:
            totals[k] += info[k]
    total = totals["hits"] + totals["misses"]
    return {
        "functions": functions,
        "totals": {**totals, "hit_rate": round(totals["hits"] / total, 4) if total else 0.0},
        "l1": {"bytes": budget.used, "max_bytes": budget.max_bytes},
    }


def health() -> dict[str, Any]:
    """A JSON-ready report for an HTTP health endpoint.

    ``status`` is ``"healthy"``, or ``"degraded"`` when a backend is unreachable,
    a circuit breaker is not closed, or a plugin failed to load. cachekit keeps
    serving (uncached or from L1) while degraded, so this is a warning, not an outage.
    """
    from cachekit import plugins
    from cachekit.breaker import breakers

    status = "healthy"
    backends: dict[str, dict[str, Any]] = {}
    for state in all_states():
        plan = state.plan
        if plan is None or plan.endpoint is None or plan.endpoint in backends:
            continue
        report = state.health()["backend"]
        backends[plan.endpoint] = report
        if report.get("reachable") is False:
            status = "degraded"
    # Only breakers of endpoints that a live function still uses.
    live = {id(s.plan.breaker) for s in all_states() if s.plan is not None and s.plan.breaker}
    breaker_states = [b.snapshot() for b in breakers() if id(b) in live]
    if any(b["state"] != "closed" for b in breaker_states):
        status = "degraded"
    plugin_errors = []
    reg = plugins._registry
    if reg is not None:
        plugin_errors = [p.as_dict() for p in reg.errors()]
        if plugin_errors:
            status = "degraded"
    return {
        "status": status,
        "functions": len(all_states()),
        "l1": {"bytes": budget.used, "max_bytes": budget.max_bytes},
        "backends": backends,
        "circuit_breakers": breaker_states,
        "plugin_errors": plugin_errors,
    }


def close() -> None:
    """Close every backend and notification connection cachekit opened in this process.

    For a fork (call it in the parent just before), the end of a test, a reload. The
    backends built from URLs and the notification streams of every function's backend
    are closed; calling it twice is harmless, and the next call of a cached function
    reconnects. Backend objects passed as ``backend=`` are yours to close. Inside a
    running event loop, use ``await cachekit.aclose()``: async backends close their
    connections in the loop that opened them.
    """
    plain, coroutines = _opened()
    _close_each(plain)
    if not coroutines:
        return
    import asyncio

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        for backend in coroutines:
            asyncio.run(_aclose_one(backend))
        return
    _log().warning(
        "cachekit.close() was called inside a running event loop; the async backends' "
        "connections of this loop stay open: use `await cachekit.aclose()` there."
    )


async def aclose() -> None:
    """:func:`close` for async code: async backends close this loop's connections too."""
    import asyncio

    plain, coroutines = _opened()
    await asyncio.to_thread(_close_each, plain)  # joining a listener thread may block
    for backend in coroutines:
        await _aclose_one(backend)


def _opened() -> tuple[list[Any], list[Any]]:
    """What :func:`close` closes: (objects with a plain ``close()``, async backends)."""
    import inspect

    from cachekit._engine.plan import _url_backends
    from cachekit.constants import CAP_INVALIDATION

    owned = [b for b in list(_url_backends.values()) if b is not None]
    used = [s.plan.backend or s.plan.abackend for s in all_states() if s.plan is not None]
    plain: list[Any] = []
    coroutines: list[Any] = []
    seen: set[int] = set()
    for backend in owned:
        seen.add(id(backend))
        close_method = getattr(backend, "close", None)
        if inspect.iscoroutinefunction(close_method):
            coroutines.append(backend)
        elif callable(close_method):
            plain.append(backend)
    # The notification streams cachekit started, whoever built their backends.
    coherences = [s.coherence for s in all_states() if s.coherence is not None]
    for backend in owned + [b for b in used if b is not None]:
        if CAP_INVALIDATION in getattr(backend, "capabilities", ()):
            try:
                coherences.append(backend.coherence())
            except Exception as exc:
                _log().debug("cachekit.close(): no coherence for %r: %r", backend, exc)
    for coherence in coherences:
        if id(coherence) not in seen and callable(getattr(coherence, "close", None)):
            seen.add(id(coherence))
            plain.append(coherence)
    return plain, coroutines


def _close_each(objects: list[Any]) -> None:
    for obj in objects:
        try:
            obj.close()
        except Exception as exc:  # closing never fails the caller
            _log().debug("cachekit.close(): closing %r failed: %r", obj, exc)


async def _aclose_one(backend: Any) -> None:
    try:
        await backend.close()
    except Exception as exc:
        _log().debug("cachekit.close(): closing %r failed: %r", backend, exc)


def _log() -> Any:
    import logging

    return logging.getLogger("cachekit")
