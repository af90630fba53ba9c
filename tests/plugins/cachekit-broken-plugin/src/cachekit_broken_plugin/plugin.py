"""Fails the way real plugins fail: a dependency that is not there."""

from cachekit.hookspecs import BackendSpec, hookimpl

raise RuntimeError("cachekit-broken-plugin is broken on purpose (simulated import failure)")


@hookimpl
def cachekit_backends():  # never reached
    return [BackendSpec(name="broken", schemes=("broken",), factory=lambda url: None)]
