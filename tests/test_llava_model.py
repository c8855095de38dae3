"""The shared model builder and code tokenizer: shapes, exact round-trips, and a tiny model that learns."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from model_runtime.prompt import IMAGE_TOKEN, build_prompt
from training.code_tokenizer import load_code_tokenizer, train_code_tokenizer
from training.llava_model import LlavaModelConfig
from training.tiny_models import BOX_PROGRAM, CORPUS, make_tiny_llava, make_trained_tiny_llava


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    return train_code_tokenizer(CORPUS * 10, tmp_path_factory.mktemp("tok"), vocab_size=400)


def test_tokenizer_round_trips_code_exactly(tokenizer):
    for program in CORPUS:
        ids = tokenizer(program, add_special_tokens=False).input_ids
        assert tokenizer.decode(ids) == program


def test_tokenizer_special_tokens_follow_llama_layout(tokenizer):
    ids = (tokenizer.unk_token_id, tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id)
    assert ids == (0, 1, 2, 3)
    assert len(tokenizer(IMAGE_TOKEN, add_special_tokens=False).input_ids) == 1
    assert tokenizer(build_prompt()).input_ids[0] == tokenizer.bos_token_id


def test_tokenizer_reloads_from_disk_identically(tokenizer, tmp_path):
    tokenizer.save_pretrained(tmp_path)
    again = load_code_tokenizer(tmp_path)
    assert again(CORPUS[2]).input_ids == tokenizer(CORPUS[2]).input_ids


def test_tiny_llava_expands_image_to_patch_tokens(tmp_path):
    from transformers import AutoProcessor, LlavaForConditionalGeneration

    folder = make_tiny_llava(tmp_path)
    model = LlavaForConditionalGeneration.from_pretrained(folder)
    processor = AutoProcessor.from_pretrained(folder)
    config = LlavaModelConfig.tiny()
    image = Image.fromarray(np.zeros((40, 70, 3), np.uint8))
    inputs = processor(images=[image], text=[build_prompt()], return_tensors="pt")
    assert int((inputs.input_ids == model.config.image_token_index).sum()) == config.image_tokens
    logits = model(**inputs).logits
    assert logits.shape == (1, inputs.input_ids.shape[1], len(processor.tokenizer))


def test_compact_preset_is_small_enough_to_ship():
    config = LlavaModelConfig.compact()
    assert config.image_tokens == 64
    assert config.vision_hidden % config.vision_heads == 0 and config.text_hidden % config.text_heads == 0


def test_trained_tiny_llava_emits_its_program_on_unseen_images(tmp_path):
    import torch
    from transformers import AutoProcessor, LlavaForConditionalGeneration

    folder = make_trained_tiny_llava(tmp_path)
    model = LlavaForConditionalGeneration.from_pretrained(folder)
    processor = AutoProcessor.from_pretrained(folder)
    image = Image.fromarray(np.full((90, 50, 3), 180, np.uint8))
    inputs = processor(images=[image], text=[build_prompt()], return_tensors="pt")
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=60, do_sample=False)
    new = out[0, inputs.input_ids.shape[1]:]
    assert new[-1].item() == processor.tokenizer.eos_token_id
    assert processor.tokenizer.decode(new, skip_special_tokens=True).strip() == BOX_PROGRAM.strip()
