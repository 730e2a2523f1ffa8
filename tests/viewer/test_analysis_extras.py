"""The main window's analysis extras: staging and triage from ``show_analysis_extras``, RECIST
axes of the lesion selected in the table (View > Show RECIST axes), and the clinical form fed
by the measured lesions."""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import numpy as np
import pytest
from PySide6.QtCore import QSettings

import radview.viewer.export_dialog as export_dialog_module
from radview.app import build_main_window
from radview.core.labelmap import LabelMap
from radview.core.viewer_state import StudyInfo
from radview.core.volume import ViewPlane
from radview.inference.manifest import ModelTask
from radview.viewer.staging_panel import DiseaseStage
from radview.viewer.triage_strip import TriageStrip
from tests.viewer.liver_scene import liver_scene

pytestmark = pytest.mark.gui

AXIAL = ViewPlane.AXIAL
STAGING = {"stage": "Moderate", "model": "liver-stage-cnnlstm 0.1.0",
           "probabilities": {"Mild": 0.12, "Moderate": 0.61, "Severe": 0.22, "End-stage": 0.05}}
#: Two lesions: a 29 x 17 mm ellipsoid and a sphere, both on array slice 12.
LESIONS = (((12, 48, 48), (14.0, 8.0, 8.0)), ((12, 70, 75), 5.0))


@pytest.fixture
def window(qtbot, tmp_path):
    settings = QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat)
    win = build_main_window(index_path=tmp_path / "index.sqlite3", settings=settings)
    qtbot.addWidget(win)
    win.resize(1400, 800)
    win.show()
    with qtbot.waitSignal(win.analyze_panel.models_listed, timeout=30_000):
        pass  # model discovery runs in a worker; let it finish before the test drives things
    yield win
    win.close()


def _show(qtbot, window, patient: str = "P1", lesions=LESIONS):
    """Show a synthetic liver series with its labels; wait for the lesion table."""
    image, labels = liver_scene(lesions)
    window.state.show_volume(image, StudyInfo(patient_id=patient, modality="CT"))
    with qtbot.waitSignal(window.lesion_panel.findings_changed, timeout=30_000,
                          check_params_cb=lambda findings: findings is not None):
        window.state.set_labels(labels)
    return window.lesion_panel.findings


def _select_tab(window, title: str) -> None:
    tabs = window.side_tabs
    tabs.setCurrentIndex([tabs.tabText(i) for i in range(tabs.count())].index(title))


def test_staging_and_triage_are_shown_after_an_analysis(qtbot, window):
    _show(qtbot, window)
    triage = [0.02] * 24
    triage[17] = 0.87
    window.show_analysis_extras(STAGING, triage, None, None)
    _select_tab(window, "Analyze")
    panel = window.staging_panel
    assert panel.isVisible() and panel.highlighted() == (DiseaseStage.MODERATE,)
    assert panel.headline.text() == "Most probable: Moderate (61 %)"
    assert panel.model_label.text() == "Model: liver-stage-cnnlstm 0.1.0"
    strip = window.triage_strip
    axial = window.viewport.views[AXIAL]
    assert strip.isVisible() and strip.parent() is axial
    # only the axial view has a triage strip
    for plane, view in window.viewport.views.items():
        assert bool(view.findChildren(TriageStrip)) is (plane is AXIAL)
    assert window.triage_note.text() == (
        "Slice triage: P(tumour) per slice beside the axial slice bar; highest 0.87 at slice 18")
    strip_point = strip.y_of_slice(17)
    assert strip.tooltip_at(strip_point) == "slice 18: P(tumour) = 0.87"


def test_missing_results_show_their_notes(qtbot, window):
    _show(qtbot, window)
    window.show_analysis_extras(None, None, "no staging model installed",
                                "no triage model installed")
    _select_tab(window, "Analyze")
    assert window.staging_panel.reason_label.text() == "Staging: no staging model installed"
    assert window.staging_panel.rows.isHidden()
    assert window.triage_strip.isHidden()
    assert window.triage_note.text() == "Slice triage: no triage model installed"
    window.show_analysis_extras(STAGING, [0.1] * 23, "CUDA failed to start; ran on the CPU", None)
    assert window.staging_note.isVisible()
    assert window.staging_note.text() == "CUDA failed to start; ran on the CPU"
    assert window.triage_note.text() == (
        "Slice triage not shown: triage has 23 value(s) for 24 slices")


