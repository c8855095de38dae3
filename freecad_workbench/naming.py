"""Names of inserted objects, derived from the input image. No FreeCAD."""

from __future__ import annotations

import re
import unicodedata
from pathlib import PurePath

DEFAULT_NAME = "CadSnap"


def object_name(image_path: str | None) -> str:
    """A valid FreeCAD object name from the image's file name: ASCII letters, digits and underscores,
    not starting with a digit. FreeCAD appends 001, 002… itself when the name is taken."""
    stem = PurePath(image_path).stem if image_path else ""
    ascii_stem = unicodedata.normalize("NFKD", stem).encode("ascii", "ignore").decode("ascii")
    name = re.sub(r"[^A-Za-z0-9_]+", "_", ascii_stem).strip("_")
    if not name:
        return DEFAULT_NAME
    if name[0].isdigit():
        name = f"{DEFAULT_NAME}_{name}"
    return name[:60]


def object_label(image_path: str | None) -> str:
    """The label the tree shows: the image's stem as the user wrote it."""
    stem = PurePath(image_path).stem if image_path else ""
    return stem or DEFAULT_NAME
