"""A pool of warm sandbox workers: run generated CadQuery code, get one measured solid or a typed error.

Each worker is a zygote (``python -m model_runtime.sandbox.worker``) inside the operating system's
jail where the platform has one (``jail``): it imports cadquery once and forks a fresh, limited,
seccomp-filtered process for every job, so no state crosses jobs while warm latency stays. The pool
speaks JSON frames over pipes (no pickle crosses back from a process that ran untrusted code) and
treats every reply as untrusted: its text is made safe to carry before anyone prints or sends it.
A zygote enforces each job's time limit itself and stays warm; a worker that stops answering is
killed with its whole jail and replaced in the background while the others keep serving.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from collections import deque
from typing import Any

from model_runtime import protocol
from model_runtime.sandbox.errors import (
    OutputTooLarge,
    ResourceLimit,
    SandboxError,
    SandboxUnavailable,
    Timeout,
    Uncontained,
    WorkerCrashed,
    error_from_dict,
)
from model_runtime.sandbox.jail import (
    ALLOW_UNCONTAINED_ENV,
    JAIL_SCRATCH,
    Containment,
    containment,
    jail_argv,
    jail_env,
    uncontained_allowed,
)
from model_runtime.sandbox.policy import check_policy
from model_runtime.sandbox.result import ExecResult
from model_runtime.sandbox.wire import FrameTooLarge, read_frame, write_frame

EXPORT_FORMATS = ("brep", "step", "stl")
# The zygote stops a job at its timeout; this is how much longer the pool waits before it decides the
# zygote itself is stuck and kills the jail.
_REPLY_GRACE_S = 3.0
_MAX_START_FAILURES = 3
# Any one string of an error body from a worker (message, stderr lines) is cut to this.
_MAX_ERROR_CHARS = 4000


class _Died(Exception):
    """The worker's stdout closed: it exited, was killed or crashed."""


class _Worker:
    def __init__(self, config: dict[str, Any], max_frame_bytes: int, jailed: bool):
        self.workdir = tempfile.mkdtemp(prefix="cadsnap-sandbox-")
        command = [sys.executable, "-m", "model_runtime.sandbox.worker"]
        env = jail_env()
        self.jail_pidfd: int | None = None
        info_read, info_write = -1, -1
        if jailed:
            config = {**config, "scratch": JAIL_SCRATCH}
            info_read, info_write = os.pipe()
            argv = jail_argv(
                [*command, json.dumps(config)], scratch_bytes=_scratch_bytes(config), info_fd=info_write
            )
        else:
            # No jail: the strongest fallback is the same zygote in a private folder, with none of
            # the caller's environment but the path to this package.
            config = {**config, "scratch": self.workdir}
            env.update(HOME=self.workdir, TMPDIR=self.workdir)
            env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p and os.path.isdir(p))
            if os.name == "nt":
                env["SYSTEMROOT"] = os.environ.get("SYSTEMROOT", "")
            argv = [*command, json.dumps(config)]
        self.proc = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=self.workdir,
            env=env,
            start_new_session=(os.name == "posix"),
            pass_fds=(info_write,) if jailed else (),
        )
        if jailed:
            os.close(info_write)
            # A pidfd, not the number: it can never signal another process that reuses the pid.
            self.jail_pidfd = _open_pidfd(_read_jail_pid(info_read))
            threading.Thread(target=self._end_jail_with_bwrap, daemon=True, name="cadsnap-jail-watch").start()
        self.jobs = 0
        self.forks = True
        self.stderr_tail: deque[str] = deque(maxlen=30)
        self._replies: queue.Queue[dict[str, Any] | BaseException | None] = queue.Queue()
        self._max_frame_bytes = max_frame_bytes
        threading.Thread(target=self._read_replies, daemon=True, name="cadsnap-sandbox-reader").start()
        threading.Thread(target=self._drain_stderr, daemon=True, name="cadsnap-sandbox-stderr").start()

    def _end_jail_with_bwrap(self) -> None:
        # bubblewrap gone (crashed, killed): end the jail too, so its pipes close and the pool sees it.
        self.proc.wait()
        self._kill_jail()
        fd, self.jail_pidfd = self.jail_pidfd, None
        if fd is not None:
            os.close(fd)

    def _kill_jail(self) -> None:
        if self.jail_pidfd is not None:
            with contextlib.suppress(OSError):
                signal.pidfd_send_signal(self.jail_pidfd, signal.SIGKILL)

    def _read_replies(self) -> None:
        try:
            while True:
                frame = read_frame(self.proc.stdout, self._max_frame_bytes)  # type: ignore[arg-type]
                self._replies.put(frame)
                if frame is None:
                    return
        except FrameTooLarge as exc:
            self._replies.put(exc)
        except (OSError, ValueError) as exc:
            self._replies.put(exc)

    def _drain_stderr(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            for raw in self.proc.stderr:  # type: ignore[union-attr]
                self.stderr_tail.append(raw.decode("utf-8", "replace").rstrip())

    def wait_reply(self, timeout: float | None) -> dict[str, Any]:
        """The next frame; raises queue.Empty on timeout, _Died at end of stream."""
        reply = self._replies.get(timeout=timeout)
        if isinstance(reply, FrameTooLarge):
            raise OutputTooLarge(
                f"the worker's reply is {reply.size} bytes; the cap is {self._max_frame_bytes}"
            )
        if reply is None or isinstance(reply, BaseException):
            raise _Died(str(reply or "end of stream"))
        if not isinstance(reply, dict):
            raise _Died(f"the worker sent a {type(reply).__name__}, not a message")
        return reply

    def send(self, message: dict[str, Any]) -> None:
        try:
            write_frame(self.proc.stdin, message)  # type: ignore[arg-type]
        except (OSError, ValueError) as exc:
            raise _Died(f"cannot write to the worker: {exc}") from None

    def kill(self) -> None:
        # The jail's first process: the whole PID namespace (zygote, job processes) ends with it.
        self._kill_jail()
        if self.proc.poll() is None:
            with contextlib.suppress(OSError):
                if os.name == "posix":
                    os.killpg(self.proc.pid, signal.SIGKILL)
                else:
                    self.proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=5)
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            with contextlib.suppress(OSError):
                stream.close()  # type: ignore[union-attr]
        shutil.rmtree(self.workdir, ignore_errors=True)

    def exit_description(self) -> tuple[int | None, str]:
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=2)
        code = self.proc.returncode
        if code is None:
            return None, "still running"
        if code < 0:
            try:
                return code, signal.Signals(-code).name
            except ValueError:
                return code, f"signal {-code}"
        return code, f"exit status {code}"


