"""The feature plan tracer, its protocol shape and the parameterised program, on real CadQuery."""

from __future__ import annotations

import types

import pytest

from model_runtime import protocol
from model_runtime.feature_plan import Recorder, parameterise, trace

PLATE = """import cadquery as cq

result = (
    cq.Workplane("XY")
    .box(80, 60, 8)
    .edges("|Z")
    .fillet(5)
    .faces(">Z")
    .workplane()
    .rarray(60, 40, 2, 2)
    .cboreHole(6.6, 11, 3)
    .faces(">Z")
    .workplane()
    .rect(20, 10)
    .cutThruAll()
)
"""

BRACKET = """import cadquery as cq

base = cq.Workplane("XY").box(60, 20, 5, centered=(True, True, False))
boss = cq.Workplane("XZ").center(0, 10).circle(8).extrude(10, both=True)
bore = cq.Workplane("XZ").center(0, 10).circle(4).extrude(20, both=True)
result = base.union(boss).cut(bore).edges("|Z").fillet(2)
"""

REVOLVED = """import cadquery as cq

result = (
    cq.Workplane("XZ")
    .polyline([(5, 0), (20, 0), (20, 4), (8, 4), (8, 20), (5, 20)])
    .close()
    .revolve(360, (0, 0, 0), (0, 1, 0))
    .faces("<Z")
    .shell(-1)
)
"""


def _run(code: str):
    scope: dict = {}
    exec(compile(code, "<test>", "exec"), scope)  # our own fixed programs
    return scope["result"].val()


def test_plate_becomes_pad_fillet_hole_pocket_with_named_dimensions():
    plan, solid = trace(PLATE)
    protocol.check_feature_plan(plan)
    assert plan["status"] == protocol.PLAN_MAPPED and plan["reasons"] == []
    assert [f["kind"] for f in plan["features"]] == ["pad", "fillet", "hole", "pocket"]
    assert plan["volume"] == pytest.approx(solid.Volume())
    names = {p["name"]: p["value"] for p in plan["parameters"]}
    assert names == {
        "length": 80,
        "width": 60,
        "height": 8,
        "fillet_radius": 5,
        "hole_diameter": 6.6,
        "cbore_diameter": 11,
        "cbore_depth": 3,
        "rect_width": 20,
        "rect_height": 10,
    }
    pad, fillet, hole, pocket = plan["features"]
    assert pad["midplane"] and pad["length"] == {"value": 8.0, "param": "height"}
    rect = pad["sketch"]["profiles"][0]
    assert rect["kind"] == "rect" and rect["anchor"] == ["center", "center"] and rect["at"] == [0, 0]
    assert rect["width"]["param"] == "length" and rect["height"]["param"] == "width"
    assert len(fillet["edges"]) == 4 and fillet["radius"] == {"value": 5.0, "param": "fillet_radius"}
    # Holes sit on the top face, in global coordinates, drilled along -Z through everything.
    assert hole["sketch"]["plane"]["origin"][2] == pytest.approx(4) and hole["sketch"]["plane"]["normal"] == [
        0,
        0,
        1,
    ]
    centers = sorted(tuple(p["center"]) for p in hole["sketch"]["profiles"])
    assert centers == [(-30, -20), (-30, 20), (30, -20), (30, 20)]
    assert hole["cut"] == "counterbore" and hole["depth"] is None
    assert hole["diameter"]["param"] == "hole_diameter" and hole["cut_depth"]["param"] == "cbore_depth"
    assert pocket["through_all"] and pocket["midplane"] and pocket["method"] == "cutThruAll"


def test_separate_bodies_union_and_cut_become_pads_and_pockets():
    plan, _ = trace(BRACKET)
    assert plan["status"] == protocol.PLAN_MAPPED, plan["reasons"]
    assert [f["kind"] for f in plan["features"]] == ["pad", "pad", "pocket", "fillet"]
    boss, bore = plan["features"][1], plan["features"][2]
    assert boss["midplane"] and boss["length"] == {"value": 20.0, "param": "extrude_length", "scale": 2.0}
    assert bore["sketch"]["plane"]["normal"] == [0, -1, 0] and bore["sketch"]["plane"]["origin"] == [0, 0, 10]
    assert bore["sketch"]["profiles"][0]["radius"]["param"] == "radius_2"


def test_revolve_and_shell():
    plan, _ = trace(REVOLVED)
    assert plan["status"] == protocol.PLAN_MAPPED, plan["reasons"]
    revolution, thickness = plan["features"]
    assert revolution["kind"] == "revolution" and revolution["axis"] == {"start": [0, 0], "end": [0, 1]}
    assert len(revolution["sketch"]["profiles"][0]["edges"]) == 6
    assert thickness["inward"] and thickness["value"]["value"] == 1 and len(thickness["faces"]) == 1


