"""What no recogniser explained: kept as plain features so nothing of the input is lost."""

from __future__ import annotations

from typing import Any


def add_residual(best: Any, target: Any, num: Any, evaluate: Any) -> Any:
    return best
