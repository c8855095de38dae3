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
    for poly in _section_polygons(mesh, origin, frame.normal, to_2d) or planar.polygons_full:
        outer = _loop(np.asarray(poly.exterior.coords), fit_tol, snap)
        inner = [_loop(np.asarray(r.coords), fit_tol, snap) for r in poly.interiors]
        regions.append(Region(outer, inner))
    return regions


def _section_polygons(mesh: Any, origin, normal, to_2d: np.ndarray) -> list | None:
    """The section's polygons where two of its loops touch at a point (a bore tangent to the outside
    of a hub): there trimesh's loop walk can take the wrong turn. The section's segments are noded
    and polygonized, and each piece is material when a ray from it crosses the segments an odd
    number of times. None where every point of the section joins two segments (the usual case)."""
    import trimesh
    from shapely.geometry import MultiLineString
    from shapely.ops import polygonize, unary_union

    segs = trimesh.intersections.mesh_plane(mesh, plane_normal=normal, plane_origin=origin)
    if len(segs) == 0:
        return None
    flat = np.einsum("ij,nkj->nki", to_2d[:3, :3], segs)[:, :, :2] + to_2d[:2, 3]
    flat = np.round(flat, 6)
    _, counts = np.unique(flat.reshape(-1, 2), axis=0, return_counts=True)
    if not (counts > 2).any():
        return None
    flat = flat[np.linalg.norm(flat[:, 0] - flat[:, 1], axis=1) > 1e-9]
    faces = list(polygonize(unary_union(MultiLineString([list(map(tuple, sg)) for sg in flat]))))
    a, b = flat[:, 0], flat[:, 1]
    keep = []
    for face in faces:
        x, y = face.representative_point().coords[0]
        straddle = (a[:, 1] > y) != (b[:, 1] > y)
        t = (y - a[straddle, 1]) / (b[straddle, 1] - a[straddle, 1])
        xs = a[straddle, 0] + t * (b[straddle, 0] - a[straddle, 0])
        if int((xs > x).sum()) % 2:
            keep.append(face)
    merged = unary_union(keep)
    out = [g for g in getattr(merged, "geoms", [merged]) if g.geom_type == "Polygon" and g.area > 1e-9]
    return out or None


def _loop(coords: np.ndarray, tol: float, snap: float = 0.0, merge: bool = False) -> Loop:
    """Lines and arcs through a section polygon. A tessellated CAD part has its vertices on the true
    curves: a tight fit finds its lines and arcs exactly; a scanned or coarse mesh gets the loose
    ``tol`` when the tight fit needs too many pieces."""
    pts = np.asarray(coords, dtype=float)
    size = float(np.ptp(pts, axis=0).max()) if len(pts) else 1.0
    tight = max(1e-3, 2e-5 * size)
    if merge:  # a half-section of a turned part: the plane passes next to the facets' vertices
        pts = _merge_close(pts, 0.4 * tol)
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
    segments = _arcs_on_chords(segments, pts, tol)
    if snap > 0:
        segments = [_snapped(seg, snap) for seg in segments]
    return Loop(_sound(segments, tight, snap) or segments)


def _arcs_on_chords(segments: list, pts: np.ndarray, tol: float) -> list:
    """Arcs that bulge off the section between its points become lines through those points. A fit
    sees only the points: where a long straight span meets a cluster at a corner, an arc through
    them all can stray far from the straight edge between two points."""
    from model_runtime.shapes.profile import Segment

    index = {(round(float(x), 9), round(float(y), 9)): k for k, (x, y) in enumerate(pts)}
    n = len(pts)
    out = []
    for seg in segments:
        if seg.kind != "arc":
            out.append(seg)
            continue
        i = index.get((round(seg.start[0], 9), round(seg.start[1], 9)))
        j = index.get((round(seg.end[0], 9), round(seg.end[1], 9)))
        if i is None or j is None:
            out.append(seg)
            continue
        span = [pts[(i + k) % n] for k in range((j - i) % n + 1)]
        c, r = np.asarray(seg.center, dtype=float), float(seg.radius)
        mids = [(a + b) / 2 for a, b in zip(span, span[1:], strict=False)]
        if all(abs(float(np.linalg.norm(m - c)) - r) <= tol for m in mids):
            out.append(seg)
            continue
        out += [
            Segment("line", tuple(map(float, a)), tuple(map(float, b)))
            for a, b in zip(span, span[1:], strict=False)
        ]
    return out


