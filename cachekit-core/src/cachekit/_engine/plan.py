"""The plan: everything a decorated function resolves once, at its first call.

:func:`build_plan` reads the environment and the options and builds (or reuses) the
backend, serializer, encryptor and circuit breaker. It sets nothing on the function's
state: it returns a :class:`Resolved`, what the state must take on (the lock and
write capabilities, a naming key, the backend to subscribe to for coherence, warnings
to log once). Backends built from a URL are shared per (URL, sync/async) in the process.
"""

from __future__ import annotations

import os
from _thread import allocate_lock

from cachekit._engine.drivers import _retrieve_outcome
from cachekit._engine.options import (
    UNSET,
    Options,
    Plan,
    _async_mode_for,
    _check_backend_object,
    _endpoint,
    _is_async_backend,
    _Record,
    _resolve_serializer,
)
from cachekit.coherence import DEGRADED_L1_TTL
from cachekit.config import SECURE_MAX_TTL, Settings, redact_url
from cachekit.constants import (
    CAP_ATOMIC_MISS,
    CAP_GUARDED_WRITES,
    CAP_INVALIDATION,
    CAP_LOCKING,
    CAP_TRUSTED,
)
from cachekit.envelope import plain_reader
from cachekit.errors import ConfigurationError, PluginNotFoundError
from cachekit.tenancy import TenantEncryptors

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Awaitable
    from typing import Any, ClassVar

__all__ = ["Resolved", "build_plan", "degraded"]


class Resolved(_Record):
    """build_plan's answer: the plan, and what the function's state must take on."""

    _defaults: ClassVar[dict[str, Any]] = {}
    __slots__ = (
        "atomic",
        "guarded",
        "l1_max_entries",
        "listen_to",
        "locking",
        "naming_key",
        "plan",
        "warnings",
    )
    if TYPE_CHECKING:
        plan: Plan
        locking: bool  # stampede lock across processes ("locking")
        guarded: bool  # writes guarded against invalidations ("guarded_writes")
        atomic: bool  # a locked miss in two round trips ("atomic_miss")
        naming_key: bytes | None  # the encryptor's key for digests (@cache.secure)
        l1_max_entries: int | None  # from the environment, when not given
        listen_to: Any  # the backend whose notifications keep L1 coherent, or None
        warnings: tuple[tuple[Any, ...], ...]  # (tag, message, *args) to log once


def build_plan(options: Options, *, name: str, is_async: bool, has_naming_key: bool) -> Resolved:
    """Resolve the options against the environment (no I/O but building backends)."""
    opts = options
    settings = Settings.from_env()
    warnings: list[tuple[Any, ...]] = []
    ttl = settings.default_ttl if opts.ttl is UNSET else opts.ttl
    serializer = _resolve_serializer(opts.serializer)
    ser_name = str(serializer.name)
    backend, abackend, mode = resolve_backend(options, settings, name, is_async, warnings)
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
    encryptor = resolve_encryptor(options)
    if encryptor is not None and ttl is None and endpoint is not None:
        # No unbounded entries in a backend under encryption: the authenticated
        # expiry is what refuses an old copy put back (L1 alone cannot be replayed).
        ttl = SECURE_MAX_TTL
    naming_key = None
    if encryptor is not None and not has_naming_key:
        naming_key = getattr(encryptor, "digest_key", None) or None
    signer = None
    require_auth = bool(getattr(serializer, "requires_authentication", False))
    trusted = CAP_TRUSTED in getattr(backend or abackend, "capabilities", ())
    if endpoint is not None and require_auth and encryptor is None:
        from cachekit.signing import signer_from_env

        signer = signer_from_env()
        if signer is None and not trusted:
            warnings.append(
                (
                    "unsigned-pickle",
                    "%s uses %s with the shared backend %s but no signing key is configured: "
                    "its values stay in L1 only, because unauthenticated pickle from a shared "
                    "backend is never loaded. Set CACHEKIT_SIGNING_KEY (or CACHEKIT_MASTER_KEY; "
                    "`cachekit keygen` makes one) to share them.",
                    name,
                    ser_name,
                    endpoint,
                )
            )
            backend = abackend = None
            endpoint = None
            breaker = None
        require_auth = not trusted
    chosen = backend if backend is not None else abackend
    capabilities = getattr(chosen, "capabilities", ()) if chosen is not None else ()
    locking = CAP_LOCKING in capabilities and bool(opts.distributed_lock)
    max_value = opts.max_value_size or settings.max_value_size
    plan = Plan(
        enabled=settings.enabled,
        ttl=ttl,
        serializer=serializer,
        ser_name=ser_name,
        loads=serializer.deserialize,
        backend=backend,
        abackend=abackend,
        abackend_mode=mode,
        acall=ASYNC_CALLS.get(mode),
        breaker=breaker,
        encryptor=encryptor,
        signer=signer,
        require_auth=require_auth,
        max_value_size=max_value,
        endpoint=endpoint,
        read_plain=plain_reader(ser_name)
        if encryptor is None and signer is None and not require_auth
        else None,
    )
    return Resolved(
        plan=plan,
        locking=locking,
        guarded=CAP_GUARDED_WRITES in capabilities,
        atomic=locking and CAP_ATOMIC_MISS in capabilities,
        naming_key=naming_key,
        l1_max_entries=None if opts.l1_max_entries is not None else settings.l1_max_entries,
        listen_to=chosen if CAP_INVALIDATION in capabilities else None,
        warnings=tuple(warnings),
    )


