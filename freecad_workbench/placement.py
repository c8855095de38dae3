"""Where a new solid goes and how big it should be, from what the 3D view showed. No FreeCAD.

Boxes are ``(xmin, ymin, zmin, xmax, ymax, zmax)`` in millimetres, as FreeCAD's BoundBox gives them.
"""

from __future__ import annotations

Box = tuple[float, float, float, float, float, float]


def largest_dimension(box: Box) -> float:
    return max(box[3] - box[0], box[4] - box[1], box[5] - box[2])


def union(boxes: list[Box]) -> Box | None:
    if not boxes:
        return None
    return (min(b[0] for b in boxes), min(b[1] for b in boxes), min(b[2] for b in boxes),
            max(b[3] for b in boxes), max(b[4] for b in boxes), max(b[5] for b in boxes))


def target_size(visible: Box | None) -> float | None:
    """The overall size to ask for: the largest dimension of what the capture showed, to 0.1 mm."""
    if visible is None:
        return None
    size = round(largest_dimension(visible), 1)
    return size if size > 0 else None


def beside(visible: Box, new: Box, gap_ratio: float = 0.2,
           min_gap_mm: float = 2.0) -> tuple[float, float, float]:
    """The offset that puts ``new`` next to ``visible`` along +X, a gap apart, their fronts and bottoms
    aligned, so the new solid never lands inside the part it was captured from."""
    gap = max(min_gap_mm, gap_ratio * largest_dimension(visible))
    return (visible[3] + gap - new[0], visible[1] - new[1], visible[2] - new[2])


def overlaps(a: Box, b: Box) -> bool:
    return all(a[i] < b[i + 3] and b[i] < a[i + 3] for i in range(3))
