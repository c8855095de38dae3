"""LLaVA-architecture models built from a dataclass config: CLIP-style ViT -> MLP projector -> Llama.

Every CadSnap model, from the tiny ones the tests build to the shipped compact model, is a plain
``transformers.LlavaForConditionalGeneration``, so it flows through the same training, merge, GGUF
export and backends as LLaVA-1.5-7B.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from model_runtime.prompt import IMAGE_TOKEN

# CLIP's normalisation, as in LLaVA-1.5's processor.
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

# LLaVA-1.5 template for `apply_chat_template`; identical to model_runtime.prompt's form.
CHAT_TEMPLATE = (
    "{% for message in messages %}{% if message['role'] == 'user' %}USER: "
    "{% for item in message['content'] %}{% if item['type'] == 'image' %}<image>\n"
    "{% elif item['type'] == 'text' %}{{ item['text'] }}{% endif %}{% endfor %} "
    "{% elif message['role'] == 'assistant' %}ASSISTANT: "
    "{% for item in message['content'] %}{{ item['text'] }}{% endfor %}{{ eos_token }}"
    "{% endif %}{% endfor %}{% if add_generation_prompt %}ASSISTANT:{% endif %}"
)


@dataclass
class LlavaModelConfig:
    image_size: int = 128
    patch_size: int = 16
    vision_hidden: int = 192
    vision_layers: int = 4
    vision_heads: int = 3
    vision_intermediate: int = 768
    text_hidden: int = 384
    text_layers: int = 6
    text_heads: int = 6
    text_kv_heads: int = 6
    text_intermediate: int = 1024
    max_positions: int = 1024
    rope_theta: float = 10000.0

    @property
    def image_tokens(self) -> int:
        return (self.image_size // self.patch_size) ** 2

    @classmethod
    def tiny(cls) -> LlavaModelConfig:
        """For tests: trains in seconds. Widths of 64 keep bitsandbytes' CPU 4-bit kernels happy."""
        return cls(
            image_size=32, patch_size=8, vision_hidden=64, vision_layers=2, vision_heads=2,
            vision_intermediate=128, text_hidden=64, text_layers=2, text_heads=2, text_kv_heads=2,
            text_intermediate=128, max_positions=512,
        )

    @classmethod
    def compact(cls) -> LlavaModelConfig:
        """The shared compact preset: 64 image tokens, ~13.6 M parameters. The shipped built-in model
        uses train_compact's ``small`` preset (this ViT, a 4 x 256 Llama); see its model card."""
        return cls()

    def to_dict(self) -> dict:
        return asdict(self)


def build_processor(config: LlavaModelConfig, tokenizer):
    from transformers import CLIPImageProcessor, LlavaProcessor

    image_processor = CLIPImageProcessor(
        size={"shortest_edge": config.image_size},
        crop_size={"height": config.image_size, "width": config.image_size},
        image_mean=list(CLIP_MEAN),
        image_std=list(CLIP_STD),
        do_convert_rgb=True,
    )
    return LlavaProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=config.patch_size,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,  # CLIP's class token, dropped by the "default" strategy
        chat_template=CHAT_TEMPLATE,
        image_token=IMAGE_TOKEN,
    )


def build_llava(config: LlavaModelConfig, tokenizer, seed: int = 0):
    """A randomly initialised LLaVA model and its processor, sized by ``config``, for ``tokenizer``."""
    import torch
    from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig, LlavaForConditionalGeneration

    vision = CLIPVisionConfig(
        hidden_size=config.vision_hidden,
        intermediate_size=config.vision_intermediate,
        num_hidden_layers=config.vision_layers,
        num_attention_heads=config.vision_heads,
        image_size=config.image_size,
        patch_size=config.patch_size,
        projection_dim=config.vision_hidden,
        hidden_act="quick_gelu",
        layer_norm_eps=1e-5,
    )
    text = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=config.text_hidden,
        intermediate_size=config.text_intermediate,
        num_hidden_layers=config.text_layers,
        num_attention_heads=config.text_heads,
        num_key_value_heads=config.text_kv_heads,
        max_position_embeddings=config.max_positions,
        rope_theta=config.rope_theta,
        rms_norm_eps=1e-5,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
    )
    llava = LlavaConfig(
        vision_config=vision,
        text_config=text,
        image_token_index=tokenizer.convert_tokens_to_ids(IMAGE_TOKEN),
        projector_hidden_act="gelu",
        vision_feature_layer=-2,
        vision_feature_select_strategy="default",
        image_seq_length=config.image_tokens,
        tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    model = LlavaForConditionalGeneration(llava)
    model.generation_config.bos_token_id = tokenizer.bos_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model, build_processor(config, tokenizer)
