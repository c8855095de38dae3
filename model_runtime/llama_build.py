"""Build the patched llama-cpp-python wheel once, cache it, and install it.

PyPI ships llama-cpp-python only as source, and the bundled llama.cpp puts LLaVA-1.5's CLIP
class token after the patches (upstream llama.cpp issue 25814), which corrupts every image
embedding. This module downloads the source archive, unpacks it into ``cache_dir()/build``,
applies the fix as exact text substitutions (each must match once, so a changed upstream file
fails loudly instead of building an unpatched library), tags the version ``+cadsnap.N`` so
``doctor`` and tests can tell the builds apart, builds a wheel into ``cache_dir()/wheels`` and
pip-installs it. A second run finds the wheel and only installs. A file lock keeps two processes
from building at once.

The unpacked source stays in the cache: ``training.export_gguf`` uses its
``convert_hf_to_gguf.py`` and ``gguf-py``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from model_runtime.protocol import cache_dir

UPSTREAM_VERSION = "0.3.36"
PATCH_LEVEL = 1
LOCAL_TAG = f"cadsnap.{PATCH_LEVEL}"
PATCHED_VERSION = f"{UPSTREAM_VERSION}+{LOCAL_TAG}"
PACKAGE = "llama-cpp-python"
_SOURCE_NAME = f"llama_cpp_python-{UPSTREAM_VERSION}"
_PATCHED_MARKER = ".cadsnap-patched"


class LlamaBuildError(RuntimeError):
    """The patched llama-cpp-python could not be prepared, built or installed."""


@dataclass(frozen=True)
class SourceEdit:
    """One exact text substitution in the unpacked source tree."""

    path: str
    old: str
    new: str
    why: str


# The class-token fix: transformers' CLIP puts the class embedding FIRST (index 0), and
# llama.cpp's own input setup already assumes that (it skips row 0 when taking the patch rows),
# but the graph concatenates it after the patches.
CLASS_TOKEN_FIX = SourceEdit(
    path="vendor/llama.cpp/tools/mtmd/models/llava.cpp",
    old="inp = ggml_concat(ctx0, inp, model.class_embedding, 1);",
    new="inp = ggml_concat(ctx0, model.class_embedding, inp, 1);",
    why="class token first, as in CLIP (llama.cpp issue 25814)",
)

# llama-cpp-python forces llama.cpp's `common` library ON; nothing in the Python package loads
# it (mtmd is forbidden to link it, the tools that need it are not built), so skipping it saves
# about a third of the compile time.
SKIP_COMMON = SourceEdit(
    path="CMakeLists.txt",
    old='    set(LLAMA_BUILD_COMMON ON CACHE BOOL "Build llama.cpp common library" FORCE)',
    new='    set(LLAMA_BUILD_COMMON OFF CACHE BOOL "Build llama.cpp common library" FORCE)',
    why="llama.cpp's common library is unused by the bindings",
)

VERSION_TAG = SourceEdit(
    path="llama_cpp/__init__.py",
    old=f'__version__ = "{UPSTREAM_VERSION}"',
    new=f'__version__ = "{PATCHED_VERSION}"',
    why="tell the patched build apart",
)

PATCHED_EDITS = (CLASS_TOKEN_FIX, SKIP_COMMON, VERSION_TAG)
# The unpatched build exists only to show that the parity test catches the bug.
UNPATCHED_EDITS = (
    SKIP_COMMON,
    SourceEdit(VERSION_TAG.path, VERSION_TAG.old, f'__version__ = "{UPSTREAM_VERSION}+unpatched"', "tag"),
)


def build_root() -> Path:
    return cache_dir() / "build"


def wheel_dir() -> Path:
    return cache_dir() / "wheels"


def source_dir(patched: bool = True) -> Path:
    """Where the unpacked (and, by default, patched) source tree lives in the cache."""
    return build_root() / (_SOURCE_NAME if patched else f"{_SOURCE_NAME}-unpatched")


@contextlib.contextmanager
def build_lock(timeout_s: float = 3600.0) -> Iterator[None]:
    """An inter-process lock on the build folder (the OS drops it if the holder dies)."""
    build_root().mkdir(parents=True, exist_ok=True)
    path = build_root() / ".lock"
    with open(path, "a+b") as handle:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                _try_lock(handle)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise LlamaBuildError(f"another process has held {path} for {timeout_s:.0f} s") from None
                time.sleep(1.0)
        try:
            yield
        finally:
            _unlock(handle)


def _try_lock(handle) -> None:
    if sys.platform == "win32":
        import msvcrt

        handle.seek(0)
        msvcrt.locking(handle.fileno(), msvcrt.LK_NBLCK, 1)
    else:
        import fcntl

        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)


def _unlock(handle) -> None:
    if sys.platform == "win32":
        import msvcrt

        handle.seek(0)
        msvcrt.locking(handle.fileno(), msvcrt.LK_UNLCK, 1)
    else:
        import fcntl

        fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _run(cmd: list[str], what: str, env: dict[str, str] | None = None, quiet: bool = False) -> None:
    print(f"[cadsnap setup] {what}: {' '.join(cmd)}", file=sys.stderr, flush=True)
    out = subprocess.DEVNULL if quiet else None
    proc = subprocess.run(cmd, env=env, stdout=out)
    if proc.returncode != 0:
        raise LlamaBuildError(f"{what} failed (exit {proc.returncode}); see the output above")


def download_sdist() -> Path:
    """The llama-cpp-python source archive, downloaded once into the cache."""
    dest = cache_dir() / "sdist"
    found = sorted(dest.glob(f"{_SOURCE_NAME}.tar.gz"))
    if found:
        return found[0]
    dest.mkdir(parents=True, exist_ok=True)
    _run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--no-binary",
            ":all:",
            f"{PACKAGE}=={UPSTREAM_VERSION}",
            "-d",
            str(dest),
        ],
        "download the llama-cpp-python source",
        quiet=True,
    )
    found = sorted(dest.glob(f"{_SOURCE_NAME}.tar.gz"))
    if not found:
        raise LlamaBuildError(f"pip did not leave {_SOURCE_NAME}.tar.gz in {dest}")
    return found[0]


def apply_edits(root: Path, edits: tuple[SourceEdit, ...]) -> None:
    """Apply each substitution exactly once; a mismatch means upstream moved and we must look again."""
    for edit in edits:
        path = root / edit.path
        text = path.read_text(encoding="utf-8")
        count = text.count(edit.old)
        if count != 1:
            raise LlamaBuildError(
                f"cannot apply '{edit.why}': expected the line once in {edit.path}, found it {count} times"
            )
        path.write_text(text.replace(edit.old, edit.new), encoding="utf-8")


def ensure_source(patched: bool = True) -> Path:
    """The unpacked source tree in the cache, re-extracted from the archive when missing."""
    target = source_dir(patched)
    if (target / _PATCHED_MARKER).is_file():
        return target
    archive = download_sdist()
    build_root().mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=build_root(), prefix=".unpack-") as tmp:
        with tarfile.open(archive) as tar:
            # The safe "data" filter exists from Python 3.11.4; the archive is PyPI's, checked by pip.
            if hasattr(tarfile, "data_filter"):
                tar.extractall(tmp, filter="data")
            else:
                tar.extractall(tmp)  # noqa: S202
        unpacked = Path(tmp) / _SOURCE_NAME
        apply_edits(unpacked, PATCHED_EDITS if patched else UNPATCHED_EDITS)
        (unpacked / _PATCHED_MARKER).write_text(PATCHED_VERSION if patched else "unpatched", encoding="utf-8")
        if target.exists():
            shutil.rmtree(target)
        unpacked.rename(target)
    return target


def find_wheel(patched: bool = True) -> Path | None:
    tag = LOCAL_TAG if patched else "unpatched"
    found = sorted(wheel_dir().glob(f"llama_cpp_python-{UPSTREAM_VERSION}+{tag}-*.whl"))
    return found[-1] if found else None


def build_wheel(patched: bool = True, jobs: int | None = None) -> Path:
    """Compile llama.cpp and the bindings into a wheel in ``wheel_dir()`` (minutes on a small CPU)."""
    src = ensure_source(patched)
    wheel_dir().mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    env.setdefault("CMAKE_BUILD_PARALLEL_LEVEL", str(jobs or os.cpu_count() or 2))
    # A portable build: -march=native would make the cached wheel crash on an older CPU.
    env.setdefault("CMAKE_ARGS", "-DGGML_NATIVE=OFF")
    with tempfile.TemporaryDirectory(dir=build_root(), prefix=".wheel-") as tmp:
        _run(
            [sys.executable, "-m", "pip", "wheel", "--no-deps", "-w", tmp, str(src)],
            "build the patched llama-cpp-python wheel (a few minutes)",
            env=env,
        )
        built = sorted(Path(tmp).glob("llama_cpp_python-*.whl"))
        if not built:
            raise LlamaBuildError("pip wheel finished but left no wheel")
        final = wheel_dir() / built[0].name
        shutil.move(str(built[0]), final)
    return final


def installed_version() -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(PACKAGE)
    except PackageNotFoundError:
        return None


def is_patched_installed() -> bool:
    return installed_version() == PATCHED_VERSION


def install_wheel(wheel: Path, target: Path | None = None) -> None:
    """pip-install the wheel (and its pure-Python dependencies) into this interpreter or a folder."""
    cmd = [sys.executable, "-m", "pip", "install", "-q", str(wheel)]
    if target is not None:
        cmd += ["--no-deps", "--target", str(target)]
    _run(cmd, "install the wheel")


def ensure_installed(rebuild: bool = False, patched: bool = True, target: Path | None = None) -> Path:
    """Build the wheel if the cache lacks it, then install it; returns the wheel's path."""
    with build_lock():
        wheel = None if rebuild else find_wheel(patched)
        if wheel is None:
            wheel = build_wheel(patched)
        else:
            print(f"[cadsnap setup] reusing {wheel}", file=sys.stderr)
        if patched and target is None and is_patched_installed() and not rebuild:
            print(f"[cadsnap setup] {PACKAGE} {PATCHED_VERSION} is already installed", file=sys.stderr)
        else:
            install_wheel(wheel, target)
    return wheel


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--rebuild", action="store_true", help="compile again even when a cached wheel exists"
    )
    parser.add_argument(
        "--unpatched",
        action="store_true",
        help="build the stock library (to show the parity test catches the bug)",
    )
    parser.add_argument("--target", type=Path, help="install into this folder instead of the environment")
    args = parser.parse_args(argv)
    try:
        wheel = ensure_installed(rebuild=args.rebuild, patched=not args.unpatched, target=args.target)
    except LlamaBuildError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(wheel)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
