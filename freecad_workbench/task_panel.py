"""The Generate task panel: picture, options, runtime status, progress, streamed code, candidates.

All network work runs on worker threads (see background.py); this module only draws what
``jobs.JobState`` says and inserts the accepted candidate in one transaction.
"""

from __future__ import annotations

import base64
import threading

import FreeCAD
import FreeCADGui as Gui

from model_runtime import protocol

from . import capture, insert, jobs, session
from .background import Background
from .client import ClientError
from .launcher import LauncherError
from .preferences import current as current_preferences
from .qt import QtCore, QtGui, QtWidgets, png_to_pixmap

THUMB = 72


def describe_health(health: dict) -> str:
    """One line for the panel from GET /v1/health."""
    backend, model = health.get("backend") or "no backend", health.get("model") or "no model"
    state = health.get("backend_state", "ready")
    if state == "loading":
        return "starting — loading the model; jobs wait for it"
    if state in ("none", "unavailable"):
        return ("up, but it has no model: generating will fail. Set a model in Preferences > CadSnap "
                "or run Set up runtime.")
    return f"ready — {backend}, {model} (runtime {health.get('version', '?')})"


class GeneratePanel:
    """FreeCAD task panel (``form`` + accept/reject). States: idle -> running -> finished."""

    def __init__(self, picture: session.Picture | None = None) -> None:
        self.prefs = current_preferences()
        self.picture = picture or session.current_picture
        self.state = jobs.JobState()
        self.client = None
        self.job_id: str | None = None
        self.cancel_event = threading.Event()
        self.inserted = None  # the object accept() made, for callers and tests
        self.generation = 0  # counts Generate presses
        self.background = Background(self._on_message)
        self.form = self._build()
        self._show_picture()
        self._set_running(False)
        self.check_runtime()

    # --- widgets ---------------------------------------------------------------------------------

    def _build(self):
        form = QtWidgets.QWidget()
        form.setWindowTitle("CadSnap: generate")
        form.setObjectName("CadSnapGeneratePanel")
        form.setMinimumWidth(340)
        layout = QtWidgets.QVBoxLayout(form)

        self.preview = QtWidgets.QLabel("No picture yet")
        self.preview.setAlignment(QtCore.Qt.AlignCenter)
        self.preview.setMinimumHeight(120)
        self.preview.setFrameShape(QtWidgets.QFrame.StyledPanel)
        layout.addWidget(self.preview)

        sources = QtWidgets.QHBoxLayout()
        for text, slot in (("3D view", self.use_view), ("Region", self.use_region),
                           ("Open…", self.use_file), ("Paste", self.use_clipboard)):
            button = QtWidgets.QPushButton(text)
            button.clicked.connect(slot)
            sources.addWidget(button)
        layout.addLayout(sources)

        options = QtWidgets.QFormLayout()
        self.instruction = QtWidgets.QLineEdit()
        self.instruction.setPlaceholderText("optional, e.g. \"the holes are 6 mm\"")
        options.addRow("Instruction", self.instruction)
        self.candidates = QtWidgets.QSpinBox()
        self.candidates.setRange(1, protocol.MAX_CANDIDATES)
        self.candidates.setValue(self.prefs.candidates)
        options.addRow("Candidates", self.candidates)
        self.size_mm = QtWidgets.QDoubleSpinBox()
        self.size_mm.setRange(0, 10_000)
        self.size_mm.setDecimals(1)
        self.size_mm.setSuffix(" mm")
        self.size_mm.setSpecialValueText("any")
        options.addRow("Overall size", self.size_mm)
        self.at_picked_point = QtWidgets.QCheckBox("Place at the picked point (else the origin)")
        self.at_picked_point.setToolTip("Click a point on a shape in the 3D view before pressing OK")
        options.addRow("", self.at_picked_point)
        self.fit_dimensions = QtWidgets.QCheckBox("Fit dimensions to the picture")
        self.fit_dimensions.setChecked(True)
        self.fit_dimensions.setToolTip("Adjust the best program's numbers until its render matches the "
                                       "picture (about 1-2 s). Off: the model's numbers as written.")
        options.addRow("", self.fit_dimensions)
        layout.addLayout(options)

        self.runtime_label = QtWidgets.QLabel("Runtime: checking…")
        self.runtime_label.setWordWrap(True)
        layout.addWidget(self.runtime_label)

        actions = QtWidgets.QHBoxLayout()
        self.generate_button = QtWidgets.QPushButton("Generate")
        self.generate_button.clicked.connect(self.generate)
        self.cancel_button = QtWidgets.QPushButton("Cancel job")
        self.cancel_button.clicked.connect(self.cancel_job)
        actions.addWidget(self.generate_button)
        actions.addWidget(self.cancel_button)
        layout.addLayout(actions)

        self.progress = QtWidgets.QProgressBar()
        self.progress.setRange(0, 1000)
        self.progress.setTextVisible(True)
        layout.addWidget(self.progress)
        self.stage_label = QtWidgets.QLabel("")
        layout.addWidget(self.stage_label)

        self.message = QtWidgets.QLabel("")
        self.message.setWordWrap(True)
        self.message.setStyleSheet("color: #b00020;")
        self.message.hide()
        layout.addWidget(self.message)

        self.candidate_list = QtWidgets.QListWidget()
        self.candidate_list.setViewMode(QtWidgets.QListView.IconMode)
        self.candidate_list.setIconSize(QtCore.QSize(THUMB, THUMB))
        self.candidate_list.setResizeMode(QtWidgets.QListView.Adjust)
        self.candidate_list.setMaximumHeight(THUMB + 34)
        self.candidate_list.currentItemChanged.connect(self._show_candidate_code)
        layout.addWidget(self.candidate_list)

        self.code_view = QtWidgets.QPlainTextEdit()
        self.code_view.setReadOnly(True)
        self.code_view.setFont(QtGui.QFont("Monospace", 9))
        self.code_view.setPlaceholderText("The generated CadQuery code streams here.")
        layout.addWidget(self.code_view, 1)
        return form

    # --- picture sources -------------------------------------------------------------------------

    def use_view(self) -> None:
        self._take(lambda: capture.capture_view(self.prefs.capture_size))

    def use_region(self) -> None:
        self._selector = capture.RegionSelector(self._region_done)
        self._selector.showFullScreen()

    def _region_done(self, picture) -> None:
        if picture is not None:
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
            self.show_error(str(error))
            return
        if picture is not None:
            self.picture = picture
            self._show_picture()

    def _show_picture(self) -> None:
        if self.picture is None:
            return
        pixmap = png_to_pixmap(self.picture.png)
        if pixmap.isNull():
            self.preview.setText("This picture cannot be shown; it may be corrupt.")
            return
        self.preview.setPixmap(pixmap.scaled(150, 150, QtCore.Qt.KeepAspectRatio,
                                             QtCore.Qt.SmoothTransformation))
        self.message.hide()

    # --- runtime and job -------------------------------------------------------------------------

    def check_runtime(self) -> None:
        """Ask the runtime for its health (starting it if the preferences allow); never blocks."""
        def work() -> None:
            self._ensure_runtime()

        self.background.start(work, "cadsnap-health")

    def _ensure_runtime(self):
        """(client, None) for a healthy runtime, else (None, why)."""
        try:
            client, health = session.runtime.ensure(
                self.prefs, lambda text: self.background.post("runtime", text), self.cancel_event)
        except (ClientError, LauncherError) as error:
            reason = getattr(error, "message", str(error))
            self.background.post("runtime_down", reason)
            return None, reason
        self.background.post("runtime_up", health)
        return client, None

    def generate(self) -> None:
        try:
            request = jobs.GenerateRequest(
                image=self.picture.png if self.picture else b"", instruction=self.instruction.text(),
                n=self.candidates.value(), target_size_mm=self.size_mm.value() or None,
                backend=self.prefs.backend, refine=self.fit_dimensions.isChecked())
            payload = request.to_json()
        except jobs.RequestError as error:
            self.show_error(jobs.describe_error(error.code, error.message))
            return
        self.state = jobs.JobState()
        self.cancel_event = threading.Event()
        self.job_id = None
        self.generation += 1
        self.candidate_list.clear()
        self.code_view.clear()
        self.message.hide()
        self._set_running(True)
        self.stage_label.setText("Connecting to the runtime…")
        cancel, generation = self.cancel_event, self.generation
        self.background.start(lambda: self._run_job(payload, cancel, generation), "cadsnap-job")

    def _post_job(self, generation: int, kind: str, payload) -> None:
        """Post a job message tagged with its Generate press, so a late message from an earlier
        (cancelled) job never lands in the current one."""
        self.background.post("job_message", (generation, kind, payload))

    def _run_job(self, payload: dict, cancel: threading.Event, generation: int) -> None:
        def post(kind: str, message) -> None:
            self._post_job(generation, kind, message)

        client, reason = self._ensure_runtime()
        if client is None:
            if cancel.is_set():
                post("event", {"type": protocol.EVENT_CANCELLED})
            else:
                post("failed", (None, f"The runtime is not available. {reason}"))
            return
        if cancel.is_set():
            post("event", {"type": protocol.EVENT_CANCELLED})
            return
        self.client = client
        try:
            job_id = client.submit_job(payload)
            post("job", job_id)
            stream = client.events(job_id, idle_timeout_s=self.prefs.job_timeout_s)
            self._stream = stream
            if cancel.is_set():  # pressed while submitting
                client.cancel(job_id)
            last = None
            for event in stream:
                last = event
                post("event", event)
            if last is None or last.get("type") not in (protocol.EVENT_RESULT, protocol.EVENT_ERROR,
                                                        protocol.EVENT_CANCELLED):
                post("job_state", client.job(job_id))
        except ClientError as error:
            if cancel.is_set():
                post("event", {"type": protocol.EVENT_CANCELLED})
            else:
                post("failed", (error.code, error.message))

    def cancel_job(self) -> None:
        self.cancel_event.set()
        self.stage_label.setText("Cancelling…")
        job_id, client, generation = self.job_id, self.client, self.generation
        if job_id and client:
            def work() -> None:
                try:
                    client.cancel(job_id)
                except ClientError:
                    # The runtime is gone or the job already ended: stop listening ourselves.
                    stream = getattr(self, "_stream", None)
                    if stream is not None:
                        stream.close()
                    self._post_job(generation, "event", {"type": protocol.EVENT_CANCELLED})

            self.background.start(work, "cadsnap-cancel")
        # Without a job id yet (runtime still starting), the job worker sees the event and stops.

    # --- messages from workers (GUI thread) ------------------------------------------------------

    def _on_message(self, kind: str, payload) -> None:
        if kind == "job_message":
            generation, kind, payload = payload
            if generation != self.generation or (self.state.finished and kind != "job"):
                return  # from an earlier press, or after this job already ended
        if kind == "runtime":
            self.runtime_label.setText(f"Runtime: {payload}")
        elif kind == "runtime_up":
            health = payload or {}
            self.runtime_label.setText(f"Runtime: {describe_health(health)}")
            self.state.backend = self.state.backend or str(health.get("backend") or "")
            self.state.model = self.state.model or str(health.get("model") or "")
            self._health = health
        elif kind == "runtime_down":
            self.runtime_label.setText(f"Runtime: not available. {payload}")
        elif kind == "job":
            self.job_id = payload
            self.stage_label.setText(f"Job {payload} queued")
            if self.cancel_event.is_set():
                self.cancel_job()
        elif kind == "event":
            self.state.apply(payload)
            self._refresh()
        elif kind == "job_state":
            self.state.apply_job(payload)
            self._refresh()
        elif kind == "failed":
            code, message = payload
            self.state.status = protocol.JOB_FAILED
            self.state.error_code, self.state.error_message = code, message
            self._refresh()
        elif kind == "exec_failed":
            self.stage_label.setText("")
            self.show_error(payload)
        elif kind == "insert":
            if self.insert(payload):
                self.close()
        elif kind == "crash":
            self._set_running(False)
            self.show_error(f"Internal error in CadSnap: {payload}")
            FreeCAD.Console.PrintError(f"CadSnap: {payload}\n")

    def _refresh(self) -> None:
        state = self.state
        self.progress.setValue(int(state.progress * 1000))
        self.stage_label.setText(f"{state.status}: {state.stage}" if state.stage else state.status)
        self._update_candidates()
        if not self.candidate_list.currentItem() and state.candidates:
            latest = state.candidates[max(state.candidates)]
            if latest.code != self.code_view.toPlainText():
                self.code_view.setPlainText(latest.code)
                self.code_view.moveCursor(QtGui.QTextCursor.End)
        if state.finished:
            self._set_running(False)
            if state.backend:
                self.runtime_label.setText(f"Runtime: ready — {state.backend}, {state.model or 'model'}")
            if state.status == protocol.JOB_DONE and state.best() is not None:
                best = state.best()
                self._select(best.index)
                fitted = state.fit_summary()
                self.stage_label.setText(f"Done: {sum(bool(c.valid) for c in state.candidates.values())} of "
                                         f"{len(state.candidates)} candidates valid. "
                                         + (fitted + " " if fitted else "") + "Press OK to insert.")
            else:
                code = state.error_code or (protocol.ERROR_ALL_INVALID if state.status == protocol.JOB_DONE
                                            else None)
                self.show_error(jobs.describe_error(code, state.error_message))

    def _update_candidates(self) -> None:
        for candidate in self.state.ranked():
            item = self._item(candidate.index)
            if candidate.valid is None:
                caption = f"#{candidate.index + 1} …"
            elif candidate.valid:
                caption = f"#{candidate.index + 1} {candidate.score:.2f}" if candidate.score is not None \
                    else f"#{candidate.index + 1} valid"
            else:
                caption = f"#{candidate.index + 1} invalid"
            item.setText(caption)
            item.setToolTip(candidate.error or caption)
            item.setIcon(QtGui.QIcon(self._thumbnail(candidate)))

    def _item(self, index: int):
        for row in range(self.candidate_list.count()):
            item = self.candidate_list.item(row)
            if item.data(QtCore.Qt.UserRole) == index:
                return item
        item = QtWidgets.QListWidgetItem()
        item.setData(QtCore.Qt.UserRole, index)
        self.candidate_list.addItem(item)
        return item

    def _thumbnail(self, candidate: jobs.Candidate):
        if candidate.thumbnail_png:
            pixmap = png_to_pixmap(base64.b64decode(candidate.thumbnail_png))
            if not pixmap.isNull():
                return pixmap.scaled(THUMB, THUMB, QtCore.Qt.KeepAspectRatio, QtCore.Qt.SmoothTransformation)
        # No render from the runtime: a card with the verdict, so the list still reads at a glance.
        pixmap = QtGui.QPixmap(THUMB, THUMB)
        colour = {True: "#d8f0d8", False: "#f6d6d6", None: "#e6e6e6"}[candidate.valid]
        pixmap.fill(QtGui.QColor(colour))
        painter = QtGui.QPainter(pixmap)
        painter.setFont(QtGui.QFont("Sans", 20))
        mark = {True: "✓", False: "✗", None: "…"}[candidate.valid]
        painter.drawText(pixmap.rect(), QtCore.Qt.AlignCenter, mark)
        painter.end()
        return pixmap

    def _select(self, index: int) -> None:
        self.candidate_list.setCurrentItem(self._item(index))

    def _show_candidate_code(self, item, _previous=None) -> None:
        if item is None:
            return
        candidate = self.state.candidates.get(item.data(QtCore.Qt.UserRole))
        if candidate is not None:
            self.code_view.setPlainText(candidate.code or candidate.error or "")

    def selected_candidate(self) -> jobs.Candidate | None:
        item = self.candidate_list.currentItem()
        if item is not None:
            candidate = self.state.candidates.get(item.data(QtCore.Qt.UserRole))
            if candidate is not None and candidate.valid:
                if candidate.brep is None:
                    best = self.state.best()
                    if best is not None and best.index == candidate.index:
                        return best
                return candidate
        return self.state.best()

    # --- state helpers ---------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return not self.generate_button.isEnabled()

    def _set_running(self, running: bool) -> None:
        self.generate_button.setEnabled(not running)
        self.cancel_button.setEnabled(running)
        if running:
            self.progress.setValue(0)

    def show_error(self, text: str) -> None:
        self.message.setText(text)
        self.message.show()

    # --- task panel protocol ---------------------------------------------------------------------

    def getStandardButtons(self):  # noqa: N802 - FreeCAD's name
        # An int for FreeCAD; Qt6's Python enums give theirs through .value, Qt5's through int().
        buttons = (QtWidgets.QDialogButtonBox.Ok, QtWidgets.QDialogButtonBox.Close)
        return sum(getattr(button, "value", None) or int(button) for button in buttons)

    def accept(self) -> bool:
        """Insert the selected (or best) valid candidate; keeps the panel open with a message otherwise."""
        candidate = self.selected_candidate() if self.state.finished else None
        if candidate is None:
            self.show_error("There is no valid solid to insert yet. Generate first, "
                            "or pick a valid candidate.")
            return False
        if not candidate.brep:
            self._exec_then_insert(candidate)
            return False
        if self.insert(candidate):
            self.close()
            return True
        return False

    def insert(self, candidate: jobs.Candidate) -> bool:
        document = FreeCAD.ActiveDocument or FreeCAD.newDocument()
        info = insert.SolidInfo(
            source=candidate.code, image_path=self.picture.path if self.picture else "",
            backend=self.state.backend, model=self.state.model,
            score=candidate.score or 0.0, instruction=self.instruction.text().strip(),
            camera=self.picture.camera if self.picture else "")
        try:
            placement = self._picked_point()
            self.inserted = insert.insert_solid(document, candidate.brep, info, placement=placement)
        except insert.InsertError as error:
            self.show_error(f"{error} The document is unchanged.")
            return False
        if Gui.ActiveDocument is not None:
            Gui.ActiveDocument.ActiveView.fitAll()
        return True

    def _picked_point(self):
        """The last point clicked on a shape in the 3D view, when the user asked for it."""
        if not self.at_picked_point.isChecked():
            return None
        for selection in reversed(Gui.Selection.getSelectionEx()):
            if selection.PickedPoints:
                return selection.PickedPoints[-1]
        return None

    def _exec_then_insert(self, candidate: jobs.Candidate) -> None:
        """A candidate the runtime listed without geometry: run its code, then insert (GUI thread)."""
        self.stage_label.setText(f"Building candidate #{candidate.index + 1}…")
        client, timeout = self.client, self.prefs.exec_timeout_s

        def work() -> None:
            try:
                result = client.exec_code(candidate.code, timeout_s=timeout)
            except ClientError as error:
                self.background.post("exec_failed", f"Candidate #{candidate.index + 1} could not be built: "
                                                     f"{error.message} The document is unchanged.")
                return
            candidate.brep = result.get("brep")
            self.background.post("insert", candidate)

        self.background.start(work, "cadsnap-exec")

    def reject(self) -> bool:
        if self.running:
            self.cancel_job()
        self.close()
        return True

    def close(self) -> None:
        self.cancel_event.set()
        self.background.stop()
        Gui.Control.closeDialog()
