"""One face-adjacency graph of a solid: every face with its surface kind and parameters, and which
faces share an edge. Each recogniser reads this graph; none walks the topology again.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

PLANE, CYLINDER, CONE, SPHERE, TORUS, OTHER = "plane", "cylinder", "cone", "sphere", "torus", "other"
# a free-form curve turned about an axis (a revolved arc or spline): ``axis`` and ``location`` set
REVOLUTION = "revolution"


@dataclass
class FaceInfo:
    index: int
    face: Any  # cq.Face
    kind: str
    area: float
    normal: np.ndarray | None = None  # planes: outward normal
    axis: np.ndarray | None = None  # surfaces of revolution: unit axis direction
    location: np.ndarray | None = None  # a point on the axis (or on the plane)
    radius: float = 0.0
    angle: float = 0.0  # cones: half-angle (rad)
    neighbours: set[int] = field(default_factory=set)


def _vec(v: Any) -> np.ndarray:
    return np.array([v.X(), v.Y(), v.Z()], dtype=float)


@dataclass
class FaceGraph:
    faces: list[FaceInfo]

    @property
    def area(self) -> float:
        return float(sum(f.area for f in self.faces))

    def of_kind(self, *kinds: str) -> list[FaceInfo]:
        return [f for f in self.faces if f.kind in kinds]


def build_graph(solid: Any) -> FaceGraph:
    from OCP.BRepAdaptor import BRepAdaptor_Surface
    from OCP.GeomAbs import (
        GeomAbs_Cone,
        GeomAbs_Cylinder,
        GeomAbs_Plane,
        GeomAbs_Sphere,
        GeomAbs_SurfaceOfRevolution,
        GeomAbs_Torus,
    )
    from OCP.TopAbs import TopAbs_EDGE, TopAbs_FACE, TopAbs_REVERSED
    from OCP.TopExp import TopExp
    from OCP.TopoDS import TopoDS
    from OCP.TopTools import TopTools_IndexedDataMapOfShapeListOfShape, TopTools_IndexedMapOfShape

    face_map = TopTools_IndexedMapOfShape()
    TopExp.MapShapes_s(solid.wrapped, TopAbs_FACE, face_map)
    import cadquery as cq

    infos: list[FaceInfo] = []
    for i in range(1, face_map.Extent() + 1):
        occ_face = TopoDS.Face_s(face_map.FindKey(i))
        face = cq.Face(occ_face)
        adaptor = BRepAdaptor_Surface(occ_face, True)
        kind_id = adaptor.GetType()
        info = FaceInfo(index=i - 1, face=face, kind=OTHER, area=face.Area())
        if kind_id == GeomAbs_Plane:
            pln = adaptor.Plane()
            n = _vec(pln.Axis().Direction())
            if occ_face.Orientation() == TopAbs_REVERSED:
                n = -n
            info.kind, info.normal, info.location = PLANE, n, _vec(pln.Location())
        elif kind_id == GeomAbs_Cylinder:
            cyl = adaptor.Cylinder()
            info.kind, info.radius = CYLINDER, cyl.Radius()
            info.axis, info.location = _vec(cyl.Axis().Direction()), _vec(cyl.Axis().Location())
        elif kind_id == GeomAbs_Cone:
            cone = adaptor.Cone()
            info.kind, info.radius, info.angle = CONE, cone.RefRadius(), cone.SemiAngle()
            info.axis, info.location = _vec(cone.Axis().Direction()), _vec(cone.Axis().Location())
        elif kind_id == GeomAbs_Sphere:
            sph = adaptor.Sphere()
            info.kind, info.radius, info.location = SPHERE, sph.Radius(), _vec(sph.Location())
        elif kind_id == GeomAbs_SurfaceOfRevolution:
            ax = adaptor.AxeOfRevolution()
            info.kind, info.axis, info.location = REVOLUTION, _vec(ax.Direction()), _vec(ax.Location())
        elif kind_id == GeomAbs_Torus:
            tor = adaptor.Torus()
            info.kind, info.radius = TORUS, tor.MinorRadius()
            info.axis, info.location = _vec(tor.Axis().Direction()), _vec(tor.Axis().Location())
        infos.append(info)
    edge_faces = TopTools_IndexedDataMapOfShapeListOfShape()
    TopExp.MapShapesAndAncestors_s(solid.wrapped, TopAbs_EDGE, TopAbs_FACE, edge_faces)
    for i in range(1, edge_faces.Extent() + 1):
        ids = [face_map.FindIndex(f) - 1 for f in edge_faces.FindFromIndex(i)]
        for a in ids:
            for b in ids:
                if a != b:
                    infos[a].neighbours.add(b)
    return FaceGraph(infos)


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v)


def _canonical(d: np.ndarray) -> np.ndarray:
    d = _unit(d)
    for c in d:
        if abs(c) > 1e-9:
            return d if c > 0 else -d
    return d


def parallel(a: np.ndarray, b: np.ndarray, tol: float = 1e-6) -> bool:
    return abs(abs(float(np.dot(a, b))) - 1.0) < tol


def perpendicular(a: np.ndarray, b: np.ndarray, tol: float = 1e-6) -> bool:
    return abs(float(np.dot(a, b))) < tol


def prismatic_along(face: FaceInfo, d: np.ndarray, tol: float = 1e-6) -> str:
    """'cap' (a plane across ``d``), 'side' (a surface made of lines along ``d``) or 'other'."""
    if face.kind == PLANE:
        if parallel(face.normal, d, tol):
            return "cap"
        if perpendicular(face.normal, d, tol):
            return "side"
        return "other"
    if face.kind == CYLINDER and parallel(face.axis, d, tol):
        return "side"
    return "other"


def axis_candidates(graph: FaceGraph, tol: float = 1e-6) -> list[np.ndarray]:
    """Directions worth extruding along, best first: the plane normals and cylinder axes, ranked by
    the share of the area that is a cap or a side along each."""
    dirs: list[np.ndarray] = []
    for f in graph.faces:
        d = f.normal if f.kind == PLANE else f.axis
        if d is None:
            continue
        d = _canonical(d)
        if not any(parallel(d, e, 1e-6) for e in dirs):
            dirs.append(d)
    for e in np.eye(3):
        if not any(parallel(e, d, 1e-6) for d in dirs):
            dirs.append(e)
    total = graph.area or 1.0

    def score(d: np.ndarray) -> tuple:
        share = sum(f.area for f in graph.faces if prismatic_along(f, d, tol) != "other") / total
        levels = {
            round(float(np.dot(f.location, d)), 6) for f in graph.faces if prismatic_along(f, d, tol) == "cap"
        }
        principal = max(abs(d))
        # most area explained, then fewest section heights (fewest features), then a world axis, Z first
        return (round(share, 4), -len(levels), principal > 1 - 1e-9, abs(d[2]))

    return sorted(dirs, key=score, reverse=True)


def x_direction(graph: FaceGraph, d: np.ndarray) -> np.ndarray:
    """A sketch x direction across ``d``: a world axis where one is across it, else the largest
    side plane's direction."""
    for e in (np.array([1.0, 0, 0]), np.array([0, 1.0, 0]), np.array([0, 0, 1.0])):
        if perpendicular(e, d, 1e-9):
            # the conventional CadQuery planes: XY (x=X), YZ (x=Y), ZX (x=Z)
            if parallel(d, np.array([0, 0, 1.0]), 1e-9):
                return np.array([1.0, 0, 0])
            if parallel(d, np.array([1.0, 0, 0]), 1e-9):
                return np.array([0, 1.0, 0])
            if parallel(d, np.array([0, 1.0, 0]), 1e-9):
                return np.array([0, 0, 1.0])
    best = None
    for f in sorted(graph.faces, key=lambda f: -f.area):
        if f.kind == PLANE and perpendicular(f.normal, d, 1e-6):
            best = np.cross(f.normal, d)
            break
    if best is None:
        helper = np.array([0, 0, 1.0]) if abs(d[2]) < 0.9 else np.array([1.0, 0, 0])
        best = np.cross(d, helper)
    return _canonical(best)
