"""The transformers backend: ``LlavaForConditionalGeneration`` + an optional PEFT LoRA adapter.

On CUDA the language model loads in 4-bit NF4 with double quantisation (fp16 compute before
Ampere: T4s report bf16 support they do not have; bf16 after), the vision tower and projector
stay unquantised. On CPU it runs in full precision. Hub ids load only from the local cache.
"""

from __future__ import annotations

import contextlib
import threading
import time
from pathlib import Path

from PIL import Image

from model_runtime.backends.base import (
    BackendError,
    GenerationSettings,
    StageTimings,
    TokenCallback,
    check_cancel,
)
from model_runtime.prompt import build_prompt

# transformers 5.x module names; the LM's linear layers are the ones worth quantising.
SKIP_QUANTIZATION = ["model.vision_tower", "model.multi_modal_projector", "lm_head"]


def quantization_config(compute_capability: tuple[int, int]):
    """4-bit NF4 + double quantisation, compute dtype by GPU generation."""
    import torch
    from transformers import BitsAndBytesConfig

    compute = torch.bfloat16 if compute_capability[0] >= 8 else torch.float16
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=compute,
        llm_int8_skip_modules=SKIP_QUANTIZATION,
    )


class HFBackend:
    """``HFBackend(model, adapter=None, device="auto", quantize="auto")``; see ``Backend``.

    ``quantize``: "auto" (4-bit on CUDA, none on CPU), "4bit" or "none".
    """

    name = "hf"

    def __init__(
        self,
        model: str | Path,
        *,
        adapter: str | Path | None = None,
        device: str = "auto",
        quantize: str = "auto",
        local_files_only: bool = True,
    ) -> None:
        try:
            import torch
            from transformers import AutoProcessor, LlavaForConditionalGeneration
        except ImportError as exc:
            raise BackendError("the hf backend needs the GPU extra: pip install 'cadsnap[gpu]'") from exc
        start = time.perf_counter()
        self._torch = torch
        self.device = ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device
        if quantize not in ("auto", "4bit", "none"):
            raise BackendError(f"quantize must be auto, 4bit or none, not {quantize!r}")
        four_bit = quantize == "4bit" or (quantize == "auto" and self.device.startswith("cuda"))
        kwargs: dict = {"local_files_only": local_files_only}
        if four_bit:
            capability = (
                torch.cuda.get_device_capability(self.device) if self.device.startswith("cuda") else (8, 0)
            )
            kwargs["quantization_config"] = quantization_config(capability)
            kwargs["device_map"] = {"": self.device}
            self.dtype = kwargs["quantization_config"].bnb_4bit_compute_dtype
            kwargs["dtype"] = self.dtype  # the unquantised vision tower and projector run in it too
        else:
            self.dtype = torch.float16 if self.device.startswith("cuda") else torch.float32
            kwargs["dtype"] = self.dtype
        try:
            self.processor = AutoProcessor.from_pretrained(str(model), local_files_only=local_files_only)
            self.model = LlavaForConditionalGeneration.from_pretrained(str(model), **kwargs)
        except (OSError, ValueError) as exc:
            raise BackendError(f"cannot load the LLaVA model {model}: {exc}") from exc
        if not four_bit:
            self.model.to(self.device)
        if adapter is not None:
            from peft import PeftModel

            try:
                self.model = PeftModel.from_pretrained(self.model, str(adapter))
            except (OSError, ValueError) as exc:
                raise BackendError(f"cannot load the LoRA adapter {adapter}: {exc}") from exc
        self.model.eval()
        self.quantized = four_bit
        self.model_id = Path(str(model)).name + (f"+{Path(str(adapter)).name}" if adapter else "")
        self.timings = StageTimings()
        self._lock = threading.Lock()
        self.load_s = time.perf_counter() - start

    def generate(
        self,
        image: Image.Image,
        instruction: str | None = None,
        settings: GenerationSettings | None = None,
        *,
        on_token: TokenCallback | None = None,
        cancel: threading.Event | None = None,
    ) -> list[str]:
        torch = self._torch
        settings = settings or GenerationSettings()
        inputs = self.processor(images=[image], text=[build_prompt(instruction)], return_tensors="pt")
        inputs = {k: v.to(self.device) for k, v in inputs.items()}
        if "pixel_values" in inputs:
            inputs["pixel_values"] = inputs["pixel_values"].to(self.dtype)
        prompt_len = inputs["input_ids"].shape[1]
        eos = self.processor.tokenizer.eos_token_id
        outputs: list[str] = []
        with self._lock, torch.inference_mode():
            self.timings = StageTimings(prompt_tokens=prompt_len)
            for index in range(settings.n):
                check_cancel(cancel)
                streamer = _Streamer(self.processor.tokenizer, index, on_token, cancel)
                sample = index > 0
                torch.manual_seed(settings.seed + index)
                start = time.perf_counter()
                with _EncodeTimer(self.model) if index == 0 else contextlib.nullcontext() as encode:
                    ids = self.model.generate(
                        **inputs,
                        max_new_tokens=settings.max_new_tokens,
                        do_sample=sample,
                        temperature=settings.temperature if sample else None,
                        top_p=settings.top_p if sample else None,
                        top_k=None,
                        eos_token_id=eos,
                        pad_token_id=self.processor.tokenizer.pad_token_id or eos,
                        streamer=streamer,
                        stopping_criteria=_cancel_criteria(cancel),
                    )
                check_cancel(cancel)
                end = time.perf_counter()
                new = ids[0, prompt_len:]
                n_new = int(new.shape[0])
                # Prefill (prompt + image through the LM) ends when the first new token appears.
                first = streamer.first_token_at or end
                if index == 0:
                    self.timings.encode_s = encode.seconds
                    self.timings.prompt_s = max(first - start - encode.seconds, 0.0)
                    self.timings.generate_s += end - first
                    self.timings.new_tokens += max(n_new - 1, 0)
                else:
                    self.timings.generate_s += end - start
                    self.timings.new_tokens += n_new
                outputs.append(self.processor.tokenizer.decode(new, skip_special_tokens=True))
        return outputs

    def close(self) -> None:
        self.model = None
        if self._torch.cuda.is_available():
            self._torch.cuda.empty_cache()


