"""Edit > Preferences > CadSnap: the page FreeCAD shows for ``preferences.Preferences``."""

from __future__ import annotations

import FreeCAD

from . import preferences
from .qt import QtWidgets


class PreferencePage:
    """FreeCAD's Python preference page protocol: ``form``, ``loadSettings``, ``saveSettings``."""

    def __init__(self, parent=None) -> None:
        self.form = QtWidgets.QWidget(parent)
        self.form.setWindowTitle("CadSnap")
        layout = QtWidgets.QFormLayout(self.form)
        self.runtime_url = QtWidgets.QLineEdit()
        layout.addRow("Runtime URL", self.runtime_url)
        self.start_runtime = QtWidgets.QCheckBox("Start the runtime when needed (loopback URL only)")
        layout.addRow("", self.start_runtime)
        self.interpreter = QtWidgets.QLineEdit()
        self.interpreter.setPlaceholderText("empty: the environment made by Set up runtime")
        layout.addRow("Runtime Python", self.interpreter)
        self.backend = QtWidgets.QComboBox()
        self.backend.addItems(list(preferences.BACKENDS))
        layout.addRow("Backend", self.backend)
        self.model_path = QtWidgets.QLineEdit()
        self.model_path.setPlaceholderText("GGUF file or Hugging Face folder; empty: the built-in model")
        layout.addRow("Model", self.model_path)
        self.mmproj_path = QtWidgets.QLineEdit()
        layout.addRow("Vision projector (GGUF)", self.mmproj_path)
        self.adapter_path = QtWidgets.QLineEdit()
        self.adapter_path.setPlaceholderText("LoRA adapter folder (hf backend), optional")
        layout.addRow("Adapter", self.adapter_path)
        self.remote_url = QtWidgets.QLineEdit()
        layout.addRow("Remote server URL", self.remote_url)
        self.candidates = QtWidgets.QSpinBox()
        self.candidates.setRange(1, 16)
        layout.addRow("Candidates", self.candidates)
        self.insert_as = QtWidgets.QComboBox()
        self.insert_as.addItems(list(preferences.INSERT_AS))
        self.insert_as.setToolTip("What OK in the Generate panel inserts unless you choose otherwise there")
        layout.addRow("Insert as", self.insert_as)
        self.allow_uncontained = QtWidgets.QCheckBox("Run generated code even without a sandbox jail")
        self.allow_uncontained.setToolTip(
            "Where the runtime cannot jail generated code (no bubblewrap on Linux; macOS; Windows), it "
            "does not run it. Tick this to run it anyway, with your user's rights: only for models and "
            "servers you trust.")
        layout.addRow("Containment", self.allow_uncontained)
        self.capture_size = QtWidgets.QSpinBox()
        self.capture_size.setRange(64, 2048)
        self.capture_size.setSuffix(" px")
        layout.addRow("3D view capture size", self.capture_size)
        self.timeouts = {}
        labels = (("connect_timeout_s", "Connect timeout"), ("startup_timeout_s", "Start-up timeout"),
                  ("job_timeout_s", "Generation timeout"), ("exec_timeout_s", "Code run timeout"))
        for name, label in labels:
            box = QtWidgets.QDoubleSpinBox()
            box.setRange(0.5, 36_000)
            box.setSuffix(" s")
            self.timeouts[name] = box
            layout.addRow(label, box)

    def loadSettings(self) -> None:  # noqa: N802 - FreeCAD's name
        prefs = preferences.current()
        self.runtime_url.setText(prefs.runtime_url)
        self.start_runtime.setChecked(prefs.start_runtime)
        self.interpreter.setText(prefs.interpreter)
        self.backend.setCurrentIndex(max(0, self.backend.findText(prefs.backend)))
        self.model_path.setText(prefs.model_path)
        self.mmproj_path.setText(prefs.mmproj_path)
        self.adapter_path.setText(prefs.adapter_path)
        self.remote_url.setText(prefs.remote_url)
        self.candidates.setValue(prefs.candidates)
        self.capture_size.setValue(prefs.capture_size)
        self.insert_as.setCurrentIndex(0 if prefs.feature_tree else 1)
        self.allow_uncontained.setChecked(prefs.allow_uncontained)
        for name, box in self.timeouts.items():
            box.setValue(getattr(prefs, name))

    def saveSettings(self) -> None:  # noqa: N802
        prefs = preferences.Preferences(
            runtime_url=self.runtime_url.text(), start_runtime=self.start_runtime.isChecked(),
            interpreter=self.interpreter.text(), backend=self.backend.currentText(),
            model_path=self.model_path.text(), mmproj_path=self.mmproj_path.text(),
            adapter_path=self.adapter_path.text(),
            remote_url=self.remote_url.text(), candidates=self.candidates.value(),
            capture_size=self.capture_size.value(), feature_tree=self.insert_as.currentIndex() == 0,
            allow_uncontained=self.allow_uncontained.isChecked(),
            **{name: box.value() for name, box in self.timeouts.items()})
        try:
            prefs.save(preferences.freecad_group())
        except preferences.PreferencesError as error:
            FreeCAD.Console.PrintError(f"CadSnap preferences not saved: {error}\n")
            QtWidgets.QMessageBox.warning(self.form, "CadSnap", f"Preferences not saved: {error}")
