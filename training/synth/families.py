"""Named families of everyday mechanical parts, plus a free-form family that composes operations.

Each family is a function ``(s: Sampler) -> Program``: it draws its dimensions from the sampler
(rounded to what a designer types: 0.5 mm under 10 mm, 1 mm under 60 mm, 5 mm above; standard
metric hole sizes) and builds the program with the canonical formatter. Sizes are in mm. A family
may still produce an invalid solid for unlucky draws; the writer executes every program and drops
those (the manifest counts them).
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from typing import Any

from training.synth.codefmt import Program, Var

# Metric screw sizes: clearance hole, counterbore (diameter, depth), countersink diameter, tap drill.
SCREWS: dict[str, dict[str, float]] = {
    "M3": {"clear": 3.4, "cbore": 6.5, "cbore_depth": 3.3, "csk": 6.5, "tap": 2.5},
    "M4": {"clear": 4.5, "cbore": 8.0, "cbore_depth": 4.4, "csk": 8.6, "tap": 3.3},
    "M5": {"clear": 5.5, "cbore": 10.0, "cbore_depth": 5.4, "csk": 10.4, "tap": 4.2},
    "M6": {"clear": 6.6, "cbore": 11.0, "cbore_depth": 6.4, "csk": 12.4, "tap": 5.0},
    "M8": {"clear": 9.0, "cbore": 15.0, "cbore_depth": 8.6, "csk": 16.4, "tap": 6.8},
}


class Sampler:
    """Seeded draws of rounded dimensions; remembers every named draw for the ``params`` column."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.params: dict[str, Any] = {}

    def mm(self, name: str, lo: float, hi: float, step: float | None = None) -> float:
        """A length in [lo, hi] on a designer's grid (0.5 below 10 mm, 1 below 60, else 5)."""
        if step is None:
            step = 0.5 if hi <= 10 else 1.0 if hi <= 60 else 5.0
        first, last = math.ceil(lo / step - 1e-9), math.floor(hi / step + 1e-9)
        # A range narrower than the grid gives its rounded midpoint.
        value = round((lo + hi) / 2.0, 1) if last < first else round(self.rng.randint(first, last) * step, 2)
        self.params[name] = value
        return value

    def count(self, name: str, lo: int, hi: int) -> int:
        value = self.rng.randint(lo, hi)
        self.params[name] = value
        return value

    def pick(self, name: str, options: Sequence[Any]) -> Any:
        value = self.rng.choice(list(options))
        self.params[name] = value
        return value

    def chance(self, name: str, p: float) -> bool:
        value = self.rng.random() < p
        self.params[name] = value
        return value

    def screw(self, name: str, sizes: Sequence[str] = ("M3", "M4", "M5", "M6")) -> dict[str, float]:
        return SCREWS[self.pick(name, sizes)]


def _hole_op(s: Sampler, chain: Any, screw: dict[str, float], kind: str | None = None) -> Any:
    """Through hole, counterbore or countersink for a screw, on the pending points."""
    kind = kind or s.pick("hole_type", ("hole", "hole", "cbore", "csk"))
    if kind == "cbore":
        return chain.cboreHole(screw["clear"], screw["cbore"], screw["cbore_depth"])
    if kind == "csk":
        return chain.cskHole(screw["clear"], screw["csk"], 90)
    return chain.hole(screw["clear"])


def mounting_plate(s: Sampler) -> Program:
    length = s.mm("length", 40, 200)
    width = s.mm("width", 30, min(150, length))
    thick = s.mm("thickness", 3, 12)
    screw = s.screw("screw")
    margin = max(screw["cbore"] / 2 + 2, s.mm("hole_margin", 5, 15))
    p = Program()
    w = p.workplane("XY").box(length, width, thick)
    corner = s.pick("corners", ("fillet", "chamfer", "sharp"))
    if corner != "sharp":
        size = s.mm("corner_size", 1, min(12, width / 4))
        w = w.edges("|Z").fillet(size) if corner == "fillet" else w.edges("|Z").chamfer(size)
    nx = s.count("holes_x", 2, 4 if length > 100 else 2)
    ny = s.count("holes_y", 1 if width < 50 else 2, 2)
    w = w.faces(">Z").workplane()
    spacing_x = (length - 2 * margin) / (nx - 1)
    spacing_y = (width - 2 * margin) / (ny - 1) if ny > 1 else 1
    w = _hole_op(s, w.rarray(round(spacing_x, 1), round(spacing_y, 1), nx, ny), screw)
    if s.chance("center_cutout", 0.4):
        cut_l = s.mm("cutout_length", 8, max(9, length - 2 * margin - screw["cbore"] - 6))
        cut_w = s.mm("cutout_width", 6, max(7, width - 2 * margin - screw["cbore"] - 6))
        if s.chance("cutout_round", 0.4):
            w = w.faces(">Z").workplane().hole(min(cut_l, cut_w))
        else:
            w = w.faces(">Z").workplane().rect(cut_l, cut_w).cutThruAll()
    p.result(w)
    return p


