"""GGUF export of a tiny LLaVA: mmproj metadata, tensors, the tokenizer fix, quantised files, bad input."""

from __future__ import annotations

import json
import shutil

import pytest

from tests.backend_assets import trained_gguf, trained_llava
from training.export_gguf import ExportError, export, export_mmproj, main

pytestmark = pytest.mark.llama


@pytest.fixture(scope="module")
def gguf_dir(tmp_path_factory):
    return trained_gguf(tmp_path_factory)


def _fields(path):
    import gguf

    reader = gguf.GGUFReader(str(path))
    return reader, {
        name: field.contents() for name, field in reader.fields.items() if not name.startswith("GGUF.")
    }


def test_mmproj_metadata_and_tensors(gguf_dir, tmp_path_factory):
    config = json.loads((trained_llava(tmp_path_factory) / "config.json").read_text())
    layers = config["vision_config"]["num_hidden_layers"]
    reader, kv = _fields(gguf_dir / "mmproj-tiny-f16.gguf")
    assert kv["general.architecture"] == "clip" and kv["clip.projector_type"] == "mlp"
    assert kv["clip.vision.block_count"] == layers
    assert kv["clip.vision.feature_layer"] == [layers - 1]  # hidden_states[-2], counted as llama.cpp does
    assert kv["clip.use_gelu"] is False  # quick-GELU
    assert kv["clip.vision.image_size"] == 32 and kv["clip.vision.patch_size"] == 8
    names = {t.name for t in reader.tensors}
    assert {"v.class_embd", "v.patch_embd.weight", "v.position_embd.weight", "v.pre_ln.weight",
            "mm.0.weight", "mm.2.bias", f"v.blk.{layers - 1}.ffn_down.weight"} <= names  # fmt: skip
    assert not any("post_ln" in n for n in names)  # LLaVA reads the tower before its last norm


def test_text_model_tokenises_like_transformers(gguf_dir):
    _, kv = _fields(gguf_dir / "tiny-f16.gguf")
    assert kv["tokenizer.ggml.model"] == "llama"
    assert kv["tokenizer.ggml.add_space_prefix"] is False and kv["cadsnap.prompt_leading_space"] is True
    assert kv["cadsnap.image_size"] == 32  # lets the runtime resize like transformers without the mmproj


def test_quantised_files_load(gguf_dir):
    from llama_cpp import Llama

    assert (gguf_dir / "tiny-q8_0.gguf").stat().st_size < (gguf_dir / "tiny-f16.gguf").stat().st_size
    llm = Llama(str(gguf_dir / "tiny-q8_0.gguf"), n_ctx=64, verbose=False)
    try:
        assert llm.n_vocab() > 100
    finally:
        llm.close()


def test_cli_writes_q4_k_m(tmp_path_factory, tmp_path, capsys):
    hf = trained_llava(tmp_path_factory)
    assert main([str(hf), "--out", str(tmp_path), "--quant", "q4_k_m", "--name", "m"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["quantised"]["q4_k_m"].endswith("m-q4_k_m.gguf")
    for name in ("m-f16.gguf", "mmproj-m-f16.gguf", "m-q4_k_m.gguf"):
        assert (tmp_path / name).stat().st_size > 0


def test_bad_inputs_are_typed_errors(tmp_path_factory, tmp_path):
    with pytest.raises(ExportError, match="no config.json"):
        export(tmp_path, tmp_path / "out")
    hf = trained_llava(tmp_path_factory)
    with pytest.raises(ExportError, match="unknown quantisation"):
        export(hf, tmp_path / "out", quant=("q3_fancy",))
    broken = tmp_path / "not-llava"
    shutil.copytree(hf, broken)
    config = json.loads((broken / "config.json").read_text())
    config["model_type"] = "llama"
    (broken / "config.json").write_text(json.dumps(config))
    with pytest.raises(ExportError, match="not a LLaVA model"):
        export_mmproj(broken, tmp_path / "x.gguf")
