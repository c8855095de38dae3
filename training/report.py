"""Evaluation results -> summary numbers, a markdown report, a JSON file, a gallery and histograms.

Pure aggregation and drawing: nothing here runs a model or CadQuery, so plain pytest covers it with
hand-made results. ``training.evaluate`` fills in the ``SampleResult`` rows.

Conventions (DESIGN.md): VSR is the share of samples whose chosen output runs and gives one valid
non-empty solid. The headline IoU counts failures as 0; valid-only numbers are reported beside it.
Chamfer is only defined for valid outputs.
"""

from __future__ import annotations

import json
import math
import statistics
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw, ImageFont, ImageOps

TILE = 160  # gallery tile size in pixels
GALLERY_ROWS = 12


@dataclass
class SampleResult:
    """What happened to one evaluation sample."""

    name: str
    family: str = "unknown"
    valid: bool = False
    iou: float | None = None  # None when the output is invalid or the metric itself failed
    chamfer: float | None = None
    latency_s: float = 0.0  # image in -> chosen solid out (or failure)
    n_candidates: int = 0
    n_valid: int = 0
    oracle_iou: float | None = None  # best IoU among all valid candidates (uses the truth: an upper bound)
    model_iou: float | None = None  # the winner with the model's own numbers, before fitting them
    bbox_iou: float | None = None  # the baseline: a box of the true part's bounding box, scored the same way
    error: str | None = None  # protocol ERROR_* code (or "metric_error") when something failed
    message: str = ""
    code: str = ""
    stages: dict[str, float] = field(default_factory=dict)  # per-stage seconds when the pipeline says

    @property
    def score(self) -> float:
        """IoU with failures counted as 0: the headline number."""
        return self.iou if (self.valid and self.iou is not None) else 0.0


def _percentile(values: list[float], q: float) -> float:
    """Linear-interpolated percentile (numpy's default method), without needing numpy here."""
    if not values:
        return math.nan
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100.0
    lo, hi = math.floor(pos), math.ceil(pos)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def _mean(values: list[float]) -> float:
    return statistics.fmean(values) if values else math.nan


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else math.nan


def summarize(results: list[SampleResult]) -> dict[str, Any]:
    """Headline numbers, per-family table, latency percentiles and error counts."""
    if not results:
        raise ValueError("no evaluation results to summarise")
    n = len(results)
    valid = [r for r in results if r.valid]
    scores = [r.score for r in results]
    valid_ious = [r.iou for r in valid if r.iou is not None]
    chamfers = [r.chamfer for r in valid if r.chamfer is not None]
    latencies = [r.latency_s for r in results]
    valid_latencies = [r.latency_s for r in valid]

    families: dict[str, dict[str, Any]] = {}
    for family in sorted({r.family for r in results}):
        rows = [r for r in results if r.family == family]
        fam_valid = [r.iou for r in rows if r.valid and r.iou is not None]
        families[family] = {
            "n": len(rows),
            "vsr": sum(r.valid for r in rows) / len(rows),
            "iou_mean": _mean([r.score for r in rows]),
            "iou_mean_valid": _mean(fam_valid),
            "chamfer_median": _median([r.chamfer for r in rows if r.valid and r.chamfer is not None]),
            "bbox_iou_mean": _mean([r.bbox_iou for r in rows if r.bbox_iou is not None]),
        }

    stage_names = sorted({name for r in results for name in r.stages})
    stages = {
        name: {"p50": _percentile(vals, 50), "mean": _mean(vals)}
        for name in stage_names
        if (vals := [r.stages[name] for r in results if name in r.stages])
    }

    return {
        "n": n,
        "n_valid": len(valid),
        "vsr": len(valid) / n,
        "iou_mean": _mean(scores),
        "iou_median": _median(scores),
        "iou_mean_valid": _mean(valid_ious),
        "iou_median_valid": _median(valid_ious),
        "iou_at_0.5": sum(s >= 0.5 for s in scores) / n,
        "iou_at_0.9": sum(s >= 0.9 for s in scores) / n,
        "chamfer_mean": _mean(chamfers),
        "chamfer_median": _median(chamfers),
        "latency_s": {
            "p50": _percentile(latencies, 50),
            "p90": _percentile(latencies, 90),
            "p95": _percentile(latencies, 95),
            "max": max(latencies),
            "mean": _mean(latencies),
            "p50_valid": _percentile(valid_latencies, 50),
        },
        "stages_s": stages,
        "oracle_iou_mean": _mean([r.oracle_iou or 0.0 for r in results])
        if any(r.oracle_iou is not None for r in results) else math.nan,
        "model_iou_mean": _mean([r.model_iou or 0.0 for r in results])
        if any(r.model_iou is not None for r in results) else math.nan,
        "bbox_iou_mean": _mean([r.bbox_iou for r in results if r.bbox_iou is not None]),
        "candidates_valid_share": (
            sum(r.n_valid for r in results) / max(1, sum(r.n_candidates for r in results))
        ),
        "errors": dict(Counter(r.error for r in results if r.error).most_common()),
        "families": families,
    }


