"""Record a CadQuery program's modelling steps with resolved geometry: the feature plan.

``Recorder.instrument(scope)`` gives back exec globals whose ``import cadquery`` yields the same
public names with ``Workplane`` replaced by a recording subclass. Only calls made by the program
itself are recorded (calls CadQuery makes internally run untouched). After the program ran,
``Recorder.plan(solid)`` returns the JSON-ready plan (shape in ``model_runtime.protocol``) for the
history that built ``solid``; it never raises. A step it cannot express as a PartDesign feature is
recorded as ``unmapped`` with the reason, never approximated.

The sandbox job calls this on hostile code, so nothing here hands the program a new capability: the
subclass's methods are closures over the recorder (reachable only through dunder attributes, which
the policy forbids), and the recorder reads CadQuery objects, it never writes files or imports.
"""

from __future__ import annotations

import math
import sys
import types
from collections.abc import Callable
from typing import Any

from model_runtime import protocol
from model_runtime.feature_plan.names import ARG_KEYWORDS, ARG_NAMES, final_names, role_names

# Calls whose wires become named sketch profiles.
_PROFILE_CALLS = ("rect", "circle")
# Calls that place points a later step may use as a linear pattern's instances.
_GRID_CALLS = ("rarray", "pushPoints")
# Steps whose one feature on a regular grid of points becomes one instance and a linear_pattern.
_PATTERNED = ("hole", "cboreHole", "cskHole", "extrude", "cutBlind", "cutThruAll", "box")
# Steps whose features replace the history instead of adding to it.
_REPLACING = ("translate", "mirror")
_TOL = 1e-6


class Unmapped(Exception):
    """A step that has no faithful PartDesign feature; the message says why."""


class _Site:
    """Where in the program a call was made: the end of the call expression (unique per call)."""

    __slots__ = ("line", "col")

    def __init__(self, line: int, col: int) -> None:
        self.line, self.col = line, col


def _call_site(frame: types.FrameType | None, cache: dict) -> _Site | None:
    if frame is None:
        return None
    code = frame.f_code
    positions = cache.get(code)
    if positions is None:
        positions = cache[code] = list(code.co_positions())
    index = frame.f_lasti // 2
    if 0 <= index < len(positions):
        _, end_line, _, end_col = positions[index]
        if end_line is not None and end_col is not None:
            return _Site(end_line, end_col)
    return None


def _vec(v: Any) -> list[float]:
    return [round(float(c), 9) for c in (v.x, v.y, v.z)]


def _round(x: float) -> float:
    return round(float(x), 9)


