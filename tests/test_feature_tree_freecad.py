"""Real FreeCAD: a traced CadQuery part becomes a PartDesign Body; named dimensions drive it; the
saved document reopens and recomputes on a FreeCAD without CadSnap."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from model_runtime.feature_plan import parameterise, trace
from training.bench.freecad_harness import addon_home, freecad_env, run_freecadcmd_tests

PLATE = """import cadquery as cq

result = (
    cq.Workplane("XY")
    .box(80, 60, 8)
    .edges("|Z")
    .fillet(5)
    .faces(">Z")
    .workplane()
    .rarray(60, 40, 2, 2)
    .hole(6.6)
    .faces(">Z")
    .workplane()
    .rect(20, 10)
    .cutThruAll()
)
"""
VARIANTS = {"plate_length": 100, "hole_diameter": 9, "hole_spacing_x": 50, "hole_count_y": 3}
FLANGE = """import cadquery as cq

result = (
    cq.Workplane("XY")
    .circle(40)
    .extrude(10)
    .faces(">Z")
    .workplane()
    .polarArray(30, 0, 360, 8)
    .cboreHole(5.5, 10, 3)
    .faces(">Z")
    .workplane()
    .hole(20)
)
"""
FLANGE_VARIANTS = {"hole_count": 5, "cbore_diameter": 12}
# A row of blind pockets on a rarray, not centred along x: one Pocket and a LinearPattern.
ROW = """import cadquery as cq

result = (
    cq.Workplane("XY")
    .box(120, 30, 10)
    .faces(">Z")
    .workplane()
    .center(-50, 0)
    .rarray(20, 1, 5, 1, center=(False, True))
    .rect(6, 4)
    .cutBlind(-4)
)
"""
ROW_VARIANTS = {"pocket_spacing_x": 15, "pocket_count_x": 6, "pocket_length": 8}

REOPEN = """
import json, importlib.util
import FreeCAD
doc = FreeCAD.openDocument(PATH)
body = next(o for o in doc.Objects if o.TypeId == "PartDesign::Body")
for obj in doc.Objects:
    obj.touch()
doc.recompute()
first = body.Shape.Volume
sheet = next(o for o in doc.Objects if o.TypeId == "Spreadsheet::Sheet")
sheet.set("plate_length", "100")
doc.recompute()
print("CADSNAP-REOPEN " + json.dumps({"volume": first, "longer": body.Shape.Volume,
      "valid": all("Invalid" not in o.State for o in doc.Objects),
      "cadsnap_importable": importlib.util.find_spec("freecad_workbench") is not None}))
"""


def _volume(code: str) -> float:
    scope: dict = {}
    exec(compile(code, "<test>", "exec"), scope)  # our own fixed program
    return scope["result"].val().Volume()


def _traced_part(folder, name: str, code: str, variants: dict, plan_file: str = "") -> tuple[dict, dict]:
    """Trace ``code``, write its BREP and (plan, variant volumes) as ``plan_file`` (``name``.json);
    each variant's volume is what CadQuery gives with that one parameter changed."""
    plan, solid = trace(code)
    assert plan["status"] == "mapped", plan["reasons"]
    solid.exportBrep(str(folder / f"{name}.brep"))
    source = parameterise(code, plan)
    volumes = {}
    for parameter, value in variants.items():
        changed, n = re.subn(rf"^{parameter} = .*$", f"{parameter} = {value}", source, flags=re.M)
        assert n == 1
        volumes[parameter] = [value, _volume(changed)]
    data = {"plan": plan, "brep_path": str(folder / f"{name}.brep"), "variants": volumes, "source": source}
    (folder / (plan_file or f"{name}.json")).write_text(json.dumps(data))
    return plan, volumes


@pytest.fixture(scope="module")
def fixtures(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ftree")
    plan, variants = _traced_part(folder, "plate", PLATE, VARIANTS, plan_file="plan.json")
    assert variants["plate_length"][1] > plan["volume"] > variants["hole_diameter"][1]
    # Three rows 40 apart: the outer two miss the 60 mm plate, in CadQuery as in FreeCAD.
    assert variants["hole_count_y"][1] > plan["volume"]
    plan, _ = _traced_part(folder, "flange", FLANGE, FLANGE_VARIANTS)
    assert [f["kind"] for f in plan["features"]] == ["pad", "hole", "polar_pattern", "hole"]
    plan, _ = _traced_part(folder, "row", ROW, ROW_VARIANTS)
    assert [f["kind"] for f in plan["features"]] == ["pad", "pocket", "linear_pattern"]
    return folder


@pytest.mark.freecad
def test_feature_tree_in_real_freecad(tmp_path, fixtures):
    output = run_freecadcmd_tests(
        "tests.freecad.fc_feature_tree", addon_home(tmp_path), CADSNAP_FC_FIXTURES=str(fixtures)
    )
    ran = re.search(r"Ran (\d+) tests?", output)
    assert ran and int(ran.group(1)) == 8, output
    assert (fixtures / "part.FCStd").is_file()


@pytest.mark.freecad
def test_saved_body_reopens_and_recomputes_without_cadsnap(tmp_path, fixtures):
    if not (fixtures / "part.FCStd").is_file():
        pytest.skip("needs the document test_feature_tree_in_real_freecad saves")
    bare = tmp_path / "bare"  # a HOME with no add-ons at all
    bare.mkdir()
    script = tmp_path / "reopen.py"
    script.write_text(f"PATH = {str(fixtures / 'part.FCStd')!r}\n" + REOPEN)
    proc = subprocess.run(
        ["freecadcmd", str(script)],
        env=freecad_env(bare),
        cwd=bare,
        capture_output=True,
        text=True,
        timeout=120,
    )
    output = proc.stdout + proc.stderr
    assert "Traceback" not in output and "Exception" not in output, output
    result = json.loads(output.split("CADSNAP-REOPEN ", 1)[1].splitlines()[0])
    assert result["cadsnap_importable"] is False and result["valid"]
    plan = json.loads((fixtures / "plan.json").read_text())
    assert result["volume"] == pytest.approx(plan["plan"]["volume"], rel=1e-6)
    assert result["longer"] == pytest.approx(plan["variants"]["plate_length"][1], rel=1e-6)


@pytest.mark.freecad
def test_headless_document_holds_the_body_or_says_why_not(tmp_path, fixtures):
    from model_runtime.feature_plan.freecad import write_fcstd

    data = json.loads((fixtures / "plan.json").read_text())
    brep = Path(data["brep_path"]).read_text()
    is_body, why = write_fcstd(tmp_path / "part.FCStd", data["source"], brep, data["plan"], "plate.png")
    assert (is_body, why) == (True, "") and (tmp_path / "part.FCStd").stat().st_size > 1000
    is_body, why = write_fcstd(tmp_path / "solid.FCStd", data["source"], brep, None, "plate.png")
    assert not is_body and "no feature plan" in why and (tmp_path / "solid.FCStd").is_file()


def test_generate_fcstd_says_clearly_when_freecad_is_missing(tmp_path, monkeypatch, capsys):
    from PIL import Image

    from model_runtime import cli

    image = tmp_path / "part.png"
    Image.new("RGB", (32, 32), "white").save(image)
    monkeypatch.setenv("CADSNAP_FREECADCMD", str(tmp_path / "no-freecad"))
    fcstd = tmp_path / "p.FCStd"
    rc = cli.main(["generate", str(image), "-o", str(tmp_path / "p.step"), "--fcstd", str(fcstd)])
    assert rc == 2 and not (tmp_path / "p.FCStd").exists()
    assert "--fcstd needs FreeCAD" in capsys.readouterr().err
