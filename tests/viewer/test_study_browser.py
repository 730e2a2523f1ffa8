"""StudyBrowserPanel: import into a real index, browse, search, cancel, problems, activation."""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import shutil
import time
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from PySide6.QtCore import QMimeData, QPointF, QSettings, Qt, QUrl
from PySide6.QtGui import QDropEvent
from PySide6.QtWidgets import QFileDialog

from radview.io import dicom_scan
from radview.io.study_index import StudyIndex
from radview.viewer import study_browser
from radview.viewer.study_browser import COL_NAME, KIND_SERIES, ROLE_KIND, StudyBrowserPanel
from tests.io.conftest import make_ct_volume, write_series

pytestmark = pytest.mark.gui

IMPORT_TIMEOUT_MS = 30_000


# ---------------------------------------------------------------------------- helpers
def _series(root: Path, name: str, *, patient=("DOE^JANE", "P-001"), study_uid=None,
            description="CT abdomen", number=1, modality="CT", slices=4,
            study_description="Abdomen study", seed=0) -> list[Path]:
    volume = make_ct_volume(shape=(slices, 16, 16), seed=seed)
    return write_series(volume, root / name, patient_name=patient[0], patient_id=patient[1],
                        study_uid=study_uid, series_description=description,
                        series_number=number, modality=modality,
                        study_description=study_description)


@pytest.fixture
def index(tmp_path):
    with StudyIndex(tmp_path / "data" / "index.sqlite3") as opened:
        yield opened


@pytest.fixture
def panel(qtbot, index):
    widget = StudyBrowserPanel(index)
    qtbot.addWidget(widget)
    widget.resize(760, 520)
    yield widget
    assert widget.shutdown(10_000)


@pytest.fixture
def archive(tmp_path) -> Path:
    """Two patients; Jane has a CT+MR study and a second CT study, John one CT study."""
    root = tmp_path / "archive"
    study = "1.2.826.0.1.3680043.8.498.100"
    _series(root, "jane_ct", study_uid=study, description="Portal venous", number=2)
    _series(root, "jane_mr", study_uid=study, description="T2 axial", number=5, modality="MR",
            seed=1)
    _series(root, "jane_old", description="Follow-up CT", study_description="Old study",
            slices=3, seed=2)
    _series(root, "john", patient=("ROE^JOHN", "P-002"), description="Chest CT",
            study_description="Thorax", slices=5, seed=3)
    return root


def _import(qtbot, panel: StudyBrowserPanel, *paths) -> object:
    with qtbot.waitSignal(panel.import_finished, timeout=IMPORT_TIMEOUT_MS) as blocker:
        panel.import_paths(list(paths))
    return blocker.args[0]


def _series_uid(panel: StudyBrowserPanel, description: str) -> str:
    for uid, item in panel._series_items.items():
        if description in item.text():
            return uid
    raise AssertionError(f"no series {description!r} in the tree")


def _texts(panel: StudyBrowserPanel) -> list[str]:
    return [item.text() for item, _index in panel._tree_items()]


# ---------------------------------------------------------------------------- browsing
def test_import_folder_populates_patient_study_series(qtbot, panel, archive):
    update = _import(qtbot, panel, archive)
    assert update.added == 4 + 4 + 3 + 5
    assert update.problems == []
    assert panel.patient_count() == 2
    assert panel.study_count() == 3
    assert panel.series_count() == 4
    model = panel.model
    jane = next(model.item(row) for row in range(model.rowCount())
                if model.item(row).text() == "DOE, JANE")
    assert jane.rowCount() == 2
    series_per_study = sorted(jane.child(row).rowCount() for row in range(jane.rowCount()))
    assert series_per_study == [1, 2]
    # image counts per series are in the Images column
    uid = _series_uid(panel, "T2 axial")
    index = panel.series_index(uid)
    assert index.siblingAtColumn(study_browser.COL_IMAGES).data() == "4"
    assert index.siblingAtColumn(study_browser.COL_MODALITY).data() == "MR"
    assert "Import done: 16 added" in panel.summary_label.text()
    assert not panel.details_button.isVisible()


def test_search_filters_by_name_id_and_description(qtbot, panel, archive):
    _import(qtbot, panel, archive)
    qtbot.keyClicks(panel.search_edit, "roe")
    qtbot.waitUntil(lambda: panel.patient_count() == 1, timeout=3000)
    assert panel.model.item(0).text() == "ROE, JOHN"
    assert panel.series_count() == 1

    panel.search_edit.setText("P-001")
    qtbot.waitUntil(lambda: panel.study_count() == 2, timeout=3000)

    panel.search_edit.setText("portal")  # a series description finds its study
    panel.refresh()
    assert panel.study_count() == 1 and panel.series_count() == 2

    panel.search_edit.setText("no such thing")
    panel.refresh()
    assert panel.patient_count() == 0

    panel.search_edit.clear()
    panel.refresh()
    assert panel.series_count() == 4


