"""Run by ``freecad gui_flow.py`` under Xvfb: the user's path through the workbench, driven by timers.

Activate CadSnap -> a document with a part in view -> Capture 3D view (the toolbar command) ->
Generate in the task panel against a real runtime (started by the workbench) -> wait -> accept ->
check the inserted object -> screenshot -> quit (which stops the runtime the workbench started).

Settings come from the JSON file in CADSNAP_GUI_CONFIG: ``prefs`` (Preferences fields), ``result``
(where to write what happened), ``screenshot``, ``deadline_s``. Python output goes to the real stdout
so the pytest driver sees every Traceback.
"""

import json
import os
import sys
import time
import traceback
from pathlib import Path

sys.stdout, sys.stderr = sys.__stdout__, sys.__stderr__  # FreeCAD routes them to the report view

import FreeCAD  # noqa: E402
import FreeCADGui as Gui  # noqa: E402

CONFIG = json.loads(Path(os.environ["CADSNAP_GUI_CONFIG"]).read_text(encoding="utf-8"))
RESULT = {"steps": [], "ok": False}
STATUS_BAR = []  # every message the main window's status bar showed (FreeCAD clears it at will)
T0 = time.monotonic()


def step(step_name, **facts):
    RESULT["steps"].append({"step": step_name, "t": round(time.monotonic() - T0, 3), **facts})
    print(f"CADSNAP-GUI {step_name} {facts}", flush=True)


def fail(message):
    RESULT["error"] = message
    print(f"CADSNAP-GUI FAILED {message}", flush=True)
    finish()


def main():
    from freecad_workbench import preferences

    RESULT["freecad_version"] = [int(part) for part in FreeCAD.Version()[:2]]
    preferences.Preferences(**CONFIG["prefs"]).save(preferences.freecad_group())
    Gui.activateWorkbench("CadSnapWorkbench")
    Gui.getMainWindow().statusBar().messageChanged.connect(STATUS_BAR.append)
    step("workbench", active=Gui.activeWorkbench().name())
    import Part

    doc = FreeCAD.newDocument("CadSnapGui")
    reference = doc.addObject("Part::Feature", "Reference")
    x, y, z = CONFIG.get("reference_size", [30, 20, 10])
    reference.Shape = Part.makeBox(x, y, z).cut(Part.makeCylinder(3, z, FreeCAD.Vector(x / 2, y / 2, 0)))
    if CONFIG.get("reference") == "flange":  # model_runtime/examples/flange.py, built with Part
        import math

        flange = Part.makeCylinder(32.5, 12).fuse(Part.makeCylinder(14.5, 9, FreeCAD.Vector(0, 0, 12)))
        for k in range(7):
            angle = 2 * math.pi * k / 7
            at = FreeCAD.Vector(23 * math.cos(angle), 23 * math.sin(angle), 0)
            flange = flange.cut(Part.makeCylinder(2.25, 12, at))
        reference.Shape = flange.cut(Part.makeCylinder(10.5, 21)).removeSplitter()
    doc.recompute()
    if CONFIG.get("select_reference"):
        Gui.Selection.addSelection(reference)  # its green highlight must not reach the picture
    view = Gui.ActiveDocument.ActiveView
    from freecad_workbench.capture import ISOMETRIC_Q, show_isometric, wait_for_orientation

    RESULT["isometric_reached"] = show_isometric(view)  # FreeCAD 1.x animates: wait for it
    RESULT["isometric_q"] = list(ISOMETRIC_Q)
    if CONFIG.get("start_view") == "front":  # the capture must still be isometric, the view kept
        view.viewFront()
        wait_for_orientation(view, (0.5 ** 0.5, 0.0, 0.0, 0.5 ** 0.5))  # FreeCAD's Camera::Front
        view.fitAll()
    RESULT["start_q"] = list(view.getCameraOrientation().Q)
    Gui.SendMsgToActiveView("ViewFit")
    RESULT["combo_width"] = combo_width()  # as FreeCAD opens it, before the harness widens it
    widen_task_area()
    RESULT["presses"] = []
    if CONFIG.get("scenario") == "errors":
        return errors(doc)
    if CONFIG.get("scenario") == "recapture":
        return recapture(doc, CONFIG.get("recaptures", 20))
    if CONFIG.get("scenario") == "parametric":
        return parametric(doc, reference)
    press(doc, CONFIG.get("repeats", 1), cancel_first=CONFIG.get("cancel_first", False))


