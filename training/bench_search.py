"""Score against the picture search's budget: mean volume IoU per budget, beside the model without the
search, the bounding-box floor and the oracle (the best of the model's candidates and the search's
envelopes, chosen with the ground truth).

    python -m training.bench_search --data training/eval_oof --evaluations 0,10,20,60,120 \
        --out out/bench/search

The budget is a count of evaluations (reproducible on any machine); the seconds each budget took are
measured beside it, so the curve reads both ways. The model writes its candidates once per picture
(the same deterministic candidates serve every budget; ``--candidates`` keeps them in a file across
runs, as ``training.evaluate`` does). The search's own seconds give its rate (evaluations per
second), which maps a time budget to the evaluation count it buys on this machine. Writes
``report.md``, ``report.json`` and ``curve.png`` into ``--out``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

SECONDS = (1, 2, 5, 10)  # time budgets the report maps to evaluation counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.bench_search",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=Path("training/eval_oof"))
    parser.add_argument("--evaluations", default="0,10,20,60,120",
                        help="budgets in evaluations; 0 = no search (the model's winner, fitted)")
    parser.add_argument("--n", type=int, default=4)
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--names", default=None, help="comma-separated sample names (a subset)")
    parser.add_argument("--backend", default="auto")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--candidates", type=Path, default=None,
                        help="a JSON file of the model's candidates per picture (see training.evaluate)")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)

    from model_runtime.backends import load_backend
    from model_runtime.pipeline import GenerateRequest, Pipeline
    from model_runtime.sandbox import SandboxPool
    from training.candidate_cache import CachedBackend
    from training.evaluate import _safe_iou, bbox_baseline_iou, load_samples, truth_shape

    budgets = [int(b) for b in args.evaluations.split(",")]
    samples = load_samples(args.data, limit=args.limit)
    if args.names:
        samples = [s for s in samples if s.name in set(args.names.split(","))]
    backend = CachedBackend(load_backend(args.backend), args.candidates)
    rows: list[dict[str, Any]] = []
    with SandboxPool(workers=args.workers) as pool:
        pipeline = Pipeline(backend, pool)
        for sample in samples:
            truth, _ = truth_shape(sample, pool)
            row: dict[str, Any] = {"name": sample.name, "box": bbox_baseline_iou(truth), "runs": {}}
            oracle = 0.0
            for budget in budgets:
                request = GenerateRequest(image=sample.image, n=args.n, search=budget > 0,
                                          evaluations=budget, budget_s=None)
                start = time.perf_counter()
                result = pipeline.run(request)
                seconds = time.perf_counter() - start
                found = result.search
                row["runs"][str(budget)] = {
                    "iou": _safe_iou(result.exec_result.shape(), truth), "seconds": seconds,
                    "score": result.score, "source": found.best.source if found else "model",
                    "evaluations": found.evaluations if found else 0,
                    "search_seconds": found.seconds if found else 0.0,
                }
                oracle = max([oracle] + [_safe_iou(c.exec_result.shape(), truth)
                                         for c in result.candidates if c.valid])
                if found is not None and found.envelope is not None:
                    oracle = max(oracle, _safe_iou(found.envelope.exec_result.shape(), truth))
                oracle = max(oracle, row["runs"][str(budget)]["iou"])
            row["oracle"] = oracle
            rows.append(row)
            print(row["name"], {b: round(r["iou"], 3) for b, r in row["runs"].items()},
                  f"box {row['box']:.3f}", flush=True)
    backend.close()
    write(rows, budgets, args.out, args.data)
    return 0


def summarise(rows: list[dict[str, Any]], budgets: list[int]) -> dict[str, Any]:
    out: dict[str, Any] = {"samples": len(rows), "box_mean": statistics.fmean(r["box"] for r in rows),
                           "oracle_mean": statistics.fmean(r["oracle"] for r in rows), "budgets": {}}
    rates = [x["evaluations"] / x["search_seconds"] for r in rows for x in r["runs"].values()
             if x.get("search_seconds", 0) > 0 and x["evaluations"] > 0]
    out["evaluations_per_s"] = statistics.median(rates) if rates else None
    if out["evaluations_per_s"]:  # what a time budget buys here, at the measured rate
        out["seconds_to_evaluations"] = {str(t): round(t * out["evaluations_per_s"]) for t in SECONDS}
    for budget in budgets:
        runs = [r["runs"][str(budget)] for r in rows]
        out["budgets"][str(budget)] = {
            "iou_mean": statistics.fmean(x["iou"] for x in runs),
            "seconds_median": statistics.median(x["seconds"] for x in runs),
            "evaluations_mean": statistics.fmean(x["evaluations"] for x in runs),
            "search_seconds_median": statistics.median(x.get("search_seconds", 0.0) for x in runs),
            "beats_box": sum(x["iou"] > r["box"] for x, r in zip(runs, rows, strict=True)),
        }
    return out


def write(rows: list[dict[str, Any]], budgets: list[int], out: Path, data: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    summary = summarise(rows, budgets)
    report = json.dumps({"summary": summary, "rows": rows}, indent=1)
    (out / "report.json").write_text(report, encoding="utf-8")
    searched = [b for b in budgets if b > 0]
    fig, ax = plt.subplots(figsize=(6, 4))
    xs = [summary["budgets"][str(b)]["seconds_median"] for b in searched]
    ax.plot(xs, [summary["budgets"][str(b)]["iou_mean"] for b in searched], "o-", label="with the search")
    for b, x in zip(searched, xs, strict=True):
        ax.annotate(f"{b} ev.", (x, summary["budgets"][str(b)]["iou_mean"]), fontsize=8)
    if 0 in budgets:
        ax.axhline(summary["budgets"]["0"]["iou_mean"], color="grey", ls=":", label="model, no search")
    ax.axhline(summary["box_mean"], color="red", ls="--", label="bounding-box floor")
    ax.axhline(summary["oracle_mean"], color="green", ls="--", label="oracle")
    ax.set_xlabel("median seconds per picture (this machine, at the time)")
    ax.set_ylabel("mean volume IoU")
    ax.set_title(f"{data.name}: score against the search budget")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "curve.png", dpi=110)
    lines = [f"# Picture search: score against budget ({data.name}, {len(rows)} parts)", "",
             f"Bounding-box floor {summary['box_mean']:.3f}; oracle (best of the model's candidates and "
             f"the envelope, chosen with the ground truth) {summary['oracle_mean']:.3f}.", "",
             "| budget (evaluations) | mean IoU | beats its box | median s / picture | median search s "
             "| evaluations used |",
             "| --- | --- | --- | --- | --- | --- |"]
    for b in budgets:
        s = summary["budgets"][str(b)]
        label = "0 (no search: model + fitting)" if b == 0 else str(b)
        lines.append(f"| {label} | {s['iou_mean']:.3f} | {s['beats_box']}/{len(rows)} | "
                     f"{s['seconds_median']:.2f} | {s['search_seconds_median']:.2f} | "
                     f"{s['evaluations_mean']:.1f} |")
    if summary.get("evaluations_per_s"):
        mapping = ", ".join(f"{t} s ≈ {n} evaluations" for t, n in summary["seconds_to_evaluations"].items())
        lines += ["", f"Measured rate of the search here: {summary['evaluations_per_s']:.2f} evaluations/s "
                      f"(median over runs; one evaluation = one program run, rendered and compared). "
                      f"At that rate a time budget buys: {mapping}. The budget counts evaluations, so a "
                      "row's score does not depend on the machine's load; its seconds do."]
    lines += ["", "![curve](curve.png)", ""]
    (out / "report.md").write_text("\n".join(lines), encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
