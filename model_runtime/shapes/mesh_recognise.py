"""The mesh path's driver: which programs to try on a triangle mesh, and in which order.

Turned parts first (a half-section about each round axis), then extrusions along the mesh's best
axes (``mesh.slice_mesh``). Holes drilled across the part (a set screw through a knob's skirt, a pin
hole through a hub) would spoil both, so each is found on its own triangles (facets along one axis,
on one circle, round a hollow), plugged on a copy of the mesh with an exact boolean, the part is
recognised without them, and they come back as hole steps along their own axes. Every program is
run and scored by volume IoU against the mesh; the best one wins.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from model_runtime.shapes import mesh as mesh_mod
from model_runtime.shapes.emit import Numbers
from model_runtime.shapes.holes import STANDARD_DIAMETERS, Hole
from model_runtime.shapes.profile import Frame, fit_circle

GOOD = 0.995  # a rebuild this close is not improved on


@dataclass
class CrossHole:
    """A round hole along ``frame.normal``: centre in the frame, from height ``lo`` to ``hi``."""

    frame: Frame
    center: tuple[float, float]
    radius: float
    lo: float
    hi: float

    def as_cross(self) -> tuple:
        d = 2 * self.radius
        d = next((s for s in STANDARD_DIAMETERS if abs(s - d) < 0.03), d)
        hole = Hole(self.center, True, self.hi, [(d, self.hi - self.lo)])
        return (self.frame.normal, self.frame, hole)


def _axis_key(d: np.ndarray) -> tuple:
    d = d if next((c for c in d if abs(c) > 1e-9), 1) > 0 else -d
    return tuple(np.round(d, 4))


def find_cross_holes(mesh: Any, axes: list[np.ndarray], fit_tol: float) -> list[CrossHole]:
    """Round holes along each of ``axes``: facets whose normals are square to the axis, joined edge
    to edge, whose corners lie on one circle (within ``fit_tol``) and whose normals point at its
    centre; the pieces of one circle together must go (almost) all the way round."""
    import trimesh

    normals = mesh.face_normals
    size = float(max(mesh.extents))
    out: list[CrossHole] = []
    for d in axes:
        d = np.asarray(d, dtype=float) / np.linalg.norm(d)
        frame = Frame((0, 0, 0), d, mesh_mod.x_direction(d))
        side = np.abs(normals @ d) < 2e-3
        if side.sum() < 6:
            continue
        adj = mesh.face_adjacency
        keep = side[adj[:, 0]] & side[adj[:, 1]]
        # facets of one cylinder meet at small angles; a sharp edge splits two walls
        keep &= mesh.face_adjacency_angles < math.radians(35)
        groups = trimesh.graph.connected_components(adj[keep], nodes=np.where(side)[0], min_len=3)
        circles: list[tuple[tuple[float, float], float, list[np.ndarray]]] = []
        for faces in groups:
            verts = np.unique(mesh.faces[faces].reshape(-1))
            pts3 = mesh.vertices[verts]
            pts = np.column_stack([pts3 @ frame.x_dir, pts3 @ frame.y_dir])
            if len(pts) < 6:
                continue
            c, r, err = fit_circle(pts)
            if err > fit_tol or r > 0.3 * size or r < 0.2:
                continue
            centres = mesh.triangles_center[faces]
            radial = np.column_stack([centres @ frame.x_dir - c[0], centres @ frame.y_dir - c[1]])
            n2 = np.column_stack([normals[faces] @ frame.x_dir, normals[faces] @ frame.y_dir])
            inward = np.einsum("ij,ij->i", radial, n2)
            if (inward < 0).mean() < 0.9:  # a boss or a fillet, not a hole
                continue
            circles.append((c, r, [pts, pts3 @ d]))
        used = [False] * len(circles)
        for i, (c, r, _) in enumerate(circles):
            if used[i]:
                continue
            members = [
                j for j, (c2, r2, _) in enumerate(circles)
                if not used[j] and math.dist(c, c2) < 2 * fit_tol and abs(r - r2) < 2 * fit_tol
            ]  # fmt: skip
            for j in members:
                used[j] = True
            pts = np.vstack([circles[j][2][0] for j in members])
            heights = np.concatenate([circles[j][2][1] for j in members])
            c, r, err = fit_circle(pts)
            ang = np.sort(np.arctan2(pts[:, 1] - c[1], pts[:, 0] - c[0]))
            gap = float(np.max(np.diff(np.concatenate([ang, [ang[0] + 2 * math.pi]]))))
            if gap > math.radians(40) or err > fit_tol:
                continue
            lo, hi = float(heights.min()), float(heights.max())
            if hi - lo < 2 * fit_tol:
                continue
            out.append(CrossHole(frame, (float(c[0]), float(c[1])), float(r), lo, hi))
    return out


def plugged(mesh: Any, holes: list[CrossHole]) -> Any:
    """The mesh with ``holes`` filled: each a cylinder, kept inside the mesh's convex hull."""
    import manifold3d
    import trimesh

    def manifold(m) -> Any:
        return manifold3d.Manifold(
            manifold3d.Mesh(
                vert_properties=np.asarray(m.vertices, dtype=np.float32),
                tri_verts=np.asarray(m.faces, dtype=np.uint32),
            )
        )

    body = manifold(mesh)
    hull = manifold(mesh.convex_hull)
    for h in holes:
        length = h.hi - h.lo
        cyl = trimesh.creation.cylinder(radius=h.radius, height=length, sections=96)
        rot = np.eye(4)
        rot[:3, 0], rot[:3, 1], rot[:3, 2] = h.frame.x_dir, h.frame.y_dir, h.frame.normal
        rot[:3, 3] = h.frame.world(h.center[0], h.center[1], (h.lo + h.hi) / 2)
        cyl.apply_transform(rot)
        body = body + (manifold(cyl) ^ hull)
    out = body.to_mesh()
    result = trimesh.Trimesh(np.asarray(out.vert_properties)[:, :3], np.asarray(out.tri_verts), process=True)
    result.merge_vertices()
    if not result.is_watertight:
        mesh_mod.split_nonmanifold_edges(result)
    return result


