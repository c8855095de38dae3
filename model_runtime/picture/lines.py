"""The black edge lines FreeCAD draws, read as a line drawing of the part.

FreeCAD's isometric renders light the three axis-facing faces alike, so shading hides what the
edge lines show. This module reads three things from them: an **open top** (a box or cup seen from
above shows its rim as a second line parallel to the far outline, inset by the wall), the **circles
drawn on the visible faces** (a hole's rim: an ellipse whose shape says which face it lies on), and
how much of the drawing **inside the outline** a render leaves unexplained (a step, slot, pocket,
rib or a tube's bore draws lines there that a plain block does not).

Plain numpy on the full-resolution picture: no renderer, no sandbox.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image

from model_runtime.picture.envelope import AXIS_DIRECTION
from model_runtime.picture.images import foreground_mask, part_and_see_through
from model_runtime.picture.similarity import Silhouette, dilate

DARK = 70  # grey level below which a pixel inside the part is an edge line
RIM_WINDOW = 0.12  # the rim is looked for this far below the top outline, as a share of the height
RIM_AGREE = 0.6  # share of the far outline's columns whose first line below agrees on one inset
RIM_SPREAD = 2  # px: how far a column's inset may stray from the median and still agree


def open_top(picture: Image.Image) -> float | None:
    """The wall thickness of an open top, as a share of the part's plan size (its X + Y extents),
    or None when the picture shows no rim line parallel to the far outline."""
    mask = foreground_mask(picture)
    if not mask.any() or mask.all():
        return None
    grey = np.asarray(picture.convert("L"), dtype=np.float32)
    dark = (grey < DARK) & mask
    cols = np.flatnonzero(mask.any(axis=0))
    rows = np.flatnonzero(mask.any(axis=1))
    width, height = cols[-1] - cols[0] + 1, rows[-1] - rows[0] + 1
    if width < 40 or height < 20:
        return None
    window = max(6, round(RIM_WINDOW * height))
    # the far outline's columns, clear of the left, right and top corners
    lo, hi = cols[0] + round(0.15 * width), cols[-1] - round(0.15 * width)
    middle = (cols[0] + cols[-1]) / 2
    insets = []
    for x in range(lo, hi + 1):
        if abs(x - middle) < 0.08 * width:
            continue
        top = int(np.argmax(mask[:, x]))
        y = top
        while y < top + window and dark[y, x]:  # the outline's own line
            y += 1
        start = y
        while y < top + window and not dark[y, x]:
            y += 1
        insets.append(y - top if y < top + window and y - start >= 2 else None)
    found = [d for d in insets if d is not None]
    if not insets or len(found) < RIM_AGREE * len(insets):
        return None
    median = float(np.median(found))
    agree = sum(abs(d - median) <= RIM_SPREAD for d in found)
    if agree < RIM_AGREE * len(insets):
        return None
    # a rim of wall w lies 2 w / sqrt 6 below a far top edge; the picture's width is (X + Y) / sqrt 2
    wall_px = median * math.sqrt(6.0) / 2.0
    return float(wall_px / (width * math.sqrt(2.0)))


def unexplained_lines(reference: Silhouette, render: Silhouette) -> float:
    """Share of the picture's edge pixels inside its outline (two grid cells clear of it) that lie
    off every edge of ``render``: 0 when the render draws every line the picture shows."""
    from scipy import ndimage

    inner = ndimage.binary_erosion(reference.mask, iterations=2)
    lines = reference.edges & inner
    total = int(lines.sum())
    if total == 0:
        return 0.0
    return float((lines & ~dilate(render.edges)).sum() / total)


# The faces FreeCAD's isometric camera sees, each by its normal's axis (>Z, >X, <Y), with the two
# model axes that span it in the order CadQuery's workplane on that face uses them (local x, y).
VISIBLE_FACES = {"Z": ("X", "Y"), "X": ("Y", "Z"), "Y": ("X", "Z")}
CIRCLE_SHAPE_TOL = 0.08  # how far a region's second moments may stray from a drawn circle's
CIRCLE_FILL = (0.8, 1.25)  # its area over the area of the ellipse its moments describe
MIN_CIRCLE_PX = 6.0  # narrower rims are specks and text
MAX_CIRCLE_SHARE = 0.3  # a hole region above this share of the part's area is a face, not a hole
SLOT_FILL = (0.8, 1.05)  # a slot's area over the rectangle its moments describe, on its face's plane
SQUARE_ENDS = 0.94  # share of its box on the face's plane that a rectangle fills (a slot's ends do not)
# ... and that a circle fills at most (pi / 4, blurred): a square pocket's moments are a disc's
ROUND_BOX = 0.88
SLOT_SQUARE_DEG = 6.0  # a slot runs along one of its face's axes, to within this
MIN_SLOT_RATIO = 2.0  # length over width: rounder regions are holes or pockets
MIN_SLOT_PX = 6.0  # narrower "slots" are lines drawn close together (a lip, a thin face)


@dataclass(frozen=True)
class Circle:
    """A circle drawn on a visible face: its face (``VISIBLE_FACES``), centre and diameter in pixels."""

    face: str
    x: float
    y: float
    diameter: float


@dataclass(frozen=True)
class Slot:
    """A slot (``rounded`` ends) or a rectangular pocket or window drawn on a visible face: centre in
    pixels, length and width in pixels on the face's own plane, ``along`` 0 or 90 (degrees from the
    face's first axis); ``through`` when the backdrop shows through it."""

    face: str
    x: float
    y: float
    length: float
    width: float
    along: int
    rounded: bool = True
    through: bool = False


