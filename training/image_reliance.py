"""Does a trained model look at the picture? Two numbers for a LLaVA folder and a dataset.

    python -m training.image_reliance RUN/model --data DATA [--rows 32] [--probe 400]

1. Validation loss with the real images, with the images shuffled across the batch, and with blank
   images. A model that reads the picture loses clearly more without it; our first built-in model
   did not lose anything (0.2258 all three).
2. A linear probe: how often a logistic regression on the mean-pooled image tokens finds the part
   family on held-out reference-look training images, for this model and for a randomly initialised
   one of the same size (chance = the commonest family's share). If training drops the probe below
   the random model's, the vision features collapsed.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path


@dataclass
class Reliance:
    loss_real: float
    loss_shuffled: float
    loss_blank: float
    probe_trained: float
    probe_random: float
    probe_chance: float


def losses(model, collator, rows) -> tuple[float, float, float]:
    import torch

    with torch.no_grad():
        batch = collator(rows)
        real = model(**batch).loss.item()
        shuffled = model(**{**batch, "pixel_values": batch["pixel_values"].roll(1, dims=0)}).loss.item()
        blank = model(**{**batch, "pixel_values": torch.zeros_like(batch["pixel_values"])}).loss.item()
    return real, shuffled, blank


def pooled_image_tokens(model, pixel_values):
    import torch

    with torch.no_grad():
        layer = model.config.vision_feature_layer
        hidden = model.model.vision_tower(pixel_values, output_hidden_states=True).hidden_states[layer]
        return model.model.multi_modal_projector(hidden[:, 1:]).mean(1)


def probe_accuracy(features, labels, train_share: float = 0.75, steps: int = 300) -> float:
    """Held-out accuracy of a small L2-regularised logistic regression (full-batch Adam)."""
    import torch

    features = (features - features.mean(0)) / (features.std(0) + 1e-6)
    split = int(len(labels) * train_share)
    classes = int(labels.max()) + 1
    weight = torch.zeros(features.shape[1], classes, requires_grad=True)
    bias = torch.zeros(classes, requires_grad=True)
    optimizer = torch.optim.Adam([weight, bias], lr=1e-2)
    for _ in range(steps):
        logits = features[:split] @ weight + bias
        loss = torch.nn.functional.cross_entropy(logits, labels[:split]) + 1e-3 * weight.square().sum()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        predicted = (features[split:] @ weight + bias).argmax(1)
    return float((predicted == labels[split:]).float().mean())


def measure(model_dir: Path, data: Path, rows: int = 32, probe: int = 400) -> Reliance:
    import torch
    from transformers import AutoProcessor, LlavaForConditionalGeneration

    from training.collate import LlavaCollator
    from training.llava_model import LlavaModelConfig, build_llava
    from training.synth.dataset import load_split
    from training.train_compact import rows_at

    model = LlavaForConditionalGeneration.from_pretrained(model_dir).eval()
    processor = AutoProcessor.from_pretrained(model_dir)
    collator = LlavaCollator(processor, max_length=model.config.text_config.max_position_embeddings)
    val = load_split(data, "val")
    real, shuffled, blank = losses(model, collator, rows_at(val, list(range(min(rows, len(val))))))

    train = load_split(data, "train")
    cameras = train.select_columns(["camera"])["camera"][: probe * 6]
    picked = [i for i, camera in enumerate(cameras) if json.loads(camera).get("look") == "reference"][:probe]
    families = train.select(picked)["family"]
    names = sorted(set(families))
    labels = torch.tensor([names.index(f) for f in families])
    pixels = torch.cat([collator(rows_at(train, picked[i: i + 50]))["pixel_values"]
                        for i in range(0, len(picked), 50)])
    config = LlavaModelConfig(**json.loads((model_dir / "cadsnap_model.json").read_text()))
    random_model, _ = build_llava(config, processor.tokenizer)
    held_out = labels[int(len(labels) * 0.75):]
    return Reliance(
        loss_real=real, loss_shuffled=shuffled, loss_blank=blank,
        probe_trained=probe_accuracy(pooled_image_tokens(model, pixels), labels),
        probe_random=probe_accuracy(pooled_image_tokens(random_model.eval(), pixels), labels),
        probe_chance=float(torch.bincount(held_out).max()) / max(1, len(held_out)),
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.image_reliance", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", type=Path, help="a LLaVA folder written by train_compact (RUN/model)")
    parser.add_argument("--data", type=Path, required=True, help="the training.synth dataset folder")
    parser.add_argument("--rows", type=int, default=32, help="validation rows for the losses")
    parser.add_argument("--probe", type=int, default=400, help="reference-look training images for the probe")
    args = parser.parse_args(argv)
    r = measure(args.model, args.data, args.rows, args.probe)
    print(f"validation loss: real images {r.loss_real:.4f}, shuffled {r.loss_shuffled:.4f}, "
          f"blank {r.loss_blank:.4f}")
    print(f"family probe on reference-look images: this model {r.probe_trained:.0%}, "
          f"random init {r.probe_random:.0%}, chance {r.probe_chance:.0%}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
