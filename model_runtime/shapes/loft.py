"""Lofts: a solid that, along one axis, is a stack of slabs whose sections either stay the same
(extrusions) or change from one planar section to another over a slab whose side faces are ruled or
B-spline surfaces (a hex lofted into a circle, a square funnel, a round inlet flattening into a
slot). Each changing slab becomes a ``loft`` between its bottom and top sections (outer loops
added, inner loops taken off as lofts of their own), each steady slab an extrusion. PartDesign
builds a loft as an AdditiveLoft; the IoU check says whether the sides really were ruled.
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np

from model_runtime.shapes.emit import Numbers, Program, loop_code, workplane
from model_runtime.shapes.graph import OTHER, FaceGraph, prismatic_along
from model_runtime.shapes.prism import DEADLINE, OutOfTime, _depth, section, slice_stack
from model_runtime.shapes.profile import Frame, Loop, Region, Segment, _reversed, face_regions


def worth_trying(graph: FaceGraph, d: np.ndarray) -> bool:
    """A tenth of the area is free-form (B-spline) faces, as a loft's sides are; fillets and
    chamfers alone are the blend recogniser's."""
    return sum(f.area for f in graph.faces if f.kind == OTHER) >= 0.1 * graph.area


def _centroid(loop: Loop) -> np.ndarray:
    return loop.points(8).mean(axis=0)


def _as_circle(loop: Loop, tol: float) -> Loop:
    """Arcs on one circle that close the loop (a circle split by a loft's seams) as the circle."""
    segs = loop.segments
    if loop.is_circle or any(s.kind != "arc" or s.center is None for s in segs):
        return loop
    c, r = segs[0].center, segs[0].radius
    if all(abs(s.radius - r) <= tol and math.dist(s.center, c) <= tol for s in segs):
        return Loop([Segment("circle", (c[0] + r, c[1]), (c[0] + r, c[1]), None, c, r)])
    return loop


def _signed_area(loop: Loop) -> float:
    p = loop.points(8)
    return 0.5 * float(np.dot(p[:, 0], np.roll(p[:, 1], -1)) - np.dot(p[:, 1], np.roll(p[:, 0], -1)))


def _from_plus_x(loop: Loop) -> Loop:
    """The loop counter-clockwise, started at the vertex nearest the +x direction from its centre,
    as CadQuery's own polygons, rectangles and circles go: a loft pairs the sections' vertices in
    order."""
    if loop.is_circle or len(loop.segments) < 2:
        return loop
    if _signed_area(loop) < 0:
        loop = Loop([_reversed(s) for s in reversed(loop.segments)])
    c = _centroid(loop)

    def angle(s) -> float:
        a = math.atan2(s.start[1] - c[1], s.start[0] - c[0])
        return abs(a)

    k = min(range(len(loop.segments)), key=lambda i: (round(angle(loop.segments[i]), 6), i))
    return Loop(loop.segments[k:] + loop.segments[:k])


def _sections(solid: Any, frame: Frame, z: float, size: float, fit_tol: float) -> list[Region]:
    out = []
    for f in section(solid, frame, z, size):
        r = face_regions(f, frame, 1e-5 * size, fit_tol)
        tol = 1e-5 * size
        region = Region(_as_circle(r.outer, tol), [_as_circle(i, tol) for i in r.inner])
        # a section of lines and circles is a sketch someone drew; one through a loft's sides is not
        exact = all(e.geomType() in ("LINE", "CIRCLE") for e in f.Edges())
        for loop in [region.outer, *region.inner]:
            loop.exact = exact
        out.append(region)
    return out


def _extrapolated(near: Loop, far: Loop, reach: float) -> Loop:
    """The loop where the slab ends, from sections ``near`` (one step in) and ``far`` (two steps
    in): ruled sides move each vertex linearly, so it is ``2 near - far``. ``near`` itself when the
    two do not trace the same segments."""
    if len(near.segments) != len(far.segments):
        return near
    n = len(near.segments)

    def lerp(a, b):
        return None if a is None else (2 * a[0] - b[0], 2 * a[1] - b[1])

    if near.is_circle and far.is_circle:
        a, b = near.segments[0], far.segments[0]
        c, r = lerp(a.center, b.center), 2 * a.radius - b.radius
        return Loop([Segment("circle", (c[0] + r, c[1]), (c[0] + r, c[1]), None, c, r)])
    for k in range(n):
        rolled = far.segments[k:] + far.segments[:k]
        if all(
            a.kind == b.kind and math.dist(a.start, b.start) <= reach and math.dist(a.end, b.end) <= reach
            for a, b in zip(near.segments, rolled, strict=True)
        ):
            return Loop(
                [
                    Segment(a.kind, lerp(a.start, b.start), lerp(a.end, b.end), lerp(a.mid, b.mid),
                            lerp(a.center, b.center), 2 * a.radius - b.radius)
                    for a, b in zip(near.segments, rolled, strict=True)
                ]
            )  # fmt: skip
    return near