class _Streamer:
    """transformers streamer protocol: forward decoded text deltas, note when tokens start coming."""

    def __init__(self, tokenizer, index: int, on_token: TokenCallback | None, cancel) -> None:
        self.tokenizer, self.index, self.on_token = tokenizer, index, on_token
        self.ids: list[int] = []
        self.text = ""
        self.first_token_at: float | None = None
        self._prompt_seen = False

    def put(self, value) -> None:
        if not self._prompt_seen:  # the first call carries the prompt
            self._prompt_seen = True
            return
        if self.first_token_at is None:
            self.first_token_at = time.perf_counter()
        self.ids.extend(int(x) for x in value.reshape(-1).tolist())
        text = self.tokenizer.decode(self.ids, skip_special_tokens=True)
        if text.endswith("\ufffd"):  # an incomplete UTF-8 sequence: wait for the next token
            return
        delta, self.text = text[len(self.text) :], text
        if delta and self.on_token is not None:
            self.on_token(self.index, delta)

    def end(self) -> None:
        pass


class _EncodeTimer:
    """Times the image encoder (vision tower + projector) inside ``generate`` with forward hooks."""

    def __init__(self, model) -> None:
        inner = model.get_base_model() if hasattr(model, "get_base_model") else model
        self.tower, self.projector = inner.model.vision_tower, inner.model.multi_modal_projector
        self.seconds = 0.0
        self._start = 0.0

    def __enter__(self) -> _EncodeTimer:
        def begin(*_):
            self._start = time.perf_counter()

        def finish(*_):
            self.seconds += time.perf_counter() - self._start

        self._hooks = [
            self.tower.register_forward_pre_hook(begin),
            self.projector.register_forward_hook(finish),
        ]
        return self

    def __exit__(self, *exc) -> None:
        for hook in self._hooks:
            hook.remove()


def _cancel_criteria(cancel: threading.Event | None):
    """A stopping criterion that ends ``generate`` at the next token once ``cancel`` is set."""
    from transformers import StoppingCriteria, StoppingCriteriaList

    if cancel is None:
        return None

    class CancelCriterion(StoppingCriteria):
        def __call__(self, input_ids, scores, **kwargs):
            import torch

            return torch.full(
                (input_ids.shape[0],), cancel.is_set(), dtype=torch.bool, device=input_ids.device
            )

    return StoppingCriteriaList([CancelCriterion()])
