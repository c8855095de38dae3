"""Image in, best CadQuery program and solid out.

    pipeline = Pipeline(backend, pool)
    result = pipeline.run(GenerateRequest(image=png_bytes, n=4), on_event=print, cancel=event)

Stages: decode the image (any common format; alpha on white; padded square) -> read the view it
shows (FreeCAD's isometric or a straight view) and set a turned picture upright
(model_runtime.picture.views) -> ask the backend for N candidates (greedy first, then sampled) -> pull
the code out of each text -> run each in the sandbox -> rank: valid first, then by similarity between
the input picture and a render of the candidate from the picture's view -> fit the winner's
dimensions to the picture (render, compare, nudge: model_runtime.picture.refine) -> optionally scale
it to a target size. Events (protocol EVENT_* types) report progress, streamed tokens and each
candidate's verdict.
"""

from __future__ import annotations

import base64
import dataclasses
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from model_runtime import protocol
from model_runtime.backends.base import Backend, GenerationCancelled, GenerationSettings
from model_runtime.extract import extract_code
from model_runtime.feature_plan.parameterise import named_run
from model_runtime.picture.images import (
    ImageError,
    backdrop,
    decode_image,
    frame_part,
    pad_square,
    to_png_bytes,
)
from model_runtime.picture.instruction import parse as parse_instruction
from model_runtime.picture.refine import Refinement, refine
from model_runtime.picture.scaling import is_scaled_copy, scale_literals, scale_wrapper
from model_runtime.picture.search import SEARCH_RENDER_SIZE, verdict
from model_runtime.picture.similarity import Silhouette, Similarity, compare
from model_runtime.picture.views import VIEW_NAMES, ViewReading, read_view, upright

PLAIN_VIEW = ViewReading()  # FreeCAD's isometric view, unturned: what the model was trained on

EventCallback = Callable[[dict[str, Any]], None]


