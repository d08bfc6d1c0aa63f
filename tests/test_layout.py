"""The package's layout holds what the README says of it: data flows one way, with no cycles."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "funnelsync"

# part -> the parts it may import (besides the top-level config, settings, errors and telemetry modules)
MAY_USE = {
    "mappings": set(),
    "connectors": {"mappings"},
    "state": {"mappings"},
    "sandbox": set(),
    "sync": {"mappings", "connectors", "state"},
    "daemon": {"mappings", "connectors", "state", "sync"},
    "cli": {"mappings", "connectors", "state", "sync", "daemon", "sandbox"},
}
TOP_LEVEL = {"config", "settings", "errors", "telemetry", "__main__", "__init__"}


def modules() -> Iterator[tuple[str, ast.Module]]:
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE.parent).with_suffix("")
        name = ".".join(relative.parts).removesuffix(".__init__")
        yield name, ast.parse(path.read_text(), str(path))


def imported(name: str, tree: ast.Module, *, top_only: bool) -> Iterator[tuple[str, int]]:
    nodes = tree.body if top_only else list(ast.walk(tree))
    for node in nodes:
        if isinstance(node, ast.ImportFrom):
            module = _absolute(name, node.level, node.module) if node.level else node.module or ""
            for alias in node.names:  # `from . import page` imports the module page
                submodule = f"{module}.{alias.name}"
                yield (submodule if _is_module(submodule) else module), node.lineno
        elif isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno


def _is_module(name: str) -> bool:
    path = PACKAGE.parent / Path(*name.split("."))
    return path.with_suffix(".py").exists() or (path / "__init__.py").exists()


def _absolute(name: str, level: int, module: str | None) -> str:
    parts = name.split(".")
    package = parts if (PACKAGE.parent / Path(*parts) / "__init__.py").exists() else parts[:-1]
    base = package[: len(package) - (level - 1)]
    return ".".join([*base, module] if module else base)


def part_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def test_no_import_hides_inside_a_function() -> None:
    """An import inside a function is how a cycle hides: every import is at the top."""
    hidden = []
    for name, tree in modules():
        top = {id(node) for node in tree.body}
        for node in ast.walk(tree):
            if isinstance(node, ast.Import | ast.ImportFrom) and id(node) not in top:
                guarded = any(isinstance(n, ast.If) and id(node) in {id(x) for x in ast.walk(n)} for n in tree.body)
                if not guarded:
                    hidden.append(f"{name}:{node.lineno}")
    assert hidden == []


@pytest.mark.parametrize("part", sorted(MAY_USE))
def test_each_part_imports_only_what_comes_before_it_in_the_flow(part: str) -> None:
    wrong = []
    for name, tree in modules():
        if part_of(name) != part:
            continue
        for target, line in imported(name, tree, top_only=False):
            if not target.startswith("funnelsync."):
                continue
            used = part_of(target)
            if used != part and used not in TOP_LEVEL and used not in MAY_USE[part]:
                wrong.append(f"{name}:{line} imports {target}")
    assert wrong == []


def test_there_is_no_import_cycle_between_modules() -> None:
    graph: dict[str, set[str]] = {}
    names = {name for name, _ in modules()}
    for name, tree in modules():
        graph[name] = {target for target, _ in imported(name, tree, top_only=True) if target in names}
    cycles = []
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append([*path[path.index(nxt):], nxt] if nxt in path else [node, nxt])
            elif nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    assert cycles == []


def test_only_the_command_line_prints() -> None:
    printing = []
    for name, tree in modules():
        if part_of(name) == "cli":
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Call):
                func = node.func
                called = func.id if isinstance(func, ast.Name) else ""
                if isinstance(func, ast.Attribute):
                    called = f"{getattr(func.value, 'id', '')}.{func.attr}"
                if called in ("print", "click.echo", "click.secho"):
                    printing.append(f"{name}:{node.lineno}")
    assert printing == []


def test_the_readme_layout_section_matches_the_tree() -> None:
    readme = (PACKAGE.parent / "README.md").read_text()
    section = readme.split("## How the code is laid out", 1)[1].split("\n## ", 1)[0]
    listed = {line.split()[0].rstrip("/") for line in section.splitlines()
              if line.startswith("  ") and line.split() and line.split()[0].endswith(("/", ".py"))}
    actual = {path.name.removesuffix(".py") if path.suffix else path.name
              for path in PACKAGE.iterdir()
              if (path.is_dir() and (path / "__init__.py").exists()) or path.suffix == ".py"}
    assert {name.removesuffix(".py") for name in listed} == actual - {"__init__", "__main__"}
