"""HF LLaVA folder -> text GGUF + mmproj GGUF (+ quantised text models) for the gguf backend.

    python -m training.export_gguf HF_DIR --out DIR [--outtype f16] [--quant q8_0,q4_k_m]

- Text model: llama.cpp's own ``convert_hf_to_gguf.py`` from the llama-cpp-python source that
  ``model_runtime.llama_build`` keeps in the cache (same llama.cpp as the runtime; re-extracted
  when missing).
- mmproj: written here with the ``gguf`` package, because the bundled converter rejects
  LLaVA-1.5's CLIP tower and the legacy one needs transformers < 5. It writes the full block count
  and ``clip.vision.feature_layer`` (llama.cpp issue 25817: legacy files run one layer too few).
- Quantised text models through ``llama_cpp.llama_model_quantize`` (K-quants need rows divisible
  by 256; llama.cpp falls back to other types for smaller rows, as in the tiny test models).
"""

from __future__ import annotations

import argparse
import ctypes
import json
import logging
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

QUANT_TYPES = {
    "q8_0": "LLAMA_FTYPE_MOSTLY_Q8_0",
    "q4_k_m": "LLAMA_FTYPE_MOSTLY_Q4_K_M",
    "q5_k_m": "LLAMA_FTYPE_MOSTLY_Q5_K_M",
    "q4_0": "LLAMA_FTYPE_MOSTLY_Q4_0",
}


class ExportError(RuntimeError):
    """The folder cannot be exported (not a LLaVA-1.5-style model, converter failure...)."""


@dataclass
class ExportResult:
    text: Path  # the unquantised text model
    mmproj: Path
    quantised: dict[str, Path] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {
            "text": str(self.text),
            "mmproj": str(self.mmproj),
            "quantised": {k: str(v) for k, v in self.quantised.items()},
        }


def converter_script() -> Path:
    """llama.cpp's ``convert_hf_to_gguf.py`` from the cached llama-cpp-python source."""
    from model_runtime.llama_build import build_lock, ensure_source

    with build_lock():
        src = ensure_source(patched=True)
    script = src / "vendor" / "llama.cpp" / "convert_hf_to_gguf.py"
    if not script.is_file():
        raise ExportError(f"{script} is missing from the llama-cpp-python source")
    return script


def export_text(hf_dir: Path, out_path: Path, outtype: str = "f16") -> Path:
    """The language model (and tokenizer) as a GGUF, by llama.cpp's converter."""
    script = converter_script()
    env = dict(os.environ)
    env.pop("NO_LOCAL_GGUF", None)  # use the gguf-py that ships with this llama.cpp
    args = [str(hf_dir), "--outfile", str(out_path), "--outtype", outtype]
    # Run the converter with our extra metadata added to the file it writes.
    code = (
        "import json, runpy, sys\n"
        f"script, args, extra = {str(script)!r}, {json.dumps(args)}, {_runtime_metadata(hf_dir)!r}\n"
        "here = str(__import__('pathlib').Path(script).parent)\n"
        "sys.path[:0] = [here, here + '/gguf-py']\n"
        "import gguf\n"
        "original = gguf.GGUFWriter.write_header_to_file\n"
        "def write_header(self, *a, **k):\n"
        "    for key, value in extra.items():\n"
        "        (self.add_bool if isinstance(value, bool) else self.add_uint32)(key, value)\n"
        "    return original(self, *a, **k)\n"
        "gguf.GGUFWriter.write_header_to_file = write_header\n"
        "sys.argv = [script, *args]\n"
        "runpy.run_path(script, run_name='__main__')\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    if proc.returncode != 0 or not out_path.is_file():
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-15:])
        raise ExportError(f"convert_hf_to_gguf.py failed on {hf_dir}:\n{tail}")
    return out_path


def _runtime_metadata(hf_dir: Path) -> dict[str, bool | int]:
    """Keys the gguf backend reads from the text model: the prompt's spacing and the image size
    (so it can resize like transformers' processor without reading the mmproj)."""
    config = json.loads((hf_dir / "config.json").read_text())
    size = (config.get("vision_config") or {}).get("image_size")
    return {**_prefix_metadata(hf_dir), **({"cadsnap.image_size": int(size)} if size else {})}


