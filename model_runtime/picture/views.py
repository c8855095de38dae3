"""Which way the picture looks at the part: FreeCAD's isometric view or a straight view, and how far
the picture is turned in its own plane.

A picture's straight outline edges say it. In FreeCAD's isometric view every edge along X, Y or Z
runs vertical or at +-30 deg; in a straight view (Front, Top, Right, ...) they run horizontal or
vertical. A picture turned in its plane (a photo, a tilted screenshot) turns every one of them by the
same angle. ``read_view`` fits both families of directions to the outline's straight stretches and
answers only when the evidence is clear; anything else (round parts, few straight edges, a clean
isometric render) reads as the isometric view, unturned, which is what the model was trained on.

``upright`` turns a picture back (the part on white); ``straight_hypotheses`` reads the envelope
programs a straight view supports: the silhouette is the part's profile in the view plane, extruded
along the view axis by a depth the picture cannot show (``DEPTH_SHARE``), a box, a cylinder seen
end on, and the silhouette turned about its axis of symmetry. Plain numpy: no renderer, no sandbox.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image

from model_runtime import protocol
from model_runtime.picture.envelope import (
    _PLANE,
    Hypothesis,
    Silhouette2D,
    _fmt,
    _iou,
    _normaliser,
    _points_text,
    box_program,
    cylinder_program,
    extrude_program,
    outline_loop,
    revolve_program,
    simplify_indices,
    trace_outline,
)
from model_runtime.picture.images import foreground_mask
from model_runtime.render import ISOMETRIC_VIEW, View

ISOMETRIC = protocol.VIEW_ISOMETRIC
STRAIGHT = "front"  # what a straight view is read as: one picture cannot tell Front from Top or Right


@dataclass(frozen=True)
class StraightView:
    """A FreeCAD standard view along a model axis: its camera, the axis it looks along, and whether
    the picture's right/up run against the sketch plane's own u/v (``envelope._PLANE``)."""

    view: View
    axis: str
    flip_u: bool = False
    flip_v: bool = False


# FreeCAD's standard views (View > Standard views), camera angles as ``render.View`` takes them:
# Front looks along +Y with Z up, Top down -Z with Y up, Right along -X with Z up.
STRAIGHT_VIEWS: dict[str, StraightView] = {
    "front": StraightView(View(-90.0, 0.0), "Y"),
    "rear": StraightView(View(90.0, 0.0), "Y", flip_u=True),
    "top": StraightView(View(-90.0, 90.0), "Z"),
    "bottom": StraightView(View(-90.0, -90.0), "Z", flip_v=True),
    "right": StraightView(View(0.0, 0.0), "X"),
    "left": StraightView(View(180.0, 0.0), "X", flip_u=True),
}
VIEW_NAMES = (ISOMETRIC, *STRAIGHT_VIEWS)

# Straight-edge directions (deg, y up, modulo 180) of each kind of view, unturned.
_DIRECTIONS = {ISOMETRIC: (30.0, 90.0, 150.0), "straight": (0.0, 90.0)}
WORK_PX = 400  # the outline is read with the part's longer side at most this many pixels
MIN_SEGMENT = 0.08  # a straight stretch counts from this share of the part's longer side
# px: how far the outline may stray from a straight stretch. A turned picture's outline wanders by
# 1.5 px (resampled edge lines): at 1.5 its long edges broke into pieces too short to count.
OUTLINE_TOLERANCE = 2.0
TOLERANCE_DEG = 1.5  # a stretch within this of a direction of the family agrees with it
MAX_TURN_DEG = 25.0  # turns searched: +-this (a larger one is ambiguous with another family)
MIN_TURN_DEG = 2.0  # a smaller turn is left alone (a clean render is never touched)
MIN_EVIDENCE = 0.35  # share of the outline's length that must be straight stretches to decide
MIN_AGREE = 0.6  # share of the straight stretches the chosen family and turn must explain
# A straight view must explain more: its parts' outlines are all horizontal and vertical (1.0 on every
# prismatic part tried), while an isometric knob's flutes give a few horizontal stretches (0.65).
MIN_AGREE_STRAIGHT = 0.8
MARGIN = 0.2  # by how much more than the alternative (the other family, or no turn) it must explain
MIN_DIRECTION = 0.04  # share of the stretches a direction must hold to count as present (a plate's ends)
# The depth a straight view cannot show, as a share of the silhouette's larger side, per view axis.
# Renders from the view look alike at every depth, so the search cannot choose one: this prior is the
# answer. Box IoU of the guessed depth against the true one, profile taken as right, on the dev half
# of training/eval_oof (25 parts): along Y (Front) 0.4 -> 0.55, 0.6 -> 0.67, 0.75 -> 0.68, 1.0 -> 0.65;
# along Z (Top) 0.25 -> 0.53, 0.4 -> 0.57, 0.6 -> 0.50, 0.75 -> 0.43; along X (Right) rising to 0.61 at
# 1.0. Parts lie flat on XY and run long along X: a rule of CAD habit more than of these parts.
DEPTH_SHARE = {"X": 1.0, "Y": 0.75, "Z": 0.4}
SYMMETRY = 0.95  # mask IoU with its mirror image above which a silhouette is read as symmetric
ROUND = 0.95  # mask IoU with the inscribed ellipse above which a silhouette reads as a disc


@dataclass(frozen=True)
class ViewReading:
    """What ``read_view`` found: the view's name (``VIEW_NAMES``), the picture's turn in degrees
    (counter-clockwise; 0 = upright or left alone) and the evidence behind both."""

    name: str = ISOMETRIC
    rotation_deg: float = 0.0
    evidence: float = 0.0  # share of the outline that is straight stretches
    agreement: float = 0.0  # share of those the chosen family at the chosen turn explains
    given: bool = False  # the user named the view (nothing was read from the picture)

    @property
    def straight(self) -> bool:
        return self.name in STRAIGHT_VIEWS

    @property
    def plain(self) -> bool:
        """The isometric view, unturned: the pipeline's old path."""
        return self.name == ISOMETRIC and self.rotation_deg == 0.0

    def render_view(self) -> View:
        return STRAIGHT_VIEWS[self.name].view if self.straight else ISOMETRIC_VIEW

    def message(self) -> str:
        """Plain words for the user; "" for the plain isometric view."""
        parts = []
        if self.rotation_deg:
            parts.append(f"the picture was turned {abs(self.rotation_deg):.1f} deg "
                         f"{'anticlockwise' if self.rotation_deg > 0 else 'clockwise'} and was set upright")
        if self.straight and self.given:
            parts.append(f"it was read as the {self.name.capitalize()} view, as asked")
        elif self.straight:
            parts.append(f"it reads as a straight view (taken as {self.name.capitalize()}; a single straight "
                         "view cannot tell Front from Top or Right)")
        if self.straight:  # a part turned about an axis the picture shows has its depth from its width
            parts[-1] += (", so the depth along the view is a guess unless the part is round about an axis "
                          "it shows")
        return "; ".join(parts)

    def to_dict(self) -> dict[str, object]:
        return {"name": self.name, "rotation_deg": round(self.rotation_deg, 2),
                "message": self.message()}


