"""Getting a picture: the 3D view, a screen region, an image file, or the clipboard (FreeCAD GUI)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import FreeCADGui as Gui

from . import session
from .jobs import RequestError, image_size
from .qt import QtCore, QtGui, QtWidgets, image_to_png

IMAGE_FILTER = "Images (*.png *.jpg *.jpeg *.bmp *.gif *.tif *.tiff *.webp)"


class CaptureError(Exception):
    """No picture could be taken; the message says why."""


def capture_view(size: int) -> session.Picture:
    """The active 3D view rendered at ``size``×``size`` on white, with its camera orientation."""
    document = Gui.ActiveDocument
    view = getattr(document, "ActiveView", None) if document else None
    if view is None or not hasattr(view, "saveImage"):
        raise CaptureError("Open a document with a 3D view to capture it.")
    path = session.new_capture_path("view")
    view.saveImage(str(path), size, size, "White")
    if not path.is_file():
        raise CaptureError("FreeCAD did not save the 3D view image.")
    camera = ""
    if hasattr(view, "getCameraOrientation"):
        camera = str(view.getCameraOrientation().Q)
    return session.set_picture(session.Picture(png=path.read_bytes(), path=str(path), source="view",
                                               camera=camera))


def picture_from_image(image, kind: str) -> session.Picture:
    """Save a QImage as a capture PNG."""
    if image is None or image.isNull():
        raise CaptureError("There is no image to use.")
    path = session.new_capture_path(kind)
    png = image_to_png(image)
    path.write_bytes(png)
    return session.set_picture(session.Picture(png=png, path=str(path), source=kind))


def open_image_file(path: str) -> session.Picture:
    """Read an image file; PNG and JPEG go as they are, other formats are converted to PNG."""
    try:
        data = Path(path).read_bytes()
    except OSError as error:
        raise CaptureError(f"Could not read {path}: {error.strerror}.") from None
    try:
        image_size(data)  # PNG/JPEG header and completeness check
        return session.set_picture(session.Picture(png=data, path=path, source="file"))
    except RequestError:
        image = QtGui.QImage()
        if not image.loadFromData(QtCore.QByteArray(data)) or image.isNull():
            raise CaptureError(f"{Path(path).name} is not an image FreeCAD can read, "
                               "or it is corrupt.") from None
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
        raise CaptureError("The clipboard holds no image. Copy a picture first.")
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
