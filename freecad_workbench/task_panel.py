"""The Generate task panel in FreeCAD: wires ``panel_view.PanelView`` (widgets) to
``lifecycle.PanelController`` (job, runtime status, errors) and inserts the accepted solid.

A timer on the GUI thread pumps the controller and redraws; it stops when the panel closes, and a
closed controller drops every late message from its workers.
"""

from __future__ import annotations

import FreeCAD
import FreeCADGui as Gui

from model_runtime import protocol

from . import capture, insert, jobs, messages, placement, report, session
from .lifecycle import PanelController
from .panel_view import PanelView, standard_buttons
from .preferences import current as current_preferences
from .qt import QtCore

TICK_MS = 50


class GeneratePanel:
    """FreeCAD task panel (``form`` + accept/reject). Show it with ``commands.open_generate_panel``."""

    def __init__(self, picture: session.Picture | None = None) -> None:
        self.prefs = current_preferences()
        self.picture = picture or session.current_picture
        self.controller = PanelController(self.prefs, session.runtime)
        self.view = PanelView(self._run_action)
        self.form = self.view.form
        self.inserted = None  # the object accept() made, for callers and tests
        self.insert_message = ""  # why a feature tree fell back to the solid, as the user was told
        self._closed = False
        self._selector = None
        view = self.view
        view.candidates.setValue(self.prefs.candidates)
        view.feature_tree = self.prefs.feature_tree
        view.view_button.clicked.connect(lambda _checked=False: self.use_view())
        view.region_button.clicked.connect(lambda _checked=False: self.use_region())
        view.open_button.clicked.connect(lambda _checked=False: self.use_file())
        view.paste_button.clicked.connect(lambda _checked=False: self.use_clipboard())
        view.generate_button.clicked.connect(lambda _checked=False: self.generate())
        view.cancel_button.clicked.connect(lambda _checked=False: self.cancel_job())
        view.candidate_list.currentItemChanged.connect(self._show_candidate_code)
        # If Qt deletes the form behind our back (FreeCAD closing the dialog), the panel ends with it.
        controller = self.controller
        self.form.destroyed.connect(lambda *_: controller.close())
        self._timer = QtCore.QTimer()
        self._timer.setInterval(TICK_MS)
        self._timer.timeout.connect(self._tick)
        self._timer.start()
        self._show_picture()
        controller.start()
        self._draw()

    # --- convenient names for widgets (tests, scripts) -------------------------------------------

    @property
    def generate_button(self):
        return self.view.generate_button

    @property
    def cancel_button(self):
        return self.view.cancel_button

    @property
    def message(self):
        return self.view.message

    @property
    def stage_label(self):
        return self.view.stage_label

    @property
    def runtime_label(self):
        return self.view.runtime_label

    @property
    def candidate_list(self):
        return self.view.candidate_list

    @property
    def fit_dimensions(self):
        return self.view.fit_dimensions

    @property
    def at_picked_point(self):
        return self.view.at_picked_point

    @property
    def size_mm(self):
        return self.view.size_mm

    @property
    def insert_as(self):
        return self.view.insert_as

    @property
    def state(self) -> jobs.JobState:
        return self.controller.state

    @property
    def closed(self) -> bool:
        return self._closed

    # --- picture sources -------------------------------------------------------------------------

    def use_view(self) -> None:
        self._take(lambda: capture.capture_view(self.prefs.capture_size))

    def use_region(self) -> None:
        self._selector = capture.RegionSelector(self._region_done)
        self._selector.showFullScreen()

    def _region_done(self, picture) -> None:
        if picture is not None and not self._closed:
            self.picture = picture
            self._show_picture()

    def use_file(self) -> None:
        self._take(lambda: capture.ask_image_file(self.form))

    def use_clipboard(self) -> None:
        self._take(capture.paste_clipboard)

    def _take(self, action) -> None:
        try:
            picture = action()
        except capture.CaptureError as error:
            self.controller.show_error(messages.UserError(str(error)))  # capture's sentences are plain
            self._draw()
            return
        if picture is not None:
            self.picture = picture
            self._show_picture()

    def _show_picture(self) -> None:
        png = self.picture.png if self.picture else None
        decodes = self.view.show_picture(png, self.picture.note if self.picture else "")
        self.controller.set_picture(png, decodes)  # drops the job of the picture before
        self.view.new_job()
        size = placement.target_size(self.picture.visible_box) if self.picture else None
        self.view.size_mm.setValue(size or 0)
        self._draw()

    # --- job -------------------------------------------------------------------------------------

    def generate(self) -> None:
        self.use_current_preferences()  # a fix made in Preferences since the panel opened
        try:
            payload = jobs.GenerateRequest(
                image=self.picture.png if self.picture else b"", instruction=self.view.instruction.text(),
                n=self.view.candidates.value(), target_size_mm=self.view.size_mm.value() or None,
                backend=self.prefs.backend, refine=self.view.fit_dimensions.isChecked(),
                search=self.view.fit_dimensions.isChecked(), budget_s=self.prefs.search_budget_s,
                # a capture of the 3D view is shot from FreeCAD's isometric camera: nothing to guess
                view=protocol.VIEW_ISOMETRIC if self.picture and self.picture.source == "view" else None,
            ).to_json()
        except jobs.RequestError as error:
            self.controller.show_error(messages.bad_picture() if error.code == "bad_image"
                                       else messages.explain_code(error.code, error.message))
            self._draw()
            return
        self.view.new_job()
        self.controller.generate(payload)
        self._draw()

    def cancel_job(self) -> None:
        self.controller.cancel()
        self._draw()

    @property
    def running(self) -> bool:
        return self.controller.running

    def _run_action(self, action: str) -> None:
        if action == messages.ACTION_SETUP:
            Gui.runCommand("CadSnap_SetupRuntime")
        elif action == messages.ACTION_PREFERENCES:
            Gui.showPreferences("CadSnap")  # modal: returns when the dialog closes
            if not self._closed:
                self.use_current_preferences()
                self._draw()
        elif action == messages.ACTION_RETRY:
            self.generate()

    def use_current_preferences(self) -> None:
        """Take the saved preferences: the runtime, the next job and the next insertion use them."""
        self.prefs = current_preferences()
        self.controller.use_prefs(self.prefs)

    # --- the GUI-thread tick ---------------------------------------------------------------------

    def _tick(self) -> None:
        if self._closed:
            self._timer.stop()
            return
        changed = self.controller.pump()
        if self.controller.crash_report:
            FreeCAD.Console.PrintError(f"CadSnap: {self.controller.crash_report}\n")
            self.controller.crash_report = ""
        built, self.controller.built = self.controller.built, None
        if built is not None:
            if self.insert(built):
                self.close()
                return
            changed = True
        if changed:
            self._draw()

    def _draw(self) -> None:
        if not self._closed:
            self.view.draw(self.controller.view())

    def _show_candidate_code(self, item, _previous=None) -> None:
        if item is None:
            return
        candidate = self.state.candidates.get(item.data(QtCore.Qt.UserRole))
        if candidate is not None:
            best = self.state.best()
            if best is not None and best.index == candidate.index and best.code:
                candidate = best  # the program OK inserts: fitted, sized, its dimensions named
            self.view.show_code(candidate.code or candidate.error or "")

    def selected_candidate(self) -> jobs.Candidate | None:
        index = self.view.selected_index()
        candidate = self.state.candidates.get(index) if index is not None else None
        if candidate is not None and candidate.valid:
            best = self.state.best()
            if candidate.brep is None and best is not None and best.index == candidate.index:
                return best
            return candidate
        return self.state.best()

    # --- task panel protocol ---------------------------------------------------------------------

    def getStandardButtons(self):  # noqa: N802 - FreeCAD's name
        return standard_buttons()

    def accept(self) -> bool:
        """Insert the selected (or best) valid candidate; keeps the panel open with a message otherwise."""
        candidate = self.selected_candidate() if self.state.finished else None
        if candidate is None:
            self.controller.show_error(messages.UserError("There is no solid to insert yet; press Generate "
                                                          "first, or pick a valid candidate."))
            self._draw()
            return False
        if self.controller.needs_build(candidate, self.view.feature_tree):
            self.controller.build(candidate)  # its geometry and plan come back through _tick, then inserted
            self._draw()
            return False
        if self.insert(candidate):
            self._dismiss()
            return True
        return False

    def insert(self, candidate: jobs.Candidate) -> bool:
        document = FreeCAD.ActiveDocument or FreeCAD.newDocument()
        info = insert.SolidInfo(
            source=candidate.code, image_path=self.picture.path if self.picture else "",
            backend=self.state.backend, model=self.state.model,
            score=candidate.score or 0.0, instruction=self.view.instruction.text().strip(),
            camera=self.picture.camera if self.picture else "")
        try:
            self.inserted, message = insert.insert_part(
                document, candidate.brep, info, placement=self._placement(candidate.brep),
                plan=candidate.feature_plan, feature_tree=self.view.feature_tree)
        except insert.InsertError as error:
            self.controller.show_error(messages.UserError(
                f"{str(error).rstrip('.')}; the document is unchanged, so pick another candidate or "
                "generate again."))
            self._draw()
            return False
        # The panel closes on OK: say what went in where it stays, once.
        if message:
            self.insert_message = messages.tree_fallback(self.inserted.Label, message)
            report.tell(self.insert_message, messages.tree_fallback_short(self.inserted.Label))
        else:
            named = len((candidate.feature_plan or {}).get("parameters") or []) \
                if insert.is_body(self.inserted) else None
            label, image = self.inserted.Label, self.picture.path if self.picture else ""
            report.done(messages.inserted(label, named, image), f"inserted {label}.")
        if Gui.ActiveDocument is not None:
            Gui.ActiveDocument.ActiveView.fitAll()
        return True

    def _placement(self, brep: str):
        """The picked point when asked for; else beside what the capture showed and every part shown
        in the document (a picture from a file, the clipboard or a region has no place of its own, and
        must not land inside what is there); else, in an empty document, the origin."""
        if self.view.at_picked_point.isChecked():
            for selection in reversed(Gui.Selection.getSelectionEx()):
                if selection.PickedPoints:
                    return selection.PickedPoints[-1]
        shown = capture.visible_box(FreeCAD.ActiveDocument) if FreeCAD.ActiveDocument else None
        captured = self.picture.visible_box if self.picture else None
        visible = placement.union([box for box in (captured, shown) if box is not None])
        if visible is None:
            return None
        box = insert.shape_from_brep(brep).BoundBox
        offset = placement.beside(visible, (box.XMin, box.YMin, box.ZMin, box.XMax, box.YMax, box.ZMax))
        return FreeCAD.Vector(*offset)

    def reject(self) -> bool:
        self._dismiss()
        return True

    def _dismiss(self) -> None:
        # FreeCAD calls accept/reject on the dialog it shows, so that dialog is this one; close()
        # takes it down itself when the panel came through open_generate_panel.
        through_slot = session.panels.current is self
        self.close()
        if not through_slot and Gui.Control.activeDialog():
            Gui.Control.closeDialog()
        if not Gui.Control.activeDialog():
            # FreeCAD 1.x puts back the tab that was in front when the panel opened, which in a fresh
            # profile is the Tasks tab, empty now: show the Model, as 0.20 does, with the new part in it.
            Gui.Control.showModelView()

    def close(self) -> None:
        """Cancel the job on the runtime, stop the timer, and take the dialog down if it is ours."""
        if self._closed:
            return
        self._closed = True
        self._timer.stop()
        self.controller.close()
        shown = session.panels.current is self
        session.panels.release(self)
        if shown and Gui.Control.activeDialog():
            Gui.Control.closeDialog()

