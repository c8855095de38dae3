"""The shared collator: BOS/EOS, exact prompt and padding masks, square images, no truncation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from model_runtime.prompt import build_prompt
from training.collate import IGNORE_INDEX, LlavaCollator, SampleTooLongError, filter_overlong
from training.tiny_models import BOX_PROGRAM, CORPUS, make_tiny_llava

LONG_PROGRAM = CORPUS[4]


@pytest.fixture(scope="module")
def processor(tmp_path_factory):
    from transformers import AutoProcessor

    return AutoProcessor.from_pretrained(make_tiny_llava(tmp_path_factory.mktemp("tiny")))


def _image(width: int = 48, height: int = 48, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 255, (height, width, 3), dtype=np.uint8))


def _generation_prompt_ids(processor, image, instruction=None) -> list[int]:
    """What a backend feeds the model: the processor's own tokenisation, special tokens included."""
    inputs = processor(images=[image], text=[build_prompt(instruction)], return_tensors="pt")
    return inputs.input_ids[0].tolist()


def test_labels_mask_exactly_the_prompt_and_the_padding(processor):
    rows = [{"image": _image(seed=1), "code": BOX_PROGRAM}, {"image": _image(seed=2), "code": LONG_PROGRAM}]
    batch = LlavaCollator(processor, max_length=512)(rows)
    tokenizer = processor.tokenizer
    assert batch["input_ids"].shape == batch["labels"].shape == batch["attention_mask"].shape

    for i, row in enumerate(rows):
        prompt_ids = _generation_prompt_ids(processor, row["image"])
        ids, labels, mask = batch["input_ids"][i], batch["labels"][i], batch["attention_mask"][i]
        n = int(mask.sum())
        # The prompt is BOS + exactly the ids a backend sends at generation time, and is fully masked.
        assert prompt_ids[0] == tokenizer.bos_token_id
        assert ids[: len(prompt_ids)].tolist() == prompt_ids
        assert (labels[: len(prompt_ids)] == IGNORE_INDEX).all()
        # Everything after the prompt is learned, ending with EOS as an id.
        assert labels[len(prompt_ids) : n].tolist() == ids[len(prompt_ids) : n].tolist()
        assert int(labels[n - 1]) == tokenizer.eos_token_id
        assert tokenizer.decode(labels[len(prompt_ids) : n - 1]).strip() == row["code"].strip()
        # Padding: right side, out of attention and of the loss.
        assert mask[:n].all() and not mask[n:].any()
        assert (labels[n:] == IGNORE_INDEX).all()
    assert int(batch["attention_mask"][0].sum()) < batch["input_ids"].shape[1]  # row 0 really is padded


def test_row_instruction_overrides_the_default(processor):
    collator = LlavaCollator(processor, max_length=512, instruction="Metric units.")
    image = _image()
    rows = [
        {"image": image, "code": BOX_PROGRAM},
        {"image": image, "code": BOX_PROGRAM, "instruction": "Flat."},
    ]
    batch = collator(rows)
    for i, instruction in enumerate(["Metric units.", "Flat."]):
        prompt_ids = _generation_prompt_ids(processor, image, instruction)
        assert batch["input_ids"][i, : len(prompt_ids)].tolist() == prompt_ids
        assert (batch["labels"][i, : len(prompt_ids)] == IGNORE_INDEX).all()
        assert batch["labels"][i, len(prompt_ids)] != IGNORE_INDEX


def test_wide_image_is_padded_square_on_white_not_cropped(processor):
    wide = Image.new("RGB", (90, 30), (200, 0, 0))
    batch = LlavaCollator(processor, max_length=512)([{"image": wide, "code": BOX_PROGRAM}])
    padded = Image.new("RGB", (90, 90), "white")
    padded.paste(wide, (0, 30))
    expected = processor.image_processor([padded], return_tensors="pt").pixel_values
    cropped = processor.image_processor([wide], return_tensors="pt").pixel_values
    assert torch.allclose(batch["pixel_values"], expected, atol=1e-5)
    assert not torch.allclose(batch["pixel_values"], cropped, atol=1e-2)


def test_transparent_image_is_flattened_on_white(processor):
    clear = Image.new("RGBA", (48, 48), (0, 0, 0, 0))
    batch = LlavaCollator(processor, max_length=512)([{"image": clear, "code": BOX_PROGRAM}])
    white = processor.image_processor([Image.new("RGB", (48, 48), "white")], return_tensors="pt").pixel_values
    assert torch.allclose(batch["pixel_values"], white, atol=1e-5)


def test_overlong_samples_are_filtered_never_truncated(processor):
    from datasets import Dataset

    collator = LlavaCollator(processor, max_length=512)
    short, long = collator.length({"code": BOX_PROGRAM}), collator.length({"code": LONG_PROGRAM})
    assert short < long
    collator.max_length = (short + long) // 2  # the short program fits, the long one does not

    rows = [{"image": _image(), "code": BOX_PROGRAM}, {"image": _image(), "code": LONG_PROGRAM}]
    assert [r["code"] for r in filter_overlong(rows, collator)] == [BOX_PROGRAM]
    dataset = Dataset.from_dict({"code": [BOX_PROGRAM, LONG_PROGRAM, BOX_PROGRAM], "family": ["a", "b", "c"]})
    kept = filter_overlong(dataset, collator)
    assert kept["family"] == ["a", "c"]

    with pytest.raises(SampleTooLongError) as caught:
        collator(rows)
    assert caught.value.index == 1 and caught.value.length == long
    # The length the filter uses is the length the collator produces.
    collator.max_length = 4096
    batch = collator(rows)
    assert batch["attention_mask"].sum(dim=1).tolist() == [short, long]


def test_image_token_count_matches_the_model_config(processor):
    from training.llava_model import LlavaModelConfig

    assert LlavaCollator(processor).image_tokens == LlavaModelConfig.tiny().image_tokens


def test_tokenizer_without_eos_is_refused(processor):
    class NoEos:
        tokenizer = type("T", (), {"eos_token_id": None})()

    with pytest.raises(ValueError, match="EOS"):
        LlavaCollator(NoEos())
