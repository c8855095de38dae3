"""``python -m model_runtime exec PROGRAM -o part.FCStd``: the document Generate inserts, written headless
for any CadQuery program, read back from the file as FreeCAD stores it (each object's Visibility, the
Parameters cells). A document written by freecadcmd shows in the GUI exactly what it stores."""

from __future__ import annotations

import re
import subprocess
import sys
import xml.etree.ElementTree as ET
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "model_runtime" / "examples"
# A plate whose last feature is its 3 x 2 hole grid: the Body's Tip is the grid's MultiTransform.
HOLE_GRID = '''import cadquery as cq

result = (
    cq.Workplane("XY")
    .box(120, 80, 6)
    .faces(">Z")
    .workplane()
    .rarray(35.5, 50, 3, 2)
    .hole(4.438)
)
'''


def _write(program: Path, out: Path) -> str:
    proc = subprocess.run([sys.executable, "-m", "model_runtime", "exec", str(program), "-o", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert out.is_file()
    return proc.stdout


def _document(path: Path) -> ET.Element:
    with zipfile.ZipFile(path) as archive:
        return ET.fromstring(archive.read("Document.xml"))


def _objects(root: ET.Element) -> dict[str, dict]:
    """Name -> {"type", "visible", "tip"} from Document.xml."""
    types = {o.get("name"): o.get("type") for o in root.find("Objects")}
    objects = {}
    for data in root.find("ObjectData"):
        props = {p.get("name"): p for p in data.iter("Property")}
        visible = props.get("Visibility")
        tip = props.get("Tip")
        objects[data.get("name")] = {
            "type": types[data.get("name")],
            "visible": visible is not None and visible.find("Bool").get("value") == "true",
            "tip": tip.find("Link").get("value") if tip is not None else None}
    return objects


def _cells(root: ET.Element) -> dict[str, str]:
    """Each cell's content; FreeCAD 1.x stores a text cell with a leading apostrophe ("'mm"), 0.20 without."""
    return {cell.get("address"): re.sub(r"^'", "", cell.get("content")) for cell in root.iter("Cell")}


@pytest.mark.freecad
def test_the_body_shows_its_solid_and_hides_sketches_and_inner_patterns(tmp_path):
    program = tmp_path / "grid_plate.py"
    program.write_text(HOLE_GRID)
    said = _write(program, tmp_path / "grid_plate.FCStd")
    assert "grid_plate.FCStd: a PartDesign Body with named dimensions" in said
    objects = _objects(_document(tmp_path / "grid_plate.FCStd"))
    (body,) = [o for o in objects.values() if o["type"] == "PartDesign::Body"]
    tip = objects[body["tip"]]
    assert tip["type"] == "PartDesign::MultiTransform" and tip["visible"] and body["visible"]
    for name, obj in objects.items():
        if obj["type"].startswith(("PartDesign::", "Sketcher::")) and obj is not body and obj is not tip:
            assert not obj["visible"], name  # sketches, the Pad, the Hole, the inner LinearPatterns
    assert not objects["Origin"]["visible"]
    assert sum(o["type"] == "PartDesign::LinearPattern" for o in objects.values()) == 2


@pytest.mark.freecad
def test_the_parameters_sheet_is_clean_readable_and_has_units(tmp_path):
    program = tmp_path / "grid_plate.py"
    program.write_text(HOLE_GRID.replace("box(120, 80, 6)", "box(120, 80, 6 * 1.4793333333333334)"))
    _write(program, tmp_path / "plate.FCStd")
    root = _document(tmp_path / "plate.FCStd")
    cells = _cells(root)
    assert (cells["A1"], cells["B1"], cells["C1"]) == ("Parameter", "Value", "Unit")
    rows = {cells[f"A{r}"]: (cells[f"B{r}"], cells.get(f"C{r}", ""))
            for r in range(2, 100) if f"A{r}" in cells}
    assert rows["hole_count_x"] == ("3", "") and rows["hole_spacing_x"] == ("35.5", "mm")
    assert rows["hole_diameter"] == ("4.438", "mm")
    assert rows["plate_thickness"] == ("=8876 / 1000", "mm")  # 6 x 1.4793…: exact, not 8.875999999999999
    for value, _unit in rows.values():
        assert re.fullmatch(r"-?\d+(\.\d{1,6})?|=-?\d+ / 10+", value), value  # no float noise
    widths = root.find(".//Property[@name='cells']/Cells/../../Property[@name='columnWidths']")
    width_xml = ET.tostring(root).decode()
    assert re.search(r'<Column name="A" width="18\d"', width_xml), widths


@pytest.mark.freecad
def test_a_polyline_part_exposes_its_extents_and_wall(tmp_path):
    _write(EXAMPLES / "l_bracket.py", tmp_path / "l_bracket.FCStd")
    root = _document(tmp_path / "l_bracket.FCStd")
    cells = _cells(root)
    rows = {cells[f"A{r}"]: cells[f"B{r}"] for r in range(2, 100) if f"A{r}" in cells}
    assert rows == {"extrude_length": "27.5", "hole_diameter": "3.4", "profile_width": "25",
                    "profile_height": "100", "wall_thickness": "3"}, rows
    text = ET.tostring(root).decode()
    for name in ("profile_width", "profile_height", "wall_thickness"):  # the sketch reads each of them
        assert f"Parameters.{name}" in text, name


@pytest.mark.freecad
def test_every_example_writes_a_body(tmp_path):
    for name in ("mounting_plate", "l_bracket", "flange"):
        said = _write(EXAMPLES / f"{name}.py", tmp_path / f"{name}.FCStd")
        assert "a PartDesign Body with named dimensions" in said, said
        objects = _objects(_document(tmp_path / f"{name}.FCStd"))
        shown = sorted(n for n, o in objects.items() if o["visible"] and o["type"].startswith(
            ("PartDesign::", "Sketcher::")) and o["type"] != "PartDesign::Body")
        (body,) = [o for o in objects.values() if o["type"] == "PartDesign::Body"]
        assert shown == [body["tip"]], (name, shown)
