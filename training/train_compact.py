"""Train the compact built-in CadSnap model from scratch: a small LLaVA (ViT -> MLP -> Llama).

Read top to bottom: config, data, tokenizer, model, schedule, loop (with validation and
checkpoints), curves. The model is a plain ``LlavaForConditionalGeneration`` built by
``training.llava_model``, batches come from the shared ``training.collate.LlavaCollator`` (the same
prompt and label masking as the QLoRA recipe), so the result goes through the same merge-free GGUF
export and backends as a fine-tuned 7B model.

    python -m training.train_compact --data DATA --out RUN              # train (or continue) a run
    python -m training.train_compact --data DATA --out RUN --synth 60000 --export model_runtime/models
                                                                         # regenerate data, train, export

A run is resumable: ``RUN/checkpoint`` holds the weights, optimiser, schedule, data position and
history; starting the same command again continues where it stopped (bit for bit on CPU). The
finished model is saved as a Hugging Face folder in ``RUN/model`` with ``RUN/curves.png``.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import math
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

from training.synth.program import FAMILY_SHARE
from training.validation import plot_curves


@dataclass
class CompactTrainConfig:
    data: str = "scratch/data"  # a training.synth dataset folder (train + val splits)
    out: str = "scratch/compact"  # run folder: tokenizer/, checkpoint/, model/, curves.png, history.json
    preset: str = "compact"  # model size: compact, small or tiny (see model_config)
    vocab_size: int = 1024  # code tokenizer size; numbers and common calls become single tokens
    max_length: int = 512  # image tokens + prompt + code; longer samples are dropped, never cut
    batch_size: int = 16
    lr: float = 1e-3
    min_lr_ratio: float = 0.05  # cosine decays to lr * this
    warmup_steps: int = 200
    max_steps: int = 20_000  # the schedule's length; a run may stop earlier and resume later
    stop_at: int = 0  # > 0: checkpoint and stop after this step (time-boxed sessions)
    time_limit_min: float = 0.0  # > 0: checkpoint and stop after this many minutes
    weight_decay: float = 0.05
    token_bag_weight: float = 0.5  # auxiliary image -> answer-token-set loss (training.token_bag); 0: off
    # The ViT's learning rate relative to lr. Its random-init features already separate part families
    # in the reference look (a linear probe: 45 % vs 12 % chance); at the full rate the decoder's noisy
    # early gradients wiped that out within 400 steps (probe at chance), so it learns slower.
    vision_lr_scale: float = 0.1
    grad_clip: float = 1.0
    threads: int = 0  # torch CPU threads; 0 keeps torch's default (all cores)
    # Processes that build batches ahead of the model (decode, square, resize, tokenise). 0: in the
    # training process, as on a 2-core CPU; on a GPU the model outruns one process by far.
    workers: int = 0
    device: str = "auto"  # auto: cuda when available, else cpu
    max_train_samples: int = 0  # 0 = all
    log_every: int = 10
    save_every: int = 200
    eval_every: int = 1000
    eval_samples: int = 16  # val images decoded greedily and run in the sandbox per validation; 0: loss only
    max_new_tokens: int = 400
    seed: int = 0
    # A finished run folder to warm-start from: its tokenizer, weights and token-set head, with a fresh
    # optimiser and schedule (a second cosine cycle). Ignored once OUT has its own checkpoint.
    init_from: str = ""
    synth: int = 0  # > 0: first regenerate DATA with this many samples (python -m training.synth)
    synth_workers: int = 2
    # Share of --synth seeds from the 20 named families (the rest from the part grammar). The shipped
    # model's data (data/synth-v2) is families only: 1.0 resumes or regenerates exactly that.
    synth_family_share: float = FAMILY_SHARE
    export: str = ""  # a folder: export the finished model to GGUF there (training.export_gguf)
    export_quant: str = "q8_0"


# ------------------------------------------------------------------------------------------- data


def regenerate_data(cfg: CompactTrainConfig) -> None:
    """The data engine, as a subprocess (its own resumable CLI, progress and manifest)."""
    cmd = [sys.executable, "-m", "training.synth", "--n", str(cfg.synth), "--out", cfg.data,
           "--workers", str(cfg.synth_workers), "--family-share", str(cfg.synth_family_share)]
    print("$", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)


def load_rows(cfg: CompactTrainConfig, collator) -> tuple[Any, Any]:
    """Train and val splits, over-long samples dropped (filtered on text only: no image decoded)."""
    from training.collate import filter_overlong
    from training.synth.dataset import load_split

    train = load_split(cfg.data, "train")
    if cfg.max_train_samples:
        train = train.select(range(min(cfg.max_train_samples, len(train))))
    before = len(train)
    train = filter_overlong(train, collator)
    if len(train) < before:
        print(f"dropped {before - len(train)} of {before} training samples over {cfg.max_length} tokens")
    val = load_split(cfg.data, "val")
    val = val.select(range(min(len(val), max(cfg.eval_samples, cfg.batch_size))))
    return train, val


def batch_indices(step: int, batch_size: int, n: int, seed: int) -> list[int]:
    """Row indices of ``step``'s batch: a fresh permutation per epoch, so resuming needs only ``step``."""
    import numpy as np

    start = step * batch_size
    out: list[int] = []
    while len(out) < batch_size:
        epoch, offset = divmod(start + len(out), n)
        order = np.random.default_rng([seed, epoch]).permutation(n)
        out.extend(int(i) for i in order[offset: offset + batch_size - len(out)])
    return out


