"""Imports flow one way (STYLE.md §3.2): an ast scan of the package."""

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[2] / "topos_cli"
FORBIDDEN = {
    "geometry": ("topos_cli.io", "topos_cli.cli", "topos_cli.api", "typer", "rich", "yaml"),
    "models": ("topos_cli.io", "topos_cli.cli", "topos_cli.api", "typer", "rich", "yaml"),
    "render": ("topos_cli.cli", "topos_cli.api", "typer"),
    "io": ("topos_cli.cli", "topos_cli.api", "typer"),
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
