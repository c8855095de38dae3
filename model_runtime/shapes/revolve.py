"""Turned parts: a solid whose every face is a surface of revolution on one axis (planes across the
axis, coaxial cylinders, cones, tori, spheres centred on it) is one revolve of its half-section.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from model_runtime.shapes.graph import CONE, CYLINDER, PLANE, SPHERE, TORUS, FaceGraph, parallel
from model_runtime.shapes.profile import Frame, Loop, face_regions


@dataclass
class Turned:
    frame: Frame  # origin on the axis; x radial, y along the axis
    loops: list[Loop]


def turning_axis(graph: FaceGraph, tol: float = 1e-6) -> tuple[np.ndarray, np.ndarray] | None:
    """(point, direction) of the common axis, or None when some face is not of revolution on it."""
    axis = None
    for f in graph.faces:
        if f.kind in (CYLINDER, CONE, TORUS):
            axis = (f.location, f.axis)
            break
    if axis is None:
        return None
    a, d = axis
    d = d / np.linalg.norm(d)

    def on_axis(p) -> bool:
        v = p - a
        return np.linalg.norm(v - np.dot(v, d) * d) < 1e-5 * max(1.0, np.linalg.norm(v))

    for f in graph.faces:
        if f.kind == PLANE:
            if not parallel(f.normal, d, tol):
                return None
        elif f.kind in (CYLINDER, CONE, TORUS):
            if not parallel(f.axis, d, tol) or not on_axis(f.location):
                return None
        elif f.kind == SPHERE:
            if not on_axis(f.location):
                return None
        else:
            return None
    return a, d


def half_section(solid, point, direction, fit_tol: float = 1e-3) -> Turned | None:
    import cadquery as cq

    d = direction / np.linalg.norm(direction)
    helper = np.array([1.0, 0, 0]) if abs(d[0]) < 0.9 else np.array([0, 1.0, 0])
    if abs(d[2]) > 0.9:
        helper = np.array([1.0, 0, 0])
    u = helper - np.dot(helper, d) * d
    u /= np.linalg.norm(u)
    # project the solid's centre onto the axis so the profile sits near the origin
    c = solid.Center()
    a = point + np.dot(np.array([c.x, c.y, c.z]) - point, d) * d
    normal = np.cross(u, d)
    frame = Frame(a, normal, u)  # local x = radial u, local y = d
    bb = solid.BoundingBox()
    size = 2 * max(bb.xlen, bb.ylen, bb.zlen)
    corners = [frame.world(0, -size), frame.world(size, -size), frame.world(size, size), frame.world(0, size)]
    wire = cq.Wire.makePolygon([cq.Vector(*p) for p in corners], close=True)
    half = cq.Face.makeFromWires(wire)
    faces = list(solid.intersect(half).Faces())
    if not faces:
        return None
    loops = []
    for face in faces:
        region = face_regions(face, frame, 1e-5 * size, fit_tol)
        if region.inner:
            return None
        loops.append(region.outer)
    return Turned(frame, loops)
