"""Set up runtime: create a virtual environment and install the runtime into it, showing every line."""

from __future__ import annotations

import threading

from . import launcher, preferences
from .background import Background
from .qt import QtGui, QtWidgets


class SetupDialog(QtWidgets.QDialog):
    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.setWindowTitle("CadSnap: set up runtime")
        self.setObjectName("CadSnapSetupDialog")
        self.resize(760, 480)
        layout = QtWidgets.QVBoxLayout(self)
        about = QtWidgets.QLabel(
            "CadSnap's model runs in its own Python, outside FreeCAD, so it can use libraries FreeCAD's "
            "Python cannot, and a crash there never takes your drawing with it. This makes that Python "
            "environment once: it creates a virtual environment in the folder below, installs the CadSnap "
            "runtime into it, and builds llama.cpp for the built-in model (a few minutes, needs a C++ "
            "compiler and CMake). Nothing outside that folder changes; Preferences remember the result.")
        about.setWordWrap(True)
        layout.addWidget(about)
        form = QtWidgets.QFormLayout()
        try:
            base = str(launcher.find_base_python())
        except launcher.LauncherError:
            base = ""
        self.base_python = QtWidgets.QLineEdit(base)
        self.base_python.setPlaceholderText("a Python 3.11+ to create the environment with")
        form.addRow("Python", self.base_python)
        self.venv_dir = QtWidgets.QLineEdit(str(launcher.default_venv_dir()))
        form.addRow("Install into", self.venv_dir)
        self.source = QtWidgets.QLineEdit(str(launcher.addon_root()))
        self.source.setToolTip("What pip installs: this add-on's folder, a wheel, or a requirement")
        form.addRow("Runtime source", self.source)
        self.build_llama = QtWidgets.QCheckBox("Build llama.cpp for CPU inference (a few minutes)")
        self.build_llama.setChecked(True)
        form.addRow("", self.build_llama)
        layout.addLayout(form)
        self.progress = QtWidgets.QProgressBar()
        layout.addWidget(self.progress)
        self.log = QtWidgets.QPlainTextEdit()
        self.log.setReadOnly(True)
        self.log.setFont(QtGui.QFont("Monospace", 9))
        self.log.setMaximumBlockCount(5000)
        layout.addWidget(self.log, 1)
        buttons = QtWidgets.QHBoxLayout()
        self.start_button = QtWidgets.QPushButton("Install")
        self.start_button.clicked.connect(self.start)
        self.cancel_button = QtWidgets.QPushButton("Cancel")
        self.cancel_button.clicked.connect(self.cancel)
        self.cancel_button.setEnabled(False)
        close = QtWidgets.QPushButton("Close")
        close.clicked.connect(self.reject)
        buttons.addStretch(1)
        for button in (self.start_button, self.cancel_button, close):
            buttons.addWidget(button)
        layout.addLayout(buttons)
        self.background = Background(self._on_message)
        self.cancel_event = threading.Event()
        self.succeeded = False

    def start(self) -> None:
        from pathlib import Path

        try:
            base = launcher.find_base_python(self.base_python.text().strip())
        except launcher.LauncherError as error:
            self.log.appendPlainText(str(error))
            return
        venv_dir = Path(self.venv_dir.text().strip()).expanduser()
        steps = launcher.setup_commands(base, venv_dir, self.source.text().strip(),
                                        build_llama=self.build_llama.isChecked())
        self.progress.setRange(0, len(steps))
        self.progress.setValue(0)
        self.cancel_event = threading.Event()
        self.start_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        cancel = self.cancel_event

        def work() -> None:
            try:
                launcher.run_steps(steps, lambda line: self.background.post("line", line), cancel)
            except launcher.LauncherError as error:
                self.background.post("failed", str(error))
                return
            self.background.post("done", str(launcher.venv_python(venv_dir)))

        self.background.start(work, "cadsnap-setup")

    def cancel(self) -> None:
        self.cancel_event.set()

    def _on_message(self, kind: str, payload) -> None:
        if kind == "line":
            self.log.appendPlainText(payload)
            if payload.startswith("[") and "/" in payload.split("]")[0]:
                self.progress.setValue(int(payload[1:].split("/")[0]) - 1)
            return
        self.start_button.setEnabled(True)
        self.cancel_button.setEnabled(False)
        if kind == "done":
            self.progress.setValue(self.progress.maximum())
            prefs = preferences.current()
            prefs.interpreter = payload
            prefs.save(preferences.freecad_group())
            self.succeeded = True
            self.log.appendPlainText(f"Done. The runtime's Python is {payload}; it is saved in Preferences.")
        else:
            self.log.appendPlainText(f"FAILED: {payload}")

    def done(self, result: int) -> None:
        self.cancel_event.set()
        self.background.stop()
        super().done(result)
