"""The triage strip: per-slice P(tumour) drawn beside the axial view's slice bar.

The triage model gives one probability per slice of the acquisition (array axis 0). The strip
stands next to the axial slice bar and draws, at the height where the bar's handle centre sits
for each slice, a bar as long as that slice's probability, coloured by it (a heat profile), so
the slices worth a look stand out along the scroll range. Where several slices share one screen
pixel row the highest probability is drawn: a small tumour must not vanish when the strip is
shorter than the series. A click (or drag) on the strip goes to that slice; the tooltip reads
"slice 58: P(tumour) = 0.87" with the slice number the view's corner shows.

Slice number and array index differ when the axial display is flipped (slices stored from head
to feet): slice number ``n`` of the axial plane is array slice ``count - 1 - n`` then, exactly as
``Volume.plane_slice`` cuts it, so the strip follows the same rule as the bar.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PySide6.QtCore import QEvent, QPoint, QRectF, Qt
from PySide6.QtGui import QColor, QImage, QMouseEvent, QPainter
from PySide6.QtWidgets import (
    QScrollBar,
    QSizePolicy,
    QStyle,
    QStyleOptionSlider,
    QToolTip,
    QWidget,
)

from radview.core.viewer_state import ViewerState
from radview.core.volume import ViewPlane
from radview.viewer.state_binding import bind_while_alive

__all__ = ["TriageStrip", "STRIP_WIDTH", "heat_colours"]

STRIP_WIDTH = 14
#: float32 model outputs may overshoot 0 / 1 by this much; more is a wrong input.
_ROUND_OFF = 1e-6
_GROOVE = QColor(28, 28, 28)
#: Heat scale stops (probability, RGB): dim slate -> orange -> red.
_HEAT_STOPS = np.array([0.0, 0.5, 1.0])
_HEAT_RGB = np.array([(55, 62, 80), (230, 159, 0), (255, 60, 40)], dtype=np.float64)


def heat_colours(probabilities: np.ndarray) -> np.ndarray:
    """ARGB32 colours (opaque) of probabilities 0-1 on the strip's heat scale."""
    p = np.clip(np.asarray(probabilities, dtype=np.float64), 0.0, 1.0)
    channels = [np.rint(np.interp(p, _HEAT_STOPS, _HEAT_RGB[:, c])).astype(np.uint32)
                for c in range(3)]
    return (0xFF000000 | (channels[0] << 16) | (channels[1] << 8) | channels[2]).astype(np.uint32)


