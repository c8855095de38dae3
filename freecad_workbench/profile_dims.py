"""Named dimensions of a polyline profile (an L, T or U bracket drawn with lines and arcs), without
FreeCAD: the program gives its corners as plain coordinates, so the tracer names none of them; the
Body's sketch still should say "this is the width, this the wall".

Each distinct coordinate of the profile, per sketch axis, becomes an expression in three parameters
where it can: ``profile_width`` / ``profile_height`` (the profile's extent along x / y, from the
origin side it touches) and ``wall_thickness`` (the thinnest wall next to an outer edge, thinner than a
third of the extent). An inner corner rounded by an arc of radius r sits at wall + r. Changing one
parameter moves every corner on that level together, so the sketch keeps its shape.
"""

from __future__ import annotations

EPS = 1e-6
WIDTH, HEIGHT, WALL = "profile_width", "profile_height", "wall_thickness"


def _near(a: float, b: float) -> bool:
    return abs(a - b) < EPS


def polyline_dims(edges: list[dict]) -> tuple[list[tuple[str, float]], dict[tuple[str, float], str]]:
    """(parameters [(name, value)], {(axis "x"/"y", coordinate): expression in those names}) for a wire
    profile's ``edges`` (plan "line" and "arc" edges in sketch coordinates); nothing when the profile
    is not a polyline of axis-aligned lines touching the sketch origin's axes."""
    lines = [e for e in edges if e["kind"] == "line"]
    arcs = [e for e in edges if e["kind"] == "arc"]
    if len(lines) < 4 or any(not (_near(e["start"][0], e["end"][0]) or _near(e["start"][1], e["end"][1]))
                             for e in lines):
        return [], {}
    radii = sorted({round(float(a["radius"]), 9) for a in arcs})
    levels = {}
    for axis, i in (("x", 0), ("y", 1)):
        values = sorted({round(float(p[i]), 9) for e in lines for p in (e["start"], e["end"])})
        levels[axis] = values
    size = {axis: values[-1] - values[0] for axis, values in levels.items()}
    gaps = [g for axis, values in levels.items() if len(values) > 2
            for g in (values[1] - values[0], values[-1] - values[-2]) if 0 < g < size[axis] / 3]
    wall = min(gaps) if gaps else None
    used: dict[str, float] = {}
    exprs: dict[tuple[str, float], str] = {}
    for axis, i, name in (("x", 0, WIDTH), ("y", 1, HEIGHT)):
        lo, hi = levels[axis][0], levels[axis][-1]
        if _near(lo, 0):
            ends = (("", +1, lo), (name, -1, hi))  # (reference, direction inward, where)
        elif _near(hi, 0):
            ends = ((f"-{name}", +1, lo), ("", -1, hi))
        else:
            continue  # not anchored at the origin: plain coordinates
        points = {round(float(p[i]), 9) for e in edges for p in (e["start"], e["end"])}
        points |= {round(float(a["center"][i]), 9) for a in arcs}
        for value in sorted(points):
            for ref, inward, end in ends:
                terms = _terms(value, end, inward, wall, radii)
                if terms is None or (not ref and not terms):
                    continue
                text = _join(ref, terms, inward)
                if name in text:
                    used[name] = size[axis]
                if WALL in text:
                    used[WALL] = wall
                exprs[(axis, value)] = text
                break
    order = [n for n in (WIDTH, HEIGHT, WALL) if n in used]
    return [(n, used[n]) for n in order], exprs


def _terms(value: float, end: float, inward: int, wall: float | None, radii: list[float]) -> list | None:
    """What lies between the profile's end ``end`` and ``value``, going inward: [] (the end itself),
    [WALL] or [WALL, r]; None when neither."""
    offset = (value - end) * inward
    if _near(offset, 0):
        return []
    if wall is None:
        return None
    if _near(offset, wall):
        return [WALL]
    for radius in radii:
        if _near(offset, wall + radius):
            return [WALL, radius]
    return None


def _join(ref: str, terms: list, inward: int) -> str:
    sign = "+" if inward > 0 else "-"
    parts = [ref] if ref else []
    for term in terms:
        text = term if isinstance(term, str) else repr(float(term))
        parts.append(f"{sign} {text}" if parts else (text if sign == "+" else f"-{text}"))
    return " ".join(parts)
