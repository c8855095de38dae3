"""Meshes (STL, OBJ, PLY, 3MF): the same recognisers on a triangle mesh.

The mesh is segmented by its triangles' normals against each candidate axis: caps (planes across
the axis) give the section heights, sides (planes and cylinder facets along it) keep a slab
prismatic, and anything else (cones, spheres, tori, blends) marks a slab as approximate. Sections
are cut with trimesh and their polygons fitted with lines, arcs and circles (``profile.fit_polyline``)
within the mesh's tolerance, so a faceted hole becomes a circle again and a standard size. From
there the prism, hole and pattern recognisers and the program writer are the B-rep path's.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from model_runtime.shapes.prism import Slab, Stack, _merge_levels, runs_of
from model_runtime.shapes.profile import Frame, Loop, Region, fit_polyline


def axis_candidates(mesh: Any, tol: float = 2e-3) -> list[np.ndarray]:
    normals, areas = mesh.face_normals, mesh.area_faces
    total = float(areas.sum()) or 1.0
    dirs: list[np.ndarray] = [np.array(e) for e in np.eye(3)]
    order = np.argsort(-areas)
    for i in order[:2000]:
        n = normals[i]
        n = n if next((c for c in n if abs(c) > 1e-9), 1) > 0 else -n
        if not any(abs(abs(float(n @ d)) - 1) < tol for d in dirs):
            dirs.append(n / np.linalg.norm(n))
        if len(dirs) > 12:
            break

    centers = mesh.triangles_center

    def score(d: np.ndarray) -> tuple:
        dots = np.abs(normals @ d)
        ok = (dots > 1 - tol) | (dots < tol)
        levels = len(np.unique(np.round(centers[dots > 1 - tol] @ d, 2)))
        # most area explained, then fewest section heights, then a world axis, Z first
        return (round(float(areas[ok].sum()) / total, 3), -levels, max(abs(d)) > 1 - 1e-9, abs(d[2]))

    return sorted(dirs, key=score, reverse=True)


def x_direction(d: np.ndarray) -> np.ndarray:
    for axis, x in (((0, 0, 1.0), (1.0, 0, 0)), ((1.0, 0, 0), (0, 1.0, 0)), ((0, 1.0, 0), (0, 0, 1.0))):
        if abs(abs(float(np.dot(d, axis))) - 1) < 1e-9:
            return np.array(x)
    helper = np.array([0, 0, 1.0]) if abs(d[2]) < 0.9 else np.array([1.0, 0, 0])
    x = np.cross(d, helper)
    return x / np.linalg.norm(x)


def slice_mesh(
    mesh: Any,
    frame: Frame,
    fit_tol: float = 0.05,
    level_tol: float = 0.02,
    angle_tol: float = 2e-3,
    snap: float = 0.0,
) -> Stack:
    d = frame.normal
    normals = mesh.face_normals
    dots = normals @ d
    heights = (mesh.triangles - frame.origin) @ d  # (n, 3)
    caps = np.abs(np.abs(dots) - 1) < angle_tol
    sides = np.abs(dots) < angle_tol
    other = ~(caps | sides)
    # cap heights, weighted by area so that a sliver does not add a level
    levels = list(heights[caps].mean(axis=1)) + [float(heights.min()), float(heights.max())]
    curved = (
        np.column_stack([heights[other].min(axis=1), heights[other].max(axis=1)]) if other.any() else None
    )
    levels = _merge_levels(levels, level_tol)
    if snap > 0:
        from model_runtime.shapes.emit import Numbers

        levels = sorted({Numbers(snap).value(z) for z in levels})
    lo_all, hi_all = float(heights.min()), float(heights.max())
    levels = [z for z in levels if lo_all - level_tol <= z <= hi_all + level_tol]
    slabs: list[Slab] = []
    for z0, z1 in zip(levels, levels[1:], strict=False):
        if z1 - z0 < level_tol:
            continue
        prismatic = True
        if curved is not None:
            prismatic = not bool(((curved[:, 0] < z1 - level_tol) & (curved[:, 1] > z0 + level_tol)).any())
        regions = section_regions(mesh, frame, (z0 + z1) / 2, fit_tol, snap)
        slabs.append(Slab(z0, z1, regions, prismatic))
    stack = Stack(frame, slabs)
    stack.runs = runs_of(stack)
    return stack


def section_regions(mesh: Any, frame: Frame, z: float, fit_tol: float, snap: float = 0.0) -> list[Region]:
    origin = frame.world(0, 0, z)
    path = mesh.section(plane_origin=origin, plane_normal=frame.normal)
    if path is None:
        return []
    to_2d = np.eye(4)
    to_2d[:3, :3] = np.vstack([frame.x_dir, frame.y_dir, frame.normal])
    to_2d[:3, 3] = -to_2d[:3, :3] @ frame.world(0, 0, z)
    planar, _ = path.to_2D(to_2D=to_2d)
    regions = []
    for poly in planar.polygons_full:
        outer = _loop(np.asarray(poly.exterior.coords), fit_tol, snap)
        inner = [_loop(np.asarray(r.coords), fit_tol, snap) for r in poly.interiors]
        regions.append(Region(outer, inner))
    return regions


def _loop(coords: np.ndarray, tol: float, snap: float = 0.0) -> Loop:
    """Lines and arcs through a section polygon. A tessellated CAD part has its vertices on the true
    curves: a tight fit finds its lines and arcs exactly; a scanned or coarse mesh gets the loose
    ``tol`` when the tight fit needs too many pieces."""
    pts = np.asarray(coords, dtype=float)
    size = float(np.ptp(pts, axis=0).max()) if len(pts) else 1.0
    tight = max(1e-3, 2e-5 * size)
    pts = _drop_collinear(pts, 0.2 * tight)
    from model_runtime.shapes.profile import Segment, fit_circle

    if len(pts) >= 8:  # a whole circle within the loose tolerance (a hole through a faceted cone)
        c, r, err = fit_circle(pts)
        if err < tol and r < 1e5:
            segments = [Segment("circle", (c[0] + r, c[1]), (c[0] + r, c[1]), center=c, radius=r)]
            return Loop([_snapped(s, snap) for s in segments] if snap > 0 else segments)
    segments = fit_polyline(pts, tight, closed=True)
    if len(segments) > max(8, 0.25 * len(pts)):
        segments = fit_polyline(pts, tol, closed=True)
    if snap > 0:
        segments = [_snapped(seg, snap) for seg in segments]
    return Loop(segments)


def _drop_collinear(pts: np.ndarray, eps: float) -> np.ndarray:
    """Points that lie on the line through their neighbours (a section crossing a facet's
    diagonal) are dropped: what is left are the tessellation's own vertices."""
    if len(pts) > 1 and np.linalg.norm(pts[0] - pts[-1]) < 1e-12:
        pts = pts[:-1]
    keep = list(range(len(pts)))
    changed = True
    while changed and len(keep) > 3:
        changed = False
        out = []
        n = len(keep)
        for k in range(n):
            a, b, c = pts[keep[k - 1]], pts[keep[k]], pts[keep[(k + 1) % n]]
            d = c - a
            length = float(np.hypot(*d))
            if (
                length > 0
                and abs(d[0] * (b[1] - a[1]) - d[1] * (b[0] - a[0])) / length < eps
                and ((b - a) @ d > 0 and (c - b) @ d > 0)
                and not (out and out[-1] == keep[k - 1] and changed)
            ):
                changed = True
                continue
            out.append(keep[k])
        keep = out
    return pts[keep]


