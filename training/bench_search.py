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
    parser.add_argument("--seconds", default=None,
                        help="job budgets in seconds instead (e.g. 1,2,5,10): the user's cap on the whole "
                             "picture -> part, the model's time included (no --candidates), evaluations "
                             "unlimited. Load-dependent: run it on a quiet machine")
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

    timed = args.seconds is not None
    budgets = ([f"{float(b):g}s" for b in args.seconds.split(",")] if timed
               else [str(int(b)) for b in args.evaluations.split(",")])
    samples = load_samples(args.data, limit=args.limit)
    if args.names:
        samples = [s for s in samples if s.name in set(args.names.split(","))]
    # a timed budget counts the model's own seconds, so the model really runs
    backend = load_backend(args.backend)
    if not timed:
        backend = CachedBackend(backend, args.candidates)
    rows: list[dict[str, Any]] = []
    with SandboxPool(workers=args.workers) as pool:
        pipeline = Pipeline(backend, pool)
        if timed and samples:  # warm: the first job loads the model and starts the workers
            pipeline.run(GenerateRequest(image=samples[0].image, n=args.n))
        for sample in samples:
            truth, _ = truth_shape(sample, pool)
            row: dict[str, Any] = {"name": sample.name, "box": bbox_baseline_iou(truth), "runs": {}}
            oracle = 0.0
            for budget in budgets:
                if timed:
                    request = GenerateRequest(image=sample.image, n=args.n, evaluations=10_000,
                                              budget_s=float(budget[:-1]))
                else:
                    request = GenerateRequest(image=sample.image, n=args.n, search=budget != "0",
                                              evaluations=int(budget), budget_s=None)
                start = time.perf_counter()
                result = pipeline.run(request)
                seconds = time.perf_counter() - start
                found = result.search
                row["runs"][budget] = {
                    "iou": _safe_iou(result.exec_result.shape(), truth), "seconds": seconds,
                    "score": result.score, "source": found.best.source if found else "model",
                    "evaluations": found.evaluations if found else 0,
                    "search_seconds": found.seconds if found else 0.0,
                }
                oracle = max([oracle] + [_safe_iou(c.exec_result.shape(), truth)
                                         for c in result.candidates if c.valid])
                if found is not None and found.envelope is not None:
                    oracle = max(oracle, _safe_iou(found.envelope.exec_result.shape(), truth))
                oracle = max(oracle, row["runs"][budget]["iou"])
            row["oracle"] = oracle
            rows.append(row)
            print(row["name"], {b: round(r["iou"], 3) for b, r in row["runs"].items()},
                  f"box {row['box']:.3f}", flush=True)
    backend.close()
    write(rows, budgets, args.out, args.data)
    return 0


def summarise(rows: list[dict[str, Any]], budgets: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {"samples": len(rows), "box_mean": statistics.fmean(r["box"] for r in rows),
                           "oracle_mean": statistics.fmean(r["oracle"] for r in rows), "budgets": {}}
    rates = [x["evaluations"] / x["search_seconds"] for r in rows for x in r["runs"].values()
             if x.get("search_seconds", 0) > 0 and x["evaluations"] > 0]
    out["evaluations_per_s"] = statistics.median(rates) if rates else None
    if out["evaluations_per_s"]:  # what a time budget buys here, at the measured rate
        out["seconds_to_evaluations"] = {str(t): round(t * out["evaluations_per_s"]) for t in SECONDS}
    for budget in budgets:
        runs = [r["runs"][budget] for r in rows]
        out["budgets"][budget] = {
            "iou_mean": statistics.fmean(x["iou"] for x in runs),
            "seconds_median": statistics.median(x["seconds"] for x in runs),
            "evaluations_mean": statistics.fmean(x["evaluations"] for x in runs),
            "search_seconds_median": statistics.median(x.get("search_seconds", 0.0) for x in runs),
            "beats_box": sum(x["iou"] > r["box"] for x, r in zip(runs, rows, strict=True)),
        }
    return out


def write(rows: list[dict[str, Any]], budgets: list[str], out: Path, data: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    summary = summarise(rows, budgets)
    report = json.dumps({"summary": summary, "rows": rows}, indent=1)
    (out / "report.json").write_text(report, encoding="utf-8")
    timed = any(b.endswith("s") for b in budgets)
    searched = [b for b in budgets if b != "0"]
    per = summary["budgets"]
    fig, ax = plt.subplots(figsize=(6, 4))
    xs = [float(b[:-1]) if timed else per[b]["seconds_median"] for b in searched]
    ax.plot(xs, [per[b]["iou_mean"] for b in searched], "o-", label="with the search")
    for b, x in zip(searched, xs, strict=True):
        note = f"{per[b]['evaluations_mean']:.0f} ev." if timed else f"{b} ev."
        ax.annotate(note, (x, per[b]["iou_mean"]), fontsize=8)
    if "0" in budgets:
        ax.axhline(per["0"]["iou_mean"], color="grey", ls=":", label="model, no search")
    ax.axhline(summary["box_mean"], color="red", ls="--", label="bounding-box floor")
    ax.axhline(summary["oracle_mean"], color="green", ls="--", label="oracle")
    ax.set_xlabel("job budget, seconds (picture -> part, model included)" if timed
                  else "median seconds per picture (this machine, at the time)")
    ax.set_ylabel("mean volume IoU")
    ax.set_title(f"{data.name}: score against the search budget")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "curve.png", dpi=110)
    unit = "job budget (seconds)" if timed else "budget (evaluations)"
    lines = [f"# Picture search: score against budget ({data.name}, {len(rows)} parts)", "",
             f"Bounding-box floor {summary['box_mean']:.3f}; oracle (best of the model's candidates and "
             f"the envelope, chosen with the ground truth) {summary['oracle_mean']:.3f}.", "",
             f"| {unit} | mean IoU | beats its box | median s / picture | median search s "
             "| evaluations used (mean) |",
             "| --- | --- | --- | --- | --- | --- |"]
    for b in budgets:
        row = per[b]
        label = "0 (no search: model + fitting)" if b == "0" else b
        lines.append(f"| {label} | {row['iou_mean']:.3f} | {row['beats_box']}/{len(rows)} | "
                     f"{row['seconds_median']:.2f} | {row['search_seconds_median']:.2f} | "
                     f"{row['evaluations_mean']:.1f} |")
    if timed:
        lines += ["", "Each job ran with the user's cap in seconds on the whole picture -> part (the model "
                      "writing its candidates included) and no cap on evaluations, so these rows depend on "
                      "the machine and its load at the time; the evaluation counts say what each cap bought."]
    elif summary.get("evaluations_per_s"):
        mapping = ", ".join(f"{t} s ≈ {n} evaluations" for t, n in summary["seconds_to_evaluations"].items())
        lines += ["", f"Measured rate of the search here: {summary['evaluations_per_s']:.2f} evaluations/s "
                      f"(median over runs; one evaluation = one program run, rendered and compared). "
                      f"At that rate seconds of search buy: {mapping}. The budget counts evaluations, so a "
                      "row's score does not depend on the machine's load; its seconds do."]
    lines += ["", "![curve](curve.png)", ""]
    (out / "report.md").write_text("\n".join(lines), encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