def straight_stretches(picture: Image.Image) -> tuple[np.ndarray, np.ndarray, float] | None:
    """(directions in deg modulo 180 with y up, lengths, outline length) of the straight stretches of
    the part's outline, lengths as shares of the outline; None without a part."""
    mask = foreground_mask(picture)
    if mask.all() or mask.sum() < 0.001 * mask.size:
        return None
    ys, xs = np.nonzero(mask)
    crop = mask[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]
    scale = min(1.0, WORK_PX / max(crop.shape))
    if scale < 1.0:
        size = (max(2, round(crop.shape[1] * scale)), max(2, round(crop.shape[0] * scale)))
        small = Image.fromarray(crop.astype(np.uint8) * 255).resize(size, Image.Resampling.BOX)
        crop = np.asarray(small) > 127
    loop = outline_loop(crop)
    if loop is None or len(loop) < 16:
        return None
    steps = np.hypot(*np.diff(np.concatenate([loop, loop[:1]]), axis=0).T)
    perimeter = float(steps.sum())
    keep = simplify_indices(loop, OUTLINE_TOLERANCE)
    shortest = MIN_SEGMENT * max(crop.shape)
    directions, lengths = [], []
    for i, j in zip(keep, [*keep[1:], len(loop)], strict=True):
        points = loop[i : j + 1] if j < len(loop) else np.concatenate([loop[i:], loop[:1]])
        length = float(np.hypot(*(points[-1] - points[0])))
        if length < shortest or len(points) < 4:
            continue
        # the direction of the least-squares line through the stretch's corners (more exact than
        # its end points on a staircase of pixels)
        centred = points - points.mean(axis=0)
        _, _, vt = np.linalg.svd(centred, full_matrices=False)
        dx, dy = vt[0]
        directions.append(math.degrees(math.atan2(-dy, dx)) % 180.0)
        lengths.append(length / perimeter)
    return np.array(directions), np.array(lengths), perimeter