def rows_at(dataset, indices: list[int]) -> list[dict[str, Any]]:
    columns = dataset[indices]
    pairs = zip(columns["image"], columns["code"], strict=True)
    return [{"image": image, "code": code} for image, code in pairs]


class StepBatches:
    """Item ``step`` is that step's collated batch, so DataLoader workers can build batches ahead in
    any order and a resumed run still sees exactly the batches it would have seen."""

    def __init__(self, rows, collator, cfg: CompactTrainConfig):
        self.rows, self.collator, self.cfg = rows, collator, cfg

    def __len__(self) -> int:
        return self.cfg.max_steps

    def __getitem__(self, step: int) -> dict[str, Any]:
        indices = batch_indices(step, self.cfg.batch_size, len(self.rows), self.cfg.seed)
        return self.collator(rows_at(self.rows, indices))


def batch_loader(rows, collator, cfg: CompactTrainConfig, first_step: int, pin_memory: bool):
    from torch.utils.data import DataLoader

    return DataLoader(StepBatches(rows, collator, cfg), batch_size=None,
                      sampler=range(first_step, cfg.max_steps), num_workers=cfg.workers,
                      pin_memory=pin_memory, prefetch_factor=4 if cfg.workers else None)


# ------------------------------------------------------------------------------ tokenizer and model


def prepare_tokenizer(cfg: CompactTrainConfig, out: Path):
    """Trained once per run on the training programs, then reused (a resumed run must not retrain it)."""
    from training.code_tokenizer import load_code_tokenizer, train_code_tokenizer
    from training.synth.dataset import load_split

    folder = out / "tokenizer"
    if (folder / "tokenizer.model").exists():
        return load_code_tokenizer(folder)
    programs = load_split(cfg.data, "train").select_columns(["code"])["code"]
    return train_code_tokenizer(programs, folder, vocab_size=cfg.vocab_size)


def model_config(cfg: CompactTrainConfig):
    """Sizes: ``compact`` (the shared preset, ~13.6 M), ``small`` (~6 M: the same ViT and a 4x256 Llama,
    about 2x the compact preset's training samples/s on a busy 2-core CPU; see bench_compact) and
    ``tiny`` (tests)."""
    from dataclasses import replace

    from training.llava_model import LlavaModelConfig

    presets = {
        "compact": LlavaModelConfig.compact,
        "small": lambda: replace(LlavaModelConfig.compact(), text_hidden=256, text_layers=4, text_heads=4,
                                 text_kv_heads=4, text_intermediate=768),
        "tiny": LlavaModelConfig.tiny,
    }
    if cfg.preset not in presets:
        raise ValueError(f"unknown preset {cfg.preset!r}; choose one of {sorted(presets)}")
    return presets[cfg.preset]()


def cosine_factor(progress: float, min_ratio: float) -> float:
    """Cosine decay from 1 at ``progress`` 0 to ``min_ratio`` at 1 (and after)."""
    progress = min(1.0, max(0.0, progress))
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def lr_factor(step: int, cfg: CompactTrainConfig) -> float:
    """Linear warm-up, then cosine decay to ``min_lr_ratio``."""
    if step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    progress = (step - cfg.warmup_steps) / max(1, cfg.max_steps - cfg.warmup_steps)
    return cosine_factor(progress, cfg.min_lr_ratio)


