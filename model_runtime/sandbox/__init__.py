"""Safe execution of generated CadQuery code: static policy, warm limited workers, typed errors.

from model_runtime.sandbox import SandboxPool, check_policy
with SandboxPool(workers=2, timeout_s=10.0) as pool:
    res = pool.run(code, formats=("brep", "step"))   # ExecResult, or raises a SandboxError subclass
"""

from model_runtime.sandbox.errors import (
    CodeRuntimeError,
    CodeSyntaxError,
    InvalidSolid,
    NoResult,
    OutputTooLarge,
    PolicyViolation,
    ResourceLimit,
    SandboxError,
    SandboxUnavailable,
    Timeout,
    Uncontained,
    WorkerCrashed,
)
from model_runtime.sandbox.policy import check_policy
from model_runtime.sandbox.pool import EXPORT_FORMATS, SandboxPool
from model_runtime.sandbox.result import ExecResult

__all__ = [
    "EXPORT_FORMATS",
    "CodeRuntimeError",
    "CodeSyntaxError",
    "ExecResult",
    "InvalidSolid",
    "NoResult",
    "OutputTooLarge",
    "PolicyViolation",
    "ResourceLimit",
    "SandboxError",
    "SandboxPool",
    "SandboxUnavailable",
    "Timeout",
    "Uncontained",
    "WorkerCrashed",
    "check_policy",
]
