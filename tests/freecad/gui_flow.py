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

    preferences.Preferences(**CONFIG["prefs"]).save(preferences.freecad_group())
    Gui.activateWorkbench("CadSnapWorkbench")
    step("workbench", active=Gui.activeWorkbench().name())
    import Part

    doc = FreeCAD.newDocument("CadSnapGui")
    reference = doc.addObject("Part::Feature", "Reference")
    reference.Shape = Part.makeBox(30, 20, 10).cut(Part.makeCylinder(3, 10, FreeCAD.Vector(15, 10, 0)))
    doc.recompute()
    Gui.ActiveDocument.ActiveView.viewIsometric()
    Gui.SendMsgToActiveView("ViewFit")
    widen_task_area()
    RESULT["presses"] = []
    if CONFIG.get("scenario") == "errors":
        return errors(doc)
    press(doc, CONFIG.get("repeats", 1), cancel_first=CONFIG.get("cancel_first", False))


def press(doc, remaining, cancel_first=False):
    """One press of Capture 3D view through to the inserted solid; ``remaining`` presses in all.
    ``cancel_first``: press Cancel job right after Generate (the runtime is still starting), check the
    panel says so and the document is untouched, then Generate again."""
    from freecad_workbench.qt import QtCore

    pressed = time.monotonic()
    Gui.runCommand("CadSnap_CaptureView")
    from freecad_workbench import session

    panel = session.active_panel
    if panel is None or session.current_picture is None:
        return fail("Capture 3D view did not open the Generate panel with a picture")
    timing = {"capture_s": time.monotonic() - pressed}
    step("captured", path=session.current_picture.path, camera=session.current_picture.camera)
    objects_before = len(doc.Objects)
    panel.fit_dimensions.setChecked(CONFIG.get("fit_dimensions", True))
    panel.generate_button.click()
    if cancel_first:
        panel.cancel_button.click()
    poll = QtCore.QTimer()
    deadline = pressed + CONFIG.get("deadline_s", 80)
    cancelling = [cancel_first]

    def check():
        if time.monotonic() > deadline:
            poll.stop()
            return fail(f"no result in time; panel says: {panel.stage_label.text()} / {panel.message.text()}"
                        f" / {panel.runtime_label.text()}")
        if not panel.state.finished:
            return
        if cancelling[0]:
            cancelling[0] = False
            RESULT["cancelled"] = {"status": panel.state.status, "message": panel.message.text(),
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
        elapsed = time.monotonic() - pressed
        timing.update(insert_s=time.monotonic() - inserting, total_s=elapsed)
        RESULT["presses"].append({key: round(value, 3) for key, value in timing.items()})
        obj = panel.inserted
        if not accepted or obj is None:
            return fail(f"accept did not insert: {panel.message.text()}")
        Gui.Selection.clearSelection()
        Gui.Selection.addSelection(obj)
        step("inserted", seconds=round(elapsed, 3), name=obj.Name)
        if remaining > 1:
            from freecad_workbench.qt import QtCore

            QtCore.QTimer.singleShot(0, lambda: press(doc, remaining - 1))
            return
        RESULT.update(
            ok=True, objects_added=len(doc.Objects) - before,
            name=obj.Name, label=obj.Label, type=obj.TypeId, valid=obj.Shape.isValid(),
            solids=len(obj.Shape.Solids), volume=obj.Shape.Volume, source=obj.CadQuerySource,
            image=obj.InputImage, backend=obj.Backend, model=obj.Model, score=obj.Score,
            camera=obj.CaptureCamera, undo_names=doc.UndoNames[:3], placement=list(obj.Placement.Base),
            edit_active=Gui.Command.get("CadSnap_EditCode").isActive() if hasattr(Gui, "Command") else None)
        screenshot("final")
        if CONFIG.get("edit_code"):
            return edit(obj, CONFIG["edit_code"])
    except Exception:
        RESULT["traceback"] = traceback.format_exc()
        traceback.print_exc()
    finish()


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
            "source_is_candidate": bool(obj and obj.CadQuerySource == picked.code)}
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


