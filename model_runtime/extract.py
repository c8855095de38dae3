"""Pull a CadQuery program out of whatever a model wrote: fences, chatter, stray special tokens.

Fine-tuned models answer with bare code; general chat models (the remote backend) wrap it in
Markdown fences and explanations. The rule: prefer a fenced block (the one that builds ``result``,
else the longest), otherwise start at the first line that looks like code and drop trailing lines
until the program parses. ``import cadquery as cq`` is added when the code uses ``cq`` without it.
"""

from __future__ import annotations

import re

from model_runtime.sandbox.policy import parse

_FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_+-]*)[^\n]*\n(.*?)(?:```|\Z)", re.DOTALL)
_SPECIAL = re.compile(r"</s>|<s>|<\|[a-z_]+\|>|<\|im_end\|>|<end_of_turn>")
_CODE_START = re.compile(r"^\s*(import |from \w+ import|result\s*=|cq\.|[A-Za-z_]\w*\s*=\s*\(?\s*cq\b)")
_CODE_LANGS = {"", "python", "py", "python3", "cadquery"}


def extract_code(text: str) -> str:
    """The program in ``text`` (possibly still invalid Python: the sandbox reports that)."""
    text = _SPECIAL.sub("", text).replace("\r\n", "\n")
    code = _from_fences(text)
    if code is None:
        code = _from_prose(text)
    code = _trim_to_parse(code.strip("\n")).rstrip()
    if code and re.search(r"\bcq\.", code) and not re.search(r"^\s*import cadquery as cq\b", code, re.M):
        code = "import cadquery as cq\n\n" + code
    return code + "\n" if code else ""


def _from_fences(text: str) -> str | None:
    blocks = [(lang.lower(), body) for lang, body in _FENCE.findall(text) if lang.lower() in _CODE_LANGS]
    if not blocks:
        return None
    building = [body for _, body in blocks if re.search(r"^\s*result\s*=", body, re.M)]
    return max(building or [body for _, body in blocks], key=len)


def _from_prose(text: str) -> str:
    lines = text.strip().split("\n")
    for i, line in enumerate(lines):
        if _CODE_START.match(line):
            return "\n".join(lines[i:])
    return text.strip()


def _trim_to_parse(code: str) -> str:
    """Drop trailing lines (chatter after the code) until the rest parses; keep it all if nothing does."""
    lines = code.split("\n")
    for end in range(len(lines), 0, -1):
        candidate = "\n".join(lines[:end])
        if not candidate.strip():
            continue
        try:
            parse(candidate)
        except (SyntaxError, ValueError, RecursionError, MemoryError):
            continue
        if end < len(lines) and "result" not in candidate:
            break  # cutting off the part that binds ``result`` is worse than a syntax error
        return candidate
    return code
