"""Scaling a program to a size by rewriting its lengths (model_runtime.picture.scaling)."""

from __future__ import annotations

import glob
from pathlib import Path

import pytest

from model_runtime.picture.scaling import is_scaled_copy, scale_literals, scale_wrapper

REPO = Path(__file__).resolve().parents[1]


def _body(code: str) -> str:
    return code.split("\n", 1)[1]  # without the comment line scale_literals adds


def test_lengths_move_and_angles_counts_and_ratios_do_not():
    code = (
        "import cadquery as cq\n"
        "teeth = 24\n"
        "r = cq.Workplane('XY').circle(10).extrude(4)\n"
        "r = r.faces('>Z').workplane().polarArray(7, 0, 360, 6).hole(2)\n"
        "for a in (90, 180):\n"
        "    arm = cq.Workplane('XY').box(3, 1, 4).translate((5, 0, 0))\n"
        "    r = r.union(arm.rotate((0, 0, 0), (0, 0, 1), a))\n"
        "r = r.union(cq.Workplane('XY').polygon(6, 12).extrude(20 / 2))\n"
        "s = cq.Sketch().polygon([(0, 0), (4, 0), (4, 3)], angle=15).slot(6, 2, angle=30)\n"
        "for i in range(teeth):\n"
        "    pass\n"
        "result = r\n"
    )
    scaled = _body(scale_literals(code, 2.0, 40))
    assert "teeth = 24" in scaled  # a count, because range() uses it
    assert ".circle(20).extrude(8)" in scaled
    assert ".polarArray(14, 0, 360, 6).hole(4)" in scaled
    assert "for a in (90, 180):" in scaled  # angles, because rotate() uses them
    assert ".box(6, 2, 8).translate((10, 0, 0))" in scaled
    assert ".rotate((0, 0, 0), (0, 0, 2), a)" in scaled  # an axis scaled still points the same way
    assert ".polygon(6, 24).extrude(40 / 2)" in scaled  # nSides stays, the divisor is a ratio
    assert ".polygon([(0, 0), (8, 0), (8, 6)], angle=15).slot(12, 4, angle=30)" in scaled


def test_the_rewrite_keeps_layout_comments_and_strings():
    head = "import cadquery as cq\n# 30 mm wide, says the comment\n"
    code = head + "result = cq.Workplane('XY').box(30, 20, 10)  # 3\n"
    scaled = scale_literals(code, 0.5, 15)
    assert scaled.startswith("# CadSnap: lengths scaled x0.5 so the largest overall dimension is 15 mm.\n")
    assert _body(scaled) == head + "result = cq.Workplane('XY').box(15, 10, 5)  # 3\n"
    assert scale_literals("result = (", 2.0, 1) is None  # not Python: the caller scales the solid


def _solid(code: str):
    scope: dict = {}
    exec(compile(code, "<part>", "exec"), scope)  # noqa: S102 - the repository's own parts
    return scope["result"].val()


class _Measured:
    def __init__(self, shape) -> None:
        box = shape.BoundingBox()
        self.bbox = (box.xmin, box.ymin, box.zmin, box.xmax, box.ymax, box.zmax)
        self.volume = shape.Volume()
        self.n_faces = len(shape.Faces())


@pytest.mark.parametrize(
    "path", sorted(glob.glob(str(REPO / "training" / "eval_oof" / "*.py")))[::6], ids=lambda p: Path(p).stem
)
def test_hand_written_parts_scale_exactly(path):
    """Parts nobody wrote for the data engine: gears with counts, loops over angles, sketches."""
    code = Path(path).read_text(encoding="utf-8")
    original = _Measured(_solid(code))
    factor = 1.7
    scaled = _Measured(_solid(scale_literals(code, factor, 1.0)))
    assert is_scaled_copy(original, scaled, factor)
    wrapped = _Measured(_solid(scale_wrapper(code, factor, 1.0)))
    assert is_scaled_copy(original, wrapped, factor)


def test_a_wrong_guess_is_caught():
    code = "import cadquery as cq\nresult = cq.Workplane().box(10, 10, 10).union(cq.Workplane().sphere(4))\n"
    original = _Measured(_solid(code))
    other = _Measured(_solid(code.replace("sphere(4)", "sphere(6)")))
    assert not is_scaled_copy(original, other, 1.0)
    assert not is_scaled_copy(original, original, 1.01)
