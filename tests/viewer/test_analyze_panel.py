"""The Analyze panel: lists segmentation models, runs one on the shown volume in a worker, puts
the labels into the state; no model, cancel, modality mismatch, device notes."""

from __future__ import annotations

import time

import numpy as np
import pytest

pytest.importorskip("onnx")

from PySide6.QtCore import Qt

from radview.core.errors import LoadCancelled
from radview.core.viewer_state import ViewerState
from radview.inference import runtime
from radview.inference.runtime import SessionCache
from radview.viewer import analyze_panel as panel_module
from radview.viewer.analyze_panel import NO_MODEL_MESSAGE, AnalyzePanel
from tests.inference.tiny_models import dice, install_band_model, phantom

pytestmark = pytest.mark.gui

TIMEOUT_MS = 30_000


@pytest.fixture(scope="module")
def sessions() -> SessionCache:
    return SessionCache(threads=1)


@pytest.fixture
def models_dir(tmp_path):
    folder = tmp_path / "models"
    install_band_model(folder)
    return folder


def _panel(qtbot, state, sessions, models_dir) -> AnalyzePanel:
    panel = AnalyzePanel(state, sessions, models_dir=models_dir)
    qtbot.addWidget(panel)
    # discovery runs in a worker; its result is delivered by the event loop, so not yet
    with qtbot.waitSignal(panel.models_listed, timeout=TIMEOUT_MS):
        pass
    panel.device_combo.setCurrentIndex(panel.device_combo.findData("cpu"))
    return panel


def _small_phantom(modality: str = "CT"):
    return phantom(shape=(12, 64, 64), liver_half_mm=12.0, tumour_radius_mm=5.0,
                   modality=modality)


def _run(qtbot, panel):
    with qtbot.waitSignal(panel.analysis_finished, timeout=TIMEOUT_MS) as blocker:
        panel.run_button.click()
    return blocker.args[0]


def test_run_segments_the_shown_volume_and_sets_the_labels(qtbot, sessions, models_dir):
    state = ViewerState()
    panel = _panel(qtbot, state, sessions, models_dir)
    assert panel.model_combo.count() == 1
    assert panel.model_combo.itemText(0) == "tiny-liver-seg 0.1-test"
    assert not panel.run_button.isEnabled()  # nothing shown yet
    volume, truth = _small_phantom()
    state.show_volume(volume)
    state.overlay_visible = False
    assert panel.run_button.isEnabled()
    result = _run(qtbot, panel)
    assert state.labels is not None
    assert state.labels.volume is result.labels
    voxels = state.labels.volume.voxels
    assert np.any(voxels == 1) and np.any(voxels == 2)
    assert dice(voxels > 0, truth > 0) > 0.9
    assert state.overlay_visible
    assert "CPUExecutionProvider" in panel.status.text()
    assert "tiny-liver-seg 0.1-test" in panel.status.text()
    assert panel.run_button.isEnabled() and panel.cancel_button.isHidden()


def test_the_status_says_how_many_candidates_the_lesion_filter_set_aside(qtbot, sessions,
                                                                          tmp_path):
    folder = tmp_path / "models"
    # a filter that keeps only components over 1e6 mm^3: the 5 mm tumour is set aside
    install_band_model(folder, lesion_filter_bias=-float(np.log(1e6)))
    state = ViewerState()
    panel = _panel(qtbot, state, sessions, folder)
    state.show_volume(_small_phantom()[0])
    result = _run(qtbot, panel)
    assert result.lesions_set_aside == 1
    assert not np.any(state.labels.volume.voxels == 2)  # shown as liver
    assert ("Lesion filter: 1 candidate region(s) below 50 % lesion probability set aside "
            "(shown as liver; listed below).") in panel.status.text()
    # the radiologist can still go and look at it: the list names it, Enter jumps there
    assert not panel.set_aside_list.isHidden() and panel.set_aside_list.count() == 1
    [candidate] = result.set_aside
    item = panel.set_aside_list.item(0)
    assert item.text().startswith(f"slice {candidate.slice_index + 1} · ")
    assert "P(lesion)" in item.text()
    state.cursor = (0.0, 0.0, 0.0)
    panel.set_aside_list.setCurrentRow(0)
    qtbot.keyClick(panel.set_aside_list, Qt.Key.Key_Return)
    assert np.allclose(state.cursor, candidate.position_lps)
    # a run that sets nothing aside hides the list again
    install_band_model(folder, lesion_filter_bias=0.0)  # keeps every component
    panel.refresh_models()
    with qtbot.waitSignal(panel.models_listed, timeout=TIMEOUT_MS):
        pass
    _run(qtbot, panel)
    assert panel.set_aside_list.isHidden() and panel.set_aside_list.count() == 0


def test_no_liver_is_a_message_and_labels_are_still_set(qtbot, sessions, models_dir):
    state = ViewerState()
    panel = _panel(qtbot, state, sessions, models_dir)
    volume, _ = _small_phantom()
    empty = volume.with_voxels(np.full(volume.shape, -1000, np.int16))
    state.show_volume(empty)
    result = _run(qtbot, panel)
    assert not result.has_liver
    assert state.labels is not None and not np.any(state.labels.volume.voxels)
    assert "No liver found" in panel.status.text()


