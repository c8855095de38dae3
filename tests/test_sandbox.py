"""The sandbox pool on real CadQuery in real worker processes: hostile code, then correctness.

One pool serves the whole module (workers take seconds to warm). After every hostile run the pool
must answer an ordinary request correctly.
"""

from __future__ import annotations

import io
import math
import os
import signal
import struct
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from model_runtime import protocol
from model_runtime.sandbox import (
    CodeRuntimeError,
    CodeSyntaxError,
    ExecResult,
    InvalidSolid,
    NoResult,
    OutputTooLarge,
    PolicyViolation,
    ResourceLimit,
    SandboxPool,
    SandboxUnavailable,
    Timeout,
    WorkerCrashed,
)

HOSTILE_TIMEOUT_S = 2.0
BOX = "import cadquery as cq\nresult = cq.Workplane('XY').box(1, 2, 3)\n"


@pytest.fixture(scope="module")
def pool():
    with SandboxPool(workers=2, timeout_s=HOSTILE_TIMEOUT_S, memory_mb=256) as p:
        assert p.wait_ready(120), "sandbox workers did not start"
        yield p


def assert_pool_serves(pool: SandboxPool) -> None:
    res = pool.run(BOX, timeout_s=30)
    assert res.volume == pytest.approx(6.0)
    assert res.bbox == pytest.approx((-0.5, -1.0, -1.5, 0.5, 1.0, 1.5))


def run_hostile(
    pool: SandboxPool,
    code: str,
    expected: type[Exception] | tuple[type[Exception], ...],
    timeout_s: float = HOSTILE_TIMEOUT_S,
    **kw,
):
    started = time.perf_counter()
    with pytest.raises(expected) as info:
        pool.run(code, timeout_s=timeout_s, **kw)
    elapsed = time.perf_counter() - started
    # A hostile run costs at most its timeout plus a second (the replacement starts in the background).
    assert elapsed < timeout_s + 1.0, f"{type(info.value).__name__} took {elapsed:.2f} s"
    assert info.value.message
    assert_pool_serves(pool)
    return info.value


# -- hostile code --------------------------------------------------------------------------------


def test_infinite_loop_times_out(pool):
    err = run_hostile(pool, "while True:\n    pass\n", Timeout)
    assert err.code == protocol.ERROR_TIMEOUT


def test_infinite_loop_inside_cadquery_times_out(pool):
    code = "import cadquery as cq\nr = cq.Workplane()\nwhile True:\n    r = r.box(1, 1, 1)\n"
    run_hostile(pool, code, Timeout)


def test_memory_bomb_hits_the_memory_limit(pool):
    # Touching memory is slow in a busy VM (~300 MB/s seen), hence the longer timeout here.
    err = run_hostile(pool, "x = []\nwhile True:\n    x.append(' ' * 10**7)\n", ResourceLimit, timeout_s=8)
    assert "memory" in err.message


def test_single_huge_allocation_hits_the_memory_limit(pool):
    run_hostile(pool, "x = [0] * (10**10)\n", ResourceLimit)


def test_fork_bomb_is_refused(pool):
    err = run_hostile(pool, "import os\nwhile True:\n    os.fork()\n", PolicyViolation)
    assert err.line == 1


def test_recursion_bomb_is_a_resource_error(pool):
    err = run_hostile(pool, "def f(n):\n    return f(n + 1)\nf(0)\n", ResourceLimit)
    assert "recurs" in err.message


def test_reading_etc_passwd_is_refused(pool):
    run_hostile(pool, "data = open('/etc/passwd').read()\nresult = data\n", PolicyViolation)


def test_writing_a_file_is_refused(pool, tmp_path):
    target = tmp_path / "pwned.step"
    code = f"import cadquery as cq\ncq.Workplane().box(1, 1, 1).val().exportStep({str(target)!r})\n"
    run_hostile(pool, code, PolicyViolation)
    run_hostile(pool, f"f = open({str(target)!r}, 'w')\n", PolicyViolation)
    assert not target.exists()


