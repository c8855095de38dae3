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
    """Horizontal bars: samples per operation and per family, from the manifest."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ops = manifest["operations"]
    fams = manifest["families"]
    total = max(1, manifest["samples"])
    fig, axes = plt.subplots(1, 2, figsize=(12, max(5, 0.28 * max(len(ops), len(fams)))))
    for ax, counts, title in ((axes[0], ops, "operation"), (axes[1], fams, "family")):
        names = sorted(counts, key=counts.get)
        ax.barh(names, [counts[n] for n in names], color="#5470a8")
        for y, name in enumerate(names):
            ax.text(counts[name], y, f" {100 * counts[name] / total:.0f}%", va="center", fontsize=7)
        ax.set_title(f"samples per {title} (of {total})")
        ax.tick_params(axis="y", labelsize=8)
        ax.margins(x=0.15)
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


def write_coverage(data_dir: str | Path) -> Path:
    data_dir = Path(data_dir)
    manifest = json.loads((data_dir / "manifest.json").read_text(encoding="utf-8"))
    target = data_dir / "coverage.png"
    coverage_chart(manifest, target)
    return target