@dataclass(frozen=True)
class Drawing:
    """What the edge lines enclose inside the part, and the part's pixel box (left, top, right, bottom)."""

    circles: list[Circle]
    slots: list[Slot]
    frame: tuple[int, int, int, int]


def _face_projections() -> dict[str, np.ndarray]:
    """Each visible face's 2x2 projection: its two axes' image directions (pixels per model unit)."""
    return {face: np.stack([AXIS_DIRECTION[a], AXIS_DIRECTION[b]], axis=1)
            for face, (a, b) in VISIBLE_FACES.items()}


def _face_moments() -> dict[str, np.ndarray]:
    """Each visible face's drawn circle as second moments of unit trace: a disc's moments projected
    along the face's two axes (all three have the same trace, 4/3 r^2/4, under the isometric camera)."""
    out = {}
    for face, p in _FACE_PROJECTIONS.items():
        m = p @ p.T
        out[face] = m / np.trace(m)
    return out


_FACE_PROJECTIONS = _face_projections()
_FACE_INVERSES = {face: np.linalg.inv(p) for face, p in _FACE_PROJECTIONS.items()}  # image -> face plane
_FACE_MOMENTS = _face_moments()


def drawn_features(picture: Image.Image) -> Drawing | None:
    """The closed circles and slots the edge lines draw inside the part, each on the visible face
    whose projection it matches; None without a part.

    A hole's rim encloses everything seen through it (its wall, its floor, the background), so the
    small regions the lines enclose are grouped and filled. A group whose second moments are a
    projected disc's is a circle: that gives its face, centre and, from the moments' size, its
    diameter. Another is a slot where, mapped back onto one face's plane, it is a long rectangle along
    one of that face's axes, and it shows depth (two regions, or the background through it)."""
    from scipy import ndimage

    part, through = part_and_see_through(picture)
    inside = ndimage.binary_fill_holes(part | through)
    if not inside.any() or inside.all():
        return None
    ys, xs = np.nonzero(inside)
    frame = (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1)
    grey = np.asarray(picture.convert("L"), dtype=np.float32)
    lines = (grey < DARK) & part
    labels, count = ndimage.label(inside & ~lines)
    if count == 0:
        return Drawing([], [], frame)
    total = float(inside.sum())
    areas = ndimage.sum_labels(np.ones_like(labels), labels, index=np.arange(1, count + 1))
    touching = np.unique(labels[ndimage.binary_dilation(~inside, iterations=3)])
    small = [k + 1 for k, area in enumerate(areas) if area <= MAX_CIRCLE_SHARE * total]
    pieces = np.isin(labels, np.setdiff1d(small, touching))
    groups, _ = ndimage.label(ndimage.binary_dilation(pieces, iterations=2))
    circles, slots = [], []
    for g, window in enumerate(ndimage.find_objects(groups), start=1):
        own = pieces[window] & (groups[window] == g)
        region = ndimage.binary_fill_holes(ndimage.binary_dilation(own))
        ry, rx = np.nonzero(region)
        if len(rx) < 12:
            continue
        x, y = float(rx.mean() + window[1].start), float(ry.mean() + window[0].start)
        offsets = np.stack([rx, ry]).astype(float)
        circle = _as_circle(offsets)
        if circle is not None:
            circles.append(Circle(circle[0], x, y, circle[1]))
            continue
        # a slot shows its wall and what lies beyond it (a floor, the background); a face of the part
        # that looks like a strip (a hexagon's side, a channel's lip) is one region of one colour
        sees_through = bool(through[window][own].any())
        shows_depth = sees_through or len(np.unique(labels[window][own])) >= 2
        slot = _as_slot(offsets) if shows_depth else None
        if slot is not None:
            slots.append(Slot(slot[0], x, y, *slot[1:], through=sees_through))
    return Drawing(circles, slots, frame)


