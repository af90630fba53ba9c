"""Spellings from cachekit's documented API work here too.

* ``serializer="default"`` and ``serializer="std"`` mean MessagePack, the serializer
  ``DefaultSerializer`` names;
* on an ``async def``, ``await f.invalidate_cache(...)`` works inside a running loop,
  and the plain call outside a loop still returns the count.
"""

from __future__ import annotations

import asyncio
import datetime
import gc

import pytest

from cachekit import cache
from cachekit.errors import SerializationError
from cachekit.serializers import DefaultSerializer, MessagePackSerializer


@pytest.mark.parametrize("name", ["default", "std", "msgpack"])
def test_default_and_std_name_the_messagepack_serializer(name: str):
    @cache(serializer=name, backend="memory://documented-api-" + name)
    def profile(user_id: int) -> dict:
        return {"id": user_id, "tags": ["a", "b"]}

    assert profile(1) == profile(1) == {"id": 1, "tags": ["a", "b"]}
    assert profile.cache_info().hits == 1
    plan = profile.__cachekit__.resolve()
    assert isinstance(plan.serializer, MessagePackSerializer)
    assert DefaultSerializer is MessagePackSerializer
    assert plan.ser_name == "msgpack"


def test_the_default_serializer_by_name_refuses_what_messagepack_cannot_store():
    @cache(serializer="default", backend="memory://documented-api-refuse")
    def now() -> datetime.datetime:
        return datetime.datetime(2020, 1, 2)

    with pytest.raises(SerializationError, match="MessagePackSerializer"):
        now()


def _counting_fetch(runs: list[int]):
    @cache(backend="memory://documented-api-async")
    async def fetch(x: int) -> dict:
        runs.append(x)
        return {"x": x}

    return fetch


def test_await_invalidate_cache_on_an_async_function():
    runs: list[int] = []
    fetch = _counting_fetch(runs)

    async def main() -> int:
        await fetch(1)
        await fetch(1)
        removed = await fetch.invalidate_cache(1)
        await fetch(1)
        return removed

    removed = asyncio.run(main())
    assert removed == 2  # L1 and the memory backend
    assert runs == [1, 1]


def test_invalidate_cache_of_an_async_function_outside_a_loop_returns_the_count():
    runs: list[int] = []
    fetch = _counting_fetch(runs)
    asyncio.run(fetch(2))
    assert fetch.invalidate_cache(2) == 2
    asyncio.run(fetch(2))
    assert runs == [2, 2]


def test_an_unawaited_invalidation_still_drops_the_entry_before_the_next_call():
    runs: list[int] = []
    fetch = _counting_fetch(runs)

    async def main() -> None:
        await fetch(3)
        fetch.invalidate_cache(3)  # not awaited: this process's L1 entry is gone already
        gc.collect()  # the task is held until done, not lost to the garbage collector
        await fetch(3)
        await asyncio.sleep(0.01)  # the backend part has run by now
        await fetch(3)

    asyncio.run(main())
    assert runs == [3, 3]


def test_invalidating_every_entry_inside_a_loop_is_awaitable_too():
    runs: list[int] = []
    fetch = _counting_fetch(runs)

    async def main() -> int:
        await fetch(4)
        await fetch(5)
        removed = await fetch.invalidate_cache()
        await fetch(4)
        return removed

    assert asyncio.run(main()) >= 2
    assert runs == [4, 5, 4]


def test_bad_arguments_raise_at_the_call_not_in_a_task():
    fetch = _counting_fetch([])

    async def main() -> None:
        fetch.invalidate_cache(1, 2, 3)

    with pytest.raises(TypeError):
        asyncio.run(main())


def test_a_sync_function_keeps_returning_the_count_inside_a_loop():
    @cache(backend=None)
    def double(x: int) -> int:
        return 2 * x

    async def main() -> int:
        double(1)
        return double.invalidate_cache(1)

    assert asyncio.run(main()) == 1
