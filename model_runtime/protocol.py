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
from typing import Any, TypedDict

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
# The picture search found a better part: its score, where it came from ("model:0+fit",
# "envelope:box"...), evaluations spent of the budget, its render (base64 PNG) and its program.
# Sent each time the best improves; the last one before a cancel is the best so far.
EVENT_BEST = "best"
TERMINAL_EVENTS = frozenset({EVENT_RESULT, EVENT_ERROR, EVENT_CANCELLED})

# Each event's fields besides "type" and "job_id" (the job manager adds job_id to every event).
# The builders below are the only way the runtime makes an event; the workbench reads no other field.
EVENT_FIELDS: dict[str, tuple[str, ...]] = {
    EVENT_STATUS: ("status", "stage", "progress"),
    EVENT_TOKEN: ("candidate", "text"),
    EVENT_CANDIDATE: ("index", "valid", "score", "error", "thumbnail_png"),
    EVENT_BEST: ("score", "source", "evaluations", "budget", "thumbnail_png", "code"),
    EVENT_RESULT: ("result",),
    EVENT_ERROR: ("error",),
    EVENT_CANCELLED: ("error",),
}
# POST /v1/parametrize (issue 21): a shape file in, a program with named parameters out. Request:
# ``name`` (the file name; its extension says the format), ``data`` (base64), ``timeout_s``. Result:
# ``{"result": {PARAMETRIZE_RESULT_FIELDS}}``; refused input: HTTP 422 ``{"error": {code, message}}``.
PARAMETRIZE_REQUEST_FIELDS = ("name", "data", "timeout_s")
PARAMETRIZE_RESULT_FIELDS = ("code", "iou", "bbox_iou", "features", "notes", "kind", "unit", "feature_plan",
                             "brep", "seconds")
# POST /v1/jobs body; a job's result (GET /v1/jobs/{id} "result", the result event's "result");
# one entry of its "candidates" (ranked, best first: the first valid one is the winner).
JOB_REQUEST_FIELDS = ("image", "instruction", "n", "target_size_mm", "frame", "refine", "backend",
                      "search", "budget_s", "evaluations", "view")
# The "sandbox" object of /v1/health (and doctor, serve): what contains generated code here, and whether
# jobs are refused for want of a jail (no opt-in).
SANDBOX_FIELDS = ("contained", "mechanism", "summary", "fix", "refused")
# A result's "search": what the picture search did; "verdict": whether the answer is only a guess, in
# plain words; "instruction": how a user's instruction was applied.
SEARCH_FIELDS = ("source", "score", "envelope", "envelope_score", "evaluations", "seconds", "stopped",
                 "steps")
VERDICT_FIELDS = ("guess", "score", "message")
INSTRUCTION_FIELDS = ("text", "used_by", "constraints", "message")
# A result's "view": the view the picture was read in ("isometric", or a straight view such as "front",
# whose depth is a guess), the in-plane turn undone before reading it (degrees, anticlockwise), and the
# two in plain words ("" for an isometric picture left as it was).
VIEW_FIELDS = ("name", "rotation_deg", "message")
# A request's "view": the view the picture shows when the sender knows it (the workbench's capture of
# the 3D view is always FreeCAD's isometric view); without it the runtime reads it from the picture.
VIEW_ISOMETRIC = "isometric"
JOB_RESULT_FIELDS = ("code", "result", "score", "refinement", "candidates", "backend", "model", "scale",
                     "timings", "search", "verdict", "instruction", "view")
CANDIDATE_FIELDS = ("index", "code", "valid", "score", "error", "thumbnail_png", "volume", "bbox")


def status_event(stage: str, progress: float | None = None, status: str | None = None) -> dict:
    event: dict = {"type": EVENT_STATUS, "stage": stage}
    if progress is not None:
        event["progress"] = progress
    if status is not None:
        event["status"] = status
    return event


def token_event(candidate: int, text: str) -> dict:
    return {"type": EVENT_TOKEN, "candidate": candidate, "text": text}


def candidate_event(index: int, valid: bool, score: float | None, error: dict | None = None,
                    thumbnail_png: str | None = None) -> dict:
    event = {"type": EVENT_CANDIDATE, "index": index, "valid": valid, "score": score, "error": error}
    if thumbnail_png:
        event["thumbnail_png"] = thumbnail_png  # base64 PNG of the candidate's ranking render
    return event


def best_event(score: float, source: str, evaluations: int, budget: int, thumbnail_png: str | None,
               code: str) -> dict:
    """The search's best so far (``EVENT_BEST``)."""
    return {"type": EVENT_BEST, "score": score, "source": source, "evaluations": evaluations,
            "budget": budget, "thumbnail_png": thumbnail_png, "code": code}


def result_event(result: dict) -> dict:
    return {"type": EVENT_RESULT, "result": result}


def error_event(error: dict) -> dict:
    return {"type": EVENT_ERROR, "error": error}


def cancelled_event(error: dict) -> dict:
    return {"type": EVENT_CANCELLED, "error": error}


def error_body(code: str, message: str, detail: dict | None = None) -> dict:
    """``{"error": {"code", "message", "detail"}}``: every error the runtime sends, whatever the status."""
    return {"error": {"code": code, "message": message, "detail": detail or {}}}


def check_event(event: dict) -> None:
    """ValueError when ``event`` is not one of the shapes above (tests hold both sides to it)."""
    kind = event.get("type")
    if kind not in EVENT_FIELDS:
        raise ValueError(f"unknown event type {kind!r}")
    extra = set(event) - {"type", "job_id", *EVENT_FIELDS[kind]}
    if extra:
        raise ValueError(f"{kind} event has fields the protocol does not define: {sorted(extra)}")

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
# No operating-system jail works here and the user has not opted in to running code without one.
ERROR_UNCONTAINED = "uncontained"
ERROR_ALL_INVALID = "all_candidates_invalid"
ERROR_CANCELLED = "cancelled"
ERROR_INTERNAL = "internal_error"


