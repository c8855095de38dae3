"""Pictures that are not FreeCAD's plain isometric view (model_runtime/picture/views.py): straight
views (Front, Top, Right) and pictures turned in their plane, read, set upright and searched from the
view they show; FreeCAD's own isometric renders are left exactly as they are."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image

from model_runtime import protocol
from model_runtime.picture import views
from model_runtime.picture.envelope import Silhouette2D
from model_runtime.picture.similarity import compare
from model_runtime.render import RenderStyle, render

EVAL = Path(__file__).resolve().parent.parent / "training" / "eval_oof"
WHITE = RenderStyle(background_top=(1.0, 1.0, 1.0), background_bottom=(1.0, 1.0, 1.0))
CYLINDER = "import cadquery as cq\nresult = cq.Workplane('XY').circle(10).extrude(30)\n"


def _l_bracket():
    import cadquery as cq

    profile = [(0, 0), (40, 0), (40, 5), (5, 5), (5, 30), (0, 30)]
    return cq.Workplane("XZ").polyline(profile).close().extrude(-25)


def _u_channel():
    import cadquery as cq

    profile = [(0, 0), (30, 0), (30, 20), (26, 20), (26, 4), (4, 4), (4, 20), (0, 20)]
    return cq.Workplane("YZ").polyline(profile).close().extrude(50)


def _turned(picture: Image.Image, degrees: float) -> Image.Image:
    """``picture`` turned anticlockwise like a tilted photo of it on white paper."""
    return picture.rotate(degrees, Image.Resampling.BICUBIC, fillcolor=(255, 255, 255))


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def pool():
    from model_runtime.sandbox import SandboxPool

    with SandboxPool(workers=2, timeout_s=20.0) as sandbox:
        yield sandbox


def test_freecad_isometric_renders_are_left_alone():
    names = sorted(EVAL.glob("*.png"))
    assert len(names) == 49
    for path in names:
        reading = views.read_view(Image.open(path).convert("RGB"))
        assert reading.plain, (path.name, reading)  # a false turn or view would cost the part its score
        assert views.upright(Image.open(path), reading.rotation_deg) is not None


@pytest.mark.parametrize("name", ["front", "top", "right"])
def test_straight_views_are_recognised(name):
    for part in (_l_bracket(), _u_channel()):
        reading = views.read_view(render(part, size=320, view=views.STRAIGHT_VIEWS[name].view))
        assert reading.straight and reading.rotation_deg == 0.0, reading
        assert reading.render_view() == views.STRAIGHT_VIEWS[views.STRAIGHT].view
        assert "depth" in reading.message()


@pytest.mark.parametrize("degrees", [7.0, -7.0, 12.0, 3.0])
def test_a_turned_isometric_picture_is_read_and_set_upright(degrees):
    for part in (_l_bracket(), _u_channel()):
        plain = render(part, size=320, style=WHITE)
        reading = views.read_view(_turned(plain, degrees))
        assert reading.name == views.ISOMETRIC
        assert reading.rotation_deg == pytest.approx(degrees, abs=1.0)
        upright = views.upright(_turned(plain, degrees), reading.rotation_deg)
        assert views.read_view(upright).plain  # turned back, it reads like the render it came from
        assert compare(plain, upright).silhouette_iou > 0.93


def test_a_turned_straight_view_is_both():
    front = views.STRAIGHT_VIEWS["front"].view
    picture = _turned(render(_l_bracket(), size=320, style=WHITE, view=front), 7.0)
    reading = views.read_view(picture)
    assert reading.straight and reading.rotation_deg == pytest.approx(7.0, abs=1.0)
    assert "turned 7" in reading.message() and "straight view" in reading.message()


def test_a_slight_or_unclear_turn_is_left_alone():
    picture = render(_l_bracket(), size=320, style=WHITE)
    assert views.read_view(_turned(picture, 1.0)).rotation_deg == 0.0  # under MIN_TURN_DEG
    assert views.read_view(Image.new("RGB", (64, 64), (255, 255, 255))).plain  # no part at all


def test_straight_envelopes_run_and_one_is_the_profile(pool):
    from model_runtime.metrics import iou

    bracket = _l_bracket()
    front = views.STRAIGHT_VIEWS["front"].view
    picture = render(bracket, size=224, view=front)
    found = {h.name: h for h in views.straight_hypotheses(picture, "front")}
    assert {"box", "extrude_y"} <= set(found)
    runs = {name: pool.run(h.code) for name, h in found.items()}  # every hypothesis is a valid program
    profile, box = runs["extrude_y"], runs["box"]
    # seen from the view it was read in, the extruded profile is the picture's outline (at the
    # comparison's 64 px grid a leg one pixel thicker already costs 0.1 of silhouette IoU)
    seen = compare(picture, render(profile.shape(), size=224, view=front))
    assert seen.silhouette_iou > 0.85 and seen.edge_f1 > 0.9
    assert iou(profile.shape(), bracket.val()) > iou(box.shape(), bracket.val()) + 0.3
    b = profile.bbox
    depth, width = b[4] - b[1], b[3] - b[0]
    assert depth == pytest.approx(views.DEPTH_SHARE["Y"] * width, rel=0.05)  # along Y: the view's axis


def test_a_turned_part_seen_from_the_front_is_revolved(pool):
    import cadquery as cq

    from model_runtime.metrics import iou

    shaft = (cq.Workplane("XZ").polyline([(0, 0), (20, 0), (20, 5), (8, 5), (8, 30), (0, 30)]).close()
             .revolve(360, (0, 0, 0), (0, 1, 0)))
    picture = render(shaft, size=224, view=views.STRAIGHT_VIEWS["front"].view)
    found = {h.name: h for h in views.straight_hypotheses(picture, "front")}
    assert "revolve_z" in found
    assert iou(pool.run(found["revolve_z"].code).shape(), shaft.val()) > 0.85


def test_the_pipeline_reads_a_front_view_from_the_front(pool):
    from model_runtime.metrics import iou
    from model_runtime.pipeline import GenerateRequest, Pipeline
    from tests.test_pipeline import ScriptedBackend

    bracket = _l_bracket()
    front = views.STRAIGHT_VIEWS["front"].view
    picture = render(bracket, size=320, view=front)
    result = Pipeline(ScriptedBackend([CYLINDER]), pool).run(
        GenerateRequest(image=_png(picture), n=1, evaluations=16, budget_s=None))
    assert result.view.name == "front" and result.view.rotation_deg == 0.0
    assert result.verdict["guess"] and "depth along the view is a guess" in result.verdict["message"]
    tried = {item.source: item for item in result.search.tried}
    box = tried["envelope:box"].exec_result.shape()
    assert iou(result.exec_result.shape(), bracket.val()) > iou(box, bracket.val()) + 0.3
    # the answer and the model's candidate were rendered from the front to be compared
    assert compare(picture, render(result.exec_result.shape(), size=224, view=front)).silhouette_iou > 0.85
    body = result.to_dict()
    assert set(body) <= set(protocol.JOB_RESULT_FIELDS)
    assert set(body["view"]) == set(protocol.VIEW_FIELDS) and body["view"]["name"] == "front"


def test_the_pipeline_sets_a_turned_picture_upright_before_the_model_sees_it(pool):
    from model_runtime.pipeline import GenerateRequest, Pipeline
    from tests.test_pipeline import ScriptedBackend

    backend = ScriptedBackend([CYLINDER])
    picture = _turned(render(_l_bracket(), size=320, style=WHITE), -7.0)
    request = GenerateRequest(image=_png(picture), n=1, evaluations=12, budget_s=None)
    result = Pipeline(backend, pool).run(request)
    assert result.view.name == views.ISOMETRIC
    assert result.view.rotation_deg == pytest.approx(-7.0, abs=1.0)
    assert "turned 7" in result.verdict["message"] and "clockwise" in result.to_dict()["view"]["message"]
    assert views.read_view(backend.seen_image).plain  # the model saw the part upright


def test_the_workbench_says_how_the_picture_was_read():
    from freecad_workbench.jobs import JobState

    state = JobState()
    state.result = {"verdict": {"guess": False, "score": 0.8, "message": "fine"},
                    "view": {"name": "isometric", "rotation_deg": -7.0,
                             "message": "the picture was turned 7.0 deg clockwise and was set upright"}}
    assert state.view_note() == "The picture was turned 7.0 deg clockwise and was set upright."
    state.result["verdict"]["guess"] = True  # the verdict already says it: no second note
    assert state.view_note() == ""
    state.result = {"view": {"name": "isometric", "rotation_deg": 0.0, "message": ""}}
    assert state.view_note() == ""


def test_a_view_the_user_names_is_taken_as_said(pool):
    import cadquery as cq

    from model_runtime.metrics import iou

    plate = cq.Workplane("XY").box(60, 40, 8)
    picture = render(plate, size=224, view=views.STRAIGHT_VIEWS["top"].view)
    reading = views.read_view(picture, "top")
    assert reading.name == "top" and reading.given and "Top view, as asked" in reading.message()
    found = {h.name: h for h in views.straight_hypotheses(picture, "top")}
    box = pool.run(found["box"].code)
    b = box.bbox
    assert (b[3] - b[0]) / (b[4] - b[1]) == pytest.approx(1.5, rel=0.05)  # the plan read on XY
    assert iou(box.shape(), plate.val()) > 0.25  # the depth, Z, is the guess: 0.4 of 60 for 8
    with pytest.raises(ValueError, match="unknown view"):
        views.read_view(picture, "sideways")
    from model_runtime.pipeline import GenerateRequest, PipelineError

    with pytest.raises(PipelineError, match="view must be one of"):
        GenerateRequest(image=b"png", view="sideways")


def test_holes_seen_through_a_straight_view_are_cut(pool):
    import cadquery as cq

    plate = (cq.Workplane("XY").box(60, 40, 8).faces(">Z").workplane()
             .rect(44, 24, forConstruction=True).vertices().hole(6).faces(">Z").workplane().hole(14))
    picture = render(plate, size=320, view=views.STRAIGHT_VIEWS["top"].view)
    sil = Silhouette2D.of(picture)
    holes = sorted(d for _, d in views.round_holes(sil))
    scale = sil.width / 60.0  # work pixels per millimetre
    assert len(holes) == 5
    assert holes[0] == pytest.approx(6 * scale, rel=0.15) and holes[-1] == pytest.approx(14 * scale, rel=0.15)
    found = {h.name: h for h in views.straight_hypotheses(picture, "top")}
    profile = pool.run(found["extrude_z"].code)
    assert profile.n_faces == 6 + 5  # a block with five round holes through it
    seen = compare(picture, render(profile.shape(), size=320, view=views.STRAIGHT_VIEWS["top"].view))
    plain = compare(picture, render(pool.run(found["box"].code).shape(), size=320,
                                    view=views.STRAIGHT_VIEWS["top"].view))
    assert seen.score > plain.score + 0.05  # the holes show in the render as in the picture
