"""The folders of the package are layered: the folder-level import graph has no cycle,
``core/`` imports no other folder, and only composition roots import the root modules.

Every import counts, also those under ``if TYPE_CHECKING:`` and inside functions."""

from __future__ import annotations

import ast
import graphlib
import itertools
from collections import defaultdict
from pathlib import Path

import slices_blueprint

PACKAGE = Path(slices_blueprint.__file__).parent
ROOT = "(root)"  # app.py, domains.py, ...: composition roots, free to import every folder
ROOT_IMPORTERS = {"cli"}  # the command starts the composition roots


def _module_of(path: Path) -> list[str]:
    parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
    return ["slices_blueprint", *(parts[:-1] if parts[-1] == "__init__" else parts)]


def _imported(node: ast.AST, path: Path) -> list[str]:
    """The dotted names an import statement reaches (``from a import b`` reaches a and a.b)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if not isinstance(node, ast.ImportFrom):
        return []
    base = node.module or ""
    if node.level:
        package = _module_of(path)
        if path.name != "__init__.py":
            package = package[:-1]
        base = ".".join(package[: len(package) - node.level + 1] + ([base] if base else []))
    return [base, *(f"{base}.{alias.name}" for alias in node.names)]


def _folder(dotted: str) -> str | None:
    parts = dotted.split(".")
    if parts[0] != "slices_blueprint" or len(parts) < 2:
        return None
    return parts[1] if (PACKAGE / parts[1]).is_dir() else ROOT


def import_graph() -> dict[tuple[str, str], set[str]]:
    """(importing folder, imported folder) -> the importing files, package-relative."""
    edges: dict[tuple[str, str], set[str]] = defaultdict(set)
    for path in PACKAGE.rglob("*.py"):
        relative = path.relative_to(PACKAGE)
        source = relative.parts[0] if len(relative.parts) > 1 else ROOT
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            for name in _imported(node, path):
                target = _folder(name)
                if target is not None and target != source:
                    edges[(source, target)].add(str(relative))
    return edges


def cycle_of(edges: dict[tuple[str, str], set[str]]) -> list[str]:
    """One cycle of the graph as its edges, each with the files making it (empty: none)."""
    sorter: graphlib.TopologicalSorter[str] = graphlib.TopologicalSorter()
    for source, target in edges:
        sorter.add(source, target)  # what a folder imports sorts before it
    try:
        sorter.prepare()
    except graphlib.CycleError as exc:
        cycle = exc.args[1][::-1]  # now each folder imports the next
        return [f"{a} -> {b}: {', '.join(sorted(edges[(a, b)]))}" for a, b in itertools.pairwise(cycle)]
    return []


def test_the_cycle_check_names_the_edges_of_a_cycle() -> None:
    edges = {("a", "b"): {"a/x.py"}, ("b", "c"): {"b/y.py"}, ("c", "a"): {"c/z.py"},
             ("a", "d"): {"a/w.py"}}
    found = cycle_of(edges)
    assert sorted(found) == ["a -> b: a/x.py", "b -> c: b/y.py", "c -> a: c/z.py"]
    assert cycle_of({("a", "b"): {"a/x.py"}, ("b", "d"): {"b/y.py"}}) == []


def test_the_folders_import_each_other_without_a_cycle() -> None:
    edges = {edge: files for edge, files in import_graph().items() if ROOT not in edge}
    assert ("resources", "tasks") in edges  # the graph is read at all
    cycle = cycle_of(edges)
    assert not cycle, "import cycle between folders:\n  " + "\n  ".join(cycle)


def test_core_imports_no_domain() -> None:
    found = {f"core -> {target}: {sorted(files)}"
             for (source, target), files in import_graph().items() if source == "core"}
    assert not found, found


def test_only_composition_roots_import_the_root_modules() -> None:
    found = {f"{source} -> {ROOT}: {sorted(files)}"
             for (source, target), files in import_graph().items()
             if target == ROOT and source not in ROOT_IMPORTERS}
    assert not found, found
