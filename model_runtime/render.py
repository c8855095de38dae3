"""Off-screen renders of CadQuery shapes that look like a FreeCAD 3D view.

One job: shape in, ``PIL.Image`` out. The reference style and view copy FreeCAD 0.20's defaults as
measured in its GUI (``View > Standard views > Isometric`` and ``ActiveView.saveImage``): orthographic
camera looking along (-1, 1, -1) with Z up, background gradient (51, 51, 101) at the top to
(171, 171, 193) at the bottom, shape colour 0.8 grey lit by a headlight (isometric faces come out
at 128), edges (25, 25, 25) two pixels wide at 448 px, seam edges drawn. Random styles and views
(``random_style``, ``random_view``) cover other CAD viewers' looks for training.

VTK renders through EGL (no display needed), falling back to OSMesa; one render window is kept
per process because creating it costs far more than a render.
"""

from __future__ import annotations

import math
import os
import random
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

RGB = tuple[float, float, float]

# IVtk mesh types (OCP.IVtk.IVtk_MeshType): the cells a shape mesher emits.
_MT_FREE_EDGE, _MT_BOUNDARY_EDGE, _MT_SHARED_EDGE, _MT_SHADED_FACE, _MT_SEAM_EDGE = 3, 4, 5, 7, 8
_EDGE_TYPES = (_MT_FREE_EDGE, _MT_BOUNDARY_EDGE, _MT_SHARED_EDGE, _MT_SEAM_EDGE)


class RenderError(RuntimeError):
    """The shape cannot be rendered (empty, no faces) or no off-screen OpenGL is available."""


def _rgb(r: int, g: int, b: int) -> RGB:
    return (r / 255.0, g / 255.0, b / 255.0)


@dataclass(frozen=True)
class RenderStyle:
    """How the part and its surroundings look. Colours are RGB in 0..1."""

    face_color: RGB = (0.8, 0.8, 0.8)
    edges: bool = True
    edge_color: RGB = _rgb(25, 25, 25)
    edge_width_px: float = 2.0  # at a 448 px image; scaled with the image size
    seam_edges: bool = True
    background_top: RGB = _rgb(51, 51, 101)
    background_bottom: RGB = _rgb(171, 171, 193)  # equal to background_top for a flat background
    ambient: float = 0.05
    diffuse: float = 1.0
    specular: float = 0.0
    specular_power: float = 20.0
    light_elevation_deg: float = 0.0  # light direction relative to the camera; 0, 0 = headlight
    light_azimuth_deg: float = 0.0
    flat_shading: bool = False
    padding: float = 0.09  # free border on each side, as a share of the image side
    shift: tuple[float, float] = (0.0, 0.0)  # part offset from centre, share of the image side
    supersample: int = 1  # render N times larger and shrink: anti-aliasing
    resolution: float = 1.0  # below 1: render smaller and enlarge, like a low-resolution screenshot

    def __post_init__(self) -> None:
        if not 0.0 <= self.padding < 0.45:
            raise ValueError(f"padding must be in [0, 0.45), got {self.padding}")
        if max(abs(self.shift[0]), abs(self.shift[1])) > self.padding:
            raise ValueError(f"shift {self.shift} would push the part out of frame (padding {self.padding})")
        if not 0.25 <= self.resolution <= 1.0:
            raise ValueError(f"resolution must be in [0.25, 1], got {self.resolution}")
        if self.supersample not in (1, 2, 3, 4):
            raise ValueError(f"supersample must be 1..4, got {self.supersample}")


@dataclass(frozen=True)
class View:
    """An orthographic camera around the part, Z up. Angles give the camera's position.

    ``azimuth_deg`` is measured in the XY plane from +X towards +Y, ``elevation_deg`` above XY.
    FreeCAD's isometric camera sits in the +X, -Y, +Z octant: azimuth -45, elevation 35.26.
    """

    azimuth_deg: float = -45.0
    elevation_deg: float = math.degrees(math.atan(1.0 / math.sqrt(2.0)))
    roll_deg: float = 0.0

    def direction(self) -> np.ndarray:
        """Unit vector from the part towards the camera."""
        az, el = math.radians(self.azimuth_deg), math.radians(self.elevation_deg)
        return np.array([math.cos(el) * math.cos(az), math.cos(el) * math.sin(az), math.sin(el)])

    def to_dict(self) -> dict[str, float]:
        return {"azimuth_deg": round(self.azimuth_deg, 3), "elevation_deg": round(self.elevation_deg, 3),
                "roll_deg": round(self.roll_deg, 3)}