def _end_sections(solid: Any, frame: Frame, z: float, step: float, size: float, fit_tol: float):
    """The regions where a slab ends at height ``z``, seen from inside it (``step`` > 0: the slab
    is above ``z``): sections one and two steps in, extrapolated back to ``z``."""
    near = _sections(solid, frame, z + step, size, fit_tol)
    far = _sections(solid, frame, z + 2 * step, size, fit_tol)
    pairs = _pair(near, far, loop=lambda r: r.outer)
    if pairs is None:
        return near
    reach = 100 * abs(step) + 1e-3 * size
    out = []
    for a, b in pairs:
        inner = _pair(a.inner, b.inner) or []
        if len(inner) != len(a.inner):
            out.append(a)
            continue
        region = Region(
            _extrapolated(a.outer, b.outer, reach), [_extrapolated(x, y, reach) for x, y in inner]
        )
        for new, old in zip([region.outer, *region.inner], [a.outer, *a.inner], strict=True):
            new.exact = getattr(old, "exact", True)
        out.append(region)
    return out


def _pair(a: list, b: list, loop=lambda x: x) -> list[tuple] | None:
    """Each of ``a`` with the nearest of ``b`` (centre, then size)."""
    if len(a) != len(b):
        return None
    left = list(b)
    out = []
    for xa in a:
        la = loop(xa)
        ca, sa = _centroid(la), math.sqrt(la.area())

        def cost(xb, ca=ca, sa=sa) -> float:
            lb = loop(xb)
            return float(np.linalg.norm(_centroid(lb) - ca)) + abs(math.sqrt(lb.area()) - sa)

        xb = min(left, key=cost)
        left.remove(xb)
        out.append((xa, xb))
    return out


def loft_axis(solid: Any, graph: FaceGraph, d: np.ndarray, tol: float) -> bool:
    """Both ends of the solid along ``d`` are planar caps: sections to loft between."""
    from model_runtime.shapes.prism import _height_range_solid

    frame = Frame((0, 0, 0), d, np.cross(d, [1.0, 0, 0]) if abs(d[0]) < 0.9 else np.cross(d, [0, 1.0, 0]))
    lo, hi = _height_range_solid(solid, frame)
    caps = [frame.height(f.location) for f in graph.faces if prismatic_along(f, d) == "cap"]
    return any(abs(z - lo) <= tol for z in caps) and any(abs(z - hi) <= tol for z in caps)


def _step(wp: str, a: Loop, b: Loop, h: str, num: Numbers, inner: bool = False) -> tuple[str, str]:
    """(comment, expression): an extrusion where both ends are the same loop, else a loft."""
    if a.signature() == b.signature():
        return (
            "pocket" if inner else f"extruded {h} along the axis"
        ), f"{wp}{loop_code(a, num)}.extrude({h})"
    what = (
        "hollow: the inner sections lofted and taken off"
        if inner
        else "lofted from the lower section to the upper one"
    )
    return what, (
        f"{wp}{loop_code(_from_plus_x(a), num)}.workplane(offset={h}){loop_code(_from_plus_x(b), num)}.loft()"
    )


def _same_loop(a: Loop, b: Loop, size: float) -> bool:
    return float(np.linalg.norm(_centroid(a) - _centroid(b))) <= 1e-4 * size and abs(
        a.area() - b.area()
    ) <= 1e-4 * max(a.area(), 1e-9)


def _in_line(a: Loop, mid: Loop, b: Loop, t: float, size: float) -> bool:
    """Whether ``mid`` can be the section at ``t`` of one loft from ``a`` to ``b``: where all three
    are polygons of as many sides, each corner of ``mid`` lies on the line between ``a``'s and
    ``b``'s (a chamfer on top of a loft is another loft)."""
    n = len(mid.segments)
    if mid.is_circle or not (len(a.segments) == n == len(b.segments)):
        return True
    pa, pm, pb = (np.array([s.start for s in _from_plus_x(lp).segments]) for lp in (a, mid, b))
    return bool(np.all(np.linalg.norm(pa + t * (pb - pa) - pm, axis=1) <= 1e-4 * size))


