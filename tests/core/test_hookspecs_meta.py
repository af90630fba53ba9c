"""Meta-tests that keep the hook surface honest (after datasette's).

* every hook specification is documented in docs/plugins.md with its exact signature,
  and every field of the records the hooks return is described there;
* every hook is exercised by at least one test module besides this one;
* the example in each hook's docstring runs: executed, registered as a plugin on a
  fresh PluginManager, it returns the right records, whose factories build objects
  that satisfy the protocols.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import inspect
import re
import textwrap
import types
from pathlib import Path
from typing import Any

import pluggy
import pytest

from cachekit import _builtin_plugin, hookspecs
from cachekit.protocols import Backend, Encryptor, Serializer

ROOT = Path(__file__).resolve().parents[2]
PLUGINS_MD = ROOT / "docs" / "plugins.md"
RECORDS = (hookspecs.BackendSpec, hookspecs.SerializerSpec, hookspecs.EncryptorSpec)


def _hookspecs() -> dict[str, Any]:
    marker = f"{hookspecs.PROJECT_NAME}_spec"
    return {
        name: func
        for name, func in vars(hookspecs).items()
        if inspect.isfunction(func) and hasattr(func, marker)
    }


HOOKS = _hookspecs()


def signature_text(func: Any) -> str:
    """``name(params) -> ret`` with annotations spelled as in the source."""
    sig = inspect.signature(func)
    params = []
    for p in sig.parameters.values():
        text = p.name
        if p.kind is p.VAR_POSITIONAL:
            text = "*" + text
        elif p.kind is p.VAR_KEYWORD:
            text = "**" + text
        if p.annotation is not p.empty:
            text += f": {p.annotation}"
        if p.default is not p.empty:
            text += f" = {p.default!r}"
        params.append(text)
    ret = "" if sig.return_annotation is sig.empty else f" -> {sig.return_annotation}"
    return f"{func.__name__}({', '.join(params)}){ret}"


def docstring_example(func: Any) -> str:
    """The indented block after the docstring line ``Example...::``."""
    lines = inspect.getdoc(func).splitlines()
    start = next(i for i, line in enumerate(lines) if re.match(r"^Example.*::$", line.strip()))
    body: list[str] = []
    for line in lines[start + 1 :]:
        if line.strip() and not line.startswith((" ", "\t")):
            break
        body.append(line)
    return textwrap.dedent("\n".join(body)).strip() + "\n"


def record_type(func: Any) -> type:
    """``Iterable[BackendSpec]`` -> BackendSpec."""
    match = re.fullmatch(r"Iterable\[(\w+)\]", str(inspect.signature(func).return_annotation))
    assert match, f"{func.__name__} must return Iterable[<record>]"
    return getattr(hookspecs, match[1])


def fresh_manager() -> pluggy.PluginManager:
    pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
    pm.add_hookspecs(hookspecs)
    return pm


def test_there_are_hooks_for_backends_serializers_and_encryptors():
    assert set(HOOKS) >= {"cachekit_backends", "cachekit_serializers", "cachekit_encryptors"}
    assert {record_type(f) for f in HOOKS.values()} >= set(RECORDS)


# --- documented ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(HOOKS))
def test_hook_is_documented_with_its_exact_signature(name):
    text = PLUGINS_MD.read_text(encoding="utf-8")
    expected = f"def {signature_text(HOOKS[name])}"
    assert expected in text, f"docs/plugins.md must show `{expected}`"
    assert re.search(rf"^#+ .*`{name}`", text, re.M), f"docs/plugins.md needs a heading for {name}"


@pytest.mark.parametrize("record", RECORDS, ids=lambda r: r.__name__)
def test_every_record_field_is_documented(record):
    text = PLUGINS_MD.read_text(encoding="utf-8")
    assert f"`{record.__name__}`" in text
    section = text.split(f"`{record.__name__}`", 1)[1]
    missing = [f.name for f in dataclasses.fields(record) if f"`{f.name}`" not in section]
    assert not missing, f"docs/plugins.md does not describe {record.__name__} fields {missing}"


# --- tested -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(HOOKS))
def test_hook_is_exercised_by_another_test_module(name):
    me = Path(__file__).resolve()
    users = [
        path.relative_to(ROOT)
        for path in sorted((ROOT / "tests").rglob("test_*.py"))
        if path.resolve() != me and name in path.read_text(encoding="utf-8")
    ]
    assert users, f"no test module besides {me.name} mentions {name}; write a test for it"


# --- runnable examples --------------------------------------------------------------------


def _build(record: Any) -> tuple[Any, type]:
    """Call a record's factory the way cachekit does; return the object and its protocol."""
    if isinstance(record, hookspecs.BackendSpec):
        return record.factory(f"{record.schemes[0]}://meta-test"), Backend
    if isinstance(record, hookspecs.SerializerSpec):
        return record.factory(), Serializer
    return record.factory(tenant=None, environ={}), Encryptor


