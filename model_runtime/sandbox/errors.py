"""Typed sandbox failures: one class per way generated code can fail, each with a protocol error code."""

from __future__ import annotations

from typing import Any

from model_runtime import protocol


class SandboxError(Exception):
    """Generated code did not give a usable solid.

    ``code`` is a protocol ``ERROR_*`` string, ``message`` a sentence a person can act on and
    ``line`` the 1-based line of the generated code at fault, when one is known.
    """

    code: str = protocol.ERROR_INTERNAL

    def __init__(self, message: str, *, line: int | None = None, detail: dict[str, Any] | None = None):
        super().__init__(message)
        self.message = message
        self.line = line
        self.detail = dict(detail or {})

    def __str__(self) -> str:
        where = f" (line {self.line})" if self.line is not None else ""
        return f"{self.code}: {self.message}{where}"

    def to_dict(self) -> dict[str, Any]:
        """The protocol's error body: ``{"error": {"code", "message", "detail"}}``."""
        detail = dict(self.detail)
        if self.line is not None:
            detail["line"] = self.line
        return {"error": {"code": self.code, "message": self.message, "detail": detail}}


class CodeSyntaxError(SandboxError):
    code = protocol.ERROR_SYNTAX


class PolicyViolation(SandboxError):
    code = protocol.ERROR_POLICY


class CodeRuntimeError(SandboxError):
    code = protocol.ERROR_RUNTIME


class Timeout(SandboxError):
    code = protocol.ERROR_TIMEOUT


class ResourceLimit(SandboxError):
    code = protocol.ERROR_RESOURCE


class NoResult(SandboxError):
    code = protocol.ERROR_NO_RESULT


class InvalidSolid(SandboxError):
    code = protocol.ERROR_INVALID_SOLID


class OutputTooLarge(SandboxError):
    code = protocol.ERROR_OUTPUT_TOO_LARGE


class WorkerCrashed(SandboxError):
    code = protocol.ERROR_WORKER_CRASHED


class Uncontained(SandboxError):
    """No jail works here and the user has not opted in: generated code does not run at all."""

    code = protocol.ERROR_UNCONTAINED


class SandboxUnavailable(SandboxError):
    """The pool is closed or its workers cannot start (cadquery missing, for example)."""

    code = protocol.ERROR_INTERNAL


ERRORS_BY_CODE: dict[str, type[SandboxError]] = {
    cls.code: cls
    for cls in (
        CodeSyntaxError,
        PolicyViolation,
        CodeRuntimeError,
        Timeout,
        ResourceLimit,
        NoResult,
        InvalidSolid,
        OutputTooLarge,
        WorkerCrashed,
        Uncontained,
    )
}


def error_from_dict(body: dict[str, Any]) -> SandboxError:
    """Rebuild a typed error from the worker's JSON (unknown codes become a plain SandboxError)."""
    cls = ERRORS_BY_CODE.get(str(body.get("code")), SandboxError)
    line = body.get("line")
    detail = body.get("detail") if isinstance(body.get("detail"), dict) else None
    return cls(
        str(body.get("message", "unknown sandbox error")),
        line=line if isinstance(line, int) else None,
        detail=detail,
    )
