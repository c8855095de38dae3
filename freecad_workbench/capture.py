"""Getting a picture: the 3D view, a screen region, an image file, or the clipboard (FreeCAD GUI)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import FreeCADGui as Gui

from . import placement, session
from .jobs import RequestError, check_picture
from .qt import QtCore, QtGui, QtWidgets, image_to_png

IMAGE_FILTER = "Images (*.png *.jpg *.jpeg *.bmp *.gif *.tif *.tiff *.webp)"


class CaptureError(Exception):
    """No picture could be taken; the message says why."""


# FreeCAD's isometric camera orientation (its Camera::Isometric), as a quaternion (x, y, z, w).
ISOMETRIC_Q = (0.424708, 0.17592, 0.339851, 0.820473)


def wait_for_orientation(view, target_q, timeout_s: float = 3.0) -> bool:
    """Pump events until ``view``'s camera stands at ``target_q``; True when it got there in time.

    FreeCAD 1.x animates a change of standard view and returns at once: a shot taken then shows the
    view the person had (a Front capture was sent as Front on a busy machine). 0.20 is there at once."""
    deadline = time.monotonic() + timeout_s
    while True:
        q = view.getCameraOrientation().Q
        if abs(sum(a * b for a, b in zip(q, target_q, strict=True))) > 1.0 - 1e-6:
            return True
        if time.monotonic() > deadline:
            return False
        Gui.updateGui()
        time.sleep(0.01)


def show_isometric(view, timeout_s: float = 3.0) -> bool:
    """Turn ``view`` to FreeCAD's isometric camera and fit it; True once the camera stands there."""
    view.viewIsometric()
    reached = wait_for_orientation(view, ISOMETRIC_Q, timeout_s)
    view.fitAll()
    Gui.updateGui()
    return reached


def capture_view(size: int) -> session.Picture:
    """The active 3D view's subject rendered at ``size``×``size`` on white from FreeCAD's isometric
    camera (the person's camera is restored after the shot), with that camera's orientation and the
    bounding box of what the picture shows.

    What it shows: the selection when there is one, else the visible parts without earlier CadSnap
    results (unless they are all there is); everything else is hidden for the shot and shown again
    after, and the picture's note says what was taken. The selection is cleared for the shot (its
    highlight would be part of the picture) and restored after."""
    document = Gui.ActiveDocument
    view = getattr(document, "ActiveView", None) if document else None
    if view is None or not hasattr(view, "saveImage"):
        raise CaptureError("Open a document with a 3D view to capture it.")
    doc = document.Document
    path = session.new_capture_path("view")
    selected = _take_selection()
    chosen = [doc.getObject(name) for document_name, name, _subs in selected
              if document_name == doc.Name and doc.getObject(name) is not None]
    subject, note = _subject(doc, chosen)
    hidden = _hide_all_but(doc, subject)
    saved_camera = view.getCamera() if hasattr(view, "getCamera") else None
    camera = ""
    try:
        if saved_camera is not None:
            # The model and the picture search read FreeCAD's isometric view (the camera they were
            # trained and calibrated on): a part seen from the front or the top is shot isometric,
            # fitted to the subject, and the person's own camera is put back at once.
            show_isometric(view)
        view.saveImage(str(path), size, size, "White")
        if hasattr(view, "getCameraOrientation"):
            camera = str(view.getCameraOrientation().Q)
    finally:
        if saved_camera is not None:
            view.setCamera(saved_camera)
        for obj in hidden:
            obj.ViewObject.Visibility = True
        _restore_selection(selected)
    if not path.is_file():
        raise CaptureError("FreeCAD did not save the 3D view image; try again.")
    return session.set_picture(session.Picture(png=path.read_bytes(), path=str(path), source="view",
                                               camera=camera, visible_box=_box_of(subject), note=note))


# A Body's origin planes and axes: FreeCAD 1.x gives them a Shape reaching 1e100 mm and leaves them
# "visible" inside the hidden Origin; they are never a part.
_DATUMS = ("App::Origin", "App::Line", "App::Plane", "App::Point")


def _shown(obj) -> bool:
    view_object = getattr(obj, "ViewObject", None)
    shape = getattr(obj, "Shape", None)
    return (view_object is not None and bool(view_object.Visibility) and shape is not None
            and not shape.isNull() and obj.TypeId not in _DATUMS)


def _subject(doc, chosen: list) -> tuple[list, str]:
    """(the shown parts the capture is of, what the panel says about it)."""
    from .insert import cadsnap_owner

    if chosen:
        # A click on a Body's face selects its feature: the picture is of the Body.
        owners = list({(cadsnap_owner(o) or _body_of(o) or o).Name: cadsnap_owner(o) or _body_of(o) or o
                       for o in chosen}.values())
        labels = ", ".join(o.Label for o in owners[:3]) + (" …" if len(owners) > 3 else "")
        return owners, f"Captured the selection only ({labels}); its size is the overall size."
    shown = [o for o in doc.Objects if _shown(o) and _top_level(o)]
    earlier = [o for o in shown if cadsnap_owner(o) is not None]
    if earlier and len(earlier) < len(shown):
        return ([o for o in shown if cadsnap_owner(o) is None],
                "Earlier CadSnap results were left out of the picture and the size; select a part to "
                "capture only that.")
    return shown, ""


def _body_of(obj):
    return next((p for p in getattr(obj, "InList", ()) if p.TypeId == "PartDesign::Body"), None)


def _top_level(obj) -> bool:
    """Not a feature inside a Body (the Body stands for it) or a member of another shown shape."""
    return _body_of(obj) is None


