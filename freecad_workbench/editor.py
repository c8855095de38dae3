"""Edit CadQuery: change an inserted solid's or Body's source, re-run it in the runtime, update it.

A solid gets the new shape; a CadSnap Body is rebuilt from the run's feature plan (``insert.update_part``),
or becomes a solid with source when the new program does not map, and the dialog says why."""

from __future__ import annotations

import FreeCAD

from . import insert, messages, report, session
from .background import Background
from .client import ClientError
from .code_editor import CodeEditor
from .launcher import LauncherError
from .preferences import current as current_preferences
from .qt import QtWidgets


class EditDialog(QtWidgets.QDialog):
    """Source editor for one CadSnap object. "Run and update" replaces its shape (a Body: the whole Body)
    in one transaction; a failing program leaves the document as it was and shows the runtime's message
    (with its line)."""

    def __init__(self, obj, parent=None) -> None:
        super().__init__(parent)
        self.obj = obj
        self.prefs = current_preferences()
        self.setWindowTitle(f"CadSnap: edit {obj.Label}")
        self.setObjectName("CadSnapEditDialog")
        self.resize(720, 560)
        layout = QtWidgets.QVBoxLayout(self)
        self.editor = CodeEditor(obj.CadQuerySource)  # line numbers: the runtime's errors name a line
        layout.addWidget(self.editor, 1)
        self.status = QtWidgets.QLabel("Edit the program; the final solid must be bound to `result`.")
        self.status.setWordWrap(True)
        layout.addWidget(self.status)
        buttons = QtWidgets.QHBoxLayout()
        self.run_button = QtWidgets.QPushButton("Run and update")
        self.run_button.clicked.connect(self.run)
        close = QtWidgets.QPushButton("Close")
        close.clicked.connect(self.reject)
        buttons.addStretch(1)
        buttons.addWidget(self.run_button)
        buttons.addWidget(close)
        layout.addLayout(buttons)
        self.background = Background(self._on_message)
        self.updated = False
        self.message = ""  # why the last update fell back from a feature tree to a solid

    @property
    def obj(self):
        """The object being edited, looked up by name: an edit of a Body replaces the object, and an undo
        brings the old one back under the same name; None when it is gone from the document."""
        try:
            return self._doc.getObject(self._name)
        except Exception:  # noqa: BLE001 - the document was closed
            return None

    @obj.setter
    def obj(self, obj) -> None:
        self._doc, self._name = obj.Document, obj.Name

    def run(self) -> None:
        code = self.editor.toPlainText()
        self.run_button.setEnabled(False)
        self._say("Running in the runtime…")
        prefs = self.prefs

        def work() -> None:
            try:
                client, _ = session.runtime.ensure(prefs, lambda text: self.background.post("status", text))
                result = client.exec_code(code, timeout_s=prefs.exec_timeout_s)
            except ClientError as error:
                line = error.detail.get("line")
                where = f" (line {line})" if line else ""
                self.background.post("failed", f"{error.message}{where}")
                return
            except LauncherError as error:
                self.background.post("failed", str(error))
                return
            self.background.post("done", (code, result))

        self.background.start(work, "cadsnap-exec")

    def _on_message(self, kind: str, payload) -> None:
        if kind == "status":
            self._say(payload)
            return
        self.run_button.setEnabled(True)
        if kind == "done":
            code, result = payload
            plan = result.get("feature_plan")
            target = self.obj
            if target is None or not insert.is_cadsnap_object(target):
                self._say("The part this editor opened on is no longer in the document; close the editor and "
                          "select the part again.", error=True)
                return
            try:
                self.obj, message = insert.update_part(target, result.get("brep", ""), code,
                                                       plan if isinstance(plan, dict) else None)
            except insert.InsertError as error:
                self._say(f"{error} The document is unchanged.", error=True)
                return
            self.updated = True
            volume = result.get("volume")
            done = f"Updated {self.obj.Label}" + (f": volume {volume:.1f} mm³." if volume else ".")
            if message:
                self.message = messages.tree_fallback(self.obj.Label, message, edited=True)
                report.tell(self.message, messages.tree_fallback_short(self.obj.Label, edited=True))
                done = f"{done} {self.message}"
            self._say(done)
        elif kind in ("failed", "crash"):
            self._say(f"{payload}\nThe document is unchanged.", error=True)
            if kind == "crash":
                FreeCAD.Console.PrintError(f"CadSnap: {payload}\n")

    def _say(self, text: str, error: bool = False) -> None:
        self.status.setStyleSheet("color: #b00020;" if error else "")
        self.status.setText(text)

    def done(self, result: int) -> None:
        self.background.stop()
        super().done(result)
