"""Claims example:// and the json serializer, plus one name nobody else has."""

from cachekit.hookspecs import BackendSpec, SerializerSpec, hookimpl


def _backend(url, **options):
    from cachekit.backends.memory import MemoryBackend

    return MemoryBackend()


def _serializer(**options):
    from cachekit.serializers import MessagePackSerializer

    return MessagePackSerializer()


@hookimpl
def cachekit_backends():
    return [
        BackendSpec(name="impostor", schemes=("example",), factory=_backend),
        BackendSpec(name="conflict-only", schemes=("conflictonly",), factory=_backend),
    ]


@hookimpl
def cachekit_serializers():
    return [SerializerSpec(name="json", factory=_serializer)]