@pytest.mark.parametrize("name", sorted(HOOKS))
def test_docstring_example_is_a_working_plugin(name):
    source = docstring_example(HOOKS[name])
    plugin = types.ModuleType(f"docstring_example_{name}")
    exec(compile(source, f"<{name} docstring example>", "exec"), plugin.__dict__)

    pm = fresh_manager()
    pm.register(plugin)  # checks the hookimpl signatures against the specs
    pm.check_pending()  # and that the example implements no unknown hook
    results = getattr(pm.hook, name)()
    records = [r for batch in results for r in batch]

    assert records, f"the {name} example returns no records"
    expected = record_type(HOOKS[name])
    for record in records:
        assert isinstance(record, expected), f"{name} example returned {type(record).__name__}"
        built, protocol = _build(record)
        assert isinstance(built, protocol), f"{record.name}: factory built {built!r}"


def test_serializer_example_round_trips_and_exposes_its_class():
    plugin = types.ModuleType("serializer_example")
    exec(docstring_example(HOOKS["cachekit_serializers"]), plugin.__dict__)
    (spec,) = plugin.cachekit_serializers()
    serializer = spec.factory()
    assert serializer.deserialize(serializer.serialize({"a": [1, None]})) == {"a": [1, None]}
    assert spec.load_class() is type(serializer)
    assert spec.class_names == (type(serializer).__name__,)


@pytest.mark.parametrize("name", sorted(HOOKS))
def test_docstring_has_an_example(name):
    doc = inspect.getdoc(HOOKS[name]) or ""
    assert re.search(r"^Example.*::$", doc, re.M), f"{name} docstring needs an Example:: block"


# --- the core's own plugin and the example plugin use only specified hooks --------------


def _load_example_plugin() -> types.ModuleType:
    path = ROOT / "examples/cachekit-example-backend/src/cachekit_example_backend/plugin.py"
    spec = importlib.util.spec_from_file_location("example_plugin_under_meta_test", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    "load", [lambda: _builtin_plugin, _load_example_plugin], ids=["builtin", "example"]
)
def test_plugin_implements_only_specified_hooks(load):
    pm = fresh_manager()
    module = load()
    pm.register(module)
    pm.check_pending()
    implemented = {c.name for c in pm.get_hookcallers(module) or ()}
    assert implemented <= set(HOOKS)
    assert implemented  # a plugin implementing nothing is a mistake


def test_a_misspelled_hook_is_a_load_failure_not_silence():
    import types
    import warnings

    from cachekit import plugins
    from cachekit.hookspecs import hookimpl

    module = types.ModuleType("typo_plugin")

    @hookimpl
    def cachekit_backend():  # missing the final "s"
        return []

    module.cachekit_backend = cachekit_backend
    reg = plugins.Registry()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        reg._add(module, "typo", "typo_plugin", "typo-dist", "1.0")
    [info] = [p for p in reg.plugins if p.name == "typo"]
    assert info.error is not None
    assert "cachekit_backend" in info.error
    assert any("[E042]" in str(w.message) for w in caught)
    assert not reg.pm.is_registered(module)
