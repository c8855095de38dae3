"""Batches for ``training.retrain``, drawn from the rows its data workers have made so far.

The rows live in ``RUN/stream/chunk-*.pkl`` (written whole, then renamed); a reader re-scans the
folder every two seconds, so DataLoader workers in other processes see the buffer grow while the
model trains. Each batch is ``batch_size`` rows drawn uniformly, with replacement, from every
training row seen so far, collated by the shared ``training.collate.LlavaCollator``.
"""

from __future__ import annotations

import pickle
import time
from pathlib import Path

import numpy as np
from torch.utils.data import IterableDataset, get_worker_info


class ReplayBatches(IterableDataset):
    """Batches drawn uniformly from every training row in ``run/stream`` so far (the chunk files are
    re-read as they appear, so batch workers see the buffer grow). An iterable for a DataLoader."""

    def __init__(self, folder: Path, collator, batch_size: int, seed: int, start_step: int):
        self.folder, self.collator, self.batch_size = folder, collator, batch_size
        self.seed, self.start_step = seed, start_step

    def __iter__(self):
        info = get_worker_info()
        worker = info.id if info is not None else 0
        rng = np.random.default_rng([self.seed, self.start_step, worker])
        rows: list[dict] = []
        loaded: set[str] = set()
        last_scan = 0.0
        while True:
            if time.perf_counter() - last_scan > 2.0 or not rows:
                for path in sorted(self.folder.glob("chunk-*.pkl")):
                    if path.name not in loaded:
                        loaded.add(path.name)
                        rows += [{"image": r["image"], "code": r["code"]}
                                 for r in pickle.loads(path.read_bytes())["rows"] if r["split"] == "train"]
                last_scan = time.perf_counter()
                if not rows:
                    time.sleep(0.5)
                    continue
            picks = rng.integers(0, len(rows), self.batch_size)
            yield self.collator([rows[i] for i in picks])