def _as_circle(pixels: np.ndarray) -> tuple[str, float] | None:
    """(face, diameter px) when the filled region ``pixels`` (2 x n) is a circle drawn on a face."""
    moments = np.cov(pixels)
    trace = float(np.trace(moments))
    face = min(_FACE_MOMENTS, key=lambda f: np.abs(moments / trace - _FACE_MOMENTS[f]).max())
    radius = math.sqrt(3.0 * trace)  # a disc's projected moments have trace r^2 / 3
    fill = pixels.shape[1] / (math.pi * radius * radius / math.sqrt(3.0))
    if (np.abs(moments / trace - _FACE_MOMENTS[face]).max() > CIRCLE_SHAPE_TOL
            or not CIRCLE_FILL[0] <= fill <= CIRCLE_FILL[1] or 2 * radius < MIN_CIRCLE_PX
            or _boxed(pixels, face)[0] > ROUND_BOX):
        return None
    return face, 2 * radius


def _boxed(pixels: np.ndarray, face: str) -> tuple[float, float, float]:
    """(share of its box it fills, extent along the face's first axis, along its second) of the
    region ``pixels`` mapped back onto ``face``'s plane (pixel units)."""
    inverse = _FACE_INVERSES[face]
    plane = inverse @ pixels
    extents = np.ptp(plane, axis=1) + 1.0  # a pixel's own width
    area = pixels.shape[1] * abs(float(np.linalg.det(inverse)))
    return area / float(extents[0] * extents[1]), float(extents[0]), float(extents[1])


def _as_slot(pixels: np.ndarray) -> tuple[str, float, float, int, bool] | None:
    """(face, length px, width px, along, rounded) when the filled region ``pixels`` (2 x n), mapped
    back onto a face's plane, is a rectangle along the face's axes (it fills its box there) or a long
    stadium along one of them (a slot)."""
    rectangles, slots = [], []
    for face, inverse in _FACE_INVERSES.items():
        filled, extent_a, extent_b = _boxed(pixels, face)
        length, width = max(extent_a, extent_b), min(extent_a, extent_b)
        along = 0 if extent_a >= extent_b else 90
        if width < MIN_SLOT_PX:
            continue
        if filled >= SQUARE_ENDS:
            rectangles.append((-filled, face, length, width, along, False))
            continue
        values, vectors = np.linalg.eigh(inverse @ np.cov(pixels) @ inverse.T)
        moment_width, moment_length = (math.sqrt(12.0 * max(v, 0.0)) for v in values)  # a rectangle's
        angle = math.degrees(math.atan2(vectors[1, 1], vectors[0, 1])) % 180.0
        square = min((0, 90, 180), key=lambda a: abs(angle - a))
        fill = pixels.shape[1] * abs(np.linalg.det(inverse)) / max(moment_length * moment_width, 1e-9)
        if (abs(angle - square) <= SLOT_SQUARE_DEG and SLOT_FILL[0] <= fill <= SLOT_FILL[1]
                and length >= MIN_SLOT_RATIO * width and along == square % 180):
            slots.append((abs(angle - square), face, length, width, along, True))
    found = min(rectangles, default=None) or min(slots, default=None)
    return None if found is None else found[1:]