REFERENCE_STYLE = RenderStyle()
ISOMETRIC_VIEW = View()

# Looks of other CAD viewers and common FreeCAD themes: (face, edge, background top, bottom).
_PALETTES: tuple[tuple[RGB, RGB, RGB, RGB], ...] = (
    ((0.8, 0.8, 0.8), _rgb(25, 25, 25), _rgb(51, 51, 101), _rgb(171, 171, 193)),  # FreeCAD 0.20
    ((0.8, 0.8, 0.8), _rgb(25, 25, 25), _rgb(152, 167, 198), _rgb(236, 238, 245)),  # FreeCAD light
    ((0.75, 0.75, 0.78), (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), (1.0, 1.0, 1.0)),  # white paper
    ((0.62, 0.68, 0.78), _rgb(20, 30, 45), _rgb(250, 250, 252), _rgb(205, 214, 230)),  # blue-steel part
    ((0.85, 0.72, 0.45), _rgb(40, 30, 10), _rgb(60, 60, 60), _rgb(120, 120, 120)),  # brass on dark grey
    ((0.55, 0.7, 0.9), _rgb(10, 20, 40), _rgb(245, 245, 245), _rgb(245, 245, 245)),  # flat light grey
    ((0.9, 0.55, 0.2), _rgb(30, 15, 0), _rgb(35, 38, 45), _rgb(35, 38, 45)),  # dark theme, orange part
    ((0.7, 0.7, 0.7), _rgb(60, 60, 60), _rgb(180, 190, 205), _rgb(90, 100, 120)),  # inverted gradient
)


def random_style(rng: random.Random) -> RenderStyle:
    """A style drawn from ``rng``: palette, edges, lighting, padding, offset and anti-aliasing."""
    face, edge, top, bottom = rng.choice(_PALETTES)

    def jitter(c: RGB, amount: float) -> RGB:
        return tuple(min(1.0, max(0.0, v + rng.uniform(-amount, amount))) for v in c)  # type: ignore[return-value]

    padding = rng.uniform(0.04, 0.18)
    limit = max(0.0, padding - 0.02)
    return RenderStyle(
        face_color=jitter(face, 0.06),
        edges=rng.random() < 0.75,
        edge_color=jitter(edge, 0.05),
        edge_width_px=rng.choice((1.0, 1.5, 2.0, 2.0, 3.0)),
        seam_edges=rng.random() < 0.6,
        background_top=jitter(top, 0.04),
        background_bottom=jitter(bottom, 0.04) if top != bottom else jitter(top, 0.0),
        ambient=rng.uniform(0.03, 0.3),
        diffuse=rng.uniform(0.75, 1.0),
        specular=rng.choice((0.0, 0.0, rng.uniform(0.05, 0.4))),
        specular_power=rng.uniform(10.0, 60.0),
        light_elevation_deg=rng.uniform(-10.0, 35.0),
        light_azimuth_deg=rng.uniform(-35.0, 35.0),
        flat_shading=rng.random() < 0.1,
        padding=padding,
        shift=(rng.uniform(-limit, limit), rng.uniform(-limit, limit)),
        supersample=rng.choice((1, 1, 2)),
        resolution=rng.choice((1.0, 1.0, 1.0, rng.uniform(0.5, 0.9))),
    )


def random_view(rng: random.Random) -> View:
    """Mostly near FreeCAD's isometric, sometimes another octant or a steeper/shallower angle."""
    if rng.random() < 0.7:
        azimuth = -45.0 + rng.uniform(-25.0, 25.0)
    else:
        azimuth = rng.choice((45.0, 135.0, -135.0)) + rng.uniform(-25.0, 25.0)
    return View(azimuth_deg=azimuth, elevation_deg=rng.uniform(15.0, 60.0),
                roll_deg=rng.choice((0.0, 0.0, 0.0, rng.uniform(-8.0, 8.0))))


