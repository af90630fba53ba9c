"""The plugin registry: built lazily, once, from built-ins and ``cachekit`` entry points.

Nothing here runs at ``import cachekit``. The first time a backend URL, a
serializer name or an encryptor has to be resolved, :func:`registry` builds a
pluggy ``PluginManager``, registers the core's built-in plugin, then loads every
entry point of the ``cachekit`` group one by one inside ``try``/``except``:

* a plugin that fails to import or register is reported (a warning, and in
  ``cachekit plugins`` / ``cachekit doctor``) and the others keep working;
  ``CACHEKIT_STRICT_PLUGINS=1`` makes that failure an error (E042);
* a plugin that provides nothing (its module has no ``@hookimpl`` function, or its
  entry point names a function, class or other object instead of a module) is
  reported the same way: it cannot do anything, so it is a load failure;
* ``CACHEKIT_DISABLE_PLUGIN_AUTOLOAD=1`` loads the built-ins only;
* two plugins claiming the same scheme or name are a conflict (E043) naming both
  distributions, raised when that name is used;
* asking for something nobody provides raises E041, naming the package to install
  when it is one of ours, and the plugins that failed to load when there are some.

The lookups (:func:`backend_spec`, :func:`serializer_spec`, :func:`encryptor_spec`,
:func:`serializer_class`) return the records plugins registered; :func:`build`
calls a record's factory. None of them runs on a cache hit: the decorator
resolves everything once, at a function's first call.
"""

from __future__ import annotations

import logging
import os
import threading
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from cachekit.errors import (
    ConfigurationError,
    PluginConflictError,
    PluginLoadError,
    PluginNotFoundError,
)
from cachekit.hookspecs import BackendSpec, EncryptorSpec, SerializerSpec

__all__ = [
    "ENTRY_POINT_GROUP",
    "KNOWN_PROVIDERS",
    "PluginInfo",
    "Registry",
    "backend_spec",
    "build",
    "encryptor_spec",
    "registry",
    "reset_registry",
    "serializer_class",
    "serializer_spec",
]

log = logging.getLogger("cachekit.plugins")

ENTRY_POINT_GROUP = "cachekit"
_CORE_DIST = "cachekit-core"

#: Where the names we know about come from, for "pip install ..." hints.
KNOWN_PROVIDERS: dict[tuple[str, str], str] = {
    **{
        ("backend", s): "cachekit-redis"
        for s in (
            "redis",
            "rediss",
            "unix",
            "redis+cluster",
            "rediss+cluster",
            "redis+sentinel",
            "rediss+sentinel",
        )
    },
    ("serializer", "arrow"): "cachekit-arrow",
    ("serializer", "ArrowSerializer"): "cachekit-arrow",
    ("encryptor", "aes-gcm"): "cachekit-crypto",
}

_T = TypeVar("_T")

#: The registration hooks, and the record type each one returns.
_RECORD_HOOKS: dict[str, type] = {
    "cachekit_backends": BackendSpec,
    "cachekit_serializers": SerializerSpec,
    "cachekit_encryptors": EncryptorSpec,
}

#: PluginInfo.status values.
OK, FAILED, EMPTY = "ok", "failed", "empty"


@dataclass
class PluginInfo:
    """One plugin as the registry saw it: loaded, failed, or providing nothing.

    ``name`` is the entry point's name (``"cachekit"`` for the core's own plugin),
    ``module`` the entry point's target (``"pkg.module"`` or ``"pkg.module:attr"``).
    ``status`` is ``"ok"``, ``"failed"`` (it raised while being imported, registered
    or asked for its records) or ``"empty"`` (it implements no cachekit hook). For
    the last two, ``error`` says what went wrong (one line) and the plugin is left
    out; ``traceback`` holds the formatted traceback when an exception was the cause.
    ``conflicts`` lists the names this plugin claims that another plugin claims too
    (E043).
    """

    name: str
    module: str
    distribution: str
    version: str
    hooks: list[str] = field(default_factory=list)
    provides: list[str] = field(default_factory=list)
    error: str | None = None
    status: str = OK
    traceback: str | None = None
    conflicts: list[str] = field(default_factory=list)
    #: The description of each item of ``provides`` that has one.
    descriptions: dict[str, str] = field(default_factory=dict, repr=False)

    def as_dict(self) -> dict[str, Any]:
        """The JSON-ready fields, without ``traceback`` (``cachekit.health()`` reports
        this, and a health endpoint has no use for file paths and source lines)."""
        return {
            "name": self.name,
            "module": self.module,
            "distribution": self.distribution,
            "version": self.version,
            "status": self.status,
            "hooks": list(self.hooks),
            "provides": list(self.provides),
            "conflicts": list(self.conflicts),
            "error": self.error,
        }


