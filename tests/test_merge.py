"""Merging a QLoRA adapter into the dequantised base: logit parity and a complete, plain HF folder."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tests.test_qlora import one_thread, tiny_config, write_dataset  # noqa: F401 (one_thread: autouse fixture)
from training.merge import main as merge_main
from training.merge import merge
from training.qlora import load_base, train
from training.tiny_models import BOX_PROGRAM, make_tiny_llava

# The merged model must reproduce the adapter-on-NF4 model to within this (max |logit| difference,
# fp32 on CPU). What remains is bitsandbytes' CPU 4-bit matmul itself: an NF4 layer and its own
# dequantised copy already differ by ~2e-3 on the tiny model.
MERGE_TOLERANCE = 1e-2


@pytest.fixture(scope="module")
def adapter(tmp_path_factory) -> tuple[Path, Path]:
    """A tiny base and an adapter trained on its NF4 weights for a few large steps."""
    root = tmp_path_factory.mktemp("merge")
    base = make_tiny_llava(root / "base")
    data = write_dataset(root / "data", [BOX_PROGRAM] * 2, [BOX_PROGRAM])
    out = train(tiny_config(base, data, root / "run", max_steps=8, val_split="", save_steps=100))
    return base, out


def _logits(model, processor) -> torch.Tensor:
    from training.collate import LlavaCollator

    rng = np.random.default_rng(1)
    image = Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8))
    batch = LlavaCollator(processor)([{"image": image, "code": BOX_PROGRAM}])
    batch.pop("labels")
    model.eval()
    with torch.no_grad():
        return model(**batch).logits


def test_merged_model_matches_the_adapter_on_its_quantised_base(adapter, tmp_path):
    from peft import PeftModel
    from transformers import AutoProcessor, LlavaForConditionalGeneration

    base, adapter_dir = adapter
    merged_dir = merge(adapter_dir, tmp_path / "merged", dtype="float32")
    processor = AutoProcessor.from_pretrained(merged_dir)

    on_nf4 = PeftModel.from_pretrained(load_base(str(base), "nf4", torch.float32), adapter_dir)
    reference = _logits(on_nf4, processor)
    merged_model = LlavaForConditionalGeneration.from_pretrained(merged_dir, dtype=torch.float32)
    merged = _logits(merged_model, processor)
    # The trap the recipe avoids: the same adapter merged into the original full-precision weights.
    naive_model = PeftModel.from_pretrained(load_base(str(base), "none", torch.float32), adapter_dir)
    naive = _logits(naive_model.merge_and_unload(), processor)
    no_adapter = _logits(load_base(str(base), "nf4", torch.float32), processor)

    gap = (merged - reference).abs().max().item()
    naive_gap = (naive - reference).abs().max().item()
    assert (no_adapter - reference).abs().max().item() > 10 * MERGE_TOLERANCE  # the adapter does matter
    assert gap < MERGE_TOLERANCE, f"merged vs adapter logits differ by {gap}"
    assert naive_gap > 5 * gap, (gap, naive_gap)


def test_merged_folder_is_a_plain_llava_with_processor_and_chat_template(adapter, tmp_path):
    from safetensors import safe_open
    from transformers import AutoProcessor, LlavaForConditionalGeneration

    base, adapter_dir = adapter
    out = tmp_path / "merged"
    assert merge_main(["--adapter", str(adapter_dir), "--out", str(out)]) == 0

    config = json.loads((out / "config.json").read_text())
    assert "quantization_config" not in config
    with safe_open(str(next(out.glob("*.safetensors"))), "pt") as f:
        dtypes = {f.get_slice(name).get_dtype() for name in f.keys()}  # noqa: SIM118 - safe_open is not a dict
        names = list(f.keys())
    assert dtypes == {"F16"} and not any("lora" in n for n in names)
    processor = AutoProcessor.from_pretrained(out)
    assert processor.chat_template and "ASSISTANT:" in processor.chat_template
    carried = (out / "cadsnap_model.json").read_text()
    assert json.loads(carried) == json.loads((base / "cadsnap_model.json").read_text())
    info = json.loads((out / "cadsnap_merge.json").read_text())
    assert info["merged_into"] == "dequantised NF4 base" and info["base"] == str(base)
    model = LlavaForConditionalGeneration.from_pretrained(out)
    assert not getattr(model, "is_quantized", False)


def test_bad_inputs_are_refused_with_a_message(adapter, tmp_path, capsys):
    base, adapter_dir = adapter
    with pytest.raises(SystemExit):
        merge_main(["--adapter", str(base), "--out", str(tmp_path / "x")])  # a model folder, not an adapter
    assert "not a PEFT adapter" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        merge_main(["--adapter", str(adapter_dir), "--out", str(tmp_path / "y"), "--dtype", "int8"])
    assert "dtype" in capsys.readouterr().err
