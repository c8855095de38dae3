"""Make parametric (issue 21): STEP/mesh in, a readable CadQuery program out, checked by IoU.

Round trips on real CadQuery/OCC: each recognised feature kind is built with CadQuery, exported to
STEP (or STL), read back through ``model_runtime.shapes`` and rebuilt; the rebuilt program's solid
must match (volume IoU) and the program must say what it recognised. Bad inputs get one sentence.
"""

from __future__ import annotations

import struct
import subprocess
import sys
from pathlib import Path

import pytest

cq = pytest.importorskip("cadquery")
pytest.importorskip("trimesh")

from model_runtime.shapes.errors import ShapeInputError  # noqa: E402
from model_runtime.shapes.load import load_bytes  # noqa: E402
from model_runtime.shapes.recognise import recognise  # noqa: E402
from model_runtime.shapes.verify import run_program, volume_iou  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def _step(tmp_path: Path, shape, name: str = "part.step") -> Path:
    path = tmp_path / name
    cq.exporters.export(shape, str(path))
    return path


def _rebuild(path: Path):
    loaded = load_bytes(path.read_bytes(), path.name)
    rec = recognise(loaded, time_budget_s=60)
    solid = run_program(rec.program)
    if loaded.kind == "brep":  # the job's own IoU, checked again from the program text
        assert volume_iou(loaded.shape, solid) == pytest.approx(rec.iou, abs=1e-6)
    return rec


def test_extrusion_and_pocket(tmp_path):
    part = cq.Workplane("XY").box(80, 50, 10, centered=(True, True, False)).faces(">Z").workplane()
    part = part.rect(30, 20).cutBlind(-4)
    rec = _rebuild(_step(tmp_path, part))
    assert rec.iou > 0.9999
    assert "pad" in rec.features and "pocket" in rec.features
    assert ".rect(80, 50)" in rec.program and "extrude(10)" in rec.program


def test_stacked_sections_become_one_pad_each(tmp_path):
    part = cq.Workplane("XY").polyline([(0, 0), (60, 0), (60, 10), (20, 40), (0, 40)]).close().extrude(15)
    part = part.union(cq.Workplane("XY").workplane(offset=15).center(10, 10).circle(6).extrude(20))
    rec = _rebuild(_step(tmp_path, part))
    assert rec.iou > 0.9999
    assert rec.features.count("pad") == 2


def test_extrusion_along_another_axis(tmp_path):
    part = (
        cq.Workplane("YZ").polyline([(0, 0), (40, 0), (40, 4), (4, 4), (4, 40), (0, 40)]).close().extrude(120)
    )
    rec = _rebuild(_step(tmp_path, part))
    assert rec.iou > 0.9999
    assert 'cq.Workplane("YZ"' in rec.program


@pytest.mark.parametrize(
    ("make", "kind", "call"),
    [
        (lambda wp: wp.hole(8), "hole", ".hole(8, 12)"),
        (lambda wp: wp.hole(6, 5), "hole", ".hole(6, 5)"),
        (lambda wp: wp.cboreHole(6.6, 11, 4), "counterbored hole", ".cboreHole(6.6, 11, 4, 12)"),
        (lambda wp: wp.cskHole(6.6, 12, 90), "countersunk hole", ".cskHole(6.6, 12, 90, 12)"),
    ],
    ids=["through", "blind", "counterbored", "countersunk"],
)
def test_holes(tmp_path, make, kind, call):
    part = make(cq.Workplane("XY").box(50, 40, 12, centered=(True, True, False)).faces(">Z").workplane())
    rec = _rebuild(_step(tmp_path, part))
    assert rec.iou > 0.9999
    assert kind in rec.features
    assert call in rec.program


def test_turned_part_is_one_revolve(tmp_path):
    profile = [(0, 0), (20, 0), (20, 8), (12, 8), (12, 30), (8, 34), (0, 34)]
    part = cq.Workplane("XZ").polyline(profile).close().revolve(360, (0, 0, 0), (0, 1, 0))
    rec = _rebuild(_step(tmp_path, part))
    assert rec.iou > 0.9999
    assert rec.features == ["revolve"]
    assert ".revolve(360" in rec.program


