"""Render CadQuery programs with real FreeCAD (0.20 or 1.x) for the domain-gap evaluation.

Each program runs in the sandbox; its solid crosses to FreeCAD as BREP text and is shown in a fresh
document; the isometric view is saved with ``ActiveView.saveImage`` (FreeCAD's own renderer, the
look a person's screenshot has). Output: a folder of ``NAME.png`` + ``NAME.py`` (DESIGN.md's
evaluation format) plus ``families.json`` naming each sample's family, ready for
``python -m training.evaluate --data OUT``.

    python -m training.freecad_renders --data DATASET_DIR --split test --n 50 --out OUT
    python -m training.freecad_renders --programs DIR_OF_PY --out OUT

FreeCAD runs once for the whole batch under Xvfb (``xvfb-run``), with a throw-away HOME so a
person's FreeCAD preferences (colours, background) never change the renders. FreeCAD swallows
exceptions and does not exit by itself: the driver prints a marker and exits hard, and any
``Traceback`` in its output is an error here.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

DONE_MARKER = "CADSNAP-FREECAD-RENDERS-DONE"
ITEM_FAILED = "CADSNAP-FREECAD-ITEM-FAILED"
BACKGROUNDS = ("White", "Current", "Black", "Transparent")
ZOOM_OUT = 1.25  # camera height after fitAll, relative: about the reference renders' free border

# Runs inside FreeCAD's own Python (stdlib + FreeCAD only). Reads the job file named in the env.
DRIVER = r'''
import json, os, sys
import FreeCAD, FreeCADGui, Part
try:
    from pivy import coin  # noqa: F401 - FreeCAD 1.x's getCameraNode() returns a pivy node only then
except ImportError:
    pass
# FreeCAD 1.x's GUI sends a script's print() to the Report view only: markers go to the terminal.
out = sys.__stdout__

job = json.load(open(os.environ["CADSNAP_FREECAD_JOB"], encoding="utf-8"))
done = []
for item in job["items"]:
    doc = FreeCAD.newDocument("render")
    try:
        shape = Part.Shape()
        shape.read(item["brep"])
        feature = doc.addObject("Part::Feature", "part")
        feature.Shape = shape
        doc.recompute()
        view = FreeCADGui.ActiveDocument.ActiveView
        view.viewIsometric()
        view.fitAll()
        camera = view.getCameraNode()  # fitAll can touch the border; leave a margin like a screenshot
        if hasattr(camera, "height"):
            camera.height.setValue(camera.height.getValue() * job["zoom_out"])
        view.saveImage(item["png"], job["size"], job["size"], job["background"])
        done.append(item["name"])
    except Exception as exc:  # one bad shape must not lose the batch; reported by name
        print("''' + ITEM_FAILED + r'''", item["name"], repr(exc), file=out, flush=True)
    FreeCAD.closeDocument(doc.Name)
json.dump(done, open(job["done"], "w"))
print("''' + DONE_MARKER + r'''", file=out, flush=True)
os._exit(0)
'''


class FreeCADRenderError(RuntimeError):
    """FreeCAD could not be started, crashed, or printed a traceback."""


@dataclass
class Program:
    name: str
    code: str
    family: str = "unknown"


def freecad_command() -> list[str]:
    """The command that starts FreeCAD's GUI off-screen: under xvfb-run, or on the current display."""
    freecad = shutil.which("freecad") or shutil.which("FreeCAD")
    if freecad is None:
        raise FreeCADRenderError("FreeCAD is not installed (no `freecad` on PATH): apt-get install freecad")
    if xvfb := shutil.which("xvfb-run"):
        return [xvfb, "-a", "-s", "-screen 0 1280x1024x24", freecad]
    if os.environ.get("DISPLAY"):
        return [freecad]
    raise FreeCADRenderError("no display and no xvfb-run: apt-get install xvfb")


def run_freecad_batch(
    items: list[dict], size: int, background: str, timeout_s: float, zoom_out: float = ZOOM_OUT
) -> set[str]:
    """Render ``items`` ({name, brep, png}) in one FreeCAD session; return the names it rendered."""
    if background not in BACKGROUNDS:
        raise ValueError(f"background must be one of {BACKGROUNDS}, not {background!r}")
    with tempfile.TemporaryDirectory(prefix="cadsnap-freecad-") as tmp:
        tmp_path = Path(tmp)
        (tmp_path / "home").mkdir()
        driver = tmp_path / "render_driver.py"
        driver.write_text(DRIVER, encoding="utf-8")
        job = {"items": items, "size": size, "background": background, "zoom_out": zoom_out,
               "done": str(tmp_path / "done.json")}
        (tmp_path / "job.json").write_text(json.dumps(job), encoding="utf-8")
        env = dict(
            os.environ,
            HOME=str(tmp_path / "home"),
            CADSNAP_FREECAD_JOB=str(tmp_path / "job.json"),
            QTWEBENGINE_CHROMIUM_FLAGS="--no-sandbox",  # the Start page's web view refuses root otherwise
        )
        proc = subprocess.Popen(
            [*freecad_command(), str(driver)], cwd=tmp, env=env, text=True,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
        )
        try:
            output, _ = proc.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # FreeCAD and its Xvfb, which we started
            output, _ = proc.communicate()
            message = f"FreeCAD did not finish in {timeout_s:.0f} s:\n{output[-2000:]}"
            raise FreeCADRenderError(message) from None
        if "Traceback" in output or DONE_MARKER not in output:
            raise FreeCADRenderError(f"FreeCAD failed (exit {proc.returncode}):\n{output[-4000:]}")
        for line in output.splitlines():
            if line.startswith(ITEM_FAILED):
                print(line, file=sys.stderr)
        return set(json.loads((tmp_path / "done.json").read_text()))


