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

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from model_runtime.protocol import ERROR_BAD_IMAGE, MAX_IMAGE_PIXELS

WHITE = (255, 255, 255)
REFERENCE_PADDING = 0.09  # free border per side in the reference renders (model_runtime.render)
_BG_TOLERANCE = 20.0  # RGB distance that still counts as background (rows are uniform)
_MIN_PART_SHARE = 0.001  # a "part" smaller than this share of the picture is noise: leave it be


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


def _border_colours(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each row's left and right border colour, (height, 1, 3) each: the background model."""
    return rgb[:, :2].mean(axis=1, keepdims=True), rgb[:, -2:].mean(axis=1, keepdims=True)


def backdrop(image: Image.Image) -> tuple[tuple[float, float, float], tuple[float, float, float]]:
    """The picture's background at its top and bottom rows (RGB, 0..1): a white capture, FreeCAD's
    gradient, another viewer's backdrop. Renders compared with the picture are drawn on it, so a
    through-hole shows the same colour in both (on another backdrop a right hole scored as a wrong
    shade and lost to no hole)."""
    rgb = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
    rows = max(1, rgb.shape[0] // 20)

    def edge(band: np.ndarray) -> tuple[float, float, float]:
        sides = np.concatenate([band[:, :2].reshape(-1, 3), band[:, -2:].reshape(-1, 3)])
        return tuple(float(c) for c in np.median(sides, axis=0))  # type: ignore[return-value]

    return edge(rgb[:rows]), edge(rgb[-rows:])


def foreground_mask(image: Image.Image) -> np.ndarray:
    """True where the part is: the pixels the background, grown in from the borders, does not reach.

    The background is modelled per row by the row's left and right border colours (flat backgrounds
    and the vertical gradients of FreeCAD and most CAD viewers); a pixel close to either is
    background-like, and only background-like pixels connected to the image border count as
    background, so faces that happen to be shaded like the backdrop stay inside the silhouette.
    """
    return part_and_see_through(image)[0]


def part_and_see_through(image: Image.Image) -> tuple[np.ndarray, np.ndarray]:
    """(``foreground_mask``, the background-like pixels it encloses): where a straight view looks
    through a hole in the part and sees the background's own colour for that row."""
    from scipy import ndimage

    rgb = np.asarray(image.convert("RGB"), dtype=np.float32)
    left, right = _border_colours(rgb)
    dist = np.minimum(np.linalg.norm(rgb - left, axis=2), np.linalg.norm(rgb - right, axis=2))
    like = dist <= _BG_TOLERANCE
    labels, _ = ndimage.label(like)
    border = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
    background = np.isin(labels, border[border > 0])
    return ~background, like & ~background


def part_box(image: Image.Image) -> tuple[int, int, int, int] | None:
    """(left, top, right, bottom) around the part, or None when no part stands out from a background.

    Specks (JPEG noise, a stray cursor) are dropped: only foreground pieces of at least 2 % of the
    largest piece's area count, so a part made of separate-looking bits keeps them all.
    """
    from scipy import ndimage

    mask = foreground_mask(image)
    total = mask.size
    if mask.sum() < _MIN_PART_SHARE * total or mask.all():
        return None
    labels, count = ndimage.label(mask, structure=np.ones((3, 3), bool))
    areas = ndimage.sum_labels(mask, labels, index=np.arange(1, count + 1))
    keep = np.flatnonzero(areas >= 0.02 * areas.max()) + 1
    ys, xs = np.nonzero(np.isin(labels, keep))
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


def frame_part(image: Image.Image, padding: float = REFERENCE_PADDING) -> Image.Image:
    """A square image with the part centred and its longer side filling ``1 - 2 * padding``.

    The canvas around the part continues the picture's own background (each row's border colour,
    the first and last rows beyond the top and bottom), so a gradient stays a gradient. A picture
    whose part cannot be told from its background is only padded to a square.
    """
    box = part_box(image)
    if box is None:
        return pad_square(image)
    left, top, right, bottom = box
    side = max(1, round(max(right - left, bottom - top) / (1.0 - 2.0 * padding)))
    x0 = (left + right) // 2 - side // 2
    y0 = (top + bottom) // 2 - side // 2

    rgb = np.asarray(image.convert("RGB"), dtype=np.float32)
    height, width = rgb.shape[:2]
    left, right = _border_colours(rgb)
    row_colour = ((left + right) / 2.0)[:, 0]  # (height, 3)
    rows = np.clip(np.arange(y0, y0 + side), 0, height - 1)
    canvas = np.repeat(row_colour[rows][:, None, :], side, axis=1)
    sx0, sy0 = max(x0, 0), max(y0, 0)
    sx1, sy1 = min(x0 + side, width), min(y0 + side, height)
    canvas[sy0 - y0 : sy1 - y0, sx0 - x0 : sx1 - x0] = rgb[sy0:sy1, sx0:sx1]
    return Image.fromarray(np.round(canvas).astype(np.uint8), "RGB")


def to_png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def to_data_uri(image: Image.Image) -> str:
    """A ``data:image/png;base64,...`` URI, the form OpenAI-compatible servers take."""
    return "data:image/png;base64," + base64.b64encode(to_png_bytes(image)).decode("ascii")
