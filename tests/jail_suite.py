"""Hostile jobs against the sandbox's operating-system boundary, with all of Python at their disposal.

The pool runs with ``language_guard=False``: no code policy, real builtins, any import. That is what
an attacker has after a complete escape from the language-level guards (through a native object, a
memory poke...), so what holds here holds because of the jail, the seccomp filter and the fresh
process per job. Each probe tries to act outside the jail and the host then checks that nothing
happened; after every probe an ordinary job must still succeed.

Used by tests/test_sandbox_jail.py in-process (as whatever user runs pytest: root in CI) and, as a
script, under a non-root uid: ``python -m tests.jail_suite WORKDIR`` prints the failures as JSON.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import string
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from model_runtime.sandbox import PolicyViolation, SandboxError, SandboxPool

BOX = "import cadquery as cq\nresult = cq.Workplane().box(1, 2, 3)\n"
REPO = Path(__file__).resolve().parents[1]
SECRET_ENV = "CADSNAP_REMOTE_KEY"


# The probes. Each prints what it managed; the host checks what happened on its side.
WRITE = """
for path in $targets:
    try:
        open(path, "w").write("pwned")
        print("wrote", path)
    except OSError as e:
        print("refused", path, e)
"""
READ = """
import os
for path in $paths:
    try:
        print(open(path).read() if os.path.isfile(path) else os.listdir(path))
    except OSError as e:
        print("refused", e.errno)
"""
CONNECT = """
import socket
for address in $addresses:
    try:
        family = socket.AF_INET if isinstance(address, tuple) else socket.AF_UNIX
        socket.socket(family).connect(address)
        print("connected", address)
    except OSError as e:
        print("refused", address, e)
"""
# SIGUSR1 to the host's pytest (a handler there records it); SIGCONT, harmless, to everything.
SIGNAL = """
import os, signal
for pid in $pids + [os.getppid()]:
    try:
        os.kill(pid, signal.SIGUSR1 if pid > 0 else signal.SIGCONT)
        print("sent", pid)
    except OSError as e:
        print("refused", pid, e)
print(sorted(open(f"/proc/{p}/cmdline").read() for p in os.listdir("/proc") if p.isdigit()))
"""
FORK = """
import os, subprocess
forks = 0
for _ in range(200):
    try:
        if os.fork() == 0:
            os._exit(0)
        forks += 1
    except OSError:
        pass
try:
    subprocess.run(["/bin/sh", "-c", "touch $target"])
    print("ran a program")
except OSError as e:
    print("refused", e)
print("forks", forks)
"""
# Callbacks armed to fire after this job: a thread, atexit, a timer signal and a VTK observer
# kept alive in a module that the next job imports too.
DEFERRED = """
import atexit, signal, sys, threading, vtk
def fire(*args):
    open("$marker", "w").write("x")
    print("DEFERRED-FIRED")
