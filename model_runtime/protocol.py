"""The runtime's HTTP contract and on-disk locations, shared with the FreeCAD workbench.

Standard library only: the workbench imports this module inside FreeCAD's Python,
so the two sides of the wire read one definition.

Wire format (all JSON, UTF-8; every request carries ``Authorization: Bearer <token>``):

- ``GET  /v1/health``            -> ``{"status": "ok", "version", "backend", "model", "workers"}``
- ``GET  /v1/info``              -> versions, available backends, configuration
- ``POST /v1/exec``              ``{"code", "timeout_s"?, "formats"?: ["brep", "step", "stl"]}``
                                 -> 200 ``{"result": ExecResult}`` or 422 error (the code failed)
- ``POST /v1/jobs``              ``{"image": base64, "instruction"?, "n"?, "target_size_mm"?, "frame"?,
                                 "refine"?, "backend"?}``
                                 -> 202 ``{"job_id", "status"}``
- ``GET  /v1/jobs/{id}``         -> ``Job`` (status, progress, stage, result, error)
- ``GET  /v1/jobs/{id}/events``  -> NDJSON stream of events until the job ends
- ``POST /v1/jobs/{id}/cancel``  -> ``Job``
- ``GET  /openapi.json``         -> the schema

Errors, whatever the status: ``{"error": {"code": ERROR_*, "message": "a sentence a person can act on",
"detail": {...}}}``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

APP_NAME = "cadsnap"
API_PREFIX = "/v1"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 47615

# Request limits the server enforces and the client may check early.
MAX_REQUEST_BYTES = 16 * 1024 * 1024
MAX_IMAGE_PIXELS = 4096 * 4096
MAX_CODE_CHARS = 100_000
MAX_CANDIDATES = 16

# Job states.
JOB_QUEUED = "queued"
JOB_RUNNING = "running"
JOB_DONE = "done"
JOB_FAILED = "failed"
JOB_CANCELLED = "cancelled"
JOB_TERMINAL = frozenset({JOB_DONE, JOB_FAILED, JOB_CANCELLED})

# Event types in a job's NDJSON stream: {"type": ..., "job_id": ..., ...}.
EVENT_STATUS = "status"  # status, stage, progress (0..1)
EVENT_TOKEN = "token"  # candidate index, text delta
EVENT_CANDIDATE = "candidate"  # one candidate executed: index, valid, score, error
EVENT_RESULT = "result"  # the job's result, last event of a successful job
EVENT_ERROR = "error"  # the job's error, last event of a failed job
EVENT_CANCELLED = "cancelled"  # last event of a cancelled job

# Error codes (the "code" field of an error body).
ERROR_UNAUTHORIZED = "unauthorized"
ERROR_BAD_REQUEST = "bad_request"
ERROR_TOO_LARGE = "request_too_large"
ERROR_BAD_IMAGE = "bad_image"
ERROR_NOT_FOUND = "not_found"
ERROR_NO_BACKEND = "no_backend"
ERROR_SYNTAX = "syntax_error"
ERROR_POLICY = "policy_violation"
ERROR_RUNTIME = "runtime_error"
ERROR_TIMEOUT = "timeout"
ERROR_RESOURCE = "resource_limit"
ERROR_NO_RESULT = "no_result"
ERROR_INVALID_SOLID = "invalid_solid"
ERROR_OUTPUT_TOO_LARGE = "output_too_large"
ERROR_WORKER_CRASHED = "worker_crashed"
ERROR_ALL_INVALID = "all_candidates_invalid"
ERROR_CANCELLED = "cancelled"
ERROR_INTERNAL = "internal_error"


def config_dir() -> Path:
    """The per-user configuration folder (token, server settings)."""
    if env := os.environ.get("CADSNAP_CONFIG_DIR"):
        return Path(env)
    if sys.platform == "win32":
        base = Path(os.environ.get("APPDATA", Path.home() / "AppData" / "Roaming"))
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Application Support"
    else:
        base = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return base / APP_NAME


def cache_dir() -> Path:
    """The per-user cache folder (built wheels, downloaded or converted models)."""
    if env := os.environ.get("CADSNAP_CACHE_DIR"):
        return Path(env)
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA", Path.home() / "AppData" / "Local"))
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Caches"
    else:
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / APP_NAME


def token_path() -> Path:
    """Where the server keeps its bearer token (mode 0600, created on first start)."""
    return config_dir() / "token"


def read_token(path: Path | None = None) -> str | None:
    """The token, or None when the server has never started for this user."""
    try:
        return (path or token_path()).read_text(encoding="utf-8").strip() or None
    except OSError:
        return None


def base_url(host: str = DEFAULT_HOST, port: int = DEFAULT_PORT) -> str:
    return f"http://{host}:{port}"
