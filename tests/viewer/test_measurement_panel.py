"""MeasurementPanel: rows follow the store; delete/undo/redo, selection sync, jump signal."""

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import numpy as np
import pytest
from PySide6.QtCore import QEvent, Qt
from PySide6.QtGui import QKeySequence
from PySide6.QtWidgets import QApplication

from radview.core.annotation_store import AnnotationStore
from radview.core.annotations import Annotation, AnnotationKind
from radview.core.volume import Rescale, ViewPlane, Volume
from radview.viewer.measurement_panel import MeasurementPanel

pytestmark = pytest.mark.gui


@pytest.fixture
def volume() -> Volume:
    k, j, i = np.meshgrid(np.arange(10), np.arange(64), np.arange(80), indexing="ij")
    voxels = (i + 2 * j + 100 * k - 300).astype(np.int16)
    return Volume(voxels, spacing=(0.7, 0.7, 2.5), modality="CT", rescale=Rescale(unit="HU"))


def _annotation(volume: Volume, kind: AnnotationKind, plane: ViewPlane, index: int,
                *pixels: tuple[float, float], label: str = "") -> Annotation:
    points = tuple(tuple(float(v) for v in volume.world_of_plane_pixel(plane, index, r, c))
                   for r, c in pixels)
    return Annotation(kind, plane, index, points, label=label)


@pytest.fixture
def annotations(volume: Volume) -> list[Annotation]:
    return [
        _annotation(volume, AnnotationKind.RULER, ViewPlane.AXIAL, 4, (10, 0), (10, 100)),
        _annotation(volume, AnnotationKind.ELLIPSE, ViewPlane.CORONAL, 20, (0.5, 9.5),
                    (6.5, 29.5), label="<b>liver</b> & co"),
        _annotation(volume, AnnotationKind.ANGLE, ViewPlane.AXIAL, 2, (5, 20), (5, 5),
                    (20, 5)),
    ]


@pytest.fixture
def store(annotations: list[Annotation]) -> AnnotationStore:
    store = AnnotationStore()
    store.load(annotations)
    return store


@pytest.fixture
def panel(qtbot, store: AnnotationStore, volume: Volume) -> MeasurementPanel:
    widget = MeasurementPanel(store, lambda: volume)
    qtbot.addWidget(widget)
    widget.resize(500, 300)
    return widget


def _cells(panel: MeasurementPanel, row: int) -> list[str]:
    return [panel.table.item(row, column).text() for column in range(panel.table.columnCount())]


def _row_ids(panel: MeasurementPanel) -> list[str]:
    return [panel.annotation_at(row).id for row in range(panel.table.rowCount())]


def test_rows_show_kind_slice_and_formatted_measurements(panel, annotations) -> None:
    assert panel.table.rowCount() == 3
    assert _row_ids(panel) == [a.id for a in annotations]
    kind, slice_text, measurements = _cells(panel, 0)
    assert (kind, slice_text) == ("Ruler", "Axial 5/10")
    assert measurements == "Length: 70.0 mm"
    kind, slice_text, measurements = _cells(panel, 1)
    assert slice_text == "Coronal 21/64"
    assert "Mean ± SD:" in measurements and " HU ± " in measurements and "mm²" in measurements
    assert _cells(panel, 2)[2] == "Angle: 90.0°"
    assert not panel.empty_label.isVisibleTo(panel)


def test_user_text_is_shown_literally(panel) -> None:
    # no markup interpretation: the label reads exactly as typed
    assert panel.table.item(1, 0).text() == "Ellipse: <b>liver</b> & co"
    assert panel.table.item(1, 2).toolTip().startswith("<qt>")  # escaped, explicit markup


def test_delete_button_then_undo_restores_the_row(panel, store, annotations) -> None:
    store.selected_id = annotations[1].id
    assert panel.delete_action.isEnabled()
    panel.delete_button.click()
    assert _row_ids(panel) == [annotations[0].id, annotations[2].id]
    assert store.selected_id is None and not panel.delete_action.isEnabled()
    assert panel.undo_action.isEnabled() and panel.undo_action.text() == "Undo delete ellipse"
    panel.undo_button.click()
    assert _row_ids(panel) == [a.id for a in annotations]
    assert _cells(panel, 1)[0] == "Ellipse: <b>liver</b> & co"
    assert panel.redo_action.isEnabled()
    panel.redo_button.click()
    assert panel.table.rowCount() == 2