@dataclass
class _Entry:
    spec: Any
    plugin: PluginInfo
    rivals: list[PluginInfo] = field(default_factory=list)


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _kind_of(obj: Any) -> str | None:
    """What an entry point's target is, when it is not a module (None for a module)."""
    import inspect
    import types

    if isinstance(obj, types.ModuleType):
        return None
    if inspect.isclass(obj):
        return f"the class {obj.__qualname__}"
    if inspect.ismethod(obj):
        return f"the method {obj.__qualname__}"
    if inspect.isroutine(obj):
        return f"the function {getattr(obj, '__qualname__', obj)}"
    return f"a {type(obj).__name__} object"


def _aimed_elsewhere(obj: Any, target: str) -> str | None:
    """The fix for an entry point naming something other than a module, or None."""
    kind = _kind_of(obj)
    if kind is None:
        return None
    module = target.partition(":")[0].strip()
    return (
        f"the entry point {target!r} names {kind}, not a module; point it at the module "
        f"that holds the @hookimpl functions ({module!r} if they live there)"
    )


def _why_empty(obj: Any, target: str) -> str:
    """Why a registered plugin implements no hook, and what to change."""
    aimed = _aimed_elsewhere(obj, target)
    if aimed is not None:
        return f"provides nothing: {aimed}"
    unmarked = sorted(name for name in _RECORD_HOOKS if callable(getattr(obj, name, None)))
    if unmarked:
        return (
            f"provides nothing: module {target} defines {', '.join(n + '()' for n in unmarked)} "
            "without cachekit's marker; decorate it with @hookimpl "
            "(from cachekit.hookspecs import hookimpl)"
        )
    return (
        f"provides nothing: module {target} has no @hookimpl function (expected one or more "
        f"of {', '.join(_RECORD_HOOKS)}); if the hooks live in another module, point the "
        "entry point there"
    )


def _short(info: PluginInfo, limit: int = 100) -> str:
    """A plugin's problem in a few words, for a message that lists several."""
    if info.status == EMPTY:
        return "provides nothing"
    text = _one_line(info.error or "")
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _format_traceback(exc: BaseException) -> str:
    import traceback

    return "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))


