"""QLoRA fine-tuning of a LLaVA model on image -> CadQuery pairs.

    python -m training.qlora --data data/synth --base llava-hf/llava-1.5-7b-hf --out runs/qlora

The recipe, top to bottom: the base model in 4-bit NF4 with double quantisation (vision tower,
projector and ``lm_head`` stay unquantised), compute in fp16 on a T4 (bf16 on Ampere and newer,
fp32 on CPU), LoRA on the language model's linear layers only (a regex on ``language_model`` --
short names like ``q_proj`` would also hit CLIP's), optionally the projector trained in full,
gradient checkpointing, paged 8-bit AdamW on CUDA (plain AdamW on CPU). Samples are tokenised by
``training.collate`` (BOS/EOS, prompt masked, never truncated: over-long rows are dropped first).

Every ``--eval-steps`` the run computes the validation loss and, on the first ``--val-generate``
validation images, generates code greedily, runs it in the sandbox and reports VSR and IoU against
the ground-truth program. Checkpoints go to ``OUT/checkpoint-N`` every ``--save-steps``; running the
same command again resumes from the newest one. At the end: ``OUT/adapter`` (LoRA adapter +
processor + ``cadsnap_training.json``, what ``training.merge`` reads), ``OUT/log_history.json``,
``OUT/validation.jsonl`` and ``OUT/curves.png``.

Data: our dataset folder (``training.synth``; ``--data DIR``) or any Hugging Face dataset with
image and code columns (``--hf-dataset CADCODER/GenCAD-Code --column code=cadquery
--val-split validation``; needs internet).

Several GPUs (plain data parallel, one 4-bit copy per GPU; CPU processes talk over gloo)::

    torchrun --nproc-per-node 2 -m training.qlora --data ... --out ...
    accelerate launch --multi_gpu --num_processes 2 -m training.qlora --data ... --out ...

4-bit on CPU: bitsandbytes >= 0.50 runs NF4 on CPU as long as every quantised layer has
``in_features >= 64`` (the tiny test models are sized for that); ``--quantize none`` trains plain
LoRA on full-precision weights anywhere.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from training.validation import decode_and_score, plot_curves

log = logging.getLogger("training.qlora")

# LoRA goes on every linear layer of the language model and nowhere else (FIELD_NOTES).
LANGUAGE_MODEL_LINEARS = r".*language_model.*\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)"
# Kept out of 4-bit: transformers 5.x module names of LLaVA's vision tower, projector and head.
UNQUANTISED_MODULES = ["model.vision_tower", "model.multi_modal_projector", "lm_head"]
TRAINING_INFO = "cadsnap_training.json"


@dataclass
class QLoraConfig:
    """Everything one run needs; each field is also a command-line option (``--max-length`` ...)."""

    data: str | None = None  # our dataset folder (python -m training.synth writes it)
    hf_dataset: str | None = None  # or a Hugging Face dataset name or local path, e.g. CADCODER/GenCAD-Code
    column: dict[str, str] = field(default_factory=dict)  # our name -> theirs, e.g. {"code": "cadquery"}
    train_split: str = "train"
    val_split: str = "val"  # "" for none
    base: str = "llava-hf/llava-1.5-7b-hf"
    out: str = "runs/qlora"
    quantize: str = "nf4"  # "nf4" (QLoRA) or "none" (LoRA on full-precision weights)
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    train_projector: bool = False
    max_length: int = 2048  # tokens, image tokens included (576 for LLaVA-1.5 at 336 px)
    instruction: str | None = None
    epochs: float = 1.0
    max_steps: int = -1  # overrides epochs when > 0
    batch_size: int = 1
    grad_accum: int = 8
    lr: float = 2e-4
    warmup: float = 0.03  # a share of all steps when < 1, else a step count
    gradient_checkpointing: bool = True
    logging_steps: int = 10
    save_steps: int = 200
    save_total_limit: int = 2
    eval_steps: int = 200
    val_loss_samples: int = 64  # validation rows the loss is computed on
    val_generate: int = 4  # validation images generated, executed and scored each evaluation
    max_new_tokens: int = 768
    max_train_samples: int | None = None
    seed: int = 0
    resume: bool = True  # continue from OUT's newest checkpoint when there is one

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# -- hardware ------------------------------------------------------------------------------------


def compute_dtype():
    """fp16 on GPUs before Ampere (a T4 reports bf16 support but has none), bf16 after, fp32 on CPU."""
    import torch

    if not torch.cuda.is_available():
        return torch.float32
    major, _ = torch.cuda.get_device_capability()
    return torch.bfloat16 if major >= 8 else torch.float16


def quantization_config(dtype):
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=dtype,
        llm_int8_skip_modules=UNQUANTISED_MODULES,
    )


def load_base(base: str, quantize: str = "nf4", dtype=None, device_map: Any = None):
    """The base LLaVA model, 4-bit NF4 when ``quantize == "nf4"`` (the same settings training used)."""
    from transformers import LlavaForConditionalGeneration

    if quantize not in ("nf4", "none"):
        raise ValueError(f"quantize must be 'nf4' or 'none', not {quantize!r}")
    dtype = dtype or compute_dtype()
    kwargs: dict[str, Any] = {"dtype": dtype}
    if quantize == "nf4":
        kwargs["quantization_config"] = quantization_config(dtype)
    if device_map is not None:
        kwargs["device_map"] = device_map
    return LlavaForConditionalGeneration.from_pretrained(base, **kwargs)


# -- data ----------------------------------------------------------------------------------------


def load_rows(config: QLoraConfig, split: str):
    """One split as a ``datasets.Dataset`` with at least ``image`` and ``code`` columns."""
    if bool(config.data) == bool(config.hf_dataset):
        raise ValueError("give exactly one of --data (our dataset folder) or --hf-dataset (a HF dataset)")
    if config.data:
        from training.synth.dataset import load_split

        rows = load_split(config.data, split)
    else:
        from datasets import load_dataset

        rows = load_dataset(config.hf_dataset, split=split)
    renames = {theirs: ours for ours, theirs in config.column.items() if theirs != ours}
    if renames:
        missing = sorted(set(renames) - set(rows.column_names))
        if missing:
            raise ValueError(f"--column names {missing} not in the dataset; it has {rows.column_names}")
        rows = rows.rename_columns(renames)
    missing = {"image", "code"} - set(rows.column_names)
    if missing:
        raise ValueError(
            f"the {split!r} split has no {sorted(missing)} column (it has {rows.column_names}); "
            "map yours with --column image=THEIRS --column code=THEIRS"
        )
    return rows


def prepare_data(config: QLoraConfig, collator, main_process_first):
    """Train and validation rows, over-long ones dropped (the main process fills the cache first)."""
    from training.collate import filter_overlong

    with main_process_first(desc="loading data"):
        train = load_rows(config, config.train_split)
        if config.max_train_samples:
            train = train.select(range(min(config.max_train_samples, len(train))))
        before = len(train)
        train = filter_overlong(train, collator)
        if len(train) < before:
            log.warning("dropped %d of %d training rows longer than %d tokens", before - len(train), before,
                        config.max_length)
        if not len(train):
            raise ValueError(f"no training rows fit max_length={config.max_length}")
        val = None
        if config.val_split:
            val = load_rows(config, config.val_split)
            val = val.select(range(min(len(val), max(config.val_loss_samples, config.val_generate))))
            val = filter_overlong(val, collator)
    return train, val


# -- model ---------------------------------------------------------------------------------------


def build_model(config: QLoraConfig, dtype, device_map: Any = None):
    """Base (4-bit or not) + LoRA on the language model; the projector trained in full on request."""
    import torch
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training

    model = load_base(config.base, config.quantize, dtype, device_map)
    if config.quantize == "nf4":
        # Norms and the unquantised parts in fp32 for stable training, inputs that carry gradients.
        model = prepare_model_for_kbit_training(
            model,
            use_gradient_checkpointing=config.gradient_checkpointing,
            gradient_checkpointing_kwargs={"use_reentrant": False},
        )
    lora = LoraConfig(
        r=config.lora_r,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        target_modules=LANGUAGE_MODEL_LINEARS,
        modules_to_save=["multi_modal_projector"] if config.train_projector else None,
        task_type="CAUSAL_LM",
    )
    model = get_peft_model(model, lora)
    # Trainable weights in fp32: fp16 AMP cannot unscale fp16 gradients (e.g. the projector copy
    # with --quantize none on a T4); LoRA weights already are fp32.
    for parameter in model.parameters():
        if parameter.requires_grad and parameter.dtype != torch.float32:
            parameter.data = parameter.data.float()
    return model


# -- validation: generate, run in the sandbox, score -----------------------------------------------


def make_validation_callback(config: QLoraConfig, processor, val_rows):
    """A ``TrainerCallback`` that generates, executes and scores a few validation samples."""
    from transformers import TrainerCallback

    class GenerationValidation(TrainerCallback):
        def __init__(self) -> None:
            self.pool = None

        def on_evaluate(self, args, state, control, model=None, **kwargs):
            # Rank 0 only: the others wait at their next collective, as they do for checkpoints.
            if not state.is_world_process_zero or not config.val_generate:
                return
            if self.pool is None:
                from model_runtime.sandbox import SandboxPool

                self.pool = SandboxPool(workers=1, timeout_s=30.0)
            rows = [val_rows[i] for i in range(min(config.val_generate, len(val_rows)))]
            try:
                scored, samples = decode_and_score(model, processor, rows, self.pool, config.instruction,
                                                   config.max_new_tokens, progress=True)
            except ValueError as exc:  # bad validation data must not end a long run
                log.warning("step %d: validation skipped: %s", state.global_step, exc)
                return
            # The Trainer's log history mixes train and eval entries: validation keys carry val_.
            metrics = {f"val_{key}": scored[key] for key in ("vsr", "iou", "iou_valid")}
            state.log_history.append({**metrics, "step": state.global_step})
            log.info("step %d: %s", state.global_step, metrics)
            with open(Path(args.output_dir) / "validation.jsonl", "a", encoding="utf-8") as f:
                f.write(json.dumps({"step": state.global_step, **metrics, "samples": samples}) + "\n")

        def on_train_end(self, args, state, control, **kwargs):
            if self.pool is not None:
                self.pool.close()
                self.pool = None

    return GenerationValidation()


# -- the run -------------------------------------------------------------------------------------


def train(config: QLoraConfig, callbacks: list | None = None) -> Path:
    """Run the recipe; returns the adapter folder. ``callbacks``: extra ``TrainerCallback``s (timing...)."""
    import torch
    from transformers import AutoProcessor, Trainer, TrainingArguments, set_seed
    from transformers.trainer_utils import get_last_checkpoint

    from training.collate import LlavaCollator

    set_seed(config.seed)
    out = Path(config.out)
    cuda = torch.cuda.is_available()
    dtype = compute_dtype()
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1  # torchrun / accelerate launch set these

    processor = AutoProcessor.from_pretrained(config.base)
    collator = LlavaCollator(processor, max_length=config.max_length, instruction=config.instruction)

    args = TrainingArguments(
        output_dir=str(out),
        num_train_epochs=config.epochs,
        max_steps=config.max_steps,
        per_device_train_batch_size=config.batch_size,
        per_device_eval_batch_size=config.batch_size,
        gradient_accumulation_steps=config.grad_accum,
        learning_rate=config.lr,
        warmup_steps=config.warmup,
        lr_scheduler_type="cosine",
        optim="paged_adamw_8bit" if cuda else "adamw_torch",
        fp16=cuda and dtype == torch.float16,
        bf16=cuda and dtype == torch.bfloat16,
        gradient_checkpointing=config.gradient_checkpointing,
        gradient_checkpointing_kwargs={"use_reentrant": False},
        logging_steps=config.logging_steps,
        save_strategy="steps",
        save_steps=config.save_steps,
        save_total_limit=config.save_total_limit,
        eval_strategy="steps" if config.val_split else "no",
        eval_steps=config.eval_steps,
        remove_unused_columns=False,  # the collator needs the image and code columns
        dataloader_pin_memory=cuda,
        ddp_backend="gloo" if distributed and not cuda else None,
        ddp_find_unused_parameters=False,
        use_cpu=not cuda,
        report_to="none",
        seed=config.seed,
    )

    train_rows, val_rows = prepare_data(config, collator, args.main_process_first)
    device_map = {"": local_rank} if cuda else None  # one whole copy per process for data parallel
    model = build_model(config, dtype, device_map)
    if args.process_index == 0:
        model.print_trainable_parameters()

    loss_rows = None
    if val_rows is not None:
        loss_rows = val_rows.select(range(min(len(val_rows), config.val_loss_samples)))
    callbacks = list(callbacks or [])
    if val_rows is not None:
        callbacks.append(make_validation_callback(config, processor, val_rows))
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=train_rows,
        eval_dataset=loss_rows,
        data_collator=collator,
        callbacks=callbacks,
    )
    checkpoint = get_last_checkpoint(str(out)) if config.resume and out.is_dir() else None
    if checkpoint:
        log.info("resuming from %s", checkpoint)
    trainer.train(resume_from_checkpoint=checkpoint)
    if val_rows is not None and trainer.state.global_step % config.eval_steps:
        trainer.evaluate()  # the curves end on the final weights

    adapter = out / "adapter"
    if trainer.is_world_process_zero():
        trainer.model.save_pretrained(adapter)
        processor.save_pretrained(adapter)
        info = {
            "base": config.base,
            "quantize": config.quantize,
            "compute_dtype": str(dtype).removeprefix("torch."),
            "bnb_4bit": quantization_config(dtype).to_dict() if config.quantize == "nf4" else None,
            "global_step": trainer.state.global_step,
            "train_rows": len(train_rows),
            "config": config.to_dict(),
        }
        (adapter / TRAINING_INFO).write_text(json.dumps(info, indent=2, default=str))
        (out / "log_history.json").write_text(json.dumps(trainer.state.log_history, indent=2))
        plot_curves(trainer.state.log_history, out / "curves.png")
        log.info("adapter saved to %s; curves in %s", adapter, out / "curves.png")
    return adapter


# -- command line --------------------------------------------------------------------------------


def _column_mapping(text: str) -> tuple[str, str]:
    ours, sep, theirs = text.partition("=")
    if not sep or ours not in ("image", "code", "instruction") or not theirs:
        raise argparse.ArgumentTypeError(f"expected image=NAME, code=NAME or instruction=NAME, not {text!r}")
    return ours, theirs


def parse_args(argv: list[str] | None = None) -> QLoraConfig:
    parser = argparse.ArgumentParser(prog="python -m training.qlora", description=__doc__.split("\n\n")[0])
    defaults = QLoraConfig()
    for f in fields(QLoraConfig):
        flag = "--" + f.name.replace("_", "-")
        default = getattr(defaults, f.name)
        if f.name == "column":
            parser.add_argument(flag, type=_column_mapping, action="append", default=[],
                                metavar="OURS=THEIRS", help="map image, code or instruction")
        elif isinstance(default, bool):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=default)
        elif f.name == "quantize":
            parser.add_argument(flag, choices=("nf4", "none"), default=default)
        else:
            kind = int if "int" in str(f.type) else float if "float" in str(f.type) else str
            parser.add_argument(flag, type=kind, default=default, help=f"default: {default}")
    namespace = vars(parser.parse_args(argv))
    namespace["column"] = dict(namespace["column"])
    config = QLoraConfig(**namespace)
    if bool(config.data) == bool(config.hf_dataset):
        parser.error("give exactly one of --data DIR (our dataset) or --hf-dataset NAME")
    return config


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    train(parse_args(argv))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
