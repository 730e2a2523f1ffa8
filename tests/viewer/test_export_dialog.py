"""The Export dialog: runs export_report in a worker, lists the files, previews page 1."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from PySide6.QtCore import QSettings
from PySide6.QtWidgets import QMessageBox

import radview.viewer.export_dialog as export_dialog_module
from radview.app import build_main_window
from radview.io.dicom_load import load_stack
from radview.io.discover import discover
from radview.io.open_study import load_label_map
from radview.io.sample_study import write_sample_study
from radview.report.tables import ExportError
from radview.viewer.export_dialog import NO_PDFTOPPM, ExportDialog
from tests.pdf_text import pdf_text

pytestmark = pytest.mark.gui

EXPORT_TIMEOUT_MS = 60_000
PATIENT_ID = "RADVIEW-SAMPLE-0"


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    paths = write_sample_study(tmp_path_factory.mktemp("sample"), matrix=96, slices=24)
    image = load_stack(discover([paths.dicom_dir]).stacks[0]).volume
    labels = load_label_map(paths.labels_nifti, image)
    return paths, image, labels


@pytest.fixture
def settings(tmp_path):
    return QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat)


@pytest.fixture
def dialog(qtbot, sample, settings, tmp_path):
    _, image, labels = sample
    dlg = ExportDialog(image, labels, settings, tmp_path / "data")
    qtbot.addWidget(dlg)
    dlg.show()
    yield dlg
    if dlg.is_exporting():
        dlg._runner.wait(EXPORT_TIMEOUT_MS)


def _export(qtbot, dlg, out_dir: Path) -> None:
    dlg.folder_edit.setText(str(out_dir))
    assert dlg.export_button.isEnabled()
    dlg.export_button.click()
    assert dlg.is_exporting() and not dlg.export_button.isEnabled()
    qtbot.waitUntil(lambda: not dlg.is_exporting(), timeout=EXPORT_TIMEOUT_MS)


def _listed(dlg) -> list[str]:
    return [dlg.files_list.item(i).text() for i in range(dlg.files_list.count())]


def test_default_folder_is_never_the_scan_folder(qtbot, sample, settings, tmp_path):
    paths, image, labels = sample
    settings.setValue("export/last_folder", str(paths.dicom_dir))
    dlg = ExportDialog(image, labels, settings, tmp_path / "data")
    qtbot.addWidget(dlg)
    assert Path(dlg.folder_edit.text()) == export_dialog_module.DEFAULT_EXPORT_FOLDER
    settings.setValue("export/last_folder", str(tmp_path / "earlier"))
    dlg = ExportDialog(image, labels, settings, tmp_path / "data")
    qtbot.addWidget(dlg)
    assert Path(dlg.folder_edit.text()) == tmp_path / "earlier"


def test_export_writes_and_lists_every_output(qtbot, dialog, settings, tmp_path):
    out = tmp_path / "out"
    dialog.institution_edit.setText("St. Example <b>Hospital</b>")
    _export(qtbot, dialog, out)
    names = {"report.pdf", "seg.dcm", "sr.dcm", "report_pdf.dcm", "labels.nii.gz",
             "measurements.json", "lesions.csv"}
    assert names <= {p.name for p in out.iterdir()}
    assert set(_listed(dialog)) == names
    assert str(out) in dialog.files_title.text()
    assert "Exported 7 files" in dialog.status_label.text()
    assert dialog.open_folder_button.isEnabled()
    # remembered for next time
    assert settings.value("export/last_folder") == str(out)
    assert settings.value("export/institution") == "St. Example <b>Hospital</b>"
    dialog.grab().save("/tmp/export_dialog.png")


def test_preview_shows_page_one(qtbot, dialog, tmp_path):
    if shutil.which("pdftoppm") is None:
        pytest.skip("pdftoppm (poppler-utils) not installed")
    _export(qtbot, dialog, tmp_path / "out")
    pixmap = dialog.preview_label.pixmap()
    assert not pixmap.isNull()
    assert pixmap.height() <= dialog.preview_label.height()


def test_preview_says_what_to_install_without_pdftoppm(qtbot, dialog, tmp_path, monkeypatch):
    monkeypatch.setattr(export_dialog_module.shutil, "which", lambda _name: None)
    _export(qtbot, dialog, tmp_path / "out")
    assert dialog.preview_label.pixmap().isNull()
    assert dialog.preview_label.text() == NO_PDFTOPPM
    assert (tmp_path / "out" / "report.pdf").exists()


def test_deidentified_export_has_no_patient_id(qtbot, dialog, tmp_path):
    plain, deid = tmp_path / "plain", tmp_path / "deid"
    _export(qtbot, dialog, plain)
    dialog.deidentify_box.setChecked(True)
    _export(qtbot, dialog, deid)
    assert "de-identified" in dialog.status_label.text()
    assert (tmp_path / "data" / "deidentification.key").exists()
    assert PATIENT_ID in pdf_text(plain / "report.pdf")  # the check below can fail
    assert PATIENT_ID not in pdf_text(deid / "report.pdf")


def test_implausible_clinical_value_is_marked_and_blocks_export(qtbot, dialog):
    albumin = dialog.clinical_inputs["albumin_g_dl"]
    albumin.setText("35")
    assert "g/L" in dialog.field_errors["albumin_g_dl"].text()
    assert not dialog.export_button.isEnabled()
    assert dialog.field_errors["bilirubin_mg_dl"].text() == ""
    albumin.setText("3.5")
    assert dialog.field_errors["albumin_g_dl"].text() == ""
    assert dialog.export_button.isEnabled()
    dialog.clinical_inputs["inr"].setText("abc")
    assert "not a number" in dialog.field_errors["inr"].text()
    assert not dialog.export_button.isEnabled()
    dialog.clinical_inputs["inr"].setText("")  # empty = not entered
    assert dialog.export_button.isEnabled()


def test_clinical_values_reach_the_export(qtbot, dialog, tmp_path, monkeypatch):
    seen = {}
    real = export_dialog_module.export_report

    def spy(*args, **kwargs):
        seen.update(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(export_dialog_module, "export_report", spy)
    dialog.clinical_inputs["albumin_g_dl"].setText("3.1")
    dialog.clinical_inputs["on_dialysis"].setCurrentIndex(1)  # "no"
    _export(qtbot, dialog, tmp_path / "out")
    values = seen["clinical_values"]
    assert values.albumin_g_dl == 3.1 and values.on_dialysis is False
    assert values.bilirubin_mg_dl is None and values.ecog is None


def test_export_error_is_shown_and_the_dialog_stays_usable(qtbot, dialog, tmp_path, monkeypatch):
    def refuse(_image, _labels, out_dir, **_kwargs):
        raise ExportError(out_dir, "cannot create the folder (Permission denied)")

    _export(qtbot, dialog, tmp_path / "earlier")  # its results must not stay on show
    monkeypatch.setattr(export_dialog_module, "export_report", refuse)
    _export(qtbot, dialog, tmp_path / "locked")
    message = dialog.status_label.text()
    assert "Permission denied" in message and "\n" not in message
    assert dialog.isVisible()
    assert dialog.export_button.isEnabled() and dialog.close_button.isEnabled()
    assert dialog.files_list.count() == 0
    assert not dialog.open_folder_button.isEnabled()
    assert dialog.preview_label.pixmap().isNull()
    monkeypatch.undo()
    _export(qtbot, dialog, tmp_path / "fine")
    assert dialog.files_list.count() == 7


def test_source_folder_needs_confirmation(qtbot, dialog, sample, monkeypatch):
    paths, _, _ = sample
    asked = []

    def decline(*args, **_kwargs):
        asked.append(args[2])
        return QMessageBox.StandardButton.No

    monkeypatch.setattr(QMessageBox, "question", decline)
    dialog.folder_edit.setText(str(paths.dicom_dir))
    dialog.export_button.click()
    assert asked and "scan's own files" in asked[0]
    assert not dialog.is_exporting()
    assert not (paths.dicom_dir / "report.pdf").exists()
    assert "not started" in dialog.status_label.text()


def test_close_is_refused_while_exporting(qtbot, dialog, tmp_path):
    dialog.folder_edit.setText(str(tmp_path / "out"))
    dialog.export_button.click()
    dialog.reject()
    assert dialog.isVisible()
    qtbot.waitUntil(lambda: not dialog.is_exporting(), timeout=EXPORT_TIMEOUT_MS)
    dialog.reject()
    assert not dialog.isVisible()


def test_main_window_action_needs_a_volume_and_labels(qtbot, sample, tmp_path):
    paths, _, _ = sample
    settings = QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat)
    window = build_main_window(index_path=tmp_path / "data" / "index.sqlite3", settings=settings)
    qtbot.addWidget(window)
    window.show()
    assert not window.export_action.isEnabled()
    assert window.export_action.shortcut().toString() == "Ctrl+E"
    with qtbot.waitSignal(window.series_shown, timeout=EXPORT_TIMEOUT_MS):
        window.open_paths([paths.dicom_dir])
    assert window.state.volume is not None and not window.export_action.isEnabled()
    with qtbot.waitSignal(window.series_shown, timeout=EXPORT_TIMEOUT_MS):
        window.open_label_map(paths.labels_nifti)
    assert window.export_action.isEnabled()
    window.export_action.trigger()
    dialog = window.export_dialog
    assert isinstance(dialog, ExportDialog) and dialog.isVisible()
    dialog.reject()
    qtbot.waitUntil(lambda: window.export_dialog is None)
    window.close()


def test_warnings_are_listed_as_plain_text(qtbot, dialog, tmp_path, monkeypatch):
    from radview.report.export_study import ExportResult

    def with_warning(_image, _labels, out_dir, **_kwargs):
        out_dir.mkdir(parents=True, exist_ok=True)
        pdf = out_dir / "report.pdf"
        pdf.write_bytes(b"not a pdf")
        return ExportResult(files={"pdf": pdf}, warnings=["<b>DICOM outputs skipped</b>"])

    monkeypatch.setattr(export_dialog_module, "export_report", with_warning)
    _export(qtbot, dialog, tmp_path / "out")
    assert dialog.warnings_list.isVisible()
    assert dialog.warnings_list.item(0).text() == "<b>DICOM outputs skipped</b>"
    assert dialog.preview_label.pixmap().isNull()  # pdftoppm fails or is missing: a note instead
    assert dialog.preview_label.text().startswith(("Preview not shown", "Preview needs"))