def _read_jail_pid(fd: int, timeout_s: float = 30.0) -> int | None:
    """The ``child-pid`` bubblewrap reports on its info fd (closed once written), or None."""
    import select

    data = b""
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            if not select.select([fd], [], [], max(0.0, deadline - time.monotonic()))[0]:
                break
            chunk = os.read(fd, 4096)
            if not chunk:
                break
            data += chunk
    finally:
        os.close(fd)
    try:
        return int(json.loads(data)["child-pid"])
    except (ValueError, KeyError, TypeError):
        return None


@functools.cache
def _warn_uncontained() -> None:
    """Once per process, in the user's words: generated code runs uncontained by the user's choice."""
    found = containment()
    print(
        f"CadSnap sandbox: {found.summary} Generated code runs anyway, with your user's rights, because "
        f"you allowed it ({ALLOW_UNCONTAINED_ENV}). {found.fix}".rstrip(),
        file=sys.stderr,
        flush=True,
    )


def refusal() -> Uncontained:
    """The error every job gets where no jail works and the user has not opted in."""
    found = containment()
    return Uncontained(
        f"{found.summary} Fix: {found.fix} To run generated code without containment anyway (with "
        f"your user's rights), set {ALLOW_UNCONTAINED_ENV}=1 or pass --allow-uncontained.",
        detail={"fix": found.fix, "mechanism": found.mechanism},
    )


def _open_pidfd(pid: int | None) -> int | None:
    if pid is None:
        return None
    try:
        return os.pidfd_open(pid)
    except OSError:
        return None


def _scratch_bytes(config: dict[str, Any]) -> int:
    # Room for a job's exports (written to scratch before they are read back) and a little more.
    return 2 * int(config["max_output_bytes"]) + 64 * 1024 * 1024


def _kill_all(workers: set[_Worker]) -> None:
    for worker in list(workers):
        worker.kill()


