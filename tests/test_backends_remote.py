"""The remote backend against a real OpenAI-compatible server: llama-cpp-python's own, on loopback,
serving the tiny GGUF our exporter made."""

from __future__ import annotations

import io
import socket
import subprocess
import sys
import threading
import time
import urllib.request

import pytest

from model_runtime.backends import BackendError, GenerationCancelled, GenerationSettings, load_backend
from tests.backend_assets import BOX_PROGRAM, sample_image, trained_gguf

pytestmark = pytest.mark.llama


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server_url(tmp_path_factory):
    pytest.importorskip("sse_starlette", reason="llama-cpp-python's server extras are not installed")
    models = trained_gguf(tmp_path_factory)
    port = _free_port()
    cmd = [
        sys.executable, "-m", "llama_cpp.server",
        "--model", str(models / "tiny-q8_0.gguf"),
        "--clip_model_path", str(models / "mmproj-tiny-f16.gguf"),
        "--chat_format", "mtmd",  # the chat template our exporter's converter put in the GGUF
        "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "512", "--verbose", "false",
    ]  # fmt: skip
    log = tmp_path_factory.mktemp("server") / "server.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/v1"
    deadline = time.monotonic() + 60
    while True:
        try:
            urllib.request.urlopen(f"{url}/models", timeout=1).read()
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail(f"llama_cpp.server did not start:\n{log.read_text()[-3000:]}")
            time.sleep(0.3)
    yield url
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()


def test_remote_generates_and_streams(server_url):
    backend = load_backend("remote", base_url=server_url, remote_model="tiny")
    streamed: dict[int, list[str]] = {}
    texts = backend.generate(
        sample_image(5, 48), None, GenerationSettings(n=2, max_new_tokens=64),
        on_token=lambda i, t: streamed.setdefault(i, []).append(t),
    )  # fmt: skip
    assert len(texts) == 2 and all("".join(streamed[i]) == texts[i] for i in range(2))
    # The server renders the GGUF's chat template, close to but not byte-identical with our prompt:
    # the program survives that; whitespace may not.
    assert "".join(texts[0].split()) == "".join(BOX_PROGRAM.split())


def test_remote_pipeline_reaches_a_valid_solid(server_url):
    from model_runtime.pipeline import GenerateRequest, Pipeline
    from model_runtime.sandbox import SandboxPool

    buffer = io.BytesIO()
    sample_image(2, 64).save(buffer, format="WEBP")
    with SandboxPool(workers=1, timeout_s=20.0) as pool:
        result = Pipeline(load_backend("remote", base_url=server_url), pool, render_size=96).run(
            GenerateRequest(image=buffer.getvalue(), n=1, max_new_tokens=64, refine=False, search=False)
        )
    assert result.exec_result.volume == pytest.approx(6000, rel=1e-6) and result.backend == "remote"


def test_remote_cancel(server_url):
    cancel = threading.Event()
    backend = load_backend("remote", base_url=server_url)
    with pytest.raises(GenerationCancelled):
        backend.generate(sample_image(), None, GenerationSettings(n=2), on_token=lambda i, t: cancel.set(),
                         cancel=cancel)  # fmt: skip


def test_unreachable_server_is_a_clear_error():
    backend = load_backend("remote", base_url=f"http://127.0.0.1:{_free_port()}/v1")
    with pytest.raises(BackendError, match="cannot reach the remote server"):
        backend.generate(sample_image(), None, GenerationSettings(n=1, max_new_tokens=4))