def _off(directions: np.ndarray, family: tuple[float, ...], turn: float) -> np.ndarray:
    """Signed distance (deg) of each direction from the nearest of ``family`` turned by ``turn``."""
    out = np.full(directions.shape, 180.0)
    for base in family:
        d = (directions - base - turn + 90.0) % 180.0 - 90.0
        out = np.where(np.abs(d) < np.abs(out), d, out)
    return out


def _agreement(directions: np.ndarray, lengths: np.ndarray, family: tuple[float, ...], turn: float) -> float:
    """Share of the stretches' length within ``TOLERANCE_DEG`` of ``family`` turned by ``turn``; 0
    unless two of its directions each hold ``MIN_DIRECTION`` of it: any single direction fits every
    family at some turn, so one alone (a thin plate's long sides, a shaft's two sides) proves nothing."""
    total = lengths.sum()
    if total <= 0:
        return 0.0
    held = [float(lengths[np.abs(_off(directions, (base,), turn)) <= TOLERANCE_DEG].sum() / total)
            for base in family]
    if sum(h >= MIN_DIRECTION for h in held) < 2:
        return 0.0
    return sum(held)


def _best_turn(directions: np.ndarray, lengths: np.ndarray, family: tuple[float, ...]) -> tuple[float, float]:
    """(turn, agreement): the smallest turn that explains most of the stretches, refined to their
    length-weighted mean offset."""
    turns = np.arange(-MAX_TURN_DEG, MAX_TURN_DEG + 1e-9, 0.25)
    scores = np.array([_agreement(directions, lengths, family, t) for t in turns])
    tops = turns[scores >= scores.max() - 1e-9]
    turn = float(tops[np.argmin(np.abs(tops))])
    off = _off(directions, family, turn)
    inside = np.abs(off) <= TOLERANCE_DEG
    if inside.any():
        turn += float(np.average(off[inside], weights=lengths[inside]))
    return turn, _agreement(directions, lengths, family, turn)


def read_view(picture: Image.Image, name: str | None = None) -> ViewReading:
    """The view and the turn the picture's straight outline edges support (see the module's text);
    the plain isometric reading whenever the evidence is not clear. A ``name`` from ``VIEW_NAMES``
    is the view the user says it is: taken as said, unturned."""
    if name is not None:
        if name not in VIEW_NAMES:
            raise ValueError(f"unknown view {name!r}; one of {', '.join(VIEW_NAMES)}")
        return ViewReading(name, given=True)
    found = straight_stretches(picture)
    if found is None:
        return ViewReading()
    directions, lengths, _ = found
    evidence = float(lengths.sum())
    if evidence < MIN_EVIDENCE:
        return ViewReading(evidence=evidence)
    iso_turn, iso_agree = _best_turn(directions, lengths, _DIRECTIONS[ISOMETRIC])
    st_turn, st_agree = _best_turn(directions, lengths, _DIRECTIONS["straight"])
    # both directions present (``_agreement``): horizontal stretches, which isometric edges never are
    if st_agree >= MIN_AGREE_STRAIGHT and st_agree >= iso_agree + MARGIN:
        name, turn, agree, family = STRAIGHT, st_turn, st_agree, _DIRECTIONS["straight"]
    else:
        name, turn, agree, family = ISOMETRIC, iso_turn, iso_agree, _DIRECTIONS[ISOMETRIC]
    if abs(turn) < MIN_TURN_DEG:  # a slight turn is left alone; the view still reads as it is
        return ViewReading(name, 0.0, evidence, agree)
    unturned = _agreement(directions, lengths, family, 0.0)
    if agree >= MIN_AGREE and agree >= unturned + MARGIN:
        return ViewReading(name, round(turn, 2), evidence, agree)
    if name != ISOMETRIC and unturned < MIN_AGREE:
        return ViewReading(evidence=evidence)  # a straight view only if turned, and the turn is unclear
    return ViewReading(name, 0.0, evidence, unturned)