threading.Timer(0.3, fire).start()
atexit.register(fire)
signal.signal(signal.SIGALRM, fire)
signal.setitimer(signal.ITIMER_REAL, 0.3)
points = vtk.vtkPoints()
points.AddObserver("DeleteEvent", fire)
sys.modules["cadquery"].__dict__["_kept"] = points
"""
# Raw memory: change the float behind math.pi in place, and patch CadQuery itself.
POKE = """
import ctypes, math, cadquery as cq
result = cq.Workplane().box(1, 2, 3)
ctypes.c_double.from_address(id(math.pi) + 16).value = 3.0
cq.Workplane.box = lambda *a, **k: None
print("poked", math.pi)
"""
IDENTITY = """
import os, resource
print(os.getuid(), os.geteuid(), dict(os.environ))
print([line for line in open("/proc/self/status") if line.startswith(("Cap", "NoNewPrivs"))])
try:
    resource.setrlimit(resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
    print("raised limit")
except (ValueError, OSError) as e:
    print("limit stays", e)
"""


CAP_SETS = ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb")
# The job's parent is the zygote that forks every later job: signal it through F_SETOWN/F_SETSIG on an
# O_ASYNC pipe, cut its limits, renice it or pin its CPUs (later jobs inherit), hold memory in a memfd.
ZYGOTE = """
import fcntl, os, resource, signal
zygote, done = os.getppid(), []
def attempt(name, action):
    try:
        action()
        done.append(name)
    except OSError:
        pass
r, w = os.pipe()
def async_signal():
    fcntl.fcntl(r, fcntl.F_SETOWN, zygote)
    fcntl.fcntl(r, fcntl.F_SETSIG, signal.SIGKILL)
    fcntl.fcntl(r, fcntl.F_SETFL, fcntl.fcntl(r, fcntl.F_GETFL) | os.O_ASYNC)
    os.write(w, b"x")
attempt("setown", async_signal)
attempt("prlimit", lambda: resource.prlimit(zygote, resource.RLIMIT_NOFILE, (3, 3)))
attempt("setpriority", lambda: os.setpriority(os.PRIO_PROCESS, zygote, 19))
attempt("setpriority user", lambda: os.setpriority(os.PRIO_USER, 0, 19))
attempt("setpriority group", lambda: os.setpriority(os.PRIO_PGRP, 0, 19))
attempt("affinity", lambda: os.sched_setaffinity(zygote, {0}))
attempt("memfd", lambda: os.memfd_create("hold"))
print("done", done)
"""
SCHEDULING = "import os\nprint(os.getpriority(os.PRIO_PROCESS, 0), sorted(os.sched_getaffinity(0)))\n"


def _code(template: str, **facts: Any) -> str:
    """A probe with the host's facts in it: strings as they are (inside quotes), the rest as literals."""
    literals = {k: v if isinstance(v, str) else repr(v) for k, v in facts.items()}
    return string.Template(template).substitute(literals)


def attempt(pool: SandboxPool, code: str, timeout_s: float = 10.0) -> tuple[str, SandboxError | None]:
    """(printed output, error or None) of one job; ``result`` defaults to a box so output returns."""
    try:
        res = pool.run(code + ("\n" + BOX if "result =" not in code else ""), timeout_s=timeout_s)
        return res.stdout, None
    except SandboxError as exc:
        return "", exc


class _Listeners:
    """A TCP listener on loopback and a Unix socket in the work folder, counting connections."""

    def __init__(self, workdir: Path):
        self.connections = 0
        self.tcp = socket.create_server(("127.0.0.1", 0))
        self.port = self.tcp.getsockname()[1]
        self.unix_path = str(workdir / "host.sock")
        self.unix = socket.socket(socket.AF_UNIX)
        self.unix.bind(self.unix_path)
        for sock in (self.tcp, self.unix):
            sock.listen()
            sock.settimeout(0.2)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            for sock in (self.tcp, self.unix):
                try:
                    conn, _ = sock.accept()
                except OSError:
                    continue
                self.connections += 1
                conn.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.tcp.close()
        self.unix.close()


def run_suite(pool: SandboxPool, workdir: Path) -> dict[str, str]:
    """Every probe; returns {probe: what went wrong}, empty when the jail held everywhere.

    With the pool's code policy on (``language_guard``), a probe may also be refused before it runs."""
    policy = pool.language_guard
    failures: dict[str, str] = {}
    home = Path(os.path.expanduser("~"))
    token = uuid.uuid4().hex
    secret = home / f".cadsnap-jail-secret-{token[:8]}"
    secret.write_text(token)
    listeners = _Listeners(workdir)
    signals: list[int] = []
    previous = signal.signal(signal.SIGUSR1, lambda signum, frame: signals.append(signum))
    fifo = workdir / "host.fifo"
    os.mkfifo(fifo)
    fifo_reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    restarts = pool.restarts

    def check(name: str, ok: bool, detail: str, err: SandboxError | None = None, host_ok: bool = True):
        # ``host_ok``: nothing happened on the host's side. ``ok``: the probe ran and saw the jail hold.
        # With the code policy on, a probe the policy refused before it ran holds as well.
        refused = policy and isinstance(err, PolicyViolation)
        if not host_ok or not (ok or refused):
            failures[name] = detail
        out, err = attempt(pool, BOX)
        if err is not None:
            failures[f"{name}: next ordinary job"] = str(err)

    try:
        targets = [
            workdir / "pwned",
            home / f"pwned-{token[:8]}",
            REPO / f"pwned-{token[:8]}",
            Path("/etc") / f"pwned-{token[:8]}",
            Path(sys.prefix) / f"pwned-{token[:8]}",
        ]
        out, err = attempt(pool, _code(WRITE, targets=[str(t) for t in targets]))
        written = [str(t) for t in targets if t.exists()]
        check("write outside scratch", err is None, f"host files written: {written}; {err}", err, not written)

        out, err = attempt(pool, _code(READ, paths=[str(secret), str(home)]))
        check("read the home folder", True, out[-500:], err, token not in out and secret.name not in out)

        addresses = [("127.0.0.1", listeners.port), listeners.unix_path]
        out, err = attempt(pool, _code(CONNECT, addresses=addresses))
        time.sleep(0.5)
        check("network", True, out[-500:], err, listeners.connections == 0 and "connected" not in out)

        out, err = attempt(pool, _code(SIGNAL, pids=[os.getpid(), -1, 1]))
        time.sleep(0.2)
        check("signal other processes", True, out[-500:], err, not signals and "sent" not in out)
        check("see host processes", True, out[-500:], err, "pytest" not in out and "jail_suite" not in out)

        out, err = attempt(pool, _code(FORK, target=str(workdir / "forked")))
        ran = "ran a program" in out or (workdir / "forked").exists()
        check("fork bomb and programs", "forks 0" in out, out[-500:] or str(err), err, not ran)

        before, _ = attempt(pool, SCHEDULING)
        out, err = attempt(pool, ZYGOTE)
        after, _ = attempt(pool, SCHEDULING)
        check("reach the zygote (signals, limits, priority, CPUs) or hold uncounted memory",
              "done []" in out, f"{out[-500:]} {err}; scheduling {before!r} then {after!r}", err,
              before == after and pool.restarts == restarts)

        marker = workdir / "deferred"
        _, err = attempt(pool, _code(DEFERRED, marker=str(marker)))
        later = [attempt(pool, "import time\ntime.sleep(0.2)\nprint('later')\n")[0] for _ in range(3)]
        time.sleep(0.5)
        fired = marker.exists() or any("DEFERRED-FIRED" in o for o in later)
        check("deferred callbacks", all("later" in o for o in later), repr(later), err, not fired)

        _, err = attempt(pool, _code(WRITE, targets=["/tmp/leftover", "leftover", "/dev/shm/leftover"]))
        out, err2 = attempt(pool, "import os\nprint(sorted(os.listdir('/tmp')), os.listdir('.'))\n")
        check("files left for the next job", err2 is None, out, err or err2, "leftover" not in out)

        _, err = attempt(pool, "import sys\nsys.stderr.write('STDERR-OF-AN-EARLIER-JOB')\n")
        out, crash = attempt(pool, "import ctypes\nctypes.string_at(0)\n")
        seen = "STDERR-OF-AN-EARLIER-JOB" in json.dumps(crash.to_dict() if crash else {})
        check("one job's stderr in another's error", True, str(crash), err, not seen)

        poked, err = attempt(pool, POKE)
        out, _ = attempt(pool, "import math\nprint(math.pi)\n")
        pool_box = pool.run(BOX).volume
        ok = "poked 3.0" in poked and "3.14159" in out
        check("memory pokes and patched modules", ok, f"{poked!r} then {out!r}, box {pool_box}", err,
              abs(pool_box - 6.0) < 1e-9)

        out, err = attempt(pool, "import ctypes\nctypes.string_at(0)\n")
        crashed = err is not None and err.code == "worker_crashed"
        check("a job that crashes its process", crashed, str(err), err, pool.restarts == restarts)

        out, err = attempt(pool, _code(WRITE, targets=[str(fifo)]))
        try:
            leaked = os.read(fifo_reader, 100)
        except BlockingIOError:
            leaked = b""
        check("write to a host FIFO", True, out, err, not leaked and "wrote" not in out)

        out, err = attempt(pool, IDENTITY)
        secret_env = os.environ.get(SECRET_ENV, "never-set")
        no_caps = all(f"{name}:\\t0000000000000000" in out for name in CAP_SETS)
        ok = out.startswith("65534 65534") and no_caps and "NoNewPrivs:\\t1" in out and "limit stays" in out
        check("identity, privileges, environment and limits", ok, out[-800:], err, secret_env not in out)
        if pool.restarts != restarts:
            failures["zygote"] = f"the worker was replaced {pool.restarts - restarts} times"
    finally:
        signal.signal(signal.SIGUSR1, previous)
        listeners.close()
        os.close(fifo_reader)
        secret.unlink(missing_ok=True)
        for leftover in (home / f"pwned-{token[:8]}", REPO / f"pwned-{token[:8]}"):
            leftover.unlink(missing_ok=True)
    return failures


def main(argv: list[str]) -> int:
    """``python -m tests.jail_suite WORKDIR [--policy]``: the suite with the code policy off (or on)."""
    workdir = Path(argv[0])
    os.environ[SECRET_ENV] = "secret-" + uuid.uuid4().hex
    guard = "--policy" in argv[1:]
    with SandboxPool(workers=1, timeout_s=10, memory_mb=512, language_guard=guard) as pool:
        if not pool.wait_ready(120):
            print(json.dumps({"pool": "did not start"}))
            return 1
        report: dict[str, Any] = {"uid": os.geteuid(), "sandbox": pool.containment()}
        report["failures"] = run_suite(pool, workdir)
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
