"""Scale a generated program to an overall size, keeping it a program a person would write.

The preferred rewrite multiplies the program's lengths (``box(30, 20, 10)`` becomes ``box(75, 50,
25)``), so the scaled part keeps its feature tree and its source stays readable. Which literal is a
length is a guess read off the syntax: angles, counts and ratios must not move. The caller checks the
guess by running both programs (``is_scaled_copy``) and falls back to ``scale_wrapper``, a final step
that scales the solid itself, which is always exact but hides the history from the feature tree.
"""

from __future__ import annotations

import ast
from typing import Any

# Arguments that are angles, counts or flags, by method name: position and keyword. Taken from the
# CadQuery Workplane/Sketch API and the math module; everything else numeric is treated as a length.
_FIXED_ARGS: dict[str, tuple[tuple[int, ...], tuple[str, ...]]] = {
    "revolve": ((0,), ("angleDegrees",)),
    "polarArray": ((1, 2, 3), ("startAngle", "angle", "count")),
    "rarray": ((2, 3), ("xCount", "yCount")),
    "cskHole": ((2,), ("cskAngle",)),
    "rotate": ((2,), ("angleDegrees",)),
    "rotateAboutCenter": ((0, 1), ("axisEndPoint", "angleDegrees")),
    "transformed": ((0,), ("rotate",)),
    "polygon": ((0,), ("nSides",)),  # Workplane.polygon(nSides, diameter); Sketch's below
    "regularPolygon": ((1, 2), ()),
    "trapezoid": ((2, 3, 4), ()),
    "parray": ((1, 2, 3), ()),
    "rect": ((2,), ()),  # Sketch.rect(w, h, angle)
    "slot": ((2,), ()),
    "sphere": ((2, 3, 4), ("angle1", "angle2", "angle3")),
    "twistExtrude": ((1,), ("angleDegrees",)),
    "slot2D": ((2,), ("angle",)),
    "ellipse": ((2,), ("rotation_angle",)),
    "ellipseArc": ((2, 3, 4), ("angle1", "angle2", "rotation_angle")),
    "Location": ((1, 2), ()),  # Location(position, axis, angle)
    "range": ((0, 1, 2), ()),
    "radians": ((0,), ()),
    "degrees": ((0,), ()),
    "sin": ((0,), ()),
    "cos": ((0,), ()),
    "tan": ((0,), ()),
    "round": ((1,), ("ndigits",)),
}


def _is_number(node: ast.AST) -> bool:
    value = getattr(node, "value", None)
    return isinstance(node, ast.Constant) and isinstance(value, int | float) and not isinstance(value, bool)


def _literals_inside(node: ast.AST) -> list[ast.Constant]:
    return [n for n in ast.walk(node) if _is_number(n)]  # type: ignore[misc]


# Keywords that are never lengths, whatever the method (rect(..., angle=15), slot(..., angle=30)).
_FIXED_KEYWORDS = frozenset({"angle", "angleDegrees", "startAngle", "rotation_angle", "count", "nSides"})


