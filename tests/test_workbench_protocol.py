"""One definition of the wire: every event type goes from the runtime's pipeline and job manager, over
real HTTP, through the workbench's client into its JobState; and the workbench reads no field the
runtime never sends."""

from __future__ import annotations

import base64
import dataclasses
import io
import json
import re
import threading
from pathlib import Path

import pytest
from PIL import Image

from freecad_workbench import jobs as workbench_jobs
from freecad_workbench.client import RuntimeClient
from model_runtime import protocol
from model_runtime.backends.base import GenerationCancelled, GenerationSettings, StageTimings
from model_runtime.jobs import Job
from model_runtime.pipeline import Pipeline
from model_runtime.sandbox import SandboxPool
from model_runtime.sandbox.result import ExecResult
from model_runtime.server import ServerConfig, create_app
from tests.server_thread import BackgroundServer

ROOT = Path(__file__).resolve().parents[1]
BOX = 'import cadquery as cq\nresult = cq.Workplane("XY").box(30, 20, 10)\n'
BROKEN = "import cadquery as cq\nresult = cq.Workplane('XY').box(1, 2)\n"
HOLD = "HOLD"


class FixedTexts:
    """Stands in for the model only: fixed programs, streamed word by word; HOLD waits for cancel."""

    name = "fixed"
    model_id = "fixed-texts"
    load_s = 0.0
    follows_instructions = True  # the instruction picks the texts (the pipeline passes it on)

    def __init__(self) -> None:
        self.timings = StageTimings()
        self.texts = [BOX]

    def generate(self, image, instruction=None, settings=None, *, on_token=None, cancel=None):
        settings = settings or GenerationSettings()
        texts = [BROKEN] * settings.n if instruction == "broken" else [BOX, BOX][: settings.n]
        if instruction == "hold":
            on_token(0, "import ")
            while not cancel.wait(0.02):
                pass
            raise GenerationCancelled()
        for index, text in enumerate(texts):
            for word in text.split(" "):
                on_token(index, word + " ")
        return texts

    def close(self) -> None:
        pass


@pytest.fixture(scope="module")
def runtime(tmp_path_factory):
    config_dir = tmp_path_factory.mktemp("protocol-config")
    patch = pytest.MonkeyPatch()
    patch.setenv("CADSNAP_CONFIG_DIR", str(config_dir))
    with SandboxPool(workers=1, timeout_s=20) as pool:
        pipeline = Pipeline(FixedTexts(), pool)
        app = create_app(ServerConfig(token_path=config_dir / "token"), pipeline, pool=pool)
        with BackgroundServer(app) as server:
            yield RuntimeClient(server.url, timeout_s=30)
    patch.undo()


