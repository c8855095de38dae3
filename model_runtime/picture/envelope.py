"""What the picture alone says about a part: its envelope, as CadQuery programs to try.

FreeCAD's isometric view is orthographic from (+1, -1, +1) with Z up. A point (x, y, z) lands on
the picture at right = (x + y) / sqrt 2 and up = (-x + y + 2 z) / sqrt 6. From the silhouette
(the part against its background, in pixels) this module reads:

- a **box**: its projection is a hexagon whose width and height fix two of the three sizes; the
  third (how the width splits between X and Y) is the one that fits the silhouette's hull best;
- a **cylinder** along X, Y or Z: width and height fix diameter and length; the fit of two end
  ellipses' hull to the silhouette's hull tells a round part (>= 0.985 on round parts);
- an **extruded silhouette** along X, Y or Z: the silhouette eroded by the projected extrusion is
  the projected profile, mapped back onto its plane (an L or U bracket's legs, a profile bar);
- a **revolved profile** about the best cylinder's axis: the silhouette's width across that axis,
  position by position, is the diameter there (turned parts).

Each hypothesis is a small, readable CadQuery program whose first lines name its free sizes, so
the search (``model_runtime.picture.search``) can fit them by rendering and comparing. Sizes are
in millimetres with the largest dimension 50 (a picture has no scale; ``--target-size`` sets it).
Plain numpy and scipy: no renderer, no sandbox.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from model_runtime.picture.images import part_and_see_through

SQ2, SQ6 = math.sqrt(2.0), math.sqrt(6.0)
LARGEST_MM = 50.0  # the largest dimension of every envelope (the picture has no scale)
WORK_PX = 160  # the silhouette is resampled so its longer side has this many pixels
ROUND_FIT = 0.985  # cylinder-hull IoU above which a part reads as round (measured on hidden sets)
TURNED_FIT = 0.9  # above this a revolved silhouette is worth a try (a hub on a disc fits ~0.92)
TURNED_SYMMETRY = 0.95  # ... and where the outline is its own mirror image (``mirror_symmetry``)
SIDE_DISAGREE = 1.5  # the ends' height (``side_height``) exceeds the outline's by more: both are tried
# No size under this share of the part's: a plate 1-3 px thick in the picture reads far too thin, and
# volume IoU punishes a thin guess as much as a thick one (a 1 mm plate of 50 mm scored 0.01).
MIN_SHARE = 0.04
SPLIT_AGREE = 0.08  # the lowest point's split of the width is used within this of the hull fit's
EXTRUDE_LENGTHS = ((1.0, ""),)  # extrusion lengths tried, as shares of the box's size (half: worse)

# Unit axis -> its image direction per unit length (x right, y down), for FreeCAD's isometric view.
AXIS_DIRECTION = {
    "X": np.array([1.0 / SQ2, 1.0 / SQ6]),
    "Y": np.array([1.0 / SQ2, -1.0 / SQ6]),
    "Z": np.array([0.0, -2.0 / SQ6]),
}


def project(points: np.ndarray) -> np.ndarray:
    """(n, 3) model points -> (n, 2) image points (x right, y down), in model units."""
    x, y, z = points[:, 0], points[:, 1], points[:, 2]
    return np.stack([(x + y) / SQ2, -(-x + y + 2.0 * z) / SQ6], axis=1)


@dataclass(frozen=True)
class Hypothesis:
    """One envelope guess: ``name`` (box, cylinder_z, extrude_y, revolve_z ...), its program, and
    how well its projection's hull fits the silhouette's hull (0..1; what the picture supports
    before any render)."""

    name: str
    code: str
    hull_fit: float

    def to_dict(self) -> dict[str, object]:
        return {"name": self.name, "hull_fit": round(self.hull_fit, 4)}


@dataclass
class Silhouette2D:
    """The part's mask in pixels (True = part), cropped to the part, longer side ``WORK_PX``; ``holes``:
    where the picture shows its background through the part, in the same frame."""

    mask: np.ndarray
    holes: np.ndarray | None = None

    @classmethod
    def of(cls, picture: Image.Image) -> Silhouette2D | None:
        from scipy import ndimage

        mask, through = part_and_see_through(picture)
        if mask.all() or mask.sum() < 0.001 * mask.size:
            return None
        labels, count = ndimage.label(mask, structure=np.ones((3, 3), bool))
        areas = ndimage.sum_labels(mask, labels, index=np.arange(1, count + 1))
        keep = np.isin(labels, np.flatnonzero(areas >= 0.02 * areas.max()) + 1)
        keep = ndimage.binary_fill_holes(keep)  # the envelope: a through hole is a later feature
        ys, xs = np.nonzero(keep)
        box = (slice(ys.min(), ys.max() + 1), slice(xs.min(), xs.max() + 1))
        h, w = keep[box].shape
        scale = WORK_PX / max(h, w)
        size = (max(2, round(w * scale)), max(2, round(h * scale)))

        def small(region: np.ndarray) -> np.ndarray:
            image = Image.fromarray(region[box].astype(np.uint8) * 255)
            return np.asarray(image.resize(size, Image.Resampling.BILINEAR)) > 127

        return cls(small(keep), small(through & keep))

    @property
    def width(self) -> float:
        return float(self.mask.shape[1])

    @property
    def height(self) -> float:
        return float(self.mask.shape[0])

    def hull(self) -> np.ndarray:
        return _hull_mask(self.mask)


def _hull_mask(mask: np.ndarray) -> np.ndarray:
    ys, xs = np.nonzero(mask)
    pts = np.stack([xs, ys], axis=1).astype(float)
    corners = np.concatenate([pts, pts + [1, 0], pts + [0, 1], pts + [1, 1]])
    hull = _convex_hull(corners)
    return _raster(hull, mask.shape)


def _convex_hull(points: np.ndarray) -> np.ndarray:
    """Monotone chain; (k, 2) counter-clockwise."""
    pts = np.unique(np.round(points, 6), axis=0)
    if len(pts) < 3:
        return pts

    def cross(o, a, b):
        return (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])

    lower: list = []
    for p in pts:
        while len(lower) >= 2 and cross(lower[-2], lower[-1], p) <= 0:
            lower.pop()
        lower.append(p)
    upper: list = []
    for p in pts[::-1]:
        while len(upper) >= 2 and cross(upper[-2], upper[-1], p) <= 0:
            upper.pop()
        upper.append(p)
    return np.array(lower[:-1] + upper[:-1])


def _raster(polygon: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    image = Image.new("L", (shape[1], shape[0]), 0)
    if len(polygon) >= 3:
        ImageDraw.Draw(image).polygon([tuple(p) for p in polygon], fill=255)
    return np.asarray(image) > 127


def _fit_to_frame(points: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Image points scaled and shifted so their bounding box fills a (h, w) frame."""
    lo, hi = points.min(axis=0), points.max(axis=0)
    span = np.maximum(hi - lo, 1e-9)
    return (points - lo) / span * np.array([shape[1], shape[0]])


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 0.0


