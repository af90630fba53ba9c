"""Cache keys: canonical, type-tagged, fixed-length.

A backend key looks like ``cachekit:[<namespace>:]<module.qualname>:<digest>``
where ``<digest>`` is 32 hex characters of BLAKE2b over a canonical encoding of
the call's arguments, bound to the function's signature with defaults applied:

* ``f(1)``, ``f(x=1)`` and ``f(1, y=<default>)`` are the same key;
* ``1``, ``1.0``, ``True``, ``"1"`` and ``b"1"`` are five different keys, and so
  are ``(1, 2)`` and ``[1, 2]`` (the encoding is typed: a tuple is not a list);
* dict and set order does not matter;
* every item is length-prefixed, so ``("a:b", "c")`` and ``("a", "b:c")`` differ;
* user data never appears in the key itself, only inside the digest.

``@cache.secure`` keys end in ``:s2:<digest>``, where the digest is keyed by a key of
the function's own (:meth:`KeyBuilder.use_naming_key`).

Values the encoder does not understand raise :class:`~cachekit.errors.CacheKeyError`
(E020) instead of falling back to ``repr`` (which would embed memory addresses and
silently never hit, or worse, collide). Objects can opt in by defining
``__cache_key__(self)`` returning any encodable value.

The in-process L1 does not need the digest: for the common call shape (positional
arguments of exact types ``int``, ``str``, ``bytes``, ``float``, ``bool`` or
``None``) it is keyed by a tuple of the values and their types, which is cheaper
to build than a hash and keeps ``1`` and ``True`` apart.
"""

from __future__ import annotations

from cachekit._canonical import _qualified, canonical_args, canonical_bytes
from cachekit.errors import CacheKeyError, ConfigurationError

try:  # the C module directly: importing hashlib pulls in OpenSSL (~3 ms)
    from _blake2 import blake2b
except ImportError:  # pragma: no cover - every CPython build ships _blake2
    from hashlib import blake2b

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

__all__ = [
    "DIGEST_HEX_LENGTH",
    "FAST_TYPES",
    "RESERVED_NAMESPACES",
    "SECURE_KEY_FORMAT",
    "KeyBuilder",
    "canonical_bytes",
    "digest",
    "function_name",
    "generate_cache_key",
    "owner_tags",
    "owner_value",
    "valid_name",
    "validate_namespace",
]

#: Length of the hex digest that ends every backend key.
DIGEST_HEX_LENGTH = 32
#: Exact types whose equality and hash already respect their type, so a tuple of
#: them (plus their types) is a faithful L1 key.
FAST_TYPES = frozenset({int, str, bytes, float, bool, type(None)})

#: Key segments right after ``cachekit:`` that cachekit uses for its own keys
#: (``cachekit:gen:`` holds generation counters), so no namespace may take them.
RESERVED_NAMESPACES = frozenset({"gen"})

#: The key-name segment of ``@cache.secure`` keys, after the function name: the
#: format of their keyed digests (version 2 binds the function into the key).
SECURE_KEY_FORMAT = "s2"
_FUNCTION_KEY_LABEL = b"cachekit/s2/function-naming-key"

_NAME_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-")


class _Unbindable(Exception):
    """The arguments do not fit the signature; the caller lets the function raise."""


def valid_name(name: object) -> bool:
    """Whether ``name`` may be a key segment (a namespace or a tag)."""
    return isinstance(name, str) and 0 < len(name) <= 128 and _NAME_CHARS.issuperset(name)


def validate_namespace(namespace: str | None) -> str | None:
    """Return ``namespace`` if it is usable in a key; raise E040 otherwise."""
    if namespace is None:
        return None
    if not valid_name(namespace):
        raise ConfigurationError(
            f"namespace {namespace!r} is not valid: use 1-128 characters from "
            "letters, digits, '_', '.' and '-' (no ':', spaces or wildcards)."
        )
    if namespace in RESERVED_NAMESPACES:
        # cachekit:gen:... holds the generation counters: data keys there would be
        # taken for counters by every listener, and the function would lose coherence.
        raise ConfigurationError(
            f"namespace {namespace!r} is reserved: cachekit keeps its own keys under "
            f"'cachekit:{namespace}:'. Choose another name (reserved: "
            f"{', '.join(sorted(RESERVED_NAMESPACES))})."
        )
    return namespace


