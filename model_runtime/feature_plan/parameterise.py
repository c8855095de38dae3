"""The parameterised program: the same CadQuery source, opening with the plan's named parameters.

``plate = cq.Workplane("XY").box(80, 60, 8)`` becomes ``plate_length = 80`` ... ``.box(plate_length,
plate_width, plate_thickness)``, with the names the feature plan gives the Body's dimensions
(``names.py``), so the code and the FreeCAD tree speak one language. Only literals are replaced, at
the exact call and argument the tracer recorded; formatting and everything else stay as they were.
"""

from __future__ import annotations

import ast
from collections.abc import Callable
from typing import Any


def _number(node: ast.AST) -> tuple[float, str] | None:
    """(absolute value, sign prefix) of a numeric literal, else None."""
    sign = ""
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        sign, node = "-", node.operand
    if (
        isinstance(node, ast.Constant)
        and isinstance(node.value, int | float)
        and not isinstance(node.value, bool)
    ):
        return abs(float(node.value)), sign
    return None


def _format(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def parameterise(code: str, plan: dict) -> str:
    """``code`` with each of the plan's parameters as a named assignment up front, used in its place.

    A parameter whose recorded literal is not found (the code changed since it was traced), or whose
    name the program already uses for something else, is left out, so the result always runs like
    ``code``.
    """
    parameters = plan.get("parameters") or []
    if not parameters:
        return code
    tree = ast.parse(code)
    taken = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
    taken |= {n.arg for n in ast.walk(tree) if isinstance(n, ast.arg)}
    taken |= {n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.ClassDef)}
    calls = {(n.end_lineno, n.end_col_offset): n for n in ast.walk(tree) if isinstance(n, ast.Call)}
    lines = code.splitlines(keepends=True)
    edits: list[tuple[int, int, int, str]] = []  # (line, start col, end col, text); ASCII columns
    used: list[dict] = []
    for parameter in parameters:
        call = calls.get((parameter["line"], parameter["col"]))
        if call is None or parameter["name"] in taken:
            continue
        arg = parameter["arg"]
        node = None
        if isinstance(arg, int) and arg < len(call.args):
            node = call.args[arg]
        elif isinstance(arg, str):
            node = next((k.value for k in call.keywords if k.arg == arg), None)
        literal = _number(node) if node is not None else None
        if (
            literal is None
            or abs(literal[0] - float(parameter["value"])) > 1e-9
            or node.lineno != node.end_lineno
        ):
            continue
        edits.append((node.lineno, node.col_offset, node.end_col_offset, literal[1] + parameter["name"]))
        used.append(parameter)
    if not used:
        return code
    for line, start, end, text in sorted(edits, reverse=True):
        raw = lines[line - 1].encode("utf-8")
        lines[line - 1] = (raw[:start] + text.encode("utf-8") + raw[end:]).decode("utf-8")
    # The named parameters go after the imports at the top of the program.
    insert_at = 0
    for node in tree.body:
        if isinstance(node, ast.Import | ast.ImportFrom):
            insert_at = node.end_lineno or insert_at
        else:
            break
    header = [
        "\n" if insert_at else "",
        "# Named dimensions (mm; angles in degrees), as in the FreeCAD feature tree\n",
    ]
    header += [f"{p['name']} = {_format(float(p['value']))}\n" for p in used]
    if insert_at < len(lines) and lines[insert_at].strip():
        header.append("\n")
    return "".join(lines[:insert_at] + header + lines[insert_at:])


def named_run(run: Callable[[str], Any], code: str, result: Any) -> tuple[str, Any]:
    """(code, result) opening with the plan's named dimensions, traced again so the plan describes the
    code kept on the part; the program and result as given when nothing maps, the named program does
    not run, or it builds another solid. ``run(code)`` runs a program in the sandbox with a plan."""
    from model_runtime import protocol
    from model_runtime.sandbox import SandboxError

    plan = result.feature_plan
    if not plan or plan.get("status") != protocol.PLAN_MAPPED:
        return code, result
    named = parameterise(code, plan)
    if named == code:
        return code, result
    try:
        again = run(named)
    except SandboxError:
        return code, result
    same = abs(again.volume - result.volume) <= 1e-6 * max(result.volume, 1.0)
    return (named, again) if same and again.n_faces == result.n_faces else (code, result)