class Recorder:
    """Records one program run. ``instrument`` the exec globals, run the program, then ``plan``."""

    def __init__(self) -> None:
        self._depth = 0
        self._cq: Any = None
        self._namespace: Any = None
        self._sites: dict = {}
        self._params: dict[tuple[int, int, int | str], dict] = {}
        self._names: set[str] = set()
        # _key(solid) -> (solid, history); CadQuery wraps the same solids anew on every lookup.
        self._histories: dict[tuple, tuple[Any, list[dict]]] = {}
        self._order: list[tuple] = []
        self._wire_origin: dict[int, tuple[Any, dict]] = {}
        self._polar: dict[int, tuple[Any, dict]] = {}  # id(polarArray result) -> (it, its call)
        self._grids: dict[int, tuple[Any, dict]] = {}  # id(rarray/pushPoints result) -> (it, the call)
        self._errors: list[str] = []

    # ----------------------------------------------------------------- instrumenting
    def instrument(self, scope: dict) -> dict:
        """Exec globals like ``scope`` whose ``import cadquery`` records; ``scope`` is not changed."""
        raw = scope.get("__builtins__", __builtins__)
        builtins = dict(raw) if isinstance(raw, dict) else dict(vars(raw))
        importer = builtins["__import__"]

        def traced_import(
            name: str, globals: Any = None, locals: Any = None, fromlist: Any = (), level: int = 0
        ) -> Any:
            module = importer(name, globals, locals, fromlist, level)
            if name == "cadquery" and hasattr(module, "Workplane"):
                return self._traced_namespace(module)
            return module

        builtins["__import__"] = traced_import
        traced = dict(scope)
        traced["__builtins__"] = builtins
        return traced

    def _traced_namespace(self, module: Any) -> Any:
        if self._namespace is None:
            public = {k: getattr(module, k) for k in dir(module) if not k.startswith("_")}
            self._cq = types.SimpleNamespace(**public)  # the real classes, for the recorder's own use
            public["Workplane"] = self._traced_workplane(public["Workplane"])
            self._namespace = types.SimpleNamespace(**public)
        return self._namespace

    def _traced_workplane(self, base: type) -> type:
        recorder = self
        cache = self._sites

        def wrap(name: str, fn: Callable) -> Callable:
            def method(this: Any, *args: Any, **kwargs: Any) -> Any:
                if recorder._depth:
                    return fn(this, *args, **kwargs)
                site = _call_site(sys._getframe(1), cache)
                before = recorder._before(this)
                recorder._depth += 1
                try:
                    result = fn(this, *args, **kwargs)
                finally:
                    recorder._depth -= 1
                recorder._after(name, this, args, kwargs, result, before, site)
                return result

            method.__name__ = name
            method.__doc__ = fn.__doc__
            return method

        members = {
            name: wrap(name, getattr(base, name))
            for name in dir(base)
            if not name.startswith("_") and isinstance(getattr(base, name, None), types.FunctionType)
        }
        return type("Workplane", (base,), members)

    # ----------------------------------------------------------------- recording
    def _quiet(self, fn: Callable, *args: Any) -> Any:
        self._depth += 1
        try:
            return fn(*args)
        finally:
            self._depth -= 1

    def _solid(self, wp: Any) -> Any:
        try:
            return self._quiet(wp.findSolid)
        except Exception:  # noqa: BLE001 - no solid in the chain
            return None

    def _before(self, this: Any) -> dict:
        try:
            return {"solid": self._solid(this), "wires": list(this.ctx.pendingWires)}
        except Exception as exc:  # noqa: BLE001 - the recorder must never break the program
            self._errors.append(f"tracer: {type(exc).__name__}: {exc}")
            return {"solid": None, "wires": []}

    def _after(
        self, name: str, this: Any, args: tuple, kwargs: dict, result: Any, before: dict, site: _Site | None
    ) -> None:
        try:
            self._record(name, this, args, kwargs, result, before, site)
        except Exception as exc:  # noqa: BLE001 - a tracer bug marks the plan, never the program
            self._errors.append(f"tracer error in {name}: {type(exc).__name__}: {exc}")

    def _record(
        self, name: str, this: Any, args: tuple, kwargs: dict, result: Any, before: dict, site: _Site | None
    ) -> None:
        cq = self._cq
        if not isinstance(result, cq.Workplane):
            return
        if name == "polarArray":
            call = {"params": _bind(cq.Workplane.polarArray, args, kwargs),
                    "dims": self._call_dims(name, args, kwargs, site)}
            self._polar[id(result)] = (result, call)
            return
        if name in _GRID_CALLS:
            grid: dict = {"call": name, "plane": result.plane}
            if name == "rarray":
                grid["params"] = _bind(cq.Workplane.rarray, args, kwargs)
                grid["dims"] = self._call_dims(name, args, kwargs, site)
            self._grids[id(result)] = (result, grid)
            return
        if name in _PROFILE_CALLS:
            known = {id(w) for w in before["wires"]}
            dims = self._call_dims(name, args, kwargs, site)
            placed = self._grids.get(id(this))
            grid = placed[1] if placed is not None and placed[0] is this else None
            for wire in result.ctx.pendingWires:
                if id(wire) not in known:
                    self._wire_origin[id(wire)] = (
                        wire,
                        {"call": name, "dims": dims, "args": args, "kwargs": kwargs, "grid": grid},
                    )
            return
        after = self._solid(result)
        old = before["solid"]
        if after is None or (old is not None and _key(after) == _key(old)):
            return
        line = site.line if site else 0
        base: list[dict] | None = []
        if old is not None:
            entry = self._histories.get(_key(old))
            base = entry[1] if entry else None
        replaces = name in _REPLACING
        try:
            if base is None:
                raise Unmapped("the solid it changes was not made by a recorded step")
            features = self._map(name, this, args, kwargs, result, before, site, base)
        except Unmapped as why:
            features = [{"kind": "unmapped", "method": name, "line": line, "reason": str(why)}]
            base, replaces = base or [], False
        for feature in features:
            feature.setdefault("method", name)
            feature.setdefault("line", line)
        # translate gives back the whole history moved, mirror the history it mirrors (flattened, see
        # _op_mirror); every other step adds to it.
        history = features if replaces else [*base, *features]
        self._histories[_key(after)] = (after, history)
        self._order.append(_key(after))

    # ----------------------------------------------------------------- dimensions
    def _call_dims(self, method: str, args: tuple, kwargs: dict, site: _Site | None) -> dict[int, dict]:
        """Named dimensions for the call's numeric arguments, keyed by argument position."""
        dims: dict[int, dict] = {}
        names = ARG_NAMES.get(method, ())
        keywords = ARG_KEYWORDS.get(method, ())
        for index, base in enumerate(names):
            if not base:
                continue
            key: int | str = index
            if index < len(args):
                value = args[index]
            elif index < len(keywords) and keywords[index] in kwargs:
                key = keywords[index]
                value = kwargs[key]
            else:
                continue
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                continue
            dims[index] = {
                "value": abs(float(value)),
                "param": self._param(site, key, abs(float(value)), base),
            }
        return dims

    def _param(self, site: _Site | None, key: int | str, value: float, base: str) -> str | None:
        if site is None or value == 0:
            return None
        slot = (site.line, site.col, key)
        known = self._params.get(slot)
        if known is not None:
            return known["name"] if known["value"] == value else None
        name, n = base, 1
        while name in self._names:
            n += 1
            name = f"{base}_{n}"
        self._names.add(name)
        # "name" is provisional (unique per run); _plan renames it after its feature's role, from "base".
        self._params[slot] = {
            "name": name, "value": value, "line": site.line, "col": site.col, "arg": key, "base": base
        }
        return name

    @staticmethod
    def _dim(value: float, named: dict | None = None, scale: float = 1.0) -> dict:
        """A plan dimension of ``value``; named when it is ``scale`` x a named literal."""
        dim: dict = {"value": _round(value)}
        if named and named.get("param") and abs(named["value"] * scale - abs(value)) < 1e-9:
            dim["param"] = named["param"]
            if scale != 1.0:
                dim["scale"] = scale
        return dim

    # ----------------------------------------------------------------- geometry
    def _plane(self, plane: Any) -> dict:
        return {"origin": _vec(plane.origin), "normal": _vec(plane.zDir), "x_dir": _vec(plane.xDir)}

    def _frames(self, wp: Any, shape: Any = None) -> list[tuple[Any, Any, Any]]:
        """(origin, x dir, z dir) in world coordinates of each point CadQuery's eachpoint visits,
        after ``shape``'s own placement (a Location) when given: the same transforms the call used."""
        cq = self._cq
        frame = cq.Compound.makeCompound(
            [
                cq.Edge.makeLine(cq.Vector(0, 0, 0), cq.Vector(1, 0, 0)),
                cq.Edge.makeLine(cq.Vector(0, 0, 0), cq.Vector(0, 0, 1)),
            ]
        )
        if shape is not None:
            frame = frame.moved(shape)
        moved = self._quiet(lambda: wp.eachpoint(lambda loc: frame.moved(loc), True).vals())
        out = []
        for compound in moved:
            x_edge, z_edge = compound.Edges()
            origin = x_edge.startPoint()
            out.append((origin, x_edge.endPoint() - origin, z_edge.endPoint() - origin))
        return out

    def _local(self, plane: Any, point: Any) -> list[float]:
        local = plane.toLocalCoords(point)
        if abs(local.z) > 1e-6:
            raise Unmapped("sketch geometry does not lie in its workplane")
        return [_round(local.x), _round(local.y)]  # JSON-ready: lists, as on the wire

    def _wire_profile(self, plane: Any, wire: Any) -> dict:
        origin = self._wire_origin.get(id(wire))
        if origin is not None and origin[0] is wire:
            profile = self._named_profile(plane, wire, origin[1])
            if profile is not None:
                return profile
        edges = []
        for edge in wire.Edges():
            kind = edge.geomType()
            if kind == "LINE":
                edges.append(
                    {
                        "kind": "line",
                        "start": self._local(plane, edge.startPoint()),
                        "end": self._local(plane, edge.endPoint()),
                    }
                )
            elif kind == "CIRCLE":
                circle = self._circle(plane, edge)
                if edge.IsClosed():
                    if len(wire.Edges()) != 1:
                        raise Unmapped("a closed circle inside a longer wire")
                    return {
                        "kind": "circle",
                        "center": circle["center"],
                        "radius": {"value": circle["radius"]},
                    }
                edges.append(circle)
            else:
                raise Unmapped(f"a sketch edge of type {kind} (only lines, arcs and circles map)")
        edges = _merged(edges)
        if len(edges) == 1 and edges[0]["kind"] == "arc" and _same(edges[0]["start"], edges[0]["end"]):
            return {"kind": "circle", "center": edges[0]["center"], "radius": {"value": edges[0]["radius"]}}
        return {"kind": "wire", "edges": edges}

    def _circle(self, plane: Any, edge: Any) -> dict:
        center = self._local(plane, edge.arcCenter())
        radius = _round(edge.radius())
        normal = edge._geomAdaptor().Circle().Axis().Direction()
        axis = self._cq.Vector(normal.X(), normal.Y(), normal.Z())
        if abs(abs(axis.dot(plane.zDir)) - 1) > 1e-6:
            raise Unmapped("an arc that is not in its sketch plane")
        start, end = self._local(plane, edge.startPoint()), self._local(plane, edge.endPoint())
        mid = self._local(plane, edge.positionAt(0.5))
        # Arcs are stored counter-clockwise about the sketch normal, as Sketcher keeps them.
        a0, a1, am = (math.atan2(p[1] - center[1], p[0] - center[0]) for p in (start, end, mid))
        ccw = (am - a0) % (2 * math.pi) < (a1 - a0) % (2 * math.pi)
        if not ccw:
            start, end = end, start
        return {"kind": "arc", "center": center, "radius": radius, "start": start, "end": end}

    def _named_profile(self, plane: Any, wire: Any, origin: dict) -> dict | None:
        call, dims = origin["call"], origin["dims"]
        if call == "circle":
            edges = wire.Edges()
            if len(edges) != 1 or edges[0].geomType() != "CIRCLE":
                return None
            circle = self._circle(plane, edges[0])
            return {
                "kind": "circle",
                "center": circle["center"],
                "radius": self._dim(circle["radius"], dims.get(0)),
            }
        if call == "rect":
            box = self._local_box(plane, wire)
            if box is None:
                return None
            (x0, y0), (x1, y1) = box
            centered = origin["kwargs"].get(
                "centered", origin["args"][2] if len(origin["args"]) > 2 else True
            )
            if isinstance(centered, bool):
                centered = (centered, centered)
            return self._rect(x0, y0, x1, y1, dims.get(0), dims.get(1), tuple(centered[:2]))
        return None

    def _local_box(self, plane: Any, wire: Any) -> tuple | None:
        """The (min, max) corners of an axis-aligned rectangle wire in the plane, else None."""
        edges = wire.Edges()
        if len(edges) != 4 or any(e.geomType() != "LINE" for e in edges):
            return None
        pts = [self._local(plane, e.startPoint()) for e in edges]
        xs, ys = sorted({round(p[0], 6) for p in pts}), sorted({round(p[1], 6) for p in pts})
        if len(xs) != 2 or len(ys) != 2:
            return None
        return (xs[0], ys[0]), (xs[1], ys[1])

    def _rect(
        self,
        x0: float,
        y0: float,
        x1: float,
        y1: float,
        width: dict | None,
        height: dict | None,
        centered: tuple,
    ) -> dict:
        """A rectangle, with the point it is anchored at: its centre or its lower corner per axis."""
        anchor = ["center" if centered[0] else "min", "center" if centered[1] else "min"]
        at = [_round((x0 + x1) / 2) if centered[0] else x0, _round((y0 + y1) / 2) if centered[1] else y0]
        return {
            "kind": "rect",
            "anchor": anchor,
            "at": at,
            "width": self._dim(x1 - x0, width),
            "height": self._dim(y1 - y0, height),
        }

    def _sketch(self, plane: Any, profiles: list[dict]) -> dict:
        """Profiles made here (boxes, holes, cylinders); ``_overlapping`` judges them exactly for
        circles and by their extents otherwise."""
        if not profiles:
            raise Unmapped("no sketch to build the feature from")
        if _overlapping(profiles):
            # CadQuery fuses each profile's solid; a sketch's overlapping profiles would cancel out.
            raise Unmapped("overlapping profiles in one sketch")
        return {"plane": self._plane(plane), "profiles": profiles}

    def _pending_sketch(self, wp: Any, before: dict) -> dict | list[dict]:
        """The profiles the call extrudes: faces on the stack (a placed cq.Sketch) before pending
        wires, in the order CadQuery's own ``_getFaces`` takes them. Faces that touch cannot share
        one sketch: then a list with one sketch per face, which ``_map`` makes one feature each
        (CadQuery too extrudes each face and fuses the solids)."""
        cq = self._cq
        faces = []
        for obj in wp.objects:
            if isinstance(obj, cq.Sketch | cq.Compound):
                faces += [f for f in obj if isinstance(f, cq.Face)]
            elif isinstance(obj, cq.Face):
                faces.append(obj)
        if faces:
            if len(faces) > 1:
                # CadQuery extrudes each face and fuses the solids: the same as extruding the faces'
                # union, which is what one sketch can hold when the union has no shared edges.
                faces = faces[0].fuse(*faces[1:]).clean().Faces()
            wires = [w for f in faces for w in (f.outerWire(), *f.innerWires())]
        else:
            from cadquery.occ_impl.shapes import wiresToFaces

            wires = list(before["wires"])  # the wires themselves: they carry the named dimensions
            faces = wiresToFaces(wires) if wires else []
        for i, a in enumerate(faces):
            if any(a.distance(b) < 1e-7 for b in faces[i + 1 :]):
                return [self._face_sketch(wp.plane, f) for f in faces]
        profiles = self._profiles(wp.plane, wires)
        circles = [p for p in profiles if p["kind"] == "circle"]
        if _overlapping(circles):  # CadQuery made one face of crossing wires: no sketch holds that
            raise Unmapped("crossing circles in one sketch")
        return {"plane": self._plane(wp.plane), "profiles": profiles}

    def _face_sketch(self, plane: Any, face: Any) -> dict:
        wires = [face.outerWire(), *face.innerWires()]
        return {"plane": self._plane(plane), "profiles": self._profiles(plane, wires)}

    def _profiles(self, plane: Any, wires: list) -> list[dict]:
        if not wires:
            raise Unmapped("no sketch to build the feature from")
        return [self._wire_profile(plane, w) for w in wires]

    # ----------------------------------------------------------------- operations
    def _map(
        self,
        name: str,
        this: Any,
        args: tuple,
        kwargs: dict,
        result: Any,
        before: dict,
        site: _Site | None,
        base: list[dict],
    ) -> list[dict]:
        handler = getattr(self, f"_op_{name}", None)
        if handler is None:
            raise Unmapped(f"{name}() has no PartDesign feature in CadSnap's mapping")
        params = _bind(getattr(self._cq.Workplane, name), args, kwargs)
        dims = self._call_dims(name, args, kwargs, site)
        features = handler(this, params, dims, before, base, result)
        # A step whose faces need a sketch each (see _pending_sketch) becomes one feature per sketch.
        if any(isinstance(f.get("sketch"), list) for f in features):
            features = [
                {**f, "sketch": s}
                for f in features
                for s in (f["sketch"] if isinstance(f.get("sketch"), list) else [f.get("sketch")])
            ]
        grid = self._grid_of(this, before) if name in _PATTERNED else None
        if grid is not None:
            features = self._patterned(features, grid, len(base))
        return features

    # ----------------------------------------------------------------- linear patterns
    def _grid_of(self, wp: Any, before: dict) -> dict | None:
        """The rarray/pushPoints call whose points the step uses: directly (holes, boxes), or through
        the pending wires one rect/circle call drew on them (extrude, cutBlind, cutThruAll)."""
        placed = self._grids.get(id(wp))
        if placed is not None and placed[0] is wp:
            return placed[1]
        wires = before["wires"]
        if not wires or any(isinstance(o, self._cq.Face | self._cq.Sketch) for o in wp.objects):
            return None
        origins = [self._wire_origin.get(id(w)) for w in wires]
        if any(o is None or o[0] is not w for o, w in zip(origins, wires, strict=True)):
            return None
        calls = {id(o[1]["dims"]) for o in origins}
        grids = {id(o[1]["grid"]) for o in origins}
        grid = origins[0][1]["grid"]
        return grid if grid is not None and len(calls) == 1 and len(grids) == 1 else None

    def _patterned(self, features: list[dict], grid: dict, index: int) -> list[dict]:
        """One feature whose sketch repeats one profile on a regular grid -> the profile at the grid's
        first point and a linear_pattern; anything irregular keeps today's ``features``."""
        if len(features) != 1 or features[0]["kind"] not in ("hole", "pad", "pocket"):
            return features
        feature = features[0]
        sketch = feature.get("sketch")
        if not isinstance(sketch, dict):
            return features
        profiles = sketch["profiles"]
        if len(profiles) < 2 or any(p["kind"] not in ("circle", "rect") for p in profiles):
            return features
        # The builder moves the first instance with the spacing only for circles and rectangles.
        refs = [p["center"] if p["kind"] == "circle" else p["at"] for p in profiles]
        shapes = [{k: v for k, v in p.items() if k not in ("center", "at")} for p in profiles]
        if any(shape != shapes[0] for shape in shapes):
            return features
        layout = _grid_layout(refs)
        if layout is None:
            return features
        first, axes = layout
        plane = sketch["plane"]
        x_dir = [float(c) for c in plane["x_dir"]]
        normal = [float(c) for c in plane["normal"]]
        y_dir = [_round(c) for c in _cross(normal, x_dir)]
        directions = []
        if grid["call"] == "rarray":
            p, dims = grid["params"], grid["dims"]
            if not (_close(_vec(grid["plane"].xDir), x_dir) and _close(_vec(grid["plane"].zDir), normal)):
                return features
            centered = p.get("center", True)
            centered = (centered, centered) if isinstance(centered, bool) else tuple(centered)
            wanted = [
                (axis, float(p[spacing]), int(p[count]))
                for axis, spacing, count in ((0, "xSpacing", "xCount"), (1, "ySpacing", "yCount"))
                if int(p[count]) >= 2
            ]
            # A negative or zero spacing would move the first point as the spacing changes.
            if any(s <= 0 for _, s, _ in wanted) or len(wanted) != len(axes) or any(
                a != b or abs(s - t) > 1e-6 * max(1.0, s) or n != m
                for (a, s, n), (b, t, m) in zip(wanted, axes, strict=True)
            ):
                return features
            for axis, spacing, count in wanted:
                directions.append(
                    {
                        "direction": x_dir if axis == 0 else y_dir,
                        "spacing": self._dim(spacing, dims.get(axis)),
                        "count": self._dim(float(count), dims.get(2 + axis)),
                        "centered": bool(centered[axis]),
                    }
                )
        else:
            if len(refs) < 3:  # two points are a pair, kept as one sketch as drawn
                return features
            for axis, spacing, count in axes:
                directions.append(
                    {
                        "direction": x_dir if axis == 0 else y_dir,
                        "spacing": {"value": _round(spacing)},
                        "count": {"value": float(count)},
                        "centered": False,
                    }
                )
        original = {**feature, "sketch": {**sketch, "profiles": [profiles[first]]}, "_flat": profiles}
        return [original, {"kind": "linear_pattern", "originals": [index], "directions": directions}]

    def _combine(self, params: dict, before: dict) -> str:
        mode = params.get("combine", True)
        if mode in ("cut", "s"):
            return "cut"
        if mode in (True, "a") or before["solid"] is None:
            return "add"
        raise Unmapped("combine=False keeps a separate solid")

    def _op_extrude(self, wp, p, dims, before, base, result) -> list[dict]:
        until = p["until"]
        if isinstance(until, bool) or not isinstance(until, int | float):
            raise Unmapped("extrude up to a face")
        if p.get("taper"):
            raise Unmapped("tapered extrude")
        sketch = self._pending_sketch(wp, before)
        both = bool(p.get("both"))
        length = self._dim(abs(until) * (2 if both else 1), dims.get(0), 2.0 if both else 1.0)
        if self._combine(p, before) == "cut":
            return [
                {
                    "kind": "pocket",
                    "sketch": sketch,
                    "length": length,
                    "through_all": False,
                    "midplane": both,
                    "reversed": until > 0,
                }
            ]
        return [{"kind": "pad", "sketch": sketch, "length": length, "midplane": both, "reversed": until < 0}]

    def _op_cutBlind(self, wp, p, dims, before, base, result) -> list[dict]:  # noqa: N802 - CadQuery's name
        until = p["until"]
        if isinstance(until, bool) or not isinstance(until, int | float):
            raise Unmapped("cut up to a face")
        if p.get("taper"):
            raise Unmapped("tapered cut")
        both = bool(p.get("both"))
        length = self._dim(abs(until) * (2 if both else 1), dims.get(0), 2.0 if both else 1.0)
        return [
            {
                "kind": "pocket",
                "sketch": self._pending_sketch(wp, before),
                "length": length,
                "through_all": False,
                "midplane": both,
                "reversed": until > 0,
            }
        ]

    def _op_cutThruAll(self, wp, p, dims, before, base, result) -> list[dict]:  # noqa: N802
        if p.get("taper"):
            raise Unmapped("tapered cut")
        # CadQuery cuts through everything on both sides of the workplane.
        return [
            {
                "kind": "pocket",
                "sketch": self._pending_sketch(wp, before),
                "length": {"value": 0.0},
                "through_all": True,
                "midplane": True,
                "reversed": False,
            }
        ]

    def _op_box(self, wp, p, dims, before, base, result) -> list[dict]:
        centered = p.get("centered", True)
        if isinstance(centered, bool):
            centered = (centered,) * 3
        length, width, height = (float(p[k]) for k in ("length", "width", "height"))
        plane = wp.plane
        profiles = []
        for origin, x_dir, z_dir in self._frames(wp):
            if (x_dir - plane.xDir).Length > 1e-6 or (z_dir - plane.zDir).Length > 1e-6:
                raise Unmapped("boxes turned within the workplane")
            cx, cy = self._local(plane, origin)
            x0 = cx - length / 2 if centered[0] else cx
            y0 = cy - width / 2 if centered[1] else cy
            profiles.append(
                self._rect(x0, y0, x0 + length, y0 + width, dims.get(0), dims.get(1), centered[:2])
            )
        sketch = self._sketch(plane, profiles)
        mode = self._combine(p, before)
        if mode == "cut":
            raise Unmapped("a box cut from the solid")
        return [
            {
                "kind": "pad",
                "sketch": sketch,
                "length": self._dim(height, dims.get(2)),
                "midplane": bool(centered[2]),
                "reversed": False,
            }
        ]

    def _op_cylinder(self, wp, p, dims, before, base, result) -> list[dict]:
        centered = p.get("centered", True)
        if isinstance(centered, bool):
            centered = (centered,) * 3
        if not (centered[0] and centered[1]) or float(p.get("angle", 360)) % 360:
            raise Unmapped("an off-centre or partial cylinder")
        if self._combine(p, before) == "cut":
            raise Unmapped("a cylinder cut from the solid")
        cq = self._cq
        direct = cq.Vector(*p["direct"]) if isinstance(p["direct"], tuple) else cq.Vector(p["direct"])
        location = cq.Plane(cq.Vector(), normal=direct).location
        features = []
        for origin, x_dir, z_dir in self._frames(wp, location):
            plane = cq.Plane(origin, x_dir, z_dir)
            profile = {
                "kind": "circle",
                "center": [0.0, 0.0],
                "radius": self._dim(float(p["radius"]), dims.get(1)),
            }
            features.append(
                {
                    "kind": "pad",
                    "sketch": self._sketch(plane, [profile]),
                    "length": self._dim(float(p["height"]), dims.get(0)),
                    "midplane": bool(centered[2]),
                    "reversed": False,
                }
            )
        return features

    def _hole(
        self,
        wp,
        diameter: float,
        depth: Any,
        dims: dict,
        depth_arg: int,
        cut: str,
        cut_diameter: dict | None = None,
        cut_depth: dict | None = None,
        cut_angle: dict | None = None,
        base: list[dict] | None = None,
    ) -> list[dict]:
        plane = wp.plane
        pattern = self._polar_pattern(wp, len(base or []))
        if pattern is not None:
            # One hole and a PolarPattern: the tree a designer would draw, its count a parameter.
            first = self._frames(wp)[0][0]
            profile = {"kind": "circle", "center": self._local(plane, first),
                       "radius": self._dim(diameter / 2, dims.get(0), 0.5)}
            return [*self._hole_feature(plane, [profile], diameter, depth, dims, depth_arg, cut, cut_diameter,
                                        cut_depth, cut_angle), pattern]
        profiles = []
        for origin, _x_dir, z_dir in self._frames(wp):
            if (z_dir - plane.zDir).Length > 1e-6:
                raise Unmapped("holes at points turned out of the workplane")
            profiles.append(
                {
                    "kind": "circle",
                    "center": self._local(plane, origin),
                    "radius": self._dim(diameter / 2, dims.get(0), 0.5),
                }
            )
        reach = max(diameter, cut_diameter["value"] if cut_diameter else 0.0) / 2
        wide = [{**p, "radius": {"value": reach}} for p in profiles]
        if _overlapping(wide):  # one Hole per point: FreeCAD's Hole cannot cut overlapping circles
            return [
                f
                for profile in profiles
                for f in self._hole_feature(
                    plane,
                    [profile],
                    diameter,
                    depth,
                    dims,
                    depth_arg,
                    cut,
                    cut_diameter,
                    cut_depth,
                    cut_angle,
                )
            ]
        return self._hole_feature(
            plane, profiles, diameter, depth, dims, depth_arg, cut, cut_diameter, cut_depth, cut_angle
        )

    def _polar_pattern(self, wp: Any, index: int) -> dict | None:
        """The PolarPattern for holes on a full-circle polarArray's points, else None."""
        entry = self._polar.get(id(wp))
        if entry is None or entry[0] is not wp:
            return None
        params, dims = entry[1]["params"], entry[1]["dims"]
        count = params.get("count")
        if not isinstance(count, int) or count < 2 or float(params.get("angle", 360)) % 360:
            return None
        return {"kind": "polar_pattern", "originals": [index], "axis_origin": _vec(wp.plane.origin),
                "axis_dir": _vec(wp.plane.zDir), "angle": {"value": 360.0},
                "count": self._dim(float(count), dims.get(3))}

    def _hole_feature(
        self,
        plane: Any,
        profiles: list[dict],
        diameter: float,
        depth: Any,
        dims: dict,
        depth_arg: int,
        cut: str,
        cut_diameter: dict | None,
        cut_depth: dict | None,
        cut_angle: dict | None,
    ) -> list[dict]:
        feature = {
            "kind": "hole",
            "sketch": self._sketch(plane, profiles),
            "diameter": self._dim(diameter, dims.get(0)),
            "depth": None if depth is None else self._dim(float(depth), dims.get(depth_arg)),
            "cut": cut,
        }
        if cut != "none":
            feature.update(cut_diameter=cut_diameter, cut_depth=cut_depth, cut_angle=cut_angle)
        return [feature]

    def _op_hole(self, wp, p, dims, before, base, result) -> list[dict]:
        return self._hole(wp, float(p["diameter"]), p.get("depth"), dims, 1, "none", base=base)

    def _op_cboreHole(self, wp, p, dims, before, base, result) -> list[dict]:  # noqa: N802
        return self._hole(
            wp,
            float(p["diameter"]),
            p.get("depth"),
            dims,
            3,
            "counterbore",
            self._dim(float(p["cboreDiameter"]), dims.get(1)),
            self._dim(float(p["cboreDepth"]), dims.get(2)),
            base=base,
        )

    def _op_cskHole(self, wp, p, dims, before, base, result) -> list[dict]:  # noqa: N802
        return self._hole(
            wp,
            float(p["diameter"]),
            p.get("depth"),
            dims,
            3,
            "countersink",
            self._dim(float(p["cskDiameter"]), dims.get(1)),
            None,
            self._dim(float(p["cskAngle"]), dims.get(2)),
            base=base,
        )

    def _op_revolve(self, wp, p, dims, before, base, result) -> list[dict]:
        start = p.get("axisStart")
        start = (0.0, 0.0) if start is None else tuple(float(c) for c in start)
        end = p.get("axisEnd")
        end = (
            ((0.0, start[1]) if start[1] != 0 else (0.0, 1.0))
            if end is None
            else tuple(float(c) for c in end)
        )
        if len(start) > 2 and start[2] or len(end) > 2 and end[2]:
            raise Unmapped("a revolve axis out of the sketch plane")
        angle = float(p.get("angleDegrees", 360.0)) % 360.0 or 360.0
        kind = "groove" if self._combine(p, before) == "cut" else "revolution"
        axis = {"start": [_round(start[0]), _round(start[1])], "end": [_round(end[0]), _round(end[1])]}
        return [
            {
                "kind": kind,
                "sketch": self._pending_sketch(wp, before),
                "axis": axis,
                "angle": self._dim(angle, dims.get(0)),
            }
        ]

    def _op_loft(self, wp, p, dims, before, base, result) -> list[dict]:
        wires = list(before["wires"])
        if len(wires) < 2 or any(isinstance(o, self._cq.Sketch | self._cq.Face) for o in wp.objects):
            raise Unmapped("a loft through faces or sketches")
        if self._combine(p, before) == "cut":
            raise Unmapped("a subtractive loft")
        sections = []
        plane = wp.plane
        for wire in wires:
            # Each section lies in a plane parallel to the workplane, offset along its normal.
            heights = {round(plane.toLocalCoords(v.Center()).z, 6) for v in wire.Vertices()}
            if len(heights) != 1:
                raise Unmapped("a loft section that is not parallel to its workplane")
            offset = self._cq.Plane(plane.origin + plane.zDir * heights.pop(), plane.xDir, plane.zDir)
            sections.append({"plane": self._plane(offset), "profiles": [self._wire_profile(offset, wire)]})
        ruled = bool(p.get("ruled"))
        return [{"kind": "loft", "sketch": sections[0], "sections": sections[1:], "ruled": ruled}]

    def _edges(self, wp: Any) -> list[dict]:
        from OCP.BRep import BRep_Tool

        edges = self._quiet(lambda: wp.edges().vals())
        solid = self._solid(wp)
        faces = solid.Faces() if solid is not None else []
        records = []
        for e in edges:
            # A seam (where a cylinder closes on itself) is no edge to round, and FreeCAD puts its
            # seams elsewhere: recorded, so the builder can leave it out.
            seam = any(
                BRep_Tool.IsClosed_s(e.wrapped, f.wrapped)
                for f in faces
                if any(e.isSame(fe) for fe in f.Edges())
            )
            # Centre of mass and length identify an edge whatever its orientation.
            records.append(
                {
                    "start": _vec(e.startPoint()),
                    "end": _vec(e.endPoint()),
                    "mid": _vec(e.positionAt(0.5)),
                    "center": _vec(e.Center()),
                    "length": _round(e.Length()),
                    "seam": seam,
                }
            )
        return records

    def _op_fillet(self, wp, p, dims, before, base, result) -> list[dict]:
        return [
            {"kind": "fillet", "edges": self._edges(wp), "radius": self._dim(float(p["radius"]), dims.get(0))}
        ]

    def _op_chamfer(self, wp, p, dims, before, base, result) -> list[dict]:
        if p.get("length2") is not None and p["length2"] != p["length"]:
            raise Unmapped("a chamfer with two different lengths")
        return [
            {"kind": "chamfer", "edges": self._edges(wp), "size": self._dim(float(p["length"]), dims.get(0))}
        ]

    def _op_shell(self, wp, p, dims, before, base, result) -> list[dict]:
        faces = [f for f in wp.objects if isinstance(f, self._cq.Face)]
        if not faces:
            raise Unmapped("a closed shell (no face removed)")
        records = [
            {"center": _vec(f.Center()), "normal": _vec(f.normalAt()), "area": _round(f.Area())}
            for f in faces
        ]
        thickness = float(p["thickness"])
        return [
            {
                "kind": "thickness",
                "faces": records,
                "value": self._dim(abs(thickness), dims.get(0)),
                "inward": thickness < 0,
                "join": p.get("kind", "arc"),
            }
        ]

    def _other_histories(self, others: tuple) -> list[list[dict]]:
        cq = self._cq
        histories = []
        for other in others:
            solid = self._solid(other) if isinstance(other, cq.Workplane) else other
            entry = self._histories.get(_key(solid)) if solid is not None else None
            if entry is None:
                raise Unmapped("the other solid was not made by a recorded step")
            histories.append(entry[1])
        return histories

    def _op_union(self, wp, p, dims, before, base, result) -> list[dict]:
        if before["solid"] is None:
            raise Unmapped("a union without a solid to add to")
        features: list[dict] = []
        for history in self._other_histories((p["toUnion"],)):
            # A Body adds features in turn: exact only when the other solid is purely additive.
            if any(f["kind"] not in ("pad", "revolution", "linear_pattern") for f in history):
                raise Unmapped("a union with a solid that has its own cuts or edge features")
            features += _renumbered(history, len(base) + len(features))
        return features

    def _op_cut(self, wp, p, dims, before, base, result) -> list[dict]:
        if before["solid"] is None:
            raise Unmapped("a cut without a solid to cut from")
        features: list[dict] = []
        for history in self._other_histories((p["toCut"],)):
            if any(f["kind"] not in ("pad", "revolution", "linear_pattern") for f in history):
                raise Unmapped("a cut by a solid that has its own cuts or edge features")
            for f in _renumbered(history, len(base) + len(features)):
                if f["kind"] == "linear_pattern":
                    features.append(f)  # now of the pockets the pads became
                elif f["kind"] == "pad":
                    features.append(
                        {**f, "kind": "pocket", "through_all": False, "reversed": not f["reversed"]}
                    )
                else:
                    features.append({**f, "kind": "groove"})
        return features

    def _op_translate(self, wp, p, dims, before, base, result) -> list[dict]:
        vec = self._cq.Vector(p["vec"]) if not isinstance(p["vec"], tuple) else self._cq.Vector(*p["vec"])
        if any(f["kind"] == "mirrored" for f in base):
            raise Unmapped("translating a mirrored history (its mirror plane would move)")
        return [_translated(f, vec) for f in base]

    def _op_mirror(self, wp, p, dims, before, base, result) -> list[dict]:
        if not p.get("union"):
            raise Unmapped("a mirror that keeps only the mirrored copy")
        plane = p.get("mirrorPlane", "XY")
        if not isinstance(plane, str) or p.get("basePointVector") is not None:
            raise Unmapped("a mirror about a face or an offset plane")
        # 0.20's Mirrored takes no pattern as an original: the patterns' instances go back in their
        # sketches, as without linear patterns.
        base = _flattened(base)
        if any(f["kind"] not in ("pad", "revolution") for f in base):
            # FreeCAD's Mirrored repeats each feature, which differs from mirroring a solid with cuts.
            raise Unmapped("a mirror of a solid with cuts or edge features")
        normal = {
            "XY": (0, 0, 1),
            "YX": (0, 0, 1),
            "XZ": (0, 1, 0),
            "ZX": (0, 1, 0),
            "YZ": (1, 0, 0),
            "ZY": (1, 0, 0),
        }[plane.upper()]
        return [
            *base,
            {
                "kind": "mirrored",
                "originals": list(range(len(base))),
                "origin": [0.0, 0.0, 0.0],
                "normal": [float(c) for c in normal],
            }
        ]

    # ----------------------------------------------------------------- the plan
    def plan(self, solid: Any) -> dict:
        """The plan of the recorded history that built ``solid`` (a cadquery Shape). Never raises."""
        try:
            return self._plan(solid)
        except Exception as exc:  # noqa: BLE001 - the job's result must still come back
            return _unmapped_plan([f"tracer error: {type(exc).__name__}: {exc}"])

    def _plan(self, solid: Any) -> dict:
        history = self._history_of(solid)
        if history is None:
            return _unmapped_plan(self._errors or ["the result was not made by a recorded CadQuery step"])
        reasons = [
            f"line {f['line']}: {f['method']}(): {f['reason']}" for f in history if f["kind"] == "unmapped"
        ]
        reasons += self._errors
        # "_flat" (a pattern's instances, for _flattened) is the recorder's own, never on the wire.
        history = [{k: v for k, v in f.items() if k != "_flat"} for f in history]
        used = set()
        for feature in history:
            used.update(_params_in(feature))
        recorded = sorted(
            (p for p in self._params.values() if p["name"] in used),
            key=lambda p: (p["line"], p["col"], str(p["arg"])),
        )
        # Names after each parameter's role in this plan (names.py), unique in program order.
        keys = [p["name"] for p in recorded]
        final = final_names(keys, role_names(history, {p["name"]: p["base"] for p in recorded}))
        parameters = [
            {"name": final[p["name"]], **{k: p[k] for k in ("value", "line", "col", "arg")}}
            for p in recorded
        ]
        plan = {
            "version": protocol.FEATURE_PLAN_VERSION,
            "status": protocol.PLAN_UNMAPPED if reasons else protocol.PLAN_MAPPED,
            "reasons": reasons,
            "parameters": parameters,
            "features": _renamed(history, final),
            "volume": _round(solid.Volume()),
        }
        protocol.check_feature_plan(plan)
        return plan

    def _history_of(self, solid: Any) -> list[dict] | None:
        entry = self._histories.get(_key(solid))
        if entry is not None:
            return entry[1]
        # The caller may pass a copy (fused, cleaned): take the newest recorded solid that matches.
        volume, box = solid.Volume(), solid.BoundingBox()
        for key in reversed(self._order):
            candidate, history = self._histories[key]
            other = candidate.BoundingBox()
            if abs(candidate.Volume() - volume) <= 1e-6 * max(1.0, abs(volume)) and all(
                abs(a - b) < 1e-6
                for a, b in zip(
                    (box.xmin, box.ymin, box.zmin, box.xmax, box.ymax, box.zmax),
                    (other.xmin, other.ymin, other.zmin, other.xmax, other.ymax, other.zmax),
                    strict=True,
                )
            ):
                return history
        return None