class SandboxPool:
    """Run untrusted CadQuery code in warm, limited, killable worker processes. Thread-safe.

    >>> with SandboxPool(workers=2, timeout_s=10.0) as pool:
    ...     res = pool.run("import cadquery as cq\\nresult = cq.Workplane().box(1, 2, 3)")
    ...     res.volume
    6.0

    ``memory_mb`` is the address space a job may add on top of a warm worker's baseline.
    ``max_output_bytes`` caps BREP plus exports per job. Zygotes are replaced after
    ``max_jobs_per_worker`` jobs. ``jail``: None uses the platform's jail when it works
    (``containment()``), False runs without one. Where no jail works, generated code does not run
    (every job raises Uncontained, and no worker starts) unless ``allow_uncontained`` (default: the
    ``CADSNAP_ALLOW_UNCONTAINED`` variable) says the user chose otherwise. ``language_guard=False``
    turns off the code policy and the restricted builtins: only for tests that prove the jail holds
    against all of Python.
    """

    def __init__(
        self,
        workers: int = 2,
        timeout_s: float = 10.0,
        memory_mb: int = 2048,
        *,
        max_output_bytes: int = 64 * 1024 * 1024,
        max_jobs_per_worker: int = 1000,
        start_timeout_s: float = 120.0,
        jail: bool | None = None,
        language_guard: bool = True,
        allow_uncontained: bool | None = None,
        max_request_bytes: int = 8 * 1024 * 1024,
    ):
        if workers < 1:
            raise ValueError("a SandboxPool needs at least one worker")
        if timeout_s <= 0:
            raise ValueError("timeout_s must be positive")
        self.size = workers
        self.timeout_s = float(timeout_s)
        self.memory_mb = int(memory_mb)
        self.max_output_bytes = int(max_output_bytes)
        self.max_jobs_per_worker = int(max_jobs_per_worker)
        self.start_timeout_s = float(start_timeout_s)
        self.jailed = containment().contained if jail is None else bool(jail)
        allowed = uncontained_allowed() if allow_uncontained is None else bool(allow_uncontained)
        # jail=False is a caller's explicit choice (tests of the fallback); jail=None decides here.
        self.refused = jail is None and not self.jailed and not allowed
        if jail is None and not self.jailed and allowed:
            _warn_uncontained()
        self.language_guard = bool(language_guard)
        self._config = {
            "memory_mb": self.memory_mb,
            "max_output_bytes": self.max_output_bytes,
            "language_guard": self.language_guard,
            "max_request_bytes": int(max_request_bytes),
        }
        self.max_request_bytes = int(max_request_bytes)
        # Base64 STL plus JSON framing can exceed the byte cap; the worker enforces the exact cap.
        self._max_frame_bytes = 2 * self.max_output_bytes + 1024 * 1024
        self._cond = threading.Condition()
        self._idle: list[_Worker] = []
        self._workers: set[_Worker] = set()
        self._starting = 0
        self._start_failures = 0
        self._last_start_error = ""
        self._closed = False
        self.restarts = 0
        self.jobs = 0
        self._finalizer = weakref.finalize(self, _kill_all, self._workers)
        for _ in range(0 if self.refused else workers):
            self._spawn_async()

    # -- lifecycle -------------------------------------------------------------------------------

    def __enter__(self) -> SandboxPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Kill every worker; later calls to run() raise SandboxUnavailable."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._finalizer()

    def wait_ready(self, timeout: float | None = None) -> bool:
        """Block until every worker is warm (True) or the timeout passes (False)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while len(self._idle) < self.size:
                if self._closed or self.refused or self._start_failures >= _MAX_START_FAILURES:
                    return False
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._cond.wait(remaining)
            return True

    def containment(self) -> dict[str, Any]:
        """What contains this pool's code: the protocol's ``sandbox`` object (health, info, doctor)."""
        platform = containment()
        if self.jailed or not platform.contained:
            return {**platform.to_dict(), "refused": self.refused}
        return Containment(
            False,
            "fresh process per job, rlimits, seccomp filter",
            "This sandbox was started without its jail, so generated code runs with your user's rights.",
            "Start it with the default settings (jail=None).",
        ).to_dict() | {"refused": False}

    def stats(self) -> dict[str, Any]:
        with self._cond:
            return {
                "workers": self.size,
                "idle": len(self._idle),
                "busy": len(self._workers) - len(self._idle),
                "starting": self._starting,
                "restarts": self.restarts,
                "jobs": self.jobs,
            }

    def _spawn_async(self) -> None:
        with self._cond:
            if self._closed:
                return
            self._starting += 1
        threading.Thread(target=self._spawn, daemon=True, name="cadsnap-sandbox-spawn").start()

    def _spawn(self) -> None:
        worker: _Worker | None = None
        try:
            worker = _Worker(self._config, self._max_frame_bytes, self.jailed)
            with self._cond:
                self._workers.add(worker)
            hello = worker.wait_reply(self.start_timeout_s)
            if not hello.get("ready"):
                raise _Died(f"unexpected first message {protocol.safe_text(repr(hello), 200)}")
            worker.forks = hello.get("fork", True) is not False
        except (_Died, queue.Empty, OSError, SandboxError) as exc:
            detail = ""
            if worker is not None:
                worker.kill()
                detail = "\n".join(list(worker.stderr_tail)[-5:])
            with self._cond:
                if worker is not None:
                    self._workers.discard(worker)
                self._starting -= 1
                self._start_failures += 1
                self._last_start_error = f"{exc or type(exc).__name__}; worker stderr: {detail or '(empty)'}"
                retry = not self._closed and self._start_failures < _MAX_START_FAILURES
                self._cond.notify_all()
            if retry:
                time.sleep(0.5)
                self._spawn_async()
            return
        with self._cond:
            self._starting -= 1
            if self._closed:
                self._workers.discard(worker)
                worker.kill()
                return
            self._start_failures = 0
            self._idle.append(worker)
            self._cond.notify_all()

    def _acquire(self) -> _Worker:
        with self._cond:
            while True:
                if self._closed:
                    raise SandboxUnavailable("the sandbox pool is closed")
                if self._idle:
                    return self._idle.pop()
                if self._start_failures >= _MAX_START_FAILURES and not self._starting:
                    raise SandboxUnavailable(
                        "sandbox workers cannot start (is cadquery installed in this environment? "
                        f"`python -m model_runtime doctor` checks): {self._last_start_error}"
                    )
                self._cond.wait()

    def _release(self, worker: _Worker) -> None:
        with self._cond:
            if self._closed:
                self._workers.discard(worker)
            else:
                self._idle.append(worker)
                self._cond.notify()
                return
        worker.kill()

    def _replace(self, worker: _Worker) -> None:
        """Drop a worker and start its replacement; neither blocks the caller."""
        with self._cond:
            self._workers.discard(worker)
            self.restarts += 1
        threading.Thread(target=worker.kill, daemon=True, name="cadsnap-sandbox-kill").start()
        self._spawn_async()

    # -- running code ----------------------------------------------------------------------------

    def run(
        self,
        code: str,
        timeout_s: float | None = None,
        formats: tuple[str, ...] | list[str] = ("brep",),
        *,
        max_output_bytes: int | None = None,
        feature_plan: bool = False,
    ) -> ExecResult:
        """Run ``code`` and return its one solid, or raise a SandboxError subclass saying why not.

        ``timeout_s`` is wall-clock time for the whole job (run, check, export); ``formats`` picks
        exports among "brep", "step" and "stl"; ``feature_plan`` asks for the traced feature plan.
        """
        if self.refused:
            raise refusal()
        if self.language_guard:
            check_policy(code)
        timeout = self.timeout_s if timeout_s is None else float(timeout_s)
        if not timeout > 0:
            raise ValueError("timeout_s must be positive")
        wanted = tuple(dict.fromkeys(str(f).lower().lstrip(".") for f in formats))
        unknown = [f for f in wanted if f not in EXPORT_FORMATS]
        if unknown:
            raise ValueError(f"unknown export format(s) {unknown}; choose among {list(EXPORT_FORMATS)}")
        cap = (
            self.max_output_bytes
            if max_output_bytes is None
            else min(int(max_output_bytes), self.max_output_bytes)
        )
        job = {
            "code": code,
            "timeout_s": timeout,
            "formats": list(wanted),
            "max_output_bytes": cap,
            "feature_plan": bool(feature_plan),
        }

        too_long = "the code ran longer than {timeout:g} s and was stopped"
        reply, elapsed = self._exchange(job, timeout, too_long)
        if not reply.get("ok"):
            error = reply.get("error")
            body = protocol.safe_json(error, _MAX_ERROR_CHARS) if isinstance(error, dict) else {}
            raise error_from_dict(body)
        try:
            data = dict(reply["result"])
            data["elapsed_s"] = elapsed
            data["stdout"] = protocol.safe_text(data.get("stdout", ""))
            return ExecResult.from_dict(data)
        except (KeyError, TypeError, ValueError) as exc:
            raise WorkerCrashed(f"the sandbox sent a malformed result ({exc})") from None

    def run_shape(self, name: str, data: bytes, timeout_s: float | None = None,
                  time_budget_s: float = 60.0, careful: bool = False) -> dict[str, Any]:
        """Read and recognise an untrusted shape file in a job process (``model_runtime/shapes/job.py``).

        Returns the job's reply, ``{"ok": True, "result": {...}}`` or ``{"ok": False, "error": {...}}``
        for input it refuses; raises a SandboxError when the job process crashed or ran out of time.
        ``careful`` asks the recogniser to leave out the OCC operations that can crash a process (trial
        fillets): the second try after a crash.
        """
        import base64

        timeout = self.timeout_s if timeout_s is None else float(timeout_s)
        job = {
            "kind": "shape", "name": str(name), "data": base64.b64encode(data).decode("ascii"),
            "time_budget_s": float(time_budget_s), "timeout_s": timeout,
            "max_output_bytes": self.max_output_bytes, "careful": bool(careful),
        }  # fmt: skip
        if len(job["data"]) > self.max_request_bytes - 4096:
            raise OutputTooLarge(
                f"the file is {len(data) / 1e6:.1f} MB; the sandbox takes files up to "
                f"{(self.max_request_bytes - 4096) * 3 / 4 / 1e6:.0f} MB"
            )
        too_long = "reading the shape took longer than {timeout:g} s and was stopped"
        reply, _elapsed = self._exchange(job, timeout, too_long)
        if not reply.get("ok") and isinstance(reply.get("error"), dict) and reply["error"].get("shape"):
            reply["error"] = protocol.safe_json(reply["error"], _MAX_ERROR_CHARS)
            return reply
        if not reply.get("ok"):
            raise error_from_dict(protocol.safe_json(reply.get("error") or {}, _MAX_ERROR_CHARS))
        return protocol.safe_json(reply, 4 * 1024 * 1024)

    def _exchange(self, job: dict[str, Any], timeout: float, too_long: str) -> tuple[dict[str, Any], float]:
        """Send ``job`` to a warm worker and take its reply: (reply, seconds). The one loop every kind of
        job goes through: refusal without a jail, the worker's time limit (``too_long`` formats with
        ``timeout``), a dead or stuck worker replaced, a crashed job process explained."""
        if self.refused:
            raise refusal()
        worker = self._acquire()
        started = time.perf_counter()
        try:
            worker.send(job)
            reply = worker.wait_reply(timeout + _REPLY_GRACE_S)
        except queue.Empty:
            self._replace(worker)
            raise Timeout(too_long.format(timeout=timeout), detail={"timeout_s": timeout}) from None
        except _Died:
            code_, how = worker.exit_description()
            self._replace(worker)
            raise self._death_error(code_, how, worker) from None
        except BaseException:  # OutputTooLarge included: the worker's stream is no longer in step
            self._replace(worker)
            raise
        elapsed = time.perf_counter() - started
        worker.jobs += 1
        with self._cond:
            self.jobs += 1
        if not worker.forks or worker.jobs >= self.max_jobs_per_worker:
            self._replace(worker)
        else:
            self._release(worker)
        if isinstance(reply.get("crashed"), dict):
            raise self._crash_error(reply["crashed"])
        return reply, elapsed

    @staticmethod
    def _crash_error(crash: dict[str, Any]) -> SandboxError:
        """A job process that died before answering; its zygote is fine and stays warm."""
        sig = crash.get("signal")
        detail = {k: protocol.safe_json(crash.get(k), _MAX_ERROR_CHARS)
                  for k in ("max_rss_mb", "memory_mb", "stderr") if crash.get(k) not in (None, "")}
        if sig == getattr(signal, "SIGXCPU", None):
            return ResourceLimit("the code used more CPU time than allowed and was stopped", detail=detail)
        try:
            how = signal.Signals(int(sig)).name if sig is not None else f"exit status {crash.get('exit')}"
        except (ValueError, TypeError):
            how = f"signal {sig}"
        detail["exit"] = how
        if crash.get("out_of_memory"):
            return ResourceLimit(
                f"the code ran out of memory: it grew to {crash.get('max_rss_mb')} MB, and a job may add "
                f"{crash.get('memory_mb')} MB (it ended with {how})",
                detail=detail,
            )
        if sig == getattr(signal, "SIGKILL", None):
            return WorkerCrashed(
                f"the CadQuery process was killed (SIGKILL) while running this code, not for its memory "
                f"limit (it used {crash.get('max_rss_mb')} MB); the system may be short of memory",
                detail=detail,
            )
        return WorkerCrashed(f"the CadQuery process crashed ({how}) while running this code", detail=detail)

    @staticmethod
    def _death_error(code: int | None, how: str, worker: _Worker) -> SandboxError:
        detail = {"exit": how, "stderr": "\n".join(list(worker.stderr_tail)[-5:])}
        if code is not None and code < 0:
            sig = -code
            if sig == getattr(signal, "SIGXCPU", None):
                return ResourceLimit(
                    "the code used more CPU time than allowed and was stopped", detail=detail
                )
            if sig == getattr(signal, "SIGKILL", None):
                return ResourceLimit(
                    "the worker was killed, most likely for running out of memory", detail=detail
                )
        return WorkerCrashed(f"the CadQuery worker crashed ({how}) while running this code", detail=detail)
