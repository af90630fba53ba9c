"""The hit path: one small closure per option combination, chosen at decoration.

Each wrapper holds, as local variables, everything a hit needs (the L1's dict and its
bound methods, the counters, the fast argument types), so a hit is a tuple key, a
dict lookup and an expiry check: no plugin hook, no lock, no logging. Anything else
goes to ``slow`` (binding keywords and defaults) and, on a miss, to the miss steps
(:mod:`cachekit._engine.miss`) through the sync or async driver.
"""

from __future__ import annotations

from collections import OrderedDict
from time import monotonic

from cachekit._engine.drivers import run_async, run_sync
from cachekit._engine.flight import _Flight, _new_future
from cachekit._engine.miss import _NO_HIT, _UNREACHABLE, miss_steps
from cachekit.constants import MISSING
from cachekit.keys import FAST_TYPES, _Unbindable, owner_tags
from cachekit.stats import BYPASSED, L1_HITS, L2_HITS
from cachekit.tenancy import required_tenant, reset_tenant, set_tenant

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    #: cachekit.cached.CachedState, which imports this module (no cycle, even for types).
    CachedState = Any

__all__ = ["make_wrapper"]

_DEBUG = 10  # logging.DEBUG


# --- the wrappers -----------------------------------------------------------------------


def make_wrapper(state: CachedState) -> Callable[..., Any]:
    """Build the function that replaces the decorated one."""
    inner = _make_async(state) if state.is_async else _make_sync(state)
    if state.options.tenant_extractor is None:
        return inner
    return _with_tenant(state, inner)


def _with_tenant(state: CachedState, inner: Callable[..., Any]) -> Callable[..., Any]:
    """Learn each call's tenant and make it current while ``inner`` serves the call."""
    func, counts, name = state.func, state.counts, state.name
    extractor = state.options.tenant_extractor
    assert extractor is not None
    bypass = state.options.missing_tenant == "bypass"

    def tenant_of(args: tuple[Any, ...], kwargs: dict[str, Any]) -> str | None:
        return required_tenant(extractor, name, args, kwargs, bypass=bypass)

    if state.is_async:

        async def awrapper(*args: Any, **kwargs: Any) -> Any:
            if kwargs and "_bypass_cache" in kwargs and kwargs.pop("_bypass_cache"):
                counts[BYPASSED] += 1
                return await func(*args, **kwargs)
            tenant = tenant_of(args, kwargs)
            if tenant is None:
                counts[BYPASSED] += 1
                return await func(*args, **kwargs)
            token = set_tenant(tenant)
            try:
                return await inner(*args, **kwargs)
            finally:
                reset_tenant(token)

        return awrapper

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if kwargs and "_bypass_cache" in kwargs and kwargs.pop("_bypass_cache"):
            counts[BYPASSED] += 1
            return func(*args, **kwargs)
        tenant = tenant_of(args, kwargs)
        if tenant is None:
            counts[BYPASSED] += 1
            return func(*args, **kwargs)
        token = set_tenant(tenant)
        try:
            return inner(*args, **kwargs)
        finally:
            reset_tenant(token)

    return wrapper


def _fast_arity(state: CachedState) -> int:
    """Number of positional args that qualifies for the L1 fast path, or -1."""
    b = state.builder
    if not b._fast_ok or state.l1 is None:
        return -1
    return int(b._nparams) + (1 if state.skip_first else 0)


def _wrapper_parts(state: CachedState) -> tuple[Any, ...]:
    """What both wrapper builders bind as closure locals (read once, not per call)."""
    l1 = state.l1
    data: OrderedDict[Any, Any] = l1.data if l1 is not None else OrderedDict()
    return (
        state.func,
        state.counts,
        l1,
        data.get,
        data.move_to_end,
        # 0: no self/cls; 1: left out of the key; 2: its class leads the key (owner_value).
        (2 if state.builder.owner else 1) if state.skip_first else 0,
        _fast_arity(state),
        state.builder,
        FAST_TYPES,
        state.options.condition,
        owner_tags.get,
    )


