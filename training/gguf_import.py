"""A GGUF pair (text model + mmproj, as ``training.export_gguf`` writes them) read back into a Hugging
Face LLaVA folder, so a retrain can warm-start from the built-in model, which ships as GGUF only.

    python -m training.gguf_import model_runtime/models OUT_DIR

The inverse of the export: quantised tensors are dequantised (q8_0 -> float32: the weights llama.cpp
runs, up to its own rounding), llama.cpp's query/key row order is undone, the vision tower's names are
mapped back, and the SentencePiece tokenizer is rebuilt from the vocabulary stored in the file (same
pieces, scores and types, with ``training.code_tokenizer``'s settings). The architecture comes from
the files' metadata as a ``LlavaModelConfig``; only models of that shape (CLIP-style ViT, MLP
projector, Llama decoder, our code tokenizer) are accepted.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np


class GGUFImportError(ValueError):
    """The pair is not a CadSnap-style LLaVA export."""


def _reader(path: Path):
    import gguf

    return gguf.GGUFReader(str(path))


def _field(reader, key: str, default=None):
    field = reader.fields.get(key)
    return field.contents() if field is not None else default


def pair_architecture(text: Path, mmproj: Path):
    """The ``LlavaModelConfig`` the pair was exported from (raises GGUFImportError if not ours)."""
    from training.llava_model import LlavaModelConfig

    t, v = _reader(text), _reader(mmproj)
    if _field(t, "general.architecture") != "llama" or _field(v, "general.architecture") != "clip":
        raise GGUFImportError(f"{text.name} + {mmproj.name} is not a llama text model with a clip mmproj")
    if _field(v, "clip.projector_type") != "mlp" or _field(t, "tokenizer.ggml.model") != "llama":
        raise GGUFImportError("only LLaVA-1.5's MLP projector and a SentencePiece vocabulary are read")
    layers = int(_field(v, "clip.vision.block_count"))
    if _field(v, "clip.vision.feature_layer", [layers - 1]) != [layers - 1]:
        raise GGUFImportError("only the second-to-last vision layer's features (LLaVA-1.5's) are read")
    return LlavaModelConfig(
        image_size=int(_field(v, "clip.vision.image_size")),
        patch_size=int(_field(v, "clip.vision.patch_size")),
        vision_hidden=int(_field(v, "clip.vision.embedding_length")), vision_layers=layers,
        vision_heads=int(_field(v, "clip.vision.attention.head_count")),
        vision_intermediate=int(_field(v, "clip.vision.feed_forward_length")),
        text_hidden=int(_field(t, "llama.embedding_length")), text_layers=int(_field(t, "llama.block_count")),
        text_heads=int(_field(t, "llama.attention.head_count")),
        text_kv_heads=int(_field(t, "llama.attention.head_count_kv")),
        text_intermediate=int(_field(t, "llama.feed_forward_length")),
        max_positions=int(_field(t, "llama.context_length")),
        rope_theta=float(_field(t, "llama.rope.freq_base")),
    )


def rebuild_tokenizer(text: Path, out_dir: Path):
    """The SentencePiece tokenizer stored in ``text``, as ``training.code_tokenizer`` saves one."""
    from sentencepiece import sentencepiece_model_pb2 as spm_pb2

    from training.code_tokenizer import load_code_tokenizer, train_code_tokenizer
    from training.tiny_models import CORPUS

    reader = _reader(text)
    keys = ("tokens", "scores", "token_type")
    tokens, scores, types = (_field(reader, f"tokenizer.ggml.{k}") for k in keys)
    if not tokens or len(tokens) != len(scores) or len(tokens) != len(types):
        raise GGUFImportError(f"{text.name} holds no complete SentencePiece vocabulary")
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as scratch:  # our settings (normaliser, specials) from a throwaway
        train_code_tokenizer(CORPUS * 20, scratch, vocab_size=400)
        proto = spm_pb2.ModelProto()
        proto.ParseFromString((Path(scratch) / "tokenizer.model").read_bytes())
        shutil.copy2(Path(scratch) / "tokenizer_config.json", out_dir / "tokenizer_config.json")
    del proto.pieces[:]
    for piece, score, kind in zip(tokens, scores, types, strict=True):
        proto.pieces.add(piece=piece, score=float(score), type=int(kind))  # llama.cpp keeps spm's type ids
    proto.trainer_spec.vocab_size = len(tokens)
    (out_dir / "tokenizer.model").write_bytes(proto.SerializeToString())
    for stale in ("tokenizer.json", "special_tokens_map.json"):
        (out_dir / stale).unlink(missing_ok=True)
    tokenizer = load_code_tokenizer(out_dir)
    tokenizer.save_pretrained(out_dir)
    return tokenizer


def _array(tensor) -> np.ndarray:
    from gguf.quants import dequantize

    return np.ascontiguousarray(dequantize(tensor.data, tensor.tensor_type).astype(np.float32))


def _unpermute(weights: np.ndarray, n_head: int) -> np.ndarray:
    """Undo ``convert_hf_to_gguf``'s query/key row order (its ``permute``)."""
    rows = weights.shape[0]
    return weights.reshape(n_head, rows // n_head // 2, 2, *weights.shape[1:]).swapaxes(1, 2).reshape(
        weights.shape)