def _key(shape: Any) -> tuple:
    """The same for every wrapper of the same solids (OCCT shape identity, not Python's)."""
    return tuple(sorted(s.hashCode() for s in shape.Solids()))


def _bind(fn: Callable, args: tuple, kwargs: dict) -> dict:
    """The call's arguments by parameter name, defaults filled in."""
    import inspect

    bound = inspect.signature(fn).bind(None, *args, **kwargs)
    bound.apply_defaults()
    values = dict(bound.arguments)
    values.pop(next(iter(values)))  # self
    return values


def _cross(a: list[float], b: list[float]) -> list[float]:
    return [a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]]


def _close(a: list[float], b: list[float], tol: float = 1e-6) -> bool:
    return all(abs(x - y) <= tol for x, y in zip(a, b, strict=True))


def _grid_layout(refs: list[list[float]]) -> tuple[int, list[tuple[int, float, int]]] | None:
    """(index of the grid's lowest corner, [(axis, spacing, count) for each axis with count >= 2])
    when ``refs`` are every point of a regular grid along the sketch axes once, else None."""
    size = max(1.0, *(abs(c) for r in refs for c in r))
    tol = 1e-6 * size
    axes = []
    levels = []
    for axis in (0, 1):
        values: list[float] = []
        for value in sorted(r[axis] for r in refs):
            if not values or value - values[-1] > tol:
                values.append(value)
        levels.append(values)
        if len(values) >= 2:
            steps = [b - a for a, b in zip(values, values[1:], strict=False)]
            if max(steps) - min(steps) > tol:
                return None
            axes.append((axis, (values[-1] - values[0]) / (len(values) - 1), len(values)))
    xs, ys = levels

    def level(values: list[float], value: float) -> int:
        return next(i for i, v in enumerate(values) if abs(v - value) <= tol)

    cells = [(level(xs, r[0]), level(ys, r[1])) for r in refs]
    # As many points as cells, each in its own: every point of the grid once.
    if not axes or len(xs) * len(ys) != len(refs) or len(set(cells)) != len(refs):
        return None
    return cells.index((0, 0)), axes


