"""Static policy for generated CadQuery code, checked on the AST before anything runs.

The policy is an allow-list where it can be (imports, builtins) and a deny-list of escape routes
where it cannot (attribute names). It is the first of three layers: the worker also runs the code
with restricted builtins and a guarded importer, under resource limits, in a process it can kill.
"""

from __future__ import annotations

import ast
import re
import threading

from model_runtime import protocol
from model_runtime.sandbox.errors import CodeSyntaxError, PolicyViolation

ALLOWED_MODULES = frozenset({"cadquery", "math"})
_PARSE_LOCK = threading.Lock()

# Builtins the executed code may use; everything else (open, exec, eval, getattr, vars, type, ...)
# is absent at run time, and naming it is a policy violation here.
ALLOWED_BUILTINS = frozenset(
    {
        "abs",
        "all",
        "any",
        "bool",
        "chr",
        "complex",
        "dict",
        "divmod",
        "enumerate",
        "filter",
        "float",
        "format",
        "frozenset",
        "int",
        "isinstance",
        "iter",
        "len",
        "list",
        "map",
        "max",
        "min",
        "next",
        "ord",
        "pow",
        "print",
        "range",
        "repr",
        "reversed",
        "round",
        "set",
        "slice",
        "sorted",
        "str",
        "sum",
        "tuple",
        "zip",
        "True",
        "False",
        "None",
        "ArithmeticError",
        "AssertionError",
        "Exception",
        "IndexError",
        "KeyError",
        "RuntimeError",
        "StopIteration",
        "TypeError",
        "ValueError",
        "ZeroDivisionError",
    }
)

FORBIDDEN_NAMES = frozenset(
    {
        # id() and hash() of an object give its address: half of a memory poke, and no use in a part.
        "id",
        "hash",
        "open",
        "exec",
        "eval",
        "compile",
        "__import__",
        "globals",
        "locals",
        "vars",
        "dir",
        "getattr",
        "setattr",
        "delattr",
        "hasattr",
        "type",
        "object",
        "super",
        "input",
        "breakpoint",
        "help",
        "memoryview",
        "bytearray",
        "classmethod",
        "staticmethod",
        "property",
        "exit",
        "quit",
        "__builtins__",
        "__loader__",
        "__spec__",
    }
)

# Attributes that reach interpreter internals without a dunder (frames, code objects, generators)
# or that read and write files (CadQuery's import/export helpers): the runtime exports on request.
FORBIDDEN_ATTRIBUTES = frozenset(
    {
        "gi_frame",
        "gi_code",
        "gi_yieldfrom",
        "cr_frame",
        "cr_code",
        "cr_await",
        "ag_frame",
        "ag_code",
        "f_globals",
        "f_locals",
        "f_builtins",
        "f_back",
        "f_code",
        "tb_frame",
        "tb_next",
        "co_code",
        "co_consts",
        "func_globals",
        "mro",
        "format",
        "format_map",
        "os",
        "sys",
        "subprocess",
        "builtins",
        "modules",
    }
)
_FILE_IO_ATTRIBUTE = re.compile(r"^(export|import|save|load|write|read|open|dxf|tofile)", re.IGNORECASE)

# Public CadQuery API that hands back native objects (OCP handles, VTK data sets, numpy arrays):
# their methods read and write files and raw memory, and CAD code never needs them.
NATIVE_ATTRIBUTES = frozenset(
    {
        "toVtkPolyData",
        "toOCC",
        "toPnt",
        "toDir",
        "toPln",
        "wrapped",
        "lcs",
        "rG",
        "fG",
        # numpy and buffer surfaces, should one be reached anyway.
        "dump",
        "dumps",
        "astype",
        "ctypes",
        "data",
        "view",
        "base",
        "tobytes",
        "tolist",
    }
)
# Capitalised attributes are VTK's and OCCT's naming (SetVoidArray, AddObserver, CreateArray...);
# CadQuery's own capitalised names are these, plus its class names.
CADQUERY_CAPITALISED = frozenset(
    {
        "Area", "BoundingBox", "Center", "CenterOfBoundBox", "Closed", "CombinedCenter",
        "CombinedCenterOfBoundBox", "CompSolids", "Compounds", "Edges", "Faces", "IsClosed", "Length",
        "ShapeType", "Shells", "Solids", "Vertices", "Volume", "Wires",
        "XY", "XZ", "YX", "YZ", "ZX", "ZY",
        "Assembly", "BoundBox", "CQ", "Color", "Compound", "Constraint", "Edge", "Face", "Location",
        "Material", "Matrix", "Plane", "Shape", "Shell", "Sketch", "Solid", "Vector", "Vertex", "Wire",
        "Workplane", "UnitLiterals", "Selector", "DirectionMinMaxSelector", "DirectionSelector",
        "NearestToPointSelector", "ParallelDirSelector", "PerpendicularDirSelector",
        "StringSyntaxSelector", "TypeSelector", "BoxSelector", "RadiusNthSelector", "CenterNthSelector",
        "AreaNthSelector", "LengthNthSelector", "DirectionNthSelector",
    }
)  # fmt: skip
# CadQuery methods that call back into a function they are given.
CALLBACK_METHODS = frozenset({"map", "apply", "each", "eachpoint", "invoke", "filter", "sort"})
# Builtins that call a function they are given: (positions of function arguments, keyword names).
CALLBACK_BUILTINS = {
    "map": ((0,), ()),
    "filter": ((0,), ()),
    "sorted": ((), ("key",)),
    "min": ((), ("key",)),
    "max": ((), ("key",)),
}
# CadQuery's text: a font file read from any path the process can see. (method, first positional
# index that is a path); the keyword is refused everywhere.
FONT_PATH_KEYWORD = "fontPath"
FONT_PATH_POSITION = {"text": 6, "makeText": 4}

