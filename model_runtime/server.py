"""The local HTTP server: FastAPI on uvicorn, loopback only, bearer token, JSON errors everywhere.

    app = create_app(ServerConfig(), pipeline=None)      # POST /v1/jobs answers 503 no_backend
    serve(ServerConfig(port=47615))                      # blocks; what `python -m model_runtime serve` runs

The endpoints and bodies are those ``protocol`` documents. The one hand-written piece is
``GuardMiddleware`` (token, Host and body-size checks in front of everything, 404s and the schema
included): Starlette has no request-size limit, and checking the token before routing means an
unauthenticated caller learns nothing, not even which paths exist.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hmac
import io
import json
import logging
import os
import secrets
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from model_runtime import __version__, protocol
from model_runtime.jobs import JobManager, JobRunner, QueueFull
from model_runtime.picture.search import DEFAULT_EVALUATIONS

log = logging.getLogger(__name__)

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
IMAGE_FORMATS = frozenset({"PNG", "JPEG", "WEBP", "BMP", "GIF", "TIFF"})
MAX_EXEC_TIMEOUT_S = 120.0
MAX_INSTRUCTION_CHARS = 2000


@dataclass
class ServerConfig:
    host: str = protocol.DEFAULT_HOST
    port: int = protocol.DEFAULT_PORT
    token_path: Path | None = None  # default: protocol.token_path()
    sandbox_workers: int = 2
    exec_timeout_s: float = 10.0
    memory_mb: int = 2048
    max_concurrent_jobs: int = 1
    max_queued_jobs: int = 64
    max_request_bytes: int = protocol.MAX_REQUEST_BYTES
    # Backend: what `load_backend` gets when serve() builds the pipeline.
    backend: str = "auto"
    model: str | None = None
    mmproj: str | None = None
    adapter: str | None = None
    remote_url: str | None = None
    load_backend: bool = True


class NonLoopbackHost(ValueError):
    """The server only listens on loopback; DESIGN.md forbids anything else."""


def check_loopback(host: str) -> None:
    if host not in LOOPBACK_HOSTS:
        raise NonLoopbackHost(
            f"refusing to listen on {host!r}: the CadSnap runtime binds to loopback only "
            f"({', '.join(sorted(LOOPBACK_HOSTS))}); reach it from elsewhere through an SSH tunnel"
        )


def ensure_token(path: Path | None = None) -> str:
    """The bearer token, created on first use in a file only this user can read (mode 0600)."""
    path = path or protocol.token_path()
    existing = protocol.read_token(path)
    if existing:
        with contextlib.suppress(OSError):
            os.chmod(path, 0o600)
        return existing
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(OSError):
        os.chmod(path.parent, 0o700)
    token = secrets.token_urlsafe(32)
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(token + "\n")
    os.replace(tmp, path)
    return protocol.read_token(path) or token


error_body = protocol.error_body


def error_response(
    status: int,
    code: str,
    message: str,
    detail: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    return JSONResponse(error_body(code, message, detail), status_code=status, headers=headers)


# -- the guard ---------------------------------------------------------------------------------------


class GuardMiddleware:
    """Pure ASGI: Host, token and body size are checked before routing; the body is read at most
    ``max_bytes + 1`` bytes deep, then replayed to the app."""

    def __init__(self, app: Any, token: str, max_bytes: int):
        self.app = app
        self.token = token.encode("utf-8")
        self.max_bytes = max_bytes

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        host = headers.get("host", "").rsplit(":", 1)[0].strip("[]")
        if host and host not in LOOPBACK_HOSTS:
            # A browser page resolving its own name to 127.0.0.1 (DNS rebinding) sends its own Host.
            await self._reject(
                scope,
                receive,
                send,
                403,
                protocol.ERROR_UNAUTHORIZED,
                f"requests must address the runtime as 127.0.0.1 or localhost, not {host!r}",
            )
            return
        auth = headers.get("authorization", "")
        scheme, _, presented = auth.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            presented.strip().encode("utf-8"), self.token
        ):
            what = "no bearer token" if not auth else "a wrong token"
            await self._reject(
                scope,
                receive,
                send,
                401,
                protocol.ERROR_UNAUTHORIZED,
                f"the request carried {what}; send 'Authorization: Bearer <token>' with the token from "
                f"{protocol.token_path()} (the server writes it on first start)",
                {"WWW-Authenticate": "Bearer"},
            )
            return
        length = headers.get("content-length")
        if length is not None:
            if not length.isdigit():
                await self._reject(
                    scope,
                    receive,
                    send,
                    400,
                    protocol.ERROR_BAD_REQUEST,
                    "the Content-Length header is not a number",
                )
                return
            if int(length) > self.max_bytes:
                await self._too_large(scope, receive, send, int(length))
                return
        body, complete = await self._read_body(receive)
        if not complete:
            await self._too_large(scope, receive, send, None)
            return
        sent = False

        async def replay() -> dict:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _read_body(self, receive: Callable) -> tuple[bytes, bool]:
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return b"".join(chunks), True
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                return b"", False
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks), True

    async def _too_large(self, scope: dict, receive: Callable, send: Callable, size: int | None) -> None:
        limit_mib = self.max_bytes / (1024 * 1024)
        said = f"{size} bytes" if size is not None else "larger than the limit"
        await self._reject(
            scope,
            receive,
            send,
            413,
            protocol.ERROR_TOO_LARGE,
            f"the request is {said}; the limit is {limit_mib:g} MiB (send a smaller image)",
            {"Connection": "close"},
        )

    @staticmethod
    async def _reject(
        scope: dict,
        receive: Callable,
        send: Callable,
        status: int,
        code: str,
        message: str,
        headers: dict[str, str] | None = None,
    ) -> None:
        response = error_response(status, code, message, headers=headers)
        await response(scope, receive, send)


# -- request bodies --------------------------------------------------------------------------------


class ExecBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    code: str = Field(max_length=protocol.MAX_CODE_CHARS, description="CadQuery source binding `result`")
    timeout_s: float | None = Field(default=None, gt=0, le=MAX_EXEC_TIMEOUT_S)
    formats: list[Literal["brep", "step", "stl"]] = Field(default_factory=lambda: ["brep"])


class ParametrizeBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=255, description="file name; its extension says the format")
    data: str = Field(min_length=1, description="base64 content of a STEP/IGES/BREP/STL/OBJ/PLY/3MF file")
    timeout_s: float | None = Field(default=None, gt=0, le=600)


class JobBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    image: str = Field(min_length=1, description="base64 PNG/JPEG/WebP/BMP/GIF/TIFF")
    instruction: str | None = Field(default=None, max_length=MAX_INSTRUCTION_CHARS)
    n: int = Field(default=4, ge=1, le=protocol.MAX_CANDIDATES)
    target_size_mm: float | None = Field(default=None, gt=0, le=1e5)
    frame: bool = Field(default=True, description="centre and scale the part like the training renders")
    refine: bool = Field(default=True, description="fit the winner's dimensions to the picture")
    search: bool = Field(default=True, description="the picture search: envelopes, fitted numbers, edits")
    budget_s: float | None = Field(default=5.0, gt=0, le=600, description="cap on the job's seconds")
    evaluations: int | None = Field(default=None, ge=0, le=10_000,
                                    description="the search's budget in evaluations "
                                                f"(default {DEFAULT_EVALUATIONS})")
    view: str | None = Field(default=None, description="the view the picture shows (FreeCAD's standard "
                             "views: isometric, front, top, ...); omitted: read from the picture")
    backend: str | None = None


class BadImage(ValueError):
    pass


def check_image(data_b64: str) -> dict[str, Any]:
    """Format and size of a base64 image, read from its header; BadImage says what is wrong."""
    from PIL import Image, UnidentifiedImageError

    text = data_b64.split(",", 1)[1] if data_b64.startswith("data:") else data_b64
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise BadImage("'image' is not valid base64") from None
    try:
        with Image.open(io.BytesIO(raw)) as image:
            fmt, (width, height) = image.format, image.size
            if width * height > protocol.MAX_IMAGE_PIXELS:
                raise BadImage(
                    f"the image is {width}x{height} pixels; the limit is {protocol.MAX_IMAGE_PIXELS} "
                    "pixels (downscale it)"
                )
            image.load()  # a full decode: a good header over a damaged body must fail here, not later
    except BadImage:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        raise BadImage("'image' is not a readable picture (send PNG, JPEG, WebP, BMP, GIF or TIFF)") from None
    if fmt not in IMAGE_FORMATS:
        raise BadImage(f"image format {fmt} is not supported; send {', '.join(sorted(IMAGE_FORMATS))}")
    return {"format": fmt, "width": width, "height": height, "bytes": len(raw)}


# -- the generate side -------------------------------------------------------------------------------


class GenerateService:
    """Holds the pipeline: none configured, loading in the background, ready, or unavailable."""

    def __init__(self, pipeline: Any = None, loader: Callable[[], Any] | None = None):
        self.pipeline = pipeline
        self.loader = loader
        self.state = "ready" if pipeline is not None else ("loading" if loader else "none")
        self.message = ""
        self._ready = threading.Event()
        if pipeline is not None or loader is None:
            self._ready.set()

    def start(self) -> None:
        if self.state == "loading":
            threading.Thread(target=self._load, daemon=True, name="cadsnap-backend-load").start()

    def _load(self) -> None:
        try:
            self.pipeline = self.loader()  # type: ignore[misc]
            self.state, self.message = "ready", ""
        except Exception as exc:  # any load failure leaves exec working and says why
            log.warning("model backend unavailable: %s", exc)
            self.state, self.message = "unavailable", getattr(exc, "message", None) or str(exc)
        finally:
            self._ready.set()

    @property
    def accepting(self) -> bool:
        return self.state in ("ready", "loading")

    def no_backend_message(self) -> str:
        from model_runtime.backends.base import GET_A_MODEL

        how = GET_A_MODEL.format(models=protocol.cache_dir() / "models")
        if self.state == "none":
            return f"this runtime was started without a model backend (--backend none). {how}"
        return self.message if how in self.message else f"{self.message} {how}".strip()

    def describe(self) -> dict[str, Any]:
        backend = getattr(self.pipeline, "backend", None)
        return {
            "state": self.state,
            "backend": getattr(backend, "name", None),
            "model": getattr(backend, "model_id", None),
            "message": self.message or None,
        }

    def run(
        self, body: dict[str, Any], emit: Callable[[dict], None], cancel: threading.Event
    ) -> dict[str, Any]:
        from model_runtime.pipeline import GenerateRequest, PipelineError

        emit(protocol.status_event("loading model", 0.0))
        while not self._ready.wait(0.5):
            if cancel.is_set():
                raise PipelineError(protocol.ERROR_CANCELLED, "the job was cancelled")
        if self.pipeline is None:
            raise PipelineError(protocol.ERROR_NO_BACKEND, self.no_backend_message())
        request = GenerateRequest.from_json(body)
        return self.pipeline.run(request, on_event=emit, cancel=cancel).to_dict()


# -- the routes: plain functions over the app's shared state ---------------------------------------


@dataclass
class AppState:
    """What every route reads: the configuration, the sandbox pool, the job table and the model."""

    config: ServerConfig
    pool: Any
    jobs: JobManager
    service: GenerateService
    job_runner: JobRunner | None = None  # replaces the model service (tests, benchmarks)
    started: float = field(default_factory=time.time)

    def backend_info(self) -> dict[str, Any]:
        if self.job_runner is not None:
            name = getattr(self.job_runner, "name", "custom")
            return {"state": "ready", "backend": name, "model": None, "message": None}
        return self.service.describe()

    @property
    def accepts_jobs(self) -> bool:
        return self.job_runner is not None or self.service.accepting


def _state(request: Request) -> AppState:
    return request.app.state.runtime


def health(request: Request) -> dict[str, Any]:
    state = _state(request)
    info = state.backend_info()
    return {
        "status": "ok",
        "version": __version__,
        "backend": info["backend"],
        "model": info["model"],
        "backend_state": info["state"],
        "workers": state.pool.stats(),
        "sandbox": state.pool.containment(),
        "jobs": state.jobs.stats(),
        "uptime_s": round(time.time() - state.started, 3),
    }


def info(request: Request) -> dict[str, Any]:
    import platform
    from importlib.metadata import PackageNotFoundError, version

    state = _state(request)
    versions: dict[str, str | None] = {"cadsnap": __version__, "python": platform.python_version()}
    for dist in ("cadquery", "fastapi", "uvicorn", "llama-cpp-python", "torch", "transformers"):
        try:
            versions[dist] = version(dist)
        except PackageNotFoundError:
            versions[dist] = None
    try:
        from model_runtime.backends import BACKENDS
    except ImportError:
        BACKENDS = ()  # noqa: N806
    pool, config = state.pool, state.config
    return {
        "versions": versions,
        "backends": list(BACKENDS),
        "backend": state.backend_info(),
        "limits": {
            "max_request_bytes": config.max_request_bytes,
            "max_image_pixels": protocol.MAX_IMAGE_PIXELS,
            "max_code_chars": protocol.MAX_CODE_CHARS,
            "max_candidates": protocol.MAX_CANDIDATES,
            "max_exec_timeout_s": MAX_EXEC_TIMEOUT_S,
        },
        "sandbox": {
            **pool.containment(),
            "workers": pool.stats(),
            "timeout_s": pool.timeout_s,
            "memory_mb": pool.memory_mb,
        },
        "jobs": {"max_concurrent": config.max_concurrent_jobs, "max_queued": config.max_queued_jobs},
    }


def execute(body: ExecBody, request: Request):
    from model_runtime.sandbox import SandboxError, SandboxUnavailable

    try:
        # feature_plan: the traced feature plan comes back as result["feature_plan"] (issue 15).
        result = _state(request).pool.run(
            body.code, timeout_s=body.timeout_s, formats=tuple(body.formats), feature_plan=True
        )
    except SandboxUnavailable as exc:
        return error_response(503, protocol.ERROR_INTERNAL, exc.message)
    except SandboxError as exc:
        return JSONResponse(exc.to_dict(), status_code=422)
    return {"result": result.to_dict()}


def submit(body: JobBody, request: Request):
    state = _state(request)
    if not state.accepts_jobs:
        return error_response(
            503,
            protocol.ERROR_NO_BACKEND,
            state.service.no_backend_message(),
            {"backend": state.service.describe()},
        )
    try:
        image = check_image(body.image)
    except BadImage as exc:
        return error_response(400, protocol.ERROR_BAD_IMAGE, str(exc))
    configured = state.backend_info()["backend"]
    if body.backend not in (None, "", "auto") and configured and body.backend != configured:
        return error_response(
            400,
            protocol.ERROR_BAD_REQUEST,
            f"this runtime serves the '{configured}' backend, not '{body.backend}'; "
            f"restart it with --backend {body.backend}",
        )
    try:
        job = state.jobs.submit(body.model_dump(exclude_none=True))
    except QueueFull as exc:
        return error_response(429, protocol.ERROR_BAD_REQUEST, str(exc), headers={"Retry-After": "5"})
    return JSONResponse({"job_id": job.id, "status": job.status, "image": image}, status_code=202)


def job_status(job_id: str, request: Request):
    try:
        return _state(request).jobs.describe(job_id)
    except KeyError:
        return _no_job(job_id)


def job_events(job_id: str, request: Request):
    jobs = _state(request).jobs
    try:
        jobs.get(job_id)
    except KeyError:
        return _no_job(job_id)

    def lines() -> Iterator[bytes]:
        for event in jobs.events(job_id):
            yield (json.dumps(event, separators=(",", ":")) + "\n").encode("utf-8")

    return StreamingResponse(
        lines(),
        media_type="application/x-ndjson",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


def cancel_job(job_id: str, request: Request):
    try:
        return _state(request).jobs.cancel(job_id)
    except KeyError:
        return _no_job(job_id)


def parametrize_shape(body: ParametrizeBody, request: Request):
    """Make parametric (issue 21): the file is read and recognised in the sandbox."""
    import base64
    import binascii

    from model_runtime.commands.parametrize import parametrize_bytes
    from model_runtime.sandbox import SandboxError, SandboxUnavailable

    try:
        data = base64.b64decode(body.data, validate=True)
    except (binascii.Error, ValueError):
        return error_response(400, protocol.ERROR_BAD_REQUEST, "'data' is not base64")
    try:
        out = parametrize_bytes(_state(request).pool, body.name, data, timeout_s=body.timeout_s or 120.0)
    except SandboxUnavailable as exc:
        return error_response(503, protocol.ERROR_INTERNAL, exc.message)
    except SandboxError as exc:
        return JSONResponse(exc.to_dict(), status_code=422)
    if not out["ok"]:
        return error_response(422, out["error"]["code"], out["error"]["message"])
    r = out["result"]
    result = {k: r.get(k) for k in protocol.PARAMETRIZE_RESULT_FIELDS if k in r}
    result.update(code=out["code"], feature_plan=out["plan"], brep=out["exec"].brep)
    return {"result": result}


# (method, path under API_PREFIX, handler, success status)
ROUTES: tuple[tuple[str, str, Callable[..., Any], int], ...] = (
    ("GET", "/health", health, 200),
    ("GET", "/info", info, 200),
    ("POST", "/exec", execute, 200),
    ("POST", "/parametrize", parametrize_shape, 200),
    ("POST", "/jobs", submit, 202),
    ("GET", "/jobs/{job_id}", job_status, 200),
    ("GET", "/jobs/{job_id}/events", job_events, 200),
    ("POST", "/jobs/{job_id}/cancel", cancel_job, 200),
)


# -- the app -----------------------------------------------------------------------------------------


def create_app(
    config: ServerConfig | None = None,
    pipeline: Any = None,
    *,
    pool: Any = None,
    job_runner: JobRunner | None = None,
    loader: Callable[[], Any] | None = None,
    token: str | None = None,
) -> FastAPI:
    """The FastAPI app. ``pipeline`` (or a ``loader`` building one in the background) serves
    generate jobs; ``job_runner`` replaces both with any ``runner(body, emit, cancel) -> dict``.
    ``pool`` is the sandbox pool (created from ``config`` when not given; closed with the app)."""
    config = config or ServerConfig()
    token = token or ensure_token(config.token_path)
    owns_pool = pool is None
    if pool is None:
        from model_runtime.sandbox import SandboxPool

        pool = SandboxPool(
            workers=config.sandbox_workers, timeout_s=config.exec_timeout_s, memory_mb=config.memory_mb
        )
    service = GenerateService(pipeline, loader)
    jobs = JobManager(
        job_runner or service.run, concurrency=config.max_concurrent_jobs, max_queued=config.max_queued_jobs
    )
    state = AppState(config=config, pool=pool, jobs=jobs, service=service, job_runner=job_runner)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        service.start()
        yield
        jobs.close()
        if owns_pool:
            pool.close()

    app = FastAPI(
        title="CadSnap runtime",
        version=__version__,
        description="Local API of the CadSnap model runtime. Every request needs "
        "`Authorization: Bearer <token>` (the token file is in the user's config folder).",
        docs_url=None,
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.runtime = state
    app.state.config, app.state.pool, app.state.jobs, app.state.service = config, pool, jobs, service
    app.add_middleware(GuardMiddleware, token=token, max_bytes=config.max_request_bytes)
    _install_error_handlers(app)
    for method, path, handler, status in ROUTES:
        route = f"{protocol.API_PREFIX}{path}"
        app.add_api_route(route, handler, methods=[method], status_code=status, name=handler.__name__)
    return app


def _no_job(job_id: str) -> JSONResponse:
    return error_response(
        404,
        protocol.ERROR_NOT_FOUND,
        f"no job {job_id!r} (finished jobs are kept for a while, then forgotten)",
    )


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 404:
            return error_response(
                404,
                protocol.ERROR_NOT_FOUND,
                f"no such endpoint: {request.method} {request.url.path}; see /openapi.json",
            )
        if exc.status_code == 405:
            return error_response(
                405, protocol.ERROR_BAD_REQUEST, f"{request.method} is not allowed on {request.url.path}"
            )
        code = protocol.ERROR_BAD_REQUEST if exc.status_code < 500 else protocol.ERROR_INTERNAL
        return error_response(exc.status_code, code, str(exc.detail))

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = []
        for err in exc.errors():
            where = ".".join(str(p) for p in err.get("loc", ()) if p != "body") or "body"
            problems.append({"field": where, "problem": err.get("msg", "invalid"), "type": err.get("type")})
        if any(p["type"] == "json_invalid" for p in problems):
            message = "the request body is not valid JSON"
        else:
            message = "; ".join(f"{p['field']}: {p['problem']}" for p in problems[:5])
        return error_response(
            400, protocol.ERROR_BAD_REQUEST, f"bad request: {message}", {"problems": problems}
        )

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return error_response(
            500,
            protocol.ERROR_INTERNAL,
            f"the runtime failed unexpectedly ({type(exc).__name__}); see its log",
        )


# -- running it --------------------------------------------------------------------------------------


def server_info_path() -> Path:
    return protocol.config_dir() / "server.json"


def write_server_info(url: str, path: Path | None = None) -> Path:
    """Tell the workbench where a running server is: its URL and pid (mode 0600)."""
    path = path or server_info_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump({"url": url, "pid": os.getpid(), "version": __version__, "started_at": time.time()}, handle)
    os.replace(tmp, path)
    return path


def remove_server_info(path: Path | None = None) -> None:
    """Remove server.json if this process wrote it (a newer server may have replaced it)."""
    path = path or server_info_path()
    with contextlib.suppress(OSError, ValueError):
        if json.loads(path.read_text(encoding="utf-8")).get("pid") == os.getpid():
            path.unlink()


def build_loader(config: ServerConfig, pool: Any) -> Callable[[], Any] | None:
    """A function that loads the configured backend and wraps it in a Pipeline, or None if off."""
    if not config.load_backend:
        return None

    def load() -> Any:
        from model_runtime.backends import load_backend
        from model_runtime.pipeline import Pipeline

        backend = load_backend(
            config.backend,
            model=config.model,
            mmproj=config.mmproj,
            adapter=config.adapter,
            base_url=config.remote_url,
        )
        return Pipeline(backend, pool)

    return load


def serve(config: ServerConfig) -> int:
    """Run the server in this thread until interrupted; writes and removes server.json."""
    import uvicorn

    from model_runtime.sandbox import SandboxPool

    check_loopback(config.host)
    token = ensure_token(config.token_path)
    pool = SandboxPool(
        workers=config.sandbox_workers, timeout_s=config.exec_timeout_s, memory_mb=config.memory_mb
    )
    sandbox = pool.containment()
    if sandbox["contained"]:  # opted in to no jail: the pool has already said so, with the fix
        print(f"CadSnap sandbox: {sandbox['summary']}", file=sys.stderr, flush=True)
    elif pool.refused:
        from model_runtime.sandbox.pool import refusal

        print(f"CadSnap sandbox: {refusal().message}", file=sys.stderr, flush=True)
    app = create_app(config, pool=pool, loader=build_loader(config, pool), token=token)
    server = uvicorn.Server(
        uvicorn.Config(app, host=config.host, port=config.port, log_level="info", timeout_graceful_shutdown=3)
    )
    # Our own handlers: uvicorn's re-raise the signal after shutdown, which would skip the clean-up below.
    server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}

    def stop(signum: int, frame: Any) -> None:
        server.should_exit = True

    for sig in previous:
        signal.signal(sig, stop)
    try:
        thread_started = threading.Thread(target=_publish_when_started, args=(server, config), daemon=True)
        thread_started.start()
        server.run()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        remove_server_info()
        pool.close()
    return 0 if server.started else 1


def _publish_when_started(server: Any, config: ServerConfig) -> None:
    while not server.started and not server.should_exit:
        time.sleep(0.05)
    if server.started:
        host, port = server.servers[0].sockets[0].getsockname()[:2]
        host = f"[{host}]" if ":" in host else host
        path = write_server_info(f"http://{host}:{port}")
        log.info(
            "CadSnap runtime at http://%s:%s (token in %s, server info in %s)",
            host,
            port,
            config.token_path or protocol.token_path(),
            path,
        )