def _flattened(history: list[dict]) -> list[dict]:
    """``history`` with each linear_pattern undone: its original holds every instance again, as a
    step without patterns maps (for features a pattern cannot follow, like Mirrored on 0.20)."""
    if not any(f["kind"] == "linear_pattern" for f in history):
        return history
    out: list[dict] = []
    moved: dict[int, int] = {}
    for i, feature in enumerate(history):
        if feature["kind"] == "linear_pattern":
            continue
        moved[i] = len(out)
        copy = dict(feature)
        if "_flat" in copy:
            copy["sketch"] = {**copy["sketch"], "profiles": copy.pop("_flat")}
        out.append(copy)
    for feature in out:
        if "originals" in feature:
            feature["originals"] = [moved[i] for i in feature["originals"] if i in moved]
    return out


def _renumbered(history: list[dict], offset: int) -> list[dict]:
    """Copies of ``history``'s features for a Body where they start at index ``offset``."""
    return [
        {**f, "originals": [i + offset for i in f["originals"]]} if "originals" in f else dict(f)
        for f in history
    ]


def _same(a: list[float], b: list[float], tol: float = 1e-6) -> bool:
    return math.hypot(a[0] - b[0], a[1] - b[1]) < tol


def _merged(edges: list[dict]) -> list[dict]:
    """Edges with collinear lines and co-circular arcs that meet joined into one: a split that
    CadQuery's sketches leave, and that would make Sketcher see redundant or free constraints."""
    edges = [dict(e) for e in edges]
    changed = True
    while changed:
        changed = False
        for i, a in enumerate(edges):
            for j, b in enumerate(edges):
                if i == j or a["kind"] != b["kind"]:
                    continue
                joined = None
                if a["kind"] == "arc":
                    same_circle = _same(a["center"], b["center"]) and abs(a["radius"] - b["radius"]) < 1e-6
                    if same_circle and _same(a["end"], b["start"]):  # both counter-clockwise: a then b
                        joined = {**a, "end": b["end"]}
                elif a["kind"] == "line":
                    ends = [(p, q) for p in ("start", "end") for q in ("start", "end") if _same(a[p], b[q])]
                    if ends:
                        p, q = ends[0]
                        u = a["end" if p == "start" else "start"]
                        w = b["end" if q == "start" else "start"]
                        s = a[p]
                        cross = (s[0] - u[0]) * (w[1] - s[1]) - (s[1] - u[1]) * (w[0] - s[0])
                        dot = (s[0] - u[0]) * (w[0] - s[0]) + (s[1] - u[1]) * (w[1] - s[1])
                        scale = math.hypot(s[0] - u[0], s[1] - u[1]) * math.hypot(w[0] - s[0], w[1] - s[1])
                        if dot > 0 and abs(cross) <= 1e-9 * max(scale, 1e-12):
                            joined = {"kind": "line", "start": u, "end": w}
                if joined is not None:
                    edges = [e for k, e in enumerate(edges) if k not in (i, j)] + [joined]
                    changed = True
                    break
            if changed:
                break
    return edges