def _box_corners(a: float, b: float, c: float) -> np.ndarray:
    return np.array([[x, y, z] for x in (0, a) for y in (0, b) for z in (0, c)], float)


def _cylinder_points(axis: str, d: float, h: float, n: int = 48) -> np.ndarray:
    t = np.linspace(0, 2 * math.pi, n, endpoint=False)
    u, v = d / 2 * np.cos(t), d / 2 * np.sin(t)
    ends = []
    for s in (0.0, h):
        if axis == "Z":
            ends.append(np.stack([u, v, np.full(n, s)], axis=1))
        elif axis == "X":
            ends.append(np.stack([np.full(n, s), u, v], axis=1))
        else:
            ends.append(np.stack([u, np.full(n, s), v], axis=1))
    return np.concatenate(ends)


def _hull_fit(points3d: np.ndarray, target_hull: np.ndarray) -> float:
    projected = _fit_to_frame(project(points3d), target_hull.shape)
    return _iou(_raster(_convex_hull(projected), target_hull.shape), target_hull)


def fit_box(sil: Silhouette2D, hull: np.ndarray | None = None) -> tuple[tuple[float, float, float], float]:
    """(a, b, c) in pixels (X, Y, Z sizes) and the hull fit of the best box."""
    hull = sil.hull() if hull is None else hull
    w, h = sil.width, sil.height
    best = ((w / SQ2 / 2, w / SQ2 / 2, 1.0), -1.0)
    s = SQ2 * w  # a + b
    c_total = (SQ6 * h - s) / 2.0  # c = (sqrt6 H - (a + b)) / 2
    c = max(c_total, MIN_SHARE * s / 2)
    for t in np.linspace(0.03, 0.97, 48):
        a, b = s * t, s * (1 - t)
        fit = _hull_fit(_box_corners(a, b, c), hull)
        if fit > best[1]:
            best = ((a, b, c), fit)
    # The lowest point of a box's outline is its front corner: it splits the width into X and Y
    # exactly (the hull fit steps by 2 % and rounded corners blur it). Trusted where the two agree:
    # a part whose lowest point is no corner (a hook's tip, a round part's ear) disagrees.
    t_hull = best[0][0] / s
    t_low = lowest_point_share(sil.mask)
    if abs(t_low - t_hull) <= SPLIT_AGREE:
        a, b = s * t_low, s * (1 - t_low)
        best = ((a, b, c), _hull_fit(_box_corners(a, b, c), hull))
    return best


