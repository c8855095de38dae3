"""Geometry metrics, as DESIGN.md defines them: IoU, Chamfer distance and VSR.

- IoU: exact OCC boolean volumes, ``|A ∩ B| / (|A| + |B| - |A ∩ B|)``, after each shape is
  normalised. ``align="bbox"`` (the default, ours): centre each shape on its bounding box and scale
  its largest extent to 1, no rotation. ``align="principal"``: CAD-Coder's variant for comparison
  with published numbers: centre on the centre of mass, scale by the inertia radius
  ``sqrt(sum|eigenvalues| / volume)``, rotate the principal axes onto each other and keep the best of
  the four sign choices (proper rotations only). ``align="none"`` compares the shapes as they are.
- Chamfer: mean squared nearest-neighbour distance from A's surface samples to B's plus the same
  from B to A, ``n_points`` area-weighted samples each, same normalisation, times 1000.
- VSR: share of outputs that ran and gave one valid non-empty solid. In the headline mean IoU a
  failure counts as 0 (``summarize`` reports both that mean and the mean over valid outputs).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

if TYPE_CHECKING:
    import cadquery as cq

Align = Literal["bbox", "principal", "none"]
ALIGNMENTS: tuple[str, ...] = ("bbox", "principal", "none")
CHAMFER_SCALE = 1000.0
# Mesh fineness for surface sampling, relative to the normalised size (largest extent about 1).
_MESH_TOLERANCE = 1e-3
_MESH_ANGULAR_TOLERANCE = 0.1


def as_shape(obj: cq.Shape | cq.Workplane) -> cq.Shape:
    """A single cadquery Shape from a Shape or a Workplane (several objects become a compound)."""
    import cadquery as cq

    if isinstance(obj, cq.Workplane):
        shapes = [v for v in obj.vals() if isinstance(v, cq.Shape)]
        if not shapes:
            raise ValueError("the Workplane holds no shape")
        return shapes[0] if len(shapes) == 1 else cq.Compound.makeCompound(shapes)
    if isinstance(obj, cq.Shape):
        return obj
    raise TypeError(f"expected a cadquery Shape or Workplane, got {type(obj).__name__}")


def _solid_volume(shape: cq.Shape) -> float:
    if not shape.Solids():
        raise ValueError(f"shape is a {shape.ShapeType()} with no solid; IoU needs solids")
    volume = shape.Volume()
    if not volume > 0:
        raise ValueError(f"shape has no volume ({volume:.3g}); IoU needs solids")
    return volume


def normalize_bbox(shape: cq.Shape) -> cq.Shape:
    """Centre on the bounding box, scale the largest extent to 1 (no rotation)."""
    box = shape.BoundingBox()
    extent = max(box.xlen, box.ylen, box.zlen)
    if not extent > 0:
        raise ValueError("shape has an empty bounding box")
    return shape.translate(-box.center).scale(1.0 / extent)


def _transform(shape: cq.Shape, rotation: np.ndarray) -> cq.Shape:
    """Rotate about the origin; through a quaternion so OCC gets an exactly orthogonal transform."""
    import cadquery as cq
    from OCP.gp import gp_Quaternion, gp_Trsf
    from scipy.spatial.transform import Rotation

    x, y, z, w = Rotation.from_matrix(rotation).as_quat()
    trsf = gp_Trsf()
    trsf.SetRotation(gp_Quaternion(float(x), float(y), float(z), float(w)))
    return shape.moved(cq.Location(trsf))


def _principal_frame(shape: cq.Shape) -> tuple[cq.Shape, np.ndarray]:
    """The shape centred on its centre of mass and scaled by its inertia radius, and its axes."""
    import cadquery as cq

    volume = _solid_volume(shape)
    centre = cq.Shape.centerOfMass(shape)
    inertia = np.array(cq.Shape.matrixOfInertia(shape))
    eigenvalues, axes = np.linalg.eigh(inertia)
    if np.linalg.det(axes) < 0:  # keep a right-handed frame so alignment is a rotation, not a mirror
        axes[:, 2] = -axes[:, 2]
    scale = math.sqrt(float(np.abs(eigenvalues).sum()) / volume)
    if not scale > 0:
        raise ValueError("shape has a degenerate inertia tensor")
    return shape.translate(-centre).scale(1.0 / scale), axes


def intersection_volume(a: cq.Shape, b: cq.Shape, va: float | None = None, vb: float | None = None) -> float:
    """The volume two solids share, robust to OCC booleans that fail without an error.

    After normalisation two parts' extreme faces often coincide exactly; OCC then may return an
    empty common part, or a sliver of rounding noise (and an unchanged cut), for solids that overlap
    most of their volume. So an empty, negligible or impossible answer is retried with a fuzzy
    tolerance, then through the cut, then with one solid moved by a hair off every axis (the IoU
    moves by ~1e-5; without it a right-sized answer scored 0)."""
    va = a.Volume() if va is None else va
    vb = b.Volume() if vb is None else vb
    largest = min(va, vb)
    bb = a.BoundingBox()
    size = max(bb.xlen, bb.ylen, bb.zlen, 1e-9)

    def plausible(value: float, slack: float) -> bool:
        # a sliver of 1e-16 of the volume is a failed boolean's rounding noise, not an overlap
        return largest * 1e-7 < value <= largest * (1 + slack)

    attempts = (
        lambda: a.intersect(b).Volume(),
        lambda: a.intersect(b, tol=1e-6 * size).Volume(),  # faces that touch along a line
        lambda: va - a.cut(b, tol=1e-6 * size).Volume(),  # nearly equal solids defeat the common part
        lambda: a.translate((3e-6 * size, 5e-6 * size, 7e-6 * size)).intersect(b).Volume(),
    )
    for attempt in attempts:
        try:
            inter = attempt()
        except Exception:  # noqa: BLE001 - a failed boolean: try the next way
            continue
        if plausible(inter, 1e-4):
            return min(inter, largest)
    return 0.0  # disjoint (or every boolean failed)


def _iou_of(a: cq.Shape, b: cq.Shape) -> float:
    va, vb = _solid_volume(a), _solid_volume(b)
    inter = intersection_volume(a, b, va, vb)
    return inter / (va + vb - inter)


_SIGN_FLIPS = [np.diag(s) for s in ((1, 1, 1), (1, -1, -1), (-1, 1, -1), (-1, -1, 1))]


def iou(a: cq.Shape | cq.Workplane, b: cq.Shape | cq.Workplane, align: Align = "bbox") -> float:
    """Volume IoU in [0, 1] of two solids after normalisation (see the module docstring)."""
    sa, sb = as_shape(a), as_shape(b)
    if align == "none":
        return _iou_of(sa, sb)
    if align == "bbox":
        return _iou_of(normalize_bbox(sa), normalize_bbox(sb))
    if align == "principal":
        na, axes_a = _principal_frame(sa)
        nb, axes_b = _principal_frame(sb)
        return max(_iou_of(_transform(na, axes_b @ flip @ axes_a.T), nb) for flip in _SIGN_FLIPS)
    raise ValueError(f"unknown alignment {align!r}; choose among {ALIGNMENTS}")


def sample_surface(shape: cq.Shape, n_points: int, rng: np.random.Generator) -> np.ndarray:
    """``n_points`` points drawn uniformly by area from the shape's triangulated surface."""
    vertices, triangles = shape.tessellate(_MESH_TOLERANCE * _size(shape), _MESH_ANGULAR_TOLERANCE)
    if not triangles:
        raise ValueError("shape has no surface to sample")
    v = np.array([(p.x, p.y, p.z) for p in vertices], dtype=np.float64)
    t = np.array(triangles, dtype=np.int64)
    p0, p1, p2 = v[t[:, 0]], v[t[:, 1]], v[t[:, 2]]
    areas = 0.5 * np.linalg.norm(np.cross(p1 - p0, p2 - p0), axis=1)
    chosen = rng.choice(len(t), size=n_points, p=areas / areas.sum())
    r1 = np.sqrt(rng.random(n_points))[:, None]
    r2 = rng.random(n_points)[:, None]
    return (1 - r1) * p0[chosen] + r1 * (1 - r2) * p1[chosen] + r1 * r2 * p2[chosen]


