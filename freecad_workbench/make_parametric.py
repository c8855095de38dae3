"""Make parametric (issue 21): selected solids or a shape file become PartDesign Bodies with named
parameters. The shape goes to the runtime as BREP (a selection) or as the file's bytes (Open shape…);
the runtime reads and recognises it in its sandbox and answers with a CadQuery program, its feature
plan and the volume IoU against the input, which the dialog shows: a rebuild is never silently
different. The Body lands in one undoable step, the original solid hidden beside it.
"""

from __future__ import annotations

from pathlib import Path

import FreeCAD
import FreeCADGui as Gui

from . import insert, messages, session
from .background import Background
from .client import ClientError
from .launcher import LauncherError
from .preferences import current as current_preferences
from .qt import QtWidgets

SHAPE_FILTER = "Shapes (*.step *.stp *.iges *.igs *.brep *.brp *.stl *.obj *.ply *.3mf);;All files (*)"


def summary(label: str, result: dict) -> str:
    """One line for the user: what was rebuilt and how close it is (FreeCAD-free, tested)."""
    counts: dict[str, int] = {}
    for feature in result.get("features") or []:
        counts[feature] = counts.get(feature, 0) + 1
    what = ", ".join(f"{n} {k}{'s' if n > 1 else ''}" for k, n in counts.items()) or "no features"
    iou = float(result.get("iou") or 0.0)
    text = f"{label}: {what}; volume IoU {iou:.5f} against the input."
    if iou < 0.99:
        text += " Parts that were not recognised are kept as plain features."
    for note in result.get("notes") or []:
        text += f" {note[0].upper()}{note[1:]}."
    return text


class ParametricDialog(QtWidgets.QDialog):
    """Progress, cancel and a plain message for one or more shapes on their way to Bodies."""

    def __init__(self, items: list[tuple[str, str, bytes, object]], parent=None) -> None:
        """``items``: (label, file name, bytes, object to hide or None) for each shape."""
        super().__init__(parent)
        self.items = items
        self.prefs = current_preferences()
        self.setWindowTitle("CadSnap: make parametric")
        self.setObjectName("CadSnapParametricDialog")
        self.resize(520, 160)
        layout = QtWidgets.QVBoxLayout(self)
        self.status = QtWidgets.QLabel("Reading the shape in the runtime's sandbox…")
        self.status.setWordWrap(True)
        layout.addWidget(self.status)
        self.bar = QtWidgets.QProgressBar()
        self.bar.setRange(0, 0)  # busy until the runtime answers
        layout.addWidget(self.bar)
        buttons = QtWidgets.QHBoxLayout()
        buttons.addStretch(1)
        self.close_button = QtWidgets.QPushButton("Cancel")
        self.close_button.clicked.connect(self.reject)
        buttons.addWidget(self.close_button)
        layout.addLayout(buttons)
        self.cancelled = False
        self.lines: list[str] = []
        self.background = Background(self._on_message)

    def start(self) -> None:
        prefs, items = self.prefs, list(self.items)

        def work() -> None:
            try:
                client, _ = session.runtime.ensure(prefs, lambda text: self.background.post("status", text))
            except LauncherError as error:
                self.background.post("failed", str(error))
                return
            for index, (label, name, data, original) in enumerate(items):
                if self.cancelled:
                    return
                self.background.post("status", f"Recognising {label} ({index + 1} of {len(items)})…")
                try:
                    result = client.parametrize(name, data, timeout_s=max(60.0, prefs.exec_timeout_s))
                except ClientError as error:
                    self.background.post("one_failed", f"{label}: {error.message}")
                    continue
                self.background.post("one_done", (label, original, result))
            self.background.post("finished", None)

        self.background.start(work, "cadsnap-parametrize")

    def _on_message(self, kind: str, payload) -> None:
        if self.cancelled:
            return
        if kind == "status":
            self.status.setText(payload)
        elif kind == "one_done":
            label, original, result = payload
            self._insert(label, original, result)
        elif kind == "one_failed":
            self.lines.append(payload)
        elif kind in ("failed", "crash", "finished"):
            if kind != "finished":
                self.lines.append(str(payload).splitlines()[0])
                if kind == "crash":
                    FreeCAD.Console.PrintError(f"CadSnap: {payload}\n")
            self.bar.setRange(0, 1)
            self.bar.setValue(1)
            self.status.setText("\n".join(self.lines) or "Nothing was rebuilt.")
            self.close_button.setText("Close")

    def _insert(self, label: str, original, result: dict) -> None:
        doc = FreeCAD.ActiveDocument or FreeCAD.newDocument()
        info = insert.SolidInfo(source=result.get("code", ""), backend="parametrize")
        plan = result.get("feature_plan")
        doc.openTransaction(f"CadSnap: make {label} parametric")
        try:
            obj, message = insert.insert_part(
                doc, result.get("brep", ""), info, plan=plan if isinstance(plan, dict) else None
            )
            obj.Label = f"{label}_parametric"
            if original is not None and hasattr(original, "Visibility"):
                original.Visibility = False
        except insert.InsertError as error:
            doc.abortTransaction()
            self.lines.append(f"{label}: {error}")
            return
        doc.commitTransaction()
        doc.recompute()
        line = summary(label, result)
        if message:
            line += " " + messages.tree_fallback(obj.Label, message)
        FreeCAD.Console.PrintMessage(f"CadSnap: {line}\n")
        self.lines.append(line)

    def reject(self) -> None:
        self.cancelled = True  # the runtime finishes the job in its sandbox; its answer is dropped
        super().reject()

    def done(self, result: int) -> None:
        self.background.stop()
        super().done(result)


def selected_shapes() -> list[tuple[str, str, bytes, object]]:
    """The selected objects that hold solids, each as BREP text (one Body each)."""
    items = []
    for obj in Gui.Selection.getSelection():
        shape = getattr(obj, "Shape", None)
        if shape is None or shape.isNull() or not shape.Solids:
            continue
        items.append((obj.Label, f"{obj.Name}.brep", shape.exportBrepToString().encode("utf-8"), obj))
    return items


def run(items: list[tuple[str, str, bytes, object]]) -> ParametricDialog | None:
    if not items:
        return None
    dialog = ParametricDialog(items, Gui.getMainWindow())
    session.parametric_dialog = dialog
    dialog.show()
    dialog.start()
    return dialog


def open_shape_file() -> ParametricDialog | None:
    path, _ = QtWidgets.QFileDialog.getOpenFileName(Gui.getMainWindow(), "Open shape", "", SHAPE_FILTER)
    if not path:
        return None
    file = Path(path)
    return run([(file.stem, file.name, file.read_bytes(), None)])
