"""Getting a picture: the 3D view, a screen region, an image file, or the clipboard (FreeCAD GUI)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import FreeCADGui as Gui

from . import placement, session
from .jobs import RequestError, check_picture
from .qt import QtCore, QtGui, QtWidgets, image_to_png

IMAGE_FILTER = "Images (*.png *.jpg *.jpeg *.bmp *.gif *.tif *.tiff *.webp)"


class CaptureError(Exception):
    """No picture could be taken; the message says why."""


def capture_view(size: int) -> session.Picture:
    """The active 3D view rendered at ``size``×``size`` on white, with its camera orientation and the
    bounding box of what is visible. The selection is cleared for the shot (its highlight would be
    part of the picture) and restored after."""
    document = Gui.ActiveDocument
    view = getattr(document, "ActiveView", None) if document else None
    if view is None or not hasattr(view, "saveImage"):
        raise CaptureError("Open a document with a 3D view to capture it.")
    path = session.new_capture_path("view")
    selected = _take_selection()
    try:
        view.saveImage(str(path), size, size, "White")
    finally:
        _restore_selection(selected)
    if not path.is_file():
        raise CaptureError("FreeCAD did not save the 3D view image; try again.")
    camera = ""
    if hasattr(view, "getCameraOrientation"):
        camera = str(view.getCameraOrientation().Q)
    return session.set_picture(session.Picture(png=path.read_bytes(), path=str(path), source="view",
                                               camera=camera, visible_box=visible_box(document.Document)))


def visible_box(doc) -> placement.Box | None:
    """The bounding box of every visible shape in ``doc``, or None when nothing with a shape shows."""
    boxes = []
    for obj in getattr(doc, "Objects", ()):
        shape = getattr(obj, "Shape", None)
        view_object = getattr(obj, "ViewObject", None)
        if shape is None or shape.isNull() or view_object is None or not view_object.Visibility:
            continue
        box = shape.BoundBox
        if box.isValid():
            boxes.append((box.XMin, box.YMin, box.ZMin, box.XMax, box.YMax, box.ZMax))
    return placement.union(boxes)


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