def side_height(mask: np.ndarray) -> float:
    """A box's height (Z, px) read from its outline's left and right ends: each is a vertical edge
    2 Z / sqrt6 long. Unlike the height from the whole outline it does not assume the top is at the
    back corner (a flat arm with a raised end, a stepped block read 0.16-0.4x their height that way)."""
    cols = mask.shape[1]
    runs = []
    for x in (min(1, cols - 1), max(cols - 2, 0)):
        ys = np.flatnonzero(mask[:, x])
        runs.append(float(ys.max() - ys.min() + 1) if len(ys) else 0.0)
    return max(runs) * SQ6 / 2.0


def mirror_symmetry(mask: np.ndarray) -> float:
    """IoU of the outline with its own left-right mirror image: a part turned about Z is symmetric
    (>= 0.95 on 16 of 17 turned third-party parts, <= 0.89 on the others but a square profile bar),
    however far its outline is from a cylinder's (screws and stepped shafts fit one at 0.77-0.83)."""
    return _iou(mask, mask[:, ::-1])


def lowest_point_share(mask: np.ndarray) -> float:
    """Where the outline's lowest row lies across the width (0 left .. 1 right), mid-run."""
    ys, xs = np.nonzero(mask)
    low = xs[ys == ys.max()]
    return float((low.min() + low.max() + 1) / 2 / mask.shape[1])


def fit_cylinder(
    sil: Silhouette2D, axis: str, hull: np.ndarray | None = None
) -> tuple[float, float, float] | None:
    """(diameter, length, hull fit) in pixels for a cylinder along ``axis``; None when none fits."""
    hull = sil.hull() if hull is None else hull
    w, h = sil.width, sil.height
    if axis == "Z":  # W = d, H = d / sqrt3 + 2 L / sqrt6
        d = w
        length = (h - d / math.sqrt(3.0)) * SQ6 / 2.0
    else:  # W = (d + L) / sqrt2, H = d sqrt(5/6) + L / sqrt6
        m = np.array([[1 / SQ2, 1 / SQ2], [math.sqrt(5.0 / 6.0), 1 / SQ6]])
        d, length = np.linalg.solve(m, np.array([w, h]))
    if d <= 1.0 or length <= 0.5:
        return None
    length = max(length, MIN_SHARE * d)
    return float(d), float(length), _hull_fit(_cylinder_points(axis, d, length), hull)


# ------------------------------------------------------------------------------ profile programs


def _erode_along(mask: np.ndarray, step: np.ndarray, length_px: float) -> np.ndarray:
    """Pixels p with p + t * step inside ``mask`` for every t in [0, length]: the projected profile
    at the near end of an extrusion whose projection runs along ``step`` (image x, y per unit)."""
    out = mask.copy()
    n = max(1, math.ceil(length_px * float(np.hypot(*step))))
    h, w = mask.shape
    for k in range(1, n + 1):
        t = length_px * k / n
        dx, dy = round(step[0] * t), round(step[1] * t)
        shifted = np.zeros_like(mask)
        ys0, ys1 = max(0, -dy), min(h, h - dy)
        xs0, xs1 = max(0, -dx), min(w, w - dx)
        if ys1 <= ys0 or xs1 <= xs0:
            return np.zeros_like(mask)
        shifted[ys0:ys1, xs0:xs1] = mask[ys0 + dy : ys1 + dy, xs0 + dx : xs1 + dx]
        out &= shifted
    return out