def _extent(profile: dict) -> tuple[float, float, float, float]:
    """(xmin, ymin, xmax, ymax) of a profile in its sketch (arcs by their whole circle: conservative)."""
    if profile["kind"] == "circle":
        (x, y), r = profile["center"], profile["radius"]["value"]
        return x - r, y - r, x + r, y + r
    if profile["kind"] == "rect":
        w, h = profile["width"]["value"], profile["height"]["value"]
        x0 = profile["at"][0] - (w / 2 if profile["anchor"][0] == "center" else 0)
        y0 = profile["at"][1] - (h / 2 if profile["anchor"][1] == "center" else 0)
        return x0, y0, x0 + w, y0 + h
    xs, ys = [], []
    for edge in profile["edges"]:
        xs += [edge["start"][0], edge["end"][0]]
        ys += [edge["start"][1], edge["end"][1]]
    return min(xs), min(ys), max(xs), max(ys)


def _overlapping(profiles: list[dict]) -> bool:
    """Two profiles that cross (neither inside the other): exact for two circles, else by extents."""
    boxes = [_extent(p) for p in profiles]
    for i, a in enumerate(boxes):
        for j, b in enumerate(boxes[i + 1 :], start=i + 1):
            if profiles[i]["kind"] == profiles[j]["kind"] == "circle":
                (x0, y0), (x1, y1) = profiles[i]["center"], profiles[j]["center"]
                r0, r1 = profiles[i]["radius"]["value"], profiles[j]["radius"]["value"]
                d = math.hypot(x1 - x0, y1 - y0)
                if abs(r0 - r1) < d < r0 + r1:
                    return True
                continue
            apart = a[2] <= b[0] or b[2] <= a[0] or a[3] <= b[1] or b[3] <= a[1]
            nested = (a[0] <= b[0] and a[1] <= b[1] and a[2] >= b[2] and a[3] >= b[3]) or (
                b[0] <= a[0] and b[1] <= a[1] and b[2] >= a[2] and b[3] >= a[3]
            )
            if not apart and not nested:
                return True
    return False


