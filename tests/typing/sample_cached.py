"""Checked by mypy in test_typing.py: the decorator keeps signatures and types."""

from __future__ import annotations

from typing import assert_type

from cachekit import cache
from cachekit.stats import CacheInfo


@cache
def bare(user_id: int, verbose: bool = False) -> dict[str, int]:
    return {"id": user_id}


@cache(ttl=60, namespace="users")
def called(user_id: int) -> str:
    return str(user_id)


@cache()
async def fetch(key: str) -> list[int]:
    return [len(key)]


assert_type(bare(1), dict[str, int])
assert_type(called(2), str)
assert_type(bare.cache_info(), CacheInfo)
assert_type(bare.cache_key(1), str)
assert_type(called.invalidate_cache(2), int)


async def use() -> None:
    assert_type(await fetch("x"), list[int])


@cache
async def fetch_bare(key: str) -> int:
    return len(key)


async def invalidate_async() -> None:
    # On an async function, invalidate_cache() inside a running loop is awaitable.
    await fetch.invalidate_cache("x")
    await fetch_bare.invalidate_cache("x")
    assert_type(await fetch_bare("x"), int)
    assert_type(await fetch.ainvalidate_cache("x"), int)
