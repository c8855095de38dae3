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
import time
from typing import Any

import numpy as np

from model_runtime.shapes.graph import axis_candidates, build_graph, x_direction
from model_runtime.shapes.prism import DEADLINE, slice_stack
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


def piece_extrusion(
    piece: Any, num: Any, rebuild: Any, target: Any, op: str, fit_tol: float, level_tol: float
) -> tuple[str, str, str] | None:
    """One sketch extruded over the piece's whole height, when that is exactly the piece where it
    matters: a slot or a cross hole whose end meets a curved face is a clean cut through the
    rebuild (what lies outside the rebuild does not count), not a stack of slivers.
    (workplane, sketch, height) as code, or None."""
    from model_runtime.shapes.emit import loop_code, workplane

    graph = build_graph(piece)
    vol = piece.Volume()
    tol = 1e-4 * max(vol, 1e-9)
    for d in axis_candidates(graph)[:2]:
        frame = Frame((0, 0, 0), d, x_direction(graph, d))
        stack = slice_stack(piece, graph, frame, fit_tol=fit_tol, level_tol=level_tol)
        if not stack.runs or any(r.inner for r in stack.runs):
            continue
        z0 = min(r.z0 for r in stack.runs)
        z1 = max(r.z1 for r in stack.runs)
        for run in sorted(stack.runs, key=lambda r: -r.loop.area())[:2]:
            wp = workplane(frame, frame.world(0, 0, z0), num)
            code = f"{wp}{loop_code(run.loop, num)}.extrude({num(z1 - z0)})"
            try:
                from model_runtime.shapes.verify import run_program

                solid = run_program(f"import cadquery as cq\nresult = {code}\n")
                if op == "cut":  # takes the piece off the rebuild and nothing of the input
                    ok = abs(solid.intersect(rebuild).Volume() - vol) <= tol
                    ok = ok and solid.intersect(target).Volume() <= tol
                else:  # adds the piece and nothing the input lacks
                    ok = abs(solid.intersect(piece).Volume() - vol) <= tol
                    ok = ok and solid.cut(target).Volume() <= tol
            except Exception:
                ok = False
            if ok:
                return workplane(frame, frame.world(0, 0, z0), num), loop_code(run.loop, num), num(z1 - z0)
    return None


def piece_hole(piece: Any, fit_tol: float, level_tol: float, within: Any = None):
    """(frame, Hole) when a piece to take off is a drilled hole: coaxial circles, one or two radii
    (the wider one at the end it is drilled from). With ``within`` (the solid it is drilled in), the
    drill must take off exactly the piece there: a keyway's arc on the bore's circle is no hole."""
    from model_runtime.shapes.holes import Hole

    graph = build_graph(piece)
    d = axis_candidates(graph)[0]
    frame = Frame((0, 0, 0), d, x_direction(graph, d))
    stack = slice_stack(piece, graph, frame, fit_tol=fit_tol, level_tol=level_tol)
    if not stack.prismatic or any(r.inner for r in stack.runs):
        return None
    runs = sorted(stack.runs, key=lambda r: r.z0)
    circles = [_circle_of(r.loop) for r in runs]
    if any(c is None for c in circles):
        return None
    centers = {(round(c[0][0], 4), round(c[0][1], 4)) for c in circles}
    if (
        len(centers) != 1
        or len(runs) > 2
        or any(abs(a.z1 - b.z0) > 1e-7 for a, b in zip(runs, runs[1:], strict=False))
    ):
        return None
    from_top = circles[-1][1] >= circles[0][1]
    pairs = list(zip(runs, circles, strict=True))
    ordered = list(reversed(pairs)) if from_top else pairs
    levels = [(2 * c[1], r.z1 - r.z0) for r, c in ordered]
    hole = Hole(circles[0][0], from_top, runs[-1].z1 if from_top else runs[0].z0, levels)
    if within is not None and not _drills_exactly(piece, within, frame, hole):
        return None
    return frame, hole


def _drills_exactly(piece: Any, within: Any, frame: Frame, hole: Any) -> bool:
    import cadquery as cq

    direction = -frame.normal if hole.from_top else frame.normal
    z = hole.start
    drill = None
    for d, depth in hole.levels:
        base = frame.world(hole.center[0], hole.center[1], z)
        cyl = cq.Solid.makeCylinder(d / 2, depth, cq.Vector(*base), cq.Vector(*direction))
        drill = cyl if drill is None else drill.fuse(cyl)
        z += -depth if hole.from_top else depth
    try:
        taken = drill.intersect(within).Volume()
    except Exception:
        return False
    return abs(taken - piece.Volume()) <= 1e-4 * max(piece.Volume(), 1e-9)