def _through_cut_levels(items: list[list], size: float) -> list[list]:
    """A loft cut in two by a height where something else starts (a blind hole's floor) is one
    loft: where its section there is no sketch of lines and circles, the two lofts join."""
    items = sorted(items, key=lambda it: it[2])
    out: list[list] = []
    for it in items:
        for prev in out:
            if (
                prev[0] == it[0] and prev[1] == it[1] and abs(prev[3] - it[2]) <= 1e-9
                and prev[4].signature() != prev[5].signature() and it[4].signature() != it[5].signature()
                and not getattr(prev[5], "exact", True) and _same_loop(prev[5], it[4], size)
                and _in_line(prev[4], prev[5], it[5], (prev[3] - prev[2]) / (it[3] - prev[2]), size)
            ):  # fmt: skip
                prev[3], prev[5] = it[3], it[5]
                break
        else:
            out.append(list(it))
    return out


def loft_program(solid: Any, graph: FaceGraph, frame: Frame, num: Numbers, fit_tol: float, level_tol: float):
    """(program text, features) for ``solid`` as extrusions and lofts along ``frame``'s normal;
    ValueError when a changing slab's sections do not pair up."""
    bb = solid.BoundingBox()
    size = max(bb.xlen, bb.ylen, bb.zlen, 1e-3)
    stack = slice_stack(solid, graph, frame, fit_tol=fit_tol, level_tol=level_tol)
    if all(s.prismatic for s in stack.slabs):
        raise ValueError("nothing changes along this axis")
    delta = max(1e-7 * size, 2 * level_tol)
    prog = Program()
    features: list[str] = []
    adds: list[tuple[int, str, str]] = []
    cuts: list[tuple[int, str, str]] = []
    # consecutive steady slabs with the same section are one extrusion
    merged: list[list] = []
    for slab in stack.slabs:
        key = None
        if slab.prismatic:
            key = tuple(
                sorted((r.outer.signature(), *sorted(i.signature() for i in r.inner)) for r in slab.regions)
            )
        if merged and key is not None and merged[-1][0] == key and abs(merged[-1][2] - slab.z0) < 1e-9:
            merged[-1][2] = slab.z1
        else:
            merged.append([key, slab, slab.z1])
    items: list[list] = []  # [depth, inner, z0, z1, lower loop, upper loop]
    for key, slab, z1 in merged:
        if time.monotonic() > DEADLINE[0]:
            raise OutOfTime("out of time while lofting")
        z0 = slab.z0
        if key is not None:
            for region in slab.regions:
                depth = _depth(region, slab.regions)
                items.append([depth, False, z0, z1, region.outer, region.outer])
                items += [[depth, True, z0, z1, i, i] for i in region.inner]
            continue
        step = min(delta, (z1 - z0) / 8)
        lo = _end_sections(solid, frame, z0, step, size, fit_tol)
        hi = _end_sections(solid, frame, z1, -step, size, fit_tol)
        regions = _pair(lo, hi, loop=lambda r: r.outer)
        if not regions:
            raise ValueError("sections that do not pair up")
        for ra, rb in regions:
            inner = _pair(ra.inner, rb.inner)
            if inner is None:
                raise ValueError("sections that do not pair up")
            depth = _depth(ra, lo)
            items.append([depth, False, z0, z1, ra.outer, rb.outer])
            items += [[depth, True, z0, z1, a, b] for a, b in inner]
    items = _through_cut_levels(items, size)
    for depth, inner, z0, z1, a, b in items:
        wp = workplane(frame, frame.world(0, 0, z0), num)
        (cuts if inner else adds).append((depth, *_step(wp, a, b, num(z1 - z0), num, inner=inner), wp))
    # an island in a hollow (a keycap's stem) comes after the hollow is taken off
    for depth in sorted({a[0] for a in adds} | {c[0] for c in cuts}):
        for dep, comment, expr, wp in adds:
            if dep == depth:
                if prog.started and expr.endswith(".loft()"):
                    # lofted onto the part itself: a loft as its own solid joined later is no
                    # PartDesign feature, an AdditiveLoft on the Body is
                    prog.add(comment, f".copyWorkplane({wp}){expr[len(wp):]}", op="chain")
                else:
                    prog.add(comment, expr)
                features.append("loft" if expr.endswith(".loft()") else "pad")
        for dep, comment, expr, _wp in cuts:
            if dep == depth:
                prog.add(comment, expr, op="cut")
                features.append("pocket")
    if not prog.started:
        raise ValueError("no section")
    return prog.text(), features
