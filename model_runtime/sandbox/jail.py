"""The operating-system boundary around sandbox workers: bubblewrap on Linux, nothing elsewhere.

Why bubblewrap: it is the distribution's own, well-reviewed tool (Flatpak's sandbox), it starts in
~10 ms, and one command line gives every namespace we need. Hand-written unshare/mount/pivot_root
code would be the same thing with fewer eyes on it. What it costs: one apt package, and a jail
whose file system is an allow-list of what Python and CadQuery read.

Inside the jail a worker has:
- no network (its own empty network namespace; the job processes' seccomp filter also refuses
  ``socket``);
- its own PID, IPC, UTS and cgroup namespaces: it cannot see or signal FreeCAD, the server or any
  other process of the user;
- a read-only file system holding only /usr, a few loader and font files from /etc, the Python
  installation, its site-packages and CadSnap's ``model_runtime`` package, plus one size-limited
  tmpfs at /scratch (``/tmp`` links there); the user's home, the token, other repositories are
  simply not there. The scratch folder is not /tmp itself: a tmpfs mounted there would hide an
  interpreter or venv that lives under /tmp (a clone there, as CI and new users make);
- an unprivileged uid: when the runtime runs as root, the worker drops to nobody (65534) with
  ``setpriv`` before Python starts, with every capability set emptied, the bounding set included
  (setpriv needs CAP_SETPCAP for that, so the jail keeps it until then); as a normal user,
  bubblewrap's user namespace maps the user to 65534 with no capabilities;
- no new privileges (set by bubblewrap, and again by setpriv);
- a clean environment: none of the caller's variables (API keys among them) cross into the jail.

``containment()`` starts one jail and checks from inside what a job would have (uid, every capability
set, no new privileges, a writable scratch folder, the package importable). Where that fails (macOS,
Windows, a Linux without bubblewrap or without user namespaces) it says why in one sentence with the
fix, and generated code does not run unless the user opts in knowingly (``CADSNAP_ALLOW_UNCONTAINED=1``,
``--allow-uncontained``, or the workbench preference): then the pool falls back to what the platform
has, fresh forked processes per job with rlimits and, on Linux, the seccomp filter.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

NOBODY = 65534
# Where the jail sees CadSnap's package; PYTHONPATH points there.
JAIL_PACKAGE_ROOT = "/opt/cadsnap"
JAIL_SCRATCH = "/scratch"
# Set (to 1, true or yes) to run generated code even where no jail can start: the user's informed choice.
ALLOW_UNCONTAINED_ENV = "CADSNAP_ALLOW_UNCONTAINED"
# Files under /etc that the dynamic loader, fontconfig (CadQuery's text()) and time zones read.
_ETC_FILES = ("ld.so.cache", "ld.so.conf", "ld.so.conf.d", "fonts", "alternatives", "localtime")
_INSTALL_HINT = (
    "Install bubblewrap (Debian/Ubuntu: sudo apt install bubblewrap; Fedora: sudo dnf install bubblewrap)."
)


@dataclass(frozen=True)
class Containment:
    """What stands between generated code and the user's machine on this platform."""

    contained: bool
    mechanism: str
    summary: str
    fix: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def uncontained_allowed() -> bool:
    """Whether the user has opted in to running generated code without operating-system containment."""
    return os.environ.get(ALLOW_UNCONTAINED_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def _package_dir() -> Path:
    return Path(__file__).resolve().parents[1]


def _python_dirs() -> list[Path]:
    """Directories the worker's Python needs: the installation, the venv, extra site-packages."""
    dirs = {Path(p).resolve() for p in (sys.base_prefix, sys.base_exec_prefix, sys.prefix, sys.exec_prefix)}
    dirs.add(Path(sys.executable).resolve().parent)
    for entry in sys.path:
        path = Path(entry or ".").resolve()
        # Only installed packages: the caller's source trees, tests and working folder stay out.
        if path.name in ("site-packages", "dist-packages") and path.is_dir():
            dirs.add(path)
    # Keep the outermost of nested directories; /usr is bound whole anyway.
    kept: list[Path] = []
    for path in sorted(dirs, key=lambda p: len(p.parts)):
        inside = any(path.is_relative_to(k) for k in kept) or path.is_relative_to("/usr")
        if path.is_dir() and not inside:
            kept.append(path)
    return kept


def _ensure_parents(args: list[str], dest: Path, made: set[Path]) -> None:
    # bubblewrap creates missing parents as 0700 root when it runs as root, which nobody cannot
    # traverse; make them 0755 first.
    for parent in reversed(dest.parents):
        if parent == Path("/") or parent in made:
            continue
        made.add(parent)
        args += ["--perms", "0755", "--dir", str(parent)]


def jail_argv(command: list[str], *, scratch_bytes: int, info_fd: int | None = None) -> list[str]:
    """``command`` wrapped in bubblewrap (see the module docstring for what the jail holds).

    ``info_fd``: bubblewrap writes ``{"child-pid": N, ...}`` there, the jail's first process; killing
    it ends every process in the jail's PID namespace.
    """
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        raise FileNotFoundError("bubblewrap (bwrap) is not installed")
    args = [bwrap, "--ro-bind", "/usr", "/usr"]
    if info_fd is not None:
        args += ["--info-fd", str(info_fd)]
    for name in ("bin", "sbin", "lib", "lib32", "lib64", "libx32"):
        host = Path("/") / name
        if host.is_symlink():
            args += ["--symlink", os.readlink(host), str(host)]
        elif host.is_dir():
            args += ["--ro-bind", str(host), str(host)]
    made: set[Path] = set()
    _ensure_parents(args, Path("/etc/x"), made)
    for name in _ETC_FILES:
        args += ["--ro-bind-try", f"/etc/{name}", f"/etc/{name}"]
    bound = _python_dirs()
    clash = [str(p) for p in bound if p.is_relative_to(JAIL_SCRATCH) or p.is_relative_to("/proc")
             or p.is_relative_to("/dev")]
    if clash:
        raise JailError(
            f"the runtime's Python lives under {clash[0]}, where the jail mounts its own folders",
            "Install the runtime's environment somewhere else (e.g. your home folder).",
        )
    for path in bound:
        _ensure_parents(args, path, made)
        args += ["--ro-bind", str(path), str(path)]
    package = Path(JAIL_PACKAGE_ROOT) / "model_runtime"
    _ensure_parents(args, package, made)
    args += ["--ro-bind", str(_package_dir()), str(package)]
    if not any(p.is_relative_to("/tmp") for p in bound):
        # Code and libraries that write to /tmp get the job's scratch; where the runtime itself lives
        # under /tmp, /tmp is the read-only folder that holds it and TMPDIR points to scratch.
        args += ["--symlink", JAIL_SCRATCH, "/tmp"]
    args += [
        "--proc", "/proc",
        "--dev", "/dev",
        "--perms", "1777", "--size", str(int(scratch_bytes)), "--tmpfs", JAIL_SCRATCH,
        "--remount-ro", "/",
        "--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try",
        # No --die-with-parent: its signal fires when the *thread* that started the jail ends, and
        # the pool starts workers from short-lived threads. A zygote exits when its stdin closes.
        "--new-session",
        "--chdir", JAIL_SCRATCH,
    ]  # fmt: skip
    if os.geteuid() == 0:
        # Real root outside: keep only what setpriv needs to become nobody, then nothing at all.
        setpriv = shutil.which("setpriv") or "/usr/bin/setpriv"
        # CAP_SETPCAP: clearing the bounding set needs it (util-linux 2.38 otherwise leaves the set
        # full without a word, 2.41 refuses to start). setpriv drops all three before Python starts.
        args += ["--cap-drop", "ALL", "--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID",
                 "--cap-add", "CAP_SETPCAP", "--"]
        args += [
            setpriv,
            f"--reuid={NOBODY}",
            f"--regid={NOBODY}",
            "--clear-groups",
            "--inh-caps=-all",
            "--bounding-set=-all",
            "--no-new-privs",
            "--",
        ]
    else:
        args += ["--unshare-user", "--uid", str(NOBODY), "--gid", str(NOBODY), "--"]
    return args + command


def jail_env() -> dict[str, str]:
    """The whole environment a jailed worker gets: nothing of the caller's crosses."""
    return {
        "PATH": "/usr/bin:/bin",
        "HOME": JAIL_SCRATCH,
        "TMPDIR": JAIL_SCRATCH,
        "LANG": "C.UTF-8",
        "PYTHONPATH": JAIL_PACKAGE_ROOT,
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONNOUSERSITE": "1",
        "OMP_NUM_THREADS": "1",
        # Fewer malloc arenas: less reserved address space per thread, so RLIMIT_AS measures real use.
        "MALLOC_ARENA_MAX": "2",
    }


# Run inside a probe jail: what a job process would have there.
_PROBE = """
import json, os, model_runtime
status = dict(line.split(":", 1) for line in open("/proc/self/status") if ":" in line)
with open(os.path.join(os.environ["TMPDIR"], "probe"), "w") as f:
    f.write("x")
print(json.dumps({"uid": os.getuid(), "gid": os.getgid(),
                  **{k: v.strip() for k, v in status.items() if k.startswith(("Cap", "NoNewPrivs"))}}))
"""
_CAP_SETS = ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb")
_USERNS_FIX = (
    "Allow unprivileged user namespaces (Debian: sudo sysctl kernel.unprivileged_userns_clone=1; "
    "Ubuntu 24.04+: sudo sysctl kernel.apparmor_restrict_unprivileged_userns=0, or an AppArmor "
    "profile for bwrap), or run the runtime as a user that may create them."
)


class JailError(RuntimeError):
    """The jail cannot be set up here; ``fix`` says what would make it work."""

    def __init__(self, cause: str, fix: str):
        super().__init__(cause)
        self.cause = cause
        self.fix = fix


def diagnose(stderr: str) -> tuple[str, str]:
    """(cause, fix) in a user's words for a jail that did not start, from what bubblewrap printed."""
    text = stderr.strip()
    low = text.lower()
    first = text.splitlines()[-1][:200] if text else "no message"
    if "setpriv" in low and ("bounding set" in low or "capabilit" in low):
        return (f"the jail cannot drop its last capabilities ({first})",
                "Update bubblewrap and util-linux (setpriv), or run the runtime as a normal user.")
    if "failed to execute" in low or "no such file or directory" in low:
        return (f"the runtime's Python is not visible inside the jail ({first})",
                "Reinstall the runtime's environment (Set up runtime…) in a folder of its own, "
                "or report this with `python -m model_runtime doctor`'s output.")
    if any(k in low for k in ("namespace", "uid map", "setting up uid", "unshare", "clone")):
        return (f"this system does not let bubblewrap create the namespaces a jail needs ({first})",
                _USERNS_FIX)
    if "mount" in low or "proc" in low:
        return (f"bubblewrap cannot mount the jail's file system here ({first}); containers often "
                "forbid it", "Run the runtime outside the container, or allow mounts in it "
                "(e.g. Docker: --security-opt seccomp=unconfined --cap-add SYS_ADMIN).")
    if "modulenotfounderror" in low:
        return (f"CadSnap's package is not visible inside the jail ({first})",
                "Reinstall the runtime (Set up runtime…, or `make setup`).")
    return (f"bubblewrap could not start a jail ({first})",
            "Run `python -m model_runtime doctor` and report what it prints.")


def check_probe(report: dict[str, Any]) -> str:
    """What is wrong with a probe jail's view of itself, or "" when it is what a job needs."""
    if report.get("uid") != NOBODY:
        return f"jobs would run as uid {report.get('uid')}, not nobody"
    left = [f"{name}={report.get(name)}" for name in _CAP_SETS if int(str(report.get(name, "1")), 16)]
    if left:
        return f"capabilities remain inside the jail ({', '.join(left)})"
    if report.get("NoNewPrivs") != "1":
        return "the jail does not set no_new_privs"
    return ""


def _not_contained(cause: str, fix: str, filter_note: str) -> Containment:
    return Containment(
        False,
        f"none (fresh process per job, rlimits, {filter_note})",
        f"Generated code cannot be contained here: {cause}.",
        fix,
    )


@functools.cache
def containment() -> Containment:
    """Probe once per process what this platform can contain, in words a user can act on."""
    import json

    from model_runtime.sandbox import syscalls

    filter_note = "seccomp filter on" if syscalls.available() else "no seccomp filter"
    if sys.platform != "linux":
        where = {"darwin": "macOS", "win32": "Windows"}.get(sys.platform, sys.platform)
        return _not_contained(
            f"CadSnap has no operating-system sandbox on {where} yet",
            "Run the runtime on Linux with bubblewrap (a Linux VM or WSL2 works).",
            filter_note,
        )
    if shutil.which("bwrap") is None:
        return _not_contained("bubblewrap is not installed", _INSTALL_HINT, filter_note)
    try:
        probe = subprocess.run(
            jail_argv([sys.executable, "-c", _PROBE], scratch_bytes=1 << 20),
            env=jail_env(),
            capture_output=True,
            timeout=60,
            check=False,
        )
    except JailError as exc:
        return _not_contained(exc.cause, exc.fix, filter_note)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return _not_contained(f"bubblewrap could not start a jail ({exc})", _INSTALL_HINT, filter_note)
    stderr = probe.stderr.decode("utf-8", "replace")
    if probe.returncode:
        return _not_contained(*diagnose(stderr), filter_note)
    try:
        problem = check_probe(json.loads(probe.stdout.decode("utf-8", "replace").strip().splitlines()[-1]))
    except (ValueError, IndexError, AttributeError):
        problem = f"the probe jail answered nothing readable ({stderr.strip()[:200]})"
    if problem:
        return _not_contained(
            problem, "Update bubblewrap and util-linux, or run the runtime as a normal user.", filter_note
        )
    return Containment(
        True,
        f"bubblewrap jail (no network, read-only system, own PID namespace, uid nobody, no "
        f"capabilities), {filter_note}",
        "Generated code runs in a jail: no network, no view of your files or processes, "
        "an unprivileged user and a fresh process per job.",
    )
