"""2-D profiles: closed loops of lines, arcs and circles in a sketch frame.

Exact sections give lines and circular arcs directly; other curves, and the polygon sections of a
mesh, are fitted with lines and arcs (``fit_polyline``) within a tolerance. A profile is a list of
Regions (one outer loop, its inner loops), as a planar section of a solid gives them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class Segment:
    kind: str  # "line", "arc", "circle"
    start: tuple[float, float]
    end: tuple[float, float]
    mid: tuple[float, float] | None = None  # arcs
    center: tuple[float, float] | None = None  # circles (and arcs, for information)
    radius: float = 0.0


@dataclass
class Loop:
    segments: list[Segment]

    @property
    def is_circle(self) -> bool:
        return len(self.segments) == 1 and self.segments[0].kind == "circle"

    def points(self, per_arc: int = 16) -> np.ndarray:
        pts: list[tuple[float, float]] = []
        for s in self.segments:
            if s.kind == "circle":
                cx, cy = s.center
                return np.array(
                    [
                        (cx + s.radius * math.cos(t), cy + s.radius * math.sin(t))
                        for t in np.linspace(0, 2 * math.pi, 4 * per_arc, endpoint=False)
                    ]
                )
            if s.kind == "line":
                pts.append(s.start)
            else:
                pts.extend(_arc_points(s, per_arc)[:-1])
        return np.array(pts)

    def area(self) -> float:
        if self.is_circle:
            return math.pi * self.segments[0].radius ** 2
        p = self.points(32)
        x, y = p[:, 0], p[:, 1]
        return abs(0.5 * float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))

    def signature(self, digits: int = 3) -> tuple:
        """Equal for loops that trace the same curve, whatever their start point or direction."""
        keys = []
        for s in self.segments:
            if s.kind == "circle":
                keys.append(("c", _r(s.center, digits), round(s.radius, digits)))
            else:
                a, b = sorted([_r(s.start, digits), _r(s.end, digits)])
                keys.append((s.kind[0], a, b, _r(s.mid, digits) if s.mid else None))
        return tuple(sorted(keys, key=repr))

    def bounds(self) -> tuple[float, float, float, float]:
        p = self.points(16)
        return float(p[:, 0].min()), float(p[:, 1].min()), float(p[:, 0].max()), float(p[:, 1].max())

    def as_rectangle(self, tol: float = 1e-6) -> tuple[float, float, float, float] | None:
        """(cx, cy, width, height) when the loop is an axis-aligned rectangle."""
        if len(self.segments) != 4 or any(s.kind != "line" for s in self.segments):
            return None
        for s in self.segments:
            dx, dy = s.end[0] - s.start[0], s.end[1] - s.start[1]
            if abs(dx) > tol and abs(dy) > tol:
                return None
        x0, y0, x1, y1 = self.bounds()
        return (x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0


@dataclass
class Region:
    outer: Loop
    inner: list[Loop] = field(default_factory=list)


def _r(p: tuple[float, float] | None, digits: int) -> tuple:
    return (round(p[0] + 0.0, digits) + 0.0, round(p[1] + 0.0, digits) + 0.0) if p else ()


def _arc_points(s: Segment, n: int) -> list[tuple[float, float]]:
    c = s.center if s.center is not None else circle_through(s.start, s.mid, s.end)[0]
    r = math.dist(c, s.start)
    a0 = math.atan2(s.start[1] - c[1], s.start[0] - c[0])
    am = math.atan2(s.mid[1] - c[1], s.mid[0] - c[0])
    a1 = math.atan2(s.end[1] - c[1], s.end[0] - c[0])
    sweep = (a1 - a0) % (2 * math.pi)
    if (am - a0) % (2 * math.pi) > sweep:  # the arc goes the other way round
        sweep -= 2 * math.pi
    return [
        (c[0] + r * math.cos(a0 + sweep * t), c[1] + r * math.sin(a0 + sweep * t))
        for t in np.linspace(0, 1, n + 1)
    ]


def circle_through(a, b, c) -> tuple[tuple[float, float], float]:
    ax, ay = a
    bx, by = b
    cx, cy = c
    d = 2 * (ax * (by - cy) + bx * (cy - ay) + cx * (ay - by))
    if abs(d) < 1e-12:
        return (math.inf, math.inf), math.inf
    ux = ((ax**2 + ay**2) * (by - cy) + (bx**2 + by**2) * (cy - ay) + (cx**2 + cy**2) * (ay - by)) / d
    uy = ((ax**2 + ay**2) * (cx - bx) + (bx**2 + by**2) * (ax - cx) + (cx**2 + cy**2) * (bx - ax)) / d
    return (ux, uy), math.hypot(ax - ux, ay - uy)


def fit_circle(points: np.ndarray) -> tuple[tuple[float, float], float, float]:
    """Least-squares circle (Kasa): centre, radius, largest radial error."""
    x, y = points[:, 0], points[:, 1]
    a = np.column_stack([x, y, np.ones_like(x)])
    b = x**2 + y**2
    sol, *_ = np.linalg.lstsq(a, b, rcond=None)
    cx, cy = sol[0] / 2, sol[1] / 2
    r = math.sqrt(max(sol[2] + cx**2 + cy**2, 0.0))
    err = float(np.abs(np.hypot(x - cx, y - cy) - r).max())
    return (float(cx), float(cy)), r, err


# ----------------------------------------------------------------------------- from OCC


class Frame:
    """A sketch frame: origin, unit normal ``d`` (the extrusion direction), x and y directions."""

    def __init__(self, origin, normal, x_dir):
        self.origin = np.asarray(origin, dtype=float)
        self.normal = np.asarray(normal, dtype=float) / np.linalg.norm(normal)
        self.x_dir = np.asarray(x_dir, dtype=float) / np.linalg.norm(x_dir)
        self.y_dir = np.cross(self.normal, self.x_dir)

    def local(self, p) -> tuple[float, float]:
        v = np.asarray(p, dtype=float) - self.origin
        return float(np.dot(v, self.x_dir)), float(np.dot(v, self.y_dir))

    def height(self, p) -> float:
        return float(np.dot(np.asarray(p, dtype=float) - self.origin, self.normal))

    def world(self, x: float, y: float, z: float = 0.0) -> np.ndarray:
        return self.origin + x * self.x_dir + y * self.y_dir + z * self.normal


def _pt(v: Any) -> tuple[float, float, float]:
    return (v.x, v.y, v.z)


def edge_segments(edge: Any, frame: Frame, tol: float) -> list[Segment] | np.ndarray:
    """The edge as segments (lines, arcs, circles), or sampled points when it is another curve."""
    kind = edge.geomType()
    a = frame.local(_pt(edge.startPoint()))
    b = frame.local(_pt(edge.endPoint()))
    if kind == "LINE":
        return [Segment("line", a, b)]
    if kind == "CIRCLE":
        if math.dist(a, b) < tol and edge.Length() > 10 * tol:
            c = frame.local(_pt(edge.arcCenter()))
            return [Segment("circle", a, a, center=c, radius=edge.radius())]
        m = frame.local(_pt(edge.positionAt(0.5)))
        return [Segment("arc", a, b, mid=m, center=frame.local(_pt(edge.arcCenter())), radius=edge.radius())]
    n = max(16, min(200, int(edge.Length() / max(tol, 1e-3))))
    return np.array([frame.local(_pt(edge.positionAt(t))) for t in np.linspace(0, 1, n + 1)])


def wire_loop(wire: Any, frame: Frame, tol: float = 1e-5, fit_tol: float = 1e-3) -> Loop:
    """A closed loop from an OCC wire, its edges chained end to end."""
    pieces: list[list[Segment]] = []
    for edge in wire.Edges():
        got = edge_segments(edge, frame, tol)
        if isinstance(got, np.ndarray):
            got = fit_polyline(got, fit_tol, closed=False)
        pieces.append(got)
    if len(pieces) == 1 and len(pieces[0]) == 1 and pieces[0][0].kind == "circle":
        return Loop(pieces[0])
    # chain: each piece starts where the previous ended (reversing pieces as needed)
    chain = [s for s in pieces.pop(0)]
    while pieces:
        end = chain[-1].end
        best, best_d, flip = 0, math.inf, False
        for i, piece in enumerate(pieces):
            for f, p in ((False, piece[0].start), (True, piece[-1].end)):
                dd = math.dist(end, p)
                if dd < best_d:
                    best, best_d, flip = i, dd, f
        piece = pieces.pop(best)
        if flip:
            piece = [_reversed(s) for s in reversed(piece)]
        chain.extend(piece)
    return Loop(merge_collinear(chain, tol))


def _reversed(s: Segment) -> Segment:
    return Segment(s.kind, s.end, s.start, s.mid, s.center, s.radius)


def merge_collinear(segments: list[Segment], tol: float) -> list[Segment]:
    """Join consecutive lines on one straight line (sections split lines at face boundaries)."""
    out: list[Segment] = []
    for s in segments:
        if out and s.kind == "line" and out[-1].kind == "line" and _collinear(out[-1], s, tol):
            out[-1] = Segment("line", out[-1].start, s.end)
        elif out and s.kind == "arc" and out[-1].kind == "arc" and _concentric(out[-1], s, tol):
            prev = out[-1]
            out[-1] = Segment("arc", prev.start, s.end, mid=prev.end, center=prev.center, radius=prev.radius)
        else:
            out.append(s)
    if len(out) > 1 and out[0].kind == "line" and out[-1].kind == "line" and _collinear(out[-1], out[0], tol):
        out[0] = Segment("line", out[-1].start, out[0].end)
        out.pop()
    return out


def _collinear(a: Segment, b: Segment, tol: float) -> bool:
    ax, ay = a.end[0] - a.start[0], a.end[1] - a.start[1]
    bx, by = b.end[0] - b.start[0], b.end[1] - b.start[1]
    la, lb = math.hypot(ax, ay), math.hypot(bx, by)
    if la < tol or lb < tol:
        return True
    return abs(ax * by - ay * bx) / (la * lb) < 1e-7 and ax * bx + ay * by > 0


def _concentric(a: Segment, b: Segment, tol: float) -> bool:
    if a.center is None or b.center is None:
        return False
    if math.dist(a.center, b.center) > tol or abs(a.radius - b.radius) > tol:
        return False
    # merged arcs must stay below a full turn: keep the result a proper three-point arc
    return _sweep(a) + _sweep(b) < 1.9 * math.pi


def _sweep(s: Segment) -> float:
    c = s.center
    a0 = math.atan2(s.start[1] - c[1], s.start[0] - c[0])
    am = math.atan2(s.mid[1] - c[1], s.mid[0] - c[0])
    a1 = math.atan2(s.end[1] - c[1], s.end[0] - c[0])
    sweep = (a1 - a0) % (2 * math.pi)
    return sweep if (am - a0) % (2 * math.pi) <= sweep else 2 * math.pi - sweep


def face_regions(face: Any, frame: Frame, tol: float = 1e-5, fit_tol: float = 1e-3) -> Region:
    return Region(
        wire_loop(face.outerWire(), frame, tol, fit_tol),
        [wire_loop(w, frame, tol, fit_tol) for w in face.innerWires()],
    )


# ----------------------------------------------------------------------------- fitting


def fit_polyline(points: np.ndarray, tol: float, closed: bool = True) -> list[Segment]:
    """Lines and arcs through a dense polyline, each within ``tol`` of the points it replaces."""
    pts = np.asarray(points, dtype=float)
    if closed:
        if len(pts) > 1 and np.linalg.norm(pts[0] - pts[-1]) < 1e-9:
            pts = pts[:-1]
        if len(pts) >= 8:
            c, r, err = fit_circle(pts)
            if err < tol and r < 1e6:
                p0 = (c[0] + r, c[1])
                return [Segment("circle", p0, p0, center=c, radius=r)]
        # start at the sharpest corner so that no primitive wraps round the start
        turn = _turning(pts)
        k = int(np.argmax(turn))
        pts = np.vstack([np.roll(pts, -k, axis=0), np.roll(pts, -k, axis=0)[:1]])
    out: list[Segment] = []
    i, n = 0, len(pts)
    while i < n - 1:
        best_j, best = i + 1, Segment("line", tuple(pts[i]), tuple(pts[i + 1]))
        # longest line
        j = i + 1
        while j + 1 < n and _line_ok(pts[i : j + 2], tol):
            j += 1
        best_j, best = j, Segment("line", tuple(pts[i]), tuple(pts[j]))
        # longest arc (needs at least 4 points and must beat the line)
        j = i + 3
        arc_j = None
        while j < n:
            c, r, err = fit_circle(pts[i : j + 1])
            if err > tol or r > 1e5 or not _monotonic(pts[i : j + 1], c):
                break
            arc_j = (j, c, r)
            j += 1
        if arc_j is not None and arc_j[0] > best_j:
            j, c, r = arc_j
            m = pts[(i + j) // 2]
            mid = (c[0] + r * (m[0] - c[0]) / math.dist(m, c), c[1] + r * (m[1] - c[1]) / math.dist(m, c))
            best_j, best = j, Segment("arc", tuple(pts[i]), tuple(pts[j]), mid=mid, center=c, radius=r)
        out.append(best)
        i = best_j
    if closed and len(out) > 2 and out[0].kind == "arc" and out[-1].kind == "arc":
        a, b = out[-1], out[0]
        if math.dist(a.center, b.center) < 2 * tol and abs(a.radius - b.radius) < 2 * tol:
            out = [
                Segment(
                    "arc",
                    a.start,
                    b.end,
                    mid=_arc_middle(a.start, a.end, b.end, a.center, a.radius),
                    center=a.center,
                    radius=a.radius,
                )
            ] + out[1:-1]
    return [
        Segment(s.kind, tuple(map(float, s.start)), tuple(map(float, s.end)), s.mid, s.center, s.radius)
        for s in out
    ]


def _turning(pts: np.ndarray) -> np.ndarray:
    a = pts - np.roll(pts, 1, axis=0)
    b = np.roll(pts, -1, axis=0) - pts
    ang_a = np.arctan2(a[:, 1], a[:, 0])
    ang_b = np.arctan2(b[:, 1], b[:, 0])
    return np.abs((ang_b - ang_a + np.pi) % (2 * np.pi) - np.pi)


def _line_ok(pts: np.ndarray, tol: float) -> bool:
    a, b = pts[0], pts[-1]
    d = b - a
    length = float(np.hypot(*d))
    if length < 1e-12:
        return False
    dist = np.abs(d[0] * (pts[:, 1] - a[1]) - d[1] * (pts[:, 0] - a[0])) / length
    return bool(dist.max() < tol)


def _monotonic(pts: np.ndarray, c) -> bool:
    """Points that go round the centre one way, in small steps (corners of a rectangle are on a
    circle too, but no tessellation of an arc takes 90° steps)."""
    ang = np.unwrap(np.arctan2(pts[:, 1] - c[1], pts[:, 0] - c[0]))
    steps = np.diff(ang)
    total = abs(ang[-1] - ang[0])
    small = bool(np.abs(steps).max() < math.radians(30))
    return bool((np.all(steps > 0) or np.all(steps < 0)) and total < 1.95 * math.pi and small)


def _arc_middle(start, through, end, c, r) -> tuple[float, float]:
    """The point halfway along the arc from ``start`` to ``end`` that passes ``through``."""
    a0 = math.atan2(start[1] - c[1], start[0] - c[0])
    at = (math.atan2(through[1] - c[1], through[0] - c[0]) - a0) % (2 * math.pi)
    a1 = (math.atan2(end[1] - c[1], end[0] - c[0]) - a0) % (2 * math.pi)
    sweep = a1 if at <= a1 else a1 - 2 * math.pi
    m = a0 + sweep / 2
    return (c[0] + r * math.cos(m), c[1] + r * math.sin(m))
