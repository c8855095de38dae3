"""Tiny models for the backend tests, built once per test session and shared between test files.

pytest would build a session fixture once per module that imports it, so the cache lives here.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
from PIL import Image

from training.tiny_models import BOX_PROGRAM, make_trained_tiny_llava

_cache: dict[str, Path] = {}
_lock = threading.Lock()


def trained_llava(tmp_path_factory) -> Path:
    """A tiny LLaVA trained to answer BOX_PROGRAM (HF folder)."""
    with _lock:
        if "hf" not in _cache:
            _cache["hf"] = make_trained_tiny_llava(tmp_path_factory.mktemp("trained-llava"), BOX_PROGRAM)
        return _cache["hf"]


def trained_gguf(tmp_path_factory) -> Path:
    """The same model exported: f32 and f16 text models, q8_0, and f32/f16 mmproj files."""
    from training.export_gguf import export, export_mmproj

    hf = trained_llava(tmp_path_factory)
    with _lock:
        if "gguf" not in _cache:
            out = tmp_path_factory.mktemp("trained-gguf")
            export(hf, out, outtype="f32", name="tiny")
            export(hf, out, outtype="f16", quant=("q8_0",), name="tiny")
            # As the legacy converter wrote it (one vision layer short), to show parity catches it.
            legacy = out / "legacy"
            legacy.mkdir()
            export_mmproj(hf, legacy / "mmproj-legacy-f32.gguf", "f32", legacy_feature_layer=True)
            _cache["gguf"] = out
        return _cache["gguf"]


def sample_image(seed: int = 3, size: int = 32) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 255, (size, size, 3), dtype=np.uint8))


def transformers_image_features(hf_dir: Path, image: Image.Image) -> np.ndarray:
    """transformers' ``get_image_features`` for one image: (image tokens, hidden)."""
    import torch
    from transformers import AutoProcessor, LlavaForConditionalGeneration

    model = LlavaForConditionalGeneration.from_pretrained(str(hf_dir)).eval()
    pixels = AutoProcessor.from_pretrained(str(hf_dir)).image_processor(images=[image], return_tensors="pt")
    with torch.no_grad():
        out = model.get_image_features(pixel_values=pixels.pixel_values)
    out = getattr(out, "pooler_output", out)
    out = out[0] if isinstance(out, list | tuple) else out
    return out.reshape(-1, out.shape[-1]).float().numpy()


def llama_image_features(text: Path, mmproj: Path, image: Image.Image) -> np.ndarray:
    """llama.cpp's projected image embeddings (libmtmd) for the same image."""
    from model_runtime.backends.gguf import GGUFBackend

    with GGUFBackend(text, mmproj, n_ctx=256) as backend:
        return backend.image_features(image)


def feature_gap(hf_dir: str, text: str, mmproj: str) -> float:
    """Largest absolute difference between the two; run in a subprocess against another build."""
    image = sample_image()
    reference = transformers_image_features(Path(hf_dir), image)
    return float(np.abs(llama_image_features(Path(text), Path(mmproj), image) - reference).max())


__all__ = ["BOX_PROGRAM", "feature_gap", "sample_image", "trained_gguf", "trained_llava"]
