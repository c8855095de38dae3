"""Sharded, resumable, parallel dataset writer.

Layout of ``out``::

    config.json                      the settings the data was made with (a resume must match them)
    data/{train,val,test}/shard-00007.parquet
    shards/shard-00007.json          written last: the shard is finished; counts and signatures
    manifest.json                    totals per split, family, operation and rejection reason

Shard k holds seeds ``base_seed + k*shard_size ...``. Workers build whole shards; the parent takes
them in shard order, drops any sample whose geometry signature it has already kept (so one part
never lands in two splits) and writes the parquet files, so the result does not depend on the
number of workers. A resumed run reloads finished shards' signatures and skips those shards.

Geometry that duplicates a part of the hand-written out-of-family evaluation set
(``training/eval_oof/signatures.json``) is refused like any duplicate: that set is never trained on.
With ``scheduler`` set (a Dask scheduler address), shards are built by that cluster's workers instead
of local processes; the parent still orders, de-duplicates and writes them.
"""

from __future__ import annotations

import json
import math
import multiprocessing as mp
import multiprocessing.connection as mp_connection
import os
import pickle
import resource
import time
from collections import Counter, deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

from training.synth.grammar import GRAMMAR_VERSION
from training.synth.program import FAMILY_SHARE
from training.synth.sample import SPLITS, Sample, SampleRejected, make_sample

FORMAT_VERSION = 1
# Signatures of the hand-written out-of-family evaluation parts (``python -m training.oof``).
EVAL_SIGNATURES = Path(__file__).resolve().parents[1] / "eval_oof" / "signatures.json"
# Address space of a shard process: a pathological boolean once grew past 20 GB on a shared machine;
# beyond this it fails (a rejection, or a crash that skips the seed) instead.
SHARD_MEMORY_BYTES = 8 << 30


class DatasetConfigMismatch(ValueError):
    """``out`` already holds data made with other settings; resuming would mix two datasets."""


@dataclass(frozen=True)
class WriterConfig:
    out: Path
    n: int  # at least this many samples are kept (whole shards, so up to one shard more)
    workers: int = 1
    shard_size: int = 200
    image_size: int = 224
    base_seed: int = 0
    reference_share: float = 0.25  # share of images in FreeCAD's reference look and isometric view
    family_share: float = FAMILY_SHARE  # share of seeds from the named families; the rest are composed
    scheduler: str = ""  # a Dask scheduler address ("tcp://host:8786"): build shards on that cluster
    checkpoint_every: int = 25  # seeds between saves of a shard in progress (a crash resumes there)

    def identity(self) -> dict[str, Any]:
        """The settings that decide the content; a resume must use the same."""
        return {"format_version": FORMAT_VERSION, "shard_size": self.shard_size,
                "image_size": self.image_size, "base_seed": self.base_seed,
                "reference_share": self.reference_share, "family_share": self.family_share,
                "grammar_version": GRAMMAR_VERSION}


@dataclass
class ShardResult:
    index: int
    samples: list[Sample]
    rejected: Counter = field(default_factory=Counter)
    rejected_by_family: Counter = field(default_factory=Counter)
    timings: dict[str, float] = field(default_factory=dict)
    elapsed_s: float = 0.0


def shard_seeds(config: WriterConfig, index: int) -> range:
    start = config.base_seed + index * config.shard_size
    return range(start, start + config.shard_size)


def build_shard(config: WriterConfig, index: int, crashed: frozenset[int] = frozenset(),
                marker: Path | None = None, progress: Path | None = None) -> ShardResult:
    """Every sample of one shard. Rejections are counted, not raised.

    ``crashed`` seeds killed a worker before (a native crash in OpenCascade) and are not run again;
    ``marker`` is a file that holds the seed being run, so the parent can name the one that crashed.
    ``progress``: a file where the shard so far is saved every ``config.checkpoint_every`` seeds, and
    resumed from, so a crash costs the seeds since the last save, not the whole shard.
    """
    from training.synth.program import generate

    started = time.perf_counter()
    result, next_seed = ShardResult(index=index, samples=[]), shard_seeds(config, index).start
    if progress is not None and progress.exists():
        result, next_seed = pickle.loads(progress.read_bytes())
    timings: Counter = Counter(result.timings)
    for seed in shard_seeds(config, index):
        if seed < next_seed:
            continue
        family = generate(seed, family_share=config.family_share).family
        if seed in crashed:
            result.rejected["crashed"] += 1
            result.rejected_by_family[family] += 1
        else:
            if marker is not None:
                marker.write_text(str(seed), encoding="utf-8")
            try:
                sample = make_sample(seed, config.image_size, config.reference_share, config.family_share)
                timings.update(sample.timings)
                result.samples.append(sample)
            except SampleRejected as exc:
                result.rejected[exc.reason] += 1
                result.rejected_by_family[family] += 1
        done = seed + 1 - shard_seeds(config, index).start
        if progress is not None and done % config.checkpoint_every == 0 and done < config.shard_size:
            result.timings = dict(timings)
            partial = progress.with_suffix(".saving")
            partial.write_bytes(pickle.dumps((result, seed + 1), protocol=pickle.HIGHEST_PROTOCOL))
            os.replace(partial, progress)
    result.timings = dict(timings)
    result.elapsed_s += time.perf_counter() - started
    return result


