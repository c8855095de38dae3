"""The add-on's shape, in plain Python: imports inside the workbench point one way (no cycle, lazy
imports included), and the README and package.xml say one consistent thing about where CadSnap lives."""

from __future__ import annotations

import ast
import re
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "freecad_workbench"


def _imports(path: Path) -> set[str]:
    """The workbench modules ``path`` imports, at the top or inside functions."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            if node.module:
                found.add(node.module.split(".")[0])
            else:
                found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("freecad_workbench."):
            found.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            found |= {a.name.split(".")[1] for a in node.names if a.name.startswith("freecad_workbench.")}
    return found


def _graph() -> dict[str, set[str]]:
    modules = {p.stem for p in PACKAGE.glob("*.py")}
    return {p.stem: _imports(p) & modules for p in PACKAGE.glob("*.py")}


def test_workbench_imports_point_one_way():
    graph = _graph()
    state: dict[str, int] = {}
    cycles = []

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for target in sorted(graph[module]):
            if state.get(target) == 1:
                cycles.append(path[path.index(target):] + [target])
            elif target not in state:
                visit(target, [*path, target])
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert cycles == [], cycles


def test_one_insertion_path_below_the_gui():
    graph = _graph()
    assert graph["feature_tree"] == {"brep", "profile_dims", "sheet_values"}  # Bodies; no insertion
    assert "feature_tree" in graph["insert"] and "brep" in graph["insert"]
    for gui in ("task_panel", "editor"):  # they speak through report, never through commands
        assert "commands" not in graph[gui] and "report" in graph[gui]
    assert not graph["report"] & {"commands", "task_panel", "editor"}


def _package():
    tree = ET.parse(ROOT / "package.xml")
    ns = {"p": "https://wiki.freecad.org/Package_Metadata"}
    urls = {u.get("type"): u for u in tree.getroot().findall("p:url", ns)}
    return urls


def test_package_xml_urls_are_one_value_set():
    urls = _package()
    repository = urls["repository"].text.strip()
    branch = urls["repository"].get("branch")
    assert branch == "main"
    assert urls["bugtracker"].text.strip() == f"{repository}/issues"
    assert urls["readme"].text.strip() == f"{repository}/blob/{branch}/README.md"


def test_readme_install_says_what_works_and_links_only_inside_the_repository():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    urls = _package()
    repository, branch = urls["repository"].text.strip(), urls["repository"].get("branch")
    # FreeCAD 0.20's Addon Manager assumes `master` when a custom repository has no branch.
    assert f"{repository} {branch}" in readme
    assert f"git clone {repository}" in readme
    for target in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", readme):
        if target.startswith(("http://", "https://")):
            continue
        resolved = (ROOT / target).resolve()
        assert resolved.is_relative_to(ROOT) and resolved.exists(), target
    for target in re.findall(r"`((?:\.\./|docs/)[^`\s]+\.md)`", readme):
        assert (ROOT / target).resolve().is_relative_to(ROOT) and (ROOT / target).exists(), target
