"""Multi-tenant caches: one decorated function, entries and keys kept apart per tenant.

``@cache(tenant_extractor=fn)`` (usually with ``@cache.secure``) calls ``fn`` with
the call's arguments to learn the tenant. The tenant then

* goes into the digest of the entry's key, so two tenants never share an entry,
  in L1 or in the backend, and nobody can tell from the key names whose entry is
  whose (the digest is keyed under ``secure``);
* selects the encryptor: each tenant gets its own, built by the encryptor plugin
  with ``tenant=...`` (cachekit-crypto derives a subkey per tenant), so a blob
  copied from one tenant's entry to another's does not decrypt.

A call whose tenant is unknown (the extractor returns None or "") never falls
into a shared tenant: it raises :class:`~cachekit.errors.TenantRequiredError`
(E044) or, with ``missing_tenant="bypass"``, runs the function uncached.

The tenant travels from the wrapper to the key builder and the encryptor in a
context variable, so it follows the call into threads started by
``asyncio.to_thread`` and never leaks into another thread or task.
"""

from __future__ import annotations

from _thread import allocate_lock
from contextvars import ContextVar

from cachekit.errors import ConfigurationError, TenantRequiredError

TYPE_CHECKING = False  # not `typing`: it costs import time (see cachekit.decorator)
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from cachekit.protocols import Encryptor

__all__ = [
    "MAX_TENANT_LENGTH",
    "MISSING_TENANT_CHOICES",
    "TenantEncryptors",
    "current_tenant",
    "tenant_for",
    "tenant_scope",
]

#: The tenant of the call being served (None outside a multi-tenant call).
_CURRENT: ContextVar[str | None] = ContextVar("cachekit_tenant", default=None)
MISSING_TENANT_CHOICES = ("raise", "bypass")
MAX_TENANT_LENGTH = 1024
#: Per-tenant encryptors kept per function; the oldest is dropped beyond this.
_MAX_ENCRYPTORS = 4096


def current_tenant() -> str:
    """The tenant of the call in progress; E044 when there is none (never a shared one)."""
    tenant = _CURRENT.get()
    if tenant is None:
        raise TenantRequiredError(
            "a multi-tenant cache was used without a tenant: no call of the decorated "
            "function set one (cache_key() and invalidate_cache() need the tenant too)."
        )
    return tenant


def tenant_for(
    extractor: Callable[..., Any], name: str, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> str | None:
    """Ask ``extractor`` for the tenant of one call: a non-empty str, or None if unknown."""
    tenant = extractor(*args, **kwargs)
    if tenant is None or tenant == "":
        return None
    if not isinstance(tenant, str):
        raise ConfigurationError(
            f"the tenant_extractor of {name} returned {type(tenant).__name__}; it must "
            "return the tenant as a str, or None when the call has no tenant."
        )
    if len(tenant) > MAX_TENANT_LENGTH or not tenant.isprintable():
        raise ConfigurationError(
            f"the tenant_extractor of {name} returned a tenant that is not 1-"
            f"{MAX_TENANT_LENGTH} printable characters."
        )
    return tenant


def required_tenant(
    extractor: Callable[..., Any],
    name: str,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    *,
    bypass: bool = False,
) -> str | None:
    """:func:`tenant_for`, raising E044 when there is none (None only with ``bypass``)."""
    tenant = tenant_for(extractor, name, args, kwargs)
    if tenant is None and not bypass:
        raise missing(name)
    return tenant


def missing(name: str) -> TenantRequiredError:
    return TenantRequiredError(
        f"{name} is a multi-tenant cache and its tenant_extractor found no tenant for "
        "this call. Make the tenant known for every call, or pass "
        "missing_tenant='bypass' to run such calls uncached."
    )


class tenant_scope:
    """Make ``tenant`` the current tenant for the block (a context manager)."""

    __slots__ = ("_tenant", "_token")

    def __init__(self, tenant: str) -> None:
        self._tenant = tenant

    def __enter__(self) -> str:
        self._token = _CURRENT.set(self._tenant)
        return self._tenant

    def __exit__(self, *exc: object) -> None:
        _CURRENT.reset(self._token)


def set_tenant(tenant: str) -> Any:
    """Set the current tenant; return the token for :func:`reset_tenant` (wrappers)."""
    return _CURRENT.set(tenant)


def reset_tenant(token: Any) -> None:
    _CURRENT.reset(token)


class TenantEncryptors:
    """An Encryptor that hands each call to the encryptor of the call's tenant.

    ``build(tenant)`` makes a tenant's encryptor (the plugin's factory with
    ``tenant=...``); each is built once and kept (at most 4096 per function, the
    oldest dropped first). ``digest_key`` is the base encryptor's: key names are
    keyed alike for every tenant, and the tenant is part of what is digested.
    """

    def __init__(self, build: Callable[[str], Encryptor], base: Encryptor) -> None:
        self._build = build
        self._by_tenant: dict[str, Encryptor] = {}
        self._lock = allocate_lock()
        self.digest_key = getattr(base, "digest_key", None)

    def __repr__(self) -> str:
        return f"TenantEncryptors({len(self._by_tenant)} tenants)"

    def after_fork(self) -> None:
        """In a forked child: a lock the parent held at the fork would never be freed."""
        self._lock = allocate_lock()

    def _current(self) -> Encryptor:
        tenant = current_tenant()
        found = self._by_tenant.get(tenant)
        if found is not None:
            return found
        built = self._build(tenant)  # outside the lock: key derivation takes a while
        with self._lock:
            found = self._by_tenant.get(tenant)
            if found is None:
                if len(self._by_tenant) >= _MAX_ENCRYPTORS:
                    del self._by_tenant[next(iter(self._by_tenant))]
                found = self._by_tenant[tenant] = built
        return found

    @property
    def key_id(self) -> str:
        return self._current().key_id

    def encrypt(self, plaintext: bytes, aad: bytes) -> bytes:
        return self._current().encrypt(plaintext, aad)

    def decrypt(self, blob: bytes, aad: bytes, *, key_id: str) -> bytes:
        return self._current().decrypt(blob, aad, key_id=key_id)