def degraded(plan: Plan) -> Plan:
    """The plan while a backend's notifications cannot be heard: L1 only, short-lived."""
    fields = {name: getattr(plan, name) for name in Plan.__slots__}
    ttl = plan.ttl
    fields.update(
        backend=None,
        abackend=None,
        ttl=DEGRADED_L1_TTL if ttl is None else min(ttl, DEGRADED_L1_TTL),
    )
    return Plan(**fields)


def resolve_backend(
    options: Options, settings: Settings, name: str, is_async: bool, warnings: list[Any]
) -> tuple[Any, Any, str]:
    """(sync backend, async backend, how an async function calls it) for the options."""
    global _announced_l1_only
    import logging

    choice = options.backend
    source = "backend="
    if choice is UNSET:
        choice = settings.backend_url
        source = settings.backend_variable or ""
        if choice is None:
            if options.require_backend:
                logging.getLogger("cachekit").warning(
                    "%s: no backend configured (set CACHEKIT_REDIS_URL or pass backend=); "
                    "caching in this process only (L1)",
                    name,
                )
            elif not _announced_l1_only:
                _announced_l1_only = True
                logging.getLogger("cachekit").info(
                    "cachekit: no backend configured (CACHEKIT_BACKEND, CACHEKIT_REDIS_URL, "
                    "REDIS_URL unset); caching in-process only (L1)"
                )
            return None, None, "none"
    if choice is None:
        return None, None, "none"
    if isinstance(choice, str):
        try:
            if is_async:
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
                warnings.append(("redis-url", "%s; ignoring REDIS_URL, L1 only", exc.message))
                return None, None, "none"
            raise
    # A backend object.
    if _is_async_backend(choice):
        _check_backend_object(choice)
        if not is_async:
            raise ConfigurationError(
                f"backend {choice!r} is asynchronous but {name} is a regular function; "
                "pass its synchronous twin or a URL."
            )
        return None, choice, "async"
    _check_backend_object(choice)
    if is_async:
        to_async = getattr(choice, "to_async", None)
        if callable(to_async):
            return None, to_async(), "async"
        return None, choice, _async_mode_for(choice)
    return choice, None, "none"


def resolve_encryptor(options: Options) -> Any:
    """The encryptor of @cache.secure / encryption=, or None."""
    enc = options.encryption
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
    if options.tenant_extractor is None:
        return base

    def for_tenant(tenant: str) -> Any:
        return build(spec.factory, f"encryptor {name}", tenant=tenant, environ=environ)

    return TenantEncryptors(for_tenant, base)


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


def _after_fork() -> None:
    global _url_lock
    _url_lock = allocate_lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork)


# --- how an async function calls its backend, chosen once per plan ------------------------


async def _await_call(backend: Any, method: str, *args: Any) -> Any:
    """An async backend's method, never losing the caller's cancellation."""
    from asyncio import CancelledError, current_task

    # Cancellation requests so far (Task.cancelling, Python >= 3.11).
    requests = getattr(current_task(), "cancelling", None)
    if requests is None:
        return await _keeping_cancellation(getattr(backend, method)(*args))
    asked = requests()
    result = await getattr(backend, method)(*args)
    if requests() > asked:
        # The caller was cancelled during the call, yet it returned: the backend's
        # client lost the cancellation (redis.asyncio wraps writes in asyncio.wait_for,
        # which can on Python 3.11: CPython gh-86296). Deliver it.
        raise CancelledError
    return result


async def _inline_call(backend: Any, method: str, *args: Any) -> Any:
    """A sync backend that never blocks (capability "nonblocking"): called directly."""
    return getattr(backend, method)(*args)


async def _thread_call(backend: Any, method: str, *args: Any) -> Any:
    """A blocking sync backend: called in a worker thread."""
    import asyncio

    return await asyncio.to_thread(getattr(backend, method), *args)


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


#: Plan.acall by Plan.abackend_mode.
ASYNC_CALLS = {"async": _await_call, "inline": _inline_call, "thread": _thread_call}