@pytest.mark.parametrize(
    ("code", "method"),
    [
        ('result = cq.Workplane("XY").rect(10, 4).twistExtrude(10, 45)', "twistExtrude"),
        ('result = cq.Workplane("XY").box(10, 10, 10).intersect(cq.Workplane("XY").sphere(6))', "intersect"),
        (
            'result = cq.Workplane("XY").box(10, 10, 2).faces(">Z").workplane().rect(4, 4)'
            ".extrude(3, taper=10)",
            "extrude",
        ),
    ],
)
def test_a_step_without_a_feature_is_unmapped_never_guessed(code, method):
    plan, _ = trace("import cadquery as cq\n" + code + "\n")
    protocol.check_feature_plan(plan)
    assert plan["status"] == protocol.PLAN_UNMAPPED
    assert any(f["kind"] == "unmapped" and f["method"] == method for f in plan["features"])
    assert plan["reasons"] and f"{method}()" in plan["reasons"][0] and plan["reasons"][0].startswith("line 2")


def test_instrument_through_a_restricted_namespace_like_the_sandbox_job():
    """The sandbox's scope: an importer that hands out a namespace of cadquery's public names only."""
    import cadquery

    public = types.SimpleNamespace(
        **{k: getattr(cadquery, k) for k in dir(cadquery) if not k.startswith("_")}
    )

    def importer(name, *args, **kwargs):
        if name != "cadquery":
            raise ImportError(name)
        return public

    scope = {"__builtins__": {"__import__": importer, "len": len}}
    recorder = Recorder()
    traced = recorder.instrument(scope)
    assert scope["__builtins__"]["__import__"] is importer  # the caller's scope is left alone
    exec(compile(PLATE, "<job>", "exec"), traced)
    solid = traced["result"].val()
    assert set(vars(traced["result"].__class__.__mro__[0])) >= {"box", "hole"}
    assert not hasattr(cadquery, "Recorder") and "Recorder" not in dir(traced["cq"])
    assert set(dir(traced["cq"])) == set(dir(public))
    # The worker may pass a copy of the measured solid: the plan is found by geometry.
    plan = recorder.plan(solid.copy())
    assert plan["status"] == protocol.PLAN_MAPPED
    assert [f["kind"] for f in plan["features"]] == ["pad", "fillet", "hole", "pocket"]


def test_plan_never_raises():
    recorder = Recorder()
    plan = recorder.plan(object())
    protocol.check_feature_plan(plan)
    assert plan["status"] == protocol.PLAN_UNMAPPED and plan["reasons"]
    import cadquery as cq

    plan = Recorder().plan(cq.Workplane().box(1, 1, 1).val())  # a solid the recorder never saw
    assert plan["status"] == protocol.PLAN_UNMAPPED and "recorded" in plan["reasons"][0]


def test_tracing_does_not_change_what_the_program_builds():
    for code in (PLATE, BRACKET, REVOLVED):
        _, solid = trace(code)
        assert solid.Volume() == pytest.approx(_run(code).Volume(), rel=1e-12)


def test_parameterised_source_names_the_dimensions_and_builds_the_same_part():
    plan, solid = trace(PLATE)
    source = parameterise(PLATE, plan)
    assert source.startswith("import cadquery as cq\n\n# Named dimensions")
    assert "length = 80\n" in source and "hole_diameter = 6.6\n" in source
    assert (
        ".box(length, width, height)" in source
        and ".cboreHole(hole_diameter, cbore_diameter, cbore_depth)" in source
    )
    assert ".rarray(60, 40, 2, 2)" in source  # not a dimension of the tree: left as written
    assert _run(source).Volume() == pytest.approx(solid.Volume(), rel=1e-12)
    longer = _run(source.replace("length = 80\n", "length = 100\n"))
    assert longer.BoundingBox().xlen == pytest.approx(100)
    # A negative literal keeps its sign in the code; the parameter is the positive depth.
    code = (
        'import cadquery as cq\n\nresult = cq.Workplane("XY").box(20, 20, 10).faces(">Z").workplane()'
        ".rect(5, 5).cutBlind(-4)\n"
    )
    plan, _ = trace(code)
    source = parameterise(code, plan)
    assert "cut_depth = 4\n" in source and ".cutBlind(-cut_depth)" in source
    assert _run(source).Volume() == pytest.approx(20 * 20 * 10 - 5 * 5 * 4)


def test_protocol_check_rejects_what_it_does_not_define():
    plan, _ = trace(PLATE)
    bad = {**plan, "features": [{**plan["features"][0], "colour": "red"}]}
    with pytest.raises(ValueError, match="colour"):
        protocol.check_feature_plan(bad)
    with pytest.raises(ValueError, match="kind"):
        protocol.check_feature_plan({**plan, "features": [{"kind": "sweep"}]})
    with pytest.raises(ValueError, match="reasons"):
        protocol.check_feature_plan({**plan, "status": protocol.PLAN_UNMAPPED})
    with pytest.raises(ValueError, match="undeclared"):
        protocol.check_feature_plan({**plan, "parameters": []})