def _prefix_metadata(hf_dir: Path) -> dict[str, bool]:
    """Make llama.cpp tokenise the prompt as the HF tokenizer does around the image.

    llama.cpp's SentencePiece path puts a space ("▁") in front of every text piece that follows a
    special token, so the text after the image starts with "▁\n". Non-legacy HF Llama tokenizers
    (ours, llava-hf's) add that space only at the very start. For such tokenizers we switch the
    automatic prefix off and record that the runtime must write the leading space itself.
    """
    if not (hf_dir / "tokenizer.model").is_file():
        return {}
    from transformers import AutoTokenizer

    from model_runtime.prompt import IMAGE_TOKEN

    tokenizer = AutoTokenizer.from_pretrained(str(hf_dir))
    if IMAGE_TOKEN not in tokenizer.get_vocab():
        return {}
    after_image = tokenizer.convert_ids_to_tokens(
        tokenizer(f"{IMAGE_TOKEN}\nx", add_special_tokens=False).input_ids[1]
    )
    at_start = tokenizer.convert_ids_to_tokens(tokenizer("x", add_special_tokens=False).input_ids[0])
    if after_image.startswith("\u2581"):
        return {}  # legacy behaviour: llama.cpp's default already matches
    return {
        "tokenizer.ggml.add_space_prefix": False,
        "cadsnap.prompt_leading_space": at_start.startswith("\u2581"),
    }


def _feature_layer(config: dict, n_layers: int) -> int:
    layer = config.get("vision_feature_layer", -2)
    if isinstance(layer, list):
        raise ExportError("multi-layer vision features (a list vision_feature_layer) are not supported")
    # hidden_states has n_layers + 1 entries (embeddings first); llama.cpp counts the same way.
    return layer if layer >= 0 else n_layers + 1 + layer


def _vision_tensors(hf_dir: Path) -> dict[str, np.ndarray]:
    """The vision tower and projector weights, with any ``model.``/``vision_model.`` prefixes removed."""
    from safetensors import safe_open

    files = sorted(hf_dir.glob("*.safetensors"))
    if not files:
        raise ExportError(f"{hf_dir} has no *.safetensors weights")
    tensors: dict[str, np.ndarray] = {}
    for path in files:
        with safe_open(str(path), framework="pt") as handle:
            for key in handle.keys():  # noqa: SIM118 (safe_open is not a dict)
                name = key.removeprefix("model.").replace("vision_tower.vision_model.", "vision_tower.")
                if name.startswith(("vision_tower.", "multi_modal_projector.")):
                    tensors[name] = handle.get_tensor(key).float().numpy()
    return tensors


_LAYER_NAMES = {
    "self_attn.q_proj": "attn_q",
    "self_attn.k_proj": "attn_k",
    "self_attn.v_proj": "attn_v",
    "self_attn.out_proj": "attn_out",
    "layer_norm1": "ln1",
    "layer_norm2": "ln2",
    "mlp.fc1": "ffn_up",
    "mlp.fc2": "ffn_down",
}


def _gguf_name(name: str) -> str | None:
    """HF name -> llama.cpp CLIP name; None for tensors LLaVA does not use (post-layernorm)."""
    fixed = {
        "vision_tower.embeddings.class_embedding": "v.class_embd",
        "vision_tower.embeddings.patch_embedding.weight": "v.patch_embd.weight",
        "vision_tower.embeddings.position_embedding.weight": "v.position_embd.weight",
        "vision_tower.pre_layrnorm.weight": "v.pre_ln.weight",
        "vision_tower.pre_layrnorm.bias": "v.pre_ln.bias",
        "multi_modal_projector.linear_1.weight": "mm.0.weight",
        "multi_modal_projector.linear_1.bias": "mm.0.bias",
        "multi_modal_projector.linear_2.weight": "mm.2.weight",
        "multi_modal_projector.linear_2.bias": "mm.2.bias",
    }
    if name in fixed:
        return fixed[name]
    if name.startswith("vision_tower.post_layernorm."):
        return None  # LLaVA takes a hidden state before it
    prefix = "vision_tower.encoder.layers."
    if name.startswith(prefix):
        index, rest = name[len(prefix) :].split(".", 1)
        module, kind = rest.rsplit(".", 1)
        if module in _LAYER_NAMES:
            return f"v.blk.{index}.{_LAYER_NAMES[module]}.{kind}"
    raise ExportError(f"unexpected vision tensor {name}: not a LLaVA-1.5 CLIP tower + MLP projector")


