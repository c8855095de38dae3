"""The Generate panel's widgets under Qt 6 (FreeCAD 1.1 ships PySide6), offscreen, without FreeCAD.

FreeCAD's ``PySide`` shim is a package whose QtCore/QtGui/QtWidgets are the real PySide's; the test
puts the same shim over PySide6 in a fresh interpreter, builds the panel and draws every state.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

SCRIPT = r"""
import json, sys, types
import PySide6
from PySide6 import QtCore, QtGui, QtWidgets

shim = types.ModuleType("PySide")  # what FreeCAD 1.1 provides as `PySide`
shim.QtCore, shim.QtGui, shim.QtWidgets = QtCore, QtGui, QtWidgets
sys.modules.update({"PySide": shim, "PySide.QtCore": QtCore, "PySide.QtGui": QtGui,
                    "PySide.QtWidgets": QtWidgets})
app = QtWidgets.QApplication([])

import base64, io
from PIL import Image
from freecad_workbench import messages, panel_view
from freecad_workbench.lifecycle import CandidateCard, PanelModel

def png(colour):
    buffer = io.BytesIO()
    Image.new("RGB", (96, 96), colour).save(buffer, "PNG")
    return buffer.getvalue()

actions = []
view = panel_view.PanelView(actions.append)
facts_width = {"minimum": view.form.minimumSizeHint().width(), "limit": panel_view.MAX_MIN_WIDTH}
view.form.resize(facts_width["minimum"], 900)  # as narrow as the panel goes: no button is cut off
view.form.show()
app.processEvents()
facts_width["cut_off"] = [b.text() for b in view.form.findChildren(QtWidgets.QPushButton)
                          if b.isVisible() and b.width() < b.minimumSizeHint().width()]
view.form.resize(420, 900)
facts = {"qt": QtCore.qVersion(), "pyside": PySide6.__version__, "buttons": panel_view.standard_buttons(),
         "decodes": view.show_picture(png("gray")), "broken_decodes": view.show_picture(b"\x89PNG broken")}
view.show_picture(png("gray"))
running = PanelModel("Runtime: ready — gguf, cadsnap-compact", "", "Working: generate (40%)", 0.4, True,
                     False, None, [CandidateCard(0, "#1 …", "#1 …", None, None)], None,
                     "import cadquery as cq")
view.draw(running)
app.processEvents()
facts["running"] = {"generate": view.generate_button.isEnabled(), "cancel": view.cancel_button.isEnabled(),
                    "progress": view.progress.value(), "code": view.code_view.toPlainText(),
                    "cards": view.candidate_list.count()}
thumb = base64.b64encode(png("green")).decode()
done = PanelModel("Runtime: ready — gguf, cadsnap-compact",
                  "⚠ Generated code runs without operating-system containment (no bubblewrap).",
                  "Done: 2 of 2 candidates valid. 3 dimensions fitted to the picture "
                  "(similarity 0.61 → 0.74). Press OK to insert.", 1.0, False, True, None,
                  [CandidateCard(1, "#2 0.74", "#2", True, thumb),
                   CandidateCard(0, "#1 0.52", "#1", True, thumb)],
                  1, "", "Generated code runs contained: bubblewrap jail.")
view.draw(done)
app.processEvents()
facts["done"] = {"selected": view.selected_index(), "warning": view.warning_label.isVisible(),
                 "stage_wraps": view.stage_label.wordWrap(), "generate": view.generate_button.isEnabled(),
                 "icon_size": view.candidate_list.iconSize().width(),
                 "captions": view.captions(), "containment": view.containment_label.isVisible()}
view.show_code("import cadquery as cq\n\nresult = (\n    cq.Workplane()\n)\n")
app.processEvents()
facts["line_numbers"] = view.code_view.visible_line_numbers()
facts["gutter"] = view.code_view.gutter.width()
error = messages.explain_code("no_backend")
view.draw(PanelModel("Runtime: up, but without a model", "", "", 0.0, False, True, error, [], None, ""))
app.processEvents()
visible = [b.text() for b in view.action_buttons.values() if b.isVisible()]
view.action_buttons[messages.ACTION_SETUP].click()
facts["error"] = {"shown": view.error_box.isVisible(), "text": view.message.text(), "buttons": visible,
                  "clicked": actions}
view.draw(PanelModel("Runtime: ready", "", "", 0.0, False, True, None, [], None, ""))
facts["error_cleared"] = not view.error_box.isVisible()
image = view.form.grab().toImage()
facts["size"] = [image.width(), image.height()]
facts["width"] = facts_width
image.save(sys.argv[1])
print("FACTS " + json.dumps(facts))
"""


def test_the_panel_builds_and_draws_under_pyside6_offscreen(tmp_path):
    pytest.importorskip("PySide6", reason="PySide6-Essentials is in the dev extra")
    shot = tmp_path / "panel-qt6.png"
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-c", SCRIPT, str(shot)], env=env, cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    facts = json.loads(proc.stdout.split("FACTS ", 1)[1])
    assert facts["qt"].startswith("6.")
    assert facts["buttons"] == 0x00000400 | 0x00200000  # QDialogButtonBox.Ok | Close
    assert facts["decodes"] and not facts["broken_decodes"]
    assert facts["running"] == {"generate": False, "cancel": True, "progress": 400,
                                "code": "import cadquery as cq", "cards": 1}
    done = facts["done"]
    assert done["selected"] == 1 and done["warning"] and done["stage_wraps"] and done["generate"]
    # Listed best score first, though #1 streamed in first; containment said when it is on.
    assert done["icon_size"] == 96 and done["captions"] == ["#2 0.74", "#1 0.52"] and done["containment"]
    assert facts["line_numbers"][:5] == [1, 2, 3, 4, 5] and facts["gutter"] > 10
    assert facts["error"]["shown"] and facts["error"]["text"].startswith("The runtime has no model")
    assert facts["error"]["buttons"] == ["Set up runtime…", "Open preferences…"]
    assert facts["error"]["clicked"] == ["setup_runtime"] and facts["error_cleared"]
    assert shot.stat().st_size > 5_000
    # Narrow enough for FreeCAD's default Combo View, every button whole at that width.
    assert facts["width"]["minimum"] <= facts["width"]["limit"], facts["width"]
    assert facts["width"]["cut_off"] == [], facts["width"]
