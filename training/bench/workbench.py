"""End-to-end time in FreeCAD: from pressing "Capture 3D view" to the solid in the document.

One FreeCAD GUI session under Xvfb (the add-on laid out as the Addon Manager installs it) presses
Capture 3D view -> Generate -> OK ``--runs`` times. The workbench starts the runtime itself, so the
first press is cold (runtime start-up and model load included) and the others are warm.

    python -m training.bench.workbench --candidates 4         # the built-in model (backend auto)
    python -m training.bench.workbench --tiny                 # tiny test LLaVA: CadSnap's own overhead
    python -m training.bench.workbench --model DIR --backend hf --runs 5 --out out/bench

Needs a checkout of the repository (it drives training/bench/gui_flow.py), FreeCAD 0.20+, Xvfb.
Prints a table and writes ``workbench.md`` and ``workbench.json`` to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import platform
import socket
import statistics
import sys
import tempfile
from pathlib import Path

PHASES = ("capture_s", "generate_s", "insert_s", "total_s")
# The target the workbench is held to: Generate pressed -> the part in the tree (capture excluded).
TO_TREE = "generate_to_tree_s"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _tiny_model(folder: Path) -> Path:
    from training.tiny_models import BOX_PROGRAM, make_trained_tiny_llava

    print("training the tiny test LLaVA (about 30 s)…", flush=True)
    return make_trained_tiny_llava(folder / "tiny_llava", BOX_PROGRAM)


def run(model: Path | None, backend: str, runs: int, candidates: int, out: Path, tiny: bool = False) -> dict:
    from training.bench.freecad_harness import run_gui_flow

    with tempfile.TemporaryDirectory(prefix="cadsnap-bench-") as scratch:
        work = Path(scratch)
        if tiny:
            model, backend = _tiny_model(work), "hf"
        model = model.resolve() if model else None  # None: the runtime's built-in model
        prefs = {
            "runtime_url": f"http://127.0.0.1:{_free_port()}",
            "interpreter": sys.executable,
            "backend": backend,
            "model_path": str(model) if model else "",
            "candidates": candidates,
            "startup_timeout_s": 120.0,
            "job_timeout_s": 300.0,
        }
        result, output = run_gui_flow(work, prefs, repeats=runs, deadline_s=300, timeout_s=600)
    if not result.get("ok") or "Traceback" in output:
        raise SystemExit(f"the GUI flow failed:\n{json.dumps(result, indent=2)}\n{output[-4000:]}")
    presses = result["presses"]
    for press in presses:
        press[TO_TREE] = round(press["generate_s"] + press["insert_s"], 3)
    warm = presses[1:]
    machine = platform.machine(), f"{platform.system()} {platform.release()}", platform.python_version()
    report = {
        "what": "FreeCAD GUI: press Capture 3D view -> Generate -> OK -> solid inserted",
        "model": str(model) if model else "built-in (model_runtime/models)",
        "backend": backend,
        "candidates": candidates,
        "runs": runs,
        "machine": "{}, {}, Python {}".format(*machine),
        "cold": presses[0],
        "warm_median": {p: statistics.median(press[p] for press in warm) for p in (*PHASES, TO_TREE)}
        if warm else None,
        "presses": presses,
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "workbench.json").write_text(json.dumps(report, indent=2))
    (out / "workbench.md").write_text(_markdown(report))
    print(_markdown(report))
    return report


def _markdown(report: dict) -> str:
    lines = [
        "# Workbench end-to-end time",
        "",
        f"{report['what']}; backend `{report['backend']}`, {report['candidates']} candidate(s), "
        f"model `{Path(report['model']).name}`; {report['machine']}.",
        "",
        "| press | capture (s) | runtime + generate (s) | insert (s) | total (s) |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for number, press in enumerate(report["presses"], 1):
        kind = "cold (starts the runtime)" if number == 1 else "warm"
        lines.append(f"| {number}, {kind} | " + " | ".join(f"{press[p]:.2f}" for p in PHASES) + " |")
    if report["warm_median"]:
        medians = report["warm_median"]
        lines.append("| median of warm | " + " | ".join(f"{medians[p]:.2f}" for p in PHASES) + " |")
        lines += ["", "Generate pressed -> part in the tree, median of warm presses: "
                  f"**{medians[TO_TREE]:.2f} s**."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, help="model folder or GGUF (default: the built-in model)")
    parser.add_argument("--backend", default="auto", help="runtime backend (default: auto)")
    parser.add_argument("--tiny", action="store_true", help="a tiny test LLaVA trained on the spot (hf)")
    parser.add_argument("--runs", type=int, default=4, help="presses in one FreeCAD session (first is cold)")
    parser.add_argument("--candidates", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path("out/bench"))
    args = parser.parse_args(argv)
    run(args.model, args.backend, args.runs, args.candidates, args.out, tiny=args.tiny)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
