"""The hf backend on a tiny trained LLaVA with a real PEFT LoRA adapter, on CPU, through the pipeline."""

from __future__ import annotations

import io
import threading

import pytest

from model_runtime.backends import BackendError, GenerationCancelled, GenerationSettings, load_backend
from model_runtime.backends.hf import SKIP_QUANTIZATION, quantization_config
from tests.backend_assets import BOX_PROGRAM, sample_image, trained_llava


@pytest.fixture(scope="module")
def hf_dir(tmp_path_factory):
    return trained_llava(tmp_path_factory)


@pytest.fixture(scope="module")
def adapter_dir(hf_dir, tmp_path_factory):
    """A LoRA on the language model's attention, with small non-zero B so it really changes weights."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import LlavaForConditionalGeneration

    model = LlavaForConditionalGeneration.from_pretrained(str(hf_dir))
    config = LoraConfig(r=4, lora_alpha=8, target_modules=r".*language_model.*\.(q_proj|v_proj)")
    peft_model = get_peft_model(model, config)
    torch.manual_seed(0)
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:
                param.normal_(0.0, 1e-4)
    out = tmp_path_factory.mktemp("lora")
    peft_model.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def backend(hf_dir, adapter_dir):
    loaded = load_backend("hf", model=hf_dir, adapter=adapter_dir, device="cpu")
    yield loaded
    loaded.close()


def test_loads_the_adapter_in_full_precision_on_cpu(backend, adapter_dir):
    import torch
    from peft import PeftModel
    from safetensors.torch import load_file

    assert isinstance(backend.model, PeftModel) and not backend.quantized
    assert backend.dtype == torch.float32
    saved = load_file(str(adapter_dir / "adapter_model.safetensors"))
    key = next(k for k in saved if "lora_B" in k)
    loaded = dict(backend.model.named_parameters())
    match = next(
        v
        for k, v in loaded.items()
        if "lora_B" in k and k.endswith(key.split("layers.", 1)[1].replace(".weight", ".default.weight"))
    )
    assert torch.equal(match.detach(), saved[key]) and saved[key].abs().sum() > 0


def test_generates_the_program_greedy_then_sampled(backend):
    streamed: dict[int, list[str]] = {}
    texts = backend.generate(
        sample_image(5, 48),
        None,
        GenerationSettings(n=2, max_new_tokens=64),
        on_token=lambda i, t: streamed.setdefault(i, []).append(t),
    )
    assert texts[0].strip() == BOX_PROGRAM.strip()
    assert len(texts) == 2 and "".join(streamed[0]) == texts[0]
    assert backend.timings.new_tokens > 0 and backend.timings.encode_s > 0


def test_cancel(backend):
    cancel = threading.Event()

    def on_token(index, text):
        cancel.set()

    with pytest.raises(GenerationCancelled):
        backend.generate(sample_image(), None, GenerationSettings(n=2), on_token=on_token, cancel=cancel)


def test_pipeline_with_the_hf_backend(backend):
    from model_runtime.pipeline import GenerateRequest, Pipeline
    from model_runtime.sandbox import SandboxPool

    buffer = io.BytesIO()
    sample_image(11, 64).save(buffer, format="JPEG")
    with SandboxPool(workers=1, timeout_s=20.0) as pool:
        result = Pipeline(backend, pool, render_size=96).run(
            GenerateRequest(image=buffer.getvalue(), n=1, max_new_tokens=64, refine=False, search=False)
        )
    assert result.exec_result.volume == pytest.approx(6000, rel=1e-6) and result.backend == "hf"


def test_missing_model_is_a_clear_error(tmp_path):
    with pytest.raises(BackendError, match="cannot load the LLaVA model"):
        load_backend("hf", model=tmp_path / "nothing-here", device="cpu")


def test_4bit_config_follows_the_gpu_generation():
    import torch

    t4 = quantization_config((7, 5))
    a100 = quantization_config((8, 0))
    assert t4.bnb_4bit_compute_dtype == torch.float16 and a100.bnb_4bit_compute_dtype == torch.bfloat16
    for config in (t4, a100):
        assert (
            config.load_in_4bit and config.bnb_4bit_quant_type == "nf4" and config.bnb_4bit_use_double_quant
        )
        assert config.llm_int8_skip_modules == SKIP_QUANTIZATION


def test_4bit_nf4_load_on_cpu_quantises_only_the_language_model(hf_dir):
    """The CUDA recipe's quantisation, exercised on CPU (bitsandbytes runs 4-bit there too)."""
    pytest.importorskip("bitsandbytes")
    backend = load_backend("hf", model=hf_dir, device="cpu", quantize="4bit")
    try:
        inner = backend.model.model
        tower = getattr(inner.vision_tower, "vision_model", inner.vision_tower)
        assert type(inner.language_model.layers[0].self_attn.q_proj).__name__ == "Linear4bit"
        assert type(tower.encoder.layers[0].self_attn.q_proj).__name__ == "Linear"
        assert type(inner.multi_modal_projector.linear_1).__name__ == "Linear"
        assert type(backend.model.lm_head).__name__ == "Linear"
        text = backend.generate(sample_image(5, 48), None, GenerationSettings(n=1, max_new_tokens=64))[0]
        assert text.strip() == BOX_PROGRAM.strip()
    finally:
        backend.close()
