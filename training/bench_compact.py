"""How fast do compact LLaVA sizes train and decode on this machine? Numbers for choosing the shipped size.

    python -m training.bench_compact [--steps 6] [--batch 16] [--code-tokens 150] [--out DIR]

For each candidate size: parameters, training samples/s (fp32 AdamW, full batch forward+backward,
image tokens + prompt + ``--code-tokens`` answer tokens, as ``train_compact`` runs it) and greedy
decoding tokens/s with transformers. Writes ``bench_compact.json`` and ``bench_compact.md`` to
``--out``. Random weights and random token ids: speed does not depend on what the model knows.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from training.llava_model import LlavaModelConfig

BASE = LlavaModelConfig.compact()
CANDIDATES: dict[str, LlavaModelConfig] = {
    "small (ViT 4x192, Llama 4x256)": replace(BASE, text_hidden=256, text_layers=4, text_heads=4,
                                              text_kv_heads=4, text_intermediate=768),
    "compact preset": BASE,
    "wide (ViT 4x256, Llama 6x384)": replace(BASE, vision_hidden=256, vision_heads=4,
                                             vision_intermediate=1024),
    "224 px (196 image tokens)": replace(BASE, image_size=224, patch_size=16),
}


def _programs(n: int, seed: int = 0) -> list[str]:
    """CadQuery-shaped text with varied numbers, so the tokenizer reaches a realistic vocabulary size."""
    rng = random.Random(seed)
    calls = ["box", "cylinder", "hole", "fillet", "chamfer", "extrude", "circle", "rect", "polygon", "slot2D"]
    out = []
    for _ in range(n):
        body = "\n".join(
            f"    .{rng.choice(calls)}({rng.randint(1, 120)}, {rng.randint(1, 80)}.{rng.randint(0, 9)})"
            for _ in range(rng.randint(3, 8))
        )
        out.append(f'import cadquery as cq\n\nresult = (\n    cq.Workplane("XY")\n{body}\n)\n')
    return out


def bench_size(config: LlavaModelConfig, tokenizer, steps: int, batch: int, code_tokens: int) -> dict:
    import torch
    from PIL import Image

    from model_runtime.prompt import IMAGE_TOKEN, build_prompt
    from training.llava_model import build_llava

    model, processor = build_llava(config, tokenizer)
    n_params = sum(p.numel() for p in model.parameters())
    images = [Image.new("RGB", (config.image_size, config.image_size), "white")] * batch
    inputs = processor(images=images, text=[build_prompt()] * batch, return_tensors="pt")
    first_plain_id = tokenizer.convert_tokens_to_ids(IMAGE_TOKEN) + 1  # never a stray <image> id
    answer = torch.randint(first_plain_id, len(tokenizer), (batch, code_tokens))
    input_ids = torch.cat([inputs["input_ids"], answer], dim=1)
    labels = input_ids.clone()
    labels[:, : inputs["input_ids"].shape[1]] = -100
    train_batch = {"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids),
                   "pixel_values": inputs["pixel_values"], "labels": labels}
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    model.train()
    times = []
    for _ in range(steps + 1):  # the first step warms up allocators and is not counted
        start = time.perf_counter()
        model(**train_batch).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        times.append(time.perf_counter() - start)
    step_s = sorted(times[1:])[len(times[1:]) // 2]

    model.eval()
    one = {k: v[:1] for k, v in inputs.items()}
    with torch.no_grad():
        start = time.perf_counter()
        out = model.generate(**one, max_new_tokens=64, min_new_tokens=64, do_sample=False)
        decode_s = time.perf_counter() - start
    new_tokens = out.shape[1] - one["input_ids"].shape[1]
    return {
        "params_m": round(n_params / 1e6, 2),
        "image_tokens": config.image_tokens,
        "sequence_tokens": input_ids.shape[1],
        "train_step_s": round(step_s, 3),
        "train_samples_per_s": round(batch / step_s, 2),
        "decode_tokens_per_s": round(new_tokens / decode_s, 1),
        "config": config.to_dict(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m training.bench_compact", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--code-tokens", type=int, default=150)
    parser.add_argument("--only", nargs="*", help="candidate names to run (default: all)")
    parser.add_argument("--out", type=Path, default=Path("."))
    args = parser.parse_args(argv)

    import torch

    from training.code_tokenizer import train_code_tokenizer

    with tempfile.TemporaryDirectory() as tmp:
        tokenizer = train_code_tokenizer(_programs(3000), tmp, vocab_size=1024)
    results = {}
    for name, config in CANDIDATES.items():
        if args.only and name not in args.only:
            continue
        results[name] = bench_size(config, tokenizer, args.steps, args.batch, args.code_tokens)
        r = results[name]
        print(f"{name:34s} {r['params_m']:6.2f} M  {r['train_samples_per_s']:6.2f} samples/s  "
              f"decode {r['decode_tokens_per_s']:6.1f} tok/s", flush=True)
    report = {"threads": torch.get_num_threads(), "batch": args.batch, "code_tokens": args.code_tokens,
              "vocab": len(tokenizer), "torch": torch.__version__, "results": results}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bench_compact.json").write_text(json.dumps(report, indent=2))
    lines = [
        f"# Compact model sizes on this CPU ({report['threads']} threads, torch {torch.__version__})", "",
        f"Batch {args.batch}, {args.code_tokens} answer tokens, fp32 AdamW; decoding: greedy, transformers.",
        "",
        "| size | params | image tokens | train samples/s | decode tok/s |",
        "| --- | --- | --- | --- | --- |",
        *(f"| {n} | {r['params_m']} M | {r['image_tokens']} | {r['train_samples_per_s']} "
          f"| {r['decode_tokens_per_s']} |" for n, r in results.items()),
    ]
    (args.out / "bench_compact.md").write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
