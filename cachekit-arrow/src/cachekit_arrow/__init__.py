"""cachekit-arrow: ``ArrowSerializer`` for pandas DataFrames and Series and Arrow tables.

Installing this distribution is enough: it registers the ``arrow`` serializer with
cachekit-core through the ``cachekit`` entry point, so ``@cache(serializer="arrow")``
and ``from cachekit.serializers import ArrowSerializer`` both work::

    from cachekit import cache
    from cachekit_arrow import ArrowSerializer

    @cache(serializer=ArrowSerializer(compression="zstd"))
    def daily_totals(day: str) -> "pandas.DataFrame": ...

Values are written as an Arrow IPC stream. Importing this package is cheap:
``pyarrow`` is imported the first time a value is serialized or read, and
``pandas`` only when a pandas object is involved.
"""

from __future__ import annotations

from cachekit_arrow.serializer import (
    COMPRESSION_CHOICES,
    COMPRESSION_ENV,
    RETURN_FORMATS,
    ArrowSerializer,
)

__version__ = "0.1.0"

__all__ = [
    "COMPRESSION_CHOICES",
    "COMPRESSION_ENV",
    "RETURN_FORMATS",
    "ArrowSerializer",
    "__version__",
]