def safe_text(text: Any, limit: int | None = None) -> str:
    """Text from generated code made safe to print and to send: valid UTF-8, optionally capped.

    Lone surrogates (``print(chr(0xD800))``) become ``\\ud800`` escapes instead of failing in an
    encoder far away (an HTTP 500, a CLI traceback).
    """
    value = text if isinstance(text, str) else str(text)
    value = value.encode("utf-8", "backslashreplace").decode("utf-8")
    if limit is not None and len(value) > limit:
        value = value[:limit] + "..."
    return value


def safe_json(value: Any, limit: int | None = 100_000) -> Any:
    """``safe_text`` applied to every string (keys included) of a JSON-ready value."""
    if isinstance(value, str):
        return safe_text(value, limit)
    if isinstance(value, dict):
        return {safe_text(k, 200): safe_json(v, limit) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [safe_json(v, limit) for v in value]
    return value


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


# --- Feature plan (issue 15): a traced program's modelling steps, built by the workbench as a
# PartDesign Body. Lengths in mm, angles in degrees, points and directions in global coordinates
# except 2D sketch geometry, which is in its sketch plane's (x along "x_dir", y = normal x x_dir). ---
FEATURE_PLAN_VERSION = 1
PLAN_MAPPED = "mapped"  # every step became a feature
PLAN_UNMAPPED = "unmapped"  # at least one step could not: "reasons" says which; never guessed
# Each feature kind and its fields besides "kind", "method" (the CadQuery call) and "line".
PLAN_FEATURE_FIELDS: dict[str, tuple[str, ...]] = {
    "pad": ("sketch", "length", "midplane", "reversed"),
    "pocket": ("sketch", "length", "through_all", "midplane", "reversed"),
    "hole": ("sketch", "diameter", "depth", "cut", "cut_diameter", "cut_depth", "cut_angle"),
    "revolution": ("sketch", "axis", "angle"),
    "groove": ("sketch", "axis", "angle"),
    "fillet": ("edges", "radius"),
    "chamfer": ("edges", "size"),
    "thickness": ("faces", "value", "inward", "join"),
    "loft": ("sketch", "sections", "ruled"),  # through the sketch, then each section's one profile
    "polar_pattern": ("originals", "axis_origin", "axis_dir", "angle", "count"),
    # One or two "directions", each {"direction": the originals' sketch x or y axis, "spacing", "count",
    # "centered": the grid stays centred (else its first instance stays put) when they change}.
    "linear_pattern": ("originals", "directions"),
    "mirrored": ("originals", "origin", "normal"),
    "unmapped": ("reason",),
}
PLAN_PROFILE_KINDS = ("circle", "rect", "wire")  # a sketch's closed profiles
PLAN_HOLE_CUTS = ("none", "counterbore", "countersink")


class PlanDim(TypedDict, total=False):
    """A dimension: ``value`` = ``scale`` x the parameter ``param`` when the program named it."""

    value: float
    param: str
    scale: float


class PlanParameter(TypedDict):
    """A named literal of the program: the call ending at (line, col) and its argument (index or keyword)."""

    name: str
    value: float
    line: int
    col: int
    arg: int | str


class FeaturePlan(TypedDict):
    version: int
    status: str
    reasons: list[str]
    parameters: list[PlanParameter]
    features: list[dict]
    volume: float


def check_feature_plan(plan: Any) -> None:
    """ValueError when ``plan`` is not a feature plan this version defines (both sides hold to it)."""
    if not isinstance(plan, dict) or plan.get("version") != FEATURE_PLAN_VERSION:
        raise ValueError(f"not a feature plan of version {FEATURE_PLAN_VERSION}")
    if plan.get("status") not in (PLAN_MAPPED, PLAN_UNMAPPED):
        raise ValueError(f"unknown plan status {plan.get('status')!r}")
    reasons = plan.get("reasons")
    if not isinstance(reasons, list) or (plan["status"] == PLAN_UNMAPPED) != bool(reasons):
        raise ValueError("an unmapped plan needs reasons, a mapped plan has none")
    names = set()
    for parameter in plan.get("parameters", []):
        if set(parameter) != set(PlanParameter.__annotations__) or not str(parameter["name"]).isidentifier():
            raise ValueError(f"bad parameter {parameter!r}")
        names.add(parameter["name"])
    for feature in plan.get("features", []):
        kind = feature.get("kind") if isinstance(feature, dict) else None
        if kind not in PLAN_FEATURE_FIELDS:
            raise ValueError(f"unknown feature kind {kind!r}")
        extra = set(feature) - {"kind", "method", "line", *PLAN_FEATURE_FIELDS[kind]}
        if extra:
            raise ValueError(f"{kind} feature has fields the protocol does not define: {sorted(extra)}")
        for profile in feature.get("sketch", {}).get("profiles", []):
            if profile.get("kind") not in PLAN_PROFILE_KINDS:
                raise ValueError(f"unknown profile kind {profile.get('kind')!r}")
        for value in feature.values():
            if isinstance(value, dict) and "param" in value and value["param"] not in names:
                raise ValueError(f"dimension refers to an undeclared parameter {value['param']!r}")
    if plan["status"] == PLAN_MAPPED and any(f["kind"] == "unmapped" for f in plan["features"]):
        raise ValueError("a mapped plan holds an unmapped step")
