"""The tiny trained LLaVA the workbench tests run the real runtime on, trained once per source version.

Training takes ~30 s on two cores; the folder is kept in pytest's cache, keyed by a hash of the code that
builds it, so the runtime and GUI tests (and re-runs) share one.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
BOX = 'import cadquery as cq\n\nresult = cq.Workplane("XY").box(30, 20, 10)\n'
BOX_VOLUME = 6000.0
_SOURCES = ("training/tiny_models.py", "training/llava_model.py", "training/code_tokenizer.py",
            "model_runtime/prompt.py")


def tiny_box_model(cache) -> Path:
    """``cache``: pytest's ``request.config.cache``. Returns the HF folder of a LLaVA that writes BOX."""
    from training.tiny_models import make_trained_tiny_llava

    digest = hashlib.sha256(BOX.encode())
    for name in _SOURCES:
        digest.update((REPO_ROOT / name).read_bytes())
    folder = Path(cache.mkdir(f"cadsnap-tiny-box-{digest.hexdigest()[:12]}"))
    if not (folder / "model.safetensors").exists():
        make_trained_tiny_llava(folder, BOX)
    return folder
