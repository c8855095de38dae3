"""Image + code rows -> a LLaVA training batch: one tokenisation and label mask for every recipe.

A row is a mapping with ``image`` (PIL image) and ``code`` (str), optionally ``instruction``. Each
sample becomes::

    <s> USER: <image>x N\\n{instruction} ASSISTANT: {code}</s> <pad>...
    \\_______ labels -100 (the prompt) _________/\\_ learned _/ \\ -100 /

- BOS and EOS are added here as ids, whatever the tokenizer or chat template do: the llava-hf
  template emits neither, and a model trained without EOS never stops.
- Exactly the prompt (BOS through ``ASSISTANT:``) and the padding are masked with -100.
- The prompt's ids are the prompt tokenised alone, i.e. what a backend feeds at generation time.
- Images go through :func:`model_runtime.picture.images.load_image` first, as at generation time: flattened
  on white and padded to a square (CLIP's processor resizes the short side and centre-crops, which
  would cut the ends off a long part). A row's image may be a PIL image, a path or bytes.
- A sample longer than ``max_length`` is never truncated (that would cut the answer's EOS or, with a
  short limit, the image tokens): :func:`filter_overlong` drops such rows before training, and the
  collator raises :class:`SampleTooLongError` if one reaches it anyway.

Usage::

    collator = LlavaCollator(processor, max_length=1024)
    train = filter_overlong(train, collator)
    loader = DataLoader(train, batch_size=4, collate_fn=collator)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from PIL import Image

from model_runtime.picture.images import load_image
from model_runtime.prompt import IMAGE_TOKEN, build_prompt, format_answer

IGNORE_INDEX = -100  # what torch's cross-entropy (and so every HF model's loss) skips


class SampleTooLongError(ValueError):
    """A sample does not fit ``max_length``; filter the data with :func:`filter_overlong` first."""

    def __init__(self, length: int, max_length: int, index: int | None = None):
        where = f"sample {index}" if index is not None else "a sample"
        super().__init__(
            f"{where} is {length} tokens, over max_length={max_length}; samples are never truncated "
            "(that would cut the answer or the image tokens): drop them with "
            "training.collate.filter_overlong or raise max_length"
        )
        self.length = length
        self.max_length = max_length
        self.index = index


@dataclass
class EncodedSample:
    """One sample's ids and labels, before padding; ``prompt_length`` counts BOS and the prompt."""

    input_ids: list[int]
    labels: list[int]
    prompt_length: int


