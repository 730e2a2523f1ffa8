"""Editing measurements in the viewer: select by click, drag handles / bodies, rename, delete,
and undo every one of them through the AnnotationStore (pytest-qt, offscreen).

Mouse positions come from the view's own pixel -> viewport mapping, so a drag of N screen pixels
is converted to image pixels with the same affine map the view uses, and the moved points can be
compared with ``Volume.world_of_plane_pixel`` to 1e-6 mm.
"""

from __future__ import annotations

import numpy as np
import pytest
from PySide6 import QtCore, QtGui, QtWidgets
from PySide6.QtCore import QSettings

from radview.core.annotation_store import AnnotationStore
from radview.core.annotations import Annotation, AnnotationKind
from radview.core.measurements import MeasurementName, measure, summary_label
from radview.core.viewer_state import StudyInfo, Tool, ViewerState
from radview.core.volume import Rescale, ViewPlane, Volume
from radview.viewer.measurement_panel import MAX_LABEL_LENGTH, MeasurementPanel, plain_label
from radview.viewer.slice_view import HIT_TOLERANCE_PIXELS, SliceView
from radview.viewer.viewport import ViewportPanel

Qt = QtCore.Qt
Type = QtCore.QEvent.Type
AXIAL = ViewPlane.AXIAL
SPACING = (0.7, 0.7, 2.5)  # x, y, z mm: non-square in the coronal / sagittal planes
SLICE = 20
STUDY = StudyInfo(patient_name="Doe^Jane", modality="CT")


# ----------------------------------------------------------------------------- fixtures
@pytest.fixture
def volume() -> Volume:
    voxels = np.random.default_rng(1).integers(-100, 100, (40, 64, 128)).astype(np.int16)
    return Volume(voxels, spacing=SPACING, origin=(-40.0, -20.0, 10.0), direction=np.eye(3),
                  modality="CT", rescale=Rescale(unit="HU"))


@pytest.fixture
def state(volume) -> ViewerState:
    state = ViewerState()
    state.show_volume(volume, STUDY)
    state.set_slice(AXIAL, SLICE)
    return state


@pytest.fixture
def store() -> AnnotationStore:
    return AnnotationStore()


@pytest.fixture
def view(qtbot, state, store, volume) -> SliceView:
    """An axial view wired to the store the way MainWindow wires the viewport."""
    view = SliceView(state, AXIAL)
    qtbot.addWidget(view)
    view.resize(600, 400)
    view.show()
    qtbot.waitExposed(view)

    def redraw(*_: object) -> None:
        labels = {a.id: summary_label(a, measure(a, volume)) for a in store.annotations}
        view.set_annotations(list(store.annotations), labels)

    store.changed.connect(redraw)
    store.selected_id_changed.connect(view.set_selected_annotation)
    view.annotation_selected.connect(lambda i: setattr(store, "selected_id", i or None))
    view.annotation_edited.connect(store.replace)
    view.annotation_delete_requested.connect(store.remove)
    view.destroyed.connect(lambda *_: store.changed.disconnect(redraw))
    return view


def _on_slice(volume: Volume, kind: AnnotationKind, *pixels: tuple[float, float],
              label: str = "") -> Annotation:
    points = tuple(tuple(float(v) for v in volume.world_of_plane_pixel(AXIAL, SLICE, r, c))
                   for r, c in pixels)
    return Annotation(kind, AXIAL, SLICE, points, label=label)


@pytest.fixture
def ruler(volume, store) -> Annotation:
    ruler = _on_slice(volume, AnnotationKind.RULER, (30.0, 20.0), (30.0, 80.0))
    store.add(ruler)
    return ruler


# ----------------------------------------------------------------------------- input helpers
def _mouse(view: SliceView, kind: QtCore.QEvent.Type, pos: QtCore.QPointF,
           button=Qt.MouseButton.LeftButton, buttons=None) -> None:
    viewport = view.graphics_view.viewport()
    if buttons is None:
        buttons = Qt.MouseButton.NoButton if kind == Type.MouseButtonRelease else button
    event = QtGui.QMouseEvent(kind, QtCore.QPointF(pos), viewport.mapToGlobal(QtCore.QPointF(pos)),
                              button, buttons, Qt.KeyboardModifier.NoModifier)
    QtWidgets.QApplication.sendEvent(viewport, event)


def _press(view, pos) -> None:
    _mouse(view, Type.MouseButtonPress, pos)


