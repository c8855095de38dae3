"""HTTP client for the CadSnap runtime, standard library only (it runs inside FreeCAD's Python).

Every call blocks: the GUI calls it from a worker thread, never from Qt's thread.
Failures become typed :class:`ClientError` subclasses whose ``message`` a person can act on.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import json
import socket
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from model_runtime import protocol

ERROR_UNREACHABLE = "runtime_unreachable"
ERROR_CLIENT_TIMEOUT = "client_timeout"
ERROR_BAD_RESPONSE = "bad_response"
ERROR_NO_TOKEN = "no_token"
# socket.timeout is an alias of TimeoutError from Python 3.10; FreeCAD 0.20 may embed 3.8.
_TIMEOUTS = (TimeoutError, socket.timeout)


class ClientError(Exception):
    """A request to the runtime failed. ``code`` is a protocol ERROR_* string or one of this module's."""

    code = protocol.ERROR_INTERNAL

    def __init__(self, message: str, *, code: str | None = None, status: int | None = None,
                 detail: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.status = status
        self.detail = detail or {}


class RuntimeUnreachable(ClientError):
    """Nothing answers on the runtime URL (not started, still starting, or a wrong port)."""

    code = ERROR_UNREACHABLE


class ClientTimeout(ClientError):
    """The runtime accepted the connection but did not answer in time."""

    code = ERROR_CLIENT_TIMEOUT


class ApiError(ClientError):
    """The runtime answered with an error body (``{"error": {"code", "message", "detail"}}``)."""


def _no_proxy_opener() -> urllib.request.OpenerDirector:
    # The runtime is on loopback: a system proxy (http_proxy) must never see the token.
    return urllib.request.build_opener(urllib.request.ProxyHandler({}))


@dataclass
class RuntimeClient:
    """Talks to one runtime. ``token=None`` reads the token file on every request, so a runtime
    started after this client was made (it writes the token on first start) is still reached."""

    base_url: str = field(default_factory=protocol.base_url)
    token: str | None = None
    timeout_s: float = 10.0

    def __post_init__(self) -> None:
        self.base_url = self.base_url.rstrip("/")
        self._opener = _no_proxy_opener()

    # --- endpoints -------------------------------------------------------------------------------

    def health(self, timeout_s: float | None = None) -> dict[str, Any]:
        return self._json("GET", "/health", timeout_s=timeout_s)

    def info(self) -> dict[str, Any]:
        return self._json("GET", "/info")

    def exec_code(self, code: str, *, timeout_s: float | None = None,
                  formats: tuple[str, ...] = ("brep",)) -> dict[str, Any]:
        """Run CadQuery source in the runtime's sandbox; returns the ExecResult dict."""
        if len(code) > protocol.MAX_CODE_CHARS:
            raise ClientError(f"The code is {len(code)} characters; the runtime takes at most "
                              f"{protocol.MAX_CODE_CHARS}.", code=protocol.ERROR_TOO_LARGE)
        body: dict[str, Any] = {"code": code, "formats": list(formats)}
        if timeout_s is not None:
            body["timeout_s"] = timeout_s
        # The HTTP wait covers the sandbox's own limit plus start-up slack.
        wait = (timeout_s or self.timeout_s) + self.timeout_s
        answer = self._json("POST", "/exec", body, timeout_s=wait)
        return answer.get("result", answer)

    def parametrize(self, name: str, data: bytes, *, timeout_s: float = 120.0) -> dict[str, Any]:
        """Make parametric: a shape file's bytes in (read in the runtime's sandbox), the named program,
        its feature plan, BREP and volume IoU against the input out
        (``protocol.PARAMETRIZE_RESULT_FIELDS``)."""
        import base64

        body = {"name": name, "data": base64.b64encode(data).decode("ascii"), "timeout_s": timeout_s}
        answer = self._json("POST", "/parametrize", body, timeout_s=timeout_s + self.timeout_s)
        return answer.get("result", answer)

    def submit_job(self, payload: dict[str, Any]) -> str:
        """POST /v1/jobs with a request body (see ``jobs.GenerateRequest.to_json``); returns the job id."""
        answer = self._json("POST", "/jobs", payload)
        job_id = answer.get("job_id")
        if not isinstance(job_id, str) or not job_id:
            raise ClientError("The runtime accepted the job but sent no job id.", code=ERROR_BAD_RESPONSE)
        return job_id

    def job(self, job_id: str) -> dict[str, Any]:
        return self._json("GET", f"/jobs/{urllib.parse.quote(job_id)}")

    def cancel(self, job_id: str) -> dict[str, Any]:
        return self._json("POST", f"/jobs/{urllib.parse.quote(job_id)}/cancel", {})

    def events(self, job_id: str, *, idle_timeout_s: float = 600.0) -> EventStream:
        """Open the job's NDJSON event stream. ``idle_timeout_s`` bounds the wait for each line."""
        response = self._open("GET", f"/jobs/{urllib.parse.quote(job_id)}/events", None, idle_timeout_s)
        return EventStream(response, idle_timeout_s)

    # --- plumbing --------------------------------------------------------------------------------

    def _headers(self, has_body: bool) -> dict[str, str]:
        headers = {"Accept": "application/json"}
        token = self.token or protocol.read_token()
        if token:
            headers["Authorization"] = f"Bearer {token}"
        if has_body:
            headers["Content-Type"] = "application/json"
        return headers

    def _open(self, method: str, path: str, body: dict[str, Any] | None, timeout_s: float | None):
        data = None if body is None else json.dumps(body).encode("utf-8")
        if data is not None and len(data) > protocol.MAX_REQUEST_BYTES:
            raise ClientError(f"The request is {len(data) // 1024} KiB; the runtime takes at most "
                              f"{protocol.MAX_REQUEST_BYTES // 1024} KiB. Use a smaller image.",
                              code=protocol.ERROR_TOO_LARGE)
        url = f"{self.base_url}{protocol.API_PREFIX}{path}"
        headers = self._headers(data is not None)
        request = urllib.request.Request(url, data=data, method=method, headers=headers)
        try:
            return self._opener.open(request, timeout=timeout_s or self.timeout_s)
        except urllib.error.HTTPError as error:
            raise _api_error(error) from None
        except _TIMEOUTS:
            raise ClientTimeout(f"The runtime at {self.base_url} did not answer within "
                                f"{timeout_s or self.timeout_s:.0f} s.") from None
        except (urllib.error.URLError, ConnectionError, http.client.HTTPException) as error:
            reason = getattr(error, "reason", error)
            if isinstance(reason, _TIMEOUTS):
                raise ClientTimeout(f"The runtime at {self.base_url} did not answer within "
                                    f"{timeout_s or self.timeout_s:.0f} s.") from None
            raise RuntimeUnreachable(f"No CadSnap runtime answers at {self.base_url} ({reason}). "
                                     "Start it, or let CadSnap start it (Preferences > CadSnap).") from None

    def _json(self, method: str, path: str, body: dict[str, Any] | None = None,
              timeout_s: float | None = None) -> dict[str, Any]:
        response = self._open(method, path, body, timeout_s)
        try:
            with response:
                raw = response.read()
        except _TIMEOUTS:
            raise ClientTimeout(f"The runtime at {self.base_url} stopped answering mid-reply.") from None
        except (ConnectionError, http.client.HTTPException) as error:
            raise RuntimeUnreachable(f"The runtime at {self.base_url} dropped the connection "
                                     f"({error}).") from None
        return _decode(raw)


class EventStream:
    """Iterates the dict events of a job's NDJSON stream; ``close()`` from any thread stops it."""

    def __init__(self, response, idle_timeout_s: float) -> None:
        self._response = response
        self._idle_timeout_s = idle_timeout_s

    def __iter__(self) -> Iterator[dict[str, Any]]:
        try:
            for raw in self._response:
                line = raw.strip()
                if line:
                    yield _decode(line)
        except _TIMEOUTS:
            raise ClientTimeout(f"The runtime sent no progress for {self._idle_timeout_s:.0f} s.") from None
        except (ConnectionError, http.client.HTTPException, ValueError, OSError) as error:
            if self._response.closed or self._response.fp is None:
                return  # closed by us (cancel or panel closed)
            raise RuntimeUnreachable(f"The runtime dropped the event stream ({error}).") from None
        finally:
            self.close()

    def close(self) -> None:
        # Closing a half-dead socket must never raise.
        with contextlib.suppress(Exception):
            self._response.close()

    def __enter__(self) -> EventStream:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _decode(raw: bytes) -> dict[str, Any]:
    try:
        value = json.loads(raw)
    except ValueError:
        preview = raw[:120].decode("utf-8", "replace")
        raise ClientError(f"The runtime sent something that is not JSON: {preview!r}",
                          code=ERROR_BAD_RESPONSE) from None
    if not isinstance(value, dict):
        raise ClientError("The runtime sent JSON that is not an object.", code=ERROR_BAD_RESPONSE)
    return value


def _api_error(error: urllib.error.HTTPError) -> ApiError:
    try:
        body = json.loads(error.read() or b"{}")
    except (ValueError, OSError):
        body = {}
    finally:
        error.close()
    payload = body.get("error") if isinstance(body, dict) else None
    if isinstance(payload, dict):
        return ApiError(str(payload.get("message") or f"The runtime answered HTTP {error.code}."),
                        code=str(payload.get("code") or protocol.ERROR_INTERNAL), status=error.code,
                        detail=payload.get("detail") if isinstance(payload.get("detail"), dict) else None)
    if error.code == 401:
        return ApiError("The runtime refused the token. Restart the runtime so it rewrites its token file.",
                        code=protocol.ERROR_UNAUTHORIZED, status=401)
    return ApiError(f"The runtime answered HTTP {error.code} {error.reason}.", code=protocol.ERROR_INTERNAL,
                    status=error.code)


def encode_image(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")
