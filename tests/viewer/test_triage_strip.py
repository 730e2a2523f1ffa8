"""The triage strip beside the axial slice bar: rows level with the bar's handle, click to go to
a slice, tooltips, flipped series, and what hides it."""

from __future__ import annotations

import numpy as np
import pytest
from PySide6 import QtCore, QtGui, QtWidgets

from radview.core.viewer_state import ViewerState
from radview.core.volume import ViewPlane
from radview.viewer.slice_view import SliceView
from radview.viewer.triage_strip import STRIP_WIDTH, TriageStrip, heat_colours
from tests.viewer.liver_scene import liver_scene

pytestmark = pytest.mark.gui

Qt = QtCore.Qt
AXIAL = ViewPlane.AXIAL
FLIPPED = np.diag([1.0, 1.0, -1.0])  # slices stored head to feet: axial display is flipped


def _scene(qtbot, direction=None, shape=(24, 96, 96), height: int = 400):
    image, _ = liver_scene((), direction=direction, shape=shape)
    state = ViewerState()
    state.show_volume(image)
    view = SliceView(state, AXIAL)
    strip = TriageStrip(state, view.slider)
    view.add_beside_slider(strip)
    qtbot.addWidget(view)
    view.resize(420, height)
    view.show()
    qtbot.waitExposed(view)
    return state, view, strip


def _handle_centre(view: SliceView, strip: TriageStrip) -> float:
    """Where the slice bar's handle centre is, in the strip's pixels (as the style puts it)."""
    slider = view.slider
    option = QtWidgets.QStyleOptionSlider()
    slider.initStyleOption(option)
    handle = slider.style().subControlRect(QtWidgets.QStyle.ComplexControl.CC_ScrollBar, option,
                                           QtWidgets.QStyle.SubControl.SC_ScrollBarSlider, slider)
    top = strip.mapFrom(view, slider.mapTo(view, handle.topLeft())).y()
    return top + handle.height() / 2  # QRect.center() would round down half a pixel


def _peak(count: int, k: int) -> list[float]:
    values = [0.0] * count
    values[k] = 0.87
    return values


def test_strip_stands_between_the_image_and_the_slice_bar(qtbot):
    state, view, strip = _scene(qtbot)
    assert strip.isHidden()  # nothing to show yet
    strip.set_probabilities(np.linspace(0, 1, 24))
    assert strip.isVisible()
    assert strip.width() == STRIP_WIDTH
    assert strip.geometry().right() < view.slider.geometry().left()
    assert strip.geometry().left() > view.graphics_view.geometry().right()
    assert strip.height() == view.slider.height()


def test_rows_are_level_with_the_slider_handle(qtbot):
    state, view, strip = _scene(qtbot)
    strip.set_probabilities(np.linspace(0, 1, 24))
    for number in (0, 5, 12, 23):
        state.set_slice(AXIAL, number)
        assert view.slider.value() == number
        assert strip.y_of_slice(number) == pytest.approx(_handle_centre(view, strip), abs=1.0)
        assert strip.slice_at(strip.y_of_slice(number)) == number
    # higher slice numbers (superior) are at the top, as on the bar
    assert strip.y_of_slice(23) < strip.y_of_slice(0)