def trace_outline(mask: np.ndarray) -> np.ndarray | None:
    """The outer boundary of the largest piece of ``mask`` as an (n, 2) polygon (x, y pixel
    corners), simplified (Douglas-Peucker, 1.2 px)."""
    loop = outline_loop(mask)
    if loop is None:
        return None
    polygon = loop[simplify_indices(loop, 1.2)]
    return polygon if len(polygon) >= 3 else None


def outline_loop(mask: np.ndarray) -> np.ndarray | None:
    """The outer boundary of the largest piece of ``mask``, every pixel corner on it, as an (n, 2)
    closed loop (x, y), not simplified; None without a piece of a few pixels."""
    from scipy import ndimage

    labels, count = ndimage.label(mask)
    if count == 0:
        return None
    areas = ndimage.sum_labels(mask, labels, index=np.arange(1, count + 1))
    piece = ndimage.binary_fill_holes(labels == int(np.argmax(areas)) + 1)
    if piece.sum() < 6:
        return None
    padded = np.pad(piece, 1)
    # Walk the pixel-corner boundary with the piece on the left: directed edges between corners.
    edges: dict[tuple[int, int], tuple[int, int]] = {}
    inner = ndimage.binary_erosion(padded, structure=np.array([[0, 1, 0], [1, 1, 1], [0, 1, 0]], bool))
    ys, xs = np.nonzero(padded & ~inner)  # only pixels with an outside neighbour add edges
    for y, x in zip(ys.tolist(), xs.tolist(), strict=True):
        if not padded[y - 1, x]:
            edges[(x + 1, y)] = (x, y)  # top edge, walked right to left
        if not padded[y + 1, x]:
            edges[(x, y + 1)] = (x + 1, y + 1)
        if not padded[y, x - 1]:
            edges[(x, y)] = (x, y + 1)
        if not padded[y, x + 1]:
            edges[(x + 1, y + 1)] = (x + 1, y)
    start = min(edges)
    loop, point = [start], edges[start]
    while point != start and len(loop) <= len(edges):
        loop.append(point)
        point = edges.get(point)
        if point is None:
            return None
    return np.array(loop, float) - 1.0


def simplify_indices(points: np.ndarray, tolerance: float) -> list[int]:
    """Douglas-Peucker on a closed loop (split at the point farthest from the first): the indices of
    the points kept, in loop order."""
    far = int(np.argmax(np.hypot(*(points - points[0]).T)))

    def dp(chain: list[int]) -> list[int]:
        if len(chain) < 3:
            return [chain[0]]
        a, b = points[chain[0]], points[chain[-1]]
        ab = b - a
        norm = float(np.hypot(*ab))
        rel = points[chain] - a
        dist = np.abs(ab[0] * rel[:, 1] - ab[1] * rel[:, 0]) / norm if norm > 1e-9 else np.hypot(*rel.T)
        i = int(np.argmax(dist))
        if dist[i] <= tolerance:
            return [chain[0]]
        return dp(chain[: i + 1]) + dp(chain[i:])

    return dp(list(range(far + 1))) + dp([*range(far, len(points)), 0])


# plane coordinates (u, v) of the sketch plane -> image (x right, y down), per axis, model units
_PLANE_TO_IMAGE = {
    "Z": np.array([[1 / SQ2, 1 / SQ2], [1 / SQ6, -1 / SQ6]]),  # Workplane("XY"): (x, y)
    "X": np.array([[1 / SQ2, 0.0], [-1 / SQ6, -2 / SQ6]]),  # Workplane("YZ"): (y, z)
    "Y": np.array([[1 / SQ2, 0.0], [1 / SQ6, -2 / SQ6]]),  # Workplane("XZ"): (x, z)
}
_PLANE = {"Z": "XY", "X": "YZ", "Y": "XZ"}


