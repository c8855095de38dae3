"""Structural edits: features the picture shows and the best program lacks, tried by rendering.

Each edit appends a few readable CadQuery lines to the best program (a hole through the middle, a
bolt pattern, rounded edges, a bore along the long axis, a boss or four posts on top, an open top
where the edge lines show one; a slot, step, shoulder or ribs where the picture draws lines
inside its outline that the best's render does not), sized from the part's bounding box, with its
sizes named on lines of their own so the search can fit them. An edit is kept only when the render
looks more like the picture (``Search`` keeps the best); the edit that helped by ``EDIT_MARGIN`` is
then fitted. A hollow or a boss on a face looking away from the camera is dropped when the part
without it scores as well: the picture cannot show it. What a user's instruction states (a hole
count, a diameter) picks the edits and their sizes first.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import numpy as np

AXES = "XYZ"
# An edit must beat the best by this much. On eval_oof, edits that gained less were noise: holes
# and bores that gained 0.001-0.005 lost up to 0.3 IoU, a wrong shell gained 0.01 and lost 0.2;
# the right shells, bosses and posts gained 0.02-0.07.
EDIT_MARGIN = 0.02
# An edit that scored within NEAR_MISS below the best gets its sizes fitted (NEAR_MISS_FIT evaluations
# each, the NEAR_MISSES closest) before it is judged against EDIT_MARGIN.
NEAR_MISS = 0.03
NEAR_MISSES = 2
NEAR_MISS_FIT = 6
DRAWN = "drawn_"  # the edits read from the picture's own lines (``drawn_edits``)
# edits also tried on the plain envelopes
STRUCTURAL = ("centre_boss", "centre_hub", "corner_posts", "drawn_z", "drawn_x", "drawn_y", "drawn_hub_z")
SAME_HOLE = 1.3  # drawn circles whose diameters differ by less than this factor are one hole size
POCKET_DEPTH = 0.3  # a drawn pocket's first depth, as a share of the part along the face's normal (fitted)


def _fmt(value: float) -> str:
    text = f"{value:.2f}".rstrip("0").rstrip(".")
    return text or "0"


def _sizes(exec_result: Any) -> tuple[float, float, float]:
    b = exec_result.bbox
    return b[3] - b[0], b[4] - b[1], b[5] - b[2]


def open_top_edit(best: Any, wall_share: float) -> tuple[str, str]:
    """Hollow ``best`` from its top face, walls ``wall_share`` of its plan size (``lines.open_top``)."""
    sizes = _sizes(best.exec_result)
    wall = max(wall_share * (sizes[0] + sizes[1]), 0.01 * max(sizes))
    return ("open_top", "\n# edit: an open top (the picture shows its rim)\n"
            f"wall_thickness = {_fmt(wall)}\nresult = result.faces(\">Z\").shell(-wall_thickness)\n")


def drawn_edits(best: Any, drawing: Any, known_diameter: float | None = None) -> list[tuple[str, str]]:
    """The edits the picture's drawing asks for (``lines.drawn_features``): per visible face, holes
    where it draws circles and slots where it draws slots, at the picture's positions, through ``best``.

    Pixels become model units by matching the picture's part box with ``best``'s own projected
    outline; a feature's centre is where the line of sight through it meets ``best`` on a face that
    looks the feature's way (a flange's bolt holes under its hub), else on the bounding box's side.
    Each size gets named numbers (fitted later); the positions stay as the picture puts them."""
    from model_runtime.picture.envelope import project
    from model_runtime.picture.lines import VISIBLE_FACES

    if drawing is None or not (drawing.circles or drawing.slots):
        return []
    shape = best.exec_result.shape()
    b = best.exec_result.bbox
    vertices, _ = shape.tessellate(0.005 * max(_sizes(best.exec_result)))
    uv = project(np.array([v.toTuple() for v in vertices]))
    (u0, v0), (u1, v1) = uv.min(axis=0), uv.max(axis=0)
    x0, y0, x1, y1 = drawing.frame
    su, sv = (u1 - u0) / max(x1 - x0, 1), (v1 - v0) / max(y1 - y0, 1)
    scale = (su + sv) / 2
    low, high = dict(zip(AXES, b[:3], strict=True)), dict(zip(AXES, b[3:], strict=True))
    sides = {face: (high if sum(n) > 0 else low)[face] for face, n in _FACE_NORMALS.items()}

    def placed(feature: Any, seen_only: bool = False) -> tuple[float, float] | None:
        """The feature's centre in its face's workplane coordinates, None off the part (or, with
        ``seen_only``, where ``best`` shows no face looking the feature's way there: a hole already)."""
        u, v = u0 + (feature.x + 0.5 - x0) * su, v0 + (feature.y + 0.5 - y0) * sv
        point = _seen_point(shape, u, v, feature.face)
        if point is None and seen_only:
            return None
        point = point or _on_plane(u, v, feature.face, sides[feature.face])
        axes = VISIBLE_FACES[feature.face]
        if all(low[k] < point[k] < high[k] for k in axes):
            return point[axes[0]], point[axes[1]]
        return None

    out = []
    for face in VISIBLE_FACES:  # one edit a face: what one drawing shows is judged together
        holes = [(at, known_diameter or c.diameter * scale)
                 for c in drawing.circles if c.face == face and (at := placed(c)) is not None]
        slots = [(at, s.length * scale, s.width * scale, s.along, s.rounded, s.through)
                 for s in drawing.slots if s.face == face and (at := placed(s)) is not None]
        if holes or slots:
            depth = POCKET_DEPTH * (high[face] - low[face])
            lines = _holes_lines(face, holes) + _slots_lines(face, slots, depth)
            out.append((f"{DRAWN}{face.lower()}", lines))
    # the largest circle on top may be the bore of a hub the base lacks: not where the base has a
    # bore there already (a link's boss, bored: a second hub stood on it, 0.64 -> 0.17 IoU)
    largest = max((c for c in drawing.circles if c.face == "Z"), key=lambda c: c.diameter, default=None)
    at = placed(largest, seen_only=True) if largest is not None else None
    if at is not None:
        out.append((f"{DRAWN}hub_z", _hub_lines(at, largest.diameter * scale, high["Z"] - low["Z"])))
    return out


def _hub_lines(at: tuple[float, float], bore: float, height: float) -> str:
    """A bored hub standing on the top face under the largest drawn circle: the circle is the hub's
    top rim, seen ``hub_height`` higher than the face, so its centre moves with the height (one unit
    of height is one unit along +X and -Y under FreeCAD's isometric camera)."""
    return ("\n# edit: a bored hub under the largest circle the picture shows on the top face\n"
            f"hub_height = {_fmt(height)}\nhub_diameter = {_fmt(1.6 * bore)}\nbore_diameter = {_fmt(bore)}\n"
            f"{_on_face('Z')}.center({_fmt(at[0])} + hub_height, {_fmt(at[1])} - hub_height)"
            ".circle(hub_diameter / 2).extrude(hub_height)\n"
            f"{_on_face('Z')}.center({_fmt(at[0])} + hub_height, {_fmt(at[1])} - hub_height)"
            ".hole(bore_diameter)\n")


def _on_face(face: str) -> str:
    # the model origin projected onto the face: points are in the model's own coordinates
    return (f'result = result.faces("{_FACE_SELECTORS[face]}")'
            '.workplane(centerOption="ProjectedOrigin", origin=(0, 0, 0))')


def _points(placed: list[tuple[float, float]]) -> str:
    """The centres row by row, as CadQuery's pushPoints takes them."""
    return ", ".join(f"({_fmt(x)}, {_fmt(y)})" for x, y in sorted(placed, key=lambda p: p[::-1]))


def _size_groups(items: list, size: Callable[[Any], float]) -> list[list]:
    """``items`` grouped by size: within a group each is under ``SAME_HOLE`` times the smallest."""
    groups: list[list] = []
    for item in sorted(items, key=size):
        if groups and size(item) < SAME_HOLE * size(groups[-1][0]):
            groups[-1].append(item)
        else:
            groups.append([item])
    return groups


def _suffix(k: int) -> str:
    return "" if k == 0 else f"_{k + 1}"


def _holes_lines(face: str, holes: list[tuple[tuple[float, float], float]]) -> str:
    if not holes:
        return ""
    lines = f"\n# edit: the holes the picture shows on the {_FACE_WORDS[face]}\n"
    for k, group in enumerate(_size_groups(holes, lambda h: h[1])):
        name = "hole_diameter" + _suffix(k)
        lines += (f"{name} = {_fmt(float(np.median([h[1] for h in group])))}\n"
                  f"{_on_face(face)}.pushPoints([{_points([h[0] for h in group])}]).hole({name})\n")
    return lines


def _slots_lines(face: str, slots: list[tuple], depth: float) -> str:
    """Slots cut through, windows (square ends, the backdrop seen through them) cut through, pockets
    (square ends, a floor) cut ``depth`` deep: each kind and size with its named numbers."""
    if not slots:
        return ""
    lines = f"\n# edit: the slots and pockets the picture shows on the {_FACE_WORDS[face]}\n"
    kinds = (("slot", True, None), ("window", False, True), ("pocket", False, False))
    for kind, rounded, through in kinds:
        mine = [s for s in slots if s[4] == rounded and (through is None or s[5] == through)]
        groups = [g for along in (0, 90)
                  for g in _size_groups([s for s in mine if s[3] == along], lambda s: s[1])]
        for k, group in enumerate(groups):
            length, width = f"{kind}_length{_suffix(k)}", f"{kind}_width{_suffix(k)}"
            lines += (f"{length} = {_fmt(float(np.median([s[1] for s in group])))}\n"
                      f"{width} = {_fmt(float(np.median([s[2] for s in group])))}\n")
            sketch = (f".slot2D({length}, {width}, {group[0][3]})" if rounded
                      else f".rect({length}, {width})" if group[0][3] == 0 else f".rect({width}, {length})")
            cut = ".cutThruAll()"
            if kind == "pocket":
                name = "pocket_depth" + _suffix(k)
                lines += f"{name} = {_fmt(depth)}\n"
                cut = f".cutBlind(-{name})"
            lines += f"{_on_face(face)}.pushPoints([{_points([s[0] for s in group])}]){sketch}{cut}\n"
    return lines


def _sight_line(u: float, v: float) -> tuple[tuple[float, float, float], tuple[float, float, float]]:
    """A point and the direction towards the camera of the line of sight through (u, v): the
    isometric projection is u = (X + Y) / sqrt2, v = (X - Y - 2 Z) / sqrt6, and (1, -1, 1) keeps both."""
    from model_runtime.picture.envelope import SQ2, SQ6

    return ((SQ2 * u + SQ6 * v) / 2, (SQ2 * u - SQ6 * v) / 2, 0.0), (1.0, -1.0, 1.0)


# the visible faces' outward normals (``lines.VISIBLE_FACES``): >Z, >X, <Y
_FACE_NORMALS = {"Z": (0.0, 0.0, 1.0), "X": (1.0, 0.0, 0.0), "Y": (0.0, -1.0, 0.0)}


def _seen_point(shape: Any, u: float, v: float, face: str) -> dict[str, float] | None:
    """The point of ``shape`` the camera sees at (u, v), when the face there looks ``face``'s way."""
    import cadquery as cq
    from OCP.BRepIntCurveSurface import BRepIntCurveSurface_Inter
    from OCP.gp import gp_Dir, gp_Lin, gp_Pnt

    origin, towards = _sight_line(u, v)
    hits = BRepIntCurveSurface_Inter()
    hits.Init(shape.wrapped, gp_Lin(gp_Pnt(*origin), gp_Dir(*towards)), 1e-7)
    nearest = None
    while hits.More():
        if nearest is None or hits.W() > nearest[0]:
            nearest = (hits.W(), hits.Pnt(), hits.Face())
        hits.Next()
    if nearest is None:
        return None
    at = cq.Vector(nearest[1].X(), nearest[1].Y(), nearest[1].Z())
    try:
        normal = cq.Face(nearest[2]).normalAt(at)
    except Exception:  # noqa: BLE001 - OCC cannot evaluate a degenerate face there: use the plane
        return None
    if normal.dot(cq.Vector(*_FACE_NORMALS[face])) < 0.99:
        return None
    return dict(zip(AXES, at.toTuple(), strict=True))


def _on_plane(u: float, v: float, face: str, side: float) -> dict[str, float]:
    """Where the line of sight through (u, v) crosses the plane ``face`` = ``side``."""
    origin, towards = _sight_line(u, v)
    k = AXES.index(face)
    t = (side - origin[k]) / towards[k]
    return {axis: origin[i] + t * towards[i] for i, axis in enumerate(AXES)}


_FACE_WORDS = {"Z": "top face", "X": "right face", "Y": "front face"}
_FACE_SELECTORS = {face: (">" if sum(n) > 0 else "<") + face for face, n in _FACE_NORMALS.items()}


def candidates(best: Any, constraints: Any = None, round_part: bool = False,
               drawing: Any = None) -> list[tuple[str, str]]:
    """(name, lines to append) for the edits worth trying on ``best`` (a search ``Scored``);
    ``drawing``: the circles and slots the picture draws (``lines.drawn_features``), tried first."""
    sizes = _sizes(best.exec_result)
    thin = min(range(3), key=lambda i: sizes[i])
    long = max(range(3), key=lambda i: sizes[i])
    out: list[tuple[str, str]] = []

    def face(axis: int) -> str:
        return f'">{AXES[axis]}"'

    def others(axis: int) -> list[float]:
        return [sizes[i] for i in range(3) if i != axis]

    count = getattr(constraints, "hole_count", None)
    # a known absolute diameter becomes a share of the part when its overall size is known too
    known_d = None
    if getattr(constraints, "hole_diameter_mm", None) and getattr(constraints, "largest_mm", None):
        known_d = constraints.hole_diameter_mm * max(sizes) / constraints.largest_mm
    small = min(others(thin))
    d_centre = known_d or 0.35 * small
    d_bolt = known_d or 0.12 * small
    header = "\n# edit: {what}\n"
    centre_hole = (
        "centre_hole",
        header.format(what="a hole through the middle")
        + f"hole_diameter = {_fmt(d_centre)}\n"
        + f"result = result.faces({face(thin)}).workplane(centerOption=\"CenterOfBoundBox\")"
        ".hole(hole_diameter)\n",
    )
    a, b = others(thin)
    corner_holes = (
        "corner_holes",
        header.format(what="four holes near the corners")
        + f"hole_diameter = {_fmt(d_bolt)}\n"
        + f"hole_spacing_a = {_fmt(0.7 * a)}\nhole_spacing_b = {_fmt(0.7 * b)}\n"
        + f"result = result.faces({face(thin)}).workplane(centerOption=\"CenterOfBoundBox\")"
        ".rect(hole_spacing_a, hole_spacing_b, forConstruction=True).vertices().hole(hole_diameter)\n",
    )
    n_polar = count or 4
    polar_holes = (
        "bolt_circle",
        header.format(what=f"{n_polar} holes on a bolt circle")
        + f"hole_diameter = {_fmt(d_bolt)}\nbolt_circle_radius = {_fmt(0.36 * small)}\n"
        + f"result = result.faces({face(thin)}).workplane(centerOption=\"CenterOfBoundBox\")"
        f".polarArray(bolt_circle_radius, 0, 360, {n_polar}).hole(hole_diameter)\n",
    )
    two_holes = (
        "two_holes",
        header.format(what="two holes along the length")
        + f"hole_diameter = {_fmt(d_bolt * 1.3)}\nhole_spacing = {_fmt(0.7 * max(a, b))}\n"
        + f"result = result.faces({face(thin)}).workplane(centerOption=\"CenterOfBoundBox\")"
        f".rarray({'hole_spacing, 1, 2, 1' if a >= b else '1, hole_spacing, 1, 2'}).hole(hole_diameter)\n",
    )
    bore = (
        "long_bore",
        header.format(what="a bore along the part")
        + f"bore_diameter = {_fmt(0.5 * min(others(long)))}\n"
        + f"result = result.faces({face(long)}).workplane(centerOption=\"CenterOfBoundBox\")"
        ".hole(bore_diameter)\n",
    )
    top = (f'result = result.faces({face(thin)}).workplane(centerOption="CenterOfBoundBox")')
    boss = (  # a hub on a flange, a boss on a plate: it rises from the thin side's top face
        "centre_boss",
        header.format(what="a round boss on top")
        + f"boss_diameter = {_fmt(0.5 * small)}\nboss_height = {_fmt(sizes[thin])}\n"
        + f"{top}.circle(boss_diameter / 2).extrude(boss_height)\n",
    )
    hub = (  # a boss bored through with the part under it: a hub, a bearing seat, a spacer on a plate
        "centre_hub",
        header.format(what="a round boss on top, bored through")
        + f"boss_diameter = {_fmt(0.5 * small)}\nboss_height = {_fmt(sizes[thin])}\n"
        + f"bore_diameter = {_fmt(0.25 * small)}\n"
        + f"{top}.circle(boss_diameter / 2).extrude(boss_height)\n"
        + f"{top}.hole(bore_diameter)\n",
    )
    posts = (  # standoffs, feet, pillars near the corners of a plate
        "corner_posts",
        header.format(what="four posts near the corners")
        + f"post_diameter = {_fmt(0.1 * small)}\npost_height = {_fmt(2 * sizes[thin])}\n"
        + f"post_spacing_a = {_fmt(0.6 * a)}\npost_spacing_b = {_fmt(0.6 * b)}\n"
        + f"{top}.rect(post_spacing_a, post_spacing_b, forConstruction=True).vertices()"
        ".circle(post_diameter / 2).extrude(post_height)\n",
    )
    fillet = (
        "round_edges",
        header.format(what="rounded edges")
        + f"edge_radius = {_fmt(0.12 * small)}\n"
        + f"result = result.edges(\"|{AXES[thin]}\").fillet(edge_radius)\n",
    )
    lines = _line_edits(sizes, thin, long, header)
    out += drawn_edits(best, drawing, known_d)
    if count == 1:
        out.append(centre_hole)
    elif count == 2:
        out.append(two_holes)
    elif count == 4 and not round_part:
        out.append(corner_holes)
    elif count:
        out.append(polar_holes)
    pattern = polar_holes if round_part else corner_holes
    # No shell here: from outside a hollow part looks like a solid one, and a wrong shell costs most
    # of the volume (3 parts of training/eval_oof fell from 0.4-0.9 IoU to under 0.1). A shell is
    # tried only where the edge lines show an open top (``open_top_edit``).
    # where the picture draws its circles, holes guessed from the bounding box only spend the budget
    # (a plate's corner posts went untried behind them: 0.69 -> 0.01 IoU)
    guessed = () if drawing is not None and drawing.circles else (centre_hole, pattern, two_holes)
    for edit in (*guessed[:2], bore, fillet, *guessed[2:], boss, hub, posts):
        if edit not in out:
            out.append(edit)
    return out + lines


# tried where the lines show them; no pocket: on the dev half it won only where the part had none
# (keycap -0.06, pipe_tee -0.01 IoU): its floor hides under the rim from this camera
LINE_EDITS = ("slot", "step", "shoulder", "ribs")


def _line_edits(
    sizes: tuple[float, float, float], thin: int, long: int, header: str
) -> list[tuple[str, str]]:
    """Edits whose lines are drawn inside the outline: a slot through the top face, a step or a
    shoulder across the sides, ribs on top."""
    a_axis, b_axis = (i for i in range(3) if i != thin)
    a, b, t = sizes[a_axis], sizes[b_axis], sizes[thin]
    along_a = a >= b
    top = f'result = result.faces(">{AXES[thin]}").workplane(centerOption="CenterOfBoundBox")'
    x, y, z = sizes
    slot = ("slot", header.format(what="a slot through the part")
            + f"slot_length = {_fmt(0.6 * max(a, b))}\nslot_width = {_fmt(0.15 * min(a, b))}\n"
            + f"{top}.slot2D(slot_length, slot_width, {0 if along_a else 90}).cutThruAll()\n")
    # steps are seen as lines across the side faces, level with the top: they run along Z
    step = ("step", header.format(what="a step down at one end of the top")
            + f"step_length = {_fmt(0.4 * x)}\nstep_depth = {_fmt(0.5 * z)}\n"
            + 'result = result.faces(">Z").workplane(centerOption="CenterOfBoundBox")'
            + f".center({_fmt(x / 2)} - step_length / 2, 0).rect(step_length, {_fmt(y + 1)})"
            ".cutBlind(-step_depth)\n")
    shoulder = ("shoulder", header.format(what="a narrower lower part (a shoulder under the top)")
                + f"shoulder_width = {_fmt(0.1 * min(x, y))}\nlower_height = {_fmt(0.7 * z)}\n"
                + 'result = result.faces("<Z").workplane(centerOption="CenterOfBoundBox")'
                + f".rect({_fmt(2 * x)}, {_fmt(2 * y)})"
                + f".rect({_fmt(x)} - 2 * shoulder_width, {_fmt(y)} - 2 * shoulder_width)"
                ".cutBlind(-lower_height)\n")
    spacing = 0.3 * max(a, b)
    ribs = ("ribs", header.format(what="three ribs on top")
            + f"rib_spacing = {_fmt(spacing)}\nrib_thickness = {_fmt(0.05 * max(a, b))}\n"
            + f"rib_height = {_fmt(1.5 * t)}\n"
            + f"{top}.rarray({'rib_spacing, 1, 3, 1' if along_a else '1, rib_spacing, 1, 3'})"
            + f".rect({'rib_thickness, ' + _fmt(b) if along_a else _fmt(a) + ', rib_thickness'})"
            ".extrude(rib_height)\n")
    return [slot, step, shoulder, ribs]


def improve(search: Any, picture: Any, constraints: Any = None) -> None:
    """Try the edits on the search's best; fit the sizes of one that helps; repeat while it pays."""
    from model_runtime.picture.envelope import ROUND_FIT, roundness
    from model_runtime.picture.lines import drawn_features, open_top
    from model_runtime.picture.search import FIT_ENVELOPES

    round_part = max(roundness(picture).values(), default=0.0) >= ROUND_FIT
    drawing = drawn_features(picture)
    _drop_hidden_features(search)
    wall_share = open_top(picture)
    tried: set[str] = set()
    again: set[str] = set()  # edits that helped but lost to another: tried again on top of the winner
    made: dict[str, list[tuple[str, str]]] = {}  # a base's edits, made once (the envelopes recur)

    def edits_for(base: Any) -> list[tuple[str, str]]:
        if base.code not in made:
            made[base.code] = candidates(base, constraints, round_part, drawing)
        return made[base.code]

    for _ in range(2):  # at most two features stacked
        best = search.best
        if best is None or search.out_of_budget():
            return
        edits = _ordered(edits_for(best), _line_evidence(search, best))
        options = [(best, name, lines) for name, lines in edits if name not in tried or name in again]
        # what changes the part's make-up is tried on the plain envelopes too: a model's program may
        # have no single top face, or be further from the part than the envelope it outscored
        envelopes = [p for p in _plain_envelopes(search.items) if p is not best]
        options += [(base, name, lines) for base in envelopes
                    for name, lines in edits_for(base)
                    if name in STRUCTURAL and name not in tried]
        if wall_share is not None and "open_top" not in tried:
            options = [(base, *open_top_edit(base, wall_share)) for base in [best, *envelopes]] + options
        if not options:
            return
        start_score = best.score
        found = search.evaluate_many([
            (base.code.rstrip("\n") + "\n" + lines, f"{base.source}+{name}", {"named_only": True})
            for base, name, lines in options
        ])
        tried.update(name for _, name, _ in options)
        helped = [f for f in found if f is not None and f.score > start_score + EDIT_MARGIN]
        if not helped:  # a near miss fitted to its sizes is already the best when it helped
            if _fit_near_misses(search, options, found, start_score):
                continue
            return
        winner = max(helped, key=lambda f: f.score)
        winner.faces = winner.exec_result.n_faces
        base, won = next((b, name) for b, name, _ in options if winner.source == f"{b.source}+{name}")
        # a plate's drawn holes and its posts both helped: the posts go on top of the holes next
        again = {name for (_, name, _), f in zip(options, found, strict=True)
                 if any(f is h for h in helped) and name != won}
        if not FIT_ENVELOPES and base.source.startswith("envelope"):
            winner.fit_from = len(base.code.rstrip("\n"))  # the envelope's numbers stay as read
        search.fit_numbers(winner, max(4, search.left() // 2))


def _fit_near_misses(search: Any, options: list, found: list, start_score: float) -> list[Any]:
    """An edit is tried at sizes guessed from the bounding box; one that came close to the best is
    judged again with its own sizes fitted (its base's numbers stay): a boss of the wrong height
    loses to a plate it would beat at the right one."""
    # each found program beside the base it was made from (a repeat comes back under its first source)
    near = sorted(((f, base) for f, (base, _, _) in zip(found, options, strict=True)
                   if f is not None and f.score > start_score - NEAR_MISS and _changes(f, base)),
                  key=lambda pair: -pair[0].score)[:NEAR_MISSES]
    helped = []
    for item, base in near:
        if search.out_of_budget():
            break
        item.fit_from = len(base.code.rstrip("\n"))
        fitted = search.fit_numbers(item, NEAR_MISS_FIT)
        if fitted.score > start_score + EDIT_MARGIN:
            helped.append(fitted)
    return helped


def _changes(item: Any, base: Any) -> bool:
    """Whether an edit changed its base's solid: a hole inside a bore that is already there does not,
    and fitting its sizes would spend the near-miss evaluations on nothing."""
    a, b = item.exec_result, base.exec_result
    return a.n_faces != b.n_faces or abs(a.volume - b.volume) > 1e-6 * max(abs(b.volume), 1e-9)


# Features on the faces that look away from FreeCAD's isometric camera (-Z, +Y, -X): the picture cannot
# show them, and a guess there costs volume IoU the picture cannot pay back.
# - A hollow opening that way: a wall placed a little off overlaps nothing (tube_end_cap: a model's
#   plate hollowed from below scored 0.597 on the picture, 0.018 IoU; its box floor is 0.357).
# - A boss under the part, hidden by it: it moves the bounding box the IoU centres on (a blind flange
#   with a model's boss under its disc scored 0.909 on the picture and 0.388 IoU; its disc alone 0.8).
_HIDDEN_FACE = r"""\s*\.faces\(\s*["'](?:<Z|>Y|<X)["']\s*\)"""
_SKETCH = r"(?:\s*\.(?:center|circle|ellipse|moveTo|polarArray|polygon|pushPoints|rarray|rect|slot2D)" \
          r"\((?:[^()]|\([^()]*\))*\))*"
HIDDEN_FEATURES = (
    ("solid", re.compile(_HIDDEN_FACE + r"\s*\.shell\([^()]*\)")),
    ("trimmed", re.compile(_HIDDEN_FACE + r"\s*\.workplane\([^()]*\)" + _SKETCH + r"\s*\.extrude\([^()]*\)")),
)


def _drop_hidden_features(search: Any) -> None:
    """The best without a feature the picture cannot show, when it looks as much like the picture
    (within ``EDIT_MARGIN``): the programs with such a feature then stop being answers (a hidden
    boss: those of the same design, the model candidate or envelope it grew from)."""
    from model_runtime.picture.search import _suffixed

    for step, pattern in HIDDEN_FEATURES:
        best = search.best
        if best is None or not pattern.search(best.code) or search.out_of_budget():
            continue
        plain = search.evaluate(pattern.sub("", best.code), _suffixed(best.source, step),
                                named_only=best.named_only, fit_from=best.fit_from)
        if plain is None or plain.score < best.score - EDIT_MARGIN:
            continue
        root = best.source.split("+")[0]
        search.hold([i for i in search.items if pattern.search(i.code)
                     and (step == "solid" or i.source.split("+")[0] == root)])


# Share of the picture's inner lines the best's render leaves unexplained above which the line edits
# (slot, step, shoulder, ribs) are tried; below it the best already draws them.
LINE_EVIDENCE = 0.3
LINE_EDITS_AFTER = 2  # they come after the first hole edits, ahead of the bore, fillet and the rest


def _line_evidence(search: Any, best: Any) -> bool:
    from model_runtime.picture.lines import unexplained_lines
    from model_runtime.picture.similarity import Silhouette

    if best.render is None:
        return False
    return unexplained_lines(search.reference, Silhouette.of(best.render)) >= LINE_EVIDENCE


def _ordered(edits: list[tuple[str, str]], lines_shown: bool) -> list[tuple[str, str]]:
    """The edits in the order they are tried (the budget may cut the tail): the line edits only
    where the picture shows lines the best does not draw, right after the first hole edits."""
    plain = [e for e in edits if e[0] not in LINE_EDITS]
    if not lines_shown:
        return plain
    return plain[:LINE_EDITS_AFTER] + [e for e in edits if e[0] in LINE_EDITS] + plain[LINE_EDITS_AFTER:]


def _plain_envelopes(items: list[Any]) -> list[Any]:
    """The best-scoring box or cylinder envelope and the best Z extrusion, fitted or not."""
    out = []
    for prefix in (("envelope:box", "envelope:cylinder"), ("envelope:extrude_z",)):
        found = [p for p in items if p.source.startswith(prefix)
                 and all(step == "fit" for step in p.source.split("+")[1:])]
        if found:
            out.append(max(found, key=lambda p: p.score))
    return out
