"""One Generate panel's life without Qt: its job, its live runtime status, and its end.

Worker threads only ever :meth:`Inbox.post`; the panel's timer calls :meth:`PanelController.pump` on
the GUI thread, which folds the messages into plain state, and then the panel draws
:meth:`PanelController.view`. ``close()`` cancels the job on the runtime, stops the status poller and
closes the inbox, so no late message can reach a widget Qt has already deleted.
:class:`PanelSlot` keeps one panel at a time.
"""

from __future__ import annotations

import queue
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from model_runtime import protocol

from . import messages
from .client import ClientError, RuntimeClient
from .jobs import Candidate, JobState, RequestError, check_picture
from .launcher import LauncherError, RuntimeManager
from .messages import UserError
from .preferences import Preferences

# How often the panel asks /v1/health: often while the runtime is on its way (the issue asks for
# "ready" within 2 s of the runtime saying so), rarely once it is ready.
POLL_WAITING_S = 1.0
POLL_READY_S = 5.0

Spawn = Callable[[Callable[[], None], str], Any]


def spawn_daemon(work: Callable[[], None], name: str) -> threading.Thread:
    thread = threading.Thread(target=work, name=name, daemon=True)
    thread.start()
    return thread


class Inbox:
    """Messages from worker threads to the GUI thread. Once closed it drops everything."""

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._closed = threading.Event()

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    def post(self, kind: str, payload: Any = None) -> bool:
        if self._closed.is_set():
            return False
        self._queue.put((kind, payload))
        return True

    def drain(self) -> list[tuple[str, Any]]:
        items: list[tuple[str, Any]] = []
        while not self._closed.is_set():
            try:
                items.append(self._queue.get_nowait())
            except queue.Empty:
                break
        return items

    def close(self) -> None:
        self._closed.set()


class PanelSlot:
    """At most one Generate panel: showing a new one closes the one before (which cancels its job)."""

    def __init__(self) -> None:
        self.current: Any = None

    def replace(self, panel: Any) -> None:
        previous, self.current = self.current, panel
        if previous is not None and previous is not panel:
            previous.close()

    def release(self, panel: Any) -> None:
        if self.current is panel:
            self.current = None


@dataclass
class _Job:
    """One Generate press: its cancel flag and, once submitted, its id on the runtime."""

    generation: int
    cancel: threading.Event = field(default_factory=threading.Event)
    job_id: str | None = None
    client: RuntimeClient | None = None
    stream: Any = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def submitted(self, job_id: str, client: RuntimeClient) -> bool:
        """Record the id; True when cancel came first (the caller then cancels it on the runtime)."""
        with self._lock:
            self.job_id, self.client = job_id, client
        return self.cancel.is_set()

    def request_cancel(self) -> tuple[str | None, RuntimeClient | None]:
        """Set the flag; the id to cancel on the runtime when it is known (else the worker does it)."""
        self.cancel.set()
        with self._lock:
            return self.job_id, self.client


@dataclass
class CandidateCard:
    """One entry of the candidate list as the panel draws it."""

    index: int
    caption: str
    tooltip: str
    valid: bool | None
    thumbnail_png: str | None


@dataclass
class PanelModel:
    """Everything the panel shows; the widgets draw this and nothing else."""

    runtime_line: str
    runtime_warning: str
    stage_line: str
    progress: float
    running: bool
    can_generate: bool
    error: UserError | None
    cards: list[CandidateCard]
    select_index: int | None
    code: str
    containment_line: str = ""  # what contains generated code, when it is contained