def edit(obj, code):
    """Edit CadQuery on the inserted solid: new source -> runtime /v1/exec -> shape updated; then undo."""
    from freecad_workbench.editor import EditDialog
    from freecad_workbench.qt import QtCore

    dialog = EditDialog(obj, Gui.getMainWindow())
    dialog.show()
    dialog.editor.setPlainText(code)
    started = time.monotonic()
    dialog.run_button.click()
    poll = QtCore.QTimer()

    def check():
        if not dialog.run_button.isEnabled() and time.monotonic() - started < 60:
            return  # still running
        poll.stop()
        try:
            RESULT["edit"] = {"updated": dialog.updated, "status": dialog.status.text(),
                              "volume": obj.Shape.Volume, "source": obj.CadQuerySource,
                              "valid": obj.Shape.isValid(), "seconds": round(time.monotonic() - started, 3)}
            obj.Document.undo()
            RESULT["edit"]["volume_after_undo"] = obj.Shape.Volume
            dialog.close()
        except Exception:
            RESULT["traceback"] = traceback.format_exc()
            traceback.print_exc()
        finish()

    poll.timeout.connect(guarded(poll, check))
    poll.start(100)
    RESULT["_poll"] = poll


def errors(doc):
    """What a person sees when things go wrong: corrupt image, runtime down, runtime failing to start.
    Each must end in a message in the panel and an untouched document."""
    from freecad_workbench import capture, preferences, session
    from freecad_workbench.qt import QtCore
    from freecad_workbench.task_panel import GeneratePanel

    before = len(doc.Objects)
    corrupt = Path(CONFIG["result"]).with_name("corrupt.png")
    corrupt.write_bytes(Path(capture.capture_view(128).path).read_bytes()[:300])
    try:
        capture.open_image_file(str(corrupt))
        RESULT["corrupt_file"] = "no error"
    except capture.CaptureError as error:
        RESULT["corrupt_file"] = str(error)

    RESULT["sources"] = picture_sources(corrupt.parent)
    RESULT["preferences_page"] = preference_page_round_trip()

    cases = [("corrupt_image", CONFIG["prefs"], session.Picture(png=corrupt.read_bytes(), path=str(corrupt),
                                                                  source="file")),
             ("runtime_down", CONFIG["prefs"], None),
             ("runtime_dies", CONFIG["dying_prefs"], None)]
    RESULT["errors"] = {}

    def run_case(index):
        if index == len(cases):
            RESULT["objects_added"] = len(doc.Objects) - before
            RESULT["undo_count"] = doc.UndoCount
            RESULT["ok"] = True
            return finish()
        name, prefs, picture = cases[index]
        preferences.Preferences(**prefs).save(preferences.freecad_group())
        session.runtime.stop()
        panel = GeneratePanel(picture or capture.capture_view(128))
        Gui.Control.showDialog(panel)
        panel.generate_button.click()
        started = time.monotonic()
        poll = QtCore.QTimer()

        def check():
            done = panel.message.isVisible() and panel.generate_button.isEnabled()
            if not done and time.monotonic() - started < 40:
                return
            poll.stop()
            RESULT["errors"][name] = {"message": panel.message.text(), "runtime": panel.runtime_label.text(),
                                      "seconds": round(time.monotonic() - started, 3)}
            step(name, **RESULT["errors"][name])
            panel.reject()
            QtCore.QTimer.singleShot(0, lambda: run_case(index + 1))

        poll.timeout.connect(guarded(poll, check))
        poll.start(100)
        RESULT["_poll"] = poll

    run_case(0)


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
    page.saveSettings()
    stored = preferences.current()
    fresh = PreferencePage()
    fresh.loadSettings()
    facts = {"candidates": stored.candidates, "model_path": stored.model_path,
             "job_timeout_s": stored.job_timeout_s, "reloaded_candidates": fresh.candidates.value()}
    saved.save(preferences.freecad_group())
    return facts


def widen_task_area():
    from freecad_workbench.qt import QtCore, QtWidgets

    window = Gui.getMainWindow()
    for dock in window.findChildren(QtWidgets.QDockWidget):
        if dock.objectName() in ("Combo View", "ComboView"):
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
