"""The package's imports flow one way (DESIGN §2) and form no cycle.

Walks every ``dps_cli/**/*.py`` with `ast`, collecting every import: module level, inside
functions, and under ``if TYPE_CHECKING:`` (a type-only import still couples two modules). An
edge A -> B means module A imports module B (``from dps_cli.x import name`` counts as an import
of ``dps_cli.x.name`` when that is a module, else of ``dps_cli.x``). Layers, highest first:

    cli > reproduce > pipeline > report > sampling (engine), tasks, controllers
        > runs (store), models > config, errors, registry, paths (the bottom)

A module may import its own layer or any lower one; no module may sit on an import cycle.
"""

from __future__ import annotations

import ast
from pathlib import Path

import dps_cli

PACKAGE = Path(dps_cli.__file__).parent

#: Layer of each top-level part of the package; a higher number is a higher layer.
LAYERS = {
    "cli": 6, "__main__": 6,
    "reproduce": 5,
    "pipeline": 4,
    "report": 3,
    "sampling": 2, "tasks": 2, "controllers": 2,
    "runs": 1, "models": 1,
    "config": 0, "errors": 0, "registry": 0, "paths": 0, "__init__": 0,
}  # fmt: skip

#: Edges that are known and accepted for now, each with its reason. Keep this list short.
ALLOWED: dict[tuple[str, str], str] = {}


def module_names() -> dict[str, Path]:
    """Dotted name -> file, for every module of the package."""
    names = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__" and len(parts) > 1:
            parts = parts[:-1]
        names[".".join(parts)] = path
    return names


def imports_of(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The package modules ``name`` imports anywhere in its file."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([node.module] if node.module else [])])
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base
                       for alias in node.names]  # fmt: skip
        else:
            continue
        found.update(target for target in targets if target in modules and target != name)
    return found


def import_graph() -> dict[str, set[str]]:
    modules = module_names()
    return {name: imports_of(name, path, modules) for name, path in modules.items()}


def layer(name: str) -> int:
    parts = name.split(".")
    return LAYERS[parts[1] if len(parts) > 1 else "__init__"]


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

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
                cycles.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return cycles


def accepted_graph() -> dict[str, set[str]]:
    return {name: {t for t in targets if (name, t) not in ALLOWED}
            for name, targets in import_graph().items()}  # fmt: skip


def test_every_top_level_part_has_a_layer() -> None:
    assert {name.split(".")[1] for name in module_names() if "." in name} <= set(LAYERS)


def test_no_import_cycles() -> None:
    assert find_cycles(accepted_graph()) == []


def test_imports_flow_down_the_layers() -> None:
    upward = sorted(
        f"{name} ({layer(name)}) imports {target} ({layer(target)})"
        for name, targets in accepted_graph().items()
        for target in targets
        if layer(target) > layer(name)
    )
    assert upward == []


def test_allowed_edges_still_exist() -> None:
    """An allowance whose import is gone must leave the list."""
    graph = import_graph()
    assert [edge for edge in ALLOWED if edge[1] not in graph[edge[0]]] == []


def test_the_checker_sees_a_cycle_and_an_upward_import() -> None:
    graph = {"dps_cli.a": {"dps_cli.b"}, "dps_cli.b": {"dps_cli.a"}, "dps_cli.c": set()}
    assert find_cycles(graph) == [["dps_cli.a", "dps_cli.b"]]
    assert layer("dps_cli.runs.store") < layer("dps_cli.cli.app")


def test_reproduce_sits_between_cli_and_pipeline() -> None:
    """DESIGN §2: the reproduction orchestrates the pipeline functions; only the CLI calls it."""
    assert layer("dps_cli.report.tables") < layer("dps_cli.pipeline.sample")
    assert layer("dps_cli.pipeline.sample") < layer("dps_cli.reproduce.stages")
    assert layer("dps_cli.reproduce.stages") < layer("dps_cli.cli.reproduce")
    graph = import_graph()
    assert "dps_cli.reproduce.stages" in graph["dps_cli.cli.reproduce"]