def test_modality_filter_shows_only_that_modality(qtbot, panel, archive):
    _import(qtbot, panel, archive)
    combo = panel.modality_combo
    assert [combo.itemText(i) for i in range(combo.count())] == ["All modalities", "CT", "MR"]
    combo.setCurrentIndex(combo.findData("MR"))
    assert panel.patient_count() == 1
    assert panel.study_count() == 1
    assert panel.series_count() == 1
    assert "T2 axial" in panel._series_items[_series_uid(panel, "T2 axial")].text()
    combo.setCurrentIndex(0)
    assert panel.series_count() == 4


def test_tree_shows_dates_and_thumbnails(qtbot, panel, archive):
    _import(qtbot, panel, archive)
    qtbot.waitUntil(lambda: panel.thumbnails_pending() == 0, timeout=IMPORT_TIMEOUT_MS)
    for uid in panel._series_items:
        icon = panel.thumbnail_for(uid)
        assert icon is not None, "every expanded image series gets a thumbnail"
        image = icon.pixmap(64, 64).toImage()
        assert image.width() == 64 and image.height() == 64
        colours = {image.pixel(x, y) for x in range(0, 64, 4) for y in range(0, 64, 4)}
        assert len(colours) > 3, "the thumbnail shows an image, not a flat square"
    study_dates = [item.index().siblingAtColumn(study_browser.COL_DATE).data()
                   for item, _ in panel._tree_items() if item.data(ROLE_KIND) == "study"]
    assert all(len(text) >= 10 and text[4] == "-" for text in study_dates)


def test_thumbnail_failure_shows_no_icon(qtbot, panel, archive):
    _import(qtbot, panel, archive)
    qtbot.waitUntil(lambda: panel.thumbnails_pending() == 0, timeout=IMPORT_TIMEOUT_MS)
    uid = _series_uid(panel, "Chest CT")
    panel._thumbnails.clear()
    shutil.rmtree(archive / "john")  # files gone after indexing: the decode fails
    panel.refresh()
    qtbot.waitUntil(lambda: panel.thumbnails_pending() == 0, timeout=IMPORT_TIMEOUT_MS)
    assert panel.thumbnail_for(uid) is None
    assert panel.thumbnail_for(_series_uid(panel, "T2 axial")) is not None


# ---------------------------------------------------------------------------- importing
def test_progress_bar_moves_and_cancel_leaves_the_index_unchanged(qtbot, panel, index,
                                                                  tmp_path, monkeypatch):
    first = tmp_path / "first"
    _series(first, "ct", slices=3)
    _import(qtbot, panel, first)
    before = [(s.study_uid, s.number_of_images) for s in index.search()]
    assert panel.series_count() == 1

    big = tmp_path / "big"
    _series(big, "many", patient=("BIG^ONE", "P-9"), slices=40, description="Many slices")
    real_reader = dicom_scan.read_instance_header
    reads: list[str] = []

    def slow_reader(path):
        reads.append(str(path))
        time.sleep(0.03)
        return real_reader(path)

    monkeypatch.setattr(dicom_scan, "read_instance_header", slow_reader)
    values: list[int] = []
    panel.progress_bar.valueChanged.connect(values.append)
    panel.import_paths([big])
    assert panel.is_importing()
    assert panel._progress_row.isVisibleTo(panel)
    qtbot.waitUntil(lambda: any(v > 1 for v in values), timeout=10_000)
    assert panel.progress_bar.maximum() == 40

    with qtbot.waitSignal(panel.import_finished, timeout=500, raising=False) as finished:
        qtbot.mouseClick(panel.cancel_button, Qt.MouseButton.LeftButton)
        qtbot.waitUntil(lambda: not panel.is_importing(), timeout=5000)
    assert not finished.signal_triggered
    assert len(reads) < 40, "the import stopped early"
    assert "cancelled" in panel.summary_label.text()
    assert not panel._progress_row.isVisibleTo(panel)
    assert values == sorted(values)
    # the index is exactly as before, also for another connection
    assert [(s.study_uid, s.number_of_images) for s in index.search()] == before
    with StudyIndex(index.path) as other:
        assert [(s.study_uid, s.number_of_images) for s in other.search()] == before
    assert panel.series_count() == 1


