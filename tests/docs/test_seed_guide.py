"""The user's own troubleshooting guide works against cachekit as written.

The guide lives beside the repository, at ``<repo root>/../shared/seed/
troubleshooting-guide.md``: CI clones the repository next to a copy of shared/, but a
user's clone has nothing beside it. Where the guide is absent, the tests that read it
are skipped with the reason; with ``CACHEKIT_REQUIRE_SEED_GUIDE=1`` (set by .ci/run) a
missing guide is a failure instead, so CI never loses this check silently.
Its ```python blocks run in order in one namespace, exactly as written. Blocks
fenced as ```python notest are checked here too where they can run on their own
(each in a fresh namespace) or by an explicit equivalent assertion.

One block imports ``ArrowSerializer``, which comes from the cachekit-arrow
distribution: the workspace installs it, so that block runs as written, and the
DataFrame function it defines is checked to be cached through Arrow.
"""

from __future__ import annotations

import datetime
import importlib.util
import io
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stdout
from pathlib import Path

import pytest
from markdown_blocks import Block, blocks, run_block, run_file, sandbox

import cachekit
from cachekit import cache, plugins
from cachekit.errors import (
    DecryptionError,
    MasterKeyFormatError,
    MasterKeyMissingError,
    PluginNotFoundError,
    SerializationError,
)
from cachekit.serializers import PickleSerializer

ROOT = Path(__file__).resolve().parents[2]
GUIDE = ROOT.parent / "shared" / "seed" / "troubleshooting-guide.md"

ARROW_IMPORT = "from cachekit.serializers import ArrowSerializer"


# Read at import: the suite's autouse fixture removes every CACHEKIT_ variable from
# the environment of each test.
REQUIRED = os.environ.get("CACHEKIT_REQUIRE_SEED_GUIDE", "") not in ("", "0")


@pytest.fixture(scope="module")
def guide() -> Path:
    if not GUIDE.is_file():
        where = f"the user's troubleshooting guide is not at {GUIDE}"
        if REQUIRED:
            pytest.fail(
                f"{where}, and CACHEKIT_REQUIRE_SEED_GUIDE=1 requires it "
                "(CI puts a copy of shared/ beside the repository checkout).",
                pytrace=False,
            )
        pytest.skip(f"{where} (only CI has a copy of shared/ beside the checkout)")
    return GUIDE


def test_the_guide_is_present(guide: Path):
    assert guide.is_file()


def _block(path: Path, *fragments: str, runs: bool | None = None) -> Block:
    """The one block of the guide containing every fragment."""
    found = [
        b
        for b in blocks(path)
        if b.is_python and all(f in b.code for f in fragments) and runs in (None, b.runs)
    ]
    assert len(found) == 1, (
        f"expected exactly one python block in {path} containing {fragments!r}, found {len(found)}"
    )
    return found[0]


@contextmanager
def _run_alone(block: Block, tmp_path: Path, name: str) -> Iterator[dict[str, object]]:
    """Run one block as written, in a fresh namespace, and hand that namespace over."""
    with sandbox(tmp_path, name) as namespace:
        run_block(block, namespace)
        yield namespace


# --- the guide's runnable blocks, in order, in one namespace -------------------------


def test_runnable_blocks_run_in_order(guide: Path, tmp_path: Path):
    arrow_blocks: list[Block] = []

    def arrow_block(block: Block, namespace: dict[str, object]) -> bool:
        if ARROW_IMPORT not in block.code:
            return False
        # Runs as written (cachekit-arrow is installed in the workspace), then the
        # function it defines is called: a DataFrame cached through Arrow.
        run_block(block, namespace)
        get_dataframe = namespace["get_dataframe"]
        first, second = get_dataframe(), get_dataframe()  # type: ignore[operator]
        assert type(first).__name__ == "DataFrame"
        assert first.equals(second)
        assert get_dataframe.__cachekit__.plan.ser_name == "arrow"  # type: ignore[attr-defined]
        assert get_dataframe.cache_info().hits == 1  # type: ignore[attr-defined]
        arrow_blocks.append(block)
        return True

    ran = run_file(guide, tmp_path, "seed_troubleshooting_guide", special=arrow_block)
    assert ran >= 9, f"only {ran} runnable python blocks found in the guide"
    assert len(arrow_blocks) == 1


def test_the_arrow_block_is_in_the_runnable_blocks(guide: Path):
    block = _block(guide, ARROW_IMPORT)
    assert block.runs
    assert importlib.util.find_spec("cachekit_arrow") is not None, (
        "cachekit-arrow is not installed: run `make bootstrap` (the guide's DataFrame "
        "block needs it)"
    )


# --- messages the guide quotes ---------------------------------------------------------


def test_e001_message_matches_the_guide():
    error = MasterKeyMissingError()
    assert error.code == "E001"
    assert "CACHEKIT_MASTER_KEY environment variable must be set" in str(error)
    assert "CACHEKIT_MASTER_KEY not set" in str(error)


def test_e002_message_matches_the_guide():
    error = MasterKeyFormatError()
    assert error.code == "E002"
    assert "CACHEKIT_MASTER_KEY must be hex-encoded, minimum 32 bytes" in str(error)


@pytest.mark.parametrize("bad_key", ["my-secret-key", "abcd1234"])
def test_the_guides_invalid_master_keys_raise_e002(bad_key: str):
    from cachekit.signing import parse_hex_key

    with pytest.raises(MasterKeyFormatError) as info:
        parse_hex_key(bad_key)
    assert "CACHEKIT_MASTER_KEY must be hex-encoded, minimum 32 bytes" in str(info.value)
    assert bad_key not in str(info.value)  # the key itself is never echoed


