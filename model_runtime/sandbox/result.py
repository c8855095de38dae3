"""What a successful sandbox run returns: one solid's measurements, its BREP text and any exports."""

from __future__ import annotations

import base64
import io
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import cadquery as cq

BBox = tuple[float, float, float, float, float, float]


@dataclass(frozen=True)
class ExecResult:
    """One valid non-empty solid: measurements in millimetres, bbox as (xmin, ymin, zmin, xmax, ymax, zmax).

    ``n_solids`` counts the solids the code produced before touching ones were fused into one.
    ``exports`` maps a requested format to its content: text for "brep" and "step", bytes for "stl".
    """

    volume: float
    bbox: BBox
    n_faces: int
    n_solids: int
    brep: str
    exports: dict[str, str | bytes] = field(default_factory=dict)
    elapsed_s: float = 0.0
    stdout: str = ""
    # The traced feature plan (protocol's feature plan shape) when the run asked for one.
    feature_plan: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: bytes exports (STL) are base64 text; the protocol's ExecResult."""
        data = asdict(self)
        data["bbox"] = list(self.bbox)
        data["exports"] = {
            fmt: base64.b64encode(content).decode("ascii") if isinstance(content, bytes) else content
            for fmt, content in self.exports.items()
        }
        return data

    @classmethod
    def from_dict(
        cls, data: dict[str, Any], binary_formats: frozenset[str] = frozenset({"stl"})
    ) -> ExecResult:
        exports = {
            fmt: base64.b64decode(content) if fmt in binary_formats else content
            for fmt, content in dict(data.get("exports") or {}).items()
        }
        return cls(
            volume=float(data["volume"]),
            bbox=tuple(float(v) for v in data["bbox"]),  # type: ignore[arg-type]
            n_faces=int(data["n_faces"]),
            n_solids=int(data["n_solids"]),
            brep=str(data["brep"]),
            exports=exports,
            elapsed_s=float(data.get("elapsed_s", 0.0)),
            stdout=str(data.get("stdout", "")),
            feature_plan=data["feature_plan"] if isinstance(data.get("feature_plan"), dict) else None,
        )

    def shape(self) -> cq.Shape:
        """The solid rebuilt from its BREP text in the calling process."""
        import cadquery as cq

        return cq.Shape.importBrep(io.BytesIO(self.brep.encode("utf-8")))
