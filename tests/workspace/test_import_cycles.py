"""No import cycles among the modules of cachekit-core and cachekit-redis.

Read statically with :mod:`ast`, counting **every** import statement of a module: at
module level, inside functions, and under ``if TYPE_CHECKING:``. A function-level
import does not fail at import time, but it is still a dependency; the layering of
docs/architecture.md (imports point downwards only) is about dependencies, and a cycle
hidden in a function is the one that grows into an import-time cycle later. A package's
``__init__`` counts as a module: ``from cachekit import x`` depends on it (unless ``x``
is a submodule, which then is the dependency).

``KNOWN`` lists the edges of cycles that other issue-12 work is removing. Each is
skipped when looking for cycles, and must still exist: once it is gone, delete its line.
Any other cycle fails the test.
"""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PACKAGES = {
    "cachekit": REPO / "cachekit-core" / "src" / "cachekit",
    "cachekit_redis": REPO / "cachekit-redis" / "src" / "cachekit_redis",
}

#: (importer, imported): edges of cycles still present, to be removed by issue 12.
KNOWN: set[tuple[str, str]] = set()


def _modules() -> dict[str, Path]:
    found = {}
    for package, root in PACKAGES.items():
        for path in sorted(root.rglob("*.py")):
            parts = [package, *path.relative_to(root).with_suffix("").parts]
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The modules of ``modules`` that ``name`` imports, anywhere in its source."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    targets: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                source = ".".join([*base, *([node.module] if node.module else [])])
            else:
                source = node.module or ""
            for alias in node.names:
                sub = f"{source}.{alias.name}"
                # `from pkg import submodule` depends on the submodule, not on pkg's __init__
                targets.add(sub if sub in modules else source)

    def owner(target: str) -> str | None:
        while target and target not in modules:
            target = target.rpartition(".")[0]
        return target or None

    return {m for m in map(owner, targets) if m is not None and m != name}


def import_graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(name, path, modules) for name, path in modules.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def _edges_within(graph: dict[str, set[str]], component: list[str]) -> list[str]:
    return [f"{a} -> {b}" for a in component for b in sorted(graph[a]) if b in component]


def test_no_import_cycles_in_cachekit_core_and_cachekit_redis() -> None:
    graph = import_graph()
    pruned = {a: {b for b in bs if (a, b) not in KNOWN} for a, bs in graph.items()}
    found = cycles(pruned)
    assert not found, "import cycles (each with its edges):\n" + "\n".join(
        f"  {' <-> '.join(c)}: {'; '.join(_edges_within(pruned, c))}" for c in found
    )


def test_every_known_cycle_edge_is_still_there() -> None:
    graph = import_graph()
    gone = sorted(edge for edge in KNOWN if edge[1] not in graph.get(edge[0], set()))
    assert not gone, f"these cycles are gone: delete them from KNOWN in {__file__}: {gone}"


def test_the_checker_sees_function_level_and_type_checking_imports() -> None:
    graph = import_graph()
    # function-level: the registry loads the core's own plugin on first use
    assert "cachekit._builtin_plugin" in graph["cachekit.plugins"]
    # TYPE_CHECKING only: envelope names its Encryptor and Signer types
    assert {"cachekit.protocols", "cachekit.signing"} <= graph["cachekit.envelope"]
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
