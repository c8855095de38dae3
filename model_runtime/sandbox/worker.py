"""A sandbox worker: a warm zygote that imports cadquery once and forks a fresh process per job.

Started by the pool as ``python -m model_runtime.sandbox.worker CONFIG_JSON``, inside the jail
(``jail``) where the platform has one. Protocol: frames (see ``wire``) on the original stdin/stdout;
the process's own fds 0 and 1 point at /dev/null so nothing the code or OCCT prints can corrupt the
protocol. Each job runs in a forked process that takes its limits for life (address space, file
size, CPU, open files, no core dumps) and a seccomp filter before the code runs, and then exits.
"""

from __future__ import annotations

import builtins
import contextlib
import ctypes
import gc
import io
import json
import math
import os
import select
import shutil
import stat
import sys
import tempfile
import time
import traceback
import types
from collections import deque
from pathlib import Path
from typing import Any

from model_runtime.sandbox import syscalls
from model_runtime.sandbox.errors import (
    CodeRuntimeError,
    CodeSyntaxError,
    InvalidSolid,
    NoResult,
    OutputTooLarge,
    ResourceLimit,
    SandboxError,
    Timeout,
)
from model_runtime.sandbox.policy import ALLOWED_BUILTINS, check_policy
from model_runtime.sandbox.wire import HEADER, read_frame, write_frame, write_frame_bytes

try:
    import resource
except ImportError:  # Windows: no rlimits; the pool's wall-clock kill still applies.
    resource = None  # type: ignore[assignment]

CODE_FILENAME = "<generated>"
MAX_STDOUT_CHARS = 64 * 1024
MAX_MESSAGE_CHARS = 2000
# Each job's stderr, in its own scratch folder.
JOB_STDERR = ".stderr"
# Public CadQuery names the code sees; modules (file import/export, plugins) stay out of reach.
_HIDDEN_CQ_NAMES = frozenset({"exporters", "importers", "plugins", "selectors", "occ_impl", "vis"})


class _Printer:
    """``print`` for generated code: captured, capped; overflowing marks the run as failed.

    State lives in underscore attributes, which the policy puts out of the code's reach."""

    def __init__(self, limit: int = MAX_STDOUT_CHARS):
        self._parts: list[str] = []
        self._size = 0
        self._limit = limit
        self._overflowed = False

    def __call__(self, *args: Any, sep: str | None = " ", end: str | None = "\n", **_: Any) -> None:
        if self._overflowed:
            raise OutputTooLarge(f"the code printed more than {self._limit} characters")
        text = (sep if sep is not None else " ").join(str(a) for a in args) + (
            end if end is not None else "\n"
        )
        self._size += len(text)
        if self._size > self._limit:
            self._overflowed = True
            raise OutputTooLarge(f"the code printed more than {self._limit} characters")
        self._parts.append(text)

    @property
    def overflowed(self) -> bool:
        return self._overflowed

    @property
    def limit(self) -> int:
        return self._limit

    def text(self) -> str:
        return "".join(self._parts)


def _restricted_cadquery(cq: types.ModuleType) -> types.SimpleNamespace:
    # A namespace, not a module: `from cadquery import occ_impl` must not fall back to
    # sys.modules["cadquery.occ_impl"], which the import statement does for real modules.
    names = {
        name: getattr(cq, name)
        for name in getattr(cq, "__all__", [])
        if name not in _HIDDEN_CQ_NAMES and not isinstance(getattr(cq, name, None), types.ModuleType)
    }
    return types.SimpleNamespace(**names)


def _make_globals(cq: types.ModuleType, printer: _Printer) -> dict[str, Any]:
    cq_view = _restricted_cadquery(cq)  # fresh per job: nothing one job does is seen by the next

    def guarded_import(
        name: str, globals: Any = None, locals: Any = None, fromlist: Any = (), level: int = 0
    ):
        if level == 0 and name == "cadquery":
            return cq_view
        if level == 0 and name == "math":
            return math
        raise ImportError(f"import of '{name}' is not allowed; only cadquery and math may be imported")

    safe = {name: getattr(builtins, name) for name in ALLOWED_BUILTINS if hasattr(builtins, name)}
    safe["print"] = printer
    safe["__import__"] = guarded_import
    return {"__builtins__": safe, "__name__": "__cadsnap__"}


