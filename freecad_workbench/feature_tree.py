"""A feature plan built as a native PartDesign Body: constrained sketches, named dimensions, features.

The runtime traces the winning CadQuery program into a plan (``model_runtime.protocol``, "Feature
plan"); this module turns it into a Body whose sketches are fully constrained, with every dimension
the program named kept in a "Parameters" spreadsheet and bound by expression to the sketch
constraints (named the same) and feature properties that use it. Change ``Parameters.plate_length``
(or a pattern's ``hole_spacing_x`` / ``hole_count_x``) and the Body recomputes in FreeCAD alone; the
saved document needs nothing from CadSnap.

After building, the Body is compared with the CadQuery solid (volume and IoU >= ``MIN_IOU``). A plan
with an unmapped step, a feature that fails, or a Body that does not match falls back to today's
solid with source (``insert.insert_plan`` decides, through ``build_checked``), and the message says which
step could not become a feature. Needs FreeCAD, Part and Sketcher; no GUI.

A built Body shows its solid only: the Tip is visible, sketches and earlier features hidden. A document
written by ``freecadcmd`` stores each object's Visibility and the GUI shows what it stores, so this is
set here, not left to the GUI.
"""

from __future__ import annotations

import math
import re

import FreeCAD
import Part
import Sketcher

from model_runtime import protocol

from .brep import shape_from_brep
from .profile_dims import polyline_dims
from .sheet_values import NAME_COLUMN_PX, parameter_unit, sheet_content

MIN_IOU = 0.999
MAX_VOLUME_ERROR = 1e-3  # relative
SHEET_NAME = "Parameters"
_ORIGIN_PLANES = {(0, 0, 1): "XY_Plane", (0, 1, 0): "XZ_Plane", (1, 0, 0): "YZ_Plane"}


class BuildError(Exception):
    """A plan step that could not become a working feature; ``step`` is its 1-based index or 0."""

    def __init__(self, message: str, step: int = 0) -> None:
        super().__init__(message)
        self.step = step


def _v(xyz) -> FreeCAD.Vector:
    return FreeCAD.Vector(float(xyz[0]), float(xyz[1]), float(xyz[2]))


def _placement(plane: dict) -> FreeCAD.Placement:
    z = _v(plane["normal"]).normalize()
    x = _v(plane["x_dir"]).normalize()
    y = z.cross(x)
    matrix = FreeCAD.Matrix(x.x, y.x, z.x, 0, x.y, y.y, z.y, 0, x.z, y.z, z.z, 0, 0, 0, 0, 1)
    return FreeCAD.Placement(_v(plane["origin"]), FreeCAD.Rotation(matrix))


def _symmetric(obj, on: bool) -> None:
    """Pad/Pocket symmetric to the sketch plane: ``SideType`` where FreeCAD has it (1.1, which keeps a
    deprecated ``Midplane`` that some builds ignore), ``Midplane`` before."""
    if "SideType" in obj.PropertiesList:
        choices = obj.getEnumerationsOfProperty("SideType")
        obj.SideType = next(c for c in choices if "ymmetric" in c) if on else choices[0]
        return
    obj.Midplane = on


def _round(x: float) -> float:
    return round(float(x), 9)


def _sketch_axis(plane: dict, direction) -> int | None:
    """0 or 1 when ``direction`` is the plan sketch plane's x or y axis, else None."""
    d = _v(direction)
    x = _v(plane["x_dir"]).normalize()
    y = _v(plane["normal"]).normalize().cross(x)
    for axis, vector in enumerate((x, y)):
        if (d - vector).Length < 1e-6:
            return axis
    return None


def _step_name(index: int, feature: dict) -> str:
    return f"step {index} ({feature.get('method', feature['kind'])}() at line {feature.get('line', '?')})"