def _hide_all_but(doc, subject: list) -> list:
    """Hide every shown part that is not in ``subject`` (nor inside or around one); returns them."""
    keep = {o.Name for o in subject}
    for obj in subject:
        keep |= {o.Name for o in obj.OutListRecursive} | {o.Name for o in obj.InListRecursive}
    hidden = [o for o in doc.Objects if _shown(o) and o.Name not in keep]
    for obj in hidden:
        obj.ViewObject.Visibility = False
    return hidden


def _box_of(objects: list) -> placement.Box | None:
    boxes = []
    for obj in objects:
        shape = getattr(obj, "Shape", None)
        box = shape.BoundBox if shape is not None and not shape.isNull() else None
        if box is not None and box.isValid():
            boxes.append((box.XMin, box.YMin, box.ZMin, box.XMax, box.YMax, box.ZMax))
    return placement.union(boxes)


def visible_box(doc) -> placement.Box | None:
    """The bounding box of every part shown in ``doc``, or None when nothing with a shape shows."""
    return _box_of([o for o in getattr(doc, "Objects", ()) if _shown(o) and _top_level(o)])


def _take_selection() -> list[tuple[str, str, tuple[str, ...]]]:
    selected = [(item.DocumentName, item.ObjectName, tuple(item.SubElementNames))
                for item in Gui.Selection.getSelectionEx()]
    Gui.Selection.clearSelection()
    if hasattr(Gui.Selection, "clearPreselection"):  # the hover highlight would be captured too
        Gui.Selection.clearPreselection()
    return selected


def _restore_selection(selected: list[tuple[str, str, tuple[str, ...]]]) -> None:
    for document, name, subs in selected:
        for sub in subs or ("",):
            Gui.Selection.addSelection(document, name, sub)


def picture_from_image(image, kind: str) -> session.Picture:
    """Save a QImage as a capture PNG."""
    if image is None or image.isNull():
        raise CaptureError("There is no image to use; capture or copy a picture first.")
    path = session.new_capture_path(kind)
    png = image_to_png(image)
    path.write_bytes(png)
    return session.set_picture(session.Picture(png=png, path=str(path), source=kind))


def open_image_file(path: str) -> session.Picture:
    """Read an image file; PNG and JPEG go as they are, other formats are converted to PNG."""
    try:
        data = Path(path).read_bytes()
    except OSError as error:
        why = error.strerror
        raise CaptureError(f"{path} could not be opened ({why}); pick a file you can read.") from None
    unreadable = CaptureError(f"{Path(path).name} cannot be read: the file is damaged or not a picture; "
                              "open another file.")
    try:
        check_picture(data)  # PNG read through; JPEG header and completeness
        return session.set_picture(session.Picture(png=data, path=path, source="file"))
    except RequestError:
        if data.startswith(b"\x89PNG"):
            raise unreadable from None  # a damaged PNG: Qt would half-decode it into a wrong picture
        image = QtGui.QImage()
        if not image.loadFromData(QtCore.QByteArray(data)) or image.isNull():
            raise unreadable from None
        png = image_to_png(image)
        return session.set_picture(session.Picture(png=png, path=path, source="file"))


def ask_image_file(parent=None) -> session.Picture | None:
    path, _ = QtWidgets.QFileDialog.getOpenFileName(parent or Gui.getMainWindow(), "Open a picture of a part",
                                                    "", IMAGE_FILTER)
    return open_image_file(path) if path else None


def paste_clipboard() -> session.Picture:
    clipboard = QtWidgets.QApplication.clipboard()
    image = clipboard.image()
    if image.isNull():
        raise CaptureError("The clipboard holds no image; copy a picture first, then paste.")
    return picture_from_image(image, "clipboard")


class RegionSelector(QtWidgets.QWidget):
    """A full-screen still of the desktop; drag a rectangle to capture it, Escape to give up."""

    def __init__(self, on_done: Callable[[session.Picture | None], None]) -> None:
        super().__init__(None, QtCore.Qt.FramelessWindowHint | QtCore.Qt.WindowStaysOnTopHint)
        self._on_done = on_done
        screen = QtWidgets.QApplication.primaryScreen()
        self._still = screen.grabWindow(0)
        self.setGeometry(screen.geometry())
        self.setCursor(QtCore.Qt.CrossCursor)
        self._band = QtWidgets.QRubberBand(QtWidgets.QRubberBand.Rectangle, self)
        self._origin = None
        self._finished = False

    def paintEvent(self, event) -> None:  # noqa: N802 - Qt's name
        painter = QtGui.QPainter(self)
        painter.drawPixmap(0, 0, self._still)
        painter.fillRect(self.rect(), QtGui.QColor(0, 0, 0, 60))
        painter.end()

    def mousePressEvent(self, event) -> None:  # noqa: N802
        self._origin = event.pos()
        self._band.setGeometry(QtCore.QRect(self._origin, QtCore.QSize()))
        self._band.show()

    def mouseMoveEvent(self, event) -> None:  # noqa: N802
        if self._origin is not None:
            self._band.setGeometry(QtCore.QRect(self._origin, event.pos()).normalized())

    def mouseReleaseEvent(self, event) -> None:  # noqa: N802
        if self._origin is None:
            return
        rect = QtCore.QRect(self._origin, event.pos()).normalized()
        self._band.hide()
        if rect.width() < 8 or rect.height() < 8:
            self._finish(None)
            return
        self._finish(self.select(rect))

    def select(self, rect) -> session.Picture:
        """Capture ``rect`` (widget coordinates) of the still; also what a test calls directly."""
        return picture_from_image(self._still.copy(rect).toImage(), "region")

    def keyPressEvent(self, event) -> None:  # noqa: N802
        if event.key() == QtCore.Qt.Key_Escape:
            self._finish(None)

    def _finish(self, picture: session.Picture | None) -> None:
        if self._finished:
            return
        self._finished = True
        self.close()
        self._on_done(picture)
