"""Retrain the built-in model in one command: data made on the fly, a wall-clock budget, GGUF export,
evaluation out of family and in family, a report, and installation only when the new model wins.

    python -m training.retrain                          # a CUDA machine: ~10 min of training, then
                                                        # export, evaluation, report (``make retrain``)
    python -m training.retrain --install never          # never touch model_runtime/models
    python -m training.retrain --device cpu --preset tiny --minutes 0.1 ...   # the tests' tiny run

Stages, each resumed from the run folder (``--out``, default ``~/.cache/cadsnap/retrain/run``):

1. **Data on the fly.** ``--workers`` processes (default: cores - 2) draw seeds in blocks, compose
   programs with the part grammar and the named families (``training.synth.program``), or take a
   program read from a real part (``training.synth.recognised`` output, its named dimensions varied),
   run and validate each one and render it (``training.synth.sample``). The parent drops duplicates
   and anything shaped like an out-of-family evaluation part, and appends the rest to chunk files in
   the run folder; batches are drawn from everything made so far (a replay buffer that grows while the
   model trains). No pre-generation: training starts once ``--min-samples`` are in.
2. **Training** for ``--minutes`` of wall clock (warm-up by steps, then a cosine over the time
   budget), with train_compact's model, optimiser, auxiliary loss, step and checkpoints. Warm-started
   from the current built-in model when its architecture is the preset's (its GGUF pair is read back
   into a Hugging Face folder, ``training.gguf_import``), else from scratch; the log says which.
3. **Export** of the GGUF pair (``training.export_gguf``: text model + mmproj).
4. **Evaluation** with the pipeline the user gets (``training.evaluate``: search on, best-of-4) on
   ``training/eval_oof`` and on held-out in-family programs (seeds of the test split, never trained on,
   in the reference look); the current built-in model's numbers on the same parts beside them.
5. **Report** (``report.md``, ``report.json``, ``curves.png``) and ``--install auto|never|always``:
   ``auto`` copies the new pair into ``model_runtime/models`` only if it beats the current model out of
   family (mean IoU on the same parts, the pipeline's settings alike).

An interrupted run continues where it stopped: run the same command again.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import pickle
import random
import re
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm import tqdm

from training.synth.program import FAMILY_SHARE

ROOT = Path(__file__).resolve().parents[1]
BUILTIN_OOF_REPORT = "eval/oof-search-best-of-4/report.json"  # the current model's stored numbers
MODEL_NAME = "cadsnap-compact"
RECOGNISED = "recognised"  # the family name of programs read from real parts
CHOICES = {"install": ("auto", "never", "always"), "baseline": ("auto", "stored", "run"),
           "init": None, "preset": ("compact", "small", "tiny")}


@dataclass
class RetrainConfig:
    out: str = ""  # run folder (resumed); "": ~/.cache/cadsnap/retrain/run
    device: str = "cuda"  # cuda (an error without one) or cpu (tiny runs, tests)
    minutes: float = 10.0  # wall-clock training budget (the data warm-up and evaluation not counted)
    workers: int = 0  # data processes; 0: cores - 2
    # Processes that build batches from the buffer; -1: 5 on cuda (collation runs ~200 samples/s per core;
    # the GPU takes ~1,000), 0 on cpu.
    batch_workers: int = -1
    preset: str = "compact"  # train_compact's model presets: compact, small, tiny
    init: str = "auto"  # auto: warm start from the built-in model if its architecture fits; scratch; a folder
    batch_size: int = 64
    lr: float = 1e-3  # from scratch
    warm_lr: float = 3e-4  # warm-started
    warmup_steps: int = 300  # from scratch (a warm start takes a fifth)
    min_lr_ratio: float = 0.05
    weight_decay: float = 0.05
    vision_lr_scale: float = 0.3
    token_bag_weight: float = 0.5
    grad_clip: float = 1.0
    max_length: int = 512
    vocab_size: int = 1024  # a from-scratch tokenizer (a warm start keeps the built-in model's)
    tokenizer_programs: int = 20_000  # programs drawn (not run) to train that tokenizer
    base_seed: int = 1_000_000  # first seed of this run's data (fresh: the shipped data used 0-65,199)
    block: int = 8  # seeds per task handed to a data worker
    # A seed still running after this long is given up (its worker replaced): a pathological boolean can
    # hold OpenCascade in native code, where the per-program time limit cannot interrupt it.
    seed_timeout_s: float = 120.0
    family_share: float = FAMILY_SHARE  # share of seeds from the 20 named families; the rest composed
    recognised_share: float = 0.05  # share of training seeds that take a program read from a real part
    recognised: str = ""  # folder with programs.jsonl (training.synth.recognised); "": cache/data/recognised
    recognised_from: str = ""  # STEP files to build it from when it is missing; "": cache/bdw_steps
    reference_share: float = 0.25  # share of training pictures in FreeCAD's reference look
    render_size: int = 224
    min_samples: int = 512  # samples in the buffer before the first step
    val_samples: int = 64  # val-split samples for the validation loss
    heldout: int = 50  # test-split samples kept for the in-family evaluation
    val_every: int = 500  # steps between validation losses
    save_every_s: float = 60.0  # seconds between checkpoints
    log_every: int = 20
    eval_oof: str = "training/eval_oof"
    eval_limit: int = 0  # evaluate only the first N parts of each set; 0: all
    eval_n: int = 4
    eval_search: bool = True
    eval_evaluations: int = -1  # the picture search's budget; -1: the runtime's default
    eval_max_new_tokens: int = 512
    eval_workers: int = 0  # sandbox workers per evaluation; 0: min(4, cores - 2)
    eval_parallel: int = 0  # evaluations at once (out of / in family, new / current); 0: cores // 5
    # The current model's numbers: auto (out of family from its stored report when the settings match,
    # else evaluated; in family evaluated), stored (its stored report only), run (evaluated on both).
    baseline: str = "auto"
    install: str = "auto"  # auto | never | always
    models: str = "model_runtime/models"  # the installed built-in model (read for the baseline)
    export_quant: str = "q8_0"
    seed: int = 0

    def compact(self, lr: float, warmup: int):
        """The train_compact config its pieces (model, optimiser, step, validation) read."""
        from training.train_compact import CompactTrainConfig

        return CompactTrainConfig(
            preset=self.preset, vocab_size=self.vocab_size, max_length=self.max_length,
            batch_size=self.batch_size, lr=lr, min_lr_ratio=self.min_lr_ratio, warmup_steps=warmup,
            weight_decay=self.weight_decay, token_bag_weight=self.token_bag_weight,
            vision_lr_scale=self.vision_lr_scale, grad_clip=self.grad_clip, eval_samples=0,
            seed=self.seed,
        )


def cache_root() -> Path:
    from model_runtime.protocol import cache_dir

    return cache_dir()


def run_folder(cfg: RetrainConfig) -> Path:
    return Path(cfg.out) if cfg.out else cache_root() / "retrain" / "run"


def data_workers(cfg: RetrainConfig) -> int:
    return cfg.workers or max(1, (os.cpu_count() or 2) - 2)


def _atomic_write(path: Path, data: bytes) -> None:
    partial = path.with_name(path.name + ".partial")
    partial.write_bytes(data)
    os.replace(partial, path)


def _write_json(path: Path, payload: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    _atomic_write(path, json.dumps(payload, indent=1, sort_keys=True).encode())


# ------------------------------------------------------------------------ programs from real parts


def recognised_programs(cfg: RetrainConfig, log=print) -> list[dict[str, str]]:
    """Programs read from real parts (``programs.jsonl`` of ``training.synth.recognised``), built first
    from ``recognised_from`` when missing; none (with a line saying why) when neither exists. Programs
    of the out-of-family evaluation parts are left out: that set is never trained on."""
    if cfg.recognised_share <= 0:
        return []
    folder = Path(cfg.recognised) if cfg.recognised else cache_root() / "data" / "recognised"
    listing = folder / "programs.jsonl"
    if not listing.exists():
        source = Path(cfg.recognised_from) if cfg.recognised_from else cache_root() / "bdw_steps"
        files = sorted(p for p in source.glob("*") if p.suffix.lower() in (".step", ".stp", ".stl"))
        if not files:
            log(f"programs from real parts: none at {listing} and no STEP files in {source} to build them "
                "from; training on the grammar and the families only")
            return []
        log(f"programs from real parts: building {folder} from {len(files)} files in {source} "
            "(python -m training.synth.recognised)")
        from training.synth.recognised import main as recognise

        recognise(["--out", str(folder), *map(str, files)])
    oof = {p.stem for p in (ROOT / "training" / "eval_oof").glob("*.py")}
    programs, seen = [], set()
    for line in listing.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        record = json.loads(line)
        if record["name"] in oof or record["name"] in seen:
            continue
        seen.add(record["name"])
        programs.append({"name": record["name"], "code": record["code"]})
    log(f"programs from real parts: {len(programs)} from {listing}, {cfg.recognised_share:.0%} of the seeds")
    return programs


_NAMED = re.compile(r"^(?P<name>[a-z_][a-z0-9_]*) = (?P<value>-?\d+(?:\.\d+)?)$", re.MULTILINE)


def vary_named_dimensions(code: str, rng: random.Random) -> str:
    """The program with its named dimensions (``name = 12.5`` lines) drawn around their values: sizes
    by x0.8-1.25, counts by -1..+2, angles kept. The worker validates the result like any program."""

    def draw(match: re.Match) -> str:
        name, value = match["name"], match["value"]
        if "angle" in name:
            return match[0]
        if name.endswith("count") and "." not in value:
            return f"{name} = {max(2, int(value) + rng.randint(-1, 2))}"
        if float(value) == 0:
            return match[0]
        return f"{name} = {round(float(value) * rng.uniform(0.8, 1.25), 2):g}"

    return _NAMED.sub(draw, code)


# -------------------------------------------------------------------------------------- data stream


def program_for(seed: int, cfg: RetrainConfig, programs: list[dict[str, str]]):
    """The program of ``seed``: from a real part for ``recognised_share`` of the training seeds, else
    the data engine's (grammar or family, ``family_share``)."""
    from training.synth.program import SynthProgram, generate
    from training.synth.sample import split_of

    rng = random.Random(f"retrain-source:{seed}")
    if programs and split_of(seed) == "train" and rng.random() < cfg.recognised_share:
        chosen = rng.choice(programs)
        code = chosen["code"] if rng.random() < 0.3 else vary_named_dimensions(chosen["code"], rng)
        return SynthProgram(seed=seed, family=RECOGNISED, code=code, params={"part": chosen["name"]})
    return generate(seed, family_share=cfg.family_share)


