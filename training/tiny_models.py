"""Tiny real LLaVA models built inside the tests (nothing is downloaded).

- ``make_tiny_llava(dir)``: random weights, our code tokenizer, processor; a complete HF folder.
- ``make_trained_tiny_llava(dir, program)``: the same, trained until greedy decoding emits
  ``program`` for any image, so end-to-end tests can reach a valid solid through a real model.
"""

from __future__ import annotations

import json
from pathlib import Path

from model_runtime.prompt import build_prompt, format_answer
from training.code_tokenizer import train_code_tokenizer
from training.llava_model import LlavaModelConfig, build_llava

BOX_PROGRAM = 'import cadquery as cq\n\nresult = cq.Workplane("XY").box(30, 20, 10)\n'

# A handful of CadQuery programs so the tiny tokenizer learns the usual pieces.
CORPUS = [
    BOX_PROGRAM,
    'import cadquery as cq\n\nresult = cq.Workplane("XY").cylinder(12, 8)\n',
    'import cadquery as cq\n\nresult = (\n    cq.Workplane("XY")\n    .box(40, 30, 5)\n'
    '    .faces(">Z")\n    .workplane()\n    .hole(6)\n)\n',
    'import cadquery as cq\n\nresult = (\n    cq.Workplane("XZ")\n    .circle(20)\n'
    '    .extrude(8, both=True)\n    .edges()\n    .fillet(1.5)\n)\n',
    'import cadquery as cq\n\nresult = (\n    cq.Workplane("XY")\n    .rect(50, 20)\n    .extrude(4)\n'
    '    .faces(">Z")\n    .workplane()\n    .rarray(30, 1, 2, 1)\n    .cboreHole(4, 7, 2)\n)\n',
]


def _tiny_tokenizer(out_dir: Path, extra: list[str] | None = None):
    return train_code_tokenizer(CORPUS * 20 + (extra or []) * 20, out_dir, vocab_size=400)


def make_tiny_llava(out_dir: str | Path, config: LlavaModelConfig | None = None, seed: int = 0) -> Path:
    """Save a tiny random LLaVA (model, processor, tokenizer) to ``out_dir`` and return it."""
    out_dir = Path(out_dir)
    config = config or LlavaModelConfig.tiny()
    tokenizer = _tiny_tokenizer(out_dir)
    model, processor = build_llava(config, tokenizer, seed=seed)
    model.save_pretrained(out_dir)
    processor.save_pretrained(out_dir)
    (out_dir / "cadsnap_model.json").write_text(json.dumps(config.to_dict(), indent=2))
    return out_dir


def make_trained_tiny_llava(
    out_dir: str | Path, program: str = BOX_PROGRAM, steps: int = 300, seed: int = 0
) -> Path:
    """A tiny LLaVA trained until greedy decoding reproduces ``program``; saved to ``out_dir``."""
    import numpy as np
    import torch
    from PIL import Image

    out_dir = Path(out_dir)
    config = LlavaModelConfig.tiny()
    tokenizer = _tiny_tokenizer(out_dir, extra=[program])
    model, processor = build_llava(config, tokenizer, seed=seed)

    rng = np.random.default_rng(seed)
    images = [Image.fromarray(rng.integers(0, 255, (48, 48, 3), dtype=np.uint8)) for _ in range(4)]
    prompt = build_prompt()
    full = prompt + format_answer(program, tokenizer.eos_token)
    batch = processor(images=images, text=[full] * len(images), return_tensors="pt")
    prompt_len = len(processor(images=images[:1], text=[prompt], return_tensors="pt").input_ids[0])
    labels = batch.input_ids.clone()
    labels[:, :prompt_len] = -100

    torch.manual_seed(seed)
    optimiser = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    for step in range(steps):
        loss = model(**batch, labels=labels).loss
        loss.backward()
        optimiser.step()
        optimiser.zero_grad()
        if step % 50 == 49 and loss.item() < 0.01 and _emits(model, processor, images[0], program):
            break
    model.eval()
    if not _emits(model, processor, images[0], program):
        raise RuntimeError(f"tiny LLaVA did not learn the program in {steps} steps (loss {loss.item():.4f})")
    model.save_pretrained(out_dir)
    processor.save_pretrained(out_dir)
    (out_dir / "cadsnap_model.json").write_text(json.dumps(config.to_dict(), indent=2))
    return out_dir


def _emits(model, processor, image, program: str) -> bool:
    import torch

    was_training = model.training
    model.eval()
    inputs = processor(images=[image], text=[build_prompt()], return_tensors="pt")
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=len(program) + 8, do_sample=False)
    model.train(was_training)
    text = processor.tokenizer.decode(out[0, inputs.input_ids.shape[1]:], skip_special_tokens=True)
    return text.strip() == program.strip()
