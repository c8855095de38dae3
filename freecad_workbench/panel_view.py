"""The Generate panel's widgets. Qt only (through FreeCAD's PySide shim), no FreeCAD: it draws a
``lifecycle.PanelModel`` and nothing else, so it also builds under Qt 6 offscreen in a plain test."""

from __future__ import annotations

import base64
from collections.abc import Callable

from model_runtime import protocol

from .code_editor import CodeEditor
from .lifecycle import CandidateCard, PanelModel
from .messages import ACTION_LABELS
from .preferences import INSERT_AS
from .qt import QtCore, QtGui, QtWidgets, png_to_pixmap

THUMB = 96  # px: the runtime renders 96 px thumbnails (model_runtime.pipeline.THUMBNAIL_SIZE)
PREVIEW = 160
# FreeCAD 0.20's Combo View opens 264 px wide, and its task box and scroll bar take about 46 px of
# that: the panel must fit what is left without cutting off a button.
MAX_MIN_WIDTH = 215


def standard_buttons() -> int:
    """OK and Close as the int FreeCAD's task panel wants: Qt 6's Python enums carry it in ``.value``,
    Qt 5's convert with ``int()``."""
    buttons = (QtWidgets.QDialogButtonBox.Ok, QtWidgets.QDialogButtonBox.Close)
    return sum(getattr(button, "value", None) or int(button) for button in buttons)


