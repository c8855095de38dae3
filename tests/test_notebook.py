"""The Colab notebook's own cells, run in order on a tiny LLaVA and a tiny synthetic dataset.

The cells are read from the .ipynb, so the notebook and this test cannot drift apart. Only the
settings change (through the environment the settings cell reads); cells tagged ``colab-setup``
(clone + pip install), ``colab-only`` (Drive, browser downloads) and ``display`` (IPython display
of a file this test checks instead) are not run here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from training.tiny_models import make_tiny_llava

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "training" / "colab" / "cadsnap_qlora.ipynb"
NOT_RUN_HERE = {"colab-setup", "colab-only", "display"}


def cells() -> list[dict]:
    return [c for c in json.loads(NOTEBOOK.read_text())["cells"] if c["cell_type"] == "code"]


def source(cell: dict) -> str:
    return "".join(cell["source"])


def tags(cell: dict) -> set[str]:
    return set(cell.get("metadata", {}).get("tags", []))


def run_bash_cell(cell: dict, env: dict[str, str]) -> subprocess.CompletedProcess:
    body = source(cell)
    assert body.startswith("%%bash\n"), "command cells are %%bash cells"
    run = subprocess.run(["bash", "-c", body.removeprefix("%%bash\n")], env=env, cwd=ROOT,
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, f"cell failed:\n{body}\n--- stderr ---\n{run.stderr[-4000:]}"
    return run


def test_notebook_has_every_step_and_only_known_cell_kinds():
    commands = "\n".join(source(c) for c in cells())
    steps = ("pip install", "python -m training.synth", "python -m training.qlora",
             "python -m training.evaluate", "python -m training.merge", "python -m model_runtime setup",
             "python -m training.export_gguf", "files.download")
    for step in steps:
        assert step in commands, f"the notebook lost its step: {step}"
    for cell in cells():
        is_bash = source(cell).startswith("%%bash\n")
        assert is_bash or tags(cell) & (NOT_RUN_HERE | {"parameters"}), source(cell)[:200]
        if is_bash:
            assert "set -e" in source(cell), "a failing command must stop its cell"
    assert sum("parameters" in tags(c) for c in cells()) == 1


@pytest.fixture(scope="module")
def notebook_env(tmp_path_factory) -> dict[str, str]:
    """The environment after the settings cell, with tiny settings preset (they win over the defaults)."""
    root = tmp_path_factory.mktemp("notebook")
    tiny = make_tiny_llava(root / "tiny")
    preset = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",  # our python
        "OMP_NUM_THREADS": "1",
        "CADSNAP_REPO_DIR": str(ROOT),
        "CADSNAP_WORK": str(root / "work"),
        "CADSNAP_BASE": str(tiny),
        "CADSNAP_N_SAMPLES": "24",
        "CADSNAP_SYNTH_ARGS": "--shard-size 24 --size 64 --no-gallery",
        "CADSNAP_TRAIN_ARGS": "--max-steps 4 --batch-size 2 --grad-accum 1 --eval-steps 2 --save-steps 2 "
                              "--val-generate 1 --max-length 512 --max-new-tokens 40",
        "CADSNAP_EVAL_ARGS": "--limit 2 --max-new-tokens 40",
        "CADSNAP_GGUF_EVAL_ARGS": "--limit 1 --max-new-tokens 40",
    }
    [settings] = [c for c in cells() if "parameters" in tags(c)]
    dump = "\nimport json\nprint('@@ENV@@' + json.dumps(dict(os.environ)))\n"
    run = subprocess.run([sys.executable, "-c", source(settings) + dump], env=preset, cwd=root,
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout.split("@@ENV@@", 1)[1])


@pytest.mark.slow
def test_notebook_steps_run_on_the_tiny_model(notebook_env):
    env = notebook_env
    ran = []
    for cell in cells():
        if tags(cell) & (NOT_RUN_HERE | {"parameters", "llama"}):
            continue
        run_bash_cell(cell, env)
        ran.append(source(cell))
    assert len(ran) == 5  # data, train, evaluate, merge, zip

    work, run_dir = Path(env["CADSNAP_WORK"]), Path(env["CADSNAP_RUN"])
    assert (Path(env["CADSNAP_DATA"]) / "manifest.json").is_file()
    assert (run_dir / "adapter" / "adapter_model.safetensors").is_file()
    assert (run_dir / "curves.png").is_file()  # what the display cell shows
    report = json.loads((run_dir / "eval" / "report.json").read_text())
    assert report  # the evaluation ran through the adapter (its numbers on 4 steps mean nothing)
    assert (run_dir / "eval" / "report.md").is_file()
    assert (run_dir / "merged" / "cadsnap_merge.json").is_file()
    import zipfile

    names = zipfile.ZipFile(work / "cadsnap-results.zip").namelist()
    assert any(n.startswith("adapter/") for n in names) and "curves.png" in names


@pytest.mark.llama
@pytest.mark.slow
def test_notebook_export_steps_run_on_the_merged_tiny_model(notebook_env):
    env = notebook_env
    run_dir = Path(env["CADSNAP_RUN"])
    if not (run_dir / "merged" / "config.json").is_file():
        pytest.skip("needs the merged model from test_notebook_steps_run_on_the_tiny_model")
    for cell in cells():
        if "llama" in tags(cell):
            run_bash_cell(cell, env)
    gguf = run_dir / "gguf"
    for name in ("cadsnap-llava-q4_k_m.gguf", "cadsnap-llava-q8_0.gguf", "mmproj-cadsnap-llava-f16.gguf"):
        assert (gguf / name).is_file(), name
    assert (run_dir / "eval-gguf" / "report.json").is_file()
