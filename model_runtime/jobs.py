"""Generate jobs: a queue with a concurrency limit, progress events, results and cancel.

``JobManager(runner, concurrency=1)`` runs ``runner(body, emit, cancel) -> dict`` on worker threads.
The runner reports progress by calling ``emit(event)`` and should stop soon after ``cancel`` is set;
it returns the job's result (JSON-ready) or raises. An exception with ``to_dict()`` returning the
protocol's ``{"error": {...}}`` body (PipelineError, SandboxError) keeps its code; anything else
becomes ERROR_INTERNAL. Jobs beyond the concurrency limit wait in the queue instead of failing.
"""

from __future__ import annotations

import itertools
import logging
import queue
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from model_runtime import protocol

log = logging.getLogger(__name__)

Emit = Callable[[dict[str, Any]], None]
JobRunner = Callable[[dict[str, Any], Emit, threading.Event], dict[str, Any]]


class QueueFull(Exception):
    """Too many jobs are waiting; the caller should retry later."""


@dataclass
class Job:
    id: str
    body: dict[str, Any]
    status: str = protocol.JOB_QUEUED
    stage: str = "queued"
    progress: float = 0.0
    result: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    created_at: float = field(default_factory=time.time)
    started_at: float | None = None
    finished_at: float | None = None
    events: list[dict[str, Any]] = field(default_factory=list)
    cancel: threading.Event = field(default_factory=threading.Event)

    @property
    def terminal(self) -> bool:
        return self.status in protocol.JOB_TERMINAL

    def to_dict(self, queue_position: int | None = None) -> dict[str, Any]:
        return {
            "job_id": self.id,
            "status": self.status,
            "stage": self.stage,
            "progress": self.progress,
            "result": self.result,
            "error": self.error,
            "created_at": self.created_at,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "queue_position": queue_position,
        }


def _error_body(exc: BaseException) -> dict[str, Any]:
    to_dict = getattr(exc, "to_dict", None)
    if callable(to_dict):
        try:
            body = to_dict()
            if isinstance(body, dict) and isinstance(body.get("error"), dict):
                return body["error"]
        except Exception:  # a broken to_dict must not lose the job's failure
            log.exception("error body of %r", exc)
    return protocol.error_body(protocol.ERROR_INTERNAL, f"the job failed unexpectedly: {exc}")["error"]


