"""``python -m model_runtime exec part.py -o part.step``: run a CadQuery file in the sandbox, export it.

``-o part.FCStd`` writes the FreeCAD document Generate inserts: the program traced into a feature plan
and built as a PartDesign Body with its Parameters spreadsheet (the workbench's own builder, run by
``freecadcmd``), or the solid with its source when the program has no faithful feature tree."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from model_runtime.sandbox import SandboxError

FORMAT_BY_SUFFIX = {".step": "step", ".stp": "step", ".stl": "stl", ".brep": "brep", ".brp": "brep"}
FCSTD_SUFFIX = ".fcstd"  # a FreeCAD document with the feature tree (needs FreeCAD's freecadcmd)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "exec",
        help="run a CadQuery file in the sandbox and export its solid (STEP, STL, BREP)",
        description="Run CadQuery code the way the runtime runs generated code: static policy, a "
        "sandboxed worker, time and memory limits. The code must bind one solid to `result`. Prints "
        "the solid's volume, bounding box and face count, and writes each -o file (format from its "
        "suffix: .step/.stp, .stl, .brep, or .FCStd for a FreeCAD document holding the part as a "
        "PartDesign Body with named dimensions, built as Generate builds it; needs FreeCAD).",
        epilog="example: python -m model_runtime exec part.py -o part.step -o part.FCStd",
    )
    parser.add_argument("file", help="CadQuery source file, or - to read it from stdin")
    parser.add_argument(
        "-o",
        "--output",
        action="append",
        default=[],
        metavar="PATH",
        help="write the solid here; repeat for several formats",
    )
    parser.add_argument(
        "--timeout", type=float, default=30.0, metavar="S", help="wall-clock limit in seconds (default 30)"
    )
    parser.add_argument(
        "--memory-mb",
        type=int,
        default=2048,
        metavar="MB",
        help="memory the code may use on top of a warm worker (default 2048)",
    )
    parser.add_argument("--json", action="store_true", help="print the result (or error) as JSON")
    parser.set_defaults(run=run)


def _write_atomic(path: Path, content: str | bytes) -> None:
    """Write beside the target and rename, so a failure never leaves half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(content.encode("utf-8") if isinstance(content, str) else content)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _report_error(exc: SandboxError, as_json: bool) -> int:
    if as_json:
        print(json.dumps(exc.to_dict(), indent=2))
    else:
        where = f" at line {exc.line}" if exc.line is not None else ""
        print(f"error ({exc.code}){where}: {exc.message}", file=sys.stderr)
    return 1


def run(args: argparse.Namespace) -> int:
    outputs = [Path(p) for p in args.output]
    documents = [p for p in outputs if p.suffix.lower() == FCSTD_SUFFIX]
    outputs = [p for p in outputs if p not in documents]
    bad = [str(p) for p in outputs if p.suffix.lower() not in FORMAT_BY_SUFFIX]
    if bad:
        print(f"error: unknown output format for {', '.join(bad)}; use .step, .stl, .brep or .FCStd",
              file=sys.stderr)
        return 2
    if documents:
        from model_runtime.feature_plan.freecad import find_freecadcmd

        if find_freecadcmd() is None:  # say so before paying for a worker
            print("error: .FCStd needs FreeCAD, and no freecadcmd was found: install FreeCAD 0.20 or newer "
                  "(e.g. apt-get install freecad) or set CADSNAP_FREECADCMD", file=sys.stderr)
            return 2
    try:
        code = sys.stdin.read() if args.file == "-" else Path(args.file).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        print(f"error: cannot read {args.file}: {exc}", file=sys.stderr)
        return 2

    from model_runtime.sandbox import SandboxError, SandboxPool, check_policy

    try:
        check_policy(code)  # refuse before paying for a worker's start-up
    except SandboxError as exc:
        return _report_error(exc, args.json)
    formats = tuple(dict.fromkeys(FORMAT_BY_SUFFIX[p.suffix.lower()] for p in outputs)) or ("brep",)
    if documents:
        formats = tuple(dict.fromkeys((*formats, "brep")))
    try:
        with SandboxPool(workers=1, timeout_s=args.timeout, memory_mb=args.memory_mb) as pool:
            result = pool.run(code, formats=formats, feature_plan=bool(documents))
            named, named_result = (code, result)
            if documents:  # the program as Generate keeps it on the part: its dimensions named
                from model_runtime.feature_plan.parameterise import named_run

                named, named_result = named_run(
                    lambda program: pool.run(program, formats=formats, feature_plan=True), code, result)
    except SandboxError as exc:
        return _report_error(exc, args.json)
    for path in outputs:
        _write_atomic(path, result.exports[FORMAT_BY_SUFFIX[path.suffix.lower()]])
    trees = []
    for path in documents:
        from model_runtime.feature_plan.freecad import write_fcstd

        try:
            is_body, why = write_fcstd(path, named, named_result.brep, named_result.feature_plan,
                                       name=path.stem)
        except (OSError, RuntimeError, subprocess.SubprocessError) as exc:
            print(f"error: FreeCAD could not write {path}: {exc}", file=sys.stderr)
            return 1
        trees.append({"path": str(path), "body": is_body, "message": why})
    outputs += documents
    if args.json:
        data = result.to_dict()
        data.pop("brep")
        data["exports"] = sorted(data["exports"])
        data["written"] = [str(p) for p in outputs]
        data["documents"] = trees
        print(json.dumps(data, indent=2))
        return 0
    x0, y0, z0, x1, y1, z1 = result.bbox
    if result.stdout:
        sys.stdout.write(result.stdout)
    print(f"volume   {result.volume:.6g} mm³")
    print(
        f"size     {x1 - x0:.4g} x {y1 - y0:.4g} x {z1 - z0:.4g} mm "
        f"(from ({x0:.4g}, {y0:.4g}, {z0:.4g}) to ({x1:.4g}, {y1:.4g}, {z1:.4g}))"
    )
    fused = f"   (fused from {result.n_solids} solids)" if result.n_solids > 1 else ""
    print(f"faces    {result.n_faces}{fused}")
    print(f"time     {result.elapsed_s * 1000:.0f} ms")
    for path in outputs:
        tree = next((t for t in trees if t["path"] == str(path)), None)
        said = "" if tree is None else (": a PartDesign Body with named dimensions" if tree["body"]
                                        else f": {tree['message']}")
        print(f"wrote    {path}{said}")
    return 0