def _code_line(tb: types.TracebackType | None) -> int | None:
    line = None
    for frame, lineno in traceback.walk_tb(tb):
        if frame.f_code.co_filename == CODE_FILENAME:
            line = lineno
    return line


def _short(text: str) -> str:
    return text if len(text) <= MAX_MESSAGE_CHARS else text[:MAX_MESSAGE_CHARS] + "..."


def apply_job_limits(memory_mb: int, max_output_bytes: int) -> None:
    """Limits for a process that will run generated code, hard and soft alike, for its whole life.

    Address space: the process's size now plus ``memory_mb``; file size: the output cap (files can
    only be written in the scratch folder anyway); no core dumps; few open files. A spare job
    process takes them before it waits for its job; the CPU limit follows with the job's timeout.
    """
    if resource is None:
        return
    import signal

    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # an oversize write fails with EFBIG instead
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    if memory_mb > 0 and hasattr(resource, "RLIMIT_AS"):
        limit = _address_space_bytes() + memory_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    resource.setrlimit(resource.RLIMIT_FSIZE, (max_output_bytes, max_output_bytes))
    resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256))


def limit_cpu(timeout_s: float) -> None:
    """CPU seconds for the job: a backstop behind the wall-clock kill, with slack because OCCT may
    use several threads."""
    if resource is None:
        return
    usage = resource.getrusage(resource.RUSAGE_SELF)
    cpu = int(usage.ru_utime + usage.ru_stime + 2 * timeout_s + 2)
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))


def _address_space_bytes() -> int:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 2 * 1024**3


# CadQuery's conventional plane names: (xDir, normal), as in its own ``Plane.named`` table.
_NAMED_PLANES = {
    "XY": ((1, 0, 0), (0, 0, 1)), "YZ": ((0, 1, 0), (1, 0, 0)), "ZX": ((0, 0, 1), (0, 1, 0)),
    "XZ": ((1, 0, 0), (0, -1, 0)), "YX": ((0, 1, 0), (0, 0, -1)), "ZY": ((0, 0, 1), (-1, 0, 0)),
    "front": ((1, 0, 0), (0, 0, 1)), "back": ((-1, 0, 0), (0, 0, -1)), "left": ((0, 0, 1), (-1, 0, 0)),
    "right": ((0, 0, -1), (1, 0, 0)), "top": ((1, 0, 0), (0, 1, 0)), "bottom": ((1, 0, 0), (0, -1, 0)),
}  # fmt: skip


def _build_one_named_plane(plane_class: type) -> None:
    """CadQuery 2.x's ``Plane.named`` builds all twelve named planes to return one: half the time of
    ``Workplane("XY").box(...)``, paid by every job. Same planes, same error, one built."""

    def named(cls, stdName, origin=(0, 0, 0)):  # noqa: N803 - CadQuery's parameter name
        try:
            x_dir, normal = _NAMED_PLANES[stdName]
        except (KeyError, TypeError):
            raise ValueError(f"Supported names are {list(_NAMED_PLANES)}") from None
        return plane_class(origin, x_dir, normal)

    plane_class.named = classmethod(named)


