"""What no recogniser explained, kept as plain features so that nothing of the input is lost.

The difference between the input and the best rebuild is split into pieces: material the rebuild
lacks (joined with ``union``) and material it has too much of (taken off with ``cut``). Each piece
is itself recognised as an extrusion along its own best axis, so the program stays sketches and
operations (a slot cut across the main extrusion, a rib, a cross hole) rather than imported
geometry or coordinate lists. Pieces smaller than a millionth of the part's volume are numerical
dust and dropped.
"""

from __future__ import annotations

import re
from typing import Any

from model_runtime.shapes.graph import axis_candidates, build_graph, x_direction
from model_runtime.shapes.prism import slice_stack
from model_runtime.shapes.profile import Frame

MAX_PIECES = 12


def _pieces(shape: Any, floor: float) -> list[Any]:
    try:
        return [s for s in shape.Solids() if s.Volume() > floor]
    except Exception:
        return []


def piece_program(piece: Any, name: str, num: Any, fit_tol: float, level_tol: float) -> tuple[str, list[str]]:
    from model_runtime.shapes.recognise import prism_program

    graph = build_graph(piece)
    d = axis_candidates(graph)[0]
    frame = Frame((0, 0, 0), d, x_direction(graph, d))
    stack = slice_stack(piece, graph, frame, fit_tol=fit_tol, level_tol=level_tol)
    cand = prism_program(stack, num)
    body = cand.program.split("\n", 2)[2]  # drop the import line and the blank after it
    body = re.sub(r"\bresult\b", name, body)
    return body, cand.features


def add_residual(best: Any, target: Any, num: Any, evaluate: Any, fit_tol: float = 1e-4,
                 level_tol: float = 1e-6) -> Any:
    from model_runtime.shapes.recognise import Candidate

    floor = 1e-6 * target.Volume()
    try:
        missing = _pieces(target.cut(best.solid), floor)
        extra = _pieces(best.solid.cut(target), floor)
    except Exception:
        return best
    steps: list[str] = []
    features = list(best.features)
    n = 0
    for op, pieces in (("union", missing), ("cut", extra)):
        for piece in sorted(pieces, key=lambda p: -p.Volume())[:MAX_PIECES]:
            n += 1
            name = f"piece_{n}"
            try:
                body, _ = piece_program(piece, name, num, fit_tol, level_tol)
            except Exception:
                continue
            what = "added" if op == "union" else "removed"
            steps.append(f"# residual: material no recogniser explained, {what} as a plain feature\n{body}"
                         f"result = result.{op}({name})\n")
            features.append("residual")
    if not steps:
        return best
    cand = Candidate(best.program.rstrip("\n") + "\n" + "".join(steps), features, best.strategy + "+residual")
    evaluate(cand, target)
    return cand if cand.iou > best.iou else best