def _score(cand, mesh: Any):
    from model_runtime.shapes.recognise import _one_valid_solid

    try:
        cand.solid = _one_valid_solid(cand.program)
        cand.iou = mesh_mod.volume_iou(mesh, cand.solid)
    except Exception:
        cand.solid, cand.iou = None, 0.0
    return cand


def _turned(mesh: Any, fit_tol: float, unit: float, cross: list) -> list:
    from model_runtime.shapes.recognise import revolve_program

    out = []
    for turned in mesh_mod.revolve_profiles(mesh, fit_tol, snap=0.02):
        try:
            cand = revolve_program(turned, Numbers(0.02, unit), cross)
        except Exception:
            continue
        cand.axis = _axis_key(turned.frame.y_dir)
        out.append(cand)
    return out


def _prisms(mesh: Any, d: np.ndarray, fit_tol: float, unit: float, cross: list):
    from model_runtime.shapes.recognise import prism_program

    frame = Frame((0, 0, 0), d, mesh_mod.x_direction(d))
    try:
        stack = mesh_mod.slice_mesh(mesh, frame, fit_tol=fit_tol, level_tol=max(0.01, fit_tol / 2), snap=0.02)
    except Exception:
        return
    for snap in (0.02, 0.0):
        try:
            cand = prism_program(stack, Numbers(snap, unit), cross=cross)
        except Exception:
            continue
        cand.axis = _axis_key(d)
        yield cand


def _pick(tried: list):
    """The best, an earlier (simpler) one kept over a later one that is barely better."""
    out = None
    for cand in tried:
        if out is None or cand.iou > out.iou + 1e-4:
            out = cand
    return out


def recognise_mesh(loaded: Any, started: float, time_budget_s: float):
    from model_runtime.shapes.recognise import Recognition, _count

    mesh = loaded.mesh
    size = float(max(mesh.extents))
    fit_tol = max(0.02, min(0.1, 2e-3 * size))
    unit = 25.4 if loaded.unit == "in" else 1.0
    deadline = started + time_budget_s
    tried: list = []

    def best():
        return _pick(tried)

    def done() -> bool:
        b = best()
        return (b is not None and b.iou >= GOOD) or time.monotonic() > deadline

    for cand in _turned(mesh, fit_tol, unit, []):
        tried.append(_score(cand, mesh))
    b = best()
    axes = mesh_mod.axis_candidates(mesh)[:3]
    for i, d in enumerate(axes):
        b = best()
        # a turned part that is already close is not sliced again along its axis
        if done() or (b is not None and b.strategy == "revolve" and b.iou >= 0.95):
            break
        if i == 2 and b is not None and b.iou >= 0.95:
            break
        for cand in _prisms(mesh, d, fit_tol, unit, []):
            tried.append(_score(cand, mesh))
            if done():
                break
    # holes across the part: plugged, the part recognised again, the holes drilled back
    b = best()
    if b is not None and b.iou < GOOD and time.monotonic() < deadline:
        world = [np.eye(3)[k] for k in range(3)]
        extra = [a for a in axes if not any(abs(abs(float(a @ w)) - 1) < 1e-6 for w in world)]
        ranked = sorted(tried, key=lambda c: -c.iou)
        bases: list = []
        for c in ranked:
            key = (c.strategy, getattr(c, "axis", None))
            if key not in bases:
                bases.append(key)
        # the two best, and any turned one: a cross hole is what spoils a turned part's section
        bases = bases[:2] + [k for k in bases[2:] if k[0] == "revolve"]
        for strategy, key in bases:
            if key is None or time.monotonic() > deadline:
                continue
            base_axis = np.array(key)
            across = [a for a in world + extra if abs(abs(float(a @ base_axis)) - 1) > 1e-6]
            try:
                holes = find_cross_holes(mesh, across, fit_tol)
            except Exception:
                holes = []
            if not holes:
                continue
            try:
                plug = plugged(mesh, holes)
            except Exception:
                continue
            cross = [h.as_cross() for h in holes]
            if strategy == "revolve":
                cands = [c for c in _turned(plug, fit_tol, unit, cross) if c.axis == key]
            else:
                cands = _prisms(plug, base_axis, fit_tol, unit, cross)
            for cand in cands:
                tried.append(_score(cand, mesh))
                if done():
                    break
            if done():
                break
    best_cand = _pick([c for c in tried if c.solid is not None])
    if best_cand is None:
        raise ValueError("no recogniser could rebuild this mesh")
    header = f"Rebuilt by CadSnap from a mesh: {_count(best_cand.features)}."
    program = best_cand.program.replace(
        "import cadquery as cq\n", "import cadquery as cq\n\n# " + header + "\n", 1
    )
    return Recognition(
        program=program,
        iou=best_cand.iou,
        bbox_iou=mesh_mod.bbox_iou(mesh),
        features=best_cand.features,
        notes=list(loaded.notes),
        strategy="mesh " + best_cand.strategy,
        seconds=time.monotonic() - started,
        input_volume=float(mesh.volume),
        output_volume=best_cand.solid.Volume(),
        solid=best_cand.solid,
    )
