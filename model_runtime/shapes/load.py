"""Read an untrusted shape file into one OCC solid (B-rep files) or one trimesh mesh (mesh files).

Runs inside the sandbox job (``job.py``): OCC's readers can crash on a hostile file, and a crash
there costs one job process, never the runtime. Every refusal is a ShapeInputError with one plain
sentence: empty file, wrong extension, nothing solid, an open or non-manifold mesh that cannot be
repaired, too many triangles. Several bodies: the largest is taken and ``notes`` says so.
"""

from __future__ import annotations

import io
import os
import tempfile
from dataclasses import dataclass, field
from typing import Any

from model_runtime.shapes.errors import ShapeInputError

BREP_EXTENSIONS = {".step": "step", ".stp": "step", ".iges": "iges", ".igs": "iges", ".brep": "brep",
                   ".brp": "brep"}  # fmt: skip
MESH_EXTENSIONS = {".stl": "stl", ".obj": "obj", ".ply": "ply", ".3mf": "3mf"}
EXTENSIONS = {**BREP_EXTENSIONS, **MESH_EXTENSIONS}
MAX_TRIANGLES = 2_000_000


@dataclass
class Loaded:
    """What was read: ``shape`` (a cq.Solid; for a mesh, the solid built on its triangles), the mesh
    itself for mesh inputs, the file's length unit, and notes for the user."""

    shape: Any
    kind: str  # "brep" or "mesh"
    mesh: Any = None
    unit: str = "mm"
    notes: list[str] = field(default_factory=list)
    n_bodies: int = 1


def file_kind(name: str) -> str:
    ext = os.path.splitext(name)[1].lower()
    if ext not in EXTENSIONS:
        known = ", ".join(sorted({e.lstrip(".").upper() for e in EXTENSIONS}))
        raise ShapeInputError(
            f"'{os.path.basename(name)}' is not a shape file CadSnap reads (known: {known}).",
            "wrong_extension",
        )
    return EXTENSIONS[ext]


def load_bytes(data: bytes, name: str) -> Loaded:
    """The part in ``data`` (the content of a file called ``name``)."""
    kind = file_kind(name)
    if not data or not data.strip():
        raise ShapeInputError(f"'{os.path.basename(name)}' is empty.", "empty_file")
    if kind in MESH_EXTENSIONS.values():
        return _load_mesh(data, kind, name)
    return _load_brep(data, kind, name)


def _step_unit(text: str) -> str:
    upper = text.upper()
    if "CONVERSION_BASED_UNIT('INCH'" in upper.replace(" ", "") or "'INCH'" in upper:
        return "in"
    return "mm"


def _load_brep(data: bytes, kind: str, name: str) -> Loaded:
    import cadquery as cq
    from OCP.BRep import BRep_Builder
    from OCP.BRepTools import BRepTools
    from OCP.TopoDS import TopoDS_Shape

    base = os.path.basename(name)
    unit = "mm"
    notes: list[str] = []
    with tempfile.TemporaryDirectory(prefix="cadsnap-shape-", dir=os.getcwd()) as tmp:
        path = os.path.join(tmp, "input." + kind)
        with open(path, "wb") as out:
            out.write(data)
        if kind == "step":
            from OCP.STEPControl import STEPControl_Reader

            text = data[:2_000_000].decode("latin-1", "replace")
            if "ISO-10303-21" not in text[:200].upper():
                raise ShapeInputError(f"'{base}' is not a STEP file (no ISO-10303-21 header).", "not_a_solid")
            unit = _step_unit(text)
            assembly = text.upper().count("NEXT_ASSEMBLY_USAGE_OCCURRENCE")
            shape = _read_with(STEPControl_Reader(), path, base, "STEP")
            if assembly:
                notes.append(f"'{base}' is an assembly ({assembly} placed parts)")
        elif kind == "iges":
            from OCP.IGESControl import IGESControl_Reader

            shape = _read_with(IGESControl_Reader(), path, base, "IGES")
        else:
            shape = TopoDS_Shape()
            if not BRepTools.Read_s(shape, path, BRep_Builder()):
                raise ShapeInputError(
                    f"'{base}' could not be read as BREP (damaged or not BREP).", "not_a_solid"
                )
    if shape is None or shape.IsNull():
        raise ShapeInputError(f"'{base}' holds no shape.", "not_a_solid")
    wrapped = cq.Shape.cast(shape)
    solids = list(wrapped.Solids())
    if not solids and kind == "iges":
        solids = _sew_to_solids(wrapped)
    if not solids:
        n_faces = len(wrapped.Faces())
        raise ShapeInputError(
            f"'{base}' holds no solid ({n_faces} faces, open surfaces only): "
            "export the part as a closed solid.",
            "not_a_solid",
        )
    solids.sort(key=lambda s: -s.Volume())
    if len(solids) > 1:
        what = "parts" if notes else "separate solids"
        notes.append(
            f"'{base}' holds {len(solids)} {what}; took the largest (volume {solids[0].Volume():.1f} mm³, "
            f"{100 * solids[0].Volume() / sum(s.Volume() for s in solids):.0f} % of the total)"
        )
    solid = solids[0]
    if not solid.Volume() > 1e-9:
        raise ShapeInputError(f"'{base}' holds a solid with no volume.", "not_a_solid")
    return Loaded(shape=solid, kind="brep", unit=unit, notes=notes, n_bodies=len(solids))