HELD_OFFSET = 500_000_000  # validation and held-out seeds come from a range of their own


def task_seeds(cfg: RetrainConfig, task: tuple[str, int]) -> list[int]:
    """The seeds of one task: ``("train", k)`` the k-th block of training-split seeds, ``("held", k)``
    about as many val/test-split seeds from the held range (so held-out parts come first, not 10 % of
    the way through the run)."""
    from training.synth.sample import split_of

    kind, index = task
    if kind == "train":
        start = cfg.base_seed + index * cfg.block
        return [s for s in range(start, start + cfg.block) if split_of(s) == "train"]
    start = cfg.base_seed + HELD_OFFSET + index * cfg.block * 10
    return [s for s in range(start, start + cfg.block * 10) if split_of(s) != "train"]


def _data_worker(cfg: RetrainConfig, programs, image_size: int, tasks, results, held_full, beats, slot: int
                 ) -> None:
    """Worker body: blocks of seeds in, validated rows out (model-size pictures for training and
    validation, the full reference-look render for held-out evaluation parts). ``beats[2 * slot]`` holds
    when the current seed started (0 while idle) and ``beats[2 * slot + 1]`` the seed: shared memory,
    written at once, so the parent sees a worker stuck in native code (which holds the GIL, so nothing
    it queues would leave the process)."""
    from training.synth.resize import shrink_image
    from training.synth.sample import SampleRejected, sample_from_program, split_of
    from training.synth.writer import _limit_memory

    _limit_memory()
    while True:
        task = tasks.get()
        if task is None:
            return
        started, cpu = time.perf_counter(), time.process_time()
        for seed in task_seeds(cfg, task):
            beats[2 * slot], beats[2 * slot + 1] = time.time(), seed
            split = split_of(seed)
            if split != "train" and held_full.value:
                continue
            try:
                program = program_for(seed, cfg, programs)
                share = cfg.reference_share if split == "train" else (1.0 if split == "test" else 0.25)
                sample = sample_from_program(program, cfg.render_size, share)
            except SampleRejected as exc:
                results.put(("rejected", exc.reason))
                continue
            except Exception as exc:  # noqa: BLE001 - one odd program never ends the stream
                results.put(("rejected", type(exc).__name__))
                continue
            image = sample.image_png if split == "test" else shrink_image(sample.image_png, image_size,
                                                                          lossless=True)
            row = {"seed": seed, "split": split, "family": sample.family, "code": sample.code,
                   "signature": sample.signature, "image": image}
            results.put(("sample", row))
        beats[2 * slot] = 0.0
        results.put(("done", task, time.perf_counter() - started, time.process_time() - cpu))


