"""Instance methods, classmethods and staticmethods."""

from __future__ import annotations

import asyncio

from cachekit import cache


class Repo:
    runs: list = []

    def __init__(self, name):
        self.name = name

    @cache()
    def get(self, item_id):
        Repo.runs.append(("get", self.name, item_id))
        return {"id": item_id}

    @cache(include_self=True)
    def own(self, item_id):
        Repo.runs.append(("own", self.name, item_id))
        return f"{self.name}:{item_id}"

    def __cache_key__(self):
        return self.name

    @classmethod
    @cache()
    def build(cls, x):
        Repo.runs.append(("build", x))
        return x

    @cache()
    @classmethod
    def build2(cls, x):
        Repo.runs.append(("build2", x))
        return x

    @staticmethod
    @cache()
    def helper(x):
        Repo.runs.append(("helper", x))
        return x

    @cache()
    @staticmethod
    def helper2(x):
        Repo.runs.append(("helper2", x))
        return x

    @cache()
    async def aget(self, item_id):
        Repo.runs.append(("aget", item_id))
        return item_id


def setup_function():
    Repo.runs.clear()
    for fn in (Repo.get, Repo.own, Repo.build, Repo.build2, Repo.helper, Repo.helper2, Repo.aget):
        fn.cache_clear()


def test_self_is_not_part_of_the_key_by_default():
    Repo("a").get(1)
    Repo("b").get(1)
    assert Repo.runs == [("get", "a", 1)]


def test_include_self_keys_on_the_instance():
    assert Repo("a").own(1) == "a:1"
    assert Repo("b").own(1) == "b:1"
    assert Repo("a").own(1) == "a:1"
    assert [r[1] for r in Repo.runs] == ["a", "b"]


def test_invalidate_and_cache_key_take_the_arguments_without_self():
    repo = Repo("a")
    repo.get(5)
    assert repo.get.cache_key(5) == Repo.get.cache_key(5)
    assert repo.get.invalidate_cache(5) == 1
    repo.get(5)
    assert len(Repo.runs) == 2


def test_classmethods_in_either_decorator_order():
    assert Repo.build(1) == 1
    assert Repo.build(1) == 1
    assert Repo("x").build(1) == 1
    assert Repo.build2(2) == 2
    assert Repo.build2(2) == 2
    assert Repo.runs == [("build", 1), ("build2", 2)]


def test_staticmethods_in_either_decorator_order():
    assert Repo.helper(1) == Repo("z").helper(1) == 1
    assert Repo.helper2(1) == Repo.helper2(1) == 1
    assert Repo.runs == [("helper", 1), ("helper2", 1)]


def test_async_methods():
    async def main():
        repo = Repo("a")
        return [await repo.aget(1), await repo.aget(1)]

    assert asyncio.run(main()) == [1, 1]
    assert Repo.runs == [("aget", 1)]


def test_method_cache_info_through_instance_and_class():
    r = Repo("q")
    r.get(1)
    r.get(1)
    assert r.get.cache_info() == Repo.get.cache_info()
    assert Repo.get.cache_info().hits == 1
