"""Overlay layers: show/hide the label map, its opacity, outline mode, and the colour legend."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QColor, QIcon, QPixmap
from PySide6.QtWidgets import (
    QCheckBox,
    QFormLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QSlider,
    QVBoxLayout,
    QWidget,
)

from radview.core.viewer_state import ViewerState
from radview.viewer.state_binding import bind_while_alive

__all__ = ["OverlayPanel"]


class OverlayPanel(QWidget):
    """Controls bound to the ViewerState's overlay fields (two-way)."""

    def __init__(self, state: ViewerState, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._state = state
        self.visible_box = QCheckBox("Show overlay  (O)")
        self.outline_box = QCheckBox("Outline only")
        self.opacity_slider = QSlider(Qt.Orientation.Horizontal)
        self.opacity_slider.setRange(0, 100)
        self.opacity_slider.setAccessibleName("Overlay opacity")
        self.opacity_label = QLabel()
        self.legend = QListWidget()
        self.legend.setAccessibleName("Label legend")
        self.empty_label = QLabel("No label map loaded.")
        self.empty_label.setWordWrap(True)

        form = QFormLayout()
        form.addRow(self.visible_box)
        form.addRow(self.outline_box)
        form.addRow("Opacity", self.opacity_slider)
        form.addRow("", self.opacity_label)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(QLabel("Labels"))
        layout.addWidget(self.empty_label)
        layout.addWidget(self.legend, stretch=1)

        self.visible_box.toggled.connect(self._on_visible_toggled)
        self.outline_box.toggled.connect(self._on_outline_toggled)
        self.opacity_slider.valueChanged.connect(self._on_opacity_moved)
        events = state.events
        bind_while_alive(self, [(events.overlay_visible, self._sync),
                                (events.overlay_outline, self._sync),
                                (events.overlay_opacity, self._sync),
                                (events.labels, self._sync)])
        self._sync()

    def _sync(self, *_: object) -> None:
        state = self._state
        for widget, value in ((self.visible_box, state.overlay_visible),
                              (self.outline_box, state.overlay_outline)):
            if widget.isChecked() != value:
                widget.setChecked(value)
        percent = round(state.overlay_opacity * 100)
        if self.opacity_slider.value() != percent:
            self.opacity_slider.setValue(percent)
        self.opacity_label.setText(f"{percent} %")
        has_labels = state.labels is not None
        for widget in (self.visible_box, self.outline_box, self.opacity_slider):
            widget.setEnabled(has_labels)
        self.empty_label.setVisible(not has_labels)
        self.legend.clear()
        if state.labels is not None:
            for value, name in state.labels.names.items():
                swatch = QPixmap(14, 14)
                swatch.fill(QColor(*state.labels.colours[value]))
                item = QListWidgetItem(QIcon(swatch), f"{value}  {name}")  # plain text: no markup
                self.legend.addItem(item)

    def _on_visible_toggled(self, checked: bool) -> None:
        self._state.overlay_visible = checked

    def _on_outline_toggled(self, checked: bool) -> None:
        self._state.overlay_outline = checked

    def _on_opacity_moved(self, value: int) -> None:
        self._state.overlay_opacity = value / 100.0