def test_flange_is_a_revolve_with_a_bolt_circle(tmp_path):
    profile = [(25, 0), (75, 0), (75, 16), (38, 16), (30, 50), (25, 50)]
    part = cq.Workplane("XZ").polyline(profile).close().revolve(360, (0, 0, 0), (0, 1, 0))
    part = part.faces(">Z[-2]").workplane().polarArray(60, 45, 360, 8).hole(14)
    rec = _rebuild(_step(tmp_path, part))
    assert rec.iou > 0.9999
    assert rec.features[0] == "revolve" and "polar pattern" in rec.features
    assert ".polarArray(60, 45, 360, 8).hole(14, 16)" in rec.program


def test_linear_and_polar_patterns(tmp_path):
    plate = cq.Workplane("XY").box(140, 60, 8, centered=(True, True, False))
    part = plate.faces(">Z").workplane().rarray(20, 20, 3, 2).hole(5)
    part = part.faces(">Z").workplane().center(50, 0).polarArray(12, 0, 360, 6).hole(4)
    rec = _rebuild(_step(tmp_path, part))
    assert rec.iou > 0.9999
    assert "polar pattern" in rec.features and "hole pattern" in rec.features
    assert ".polarArray(12, 0, 360, 6).hole(4, 8)" in rec.program


def test_equal_bosses_are_one_step(tmp_path):
    part = cq.Workplane("XY").box(60, 40, 4, centered=(True, True, False))
    part = part.faces(">Z").workplane().rarray(10, 1, 5, 1).rect(2, 30).extrude(15)
    rec = _rebuild(_step(tmp_path, part))
    assert rec.iou > 0.9999
    assert "pad pattern" in rec.features
    assert ".pushPoints([(-20, 0), (-10, 0), (0, 0), (10, 0), (20, 0)]).rect(2, 30)" in rec.program


def test_fillets_and_chamfers(tmp_path):
    part = cq.Workplane("XY").box(60, 40, 20, centered=(True, True, False)).edges(">Z").fillet(3)
    part = part.edges("<Z").chamfer(1.5)
    rec = _rebuild(_step(tmp_path, part))
    assert rec.iou > 0.9999
    assert "fillet" in rec.features and "chamfer" in rec.features
    assert ".fillet(3)" in rec.program and ".chamfer(1.5)" in rec.program


def test_cross_holes_come_back_as_holes(tmp_path):
    part = cq.Workplane("XY").box(60, 40, 14, centered=(True, True, False))
    part = part.faces(">Z").workplane().rect(40, 24, forConstruction=True).vertices().hole(5)
    part = part.faces(">X").workplane(centerOption="CenterOfBoundBox").hole(6)
    rec = _rebuild(_step(tmp_path, part))
    assert rec.iou > 0.9999
    assert rec.features.count("hole") == 2  # four along Z on a grid, one across along X


def test_mesh_path(tmp_path):
    src = (ROOT / "training" / "eval_oof" / "bearing_housing.py").read_text()
    scope: dict = {}
    exec(src, scope)
    path = tmp_path / "housing.stl"
    scope["result"].val().exportStl(str(path), tolerance=0.05, angularTolerance=0.2)
    rec = _rebuild(path)
    assert rec.iou > 0.99
    assert "counterbored hole" in rec.features and "hole pattern" in rec.features
    assert ".hole(6.6, 10)" in rec.program  # a standard clearance size, not a fitted 6.59…


# ---------------------------------------------------------------------------------- bad input


def _refused(tmp_path, name: str, data: bytes) -> ShapeInputError:
    with pytest.raises(ShapeInputError) as info:
        load_bytes(data, name)
    message = info.value.message
    assert message.endswith(".") and "\n" not in message and "Traceback" not in message
    return info.value


def test_empty_file(tmp_path):
    assert _refused(tmp_path, "part.step", b"").code == "empty_file"


def test_wrong_extension(tmp_path):
    assert _refused(tmp_path, "part.docx", b"hello").code == "wrong_extension"


def test_not_a_step_file(tmp_path):
    assert _refused(tmp_path, "part.step", b"this is not a step file\n" * 10).code == "not_a_solid"


