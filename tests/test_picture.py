"""The picture search (model_runtime/picture): envelopes read from a silhouette, instructions read as
constraints, the search's budget, its guard against the envelope, edits and rounding."""

from __future__ import annotations

import threading

import pytest

from model_runtime.picture import envelope, instruction
from model_runtime.picture.search import Budget, Search, _nice, _tunable, search, verdict
from model_runtime.picture.similarity import Silhouette


@pytest.fixture(scope="module")
def pool():
    from model_runtime.sandbox import SandboxPool

    with SandboxPool(workers=2, timeout_s=20.0) as sandbox:
        yield sandbox


def _render(shape, size=224):
    from model_runtime.render import render

    return render(shape, size=size)


def _sizes(executed):
    b = executed.bbox
    return sorted([b[3] - b[0], b[4] - b[1], b[5] - b[2]])


def test_the_box_read_from_a_box_has_its_proportions(pool):
    import cadquery as cq

    picture = _render(cq.Workplane("XY").box(40, 20, 10))
    found = {h.name: h for h in envelope.hypotheses(picture)}
    box = pool.run(found["box"].code)
    small, middle, large = _sizes(box)
    assert large / small == pytest.approx(4.0, rel=0.15) and middle / small == pytest.approx(2.0, rel=0.15)
    assert found["box"].hull_fit > 0.95


def test_a_round_part_reads_as_round_and_a_block_does_not():
    import cadquery as cq

    disc = _render(cq.Workplane("XY").circle(20).extrude(8))
    block = _render(cq.Workplane("XY").box(40, 20, 10))
    assert envelope.roundness(disc)["Z"] >= envelope.ROUND_FIT
    assert max(envelope.roundness(block).values()) < envelope.ROUND_FIT


def test_every_envelope_program_runs_and_an_l_profile_is_recovered(pool):
    import cadquery as cq

    from model_runtime.metrics import iou

    bracket = (cq.Workplane("XZ").polyline([(0, 0), (40, 0), (40, 5), (5, 5), (5, 30), (0, 30)])
               .close().extrude(-25))
    picture = _render(bracket)
    hypotheses = envelope.hypotheses(picture)
    names = {h.name for h in hypotheses}
    assert {"box", "extrude_x", "extrude_y", "extrude_z"} <= names
    best = 0.0
    for h in hypotheses:
        executed = pool.run(h.code)  # every hypothesis is a valid program
        best = max(best, iou(executed.shape(), bracket.val()))
    box_iou = iou(pool.run(next(h.code for h in hypotheses if h.name == "box")).shape(), bracket.val())
    assert best > box_iou + 0.2  # the extruded silhouette sees the L the box cannot


def test_nothing_to_read_from_a_blank_picture():
    from PIL import Image

    assert envelope.hypotheses(Image.new("RGB", (100, 100), (255, 255, 255))) == []


def test_instructions_become_constraints():
    c = instruction.parse("a plate 100 x 60 x 5 mm with 4 M6 holes")
    assert c.hole_count == 4 and c.hole_diameter_mm == pytest.approx(6.6)
    assert c.sizes_mm == [100, 60, 5] and c.largest_mm == 100
    c = instruction.parse("two 8 mm holes, 80 mm long")
    assert c.hole_count == 2 and c.hole_diameter_mm == 8 and c.sizes_mm == [80]
    assert instruction.parse("make it nice").empty and instruction.parse(None).empty


def test_numbers_round_to_sensible_values():
    assert _nice(3.004) == 3 and _nice(12.37) == 12 and _nice(4.26) == 4.5 and _nice(1.234) == 1.2
    code = ("import cadquery as cq\n\n# envelope\nlength = 40.3\n"
            "result = cq.Workplane('XY').box(length, 2, 3)\n")
    assert [p.value for p in _tunable(code, True)] == [40.3]
    assert sorted(p.value for p in _tunable(code, False)) == [2, 3, 40.3]


def test_verdict_says_when_it_is_a_guess():
    assert verdict(0.4)["guess"] and "guess" in verdict(0.4)["message"] and "0.40" in verdict(0.4)["message"]
    assert not verdict(0.9)["guess"]


def _search_parts(pool, truth_code):
    from model_runtime.render import render

    truth = pool.run(truth_code)
    picture = render(truth.shape(), size=224)
    reference = Silhouette.of(picture)

    def draw(shape):
        return render(shape, size=128)

    return picture, reference, draw


