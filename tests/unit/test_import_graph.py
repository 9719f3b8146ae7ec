"""No import cycle anywhere in ``src/openft``, and the layers import only the seams they may.

The graph is built from the source, not from what an interpreter happens to load: every module is
parsed with ``ast`` and every import counts, relative ones and those inside functions included
(an import deferred into a function still ties the two modules together; it only hides the cycle
until that function runs). ``from package import name`` is an edge to the submodule ``name`` when
there is one, else to the package itself. Imports under ``if TYPE_CHECKING:`` are left out: they
never run, they only name types for annotations (which is how a typing-only cycle is broken).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import openft

SRC = Path(openft.__file__).resolve().parent
ROOT = "openft"


def module_name(path: Path) -> str:
    """``.../openft/training/spec.py`` -> ``openft.training.spec``; a package is its ``__init__``."""
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def all_modules() -> dict[str, Path]:
    return {module_name(path): path for path in sorted(SRC.rglob("*.py"))}


def _absolute(module: str, path: Path, level: int, name: str | None) -> str:
    """The absolute name of ``from {'.' * level}{name} import ...`` written in ``module``."""
    if level == 0:
        return name or ""
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    base = package[: len(package) - (level - 1)]
    return ".".join([*base, name] if name else base)


def _is_type_checking(node: ast.AST) -> bool:
    test = node.test if isinstance(node, ast.If) else None
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _runtime_nodes(tree: ast.AST) -> Iterator[ast.AST]:
    """Every node of ``tree`` except what lies under ``if TYPE_CHECKING:`` (its ``else`` does run)."""
    stack = [tree]
    while stack:
        node = stack.pop()
        yield node
        if _is_type_checking(node):
            assert isinstance(node, ast.If)
            stack.extend(node.orelse)
        else:
            stack.extend(ast.iter_child_nodes(node))


def imported_modules(module: str, path: Path, known: set[str]) -> Iterator[str]:
    """The openft modules that ``module`` imports at run time, anywhere in its body."""
    for node in _runtime_nodes(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            source = _absolute(module, path, node.level, node.module)
            submodules = (f"{source}.{alias.name}" for alias in node.names)
            targets = [name if name in known else source for name in submodules]
        else:
            continue
        for target in targets:
            # ``import openft.a.b`` binds and loads ``openft.a.b``: the deepest known prefix is the edge.
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target.startswith(ROOT) and target != module:
                yield target


def import_graph() -> dict[str, set[str]]:
    modules = all_modules()
    known = set(modules)
    return {module: set(imported_modules(module, path, known)) for module, path in modules.items()}


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle (as a closed path) per strongly connected component with more than one module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[set[str]] = []

    def connect(node: str) -> None:  # Tarjan; the graph has a few hundred nodes, recursion is fine
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for succ in sorted(graph[node]):
            if succ not in index:
                connect(succ)
                low[node] = min(low[node], low[succ])
            elif succ in on_stack:
                low[node] = min(low[node], index[succ])
        if low[node] == index[node]:
            component: set[str] = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.add(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(component)

    for node in sorted(graph):
        if node not in index:
            connect(node)
    return [_cycle_through(graph, component) for component in components]


def _cycle_through(graph: dict[str, set[str]], component: set[str]) -> list[str]:
    """A shortest closed path through the component's first module (breadth-first, within the component)."""
    start = min(component)
    previous: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following: list[str] = []
        for node in frontier:
            for succ in sorted(graph[node] & component):
                if succ == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(previous[path[-1]])
                    return [start, *reversed(path[:-1]), start]
                if succ not in previous:
                    previous[succ] = node
                    following.append(succ)
        frontier = following
    raise AssertionError(f"no cycle found in component {sorted(component)}")


def test_the_graph_sees_relative_and_function_level_imports() -> None:
    graph = import_graph()
    # ``from . import dpo`` style and imports inside functions are edges too.
    assert "openft.training.recipes.supervised" in graph["openft.training.recipes"]
    assert "openft.training.spec" in graph["openft.training.__main__"]


def test_imports_under_type_checking_are_not_edges(tmp_path: Path) -> None:
    source = tmp_path / "mod.py"
    lines = ["from typing import TYPE_CHECKING", "if TYPE_CHECKING:", "    from openft import ids", "else:"]
    source.write_text("\n".join([*lines, "    import openft.errors", ""]))
    assert set(imported_modules("openft.mod", source, {"openft.ids", "openft.errors"})) == {"openft.errors"}


def test_find_cycles_reports_a_cycle_as_a_closed_path() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert find_cycles(graph) == [["a", "b", "c", "a"]]
    assert find_cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle_in_openft() -> None:
    cycles = find_cycles(import_graph())
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(cycle) for cycle in cycles)


def test_data_imports_nothing_of_training() -> None:
    graph = import_graph()
    bad = {m: sorted(t for t in targets if t.startswith("openft.training")) for m, targets in graph.items()}
    assert not {m: t for m, t in bad.items() if m.startswith("openft.data") and t}


def test_jobs_use_only_the_training_seams() -> None:
    """The worker side knows the spec it writes and the lines and files a run leaves, nothing else."""
    allowed = {"openft.training.spec", "openft.training.protocol"}
    graph = import_graph()
    reached = {
        module: sorted(t for t in targets if t.startswith("openft.training") and t not in allowed)
        for module, targets in graph.items()
        if module.startswith("openft.jobs")
    }
    assert not {m: t for m, t in reached.items() if t}
