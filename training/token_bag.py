"""An auxiliary training signal for the from-scratch model: from the image alone, predict which code
tokens the answer contains.

Why: with teacher forcing, a small decoder learns the programs' prior long before it needs the
picture, so the vision tower gets almost no gradient. Adam turns those tiny, noisy gradients into
full-size steps, the vision weights random-walk, and the image features collapse to one vector
that the decoder ignores (measured on our first 3,600-step run: the validation loss was the same
to four decimals with real, shuffled or blank images). The bag of answer tokens — the family's calls
and every dimension, since numbers are single tokens — gives the image path a direct, dense target.

The head reads the projector's output (the image tokens as the decoder sees them) through a
forward hook, so it costs one small matmul, and it is not part of the exported model.
"""

from __future__ import annotations

import torch
from torch import nn


class TokenBagHead(nn.Module):
    """Mean-pooled image tokens -> one logit per vocabulary entry ("is this token in the answer")."""

    def __init__(self, hidden: int, vocab_size: int):
        super().__init__()
        self.norm = nn.LayerNorm(hidden)
        self.proj = nn.Linear(hidden, vocab_size)

    def forward(self, image_tokens: torch.Tensor) -> torch.Tensor:  # (batch, tokens, hidden)
        return self.proj(self.norm(image_tokens.mean(dim=1)))


def token_bag_targets(labels: torch.Tensor, vocab_size: int) -> torch.Tensor:
    """Multi-hot (batch, vocab) of the supervised answer tokens (labels of -100 are ignored)."""
    targets = torch.zeros(labels.shape[0], vocab_size, device=labels.device)
    mask = labels >= 0
    rows = torch.arange(labels.shape[0], device=labels.device).unsqueeze(1).expand_as(labels)
    targets[rows[mask], labels[mask]] = 1.0
    return targets


class ImageTokenTap:
    """Keeps the multi-modal projector's latest output (the image tokens) during a forward pass."""

    def __init__(self, model: nn.Module):
        projector = model.model.multi_modal_projector
        self.output: torch.Tensor | None = None
        self._handle = projector.register_forward_hook(self._keep)

    def _keep(self, _module, _inputs, output) -> None:
        self.output = output

    def take(self) -> torch.Tensor:
        if self.output is None:
            raise RuntimeError("the projector did not run: the batch carried no pixel_values")
        output, self.output = self.output, None
        return output

    def close(self) -> None:
        self._handle.remove()


def token_bag_loss(head: TokenBagHead, image_tokens: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy of the head's guesses against the answer's token set, summed over the
    vocabulary and divided by the number of tokens present (a mean over a mostly-absent vocabulary
    would make the signal vanish)."""
    batch = labels.shape[0]
    pooled = image_tokens.reshape(batch, -1, image_tokens.shape[-1])
    logits = head(pooled)
    targets = token_bag_targets(labels, logits.shape[-1])
    total = nn.functional.binary_cross_entropy_with_logits(logits.float(), targets, reduction="sum")
    return total / targets.sum().clamp(min=1.0)


__all__ = ["ImageTokenTap", "TokenBagHead", "token_bag_loss", "token_bag_targets"]