# Syntax with no use in a CadQuery part and some use in an escape.
_FORBIDDEN_NODES: dict[type[ast.AST], str] = {
    ast.ClassDef: "class definitions",
    ast.AsyncFunctionDef: "async functions",
    ast.Await: "await",
    ast.AsyncFor: "async for",
    ast.AsyncWith: "async with",
    ast.Global: "global statements",
    ast.Nonlocal: "nonlocal statements",
    ast.With: "with statements",
    ast.Yield: "generators (yield)",
    ast.YieldFrom: "generators (yield from)",
    ast.GeneratorExp: "generator expressions (use a list comprehension)",
    ast.Match: "match statements",
}


def parse(code: str) -> ast.Module:
    """``ast.parse`` for generated code, one thread at a time.

    CPython 3.11's AST constructor can raise "SystemError: AST constructor recursion depth mismatch"
    when threads parse at once (seen here with candidates checked in parallel).
    """
    with _PARSE_LOCK:
        return ast.parse(code, filename="<generated>", mode="exec")


def check_policy(code: str) -> None:
    """Raise CodeSyntaxError or PolicyViolation (naming the construct and line) if ``code`` may not run."""
    if not isinstance(code, str):
        raise PolicyViolation(f"code must be a string, not {type(code).__name__}")
    if len(code) > protocol.MAX_CODE_CHARS:
        raise PolicyViolation(
            f"code is {len(code)} characters; the limit is {protocol.MAX_CODE_CHARS}",
            detail={"construct": "length"},
        )
    if "\x00" in code:
        raise CodeSyntaxError("code contains a NUL character")
    try:
        tree = parse(code)
    except SyntaxError as exc:
        raise CodeSyntaxError(f"invalid Python syntax: {exc.msg}", line=exc.lineno) from None
    except (ValueError, RecursionError, MemoryError) as exc:
        raise CodeSyntaxError(f"code cannot be parsed: {exc}") from None
    # Report the violation that comes first in the source (innermost first at a shared start).
    first: tuple[tuple[int, int, int, int], PolicyViolation] | None = None
    own_functions = _own_functions(tree)
    for node in ast.walk(tree):
        try:
            _check_node(node)
            if isinstance(node, ast.Call):
                _check_callbacks(node, own_functions)
                _check_font_path(node)
        except PolicyViolation as exc:
            key = tuple(
                getattr(node, a, None) or 0 for a in ("lineno", "col_offset", "end_lineno", "end_col_offset")
            )
            if first is None or key < first[0]:
                first = (key, exc)  # type: ignore[assignment]
    if first is not None:
        raise first[1]


def _violation(node: ast.AST, what: str, construct: str) -> PolicyViolation:
    return PolicyViolation(what, line=getattr(node, "lineno", None), detail={"construct": construct})