def _shard_process(
    config: WriterConfig, index: int, crashed: frozenset[int], marker: Path, target: Path
) -> None:
    """Child process body: build the shard and leave it as a pickle for the parent."""
    _limit_memory()
    progress = target.with_suffix(".progress")
    result = build_shard(config, index, crashed, marker, progress)
    partial = target.with_suffix(".partial")
    partial.write_bytes(pickle.dumps(result, protocol=pickle.HIGHEST_PROTOCOL))
    os.replace(partial, target)
    progress.unlink(missing_ok=True)


def _limit_memory() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    if soft == resource.RLIM_INFINITY or soft > SHARD_MEMORY_BYTES:
        limit = SHARD_MEMORY_BYTES if hard == resource.RLIM_INFINITY else min(hard, SHARD_MEMORY_BYTES)
        resource.setrlimit(resource.RLIMIT_AS, (limit, hard))


def _features() -> Any:
    from datasets import Features, Image, List, Value

    return Features({"image": Image(), "code": Value("string"), "family": Value("string"),
                     "params": Value("string"), "camera": Value("string"), "seed": Value("int64"),
                     "operations": List(Value("string")), "signature": Value("string")})


def _shard_name(index: int) -> str:
    return f"shard-{index:05d}"


def write_shard_files(out: Path, index: int, samples: list[Sample]) -> dict[str, int]:
    """One parquet file per split that has samples; returns rows per split."""
    from datasets import Dataset
    from datasets.utils.logging import disable_progress_bar

    disable_progress_bar()  # one bar per parquet file would drown the writer's own progress bar
    counts = {}
    for split in SPLITS:
        rows = [s.row() for s in samples if s.split == split]
        counts[split] = len(rows)
        if not rows:
            continue
        folder = out / "data" / split
        folder.mkdir(parents=True, exist_ok=True)
        columns = {key: [row[key] for row in rows] for key in rows[0]}
        target = folder / f"{_shard_name(index)}.parquet"
        partial = target.with_suffix(".parquet.partial")
        Dataset.from_dict(columns, features=_features()).to_parquet(str(partial))
        os.replace(partial, target)
    return counts


def _atomic_json(path: Path, payload: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".json.partial")
    partial.write_text(json.dumps(payload, indent=1, sort_keys=True), encoding="utf-8")
    os.replace(partial, path)


def _check_config(config: WriterConfig) -> None:
    path = config.out / "config.json"
    if path.exists():
        existing = json.loads(path.read_text(encoding="utf-8"))
        existing.setdefault("family_share", 1.0)  # data made before the grammar: families only
        existing.setdefault("grammar_version", 1)
        if existing != config.identity():
            raise DatasetConfigMismatch(
                f"{config.out} holds data made with {existing}; this run asks for {config.identity()}. "
                "Use another --out folder, or the same settings to resume.")
    else:
        _atomic_json(path, config.identity())


def _finished(out: Path) -> dict[int, dict[str, Any]]:
    done = {}
    for path in sorted((out / "shards").glob("shard-*.json")):
        record = json.loads(path.read_text(encoding="utf-8"))
        done[int(record["index"])] = record
    return done


def _context() -> Any:
    # Never plain fork: a parent that has rendered holds an OpenGL context and driver threads that a
    # forked child cannot use. A fork server preloads the heavy imports once, before any rendering.
    if "forkserver" in mp.get_all_start_methods():
        context = mp.get_context("forkserver")
        context.set_forkserver_preload(["training.synth.sample"])
        return context
    return mp.get_context("spawn")


