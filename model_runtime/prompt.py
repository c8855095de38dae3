"""The one prompt definition: every backend and every training recipe imports it.

LLaVA-1.5 form: ``USER: <image>\\n{instruction} ASSISTANT:`` and the answer `` {code}`` followed
by the tokenizer's EOS token (``</s>`` for Llama tokenizers). Training masks everything up to and
including ``ASSISTANT:``; generation stops at EOS.
"""

from __future__ import annotations

IMAGE_TOKEN = "<image>"
DEFAULT_INSTRUCTION = "Generate the CadQuery code that builds this part."
PROMPT_TEMPLATE = "USER: {image}\n{instruction} ASSISTANT:"


def build_prompt(instruction: str | None = None, image_token: str = IMAGE_TOKEN) -> str:
    """The text a model sees before its answer. A user instruction is appended to the default."""
    text = DEFAULT_INSTRUCTION
    if instruction and instruction.strip():
        text = f"{DEFAULT_INSTRUCTION} {instruction.strip()}"
    return PROMPT_TEMPLATE.format(image=image_token, instruction=text)


def format_answer(code: str, eos_token: str = "</s>") -> str:
    """The training target that follows the prompt: a space, the code, EOS."""
    return f" {code.strip()}{eos_token}"