def press(doc, remaining, cancel_first=False):
    """One press of Capture 3D view through to the inserted solid; ``remaining`` presses in all.
    ``cancel_first``: press Cancel job right after Generate (the runtime is still starting), check the
    panel says so and the document is untouched, then Generate again."""
    from freecad_workbench.qt import QtCore

    pressed = time.monotonic()
    Gui.runCommand("CadSnap_CaptureView")
    from freecad_workbench import session

    panel = session.panels.current
    if panel is None or session.current_picture is None:
        return fail("Capture 3D view did not open the Generate panel with a picture")
    timing = {"capture_s": time.monotonic() - pressed}
    step("captured", path=session.current_picture.path, camera=session.current_picture.camera)
    RESULT.setdefault("view_q_after_capture", list(Gui.ActiveDocument.ActiveView.getCameraOrientation().Q))
    RESULT.setdefault("picture_notes", []).append(panel.view.picture_note.text()
                                                  if not panel.view.picture_note.isHidden() else "")
    RESULT.setdefault("panel_min_width", panel.form.minimumSizeHint().width())
    RESULT.setdefault("default_width_fit", fits_default_combo(panel))
    objects_before = len(doc.Objects)
    panel.fit_dimensions.setChecked(CONFIG.get("fit_dimensions", True))
    # "Insert as" for this press: None keeps the panel's default (the preference: a feature tree).
    RESULT.setdefault("insert_as_defaults", []).append(panel.insert_as.currentText())
    choices = CONFIG.get("insert_as") or []
    choice = choices[len(RESULT["presses"])] if len(RESULT["presses"]) < len(choices) else None
    if choice is not None:
        panel.view.feature_tree = choice == "tree"
    RESULT.setdefault("size_defaults", []).append(panel.size_mm.value())
    if CONFIG.get("any_size"):
        panel.view.size_clear.click()  # the user clears the capture's size: the model's own size
    panel.generate_button.click()
    if cancel_first:
        panel.cancel_button.click()
    poll = QtCore.QTimer()
    deadline = pressed + CONFIG.get("deadline_s", 80)
    cancelling = [cancel_first]
    recapturing = [CONFIG.get("panel_recapture", False) and not RESULT["presses"]]

    def check():
        if time.monotonic() > deadline:
            poll.stop()
            return fail(f"no result in time; panel says: {panel.stage_label.text()} / {panel.message.text()}"
                        f" / {panel.runtime_label.text()}")
        if recapturing[0] and panel.controller.job_ids and not panel.state.finished:
            # The panel's own "3D view" button mid-job: the old job goes, its result can never be
            # inserted under the new picture.
            recapturing[0] = False
            old_job, old_picture = panel.controller.job_ids[0], panel.picture
            panel.view.view_button.click()
            RESULT["panel_recapture"] = {
                "new_picture": panel.picture is not old_picture, "running": panel.running,
                "candidates": len(panel.state.candidates), "list": panel.candidate_list.count(),
                "ok_inserts": panel.accept(), "stage": panel.stage_label.text(),
                "generate_enabled": panel.generate_button.isEnabled(), "old_job": old_job}
            client = session.runtime.client(panel.prefs)
            settle = time.monotonic() + 10
            while client.job(old_job)["status"] != "cancelled" and time.monotonic() < settle:
                time.sleep(0.1)
            RESULT["panel_recapture"]["old_job_status"] = client.job(old_job)["status"]
            panel.controller.error = None  # accept()'s "nothing to insert yet", as the test wanted
            step("panel_recapture", **RESULT["panel_recapture"])
            panel.generate_button.click()
            return
        if not panel.state.finished:
            return
        if cancelling[0]:
            cancelling[0] = False
            RESULT["cancelled"] = {"status": panel.state.status, "message": panel.stage_label.text(),
                                   "error_shown": panel.view.error_box.isVisible(),
                                   "objects_added": len(doc.Objects) - objects_before,
                                   "generate_enabled": panel.generate_button.isEnabled()}
            step("cancelled", **RESULT["cancelled"])
            panel.generate_button.click()
            return
        poll.stop()
        timing["generate_s"] = time.monotonic() - pressed - timing["capture_s"]
        step("finished", status=panel.state.status, candidates=len(panel.state.candidates),
             runtime=panel.runtime_label.text(), message=panel.message.text())
        RESULT["thumbnails"] = {"valid": sum(1 for c in panel.state.candidates.values() if c.valid),
                                "rendered": sum(1 for c in panel.state.candidates.values()
                                                if c.valid and c.thumbnail_png)}
        RESULT["captions"] = panel.view.captions()
        RESULT["containment"] = (panel.view.containment_label.text()
                                 if panel.view.containment_label.isVisible() else "")
        accept(panel, doc, pressed, remaining, timing)

    poll.timeout.connect(guarded(poll, check))
    poll.start(100)
    RESULT["_poll"] = poll


def accept(panel, doc, pressed, remaining, timing):
    if CONFIG.get("accept_other_first") and not RESULT["presses"]:
        return accept_other(panel, doc, pressed, remaining, timing)
    try:
        before = len(doc.Objects)
        if remaining == 1:
            screenshot("panel")  # the panel with its candidates and code, before it closes
        if CONFIG.get("pick_point"):
            # A click on the reference part, as the 3D view reports it.
            panel.at_picked_point.setChecked(True)
            Gui.Selection.clearSelection()
            Gui.Selection.addSelection(doc.Name, "Reference", "Face1", *CONFIG["pick_point"])
        inserting = time.monotonic()
        accepted = panel.accept()
    except Exception:
        RESULT["traceback"] = traceback.format_exc()
        traceback.print_exc()
        return finish()

    def inserted():
        try:
            elapsed = time.monotonic() - pressed
            timing.update(insert_s=time.monotonic() - inserting, total_s=elapsed)
            RESULT["presses"].append({key: round(value, 3) for key, value in timing.items()})
            obj = panel.inserted
            if obj is None:
                return fail(f"accept did not insert: {panel.message.text()}")
            Gui.Selection.clearSelection()
            Gui.Selection.addSelection(obj)
            step("inserted", seconds=round(elapsed, 3), name=obj.Name, type=obj.TypeId, accepted=accepted)
            if remaining > 1:
                from freecad_workbench.qt import QtCore

                QtCore.QTimer.singleShot(0, lambda: press(doc, remaining - 1))
                return
            RESULT.update(
                ok=True, objects_added=len(doc.Objects) - before, parts_added=parts_added(doc, before),
                name=obj.Name, label=obj.Label, type=obj.TypeId, valid=obj.Shape.isValid(),
                solids=len(obj.Shape.Solids), volume=obj.Shape.Volume, source=obj.CadQuerySource,
                image=obj.InputImage, image_is_file=Path(obj.InputImage).is_file(), backend=obj.Backend,
                model=obj.Model, score=obj.Score,
                camera=obj.CaptureCamera, undo_names=doc.UndoNames[:3], placement=list(obj.Placement.Base),
                tree=tree_facts(doc, obj), insert_message=panel.insert_message, edit_active=edit_active(),
                shown=shown_members(obj), saved_pictures=saved_pictures(doc),
                report_inserted=report_text().count(f"CadSnap: inserted {obj.Label}"),
                model_in_front=model_in_front())
            screenshot("final")
            if CONFIG.get("edit_code"):
                codes = CONFIG["edit_code"]
                return edit(obj, [codes] if isinstance(codes, str) else list(codes))
        except Exception:
            RESULT["traceback"] = traceback.format_exc()
            traceback.print_exc()
        finish()

    after_insert(panel, inserted)