def _run_shards_dask(config: WriterConfig, indices: list[int]) -> Iterator[ShardResult]:
    """Shard results in shard order, built by the workers of the Dask cluster at ``config.scheduler``.

    Each shard is one task; a worker lost to a native crash makes Dask retry the task elsewhere and
    give up after its ``allowed-failures``, which ends the run (run it again to resume).
    """
    from distributed import Client

    with Client(config.scheduler, timeout="30s") as client:
        futures = client.map(build_shard, [config] * len(indices), indices, pure=False)
        for future in futures:  # in shard order; later shards keep building meanwhile
            yield future.result()
            future.release()


def _run_shards(config: WriterConfig, indices: list[int]) -> Iterator[ShardResult]:
    """Shard results in shard order; each shard is built in its own child process.

    A program can crash OpenCascade natively (a segfault seen once in ~7000 seeds). The crash takes
    down that shard's process only; the parent reads which seed was running, records it in
    ``crashes.json``, and builds the shard again without it, so the run goes on and stays deterministic.
    """
    context = _context()
    work = config.out / "shards" / "work"
    work.mkdir(parents=True, exist_ok=True)
    crash_file = config.out / "shards" / "crashes.json"
    crashes: dict[str, list[int]] = json.loads(crash_file.read_text()) if crash_file.exists() else {}
    pending = deque(indices)
    running: dict[int, Any] = {}
    ready: dict[int, ShardResult] = {}
    order = iter(indices)
    want = next(order, None)
    while want is not None:
        while pending and len(running) < config.workers:
            index = pending.popleft()
            crashed = frozenset(crashes.get(str(index), []))
            process = context.Process(
                target=_shard_process, daemon=True,
                args=(config, index, crashed, work / f"{index}.seed", work / f"{index}.pickle"))
            process.start()
            running[index] = process
        mp_connection.wait([p.sentinel for p in running.values()])
        for index, process in list(running.items()):
            if process.is_alive():
                continue
            process.join()
            del running[index]
            target = work / f"{index}.pickle"
            if process.exitcode == 0 and target.exists():
                ready[index] = pickle.loads(target.read_bytes())
                target.unlink()
                (work / f"{index}.seed").unlink(missing_ok=True)
                continue
            marker = work / f"{index}.seed"
            if process.exitcode is not None and process.exitcode < 0 and marker.exists():
                seed = int(marker.read_text(encoding="utf-8"))
                if seed not in crashes.get(str(index), []):
                    crashes.setdefault(str(index), []).append(seed)
                    _atomic_json(crash_file, crashes)
                    pending.appendleft(index)
                    continue
            raise RuntimeError(f"the worker for shard {index} failed (exit code {process.exitcode}); "
                               "run the same command again to resume from the finished shards")
        while want is not None and want in ready:
            yield ready.pop(want)
            want = next(order, None)


def excluded_signatures(path: Path | None = None) -> set[str]:
    """Geometry signatures no sample may have: the out-of-family evaluation parts."""
    path = path or EVAL_SIGNATURES
    return set(json.loads(path.read_text(encoding="utf-8"))) if path.exists() else set()


def _operation_histogram(samples: list[Sample]) -> dict[str, dict[str, int]]:
    """Per operation: how many programs use it once, twice, ... (``"6"`` counts 6 or more)."""
    histogram: dict[str, Counter] = {}
    for sample in samples:
        for op, n in sample.operation_counts.items():
            histogram.setdefault(op, Counter())[str(min(n, 6))] += 1
    return {op: dict(counts) for op, counts in sorted(histogram.items())}


