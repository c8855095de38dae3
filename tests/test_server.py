"""The HTTP server over real HTTP on loopback: uvicorn in a thread, httpx as the client.

Generate jobs use a small real job function defined here (it builds a box in the sandbox and
reports progress); the model pipeline is the backends' to wire and test.
"""

from __future__ import annotations

import base64
import io
import json
import stat
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from PIL import Image

from model_runtime import protocol
from model_runtime.sandbox import SandboxPool
from model_runtime.sandbox.jail import uncontained_allowed
from model_runtime.server import (
    NonLoopbackHost,
    ServerConfig,
    check_loopback,
    create_app,
    ensure_token,
    remove_server_info,
    write_server_info,
)
from tests.server_thread import BackgroundServer

LIMIT = 256 * 1024
BOX = "import cadquery as cq\nresult = cq.Workplane().box({x}, 2, 3)\n"


def png_b64(size=(32, 24), mode="RGB") -> str:
    buf = io.BytesIO()
    Image.new(mode, size).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


class BoxJob:
    """A real job: reports progress, waits for ``release`` when asked to hold, builds a box."""

    name = "test-box-job"

    def __init__(self, pool: SandboxPool):
        self.pool = pool
        self.release = threading.Event()

    def __call__(self, body, emit, cancel):
        from model_runtime.pipeline import PipelineError

        steps = 4
        for i in range(steps):
            emit({"type": protocol.EVENT_STATUS, "stage": "building", "progress": i / steps})
            if body.get("instruction") == "hold":
                while not self.release.wait(0.05):
                    if cancel.is_set():
                        raise PipelineError(protocol.ERROR_CANCELLED, "cancelled")
        x = body.get("n", 1)
        emit({"type": protocol.EVENT_CANDIDATE, "index": 0, "valid": True, "score": 1.0, "error": None})
        res = self.pool.run(BOX.format(x=x), timeout_s=30)
        return {"code": BOX.format(x=x), "result": res.to_dict(), "candidates": []}


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    cfg_dir = tmp_path_factory.mktemp("config")
    mp = pytest.MonkeyPatch()
    mp.setenv("CADSNAP_CONFIG_DIR", str(cfg_dir))
    with SandboxPool(workers=2, timeout_s=5) as pool:
        job = BoxJob(pool)
        config = ServerConfig(max_request_bytes=LIMIT, max_concurrent_jobs=1, token_path=cfg_dir / "token")
        app = create_app(config, pool=pool, job_runner=job)
        bare = create_app(ServerConfig(token_path=cfg_dir / "token"), pool=pool)  # no backend
        with BackgroundServer(app) as srv, BackgroundServer(bare) as bare_srv:
            token = (cfg_dir / "token").read_text().strip()
            auth = {"Authorization": f"Bearer {token}"}
            with httpx.Client(base_url=srv.url, headers=auth, timeout=60) as client:
                yield {
                    "url": srv.url,
                    "bare_url": bare_srv.url,
                    "token": token,
                    "client": client,
                    "job": job,
                    "cfg_dir": cfg_dir,
                }
    mp.undo()


def assert_error(resp: httpx.Response, status: int, code: str) -> dict:
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert set(body) == {"error"}
    assert body["error"]["code"] == code
    assert isinstance(body["error"]["message"], str) and len(body["error"]["message"]) > 10
    assert isinstance(body["error"]["detail"], dict)
    return body["error"]


# -- auth and transport ------------------------------------------------------------------------------


def test_token_file_is_private_and_stable(env):
    path = env["cfg_dir"] / "token"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert ensure_token(path) == env["token"]
    assert len(env["token"]) >= 32


@pytest.mark.parametrize("path", ["/v1/health", "/v1/exec", "/openapi.json", "/v1/does-not-exist"])
def test_no_token_is_401(env, path):
    resp = httpx.get(env["url"] + path)
    err = assert_error(resp, 401, protocol.ERROR_UNAUTHORIZED)
    assert "token" in err["message"]
    assert resp.headers["www-authenticate"] == "Bearer"


@pytest.mark.parametrize(
    "header",
    ["Bearer wrong-token", "Bearer", "Basic dXNlcjpwYXNz", "bearer{t}x", "Token {t}"],
)
def test_wrong_token_is_401(env, header):
    resp = httpx.get(env["url"] + "/v1/health", headers={"Authorization": header.format(t=env["token"])})
    assert_error(resp, 401, protocol.ERROR_UNAUTHORIZED)