def model_in_front():
    """Whether the left dock shows the Model tab (the tree) rather than Tasks: tabs of the Combo View in
    0.20, two tabified docks in 1.x. None where there is no such pair of tabs."""
    from freecad_workbench.qt import QtWidgets

    for bar in Gui.getMainWindow().findChildren(QtWidgets.QTabBar):
        texts = [bar.tabText(i) for i in range(bar.count())]
        if "Model" in texts and "Tasks" in texts:
            return bar.tabText(bar.currentIndex()) == "Model"
    return None


def edit_active():
    """Whether Edit CadQuery is offered for the selection (None where FreeCAD cannot say)."""
    return Gui.Command.get("CadSnap_EditCode").isActive() if hasattr(Gui, "Command") else None


def after_insert(panel, then, timeout_s=30):
    """Call ``then`` once OK has inserted (at once, or after the panel ran the code through /v1/exec
    for its geometry or feature plan) or has shown why not."""
    from freecad_workbench.qt import QtCore

    started = time.monotonic()
    poll = QtCore.QTimer()

    def check():
        # Once inserted the panel is closed and its widgets are gone: read them only before.
        waiting = time.monotonic() - started < timeout_s
        if panel.inserted is None and not panel.message.isVisible() and waiting:
            return
        poll.stop()
        then()

    poll.timeout.connect(guarded(poll, check))
    poll.start(50)
    RESULT["_insert_poll"] = poll


def shown_members(obj):
    """What the GUI shows of a Body: the TypeIds of its visible members (its Tip alone, when right)."""
    if obj.TypeId != "PartDesign::Body":
        return None
    return {"visible": [o.TypeId for o in obj.Group if o.ViewObject.Visibility],
            "tip": obj.Tip.TypeId, "body": obj.ViewObject.Visibility}


def saved_pictures(doc):
    """The pictures a saved copy of the document carries inside its .FCStd."""
    import zipfile

    path = Path(CONFIG["result"]).with_name("saved.FCStd")
    doc.saveCopy(str(path))
    # Not thumbnails/Thumbnail.png, which FreeCAD 1.x saves in every document.
    names = zipfile.ZipFile(path).namelist()
    return [n for n in names if n.endswith(".png") and not n.startswith("thumbnails/")]


def fits_default_combo(panel):
    """Put the Combo View back to the width FreeCAD opened it with and see whether the panel fits:
    no part of it beyond the task view's visible width, no button narrower than its text."""
    from freecad_workbench.qt import QtCore, QtWidgets

    window = Gui.getMainWindow()
    docks = [d for d in window.findChildren(QtWidgets.QDockWidget)
             if d.objectName() in ("Combo View", "ComboView", "Tasks")]  # "Tasks": the panel's dock in 1.x
    if not docks or not RESULT.get("combo_width"):
        return None
    window.resizeDocks(docks, [RESULT["combo_width"]], QtCore.Qt.Horizontal)
    QtWidgets.QApplication.processEvents()
    widget, area = panel.form, None
    while widget is not None and area is None:
        widget = widget.parentWidget()
        area = widget if isinstance(widget, QtWidgets.QScrollArea) else None
    facts = {"overflow_px": area.widget().width() - area.viewport().width() if area else None,
             "cut_off": [b.text() for b in panel.form.findChildren(QtWidgets.QPushButton)
                         if b.isVisible() and b.width() < b.minimumSizeHint().width()]}
    widen_task_area()
    QtWidgets.QApplication.processEvents()
    return facts


def combo_width():
    from freecad_workbench.qt import QtWidgets

    window = Gui.getMainWindow()
    docks = [d for d in window.findChildren(QtWidgets.QDockWidget)
             if d.objectName() in ("Combo View", "ComboView", "Tasks")]  # "Tasks": the panel's dock in 1.x
    return docks[0].width() if docks else None


