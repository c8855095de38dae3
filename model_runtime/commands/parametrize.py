"""``parametrize``: a STEP/IGES/BREP file or an STL/OBJ/PLY/3MF mesh in, a readable CadQuery program
with named parameters out, checked by volume IoU against the input (issue 21).

The file is read and recognised in the sandbox (``model_runtime/shapes``); the program it gives is
then run there again and traced into the feature plan, so ``--fcstd`` writes the same PartDesign
Body with its Parameters sheet that ``generate`` does.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import subprocess
import sys
from pathlib import Path

from model_runtime.shapes.load import EXTENSIONS


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "parametrize",
        help="a solid (STEP, IGES, BREP) or mesh (STL, OBJ, PLY, 3MF) in, an editable CadQuery program out",
        description="Rebuild a shape file as a CadQuery program of sketches and features with named "
        "parameters, in the input's own coordinates. Prints the volume IoU of the rebuilt solid against "
        "the input. Files are read inside the sandbox.",
    )
    parser.add_argument(
        "input", type=Path, help="the shape file: " + ", ".join(sorted({e[1:] for e in EXTENSIONS}))
    )
    parser.add_argument("-o", "--output", type=Path, metavar="OUT.py", help="write the program here")
    parser.add_argument(
        "--fcstd", type=Path, metavar="OUT.FCStd", help="also a FreeCAD document with the Body"
    )
    parser.add_argument("--step", type=Path, metavar="OUT.step", help="also the rebuilt solid as STEP")
    parser.add_argument("--show-code", action="store_true", help="print the program")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds for reading and recognising")
    parser.set_defaults(run=run)


def parametrize(pool, path: Path, *, timeout_s: float = 120.0, formats=("brep",)) -> dict:
    """Recognise ``path`` in ``pool``'s sandbox, then run and trace the program there.

    Returns ``{"ok": True, "result": {...}, "exec": ExecResult, "code": named program}`` or
    ``{"ok": False, "error": {"code", "message"}}``. Raises SandboxError when a job crashed."""
    return parametrize_bytes(pool, path.name, path.read_bytes(), timeout_s=timeout_s, formats=formats)


def parametrize_bytes(pool, name: str, data: bytes, *, timeout_s: float = 120.0, formats=("brep",)) -> dict:
    """``parametrize`` for the content of a file called ``name`` (the server's and the tests' way in)."""
    from model_runtime.feature_plan.parameterise import parameterise
    from model_runtime.sandbox.errors import WorkerCrashed

    budget = min(20.0, 0.5 * timeout_s)
    try:
        reply = pool.run_shape(name, data, timeout_s=timeout_s, time_budget_s=budget)
    except WorkerCrashed:
        # OCC crashed the job process on one strategy (a trial fillet): once more without those
        # operations, so the other strategies still give a program
        reply = pool.run_shape(name, data, timeout_s=timeout_s, time_budget_s=budget, careful=True)
        if reply.get("ok"):
            reply["result"].setdefault("notes", []).append(
                "A trial edge blend crashed the reader; the part was rebuilt without trying blends."
            )
    if not reply.get("ok"):
        return reply
    result = reply["result"]
    res = pool.run(result["program"], timeout_s=60.0, formats=tuple(formats), feature_plan=True)
    plan = res.feature_plan
    code = result["program"]
    if plan and plan.get("parameters"):
        with contextlib.suppress(SyntaxError, ValueError, KeyError):
            code = parameterise(code, plan)
        if result.get("unit") == "in":
            from model_runtime.shapes.units import inch_names

            code = inch_names(code)
    return {"ok": True, "result": result, "exec": res, "code": code, "plan": plan}


def run(args: argparse.Namespace) -> int:
    from model_runtime.sandbox import SandboxError, SandboxPool

    if not args.input.is_file():
        print(f"error: no such file: {args.input}", file=sys.stderr)
        return 2
    if args.input.suffix.lower() not in EXTENSIONS:
        known = ", ".join(sorted({e[1:].upper() for e in EXTENSIONS}))
        print(
            f"error: '{args.input.name}' is not a shape file CadSnap reads (known: {known}).", file=sys.stderr
        )
        return 2
    if args.fcstd is not None:
        from model_runtime.feature_plan.freecad import find_freecadcmd

        if find_freecadcmd() is None:
            print(
                "error: --fcstd needs FreeCAD, and no freecadcmd was found: install FreeCAD 0.20 or newer "
                "(e.g. apt-get install freecad) or set CADSNAP_FREECADCMD",
                file=sys.stderr,
            )
            return 2
    formats = ["brep"] + (["step"] if args.step else [])
    size = args.input.stat().st_size
    try:
        with SandboxPool(
            workers=1,
            timeout_s=args.timeout,
            max_request_bytes=max(8 << 20, 2 * size + (1 << 20)),
            memory_mb=4096,
        ) as pool:
            out = parametrize(pool, args.input, timeout_s=args.timeout, formats=formats)
    except SandboxError as exc:
        print(f"error: CadSnap could not read '{args.input.name}': {exc}", file=sys.stderr)
        return 1
    if not out["ok"]:
        print(f"error: {out['error']['message']}", file=sys.stderr)
        if args.json:
            print(json.dumps(out, indent=2))
        return 1
    result, res, code = out["result"], out["exec"], out["code"]
    for note in result.get("notes", []):
        print(f"note: {note}", file=sys.stderr)
    plan = out["plan"] or {}
    n_params = len(plan.get("parameters") or [])
    print(
        f"rebuilt '{args.input.name}' ({result['kind']}) as {', '.join(_summary(result['features']))}; "
        f"{n_params} named parameters; volume IoU {result['iou']:.5f} against the input "
        f"(bounding box alone: {result['bbox_iou']:.3f}); {result['seconds']:.1f} s",
        file=sys.stderr,
    )
    if result["iou"] < 0.99:
        print(
            "note: the rebuild differs from the input; the residual features keep what was not recognised",
            file=sys.stderr,
        )
    if args.output is not None:
        args.output.write_text(code, encoding="utf-8")
        print(f"wrote {args.output}", file=sys.stderr)
    if args.step is not None:
        args.step.write_text(res.exports["step"], encoding="utf-8")
        print(f"wrote {args.step}", file=sys.stderr)
    if args.fcstd is not None:
        from model_runtime.feature_plan.freecad import write_fcstd

        try:
            is_body, why = write_fcstd(args.fcstd, code, res.brep, out["plan"], "")
        except (OSError, RuntimeError, subprocess.SubprocessError) as exc:
            print(f"error: FreeCAD could not write {args.fcstd}: {exc}", file=sys.stderr)
            return 1
        print(
            f"wrote {args.fcstd}: " + ("a PartDesign Body with named dimensions" if is_body else why),
            file=sys.stderr,
        )
    if args.show_code or args.output is None:
        print(code)
    if args.json:
        data = {k: v for k, v in result.items() if k != "program"}
        data["program"] = code
        data["feature_plan_status"] = plan.get("status")
        print(json.dumps(data, indent=2))
    return 0


def _summary(features: list[str]) -> list[str]:
    counts: dict[str, int] = {}
    for f in features:
        counts[f] = counts.get(f, 0) + 1
    return [f"{n} {k}{'s' if n > 1 else ''}" for k, n in counts.items()]
