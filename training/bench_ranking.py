"""How close the ranking's pick comes to the best of N: the oracle gap, per scoring rule.

    python -m training.bench_ranking --data training/eval_oof --n 8 --out out/bench

For every picture in ``--data`` (``NAME.png`` beside ``NAME.py`` or ``NAME.step``) the pipeline
draws N candidates with fitting off; each valid candidate's volume IoU against the true part is
measured (DESIGN.md's metric). The report gives, for the ranking score and for each of its parts
alone, the mean IoU of the candidate it picks, against the oracle (the best candidate) and the first
candidate (no ranking), so a change of score can be judged by the gap it closes. ``--cache`` keeps
the candidates, so rules can be compared again without running the model.

``--search`` judges the picture search's choice instead: every part runs as a user gets it (search on,
default budget), and the ``SEARCH_TOP`` best-scoring programs the search tried (envelopes, fits, edits
and the model's candidates) get their IoU measured, so the oracle is the best program the search found
and each rule picks among those (``--candidates FILE`` reuses the model's candidates):

    python -m training.bench_ranking --data training/eval_oof --n 4 --search --candidates cands.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tqdm import tqdm

# A scoring rule: the candidate's similarity parts -> a number, higher is better.
RULES: dict[str, Callable[[dict[str, float]], float]] = {
    "ranking score (the pipeline's rule)": lambda s: s["score"],
    "silhouette IoU only": lambda s: s["silhouette_iou"],
    "edge F1 only": lambda s: s["edge_f1"],
    "shading only": lambda s: s.get("shading", 0.0),
    "silhouette + edges (the rule before shading)": lambda s: s["silhouette_iou"] + s["edge_f1"],
    "silhouette + edges + shading": lambda s: s["silhouette_iou"] + s["edge_f1"] + s.get("shading", 0.0),
    "silhouette + shading": lambda s: s["silhouette_iou"] + s.get("shading", 0.0),
}


def collect(data: Path, n: int, limit: int | None, refine: bool = False) -> list[dict[str, Any]]:
    """Every part's candidates: their similarity parts and their IoU against the truth.

    ``refine``: also run the pipeline as a user gets it (same candidates, fitting on) and record the
    returned solid's IoU and the time fitting took."""
    from model_runtime.backends import load_backend
    from model_runtime.metrics import iou
    from model_runtime.pipeline import GenerateRequest, Pipeline
    from model_runtime.sandbox import SandboxPool
    from training.evaluate import folder_samples, truth_shape

    parts = []
    with SandboxPool(workers=2, timeout_s=20) as pool:
        pipeline = Pipeline(load_backend("auto"), pool)
        for sample in tqdm(folder_samples(data)[:limit], desc="parts"):
            truth, _ = truth_shape(sample, pool)
            request = GenerateRequest(image=sample.image, n=n, refine=False)
            started = time.perf_counter()
            try:
                result = pipeline.run(request)
            except Exception as exc:  # all candidates invalid: the part scores 0 under every rule
                parts.append({"name": sample.name, "candidates": [], "error": str(exc)})
                continue
            candidates = []
            for c in result.candidates:
                if not c.valid:
                    continue
                parts_of_score = c.similarity.to_dict() if c.similarity else {"score": 0.0}
                candidates.append(
                    {"index": c.index, **parts_of_score, "iou": iou(c.exec_result.shape(), truth)}
                )
            part = {"name": sample.name, "candidates": candidates, "seconds": time.perf_counter() - started}
            if refine:
                started = time.perf_counter()
                fitted = pipeline.run(dataclasses.replace(request, refine=True))
                part["fitted"] = {
                    "iou": iou(fitted.exec_result.shape(), truth),
                    "refine_s": fitted.timings.get("refine_s", 0.0),
                    "seconds": time.perf_counter() - started,
                }
            parts.append(part)
    return parts


SEARCH_TOP = 30  # the search's best-scoring programs measured per part (the rest never come close)


def collect_search(
    data: Path, n: int, limit: int | None, backend: Any, **request: Any
) -> list[dict[str, Any]]:
    """Every part's search: the programs it tried, their similarity parts and IoU, the one it chose."""
    from model_runtime.pipeline import GenerateRequest, Pipeline
    from model_runtime.sandbox import SandboxPool
    from training.evaluate import _safe_iou, folder_samples, truth_shape

    # as training.evaluate runs it: the default budget in evaluations with no seconds cap (the same
    # programs on a busy machine), the same sampling (so a candidates file answers)
    request = {"temperature": 0.7, "max_new_tokens": 512, "budget_s": None, **request}
    parts = []
    with SandboxPool(workers=2, timeout_s=20) as pool:
        pipeline = Pipeline(backend, pool)
        for sample in tqdm(folder_samples(data)[:limit], desc="parts"):
            truth, _ = truth_shape(sample, pool)
            result = pipeline.run(GenerateRequest(image=sample.image, n=n, **request))
            seen: set[str] = set()
            tried = []
            for item in sorted(result.search.tried, key=lambda i: -i.score):
                if item.code in seen or item.held:
                    continue
                seen.add(item.code)
                if len(tried) < SEARCH_TOP or item is result.search.best:
                    tried.append(item)
            scored = [{"index": k, "source": item.source, **item.similarity.to_dict(),
                       "iou": _safe_iou(item.exec_result.shape(), truth),
                       "chosen": item is result.search.best}
                      for k, item in enumerate(tried)]
            parts.append({"name": sample.name, "candidates": scored,
                          "returned": _safe_iou(result.exec_result.shape(), truth)})
    return parts