def _sound(segments: list, eps: float, snap: float = 0.0) -> list:
    """The loop without what CadQuery cannot build: a piece whose ends snapped together is dropped,
    an arc whose three points snapped onto one line becomes that line."""
    from model_runtime.shapes.emit import Numbers
    from model_runtime.shapes.profile import Segment

    num = Numbers(snap)
    out = []
    for seg in segments:
        if seg.kind == "circle":
            return segments
        a, b = np.asarray(seg.start, dtype=float), np.asarray(seg.end, dtype=float)
        chord = float(np.linalg.norm(b - a))
        if chord < 1e-6:
            continue
        if seg.kind == "arc":
            # as written (raw), and as a writer that snaps to ``snap`` writes it
            for m in (np.asarray(seg.mid, dtype=float), np.asarray([num.value(c) for c in seg.mid])):
                sag = abs((b - a)[0] * (m - a)[1] - (b - a)[1] * (m - a)[0]) / chord
                if sag < eps or min(np.linalg.norm(m - a), np.linalg.norm(m - b)) < 1e-6:
                    seg = Segment("line", seg.start, seg.end)
                    break
        out.append(seg)
    return out if len(out) >= 3 or (len(out) == 2 and any(s.kind == "arc" for s in out)) else []


def _merge_close(pts: np.ndarray, eps: float) -> np.ndarray:
    """Runs of points closer than ``eps`` (a section passing next to a vertex crosses several facets
    within a hair of it) become their first point: a near-duplicate makes any point look collinear
    with its neighbours and would take the vertices of a long arc with it."""
    if len(pts) > 1 and np.linalg.norm(pts[0] - pts[-1]) < 1e-12:
        pts = pts[:-1]
    if len(pts) < 4:
        return pts
    keep = [0]
    for k in range(1, len(pts)):
        if np.linalg.norm(pts[k] - pts[keep[-1]]) >= eps:
            keep.append(k)
    while len(keep) > 3 and np.linalg.norm(pts[keep[-1]] - pts[keep[0]]) < eps:
        keep.pop()
    return pts[keep] if len(keep) >= 3 else pts


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

    def v(x: float) -> float:
        # snapped until it stays put: the program writer snaps again, and must not move it
        for _ in range(4):
            y = num.value(x)
            if y == x:
                break
            x = y
        return x

    def p(q):
        return None if q is None else (v(q[0]), v(q[1]))

    if seg.kind == "circle":
        c, r = p(seg.center), v(seg.radius)
        return Segment("circle", (c[0] + r, c[1]), (c[0] + r, c[1]), center=c, radius=r)
    # the middle of an arc is not snapped: it only says which way round, and on the grid it would
    # bend the arc off a circle it shares with a neighbour (a boss the outline runs round)
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
    if b.status() != manifold3d.Error.NoError:
        # OCC's triangles of a valid solid can leave slits where faces meet tangentially: close them
        rebuilt.merge_vertices(digits_vertex=4)
        rebuilt.update_faces(rebuilt.nondegenerate_faces())
        split_nonmanifold_edges(rebuilt)
        b = manifold(rebuilt.vertices, rebuilt.faces)
    if a.status() != manifold3d.Error.NoError or b.status() != manifold3d.Error.NoError:
        return 0.0  # not measurable: never chosen over a rebuild that is
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
        # The axis through the centre of mass: the bounding box of a faceted round part is short of
        # the true one by up to the tessellation's tolerance, on one side more than the other.
        centre = (lo + hi) / 2
        mass = np.asarray(mesh.center_mass, dtype=float)
        if max(abs(mass[i] - centre[i]), abs(mass[j] - centre[j])) < 0.01 * max(ext[i], ext[j]):
            centre[i], centre[j] = mass[i], mass[j]
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
                    loops.append(_loop(np.asarray(part.exterior.coords), fit_tol, snap, merge=True))
        if loops:
            out.append(Turned(frame, loops))
    return out


