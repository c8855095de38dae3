"""The repository's layers point down (lazy imports inside functions included): the runtime imports
neither training, tests nor the workbench; the workbench shares only the wire shapes
(``model_runtime.protocol``, standard library only) with the runtime it talks to; training (its
benchmarks drive the workbench) never imports tests."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Each layer and the top-level packages it must never import.
FORBIDDEN = {
    "freecad_workbench": {"model_runtime", "training", "tests"},
    "model_runtime": {"training", "tests", "freecad_workbench"},
    "training": {"tests"},
}
SHARED = {"model_runtime.protocol"}  # the one module both processes import


def _top_level_imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = {f"{node.module}.{alias.name}" for alias in node.names}
            if node.module not in SHARED and not names <= SHARED:
                found.add(node.module.split(".")[0])
        elif isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names if alias.name not in SHARED}
    return found


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_layer_imports_point_down(layer):
    wrong = {}
    for path in sorted((ROOT / layer).rglob("*.py")):
        bad = _top_level_imports(path) & FORBIDDEN[layer]
        if bad:
            wrong[str(path.relative_to(ROOT))] = sorted(bad)
    assert not wrong, f"{layer} imports a layer above it: {wrong}"


def test_program_sources_have_their_own_folders():
    """Where a picture is scored and where a shape is recognised, each in its own folder."""
    runtime = ROOT / "model_runtime"
    for module in ("images", "similarity", "refine", "scaling", "search", "envelope"):
        assert (runtime / "picture" / f"{module}.py").is_file(), module
        assert not (runtime / f"{module}.py").exists(), module
    for module in ("load", "graph", "recognise", "emit", "verify"):
        assert (runtime / "shapes" / f"{module}.py").is_file(), module
    assert not (runtime / "bench").exists()