def render_programs(
    programs: list[Program],
    out_dir: str | Path,
    size: int = 448,
    background: str = "White",
    timeout_s: float | None = None,
) -> list[str]:
    """Write ``NAME.png`` (FreeCAD render) + ``NAME.py`` + ``families.json``; return the names written.

    Programs that do not give a valid solid in the sandbox are skipped (and listed on stderr).
    """
    from model_runtime.sandbox import SandboxError, SandboxPool

    out_dir = Path(out_dir).resolve()  # FreeCAD runs in its own working folder
    out_dir.mkdir(parents=True, exist_ok=True)
    items, failed = [], []
    with tempfile.TemporaryDirectory(prefix="cadsnap-breps-") as tmp, SandboxPool(workers=1) as pool:
        for program in tqdm(programs, desc="solids", unit="prog"):
            try:
                brep = pool.run(program.code, formats=("brep",)).brep
            except SandboxError as exc:
                failed.append(f"{program.name}: {exc.code}: {exc.message}")
                continue
            brep_path = Path(tmp) / f"{program.name}.brep"
            brep_path.write_text(brep, encoding="utf-8")
            png_path = out_dir / f"{program.name}.png"
            items.append({"name": program.name, "brep": str(brep_path), "png": str(png_path)})
        if items:
            print(f"rendering {len(items)} solids in FreeCAD ...", file=sys.stderr)
            done = run_freecad_batch(items, size, background, timeout_s or 60 + 5 * len(items))
        else:
            done = set()
    by_name = {p.name: p for p in programs}
    names = [item["name"] for item in items if item["name"] in done]
    for name in names:
        (out_dir / f"{name}.py").write_text(by_name[name].code, encoding="utf-8")
    families_path = out_dir / "families.json"
    families = json.loads(families_path.read_text()) if families_path.exists() else {}
    families.update({name: by_name[name].family for name in names})
    families_path.write_text(json.dumps(families, indent=1, sort_keys=True), encoding="utf-8")
    failed += [f"{item['name']}: FreeCAD did not render it (see its FreeCAD error above)"
               for item in items if item["name"] not in done]
    for line in failed:
        print(f"skipped {line}", file=sys.stderr)
    return names


def programs_from_folder(folder: Path) -> list[Program]:
    return [Program(p.stem, p.read_text(encoding="utf-8")) for p in sorted(folder.glob("*.py"))]


def programs_from_dataset(data_dir: Path, split: str, n: int | None) -> list[Program]:
    from training.synth.dataset import load_split

    rows = load_split(data_dir, split)
    if n is not None:
        rows = rows.select(range(min(n, len(rows))))
    columns = [c for c in ("code", "family", "seed") if c in rows.column_names]
    return [
        Program(f"{split}_{i:05d}_{row.get('seed', i)}", row["code"], row.get("family", "unknown"))
        for i, row in enumerate(rows.select_columns(columns))
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m training.freecad_renders", description=__doc__.split("\n")[0]
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--data", type=Path, help="a CadSnap dataset folder (training.synth output)")
    source.add_argument("--programs", type=Path, help="a folder of NAME.py CadQuery programs")
    parser.add_argument("--split", default="test", help="dataset split to take programs from (default test)")
    parser.add_argument("--n", type=int, default=None, help="at most this many programs")
    parser.add_argument("--out", type=Path, required=True, help="output folder for NAME.png + NAME.py")
    parser.add_argument("--size", type=int, default=448, help="image width and height in pixels")
    parser.add_argument("--background", default="White", choices=BACKGROUNDS,
                        help="saveImage background: White (as the workbench captures) or Current (gradient)")
    args = parser.parse_args(argv)
    if args.data is not None:
        programs = programs_from_dataset(args.data, args.split, args.n)
    else:
        programs = programs_from_folder(args.programs)[: args.n]
    if not programs:
        parser.error("no programs found")
    try:
        names = render_programs(programs, args.out, size=args.size, background=args.background)
    except FreeCADRenderError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"{len(names)} of {len(programs)} programs rendered into {args.out}")
    return 0 if names else 1


if __name__ == "__main__":
    sys.exit(main())