def test_click_goes_to_the_slice_and_tooltip_gives_its_probability(qtbot):
    state, view, strip = _scene(qtbot)
    strip.set_probabilities(_peak(24, 17))
    y = round(strip.y_of_slice(17))
    qtbot.mouseClick(strip, Qt.MouseButton.LeftButton, pos=QtCore.QPoint(STRIP_WIDTH // 2, y))
    assert state.slice_index(AXIAL) == 17
    assert view.slider.value() == 17
    assert strip.tooltip_at(y) == "slice 18: P(tumour) = 0.87"  # the number the view shows
    assert view.corner_text()["bottom_left"].startswith("Slice 18/24")
    event = QtGui.QHelpEvent(QtCore.QEvent.Type.ToolTip, QtCore.QPoint(4, y),
                             strip.mapToGlobal(QtCore.QPoint(4, y)))
    QtWidgets.QApplication.sendEvent(strip, event)
    assert QtWidgets.QToolTip.text() == "slice 18: P(tumour) = 0.87"
    QtWidgets.QToolTip.hideText()


def test_drag_along_the_strip_scrubs_through_slices(qtbot):
    state, view, strip = _scene(qtbot)
    strip.set_probabilities([0.5] * 24)
    x = STRIP_WIDTH // 2
    qtbot.mousePress(strip, Qt.MouseButton.LeftButton, pos=QtCore.QPoint(x, round(
        strip.y_of_slice(3))))
    move = QtGui.QMouseEvent(QtCore.QEvent.Type.MouseMove,
                             QtCore.QPointF(x, strip.y_of_slice(20)),
                             strip.mapToGlobal(QtCore.QPointF(x, strip.y_of_slice(20))),
                             Qt.MouseButton.NoButton, Qt.MouseButton.LeftButton,
                             Qt.KeyboardModifier.NoModifier)
    QtWidgets.QApplication.sendEvent(strip, move)
    assert state.slice_index(AXIAL) == 20
    qtbot.mouseRelease(strip, Qt.MouseButton.LeftButton)


def test_a_flipped_series_maps_array_slices_to_the_slice_numbers_the_bar_uses(qtbot):
    state, view, strip = _scene(qtbot, direction=FLIPPED)
    assert state.volume.plane_geometry(AXIAL).normal_flipped
    strip.set_probabilities(_peak(24, 2))  # array slice k = 2
    number = strip.slice_at(strip.y_of_slice(21))
    assert number == 21 and strip.probability_of_slice(21) == pytest.approx(0.87)
    qtbot.mouseClick(strip, Qt.MouseButton.LeftButton,
                     pos=QtCore.QPoint(STRIP_WIDTH // 2, round(strip.y_of_slice(21))))
    # the crosshair is now on array slice 2, whose image the view shows
    assert round(float(state.volume.world_to_index(state.cursor)[2])) == 2
    assert np.array_equal(view.image_item.image.shape, state.volume.voxels[2].shape)
    assert strip.probabilities == tuple(_peak(24, 2))


def test_the_painted_profile_shows_the_probability_at_the_right_height(qtbot):
    state, view, strip = _scene(qtbot)
    strip.set_probabilities(_peak(24, 17))
    image = strip.grab().toImage()
    peak_row = round(strip.y_of_slice(17))
    quiet_row = round(strip.y_of_slice(5))
    heat = int(heat_colours(np.array([0.87]))[0]) & 0xFFFFFF
    assert image.pixel(STRIP_WIDTH - 1, peak_row) & 0xFFFFFF == heat
    # the bar is 87 % of the width long, growing from the slice bar's side
    filled = [image.pixel(x, peak_row) & 0xFFFFFF == heat for x in range(STRIP_WIDTH)]
    assert sum(filled) == int(np.ceil(0.87 * STRIP_WIDTH)) and filled[-1] and not filled[0]
    assert all(image.pixel(x, quiet_row) & 0xFFFFFF != heat for x in range(STRIP_WIDTH))


def test_one_hot_slice_is_not_lost_when_the_strip_is_shorter_than_the_series(qtbot):
    state, view, strip = _scene(qtbot, shape=(600, 32, 32), height=260)
    values = [0.02] * 600
    values[401] = 0.95
    strip.set_probabilities(values)
    image = strip.grab().toImage()
    heat = int(heat_colours(np.array([0.95]))[0]) & 0xFFFFFF
    column = [image.pixel(STRIP_WIDTH - 1, y) & 0xFFFFFF for y in range(image.height())]
    hot = [y for y, colour in enumerate(column) if colour == heat]
    assert hot, "the only tumour slice vanished in the downsampled strip"
    assert abs(hot[0] - strip.y_of_slice(401)) <= 2


def test_none_hides_and_values_that_do_not_fit_hide_it_with_a_reason(qtbot):
    state, view, strip = _scene(qtbot)
    strip.set_probabilities([0.1] * 24)
    strip.set_probabilities(None)
    assert strip.isHidden() and strip.reason == "" and strip.probabilities is None
    strip.set_probabilities([0.1] * 23)
    assert strip.isHidden() and strip.reason == "triage has 23 value(s) for 24 slices"
    strip.set_probabilities([0.1] * 23 + [1.2])
    assert strip.isHidden() and "from 0 to 1" in strip.reason


def test_a_series_not_acquired_axially_gets_no_strip(qtbot):
    coronal_acquisition = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]])
    state, view, strip = _scene(qtbot, direction=coronal_acquisition)
    assert state.volume.plane_geometry(AXIAL).normal_axis != 0
    strip.set_probabilities([0.5] * 24)
    assert strip.isHidden() and "not acquired axially" in strip.reason


def test_another_series_clears_the_strip_the_finished_load_of_the_same_one_keeps_it(qtbot):
    state, view, strip = _scene(qtbot)
    strip.set_probabilities([0.3] * 24)
    same_array = state.volume.with_voxels(state.volume.voxels)
    state.replace_volume(same_array)
    assert strip.isVisible()
    other, _ = liver_scene(())
    state.show_volume(other)
    assert strip.isHidden() and strip.probabilities is None
