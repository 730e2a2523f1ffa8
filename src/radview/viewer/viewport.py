"""The three linked slice views, laid out per ``ViewerState.layout`` / ``maximized``.

* ``Layout.ONE``: the axial view alone; ``Layout.THREE``: axial | coronal | sagittal;
  ``Layout.FOUR``: 2 x 2 with the label legend (and series facts) in the fourth cell.
* ``ViewerState.maximized`` (a double-click in a view) overrides the layout with that one view;
  a second double-click clears it and the layout comes back.
"""

from __future__ import annotations

from PySide6 import QtCore, QtGui, QtWidgets

from radview.core.annotations import Annotation
from radview.core.viewer_state import Layout, ViewerState
from radview.core.volume import ViewPlane
from radview.viewer.slice_view import SliceView
from radview.viewer.state_binding import bind_while_alive

__all__ = ["ViewportPanel", "LabelLegendPanel"]

#: Grid cell of each view in the 2 x 2 layout; the legend takes (1, 1).
_FOUR_CELLS = {ViewPlane.AXIAL: (0, 0), ViewPlane.CORONAL: (0, 1), ViewPlane.SAGITTAL: (1, 0)}

_HELP_TEXT = (
    "Wheel / \u2191\u2193: slice \u00b7 PgUp/PgDn: 10 slices \u00b7 Home/End\n"
    "Left-drag: window/level (or the active tool) \u00b7 Right-drag: zoom\n"
    "Middle or Shift+left-drag: pan \u00b7 Click: move crosshair\n"
    "Double-click: maximise \u00b7 R: reset \u00b7 I: invert\n"
    "Click a measurement: select \u00b7 drag its handles or body: edit \u00b7 Del: delete"
)