def test_bad_files_are_listed_and_the_good_series_still_appears(qtbot, panel, tmp_path):
    folder = tmp_path / "mixed"
    files = _series(folder, "ct", slices=4, description="Good series")
    (folder / "notes.txt").write_text("<b>not</b> an image & not DICOM\n")
    truncated = folder / "truncated.dcm"
    truncated.write_bytes(files[0].read_bytes()[:300])  # cut inside the header
    (folder / "empty.dcm").write_bytes(b"")

    update = _import(qtbot, panel, folder)
    assert update.added == 4
    assert panel.series_count() == 1
    assert any("Good series" in text for text in _texts(panel))
    summary = panel.summary_label.text()
    assert "3 files not used" in summary
    assert panel.summary_label.textFormat() == Qt.TextFormat.PlainText
    assert panel.details_button.isVisibleTo(panel)
    lines = panel.problem_lines()
    assert len(lines) == 3
    assert f"{folder / 'notes.txt'}: not a DICOM file" in "\n".join(lines)
    assert f"{folder / 'empty.dcm'}: empty file" in lines
    assert any(line.startswith(f"{truncated}: ") for line in lines)

    qtbot.mouseClick(panel.details_button, Qt.MouseButton.LeftButton)
    dialog = panel._details_dialog
    assert dialog is not None and dialog.isVisible()
    assert dialog.details_text.toPlainText().splitlines() == lines
    dialog.close()


def test_unreadable_index_target_reports_failure(qtbot, panel, tmp_path):
    missing = tmp_path / "does-not-exist"
    update = _import(qtbot, panel, missing)
    assert update.added == 0
    assert panel.problem_lines() == [f"{missing}: does not exist"]


def test_real_pydicom_files_and_a_non_image_series(qtbot, panel, tmp_path):
    folder = tmp_path / "pydicom"
    folder.mkdir()
    for name in ("CT_small.dcm", "MR_small.dcm", "rtplan.dcm"):
        shutil.copy(get_testdata_file(name), folder / name)
    _import(qtbot, panel, folder)
    modalities = {row.modality for row in panel._series_rows.values()}
    assert {"CT", "MR", "RTPLAN"} <= modalities
    plan_uid = next(uid for uid, row in panel._series_rows.items() if row.modality == "RTPLAN")
    assert not panel._series_rows[plan_uid].is_image
    emitted: list[str] = []
    panel.series_activated.connect(lambda uid, headers: emitted.append(uid))
    panel._on_tree_activated(panel.series_index(plan_uid))
    assert emitted == []
    assert "holds no images" in panel.summary_label.text()
    qtbot.waitUntil(lambda: panel.thumbnails_pending() == 0, timeout=IMPORT_TIMEOUT_MS)
    ct_uid = next(uid for uid, row in panel._series_rows.items() if row.modality == "CT")
    assert panel.thumbnail_for(ct_uid) is not None


def test_imports_queue_one_after_another(qtbot, panel, tmp_path):
    _series(tmp_path / "a", "s", patient=("A^A", "1"), slices=2)
    _series(tmp_path / "b", "s", patient=("B^B", "2"), slices=2)
    done: list[object] = []
    panel.import_finished.connect(done.append)
    panel.import_paths([tmp_path / "a"])
    panel.import_paths([tmp_path / "b"])
    qtbot.waitUntil(lambda: len(done) == 2, timeout=IMPORT_TIMEOUT_MS)
    assert panel.patient_count() == 2


def test_import_actions_use_the_file_dialogs_and_remember_the_folder(qtbot, index, tmp_path,
                                                                     monkeypatch):
    settings = QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat)
    panel = StudyBrowserPanel(index, settings=settings)
    qtbot.addWidget(panel)
    files = _series(tmp_path / "scans", "ct", slices=2)
    asked: list[str] = []

    def fake_folder_dialog(parent, caption, start):
        asked.append(start)
        return str(tmp_path / "scans")

    monkeypatch.setattr(QFileDialog, "getExistingDirectory", fake_folder_dialog)
    with qtbot.waitSignal(panel.import_finished, timeout=IMPORT_TIMEOUT_MS):
        panel.import_folder_action.trigger()
    assert settings.value("study_browser/last_folder") == str(tmp_path / "scans")

    def fake_files_dialog(parent, caption, start, filters):
        asked.append(start)
        return [str(files[0])], filters

    monkeypatch.setattr(QFileDialog, "getOpenFileNames", fake_files_dialog)
    with qtbot.waitSignal(panel.import_finished, timeout=IMPORT_TIMEOUT_MS) as blocker:
        panel.import_files_action.trigger()
    assert blocker.args[0].unchanged == 1
    assert asked == ["", str(tmp_path / "scans")]
    assert settings.value("study_browser/last_folder") == str(files[0].parent)
    assert panel.shutdown(10_000)


