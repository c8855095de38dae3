"""The CPU backend: a merged text GGUF + an mmproj GGUF through llama-cpp-python and libmtmd.

We drive libmtmd directly instead of through a chat handler: the prompt is exactly
``model_runtime.prompt.build_prompt()`` (Llava15ChatHandler's template differs from the training
format), the image is encoded once per request and its KV entries are reused by every candidate
(llama-cpp-python's prefix match), and the stages can be timed separately.
"""

from __future__ import annotations

import ctypes
import threading
import time
from pathlib import Path

import numpy as np
from PIL import Image

from model_runtime.backends.base import (
    BackendError,
    GenerationSettings,
    StageTimings,
    TokenCallback,
    check_cancel,
)
from model_runtime.prompt import build_prompt


class GGUFBackend:
    """``GGUFBackend(model_path, mmproj_path, n_ctx=..., n_threads=...)``; see ``Backend``."""

    name = "gguf"

    def __init__(
        self,
        model_path: str | Path,
        mmproj_path: str | Path,
        *,
        n_ctx: int = 2048,
        n_threads: int | None = None,
        n_batch: int = 512,
        n_gpu_layers: int = 0,
        verbose: bool = False,
    ) -> None:
        try:
            import llama_cpp
            import llama_cpp.mtmd_cpp as mtmd
        except ImportError as exc:
            raise BackendError(
                "llama-cpp-python is not installed: run `python -m model_runtime setup` "
                "to build the patched wheel"
            ) from exc
        for path, what in ((model_path, "text model"), (mmproj_path, "mmproj (image encoder)")):
            if not Path(path).is_file():
                raise BackendError(f"the GGUF {what} {path} does not exist")
        self._llama_cpp = llama_cpp
        self._mtmd = mtmd
        self.model_id = Path(model_path).name
        self.timings = StageTimings()
        self._lock = threading.Lock()
        start = time.perf_counter()
        trained = _trained_context(Path(model_path))
        if trained and n_ctx > trained:  # more than the model saw in training buys nothing (llama.cpp warns)
            n_ctx = trained
        self.llama = llama_cpp.Llama(
            model_path=str(model_path),
            n_ctx=n_ctx,
            n_threads=n_threads,
            n_batch=n_batch,
            n_gpu_layers=n_gpu_layers,
            verbose=verbose,
        )
        # libmtmd logs through its own hook; route it to llama-cpp-python's logger (quiet unless verbose).
        from llama_cpp._logger import llama_log_callback

        mtmd.mtmd_log_set(llama_log_callback, None)
        mtmd.mtmd_helper_log_set(llama_log_callback, None)
        params = mtmd.mtmd_context_params_default()
        params.use_gpu = n_gpu_layers != 0
        params.print_timings = verbose
        params.n_threads = self.llama.n_threads
        params.warmup = False
        self._ctx = mtmd.mtmd_init_from_file(str(mmproj_path).encode(), self.llama.model, params)
        if not self._ctx:
            self.llama.close()
            raise BackendError(f"llama.cpp could not load the mmproj {mmproj_path} for {model_path}")
        if not mtmd.mtmd_support_vision(self._ctx):
            self.close()
            raise BackendError(f"{mmproj_path} has no vision encoder")
        self._marker = mtmd.mtmd_default_marker().decode()
        # Our exporter records the encoder's input size in the text model; else read the mmproj.
        size = self.llama.metadata.get("cadsnap.image_size")
        self._image_size = int(size) if size else _mmproj_image_size(Path(mmproj_path))
        # Set by training.export_gguf when llama.cpp's automatic space prefix is off (see there).
        self._leading_space = self.llama.metadata.get("cadsnap.prompt_leading_space") == "true"
        self.load_s = time.perf_counter() - start

    # -- the pieces ---------------------------------------------------------------------------

    def _chunks(self, image: Image.Image, text: str):
        """libmtmd's tokenisation of ``text`` with the image at its marker: a chunk list to free."""
        mtmd = self._mtmd
        rgb = image.convert("RGB")
        if self._image_size and rgb.size != (self._image_size, self._image_size):
            # Resize as transformers' CLIP processor does (PIL bicubic), so both backends see one image.
            rgb = rgb.resize((self._image_size, self._image_size), Image.Resampling.BICUBIC)
        data = rgb.tobytes()
        pixels = (ctypes.c_uint8 * len(data)).from_buffer_copy(data)
        bitmap = mtmd.mtmd_bitmap_init(rgb.width, rgb.height, pixels)
        chunks = mtmd.mtmd_input_chunks_init()
        try:
            entry = mtmd.mtmd_input_text()
            raw = text.encode("utf-8")
            entry.text, entry.text_len, entry.add_special, entry.parse_special = raw, len(raw), True, True
            bitmaps = (mtmd.mtmd_bitmap_p_ctypes * 1)(bitmap)
            status = mtmd.mtmd_tokenize(self._ctx, chunks, ctypes.byref(entry), bitmaps, 1)
        finally:
            mtmd.mtmd_bitmap_free(bitmap)
        if status != 0:
            mtmd.mtmd_input_chunks_free(chunks)
            raise BackendError(f"libmtmd could not tokenise the prompt and image (status {status})")
        return chunks

    def _encode_chunk(self, chunk) -> ctypes.Array:
        if self._mtmd.mtmd_encode_chunk(self._ctx, chunk) != 0:
            raise BackendError("llama.cpp failed to encode the image")
        return self._mtmd.mtmd_get_output_embd(self._ctx)

    def image_features(self, image: Image.Image) -> np.ndarray:
        """The projected image embeddings llama.cpp feeds the language model: (image tokens, hidden)."""
        with self._lock:
            chunks = self._chunks(image, self._marker)
            try:
                for i in range(self._mtmd.mtmd_input_chunks_size(chunks)):
                    chunk = self._mtmd.mtmd_input_chunks_get(chunks, i)
                    if self._mtmd.mtmd_input_chunk_get_type(chunk) == self._mtmd.MTMD_INPUT_CHUNK_TYPE_IMAGE:
                        n_tokens = self._mtmd.mtmd_input_chunk_get_n_tokens(chunk)
                        embd = self._encode_chunk(chunk)
                        width = self.llama.n_embd()
                        flat = np.ctypeslib.as_array(embd, shape=(n_tokens * width,))
                        return flat.reshape(n_tokens, width).copy()
            finally:
                self._mtmd.mtmd_input_chunks_free(chunks)
        raise BackendError("libmtmd produced no image chunk")

    def _eval_prompt(self, image: Image.Image, instruction: str | None) -> list[int]:
        """Put image + prompt in the KV cache; returns the prompt's token list for prefix reuse."""
        llama, mtmd, lcpp = self.llama, self._mtmd, self._llama_cpp
        text = build_prompt(instruction, image_token=self._marker)
        chunks = self._chunks(image, " " + text if self._leading_space else text)
        encode_s = prompt_s = 0.0
        try:
            llama.reset()
            llama._ctx.kv_cache_clear()
            for i in range(mtmd.mtmd_input_chunks_size(chunks)):
                chunk = mtmd.mtmd_input_chunks_get(chunks, i)
                n_tokens = mtmd.mtmd_input_chunk_get_n_tokens(chunk)
                if llama.n_tokens + n_tokens >= llama.n_ctx():
                    raise BackendError(
                        f"the prompt needs {llama.n_tokens + n_tokens} tokens; "
                        f"raise n_ctx above {llama.n_ctx()}"
                    )
                if mtmd.mtmd_input_chunk_get_type(chunk) == mtmd.MTMD_INPUT_CHUNK_TYPE_TEXT:
                    count = ctypes.c_size_t()
                    ptr = mtmd.mtmd_input_chunk_get_tokens_text(chunk, ctypes.byref(count))
                    t0 = time.perf_counter()
                    llama.eval([ptr[j] for j in range(count.value)])
                    prompt_s += time.perf_counter() - t0
                    continue
                t0 = time.perf_counter()
                embd = self._encode_chunk(chunk)
                t1 = time.perf_counter()
                new_n_past = lcpp.llama_pos(0)
                status = mtmd.mtmd_helper_decode_image_chunk(
                    self._ctx,
                    llama._ctx.ctx,
                    chunk,
                    embd,
                    lcpp.llama_pos(llama.n_tokens),
                    lcpp.llama_seq_id(0),
                    llama.n_batch,
                    ctypes.byref(new_n_past),
                    mtmd.mtmd_helper_post_decode_callback(),
                    None,
                )
                if status != 0:
                    raise BackendError(f"llama.cpp failed to decode the image tokens (status {status})")
                # The image positions hold no token ids; mark them so no text prompt prefix-matches them.
                llama.input_ids[llama.n_tokens : new_n_past.value] = -1
                llama.n_tokens = new_n_past.value
                encode_s += t1 - t0
                prompt_s += time.perf_counter() - t1
        finally:
            mtmd.mtmd_input_chunks_free(chunks)
        self.timings.encode_s, self.timings.prompt_s = encode_s, prompt_s
        self.timings.prompt_tokens = llama.n_tokens
        return llama.input_ids[: llama.n_tokens].tolist()

    # -- the interface ------------------------------------------------------------------------

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
        with self._lock:
            self.timings = StageTimings()
            check_cancel(cancel)
            prompt = self._eval_prompt(image, instruction)
            outputs: list[str] = []
            start = time.perf_counter()
            for index in range(settings.n):
                check_cancel(cancel)
                greedy = index == 0
                pieces: list[str] = []
                stream = self.llama.create_completion(
                    prompt=prompt,
                    max_tokens=settings.max_new_tokens,
                    temperature=0.0 if greedy else settings.temperature,
                    top_p=1.0 if greedy else settings.top_p,
                    top_k=0,
                    min_p=0.0,
                    repeat_penalty=1.0,
                    seed=settings.seed + index,
                    stream=True,
                )
                for part in stream:
                    delta = part["choices"][0]["text"]
                    if delta:
                        pieces.append(delta)
                        if on_token is not None:
                            on_token(index, delta)
                    if cancel is not None and cancel.is_set():
                        stream.close()
                        check_cancel(cancel)
                self.timings.new_tokens += self.llama.n_tokens - len(prompt)
                outputs.append("".join(pieces))
            self.timings.generate_s = time.perf_counter() - start
        return outputs

    def close(self) -> None:
        if getattr(self, "_ctx", None):
            self._mtmd.mtmd_free(self._ctx)
            self._ctx = None
        if getattr(self, "llama", None) is not None:
            self.llama.close()
            self.llama = None

    def __enter__(self) -> GGUFBackend:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _trained_context(path: Path) -> int | None:
    """The text model's training context length from its GGUF header (None if unknown)."""
    import gguf

    try:
        reader = gguf.GGUFReader(str(path))
        arch = reader.get_field("general.architecture")
        field = reader.get_field(f"{arch.contents()}.context_length") if arch is not None else None
        return int(field.contents()) if field is not None else None
    except (OSError, ValueError):  # llama.cpp gives the clear error about a broken file
        return None


def _mmproj_image_size(path: Path) -> int | None:
    """The encoder's input size from the mmproj header."""
    import gguf

    field = gguf.GGUFReader(str(path)).get_field("clip.vision.image_size")
    return int(field.contents()) if field is not None else None