def _read_with(reader: Any, path: str, base: str, fmt: str) -> Any:
    """One shape from an OCC STEP or IGES reader; a file it cannot read gets one plain sentence."""
    from OCP.IFSelect import IFSelect_RetDone

    if reader.ReadFile(path) != IFSelect_RetDone:
        raise ShapeInputError(f"'{base}' could not be read as {fmt} (damaged or not {fmt}).", "not_a_solid")
    reader.TransferRoots()
    return reader.OneShape()

def _sew_to_solids(shape: Any) -> list:
    import cadquery as cq
    from OCP.BRepBuilderAPI import BRepBuilderAPI_MakeSolid, BRepBuilderAPI_Sewing
    from OCP.TopAbs import TopAbs_SHELL
    from OCP.TopExp import TopExp_Explorer
    from OCP.TopoDS import TopoDS

    sewing = BRepBuilderAPI_Sewing(1e-4)
    for face in shape.Faces():
        sewing.Add(face.wrapped)
    sewing.Perform()
    out = []
    explorer = TopExp_Explorer(sewing.SewedShape(), TopAbs_SHELL)
    while explorer.More():
        shell = TopoDS.Shell_s(explorer.Current())
        if shell.Closed():
            solid = cq.Solid(BRepBuilderAPI_MakeSolid(shell).Solid()).fix()
            if solid.Volume() < 0:
                solid = cq.Solid(solid.wrapped.Reversed())
            out.append(solid)
        explorer.Next()
    return out


