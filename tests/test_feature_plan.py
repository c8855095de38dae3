"""The feature plan tracer, its protocol shape and the parameterised program, on real CadQuery."""

from __future__ import annotations

import math
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
    assert [f["kind"] for f in plan["features"]] == ["pad", "fillet", "hole", "linear_pattern", "pocket"]
    assert plan["volume"] == pytest.approx(solid.Volume())
    names = {p["name"]: p["value"] for p in plan["parameters"]}
    # Named after their roles: a thin base box is a plate, the rarray's numbers the holes' pattern.
    assert names == {
        "plate_length": 80,
        "plate_width": 60,
        "plate_thickness": 8,
        "fillet_radius": 5,
        "hole_spacing_x": 60,
        "hole_spacing_y": 40,
        "hole_count_x": 2,
        "hole_count_y": 2,
        "hole_diameter": 6.6,
        "cbore_diameter": 11,
        "cbore_depth": 3,
        "pocket_length": 20,
        "pocket_width": 10,
    }
    pad, fillet, hole, pattern, pocket = plan["features"]
    assert pad["midplane"] and pad["length"] == {"value": 8.0, "param": "plate_thickness"}
    rect = pad["sketch"]["profiles"][0]
    assert rect["kind"] == "rect" and rect["anchor"] == ["center", "center"] and rect["at"] == [0, 0]
    assert rect["width"]["param"] == "plate_length" and rect["height"]["param"] == "plate_width"
    assert len(fillet["edges"]) == 4 and fillet["radius"] == {"value": 5.0, "param": "fillet_radius"}
    # Holes sit on the top face, in global coordinates, drilled along -Z through everything.
    assert hole["sketch"]["plane"]["origin"][2] == pytest.approx(4) and hole["sketch"]["plane"]["normal"] == [
        0,
        0,
        1,
    ]
    # One hole at the grid's lowest corner, repeated along the sketch's x and y.
    assert [p["center"] for p in hole["sketch"]["profiles"]] == [[-30, -20]]
    assert pattern["originals"] == [2] and pattern["method"] == "cboreHole"
    assert pattern["directions"] == [
        {
            "direction": [1, 0, 0],
            "spacing": {"value": 60, "param": "hole_spacing_x"},
            "count": {"value": 2, "param": "hole_count_x"},
            "centered": True,
        },
        {
            "direction": [0, 1, 0],
            "spacing": {"value": 40, "param": "hole_spacing_y"},
            "count": {"value": 2, "param": "hole_count_y"},
            "centered": True,
        },
    ]
    assert hole["cut"] == "counterbore" and hole["depth"] is None
    assert hole["diameter"]["param"] == "hole_diameter" and hole["cut_depth"]["param"] == "cbore_depth"
    assert pocket["through_all"] and pocket["midplane"] and pocket["method"] == "cutThruAll"