def _profile_on_plane(polygon_px: np.ndarray, axis: str) -> np.ndarray:
    return polygon_px @ np.linalg.inv(_PLANE_TO_IMAGE[axis]).T


def _fmt(value: float) -> str:
    text = f"{value:.2f}".rstrip("0").rstrip(".")
    return text if text not in ("-0", "") else "0"


def _points_text(points: np.ndarray) -> str:
    body = ", ".join(f"({_fmt(u)}, {_fmt(v)})" for u, v in points)
    return f"[{body}]"


def _normaliser(sizes: list[float]) -> float:
    return LARGEST_MM / max(max(sizes), 1e-9)


def box_program(a: float, b: float, c: float) -> str:
    return (
        "import cadquery as cq\n\n"
        "# envelope: a box read from the picture's silhouette\n"
        f"length = {_fmt(a)}\nwidth = {_fmt(b)}\nheight = {_fmt(c)}\n"
        "result = cq.Workplane(\"XY\").box(length, width, height)\n"
    )


def cylinder_program(axis: str, d: float, length: float) -> str:
    return (
        "import cadquery as cq\n\n"
        f"# envelope: a cylinder along {axis} read from the picture's silhouette\n"
        f"radius = {_fmt(d / 2)}\nlength = {_fmt(length)}\n"
        f"result = cq.Workplane(\"{_PLANE[axis]}\").circle(radius).extrude(length)\n"
    )


def extrude_program(axis: str, profile: np.ndarray, length: float) -> str:
    return (
        "import cadquery as cq\n\n"
        f"# envelope: the picture's silhouette as a profile extruded along {axis}\n"
        f"length = {_fmt(length)}\n"
        f"profile = {_points_text(profile)}\n"
        f"result = cq.Workplane(\"{_PLANE[axis]}\").polyline(profile).close().extrude(length)\n"
    )


def revolve_program(axis: str, profile: np.ndarray) -> str:
    # profile points are (radius, position along the axis) in the plane that holds the axis
    plane, rev_axis = {"Z": ("XZ", (0, 1)), "X": ("XY", (1, 0)), "Y": ("YZ", (1, 0))}[axis]
    pts = profile if axis == "Z" else profile[:, ::-1]
    end = f"({rev_axis[0]}, {rev_axis[1]}, 0)"
    return (
        "import cadquery as cq\n\n"
        f"# envelope: the picture's silhouette turned about {axis}\n"
        f"profile = {_points_text(pts)}\n"
        f"result = cq.Workplane(\"{plane}\").polyline(profile).close().revolve(360, (0, 0, 0), {end})\n"
    )


def _revolve_profile(sil: Silhouette2D, axis: str, d: float, length: float) -> np.ndarray | None:
    """(radius, position) points of a turned part's half profile, in pixels, from the silhouette's
    width across the projected axis at each position along it."""
    direction = AXIS_DIRECTION[axis] / np.hypot(*AXIS_DIRECTION[axis])
    normal = np.array([-direction[1], direction[0]])
    ys, xs = np.nonzero(sil.mask)
    pts = np.stack([xs + 0.5, ys + 0.5], axis=1)
    t, n = pts @ direction, pts @ normal
    axial_scale = math.sqrt(2.0 / 3.0)  # projected length of a unit along any axis
    minor = d / 2 / math.sqrt(3.0)  # an end circle's half extent along the projected axis
    t0 = t.min() + minor
    bins = 24
    edges = np.linspace(t.min() + minor, t.max() - minor, bins + 1)
    if edges[-1] <= edges[0]:
        return None
    radii = []
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        inside = (t >= lo) & (t < hi)
        radii.append((n[inside].max() - n[inside].min()) / 2 if inside.any() else 0.0)
    radii = np.array(radii)
    if (radii <= 0.5).any():
        return None
    positions = (edges - t0) / axial_scale
    points = [(0.0, positions[0])]
    for i, r in enumerate(radii):
        points += [(float(r), float(positions[i])), (float(r), float(positions[i + 1]))]
    points.append((0.0, positions[-1]))
    profile = np.array(points)
    flat = np.abs(np.diff(profile[:, 0])) < 0.6  # a point between two equal radii adds nothing
    keep = [0] + [i for i in range(1, len(profile) - 1) if not (flat[i - 1] and flat[i])]
    keep.append(len(profile) - 1)
    return profile[keep]


