"""Names of inserted objects, derived from the input image. No FreeCAD."""

from __future__ import annotations

import re
import unicodedata
from pathlib import PurePath

DEFAULT_NAME = "CadSnap"
# Pictures CadSnap saved itself (3D view, region, clipboard): ``capture-view-20260101-120000-2.png``.
# A timestamp says nothing about the part, so these parts are named DEFAULT_NAME (CadSnap001, …).
CAPTURE_STEM = "capture-{kind}-{stamp}"
_CAPTURE = re.compile(r"capture-[a-z]+-\d{8}-\d{6}(-\d+)?")


def _stem(image_path: str | None) -> str:
    stem = PurePath(image_path).stem if image_path else ""
    return "" if _CAPTURE.fullmatch(stem) else stem


def object_name(image_path: str | None) -> str:
    """A valid FreeCAD object name from the image's file name: ASCII letters, digits and underscores,
    not starting with a digit. FreeCAD appends 001, 002… itself when the name is taken."""
    stem = _stem(image_path)
    ascii_stem = unicodedata.normalize("NFKD", stem).encode("ascii", "ignore").decode("ascii")
    name = re.sub(r"[^A-Za-z0-9_]+", "_", ascii_stem).strip("_")
    if not name:
        return DEFAULT_NAME
    if name[0].isdigit():
        name = f"{DEFAULT_NAME}_{name}"
    return name[:60]


def object_label(image_path: str | None) -> str:
    """The label the tree shows: the image's stem as the user wrote it; "" for a capture (the object's
    unique name, CadSnap001, is then its label too)."""
    return _stem(image_path) if image_path else DEFAULT_NAME