def _move(view, pos) -> None:
    _mouse(view, Type.MouseMove, pos, Qt.MouseButton.NoButton, buttons=Qt.MouseButton.LeftButton)


def _release(view, pos) -> None:
    _mouse(view, Type.MouseButtonRelease, pos)


def _drag(view, start: QtCore.QPointF, end: QtCore.QPointF, steps: int = 4) -> None:
    _press(view, start)
    for n in range(1, steps + 1):
        _move(view, start + (end - start) * (n / steps))
    _release(view, end)


def _click(view, pos) -> None:
    _press(view, pos)
    _release(view, pos)


def _at(view: SliceView, row: float, col: float) -> QtCore.QPointF:
    return view.viewport_point_of_pixel(row, col)


def _screen_to_pixels(view: SliceView, dx: float, dy: float) -> tuple[float, float]:
    """(rows, columns) that a mouse move of (dx, dy) viewport pixels covers in this view."""
    origin, right, down = _at(view, 0, 0), _at(view, 0, 1), _at(view, 1, 0)
    return dy / (down.y() - origin.y()), dx / (right.x() - origin.x())


def _length(annotation: Annotation, volume: Volume) -> float:
    (length,) = [m for m in measure(annotation, volume) if m.name == MeasurementName.LENGTH]
    return length.value


def _distance(a: QtCore.QPointF, b: QtCore.QPointF) -> float:
    return float(np.hypot(a.x() - b.x(), a.y() - b.y()))


# ----------------------------------------------------------------------------- selecting
def test_click_on_an_annotation_selects_it_and_shows_handles(view, store, state, ruler):
    cursor = state.cursor
    assert view.handle_points() == []
    _click(view, _at(view, 30.0, 50.0) + QtCore.QPointF(0.0, 3.0))  # 3 px beside the line
    assert store.selected_id == ruler.id
    assert state.cursor == cursor  # selecting is not a crosshair click
    handles = view.handle_points()
    assert len(handles) == 2
    for handle, pixel in zip(handles, ((30.0, 20.0), (30.0, 80.0)), strict=True):
        assert _distance(handle, _at(view, *pixel)) < 0.5
    # a click beside the selection drops it (and still moves the crosshair)
    _click(view, _at(view, 50.0, 50.0))
    assert store.selected_id is None
    assert view.handle_points() == []
    assert state.cursor != cursor


def test_hit_tolerance_is_in_screen_pixels_at_any_zoom(view, store, ruler):
    on_line = _at(view, 30.0, 50.0)
    view.view_box.scaleBy((0.25, 0.25), center=view.view_box.mapSceneToView(
        view.graphics_view.mapToScene(on_line.toPoint())))  # 4x magnification
    on_line = _at(view, 30.0, 50.0)
    near, far = HIT_TOLERANCE_PIXELS - 1.0, HIT_TOLERANCE_PIXELS + 2.0
    _click(view, on_line + QtCore.QPointF(0.0, far))
    assert store.selected_id is None
    _click(view, on_line + QtCore.QPointF(0.0, near))
    assert store.selected_id == ruler.id


def test_annotations_of_other_slices_are_not_hit(view, store, state, volume):
    elsewhere = Annotation(AnnotationKind.RULER, AXIAL, SLICE - 1, _on_slice(
        volume, AnnotationKind.RULER, (30.0, 20.0), (30.0, 80.0)).points)
    store.add(elsewhere)
    _click(view, _at(view, 30.0, 50.0))
    assert store.selected_id is None


