"""The sandbox's operating-system boundary, proved with hostile code (issue: OS-level containment).

Two layers are tested apart: the jail (``tests/jail_suite.py``: code with all of Python, as root and
as a normal user) and the code policy that stays in front of it (the native-object surfaces a real
attack used, refused before anything runs). Plus: no state crosses jobs even without a jail, and
whatever the code prints or raises comes back safe to carry.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from model_runtime import protocol
from model_runtime.sandbox import CodeRuntimeError, PolicyViolation, SandboxPool, Uncontained, check_policy
from model_runtime.sandbox.jail import ALLOW_UNCONTAINED_ENV, check_probe, containment, diagnose
from tests.jail_suite import BOX, POKE, attempt, run_suite

REPO = Path(__file__).resolve().parents[1]
CONTAINED = containment()
HAS_BWRAP = sys.platform == "linux" and shutil.which("bwrap") is not None
# Skipped only where bubblewrap is not installed; where it is, a jail that does not start fails below.
needs_jail = pytest.mark.skipif(not HAS_BWRAP, reason="bubblewrap is not installed")


@pytest.fixture(scope="module")
def raw_pool():
    """A jailed pool with no language guard: hostile code gets all of Python."""
    with SandboxPool(workers=1, timeout_s=10, memory_mb=512, language_guard=False) as pool:
        assert pool.wait_ready(120), "sandbox workers did not start"
        yield pool


@pytest.fixture(scope="module")
def pool():
    with SandboxPool(workers=1, timeout_s=10, memory_mb=512) as p:
        assert p.wait_ready(120), "sandbox workers did not start"
        yield p


# -- the jail ---------------------------------------------------------------------------------------


@needs_jail
def test_linux_with_bubblewrap_is_contained():
    assert CONTAINED.contained, f"bubblewrap is installed but the jail does not start: {CONTAINED}"
    assert "bubblewrap" in CONTAINED.mechanism and "seccomp" in CONTAINED.mechanism


def _copy_checkout(parent: Path) -> Path:
    """The runtime as a user installs it somewhere else: the package, the suite and a venv of its own
    whose site-packages reach this environment's packages (a .pth file)."""
    root = Path(tempfile.mkdtemp(prefix="cadsnap-checkout-", dir=parent))
    ignore = shutil.ignore_patterns("__pycache__")
    shutil.copytree(REPO / "model_runtime", root / "model_runtime", ignore=ignore)
    (root / "tests").mkdir()
    for name in ("__init__.py", "jail_suite.py"):
        shutil.copy2(REPO / "tests" / name, root / "tests" / name)
    venv = [sys.executable, "-m", "venv", "--without-pip", str(root / "venv")]
    subprocess.run(venv, check=True, timeout=120)
    site = next((root / "venv").glob("lib/python3*/site-packages"))
    own = [p for p in sys.path if p.endswith(("site-packages", "dist-packages")) and os.path.isdir(p)]
    (site / "cadsnap-parent-env.pth").write_text("\n".join(own) + "\n")
    for path in [root, *root.rglob("*")]:
        path.chmod(path.stat().st_mode | 0o755 if path.is_dir() else path.stat().st_mode | 0o644)
    return root


@pytest.fixture(scope="module", params=["tmp", "home"])
def checkout(request):
    """A copy of the runtime with its venv under /tmp (where CI and new users clone) or under home."""
    parent = Path("/tmp") if request.param == "tmp" else Path.home()
    root = _copy_checkout(parent)
    yield root
    shutil.rmtree(root, ignore_errors=True)


@needs_jail
@pytest.mark.parametrize("user", ["root", "normal"])
def test_jail_holds_wherever_the_runtime_is_installed(checkout, user, tmp_path):
    if user == "root" and os.geteuid() != 0:
        pytest.skip("needs root: this run is the normal user's")
    python = str(checkout / "venv" / "bin" / "python")
    prefix = []
    if user == "normal" and os.geteuid() == 0:
        prefix = ["unshare", "--user", "--map-user=1000", "--map-group=1000"]
    tmp_path.chmod(0o777)
    done = subprocess.run([*prefix, python, "-m", "tests.jail_suite", str(tmp_path)], cwd=checkout,
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["sandbox"]["contained"], report["sandbox"]
    assert not report["failures"], json.dumps(report["failures"], indent=2)


@needs_jail
def test_the_policy_and_the_jail_together_hold(pool, tmp_path):
    # The same probes with the code policy on: refused before they run, or held by the jail.
    assert pool.language_guard and pool.jailed
    failures = run_suite(pool, tmp_path)
    assert not failures, json.dumps(failures, indent=2)


# -- never silently uncontained ---------------------------------------------------------------------


def _runtime(args: list[str], tmp_path: Path, **env: str) -> subprocess.CompletedProcess:
    """The CLI where no jail can start: bubblewrap is not on PATH."""
    environment = {k: v for k, v in os.environ.items() if k != ALLOW_UNCONTAINED_ENV}
    environment.update(PATH=str(tmp_path), **env)
    return subprocess.run([sys.executable, "-m", "model_runtime", *args], cwd=REPO, env=environment,
                          capture_output=True, text=True, timeout=300, check=False)


@pytest.fixture()
def part(tmp_path):
    source = tmp_path / "part.py"
    source.write_text(BOX)
    return source


def test_without_a_jail_generated_code_does_not_run(part, tmp_path):
    done = _runtime(["exec", str(part), "-o", str(tmp_path / "part.step")], tmp_path)
    assert done.returncode != 0
    assert "bubblewrap is not installed" in done.stderr and "apt install bubblewrap" in done.stderr
    assert "CADSNAP_ALLOW_UNCONTAINED=1" in done.stderr and "--allow-uncontained" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "part.step").exists()
    doctor = _runtime(["doctor"], tmp_path)
    assert doctor.returncode == 1, doctor.stdout
    assert "bubblewrap is not installed" in doctor.stdout and "Generated code will not run" in doctor.stdout