def test_a_malformed_staging_mapping_is_reported(qtbot, window):
    _show(qtbot, window)
    window.show_analysis_extras({"stage": "Mild"}, None, None, None)
    assert "needs stage, probabilities and model" in window.staging_panel.reason_label.text()


def test_another_series_clears_the_extras_of_the_previous_one(qtbot, window):
    _show(qtbot, window)
    window.show_analysis_extras(STAGING, [0.5] * 24, None, None)
    _show(qtbot, window, lesions=LESIONS[:1])
    _select_tab(window, "Analyze")
    assert window.staging_panel.highlighted() == ()
    assert window.staging_panel.reason_label.isVisible()
    assert window.triage_strip.isHidden()


def test_installed_models_decide_what_the_idle_staging_and_triage_say(qtbot, window):
    class Registry:  # the one thing the window asks of a RegistryResult
        def __init__(self, tasks):
            self.tasks = tasks

        def for_task(self, task):
            return ["model"] if task in self.tasks else []

    window.analyze_panel.models_listed.emit(Registry(()))
    assert window.staging_panel.reason_label.text() == "Staging: no staging model installed"
    assert window.triage_note.text() == "Slice triage: no triage model installed"
    window.analyze_panel.models_listed.emit(Registry((ModelTask.STAGING, ModelTask.TRIAGE)))
    assert window.staging_panel.reason_label.text() == "Staging: not run on this series yet"
    assert window.triage_note.text() == "Slice triage: not run on this series yet"
    window.analyze_panel.models_listed.emit(None)
    assert "could not be listed" in window.staging_panel.reason_label.text()
    # a result on screen is never replaced by a model listing
    _show(qtbot, window)
    window.show_analysis_extras(STAGING, None, None, None)
    window.analyze_panel.models_listed.emit(Registry(()))
    assert window.staging_panel.highlighted() == (DiseaseStage.MODERATE,)


def test_selected_lesion_shows_its_recist_axes_and_the_view_menu_toggles_them(qtbot, window):
    findings = _show(qtbot, window)
    _select_tab(window, "Lesions")
    table = window.lesion_panel.table
    overlay = window.recist_overlays[AXIAL]
    table.selectRow(0)
    lesion = findings.lesions[0]
    assert overlay.lesion is lesion
    table.itemActivated.emit(table.item(0, 0))  # double-click: go to the lesion
    assert window.state.slice_index(AXIAL) == lesion.recist_slice
    assert overlay.is_shown()
    assert overlay.long_label.textItem.toPlainText() == "Long axis 29.0 mm"
    assert not window.recist_overlays[ViewPlane.CORONAL].is_shown()  # not the acquisition plane

    action = window.recist_action
    assert action.text() == "Show RECIST axes" and action.shortcut().toString() == "X"
    assert action.isChecked()
    action.trigger()
    assert not overlay.is_shown()
    action.trigger()
    assert overlay.is_shown()

    table.selectRow(1)
    assert overlay.lesion is findings.lesions[1]
    table.clearSelection()
    assert overlay.lesion is None and not overlay.is_shown()
    table.selectRow(0)
    window.state.set_labels(None)
    assert overlay.lesion is None and not overlay.is_shown()


def test_clinical_form_takes_the_lesions_and_forgets_another_patients_values(qtbot, window):
    form = window.clinical_form
    form.number_edits["inr"].setText("1.2")  # typed before the series was opened
    findings = _show(qtbot, window, patient="P1")
    assert form.number_edits["inr"].text() == "1.2"
    assert form.lesion_diameters_mm() == [lesion.long_axis.value for lesion in findings.lesions]
    _select_tab(window, "Clinical")
    assert form.isVisible()
    form.number_edits["sodium_mmol_l"].setText("135")
    _show(qtbot, window, patient="P1", lesions=LESIONS[:1])  # same patient: values stay
    assert form.number_edits["sodium_mmol_l"].text() == "135"
    assert form.lesion_diameters_mm() == [29.0]
    window.state.set_labels(None)
    assert form.lesion_diameters_mm() is None
    _show(qtbot, window, patient="P2")
    assert form.number_edits["sodium_mmol_l"].text() == ""
    assert form.number_edits["inr"].text() == ""
    assert form.values() is None


