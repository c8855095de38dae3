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
  tmpfs at /tmp for scratch; the user's home, the token, other repositories are simply not there;
- an unprivileged uid: when the runtime runs as root, the worker drops to nobody (65534) with
  ``setpriv`` before Python starts, with every capability and the bounding set cleared; as a normal
  user, bubblewrap's user namespace maps the user to 65534 with no capabilities;
- no new privileges (set by bubblewrap, and again by setpriv);
- a clean environment: none of the caller's variables (API keys among them) cross into the jail.

Where this cannot run (macOS, Windows, a Linux without bubblewrap or without user namespaces) the
runtime says so through ``containment()`` and falls back to what the platform has: fresh forked
processes per job with rlimits and, on Linux, the seccomp filter.
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
JAIL_SCRATCH = "/tmp"
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
    for path in _python_dirs():
        _ensure_parents(args, path, made)
        args += ["--ro-bind", str(path), str(path)]
    package = Path(JAIL_PACKAGE_ROOT) / "model_runtime"
    _ensure_parents(args, package, made)
    args += ["--ro-bind", str(_package_dir()), str(package)]
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
        args += ["--cap-drop", "ALL", "--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID", "--"]
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


@functools.cache
def containment() -> Containment:
    """Probe once per process what this platform can contain, in words a user can act on."""
    from model_runtime.sandbox import syscalls

    filter_note = "seccomp filter on" if syscalls.available() else "no seccomp filter"
    if sys.platform != "linux":
        where = {"darwin": "macOS", "win32": "Windows"}.get(sys.platform, sys.platform)
        return Containment(
            False,
            "none",
            f"No operating-system sandbox on {where}: generated code runs with your user's rights, "
            "limited by the code policy, a fresh process per job and a time limit.",
            "Run the runtime on Linux with bubblewrap for full containment.",
        )
    if shutil.which("bwrap") is None:
        return Containment(
            False,
            f"fresh process per job, rlimits, {filter_note}",
            "Generated code is not contained by the operating system: bubblewrap is not installed, "
            "so it runs with your user's rights (limited by the code policy and a seccomp filter).",
            _INSTALL_HINT,
        )
    try:
        probe = subprocess.run(
            jail_argv([sys.executable, "-c", "pass"], scratch_bytes=1 << 20),
            env=jail_env(),
            capture_output=True,
            timeout=30,
            check=False,
        )
        error = probe.stderr.decode("utf-8", "replace").strip() if probe.returncode else ""
    except (OSError, subprocess.TimeoutExpired) as exc:
        error = str(exc)
    if error:
        return Containment(
            False,
            f"fresh process per job, rlimits, {filter_note}",
            f"bubblewrap cannot start a jail here ({error[:200]}), so generated code runs with your "
            "user's rights (limited by the code policy and a seccomp filter).",
            "Enable unprivileged user namespaces (sysctl kernel.unprivileged_userns_clone=1) or run "
            "the runtime where bubblewrap works.",
        )
    return Containment(
        True,
        f"bubblewrap jail (no network, read-only system, own PID namespace, uid nobody), {filter_note}",
        "Generated code runs in a jail: no network, no view of your files or processes, "
        "an unprivileged user and a fresh process per job.",
    )
