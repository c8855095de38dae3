"""Turn whatever picture a person gives us into the square RGB image the models were trained on.

Any format Pillow reads (PNG, JPEG, WebP, BMP, ...); transparency is flattened onto white (a
screenshot of FreeCAD's view with a transparent background must look like the white renders the
models saw); the result is padded, not cropped, to a square so no part of the object is lost.
"""

from __future__ import annotations

import base64
import binascii
import io
from pathlib import Path

from PIL import Image, ImageOps, UnidentifiedImageError

from model_runtime.protocol import ERROR_BAD_IMAGE, MAX_IMAGE_PIXELS

WHITE = (255, 255, 255)


class ImageError(ValueError):
    """The input is not an image we can use; ``code`` is the protocol's error code."""

    code = ERROR_BAD_IMAGE

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def load_image(source: str | Path | bytes | Image.Image) -> Image.Image:
    """Decode ``source`` (a path, raw bytes, base64 text or a PIL image) into a square RGB image."""
    return pad_square(decode_image(source))


def decode_image(source: str | Path | bytes | Image.Image) -> Image.Image:
    """Decode ``source`` into RGB with transparency on white, upright per EXIF, not yet padded."""
    image = source if isinstance(source, Image.Image) else _decode(_read_bytes(source))
    return flatten_alpha(ImageOps.exif_transpose(image))


def _read_bytes(source: str | Path | bytes) -> bytes:
    if isinstance(source, bytes | bytearray):
        return bytes(source)
    looks_like_path = isinstance(source, str) and len(source) < 4096 and Path(source).is_file()
    if isinstance(source, Path) or looks_like_path:
        try:
            return Path(source).read_bytes()
        except OSError as exc:
            raise ImageError(f"cannot read the image file {source}: {exc.strerror}") from exc
    if isinstance(source, str):
        text = source.split(",", 1)[1] if source.startswith("data:") else source
        try:
            return base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise ImageError("the image is neither an existing file nor valid base64 data") from exc
    raise ImageError(f"cannot read an image from a {type(source).__name__}")


def _decode(data: bytes) -> Image.Image:
    if not data:
        raise ImageError("the image is empty (0 bytes)")
    try:
        with Image.open(io.BytesIO(data)) as probe:
            width, height = probe.size
            if width * height > MAX_IMAGE_PIXELS:
                raise ImageError(
                    f"the image is {width}x{height} pixels; the limit is {MAX_IMAGE_PIXELS} pixels: "
                    "scale it down"
                )
            probe.load()  # decodes fully: a truncated file fails here, not later in a model
            return probe.copy()
    except ImageError:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise ImageError(f"the data is not a readable image (PNG, JPEG, WebP, BMP...): {exc}") from exc


def flatten_alpha(image: Image.Image, background: tuple[int, int, int] = WHITE) -> Image.Image:
    """RGB with any transparency composited onto ``background``."""
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA"):
        rgba = image.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, (*background, 255))
        return Image.alpha_composite(canvas, rgba).convert("RGB")
    return image.convert("RGB")


def pad_square(image: Image.Image, fill: tuple[int, int, int] = WHITE) -> Image.Image:
    """Centre ``image`` on a square canvas of its longer side."""
    width, height = image.size
    if width == height:
        return image
    side = max(width, height)
    canvas = Image.new("RGB", (side, side), fill)
    canvas.paste(image, ((side - width) // 2, (side - height) // 2))
    return canvas


def to_png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def to_data_uri(image: Image.Image) -> str:
    """A ``data:image/png;base64,...`` URI, the form OpenAI-compatible servers take."""
    return "data:image/png;base64," + base64.b64encode(to_png_bytes(image)).decode("ascii")
