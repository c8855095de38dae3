"""Turned parts: a solid whose every face is a surface of revolution on one axis (planes across the
axis, coaxial cylinders, cones, tori, spheres centred on it) is one revolve of its half-section.

A part that is *mostly* turned (a hex grip on a nozzle, a keyway in a pulley bore, flats, a slot
across a knob) is one revolve too: of the half-section most angles around the axis share
(``turned_core``); what differs from it is left to the residual step as plain features.
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


def dominant_axis(
    graph: FaceGraph, size: float, tol: float = 1e-6
) -> tuple[np.ndarray, np.ndarray, float] | None:
    """(point, direction, share) of the axis whose coaxial round faces have the most area; ``share``
    is the part of the whole area that is of revolution about it (planes across it included)."""
    groups: list[list] = []  # [point, direction, area of round faces]
    for f in graph.faces:
        if f.kind not in (CYLINDER, CONE, TORUS):
            continue
        d = f.axis / np.linalg.norm(f.axis)
        for g in groups:
            v = f.location - g[0]
            if parallel(d, g[1], tol) and np.linalg.norm(v - np.dot(v, g[1]) * g[1]) < 1e-6 * max(1.0, size):
                g[2] += f.area
                break
        else:
            groups.append([f.location, d, f.area])
    if not groups:
        return None
    a, d, round_area = max(groups, key=lambda g: g[2])
    d = d if next(c for c in d if abs(c) > 1e-9) > 0 else -d  # one way along the axis: named planes

    def of_revolution(f) -> bool:
        if f.kind == PLANE:
            return parallel(f.normal, d, tol)
        if f.kind in (CYLINDER, CONE, TORUS):
            v = f.location - a
            return parallel(f.axis, d, tol) and np.linalg.norm(v - np.dot(v, d) * d) < 1e-6 * max(1.0, size)
        if f.kind == SPHERE:
            v = f.location - a
            return np.linalg.norm(v - np.dot(v, d) * d) < 1e-6 * max(1.0, size)
        return False

    share = sum(f.area for f in graph.faces if of_revolution(f)) / (graph.area or 1.0)
    # planes across the axis are of revolution about any axis: a plate with a hole is not turned
    return a, d, min(share, 2 * round_area / (graph.area or 1.0))


def turned_core(solid, point, direction, fit_tol: float = 1e-3, n: int = 12) -> Turned | None:
    """The revolve of the half-section most angles around the axis share (the turned part under its
    local features); ties go to the larger section, then to the first angle (a named plane)."""
    found: list[tuple[float, float, Turned]] = []
    for k in range(n):
        angle = 360.0 * k / n
        try:
            turned = half_section(solid, point, direction, fit_tol, angle=angle)
        except Exception:
            turned = None
        if turned is not None and turned.loops:
            found.append((angle, sum(lp.area() for lp in turned.loops), turned))
    if not found:
        return None
    biggest = max(a for _, a, _ in found)
    clusters: list[list] = []
    for item in found:
        for c in clusters:
            if abs(c[0][1] - item[1]) <= 1e-6 * biggest:
                c.append(item)
                break
        else:
            clusters.append([item])
    best = max(clusters, key=lambda c: (len(c), c[0][1]))
    # a quarter turn if the cluster has one: the section then lies on a named plane
    return min(best, key=lambda item: (item[0] % 90 != 0, item[0]))[2]


def half_section(solid, point, direction, fit_tol: float = 1e-3, angle: float = 0.0) -> Turned | None:
    import cadquery as cq

    d = direction / np.linalg.norm(direction)
    helper = np.array([1.0, 0, 0]) if abs(d[0]) < 0.9 else np.array([0, 1.0, 0])
    if abs(d[2]) > 0.9:
        helper = np.array([1.0, 0, 0])
    u = helper - np.dot(helper, d) * d
    u /= np.linalg.norm(u)
    if angle:
        t = np.radians(angle)
        u = np.cos(t) * u + np.sin(t) * np.cross(d, u)
        u = np.where(np.abs(u) < 1e-12, 0.0, u)
    # the axis point nearest the world origin: the profile's numbers are the part's own heights
    point = np.asarray(point, dtype=float)
    a = point - np.dot(point, d) * d
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