def test_separate_bodies_union_and_cut_become_pads_and_pockets():
    plan, _ = trace(BRACKET)
    assert plan["status"] == protocol.PLAN_MAPPED, plan["reasons"]
    assert [f["kind"] for f in plan["features"]] == ["pad", "pad", "pocket", "fillet"]
    boss, bore = plan["features"][1], plan["features"][2]
    # extrude(10, both=True): the literal is the length on each side, and its name says so.
    assert boss["midplane"] and boss["length"] == {"value": 20.0, "param": "boss_half_height", "scale": 2.0}
    assert bore["sketch"]["plane"]["normal"] == [0, -1, 0] and bore["sketch"]["plane"]["origin"] == [0, 0, 10]
    assert bore["sketch"]["profiles"][0]["radius"]["param"] == "pocket_radius"
    assert [p["name"] for p in plan["parameters"]][:3] == ["plate_length", "plate_width", "plate_thickness"]


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
    assert [f["kind"] for f in plan["features"]] == ["pad", "fillet", "hole", "linear_pattern", "pocket"]


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
    assert "plate_length = 80\n" in source and "hole_diameter = 6.6\n" in source
    assert (
        ".box(plate_length, plate_width, plate_thickness)" in source
        and ".cboreHole(hole_diameter, cbore_diameter, cbore_depth)" in source
        and ".rarray(hole_spacing_x, hole_spacing_y, hole_count_x, hole_count_y)" in source
    )
    assert "hole_count_x = 2\n" in source  # an int, as rarray needs
    assert _run(source).Volume() == pytest.approx(solid.Volume(), rel=1e-12)
    longer = _run(source.replace("plate_length = 80\n", "plate_length = 100\n"))
    assert longer.BoundingBox().xlen == pytest.approx(100)
    # A negative literal keeps its sign in the code; the parameter is the positive depth.
    code = (
        'import cadquery as cq\n\nresult = cq.Workplane("XY").box(20, 20, 10).faces(">Z").workplane()'
        ".rect(5, 5).cutBlind(-4)\n"
    )
    plan, _ = trace(code)
    source = parameterise(code, plan)
    assert "pocket_depth = 4\n" in source and ".cutBlind(-pocket_depth)" in source
    assert _run(source).Volume() == pytest.approx(20 * 20 * 10 - 5 * 5 * 4)
    # A name the program already uses for something else stays out: its literal stays as written.
    clash = code.replace("result = ", "block_length = 3\nresult = ")
    clash = clash.replace("rect(5,", "rect(block_length + 2,")
    plan, _ = trace(clash)
    assert "block_length" in [p["name"] for p in plan["parameters"]]  # the plan's name for box's 20
    source = parameterise(clash, plan)
    assert "block_length = 20" not in source and ".box(20, block_width, block_height)" in source
    assert "pocket_depth = 4\n" in source
    assert _run(source).Volume() == pytest.approx(_run(clash).Volume())


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
    assert [f["kind"] for f in plan["features"]] == ["pad", "fillet", "hole", "linear_pattern", "pocket"]
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
    assert pattern["count"] == {"value": 8.0, "param": "hole_count"}
    source = parameterise(code, plan)
    # The radius places the first hole's sketch: no tree dimension, so it stays a literal.
    assert ".polarArray(30, 0, 360, hole_count).hole(hole_diameter)" in source
    assert _run(source.replace("hole_count = 8\n", "hole_count = 6\n")).Volume() > solid.Volume()


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


ROW = """import cadquery as cq

result = (
    cq.Workplane("XY")
    .box(120, 30, 10)
    .faces(">Z")
    .workplane()
    .rarray(20, 1, 5, 1)
    .circle(3)
    .cutBlind(-4)
)
"""


def test_a_row_of_circles_cut_on_a_rarray_becomes_one_pocket_and_a_linear_pattern():
    plan, solid = trace(ROW)
    assert [f["kind"] for f in plan["features"]] == ["pad", "pocket", "linear_pattern"]
    pocket, pattern = plan["features"][1:]
    assert [p["center"] for p in pocket["sketch"]["profiles"]] == [[-40, 0]]
    # Only the direction with more than one instance: a row along x.
    (direction,) = pattern["directions"]
    assert direction["spacing"] == {"value": 20, "param": "pocket_spacing_x"}
    assert direction["count"] == {"value": 5, "param": "pocket_count_x"}
    names = [p["name"] for p in plan["parameters"]]
    assert "pocket_spacing_y" not in names and "pocket_count_y" not in names  # count 1: no dimension
    source = parameterise(ROW, plan)
    assert ".rarray(pocket_spacing_x, 1, pocket_count_x, 1)" in source
    more = _run(source.replace("pocket_count_x = 5\n", "pocket_count_x = 6\n"))
    assert more.Volume() == pytest.approx(solid.Volume() - math.pi * 9 * 4, rel=1e-9)


@pytest.mark.parametrize(
    ("points", "pattern"),
    [
        ("rarray(20, 10, 3, 2, center=(False, True))", [(0, 20, 3, False), (1, 10, 2, True)]),
        ("pushPoints([(-20, 5), (0, 5), (20, 5)])", [(0, 20, 3, False)]),  # a regular row
        ("pushPoints([(-20, 5), (0, 5)])", None),  # two points are a pair: one sketch, as today
        ("pushPoints([(-20, 5), (0, 5), (25, 5)])", None),  # irregular
        ("pushPoints([(-20, 5), (0, 5), (0, -5)])", None),  # not every point of a grid
        ("rarray(3, 1, 4, 1)", None),  # the holes overlap: one Hole each, as today
    ],
)
def test_holes_on_regular_grids_become_a_pattern_and_anything_else_stays_as_today(points, pattern):
    code = 'import cadquery as cq\n\nresult = cq.Workplane("XY").box(80, 40, 6).faces(">Z").workplane()'
    code += f".{points}.hole(4)\n"
    plan, solid = trace(code)
    assert plan["status"] == protocol.PLAN_MAPPED, plan["reasons"]
    kinds = [f["kind"] for f in plan["features"]]
    if pattern is None:
        assert "linear_pattern" not in kinds
        profiles = sum(len(f["sketch"]["profiles"]) for f in plan["features"] if f["kind"] == "hole")
        assert profiles == (4 if "rarray" in points else len(points.split("),")))
        return
    assert kinds == ["pad", "hole", "linear_pattern"]
    directions = plan["features"][2]["directions"]
    axes = [[1, 0, 0], [0, 1, 0]]
    assert [(axes.index(d["direction"]), d["spacing"]["value"], d["count"]["value"], d["centered"])
            for d in directions] == pattern
    if "pushPoints" in points:  # no literal in the code holds a pushPoints grid's spacing
        assert all("param" not in d["spacing"] and "param" not in d["count"] for d in directions)


