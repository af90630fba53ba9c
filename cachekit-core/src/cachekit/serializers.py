"""Serializers shipped with the core, and lazy access to the ones plugins provide.

* :class:`MessagePackSerializer` (``"msgpack"``, the default): dict, list, tuple
  (read back as a list), str, int (-2**63 to 2**64 - 1), float, bool, None and
  bytes. Anything else raises :class:`~cachekit.errors.SerializationError` (E004)
  naming the type and the fix. Compact, fast, safe to read from anywhere: bytes
  holding an extension type (ExtType, Timestamp), which it never writes, raise
  :class:`~cachekit.errors.DeserializationError` (E005).
* :class:`PickleSerializer` (``"pickle"``): any picklable object. Because loading
  pickle can run code, its payloads are signed (HMAC-SHA256) when a signing key is
  configured, and data read back from a shared backend is only unpickled after
  the signature checks out. See docs/serializers.md for the rule.

``ArrowSerializer`` comes from the cachekit-arrow distribution; ``from
cachekit.serializers import ArrowSerializer`` resolves it through the plugin
registry on first access and raises an ImportError naming the package when it is
not installed.

The classes live in the private :mod:`cachekit._serializers`, which the core's own
plugin imports; this public module sits above the registry, so the registry never
imports the module that asks it for plugin classes (no import cycle).
"""

from __future__ import annotations

from cachekit._serializers import (
    DEFAULT_SERIALIZER,
    DefaultSerializer,
    MessagePackSerializer,
    PickleSerializer,
)

__all__ = [
    "DEFAULT_SERIALIZER",
    "DefaultSerializer",
    "MessagePackSerializer",
    "PickleSerializer",
]


def __getattr__(name: str) -> type:
    # Serializer classes provided by plugins (ArrowSerializer, ...) resolve lazily.
    if name.startswith("__"):
        raise AttributeError(name)
    from cachekit.plugins import serializer_class

    cls = serializer_class(name)
    globals()[name] = cls
    return cls
