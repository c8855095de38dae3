"""The sandbox job that reads an untrusted shape file and recognises it (``kind: "shape"``).

Runs in a sandbox job process (a fresh, limited, jailed process per job), so a reader that crashes
on a hostile file costs that process only. Input: ``{"kind": "shape", "name": FILE NAME,
"data": BASE64, "time_budget_s": S}``. Output: ``{"ok": true, "result": {...}}`` with the program,
IoU and notes, or ``{"ok": false, "error": {"code", "message"}}`` with one plain sentence.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

from model_runtime.shapes.errors import ShapeInputError

JOB_KIND = "shape"


def run_job(job: dict[str, Any]) -> dict[str, Any]:
    from model_runtime.shapes.load import load_bytes
    from model_runtime.shapes.recognise import recognise

    name = str(job.get("name") or "input")
    try:
        data = base64.b64decode(job.get("data") or b"", validate=True)
    except (binascii.Error, ValueError):
        return _error(ShapeInputError("the file did not reach the sandbox intact.", "bad_request"))
    try:
        loaded = load_bytes(data, name)
        rec = recognise(
            loaded, time_budget_s=float(job.get("time_budget_s", 60.0)), careful=bool(job.get("careful"))
        )
    except ShapeInputError as exc:
        return _error(exc)
    except MemoryError:
        return _error(ShapeInputError(f"'{name}' needs more memory than the sandbox allows.", "too_large"))
    except Exception as exc:  # a recogniser failed on an odd shape: say so plainly
        return _error(
            ShapeInputError(
                f"CadSnap could not rebuild '{name}' ({type(exc).__name__}: {str(exc)[:200]}).",
                "not_recognised",
            )
        )
    out = rec.to_dict()
    out.update(kind=loaded.kind, unit=loaded.unit, n_bodies=loaded.n_bodies)
    return {"ok": True, "result": out}


def _error(exc: ShapeInputError) -> dict[str, Any]:
    return {"ok": False, "error": {**exc.to_dict(), "shape": True}}
