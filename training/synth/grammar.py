"""A grammar of what real parts are made of: composed programs beyond the 20 named families.

Where CAD-Recode's generator stops (1-3 planes, sketches of circles and rectangles, extrude, union),
this one goes on to what people model: a *base* (a prism from a sketch of 1-6 primitives combined by
union and difference, a turned part revolved from a profile, a loft between two sketches, or a bent
bracket with gussets), then 0-4 *features* on faces of what exists (bosses, pockets, extruded cuts,
ribs, hole patterns of every kind, a shell, fillets and chamfers on selected edges, a mirror, a second
body on another plane unioned or cut). Sizes are what a designer types (``Sampler.mm``), code is
written by the one formatter (``codefmt``) and every sketch is a ``cq.Sketch`` of pushed primitives,
so the model learns one dialect. Unlucky draws are dropped by the writer's validation, as for families.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from training.synth.codefmt import Chain, Program
from training.synth.families import SCREWS, Sampler, _hole_op

# Bump on any change that alters the program of a seed: a dataset resumes only with the same version.
GRAMMAR_VERSION = 1
# Base kinds and their weights: prisms are what most parts start as.
BASES = (("prism", 0.5), ("turned", 0.18), ("loft", 0.12), ("bracket", 0.2))
# Sketch primitives (the first one is the part's outline and is never subtracted).
PRIMITIVES = ("rect", "rounded_rect", "circle", "slot", "polygon", "polyline", "arc")
FEATURES = ("boss", "pocket", "cut", "holes", "holes", "edges", "ribs", "shell", "mirror", "body")
PLANE_FEATURES = ("boss", "pocket", "cut", "holes", "ribs", "body")  # each sketches on a new plane
MAX_PLANES = 3

# Per sketch plane: the face on the extrusion side (XZ's normal is -Y) and the edges along the normal.
PLANE_FACES = {"XY": (">Z", "|Z"), "XZ": ("<Y", "|Y"), "YZ": (">X", "|X")}
OTHER_PLANES = {"XY": ("XZ", "YZ"), "XZ": ("XY", "YZ"), "YZ": ("XY", "XZ")}


def _grid(value: float, step: float = 0.5) -> float:
    return round(round(value / step) * step, 2)


@dataclass
class Outline:
    """What later features need to know of the base: its sketch plane and extents on it."""

    plane: str
    half_x: float  # half extents of the outline primitive in the sketch plane
    half_y: float
    height: float  # extrusion length along the plane's normal
    both: bool  # extruded symmetrically about the plane
    round_outline: bool  # a circle or slot: no straight edges along the normal
    windows: bool = False  # the base sketch subtracts primitives (a shell would cut through them)
    face: str = ""  # the face features work on, when not the one on the extrusion side
    planes: int = 1  # sketch planes used so far


class Sketcher:
    """Builds one ``cq.Sketch`` of pushed primitives and remembers what it drew."""

    def __init__(self, s: Sampler, key: str) -> None:
        self.s = s
        self.key = key
        self.chain = Chain("cq.Sketch()")
        self.count = 0
        self.subtracted = 0
        self.has_arc = False

    def add(self, kind: str, x: float, y: float, w: float, h: float, subtract: bool,
            turn: bool = True) -> None:
        """A primitive of kind ``kind`` centred at (x, y), about w x h, added or subtracted;
        ``turn``: later primitives may be drawn at an angle."""
        s, k = self.s, f"{self.key}_{self.count}"
        mode = {"mode": "s"} if subtract else {}
        w, h = max(1.0, _grid(w)), max(1.0, _grid(h))
        x, y = _grid(x), _grid(y)
        # The outline sits at the origin; every later primitive is pushed to its own place.
        c = self.chain if self.count == 0 and x == y == 0 else self.chain.push([(x, y)])
        if kind == "arc" and self.has_arc:  # the sketch's edge list is shared: one arc outline each
            kind = "slot"
        if kind in ("rect", "rounded_rect"):
            angle = s.pick(f"{k}_angle", (0, 0, 0, 15, 30, 45)) if self.count and turn else 0
            c.rect(w, h, **({"angle": angle} if angle else {}), **mode)
            if kind == "rounded_rect" and self.count == 0 and x == y == 0:
                # Only an unpushed outline: the sketch's fillet rounds every vertex it has.
                c.vertices().fillet(_grid(min(w, h) * s.rng.uniform(0.1, 0.3))).reset()
        elif kind == "circle":
            c.circle(_grid(min(w, h) / 2), **mode)
        elif kind == "slot":
            length, width = max(w, h), min(w, h) * 0.7
            angle = 0 if w >= h else 90
            angle += s.pick(f"{k}_angle", (0, 0, 30, -30, 45)) if self.count else 0
            c.slot(_grid(max(0.5, length - width)), _grid(max(1, width)),
                   **({"angle": angle} if angle else {}), **mode)
        elif kind == "polygon":
            sides = s.count(f"{k}_sides", 3, 8)
            c.regularPolygon(_grid(min(w, h) / 2), sides, **mode)
        elif kind == "polyline":
            c.polygon(self._polyline(w, h, k), **mode)
        else:  # a lug: a straight chord closed by an arc
            a, b = _grid(w / 2), _grid(h / 2)
            c.segment((-a, -b), (a, -b)).arc((a, -b), (0, b), (-a, -b)).assemble(**mode)
            self.has_arc = True
        self.count += 1

    def _polyline(self, w: float, h: float, key: str) -> list[tuple[float, float]]:
        """A closed outline a designer would draw: trapezoid, L, T, notched or a random convex one."""
        a, b = _grid(w / 2), _grid(h / 2)
        shape = self.s.pick(f"{key}_outline", ("trapezoid", "l", "t", "notch", "convex"))
        if shape == "trapezoid":
            top = _grid(a * self.s.rng.uniform(0.3, 0.8))
            pts = [(-a, -b), (a, -b), (top, b), (-top, b)]
        elif shape == "l":
            tx, ty = _grid(w * 0.35), _grid(h * 0.35)
            pts = [(-a, -b), (a, -b), (a, -b + ty), (-a + tx, -b + ty), (-a + tx, b), (-a, b)]
        elif shape == "t":
            stem, ty = _grid(w * 0.18), _grid(h * 0.3)
            pts = [(-a, b), (-a, b - ty), (-stem, b - ty), (-stem, -b), (stem, -b), (stem, b - ty),
                   (a, b - ty), (a, b)]
        elif shape == "notch":
            nw, nd = _grid(w * 0.2), _grid(h * 0.3)
            pts = [(-a, -b), (a, -b), (a, b), (nw, b), (nw, b - nd), (-nw, b - nd), (-nw, b), (-a, b)]
        else:
            n = self.s.rng.randint(5, 8)
            start = self.s.rng.uniform(0, 2 * math.pi)
            angles = [start + 2 * math.pi * i / n for i in range(n)]
            pts = [(_grid(a * math.cos(t)), _grid(b * math.sin(t))) for t in angles]
        return [*pts, pts[0]]


def _outline_sketch(s: Sampler, key: str, size_x: float, size_y: float, primitives: int,
                    layout: str) -> tuple[Sketcher, bool]:
    """The outline primitive at the origin plus up to ``primitives - 1`` more, unioned or subtracted.

    ``layout`` "scatter" places them anywhere on the outline; "aligned" snaps them to its edges and
    centre lines (flanges of an I-beam, a T, the lugs of a plate), as extrusion profiles are drawn.
    Returns the sketcher and whether the outline is round (no straight edges along the normal).
    """
    sk = Sketcher(s, key)
    first = s.pick(f"{key}_outline_kind", ("rect", "rect", "rounded_rect", "circle", "slot", "polygon",
                                             "polyline", "polyline", "arc"))
    if first in ("circle", "polygon"):
        size_y = size_x = min(size_x, size_y)
    sk.add(first, 0, 0, size_x, size_y, subtract=False)
    ax, ay = size_x / 2, size_y / 2
    for i in range(primitives - 1):
        subtract = s.chance(f"{key}_sub_{i}", 0.55) and min(size_x, size_y) >= 20
        sk.subtracted += subtract
        kind = s.pick(f"{key}_kind_{i}", PRIMITIVES[:1] + PRIMITIVES[2:])
        if subtract:  # a hole or window well inside the outline, so the face stays one piece
            w = s.rng.uniform(0.12, 0.4) * size_x
            h = s.rng.uniform(0.12, 0.4) * size_y
            x = s.rng.uniform(-1, 1) * max(0.0, ax * 0.75 - w / 2)
            y = s.rng.uniform(-1, 1) * max(0.0, ay * 0.75 - h / 2)
        elif layout == "aligned":  # a flange or lug on an edge of the outline
            along_x = s.rng.random() < 0.5
            if along_x:
                w, h = size_x * s.rng.uniform(1.0, 1.6), size_y * s.rng.uniform(0.12, 0.3)
                x, y = 0.0, s.rng.choice((-1, 1)) * (ay - h / 2 + s.rng.uniform(0, h / 2))
            else:
                w, h = size_x * s.rng.uniform(0.12, 0.3), size_y * s.rng.uniform(1.0, 1.6)
                x, y = s.rng.choice((-1, 1)) * (ax - w / 2 + s.rng.uniform(0, w / 2)), 0.0
            kind = s.pick(f"{key}_kind_{i}", ("rect", "rect", "slot", "arc"))
        else:  # overlapping the outline's edge: a lug, an ear, a bump
            w = s.rng.uniform(0.25, 0.6) * size_x
            h = s.rng.uniform(0.25, 0.6) * size_y
            x = s.rng.choice((-1, 1)) * ax * s.rng.uniform(0.4, 1.0)
            y = s.rng.uniform(-1, 1) * ay * 0.8
        sk.add(kind, x, y, w, h, subtract)
    return sk, first in ("circle", "slot", "arc")


def _base_prism(p: Program, s: Sampler) -> tuple[Chain, Outline]:
    plane = s.pick("plane", ("XY", "XY", "XY", "XZ", "YZ"))
    size_x = s.mm("size_x", 20, 160)
    size_y = s.mm("size_y", 12, min(150, size_x * 1.2))
    height = s.mm("height", 2, max(3, min(80, 0.9 * max(size_x, size_y))))
    layout = s.pick("layout", ("scatter", "scatter", "aligned"))
    sk, round_outline = _outline_sketch(s, "base", size_x, size_y, s.count("primitives", 1, 6), layout)
    sketch = p.assign("outline", sk.chain)
    both = s.chance("symmetric", 0.3)
    offset = s.pick("plane_offset", (0, 0, 0, 5, 10, -10)) if not both else 0
    w = p.workplane(plane, origin=_origin(plane, offset)) if offset else p.workplane(plane)
    w = w.placeSketch(sketch)
    w = w.extrude(_grid(height / 2), both=True) if both else w.extrude(height)
    return w, Outline(plane, size_x / 2, size_y / 2, height, both, round_outline, sk.subtracted > 0)


def _origin(plane: str, offset: float) -> tuple[float, float, float]:
    """A base plane moved along its normal (XZ's normal is -Y)."""
    return {"XY": (0, 0, offset), "XZ": (0, -offset, 0), "YZ": (offset, 0, 0)}[plane]


def _base_turned(p: Program, s: Sampler) -> tuple[Chain, Outline]:
    """A turned part: a stepped profile on XZ (radius along x, height along y) revolved about Z."""
    steps = s.count("steps", 1, 4)
    radius = s.mm("radius", 6, 60)
    bore = s.mm("bore", 0, radius * 0.5) if s.chance("bored", 0.5) else 0
    pts: list[tuple[float, float]] = [(bore, 0)]
    z, r, widest = 0.0, radius, radius
    for i in range(steps):
        h = s.mm(f"step_height_{i}", 2, max(3, radius * 1.2))
        pts.append((r, z))
        if s.chance(f"step_chamfer_{i}", 0.35) and h > 3 and r - bore > 3:
            c = _grid(min(h, r - bore) * 0.25)
            pts += [(r, z + h - c), (r - c, z + h)]
        else:
            pts.append((r, z + h))
        z += h
        factor = s.rng.uniform(0.45, 0.95) if s.rng.random() < 0.7 else s.rng.uniform(1.05, 1.5)
        r = max(bore + 1.5, _grid(r * factor))
        widest = max(widest, r)
    pts.append((bore, z))
    pts = _dedupe(pts)
    w = p.workplane("XZ")
    if s.chance("dome", 0.2) and bore == 0:  # a domed top instead of the last flat face
        top_r = pts[-2][0]
        mid, end = (_grid(top_r * 0.7), _grid(z + top_r * 0.3)), (0, _grid(z + top_r * 0.45))
        w = w.polyline(pts[:-1]).threePointArc(mid, end).close()
        z += top_r * 0.45
    else:
        w = w.polyline(pts).close()
    angle = 360 if s.rng.random() < 0.9 else s.pick("revolve_angle", (180, 270))
    w = w.revolve(angle, (0, 0, 0), (0, 1, 0))
    return w, Outline("XY", widest, widest, z, False, True)


def _dedupe(pts: list[tuple[float, float]]) -> list[tuple[float, float]]:
    out: list[tuple[float, float]] = []
    for pt in pts:
        if not out or out[-1] != pt:
            out.append(pt)
    return out


def _section(chain: Chain, s: Sampler, key: str, sx: float, sy: float) -> tuple[Chain, str]:
    kind = s.pick(key, ("rect", "circle", "polygon", "rounded"))
    if kind == "rect":
        return chain.rect(sx, sy), kind
    if kind == "circle":
        return chain.circle(_grid(min(sx, sy) / 2)), kind
    if kind == "polygon":
        return chain.polygon(s.count(f"{key}_sides", 5, 8), min(sx, sy)), kind
    return chain.slot2D(_grid(max(sx, sy) * 1.3), _grid(min(sx, sy) * 0.7)), kind


def _base_loft(p: Program, s: Sampler) -> tuple[Chain, Outline]:
    """A lofted adapter: one section, another at a height, optionally on a flange plate."""
    bx = s.mm("loft_bottom_x", 15, 120)
    by = s.mm("loft_bottom_y", 10, bx)
    scale = s.rng.uniform(0.3, 1.3)
    tx, ty = _grid(max(6, bx * scale)), _grid(max(6, by * scale * s.rng.uniform(0.6, 1.2)))
    height = s.mm("loft_height", 8, max(10, 1.2 * max(bx, by)))
    w = p.workplane("XY")
    flange = s.chance("flange", 0.45)
    thick = 0.0
    if flange:
        fx, fy = _grid(bx * s.rng.uniform(1.2, 1.6)), _grid(by * s.rng.uniform(1.2, 1.6))
        thick = s.mm("flange_thickness", 2, 12)
        w = w.rect(fx, fy).extrude(thick).faces(">Z").workplane()
        bx, by = fx, fy
    shrink = 1.4 if flange else 1.0  # the section stands inside the flange plate
    w, _ = _section(w, s, "loft_bottom", _grid(bx / shrink), _grid(by / shrink))
    w, _ = _section(w.workplane(offset=height), s, "loft_top", tx, ty)
    w = w.loft()
    # Features go on the top face: the top section's extents.
    return w, Outline("XY", tx / 2, ty / 2, height + thick, False, True, planes=3 if flange else 2)


def _base_bracket(p: Program, s: Sampler) -> tuple[Chain, Outline]:
    """A bent bracket (L, T or U section on XZ, extruded symmetric along Y) with gussets."""
    length = s.mm("leg_length", 20, 120)
    rise = s.mm("leg_height", 15, 100)
    width = s.mm("bracket_width", 12, 100)
    thick = s.mm("bracket_thickness", 2, max(2.5, min(12, length / 5, rise / 5)))
    section = s.pick("section", ("L", "L", "T", "U"))
    a = _grid(length / 2)
    if section == "L":
        pts = [(-a, 0), (a, 0), (a, thick), (-a + thick, thick), (-a + thick, rise), (-a, rise)]
    elif section == "T":
        pts = [(-a, 0), (a, 0), (a, thick), (_grid(thick / 2), thick), (_grid(thick / 2), rise),
               (_grid(-thick / 2), rise), (_grid(-thick / 2), thick), (-a, thick)]
    else:
        pts = [(-a, 0), (a, 0), (a, rise), (a - thick, rise), (a - thick, thick), (-a + thick, thick),
               (-a + thick, rise), (-a, rise)]
    body = p.workplane("XZ").polyline(pts).close().extrude(_grid(width / 2), both=True)
    if s.chance("gussets", 0.6) and section != "U":
        p.assign("bracket", body)
        g = _grid(min(length / 2 - thick, rise - thick) * s.rng.uniform(0.5, 0.9))
        gt = s.mm("gusset_thickness", 2, max(2.5, thick * 1.5))
        x0 = -a + thick if section == "L" else _grid(thick / 2)
        tri = [(x0, thick), (x0 + g, thick), (x0, thick + g)]
        y = _grid(width / 2 - gt / 2 - s.rng.uniform(0, width / 4))
        gusset = p.workplane("XZ", origin=(0, y, 0)).polyline(tri).close().extrude(_grid(gt / 2), both=True)
        if y > gt:  # a pair, mirrored about the middle
            gusset = gusset.mirror("XZ", union=True)
        p.tag("gusset")
        body = p.chain("bracket").union(gusset)
    planes = 2 if "gusset" in p.tags else 1
    return body, Outline("XY", a, width / 2, thick, False, False, face="<Z", planes=planes)


def _face_workplane(w: Chain, s: Sampler, key: str, outline: Outline) -> Chain:
    face = outline.face or PLANE_FACES[outline.plane][0]
    if not outline.face and s.chance(f"{key}_bottom", 0.15):
        face = face.replace(">", "?").replace("<", ">").replace("?", "<")
    offset = s.pick(f"{key}_offset", (0, 0, 0, 0, -1, -2))
    return w.faces(face).workplane(offset=offset) if offset else w.faces(face).workplane()


def _spot(s: Sampler, outline: Outline, margin: float) -> tuple[float, float]:
    x = s.rng.uniform(-1, 1) * max(0.0, outline.half_x * 0.7 - margin)
    y = s.rng.uniform(-1, 1) * max(0.0, outline.half_y * 0.7 - margin)
    return _grid(x), _grid(y)


def _feature(p: Program, s: Sampler, w: Chain, outline: Outline, i: int, kind: str) -> Chain:
    key = f"f{i}"
    span = min(outline.half_x, outline.half_y) * 2
    if kind in ("boss", "pocket", "cut"):
        sk = Sketcher(s, key)
        for j in range(s.count(f"{key}_primitives", 1, 3)):
            size = s.rng.uniform(0.15, 0.45) * span
            x, y = _spot(s, outline, size / 2)
            kinds = ("rect", "circle", "slot", "polygon", "rounded_rect") if kind == "boss" else \
                ("rect", "circle", "slot", "polygon", "polyline")
            sk.add(s.pick(f"{key}_{j}_kind", kinds), x, y, size * s.rng.uniform(0.7, 1.5), size, False)
        name = p.assign(f"sketch{i}", sk.chain)
        top = _face_workplane(w, s, key, outline).placeSketch(name)
        if kind == "boss":
            return top.extrude(s.mm(f"{key}_height", 1, max(2, outline.height * 1.5)))
        if kind == "pocket":
            return top.cutBlind(-s.mm(f"{key}_depth", 0.5, max(1, outline.height * 0.6)))
        return top.cutThruAll()
    if kind == "holes":
        # The largest screw whose counterbore leaves material around it, else a plain small hole.
        fitting = [name for name, screw in SCREWS.items() if screw["cbore"] <= span * 0.3]
        screw = s.screw(f"{key}_screw", fitting) if fitting else None
        hole_kind = s.pick(f"{key}_hole", ("hole", "blind", "cbore", "csk", "hole")) if screw else "small"
        pitch = screw["cbore"] * 1.6 if screw else 3.0
        top = _face_workplane(w, s, key, outline)
        pattern = s.pick(f"{key}_pattern", ("linear", "grid", "polar", "points", "single"))
        reach_x, reach_y = max(1.0, outline.half_x * 0.7), max(1.0, outline.half_y * 0.7)
        if pattern == "linear":
            along_x = reach_x >= reach_y
            reach = reach_x if along_x else reach_y
            n = s.count(f"{key}_n", 2, max(2, min(6, int(2 * reach / pitch) + 1)))
            gap = _grid(2 * reach / (n - 1))
            top = top.rarray(gap, 1, n, 1) if along_x else top.rarray(1, gap, 1, n)
        elif pattern == "grid":
            top = top.rarray(_grid(2 * reach_x), _grid(2 * reach_y), 2, 2)
        elif pattern == "polar":
            radius = _grid(max(pitch, min(reach_x, reach_y) * s.rng.uniform(0.5, 1.0)))
            n = s.count(f"{key}_n", 3, max(3, min(12, int(2 * math.pi * radius / pitch))))
            top = top.polarArray(radius, 0, 360, n)
        elif pattern == "points":
            top = top.pushPoints([_spot(s, outline, pitch / 2) for _ in range(s.rng.randint(2, 4))])
        elif s.chance(f"{key}_angled", 0.35):  # one hole at an angle to the face
            top = top.transformed(rotate=(s.pick(f"{key}_tilt", (15, 20, 30, 45)), 0, 0))
            hole_kind = "hole" if screw else "small"
        if screw is None or hole_kind == "small":
            return top.hole(_grid(max(1, span * 0.12)))
        if hole_kind == "blind":
            return top.hole(screw["tap"], _grid(max(1, outline.height * s.rng.uniform(0.3, 0.8))))
        if hole_kind in ("cbore", "csk"):
            return _hole_op(s, top, screw, hole_kind)
        return top.hole(screw["clear"])
    if kind == "edges":
        face, along = PLANE_FACES[outline.plane]
        options = (face, face.replace(">", "<") if ">" in face else face.replace("<", ">"))
        selector = s.pick(f"{key}_edges", options if outline.round_outline else (along, along, *options))
        size = _grid(max(0.5, min(outline.height, span) * s.rng.uniform(0.05, 0.2)))
        w = w.edges(selector)
        return w.fillet(size) if s.chance(f"{key}_fillet", 0.55) else w.chamfer(size)
    if kind == "ribs":  # thin walls standing on the face, across the part
        sk = Sketcher(s, key)
        n = s.count(f"{key}_ribs", 1, 4)
        thick = s.mm(f"{key}_rib_thickness", 1, max(1.5, span * 0.08))
        along_x = s.rng.random() < 0.5
        for j in range(n):
            across = outline.half_y if along_x else outline.half_x
            offset = (j - (n - 1) / 2) * 1.4 * across / max(1, n)
            if along_x:
                sk.add("rect", 0, offset, outline.half_x * 1.4, thick, False, turn=False)
            else:
                sk.add("rect", offset, 0, thick, outline.half_y * 1.4, False, turn=False)
        name = p.assign(f"ribs{i}", sk.chain)
        p.tag("rib")
        face = PLANE_FACES[outline.plane][0]
        rib_height = s.mm(f"{key}_rib_height", 2, max(3, span * 0.5))
        return w.faces(face).workplane().placeSketch(name).extrude(rib_height)
    if kind == "shell":
        face = PLANE_FACES[outline.plane][0]
        return w.faces(face).shell(-s.mm(f"{key}_wall", 1, max(1.5, min(outline.height, span) * 0.15)))
    if kind == "mirror":
        shift = _grid(min(outline.half_x, outline.half_y) * s.rng.uniform(0.3, 0.8))
        offset, mirror_plane = ((0, shift, 0), "XZ") if outline.plane == "YZ" else ((shift, 0, 0), "YZ")
        return w.translate(offset).mirror(mirror_plane, union=True)
    # A second body on another base plane through the part, unioned or cut (CAD-Recode's union of bodies).
    plane = s.pick(f"{key}_plane", OTHER_PLANES[outline.plane])
    size = span * s.rng.uniform(0.3, 0.9)
    sk, _ = _outline_sketch(s, key, _grid(size * s.rng.uniform(0.8, 1.6)), _grid(size),
                            s.count(f"{key}_n", 1, 3), "scatter")
    name = p.assign(f"sketch{i}", sk.chain)
    depth = _grid(max(outline.half_x, outline.half_y) * s.rng.uniform(0.4, 1.2))
    other = p.workplane(plane).placeSketch(name).extrude(depth, both=True)
    p.assign("body", w)
    return p.chain("body").cut(other) if s.chance(f"{key}_cut", 0.4) else p.chain("body").union(other)


def compose(s: Sampler) -> Program:
    """One composed part: a base, then 0-4 features on it."""
    p = Program()
    base = s.rng.choices([name for name, _ in BASES], weights=[weight for _, weight in BASES])[0]
    s.params["base"] = base
    builders = {"prism": _base_prism, "turned": _base_turned, "loft": _base_loft, "bracket": _base_bracket}
    w, outline = builders[base](p, s)
    features = s.count("features", 0, 4)
    used: set[str] = set()
    for i in range(features):
        options = [k for k in FEATURES if k not in used or k in ("holes", "boss", "pocket", "edges")]
        if base != "prism":  # shells, ribs and mirrors of turned parts and lofts seldom make sense
            options = [k for k in options if k not in ("shell", "ribs", "mirror")]
        if i > 0 or outline.windows:  # a shell of a finished part or through windows mostly fails
            options = [k for k in options if k != "shell"]
        if "shell" in used:  # the face is open now: only edges and holes work on walls
            options = [k for k in options if k in ("edges", "holes")]
        if base == "bracket":  # the base leg's underside: holes, a cut-out, its edges
            options = [k for k in options if k in ("holes", "cut", "edges", "body")]
        if base == "loft":  # cuts into a lofted face mostly leave an invalid solid
            options = [k for k in options if k not in ("pocket", "cut")]
        if used & {"boss", "ribs"}:  # a second one would stand on the first one's top face, in the air
            options = [k for k in options if k not in ("boss", "ribs")]
        if sum(1 for k in used if k in ("boss", "pocket", "cut", "ribs", "body")) >= 2:
            options = [k for k in options if k not in ("boss", "pocket", "cut", "ribs", "body")]
        if outline.planes >= MAX_PLANES:  # 1-3 sketch planes per part: only plane-free features left
            options = [k for k in options if k not in PLANE_FEATURES]
        if not options:
            break
        kind = s.pick(f"feature_{i}", options)
        used.add(kind)
        outline.planes += kind in PLANE_FEATURES
        w = _feature(p, s, w, outline, i, kind)
    p.result(w)
    return p


__all__ = ["GRAMMAR_VERSION", "compose"]