def _params_in(value: Any) -> set[str]:
    if isinstance(value, dict):
        found = {value["param"]} if isinstance(value.get("param"), str) else set()
        for item in value.values():
            found |= _params_in(item)
        return found
    if isinstance(value, list | tuple):
        found = set()
        for item in value:
            found |= _params_in(item)
        return found
    return set()


def _renamed(value: Any, final: dict[str, str]) -> Any:
    """A copy of ``value`` with every dimension's provisional parameter name replaced by its final one."""
    if isinstance(value, dict):
        out = {k: _renamed(v, final) for k, v in value.items()}
        if isinstance(value.get("param"), str):
            out["param"] = final[value["param"]]
        return out
    if isinstance(value, list):
        return [_renamed(v, final) for v in value]
    return value


def _shift(point: list[float], vec: Any) -> list[float]:
    return [_round(point[0] + vec.x), _round(point[1] + vec.y), _round(point[2] + vec.z)]


def _translated(feature: dict, vec: Any) -> dict:
    out = dict(feature)
    if "sketch" in out:
        sketch = dict(out["sketch"])
        sketch["plane"] = {**sketch["plane"], "origin": _shift(sketch["plane"]["origin"], vec)}
        out["sketch"] = sketch
    if "edges" in out:
        out["edges"] = [
            {
                **e,
                "start": _shift(e["start"], vec),
                "end": _shift(e["end"], vec),
                "mid": _shift(e["mid"], vec),
                "center": _shift(e["center"], vec),
            }
            for e in out["edges"]
        ]
    if "faces" in out:
        out["faces"] = [{**f, "center": _shift(f["center"], vec)} for f in out["faces"]]
    if "axis_origin" in out:  # a polar pattern turns about its moved sketch's normal
        out["axis_origin"] = _shift(out["axis_origin"], vec)
    return out