def test_foreign_host_header_is_refused(env):
    resp = env["client"].get("/v1/health", headers={"Host": "evil.example:80"})
    assert_error(resp, 403, protocol.ERROR_UNAUTHORIZED)


def test_health_info_and_schema(env):
    c = env["client"]
    health = c.get("/v1/health").json()
    assert health["status"] == "ok" and health["version"]
    assert health["workers"]["workers"] == 2
    info = c.get("/v1/info").json()
    assert info["limits"]["max_request_bytes"] == LIMIT
    assert info["versions"]["cadquery"]
    schema = c.get("/openapi.json").json()
    for path in ("/v1/exec", "/v1/jobs", "/v1/jobs/{job_id}", "/v1/jobs/{job_id}/events", "/v1/health"):
        assert path in schema["paths"]


def test_unknown_path_and_method_are_json(env):
    assert_error(env["client"].get("/v1/nothing"), 404, protocol.ERROR_NOT_FOUND)
    assert_error(env["client"].delete("/v1/exec"), 405, protocol.ERROR_BAD_REQUEST)
    assert_error(env["client"].get("/v1/jobs/unknown"), 404, protocol.ERROR_NOT_FOUND)


def test_loopback_only():
    for host in ("0.0.0.0", "192.168.1.10", "::", "example.com"):
        with pytest.raises(NonLoopbackHost):
            check_loopback(host)
    check_loopback("127.0.0.1")


# -- bad bodies ---------------------------------------------------------------------------------------


def test_oversize_body_with_length_is_413(env):
    resp = env["client"].post(
        "/v1/exec", content=b"x" * (LIMIT + 1), headers={"Content-Type": "application/json"}
    )
    err = assert_error(resp, 413, protocol.ERROR_TOO_LARGE)
    assert "limit" in err["message"]


def test_oversize_chunked_body_is_413(env):
    def chunks():
        for _ in range(LIMIT // 8192 + 8):
            yield b"y" * 8192

    resp = env["client"].post("/v1/exec", content=chunks(), headers={"Content-Type": "application/json"})
    assert_error(resp, 413, protocol.ERROR_TOO_LARGE)


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        (b"\x00\xff garbage", "JSON"),
        (b'{"code": ', "JSON"),
        (b"[1, 2, 3]", "body"),
        (json.dumps({"code": 42}).encode(), "code"),
        (json.dumps({"code": "x", "formats": ["obj"]}).encode(), "formats"),
        (json.dumps({"code": "x", "timeout_s": -1}).encode(), "timeout_s"),
        (json.dumps({"code": "x", "surprise": 1}).encode(), "surprise"),
        (json.dumps({"code": "x" * (protocol.MAX_CODE_CHARS + 1)}).encode(), "code"),
    ],
)
def test_garbage_exec_bodies_are_400(env, content, needle):
    resp = env["client"].post("/v1/exec", content=content, headers={"Content-Type": "application/json"})
    err = assert_error(resp, 400, protocol.ERROR_BAD_REQUEST)
    assert needle in err["message"]


# -- exec ---------------------------------------------------------------------------------------------


def test_exec_returns_the_solid_and_exports(env):
    resp = env["client"].post("/v1/exec", json={"code": BOX.format(x=1), "formats": ["brep", "step", "stl"]})
    assert resp.status_code == 200, resp.text
    result = resp.json()["result"]
    assert result["volume"] == pytest.approx(6.0)
    assert result["bbox"] == pytest.approx([-0.5, -1, -1.5, 0.5, 1, 1.5])
    assert "ISO-10303-21" in result["exports"]["step"]
    assert base64.b64decode(result["exports"]["stl"])[80:84] != b"\x00\x00\x00\x00"


@pytest.mark.parametrize(
    ("code", "error"),
    [
        ("import os\n", protocol.ERROR_POLICY),
        ("result = (\n", protocol.ERROR_SYNTAX),
        ("x = 1 / 0\n", protocol.ERROR_RUNTIME),
        ("x = 1\n", protocol.ERROR_NO_RESULT),
        ("while True:\n    pass\n", protocol.ERROR_TIMEOUT),
    ],
)
def test_failing_code_is_422_with_typed_error(env, code, error):
    resp = env["client"].post("/v1/exec", json={"code": code, "timeout_s": 1.5})
    err = assert_error(resp, 422, error)
    if error in (protocol.ERROR_POLICY, protocol.ERROR_RUNTIME):
        assert err["detail"]["line"] == 1


