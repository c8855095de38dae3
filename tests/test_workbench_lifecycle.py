"""The Generate panel's life in plain Python (``freecad_workbench.lifecycle``), against the real runtime
app over HTTP on loopback: one panel at a time, old jobs cancelled on the runtime, nothing delivered
after close, live runtime status, and the plain-language errors a person can meet."""

from __future__ import annotations

import base64
import io
import socket
import threading
import time

import pytest
from PIL import Image

from freecad_workbench import lifecycle, messages
from freecad_workbench.client import RuntimeClient
from freecad_workbench.launcher import RuntimeManager, find_base_python
from freecad_workbench.preferences import Preferences
from model_runtime import protocol
from model_runtime.sandbox import SandboxPool
from model_runtime.server import ServerConfig, create_app
from tests.server_thread import BackgroundServer


class HoldingJob:
    """A job that streams a token and a status, then waits until it is cancelled or released."""

    name = "holding-job"

    def __init__(self) -> None:
        self.release = threading.Event()
        self.started = 0

    def __call__(self, body, emit, cancel):
        from model_runtime.pipeline import PipelineError

        self.started += 1
        emit(protocol.token_event(0, "import cadquery as cq\n"))
        emit(protocol.status_event("generate", 0.1))
        while not self.release.wait(0.02):
            if cancel.is_set():
                raise PipelineError(protocol.ERROR_CANCELLED, "the job was cancelled")
        raise PipelineError(protocol.ERROR_ALL_INVALID, "none of the 4 candidate programs built a solid")


def png(size=(48, 32)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, "white").save(buffer, "PNG")
    return buffer.getvalue()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def pool():
    with SandboxPool(workers=1, timeout_s=10) as sandbox:
        yield sandbox


@pytest.fixture()
def config_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("CADSNAP_CONFIG_DIR", str(tmp_path / "config"))
    return tmp_path / "config"


@pytest.fixture()
def holding_runtime(pool, config_dir):
    job = HoldingJob()
    app = create_app(ServerConfig(token_path=config_dir / "token"), pool=pool, job_runner=job)
    with BackgroundServer(app) as server:
        yield server.url, job
        job.release.set()


def prefs_for(url: str, **changes) -> Preferences:
    return Preferences(runtime_url=url, start_runtime=False, job_timeout_s=30, **changes)


def pump_until(controller: lifecycle.PanelController, predicate, timeout_s: float = 10.0) -> bool:
    def ready() -> bool:
        controller.pump()
        return predicate()

    return lifecycle.wait_until(ready, timeout_s)


def payload() -> dict:
    return {"image": base64.b64encode(png()).decode(), "n": 2}


class Panel:
    """What PanelSlot needs of a panel: ``close()``. The controller is the whole panel's logic."""

    def __init__(self, url: str) -> None:
        self.controller = lifecycle.PanelController(prefs_for(url), RuntimeManager())
        self.controller.start()

    def close(self) -> None:
        self.controller.close()


def test_recapturing_mid_job_twenty_times_cancels_each_old_job_on_the_runtime(holding_runtime):
    url, job = holding_runtime
    slot = lifecycle.PanelSlot()
    panels: list[Panel] = []
    for _ in range(20):
        panel = Panel(url)
        slot.replace(panel)  # as a new capture does: the previous panel closes
        panels.append(panel)
        panel.controller.generate(payload())
        assert pump_until(panel.controller, lambda c=panel.controller: bool(c.job_ids)), "no job id"
        assert panel.controller.running
    client = RuntimeClient(url)
    for old in panels[:-1]:
        controller = old.controller
        assert controller.closed and controller.inbox.closed
        (job_id,) = controller.job_ids
        assert lifecycle.wait_until(lambda j=job_id: client.job(j)["status"] == protocol.JOB_CANCELLED, 10), \
            client.job(job_id)
        # A closed panel hears nothing more: its workers' late messages are dropped.
        assert not controller.inbox.post("event", (controller.generation, {"type": "cancelled"}))
        assert controller.pump() is False
    last = panels[-1].controller
    assert slot.current is panels[-1] and not last.closed
    assert client.job(last.job_ids[0])["status"] in (protocol.JOB_QUEUED, protocol.JOB_RUNNING)
    job.release.set()  # the last job ends as the runtime says: all candidates invalid, in plain words
    assert pump_until(last, lambda: last.state.finished)
    assert last.error is not None and last.error.text.startswith("None of the")
    assert messages.ACTION_RETRY in last.error.actions
    assert last.view().can_generate and not last.view().running
    last.close()


