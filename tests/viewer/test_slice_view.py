"""SliceView / ViewportPanel driven through real Qt events (pytest-qt, offscreen).

Mouse events are sent with floating-point viewport positions computed from the view's own
pixel -> viewport mapping, so geometric results (ruler ends in LPS mm, clicked slices) can be
compared exactly with what ``Volume`` says, not within a screen pixel.
"""

from __future__ import annotations

import numpy as np
import pytest
from PySide6 import QtCore, QtGui, QtWidgets

from radview.core.annotations import Annotation, AnnotationKind
from radview.core.labelmap import LabelMap
from radview.core.phantom import make_abdomen_phantom
from radview.core.viewer_state import Layout, StudyInfo, Tool, ViewerState
from radview.core.volume import Rescale, ViewPlane, Volume
from radview.core.windowing import WindowLevel, window_to_uint8
from radview.viewer.slice_view import (
    PAGE_STEP,
    WINDOW_DRAG_PIXELS,
    DisplayTable,
    SliceView,
    label_bounds,
    label_outline,
)
from radview.viewer.viewport import ViewportPanel

Qt = QtCore.Qt
AXIAL, CORONAL, SAGITTAL = ViewPlane.AXIAL, ViewPlane.CORONAL, ViewPlane.SAGITTAL
STUDY = StudyInfo(patient_name="Doe^John", patient_id="PID-12345", study_date="20240131",
                  series_description="Portal venous", modality="CT")


# ----------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def phantom():
    return make_abdomen_phantom(matrix=128, slices=40)


@pytest.fixture
def state(phantom):
    state = ViewerState()
    state.show_volume(phantom.ct, STUDY)
    state.set_labels(LabelMap.liver(phantom.labels))
    return state


def _show(qtbot, widget: QtWidgets.QWidget, width: int = 420, height: int = 400):
    qtbot.addWidget(widget)
    widget.resize(width, height)
    widget.show()
    qtbot.waitExposed(widget)
    return widget


@pytest.fixture
def axial(qtbot, state):
    return _show(qtbot, SliceView(state, AXIAL))


def _ct(voxels: np.ndarray, spacing=(1.0, 1.0, 1.0), direction=None, origin=(0.0, 0.0, 0.0)):
    return Volume(voxels, spacing=spacing, origin=origin,
                  direction=np.eye(3) if direction is None else direction, modality="CT",
                  rescale=Rescale(unit="HU"))


# ----------------------------------------------------------------------------- input helpers
def _mouse(view: SliceView, kind: QtCore.QEvent.Type, pos: QtCore.QPointF,
           button=Qt.MouseButton.LeftButton, buttons=None,
           modifiers=Qt.KeyboardModifier.NoModifier) -> None:
    viewport = view.graphics_view.viewport()
    if buttons is None:
        released = kind == QtCore.QEvent.Type.MouseButtonRelease
        buttons = Qt.MouseButton.NoButton if released else button
    event = QtGui.QMouseEvent(kind, QtCore.QPointF(pos), viewport.mapToGlobal(QtCore.QPointF(pos)),
                              button, buttons, modifiers)
    QtWidgets.QApplication.sendEvent(viewport, event)


def _drag(view, start, end, button=Qt.MouseButton.LeftButton,
          modifiers=Qt.KeyboardModifier.NoModifier, steps: int = 3) -> None:
    types = QtCore.QEvent.Type
    _mouse(view, types.MouseButtonPress, start, button, modifiers=modifiers)
    for n in range(1, steps + 1):
        point = start + (end - start) * (n / steps)
        _mouse(view, types.MouseMove, point, Qt.MouseButton.NoButton, buttons=button,
               modifiers=modifiers)
    _mouse(view, types.MouseButtonRelease, end, button, modifiers=modifiers)


def _click(view, pos, button=Qt.MouseButton.LeftButton) -> None:
    _mouse(view, QtCore.QEvent.Type.MouseButtonPress, pos, button)
    _mouse(view, QtCore.QEvent.Type.MouseButtonRelease, pos, button)


def _double_click(view, pos) -> None:
    types = QtCore.QEvent.Type
    _click(view, pos)
    _mouse(view, types.MouseButtonDblClick, pos)
    _mouse(view, types.MouseButtonRelease, pos)


