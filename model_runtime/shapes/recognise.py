"""Shape in, readable CadQuery program out, checked by volume IoU against the input.

One face-adjacency graph (``graph``), then one recogniser per feature kind: turned parts
(``revolve``), extrusions and pockets along an axis (``prism``), holes and their patterns
(``holes``), edge blends (``blends``). Each strategy writes a whole program (``emit``); the one
whose solid matches the input best wins, and whatever no recogniser explained is kept as plain
residual features (``residual``), so nothing of the input is lost and the IoU says how close it is.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from model_runtime.shapes import blends
from model_runtime.shapes import holes as holes_mod
from model_runtime.shapes import mirror as mirror_mod
from model_runtime.shapes.emit import Numbers, Program, angle_text, frame_for, loop_code, workplane
from model_runtime.shapes.graph import FaceGraph, axis_candidates, build_graph, x_direction
from model_runtime.shapes.load import Loaded
from model_runtime.shapes.prism import Stack, slice_stack
from model_runtime.shapes.profile import Frame
from model_runtime.shapes.revolve import dominant_axis, half_section, turned_core, turning_axis
from model_runtime.shapes.verify import bbox_iou, run_program, volume_iou

EXACT = 0.9999
# a part is worth one revolve plus residual features when this share of its area turns about one axis
MOSTLY_TURNED = 0.5


@dataclass
class Recognition:
    program: str
    iou: float
    bbox_iou: float
    features: list[str]
    notes: list[str] = field(default_factory=list)
    strategy: str = ""
    seconds: float = 0.0
    input_volume: float = 0.0
    output_volume: float = 0.0
    solid: Any = None

    def to_dict(self) -> dict:
        return {
            "program": self.program, "iou": self.iou, "bbox_iou": self.bbox_iou, "features": self.features,
            "notes": self.notes, "strategy": self.strategy, "seconds": self.seconds,
            "input_volume": self.input_volume, "output_volume": self.output_volume,
        }  # fmt: skip


@dataclass
class Candidate:
    program: str
    features: list[str]
    strategy: str
    solid: Any = None
    iou: float = 0.0
    defeatured: bool = False


def _count(features: list[str]) -> str:
    out: dict[str, int] = {}
    for f in features:
        out[f] = out.get(f, 0) + 1
    return ", ".join(f"{n} {k}{'s' if n > 1 else ''}" for k, n in out.items())


def _countersinks(frame: Frame, groups: list, cones: list) -> dict[int, list]:
    """For each hole group (by position) whose every hole opens into a coaxial cone: those cones."""
    out: dict[int, list] = {}
    for gi, group in enumerate(groups):
        found = []
        for h in group.holes:
            match = None
            for cone in cones:
                if abs(abs(float(np.dot(cone.axis, frame.normal))) - 1) > 1e-6:
                    continue
                c2 = frame.local(cone.height_point)
                if (
                    abs(c2[0] - h.center[0]) < 1e-4
                    and abs(c2[1] - h.center[1]) < 1e-4
                    and abs(frame.height(cone.height_point) - h.start) < 1e-4
                    and len(h.levels) == 1
                ):
                    match = cone
                    break
            if match is None:
                break
            found.append(match)
        else:
            if found and len({round(c.diameter, 6) for c in found}) == 1:
                out[gi] = found
    return out


def _shape_key(loop) -> tuple | None:
    """Size of a rectangle or circle, whatever its position: equal keys are equal features."""
    rect = loop.as_rectangle()
    if rect is not None:
        return ("rect", round(rect[2], 6), round(rect[3], 6))
    if loop.is_circle:
        return ("circle", round(loop.segments[0].radius, 6))
    return None


def _where(loop) -> tuple[float, float]:
    rect = loop.as_rectangle()
    return (rect[0], rect[1]) if rect is not None else loop.segments[0].center


def _equal_runs(run, runs: list, done: set) -> list:
    key = _shape_key(run.loop)
    if key is None:
        return []
    return [
        r for r in runs
        if id(r) not in done and r.depth == run.depth and abs(r.z0 - run.z0) < 1e-9
        and abs(r.z1 - run.z1) < 1e-9 and _shape_key(r.loop) == key
    ]  # fmt: skip


def _points_code(runs: list, num: Numbers) -> str:
    pts = sorted(_where(r.loop) for r in runs)
    return ".pushPoints([" + ", ".join(f"({num(x)}, {num(y)})" for x, y in pts) + "])"


def _shape_code(loop, num: Numbers) -> str:
    key = _shape_key(loop)
    if key[0] == "rect":
        return f".rect({num(key[1])}, {num(key[2])})"
    return f".circle({num(key[1])})"


def _connected_order(pads: list) -> list:
    """The pads in an order where each one touches those before it: a PartDesign Body adds one
    feature at a time and refuses a pad that would leave two separate solids."""
    if len(pads) < 3:
        return pads
    from shapely.geometry import Polygon

    polys = []
    for run in pads:
        try:
            poly = Polygon(run.loop.points(8)).buffer(0)
        except Exception:
            poly = None
        polys.append(poly)

    def touches(i: int, j: int) -> bool:
        a, b = pads[i], pads[j]
        if a.z1 < b.z0 - 1e-9 or b.z1 < a.z0 - 1e-9 or polys[i] is None or polys[j] is None:
            return False
        overlap_z = min(a.z1, b.z1) - max(a.z0, b.z0)
        if overlap_z > 1e-9:
            return polys[i].intersects(polys[j])
        return polys[i].intersection(polys[j]).area > 1e-9

    order = [0]
    left = list(range(1, len(pads)))
    while left:
        nxt = next((j for j in left if any(touches(i, j) for i in order)), left[0])
        order.append(nxt)
        left.remove(nxt)
    return [pads[i] for i in order]


def prism_program(
    stack: Stack, num: Numbers, blend_ops=None, cones: list | None = None, cross: list | None = None
) -> Candidate:
    """The stack as a program; ``blend_ops(num, skip)`` gives the blend steps, ``cones`` the conical
    chamfers a hole may own as its countersink."""
    frame = stack.frame
    found_holes, rest = holes_mod.find_holes(stack)
    pads = [r for r in rest if not r.inner]
    cuts = [r for r in rest if r.inner]
    pads.sort(key=lambda r: (r.depth, -r.loop.area() * (r.z1 - r.z0)))
    pads = _connected_order(pads)
    prog = Program()
    features: list[str] = []
    base = pads[0] if pads else None
    done: set[int] = set()
    # extrusions in mirrored pairs: one of each drawn, then mirrored (``mirror``)
    mirrored = mirror_mod.split([r for r in pads if r.depth == 0], frame)
    if mirrored is not None and any(len(_equal_runs(r, pads, set())) > 2 for r in pads if r is not base):
        mirrored = None  # three or more equal extrusions read better as one pattern sketch
    if mirrored is not None:
        drawn = {id(r) for r in mirrored[1]}
        done |= {id(r) for r in pads if r.depth == 0 and id(r) not in drawn}
    for run in pads:
        if run.depth > 0 or id(run) in done:
            continue
        wp = workplane(frame, frame.world(0, 0, run.z0), num)
        what = "base" if run is base else "boss"
        equal = [] if run is base else _equal_runs(run, pads, done)
        if len(equal) > 1:
            # equal bosses on one height range: one sketch on all their points (a pattern in FreeCAD)
            done |= {id(r) for r in equal}
            prog.add(
                f"{len(equal)} equal bosses extruded {num(run.z1 - run.z0)} along {_axis_name(frame)}",
                f"{wp}{_points_code(equal, num)}{_shape_code(run.loop, num)}.extrude({num(run.z1 - run.z0)})",
            )
            features += ["pad", "pad pattern"]
            continue
        prog.add(
            f"{what}: a sketch extruded {num(run.z1 - run.z0)} along {_axis_name(frame)}",
            f"{wp}{loop_code(run.loop, num)}.extrude({num(run.z1 - run.z0)})",
        )
        features.append("pad")
    if mirrored is not None:
        plane = mirrored[0]
        prog.add(f"mirrored about the {plane} plane", f'.mirror("{plane}", union=True)', op="chain")
        features.append("mirror")
    for run in cuts:
        if run.depth > 0:
            continue
        wp = workplane(frame, frame.world(0, 0, run.z0), num)
        prog.add("pocket", f"{wp}{loop_code(run.loop, num)}.extrude({num(run.z1 - run.z0)})", op="cut")
        features.append("pocket")
    groups = holes_mod.group_holes(found_holes)
    csk = _countersinks(frame, groups, cones or [])
    used: set[int] = set()
    for gi, group in enumerate(groups):
        sink = csk.get(gi)
        prog.add(*_hole_step(frame, group, num, sink[0] if sink else None), op="chain")
        used |= {c.index for c in sink or []}
        h = group.holes[0]
        features.append("countersunk hole" if sink else "counterbored hole" if h.kind == "cbore" else "hole")
        if group.polar:
            features.append("polar pattern")
        elif len(group.holes) > 1:
            features.append("hole pattern")
    for run in pads + cuts:
        if run.depth == 0:
            continue
        wp = workplane(frame, frame.world(0, 0, run.z0), num)
        prog.add(
            "island" if not run.inner else "pocket in island",
            f"{wp}{loop_code(run.loop, num)}.extrude({num(run.z1 - run.z0)})",
            op="cut" if run.inner else "union",
        )
        features.append("pocket" if run.inner else "pad")
    features += _cross_hole_steps(prog, cross or [], num)
    if callable(blend_ops):
        blend_ops = blend_ops(num, frozenset(used))
    for op in blend_ops or []:
        prog.add("edge blend", op, op="chain")
        features.append("fillet" if ".fillet(" in op else "chamfer")
    if not prog.started:
        raise ValueError("no section")
    return Candidate(prog.text(), features, "prism")


def _axis_name(frame: Frame) -> str:
    for name, v in (("Z", (0, 0, 1)), ("X", (1, 0, 0)), ("Y", (0, 1, 0))):
        if abs(abs(float(np.dot(frame.normal, v))) - 1) < 1e-9:
            return name
    return "the part's axis"


def _hole_step(frame: Frame, group: holes_mod.HoleGroup, num: Numbers, sink=None) -> tuple[str, str]:
    h = group.holes[0]
    normal = frame.normal if h.from_top else -frame.normal
    hole_frame = frame_for(normal, frame.x_dir) if not h.from_top else frame
    if group.polar:
        (cx, cy), radius, start = group.polar
        wp = workplane(hole_frame, frame.world(cx, cy, h.start), num)
        where = f".polarArray({num(radius)}, {angle_text(start)}, 360, {len(group.holes)})"
    else:
        pts = []
        for hole in group.holes:
            x, y = hole_frame.local(frame.world(hole.center[0], hole.center[1], 0))
            pts.append(f"({num(x)}, {num(y)})")
        wp = workplane(hole_frame, frame.world(0, 0, h.start), num)
        where = f".pushPoints([{', '.join(pts)}])"
    (d, depth), *more = h.levels
    if more:
        d2, depth2 = more[0]
        op = f".cboreHole({num(d2)}, {num(d)}, {num(depth)}, {num(depth + depth2)})"
        what = "counterbored hole"
    elif sink is not None:
        op = f".cskHole({num(d)}, {num(sink.diameter)}, {angle_text(sink.angle)}, {num(depth)})"
        what = "countersunk hole"
    else:
        op = f".hole({num(d)}, {num(depth)})"
        what = "hole"
    n = len(group.holes)
    comment = f"{n} {what}s" if n > 1 else what
    if group.polar:
        comment += f" on a {num(2 * group.polar[1])} bolt circle"
    return comment, f".copyWorkplane({wp}){where}{op}"


def revolve_program(turned, num: Numbers, cross: list | None = None) -> Candidate:
    frame = turned.frame
    prog = Program()
    wp = workplane(frame, frame.origin, num)
    loops = sorted(turned.loops, key=lambda lp: -lp.area())
    features = ["revolve"] * len(loops)
    for i, loop in enumerate(loops):
        prog.add(
            "turned profile, revolved about the part's axis" if i == 0 else "",
            f"{wp}{loop_code(loop, num)}.revolve(360, (0, 0, 0), (0, 1, 0))",
        )
    features += _cross_hole_steps(prog, cross or [], num, across=False)
    return Candidate(prog.text(), features, "revolve")


def _cross_hole_steps(prog: Program, cross: list, num: Numbers, across: bool = True) -> list[str]:
    """Holes taken off by defeaturing, drilled again along their own axes; the feature names."""
    features: list[str] = []
    by_axis: dict[tuple, tuple] = {}
    for d, hole_frame, hole in cross:
        by_axis.setdefault(tuple(np.round(d, 6)), (hole_frame, []))[1].append(hole)
    for hole_frame, axis_holes in by_axis.values():
        for group in holes_mod.group_holes(axis_holes):
            comment, expr = _hole_step(hole_frame, group, num)
            if across:
                comment += f" across, along {_axis_name(hole_frame)}"
            prog.add(comment, expr, op="chain")
            features.append("counterbored hole" if group.holes[0].kind == "cbore" else "hole")
            if group.polar:
                features.append("polar pattern")
            elif len(group.holes) > 1:
                features.append("hole pattern")
    return features


def _drilled_turned_part(target: Any, graph: FaceGraph, fit_tol: float):
    """A turned part with drilled holes (a flange): the holes off by defeaturing, the rest one
    revolve, the holes back as hole steps. (Turned, cross holes) or None."""
    from model_runtime.shapes.graph import CYLINDER, parallel

    bb = target.BoundingBox()
    size = max(bb.xlen, bb.ylen, bb.zlen)
    round_faces = [f for f in graph.faces if f.kind in ("cylinder", "cone", "torus")]
    if not round_faces:
        return None
    main = max(round_faces, key=lambda f: f.area)
    a, d = main.location, main.axis / np.linalg.norm(main.axis)

    def coaxial(f) -> bool:
        v = f.location - a
        return parallel(f.axis, d, 1e-6) and np.linalg.norm(v - np.dot(v, d) * d) < 1e-5 * max(1.0, size)

    drilled = [
        f for f in graph.faces
        if f.kind == CYLINDER and not coaxial(f) and f.radius < 0.25 * size and blends._concave(f)
    ]  # fmt: skip
    if not drilled:
        return None
    ids = {f.index for f in drilled}
    for f in graph.faces:  # a counterbore's floor: a plane that only the hole's faces surround
        if f.kind == "plane" and f.index not in ids and f.neighbours and f.neighbours <= ids:
            ids.add(f.index)
    faces = [graph.faces[i].face for i in sorted(ids)]
    if len(faces) > 120 or sum(f.Area() for f in faces) > 0.5 * graph.area:
        return None
    sharp = blends.defeature(target, faces)
    if sharp is None:
        return None
    axis = turning_axis(build_graph(sharp))
    if axis is None:
        return None
    turned = half_section(sharp, axis[0], axis[1], fit_tol)
    if turned is None:
        return None
    try:
        cross = blends.cross_holes(graph, faces)
    except Exception:
        return None
    return turned, cross


def _loft_candidates(
    target: Any, graph: FaceGraph, fit_tol: float, level_tol: float, snap: float, unit: float
):
    """Extrusions and lofts along the best axes whose sections change (``loft``)."""
    from model_runtime.shapes import loft

    axes = [
        d for d in axis_candidates(graph)
        if loft.worth_trying(graph, d) and loft.loft_axis(target, graph, d, level_tol)
    ]  # fmt: skip
    for d in axes[:2]:
        frame = Frame((0, 0, 0), d, x_direction(graph, d))
        for s in (snap, 0.0):
            try:
                text, features = loft.loft_program(target, graph, frame, Numbers(s, unit), fit_tol, level_tol)
            except Exception:
                break
            yield Candidate(text, features, "loft", defeatured=True)


def _mostly_turned(target: Any, graph: FaceGraph, fit_tol: float):
    """A part most of whose area turns about one axis: the revolve under its local features."""
    bb = target.BoundingBox()
    size = max(bb.xlen, bb.ylen, bb.zlen)
    found = dominant_axis(graph, size)
    if found is None:
        return None
    a, d, share = found
    if share < MOSTLY_TURNED:
        return None
    return turned_core(target, a, d, fit_tol)


def _one_valid_solid(program: str) -> Any:
    """The program's solid; ValueError unless it is one valid solid (what the sandbox accepts)."""
    solid = run_program(program)
    if len(solid.Solids()) != 1 or not solid.isValid() or not solid.Volume() > 0:
        raise ValueError("not one valid solid")
    return solid