def test_cancel_before_the_job_id_is_known_still_cancels_on_the_runtime(holding_runtime):
    url, _job = holding_runtime
    controller = lifecycle.PanelController(prefs_for(url), RuntimeManager())
    controller.generate(payload())
    controller.cancel()  # before the worker has even submitted
    assert pump_until(controller, lambda: controller.state.finished)
    assert controller.state.status == protocol.JOB_CANCELLED
    assert controller.view().stage_line.startswith("Cancelled") and controller.error is None
    if controller.job_ids:  # submitted after all: it was cancelled there too
        client = RuntimeClient(url)
        assert lifecycle.wait_until(
            lambda: client.job(controller.job_ids[0])["status"] == protocol.JOB_CANCELLED, 10)
    controller.close()


def test_status_turns_ready_within_two_seconds_of_the_runtime(pool, config_dir):
    ready_at: list[float] = []

    def slow_loader():
        time.sleep(3.0)
        ready_at.append(time.monotonic())
        return object()  # stands for a loaded pipeline; no job is submitted here

    app = create_app(ServerConfig(token_path=config_dir / "token"), pool=pool, loader=slow_loader)
    with BackgroundServer(app) as server:
        controller = lifecycle.PanelController(prefs_for(server.url), RuntimeManager())
        controller.start()
        assert pump_until(controller, lambda: controller.runtime_phase == messages.PHASE_LOADING, 5)
        assert "loading the model" in controller.view().runtime_line
        assert pump_until(controller, lambda: controller.runtime_phase == messages.PHASE_READY, 10)
        seen = time.monotonic()
        controller.close()
    assert ready_at and seen - ready_at[0] < 2.0, seen - ready_at[0]


def test_runtime_without_a_model_says_so_once_with_its_fix(pool, config_dir):
    app = create_app(ServerConfig(token_path=config_dir / "token"), pool=pool)  # --backend none
    with BackgroundServer(app) as server:
        controller = lifecycle.PanelController(prefs_for(server.url), RuntimeManager())
        controller.start()
        assert pump_until(controller, lambda: controller.runtime_phase == messages.PHASE_NO_MODEL)
        view = controller.view()
        controller.close()
    assert view.runtime_line == "Runtime: up, but without a model"
    assert view.error.code == protocol.ERROR_NO_BACKEND and "no model" in view.error.text
    assert view.error.actions == (messages.ACTION_PREFERENCES, messages.ACTION_SETUP)
    assert view.error.text not in view.runtime_line  # shown once


def test_wrong_token_is_one_sentence_with_its_fix(pool, config_dir, tmp_path):
    # Another runtime (another user's token) answers on the port.
    other = create_app(ServerConfig(token_path=tmp_path / "other-token"), pool=pool)
    (config_dir).mkdir(parents=True, exist_ok=True)
    (config_dir / "token").write_text("not-the-other-runtimes-token\n")
    with BackgroundServer(other) as server:
        controller = lifecycle.PanelController(prefs_for(server.url), RuntimeManager())
        controller.start()
        assert pump_until(controller, lambda: controller.error is not None)
        error = controller.error
        controller.close()
    assert error.code == protocol.ERROR_UNAUTHORIZED
    assert "refused CadSnap's access token" in error.text and "Authorization" not in error.text
    assert error.actions == (messages.ACTION_PREFERENCES,)
    assert controller.view().runtime_line == "Runtime: answering, but not to CadSnap"


def test_nothing_answering_says_how_to_start_it(config_dir):
    url = f"http://127.0.0.1:{free_port()}"
    controller = lifecycle.PanelController(prefs_for(url), RuntimeManager())
    controller.start()
    assert pump_until(controller, lambda: controller.error is not None)
    controller.close()
    assert controller.error.text.startswith(f"No CadSnap runtime answers at {url};")
    assert messages.ACTION_PREFERENCES in controller.error.actions


