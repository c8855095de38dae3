"""Write a recognised part as a readable CadQuery program: one statement per feature, sketches of
lines and arcs on named planes, numbers snapped to round values where the caller allows.

The program uses the calls the feature-plan tracer maps to PartDesign features (extrude, union,
cut, hole, cboreHole, cskHole, pushPoints, polarArray, revolve, fillet, chamfer), so it lands in
FreeCAD as a Body; the tracer then names its dimensions (``feature_plan/names.py``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from model_runtime.shapes.profile import Frame, Loop

_NAMED = {
    "XY": ((1, 0, 0), (0, 0, 1)), "YZ": ((0, 1, 0), (1, 0, 0)), "ZX": ((0, 0, 1), (0, 1, 0)),
    "XZ": ((1, 0, 0), (0, -1, 0)), "YX": ((0, 1, 0), (0, 0, -1)), "ZY": ((0, 0, 1), (-1, 0, 0)),
}  # fmt: skip
_GRIDS = (10.0, 5.0, 1.0, 0.5, 0.25, 0.1, 0.05, 0.01, 0.005, 0.001)
# Inch parts: the same millimetres, snapped to binary fractions of an inch first.
_INCH_GRIDS = tuple(25.4 * g for g in (1.0, 0.5, 0.25, 0.125, 0.0625, 0.03125, 0.015625, 0.001))


@dataclass
class Numbers:
    """Formats numbers (mm): snapped to the coarsest round grid within ``snap`` (0 = exact, 6 decimals);
    ``unit`` 25.4 (an inch part) tries fractions of an inch before round millimetres."""

    snap: float = 0.0
    unit: float = 1.0

    def value(self, v: float) -> float:
        v = float(v)
        if self.snap > 0:
            grids = (_INCH_GRIDS if self.unit == 25.4 else ()) + _GRIDS
            for g in grids:
                s = round(v / g) * g
                if abs(s - v) <= self.snap:
                    return round(s, 6) + 0.0
        return round(v, 6) + 0.0

    def __call__(self, v: float) -> str:
        s = self.value(v)
        if float(s).is_integer():
            return str(int(s))
        return f"{s:.6f}".rstrip("0").rstrip(".")

    def pt(self, p) -> str:
        return "(" + ", ".join(self(c) for c in p) + ")"


def frame_for(normal, x_hint=None) -> Frame:
    """A frame on ``normal`` whose x direction makes it one of CadQuery's named planes if possible."""
    n = np.asarray(normal, dtype=float)
    for _name, (x, nn) in _NAMED.items():
        if np.allclose(nn, n, atol=1e-9):
            return Frame((0, 0, 0), n, x)
    x = np.asarray(x_hint, dtype=float) if x_hint is not None else np.cross(n, [0, 0, 1.0])
    if np.linalg.norm(x) < 1e-9:
        x = np.cross(n, [1.0, 0, 0])
    return Frame((0, 0, 0), n, x)


def workplane(frame: Frame, origin, num: Numbers) -> str:
    origin = [0.0 if abs(c) < 1e-12 else float(c) for c in origin]
    for name, (x, n) in _NAMED.items():
        if np.allclose(n, frame.normal, atol=1e-9) and np.allclose(x, frame.x_dir, atol=1e-9):
            if all(num.value(c) == 0 for c in origin):
                return f'cq.Workplane("{name}")'
            return f'cq.Workplane("{name}", origin={num.pt(origin)})'
    return (
        f"cq.Workplane(cq.Plane(origin={num.pt(origin)}, xDir={num.pt(frame.x_dir)}, "
        f"normal={num.pt(frame.normal)}))"
    )


def loop_code(loop: Loop, num: Numbers, shift=(0.0, 0.0)) -> str:
    dx, dy = shift

    def p(q) -> str:
        return f"{num(q[0] - dx)}, {num(q[1] - dy)}"

    if loop.is_circle:
        s = loop.segments[0]
        return f".moveTo({p(s.center)}).circle({num(s.radius)})"
    rect = loop.as_rectangle()
    if rect is not None:
        cx, cy, w, h = rect
        at = (cx, cy)
        move = "" if num.value(cx - dx) == 0 and num.value(cy - dy) == 0 else f".moveTo({p(at)})"
        return f"{move}.rect({num(w)}, {num(h)})"
    parts = [f".moveTo({p(loop.segments[0].start)})"]
    for i, s in enumerate(loop.segments):
        last = i == len(loop.segments) - 1
        if s.kind == "line":
            if not last:
                parts.append(f".lineTo({p(s.end)})")
        else:
            parts.append(f".threePointArc(({p(s.mid)}), ({p(s.end)}))")
    parts.append(".close()")
    return "".join(parts)


@dataclass
class Program:
    lines: list[str] = field(default_factory=list)
    header: list[str] = field(default_factory=list)
    started: bool = False

    def add(self, comment: str, expr: str, op: str = "union") -> None:
        """``expr`` is a Workplane expression; the first becomes ``result``, later ones are combined."""
        if comment:
            self.lines.append(f"# {comment}")
        if not self.started:
            self.lines.append(f"result = {expr}")
            self.started = True
        elif op == "chain":
            self.lines.append(f"result = result{expr}")
        else:
            self.lines.append(f"result = result.{op}({expr})")

    def text(self) -> str:
        head = ["import cadquery as cq", ""]
        if self.header:
            head += [f"# {h}" for h in self.header] + [""]
        return "\n".join(head + self.lines) + "\n"


def polar_points(n: int) -> list[float]:
    return [360.0 * i / n for i in range(n)]


def angle_text(deg: float) -> str:
    d = round(deg, 4)
    return str(int(d)) if float(d).is_integer() else f"{d:g}"


def unit_dir(v) -> np.ndarray:
    v = np.asarray(v, dtype=float)
    return v / math.hypot(*v)
