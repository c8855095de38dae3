"""Shared test set-up: markers that skip cleanly when a real dependency is absent."""

from __future__ import annotations

import importlib.util
import shutil

import pytest


def _has_patched_llama() -> bool:
    if importlib.util.find_spec("llama_cpp") is None:
        return False
    from importlib.metadata import version

    return "cadsnap" in version("llama-cpp-python")


def _cuda() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


_SKIPS = {
    "freecad": (lambda: shutil.which("freecadcmd") is not None, "FreeCAD (freecadcmd) is not installed"),
    "gui": (lambda: shutil.which("freecad") is not None and shutil.which("Xvfb") is not None,
            "FreeCAD GUI or Xvfb is not installed"),
    "llama": (_has_patched_llama, "patched llama-cpp-python missing: run `python -m model_runtime setup`"),
    "gpu": (_cuda, "no CUDA device on this machine (CPU-only CI); run on a GPU to exercise it"),
}


def pytest_collection_modifyitems(config, items):
    cache: dict[str, bool] = {}
    for item in items:
        for name, (check, reason) in _SKIPS.items():
            if name in item.keywords:
                if name not in cache:
                    cache[name] = check()
                if not cache[name]:
                    item.add_marker(pytest.mark.skip(reason=reason))