def report_errors():
    """The Report view's red lines (FreeCAD colours an error line #ff0000 through its highlighter)."""
    from freecad_workbench.qt import QtWidgets

    QtWidgets.QApplication.processEvents()
    lines = []
    for edit in Gui.getMainWindow().findChildren(QtWidgets.QTextEdit):
        try:
            names = edit.objectName() + " " + (edit.parent().objectName() if edit.parent() else "")
        except RuntimeError:  # a wrapper of a widget Qt has deleted
            continue
        if "report" not in names.lower():
            continue
        block = edit.document().begin()
        while block.isValid():
            layout = block.layout()
            colours = {r.format.foreground().color().name() for r in layout.formats()} if layout else set()
            if "#ff0000" in colours:
                lines.append(block.text())
            block = block.next()
    return lines


def parts_added(doc, before):
    """How many CadSnap parts (a solid with source or a Body) the document gained."""
    return sum(1 for obj in doc.Objects[before:] if "CadQuerySource" in obj.PropertiesList)


def tree_facts(doc, obj):
    """A Body's features and its Parameters spreadsheet's names, as the tests check them; else None."""
    if obj.TypeId != "PartDesign::Body":
        return None
    sheet = next((o for o in doc.Objects if o.TypeId == "Spreadsheet::Sheet"
                  and o.Label == f"{obj.Label} parameters"), None)
    names = []
    while sheet is not None and sheet.getContents(f"A{len(names) + 2}"):
        names.append(sheet.getContents(f"A{len(names) + 2}").lstrip("'"))  # 1.x: "'plate_length"
    return {"features": [o.TypeId for o in obj.Group], "sheet": sheet.Label if sheet else None,
            "parameters": names}


def accept_other(panel, doc, pressed, remaining, timing):
    """Pick a candidate other than the runtime's winner: the panel re-runs its code through /v1/exec
    (the result carries only the winner's geometry), then inserts it."""
    from freecad_workbench.qt import QtCore

    winner = panel.state.winner_index()
    rows = [row for row in range(panel.candidate_list.count())
            if panel.candidate_list.item(row).data(QtCore.Qt.UserRole) != winner
            and panel.state.candidates[panel.candidate_list.item(row).data(QtCore.Qt.UserRole)].valid]
    if not rows:
        return fail("no valid non-winning candidate to pick")
    panel.candidate_list.setCurrentRow(rows[0])
    picked = panel.selected_candidate()
    accepted_at_once = panel.accept()
    started = time.monotonic()
    poll = QtCore.QTimer()

    def check():
        # Once inserted the panel is closed and its widgets are gone: read them only before.
        if panel.inserted is None and not panel.message.isVisible() and time.monotonic() - started < 30:
            return
        poll.stop()
        obj = panel.inserted
        message = "" if obj is not None else panel.message.text()
        RESULT["other_candidate"] = {
            "index": picked.index, "winner": winner, "accepted_at_once": accepted_at_once,
            "inserted": obj is not None, "message": message,
            "valid": bool(obj and obj.Shape.isValid()),
            "source_is_candidate": bool(obj and obj.CadQuerySource == picked.code),
            "type": obj.TypeId if obj else None, "tree": tree_facts(doc, obj) if obj else None}
        step("other_candidate", **RESULT["other_candidate"])
        timing.update(insert_s=time.monotonic() - started, total_s=time.monotonic() - pressed)
        RESULT["presses"].append({key: round(value, 3) for key, value in timing.items()})
        if remaining > 1:
            QtCore.QTimer.singleShot(0, lambda: press(doc, remaining - 1))
        else:
            finish()

    poll.timeout.connect(guarded(poll, check))
    poll.start(100)
    RESULT["_poll"] = poll