# ----------------------------------------------------------------------------------------- drawing


def _font(size: int = 12) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has no sized default font
        return ImageFont.load_default()


def _tile(image: Image.Image | None, caption: str) -> Image.Image:
    """A square tile: the image fitted on white (or a grey "no image" box) with a caption strip."""
    tile = Image.new("RGB", (TILE, TILE), "white")
    if image is not None:
        fitted = ImageOps.contain(image.convert("RGB"), (TILE, TILE - 16))
        tile.paste(fitted, ((TILE - fitted.width) // 2, (TILE - 16 - fitted.height) // 2))
    else:
        ImageDraw.Draw(tile).rectangle((8, 8, TILE - 8, TILE - 24), fill=(235, 235, 235), outline="grey")
    draw = ImageDraw.Draw(tile)
    draw.rectangle((0, TILE - 16, TILE, TILE), fill=(245, 245, 245))
    draw.text((3, TILE - 15), caption[:30], fill="black", font=_font(11))
    return tile


@dataclass
class GalleryRow:
    """One row of the gallery: the model's input, the chosen candidate's render, the ground truth."""

    result: SampleResult
    input_image: Image.Image | None
    candidate_render: Image.Image | None
    truth_render: Image.Image | None


def draw_gallery(rows: list[GalleryRow], title: str) -> Image.Image:
    """input | chosen candidate | ground truth, one sample per row, with IoU in the caption."""
    header = 22
    sheet = Image.new("RGB", (3 * TILE, header + TILE * max(1, len(rows))), "white")
    draw = ImageDraw.Draw(sheet)
    draw.text((4, 4), title[:70], fill="black", font=_font(13))
    for i, row in enumerate(rows):
        r = row.result
        verdict = f"IoU {r.iou:.2f}" if r.valid and r.iou is not None else (r.error or "invalid")
        y = header + i * TILE
        sheet.paste(_tile(row.input_image, f"{r.name[:18]} input"), (0, y))
        sheet.paste(_tile(row.candidate_render, f"model: {verdict}"), (TILE, y))
        sheet.paste(_tile(row.truth_render, f"truth ({r.family[:16]})"), (2 * TILE, y))
    return sheet


def draw_histograms(results: list[SampleResult], path: Path) -> None:
    """IoU (failures as 0), Chamfer (valid only) and latency histograms side by side."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(13, 3.4))
    axes[0].hist([r.score for r in results], bins=20, range=(0, 1), color="#4477aa")
    axes[0].set(title="IoU (failures = 0)", xlabel="IoU", ylabel="samples")
    chamfers = [r.chamfer for r in results if r.valid and r.chamfer is not None]
    if chamfers:
        axes[1].hist(chamfers, bins=20, color="#228833")
    axes[1].set(title="Chamfer x1000 (valid only)", xlabel="Chamfer")
    axes[2].hist([r.latency_s for r in results], bins=20, color="#cc6677")
    axes[2].set(title="Latency per image", xlabel="seconds")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


# ------------------------------------------------------------------------------------------ writing


def _fmt(value: float, digits: int = 3) -> str:
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def _pct(value: float) -> str:
    return "–" if math.isnan(value) else f"{100 * value:.1f} %"


def render_markdown(summary: dict[str, Any], settings: dict[str, Any], images: dict[str, str]) -> str:
    """The human-readable report. ``images`` maps a caption to a file name beside the report."""
    s = summary
    lat = s["latency_s"]
    lines = [
        f"# Evaluation: {settings.get('title', 'CadSnap model')}",
        "",
        "| setting | value |",
        "| --- | --- |",
        *(f"| {k} | {v} |" for k, v in settings.items() if k != "title"),
        "",
        "## Headline",
        "",
        "Failures (no valid solid) count as IoU 0 in the headline mean and median; the valid-only "
        "columns exclude them. IoU: exact volume IoU after centring on the bounding box and scaling "
        "the largest extent to 1, no rotation. Chamfer: squared distance both ways ×1000, valid only.",
        "",
        "| samples | VSR | mean IoU | median IoU | mean IoU (valid) | median IoU (valid) "
        "| IoU ≥ 0.5 | IoU ≥ 0.9 | Chamfer mean | Chamfer median |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
        f"| {s['n']} | {_pct(s['vsr'])} | {_fmt(s['iou_mean'])} | {_fmt(s['iou_median'])} "
        f"| {_fmt(s['iou_mean_valid'])} | {_fmt(s['iou_median_valid'])} | {_pct(s['iou_at_0.5'])} "
        f"| {_pct(s['iou_at_0.9'])} | {_fmt(s['chamfer_mean'], 2)} | {_fmt(s['chamfer_median'], 2)} |",
        "",
        f"Valid candidates among all generated: {_pct(s['candidates_valid_share'])}.",
        "",
        *([f"Bounding-box baseline (a box of the true part's bounding box, scored the same way; the floor "
           f"to beat, since volume IoU rewards the envelope): mean IoU {_fmt(s['bbox_iou_mean'])}; "
           f"the model is {s['iou_mean'] - s['bbox_iou_mean']:+.3f} above it.", ""]
          if not math.isnan(s.get("bbox_iou_mean", math.nan)) else []),
        *([f"Mean IoU with the model's own numbers (before fitting the winner's dimensions to the "
           f"picture): {_fmt(s['model_iou_mean'])}.", ""]
          if not math.isnan(s.get("model_iou_mean", math.nan)) else []),
        *([f"Oracle best-of-N mean IoU (the best candidate chosen with the ground truth; an upper bound "
           f"for the ranking, not a result): {_fmt(s['oracle_iou_mean'])}.", ""]
          if not math.isnan(s["oracle_iou_mean"]) else []),
        "## Latency (image in -> chosen solid out)",
        "",
        "| p50 | p90 | p95 | max | mean | p50 of valid |",
        "| --- | --- | --- | --- | --- | --- |",
        f"| {_fmt(lat['p50'], 2)} s | {_fmt(lat['p90'], 2)} s | {_fmt(lat['p95'], 2)} s "
        f"| {_fmt(lat['max'], 2)} s | {_fmt(lat['mean'], 2)} s | {_fmt(lat['p50_valid'], 2)} s |",
        "",
    ]
    if s["stages_s"]:
        lines += ["| stage | p50 | mean |", "| --- | --- | --- |"]
        lines += [f"| {k} | {_fmt(v['p50'])} s | {_fmt(v['mean'])} s |" for k, v in s["stages_s"].items()]
        lines.append("")
    lines += [
        "## Per family",
        "",
        "| family | samples | VSR | mean IoU | mean IoU (valid) | bounding-box baseline | Chamfer median |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    by_score = sorted(s["families"].items(), key=lambda kv: kv[1]["iou_mean"])
    lines += [
        f"| {name} | {f['n']} | {_pct(f['vsr'])} | {_fmt(f['iou_mean'])} | {_fmt(f['iou_mean_valid'])} "
        f"| {_fmt(f.get('bbox_iou_mean', math.nan))} | {_fmt(f['chamfer_median'], 2)} |"
        for name, f in by_score
    ]
    lines.append("")
    if s["errors"]:
        lines += ["## Failures", "", "| error | samples |", "| --- | --- |"]
        lines += [f"| {code} | {count} |" for code, count in s["errors"].items()]
        lines.append("")
    for caption, file_name in images.items():
        lines += [f"## {caption}", "", f"![{caption}]({file_name})", ""]
    return "\n".join(lines)


def write_report(
    results: list[SampleResult],
    out_dir: str | Path,
    settings: dict[str, Any],
    gallery: list[GalleryRow] | None = None,
    worst: list[GalleryRow] | None = None,
) -> dict[str, Any]:
    """Write ``report.md``, ``report.json``, ``histograms.png`` and the galleries; return the summary."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    summary = summarize(results)
    images: dict[str, str] = {}
    draw_histograms(results, out_dir / "histograms.png")
    images["Distributions"] = "histograms.png"
    if gallery:
        draw_gallery(gallery, "input | model's chosen candidate | ground truth").save(out_dir / "gallery.png")
        images["Gallery (samples in dataset order)"] = "gallery.png"
    if worst:
        draw_gallery(worst, "worst cases: input | model | ground truth").save(out_dir / "gallery_worst.png")
        images["Worst cases"] = "gallery_worst.png"
    (out_dir / "report.md").write_text(render_markdown(summary, settings, images), encoding="utf-8")
    payload = {"settings": settings, "summary": summary, "samples": [asdict(r) for r in results]}
    text = json.dumps(_strict_json(payload), indent=1, allow_nan=False)
    (out_dir / "report.json").write_text(text, encoding="utf-8")
    return summary


def _strict_json(value: Any) -> Any:
    """NaN (an empty mean) becomes null, so the file is valid JSON for any reader."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _strict_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_strict_json(v) for v in value]
    return value


def pick_worst(results: list[SampleResult], k: int = GALLERY_ROWS) -> list[SampleResult]:
    """The ``k`` lowest-scoring samples (failures first), stable in dataset order among ties."""
    return sorted(results, key=lambda r: r.score)[:k]