def upright(picture: Image.Image, rotation_deg: float) -> Image.Image:
    """``picture`` turned back by ``rotation_deg`` (counter-clockwise turn undone), the part on white:
    the turned background's corners would otherwise read as part of the silhouette."""
    if rotation_deg == 0.0:
        return picture
    mask = Image.fromarray(foreground_mask(picture).astype(np.uint8) * 255)
    turned = picture.convert("RGB").rotate(-rotation_deg, Image.Resampling.BICUBIC, expand=True,
                                           fillcolor=(255, 255, 255))
    turned_mask = np.asarray(mask.rotate(-rotation_deg, Image.Resampling.BILINEAR, expand=True)) > 127
    out = np.asarray(turned).copy()
    out[~turned_mask] = 255
    return Image.fromarray(out, "RGB")


# ------------------------------------------------------------------------------ straight views


def _on_plane(points: np.ndarray, straight: StraightView) -> np.ndarray:
    """Picture (right, up) points -> the sketch plane's (u, v) of the view's axis."""
    out = points.copy()
    if straight.flip_u:
        out[:, 0] = -out[:, 0]
    if straight.flip_v:
        out[:, 1] = -out[:, 1]
    return out


def _ellipse_fit(mask: np.ndarray) -> float:
    h, w = mask.shape
    yy, xx = np.mgrid[0:h, 0:w]
    inside = ((xx + 0.5 - w / 2) / (w / 2)) ** 2 + ((yy + 0.5 - h / 2) / (h / 2)) ** 2 <= 1.0
    return _iou(inside, mask)


def _turned_profile(mask: np.ndarray, vertical: bool) -> np.ndarray | None:
    """(radius, position) of the silhouette's half about its centre line (vertical or horizontal), in
    pixels with the position upwards / rightwards, simplified; None when a row is empty."""
    m = mask if vertical else mask.T[::-1]  # turn a horizontal axis upright: rows run along the axis
    h, w = m.shape
    radii = []
    for row in m[::-1]:  # bottom row first: positions rise
        xs = np.flatnonzero(row)
        if len(xs) == 0:
            return None
        radii.append(max(w / 2 - xs.min(), xs.max() + 1 - w / 2))
    points = [(0.0, 0.0)]
    for k, r in enumerate(radii):
        points += [(float(r), float(k)), (float(r), float(k + 1))]
    points.append((0.0, float(h)))
    loop = np.array(points)
    keep = sorted(set(simplify_indices(loop, 1.0)) | {0, len(loop) - 1})
    profile = loop[keep]
    return profile if len(profile) >= 3 else None


def _picture_to_plane(points: np.ndarray, w: float, h: float) -> np.ndarray:
    """Work-mask pixel points (x right, y down) -> (right, up) about the silhouette's centre."""
    return np.stack([points[:, 0] - w / 2, h / 2 - points[:, 1]], axis=1)


MIN_HOLE = 0.002  # a see-through region counts as a hole from this share of the silhouette's area


