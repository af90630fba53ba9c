"""``python -m cachekit``: the same command line as the ``cachekit`` script."""

from __future__ import annotations

from cachekit.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