class DataStream:
    """The data workers and the rows they made, kept in ``run/stream`` (chunks of accepted rows, the
    finished seed blocks), ``run/heldout`` (NAME.png + NAME.py) and in memory (val rows, counts)."""

    def __init__(self, cfg: RetrainConfig, run: Path, programs, collator, image_size: int):
        from training.synth.writer import excluded_signatures

        self.cfg, self.run, self.programs, self.collator = cfg, run, programs, collator
        self.image_size = image_size
        self.folder = run / "stream"
        self.folder.mkdir(parents=True, exist_ok=True)
        self.heldout_dir = run / "heldout"
        self.heldout_dir.mkdir(parents=True, exist_ok=True)
        self.excluded = excluded_signatures()
        self.seen: set[str] = set()
        self.done_blocks: set[tuple[str, int]] = set()
        self.val: list[dict] = []
        self.train_count = 0
        self.counts: dict[str, int] = {"accepted": 0, "duplicates": 0, "eval_oof_lookalike": 0,
                                       "too_long": 0}
        self.rejected: dict[str, int] = {}
        self.families: dict[str, int] = {}
        self.block_wall = self.block_cpu = 0.0
        self.pending: list[dict] = []  # rows and blocks since the last flush, with their counts
        self.pending_blocks: list[tuple[str, int]] = []
        self._pending_rejected: dict[str, int] = {}
        self._pending_counts: dict[str, int] = {}
        self._pending_time = [0.0, 0.0]
        self.chunks = 0
        self.last_flush = time.perf_counter()
        self.processes: list[Any] = []
        self.slots: dict[int, int] = {}  # worker pid -> its slot in ``beats``
        self.stuck_seeds: list[int] = []
        self.started_at = None
        self.session_accepted = 0
        self._load()

    # -- what a previous session left
    def _load(self) -> None:
        for path in sorted(self.folder.glob("chunk-*.pkl")):
            chunk = pickle.loads(path.read_bytes())
            self.chunks += 1
            self.done_blocks.update(tuple(b) for b in chunk["blocks"])
            for row in chunk["rows"]:
                self._count(row)
                if row["split"] == "train":
                    self.train_count += 1
                elif row["split"] == "val" and len(self.val) < self.cfg.val_samples:
                    self.val.append(row)
            for key in ("rejected",):
                for reason, n in chunk.get(key, {}).items():
                    self.rejected[reason] = self.rejected.get(reason, 0) + n
            for key, n in chunk.get("counts", {}).items():
                self.counts[key] = self.counts.get(key, 0) + n
            self.block_wall += chunk.get("block_wall", 0.0)
            self.block_cpu += chunk.get("block_cpu", 0.0)
        self.heldout_names = {p.stem for p in self.heldout_dir.glob("*.py")}

    def _count(self, row: dict) -> None:
        if row["family"] != RECOGNISED:
            self.seen.add(row["signature"])
        self.families[row["family"]] = self.families.get(row["family"], 0) + 1

    @property
    def held_full(self) -> bool:
        return len(self.val) >= self.cfg.val_samples and len(self.heldout_names) >= self.cfg.heldout

    # -- the workers
    def start(self) -> None:
        from training.synth.writer import _context

        context = _context()
        self.tasks, self.results = context.Queue(), context.Queue()
        self.flag = context.Value("b", self.held_full)
        self.next_index = {"train": 0, "held": 0}
        self.held_in_flight = 0
        self._context = context
        self.in_flight = 0
        self.beats = context.Array("d", 2 * data_workers(self.cfg), lock=False)
        for slot in range(data_workers(self.cfg)):
            self._spawn(slot)
        for _ in range(3 * data_workers(self.cfg)):
            self._issue()
        self.started_at = time.perf_counter()

    def _spawn(self, slot: int) -> None:
        self.beats[2 * slot] = 0.0
        process = self._context.Process(
            target=_data_worker, daemon=True,
            args=(self.cfg, self.programs, self.image_size, self.tasks, self.results, self.flag,
                  self.beats, slot))
        process.start()
        self.processes.append(process)
        self.slots[process.pid] = slot

    def _issue(self) -> None:
        kind = "held" if not self.held_full and self.held_in_flight < 2 else "train"
        while (kind, self.next_index[kind]) in self.done_blocks:
            self.next_index[kind] += 1
        self.tasks.put((kind, self.next_index[kind]))
        self.next_index[kind] += 1
        self.in_flight += 1
        self.held_in_flight += kind == "held"

    def pump(self, limit: int = 10_000, watch: bool = True) -> int:
        """Take what the workers made (without waiting), refill their queue, save a chunk when due,
        replace a worker that died (a native crash in OpenCascade); returns rows accepted."""
        import queue

        accepted = 0
        for _ in range(limit):
            try:
                message = self.results.get_nowait()
            except queue.Empty:
                break
            if message[0] == "sample":
                accepted += self._accept(message[1])
            elif message[0] == "rejected":
                self.rejected[message[1]] = self.rejected.get(message[1], 0) + 1
                self._pending_rejected[message[1]] = self._pending_rejected.get(message[1], 0) + 1
            else:  # a finished block
                self.pending_blocks.append(message[1])
                self.block_wall += message[2]
                self.block_cpu += message[3]
                self._pending_time[0] += message[2]
                self._pending_time[1] += message[3]
                self.in_flight -= 1
                self.held_in_flight -= message[1][0] == "held"
                self._issue()
        if not watch:
            return accepted
        now, stuck = time.time(), set()
        for process in self.processes:
            slot = self.slots[process.pid]
            since = self.beats[2 * slot]
            if since and now - since > self.cfg.seed_timeout_s and process.is_alive():
                process.kill()  # stuck in native code; replaced below like a crashed one
                process.join(timeout=5.0)
                stuck.add(process.pid)
                self.stuck_seeds.append(int(self.beats[2 * slot + 1]))
        dead = [p for p in self.processes if not p.is_alive()]
        for process in dead:
            self.processes.remove(process)
            reason = "stuck_worker" if process.pid in stuck else "crashed_worker"
            self.rejected[reason] = self.rejected.get(reason, 0) + 1
            self._spawn(self.slots.pop(process.pid))
            self.in_flight -= 1  # its task is lost (whichever it was); the stream moves on
            self.held_in_flight = 0
            self._issue()
        if self.pending and time.perf_counter() - self.last_flush > 5.0:
            self.flush()
        return accepted

    def _bump(self, key: str) -> None:
        self.counts[key] = self.counts.get(key, 0) + 1
        self._pending_counts[key] = self._pending_counts.get(key, 0) + 1

    def _accept(self, row: dict) -> int:
        if row["signature"] in self.excluded:
            self._bump("eval_oof_lookalike")
            return 0
        if row["family"] != RECOGNISED and row["signature"] in self.seen:
            self._bump("duplicates")
            return 0
        if not self.collator.fits(row):
            self._bump("too_long")
            return 0
        if row["split"] == "test":
            if len(self.heldout_names) >= self.cfg.heldout:
                return 0
            name = f"heldout_{row['seed']}"
            (self.heldout_dir / f"{name}.png").write_bytes(row["image"])
            (self.heldout_dir / f"{name}.py").write_text(row["code"], encoding="utf-8")
            self.heldout_names.add(name)
            self._write_families()
            row = {**row, "image": b""}  # the picture is in heldout/; the row only reserves the part
        elif row["split"] == "val":
            if len(self.val) >= self.cfg.val_samples:
                return 0
            self.val.append(row)
        else:
            self.train_count += 1
            self.session_accepted += 1
        self._count(row)
        self._bump("accepted")
        self.pending.append(row)
        if self.held_full and not self.flag.value:
            self.flag.value = True
        return 1

    def _write_families(self) -> None:
        families = {}
        for path in self.heldout_dir.glob("*.py"):
            families[path.stem] = "heldout"
        _write_json(self.heldout_dir / "families.json", families)

    def flush(self) -> None:
        """Append the rows taken since the last flush as one chunk (atomic: a chunk is whole or absent)."""
        if not self.pending and not self.pending_blocks:
            return
        chunk = {"rows": self.pending, "blocks": self.pending_blocks, "rejected": self._pending_rejected,
                 "counts": self._pending_counts, "block_wall": self._pending_time[0],
                 "block_cpu": self._pending_time[1]}
        _atomic_write(self.folder / f"chunk-{self.chunks:06d}.pkl",
                      pickle.dumps(chunk, protocol=pickle.HIGHEST_PROTOCOL))
        self.done_blocks.update(self.pending_blocks)
        self.chunks += 1
        self.pending, self.pending_blocks = [], []
        self._pending_rejected, self._pending_counts, self._pending_time = {}, {}, [0.0, 0.0]
        self.last_flush = time.perf_counter()

    def close(self) -> None:
        """Stop the workers: idle ones exit, busy ones are killed after 5 s. The queue is drained
        before any kill and never read after one (a process killed mid-message would leave half of it)."""
        for _ in self.processes:
            self.tasks.put(None)
        deadline = time.perf_counter() + 5.0
        while time.perf_counter() < deadline and any(p.is_alive() for p in self.processes):
            self.pump(watch=False)
            time.sleep(0.1)
        self.pump(watch=False)
        for process in self.processes:
            if process.is_alive():
                process.kill()
            process.join(timeout=2.0)
        self.processes = []
        self.flush()

    def stats(self) -> dict[str, Any]:
        seconds = time.perf_counter() - self.started_at if self.started_at else 0.0
        workers = data_workers(self.cfg)
        rate = self.session_accepted / seconds if seconds > 0 else 0.0
        return {
            "workers": workers, "train_samples": self.train_count, "val_samples": len(self.val),
            "heldout_samples": len(self.heldout_names), "families": dict(sorted(self.families.items())),
            "rejected": dict(sorted(self.rejected.items())), **self.counts, "stuck_seeds": self.stuck_seeds,
            "this_session": {"seconds": round(seconds, 1), "train_samples": self.session_accepted,
                             "samples_per_s": round(rate, 2),
                             "samples_per_s_per_worker": round(rate / workers, 3)},
            "cpu_s_per_seed_tried": round(self.block_cpu / max(1, len(self.done_blocks) * self.cfg.block), 3),
        }


