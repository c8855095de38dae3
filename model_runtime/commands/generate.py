"""``python -m model_runtime generate IMAGE``: a picture in, the best CadQuery program and a solid out."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

_FORMATS = {".step": "step", ".stp": "step", ".stl": "stl", ".brep": "brep", ".brp": "brep"}


def register(subparsers: argparse._SubParsersAction) -> None:
    from model_runtime.picture.search import DEFAULT_EVALUATIONS
    from model_runtime.picture.views import VIEW_NAMES

    parser = subparsers.add_parser(
        "generate",
        help="picture in, CadQuery code and solid out",
        description="Ask the model for N candidate programs, run each in the sandbox, rank them by how "
        "much a render looks like the picture, and keep the best.",
        epilog="Without --model, the gguf backend uses the built-in model or one in the user cache; "
        "the message says how to get one when there is none.",
    )
    parser.add_argument("image", type=Path, help="PNG, JPEG, WebP or BMP picture of the part")
    parser.add_argument("-o", "--output", type=Path, help="write the solid: .step, .stl or .brep")
    parser.add_argument("--code-out", type=Path, help="write the program to this .py file")
    parser.add_argument(
        "--fcstd", type=Path, metavar="PATH",
        help="write a FreeCAD document holding the part as a PartDesign Body (constrained sketches, "
        "named dimensions), or as a solid with its source when a step has no feature; needs FreeCAD",
    )
    parser.add_argument("--show-code", action="store_true", help="print the program")
    parser.add_argument(
        "--json", action="store_true", help="print the full result (candidates, scores) as JSON"
    )
    parser.add_argument(
        "--n", type=int, default=4, help="candidates to draw: greedy, then sampled (default 4)"
    )
    parser.add_argument("--instruction", help="extra words for the model, e.g. 'the holes are M6'")
    parser.add_argument(
        "--target-size", type=float, metavar="MM", help="scale so the largest dimension is MM"
    )
    parser.add_argument(
        "--no-frame", dest="frame", action="store_false",
        help="give the model the picture as it is (padded to a square), not re-framed around the part",
    )
    parser.add_argument(
        "--no-refine", dest="refine", action="store_false",
        help="keep the model's numbers as they are; by default the winner's dimensions are fitted "
        "to the picture (render, compare, adjust: about 1-2 s)",
    )
    search = parser.add_argument_group("picture search")
    search.add_argument(
        "--budget", type=float, default=5.0, metavar="SECONDS",
        help="cap on the whole picture -> part time (default 5 s); Ctrl-C stops the search and keeps the "
        "best part so far",
    )
    search.add_argument(
        "--evaluations", type=int, default=None, metavar="N",
        help="the search's budget as a count of renders compared with the picture (reproducible on any "
        f"machine; default {DEFAULT_EVALUATIONS}, what the 5 s cap leaves the search on a quiet 2-core "
        "machine); with --budget 0 the count alone limits it",
    )
    search.add_argument(
        "--view", choices=VIEW_NAMES, default=None,
        help="the view the picture shows (FreeCAD's standard views); by default it is read from the picture: "
        "the isometric view, or a straight view taken as front (one picture cannot tell front from top or "
        "right), and a picture turned in its plane is set upright; the verdict line says which",
    )
    search.add_argument(
        "--no-search", dest="search", action="store_false",
        help="no picture search: the model's best candidate, its numbers fitted (unless --no-refine)",
    )
    gen = parser.add_argument_group("model")
    gen.add_argument("--backend", default="auto", choices=("auto", "hf", "gguf", "remote"))
    gen.add_argument("--model", help="GGUF file or folder, or an HF LLaVA folder / cached Hub id")
    gen.add_argument("--mmproj", help="the GGUF model's mmproj file (found beside --model if omitted)")
    gen.add_argument("--adapter", help="a LoRA adapter folder (hf backend)")
    gen.add_argument("--base-url", help="OpenAI-compatible server, e.g. http://host:8000/v1 (remote)")
    gen.add_argument("--remote-model", help="model name to ask the remote server for")
    gen.add_argument("--threads", type=int, help="CPU threads (gguf; default: llama.cpp's choice)")
    gen.add_argument("--n-ctx", type=int, default=2048, help="context length (gguf; default 2048)")
    gen.add_argument("--max-new-tokens", type=int, default=512)
    gen.add_argument("--temperature", type=float, default=0.7, help="for the sampled candidates")
    gen.add_argument("--seed", type=int, default=0)
    gen.add_argument("--workers", type=int, default=2, help="sandbox worker processes (default 2)")
    parser.set_defaults(run=run)


def _run_stoppable(pipeline, request, on_event):
    """Run the pipeline on a thread so that Ctrl-C stops the search and keeps its best so far."""
    import threading

    cancel = threading.Event()
    outcome: dict = {}

    def work() -> None:
        try:
            outcome["result"] = pipeline.run(request, on_event=on_event, cancel=cancel)
        except BaseException as exc:  # noqa: BLE001 - handed to the main thread
            outcome["error"] = exc

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    while thread.is_alive():
        try:
            thread.join(0.2)
        except KeyboardInterrupt:
            print("\nstopping: keeping the best part so far (Ctrl-C again to quit)", file=sys.stderr)
            cancel.set()
            thread.join()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["result"]


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from model_runtime import protocol
    from model_runtime.backends import BackendError, load_backend
    from model_runtime.pipeline import GenerateRequest, Pipeline, PipelineError
    from model_runtime.sandbox import SandboxPool

    formats = ["brep"]
    if args.output is not None:
        fmt = _FORMATS.get(args.output.suffix.lower())
        if fmt is None:
            print(f"error: cannot write {args.output.suffix!r}; use .step, .stl or .brep", file=sys.stderr)
            return 2
        formats = list(dict.fromkeys(["brep", fmt]))
    if not args.image.is_file():
        print(f"error: no such image: {args.image}", file=sys.stderr)
        return 2
    if args.fcstd is not None:  # feature tree (issue 15): say so before the model loads, not after
        from model_runtime.feature_plan.freecad import find_freecadcmd

        if find_freecadcmd() is None:
            print("error: --fcstd needs FreeCAD, and no freecadcmd was found: install FreeCAD 0.20 or newer "
                  "(e.g. apt-get install freecad) or set CADSNAP_FREECADCMD; -o writes STEP without it",
                  file=sys.stderr)
            return 2
    try:
        request = GenerateRequest(
            image=args.image, instruction=args.instruction, n=args.n, target_size_mm=args.target_size,
            max_new_tokens=args.max_new_tokens, temperature=args.temperature, seed=args.seed,
            formats=tuple(formats), frame=args.frame, refine=args.refine, search=args.search,
            budget_s=args.budget if args.budget and args.budget > 0 else None, evaluations=args.evaluations,
            view=args.view,
        )  # fmt: skip
    except PipelineError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 2

    bar = tqdm(
        total=100, desc="loading model", unit="%", bar_format="{desc}: {percentage:3.0f}%|{bar}| {elapsed}"
    )
    try:
        backend = load_backend(
            args.backend, model=args.model, mmproj=args.mmproj, adapter=args.adapter, base_url=args.base_url,
            remote_model=args.remote_model, n_ctx=args.n_ctx, n_threads=args.threads,
        )  # fmt: skip
    except BackendError as exc:
        bar.close()
        print(f"error: {exc.message}", file=sys.stderr)
        return 3 if exc.code == protocol.ERROR_NO_BACKEND else 1
    tokens = [0]

    def on_event(event: dict) -> None:
        if event["type"] == protocol.EVENT_STATUS:
            bar.set_description_str(event["stage"])
            bar.n = round(100 * event["progress"])
            bar.refresh()
        elif event["type"] == protocol.EVENT_TOKEN:
            tokens[0] += 1
            bar.set_postfix_str(f"{tokens[0]} tokens", refresh=False)

    try:
        with SandboxPool(workers=args.workers) as pool:
            result = _run_stoppable(Pipeline(backend, pool), request, on_event)
    except PipelineError as exc:
        bar.close()
        print(f"error ({exc.code}): {exc.message}", file=sys.stderr)
        if args.json:
            print(json.dumps(exc.to_dict(), indent=2))
        return 1
    finally:
        backend.close()
    bar.close()

    best = result.best
    print(
        f"best of {len(result.candidates)}: candidate {best.index} (score {best.score:.3f}), "
        f"{sum(c.valid for c in result.candidates)} valid; volume {result.exec_result.volume:.1f} mm3"
        + (f"; scaled x{result.scale:.4g}" if result.scale else ""),
        file=sys.stderr,
    )
    if result.search is not None:
        found = result.search
        floor = (f"; its envelope ({found.envelope.source}) scores {found.envelope.score:.3f}"
                 if found.envelope is not None else "")
        print(
            f"picture search: {found.best.source} scores {found.best.score:.3f}{floor} "
            f"({found.evaluations} evaluations, {found.seconds:.1f} s, stopped: {found.stopped})",
            file=sys.stderr,
        )
    if result.instruction is not None:
        print(f"instruction: {result.instruction['message']}", file=sys.stderr)
    if result.verdict is not None:
        print(("warning: " if result.verdict["guess"] else "") + result.verdict["message"], file=sys.stderr)
    if result.refinement is not None:
        fit = result.refinement
        print(
            f"dimensions fitted to the picture: {fit.changed} changed, score {best.score:.3f} -> "
            f"{result.score:.3f} ({fit.evaluations} tries, {fit.seconds:.1f} s)",
            file=sys.stderr,
        )
    if args.output is not None:
        content = result.exec_result.exports[formats[-1]]
        args.output.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
        print(f"wrote {args.output}", file=sys.stderr)
    code = result.code  # opens with the named dimensions the FreeCAD tree uses, when the plan maps
    plan = result.exec_result.feature_plan  # traced in the sandbox by the pipeline's final run
    if args.fcstd is not None:
        from model_runtime.feature_plan.freecad import write_fcstd

        try:
            is_body, why = write_fcstd(args.fcstd, code, result.exec_result.brep, plan, str(args.image))
        except (OSError, RuntimeError, subprocess.SubprocessError) as exc:
            print(f"error: FreeCAD could not write {args.fcstd}: {exc}", file=sys.stderr)
            return 1
        print(f"wrote {args.fcstd}: " + ("a PartDesign Body with named dimensions" if is_body else why),
              file=sys.stderr)
    if args.code_out is not None:
        args.code_out.write_text(code, encoding="utf-8")
    if args.show_code:
        print(code)
    if args.json:
        data = result.to_dict()
        data["result"].pop("brep", None)
        data["result"].pop("exports", None)
        print(json.dumps(data, indent=2))
    return 0
