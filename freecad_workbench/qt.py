"""Qt through FreeCAD's own PySide shim (Qt5 on 0.20, Qt6 on 1.1); never PySide2/6 directly.

On 0.20 ``from PySide import QtWidgets`` fails and widgets live in ``QtGui``; later shims have both.
"""

from PySide import QtCore, QtGui

try:
    from PySide import QtWidgets
except ImportError:
    QtWidgets = QtGui

__all__ = ["QtCore", "QtGui", "QtWidgets", "image_to_png", "png_to_pixmap"]


def image_to_png(image) -> bytes:
    """PNG bytes of a QImage or QPixmap."""
    data = QtCore.QByteArray()
    buffer = QtCore.QBuffer(data)
    buffer.open(QtCore.QIODevice.WriteOnly)
    image.save(buffer, "PNG")
    buffer.close()
    return bytes(data.data())


def png_to_pixmap(data: bytes):
    pixmap = QtGui.QPixmap()
    pixmap.loadFromData(QtCore.QByteArray(data))
    return pixmap
