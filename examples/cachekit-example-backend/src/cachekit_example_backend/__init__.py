"""cachekit-example-backend: an ``example://`` backend and a ``json`` serializer for cachekit.

Installing the distribution is all it takes: cachekit finds the plugin through
the ``cachekit`` entry point declared in pyproject.toml. Nothing is imported
from here until cachekit asks for ``example://`` or ``json``.
"""

__version__ = "0.1.0"