def hypotheses(picture: Image.Image) -> list[Hypothesis]:
    """The envelope hypotheses the picture supports, best hull fit first; [] without a part."""
    sil = Silhouette2D.of(picture)
    if sil is None:
        return []
    hull = sil.hull()
    out: list[Hypothesis] = []
    (a, b, c), box_fit = fit_box(sil, hull)
    k = _normaliser([a, b, c])
    out.append(Hypothesis("box", box_program(a * k, b * k, c * k), box_fit))
    sizes = {"X": a, "Y": b, "Z": c}
    round_axes = []
    for axis in ("Z", "X", "Y"):
        fitted = fit_cylinder(sil, axis, hull)
        if fitted is None:
            continue
        d, length, fit = fitted
        if fit < 0.9:
            continue
        k = _normaliser([d, length])
        out.append(Hypothesis(f"cylinder_{axis.lower()}", cylinder_program(axis, d * k, length * k), fit))
        if fit >= TURNED_FIT:
            round_axes.append((fit, axis, d, length))
    symmetric = mirror_symmetry(sil.mask) >= TURNED_SYMMETRY
    if not round_axes and symmetric:
        fitted = fit_cylinder(sil, "Z", hull)
        if fitted is not None:
            round_axes.append((fitted[2], "Z", fitted[0], fitted[1]))
    c_side = side_height(sil.mask)
    # the ends stand taller than the whole outline says: both boxes are tried (a round outline's ends
    # are the curves of its ellipses, not vertical edges)
    if c_side > SIDE_DISAGREE * c and not symmetric and len(out) == 1:
        k = _normaliser([a, b, c_side])
        out.append(Hypothesis("box_sides", box_program(a * k, b * k, c_side * k),
                              _hull_fit(_box_corners(a, b, c_side), hull)))
    extrusions = [(axis, sizes[axis] * share, suffix) for axis in ("X", "Y", "Z")
                  for share, suffix in EXTRUDE_LENGTHS]
    if c_side > SIDE_DISAGREE * c and not symmetric:
        # a plan that is no full rectangle (an L, a bar with round ends) has no top corner at the
        # back: the outline reads it flat (a liftarm: 0.02 of its plan, truly 0.12), its ends do not
        extrusions.append(("Z", c_side, "_sides"))
    for axis, length, suffix in extrusions:
        profile_mask = _erode_along(sil.mask, AXIS_DIRECTION[axis], length)
        polygon = trace_outline(profile_mask)
        if polygon is None or len(polygon) > 60:
            continue
        profile = _profile_on_plane(polygon, axis)
        span = profile.max(axis=0) - profile.min(axis=0)
        k = _normaliser([*span, length])
        profile = (profile - profile.mean(axis=0)) * k
        fit = _iou(profile_mask, sil.mask)  # how much of the silhouette the profile's face is
        out.append(Hypothesis(f"extrude_{axis.lower()}{suffix}",
                              extrude_program(axis, profile, length * k), fit))
    for fit, axis, d, length in sorted(round_axes, reverse=True)[:1]:
        profile = _revolve_profile(sil, axis, d, length)
        if profile is None:
            continue
        k = _normaliser([2 * profile[:, 0].max(), profile[:, 1].max() - profile[:, 1].min()])
        out.append(Hypothesis(f"revolve_{axis.lower()}", revolve_program(axis, profile * k), fit))
    return out


def roundness(picture: Image.Image) -> dict[str, float]:
    """Cylinder-hull fit per axis (the part reads as round along an axis at >= ROUND_FIT)."""
    sil = Silhouette2D.of(picture)
    if sil is None:
        return {}
    hull = sil.hull()
    fits = {}
    for axis in ("X", "Y", "Z"):
        fitted = fit_cylinder(sil, axis, hull)
        fits[axis] = fitted[2] if fitted else 0.0
    return fits