def l_bracket(s: Sampler) -> Program:
    leg_a = s.mm("base_length", 25, 100)
    leg_b = s.mm("height", 25, 100)
    width = s.mm("width", 15, 80)
    thick = s.mm("thickness", 2, min(10, leg_a / 5))
    bend = s.mm("bend_radius", 0, thick * 1.5, 0.5)
    p = Program()
    if bend > 0:
        w = (p.workplane("XZ").moveTo(0, 0).lineTo(leg_a, 0).lineTo(leg_a, thick)
             .lineTo(thick + bend, thick).radiusArc((thick, thick + bend), bend)
             .lineTo(thick, leg_b).lineTo(0, leg_b).close())
    else:
        w = p.workplane("XZ").polyline([(0, 0), (leg_a, 0), (leg_a, thick), (thick, thick),
                                        (thick, leg_b), (0, leg_b)]).close()
    w = w.extrude(width / 2, both=True)
    screw = s.screw("screw", ("M3", "M4", "M5", "M6"))
    free_a = leg_a - thick - bend
    n = 2 if width >= 4 * screw["clear"] + 10 else 1
    if free_a > screw["clear"] + 6:
        x = round(leg_a / 2 - (thick + bend + free_a / 2), 1)
        pts = [(x, round(width / 4, 1)), (x, round(-width / 4, 1))] if n == 2 else [(x, 0)]
        w = w.faces("<Z").workplane(centerOption="CenterOfBoundBox").pushPoints(pts).hole(screw["clear"])
    free_b = leg_b - thick - bend
    if free_b > screw["clear"] + 6 and s.chance("holes_upright", 0.8):
        y = round(thick + bend + free_b / 2 - leg_b / 2, 1)
        pts = [(round(width / 4, 1), y), (round(-width / 4, 1), y)] if n == 2 else [(0, y)]
        w = w.faces("<X").workplane(centerOption="CenterOfBoundBox").pushPoints(pts).hole(screw["clear"])
    if s.chance("round_corners", 0.4):  # the free corners of the upright, then of the base leg
        radius = min(width / 4, s.mm("corner_radius", 2, 10))
        w = w.edges("|X and >Z").fillet(radius).edges("|Z and >X").fillet(radius)
    p.result(w)
    return p


def u_channel(s: Sampler) -> Program:
    width = s.mm("width", 20, 100)
    height = s.mm("height", 15, 80)
    length = s.mm("length", 20, 150)
    thick = s.mm("thickness", 2, min(10, width / 5))
    half = width / 2
    p = Program()
    w = (p.workplane("XZ").polyline([(0, 0), (half, 0), (half, height), (half - thick, height),
                                     (half - thick, thick), (0, thick)]).mirrorY()
         .extrude(length / 2, both=True))
    screw = s.screw("screw", ("M3", "M4", "M5"))
    if width - 2 * thick > screw["clear"] + 4:
        nh = s.count("base_holes", 1, 3)
        spacing = round(length / (nh + 1), 1)
        w = w.faces("<Z").workplane().rarray(1, spacing, 1, nh).hole(screw["clear"])
    if height > 20 and s.chance("side_slot", 0.5):
        slot_len = s.mm("slot_length", 10, max(11, length * 0.6))
        slot_w = s.mm("slot_width", 3, min(10, height / 3))
        w = w.faces(">X").workplane(centerOption="CenterOfBoundBox").slot2D(slot_len, slot_w).cutThruAll()
    p.result(w)
    return p