def test_opening_a_socket_is_refused(pool):
    run_hostile(pool, "import socket\ns = socket.create_connection(('127.0.0.1', 80))\n", PolicyViolation)


@pytest.mark.parametrize(
    "code",
    [
        "import cadquery as cq\nx = cq.__class__.__mro__[1].__subclasses__()\n",
        "x = ().__class__.__bases__[0].__subclasses__()\n",
        "o = __builtins__['open']\n",
        "f = print.__globals__\n",
        "x = '{0.__class__.__mro__}'.format(1)\n",
    ],
)
def test_introspection_escapes_are_refused(pool, code):
    run_hostile(pool, code, PolicyViolation)


@pytest.mark.parametrize(
    "code",
    [
        # Pass the static policy; the worker's restricted namespace and importer stop them.
        "from cadquery import occ_impl\n",
        "import cadquery as cq\nshapes = cq.occ_impl.shapes\n",
        "import cadquery as cq\nx = cq.plugins\n",
        "import cadquery as cq\nx = cq.selectors.Selector\n",
    ],
)
def test_runtime_layer_hides_modules(pool, code):
    err = run_hostile(pool, code, CodeRuntimeError)
    assert err.detail["exception"] in {"ImportError", "AttributeError"}


def test_gigantic_printed_output_is_capped(pool):
    run_hostile(pool, "s = 'x' * 100000\nwhile True:\n    print(s)\n", OutputTooLarge)


def test_flood_survives_being_caught(pool):
    code = "s = 'x' * 100000\nfor i in range(100):\n    try:\n        print(s)\n"
    code += "    except Exception:\n        pass\n"
    code += "import cadquery as cq\nresult = cq.Workplane().box(1, 1, 1)\n"
    run_hostile(pool, code, OutputTooLarge)


def test_gigantic_geometry_output_is_capped(pool):
    run_hostile(pool, BOX, OutputTooLarge, max_output_bytes=1000)


def test_ten_thousand_tiny_boxes_fail_typed(pool):
    code = (
        "import cadquery as cq\n"
        "pts = [(i % 100 * 2.0, i // 100 * 2.0) for i in range(10000)]\n"
        "result = cq.Workplane().pushPoints(pts).box(1, 1, 1)\n"
    )
    run_hostile(pool, code, (Timeout, ResourceLimit))


def test_ten_thousand_disjoint_boxes_fail_typed(pool):
    code = (
        "import cadquery as cq\n"
        "pts = [(i % 100 * 2.0, i // 100 * 2.0) for i in range(10000)]\n"
        "result = cq.Workplane().pushPoints(pts).box(1, 1, 1, combine=False)\n"
    )
    run_hostile(pool, code, (Timeout, ResourceLimit, InvalidSolid))


def _zygote_pid(worker) -> int:
    """The worker's zygote: the pool's child, or the only child of the jail's first process."""
    if worker.jail_pidfd is None:
        return worker.proc.pid
    fdinfo = Path(f"/proc/self/fdinfo/{worker.jail_pidfd}").read_text()
    init = int(next(line.split()[1] for line in fdinfo.splitlines() if line.startswith("Pid:")))
    (child,) = Path(f"/proc/{init}/task/{init}/children").read_text().split()
    return int(child)


def test_crashed_worker_is_typed_and_replaced(pool):
    errors: list[BaseException] = []

    def hang():
        try:
            pool.run("while True:\n    pass\n", timeout_s=20)
        except BaseException as exc:  # noqa: BLE001 - collected for the assertion below
            errors.append(exc)

    before = set(pool._idle)
    thread = threading.Thread(target=hang)
    thread.start()
    deadline = time.monotonic() + 10
    busy: list = []
    while not busy and time.monotonic() < deadline:
        time.sleep(0.05)
        busy = [w for w in list(pool._workers) if w not in pool._idle and w in before]
    assert busy, "the job never reached a worker"
    os.kill(_zygote_pid(busy[0]), signal.SIGSEGV)
    thread.join(20)
    assert len(errors) == 1 and isinstance(errors[0], WorkerCrashed), errors
    assert "crashed" in errors[0].message
    assert_pool_serves(pool)


