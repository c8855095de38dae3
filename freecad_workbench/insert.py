"""Putting a generated solid into a FreeCAD document, as one undoable transaction.

Needs FreeCAD and Part (not the GUI), so ``freecadcmd`` tests reach it. The object carries its CadQuery
source and where it came from as properties in the "CadSnap" group, which .FCStd files keep.
"""

from __future__ import annotations

from dataclasses import dataclass

import FreeCAD
import Part

from .messages import TREE_FALLBACK_PREFIX
from .naming import object_label, object_name

GROUP = "CadSnap"
BODY_TYPE = "PartDesign::Body"


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
        obj = _add_solid(doc, shape, info, placement)
        doc.recompute()
    except Exception:
        doc.abortTransaction()
        raise
    doc.commitTransaction()
    return obj


def _add_solid(doc, shape, info: SolidInfo, placement=None, name: str = "", label: str = ""):
    """The ``Part::Feature`` with its CadSnap properties, inside the caller's transaction."""
    obj = doc.addObject("Part::Feature", name or object_name(info.image_path))
    obj.Label = label or object_label(info.image_path)
    for type_name, prop, tooltip in PROPERTIES:
        obj.addProperty(type_name, prop, GROUP, tooltip)
    _write_info(obj, info)
    obj.Shape = shape
    if placement is not None:
        obj.Placement = _as_placement(placement)
    return obj


def _as_placement(placement):
    """A Placement from a Placement or a Vector (a picked point, an offset beside the captured part)."""
    return placement if isinstance(placement, FreeCAD.Placement) else FreeCAD.Placement(
        placement, FreeCAD.Rotation())


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


def is_body(obj) -> bool:
    return getattr(obj, "TypeId", "") == BODY_TYPE


def cadsnap_owner(obj):
    """The CadSnap object a selection stands for: the object itself, or the CadSnap Body a selected
    feature or sketch belongs to (a click on a Body's face selects its Tip feature, not the Body)."""
    if is_cadsnap_object(obj):
        return obj
    for parent in getattr(obj, "InList", ()):
        if is_body(parent) and obj in parent.Group and is_cadsnap_object(parent):
            return parent
    return None


def read_info(obj) -> SolidInfo:
    """The SolidInfo a CadSnap object carries (what a replacement must keep)."""
    return SolidInfo(source=obj.CadQuerySource, image_path=obj.InputImage, backend=obj.Backend,
                     model=obj.Model, score=obj.Score, instruction=obj.Instruction, camera=obj.CaptureCamera)


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
    says why a tree fell back ("" when there was nothing to say). One transaction either way."""
    if not feature_tree:
        return insert_solid(doc, brep, info, placement), ""

    shape = shape_from_brep(brep)  # before the transaction: bad geometry never touches the document
    label = object_label(info.image_path)
    doc.openTransaction(f"CadSnap: insert {label}")
    try:
        obj, message = _body_or_solid(doc, plan, brep, shape, info, object_name(info.image_path), label,
                                      placement)
        doc.recompute()
    except Exception:
        doc.abortTransaction()
        raise
    doc.commitTransaction()
    return obj, message


def _body_or_solid(doc, plan: dict | None, brep: str, shape, info: SolidInfo, name: str, label: str,
                   placement=None):
    """(object, message) inside the caller's transaction: the checked Body for ``plan`` dressed as
    CadSnap's, else the solid with source and why the tree fell back."""
    from .feature_tree import checked_body

    body, sheet, reason = checked_body(doc, plan, brep, name)
    if body is None:
        return _add_solid(doc, shape, info, placement, name=name, label=label), TREE_FALLBACK_PREFIX + reason
    return _dress_body(body, sheet, info, label, placement), ""


def _dress_body(body, sheet, info: SolidInfo, label: str, placement=None):
    """A built Body as CadSnap's: its label (and its spreadsheet's), the CadSnap properties a solid
    has, its placement."""
    body.Label = label
    if sheet is not None:
        sheet.Label = f"{label} parameters"
    for type_name, prop, tooltip in PROPERTIES:
        body.addProperty(type_name, prop, GROUP, tooltip)
    _write_info(body, info)
    if placement is not None:
        body.Placement = _as_placement(placement)
    return body


def update_part(obj, brep: str, source: str, plan: dict | None = None):
    """(object, message) after Edit CadQuery: a CadSnap Body is rebuilt from the edited program's
    ``plan`` (:func:`replace_body`), a solid gets the new shape (:func:`update_solid`). One transaction
    either way; InsertError (document untouched) when the geometry is bad."""
    if is_body(obj):
        return replace_body(obj, brep, source, plan)
    return update_solid(obj, brep, source), ""


def replace_body(body, brep: str, source: str, plan: dict | None):
    """Replace a CadSnap Body by one built from ``plan`` in one undoable transaction; (object, message).

    The new object keeps the Body's name where it can, its Label, Placement, parent group and CadSnap
    properties (with the new source); the old Body goes with its features, sketches and the Parameters
    spreadsheet only it used. When the plan cannot become a Body that matches ``brep``, a solid with
    source takes its place and the message says which step could not become a feature. Undo brings the
    old Body back whole."""

    shape = shape_from_brep(brep)  # before the transaction: bad geometry never touches the document
    if not is_cadsnap_object(body):
        raise InsertError(f"{body.Label} was not made by CadSnap: it has no CadQuery source.")
    doc = body.Document
    name, label, placement = body.Name, body.Label, body.Placement
    info = read_info(body)
    info.source = source
    parent = _parent_group(body)
    doc.openTransaction(f"CadSnap: edit {label}")
    try:
        _remove_body(body)
        new, message = _body_or_solid(doc, plan, brep, shape, info, name, label, placement)
        if parent is not None:
            parent.addObject(new)
        doc.recompute()
    except Exception:
        doc.abortTransaction()
        raise
    doc.commitTransaction()
    return new, message


def _parent_group(obj):
    """The group (folder or App::Part) holding ``obj``, or None."""
    getter = getattr(obj, "getParentGroup", None)
    return getter() if getter is not None else None


def _remove_body(body) -> None:
    """Remove a Body, its features and sketches (last first) and the spreadsheets only they read; its
    Origin goes with the Body. The spreadsheets go first: undo restores objects in the order they were
    removed, and a feature restored before its spreadsheet keeps expressions that no longer drive it."""
    doc = body.Document
    members = list(body.Group)
    owned = {o.Name for o in members} | {body.Name}
    sheets = {o.Name: o for member in [body, *members] for o in member.OutList
              if o.TypeId == "Spreadsheet::Sheet"}
    sheets = [s for s in sheets.values() if {o.Name for o in s.InList} <= owned]
    for sheet in sheets:
        doc.removeObject(sheet.Name)
    for member in reversed(members):
        doc.removeObject(member.Name)
    doc.removeObject(body.Name)
