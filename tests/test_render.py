"""Off-screen renderer: FreeCAD's reference look, framing, determinism, random styles."""

from __future__ import annotations

import random
from pathlib import Path

import cadquery as cq
import numpy as np
import pytest
from PIL import Image

from model_runtime.render import (
    ISOMETRIC_VIEW,
    REFERENCE_STYLE,
    RenderError,
    RenderStyle,
    View,
    random_style,
    random_view,
    render,
)

# Saved from FreeCAD 0.20.2's GUI with default preferences: a Part::Box 40 x 30 x 20 and a
# Part::Cylinder (radius 6, height 30) at (5, 5, 0); View > Standard views > Isometric, fit all,
# ActiveView.saveImage(path, 448, 448, "Current").
FREECAD_REFERENCE = Path(__file__).parent / "data" / "freecad_isometric_reference.png"


def _box_and_pillar() -> cq.Workplane:
    box = cq.Workplane("XY").box(40, 30, 20, centered=False)
    return box.union(cq.Workplane("XY").center(5, 5).circle(6).extrude(30))


def _background(style: RenderStyle, size: int) -> np.ndarray:
    """The gradient VTK draws: background_top on the first row, background_bottom on the last."""
    t = np.linspace(0.0, 1.0, size)[:, None, None]
    top, bottom = np.array(style.background_top), np.array(style.background_bottom)
    return np.broadcast_to((top * (1 - t) + bottom * t) * 255.0, (size, size, 3))


def _mask(image: Image.Image, style: RenderStyle) -> np.ndarray:
    pixels = np.asarray(image, dtype=np.float64)
    return np.abs(pixels - _background(style, image.size[0])).max(axis=2) > 20


def _grey_mask(image: Image.Image) -> np.ndarray:
    """Grey part on FreeCAD's blue-tinted background: the part is where blue does not exceed red."""
    pixels = np.asarray(image, dtype=np.int32)
    return (pixels[..., 2] - pixels[..., 0]) < 10


def _mask_box(mask: np.ndarray) -> tuple[int, int, int, int]:
    rows, cols = np.nonzero(mask.any(axis=1))[0], np.nonzero(mask.any(axis=0))[0]
    return int(cols[0]), int(rows[0]), int(cols[-1]), int(rows[-1])


def _normalised_mask(mask: np.ndarray, side: int = 128) -> np.ndarray:
    x0, y0, x1, y1 = _mask_box(mask)
    crop = Image.fromarray(mask[y0:y1 + 1, x0:x1 + 1].astype(np.uint8) * 255)
    return np.asarray(crop.resize((side, side), Image.Resampling.BILINEAR)) > 127


def test_reference_render_matches_freecad_isometric_screenshot() -> None:
    ours = render(_box_and_pillar(), size=448)
    theirs = Image.open(FREECAD_REFERENCE).convert("RGB")
    # Same background gradient at the corners, same grey on the three isometric faces.
    for xy in ((2, 2), (445, 2), (2, 445), (445, 445)):
        assert np.abs(np.subtract(ours.getpixel(xy), theirs.getpixel(xy))).max() <= 3
    top_face = np.asarray(ours)[200:215, 280:300].reshape(-1, 3)
    assert np.abs(top_face.astype(int) - 128).max() <= 3
    # Same silhouette once both are cropped to the part (FreeCAD's fit-all frames a bit differently).
    mine, ref = _normalised_mask(_grey_mask(ours)), _normalised_mask(_grey_mask(theirs))
    iou = (mine & ref).sum() / (mine | ref).sum()
    assert iou > 0.97, iou


def test_reference_render_is_centred_in_frame_and_padded() -> None:
    shape = cq.Workplane("XY").box(100, 10, 10)  # long in X: isometric shows it upper left to lower right
    image = render(shape)
    assert image.size == (224, 224) and image.mode == "RGB"
    mask = _mask(image, REFERENCE_STYLE)
    x0, y0, x1, y1 = _mask_box(mask)
    assert mask.mean() > 0.05
    assert min(x0, y0) > 5 and max(x1, y1) < 218
    assert abs((x0 + x1) / 2 - 111.5) <= 2 and abs((y0 + y1) / 2 - 111.5) <= 2
    assert abs(max(x1 - x0, y1 - y0) + 1 - 224 * (1 - 2 * REFERENCE_STYLE.padding)) <= 3
    ys, xs = np.nonzero(mask)
    assert np.corrcoef(xs, ys)[0, 1] > 0.5  # +X runs to the lower right, as in FreeCAD


def test_same_seed_same_image_bytes_and_seeds_differ() -> None:
    shape = _box_and_pillar()
    first = render(shape, seed=11).tobytes()
    assert render(shape, seed=11).tobytes() == first
    assert render(shape, seed=12).tobytes() != first
    assert render(shape).tobytes() == render(shape, style=REFERENCE_STYLE, view=ISOMETRIC_VIEW).tobytes()


@pytest.mark.parametrize("seed", range(10))
def test_random_styles_and_views_keep_the_part_in_frame(seed: int) -> None:
    rng = random.Random(seed)
    style, view = random_style(rng), random_view(rng)
    shape = cq.Workplane("XY").box(60, 20, 8).faces(">Z").workplane().hole(6)
    image = render(shape, size=160, style=style, view=view)
    assert image.size == (160, 160)
    mask = _mask(image, style)
    assert mask.mean() > 0.03, "blank render"
    x0, y0, x1, y1 = _mask_box(mask)
    assert min(x0, y0) >= 1 and max(x1, y1) <= 158, (style, view)


def test_views_differ_and_bad_input_is_rejected() -> None:
    shape = _box_and_pillar()
    assert render(shape, view=View(azimuth_deg=135)).tobytes() != render(shape).tobytes()
    with pytest.raises(ValueError, match="padding"):
        RenderStyle(padding=0.6)
    with pytest.raises(ValueError, match="out of frame"):
        RenderStyle(padding=0.05, shift=(0.1, 0.0))
    with pytest.raises(ValueError, match="size"):
        render(shape, size=4)
    with pytest.raises(RenderError):
        render(cq.Workplane("XY"))
    with pytest.raises(RenderError):
        render(cq.Workplane("XY").rect(10, 10).wires().val())  # a wire has no faces


def test_low_resolution_style_still_gives_requested_size() -> None:
    style = RenderStyle(resolution=0.5, supersample=2, edges=False)
    assert render(_box_and_pillar(), size=100, style=style).size == (100, 100)