def test_a_python_without_the_runtime_offers_set_up(tmp_path, monkeypatch, config_dir):
    monkeypatch.chdir(tmp_path)  # `-m model_runtime` must not find this checkout in the working folder
    base = find_base_python()
    prefs = Preferences(runtime_url=f"http://127.0.0.1:{free_port()}", interpreter=str(base),
                        startup_timeout_s=30)
    manager = RuntimeManager(tmp_path / "logs")
    controller = lifecycle.PanelController(prefs, manager)
    controller.start()
    assert pump_until(controller, lambda: controller.error is not None, 30)
    controller.close()
    manager.stop()
    error = controller.error
    assert error.code == "runtime_not_installed", error
    assert error.text.startswith(f"The Python chosen for the runtime ({base}) does not have CadSnap's")
    assert error.actions[0] == messages.ACTION_SETUP
    assert "No module named" not in error.text


def test_a_png_with_a_damaged_body_disables_generate(config_dir):
    good = png((64, 64))
    damaged = bytearray(good)
    damaged[60:80] = bytes(20)  # header intact, compressed pixels broken
    controller = lifecycle.PanelController(prefs_for("http://127.0.0.1:1"), RuntimeManager())
    assert controller.set_picture(good) and controller.view().can_generate
    assert not controller.set_picture(bytes(damaged))
    view = controller.view()
    assert not view.can_generate
    assert view.error.text.startswith("This picture cannot be read") and view.error.code == "bad_image"
    assert controller.set_picture(good) and controller.view().error is None


def test_a_picture_the_runtime_cannot_decode_is_explained_plainly(pool, config_dir):
    app = create_app(ServerConfig(token_path=config_dir / "token"), pool=pool, job_runner=HoldingJob())
    # A JPEG whose header is whole and whose body is not: only the runtime's decoder notices.
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), "gray").save(buffer, "JPEG")
    data = buffer.getvalue()
    broken = data[:200] + b"\x00" * 40
    with BackgroundServer(app) as server:
        controller = lifecycle.PanelController(prefs_for(server.url), RuntimeManager())
        controller.generate({"image": base64.b64encode(broken).decode(), "n": 1})
        assert pump_until(controller, lambda: controller.state.finished)
        controller.close()
    assert controller.error.code == protocol.ERROR_BAD_IMAGE
    assert controller.error.text.startswith("This picture cannot be read")
    assert "'image'" not in controller.error.text


def test_sandbox_warning_is_one_line_only_when_uncontained():
    assert messages.sandbox_warning({}) == ""
    contained = {"sandbox": {"contained": True, "mechanism": "bwrap", "summary": "ok"}}
    assert messages.sandbox_warning(contained) == ""
    line = messages.sandbox_warning({"sandbox": {"contained": False, "mechanism": "none",
                                                 "summary": "bubblewrap is not installed"}})
    assert line.startswith("⚠") and "bubblewrap is not installed" in line and "\n" not in line



def test_the_winner_caption_shows_the_score_the_status_line_shows(config_dir):
    controller = lifecycle.PanelController(prefs_for("http://127.0.0.1:1"), RuntimeManager())
    controller.job = lifecycle._Job(1)
    controller.state.apply_job({"status": protocol.JOB_DONE, "result": {
        "code": "c", "result": {"brep": "B"}, "score": 0.97,
        "refinement": {"changed": 2, "start_score": 0.7, "score": 0.93},
        "candidates": [{"index": 1, "valid": True, "score": 0.88},
                       {"index": 0, "valid": True, "score": 0.5}]}})
    controller._after_job_change()
    view = controller.view()
    assert [card.caption for card in view.cards] == ["#2 0.97", "#1 0.50"]
    assert "(similarity 0.88 → 0.97). Press OK to insert." in view.stage_line and view.select_index == 1


BOX = 'import cadquery as cq\n\nresult = cq.Workplane("XY").box(30, 20, 10)\n'