def png() -> str:
    buffer = io.BytesIO()
    Image.new("RGB", (96, 96), "white").save(buffer, "PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def run(client: RuntimeClient, instruction: str | None, cancel_after_first: bool = False):
    # No picture search: these jobs check how events cross, and a search answers even all-invalid ones.
    body = {"image": png(), "n": 2, "refine": False, "search": False}
    if instruction:
        body["instruction"] = instruction
    job_id = client.submit_job(body)
    state, seen = workbench_jobs.JobState(), []
    for event in client.events(job_id, idle_timeout_s=60):
        protocol.check_event(event)  # the runtime sends only the protocol's shapes
        json.loads(json.dumps(event))
        seen.append(event["type"])
        state.apply(event)
        if cancel_after_first and len(seen) == 3:
            threading.Thread(target=client.cancel, args=(job_id,), daemon=True).start()
    return state, seen


def test_every_event_type_round_trips_through_both_sides(runtime):
    done, seen = run(runtime, None)
    assert {protocol.EVENT_STATUS, protocol.EVENT_TOKEN, protocol.EVENT_CANDIDATE} <= set(seen)
    assert seen[-1] == protocol.EVENT_RESULT and done.status == protocol.JOB_DONE
    assert done.candidates[0].code.startswith("import cadquery") and done.candidates[0].valid
    assert all(c.thumbnail_png for c in done.candidates.values())  # the runtime's renders
    best = done.best()
    assert best.brep and best.index == done.winner_index() and (done.backend, done.model) == ("fixed",
                                                                                               "fixed-texts")

    failed, seen = run(runtime, "broken")
    assert seen[-1] == protocol.EVENT_ERROR and failed.status == protocol.JOB_FAILED
    assert failed.error_code == protocol.ERROR_ALL_INVALID and failed.best() is None
    assert all(c.valid is False and c.error for c in failed.candidates.values())

    cancelled, seen = run(runtime, "hold", cancel_after_first=True)
    assert seen[-1] == protocol.EVENT_CANCELLED and cancelled.status == protocol.JOB_CANCELLED
    assert cancelled.error_code == protocol.ERROR_CANCELLED


def test_builders_make_exactly_the_documented_shapes():
    events = [protocol.status_event("generate", 0.5, "running"), protocol.token_event(1, "cq"),
              protocol.candidate_event(0, True, 0.9, None, "iVBOR"), protocol.result_event({"code": "x"}),
              protocol.error_event({"code": "timeout"}), protocol.cancelled_event({"code": "cancelled"}),
              protocol.best_event(0.8, "envelope:box", 12, 64, "iVBOR", "result = 1")]
    assert {event["type"] for event in events} == set(protocol.EVENT_FIELDS)
    for event in events:
        protocol.check_event(event)
    with pytest.raises(ValueError, match="delta"):
        protocol.check_event({"type": protocol.EVENT_TOKEN, "candidate": 0, "delta": "x"})
    with pytest.raises(ValueError, match="unknown event type"):
        protocol.check_event({"type": "progress"})


def _fields_read(source: str) -> set[str]:
    return set(re.findall(r"""\.get\(\s*["']([a-z_]+)["']""", source)) | set(
        re.findall(r"""\[["']([a-z_]+)["']\]""", source))


def test_the_workbench_reads_only_fields_the_runtime_sends():
    job_fields = set(Job(id="j", body={}).to_dict())
    exec_fields = {spec.name for spec in dataclasses.fields(ExecResult)}  # feature_plan among them
    error_fields = {"code", "message", "detail", "line", "candidates"}
    refinement_fields = {"score", "start_score", "evaluations", "changed", "seconds"}
    health_fields = {"status", "version", "backend", "model", "backend_state", "workers", "jobs", "uptime_s",
                     "sandbox", *protocol.SANDBOX_FIELDS}
    sent = ({"type", "job_id"} | {f for fields in protocol.EVENT_FIELDS.values() for f in fields}
            | set(protocol.JOB_RESULT_FIELDS) | set(protocol.CANDIDATE_FIELDS) | job_fields | exec_fields
            | error_fields | refinement_fields | health_fields | set(protocol.SEARCH_FIELDS)
            | set(protocol.VERDICT_FIELDS) | set(protocol.INSTRUCTION_FIELDS)
            | set(protocol.JOB_REQUEST_FIELDS))  # written into the request body, not read
    for name in ("jobs.py", "lifecycle.py", "messages.py"):
        read = _fields_read((ROOT / "freecad_workbench" / name).read_text(encoding="utf-8"))
        assert read <= sent, (name, sorted(read - sent))
    jobs_source = (ROOT / "freecad_workbench" / "jobs.py").read_text(encoding="utf-8")
    for never_sent in ("thumbnail\"", "delta", "best_index"):
        assert never_sent not in jobs_source


def test_the_request_the_workbench_builds_is_the_one_the_server_takes():
    from model_runtime.server import JobBody

    assert set(JobBody.model_fields) == set(protocol.JOB_REQUEST_FIELDS)
    image = base64.b64decode(png())
    body = workbench_jobs.GenerateRequest(image=image, instruction="a plate", n=3, target_size_mm=60,
                                          backend="gguf", refine=False, budget_s=7.5,
                                          view=protocol.VIEW_ISOMETRIC).to_json()
    assert body["budget_s"] == 7.5 and body["view"] == "isometric"
    assert set(body) <= set(protocol.JOB_REQUEST_FIELDS)
    JobBody(**body)  # validates
