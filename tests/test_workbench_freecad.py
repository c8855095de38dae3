"""Real FreeCAD 0.20 (headless freecadcmd): metadata, insertion (solid or feature tree), undo, edit (a solid,
or a Body rebuilt from the edited program's plan), save/reopen, preferences."""

from __future__ import annotations

import json
import re

import pytest

from model_runtime.sandbox import SandboxPool
from training.bench.freecad_harness import addon_home, run_freecadcmd_tests

BOX_SOURCE = 'import cadquery as cq\n\nresult = cq.Workplane("XY").box(30, 20, 10).faces(">Z").hole(6)\n'
# Feature plans as the runtime sends them (its sandbox traces each run): a mapped box, the same box with
# one dimension edited, and a program with a step PartDesign has no feature for.
PLAN_SOURCES = {
    "box": 'import cadquery as cq\n\nresult = cq.Workplane("XY").box(30, 20, 10)\n',
    "longer": 'import cadquery as cq\n\nresult = cq.Workplane("XY").box(40, 20, 10)\n',
    "sphere": 'import cadquery as cq\n\nresult = cq.Workplane("XY").sphere(10)\n',
}


@pytest.fixture(scope="module")
def fixtures(tmp_path_factory):
    """A real CadQuery solid as BREP text, its source, its volume and bounding box, and an image."""
    from PIL import Image

    folder = tmp_path_factory.mktemp("fc_fixtures")
    namespace: dict = {}
    exec(BOX_SOURCE, namespace)  # our own fixed program, not generated code
    shape = namespace["result"].val()
    shape.exportBrep(str(folder / "box.brep"))
    (folder / "box.py").write_text(BOX_SOURCE)
    box = shape.BoundingBox()
    (folder / "box.json").write_text(json.dumps(
        {"volume": shape.Volume(), "bbox": [box.xmin, box.ymin, box.zmin, box.xmax, box.ymax, box.zmax]}))
    Image.new("RGB", (64, 64), "white").save(folder / "flange plate.png")
    plans = {}
    with SandboxPool(workers=1, timeout_s=30) as pool:
        for name, code in PLAN_SOURCES.items():
            run = pool.run(code, feature_plan=True)
            plans[name] = {"code": code, "brep": run.brep, "plan": run.feature_plan, "volume": run.volume}
    assert plans["box"]["plan"]["status"] == plans["longer"]["plan"]["status"] == "mapped"
    assert plans["sphere"]["plan"]["status"] == "unmapped"
    (folder / "plans.json").write_text(json.dumps(plans))
    return folder


@pytest.mark.freecad
def test_document_insertion_in_real_freecad(tmp_path, fixtures):
    output = run_freecadcmd_tests("tests.freecad.fc_document", addon_home(tmp_path),
                                  CADSNAP_FC_FIXTURES=str(fixtures))
    ran = re.search(r"Ran (\d+) tests?", output)
    assert ran and int(ran.group(1)) == 20, output