def _size(shape: cq.Shape) -> float:
    box = shape.BoundingBox()
    return max(box.xlen, box.ylen, box.zlen, 1e-12)


def chamfer(
    a: cq.Shape | cq.Workplane,
    b: cq.Shape | cq.Workplane,
    n_points: int = 8192,
    seed: int = 0,
    align: Align = "bbox",
) -> float:
    """Chamfer distance ×1000 between two shapes' surfaces after normalisation (lower is better)."""
    from scipy.spatial import cKDTree

    sa, sb = as_shape(a), as_shape(b)
    if align == "bbox":
        sa, sb = normalize_bbox(sa), normalize_bbox(sb)
    elif align == "principal":
        na, axes_a = _principal_frame(sa)
        nb, axes_b = _principal_frame(sb)
        # Use the rotation that IoU would pick, so both metrics compare the same alignment.
        candidates = [_transform(na, axes_b @ flip @ axes_a.T) for flip in _SIGN_FLIPS]
        sa, sb = max(candidates, key=lambda c: _iou_of(c, nb)), nb
    elif align != "none":
        raise ValueError(f"unknown alignment {align!r}; choose among {ALIGNMENTS}")
    # One stream per shape, same seed: identical shapes get identical samples (distance exactly 0).
    pa = sample_surface(sa, n_points, np.random.default_rng(seed))
    pb = sample_surface(sb, n_points, np.random.default_rng(seed))
    d_ab, _ = cKDTree(pb).query(pa)
    d_ba, _ = cKDTree(pa).query(pb)
    return float((np.mean(d_ab**2) + np.mean(d_ba**2)) * CHAMFER_SCALE)