class TriageStrip(QWidget):
    """Per-slice P(tumour) aligned with ``slider`` (the axial view's slice bar).

    Parameters
    ----------
    state
        The viewer state: the shown volume, and where a click moves the crosshair.
    slider
        The axial slice bar; the strip reads its geometry (groove, handle size, direction) so
        each slice's row sits level with the handle at that slice.

    Attributes
    ----------
    reason
        Why the strip is hidden after :meth:`set_probabilities` was given values ('' when it is
        shown or was cleared on purpose).
    """

    def __init__(self, state: ViewerState, slider: QScrollBar,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._state = state
        self._slider = slider
        self._values: np.ndarray | None = None  # by array slice k (axis 0)
        self._voxels: np.ndarray | None = None  # the volume's array the values belong to
        self._flipped = False
        self.reason = ""
        self.setFixedWidth(STRIP_WIDTH)
        self.setSizePolicy(QSizePolicy.Policy.Fixed, QSizePolicy.Policy.Expanding)
        self.setCursor(Qt.CursorShape.PointingHandCursor)
        self.setAccessibleName("Slice triage: P(tumour) per slice")
        slider.rangeChanged.connect(self.update)
        self.hide()
        bind_while_alive(self, [(state.events.volume, self._on_volume_changed)])

    # ------------------------------------------------------------------ public API
    def set_probabilities(self, values: Sequence[float] | None) -> None:
        """P(tumour) of every slice of the shown volume, index k = array slice (axis 0).

        ``None`` hides the strip. Values that do not fit the shown series (another length,
        not finite, outside 0-1) or a series not acquired axially hide it too, with
        :attr:`reason` saying why.
        """
        if values is None:
            self._clear("")
            return
        volume = self._state.volume
        if volume is None:
            self._clear("no series is shown")
            return
        array = np.asarray(values, dtype=np.float64)
        geometry = volume.plane_geometry(ViewPlane.AXIAL)
        if array.ndim != 1 or array.size != volume.shape[0]:
            self._clear(f"triage has {array.size} value(s) for {volume.shape[0]} slices")
        elif not np.all(np.isfinite(array)) or np.any(
                (array < -_ROUND_OFF) | (array > 1.0 + _ROUND_OFF)):
            self._clear("triage probabilities must be numbers from 0 to 1")
        elif geometry.normal_axis != 0:
            self._clear("the series was not acquired axially: its per-slice triage does not "
                        "follow the axial slices")
        else:
            self._values = np.clip(array, 0.0, 1.0)
            self._voxels = volume.voxels
            self._flipped = geometry.normal_flipped
            self.reason = ""
            self.show()
            self.update()

    @property
    def probabilities(self) -> tuple[float, ...] | None:
        """The shown values by array slice k, or None when hidden."""
        return None if self._values is None else tuple(float(v) for v in self._values)

    def probability_of_slice(self, number: int) -> float:
        """P(tumour) of axial slice number ``number`` (the slider's value)."""
        values = self._by_slice_number()
        if values is None:
            raise RuntimeError("no triage shown")
        return float(values[number])

    def slice_at(self, y: float) -> int | None:
        """The axial slice number drawn at height ``y`` (widget pixels), clamped into range."""
        track = self._track()
        if track is None or self._values is None:
            return None
        centre_0, step = track
        count = self._values.size
        if count == 1 or step == 0.0:
            return 0
        return int(min(max(round((y - centre_0) / step), 0), count - 1))

    def y_of_slice(self, number: int) -> float:
        """Height (widget pixels) of the centre of slice number ``number``'s row."""
        track = self._track()
        if track is None:
            raise RuntimeError("no triage shown")
        centre_0, step = track
        return centre_0 + number * step

    def tooltip_at(self, y: float) -> str:
        """The tooltip at height ``y``: 'slice 58: P(tumour) = 0.87' ('' when hidden)."""
        number = self.slice_at(y)
        if number is None:
            return ""
        return f"slice {number + 1}: P(tumour) = {self.probability_of_slice(number):.2f}"

    # ------------------------------------------------------------------ state
    def _on_volume_changed(self, *_: object) -> None:
        volume = self._state.volume
        # The same array (the finished load of a provisional volume) keeps its triage.
        if self._values is not None and (volume is None or volume.voxels is not self._voxels):
            self._clear("")

    def _clear(self, reason: str) -> None:
        self._values = self._voxels = None
        self.reason = reason
        self.hide()

    def _by_slice_number(self) -> np.ndarray | None:
        if self._values is None:
            return None
        return self._values[::-1] if self._flipped else self._values

    def _track(self) -> tuple[float, float] | None:
        """(height of slice 0's centre, height step per slice number) in widget pixels,
        from where the bar's style puts its handle: the strip's rows follow the bar's."""
        slider = self._slider
        option = QStyleOptionSlider()
        slider.initStyleOption(option)
        style = slider.style()
        groove = style.subControlRect(QStyle.ComplexControl.CC_ScrollBar, option,
                                      QStyle.SubControl.SC_ScrollBarGroove, slider)
        handle = style.subControlRect(QStyle.ComplexControl.CC_ScrollBar, option,
                                      QStyle.SubControl.SC_ScrollBarSlider, slider)
        offset = self.mapFromGlobal(slider.mapToGlobal(QPoint(0, 0))).y()
        low, high = slider.minimum(), slider.maximum()
        if groove.height() <= 0:
            return None
        if high <= low:  # one slice: its row is the whole groove
            return offset + groove.top() + groove.height() / 2, float(groove.height())
        span = groove.height() - handle.height()
        first = QStyle.sliderPositionFromValue(low, high, low, span, option.upsideDown)
        last = QStyle.sliderPositionFromValue(low, high, high, span, option.upsideDown)
        centre_low = offset + groove.top() + first + handle.height() / 2
        return centre_low, (last - first) / (high - low)

    # ------------------------------------------------------------------ Qt events
    def paintEvent(self, event) -> None:
        painter = QPainter(self)
        painter.fillRect(self.rect(), _GROOVE)
        values, track = self._by_slice_number(), self._track()
        if values is None or track is None:
            painter.end()
            return
        centre_0, step = track
        count = values.size
        ordered = values[::-1] if step < 0 else values  # top row first
        height = abs(step) * count
        top = min(centre_0, centre_0 + step * (count - 1)) - abs(step) / 2
        rows = max(1, round(height))
        # Each pixel row shows the highest probability of the slices that fall in it.
        starts = np.minimum((np.arange(rows) * count) // rows, count - 1)
        shown = np.maximum.reduceat(ordered, starts)
        width = self.width()
        # Bars grow from the slice bar's side, so the profile reads against the bar.
        filled = np.arange(width)[None, :] >= width - np.ceil(shown * width)[:, None]
        pixels = np.where(filled, heat_colours(shown)[:, None], np.uint32(_GROOVE.rgba()))
        pixels = np.ascontiguousarray(pixels, dtype=np.uint32)
        image = QImage(pixels.data, width, rows, width * 4, QImage.Format.Format_ARGB32)
        painter.drawImage(QRectF(0, top, width, height), image)
        painter.end()

    def mousePressEvent(self, event: QMouseEvent) -> None:
        if event.button() == Qt.MouseButton.LeftButton:
            self._go_to(event.position().y())
            event.accept()
        else:
            super().mousePressEvent(event)

    def mouseMoveEvent(self, event: QMouseEvent) -> None:
        if event.buttons() & Qt.MouseButton.LeftButton:  # drag along the strip to scrub
            self._go_to(event.position().y())
            event.accept()
        else:
            super().mouseMoveEvent(event)

    def event(self, event: QEvent) -> bool:
        if event.type() == QEvent.Type.ToolTip:
            text = self.tooltip_at(event.pos().y())
            if text:
                QToolTip.showText(event.globalPos(), text, self)
            else:
                QToolTip.hideText()
                event.ignore()
            return True
        return super().event(event)

    def _go_to(self, y: float) -> None:
        number = self.slice_at(y)
        if number is not None:
            self._state.set_slice(ViewPlane.AXIAL, number)