def test_in_family_programs_map(tmp_path):
    """A sample of the data engine's named families, one seed each: every one maps."""
    synth = pytest.importorskip("training.synth.program")
    from training.synth.families import FAMILIES

    unmapped = {}
    for family in sorted(FAMILIES):
        for seed in range(20):  # the engine drops draws CadQuery cannot build; so do we
            program = synth.generate(seed, family=family)
            try:
                _run(program.code)
            except Exception:  # noqa: BLE001, S112 - an unlucky draw, not a tracer failure
                continue
            break
        plan, _ = trace(program.code)
        protocol.check_feature_plan(plan)
        if plan["status"] != protocol.PLAN_MAPPED:
            unmapped[family] = plan["reasons"]
    assert not unmapped, unmapped


def test_traced_inside_the_sandbox_job_runner():
    """The sandbox's own job runner (restricted namespace, policy on) hands back the same plan."""
    from model_runtime.sandbox.worker import Runner

    reply = Runner().run({"code": PLATE, "feature_plan": True, "formats": ["brep"]})
    assert reply["ok"], reply
    plan = reply["result"]["feature_plan"]
    protocol.check_feature_plan(plan)
    assert plan["status"] == protocol.PLAN_MAPPED
    assert [f["kind"] for f in plan["features"]] == ["pad", "fillet", "hole", "pocket"]
    assert plan == trace(PLATE)[0]


def test_holes_on_a_polar_array_become_one_hole_and_a_polar_pattern():
    code = (
        'import cadquery as cq\n\nresult = cq.Workplane("XY").circle(40).extrude(10).faces(">Z").workplane()'
        ".polarArray(30, 0, 360, 8).hole(5)\n"
    )
    plan, solid = trace(code)
    assert [f["kind"] for f in plan["features"]] == ["pad", "hole", "polar_pattern"]
    hole, pattern = plan["features"][1:]
    assert [p["center"] for p in hole["sketch"]["profiles"]] == [[30, 0]]
    assert pattern["originals"] == [1] and pattern["axis_dir"] == [0, 0, 1]
    assert pattern["axis_origin"] == [0, 0, 10]
    assert pattern["count"] == {"value": 8.0, "param": "polar_count"}
    source = parameterise(code, plan)
    # The radius places the first hole's sketch: no tree dimension, so it stays a literal.
    assert ".polarArray(30, 0, 360, polar_count).hole(hole_diameter)" in source
    assert _run(source.replace("polar_count = 8\n", "polar_count = 6\n")).Volume() > solid.Volume()


def test_mirror_maps_only_when_the_solid_is_all_pads():
    pads = 'result = cq.Workplane("XY").circle(10).extrude(8).translate((5, 0, 0)).mirror("YZ", union=True)'
    plan, _ = trace("import cadquery as cq\n" + pads + "\n")
    assert [f["kind"] for f in plan["features"]] == ["pad", "mirrored"]
    assert plan["features"][0]["sketch"]["plane"]["origin"] == [5, 0, 0]  # the translate, applied
    assert plan["features"][1]["originals"] == [0] and plan["features"][1]["normal"] == [1, 0, 0]
    cut = pads.replace(".translate", '.faces(">Z").workplane().hole(2).translate')
    plan, _ = trace("import cadquery as cq\n" + cut + "\n")
    assert plan["status"] == protocol.PLAN_UNMAPPED and "mirror()" in plan["reasons"][0]


def test_placed_sketches_become_sketch_profiles():
    code = """import cadquery as cq

outline = cq.Sketch().rect(30, 20).push([(8, 0)]).circle(3, mode="s")
result = cq.Workplane("XZ").placeSketch(outline).extrude(5)
"""
    plan, _ = trace(code)
    assert plan["status"] == protocol.PLAN_MAPPED, plan["reasons"]
    profiles = plan["features"][0]["sketch"]["profiles"]
    assert sorted(p["kind"] for p in profiles) == ["circle", "wire"]


def test_a_loft_between_parallel_sections():
    code = 'import cadquery as cq\n\nresult = cq.Workplane("XY").rect(30, 20).workplane(offset=10).circle(8)'
    code += ".loft()\n"
    plan, _ = trace(code)
    assert [f["kind"] for f in plan["features"]] == ["loft"]
    loft = plan["features"][0]
    assert loft["sketch"]["plane"]["origin"] == [0, 0, 0]
    assert loft["sections"][0]["plane"]["origin"] == [0, 0, 10]
    assert loft["sections"][0]["profiles"][0]["radius"]["param"] == "radius" and not loft["ruled"]