class JobManager:
    """Thread-safe job table and runner threads. ``close()`` cancels everything still running."""

    def __init__(
        self, runner: JobRunner, *, concurrency: int = 1, max_queued: int = 64, keep_finished: int = 200
    ):
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self.runner = runner
        self.concurrency = concurrency
        self.max_queued = max_queued
        self.keep_finished = keep_finished
        self._jobs: OrderedDict[str, Job] = OrderedDict()
        self._pending: queue.Queue[str | None] = queue.Queue()
        self._order = itertools.count()
        self._cond = threading.Condition()
        self._closed = False
        self._threads = [
            threading.Thread(target=self._work, daemon=True, name=f"cadsnap-job-{i}")
            for i in range(concurrency)
        ]
        for thread in self._threads:
            thread.start()

    # -- public ---------------------------------------------------------------------------------

    def submit(self, body: dict[str, Any]) -> Job:
        with self._cond:
            if self._closed:
                raise QueueFull("the server is shutting down")
            waiting = sum(1 for j in self._jobs.values() if j.status == protocol.JOB_QUEUED)
            if waiting >= self.max_queued:
                raise QueueFull(f"{waiting} jobs are already waiting; try again when one finishes")
            job = Job(id=secrets.token_hex(8), body=body)
            self._jobs[job.id] = job
            self._record(job, protocol.status_event(job.stage, 0.0, job.status))
            self._forget_old()
        self._pending.put(job.id)
        return job

    def get(self, job_id: str) -> Job:
        with self._cond:
            return self._jobs[job_id]  # KeyError: unknown job

    def describe(self, job_id: str) -> dict[str, Any]:
        with self._cond:
            job = self._jobs[job_id]
            return job.to_dict(self._queue_position(job))

    def cancel(self, job_id: str) -> dict[str, Any]:
        with self._cond:
            job = self._jobs[job_id]
            if not job.terminal:
                job.cancel.set()
                if job.status == protocol.JOB_QUEUED:
                    self._finish(job, protocol.JOB_CANCELLED)
            return job.to_dict(self._queue_position(job))

    def events(
        self, job_id: str, *, poll_s: float = 1.0, stop: threading.Event | None = None
    ) -> Iterator[dict[str, Any]]:
        """Every event of the job from the first, blocking for new ones until the job ends."""
        sent = 0
        while True:
            with self._cond:
                job = self._jobs[job_id]
                while sent >= len(job.events) and not job.terminal and not self._closed:
                    if stop is not None and stop.is_set():
                        return
                    self._cond.wait(poll_s)
                batch = job.events[sent:]
                done = job.terminal or self._closed
            yield from batch
            sent += len(batch)
            if done and sent >= len(job.events):
                return

    def stats(self) -> dict[str, int]:
        with self._cond:
            counts = {s: 0 for s in (protocol.JOB_QUEUED, protocol.JOB_RUNNING)}
            for job in self._jobs.values():
                if job.status in counts:
                    counts[job.status] += 1
            return {"concurrency": self.concurrency, **counts}

    def close(self) -> None:
        with self._cond:
            self._closed = True
            for job in self._jobs.values():
                if not job.terminal:
                    job.cancel.set()
                    if job.status == protocol.JOB_QUEUED:
                        self._finish(job, protocol.JOB_CANCELLED)
            self._cond.notify_all()
        for _ in self._threads:
            self._pending.put(None)

    # -- internals (call with self._cond held where noted) ------------------------------------------

    def _queue_position(self, job: Job) -> int | None:
        if job.status != protocol.JOB_QUEUED:
            return None
        waiting = [j for j in self._jobs.values() if j.status == protocol.JOB_QUEUED]
        return waiting.index(job)

    def _record(self, job: Job, event: dict[str, Any]) -> None:  # with lock
        event = {**event, "job_id": job.id}
        job.events.append(event)
        self._cond.notify_all()

    def _finish(self, job: Job, status: str, result: dict | None = None, error: dict | None = None) -> None:
        job.status, job.finished_at = status, time.time()
        job.stage = status
        if status == protocol.JOB_DONE:
            job.result, job.progress = result, 1.0
            self._record(job, protocol.result_event(result or {}))
        elif status == protocol.JOB_CANCELLED:
            job.error = protocol.error_body(protocol.ERROR_CANCELLED, "the job was cancelled")["error"]
            self._record(job, protocol.cancelled_event(job.error))
        else:
            job.error = error
            self._record(job, protocol.error_event(error or {}))

    def _forget_old(self) -> None:  # with lock
        finished = [j.id for j in self._jobs.values() if j.terminal]
        for job_id in finished[: max(0, len(finished) - self.keep_finished)]:
            del self._jobs[job_id]

    def _emit_for(self, job: Job) -> Emit:
        def emit(event: dict[str, Any]) -> None:
            with self._cond:
                if job.terminal:
                    return
                if event.get("type") == protocol.EVENT_STATUS:
                    if isinstance(event.get("progress"), int | float):
                        job.progress = min(1.0, max(0.0, float(event["progress"])))
                    if event.get("stage"):
                        job.stage = str(event["stage"])
                    event = {**event, "status": job.status}
                elif event.get("type") in protocol.TERMINAL_EVENTS:
                    return  # the manager writes the terminal event itself, exactly once
                self._record(job, event)

        return emit

    def _work(self) -> None:
        while True:
            job_id = self._pending.get()
            if job_id is None:
                return
            with self._cond:
                job = self._jobs.get(job_id)
                if job is None or job.status != protocol.JOB_QUEUED:
                    continue  # cancelled while it waited
                job.status, job.stage, job.started_at = protocol.JOB_RUNNING, "starting", time.time()
                self._record(job, protocol.status_event(job.stage, job.progress, job.status))
            try:
                result = self.runner(job.body, self._emit_for(job), job.cancel)
            except BaseException as exc:  # noqa: BLE001 - every failure becomes the job's error
                with self._cond:
                    if job.cancel.is_set():
                        self._finish(job, protocol.JOB_CANCELLED)
                    else:
                        if not hasattr(exc, "to_dict"):
                            log.exception("job %s failed", job.id)
                        self._finish(job, protocol.JOB_FAILED, error=_error_body(exc))
                continue
            # A cancel during the picture search stops it and keeps the best part so far: that
            # job is done, its result saying search.stopped == "cancelled".
            kept = isinstance(result, dict) and (result.get("search") or {}).get("stopped") == "cancelled"
            with self._cond:
                if job.cancel.is_set() and not kept:
                    self._finish(job, protocol.JOB_CANCELLED)
                else:
                    self._finish(job, protocol.JOB_DONE, result=result)
