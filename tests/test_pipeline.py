"""Pipeline logic on the real sandbox and renderer: extraction, image input, ranking, failures, cancel.

The model is replaced here by a scripted backend (fixed texts) so ranking, all-invalid and cancel
are checked deterministically; real models run the same pipeline in test_backends_*.py.
"""

from __future__ import annotations

import base64
import io
import threading

import numpy as np
import pytest
from PIL import Image

from model_runtime import protocol
from model_runtime.backends.base import GenerationCancelled, GenerationSettings, StageTimings
from model_runtime.extract import extract_code
from model_runtime.picture.images import (
    REFERENCE_PADDING,
    ImageError,
    frame_part,
    load_image,
    part_box,
    to_data_uri,
)
from model_runtime.picture.similarity import Silhouette, compare
from model_runtime.pipeline import GenerateRequest, Pipeline, PipelineError

BOX = 'import cadquery as cq\n\nresult = cq.Workplane("XY").box(30, 20, 10)\n'
CYLINDER = 'import cadquery as cq\n\nresult = cq.Workplane("XY").cylinder(40, 4)\n'
PLATE = 'import cadquery as cq\n\nresult = cq.Workplane("XY").box(60, 60, 2)\n'


# -- code extraction ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        BOX,
        " " + BOX + "</s>",
        "Here is the code:\n```python\n" + BOX + "```\nThis builds a box.",
        "```\n" + BOX + "```",
        "Sure! ```python\n" + BOX,  # fence never closed (ran out of tokens)
        "Let me think.\n" + BOX + "\nThis makes a 30x20x10 box. Hope it helps!",
        'result = cq.Workplane("XY").box(30, 20, 10)',  # import missing
    ],
)
def test_extract_code_finds_the_program(text):
    code = extract_code(text)
    assert 'result = cq.Workplane("XY").box(30, 20, 10)' in code
    assert code.startswith("import cadquery as cq")
    compile(code, "<candidate>", "exec")


def test_extract_code_prefers_the_block_that_builds_result():
    text = "```python\nprint('setup')\n```\nthen\n```python\n" + BOX + "```"
    assert extract_code(text).strip() == BOX.strip()


def test_extract_code_of_nothing_is_empty():
    assert extract_code("I cannot help with that.").strip() == "I cannot help with that."
    assert extract_code("") == ""


# -- image input -------------------------------------------------------------------------------