def split_nonmanifold_edges(mesh: Any) -> int:
    """Edges shared by four, six... triangles, split into pairs in place; how many were split.

    A CAD export has them where two walls of the solid touch along a line (a bore tangent to the
    outside, two bosses meeting edge to edge): the solid is fine, but its triangles meet four to an
    edge. Around such an edge the triangles alternate in direction; each one that turns away from
    the material is paired with the next, and every pair but the first gets its own copy of the edge
    (a new vertex at its middle splits the pair's two triangles), so each edge has two triangles and
    the volume is unchanged. Edges that cannot be paired so (an odd count, no alternation) are left,
    and the caller refuses the mesh."""
    faces = np.asarray(mesh.faces)
    verts = np.asarray(mesh.vertices, dtype=float)
    edges = mesh.edges_sorted
    _, inverse, counts = np.unique(edges, axis=0, return_inverse=True, return_counts=True)
    inverse = inverse.reshape(-1)
    bad = np.where(counts[inverse] > 2)[0]
    if len(bad) == 0 or len(bad) > 40000:  # none, or a mesh no CAD export makes: refused as it is
        return 0
    by_edge: dict[int, list[int]] = {}
    ends: dict[int, tuple[int, int]] = {}
    for k in bad:
        by_edge.setdefault(int(inverse[k]), []).append(int(k) // 3)
        ends[int(inverse[k])] = (int(edges[k][0]), int(edges[k][1]))
    new_verts: list[np.ndarray] = []
    replace: dict[int, list[list[int]]] = {}
    n_split = 0
    for key, group in by_edge.items():
        if len(group) % 2:
            continue
        a, b = ends[key]
        pa, pb = verts[a], verts[b]
        e = pb - pa
        length = float(np.linalg.norm(e))
        if length == 0:
            continue
        e /= length
        u = np.cross(e, [1.0, 0, 0] if abs(e[0]) < 0.9 else [0, 1.0, 0])
        u /= np.linalg.norm(u)
        v = np.cross(e, u)
        around = []
        for f in group:
            tri = [int(x) for x in faces[f]]
            i = tri.index(a)
            forward = tri[(i + 1) % 3] == b  # the triangle runs a -> b
            c = verts[next(x for x in tri if x not in (a, b))] - pa
            w = c - (c @ e) * e
            around.append((float(np.arctan2(w @ v, w @ u)), forward, f))
        around.sort()
        n = len(around)
        start = next((i for i in range(n) if not around[i][1]), None)
        if start is None:
            continue
        order = around[start:] + around[:start]
        if any(order[i][1] != bool(i % 2) for i in range(n)):
            continue
        for k in range(2, n, 2):
            mid = len(verts) + len(new_verts)
            new_verts.append((pa + pb) / 2)
            for _, _, f in order[k : k + 2]:
                tri = [int(x) for x in faces[f]]
                i = next(j for j in range(3) if {tri[j], tri[(j + 1) % 3]} == {a, b})
                p, q, r = tri[i], tri[(i + 1) % 3], tri[(i + 2) % 3]
                replace[f] = [[p, mid, r], [mid, q, r]]
        n_split += 1
    if not replace:
        return 0
    keep = [f for f in range(len(faces)) if f not in replace]
    added = [t for f in sorted(replace) for t in replace[f]]
    mesh.vertices = np.vstack([verts, np.asarray(new_verts)])
    mesh.faces = np.vstack([faces[keep], np.asarray(added, dtype=faces.dtype)])
    return n_split