class PanelView:
    """``form`` is what FreeCAD shows in the task area; ``on_action(name)`` runs an error's button."""

    def __init__(self, on_action: Callable[[str], None] = lambda _name: None) -> None:
        self.on_action = on_action
        self._thumbs: dict[tuple, object] = {}
        self._selected_once = False
        self.form = self._build()

    def _build(self):
        form = QtWidgets.QWidget()
        form.setWindowTitle("CadSnap: generate")
        form.setObjectName("CadSnapGeneratePanel")
        layout = QtWidgets.QVBoxLayout(form)
        layout.setContentsMargins(4, 4, 4, 4)  # FreeCAD's task box has its own margin around the panel

        self.preview = QtWidgets.QLabel("No picture yet")
        self.preview.setAlignment(QtCore.Qt.AlignCenter)
        self.preview.setMinimumHeight(PREVIEW)
        self.preview.setFrameShape(QtWidgets.QFrame.StyledPanel)
        layout.addWidget(self.preview)
        self.picture_note = QtWidgets.QLabel("")  # what a capture took ("the selection: Bracket")
        self.picture_note.setWordWrap(True)
        self.picture_note.hide()
        layout.addWidget(self.picture_note)

        # Two by two: four in a row would make the panel wider than the Combo View opens.
        sources = QtWidgets.QGridLayout()
        self.view_button = QtWidgets.QPushButton("3D view")
        self.region_button = QtWidgets.QPushButton("Region")
        self.open_button = QtWidgets.QPushButton("Open…")
        self.paste_button = QtWidgets.QPushButton("Paste")
        buttons = (self.view_button, self.region_button, self.open_button, self.paste_button)
        for n, button in enumerate(buttons):
            sources.addWidget(button, n // 2, n % 2)
        layout.addLayout(sources)

        options = QtWidgets.QFormLayout()
        self.instruction = QtWidgets.QLineEdit()
        self.instruction.setPlaceholderText("optional: \"holes are 6 mm\"")
        options.addRow("Instruction", self.instruction)
        self.candidates = QtWidgets.QSpinBox()
        self.candidates.setRange(1, protocol.MAX_CANDIDATES)
        options.addRow("Candidates", self.candidates)
        size_row = QtWidgets.QHBoxLayout()
        self.size_mm = QtWidgets.QDoubleSpinBox()
        self.size_mm.setRange(0, 10_000)
        self.size_mm.setDecimals(1)
        self.size_mm.setSuffix(" mm")
        self.size_mm.setSpecialValueText("any")
        self.size_mm.setToolTip("The new solid's largest dimension. A capture of the 3D view fills in the "
                                "size of what was visible; \"any\" keeps the model's own size.")
        self.size_clear = QtWidgets.QPushButton("Any")
        self.size_clear.setToolTip("Keep the model's own size")
        self.size_clear.clicked.connect(lambda _checked=False: self.size_mm.setValue(0))
        size_row.addWidget(self.size_mm, 1)
        size_row.addWidget(self.size_clear)
        options.addRow("Overall size", size_row)
        self.at_picked_point = QtWidgets.QCheckBox("Place at the picked point")
        self.at_picked_point.setToolTip("Click a point on a shape in the 3D view before pressing OK. Off: "
                                        "beside the parts in the document")
        self.fit_dimensions = QtWidgets.QCheckBox("Fit to the picture")
        self.fit_dimensions.setChecked(True)
        self.fit_dimensions.setToolTip("Search for the part whose render best matches the picture: the "
                                       "model's programs, envelopes, holes, fitted dimensions (within the "
                                       "Search time of Preferences). Off: the model's program as written.")
        self.insert_as = QtWidgets.QComboBox()
        self.insert_as.addItems(list(INSERT_AS))
        # Its longest entry would set the panel's width: let it shrink and elide instead.
        self.insert_as.setSizeAdjustPolicy(QtWidgets.QComboBox.AdjustToMinimumContentsLengthWithIcon)
        self.insert_as.setMinimumContentsLength(10)
        self.insert_as.setToolTip("Feature tree: a PartDesign Body with sketches, features and a Parameters "
                                  "spreadsheet, when every step of the program maps to a feature (else the "
                                  "solid, and the Report view says why). Solid: one shape carrying its "
                                  "CadQuery source.")
        options.addRow("Insert as", self.insert_as)
        # Labels above their fields when the panel is narrow, beside them when there is room.
        options.setRowWrapPolicy(QtWidgets.QFormLayout.WrapLongRows)
        layout.addLayout(options)
        # Below the form, not indented by its label column: the panel stays narrow.
        layout.addWidget(self.at_picked_point)
        layout.addWidget(self.fit_dimensions)

        self.runtime_label = QtWidgets.QLabel("Runtime: checking…")
        self.runtime_label.setWordWrap(True)
        layout.addWidget(self.runtime_label)
        self.warning_label = QtWidgets.QLabel("")
        self.warning_label.setWordWrap(True)
        self.warning_label.setStyleSheet("color: #8a5a00;")
        self.warning_label.hide()
        layout.addWidget(self.warning_label)
        self.containment_label = QtWidgets.QLabel("")
        self.containment_label.setWordWrap(True)
        self.containment_label.setStyleSheet("color: #2e6b2e;")
        self.containment_label.hide()
        layout.addWidget(self.containment_label)

        actions = QtWidgets.QHBoxLayout()
        self.generate_button = QtWidgets.QPushButton("Generate")
        self.cancel_button = QtWidgets.QPushButton("Cancel job")
        actions.addWidget(self.generate_button)
        actions.addWidget(self.cancel_button)
        layout.addLayout(actions)

        self.progress = QtWidgets.QProgressBar()
        self.progress.setRange(0, 1000)
        self.progress.setTextVisible(True)
        layout.addWidget(self.progress)
        self.stage_label = QtWidgets.QLabel("")
        self.stage_label.setWordWrap(True)  # "… Press OK to insert." must never be cut off
        layout.addWidget(self.stage_label)

        # The one place an error is shown: its sentence and the buttons that fix it.
        self.error_box = QtWidgets.QFrame()
        self.error_box.setObjectName("CadSnapError")
        self.error_box.setFrameShape(QtWidgets.QFrame.StyledPanel)
        error_layout = QtWidgets.QVBoxLayout(self.error_box)
        self.message = QtWidgets.QLabel("")
        self.message.setWordWrap(True)
        self.message.setStyleSheet("color: #b00020;")
        self.message.setTextInteractionFlags(QtCore.Qt.TextSelectableByMouse)
        error_layout.addWidget(self.message)
        self.action_row = QtWidgets.QVBoxLayout()  # stacked: side by side they widen the panel
        self.action_buttons: dict[str, object] = {}
        for name, label in ACTION_LABELS.items():
            button = QtWidgets.QPushButton(label)
            button.clicked.connect(lambda _checked=False, action=name: self.on_action(action))
            button.hide()
            self.action_buttons[name] = button
            self.action_row.addWidget(button)
        error_layout.addLayout(self.action_row)
        self.error_box.hide()
        layout.addWidget(self.error_box)

        self.candidate_list = QtWidgets.QListWidget()
        self.candidate_list.setViewMode(QtWidgets.QListView.IconMode)
        self.candidate_list.setIconSize(QtCore.QSize(THUMB, THUMB))
        self.candidate_list.setResizeMode(QtWidgets.QListView.Adjust)
        self.candidate_list.setMovement(QtWidgets.QListView.Static)
        self.candidate_list.setFlow(QtWidgets.QListView.LeftToRight)
        self.candidate_list.setWrapping(False)  # one row, scrolled sideways: the code stays in view
        self.candidate_list.setMinimumHeight(THUMB + 40)
        self.candidate_list.setMaximumHeight(THUMB + 44)
        layout.addWidget(self.candidate_list)

        self.code_view = CodeEditor(point_size=9)
        self.code_view.setReadOnly(True)
        self.code_view.setPlaceholderText("The generated CadQuery code streams here.")
        layout.addWidget(self.code_view, 1)
        return form

    # --- drawing -----------------------------------------------------------------------------------

    def show_picture(self, png: bytes | None, note: str = "") -> bool:
        """Show the picture and what it shows (``note``); False when Qt cannot decode it."""
        self.picture_note.setText(note)
        self.picture_note.setVisible(bool(note))
        if not png:
            self.preview.setText("No picture yet: capture the 3D view, a region, or open an image.")
            return False
        pixmap = png_to_pixmap(png)
        if pixmap.isNull():
            self.preview.setPixmap(QtGui.QPixmap())
            self.preview.setText("This picture cannot be shown.")
            return False
        self.preview.setPixmap(pixmap.scaled(PREVIEW, PREVIEW, QtCore.Qt.KeepAspectRatio,
                                             QtCore.Qt.SmoothTransformation))
        return True

    def new_job(self) -> None:
        self.candidate_list.clear()
        self.code_view.clear()
        self._selected_once = False

    def draw(self, model: PanelModel) -> None:
        self.runtime_label.setText(model.runtime_line)
        self.warning_label.setText(model.runtime_warning)
        self.warning_label.setVisible(bool(model.runtime_warning))
        self.containment_label.setText(model.containment_line)
        self.containment_label.setVisible(bool(model.containment_line))
        self.generate_button.setEnabled(model.can_generate)
        self.cancel_button.setEnabled(model.running)
        self.progress.setValue(int(model.progress * 1000))
        self.stage_label.setText(model.stage_line)
        if model.error is None:
            self.error_box.hide()
        else:
            self.message.setText(model.error.text)
            for name, button in self.action_buttons.items():
                button.setVisible(name in model.error.actions)
            self.error_box.show()
        for card in model.cards:
            item = self._item(card.index)
            item.setText(card.caption)
            item.setToolTip(card.tooltip)
            item.setIcon(QtGui.QIcon(self._thumbnail(card)))
        self._order([card.index for card in model.cards])
        if model.select_index is not None and not self._selected_once:
            self._selected_once = True
            self.candidate_list.setCurrentItem(self._item(model.select_index))
        if self.candidate_list.currentItem() is None and model.code != self.code_view.toPlainText():
            self.code_view.setPlainText(model.code)
            self.code_view.moveCursor(QtGui.QTextCursor.End)

    def _order(self, indices: list[int]) -> None:
        """Put the list in the model's order (best score first) as scores arrive; the selection stays."""
        shown = [self.candidate_list.item(row).data(QtCore.Qt.UserRole)
                 for row in range(self.candidate_list.count())]
        wanted = [index for index in indices if index in shown]
        wanted += [index for index in shown if index not in wanted]
        if shown == wanted:
            return
        selected = self.selected_index()
        self.candidate_list.blockSignals(True)  # moving items is not the user picking one
        items = {}
        while self.candidate_list.count():
            item = self.candidate_list.takeItem(0)
            items[item.data(QtCore.Qt.UserRole)] = item
        for index in wanted:
            self.candidate_list.addItem(items[index])
        if selected is not None:
            self.candidate_list.setCurrentItem(items[selected])
        self.candidate_list.blockSignals(False)

    def captions(self) -> list[str]:
        """The candidate captions as listed, left to right (tests)."""
        return [self.candidate_list.item(row).text() for row in range(self.candidate_list.count())]

    @property
    def feature_tree(self) -> bool:
        """The "Insert as" choice: True for the feature tree."""
        return self.insert_as.currentIndex() == 0

    @feature_tree.setter
    def feature_tree(self, on: bool) -> None:
        self.insert_as.setCurrentIndex(0 if on else 1)

    def show_code(self, text: str) -> None:
        self.code_view.setPlainText(text)

    def selected_index(self) -> int | None:
        item = self.candidate_list.currentItem()
        return None if item is None else item.data(QtCore.Qt.UserRole)

    def _item(self, index: int):
        for row in range(self.candidate_list.count()):
            item = self.candidate_list.item(row)
            if item.data(QtCore.Qt.UserRole) == index:
                return item
        item = QtWidgets.QListWidgetItem()
        item.setData(QtCore.Qt.UserRole, index)
        self.candidate_list.addItem(item)
        return item

    def _thumbnail(self, card: CandidateCard):
        key = (card.valid, card.thumbnail_png)
        if key in self._thumbs:
            return self._thumbs[key]
        pixmap = None
        if card.thumbnail_png:
            decoded = png_to_pixmap(base64.b64decode(card.thumbnail_png))
            if not decoded.isNull():
                pixmap = decoded.scaled(THUMB, THUMB, QtCore.Qt.KeepAspectRatio,
                                        QtCore.Qt.SmoothTransformation)
        if pixmap is None:
            # No render from the runtime: a card with the verdict, so the list still reads at a glance.
            pixmap = QtGui.QPixmap(THUMB, THUMB)
            colour = {True: "#d8f0d8", False: "#f6d6d6", None: "#e6e6e6"}[card.valid]
            pixmap.fill(QtGui.QColor(colour))
            painter = QtGui.QPainter(pixmap)
            painter.setFont(QtGui.QFont("Sans", 24))
            mark = {True: "✓", False: "✗", None: "…"}[card.valid]
            painter.drawText(pixmap.rect(), QtCore.Qt.AlignCenter, mark)
            painter.end()
        self._thumbs[key] = pixmap
        return pixmap
