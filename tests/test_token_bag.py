"""The auxiliary image -> answer-token-set loss: targets, the projector tap, and that it trains the
vision tower through a real tiny LLaVA."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from training.token_bag import ImageTokenTap, TokenBagHead, token_bag_loss, token_bag_targets


def test_targets_mark_each_supervised_token_once():
    labels = torch.tensor([[-100, -100, 5, 7, 5], [-100, 2, 2, -100, -100]])
    targets = token_bag_targets(labels, 10)
    assert targets[0].nonzero().flatten().tolist() == [5, 7]
    assert targets[1].nonzero().flatten().tolist() == [2]
    assert targets.sum() == 3


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from training.tiny_models import make_tiny_llava

    return make_tiny_llava(tmp_path_factory.mktemp("tiny"))


def test_the_loss_reaches_the_vision_tower_and_falls(tiny):
    from transformers import AutoProcessor, LlavaForConditionalGeneration

    from training.collate import LlavaCollator
    from training.tiny_models import BOX_PROGRAM

    model = LlavaForConditionalGeneration.from_pretrained(tiny)
    collator = LlavaCollator(AutoProcessor.from_pretrained(tiny), max_length=512)
    colours = [(0, 90, 200), (40, 90, 160), (80, 90, 120)]
    rows = [{"image": Image.new("RGB", (40, 40), colour), "code": BOX_PROGRAM} for colour in colours]
    batch = collator(rows)
    tap = ImageTokenTap(model)
    head = TokenBagHead(model.config.text_config.hidden_size, model.config.text_config.vocab_size)
    optimizer = torch.optim.AdamW([*model.parameters(), *head.parameters()], lr=3e-3)
    losses = []
    for _ in range(15):
        model(**batch)
        loss = token_bag_loss(head, tap.take(), batch["labels"])
        optimizer.zero_grad()
        loss.backward()
        if not losses:
            vision_grad = sum(
                p.grad.abs().sum().item() for p in model.model.vision_tower.parameters() if p.grad is not None
            )
            assert vision_grad > 0, "the auxiliary loss must train the vision tower"
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]
    tap.close()
    model(**batch)
    with pytest.raises(RuntimeError, match="projector did not run"):
        tap.take()