# ----------------------------------------------------------------------------- editing
def test_dragging_a_ruler_end_moves_that_end_and_undo_restores_it(qtbot, view, store, state,
                                                                   volume, ruler):
    store.selected_id = ruler.id
    window, cursor = state.window, state.cursor
    old_length = _length(ruler, volume)
    assert old_length == pytest.approx(60 * SPACING[0])
    edited: list[Annotation] = []
    view.annotation_edited.connect(edited.append)

    dx, dy = 30.0, 12.0  # screen pixels
    start = _at(view, 30.0, 80.0)
    end = start + QtCore.QPointF(dx, dy)
    _press(view, start)
    _move(view, start + QtCore.QPointF(dx / 2, dy / 2))
    _move(view, end)
    # live preview: the handle follows the mouse before anything is committed
    assert _distance(view.handle_points()[1], end) < 0.5
    assert store.get(ruler.id) == ruler and edited == []
    _release(view, end)

    d_row, d_col = _screen_to_pixels(view, dx, dy)
    expected_end = volume.world_of_plane_pixel(AXIAL, SLICE, 30.0 + d_row, 80.0 + d_col)
    moved = store.get(ruler.id)
    assert edited == [moved]
    assert (moved.id, moved.kind, moved.plane, moved.slice_index) == (
        ruler.id, ruler.kind, ruler.plane, ruler.slice_index)
    assert moved.points[0] == ruler.points[0]
    assert np.allclose(moved.points[1], expected_end, atol=1e-6)
    assert _length(moved, volume) == pytest.approx(
        float(np.linalg.norm(expected_end - np.asarray(ruler.points[0]))))
    assert _length(moved, volume) != pytest.approx(old_length)
    assert (state.window, state.cursor) == (window, cursor)  # the handle won over W/L
    assert _distance(view.handle_points()[1], end) < 0.5  # drawn from the store's copy

    assert store.undo_text == "edit ruler"
    store.undo()
    assert store.get(ruler.id) == ruler
    assert _length(store.get(ruler.id), volume) == pytest.approx(old_length)
    assert _distance(view.handle_points()[1], start) < 0.5
    store.redo()
    assert store.get(ruler.id) == moved


@pytest.mark.parametrize("kind", [AnnotationKind.RULER, AnnotationKind.RECTANGLE,
                                  AnnotationKind.ELLIPSE])
def test_body_drag_moves_all_points_by_the_same_vector(view, store, volume, kind):
    annotation = _on_slice(volume, kind, (20.0, 30.0), (40.0, 70.0))
    store.add(annotation)
    store.selected_id = annotation.id
    # on the ruler's line / inside the region, away from both handles
    start = _at(view, 30.0, 50.0)
    dx, dy = -25.0, 18.0
    _drag(view, start, start + QtCore.QPointF(dx, dy))

    moved = store.get(annotation.id)
    d_row, d_col = _screen_to_pixels(view, dx, dy)
    shift = (volume.world_of_plane_pixel(AXIAL, SLICE, d_row, d_col)
             - volume.world_of_plane_pixel(AXIAL, SLICE, 0.0, 0.0))
    displacement = np.subtract(moved.points, annotation.points)
    assert np.allclose(displacement, [shift, shift], atol=1e-6)
    assert shift[2] == pytest.approx(0.0)  # stays on its slice
    if kind is not AnnotationKind.RULER:
        pixels_before = [m.value for m in measure(annotation, volume)
                         if m.name == MeasurementName.PIXEL_COUNT]
        assert [m.value for m in measure(moved, volume)
                if m.name == MeasurementName.PIXEL_COUNT] == pytest.approx(pixels_before, abs=80)
    store.undo()
    assert store.get(annotation.id) == annotation


def test_angle_vertex_handle_moves_the_vertex_only(view, store, volume):
    angle = _on_slice(volume, AnnotationKind.ANGLE, (10.0, 40.0), (40.0, 40.0), (40.0, 90.0))
    store.add(angle)
    store.selected_id = angle.id
    assert measure(angle, volume)[0].value == pytest.approx(90.0)
    vertex = _at(view, 40.0, 40.0)
    _drag(view, vertex, vertex + QtCore.QPointF(0.0, 20.0))  # down: the arms close up
    moved = store.get(angle.id)
    assert moved.points[0] == angle.points[0] and moved.points[2] == angle.points[2]
    assert moved.points[1] != angle.points[1]
    assert measure(moved, volume)[0].value < 90.0


def test_a_handle_wins_over_the_drawing_tool(view, store, state, ruler):
    state.tool = Tool.RULER
    store.selected_id = ruler.id
    created: list[Annotation] = []
    view.annotation_created.connect(created.append)
    start = _at(view, 30.0, 20.0)
    _drag(view, start, start + QtCore.QPointF(0.0, 40.0))
    assert created == []
    assert store.get(ruler.id).points[0] != ruler.points[0]
    assert store.get(ruler.id).points[1] == ruler.points[1]
    # away from the annotation the tool draws as before
    _drag(view, _at(view, 50.0, 20.0), _at(view, 50.0, 60.0))
    assert len(created) == 1


def test_escape_cancels_an_edit_in_progress(qtbot, view, store, ruler):
    store.selected_id = ruler.id
    edited: list[Annotation] = []
    view.annotation_edited.connect(edited.append)
    start = _at(view, 30.0, 80.0)
    _press(view, start)
    _move(view, start + QtCore.QPointF(40.0, 0.0))
    qtbot.keyClick(view, Qt.Key.Key_Escape)
    assert _distance(view.handle_points()[1], start) < 0.5
    _release(view, start + QtCore.QPointF(40.0, 0.0))
    assert edited == [] and store.get(ruler.id) == ruler
    assert not store.can_undo or store.undo_text == "add ruler"