def _make_sync(state: CachedState) -> Callable[..., Any]:
    func, counts, l1, builder = state.func, state.counts, state.l1, state.builder
    arity, condition = _fast_arity(state), state.options.condition

    def slow(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        if kwargs and "_bypass_cache" in kwargs and kwargs.pop("_bypass_cache"):
            counts[BYPASSED] += 1
            return func(*args, **kwargs)
        if state.plan is None:
            state.resolve()  # first: it sets the digest key of @cache.secure
        try:
            lkey, bkey = builder.keys(args, kwargs)
        except _Unbindable:
            return func(*args, **kwargs)  # raises the natural TypeError
        hit = state.l1_lookup(lkey)
        if hit is not _NO_HIT:
            return hit[0]
        return miss(args, kwargs, lkey, bkey)

    def miss(
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        lkey: Any,
        bkey: str | None,
        read: Any = True,
    ) -> Any:
        plan = state.resolve()
        steps = miss_steps(state, plan, args, kwargs, lkey, bkey, read, _Flight)
        return run_sync(state, plan, steps, args, kwargs)

    if arity < 0 and l1 is None and builder._fast_ok and condition is None:
        # No L1: read L2 first, outside single flight (which only coalesces computations).
        l2_get = state.l2_get

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            plan = state.plan
            if (
                kwargs
                or plan is None
                or plan.backend is None
                or not plan.enabled
                or not (state.gens_ok or state.coherence is None)
            ):
                return slow(args, kwargs)
            try:
                lkey, bkey = builder.keys(args, kwargs)
            except _Unbindable:
                return func(*args, **kwargs)
            value, payload, _ = l2_get(plan, bkey)
            if value is not MISSING:
                counts[L2_HITS] += 1
                if state.debug_on(_DEBUG):
                    state.debug("L2 hit", bkey, args, kwargs)
                return value
            return miss(
                args, kwargs, lkey, bkey, _UNREACHABLE if payload is _UNREACHABLE else False
            )

    elif arity < 0:

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            return slow(args, kwargs)

    else:
        wrapper = _fixed_arity(state, slow, miss, is_async=False)

    assert L1_HITS == 0  # the wrappers bump counts[0] directly
    return wrapper


def _make_async(state: CachedState) -> Callable[..., Any]:
    func, counts, arity, builder = state.func, state.counts, _fast_arity(state), state.builder

    async def slow(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        if kwargs and "_bypass_cache" in kwargs and kwargs.pop("_bypass_cache"):
            counts[BYPASSED] += 1
            return await func(*args, **kwargs)
        if state.plan is None:
            state.resolve()  # first: it sets the digest key of @cache.secure
        try:
            lkey, bkey = builder.keys(args, kwargs)
        except _Unbindable:
            return await func(*args, **kwargs)
        hit = state.l1_lookup(lkey)
        if hit is not _NO_HIT:
            return hit[0]
        return await miss(args, kwargs, lkey, bkey)

    async def miss(
        args: tuple[Any, ...], kwargs: dict[str, Any], lkey: Any, bkey: str | None
    ) -> Any:
        plan = state.resolve()
        steps = miss_steps(state, plan, args, kwargs, lkey, bkey, True, _new_future)
        return await run_async(state, plan, steps, args, kwargs)

    if arity < 0:

        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            return await slow(args, kwargs)

    else:
        wrapper = _fixed_arity(state, slow, miss, is_async=True)

    return wrapper


# The hit path for a fixed number of positional arguments of fast types (for methods,
# self/cls replaced by its class's tag); anything else goes to ``slow``, an L1 miss to
# ``miss``. Written once for the sync and the async wrapper: an async wrapper that
# called a shared sync lookup paid 20-40 % more per hit (measured), so the one source
# below is compiled with and without ``async``/``await`` (as dataclasses and attrs
# generate their methods), with the key built for any arity or, for the most common
# shape (one argument, no self), without the loop; each compiled maker is kept for the
# process.
_HIT = """
def make(slow, miss, counts, data_get, move_to_end, skip, arity, fast, tags_get, single,
         monotonic):
    ASYNC def wrapper(*args, **kwargs):
KEY
        e = data_get(k)
        if e is not None and e[0] > monotonic():
            counts[0] += 1
            try:
                move_to_end(k)
            except KeyError:
                pass
            loads = e[1]
            return e[2] if loads is None else loads(e[2])
        return AWAIT miss(args, kwargs, k, None)

    return wrapper
"""
_KEY_OF_ONE = """\
        if kwargs or len(args) != 1:
            return AWAIT slow(args, kwargs)
        a = args[0]
        t = type(a)
        if t not in fast:
            return AWAIT slow(args, kwargs)
        k = a if t is int else (a, t)  # as KeyBuilder.keys: an int is its own key
"""
_KEY_OF_ANY = """\
        if kwargs or len(args) != arity:
            return AWAIT slow(args, kwargs)
        vals = args[1:] if skip else args
        for v in vals:
            if type(v) not in fast:
                return AWAIT slow(args, kwargs)
        if skip == 2:  # a method: its class leads the key (keys.owner_value)
            first = args[0]
            tag = tags_get(first if isinstance(first, type) else type(first))
            if tag is None:  # not seen yet, or keyed by __cache_key__
                return AWAIT slow(args, kwargs)
            k = (tag, *vals, str, *map(type, vals))
        elif single and type(vals[0]) is int:
            k = vals[0]  # as KeyBuilder.keys: one int argument is its own key
        else:
            k = (*vals, *map(type, vals))
"""
_makers: dict[tuple[bool, bool], Any] = {}


def _hit_maker(is_async: bool, one: bool) -> Any:
    maker = _makers.get((is_async, one))
    if maker is None:
        import linecache

        source = (
            _HIT.replace("KEY\n", _KEY_OF_ONE if one else _KEY_OF_ANY)
            .replace("ASYNC ", "async " if is_async else "")
            .replace("AWAIT ", "await " if is_async else "")
        )
        filename = (
            f"<cachekit hit path, {'async' if is_async else 'sync'}, "
            f"{'one argument' if one else 'fixed arity'}>"
        )
        # Tracebacks and debuggers show the generated lines.
        linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
        namespace: dict[str, Any] = {}
        exec(compile(source, filename, "exec"), namespace)  # noqa: S102 (our own constants)
        maker = _makers[is_async, one] = namespace["make"]
    return maker


def _fixed_arity(state: CachedState, slow: Any, miss: Any, is_async: bool) -> Callable[..., Any]:
    """The fixed-arity hit wrapper of ``state``'s function (see _HIT)."""
    (_func, counts, _l1, data_get, move_to_end, skip, arity, _b, fast, _c, tags_get) = (
        _wrapper_parts(state)
    )
    single = arity - (1 if skip else 0) == 1
    maker = _hit_maker(is_async, one=arity == 1 and not skip)
    wrapper: Callable[..., Any] = maker(
        slow, miss, counts, data_get, move_to_end, skip, arity, fast, tags_get, single, monotonic
    )
    return wrapper