@pytest.mark.parametrize("how", ["flag", "variable"])
def test_the_user_may_opt_in_knowingly(part, tmp_path, how):
    args, env = (["--allow-uncontained"], {}) if how == "flag" else ([], {ALLOW_UNCONTAINED_ENV: "1"})
    done = _runtime(["exec", str(part), "-o", str(tmp_path / "part.step"), *args], tmp_path, **env)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "part.step").exists()
    assert "runs anyway, with your user's rights, because you allowed it" in done.stderr


def test_a_refusing_pool_starts_no_worker_and_says_why(monkeypatch):
    # This platform's probe, as it reads where bubblewrap is missing (the CLI tests above run that case
    # for real): the pool's own decision is what is tested here.
    from model_runtime.sandbox import jail
    from model_runtime.sandbox import pool as pool_module

    missing = jail.Containment(False, "none", "Generated code cannot be contained here: bubblewrap is "
                               "not installed.", "Install bubblewrap.")
    monkeypatch.setattr(pool_module, "containment", lambda: missing)
    with SandboxPool(workers=1, jail=None, allow_uncontained=False) as p:
        assert not p.jailed and p.refused
        assert not p.wait_ready(1) and p.stats()["starting"] == 0
        with pytest.raises(Uncontained, match="CADSNAP_ALLOW_UNCONTAINED"):
            p.run(BOX)
        assert p.containment()["refused"] is True
    with SandboxPool(workers=1, jail=None, allow_uncontained=True) as p:
        assert not p.jailed and not p.refused


@pytest.mark.parametrize("stderr, cause, fix", [
    ("setpriv: apply bounding set: Operation not permitted", "last capabilities", "util-linux"),
    ("setpriv: failed to execute /tmp/x/venv/bin/python: No such file or directory", "not visible",
     "Reinstall"),
    ("bwrap: No permissions to creating new namespace, likely because the kernel does not allow "
     "non-privileged user namespaces.", "namespaces", "unprivileged_userns_clone"),
    ("bwrap: setting up uid map: Permission denied", "namespaces", "apparmor_restrict_unprivileged_userns"),
])
def test_a_jail_that_does_not_start_is_explained(stderr, cause, fix):
    found_cause, found_fix = diagnose(stderr)
    assert cause in found_cause and fix in found_fix


def test_a_probe_with_capabilities_left_is_not_contained():
    # Debian 12's setpriv without CAP_SETPCAP: everything cleared but the bounding set, silently.
    report = {"uid": 65534, "CapInh": "0" * 16, "CapPrm": "0" * 16, "CapEff": "0" * 16,
              "CapBnd": "000001fffeffffff", "CapAmb": "0" * 16, "NoNewPrivs": "1"}
    assert "CapBnd=000001fffeffffff" in check_probe(report)
    assert check_probe({**report, "CapBnd": "0" * 16}) == ""
    assert "uid 0" in check_probe({**report, "CapBnd": "0" * 16, "uid": 0})


@needs_jail
def test_jail_holds_against_all_of_python(raw_pool, tmp_path):
    assert raw_pool.jailed and raw_pool.containment()["contained"]
    failures = run_suite(raw_pool, tmp_path)
    assert not failures, json.dumps(failures, indent=2)