class _Dims:
    """Named dimensions: one spreadsheet cell per parameter; expressions that read it.

    Values stay plain numbers, their unit in a column beside them: expressions mix them with plain
    coordinates (``12.5 - Parameters.hole_spacing_x * ...``), and FreeCAD refuses to add a length to
    a number."""

    def __init__(self, doc, parameters: list[dict]) -> None:
        self.doc = doc
        self.sheet = None
        self.names: set[str] = set()
        self.rows = 1
        for parameter in parameters:
            self._row(parameter["name"], parameter["value"])

    def _row(self, name: str, value: float) -> None:
        if self.sheet is None:
            self.sheet = self.doc.addObject("Spreadsheet::Sheet", SHEET_NAME)
            self.sheet.set("A1", "Parameter")
            self.sheet.set("B1", "Value")
            self.sheet.set("C1", "Unit")
            self.sheet.setStyle("A1:C1", "bold")
            self.sheet.setColumnWidth("A", NAME_COLUMN_PX)
        self.rows += 1
        self.sheet.set(f"A{self.rows}", name)
        self.sheet.set(f"B{self.rows}", sheet_content(value))
        self.sheet.setAlias(f"B{self.rows}", name)
        self.sheet.set(f"C{self.rows}", parameter_unit(name))
        self.names.add(name)

    def derived(self, parameters: list[tuple[str, float]]) -> dict[str, str]:
        """Rows for dimensions the workbench names itself (a polyline's extents and wall, which the
        program writes as plain coordinates); {name: the expression that reads its cell}."""
        refs = {}
        for name, value in parameters:
            unique, n = name, 1
            while unique in self.names:
                n += 1
                unique = f"{name}_{n}"
            self._row(unique, value)
            refs[name] = f"{self.sheet.Name}.{unique}"
        return refs

    def expr(self, dim: dict | None, factor: float = 1.0) -> str | None:
        """The expression for ``factor`` x the dimension, or None when it is not named."""
        if not dim or dim.get("param") not in self.names or self.sheet is None:
            return None
        scale = float(dim.get("scale", 1.0)) * factor
        ref = f"{self.sheet.Name}.{dim['param']}"
        return ref if abs(scale - 1.0) < 1e-12 else f"{ref} * {scale!r}"

    def bind(self, obj, prop: str, dim: dict | None, factor: float = 1.0) -> None:
        value = float(dim["value"]) * factor
        # Counts are integer properties: FreeCAD refuses a float there.
        setattr(obj, prop, int(round(value)) if isinstance(getattr(obj, prop), int) else value)
        expression = self.expr(dim, factor)
        if expression:
            obj.setExpression(prop, expression)