def test_dropping_a_folder_imports_it(qtbot, panel, tmp_path):
    _series(tmp_path / "dropped", "ct", slices=2, description="Dropped series")
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(tmp_path / "dropped"))])
    event = QDropEvent(QPointF(10, 10), Qt.DropAction.CopyAction, mime,
                       Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier)
    with qtbot.waitSignal(panel.import_finished, timeout=IMPORT_TIMEOUT_MS):
        panel.dropEvent(event)
    assert event.isAccepted()
    assert panel.series_count() == 1

    not_files = QMimeData()
    not_files.setText("hello")
    ignored = QDropEvent(QPointF(10, 10), Qt.DropAction.CopyAction, not_files,
                         Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier)
    panel.dropEvent(ignored)
    assert not panel.is_importing()


# ---------------------------------------------------------------------------- activation
def test_double_click_and_enter_on_a_series_emit_its_headers(qtbot, panel, index, archive):
    _import(qtbot, panel, archive)
    panel.show()
    qtbot.waitExposed(panel)
    uid = _series_uid(panel, "T2 axial")
    index_of_series = panel.series_index(uid)
    panel.tree.scrollTo(index_of_series)
    rect = panel.tree.visualRect(index_of_series)
    assert rect.isValid()

    viewport = panel.tree.viewport()
    with qtbot.waitSignal(panel.series_activated, timeout=3000) as blocker:
        # a real double-click: the first click, then the double-click event
        qtbot.mouseClick(viewport, Qt.MouseButton.LeftButton, pos=rect.center())
        qtbot.mouseDClick(viewport, Qt.MouseButton.LeftButton, pos=rect.center())
    emitted_uid, headers = blocker.args
    assert emitted_uid == uid
    assert headers == index.headers_for_series(uid)
    assert len(headers) == 4
    assert {h.series_uid for h in headers} == {uid}
    assert {h.series_description for h in headers} == {"T2 axial"}

    panel.tree.setCurrentIndex(index_of_series.siblingAtColumn(study_browser.COL_DATE))
    panel.tree.setFocus()
    with qtbot.waitSignal(panel.series_activated, timeout=3000) as blocker:
        qtbot.keyClick(panel.tree, Qt.Key.Key_Return)
    assert blocker.args[0] == uid


def test_activating_a_patient_or_study_emits_nothing(qtbot, panel, archive):
    _import(qtbot, panel, archive)
    emitted: list[str] = []
    panel.series_activated.connect(lambda uid, headers: emitted.append(uid))
    for item, model_index in panel._tree_items():
        if item.data(ROLE_KIND) != KIND_SERIES:
            panel._on_tree_activated(model_index)
    assert emitted == []


# ---------------------------------------------------------------------------- hostile text
def test_header_markup_is_shown_literally(qtbot, panel, tmp_path, monkeypatch):
    # real archives hold over-long values; let pydicom write one (LO allows 64 characters)
    for mode in ("reading_validation_mode", "writing_validation_mode"):
        monkeypatch.setattr(pydicom.config.settings, mode, pydicom.config.IGNORE)
    long_description = "<script>" + "L" * 2000 + "</script>"
    _series(tmp_path / "evil", "ct", patient=("<b>x</b>^&amp;", "<i>ID</i>&"),
            description="<b>x</b> & y", study_description=long_description, slices=2)
    _import(qtbot, panel, tmp_path / "evil")
    texts = _texts(panel)
    assert "<b>x</b>, &amp;" in texts
    assert "1: <b>x</b> & y" in texts
    assert long_description in texts
    patient = panel.model.item(0)
    details = patient.index().siblingAtColumn(study_browser.COL_DETAILS).data()
    assert "ID <i>ID</i>&" in details
    panel.search_edit.setText("<b>x</b>")
    panel.refresh()
    assert panel.patient_count() == 1
    assert panel.model.item(0).index().siblingAtColumn(COL_NAME).data() == "<b>x</b>, &amp;"


def test_thumbnail_keeps_the_true_aspect_inside_a_black_square():
    """A 2:1 field of view (pixels 2 mm wide, 1 mm high) fills the square's width and half its
    height, centred on black."""
    image = study_browser._square_thumbnail(np.full((80, 80), 200, np.uint8), 2.0, 1.0, 64)
    assert (image.width(), image.height()) == (64, 64)
    grey = [[image.pixelColor(x, y).red() for x in range(64)] for y in range(64)]
    assert grey[32][0] == 200 and grey[32][63] == 200  # full width
    assert grey[16][32] == 200 and grey[47][32] == 200  # the middle half of the height
    assert grey[5][32] == 0 and grey[58][32] == 0  # black above and below
