"""python -m training.synth --n N --out DIR --workers W: write (or finish) a synthetic dataset."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from training.synth.gallery import write_coverage, write_gallery
from training.synth.program import FAMILY_SHARE
from training.synth.writer import DatasetConfigMismatch, WriterConfig, write_dataset


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.synth", description=__doc__)
    parser.add_argument("--n", type=int, required=True, help="samples to keep (at least; whole shards)")
    parser.add_argument("--out", type=Path, required=True, help="dataset folder (resumed if it exists)")
    parser.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    parser.add_argument("--shard-size", type=int, default=200, help="seeds per shard (default 200)")
    parser.add_argument("--size", type=int, default=224, help="image side in pixels (default 224)")
    parser.add_argument("--seed", type=int, default=0, help="first seed (default 0)")
    parser.add_argument("--reference-share", type=float, default=0.25,
                        help="share of images in FreeCAD's reference look and isometric view (default 0.25)")
    parser.add_argument("--family-share", type=float, default=FAMILY_SHARE,
                        help="share of seeds from the 20 named families; the rest come from the part grammar "
                             f"(default {FAMILY_SHARE}; 1 gives the family-only data of earlier versions)")
    parser.add_argument("--scheduler", default="",
                        help="a Dask scheduler address (tcp://host:8786): build shards on that cluster "
                             "(pip install 'cadsnap[distributed]'); default: local processes")
    parser.add_argument("--no-gallery", action="store_true", help="skip gallery.png and coverage.png")
    args = parser.parse_args(argv)
    if not 0.0 <= args.family_share <= 1.0:
        parser.error("--family-share must be between 0 and 1")
    config = WriterConfig(out=args.out, n=args.n, workers=args.workers, shard_size=args.shard_size,
                          image_size=args.size, base_seed=args.seed, reference_share=args.reference_share,
                          family_share=args.family_share, scheduler=args.scheduler)
    try:
        manifest = write_dataset(config)
    except (DatasetConfigMismatch, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not args.no_gallery:
        write_gallery(args.out)
        write_coverage(args.out)
    summary = {k: manifest[k] for k in ("samples", "seeds_tried", "splits", "rejected", "duplicates")}
    print(json.dumps(summary, indent=1))
    print(f"wrote {args.out}/manifest.json" + ("" if args.no_gallery else ", gallery.png, coverage.png"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
