"""Building feature plans with FreeCAD from the runtime: ``freecadcmd`` in its own process.

The runtime's venv cannot import FreeCAD in general, and FreeCAD must never share a process with
generated code; so plans travel as JSON to ``freecad_workbench/feature_tree_job.py`` run by
``freecadcmd``, which imports the workbench's builder from this checkout.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
JOB_SCRIPT = REPO_ROOT / "freecad_workbench" / "feature_tree_job.py"
_COMMANDS = ("freecadcmd", "FreeCADCmd", "freecad.cmd", "FreeCADCmd.exe")


class FreeCADMissing(RuntimeError):
    """No ``freecadcmd`` on this machine; the message says how to get one."""


def find_freecadcmd() -> str | None:
    if env := os.environ.get("CADSNAP_FREECADCMD"):
        return env if Path(env).exists() else None
    return next((found for name in _COMMANDS if (found := shutil.which(name))), None)


def run_jobs(jobs: list[dict], timeout_s: float = 600.0) -> list[dict]:
    """Build each job's plan in ``freecadcmd`` (see feature_tree_job.py); one result per job."""
    command = find_freecadcmd()
    if command is None:
        raise FreeCADMissing(
            "FreeCAD is not installed (no freecadcmd on PATH): install FreeCAD 0.20 or "
            "newer (e.g. apt-get install freecad) or set CADSNAP_FREECADCMD"
        )
    with tempfile.TemporaryDirectory(prefix="cadsnap-fc-") as tmp:
        config = Path(tmp) / "job.json"
        result = Path(tmp) / "result.json"
        config.write_text(json.dumps({"root": str(REPO_ROOT), "jobs": jobs, "result": str(result)}))
        # PYTHONPATH/PYTHONHOME from a venv crash freecadcmd: it gets its own Python's environment.
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
        env["CADSNAP_FC_JOB"] = str(config)
        proc = subprocess.run(
            [command, str(JOB_SCRIPT)], env=env, cwd=tmp, capture_output=True, text=True, timeout=timeout_s
        )
        if not result.exists():
            tail = (proc.stdout + proc.stderr)[-2000:]
            raise RuntimeError(f"freecadcmd wrote no result (exit {proc.returncode}):\n{tail}")
        return json.loads(result.read_text())


def write_fcstd(
    path: Path, source: str, brep: str, plan: dict | None, image_path: str = "", name: str = ""
) -> tuple[bool, str]:
    """Write a FreeCAD document holding the part: (True, "") for a PartDesign Body, else
    (False, why it is a solid with source instead). The part is named after ``name`` when given (a
    program's file name), else after ``image_path``. Raises FreeCADMissing without FreeCAD."""
    path = Path(path).resolve()
    with tempfile.TemporaryDirectory(prefix="cadsnap-fcstd-") as tmp:
        brep_path = Path(tmp) / "part.brep"
        brep_path.write_text(brep, encoding="utf-8")
        (result,) = run_jobs(
            [
                {
                    "plan": plan,
                    "brep_path": str(brep_path),
                    "fcstd": str(path),
                    "source": source,
                    "image_path": image_path,
                    **({"name": name} if name else {}),
                }
            ]
        )
    if not path.is_file():
        raise RuntimeError(f"FreeCAD did not write {path}: {result.get('message')}")
    return bool(result["body"]), result.get("message", "")