def z_bracket(s: Sampler) -> Program:
    flange = s.mm("flange", 15, 50)
    rise = s.mm("rise", 10, 60)
    width = s.mm("width", 15, 60)
    thick = s.mm("thickness", 2, 8)
    p = Program()
    far = 2 * flange - thick
    pts = [(0, 0), (flange, 0), (flange, rise), (far, rise), (far, rise + thick),
           (flange - thick, rise + thick), (flange - thick, thick), (0, thick)]
    bracket = p.workplane("XZ").polyline(pts).close().extrude(width / 2, both=True)
    screw = s.screw("screw", ("M3", "M4", "M5"))
    if flange - thick > screw["clear"] + 5:
        # One hole in each flange, clear of the web: cut by a pair of vertical cylinders.
        p.assign("bracket", bracket)
        x_low, x_high = round((flange - thick) / 2, 2), round(flange + (flange - thick) / 2, 2)
        holes = (p.workplane("XY").pushPoints([(x_low, 0), (x_high, 0)]).circle(screw["clear"] / 2)
                 .extrude(rise + thick))
        p.result(p.chain("bracket").cut(holes))
    else:
        p.result(bracket)
    return p


def flange(s: Sampler) -> Program:
    outer = s.mm("outer_diameter", 40, 180)
    thick = s.mm("thickness", 4, min(25, outer / 5))
    bore = s.mm("bore", outer * 0.15, outer * 0.4)
    hub = s.mm("hub_diameter", bore + 8, max(bore + 9, outer * 0.6))
    hub_h = s.mm("hub_height", 0, outer * 0.3)
    screw = s.screw("screw", ("M4", "M5", "M6", "M8"))
    n = s.count("bolts", 3, 8)
    ring = (outer + hub) / 2 if hub_h > 0 else (outer + bore) / 2
    bolt_circle = s.mm("bolt_circle", ring - 1, ring + 1, 1)
    p = Program()
    w = p.workplane("XY").circle(outer / 2).extrude(thick)
    w = w.faces(">Z").workplane().polarArray(bolt_circle / 2, 0, 360, n)
    w = _hole_op(s, w, screw, s.pick("hole_type", ("hole", "hole", "cbore")))
    if hub_h > 0:
        w = w.faces(">Z").workplane().circle(hub / 2).extrude(hub_h)
    w = w.faces(">Z").workplane().hole(bore)
    if s.chance("chamfer_edge", 0.5):
        w = w.faces(">Z").edges().chamfer(min(1.5, thick / 4))
    p.result(w)
    return p


def standoff(s: Sampler) -> Program:
    across = s.mm("across_flats", 5, 17)
    length = s.mm("length", 6, 60)
    screw = s.pick("thread", ("M3", "M4", "M5", "M6") if across >= 9 else ("M3",))
    tap = SCREWS[screw]["tap"]
    p = Program()
    corners = round(across / math.cos(math.pi / 6), 2)
    shape = s.pick("section", ("hex", "hex", "round"))
    w = p.workplane("XY")
    w = w.polygon(6, corners).extrude(length) if shape == "hex" else w.circle(across / 2).extrude(length)
    if s.chance("male_stud", 0.4):
        stud = s.mm("stud_length", 4, 12)
        w = w.faces(">Z").workplane().circle(tap / 2 + 0.3).extrude(stud)
        w = w.faces("<Z").workplane().hole(tap, min(length - 1, s.mm("thread_depth", 5, 15)))
    else:
        w = w.faces(">Z").workplane().hole(tap)
    if s.chance("chamfer", 0.6):
        w = w.faces("<Z").chamfer(0.5)
    p.result(w)
    return p


def spacer(s: Sampler) -> Program:
    outer = s.mm("outer_diameter", 8, 60)
    inner = s.mm("inner_diameter", outer * 0.3, outer * 0.7)
    length = s.mm("length", 1, 40)
    p = Program()
    if s.chance("square", 0.3):
        w = p.workplane("XY").rect(outer, outer).extrude(length).edges("|Z").fillet(round(outer / 8, 1))
        w = w.faces(">Z").workplane().hole(inner)
    else:
        w = p.workplane("XY").circle(outer / 2).circle(inner / 2).extrude(length)
    if length >= 3 and s.chance("chamfer", 0.6):
        w = w.edges().chamfer(min(0.5 * length / 3, 1))
    p.result(w)
    return p