def test_twenty_concurrent_exec_requests(env):
    def one(i: int) -> tuple[int, httpx.Response]:
        return i, env["client"].post("/v1/exec", json={"code": BOX.format(x=i + 1), "timeout_s": 60})

    with ThreadPoolExecutor(max_workers=20) as ex:
        answers = list(ex.map(one, range(20)))
    for i, resp in answers:
        assert resp.status_code == 200, resp.text
        assert resp.json()["result"]["volume"] == pytest.approx(6.0 * (i + 1))


# -- jobs ---------------------------------------------------------------------------------------------


def test_no_backend_is_503(env):
    resp = httpx.post(
        env["bare_url"] + "/v1/jobs",
        json={"image": png_b64()},
        headers={"Authorization": f"Bearer {env['token']}"},
    )
    err = assert_error(resp, 503, protocol.ERROR_NO_BACKEND)
    assert "model" in err["message"].lower()


@pytest.mark.parametrize(
    ("image", "needle"),
    [
        ("not base64 at all!", "base64"),
        (base64.b64encode(b"hello, not a picture").decode(), "picture"),
        (png_b64((4097, 4097), mode="1"), "pixels"),
    ],
)
def test_bad_images_are_400(env, image, needle):
    err = assert_error(env["client"].post("/v1/jobs", json={"image": image}), 400, protocol.ERROR_BAD_IMAGE)
    assert needle in err["message"]


def test_bad_job_fields_are_400(env):
    for body in (
        {"image": png_b64(), "n": 0},
        {"image": png_b64(), "n": protocol.MAX_CANDIDATES + 1},
        {"image": png_b64(), "target_size_mm": -5},
        {"n": 2},
    ):
        assert_error(env["client"].post("/v1/jobs", json=body), 400, protocol.ERROR_BAD_REQUEST)


def test_job_runs_and_streams_events(env):
    c = env["client"]
    resp = c.post("/v1/jobs", json={"image": png_b64(), "n": 2})
    assert resp.status_code == 202, resp.text
    job_id = resp.json()["job_id"]
    with c.stream("GET", f"/v1/jobs/{job_id}/events") as stream:
        assert stream.headers["content-type"].startswith("application/x-ndjson")
        events = [json.loads(line) for line in stream.iter_lines() if line.strip()]
    assert all(e["job_id"] == job_id for e in events)
    kinds = [e["type"] for e in events]
    assert kinds[-1] == protocol.EVENT_RESULT and kinds.count(protocol.EVENT_RESULT) == 1
    assert protocol.EVENT_CANDIDATE in kinds
    progress = [e["progress"] for e in events if e["type"] == protocol.EVENT_STATUS]
    assert progress == sorted(progress)
    assert events[-1]["result"]["result"]["volume"] == pytest.approx(12.0)
    job = c.get(f"/v1/jobs/{job_id}").json()
    assert job["status"] == protocol.JOB_DONE and job["progress"] == 1.0
    assert job["result"]["result"]["volume"] == pytest.approx(12.0)


def test_jobs_beyond_the_limit_queue_and_cancel(env):
    c, job = env["client"], env["job"]
    job.release.clear()
    first = c.post("/v1/jobs", json={"image": png_b64(), "instruction": "hold"}).json()["job_id"]
    # the first job must hold the only slot before the others arrive (a busy machine starts it late)
    deadline = time.monotonic() + 10
    while c.get(f"/v1/jobs/{first}").json()["status"] != protocol.JOB_RUNNING and time.monotonic() < deadline:
        time.sleep(0.02)
    second = c.post("/v1/jobs", json={"image": png_b64(), "instruction": "hold"}).json()["job_id"]
    third = c.post("/v1/jobs", json={"image": png_b64(), "n": 3}).json()["job_id"]
    try:
        described = c.get(f"/v1/jobs/{second}").json()
        assert described["status"] == protocol.JOB_QUEUED and described["queue_position"] == 0
        # Cancel one that waits and one that runs.
        assert c.post(f"/v1/jobs/{second}/cancel").json()["status"] == protocol.JOB_CANCELLED
        c.post(f"/v1/jobs/{first}/cancel")
        with c.stream("GET", f"/v1/jobs/{first}/events") as stream:
            events = [json.loads(line) for line in stream.iter_lines() if line.strip()]
        assert events[-1]["type"] == protocol.EVENT_CANCELLED
        assert c.get(f"/v1/jobs/{first}").json()["status"] == protocol.JOB_CANCELLED
        # The queue moves on: the third job runs to the end.
        with c.stream("GET", f"/v1/jobs/{third}/events") as stream:
            last = [json.loads(line) for line in stream.iter_lines() if line.strip()][-1]
        assert last["type"] == protocol.EVENT_RESULT
        assert last["result"]["result"]["volume"] == pytest.approx(18.0)
    finally:
        job.release.set()


