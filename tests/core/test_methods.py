"""Instance methods, classmethods and staticmethods."""

from __future__ import annotations

import asyncio

import pytest

from cachekit import cache
from cachekit.errors import ConfigurationError


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


class Service:
    """No __cache_key__: its instances share entries."""

    runs: list = []

    def __init__(self, name):
        self.name = name

    @cache()
    def get(self, item_id):
        Service.runs.append((self.name, item_id))
        return {"id": item_id}


def test_instances_without___cache_key___share_entries():
    Service.runs.clear()
    Service.get.cache_clear()
    Service("a").get(1)
    Service("b").get(1)
    assert Service.runs == [("a", 1)]


def test_an_instance_whose_class_defines___cache_key___is_keyed_by_it():
    # Repo defines __cache_key__ (its name): no include_self=True needed.
    assert Repo("a").get(1) == Repo("b").get(1) == {"id": 1}
    Repo("a").get(1)
    assert Repo.runs == [("get", "a", 1), ("get", "b", 1)]


def test_include_self_keys_on_the_instance():
    assert Repo("a").own(1) == "a:1"
    assert Repo("b").own(1) == "b:1"
    assert Repo("a").own(1) == "a:1"
    assert [r[1] for r in Repo.runs] == ["a", "b"]


def test_invalidate_and_cache_key_take_the_arguments_without_self():
    service = Service("a")
    service.get(5)
    assert service.get.cache_key(5) == Service.get.cache_key(5)
    assert service.get.invalidate_cache(5) == 1
    # Repo's instances are keyed by __cache_key__: only an instance names an entry.
    repo = Repo("a")
    repo.get(5)
    assert repo.get.invalidate_cache(5, _self=repo) == 1
    repo.get(5)
    assert len(Repo.runs) == 2
    with pytest.raises(ConfigurationError, match="_self="):
        Repo.get.cache_key(5)


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


class Shape:
    runs: list = []

    @classmethod
    @cache()
    def describe(cls, n):
        Shape.runs.append((cls.__name__, n))
        return f"{cls.__name__}:{n}"

    @cache()
    @classmethod
    def describe2(cls, n):
        return f"{cls.__name__}:{n}"

    @cache()
    def area(self, n):
        Shape.runs.append((type(self).__name__, n))
        return f"{type(self).__name__}:{n}"

    @cache()
    async def aarea(self, n):
        return f"{type(self).__name__}:{n}"


class Square(Shape):
    pass


def test_a_classmethod_called_on_a_subclass_gets_its_own_entry():
    Shape.runs.clear()
    assert Shape.describe(1) == "Shape:1"
    assert Square.describe(1) == "Square:1"  # before: "Shape:1", the base's entry
    assert Square().describe(1) == "Square:1"
    assert Shape.describe2(2) == "Shape:2"
    assert Square.describe2(2) == "Square:2"
    assert Shape.runs == [("Shape", 1), ("Square", 1)]


def test_the_instance_s_class_is_part_of_the_key():
    Shape.runs.clear()
    assert Shape().area(3) == "Shape:3"
    assert Square().area(3) == "Square:3"
    assert Square().area(3) == "Square:3"
    assert Shape.runs == [("Shape", 3), ("Square", 3)]

    async def main():
        return [await Shape().aarea(4), await Square().aarea(4)]

    assert asyncio.run(main()) == ["Shape:4", "Square:4"]


def test_cache_key_and_invalidate_default_to_the_defining_class_or_take__self():
    Shape.area.cache_clear()
    Shape().area(5)
    Square().area(5)
    assert Shape.area.cache_key(5) == Shape().area.cache_key(5)
    assert Shape.area.cache_key(5) != Shape.area.cache_key(5, _self=Square())
    assert Shape.area.cache_key(5, _self=Square) == Shape.area.cache_key(5, _self=Square())
    assert Shape.describe.cache_key(5) != Shape.describe.cache_key(5, _self=Square)
    # Each invalidation finds its own L1 entry, filled by the fast path.
    assert Shape.area.invalidate_cache(5, _self=Square()) == 1
    assert Shape.area.invalidate_cache(5) == 1
    assert Shape.area.cache_info().size == 0


def test_cache_key_of_a_method_keyed_by___cache_key___needs_the_instance():
    Repo("k").get(9)
    assert Repo.get.cache_key(9, _self=Repo("k")) != Repo.get.cache_key(9, _self=Repo("j"))
    assert Repo.get.invalidate_cache(9, _self=Repo("k")) == 1


def test_include_self_false_leaves_the_class_out():
    class Base:
        @cache(include_self=False)
        def f(self, x):
            return type(self).__name__

    class Child(Base):
        pass

    assert Base().f(1) == "Base"
    assert Child().f(1) == "Base"  # shared, as asked
