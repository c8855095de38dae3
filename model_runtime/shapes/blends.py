"""Edge blends: fillets and chamfers on edges that cross the extrusion axis.

A blend face (a cylinder, torus or sphere of small radius for a fillet; a narrow oblique plane or a
cone for a chamfer) breaks the stack of equal sections. OCC's defeaturing takes the blend faces off
and extends their neighbours into the sharp edge they rounded; the sharp part is recognised as
usual, and each blend comes back as a ``fillet``/``chamfer`` step on the edges it rounded, selected
with CadQuery's selector strings where one picks exactly those edges (``"|Z"``, ``">Z and |X"``),
else by the point each edge passes nearest to.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from model_runtime.shapes.graph import CONE, CYLINDER, PLANE, SPHERE, TORUS, FaceGraph, prismatic_along

_ATOMS = ("|X", "|Y", "|Z", ">X", "<X", ">Y", "<Y", ">Z", "<Z", "#X", "#Y", "#Z")


@dataclass
class Blend:
    face: Any
    kind: str  # "fillet" or "chamfer"
    size: float


def _width(face: Any) -> float:
    """The distance across a narrow face: area over its longest boundary length."""
    edges = sorted((e.Length() for e in face.Edges()), reverse=True)
    longest = edges[0] if edges else 1.0
    if len(edges) >= 2 and edges[1] > 0.5 * edges[0]:
        longest = (edges[0] + edges[1]) / 2
    return face.Area() / max(longest, 1e-9)


def find_blends(graph: FaceGraph, axis: np.ndarray, size: float) -> list[Blend]:
    out = []
    for f in graph.faces:
        if prismatic_along(f, axis) != "other":
            continue
        if f.kind in (CYLINDER, TORUS, SPHERE) and f.radius < 0.2 * size:
            out.append(Blend(f.face, "fillet", f.radius))
        elif f.kind in (PLANE, CONE):
            w = _width(f.face)
            if w < 0.1 * size:
                out.append(Blend(f.face, "chamfer", w / math.sqrt(2)))
    return out


def defeature(solid: Any, faces: list[Any]) -> Any | None:
    import cadquery as cq
    from OCP.BRepAlgoAPI import BRepAlgoAPI_Defeaturing

    algo = BRepAlgoAPI_Defeaturing()
    algo.SetShape(solid.wrapped)
    for f in faces:
        algo.AddFaceToRemove(f.wrapped)
    algo.SetRunParallel(False)
    algo.Build()
    if not algo.IsDone():
        return None
    shape = cq.Shape.cast(algo.Shape())
    solids = shape.Solids()
    if len(solids) != 1 or not solids[0].isValid():
        return None
    return solids[0]


def _dist(a: Any, b: Any) -> float:
    from OCP.BRepExtrema import BRepExtrema_DistShapeShape

    calc = BRepExtrema_DistShapeShape(a.wrapped, b.wrapped)
    return calc.Value() if calc.IsDone() else math.inf


def _edges_under(solid: Any, blend: Blend) -> list[Any]:
    import cadquery as cq

    reach = blend.size
    out = []
    for e in solid.Edges():
        mid = cq.Vertex.makeVertex(*e.positionAt(0.5).toTuple())
        d_mid = _dist(mid, blend.face)
        if not (1e-7 < d_mid <= 0.8 * reach):
            continue
        ends = [cq.Vertex.makeVertex(*e.positionAt(t).toTuple()) for t in (0.0, 1.0)]
        if all(_dist(v, blend.face) <= 1.5 * reach for v in ends):
            out.append(e)
    return out


def _key(e: Any) -> tuple:
    return tuple(round(c, 5) for c in e.positionAt(0.5).toTuple()) + (round(e.Length(), 5),)


def selector_for(solid: Any, edges: list[Any], num: Any) -> tuple[str, Any]:
    """(code, selector): a selector string when one picks exactly ``edges``, else nearest points."""
    import cadquery as cq

    target = {_key(e) for e in edges}
    wp = cq.Workplane().add(solid)

    def picks(sel: str) -> set | None:
        try:
            return {_key(e) for e in wp.edges(sel).vals()}
        except Exception:
            return None

    for sel in _ATOMS:
        if picks(sel) == target:
            return f'"{sel}"', sel
    for a, b in itertools.permutations(_ATOMS, 2):
        if a < b or a[0] in "<>":
            sel = f"{a} and {b}"
            if picks(sel) == target:
                return f'"{sel}"', sel
    for a, b in itertools.combinations(_ATOMS, 2):
        sel = f"{a} or {b}"
        if picks(sel) == target:
            return f'"{sel}"', sel
    points = [tuple(num.value(c) for c in e.positionAt(0.5).toTuple()) for e in edges]
    code = " + ".join(f"cq.NearestToPointSelector({num.pt(p)})" for p in points)
    obj = cq.NearestToPointSelector(points[0])
    for p in points[1:]:
        obj = obj + cq.NearestToPointSelector(p)
    return code, obj


def remove_blends(solid: Any, graph: FaceGraph, axis: np.ndarray):
    """(sharp solid, ops(num) -> blend steps), or None when there is nothing to take off."""
    bb = solid.BoundingBox()
    size = max(bb.xlen, bb.ylen, bb.zlen)
    blends = find_blends(graph, axis, size)
    if not blends:
        return None
    sharp = defeature(solid, [b.face for b in blends])
    if sharp is None:
        return None

    def ops(num: Any) -> list[str]:
        import cadquery as cq

        steps = []
        current = sharp
        groups: dict[tuple, list[Blend]] = {}
        for b in blends:
            groups.setdefault((b.kind, round(b.size, 4)), []).append(b)
        for (kind, size_), members in sorted(groups.items(), key=lambda kv: kv[0][0] != "chamfer"):
            edges: dict[tuple, Any] = {}
            for b in members:
                for e in _edges_under(current, b):
                    edges[_key(e)] = e
            if not edges:
                continue
            sel, sel_obj = selector_for(current, list(edges.values()), num)
            call = "fillet" if kind == "fillet" else "chamfer"
            try:
                wp = cq.Workplane().add(current)
                picked = wp.edges(sel_obj)
                after = getattr(picked, call)(num.value(size_)).val()
                if not after.isValid():
                    continue
            except Exception:
                continue
            current = after
            steps.append(f".edges({sel}).{call}({num(size_)})")
        return steps

    return sharp, ops