def test_open_mesh(tmp_path):
    import trimesh

    box = trimesh.creation.box((10, 10, 10))
    box.update_faces(list(range(len(box.faces) - 2)))  # one side missing
    box.remove_unreferenced_vertices()
    # two missing triangles leave a square hole that fill_holes can close: remove more to stay open
    box.update_faces(list(range(len(box.faces) - 3)))
    data = trimesh.exchange.stl.export_stl(box)
    err = _refused(tmp_path, "open.stl", data)
    assert err.code in ("open_mesh", "non_manifold")


def test_open_mesh_is_repaired_when_it_can_be(tmp_path):
    import trimesh

    box = trimesh.creation.box((10, 10, 10))
    box.update_faces(list(range(len(box.faces) - 1)))  # one triangle missing: a hole fill_holes closes
    loaded = load_bytes(trimesh.exchange.stl.export_stl(box), "box.stl")
    assert any("holes were filled" in n for n in loaded.notes)


def test_too_many_triangles(tmp_path):
    data = b"\0" * 80 + struct.pack("<I", 3_000_000) + b"\0" * 50
    assert _refused(tmp_path, "big.stl", data).code == "too_large"


def test_not_a_solid(tmp_path):
    face = cq.Workplane("XY").rect(10, 10).extrude(1).faces(">Z").val()
    path = tmp_path / "face.step"
    cq.exporters.export(cq.Workplane().add(face), str(path))
    assert _refused(tmp_path, "face.step", path.read_bytes()).code == "not_a_solid"


def test_several_bodies_takes_the_largest(tmp_path):
    a = cq.Workplane("XY").box(10, 10, 10)
    b = cq.Workplane("XY").center(30, 0).box(5, 5, 5)
    path = _step(tmp_path, cq.Workplane().add(cq.Compound.makeCompound([a.val(), b.val()])))
    loaded = load_bytes(path.read_bytes(), path.name)
    assert loaded.n_bodies == 2
    assert loaded.shape.Volume() == pytest.approx(1000)
    assert any("took the largest" in n for n in loaded.notes)


def test_assembly_step_is_named(tmp_path):
    assy = cq.Assembly().add(cq.Workplane().box(10, 10, 10), name="a")
    assy.add(cq.Workplane().box(4, 4, 4), name="b", loc=cq.Location((20, 0, 0)))
    path = tmp_path / "assy.step"
    assy.export(str(path))
    loaded = load_bytes(path.read_bytes(), path.name)
    assert any("assembly" in n for n in loaded.notes)


# ---------------------------------------------------------------------------------- sandbox, CLI


@pytest.fixture(scope="module")
def pool():
    from model_runtime.sandbox import SandboxPool

    with SandboxPool(workers=1, timeout_s=60) as p:
        yield p


def test_sandbox_job_and_feature_plan(pool, tmp_path):
    from model_runtime.commands.parametrize import parametrize

    part = cq.Workplane("XY").box(60, 40, 8, centered=(True, True, False)).faces(">Z").workplane()
    part = part.rect(40, 20, forConstruction=True).vertices().hole(5)
    out = parametrize(pool, _step(tmp_path, part))
    assert out["ok"] and out["result"]["iou"] > 0.9999
    assert out["plan"]["status"] == "mapped"
    names = {p["name"] for p in out["plan"]["parameters"]}
    assert "hole_diameter" in names
    assert "hole_diameter = 5" in out["code"]


def test_sandbox_refuses_garbage_plainly(pool, tmp_path):
    reply = pool.run_shape("part.step", b"ISO-10303-21;\nDATA;\n#1=GARBAGE(((;\nENDSEC;\n")
    assert reply["ok"] is False
    assert reply["error"]["message"].endswith(".")


