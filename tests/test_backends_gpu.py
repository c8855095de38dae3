"""The 4-bit CUDA path of the hf backend on a LLaVA-1.5-7B-shaped model (random weights, no download).

Skipped on CPU-only machines. On a GPU it builds the model from llava-1.5-7b's real config values,
saves it, loads it through ``HFBackend`` (NF4 + double quantisation, vision tower and projector
unquantised), generates, and prints VRAM and tokens/s (also written to $CADSNAP_GPU_REPORT as JSON
when that is set) for the docs.
"""

from __future__ import annotations

import json
import os

import pytest

from model_runtime.backends import GenerationSettings

pytestmark = [pytest.mark.gpu, pytest.mark.slow]

# llava-hf/llava-1.5-7b-hf config.json, as published (written out: nothing is downloaded).
LLAVA_15_7B = {
    "vision": dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16,
                   image_size=336, patch_size=14, projection_dim=768, hidden_act="quick_gelu",
                   layer_norm_eps=1e-5),
    "text": dict(vocab_size=32064, hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
                 num_attention_heads=32, num_key_value_heads=32, max_position_embeddings=4096,
                 rms_norm_eps=1e-5, hidden_act="silu", tie_word_embeddings=False),
    "projector_hidden_act": "gelu",
    "vision_feature_layer": -2,
    "vision_feature_select_strategy": "default",
    "image_seq_length": 576,
}  # fmt: skip


@pytest.fixture(scope="module")
def llava_7b_dir(tmp_path_factory):
    import torch
    from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig, LlavaForConditionalGeneration

    from training.code_tokenizer import train_code_tokenizer
    from training.llava_model import LlavaModelConfig, build_processor
    from training.tiny_models import CORPUS

    out = tmp_path_factory.mktemp("llava-7b-shaped")
    tokenizer = train_code_tokenizer(CORPUS * 20, out, vocab_size=400)
    # Pad the vocabulary to the real size so every id the random model emits decodes.
    tokenizer.add_tokens([f"<extra_{i}>" for i in range(LLAVA_15_7B["text"]["vocab_size"] - len(tokenizer))])
    tokenizer.save_pretrained(out)
    config = LlavaConfig(
        vision_config=CLIPVisionConfig(**LLAVA_15_7B["vision"]),
        text_config=LlamaConfig(**LLAVA_15_7B["text"], bos_token_id=tokenizer.bos_token_id,
                                eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id),
        image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
        projector_hidden_act=LLAVA_15_7B["projector_hidden_act"],
        vision_feature_layer=LLAVA_15_7B["vision_feature_layer"],
        vision_feature_select_strategy=LLAVA_15_7B["vision_feature_select_strategy"],
        image_seq_length=LLAVA_15_7B["image_seq_length"],
        tie_word_embeddings=False,
    )  # fmt: skip
    with torch.device("cuda"):
        torch.manual_seed(0)
        model = LlavaForConditionalGeneration(config).to(torch.float16)
    model.save_pretrained(out)
    del model
    torch.cuda.empty_cache()
    shape = LlavaModelConfig(image_size=336, patch_size=14)
    build_processor(shape, tokenizer).save_pretrained(out)
    return out


def test_4bit_llava_7b_generates_and_reports_vram(llava_7b_dir):
    import torch

    from model_runtime.backends.hf import HFBackend
    from tests.backend_assets import sample_image

    torch.cuda.reset_peak_memory_stats()
    backend = HFBackend(llava_7b_dir, device="cuda")
    assert backend.quantized
    capability = torch.cuda.get_device_capability()
    assert backend.dtype == (torch.bfloat16 if capability[0] >= 8 else torch.float16)
    lm_layer = backend.model.model.language_model.layers[0].self_attn.q_proj
    assert "4bit" in type(lm_layer).__name__.lower() or "Linear4bit" in type(lm_layer).__name__
    # Found by name: transformers 5.x's CLIPVisionModel no longer nests a ``vision_model``.
    vision_tower = backend.model.model.vision_tower
    vision_layers = [m for name, m in vision_tower.named_modules() if name.endswith("q_proj")]
    assert vision_layers and all(type(m).__name__ == "Linear" for m in vision_layers)  # not quantised
    load_gb = torch.cuda.max_memory_allocated() / 2**30

    settings = GenerationSettings(n=2, max_new_tokens=64)
    backend.generate(sample_image(1, 336), None, GenerationSettings(n=1, max_new_tokens=4))  # warm-up
    texts = backend.generate(sample_image(2, 512), None, settings)
    assert len(texts) == 2
    t = backend.timings
    report = {
        "gpu": torch.cuda.get_device_name(),
        "compute_capability": list(capability),
        "compute_dtype": str(backend.dtype),
        "load_s": round(backend.load_s, 1),
        "vram_after_load_gib": round(load_gb, 2),
        "vram_peak_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2),
        "image_encode_s": round(t.encode_s, 3),
        "prompt_s": round(t.prompt_s, 3),
        "prompt_tokens": t.prompt_tokens,
        "new_tokens": t.new_tokens,
        "tokens_per_s": round(t.tokens_per_s, 1),
    }
    print(json.dumps(report, indent=2))
    if path := os.environ.get("CADSNAP_GPU_REPORT"):
        with open(path, "w", encoding="utf-8") as handle:
            json.dump(report, handle, indent=2)
    assert report["vram_peak_gib"] < 8.0  # 4-bit 7B fits a T4 (16 GB) with room to spare
    backend.close()