def recapture(doc, times):
    """Capture 3D view again while the job is running, ``times`` times in a row: each capture must close
    the old panel and cancel its job on the runtime. The last job then runs to the end and is inserted:
    at the size of the captured part (the capture's default overall size), beside it."""
    from freecad_workbench import session
    from freecad_workbench.qt import QtCore

    RESULT["recaptures"] = {"job_ids": [], "panels_alive": []}
    facts = RESULT["recaptures"]
    reference = doc.getObject("Reference")
    panels = []
    poll = QtCore.QTimer()
    started = time.monotonic()
    deadline = started + CONFIG.get("deadline_s", 80) + times * 3

    def capture_and_generate():
        Gui.runCommand("CadSnap_CaptureView")
        panel = session.panels.current
        if panels and panel is panels[-1]:
            return fail("Capture 3D view did not replace the panel")
        panels.append(panel)
        picture = session.current_picture
        facts.setdefault("size_default", panel.size_mm.value())
        facts.setdefault("selection_after_capture", len(Gui.Selection.getSelection()))
        facts.setdefault("capture_has_highlight", _has_green(picture.path))
        facts.setdefault("note", panel.view.picture_note.text())
        panel.fit_dimensions.setChecked(False)
        panel.generate_button.click()

    def check():
        if time.monotonic() > deadline:
            poll.stop()
            panel = panels[-1]
            return fail(f"recapture stuck after {len(panels)} panels: {panel.stage_label.text()} / "
                        f"{panel.message.text()} / {panel.runtime_label.text()}")
        panel = panels[-1]
        if len(panels) <= times:
            if panel.controller.job_ids:  # the job is on the runtime: capture again, mid-job
                facts["job_ids"].append(panel.controller.job_ids[0])
                facts["states"] = facts.get("states", []) + [panel.state.status]
                capture_and_generate()
            return
        if not panel.state.finished:
            return
        poll.stop()
        facts["job_ids"].append(panel.controller.job_ids[0])
        facts["panels_alive"] = [not p.closed for p in panels]
        facts["final_status"] = panel.state.status
        facts["final_message"] = panel.message.text() if panel.view.error_box.isVisible() else ""
        facts["stage"] = panel.stage_label.text()
        before = len(doc.Objects)
        screenshot("panel")
        panel.at_picked_point.setChecked(False)
        panel.accept()
        after_insert(panel, lambda: inserted(panel, before))

    def inserted(panel, before):
        obj = panel.inserted
        if obj is None:
            return fail(f"accept did not insert: {panel.message.text()}")
        box, ref = obj.Shape.BoundBox, reference.Shape.BoundBox
        facts.update(objects_added=len(doc.Objects) - before, parts_added=parts_added(doc, before),
                     type=obj.TypeId, tree=tree_facts(doc, obj),
                     largest=max(box.XLength, box.YLength, box.ZLength),
                     inserted_box=[box.XMin, box.YMin, box.ZMin, box.XMax, box.YMax, box.ZMax],
                     reference_box=[ref.XMin, ref.YMin, ref.ZMin, ref.XMax, ref.YMax, ref.ZMax],
                     intersects=box.intersect(ref), source=obj.CadQuerySource,
                     panel_closed=panel.closed, slot_empty=session.panels.current is None)
        screenshot("final")
        # Ask the runtime itself what became of each earlier job (the cancels are sent off the GUI thread).
        client = session.runtime.client(session.panels.current.prefs if session.panels.current else
                                        panel.prefs)
        earlier = facts["job_ids"][:-1]
        settle = time.monotonic() + 10
        while True:
            cancelled = [job_id for job_id in earlier if client.job(job_id)["status"] == "cancelled"]
            if len(cancelled) == len(earlier) or time.monotonic() > settle:
                break
            time.sleep(0.2)
        RESULT["cancelled_on_runtime"] = cancelled
        RESULT["ok"] = True
        finish()

    # Control: the same view saved with the selection left in place does show the highlight.
    control = Path(CONFIG["result"]).with_name("control.png")
    Gui.ActiveDocument.ActiveView.saveImage(str(control), 256, 256, "White")
    facts["control_has_highlight"] = _has_green(str(control))
    capture_and_generate()
    poll.timeout.connect(guarded(poll, check))
    poll.start(50)
    RESULT["_poll"] = poll


def _has_green(path):
    """Whether a capture holds FreeCAD's selection green (pure-ish green pixels)."""
    from freecad_workbench.qt import QtGui

    image = QtGui.QImage(path)
    for y in range(0, image.height(), 2):
        for x in range(0, image.width(), 2):
            colour = QtGui.QColor(image.pixel(x, y))
            if colour.green() > 140 and colour.green() - max(colour.red(), colour.blue()) > 80:
                return True
    return False


def edit(obj, codes):
    """Edit CadQuery on the inserted part, once per code: new source -> runtime /v1/exec -> the solid's
    shape updated, or the Body rebuilt from the new feature plan (or a solid, saying why); then undo,
    which must bring the part back as it was. RESULT["edits"] has one entry per code."""
    from freecad_workbench.editor import EditDialog
    from freecad_workbench.qt import QtCore

    doc, name = obj.Document, obj.Name
    RESULT["edits"] = []
    dialog = EditDialog(obj, Gui.getMainWindow())
    dialog.show()
    QtCore.QCoreApplication.processEvents()
    RESULT["editor_line_numbers"] = dialog.editor.visible_line_numbers()[:3]
    poll = QtCore.QTimer()
    started = [0.0]

    shown = [0]

    def run(code):
        dialog.editor.setPlainText(code)
        started[0], shown[0] = time.monotonic(), len(STATUS_BAR)
        dialog.run_button.click()

    def check():
        if not dialog.run_button.isEnabled() and time.monotonic() - started[0] < 60:
            return  # still running
        try:
            new = dialog.obj
            facts = {"updated": dialog.updated, "status": dialog.status.text(), "type": new.TypeId,
                     "name": new.Name, "label": new.Label, "placement": list(new.Placement.Base),
                     "volume": new.Shape.Volume, "source": new.CadQuerySource, "valid": new.Shape.isValid(),
                     "tree": tree_facts(doc, new), "message": dialog.message,
                     "report_count": report_text().count(dialog.message) if dialog.message else 0,
                     "status_bar": STATUS_BAR[shown[0]:], "seconds": round(time.monotonic() - started[0], 3)}
            doc.undo()
            facts["report_errors_after_undo"] = report_errors()
            restored = doc.getObject(name)
            facts.update(volume_after_undo=restored.Shape.Volume, type_after_undo=restored.TypeId,
                         source_after_undo=restored.CadQuerySource, tree_after_undo=tree_facts(doc, restored))
            RESULT["edits"].append(facts)
            RESULT["edit"] = RESULT["edits"][0]
            step("edited", **{k: v for k, v in facts.items() if k != "source"})
            if len(RESULT["edits"]) < len(codes):
                # The same dialog, as a user would go on after Undo: it finds the restored part by name.
                dialog.updated, dialog.message = False, ""
                return run(codes[len(RESULT["edits"])])
            poll.stop()
            dialog.close()
            if CONFIG.get("fallback_insert"):
                return fallback_insert(doc, CONFIG["fallback_insert"])
        except Exception:
            poll.stop()
            RESULT["traceback"] = traceback.format_exc()
            traceback.print_exc()
        finish()

    run(codes[0])
    poll.timeout.connect(guarded(poll, check))
    poll.start(100)
    RESULT["_poll"] = poll


