"""Checked by mypy --strict in test_typing.py: cached methods keep their types.

``@cache`` goes below or above ``@classmethod`` / ``@staticmethod``: both orders are
typed. mypy does not tell a cached static method from an instance method when it is
read through an instance, so static methods are called through the class here (see
docs/decorator.md, "Methods, classmethods and staticmethods").
"""

from __future__ import annotations

from typing import assert_type

from cachekit import cache
from cachekit.stats import CacheInfo


class Repo:
    def __init__(self, dsn: str) -> None:
        self.dsn = dsn

    @cache
    def get(self, item_id: int) -> dict[str, int]:
        return {"id": item_id}

    @cache(ttl=60)
    def count(self) -> int:
        return 1

    @cache
    async def aget(self, item_id: int) -> list[int]:
        return [item_id]

    @classmethod
    @cache
    def table(cls, suffix: str) -> str:
        return f"t_{suffix}"

    @cache(namespace="repo")
    @classmethod
    async def atable(cls, suffix: str) -> bytes:
        return suffix.encode()

    @staticmethod
    @cache
    def normalize(email: str) -> str:
        return email.lower()

    @cache()
    @staticmethod
    async def anormalize(email: str) -> str:
        return email.lower()


repo = Repo("db")

# Instance methods: through an instance, self is bound; through the class, it is not.
assert_type(repo.get(1), dict[str, int])
assert_type(repo.count(), int)
assert_type(Repo.get(repo, 1), dict[str, int])
assert_type(repo.get.cache_info(), CacheInfo)
assert_type(repo.get.cache_key(1), str)
assert_type(Repo.get.cache_key(1), str)
assert_type(repo.get.invalidate_cache(1), int)

# Class and static methods, through the class or an instance.
assert_type(Repo.table("v2"), str)
assert_type(repo.table("v2"), str)
assert_type(Repo.table.cache_key("v2"), str)
assert_type(Repo.normalize("A@B"), str)
assert_type(Repo.normalize.cache_info(), CacheInfo)


async def use() -> None:
    assert_type(await repo.aget(1), list[int])
    assert_type(await Repo.aget(repo, 1), list[int])
    assert_type(await Repo.atable("x"), bytes)
    assert_type(await repo.atable("x"), bytes)
    assert_type(await Repo.anormalize("x"), str)
    assert_type(await repo.aget.ainvalidate_cache(1), int)
    await repo.aget.invalidate_cache(1)
