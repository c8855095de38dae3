"""Mirror symmetry: extrusions that come in mirrored pairs about a plane through the part's origin
(the two ears of a bracket, the two bosses of a clamp) are drawn once and mirrored.

Only the plain extrusions are mirrored, before any cut, pocket, hole or blend, about a named plane
(YZ, XZ or XY) that holds the extrusion axis: CadQuery's ``mirror(plane, union=True)`` then equals
PartDesign's Mirrored feature, which repeats features rather than mirroring a finished solid. An
extrusion that is symmetric in itself (a base plate centred on the plane) is kept whole; one that
is neither symmetric nor paired means the set is not symmetric and nothing is mirrored.
"""

from __future__ import annotations

import numpy as np

from model_runtime.shapes.profile import Frame, Loop, Segment

_PLANES = {"YZ": (1.0, 0, 0), "XZ": (0, 1.0, 0), "XY": (0, 0, 1.0)}


def _flip(loop: Loop, axis: int) -> Loop:
    """``loop`` mirrored in its sketch: local x (axis 0) or y (axis 1) negated."""

    def f(p):
        if p is None:
            return None
        q = list(p)
        q[axis] = -q[axis]
        return (q[0], q[1])

    return Loop(
        [Segment(s.kind, f(s.start), f(s.end), f(s.mid), f(s.center), s.radius) for s in loop.segments]
    )


def split(pads: list, frame: Frame) -> tuple[str, list] | None:
    """(plane name, the pads to draw) when the pads are symmetric about a named plane through the
    origin that holds ``frame``'s axis and at least one pair is mirrored; else None. ``pads`` are
    runs (loop, z0, z1) in ``frame``; the pads to draw are those on the plane and one of each pair."""
    if len(pads) < 2 or np.linalg.norm(frame.origin) > 1e-12:
        return None
    for name, n in _PLANES.items():
        n = np.asarray(n)
        if abs(float(np.dot(n, frame.normal))) > 1e-9:
            continue  # the plane must hold the extrusion axis
        # which local sketch axis the plane's normal is
        lx = float(np.dot(n, frame.x_dir))
        y_dir = np.cross(frame.normal, frame.x_dir)
        ly = float(np.dot(n, y_dir))
        if abs(abs(lx) - 1) < 1e-9:
            axis = 0
        elif abs(abs(ly) - 1) < 1e-9:
            axis = 1
        else:
            continue
        keep, paired = [], set()
        ok = True
        for i, run in enumerate(pads):
            if i in paired:
                continue
            flipped = _flip(run.loop, axis).signature()
            if flipped == run.loop.signature():
                keep.append(run)
                continue
            partner = next(
                (
                    j for j, other in enumerate(pads)
                    if j != i and j not in paired and abs(other.z0 - run.z0) < 1e-9
                    and abs(other.z1 - run.z1) < 1e-9 and other.loop.signature() == flipped
                ),
                None,
            )  # fmt: skip
            if partner is None:
                ok = False
                break
            paired |= {i, partner}
            # draw the one on the positive side
            c = run.loop.points(8).mean(axis=0)[axis]
            keep.append(run if c > 0 else pads[partner])
        if ok and paired:
            return name, keep
    return None
