"""``python -m training.retrain`` end to end at tiny scale on the CPU: data made on the fly by a worker
process (grammar, families and a program from a real part), seconds of training, a real GGUF export,
the user's pipeline (best-of-4, picture search on) on 2 eval_oof parts and 2 held-out parts, the report
and the install decision; a second call resumes from the run folder and only redoes the decision.
Beside it: the built-in GGUF pair read back into a Hugging Face folder (the warm start) exports to the
same tensors, and the plain error without CUDA."""

from __future__ import annotations

import hashlib
import json
import random
import shutil
from pathlib import Path

import pytest

from training.retrain import main, vary_named_dimensions

ROOT = Path(__file__).resolve().parents[1]
BUILTIN = ROOT / "model_runtime" / "models"
PLATE = (
    "import cadquery as cq\n\n"
    "# Named dimensions (mm; angles in degrees), as in the FreeCAD feature tree\n"
    "plate_length = 60\nplate_width = 40\nplate_thickness = 6\nhole_count = 4\nhole_diameter = 5\n"
    "rotate_angle = 45\n\n"
    "result = cq.Workplane(\"XY\").box(plate_length, plate_width, plate_thickness).faces(\">Z\").workplane()"
    ".polarArray(12, rotate_angle, 360, hole_count).hole(hole_diameter)\n"
)


def test_named_dimensions_vary_but_angles_stay():
    varied = vary_named_dimensions(PLATE, random.Random(3))
    values = dict(line.split(" = ") for line in varied.splitlines() if " = " in line and "result" not in line)
    assert values["rotate_angle"] == "45"
    assert 2 <= int(values["hole_count"]) <= 6
    assert 0.8 * 60 <= float(values["plate_length"]) <= 1.25 * 60
    assert varied.splitlines()[-1] == PLATE.splitlines()[-1]  # the operations are untouched


def test_without_cuda_the_error_is_one_plain_sentence(capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    assert main(["--out", "unused"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: no CUDA device") and "--device cpu" in err


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.llama
def test_builtin_pair_reads_back_into_the_same_tensors(tmp_path):
    """Import, then export again: every text tensor equals the q8_0 weights dequantised, every vision
    tensor the f16 ones, and the tokenizer has the file's vocabulary: the warm start is the model."""
    import gguf
    import numpy as np
    from gguf.quants import dequantize

    from training.export_gguf import export
    from training.gguf_import import import_gguf_pair, pair_architecture
    from training.llava_model import LlavaModelConfig

    text, mmproj = BUILTIN / "cadsnap-compact-q8_0.gguf", BUILTIN / "mmproj-cadsnap-compact-f16.gguf"
    assert pair_architecture(text, mmproj) == LlavaModelConfig.compact()
    hf = import_gguf_pair(text, mmproj, tmp_path / "hf")
    out = export(hf, tmp_path / "gguf", outtype="f32", name="back")

    def tensors(path):
        return {t.name: dequantize(t.data, t.tensor_type) for t in gguf.GGUFReader(str(path)).tensors}

    for original, again in ((text, out.text), (mmproj, out.mmproj)):
        a, b = tensors(original), tensors(again)
        assert a.keys() == b.keys()
        for name in a:
            assert np.array_equal(a[name].astype(np.float32).reshape(-1), b[name].reshape(-1)), name
    vocab = gguf.GGUFReader(str(text)).fields["tokenizer.ggml.tokens"].contents()
    assert gguf.GGUFReader(str(out.text)).fields["tokenizer.ggml.tokens"].contents() == vocab


@pytest.mark.llama
@pytest.mark.slow  # about 2-3 minutes on a busy 2-core machine
def test_tiny_retrain_end_to_end_reports_and_decides(tmp_path):
    models = tmp_path / "models"  # a copy of the built-in model: the baseline, and where it installs
    models.mkdir()
    for path in BUILTIN.glob("*.gguf"):
        shutil.copy2(path, models / path.name)
    shutil.copytree(BUILTIN / "eval" / "oof-search-best-of-4", models / "eval" / "oof-search-best-of-4")
    before = {p.name: _digest(p) for p in models.glob("*.gguf")}
    oof = tmp_path / "oof"
    oof.mkdir()
    for name in ("bearing_housing", "angle_profile"):
        for suffix in (".png", ".py"):
            shutil.copy2(ROOT / "training" / "eval_oof" / f"{name}{suffix}", oof / f"{name}{suffix}")
    real = tmp_path / "recognised"
    real.mkdir()
    (real / "programs.jsonl").write_text(json.dumps({"name": "plate", "code": PLATE}) + "\n")

    run = tmp_path / "run"
    args = ["--out", str(run), "--device", "cpu", "--preset", "tiny", "--minutes", "0.1", "--workers", "1",
            "--batch-size", "4", "--min-samples", "6", "--val-samples", "2", "--heldout", "2",
            "--tokenizer-programs", "200", "--warmup-steps", "2", "--val-every", "4", "--log-every", "2",
            "--recognised", str(real), "--recognised-share", "0.3", "--eval-oof", str(oof),
            "--eval-max-new-tokens", "48", "--models", str(models), "--baseline", "stored"]
    assert main(args) == 0

    report = json.loads((run / "report.json").read_text())
    assert report["trained"]["init"].startswith("from scratch")  # the built-in model is not tiny-shaped
    assert report["trained"]["steps"] >= 1 and report["trained"]["trained_s"] >= 6
    data = report["data"]
    assert data["train_samples"] >= 6 and data["val_samples"] == 2 and data["heldout_samples"] == 2
    assert data["workers"] == 1 and data["this_session"]["samples_per_s_per_worker"] > 0
    assert set(data["families"]) - {"recognised"}, data["families"]  # the engine's programs are in
    assert sorted(p.name for p in (run / "heldout").glob("*.py")) == sorted(
        p.stem + ".py" for p in (run / "heldout").glob("*.png"))
    assert (run / "gguf" / "cadsnap-compact-q8_0.gguf").stat().st_size > 0
    assert (run / "gguf" / "mmproj-cadsnap-compact-f16.gguf").stat().st_size > 0
    new, current = report["oof_new"], report["oof_current"]
    assert new["n"] == current["n"] == 2 and new["vsr"] is not None
    assert current["source"].endswith("oof-search-best-of-4/report.json")
    assert report["heldout_new"]["n"] == 2 and "heldout_current" not in report  # --baseline stored
    settings = json.loads((run / "eval" / "oof" / "report.json").read_text())["settings"]
    assert settings["mode"].startswith("best-of-4") and settings["picture search"].startswith("on:")

    # A few seconds of a tiny model: its own programs do not beat the built-in model's, so auto keeps it.
    assert report["installed"] is False and report["decision"].startswith("not installed")
    assert {p.name: _digest(p) for p in models.glob("*.gguf")} == before
    markdown = (run / "report.md").read_text()
    assert "out of family (eval_oof) | new | 2" in markdown and "**Decision:** not installed" in markdown
    assert (run / "curves.png").stat().st_size > 5000

    # Run again with --install always: every stage is found done; only the decision is new.
    assert main([*args, "--install", "always"]) == 0
    report = json.loads((run / "report.json").read_text())
    assert report["installed"] is True
    for name in ("cadsnap-compact-q8_0.gguf", "mmproj-cadsnap-compact-f16.gguf"):
        assert _digest(models / name) == _digest(run / "gguf" / name)
    assert (models / "eval" / "retrain-oof" / "report.json").exists()
