"""The QLoRA recipe on a tiny LLaVA (real NF4 through bitsandbytes' CPU kernels, real PEFT, real Trainer)."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from training.qlora import QLoraConfig, build_model, load_base, load_rows, parse_args, train
from training.tiny_models import BOX_PROGRAM, CORPUS, make_tiny_llava

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Two busy cores: several torch threads per process thrash (60x slower here), one does not."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return make_tiny_llava(tmp_path_factory.mktemp("tiny"))


def write_dataset(folder: Path, train_codes: list[str], val_codes: list[str]) -> Path:
    """A dataset as a Hugging Face repo stores one: parquet splits, an image column, its own names."""
    from datasets import Dataset, Features, Value
    from datasets import Image as ImageFeature

    rng = np.random.default_rng(0)
    features = Features({"image": ImageFeature(), "cadquery": Value("string"), "family": Value("string")})
    for split, codes in (("train", train_codes), ("validation", val_codes)):
        images = [Image.fromarray(rng.integers(0, 255, (40, 56, 3), dtype=np.uint8)) for _ in codes]
        rows = {"image": images, "cadquery": codes, "family": ["test"] * len(codes)}
        Dataset.from_dict(rows, features=features).to_parquet(str(folder / f"{split}.parquet"))
    return folder


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return write_dataset(tmp_path_factory.mktemp("data"), [BOX_PROGRAM] * 4, [BOX_PROGRAM] * 2)


def tiny_config(base: Path, data: Path, out: Path, **overrides) -> QLoraConfig:
    settings = dict(
        hf_dataset=str(data), column={"code": "cadquery"}, val_split="validation", base=str(base),
        out=str(out), batch_size=2, grad_accum=1, lr=1e-2, warmup=0, lora_dropout=0.0, logging_steps=1,
        max_length=256, max_new_tokens=40, val_generate=1,
    )
    return QLoraConfig(**{**settings, **overrides})


@pytest.fixture(scope="module")
def trained(tiny, data, tmp_path_factory) -> Path:
    """Two samples, 80 steps: enough for the tiny model to learn the program and where it ends."""
    out = tmp_path_factory.mktemp("run")
    train(tiny_config(tiny, data, out, max_train_samples=2, max_steps=80, eval_steps=40, save_steps=40))
    return out


def _history(out: Path) -> list[dict]:
    return json.loads((out / "log_history.json").read_text())


def test_loss_falls(trained):
    losses = [e["loss"] for e in _history(trained) if "loss" in e]
    eval_losses = [e["eval_loss"] for e in _history(trained) if "eval_loss" in e]
    assert len(losses) == 80
    # The tiny model's head and final norm are frozen and random, so its logits stay small and the loss
    # cannot go far below ln(vocab) ~ 6; greedy decoding is nonetheless exact (test below).
    assert np.mean(losses[-5:]) < np.mean(losses[:5]) - 0.5
    assert len(eval_losses) == 2 and eval_losses[1] < eval_losses[0]


def _generate(model, processor, image, max_new_tokens: int = 60):
    import torch

    from model_runtime.picture.images import load_image
    from model_runtime.prompt import build_prompt

    inputs = processor(images=[load_image(image)], text=[build_prompt()], return_tensors="pt")
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False)
    return out[0, inputs.input_ids.shape[1]:]


def test_trained_model_emits_the_program_and_stops_at_eos(trained, tiny, data):
    from datasets import load_dataset
    from peft import PeftModel
    from transformers import AutoProcessor

    processor = AutoProcessor.from_pretrained(trained / "adapter")
    model = PeftModel.from_pretrained(load_base(str(tiny), "nf4"), trained / "adapter").eval()
    for split in ("train", "validation"):  # a seen and an unseen image
        image = load_dataset(str(data), split=split)[0]["image"]
        new = _generate(model, processor, image, max_new_tokens=60)
        assert int(new[-1]) == processor.tokenizer.eos_token_id and len(new) < 60, "did not stop at EOS"
        assert processor.tokenizer.decode(new, skip_special_tokens=True).strip() == BOX_PROGRAM.strip()


def test_validation_runs_generated_code_in_the_sandbox(trained):
    records = [json.loads(line) for line in (trained / "validation.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [40, 80]
    last = records[-1]
    assert last["val_vsr"] == 1.0 and last["val_iou"] > 0.99, last
    assert last["samples"][0]["code"].strip() == BOX_PROGRAM.strip()
    history = _history(trained)
    assert [e["val_vsr"] for e in history if "val_vsr" in e] == [r["val_vsr"] for r in records]
    curves = Image.open(trained / "curves.png")
    assert curves.size[0] > 600 and curves.size[1] > 300


def test_adapter_is_lora_on_the_language_model_only(trained):
    from safetensors import safe_open

    adapter = trained / "adapter"
    with safe_open(str(adapter / "adapter_model.safetensors"), "pt") as f:
        names = list(f.keys())
    assert names and all("language_model" in n and "lora_" in n for n in names)
    info = json.loads((adapter / "cadsnap_training.json").read_text())
    assert info["quantize"] == "nf4" and info["global_step"] == 80
    assert info["bnb_4bit"]["bnb_4bit_quant_type"] == "nf4" and info["bnb_4bit"]["bnb_4bit_use_double_quant"]
    assert (adapter / "processor_config.json").is_file() and (adapter / "chat_template.jinja").is_file()


def test_projector_option_trains_the_projector_and_nothing_of_the_vision_tower(tiny, data, tmp_path):
    import bitsandbytes as bnb

    model = build_model(tiny_config(tiny, data, tmp_path, train_projector=True), dtype=None)
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert any("multi_modal_projector" in n for n in trainable)
    assert not any("vision_tower" in n for n in trainable)
    assert all("language_model" in n or "multi_modal_projector" in n for n in trainable)
    quantised = [n for n, m in model.named_modules() if isinstance(m, bnb.nn.Linear4bit)]
    assert quantised and all("language_model" in n for n in quantised)  # vision, projector, head unquantised


def test_plain_lora_keeps_trainable_weights_in_fp32_and_trains(tiny, data, tmp_path):
    import torch

    config = tiny_config(tiny, data, tmp_path / "plain", quantize="none", train_projector=True, max_steps=2,
                         val_split="", save_steps=100)
    model = build_model(config, dtype=torch.float16)  # what a T4 loads; fp16 AMP needs fp32 trainables
    assert {p.dtype for p in model.parameters() if p.requires_grad} == {torch.float32}
    adapter = train(config)
    assert json.loads((adapter / "cadsnap_training.json").read_text())["quantize"] == "none"


def test_resume_continues_from_the_newest_checkpoint(tiny, data, tmp_path):
    out = tmp_path / "run"
    config = tiny_config(tiny, data, out, max_steps=4, save_steps=2, val_generate=0, val_split="")
    train(config)
    # Mark the newest checkpoint's history: only a run that resumed from it can carry the mark.
    state_path = out / "checkpoint-4" / "trainer_state.json"
    state = json.loads(state_path.read_text())
    state["log_history"][0]["loss"] = 123.0
    state_path.write_text(json.dumps(state))

    config.max_steps = 6
    train(config)
    history = _history(out)
    losses = [e["loss"] for e in history if "loss" in e]
    assert len(losses) == 6 and losses[0] == 123.0
    assert json.loads((out / "adapter" / "cadsnap_training.json").read_text())["global_step"] == 6


@pytest.mark.slow
def test_two_processes_under_torchrun_on_cpu(tiny, data, tmp_path):
    out = tmp_path / "ddp"
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "-m", "training.qlora",
        "--hf-dataset", str(data), "--column", "code=cadquery", "--val-split", "", "--base", str(tiny),
        "--out", str(out), "--max-steps", "2", "--batch-size", "1", "--grad-accum", "1",
        "--logging-steps", "1", "--max-length", "256", "--save-steps", "100",
    ]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    run = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    # 4 rows, 2 processes x batch 1 x 2 steps: exactly one epoch (a single process would be at 0.5).
    history = _history(out)
    assert history[-1]["epoch"] == pytest.approx(1.0)
    assert (out / "adapter" / "adapter_model.safetensors").is_file()


def test_scoring_counts_failures_as_zero_and_skips_broken_ground_truth():
    from model_runtime.sandbox import SandboxPool
    from training.validation import score_programs

    cylinder = CORPUS[1]
    with SandboxPool(workers=1, timeout_s=30.0) as pool:
        metrics, samples = score_programs(
            pool,
            [BOX_PROGRAM, "result = 1 / 0", BOX_PROGRAM, BOX_PROGRAM],
            [BOX_PROGRAM, BOX_PROGRAM, cylinder, "import cadquery as cq\nresult = None\n"],
        )
    assert [s["valid"] for s in samples] == [True, False, True, False]
    assert samples[0]["iou"] == pytest.approx(1.0, abs=1e-6) and 0 < samples[2]["iou"] < 0.9
    assert "ground truth failed" in samples[3]["error"]  # excluded from the metrics below
    assert metrics["vsr"] == pytest.approx(2 / 3) and metrics["scored"] == 3
    assert metrics["iou"] == pytest.approx((1.0 + samples[2]["iou"]) / 3)
    assert metrics["iou_valid"] == pytest.approx((1.0 + samples[2]["iou"]) / 2)


def test_column_mapping_and_bad_data_give_clear_errors(data, tmp_path):
    rows = load_rows(QLoraConfig(hf_dataset=str(data), column={"code": "cadquery"}), "train")
    assert {"image", "code"} <= set(rows.column_names) and rows[0]["code"] == BOX_PROGRAM
    with pytest.raises(ValueError, match="--column"):
        load_rows(QLoraConfig(hf_dataset=str(data)), "train")  # their column is "cadquery", not "code"
    with pytest.raises(ValueError, match="not in the dataset"):
        load_rows(QLoraConfig(hf_dataset=str(data), column={"code": "program"}), "train")
    with pytest.raises(SystemExit):
        parse_args(["--base", "x"])  # no data at all
    with pytest.raises(SystemExit):
        parse_args(["--hf-dataset", "x", "--column", "colour=c"])
    config = parse_args(["--hf-dataset", "x", "--column", "code=cadquery", "--max-train-samples", "8",
                         "--no-gradient-checkpointing", "--train-projector"])
    assert config.column == {"code": "cadquery"} and config.max_train_samples == 8
    assert not config.gradient_checkpointing and config.train_projector


def test_overlong_rows_are_dropped_before_training(tiny, tmp_path):
    data = write_dataset(tmp_path / "data", [BOX_PROGRAM, CORPUS[4], BOX_PROGRAM], [BOX_PROGRAM])
    from transformers import AutoProcessor

    from training.collate import LlavaCollator
    from training.qlora import prepare_data

    collator = LlavaCollator(AutoProcessor.from_pretrained(tiny), max_length=0)
    collator.max_length = collator.length({"code": BOX_PROGRAM})  # the long program no longer fits
    config = tiny_config(tiny, data, tmp_path / "out", max_length=collator.max_length)
    no_barrier = lambda desc: contextlib.nullcontext()  # noqa: E731 - one process, nothing to wait for
    train_rows, val_rows = prepare_data(config, collator, no_barrier)
    assert train_rows["code"] == [BOX_PROGRAM, BOX_PROGRAM] and len(val_rows) == 1


def test_bench_script_runs_the_recipe_and_writes_its_report(tmp_path):
    from training.bench_qlora import LLAVA_15_7B, BenchConfig, run_bench

    report = run_bench(BenchConfig(shape="tiny", tokens=120, steps=3, out=str(tmp_path)))
    assert report["steps"] == 3 and report["sequence_tokens"] >= 120 and report["s_per_step"] > 0
    assert json.loads((tmp_path / "bench_qlora.json").read_text())["shape"] == "tiny"
    assert "seconds per step" in (tmp_path / "bench_qlora.md").read_text()
    assert LLAVA_15_7B.image_tokens == 576  # LLaVA-1.5 at 336 px


@pytest.mark.gpu
@pytest.mark.slow
def test_7b_shaped_qlora_step_fits_a_t4(tmp_path):
    """One QLoRA step of the 7B-shaped model (random weights): the seed's budget is < 10 GB of VRAM."""
    from training.bench_qlora import BenchConfig, run_bench

    report = run_bench(BenchConfig(steps=2, out=str(tmp_path)))
    assert report["peak_vram_gb"] < 10.0, report
