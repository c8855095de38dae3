"""The dimension search of model_runtime.picture.refine, on scores we can reason about.

The real objective (sandbox, render, similarity to the picture) is exercised in test_pipeline.py.
"""

from __future__ import annotations

import re

import pytest

from model_runtime.picture.refine import parameters, refine, substitute

PROGRAM = """import cadquery as cq

# 99 mm in a comment is not a dimension
label = "45"
result = (
    cq.Workplane("XY")
    .box(30, 20, 10.0)
    .faces(">Z").workplane()
    .pushPoints([(-12, 0), (12, 0)])
    .hole(5)
)
"""


def _box(code: str) -> tuple[float, float, float]:
    found = re.search(r"\.box\(([^,]+), ([^,]+), ([^)]+)\)", code)
    return tuple(float(v) for v in found.groups())  # type: ignore[return-value]


def test_parameters_group_equal_literals_largest_first():
    params = parameters(PROGRAM)
    assert [p.value for p in params] == [30, 20, 12, 10, 5]
    twelve = params[2]
    assert [PROGRAM[a:b] for a, b in twelve.spans] == ["12", "12"]  # the symmetric pair moves together
    assert parameters("result = (") == []  # unparseable: nothing to fit


def test_angles_are_no_dimensions():
    # a fitted 360 spread a flange's six bolt holes over 277 degrees; sizes beside the angles still fit
    code = """import cadquery as cq
result = (cq.Workplane("XY").circle(85).extrude(15).faces(">Z").workplane()
    .polarArray(61.5, 7, 360, 6).cskHole(3.4, 6.5, 82)
    .transformed(rotate=(11, 12, 45), offset=(1, 2, 3)).slot2D(31, 5, 91))
result = result.rotate((0, 0, 0), (0, 0, 1), 33).union(tool.revolve(181, (0, 0, 0), (0, 1, 0)))
ring = cq.Workplane("XY").polarArray(4.5, startAngle=16, angle=270, count=4)
"""
    assert sorted(p.value for p in parameters(code)) == [1, 2, 3, 3.4, 4, 4.5, 5, 6, 6.5, 15, 31, 61.5, 85]
    named = """revolve_angle = 360
turn = 270
tilt_angle = -15
height = 89
result = cq.Workplane("XZ").polyline(pts).close().revolve(revolve_angle).rotate((0, 0, 0), (0, 0, 1), turn)
"""
    assert sorted(p.value for p in parameters(named)) == [1, 89]


def test_substitute_rewrites_every_place_a_parameter_is_written():
    params = parameters(PROGRAM)
    code = substitute(PROGRAM, {0: 37.5, 2: 15.6}, params)
    assert ".box(37.5, 20, 10.0)" in code and "[(-15.6, 0), (15.6, 0)]" in code
    assert '"45"' in code and "99 mm" in code
    compile(code, "<refined>", "exec")
    assert substitute(PROGRAM, {}, params) == PROGRAM


def test_refine_moves_the_dimension_that_pays_and_keeps_the_rest():
    def score(code: str) -> float:  # best at a 42 x 20 box
        length, width, _ = _box(code)
        return 1.0 - abs(length - 42) / 100 - abs(width - 20) / 100

    result = refine(PROGRAM, score, max_evaluations=100, time_budget_s=30)
    length, width, height = _box(result.code)
    assert abs(length - 42) < 2.5 and width == 20 and height == 10
    assert result.score > result.start_score + 0.09 and result.score == pytest.approx(score(result.code))
    assert result.changed == 1 and "(-12, 0), (12, 0)" in result.code


def test_refine_never_returns_a_worse_program():
    result = refine(PROGRAM, lambda code: 1.0 if code == PROGRAM else 0.5, max_evaluations=30)
    assert result.code == PROGRAM and result.score == 1.0 and result.changed == 0


def test_an_integer_that_breaks_the_program_is_left_alone():
    code = "import cadquery as cq\nresult = cq.Workplane().polygon(6, 20).extrude(8)\n"
    calls: list[str] = []

    def score(candidate: str) -> float | None:
        calls.append(candidate)
        sides = re.search(r"polygon\(([^,]+),", candidate).group(1)
        if sides != "6":
            return None  # a float side count fails, as in CadQuery
        return 1.0 - abs(_extrude(candidate) - 12) / 100

    def _extrude(candidate: str) -> float:
        return float(re.search(r"extrude\(([^)]+)\)", candidate).group(1))

    result = refine(code, score, max_evaluations=60)
    assert "polygon(6," in result.code and _extrude(result.code) > 10
    assert sum("polygon(6," not in c for c in calls) == 1  # tried once, then frozen


def test_refine_stops_at_its_budget_and_when_cancelled():
    calls = []

    def score(code: str) -> float:
        calls.append(code)
        return len(calls)  # every change "pays": only the budget stops the search

    result = refine(PROGRAM, score, max_evaluations=7, time_budget_s=30)
    assert result.evaluations == 7 == len(calls)
    calls.clear()
    result = refine(PROGRAM, score, start_score=0.0, cancelled=lambda: True)
    assert result.evaluations == 0 and result.code == PROGRAM
    with pytest.raises(ValueError):
        refine(PROGRAM, lambda code: None)