def _circle_of(loop: Any):
    """(centre, radius) of a circle, or of the one circle all arcs of a clipped circle lie on."""
    if loop.is_circle:
        s = loop.segments[0]
        return s.center, s.radius
    arcs = [s for s in loop.segments if s.kind == "arc"]
    if not arcs or any(s.center is None for s in arcs):
        return None
    c, r = arcs[0].center, arcs[0].radius
    if all(
        abs(s.radius - r) < 1e-6 * max(1, r) and np.hypot(s.center[0] - c[0], s.center[1] - c[1]) < 1e-6
        for s in arcs
    ):
        return c, r
    return None


def add_residual(
    best: Any, target: Any, num: Any, evaluate: Any, fit_tol: float = 1e-4, level_tol: float = 1e-6
) -> Any:
    from model_runtime.shapes.recognise import Candidate

    floor = 1e-6 * target.Volume()
    try:
        # fuzzy: a revolve through a hex's corners touches its flats along lines, where exact
        # booleans give nothing
        bb = target.BoundingBox()
        fuzz = 1e-6 * max(bb.xlen, bb.ylen, bb.zlen, 1.0)
        missing = _pieces(target.cut(best.solid, tol=fuzz), floor)
        extra = _pieces(best.solid.cut(target, tol=fuzz), floor)
    except Exception:
        return best
    steps: list[str] = []
    features = list(best.features)
    n = 0
    from model_runtime.shapes import holes as holes_mod
    from model_runtime.shapes.recognise import _hole_step

    drilled: dict[tuple, tuple[Frame, list]] = {}
    rest = []
    for piece in sorted(extra, key=lambda p: -p.Volume()):
        if time.monotonic() > DEADLINE[0]:
            break
        try:
            found = piece_hole(piece, fit_tol, level_tol, within=best.solid)
        except Exception:
            found = None
        if found is None:
            rest.append(piece)
            continue
        frame, hole = found
        key = tuple(np.round(frame.normal, 6)) + tuple(np.round(frame.x_dir, 6))
        drilled.setdefault(key, (frame, []))[1].append(hole)
    for frame, found_holes in drilled.values():
        for group in holes_mod.group_holes(found_holes):
            comment, expr = _hole_step(frame, group, num)
            steps.append(f"# {comment}\nresult = result{expr}\n")
            h = group.holes[0]
            features.append("counterbored hole" if h.kind == "cbore" else "hole")
            if group.polar:
                features.append("polar pattern")
            elif len(group.holes) > 1:
                features.append("hole pattern")
    extra = rest
    for op, pieces in (("union", missing), ("cut", extra)):
        # pieces that are one sketch over one height (the six flats of a hex) become one feature
        sketches: dict[tuple[str, str], list[str]] = {}
        plain = []
        for piece in sorted(pieces, key=lambda p: -p.Volume())[: 4 * MAX_PIECES]:
            if time.monotonic() > DEADLINE[0]:
                break
            try:
                found = piece_extrusion(piece, num, best.solid, target, op, fit_tol, level_tol)
            except Exception:
                found = None
            if found is None:
                plain.append(piece)
            else:
                sketches.setdefault(found[::2], []).append(found[1])
        what = "added" if op == "union" else "removed"
        for (wp, height), loops in sketches.items():
            n += 1
            name = f"piece_{n}"
            many = f"{len(loops)} equal-height pieces in one sketch" if len(loops) > 1 else "one sketch"
            steps.append(
                f"# {what}: {many} extruded {height} across the part\n"
                f"{name} = {wp}{''.join(loops)}.extrude({height})\nresult = result.{op}({name})\n"
            )
            features.append("pad" if op == "union" else "pocket")
        for piece in plain[:MAX_PIECES]:
            if time.monotonic() > DEADLINE[0]:
                break
            n += 1
            name = f"piece_{n}"
            try:
                body, _ = piece_program(piece, name, num, fit_tol, level_tol)
            except Exception:
                continue
            what = "added" if op == "union" else "removed"
            steps.append(
                f"# residual: material no recogniser explained, {what} as a plain feature\n{body}"
                f"result = result.{op}({name})\n"
            )
            features.append("residual")
    if not steps:
        return best
    cand = Candidate(best.program.rstrip("\n") + "\n" + "".join(steps), features, best.strategy + "+residual")
    evaluate(cand, target)
    return cand if cand.iou > best.iou else best