def test_an_undo_during_a_drag_drops_the_drag(view, store, ruler):
    store.selected_id = ruler.id
    edited: list[Annotation] = []
    view.annotation_edited.connect(edited.append)
    start = _at(view, 30.0, 80.0)
    _press(view, start)
    _move(view, start + QtCore.QPointF(40.0, 0.0))
    store.undo()  # removes the ruler under the mouse
    _release(view, start + QtCore.QPointF(40.0, 0.0))
    assert edited == [] and len(store) == 0


# ----------------------------------------------------------------------------- deleting
@pytest.mark.parametrize("key", [Qt.Key.Key_Delete, Qt.Key.Key_Backspace])
def test_delete_key_removes_the_selected_annotation_and_undo_restores_it(qtbot, view, store,
                                                                           volume, ruler, key):
    other = _on_slice(volume, AnnotationKind.RULER, (50.0, 10.0), (50.0, 40.0))
    store.add(other)
    qtbot.keyClick(view, key)  # nothing selected: nothing happens
    assert len(store) == 2
    _click(view, _at(view, 30.0, 50.0))
    assert store.selected_id == ruler.id
    qtbot.keyClick(view, key)
    assert [a.id for a in store] == [other.id]
    assert store.selected_id is None and view.shown_annotation_ids() == (other.id,)
    store.undo()
    assert [a.id for a in store] == [ruler.id, other.id]
    assert store.get(ruler.id) == ruler


def test_delete_key_ignores_a_selection_not_shown_in_this_view(qtbot, view, store, state,
                                                              ruler):
    store.selected_id = ruler.id
    state.set_slice(AXIAL, SLICE + 1)
    qtbot.keyClick(view, Qt.Key.Key_Delete)
    assert ruler.id in store


# ----------------------------------------------------------------------------- no regression
def test_window_drag_beside_the_selection_still_changes_the_window(view, store, state, ruler):
    store.selected_id = ruler.id
    window = state.window
    start = _at(view, 50.0, 50.0)
    _drag(view, start, start + QtCore.QPointF(60.0, 30.0))
    assert state.window.width > window.width and state.window.level > window.level
    assert store.get(ruler.id) == ruler
    # a drag that starts on an annotation that is not selected is a W/L drag too
    store.selected_id = None
    window = state.window
    on_line = _at(view, 30.0, 50.0)
    _drag(view, on_line, on_line + QtCore.QPointF(-60.0, 0.0))
    assert state.window.width < window.width
    assert store.get(ruler.id) == ruler


def test_a_click_without_annotations_still_moves_the_crosshair(view, store, state):
    cursor = state.cursor
    selected: list[str] = []
    view.annotation_selected.connect(selected.append)
    _click(view, _at(view, 10.0, 10.0))
    assert state.cursor != cursor and selected == []


# ----------------------------------------------------------------------------- labels
@pytest.fixture
def panel(qtbot, store, volume) -> MeasurementPanel:
    panel = MeasurementPanel(store, lambda: volume)
    qtbot.addWidget(panel)
    panel.resize(500, 300)
    panel.show()
    with qtbot.waitActive(panel):
        panel.activateWindow()
    return panel


def _label_editor(panel: MeasurementPanel) -> QtWidgets.QLineEdit:
    (editor,) = panel.table.viewport().findChildren(QtWidgets.QLineEdit)
    return editor


def test_label_rename_in_the_panel_is_undoable(qtbot, panel, store, ruler):
    assert not panel.rename_action.isEnabled()
    store.selected_id = ruler.id
    assert panel.rename_action.isEnabled()
    panel.rename_action.trigger()
    editor = _label_editor(panel)
    assert editor.text() == ""
    editor.setText("Lesion <1> & co")
    qtbot.keyClick(editor, Qt.Key.Key_Return)
    # Qt commits an item editor's data in a queued call after the key
    qtbot.waitUntil(lambda: store.get(ruler.id).label != "")

    renamed = store.get(ruler.id)
    assert renamed.label == "Lesion <1> & co"
    assert renamed.points == ruler.points
    assert panel.table.item(0, 0).text() == "Ruler: Lesion <1> & co"  # plain text, literally
    assert panel.table.item(0, 2).text() == "Length: 42.0 mm"
    assert panel.undo_action.text() == "Undo edit ruler"

    panel.rename_action.trigger()  # the editor holds the label alone, not "Ruler: ..."
    editor = _label_editor(panel)
    assert editor.text() == "Lesion <1> & co"
    editor.setText("discarded")
    qtbot.keyClick(editor, Qt.Key.Key_Escape)
    qtbot.waitUntil(lambda: not panel.table.viewport().findChildren(QtWidgets.QLineEdit))
    assert store.get(ruler.id).label == "Lesion <1> & co"

    panel.undo_action.trigger()
    assert store.get(ruler.id).label == ""
    assert panel.table.item(0, 0).text() == "Ruler"
    panel.redo_action.trigger()
    assert store.get(ruler.id).label == "Lesion <1> & co"


