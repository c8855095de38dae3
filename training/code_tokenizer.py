"""A small BPE tokenizer trained on CadQuery programs.

SentencePiece BPE with byte fallback, saved as ``tokenizer.model`` next to the Hugging Face files:
llama.cpp's ``convert_hf_to_gguf.py`` takes its SentencePiece path for any such vocabulary, whereas a
custom ``tokenizer.json`` BPE is rejected by its pre-tokenizer hash check. Whitespace and newlines are
kept exactly (identity normalisation), so decoded code round-trips byte for byte.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterable, Iterator
from pathlib import Path

from model_runtime.prompt import DEFAULT_INSTRUCTION, IMAGE_TOKEN, build_prompt

# Ids fixed by convention (Llama layout): the converter and llama.cpp expect these.
UNK, BOS, EOS, PAD = "<unk>", "<s>", "</s>", "<pad>"


def _sentences(programs: Iterable[str]) -> Iterator[str]:
    """One training sentence per code line; the prompt's own words are included so they are cheap too."""
    for _ in range(50):
        yield from build_prompt().splitlines()
        yield DEFAULT_INSTRUCTION
    for program in programs:
        yield from (line for line in program.splitlines() if line.strip())


def train_code_tokenizer(programs: Iterable[str], out_dir: str | Path, vocab_size: int = 1024):
    """Train on ``programs`` and save a Hugging Face tokenizer (with ``tokenizer.model``) to ``out_dir``."""
    import sentencepiece as spm

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=_sentences(programs),
        model_writer=model,
        vocab_size=vocab_size,
        model_type="bpe",
        character_coverage=1.0,
        byte_fallback=True,
        normalization_rule_name="identity",
        remove_extra_whitespaces=False,
        split_digits=False,
        allow_whitespace_only_pieces=True,
        user_defined_symbols=[IMAGE_TOKEN],
        unk_id=0,
        bos_id=1,
        eos_id=2,
        pad_id=3,
        unk_piece=UNK,
        bos_piece=BOS,
        eos_piece=EOS,
        pad_piece=PAD,
        hard_vocab_limit=False,
        minloglevel=2,
    )
    (out_dir / "tokenizer.model").write_bytes(model.getvalue())
    config = {
        "tokenizer_class": "LlamaTokenizer",
        "bos_token": BOS,
        "eos_token": EOS,
        "unk_token": UNK,
        "pad_token": PAD,
        "add_bos_token": True,
        "add_eos_token": False,
        "legacy": False,
        "model_max_length": 4096,
    }
    (out_dir / "tokenizer_config.json").write_text(json.dumps(config, indent=2))
    tokenizer = load_code_tokenizer(out_dir)
    tokenizer.save_pretrained(out_dir)  # adds tokenizer.json; tokenizer.model stays for llama.cpp
    return tokenizer


def load_code_tokenizer(path: str | Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(path))