class Registry:
    """What the loaded plugins provide, with typed accessors.

    ``plugins`` lists every plugin in load order (the built-in one first), loaded or
    not; ``backends`` (by URL scheme), ``serializers`` (by name),
    ``serializer_classes`` (by class name) and ``encryptors`` (by name) map each
    name to the record that claims it. Use :meth:`backend`, :meth:`serializer`,
    :meth:`serializer_class` and :meth:`encryptor` rather than the tables: they
    raise E041 for a name nobody provides and E043 for a contested one.
    """

    def __init__(self) -> None:
        import pluggy

        from cachekit import hookspecs

        self.pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
        self.pm.add_hookspecs(hookspecs)
        self.plugins: list[PluginInfo] = []
        self.backends: dict[str, _Entry] = {}  # by URL scheme
        self.serializers: dict[str, _Entry] = {}  # by name
        self.serializer_classes: dict[str, _Entry] = {}  # by class name
        self.encryptors: dict[str, _Entry] = {}  # by name
        self.strict = _env_flag("CACHEKIT_STRICT_PLUGINS")
        self.autoload = not _env_flag("CACHEKIT_DISABLE_PLUGIN_AUTOLOAD")

    # -- loading ---------------------------------------------------------------------

    def load(self) -> Registry:
        """Register the built-in plugin, then every entry point (unless autoload is off)."""
        from cachekit import _builtin_plugin

        self._add(_builtin_plugin, "cachekit", "cachekit._builtin_plugin", _CORE_DIST, _version())
        if self.autoload:
            for ep in _entry_points():
                dist = getattr(ep, "dist", None)
                dist_name = getattr(dist, "name", None) or "<unknown distribution>"
                version = getattr(dist, "version", None) or "?"
                try:
                    module = ep.load()
                except BaseException as exc:
                    if not isinstance(exc, Exception):
                        raise
                    info = PluginInfo(ep.name, ep.value, dist_name, version)
                    self._failed(info, f"{type(exc).__name__}: {exc}", exc)
                    continue
                self._add(module, ep.name, ep.value, dist_name, version)
        return self

    def _failed(
        self, info: PluginInfo, error: str, exc: Exception | None, status: str = FAILED
    ) -> None:
        """Record a plugin left out; warn, or raise E042 under CACHEKIT_STRICT_PLUGINS."""
        info.status = status
        info.error = error
        info.traceback = None if exc is None else _format_traceback(exc)
        info.hooks.clear()
        info.provides.clear()
        info.descriptions.clear()
        self.plugins.append(info)
        what = "provides nothing" if status == EMPTY else "failed to load"
        plugin = f"cachekit plugin {info.name!r} from {info.distribution} {info.version}"
        reason = _one_line(error).removeprefix("provides nothing: ")
        if self.strict:
            # An error, said once; no advice to set the variable that is already set.
            raise PluginLoadError(
                f"{plugin} {what}: {reason}. CACHEKIT_STRICT_PLUGINS is set, so this stops "
                "cachekit instead of leaving the plugin out.",
                hint="Run `cachekit plugins -v` for details; fix, upgrade or uninstall the plugin.",
            ) from exc
        message = (
            f"{plugin} {what} and is ignored: {reason}. Run `cachekit plugins -v` for details; "
            "set CACHEKIT_STRICT_PLUGINS=1 to make this an error."
        )
        # One report, through the warnings machinery (visible by default, filterable,
        # and routed to logging by logging.captureWarnings in services).
        log.debug("[E042] %s", message)
        warnings.warn(f"[E042] {message}", RuntimeWarning, stacklevel=4)

    def _add(self, module: Any, name: str, target: str, dist: str, version: str) -> None:
        info = PluginInfo(name, target, dist, version)
        aimed = _aimed_elsewhere(module, target)

        def failed(exc: Exception) -> None:
            error = f"{type(exc).__name__}: {exc}"
            self._failed(info, error if aimed is None else f"{error} ({aimed})", exc)

        try:
            if self.pm.is_registered(module):
                raise ValueError(f"module {target} is already registered")
            self.pm.register(module, name=name)
        except Exception as exc:
            failed(exc)
            return
        try:
            # pluggy checks signatures at register() but accepts a hook name no spec
            # declares (a misspelled cachekit_backend); check_pending() refuses it.
            self.pm.check_pending()
        except Exception as exc:
            self.pm.unregister(module)
            failed(exc)
            return
        callers = [c for c in self.pm.get_hookcallers(module) or () if c.name in _RECORD_HOOKS]
        if not callers:
            # Registered fine and does nothing: a function named by the entry point,
            # a package whose hooks live in a submodule, a forgotten @hookimpl.
            self.pm.unregister(module)
            self._failed(info, _why_empty(module, target), None, EMPTY)
            return
        collected: list[tuple[str, list[Any]]] = []
        try:
            for caller in callers:
                kind = _RECORD_HOOKS[caller.name]
                for impl in caller.get_hookimpls():
                    if impl.plugin is not module:
                        continue
                    produced: Any = impl.function()
                    records: list[Any] = list(produced or ())
                    for r in records:
                        if not isinstance(r, kind):
                            raise TypeError(
                                f"{caller.name}() returned {type(r).__name__}, "
                                f"expected {kind.__name__}"
                            )
                    collected.append((caller.name, records))
        except Exception as exc:
            self.pm.unregister(module)
            failed(exc)
            return
        for hook, records in collected:
            info.hooks.append(hook)
            for r in records:
                if isinstance(r, BackendSpec):
                    for scheme in r.schemes:
                        self._claim(self.backends, scheme, r, info, "backend scheme")
                    item = f"backend {r.name} ({', '.join(s + '://' for s in r.schemes)})"
                elif isinstance(r, SerializerSpec):
                    self._claim(self.serializers, r.name, r, info, "serializer")
                    for cls_name in r.class_names:
                        self._claim(self.serializer_classes, cls_name, r, info, "serializer class")
                    item = f"serializer {r.name}"
                else:
                    self._claim(self.encryptors, r.name, r, info, "encryptor")
                    item = f"encryptor {r.name}"
                info.provides.append(item)
                if r.description:
                    info.descriptions[item] = r.description
        self.plugins.append(info)

    def _claim(
        self, table: dict[str, _Entry], key: str, spec: Any, info: PluginInfo, what: str
    ) -> None:
        existing = table.get(key)
        if existing is None:
            table[key] = _Entry(spec, info)
            return
        existing.rivals.append(info)
        info.conflicts.append(
            f"{what} {key!r} (also claimed by {existing.plugin.distribution}, "
            f"plugin {existing.plugin.name!r})"
        )
        existing.plugin.conflicts.append(
            f"{what} {key!r} (also claimed by {info.distribution}, plugin {info.name!r})"
        )
        message = _conflict_message(what, key, existing)
        if self.strict:
            raise PluginConflictError(message)
        log.warning("[E043] %s", message)

    # -- lookups ---------------------------------------------------------------------

    def _lookup(self, table: dict[str, _Entry], key: str, kind: str, what: str) -> Any:
        entry = table.get(key)
        if entry is None:
            raise self.not_found(kind, key, what, sorted(table))
        if entry.rivals:
            raise PluginConflictError(_conflict_message(what, key, entry))
        return entry.spec

    def not_found(
        self, kind: str, key: str, what: str, available: list[str]
    ) -> PluginNotFoundError:
        """The E041 error for ``what`` ``key``: what to install, and why it may be missing.

        ``kind`` is ``"backend"``, ``"serializer"`` or ``"encryptor"`` (the key of
        :data:`KNOWN_PROVIDERS`); ``available`` lists the names that do exist.
        """
        package = KNOWN_PROVIDERS.get((kind, key))
        broken = self.errors()
        if package:
            mine = [p for p in broken if p.distribution == package]
            if mine:
                return PluginNotFoundError(
                    f"{what} {key!r} is provided by {package}, which is installed but failed "
                    f"to load: {_one_line(mine[0].error or '')}",
                    hint=f"Run `cachekit plugins -v` to see why; reinstall or upgrade {package}.",
                )
            message = f"{what} {key!r} is provided by {package}: pip install {package}"
        else:
            message = (
                f"no plugin provides {what} {key!r}; available: {', '.join(available) or 'none'}"
            )
        if not self.autoload:
            message += (
                ". CACHEKIT_DISABLE_PLUGIN_AUTOLOAD is set, so only cachekit's built-in plugin "
                "was loaded, not the installed ones: unset it to use them"
            )
        elif broken:
            listed = "; ".join(
                f"{p.name!r} from {p.distribution} {p.version} ({_short(p)})" for p in broken
            )
            message += (
                f". {len(broken)} installed plugin(s) could not be used and may be the one "
                f"meant to provide it: {listed}"
            )
            return PluginNotFoundError(
                message + ".", hint="Run `cachekit plugins -v` to see what is wrong with each."
            )
        return PluginNotFoundError(message + ("" if package and self.autoload else "."))

    def backend(self, scheme: str) -> BackendSpec:
        """The :class:`BackendSpec` serving URL scheme ``scheme`` (E041, E043)."""
        spec: BackendSpec = self._lookup(self.backends, scheme, "backend", "backend scheme")
        return spec

    def serializer(self, name: str) -> SerializerSpec:
        """The :class:`SerializerSpec` named ``name`` (E041, E043)."""
        spec: SerializerSpec = self._lookup(self.serializers, name, "serializer", "serializer")
        return spec

    def serializer_class(self, class_name: str) -> type:
        """The class a plugin publishes as ``cachekit.serializers.<class_name>`` (E041, E043)."""
        spec: SerializerSpec = self._lookup(
            self.serializer_classes, class_name, "serializer", "serializer class"
        )
        assert spec.load_class is not None  # checked by SerializerSpec
        return spec.load_class()

    def encryptor(self, name: str) -> EncryptorSpec:
        """The :class:`EncryptorSpec` named ``name`` (E041, E043)."""
        spec: EncryptorSpec = self._lookup(self.encryptors, name, "encryptor", "encryptor")
        return spec

    def errors(self) -> list[PluginInfo]:
        """The plugins left out: failed to load, or provide nothing (E042)."""
        return [p for p in self.plugins if p.error]

    def conflicts(self) -> list[str]:
        """One E043 message per name that two or more plugins claim."""
        found: list[str] = []
        for table, what in (
            (self.backends, "backend scheme"),
            (self.serializers, "serializer"),
            (self.serializer_classes, "serializer class"),
            (self.encryptors, "encryptor"),
        ):
            for key, entry in sorted(table.items()):
                if entry.rivals:
                    found.append(_conflict_message(what, key, entry))
        return found


