"""Runs FreeCAD the way a user has it: the add-on laid out as the Addon Manager installs it.

``addon_home(tmp)`` makes a throwaway HOME whose ``.local/share/FreeCAD/Mod/CadSnap`` links to this
repository (and ``.local/share/FreeCAD/v1-1/Mod/CadSnap`` on FreeCAD 1.1, which reads a folder per version;
setting PYTHONPATH for freecadcmd crashes it), so the user's real FreeCAD config is never touched.
FreeCAD swallows exceptions and exits 0: callers fail on any Traceback in the output.
"""

from __future__ import annotations

import functools
import json
import os
import re
import signal
import subprocess
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


@functools.cache
def freecad_version() -> tuple[int, int] | None:
    """(major, minor) of the installed ``freecadcmd`` (its ``--version`` crashes 0.20), or None."""
    script = "import FreeCAD; print('CADSNAP-FREECAD-VERSION', *FreeCAD.Version()[:2])"
    with tempfile.TemporaryDirectory(prefix="cadsnap-fc-version-") as home:
        try:
            proc = subprocess.run(["freecadcmd", "-c", script], env=freecad_env(Path(home)), cwd=home,
                                  capture_output=True, text=True, timeout=60)
        except (OSError, subprocess.SubprocessError):
            return None
    found = re.search(r"CADSNAP-FREECAD-VERSION (\d+) (\d+)", proc.stdout)
    return (int(found.group(1)), int(found.group(2))) if found else None


def mod_folders(home: Path) -> list[Path]:
    """Where FreeCAD looks for add-ons under ``home``: ``.local/share/FreeCAD/Mod`` up to 1.0, and from
    1.1 on a folder per version, ``.local/share/FreeCAD/v1-1/Mod``."""
    data = home / ".local" / "share" / "FreeCAD"
    folders = [data / "Mod"]
    version = freecad_version()
    if version is not None and version >= (1, 1):
        folders.append(data / f"v{version[0]}-{version[1]}" / "Mod")
    return folders


def addon_home(base: Path) -> Path:
    home = base / "home"
    for mod in mod_folders(home):
        mod.mkdir(parents=True, exist_ok=True)
        link = mod / "CadSnap"
        if not link.exists():
            link.symlink_to(REPO_ROOT, target_is_directory=True)
    return home


def freecad_env(home: Path, **extra: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items()
           if key not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    env.update(HOME=str(home), XDG_CONFIG_HOME=str(home / ".config"),
               XDG_DATA_HOME=str(home / ".local/share"),
               CADSNAP_CONFIG_DIR=str(home / "cadsnap-config"), CADSNAP_CACHE_DIR=str(home / "cadsnap-cache"),
               PYTHONDONTWRITEBYTECODE="1")
    env.update(extra)
    return env


def run_freecadcmd_tests(module: str, home: Path, timeout_s: float = 120.0, **extra: str) -> str:
    """``freecadcmd -t MODULE``; returns the combined output after checking it passed cleanly."""
    proc = subprocess.run(["freecadcmd", "-t", module], env=freecad_env(home, **extra), cwd=home,
                          capture_output=True, text=True, timeout=timeout_s)
    output = proc.stdout + proc.stderr
    assert "Traceback" not in output, output
    assert "\nOK" in output, output
    return output


def run_gui_flow(workdir: Path, prefs: dict, repeats: int = 1, deadline_s: float = 80,
                 timeout_s: float = 170, **options) -> tuple[dict, str]:
    """Start FreeCAD's GUI under Xvfb on training/bench/gui_flow.py; returns (result, output)."""
    home = addon_home(workdir)
    config = {"prefs": prefs, "result": str(workdir / "result.json"), "repeats": repeats,
              "deadline_s": deadline_s, "screenshot_final": str(workdir / "final.png"),
              "screenshot_panel": str(workdir / "panel.png"), **options}
    (workdir / "config.json").write_text(json.dumps(config))
    env = freecad_env(home, CADSNAP_GUI_CONFIG=str(workdir / "config.json"),
                      QTWEBENGINE_CHROMIUM_FLAGS="--no-sandbox", QT_QPA_PLATFORM="xcb")
    command = ["xvfb-run", "-a", "-s", "-screen 0 1400x1000x24", "freecad",
               str(Path(__file__).with_name("gui_flow.py"))]
    # Its own process group, so a hang is ended with Xvfb, FreeCAD and any runtime FreeCAD started.
    proc = subprocess.Popen(command, env=env, cwd=home, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)
    try:
        output, _ = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        output, _ = proc.communicate()
        output += f"\nCADSNAP-GUI TIMEOUT: FreeCAD was killed after {timeout_s:.0f} s\n"
    result_path = workdir / "result.json"
    result = json.loads(result_path.read_text()) if result_path.exists() else {}
    return result, output
