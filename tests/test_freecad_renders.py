"""Domain-gap data: real FreeCAD 0.20 renders CadQuery programs under Xvfb into an evaluation folder."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from training.freecad_renders import Program, render_programs
from training.tiny_models import CORPUS

pytestmark = pytest.mark.gui


def test_freecad_renders_an_evaluation_folder_and_skips_broken_programs(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a relative output folder: FreeCAD itself runs elsewhere
    programs = [
        Program("box", CORPUS[0], "block"),
        Program("plate", CORPUS[2], "plate"),
        Program("broken", "import cadquery as cq\nresult = cq.Workplane().box(1, 1)\n", "block"),
    ]
    names = render_programs(programs, "renders", size=200)
    tmp_path = tmp_path / "renders"
    assert names == ["box", "plate"]
    assert "broken" in capsys.readouterr().err
    assert json.loads((tmp_path / "families.json").read_text()) == {"box": "block", "plate": "plate"}
    for name in names:
        assert (tmp_path / f"{name}.py").read_text() == next(p.code for p in programs if p.name == name)
        pixels = np.asarray(Image.open(tmp_path / f"{name}.png").convert("L"), dtype=np.int16)
        assert pixels.shape == (200, 200)
        part = np.argwhere(pixels < 200)  # the white background is 255; the grey part and its edges darker
        assert len(part) > 0.05 * pixels.size, f"{name}: the part is missing from the render"
        (top, left), (bottom, right) = part.min(0), part.max(0)
        assert top > 0 and left > 0 and bottom < 199 and right < 199, f"{name}: the part touches the border"
    # The box (30 x 20 x 10) and the plate (40 x 30 x 5, with a hole) give different pictures.
    box, plate = (np.asarray(Image.open(tmp_path / f"{n}.png").convert("L")) for n in names)
    assert np.abs(box.astype(int) - plate.astype(int)).mean() > 5

    from training.evaluate import load_samples

    samples = load_samples(tmp_path)
    assert [(s.name, s.family) for s in samples] == [("box", "block"), ("plate", "plate")]