class LlavaCollator:
    """Callable ``collate_fn``: a list of rows -> ``input_ids, attention_mask, pixel_values, labels``.

    ``processor`` is a ``LlavaProcessor`` (any processor whose call expands ``<image>`` into the image's
    tokens and whose ``tokenizer`` has an EOS token). ``instruction`` is the default user instruction
    (appended to the project's default one by :func:`model_runtime.prompt.build_prompt`); a row's own
    ``instruction`` key overrides it.
    """

    def __init__(self, processor: Any, max_length: int = 2048, instruction: str | None = None):
        tokenizer = processor.tokenizer
        if tokenizer.eos_token_id is None:
            raise ValueError("the tokenizer has no EOS token; a model trained without one never stops")
        self.processor = processor
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.instruction = instruction
        self.bos_id: int | None = tokenizer.bos_token_id
        self.eos_id: int = tokenizer.eos_token_id
        # Padding is masked out of attention and labels; any id will do when there is no pad token.
        self.pad_id: int = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else self.eos_id
        self._image_tokens: int | None = None

    # -- one sample --------------------------------------------------------------------------------

    def prompt_text(self, row: Mapping[str, Any] | None = None) -> str:
        instruction = (row or {}).get("instruction") or self.instruction
        return build_prompt(instruction, image_token=self.processor.image_token)

    @property
    def image_tokens(self) -> int:
        """How many ids one ``<image>`` expands to (measured once through the processor itself)."""
        if self._image_tokens is None:
            probe = Image.new("RGB", (64, 64), "white")
            ids = self.processor(images=[probe], text=[IMAGE_TOKEN], add_special_tokens=False)["input_ids"][0]
            self._image_tokens = sum(1 for i in ids if i == self.processor.image_token_id)
        return self._image_tokens

    def encode(self, row: Mapping[str, Any], prompt_ids: Sequence[int] | None = None) -> EncodedSample:
        """Ids and labels of one row (no image needed: the image expands to a fixed count of ids)."""
        image_token = self.processor.image_token
        if prompt_ids is None:
            n_image = self.image_tokens
        else:
            prompt_ids = list(prompt_ids)
            n_image = prompt_ids.count(self.processor.image_token_id)
        expanded = self.prompt_text(row).replace(image_token, image_token * n_image)
        if prompt_ids is None:
            prompt_ids = self.tokenizer(expanded, add_special_tokens=False)["input_ids"]
        answer = format_answer(row["code"], eos_token="")  # EOS goes in as an id below, not as text
        # Tokenise prompt+answer together so the answer's first token is the one the base model
        # would see after "ASSISTANT:"; fall back to the answer alone if a token straddles the seam.
        joint = self.tokenizer(expanded + answer, add_special_tokens=False)["input_ids"]
        if joint[: len(prompt_ids)] == prompt_ids:
            answer_ids = joint[len(prompt_ids):]
        else:
            answer_ids = self.tokenizer(answer, add_special_tokens=False)["input_ids"]
        head = ([self.bos_id] if self.bos_id is not None else []) + prompt_ids
        tail = [*answer_ids, self.eos_id]
        return EncodedSample(head + tail, [IGNORE_INDEX] * len(head) + tail, len(head))

    def length(self, row: Mapping[str, Any]) -> int:
        """Token count of a row, image tokens included (what ``max_length`` is compared with)."""
        return len(self.encode(row).input_ids)

    def fits(self, row: Mapping[str, Any]) -> bool:
        return self.length(row) <= self.max_length

    # -- a batch -----------------------------------------------------------------------------------

    def __call__(self, rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        import numpy as np
        import torch

        if not rows:
            raise ValueError("cannot collate an empty batch")
        # The same flattening and square padding as generation (model_runtime.picture.images).
        images = [load_image(row["image"]) for row in rows]
        prompts = [self.prompt_text(row) for row in rows]
        # One processor call expands <image> exactly as generation will and prepares the pixels.
        encoded = self.processor(images=images, text=prompts, add_special_tokens=False)
        samples = []
        for index, (row, prompt_ids) in enumerate(zip(rows, encoded["input_ids"], strict=True)):
            sample = self.encode(row, prompt_ids=prompt_ids)
            if len(sample.input_ids) > self.max_length:
                raise SampleTooLongError(len(sample.input_ids), self.max_length, index)
            samples.append(sample)

        width = max(len(s.input_ids) for s in samples)
        input_ids = torch.full((len(samples), width), self.pad_id, dtype=torch.long)
        labels = torch.full((len(samples), width), IGNORE_INDEX, dtype=torch.long)
        attention_mask = torch.zeros((len(samples), width), dtype=torch.long)
        for i, sample in enumerate(samples):  # right padding: training needs no left-aligned prompts
            n = len(sample.input_ids)
            input_ids[i, :n] = torch.tensor(sample.input_ids)
            labels[i, :n] = torch.tensor(sample.labels)
            attention_mask[i, :n] = 1
        pixel_values = torch.from_numpy(np.stack([np.asarray(p) for p in encoded["pixel_values"]]))
        return {
            "input_ids": input_ids,
            "attention_mask": attention_mask,
            "pixel_values": pixel_values,
            "labels": labels,
        }


def filter_overlong(rows: Any, collator: LlavaCollator) -> Any:
    """Drop rows longer than ``collator.max_length``; returns the same kind it got.

    ``rows`` is a ``datasets.Dataset`` (filtered on its text columns only, so no image is decoded)
    or any iterable of row mappings (a list comes back).
    """
    try:
        from datasets import Dataset
    except ImportError:  # datasets is optional for callers that pass plain lists
        Dataset = None  # noqa: N806

    if Dataset is not None and isinstance(rows, Dataset):
        columns = [c for c in ("code", "instruction") if c in rows.column_names]

        def keep(*values: Any) -> bool:
            return collator.fits(dict(zip(columns, values, strict=True)))

        return rows.filter(keep, input_columns=columns, desc="dropping over-long samples")
    return [row for row in rows if collator.fits(row)]