def _encoded(image: Image.Image, fmt: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP", "BMP"])
def test_common_formats_decode_to_square_rgb(fmt):
    picture = Image.new("RGB", (120, 60), (40, 90, 200))
    image = load_image(_encoded(picture, fmt))
    assert image.mode == "RGB" and image.size == (120, 120)
    # padded with white above and below, the picture centred
    assert image.getpixel((60, 2)) == (255, 255, 255)
    assert np.allclose(image.getpixel((60, 60)), (40, 90, 200), atol=8)


def test_alpha_is_flattened_on_white_and_paths_and_base64_work(tmp_path):
    picture = Image.new("RGBA", (50, 50), (255, 0, 0, 0))
    picture.paste((0, 0, 255, 255), (20, 20, 30, 30))
    path = tmp_path / "shot.png"
    picture.save(path)
    for source in (path, str(path), base64.b64encode(path.read_bytes()).decode(), to_data_uri(picture)):
        image = load_image(source)
        assert image.getpixel((2, 2)) == (255, 255, 255)
        assert image.getpixel((25, 25)) == (0, 0, 255)


@pytest.mark.parametrize(
    "data", [b"", b"not an image at all", _encoded(Image.new("RGB", (64, 64)), "PNG")[:60]]
)
def test_corrupt_images_raise_a_typed_error(data):
    with pytest.raises(ImageError) as info:
        load_image(data)
    assert info.value.code == protocol.ERROR_BAD_IMAGE


def _gradient_with_part(size=(300, 200), box=(30, 20, 90, 60)) -> Image.Image:
    """A FreeCAD-like vertical gradient with a grey rectangle (the 'part') off centre."""
    width, height = size
    column = np.linspace((51, 51, 101), (171, 171, 193), height)
    rgb = np.repeat(column[:, None, :], width, axis=1)
    left, top, right, bottom = box
    rgb[top:bottom, left:right] = (120, 120, 120)
    return Image.fromarray(rgb.round().astype(np.uint8))


def test_frame_part_centres_the_part_with_the_reference_margin():
    picture = _gradient_with_part()
    framed = frame_part(picture)
    side = framed.size[0]
    assert framed.size == (side, side)
    left, top, right, bottom = part_box(framed)
    assert abs((right - left) / side - (1 - 2 * REFERENCE_PADDING)) < 0.02  # longer side: 60 px
    assert abs((left + right) / 2 - side / 2) <= 1 and abs((top + bottom) / 2 - side / 2) <= 1
    # the background goes on as the picture's gradient (darker at the top than at the bottom)
    assert framed.getpixel((1, 1))[2] < framed.getpixel((1, side - 2))[2]
    assert np.allclose(framed.getpixel((side // 2, side // 2)), (120, 120, 120), atol=1)


def test_frame_part_ignores_specks_and_leaves_blank_pictures_alone():
    picture = _gradient_with_part()
    picture.putpixel((280, 190), (0, 0, 0))  # a stray dark pixel far from the part
    assert part_box(picture) == (30, 20, 90, 60)
    blank = Image.new("RGB", (120, 60), (240, 240, 240))
    framed = frame_part(blank)
    assert framed.size == (120, 120) and part_box(blank) is None


def test_frame_part_keeps_a_reference_render_as_it_is():
    import cadquery as cq

    from model_runtime.render import render

    picture = render(cq.Workplane("XY").box(30, 20, 10), size=224)
    framed = frame_part(picture)
    assert abs(framed.size[0] - 224) <= 2
    before, after = part_box(picture), part_box(framed)
    assert all(abs(a - b) <= 2 for a, b in zip(before, after, strict=True))


# -- similarity --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def renders():
    import cadquery as cq

    from model_runtime.render import render

    shapes = {
        "box": cq.Workplane("XY").box(30, 20, 10),
        "cylinder": cq.Workplane("XY").cylinder(40, 4),
        "plate": cq.Workplane("XY").box(60, 60, 2),
    }
    return {name: render(shape, size=160) for name, shape in shapes.items()}


def test_similarity_prefers_the_same_shape(renders):
    same = compare(renders["box"], renders["box"])
    assert same.silhouette_iou > 0.99 and same.edge_f1 > 0.99
    assert compare(renders["box"], renders["cylinder"]).score < same.score - 0.2
    # scale-invariant: a half-size screenshot of the same part still matches well
    small = compare(renders["box"], renders["box"].resize((80, 80)))
    assert small.silhouette_iou > 0.9 and small.score > compare(renders["box"], renders["plate"]).score + 0.2


def test_shading_sees_what_the_outline_hides():
    # A boss or a pocket on a plate barely moves its outline; the lit faces tell them apart.
    import cadquery as cq

    from model_runtime.render import render

    plate = cq.Workplane("XY").box(60, 40, 6)
    parts = {
        "plate": plate,
        "boss": plate.faces(">Z").workplane().circle(8).extrude(4),
        "pocket": plate.faces(">Z").workplane().rect(30, 20).cutBlind(-3),
    }
    pictures = {name: render(shape, size=160) for name, shape in parts.items()}
    for name in ("boss", "pocket"):
        same = compare(pictures[name], pictures[name])
        assert same.shading > 0.99
        for other in set(parts) - {name}:
            different = compare(pictures[name], pictures[other])
            assert different.shading < same.shading - 0.2
            assert different.score < same.score - 0.05


def test_a_prepared_reference_compares_like_the_picture(renders):
    # the pipeline prepares the input picture once and compares every candidate against that
    reference = Silhouette.of(renders["box"])
    for name in ("box", "cylinder", "plate"):
        assert compare(reference, renders[name]) == compare(renders["box"], renders[name])


# -- the pipeline with a scripted backend --------------------------------------------------------


class ScriptedBackend:
    """Returns fixed texts, streaming them token by token (words) like a model would."""

    name = "scripted"
    model_id = "scripted"
    load_s = 0.0

    def __init__(self, texts: list[str], cancel_after_tokens: int | None = None):
        self.texts = texts
        self.cancel_after_tokens = cancel_after_tokens
        self.timings = StageTimings()
        self.seen_image: Image.Image | None = None

    def generate(self, image, instruction=None, settings=None, *, on_token=None, cancel=None):
        settings = settings or GenerationSettings()
        self.seen_image = image
        out, count = [], 0
        for index in range(settings.n):
            text = self.texts[index % len(self.texts)]
            for word in text.split(" "):
                count += 1
                if on_token:
                    on_token(index, word + " ")
                if self.cancel_after_tokens is not None and count >= self.cancel_after_tokens and cancel:
                    cancel.set()
                if cancel is not None and cancel.is_set():
                    raise GenerationCancelled()
            out.append(text)
        return out

    def close(self):
        pass


@pytest.fixture(scope="module")
def pool():
    from model_runtime.sandbox import SandboxPool

    with SandboxPool(workers=2, timeout_s=20.0) as sandbox:
        yield sandbox


def _png(image: Image.Image) -> bytes:
    return _encoded(image, "PNG")


def test_ranking_valid_first_then_by_similarity(pool, renders):
    texts = [
        CYLINDER,
        "result = cq.Workplane('XY').box(1, 2)  # wrong arity",
        "```python\n" + BOX + "```",
        PLATE,
    ]
    events: list[dict] = []
    backend = ScriptedBackend(texts)
    result = Pipeline(backend, pool, render_size=160).run(
        GenerateRequest(image=_png(renders["box"]), n=4), on_event=events.append
    )
    order = [c.index for c in result.candidates]
    assert order[0] == 2, [c.to_dict() for c in result.candidates]  # the box, though not the greedy answer
    assert order[-1] == 1 and not result.candidates[-1].valid  # the invalid one last
    assert result.candidates[-1].error["code"] in (protocol.ERROR_RUNTIME, protocol.ERROR_SYNTAX)
    scores = [c.score for c in result.candidates if c.valid]
    assert scores == sorted(scores, reverse=True) and scores[0] > 0.8
    assert result.best.code.strip() == BOX.strip()
    assert_named_dimensions(result)  # the winner's program, its numbers named as in the FreeCAD tree
    assert result.exec_result.volume == pytest.approx(6000, rel=1e-6)
    assert backend.seen_image.size[0] == backend.seen_image.size[1]
    kinds = {e["type"] for e in events}
    assert {protocol.EVENT_STATUS, protocol.EVENT_TOKEN, protocol.EVENT_CANDIDATE} <= kinds
    assert events[-1] == {"type": protocol.EVENT_STATUS, "stage": "done", "progress": 1.0}
    json_ready = result.to_dict()
    assert json_ready["candidates"][0]["index"] == 2 and "brep" in json_ready["result"]
    # Each valid candidate carries a small render for the workbench's list; an invalid one has none.
    thumb = Image.open(io.BytesIO(base64.b64decode(json_ready["candidates"][0]["thumbnail_png"])))
    assert max(thumb.size) == 96 and np.asarray(thumb.convert("L")).std() > 5
    assert "thumbnail_png" not in json_ready["candidates"][-1]
    valid_events = [e for e in events if e["type"] == protocol.EVENT_CANDIDATE and e["valid"]]
    assert len(valid_events) == 3 and all(e["thumbnail_png"] for e in valid_events)


def test_all_candidates_invalid_is_a_typed_error_with_details(pool, renders):
    texts = ["I don't know.", "import os\nresult = os.system('true')", "result = cq.Workplane().box(0, 1, 1)"]
    with pytest.raises(PipelineError) as info:
        Pipeline(ScriptedBackend(texts), pool).run(
            GenerateRequest(image=_png(renders["box"]), n=3, search=False))
    assert info.value.code == protocol.ERROR_ALL_INVALID
    reported = info.value.detail["candidates"]
    assert len(reported) == 3 and all(not c["valid"] and c["error"]["code"] for c in reported)
    assert {c["error"]["code"] for c in reported} >= {protocol.ERROR_POLICY}


def test_with_no_valid_candidate_the_search_still_answers_from_the_outline(pool, renders):
    texts = ["I don't know.", "result = cq.Workplane().box(0, 1, 1)"]
    events: list[dict] = []
    result = Pipeline(ScriptedBackend(texts), pool).run(
        GenerateRequest(image=_png(renders["box"]), n=2, evaluations=12), on_event=events.append)
    assert result.search.best.source.startswith("envelope:") and not result.best.valid
    assert result.score >= result.search.envelope.score and result.exec_result.volume > 0
    best_events = [e for e in events if e["type"] == protocol.EVENT_BEST]
    assert best_events and best_events[-1]["score"] == pytest.approx(result.search.best.score)
    for event in best_events:
        protocol.check_event(event)
    body = result.to_dict()
    assert body["search"]["evaluations"] <= 12 + 0 and body["verdict"]["message"]
    assert set(body) <= set(protocol.JOB_RESULT_FIELDS)


def test_the_search_beats_a_wrong_model_answer_and_reports_it(pool):
    from model_runtime.metrics import iou
    from model_runtime.render import render

    truth = ('import cadquery as cq\n\n'
             'result = cq.Workplane("XY").box(60, 40, 4).faces(">Z").workplane().hole(12)\n')
    picture = _png(render(pool.run(truth).shape(), size=224))
    pipeline = Pipeline(ScriptedBackend([CYLINDER]), pool)
    plain = pipeline.run(GenerateRequest(image=picture, n=1, search=False))
    searched = pipeline.run(GenerateRequest(image=picture, n=1, evaluations=40))
    target = pool.run(truth).shape()
    assert iou(searched.exec_result.shape(), target) > iou(plain.exec_result.shape(), target) + 0.03
    assert searched.score >= searched.search.envelope.score and searched.score > plain.score
    assert searched.search.evaluations <= 41 and "search_s" in searched.timings


def test_an_instruction_never_reaches_a_model_trained_without_one(pool, renders):
    backend = ScriptedBackend([BOX])
    seen = []
    original = backend.generate

    def generate(image, instruction=None, *args, **kwargs):
        seen.append(instruction)
        return original(image, instruction, *args, **kwargs)

    backend.generate = generate
    result = Pipeline(backend, pool).run(GenerateRequest(
        image=_png(renders["box"]), n=1, instruction="a block 90 x 60 x 30 mm", evaluations=8))
    assert seen == [None]
    info = result.to_dict()["instruction"]
    assert info["used_by"] == "search" and "90" in info["message"]
    box = result.exec_result.bbox
    assert max(box[3] - box[0], box[4] - box[1], box[5] - box[2]) == pytest.approx(90.0, rel=1e-6)


def test_corrupt_image_fails_before_the_model_runs(pool):
    backend = ScriptedBackend([BOX])
    with pytest.raises(PipelineError) as info:
        Pipeline(backend, pool).run(GenerateRequest(image=b"\x89PNG\r\n\x1a\nbroken", n=1))
    assert info.value.code == protocol.ERROR_BAD_IMAGE
    assert backend.seen_image is None


def test_cancel_during_generation(pool, renders):
    cancel = threading.Event()
    backend = ScriptedBackend([BOX], cancel_after_tokens=3)
    with pytest.raises(PipelineError) as info:
        Pipeline(backend, pool).run(GenerateRequest(image=_png(renders["box"]), n=2), cancel=cancel)
    assert info.value.code == protocol.ERROR_CANCELLED


def test_cancel_before_start(pool, renders):
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(PipelineError) as info:
        Pipeline(ScriptedBackend([BOX]), pool).run(GenerateRequest(image=_png(renders["box"])), cancel=cancel)
    assert info.value.code == protocol.ERROR_CANCELLED


@pytest.mark.parametrize("frame", [True, False])
def test_the_model_sees_the_part_framed_unless_asked_not_to(pool, frame):
    picture = _gradient_with_part()
    backend = ScriptedBackend([BOX])
    Pipeline(backend, pool).run(GenerateRequest.from_json(
        {"image": base64.b64encode(_png(picture)).decode(), "n": 1, "frame": frame}))
    left, top, right, bottom = part_box(backend.seen_image)
    share = (right - left) / backend.seen_image.size[0]
    if frame:  # centred, filling the frame like a reference render
        assert abs(share - (1 - 2 * REFERENCE_PADDING)) < 0.02
    else:  # as given: 60 px of a 300 px square
        assert backend.seen_image.size == (300, 300) and share == pytest.approx(0.2)


def test_the_winner_is_fitted_to_the_picture_unless_asked_not_to(pool):
    from model_runtime.metrics import iou
    from model_runtime.render import render

    truth = 'import cadquery as cq\n\nresult = cq.Workplane("XY").box(48, 20, 10)\n'
    picture = _png(render(pool.run(truth).shape(), size=160))
    pipeline = Pipeline(ScriptedBackend([BOX]), pool, render_size=160)  # the model says 30 x 20 x 10

    as_written = pipeline.run(GenerateRequest(image=picture, n=1, refine=False, search=False))
    assert as_written.best.code == BOX and as_written.refinement is None
    assert as_written.exec_result.volume == pytest.approx(6000, rel=1e-6)

    events: list[dict] = []
    fitted = pipeline.run(GenerateRequest(image=picture, n=1, search=False), on_event=events.append)
    assert fitted.refinement is not None and fitted.refinement.changed >= 1
    assert fitted.score > fitted.best.score + 0.05  # scored at the ranking's resolution, not the search's
    target = pool.run(truth).shape()
    assert iou(fitted.exec_result.shape(), target) > iou(as_written.exec_result.shape(), target) + 0.1
    assert fitted.best.code == BOX  # the candidate list keeps what the model wrote
    assert any(e.get("stage") == "refine" for e in events) and "refine_s" in fitted.timings
    assert fitted.to_dict()["refinement"]["score"] == pytest.approx(fitted.refinement.score)
    assert GenerateRequest.from_json({"image": "eA==", "refine": False}).refine is False
    assert GenerateRequest.from_json({"image": "eA==", "view": "isometric"}).view == "isometric"
    with pytest.raises(PipelineError):
        GenerateRequest.from_json({"image": "eA==", "view": "sideways"})


def test_fitting_never_trades_features_for_outline(pool):
    import dataclasses

    from model_runtime.pipeline import Candidate
    from model_runtime.render import REFERENCE_STYLE, render

    truth = 'import cadquery as cq\n\nresult = cq.Workplane("XY").box(48, 20, 10)\n'
    reference = Silhouette.of(render(pool.run(truth).shape(), size=160))
    pipeline = Pipeline(ScriptedBackend([BOX]), pool, render_size=160)
    executed = pool.run(BOX)
    winner = Candidate(index=0, text=BOX, code=BOX, valid=True, exec_result=executed)
    winner.similarity = compare(reference, render(executed.shape(), size=160))
    style = REFERENCE_STYLE  # the reference was drawn on FreeCAD's gradient
    fitted = pipeline._refine(reference, winner, lambda *args: None, threading.Event(), style)
    assert fitted is not None and fitted[1].n_faces == executed.n_faces == 6
    # Were the winner's solid one of 7 faces, every box the search builds (6 faces) would be another
    # design, not another size: nothing counts and the model's program stays.
    winner.exec_result = dataclasses.replace(executed, n_faces=7)
    assert pipeline._refine(reference, winner, lambda *args: None, threading.Event(), style) is None


def test_cancel_during_fitting(pool, renders):
    cancel = threading.Event()

    def on_event(event: dict) -> None:
        if event.get("stage") == "refine":
            cancel.set()

    with pytest.raises(PipelineError) as info:
        Pipeline(ScriptedBackend([BOX]), pool).run(
            GenerateRequest(image=_png(renders["plate"]), n=1, search=False), on_event=on_event, cancel=cancel
        )
    assert info.value.code == protocol.ERROR_CANCELLED


def test_target_size_rewrites_the_code(pool, renders):
    result = Pipeline(ScriptedBackend([BOX]), pool).run(
        GenerateRequest(image=_png(renders["box"]), n=1, target_size_mm=75.0, formats=("brep", "step"))
    )
    box = result.exec_result.bbox
    assert max(box[3] - box[0], box[4] - box[1], box[5] - box[2]) == pytest.approx(75.0, rel=1e-6)
    assert result.scale == pytest.approx(2.5)
    # the lengths are rewritten (the feature tree survives), not the solid scaled behind the program
    assert "scale(" not in result.code and "= 75\n" in result.code and "= 25\n" in result.code
    assert_named_dimensions(result) and "step" in result.exec_result.exports


def test_target_size_falls_back_to_scaling_the_solid_when_the_lengths_cannot_be_told(pool, renders):
    # ``i * 6`` is a length times a count: read as a ratio, so rewriting the literals gives a
    # different part, which the pipeline notices and scales the solid instead.
    row = (
        "import cadquery as cq\n\nresult = cq.Workplane('XY').box(8, 8, 8)\n"
        "for i in range(1, 3):\n"
        "    result = result.union(cq.Workplane('XY').box(8, 8, 8).translate((i * 6, 0, 0)))\n"
    )
    result = Pipeline(ScriptedBackend([row]), pool).run(
        GenerateRequest(image=_png(renders["box"]), n=1, target_size_mm=40.0, refine=False, search=False)
    )
    box = result.exec_result.bbox
    assert max(box[3] - box[0], box[4] - box[1], box[5] - box[2]) == pytest.approx(40.0, rel=1e-6)
    assert ".scale(2.0)" in result.code
    assert result.exec_result.volume == pytest.approx(20 * 8 * 8 * 8, rel=1e-6)


def assert_named_dimensions(result) -> bool:
    """The result's program declares each of its feature plan's parameters, and the plan maps."""
    plan = result.exec_result.feature_plan
    assert plan is not None and plan["status"] == protocol.PLAN_MAPPED, plan
    assert plan["parameters"]
    for parameter in plan["parameters"]:
        assert f"\n{parameter['name']} = " in result.code, (parameter, result.code)
    return True


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"image": ""},
        {"image": "x", "n": 0},
        {"image": "x", "n": "many"},
        {"image": "x", "target_size_mm": -3},
    ],
)
def test_bad_requests_are_rejected(body):
    with pytest.raises(PipelineError) as info:
        GenerateRequest.from_json(body)
    assert info.value.code == protocol.ERROR_BAD_REQUEST