class RowTable:
    """Rows as ``train_compact.validate`` reads a dataset: ``table[indices]`` gives columns."""

    def __init__(self, rows: list[dict]):
        self.rows = rows

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, indices: list[int]) -> dict[str, list]:
        rows = [self.rows[i] for i in indices]
        return {"image": [r["image"] for r in rows], "code": [r["code"] for r in rows]}


# ---------------------------------------------------------------------------------------- the model


def builtin_pair(cfg: RetrainConfig) -> tuple[Path, Path] | None:
    from model_runtime.backends import find_gguf_pair

    return find_gguf_pair(Path(cfg.models))


def warm_start_source(cfg: RetrainConfig, run: Path, log=print) -> Path | None:
    """The Hugging Face folder to start from, or None (from scratch); says which and why."""
    from training.train_compact import model_config

    if cfg.init == "scratch":
        log(f"init: from scratch with the {cfg.preset} preset (--init scratch)")
        return None
    if cfg.init != "auto":
        log(f"init: warm start from {cfg.init}")
        return Path(cfg.init)
    pair = builtin_pair(cfg)
    if pair is None:
        log(f"init: from scratch with the {cfg.preset} preset (no built-in model in {cfg.models})")
        return None
    from training.gguf_import import GGUFImportError, import_gguf_pair, pair_architecture

    try:
        arch = pair_architecture(*pair)
    except GGUFImportError as exc:
        log(f"init: from scratch with the {cfg.preset} preset (the built-in model cannot be read: {exc})")
        return None
    wanted = model_config(cfg.compact(cfg.lr, cfg.warmup_steps))
    if arch != wanted:
        log(f"init: from scratch with the {cfg.preset} preset (the built-in model's architecture "
            f"differs from the preset's: {arch} vs {wanted})")
        return None
    folder = run / "init"
    if not (folder / "config.json").exists():
        import_gguf_pair(*pair, folder)
    log(f"init: warm start from the built-in model {pair[0].name} (read back from GGUF into {folder})")
    return folder