class Runner:
    """Runs jobs in this process; separate from the frame loop so it can be used and tested directly."""

    def __init__(self, max_output_bytes: int = 64 * 1024 * 1024, *, language_guard: bool = True):
        # OCCT's default thread pool, made on first use, would start worker threads here that a
        # forked job process does not have: its first parallel boolean would wait for them forever.
        # One thread means OCCT runs its parallel loops in the calling thread.
        from OCP.OSD import OSD_ThreadPool

        OSD_ThreadPool.DefaultPool_s(1)
        import cadquery as cq

        _build_one_named_plane(cq.Plane)
        self.cq = cq
        self.max_output_bytes = max_output_bytes
        # Off only in the tests that prove the jail holds against code with all of Python.
        self.language_guard = language_guard
        # Warm up the paths every job takes, so the first job is as fast as the others.
        warm = cq.Workplane("XY").box(1, 1, 1).faces(">Z").hole(0.5)
        self._measure(warm.val(), ("brep", "step"), max_output_bytes)
        with contextlib.suppress(Exception):
            # The tracer, when installed, is imported once here rather than in every job.
            from model_runtime.feature_plan import tracer  # noqa: F401
        with contextlib.suppress(Exception):
            # Shape recognition (the ``shape`` job) and its mesh libraries, likewise imported once.
            import manifold3d  # noqa: F401
            import trimesh  # noqa: F401

            from model_runtime.shapes import job, mesh, recognise  # noqa: F401

    def run(self, job: dict[str, Any]) -> dict[str, Any]:
        if job.get("kind") == "shape":  # a shape file to read and recognise: model_runtime/shapes/job.py
            from model_runtime.shapes.job import run_job

            return run_job(job)
        started = time.perf_counter()
        printer = _Printer()
        try:
            result = self._run(job, printer)
            result["stdout"] = printer.text()
            result["elapsed_s"] = time.perf_counter() - started
            return {"ok": True, "result": result}
        except SandboxError as exc:
            error = exc
        except MemoryError:
            error = ResourceLimit("the code ran out of memory (the sandbox's memory limit)")
        except RecursionError:
            error = ResourceLimit("the code recursed too deeply")
        except Exception as exc:  # the runtime's own post-processing failed on an odd shape
            error = InvalidSolid(_short(f"the result could not be measured or exported: {exc}"))
        body = error.to_dict()["error"]
        body["line"] = error.line
        return {"ok": False, "error": body, "stdout": printer.text()}

    def _run(self, job: dict[str, Any], printer: _Printer) -> dict[str, Any]:
        code = job["code"]
        if self.language_guard:
            check_policy(code)
        try:
            compiled = compile(code, CODE_FILENAME, "exec", dont_inherit=True)
        except SyntaxError as exc:
            raise CodeSyntaxError(f"invalid Python syntax: {exc.msg}", line=exc.lineno) from None
        except (RecursionError, MemoryError, ValueError) as exc:
            raise CodeSyntaxError(f"code cannot be compiled: {exc}") from None
        if self.language_guard:
            scope = _make_globals(self.cq, printer)
        else:
            scope = {"__name__": "__cadsnap__", "print": printer}
        recorder = None
        if job.get("feature_plan"):
            try:
                from model_runtime.feature_plan.tracer import Recorder

                recorder = Recorder()
                scope = recorder.instrument(scope)
            except Exception:  # no tracer: the result simply carries no plan
                recorder = None
        try:
            exec(compiled, scope)
        except (SandboxError, MemoryError, RecursionError):
            raise
        except BaseException as exc:
            if printer.overflowed:
                raise OutputTooLarge(f"the code printed more than {printer.limit} characters") from None
            message = _short(f"{type(exc).__name__}: {exc}")
            raise CodeRuntimeError(
                message, line=_code_line(exc.__traceback__), detail={"exception": type(exc).__name__}
            ) from None
        if printer.overflowed:
            raise OutputTooLarge(f"the code printed more than {printer.limit} characters")
        if "result" not in scope:
            raise NoResult("the code ran but bound nothing to 'result'; end with `result = <your solid>`")
        solid, n_solids = self._one_solid(scope["result"], int(job.get("max_solids", 1000)))
        max_faces = int(job.get("max_faces", 50_000))
        out = self._measure(
            solid,
            tuple(job.get("formats", ("brep",))),
            int(job.get("max_output_bytes", self.max_output_bytes)),
            max_faces,
        )
        out["n_solids"] = n_solids
        if recorder is not None:
            try:
                out["feature_plan"] = recorder.plan(solid)
            except Exception as exc:  # the plan is an extra: never lose the solid over it
                reason = _short(f"tracer failed: {exc}")
                out["feature_plan"] = {
                    "version": 1, "status": "unmapped", "reasons": [reason], "parameters": [], "features": []
                }
        return out

    def _one_solid(self, result: Any, max_solids: int) -> tuple[Any, int]:
        cq = self.cq
        if isinstance(result, cq.Workplane):
            shapes = [v for v in result.vals() if isinstance(v, cq.Shape) and v.Solids()]
            if not shapes:
                try:
                    shapes = [result.findSolid()]
                except ValueError:
                    raise InvalidSolid(
                        "'result' is a Workplane with no solid on its stack or in its chain; "
                        "extrude, revolve or loft the sketch into a solid"
                    ) from None
            shape = shapes[0] if len(shapes) == 1 else cq.Compound.makeCompound(shapes)
        elif isinstance(result, cq.Sketch):
            raise InvalidSolid("'result' is a 2D Sketch; place it on a Workplane and extrude it into a solid")
        elif isinstance(result, cq.Shape):
            shape = result
        else:
            raise InvalidSolid(
                f"'result' is a {type(result).__name__}; bind a cq.Workplane or cq.Shape holding one solid"
            )
        solids = shape.Solids()
        n_solids = len(solids)
        if n_solids == 0:
            raise InvalidSolid(
                f"'result' holds no solid ({len(shape.Faces())} faces, {len(shape.Edges())} edges); "
                "extrude or revolve it into a solid"
            )
        if n_solids > max_solids:
            raise ResourceLimit(
                f"'result' holds {n_solids} solids; the limit is {max_solids}", detail={"n_solids": n_solids}
            )
        if n_solids == 1:
            solid = solids[0]
        else:
            # Touching or overlapping pieces are one part; disjoint pieces are not.
            fused = solids[0].fuse(*solids[1:]).clean()
            pieces = fused.Solids()
            if len(pieces) != 1:
                raise InvalidSolid(
                    f"'result' is {len(pieces)} separate solids; a part must be one connected solid "
                    "(union the pieces so they touch, or keep only one)",
                    detail={"n_solids": len(pieces)},
                )
            solid = pieces[0]
        if not solid.isValid():
            raise InvalidSolid("the solid is not valid (OpenCascade's shape check failed)")
        volume = solid.Volume()
        if not volume > 1e-9:
            raise InvalidSolid(f"the solid is empty (volume {volume:.3g} mm³)")
        return solid, n_solids

    def _measure(
        self, solid: Any, formats: tuple[str, ...], max_output_bytes: int, max_faces: int = 50_000
    ) -> dict[str, Any]:
        import base64

        n_faces = len(solid.Faces())
        if n_faces > max_faces:
            raise ResourceLimit(
                f"the solid has {n_faces} faces; the limit is {max_faces}", detail={"n_faces": n_faces}
            )
        box = solid.BoundingBox()
        brep = io.BytesIO()
        solid.exportBrep(brep)
        brep_text = brep.getvalue().decode("utf-8")
        total = len(brep_text)
        exports: dict[str, str] = {}
        for fmt in formats:
            if fmt == "brep":
                exports[fmt] = brep_text
                continue
            path = Path(f"export.{fmt}")
            try:
                if fmt == "step":
                    solid.exportStep(str(path))
                    exports[fmt] = path.read_text(encoding="utf-8", errors="replace")
                elif fmt == "stl":
                    solid.exportStl(str(path), tolerance=1e-3, angularTolerance=0.1)
                    data = path.read_bytes()
                    if not data:
                        raise OutputTooLarge(
                            "the STL export could not be written (over the output size cap?)"
                        )
                    exports[fmt] = base64.b64encode(data).decode("ascii")
                else:
                    raise InvalidSolid(f"unknown export format '{fmt}'")
            finally:
                path.unlink(missing_ok=True)
            total += len(exports[fmt])
        if total > max_output_bytes:
            raise OutputTooLarge(
                f"the output is {total} bytes; the cap is {max_output_bytes}", detail={"bytes": total}
            )
        return {
            "volume": solid.Volume(),
            "bbox": [box.xmin, box.ymin, box.zmin, box.xmax, box.ymax, box.zmax],
            "n_faces": n_faces,
            "brep": brep_text,
            "exports": exports,
        }