class _SketchBuilder:
    """Geometry and constraints of one sketch; every point fixed once, dimensions named."""

    def __init__(
        self, sketch, dims: _Dims, at: tuple[str | None, str | None] = (None, None), by_ends: bool = False
    ) -> None:
        self.sketch = sketch
        # by_ends: an arc is held by its two ends and its radius, its centre left to follow; for a
        # profile whose arcs meet tangentially, where two fixed circles pin a point the solver may
        # not reach (they touch, or just miss, after rounding).
        self.by_ends = by_ends
        self.dims = dims
        # Expressions for a patterned profile's position along x and y (see _BodyBuilder.pattern_at).
        self.at = at
        self.geometry: list = []
        self.construction: list[bool] = []
        self.constraints: list = []
        self.named: list[tuple[int, str, str | None]] = []  # (constraint index, name, expression)
        self.used_names: set[str] = set()

    def _geo(self, geometry, construction: bool = False) -> int:
        self.geometry.append(geometry)
        self.construction.append(construction)
        return len(self.geometry) - 1

    def _add(self, constraint, dim: dict | None = None, expression: str | None = None) -> int:
        self.constraints.append(constraint)
        index = len(self.constraints) - 1
        if dim is not None and dim.get("param") in self.dims.names:
            name, n = dim["param"], 1
            while name in self.used_names:
                n += 1
                name = f"{dim['param']}_{n}"
            self.used_names.add(name)
            self.named.append((index, name, expression))
        elif expression:
            self.named.append((index, "", expression))
        return index

    def fix(
        self, geo: int, pos: int, x: float, y: float, x_expr: str | None = None, y_expr: str | None = None
    ) -> None:
        """Pin a point: on an axis when its coordinate is zero, else a distance from the origin."""
        if abs(x) < 1e-9 and not x_expr:
            self._add(Sketcher.Constraint("PointOnObject", geo, pos, -2))
        else:
            self._add(Sketcher.Constraint("DistanceX", -1, 1, geo, pos, float(x)), expression=x_expr)
        if abs(y) < 1e-9 and not y_expr:
            self._add(Sketcher.Constraint("PointOnObject", geo, pos, -1))
        else:
            self._add(Sketcher.Constraint("DistanceY", -1, 1, geo, pos, float(y)), expression=y_expr)

    def circle(self, profile: dict) -> None:
        cx, cy = profile["center"]
        radius = profile["radius"]
        geo = self._geo(
            Part.Circle(FreeCAD.Vector(cx, cy, 0), FreeCAD.Vector(0, 0, 1), float(radius["value"]))
        )
        self.fix(geo, 3, cx, cy, *self.at)
        if float(radius.get("scale", 1.0)) == 0.5:  # named as a diameter (holes)
            self._add(
                Sketcher.Constraint("Diameter", geo, 2 * float(radius["value"])),
                radius,
                self.dims.expr(radius, 2.0),
            )
        else:
            self._add(
                Sketcher.Constraint("Radius", geo, float(radius["value"])), radius, self.dims.expr(radius)
            )

    def rect(self, profile: dict) -> None:
        width, height = profile["width"], profile["height"]
        w, h = float(width["value"]), float(height["value"])
        ax, ay = profile["at"]
        x0 = ax - w / 2 if profile["anchor"][0] == "center" else ax
        y0 = ay - h / 2 if profile["anchor"][1] == "center" else ay
        corners = [(x0, y0), (x0 + w, y0), (x0 + w, y0 + h), (x0, y0 + h)]
        lines = [
            self._geo(
                Part.LineSegment(FreeCAD.Vector(*corners[i], 0), FreeCAD.Vector(*corners[(i + 1) % 4], 0))
            )
            for i in range(4)
        ]
        for i in range(4):
            self._add(Sketcher.Constraint("Coincident", lines[i], 2, lines[(i + 1) % 4], 1))
        self._add(Sketcher.Constraint("Horizontal", lines[0]))
        self._add(Sketcher.Constraint("Horizontal", lines[2]))
        self._add(Sketcher.Constraint("Vertical", lines[1]))
        self._add(Sketcher.Constraint("Vertical", lines[3]))
        self._add(Sketcher.Constraint("DistanceX", lines[0], 1, lines[0], 2, w), width, self.dims.expr(width))
        self._add(
            Sketcher.Constraint("DistanceY", lines[1], 1, lines[1], 2, h), height, self.dims.expr(height)
        )
        # The anchor keeps a centred rectangle centred when its size changes, as in CadQuery; a
        # patterned one's anchor follows the pattern's spacing and count.
        corner = []
        for axis, (at, size) in enumerate(((ax, width), (ay, height))):
            at_expr, size_expr = self.at[axis], self.dims.expr(size)
            if profile["anchor"][axis] != "center":
                corner.append(at_expr)
            elif at_expr or size_expr:
                half = f"({size_expr or repr(float(size['value']))}) / 2"
                corner.append(f"({at_expr or repr(float(at))}) - {half}")
            else:
                corner.append(None)
        self.fix(lines[0], 1, x0, y0, *corner)

    def wire(self, profile: dict) -> None:
        params, levels = polyline_dims(profile["edges"])
        refs = self.dims.derived(params)

        def at(axis: str, value: float) -> str | None:
            template = levels.get((axis, round(float(value), 9)))
            if template is None:
                return None
            return re.sub(r"[a-z_]+", lambda m: refs.get(m.group(0), m.group(0)), template)

        ends: list[tuple[int, int, float, float]] = []
        arcs: dict[int, tuple[float, float]] = {}  # arc geometry -> its centre
        for edge in profile["edges"]:
            if edge["kind"] == "line":
                (x0, y0), (x1, y1) = edge["start"], edge["end"]
                geo = self._geo(Part.LineSegment(FreeCAD.Vector(x0, y0, 0), FreeCAD.Vector(x1, y1, 0)))
            else:
                cx, cy = edge["center"]
                (x0, y0), (x1, y1) = edge["start"], edge["end"]
                a0 = math.atan2(y0 - cy, x0 - cx)
                a1 = math.atan2(y1 - cy, x1 - cx)
                while a1 <= a0:
                    a1 += 2 * math.pi
                radius = float(edge["radius"])
                if self.by_ends and math.hypot(x1 - x0, y1 - y0) < 1.9 * radius:
                    am = (a0 + a1) / 2
                    mid = FreeCAD.Vector(cx + radius * math.cos(am), cy + radius * math.sin(am), 0)
                    start_pt, end_pt = FreeCAD.Vector(x0, y0, 0), FreeCAD.Vector(x1, y1, 0)
                    geo = self._geo(Part.ArcOfCircle(start_pt, mid, end_pt))
                    self._add(Sketcher.Constraint("Radius", geo, radius))
                else:
                    circle = Part.Circle(FreeCAD.Vector(cx, cy, 0), FreeCAD.Vector(0, 0, 1), radius)
                    geo = self._geo(Part.ArcOfCircle(circle, a0, a1))
                    # Centre and radius, not the chord: a semicircle's ends alone make the radius
                    # redundant.
                    self.fix(geo, 3, cx, cy, at("x", cx), at("y", cy))
                    self._add(Sketcher.Constraint("Radius", geo, radius))
                    arcs[geo] = (cx, cy)
            ends += [(geo, 1, x0, y0), (geo, 2, x1, y1)]
        groups: list[list[tuple[int, int, float, float]]] = []
        for end in ends:
            for group in groups:
                if math.hypot(group[0][2] - end[2], group[0][3] - end[3]) < 1e-6:
                    group.append(end)
                    break
            else:
                groups.append([end])
        for group in groups:
            first = group[0]
            for other in group[1:]:
                self._add(Sketcher.Constraint("Coincident", first[0], first[1], other[0], other[1]))
            on_arcs = [arcs[g] for g, _, _, _ in group if g in arcs]
            if not on_arcs:
                self.fix(first[0], first[1], first[2], first[3], at("x", first[2]), at("y", first[3]))
            elif len(on_arcs) == 1:
                # The point slides on its arc: pin the coordinate that moves most along it.
                cx, cy = on_arcs[0]
                angle = math.atan2(first[3] - cy, first[2] - cx)
                if abs(math.sin(angle)) >= abs(math.cos(angle)):
                    self._fix_one(first[0], first[1], "x", first[2], at("x", first[2]))
                else:
                    self._fix_one(first[0], first[1], "y", first[3], at("y", first[3]))
            # Where two arcs meet, their circles already fix the point.

    def _fix_one(self, geo: int, pos: int, axis: str, value: float, expression: str | None = None) -> None:
        if abs(value) < 1e-9 and not expression:
            self._add(Sketcher.Constraint("PointOnObject", geo, pos, -2 if axis == "x" else -1))
        else:
            kind = "DistanceX" if axis == "x" else "DistanceY"
            self._add(Sketcher.Constraint(kind, -1, 1, geo, pos, float(value)), expression=expression)

    def axis_line(self, axis: dict) -> int:
        (x0, y0), (x1, y1) = axis["start"], axis["end"]
        geo = self._geo(
            Part.LineSegment(FreeCAD.Vector(x0, y0, 0), FreeCAD.Vector(x1, y1, 0)), construction=True
        )
        self.fix(geo, 1, x0, y0)
        self.fix(geo, 2, x1, y1)
        return geo

    def commit(self) -> None:
        sketch = self.sketch
        for geometry, construction in zip(self.geometry, self.construction, strict=True):
            sketch.addGeometry(geometry, construction)
        sketch.addConstraint(self.constraints)
        for index, name, expression in self.named:
            if name:
                sketch.renameConstraint(index, name)
            if expression:
                sketch.setExpression(
                    f".Constraints[{index}]" if not name else f".Constraints.{name}", expression
                )


