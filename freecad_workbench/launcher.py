"""Finding, starting and stopping a local runtime, and the commands that install one. No FreeCAD.

The workbench never imports the runtime: it runs ``<interpreter> -m model_runtime serve`` as a child
process, waits for ``/v1/health``, and stops the child when FreeCAD exits.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from model_runtime import protocol

from .client import ClientError, RuntimeClient, RuntimeUnreachable
from .preferences import Preferences

MIN_RUNTIME_PYTHON = (3, 11)


class LauncherError(Exception):
    """The runtime cannot be found, installed or started; the message says what to do."""


class RuntimeNotInstalled(LauncherError):
    pass


class RuntimeStartFailed(LauncherError):
    pass


def addon_root() -> Path:
    """The add-on folder (``Mod/CadSnap``): the repository the Addon Manager installed."""
    return Path(__file__).resolve().parent.parent


def default_venv_dir() -> Path:
    """Where "Set up runtime" creates the runtime's virtual environment."""
    return protocol.cache_dir() / "runtime-venv"


def venv_python(venv_dir: Path) -> Path:
    if sys.platform == "win32":
        return venv_dir / "Scripts" / "python.exe"
    return venv_dir / "bin" / "python"


def runtime_interpreter(prefs: Preferences) -> Path | None:
    """The configured interpreter, else the set-up venv's, else None (nothing installed yet)."""
    if prefs.interpreter:
        return Path(prefs.interpreter).expanduser()
    candidate = venv_python(default_venv_dir())
    return candidate if candidate.exists() else None


def python_version(executable: str | Path, timeout_s: float = 20.0) -> tuple[int, int] | None:
    """(major, minor) of a Python executable, or None when it does not run."""
    try:
        out = subprocess.run([str(executable), "-c", "import sys; print(*sys.version_info[:2])"],
                             capture_output=True, text=True, timeout=timeout_s, check=True)
        major, minor = out.stdout.split()
        return int(major), int(minor)
    except (OSError, subprocess.SubprocessError, ValueError):
        return None


def find_base_python(explicit: str = "") -> Path:
    """A system Python >= 3.11 to create the runtime's venv with (FreeCAD's own is older or embedded)."""
    names = [explicit] if explicit else ["python3.13", "python3.12", "python3.11", "python3", "python", "py"]
    for name in names:
        path = shutil.which(name) or (name if name and Path(name).exists() else None)
        if path and (python_version(path) or (0, 0)) >= MIN_RUNTIME_PYTHON:
            return Path(path)
    wanted = ".".join(map(str, MIN_RUNTIME_PYTHON))
    raise RuntimeNotInstalled(f"No Python {wanted} or newer was found. Install Python {wanted}+ "
                              "(python.org or your package manager), then run Set up runtime again.")


def setup_commands(base_python: Path, venv_dir: Path, source: Path | str, extras: str = "",
                   build_llama: bool = True) -> list[list[str]]:
    """The steps of "Set up runtime": make the venv, install the runtime from ``source`` (the add-on
    folder, a wheel or a requirement), then build the patched llama.cpp wheel for CPU inference."""
    python = str(venv_python(venv_dir))
    target = f"{source}[{extras}]" if extras else str(source)
    steps = [
        [str(base_python), "-m", "venv", str(venv_dir)],
        [python, "-m", "pip", "install", "--progress-bar", "off", "-U", "pip", "wheel"],
        [python, "-m", "pip", "install", "--progress-bar", "off", target],
    ]
    if build_llama:
        steps.append([python, "-m", "model_runtime", "setup"])
    return steps


def serve_command(interpreter: Path, prefs: Preferences) -> list[str]:
    """``python -m model_runtime serve`` with the host, port, backend and model from the preferences."""
    command = [str(interpreter), "-m", "model_runtime", "serve"]
    command += ["--host", prefs.host, "--port", str(prefs.port)]
    if prefs.backend != "auto":
        command += ["--backend", prefs.backend]
    if prefs.model_path:
        command += ["--model", prefs.model_path]
    if prefs.mmproj_path:
        command += ["--mmproj", prefs.mmproj_path]
    if prefs.adapter_path:
        command += ["--adapter", prefs.adapter_path]
    if prefs.backend == "remote" and prefs.remote_url:
        command += ["--remote-url", prefs.remote_url]
    if prefs.allow_uncontained:
        command += ["--allow-uncontained"]
    return command


