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
    info: Any = None  # the graph's FaceInfo


@dataclass
class Cone:
    """A conical chamfer: a countersink when a hole on its axis opens where it is widest."""

    index: int  # position in the blend list
    axis_point: np.ndarray
    axis: np.ndarray
    diameter: float  # widest
    height_point: np.ndarray  # centre of the widest circle
    angle: float  # included angle, degrees


def _width(face: Any) -> float:
    """The distance across a narrow face: area over its longest boundary length."""
    edges = sorted((e.Length() for e in face.Edges()), reverse=True)
    longest = edges[0] if edges else 1.0
    if len(edges) >= 2 and edges[1] > 0.5 * edges[0]:
        longest = (edges[0] + edges[1]) / 2
    return face.Area() / max(longest, 1e-9)


def _tangent_edges(info: Any, graph: FaceGraph) -> tuple[int, int]:
    """(edges where a neighbour meets the face tangentially, edges shared with a neighbour)."""
    tangent = shared = 0
    for j in info.neighbours:
        other = graph.faces[j].face
        for e in info.face.Edges():
            if not any(e.isSame(oe) for oe in other.Edges()):
                continue
            p = e.positionAt(0.5)
            try:
                n1, n2 = info.face.normalAt(p), other.normalAt(p)
            except Exception:
                continue
            shared += 1
            if abs(abs(n1.dot(n2)) - 1) < 1e-3:
                tangent += 1
    return tangent, shared


def find_blends(graph: FaceGraph, axis: np.ndarray, size: float) -> list[Blend]:
    out = []
    for f in graph.faces:
        if prismatic_along(f, axis) != "other":
            continue
        if f.kind in (CYLINDER, TORUS, SPHERE) and f.radius < 0.2 * size:
            tangent, _ = _tangent_edges(f, graph)
            if tangent >= 2 or (f.kind == SPHERE and tangent >= 1):
                out.append(Blend(f.face, "fillet", f.radius, f))
        elif f.kind in (PLANE, CONE):
            w = _width(f.face)
            if w < 0.1 * size:
                out.append(Blend(f.face, "chamfer", w / math.sqrt(2), f))
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
    all_edges = solid.Edges()
    keys = [_key(e) for e in all_edges]
    atoms = _atom_sets(all_edges, keys)

    def picks(sel: str) -> set | None:
        try:
            return {_key(e) for e in wp.edges(sel).vals()}
        except Exception:
            return None

    # A fast stand-in for each atom finds the candidates; CadQuery itself confirms the one taken.
    tries = [(a, atoms[a]) for a in _ATOMS]
    tries += [
        (f"{a} and {b}", atoms[a] & atoms[b])
        for a, b in itertools.permutations(_ATOMS, 2)
        if a < b or a[0] in "<>"
    ]
    tries += [(f"{a} or {b}", atoms[a] | atoms[b]) for a, b in itertools.combinations(_ATOMS, 2)]
    for sel, guess in tries:
        if guess == target and picks(sel) == target:
            return f'"{sel}"', sel
    points = [tuple(num.value(c) for c in e.positionAt(0.5).toTuple()) for e in edges]
    code = " + ".join(f"cq.NearestToPointSelector({num.pt(p)})" for p in points)
    obj = cq.NearestToPointSelector(points[0])
    for p in points[1:]:
        obj = obj + cq.NearestToPointSelector(p)
    return code, obj


def _atom_sets(edges: list[Any], keys: list[tuple]) -> dict[str, set]:
    axes = {"X": np.array([1.0, 0, 0]), "Y": np.array([0, 1.0, 0]), "Z": np.array([0, 0, 1.0])}
    lines = []
    centers = np.array([e.Center().toTuple() for e in edges])
    for e in edges:
        if e.geomType() == "LINE":
            d = np.array((e.endPoint() - e.startPoint()).toTuple())
            lines.append(d / (np.linalg.norm(d) or 1.0))
        else:
            lines.append(None)
    out: dict[str, set] = {}
    for name, a in axes.items():
        out["|" + name] = {
            k for k, d in zip(keys, lines, strict=True) if d is not None and abs(abs(d @ a) - 1) < 1e-4
        }
        out["#" + name] = {k for k, d in zip(keys, lines, strict=True) if d is not None and abs(d @ a) < 1e-4}
        h = centers @ a
        out[">" + name] = {k for k, v in zip(keys, h, strict=True) if v > h.max() - 1e-4}
        out["<" + name] = {k for k, v in zip(keys, h, strict=True) if v < h.min() + 1e-4}
    return out


def cross_features(graph: FaceGraph, axis: np.ndarray, blends: list[Blend]) -> list[Any]:
    """Faces of features across the axis (a cross hole, a slot's round ends): the curved faces that
    are neither along the axis nor blends, with the planar faces they alone enclose (a counterbore's
    floor). Defeaturing them leaves the solid the axis's extrusions explain; the residual step
    brings them back as their own features."""
    blend_ids = {id(b.face.wrapped) for b in blends}
    picked = {
        f.index for f in graph.faces
        if prismatic_along(f, axis) == "other" and f.kind in (CYLINDER, CONE)
        and not any(f.face.wrapped.IsSame(b.face.wrapped) for b in blends)
        and id(f.face.wrapped) not in blend_ids
    }  # fmt: skip
    for f in graph.faces:
        if f.kind == PLANE and f.index not in picked and f.neighbours and f.neighbours <= picked:
            picked.add(f.index)
    return [graph.faces[i].face for i in sorted(picked)]