_TEXT = {
    "token_embd.weight": "model.language_model.embed_tokens.weight",
    "output_norm.weight": "model.language_model.norm.weight",
    "output.weight": "lm_head.weight",
}
_TEXT_BLOCK = {
    "attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj", "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj", "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj", "attn_norm": "input_layernorm", "ffn_norm": "post_attention_layernorm",
}


def _text_name(name: str) -> str:
    if name in _TEXT:
        return _TEXT[name]
    _, index, module, kind = name.split(".")
    if module not in _TEXT_BLOCK:
        raise GGUFImportError(f"unexpected text tensor {name}")
    return f"model.language_model.layers.{index}.{_TEXT_BLOCK[module]}.{kind}"


def _vision_name(name: str) -> str:
    from training.export_gguf import _LAYER_NAMES  # the export's own table, read backwards

    fixed = {
        "v.class_embd": "embeddings.class_embedding",
        "v.patch_embd.weight": "embeddings.patch_embedding.weight",
        "v.position_embd.weight": "embeddings.position_embedding.weight",
        "v.pre_ln.weight": "pre_layrnorm.weight", "v.pre_ln.bias": "pre_layrnorm.bias",
        "mm.0.weight": "linear_1.weight", "mm.0.bias": "linear_1.bias",
        "mm.2.weight": "linear_2.weight", "mm.2.bias": "linear_2.bias",
    }
    if name in fixed:
        local = fixed[name]
        return (f"model.multi_modal_projector.{local}" if name.startswith("mm.")
                else f"model.vision_tower.{local}")
    _, _, index, module, kind = name.split(".")
    back = {v: k for k, v in _LAYER_NAMES.items()}
    if module not in back:
        raise GGUFImportError(f"unexpected vision tensor {name}")
    return f"model.vision_tower.encoder.layers.{index}.{back[module]}.{kind}"


def import_gguf_pair(text: Path, mmproj: Path, out_dir: str | Path) -> Path:
    """Write a Hugging Face LLaVA folder (model, processor, tokenizer) equal to the pair's weights."""
    import torch

    from training.llava_model import build_llava

    out_dir = Path(out_dir)
    arch = pair_architecture(text, mmproj)
    tokenizer = rebuild_tokenizer(text, out_dir)
    model, processor = build_llava(arch, tokenizer)
    state = model.state_dict()
    loaded: dict[str, torch.Tensor] = {}
    for tensor in _reader(text).tensors:
        name, array = _text_name(tensor.name), _array(tensor)
        if ".attn_q." in tensor.name:
            array = _unpermute(array, arch.text_heads)
        elif ".attn_k." in tensor.name:
            array = _unpermute(array, arch.text_kv_heads)
        loaded[name] = torch.from_numpy(array)
    for tensor in _reader(mmproj).tensors:
        loaded[_vision_name(tensor.name)] = torch.from_numpy(_array(tensor))
    for name, value in loaded.items():
        if name not in state:
            raise GGUFImportError(f"{name} has no place in a LLaVA of {arch}")
        if name.endswith("class_embedding") or name.endswith("position_embedding.weight"):
            value = value.reshape(state[name].shape)
        if tuple(value.shape) != tuple(state[name].shape):
            raise GGUFImportError(
                f"{name}: {tuple(value.shape)} in the file, {tuple(state[name].shape)} expected")
        state[name] = value
    missing = [k for k in state if k not in loaded and "post_layernorm" not in k]
    if missing:
        raise GGUFImportError(f"the pair lacks {len(missing)} tensors, e.g. {missing[0]}")
    model.load_state_dict(state)
    model.save_pretrained(out_dir)
    processor.save_pretrained(out_dir)
    (out_dir / "cadsnap_model.json").write_text(json.dumps(arch.to_dict(), indent=2))
    return out_dir


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.gguf_import",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("models", type=Path, help="a folder with the GGUF pair (or the text GGUF)")
    parser.add_argument("out", type=Path, help="the Hugging Face folder to write")
    args = parser.parse_args(argv)
    from model_runtime.backends import _gguf_from

    try:
        text, mmproj = _gguf_from(args.models, None)
        print(import_gguf_pair(text, mmproj, args.out))
    except (GGUFImportError, Exception) as exc:  # noqa: BLE001 - one sentence for the user
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