def summarise(parts: list[dict[str, Any]]) -> dict[str, Any]:
    def mean(values: list[float]) -> float:
        return statistics.fmean(values) if values else 0.0

    oracle = [max((c["iou"] for c in p["candidates"]), default=0.0) for p in parts]
    first = [min(p["candidates"], key=lambda c: c["index"])["iou"] if p["candidates"] else 0.0 for p in parts]
    rules = {}
    for name, rule in RULES.items():
        picked = [max(p["candidates"], key=rule)["iou"] if p["candidates"] else 0.0 for p in parts]
        rules[name] = {"mean_iou": mean(picked), "gap_to_oracle": mean(oracle) - mean(picked)}
    summary = {"parts": len(parts), "oracle": mean(oracle), "first_candidate": mean(first), "rules": rules}
    if parts and all("returned" in p for p in parts):
        chosen = [next((c["iou"] for c in p["candidates"] if c.get("chosen")), 0.0) for p in parts]
        summary["search"] = {"returned": mean([p["returned"] for p in parts]), "chosen": mean(chosen)}
    fitted = [p["fitted"] for p in parts if "fitted" in p]
    if fitted:
        summary["fitting"] = {
            "parts": len(fitted),
            "mean_iou": mean([f["iou"] for f in fitted]),
            "refine_s_median": statistics.median(f["refine_s"] for f in fitted),
            "seconds_median": statistics.median(f["seconds"] for f in fitted),
        }
    return summary


def report(summary: dict[str, Any], data: Path, n: int) -> str:
    if "search" in summary:  # the candidates are the search's programs, best-scoring first
        head = [f"# Ranking the programs the picture search tried ({summary['parts']} parts from `{data}`, "
                f"best-of-{n} model candidates among them)", "",
                f"Oracle (the best program tried): mean IoU {summary['oracle']:.3f}. Failures count as 0."]
    else:
        head = [f"# Ranking against the oracle of {n} ({summary['parts']} parts from `{data}`)", "",
                f"Oracle (best candidate): mean IoU {summary['oracle']:.3f}; first candidate (no ranking): "
                f"{summary['first_candidate']:.3f}. Failures count as IoU 0."]
    lines = [
        *head,
        "",
        "| rule | mean IoU of its pick | gap to the oracle |",
        "|---|---:|---:|",
    ]
    for name, r in summary["rules"].items():
        lines.append(f"| {name} | {r['mean_iou']:.3f} | {r['gap_to_oracle']:.3f} |")
    if "search" in summary:
        s = summary["search"]
        lines += [
            "",
            f"The search's own choice (its margins included): mean IoU {s['chosen']:.3f}; returned after "
            f"rounding its numbers: {s['returned']:.3f}. The oracle above is the best program it tried.",
        ]
    if "fitting" in summary:
        f = summary["fitting"]
        lines += [
            "",
            f"With fitting (as `generate` returns it): mean IoU {f['mean_iou']:.3f}; fitting "
            f"{f['refine_s_median']:.2f} s median, image to solid {f['seconds_median']:.2f} s median.",
        ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--n", type=int, default=8)
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--refine", action="store_true", help="also measure the pipeline with fitting on")
    parser.add_argument("--search", action="store_true",
                        help="rank the programs the picture search tried instead of the model's candidates")
    parser.add_argument("--candidates", type=Path, help="the model's candidates kept in this JSON file")
    parser.add_argument(
        "--cache", type=Path, help="JSON of collected candidates: read if present, else written"
    )
    parser.add_argument("--out", type=Path, default=Path("out/bench"))
    args = parser.parse_args(argv)
    if args.cache and args.cache.exists():
        parts = json.loads(args.cache.read_text())
    else:
        if args.search:
            from model_runtime.backends import load_backend
            from training.candidate_cache import with_candidates

            backend = with_candidates(load_backend("auto"), args.candidates)
            parts = collect_search(args.data, args.n, args.limit, backend)
        else:
            parts = collect(args.data, args.n, args.limit, args.refine)
        if args.cache:
            args.cache.write_text(json.dumps(parts))
    summary = summarise(parts)
    text = report(summary, args.data, args.n)
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "ranking.md").write_text(text)
    (args.out / "ranking.json").write_text(json.dumps({"summary": summary, "parts": parts}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
