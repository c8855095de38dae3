"""Merge a QLoRA adapter into its base model and save a plain Hugging Face LLaVA folder.

    python -m training.merge --adapter runs/qlora/adapter --out runs/merged

The adapter was trained on the NF4-quantised base, so it corrects *those* weights: it is merged into
the base quantised exactly as in training and then dequantised, not into the original fp16 weights
(FIELD_NOTES: logit gap 0.017 vs 0.57 on a tiny model). The base, its quantisation and compute
dtype are read from the adapter's ``cadsnap_training.json`` (written by ``training.qlora``);
``--base`` points at a local copy instead. The output holds the merged weights (``--dtype``,
fp16 by default), the processor with its chat template, and ``cadsnap_merge.json``; it loads with
``LlavaForConditionalGeneration.from_pretrained`` and is what ``training.export_gguf`` converts.

Memory: the merged model is materialised once in full precision on the merge device: about 15 GB
for LLaVA-1.5-7B in fp16. ``--device auto`` uses the GPU only when it has >= 24 GB (a T4 has 15),
else the CPU (bitsandbytes quantises and dequantises there too; a High-RAM Colab runtime has room).
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
from pathlib import Path
from typing import Any

from training.qlora import TRAINING_INFO, load_base

log = logging.getLogger("training.merge")

MERGE_INFO = "cadsnap_merge.json"
# Files beside the base weights that describe the model to CadSnap's own tools; carried over as-is.
CARRIED_FILES = ("cadsnap_model.json",)


class MergeError(ValueError):
    """The adapter or base cannot be merged as asked; the message says what to pass instead."""


def _dtype(name: str):
    import torch

    try:
        dtype = getattr(torch, name.removeprefix("torch."))
    except AttributeError:
        dtype = None
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise MergeError(f"unknown floating-point dtype {name!r}; use float16, bfloat16 or float32")
    return dtype


def merge_device(device: str = "auto") -> str:
    """"auto": a GPU only when it can hold the whole dequantised model (>= 24 GB), else the CPU."""
    import torch

    if device not in ("auto", "cuda", "cpu"):
        raise MergeError(f"device must be auto, cuda or cpu, not {device!r}")
    if device != "auto":
        return device
    if torch.cuda.is_available() and torch.cuda.get_device_properties(0).total_memory >= 24 * 2**30:
        return "cuda"
    return "cpu"


def read_training_info(adapter: Path) -> dict[str, Any]:
    path = adapter / TRAINING_INFO
    if not (adapter / "adapter_config.json").is_file():
        raise MergeError(f"{adapter} is not a PEFT adapter folder (no adapter_config.json)")
    return json.loads(path.read_text()) if path.is_file() else {}


def merge(
    adapter: str | Path,
    out: str | Path,
    base: str | None = None,
    quantize: str | None = None,
    dtype: str = "float16",
    device: str = "auto",
) -> Path:
    """Merge ``adapter`` into its (dequantised) base and save the result to ``out``; returns ``out``."""
    from peft import PeftModel
    from transformers import AutoProcessor

    from training.llava_model import CHAT_TEMPLATE

    adapter, out = Path(adapter), Path(out)
    info = read_training_info(adapter)
    base = base or info.get("base")
    if not base:
        raise MergeError(f"{adapter} does not record its base model: pass --base")
    quantize = quantize or info.get("quantize", "nf4")
    out_dtype = _dtype(dtype)
    # Quantise with the dtype training used: the dequantised weights are then exactly the ones the
    # adapter saw (the NF4 codes and scales do not depend on where the merge runs).
    train_dtype = _dtype(info.get("compute_dtype", "float32"))
    device = merge_device(device)

    how = "NF4, to be dequantised" if quantize == "nf4" else "full precision"
    log.info("loading %s (%s) on %s ...", base, how, device)
    model = load_base(base, quantize, train_dtype, device_map={"": 0} if device == "cuda" else None)
    if quantize == "nf4":
        # transformers' own dequantisation; it also drops the quantisation config, so the saved
        # folder is a plain full-precision model.
        model = model.dequantize(dtype=train_dtype)
    log.info("merging %s ...", adapter)
    merged = PeftModel.from_pretrained(model, adapter).merge_and_unload()
    merged = merged.to(out_dtype)

    out.mkdir(parents=True, exist_ok=True)
    merged.save_pretrained(out, max_shard_size="2GB")
    has_processor = (adapter / "processor_config.json").is_file()
    processor = AutoProcessor.from_pretrained(adapter if has_processor else base)
    if not processor.chat_template:
        processor.chat_template = CHAT_TEMPLATE
    processor.save_pretrained(out)
    base_dir = Path(base)
    for name in CARRIED_FILES:
        if (base_dir / name).is_file():
            shutil.copy2(base_dir / name, out / name)
    (out / MERGE_INFO).write_text(json.dumps({
        "base": base,
        "adapter": str(adapter),
        "merged_into": "dequantised NF4 base" if quantize == "nf4" else "full-precision base",
        "dtype": str(out_dtype).removeprefix("torch."),
        "training": info,
    }, indent=2, default=str))
    log.info("merged model saved to %s", out)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.merge", description=__doc__.split("\n\n")[0])
    parser.add_argument("--adapter", required=True, help="the folder training.qlora wrote (OUT/adapter)")
    parser.add_argument("--out", required=True, help="where to write the merged Hugging Face folder")
    parser.add_argument("--base", help="the base model (default: the one the adapter records)")
    parser.add_argument("--quantize", choices=("nf4", "none"),
                        help="how training loaded the base (default: what the adapter records, else nf4)")
    parser.add_argument("--dtype", default="float16", help="dtype of the saved weights (default: float16)")
    parser.add_argument("--device", default="auto", choices=("auto", "cuda", "cpu"),
                        help="where to merge (default: a GPU with >= 24 GB, else the CPU)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    try:
        merge(args.adapter, args.out, base=args.base, quantize=args.quantize, dtype=args.dtype,
              device=args.device)
    except MergeError as exc:
        parser.error(str(exc))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
