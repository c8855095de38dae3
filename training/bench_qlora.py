"""Peak GPU memory and seconds per step of the QLoRA recipe on a LLaVA-1.5-7B-shaped model.

    python -m training.bench_qlora --out runs/bench_qlora        # needs a CUDA GPU for real numbers

Nothing is downloaded: the model is built from LLaVA-1.5-7B's real configuration values (CLIP
ViT-L/14 at 336 px -> 576 image tokens, 2-layer GELU projector, Llama-2-7B text model, vocabulary
32064) with random weights, saved once under ``OUT/base`` and then trained by ``training.qlora``
itself -- same loading, NF4, LoRA targets, gradient checkpointing, optimiser and precision -- on
one sample of ``--tokens`` tokens (image tokens included), batch 1. The seed's budget for a free
Colab T4 is < 10 GB. Writes ``OUT/bench_qlora.json`` and ``OUT/bench_qlora.md``.

``--shape tiny`` runs the same path on the test-sized model (CPU is fine) to check the script.
Building the random 7B base needs ~15 GB of free GPU memory (or CPU RAM with ``--init-device cpu``).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from training.llava_model import LlavaModelConfig

# llava-hf/llava-1.5-7b-hf's config.json, in our builder's terms.
LLAVA_15_7B = LlavaModelConfig(
    image_size=336, patch_size=14, vision_hidden=1024, vision_layers=24, vision_heads=16,
    vision_intermediate=4096, text_hidden=4096, text_layers=32, text_heads=32, text_kv_heads=32,
    text_intermediate=11008, max_positions=4096, rope_theta=10000.0,
)
LLAVA_15_VOCAB = 32064

# Enough CadQuery for a tokenizer that knows the usual pieces; the bench pads code to length with it.
_CODE_LINES = [
    "import cadquery as cq",
    'result = cq.Workplane("XY").box(40, 30, 5).faces(">Z").workplane().hole(6)',
    'result = cq.Workplane("XZ").circle(20).extrude(8, both=True).edges().fillet(1.5)',
    'result = cq.Workplane("XY").rect(50, 20).extrude(4).faces(">Z").workplane().rarray(30, 1, 2, 1)',
    "    .cboreHole(4, 7, 2)",
    '    .faces("<Z").chamfer(0.5)',
]


@dataclass
class BenchConfig:
    shape: str = "7b"  # "7b" (LLaVA-1.5-7B's sizes) or "tiny" (the test model, to check the script)
    tokens: int = 1200  # sequence length of the one training sample, image tokens included
    steps: int = 5  # optimiser steps; the first is warm-up and not timed
    lora_r: int = 16
    lora_alpha: int = 32
    train_projector: bool = False
    gradient_checkpointing: bool = True
    init_device: str = "auto"  # where the random base is built: "auto" (CUDA if any), "cuda", "cpu"
    out: str = "runs/bench_qlora"


def build_random_base(config: BenchConfig, folder: Path) -> Path:
    """Save a randomly initialised LLaVA of the requested shape (fp16) to ``folder``, once."""
    import torch

    from training.code_tokenizer import train_code_tokenizer
    from training.llava_model import build_llava

    if (folder / "config.json").is_file():
        return folder
    model_config = LLAVA_15_7B if config.shape == "7b" else LlavaModelConfig.tiny()
    tokenizer = train_code_tokenizer(_CODE_LINES * 40, folder, vocab_size=400)
    device = config.init_device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    default_dtype = torch.get_default_dtype()
    torch.set_default_dtype(torch.float16 if config.shape == "7b" else torch.float32)
    try:
        with torch.device(device):
            model, processor = build_llava(model_config, tokenizer)
            if config.shape == "7b":  # LLaVA-1.5's real vocabulary: embedding and head at full size
                model.resize_token_embeddings(LLAVA_15_VOCAB, mean_resizing=False)
    finally:
        torch.set_default_dtype(default_dtype)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    del model
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return folder


def write_sample(base: Path, folder: Path, tokens: int, rows: int) -> tuple[Path, int]:
    """A parquet dataset of ``rows`` copies of one sample ``tokens`` long; returns it and the exact length."""
    import numpy as np
    from datasets import Dataset, Features, Value
    from datasets import Image as ImageFeature
    from PIL import Image
    from transformers import AutoProcessor

    from training.collate import LlavaCollator

    collator = LlavaCollator(AutoProcessor.from_pretrained(base), max_length=10**6)
    lines = [_CODE_LINES[0], "", "result = (", '    cq.Workplane("XY")']
    i = 0
    while collator.length({"code": "\n".join([*lines, ")"])}) < tokens:
        lines.append(f"    .box({10 + i % 50}, {20 + i % 30}, {5 + i % 7})")
        i += 1
    code = "\n".join([*lines, ")"]) + "\n"
    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (336, 336, 3), dtype=np.uint8))
    features = Features({"image": ImageFeature(), "code": Value("string")})
    folder.mkdir(parents=True, exist_ok=True)
    Dataset.from_dict({"image": [image] * rows, "code": [code] * rows}, features=features).to_parquet(
        str(folder / "train.parquet")
    )
    return folder, collator.length({"code": code})


def run_bench(config: BenchConfig) -> dict[str, Any]:
    import torch
    from transformers import TrainerCallback

    from training.qlora import QLoraConfig, compute_dtype, train

    out = Path(config.out)
    cuda = torch.cuda.is_available()
    base = build_random_base(config, out / f"base-{config.shape}")
    data, length = write_sample(base, out / "data", config.tokens, rows=config.steps)

    step_times: list[float] = []

    class StepTimer(TrainerCallback):
        def on_step_begin(self, args, state, control, **kwargs):
            if cuda:
                torch.cuda.synchronize()
            self.start = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            if cuda:
                torch.cuda.synchronize()
            step_times.append(time.perf_counter() - self.start)

    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    qlora = QLoraConfig(
        hf_dataset=str(data), val_split="", base=str(base), out=str(out / "run"), quantize="nf4",
        max_steps=config.steps, batch_size=1, grad_accum=1, max_length=length, lora_r=config.lora_r,
        lora_alpha=config.lora_alpha, train_projector=config.train_projector,
        gradient_checkpointing=config.gradient_checkpointing, save_steps=10**6, logging_steps=1, resume=False,
    )
    train(qlora, callbacks=[StepTimer()])

    timed = step_times[1:] or step_times
    report: dict[str, Any] = {
        "shape": config.shape,
        "sequence_tokens": length,
        "batch_size": 1,
        "steps": len(step_times),
        "s_per_step": statistics.median(timed),
        "first_step_s": step_times[0],
        "peak_vram_gb": torch.cuda.max_memory_allocated() / 2**30 if cuda else None,
        "peak_vram_reserved_gb": torch.cuda.max_memory_reserved() / 2**30 if cuda else None,
        "device": torch.cuda.get_device_name() if cuda else f"CPU ({platform.machine()})",
        "compute_dtype": str(compute_dtype()).removeprefix("torch."),
        "optimizer": "paged_adamw_8bit" if cuda else "adamw_torch",
        "torch": torch.__version__,
        "config": asdict(config),
    }
    _write_report(report, out)
    return report


def _write_report(report: dict[str, Any], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench_qlora.json").write_text(json.dumps(report, indent=2))
    vram = "n/a (CPU)" if report["peak_vram_gb"] is None else (
        f"{report['peak_vram_gb']:.2f} GB allocated, {report['peak_vram_reserved_gb']:.2f} GB reserved"
    )
    (out / "bench_qlora.md").write_text(
        f"# QLoRA step, {report['shape']}-shaped LLaVA (random weights)\n\n"
        f"| | |\n|---|---|\n"
        f"| device | {report['device']} |\n"
        f"| sequence | {report['sequence_tokens']} tokens (576 image tokens for 7b), batch 1 |\n"
        f"| precision | NF4 + double quant, {report['compute_dtype']} compute, {report['optimizer']} |\n"
        f"| gradient checkpointing | {report['config']['gradient_checkpointing']} |\n"
        f"| peak GPU memory | {vram} |\n"
        f"| seconds per step | {report['s_per_step']:.3f} (median of {max(report['steps'] - 1, 1)}; "
        f"first step {report['first_step_s']:.2f}) |\n"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.bench_qlora",
                                     description=__doc__.split("\n\n")[0])
    defaults = BenchConfig()
    parser.add_argument("--shape", choices=("7b", "tiny"), default=defaults.shape)
    parser.add_argument("--tokens", type=int, default=defaults.tokens)
    parser.add_argument("--steps", type=int, default=defaults.steps)
    parser.add_argument("--lora-r", type=int, default=defaults.lora_r)
    parser.add_argument("--lora-alpha", type=int, default=defaults.lora_alpha)
    parser.add_argument("--train-projector", action="store_true")
    parser.add_argument("--gradient-checkpointing", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--init-device", choices=("auto", "cuda", "cpu"), default=defaults.init_device)
    parser.add_argument("--out", default=defaults.out)
    report = run_bench(BenchConfig(**vars(parser.parse_args(argv))))
    print(json.dumps({k: v for k, v in report.items() if k != "config"}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