def view_for_seed(seed: int) -> tuple[RenderStyle, View]:
    """The random style and view a seed stands for (what ``render(..., seed=...)`` uses)."""
    rng = random.Random(f"render:{seed}")
    return random_style(rng), random_view(rng)


class _Renderer:
    """One off-screen window, renderer and pair of actors, reused across renders in a process."""

    def __init__(self) -> None:
        from vtkmodules.vtkRenderingCore import (
            vtkActor,
            vtkLight,
            vtkPolyDataMapper,
            vtkRenderer,
        )

        self.pid = os.getpid()
        self._window = _make_window()
        self._renderer = vtkRenderer()
        self._window.AddRenderer(self._renderer)
        self._light = vtkLight()
        self._light.SetLightTypeToCameraLight()
        self._renderer.AutomaticLightCreationOff()
        self._renderer.AddLight(self._light)

        self._face_mapper = vtkPolyDataMapper()
        # Faces pushed back and edges pulled forward, so edges on curved faces do not dash.
        self._face_mapper.SetResolveCoincidentTopologyToPolygonOffset()
        self._face_mapper.SetRelativeCoincidentTopologyPolygonOffsetParameters(1.0, 3.0)
        self._face_mapper.ScalarVisibilityOff()
        self._face_actor = vtkActor()
        self._face_actor.SetMapper(self._face_mapper)
        self._edge_mapper = vtkPolyDataMapper()
        self._edge_mapper.ScalarVisibilityOff()
        self._edge_mapper.SetRelativeCoincidentTopologyLineOffsetParameters(-1.0, -3.0)
        self._edge_actor = vtkActor()
        self._edge_actor.SetMapper(self._edge_mapper)
        self._renderer.AddActor(self._face_actor)
        self._renderer.AddActor(self._edge_actor)

    def _select(self, poly: Any, types: tuple[int, ...]) -> Any:
        """The cells of ``poly`` whose MESH_TYPES value is one of ``types``, as polydata."""
        from vtkmodules.util.numpy_support import numpy_to_vtk, vtk_to_numpy
        from vtkmodules.vtkCommonDataModel import vtkPolyData
        from vtkmodules.vtkFiltersCore import vtkThreshold
        from vtkmodules.vtkFiltersGeometry import vtkGeometryFilter

        kinds = vtk_to_numpy(poly.GetCellData().GetArray("MESH_TYPES"))
        mask = np.isin(kinds, types).astype(np.uint8)
        shallow = vtkPolyData()
        shallow.ShallowCopy(poly)
        array = numpy_to_vtk(mask, deep=True)
        array.SetName("KEEP")
        shallow.GetCellData().AddArray(array)
        threshold = vtkThreshold()
        threshold.SetInputData(shallow)
        threshold.SetInputArrayToProcess(0, 0, 0, 1, "KEEP")  # 1 = cell data
        threshold.SetLowerThreshold(0.5)
        threshold.SetUpperThreshold(1.5)
        geometry = vtkGeometryFilter()
        geometry.SetInputConnection(threshold.GetOutputPort())
        geometry.Update()
        return geometry.GetOutput()

    def render(self, shape: Any, size: int, style: RenderStyle, view: View) -> Image.Image:
        drawn = max(16, round(size * style.resolution))
        image = self._draw(shape, drawn, style, view)
        if drawn != size:
            image = image.resize((size, size), Image.Resampling.BILINEAR)
        return image

    def _draw(self, shape: Any, size: int, style: RenderStyle, view: View) -> Image.Image:
        from vtkmodules.vtkFiltersCore import vtkPolyDataNormals

        poly = _mesh(shape)
        faces = self._select(poly, (_MT_SHADED_FACE,))
        if faces.GetNumberOfCells() == 0:
            raise RenderError("the shape has no faces to render")
        normals = vtkPolyDataNormals()
        normals.SetInputData(faces)
        normals.SetFeatureAngle(40.0)
        normals.SplittingOn()
        normals.ConsistencyOn()
        normals.Update()
        self._face_mapper.SetInputData(normals.GetOutput())

        edge_types = _EDGE_TYPES if style.seam_edges else _EDGE_TYPES[:-1]
        self._edge_actor.SetVisibility(style.edges)
        if style.edges:
            self._edge_mapper.SetInputData(self._select(poly, edge_types))

        pixels = size * style.supersample
        prop = self._face_actor.GetProperty()
        prop.SetColor(*style.face_color)
        prop.SetAmbient(style.ambient)
        prop.SetDiffuse(style.diffuse)
        prop.SetSpecular(style.specular)
        prop.SetSpecularPower(style.specular_power)
        if style.flat_shading:
            prop.SetInterpolationToFlat()
        else:
            prop.SetInterpolationToGouraud()
        edge_prop = self._edge_actor.GetProperty()
        edge_prop.SetColor(*style.edge_color)
        edge_prop.SetLineWidth(max(1.0, style.edge_width_px * pixels / 448.0))
        edge_prop.LightingOff()

        self._light.SetPosition(*_light_direction(style))
        self._light.SetFocalPoint(0.0, 0.0, 0.0)
        self._light.SetIntensity(1.0)

        self._renderer.GradientBackgroundOn()
        self._renderer.SetBackground(*style.background_bottom)
        self._renderer.SetBackground2(*style.background_top)
        self._place_camera(normals.GetOutput(), style, view)
        self._window.SetSize(pixels, pixels)
        self._window.Render()
        image = _grab(self._window, pixels)
        if style.supersample > 1:
            image = image.resize((size, size), Image.Resampling.BOX)
        return image

    def _place_camera(self, faces: Any, style: RenderStyle, view: View) -> None:
        """Orthographic camera that frames the projected part with ``style.padding`` on each side."""
        from vtkmodules.util.numpy_support import vtk_to_numpy

        points = vtk_to_numpy(faces.GetPoints().GetData()).astype(np.float64)
        back = view.direction()
        up = np.array([0.0, 0.0, 1.0])
        right = np.cross(up, back)
        right /= np.linalg.norm(right)
        true_up = np.cross(back, right)
        roll = math.radians(view.roll_deg)
        right, true_up = (math.cos(roll) * right + math.sin(roll) * true_up,
                          -math.sin(roll) * right + math.cos(roll) * true_up)
        u, v, w = points @ right, points @ true_up, points @ back
        half = max(u.max() - u.min(), v.max() - v.min(), 1e-6) / 2.0
        scale = half / (1.0 - 2.0 * style.padding)
        # The projected box centre, moved so the part lands `shift` off centre.
        cu = (u.max() + u.min()) / 2.0 - style.shift[0] * 2.0 * scale
        cv = (v.max() + v.min()) / 2.0 + style.shift[1] * 2.0 * scale
        centre = cu * right + cv * true_up + ((w.max() + w.min()) / 2.0) * back
        depth = float(w.max() - w.min()) + 4.0 * half + 1.0
        camera = self._renderer.GetActiveCamera()
        camera.ParallelProjectionOn()
        camera.SetFocalPoint(*centre)
        camera.SetPosition(*(centre + back * depth))
        camera.SetViewUp(*true_up)
        camera.SetParallelScale(scale)
        camera.SetClippingRange(0.5, 2.0 * depth + 1.0)


