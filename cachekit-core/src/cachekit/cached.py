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
import weakref
from _thread import allocate_lock
from collections import OrderedDict
from contextlib import nullcontext
from time import monotonic, time

from cachekit._engine.coherence import CoherenceBook
from cachekit._engine.miss import (
    _LEADING,
    _NO_HIT,
    _REENTER,
    _UNREACHABLE,
    _WAIT,
    _LeaderGone,
    _retrieve_outcome,
    _transient,
    get_steps,
    miss_steps,
    run_async,
    run_sync,
    set_steps,
)
from cachekit.coherence import DEGRADED_L1_TTL
from cachekit.config import SECURE_MAX_TTL, Settings, redact_url
from cachekit.constants import (
    CAP_ATOMIC_MISS,
    CAP_GUARDED_WRITES,
    CAP_INVALIDATION,
    CAP_LOCKING,
    CAP_NONBLOCKING,
    CAP_TRUSTED,
    MISSING,
    TOMBSTONE_PREFIX,
)
from cachekit.envelope import open_encrypted, open_plain, seal, seal_plain, unseal
from cachekit.errors import (
    CacheKeyError,
    ConfigurationError,
    PluginNotFoundError,
    SerializationError,
)
from cachekit.keys import FAST_TYPES, KeyBuilder, _Unbindable, owner_tags
from cachekit.l1 import IMMUTABLE_TYPES, L1Cache
from cachekit.stats import (
    BYPASSED,
    ERRORS,
    INVALID,
    L1_HITS,
    L2_HITS,
    STORES,
    CacheInfo,
    new_counters,
)
from cachekit.tenancy import (
    TenantEncryptors,
    current_tenant,
    required_tenant,
    reset_tenant,
    set_tenant,
    tenant_scope,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    import logging
    from collections.abc import Awaitable, Callable
    from typing import Any, ClassVar

__all__ = [
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
_logger: logging.Logger | None = None


def _log() -> logging.Logger:
    """The ``cachekit`` logger, imported on first use (logging costs import time)."""
    global _logger
    if _logger is None:
        import logging

        _logger = logging.getLogger("cachekit")
    return _logger


class _Unset:
    __slots__ = ()

    def __repr__(self) -> str:
        return "UNSET"

    def __bool__(self) -> bool:
        return False


#: "Not given": distinct from None, which means "no backend" or "no expiry".
UNSET: Any = _Unset()


class _Record:
    """A small immutable record (dataclasses cost ~10 ms of import time)."""

    __slots__: tuple[str, ...] = ()
    _defaults: ClassVar[dict[str, Any]] = {}

    def __init__(self, **values: Any) -> None:
        unknown = set(values) - set(self.__slots__)
        if unknown:
            raise TypeError(f"{type(self).__name__} got unexpected fields {sorted(unknown)}")
        for name in self.__slots__:
            value = values[name] if name in values else self._defaults[name]
            if isinstance(value, (dict, list)) and name not in values:
                value = type(value)(value)
            object.__setattr__(self, name, value)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"{type(self).__name__} is read-only")

    def __repr__(self) -> str:
        inner = ", ".join(f"{n}={getattr(self, n)!r}" for n in self.__slots__)
        return f"{type(self).__name__}({inner})"


class Options(_Record):
    """The decorator's keywords, validated at decoration time.

    ``ttl``: seconds, None (no expiry) or UNSET (environment default).
    ``serializer``: an instance, a registered name, or None (MessagePack).
    ``backend``: None (L1 only), a URL, a backend object, or UNSET (environment).
    ``circuit_breaker``: a BreakerConfig, a bool, or None (environment defaults).
    ``encryption``: False, True (aes-gcm), an encryptor name or an Encryptor object.
    ``tenant_extractor``: called with each call's arguments, returns its tenant
    (cachekit.tenancy); ``missing_tenant``: "raise" (E044) or "bypass" without one.
    """

    _defaults: ClassVar[dict[str, Any]] = {
        "ttl": UNSET,
        "namespace": None,
        "serializer": None,
        "backend": UNSET,
        "key": None,
        "l1": True,
        "l1_max_entries": None,
        "l1_max_size_mb": None,
        "circuit_breaker": None,
        "tags": (),
        "condition": None,
        "unless": None,
        "encryption": False,
        "include_self": None,
        "single_flight": True,
        "max_value_size": None,
        "compress": False,
        "fail_closed": False,
        "distributed_lock": True,
        "lock_lease": 10.0,
        "tenant_extractor": None,
        "missing_tenant": "raise",
        "intent": "default",
        "require_backend": False,
    }
    __slots__ = tuple(_defaults)
    if TYPE_CHECKING:
        ttl: Any
        namespace: str | None
        serializer: Any
        backend: Any
        key: Callable[..., Any] | None
        l1: bool
        l1_max_entries: int | None
        l1_max_size_mb: float | None
        circuit_breaker: Any
        tags: tuple[str, ...]
        condition: Callable[..., bool] | None
        unless: Callable[[Any], bool] | None
        encryption: Any
        include_self: bool | None
        single_flight: bool
        max_value_size: int | None
        compress: bool
        fail_closed: bool
        intent: str
        require_backend: bool
        distributed_lock: bool
        lock_lease: float
        tenant_extractor: Callable[..., Any] | None
        missing_tenant: str


class Plan(_Record):
    """Everything resolved at the first call; read-only afterwards."""

    __slots__ = (
        "abackend",
        "abackend_mode",
        "backend",
        "breaker",
        "enabled",
        "encryptor",
        "endpoint",
        "loads",
        "max_value_size",
        "require_auth",
        "ser_name",
        "serializer",
        "signer",
        "ttl",
    )
    if TYPE_CHECKING:
        enabled: bool
        ttl: float | None
        serializer: Any
        ser_name: str
        loads: Callable[[bytes], Any]
        backend: Any  # sync backend or None
        abackend: Any  # async backend (or a sync one, see abackend_mode) or None
        abackend_mode: str  # "async" | "inline" | "thread" | "none"
        breaker: Any
        encryptor: Any
        signer: Any
        require_auth: bool
        max_value_size: int
        endpoint: str | None


class _Place(_Record):
    """Where a backend failure happened, before there is a Plan."""

    __slots__ = ("breaker", "endpoint")
    if TYPE_CHECKING:
        breaker: Any
        endpoint: str | None


_states: weakref.WeakSet[CachedState] = weakref.WeakSet()


def all_states() -> list[CachedState]:
    """Every live decorated function's state (for stats, health and invalidate)."""
    return list(_states)


# --- backends shared per URL ------------------------------------------------------------

_url_backends: dict[tuple[str, str], Any] = {}
_url_lock = allocate_lock()
_announced_l1_only = False


def _backend_from_url(url: str, flavour: str) -> Any:
    """One backend object per (URL, sync/async) in the process, so pools are shared."""
    key = (url, flavour)
    found = _url_backends.get(key)
    if found is not None:
        return found
    from urllib.parse import urlsplit

    from cachekit.plugins import backend_spec, build

    scheme = urlsplit(url).scheme
    if not scheme:
        raise ConfigurationError(
            f"backend URL {redact_url(url)!r} has no scheme; expected e.g. redis://host:6379/0 "
            "or memory://."
        )
    spec = backend_spec(scheme)
    with _url_lock:
        found = _url_backends.get(key)
        if found is None:
            if flavour == "async":
                if spec.async_factory is None:
                    found = None
                else:
                    found = build(spec.async_factory, f"backend {spec.name}", url)
            else:
                found = build(spec.factory, f"backend {spec.name}", url)
            _url_backends[key] = found
    return found


def _is_async_backend(obj: Any) -> bool:
    import inspect

    return inspect.iscoroutinefunction(getattr(type(obj), "get", None))


def check_backend(obj: Any) -> None:
    """Reject a backend= value that is neither None, a URL nor a backend object."""
    if obj is UNSET or obj is None:
        return
    if isinstance(obj, str):
        if "://" not in obj:
            from cachekit.config import redact_url

            raise ConfigurationError(
                f"backend={redact_url(obj)!r} is not a URL; expected e.g. "
                "'redis://localhost:6379/0' or 'memory://'. Use backend=None for L1 only."
            )
        return
    _check_backend_object(obj)


def _check_backend_object(obj: Any) -> None:
    missing = [m for m in ("get", "set", "delete", "clear") if not callable(getattr(obj, m, None))]
    if missing:
        raise ConfigurationError(
            f"backend={obj!r} is not a cachekit backend: it lacks {', '.join(missing)}(). "
            "Pass None (L1 only), a URL such as 'redis://localhost:6379/0', or an object "
            "implementing cachekit.protocols.Backend."
        )


def _endpoint(obj: Any) -> str:
    ep = getattr(obj, "endpoint", None)
    return str(ep) if ep else f"{type(obj).__qualname__}@{id(obj):x}"


# --- per-function state -----------------------------------------------------------------


async def _keeping_cancellation(call: Awaitable[Any]) -> Any:
    """Await ``call`` in a task of its own, for Python 3.10, which has no Task.cancelling.

    redis.asyncio wraps socket writes in asyncio.wait_for, which returns normally when its
    caller is cancelled as the write completes (CPython gh-86296), so the cancellation is
    lost. Here the caller waits on asyncio.wait, which never swallows one: a cancellation
    cancels the call and is raised. The price, one task per backend call, is paid on 3.10 only.
    """
    import asyncio

    task = asyncio.ensure_future(call)
    try:
        await asyncio.wait((task,))
    except asyncio.CancelledError:
        task.cancel()
        task.add_done_callback(_retrieve_outcome)
        raise
    return task.result()


class CachedState(CoherenceBook):
    """All state of one decorated function, shared by its wrapper and attributes."""

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
        self.inflight: dict[Any, Any] = {}
        self.inflight_lock = allocate_lock()
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
        opts = self.options
        settings = Settings.from_env()
        if self.l1 is not None and opts.l1_max_entries is None:
            self.l1.max_entries = settings.l1_max_entries
        ttl = settings.default_ttl if opts.ttl is UNSET else opts.ttl
        serializer = _resolve_serializer(opts.serializer)
        ser_name = str(serializer.name)
        backend, abackend, mode = self._resolve_backend(settings)
        endpoint = (
            _endpoint(backend if backend is not None else abackend)
            if (backend is not None or abackend is not None)
            else None
        )
        breaker = None
        if endpoint is not None:
            from cachekit.breaker import BreakerConfig, breaker_for

            cfg = opts.circuit_breaker
            if cfg is None or cfg is True:
                cfg = BreakerConfig.from_env()
            elif cfg is False:
                cfg = BreakerConfig(enabled=False)
            breaker = breaker_for(endpoint, cfg)
        encryptor = self._resolve_encryptor()
        if encryptor is not None and ttl is None and endpoint is not None:
            # No unbounded entries in a backend under encryption: the authenticated
            # expiry is what refuses an old copy put back (L1 alone cannot be replayed).
            ttl = SECURE_MAX_TTL
        if encryptor is not None and self.builder.secret is None:
            secret = getattr(encryptor, "digest_key", None)
            if secret:
                self.builder.use_naming_key(secret)
        signer = None
        require_auth = bool(getattr(serializer, "requires_authentication", False))
        trusted = CAP_TRUSTED in getattr(backend or abackend, "capabilities", ())
        if endpoint is not None and require_auth and encryptor is None:
            from cachekit.signing import signer_from_env

            signer = signer_from_env()
            if signer is None and not trusted:
                self._warn_once(
                    "unsigned-pickle",
                    "%s uses %s with the shared backend %s but no signing key is configured: "
                    "its values stay in L1 only, because unauthenticated pickle from a shared "
                    "backend is never loaded. Set CACHEKIT_SIGNING_KEY (or CACHEKIT_MASTER_KEY; "
                    "`cachekit keygen` makes one) to share them.",
                    self.name,
                    ser_name,
                    endpoint,
                )
                backend = abackend = None
                endpoint = None
                breaker = None
            require_auth = not trusted
        chosen = backend if backend is not None else abackend
        capabilities = getattr(chosen, "capabilities", ()) if chosen is not None else ()
        if CAP_INVALIDATION in capabilities and not self._attach_coherence(
            chosen, breaker, endpoint
        ):
            # Its notifications cannot be heard (a backend failure, counted and logged):
            # L1 only, short-lived as while notifications are down; the plan is rebuilt
            # after that time (without I/O while the breaker is open).
            backend = abackend = None
            ttl = DEGRADED_L1_TTL if ttl is None else min(ttl, DEGRADED_L1_TTL)
            self.replan_at = monotonic() + DEGRADED_L1_TTL
        self.locking = CAP_LOCKING in capabilities and bool(opts.distributed_lock)
        self.guarded = CAP_GUARDED_WRITES in capabilities
        self.atomic = self.locking and CAP_ATOMIC_MISS in capabilities
        max_value = opts.max_value_size or settings.max_value_size
        return Plan(
            enabled=settings.enabled,
            ttl=ttl,
            serializer=serializer,
            ser_name=ser_name,
            loads=serializer.deserialize,
            backend=backend,
            abackend=abackend,
            abackend_mode=mode,
            breaker=breaker,
            encryptor=encryptor,
            signer=signer,
            require_auth=require_auth,
            max_value_size=max_value,
            endpoint=endpoint,
        )

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

    def l1_fill(
        self,
        plan: Plan,
        lkey: Any,
        bkey: str | None,
        pair: Any,
        epoch: int,
        lifetime: Any = UNSET,
    ) -> None:
        """Put a miss's result into L1, unless an invalidation raced with it."""
        l1 = self.l1
        if l1 is None:
            return
        ttl = self.fill_lifetime(bkey, plan.ttl if lifetime is UNSET else lifetime)
        if not self.fill_allowed(epoch, bkey, lkey):
            return  # invalidated while this miss was running: don't resurrect
        l1.put(lkey, pair[0], pair[1], ttl)

    def _resolve_backend(self, settings: Settings) -> tuple[Any, Any, str]:
        global _announced_l1_only
        choice = self.options.backend
        source = "backend="
        if choice is UNSET:
            choice = settings.backend_url
            source = settings.backend_variable or ""
            if choice is None:
                if self.options.require_backend:
                    _log().warning(
                        "%s: no backend configured (set CACHEKIT_REDIS_URL or pass backend=); "
                        "caching in this process only (L1)",
                        self.name,
                    )
                elif not _announced_l1_only:
                    _announced_l1_only = True
                    _log().info(
                        "cachekit: no backend configured (CACHEKIT_BACKEND, CACHEKIT_REDIS_URL, "
                        "REDIS_URL unset); caching in-process only (L1)"
                    )
                return None, None, "none"
        if choice is None:
            return None, None, "none"
        if isinstance(choice, str):
            try:
                if self.is_async:
                    ab = _backend_from_url(choice, "async")
                    if ab is not None:
                        return None, ab, "async"
                    sb = _backend_from_url(choice, "sync")
                    return None, sb, _async_mode_for(sb)
                return _backend_from_url(choice, "sync"), None, "none"
            except PluginNotFoundError as exc:
                if source == "REDIS_URL":
                    # REDIS_URL often serves other libraries; without cachekit-redis we
                    # degrade to L1 instead of breaking every cached function.
                    self._warn_once("redis-url", "%s; ignoring REDIS_URL, L1 only", exc.message)
                    return None, None, "none"
                raise
        # A backend object.
        if _is_async_backend(choice):
            _check_backend_object(choice)
            if not self.is_async:
                raise ConfigurationError(
                    f"backend {choice!r} is asynchronous but {self.name} is a regular function; "
                    "pass its synchronous twin or a URL."
                )
            return None, choice, "async"
        _check_backend_object(choice)
        if self.is_async:
            to_async = getattr(choice, "to_async", None)
            if callable(to_async):
                return None, to_async(), "async"
            return None, choice, _async_mode_for(choice)
        return choice, None, "none"

    def _resolve_encryptor(self) -> Any:
        enc = self.options.encryption
        if not enc:
            return None
        if not isinstance(enc, (str, bool)):
            return enc  # an Encryptor object
        from cachekit.plugins import build, encryptor_spec

        name = "aes-gcm" if enc is True else str(enc)
        spec = encryptor_spec(name)
        # One snapshot: every tenant's encryptor, built later, uses the same keys (and
        # only the key variables are kept, not the whole environment).
        environ = {k: v for k, v in os.environ.items() if k.startswith("CACHEKIT_")}
        base = build(spec.factory, f"encryptor {name}", tenant=None, environ=environ)
        if self.options.tenant_extractor is None:
            return base

        def for_tenant(tenant: str) -> Any:
            return build(spec.factory, f"encryptor {name}", tenant=tenant, environ=environ)

        return TenantEncryptors(for_tenant, base)

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
        import sys

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

    # -- backend I/O (fail open) ---------------------------------------------------

    def _backend_failed(self, plan: Plan | _Place, op: str, exc: BaseException) -> None:
        self.counts[ERRORS] += 1
        if plan.breaker is not None:
            if _transient(exc):
                plan.breaker.failure(exc)
            else:
                # The server answered (OOM, a garbled reply): no verdict, but a half-open
                # probe must give its slot back or the breaker stays half-open for good.
                plan.breaker.release_probe()
        now = monotonic()
        if now - self._last_error_log >= 60.0:
            self._last_error_log = now
            _log().warning(
                "[E010] backend %s failed during %s for %s (%s: %s); the function runs "
                "uncached. Further errors for 60s are logged at DEBUG.",
                plan.endpoint,
                op,
                self.name,
                type(exc).__name__,
                exc,
            )
        elif _log().isEnabledFor(_DEBUG):
            _log().debug("backend %s %s failed: %r", plan.endpoint, op, exc)

    def _decode(self, plan: Plan, blob: Any, bkey: str) -> Any:
        """Turn a stored envelope into a value, or MISSING when it is unreadable."""
        try:
            plain = None
            if plan.encryptor is None and plan.signer is None and not plan.require_auth:
                plain = open_plain(blob, plan.ser_name)
            elif plan.encryptor is not None:
                plain = open_encrypted(blob, plan.ser_name, bkey, plan.encryptor)
            if plain is not None:
                payload, expires_at = plain
            else:
                payload, header = unseal(
                    blob,
                    serializer=plan.ser_name,
                    key=bkey,
                    encryptor=plan.encryptor,
                    signer=plan.signer,
                    require_authentication=plan.require_auth,
                    # Planted bombs: inflate no further than a value this function may
                    # store, and not at all for a function that never compresses.
                    max_size=plan.max_value_size,
                    allow_compressed=self.options.compress,
                )
                expires_at = header.expires_at
            if expires_at is None:
                if plan.encryptor is not None:
                    # Authentic but unbounded: a replay could last forever. Writers
                    # under encryption always record an expiry (SECURE_MAX_TTL).
                    return MISSING, None, None
            elif expires_at <= time():
                # Past the expiry its writer recorded (authenticated under encryption
                # or signing): a stale copy put back, or a backend that kept it too long.
                return MISSING, None, None
            value = plan.loads(payload)
        except Exception as exc:
            # Anything that cannot be read back is a miss, whoever raised it (a
            # third-party serializer may raise plain ValueError): never the caller's problem.
            self.counts[INVALID] += 1
            code = getattr(exc, "code", "E005")
            if self.options.fail_closed and code == "E003":
                raise
            self._warn_once(
                f"invalid-{code}",
                "[%s] unreadable cache entry for %s treated as a miss and overwritten: %s",
                code,
                self.name,
                getattr(exc, "message", f"{type(exc).__name__}: {exc}"),
            )
            return MISSING, None, None
        return value, payload, expires_at

    def _seal(self, plan: Plan, payload: bytes, bkey: str) -> bytes:
        expires_at = None if plan.ttl is None else time() + plan.ttl
        if plan.encryptor is None and plan.signer is None and not self.options.compress:
            return seal_plain(payload, plan.ser_name, expires_at)
        return seal(
            payload,
            serializer=plan.ser_name,
            key=bkey,
            encryptor=plan.encryptor,
            signer=plan.signer,
            compress=self.options.compress,
            expires_at=expires_at,
        )

    def l2_get(self, plan: Plan, bkey: str) -> Any:
        """Read one entry from a sync backend, failing open (see miss.get_steps)."""
        return run_sync(self, plan, get_steps(self, plan, bkey))

    def l2_set(self, plan: Plan, bkey: str, payload: bytes) -> bool:
        """Store one entry in a sync backend, failing open (see miss.set_steps)."""
        return bool(run_sync(self, plan, set_steps(self, plan, bkey, payload)))

    async def _acall(self, plan: Plan, method: str, *args: Any) -> Any:
        b = plan.abackend
        if plan.abackend_mode == "async":
            from asyncio import CancelledError, current_task

            # Cancellation requests so far (Task.cancelling, Python >= 3.11).
            requests = getattr(current_task(), "cancelling", None)
            if requests is None:
                return await _keeping_cancellation(getattr(b, method)(*args))
            asked = requests()
            result = await getattr(b, method)(*args)
            if requests() > asked:
                # The caller was cancelled during the call, yet it returned: the backend's
                # client lost the cancellation (redis.asyncio wraps writes in asyncio.wait_for,
                # which can on Python 3.11: CPython gh-86296). Deliver it.
                raise CancelledError
            return result
        if plan.abackend_mode == "inline":
            return getattr(b, method)(*args)
        import asyncio

        return await asyncio.to_thread(getattr(b, method), *args)

    def _read(self, plan: Plan, blob: Any, bkey: str) -> Any:
        """(value, payload, expires) of what an L2 read returned (sync and async).

        A miss notes what it found (nothing, a tombstone, an unreadable entry) for
        the guarded write of the value this caller may compute next (note_seen).
        """
        if blob is MISSING or blob is None:
            self.note_seen(bkey, None)
            return MISSING, None, None
        if blob[: len(TOMBSTONE_PREFIX)] == TOMBSTONE_PREFIX:
            outcome = (MISSING, None, None)  # an invalidated entry
        else:
            outcome = self._decode(plan, blob, bkey)
            if outcome[0] is not MISSING:
                return outcome
        self.note_seen(bkey, blob)
        return outcome

    # -- storing -------------------------------------------------------------------

    def l1_lookup(self, lkey: Any, refresh: bool = True) -> Any:
        """A fresh copy from L1, or _NO_HIT. (The wrappers inline this on the fast path.)"""
        l1 = self.l1
        if l1 is None:
            return _NO_HIT
        entry = l1.data.get(lkey)
        if entry is None or entry[0] <= monotonic():
            return _NO_HIT
        self.counts[L1_HITS] += 1
        if refresh:
            try:
                l1.data.move_to_end(lkey)
            except KeyError:
                pass
        loads = entry[1]
        return (entry[2] if loads is None else loads(entry[2])), (entry[2], loads)

    def accept_l2(
        self,
        plan: Plan,
        lkey: Any,
        bkey: str,
        value: Any,
        payload: bytes,
        call: tuple[Any, Any],
        epoch: int,
        expires_at: float | None = None,
    ) -> tuple[Any, tuple[Any, Any]]:
        """Record an L2 hit and copy it into L1: (value, (stored, loads)).

        The L1 copy never outlives the L2 entry: its lifetime is capped by the expiry
        the writer recorded in the envelope.
        """
        self.counts[L2_HITS] += 1
        self.debug("L2 hit", bkey, *call)
        pair = (value, None) if type(value) in IMMUTABLE_TYPES else (payload, plan.loads)
        ttl = plan.ttl
        if expires_at is not None:
            left = expires_at - time()
            if left <= 0:
                return value, pair  # already gone in L2: don't keep it in L1 either
            ttl = left if ttl is None else min(ttl, left)
        self.l1_fill(plan, lkey, bkey, pair, epoch, ttl)
        return value, pair

    def store(
        self, plan: Plan, lkey: Any, result: Any, bkey: str | None, epoch: int
    ) -> tuple[Any, tuple[Any, Any], Any]:
        """Serialize a fresh result and keep it in L1.

        Returns (value for the caller, (stored, loads) for waiters, payload for L2 or
        None when the result is not to be cached). Serialization errors (E004) propagate.
        """
        payload = plan.serializer.serialize(result)
        if type(payload) is not bytes:
            payload = _byte_buffer(payload, plan.ser_name)
        if type(result) in IMMUTABLE_TYPES:
            pair: tuple[Any, Any] = (result, None)
            value = result
        else:
            pair = (payload, plan.loads)
            value = plan.loads(payload)  # the same shape every later hit returns
        if len(payload) > plan.max_value_size:
            self._warn_once(
                "too-large",
                "[E007] %s returned a value of %d bytes, above max_value_size=%d: it is "
                "returned but not cached",
                self.name,
                len(payload),
                plan.max_value_size,
            )
            return value, pair, None
        unless = self.options.unless
        if unless is not None and unless(result):
            return value, pair, None
        self.counts[STORES] += 1
        self.l1_fill(plan, lkey, bkey, pair, epoch)
        return value, pair, payload

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

    def _fresh_salt(self) -> None:
        """Keys computed outside a call (cache_key, invalidate) need current generations."""
        self.resolve()
        if self.coherence is not None and not self.gens_ok:
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
        self._fresh_salt()
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
        lkey, bkey = target
        removed = 1 if self.l1 is not None and self.l1.pop(lkey) else 0
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
        target = self._targets(args, kwargs)
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
        removed = self.l1.clear() if self.l1 is not None else 0
        return removed + int(self._backend_call(plan, "clear", self.builder.prefix) or 0)

    async def aclear(self) -> int:
        if self.coherence is not None:
            import asyncio

            return await asyncio.to_thread(self.clear)
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
        if plan.backend is None and plan.abackend_mode == "async":
            import asyncio

            return asyncio.run(self._abackend_call(plan, method, *args))
        backend = plan.backend if plan.backend is not None else plan.abackend
        try:
            return getattr(backend, method)(*args)
        except Exception as exc:
            self._backend_failed(plan, method, exc)
            return 0

    async def _abackend_call(self, plan: Plan, method: str, *args: Any) -> Any:
        """A maintenance call from async code, failing open."""
        if plan.abackend is None:
            if plan.backend is None:
                return 0
            import asyncio

            try:
                return await asyncio.to_thread(getattr(plan.backend, method), *args)
            except Exception as exc:
                self._backend_failed(plan, method, exc)
                return 0
        try:
            return await self._acall(plan, method, *args)
        except Exception as exc:
            self._backend_failed(plan, method, exc)
            return 0

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

    # -- single flight (one decision for the sync and async paths) --------------------

    def enter_flight(self, lkey: Any, new: Callable[[], Any]) -> tuple[Any, Any]:
        """Join or start the flight computing ``lkey``: (flight, role).

        ``role`` is a context token when this caller leads (it must end with
        leave_flight), _WAIT when another caller leads (wait for its outcome), or
        _REENTER when this very thread or task already leads it: the function calls
        itself with the same arguments, and waiting for itself would never end, so it
        computes outside the flight, like plain Python recursion.
        """
        with self.inflight_lock:
            flight = self.inflight.get(lkey)
            if flight is None:
                flight = self.inflight[lkey] = new()
                return flight, _LEADING.set((*_LEADING.get(), flight))
        return flight, (_REENTER if flight in _LEADING.get() else _WAIT)

    def leave_flight(
        self, lkey: Any, flight: Any, token: Any, pair: Any, error: BaseException | None
    ) -> None:
        """The leader's end: hand the outcome to the waiters and retire the flight."""
        _LEADING.reset(token)
        if error is None:
            flight.set_result(pair)
        else:
            # A cancelled or interrupted leader is nobody else's outcome: a waiter takes over.
            flight.set_exception(error if isinstance(error, Exception) else _LeaderGone())
        with self.inflight_lock:
            if self.inflight.get(lkey) is flight:
                del self.inflight[lkey]

    def after_fork(self) -> None:
        self.inflight = {}
        self.inflight_lock = allocate_lock()
        self._plan_lock = allocate_lock()
        encryptor = self.plan.encryptor if self.plan is not None else None
        if isinstance(encryptor, TenantEncryptors):
            encryptor.after_fork()


def _byte_buffer(payload: Any, serializer: str) -> Any:
    """A serializer's bytearray or memoryview as an immutable buffer of bytes.

    Read-only, because L1 keeps it and hands it to ``deserialize`` on every hit: a
    result that shares memory with it must not be able to change later hits.
    """
    if isinstance(payload, bytearray):
        return bytes(payload)
    if isinstance(payload, memoryview) and payload.c_contiguous:
        if payload.format != "B" or payload.ndim != 1:
            payload = payload.cast("B")
        return payload.toreadonly()
    raise SerializationError(
        f"serializer {serializer!r} returned {type(payload).__name__}; serialize() must "
        "return bytes, a bytearray or a C-contiguous memoryview."
    )


def _async_mode_for(backend: Any) -> str:
    return "inline" if CAP_NONBLOCKING in getattr(backend, "capabilities", ()) else "thread"


def check_serializer(choice: Any) -> None:
    """Reject what cannot be a serializer (a class, an object without the methods)."""
    if choice is None or isinstance(choice, str):
        return
    if isinstance(choice, type):
        raise ConfigurationError(
            f"serializer={choice.__name__} is a class; pass an instance: "
            f"serializer={choice.__name__}()."
        )
    missing = [m for m in ("serialize", "deserialize") if not callable(getattr(choice, m, None))]
    name = getattr(choice, "name", None)
    if missing or not isinstance(name, str) or not name:
        raise ConfigurationError(
            f"serializer={choice!r} is not a serializer: it needs a 'name' string and "
            "serialize()/deserialize() methods (see cachekit.protocols.Serializer)."
        )
    # The name is written into every stored envelope (cachekit.protocols.Serializer).
    if len(name) > 32 or not name.isascii() or not name.isprintable():
        raise ConfigurationError(
            f"serializer name {name!r} of {type(choice).__name__} must be 1-32 printable "
            "ASCII characters: it is written into every stored entry."
        )


# Other names of the default serializer, as cachekit's documented API spells them.
_SERIALIZER_ALIASES = {"default": "msgpack", "std": "msgpack"}


def _resolve_serializer(choice: Any) -> Any:
    if choice is None:
        from cachekit.serializers import DEFAULT_SERIALIZER

        return DEFAULT_SERIALIZER
    if isinstance(choice, str):
        from cachekit.plugins import build, serializer_spec

        spec = serializer_spec(_SERIALIZER_ALIASES.get(choice, choice))
        choice = build(spec.factory, f"serializer {choice}")
    check_serializer(choice)
    return choice


def _is_method(func: Callable[..., Any]) -> bool:
    """A function defined in a class body whose first parameter is self or cls."""
    qualname = getattr(func, "__qualname__", "")
    parts = qualname.split(".")
    if len(parts) < 2 or parts[-2] == "<locals>":
        return False
    code = getattr(func, "__code__", None)
    if code is not None and type(func).__name__ == "function":
        return code.co_argcount > 0 and code.co_varnames[0] in ("self", "cls")
    import inspect

    try:
        params = list(inspect.signature(func).parameters)
    except (TypeError, ValueError):
        return False
    return bool(params) and params[0] in ("self", "cls")


def _defining_class(func: Callable[..., Any]) -> tuple[Any, str]:
    """(the class whose body defines ``func`` or None, the name of its first parameter)."""
    import sys

    first = ""
    code = getattr(func, "__code__", None)
    if code is not None and code.co_argcount:
        first = code.co_varnames[0]
    parts = getattr(func, "__qualname__", "").split(".")[:-1]
    found: Any = sys.modules.get(getattr(func, "__module__", None) or "")
    for part in parts:
        found = getattr(found, part, None)
    return (found if parts and isinstance(found, type) else None), first


def _after_fork() -> None:
    global _url_lock
    _url_lock = allocate_lock()
    for state in list(_states):
        state.after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork)