# -- ordinary failures ------------------------------------------------------------------------------


def test_syntax_error_has_line(pool):
    with pytest.raises(CodeSyntaxError) as info:
        pool.run("import cadquery as cq\nresult = cq.Workplane(\n")
    assert info.value.line is not None


def test_exception_has_line(pool):
    code = "import cadquery as cq\nw = cq.Workplane()\nresult = w.box(1, 1, 1).fillet(5)\n"
    with pytest.raises(CodeRuntimeError) as info:
        pool.run(code, timeout_s=30)
    assert info.value.line == 3


def test_missing_result(pool):
    with pytest.raises(NoResult):
        pool.run("import cadquery as cq\npart = cq.Workplane().box(1, 1, 1)\n", timeout_s=30)


@pytest.mark.parametrize(
    "code",
    [
        "result = 42\n",
        "import cadquery as cq\nresult = cq.Workplane().rect(2, 2)\n",
        "import cadquery as cq\nresult = cq.Sketch().rect(2, 2)\n",
        "import cadquery as cq\nresult = cq.Workplane().box(1, 1, 1).faces('>Z').val()\n",
        "import cadquery as cq\nresult = cq.Workplane().pushPoints([(0, 0), (5, 0)]).box(1, 1, 1)\n",
    ],
)
def test_not_one_solid_is_invalid(pool, code):
    with pytest.raises(InvalidSolid):
        pool.run(code, timeout_s=30)


def test_closed_pool_refuses():
    p = SandboxPool(workers=1, timeout_s=1)
    p.close()
    with pytest.raises(SandboxUnavailable):
        p.run(BOX)


def test_bad_arguments_are_value_errors(pool):
    with pytest.raises(ValueError):
        pool.run(BOX, formats=("obj",))
    with pytest.raises(ValueError):
        pool.run(BOX, timeout_s=0)


# -- correctness on real parts -----------------------------------------------------------------------

FLANGE = """\
import cadquery as cq
result = (
    cq.Workplane("XY")
    .circle(30).extrude(10)
    .faces(">Z").workplane().hole(20)
    .faces(">Z").workplane().polarArray(22.5, 0, 360, 4).hole(5)
)
"""


def test_box_measurements(pool):
    res = pool.run(BOX, timeout_s=30)
    assert isinstance(res, ExecResult)
    assert res.volume == pytest.approx(6.0)
    assert res.n_faces == 6 and res.n_solids == 1
    assert res.brep.startswith("DBRep_DrawableShape") or "CASCADE Topology" in res.brep
    assert res.elapsed_s > 0


def test_flange_volume_bbox_and_faces(pool):
    res = pool.run(FLANGE, timeout_s=30)
    expected = math.pi * (30**2 - 10**2) * 10 - 4 * math.pi * 2.5**2 * 10
    assert res.volume == pytest.approx(expected, rel=1e-6)
    assert res.bbox == pytest.approx((-30, -30, 0, 30, 30, 10), abs=1e-6)
    assert res.n_faces == 4 + 4  # top, bottom, outer, bore + four bolt holes


def test_touching_solids_are_fused_and_counted(pool):
    code = (
        "import cadquery as cq\n"
        "a = cq.Workplane().box(1, 1, 1)\n"
        "b = cq.Workplane().box(1, 1, 1).translate((1, 0, 0))\n"
        "result = cq.Compound.makeCompound([a.val(), b.val()])\n"
    )
    res = pool.run(code, timeout_s=30)
    assert res.n_solids == 2
    assert res.volume == pytest.approx(2.0)
    assert res.bbox == pytest.approx((-0.5, -0.5, -0.5, 1.5, 0.5, 0.5))


