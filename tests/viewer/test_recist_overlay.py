"""RECIST axes of the selected lesion: drawn where they were measured, on that slice only, in
two styles with their lengths, and gone when the selection, the labels or the toggle say so."""

from __future__ import annotations

import numpy as np
import pytest
from PySide6 import QtCore, QtGui

from radview.core.lesions import measure_liver
from radview.core.viewer_state import ViewerState
from radview.core.volume import ViewPlane
from radview.viewer.recist_overlay import LONG_AXIS_COLOUR, SHORT_AXIS_COLOUR, RecistOverlay
from radview.viewer.slice_view import SliceView
from tests.viewer.liver_scene import liver_scene

pytestmark = pytest.mark.gui

AXIAL, CORONAL = ViewPlane.AXIAL, ViewPlane.CORONAL
#: One ellipsoid lesion, 29 mm long (along x) and 17 mm short on its middle slice 12.
LESION = (((12, 48, 48), (14.0, 8.0, 8.0)),)


def _scene(qtbot, plane=AXIAL, direction=None):
    image, labels = liver_scene(LESION, direction=direction)
    state = ViewerState()
    state.show_volume(image)
    state.set_labels(labels)
    lesion = measure_liver(labels, image).lesions[0]
    view = SliceView(state, plane)
    overlay = RecistOverlay(state, view)
    qtbot.addWidget(view)
    view.resize(420, 400)
    view.show()
    qtbot.waitExposed(view)
    return state, view, overlay, lesion


def _go_to_lesion(state, lesion) -> None:
    start, end = lesion.long_axis_endpoints_lps
    state.cursor = tuple((a + b) / 2 for a, b in zip(start, end, strict=True))


def _colour_pixels(view: SliceView, colour) -> int:
    image = view.graphics_view.grab().toImage().convertToFormat(QtGui.QImage.Format.Format_RGB32)
    pixels = np.frombuffer(image.constBits(), np.uint32).reshape(image.height(), -1)
    rgb = np.stack([(pixels >> 16) & 255, (pixels >> 8) & 255, pixels & 255], axis=-1)
    return int(np.count_nonzero(np.all(np.abs(rgb.astype(int) - colour) <= 40, axis=-1)))


def _same_point(a: QtCore.QPointF, b: QtCore.QPointF) -> bool:
    return abs(a.x() - b.x()) < 1e-6 and abs(a.y() - b.y()) < 1e-6


def test_axes_are_drawn_at_their_lps_end_points_on_their_slice_only(qtbot):
    state, view, overlay, lesion = _scene(qtbot)
    assert lesion.long_axis.value == pytest.approx(29.0)
    state.set_slice(AXIAL, 3)
    overlay.set_lesion(lesion)
    assert not overlay.is_shown()  # another slice
    assert _colour_pixels(view, LONG_AXIS_COLOUR) == 0
    _go_to_lesion(state, lesion)
    assert state.slice_index(AXIAL) == lesion.recist_slice == overlay.slice_number()
    assert overlay.is_shown()
    line = overlay.long_line.line()
    expected = [view.view_point_of_world(p) for p in lesion.long_axis_endpoints_lps]
    assert _same_point(line.p1(), expected[0]) and _same_point(line.p2(), expected[1])
    short = overlay.short_line.line()
    expected = [view.view_point_of_world(p) for p in lesion.short_axis_endpoints_lps]
    assert _same_point(short.p1(), expected[0]) and _same_point(short.p2(), expected[1])
    # in view mm, the drawn lengths are the measured ones (1 mm pixels)
    assert line.length() == pytest.approx(lesion.long_axis.value)
    assert short.length() == pytest.approx(lesion.short_axis.value)
    assert overlay.long_label.textItem.toPlainText() == "Long axis 29.0 mm"
    assert overlay.short_label.textItem.toPlainText() == "Short axis 17.0 mm"
    qtbot.wait(50)
    assert _colour_pixels(view, LONG_AXIS_COLOUR) > 20  # what the user sees: a magenta line
    state.step(AXIAL, 1)
    assert not overlay.is_shown()


def test_long_and_short_axes_differ_in_colour_and_style(qtbot):
    _, _, overlay, _ = _scene(qtbot)
    long_pen, short_pen = overlay.long_line.pen(), overlay.short_line.pen()
    assert long_pen.color().getRgb()[:3] == LONG_AXIS_COLOUR
    assert short_pen.color().getRgb()[:3] == SHORT_AXIS_COLOUR
    assert long_pen.style() == QtCore.Qt.PenStyle.SolidLine
    assert short_pen.style() == QtCore.Qt.PenStyle.DashLine
    assert long_pen.isCosmetic() and short_pen.isCosmetic()


def test_clearing_the_selection_changing_labels_and_the_toggle_hide_the_axes(qtbot):
    state, view, overlay, lesion = _scene(qtbot)
    _go_to_lesion(state, lesion)
    overlay.set_lesion(lesion)
    overlay.set_enabled(False)
    assert not overlay.is_shown()
    overlay.set_enabled(True)
    assert overlay.is_shown()
    overlay.set_lesion(None)
    assert not overlay.is_shown()
    overlay.set_lesion(lesion)
    state.set_labels(None)  # the lesion was measured on these labels
    assert not overlay.is_shown() and overlay.lesion is None


def test_a_view_that_is_not_the_acquisition_plane_draws_nothing(qtbot):
    state, view, overlay, lesion = _scene(qtbot, plane=CORONAL)
    _go_to_lesion(state, lesion)
    overlay.set_lesion(lesion)
    assert overlay.slice_number() is None and not overlay.is_shown()


def test_a_flipped_series_draws_on_the_slice_number_the_view_shows(qtbot):
    state, view, overlay, lesion = _scene(qtbot, direction=np.diag([1.0, 1.0, -1.0]))
    overlay.set_lesion(lesion)
    count = state.volume.shape[0]
    assert overlay.slice_number() == count - 1 - lesion.recist_slice
    state.set_slice(AXIAL, count - 1 - lesion.recist_slice)
    assert view.slice_index == count - 1 - lesion.recist_slice
    assert overlay.is_shown()