@needs_jail
def test_jail_holds_for_a_normal_user(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("pytest runs as a normal user: test_jail_holds_against_all_of_python is this test")
    # Root runs the same suite as uid 1000 in a user namespace: the runtime then takes the normal
    # user's path (bubblewrap's own user namespace) instead of dropping from root with setpriv.
    tmp_path.chmod(0o777)
    done = subprocess.run(
        ["unshare", "--user", "--map-user=1000", "--map-group=1000", sys.executable, "-m", "tests.jail_suite"]
        + [str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["uid"] == 1000
    assert report["sandbox"]["contained"], report["sandbox"]
    assert not report["failures"], json.dumps(report["failures"], indent=2)


@needs_jail
def test_numpy_dump_outside_scratch_has_no_effect(raw_pool, tmp_path):
    # Issue class 1 with the policy out of the way: numpy's own file writer, aimed at the host.
    target = tmp_path / "truncated.txt"
    target.write_text("keep me")
    code = f"import numpy\nnumpy.zeros(3).dump({str(target)!r})\n"
    out, err = attempt(raw_pool, code)
    assert err is not None and err.code == protocol.ERROR_RUNTIME
    assert target.read_text() == "keep me"


# -- no state crosses jobs, jail or not -------------------------------------------------------------


@pytest.mark.parametrize("jail", [None, False], ids=["jailed", "fallback"])
def test_no_state_crosses_jobs(jail):
    with SandboxPool(workers=1, timeout_s=10, jail=jail, language_guard=False) as p:
        poked, err = attempt(p, POKE)
        assert err is None and "poked 3.0" in poked
        for _ in range(3):
            out, err = attempt(p, "import math\nprint(math.pi)\n")
            assert err is None and out.strip() == "3.141592653589793"
            assert p.run(BOX).volume == pytest.approx(6.0)
        assert p.restarts == 0, "the zygote itself must survive its jobs"


# -- defence in depth: the policy refuses native-object surfaces ------------------------------------

ESCAPES = {
    # 1 and 2: a native method handed to CadQuery's map, aimed at a file or a FIFO.
    "map a native method": (
        "import cadquery as cq\npoints = cq.Workplane().box(1, 1, 1).val().toVtkPolyData().GetPoints()\n"
        "cq.Workplane().add('/tmp/x').map(points.dump)\n"
    ),
    "dump through map": "import cadquery as cq\nw = cq.Workplane()\nw.map(w.dump)\n",
    # 3: a VTK observer armed to fire later.
    "arm an observer": (
        "import cadquery as cq\npoly = cq.Workplane().box(1, 1, 1).val().toVtkPolyData()\n"
        "poly.AddObserver('DeleteEvent', print)\n"
    ),
    "observer without the name": "def f(o):\n    o.AddObserver('DeleteEvent', f)\n",
    # 4: raw memory through a VTK array.
    "raw memory": "def f(a):\n    a.CreateArray(3).SetVoidArray('_%016x_p_void' % hash(a), 8, 1)\n",
    "OCP handle": "import cadquery as cq\nh = cq.Workplane().box(1, 1, 1).val().wrapped\n",
    "OCP point": "import cadquery as cq\np = cq.Vector(1, 2, 3).toPnt()\n",
    "builtin as callback": "import cadquery as cq\ncq.Workplane().box(1, 1, 1).each(print)\n",
    "builtin hash as callback": "import cadquery as cq\ncq.Workplane().box(1, 1, 1).invoke(hash)\n",
}


@pytest.mark.parametrize("code", ESCAPES.values(), ids=ESCAPES.keys())
def test_policy_refuses_native_surfaces(code):
    with pytest.raises(PolicyViolation):
        check_policy(code)


def test_cadquery_callbacks_with_own_functions_still_run(pool):
    code = (
        "import cadquery as cq\n"
        "def lift(loc):\n    return cq.Solid.makeBox(2, 2, 2).locate(loc)\n"
        "base = cq.Workplane().box(10, 10, 2)\n"
        "pegs = base.faces('>Z').workplane().rarray(5, 5, 2, 2).eachpoint(lift)\n"
        "area = base.faces('>Z').map(lambda f: f).val().Area()\n"
        "result = base.union(pegs)\n"
        "print(area)\n"
    )
    res = pool.run(code)
    assert res.volume == pytest.approx(10 * 10 * 2 + 4 * 8)
    assert float(res.stdout) == pytest.approx(100.0)


# -- output is always safe to carry -----------------------------------------------------------------


def test_lone_surrogates_and_huge_messages_come_back_encodable(pool):
    res = pool.run(BOX + "print(chr(0xD800), 'ok')\n")
    assert res.stdout == "\\ud800 ok\n"
    res.stdout.encode("utf-8")
    with pytest.raises(CodeRuntimeError) as info:
        pool.run("raise ValueError(chr(0xDFFF) * 1000000)\n")
    assert len(info.value.message) < 5000
    info.value.message.encode("utf-8")
    json.dumps(info.value.to_dict(), ensure_ascii=False).encode("utf-8")


def test_cli_exec_prints_surrogates_without_a_traceback(tmp_path):
    source = tmp_path / "part.py"
    source.write_text(BOX + "print(chr(0xD800))\n")
    done = subprocess.run(
        [sys.executable, "-m", "model_runtime", "exec", str(source)],
        cwd=REPO,
        capture_output=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert b"Traceback" not in done.stderr
    assert b"\\ud800" in done.stdout
