"""One seed -> one checked, executed, rendered sample (or a typed rejection). Runs in writer workers.

Execution path: every program passes the sandbox's static ``check_policy`` and then runs in this
worker process, not in a ``SandboxPool`` worker. The programs are our own generator's output, the
writer needs the live shape to render it and to compute its signature, and a round trip through the
pool (serialise BREP, send, rebuild) would cost more than the render (``training/bench_synth.py``
measures both paths). Validation is stricter than the sandbox's: ``result`` must hold exactly one
valid solid with positive volume, without any fusing.
"""

from __future__ import annotations

import hashlib
import io
import json
import random
import signal
import time
from dataclasses import dataclass, field
from typing import Any

from model_runtime.render import ISOMETRIC_VIEW, REFERENCE_STYLE, RenderStyle, View, render, view_for_seed
from model_runtime.sandbox import SandboxError, check_policy
from training.synth.program import FAMILY_SHARE, MAX_CODE_CHARS, SynthProgram, generate

SPLITS = ("train", "val", "test")
# Shares of seeds per split (per mille): 90 % train, 5 % val, 5 % test.
SPLIT_PER_MILLE = {"train": 900, "val": 50, "test": 50}
EXEC_TIMEOUT_S = 20.0


class SampleRejected(Exception):
    """A seed that gives no usable sample; ``reason`` is a short key counted in the manifest."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass
class Sample:
    seed: int
    family: str
    code: str
    params: str
    camera: str
    operations: list[str]
    signature: str
    split: str
    image_png: bytes
    timings: dict[str, float] = field(default_factory=dict)
    operation_counts: dict[str, int] = field(default_factory=dict)  # for coverage; not a dataset column

    def row(self) -> dict[str, Any]:
        """The dataset row (the image as the ``datasets`` Image feature's bytes form)."""
        return {"image": {"bytes": self.image_png, "path": None}, "code": self.code, "family": self.family,
                "params": self.params, "camera": self.camera, "seed": self.seed,
                "operations": self.operations, "signature": self.signature}


def split_of(seed: int) -> str:
    """Train/val/test from a hash of the seed: stable, and independent of shard size or worker count."""
    bucket = int.from_bytes(hashlib.sha256(f"split:{seed}".encode()).digest()[:8], "big") % 1000
    if bucket < SPLIT_PER_MILLE["train"]:
        return "train"
    return "val" if bucket < SPLIT_PER_MILLE["train"] + SPLIT_PER_MILLE["val"] else "test"


def render_settings(seed: int, reference_share: float) -> tuple[RenderStyle, View, str]:
    """FreeCAD's reference look for ``reference_share`` of the seeds, a random style and view otherwise."""
    if random.Random(f"look:{seed}").random() < reference_share:
        return REFERENCE_STYLE, ISOMETRIC_VIEW, "reference"
    style, view = view_for_seed(seed)
    return style, view, "random"


def geometry_signature(solid: Any) -> str:
    """Rounded volume, area, sorted box extents and face count: equal for the same part anywhere."""
    box = solid.BoundingBox()
    extents = sorted((box.xlen, box.ylen, box.zlen))

    def sig(x: float) -> str:
        return f"{x:.4g}"

    values = [sig(solid.Volume()), sig(solid.Area()), *(sig(e) for e in extents)]
    return "|".join([*values, str(len(solid.Faces()))])


def single_solid(result: Any) -> Any:
    """The one valid, non-empty solid in ``result`` (a Workplane or Shape), else SampleRejected."""
    import cadquery as cq

    if isinstance(result, cq.Workplane):
        shapes = [v for v in result.vals() if isinstance(v, cq.Shape)]
        solids = [s for shape in shapes for s in shape.Solids()]
    elif isinstance(result, cq.Shape):
        solids = list(result.Solids())
    else:
        raise SampleRejected("no_solid", f"result is a {type(result).__name__}")
    if len(solids) != 1:
        raise SampleRejected("not_one_solid", f"result holds {len(solids)} solids")
    solid = solids[0]
    if not solid.isValid():
        raise SampleRejected("invalid_solid", "OpenCascade's shape check failed")
    if not solid.Volume() > 1e-6:
        raise SampleRejected("empty_solid", "the solid has no volume")
    return solid


class _Deadline:
    """SIGALRM-based time limit for one program (a guard against a pathological draw)."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.armed = False

    def __enter__(self) -> None:
        try:
            signal.signal(signal.SIGALRM, self._expire)
            signal.setitimer(signal.ITIMER_REAL, self.seconds)
            self.armed = True
        except ValueError:  # not the main thread: run without the guard
            self.armed = False

    def __exit__(self, *exc: object) -> None:
        if self.armed:
            signal.setitimer(signal.ITIMER_REAL, 0)

    @staticmethod
    def _expire(*_: object) -> None:
        raise TimeoutError("program ran past its time limit")


def execute(code: str) -> Any:
    """Policy check, run, and the single solid; SampleRejected with a reason on any failure."""
    try:
        check_policy(code)
    except SandboxError as exc:
        raise SampleRejected("policy", str(exc)) from None
    scope: dict[str, Any] = {}
    try:
        with _Deadline(EXEC_TIMEOUT_S):
            exec(compile(code, "<synth>", "exec"), scope)
    except TimeoutError:
        raise SampleRejected("timeout", f"ran past {EXEC_TIMEOUT_S} s") from None
    except Exception as exc:  # noqa: BLE001 - any failure of a generated program is a rejection
        raise SampleRejected("runtime_error", f"{type(exc).__name__}: {exc}") from None
    if "result" not in scope:
        raise SampleRejected("no_result", "nothing bound to result")
    return single_solid(scope["result"])


def make_sample(seed: int, size: int = 224, reference_share: float = 0.25,
                family_share: float = FAMILY_SHARE) -> Sample:
    """Generate, check, execute, validate, render and encode the sample for ``seed``."""
    t0 = time.process_time()
    program = generate(seed, family_share=family_share)
    sample = sample_from_program(program, size, reference_share)
    sample.timings["generate"] = time.process_time() - t0 - sum(sample.timings.values())
    return sample


def sample_from_program(program: SynthProgram, size: int = 224, reference_share: float = 0.25) -> Sample:
    """Check, execute, validate, render and encode ``program`` (look and view drawn from its seed)."""
    seed = program.seed
    clock = time.process_time  # CPU time: the cost of a sample, whatever else shares the machine
    t1 = clock()
    if len(program.code) > MAX_CODE_CHARS:
        raise SampleRejected("too_long", f"{len(program.code)} characters")
    solid = execute(program.code)
    t2 = clock()
    signature = geometry_signature(solid)
    t_sig = clock()
    style, view, look = render_settings(seed, reference_share)
    image = render(solid, size=size, style=style, view=view)
    t3 = clock()
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=6)
    t4 = clock()
    camera = {"look": look, "projection": "orthographic", "up": "+Z", **view.to_dict(),
              "padding": round(style.padding, 4), "shift": [round(v, 4) for v in style.shift], "size": size}
    return Sample(
        seed=seed, family=program.family, code=program.code, params=program.params_json(),
        camera=json.dumps(camera, sort_keys=True), operations=list(program.operations), signature=signature,
        split=split_of(seed), image_png=buffer.getvalue(), operation_counts=program.operation_counts,
        timings={"execute": t2 - t1, "signature": t_sig - t2, "render": t3 - t_sig,
                 "encode": t4 - t3},
    )
