"""What a user's instruction states, as constraints on the search.

The built-in model was trained with one fixed instruction: any other text makes it write nothing
valid. So an instruction is read here, not handed to such a model: counts ("4 holes"), hole
diameters ("M6 holes", "6 mm holes", "Ø8"), overall sizes ("100 x 60 x 5", "80 mm long").
A backend whose model was trained with instructions (``follows_instructions``) gets the text too.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field

_NUMBER = r"(\d+(?:[.,]\d+)?)"
_WORDS = {"one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8,
          "nine": 9, "ten": 10, "twelve": 12, "a": 1, "an": 1, "single": 1}
# ISO metric clearance holes, medium fit (ISO 273): the hole a user means by "M6 holes"
_CLEARANCE = {2: 2.4, 2.5: 2.9, 3: 3.4, 4: 4.5, 5: 5.5, 6: 6.6, 8: 9.0, 10: 11.0, 12: 13.5, 16: 17.5,
              20: 22.0, 24: 26.0}


@dataclass
class Constraints:
    hole_count: int | None = None
    hole_diameter_mm: float | None = None
    sizes_mm: list[float] = field(default_factory=list)  # overall sizes, largest first
    notes: list[str] = field(default_factory=list)  # what was understood, in words

    @property
    def empty(self) -> bool:
        return self.hole_count is None and self.hole_diameter_mm is None and not self.sizes_mm

    @property
    def largest_mm(self) -> float | None:
        return self.sizes_mm[0] if self.sizes_mm else None

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def _num(text: str) -> float:
    return float(text.replace(",", "."))


def parse(text: str | None) -> Constraints:
    out = Constraints()
    if not text or not text.strip():
        return out
    low = text.lower()
    metric = re.search(r"\bm(\d+(?:\.\d)?)\b", low)
    if metric:
        size = _num(metric.group(1))
        out.hole_diameter_mm = _CLEARANCE.get(size if size % 1 else int(size), round(size * 1.1, 1))
        out.notes.append(f"M{metric.group(1)} holes: {out.hole_diameter_mm:g} mm clearance")
    diameter = re.search(rf"(?:ø|⌀|dia(?:meter)?\.?\s*(?:of\s*)?)\s*{_NUMBER}", low) or re.search(
        rf"{_NUMBER}\s*mm\s+(?:diameter\s+)?(?:holes?|bores?)", low)
    if diameter and out.hole_diameter_mm is None:
        out.hole_diameter_mm = _num(diameter.group(1))
        out.notes.append(f"hole diameter {out.hole_diameter_mm:g} mm")
    count = re.search(r"\b(\d+|" + "|".join(_WORDS) + r")\s+(?:\w+\s+){0,2}?(?:holes?|bores?)\b", low)
    if count:
        word = count.group(1)
        value = int(word) if word.isdigit() else _WORDS[word]
        if 0 < value <= 64:
            out.hole_count = value
            out.notes.append(f"{value} hole{'s' if value != 1 else ''}")
    dims = re.search(rf"{_NUMBER}\s*(?:mm)?\s*[x×*]\s*{_NUMBER}(?:\s*(?:mm)?\s*[x×*]\s*{_NUMBER})?", low)
    if dims:
        out.sizes_mm = sorted((_num(g) for g in dims.groups() if g), reverse=True)
    else:
        for match in re.finditer(rf"{_NUMBER}\s*mm\s+(?:long|wide|tall|high|across|in diameter|length|width)",
                                 low):
            out.sizes_mm.append(_num(match.group(1)))
        out.sizes_mm.sort(reverse=True)
    if out.sizes_mm:
        out.notes.append("overall size " + " x ".join(f"{s:g}" for s in out.sizes_mm) + " mm")
    return out