def make_optimizer(model, cfg: CompactTrainConfig, *extra):
    """AdamW over the model and any ``extra`` training-only modules; no weight decay on norms,
    biases and embeddings' positional tables (1-D tensors)."""
    import itertools

    import torch

    vision = {id(p) for p in model.model.vision_tower.parameters()}
    params = [p for p in itertools.chain(model.parameters(), *(m.parameters() for m in extra))
              if p.requires_grad]
    groups = []
    for in_vision, scale in ((False, 1.0), (True, cfg.vision_lr_scale)):
        part = [p for p in params if (id(p) in vision) == in_vision]
        lr = cfg.lr * scale
        groups += [
            {"params": [p for p in part if p.dim() >= 2], "weight_decay": cfg.weight_decay, "lr": lr},
            {"params": [p for p in part if p.dim() < 2], "weight_decay": 0.0, "lr": lr},
        ]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(0.9, 0.95))


# ------------------------------------------------------------------------------------- checkpoints


@dataclass
class TrainState:
    step: int = 0
    history: dict[str, list] = field(default_factory=lambda: {"train": [], "val": []})


def save_checkpoint(
    out: Path, model, processor, optimizer, scheduler, state: TrainState, head=None
) -> None:
    """Written beside the old one and swapped in, so a run killed mid-save still has a checkpoint."""
    import torch

    tmp, final = out / "checkpoint.tmp", out / "checkpoint"
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    processor.save_pretrained(tmp)
    torch.save(
        {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "step": state.step,
         "torch_rng": torch.get_rng_state(), "token_bag": head.state_dict() if head is not None else None},
        tmp / "trainer_state.pt",
    )
    (tmp / "history.json").write_text(json.dumps(state.history))
    old = out / "checkpoint.old"
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
        final.rename(old)
    tmp.rename(final)
    shutil.rmtree(old, ignore_errors=True)


def load_checkpoint(out: Path, optimizer, scheduler, head=None) -> TrainState:
    """Optimiser, schedule, data position, history and auxiliary head of ``out/checkpoint`` (model
    weights: see ``train``)."""
    import torch

    folder = out / "checkpoint"
    trainer = torch.load(folder / "trainer_state.pt", weights_only=False)
    if head is not None and trainer.get("token_bag") is not None:
        head.load_state_dict(trainer["token_bag"])
    optimizer.load_state_dict(trainer["optimizer"])
    scheduler.load_state_dict(trainer["scheduler"])
    torch.set_rng_state(trainer["torch_rng"])
    history = json.loads((folder / "history.json").read_text())
    print(f"resuming {out} at step {trainer['step']}")
    return TrainState(step=trainer["step"], history=history)


def load_token_bag_head(run: Path, head) -> None:
    """The token-set head from ``run``'s last checkpoint, when it kept one (warm starts)."""
    import torch

    state_file = run / "checkpoint" / "trainer_state.pt"
    if state_file.exists():
        saved = torch.load(state_file, weights_only=False).get("token_bag")
        if saved is not None:
            head.load_state_dict(saved)


# ------------------------------------------------------------------------------- one step, one save


def load_model(arch, tokenizer, seed: int, source: Path | None = None):
    """A fresh LLaVA of ``arch`` for ``tokenizer`` and its processor; with ``source`` (a checkpoint or
    model folder) the weights come from there (``from_pretrained`` knows the saved key layout)."""
    import torch
    from transformers import LlavaForConditionalGeneration

    from training.llava_model import build_llava

    model, processor = build_llava(arch, tokenizer, seed=seed)
    if source is not None:
        model = LlavaForConditionalGeneration.from_pretrained(source, dtype=torch.float32)
    return model, processor


def token_bag_parts(model, arch, tokenizer, cfg: CompactTrainConfig, device):
    """The auxiliary token-set head and the tap on the image tokens; (None, None) when it is off."""
    if cfg.token_bag_weight <= 0:
        return None, None
    from training.token_bag import ImageTokenTap, TokenBagHead

    return TokenBagHead(arch.text_hidden, len(tokenizer)).to(device), ImageTokenTap(model)