class PanelController:
    """The plain-Python half of the Generate panel. Call ``pump()`` from the GUI thread."""

    def __init__(self, prefs: Preferences, runtime: RuntimeManager, *, spawn: Spawn = spawn_daemon,
                 poll_waiting_s: float = POLL_WAITING_S, poll_ready_s: float = POLL_READY_S) -> None:
        self.prefs = prefs
        self.runtime = runtime
        self.spawn = spawn
        self.poll_waiting_s, self.poll_ready_s = poll_waiting_s, poll_ready_s
        self.inbox = Inbox()
        self.state = JobState()
        self.job: _Job | None = None
        self.job_ids: list[str] = []  # every job this panel submitted, for tests and logs
        self.generation = 0
        self.closed = False
        self.client: RuntimeClient | None = None
        self.health: dict[str, Any] = {}
        self.runtime_phase = messages.PHASE_CHECKING
        self.runtime_line = "checking…"
        self.error: UserError | None = None
        self.picture_error: UserError | None = None
        self.stage_line = ""
        self.built: Candidate | None = None  # a candidate /v1/exec just built, for the panel to insert
        self.crash_report = ""  # a traceback from a worker, for the panel to log
        self._stop = threading.Event()  # the panel's end: every worker stops
        self._watch_stop = threading.Event()  # the current runtime watcher's end (new settings)
        self.watch_generation = 0  # messages from an earlier watcher (older settings) are dropped

    # --- runtime status --------------------------------------------------------------------------

    def start(self) -> None:
        """Start watching the runtime (starting it when the preferences allow)."""
        generation, prefs, stop = self.watch_generation, self.prefs, self._watch_stop
        self.spawn(lambda: self._watch_runtime(generation, prefs, stop), "cadsnap-health")

    def use_prefs(self, prefs: Preferences) -> bool:
        """Take new preferences (a fix made in Preferences while the panel is open); True when they
        change the runtime, which is then watched (and started) anew. The next Generate uses them."""
        old, self.prefs = self.prefs, prefs
        if self.closed or _runtime_settings(old) == _runtime_settings(prefs):
            return False
        self._watch_stop.set()
        self._watch_stop = threading.Event()
        self.watch_generation += 1
        self.client, self.health = None, {}
        self.runtime_phase, self.runtime_line = messages.PHASE_CHECKING, "checking…"
        if self.error is not None and self.error.code in _SETTINGS_CODES and not self.running:
            self.error = None  # it was about the old settings
        self.start()
        return True

    def _watch_runtime(self, generation: int, prefs: Preferences, stop: threading.Event) -> None:
        client: RuntimeClient | None = None
        down, health, slow = False, {}, 0

        def post(kind: str, value: Any) -> None:
            self.inbox.post(kind, (generation, value))

        def stopped() -> bool:
            return self._stop.is_set() or stop.is_set()

        while not stopped():
            try:
                if client is None:
                    client, health = self.runtime.ensure(prefs, lambda text: post("runtime_text", text), stop)
                else:
                    health = client.health(timeout_s=2.0)
                down, slow = False, 0
                post("health", (client, health))
            except (ClientError, LauncherError) as error:
                if stopped():
                    return
                slow += getattr(error, "code", "") == "client_timeout"
                if slow == 1 and client is not None and not down:
                    # One slow answer from a runtime that was up (a busy machine) is not "down" yet.
                    stop.wait(self.poll_waiting_s)
                    continue
                if not down:
                    post("runtime_down", error)
                down = True
                # Watch without starting again: a runtime that dies at start would loop otherwise.
                client = client or self.runtime.client(prefs)
            ready = not down and messages.health_phase(health) == messages.PHASE_READY
            stop.wait(self.poll_ready_s if ready else self.poll_waiting_s)

    # --- picture ---------------------------------------------------------------------------------

    def set_picture(self, png: bytes | None, decodes: bool = True) -> bool:
        """Check a new picture (``decodes``: what Qt's decoder said); Generate needs a readable one.
        The job of the picture before is dropped (cancelled on the runtime when it runs): its result
        belongs to that picture, and OK must never insert it under this one's name and camera."""
        self.discard_job()
        self.picture_error = None
        if not png:
            return False
        try:
            check_picture(png)
        except RequestError:
            self.picture_error = messages.bad_picture("it is damaged or cut short")
        if self.picture_error is None and not decodes:
            self.picture_error = messages.bad_picture("it does not decode")
        if self.picture_error is None and self.error is not None \
                and self.error.code == protocol.ERROR_BAD_IMAGE:
            self.error = None
        return self.picture_error is None

    # --- job -------------------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self.job is not None and not self.state.finished

    def discard_job(self) -> None:
        """Forget the current job and its candidates (cancelling it on the runtime when it runs)."""
        if self.job is None:
            return
        if self.running:
            self.cancel()
        self.generation += 1  # its late messages are dropped
        self.job, self.state, self.built = None, JobState(), None
        self.stage_line = "A new picture: press Generate."
        if self.error is not None and self.error.code not in _RUNTIME_CODES:
            self.error = None  # it was about the old picture's job

    def generate(self, payload: dict[str, Any]) -> None:
        """Start a job for a request body (``jobs.GenerateRequest.to_json``); cancels a running one."""
        if self.closed:
            return
        if self.running:
            self.cancel()
        self.generation += 1
        self.job = job = _Job(self.generation)
        self.state = JobState()
        self.error, self.built = None, None
        self.stage_line = "Connecting to the runtime…"
        self.spawn(lambda: self._run_job(job, payload), "cadsnap-job")

    def _run_job(self, job: _Job, payload: dict[str, Any]) -> None:
        def post(kind: str, value: Any) -> None:
            self.inbox.post(kind, (job.generation, value))

        watch = self.watch_generation
        try:
            client, _health = self.runtime.ensure(
                self.prefs, lambda text: self.inbox.post("runtime_text", (watch, text)), job.cancel)
            if job.cancel.is_set():
                post("event", {"type": protocol.EVENT_CANCELLED})
                return
            job_id = client.submit_job(payload)
            post("job", job_id)
            if job.submitted(job_id, client):
                client.cancel(job_id)  # cancel was pressed (or the panel closed) while submitting
            job.stream = stream = client.events(job_id, idle_timeout_s=self.prefs.job_timeout_s)
            last = None
            for event in stream:
                last = event
                post("event", event)
            if last is None or last.get("type") not in protocol.TERMINAL_EVENTS:
                post("job_state", client.job(job_id))
        except (ClientError, LauncherError) as error:
            if job.cancel.is_set():
                post("event", {"type": protocol.EVENT_CANCELLED})
            else:
                post("failed", error)
        except Exception as error:  # noqa: BLE001 - shown in the panel instead of lost in a thread
            post("failed", error)
            self.inbox.post("crash", traceback.format_exc())

    def cancel(self) -> None:
        """Cancel the current job, on the runtime too. Never blocks the caller."""
        job = self.job
        if job is None or job.cancel.is_set():
            return
        self.stage_line = "Cancelling…"
        job_id, client = job.request_cancel()
        if job_id and client:
            def work() -> None:
                try:
                    client.cancel(job_id)
                except ClientError:
                    # The runtime is gone or the job already ended: stop listening ourselves.
                    stream = job.stream
                    if stream is not None:
                        stream.close()

            self.spawn(work, "cadsnap-cancel")
        # Without a job id yet, the job's worker sees the flag and cancels it once it has one.

    def close(self) -> None:
        """End of the panel: cancel its job on the runtime, stop watching, drop every later message."""
        if self.closed:
            return
        self.closed = True
        if self.running:
            self.cancel()
        self._stop.set()
        self._watch_stop.set()
        self.inbox.close()

    @staticmethod
    def needs_build(candidate: Candidate, feature_tree: bool) -> bool:
        """Whether inserting ``candidate`` first needs a /v1/exec run: it came without geometry, or a
        feature tree is wanted and it came without a plan (a runtime whose jobs do not trace; /v1/exec
        always does)."""
        return not candidate.brep or (feature_tree and candidate.feature_plan is None)

    def build(self, candidate: Candidate) -> None:
        """Run a candidate's code through /v1/exec (geometry and feature plan); ``built`` gets it."""
        client, timeout = self.client or self.runtime.client(self.prefs), self.prefs.exec_timeout_s
        number = f" #{candidate.index + 1}" if candidate.index >= 0 else ""
        self.stage_line = f"Building candidate{number}…"
        generation = self.generation

        def work() -> None:
            try:
                result = client.exec_code(candidate.code, timeout_s=timeout)
            except ClientError as error:
                self.inbox.post("build_failed", (generation, error))
                return
            plan = result.get("feature_plan")
            built = Candidate(index=candidate.index, code=candidate.code, valid=True, score=candidate.score,
                              brep=result.get("brep"), thumbnail_png=candidate.thumbnail_png,
                              feature_plan=plan if isinstance(plan, dict) else None)
            self.inbox.post("built", (generation, built))

        self.spawn(work, "cadsnap-exec")

    # --- messages (GUI thread) -------------------------------------------------------------------

    def pump(self) -> bool:
        """Fold every waiting message into the state; True when something changed."""
        changed = False
        for kind, payload in self.inbox.drain():
            self._apply(kind, payload)
            changed = True
        return changed

    def _apply(self, kind: str, payload: Any) -> None:
        if kind in ("runtime_text", "health", "runtime_down"):
            generation, payload = payload
            if generation != self.watch_generation:
                return  # about the runtime of settings replaced since
        if kind == "runtime_text":
            if self.runtime_phase not in (messages.PHASE_READY, messages.PHASE_LOADING):
                self.runtime_phase, self.runtime_line = messages.PHASE_STARTING, str(payload)
        elif kind == "health":
            self.client, self.health = payload
            self.runtime_phase = messages.health_phase(self.health)
            self.runtime_line = messages.describe_health(self.health)
            if self.runtime_phase == messages.PHASE_NO_MODEL:
                self._show(messages.explain_code(protocol.ERROR_NO_BACKEND))
            elif self.error is not None and self.error.code in _RUNTIME_CODES:
                self.error = None  # the runtime answers: an earlier "not running" or "too slow" is wrong now
        elif kind == "runtime_down":
            self._runtime_down(payload)
        elif kind == "crash":
            self.crash_report = str(payload)  # the panel prints it to FreeCAD's Report view
        else:
            generation, value = payload
            if generation != self.generation:
                return  # from an earlier press, after the user moved on
            self._apply_job(kind, value)

    def _runtime_down(self, error: BaseException) -> None:
        refused = getattr(error, "code", "") == protocol.ERROR_UNAUTHORIZED
        self.runtime_phase = messages.PHASE_DOWN
        self.runtime_line = "answering, but not to CadSnap" if refused else "not running"
        self._show(self._explain(error))

    def _apply_job(self, kind: str, value: Any) -> None:
        state = self.state
        if kind == "job":
            self.job_ids.append(value)
            self.stage_line = "Queued on the runtime"
            return
        if kind == "built":
            self.built = value
            return
        if kind == "build_failed":
            self.stage_line = ""
            self._show(self._explain(value))
            return
        if state.finished:
            return  # the job already ended; a late duplicate changes nothing
        if kind == "event":
            state.apply(value)
        elif kind == "job_state":
            state.apply_job(value)
        elif kind == "failed":
            if isinstance(value, LauncherError | ClientError) and \
                    getattr(value, "code", "") not in _JOB_ERRORS_FROM_A_LIVE_RUNTIME:
                self._runtime_down(value)  # the status line must not keep saying "Starting…"
            user_error = self._explain(value)
            state.status, state.error_code, state.error_message = protocol.JOB_FAILED, user_error.code, None
            submitted = self.job is not None and self.job.job_id is not None
            self.stage_line = ("The job failed; the document is unchanged." if submitted
                               else "No job was started; the document is unchanged.")
            self._show(user_error)
            return
        self._after_job_change()

    def _after_job_change(self) -> None:
        state = self.state
        if state.status == protocol.JOB_RUNNING or not state.finished:
            self.stage_line = _stage_text(state)
            return
        if state.status == protocol.JOB_DONE and state.best() is not None:
            valid = sum(bool(c.valid) for c in state.candidates.values())
            notes = [n for n in (state.fit_summary(), state.instruction_note(), state.view_note()) if n]
            guess = state.verdict()
            self.stage_line = (f"Done: {valid} of {len(state.candidates)} candidates valid. "
                               + "".join(n + " " for n in notes)
                               + (f"⚠ {guess} " if guess else "") + "Press OK to insert.")
            return
        if state.status == protocol.JOB_CANCELLED:
            self.stage_line = "Cancelled; the document is unchanged."
            return
        self.stage_line = "The job failed; the document is unchanged."
        if state.status == protocol.JOB_DONE:  # done, but nothing valid
            self._show(messages.explain_code(protocol.ERROR_ALL_INVALID, candidates=len(state.candidates)))
        else:
            self._show(messages.explain_code(state.error_code, state.error_message,
                                             candidates=len(state.candidates), **self._settings()))

    def _settings(self) -> dict[str, Any]:
        """What an error sentence needs to know of the preferences."""
        return {"runtime_url": self.prefs.runtime_url, "start_runtime": self.prefs.start_runtime,
                "local": self.prefs.is_local}

    def _explain(self, error: Any) -> UserError:
        if isinstance(error, BaseException):
            return messages.explain_exception(error, interpreter=self.prefs.interpreter, **self._settings())
        return messages.explain_code(None, str(error))

    def _show(self, error: UserError) -> None:
        self.error = error

    def show_error(self, error: UserError) -> None:
        """An error from the panel itself (a capture, an insertion): shown in the one error place."""
        self._show(error)

    # --- what the panel draws --------------------------------------------------------------------

    def view(self) -> PanelModel:
        state = self.state
        winner = state.best() if state.status == protocol.JOB_DONE else None
        cards = [self._card(candidate, winner) for candidate in state.ranked()]
        code = ""
        if state.candidates:
            code = state.candidates[max(state.candidates)].code
        error = self.picture_error or self.error  # the picture first: it is what keeps Generate off
        return PanelModel(
            runtime_line=f"Runtime: {self.runtime_line}",
            runtime_warning=messages.sandbox_warning(self.health),
            # One message at a time: under an error, a stage line ("Done … Press OK to insert.") would
            # contradict it.
            stage_line="" if error is not None else self.stage_line,
            progress=state.progress if self.job else 0.0,
            running=self.running, can_generate=not self.running and self.picture_error is None
            and not self.closed,
            error=error, cards=cards, select_index=winner.index if winner else None, code=code,
            containment_line=messages.sandbox_note(self.health))

    @staticmethod
    def _card(candidate: Candidate, winner: Candidate | None) -> CandidateCard:
        number = f"#{candidate.index + 1}"
        if candidate.valid is None:
            caption = f"{number} …"
        elif candidate.valid:
            # The winner's score is the one after fitting, as the status line says.
            is_winner = winner is not None and winner.index == candidate.index
            score = winner.score if is_winner and winner is not None else candidate.score
            caption = f"{number} {score:.2f}" if score is not None else f"{number} valid"
        else:
            caption = f"{number} invalid"
        return CandidateCard(candidate.index, caption, candidate.error or caption, candidate.valid,
                             candidate.thumbnail_png)