def _conflict_message(what: str, key: str, entry: _Entry) -> str:
    claimants = [entry.plugin, *entry.rivals]
    names = [f"{p.distribution} (plugin {p.name!r})" for p in claimants]
    listed = (
        f"both {names[0]} and {names[1]}"
        if len(names) == 2
        else f"{', '.join(names[:-1])} and {names[-1]}"
    )
    return (
        f"{what} {key!r} is claimed by {listed}, so cachekit cannot tell which one to use; "
        "uninstall one of them."
    )


def _entry_points() -> Iterable[Any]:
    from importlib.metadata import entry_points

    return sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda ep: ep.name)


def _version() -> str:
    from cachekit._version import __version__

    return __version__


_registry: Registry | None = None
_lock = threading.Lock()


def registry() -> Registry:
    """The process's :class:`Registry`, built on the first call and kept.

    Building it imports every plugin module (cheap by contract: heavy imports wait
    for the factories) and calls every registration hook once. Under
    ``CACHEKIT_STRICT_PLUGINS=1`` a plugin that fails to load raises
    :class:`~cachekit.errors.PluginLoadError` (E042) and a contested name
    :class:`~cachekit.errors.PluginConflictError` (E043) from here; the next call
    tries again.
    """
    global _registry
    reg = _registry
    if reg is None:
        with _lock:
            if _registry is None:
                _registry = Registry().load()
            reg = _registry
    return reg