def test_rename_keeps_plain_one_line_text(panel, store, ruler):
    panel.rename(ruler.id, "  two\nlines\t\x00here\u202e ")
    assert store.get(ruler.id).label == "two lines here"
    steps = store.undo_text
    panel.rename(ruler.id, "two lines here")  # unchanged: no extra undo step
    assert store.undo_text == steps
    assert plain_label("x" * 500) == "x" * MAX_LABEL_LENGTH
    panel.rename("gone", "anything")  # a deleted annotation: nothing happens


def test_the_view_draws_the_new_label(view, store, ruler, panel):
    panel.rename(ruler.id, "Lesion A")
    texts = [item.toPlainText() for item in view.view_box.childGroup.childItems()
             if hasattr(item, "toPlainText") and item.isVisible()]
    assert any(text.startswith("Lesion A\n") for text in texts)


# ----------------------------------------------------------------------------- wiring
def test_viewport_re_emits_the_editing_signals(qtbot, state, store, volume, ruler):
    panel = ViewportPanel(state)
    qtbot.addWidget(panel)
    panel.resize(900, 400)
    panel.show()
    qtbot.waitExposed(panel)
    panel.set_annotations([ruler], {})
    axial = panel.views[AXIAL]
    with qtbot.waitSignal(panel.annotation_selected) as selected:
        _click(axial, _at(axial, 30.0, 50.0))
    assert selected.args == [ruler.id]
    panel.set_selected_annotation(ruler.id)
    with qtbot.waitSignal(panel.annotation_edited) as edited:
        _drag(axial, _at(axial, 30.0, 20.0), _at(axial, 40.0, 20.0))
    assert edited.args[0].id == ruler.id
    with qtbot.waitSignal(panel.annotation_delete_requested) as deleted:
        qtbot.keyClick(axial, Qt.Key.Key_Delete)
    assert deleted.args == [ruler.id]


def test_main_window_routes_view_edits_through_the_undoable_store(qtbot, tmp_path, volume):
    from radview.app import build_main_window

    settings = QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat)
    window = build_main_window(index_path=tmp_path / "index.sqlite3", settings=settings)
    qtbot.addWidget(window)
    window.resize(1400, 800)
    window.show()
    with qtbot.waitActive(window):  # shortcuts (Ctrl+Z) fire only in the active window
        window.activateWindow()
    window.state.show_volume(volume, STUDY)
    window.state.set_slice(AXIAL, SLICE)
    store = window.store
    ruler = _on_slice(volume, AnnotationKind.RULER, (30.0, 20.0), (30.0, 80.0))
    window.viewport.annotation_created.emit(ruler)  # as if drawn: added and selected
    assert store.selected_id == ruler.id
    view = window.viewport.views[AXIAL]
    assert len(view.handle_points()) == 2

    _click(view, _at(view, 50.0, 50.0))  # beside it: deselects
    assert store.selected_id is None
    _click(view, _at(view, 30.0, 50.0))
    assert store.selected_id == ruler.id

    start = _at(view, 30.0, 80.0)
    _drag(view, start, start + QtCore.QPointF(40.0, 0.0))
    moved = store.get(ruler.id)
    assert _length(moved, volume) > _length(ruler, volume)
    row = window.measurement_panel.table
    assert row.item(0, 2).text() == f"Length: {_length(moved, volume):.1f} mm"

    qtbot.keyClick(view, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert store.get(ruler.id) == ruler
    assert row.item(0, 2).text() == "Length: 42.0 mm"

    store.selected_id = ruler.id
    qtbot.keyClick(view, Qt.Key.Key_Delete)
    assert len(store) == 0
    qtbot.keyClick(view, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert store.get(ruler.id) == ruler
    window.close()
