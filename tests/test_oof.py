"""The hand-written out-of-family evaluation set: complete, runnable, rendered, and kept out of training."""

from __future__ import annotations

import json

from PIL import Image

from training.evaluate import folder_samples
from training.oof import OOF_DIR, part_names, signatures, style_of
from training.synth.writer import excluded_signatures


def test_the_set_has_at_least_40_hand_written_parts_each_with_its_freecad_render() -> None:
    names = part_names()
    assert len(names) >= 40
    for name in names:
        code = (OOF_DIR / f"{name}.py").read_text(encoding="utf-8")
        assert code.startswith("import cadquery as cq\n") and "\nresult = " in code, name
        with Image.open(OOF_DIR / f"{name}.png") as image:
            assert image.size == (448, 448), name
    # The evaluation reads the folder as it is (every PNG has its ground truth beside it).
    assert [s.name for s in folder_samples(OOF_DIR)] == names


def test_every_part_runs_under_the_sandbox_policy_and_the_engine_refuses_its_geometry() -> None:
    found = signatures()  # runs each part: policy check, one valid solid
    assert set(found) == set(part_names())
    assert len(set(found.values())) == len(found), "two parts with the same geometry"
    assert excluded_signatures() == set(found.values()), "run python -m training.oof"


def test_styles_cover_what_people_model() -> None:
    families = json.loads((OOF_DIR / "families.json").read_text(encoding="utf-8"))
    assert families == {name: style_of(name) for name in part_names()}
    styles = set(families.values())
    assert {"enclosure", "loft", "profile", "bracket", "knob", "plate", "turned"} <= styles