def test_building_a_candidate_through_exec_keeps_its_feature_plan(pool, config_dir):
    """A candidate picked without geometry (or without a plan, when a tree is wanted) goes through the
    runtime's /v1/exec, which traces: the built candidate carries the brep and the plan to insert."""
    from freecad_workbench.jobs import Candidate

    app = create_app(ServerConfig(token_path=config_dir / "token"), pool=pool)
    with BackgroundServer(app) as server:
        controller = lifecycle.PanelController(prefs_for(server.url), RuntimeManager())
        picked = Candidate(index=2, code=BOX, valid=True, score=0.5, thumbnail_png="iVBOR")
        assert controller.needs_build(picked, feature_tree=False)
        controller.build(picked)
        assert controller.stage_line == "Building candidate #3…"
        assert pump_until(controller, lambda: controller.built is not None, 30)
        controller.close()
    built = controller.built
    assert (built.index, built.code, built.score, built.thumbnail_png) == (2, BOX, 0.5, "iVBOR")
    assert built.brep and built.feature_plan["status"] == protocol.PLAN_MAPPED
    protocol.check_feature_plan(built.feature_plan)
    assert [f["kind"] for f in built.feature_plan["features"]] == ["pad"]
    assert not controller.needs_build(built, feature_tree=True)


def test_a_fix_made_in_preferences_reaches_the_open_panel(pool, config_dir):
    """The panel opens on a URL where nothing answers; the user fixes the URL in Preferences: the same
    panel drops the old error, watches the new runtime, and its next job goes there."""
    app = create_app(ServerConfig(token_path=config_dir / "token"), pool=pool, job_runner=HoldingJob())
    with BackgroundServer(app) as server:
        controller = lifecycle.PanelController(prefs_for(f"http://127.0.0.1:{free_port()}"), RuntimeManager())
        controller.start()
        assert pump_until(controller, lambda: controller.error is not None)
        assert controller.error.code == "runtime_unreachable"
        assert not controller.use_prefs(controller.prefs)  # nothing changed: nothing restarts
        assert controller.use_prefs(prefs_for(server.url))
        assert controller.error is None and controller.view().runtime_line == "Runtime: checking…"
        assert pump_until(controller, lambda: controller.runtime_phase == messages.PHASE_READY)
        controller.generate(payload())
        assert pump_until(controller, lambda: bool(controller.job_ids))
        assert RuntimeClient(server.url).job(controller.job_ids[0])["status"] in (
            protocol.JOB_QUEUED, protocol.JOB_RUNNING)
        time.sleep(0.3)
        controller.pump()
        assert controller.error is None  # the old watcher's late "not running" is dropped
        controller.close()


def test_a_new_picture_mid_job_cancels_the_old_job_and_forgets_its_result(holding_runtime):
    url, _job = holding_runtime
    controller = lifecycle.PanelController(prefs_for(url), RuntimeManager())
    controller.set_picture(png())
    controller.generate(payload())
    assert pump_until(controller, lambda: bool(controller.job_ids))
    old = controller.job_ids[0]
    controller.set_picture(png((64, 48)))  # the panel's 3D view / Region button during the job
    view = controller.view()
    assert not view.running and view.can_generate and view.cards == []
    assert controller.job is None and not controller.state.finished  # OK finds nothing to insert
    assert view.stage_line == "A new picture: press Generate."
    client = RuntimeClient(url)
    assert lifecycle.wait_until(lambda: client.job(old)["status"] == protocol.JOB_CANCELLED, 10)
    time.sleep(0.2)
    controller.pump()  # the old job's late "cancelled" changes nothing
    assert controller.job is None and controller.error is None
    controller.close()


def test_one_message_at_a_time_and_no_job_failed_when_none_ran(config_dir):
    url = f"http://127.0.0.1:{free_port()}"
    controller = lifecycle.PanelController(prefs_for(url), RuntimeManager())
    controller.generate(payload())  # nothing answers: no job is ever submitted
    assert pump_until(controller, lambda: controller.state.finished)
    assert controller.stage_line == "No job was started; the document is unchanged."
    view = controller.view()
    assert view.error.code == "runtime_unreachable" and view.stage_line == ""  # the error says it all
    # A finished job's "Press OK to insert." never stands under an error.
    controller.state.apply_job({"status": protocol.JOB_DONE, "result": {
        "code": "c", "result": {"brep": "B"}, "score": 0.9, "candidates": [{"index": 0, "valid": True}]}})
    controller._after_job_change()
    assert "Press OK to insert." in controller.stage_line and controller.view().stage_line == ""
    controller.error = None
    assert "Press OK to insert." in controller.view().stage_line
    controller.close()
