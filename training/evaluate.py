"""Evaluate a model end to end: image in, CadQuery solid out, compared with the ground truth.

    python -m training.evaluate --data DIR --backend auto|hf|gguf|remote [--model PATH] [--n N] --out DIR

``--data`` is either a CadSnap dataset (``training.synth`` output; ``--split`` picks the split) or a
plain folder of ``NAME.png`` beside ``NAME.py`` (CadQuery source) or ``NAME.step`` (DESIGN.md), with
an optional ``families.json`` ({name: family}). Every sample goes through the same
``model_runtime.pipeline.Pipeline`` that ``generate`` and the server use: ``--n 1`` is greedy
decoding, ``--n N`` samples N candidates and keeps the pipeline's best-ranked one (ranking never
sees the ground truth). Writes ``report.md``, ``report.json``, ``histograms.png``, ``gallery.png``
and ``gallery_worst.png`` into ``--out``.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from PIL import Image
from tqdm import tqdm

from training.report import GALLERY_ROWS, GalleryRow, SampleResult, pick_worst, write_report

METRIC_ERROR = "metric_error"  # the output was valid but IoU/Chamfer could not be computed


class EvaluationDataError(ValueError):
    """The evaluation data cannot be read: wrong layout, missing ground truth, empty."""


IMAGE_MODES = ("reference", "stored")


@dataclass
class EvalSample:
    name: str
    image: Image.Image | None  # None: rendered from the ground truth in the reference look
    family: str = "unknown"
    code: str | None = None  # ground truth as CadQuery source ...
    step: Path | None = None  # ... or as a STEP file


# -------------------------------------------------------------------------------------------- data


def is_image_folder(data: Path) -> bool:
    """A plain folder of pictures; a dataset folder (``data/`` shards) also holds gallery PNGs."""
    return not (data / "data").is_dir() and any(data.glob("*.png"))


def folder_samples(data: Path) -> list[EvalSample]:
    """``NAME.png`` + ``NAME.py`` or ``NAME.step`` pairs, sorted by name."""
    families_file = data / "families.json"
    families = json.loads(families_file.read_text(encoding="utf-8")) if families_file.exists() else {}
    samples, missing = [], []
    for png in sorted(data.glob("*.png")):
        py, step = png.with_suffix(".py"), next(
            (p for p in (png.with_suffix(".step"), png.with_suffix(".stp")) if p.exists()), None
        )
        if not py.exists() and step is None:
            missing.append(png.name)
            continue
        try:
            image = Image.open(png)
            image.load()
        except OSError as exc:
            raise EvaluationDataError(f"{png} is not a readable image: {exc}") from exc
        samples.append(EvalSample(
            name=png.stem, image=image, family=families.get(png.stem, "unknown"),
            code=py.read_text(encoding="utf-8") if py.exists() else None, step=None if py.exists() else step,
        ))
    if missing:
        shown = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
        raise EvaluationDataError(
            f"{len(missing)} image(s) in {data} have no NAME.py or NAME.step ground truth beside them: "
            f"{shown}"
        )
    return samples


def dataset_samples(
    data: Path, split: str, limit: int | None, images: str = "reference"
) -> Iterator[EvalSample]:
    """Rows of a dataset split. ``images="reference"`` renders every ground truth in the reference look
    (FreeCAD's isometric view and colours), so every held-out program counts, whatever look the data
    engine drew for it; ``"stored"`` uses the dataset's own images (mixed looks)."""
    from training.synth.dataset import load_split

    rows = load_split(data, split)
    if limit is not None:
        rows = rows.select(range(min(limit, len(rows))))
    columns = [c for c in ("code", "family", "seed") if c in rows.column_names]
    text_rows = rows.select_columns(columns)  # no image decoding unless the stored image is used
    for i, row in enumerate(text_rows):
        image = rows[i]["image"] if images == "stored" else None
        yield EvalSample(name=f"{split}_{i:05d}_{row.get('seed', i)}", image=image,
                         family=row.get("family") or "unknown", code=row["code"])


def load_samples(
    data: Path, split: str = "test", limit: int | None = None, images: str = "reference"
) -> list[EvalSample]:
    if not data.is_dir():
        raise EvaluationDataError(f"{data} is not a folder")
    if is_image_folder(data):
        samples = folder_samples(data)[:limit]
    else:
        try:
            samples = list(dataset_samples(data, split, limit, images))
        except (FileNotFoundError, ValueError) as exc:
            raise EvaluationDataError(
                f"{data} holds neither NAME.png + NAME.py/NAME.step files nor a CadSnap dataset "
                f"split {split!r}: {exc}"
            ) from exc
    if not samples:
        raise EvaluationDataError(f"no samples in {data}")
    return samples


# ------------------------------------------------------------------------------------------ shapes


def truth_shape(sample: EvalSample, pool) -> tuple[Any, str]:
    """The ground-truth solid and its BREP text: the source run in the sandbox, or the STEP file read."""
    if sample.code is not None:
        executed = pool.run(sample.code, formats=("brep",))
        return executed.shape(), executed.brep
    import cadquery as cq

    solids = cq.importers.importStep(str(sample.step)).vals()
    if not solids:
        raise EvaluationDataError(f"{sample.step} holds no shape")
    shape = solids[0] if len(solids) == 1 else cq.Compound.makeCompound(solids)
    buffer = io.BytesIO()
    shape.exportBrep(buffer)
    return shape, buffer.getvalue().decode()


def shape_from_brep(brep: str):
    import cadquery as cq

    return cq.Shape.importBrep(io.BytesIO(brep.encode()))


def render_reference(shape, strict: bool = False) -> Image.Image | None:
    """The reference-look isometric render; None when it fails (a gallery tile shows a grey box)."""
    from model_runtime.render import ISOMETRIC_VIEW, REFERENCE_STYLE, render

    try:
        return render(shape, size=224, style=REFERENCE_STYLE, view=ISOMETRIC_VIEW)
    except Exception as exc:
        if strict:
            raise
        print(f"warning: render failed: {exc}", file=sys.stderr)  # not worth losing the report over
        return None


# ------------------------------------------------------------------------------------- evaluation


@dataclass
class Outcome:
    """One sample's result plus the shapes the gallery needs (BREP text, kept off the report)."""

    result: SampleResult
    image: Image.Image | None = None  # what the model saw
    candidate_brep: str | None = None
    truth_brep: str | None = None


def _error_code(exc: BaseException) -> str:
    return str(getattr(exc, "code", None) or type(exc).__name__)


def evaluate_sample(sample: EvalSample, pipeline, pool, request: dict[str, Any]) -> Outcome:
    """Run one sample through the pipeline and score its chosen solid against the ground truth.

    ``request`` holds ``GenerateRequest`` fields (``n``, ``temperature``, ``max_new_tokens``...).
    """
    from model_runtime.metrics import chamfer, iou
    from model_runtime.pipeline import GenerateRequest

    record = SampleResult(name=sample.name, family=sample.family)
    try:
        truth, truth_brep = truth_shape(sample, pool)
    except Exception as exc:
        raise EvaluationDataError(f"ground truth of {sample.name} does not build: {exc}") from exc
    image = sample.image if sample.image is not None else render_reference(truth, strict=True)
    record.bbox_iou = bbox_baseline_iou(truth)

    record.n_candidates = request.get("n", 1)
    start = time.perf_counter()
    try:
        result = pipeline.run(GenerateRequest(image=image, **request))
    except Exception as exc:  # every failure is a data point: all candidates invalid, timeout, ...
        record.latency_s = time.perf_counter() - start
        record.error, record.message = _error_code(exc), str(getattr(exc, "message", exc))[:300]
        candidates = getattr(exc, "detail", {}).get("candidates") or [{}]
        record.code = candidates[0].get("code", "")  # the greedy answer, for reading the failure
        return Outcome(record, image, truth_brep=truth_brep)
    record.latency_s = time.perf_counter() - start
    record.n_candidates = len(result.candidates)
    record.n_valid = sum(c.valid for c in result.candidates)
    record.stages = {k: float(v) for k, v in result.timings.items() if k.endswith("_s") and "per_s" not in k}
    record.valid, record.code = True, result.code  # the pipeline only returns a valid winner
    candidate = result.exec_result.shape()
    try:
        record.iou = float(iou(candidate, truth))
        record.chamfer = float(chamfer(candidate, truth))
    except Exception as exc:  # an OCC boolean can fail on odd geometry: keep the sample, say so
        record.error, record.message = METRIC_ERROR, str(exc)[:300]
    changed = result.refinement is not None or getattr(result, "search", None) is not None
    record.model_iou = (  # the model's ranked winner as it wrote it, before fitting and search
        _safe_iou(result.best.exec_result.shape(), truth) if changed and result.best.valid else record.iou
    )
    if len(result.candidates) > 1:
        record.oracle_iou = max(
            [record.iou or 0.0]
            + [_safe_iou(c.exec_result.shape(), truth) for c in result.candidates[1:] if c.valid]
        )
    return Outcome(record, image, candidate_brep=result.exec_result.brep, truth_brep=truth_brep)


def bbox_baseline_iou(truth) -> float:
    """IoU of a box of the true part's bounding box with the part: the floor a model must beat."""
    import cadquery as cq

    box = truth.BoundingBox()
    envelope = cq.Solid.makeBox(box.xlen, box.ylen, box.zlen, cq.Vector(box.xmin, box.ymin, box.zmin))
    return _safe_iou(envelope, truth)


def _render_brep(brep: str | None) -> Image.Image | None:
    return render_reference(shape_from_brep(brep)) if brep else None


def _safe_iou(shape, truth) -> float:
    from model_runtime.metrics import iou

    try:
        return float(iou(shape, truth))
    except Exception:  # only feeds the oracle upper bound
        return 0.0


def gallery_rows(outcomes: list[Outcome], names: list[str]) -> list[GalleryRow]:
    by_name = {o.result.name: o for o in outcomes}
    rows = []
    for name in names:
        outcome = by_name[name]
        candidate, truth = _render_brep(outcome.candidate_brep), _render_brep(outcome.truth_brep)
        rows.append(GalleryRow(outcome.result, outcome.image, candidate, truth))
    return rows


def run_evaluation(
    samples: list[EvalSample], pipeline, pool, *, n: int = 1, out_dir: str | Path,
    settings: dict[str, Any] | None = None, temperature: float = 0.7, max_new_tokens: int = 512,
    frame: bool = True, refine: bool = True, search: bool = True, evaluations: int | None = None,
) -> dict[str, Any]:
    """Evaluate ``samples`` through ``pipeline`` and write the report into ``out_dir``; return the summary."""
    # The search's budget is a count of evaluations and no seconds: the same score on a busy machine.
    request = {"n": n, "temperature": temperature, "max_new_tokens": max_new_tokens, "frame": frame,
               "refine": refine, "search": search, "evaluations": evaluations, "budget_s": None}
    outcomes: list[Outcome] = []
    progress = tqdm(samples, desc=f"evaluate (N={n})", unit="img")
    for sample in progress:
        outcomes.append(evaluate_sample(sample, pipeline, pool, request))
        results = [o.result for o in outcomes]
        progress.set_postfix(
            vsr=f"{sum(r.valid for r in results) / len(results):.2f}",
            iou=f"{sum(r.score for r in results) / len(results):.3f}",
        )
    results = [o.result for o in outcomes]
    gallery = gallery_rows(outcomes, [r.name for r in results[:GALLERY_ROWS]])
    worst = gallery_rows(outcomes, [r.name for r in pick_worst(results)])
    settings = {
        "mode": "greedy (N=1)" if n == 1 else (
            f"best-of-{n}: candidate 0 greedy, {n - 1} sampled at temperature {temperature}; "
            "ranked by the pipeline (image similarity), never by the ground truth"),
        "max_new_tokens": max_new_tokens,
        "framing": "part re-framed like the reference renders" if frame else "picture as given",
        "dimension fitting": ("the winner's numbers fitted to the picture (render and compare, "
                              "never the ground truth)" if refine else "off: the model's own numbers"),
        "picture search": (f"on: envelopes, fitted numbers, edits; budget "
                           f"{evaluations if evaluations is not None else 'default'} evaluations, no time cap"
                           if search else "off"),
        **(settings or {}),
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
    }
    return write_report(results, out_dir, settings, gallery=gallery, worst=worst)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.evaluate", description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, required=True,
                        help="a CadSnap dataset folder or a folder of NAME.png + NAME.py/NAME.step")
    parser.add_argument("--split", default="test", help="dataset split (ignored for a plain folder)")
    parser.add_argument("--images", default="reference", choices=IMAGE_MODES,
                        help="dataset split: render each ground truth in the reference look (default) "
                             "or use the dataset's stored images")
    parser.add_argument("--backend", default="auto", choices=("auto", "hf", "gguf", "remote"))
    parser.add_argument("--model", help="model folder, GGUF file or remote model name (backend-specific)")
    parser.add_argument("--mmproj", help="gguf backend: the mmproj GGUF (found beside --model if omitted)")
    parser.add_argument("--adapter", help="hf backend: a PEFT LoRA adapter folder")
    parser.add_argument("--n", type=int, default=1, help="candidates per image: 1 greedy, N > 1 best-of-N")
    parser.add_argument("--temperature", type=float, default=0.7, help="sampling temperature for N > 1")
    parser.add_argument("--max-new-tokens", type=int, default=512)
    parser.add_argument("--no-frame", dest="frame", action="store_false",
                        help="give the model each picture as it is, not re-framed around the part")
    parser.add_argument("--no-refine", dest="refine", action="store_false",
                        help="keep the model's numbers: do not fit the winner's dimensions to the picture")
    parser.add_argument("--no-search", dest="search", action="store_false",
                        help="no picture search: the model's ranked winner (fitted unless --no-refine)")
    parser.add_argument("--evaluations", type=int, default=None,
                        help="the picture search's budget in evaluations (default: the runtime's default)")
    parser.add_argument("--names", default=None, help="comma-separated sample names to evaluate")
    parser.add_argument("--limit", type=int, default=None, help="evaluate at most this many samples")
    parser.add_argument("--workers", type=int, default=1, help="sandbox worker processes")
    parser.add_argument("--candidates", type=Path, default=None,
                        help="a JSON file of the model's candidates per picture: reused when it holds "
                             "the picture, filled when not (iterate on the search without the model)")
    parser.add_argument("--title", default=None, help="report title (default: the model)")
    parser.add_argument("--out", type=Path, required=True, help="report folder")
    args = parser.parse_args(argv)
    if args.n < 1:
        parser.error("--n must be at least 1")

    try:
        samples = load_samples(args.data, args.split, args.limit, args.images)
    except EvaluationDataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.names:
        wanted = set(args.names.split(","))
        samples = [s for s in samples if s.name in wanted]

    from model_runtime.backends import load_backend
    from model_runtime.pipeline import Pipeline
    from model_runtime.sandbox import SandboxPool
    from training.candidate_cache import with_candidates

    config = {k: v for k in ("model", "mmproj", "adapter") if (v := getattr(args, k))}
    backend = with_candidates(load_backend(args.backend, **config), args.candidates)
    model_name = str(getattr(backend, "model_id", None) or args.model or args.backend)
    settings = {
        "title": args.title or model_name,
        "backend": getattr(backend, "name", args.backend),
        "model": model_name,
        "data": (f"{args.data.name} (folder of images)" if is_image_folder(args.data) else
                 f"{args.data.name}, split {args.split}, images: {args.images}"),
        "samples": len(samples),
    }
    if args.candidates is not None:
        settings["model candidates"] = (f"read from {args.candidates.name} where it held the picture (the "
                                        "same deterministic candidates; the model's seconds then count 0)")
    with SandboxPool(workers=args.workers) as pool:
        pipeline = Pipeline(backend, pool)
        try:
            summary = run_evaluation(samples, pipeline, pool, n=args.n, out_dir=args.out, settings=settings,
                                     temperature=args.temperature, max_new_tokens=args.max_new_tokens,
                                     frame=args.frame, refine=args.refine, search=args.search,
                                     evaluations=args.evaluations)
        except EvaluationDataError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    print(
        f"VSR {summary['vsr']:.1%}  IoU mean {summary['iou_mean']:.3f} (failures 0), "
        f"valid-only {summary['iou_mean_valid']:.3f}  latency p50 {summary['latency_s']['p50']:.2f} s"
        f"  -> {args.out / 'report.md'}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
