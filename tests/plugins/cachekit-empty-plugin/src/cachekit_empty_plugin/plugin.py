"""A correct hook module; the distribution's entry points just miss it."""

from cachekit.hookspecs import BackendSpec, hookimpl

#: Not a plugin: an entry point naming this object provides nothing.
SETTINGS = {"path": "/tmp/cache.sqlite"}


def _backend(url, **options):
    from cachekit.backends.memory import MemoryBackend

    return MemoryBackend()


@hookimpl
def cachekit_backends():
    return [BackendSpec(name="lite", schemes=("lite",), factory=_backend)]
