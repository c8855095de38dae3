"""Training programs from real parts: shape files (or CadQuery programs) rebuilt by ``parametrize``.

    bdw/bin/python training/bench/bd_warehouse_parts.py parts/   # bd_warehouse's own environment
    python -m training.synth.recognised --out data/recognised parts/*.step parts/*.stl

Each part is read and recognised in the sandbox (``model_runtime.shapes``), exactly as a user's file;
a rebuild whose volume IoU against the part reaches ``--min-iou`` is kept as ``NAME.py`` (the named
program, traced and parameterised like any CadSnap output) beside ``NAME.png`` (FreeCAD's reference
look), with ``programs.jsonl`` listing code, source and IoU. That folder is the evaluation layout
(``training.evaluate``) and a list of training programs written the way the runtime writes them.

``training/eval_oof`` is the out-of-family evaluation set: its parts are accepted here (``--eval-oof``)
to measure and to inspect, but programs made from them must not train a model that is then scored
on them.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m training.synth.recognised", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("inputs", nargs="*", type=Path, help="STEP/IGES/BREP/STL/OBJ/PLY/3MF files")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--eval-oof", action="store_true", help="add training/eval_oof (evaluation only!)")
    parser.add_argument("--min-iou", type=float, default=0.99)
    parser.add_argument("--size", type=int, default=224)
    args = parser.parse_args(argv)

    import cadquery as cq

    from model_runtime.commands.parametrize import parametrize
    from model_runtime.render import render
    from model_runtime.sandbox import SandboxError, SandboxPool
    from training.bench.parametrize import _export, oof_parts

    args.out.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="cadsnap-recognised-"))
    kept = 0
    with (
        SandboxPool(workers=1, timeout_s=120.0, memory_mb=4096, max_request_bytes=64 << 20) as pool,
        (args.out / "programs.jsonl").open("a", encoding="utf-8") as log,
    ):
        files: list[tuple[str, Path]] = [(p.stem, p) for p in args.inputs]
        named = oof_parts() if args.eval_oof else []
        for name, source in named:
            try:
                files.append((name, _export(pool, name, source, tmp)[0]))
            except Exception as exc:  # noqa: BLE001 - one part that does not export is skipped
                print(f"skip {name}: {exc}", file=sys.stderr)
        for name, path in files:
            try:
                out = parametrize(pool, path)
            except SandboxError as exc:
                print(f"skip {name}: {exc}", file=sys.stderr)
                continue
            if not out["ok"] or out["result"]["iou"] < args.min_iou:
                why = out["error"]["message"] if not out["ok"] else f"IoU {out['result']['iou']:.4f}"
                print(f"skip {name}: {why}", file=sys.stderr)
                continue
            import io

            (args.out / f"{name}.py").write_text(out["code"], encoding="utf-8")
            shape = cq.Shape.importBrep(io.BytesIO(out["exec"].brep.encode("utf-8")))
            render(shape, size=args.size).save(args.out / f"{name}.png")
            log.write(
                json.dumps(
                    {
                        "name": name,
                        "source": str(path.name),
                        "iou": out["result"]["iou"],
                        "features": out["result"]["features"],
                        "code": out["code"],
                    }
                )
                + "\n"
            )
            kept += 1
            print(f"kept {name}: IoU {out['result']['iou']:.5f}", file=sys.stderr)
    print(f"{kept} programs in {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
