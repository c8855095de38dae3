"""Any OpenAI-compatible chat-completions server (vLLM, llama.cpp's server, a hosted API).

The image travels as a PNG data URI; the server applies its own chat template, so we send the
instruction text only. Tokens stream back as server-sent events. Standard library only, so the
runtime needs no HTTP client package for this.
"""

from __future__ import annotations

import json
import os
import threading
import time
import urllib.error
import urllib.request

from PIL import Image

from model_runtime.backends.base import (
    BackendError,
    GenerationSettings,
    StageTimings,
    TokenCallback,
    check_cancel,
)
from model_runtime.picture.images import to_data_uri
from model_runtime.prompt import DEFAULT_INSTRUCTION
from model_runtime.protocol import ERROR_NO_BACKEND

ENV_URL = "CADSNAP_REMOTE_URL"
ENV_KEY = "CADSNAP_REMOTE_KEY"
ENV_MODEL = "CADSNAP_REMOTE_MODEL"


def instruction_text(instruction: str | None) -> str:
    """The user's words as a chat message: our default instruction plus anything they added."""
    if instruction and instruction.strip():
        return f"{DEFAULT_INSTRUCTION} {instruction.strip()}"
    return DEFAULT_INSTRUCTION


class RemoteBackend:
    """``RemoteBackend(base_url="http://host:port/v1", api_key=None, model=None)``; see ``Backend``.

    ``base_url``, ``api_key`` and ``model`` fall back to CADSNAP_REMOTE_URL / _KEY / _MODEL.
    """

    name = "remote"

    def __init__(
        self,
        base_url: str | None = None,
        *,
        api_key: str | None = None,
        model: str | None = None,
        timeout_s: float = 300.0,
    ) -> None:
        base_url = base_url or os.environ.get(ENV_URL)
        if not base_url:
            raise BackendError(
                f"no remote server configured: pass --base-url or set {ENV_URL}", ERROR_NO_BACKEND
            )
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key or os.environ.get(ENV_KEY)
        self.model = model or os.environ.get(ENV_MODEL) or "default"
        self.model_id = f"{self.model}@{self.base_url}"
        self.timeout_s = timeout_s
        self.timings = StageTimings()
        self.load_s = 0.0

    def _request(self, body: dict) -> urllib.request.Request:
        headers = {"Content-Type": "application/json", "Accept": "text/event-stream"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        return urllib.request.Request(
            f"{self.base_url}/chat/completions",
            data=json.dumps(body).encode(),
            headers=headers,
            method="POST",
        )

    def _stream(self, body: dict, index: int, on_token: TokenCallback | None, cancel) -> str:
        pieces: list[str] = []
        try:
            with urllib.request.urlopen(self._request(body), timeout=self.timeout_s) as response:
                for raw in response:
                    line = raw.decode("utf-8", "replace").strip()
                    if not line.startswith("data:"):
                        continue
                    data = line[5:].strip()
                    if data == "[DONE]":
                        break
                    event = json.loads(data)
                    if "error" in event:
                        raise BackendError(f"the remote server reported: {event['error']}")
                    choices = event.get("choices") or [{}]
                    delta = (choices[0].get("delta") or {}).get("content") or ""
                    if delta:
                        pieces.append(delta)
                        self.timings.new_tokens += 1
                        if on_token is not None:
                            on_token(index, delta)
                    check_cancel(cancel)
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode("utf-8", "replace")[:500]
            raise BackendError(f"the remote server answered HTTP {exc.code}: {detail}") from exc
        except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
            raise BackendError(
                f"cannot reach the remote server at {self.base_url}: {getattr(exc, 'reason', exc)}"
            ) from exc
        return "".join(pieces)

    def generate(
        self,
        image: Image.Image,
        instruction: str | None = None,
        settings: GenerationSettings | None = None,
        *,
        on_token: TokenCallback | None = None,
        cancel: threading.Event | None = None,
    ) -> list[str]:
        settings = settings or GenerationSettings()
        self.timings = StageTimings()
        t0 = time.perf_counter()
        uri = to_data_uri(image)
        self.timings.extra["image_upload_bytes"] = float(len(uri))
        self.timings.encode_s = time.perf_counter() - t0
        messages = [
            {
                "role": "user",
                "content": [
                    {"type": "image_url", "image_url": {"url": uri}},
                    {"type": "text", "text": instruction_text(instruction)},
                ],
            }
        ]
        outputs = []
        start = time.perf_counter()
        for index in range(settings.n):
            check_cancel(cancel)
            greedy = index == 0
            body = {
                "model": self.model,
                "messages": messages,
                "max_tokens": settings.max_new_tokens,
                "temperature": 0.0 if greedy else settings.temperature,
                "top_p": 1.0 if greedy else settings.top_p,
                "seed": settings.seed + index,
                "stream": True,
            }
            outputs.append(self._stream(body, index, on_token, cancel))
        self.timings.generate_s = time.perf_counter() - start
        return outputs

    def close(self) -> None:
        pass