def _wheel(view: SliceView, notches: float, modifiers=Qt.KeyboardModifier.NoModifier) -> None:
    viewport = view.graphics_view.viewport()
    pos = QtCore.QPointF(viewport.width() / 2, viewport.height() / 2)
    event = QtGui.QWheelEvent(pos, viewport.mapToGlobal(pos), QtCore.QPoint(0, 0),
                              QtCore.QPoint(0, round(120 * notches)), Qt.MouseButton.NoButton,
                              modifiers, Qt.ScrollPhase.NoScrollPhase, False)
    QtWidgets.QApplication.sendEvent(viewport, event)


def _centre(view: SliceView) -> QtCore.QPointF:
    viewport = view.graphics_view.viewport()
    return QtCore.QPointF(viewport.width() / 2, viewport.height() / 2)


def _alpha_count(view: SliceView) -> int:
    return int(np.count_nonzero(view.overlay_pixels() >> 24))


# ----------------------------------------------------------------------------- pixel maths
@pytest.mark.parametrize("dtype", [np.int16, np.uint16, np.uint8, np.int8, np.float32, np.int32])
@pytest.mark.parametrize("invert", [False, True])
def test_display_table_matches_window_to_uint8(dtype, invert):
    info = np.iinfo(dtype) if np.dtype(dtype).kind in "iu" else None
    low, high = (info.min, info.max) if info else (-2000, 3000)
    image = np.linspace(low, high, 4096).astype(dtype).reshape(64, 64)[::-1, ::2]  # a view
    window = WindowLevel(57.0, float(np.median(image)))
    out = np.empty(image.shape, np.uint32)
    DisplayTable().apply(image, window, invert, out)
    grey = window_to_uint8(image, window, invert=invert)
    assert np.array_equal(out & 0xFF, grey)
    assert np.array_equal((out >> 8) & 0xFF, grey)
    assert np.all(out >> 24 == 0xFF)


def test_label_outline_keeps_only_boundaries():
    labels = np.zeros((7, 7), np.uint8)
    labels[1:6, 1:6] = 1
    labels[3, 3] = 2
    outline = label_outline(labels)
    expected = labels.copy()
    expected[2:5, 2:5] = 0  # interior of label 1 ...
    expected[2, 3] = expected[4, 3] = expected[3, 2] = expected[3, 4] = 1  # ... except next to 2
    expected[3, 3] = 2
    assert np.array_equal(outline, expected)


def test_label_bounds():
    labels = np.zeros((5, 6, 7), np.uint8)
    assert label_bounds(labels) is None
    labels[1, 2, 3] = 1
    labels[3, 4, 1] = 2
    assert label_bounds(labels) == (slice(1, 4), slice(2, 5), slice(1, 4))


# Axial-stored with R->L, A->P flipped, and a sagittal acquisition (i -> P, j -> I, k -> L).
_DIRECTIONS = {
    "identity": np.eye(3),
    "flipped": np.diag([-1.0, -1.0, 1.0]),
    "sagittal": np.array([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, -1.0, 0.0]]),
}


