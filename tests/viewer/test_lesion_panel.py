"""The lesion table: measures the shown label map in the background; jump moves the crosshair."""

from __future__ import annotations

import json

import pytest

from radview.core.viewer_state import ViewerState
from radview.core.volume import ViewPlane
from radview.io.dicom_load import load_stack
from radview.io.discover import discover
from radview.io.open_study import load_label_map
from radview.io.sample_study import write_sample_study
from radview.viewer.lesion_panel import LesionPanel

pytestmark = pytest.mark.gui


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    out = tmp_path_factory.mktemp("sample")
    paths = write_sample_study(out, matrix=96, slices=24, seed=3)
    image = load_stack(discover([paths.dicom_dir]).stacks[0]).volume
    return image, load_label_map(paths.labels_nifti, image), json.loads(
        paths.lesions_json.read_text())["lesions"]


def _measured_panel(qtbot, image, labels) -> tuple[ViewerState, LesionPanel]:
    state = ViewerState()
    panel = LesionPanel(state)
    qtbot.addWidget(panel)
    state.show_volume(image)
    with qtbot.waitSignal(panel.findings_changed, timeout=30_000,
                          check_params_cb=lambda findings: findings is not None):
        state.set_labels(labels)
    return state, panel


def test_lesions_of_the_label_map_are_listed_and_jumped_to(qtbot, sample):
    image, labels, truth = sample
    state, panel = _measured_panel(qtbot, image, labels)
    assert panel.table.rowCount() == len(truth)
    assert "mm" in panel.table.item(0, 2).text()
    assert "lesion(s)" in panel.summary.text()

    lesion = panel.findings.lesions[0]
    panel.table.setCurrentCell(0, 0)
    panel.table.itemActivated.emit(panel.table.item(0, 0))
    k_slice = image.world_to_index(state.cursor)[2]
    assert round(float(k_slice)) == lesion.recist_slice
    assert state.slice_index(ViewPlane.AXIAL) == image.plane_index_of_world(
        ViewPlane.AXIAL, state.cursor)


def test_clearing_the_labels_empties_the_table(qtbot, sample):
    image, labels, _ = sample
    state, panel = _measured_panel(qtbot, image, labels)
    state.set_labels(None)
    assert panel.table.rowCount() == 0
    assert "No label map" in panel.summary.text()