def _light_direction(style: RenderStyle) -> tuple[float, float, float]:
    """Camera-light position in camera coordinates (0, 0, 1 is the headlight)."""
    el, az = math.radians(style.light_elevation_deg), math.radians(style.light_azimuth_deg)
    return (math.cos(el) * math.sin(az), math.sin(el), math.cos(el) * math.cos(az))


def _make_window() -> Any:
    """An off-screen render window: EGL first (no display), then OSMesa, then VTK's default."""
    import vtkmodules.vtkRenderingOpenGL2 as gl

    for name in ("vtkEGLRenderWindow", "vtkOSOpenGLRenderWindow"):
        cls = getattr(gl, name, None)
        if cls is None:
            continue
        window = cls()
        window.SetOffScreenRendering(1)
        window.SetMultiSamples(0)
        window.SetSize(8, 8)
        try:
            window.Render()
        except Exception:  # noqa: BLE001 - a missing driver shows up here; try the next back end
            continue
        if window.IsCurrent() or window.SupportsOpenGL():
            return window
    from vtkmodules.vtkRenderingCore import vtkRenderWindow

    window = vtkRenderWindow()
    window.SetOffScreenRendering(1)
    window.SetMultiSamples(0)
    if not window.SupportsOpenGL():
        raise RenderError("no off-screen OpenGL found: install EGL (libegl1) or OSMesa drivers")
    return window