def _evaluate(cand: Candidate, target: Any) -> Candidate:
    try:
        cand.solid = _one_valid_solid(cand.program)
        cand.iou = volume_iou(target, cand.solid)
    except Exception:
        cand.solid, cand.iou = None, 0.0
    return cand


def candidates(
    target: Any,
    graph: FaceGraph,
    *,
    fit_tol: float,
    level_tol: float,
    snap: float,
    unit: float = 1.0,
    deadline: float = 1e18,
    careful: bool = False,
):
    """Programs to try, best guess first (a generator, so a caller can stop at an exact one)."""
    axis = turning_axis(graph)
    drilled = None
    if axis is not None:
        turned = half_section(target, axis[0], axis[1], fit_tol)
        if turned is None and target.isValid():  # a section through free-form seams can fail
            turned = turned_core(target, axis[0], axis[1], fit_tol, n=4)
        if turned is not None:
            for s in (snap, 0.0):
                yield revolve_program(turned, Numbers(s, unit))
    else:
        try:
            drilled = _drilled_turned_part(target, graph, fit_tol)
        except Exception:
            drilled = None
        if drilled is not None:
            for s in (snap, 0.0):
                yield revolve_program(drilled[0], Numbers(s, unit), drilled[1])
    turned_share = 0.0
    if axis is None and drilled is None:
        bb = target.BoundingBox()
        found = dominant_axis(graph, max(bb.xlen, bb.ylen, bb.zlen))
        turned_share = found[2] if found is not None else 0.0

    def cores():
        core = _mostly_turned(target, graph, fit_tol) if turned_share >= MOSTLY_TURNED else None
        if core is not None:
            for s in (snap, 0.0):
                cand = revolve_program(core, Numbers(s, unit))
                cand.defeatured = True  # exact only with its residual: always given one
                yield cand

    # a part that turns almost all over is tried as a revolve first; one that only partly turns
    # after the best extrusion, which a plate or a bracket with round ends usually is
    if turned_share >= 0.75:
        yield from cores()
    yield from _loft_candidates(target, graph, fit_tol, level_tol, snap, unit)
    for i, d in enumerate(axis_candidates(graph)[:3]):
        if i == 1 and turned_share < 0.75:
            yield from cores()
        if time.monotonic() > deadline:
            return
        frame = Frame((0, 0, 0), d, x_direction(graph, d))
        work = target
        ops_fn, cones, cross = None, [], []
        sharp = blends.remove_blends(target, graph, frame.normal)
        if sharp is not None:
            work, ops_fn, cones, cross = sharp
            if careful:
                ops_fn = None
        try:
            stack = slice_stack(
                work,
                graph if work is target else build_graph(work),
                frame,
                fit_tol=fit_tol,
                level_tol=level_tol,
            )
        except Exception:
            continue
        for s in (snap, 0.0):
            num = Numbers(s, unit)
            try:
                cand = prism_program(stack, num, ops_fn, cones, cross)
                cand.defeatured = sharp is not None
                yield cand
            except Exception:
                continue
            if sharp is not None:
                try:
                    cand = prism_program(stack, num)  # without the blends, if they fail
                    cand.defeatured = True
                    yield cand
                except Exception:
                    pass
        if sharp is not None:  # the solid as it is, nothing taken off
            try:
                plain = slice_stack(target, graph, frame, fit_tol=fit_tol, level_tol=level_tol)
                yield prism_program(plain, Numbers(snap, unit))
            except Exception:
                pass