def test_e003_message_matches_the_guide():
    error = DecryptionError()
    assert error.code == "E003"
    assert "Decryption failed: authentication tag verification failed" in str(error)


def test_e004_message_names_datetime():
    @cache()
    def get_timestamp():
        return datetime.datetime.now()

    with pytest.raises(SerializationError) as info:
        get_timestamp()
    assert info.value.code == "E004"
    assert isinstance(info.value, TypeError)
    assert "Could not serialize object of type datetime" in str(info.value)


# --- notest blocks that can run on their own, as written --------------------------------


def test_e004_when_it_occurs_block_raises_e004(guide: Path, tmp_path: Path):
    block = _block(guide, "WRONG - datetime not serializable", runs=False)
    with _run_alone(block, tmp_path, "seed_e004_wrong") as namespace:
        get_timestamp = namespace["get_timestamp"]
        with pytest.raises(SerializationError, match="Could not serialize object of type datetime"):
            get_timestamp()  # type: ignore[operator]


def test_e004_solution_block_caches_a_datetime(guide: Path, tmp_path: Path):
    block = _block(guide, "serializer=PickleSerializer(), backend=None", runs=False)
    with _run_alone(block, tmp_path, "seed_e004_solution") as namespace:
        get_timestamp = namespace["get_timestamp"]
        first = get_timestamp()  # type: ignore[operator]
        assert isinstance(first, datetime.datetime)
        assert get_timestamp() == first  # type: ignore[operator]
        info = get_timestamp.cache_info()  # type: ignore[attr-defined]
        assert (info.misses, info.hits) == (1, 1)


def test_default_serializer_block_prints_it(guide: Path, tmp_path: Path):
    block = _block(guide, 'print(f"Active serializer: {DEFAULT_SERIALIZER}")', runs=False)
    out = io.StringIO()
    with redirect_stdout(out), _run_alone(block, tmp_path, "seed_default_serializer"):
        pass
    assert out.getvalue().startswith("Active serializer: ")
    assert "MessagePackSerializer" in out.getvalue()


def test_generate_cache_key_block_prints_a_cachekit_key(guide: Path, tmp_path: Path):
    block = _block(guide, 'generate_cache_key("get_user", (123,), {})', runs=False)
    out = io.StringIO()
    with redirect_stdout(out), _run_alone(block, tmp_path, "seed_generate_key") as namespace:
        key = namespace["key"]
    assert isinstance(key, str)
    assert key.startswith("cachekit:get_user:")
    assert out.getvalue() == f"Cache key: {key}\n"
    from cachekit.core import generate_cache_key

    assert generate_cache_key("get_user", (123,), {}) == key  # stable


def test_default_serializer_round_trip_block(guide: Path, tmp_path: Path):
    block = _block(guide, "serializer = DefaultSerializer()", runs=False)
    out = io.StringIO()
    with redirect_stdout(out), _run_alone(block, tmp_path, "seed_round_trip") as namespace:
        assert namespace["decoded"] == namespace["data"] == {"key": "value"}
        assert isinstance(namespace["encoded"], bytes)
    assert "Decoded matches: True" in out.getvalue()


# --- notest blocks that need names the guide leaves undefined: equivalents ----------------


class MyCustomClass:
    """Stands in for the guide's undefined ``MyCustomClass`` (picklable: module level)."""

    def __init__(self) -> None:
        self.items = [1, 2]


def test_pickle_serializer_caches_custom_objects():
    """The guide's "for custom objects" block, with a class of our own."""
    runs = []

    @cache(serializer=PickleSerializer())
    def get_custom_object():
        runs.append(1)
        return MyCustomClass()

    first, second = get_custom_object(), get_custom_object()
    assert isinstance(second, MyCustomClass)
    assert second.items == first.items == [1, 2]
    assert runs == [1]


def test_cache_secure_without_its_packages_fails_clearly(monkeypatch: pytest.MonkeyPatch):
    """The guide's E001 block: @cache.secure without a master key."""
    monkeypatch.delenv("CACHEKIT_MASTER_KEY", raising=False)

    def decorate_and_call():
        @cache.secure(ttl=300)
        def get_sensitive_data():
            return "secret"

        get_sensitive_data()

    with pytest.raises(MasterKeyMissingError) as err:  # at decoration or, at the latest, the call
        decorate_and_call()
    assert "CACHEKIT_MASTER_KEY environment variable must be set" in str(err.value)
    # Without the package, the same decorator names it (the plugin kept from loading).
    monkeypatch.setenv("CACHEKIT_DISABLE_PLUGIN_AUTOLOAD", "1")
    plugins.reset_registry()
    with pytest.raises(PluginNotFoundError, match="cachekit-crypto"):
        cache.secure(ttl=300)


def test_namespace_invalidation_replaces_the_guides_redis_workaround():
    """The guide says there is no built-in invalidation; we have one."""
    runs = []

    @cache(namespace="seed-users")
    def get_user(user_id):
        runs.append(user_id)
        return {"id": user_id}

    get_user(1)
    get_user(1)
    assert get_user.invalidate_cache(1) == 1
    get_user(1)
    assert cachekit.invalidate(namespace="seed-users") >= 1
    get_user(1)
    assert runs == [1, 1, 1]


def test_the_debug_logging_block_leaves_levels_as_they_were(guide: Path, tmp_path: Path):
    block = _block(guide, 'logging.getLogger("cachekit").setLevel(logging.DEBUG)')
    before = logging.getLogger("cachekit").level
    with _run_alone(block, tmp_path, "seed_logging"):
        assert logging.getLogger("cachekit").level == logging.DEBUG
    assert logging.getLogger("cachekit").level == before