@dataclass(frozen=True)
class Score:
    """One output's outcome: valid (ran and gave one good solid) and, when valid, its metrics."""

    valid: bool
    iou: float | None = None
    chamfer: float | None = None


def _is_valid(outcome: Any) -> bool:
    if isinstance(outcome, Score):
        return outcome.valid
    if outcome is None or isinstance(outcome, BaseException):
        return False
    if isinstance(outcome, bool):
        return outcome
    return True  # an ExecResult or a shape: the run gave a solid


def vsr(outcomes: Iterable[Any]) -> float:
    """Valid syntax rate: the share of outcomes that are valid.

    An outcome is a Score, a bool, an ExecResult/shape (valid) or None/an exception (invalid).
    """
    flags = [_is_valid(o) for o in outcomes]
    if not flags:
        raise ValueError("vsr of no outcomes is undefined")
    return sum(flags) / len(flags)


def summarize(scores: Sequence[Score]) -> dict[str, float | int | None]:
    """Headline numbers: failures count as IoU 0 in ``iou_mean``; ``*_valid`` use valid outputs only."""
    valid = [s for s in scores if s.valid]
    ious = [s.iou for s in valid if s.iou is not None]
    chamfers = [s.chamfer for s in valid if s.chamfer is not None]
    n = len(scores)
    return {
        "n": n,
        "n_valid": len(valid),
        "vsr": vsr(scores) if n else None,
        "iou_mean": (sum(ious) / n) if n else None,
        "iou_mean_valid": statistics.fmean(ious) if ious else None,
        "iou_median_valid": statistics.median(ious) if ious else None,
        "chamfer_mean_valid": statistics.fmean(chamfers) if chamfers else None,
        "chamfer_median_valid": statistics.median(chamfers) if chamfers else None,
    }
