"""Imports flow one way (STYLE.md §3.2): an ast scan of the package."""

import ast
import sys
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[2] / "topos_cli"
UPPER = ("topos_cli.cli", "topos_cli.api", "topos_cli.commands")
FORBIDDEN = {
    "geometry": ("topos_cli.io", *UPPER, "typer", "rich", "yaml"),
    "models": ("topos_cli.io", *UPPER, "typer", "rich", "yaml"),
    "render": (*UPPER, "typer"),
    "io": (*UPPER, "typer"),
    "pipelines": (*UPPER, "typer"),
    "train": (*UPPER, "typer"),
    "commands": ("topos_cli.cli", "topos_cli.api", "typer"),  # the API never reaches back into the CLI
}


def _imports(path: Path):
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_lower_layers_do_not_import_upper_ones(layer):
    bad = []
    for path in (PKG / layer).rglob("*.py"):
        for name in _imports(path):
            if any(name == f or name.startswith(f + ".") for f in FORBIDDEN[layer]):
                bad.append(f"{path.relative_to(PKG)} imports {name}")
    assert not bad, bad


def test_cli_modules_do_not_import_torch_at_top_level():
    bad = []
    for path in (PKG / "cli").glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in tree.body:  # only module-level statements
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module] if isinstance(node, ast.ImportFrom) and node.module else [])
            bad += [f"{path.name}: {n}" for n in names if n.split(".")[0] in ("torch", "numpy", "scipy", "trimesh")]
    assert not bad, bad


def test_api_module_does_not_import_the_cli():
    bad = [name for name in _imports(PKG / "api.py") if name.startswith("topos_cli.cli") or name == "typer"]
    assert not bad, bad


def _module_graph() -> dict[str, set[str]]:
    """{module: topos_cli modules it imports anywhere in the file (function-level imports included)}."""
    modules = {}
    for path in PKG.rglob("*.py"):
        parts = list(path.relative_to(PKG.parent).with_suffix("").parts)
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path

    def owner(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    graph = {}
    for name, path in modules.items():
        deps = set()
        for node in _runtime_nodes(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                deps |= {owner(a.name) for a in node.names if a.name.startswith("topos_cli")}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0 \
                    and node.module.startswith("topos_cli"):
                deps |= {f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in modules else owner(node.module)
                         for a in node.names}
        graph[name] = deps - {None, name, "topos_cli"}  # the package root holds only __version__
    return graph


def _runtime_nodes(tree: ast.AST):
    """Every node of the tree except those under `if TYPE_CHECKING:` (annotations only, never imported)."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            yield from (n for child in node.orelse for n in [child, *_runtime_nodes(child)])
            continue
        yield node
        yield from _runtime_nodes(node)


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on_stack, found, counter = {}, {}, [], set(), [], [0]
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10 * len(graph)))

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_import_cycle_between_modules():
    """No module imports one that (directly or not) imports it back, lazy imports included."""
    assert _cycles(_module_graph()) == []


def test_no_import_cycle_between_layers_at_import_time():
    """At import time the layers form no cycle either (e.g. template -> io -> template)."""
    layers: dict[str, set[str]] = {}
    for path in PKG.rglob("*.py"):
        rel = path.relative_to(PKG)
        layer = rel.parts[0].removesuffix(".py")
        for node in ast.parse(path.read_text()).body:  # module-level imports only
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module] if isinstance(node, ast.ImportFrom) and node.module and node.level == 0 else [])
            for name in names:
                if name.startswith("topos_cli."):
                    other = name.split(".")[1]
                    if other != layer:
                        layers.setdefault(layer, set()).add(other)
    assert _cycles(layers) == []


def test_the_cycle_finder_finds_cycles():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