def function_name(func: Callable[..., Any]) -> str:
    """``module.qualname`` of a function (the middle part of its keys)."""
    module = getattr(func, "__module__", None) or "<unknown>"
    qualname = getattr(func, "__qualname__", None) or getattr(func, "__name__", None)
    if not qualname:
        raise ConfigurationError(f"cannot name {func!r}: it has no __qualname__ or __name__.")
    return f"{module}.{qualname}"


#: class -> the tag its instances (or itself, as a classmethod's ``cls``) put into a
#: method's key. Only classes without ``__cache_key__`` are kept (their tag is fixed).
owner_tags: dict[type, str] = {}


def owner_value(first: Any) -> Any:
    """What a method's ``self`` or ``cls`` contributes to its key.

    A class (a classmethod's ``cls``) and an instance of a class without
    ``__cache_key__`` contribute the class's qualified name, so a subclass never shares
    the entries of its base; an instance of a class with ``__cache_key__`` contributes
    itself, encoded through that hook (its class's name plus the value).
    """
    cls = first if isinstance(first, type) else type(first)
    tag = owner_tags.get(cls)
    if tag is not None:
        return tag
    tag = "cls:" + _qualified(cls)
    if getattr(cls, "__cache_key__", None) is not None:
        return tag if cls is first else first  # not kept: its instances differ
    if len(owner_tags) >= 4096:  # classes made at run time: keep the memo bounded
        owner_tags.clear()
    owner_tags[cls] = tag
    return tag


def digest(data: bytes, secret: bytes | None = None) -> str:
    """32 hex characters of BLAKE2b; keyed with ``secret`` (at most 64 bytes) when given."""
    if secret:
        return blake2b(data, digest_size=16, key=secret).hexdigest()
    return blake2b(data, digest_size=16).hexdigest()


# --- per-function key building -------------------------------------------------------

_CO_VARARGS = 0x04
_CO_VARKEYWORDS = 0x08


def _plain_signature(func: Any) -> tuple[tuple[str, ...], tuple[Any, ...]] | None:
    """(parameter names, defaults) of a plain Python function whose parameters are
    all positional-or-keyword; None for anything else (then inspect is used)."""
    code = getattr(func, "__code__", None)
    if code is None or type(func).__name__ != "function" or hasattr(func, "__wrapped__"):
        return None
    if code.co_posonlyargcount or code.co_kwonlyargcount:
        return None
    if code.co_flags & (_CO_VARARGS | _CO_VARKEYWORDS):
        return None
    names = tuple(code.co_varnames[: code.co_argcount])
    return names, tuple(func.__defaults__ or ())