# --- the wrappers -----------------------------------------------------------------------


class _Flight:
    """One in-progress computation that other threads wait for (sync single flight).

    Lighter than concurrent.futures.Future (which also costs import time): a lock
    held by the leader until the outcome is set; each waiter acquires and releases
    it in turn.
    """

    __slots__ = ("_error", "_lock", "_value")

    def __init__(self) -> None:
        self._lock = allocate_lock()
        self._lock.acquire()
        self._value: Any = None
        self._error: BaseException | None = None

    def set_result(self, value: Any) -> None:
        self._value = value
        self._lock.release()

    def set_exception(self, error: BaseException) -> None:
        self._error = error
        self._lock.release()

    def result(self) -> Any:
        with self._lock:
            pass
        if self._error is not None:
            raise self._error
        return self._value


def _new_future() -> Any:
    """A future that asyncio tasks in any thread's event loop can await."""
    from concurrent.futures import Future

    return Future()


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
    return b._nparams + (1 if state.skip_first else 0)


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
    (
        func,
        counts,
        l1,
        data_get,
        move_to_end,
        skip,
        arity,
        builder,
        fast,
        condition,
        tags_get,
    ) = _wrapper_parts(state)

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
                state.debug("L2 hit", bkey, args, kwargs)
                return value
            return miss(
                args, kwargs, lkey, bkey, _UNREACHABLE if payload is _UNREACHABLE else False
            )

    elif arity < 0:

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            return slow(args, kwargs)

    elif arity == 1 and not skip:

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if kwargs or len(args) != 1:
                return slow(args, kwargs)
            a = args[0]
            t = type(a)
            if t not in fast:
                return slow(args, kwargs)
            k = (a, t)
            e = data_get(k)
            if e is not None and e[0] > monotonic():
                counts[0] += 1
                try:
                    move_to_end(k)
                except KeyError:
                    pass
                loads = e[1]
                return e[2] if loads is None else loads(e[2])
            return miss(args, kwargs, k, None)

    else:

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if kwargs or len(args) != arity:
                return slow(args, kwargs)
            vals = args[1:] if skip else args
            for v in vals:
                if type(v) not in fast:
                    return slow(args, kwargs)
            if skip == 2:  # a method: its class leads the key (keys.owner_value)
                first = args[0]
                tag = tags_get(first if isinstance(first, type) else type(first))
                if tag is None:  # not seen yet, or keyed by __cache_key__
                    return slow(args, kwargs)
                k = (tag, *vals, str, *map(type, vals))
            else:
                k = (*vals, *map(type, vals))
            e = data_get(k)
            if e is not None and e[0] > monotonic():
                counts[0] += 1
                try:
                    move_to_end(k)
                except KeyError:
                    pass
                loads = e[1]
                return e[2] if loads is None else loads(e[2])
            return miss(args, kwargs, k, None)

    assert L1_HITS == 0  # the wrappers bump counts[0] directly
    return wrapper


def _make_async(state: CachedState) -> Callable[..., Any]:
    (
        func,
        counts,
        _l1,
        data_get,
        move_to_end,
        skip,
        arity,
        builder,
        fast,
        _condition,
        tags_get,
    ) = _wrapper_parts(state)

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

        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            if kwargs or len(args) != arity:
                return await slow(args, kwargs)
            vals = args[1:] if skip else args
            for v in vals:
                if type(v) not in fast:
                    return await slow(args, kwargs)
            if skip == 2:  # a method: its class leads the key (keys.owner_value)
                first = args[0]
                tag = tags_get(first if isinstance(first, type) else type(first))
                if tag is None:  # not seen yet, or keyed by __cache_key__
                    return await slow(args, kwargs)
                k = (tag, *vals, str, *map(type, vals))
            else:
                k = (*vals, *map(type, vals))
            e = data_get(k)
            if e is not None and e[0] > monotonic():
                counts[0] += 1
                try:
                    move_to_end(k)
                except KeyError:
                    pass
                loads = e[1]
                return e[2] if loads is None else loads(e[2])
            return await miss(args, kwargs, k, None)

    return wrapper