def round_holes(sil: Silhouette2D) -> list[tuple[np.ndarray, float]]:
    """(centre in work-mask pixels, diameter) of each round hole the picture shows its background
    through: what a straight view of a plate or flange sees of its through holes."""
    from scipy import ndimage

    if sil.holes is None or not sil.holes.any():
        return []
    labels, count = ndimage.label(sil.holes)
    out = []
    for index in range(1, count + 1):
        piece = labels == index
        ys, xs = np.nonzero(piece)
        hh, ww = ys.max() - ys.min() + 1, xs.max() - xs.min() + 1
        if piece.sum() < max(9, MIN_HOLE * sil.mask.sum()) or abs(hh - ww) > 0.15 * max(hh, ww):
            continue
        if _ellipse_fit(piece[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]) < 0.85:
            continue  # a slot or a window: the outline profile keeps it closed
        centre = np.array([(xs.min() + xs.max() + 1) / 2, (ys.min() + ys.max() + 1) / 2])
        out.append((centre, float((hh + ww) / 2)))
    return out


def holes_lines(axis: str, holes: list[tuple[np.ndarray, float]]) -> str:
    """Lines cutting ``holes`` ((u, v) centre on the plane of ``axis``, diameter) through the part."""
    lines = "\n# holes seen through the part along the view\n"
    groups: dict[str, list[np.ndarray]] = {}
    for centre, d in holes:
        groups.setdefault(_fmt(d), []).append(centre)
    for n, (d, centres) in enumerate(sorted(groups.items()), start=1):
        name = "hole_diameter" if len(groups) == 1 else f"hole_diameter_{n}"
        where = _points_text(np.array(centres))
        lines += (f"{name} = {d}\n"
                  f"result = result.cut(cq.Workplane(\"{_PLANE[axis]}\").pushPoints({where})"
                  f".circle({name} / 2).extrude(length))\n")
    return lines


def straight_hypotheses(picture: Image.Image, name: str = STRAIGHT) -> list[Hypothesis]:
    """The envelope programs a straight view ``name`` supports (best guess first); [] without a part.

    Sizes in millimetres with the largest 50, the depth the view axis's ``DEPTH_SHARE`` of the
    silhouette's larger side; the names say the model axis (``box``, ``extrude_y``, ``cylinder_y``,
    ``revolve_z`` ...), so the search treats them as it treats the isometric envelopes."""
    straight = STRAIGHT_VIEWS[name]
    sil = Silhouette2D.of(picture)
    if sil is None:
        return []
    w, h = sil.width, sil.height
    depth = DEPTH_SHARE[straight.axis] * max(w, h)
    k = _normaliser([w, h, depth])
    across = {"Y": ("X", "Z"), "Z": ("X", "Y"), "X": ("Y", "Z")}[straight.axis]
    sizes = {across[0]: w * k, across[1]: h * k, straight.axis: depth * k}
    out = [Hypothesis("box", box_program(sizes["X"], sizes["Y"], sizes["Z"]), float(sil.mask.mean()))]
    polygon = trace_outline(sil.mask)
    if polygon is not None and len(polygon) <= 60:
        points = _on_plane(_picture_to_plane(polygon, w, h), straight) * k
        code = extrude_program(straight.axis, points, depth * k)
        holes = [(_on_plane(_picture_to_plane(c[None], w, h), straight)[0] * k, d * k)
                 for c, d in round_holes(sil)]
        if holes:
            code += holes_lines(straight.axis, holes)
        out.append(Hypothesis(f"extrude_{straight.axis.lower()}", code, 1.0))
    if abs(w - h) <= 0.05 * max(w, h) and _ellipse_fit(sil.mask) >= ROUND:
        out.append(Hypothesis(f"cylinder_{straight.axis.lower()}",
                              cylinder_program(straight.axis, w * k, depth * k), _ellipse_fit(sil.mask)))
    for vertical in (True, False):
        mirrored = sil.mask[:, ::-1] if vertical else sil.mask[::-1]
        fit = _iou(sil.mask, mirrored)
        if fit < SYMMETRY:
            continue
        profile = _turned_profile(sil.mask, vertical)
        if profile is None:
            continue
        axis = across[1] if vertical else across[0]  # the picture's up (or right) in the model
        out.append(Hypothesis(f"revolve_{axis.lower()}", revolve_program(axis, profile * k), fit))
    return out