def stepped_shaft(s: Sampler) -> Program:
    steps = s.count("steps", 2, 4)
    diameters = sorted((s.mm(f"d{i}", 6, 50) for i in range(steps)), reverse=True)
    lengths = [s.mm(f"l{i}", 5, 60) for i in range(steps)]
    p = Program()
    if s.chance("revolved", 0.5):
        pts: list[tuple[float, float]] = [(0, 0)]
        z = 0.0
        for d, length in zip(diameters, lengths, strict=True):
            pts += [(d / 2, z), (d / 2, z + length)]
            z += length
        pts.append((0, z))
        w = p.workplane("XZ").polyline(pts).close().revolve(360, (0, 0, 0), (0, 1, 0))
    else:
        w = p.workplane("XY").circle(diameters[0] / 2).extrude(lengths[0])
        for d, length in zip(diameters[1:], lengths[1:], strict=True):
            w = w.faces(">Z").workplane().circle(d / 2).extrude(length)
    top_d, top_l = diameters[-1], lengths[-1]
    if top_d >= 10 and top_l >= 10 and s.chance("keyway", 0.6):
        key_w = s.mm("key_width", 2, round(top_d / 4, 1), 1)
        key_depth = round(key_w * 0.6, 1)
        key_len = s.mm("key_length", 5, top_l - 2)
        w = (w.faces(">Z").workplane().center(0, round(top_d / 2 - key_depth / 2, 2))
             .rect(key_w, key_depth).cutBlind(-key_len))
    elif top_d >= 6 and s.chance("center_hole", 0.5):
        w = w.faces(">Z").workplane().hole(round(top_d / 3, 1), round(top_l / 2, 1))
    if s.chance("chamfer_end", 0.5):
        w = w.faces("<Z").chamfer(min(1, diameters[0] / 10))
    p.result(w)
    return p


def pulley(s: Sampler) -> Program:
    outer = s.mm("outer_diameter", 30, 150)
    width = s.mm("width", 8, 30)
    bore = s.mm("bore", 5, max(6, outer * 0.25))
    groove = s.mm("groove_depth", 2, min(width * 0.6, outer * 0.15))
    rim = round(outer / 2, 2)
    half = round(width / 2, 2)
    flat = round(min(width * 0.15, 2), 2)
    p = Program()
    profile = [(bore / 2, 0), (rim, 0), (rim, flat), (rim - groove, half), (rim, width - flat),
               (rim, width), (bore / 2, width)]
    w = p.workplane("XZ").polyline(profile).close().revolve(360, (0, 0, 0), (0, 1, 0))
    if s.chance("hub", 0.5):
        hub_d = s.mm("hub_diameter", bore + 6, max(bore + 7, rim - groove - 2))
        hub_h = s.mm("hub_height", 3, 15)
        w = w.faces(">Z").workplane().circle(hub_d / 2).circle(bore / 2).extrude(hub_h)
    if bore >= 8 and s.chance("keyway", 0.6):
        key_w = round(max(2.0, bore / 4), 0)
        w = w.faces(">Z").workplane().center(0, round(bore / 2, 2)).rect(key_w, round(key_w, 1)).cutThruAll()
    p.result(w)
    return p


def enclosure(s: Sampler) -> Program:
    length = s.mm("length", 40, 200)
    width = s.mm("width", 30, min(150, length))
    height = s.mm("height", 15, 80)
    wall = s.mm("wall", 1.5, 4)
    radius = s.mm("corner_radius", 0, min(15, width / 4))
    p = Program()
    w = p.workplane("XY").box(length, width, height)
    if radius >= 1:
        w = w.edges("|Z").fillet(radius)
    open_face = s.pick("open_face", (">Z", "<Z"))
    w = w.faces(open_face).shell(-wall)
    if s.chance("side_holes", 0.6):
        d = s.mm("port_diameter", 4, min(16, height / 2))
        n = s.count("ports", 1, 3)
        spacing = round(min(length / (n + 1), d * 2.5), 1)
        w = w.faces("<Y").workplane(centerOption="CenterOfBoundBox")
        w = w.rarray(spacing, 1, n, 1).hole(d, wall * 2)
    elif s.chance("window", 0.5):
        win_l = s.mm("window_length", 6, max(7, (width - 2 * radius) / 2))
        win_h = s.mm("window_height", 4, height / 2)
        w = w.faces(">X").workplane(centerOption="CenterOfBoundBox").rect(win_l, win_h).cutBlind(-wall * 2)
    p.result(w)
    return p


