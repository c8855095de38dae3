"""A warm sandbox worker: imports cadquery once, then runs one job per request frame.

Started by the pool as ``python -m model_runtime.sandbox.worker CONFIG_JSON`` in a fresh temporary
folder. Protocol: frames (see ``wire``) on the original stdin/stdout; the process's own fds 0 and 1
point at /dev/null so nothing the code or OCCT prints can corrupt the protocol. Limits: address
space (the warm baseline + ``memory_mb``), file size (0 while the code runs, the output cap while
the runtime exports), CPU seconds per job, process count and no core dumps.
"""

from __future__ import annotations

import builtins
import io
import json
import math
import os
import sys
import time
import traceback
import types
from pathlib import Path
from typing import Any

from model_runtime.sandbox.errors import (
    CodeRuntimeError,
    CodeSyntaxError,
    InvalidSolid,
    NoResult,
    OutputTooLarge,
    ResourceLimit,
    SandboxError,
)
from model_runtime.sandbox.policy import ALLOWED_BUILTINS, check_policy
from model_runtime.sandbox.wire import read_frame, write_frame

try:
    import resource
except ImportError:  # Windows: no rlimits; the pool's wall-clock kill still applies.
    resource = None  # type: ignore[assignment]

CODE_FILENAME = "<generated>"
MAX_STDOUT_CHARS = 64 * 1024
MAX_MESSAGE_CHARS = 2000
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


class _Limits:
    """The worker's rlimits; soft limits move between the code's phase and the runtime's phase."""

    def __init__(self, memory_mb: int, max_output_bytes: int):
        self.output_cap = max_output_bytes
        if resource is None:
            return
        import signal

        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # an oversize write fails with EFBIG instead
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        if memory_mb > 0 and hasattr(resource, "RLIMIT_AS"):
            limit = _address_space_bytes() + memory_mb * 1024 * 1024
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        resource.setrlimit(resource.RLIMIT_FSIZE, (max_output_bytes, max_output_bytes))
        if hasattr(resource, "RLIMIT_NPROC"):
            # Counts all of the user's tasks (threads too), so allow today's count plus a margin:
            # a fork bomb stops there. Root is exempt from this limit.
            limit = _user_task_count() + 64
            resource.setrlimit(resource.RLIMIT_NPROC, (limit, limit))

    def enter_code(self, timeout_s: float) -> None:
        if resource is None:
            return
        usage = resource.getrusage(resource.RUSAGE_SELF)
        used = usage.ru_utime + usage.ru_stime
        # A backstop for the parent's wall-clock kill; OCCT may use several threads, hence the slack.
        cpu = int(used + 2 * timeout_s + 2)
        resource.setrlimit(resource.RLIMIT_CPU, (cpu, resource.RLIM_INFINITY))
        resource.setrlimit(resource.RLIMIT_FSIZE, (0, self.output_cap))

    def enter_runtime(self) -> None:
        if resource is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (self.output_cap, self.output_cap))


def _address_space_bytes() -> int:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 2 * 1024**3


def _user_task_count() -> int:
    uid = os.getuid()
    count = 0
    try:
        for entry in os.scandir("/proc"):
            if entry.name.isdigit():
                try:
                    if entry.stat().st_uid == uid:
                        count += len(os.listdir(f"/proc/{entry.name}/task"))
                except OSError:
                    continue
    except OSError:
        return 4096
    return count


class Runner:
    """Runs jobs in this process; separate from the frame loop so it can be used and tested directly."""

    def __init__(self, memory_mb: int = 2048, max_output_bytes: int = 64 * 1024 * 1024, limits: bool = True):
        import cadquery as cq

        self.cq = cq
        self.max_output_bytes = max_output_bytes
        # Warm up the paths every job takes, so the first job is as fast as the others.
        warm = cq.Workplane("XY").box(1, 1, 1).faces(">Z").hole(0.5)
        self._measure(warm.val(), ("brep",), max_output_bytes)
        self.limits = _Limits(memory_mb, max_output_bytes) if limits else None

    def run(self, job: dict[str, Any]) -> dict[str, Any]:
        started = time.perf_counter()
        printer = _Printer()
        recycle = False
        try:
            result = self._run(job, printer)
            result["stdout"] = printer.text()
            result["elapsed_s"] = time.perf_counter() - started
            return {"ok": True, "result": result}
        except SandboxError as exc:
            error = exc
        except MemoryError:
            error, recycle = ResourceLimit("the code ran out of memory (the sandbox's memory limit)"), True
        except RecursionError:
            error, recycle = ResourceLimit("the code recursed too deeply"), True
        except Exception as exc:  # the runtime's own post-processing failed on an odd shape
            error = InvalidSolid(_short(f"the result could not be measured or exported: {exc}"))
        body = error.to_dict()["error"]
        body["line"] = error.line
        return {"ok": False, "error": body, "recycle": recycle, "stdout": printer.text()}

    def _run(self, job: dict[str, Any], printer: _Printer) -> dict[str, Any]:
        code = job["code"]
        check_policy(code)
        try:
            compiled = compile(code, CODE_FILENAME, "exec", dont_inherit=True)
        except SyntaxError as exc:
            raise CodeSyntaxError(f"invalid Python syntax: {exc.msg}", line=exc.lineno) from None
        except (RecursionError, MemoryError, ValueError) as exc:
            raise CodeSyntaxError(f"code cannot be compiled: {exc}") from None
        scope = _make_globals(self.cq, printer)
        if self.limits:
            self.limits.enter_code(float(job.get("timeout_s", 10.0)))
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
        finally:
            if self.limits:
                self.limits.enter_runtime()
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


def main(argv: list[str] | None = None) -> int:
    config = json.loads((argv or sys.argv[1:] or ["{}"])[0])
    proto_in = os.fdopen(os.dup(0), "rb", buffering=0)
    proto_out = os.fdopen(os.dup(1), "wb", buffering=0)
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 0)
    os.dup2(devnull, 1)
    runner = Runner(
        memory_mb=int(config.get("memory_mb", 2048)),
        max_output_bytes=int(config.get("max_output_bytes", 64 * 1024 * 1024)),
    )
    import cadquery

    write_frame(proto_out, {"ready": True, "pid": os.getpid(), "cadquery": cadquery.__version__})
    max_request = int(config.get("max_request_bytes", 8 * 1024 * 1024))
    while True:
        job = read_frame(proto_in, max_request)
        if job is None:
            return 0
        write_frame(proto_out, runner.run(job))


if __name__ == "__main__":
    raise SystemExit(main())
