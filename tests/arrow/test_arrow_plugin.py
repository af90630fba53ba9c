"""cachekit-arrow is found through its entry point like any third-party plugin, imports
cheaply (no pyarrow or pandas until first use), and works behind @cache."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from importlib.metadata import distribution, entry_points
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

import cachekit_arrow
from cachekit import cache, plugins
from cachekit.errors import ConfigurationError
from cachekit_arrow import ArrowSerializer, plugin


def _python(*args: str, **env: str) -> str:
    """Run this interpreter with ``args`` and no CACHEKIT_* variables but ``env``."""
    environ = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith("CACHEKIT_") and name != "REDIS_URL"
    }
    environ.update(env, PYTHONDONTWRITEBYTECODE="1")
    done = subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, env=environ, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def _run(code: str) -> Any:
    """The JSON document the last line of ``code``'s output holds."""
    return json.loads(_python("-c", textwrap.dedent(code)).strip().splitlines()[-1])


# --- registration ---------------------------------------------------------------------


def test_the_entry_point_is_declared_by_the_cachekit_arrow_distribution():
    [ep] = [ep for ep in entry_points(group="cachekit") if ep.name == "arrow"]
    assert ep.value == "cachekit_arrow.plugin"
    assert ep.dist is not None and ep.dist.name == "cachekit-arrow"
    requires = distribution("cachekit-arrow").requires or []
    assert any(r.startswith("pyarrow>=18.0") for r in requires)
    assert any(r.startswith("cachekit-core") for r in requires)
    assert any(r.startswith("pandas>=2.2.2") and 'extra == "pandas"' in r for r in requires)


def test_the_arrow_serializer_is_registered_from_cachekit_arrow():
    spec = plugins.serializer_spec("arrow")
    assert spec.name == "arrow"
    assert spec.class_names == ("ArrowSerializer",)
    assert spec.factory is plugin.make_serializer
    entry = plugins.registry().serializers["arrow"]
    assert entry.plugin.distribution == "cachekit-arrow"
    assert entry.plugin.version == cachekit_arrow.__version__ == "0.1.0"
    assert entry.plugin.module == "cachekit_arrow.plugin"
    assert entry.plugin.error is None
    assert entry.rivals == []
    assert "serializer arrow" in entry.plugin.provides


def test_cachekit_serializers_exposes_the_same_class():
    from cachekit.serializers import ArrowSerializer as FromCore

    assert FromCore is ArrowSerializer
    assert ArrowSerializer.__module__ == "cachekit_arrow.serializer"


def test_the_factory_builds_instances_with_options_the_way_the_core_calls_it():
    spec = plugins.serializer_spec("arrow")
    assert plugins.build(spec.factory, "serializer arrow") == ArrowSerializer()
    built = plugins.build(spec.factory, "serializer arrow", compression="zstd")
    assert built == ArrowSerializer(compression="zstd")
    with pytest.raises(ConfigurationError):
        plugins.build(spec.factory, "serializer arrow", level=3)


def test_disabled_autoload_names_the_package(monkeypatch):
    monkeypatch.setenv("CACHEKIT_DISABLE_PLUGIN_AUTOLOAD", "1")
    plugins.reset_registry()
    with pytest.raises(ImportError, match="cachekit-arrow"):
        plugins.serializer_class("ArrowSerializer")


# --- cheap imports ---------------------------------------------------------------------


def test_the_plugin_module_imports_neither_pyarrow_nor_pandas():
    result = _run(
        """
        import json, sys
        import cachekit_arrow.plugin
        from cachekit import plugins
        plugins.registry()
        from cachekit.serializers import ArrowSerializer
        ser = ArrowSerializer(compression="lz4")
        spec = plugins.serializer_spec("arrow")
        print(json.dumps({m: m in sys.modules for m in ("pyarrow", "pandas", "numpy")}))
        """
    )
    assert result == {"pyarrow": False, "pandas": False, "numpy": False}


def test_arrow_values_are_read_and_written_without_importing_pandas():
    table_bytes = bytes(ArrowSerializer().serialize(pa.table({"a": [1, 2]})))
    batch_bytes = ArrowSerializer(compression="zstd").serialize(pa.record_batch({"a": ["x"]}))
    result = _run(
        f"""
        import json, sys
        from cachekit_arrow import ArrowSerializer
        ser = ArrowSerializer()
        table = ser.deserialize({table_bytes!r})
        batch = ser.deserialize({batch_bytes!r})
        again = ser.deserialize(ser.serialize(table))
        ser.serialize(batch)
        print(json.dumps({{
            "pandas": "pandas" in sys.modules,
            "pyarrow": "pyarrow" in sys.modules,
            "rows": again.num_rows,
        }}))
        """
    )
    assert result == {"pandas": False, "pyarrow": True, "rows": 2}