class KeyBuilder:
    """Turns one function's calls into L1 keys and backend keys.

    Built once per decorated function. ``skip_first`` leaves ``self``/``cls`` out
    of the argument binding; ``owner`` (the default for methods) then puts
    :func:`owner_value` of it first in the key instead (``include_self=False`` does
    not). ``key_func`` replaces argument binding by a user function whose
    (encodable) result is digested. ``secret`` keys the digest; ``@cache.secure``
    passes ``secure=True`` (the ``s2`` segment in the prefix) and, once its encryptor
    is known, calls :meth:`use_naming_key`, so that key names cannot be computed for
    guessed arguments nor linked between functions.
    ``tenant`` returns the calling tenant (multi-tenant caches): it is digested
    with the arguments, so two tenants never share an entry, in L1 or the backend.
    """

    __slots__ = (
        "_defaults",
        "_fast_ok",
        "_memo",
        "_n_required",
        "_names",
        "_nparams",
        "_salt",
        "_secret",
        "_sig",
        "key_func",
        "owner",
        "prefix",
        "skip_first",
        "tenant",
    )

    # A bounded memo of backend keys for calls whose arguments are all FAST_TYPES
    # (keyed by the typed L1 tuple). Replaced, never mutated in place, whenever the
    # salt or the secret changes, so a racing writer can only fill a dead memo.
    _MEMO_MAX = 4096

    @property
    def salt(self) -> bytes:
        return self._salt

    @salt.setter
    def salt(self, value: bytes) -> None:
        self._salt = value
        self._memo: dict[Any, str] = {}

    @property
    def secret(self) -> bytes | None:
        return self._secret

    @secret.setter
    def secret(self, value: bytes | None) -> None:
        self._secret = value
        self._memo = {}

    def __init__(
        self,
        func: Callable[..., Any],
        *,
        namespace: str | None = None,
        name: str | None = None,
        skip_first: bool = False,
        owner: bool = False,
        key_func: Callable[..., Any] | None = None,
        secret: bytes | None = None,
        tenant: Callable[[], str] | None = None,
        secure: bool = False,
    ) -> None:
        validate_namespace(namespace)
        fname = name or function_name(func)
        self.prefix = f"cachekit:{namespace}:{fname}:" if namespace else f"cachekit:{fname}:"
        if secure:
            # Keyed digests of another format live under other names: never mixed up.
            self.prefix += SECURE_KEY_FORMAT + ":"
        self.skip_first = skip_first
        self.owner = owner and skip_first and key_func is None
        self.key_func = key_func
        self.tenant = tenant
        self.secret = secret
        # Mixed into every digest: the backend's invalidation generations, so that
        # bumping a generation moves every key of the function at once.
        self.salt = b""
        sig: Any = None
        plain = _plain_signature(func)
        if plain is not None:
            names, defaults = plain
            if skip_first and names:
                names = names[1:]
            simple = True
        else:
            import inspect

            try:
                sig = inspect.signature(func)
            except (TypeError, ValueError):  # builtins without a signature
                sig = None
            params = list(sig.parameters.values()) if sig is not None else []
            if skip_first and params:
                params = params[1:]
                if sig is not None:
                    sig = sig.replace(parameters=params)
            kind = inspect.Parameter.POSITIONAL_OR_KEYWORD
            simple = sig is not None and all(p.kind is kind for p in params)
            names = tuple(p.name for p in params)
            defaults = tuple(p.default for p in params if p.default is not p.empty)
        self._sig = sig
        self._nparams = len(names) if simple else -1
        self._names = names
        # Only a trailing run of defaults is possible for positional-or-keyword parameters.
        self._n_required = len(names) - len(defaults)
        self._defaults = defaults
        # The L1 fast path: plain positional calls with every parameter simple.
        self._fast_ok = simple and key_func is None and tenant is None

    # The argument tuple that identifies a call, with defaults applied.
    def normalize(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, ...]:
        if self.skip_first:
            args = args[1:]
        nparams = self._nparams
        if nparams >= 0:
            n = len(args)
            if not kwargs:
                if n == nparams:
                    return args
                if self._n_required <= n < nparams:
                    return args + self._defaults[n - self._n_required :]
                raise _Unbindable
            if n > nparams:
                raise _Unbindable
            values = list(args)
            names = self._names
            for i in range(n, nparams):
                name = names[i]
                if name in kwargs:
                    values.append(kwargs[name])
                elif i >= self._n_required:
                    values.append(self._defaults[i - self._n_required])
                else:
                    raise _Unbindable
            if len(kwargs) != sum(1 for name in names[n:] if name in kwargs):
                raise _Unbindable  # unknown or duplicate keyword
            return tuple(values)
        if self._sig is None:
            return (args, kwargs)
        try:
            bound = self._sig.bind(*args, **kwargs)
        except TypeError:
            raise _Unbindable from None
        bound.apply_defaults()
        return tuple(bound.arguments.values())

    def use_naming_key(self, naming_key: bytes) -> None:
        """Key the digests with this function's own subkey of ``naming_key``.

        The subkey is keyed BLAKE2b of the length-prefixed key prefix (namespace,
        function, format), so the same arguments of two functions give unrelated
        digests: a reader of the backend cannot link ``record(4711)`` to
        ``test_result(4711)``.
        """
        identity = self.prefix.encode("utf-8", "surrogatepass")
        data = _FUNCTION_KEY_LABEL + len(identity).to_bytes(4, "big") + identity
        self.secret = blake2b(data, digest_size=32, key=bytes(naming_key)[:64]).digest()

    def l1_key(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """The in-process key: a typed tuple on the fast path, else the digest."""
        return self.keys(args, kwargs)[0]

    def _digest_of(self, value: Any) -> str:
        return digest(canonical_bytes(value, "key argument") + self.salt, self.secret)

    def _basis(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """What a key_func key digests: its result, after the tenant if there is one."""
        assert self.key_func is not None
        basis = self.key_func(*args, **kwargs)
        return (self.tenant(), basis) if self.tenant is not None else basis

    def backend_key(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
        """The full key stored in the backend: ``cachekit:[ns:]module.qualname:digest``."""
        return self.keys(args, kwargs)[1]

    def keys(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, str]:
        """Both keys of one call, computing the normalized arguments once."""
        if self.key_func is not None:
            d = self._digest_of(self._basis(args, kwargs))
            return d, self.prefix + d
        values = self.normalize(args, kwargs)
        if self.owner:
            if not args:
                raise _Unbindable
            values = (owner_value(args[0]), *values)
        if self.tenant is not None:
            # The tenant leads the values (a str: the typed fast path below applies),
            # so tenants never share a key and an L1 hit needs no digest.
            values = (self.tenant(), *values)
        for v in values:
            if type(v) not in FAST_TYPES:
                d = self._digest_of(values)
                return d, self.prefix + d
        if len(values) == 1 and type(values[0]) is int:
            # One int argument is its own L1 key (56 B less per entry than a tuple):
            # an int never equals a str (digest keys), a tuple or another int, while
            # True and 1.0, which equal 1, keep their typed tuples.
            lkey: Any = values[0]
        else:
            lkey = (*values, *map(type, values))
        memo = self._memo
        bkey = memo.get(lkey)
        if bkey is None:
            bkey = self.prefix + digest(canonical_args(values) + self._salt, self._secret)
            if len(memo) >= self._MEMO_MAX:
                memo.clear()
            memo[lkey] = bkey
        return lkey, bkey


def generate_cache_key(
    func_or_name: Callable[..., Any] | str,
    args: tuple[Any, ...] | list[Any] = (),
    kwargs: dict[str, Any] | None = None,
    namespace: str | None = None,
) -> str:
    """The backend key that a call would use: ``cachekit:[<namespace>:]<name>:<digest>``.

    With a function (decorated or not), the arguments are bound to its signature
    exactly as the decorator does. With a plain name, the positional arguments
    and the keyword arguments are digested as given.
    """
    kwargs = dict(kwargs or {})
    args = tuple(args)
    if isinstance(func_or_name, str):
        if not func_or_name or ":" in func_or_name:
            raise ConfigurationError(
                f"function name {func_or_name!r} must be non-empty and contain no ':'."
            )
        builder = KeyBuilder(lambda *a, **k: None, namespace=namespace, name=func_or_name)
        builder._sig = None
        builder._nparams = -1
        return builder.backend_key(args, kwargs)
    existing = getattr(func_or_name, "cache_key", None)
    plan_ns = getattr(func_or_name, "__cachekit_namespace__", None)
    if existing is not None and callable(existing) and (namespace in (None, plan_ns)):
        return str(existing(*args, **kwargs))
    builder = KeyBuilder(func_or_name, namespace=namespace)
    try:
        return builder.backend_key(args, kwargs)
    except _Unbindable:
        raise CacheKeyError(
            f"the arguments do not match the signature of {function_name(func_or_name)}."
        ) from None
