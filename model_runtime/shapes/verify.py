"""The judge: exact volume IoU of the rebuilt solid against the input, in the input's coordinates."""

from __future__ import annotations

from typing import Any


def volume_iou(a: Any, b: Any) -> float:
    va, vb = a.Volume(), b.Volume()
    try:
        inter = a.intersect(b).Volume()
    except Exception:  # a boolean that fails is no match
        inter = -1.0
    if not 0 < inter <= min(va, vb) * (1 + 1e-6):
        # an empty or impossible common part is often a boolean that failed on faces that touch along
        # a line (a revolve whose radius is a hex's corner): once more with a fuzzy tolerance
        bb = a.BoundingBox()
        fuzz = 1e-6 * max(bb.xlen, bb.ylen, bb.zlen, 1.0)
        try:
            inter = a.intersect(b, tol=fuzz).Volume()
        except Exception:
            inter = -1.0
        if not 0 < inter <= min(va, vb) * (1 + 1e-4):  # a fuzzy common part may grow a hair
            # nearly equal solids (faces a hair apart) can defeat the common part but not the cut
            try:
                inter = va - a.cut(b, tol=fuzz).Volume()
            except Exception:
                return 0.0
        inter = min(inter, va, vb)
    union = va + vb - inter
    return max(0.0, min(1.0, inter / union)) if union > 0 else 0.0


def bbox_iou(a: Any) -> float:
    """IoU of the input against a box of its own bounding box: the floor any rebuild must beat."""
    import cadquery as cq

    bb = a.BoundingBox()
    box = cq.Solid.makeBox(bb.xlen, bb.ylen, bb.zlen, cq.Vector(bb.xmin, bb.ymin, bb.zmin))
    return volume_iou(a, box)


def run_program(code: str) -> Any:
    """Run a program this package wrote (trusted text, numbers from the input) and return its solid."""
    import cadquery as cq

    scope: dict = {"__name__": "__cadsnap_shapes__"}
    exec(compile(code, "<rebuilt>", "exec"), scope)
    result = scope["result"]
    shape = result.val() if isinstance(result, cq.Workplane) else result
    if isinstance(result, cq.Workplane) and len(result.vals()) > 1:
        shape = cq.Compound.makeCompound(result.vals())
    solids = shape.Solids()
    if len(solids) == 1:
        return solids[0]
    return shape
