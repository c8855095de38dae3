"""Runs blocking work (HTTP, child processes) off the GUI thread and hands results back to it.

Worker threads put messages on a queue; a QTimer on the GUI thread drains it and calls the handlers.
That keeps every widget touched from the GUI thread only, with nothing Qt-specific in the workers.
"""

from __future__ import annotations

import queue
import threading
import traceback
from collections.abc import Callable

from .qt import QtCore


class Background:
    """One owner's background work. ``post`` from any thread; handlers run on the GUI thread."""

    def __init__(self, handler: Callable[[str, object], None], interval_ms: int = 40) -> None:
        self._handler = handler
        self._queue: queue.Queue = queue.Queue()
        self._timer = QtCore.QTimer()
        self._timer.setInterval(interval_ms)
        self._timer.timeout.connect(self._drain)
        self._timer.start()

    def post(self, kind: str, payload: object = None) -> None:
        self._queue.put((kind, payload))

    def start(self, work: Callable[[], None], name: str = "cadsnap-worker") -> threading.Thread:
        """Run ``work`` on a daemon thread; an unexpected exception arrives as ("crash", text)."""

        def guarded() -> None:
            try:
                work()
            except Exception as error:  # noqa: BLE001 - reported in the panel instead of lost
                self.post("crash", f"{error}\n{traceback.format_exc()}")

        thread = threading.Thread(target=guarded, name=name, daemon=True)
        thread.start()
        return thread

    def stop(self) -> None:
        self._timer.stop()

    def _drain(self) -> None:
        while True:
            try:
                kind, payload = self._queue.get_nowait()
            except queue.Empty:
                return
            self._handler(kind, payload)
