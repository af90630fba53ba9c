"""The coherence rules (docs/architecture.md, "Coherence rules"), on the memory backend.

Each test names the rule it checks; the Redis-specific faults (a killed tracking
connection, counters rewritten behind cachekit's back) are in tests/redis.
"""

from __future__ import annotations

import pytest

import cachekit
from cachekit import cache
from cachekit.coherence import GENERATION_PREFIX
from cachekit.errors import ConfigurationError
from cachekit.keys import KeyBuilder, validate_namespace

# --- rule: no namespace collides with the keyspace's own structure (issue 11 item 10) ---


def test_namespace_gen_is_refused_because_generation_counters_live_there():
    with pytest.raises(ConfigurationError) as err:

        @cache(namespace="gen", backend="memory://ns-gen")
        def f(x):
            return x

    assert err.value.code == "E040"
    assert "reserved" in str(err.value)
    with pytest.raises(ConfigurationError):
        validate_namespace("gen")
    with pytest.raises(ConfigurationError):
        cachekit.invalidate(namespace="gen")


@pytest.mark.parametrize("namespace", ["gen.x", "GEN", "generation", "x-gen"])
def test_names_that_only_look_like_the_reserved_segment_are_fine(namespace):
    builder = KeyBuilder(lambda x: x, namespace=namespace)
    assert not builder.backend_key((1,), {}).startswith(GENERATION_PREFIX)


def test_a_tag_may_be_called_gen():
    @cache(tags=["gen"], backend="memory://tag-gen")
    def f(x):
        return x

    assert f(1) == 1
