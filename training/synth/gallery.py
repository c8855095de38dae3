"""Pictures of a written dataset: a contact sheet of random samples and a per-operation coverage chart."""

from __future__ import annotations

import io
import json
import random
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw, ImageFont

from training.synth.sample import SPLITS

CAPTION_LINES = 2


def _first_code_line(code: str) -> str:
    """The first line after the import, e.g. ``result = cq.Workplane("XY").box(80, 60, 8)``."""
    lines = [ln.strip() for ln in code.splitlines() if ln.strip() and not ln.startswith("import ")]
    if not lines:
        return ""
    if lines[0].endswith("(") and len(lines) > 2:  # a multi-line chain: show its first call
        return f"{lines[0][:-1]}{lines[1]}{lines[2]}"
    return lines[0]


def _font(size: int) -> Any:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has one bitmap size only
        return ImageFont.load_default()


def contact_sheet(rows: list[dict[str, Any]], columns: int = 6, tile: int = 224) -> Image.Image:
    """Tiles of image + family + first code line; ``rows`` are dataset rows (image as PIL or bytes)."""
    font_size = max(9, tile // 17)
    caption_h = (font_size + 3) * (CAPTION_LINES + 1) + 4
    count = len(rows)
    lines = max(1, -(-count // columns))
    sheet = Image.new("RGB", (columns * tile, lines * (tile + caption_h)), "white")
    draw = ImageDraw.Draw(sheet)
    font, bold = _font(font_size), _font(font_size + 1)
    chars = int(tile / (font_size * 0.55))
    for i, row in enumerate(rows):
        image = row["image"]
        if isinstance(image, dict):
            image = Image.open(io.BytesIO(image["bytes"]))
        x, y = (i % columns) * tile, (i // columns) * (tile + caption_h)
        sheet.paste(image.convert("RGB").resize((tile, tile)), (x, y))
        draw.text((x + 3, y + tile + 2), row["family"], fill=(20, 20, 120), font=bold)
        code = _first_code_line(row["code"])
        for k in range(CAPTION_LINES):
            part = code[k * chars:(k + 1) * chars]
            draw.text((x + 3, y + tile + 4 + (font_size + 3) * (k + 1)), part, fill=(30, 30, 30), font=font)
    return sheet


def coverage_chart(manifest: dict[str, Any], path: Path) -> None:
    """Operations x uses per program (a heatmap of program counts), and samples per family.

    Datasets written before per-program counts existed get one column: programs using each operation.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    histogram = manifest.get("operation_counts") or {
        op: {"1": n} for op, n in manifest["operations"].items()}
    fams = manifest["families"]
    total = max(1, manifest["samples"])
    ops = sorted(histogram, key=lambda op: sum(histogram[op].values()))
    columns = [str(n) for n in range(1, 7)]
    grid = np.array([[histogram[op].get(c, 0) for c in columns] for op in ops], dtype=float)
    fig, (ax_ops, ax_fam) = plt.subplots(1, 2, figsize=(14, max(5, 0.26 * max(len(ops), len(fams)))),
                                         gridspec_kw={"width_ratios": [1.3, 1]})
    image = ax_ops.imshow(np.log10(1 + grid), aspect="auto", cmap="Blues")
    for y, x in zip(*np.nonzero(grid), strict=True):
        value = int(grid[y, x])
        ax_ops.text(x, y, f"{value}", ha="center", va="center", fontsize=6,
                    color="white" if grid[y, x] > grid.max() / 8 else "black")
    ax_ops.set_xticks(range(len(columns)), [*columns[:-1], "6+"])
    ax_ops.set_yticks(range(len(ops)), [f"{op} ({100 * sum(histogram[op].values()) / total:.0f}%)"
                                         for op in ops], fontsize=7)
    ax_ops.set(xlabel="uses in one program", title=f"programs per operation and use count (of {total})")
    fig.colorbar(image, ax=ax_ops, label="log10(1 + programs)", shrink=0.6)
    names = sorted(fams, key=fams.get)
    ax_fam.barh(names, [fams[n] for n in names], color="#5470a8")
    for y, name in enumerate(names):
        ax_fam.text(fams[name], y, f" {100 * fams[name] / total:.0f}%", va="center", fontsize=7)
    ax_fam.set_title(f"samples per family (of {total})")
    ax_fam.tick_params(axis="y", labelsize=8)
    ax_fam.margins(x=0.15)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def write_gallery(data_dir: str | Path, count: int = 24, seed: int = 0, columns: int = 6,
                  tile: int = 224, out: str | Path | None = None, colors: int | None = None) -> Path:
    """A contact sheet of ``count`` random samples across splits, as ``gallery.png`` beside the data.

    ``colors`` reduces the palette (e.g. 256) for a small file, such as the README's gallery.
    """
    import pyarrow.parquet as pq

    data_dir = Path(data_dir)
    files = sorted(f for split in SPLITS for f in (data_dir / "data" / split).glob("shard-*.parquet"))
    if not files:
        raise FileNotFoundError(f"no shards under {data_dir / 'data'}")
    rng = random.Random(seed)
    rows: list[dict[str, Any]] = []
    # Read a few random shards only: a 10k dataset need not be loaded for 24 pictures.
    for path in rng.sample(files, min(len(files), max(1, count // 4))):
        table = pq.read_table(path, columns=["image", "code", "family"]).to_pylist()
        rows += rng.sample(table, min(len(table), 8))
    rng.shuffle(rows)
    target = Path(out) if out else data_dir / "gallery.png"
    sheet = contact_sheet(rows[:count], columns=columns, tile=tile)
    if colors:
        sheet = sheet.quantize(colors, method=Image.Quantize.MEDIANCUT)
    sheet.save(target, optimize=True)
    return target


def write_coverage(data_dir: str | Path, out: str | Path | None = None) -> Path:
    """``coverage.png`` beside the data (or at ``out``); a run still in progress is charted from its
    finished shards."""
    data_dir = Path(data_dir)
    manifest_path = data_dir / "manifest.json"
    if manifest_path.exists():
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    else:
        from training.synth.writer import manifest_so_far

        manifest = manifest_so_far(data_dir)
    target = Path(out) if out else data_dir / "coverage.png"
    coverage_chart(manifest, target)
    return target


def main(argv: list[str] | None = None) -> int:
    """python -m training.synth.gallery DIR [--out-dir D]: gallery and coverage of a dataset, also mid-run."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m training.synth.gallery", description=main.__doc__)
    parser.add_argument("data", type=Path)
    parser.add_argument("--out-dir", type=Path, default=None, help="where to write (default: beside it)")
    parser.add_argument("--colors", type=int, default=None, help="reduce the gallery's palette (e.g. 256)")
    args = parser.parse_args(argv)
    folder = args.out_dir or args.data
    folder.mkdir(parents=True, exist_ok=True)
    print(write_gallery(args.data, out=folder / "gallery.png", colors=args.colors))
    print(write_coverage(args.data, out=folder / "coverage.png"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