# Trusted code a spare job process runs before it waits for its job: it touches (copies on write) the
# pages every job touches, so the job itself runs at warm speed.
_WARM_UP_CODE = "import cadquery as cq\nresult = cq.Workplane('XY').box(2, 2, 2).faces('>Z').hole(1)\n"
_FAILED = 70
IDLE_GRACE_S = 0.005


class Zygote:
    """Holds a warm cadquery and forks one fresh process per job; never runs generated code itself.

    Spare job processes are forked ahead of time: each closes the protocol pipes, warms its pages on
    trusted code, installs the seccomp filter and waits. When a job comes, the zygote makes sure
    every earlier job process is dead, empties the scratch folder and gives the job and a new empty
    folder to a spare, which takes its limits for life, runs the code, sends one length-prefixed
    reply on its own pipe and is killed. So nothing one job does (callbacks, patched modules, poked
    memory, files, threads) outlives it, no process that ran one job's code runs another's, and
    each job still starts from a warm, imported cadquery.
    """

    protocol_fds: tuple[int, ...] = ()

    def __init__(self, config: dict[str, Any]):
        self.memory_mb = int(config.get("memory_mb", 2048))
        self.max_output_bytes = int(config.get("max_output_bytes", 64 * 1024 * 1024))
        self.max_reply_bytes = 2 * self.max_output_bytes + 1024 * 1024
        self.max_request_bytes = int(config.get("max_request_bytes", 8 * 1024 * 1024))
        self.scratch = Path(config.get("scratch") or os.getcwd())
        self.spares = max(1, int(config.get("spares", 1)))
        self.runner = Runner(self.max_output_bytes, language_guard=bool(config.get("language_guard", True)))
        self._jobs = 0
        # Resident size every job starts from (its fork shares these pages): the out-of-memory test
        # compares a crashed job's peak with this plus its allowance.
        self.baseline_rss_kb = _max_rss_kb()
        self._ready: deque[tuple[int, int, int]] = deque()  # pid, job pipe (write), reply pipe (read)
        self._finished: list[int] = []  # job processes done or failed: killed and reaped by tidy()
        # A job process runs as the same user: without this it could open /proc/<zygote>/mem and
        # patch the process that forks the next job.
        _set_dumpable(False)
        # Objects made so far are never collected: a forked job does not touch (copy) their pages.
        gc.freeze()

    def close(self) -> None:
        while self._ready:
            pid, job_fd, reply_fd = self._ready.popleft()
            self._finished.append(pid)
            os.close(job_fd)
            os.close(reply_fd)
        self.tidy()

    def needs_spare(self) -> bool:
        return len(self._ready) < self.spares

    def fork_spare(self, warm: bool = True) -> None:
        """Fork one job process now, so that a later job does not wait for it; ``warm=False`` for
        one whose job is already waiting (warming would only delay it)."""
        job_read, job_write = os.pipe()
        reply_read, reply_write = os.pipe()
        pid = os.fork()
        if pid == 0:  # the job process: never returns
            os.close(job_write)
            os.close(reply_read)
            for fd in (*self.protocol_fds, *(fd for spare in self._ready for fd in spare[1:])):
                os.close(fd)
            self._job_process(job_read, reply_write, warm)
        os.close(job_read)
        os.close(reply_write)
        self._ready.append((pid, job_write, reply_read))

    def run(self, job: dict[str, Any]) -> bytes:
        """One job in a fresh process; the reply's JSON bytes."""
        # Every earlier job process is gone before this job gets a scratch folder of its own.
        self.tidy()
        self._jobs += 1
        folder = tempfile.mkdtemp(prefix=f"job{self._jobs}-", dir=self.scratch)
        if not self._ready:
            self.fork_spare(warm=False)
        pid, job_fd, reply_fd = self._ready.popleft()
        timeout = float(job.get("timeout_s", 10.0))
        deadline = time.monotonic() + timeout
        try:
            body = json.dumps({**job, "folder": folder}, separators=(",", ":")).encode("utf-8")
            _write_all(job_fd, HEADER.pack(len(body)) + body)
            return self._collect(reply_fd, deadline, timeout, pid, folder)
        except OSError:  # the process died before it took the job
            return self._crashed(pid, folder)
        finally:
            os.close(job_fd)
            os.close(reply_fd)

    def _job_process(self, job_fd: int, reply_fd: int, warm: bool) -> None:
        status = _FAILED
        try:
            _die_with_parent()
            # Never the zygote's stderr: what one job writes there would show in a later job's error.
            _redirect_stderr(os.devnull)
            os.chdir("/")
            if warm:
                json.dumps(self.runner.run({"code": _WARM_UP_CODE, "formats": ["brep"]}))
            apply_job_limits(self.memory_mb, self.max_output_bytes)
            syscalls.install(os.getpid())
            with os.fdopen(job_fd, "rb", buffering=0) as stream:
                job = read_frame(stream, max(16 * 1024 * 1024, self.max_request_bytes + 1024 * 1024))
            if job is None:
                os._exit(0)  # the zygote is shutting down
            os.chdir(job["folder"])
            _redirect_stderr(JOB_STDERR)  # its own file: read back only if this job crashes
            limit_cpu(float(job.get("timeout_s", 10.0)))
            body = json.dumps(self.runner.run(job), separators=(",", ":")).encode("utf-8")
            _write_all(reply_fd, HEADER.pack(len(body)) + body)
            status = 0
            # Wait to be killed: the teardown of this address space would compete with the caller
            # for the CPU just as it reads the reply. The zygote kills it once idle, or before the
            # next job starts, whichever comes first.
            time.sleep(3600)
        finally:
            os._exit(status)

    def _collect(self, fd: int, deadline: float, timeout: float, pid: int, folder: str) -> bytes:
        """The reply, or a failure the zygote saw; the job process is killed when this returns."""
        buffer = bytearray()
        expected: int | None = None
        failure: SandboxError | None = None
        while expected is None or len(buffer) < expected:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                failure = Timeout(
                    f"the code ran longer than {timeout:g} s and was stopped", detail={"timeout_s": timeout}
                )
                break
            ready, _, _ = select.select([fd], [], [], remaining)
            if not ready:
                continue
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                return self._crashed(pid, folder)
            buffer += chunk
            if expected is None and len(buffer) >= HEADER.size:
                (expected,) = HEADER.unpack_from(buffer)
                del buffer[: HEADER.size]
                if expected > self.max_reply_bytes:
                    failure = OutputTooLarge(
                        f"the output is {expected} bytes; the cap is {self.max_reply_bytes}",
                        detail={"bytes": expected},
                    )
                    break
        # Killed and reaped once the zygote is idle, and in every case before the next job starts
        # (``tidy``); the reply need not wait for the kernel to tear its address space down.
        self._finished.append(pid)
        if failure is not None:
            _kill(pid)  # a runaway stops now, not when the zygote is next idle
            return json.dumps({"ok": False, "error": failure.to_dict()["error"]}).encode("utf-8")
        return bytes(buffer)

    def _crashed(self, pid: int, folder: str) -> bytes:
        status, max_rss_kb = _reap(pid, time.monotonic() + 1.0)
        crash = _describe(status)
        # Out of memory, told apart from any other death: the process grew to its memory allowance.
        grown_mb = max(0, max_rss_kb - self.baseline_rss_kb) / 1024
        crash.update(max_rss_mb=round(max_rss_kb / 1024), memory_mb=self.memory_mb,
                     out_of_memory=self.memory_mb > 0 and grown_mb >= 0.75 * self.memory_mb,
                     stderr=_tail(os.path.join(folder, JOB_STDERR)))
        return json.dumps({"ok": False, "crashed": crash}).encode("utf-8")

    def kill_finished(self) -> None:
        for pid in self._finished:
            _kill(pid)

    def tidy(self) -> None:
        """End every earlier job process (kill, reap) and empty the scratch folder."""
        self.kill_finished()
        while self._finished:
            _reap(self._finished.pop(), None)
        for entry in list(self.scratch.iterdir()):
            _remove(entry)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _set_dumpable(flag: bool) -> None:
    if sys.platform == "linux":
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(4, int(flag), 0, 0, 0)  # PR_SET_DUMPABLE


