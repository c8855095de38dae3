"""The from-scratch recipe on real synthetic data and the tiny preset: loss falls, validation runs the
model's code in the sandbox, a stopped run resumes to exactly the same weights, curves are written."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from training.train_compact import CompactTrainConfig, batch_indices, lr_factor, main

TINY_RUN = ["--preset", "tiny", "--batch-size", "4", "--max-steps", "16", "--warmup-steps", "3",
            "--lr", "3e-3", "--vocab-size", "400", "--log-every", "4", "--save-every", "8",
            "--eval-every", "8", "--eval-samples", "1", "--max-new-tokens", "24", "--max-length", "400"]


def test_schedule_warms_up_then_decays_to_the_floor():
    cfg = CompactTrainConfig(warmup_steps=10, max_steps=110, min_lr_ratio=0.1)
    assert lr_factor(0, cfg) == pytest.approx(0.1)
    assert lr_factor(9, cfg) == pytest.approx(1.0)
    assert lr_factor(60, cfg) == pytest.approx(0.55)
    assert lr_factor(110, cfg) == pytest.approx(0.1)


def test_batches_cover_every_row_once_per_epoch_and_depend_only_on_the_step():
    seen = [i for step in range(5) for i in batch_indices(step, 4, 10, seed=3)]
    assert sorted(seen[:10]) == list(range(10)) and sorted(seen[10:20]) == list(range(10))
    assert batch_indices(3, 4, 10, seed=3) == seen[12:16]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """A real (small) dataset from the data engine: seeds 0..89 give train, val and test rows."""
    out = tmp_path_factory.mktemp("data")
    subprocess.run([sys.executable, "-m", "training.synth", "--n", "60", "--out", str(out),
                    "--shard-size", "30", "--no-gallery"], check=True, capture_output=True)
    return out


def _weights(folder):
    from safetensors.torch import load_file

    return load_file(folder / "model.safetensors")


@pytest.mark.slow  # three short runs: ~40 s of CPU
def test_training_learns_checkpoints_and_resumes_exactly(dataset, tmp_path):
    straight, stopped = tmp_path / "straight", tmp_path / "stopped"
    assert main(["--data", str(dataset), "--out", str(straight), *TINY_RUN]) == 0
    assert main(["--data", str(dataset), "--out", str(stopped), *TINY_RUN, "--stop-at", "6"]) == 0
    assert not (stopped / "model").exists() and (stopped / "checkpoint" / "trainer_state.pt").exists()
    assert main(["--data", str(dataset), "--out", str(stopped), *TINY_RUN]) == 0

    a, b = _weights(straight / "model"), _weights(stopped / "model")
    assert a.keys() == b.keys()
    assert all((a[k] - b[k]).abs().max() == 0 for k in a), "a resumed run must equal an uninterrupted one"

    history = json.loads((straight / "history.json").read_text())
    losses = [h["loss"] for h in history["train"]]
    assert [h["step"] for h in history["train"]] == [4, 8, 12, 16]
    assert losses[-1] < 0.85 * losses[0], losses
    assert [h["step"] for h in history["val"]] == [8, 16]
    assert all(0 <= h["vsr"] <= 1 and 0 <= h["iou"] <= 1 and h["val_loss"] > 0 for h in history["val"])
    resumed = json.loads((stopped / "history.json").read_text())
    for log in (history, resumed):  # wall-clock throughput differs between runs; the rest must not
        for entry in log["train"]:
            entry.pop("samples_per_s")
    assert history == resumed
    assert (straight / "curves.png").stat().st_size > 5000

    # A warm start takes the finished run's tokenizer and weights (at lr 0 they come out unchanged).
    warm = tmp_path / "warm"
    assert main(["--data", str(dataset), "--out", str(warm), *TINY_RUN, "--init-from", str(straight),
                 "--lr", "0", "--max-steps", "2", "--eval-every", "100"]) == 0
    assert (warm / "tokenizer" / "tokenizer.model").read_bytes() == (
        straight / "tokenizer" / "tokenizer.model").read_bytes()
    c = _weights(warm / "model")
    assert all((a[k] - c[k]).abs().max() == 0 for k in a)

    from transformers import AutoProcessor, LlavaForConditionalGeneration

    model = LlavaForConditionalGeneration.from_pretrained(straight / "model")
    processor = AutoProcessor.from_pretrained(straight / "model")
    assert processor.tokenizer.eos_token_id == model.generation_config.eos_token_id
    assert json.loads((straight / "model" / "cadsnap_model.json").read_text())["image_size"] == 32


@pytest.mark.slow  # two short runs: ~20 s of CPU
def test_batch_workers_build_the_same_batches_and_loss_only_validation_needs_no_sandbox(dataset, tmp_path):
    """The GPU recipe's options: batches built by worker processes train to exactly the weights the
    in-process loop gives, and ``--eval-samples 0`` validates on the loss alone (no CadQuery needed)."""
    run = [*TINY_RUN, "--max-steps", "8", "--eval-samples", "0"]
    assert main(["--data", str(dataset), "--out", str(tmp_path / "inline"), *run]) == 0
    assert main(["--data", str(dataset), "--out", str(tmp_path / "workers"), *run, "--workers", "2"]) == 0
    a, b = _weights(tmp_path / "inline" / "model"), _weights(tmp_path / "workers" / "model")
    assert all((a[k] - b[k]).abs().max() == 0 for k in a)
    history = json.loads((tmp_path / "workers" / "history.json").read_text())
    assert [sorted(h) for h in history["val"]] == [["image_reliance", "step", "val_loss"]]
    assert (tmp_path / "workers" / "curves.png").stat().st_size > 5000


def test_validation_runs_generated_code_in_the_sandbox_and_scores_it(dataset, tmp_path):
    """A model that always writes a valid box: VSR 1, IoU equal to the box's IoU with each truth."""
    import torch
    from transformers import AutoProcessor, LlavaForConditionalGeneration

    from model_runtime.metrics import iou
    from model_runtime.sandbox import SandboxPool
    from training.collate import LlavaCollator
    from training.synth.dataset import load_split
    from training.tiny_models import BOX_PROGRAM, make_trained_tiny_llava
    from training.train_compact import validate

    folder = make_trained_tiny_llava(tmp_path / "box", BOX_PROGRAM)
    model = LlavaForConditionalGeneration.from_pretrained(folder)
    processor = AutoProcessor.from_pretrained(folder)
    val = load_split(dataset, "val").select(range(2))
    cfg = CompactTrainConfig(eval_samples=2, batch_size=2, max_new_tokens=48)
    with SandboxPool(workers=1) as pool:
        collator = LlavaCollator(processor, 600)
        metrics = validate(model, processor, collator, val, pool, cfg, torch.device("cpu"))
        box = pool.run(BOX_PROGRAM).shape()
        expected = sum(iou(box, pool.run(val[i]["code"]).shape()) for i in range(2)) / 2
    assert metrics["vsr"] == 1.0
    assert metrics["iou"] == pytest.approx(expected, abs=1e-9)
    assert metrics["val_loss"] > 0 and model.training


def test_image_reliance_reports_losses_and_the_family_probe(dataset, tmp_path):
    from training.image_reliance import measure
    from training.tiny_models import make_tiny_llava

    model = make_tiny_llava(tmp_path / "tiny")  # seed 0: the same weights as the probe's random model
    r = measure(model, dataset, rows=4, probe=40)
    assert r.loss_real > 0 and r.loss_shuffled > 0 and r.loss_blank > 0
    assert r.loss_shuffled != r.loss_real  # even a random model's answer depends on its image tokens
    assert r.probe_trained == r.probe_random
    assert 0 < r.probe_chance <= 1 and 0 <= r.probe_trained <= 1
