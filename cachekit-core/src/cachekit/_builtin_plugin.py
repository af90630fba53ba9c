"""The core's own plugin: the memory backend and the MessagePack and Pickle serializers.

Registered through the same hooks as any third-party plugin, so the hook
specifications describe what the core itself uses.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from cachekit.hookspecs import BackendSpec, SerializerSpec, hookimpl


def _memory(url: str, **options: Any) -> Any:
    from cachekit.backends.memory import from_url

    return from_url(url, **options)


def _memory_async(url: str, **options: Any) -> Any:
    return _memory(url, **options).to_async()


def _msgpack(**options: Any) -> Any:
    from cachekit._serializers import MessagePackSerializer

    if options:
        raise TypeError(f"MessagePackSerializer takes no argument, got {sorted(options)}")
    return MessagePackSerializer()


def _pickle(**options: Any) -> Any:
    from cachekit._serializers import PickleSerializer

    return PickleSerializer(**options)


def _msgpack_class() -> type:
    from cachekit._serializers import MessagePackSerializer

    return MessagePackSerializer


def _pickle_class() -> type:
    from cachekit._serializers import PickleSerializer

    return PickleSerializer


@hookimpl
def cachekit_backends() -> Iterable[BackendSpec]:
    return [
        BackendSpec(
            name="memory",
            schemes=("memory",),
            factory=_memory,
            async_factory=_memory_async,
            description="in-process store (memory://NAME shares a store by name)",
        )
    ]


@hookimpl
def cachekit_serializers() -> Iterable[SerializerSpec]:
    return [
        SerializerSpec(
            name="msgpack",
            factory=_msgpack,
            class_names=("MessagePackSerializer", "DefaultSerializer"),
            load_class=_msgpack_class,
            description="MessagePack (default): dict, list, str, int, float, bool, None, bytes",
        ),
        SerializerSpec(
            name="pickle",
            factory=_pickle,
            class_names=("PickleSerializer",),
            load_class=_pickle_class,
            description="pickle protocol 5: any picklable object; signed in shared backends",
        ),
    ]
