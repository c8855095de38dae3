"""Holes: coaxial circular pockets that open on a face, read off a prism stack's inner circle runs.

A chain of circles on one centre over consecutive heights that opens on the top (or bottom) is a
hole: one radius is a plain hole (through or blind), a wider one above a narrower one a counterbore.
Equal holes at several centres become one hole step on all their points: a regular grid or a
circle of equally spaced points, which the feature plan turns into a linear or polar pattern.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from model_runtime.shapes.prism import Run, Stack

# Clearance (ISO 273 fine/medium) and tap-drill diameters, mm: a fitted diameter this close snaps.
STANDARD_DIAMETERS = (
    1.6, 2.0, 2.2, 2.4, 2.5, 2.9, 3.0, 3.2, 3.3, 3.4, 3.5, 4.0, 4.2, 4.3, 4.5, 5.0, 5.3, 5.5, 6.0, 6.4, 6.6,
    6.8, 7.0, 8.0, 8.4, 9.0, 10.0, 10.2, 10.5, 11.0, 12.0, 13.0, 14.0, 15.0, 16.0, 17.0, 17.5, 18.0, 20.0,
    22.0, 24.0, 26.0,
)  # fmt: skip


@dataclass
class Hole:
    center: tuple[float, float]  # in the stack's frame
    from_top: bool  # drilled from the top (along -axis) or from the bottom
    start: float  # height of the face it opens on
    levels: list[tuple[float, float]]  # (diameter, depth) from the opening inwards

    def key(self, digits: int = 4) -> tuple:
        return (
            self.from_top,
            round(self.start, digits),
            tuple((round(d, digits), round(h, digits)) for d, h in self.levels),
        )

    @property
    def kind(self) -> str:
        if len(self.levels) == 1:
            return "hole"
        return "cbore"

    @property
    def depth(self) -> float:
        return sum(h for _, h in self.levels)


def _inside(loop, p) -> bool:
    pts = loop.points(16)
    x, y = p
    inside = False
    n = len(pts)
    for i in range(n):
        x0, y0 = pts[i]
        x1, y1 = pts[(i + 1) % n]
        if (y0 > y) != (y1 > y) and x < (x1 - x0) * (y - y0) / (y1 - y0) + x0:
            inside = not inside
    return inside


def material_at(stack: Stack, p: tuple[float, float], z: float) -> bool:
    for slab in stack.slabs:
        if slab.z0 <= z <= slab.z1:
            for region in slab.regions:
                if _inside(region.outer, p) and not any(_inside(i, p) for i in region.inner):
                    return True
            return False
    return False


def find_holes(stack: Stack, eps: float = 1e-4) -> tuple[list[Hole], list[Run]]:
    """Holes found among the stack's inner circle runs, and the runs they do not explain."""
    circles = [r for r in stack.runs if r.inner and r.loop.is_circle]
    rest = [r for r in stack.runs if not (r.inner and r.loop.is_circle)]
    by_center: dict[tuple, list[Run]] = {}
    for run in circles:
        c = run.loop.segments[0].center
        by_center.setdefault((round(c[0], 4), round(c[1], 4)), []).append(run)
    holes: list[Hole] = []
    for center, runs in by_center.items():
        runs.sort(key=lambda r: r.z0)
        chains: list[list[Run]] = []
        for run in runs:
            if chains and abs(chains[-1][-1].z1 - run.z0) < 1e-7:
                chains[-1].append(run)
            else:
                chains.append([run])
        for chain in chains:
            hole = _as_hole(stack, center, chain, eps)
            if hole is None:
                rest.extend(chain)
            else:
                holes.append(hole)
    return holes, rest


def _as_hole(stack: Stack, center, chain: list[Run], eps: float) -> Hole | None:
    top, bottom = chain[-1].z1, chain[0].z0
    open_top = not material_at(stack, center, top + eps)
    open_bottom = not material_at(stack, center, bottom - eps)
    for from_top in (True, False) if open_top else (False,) if open_bottom else ():
        ordered = list(reversed(chain)) if from_top else list(chain)
        levels = [(2 * r.loop.segments[0].radius, r.z1 - r.z0) for r in ordered]
        if len(levels) == 1 or (len(levels) == 2 and levels[0][0] > levels[1][0]):
            return Hole(center, from_top, top if from_top else bottom, levels)
    return None


@dataclass
class HoleGroup:
    holes: list[Hole]
    polar: tuple[tuple[float, float], float, float] | None = None  # centre, radius, start angle (deg)


def group_holes(holes: list[Hole]) -> list[HoleGroup]:
    groups: dict[tuple, list[Hole]] = {}
    for h in holes:
        groups.setdefault(h.key(), []).append(h)
    out = []
    for members in groups.values():
        group = HoleGroup(members)
        if len(members) >= 3:
            group.polar = _polar(members)
        out.append(group)
    return out


def _polar(holes: list[Hole]):
    pts = np.array([h.center for h in holes])
    c = pts.mean(axis=0)
    r = np.hypot(*(pts - c).T)
    if r.min() < 1e-6 or r.max() - r.min() > 1e-4 * max(1.0, r.max()):
        return None
    ang = np.sort(np.degrees(np.arctan2(pts[:, 1] - c[1], pts[:, 0] - c[0])) % 360)
    step = 360 / len(holes)
    if np.abs(np.diff(ang) - step).max() > 1e-3:
        return None
    # Grids that are also circles (4 holes on a square): a grid reads better.
    if len(holes) == 4 and abs(ang[0] % 90 - 45) < 1e-3:
        return None
    return (float(c[0]), float(c[1])), float(r.mean()), float(ang[0])


def snap_diameter(d: float, tol: float) -> float:
    best = min(STANDARD_DIAMETERS, key=lambda s: abs(s - d))
    return best if abs(best - d) <= tol else d


def rotate(p, deg: float):
    a = math.radians(deg)
    return (p[0] * math.cos(a) - p[1] * math.sin(a), p[0] * math.sin(a) + p[1] * math.cos(a))
