"""A plain-text code view with line numbers. Qt only (FreeCAD's PySide shim), no FreeCAD: the runtime's
errors name a line, so the editor shows where that line is."""

from __future__ import annotations

from .qt import QtCore, QtGui, QtWidgets

GUTTER_PADDING_PX = 6


class CodeEditor(QtWidgets.QPlainTextEdit):
    """QPlainTextEdit with a line-number gutter on the left (Qt's own code-editor recipe)."""

    def __init__(self, text: str = "", parent=None, point_size: int = 10) -> None:
        super().__init__(parent)
        self.setFont(QtGui.QFont("Monospace", point_size))
        self.setLineWrapMode(QtWidgets.QPlainTextEdit.NoWrap)
        self.gutter = _Gutter(self)
        self.blockCountChanged.connect(lambda _count: self._fit_gutter())
        self.updateRequest.connect(self._scroll_gutter)
        self.setPlainText(text)
        self._fit_gutter()

    def gutter_width(self) -> int:
        digits = len(str(max(1, self.blockCount())))
        return GUTTER_PADDING_PX * 2 + self.fontMetrics().horizontalAdvance("9") * max(2, digits)

    def _fit_gutter(self) -> None:
        self.setViewportMargins(self.gutter_width(), 0, 0, 0)

    def _scroll_gutter(self, rect, dy: int) -> None:
        if dy:
            self.gutter.scroll(0, dy)
        else:
            self.gutter.update(0, rect.y(), self.gutter.width(), rect.height())

    def resizeEvent(self, event) -> None:  # noqa: N802 - Qt's name
        super().resizeEvent(event)
        area = self.contentsRect()
        self.gutter.setGeometry(QtCore.QRect(area.left(), area.top(), self.gutter_width(), area.height()))

    def visible_line_numbers(self) -> list[int]:
        """The 1-based numbers the gutter draws now (tests, and what a screenshot shows)."""
        numbers = []
        block = self.firstVisibleBlock()
        top = self.blockBoundingGeometry(block).translated(self.contentOffset()).top()
        while block.isValid() and top <= self.viewport().height():
            if block.isVisible():
                numbers.append(block.blockNumber() + 1)
            top += self.blockBoundingRect(block).height()
            block = block.next()
        return numbers

    def paint_gutter(self, event) -> None:
        painter = QtGui.QPainter(self.gutter)
        painter.fillRect(event.rect(), self.palette().color(QtGui.QPalette.AlternateBase))
        painter.setPen(self.palette().color(QtGui.QPalette.Disabled, QtGui.QPalette.Text))
        block = self.firstVisibleBlock()
        top = self.blockBoundingGeometry(block).translated(self.contentOffset()).top()
        height = self.fontMetrics().height()
        while block.isValid() and top <= event.rect().bottom():
            if block.isVisible():
                painter.drawText(0, int(top), self.gutter.width() - GUTTER_PADDING_PX, height,
                                 QtCore.Qt.AlignRight, str(block.blockNumber() + 1))
            top += self.blockBoundingRect(block).height()
            block = block.next()
        painter.end()


class _Gutter(QtWidgets.QWidget):
    def __init__(self, editor: CodeEditor) -> None:
        super().__init__(editor)
        self.editor = editor

    def sizeHint(self):  # noqa: N802 - Qt's name
        return QtCore.QSize(self.editor.gutter_width(), 0)

    def paintEvent(self, event) -> None:  # noqa: N802
        self.editor.paint_gutter(event)