def gusset_bracket(s: Sampler) -> Program:
    base = s.mm("base_length", 30, 100)
    height = s.mm("height", 30, 100)
    width = s.mm("width", 20, 80)
    thick = s.mm("thickness", 3, 10)
    rib = s.mm("rib_thickness", 2, min(thick, width / 4))
    p = Program()
    p.assign("base", p.workplane("XY").box(base, width, thick, centered=(False, True, False)))
    p.assign("upright", p.workplane("XY").box(thick, width, height, centered=(False, True, False)))
    corner = [(thick, thick), (round(base * 0.8, 1), thick), (thick, round(height * 0.8, 1))]
    p.assign("rib", p.workplane("XZ").polyline(corner).close().extrude(rib / 2, both=True))
    screw = s.screw("screw", ("M4", "M5", "M6"))
    w = p.chain("base").union(Var("upright")).union(Var("rib"))
    gap = (width - rib) / 2
    if gap > screw["clear"] + 4:
        y = round(rib / 2 + gap / 2, 1)
        x = round(base * 0.85 if base * 0.15 > screw["clear"] else (thick + base) / 2, 1)
        w = w.faces("<Z").workplane(origin=(0, 0, 0)).pushPoints([(x, y), (x, -y)]).hole(screw["clear"])
    p.result(w)
    return p


def shaft_clamp(s: Sampler) -> Program:
    bore = s.mm("bore", 6, 40)
    length = s.mm("length", bore + 16, bore * 2 + 30)
    height = s.mm("height", bore + 10, bore * 1.8 + 20)
    thick = s.mm("thickness", max(8, bore * 0.6), bore + 12)  # a clamp, not a plate
    slit = s.mm("slit", 1, 3)
    screw = s.screw("screw", ("M3", "M4", "M5", "M6"))
    p = Program()
    w = p.workplane("XY").box(length, thick, height)
    if s.chance("rounded", 0.5):
        w = w.edges("|Y").fillet(min(4, thick / 3, (height - bore) / 5))
    w = w.faces(">Y").workplane().hole(bore)
    w = w.faces(">Z").workplane().rect(slit, thick).cutBlind(-round(height / 2, 2))
    bolt_z = round((bore / 2 + height / 2) / 2, 1)
    if height / 2 - bore / 2 > screw["clear"] + 3:
        w = w.faces(">X").workplane(centerOption="CenterOfBoundBox").center(0, bolt_z)
        w = w.hole(screw["clear"]) if not s.chance("cbore", 0.5) else \
            w.cboreHole(screw["clear"], screw["cbore"], screw["cbore_depth"])
    p.result(w)
    return p


def flanged_bushing(s: Sampler) -> Program:
    inner = s.mm("inner_diameter", 4, 40)
    outer = s.mm("outer_diameter", inner + 3, inner * 1.5 + 6)
    flange_d = s.mm("flange_diameter", outer + 4, outer * 1.6 + 6)
    flange_t = s.mm("flange_thickness", 1.5, 8)
    length = s.mm("length", flange_t + 4, flange_t + 50)
    ri, ro, rf = inner / 2, outer / 2, flange_d / 2
    p = Program()
    section = [(ri, 0), (rf, 0), (rf, flange_t), (ro, flange_t), (ro, length), (ri, length)]
    w = p.workplane("XZ").polyline(section).close().revolve(360, (0, 0, 0), (0, 1, 0))
    if s.chance("chamfer_top", 0.5):
        w = w.faces(">Z").edges().chamfer(min(0.8, (ro - ri) / 3))
    if s.chance("oil_hole", 0.3) and length - flange_t > 8:
        # A radial lubrication hole through one wall, halfway up the sleeve.
        middle = round((flange_t + length) / 2, 1)
        oil = p.workplane("XZ").center(0, middle).circle(1).extrude(round(ro + 1, 1))
        w = w.cut(oil)
    p.result(w)
    return p


def knob(s: Sampler) -> Program:
    diameter = s.mm("diameter", 15, 70)
    height = s.mm("height", 8, 30)
    p = Program()
    grip = s.pick("grip", ("scallops", "polygon", "plain"))
    if grip == "polygon":
        w = p.workplane("XY").polygon(s.count("sides", 5, 8), diameter).extrude(height)
    else:
        w = p.workplane("XY").circle(diameter / 2).extrude(height)
    w = w.faces(">Z").edges().fillet(min(height / 4, s.mm("top_fillet", 1, 5)))
    if grip == "scallops":
        n = s.count("scallops", 6, 16)
        r = round(min(math.pi * diameter / n / 3, diameter / 8), 1)
        w = w.faces("<Z").workplane().polarArray(diameter / 2, 0, 360, n).circle(r).cutThruAll()
    if s.chance("skirt", 0.4):
        skirt = s.mm("skirt_diameter", diameter * 0.4, diameter * 0.7)
        w = w.faces("<Z").workplane().circle(skirt / 2).extrude(s.mm("skirt_height", 2, 10))
    bore = s.mm("shaft", 3, min(10, diameter / 3))
    w = w.faces("<Z").workplane().hole(bore, round(height * 0.7, 1))
    p.result(w)
    return p


