"""The stdlib client's handling of the wire: auth header, error bodies, NDJSON streams, timeouts,
no proxy. A scripted loopback HTTP server plays each answer; the real runtime is exercised in
test_workbench_runtime.py."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from freecad_workbench.client import (
    ApiError,
    ClientError,
    ClientTimeout,
    RuntimeClient,
    RuntimeUnreachable,
)
from model_runtime import protocol


class Scripted(BaseHTTPRequestHandler):
    routes: dict = {}
    seen: list = []

    def log_message(self, *args) -> None:
        pass

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length)) if length else None
        type(self).seen.append((self.command, self.path, self.headers.get("Authorization"), body))
        handler = self.routes.get((self.command, self.path))
        if handler is None:
            self._json(404, {"error": {"code": "not_found", "message": "no route"}})
            return
        handler(self)

    do_GET = do_POST = _answer  # noqa: N815

    def _json(self, status: int, payload, raw: bytes | None = None) -> None:
        data = raw if raw is not None else json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture
def server():
    Scripted.routes, Scripted.seen = {}, []
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Scripted)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_token_from_file_is_sent_and_json_comes_back(server, tmp_path, monkeypatch):
    httpd, url = server
    monkeypatch.setenv("CADSNAP_CONFIG_DIR", str(tmp_path))
    monkeypatch.setenv("http_proxy", "http://192.0.2.1:9")  # must be ignored for the loopback runtime
    Scripted.routes[("GET", "/v1/health")] = lambda h: h._json(200, {"status": "ok", "version": "0.1.0"})
    client = RuntimeClient(url)
    assert client.health()["status"] == "ok"
    assert Scripted.seen[-1][2] is None  # no token file yet: no header
    protocol.token_path().write_text("s3cret\n")
    client.health()
    assert Scripted.seen[-1][2] == "Bearer s3cret"


def test_error_bodies_become_typed_errors(server):
    _, url = server
    Scripted.routes[("POST", "/v1/exec")] = lambda h: h._json(422, {"error": {
        "code": protocol.ERROR_SYNTAX, "message": "Line 3: invalid syntax.", "detail": {"line": 3}}})
    Scripted.routes[("GET", "/v1/info")] = lambda h: h._json(401, None, raw=b"nope")
    client = RuntimeClient(url, token="t")
    with pytest.raises(ApiError) as caught:
        client.exec_code("result = (", timeout_s=5)
    error = caught.value
    assert (error.code, error.status, error.detail, error.message) == (
        protocol.ERROR_SYNTAX, 422, {"line": 3}, "Line 3: invalid syntax.")
    assert Scripted.seen[-1][3] == {"code": "result = (", "formats": ["brep"], "timeout_s": 5}
    with pytest.raises(ApiError) as caught:
        client.info()
    assert caught.value.code == protocol.ERROR_UNAUTHORIZED and "token" in caught.value.message
    with pytest.raises(ClientError, match="at most"):
        client.exec_code("x" * (protocol.MAX_CODE_CHARS + 1))


def test_submit_and_stream_events(server):
    _, url = server
    events = [{"type": "status", "status": "running", "progress": 0.5},
              {"type": "token", "index": 0, "text": "import cadquery as cq"},
              {"type": "result", "result": {"code": "c", "brep": "B"}}]

    def stream(handler):
        handler.send_response(200)
        handler.send_header("Content-Type", "application/x-ndjson")
        handler.end_headers()
        for event in events:
            handler.wfile.write(json.dumps(event).encode() + b"\n\n")
            handler.wfile.flush()
            time.sleep(0.05)

    Scripted.routes[("POST", "/v1/jobs")] = lambda h: h._json(202, {"job_id": "abc", "status": "queued"})
    Scripted.routes[("GET", "/v1/jobs/abc/events")] = stream
    client = RuntimeClient(url, token="t")
    assert client.submit_job({"image": "x", "n": 1}) == "abc"
    with client.events("abc") as received:
        assert list(received) == events


def test_stream_close_from_another_thread_ends_iteration(server):
    _, url = server

    def endless(handler):
        handler.send_response(200)
        handler.end_headers()
        try:
            while True:
                handler.wfile.write(b'{"type": "status"}\n')
                handler.wfile.flush()
                time.sleep(0.05)
        except OSError:
            pass

    Scripted.routes[("GET", "/v1/jobs/j/events")] = endless
    stream = RuntimeClient(url, token="t").events("j")
    threading.Timer(0.3, stream.close).start()
    started = time.monotonic()
    count = sum(1 for _ in stream)
    assert count >= 1 and time.monotonic() - started < 5


def test_silence_and_absence(server):
    _, url = server
    Scripted.routes[("GET", "/v1/health")] = lambda h: time.sleep(1.5) or h._json(200, {})
    with pytest.raises(ClientTimeout):
        RuntimeClient(url, timeout_s=0.3).health()
    with pytest.raises(ClientError, match="no job id"):
        Scripted.routes[("POST", "/v1/jobs")] = lambda h: h._json(202, {"status": "queued"})
        RuntimeClient(url).submit_job({})
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(RuntimeUnreachable, match="No CadSnap runtime answers"):
        RuntimeClient(f"http://127.0.0.1:{port}").health()