def test_cli(tmp_path):
    part = cq.Workplane("XY").box(30, 20, 5, centered=(True, True, False)).faces(">Z").workplane().hole(4)
    step = _step(tmp_path, part)
    out = tmp_path / "part.py"
    proc = subprocess.run(
        [sys.executable, "-m", "model_runtime", "parametrize", str(step), "-o", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr
    assert "volume IoU 1.00000" in proc.stderr
    assert "bore_diameter = 4" in out.read_text()  # a hole on the plate's axis is a bore (names.py)
    bad = tmp_path / "empty.stl"
    bad.write_bytes(b"")
    proc = subprocess.run(
        [sys.executable, "-m", "model_runtime", "parametrize", str(bad)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert proc.returncode == 1
    assert proc.stderr.strip() == "error: 'empty.stl' is empty."


def test_server_and_workbench_client(pool, tmp_path, monkeypatch):
    """POST /v1/parametrize through the workbench's own client: a Body's worth of result, or one
    plain sentence for bad input."""
    from freecad_workbench.client import ApiError, RuntimeClient
    from model_runtime.server import ServerConfig, create_app
    from tests.server_thread import BackgroundServer

    monkeypatch.setenv("CADSNAP_CONFIG_DIR", str(tmp_path))
    app = create_app(ServerConfig(token_path=tmp_path / "token"), pool=pool)
    part = cq.Workplane("XY").box(40, 30, 6, centered=(True, True, False)).faces(">Z").workplane().hole(5)
    step = _step(tmp_path, part)
    with BackgroundServer(app) as srv:
        client = RuntimeClient(srv.url, token=(tmp_path / "token").read_text().strip(), timeout_s=60)
        result = client.parametrize(step.name, step.read_bytes(), timeout_s=60)
        assert result["iou"] > 0.9999
        assert result["feature_plan"]["status"] == "mapped"
        assert "bore_diameter = 5" in result["code"] and result["brep"].strip()
        with pytest.raises(ApiError) as info:
            client.parametrize("part.obj", b"v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n", timeout_s=60)
        assert "open mesh" in info.value.message


@pytest.mark.freecad
def test_cli_fcstd(tmp_path):
    part = cq.Workplane("XY").box(40, 30, 6, centered=(True, True, False)).faces(">Z").workplane().hole(5)
    step = _step(tmp_path, part)
    fcstd = tmp_path / "part.FCStd"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "model_runtime",
            "parametrize",
            str(step),
            "-o",
            str(tmp_path / "p.py"),
            "--fcstd",
            str(fcstd),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr
    assert "a PartDesign Body with named dimensions" in proc.stderr
    assert fcstd.is_file()


# ------------------------------------------------------------------------------ meshes (STL)


def _stl(tmp_path: Path, part, name: str) -> Path:
    path = tmp_path / name
    (part.val() if isinstance(part, cq.Workplane) else part).exportStl(
        str(path), tolerance=0.05, angularTolerance=0.2
    )
    return path


def test_mesh_whose_walls_touch_along_a_line_is_split_not_refused(tmp_path):
    """A bore tangent to the inside of a hub: the CAD export has edges shared by four triangles."""
    import numpy as np
    import trimesh

    disc = cq.Workplane("XY").circle(20).extrude(6)
    hub = cq.Workplane("XY").circle(10).extrude(16)
    part = disc.union(hub).cut(cq.Workplane("XY").center(6, 0).circle(4).extrude(16))
    path = _stl(tmp_path, part, "tangent_bore.stl")
    raw = trimesh.load(str(path), process=True)
    raw.merge_vertices()
    _, counts = np.unique(raw.edges_sorted, axis=0, return_counts=True)
    assert (counts > 2).any() and not raw.is_watertight  # the export really is non-manifold
    loaded = load_bytes(path.read_bytes(), path.name)
    assert loaded.mesh.is_watertight
    assert any("touch along a line" in n and n[0] == "'" for n in loaded.notes)
    assert loaded.mesh.volume == pytest.approx(part.val().Volume(), rel=2e-3)  # nothing lost
    # rebuilt; the exact program's own solid has the same touching walls, which OCC meshes with slits
    assert recognise(loaded, time_budget_s=60).iou > 0.8


def test_mesh_cross_hole_through_a_turned_part(tmp_path):
    """A set screw drilled across a turned knob: plugged, the knob one revolve, the hole drilled back."""
    profile = [(0, 0), (18, 0), (18, 4), (12, 7), (12, 20), (0, 20)]
    knob = cq.Workplane("XZ").polyline(profile).close().revolve(360, (0, 0, 0), (0, 1, 0))
    knob = knob.cut(cq.Workplane("XY").circle(3).extrude(14))
    knob = knob.cut(cq.Workplane("YZ").center(0, 10).circle(1.6).extrude(20))
    rec = _rebuild(_stl(tmp_path, knob, "knob.stl"))
    assert rec.iou > 0.97
    assert "revolve" in rec.features and "hole" in rec.features
    assert 'cq.Workplane("YZ"' in rec.program and ".hole(3.2" in rec.program


def test_mesh_turned_part_with_a_long_shallow_arc(tmp_path):
    """A handle whose side is one long shallow arc: its few facet vertices, with near-duplicates where
    the section passes a vertex, must not fold into one straight line (IoU ~0.87); the axis goes
    through the centre of mass, not the faceted bounding box's centre."""
    handle = (
        cq.Workplane("XZ").moveTo(0, 0).lineTo(8, 0).lineTo(8, 10).lineTo(10, 10)
        .threePointArc((14, 50), (9, 90)).lineTo(0, 90).close()
        .revolve(360, (0, 0, 0), (0, 1, 0))
    )  # fmt: skip
    rec = _rebuild(_stl(tmp_path, handle, "handle.stl"))
    assert rec.strategy == "mesh revolve" and rec.iou > 0.985
    assert 'cq.Workplane("XZ", origin=(0, 0, ' in rec.program  # on the axis


@pytest.mark.freecad
def test_body_equals_solid_when_sketch_arcs_meet_tangentially(tmp_path):
    """Lobes filleted into a core: the rebuilt outline is arcs that meet tangentially, whose fixed
    circles the sketch solver cannot always bring together; the Pad must still compute and the Body
    equal the program's solid."""
    import json

    from model_runtime.feature_plan import trace
    from model_runtime.feature_plan.freecad import run_jobs

    lobes = cq.Workplane("XY").polarArray(14, 0, 360, 5).circle(8).extrude(10)
    part = cq.Workplane("XY").circle(16).extrude(10).union(lobes).edges("|Z").fillet(2)
    path = _step(tmp_path, part)
    rec = recognise(load_bytes(path.read_bytes(), path.name), time_budget_s=60)
    assert rec.iou > 0.999 and "threePointArc" in rec.program
    plan, solid = trace(rec.program)
    brep = tmp_path / "part.brep"
    solid.exportBrep(str(brep))
    (result,) = run_jobs([{"plan": json.loads(json.dumps(plan)), "brep_path": str(brep)}])
    assert result["body"], result["message"]
    assert result["volume_error"] < 1e-3


# ------------------------------------------------------- mostly turned parts, lofts, inch files


def test_mostly_turned_part_is_one_revolve_and_its_local_features(tmp_path):
    """A turned part with a hex grip, a keyway in its bore and a slot across its end: one revolve
    of the section most angles share, the rest as cuts (none of it a pad stack)."""
    profile = [(5, 0), (16, 0), (16, 6), (11, 6), (11, 28), (9, 30), (5, 30)]
    part = cq.Workplane("XZ").polyline(profile).close().revolve(360, (0, 0, 0), (0, 1, 0))
    hex_ring = cq.Workplane("XY").circle(20).polygon(6, 30).extrude(6)
    part = part.cut(hex_ring)
    part = part.cut(cq.Workplane("XY").center(6, 0).rect(3, 3).extrude(30))
    part = part.cut(cq.Workplane("XY", origin=(0, 0, 29)).rect(30, 2).extrude(1))
    rec = _rebuild(_step(tmp_path, part))
    assert rec.iou > 0.9999
    assert rec.features.count("revolve") == 1 and rec.strategy.startswith("revolve")
    # the six hex corners are one sketch; the keyway and the slot meet, so they are one plain cut
    assert rec.features.count("pad") <= 1 and rec.features.count("residual") <= 2
    assert ".revolve(360" in rec.program


def test_loft_from_a_polygon_to_a_circle(tmp_path):
    base = cq.Workplane("XY").rect(50, 30).extrude(6)
    neck = cq.Workplane("XY", origin=(0, 0, 6)).polygon(5, 28).workplane(offset=25).circle(9).loft()
    part = base.union(neck).faces("<Z").workplane().hole(6, 10)
    rec = _rebuild(_step(tmp_path, part))
    assert rec.iou > 0.9999
    assert "loft" in rec.features and ".loft()" in rec.program
    assert ".polygon(" not in rec.program  # the sections are sketches of lines and arcs
    assert "importStep" not in rec.program
    from model_runtime.feature_plan.tracer import trace

    plan, _ = trace(rec.program)  # lands in FreeCAD as an AdditiveLoft on the Body
    assert plan["status"] == "mapped" and "loft" in [f["kind"] for f in plan["features"]]


def test_hollow_loft(tmp_path):
    outer = cq.Workplane("XY").rect(30, 24).workplane(offset=40).circle(8).loft()
    inner = cq.Workplane("XY").rect(26, 20).workplane(offset=40).circle(6).loft()
    rec = _rebuild(_step(tmp_path, outer.cut(inner)))
    assert rec.iou > 0.9999
    assert rec.features.count("loft") == 1 and "pocket" in rec.features


def _inch_step(tmp_path: Path, shape) -> Path:
    """``shape`` written to a STEP file whose length unit is the inch (as US CAD systems write)."""
    from OCP.Interface import Interface_Static
    from OCP.STEPControl import STEPControl_AsIs, STEPControl_Writer

    path = tmp_path / "inch_part.step"
    writer = STEPControl_Writer()
    assert Interface_Static.SetCVal_s("write.step.unit", "INCH")  # after the writer: it resets it
    try:
        writer.Transfer(shape.val().wrapped, STEPControl_AsIs)
        writer.Write(str(path))
    finally:
        Interface_Static.SetCVal_s("write.step.unit", "MM")
    assert "CONVERSION_BASED_UNIT('INCH'" in path.read_text(errors="replace").upper()
    return path


def test_inch_step_keeps_inches_in_the_names(pool, tmp_path):
    from model_runtime.commands.parametrize import parametrize

    inch = 25.4
    part = cq.Workplane("XY").box(3 * inch, 2 * inch, 0.25 * inch, centered=(True, True, False))
    part = part.faces(">Z").workplane().rect(2 * inch, 1 * inch, forConstruction=True)
    part = part.vertices().hole(0.25 * inch)
    out = parametrize(pool, _inch_step(tmp_path, part))
    assert out["ok"] and out["result"]["iou"] > 0.9999 and out["result"]["unit"] == "in"
    code = out["code"]
    assert "INCH = 25.4" in code
    assert "hole_diameter_in = 0.25" in code and "hole_diameter_in * INCH" in code
    assert any(line.endswith("_in = 3") for line in code.splitlines())
    rebuilt = run_program(out["result"]["program"]).Volume()
    assert run_program(code).Volume() == pytest.approx(rebuilt, rel=1e-9)


def test_mirrored_pairs_are_drawn_once_and_mirrored(pool, tmp_path):
    from model_runtime.commands.parametrize import parametrize

    part = cq.Workplane("XY").rect(50, 30).extrude(6)
    for sx in (1, -1):
        part = part.union(cq.Workplane("XY").center(sx * 36, 4).slot2D(20, 10).extrude(3))
        part = part.union(cq.Workplane("XY", origin=(0, 0, 6)).center(sx * 15, -5).rect(8, 6).extrude(5))
    part = part.faces("<Z").workplane().pushPoints([(40, 4), (-40, 4)]).hole(4)
    path = _step(tmp_path, part)
    rec = _rebuild(path)
    assert rec.iou > 0.9999
    assert "mirror" in rec.features and '.mirror("YZ", union=True)' in rec.program
    assert rec.program.count(".rect(8, 6)") == 1  # the pair of bosses: one drawn, one mirrored
    out = parametrize(pool, path)
    assert out["ok"] and out["plan"]["status"] == "mapped"
    assert any(f["kind"] == "mirrored" for f in out["plan"]["features"])
