"""What more than one command of the ``cachekit`` command line needs.

Formatting (durations, one-line messages), the version, and the plugin registry as
``plugins`` and ``doctor`` show it. Only the standard library at import time.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Iterator

from cachekit.errors import CachekitError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from cachekit.plugins import Registry

__all__ = ["fmt_seconds", "load_registry", "one_line", "version"]


def version() -> str:
    from cachekit import __version__

    return __version__


def fmt_seconds(seconds: float) -> str:
    """A duration with a unit a human reads at a glance (ASCII only)."""
    if seconds >= 1:
        return f"{seconds:.2f} s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.1f} ms"
    return f"{seconds * 1e6:.1f} us"


def one_line(text: str) -> str:
    return " ".join(str(text).split())


@contextlib.contextmanager
def _quiet_plugin_warnings() -> Iterator[None]:
    """Silence the registry's own E042/E043 warnings: the commands report them."""
    logger = logging.getLogger("cachekit.plugins")

    def drop_all(record: logging.LogRecord) -> bool:
        return False

    logger.addFilter(drop_all)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r"\[E04[23]\]")
            yield
    finally:
        logger.removeFilter(drop_all)


def load_registry() -> tuple[Registry, CachekitError | None]:
    """The process registry; with CACHEKIT_STRICT_PLUGINS, a lenient one plus the error.

    Strict mode turns a broken plugin into an exception, which is right for an
    application but would leave ``plugins`` and ``doctor`` with nothing to show.
    """
    from cachekit import plugins
    from cachekit.errors import PluginConflictError, PluginLoadError

    with _quiet_plugin_warnings():
        try:
            return plugins.registry(), None
        except (PluginLoadError, PluginConflictError) as exc:
            lenient = plugins.Registry()
            lenient.strict = False
            return lenient.load(), exc
