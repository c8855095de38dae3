"""Parameter names: the one naming table for the Parameters spreadsheet, sketch constraints and code.

Two steps. While a program runs, each numeric argument of a recorded call gets a generic base name
from its method and position (``ARG_NAMES``: ``box`` -> ``length, width, height``). Once the plan is
known, ``final_names`` renames each parameter after the role of the first feature that uses it: the
base solid (``plate_thickness``, ``disc_radius``), a later pad (``boss_height``), a pocket
(``pocket_depth``), a pattern (``hole_spacing_x``), a hole on the base solid's axis
(``bore_diameter``). A dimension without a clear role keeps its base
name. Names are deterministic, valid identifiers and unique (``_2``, ``_3`` ... in program order).
"""

from __future__ import annotations

from collections.abc import Iterator

# Generic base names for a call's numeric arguments, by method and argument position ("" = none).
ARG_NAMES: dict[str, tuple[str, ...]] = {
    "box": ("length", "width", "height"),
    "rect": ("rect_width", "rect_height"),
    "circle": ("radius",),
    "cylinder": ("cylinder_height", "cylinder_radius"),
    "extrude": ("extrude_length",),
    "cutBlind": ("cut_depth",),
    "hole": ("hole_diameter", "hole_depth"),
    "cboreHole": ("hole_diameter", "cbore_diameter", "cbore_depth", "hole_depth"),
    "cskHole": ("hole_diameter", "csk_diameter", "csk_angle", "hole_depth"),
    "fillet": ("fillet_radius",),
    "chamfer": ("chamfer_length",),
    "shell": ("wall_thickness",),
    "revolve": ("revolve_angle",),
    "polarArray": ("polar_radius", "", "", "polar_count"),
    "rarray": ("spacing_x", "spacing_y", "count_x", "count_y"),
}
# The same arguments' keyword names in CadQuery, for calls that pass them by keyword.
ARG_KEYWORDS: dict[str, tuple[str, ...]] = {
    "box": ("length", "width", "height"),
    "rect": ("xLen", "yLen"),
    "circle": ("radius",),
    "cylinder": ("height", "radius"),
    "extrude": ("until",),
    "cutBlind": ("until",),
    "hole": ("diameter", "depth"),
    "cboreHole": ("diameter", "cboreDiameter", "cboreDepth", "depth"),
    "cskHole": ("diameter", "cskDiameter", "cskAngle", "depth"),
    "fillet": ("radius",),
    "chamfer": ("length",),
    "shell": ("thickness",),
    "revolve": ("angleDegrees",),
    "polarArray": ("radius", "startAngle", "angle", "count"),
    "rarray": ("xSpacing", "ySpacing", "xCount", "yCount"),
}

# The naming table: by role, the word for a pad's or pocket's size along its sketch's x and y, its
# circle's radius and its extrusion (z). A plate's thinnest axis is its "thickness" instead.
ROLE_WORDS: dict[str, dict[str, str]] = {
    "plate": {"x": "length", "y": "width", "z": "height"},
    "block": {"x": "length", "y": "width", "z": "height"},
    "disc": {"radius": "radius", "z": "thickness"},
    "shaft": {"radius": "radius", "z": "length"},
    "cylinder": {"radius": "radius", "z": "height"},
    "boss": {"x": "length", "y": "width", "radius": "radius", "z": "height"},
    "pocket": {"x": "length", "y": "width", "radius": "radius", "z": "depth"},
}
THIN = 3.0  # a box is a plate when its smallest side is at most a third of the next one
# A base cylinder is a disc when at most a third of its diameter long, a shaft from one diameter.
DISC, SHAFT = 1 / 3, 1.0
# Pattern parameters are named after what they repeat: hole_spacing_x, pocket_count_y, boss_count.
PATTERN_PREFIX = {"hole": "hole", "pad": "boss", "pocket": "pocket"}