def _snapped(seg, snap: float):
    from model_runtime.shapes.emit import Numbers
    from model_runtime.shapes.profile import Segment

    num = Numbers(snap)

    def p(q):
        return None if q is None else (num.value(q[0]), num.value(q[1]))

    if seg.kind == "circle":
        c, r = p(seg.center), num.value(seg.radius)
        return Segment("circle", (c[0] + r, c[1]), (c[0] + r, c[1]), center=c, radius=r)
    return Segment(seg.kind, p(seg.start), p(seg.end), mid=seg.mid, center=seg.center, radius=seg.radius)


def volume_iou(mesh: Any, solid: Any, tolerance: float = 0.01) -> float:
    """Volume IoU of a mesh and an OCC solid, with manifold3d's exact mesh booleans."""
    import manifold3d

    def manifold(vertices, faces):
        m = manifold3d.Mesh(
            vert_properties=np.asarray(vertices, dtype=np.float32),
            tri_verts=np.asarray(faces, dtype=np.uint32),
        )
        return manifold3d.Manifold(m)

    import trimesh

    verts, tris = solid.tessellate(tolerance, 0.1)
    rebuilt = trimesh.Trimesh([v.toTuple() for v in verts], tris, process=True)
    rebuilt.merge_vertices(digits_vertex=6)
    a = manifold(mesh.vertices, mesh.faces)
    b = manifold(rebuilt.vertices, rebuilt.faces)
    va, vb = a.volume(), b.volume()
    inter = (a ^ b).volume()
    union = va + vb - inter
    return max(0.0, min(1.0, inter / union)) if union > 0 else 0.0


def bbox_iou(mesh: Any) -> float:
    lo, hi = mesh.bounds
    return float(abs(mesh.volume) / max(np.prod(hi - lo), 1e-12))


def revolve_profiles(mesh: Any, fit_tol: float, snap: float = 0.0):
    """Turned-part candidates: for each world axis across which the mesh is round (equal extents),
    the half-section through the axis as loops (a ``revolve.Turned``)."""
    from shapely.geometry import box

    from model_runtime.shapes.revolve import Turned

    lo, hi = mesh.bounds
    centre = (lo + hi) / 2
    ext = hi - lo
    out = []
    for k in range(3):
        i, j = [a for a in range(3) if a != k]
        if abs(ext[i] - ext[j]) > 0.01 * max(ext[i], ext[j]):
            continue
        d = np.eye(3)[k]
        u = np.eye(3)[i]
        frame = Frame(centre, np.cross(u, d), u)  # local x radial (u), local y along the axis
        path = mesh.section(plane_origin=centre, plane_normal=frame.normal)
        if path is None:
            continue
        to_2d = np.eye(4)
        to_2d[:3, :3] = np.vstack([frame.x_dir, frame.y_dir, frame.normal])
        to_2d[:3, 3] = -to_2d[:3, :3] @ centre
        planar, _ = path.to_2D(to_2D=to_2d)
        half = box(0, -1e6, 1e6, 1e6)
        loops = []
        for poly in planar.polygons_full:
            piece = poly.intersection(half)
            for part in getattr(piece, "geoms", [piece]):
                if part.geom_type == "Polygon" and part.area > 1e-6 and not part.interiors:
                    loops.append(_loop(np.asarray(part.exterior.coords), fit_tol, snap))
        if loops:
            out.append(Turned(frame, loops))
    return out