def train_step(model, batch, optimizer, scheduler, cfg: CompactTrainConfig, device, head=None, tap=None,
               use_bf16: bool = False):
    """One optimiser step on ``batch``; returns (loss, token-set loss or None, gradient norm)."""
    import torch

    from training.token_bag import token_bag_loss

    batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16):
        loss = model(**batch).loss
        bag_loss = None
        if head is not None:
            bag_loss = token_bag_loss(head, tap.take(), batch["labels"])
    total = loss + cfg.token_bag_weight * bag_loss if bag_loss is not None else loss
    total.backward()
    trained = [*model.parameters(), *(head.parameters() if head is not None else [])]
    grad_norm = torch.nn.utils.clip_grad_norm_(trained, cfg.grad_clip)
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    return loss, bag_loss, grad_norm


def save_final(out: Path, model, processor, arch, state: TrainState) -> Path:
    """The finished model as a Hugging Face folder ``out/model`` (the export's input), with the history
    and curves beside it."""
    final = out / "model"
    model.save_pretrained(final)
    processor.save_pretrained(final)
    (final / "cadsnap_model.json").write_text(json.dumps(arch.to_dict(), indent=2))
    (out / "history.json").write_text(json.dumps(state.history, indent=1))
    plot_curves(state.history["train"] + state.history["val"], out / "curves.png")
    return final


# -------------------------------------------------------------------------------------- validation


def validate(model, processor, collator, val, pool, cfg: CompactTrainConfig, device) -> dict[str, float]:
    """Validation loss on one batch, and VSR/IoU of greedy decoding on ``eval_samples`` val images
    (none when ``pool`` is None: a machine without CadQuery, a GPU box). Decoding and scoring are
    ``training.validation``'s, shared with the QLoRA recipe."""
    import torch

    from training.validation import decode_and_score

    model.eval()
    with torch.no_grad():
        rows = rows_at(val, list(range(min(len(val), cfg.batch_size))))
        batch = {k: v.to(device) for k, v in collator(rows).items()}
        val_loss = model(**batch).loss.item()
        # How much the answer depends on the picture: the loss with each row given another row's image.
        shuffled = model(**{**batch, "pixel_values": batch["pixel_values"].roll(1, dims=0)}).loss.item()
    model.train()
    losses = {"val_loss": val_loss, "image_reliance": shuffled - val_loss}
    if pool is None:
        return losses
    decoded = rows_at(val, list(range(min(cfg.eval_samples, len(val)))))
    try:
        metrics, _ = decode_and_score(model, processor, decoded, pool, max_new_tokens=cfg.max_new_tokens)
    except ValueError as exc:  # no ground truth ran: bad validation data must not end a long run
        print(f"validation decoding skipped: {exc}", flush=True)
        return losses
    return {**losses, "vsr": metrics["vsr"], "iou": metrics["iou"]}


# -------------------------------------------------------------------------------------------- main