class RuntimeProcess:
    """A runtime the workbench started: its child process and log file."""

    def __init__(self, command: list[str], log_path: Path, env: dict[str, str] | None = None) -> None:
        self.command = command
        self.log_path = log_path
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(log_path, "wb")  # noqa: SIM115 - lives as long as the child; one start per log
        flags = subprocess.CREATE_NEW_PROCESS_GROUP if sys.platform == "win32" else 0
        try:
            # Same process group as FreeCAD: if FreeCAD is killed with its group, the runtime goes too.
            self.process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=self._log,
                                            stderr=subprocess.STDOUT, env=env, creationflags=flags)
        except OSError as error:
            self._log.close()
            raise RuntimeStartFailed(f"Could not start the runtime ({error}). Check the interpreter in "
                                     "Preferences > CadSnap, or run Set up runtime.") from None

    @property
    def running(self) -> bool:
        return self.process.poll() is None

    def log_tail(self, lines: int = 15) -> str:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, grace_s: float = 5.0) -> None:
        if self.running:
            self.process.terminate()
            try:
                self.process.wait(grace_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(grace_s)
        self._log.close()


class RuntimeManager:
    """Makes sure a runtime answers: reuses one that does, else starts the configured interpreter.

    Thread-safe; ``ensure`` blocks (call it from a worker thread) and ``stop`` is registered to run when
    FreeCAD exits.
    """

    def __init__(self, log_dir: Path | None = None) -> None:
        self.log_dir = log_dir or protocol.cache_dir() / "logs"
        self.process: RuntimeProcess | None = None
        self._lock = threading.Lock()

    def client(self, prefs: Preferences) -> RuntimeClient:
        return RuntimeClient(prefs.runtime_url, timeout_s=prefs.connect_timeout_s)

    def ensure(self, prefs: Preferences, on_status: Callable[[str], None] = lambda _: None,
               cancel: threading.Event | None = None) -> tuple[RuntimeClient, dict]:
        """A client of a healthy runtime and its health answer; starts one if allowed and needed.
        A runtime this manager started with other settings (URL, backend, model) is restarted."""
        client = self.client(prefs)
        with self._lock:
            wanted = self._wanted_command(prefs)
            if self.process is not None and self.process.running and wanted != self.process.command:
                on_status("Restarting the runtime with the new settings…")
                self.process.stop()
                self.process = None
            try:
                return client, client.health()
            except RuntimeUnreachable:
                pass
            if self.process is not None and self.process.running:
                on_status("Waiting for the runtime to start…")
                return client, self._wait(client, prefs, on_status, cancel)
            if not (prefs.start_runtime and prefs.is_local):
                raise RuntimeUnreachable(f"No CadSnap runtime answers at {prefs.runtime_url}. Start it "
                                         "with `python -m model_runtime serve`, or turn on \"Start the "
                                         "runtime when needed\" in Preferences > CadSnap.")
            if wanted is None:
                raise RuntimeNotInstalled("No runtime is installed. Run CadSnap > Set up runtime, or set "
                                          "the runtime's Python in Preferences > CadSnap.")
            on_status(f"Starting the runtime ({wanted[0]})…")
            self.process = RuntimeProcess(wanted, self.log_dir / "runtime.log", env=_child_env())
            return client, self._wait(client, prefs, on_status, cancel)

    @staticmethod
    def _wanted_command(prefs: Preferences) -> list[str] | None:
        if not (prefs.start_runtime and prefs.is_local):
            return None
        interpreter = runtime_interpreter(prefs)
        return serve_command(interpreter, prefs) if interpreter is not None else None

    def _wait(self, client: RuntimeClient, prefs: Preferences, on_status: Callable[[str], None],
              cancel: threading.Event | None) -> dict:
        deadline = time.monotonic() + prefs.startup_timeout_s
        started = time.monotonic()
        while time.monotonic() < deadline:
            if cancel is not None and cancel.is_set():
                raise RuntimeStartFailed("Cancelled while the runtime was starting.")
            if self.process is not None and not self.process.running:
                tail = self.process.log_tail()
                code = self.process.process.returncode
                self.process = None
                raise RuntimeStartFailed(f"The runtime exited (code {code}) while starting:\n{tail}")
            try:
                return client.health(timeout_s=2.0)
            except RuntimeUnreachable:
                on_status(f"Starting the runtime… {time.monotonic() - started:.0f} s")
            except ClientError as error:
                # Answering but unhealthy (e.g. 503 while loading): keep waiting.
                on_status(f"Runtime is starting: {error.message}")
            time.sleep(0.25)
        raise RuntimeStartFailed(f"The runtime did not answer within {prefs.startup_timeout_s:.0f} s. "
                                 f"Its log: {self.log_dir / 'runtime.log'}")

    def stop(self) -> None:
        """Stop the runtime this manager started (a runtime started by someone else is left alone)."""
        with self._lock:
            if self.process is not None:
                self.process.stop()
                self.process = None


def _child_env() -> dict[str, str]:
    # FreeCAD sets PYTHONHOME/PYTHONPATH for its embedded interpreter; the runtime's venv must not see them.
    env = {key: value for key, value in os.environ.items() if key not in ("PYTHONHOME", "PYTHONPATH")}
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def run_steps(steps: list[list[str]], on_line: Callable[[str], None],
              cancel: threading.Event | None = None, env: dict[str, str] | None = None) -> None:
    """Run set-up commands one after another, passing every output line to ``on_line``.
    Raises LauncherError naming the step that failed; a set cancel event stops the current step."""
    for number, command in enumerate(steps, 1):
        on_line(f"[{number}/{len(steps)}] {' '.join(command)}")
        try:
            process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                       stderr=subprocess.STDOUT, text=True, errors="replace", bufsize=1,
                                       env=env or _child_env())
        except OSError as error:
            raise LauncherError(f"Step {number} could not start: {error}") from None
        watcher = None
        if cancel is not None:
            # Stops a step that prints nothing for a long time (a compiler) as soon as cancel is set.
            watcher = threading.Thread(target=_kill_on_cancel, args=(process, cancel), daemon=True)
            watcher.start()
        assert process.stdout is not None
        for line in process.stdout:
            on_line(line.rstrip())
        code = process.wait()
        if cancel is not None and cancel.is_set():
            raise LauncherError("Set-up cancelled.")
        if code != 0:
            raise LauncherError(f"Step {number} failed (exit code {code}): {' '.join(command)}")


def _kill_on_cancel(process: subprocess.Popen, cancel: threading.Event) -> None:
    while process.poll() is None:
        if cancel.wait(0.2):
            process.terminate()
            return