def test_shape_and_exports_round_trip(pool, tmp_path: Path):
    import cadquery as cq

    res = pool.run(FLANGE, formats=("brep", "step", "stl"), timeout_s=30)
    assert res.shape().Volume() == pytest.approx(res.volume, rel=1e-9)
    assert set(res.exports) == {"brep", "step", "stl"}
    assert cq.Shape.importBrep(io.BytesIO(res.exports["brep"].encode())).Volume() == pytest.approx(res.volume)

    step_path = tmp_path / "part.step"
    step_path.write_text(res.exports["step"])
    assert "ISO-10303-21" in res.exports["step"]
    assert cq.importers.importStep(str(step_path)).val().Volume() == pytest.approx(res.volume, rel=1e-6)

    stl = res.exports["stl"]
    assert isinstance(stl, bytes)
    (n_triangles,) = struct.unpack_from("<I", stl, 80)
    assert n_triangles > 50 and len(stl) == 84 + 50 * n_triangles
    round_trip = ExecResult.from_dict(res.to_dict())
    assert round_trip.exports["stl"] == stl and round_trip.bbox == res.bbox


def test_printed_output_is_returned(pool):
    res = pool.run(BOX + "print('volume is', 6)\n", timeout_s=30)
    assert res.stdout == "volume is 6\n"


def test_concurrent_callers_all_get_their_own_answer(pool):
    def job(i: int) -> tuple[int, float]:
        code = f"import cadquery as cq\nresult = cq.Workplane().box({i + 1}, 1, 1)\n"
        return i, pool.run(code, timeout_s=60).volume

    with ThreadPoolExecutor(max_workers=8) as ex:
        results = list(ex.map(job, range(16)))
    assert all(vol == pytest.approx(i + 1) for i, vol in results)



NAMED_PLANES = ["XY", "YZ", "ZX", "XZ", "YX", "ZY", "front", "back", "left", "right", "top", "bottom"]
PLANE_PART = "import cadquery as cq\nresult = cq.Workplane({name!r}, origin=(1, 2, 3)).rect(4, 2).extrude(3)"
STOCK_PLANES = """
import json, cadquery as cq
out = {}
for name in NAMES:
    p = cq.Plane.named(name, (1, 2, 3))
    scope = {}
    exec(PART.format(name=name), scope)
    b = scope["result"].val().BoundingBox()
    axes = [p.origin.toTuple(), p.xDir.toTuple(), p.zDir.toTuple()]
    out[name] = [axes, [b.xmin, b.ymin, b.zmin, b.xmax, b.ymax, b.zmax]]
print(json.dumps(out))
"""


def test_named_planes_are_cadquerys_own(pool):
    """The worker builds one named plane instead of CadQuery's twelve: the same planes and parts as a
    fresh CadQuery gives, in this process and through jobs."""
    import json
    import subprocess
    import sys

    from model_runtime.sandbox.worker import Runner

    script = f"NAMES = {NAMED_PLANES!r}\nPART = {PLANE_PART!r}\n" + STOCK_PLANES
    stock = json.loads(subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                                      check=True).stdout)  # CadQuery as shipped
    Runner()  # the worker's CadQuery set-up, in this process
    import cadquery as cq

    for name in NAMED_PLANES:
        plane = cq.Plane.named(name, (1, 2, 3))
        axes = [list(plane.origin.toTuple()), list(plane.xDir.toTuple()), list(plane.zDir.toTuple())]
        assert axes == stock[name][0], name
        assert pool.run(PLANE_PART.format(name=name)).bbox == pytest.approx(stock[name][1], abs=1e-9), name
    with pytest.raises(ValueError, match="Supported names are"):
        cq.Plane.named("diagonal")