def hinge_leaf(s: Sampler) -> Program:
    length = s.mm("length", 30, 120)
    width = s.mm("width", 15, 50)
    thick = s.mm("thickness", 1.5, 4)
    knuckle_r = round(max(thick * 1.2, s.mm("knuckle_radius", 2.5, 6)), 1)
    pin = round(knuckle_r, 1)
    n = s.count("knuckles", 2, 3)
    seg = round(length / (2 * n - 1), 1)
    screw = s.screw("screw", ("M3", "M4"))
    p = Program()
    # The leaf lies along X with its hinge edge on the X axis; the knuckles turn about that axis.
    leaf = p.workplane("XY").box(length, width, thick, centered=(True, False, True))
    holes = s.count("screw_holes", 2, 3)
    spacing = round(length / holes, 1)
    leaf = leaf.faces(">Z").workplane().center(0, round(width / 2 + knuckle_r / 2, 1))
    leaf = leaf.rarray(spacing, 1, holes, 1).cskHole(screw["clear"], screw["csk"], 90)
    p.assign("leaf", leaf)
    xs = [round(-length / 2 + seg / 2 + 2 * i * seg, 2) for i in range(n)]
    knuckles = p.workplane("XY").pushPoints([(x, 0) for x in xs])
    p.assign("knuckles", knuckles.cylinder(seg, knuckle_r, direct=(1, 0, 0)))
    p.assign("pin", p.workplane("YZ").workplane(offset=-length / 2).circle(round(pin / 2, 2)).extrude(length))
    p.result(p.chain("leaf").union(Var("knuckles")).cut(Var("pin")))
    return p


def pillow_block(s: Sampler) -> Program:
    bore = s.mm("bore", 8, 40)
    boss = s.mm("boss_diameter", bore + 10, bore * 1.6 + 14)
    length = s.mm("base_length", boss + 30, boss + 80)
    width = s.mm("width", 12, max(13, boss * 0.8))
    base_t = s.mm("base_thickness", 5, 15)
    center_h = s.mm("center_height", max(boss / 2, base_t + bore / 2 + 3), boss / 2 + 25)
    screw = s.screw("screw", ("M5", "M6", "M8"))
    hole_x = round(length / 2 - max(screw["cbore"] / 2 + 3, 8), 1)
    p = Program()
    base = p.workplane("XY").box(length, width, base_t, centered=(True, True, False))
    base = base.faces(">Z").workplane().pushPoints([(-hole_x, 0), (hole_x, 0)])
    base = _hole_op(s, base, screw, s.pick("hole_type", ("hole", "cbore")))
    p.assign("base", base)
    p.assign("pedestal", p.workplane("XY").box(boss, width, center_h, centered=(True, True, False)))
    p.assign("boss", p.workplane("XZ").center(0, center_h).circle(boss / 2).extrude(width / 2, both=True))
    p.assign("bore", p.workplane("XZ").center(0, center_h).circle(bore / 2).extrude(width, both=True))
    p.result(p.chain("base").union(Var("pedestal")).union(Var("boss")).cut(Var("bore")))
    return p


def slotted_link(s: Sampler) -> Program:
    length = s.mm("length", 40, 200)
    width = s.mm("width", 12, min(50, length / 3))
    thick = s.mm("thickness", 3, 15)
    hole = s.mm("pivot_hole", 3, width * 0.5)
    centers = round(length - width, 1)
    p = Program()
    w = p.workplane("XY").slot2D(length, width).extrude(thick)
    if s.chance("bosses", 0.4):
        boss_h = s.mm("boss_height", 2, 10)
        w = w.faces(">Z").workplane().pushPoints([(-centers / 2, 0), (centers / 2, 0)]).circle(
            width / 2).extrude(boss_h)
    w = w.faces(">Z").workplane().pushPoints([(-centers / 2, 0), (centers / 2, 0)]).hole(hole)
    if centers - hole - width > 12 and s.chance("center_slot", 0.7):
        slot_len = s.mm("slot_length", 8, centers - hole - width / 2)
        slot_w = s.mm("slot_width", 3, max(3.5, width * 0.5))
        w = w.faces("<Z").workplane().slot2D(slot_len, slot_w).cutThruAll()
    if s.chance("chamfer_top", 0.3):
        w = w.faces(">Z").chamfer(0.5)
    p.result(w)
    return p