class _BodyBuilder:
    def __init__(self, doc, plan: dict, name: str, into=None) -> None:
        self.doc = doc
        self.plan = plan
        self.body = into if into is not None else doc.addObject("PartDesign::Body", name)
        self.dims = _Dims(doc, plan.get("parameters") or [])
        self.features: list = []  # one FreeCAD feature per plan step (None for steps without one)
        self.loose_sketches: list[str] = []
        # The one feature each linear_pattern repeats, by its plan index: its sketch is built to follow.
        self.patterns = {
            f["originals"][0]: f
            for f in plan["features"]
            if f["kind"] == "linear_pattern" and len(f.get("originals") or []) == 1
        }

    def origin_plane(self, role: str):
        return next(f for f in self.body.Origin.OriginFeatures if f.Role == role)

    def pattern_at(self, plan_sketch: dict, index: int) -> tuple[str | None, str | None]:
        """Expressions for the position of step ``index``'s one profile when a linear_pattern
        repeats it with a named spacing or count: a centred grid keeps its centre, as CadQuery's
        rarray does, so its first instance moves by spacing x (count - 1) / 2."""
        pattern = self.patterns.get(index - 1)
        if pattern is None or len(plan_sketch["profiles"]) != 1:
            return None, None
        profile = plan_sketch["profiles"][0]
        first = profile["center"] if profile["kind"] == "circle" else profile["at"]
        at: list[str | None] = [None, None]
        for direction in pattern["directions"]:
            axis = _sketch_axis(plan_sketch["plane"], direction["direction"])
            spacing, count = direction["spacing"], direction["count"]
            s_expr, n_expr = self.dims.expr(spacing), self.dims.expr(count)
            if axis is None or not direction["centered"] or not (s_expr or n_expr):
                continue
            s_expr = s_expr or repr(float(spacing["value"]))
            n_expr = n_expr or repr(float(count["value"]))
            center = float(first[axis]) + float(spacing["value"]) * (float(count["value"]) - 1) / 2
            at[axis] = f"{_round(center)!r} - ({s_expr}) * (({n_expr}) - 1) / 2"
        return at[0], at[1]

    def _new_sketch(self, plan_sketch: dict, index: int):
        sketch = self.body.newObject("Sketcher::SketchObject", f"Sketch{index:03d}")
        # FreeCAD 1.0 renamed Support to AttachmentSupport; 0.20 has only Support.
        support = "AttachmentSupport" if hasattr(sketch, "AttachmentSupport") else "Support"
        setattr(sketch, support, (self.origin_plane("XY_Plane"), [""]))
        sketch.MapMode = "FlatFace"
        sketch.AttachmentOffset = _placement(plan_sketch["plane"])
        return sketch

    def sketch(self, plan_sketch: dict, index: int, axis: dict | None = None):
        arcs = any(
            e["kind"] == "arc" for p in plan_sketch["profiles"] if p["kind"] == "wire" for e in p["edges"]
        )
        for by_ends in (False, True):
            sketch = self._new_sketch(plan_sketch, index)
            builder = _SketchBuilder(sketch, self.dims, self.pattern_at(plan_sketch, index), by_ends)
            for profile in plan_sketch["profiles"]:
                getattr(builder, profile["kind"])(profile)
            axis_geo = builder.axis_line(axis) if axis is not None else None
            builder.commit()
            self.doc.recompute()
            if by_ends or not arcs or sketch.solve() == 0:
                break
            # The solver did not meet every constraint (arcs that meet tangentially, their fixed
            # circles touching or just missing after rounding): again, each arc held by its ends.
            self.body.removeObject(sketch)
            self.doc.removeObject(sketch.Name)
        if getattr(sketch, "FullyConstrained", True) is False:
            self.loose_sketches.append(sketch.Label)
        return sketch, axis_geo

    def build(self) -> None:
        for index, feature in enumerate(self.plan["features"], start=1):
            kind = feature["kind"]
            if kind == "unmapped":
                raise BuildError(f"{_step_name(index, feature)}: {feature['reason']}", index)
            try:
                obj = getattr(self, f"_{kind}")(feature, index)
            except BuildError as error:
                raise BuildError(f"{_step_name(index, feature)}: {error}", index) from None
            except Exception as error:  # noqa: BLE001 - FreeCAD raises bare exceptions for bad input
                raise BuildError(f"{_step_name(index, feature)}: {kind} failed ({error})", index) from None
            if obj is not None and self.body.Tip is not obj:
                self.body.Tip = obj  # newObject leaves the Tip on the previous feature for patterns
            self.doc.recompute()
            if obj is not None and ("Invalid" in obj.State or obj.Shape.isNull() or not obj.Shape.isValid()):
                raise BuildError(f"{_step_name(index, feature)}: the {kind} did not compute", index)
            self.features.append(obj)

    # ----------------------------------------------------------------- features
    def _new(self, type_name: str, index: int, suffix: str = ""):
        """A PartDesign feature in the Body, refined as CadQuery cleans every result (same faces, so
        later edge and face matches hold). Refine is set on each: 0.20 defaults it off, 1.x takes it
        from the user's preferences."""
        obj = self.body.newObject(type_name, f"{type_name.split('::')[1]}{index:03d}{suffix}")
        if "Refine" in obj.PropertiesList:
            obj.Refine = True
        return obj

    def _profiled(self, type_name: str, feature: dict, index: int, axis: dict | None = None):
        sketch, axis_geo = self.sketch(feature["sketch"], index, axis)
        obj = self._new(type_name, index)
        obj.Profile = sketch
        return obj, sketch, axis_geo

    def _pad(self, feature: dict, index: int):
        obj, _, _ = self._profiled("PartDesign::Pad", feature, index)
        self.dims.bind(obj, "Length", feature["length"])
        _symmetric(obj, bool(feature["midplane"]))
        obj.Reversed = bool(feature["reversed"])
        return obj

    def _pocket(self, feature: dict, index: int):
        obj, _, _ = self._profiled("PartDesign::Pocket", feature, index)
        if feature["through_all"]:
            obj.Type = "ThroughAll"
        else:
            obj.Type = "Length"
            self.dims.bind(obj, "Length", feature["length"])
        _symmetric(obj, bool(feature["midplane"]))
        obj.Reversed = bool(feature["reversed"])
        return obj

    def _hole(self, feature: dict, index: int):
        sketch, _ = self.sketch(feature["sketch"], index)
        obj = self._new("PartDesign::Hole", index)
        obj.Profile = sketch  # after the sketch computed: the Hole reads it as soon as it is set
        obj.Threaded = False
        obj.DrillPoint = "Flat"
        self.dims.bind(obj, "Diameter", feature["diameter"])
        if feature["depth"] is None:
            obj.DepthType = "ThroughAll"
        else:
            obj.DepthType = "Dimension"
            self.dims.bind(obj, "Depth", feature["depth"])
        cut = feature["cut"]
        if cut == "counterbore":
            obj.HoleCutType = "Counterbore"
            self.dims.bind(obj, "HoleCutDiameter", feature["cut_diameter"])
            self.dims.bind(obj, "HoleCutDepth", feature["cut_depth"])
        elif cut == "countersink":
            obj.HoleCutType = "Countersink"
            self.dims.bind(obj, "HoleCutDiameter", feature["cut_diameter"])
            self.dims.bind(obj, "HoleCutCountersinkAngle", feature["cut_angle"])
        return obj

    def _revolved(self, type_name: str, feature: dict, index: int):
        obj, sketch, axis_geo = self._profiled(type_name, feature, index, axis=feature["axis"])
        obj.ReferenceAxis = (sketch, ["Axis0"])
        self.dims.bind(obj, "Angle", feature["angle"])
        return obj

    def _revolution(self, feature: dict, index: int):
        return self._revolved("PartDesign::Revolution", feature, index)

    def _groove(self, feature: dict, index: int):
        return self._revolved("PartDesign::Groove", feature, index)

    def _base(self):
        tip = self.body.Tip
        if tip is None or tip.Shape.isNull():
            raise BuildError("there is no solid yet")
        return tip

    def _edge_names(self, shape, edges: list[dict]) -> list[str]:
        """Sub-element names of the recorded edges: same centre of mass, length and end points."""
        size = max(shape.BoundBox.DiagonalLength, 1.0)
        names = []
        for record in edges:
            center, length = _v(record["center"]), float(record["length"])
            ends = (_v(record["start"]), _v(record["end"]))
            for i, edge in enumerate(shape.Edges, start=1):
                if (
                    abs(edge.Length - length) > 1e-6 * size
                    or (edge.CenterOfMass - center).Length > 1e-5 * size
                ):
                    continue
                got = (edge.Vertexes[0].Point, edge.Vertexes[-1].Point)
                if (
                    min(
                        (got[0] - ends[0]).Length + (got[1] - ends[1]).Length,
                        (got[0] - ends[1]).Length + (got[1] - ends[0]).Length,
                    )
                    > 1e-5 * size
                    and (ends[0] - ends[1]).Length > 1e-9
                ):  # a closed edge's seam may sit anywhere
                    continue
                names.append(f"Edge{i}")
                break
            else:
                raise BuildError(
                    f"edge at {tuple(round(c, 3) for c in record['center'])} not found in the Body"
                )
        return names

    def _dressup(self, type_name: str, feature: dict, index: int):
        base = self._base()
        names = self._edge_names(base.Shape, [e for e in feature["edges"] if not e.get("seam")])
        obj = self._new(type_name, index)
        obj.Base = (base, names)
        return obj

    def _fillet(self, feature: dict, index: int):
        obj = self._dressup("PartDesign::Fillet", feature, index)
        self.dims.bind(obj, "Radius", feature["radius"])
        return obj

    def _chamfer(self, feature: dict, index: int):
        obj = self._dressup("PartDesign::Chamfer", feature, index)
        obj.ChamferType = "Equal distance"
        self.dims.bind(obj, "Size", feature["size"])
        return obj

    def _thickness(self, feature: dict, index: int):
        base = self._base()
        shape = base.Shape
        size = max(shape.BoundBox.DiagonalLength, 1.0)
        names = []
        for record in feature["faces"]:
            center, area = _v(record["center"]), float(record["area"])
            for i, face in enumerate(shape.Faces, start=1):
                if (
                    abs(face.Area - area) <= 1e-6 * size * size
                    and (face.CenterOfMass - center).Length <= 1e-5 * size
                ):
                    names.append(f"Face{i}")
                    break
            else:
                raise BuildError(
                    f"face at {tuple(round(c, 3) for c in record['center'])} not found in the Body"
                )
        obj = self._new("PartDesign::Thickness", index)
        obj.Base = (base, names)
        self.dims.bind(obj, "Value", feature["value"])
        obj.Reversed = bool(feature["inward"])  # FreeCAD's "make thickness inwards"
        obj.Join = "Intersection" if feature["join"] == "intersection" else "Arc"
        obj.Mode = "Skin"
        obj.Intersection = True  # as CadQuery's shell asks OpenCascade
        return obj

    def _loft(self, feature: dict, index: int):
        profile, _ = self.sketch(feature["sketch"], index)
        sections = [self.sketch(section, index)[0] for section in feature["sections"]]
        obj = self._new("PartDesign::AdditiveLoft", index)
        obj.Profile = profile
        obj.Sections = sections
        obj.Ruled = bool(feature["ruled"])
        return obj

    def _polar_pattern(self, feature: dict, index: int):
        originals = [self.features[i] for i in feature["originals"]]
        sketch = originals[0].Profile[0]
        # The tracer emits patterns about their sketch's own origin and normal: its N_Axis.
        if (sketch.Placement.Base - _v(feature["axis_origin"])).Length > 1e-6:
            raise BuildError("a polar pattern about another axis than its sketch's normal")
        obj = self._new("PartDesign::PolarPattern", index)
        obj.Originals = originals
        obj.Axis = (sketch, ["N_Axis"])
        self.dims.bind(obj, "Angle", feature["angle"])
        self.dims.bind(obj, "Occurrences", feature["count"])
        return obj

    def _linear_pattern(self, feature: dict, index: int):
        """A LinearPattern per direction; two directions (a grid) as one MultiTransform of two.

        FreeCAD 0.20 patterns only additive or subtractive features ("Only additive and subtractive
        features can be transformed"), so a second LinearPattern cannot repeat the first one; a
        MultiTransform multiplies its LinearPatterns' placements and recomputes on 0.20 and 1.x.
        """
        originals = [self.features[i] for i in feature["originals"]]
        if not originals or any(o is None or not hasattr(o, "Profile") for o in originals):
            raise BuildError("a linear pattern of a feature without a sketch")
        sketch = originals[0].Profile[0]
        plane = self.plan["features"][feature["originals"][0]]["sketch"]["plane"]
        directions = feature["directions"]
        if not 1 <= len(directions) <= 2:
            raise BuildError("a linear pattern needs one or two directions")
        outer = None
        if len(directions) == 2:
            outer = self._new("PartDesign::MultiTransform", index)
            outer.Originals = originals
        patterns = []
        for direction in directions:
            axis = _sketch_axis(plane, direction["direction"])
            if axis is None:
                raise BuildError("a linear pattern along neither axis of its feature's sketch")
            suffix = "XY"[axis] if outer is not None else ""
            obj = self._new("PartDesign::LinearPattern", index, suffix)
            if outer is None:
                obj.Originals = originals
            obj.Direction = (sketch, ["H_Axis" if axis == 0 else "V_Axis"])
            obj.Reversed = False
            spacing, count = direction["spacing"], direction["count"]
            self.dims.bind(obj, "Occurrences", count)
            # Length is the first-to-last distance: spacing x (count - 1).
            obj.Length = float(spacing["value"]) * (float(count["value"]) - 1)
            s_expr, n_expr = self.dims.expr(spacing), self.dims.expr(count)
            if s_expr or n_expr:
                obj.setExpression(
                    "Length",
                    f"({s_expr or repr(float(spacing['value']))}) * "
                    f"(({n_expr or repr(float(count['value']))}) - 1)",
                )
            patterns.append(obj)
        made = patterns[0] if outer is None else outer
        if outer is not None:
            outer.Transformations = patterns
        return made

    def _mirrored(self, feature: dict, index: int):
        key = tuple(int(round(c)) for c in feature["normal"])
        role = _ORIGIN_PLANES.get(tuple(abs(c) for c in key))
        if role is None or any(abs(c) > 1e-9 for c in feature["origin"]):
            raise BuildError("a mirror plane other than the origin's planes")
        originals = [self.features[i] for i in feature["originals"] if self.features[i] is not None]
        obj = self._new("PartDesign::Mirrored", index)
        obj.Originals = originals
        obj.MirrorPlane = (self.origin_plane(role), [""])
        return obj