def _mesh(shape: Any) -> Any:
    """Triangles and edge polylines of a cadquery Shape/Workplane, tagged by IVtk mesh type."""
    from OCP.IVtkOCC import IVtkOCC_Shape, IVtkOCC_ShapeMesher
    from OCP.IVtkVTK import IVtkVTK_ShapeData

    wrapped = _occ_shape(shape)
    source = IVtkOCC_Shape(wrapped)
    drawer = source.Attributes()
    drawer.SetDeviationCoefficient(0.0008)  # relative to the shape's size
    drawer.SetDeviationAngle(math.radians(12.0))
    data = IVtkVTK_ShapeData()
    IVtkOCC_ShapeMesher().Build(source, data)
    return data.getVtkPolyData()


def _occ_shape(shape: Any) -> Any:
    if hasattr(shape, "vals") and hasattr(shape, "objects"):  # a cadquery Workplane
        import cadquery as cq

        shapes = [s for s in shape.vals() if isinstance(s, cq.Shape)]
        if not shapes:
            raise RenderError("the workplane holds no shape to render")
        shape = shapes[0] if len(shapes) == 1 else cq.Compound.makeCompound(shapes)
    wrapped = getattr(shape, "wrapped", shape)
    if wrapped is None or wrapped.IsNull():
        raise RenderError("the shape is empty")
    return wrapped


def _grab(window: Any, pixels: int) -> Image.Image:
    from vtkmodules.util.numpy_support import vtk_to_numpy
    from vtkmodules.vtkCommonCore import vtkUnsignedCharArray

    buffer = vtkUnsignedCharArray()
    window.GetPixelData(0, 0, pixels - 1, pixels - 1, 0, buffer, 0)  # back buffer, RGB
    array = vtk_to_numpy(buffer).reshape(pixels, pixels, 3)[::-1]
    return Image.fromarray(np.ascontiguousarray(array), "RGB")


_local = threading.local()


def render(
    shape: Any,
    *,
    size: int = 224,
    style: RenderStyle | None = None,
    view: View | None = None,
    seed: int | None = None,
) -> Image.Image:
    """Render ``shape`` (a cadquery Shape or Workplane) to a square RGB image of ``size`` pixels.

    With no style/view and no seed: FreeCAD's reference look from its isometric view. With a seed,
    the style and view that are not given are drawn from it (``view_for_seed``), so the same seed
    gives the same image.
    """
    if not 16 <= size <= 4096:
        raise ValueError(f"size must be 16..4096 pixels, got {size}")
    if seed is not None:
        seeded_style, seeded_view = view_for_seed(seed)
        style = style or seeded_style
        view = view or seeded_view
    style = style or REFERENCE_STYLE
    view = view or ISOMETRIC_VIEW
    renderer = getattr(_local, "renderer", None)
    if renderer is None or renderer.pid != os.getpid():  # a forked child cannot use its parent's context
        renderer = _local.renderer = _Renderer()
    return renderer.render(shape, size, style, view)


__all__ = [
    "ISOMETRIC_VIEW",
    "REFERENCE_STYLE",
    "RenderError",
    "RenderStyle",
    "View",
    "random_style",
    "random_view",
    "render",
    "view_for_seed",
]
