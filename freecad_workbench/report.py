"""What CadSnap says in FreeCAD's Report view and status bar (FreeCAD GUI).

Below the commands, the panel and the editor, which all speak through it: nothing here imports them.
"""

from __future__ import annotations

import FreeCAD
import FreeCADGui as Gui


def tell(text: str, short: str = "") -> None:
    """Say something once where it outlives a closing dialog: ``text`` in the Report view (a warning),
    ``short`` in the status bar. FreeCAD echoes a warning to the status bar itself, cut off in the middle
    when long, through the event queue: ``short`` is shown after that, so it is what stays."""
    FreeCAD.Console.PrintWarning(f"CadSnap: {text}\n")
    _status(short)


def done(text: str, short: str = "") -> None:
    """A success, as a plain Report view line (never red or orange) and ``short`` in the status bar."""
    FreeCAD.Console.PrintMessage(f"CadSnap: {text}\n")
    _status(short)


def _status(short: str) -> None:
    if not short:
        return
    from .qt import QtCore

    window = Gui.getMainWindow()
    if window is not None:
        QtCore.QTimer.singleShot(0, lambda: window.statusBar().showMessage(f"CadSnap: {short}", 30_000))
