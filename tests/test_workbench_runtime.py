"""The workbench's client, job state and launcher against the real runtime on loopback.

The workbench's own RuntimeManager starts ``python -m model_runtime serve`` (hf backend, a tiny LLaVA
trained to write a box), exactly as it does inside FreeCAD; then exec, jobs, events, cancel and errors
go over real HTTP.
"""

from __future__ import annotations

import base64
import io
import socket
import sys

import pytest
from PIL import Image

from freecad_workbench import jobs
from freecad_workbench.client import ApiError, RuntimeClient, RuntimeUnreachable
from freecad_workbench.launcher import RuntimeManager
from freecad_workbench.preferences import Preferences
from model_runtime import protocol
from tests.freecad.models import BOX_VOLUME, tiny_box_model

pytestmark = pytest.mark.slow  # trains a tiny LLaVA once (~30 s) and starts the real runtime


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), "white").save(buffer, "PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def runtime(request, tmp_path_factory):
    """(manager, prefs, client) of a runtime the workbench's launcher started; stopped afterwards."""
    model = tiny_box_model(request.config.cache)
    home = tmp_path_factory.mktemp("runtime_home")
    patch = pytest.MonkeyPatch()
    patch.setenv("CADSNAP_CONFIG_DIR", str(home / "config"))  # the token file lands here
    prefs = Preferences(runtime_url=f"http://127.0.0.1:{_free_port()}", interpreter=sys.executable,
                        backend="hf", model_path=str(model), startup_timeout_s=120)
    manager = RuntimeManager(home / "logs")
    statuses: list[str] = []
    client, health = manager.ensure(prefs, statuses.append)
    assert health["status"] == "ok" and statuses  # it was started, not found
    yield manager, prefs, client
    manager.stop()
    patch.undo()


def test_health_and_token(runtime):
    manager, prefs, client = runtime
    assert protocol.token_path().is_file()
    assert manager.process is not None and manager.process.running
    # A second ensure reuses the running runtime instead of starting another.
    again, health = manager.ensure(prefs)
    assert health["backend_state"] in ("loading", "ready") and manager.process.running
    with pytest.raises(ApiError) as caught:
        RuntimeClient(prefs.runtime_url, token="wrong").health()
    assert caught.value.code == protocol.ERROR_UNAUTHORIZED and caught.value.status == 401


def test_exec_returns_brep_and_typed_errors(runtime):
    _, _, client = runtime
    result = client.exec_code('import cadquery as cq\nresult = cq.Workplane().box(2, 3, 4)\n', timeout_s=20)
    assert abs(result["volume"] - 24.0) < 1e-6 and "CASCADE Topology" in result["brep"]
    with pytest.raises(ApiError) as caught:
        client.exec_code("import cadquery as cq\nresult = (\n", timeout_s=20)
    assert caught.value.code == protocol.ERROR_SYNTAX and caught.value.status == 422
    with pytest.raises(ApiError) as caught:
        client.exec_code("import os\nos.system('true')\n", timeout_s=20)
    assert caught.value.code == protocol.ERROR_POLICY


def test_generate_job_streams_to_a_valid_solid(runtime):
    import cadquery as cq

    _, _, client = runtime
    payload = jobs.GenerateRequest(image=_png(), n=2, instruction="a block").to_json()
    job_id = client.submit_job(payload)
    state = jobs.JobState(job_id=job_id)
    kinds = []
    with client.events(job_id, idle_timeout_s=120) as stream:
        for event in stream:
            kinds.append(event["type"])
            state.apply(event)
    assert state.status == protocol.JOB_DONE, (state.error_code, state.error_message)
    assert {"status", "token", "candidate", "result"} <= set(kinds) and kinds[-1] == "result"
    assert len(state.candidates) == 2 and all(c.code for c in state.candidates.values())
    best = state.best()
    assert best.valid and state.backend == "hf"
    assert "box(30, 20, 10)" in state.candidates[best.index].code  # as the model wrote it
    assert "box(block_length, block_width, block_height)" in best.code  # as OK inserts it, named
    assert best.feature_plan["status"] == protocol.PLAN_MAPPED
    shape = cq.Shape.importBrep(io.BytesIO(best.brep.encode()))
    assert shape.isValid() and abs(shape.Volume() - BOX_VOLUME) < 1e-6
    final = client.job(job_id)
    assert final["status"] == protocol.JOB_DONE


def test_target_size_rescales_the_winner(runtime):
    _, _, client = runtime
    job_id = client.submit_job(jobs.GenerateRequest(image=_png(), n=1, target_size_mm=60).to_json())
    state = jobs.JobState(job_id=job_id)
    with client.events(job_id, idle_timeout_s=120) as stream:
        for event in stream:
            state.apply(event)
    best = state.best()
    assert state.status == protocol.JOB_DONE and best.brep
    bbox = state.result["result"]["bbox"]
    assert abs(max(bbox[3] - bbox[0], bbox[4] - bbox[1], bbox[5] - bbox[2]) - 60) < 1e-6


def test_cancel_and_bad_image_come_back_as_typed_states(runtime):
    _, _, client = runtime
    job_id = client.submit_job(jobs.GenerateRequest(image=_png(), n=protocol.MAX_CANDIDATES).to_json())
    client.cancel(job_id)
    state = jobs.JobState(job_id=job_id)
    with client.events(job_id, idle_timeout_s=120) as stream:
        for event in stream:
            state.apply(event)
    assert state.status == protocol.JOB_CANCELLED and state.best() is None

    corrupt = base64.b64encode(_png()[:50]).decode()
    with pytest.raises(ApiError) as caught:
        client.submit_job({"image": corrupt, "n": 1})
    assert caught.value.code == protocol.ERROR_BAD_IMAGE


def test_stop_ends_the_runtime(runtime, tmp_path):
    manager, prefs, _ = runtime
    process = manager.process
    manager.stop()
    assert process.process.poll() is not None
    with pytest.raises(RuntimeUnreachable):
        RuntimeClient(prefs.runtime_url, timeout_s=2).health()