class LabelLegendPanel(QtWidgets.QWidget):
    """Colour and name of every label of the overlay, plus the series' size and spacing."""

    def __init__(self, state: ViewerState, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self._state = state
        self.setAutoFillBackground(True)
        palette = self.palette()
        palette.setColor(QtGui.QPalette.ColorRole.Window, QtGui.QColor(18, 18, 18))
        palette.setColor(QtGui.QPalette.ColorRole.WindowText, QtGui.QColor(220, 220, 220))
        self.setPalette(palette)

        self._title = QtWidgets.QLabel("Labels")
        font = self._title.font()
        font.setBold(True)
        self._title.setFont(font)
        self._rows = QtWidgets.QGridLayout()
        self._rows.setHorizontalSpacing(8)
        self._series = QtWidgets.QLabel()
        self._series.setTextFormat(QtCore.Qt.TextFormat.PlainText)
        self._series.setWordWrap(True)
        help_label = QtWidgets.QLabel(_HELP_TEXT)
        help_label.setTextFormat(QtCore.Qt.TextFormat.PlainText)
        help_label.setWordWrap(True)
        help_label.setStyleSheet("color: rgb(150, 150, 150);")

        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(12, 10, 12, 10)
        layout.addWidget(self._title)
        layout.addLayout(self._rows)
        layout.addSpacing(8)
        layout.addWidget(self._series)
        layout.addStretch(1)
        layout.addWidget(help_label)

        events = state.events
        handlers = [
            (events.labels, self._on_labels_changed),
            (events.volume, self._on_labels_changed),
            (events.overlay_visible, self._on_labels_changed),
        ]
        bind_while_alive(self, handlers)
        self._on_labels_changed()

    def entries(self) -> list[str]:
        """The label names listed (in order), for tests and accessibility."""
        names = []
        for row in range(self._rows.rowCount()):
            item = self._rows.itemAtPosition(row, 1)
            if item is not None and item.widget() is not None:
                names.append(item.widget().text())
        return names

    def _on_labels_changed(self, *_: object) -> None:
        while self._rows.count():
            widget = self._rows.takeAt(0).widget()
            if widget is not None:
                widget.deleteLater()
        labels = self._state.labels
        if labels is None or not labels.names:
            self._title.setText("Labels: none")
        else:
            hidden = "" if self._state.overlay_visible else " (hidden)"
            self._title.setText(f"Labels{hidden}")
            for row, (value, name) in enumerate(labels.names.items()):
                swatch = QtWidgets.QLabel()
                pixmap = QtGui.QPixmap(14, 14)
                pixmap.fill(QtGui.QColor(*labels.colours[value]))
                swatch.setPixmap(pixmap)
                text = QtWidgets.QLabel(name)
                # Label names may come from model manifests or SEG files: never rich text.
                text.setTextFormat(QtCore.Qt.TextFormat.PlainText)
                self._rows.addWidget(swatch, row, 0)
                self._rows.addWidget(text, row, 1)
            self._rows.setColumnStretch(1, 1)
        volume = self._state.volume
        if volume is None:
            self._series.setText("")
            return
        slices, rows, cols = volume.shape
        sx, sy, sz = volume.spacing
        unit = f" ({volume.rescale.unit})" if volume.rescale.unit else ""
        self._series.setText(
            f"{volume.source.display_name}\n"
            f"{cols} \u00d7 {rows} \u00d7 {slices} voxels{unit}\n"
            f"{sx:.2f} \u00d7 {sy:.2f} \u00d7 {sz:.2f} mm"
        )


class ViewportPanel(QtWidgets.QWidget):
    """Axial, coronal and sagittal :class:`SliceView` s of one state, arranged by its layout.

    Attributes
    ----------
    views
        The three views by plane (all exist in every layout; hidden ones are not drawn).
    legend
        The label legend shown in the fourth cell of the 2 x 2 layout.

    Signals
    -------
    annotation_created(Annotation), cursor_moved(tuple, object, object)
    annotation_selected(str), annotation_edited(Annotation), annotation_delete_requested(str)
        Re-emitted from whichever view produced them (see :class:`SliceView`).
    """

    annotation_created = QtCore.Signal(object)
    annotation_selected = QtCore.Signal(str)
    annotation_edited = QtCore.Signal(object)
    annotation_delete_requested = QtCore.Signal(str)
    cursor_moved = QtCore.Signal(object, object, object)

    def __init__(self, state: ViewerState, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self._state = state
        self.views: dict[ViewPlane, SliceView] = {
            plane: SliceView(state, plane, self) for plane in ViewPlane
        }
        self.legend = LabelLegendPanel(state, self)
        for view in self.views.values():
            view.annotation_created.connect(self.annotation_created)
            view.annotation_selected.connect(self.annotation_selected)
            view.annotation_edited.connect(self.annotation_edited)
            view.annotation_delete_requested.connect(self.annotation_delete_requested)
            view.cursor_moved.connect(self.cursor_moved)
        self._grid = QtWidgets.QGridLayout(self)
        self._grid.setContentsMargins(0, 0, 0, 0)
        self._grid.setSpacing(2)
        self.setAutoFillBackground(True)
        palette = self.palette()
        palette.setColor(QtGui.QPalette.ColorRole.Window, QtGui.QColor(45, 45, 45))
        self.setPalette(palette)

        events = state.events
        handlers = [(events.layout, self._on_layout_changed),
                    (events.maximized, self._on_layout_changed)]
        bind_while_alive(self, handlers)
        self._on_layout_changed()

    # ------------------------------------------------------------------ public API
    def visible_planes(self) -> list[ViewPlane]:
        """The planes on screen in the current layout, in grid order."""
        return [plane for plane, view in self.views.items() if not view.isHidden()]

    def set_annotations(self, annotations: list[Annotation], labels: dict[str, str]) -> None:
        """Give every view the annotations (each draws those on its current slice)."""
        for view in self.views.values():
            view.set_annotations(annotations, labels)

    def set_selected_annotation(self, annotation_id: str | None) -> None:
        for view in self.views.values():
            view.set_selected_annotation(annotation_id)

    def set_message(self, text: str) -> None:
        """Show the same message ('Loading 12/500...', an error) centred in every view."""
        for view in self.views.values():
            view.set_message(text)

    # ------------------------------------------------------------------ layout
    def _on_layout_changed(self, *_: object) -> None:
        grid = self._grid
        for widget in (*self.views.values(), self.legend):
            grid.removeWidget(widget)
            widget.hide()
        for index in range(3):
            grid.setRowStretch(index, 0)
            grid.setColumnStretch(index, 0)

        maximized = self._state.maximized
        layout = self._state.layout
        cells: list[tuple[QtWidgets.QWidget, int, int]]
        if maximized is not None or layout is Layout.ONE:
            cells = [(self.views[maximized or ViewPlane.AXIAL], 0, 0)]
        elif layout is Layout.THREE:
            cells = [(self.views[plane], 0, column)
                     for column, plane in enumerate(ViewPlane)]
        else:
            cells = [(self.views[plane], *_FOUR_CELLS[plane]) for plane in ViewPlane]
            cells.append((self.legend, 1, 1))
        for widget, row, column in cells:
            grid.addWidget(widget, row, column)
            grid.setRowStretch(row, 1)
            grid.setColumnStretch(column, 1)
            widget.show()
        if maximized is not None:
            self.views[maximized].setFocus(QtCore.Qt.FocusReason.OtherFocusReason)