def _load_mesh(data: bytes, kind: str, name: str) -> Loaded:
    import numpy as np
    import trimesh

    base = os.path.basename(name)
    if kind == "stl" and len(data) >= 84 and not data[:5].lower().startswith(b"solid"):
        count = int.from_bytes(data[80:84], "little")
        if count > MAX_TRIANGLES:
            raise ShapeInputError(
                f"'{base}' has {count:,} triangles; the limit is {MAX_TRIANGLES:,} (decimate it first).",
                "too_large",
            )
    try:
        mesh = trimesh.load(io.BytesIO(data), file_type=kind, force="mesh", process=True)
    except Exception as exc:  # trimesh raises many kinds on bad files
        raise ShapeInputError(
            f"'{base}' could not be read as {kind.upper()} ({type(exc).__name__}).", "not_a_solid"
        ) from None
    if not isinstance(mesh, trimesh.Trimesh) or len(mesh.faces) == 0:
        raise ShapeInputError(f"'{base}' holds no triangles.", "not_a_solid")
    if len(mesh.faces) > MAX_TRIANGLES:
        raise ShapeInputError(
            f"'{base}' has {len(mesh.faces):,} triangles; the limit is {MAX_TRIANGLES:,} "
            "(decimate it first).",
            "too_large",
        )
    notes: list[str] = []
    mesh.merge_vertices()
    mesh.update_faces(mesh.nondegenerate_faces())
    mesh.update_faces(mesh.unique_faces())
    if not mesh.is_watertight:
        from model_runtime.shapes.mesh import split_nonmanifold_edges

        split = split_nonmanifold_edges(mesh)
        if split and mesh.is_watertight:
            notes.append(
                f"'{base}' had {split} edge{'s' if split > 1 else ''} where two walls touch along a line "
                "(four triangles to an edge); they were split apart, the volume unchanged"
            )
    if not mesh.is_watertight:
        trimesh.repair.fill_holes(mesh)
        trimesh.repair.fix_normals(mesh)
        if mesh.is_watertight:
            notes.append(f"'{base}' was an open mesh; its holes were filled")
    if not mesh.is_watertight:
        edges = mesh.edges_sorted
        _, counts = np.unique(edges, axis=0, return_counts=True)
        if (counts > 2).any():
            raise ShapeInputError(
                f"'{base}' is a non-manifold mesh ({int((counts > 2).sum())} edges shared by more than two "
                "triangles) and could not be repaired: fix it in a mesh tool first.",
                "non_manifold",
            )
        raise ShapeInputError(
            f"'{base}' is an open mesh ({int((counts == 1).sum())} edges on a hole) that could not be "
            "closed: export it as a closed solid.",
            "open_mesh",
        )
    bodies = mesh.split(only_watertight=True)
    if len(bodies) > 1:
        bodies = sorted(bodies, key=lambda m: -abs(m.volume))
        notes.append(
            f"'{base}' holds {len(bodies)} separate bodies; took the largest "
            f"({100 * abs(bodies[0].volume) / sum(abs(b.volume) for b in bodies):.0f} % of the volume)"
        )
        mesh = bodies[0]
    if mesh.volume < 0:
        mesh.invert()
    if not mesh.volume > 1e-9:
        raise ShapeInputError(f"'{base}' encloses no volume.", "not_a_solid")
    return Loaded(shape=None, kind="mesh", mesh=mesh, notes=notes, n_bodies=len(bodies))


def mesh_to_solid(mesh: Any) -> Any:
    """An OCC solid on the mesh's triangles, coplanar triangles merged into planar faces."""
    import cadquery as cq
    from OCP.BRep import BRep_Builder
    from OCP.BRepBuilderAPI import BRepBuilderAPI_MakeShapeOnMesh, BRepBuilderAPI_MakeSolid
    from OCP.gp import gp_Pnt
    from OCP.Poly import Poly_Triangle, Poly_Triangulation
    from OCP.ShapeUpgrade import ShapeUpgrade_UnifySameDomain
    from OCP.TopAbs import TopAbs_FACE
    from OCP.TopExp import TopExp_Explorer
    from OCP.TopoDS import TopoDS_Shell

    vertices, faces = mesh.vertices, mesh.faces
    tri = Poly_Triangulation(len(vertices), len(faces), False)
    for i, (x, y, z) in enumerate(vertices, start=1):
        tri.SetNode(i, gp_Pnt(float(x), float(y), float(z)))
    for i, (a, b, c) in enumerate(faces, start=1):
        tri.SetTriangle(i, Poly_Triangle(int(a) + 1, int(b) + 1, int(c) + 1))
    maker = BRepBuilderAPI_MakeShapeOnMesh(tri)
    maker.Build()
    # One face per triangle, edges shared between neighbours: gathered into one shell.
    builder = BRep_Builder()
    shell = TopoDS_Shell()
    builder.MakeShell(shell)
    explorer = TopExp_Explorer(maker.Shape(), TopAbs_FACE)
    while explorer.More():
        builder.Add(shell, explorer.Current())
        explorer.Next()
    shell.Closed(True)
    solid = BRepBuilderAPI_MakeSolid(shell).Solid()
    unify = ShapeUpgrade_UnifySameDomain(solid, True, True, False)
    unify.SetLinearTolerance(1e-6)
    unify.SetAngularTolerance(1e-6)
    unify.Build()
    out = cq.Solid(unify.Shape())
    if out.Volume() < 0:
        out = cq.Solid(out.wrapped.Reversed())
    return out