# Hex nut sizes: width across flats, tap-drill bore.
NUTS: dict[str, tuple[float, float]] = {
    "M4": (7, 3.3), "M5": (8, 4.2), "M6": (10, 5.0), "M8": (13, 6.8), "M10": (16, 8.5), "M12": (18, 10.2),
    "M16": (24, 14.0),
}


def hex_nut(s: Sampler) -> Program:
    across, bore = NUTS[s.pick("size", tuple(NUTS))]
    height = s.mm("height", across * 0.4, across * 1.5 if s.chance("coupling", 0.2) else across)
    corners = round(across / math.cos(math.pi / 6), 2)
    kind = s.pick("kind", ("nut", "flange_nut", "cap_nut"))
    p = Program()
    w = p.workplane("XY").polygon(6, corners).extrude(height)
    if kind == "flange_nut":
        flange_d = s.mm("flange_diameter", corners * 1.15, corners * 1.5)
        w = w.faces("<Z").workplane().circle(flange_d / 2).extrude(s.mm("flange_height", 1, height / 3))
    w = w.faces(">Z").chamfer(round(across * 0.06, 1))
    if kind == "cap_nut":
        w = w.faces("<Z").workplane().hole(bore, round(height * 0.7, 1))
    else:
        w = w.faces(">Z").workplane().hole(bore)
    p.result(w)
    return p


def tube_clip(s: Sampler) -> Program:
    pipe = s.mm("pipe_diameter", 6, 40)
    wall = s.mm("wall", 1.5, 4)
    width = s.mm("width", 8, 30)
    tab = s.mm("tab_length", 8, 25)
    r_in, r_out = pipe / 2, pipe / 2 + wall
    center = r_out + 1  # the ring stands on the tabs; the bore stays clear of them
    p = Program()
    p.assign("base", p.workplane("XY").box(2 * (r_out + tab), width, wall, centered=(True, True, False)))
    p.assign("ring", p.workplane("XZ").center(0, center).circle(r_out).extrude(width / 2, both=True))
    p.assign("bore", p.workplane("XZ").center(0, center).circle(r_in).extrude(width, both=True))
    p.assign("clip", p.chain("base").union(Var("ring")).cut(Var("bore")))
    screw = s.screw("screw", ("M3", "M4", "M5"))
    x = round(r_out + tab / 2, 1)
    p.result(p.chain("clip").faces("<Z").workplane(centerOption="CenterOfBoundBox")
             .pushPoints([(-x, 0), (x, 0)]).hole(screw["clear"]))
    return p