@pytest.mark.parametrize("direction", _DIRECTIONS.values(), ids=_DIRECTIONS.keys())
def test_overlay_matches_the_label_slice_in_every_plane(qtbot, direction):
    rng = np.random.default_rng(1)
    volume = _ct(rng.integers(-50, 50, (9, 11, 13)).astype(np.int16), spacing=(0.8, 0.9, 2.0),
                 direction=direction)
    labels = np.zeros(volume.shape, np.uint8)
    labels[2:6, 3:8, 4:11] = 1
    labels[4, 5, 6] = 2
    label_map = LabelMap.liver(volume.with_voxels(labels))
    table = label_map.lookup_table()
    state = ViewerState()
    state.show_volume(volume)
    state.set_labels(label_map)
    for plane in ViewPlane:
        view = _show(qtbot, SliceView(state, plane), 200, 200)
        for index in range(volume.plane_geometry(plane).slice_count):
            state.set_slice(plane, index)
            expected = volume.plane_slice(plane, index, labels)
            shown = view.overlay_pixels()
            assert np.array_equal(shown >> 24 != 0, expected != 0), (plane, index)
            assert np.array_equal((shown >> 16) & 0xFF, np.where(expected, table[expected, 0], 0))
        state.overlay_outline = True
        state.set_slice(plane, volume.plane_geometry(plane).slice_count // 2)
        expected = label_outline(volume.plane_slice(plane, view.slice_index, labels))
        assert np.array_equal(view.overlay_pixels() >> 24 != 0, expected != 0), plane
        state.overlay_outline = False


# ----------------------------------------------------------------------------- scrolling
def test_wheel_and_keys_scroll_slices(qtbot, axial, state):
    start = axial.slice_index
    assert start == state.slice_index(AXIAL) == 20
    _wheel(axial, 1)
    assert axial.slice_index == state.slice_index(AXIAL) == start + 1
    _wheel(axial, -2)
    assert axial.slice_index == start - 1
    _wheel(axial, 0.5)  # half a notch: nothing yet ...
    assert axial.slice_index == start - 1
    _wheel(axial, 0.5)  # ... the second half completes it
    assert axial.slice_index == start
    keys = [(Qt.Key.Key_Up, start + 1), (Qt.Key.Key_Down, start),
            (Qt.Key.Key_PageUp, start + PAGE_STEP), (Qt.Key.Key_PageDown, start),
            (Qt.Key.Key_Home, 0), (Qt.Key.Key_End, 39), (Qt.Key.Key_Up, 39)]
    for key, expected in keys:
        qtbot.keyClick(axial, key)
        assert axial.slice_index == state.slice_index(AXIAL) == expected, key
        assert axial.slider.value() == expected
    assert axial.corner_text()["bottom_left"].startswith("Slice 40/40")


def test_slider_sets_the_slice(axial, state):
    axial.slider.setValue(5)
    assert state.slice_index(AXIAL) == axial.slice_index == 5


def test_slice_change_shows_that_slice(axial, state, phantom):
    state.set_slice(AXIAL, 7)
    expected = DisplayTable().apply(phantom.ct.plane_slice(AXIAL, 7), state.window, False,
                                    np.empty((128, 128), np.uint32))
    assert np.array_equal(axial.image_item.image, expected)
    labels = phantom.ct.plane_slice(AXIAL, 7, phantom.labels.voxels)
    assert np.array_equal(axial.overlay_pixels() >> 24 != 0, labels != 0)


def test_refresh_redraws_voxels_changed_in_place(qtbot):
    # Progressive loading: the loader fills the displayed array while the view shows it.
    voxels = np.zeros((4, 16, 16), np.int16)
    state = ViewerState()
    state.show_volume(_ct(voxels))
    state.window = WindowLevel(1000.0, 500.0)  # 0 HU is black
    view = _show(qtbot, SliceView(state, AXIAL))
    assert np.all(view.image_item.image & 0xFF == 0)
    voxels[state.slice_index(AXIAL)] = 3000
    view.refresh()
    assert np.all(view.image_item.image & 0xFF == 255)


def test_same_grid_volume_keeps_zoom_a_new_grid_resets_it(qtbot, axial, state, phantom):
    fitted = axial.view_box.viewRect()
    start = _centre(axial)
    _drag(axial, start, start - QtCore.QPointF(0.0, 60.0), button=Qt.MouseButton.RightButton)
    zoomed = axial.view_box.viewRect()
    state.replace_volume(phantom.ct.with_voxels(phantom.ct.voxels.copy()))
    assert axial.view_box.viewRect() == zoomed
    state.show_volume(_ct(np.zeros((5, 30, 40), np.int16)))
    assert axial.view_box.viewRect() != zoomed
    assert axial.view_box.viewRect() != fitted


# ----------------------------------------------------------------------------- window / level
def test_left_drag_changes_window_level(axial, state):
    assert state.window == WindowLevel(400.0, 40.0)
    start = _centre(axial)
    _drag(axial, start, start + QtCore.QPointF(100.0, 50.0))
    assert state.window.width == pytest.approx(400.0 * 2 ** (100.0 / WINDOW_DRAG_PIXELS))
    assert state.window.level == pytest.approx(40.0 + 50.0 * 400.0 / WINDOW_DRAG_PIXELS)
    assert state.window.width == pytest.approx(565.685, abs=1e-3)
    assert state.window.level == pytest.approx(140.0)
    assert axial.corner_text()["bottom_right"].startswith("W 566 L 140")
    # Dragging left narrows the window and never makes it negative.
    _drag(axial, start, start + QtCore.QPointF(-2000.0, 0.0))
    assert 0 < state.window.width < 1.0


def test_window_drag_does_not_move_the_crosshair(axial, state):
    cursor = state.cursor
    start = _centre(axial)
    _drag(axial, start, start + QtCore.QPointF(40.0, 0.0))
    assert state.cursor == cursor


def test_window_and_invert_change_the_pixels(qtbot, axial, state, phantom):
    image = phantom.ct.plane_slice(AXIAL, 20)
    before = axial.image_item.image.copy()
    state.window = WindowLevel(100.0, 0.0)
    assert not np.array_equal(before, axial.image_item.image)
    assert np.array_equal(axial.image_item.image & 0xFF, window_to_uint8(image, state.window))
    qtbot.keyClick(axial, Qt.Key.Key_I)
    assert state.invert
    assert np.array_equal(axial.image_item.image & 0xFF,
                          window_to_uint8(image, state.window, invert=True))
    assert "inv" in axial.corner_text()["bottom_right"]


def test_reset_key_restores_zoom_pan_and_window(qtbot, axial, state):
    fitted = axial.view_box.viewRect()
    start = _centre(axial)
    _drag(axial, start, start - QtCore.QPointF(0.0, 80.0), button=Qt.MouseButton.RightButton)
    zoomed = axial.view_box.viewRect()
    assert zoomed.width() == pytest.approx(fitted.width() / 2 ** 0.8, rel=1e-3)
    _drag(axial, start, start + QtCore.QPointF(30.0, 0.0),
          modifiers=Qt.KeyboardModifier.ShiftModifier)
    panned = axial.view_box.viewRect()
    assert panned.center().x() < zoomed.center().x()  # the image followed the mouse to the right
    _drag(axial, start, start + QtCore.QPointF(0.0, 20.0), button=Qt.MouseButton.MiddleButton)
    assert axial.view_box.viewRect().center().y() < panned.center().y()
    state.window = WindowLevel(10.0, 500.0)
    qtbot.keyClick(axial, Qt.Key.Key_R)
    assert state.window == WindowLevel(400.0, 40.0)
    reset = axial.view_box.viewRect()
    assert reset.center().x() == pytest.approx(fitted.center().x())
    assert reset.width() == pytest.approx(fitted.width())


def test_keys_with_ctrl_are_left_to_the_menus(qtbot, axial, state):
    state.window = WindowLevel(10.0, 500.0)
    qtbot.keyClick(axial, Qt.Key.Key_R, Qt.KeyboardModifier.ControlModifier)
    qtbot.keyClick(axial, Qt.Key.Key_Up, Qt.KeyboardModifier.ControlModifier)
    assert state.window == WindowLevel(10.0, 500.0)
    assert axial.slice_index == 20


def test_a_lost_release_does_not_wedge_the_mouse(axial, state):
    start = _centre(axial)
    _mouse(axial, QtCore.QEvent.Type.MouseButtonPress, start)
    # The release went to a popup; the next move arrives with no button held.
    _mouse(axial, QtCore.QEvent.Type.MouseMove, start + QtCore.QPointF(50.0, 0.0),
           Qt.MouseButton.NoButton)
    window = state.window
    _drag(axial, start, start + QtCore.QPointF(0.0, 40.0))
    assert state.window.level != window.level


def test_ctrl_wheel_zooms_instead_of_scrolling(axial, state):
    index, width = axial.slice_index, axial.view_box.viewRect().width()
    _wheel(axial, 2, Qt.KeyboardModifier.ControlModifier)
    assert axial.slice_index == index
    assert axial.view_box.viewRect().width() < width


# ----------------------------------------------------------------------------- crosshair
def test_click_in_axial_moves_coronal_and_sagittal(qtbot, state, phantom):
    panel = _show(qtbot, ViewportPanel(state), 1200, 420)
    axial, coronal, sagittal = (panel.views[p] for p in (AXIAL, CORONAL, SAGITTAL))
    assert (coronal.slice_index, sagittal.slice_index) == (64, 64)
    row, col = 30.0, 90.0
    _click(axial, axial.viewport_point_of_pixel(row, col))
    world = phantom.ct.world_of_plane_pixel(AXIAL, 20, row, col)
    assert state.cursor == pytest.approx(tuple(world))
    # Identity direction: axial rows run A->P (= coronal slices), columns R->L (= sagittal).
    assert coronal.slice_index == phantom.ct.plane_index_of_world(CORONAL, world) == 30
    assert sagittal.slice_index == phantom.ct.plane_index_of_world(SAGITTAL, world) == 90
    assert axial.slice_index == 20  # a click never changes the clicked view's slice
    spacing = phantom.ct.spacing[0]
    vertical, horizontal = coronal.crosshair_lines
    assert vertical.value() == pytest.approx((col + 0.5) * spacing)  # patient x in coronal
    assert horizontal.value() == pytest.approx((39 - 20 + 0.5) * 2.5)  # slice 20 of 40, S up
    vertical, horizontal = axial.crosshair_lines
    assert (vertical.value(), horizontal.value()) == pytest.approx(
        ((col + 0.5) * spacing, (row + 0.5) * spacing))


def test_hover_reports_position_value_and_label(qtbot, axial, state, phantom):
    image = phantom.ct.plane_slice(AXIAL, 20)
    labels = phantom.ct.plane_slice(AXIAL, 20, phantom.labels.voxels)
    row, col = (int(v) for v in np.argwhere(labels == 1)[0])
    with qtbot.waitSignal(axial.cursor_moved) as blocker:
        _mouse(axial, QtCore.QEvent.Type.MouseMove, axial.viewport_point_of_pixel(row, col),
               Qt.MouseButton.NoButton)
    world, value, label = blocker.args
    assert world == pytest.approx(tuple(phantom.ct.world_of_plane_pixel(AXIAL, 20, row, col)))
    assert value == float(image[row, col])
    assert label == "Liver"
    state.overlay_visible = False
    with qtbot.waitSignal(axial.cursor_moved) as blocker:
        _mouse(axial, QtCore.QEvent.Type.MouseMove, axial.viewport_point_of_pixel(row, col),
               Qt.MouseButton.NoButton)
    assert blocker.args[2] is None


# ----------------------------------------------------------------------------- overlay
def test_overlay_visibility_opacity_and_outline(axial, state):
    overlay = axial.overlay_item
    assert overlay.isVisible()
    assert overlay.opacity() == pytest.approx(0.45)
    state.overlay_visible = False
    assert not overlay.isVisible()
    state.overlay_visible = True
    assert overlay.isVisible()
    state.overlay_opacity = 0.8
    assert overlay.opacity() == pytest.approx(0.8)
    filled = _alpha_count(axial)
    liver_colour = LabelMap.liver(state.labels.volume).colours[1]
    assert filled > 0
    state.overlay_outline = True
    outline = _alpha_count(axial)
    assert 0 < outline < filled / 3
    pixels = axial.overlay_pixels()
    colours = {tuple(int(v) >> s & 0xFF for s in (16, 8, 0))
               for v in np.unique(pixels[pixels >> 24 != 0])}
    assert liver_colour in colours
    state.overlay_outline = False
    assert _alpha_count(axial) == filled
    state.set_labels(None)
    assert not overlay.isVisible()


def test_overlay_hidden_while_scrolling_is_refreshed_on_show(axial, state, phantom):
    state.overlay_visible = False
    state.set_slice(AXIAL, 5)
    state.overlay_visible = True
    labels = phantom.ct.plane_slice(AXIAL, 5, phantom.labels.voxels)
    assert np.array_equal(axial.overlay_pixels() >> 24 != 0, labels != 0)


# ----------------------------------------------------------------------------- text
def test_corner_text_and_hide_patient_info(axial, state):
    text = axial.corner_text()
    assert "Doe, John" in text["top_left"] and "PID-12345" in text["top_left"]
    assert "2024-01-31" in text["top_left"] and "Portal venous" in text["top_left"]
    assert text["top_right"] == "Axial\nCT"
    assert text["bottom_left"] == "Slice 21/40\nS 1.2 mm"  # slice 20 of 40 at 2.5 mm, centred
    assert text["bottom_right"].startswith("W 400 L 40\nZoom ")
    state.hide_patient_info = True
    text = axial.corner_text()["top_left"]
    assert "Doe" not in text and "PID-12345" not in text
    assert "Portal venous" in text


def test_header_markup_is_shown_literally(axial, state):
    state.study = StudyInfo(patient_name="<b>Evil</b>^<i>x</i>", series_description="a & b <br>")
    text = axial.corner_text()["top_left"]
    assert "<b>Evil</b>, <i>x</i>" in text
    assert "a & b <br>" in text


def test_long_header_lines_are_elided_in_narrow_views(qtbot, state):
    long_text = "Abdomen portal venous phase 1.25 mm soft tissue kernel B30f <reconstruction 2>"
    state.study = StudyInfo(patient_name="Doe^John", series_description=long_text)
    view = _show(qtbot, SliceView(state, AXIAL), 220, 300)
    shown = view.corner_text()["top_left"].splitlines()
    assert shown[0] == "Doe, John"
    assert shown[1].endswith("\u2026") and long_text.startswith(shown[1][:-1])
    view.resize(1400, 300)
    qtbot.waitUntil(lambda: long_text in view.corner_text()["top_left"])


def test_orientation_letters_for_a_flipped_direction_volume(qtbot):
    # Stored right-to-left and posterior-to-anterior (RAS order, e.g. an unconverted NIfTI).
    voxels = np.zeros((6, 20, 30), np.int16)
    voxels[:, :, 2] = 1000  # index i = 2: the most *left* column (x = -i)
    voxels[:, 3, :] += 500  # index j = 3: near the *posterior* side (y = -j)
    volume = _ct(voxels, direction=np.diag([-1.0, -1.0, 1.0]))
    state = ViewerState()
    state.show_volume(volume, STUDY)
    views = {p: _show(qtbot, SliceView(state, p), 300, 300) for p in ViewPlane}
    assert views[AXIAL].edge_letters() == ("A", "P", "R", "L")
    assert views[CORONAL].edge_letters() == ("S", "I", "R", "L")
    assert views[SAGITTAL].edge_letters() == ("S", "I", "A", "P")
    shown = views[AXIAL].image_item.image & 0xFF
    bright_column = int(np.argmax(shown.mean(axis=0)))
    bright_row = int(np.argmax(shown.mean(axis=1)))
    assert bright_column == 29 - 2  # patient left on the screen's right
    assert bright_row == 19 - 3  # posterior at the bottom


def test_message_is_all_that_shows_without_a_volume(qtbot, phantom):
    state = ViewerState()
    view = _show(qtbot, SliceView(state, AXIAL))
    assert not view.image_item.isVisible()
    view.set_message("Loading 12/40\u2026")
    assert view.message() == "Loading 12/40\u2026"
    assert view._message_item.isVisible()
    assert all(text == "" for text in view.corner_text().values())
    assert view.edge_letters() == ("", "", "", "")
    _click(view, _centre(view))  # no volume: input is ignored, nothing breaks
    _wheel(view, 1)
    state.show_volume(phantom.ct, STUDY)
    assert view.image_item.isVisible()
    assert view._message_item.isVisible()  # still shown over the image until cleared
    view.set_message("")
    assert not view._message_item.isVisible()
    state.volume = None
    assert not view.image_item.isVisible() and not view.overlay_item.isVisible()


# ----------------------------------------------------------------------------- geometry
ANISOTROPIC = (0.7, 0.7, 2.5)


@pytest.fixture
def anisotropic_state():
    voxels = np.random.default_rng(0).integers(-100, 100, (40, 64, 128)).astype(np.int16)
    state = ViewerState()
    state.show_volume(_ct(voxels, spacing=ANISOTROPIC), STUDY)
    return state


@pytest.mark.parametrize("plane, size_mm", [
    (AXIAL, (128 * 0.7, 64 * 0.7)),
    (CORONAL, (128 * 0.7, 40 * 2.5)),
    (SAGITTAL, (64 * 0.7, 40 * 2.5)),
])
def test_anisotropic_pixels_keep_their_mm_aspect(qtbot, anisotropic_state, plane, size_mm):
    view = _show(qtbot, SliceView(anisotropic_state, plane), 500, 400)
    item = view.image_item
    rect = item.mapRectToParent(item.boundingRect())
    assert (rect.x(), rect.y()) == pytest.approx((0.0, 0.0))
    assert (rect.width(), rect.height()) == pytest.approx(size_mm)
    on_screen = view.view_box.mapViewToScene(rect).boundingRect()
    assert on_screen.width() / on_screen.height() == pytest.approx(size_mm[0] / size_mm[1],
                                                                   rel=1e-3)


def test_ruler_in_axial_view_is_in_lps_mm(qtbot, anisotropic_state):
    state = anisotropic_state
    view = _show(qtbot, SliceView(state, AXIAL), 600, 400)
    state.tool = Tool.RULER
    start, end = (20.0, 10.0), (20.0, 110.0)  # 100 pixels along a row
    with qtbot.waitSignal(view.annotation_created) as blocker:
        _drag(view, view.viewport_point_of_pixel(*start), view.viewport_point_of_pixel(*end))
    annotation = blocker.args[0]
    assert isinstance(annotation, Annotation)
    assert (annotation.kind, annotation.plane) == (AnnotationKind.RULER, AXIAL)
    assert annotation.slice_index == view.slice_index == 20
    volume = state.volume
    expected = [volume.world_of_plane_pixel(AXIAL, 20, *p) for p in (start, end)]
    assert np.allclose(annotation.points, expected, atol=1e-6)
    assert np.linalg.norm(np.subtract(*annotation.points)) == pytest.approx(70.0)
    assert state.cursor == pytest.approx(tuple(volume.index_to_world((63.5, 31.5, 19.5))),
                                         abs=2.5)  # the drag did not move the crosshair


def test_ruler_in_coronal_view_uses_slice_spacing_vertically(qtbot, anisotropic_state):
    state = anisotropic_state
    view = _show(qtbot, SliceView(state, CORONAL), 500, 500)
    state.tool = Tool.RULER
    start, end = (5.0, 30.0), (15.0, 30.0)  # 10 rows = 10 axial slices
    with qtbot.waitSignal(view.annotation_created) as blocker:
        _drag(view, view.viewport_point_of_pixel(*start), view.viewport_point_of_pixel(*end))
    points = np.asarray(blocker.args[0].points)
    expected = [state.volume.world_of_plane_pixel(CORONAL, view.slice_index, *p)
                for p in (start, end)]
    assert np.allclose(points, expected, atol=1e-6)
    assert points[0, 2] - points[1, 2] == pytest.approx(25.0)  # downwards = inferior
    assert np.linalg.norm(points[1] - points[0]) == pytest.approx(25.0)


def test_angle_takes_three_clicks_and_shapes_take_a_drag(qtbot, anisotropic_state):
    state = anisotropic_state
    view = _show(qtbot, SliceView(state, AXIAL), 600, 400)
    created: list[Annotation] = []
    view.annotation_created.connect(created.append)
    state.tool = Tool.ANGLE
    cursor = state.cursor
    pixels = [(10.0, 10.0), (30.0, 40.0), (10.0, 70.0)]
    for row, col in pixels:
        _click(view, view.viewport_point_of_pixel(row, col))
    assert state.cursor == cursor  # angle clicks do not move the crosshair
    assert len(created) == 1 and created[0].kind is AnnotationKind.ANGLE
    expected = [state.volume.world_of_plane_pixel(AXIAL, 20, *p) for p in pixels]
    assert np.allclose(created[0].points, expected)
    for tool, kind in ((Tool.ELLIPSE, AnnotationKind.ELLIPSE),
                       (Tool.RECTANGLE, AnnotationKind.RECTANGLE)):
        state.tool = tool
        _drag(view, view.viewport_point_of_pixel(5, 5), view.viewport_point_of_pixel(25, 45))
        assert created[-1].kind is kind
        corners = [state.volume.world_of_plane_pixel(AXIAL, 20, *p) for p in ((5, 5), (25, 45))]
        assert np.allclose(created[-1].points, corners)
    assert len(created) == 3


def test_escape_and_tool_change_cancel_a_half_drawn_angle(qtbot, anisotropic_state):
    state = anisotropic_state
    view = _show(qtbot, SliceView(state, AXIAL), 600, 400)
    created: list[Annotation] = []
    view.annotation_created.connect(created.append)
    state.tool = Tool.ANGLE
    for row, col in ((10, 10), (30, 40)):
        _click(view, view.viewport_point_of_pixel(row, col))
    qtbot.keyClick(view, Qt.Key.Key_Escape)
    _click(view, view.viewport_point_of_pixel(10, 70))
    assert created == []


def test_existing_annotations_drawn_on_their_slice_only(qtbot, anisotropic_state):
    state = anisotropic_state
    view = _show(qtbot, SliceView(state, AXIAL), 600, 400)
    volume = state.volume
    here = Annotation(AnnotationKind.RULER, AXIAL, 20, tuple(
        tuple(volume.world_of_plane_pixel(AXIAL, 20, 10, c)) for c in (10, 50)))
    elsewhere = Annotation(AnnotationKind.ELLIPSE, AXIAL, 3, tuple(
        tuple(volume.world_of_plane_pixel(AXIAL, 3, r, r)) for r in (10, 30)))
    coronal = Annotation(AnnotationKind.RULER, CORONAL, 20, here.points)
    items_before = len(view.view_box.childGroup.childItems())
    view.set_annotations([here, elsewhere, coronal], {here.id: "28.0 mm"})
    assert view.shown_annotation_ids() == (here.id,)
    assert len(view.view_box.childGroup.childItems()) == items_before + 2  # the line and its label
    view.set_selected_annotation(here.id)
    assert len(view.view_box.childGroup.childItems()) == items_before + 2  # rebuilt, not duplicated
    state.set_slice(AXIAL, 3)
    assert view.shown_annotation_ids() == (elsewhere.id,)
    assert len(view.view_box.childGroup.childItems()) == items_before + 1  # no label given for it
    view.set_annotations([], {})
    assert view.shown_annotation_ids() == ()
    assert len(view.view_box.childGroup.childItems()) == items_before


# ----------------------------------------------------------------------------- viewport
def test_layouts_and_double_click_maximise(qtbot, state):
    panel = _show(qtbot, ViewportPanel(state), 900, 600)
    assert panel.visible_planes() == [AXIAL, CORONAL, SAGITTAL]
    assert panel.legend.isHidden()
    coronal = panel.views[CORONAL]
    _double_click(coronal, _centre(coronal))
    assert state.maximized is CORONAL
    assert panel.visible_planes() == [CORONAL]
    _double_click(coronal, _centre(coronal))
    assert state.maximized is None
    assert panel.visible_planes() == [AXIAL, CORONAL, SAGITTAL]
    state.layout = Layout.FOUR
    assert panel.visible_planes() == [AXIAL, CORONAL, SAGITTAL]
    assert not panel.legend.isHidden()
    assert panel.legend.entries() == ["Liver", "Tumour"]
    grid = panel.layout()
    assert grid.getItemPosition(grid.indexOf(panel.views[SAGITTAL]))[:2] == (1, 0)
    assert grid.getItemPosition(grid.indexOf(panel.legend))[:2] == (1, 1)
    state.layout = Layout.ONE
    assert panel.visible_planes() == [AXIAL]
    assert panel.legend.isHidden()


def test_viewport_re_emits_view_signals(qtbot, state):
    panel = _show(qtbot, ViewportPanel(state), 900, 400)
    sagittal = panel.views[SAGITTAL]
    with qtbot.waitSignal(panel.cursor_moved):
        _mouse(sagittal, QtCore.QEvent.Type.MouseMove, _centre(sagittal), Qt.MouseButton.NoButton)
    state.tool = Tool.RULER
    with qtbot.waitSignal(panel.annotation_created) as blocker:
        _drag(sagittal, sagittal.viewport_point_of_pixel(10, 10),
              sagittal.viewport_point_of_pixel(10, 40))
    assert blocker.args[0].plane is SAGITTAL
    panel.set_message("Loading 1/2")
    assert all(view.message() == "Loading 1/2" for view in panel.views.values())


def test_views_survive_deletion_while_the_state_lives_on(qtbot, state):
    view = SliceView(state, AXIAL)
    view.deleteLater()
    qtbot.waitUntil(lambda: not _alive(view))
    state.set_slice(AXIAL, 3)  # would raise if the dead view were still subscribed
    state.window = WindowLevel(100.0, 10.0)


def _alive(widget: QtWidgets.QWidget) -> bool:
    import shiboken6

    return shiboken6.isValid(widget)
