"""Inch parts keep their unit in the program: a STEP file written in inches gets its named
dimensions in inches, ``plate_length_in = 3``, used as ``plate_length_in * INCH`` where CadQuery
needs millimetres (``INCH = 25.4``), so the numbers a person reads and edits are the ones they drew.

Only dimensions that are a whole number of 1/64 in (within a millionth of an inch) are renamed;
angles, counts and dimensions that are not round in inches stay as they are, in millimetres.
The FreeCAD Parameters sheet keeps millimetres (FreeCAD's own unit for a Body).
"""

from __future__ import annotations

import re

INCH = 25.4
_HEADER = "# Named dimensions (mm; angles in degrees), as in the FreeCAD feature tree\n"
_NOT_LENGTH = ("angle", "count", "number")


def _inches(value: float) -> float | None:
    v = value / INCH
    q = round(v * 64) / 64
    return q if q != 0 and abs(q - v) <= 1e-6 else None


def _fmt(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else f"{v:.6f}".rstrip("0")


def inch_names(code: str) -> str:
    """``code`` (a parameterised program) with its round-inch dimensions named and written in
    inches; ``code`` itself when it has no named dimensions or none is round in inches."""
    if _HEADER not in code:
        return code
    head, body = code.split(_HEADER, 1)
    lines = body.splitlines(keepends=True)
    renamed: dict[str, str] = {}
    out = []
    i = 0
    while i < len(lines) and re.match(r"^\w+ = [-\d.e]+\n?$", lines[i]):
        name, value = lines[i].split(" = ")
        inches = None if any(w in name for w in _NOT_LENGTH) else _inches(float(value))
        if inches is None:
            out.append(lines[i])
        else:
            renamed[name] = f"{name}_in"
            out.append(f"{name}_in = {_fmt(inches)}\n")
        i += 1
    if not renamed:
        return code
    rest = "".join(lines[i:])
    taken = set(re.findall(r"\b\w+\b", rest))
    if "INCH" in taken or any(new in taken for new in renamed.values()):
        return code
    for old, new in renamed.items():
        rest = re.sub(rf"\b{old}\b", f"{new} * INCH", rest)
    header = (
        "# Named dimensions: in inches (the file's unit; INCH turns them into the millimetres CadQuery "
        "works in), the others in mm; angles in degrees\nINCH = 25.4\n"
    )
    return head + header + "".join(out) + rest
