"""The package's layering: imports point down only, with no cycles, and the pure core never
imports a Flax shell (DESIGN.md: diagnostics take the pure layer, never a shell's params)."""

import ast
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).parents[1] / "rnnlab"
PURE_CORE = (
    "cells",
    "linear",
    "scan",
    "fused",
    "unroll",
    "layers",
    "parametrizations",
    "zoo",
    "readout",
    "diagnostics",
)


def module_name(path: pathlib.Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: pathlib.Path, modules: set[str]) -> set[str]:
    """The rnnlab modules a file imports (``from rnnlab import x`` counts as ``rnnlab.x``)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("rnnlab"):
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                found.add(sub if sub in modules else node.module)
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("rnnlab")}
    return found


@pytest.fixture(scope="module")
def graph():
    files = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    return {name: imports_of(path, set(files)) - {name} for name, path in files.items()}


def test_the_import_graph_has_no_cycles(graph):
    state = {}

    def visit(node, path):
        if state.get(node) == "done":
            return
        assert state.get(node) != "open", "import cycle: " + " -> ".join(path + [node])
        state[node] = "open"
        for dep in graph.get(node, ()):
            if dep != "rnnlab":  # the package face re-exports; nothing inside imports it
                visit(dep, path + [node])
        state[node] = "done"

    for node in graph:
        visit(node, [])
    assert not any("rnnlab" in deps for name, deps in graph.items() if name != "rnnlab"), "import the module itself"


def test_the_pure_core_imports_no_flax_shell(graph):
    for name in PURE_CORE:
        shells = graph[f"rnnlab.{name}"] & {"rnnlab.linen", "rnnlab.nnx", "rnnlab.experiment", "rnnlab.train"}
        assert not shells, f"rnnlab.{name} imports {shells}"
        source = (PACKAGE / f"{name}.py").read_text()
        assert "flax" not in source.split('"""', 2)[-1], f"rnnlab.{name} uses Flax"