_RUNTIME_CODES = frozenset({"runtime_unreachable", "runtime_not_installed", "runtime_start_failed",
                            "runtime_start_timeout", protocol.ERROR_NO_BACKEND, "client_timeout"})
# Errors new preferences may have fixed.
_SETTINGS_CODES = _RUNTIME_CODES | {protocol.ERROR_UNAUTHORIZED, "launcher"}


def _runtime_settings(prefs: Preferences) -> tuple:
    """The preferences that decide which runtime the panel talks to (and starts)."""
    return (prefs.runtime_url, prefs.interpreter, prefs.start_runtime, prefs.backend, prefs.model_path,
            prefs.mmproj_path, prefs.adapter_path, prefs.remote_url, prefs.startup_timeout_s)

# Errors a runtime that is up answers with: they say nothing about the runtime being down.
_JOB_ERRORS_FROM_A_LIVE_RUNTIME = frozenset({protocol.ERROR_BAD_IMAGE, protocol.ERROR_BAD_REQUEST,
                                             protocol.ERROR_TOO_LARGE, protocol.ERROR_NO_BACKEND,
                                             protocol.ERROR_NOT_FOUND, protocol.ERROR_INTERNAL})


def _stage_text(state: JobState) -> str:
    if state.status == protocol.JOB_QUEUED:
        return "Queued on the runtime"
    best = state.search_best
    if best and isinstance(best.get("score"), (int, float)):
        tries = f", {best.get('evaluations')}/{best.get('budget')} tries" if best.get("budget") else ""
        return f"Searching: best match so far {best['score']:.2f} ({best.get('source') or 'model'}{tries})"
    stage = state.stage.replace("_", " ")
    return f"Working: {stage} ({state.progress:.0%})" if stage else "Working…"


def wait_until(predicate: Callable[[], bool], timeout_s: float, step_s: float = 0.02) -> bool:
    """Poll ``predicate`` (tests and scripts)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step_s)
    return predicate()