def _die_with_parent() -> None:
    if sys.platform == "linux":
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(1, 9, 0, 0, 0)  # PR_SET_PDEATHSIG, SIGKILL


def _kill(pid: int) -> None:
    with contextlib.suppress(OSError):
        os.kill(pid, 9)


def _reap(pid: int, deadline: float | None) -> tuple[int | None, int]:
    """(wait status, peak resident size in KiB) of a job process; killed at ``deadline``."""
    while True:
        done, status, usage = os.wait4(pid, 0 if deadline is None else os.WNOHANG)
        if done:
            return status, int(usage.ru_maxrss)
        if deadline is not None and time.monotonic() > deadline:
            _kill(pid)
            deadline = None
            continue
        time.sleep(0.001)


def _max_rss_kb() -> int:
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) if resource is not None else 0


def _redirect_stderr(path: str) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        os.dup2(fd, 2)
        os.close(fd)


def _tail(path: str, limit: int = 2000) -> str:
    """The end of a crashed job's stderr file (untrusted: never followed through a link)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return ""
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return ""
        size = os.fstat(fd).st_size
        os.lseek(fd, max(0, size - limit), os.SEEK_SET)
        return os.read(fd, limit).decode("utf-8", "replace")
    finally:
        os.close(fd)


def _describe(status: int | None) -> dict[str, Any]:
    if status is None:
        return {"signal": None, "exit": None}
    if os.WIFSIGNALED(status):
        return {"signal": os.WTERMSIG(status), "exit": None}
    return {"signal": None, "exit": os.WEXITSTATUS(status)}


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        # A job may leave folders without write or search permission: give them back first.
        for root, dirs, _ in os.walk(path):
            for name in dirs:
                with contextlib.suppress(OSError):
                    os.chmod(os.path.join(root, name), 0o700)
        with contextlib.suppress(OSError):
            os.chmod(path, 0o700)
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(OSError):
            path.unlink()


def _serve_in_process(config: dict[str, Any], proto_in: Any, proto_out: Any) -> int:
    """Platforms without fork (Windows): run one job in this process; the pool then replaces it."""
    runner = Runner(int(config.get("max_output_bytes", 64 * 1024 * 1024)))
    write_frame(proto_out, {"ready": True, "pid": os.getpid(), "fork": False})
    job = read_frame(proto_in, int(config.get("max_request_bytes", 8 * 1024 * 1024)))
    if job is not None:
        write_frame(proto_out, runner.run(job))
    return 0


def main(argv: list[str] | None = None) -> int:
    config = json.loads((argv or sys.argv[1:] or ["{}"])[0])
    proto_in = os.fdopen(os.dup(0), "rb", buffering=0)
    proto_out = os.fdopen(os.dup(1), "wb", buffering=0)
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 0)
    os.dup2(devnull, 1)
    if not hasattr(os, "fork"):
        return _serve_in_process(config, proto_in, proto_out)
    zygote = Zygote(config)
    zygote.protocol_fds = (proto_in.fileno(), proto_out.fileno())
    import cadquery

    hello = {"ready": True, "pid": os.getpid(), "cadquery": cadquery.__version__}
    write_frame(proto_out, {**hello, "seccomp": syscalls.available()})
    max_request = int(config.get("max_request_bytes", 8 * 1024 * 1024))
    while True:
        # After a reply, a moment for the caller to take it before this process and the kernel
        # busy both cores; then fork spares while no job is waiting (a waiting job goes first),
        # and end the finished job process while the spare warms up.
        idle = not select.select([proto_in], [], [], IDLE_GRACE_S)[0]
        zygote.kill_finished()  # their teardown overlaps what comes next; reaped by tidy()
        while zygote.needs_spare() and not select.select([proto_in], [], [], 0)[0]:
            zygote.fork_spare()
        if idle and not select.select([proto_in], [], [], 0)[0]:
            zygote.tidy()
        job = read_frame(proto_in, max_request)
        if job is None:
            zygote.close()
            return 0
        write_frame_bytes(proto_out, zygote.run(job))


if __name__ == "__main__":
    raise SystemExit(main())