def remove_blends(solid: Any, graph: FaceGraph, axis: np.ndarray):
    """(sharp solid, ops(num) -> blend steps), or None when there is nothing to take off."""
    bb = solid.BoundingBox()
    size = max(bb.xlen, bb.ylen, bb.zlen)
    blends = find_blends(graph, axis, size)
    cross = cross_features(graph, axis, blends)
    if not blends and not cross:
        return None
    sharp = defeature(solid, [b.face for b in blends] + cross) if cross else None
    if sharp is None and blends:
        sharp = defeature(solid, [b.face for b in blends])
    if sharp is None:
        return None

    cones = []
    for i, b in enumerate(blends):
        if b.info is not None and b.info.kind == CONE:
            circles = [e for e in b.face.Edges() if e.geomType() == "CIRCLE"]
            if circles:
                widest = max(circles, key=lambda e: e.radius())
                c = widest.arcCenter()
                cones.append(
                    Cone(
                        i,
                        b.info.location,
                        b.info.axis,
                        2 * widest.radius(),
                        np.array([c.x, c.y, c.z]),
                        2 * math.degrees(abs(b.info.angle)),
                    )
                )

    def ops(num: Any, skip: frozenset = frozenset()) -> list[str]:
        import cadquery as cq

        steps = []
        current = sharp
        groups: dict[tuple, list[Blend]] = {}
        for i, b in enumerate(blends):
            if i in skip:
                continue
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

    try:
        holes = cross_holes(graph, cross) if sharp is not None and cross else []
    except Exception:  # an odd face: the residual step keeps what it would have found
        holes = []
    return sharp, ops, cones, holes


def cross_holes(graph: FaceGraph, faces: list[Any]) -> list[tuple[np.ndarray, Any]]:
    """The removed cross features that are drilled holes: (axis direction, Hole in a frame on it).

    Coaxial concave cylinders of one radius are a hole drilled over their whole extent along the
    axis (what ``hole()`` with no depth does: it also crosses any gap on the way), two radii with the
    wider at one end a counterbore. Anything else is left to the residual step."""
    from model_runtime.shapes.holes import Hole
    from model_runtime.shapes.profile import Frame

    infos = [
        f for f in graph.faces if f.kind == CYLINDER and any(f.face.wrapped.IsSame(x.wrapped) for x in faces)
    ]
    groups: dict[tuple, list] = {}
    for f in infos:
        d = f.axis / np.linalg.norm(f.axis)
        d = d if next(c for c in d if abs(c) > 1e-9) > 0 else -d
        # the point of the axis closest to the origin names the line
        p = f.location - np.dot(f.location, d) * d
        try:
            mid = f.face.positionAt(0.5, 0.5)
            normal = f.face.normalAt(0.5, 0.5)[0]
        except Exception:
            continue
        radial = np.array(mid.toTuple()) - f.location
        radial -= np.dot(radial, d) * d
        if np.dot(np.array(normal.toTuple()), radial) >= 0:  # convex: a boss, not a hole
            continue
        key = tuple(np.round(d, 6)) + tuple(np.round(p, 4))
        groups.setdefault(key, []).append(f)
    out = []
    for members in groups.values():
        d = members[0].axis / np.linalg.norm(members[0].axis)
        d = d if next(c for c in d if abs(c) > 1e-9) > 0 else -d
        from model_runtime.shapes.graph import x_direction

        frame = Frame((0, 0, 0), d, x_direction(graph, d))
        spans: dict[float, list[float]] = {}
        for f in members:
            hs = [frame.height(v.toTuple()) for v in f.face.Vertices()]
            for e in f.face.Edges():
                hs += [frame.height(e.positionAt(t).toTuple()) for t in (0.0, 0.5, 1.0)]
            span = spans.setdefault(round(f.radius, 6), [np.inf, -np.inf])
            span[0], span[1] = min(span[0], min(hs)), max(span[1], max(hs))
        center = frame.local(members[0].location)
        radii = sorted(spans, reverse=True)
        lo = min(s[0] for s in spans.values())
        hi = max(s[1] for s in spans.values())
        if len(radii) == 1:
            out.append((d, frame, Hole(center, True, hi, [(2 * radii[0], hi - lo)])))
        elif len(radii) == 2:
            wide, narrow = spans[radii[0]], spans[radii[1]]
            if abs(wide[1] - hi) < 1e-6 and abs(wide[0] - narrow[1]) < 1e-6:
                out.append(
                    (
                        d,
                        frame,
                        Hole(center, True, hi, [(2 * radii[0], hi - wide[0]), (2 * radii[1], wide[0] - lo)]),
                    )
                )
            elif abs(wide[0] - lo) < 1e-6 and abs(wide[1] - narrow[0]) < 1e-6:
                out.append(
                    (
                        d,
                        frame,
                        Hole(center, False, lo, [(2 * radii[0], wide[1] - lo), (2 * radii[1], hi - wide[1])]),
                    )
                )
    return out
