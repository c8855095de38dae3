"""Geometry metrics on real CadQuery solids, with answers known in closed form."""

from __future__ import annotations

import math

import cadquery as cq
import pytest

from model_runtime.metrics import Score, chamfer, iou, normalize_bbox, sample_surface, summarize, vsr


def box(x=1.0, y=1.0, z=1.0) -> cq.Workplane:
    return cq.Workplane("XY").box(x, y, z)


def test_identical_shapes_have_iou_one_and_chamfer_zero():
    part = box(3, 2, 1).faces(">Z").workplane().hole(0.5)
    assert iou(part, part) == pytest.approx(1.0, abs=1e-9)
    assert chamfer(part, part, n_points=2048) == pytest.approx(0.0, abs=1e-12)


def test_unit_boxes_overlapping_by_half_have_iou_one_third():
    a, b = box(), box().translate((0.5, 0, 0))
    assert iou(a, b, align="none") == pytest.approx(1 / 3, abs=1e-9)
    # Bounding-box normalisation removes the offset.
    assert iou(a, b) == pytest.approx(1.0, abs=1e-9)


def test_scaled_copy_is_identical_after_normalisation():
    part = cq.Workplane("XY").circle(10).extrude(4).faces(">Z").workplane().rect(6, 3).cutThruAll()
    scaled = part.val().scale(3.7).translate((5, -2, 9))
    assert iou(part, scaled) == pytest.approx(1.0, abs=1e-6)
    assert iou(part, scaled, align="none") < 0.2
    # Meshes of the two copies may differ slightly; independent samplings of one surface at 2048
    # points already give ~0.7, so 0.1 means "the same surface".
    assert chamfer(part, scaled, n_points=2048) < 0.1


def test_partial_overlap_known_value():
    a = box(2, 1, 1)  # normalised: 1 x 0.5 x 0.5
    b = box(2, 1, 0.5)  # normalised: 1 x 0.5 x 0.25, inside a's 1 x 0.5 x 0.5
    assert iou(a, b) == pytest.approx(0.5, abs=1e-9)


def test_principal_alignment_undoes_rotation_bbox_does_not():
    part = box(4, 2, 1).faces(">Z").workplane().center(1, 0).hole(0.6)
    turned = part.val().rotate((0, 0, 0), (0, 0, 1), 90).translate((3, 3, 3))
    assert iou(part, turned, align="principal") == pytest.approx(1.0, abs=1e-4)
    assert iou(part, turned) < 0.6
    assert chamfer(part, turned, n_points=2048, align="principal") < 0.1


def test_chamfer_orders_similarity_and_is_symmetric():
    ref = box(2, 2, 1)
    near = box(2, 2, 1.1)
    far = cq.Workplane("XY").circle(1).extrude(1)
    d_near = chamfer(ref, near, n_points=4096)
    d_far = chamfer(ref, far, n_points=4096)
    assert 0 < d_near < d_far
    assert chamfer(near, ref, n_points=4096) == pytest.approx(d_near, rel=0.2)


def test_sampling_is_uniform_by_area():
    import numpy as np

    # A 10 x 1 x 1 box: the four long faces hold 40 of 42 area units.
    pts = sample_surface(box(10, 1, 1).val(), 20000, np.random.default_rng(1))
    on_ends = np.isclose(np.abs(pts[:, 0]), 5.0).mean()
    assert on_ends == pytest.approx(2 / 42, abs=0.01)


def test_normalisation_fits_unit_box():
    b = normalize_bbox(box(8, 4, 2).translate((10, 10, 10)).val()).BoundingBox()
    assert (b.xlen, b.ylen, b.zlen) == pytest.approx((1.0, 0.5, 0.25))
    assert (b.center.x, b.center.y, b.center.z) == pytest.approx((0, 0, 0), abs=1e-9)


def test_bad_inputs_are_typed():
    flat = cq.Workplane("XY").rect(1, 1).extrude(1).faces(">Z").val()  # a face: no volume
    with pytest.raises(ValueError):
        iou(flat, box())
    with pytest.raises(TypeError):
        iou("box", box())  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        iou(box(), box(), align="sideways")  # type: ignore[arg-type]


def test_vsr_and_summary_count_failures_as_zero():
    scores = [Score(True, 1.0, 0.0), Score(True, 0.5, 2.0), Score(False), Score(False)]
    assert vsr(scores) == 0.5
    assert vsr([True, None, ValueError("x"), box()]) == 0.5
    s = summarize(scores)
    assert s["iou_mean"] == pytest.approx(0.375)
    assert s["iou_mean_valid"] == pytest.approx(0.75)
    assert s["chamfer_median_valid"] == pytest.approx(1.0)
    assert s["n"] == 4 and s["n_valid"] == 2
    with pytest.raises(ValueError):
        vsr([])
    assert math.isclose(summarize([Score(False)])["iou_mean"], 0.0)


def test_solids_whose_normalised_faces_coincide_still_overlap(tmp_path):
    """A slip-on flange (bd_warehouse, Apache-2.0, exported to STEP) against a right-sized answer:
    after normalisation their rims coincide and OCC's common part comes back empty; the IoU must
    still see the overlap (0.70 with one solid moved by 1e-4; 0.74 by sampling random points)."""
    import gzip
    from pathlib import Path

    step = tmp_path / "flange.step"
    packed = Path(__file__).parent / "data" / "slip_on_flange.step.gz"
    step.write_bytes(gzip.decompress(packed.read_bytes()))
    truth = cq.importers.importStep(str(step)).val()
    # six bolt holes spread over 608 degrees, and over a full turn: there OCC's common part came back
    # as a 1e-16 sliver
    for spread in (608.4, 360):
        answer = (
            cq.Workplane("XY").circle(85).extrude(17)
            .faces(">Z").workplane().polarArray(63.5, 0, spread, 6).hole(9)
            .faces(">Z").workplane().circle(45).extrude(12)
            .faces(">Z").workplane().hole(60)
            .faces(">Z").workplane(centerOption="CenterOfBoundBox").polarArray(61, 0, 360, 4).hole(20)
        )
        assert 0.65 < iou(answer, truth) < 0.8, spread