def write_dataset(config: WriterConfig, progress: bool = True) -> dict[str, Any]:
    """Write (or finish) the dataset in ``config.out``; returns the manifest."""
    if config.n < 1 or config.shard_size < 1 or config.workers < 1:
        raise ValueError("n, shard_size and workers must be at least 1")
    config.out.mkdir(parents=True, exist_ok=True)
    _check_config(config)
    done = _finished(config.out)
    seen: set[str] = {sig for record in done.values() for sig in record["signatures"]}
    seen |= excluded_signatures()
    kept = kept_before = sum(record["kept"] for record in done.values())
    started = time.perf_counter()
    bar = tqdm(total=config.n, initial=min(kept, config.n), unit="sample", disable=not progress,
               desc="synth", dynamic_ncols=True)
    next_index = 0
    while kept < config.n:
        # Shards still to make: as if every seed gave a sample on the first pass (no overshoot),
        # then enough for the missing samples at the rate seen so far.
        rate = (kept / max(1, len(done) * config.shard_size)) if done else 1.0
        wanted = math.ceil((config.n - kept) / max(0.05, rate) / config.shard_size)
        todo: list[int] = []
        while len(todo) < max(1, wanted):
            if next_index not in done:
                todo.append(next_index)
            next_index += 1
        shards = _run_shards_dask(config, todo) if config.scheduler else _run_shards(config, todo)
        for shard in shards:
            fresh = []
            duplicates = 0
            for sample in shard.samples:
                if sample.signature in seen:
                    duplicates += 1
                    continue
                seen.add(sample.signature)
                fresh.append(sample)
            per_split = write_shard_files(config.out, shard.index, fresh)
            record = {
                "index": shard.index, "seeds": [shard_seeds(config, shard.index).start,
                                                shard_seeds(config, shard.index).stop],
                "kept": len(fresh), "duplicates": duplicates, "splits": per_split,
                "rejected": dict(shard.rejected), "rejected_by_family": dict(shard.rejected_by_family),
                "families": dict(Counter(s.family for s in fresh)),
                "operations": dict(Counter(op for s in fresh for op in s.operations)),
                "operation_counts": _operation_histogram(fresh),
                "code_chars": [len(s.code) for s in fresh], "timings": shard.timings,
                "elapsed_s": shard.elapsed_s, "signatures": [s.signature for s in fresh],
            }
            _atomic_json(config.out / "shards" / f"{_shard_name(shard.index)}.json", record)
            done[shard.index] = record
            kept += len(fresh)
            bar.update(min(len(fresh), max(0, config.n - bar.n)))
            bar.set_postfix(shards=len(done), rejected=sum(shard.rejected.values()), dup=duplicates)
    bar.close()
    manifest = build_manifest(config, done, time.perf_counter() - started, kept - kept_before)
    _atomic_json(config.out / "manifest.json", manifest)
    return manifest


def build_manifest(
    config: WriterConfig, done: dict[int, dict[str, Any]], elapsed_s: float, kept_this_run: int
) -> dict[str, Any]:
    totals: dict[str, Counter] = {key: Counter() for key in
                                  ("splits", "families", "operations", "rejected", "rejected_by_family")}
    timings: Counter = Counter()
    lengths: list[int] = []
    duplicates = 0
    histogram: dict[str, Counter] = {}
    for record in done.values():
        for op, counts in record.get("operation_counts", {}).items():
            histogram.setdefault(op, Counter()).update(counts)
        for key in totals:
            totals[key].update(record[key])
        timings.update(record["timings"])
        lengths += record["code_chars"]
        duplicates += record["duplicates"]
    kept = sum(totals["splits"].values())
    attempted = len(done) * config.shard_size
    lengths.sort()
    return {
        "config": {**config.identity(), "n": config.n, "workers": config.workers},
        "samples": kept,
        "seeds_tried": attempted,
        "shards": len(done),
        "splits": dict(totals["splits"]),
        "families": dict(sorted(totals["families"].items())),
        "operations": dict(sorted(totals["operations"].items())),
        "operation_counts": {op: dict(sorted(c.items())) for op, c in sorted(histogram.items())},
        "rejected": dict(totals["rejected"]),
        "rejected_by_family": dict(sorted(totals["rejected_by_family"].items())),
        "duplicates": duplicates,
        "code_chars": {"median": lengths[len(lengths) // 2] if lengths else 0,
                       "p95": lengths[int(len(lengths) * 0.95)] if lengths else 0,
                       "max": lengths[-1] if lengths else 0},
        "seconds_per_stage_total": {k: round(v, 2) for k, v in sorted(timings.items())},
        "this_run": {"samples": kept_this_run, "elapsed_s": round(elapsed_s, 1),
                     "samples_per_s": round(kept_this_run / max(elapsed_s, 1e-9), 2)},
    }


def manifest_so_far(out: Path) -> dict[str, Any]:
    """The manifest of the shards finished so far (a run in progress writes its own only at the end)."""
    saved = json.loads((out / "config.json").read_text(encoding="utf-8"))
    config = WriterConfig(out=out, n=1, shard_size=saved["shard_size"], image_size=saved["image_size"],
                          base_seed=saved["base_seed"], reference_share=saved["reference_share"],
                          family_share=saved.get("family_share", 1.0))
    return build_manifest(config, _finished(out), 0.0, 0)


__all__ = ["DatasetConfigMismatch", "WriterConfig", "build_shard", "manifest_so_far", "write_dataset"]