def test_patterns_survive_union_translate_and_mirror():
    fins = (
        'import cadquery as cq\n\nbase = cq.Workplane("XY").box(40, 20, 4, centered=(True, True, False))\n'
        'fins = cq.Workplane("XY", origin=(0, 0, 4)).rarray(10, 1, 3, 1).rect(2, 20).extrude(5)\n'
        "result = base.union(fins).faces('<Z').workplane().rarray(30, 1, 2, 1).hole(3)\n"
    )
    plan, _ = trace(fins)
    assert [f["kind"] for f in plan["features"]] == ["pad", "pad", "linear_pattern", "hole", "linear_pattern"]
    assert plan["features"][2]["originals"] == [1] and plan["features"][4]["originals"] == [3]
    # Mirrored cannot repeat a pattern on FreeCAD 0.20: the mirrored history is as without patterns.
    mirrored = fins.replace(".faces('<Z').workplane().rarray(30, 1, 2, 1).hole(3)", "")
    mirrored = mirrored.replace(
        "base.union(fins)", 'base.union(fins).translate((15, 0, 0)).mirror("YZ", union=True)'
    )
    plan, _ = trace(mirrored)
    assert plan["status"] == protocol.PLAN_MAPPED, plan["reasons"]
    assert [f["kind"] for f in plan["features"]] == ["pad", "pad", "mirrored"]
    assert len(plan["features"][1]["sketch"]["profiles"]) == 3 and plan["features"][2]["originals"] == [0, 1]
    assert plan["features"][1]["sketch"]["plane"]["origin"] == [15, 0, 4]


@pytest.mark.parametrize(
    ("body", "names"),
    [
        ("box(30, 20, 10)", ["block_length", "block_width", "block_height"]),
        ("box(5, 60, 80)", ["plate_thickness", "plate_width", "plate_height"]),
        ("rect(80, 60).extrude(8)", ["plate_length", "plate_width", "plate_thickness"]),
        ("circle(40).extrude(10)", ["disc_radius", "disc_thickness"]),
        ("circle(5).extrude(50)", ["shaft_radius", "shaft_length"]),
        ("circle(10).extrude(12)", ["cylinder_radius", "cylinder_height"]),
        ("polyline([(0, 0), (10, 0), (0, 10)]).close().extrude(4)", ["extrude_length"]),  # no clear role
    ],
)
def test_base_solid_dimensions_are_named_after_its_shape(body, names):
    plan, _ = trace(f'import cadquery as cq\n\nresult = cq.Workplane("XY").{body}\n')
    assert [p["name"] for p in plan["parameters"]] == names


def test_names_are_unique_identifiers_in_program_order():
    code = (
        'import cadquery as cq\n\nresult = cq.Workplane("XY").box(60, 40, 5).faces(">Z").workplane()'
        '.center(-15, 0).hole(8).faces(">Z").workplane().center(20, 0).hole(4).faces(">Z").workplane()'
        '.center(-20, 10).circle(3).extrude(6)\n'
    )
    plan, _ = trace(code)
    names = [p["name"] for p in plan["parameters"]]
    assert names == [
        "plate_length", "plate_width", "plate_thickness", "hole_diameter", "hole_diameter_2", "boss_radius",
        "boss_height",
    ]
    assert all(n.isidentifier() for n in names) and len(set(names)) == len(names)


def test_a_hole_on_the_base_solids_axis_is_a_bore():
    code = (
        'import cadquery as cq\n\nresult = cq.Workplane("XY").circle(25).extrude(9).faces(">Z").workplane()'
        '.polarArray(20.5, 0, 360, 6).hole(3).faces(">Z").workplane().hole(12, 5)\n'
    )
    plan, _ = trace(code)
    names = [p["name"] for p in plan["parameters"]]
    assert names == [
        "disc_radius", "disc_thickness", "hole_count", "hole_diameter", "bore_diameter", "bore_depth"
    ]