def program_code(seed: int, family_share: float) -> str:
    from training.synth.program import generate

    return generate(seed, family_share=family_share).code


def prepare_tokenizer(cfg: RetrainConfig, run: Path, source: Path | None, programs):
    """A warm start keeps its model's tokenizer; from scratch, one is trained on programs drawn (not
    run) from this run's seeds plus the real-part programs. Saved in ``run/tokenizer`` once."""
    from training.code_tokenizer import load_code_tokenizer, train_code_tokenizer

    folder = run / "tokenizer"
    if (folder / "tokenizer.model").exists():
        return load_code_tokenizer(folder)
    if source is not None:
        folder.mkdir(parents=True, exist_ok=True)
        for path in source.iterdir():
            if path.name.startswith(("tokenizer", "special_tokens")):
                shutil.copy2(path, folder / path.name)
        return load_code_tokenizer(folder)
    import functools

    from training.synth.writer import _context

    seeds = range(cfg.base_seed, cfg.base_seed + cfg.tokenizer_programs)
    draw = functools.partial(program_code, family_share=cfg.family_share)
    with _context().Pool(data_workers(cfg)) as pool:
        codes = list(tqdm(pool.imap(draw, seeds, chunksize=64), total=len(seeds), desc="tokenizer programs",
                          unit="prog", mininterval=2))
    return train_code_tokenizer(codes + [p["code"] for p in programs], folder, vocab_size=cfg.vocab_size)


# -------------------------------------------------------------------------------------------- train