def test_the_search_is_reproducible_in_evaluations_and_never_below_its_envelope(pool):
    truth = ("import cadquery as cq\n\nresult = cq.Workplane('XY').box(60, 40, 6)"
             ".faces('>Z').workplane().hole(14)\n")
    wrong = "import cadquery as cq\n\nresult = cq.Workplane('XY').sphere(10)\n"
    picture, reference, draw = _search_parts(pool, truth)
    seeds = [(wrong, "model:0", pool.run(wrong))]
    events = []
    runs = [search(picture, reference, seeds, pool.run, draw, Budget(evaluations=30), workers=2,
                   on_best=lambda item, spent: events.append((item.source, item.score, spent)))
            for _ in range(2)]
    first, second = runs
    assert first.evaluations <= 30 and first.best.score >= first.envelope.score
    assert first.best.score > 0.8 and not first.best.source.startswith("model")
    assert (first.best.code, first.evaluations) == (second.best.code, second.evaluations)
    # every improvement was reported, in order, the last one being the answer
    scores = [s for _, s, _ in events[: len(events) // 2]]
    assert scores == sorted(scores)
    assert first.to_dict()["envelope_score"] == pytest.approx(first.envelope.score)


def test_an_edit_adds_the_hole_the_picture_shows(pool):
    from model_runtime.picture import edits

    truth = ("import cadquery as cq\n\nresult = cq.Workplane('XY').box(60, 40, 6)"
             ".faces('>Z').workplane().hole(16)\n")
    plain = "import cadquery as cq\n\nresult = cq.Workplane('XY').box(60, 40, 6)\n"
    picture, reference, draw = _search_parts(pool, truth)
    s = Search(reference, pool.run, draw, Budget(evaluations=20), workers=2)
    start = s.adopt(plain, "model:0", pool.run(plain), faces=6)
    edits.improve(s, picture)
    assert s.best is not start and "hole" in s.best.code and s.best.score > start.score + 0.02


def test_an_l_plate_is_extruded_as_tall_as_its_ends_stand(pool):
    """An L has no top corner at the back, so the whole outline reads it flat; the vertical edges at
    its ends give its height, and that extrusion is among the hypotheses."""
    from model_runtime.picture.envelope import hypotheses
    from model_runtime.render import render

    plate = ("import cadquery as cq\n\nresult = cq.Workplane('XY')"
             ".polyline([(0, 0), (60, 0), (60, 40), (45, 40), (45, 12), (0, 12)]).close().extrude(8)\n")
    found = {h.name: _sizes(pool.run(h.code)) for h in hypotheses(render(pool.run(plate).shape(), size=448))}
    height = {name: sizes[0] / sizes[2] for name, sizes in found.items()}
    assert height["extrude_z_sides"] == pytest.approx(8 / 60, rel=0.25)
    assert height["extrude_z"] < 0.5 * 8 / 60


BLOCK = "import cadquery as cq\n\nresult = cq.Workplane('XY').box(60, 40, 30)\n"
# a hole on each face the isometric camera sees, off centre: (face, local x, local y, diameter)
DRILLED = [(">Z", 12, 6, 8), (">X", -8, 5, 7), ("<Y", -15, -4, 9)]


def _drilled_block() -> str:
    return BLOCK + "".join(f"result = result.faces('{face}')"
                           ".workplane(centerOption='ProjectedOrigin', origin=(0, 0, 0))"
                           f".pushPoints([({x}, {y})]).hole({d})\n" for face, x, y, d in DRILLED)


def test_the_circles_the_picture_draws_become_holes_where_it_draws_them(pool):
    """Each visible face's hole is read from the picture's edge lines (face, centre, diameter) and
    placed back on a plain block at its own face and position."""
    import re

    from model_runtime.picture import edits
    from model_runtime.picture.lines import drawn_features
    from model_runtime.render import render

    picture = render(pool.run(_drilled_block()).shape(), size=448)
    drawn = drawn_features(picture)
    assert sorted(c.face for c in drawn.circles) == ["X", "Y", "Z"]

    class Plain:
        exec_result = pool.run(BLOCK)

    found = dict(edits.drawn_edits(Plain, drawn))
    assert sorted(found) == ["drawn_hub_z", "drawn_x", "drawn_y", "drawn_z"]  # the top circle may top a hub
    for face, x, y, d in DRILLED:
        lines = found[f"drawn_{'zxy'['>Z>X<Y'.index(face) // 2]}"]
        assert f'faces("{face}")' in lines
        (px, py), = [tuple(map(float, p)) for p in re.findall(r"\((-?[\d.]+), (-?[\d.]+)\)", lines)]
        diameter = float(re.search(r"hole_diameter = ([\d.]+)", lines).group(1))
        assert abs(px - x) < 1.5 and abs(py - y) < 1.5 and diameter == pytest.approx(d, rel=0.2), lines
        # the edit runs, and drills its face
        assert pool.run(BLOCK + lines).n_faces == 7


def test_holes_under_a_hub_are_placed_on_the_face_they_are_drawn_on(pool):
    """A flange's bolt holes lie on the disc, far below the hub's top: each is placed where its line
    of sight meets the disc, not on the part's top plane (which would shift them by the hub's height)."""
    import re

    from model_runtime.picture import edits
    from model_runtime.picture.lines import drawn_features
    from model_runtime.render import render

    flange = ("import cadquery as cq\n\nresult = cq.Workplane('XY').circle(40).extrude(8)"
              ".faces('>Z').workplane().circle(15).extrude(25)\n")
    bolts = [(30, 0), (0, 30), (-30, 0), (0, -30)]
    drilled = flange + f"result = result.faces('<Z').workplane().pushPoints({bolts}).hole(8)\n"
    drawn = drawn_features(render(pool.run(drilled).shape(), size=448))

    class Plain:
        exec_result = pool.run(flange)

    lines = dict(edits.drawn_edits(Plain, drawn))["drawn_z"]
    placed = [tuple(map(float, p)) for p in re.findall(r"\((-?[\d.]+), (-?[\d.]+)\)", lines)]
    assert len(placed) == 4, lines
    for x, y in placed:  # the face '<Z' workplane mirrors Y: compare without the sign
        assert min(abs(abs(x) - abs(bx)) + abs(abs(y) - abs(by)) for bx, by in bolts) < 2.0, lines


def test_the_slots_the_picture_draws_are_cut_where_it_draws_them(pool):
    """A slot along X and one along Y through a plate: each read from the drawing (a long region
    that shows depth), and cut back at its own centre, direction and size."""
    import re

    from model_runtime.picture import edits
    from model_runtime.picture.lines import drawn_features
    from model_runtime.render import render

    plate = "import cadquery as cq\n\nresult = cq.Workplane('XY').box(80, 50, 6)\n"
    slots = [(-15, 10, 30, 8, 0), (22, -8, 24, 6, 90)]
    slotted = plate + "".join(f"result = result.faces('>Z').workplane(origin=(0, 0, 0)).center({x}, {y})"
                              f".slot2D({length}, {width}, {angle}).cutThruAll()\n"
                              for x, y, length, width, angle in slots)
    drawing = drawn_features(render(pool.run(slotted).shape(), size=448))
    assert len(drawing.slots) == 2 and drawing.circles == []

    class Plain:
        exec_result = pool.run(plate)

    lines = dict(edits.drawn_edits(Plain, drawing))["drawn_z"]
    cuts = re.findall(r"pushPoints\(\[\((-?[\d.]+), (-?[\d.]+)\)\]\)\.slot2D\((\w+), (\w+), (\d+)\)", lines)
    named = dict(re.findall(r"^(\w+) = ([\d.]+)$", lines, re.M))
    read = sorted((float(x), float(y), float(named[length]), float(named[width]), int(angle))
                  for x, y, length, width, angle in cuts)
    for (x, y, length, width, angle), (rx, ry, rl, rw, ra) in zip(sorted(slots), read, strict=True):
        assert (ra, abs(rx - x) < 2, abs(ry - y) < 2) == (angle, True, True), lines
        assert rl == pytest.approx(length, rel=0.2) and rw == pytest.approx(width, rel=0.3), lines
    assert pool.run(plate + lines).volume < pool.run(plate).volume


def test_a_square_window_and_a_pocket_are_read_as_rectangles_not_holes(pool):
    """A square window's moments are a disc's: its corners (it fills its box on the face's plane) make
    it a rectangle, cut through since the backdrop shows through it; a pocket with a floor is cut blind."""
    from model_runtime.picture import edits
    from model_runtime.picture.lines import drawn_features
    from model_runtime.render import render

    plate = "import cadquery as cq\n\nresult = cq.Workplane('XY').box(80, 50, 10)\n"
    top = "result = result.faces('>Z').workplane(origin=(0, 0, 0))"
    cut = (plate + f"{top}.center(-20, 0).rect(16, 16).cutThruAll()\n"
           f"{top}.center(15, 10).rect(24, 12).cutBlind(-4)\n")
    drawing = drawn_features(render(pool.run(cut).shape(), size=448))
    assert drawing.circles == []
    kinds = sorted((s.rounded, s.through, s.along) for s in drawing.slots)
    assert kinds == [(False, False, 0), (False, True, 0)], drawing.slots

    class Plain:
        exec_result = pool.run(plate)

    lines = dict(edits.drawn_edits(Plain, drawing))["drawn_z"]
    assert "rect(window_length, window_width).cutThruAll()" in lines
    assert "rect(pocket_length, pocket_width).cutBlind(-pocket_depth)" in lines
    assert pool.run(plate + lines).n_faces == pool.run(cut).n_faces


def test_plain_parts_draw_no_circles(pool):
    """A cylinder's top is an ellipse too, but the outline closes it: no hole is read there."""
    from model_runtime.picture.lines import drawn_features
    from model_runtime.render import render

    disc = "import cadquery as cq\n\nresult = cq.Workplane('XY').circle(20).extrude(15)\n"
    plate = "import cadquery as cq\n\nresult = cq.Workplane('XY').box(60, 40, 6).edges('|Z').fillet(5)\n"
    for code in (BLOCK, disc, plate):
        assert drawn_features(render(pool.run(code).shape(), size=448)).circles == [], code


def test_the_search_drills_the_drawn_holes_into_the_plain_envelope(pool):
    """From a model answer with no holes, the search ends with the picture's four holes in their
    places (a plate's bolt pattern off centre, which no template edit has)."""
    from model_runtime.metrics import iou
    from model_runtime.render import render

    truth = ("import cadquery as cq\n\nresult = cq.Workplane('XY').box(80, 50, 8)"
             ".faces('>Z').workplane().pushPoints([(-30, -15), (-30, 15), (0, 15), (25, -10)]).hole(8)\n")
    plain = "import cadquery as cq\n\nresult = cq.Workplane('XY').box(80, 50, 8)\n"
    picture = render(pool.run(truth).shape(), size=448)
    seeds = [(plain, "model:0", pool.run(plain))]
    found = search(picture, Silhouette.of(picture), seeds, pool.run, lambda shape: render(shape, size=128),
                   Budget(evaluations=30), workers=2)
    assert "drawn_z" in found.best.source, found.steps
    assert found.best.exec_result.n_faces == 10
    answer, true = found.best.exec_result.shape(), pool.run(truth).shape()
    assert iou(answer, true) > iou(pool.run(plain).shape(), true) + 0.01


def test_a_cancel_keeps_the_best_so_far(pool):
    truth = "import cadquery as cq\n\nresult = cq.Workplane('XY').box(60, 40, 6)\n"
    picture, reference, draw = _search_parts(pool, truth)
    cancel = threading.Event()
    seeds = [(truth, "model:0", pool.run(truth))]
    found = search(picture, reference, seeds, pool.run, draw, Budget(evaluations=50),
                   cancelled=cancel.is_set, on_best=lambda item, spent: cancel.set())
    assert found.stopped == "cancelled" and found.best is not None and found.evaluations <= 2


def _odd_pictures():
    """A photo-like shot (textured backdrop, shadow, slight rotation), a line sketch, two parts."""
    import cadquery as cq
    import numpy as np
    from PIL import Image, ImageDraw, ImageFilter

    from model_runtime.render import RenderStyle, render

    part = cq.Workplane("XY").box(50, 30, 8).faces(">Z").workplane().hole(10)
    white = RenderStyle(background_top=(1.0, 1.0, 1.0), background_bottom=(1.0, 1.0, 1.0))
    shot = render(part, size=224, style=white).convert("RGB")
    photo = Image.new("RGB", (300, 260), (180, 170, 150))
    ImageDraw.Draw(photo).ellipse((60, 150, 260, 230), fill=(120, 115, 100))  # a shadow
    photo.paste(shot.rotate(6, fillcolor=(255, 255, 255)), (40, 10),
                mask=Image.fromarray((np.asarray(shot.convert("L")) < 250).astype(np.uint8) * 255)
                .rotate(6))
    noise = np.random.default_rng(0).normal(0, 6, (260, 300, 3))
    photo = Image.fromarray(np.clip(np.asarray(photo, float) + noise, 0, 255).astype(np.uint8))
    edges = shot.convert("L").filter(ImageFilter.FIND_EDGES)
    lines = np.where(np.asarray(edges) > 40, 0, 255).astype(np.uint8)
    lines[:3], lines[-3:], lines[:, :3], lines[:, -3:] = 255, 255, 255, 255  # no frame around the sketch
    sketch = Image.fromarray(lines).convert("RGB")
    two = Image.new("RGB", (448, 224), (255, 255, 255))
    two.paste(shot, (0, 0))
    two.paste(render(cq.Workplane("XY").circle(10).extrude(30), size=224, style=white), (224, 0))
    return {"photo": photo, "sketch": sketch, "two_parts": two,
            "blank": Image.new("RGB", (200, 200), (250, 250, 250))}


@pytest.mark.parametrize("kind", ["photo", "sketch", "two_parts", "blank"])
def test_odd_pictures_give_a_part_or_a_plain_message(pool, kind):
    from model_runtime.pipeline import GenerateRequest, Pipeline, PipelineError
    from tests.test_pipeline import ScriptedBackend

    picture = _odd_pictures()[kind]
    pipeline = Pipeline(ScriptedBackend(["I cannot read that."]), pool)
    try:
        result = pipeline.run(GenerateRequest(image=picture, n=1, evaluations=12))
    except PipelineError as exc:  # only when nothing at all stands out from the background
        assert kind == "blank" and "background" in exc.message
        return
    assert result.exec_result.volume > 0 and result.verdict["message"]
    assert result.search.evaluations <= 13


def test_a_job_cancelled_during_the_search_is_done_with_the_best_so_far():
    from model_runtime import protocol
    from model_runtime.jobs import JobManager

    started = threading.Event()

    def runner(body, emit, cancel):
        started.set()
        cancel.wait(5)
        if body.get("kind") == "search":  # the pipeline stopped its search and kept the best
            return {"code": "best so far", "search": {"stopped": "cancelled"}}
        return {"code": "finished anyway"}

    manager = JobManager(runner)
    try:
        for kind, status in (("search", protocol.JOB_DONE), ("other", protocol.JOB_CANCELLED)):
            started.clear()
            job = manager.submit({"kind": kind})
            started.wait(5)
            manager.cancel(job.id)
            events = list(manager.events(job.id, poll_s=0.05))
            assert manager.get(job.id).status == status
            if status == protocol.JOB_DONE:
                assert events[-1]["type"] == protocol.EVENT_RESULT
                assert events[-1]["result"]["code"] == "best so far"
    finally:
        manager.close()


def test_the_lowest_corner_splits_the_width_into_x_and_y():
    import cadquery as cq

    picture = _render(cq.Workplane("XY").box(60, 20, 8).edges("|Z").fillet(3))
    sil = envelope.Silhouette2D.of(picture)
    assert envelope.lowest_point_share(sil.mask) == pytest.approx(0.75, abs=0.02)
    (a, b, _), _ = envelope.fit_box(sil)
    assert a / (a + b) == pytest.approx(0.75, abs=0.02)


def test_the_edge_lines_show_an_open_top_and_its_wall():
    import cadquery as cq

    from model_runtime.picture.lines import open_top

    solid = cq.Workplane("XY").box(60, 40, 25)
    tray = solid.faces(">Z").shell(-2)
    share = open_top(_render(tray, size=448))
    assert share is not None and share == pytest.approx(2 / 100, rel=0.35)
    assert open_top(_render(solid, size=448)) is None
    assert open_top(_render(cq.Workplane("XY").box(60, 40, 4).faces(">Z").workplane().hole(12), 448)) is None


def test_a_shell_edit_hollows_the_box_the_picture_shows_open(pool):
    import cadquery as cq

    from model_runtime.picture import edits
    from model_runtime.render import render

    truth = "import cadquery as cq\n\nresult = cq.Workplane('XY').box(60, 40, 25).faces('>Z').shell(-2)\n"
    plain = "import cadquery as cq\n\nlength = 60\nwidth = 40\nheight = 25\n" \
            "result = cq.Workplane('XY').box(length, width, height)\n"
    picture = render(pool.run(truth).shape(), size=448)
    s = Search(Silhouette.of(picture), pool.run, lambda shape: render(shape, size=128),
               Budget(evaluations=20), workers=2)
    start = s.adopt(plain, "envelope:box", pool.run(plain), named_only=True)
    edits.improve(s, picture)
    assert s.best.source.startswith("envelope:box+open_top")
    assert s.best.score > start.score + edits.EDIT_MARGIN
    assert "length = 60\nwidth = 40\nheight = 25\n" in s.best.code  # the envelope's numbers stay as read
    hollow = s.best.exec_result.shape()
    assert hollow.Volume() < 0.5 * cq.Workplane("XY").box(60, 40, 25).val().Volume()


def test_a_boss_and_posts_rise_from_the_plate_the_envelope_read(pool):
    from model_runtime.picture import edits
    from model_runtime.render import render

    parts = {  # a flange with its hub; a board carrier with its standoffs
        "centre_boss": (8, ".faces('>Z').workplane().circle(15).extrude(14)"),
        "corner_posts": (4, ".faces('>Z').workplane().rect(48, 36, forConstruction=True).vertices()"
                            ".circle(3).extrude(8)"),
        # a bearing seat: the boss is bored through, plate and all; the bore the picture draws places it
        "drawn_hub_z": (8, ".faces('>Z').workplane().circle(20).extrude(14)"
                           ".faces('>Z').workplane().hole(24)"),
    }
    for name, (thickness, feature) in parts.items():
        plain = (f"import cadquery as cq\n\nlength = 80\nwidth = 60\nheight = {thickness}\n"
                 "result = cq.Workplane('XY').box(length, width, height)\n")
        truth = f"import cadquery as cq\n\nresult = cq.Workplane('XY').box(80, 60, {thickness}){feature}\n"
        picture = render(pool.run(truth).shape(), size=448)
        s = Search(Silhouette.of(picture), pool.run, lambda shape: render(shape, size=128),
                   Budget(evaluations=40), workers=2)
        wrong = "import cadquery as cq\n\nresult = cq.Workplane('XY').sphere(30)\n"
        s.adopt(wrong, "model:0", pool.run(wrong))
        start = s.adopt(plain, "envelope:box", pool.run(plain), named_only=True)
        edits.improve(s, picture)
        assert s.best.source.startswith(f"envelope:box+{name}"), (name, s.best.source)
        assert s.best.score > start.score + 0.02
        bbox = s.best.exec_result.bbox
        assert bbox[5] - bbox[2] > thickness + 4  # the feature stands on the plate


def test_an_edit_that_helped_but_lost_goes_on_top_of_the_winner(pool):
    """A board carrier with two holes and four standoffs: the drawn holes and the posts each beat the
    plain plate; the holes win the first round, and the posts are stacked on them in the second."""
    from model_runtime.picture import edits
    from model_runtime.render import render

    plain = ("import cadquery as cq\n\nlength = 80\nwidth = 60\nheight = 4\n"
             "result = cq.Workplane('XY').box(length, width, height)\n")
    truth = ("import cadquery as cq\n\nresult = cq.Workplane('XY').box(80, 60, 4)"
             ".faces('>Z').workplane().pushPoints([(-20, 0), (20, 0)]).hole(10)"
             ".faces('>Z').workplane().rect(48, 36, forConstruction=True).vertices().circle(3).extrude(8)\n")
    picture = render(pool.run(truth).shape(), size=448)
    s = Search(Silhouette.of(picture), pool.run, lambda shape: render(shape, size=128),
               Budget(evaluations=40), workers=2)
    s.adopt(plain, "envelope:box", pool.run(plain), named_only=True)
    edits.improve(s, picture)
    steps = s.best.source.split("+")
    assert "drawn_z" in steps and "corner_posts" in steps, s.best.source


def test_a_time_cap_spent_before_any_envelope_still_gives_the_box(pool):
    truth = "import cadquery as cq\n\nresult = cq.Workplane('XY').box(60, 40, 6)\n"
    picture, reference, draw = _search_parts(pool, truth)
    found = search(picture, reference, [], pool.run, draw, Budget(evaluations=30, seconds=0.0), workers=2)
    assert found is not None and found.best.source == "envelope:box" and found.stopped == "time"
    assert found.evaluations <= 2


def test_an_edit_becomes_the_answer_only_when_it_beats_it_by_the_margin():
    from model_runtime.picture.edits import EDIT_MARGIN
    from model_runtime.picture.search import Scored, choose
    from model_runtime.picture.similarity import Similarity

    def item(source: str, score: float) -> Scored:
        return Scored("", source, Similarity(score, score, score), None)

    model = item("model:1", 0.70)
    slightly = item("model:1+centre_boss", 0.70 + EDIT_MARGIN / 2)
    assert choose([model, slightly]) is model  # a small picture gain from an edit is noise
    clearly = item("model:1+fit+corner_holes+fit", 0.70 + 2 * EDIT_MARGIN)
    assert choose([model, slightly, clearly]) is clearly
    fitted = item("model:1+fit", 0.70 + EDIT_MARGIN / 2)
    assert choose([model, slightly, fitted]) is fitted  # fitting numbers is no structural edit


def test_a_profile_needs_the_profile_margin_and_an_edited_profile_only_the_edit_margin():
    from model_runtime.picture.edits import EDIT_MARGIN
    from model_runtime.picture.search import PROFILE_MARGIN, Scored, choose
    from model_runtime.picture.similarity import Similarity

    def item(source: str, score: float) -> Scored:
        return Scored("", source, Similarity(score, score, score), None)

    model = item("model:0+fit", 0.78)
    profile = item("envelope:extrude_z", 0.78 + PROFILE_MARGIN / 2)
    assert choose([model, profile]) is model  # the outline matches by construction: no evidence
    hub = item("envelope:extrude_z+centre_hub", 0.78 + PROFILE_MARGIN / 2 + 2 * EDIT_MARGIN)
    assert choose([model, profile, hub]) is hub  # the edit's gain lies inside the outline
    small = item("envelope:extrude_z+centre_hole", 0.78 + EDIT_MARGIN / 2)
    assert choose([model, profile, small]) is model
    # an edited envelope is no runner-up the profile must beat by the margin: only a model's program
    # or a plain envelope is (a box with drawn holes, close under a hinge's profile, took its place)
    weak = item("model:0", 0.5)
    boxed = item("envelope:box+drawn_z", 0.78)
    assert choose([weak, profile, boxed]) is profile
    assert choose([weak, profile, boxed, item("envelope:box", 0.78)]).source == "envelope:box"
    # the picture's drawn holes on a profile match its lines by construction: still a profile
    drilled = item("envelope:extrude_z+drawn_z+fit", 0.78 + PROFILE_MARGIN / 2 + 2 * EDIT_MARGIN)
    assert choose([model, profile, drilled]) is model
    assert choose([weak, profile, drilled]) is drilled


def test_an_edit_that_comes_close_is_judged_at_its_fitted_size(pool, monkeypatch):
    """A collar: a cylinder with a bore far smaller than the edit's first guess. Where no drawing is
    read (a photo), the guessed hole does not beat the plain cylinder by the margin; fitted to its
    size, it does. Where the picture's lines are read, the drawn bore answers at its own size."""
    import re

    from model_runtime.picture import edits
    from model_runtime.render import render

    truth = ("import cadquery as cq\n\n"
             "result = cq.Workplane('XY').circle(30).extrude(24).faces('>Z').workplane().hole(14)\n")
    plain = ("import cadquery as cq\n\ndiameter = 60\nheight = 24\n"
             "result = cq.Workplane('XY').circle(diameter / 2).extrude(height)\n")
    sharp = render(pool.run(truth).shape(), size=448)

    def answer(picture):
        s = Search(Silhouette.of(picture), pool.run, lambda shape: render(shape, size=128),
                   Budget(evaluations=40), workers=2)
        start = s.adopt(plain, "envelope:cylinder_z", pool.run(plain), named_only=True)
        edits.improve(s, picture)
        assert s.best.score > start.score + edits.EDIT_MARGIN
        return s.best

    with monkeypatch.context() as patched:
        patched.setattr("model_runtime.picture.lines.drawn_features", lambda picture: None)
        guessed = answer(sharp)
    assert "centre_hole" in guessed.source and guessed.source.endswith("+fit"), guessed.source
    drawn = answer(sharp)
    assert "drawn_z" in drawn.source, drawn.source
    assert float(re.search(r"hole_diameter = ([\d.]+)", drawn.code).group(1)) == pytest.approx(14, rel=0.2)


def test_a_near_miss_that_changed_nothing_is_not_fitted():
    """A hole drilled inside a bore that is already there scores as its base: fitting it would
    spend the near-miss evaluations on nothing, so the edit that did change the part gets them."""
    from types import SimpleNamespace

    from model_runtime.picture import edits

    def item(source: str, score: float, volume: float, faces: int):
        return SimpleNamespace(source=source, score=score, code="x = 1\n",
                               exec_result=SimpleNamespace(volume=volume, n_faces=faces))

    base = item("model:0", 0.7, 100.0, 9)
    same = item("model:0+centre_hole", 0.7, 100.0, 9)
    changed = item("model:0+centre_boss", 0.69, 120.0, 12)
    fitted = []
    search = SimpleNamespace(out_of_budget=lambda: False,
                             fit_numbers=lambda i, n: fitted.append(i.source) or i)
    options = [(base, "centre_hole", ""), (base, "centre_boss", "")]
    edits._fit_near_misses(search, options, [same, changed], base.score)
    assert fitted == ["model:0+centre_boss"]


def test_renders_are_compared_on_the_pictures_own_backdrop():
    """A washer captured on white: its hole shows white. Drawn on FreeCAD's gradient, the right
    answer's hole showed blue-grey and lost to a disc with a boss; on the picture's backdrop it wins."""
    import dataclasses

    import cadquery as cq

    from model_runtime.picture.images import backdrop
    from model_runtime.picture.similarity import compare
    from model_runtime.pipeline import Pipeline
    from model_runtime.render import REFERENCE_STYLE, render

    white = dataclasses.replace(REFERENCE_STYLE, background_top=(1, 1, 1), background_bottom=(1, 1, 1))
    washer = cq.Workplane("XY").circle(10).circle(5).extrude(2)
    picture = render(washer, size=224, style=white)
    assert backdrop(picture) == ((1.0, 1.0, 1.0), (1.0, 1.0, 1.0))
    style = Pipeline._style(picture)
    holed = cq.Workplane("XY").circle(10).extrude(1.6).faces(">Z").workplane().hole(9)
    bossed = cq.Workplane("XY").circle(10).extrude(2).faces(">Z").workplane().circle(5).extrude(1)
    score = {name: compare(picture, render(part, size=128, style=style)).score
             for name, part in (("holed", holed), ("bossed", bossed))}
    assert score["holed"] > score["bossed"]


def test_where_the_picture_sees_through_the_part_a_render_must_too():
    """A frame seen from above shows the backdrop through its window; a tray of the same outline
    does not. In outline alone the two are alike; what shows through tells them apart."""
    import cadquery as cq

    from model_runtime.picture.similarity import compare
    from model_runtime.render import render

    frame = cq.Workplane("XY").box(60, 50, 6).faces(">Z").workplane().rect(36, 30).cutThruAll()
    tray = cq.Workplane("XY").box(60, 50, 6).faces(">Z").shell(-1.5)
    picture = render(frame, size=224)
    similarity = {name: compare(picture, render(part, size=128))
                  for name, part in (("frame", frame), ("tray", tray))}
    assert similarity["frame"].silhouette_iou > 0.9
    assert similarity["tray"].silhouette_iou < similarity["frame"].silhouette_iou - 0.1


def test_a_screw_gets_a_revolve_and_a_tower_at_one_end_gets_its_height():
    """Two readings a plain box misses: a socket-head screw fits a cylinder's outline poorly (0.8)
    but is its own mirror image, so its revolved outline is tried; a bar with a tower at its right
    end has its top nowhere near the back corner, so the outline's height says 6 of 50 while the
    ends' vertical edges say the truth (25 of 50)."""
    import re

    import cadquery as cq

    screw = cq.Workplane("XY").circle(2.5).extrude(20).faces(">Z").workplane().circle(4.25).extrude(5)
    assert "revolve_z" in [h.name for h in envelope.hypotheses(_render(screw))]
    tower = (cq.Workplane("XY").box(40, 10, 5, centered=False)
             .union(cq.Workplane("XY").box(10, 10, 20, centered=False).translate((30, 0, 0))))
    boxes = {h.name: float(re.search(r"height = ([\d.]+)", h.code).group(1))
             for h in envelope.hypotheses(_render(tower)) if h.name.startswith("box")}
    assert boxes["box"] < 10
    assert boxes["box_sides"] == pytest.approx(25, abs=3)
    plain = cq.Workplane("XY").box(40, 25, 8)  # a plain block reads one height, once
    assert "box_sides" not in [h.name for h in envelope.hypotheses(_render(plain))]


def _edit_search(pool, truth: str, plain: str, evaluations: int = 30):
    """A search on the picture of ``truth`` holding only ``plain`` (an envelope read as named sizes)."""
    from model_runtime.render import render

    picture = render(pool.run(truth).shape(), size=448)
    s = Search(Silhouette.of(picture), pool.run, lambda shape: render(shape, size=128),
               Budget(evaluations=evaluations), workers=2)
    start = s.adopt(plain, "envelope:box", pool.run(plain), named_only=True)
    return picture, s, start


def test_a_slot_and_a_step_the_lines_show_are_found(pool):
    from model_runtime.picture import edits

    parts = {  # a plate with a long slot through it (the slot the picture draws); a block stepped down
        # at one end of its top
        "drawn_z": ("80, 50, 8", ".faces('>Z').workplane().slot2D(50, 10).cutThruAll()"),
        "step": ("60, 40, 30", ".faces('>Z').workplane().center(18, 0).rect(24, 50).cutBlind(-15)"),
    }
    for name, (box, feature) in parts.items():
        sizes = box.split(", ")
        plain = (f"import cadquery as cq\n\nlength = {sizes[0]}\nwidth = {sizes[1]}\nheight = {sizes[2]}\n"
                 "result = cq.Workplane('XY').box(length, width, height)\n")
        truth = f"import cadquery as cq\n\nresult = cq.Workplane('XY').box({box}){feature}\n"
        picture, s, start = _edit_search(pool, truth, plain)
        edits.improve(s, picture)
        assert s.best.source.startswith(f"envelope:box+{name}"), (name, s.best.source)
        assert s.best.score > start.score + edits.EDIT_MARGIN
        assert s.best.exec_result.volume < 0.95 * start.exec_result.volume  # material was taken away


def _model_search(pool, truth: str, program: str):
    """A search on the picture of ``truth`` holding only ``program``, as the model's candidate."""
    picture, s, _ = _edit_search(pool, truth, truth, evaluations=6)
    s.items.clear()
    s.best = None
    start = s.adopt(program, "model:0", pool.run(program))
    return picture, s, start


def test_a_hollow_the_picture_cannot_show_gives_way_to_the_solid(pool):
    from model_runtime.picture import edits

    solid = "import cadquery as cq\n\nresult = cq.Workplane('XY').box(50, 50, 20)\n"
    hollow = ("import cadquery as cq\n\nwall_thickness = 1\nresult = (\n"
              "    cq.Workplane('XY').box(50, 50, 20)\n    .faces('<Z')\n    .shell(-wall_thickness)\n)\n")
    picture, s, start = _model_search(pool, solid, hollow)
    assert s.best is start  # seen from above the two look alike
    edits.improve(s, picture)
    assert not s.best.held and ".shell(" not in s.best.code and start.held
    assert s.best.exec_result.volume > 0.9 * 50 * 50 * 20


def test_a_boss_the_picture_cannot_show_is_dropped(pool):
    from model_runtime.picture import edits

    disc = "import cadquery as cq\n\nresult = cq.Workplane('XY').circle(35).extrude(8)\n"
    # a boss under the disc, narrower than it: FreeCAD's isometric camera looks down on the disc
    bossed = ("import cadquery as cq\n\nboss_radius = 12\nresult = (\n"
              "    cq.Workplane('XY').circle(35).extrude(8)\n    .faces('<Z')\n"
              "    .workplane()\n    .circle(boss_radius)\n    .extrude(8)\n)\n")
    picture, s, start = _model_search(pool, disc, bossed)
    assert s.best is start
    edits.improve(s, picture)
    assert s.best.source == "model:0+trimmed" and start.held
    bbox = s.best.exec_result.bbox
    assert bbox[5] - bbox[2] == pytest.approx(8)  # the height the picture shows


def test_a_boss_the_picture_shows_under_the_part_stays(pool):
    from model_runtime.picture import edits

    # a wide foot under a narrow column: its sides show from above
    footed = ("import cadquery as cq\n\nfoot_radius = 30\nresult = (\n"
              "    cq.Workplane('XY').circle(10).extrude(30)\n    .faces('<Z')\n"
              "    .workplane()\n    .circle(foot_radius)\n    .extrude(8)\n)\n")
    picture, s, start = _model_search(pool, footed, footed)
    edits.improve(s, picture)
    trimmed = next(i for i in s.items if i.source == "model:0+trimmed")
    assert trimmed.score < start.score - edits.EDIT_MARGIN  # without its foot the column looks wrong
    assert not start.held and "trimmed" not in s.best.source


def test_a_model_number_moves_only_as_far_as_the_picture_pays_for_it():
    """The fit's own logic, with a stand-in for the sandbox and the renderer: a picture score that
    creeps up as a number grows moves an edit's guessed size, not the number the model wrote."""
    import math
    import re

    from model_runtime.picture.search import FIT_DRIFT, MIN_GAIN, Scored
    from model_runtime.picture.similarity import Similarity

    slope = (MIN_GAIN + FIT_DRIFT * math.log(1.3)) / 2 / math.log(1.3)  # per unit of ln(value)

    def fake(program, source, **kw):
        s.evaluations += 1
        value = float(re.search(r"size = ([0-9.]+)", program).group(1))
        score = 0.6 + slope * math.log(value / 10.0)
        return Scored(program, source, Similarity(score, score, score), None, **kw)

    for source, moves in (("model:0", False), ("envelope:box+centre_boss", True)):
        s = Search(None, None, None, Budget(evaluations=30))
        s.evaluate = fake
        start = Scored("size = 10\n", source, Similarity(0.6, 0.6, 0.6), None, named_only=True)
        fitted = s.fit_numbers(start, 20)
        grown = float(re.search(r"size = ([0-9.]+)", fitted.code).group(1)) > 10
        assert grown is moves, (source, fitted.code)
