"""Extrusions and pockets along one axis: cut the solid into slabs between its cap heights, take the
exact cross-section of each, and turn runs of equal loops into pads (outer loops) and pockets
(inner loops). A slab crossed by a face that is not made of lines along the axis (a fillet across
it, a chamfer, a cone) is marked not prismatic: its section is an approximation that the IoU check
and the residual step account for.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from model_runtime.shapes.graph import FaceGraph, prismatic_along
from model_runtime.shapes.profile import Frame, Loop, Region, face_regions


@dataclass
class Slab:
    z0: float
    z1: float
    regions: list[Region]
    prismatic: bool


@dataclass
class Run:
    """One loop repeated over consecutive slabs: a pad (outer) or a pocket (inner) from z0 to z1."""

    loop: Loop
    z0: float
    z1: float
    inner: bool
    depth: int = 0  # nesting: an island inside another region's hole has depth 1


@dataclass
class Stack:
    frame: Frame
    slabs: list[Slab]
    runs: list[Run] = field(default_factory=list)

    @property
    def prismatic(self) -> bool:
        return all(s.prismatic for s in self.slabs)


def _height_range(face: Any, frame: Frame) -> tuple[float, float]:
    hs = [frame.height((v.X, v.Y, v.Z)) for v in face.Vertices()]
    for edge in face.Edges():
        for t in np.linspace(0, 1, 9):
            p = edge.positionAt(t)
            hs.append(frame.height((p.x, p.y, p.z)))
    return min(hs), max(hs)


def _merge_levels(values: list[float], tol: float) -> list[float]:
    out: list[float] = []
    for v in sorted(values):
        if out and v - out[-1] < tol:
            continue
        out.append(v)
    return out


def section(solid: Any, frame: Frame, z: float, size: float) -> list[Any]:
    import cadquery as cq

    o = frame.world(0, 0, z)
    plane = cq.Face.makePlane(4 * size, 4 * size, basePnt=cq.Vector(*o), dir=cq.Vector(*frame.normal))
    common = solid.intersect(plane)
    return list(common.Faces())


def slice_stack(
    solid: Any,
    graph: FaceGraph,
    frame: Frame,
    tol: float = 1e-6,
    fit_tol: float = 1e-3,
    level_tol: float = 1e-4,
) -> Stack:
    bb = solid.BoundingBox()
    size = max(bb.xlen, bb.ylen, bb.zlen, 1e-3)
    levels: list[float] = []
    curved: list[tuple[float, float]] = []
    for f in graph.faces:
        how = prismatic_along(f, frame.normal, tol)
        if how == "cap":
            levels.append(frame.height(f.location))
        elif how == "other":
            lo, hi = _height_range(f.face, frame)
            levels += [lo, hi]
            curved.append((lo, hi))
    lo_all, hi_all = _height_range_solid(solid, frame)
    levels += [lo_all, hi_all]
    levels = [z for z in _merge_levels(levels, level_tol) if lo_all - level_tol <= z <= hi_all + level_tol]
    slabs: list[Slab] = []
    for z0, z1 in zip(levels, levels[1:], strict=False):
        if z1 - z0 < level_tol:
            continue
        prismatic = not any(lo < z1 - level_tol and hi > z0 + level_tol for lo, hi in curved)
        faces = section(solid, frame, (z0 + z1) / 2, size)
        regions = [face_regions(f, frame, 1e-5 * size, fit_tol) for f in faces]
        slabs.append(Slab(z0, z1, regions, prismatic))
    stack = Stack(frame, slabs)
    stack.runs = runs_of(stack)
    return stack


def _height_range_solid(solid: Any, frame: Frame) -> tuple[float, float]:
    hs = []
    for f in solid.Faces():
        lo, hi = _height_range(f, frame)
        hs += [lo, hi]
    return min(hs), max(hs)


def runs_of(stack: Stack) -> list[Run]:
    """Runs of equal loops over consecutive slabs."""
    open_runs: dict[tuple, Run] = {}
    done: list[Run] = []
    for slab in stack.slabs:
        seen: dict[tuple, tuple[Loop, bool, int]] = {}
        for region in slab.regions:
            depth = _depth(region, slab.regions)
            seen[("o", region.outer.signature())] = (region.outer, False, depth)
            for inner in region.inner:
                seen[("i", inner.signature())] = (inner, True, depth)
        for key in list(open_runs):
            if key not in seen or abs(open_runs[key].z1 - slab.z0) > 1e-9:
                done.append(open_runs.pop(key))
        for key, (loop, inner, depth) in seen.items():
            if key in open_runs:
                open_runs[key].z1 = slab.z1
            else:
                open_runs[key] = Run(loop, slab.z0, slab.z1, inner, depth)
    done += open_runs.values()
    return done


def _depth(region: Region, regions: list[Region]) -> int:
    """How many other regions' outer loops enclose this one (an island in a hole has depth 1)."""
    x0, y0, x1, y1 = region.outer.bounds()
    depth = 0
    for other in regions:
        if other is region:
            continue
        a0, b0, a1, b1 = other.outer.bounds()
        if a0 <= x0 and b0 <= y0 and a1 >= x1 and b1 >= y1 and other.outer.area() > region.outer.area():
            depth += 1
    return depth
