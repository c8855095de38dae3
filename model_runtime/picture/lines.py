"""The black edge lines FreeCAD draws, read as a line drawing of the part.

FreeCAD's isometric renders light the three axis-facing faces alike, so shading hides what the
edge lines show. This module reads two things from them: an **open top** (a box or cup seen from
above shows its rim as a second line parallel to the far outline, inset by the wall), and how much
of the drawing **inside the outline** a render leaves unexplained (a step, slot, pocket, rib or a
tube's bore draws lines there that a plain block does not).

Plain numpy on the full-resolution picture: no renderer, no sandbox.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image

from model_runtime.picture.images import foreground_mask
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