class PipelineError(RuntimeError):
    """A generate job failed; ``code`` is a protocol ERROR_* string, ``detail`` JSON-ready."""

    def __init__(self, code: str, message: str, detail: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.code, self.message, self.detail = code, message, dict(detail or {})

    def to_dict(self) -> dict[str, Any]:
        return protocol.error_body(self.code, self.message, self.detail)


@dataclass
class GenerateRequest:
    """One generate job. ``image``: a path, raw bytes, base64 text or a PIL image."""

    image: str | Path | bytes | Image.Image
    instruction: str | None = None
    n: int = 4
    target_size_mm: float | None = None
    max_new_tokens: int = 512
    temperature: float = 0.7
    seed: int = 0
    formats: tuple[str, ...] = ("brep",)
    frame: bool = True  # re-frame the part as in the reference renders (images.frame_part)
    refine: bool = True  # fit the winner's dimensions to the picture (model_runtime.picture.refine)
    # The picture search (model_runtime.picture): envelopes, fitted numbers, edits, the guard.
    search: bool = True
    budget_s: float | None = 5.0  # the user's cap on the whole job, seconds (None: no cap)
    evaluations: int | None = None  # the search's budget in evaluations (None: the default)
    # The view the picture shows (picture.views.VIEW_NAMES), or None to read it from the picture.
    view: str | None = None

    def __post_init__(self) -> None:
        if not 1 <= self.n <= protocol.MAX_CANDIDATES:
            raise PipelineError(
                protocol.ERROR_BAD_REQUEST, f"n must be 1..{protocol.MAX_CANDIDATES}, got {self.n}"
            )
        if self.budget_s is not None and not self.budget_s > 0:
            raise PipelineError(protocol.ERROR_BAD_REQUEST, "budget_s must be a positive number of seconds")
        if self.evaluations is not None and not 0 <= self.evaluations <= 10_000:
            raise PipelineError(protocol.ERROR_BAD_REQUEST, "evaluations must be 0..10000")
        if self.target_size_mm is not None and not self.target_size_mm > 0:
            raise PipelineError(protocol.ERROR_BAD_REQUEST, "target_size_mm must be a positive length in mm")
        if self.view is not None and self.view not in VIEW_NAMES:
            raise PipelineError(protocol.ERROR_BAD_REQUEST, f"view must be one of {', '.join(VIEW_NAMES)}")

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> GenerateRequest:
        """From the protocol's POST /v1/jobs body (``image`` is base64)."""
        if not isinstance(body.get("image"), str) or not body["image"]:
            raise PipelineError(protocol.ERROR_BAD_REQUEST, "the request needs 'image': base64 image data")
        try:
            return cls(
                image=body["image"],
                instruction=body.get("instruction"),
                n=int(body.get("n", 4)),
                target_size_mm=float(body["target_size_mm"])
                if body.get("target_size_mm") is not None
                else None,
                frame=bool(body.get("frame", True)),
                refine=bool(body.get("refine", True)),
                search=bool(body.get("search", True)),
                budget_s=float(body["budget_s"]) if body.get("budget_s") is not None else 5.0,
                evaluations=int(body["evaluations"]) if body.get("evaluations") is not None else None,
                view=str(body["view"]) if body.get("view") is not None else None,
            )
        except (TypeError, ValueError) as exc:
            raise PipelineError(protocol.ERROR_BAD_REQUEST, f"bad request field: {exc}") from exc


REFINE_RENDER_SIZE = 128  # px: the dimension search's renders (the similarity compares at 64)
THUMBNAIL_SIZE = 96  # px: the workbench's candidate list shows 72 px icons
# Seconds of the user's cap kept for what follows the search (the traced final run, the parameter
# names): on a quiet 2-core machine they took 0.3-0.5 s, and the job, not the search, is what the cap
# promises.
FINISH_RESERVE_S = 0.5


def thumbnail_png(image: Image.Image, size: int = THUMBNAIL_SIZE) -> str:
    """A small PNG of ``image`` as base64 text (a few kB), for candidate lists."""
    small = image.convert("RGB")
    small.thumbnail((size, size))
    return base64.b64encode(to_png_bytes(small)).decode("ascii")


@dataclass
class Candidate:
    index: int  # generation order: 0 is the greedy answer
    text: str  # what the model wrote
    code: str  # the program pulled out of it
    valid: bool = False
    similarity: Similarity | None = None
    error: dict[str, Any] | None = None  # {"code", "message", "line"?} when invalid
    exec_result: Any = None  # sandbox ExecResult when valid
    render: Image.Image | None = None  # the ranking render (reference look, isometric view)

    @property
    def score(self) -> float:
        return self.similarity.score if self.similarity is not None else 0.0

    def to_dict(self) -> dict[str, Any]:
        data = {
            "index": self.index,
            "code": self.code,
            "valid": self.valid,
            "score": self.score,
            "error": self.error,
        }
        if self.similarity is not None:
            data.update(self.similarity.to_dict())
        if self.exec_result is not None:
            data.update(volume=self.exec_result.volume, bbox=list(self.exec_result.bbox))
        if self.render is not None:
            data["thumbnail_png"] = thumbnail_png(self.render)
        return data


@dataclass
class GenerateResult:
    code: str  # the winner's program (dimensions fitted, rewritten when scaled)
    exec_result: Any  # its ExecResult (with the requested exports)
    candidates: list[Candidate]  # ranked, best first
    backend: str
    model: str
    scale: float | None = None  # factor applied for target_size_mm
    timings: dict[str, float] = field(default_factory=dict)
    refinement: Refinement | None = None  # how the winner's dimensions were fitted, when they were
    score: float | None = None  # the returned solid's similarity (the winner's, or after fitting)
    search: Any = None  # model_runtime.picture.search.SearchResult when the search ran
    verdict: dict[str, Any] | None = None  # {"guess", "score", "message"}: how far the picture supports it
    instruction: dict[str, Any] | None = None  # how the user's instruction was used
    view: ViewReading = PLAIN_VIEW  # the view the picture was read in (model_runtime.picture.views)

    @property
    def best(self) -> Candidate:
        return self.candidates[0]

    def to_dict(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "result": self.exec_result.to_dict(),
            "score": self.score if self.score is not None else self.best.score,
            "refinement": self.refinement.to_dict() if self.refinement is not None else None,
            "candidates": [c.to_dict() for c in self.candidates],
            "backend": self.backend,
            "model": self.model,
            "scale": self.scale,
            "timings": self.timings,
            "search": self.search.to_dict() if self.search is not None else None,
            "verdict": self.verdict,
            "instruction": self.instruction,
            "view": self.view.to_dict(),
        }


class Pipeline:
    """Ties a backend to a sandbox pool; ``run`` may be called from several threads."""

    def __init__(
        self,
        backend: Backend,
        pool: Any,
        *,
        render_size: int = 224,
        refine_evaluations: int = 30,
        refine_budget_s: float = 3.0,
    ) -> None:
        self.backend = backend
        self.pool = pool
        self.render_size = render_size
        self.refine_evaluations = refine_evaluations
        self.refine_budget_s = refine_budget_s

    def run(
        self,
        request: GenerateRequest,
        on_event: EventCallback | None = None,
        cancel: threading.Event | None = None,
    ) -> GenerateResult:
        if getattr(self.pool, "refused", False):  # no jail and no opt-in: fail before the model works
            from model_runtime.sandbox.pool import refusal

            error = refusal()
            raise PipelineError(error.code, error.message, error.detail)
        emit = on_event or (lambda event: None)
        cancel = cancel or threading.Event()
        timings: dict[str, float] = {}

        def status(stage: str, progress: float) -> None:
            emit(protocol.status_event(stage, round(progress, 4)))

        def check() -> None:
            if cancel.is_set():
                raise PipelineError(protocol.ERROR_CANCELLED, "the job was cancelled")

        status("decode", 0.0)
        t0 = started = time.perf_counter()
        try:
            picture = decode_image(request.image)  # unpadded: the similarity reads its borders
        except ImageError as exc:
            raise PipelineError(exc.code, exc.message) from exc
        # A straight view is rendered and read as one; a turned picture is set upright before the model,
        # the envelopes and the search see it. A clean isometric render reads as plain: the old path.
        view = read_view(picture, request.view)
        picture = upright(picture, view.rotation_deg)
        # The model sees the part framed like its reference renders: a screenshot's wide margin or
        # off-centre part costs it accuracy (FreeCAD renders: see the model card).
        image = frame_part(picture) if request.frame else pad_square(picture)
        timings["decode_s"] = time.perf_counter() - t0
        check()

        status("generate", 0.02)
        instruction, constraints, instruction_info = self._instruction(request)
        texts = self._generate(image, request, emit, status, cancel, instruction)
        bt = self.backend.timings
        timings.update(
            generate_s=bt.encode_s + bt.prompt_s + bt.generate_s,
            encode_s=bt.encode_s,
            prompt_s=bt.prompt_s,
            tokens_s=bt.generate_s,
            new_tokens=float(bt.new_tokens),
            tokens_per_s=bt.tokens_per_s,
        )
        check()

        status("execute", 0.7)
        t0 = time.perf_counter()
        candidates = [Candidate(index=i, text=t, code=extract_code(t)) for i, t in enumerate(texts)]
        self._execute(candidates, request, emit, status, cancel)
        timings["execute_s"] = time.perf_counter() - t0
        check()

        valid = [c for c in candidates if c.valid]
        if not valid and not request.search:
            raise PipelineError(
                protocol.ERROR_ALL_INVALID,
                f"none of the {len(candidates)} candidate programs built a valid solid; "
                "try more candidates (--n), a cleaner picture, or another model",
                {"candidates": [c.to_dict() for c in candidates]},
            )
        status("rank", 0.9)
        t0 = time.perf_counter()
        reference = Silhouette.of(picture)  # once: the input picture is the same for every render
        # With the search on, candidates are scored at the search's size once: the search adopts those
        # scores and renders instead of drawing every candidate a second time.
        style = self._style(picture)
        size = SEARCH_RENDER_SIZE if request.search else self.render_size
        self._rank(reference, valid, cancel, size, style, view)
        timings["rank_s"] = time.perf_counter() - t0
        ranked = sorted(valid, key=lambda c: (-c.score, c.index)) + [c for c in candidates if not c.valid]
        for candidate in valid:
            thumbnail = thumbnail_png(candidate.render) if candidate.render else None
            emit(protocol.candidate_event(candidate.index, True, candidate.score, None, thumbnail))

        best = ranked[0]
        code, exec_result, score, scale, refinement = best.code, best.exec_result, best.score, None, None
        found = None
        if request.search:
            status("search", 0.91)
            t0 = time.perf_counter()
            found = self._search(picture, reference, valid, request, constraints, emit, status, cancel,
                                 started, style, view)
            timings["search_s"] = time.perf_counter() - t0
            if found is None:
                raise PipelineError(
                    protocol.ERROR_ALL_INVALID,
                    f"none of the {len(candidates)} candidate programs built a valid solid and no part "
                    "could be read from the picture's outline; try a picture with the part against a "
                    "plain background",
                    {"candidates": [c.to_dict() for c in candidates]},
                )
            code, exec_result, score = found.best.code, found.best.exec_result, found.best.score
        elif request.refine:
            status("refine", 0.92)
            t0 = time.perf_counter()
            fitted = self._refine(reference, best, status, cancel, style, view)
            timings["refine_s"] = time.perf_counter() - t0
            if fitted is not None:
                refinement, exec_result, score = fitted
                code = refinement.code
        status("finish", 0.97)
        if request.target_size_mm is None and constraints.largest_mm is not None:
            request = dataclasses.replace(request, target_size_mm=constraints.largest_mm)
        if request.target_size_mm is not None:
            scale, code, exec_result = self._scale(code, exec_result, request)
        else:  # once more, traced, for the feature plan (and any export asked for)
            exec_result = self._final_run(code, request)
        code, exec_result = self._parameterise(code, exec_result, request)
        timings["total_s"] = sum(
            v
            for k, v in timings.items()
            if k in ("decode_s", "generate_s", "execute_s", "rank_s", "refine_s", "search_s")
        )
        status("done", 1.0)
        return GenerateResult(
            code=code,
            exec_result=exec_result,
            candidates=ranked,
            backend=self.backend.name,
            model=self.backend.model_id,
            scale=scale,
            timings=timings,
            refinement=refinement,
            score=score,
            search=found,
            verdict=_with_view(verdict(score if score is not None else 0.0), view),
            instruction=instruction_info,
            view=view,
        )

    # -- stages ---------------------------------------------------------------------------------

    def _instruction(self, request: GenerateRequest):
        """(text for the model or None, constraints for the search, what happened in words)."""
        text = (request.instruction or "").strip()
        constraints = parse_instruction(text)
        if not text:
            return None, constraints, None
        follows = bool(getattr(self.backend, "follows_instructions", self.backend.name == "remote"))
        understood = "; ".join(constraints.notes) or "nothing the search can use"
        if follows:
            message = f"the instruction went to the model; the search read: {understood}"
        else:
            message = (f"the model was trained without instructions, so the instruction was not given to "
                       f"it; the search read: {understood}")
        info = {"text": text, "used_by": "model+search" if follows else "search",
                "constraints": constraints.to_dict(), "message": message}
        return (text if follows else None), constraints, info

    def _search(self, picture, reference, valid, request, constraints, emit, status, cancel, started, style,
                view: ViewReading = PLAIN_VIEW):
        """The picture search from the model's valid candidates; None when nothing could be scored."""
        from model_runtime.picture.search import DEFAULT_EVALUATIONS, Budget, search
        from model_runtime.picture.views import straight_hypotheses
        from model_runtime.render import render

        evaluations = DEFAULT_EVALUATIONS if request.evaluations is None else request.evaluations
        seconds = None
        if request.budget_s is not None:  # what is left of the user's cap after finishing, at least a moment
            seconds = max(0.5, request.budget_s - FINISH_RESERVE_S - (time.perf_counter() - started))
        budget = Budget(evaluations=evaluations + len(valid), seconds=seconds)

        def run_code(code: str):
            return self.pool.run(code, timeout_s=self.refine_budget_s)

        def draw(shape):
            return render(shape, size=SEARCH_RENDER_SIZE, style=style, view=view.render_view())

        def on_best(item, spent: int) -> None:
            emit(protocol.best_event(item.score, item.source, spent, budget.evaluations,
                                     thumbnail_png(item.render) if item.render is not None else None,
                                     item.code))
            status("search", 0.91 + 0.06 * min(1.0, spent / max(budget.evaluations, 1)))

        seeds = [(c.code, f"model:{c.index}", c.exec_result, c.similarity, c.render)
                 for c in sorted(valid, key=lambda c: (-c.score, c.index))]
        # A straight view has its own envelopes (the silhouette is the profile) and no edits: those read
        # the isometric view's edge lines and place features from its three visible faces.
        straight = {"read_envelopes": lambda p: straight_hypotheses(p, view.name), "edits": False}
        return search(picture, reference, seeds, run_code, draw, budget,
                      workers=getattr(self.pool, "size", 1), cancelled=cancel.is_set, on_best=on_best,
                      constraints=constraints, **(straight if view.straight else {}))

    def _generate(self, image, request, emit, status, cancel, instruction=None) -> list[str]:
        budget = max(request.n * request.max_new_tokens, 1)
        produced = [0]

        def on_token(index: int, text: str) -> None:
            emit(protocol.token_event(index, text))
            produced[0] += 1
            if produced[0] % 16 == 0:
                status("generate", 0.02 + 0.68 * min(produced[0] / budget, 1.0))

        settings = GenerationSettings(
            n=request.n,
            max_new_tokens=request.max_new_tokens,
            temperature=request.temperature,
            seed=request.seed,
        )
        try:
            return self.backend.generate(image, instruction, settings, on_token=on_token, cancel=cancel)
        except GenerationCancelled as exc:
            raise PipelineError(protocol.ERROR_CANCELLED, "the job was cancelled") from exc
        except PipelineError:
            raise
        except Exception as exc:
            code = getattr(exc, "code", protocol.ERROR_INTERNAL)
            raise PipelineError(code, f"the {self.backend.name} backend failed: {exc}") from exc

    def _execute(self, candidates: list[Candidate], request, emit, status, cancel) -> None:
        from model_runtime.sandbox import SandboxError

        def run_one(candidate: Candidate) -> Candidate:
            if cancel.is_set():
                return candidate
            if not candidate.code.strip():
                candidate.error = {"code": protocol.ERROR_NO_RESULT, "message": "the model wrote no code"}
                return candidate
            try:
                candidate.exec_result = self.pool.run(candidate.code)
                candidate.valid = True
            except SandboxError as exc:
                candidate.error = {"code": exc.code, "message": exc.message, "line": exc.line}
            return candidate

        workers = max(1, min(len(candidates), getattr(self.pool, "size", 1)))
        with ThreadPoolExecutor(max_workers=workers) as executor:
            for done, candidate in enumerate(executor.map(run_one, candidates), start=1):
                if not candidate.valid and candidate.error is not None:
                    emit(protocol.candidate_event(candidate.index, False, 0.0, candidate.error))
                status("execute", 0.7 + 0.2 * done / len(candidates))

    @staticmethod
    def _style(picture: Image.Image):
        """FreeCAD's reference look on the picture's own backdrop: every render compared with the
        picture (ranking, search, fitting) is drawn in it."""
        from model_runtime.render import REFERENCE_STYLE

        top, bottom = backdrop(picture)
        return dataclasses.replace(REFERENCE_STYLE, background_top=top, background_bottom=bottom)

    def _rank(self, reference: Silhouette, valid: list[Candidate], cancel: threading.Event,
              size: int, style, view: ViewReading = PLAIN_VIEW) -> None:
        from model_runtime.render import render

        for candidate in valid:
            if cancel.is_set():
                raise PipelineError(protocol.ERROR_CANCELLED, "the job was cancelled")
            picture = render(
                candidate.exec_result.shape(),
                size=size,
                style=style,
                view=view.render_view(),
            )
            candidate.similarity = compare(reference, picture)
            candidate.render = picture

    def _refine(self, reference: Silhouette, best: Candidate, status, cancel: threading.Event, style,
                view: ViewReading = PLAIN_VIEW):
        """(Refinement, ExecResult, score) when fitting the winner's dimensions to the picture made a
        program that also scores better at the ranking's resolution; else None."""
        from model_runtime.render import RenderError, render
        from model_runtime.sandbox import SandboxError

        faces = best.exec_result.n_faces
        # code -> ExecResult (None: it failed). The search revisits programs (a step up, then back
        # down) and the final check re-scores its winner: each program runs in the sandbox once.
        runs: dict[str, Any] = {}

        def execute(code: str) -> Any:
            if code not in runs:
                try:
                    runs[code] = self.pool.run(code, timeout_s=self.refine_budget_s)
                except SandboxError:
                    runs[code] = None
            return runs[code]

        def similarity(code: str, size: int) -> tuple[float, Any] | None:
            executed = execute(code)
            if executed is None:
                return None
            if executed.n_faces != faces:
                # the design changed, not its sizes (bolt holes slid under a hub, a slot closed):
                # that can match an outline better while losing features, so it never counts
                return -1.0, executed
            try:
                picture = render(executed.shape(), size=size, style=style, view=view.render_view())
            except RenderError:
                return None
            return compare(reference, picture).score, executed

        evaluations = 0

        def score(code: str) -> float | None:
            nonlocal evaluations
            evaluations += 1
            status("refine", 0.92 + 0.05 * min(1.0, evaluations / self.refine_evaluations))
            # the search renders small (fast); only the proportions and outline matter to it
            found = similarity(code, REFINE_RENDER_SIZE)
            return found[0] if found else None

        result = refine(
            best.code,
            score,
            max_evaluations=self.refine_evaluations,
            time_budget_s=self.refine_budget_s,
            cancelled=cancel.is_set,
        )
        if cancel.is_set():
            raise PipelineError(protocol.ERROR_CANCELLED, "the job was cancelled")
        if not result.changed:
            return None
        checked = similarity(result.code, self.render_size)
        if checked is None or checked[0] <= best.score:
            return None
        return result, checked[1], checked[0]

    def _final_run(self, code: str, request: GenerateRequest, doing: str = "building the result"):
        from model_runtime.sandbox import SandboxError

        try:
            return self.pool.run(code, formats=request.formats, feature_plan=True)
        except SandboxError as exc:
            raise PipelineError(exc.code, f"{doing} failed: {exc.message}") from exc

    def _parameterise(self, code: str, exec_result: Any, request: GenerateRequest):
        """The program opening with the feature plan's named dimensions (the names the FreeCAD tree
        shows), traced again so the plan describes the code sent; unchanged when nothing maps."""
        return named_run(lambda named: self.pool.run(named, formats=request.formats, feature_plan=True),
                         code, exec_result)

    def _scale(self, code: str, exec_result: Any, request: GenerateRequest):
        """(factor, code, result) for the target size: the lengths rewritten when that gives exactly
        the scaled solid (the feature tree survives), else a final scaling step."""
        from model_runtime.sandbox import SandboxError

        box = exec_result.bbox
        largest = max(box[3] - box[0], box[4] - box[1], box[5] - box[2])
        if largest <= 0:
            raise PipelineError(protocol.ERROR_INVALID_SOLID, "the best solid has no extent to scale")
        factor = request.target_size_mm / largest
        rewritten = scale_literals(code, factor, request.target_size_mm)
        if rewritten is not None:
            try:
                scaled = self.pool.run(rewritten, formats=request.formats, feature_plan=True)
            except SandboxError:
                scaled = None
            if scaled is not None and is_scaled_copy(exec_result, scaled, factor):
                return factor, rewritten, scaled
        code = scale_wrapper(code, factor, request.target_size_mm)
        return factor, code, self._final_run(code, request, "scaling the result")


def _with_view(said: dict[str, Any], view: ViewReading) -> dict[str, Any]:
    """The verdict with the view's words added; a straight view's depth is a guess whatever the score."""
    note = view.message()
    if not note:
        return said
    return {**said, "guess": said["guess"] or view.straight, "message": f"{said['message']}; {note}"}