def test_server_info_file(tmp_path, monkeypatch):
    monkeypatch.setenv("CADSNAP_CONFIG_DIR", str(tmp_path))
    path = write_server_info("http://127.0.0.1:1234")
    assert json.loads(path.read_text())["url"] == "http://127.0.0.1:1234"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    remove_server_info()
    assert not path.exists()


# -- the real pipeline, end to end -----------------------------------------------------------------


@pytest.mark.slow  # trains the shared tiny model when no backend test ran first in the session (~40 s)
def test_generate_job_end_to_end_with_a_real_tiny_model(env, tmp_path_factory):
    """serve's wiring: a tiny trained LLaVA through the hf backend, the pipeline, the sandbox, HTTP."""
    from model_runtime.server import build_loader
    from tests.backend_assets import trained_llava

    model_dir = trained_llava(tmp_path_factory)
    config = ServerConfig(backend="hf", model=str(model_dir), token_path=env["cfg_dir"] / "token")
    with SandboxPool(workers=1, timeout_s=30) as pool:
        app = create_app(config, pool=pool, loader=build_loader(config, pool))
        with (
            BackgroundServer(app) as srv,
            httpx.Client(
                base_url=srv.url, timeout=300, headers={"Authorization": f"Bearer {env['token']}"}
            ) as c,
        ):
            resp = c.post("/v1/jobs", json={"image": png_b64((48, 48)), "n": 1})
            assert resp.status_code == 202, resp.text
            job_id = resp.json()["job_id"]
            with c.stream("GET", f"/v1/jobs/{job_id}/events") as stream:
                events = [json.loads(line) for line in stream.iter_lines() if line.strip()]
            assert events[-1]["type"] == protocol.EVENT_RESULT, events[-1]
            result = events[-1]["result"]
            assert result["backend"] == "hf"
            assert result["result"]["volume"] == pytest.approx(30 * 20 * 10)
            assert "box(30, 20, 10)" in result["candidates"][0]["code"]  # as the model wrote it
            plan = result["result"]["feature_plan"]  # the winner's, for the workbench's feature tree
            protocol.check_feature_plan(plan)
            assert plan["status"] == protocol.PLAN_MAPPED
            assert all(f"\n{p['name']} = " in result["code"] for p in plan["parameters"])
            health = c.get("/v1/health").json()
            assert health["backend"] == "hf" and health["backend_state"] == "ready"


def test_exec_output_from_generated_code_is_always_carried(env):
    # Lone surrogates and huge messages from the code: a JSON answer, never a 500.
    client = env["client"]
    printed = client.post("/v1/exec", json={"code": BOX.format(x=1) + "print(chr(0xD800))\n"})
    assert printed.status_code == 200, printed.text
    assert printed.json()["result"]["stdout"] == "\\ud800\n"
    raised = client.post("/v1/exec", json={"code": "raise ValueError(chr(0xDFFF) * 100000)\n"})
    error = assert_error(raised, 422, protocol.ERROR_RUNTIME)
    assert len(error["message"]) < 5000 and "\\udfff" in error["message"]


def test_health_says_how_generated_code_is_contained(env):
    sandbox = env["client"].get("/v1/health").json()["sandbox"]
    assert set(sandbox) == set(protocol.SANDBOX_FIELDS)
    assert isinstance(sandbox["contained"], bool) and sandbox["summary"]
    assert sandbox["refused"] is (not sandbox["contained"] and not uncontained_allowed())
