"""The patched llama-cpp-python build step: source edits, cache reuse, the lock, the installed build."""

from __future__ import annotations

import multiprocessing
import time
from pathlib import Path

import pytest

from model_runtime import llama_build
from model_runtime.llama_build import (
    CLASS_TOKEN_FIX,
    PATCHED_EDITS,
    PATCHED_VERSION,
    LlamaBuildError,
    SourceEdit,
    apply_edits,
)


def test_edit_applies_exactly_once(tmp_path):
    source = tmp_path / "vendor/llama.cpp/tools/mtmd/models/llava.cpp"
    source.parent.mkdir(parents=True)
    source.write_text("    if (model.class_embedding) {\n        " + CLASS_TOKEN_FIX.old + "\n    }\n")
    apply_edits(tmp_path, (CLASS_TOKEN_FIX,))
    text = source.read_text()
    assert CLASS_TOKEN_FIX.new in text and CLASS_TOKEN_FIX.old not in text
    with pytest.raises(LlamaBuildError, match="found it 0 times"):  # a second run must not silently pass
        apply_edits(tmp_path, (CLASS_TOKEN_FIX,))


def test_an_upstream_change_fails_loudly(tmp_path):
    (tmp_path / "f.txt").write_text("a\na\n")
    with pytest.raises(LlamaBuildError, match="found it 2 times"):
        apply_edits(tmp_path, (SourceEdit("f.txt", "a", "b", "ambiguous"),))


def test_cached_source_is_patched():
    """The source the build and the exporter use carries all three edits (unpacked if missing)."""
    root = llama_build.ensure_source()
    for edit in PATCHED_EDITS:
        text = (root / edit.path).read_text()
        assert edit.new in text and edit.old not in text.replace(edit.new, "")
    assert (root / "vendor/llama.cpp/convert_hf_to_gguf.py").is_file()


def test_the_fix_puts_the_class_token_first():
    """Read the patched graph: the class embedding is the first operand of the concat, and the
    patch rows the graph reads afterwards skip row 0 (llama.cpp's own input code)."""
    root = llama_build.ensure_source()
    graph = (root / CLASS_TOKEN_FIX.path).read_text()
    assert "ggml_concat(ctx0, model.class_embedding, inp, 1)" in graph
    clip = (root / "vendor/llama.cpp/tools/mtmd/clip.cpp").read_text()
    assert "int patch_offset = model.class_embedding ? 1 : 0;" in clip


@pytest.mark.llama
def test_installed_build_is_the_patched_one():
    import llama_cpp

    assert llama_build.installed_version() == PATCHED_VERSION == llama_cpp.__version__
    assert llama_build.find_wheel() is not None  # and the cache holds its wheel for the next venv


@pytest.mark.llama
def test_second_run_reuses_the_wheel(monkeypatch):
    def no_build(*args, **kwargs):
        raise AssertionError("a cached wheel must not be rebuilt")

    monkeypatch.setattr(llama_build, "build_wheel", no_build)
    monkeypatch.setattr(llama_build, "install_wheel", no_build)  # already installed: nothing to do
    assert llama_build.ensure_installed() == llama_build.find_wheel()


def _hold_lock(seconds: float, ready) -> None:
    with llama_build.build_lock():
        ready.set()
        time.sleep(seconds)


def test_the_lock_serialises_builds(tmp_path, monkeypatch):
    monkeypatch.setenv("CADSNAP_CACHE_DIR", str(tmp_path))
    ctx = multiprocessing.get_context("spawn")
    ready = ctx.Event()
    holder = ctx.Process(target=_hold_lock, args=(1.5, ready))
    holder.start()
    try:
        assert ready.wait(60)
        start = time.monotonic()
        with pytest.raises(LlamaBuildError, match="another process"), llama_build.build_lock(timeout_s=0.3):
            pass
        with llama_build.build_lock(timeout_s=30):
            waited = time.monotonic() - start
        assert waited > 0.5  # it waited for the holder instead of building alongside it
    finally:
        holder.join(10)
    assert Path(tmp_path / "build" / ".lock").exists()


def test_source_is_re_extracted_into_an_empty_build_folder(tmp_path, monkeypatch):
    """A cache with only the source archive (or after someone deleted build/) recovers by itself."""
    archive = llama_build.download_sdist()  # the real cache's archive
    monkeypatch.setenv("CADSNAP_CACHE_DIR", str(tmp_path))
    (tmp_path / "sdist").mkdir()
    (tmp_path / "sdist" / archive.name).symlink_to(archive)
    root = llama_build.ensure_source()
    assert root.parent == tmp_path / "build"
    assert CLASS_TOKEN_FIX.new in (root / CLASS_TOKEN_FIX.path).read_text()
    assert not list((tmp_path / "build").glob(".unpack-*"))  # no half-unpacked leftovers