def _dims(value: object) -> Iterator[dict]:
    """Every named dimension in ``value`` (nested dicts and lists), in field order."""
    if isinstance(value, dict):
        if isinstance(value.get("param"), str):
            yield value
        for item in value.values():
            yield from _dims(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _dims(item)


def _shape_role(feature: dict) -> tuple[str, str | None] | None:
    """(role, thin slot) of a base pad with one rectangle or circle as its first profile."""
    profiles = feature.get("sketch", {}).get("profiles") or []
    if feature["kind"] != "pad" or not profiles:
        return None
    profile, z = profiles[0], float(feature["length"]["value"])
    if profile["kind"] == "rect":
        sides = {"x": float(profile["width"]["value"]), "y": float(profile["height"]["value"]), "z": z}
        ordered = sorted(sides, key=lambda k: (sides[k], k))
        if sides[ordered[0]] * THIN <= sides[ordered[1]]:
            return "plate", ordered[0]
        return "block", None
    if profile["kind"] == "circle":
        diameter = 2 * float(profile["radius"]["value"])
        if z <= diameter * DISC:
            return "disc", None
        return ("shaft" if z >= diameter * SHAFT else "cylinder"), None
    return None


def _slots(feature: dict) -> Iterator[tuple[str, dict]]:
    """(slot, dimension) of a pad's or pocket's own sizes: profile x, y, radius; extrusion z."""
    for profile in feature.get("sketch", {}).get("profiles") or []:
        if profile["kind"] == "rect":
            yield "x", profile["width"]
            yield "y", profile["height"]
        elif profile["kind"] == "circle":
            yield "radius", profile["radius"]
    yield "z", feature["length"]


def _role_name(role: str, thin: str | None, slot: str, dim: dict) -> str | None:
    word = "thickness" if slot == thin else ROLE_WORDS[role].get(slot)
    if word is None:
        return None
    scale = float(dim.get("scale", 1.0))
    if scale == 2.0:  # a midplane extrusion's literal is the length on each side
        return f"{role}_half_{word}"
    return f"{role}_{word}" if scale == 1.0 else None


def _on_plane(plane: dict, point: list) -> list[float]:
    """A sketch point in global coordinates."""
    o, n, x = plane["origin"], plane["normal"], plane["x_dir"]
    y = [n[1] * x[2] - n[2] * x[1], n[2] * x[0] - n[0] * x[2], n[0] * x[1] - n[1] * x[0]]
    return [o[i] + point[0] * x[i] + point[1] * y[i] for i in range(3)]


def _base_axis(features: list[dict]) -> tuple[list[float], list[float]] | None:
    """(centre, normal) of the base pad's profile when it is a circle or a centred rectangle."""
    base = features[0] if features else {}
    profiles = base.get("sketch", {}).get("profiles") or []
    if base.get("kind") != "pad" or not profiles:
        return None
    profile, plane = profiles[0], base["sketch"]["plane"]
    if profile["kind"] == "circle":
        return _on_plane(plane, profile["center"]), plane["normal"]
    if profile["kind"] == "rect" and list(profile.get("anchor") or ()) == ["center", "center"]:
        return _on_plane(plane, profile["at"]), plane["normal"]
    return None


def _is_bore(index: int, feature: dict, patterned: set[int], axis: tuple | None) -> bool:
    """One hole, repeated by no pattern, on the base solid's axis: a flange's or bushing's bore."""
    profiles = feature.get("sketch", {}).get("profiles") or []
    if feature["kind"] != "hole" or index in patterned or axis is None or len(profiles) != 1:
        return False
    if profiles[0]["kind"] != "circle":
        return False
    centre, normal = axis
    plane = feature["sketch"]["plane"]
    if abs(abs(sum(a * b for a, b in zip(plane["normal"], normal, strict=True))) - 1.0) > 1e-6:
        return False
    offset = [a - b for a, b in zip(_on_plane(plane, profiles[0]["center"]), centre, strict=True)]
    along = sum(a * b for a, b in zip(offset, normal, strict=True))
    return all(abs(o - along * n) < 1e-6 for o, n in zip(offset, normal, strict=True))


def role_names(features: list[dict], bases: dict[str, str]) -> dict[str, str]:
    """Wanted name per parameter key, from the first feature that uses it; ``bases`` gives each
    key's generic base name (the fallback, and what a pattern's name is built from)."""
    wanted: dict[str, str] = {}
    patterned = {i for f in features for i in f.get("originals") or ()}
    axis = _base_axis(features)
    for index, feature in enumerate(features):
        if _is_bore(index, feature, patterned, axis):
            for field in ("diameter", "depth"):
                dim = feature.get(field)
                if isinstance(dim, dict) and dim.get("param") and dim["param"] not in wanted:
                    wanted[dim["param"]] = f"bore_{field}"
        kind, role, thin = feature["kind"], None, None
        if kind == "pad" and index == 0:
            role, thin = _shape_role(feature) or (None, None)
        elif kind == "pad":
            role = "boss"
        elif kind == "pocket":
            role = "pocket"
        if role is not None:
            for slot, dim in _slots(feature):
                name = _role_name(role, thin, slot, dim)
                if name and dim.get("param") and dim["param"] not in wanted:
                    wanted[dim["param"]] = name
        if kind in ("linear_pattern", "polar_pattern"):
            first = features[feature["originals"][0]] if feature["originals"] else {}
            prefix = PATTERN_PREFIX.get(first.get("kind", ""))
            for dim in _dims(feature):
                base = bases.get(dim["param"], "")
                if prefix and dim["param"] not in wanted and base:
                    # rarray's spacing_x / count_y, polarArray's polar_count -> hole_count
                    wanted[dim["param"]] = f"{prefix}_{base.removeprefix('polar_')}"
        for dim in _dims(feature):  # everything else keeps its base name, first use fixes it
            wanted.setdefault(dim["param"], bases.get(dim["param"], dim["param"]))
    return wanted


def final_names(keys: list[str], wanted: dict[str, str]) -> dict[str, str]:
    """Unique final names for ``keys`` (in program order): the wanted name, or it with _2, _3 ..."""
    taken: set[str] = set()
    out = {}
    for key in keys:
        base = wanted.get(key, key)
        if not base.isidentifier():
            base = "dimension"
        name, n = base, 1
        while name in taken:
            n += 1
            name = f"{base}_{n}"
        taken.add(name)
        out[key] = name
    return out
