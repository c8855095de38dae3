"""Generate jobs without FreeCAD: building the request, checking the image, folding the event stream.

The task panel feeds every event of ``GET /v1/jobs/{id}/events`` to :meth:`JobState.apply` and draws
what the state says; the state never touches Qt, so plain pytest covers it.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Any

from model_runtime import protocol

from .client import encode_image


class RequestError(ValueError):
    """The request cannot be sent as it is; ``code`` is a protocol ERROR_* string."""

    def __init__(self, message: str, code: str = protocol.ERROR_BAD_REQUEST) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_JPEG_MAGIC = b"\xff\xd8\xff"


def image_size(data: bytes) -> tuple[int, int]:
    """Width and height of a PNG or JPEG from its header; RequestError(bad_image) if it is neither
    or is cut short. A full decode is the runtime's job; this catches empty, truncated and non-image
    files before a request goes out."""
    if data.startswith(_PNG_MAGIC):
        if len(data) < 33 or data[12:16] != b"IHDR" or not data.rstrip(b"\x00").endswith(b"IEND\xaeB`\x82"):
            raise RequestError("The PNG image is truncated or corrupt.", protocol.ERROR_BAD_IMAGE)
        width, height = struct.unpack(">II", data[16:24])
        return width, height
    if data.startswith(_JPEG_MAGIC):
        return _jpeg_size(data)
    raise RequestError("The image is not a PNG or JPEG file.", protocol.ERROR_BAD_IMAGE)


def _jpeg_size(data: bytes) -> tuple[int, int]:
    index = 2
    while index + 9 < len(data):
        if data[index] != 0xFF:
            break
        marker = data[index + 1]
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            index += 2
            continue
        (length,) = struct.unpack(">H", data[index + 2:index + 4])
        # Start-of-frame markers (baseline, progressive, ...) carry the size.
        if marker in (0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF):
            height, width = struct.unpack(">HH", data[index + 5:index + 9])
            return width, height
        index += 2 + length
    raise RequestError("The JPEG image is truncated or corrupt.", protocol.ERROR_BAD_IMAGE)


@dataclass
class GenerateRequest:
    """What the Generate panel sends to ``POST /v1/jobs``."""

    image: bytes
    instruction: str = ""
    n: int = 4
    target_size_mm: float | None = None
    backend: str | None = None
    refine: bool = True  # let the runtime fit the winner's dimensions to the picture

    def validate(self) -> None:
        if not self.image:
            raise RequestError("No image: capture the 3D view, a screen region, or open an image first.",
                               protocol.ERROR_BAD_IMAGE)
        width, height = image_size(self.image)
        if width < 1 or height < 1:
            raise RequestError("The image has no pixels.", protocol.ERROR_BAD_IMAGE)
        if width * height > protocol.MAX_IMAGE_PIXELS:
            raise RequestError(f"The image is {width}×{height} pixels; the runtime takes at most "
                               f"{protocol.MAX_IMAGE_PIXELS} pixels. Capture a smaller region.",
                               protocol.ERROR_TOO_LARGE)
        if not 1 <= self.n <= protocol.MAX_CANDIDATES:
            raise RequestError(f"Candidates must be between 1 and {protocol.MAX_CANDIDATES}, not {self.n}.")
        if self.target_size_mm is not None and not 0 < self.target_size_mm < 100_000:
            raise RequestError("The overall size must be a positive length in millimetres.")

    def to_json(self) -> dict[str, Any]:
        """The request body; validates first."""
        self.validate()
        body: dict[str, Any] = {"image": encode_image(self.image), "n": self.n}
        if self.instruction.strip():
            body["instruction"] = self.instruction.strip()
        if self.target_size_mm:
            body["target_size_mm"] = float(self.target_size_mm)
        if self.backend and self.backend != "auto":
            body["backend"] = self.backend
        if not self.refine:
            body["refine"] = False
        return body


@dataclass
class Candidate:
    """One generated program as the stream and the final result describe it."""

    index: int
    code: str = ""
    valid: bool | None = None  # None: not executed yet
    score: float | None = None
    error: str | None = None
    brep: str | None = None
    thumbnail_png: str | None = None  # base64, when the runtime renders one

    @classmethod
    def from_dict(cls, data: dict[str, Any], fallback_index: int = 0) -> Candidate:
        error = data.get("error")
        if isinstance(error, dict):
            line = error.get("line")
            text = str(error.get("message") or error.get("code") or "")
            error = f"line {line}: {text}" if line else text
        result = data.get("result") if isinstance(data.get("result"), dict) else {}
        score = data.get("score")
        return cls(
            index=int(data.get("index", fallback_index)),
            code=str(data.get("code") or ""),
            valid=data.get("valid"),
            score=float(score) if isinstance(score, (int, float)) else None,
            error=str(error) if error else None,
            brep=data.get("brep") or result.get("brep"),
            thumbnail_png=data.get("thumbnail_png") or data.get("thumbnail"),
        )

    def merge(self, other: Candidate) -> None:
        for name in ("code", "valid", "score", "error", "brep", "thumbnail_png"):
            value = getattr(other, name)
            if value not in (None, ""):
                setattr(self, name, value)


@dataclass
class JobState:
    """Everything the panel shows about one job, updated event by event."""

    job_id: str = ""
    status: str = protocol.JOB_QUEUED
    stage: str = ""
    progress: float = 0.0
    candidates: dict[int, Candidate] = field(default_factory=dict)
    result: dict[str, Any] | None = None
    error_code: str | None = None
    error_message: str | None = None
    backend: str = ""
    model: str = ""

    @property
    def finished(self) -> bool:
        return self.status in protocol.JOB_TERMINAL

    def candidate(self, index: int) -> Candidate:
        if index not in self.candidates:
            self.candidates[index] = Candidate(index=index)
        return self.candidates[index]

    def apply(self, event: dict[str, Any]) -> None:
        kind = event.get("type")
        self.job_id = str(event.get("job_id") or self.job_id)
        if kind in (protocol.EVENT_STATUS, protocol.EVENT_TOKEN) and self.status == protocol.JOB_QUEUED:
            self.status = protocol.JOB_RUNNING  # the pipeline's own events carry no status
        if kind == protocol.EVENT_STATUS:
            self.status = str(event.get("status") or self.status)
            self.stage = str(event.get("stage") or self.stage)
            if isinstance(event.get("progress"), (int, float)):
                self.progress = min(1.0, max(0.0, float(event["progress"])))
        elif kind == protocol.EVENT_TOKEN:
            slot = self.candidate(int(event.get("candidate", event.get("index", 0))))
            slot.code += str(event.get("text") or event.get("delta") or "")
        elif kind == protocol.EVENT_CANDIDATE:
            incoming = Candidate.from_dict(event, fallback_index=len(self.candidates))
            self.candidate(incoming.index).merge(incoming)
        elif kind == protocol.EVENT_RESULT:
            self.apply_job({"status": protocol.JOB_DONE, "result": event.get("result", event)})
        elif kind == protocol.EVENT_ERROR:
            self.apply_job({"status": protocol.JOB_FAILED, "error": event.get("error", event)})
        elif kind == protocol.EVENT_CANCELLED:
            self.status = protocol.JOB_CANCELLED
            self.error_code = protocol.ERROR_CANCELLED
            self.error_message = "The job was cancelled; the document is unchanged."

    def apply_job(self, job: dict[str, Any]) -> None:
        """Fold a ``Job`` object (GET /v1/jobs/{id} or a final event) into the state."""
        self.status = str(job.get("status") or self.status)
        if isinstance(job.get("progress"), (int, float)):
            self.progress = float(job["progress"])
        self.stage = str(job.get("stage") or self.stage)
        result = job.get("result")
        if isinstance(result, dict):
            self.result = result
            self.backend = str(result.get("backend") or self.backend)
            self.model = str(result.get("model") or self.model)
            for position, item in enumerate(result.get("candidates") or []):
                if isinstance(item, dict):
                    incoming = Candidate.from_dict(item, fallback_index=position)
                    self.candidate(incoming.index).merge(incoming)
            if self.status == protocol.JOB_DONE:
                self.progress = 1.0
        error = job.get("error")
        if isinstance(error, dict):
            self.error_code = str(error.get("code") or protocol.ERROR_INTERNAL)
            self.error_message = str(error.get("message") or "The job failed.")
            detail = error.get("detail") if isinstance(error.get("detail"), dict) else {}
            for position, item in enumerate(detail.get("candidates") or []):
                if isinstance(item, dict):
                    incoming = Candidate.from_dict(item, fallback_index=position)
                    self.candidate(incoming.index).merge(incoming)
        if self.status == protocol.JOB_CANCELLED and not self.error_code:
            self.error_code = protocol.ERROR_CANCELLED
            self.error_message = "The job was cancelled; the document is unchanged."

    def fit_summary(self) -> str:
        """A sentence on how the runtime fitted the winner's dimensions to the picture, or ""."""
        fit = (self.result or {}).get("refinement")
        if not isinstance(fit, dict) or not fit.get("changed"):
            return ""
        changed = int(fit["changed"])
        return (f"{changed} dimension{'s' if changed != 1 else ''} fitted to the picture "
                f"(similarity {float(fit.get('start_score', 0)):.2f} → {float(fit.get('score', 0)):.2f}).")

    def ranked(self) -> list[Candidate]:
        """Valid candidates first, best score first; then the invalid ones by index."""
        def key(c: Candidate) -> tuple[bool, float, int]:
            return (not c.valid, -(c.score if c.score is not None else float("-inf")), c.index)

        return sorted(self.candidates.values(), key=key)

    def winner_index(self) -> int | None:
        """The candidate the runtime chose: ``best_index``, else the first of its ranked list."""
        result = self.result or {}
        if isinstance(result.get("best_index"), int):
            return result["best_index"]
        ranked = [c for c in result.get("candidates") or [] if isinstance(c, dict)]
        if ranked and ranked[0].get("valid") and isinstance(ranked[0].get("index"), int):
            return ranked[0]["index"]
        return None

    def best(self) -> Candidate | None:
        """The candidate to accept by default. The runtime's winner comes with the result's code and
        BREP (the code may have been rescaled to the requested size); else the best valid candidate."""
        result = self.result or {}
        exec_result = result.get("result") if isinstance(result.get("result"), dict) else {}
        brep = exec_result.get("brep") or result.get("brep")
        winner = self.winner_index()
        if brep and (winner is not None or not self.candidates):
            listed = self.candidates.get(winner) if winner is not None else None
            score = result.get("score", listed.score if listed else None)
            return Candidate(index=winner if winner is not None else -1,
                             code=str(result.get("code") or (listed.code if listed else "")), valid=True,
                             score=float(score) if isinstance(score, (int, float)) else None, brep=brep,
                             thumbnail_png=listed.thumbnail_png if listed else None)
        return next((c for c in self.ranked() if c.valid), None)


_ERROR_HINTS = {
    protocol.ERROR_ALL_INVALID: "None of the candidates gave a valid solid. Try more candidates, an "
                                "instruction, or a cleaner image.",
    protocol.ERROR_BAD_IMAGE: "The image could not be read. Capture it again or open another file.",
    protocol.ERROR_NO_BACKEND: "The runtime has no model. Set a model in Preferences > CadSnap, "
                               "or run Set up runtime.",
    protocol.ERROR_TIMEOUT: "The runtime ran out of time. Raise the timeouts in Preferences > CadSnap.",
    protocol.ERROR_CANCELLED: "Cancelled; the document is unchanged.",
    protocol.ERROR_UNAUTHORIZED: "The runtime refused the token. Restart the runtime.",
}


def describe_error(code: str | None, message: str | None) -> str:
    """One paragraph for the panel: the runtime's sentence, plus what to do when it does not say."""
    hint = _ERROR_HINTS.get(code or "")
    message = (message or "").strip()
    if hint and message and message not in hint:
        return f"{message}\n{hint}"
    return message or hint or "The job failed for an unknown reason."