def test_delete_key_removes_the_selected_row(qtbot, panel, store, annotations) -> None:
    panel.show()
    with qtbot.waitActive(panel):  # shortcuts fire only in the active window
        panel.activateWindow()
    panel.table.setFocus()
    panel.table.selectRow(0)
    assert store.selected_id == annotations[0].id
    qtbot.keyClick(panel.table, Qt.Key.Key_Delete)
    assert annotations[0].id not in store
    assert panel.table.rowCount() == 2
    qtbot.keyClick(panel.table, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert panel.table.rowCount() == 3 and annotations[0].id in store


def test_actions_have_standard_shortcuts(panel) -> None:
    undo = [s.toString() for s in panel.undo_action.shortcuts()]
    redo = [s.toString() for s in panel.redo_action.shortcuts()]
    assert "Ctrl+Z" in undo
    assert "Ctrl+Shift+Z" in redo and "Ctrl+Y" in redo
    assert QKeySequence(QKeySequence.StandardKey.Delete) in panel.delete_action.shortcuts()
    assert not panel.undo_action.isEnabled() and not panel.redo_action.isEnabled()  # loaded


def test_selection_syncs_both_ways(panel, store, annotations) -> None:
    store.selected_id = annotations[2].id
    assert [i.row() for i in panel.table.selectionModel().selectedRows()] == [2]
    panel.table.selectRow(1)
    assert store.selected_id == annotations[1].id
    panel.table.clearSelection()
    assert store.selected_id is None
    store.selected_id = annotations[0].id
    store.add(_annotation(panel._volume_provider(), AnnotationKind.RULER, ViewPlane.AXIAL, 0,
                          (1, 1), (2, 2)))
    # a redraw keeps the selected row selected
    assert [i.row() for i in panel.table.selectionModel().selectedRows()] == [0]


def test_double_click_emits_jump_with_the_annotation(qtbot, panel, annotations) -> None:
    panel.show()
    qtbot.waitExposed(panel)
    rect = panel.table.visualItemRect(panel.table.item(1, 2))
    viewport = panel.table.viewport()
    qtbot.mouseClick(viewport, Qt.MouseButton.LeftButton, pos=rect.center())
    with qtbot.waitSignal(panel.jump_requested, timeout=1000) as blocker:
        qtbot.mouseDClick(viewport, Qt.MouseButton.LeftButton, pos=rect.center())
    assert blocker.args == [annotations[1]]


def test_enter_emits_jump(qtbot, panel, annotations) -> None:
    panel.table.selectRow(2)
    with qtbot.waitSignal(panel.jump_requested, timeout=1000) as blocker:
        qtbot.keyClick(panel.table, Qt.Key.Key_Return)
    assert blocker.args == [annotations[2]]


def test_without_a_volume_rows_say_so(qtbot, store) -> None:
    widget = MeasurementPanel(store, lambda: None)
    qtbot.addWidget(widget)
    assert widget.table.item(0, 1).text() == "Axial 5"
    assert widget.table.item(0, 2).text() == "no image"


def test_annotation_from_another_volume_is_reported_not_raised(qtbot, volume) -> None:
    store = AnnotationStore()
    store.add(Annotation(AnnotationKind.RECTANGLE, ViewPlane.AXIAL, 500,
                         ((0.0, 0.0, 0.0), (5.0, 5.0, 0.0))))
    widget = MeasurementPanel(store, lambda: volume)
    qtbot.addWidget(widget)
    assert widget.table.item(0, 2).text().startswith("not measurable")


def test_empty_store_shows_the_hint(qtbot, volume) -> None:
    widget = MeasurementPanel(AnnotationStore(), lambda: volume)
    qtbot.addWidget(widget)
    assert widget.table.rowCount() == 0
    assert widget.empty_label.isVisibleTo(widget)


def test_a_deleted_panel_no_longer_listens_to_the_store(qtbot, store, volume) -> None:
    widget = MeasurementPanel(store, lambda: volume)  # the Python wrapper stays referenced
    widget.deleteLater()
    QApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete.value)
    store.clear()  # would raise "C++ object already deleted" if still connected
    store.undo()
    assert len(store) == 3 and widget is not None
