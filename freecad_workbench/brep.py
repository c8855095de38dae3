"""BREP text from the runtime as a checked Part shape. Needs FreeCAD and Part (not the GUI).

The bottom of the insertion path: ``feature_tree`` checks a Body against it and ``insert`` puts it in
a document; neither imports the other's caller.
"""

from __future__ import annotations

import Part


class InsertError(Exception):
    """The part could not be inserted; the document is unchanged."""


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
