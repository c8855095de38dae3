"""A copy of a dataset with its pictures at the model's input size, small enough to carry.

The data engine renders 224 px PNGs (21,000 samples: 440 MB); the compact model sees 128 px. A GPU
machine or a Colab upload takes the shrunk copy instead: 128 px WebP at quality 95 keeps 21,000
samples in about 45 MB. The pictures are squared and flattened exactly as the collator does
(``model_runtime.picture.images.load_image``) and resized with PIL's bicubic filter, as CLIP's processor does,
so training sees the same pixels up to the WebP rounding. Every other column is kept as it is.

    python -m training.synth.resize --data DATA --out SMALL --size 128 [--splits train,val]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import sys
from pathlib import Path

from PIL import Image
from tqdm import tqdm

from model_runtime.picture.images import load_image
from training.synth.dataset import split_files
from training.synth.sample import SPLITS


def shrink_image(data: bytes, size: int, quality: int = 95, lossless: bool = False) -> bytes:
    """The picture squared, flattened and resized as the collator and CLIP's processor would, as WebP
    (``lossless``: exact pixels, as the on-the-fly data of ``training.retrain`` keeps them)."""
    image = load_image(data).resize((size, size), Image.Resampling.BICUBIC)
    buffer = io.BytesIO()
    if lossless:
        image.save(buffer, format="WEBP", lossless=True, quality=0, method=0)
    else:
        image.save(buffer, format="WEBP", quality=quality, method=6)
    return buffer.getvalue()


def resize_shard(source: Path, target: Path, size: int, quality: int) -> None:
    """One parquet shard, its image bytes replaced; written beside and renamed, so a stop loses nothing."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pq.read_table(source)
    images = table.column("image").to_pylist()
    shrunk = [{"bytes": shrink_image(item["bytes"], size, quality), "path": None} for item in images]
    column = pa.array(shrunk, type=table.schema.field("image").type)
    table = table.set_column(table.schema.get_field_index("image"), "image", column)
    partial = target.with_suffix(".parquet.partial")  # the data engine's naming (training.synth.writer)
    pq.write_table(table, partial)
    os.replace(partial, target)


def resize_dataset(data: Path, out: Path, size: int = 128, quality: int = 95,
                   splits: tuple[str, ...] = SPLITS) -> int:
    """Write ``out`` from ``data``; shards already written are kept (a stopped run resumes)."""
    shards = [(split, f) for split in splits for f in split_files(data, split)]
    if not shards:
        raise FileNotFoundError(f"no shards under {data / 'data'} for {', '.join(splits)}")
    out.mkdir(parents=True, exist_ok=True)
    for name in ("config.json", "manifest.json"):
        if (data / name).exists():
            shutil.copy2(data / name, out / name)
    (out / "resized.json").write_text(json.dumps({"source": data.name, "size": size, "quality": quality}))
    for split, source in tqdm(shards, desc="shards", unit="shard"):
        target = out / "data" / split / source.name
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            resize_shard(source, target, size, quality)
    return len(shards)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.synth.resize",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="a dataset written by training.synth")
    parser.add_argument("--out", type=Path, required=True, help="where the shrunk copy goes")
    parser.add_argument("--size", type=int, default=128, help="picture side in pixels (the model's, 128)")
    parser.add_argument("--quality", type=int, default=95, help="WebP quality (default 95)")
    parser.add_argument("--splits", default=",".join(SPLITS), help="comma-separated (default: all)")
    args = parser.parse_args(argv)
    splits = tuple(s for s in args.splits.split(",") if s)
    try:
        n = resize_dataset(args.data, args.out, args.size, args.quality, splits)
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {n} shards to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
