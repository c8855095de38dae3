"""Putting a part into a FreeCAD document, as one undoable transaction: the one insertion path.

:func:`insert_plan` takes a feature plan, the solid's BREP, its source and a name and placement, and
knows nothing of pictures: Generate (:func:`insert_part`, named after its picture), headless documents
and any later command that has a plan go through it. Imports point one way: ``insert`` ->
``feature_tree`` -> ``brep``. Needs FreeCAD and Part (not the GUI), so ``freecadcmd`` tests reach it.
The object carries its CadQuery source and where it came from as properties in the "CadSnap" group,
which .FCStd files keep (the input picture inside the file).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import FreeCAD

from . import feature_tree
from .brep import InsertError, shape_from_brep
from .messages import TREE_FALLBACK_PREFIX
from .naming import object_label, object_name

__all__ = ["InsertError", "SolidInfo", "insert_part", "insert_plan", "shape_from_brep", "update_part"]

GROUP = "CadSnap"
BODY_TYPE = "PartDesign::Body"


@dataclass
class SolidInfo:
    """Where a part came from; each field becomes a property of the inserted object."""

    source: str
    image_path: str = ""  # "" for parts that did not come from a picture
    backend: str = ""
    model: str = ""
    score: float = 0.0
    instruction: str = ""
    camera: str = ""  # the capture's camera orientation, as FreeCAD writes it


# (property type, name, tooltip); names carry the group's prefix so they never clash with Part's.
# InputImage is a FileIncluded property: the saved .FCStd carries the picture itself, not a path to a
# capture in a cache folder.
PROPERTIES = (
    ("App::PropertyString", "CadQuerySource", "The CadQuery program that builds this part"),
    ("App::PropertyFileIncluded", "InputImage", "The picture the part was generated from"),
    ("App::PropertyString", "Backend", "The runtime backend that generated the program"),
    ("App::PropertyString", "Model", "The model that generated the program"),
    ("App::PropertyFloat", "Score", "The candidate's score (higher is better)"),
    ("App::PropertyString", "Instruction", "The instruction given with the picture"),
    ("App::PropertyString", "CaptureCamera", "The 3D view's camera when the picture was captured"),
)


def insert_plan(doc, plan: dict | None, brep: str, info: SolidInfo, name: str, label: str = "",
                placement=None, feature_tree_wanted: bool = True):
    """(object, message): the part for ``plan`` and its solid ``brep`` named ``name`` (FreeCAD appends
    001… when taken), labelled ``label`` (else its name), at ``placement`` (a Placement or a Vector).

    A PartDesign Body built from ``plan`` when ``feature_tree_wanted`` and the Body matches the solid,
    else the solid with source; the message says why a tree fell back ("" when there is nothing to
    say). One transaction: undo removes it, any failure leaves the document as it was."""
    shape = shape_from_brep(brep)  # before the transaction: bad geometry never touches the document
    title = f"CadSnap: insert {label or name}"
    message = ""
    if feature_tree_wanted:
        before = {o.Name for o in doc.Objects}
        doc.openTransaction(title)
        try:
            body, sheet, reason = feature_tree.build_checked(doc, plan, brep, name)
            if body is not None:
                obj = _dress_body(body, sheet, info, label, placement)
                doc.recompute()
        except Exception:
            _roll_back(doc, before)
            raise
        if body is not None:
            doc.commitTransaction()
            if note := feature_tree.hashed_dressup_note(body):  # FreeCAD 1.0 in a user's document
                FreeCAD.Console.PrintWarning(f"CadSnap: {note}\n")
            return obj, ""
        _roll_back(doc, before)  # the Body that did not match goes; the solid comes in its own step
        message = TREE_FALLBACK_PREFIX + reason
    doc.openTransaction(title)
    try:
        obj = _add_solid(doc, shape, info, placement, name, label)
        doc.recompute()
    except Exception:
        doc.abortTransaction()
        raise
    doc.commitTransaction()
    return obj, message


def _roll_back(doc, before: set[str]) -> None:
    """Abort the open transaction; with undo off (freecadcmd's default) nothing was recorded, so remove
    what it made by hand."""
    doc.abortTransaction()
    feature_tree.remove_new_objects(doc, before)


def insert_part(doc, brep: str, info: SolidInfo, placement=None, plan: dict | None = None,
                feature_tree: bool = True):
    """:func:`insert_plan` for a part generated from a picture: named after ``info.image_path``."""
    return insert_plan(doc, plan, brep, info, object_name(info.image_path), object_label(info.image_path),
                       placement, feature_tree)


def insert_solid(doc, brep: str, info: SolidInfo, placement=None):
    """A ``Part::Feature`` with source named after the picture; returns it (one transaction)."""
    return insert_part(doc, brep, info, placement, feature_tree=False)[0]


def _add_solid(doc, shape, info: SolidInfo, placement, name: str, label: str = ""):
    """The ``Part::Feature`` with its CadSnap properties, inside the caller's transaction."""
    obj = doc.addObject("Part::Feature", name)
    obj.Label = label or obj.Name
    _write_info(obj, info)
    obj.Shape = shape
    if placement is not None:
        obj.Placement = _as_placement(placement)
    return obj


def _as_placement(placement):
    """A Placement from a Placement or a Vector (a picked point, an offset beside the other parts)."""
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
    for type_name, prop, tooltip in PROPERTIES:
        if prop not in obj.PropertiesList:
            obj.addProperty(type_name, prop, GROUP, tooltip)
    obj.CadQuerySource = info.source
    if info.image_path and Path(info.image_path).is_file():
        obj.InputImage = info.image_path  # copied into the document
    obj.Backend = info.backend
    obj.Model = info.model
    obj.Score = float(info.score or 0.0)
    obj.Instruction = info.instruction
    obj.CaptureCamera = info.camera


def _dress_body(body, sheet, info: SolidInfo, label: str, placement=None):
    """A built Body as CadSnap's: its label (and its spreadsheet's), the CadSnap properties a solid
    has, its placement."""
    body.Label = label or body.Name
    if sheet is not None:
        sheet.Label = f"{body.Label} parameters"
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
    """Rebuild a CadSnap Body from ``plan`` in one undoable transaction; (object, message).

    The Body itself stays (its name, Label, Placement, parent group, Origin and CadSnap properties, with
    the new source): its features, sketches and the spreadsheet only it used are replaced by the new
    plan's. Keeping the Body matters for undo: FreeCAD 0.20's GUI prints errors ("Origin … doesn't
    contain feature with role XY_Plane") when it restores a removed Body and its Origin. When the plan
    cannot become a Body that matches ``brep``, the Body holds the new solid as its base feature (a
    hidden ``Part::Feature``) and the message says which step could not become a feature. Undo brings
    the old Body back whole."""
    shape = shape_from_brep(brep)  # before the transaction: bad geometry never touches the document
    if not is_cadsnap_object(body):
        raise InsertError(f"{body.Label} was not made by CadSnap: it has no CadQuery source.")
    doc = body.Document
    name, label = body.Name, body.Label
    title = f"CadSnap: edit {label}"
    doc.openTransaction(title)
    try:
        _empty_body(body)
        built, sheet, reason = feature_tree.build_checked(doc, plan, brep, name, into=body)
        if built is not None:
            body.CadQuerySource = source
            if sheet is not None:
                sheet.Label = f"{label} parameters"
            doc.recompute()
    except Exception:
        doc.abortTransaction()
        raise
    if built is not None:
        doc.commitTransaction()
        return body, ""
    doc.abortTransaction()  # the old features are back (see build_checked); with undo off, see below
    doc.openTransaction(title)
    try:
        _empty_body(body)  # with undo off it also takes what the failed build left
        # The new solid becomes the Body's base feature: the Body stays (see above), in the program's
        # coordinates, placed by the Body.
        base = doc.addObject("Part::Feature", f"{name}_solid")
        base.Label = f"{label} solid"
        base.Shape = shape
        base.Visibility = False
        body.BaseFeature = base
        body.CadQuerySource = source
        doc.recompute()
    except Exception:
        doc.abortTransaction()
        raise
    doc.commitTransaction()
    return body, TREE_FALLBACK_PREFIX + reason


def _empty_body(body) -> None:
    """Remove a Body's features and sketches (last first) and the spreadsheets only they read; the Body
    and its Origin stay. The spreadsheets go first: undo restores objects in the order they were
    removed, and a feature restored before its spreadsheet keeps expressions that no longer drive it."""
    doc = body.Document
    base = body.BaseFeature  # the solid an earlier edit without a feature tree left
    members = list(body.Group)
    owned = {o.Name for o in members} | {body.Name}
    sheets = {o.Name: o for member in [body, *members] for o in member.OutList
              if o.TypeId == "Spreadsheet::Sheet"}
    for sheet in sheets.values():
        if {o.Name for o in sheet.InList} <= owned:
            doc.removeObject(sheet.Name)
    for member in reversed(members):
        doc.removeObject(member.Name)
    if base is not None:
        body.BaseFeature = None
        doc.removeObject(base.Name)