def show_only_tip(body) -> None:
    """The Body's solid in view and nothing else: the Tip shown, every sketch and earlier feature (a
    MultiTransform's inner LinearPatterns too) and the Origin hidden."""
    tip = body.Tip
    for obj in body.Group:
        obj.Visibility = obj is tip
    if getattr(body, "Origin", None) is not None:
        body.Origin.Visibility = False
    body.Visibility = True


def build_body(doc, plan: dict, name: str = "Body", into=None, clean_up: bool = True):
    """(Body, spreadsheet or None, loose sketch labels) for ``plan``; BuildError names the failing step.

    ``into``: an empty Body to build in (Edit CadQuery keeps its Body), else a new Body ``name``.
    Objects made before a failure are removed again (``clean_up``), so the document is as it was;
    inside a transaction the caller rolls them back instead (see ``build_checked``).
    """
    try:
        protocol.check_feature_plan(plan)
    except ValueError as error:
        raise BuildError(f"the feature plan is malformed ({error})") from None
    if not plan["features"]:
        raise BuildError("; ".join(plan["reasons"]) or "the feature plan has no steps")
    before = {o.Name for o in doc.Objects}
    stable_element_names(doc)
    builder = _BodyBuilder(doc, plan, name, into)
    try:
        builder.build()
    except Exception:
        if clean_up:
            remove_new_objects(doc, before)
        raise
    show_only_tip(builder.body)
    return builder.body, builder.dims.sheet, builder.loose_sketches


