"""Length-prefixed JSON frames between the pool and its workers.

JSON rather than pickle: the parent never unpickles bytes from a process that ran untrusted code.
"""

from __future__ import annotations

import json
import struct
from typing import Any, BinaryIO

HEADER = struct.Struct(">Q")


class FrameTooLarge(Exception):
    def __init__(self, size: int):
        super().__init__(f"frame of {size} bytes")
        self.size = size


def write_frame(stream: BinaryIO, message: dict[str, Any]) -> None:
    write_frame_bytes(stream, json.dumps(message, separators=(",", ":")).encode("utf-8"))


def write_frame_bytes(stream: BinaryIO, body: bytes) -> None:
    """A frame around JSON that is already encoded (the zygote forwards its job's reply unparsed)."""
    stream.write(HEADER.pack(len(body)) + body)
    stream.flush()


def _read_exact(stream: BinaryIO, n: int) -> bytes | None:
    chunks = []
    while n:
        chunk = stream.read(n)
        if not chunk:
            return None
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


def read_frame(stream: BinaryIO, max_bytes: int) -> dict[str, Any] | None:
    """The next message, or None at end of stream. Raises FrameTooLarge before reading an oversize body."""
    header = _read_exact(stream, HEADER.size)
    if header is None:
        return None
    (size,) = HEADER.unpack(header)
    if size > max_bytes:
        raise FrameTooLarge(size)
    body = _read_exact(stream, size)
    if body is None:
        return None
    return json.loads(body)
