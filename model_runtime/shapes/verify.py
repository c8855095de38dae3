"""The judge: exact volume IoU of the rebuilt solid against the input, in the input's coordinates."""

from __future__ import annotations

from typing import Any

from model_runtime.metrics import intersection_volume


def volume_iou(a: Any, b: Any) -> float:
    va, vb = a.Volume(), b.Volume()
    inter = intersection_volume(a, b, va, vb)
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
