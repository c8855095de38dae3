"""The hand-written out-of-family evaluation set in ``training/eval_oof`` and its bookkeeping.

The parts there were written by hand in the styles people model, not by the data engine, and are
never trained on. This module keeps three files beside them up to date::

    python -m training.oof           # families.json, signatures.json, overview/gallery.png

- ``families.json``: each part's style (its name's category), for the evaluation's per-family table;
- ``signatures.json``: geometry signatures the data engine refuses (``training.synth.writer``);
- ``overview/gallery.png``: a contact sheet of the FreeCAD renders (``python -m
  training.freecad_renders --programs training/eval_oof --out training/eval_oof`` makes them), in a
  sub-folder because every PNG beside the parts is an evaluation picture.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from PIL import Image, ImageDraw

OOF_DIR = Path(__file__).resolve().parent / "eval_oof"
# Name prefix -> style; the first match wins, the rest is "misc".
STYLES = (
    (("enclosure", "round_box", "tube_end_cap", "keycap"), "enclosure"),
    (("loft",), "loft"),
    (("i_beam", "t_slot", "c_channel", "angle_profile", "rect_tube", "hat_profile", "heat_sink"), "profile"),
    (("ribbed", "corner_gusset", "motor_mount", "u_bolt", "wall_hook", "phone_stand"), "bracket"),
    (("knob",), "knob"),
    (("plate", "pcb_standoff"), "plate"),
    (("turned", "bottle", "weld_neck", "pipe_tee", "flanged_hex", "eccentric_cam"), "turned"),
)


def style_of(name: str) -> str:
    for prefixes, style in STYLES:
        if name.startswith(prefixes):
            return style
    return "misc"


def part_names(folder: Path = OOF_DIR) -> list[str]:
    return sorted(p.stem for p in folder.glob("*.py") if not p.stem.startswith("_"))


def signatures(folder: Path = OOF_DIR) -> dict[str, str]:
    """Each part's geometry signature (the data engine's de-duplication key)."""
    from training.synth.sample import execute, geometry_signature

    return {name: geometry_signature(execute((folder / f"{name}.py").read_text(encoding="utf-8")))
            for name in part_names(folder)}


def gallery(folder: Path = OOF_DIR, columns: int = 7, tile: int = 160) -> Image.Image:
    names = [n for n in part_names(folder) if (folder / f"{n}.png").exists()]
    caption = 14
    rows = -(-len(names) // columns)
    sheet = Image.new("RGB", (columns * tile, rows * (tile + caption)), "white")
    draw = ImageDraw.Draw(sheet)
    for i, name in enumerate(names):
        x, y = (i % columns) * tile, (i // columns) * (tile + caption)
        image = Image.open(folder / f"{name}.png").convert("RGB")
        sheet.paste(image.resize((tile, tile), Image.Resampling.LANCZOS), (x, y))
        draw.text((x + 3, y + tile), name[:26], fill=(20, 20, 120))
    return sheet


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.oof", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--folder", type=Path, default=OOF_DIR)
    args = parser.parse_args(argv)
    folder = args.folder
    names = part_names(folder)
    families = {name: style_of(name) for name in names}
    (folder / "families.json").write_text(json.dumps(families, indent=1, sort_keys=True) + "\n")
    found = signatures(folder)
    (folder / "signatures.json").write_text(json.dumps(sorted(set(found.values())), indent=1) + "\n")
    (folder / "overview").mkdir(exist_ok=True)
    gallery(folder).save(folder / "overview" / "gallery.png", optimize=True)
    missing = [n for n in names if not (folder / f"{n}.png").exists()]
    print(f"{len(names)} parts, {len(set(found.values()))} signatures"
          + (f"; not rendered yet: {', '.join(missing)}" if missing else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
