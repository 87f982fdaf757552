"""The import graph has no cycles and no import that runs back up a layer.

Every import of every module under ``harness/``, ``methods/`` and ``spaces/`` is read from
the source (module level and inside functions alike, so a function-local import cannot
hide a cycle); imports under ``if TYPE_CHECKING:`` are left out, since they never run.

The layers, bottom to top (a module may import its own layer and the ones below):

1. ``foundation`` — settings and errors, and what the layers above take from the harness:
   ``harness.errors``, ``harness.config`` (the settings dataclasses), ``plugins`` (the
   registry machinery), ``batches``, ``data``, ``search_data``, ``split_file``, ``store``,
   ``locks``, ``flops``, ``locations``, ``literals`` (text values read as Python values),
   ``schema`` (the results tables' columns);
2. ``spaces`` — the search spaces;
3. ``methods`` — selection methods and supernet algorithms;
4. ``jobs`` — store keys, presets, the resolved experiment, training, selection,
   retraining, records, ground truth, planning and running jobs;
5. ``report`` — ``harness.report``;
6. ``front`` — ``harness.api`` (with its requests and argument checks) and ``harness.cli``.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("harness", "methods", "spaces")
FOUNDATION = {
    "harness", "harness.errors", "harness.config", "harness.plugins", "harness.batches",
    "harness.data", "harness.search_data", "harness.split_file", "harness.store",
    "harness.locks", "harness.flops", "harness.locations", "harness.literals", "harness.schema",
}  # fmt: skip
LAYERS = ("foundation", "spaces", "methods", "jobs", "report", "front")


def layer_of(module: str) -> str:
    if module in FOUNDATION:
        return "foundation"
    top = module.split(".")[0]
    if top in ("spaces", "methods"):
        return top
    if module.startswith("harness.report"):
        return "report"
    if module.startswith(("harness.cli", "harness.api", "harness.__main__")):
        return "front"
    return "jobs"


def module_name(path: Path, root: Path = ROOT) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _type_checking_only(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imports_of(path: Path, known: set[str], root: Path = ROOT) -> set[str]:
    """The project modules ``path`` imports anywhere in its body (TYPE_CHECKING aside)."""
    name = module_name(path, root)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()

    def resolve(name: str) -> str | None:
        # the longest known module that ``name`` starts with (a name may be a class)
        while name and name not in known:
            name = name.rpartition(".")[0]
        return name or None

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _type_checking_only(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] in PACKAGES and (hit := resolve(alias.name)):
                    found.add(hit)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            if base.split(".")[0] in PACKAGES:
                for alias in node.names:
                    if hit := resolve(f"{base}.{alias.name}"):
                        found.add(hit)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text(), str(path)))
    found.discard(name)
    return found


def import_graph() -> dict[str, set[str]]:
    paths = [p for package in PACKAGES for p in (ROOT / package).rglob("*.py")]
    known = {module_name(p) for p in paths}
    return {module_name(p): imports_of(p, known) for p in paths}


def _upward(graph: dict[str, set[str]]) -> list[str]:
    return sorted(
        f"{source} ({layer_of(source)}) imports {target} ({layer_of(target)})"
        for source, targets in graph.items() for target in targets
        if LAYERS.index(layer_of(target)) > LAYERS.index(layer_of(source))
    )  # fmt: skip


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                connect(target)
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
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            connect(node)
    return found


def test_the_walker_sees_function_local_imports(tmp_path):
    source = tmp_path / "harness" / "probe.py"
    source.parent.mkdir()
    source.write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from methods.selection import base\n"
        "def f():\n    from spaces.nb201 import codec\n    import harness.report.tables\n"
    )
    known = {"spaces.nb201.codec", "harness.report.tables", "methods.selection.base"}
    found = imports_of(source, known, root=tmp_path)
    assert found == {"spaces.nb201.codec", "harness.report.tables"}


def test_the_cycle_finder_finds_a_loop():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _upward({"harness.config": {"spaces.base"}}) == [
        "harness.config (foundation) imports spaces.base (spaces)"
    ]


def test_no_import_runs_back_up_a_layer():
    assert _upward(import_graph()) == []


def test_no_import_cycles():
    assert _cycles(import_graph()) == []
