"""The model's candidates for a picture, kept in a JSON file so evaluations of the search reuse them.

``CachedBackend`` wraps any backend: a picture (with the same instruction and generation settings)
the file already holds gets its stored texts back without running the model; a new one runs the
model and is written to the file. Iterating on the picture search then costs the search alone, and
every run sees the same candidates (the scores compare).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from model_runtime.backends.base import StageTimings


def cache_key(image: Any, instruction: str | None, settings: Any) -> str:
    digest = hashlib.sha1(image.convert("RGB").tobytes())
    digest.update(repr((image.size, instruction, settings.n, settings.max_new_tokens,
                        settings.temperature, settings.top_p, settings.seed)).encode())
    return digest.hexdigest()


class CachedBackend:
    """``backend`` with its answers remembered in ``path`` (created when missing; None: in memory)."""

    def __init__(self, backend: Any, path: Path | None = None) -> None:
        self.backend = backend
        self.path = Path(path) if path is not None else None
        self.entries: dict[str, list[str]] = (
            json.loads(self.path.read_text(encoding="utf-8")) if self.path and self.path.exists() else {}
        )
        self.timings = StageTimings()
        self.hits = 0

    def __getattr__(self, name: str) -> Any:  # name, model_id, follows_instructions ...
        return getattr(self.backend, name)

    def generate(self, image, instruction, settings, on_token=None, cancel=None) -> list[str]:
        key = cache_key(image, instruction, settings)
        if key in self.entries:
            self.hits += 1
            self.timings = StageTimings()
            return list(self.entries[key])
        texts = self.backend.generate(image, instruction, settings, on_token=on_token, cancel=cancel)
        self.timings = self.backend.timings
        self.entries[key] = list(texts)
        if self.path is None:
            return texts
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.entries, indent=0), encoding="utf-8")
        tmp.replace(self.path)
        return texts

    def close(self) -> None:
        close = getattr(self.backend, "close", None)
        if close is not None:
            close()


def with_candidates(backend: Any, path: Path | None) -> Any:
    """``backend``, its answers kept in ``path`` when one is given (``--candidates FILE``)."""
    return backend if path is None else CachedBackend(backend, path)