def fallback_insert(doc, code):
    """OK on a candidate whose program has a step PartDesign has no feature for, a feature tree asked for:
    the solid with source goes in, and the user is told once which step (the panel itself closes)."""
    from freecad_workbench import commands, jobs, session

    panel = commands.open_generate_panel(session.current_picture)
    client = session.runtime.client(panel.prefs)
    run = client.exec_code(code)
    candidate = jobs.Candidate(index=0, code=code, valid=True, score=0.5, brep=run["brep"],
                               feature_plan=run.get("feature_plan"))
    panel.view.feature_tree = True
    before, shown = len(doc.Objects), len(STATUS_BAR)
    inserted = panel.insert(candidate)
    obj = panel.inserted
    from freecad_workbench.qt import QtWidgets

    QtWidgets.QApplication.processEvents()  # what FreeCAD and CadSnap queued for the status bar
    RESULT["fallback_insert"] = {
        "inserted": inserted, "type": obj.TypeId if obj else None, "parts_added": parts_added(doc, before),
        "plan_status": (run.get("feature_plan") or {}).get("status"), "message": panel.insert_message,
        "report_count": report_text().count(panel.insert_message) if panel.insert_message else 0,
        "status_bar": STATUS_BAR[shown:]}
    step("fallback_insert", **RESULT["fallback_insert"])
    panel.reject()
    file_insert(doc)


def file_insert(doc):
    """Open image…: a picture with no place of its own. The part lands beside every part shown, never
    inside one."""
    from freecad_workbench import capture, commands, jobs, session

    picture = capture.open_image_file(session.current_picture.path)
    panel = commands.open_generate_panel(picture)
    run = session.runtime.client(panel.prefs).exec_code(CONFIG["fallback_insert"])
    others = [o for o in doc.Objects if "CadQuerySource" in o.PropertiesList or o.Name == "Reference"]
    candidate = jobs.Candidate(index=0, code=CONFIG["fallback_insert"], valid=True, score=0.5,
                               brep=run["brep"], feature_plan=run.get("feature_plan"))
    panel.insert(candidate)
    obj = panel.inserted
    box = obj.Shape.BoundBox
    RESULT["file_insert"] = {"inserted": obj is not None, "overlaps": [
        o.Label for o in others if o.Shape.BoundBox.intersect(box)], "others": len(others)}
    step("file_insert", **RESULT["file_insert"])
    panel.reject()
    # Nothing selected, earlier results in view: the capture is of the reference part alone.
    from freecad_workbench import placement

    Gui.Selection.clearSelection()
    shown_before = [o.Name for o in doc.Objects if o.ViewObject.Visibility]
    later = capture.capture_view(128)
    RESULT["earlier_left_out"] = {
        "note": later.note, "size": placement.target_size(later.visible_box),
        "visibility_restored": shown_before == [o.Name for o in doc.Objects if o.ViewObject.Visibility]}
    step("earlier_left_out", **RESULT["earlier_left_out"])
    finish()


def parametric(doc, reference):
    """Make parametric on the selected reference part (a Part box with a hole): the runtime recognises
    it in its sandbox; a Body with a Parameters sheet lands in one undo step, the original hidden."""
    from freecad_workbench import session

    Gui.Selection.clearSelection()
    Gui.Selection.addSelection(reference)
    before = {o.Name for o in doc.Objects}
    Gui.runCommand("CadSnap_MakeParametric")
    dialog = session.parametric_dialog
    deadline = time.monotonic() + CONFIG.get("deadline_s", 120)
    poll = QtCore.QTimer()

    def check():
        if dialog.close_button.text() != "Close" and time.monotonic() < deadline:
            return
        poll.stop()
        added = [doc.getObject(n) for n in {o.Name for o in doc.Objects} - before]
        bodies = [o for o in added if o.TypeId == "PartDesign::Body"]
        body = bodies[0] if bodies else None
        facts = {"status": dialog.status.text(), "bodies": len(bodies),
                 "reference_hidden": not reference.ViewObject.Visibility}
        if body is not None:
            common = body.Shape.common(reference.Shape).Volume
            facts.update(label=body.Label, tree=tree_facts(doc, body), undo=doc.UndoNames[:1],
                         body_visible=body.ViewObject.Visibility,
                         iou=common / (body.Shape.Volume + reference.Shape.Volume - common))
            doc.undo()
            facts["after_undo"] = sorted({o.Name for o in doc.Objects} - before)
        RESULT["parametric"] = facts
        RESULT["ok"] = True
        step("parametric", **facts)
        dialog.close()
        finish()

    poll.timeout.connect(guarded(poll, check))
    poll.start(200)
    RESULT["_poll"] = poll


def report_text():
    """What FreeCAD's Report view shows."""
    from freecad_workbench.qt import QtWidgets

    QtWidgets.QApplication.processEvents()  # the Report view takes new lines through the event loop
    window = Gui.getMainWindow()
    texts = window.findChildren(QtWidgets.QPlainTextEdit) + window.findChildren(QtWidgets.QTextEdit)
    views = [w for w in texts
             if "report" in (w.objectName() + " " + (w.parent().objectName() if w.parent() else "")).lower()]
    return "\n".join(view.toPlainText() for view in views)