def _unmapped_plan(reasons: list[str]) -> dict:
    return {
        "version": protocol.FEATURE_PLAN_VERSION,
        "status": protocol.PLAN_UNMAPPED,
        "reasons": list(reasons),
        "parameters": [],
        "features": [],
        "volume": 0.0,
    }


def trace(code: str, filename: str = "<cadsnap>") -> tuple[dict, Any]:
    """Run trusted ``code`` in this process with a Recorder: (plan, the result's single solid).

    For tests, benchmarks and tools that run programs they trust; generated code is traced inside
    the sandbox job instead. Raises what the program raises, or ValueError without one solid.
    """
    import cadquery as cq

    recorder = Recorder()
    scope = recorder.instrument({"__builtins__": __builtins__, "__name__": "__cadsnap__"})
    exec(compile(code, filename, "exec"), scope)  # noqa: S102 - trusted code only, see the docstring
    result = scope.get("result")
    shapes = result.vals() if isinstance(result, cq.Workplane) else [result]
    solids = [s for shape in shapes if isinstance(shape, cq.Shape) for s in shape.Solids()]
    if len(solids) != 1:
        raise ValueError(f"result holds {len(solids)} solids, not one")
    solid = shapes[0] if len(shapes) == 1 and isinstance(shapes[0], cq.Solid) else solids[0]
    return recorder.plan(solid), solid
