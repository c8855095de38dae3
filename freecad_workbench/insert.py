"""Putting a generated solid into a FreeCAD document, as one undoable transaction.

Needs FreeCAD and Part (not the GUI), so ``freecadcmd`` tests reach it. The object carries its CadQuery
source and where it came from as properties in the "CadSnap" group, which .FCStd files keep.
"""

from __future__ import annotations

from dataclasses import dataclass

import FreeCAD
import Part

from .naming import object_label, object_name

GROUP = "CadSnap"


class InsertError(Exception):
    """The solid could not be inserted; the document is unchanged."""


@dataclass
class SolidInfo:
    """Where a solid came from; each field becomes a property of the inserted object."""

    source: str
    image_path: str = ""
    backend: str = ""
    model: str = ""
    score: float = 0.0
    instruction: str = ""
    camera: str = ""  # the capture's camera orientation, as FreeCAD writes it


# (property type, name, tooltip); names carry the group's prefix so they never clash with Part's.
PROPERTIES = (
    ("App::PropertyString", "CadQuerySource", "The CadQuery program that builds this solid"),
    ("App::PropertyFile", "InputImage", "The picture the solid was generated from"),
    ("App::PropertyString", "Backend", "The runtime backend that generated the program"),
    ("App::PropertyString", "Model", "The model that generated the program"),
    ("App::PropertyFloat", "Score", "The candidate's score (higher is better)"),
    ("App::PropertyString", "Instruction", "The instruction given with the picture"),
    ("App::PropertyString", "CaptureCamera", "The 3D view's camera when the picture was captured"),
)


def shape_from_brep(brep: str) -> Part.Shape:
    """A valid, non-empty Part shape from BREP text, else InsertError."""
    if not brep or not brep.strip():
        raise InsertError("The runtime sent no geometry.")
    shape = Part.Shape()
    try:
        shape.importBrepFromString(brep)
    except Exception as error:  # noqa: BLE001 - OCCT reports bad BREP text as a bare Part.OCCError
        raise InsertError(f"The geometry could not be read ({error}).") from None
    if shape.isNull() or not shape.Solids:
        raise InsertError("The geometry has no solid.")
    if not shape.isValid():
        raise InsertError("The geometry is not a valid solid.")
    return shape


def insert_solid(doc, brep: str, info: SolidInfo, placement=None):
    """Add a ``Part::Feature`` named after the image; returns it. One transaction: undo removes it,
    and any failure leaves the document as it was."""
    shape = shape_from_brep(brep)  # before the transaction: bad geometry never touches the document
    doc.openTransaction(f"CadSnap: insert {object_label(info.image_path)}")
    try:
        obj = doc.addObject("Part::Feature", object_name(info.image_path))
        obj.Label = object_label(info.image_path)
        for type_name, name, tooltip in PROPERTIES:
            obj.addProperty(type_name, name, GROUP, tooltip)
        _write_info(obj, info)
        obj.Shape = shape
        if placement is not None:
            obj.Placement = placement if isinstance(placement, FreeCAD.Placement) else FreeCAD.Placement(
                placement, FreeCAD.Rotation())
        doc.recompute()
    except Exception:
        doc.abortTransaction()
        raise
    doc.commitTransaction()
    return obj


def update_solid(obj, brep: str, source: str):
    """Replace an inserted object's shape and source after an edit; one transaction, placement kept."""
    shape = shape_from_brep(brep)
    if not is_cadsnap_object(obj):
        raise InsertError(f"{obj.Label} was not made by CadSnap: it has no CadQuery source.")
    doc = obj.Document
    doc.openTransaction(f"CadSnap: edit {obj.Label}")
    try:
        placement = obj.Placement
        obj.Shape = shape
        obj.Placement = placement
        obj.CadQuerySource = source
        doc.recompute()
    except Exception:
        doc.abortTransaction()
        raise
    doc.commitTransaction()
    return obj


def is_cadsnap_object(obj) -> bool:
    return obj is not None and "CadQuerySource" in getattr(obj, "PropertiesList", ())


def _write_info(obj, info: SolidInfo) -> None:
    obj.CadQuerySource = info.source
    obj.InputImage = info.image_path
    obj.Backend = info.backend
    obj.Model = info.model
    obj.Score = float(info.score or 0.0)
    obj.Instruction = info.instruction
    obj.CaptureCamera = info.camera


# --- CadSnap feature tree (issue 15): the one call the panel and headless documents use. ---
def insert_part(doc, brep: str, info: SolidInfo, placement=None, plan: dict | None = None,
                feature_tree: bool = True):
    """(object, message): a PartDesign Body built from the runtime's feature ``plan`` when
    ``feature_tree`` is on and the Body matches the solid, else the solid with source; the message
    says why a tree fell back ("" when there was nothing to say)."""
    if feature_tree:
        from .feature_tree import insert_feature_tree

        return insert_feature_tree(doc, plan, brep, info, placement)
    return insert_solid(doc, brep, info, placement), ""
