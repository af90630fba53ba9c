"""Counters for hits, misses and errors, per decorated function.

Counters are a plain list of ints bumped with ``counts[i] += 1`` on the hot
path: under the GIL that read-modify-write runs without an interpreter switch in
between, so the counts are exact without a lock.

This module imports nothing from cachekit.
"""

from __future__ import annotations

from collections import namedtuple

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = [
    "BYPASSED",
    "COALESCED",
    "ERRORS",
    "INVALID",
    "L1_HITS",
    "L2_HITS",
    "MISSES",
    "NCOUNTERS",
    "STORES",
    "CacheInfo",
    "new_counters",
]

L1_HITS = 0
L2_HITS = 1
MISSES = 2
ERRORS = 3  # backend failures and unreadable entries (the call still succeeded)
STORES = 4
BYPASSED = 5  # _bypass_cache=True, condition() false, CACHEKIT_ENABLED=false
INVALID = 6  # corrupt, foreign or unauthenticated entries treated as misses
COALESCED = 7  # callers that waited for another caller's computation (single flight)
NCOUNTERS = 8


def new_counters() -> list[int]:
    return [0] * NCOUNTERS


_CacheInfoBase = namedtuple(
    "_CacheInfoBase",
    "hits misses l1_hits l2_hits coalesced errors size maxsize bytes stores bypassed invalid",
)


class CacheInfo(_CacheInfoBase):
    """What ``func.cache_info()`` returns.

    ``hits`` = ``l1_hits + l2_hits + coalesced`` (callers that waited for another
    caller's computation); ``size``/``maxsize`` are L1 entries, ``bytes`` the L1's
    memory charge; ``errors`` counts backend failures, ``invalid`` unreadable
    entries, ``bypassed`` calls that skipped the cache.
    """

    __slots__ = ()

    @property
    def hit_rate(self) -> float:
        total = self.hits + self.misses
        return self.hits / total if total else 0.0

    @classmethod
    def from_counters(cls, counts: list[int], size: int, maxsize: int, nbytes: int) -> CacheInfo:
        return cls(
            hits=counts[L1_HITS] + counts[L2_HITS] + counts[COALESCED],
            misses=counts[MISSES],
            l1_hits=counts[L1_HITS],
            l2_hits=counts[L2_HITS],
            coalesced=counts[COALESCED],
            errors=counts[ERRORS],
            size=size,
            maxsize=maxsize,
            bytes=nbytes,
            stores=counts[STORES],
            bypassed=counts[BYPASSED],
            invalid=counts[INVALID],
        )

    def as_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = self._asdict()
        d["hit_rate"] = round(self.hit_rate, 4)
        return d