def stable_element_names(doc) -> bool:
    """Whether the edges and faces a Fillet, Chamfer or Thickness names in ``doc`` keep their names when
    something upstream changes; turns the document's string hasher off where that touches no one's work.

    FreeCAD 1.x names sub-elements through the document's string hasher, and 1.0 loses a dress-up's
    edges after an upstream recompute: a sheet cell, a Pad length, a reopen ("Invalid edge link",
    FreeCAD issue 18169). Without the hasher (``UseHasher = False``) the names survive. That is a
    setting of the whole document, and changing it makes FreeCAD recompute every shape in it, outside
    any undo step: CadSnap sets it only on a document that holds nothing yet (one it creates, or a new
    empty one), and leaves a user's document with shapes as it is (``hashed_dressup_note`` says so).
    0.20 has no hasher and no such loss.
    """
    if "UseHasher" not in doc.PropertiesList:
        return True
    if doc.UseHasher and not doc.Objects:
        doc.UseHasher = False
    return not doc.UseHasher


DRESSUPS = ("PartDesign::Fillet", "PartDesign::Chamfer", "PartDesign::Thickness")


def hashed_dressup_note(body) -> str:
    """A sentence for the Report view when ``body`` has a dress-up whose edges FreeCAD 1.0 may lose (its
    document names them through the string hasher, see ``stable_element_names``); else ""."""
    doc = body.Document
    dressups = [o.Label for o in body.Group if o.TypeId in DRESSUPS]
    if not dressups or stable_element_names(doc):
        return ""
    return (
        f"{body.Label}: FreeCAD 1.0 may lose the edges {', '.join(dressups)} rounds or cuts when a dimension "
        f"changes (FreeCAD issue 18169, topological naming); App.getDocument('{doc.Name}').UseHasher = False "
        "in the Python console keeps them in most cases, and makes FreeCAD recompute the whole document."
    )


