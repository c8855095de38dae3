"""The static policy alone: what it rejects, with which construct and line, and what it lets through."""

from __future__ import annotations

import pytest

from model_runtime import protocol
from model_runtime.sandbox import CodeSyntaxError, PolicyViolation, check_policy

GOOD = """\
import math
import cadquery as cq
from cadquery import Workplane

w = 40.0
pts = [(math.cos(a) * 10, math.sin(a) * 10) for a in range(6)]
def boss(wp, r):
    return wp.circle(r).extrude(5)
base = Workplane("XY").box(w, w, 5).faces(">Z").workplane().pushPoints(pts).hole(2)
try:
    result = boss(base.faces(">Z").workplane(), 4)
except ValueError:
    result = base
print(len(pts), f"{w:.1f}")
"""


def test_ordinary_cadquery_passes():
    check_policy(GOOD)


@pytest.mark.parametrize(
    ("code", "construct"),
    [
        ("import os\nwhile True:\n    os.fork()", "import"),
        ("import socket\ns = socket.socket()", "import"),
        ("import subprocess", "import"),
        ("from os import path", "import"),
        ("import cadquery.occ_impl.shapes as s", "import"),
        ("from . import x", "import"),
        ("from cadquery import *", "import *"),
        ("data = open('/etc/passwd')", "open"),
        ("data = open('/etc/passwd').read()", "open"),
        ("f = open('pwned.txt', 'w')", "open"),
        ("__import__('os').system('id')", "__import__"),
        ("b = __builtins__['open']", "__builtins__"),
        ("import cadquery as cq\nx = cq.__class__.__mro__", "__class__"),
        ("x = ().__class__.__bases__[0].__subclasses__()", "__class__"),
        ("x = (1).__class__", "__class__"),
        ("f = print.__self__", "__self__"),
        ("x = int.mro()", "mro"),
        ("x = '{0.__class__}'.format(1)", "format"),
        ("eval('1+1')", "eval"),
        ("exec('x=1')", "exec"),
        ("c = compile('1', 'x', 'eval')", "compile"),
        ("g = globals()", "globals"),
        ("f = getattr(print, 'x')", "getattr"),
        ("v = vars()", "vars"),
        ("t = type(1)", "type"),
        ("def g():\n    yield 1\nf = g().gi_frame.f_globals", "generators (yield)"),
        ("x = (i for i in range(3))", "generator expressions (use a list comprehension)"),
        ("class A:\n    pass", "class definitions"),
        ("import cadquery as cq\ncq.Workplane.box = None", "attribute"),
        ("import cadquery as cq\ncq.Workplane().box(1, 1, 1).val().exportStep('/tmp/x.step')", "exportStep"),
        ("import cadquery as cq\ncq.importers.importStep('/etc/passwd')", "importers"),
        ("import cadquery as cq\ns = cq.Sketch().importDXF('/etc/passwd')", "importDXF"),
        ("import math\nm = math._private", "_private"),
        ("with x:\n    pass", "with statements"),
        ("match x:\n    case int(real=r):\n        pass", "match statements"),
        ("@dec\ndef f():\n    pass", "decorator"),
    ],
)
def test_escapes_are_rejected_naming_the_construct(code, construct):
    with pytest.raises(PolicyViolation) as info:
        check_policy(code)
    assert info.value.code == protocol.ERROR_POLICY
    assert info.value.detail["construct"] == construct
    assert info.value.line is not None
    assert info.value.message


def test_violation_reports_its_line():
    with pytest.raises(PolicyViolation) as info:
        check_policy("import cadquery as cq\nx = 1\nimport os\n")
    assert info.value.line == 3
    assert "os" in info.value.message


def test_syntax_error_has_line():
    with pytest.raises(CodeSyntaxError) as info:
        check_policy("import cadquery as cq\nresult = cq.Workplane(.box(1, 1, 1)\n")
    assert info.value.code == protocol.ERROR_SYNTAX
    assert info.value.line in (2, 3)


def test_oversize_and_non_string_code():
    with pytest.raises(PolicyViolation):
        check_policy("x = 1\n" * (protocol.MAX_CODE_CHARS // 6 + 1))
    with pytest.raises(PolicyViolation):
        check_policy(b"x = 1")  # type: ignore[arg-type]
    with pytest.raises(CodeSyntaxError):
        check_policy("x = 1\x00")


def test_deeply_nested_code_is_a_typed_error():
    with pytest.raises((CodeSyntaxError, PolicyViolation)):
        check_policy("x = " + "(" * 5000 + "1" + ")" * 5000)


def test_error_body_has_protocol_shape():
    with pytest.raises(PolicyViolation) as info:
        check_policy("import os")
    body = info.value.to_dict()
    assert body["error"]["code"] == protocol.ERROR_POLICY
    assert body["error"]["detail"]["line"] == 1
