"""The gguf backend on a tiny LLaVA converted by our exporter: parity with transformers, generation,
the whole pipeline to a valid solid, cancel, and ``auto`` model discovery."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from model_runtime import protocol
from model_runtime.backends import GenerationCancelled, GenerationSettings, NoBackendError, load_backend
from model_runtime.prompt import build_prompt
from tests.backend_assets import (
    BOX_PROGRAM,
    feature_gap,
    llama_image_features,
    sample_image,
    trained_gguf,
    trained_llava,
    transformers_image_features,
)

pytestmark = pytest.mark.llama

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def hf_dir(tmp_path_factory) -> Path:
    return trained_llava(tmp_path_factory)


@pytest.fixture(scope="module")
def gguf_dir(tmp_path_factory) -> Path:
    return trained_gguf(tmp_path_factory)


@pytest.fixture(scope="module")
def backend(gguf_dir):
    from model_runtime.backends.gguf import GGUFBackend

    with GGUFBackend(gguf_dir / "tiny-q8_0.gguf", gguf_dir / "mmproj-tiny-f16.gguf", n_ctx=512) as loaded:
        yield loaded


def test_image_features_match_transformers(hf_dir, gguf_dir):
    image = sample_image()
    reference = transformers_image_features(hf_dir, image)
    ours = llama_image_features(gguf_dir / "tiny-f32.gguf", gguf_dir / "mmproj-tiny-f32.gguf", image)
    assert ours.shape == reference.shape == (16, 64)
    assert np.abs(ours - reference).max() < 1e-3


def test_parity_catches_a_legacy_mmproj(hf_dir, gguf_dir):
    """llama.cpp issue 25817: a file that runs one vision layer too few gives different vectors."""
    image = sample_image()
    reference = transformers_image_features(hf_dir, image)
    legacy = llama_image_features(
        gguf_dir / "tiny-f32.gguf", gguf_dir / "legacy" / "mmproj-legacy-f32.gguf", image
    )
    assert np.abs(legacy - reference).max() > 1e-2


@pytest.mark.skipif(
    not os.environ.get("CADSNAP_UNPATCHED_LLAMA"),
    reason="set CADSNAP_UNPATCHED_LLAMA to a folder made by "
    "`python -m model_runtime.llama_build --unpatched --target DIR` to run it",
)
def test_parity_fails_on_an_unpatched_build(hf_dir, gguf_dir):
    """llama.cpp issue 25814: the stock build puts CLIP's class token last; parity must catch it."""
    args = (str(hf_dir), str(gguf_dir / "tiny-f32.gguf"), str(gguf_dir / "mmproj-tiny-f32.gguf"))
    code = f"from tests.backend_assets import feature_gap; print(feature_gap(*{args!r}))"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([os.environ["CADSNAP_UNPATCHED_LLAMA"], str(REPO)])}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, cwd=REPO)
    assert out.returncode == 0, out.stderr[-2000:]
    assert float(out.stdout.strip().splitlines()[-1]) > 1e-2
    assert feature_gap(*args) < 1e-3  # and the patched build in this process passes


def test_prompt_tokens_match_transformers(hf_dir, backend):
    from transformers import AutoProcessor

    image = sample_image()
    processor = AutoProcessor.from_pretrained(str(hf_dir))
    expected = processor(images=[image], text=[build_prompt()], return_tensors="pt").input_ids[0].tolist()
    with backend._lock:
        ours = backend._eval_prompt(image, None)
    image_id = processor.tokenizer.convert_tokens_to_ids("<image>")
    assert [t if t != image_id else -1 for t in expected] == ours


def test_generates_the_trained_program_and_streams_it(backend):
    streamed: dict[int, list[str]] = {}
    texts = backend.generate(
        sample_image(5, 48),
        None,
        GenerationSettings(n=3, max_new_tokens=64, temperature=0.7),
        on_token=lambda i, t: streamed.setdefault(i, []).append(t),
    )
    assert len(texts) == 3
    assert texts[0].strip() == BOX_PROGRAM.strip()  # greedy
    assert all("".join(streamed[i]) == texts[i] for i in range(3))
    t = backend.timings
    assert t.prompt_tokens == 46 and t.new_tokens > 0 and t.prompt_s > 0 and t.tokens_per_s > 0


