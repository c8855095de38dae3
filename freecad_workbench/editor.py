"""Edit CadQuery: change an inserted solid's source, re-run it in the runtime, update the solid."""

from __future__ import annotations

import FreeCAD

from . import insert, session
from .background import Background
from .client import ClientError
from .launcher import LauncherError
from .preferences import current as current_preferences
from .qt import QtGui, QtWidgets


class EditDialog(QtWidgets.QDialog):
    """Source editor for one CadSnap object. "Run and update" replaces its shape in one transaction;
    a failing program leaves the solid as it was and shows the runtime's message (with its line)."""

    def __init__(self, obj, parent=None) -> None:
        super().__init__(parent)
        self.obj = obj
        self.prefs = current_preferences()
        self.setWindowTitle(f"CadSnap: edit {obj.Label}")
        self.setObjectName("CadSnapEditDialog")
        self.resize(720, 560)
        layout = QtWidgets.QVBoxLayout(self)
        self.editor = QtWidgets.QPlainTextEdit(obj.CadQuerySource)
        self.editor.setFont(QtGui.QFont("Monospace", 10))
        self.editor.setLineWrapMode(QtWidgets.QPlainTextEdit.NoWrap)
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
            try:
                insert.update_solid(self.obj, result.get("brep", ""), code)
            except insert.InsertError as error:
                self._say(f"{error} The solid is unchanged.", error=True)
                return
            self.updated = True
            volume = result.get("volume")
            self._say(f"Updated {self.obj.Label}" + (f": volume {volume:.1f} mm³." if volume else "."))
        elif kind in ("failed", "crash"):
            self._say(f"{payload}\nThe solid is unchanged.", error=True)
            if kind == "crash":
                FreeCAD.Console.PrintError(f"CadSnap: {payload}\n")

    def _say(self, text: str, error: bool = False) -> None:
        self.status.setStyleSheet("color: #b00020;" if error else "")
        self.status.setText(text)

    def done(self, result: int) -> None:
        self.background.stop()
        super().done(result)
