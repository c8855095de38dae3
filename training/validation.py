"""Validation shared by both training recipes (``train_compact`` and ``qlora``): decode, score, plot.

- ``generate_program``: greedy decoding of one image into an extracted CadQuery program.
- ``score_programs``: run predictions and ground truths in the sandbox; VSR and IoU as everywhere
  (``model_runtime.metrics``: failures count as IoU 0 in ``iou``, ``iou_valid`` over valid outputs).
  A ground truth that does not run is a data error: that sample is skipped, never scored as a miss.
- ``decode_and_score``: both, over dataset rows.
- ``plot_curves``: loss and validation metrics against step, from a list of records.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any


def generate_program(model, processor, image: Any, instruction: str | None = None,
                     max_new_tokens: int = 400) -> str:
    """Greedy generation for one image (a PIL image or a dataset image); the extracted program."""
    import torch

    from model_runtime.extract import extract_code
    from model_runtime.picture.images import load_image
    from model_runtime.prompt import build_prompt

    inputs = processor(images=[load_image(image)], text=[build_prompt(instruction)], return_tensors="pt")
    inputs = inputs.to(model.device)
    # A 4-bit model keeps its vision tower in the compute dtype; the processor gives fp32 pixels.
    vision_dtype = next(p.dtype for n, p in model.named_parameters() if "vision_tower" in n)
    inputs["pixel_values"] = inputs["pixel_values"].to(vision_dtype)
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False, use_cache=True)
    text = processor.tokenizer.decode(out[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True)
    return extract_code(text)


Scored = tuple[dict[str, float], list[dict]]  # metrics, and one record per sample


def score_programs(pool, predicted: Sequence[str], truth: Sequence[str]) -> Scored:
    """``vsr``, ``iou`` (failures 0), ``iou_valid`` and ``scored`` over the samples whose truth runs.

    Valid means what it means everywhere: the sandbox ran the code and got one good solid back. An
    IoU that cannot be computed on a valid output (an OCC boolean failure) counts the output as valid
    with IoU 0. Raises ValueError when no ground truth runs.
    """
    from model_runtime.metrics import Score, iou, summarize
    from model_runtime.sandbox import SandboxError

    scores, samples = [], []
    for code, reference in zip(predicted, truth, strict=True):
        sample: dict[str, Any] = {"code": code, "valid": False, "iou": None, "error": None}
        samples.append(sample)
        try:
            reference_shape = pool.run(reference).shape()
        except SandboxError as exc:
            sample["error"] = f"ground truth failed, sample skipped: {exc.code}: {exc.message}"
            continue
        try:
            shape = pool.run(code).shape()
        except SandboxError as exc:
            sample["error"] = f"{exc.code}: {exc.message}"
            scores.append(Score(valid=False))
            continue
        sample["valid"] = True
        try:
            sample["iou"] = float(iou(shape, reference_shape))
        except Exception as exc:  # noqa: BLE001 - an OCC boolean failure: the output still counts as valid
            sample["error"] = f"metric_error: {exc}"
        scores.append(Score(valid=True, iou=sample["iou"]))
    if not scores:
        raise ValueError("no validation sample has a ground truth that runs")
    summary = summarize(scores)
    metrics = {"vsr": summary["vsr"], "iou": summary["iou_mean"],
               "iou_valid": summary["iou_mean_valid"] or 0.0, "scored": float(len(scores))}
    return metrics, samples


def decode_and_score(model, processor, rows: Sequence[dict], pool, instruction: str | None = None,
                     max_new_tokens: int = 400, progress: bool = False) -> Scored:
    """Greedy programs for ``rows`` (each with ``image`` and ``code``), scored against their code."""
    from tqdm.auto import tqdm

    was_training = model.training
    model.eval()
    try:
        predicted = [generate_program(model, processor, row["image"], instruction, max_new_tokens)
                     for row in tqdm(rows, desc="validation: generating", leave=False, disable=not progress)]
    finally:
        model.train(was_training)
    return score_programs(pool, predicted, [row["code"] for row in rows])


# Record key -> (label, panel). Keys of both recipes: train_compact's history and the HF Trainer's
# log history (which prefixes validation metrics with ``val_`` and calls the validation loss eval_loss).
CURVES = {
    "loss": ("train loss", "loss"),
    "token_bag_loss": ("token-bag loss (image only)", "loss"),
    "val_loss": ("validation loss", "loss"),
    "eval_loss": ("validation loss", "loss"),
    "vsr": ("VSR", "metrics"),
    "val_vsr": ("VSR", "metrics"),
    "iou": ("IoU (failures 0)", "metrics"),
    "val_iou": ("IoU (failures 0)", "metrics"),
    "iou_valid": ("IoU (valid only)", "metrics"),
    "val_iou_valid": ("IoU (valid only)", "metrics"),
    "image_reliance": ("val loss increase with shuffled images", "metrics"),
}


def plot_curves(records: Sequence[dict], path: Path) -> Path:
    """Losses (left, log scale) and validation metrics (right) against ``step``, as one PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (loss_ax, metric_ax) = plt.subplots(1, 2, figsize=(11, 3.8))
    axes = {"loss": loss_ax, "metrics": metric_ax}
    for key, (label, panel) in CURVES.items():
        points = [(r["step"], r[key]) for r in records if key in r and "step" in r and r[key] is not None]
        if points:
            steps, values = zip(*points, strict=True)
            axes[panel].plot(steps, values, marker="o" if len(points) < 50 else None, ms=3, lw=0.9,
                             label=label)
    decoded = any(key in r for r in records for key in ("vsr", "val_vsr"))
    if all(v > 0 for line in loss_ax.lines for v in line.get_ydata()) and loss_ax.lines:
        loss_ax.set_yscale("log")
    loss_ax.set(xlabel="step", ylabel="loss", title="loss")
    metric_ax.set(xlabel="step", ylim=(0, 1.02),
                  title="greedy validation, run in the sandbox" if decoded else "validation")
    for ax in axes.values():
        if ax.lines:
            ax.legend(loc="best", fontsize=8)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


__all__ = ["decode_and_score", "generate_program", "plot_curves", "score_programs"]