def _recognise_mesh(loaded: Loaded, started: float, time_budget_s: float) -> Recognition:
    from model_runtime.shapes.mesh_recognise import recognise_mesh

    return recognise_mesh(loaded, started, time_budget_s)


def recognise(loaded: Loaded, *, time_budget_s: float = 60.0, careful: bool = False) -> Recognition:
    """The best program for ``loaded``; ``careful`` leaves out trial edge blends (OCC fillets can
    crash the process on odd edges: the job runs once more with it after a crash)."""
    started = time.monotonic()
    if loaded.kind == "mesh":
        return _recognise_mesh(loaded, started, time_budget_s)
    target = loaded.shape
    graph = build_graph(target)
    mesh = loaded.kind == "mesh"
    bb = target.BoundingBox()
    size = max(bb.xlen, bb.ylen, bb.zlen)
    fit_tol = 0.05 if mesh else 1e-4 * max(size, 1.0) * 1e-2
    snap = 0.05 if mesh else 1e-6 * max(size, 1.0)
    level_tol = 0.02 if mesh else 1e-6 * max(size, 1.0)
    unit = 25.4 if loaded.unit == "in" else 1.0
    deadline = started + time_budget_s
    tried: list[Candidate] = []
    seen: set[str] = set()
    from model_runtime.shapes.prism import DEADLINE, OutOfTime

    DEADLINE[0] = deadline
    try:
        for cand in candidates(
            target, graph, fit_tol=fit_tol, level_tol=level_tol, snap=snap, unit=unit, deadline=deadline,
            careful=careful,
        ):  # fmt: skip
            if cand.program in seen:
                continue
            seen.add(cand.program)
            _evaluate(cand, target)
            if (
                cand.solid is not None and cand.strategy == "revolve" and cand.defeatured
                and 0.7 <= cand.iou < EXACT
            ):  # fmt: skip
                # a turned core: its local features (flats, keyways, slots) come back as residual now,
                # so an exact turned part does not wait for every extrusion to be tried
                from model_runtime.shapes import residual

                cand = residual.add_residual(cand, target, Numbers(0.0, unit), _evaluate, fit_tol, level_tol)
            if cand.solid is not None:
                tried.append(cand)
            if cand.iou >= EXACT or time.monotonic() > deadline:
                break
    except OutOfTime:
        pass
    if not tried:
        # the budget went on strategies that gave nothing (a slow defeaturing): the plain extrusion
        # along the best axis still gets half a budget more, so a slow machine does not mean no answer
        DEADLINE[0] = time.monotonic() + 0.5 * time_budget_s
        try:
            d = axis_candidates(graph)[0]
            frame = Frame((0, 0, 0), d, x_direction(graph, d))
            stack = slice_stack(target, graph, frame, fit_tol=fit_tol, level_tol=level_tol)
            cand = _evaluate(prism_program(stack, Numbers(snap, unit)), target)
            if cand.solid is not None:
                tried.append(cand)
        except Exception:
            pass
        deadline = DEADLINE[0]
    if not tried:
        raise ValueError("no recogniser could rebuild this shape")
    tried.sort(key=lambda c: -c.iou)
    best = tried[0]
    if best.iou < EXACT:
        from model_runtime.shapes import residual

        # A stack with cross features taken off is exact only with them back: each of the best
        # few gets its residual before the choice.
        finished = []
        # the best few as they are, and those with cross features taken off (exact only with them back)
        pool = tried[:2] + [c for c in tried[2:] if c.defeatured][:2]
        for cand in pool:
            if time.monotonic() > deadline and finished:
                break
            finished.append(
                residual.add_residual(cand, target, Numbers(0.0, unit), _evaluate, fit_tol, level_tol)
            )
        # exact first; then, among those about as close as the closest, the program with the fewest
        # plain residual pieces and features
        top = max(c.iou for c in finished)
        best = max(
            finished,
            key=lambda c: (
                c.iou >= EXACT, c.iou >= top - 1e-3, -c.features.count("residual"), -len(c.features), c.iou
            ),
        )  # fmt: skip
    notes = list(loaded.notes)
    header = [f"Rebuilt by CadSnap from a {'mesh' if mesh else 'B-rep'}: {_count(best.features)}."]
    if loaded.unit == "in":
        header[0] += " The file is in inches: the numbers below are millimetres, the named dimensions inches."
    program = best.program.replace(
        "import cadquery as cq\n", "import cadquery as cq\n\n# " + header[0] + "\n", 1
    )
    return Recognition(
        program=program,
        iou=best.iou,
        bbox_iou=bbox_iou(target),
        features=best.features,
        notes=notes,
        strategy=best.strategy,
        seconds=time.monotonic() - started,
        input_volume=target.Volume(),
        output_volume=best.solid.Volume(),
        solid=best.solid,
    )