def export_mmproj(
    hf_dir: Path, out_path: Path, outtype: str = "f16", *, legacy_feature_layer: bool = False
) -> Path:
    """The CLIP tower + projector as llama.cpp's ``clip`` GGUF.

    ``legacy_feature_layer`` writes the file as the legacy converter did (last layer dropped, no
    feature_layer key): wrong on purpose, for the test that shows parity catches it.
    """
    import gguf

    config = json.loads((hf_dir / "config.json").read_text())
    vision = config.get("vision_config") or {}
    if config.get("model_type") != "llava" or vision.get("model_type") not in (None, "clip_vision_model"):
        raise ExportError(f"{hf_dir} is not a LLaVA model with a CLIP vision tower")
    if config.get("vision_feature_select_strategy", "default") != "default":
        raise ExportError("only vision_feature_select_strategy='default' (class token dropped) is supported")
    processor = _preprocessor_config(hf_dir)
    n_layers = vision["num_hidden_layers"]
    act = vision.get("hidden_act", "quick_gelu")
    if act not in ("quick_gelu", "gelu"):
        raise ExportError(f"vision activation {act!r} is not supported by llama.cpp's CLIP graph")

    writer = gguf.GGUFWriter(str(out_path), arch="clip")
    writer.add_type(gguf.GGUFType.MMPROJ)
    writer.add_name(Path(hf_dir).name)
    writer.add_description("CadSnap LLaVA vision tower + projector")
    writer.add_file_type(gguf.LlamaFileType.ALL_F32 if outtype == "f32" else gguf.LlamaFileType.MOSTLY_F16)
    writer.add_bool("clip.has_vision_encoder", True)
    writer.add_bool("clip.has_text_encoder", False)
    writer.add_bool("clip.has_llava_projector", True)
    writer.add_string("clip.projector_type", "mlp")
    writer.add_bool("clip.use_gelu", act == "gelu")
    writer.add_uint32("clip.vision.image_size", vision["image_size"])
    writer.add_uint32("clip.vision.patch_size", vision["patch_size"])
    writer.add_uint32("clip.vision.embedding_length", vision["hidden_size"])
    writer.add_uint32("clip.vision.feed_forward_length", vision["intermediate_size"])
    writer.add_uint32("clip.vision.projection_dim", config["text_config"]["hidden_size"])
    writer.add_uint32("clip.vision.attention.head_count", vision["num_attention_heads"])
    writer.add_float32("clip.vision.attention.layer_norm_epsilon", vision.get("layer_norm_eps", 1e-5))
    if legacy_feature_layer:
        writer.add_uint32("clip.vision.block_count", n_layers - 1)
    else:
        writer.add_uint32("clip.vision.block_count", n_layers)
        writer.add_array("clip.vision.feature_layer", [_feature_layer(config, n_layers)])
    writer.add_array("clip.vision.image_mean", [float(x) for x in processor["image_mean"]])
    writer.add_array("clip.vision.image_std", [float(x) for x in processor["image_std"]])

    for name, array in sorted(_vision_tensors(hf_dir).items()):
        target = _gguf_name(name)
        if target is None or (legacy_feature_layer and target.startswith(f"v.blk.{n_layers - 1}.")):
            continue
        # Norms, biases and the class/position embeddings stay f32; matrices take the out type.
        keep_f32 = outtype == "f32" or array.ndim == 1 or target in ("v.class_embd", "v.position_embd.weight")
        writer.add_tensor(target, array.astype(np.float32 if keep_f32 else np.float16))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return out_path


