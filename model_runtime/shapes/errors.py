"""The one error recognition raises: a plain sentence for the user, and a short code for programs."""

from __future__ import annotations


class ShapeInputError(Exception):
    """The input cannot become a part; ``message`` is one plain sentence saying why (and the fix)."""

    def __init__(self, message: str, code: str = "bad_input"):
        super().__init__(message)
        self.message = message
        self.code = code

    def to_dict(self) -> dict:
        return {"code": self.code, "message": self.message}