def remove_new_objects(doc, before: set[str]) -> None:
    for obj in list(doc.Objects)[::-1]:
        if obj.Name not in before and doc.getObject(obj.Name) is not None:
            doc.removeObject(obj.Name)


def compare(shape, reference) -> tuple[float, float]:
    """(IoU, relative volume error) of two solids in the same coordinates. OCC's boolean of two
    solids whose faces coincide everywhere can come back empty: then once more with a fuzzy value
    (a millionth of the part's size), far below any difference the check is there to catch."""

    def iou_of(fuzzy: float) -> float:
        try:
            common = (shape.common([reference], fuzzy) if fuzzy else shape.common(reference)).Volume
        except Exception:  # noqa: BLE001 - OCC raises "shape is invalid" for a failed boolean
            return 0.0
        union = shape.Volume + reference.Volume - common
        return common / union if union > 0 else 0.0

    iou = iou_of(0.0)
    if iou < MIN_IOU:
        iou = max(iou, iou_of(1e-6 * max(reference.BoundBox.DiagonalLength, 1.0)))
    error = abs(shape.Volume - reference.Volume) / max(reference.Volume, 1e-12)
    return iou, error


def check_body(body, brep: str) -> tuple[bool, float, float]:
    """(matches, IoU, relative volume error) of the Body against the CadQuery solid's BREP text."""
    reference = shape_from_brep(brep)
    reference.Placement = body.Placement  # a Body rebuilt in place keeps its placement
    shape = body.Shape
    if shape.isNull() or not shape.Solids:
        return False, 0.0, 1.0
    iou, error = compare(shape, reference)
    return iou >= MIN_IOU and error <= MAX_VOLUME_ERROR, iou, error