def test_the_registry_reports_arrow_in_a_fresh_interpreter():
    result = _run(
        """
        import json
        from cachekit import plugins
        entry = plugins.registry().serializers["arrow"]
        print(json.dumps([entry.plugin.distribution, entry.plugin.error]))
        """
    )
    assert result == ["cachekit-arrow", None]


# --- behind @cache, on the memory backend ------------------------------------------------


def _frame(n: int) -> pd.DataFrame:
    return pd.DataFrame(
        {"n": np.arange(n), "label": [f"row {i}" for i in range(n)]},
        index=pd.Index([f"k{i}" for i in range(n)], name="key"),
    )


@pytest.mark.parametrize("serializer", [ArrowSerializer(), "arrow"], ids=["instance", "name"])
def test_a_frame_function_is_cached_through_l2_and_l1(serializer):
    runs = []
    backend = f"memory://arrow-plugin-{serializer if isinstance(serializer, str) else 'instance'}"

    def make():
        @cache(backend=backend, serializer=serializer)
        def load(n: int) -> pd.DataFrame:
            runs.append(n)
            return _frame(n)

        return load

    first, second = make(), make()
    pd.testing.assert_frame_equal(first(5), _frame(5))
    pd.testing.assert_frame_equal(second(5), _frame(5))  # another "process": L2
    assert second.cache_info().l2_hits == 1
    pd.testing.assert_frame_equal(second(5), _frame(5))
    assert second.cache_info().l1_hits == 1
    assert runs == [5]
    assert isinstance(first.__cachekit__.plan.serializer, ArrowSerializer)
    assert first.__cachekit__.plan.ser_name == "arrow"


def test_serializer_by_name_reads_the_compression_variable_at_first_call(monkeypatch):
    @cache(backend="memory://arrow-plugin-env", serializer="arrow")
    def load(n: int) -> pd.DataFrame:
        return _frame(n)

    monkeypatch.setenv("CACHEKIT_ARROW_COMPRESSION", "zstd")
    load(3)
    assert load.__cachekit__.plan.serializer == ArrowSerializer(compression="zstd")


def test_a_bad_compression_variable_fails_at_the_first_call_with_e040(monkeypatch):
    @cache(serializer="arrow")
    def load() -> pd.DataFrame:
        return _frame(1)

    monkeypatch.setenv("CACHEKIT_ARROW_COMPRESSION", "brotli")
    with pytest.raises(ConfigurationError, match="CACHEKIT_ARROW_COMPRESSION"):
        load()


def test_mutating_a_returned_frame_does_not_change_the_cache():
    @cache(backend="memory://arrow-plugin-mutation", serializer=ArrowSerializer())
    def load(n: int) -> pd.DataFrame:
        return _frame(n)

    for _ in range(3):  # the miss, then L1 hits
        got = load(4)
        got.iloc[0, 0] = -100
        got["label"] = "changed"
        got.index = pd.Index(list("wxyz"), name="other")
        got.attrs["x"] = 1
    pd.testing.assert_frame_equal(load(4), _frame(4))
    assert load(4).attrs == {}
    assert load(4) is not load(4)


def test_a_returned_series_and_table_are_independent_copies_too():
    @cache(serializer=ArrowSerializer())
    def series() -> pd.Series:
        return pd.Series([1.0, 2.0], name="s")

    @cache(serializer=ArrowSerializer())
    def table() -> pa.Table:
        return pa.table({"a": [1, 2]})

    returned = series()
    returned.iloc[0] = 99.0
    assert series().tolist() == [1.0, 2.0]
    assert table().equals(pa.table({"a": [1, 2]}))  # Arrow tables are immutable
    assert series.cache_info().hits == 1


def test_return_format_arrow_behind_the_decorator_returns_tables():
    @cache(serializer=ArrowSerializer(return_format="arrow"))
    def load(n: int) -> pd.DataFrame:
        return _frame(n)

    first, second = load(2), load(2)
    assert type(first) is type(second) is pa.Table
    assert second.to_pandas().equals(_frame(2))


def test_async_functions_work_with_arrow():
    import asyncio

    @cache(backend="memory://arrow-plugin-async", serializer="arrow")
    async def load(n: int) -> pd.DataFrame:
        return _frame(n)

    async def main() -> tuple[pd.DataFrame, pd.DataFrame]:
        return await load(3), await load(3)

    first, second = asyncio.run(main())
    pd.testing.assert_frame_equal(first, second)
    assert load.cache_info().hits == 1


def test_cachekit_doctor_knows_the_compression_variable():
    out = _python("-m", "cachekit", "doctor", "--json", CACHEKIT_ARROW_COMPRESSION="zstd")
    report = json.loads(out)
    assert report["environment"]["CACHEKIT_ARROW_COMPRESSION"] == "zstd"
    checks = {check["name"]: check for check in report["checks"]}
    assert "CACHEKIT_ARROW_COMPRESSION" not in checks  # no "not a variable cachekit reads"
    assert "arrow" in checks["plugins"]["detail"]
