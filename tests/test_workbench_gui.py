"""Real FreeCAD 0.20 GUI under Xvfb: Capture 3D view -> Generate -> accept against a real runtime.

The add-on is laid out as the Addon Manager installs it (``Mod/CadSnap`` = this repository). The
workbench itself starts the runtime (``python -m model_runtime serve`` with the hf backend on a tiny
LLaVA trained here to emit a box) and must stop it when FreeCAD quits.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import sys
from pathlib import Path

import pytest

from freecad_workbench.client import RuntimeClient, RuntimeUnreachable
from tests.freecad.harness import REPO_ROOT, run_gui_flow
from tests.freecad.models import tiny_box_model

README_SCREENSHOT = REPO_ROOT / "freecad_workbench" / "resources" / "screenshot.png"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def box_model(request) -> Path:
    return tiny_box_model(request.config.cache)


@pytest.mark.gui
@pytest.mark.slow
def test_capture_generate_accept_in_freecad(tmp_path, box_model):
    port = free_port()
    prefs = {"runtime_url": f"http://127.0.0.1:{port}", "interpreter": sys.executable, "backend": "hf",
             "model_path": str(box_model), "candidates": 3, "startup_timeout_s": 60.0, "job_timeout_s": 60.0}
    edited = 'import cadquery as cq\n\nresult = cq.Workplane("XY").box(40, 40, 40)\n'
    # Fitting unticked: the inserted solid is then exactly the box the tiny model was trained on.
    result, output = run_gui_flow(tmp_path, prefs, repeats=2, edit_code=edited, cancel_first=True,
                                  accept_other_first=True, pick_point=[12, 8, 10], fit_dimensions=False)

    assert "Traceback" not in output, output
    assert result.get("ok"), json.dumps(result, indent=2) + output[-3000:]
    # Cancel job while the runtime was still starting: said so in the panel, nothing inserted.
    assert result["cancelled"]["status"] == "cancelled" and "unchanged" in result["cancelled"]["message"]
    assert result["cancelled"]["objects_added"] == 0 and result["cancelled"]["generate_enabled"]
    # First press: a candidate other than the winner, built through /v1/exec, then inserted.
    other = result["other_candidate"]
    assert other["index"] != other["winner"] and not other["accepted_at_once"], other
    assert other["inserted"] and other["valid"] and other["source_is_candidate"], other
    # Second press: the winner.
    assert len(result["presses"]) == 2
    # Every valid candidate in the list shows the runtime's render of it, not a placeholder card.
    assert result["thumbnails"]["valid"] >= 1
    assert result["thumbnails"]["rendered"] == result["thumbnails"]["valid"]
    assert result["objects_added"] == 1 and result["type"] == "Part::Feature"
    assert result["valid"] and result["solids"] == 1
    assert abs(result["volume"] - 6000.0) < 1e-6  # the 30×20×10 box the tiny model was trained on
    assert "box(30, 20, 10)" in result["source"]
    assert result["placement"] == [12, 8, 10]  # "Place at the picked point" with a point clicked
    assert result["backend"] == "hf" and result["model"]
    assert Path(result["image"]).is_file() and result["image"].endswith(".png")
    assert result["camera"].startswith("(")  # the capture's quaternion
    assert result["edit_active"] in (True, None)  # Edit CadQuery is offered for the new solid

    # Edit CadQuery: re-run through the runtime's /v1/exec, shape and source replaced, one undo step.
    assert result["edit"]["updated"], result["edit"]
    assert abs(result["edit"]["volume"] - 64000.0) < 1e-3 and result["edit"]["source"] == edited
    assert abs(result["edit"]["volume_after_undo"] - 6000.0) < 1e-6

    # FreeCAD quit: the runtime the workbench started must be gone with it.
    with pytest.raises(RuntimeUnreachable):
        RuntimeClient(prefs["runtime_url"], timeout_s=2).health()

    screenshot = tmp_path / "final.png"
    assert screenshot.stat().st_size > 10_000
    if os.environ.get("CADSNAP_UPDATE_SCREENSHOT"):
        _save_small_png(tmp_path / "panel.png", README_SCREENSHOT)


def _save_small_png(source: Path, target: Path, limit: int = 300_000) -> None:
    """The README screenshot: palette-quantised until it is under ``limit`` bytes."""
    from PIL import Image

    image = Image.open(source).convert("RGB")
    for colours in (256, 128, 64):
        image.quantize(colours).save(target, optimize=True)
        if target.stat().st_size < limit:
            return
    shutil.copy(source, target)


@pytest.mark.gui
def test_failures_show_a_message_and_leave_the_document_alone(tmp_path):
    from freecad_workbench.launcher import find_base_python

    down = {"runtime_url": f"http://127.0.0.1:{free_port()}", "start_runtime": False}
    # A real Python without the runtime installed: `-m model_runtime serve` dies at once.
    dying = {"runtime_url": f"http://127.0.0.1:{free_port()}", "interpreter": str(find_base_python()),
             "startup_timeout_s": 30.0}
    result, output = run_gui_flow(tmp_path, down, scenario="errors", dying_prefs=dying)

    assert "Traceback" not in output, output
    assert result.get("ok"), json.dumps(result, indent=2) + output[-3000:]
    assert "corrupt" in result["corrupt_file"]
    errors = result["errors"]
    assert "truncated or corrupt" in errors["corrupt_image"]["message"]
    assert "No CadSnap runtime answers" in errors["runtime_down"]["runtime"]
    assert "not available" in errors["runtime_down"]["message"]
    assert "exited" in errors["runtime_dies"]["runtime"]
    assert "No module named model_runtime" in errors["runtime_dies"]["runtime"]
    assert result["objects_added"] == 0 and result["undo_count"] == 0

    sources = result["sources"]
    assert "no image" in sources["empty_clipboard"]
    assert sources["clipboard_size"] == [120, 80] and sources["region_size"] == [200, 150]
    assert sources["region_file"] and sources["bmp_size"] == [120, 80]
    assert sources["bmp_path"].endswith("part.bmp")  # the inserted object will point at the user's file
    assert result["preferences_page"] == {"candidates": 9, "model_path": "/models/part.gguf",
                                          "job_timeout_s": 123.0, "reloaded_candidates": 9}