def test_cancel_stops_generation(backend):
    cancel = threading.Event()
    seen: list[str] = []

    def on_token(index: int, text: str) -> None:
        seen.append(text)
        if len(seen) == 2:
            cancel.set()

    with pytest.raises(GenerationCancelled):
        backend.generate(sample_image(), None, GenerationSettings(n=2), on_token=on_token, cancel=cancel)
    assert len(seen) == 2


def test_pipeline_reaches_a_valid_solid(backend):
    from model_runtime.pipeline import GenerateRequest, Pipeline
    from model_runtime.sandbox import SandboxPool

    buffer = io.BytesIO()
    sample_image(9, 80).convert("RGBA").save(buffer, format="PNG")
    events: list[dict] = []
    with SandboxPool(workers=1, timeout_s=20.0) as pool:
        result = Pipeline(backend, pool, render_size=96).run(
            GenerateRequest(image=buffer.getvalue(), n=2, max_new_tokens=64, formats=("brep", "step"),
                            refine=False, search=False),  # the program as the model wrote it
            on_event=events.append,
        )
    assert result.best.code.strip() == BOX_PROGRAM.strip()  # the winner, as the model wrote it
    assert "box(block_length, block_width, block_height)" in result.code  # named as in the feature tree
    assert result.exec_result.volume == pytest.approx(30 * 20 * 10, rel=1e-6)
    assert "step" in result.exec_result.exports and result.backend == "gguf"
    assert any(e["type"] == protocol.EVENT_TOKEN for e in events)


def test_auto_finds_a_cached_gguf_pair(gguf_dir, tmp_path, monkeypatch):
    import model_runtime.backends as backends

    models = tmp_path / "cache" / "models" / "tiny"
    models.mkdir(parents=True)
    for name in ("tiny-q8_0.gguf", "tiny-f16.gguf", "mmproj-tiny-f16.gguf"):
        shutil.copy(gguf_dir / name, models / name)
    monkeypatch.setenv("CADSNAP_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(backends, "BUILTIN_MODELS", tmp_path / "no-builtin")
    monkeypatch.delenv("CADSNAP_REMOTE_URL", raising=False)
    loaded = load_backend("auto", n_ctx=256)
    try:
        assert loaded.name == "gguf" and loaded.model_id == "tiny-q8_0.gguf"  # the preferred quantisation
    finally:
        loaded.close()
    shutil.rmtree(models)
    with pytest.raises(NoBackendError) as info:
        load_backend("auto")
    assert info.value.code == protocol.ERROR_NO_BACKEND and "Get a model" in info.value.message


def test_generate_command_writes_a_step_file(gguf_dir, tmp_path):
    picture = tmp_path / "part.bmp"
    sample_image(4, 64).save(picture)
    step = tmp_path / "part.step"
    cmd = [sys.executable, "-m", "model_runtime", "generate", str(picture), "-o", str(step), "--n", "2",
           "--model", str(gguf_dir / "tiny-q8_0.gguf"), "--mmproj", str(gguf_dir / "mmproj-tiny-f16.gguf"),
           "--n-ctx", "512", "--max-new-tokens", "64", "--show-code",
           "--no-refine", "--no-search"]  # the program as the model wrote it  # fmt: skip
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert step.read_text().startswith("ISO-10303-21")
    assert "best of 2" in out.stderr
    # --show-code prints the model's program with its literals named as in the FreeCAD tree
    assert "block_length = 30\nblock_width = 20\nblock_height = 10" in out.stdout
    assert 'cq.Workplane("XY").box(block_length, block_width, block_height)' in out.stdout


def test_readme_main_command_runs_on_the_built_in_model(tmp_path):
    """`make run`'s command with nothing configured: auto picks the shipped GGUF pair and a STEP
    file of a valid solid comes out of the example picture."""
    from model_runtime.backends import BUILTIN_MODELS, find_gguf_pair

    assert find_gguf_pair(BUILTIN_MODELS) is not None, "no built-in model in model_runtime/models"
    step = tmp_path / "part.step"
    env = {**os.environ, "CADSNAP_CACHE_DIR": str(tmp_path / "empty-cache")}
    env.pop("CADSNAP_REMOTE_URL", None)
    cmd = [sys.executable, "-m", "model_runtime", "generate", "model_runtime/examples/flange.png",
           "-o", str(step), "--show-code", "--n", "2"]  # fmt: skip
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "import cadquery as cq" in out.stdout and "result" in out.stdout

    import cadquery as cq

    solid = cq.importers.importStep(str(step)).val()
    assert solid.isValid() and solid.Volume() > 0