def train(cfg: RetrainConfig, run: Path, log=print) -> Path:
    """Stream data and train for the budget; returns the finished model folder (``run/model``)."""
    import torch
    from torch.utils.data import DataLoader

    from training.collate import LlavaCollator
    from training.replay import ReplayBatches
    from training.train_compact import (
        TrainState,
        load_checkpoint,
        load_model,
        load_token_bag_head,
        make_optimizer,
        model_config,
        save_checkpoint,
        save_final,
        token_bag_parts,
        train_step,
        validate,
    )
    from training.validation import plot_curves

    final = run / "model"
    if (run / "trained.json").exists() and (final / "config.json").exists():
        log(f"training: done before ({run / 'trained.json'})")
        return final
    device = torch.device(cfg.device)
    programs = recognised_programs(cfg, log)
    resuming = (run / "checkpoint" / "trainer_state.pt").exists()
    source = None if resuming else warm_start_source(cfg, run, log)
    if resuming:
        started = json.loads((run / "init.json").read_text())
        log(f"init: resuming {run / 'checkpoint'} ({started['init']})")
    else:
        started = {"init": f"warm start from {source}" if source else f"from scratch, {cfg.preset} preset",
                   "warm": source is not None}
        _write_json(run / "init.json", started)
    warm = started["warm"]
    warmup = max(1, cfg.warmup_steps // 5) if warm else cfg.warmup_steps
    ccfg = cfg.compact(cfg.warm_lr if warm else cfg.lr, warmup)
    tokenizer = prepare_tokenizer(cfg, run, source, programs)
    arch = model_config(ccfg)
    model, processor = load_model(arch, tokenizer, cfg.seed, run / "checkpoint" if resuming else source)
    model.to(device)
    collator = LlavaCollator(processor, max_length=cfg.max_length)
    head, tap = token_bag_parts(model, arch, tokenizer, ccfg, device)
    optimizer = make_optimizer(model, ccfg, *([head] if head is not None else []))
    budget_s = 60.0 * cfg.minutes
    clock = {"trained_s": 0.0}

    def factor(step: int) -> float:
        from training.train_compact import cosine_factor

        if step < ccfg.warmup_steps:
            return (step + 1) / ccfg.warmup_steps
        return cosine_factor(clock["trained_s"] / budget_s if budget_s > 0 else 1.0, ccfg.min_lr_ratio)

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
    state = load_checkpoint(run, optimizer, scheduler, head) if resuming else TrainState()
    if source is not None and head is not None:
        load_token_bag_head(source.parent, head)  # a train_compact run folder keeps its head
    clock["trained_s"] = float(state.history.get("trained_s", 0.0))
    n_params = sum(p.numel() for p in model.parameters())
    log(f"{n_params / 1e6:.1f} M parameters, {arch.image_tokens} image tokens, device {device}, "
        f"{data_workers(cfg)} data workers, budget {cfg.minutes:g} min ({clock['trained_s']:.0f} s used)")

    stream = DataStream(cfg, run, programs, collator, arch.image_size)
    stream.start()
    try:
        with tqdm(total=cfg.min_samples, desc="first samples", unit="sample", mininterval=1) as bar:
            bar.update(min(stream.train_count, cfg.min_samples))
            while stream.train_count < cfg.min_samples:
                if stream.pump():
                    bar.update(min(stream.train_count, cfg.min_samples) - bar.n)
                    bar.set_postfix(rejected=sum(stream.rejected.values()), refresh=False)
                time.sleep(0.1)
        stream.flush()
        batch_workers = cfg.batch_workers if cfg.batch_workers >= 0 else (5 if device.type == "cuda" else 0)
        loader = DataLoader(ReplayBatches(stream.folder, collator, cfg.batch_size, cfg.seed, state.step),
                            batch_size=None, num_workers=batch_workers, pin_memory=device.type == "cuda",
                            prefetch_factor=4 if batch_workers else None)
        val = RowTable(stream.val)  # the stream's own list: it fills while the model trains
        use_bf16 = device.type == "cuda" and torch.cuda.is_bf16_supported()
        model.train()
        progress = tqdm(total=round(budget_s), initial=min(round(clock["trained_s"]), round(budget_s)),
                        desc="train", unit="s")
        last_save = window_start = time.perf_counter()
        window_samples = 0
        batches = iter(loader)
        while clock["trained_s"] < budget_s:
            step_start = time.perf_counter()
            batch = next(batches)
            loss, bag_loss, grad_norm = train_step(model, batch, optimizer, scheduler, ccfg, device,
                                                   head, tap, use_bf16)
            state.step += 1
            window_samples += cfg.batch_size
            stream.pump()
            spent = time.perf_counter() - step_start
            clock["trained_s"] += spent
            progress.update(min(round(clock["trained_s"]), round(budget_s)) - progress.n)
            if state.step % cfg.log_every == 0:
                rate = window_samples / (time.perf_counter() - window_start)
                window_start, window_samples = time.perf_counter(), 0
                state.history["train"].append({
                    "step": state.step, "loss": loss.item(), "lr": scheduler.get_last_lr()[0],
                    "grad_norm": float(grad_norm), "samples_per_s": rate,
                    "buffer": stream.train_count, "trained_s": round(clock["trained_s"], 1),
                    **({"token_bag_loss": bag_loss.item()} if bag_loss is not None else {}),
                })
                progress.set_postfix(loss=f"{loss.item():.4f}", sps=f"{rate:.0f}", buffer=stream.train_count)
            done = clock["trained_s"] >= budget_s
            if len(val) and (state.step % cfg.val_every == 0 or done):
                metrics = validate(model, processor, collator, val, None, ccfg, device)
                state.history["val"].append({"step": state.step, **metrics})
                tqdm.write(f"step {state.step}: val loss {metrics['val_loss']:.4f}  "
                           f"(shuffled images +{metrics['image_reliance']:.4f})")
            if done or time.perf_counter() - last_save > cfg.save_every_s:
                state.history["trained_s"] = clock["trained_s"]
                stream.flush()
                save_checkpoint(run, model, processor, optimizer, scheduler, state, head)
                plot_curves(state.history["train"] + state.history["val"], run / "curves.png")
                last_save = window_start = time.perf_counter()
                window_samples = 0
        progress.close()
    finally:
        stream.close()
        _write_json(run / "stream.json", stream.stats())
    if tap is not None:
        tap.close()
    state.history["trained_s"] = clock["trained_s"]
    final = save_final(run, model, processor, arch, state)
    _write_json(run / "trained.json", {"steps": state.step, "trained_s": clock["trained_s"],
                                       "samples_seen": state.step * cfg.batch_size, **started})
    return final


# ------------------------------------------------------------------------------- export, evaluation


def export_model(run: Path, final: Path, cfg: RetrainConfig, log=print) -> tuple[Path, Path]:
    from training.export_gguf import export

    folder = run / "gguf"
    text, mmproj = folder / f"{MODEL_NAME}-{cfg.export_quant}.gguf", folder / f"mmproj-{MODEL_NAME}-f16.gguf"
    if (run / "exported.json").exists() and text.exists() and mmproj.exists():
        return text, mmproj
    result = export(final, folder, outtype="f16", quant=(cfg.export_quant,), name=MODEL_NAME)
    result.text.unlink(missing_ok=True)  # the f16 text model: the quantised one is what ships
    _write_json(run / "exported.json", {"text": text.name, "mmproj": mmproj.name,
                                        "bytes": text.stat().st_size + mmproj.stat().st_size})
    log(f"exported {text} and {mmproj}")
    return text, mmproj


def eval_settings(cfg: RetrainConfig) -> dict[str, Any]:
    return {"n": cfg.eval_n, "search": cfg.eval_search,
            "evaluations": None if cfg.eval_evaluations < 0 else cfg.eval_evaluations}


def evaluate_pair(pair: tuple[Path, Path], data: Path, out: Path, title: str, cfg: RetrainConfig,
                  log=print, threads: int | None = None) -> dict[str, Any]:
    """``training.evaluate`` on ``data`` with the pipeline's settings; the report is kept (resumes)."""
    from model_runtime.backends import load_backend
    from model_runtime.pipeline import Pipeline
    from model_runtime.sandbox import SandboxPool
    from training.evaluate import load_samples, run_evaluation

    if (out / "report.json").exists():
        return json.loads((out / "report.json").read_text())
    samples = load_samples(data, limit=cfg.eval_limit or None)
    workers = cfg.eval_workers or max(1, min(4, (os.cpu_count() or 2) - 2))
    settings = eval_settings(cfg)
    log(f"evaluate {title} on {len(samples)} parts of {data} (best-of-{cfg.eval_n}, search "
        f"{'on' if cfg.eval_search else 'off'})")
    backend = load_backend("gguf", model=pair[0], mmproj=pair[1], n_threads=threads)
    try:
        with SandboxPool(workers=workers) as pool:
            run_evaluation(samples, Pipeline(backend, pool), pool, n=settings["n"], out_dir=out,
                           search=settings["search"], evaluations=settings["evaluations"],
                           max_new_tokens=cfg.eval_max_new_tokens,
                           settings={"title": title, "backend": "gguf", "model": pair[0].name,
                                     "data": f"{data.name} (folder of images)", "samples": len(samples)})
    finally:
        close = getattr(backend, "close", None)
        if close is not None:
            close()
    return json.loads((out / "report.json").read_text())


def _same_settings(stored: dict[str, Any], cfg: RetrainConfig) -> bool:
    mode = stored.get("settings", {}).get("mode", "")
    search = stored.get("settings", {}).get("picture search", "")
    wanted_mode = "greedy (N=1)" if cfg.eval_n == 1 else f"best-of-{cfg.eval_n}:"
    budget = "default" if cfg.eval_evaluations < 0 else str(cfg.eval_evaluations)
    searched = search.startswith("on") and f"budget {budget} evaluations" in search
    return mode.startswith(wanted_mode) and (searched if cfg.eval_search else search == "off")


def stored_oof(cfg: RetrainConfig, names: list[str], log=print) -> dict[str, Any] | None:
    """The current model's out-of-family numbers on ``names`` from its stored report, when that report
    used the same settings and covers them (else None: it is evaluated, unless --baseline stored)."""
    stored_path = Path(cfg.models) / BUILTIN_OOF_REPORT
    if cfg.baseline == "run" or not stored_path.exists():
        return None
    stored = json.loads(stored_path.read_text())
    by_name = {s["name"]: s for s in stored["samples"]}
    if not (_same_settings(stored, cfg) and all(n in by_name for n in names)):
        return None
    log(f"current model out of family: its stored report {stored_path} ({len(names)} parts)")
    return {"source": str(stored_path), **_means([by_name[n] for n in names])}


def run_evaluations(jobs: dict[str, tuple], cfg: RetrainConfig, log=print) -> dict[str, dict[str, Any]]:
    """``{key: (pair, data, out, title)}`` -> reports; several at once on a machine with the cores
    (``--eval-parallel``), each with its share of the threads."""
    cores = os.cpu_count() or 2
    parallel = min(len(jobs), cfg.eval_parallel or max(1, cores // 5)) if jobs else 1
    threads = max(1, cores // parallel)
    if parallel <= 1:
        return {key: evaluate_pair(*job, cfg, log=log, threads=threads) for key, job in jobs.items()}
    from concurrent.futures import ProcessPoolExecutor

    from training.synth.writer import _context

    log(f"evaluating {len(jobs)} sets, {parallel} at a time ({threads} threads each)")
    with ProcessPoolExecutor(parallel, mp_context=_context()) as pool:
        futures = {key: pool.submit(evaluate_pair, *job, cfg, threads=threads) for key, job in jobs.items()}
        return {key: future.result() for key, future in futures.items()}


def _means(samples: list[dict[str, Any]]) -> dict[str, Any]:
    n = len(samples)

    def mean(key: str) -> float | None:
        values = [s.get(key) for s in samples]
        return sum(v or 0.0 for v in values) / n if n else None

    # The model's own ranked winner before fitting and search; 0 when none of its candidates ran
    # (the report's model_iou then holds the search's answer, which is not the model's).
    own = [(s.get("model_iou") or 0.0) if s.get("n_valid") else 0.0 for s in samples]
    return {"n": n, "vsr": sum(bool(s["valid"]) for s in samples) / n if n else None,
            "iou_mean": mean("iou"), "bbox_iou_mean": mean("bbox_iou"),
            "model_iou_mean": sum(own) / n if n else None}


# ------------------------------------------------------------------------------ report and install


def decide(cfg: RetrainConfig, new_oof: dict[str, Any], current: dict[str, Any] | None) -> tuple[bool, str]:
    if cfg.install == "never":
        return False, "not installed (--install never)"
    if cfg.install == "always":
        return True, "installed (--install always)"
    if current is None:
        return False, "not installed: no current model to compare with"
    gain = new_oof["iou_mean"] - current["iou_mean"]
    own = new_oof["model_iou_mean"] - current["model_iou_mean"]
    said = f"{gain:+.3f} mean IoU out of family, {own:+.3f} with the model's own programs"
    if gain > 0 and own >= 0:
        return True, f"installed: beats the current model ({said})"
    return False, f"not installed: {said} against the current model (both must not fall, the first rise)"


def install(cfg: RetrainConfig, run: Path, pair: tuple[Path, Path]) -> list[str]:
    """The new pair (and its curves and reports) into the models folder; the old pair's files go."""
    models = Path(cfg.models)
    models.mkdir(parents=True, exist_ok=True)
    old = builtin_pair(cfg)
    for path in old or ():
        if path.name not in (pair[0].name, pair[1].name):
            path.unlink()
    written = []
    for path in pair:
        shutil.copy2(path, models / path.name)
        written.append(path.name)
    if (run / "curves.png").exists():
        shutil.copy2(run / "curves.png", models / "curves.png")
        written.append("curves.png")
    for name in ("oof", "heldout"):
        source = run / "eval" / name
        if source.exists():
            target = models / "eval" / f"retrain-{name}"
            shutil.rmtree(target, ignore_errors=True)
            shutil.copytree(source, target)
            written.append(f"eval/retrain-{name}")
    return written


def _fmt(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f}"


def write_report(run: Path, cfg: RetrainConfig, rows: dict[str, Any], decision: str) -> dict[str, Any]:
    trained = json.loads((run / "trained.json").read_text())
    stream = json.loads((run / "stream.json").read_text()) if (run / "stream.json").exists() else {}
    session = stream.get("this_session", {})
    payload = {"config": dataclasses.asdict(cfg), "trained": trained, "data": stream, **rows,
               "decision": decision}
    _write_json(run / "report.json", payload)
    lines = [
        "# Retrain report", "",
        f"- init: {trained['init']}",
        f"- training: {trained['steps']} steps of batch {cfg.batch_size} in {trained['trained_s']:.0f} s "
        f"(budget {cfg.minutes:g} min), device {cfg.device}",
        f"- data on the fly: {stream.get('train_samples', 0)} training samples made by "
        f"{stream.get('workers')} workers ({session.get('samples_per_s_per_worker', 0)} samples/s per "
        f"worker in the last session), {stream.get('val_samples', 0)} val, "
        f"{stream.get('heldout_samples', 0)} held out; families {stream.get('families', {})}",
        f"- dropped: duplicates {stream.get('duplicates', 0)}, like an out-of-family part "
        f"{stream.get('eval_oof_lookalike', 0)}, over {cfg.max_length} tokens {stream.get('too_long', 0)}; "
        f"rejected {stream.get('rejected', {})}",
        f"- evaluation: the user's pipeline, best-of-{cfg.eval_n}, picture search "
        f"{'on' if cfg.eval_search else 'off'}; failures count as IoU 0",
        "",
        "| data | model | N | VSR | mean IoU | model's numbers | bounding-box baseline | source |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for key, label in (("oof", "out of family (eval_oof)"), ("heldout", "in family, held out")):
        for who in ("new", "current"):
            r = rows.get(f"{key}_{who}")
            if r:
                lines.append(f"| {label} | {who} | {r['n']} | {r['vsr']:.0%} | **{_fmt(r['iou_mean'])}** | "
                             f"{_fmt(r.get('model_iou_mean'))} | {_fmt(r.get('bbox_iou_mean'))} | "
                             f"{r.get('source', '')} |")
    lines += ["", f"**Decision:** {decision}", "", "![training curves](curves.png)", ""]
    (run / "report.md").write_text("\n".join(lines), encoding="utf-8")
    return payload


def retrain(cfg: RetrainConfig, log=print) -> dict[str, Any]:
    """All stages; returns the report's payload."""
    run = run_folder(cfg)
    run.mkdir(parents=True, exist_ok=True)
    _write_json(run / "retrain_config.json", dataclasses.asdict(cfg))
    final = train(cfg, run, log)
    pair = export_model(run, final, cfg, log)
    from training.evaluate import load_samples

    oof_data, heldout = Path(cfg.eval_oof), run / "heldout"
    names = [sample.name for sample in load_samples(oof_data, limit=cfg.eval_limit or None)]
    stored = stored_oof(cfg, names, log)
    current = builtin_pair(cfg)
    evaluated = cfg.baseline != "stored" and current is not None
    jobs = {"oof_new": (pair, oof_data, run / "eval" / "oof", "retrained, out of family")}
    if stored is None and evaluated:
        jobs["oof_current"] = (current, oof_data, run / "eval" / "current-oof",
                               "current built-in, out of family")
    if any(heldout.glob("*.py")):
        jobs["heldout_new"] = (pair, heldout, run / "eval" / "heldout", "retrained, in family")
        if evaluated:
            jobs["heldout_current"] = (current, heldout, run / "eval" / "current-heldout",
                                       "current built-in, in family")
    reports = run_evaluations(jobs, cfg, log)
    rows: dict[str, Any] = {"oof_current": stored}
    for key, (_, _, out, _) in jobs.items():
        rows[key] = {"source": str((out / "report.json").relative_to(run)), **_means(reports[key]["samples"])}
    install_it, decision = decide(cfg, rows["oof_new"], rows["oof_current"])
    if install_it:
        written = install(cfg, run, pair)
        decision += f" ({', '.join(written)} in {cfg.models})"
    payload = write_report(run, cfg, rows, decision)
    payload["installed"] = install_it
    _write_json(run / "report.json", payload)
    log(f"{decision}\nreport: {run / 'report.md'}")
    return payload


# --------------------------------------------------------------------------------------------- CLI


def parse_config(argv: list[str] | None = None) -> RetrainConfig:
    parser = argparse.ArgumentParser(prog="python -m training.retrain", description=__doc__.split("\n")[0])
    for f in dataclasses.fields(RetrainConfig):
        flag = f"--{f.name.replace('_', '-')}"
        if isinstance(f.default, bool):
            parser.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction, default=f.default)
        else:
            parser.add_argument(flag, dest=f.name, type=type(f.default), default=f.default,
                                choices=CHOICES.get(f.name))
    return RetrainConfig(**vars(parser.parse_args(argv)))


def check_device(cfg: RetrainConfig) -> str | None:
    """A plain sentence when the device cannot train, else None."""
    if cfg.device not in ("cuda", "cpu") and not cfg.device.startswith("cuda:"):
        return f"unknown device {cfg.device!r}: use cuda or cpu"
    if cfg.device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            return ("no CUDA device here: the retrain trains on a GPU (about 10 minutes). "
                    "--device cpu runs it on the CPU, for tiny runs such as the tests'")
    return None


def main(argv: list[str] | None = None) -> int:
    cfg = parse_config(argv)
    problem = check_device(cfg)
    if problem is not None:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    if not math.isfinite(cfg.minutes) or cfg.minutes <= 0:
        print("error: --minutes must be positive", file=sys.stderr)
        return 2
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    retrain(cfg)
    return 0


if __name__ == "__main__":
    sys.exit(main())