def test_running_the_analysis_fills_staging_and_triage_from_the_models(qtbot, tmp_path):
    """End to end in the real window: installed segmentation, staging and triage models, one
    click on Run, and the staging bars and the triage strip show the models' output."""
    from radview.inference.registry import default_user_dir
    from tests.inference.tiny_models import (
        install_band_model,
        install_follow_up_model,
        phantom,
    )

    install_band_model(default_user_dir(), "tiny-liver-seg", spacing=(1.0, 1.0))
    install_follow_up_model(default_user_dir(), "staging")
    install_follow_up_model(default_user_dir(), "triage")
    settings = QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat)
    win = build_main_window(index_path=tmp_path / "index.sqlite3", settings=settings)
    qtbot.addWidget(win)
    win.resize(1400, 800)
    win.show()
    with qtbot.waitSignal(win.analyze_panel.models_listed, timeout=30_000):
        pass
    volume, truth = phantom(shape=(16, 72, 72), liver_half_mm=15.0, tumour_radius_mm=6.0)
    win.state.show_volume(volume, StudyInfo(patient_id="P1", modality="CT"))
    panel = win.analyze_panel
    panel.device_combo.setCurrentIndex(panel.device_combo.findData("cpu"))
    with qtbot.waitSignal(panel.follow_up_finished, timeout=30_000) as blocker:
        panel.run_button.click()
    follow_up = blocker.args[0]
    assert follow_up.staging is not None and follow_up.triage is not None
    _select_tab(win, "Analyze")
    expected = max(follow_up.staging.probabilities, key=follow_up.staging.probabilities.get)
    assert win.staging_panel.headline.text().startswith(f"Most probable: {expected} (")
    assert "tiny-staging 0.1-test" in win.staging_panel.model_label.text()
    tumour_slices = np.flatnonzero((truth == 2).reshape(truth.shape[0], -1).any(axis=1))
    strip = win.triage_strip
    assert strip.isVisible()
    assert strip.probability_of_slice(int(tumour_slices[0])) > 0.9
    assert strip.probability_of_slice(0) < 0.1
    _export_names_the_models_only_for_their_own_labels(qtbot, win, tmp_path)
    win.close()


def _export_names_the_models_only_for_their_own_labels(qtbot, win, tmp_path):
    """The report made from the window carries the run's provenance, staging and triage (and
    SEG/SR name the algorithm) while the labels are the model's, and none of it once the
    labels are replaced."""
    seen: list[dict] = []
    real = export_dialog_module.export_report

    def spy(*args, **kwargs):
        seen.append(kwargs)
        return real(*args, **kwargs)

    def export(folder: str) -> None:
        win.export_action.trigger()
        dialog = win.export_dialog
        dialog.folder_edit.setText(str(tmp_path / folder))
        dialog.export_button.click()
        qtbot.waitUntil(lambda: not dialog.is_exporting(), timeout=60_000)
        dialog.reject()
        qtbot.waitUntil(lambda: win.export_dialog is None)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(export_dialog_module, "export_report", spy)
        win.export_action.trigger()
        assert "tiny-liver-seg" in win.export_dialog.models_label.text()
        win.export_dialog.reject()
        qtbot.waitUntil(lambda: win.export_dialog is None)
        export("with-models")
        made = seen[-1]
        assert made["labels_from_model"] is True
        assert [entry["task"] for entry in made["provenance"]] == [
            "segmentation", "staging", "triage"]
        assert made["staging"]["stage"] in ("Mild", "Moderate", "Severe", "End-stage")
        assert len(made["triage"]) == win.state.volume.shape[0]
        # the same voxels, but no longer the model's result object: an edit or a file
        replaced = LabelMap.liver(win.state.labels.volume)
        win.state.set_labels(replaced)
        win.export_action.trigger()
        assert "none in the report" in win.export_dialog.models_label.text()
        win.export_dialog.reject()
        qtbot.waitUntil(lambda: win.export_dialog is None)
        export("without-models")
        assert "provenance" not in seen[-1] and "labels_from_model" not in seen[-1]
