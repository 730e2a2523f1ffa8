"""The selected lesion's RECIST long and short axes, drawn on the slice they were measured on.

``core.lesions`` measures both axes in the acquisition plane (array axis 0: the axial plane of
an axial series) and gives their end points in LPS mm. One :class:`RecistOverlay` belongs to a
:class:`~radview.viewer.slice_view.SliceView`; it draws only if that view's plane is the
acquisition plane, and only while the view shows the lesion's RECIST slice. The long axis is a
solid line, the short axis a dashed one in another colour, each labelled with its length.
The axes go away when the selection is cleared, the labels or the series change, or the
View menu's "Show RECIST axes" is off.
"""

from __future__ import annotations

import pyqtgraph as pg
from PySide6 import QtCore, QtGui, QtWidgets

from radview.core.lesions import Lesion
from radview.core.viewer_state import ViewerState
from radview.viewer.slice_view import SliceView
from radview.viewer.state_binding import bind_while_alive

__all__ = ["RecistOverlay", "LONG_AXIS_COLOUR", "SHORT_AXIS_COLOUR"]

#: Long axis: magenta, solid; short axis: white, dashed. Neither is a crosshair, annotation or
#: label colour, and they differ in style as well as colour (colour-vision deficiencies).
LONG_AXIS_COLOUR = (255, 80, 255)
SHORT_AXIS_COLOUR = (245, 245, 245)
_Z_VALUE = 25  # above the overlay and the crosshair, below measurement labels


class RecistOverlay(QtCore.QObject):
    """Draws one lesion's RECIST axes in ``view`` (see the module docstring).

    Attributes
    ----------
    long_line, short_line
        The two line items (view mm).
    long_label, short_label
        Their length labels.
    """

    def __init__(self, state: ViewerState, view: SliceView) -> None:
        super().__init__(view)
        self._state = state
        self._view = view
        self._lesion: Lesion | None = None
        self._enabled = True
        # (slice number of this plane, long axis ends, short axis ends) as (row, col) pixels
        self._placement: tuple[int, tuple, tuple] | None = None

        self.long_line = _line_item(LONG_AXIS_COLOUR, QtCore.Qt.PenStyle.SolidLine)
        self.short_line = _line_item(SHORT_AXIS_COLOUR, QtCore.Qt.PenStyle.DashLine)
        self.long_label = pg.TextItem(color=LONG_AXIS_COLOUR, anchor=(0, 1),
                                      fill=pg.mkBrush(0, 0, 0, 140))
        self.short_label = pg.TextItem(color=SHORT_AXIS_COLOUR, anchor=(0, 0),
                                       fill=pg.mkBrush(0, 0, 0, 140))
        for item in (self.long_line, self.short_line, self.long_label, self.short_label):
            item.setZValue(_Z_VALUE)
            item.setVisible(False)
            view.view_box.addItem(item, ignoreBounds=True)

        events = state.events
        bind_while_alive(self, [(events.cursor, self._update_visibility),
                                (events.volume, self._on_image_changed),
                                (events.labels, self._on_image_changed)])

    # ------------------------------------------------------------------ public API
    @property
    def lesion(self) -> Lesion | None:
        return self._lesion

    def set_lesion(self, lesion: Lesion | None) -> None:
        """Draw this lesion's axes (None: none)."""
        self._lesion = lesion
        self._placement = self._place(lesion)
        self._update_visibility()

    def set_enabled(self, enabled: bool) -> None:
        """The View menu toggle: False hides the axes whatever is selected."""
        self._enabled = enabled
        self._update_visibility()

    def is_shown(self) -> bool:
        """True while the axes are drawn in the view."""
        return self.long_line.isVisible()

    def slice_number(self) -> int | None:
        """The slice number of this view's plane the axes lie on (None: not in this plane)."""
        return self._placement[0] if self._placement is not None else None

    # ------------------------------------------------------------------ drawing
    def _on_image_changed(self, *_: object) -> None:
        self.set_lesion(None)  # the lesion was measured on the previous labels / series

    def _place(self, lesion: Lesion | None) -> tuple[int, tuple, tuple] | None:
        volume = self._state.volume
        plane = self._view.plane
        if lesion is None or volume is None:
            return None
        if volume.plane_geometry(plane).normal_axis != 0:
            return None  # not the acquisition plane: the axes are not in this view's slices
        ends = []
        slice_numbers = set()
        for point in (*lesion.long_axis_endpoints_lps, *lesion.short_axis_endpoints_lps):
            number, row, col = volume.plane_pixel_of_world(plane, point)
            slice_numbers.add(round(number))
            ends.append((row, col))
        if len(slice_numbers) != 1:
            return None  # not measured in one slice of this plane (cannot happen for RECIST)
        return slice_numbers.pop(), (ends[0], ends[1]), (ends[2], ends[3])

    def _update_visibility(self, *_: object) -> None:
        placement = self._placement
        shown = (self._enabled and placement is not None and self._lesion is not None
                 and self._state.volume is not None
                 and self._state.slice_index(self._view.plane) == placement[0])
        if shown:
            self._draw()
        for item in (self.long_line, self.short_line, self.long_label, self.short_label):
            item.setVisible(shown)

    def _draw(self) -> None:
        assert self._placement is not None and self._lesion is not None
        _, long_ends, short_ends = self._placement
        view = self._view
        long_points = [view.view_point_of_pixel(*end) for end in long_ends]
        short_points = [view.view_point_of_pixel(*end) for end in short_ends]
        self.long_line.setLine(QtCore.QLineF(*long_points))
        self.short_line.setLine(QtCore.QLineF(*short_points))
        lesion = self._lesion
        self.long_label.setText(f"Long axis {lesion.long_axis.value:.1f} {lesion.long_axis.unit}")
        self.short_label.setText(
            f"Short axis {lesion.short_axis.value:.1f} {lesion.short_axis.unit}")
        # Each label sits beyond an end of its axis, growing away from the lesion so it does
        # not cover it; the short axis' label goes to the end facing away from the long one's.
        centre = (long_points[0] + long_points[1]) / 2
        long_end = max(long_points, key=lambda p: (p.x(), -p.y()))
        away = long_end - centre
        short_end = min(short_points, key=lambda p: QtCore.QPointF.dotProduct(p - centre, away))
        for label, end in ((self.long_label, long_end), (self.short_label, short_end)):
            offset = end - centre
            label.setAnchor((0.0 if offset.x() >= 0 else 1.0, 0.0 if offset.y() >= 0 else 1.0))
            label.setPos(end)


def _line_item(colour: tuple[int, int, int],
               style: QtCore.Qt.PenStyle) -> QtWidgets.QGraphicsLineItem:
    pen = QtGui.QPen(QtGui.QColor(*colour))
    pen.setWidthF(2.0)
    pen.setCosmetic(True)  # the same width in screen pixels at any zoom
    pen.setStyle(style)
    pen.setCapStyle(QtCore.Qt.PenCapStyle.FlatCap)
    item = QtWidgets.QGraphicsLineItem()
    item.setPen(pen)
    return item
