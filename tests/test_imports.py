"""The package has no import cycles: its module graph, read from the source, is acyclic.

Both kinds of import count: top-level ones and those inside functions (deferred imports that
only hide a cycle until the function runs). ``from ferkit.pkg import name`` is an edge to the
submodule ``ferkit.pkg.name`` when there is one, else to the package ``ferkit.pkg``; a package's
``__init__`` is a module like any other. Not counted: a package's lazy module ``__getattr__``
(PEP 562; ``ferkit.Predictor``, ``ferkit.training.fit``), which imports only when the attribute
is read, after the package has finished importing, so it cannot take part in an import-time
cycle.
"""

from __future__ import annotations

import ast
from pathlib import Path

SOURCE = Path(__file__).resolve().parents[1] / "src"

#: Known cycles, each with the work that removes it. Keep this empty.
KNOWN_CYCLES: set[frozenset[str]] = set()


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SOURCE).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    paths = {module_name(path): path for path in (SOURCE / "ferkit").rglob("*.py")}
    graph: dict[str, set[str]] = {name: set() for name in paths}
    for name, path in paths.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        tree = ast.parse(path.read_text(), str(path))
        lazy = [node for node in tree.body if getattr(node, "name", "") == "__getattr__"]
        skipped = {id(inner) for node in lazy for inner in ast.walk(node)}
        for node in ast.walk(tree):
            if id(node) in skipped:
                continue
            targets = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # relative import
                    anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                    base = f"{anchor}.{base}".rstrip(".")
                targets = [
                    f"{base}.{alias.name}" if f"{base}.{alias.name}" in paths else base
                    for alias in node.names
                ]
            graph[name].update(target for target in targets if target in paths and target != name)
    return graph


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan's algorithm)."""
    index, low, stack, on_stack, components = {}, {}, [], set(), []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return components


def test_the_graph_sees_both_kinds_of_import():
    graph = import_graph()
    assert "ferkit.models.checkpoint" in graph["ferkit.models.hub"]  # top level
    assert "ferkit.plots" in graph["ferkit.training.loop"]  # inside a function


def test_a_cycle_is_found():
    assert find_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_the_package_has_no_import_cycles():
    found = {frozenset(cycle) for cycle in find_cycles(import_graph())}
    assert found - KNOWN_CYCLES == set(), f"import cycles: {sorted(map(sorted, found))}"
    assert KNOWN_CYCLES - found == set(), "a known cycle is gone: remove it from KNOWN_CYCLES"


def package_of(module: str) -> str:
    """The stage a module belongs to: ``ferkit.X`` (a subpackage, or a top-level module)."""
    return ".".join(module.split(".")[:2])


def package_graph(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    """The module graph collapsed onto stages (``ferkit.faces``, ``ferkit.inference``, ...)."""
    packages: dict[str, set[str]] = {package_of(name): set() for name in graph}
    for name, targets in graph.items():
        packages[package_of(name)].update(
            package_of(target) for target in targets if package_of(target) != package_of(name)
        )
    return packages


def test_the_package_graph_collapses_modules_onto_stages():
    modules = {"ferkit.a.x": {"ferkit.a.y", "ferkit.b.z"}, "ferkit.a.y": set()}
    graph = package_graph({**modules, "ferkit.b.z": {"ferkit.a.y"}})
    assert graph == {"ferkit.a": {"ferkit.b"}, "ferkit.b": {"ferkit.a"}}
    assert find_cycles(graph) == [["ferkit.a", "ferkit.b"]]


def test_the_stages_form_layers():
    """No cycle between packages either: a stage only imports the stages below it."""
    cycles = find_cycles(package_graph(import_graph()))
    assert cycles == [], f"cycles between packages: {cycles}"
