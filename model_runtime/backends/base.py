"""The one small interface every model backend implements, and the errors they raise."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from PIL import Image

from model_runtime.protocol import ERROR_CANCELLED, ERROR_INTERNAL, ERROR_NO_BACKEND

# on_token(candidate_index, text_delta): streamed text as the model writes it.
TokenCallback = Callable[[int, str], None]

GET_A_MODEL = (
    "Get a model: put a GGUF pair (a text model *.gguf and its mmproj*.gguf) in {models}, "
    "or pass --model/--mmproj (gguf), --model HF_FOLDER_OR_ID (hf, needs `pip install cadsnap[gpu]`), "
    "or configure a remote server with --base-url / CADSNAP_REMOTE_URL."
)


class BackendError(RuntimeError):
    """A backend could not load or generate; ``code`` is a protocol ERROR_* string."""

    code = ERROR_INTERNAL

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code


class NoBackendError(BackendError):
    """No model is configured or available; the message says how to get one."""

    code = ERROR_NO_BACKEND


class GenerationCancelled(BackendError):
    code = ERROR_CANCELLED

    def __init__(self, message: str = "generation was cancelled") -> None:
        super().__init__(message)


@dataclass
class GenerationSettings:
    """How candidates are drawn: candidate 0 is greedy, the rest sampled with ``seed + i``."""

    n: int = 1
    max_new_tokens: int = 512
    temperature: float = 0.7
    top_p: float = 0.95
    seed: int = 0


@dataclass
class StageTimings:
    """Seconds per stage of the last ``generate`` call (for the benchmark and the job report)."""

    encode_s: float = 0.0  # image -> embeddings
    prompt_s: float = 0.0  # prompt (text + image tokens) through the language model
    generate_s: float = 0.0  # all candidates' new tokens
    prompt_tokens: int = 0
    new_tokens: int = 0
    extra: dict[str, float] = field(default_factory=dict)

    @property
    def tokens_per_s(self) -> float:
        return self.new_tokens / self.generate_s if self.generate_s > 0 else 0.0

    def to_dict(self) -> dict:
        return {
            "encode_s": self.encode_s,
            "prompt_s": self.prompt_s,
            "generate_s": self.generate_s,
            "prompt_tokens": self.prompt_tokens,
            "new_tokens": self.new_tokens,
            "tokens_per_s": self.tokens_per_s,
            **self.extra,
        }


@runtime_checkable
class Backend(Protocol):
    """Image + prompt in, ``settings.n`` completions out (greedy first, then sampled)."""

    name: str  # "hf", "gguf", "remote"
    model_id: str  # what was loaded, for /v1/health and reports
    load_s: float
    timings: StageTimings

    def generate(
        self,
        image: Image.Image,
        prompt: str,
        settings: GenerationSettings | None = None,
        *,
        on_token: TokenCallback | None = None,
        cancel: threading.Event | None = None,
    ) -> list[str]: ...

    def close(self) -> None: ...


def check_cancel(cancel: threading.Event | None) -> None:
    if cancel is not None and cancel.is_set():
        raise GenerationCancelled()