def train(cfg: CompactTrainConfig) -> Path:
    """Train (or continue) the run in ``cfg.out``; returns the saved model folder."""
    import torch

    from model_runtime.sandbox import SandboxPool
    from training.collate import LlavaCollator

    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    if cfg.synth:
        regenerate_data(cfg)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = torch.device("cuda" if cfg.device == "auto" and torch.cuda.is_available() else
                          ("cpu" if cfg.device == "auto" else cfg.device))
    (out / "train_config.json").write_text(json.dumps(dataclasses.asdict(cfg), indent=2))

    resuming = (out / "checkpoint" / "trainer_state.pt").exists()
    warm_start = Path(cfg.init_from) if cfg.init_from and not resuming else None
    if warm_start is not None and not (out / "tokenizer").exists():  # the weights only fit its tokenizer
        shutil.copytree(warm_start / "tokenizer", out / "tokenizer")
    tokenizer = prepare_tokenizer(cfg, out)
    arch = model_config(cfg)
    source = (out / "checkpoint") if resuming else (warm_start / "model" if warm_start is not None else None)
    model, processor = load_model(arch, tokenizer, cfg.seed, source)
    model.to(device)
    collator = LlavaCollator(processor, max_length=cfg.max_length)
    train_rows, val_rows = load_rows(cfg, collator)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"{n_params / 1e6:.1f} M parameters, {arch.image_tokens} image tokens, "
          f"{len(train_rows)} training samples, device {device}, {torch.get_num_threads()} threads")

    head, tap = token_bag_parts(model, arch, tokenizer, cfg, device)
    optimizer = make_optimizer(model, cfg, *([head] if head is not None else []))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, cfg))
    state = load_checkpoint(out, optimizer, scheduler, head) if resuming else TrainState()
    if warm_start is not None and head is not None:
        load_token_bag_head(warm_start, head)

    model.train()
    use_bf16 = device.type == "cuda" and torch.cuda.is_bf16_supported()
    progress = tqdm(range(state.step, cfg.max_steps), initial=state.step, total=cfg.max_steps, desc="train")
    batches = batch_loader(train_rows, collator, cfg, state.step, pin_memory=device.type == "cuda")
    with SandboxPool(workers=1) if cfg.eval_samples else contextlib.nullcontext() as pool:
        session_start = window_start = time.perf_counter()
        window_samples = 0
        for step, batch in zip(progress, batches, strict=False):
            loss, bag_loss, grad_norm = train_step(model, batch, optimizer, scheduler, cfg, device,
                                                   head, tap, use_bf16)
            state.step = step + 1
            window_samples += cfg.batch_size

            if state.step % cfg.log_every == 0 or state.step == cfg.max_steps:
                rate = window_samples / (time.perf_counter() - window_start)
                window_start, window_samples = time.perf_counter(), 0
                state.history["train"].append({
                    "step": state.step, "loss": loss.item(), "lr": scheduler.get_last_lr()[0],
                    "grad_norm": float(grad_norm), "samples_per_s": rate,
                    **({"token_bag_loss": bag_loss.item()} if bag_loss is not None else {}),
                })
                progress.set_postfix(loss=f"{loss.item():.4f}", sps=f"{rate:.1f}")
            if state.step % cfg.eval_every == 0 or state.step == cfg.max_steps:
                metrics = validate(model, processor, collator, val_rows, pool, cfg, device)
                state.history["val"].append({"step": state.step, **metrics})
                decoded = f"  VSR {metrics['vsr']:.2f}  IoU {metrics['iou']:.3f}" if "vsr" in metrics else ""
                tqdm.write(f"step {state.step}: val loss {metrics['val_loss']:.4f}  "
                           f"(shuffled images +{metrics['image_reliance']:.4f}){decoded}")
            out_of_time = (cfg.stop_at and state.step >= cfg.stop_at) or (
                cfg.time_limit_min and time.perf_counter() - session_start > 60 * cfg.time_limit_min
            )
            if out_of_time:
                save_checkpoint(out, model, processor, optimizer, scheduler, state, head)
                plot_curves(state.history["train"] + state.history["val"], out / "curves.png")
                print(f"stopped at step {state.step} of {cfg.max_steps}; run the same command to continue")
                return out / "checkpoint"
            if state.step % cfg.save_every == 0 or state.step == cfg.max_steps:
                save_checkpoint(out, model, processor, optimizer, scheduler, state, head)
                plot_curves(state.history["train"] + state.history["val"], out / "curves.png")
            if state.step % cfg.eval_every == 0 or state.step % cfg.save_every == 0:
                window_start = time.perf_counter() - 1e-9  # throughput excludes validation and saving
                window_samples = 0

    if tap is not None:
        tap.close()
    final = save_final(out, model, processor, arch, state)
    if cfg.export:
        cmd = [sys.executable, "-m", "training.export_gguf", str(final), "--out", cfg.export,
               "--quant", cfg.export_quant, "--name", "cadsnap-compact"]
        print("$", " ".join(cmd), flush=True)
        subprocess.run(cmd, check=True)
    return final


def parse_config(argv: list[str] | None = None) -> CompactTrainConfig:
    """Every config field is a ``--flag`` (underscores as dashes), typed and defaulted from the dataclass."""
    parser = argparse.ArgumentParser(
        prog="python -m training.train_compact", description=__doc__.split("\n")[0]
    )
    for f in dataclasses.fields(CompactTrainConfig):
        flag = f"--{f.name.replace('_', '-')}"
        parser.add_argument(flag, dest=f.name, type=type(f.default), default=f.default)
    return CompactTrainConfig(**vars(parser.parse_args(argv)))


def main(argv: list[str] | None = None) -> int:
    cfg = parse_config(argv)
    if not cfg.synth and not Path(cfg.data).exists():
        print(f"error: no data at {cfg.data}; generate it with --synth N (or python -m training.synth)",
              file=sys.stderr)
        return 2
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    print(f"model in {train(cfg)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