def _check_node(node: ast.AST) -> None:
    for node_type, label in _FORBIDDEN_NODES.items():
        if isinstance(node, node_type):
            raise _violation(node, f"{label} are not allowed in generated code", label)
    if isinstance(node, ast.Import):
        for alias in node.names:
            _check_module(node, alias.name)
    elif isinstance(node, ast.ImportFrom):
        if node.level:
            raise _violation(node, "relative imports are not allowed", "import")
        _check_module(node, node.module or "")
        for alias in node.names:
            if alias.name == "*":
                raise _violation(
                    node, f"'from {node.module} import *' is not allowed; import names", "import *"
                )
            _check_attribute_name(node, alias.name)
    elif isinstance(node, ast.Name):
        _check_name(node, node.id)
    elif isinstance(node, ast.Attribute):
        _check_attribute_name(node, node.attr)
        if isinstance(node.ctx, ast.Store | ast.Del):
            raise _violation(
                node, f"assigning or deleting attribute '{node.attr}' is not allowed", "attribute"
            )
    elif isinstance(node, ast.FunctionDef | ast.Lambda):
        args = node.args
        for arg in [*args.posonlyargs, *args.args, *args.kwonlyargs, args.vararg, args.kwarg]:
            if arg is not None:
                _check_name(arg, arg.arg)
        if isinstance(node, ast.FunctionDef):
            _check_name(node, node.name)
            if node.decorator_list:
                raise _violation(node, "decorators are not allowed", "decorator")
    elif isinstance(node, ast.alias) and node.asname:
        _check_name(node, node.asname)
    elif isinstance(node, ast.ExceptHandler) and node.name:
        _check_name(node, node.name)


def _own_functions(tree: ast.AST) -> frozenset[str]:
    """Names the code itself binds to a function (def, or a lambda assigned to a name)."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign) and isinstance(node.value, ast.Lambda):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
    return frozenset(names)


def _check_callbacks(node: ast.Call, own_functions: frozenset[str]) -> None:
    """Functions handed to CadQuery's callback methods or to map/filter/sorted/min/max are the code's
    own (a lambda or a function it defines), never a builtin, a bound method or any other expression.

    A bound method of a native object (``points.dump``) or a builtin called from inside CadQuery runs
    where no guard of ours looks at the calling frame; ``[print][0]`` is such a builtin by another
    name, so only the two plain forms pass.
    """
    if isinstance(node.func, ast.Attribute) and node.func.attr in CALLBACK_METHODS:
        method = node.func.attr
        # Plain values (flags such as useLocalCoordinates=False) may sit beside the function.
        candidates = [
            a for a in [*node.args, *(k.value for k in node.keywords)] if not isinstance(a, ast.Constant)
        ]
    elif isinstance(node.func, ast.Name) and node.func.id in CALLBACK_BUILTINS:
        method = node.func.id
        positions, keywords = CALLBACK_BUILTINS[method]
        candidates = [node.args[i] for i in positions if i < len(node.args)]
        candidates += [k.value for k in node.keywords if k.arg in keywords or k.arg is None]
        candidates += [a for a in node.args if isinstance(a, ast.Starred)]
    else:
        return
    for arg in candidates:
        if isinstance(arg, ast.Lambda) or (isinstance(arg, ast.Name) and arg.id in own_functions):
            continue
        name = arg.id if isinstance(arg, ast.Name) else arg.attr if isinstance(arg, ast.Attribute) else None
        shown = f"'{name}'" if name else "this expression"
        raise _violation(
            arg,
            f"'{method}' may only be given a lambda or a function defined in the code, not {shown}",
            "callback",
        )


def _check_font_path(node: ast.Call) -> None:
    """CadQuery's text() reads a font from any path: the font's name is enough for a part."""
    method = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
    position = FONT_PATH_POSITION.get(method)
    unpacked = any(k.arg is None for k in node.keywords) or any(isinstance(a, ast.Starred) for a in node.args)
    by_keyword = any(k.arg == FONT_PATH_KEYWORD for k in node.keywords)
    if by_keyword or (position is not None and (len(node.args) > position or unpacked)):
        raise _violation(
            node, f"'{method}' may not be given a font file path; name the font instead", "fontPath"
        )


def _check_module(node: ast.AST, module: str) -> None:
    if module not in ALLOWED_MODULES:
        allowed = ", ".join(sorted(ALLOWED_MODULES))
        raise _violation(
            node, f"import of '{module}' is not allowed; only {allowed} may be imported", "import"
        )


def _check_name(node: ast.AST, name: str) -> None:
    if name.startswith("__") or name in FORBIDDEN_NAMES:
        raise _violation(node, f"use of '{name}' is not allowed in generated code", name)


def _check_attribute_name(node: ast.AST, attr: str) -> None:
    if attr.startswith("_"):
        raise _violation(node, f"access to private or special attribute '{attr}' is not allowed", attr)
    if attr in FORBIDDEN_ATTRIBUTES:
        raise _violation(node, f"access to attribute '{attr}' is not allowed", attr)
    if attr in NATIVE_ATTRIBUTES or (attr[:1].isupper() and attr not in CADQUERY_CAPITALISED):
        raise _violation(
            node,
            f"'{attr}' reaches a native (OCCT, VTK or numpy) object; generated code may use CadQuery's "
            "own API only",
            attr,
        )
    if _FILE_IO_ATTRIBUTE.match(attr):
        raise _violation(
            node,
            f"'{attr}' reads or writes files; generated code may not (the runtime exports on request)",
            attr,
        )
