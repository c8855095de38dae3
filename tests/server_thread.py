"""The runtime app served by uvicorn in a thread, for tests: ``with BackgroundServer(app) as srv``."""

from __future__ import annotations

import threading
import time

from model_runtime import protocol
from model_runtime.server import check_loopback


class BackgroundServer:
    """uvicorn in a daemon thread on a free loopback port; ``url`` once entered."""

    def __init__(self, app, host: str = protocol.DEFAULT_HOST, port: int = 0):
        import uvicorn

        check_loopback(host)
        self.server = uvicorn.Server(
            uvicorn.Config(app, host=host, port=port, log_level="warning", timeout_graceful_shutdown=2,
                           lifespan="on"))
        self.server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
        self.thread = threading.Thread(target=self.server.run, daemon=True, name="cadsnap-uvicorn")
        self.url = ""

    def __enter__(self) -> BackgroundServer:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the server did not start")
            time.sleep(0.02)
        host, port = self.server.servers[0].sockets[0].getsockname()[:2]
        self.url = f"http://{host}:{port}"
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(15)