def plan_problem(plan: dict | None) -> str:
    """Why ``plan`` cannot become a feature tree before anything is built, or "" when it may."""
    if not plan:
        return "the runtime sent no feature plan"
    if plan.get("status") != protocol.PLAN_MAPPED:
        return "; ".join(plan.get("reasons") or ["the plan has unmapped steps"])
    return ""


def build_checked(doc, plan: dict | None, brep: str, name: str = "Body", into=None):
    """(Body, spreadsheet, "") when ``plan`` builds a Body that matches the solid in ``brep``; else
    (None, None, why). Runs inside the caller's open transaction (``into``: an empty Body to build in).

    On failure whatever was built stays for the caller to roll back with ``abortTransaction``: FreeCAD
    0.20 crashes on undo of a transaction that made objects and removed them again, while rolling back
    a transaction that only made them is the same as undoing an insertion."""
    reason = plan_problem(plan)
    if reason:
        return None, None, reason
    try:
        body, sheet, _loose = build_body(doc, plan, name, into, clean_up=False)
        ok, iou, error = check_body(body, brep)
    except BuildError as error:
        return None, None, str(error)
    except Exception as error:  # noqa: BLE001 - any failure falls back to the solid with source
        return None, None, f"the feature tree failed ({error})"
    if ok:
        return body, sheet, ""
    return None, None, (f"the Body does not match the CadQuery solid (IoU {iou:.4f}, volume off by "
                        f"{error:.2%})")
