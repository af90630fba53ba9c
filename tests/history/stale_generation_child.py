"""The cached function of test_known_violations.py, and the other process's part.

Both processes import this module, so they decorate the same function (one key).
The child, on a line on stdin, invalidates the namespace (a generation bump) and reads
the entry, which it computes from its own SOURCE: the value from before the parent's
change of the source. Run (so that the module keeps its name):
python -c "import stale_generation_child as m; m.main()", with CACHEKIT_BACKEND set.
"""

from __future__ import annotations

import sys

import cachekit
from cachekit import cache

SOURCE = {"k": 1}


@cache(ttl=60, namespace="stalegen", l1=False)
def profile(key: str) -> int:
    return SOURCE.get(key, 0)


def main() -> None:
    profile("warm-up")
    print("READY", flush=True)
    sys.stdin.readline()
    cachekit.invalidate(namespace="stalegen")
    print(f"DONE {profile('k')}", flush=True)
    cachekit.close()