def _preprocessor_config(hf_dir: Path) -> dict:
    for name in ("preprocessor_config.json", "processor_config.json"):
        path = hf_dir / name
        if path.is_file():
            data = json.loads(path.read_text())
            data = data.get("image_processor", data)
            if "image_mean" in data:
                return data
    raise ExportError(f"{hf_dir} has no image processor config (image_mean/image_std)")


def quantize(src: Path, dst: Path, kind: str, threads: int | None = None) -> Path:
    """``src`` GGUF -> ``dst`` quantised with llama.cpp (``kind`` in QUANT_TYPES)."""
    import llama_cpp

    if kind not in QUANT_TYPES:
        raise ExportError(f"unknown quantisation {kind!r}; choose from {', '.join(QUANT_TYPES)}")
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, QUANT_TYPES[kind])
    params.nthread = threads or os.cpu_count() or 1
    # llama.cpp logs every tensor through llama-cpp-python's logger; keep warnings only.
    logger = logging.getLogger("llama-cpp-python")
    level = logger.level
    logger.setLevel(max(level, logging.WARNING))
    try:
        status = llama_cpp.llama_model_quantize(str(src).encode(), str(dst).encode(), ctypes.byref(params))
    finally:
        logger.setLevel(level)
    if status != 0 or not dst.is_file():
        raise ExportError(f"llama.cpp failed to quantise {src} to {kind} (status {status})")
    return dst


def export(
    hf_dir: str | Path,
    out_dir: str | Path,
    *,
    outtype: str = "f16",
    quant: tuple[str, ...] = (),
    name: str | None = None,
) -> ExportResult:
    """Write ``NAME-OUTTYPE.gguf``, ``mmproj-NAME-f16.gguf`` and ``NAME-QUANT.gguf`` into ``out_dir``."""
    from tqdm import tqdm

    hf_dir, out_dir = Path(hf_dir), Path(out_dir)
    if not (hf_dir / "config.json").is_file():
        raise ExportError(f"{hf_dir} is not a Hugging Face model folder (no config.json)")
    unknown = [q for q in quant if q not in QUANT_TYPES]
    if unknown:
        raise ExportError(f"unknown quantisation {unknown[0]!r}; choose from {', '.join(QUANT_TYPES)}")
    out_dir.mkdir(parents=True, exist_ok=True)
    name = name or hf_dir.name
    steps = tqdm(total=2 + len(quant), desc="export gguf", unit="file", disable=None)
    steps.set_postfix_str("text model")
    text = export_text(hf_dir, out_dir / f"{name}-{outtype}.gguf", outtype)
    steps.update()
    steps.set_postfix_str("mmproj")
    mmproj_type = "f32" if outtype == "f32" else "f16"
    mmproj = export_mmproj(hf_dir, out_dir / f"mmproj-{name}-{mmproj_type}.gguf", mmproj_type)
    steps.update()
    result = ExportResult(text=text, mmproj=mmproj)
    for kind in quant:
        steps.set_postfix_str(kind)
        result.quantised[kind] = quantize(text, out_dir / f"{name}-{kind}.gguf", kind)
        steps.update()
    steps.close()
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Export a LLaVA HF folder to GGUF (text + mmproj).")
    parser.add_argument("hf_dir", type=Path, help="a (merged) LlavaForConditionalGeneration folder")
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument(
        "--outtype", default="f16", choices=["f32", "f16", "bf16"], help="type of the unquantised text model"
    )
    parser.add_argument("--quant", default="q8_0,q4_k_m", help="comma list of " + ", ".join(QUANT_TYPES))
    parser.add_argument("--name", help="file name stem (default: the folder's name)")
    args = parser.parse_args(argv)
    quant = tuple(q.strip().lower() for q in args.quant.split(",") if q.strip())
    try:
        result = export(args.hf_dir, args.out, outtype=args.outtype, quant=quant, name=args.name)
    except ExportError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(result.to_dict(), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
