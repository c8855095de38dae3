"""Generate jobs without FreeCAD: building the request, checking the image, folding the event stream.

The task panel feeds every event of ``GET /v1/jobs/{id}/events`` to :meth:`JobState.apply` and draws
what the state says; the state never touches Qt, so plain pytest covers it.
"""

from __future__ import annotations

import struct
import zlib
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


_PNG_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}


def check_picture(data: bytes) -> tuple[int, int]:
    """Like :func:`image_size`, but a PNG is read to its last byte: every chunk's checksum and the
    whole compressed pixel stream. A PNG whose header is fine and whose body is damaged fails here,
    before Generate is offered. (JPEG bodies are left to Qt's decoder and the runtime.)"""
    width, height = image_size(data)
    if data.startswith(_PNG_MAGIC):
        _check_png_body(data, width, height)
    return width, height


def _check_png_body(data: bytes, width: int, height: int) -> None:
    corrupt = RequestError("The PNG image is truncated or corrupt.", protocol.ERROR_BAD_IMAGE)
    position, pixels, header = 8, zlib.decompressobj(), b""
    inflated = 0
    while position + 12 <= len(data):
        (length,) = struct.unpack(">I", data[position:position + 4])
        kind = data[position + 4:position + 8]
        body = data[position + 8:position + 8 + length]
        crc = data[position + 8 + length:position + 12 + length]
        if len(body) != length or len(crc) != 4 or zlib.crc32(kind + body) != struct.unpack(">I", crc)[0]:
            raise corrupt
        if kind == b"IHDR":
            header = body
        elif kind == b"IDAT":
            try:
                inflated += len(pixels.decompress(body))
            except zlib.error:
                raise corrupt from None
        elif kind == b"IEND":
            break
        position += 12 + length
    if len(header) != 13 or not pixels.eof:
        raise corrupt
    depth, colour, interlace = header[8], header[9], header[12]
    row = (width * depth * _PNG_CHANNELS.get(colour, 4) + 7) // 8
    if interlace == 0 and inflated != height * (row + 1):
        raise corrupt


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
    search: bool = True  # let the runtime search beyond the model's programs (envelopes, holes, fits)
    budget_s: float | None = None  # the cap on the whole job; the picture search uses what is left
    view: str | None = None  # the view the picture shows, when known (a 3D-view capture: isometric)

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
        if not self.search:
            body["search"] = False
        if self.budget_s is not None:
            body["budget_s"] = float(self.budget_s)
        if self.view:
            body["view"] = self.view
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
    # The runtime's trace of the program (protocol.FeaturePlan), built as a PartDesign Body on insert;
    # only the winner's comes with the result, another candidate's comes back from /v1/exec.
    feature_plan: dict[str, Any] | None = None

    @classmethod
    def from_dict(cls, data: dict[str, Any], fallback_index: int = 0) -> Candidate:
        error = data.get("error")
        if isinstance(error, dict):
            line = error.get("line")
            text = str(error.get("message") or error.get("code") or "")
            error = f"line {line}: {text}" if line else text
        score = data.get("score")
        return cls(
            index=int(data.get("index", fallback_index)),
            code=str(data.get("code") or ""),
            valid=data.get("valid"),
            score=float(score) if isinstance(score, (int, float)) else None,
            error=str(error) if error else None,
            thumbnail_png=data.get("thumbnail_png"),
        )

    def merge(self, other: Candidate) -> None:
        for name in ("code", "valid", "score", "error", "brep", "thumbnail_png", "feature_plan"):
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
    # The picture search's best so far (the ``best`` event): score, source, evaluations, budget.
    search_best: dict[str, Any] | None = None

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
            slot = self.candidate(int(event.get("candidate") or 0))
            slot.code += str(event.get("text") or "")
        elif kind == protocol.EVENT_CANDIDATE:
            incoming = Candidate.from_dict(event, fallback_index=len(self.candidates))
            self.candidate(incoming.index).merge(incoming)
        elif kind == protocol.EVENT_BEST:
            self.search_best = {k: event.get(k) for k in ("score", "source", "evaluations", "budget")}
        elif kind == protocol.EVENT_RESULT:
            self.apply_job({"status": protocol.JOB_DONE, "result": event.get("result")})
        elif kind == protocol.EVENT_ERROR:
            self.apply_job({"status": protocol.JOB_FAILED, "error": event.get("error")})
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
        result = self.result or {}
        fit = result.get("refinement")
        if not isinstance(fit, dict) or not fit.get("changed"):
            return ""
        changed = int(fit["changed"])
        # The same numbers as the candidate captions: the winner's ranking score before fitting and the
        # result's after (the refinement's own scores are at the search's smaller render size).
        listed = [c for c in result.get("candidates") or [] if isinstance(c, dict)]
        before = listed[0].get("score") if listed and listed[0].get("valid") else None
        after = result.get("score")
        before = float(before if isinstance(before, (int, float)) else fit.get("start_score", 0))
        after = float(after if isinstance(after, (int, float)) else fit.get("score", 0))
        return (f"{changed} dimension{'s' if changed != 1 else ''} fitted to the picture "
                f"(similarity {before:.2f} → {after:.2f}).")

    def verdict(self) -> str:
        """The runtime's plain words when its answer is only a guess (a low picture score), else ""."""
        verdict = (self.result or {}).get("verdict")
        if isinstance(verdict, dict) and verdict.get("guess"):
            return str(verdict.get("message") or "").strip()
        return ""

    def view_note(self) -> str:
        """How the runtime read a picture that is not a plain isometric view (set upright, or read as a
        straight view), when the verdict does not say it already; else ""."""
        view = (self.result or {}).get("view")
        note = str(view.get("message") or "").strip() if isinstance(view, dict) else ""
        if not note or self.verdict():
            return ""
        return note[:1].upper() + note[1:] + "."

    def instruction_note(self) -> str:
        """How the runtime used the instruction (the model read it, or it became constraints), or ""."""
        used = (self.result or {}).get("instruction")
        return str(used.get("message") or "").strip() if isinstance(used, dict) else ""

    def ranked(self) -> list[Candidate]:
        """Valid candidates first, best score first; then the invalid ones by index."""
        def key(c: Candidate) -> tuple[bool, float, int]:
            return (not c.valid, -(c.score if c.score is not None else float("-inf")), c.index)

        return sorted(self.candidates.values(), key=key)

    def winner_index(self) -> int | None:
        """The candidate the runtime chose: the first of its ranked list, when that one is valid."""
        result = self.result or {}
        ranked = [c for c in result.get("candidates") or [] if isinstance(c, dict)]
        if ranked and ranked[0].get("valid") and isinstance(ranked[0].get("index"), int):
            return ranked[0]["index"]
        return None

    def best(self) -> Candidate | None:
        """The candidate to accept by default. The runtime's winner comes with the result's code and
        BREP (the code may have been rescaled to the requested size); else the best valid candidate."""
        result = self.result or {}
        exec_result = result.get("result") if isinstance(result.get("result"), dict) else {}
        brep = exec_result.get("brep")
        plan = exec_result.get("feature_plan")
        winner = self.winner_index()
        if brep and (winner is not None or not self.candidates):
            listed = self.candidates.get(winner) if winner is not None else None
            score = result.get("score", listed.score if listed else None)
            return Candidate(index=winner if winner is not None else -1,
                             code=str(result.get("code") or (listed.code if listed else "")), valid=True,
                             score=float(score) if isinstance(score, (int, float)) else None, brep=brep,
                             thumbnail_png=listed.thumbnail_png if listed else None,
                             feature_plan=plan if isinstance(plan, dict) else None)
        return next((c for c in self.ranked() if c.valid), None)
