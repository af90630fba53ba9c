"""The plugin registry: built lazily, once, from built-ins and ``cachekit`` entry points.

Nothing here runs at ``import cachekit``. The first time a backend URL, a
serializer name or an encryptor has to be resolved, :func:`registry` builds a
pluggy ``PluginManager``, registers the core's built-in plugin, then loads every
entry point of the ``cachekit`` group one by one inside ``try``/``except``:

* a plugin that fails to import or register is reported (a warning, and in
  ``cachekit plugins`` / ``cachekit doctor``) and the others keep working;
  ``CACHEKIT_STRICT_PLUGINS=1`` makes that failure an error (E042);
* ``CACHEKIT_DISABLE_PLUGIN_AUTOLOAD=1`` loads the built-ins only;
* two plugins claiming the same scheme or name are a conflict (E043) naming both
  distributions, raised when that name is used;
* asking for something nobody provides raises E041, naming the package to install
  when it is one of ours.
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
    "PluginInfo",
    "Registry",
    "backend_spec",
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


@dataclass
class PluginInfo:
    """One loaded (or failed) plugin, as ``cachekit plugins`` shows it."""

    name: str
    module: str
    distribution: str
    version: str
    hooks: list[str] = field(default_factory=list)
    provides: list[str] = field(default_factory=list)
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "module": self.module,
            "distribution": self.distribution,
            "version": self.version,
            "hooks": list(self.hooks),
            "provides": list(self.provides),
            "error": self.error,
        }


@dataclass
class _Entry:
    spec: Any
    plugin: PluginInfo
    rivals: list[PluginInfo] = field(default_factory=list)


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


class Registry:
    """What the loaded plugins provide, with typed accessors."""

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
                    self._failed(ep.name, ep.value, dist_name, version, exc)
                    continue
                self._add(module, ep.name, ep.value, dist_name, version)
        return self

    def _failed(self, name: str, target: str, dist: str, version: str, exc: Exception) -> None:
        info = PluginInfo(name, target, dist, version, error=f"{type(exc).__name__}: {exc}")
        self.plugins.append(info)
        message = (
            f"cachekit plugin {name!r} from {dist} {version} failed to load and is ignored: "
            f"{info.error}. Run `cachekit plugins` for details; set "
            "CACHEKIT_STRICT_PLUGINS=1 to make this an error."
        )
        if self.strict:
            raise PluginLoadError(message) from exc
        # One report, through the warnings machinery (visible by default, filterable,
        # and routed to logging by logging.captureWarnings in services).
        log.debug("[E042] %s", message)
        warnings.warn(f"[E042] {message}", RuntimeWarning, stacklevel=4)

    def _add(self, module: Any, name: str, target: str, dist: str, version: str) -> None:
        info = PluginInfo(name, target, dist, version)
        try:
            if self.pm.is_registered(module):
                raise ValueError(f"module {target} is already registered")
            self.pm.register(module, name=name)
        except Exception as exc:
            self._failed(name, target, dist, version, exc)
            return
        try:
            # A misspelled hook (cachekit_backend) would otherwise be ignored silently.
            self.pm.check_pending()
        except Exception as exc:
            self.pm.unregister(module)
            self._failed(name, target, dist, version, exc)
            return
        kinds = {
            "cachekit_backends": BackendSpec,
            "cachekit_serializers": SerializerSpec,
            "cachekit_encryptors": EncryptorSpec,
        }
        collected: list[tuple[str, list[Any]]] = []
        try:
            for caller in self.pm.get_hookcallers(module) or ():
                kind = kinds.get(caller.name)
                if kind is None:
                    continue
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
            self._failed(name, target, dist, version, exc)
            return
        for hook, records in collected:
            info.hooks.append(hook)
            for r in records:
                if isinstance(r, BackendSpec):
                    for scheme in r.schemes:
                        self._claim(self.backends, scheme, r, info, "backend scheme")
                    info.provides.append(
                        f"backend {r.name} ({', '.join(s + '://' for s in r.schemes)})"
                    )
                elif isinstance(r, SerializerSpec):
                    self._claim(self.serializers, r.name, r, info, "serializer")
                    for cls_name in r.class_names:
                        self._claim(self.serializer_classes, cls_name, r, info, "serializer class")
                    info.provides.append(f"serializer {r.name}")
                else:
                    self._claim(self.encryptors, r.name, r, info, "encryptor")
                    info.provides.append(f"encryptor {r.name}")
        self.plugins.append(info)

    def _claim(
        self, table: dict[str, _Entry], key: str, spec: Any, info: PluginInfo, what: str
    ) -> None:
        existing = table.get(key)
        if existing is None:
            table[key] = _Entry(spec, info)
            return
        existing.rivals.append(info)
        message = (
            f"{what} {key!r} is claimed by both {existing.plugin.distribution} "
            f"(plugin {existing.plugin.name!r}) and {info.distribution} (plugin {info.name!r}); "
            "uninstall one of them."
        )
        if self.strict:
            raise PluginConflictError(message)
        log.warning("[E043] %s", message)

    # -- lookups ---------------------------------------------------------------------

    def _lookup(self, table: dict[str, _Entry], key: str, kind: str, what: str) -> Any:
        entry = table.get(key)
        if entry is None:
            raise self.not_found(kind, key, what, sorted(table))
        if entry.rivals:
            names = " and ".join(
                f"{p.distribution} (plugin {p.name!r})" for p in [entry.plugin, *entry.rivals]
            )
            raise PluginConflictError(
                f"{what} {key!r} is claimed by both {names}; uninstall one of them."
            )
        return entry.spec

    def not_found(
        self, kind: str, key: str, what: str, available: list[str]
    ) -> PluginNotFoundError:
        package = KNOWN_PROVIDERS.get((kind, key))
        broken = [p for p in self.plugins if p.error and package and p.distribution == package]
        if package and broken:
            return PluginNotFoundError(
                f"{what} {key!r} is provided by {package}, which is installed but failed to "
                f"load: {broken[0].error}",
                hint="Run `cachekit plugins` to see the error.",
            )
        if package:
            return PluginNotFoundError(
                f"{what} {key!r} is provided by {package}: pip install {package}"
                + ("" if self.autoload else " (and CACHEKIT_DISABLE_PLUGIN_AUTOLOAD is set)")
            )
        return PluginNotFoundError(
            f"no plugin provides {what} {key!r}; available: {', '.join(available) or 'none'}."
        )

    def backend(self, scheme: str) -> BackendSpec:
        spec: BackendSpec = self._lookup(self.backends, scheme, "backend", "backend scheme")
        return spec

    def serializer(self, name: str) -> SerializerSpec:
        spec: SerializerSpec = self._lookup(self.serializers, name, "serializer", "serializer")
        return spec

    def serializer_class(self, class_name: str) -> type:
        spec: SerializerSpec = self._lookup(
            self.serializer_classes, class_name, "serializer", "serializer class"
        )
        assert spec.load_class is not None  # checked by SerializerSpec
        return spec.load_class()

    def encryptor(self, name: str) -> EncryptorSpec:
        spec: EncryptorSpec = self._lookup(self.encryptors, name, "encryptor", "encryptor")
        return spec

    def errors(self) -> list[PluginInfo]:
        return [p for p in self.plugins if p.error]


def _entry_points() -> Iterable[Any]:
    from importlib.metadata import entry_points

    return sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda ep: ep.name)


def _version() -> str:
    from cachekit import __version__

    return __version__


_registry: Registry | None = None
_lock = threading.Lock()


def registry() -> Registry:
    """The process's registry, built on first call."""
    global _registry
    reg = _registry
    if reg is None:
        with _lock:
            if _registry is None:
                _registry = Registry().load()
            reg = _registry
    return reg


def reset_registry() -> None:
    """Forget the registry; the next lookup rebuilds it (tests, after installing a plugin)."""
    global _registry
    with _lock:
        _registry = None


def backend_spec(scheme: str) -> BackendSpec:
    return registry().backend(scheme)


def serializer_spec(name: str) -> SerializerSpec:
    return registry().serializer(name)


def encryptor_spec(name: str) -> EncryptorSpec:
    return registry().encryptor(name)


def serializer_class(class_name: str) -> type:
    """A serializer class by public name; AttributeError when the name is nobody's."""
    reg = registry()
    if (
        class_name not in reg.serializer_classes
        and ("serializer", class_name) not in KNOWN_PROVIDERS
    ):
        raise AttributeError(f"module 'cachekit.serializers' has no attribute {class_name!r}")
    return reg.serializer_class(class_name)


def build(factory: Callable[..., _T], what: str, *args: Any, **options: Any) -> _T:
    """Call a plugin factory, turning a TypeError about options into E040."""
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
