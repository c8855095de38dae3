"""The one canonical formatter: every synthetic program is built here and written by ``Program.code``.

Families describe a part with a small fluent builder that mirrors CadQuery's own API::

    p = Program()
    p.result(p.workplane("XY").box(80, 60, 8).edges("|Z").fillet(4))

and the formatter turns it into plain CadQuery (``import cadquery as cq``, millimetres, ``result = ...``)
with one spelling for numbers, strings and line breaks, so the model learns one dialect. The same
calls give the operations a program uses (for the manifest's coverage counts).
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

MAX_LINE = 88
INDENT = "    "


@dataclass(frozen=True)
class Var:
    """A reference to an earlier assignment, e.g. ``Var("base")`` formats as ``base``."""

    name: str


@dataclass(frozen=True)
class Raw:
    """An expression written as is, e.g. ``Raw("cq.Vector(1, 0, 0)")``."""

    text: str


@dataclass
class Call:
    method: str
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)


class Chain:
    """``root.method(args)...``: attribute access records a call and returns the chain."""

    def __init__(self, root: str) -> None:
        self.root = root
        self.calls: list[Call] = []

    def __getattr__(self, method: str) -> Any:
        if method.startswith("_"):
            raise AttributeError(method)

        def record(*args: Any, **kwargs: Any) -> Chain:
            self.calls.append(Call(method, args, kwargs))
            return self

        return record


def fmt_number(value: float) -> str:
    """Integers without a decimal point, others with at most two decimals and no trailing zeros."""
    if isinstance(value, bool):
        return "True" if value else "False"
    if not math.isfinite(value):
        raise ValueError(f"cannot write a non-finite number: {value}")
    rounded = round(float(value), 2)
    if rounded == 0:
        return "0"
    if rounded == int(rounded):
        return str(int(rounded))
    return f"{rounded:.2f}".rstrip("0").rstrip(".")


def fmt_value(value: Any) -> str:
    if isinstance(value, Var):
        return value.name
    if isinstance(value, Raw):
        return value.text
    if isinstance(value, Chain):
        return format_chain(value)
    if isinstance(value, bool):
        return "True" if value else "False"
    if isinstance(value, int | float):
        return fmt_number(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, tuple):
        inner = ", ".join(fmt_value(v) for v in value)
        return f"({inner},)" if len(value) == 1 else f"({inner})"
    if isinstance(value, list):
        return "[" + ", ".join(fmt_value(v) for v in value) + "]"
    if value is None:
        return "None"
    raise TypeError(f"the formatter cannot write a {type(value).__name__}: {value!r}")


def format_call(call: Call) -> str:
    parts = [fmt_value(a) for a in call.args] + [f"{k}={fmt_value(v)}" for k, v in call.kwargs.items()]
    return f".{call.method}({', '.join(parts)})"


def format_chain(chain: Chain) -> str:
    return chain.root + "".join(format_call(c) for c in chain.calls)


def format_assignment(name: str, chain: Chain) -> str:
    """One line when it fits in ``MAX_LINE``, else one call per line inside parentheses."""
    line = f"{name} = {format_chain(chain)}"
    if len(line) <= MAX_LINE or not chain.calls:
        return line
    body = "\n".join(INDENT + format_call(c) for c in chain.calls)
    return f"{name} = (\n{INDENT}{chain.root}\n{body}\n)"


# Method name -> operation name in the manifest. Calls not listed are not counted.
_METHOD_OPS = {
    "box": "box",
    "cylinder": "cylinder",
    "rect": "rect",
    "circle": "circle",
    "polygon": "polygon",
    "slot2D": "slot",
    "polyline": "polyline",
    "threePointArc": "arc",
    "radiusArc": "arc",
    "tangentArcPoint": "arc",
    "sagittaArc": "arc",
    "cutBlind": "pocket",
    "cutThruAll": "cut_extrude",
    "cboreHole": "cbore_hole",
    "cskHole": "csk_hole",
    "fillet": "fillet",
    "chamfer": "chamfer",
    "shell": "shell",
    "revolve": "revolve",
    "mirror": "mirror",
    "mirrorX": "mirror",
    "mirrorY": "mirror",
    "rarray": "rect_pattern",
    "polarArray": "polar_pattern",
    "pushPoints": "point_pattern",
    "transformed": "angled_workplane",
    "union": "union",
    "cut": "boolean_cut",
    "intersect": "intersect",
    "loft": "loft",
    "sweep": "sweep",
}
# Inside a ``cq.Sketch`` (after ``.sketch()`` or from ``cq.Sketch()`` until ``.finalize()``) the same
# names mean other things: ``polygon`` takes points, ``regularPolygon`` is the regular one.
_SKETCH_OPS = {
    "rect": "rect",
    "circle": "circle",
    "slot": "slot",
    "regularPolygon": "polygon",
    "polygon": "polyline",
    "arc": "arc",
    "fillet": "rounded_rect",
}


def _call_operations(call: Call, in_sketch: bool) -> list[str]:
    """The operation names one call counts as (none, one, or a primitive plus ``sketch_subtract``)."""
    if in_sketch:
        op = _SKETCH_OPS.get(call.method)
        if call.method == "assemble" or op is None:
            return ["sketch_subtract"] if call.kwargs.get("mode") == "s" else []
        return [op, "sketch_subtract"] if call.kwargs.get("mode") == "s" else [op]
    if call.method == "extrude":
        both = call.kwargs.get("both", False)
        cut = call.kwargs.get("combine") == "cut" or (
            bool(call.args) and isinstance(call.args[0], int | float) and call.args[0] < 0)
        return ["extrude_both" if both else "cut_extrude" if cut else "extrude"]
    if call.method == "hole":  # a depth makes it blind
        return ["blind_hole" if len(call.args) > 1 or "depth" in call.kwargs else "hole"]
    if call.method == "workplane" and ("offset" in call.kwargs or "origin" in call.kwargs):
        return ["offset_workplane"]
    if call.method == "placeSketch":
        return ["sketch"]
    return [_METHOD_OPS[call.method]] if call.method in _METHOD_OPS else []


class Program:
    """An ordered list of assignments ending in ``result``; ``code()`` writes it."""

    def __init__(self) -> None:
        self.statements: list[tuple[str, Chain]] = []
        self.tags: list[str] = []

    def workplane(self, plane: str = "XY", **kwargs: Any) -> Chain:
        args = ", ".join([fmt_value(plane)] + [f"{k}={fmt_value(v)}" for k, v in kwargs.items()])
        return Chain(f"cq.Workplane({args})")

    def chain(self, var: str) -> Chain:
        """Continue from an earlier assignment: ``p.chain("base").cut(...)``."""
        if var not in {name for name, _ in self.statements}:
            raise KeyError(f"no assignment named {var!r} yet")
        return Chain(var)

    def assign(self, name: str, chain: Chain) -> Var:
        if not name.isidentifier() or name == "cq":
            raise ValueError(f"not a usable variable name: {name!r}")
        self.statements.append((name, chain))
        return Var(name)

    def result(self, chain: Chain) -> Var:
        return self.assign("result", chain)

    def code(self) -> str:
        if not self.statements or self.statements[-1][0] != "result":
            raise ValueError("a program must end with an assignment to `result`")
        lines = ["import cadquery as cq", ""]
        lines += [format_assignment(name, chain) for name, chain in self.statements]
        return "\n".join(lines) + "\n"

    def _all_chains(self) -> list[Chain]:
        found: list[Chain] = []

        def visit(chain: Chain) -> None:
            found.append(chain)
            for call in chain.calls:
                for value in (*call.args, *call.kwargs.values()):
                    if isinstance(value, Chain):
                        visit(value)

        for _, chain in self.statements:
            visit(chain)
        return found

    def tag(self, operation: str) -> None:
        """Count an operation the calls cannot show (a rib is an extruded rectangle, a gusset a triangle)."""
        self.tags.append(operation)

    def operation_counts(self) -> Counter:
        """How often this program uses each operation, plus ``workplanes_N`` (base and face planes)."""
        counts: Counter = Counter(self.tags)
        workplanes = 0
        for chain in self._all_chains():
            in_sketch = chain.root.startswith("cq.Sketch(")
            if chain.root.startswith("cq.Workplane("):
                workplanes += 1
                if "origin=" in chain.root:
                    counts["offset_workplane"] += 1
            for call in chain.calls:
                if call.method == "workplane":
                    workplanes += 1
                if call.method == "sketch":
                    in_sketch = True
                elif call.method == "finalize":
                    in_sketch = False
                counts.update(_call_operations(call, in_sketch))
        counts[f"workplanes_{workplanes}" if workplanes <= 3 else "workplanes_4+"] += 1
        return counts

    def operations(self) -> list[str]:
        """Sorted operation names this program uses, for coverage counts."""
        return sorted(self.operation_counts())