def test_no_model_installed_disables_run(qtbot, sessions, tmp_path):
    state = ViewerState()
    state.show_volume(_small_phantom()[0])
    panel = _panel(qtbot, state, sessions, tmp_path / "empty")
    assert panel.model_combo.count() == 0
    assert panel.status.text() == NO_MODEL_MESSAGE
    assert not panel.run_button.isEnabled()


def test_invalid_models_are_listed_with_their_reasons(qtbot, sessions, models_dir):
    broken = models_dir / "forgot-manifest"
    broken.mkdir()
    (broken / "model.onnx").write_bytes(b"not onnx")
    panel = _panel(qtbot, ViewerState(), sessions, models_dir)
    assert panel.model_combo.count() == 1
    assert not panel.invalid_toggle.isHidden()
    assert panel.invalid_note.isHidden()
    panel.invalid_toggle.click()
    assert not panel.invalid_note.isHidden()
    assert "forgot-manifest" in panel.invalid_note.text()


def test_cancel_stops_the_run_and_sets_no_labels(qtbot, sessions, models_dir, monkeypatch):
    def slow_segment(volume, model, sessions, *, progress, cancel, **kwargs):
        for done in range(1000):
            if cancel():
                raise LoadCancelled("segmentation cancelled")
            progress(done, 1000)
            time.sleep(0.01)
        raise AssertionError("not cancelled")

    monkeypatch.setattr(panel_module, "segment", slow_segment)
    state = ViewerState()
    panel = _panel(qtbot, state, sessions, models_dir)
    state.show_volume(_small_phantom()[0])
    panel.run_button.click()
    assert panel.is_running() and not panel.run_button.isEnabled()
    assert not panel.cancel_button.isHidden()
    qtbot.waitUntil(lambda: panel.progress_bar.value() > 0, timeout=TIMEOUT_MS)  # responsive
    panel.cancel_button.click()
    qtbot.waitUntil(lambda: not panel.is_running(), timeout=TIMEOUT_MS)
    assert "cancelled" in panel.status.text()
    assert state.labels is None
    assert panel.run_button.isEnabled()


def test_another_modality_needs_run_anyway(qtbot, sessions, models_dir):
    state = ViewerState()
    panel = _panel(qtbot, state, sessions, models_dir)
    state.show_volume(_small_phantom("MR")[0])
    assert panel.force_check.isHidden()
    panel.run_button.click()
    assert not panel.is_running()
    assert "expects CT, the series is MR" in panel.status.text()
    assert "Run anyway" in panel.status.text() and "\n" not in panel.status.text()
    assert not panel.force_check.isHidden()
    assert state.labels is None
    panel.force_check.setChecked(True)
    result = _run(qtbot, panel)
    assert state.labels is not None
    assert any("forced" in warning for warning in result.warnings)
    assert "forced" in panel.warnings_label.text()


def test_errors_show_as_one_line_and_the_panel_keeps_working(qtbot, sessions, models_dir,
                                                             monkeypatch):
    from radview.inference.runtime import InferenceError

    def failing(*args, **kwargs):
        raise InferenceError("model.onnx", "onnxruntime failed")

    state = ViewerState()
    panel = _panel(qtbot, state, sessions, models_dir)
    state.show_volume(_small_phantom()[0])
    monkeypatch.setattr(panel_module, "segment", failing)
    panel.run_button.click()
    qtbot.waitUntil(lambda: not panel.is_running(), timeout=TIMEOUT_MS)
    assert panel.status.text() == "model.onnx: onnxruntime failed"
    monkeypatch.undo()
    _run(qtbot, panel)
    assert state.labels is not None


def test_gpu_without_a_gpu_provider_shows_the_reason(qtbot, sessions, models_dir, monkeypatch):
    real = runtime.choose_providers
    monkeypatch.setattr(panel_module, "choose_providers",
                        lambda device: real(device, available=("CPUExecutionProvider",)))
    panel = _panel(qtbot, ViewerState(), sessions, models_dir)
    assert panel.device_note.isHidden()
    panel.device_combo.setCurrentIndex(panel.device_combo.findData("gpu"))
    assert not panel.device_note.isHidden()
    assert runtime.NO_GPU_REASON in panel.device_note.text()
    panel.device_combo.setCurrentIndex(panel.device_combo.findData("auto"))
    assert panel.device_note.isHidden()


def test_main_window_has_an_analyze_tab(qtbot, tmp_path):
    from PySide6.QtCore import QSettings

    from radview.app import build_main_window

    settings = QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat)
    window = build_main_window(index_path=tmp_path / "index.sqlite3", settings=settings)
    qtbot.addWidget(window)
    tabs = window.side_tabs
    titles = [tabs.tabText(i) for i in range(tabs.count())]
    assert "Analyze" in titles
    assert window.analyze_panel in tabs.widget(titles.index("Analyze")).findChildren(AnalyzePanel)
    with qtbot.waitSignal(window.analyze_panel.models_listed, timeout=TIMEOUT_MS):
        pass
    assert window.analyze_panel.status.text() == NO_MODEL_MESSAGE  # per-test empty data dir
    window.analyze_panel.analysis_finished.emit(
        type("Result", (), {"provider": "CPUExecutionProvider", "seconds": 1.25})())
    assert window.timing_label.text() == "CPUExecutionProvider · 1.2 s"
