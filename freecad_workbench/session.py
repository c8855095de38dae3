"""What the commands share while FreeCAD runs: the current picture and the runtime manager."""

from __future__ import annotations

import atexit
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from model_runtime import protocol

from .launcher import RuntimeManager
from .lifecycle import PanelSlot
from .naming import CAPTURE_STEM


@dataclass
class Picture:
    """An image to generate from. ``path`` is where it is on disk (captures are saved there)."""

    png: bytes
    path: str
    source: str  # "view", "region", "file", "clipboard"
    camera: str = ""
    # A capture of the 3D view: the bounding box of what was visible (placement.Box, mm), whose largest
    # dimension becomes the default overall size and beside which the new solid is placed.
    visible_box: tuple[float, float, float, float, float, float] | None = None
    note: str = ""  # what the picture is of, when the panel should say so ("the selection only")


current_picture: Picture | None = None
runtime = RuntimeManager()
panels = PanelSlot()  # the one Generate panel (a new capture closes the old one and cancels its job)
atexit.register(runtime.stop)  # FreeCAD's exit also runs the Qt aboutToQuit hook set in commands


def captures_dir() -> Path:
    folder = protocol.cache_dir() / "captures"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def new_capture_path(kind: str) -> Path:
    """``capture-view-20260101-120000.png`` (then ``-2``, ``-3``… within the same second)."""
    stem = CAPTURE_STEM.format(kind=kind, stamp=f"{datetime.now():%Y%m%d-%H%M%S}")
    path, number = captures_dir() / f"{stem}.png", 1
    while path.exists():
        number += 1
        path = captures_dir() / f"{stem}-{number}.png"
    return path


def set_picture(picture: Picture) -> Picture:
    global current_picture
    current_picture = picture
    return picture


# Open windows are kept referenced here so Python does not collect them while Qt shows them.
region_selector = None
edit_dialog = None
setup_dialog = None
parametric_dialog = None  # Make parametric (issue 21)