def reset_registry() -> None:
    """Forget the registry; the next lookup builds it again from the installed plugins.

    For tests and for a process that installed a plugin after its first lookup.
    Functions that already resolved their backend, serializer and encryptor (at
    their first call) keep those objects; only later resolutions see the new registry.
    """
    global _registry
    with _lock:
        _registry = None


def backend_spec(scheme: str) -> BackendSpec:
    """The :class:`~cachekit.hookspecs.BackendSpec` serving URL scheme ``scheme``.

    ``backend_spec("memory").factory("memory://x")`` builds a backend the way
    ``@cache(backend="memory://x")`` does (but not shared: the decorator keeps one
    backend per URL). Raises E041 when nothing provides the scheme and E043 when
    two plugins claim it.
    """
    return registry().backend(scheme)


def serializer_spec(name: str) -> SerializerSpec:
    """The :class:`~cachekit.hookspecs.SerializerSpec` named ``name`` (E041, E043).

    ``name`` is what ``@cache(serializer="...")`` accepts and what stored envelopes
    record, e.g. ``"msgpack"``, ``"pickle"``, ``"arrow"``.
    """
    return registry().serializer(name)


def encryptor_spec(name: str) -> EncryptorSpec:
    """The :class:`~cachekit.hookspecs.EncryptorSpec` named ``name`` (E041, E043).

    ``@cache.secure`` uses ``encryptor_spec("aes-gcm")`` (cachekit-crypto).
    """
    return registry().encryptor(name)


def serializer_class(class_name: str) -> type:
    """The serializer class a plugin publishes under ``class_name``.

    This is how ``from cachekit.serializers import ArrowSerializer`` finds
    cachekit-arrow's class. A name that no plugin declares (and that belongs to no
    known package) raises AttributeError, as a missing module attribute should; a
    known name whose package is missing raises E041 (also an ImportError).
    """
    reg = registry()
    if (
        class_name not in reg.serializer_classes
        and ("serializer", class_name) not in KNOWN_PROVIDERS
    ):
        raise AttributeError(f"module 'cachekit.serializers' has no attribute {class_name!r}")
    return reg.serializer_class(class_name)


def build(factory: Callable[..., _T], what: str, *args: Any, **options: Any) -> _T:
    """Call a plugin factory, turning a TypeError about its options into E040.

    ``what`` names the object in the error (``"backend redis"``). Other exceptions
    from the factory propagate unchanged.
    """
    try:
        return factory(*args, **options)
    except ConfigurationError:
        raise
    except TypeError as exc:
        if options and "argument" in str(exc):
            raise ConfigurationError(
                f"{what} rejected its options {sorted(options)}: {exc}"
            ) from exc
        raise