def errors(doc):
    """What a person sees when things go wrong (CONFIG["error_cases"]: name, prefs, picture, press).
    Each must end in one sentence with its fix, shown once, and an untouched document."""
    from freecad_workbench import capture, commands, preferences, session
    from freecad_workbench.qt import QtCore

    before = len(doc.Objects)
    good = Path(capture.capture_view(128).path).read_bytes()
    truncated = Path(CONFIG["result"]).with_name("truncated.png")
    truncated.write_bytes(good[:300])
    try:
        capture.open_image_file(str(truncated))
        RESULT["corrupt_file"] = "no error"
    except capture.CaptureError as error:
        RESULT["corrupt_file"] = str(error)
    damaged = bytearray(good)
    damaged[len(good) // 2:len(good) // 2 + 64] = bytes(64)  # header whole, body broken
    damaged_path = Path(CONFIG["result"]).with_name("damaged.png")
    damaged_path.write_bytes(bytes(damaged))

    RESULT["sources"] = picture_sources(truncated.parent)
    RESULT["preferences_page"] = preference_page_round_trip()
    cases = CONFIG["error_cases"]
    RESULT["errors"] = {}

    def run_case(index):
        if index == len(cases):
            RESULT["objects_added"] = len(doc.Objects) - before
            RESULT["undo_count"] = doc.UndoCount
            RESULT["ok"] = True
            return finish()
        case = cases[index]
        preferences.Preferences(**case["prefs"]).save(preferences.freecad_group())
        session.runtime.stop()
        if case.get("picture") == "damaged":
            picture = session.Picture(png=damaged_path.read_bytes(), path=str(damaged_path), source="file")
        else:
            picture = capture.capture_view(128)
        panel = commands.open_generate_panel(picture)
        started = time.monotonic()
        pressed = [False]
        poll = QtCore.QTimer()

        def check():
            shown = panel.view.error_box.isVisible()
            if shown and case.get("press") and not pressed[0]:
                pressed[0] = True  # the error came from the live status; Generate must not repeat it
                panel.generate_button.click()
                return
            if (not shown or panel.running) and time.monotonic() - started < 40:
                return
            poll.stop()
            buttons = [button.text() for button in panel.view.action_buttons.values() if button.isVisible()]
            fit = fits_default_combo(panel)
            texts = [label.text() for label in panel.form.findChildren(type(panel.message))
                     if label.isVisible()]
            RESULT["errors"][case["name"]] = {
                "message": panel.message.text(), "runtime": panel.runtime_label.text(), "buttons": buttons,
                "generate_enabled": panel.generate_button.isEnabled(), "visible_texts": texts, "fit": fit,
                "seconds": round(time.monotonic() - started, 3)}
            step(case["name"], **RESULT["errors"][case["name"]])
            if CONFIG.get("screenshot_dir"):
                shoot_panel(Path(CONFIG["screenshot_dir"]) / f"error-{case['name']}.png")
            if index == len(cases) - 1 and "Open preferences…" in buttons:
                open_preferences_from(panel)
            if case["name"] == "runtime_not_installed":
                setup_from(panel)
            panel.reject()
            QtCore.QTimer.singleShot(0, lambda: run_case(index + 1))

        poll.timeout.connect(guarded(poll, check))
        poll.start(100)
        RESULT["_poll"] = poll

    run_case(0)


def open_preferences_from(panel):
    """Press the error's "Open preferences…": FreeCAD's modal Preferences dialog opens on CadSnap's
    page (with its icon); a timer closes it again."""
    from freecad_workbench import messages
    from freecad_workbench.qt import QtCore, QtWidgets

    seen = {}

    from freecad_workbench import preferences

    fixed = dict(CONFIG["preferences_fix"]) if CONFIG.get("preferences_fix") else None

    def close_modal():
        dialog = QtWidgets.QApplication.activeModalWidget()
        seen["title"] = dialog.windowTitle() if dialog is not None else None
        if fixed is not None:  # the user's fix, saved while the dialog is open
            preferences.Preferences(**fixed).save(preferences.freecad_group())
        if dialog is not None:
            dialog.reject()

    QtCore.QTimer.singleShot(1500, close_modal)
    panel.view.action_buttons[messages.ACTION_PREFERENCES].click()  # returns when the dialog closes
    RESULT["preferences_dialog"] = seen.get("title")
    if fixed is not None:
        RESULT["preferences_fix"] = {"panel_url": panel.prefs.runtime_url,
                                     "controller_url": panel.controller.prefs.runtime_url,
                                     "runtime_line": panel.runtime_label.text()}


def setup_from(panel):
    """Press the error's "Set up runtime…": the set-up dialog opens and explains itself."""
    from freecad_workbench import messages, session
    from freecad_workbench.qt import QtWidgets

    panel.view.action_buttons[messages.ACTION_SETUP].click()
    dialog = session.setup_dialog
    labels = [label.text() for label in dialog.findChildren(QtWidgets.QLabel) if label.wordWrap()]
    RESULT["setup_dialog"] = {"shown": dialog.isVisible(), "explanation": labels[0] if labels else ""}
    dialog.reject()


def shoot_panel(path):
    """The task area (combo view) as the user sees it, with the 3D view beside it cut off."""
    from freecad_workbench.qt import QtWidgets

    window = Gui.getMainWindow()
    docks = [dock for dock in window.findChildren(QtWidgets.QDockWidget)
             if dock.objectName() in ("Combo View", "ComboView", "Tasks")]  # "Tasks": 1.x
    widget = docks[0] if docks else window
    QtWidgets.QApplication.processEvents()
    path.parent.mkdir(parents=True, exist_ok=True)
    widget.grab().save(str(path))
    step("screenshot", path=str(path))


def picture_sources(folder):
    """Clipboard (empty, then an image), screen region, and a non-PNG file all give a PNG picture."""
    from freecad_workbench import capture
    from freecad_workbench.jobs import image_size
    from freecad_workbench.qt import QtCore, QtGui, QtWidgets

    facts = {}
    clipboard = QtWidgets.QApplication.clipboard()
    clipboard.clear()
    try:
        capture.paste_clipboard()
    except capture.CaptureError as error:
        facts["empty_clipboard"] = str(error)
    image = QtGui.QImage(120, 80, QtGui.QImage.Format_RGB32)
    image.fill(QtGui.QColor("white"))
    clipboard.setImage(image)
    facts["clipboard_size"] = image_size(capture.paste_clipboard().png)
    selector = capture.RegionSelector(lambda picture: None)
    region = selector.select(QtCore.QRect(10, 20, 200, 150))
    facts["region_size"] = image_size(region.png)
    facts["region_file"] = Path(region.path).is_file()
    selector.close()
    bmp = folder / "part.bmp"
    image.save(str(bmp), "BMP")
    opened = capture.open_image_file(str(bmp))
    facts["bmp_size"], facts["bmp_path"] = image_size(opened.png), opened.path
    return facts


def preference_page_round_trip():
    """Edit > Preferences > CadSnap: save what the widgets say, load it back."""
    from freecad_workbench import preferences
    from freecad_workbench.preferences_page import PreferencePage

    saved = preferences.current()
    page = PreferencePage()
    page.loadSettings()
    page.candidates.setValue(9)
    page.model_path.setText("/models/part.gguf")
    page.timeouts["job_timeout_s"].setValue(123.0)
    page.insert_as.setCurrentIndex(1)  # "Solid with source"
    page.saveSettings()
    stored = preferences.current()
    fresh = PreferencePage()
    fresh.loadSettings()
    facts = {"candidates": stored.candidates, "model_path": stored.model_path,
             "job_timeout_s": stored.job_timeout_s, "reloaded_candidates": fresh.candidates.value(),
             "feature_tree": stored.feature_tree, "reloaded_insert_as": fresh.insert_as.currentText()}
    saved.save(preferences.freecad_group())
    return facts


def widen_task_area():
    from freecad_workbench.qt import QtCore, QtWidgets

    window = Gui.getMainWindow()
    for dock in window.findChildren(QtWidgets.QDockWidget):
        if dock.objectName() in ("Combo View", "ComboView", "Tasks"):  # "Tasks": its own dock in 1.x
            window.resizeDocks([dock], [430], QtCore.Qt.Horizontal)


def screenshot(kind):
    """The main window with the 3D view painted in: grabbing a window leaves the GL view blank under
    Xvfb, while the view's own saveImage renders it properly."""
    from freecad_workbench.qt import QtCore, QtGui, QtWidgets

    path = CONFIG.get(f"screenshot_{kind}")
    if not path:
        return
    window = Gui.getMainWindow()
    shot = window.grab()
    area = window.findChild(QtWidgets.QMdiArea)
    sub = area.activeSubWindow() if area else None
    if sub is not None and Gui.ActiveDocument is not None:
        view = sub.widget()
        canvas = max(view.findChildren(QtWidgets.QWidget), key=lambda w: w.width() * w.height(), default=view)
        origin = canvas.mapTo(window, QtCore.QPoint(0, 0))
        rendered = path + ".view.png"
        Gui.ActiveDocument.ActiveView.saveImage(rendered, canvas.width(), canvas.height(), "Current")
        painter = QtGui.QPainter(shot)
        painter.drawImage(origin, QtGui.QImage(rendered))
        painter.end()
        os.remove(rendered)
    shot.save(path)
    step("screenshot", path=path)


def finish():
    RESULT.pop("_poll", None)
    RESULT.pop("_insert_poll", None)
    RESULT["report_errors"] = report_errors()
    RESULT["total_s"] = round(time.monotonic() - T0, 3)
    with open(CONFIG["result"], "w", encoding="utf-8") as handle:
        json.dump(RESULT, handle, indent=2, default=str)
    from freecad_workbench.qt import QtWidgets

    for name in list(FreeCAD.listDocuments()):
        FreeCAD.closeDocument(name)
    # A real quit: aboutToQuit stops the runtime the workbench started.
    QtWidgets.QApplication.instance().quit()


def guarded(poll, check):
    """A timer callback that cannot hang FreeCAD: any exception stops the timer and ends the run."""

    def run():
        try:
            check()
        except Exception:
            poll.stop()
            RESULT["traceback"] = traceback.format_exc()
            traceback.print_exc()
            finish()

    return run


def guarded_main():
    try:
        main()
    except Exception:
        RESULT["traceback"] = traceback.format_exc()
        traceback.print_exc()
        finish()


from freecad_workbench.qt import QtCore  # noqa: E402

QtCore.QTimer.singleShot(300, guarded_main)
