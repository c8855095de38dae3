"""Read a written dataset back: ``load_split(data_dir, "train")`` -> ``datasets.Dataset``.

Columns: image (PIL, through the ``datasets`` Image feature), code, family, params (JSON text),
camera (JSON text), seed, operations (list of names), signature.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from training.synth.sample import SPLITS


def split_files(data_dir: str | Path, split: str) -> list[Path]:
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
    return sorted((Path(data_dir) / "data" / split).glob("shard-*.parquet"))


def load_split(data_dir: str | Path, split: str, **kwargs: Any) -> Any:
    """The split as a ``datasets.Dataset`` (memory-mapped Arrow; extra kwargs go to ``load_dataset``)."""
    from datasets import load_dataset

    files = split_files(data_dir, split)
    if not files:
        raise FileNotFoundError(
            f"no {split} shards under {Path(data_dir) / 'data' / split}; "
            "write a dataset with `python -m training.synth --n N --out DIR` first")
    return load_dataset("parquet", data_files=[str(f) for f in files], split="train", **kwargs)