def freeform(s: Sampler) -> Program:
    """A random base sketch extruded on 1 workplane, then 1-4 random features on up to 2 more."""
    rng = s.rng
    size = s.mm("size", 20, 120)
    depth = s.mm("depth", 12, max(13, size))
    height = s.mm("height", 4, max(5, size * 0.6))
    p = Program()
    base = s.pick("base", ("rect", "circle", "polygon", "slot", "profile"))
    plane = s.pick("plane", ("XY", "XY", "XY", "XZ", "YZ"))
    # Selectors relative to the sketch plane: the face the extrusion ends on, edges along it, sides.
    top_face, along, sides = {"XY": (">Z", "|Z", (">X", "<X", ">Y", "<Y")),
                         "XZ": ("<Y", "|Y", (">X", "<X", ">Z", "<Z")),
                         "YZ": (">X", "|X", (">Y", "<Y", ">Z", "<Z"))}[plane]
    w = p.workplane(plane)
    if base == "rect":
        w = w.rect(size, depth)
    elif base == "circle":
        w = w.circle(size / 2)
        depth = size
    elif base == "polygon":
        w = w.polygon(s.count("sides", 3, 8), size)
        depth = size * 0.8
    elif base == "slot":
        w = w.slot2D(size, min(depth, size * 0.6))
        depth = min(depth, size * 0.6)
    else:  # a closed outline with a straight edge and an arc
        x, y = size / 2, depth / 2
        bulge = s.mm("arc_bulge", 2, max(2.5, y * 0.8))
        w = (w.moveTo(-x, -y).lineTo(x, -y).lineTo(x, round(y * 0.4, 1))
             .threePointArc((0, y + bulge), (-x, round(y * 0.4, 1))).close())
    both = s.chance("symmetric", 0.3)
    w = w.extrude(height / 2, both=True) if both else w.extrude(height)
    # Dimensions of the part along the sketch plane, used to size features.
    span = min(size, depth)
    features = s.count("features", 1, 4)
    shelled = False
    mirrored = False
    for i in range(features):
        kinds = ("boss", "pocket", "holes", "polar", "edge", "edge", "side_hole", "cbore", "shell", "mirror")
        if shelled:  # the end face is open now: only edges and sides are left to work on
            kinds = ("edge", "side_hole")
        kind = s.pick(f"feature_{i}", kinds)
        if kind == "boss":
            boss = s.mm(f"boss_{i}", span * 0.2, span * 0.6)
            top = w.faces(top_face).workplane()
            shape = s.pick(f"boss_shape_{i}", ("circle", "rect", "polygon"))
            top = top.circle(boss / 2) if shape == "circle" else top.rect(boss, boss) if shape == "rect" \
                else top.polygon(6, boss)
            w = top.extrude(s.mm(f"boss_height_{i}", 2, max(3, height)))
        elif kind == "pocket":
            pocket = s.mm(f"pocket_{i}", span * 0.2, span * 0.5)
            top = w.faces(top_face).workplane()
            if rng.random() < 0.3:
                top = top.slot2D(pocket * 1.5, pocket / 2)
            else:
                top = top.rect(pocket, pocket * 0.7)
            w = top.cutBlind(-s.mm(f"pocket_depth_{i}", 1, max(1.5, height * 0.5)))
        elif kind == "holes":
            d = s.mm(f"hole_{i}", 2, max(2.5, span * 0.12))
            gap = round(span * 0.5, 1)
            w = w.faces(top_face).workplane().rarray(gap, gap, 2, 2).hole(d)
        elif kind == "polar":
            d = s.mm(f"hole_{i}", 2, max(2.5, span * 0.1))
            n = s.count(f"polar_count_{i}", 3, 8)
            w = w.faces(top_face).workplane().polarArray(round(span * 0.3, 1), 0, 360, n).hole(d)
        elif kind == "edge":
            r = s.mm(f"edge_size_{i}", 0.5, max(1, min(height, span) * 0.15))
            straight = base in ("rect", "polygon", "profile")  # round outlines have no edges along the axis
            selector = s.pick(f"edge_select_{i}", (along, top_face, along) if straight else (top_face,))
            w = w.edges(selector)
            w = w.fillet(r) if rng.random() < 0.5 else w.chamfer(r)
        elif kind == "side_hole":
            d = s.mm(f"side_hole_{i}", 2, max(2.5, height * 0.4))
            w = w.faces(s.pick(f"side_{i}", sides)).workplane(
                centerOption="CenterOfBoundBox").hole(d, round(span * 0.4, 1))
        elif kind == "cbore":
            screw = s.screw(f"screw_{i}", ("M3", "M4", "M5"))
            face = w.faces(top_face).workplane()
            if rng.random() < 0.5:
                w = face.cboreHole(screw["clear"], screw["cbore"], screw["cbore_depth"])
            else:
                w = face.cskHole(screw["clear"], screw["csk"], 90)
        elif kind == "shell" and not shelled and i == 0:
            w = w.faces(top_face).shell(-s.mm(f"shell_{i}", 1, max(1.5, min(height, span) * 0.15)))
            shelled = True
        elif kind == "mirror" and not mirrored:
            # Shift within the sketch plane, then mirror: two overlapping lobes make one solid.
            shift = round(span * 0.25, 1)
            offset, mirror_plane = ((0, shift, 0), "XZ") if plane == "YZ" else ((shift, 0, 0), "YZ")
            w = w.translate(offset).mirror(mirror_plane, union=True)
            mirrored = True
    p.result(w)
    return p


FAMILIES: dict[str, Callable[[Sampler], Program]] = {
    "mounting_plate": mounting_plate,
    "l_bracket": l_bracket,
    "u_channel": u_channel,
    "z_bracket": z_bracket,
    "flange": flange,
    "standoff": standoff,
    "spacer": spacer,
    "stepped_shaft": stepped_shaft,
    "pulley": pulley,
    "enclosure": enclosure,
    "gusset_bracket": gusset_bracket,
    "shaft_clamp": shaft_clamp,
    "flanged_bushing": flanged_bushing,
    "knob": knob,
    "hinge_leaf": hinge_leaf,
    "pillow_block": pillow_block,
    "slotted_link": slotted_link,
    "hex_nut": hex_nut,
    "tube_clip": tube_clip,
    "freeform": freeform,
}
