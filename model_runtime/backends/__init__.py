"""Model backends behind one small interface, and ``load_backend`` to pick one.

    backend = load_backend("auto")  # built-in or cached GGUF, else remote, else a clear error
    backend = load_backend("gguf", model="m.gguf", mmproj="mmproj-m.gguf", n_threads=4)
    backend = load_backend("hf", model="llava-folder", adapter="lora-folder")
    backend = load_backend("remote", base_url="http://127.0.0.1:8000/v1")
    texts = backend.generate(image, None, GenerationSettings(n=4))

``auto``: an HF model with CUDA -> hf; a GGUF model (given, or found in the built-in
``model_runtime/models/`` or the user's ``cache_dir()/models/``) -> gguf; a configured remote -> remote;
otherwise NoBackendError with how to get a model.
"""

from __future__ import annotations

import os
from pathlib import Path

from model_runtime.backends.base import (
    GET_A_MODEL,
    Backend,
    BackendError,
    GenerationCancelled,
    GenerationSettings,
    NoBackendError,
    StageTimings,
    TokenCallback,
)
from model_runtime.protocol import cache_dir

BACKENDS = ("auto", "hf", "gguf", "remote")
BUILTIN_MODELS = Path(__file__).resolve().parent.parent / "models"
# Preferred text model when a folder holds several quantisations: small and accurate first.
_QUANT_PREFERENCE = ("q4_k_m", "q5_k_m", "q8_0", "f16", "bf16", "f32")


def model_dirs() -> list[Path]:
    """Where ``auto`` looks for a GGUF pair: the built-in model, then the user's cache."""
    return [BUILTIN_MODELS, cache_dir() / "models"]


def find_gguf_pair(folder: Path) -> tuple[Path, Path] | None:
    """(text model, mmproj) in ``folder`` or its direct sub-folders, or None."""
    if not folder.is_dir():
        return None
    for candidate in [folder, *sorted(p for p in folder.iterdir() if p.is_dir())]:
        ggufs = sorted(candidate.glob("*.gguf"))
        mmprojs = [p for p in ggufs if p.name.lower().startswith("mmproj")]
        texts = [p for p in ggufs if p not in mmprojs]
        if mmprojs and texts:

            def rank(path: Path) -> int:
                name = path.stem.lower()
                return next(
                    (i for i, q in enumerate(_QUANT_PREFERENCE) if name.endswith(q)), len(_QUANT_PREFERENCE)
                )

            return min(texts, key=rank), mmprojs[0]
    return None


def _gguf_from(model: str | Path, mmproj: str | Path | None) -> tuple[Path, Path]:
    path = Path(model)
    if path.is_dir():
        pair = find_gguf_pair(path)
        if pair is None:
            raise BackendError(f"{path} holds no GGUF text model with an mmproj*.gguf beside it")
        return pair[0], Path(mmproj) if mmproj else pair[1]
    if mmproj is None:
        found = sorted(p for p in path.parent.glob("mmproj*.gguf"))
        if not found:
            raise BackendError(f"no mmproj given for {path} and no mmproj*.gguf beside it: pass --mmproj")
        mmproj = found[0]
    return path, Path(mmproj)


def _is_gguf(model: str | Path) -> bool:
    path = Path(model)
    return path.suffix.lower() == ".gguf" or (path.is_dir() and find_gguf_pair(path) is not None)


def _cuda() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


def load_backend(
    name: str = "auto",
    *,
    model: str | Path | None = None,
    mmproj: str | Path | None = None,
    adapter: str | Path | None = None,
    base_url: str | None = None,
    api_key: str | None = None,
    remote_model: str | None = None,
    n_ctx: int = 2048,
    n_threads: int | None = None,
    device: str = "auto",
    quantize: str = "auto",
) -> Backend:
    """Load the backend ``name`` (one of BACKENDS) with keyword configuration."""
    if name not in BACKENDS:
        raise BackendError(f"unknown backend {name!r}; choose one of {', '.join(BACKENDS)}")
    if name == "auto":
        name = _choose(model, base_url)
    if name == "gguf":
        if model is None:
            model, mmproj = find_builtin_gguf()
        from model_runtime.backends.gguf import GGUFBackend

        text, proj = _gguf_from(model, mmproj)
        return GGUFBackend(text, proj, n_ctx=n_ctx, n_threads=n_threads)
    if name == "hf":
        if model is None:
            raise NoBackendError("the hf backend needs --model (a LLaVA folder or a cached Hub id)")
        from model_runtime.backends.hf import HFBackend

        return HFBackend(model, adapter=adapter, device=device, quantize=quantize)
    from model_runtime.backends.remote import RemoteBackend

    return RemoteBackend(base_url, api_key=api_key, model=remote_model)


def find_builtin_gguf() -> tuple[Path, Path]:
    for folder in model_dirs():
        pair = find_gguf_pair(folder)
        if pair is not None:
            return pair
    raise NoBackendError(GET_A_MODEL.format(models=cache_dir() / "models"))


def _choose(model: str | Path | None, base_url: str | None) -> str:
    from model_runtime.backends.remote import ENV_URL

    if model is not None:
        if _is_gguf(model):
            return "gguf"
        return "hf"  # a LLaVA folder or Hub id: the hf backend (4-bit on CUDA, full precision on CPU)
    if base_url:
        return "remote"
    if any(find_gguf_pair(folder) for folder in model_dirs()):
        return "gguf"
    if os.environ.get(ENV_URL):
        return "remote"
    raise NoBackendError(GET_A_MODEL.format(models=cache_dir() / "models"))


__all__ = [
    "BACKENDS",
    "Backend",
    "BackendError",
    "GenerationCancelled",
    "GenerationSettings",
    "NoBackendError",
    "StageTimings",
    "TokenCallback",
    "find_gguf_pair",
    "load_backend",
    "model_dirs",
]