def _fixed_literals(tree: ast.AST) -> set[int]:
    """ids of the numeric literals that are not lengths: angles, counts and ratios, including the
    literals bound to a name or loop variable that is used as one (``teeth = 24``, ``for a in (90,
    180)``)."""
    fixed: set[int] = set()
    fixed_names: set[str] = set()

    def fix(node: ast.AST) -> None:
        fixed.update(id(n) for n in _literals_inside(node))
        fixed_names.update(n.id for n in ast.walk(node) if isinstance(n, ast.Name))

    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            name = getattr(func, "attr", None) or getattr(func, "id", "")
            positions, keywords = _FIXED_ARGS.get(name, ((), ()))
            if name == "polygon" and node.args and isinstance(node.args[0], ast.List | ast.Tuple):
                positions = (1,)  # Sketch.polygon(points, angle): the points are lengths
            for index in positions:
                if index < len(node.args):
                    fix(node.args[index])
            for keyword in node.keywords:
                if keyword.arg in keywords or keyword.arg in _FIXED_KEYWORDS:
                    fix(keyword.value)
        elif isinstance(node, ast.BinOp):
            # length / 2, length * 0.5, 2 * length, length ** 2: the bare number is a ratio
            if isinstance(node.op, ast.Div | ast.FloorDiv | ast.Mod | ast.Pow) and _is_number(node.right):
                fixed.add(id(node.right))
            elif isinstance(node.op, ast.Mult):
                if _is_number(node.right) and not _is_number(node.left):
                    fixed.add(id(node.right))
                elif _is_number(node.left):
                    fixed.add(id(node.left))  # 2 * 40 or 2 * r: the left number is the factor
        elif isinstance(node, ast.Subscript):
            fix(node.slice)
        elif isinstance(node, ast.Compare):  # loop bounds and flags, not geometry
            fix(node)
    # Follow names back to the numbers bound to them (one level is what generated code needs).
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign | ast.For):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            value = node.value if isinstance(node, ast.Assign) else node.iter
            names = {n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)}
            if names & fixed_names:
                if len(names) == 1 or not isinstance(value, ast.Tuple):
                    fix(value)
                else:  # a, b = 3, 40: only the fixed names' numbers
                    for target, item in zip(targets[0].elts, value.elts, strict=False):  # type: ignore[attr-defined]
                        if isinstance(target, ast.Name) and target.id in fixed_names:
                            fix(item)
    return fixed


def _format(value: float) -> str:
    # Nine decimals: coarser rounding moves faces that met exactly (a + b == c in the program) apart
    # by more than OCCT's 1e-7 tolerance and leaves slivers.
    rounded = round(value, 9)
    return str(int(rounded)) if float(rounded).is_integer() else repr(rounded)


def scale_literals(code: str, factor: float, target_mm: float) -> str | None:
    """``code`` with every length literal multiplied by ``factor``, or None when it does not parse.

    A comment at the top says what was done. Only literal text changes: layout, names and comments stay.
    """
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return None
    fixed = _fixed_literals(tree)
    lines = code.splitlines(keepends=True)
    edits = []
    for node in _literals_inside(tree):
        if id(node) in fixed or node.value == 0 or node.lineno != node.end_lineno:
            continue
        edits.append((node.lineno, node.col_offset, node.end_col_offset, _format(node.value * factor)))
    for line, start, end, text in sorted(edits, reverse=True):
        raw = lines[line - 1].encode("utf-8")  # AST columns are UTF-8 byte offsets
        lines[line - 1] = (raw[:start] + text.encode("utf-8") + raw[end:]).decode("utf-8")
    note = f"# CadSnap: lengths scaled x{factor:.6g} so the largest overall dimension is {target_mm:g} mm.\n"
    return note + "".join(lines)


def scale_wrapper(code: str, factor: float, target_mm: float) -> str:
    """The program with a final step that scales ``result`` about the origin by ``factor``: exact for
    any program, so the source the user edits still builds exactly the solid they got."""
    return (
        code.rstrip()
        + f"\n\n# CadSnap: scaled so the largest overall dimension is {target_mm:g} mm.\n"
        + f'result = cq.Workplane("XY").add(cq.Workplane("XY").add(result).val().scale({factor!r}))\n'
    )


def is_scaled_copy(original: Any, scaled: Any, factor: float) -> bool:
    """True when ``scaled`` is ``original`` scaled about the origin by ``factor`` (both sandbox
    results: ``bbox``, ``volume``, ``n_faces``): same faces, each bounding-box coordinate and the
    volume where the factor puts them, to the rounding of ``_format``."""
    if original.n_faces != scaled.n_faces or original.volume <= 0:
        return False
    size = max(abs(v) for v in original.bbox) * factor
    if any(abs(s - o * factor) > 1e-3 + 1e-5 * size for o, s in zip(original.bbox, scaled.bbox, strict=True)):
        return False
    return abs(scaled.volume / (original.volume * factor**3) - 1.0) < 1e-3
