"""The whole window, driven like a user: open the sample study, scroll, window, measure, cancel,
survive bad files, and take the screenshot the docs show."""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import json
from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import QSettings, Qt
from PySide6.QtTest import QTest

from radview.app import build_main_window
from radview.core.viewer_state import Layout, Tool
from radview.core.volume import ViewPlane
from radview.core.windowing import WindowPreset
from radview.io.sample_study import write_sample_study
from radview.viewer.shortcut_sheet import SHORTCUTS

pytestmark = pytest.mark.gui

LOAD_TIMEOUT_MS = 60_000


@pytest.fixture(scope="module")
def sample(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("sample")
    write_sample_study(out, matrix=128, slices=40, seed=0)
    return out


@pytest.fixture
def window(qtbot, tmp_path):
    settings = QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat)
    win = build_main_window(index_path=tmp_path / "index.sqlite3", settings=settings)
    qtbot.addWidget(win)
    win.resize(1400, 800)
    win.show()
    yield win
    win.close()


def _open(qtbot, window, path: Path, labels: Path | None = None) -> None:
    with qtbot.waitSignal(window.series_shown, timeout=LOAD_TIMEOUT_MS):
        window.open_paths([path], labels=labels)


def test_open_sample_with_labels_shows_three_linked_views(qtbot, window, sample):
    _open(qtbot, window, sample / "dicom", sample / "truth" / "labels.nii.gz")
    state = window.state
    assert state.volume is not None and state.volume.shape == (40, 128, 128)
    assert state.labels is not None and state.labels.names == {1: "Liver", 2: "Tumour"}
    assert state.window == WindowPreset.SOFT_TISSUE.window()
    assert window.banner.isHidden()  # the sample has no geometry problems
    assert "Sample" in window.viewport.views[ViewPlane.AXIAL].corner_text()["top_left"]
    # the tags panel shows the current file's header
    assert window.tags_panel.message() == ""


def test_scroll_window_and_crosshair(qtbot, window, sample):
    _open(qtbot, window, sample / "dicom")
    axial = window.viewport.views[ViewPlane.AXIAL]
    before = window.state.slice_index(ViewPlane.AXIAL)
    axial.setFocus()
    QTest.keyClick(axial, Qt.Key.Key_Up)
    assert window.state.slice_index(ViewPlane.AXIAL) == before + 1
    QTest.keyClick(axial, Qt.Key.Key_End)
    assert window.state.slice_index(ViewPlane.AXIAL) == 39

    window.apply_preset(WindowPreset.LIVER)
    assert (window.state.window.width, window.state.window.level) == (150.0, 30.0)

    window.state.click(ViewPlane.AXIAL, 30.0, 90.0)
    assert window.state.slice_index(ViewPlane.CORONAL) == 30
    assert window.state.slice_index(ViewPlane.SAGITTAL) == 90


def test_settings_remember_layout_preset_and_opacity(qtbot, sample, tmp_path):
    settings_path = tmp_path / "settings.ini"

    def new_window():
        settings = QSettings(str(settings_path), QSettings.Format.IniFormat)
        win = build_main_window(index_path=tmp_path / "index.sqlite3", settings=settings)
        qtbot.addWidget(win)
        win.show()
        return win

    first = new_window()
    _open(qtbot, first, sample / "dicom")
    first.layout_actions[Layout.FOUR].trigger()
    first.apply_preset(WindowPreset.LUNG)
    first.state.overlay_opacity = 0.7
    first.close()
    first.settings.sync()

    second = new_window()
    assert second.state.layout is Layout.FOUR
    assert second.state.overlay_opacity == pytest.approx(0.7)
    _open(qtbot, second, sample / "dicom")
    assert second.state.window == WindowPreset.LUNG.window()
    second.close()


def test_layouts_and_patient_hiding_from_the_menu(qtbot, window, sample):
    _open(qtbot, window, sample / "dicom")
    window.layout_actions[Layout.ONE].trigger()
    assert window.state.layout is Layout.ONE
    window.hide_patient_action.trigger()
    assert window.state.hide_patient_info
    text = window.viewport.views[ViewPlane.AXIAL].corner_text()["top_left"]
    assert "Sample" not in text


def test_ruler_measurement_is_listed_saved_and_restored(qtbot, window, sample, tmp_path):
    from radview.core.annotations import Annotation, AnnotationKind

    _open(qtbot, window, sample / "dicom")
    volume = window.state.volume
    index = window.state.slice_index(ViewPlane.AXIAL)
    start = volume.world_of_plane_pixel(ViewPlane.AXIAL, index, 10, 10)
    end = volume.world_of_plane_pixel(ViewPlane.AXIAL, index, 10, 60)
    ruler = Annotation(AnnotationKind.RULER, ViewPlane.AXIAL, index,
                       (tuple(start), tuple(end)))
    window.state.tool = Tool.RULER
    window.viewport.annotation_created.emit(ruler)
    assert [a.id for a in window.store.annotations] == [ruler.id]
    assert window.measurement_panel.table.rowCount() == 1
    expected_mm = 50 * volume.spacing[0]
    assert f"{expected_mm:.1f} mm" in window.measurement_panel.table.item(0, 2).text()

    window.measurement_panel.undo_action.trigger()
    assert window.store.annotations == ()
    window.measurement_panel.redo_action.trigger()
    assert len(window.store.annotations) == 1
    # reopening the series restores the saved measurement
    _open(qtbot, window, sample / "dicom")
    assert [a.id for a in window.store.annotations] == [ruler.id]


def test_cancel_button_stops_a_load(qtbot, window, monkeypatch):
    import threading
    import time

    from radview.core.errors import LoadCancelled
    from radview.viewer import main_window

    started = threading.Event()

    def slow_open(paths, *, progress, cancel, on_start, **_):
        started.set()
        for done in range(10_000):  # a load that only ends when cancelled
            if cancel():
                raise LoadCancelled("cancelled")
            progress(done, 10_000)
            time.sleep(0.005)
        raise AssertionError("cancel never arrived")

    monkeypatch.setattr(main_window, "open_images", slow_open)
    window.open_paths([Path("/nonexistent/slow")])
    qtbot.waitUntil(started.is_set, timeout=5000)
    qtbot.waitUntil(window.cancel_button.isVisible, timeout=5000)
    qtbot.mouseClick(window.cancel_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: window._loader is None, timeout=10_000)
    assert window.state.volume is None
    assert "cancelled" in window.viewport.views[ViewPlane.AXIAL].message().lower()
    assert window.progress_bar.isHidden()


def test_bad_file_shows_its_error_and_the_app_keeps_working(qtbot, window, sample, tmp_path):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "broken.dcm").write_bytes(b"\0" * 128 + b"DICM" + b"\x02\x00" * 10)
    with qtbot.waitSignal(window.open_failed, timeout=LOAD_TIMEOUT_MS) as blocker:
        window.open_paths([bad])
    assert "broken.dcm" in blocker.args[0]
    assert window.banner.isVisible() and "broken.dcm" in window.banner.text()
    _open(qtbot, window, sample / "dicom")  # still works
    assert window.state.volume is not None


def test_every_menu_shortcut_is_on_the_sheet(window):
    """Each key of a menu action appears as a key (not inside a word) on the F1 sheet."""
    sheet_keys = set()
    for keys, _ in SHORTCUTS:
        for part in keys.replace(",", "/").split("/"):
            sheet_keys.add(part.strip().lower())
    unlisted = []
    for action in window.actions():
        shortcut = action.shortcut().toString()
        listed = shortcut.lower() in sheet_keys or any(
            shortcut.lower() in key.split(" ") for key in sheet_keys)
        if shortcut and shortcut not in ("Ctrl+Q", "Ctrl+Shift+O") and not listed:
            unlisted.append(shortcut)
    assert unlisted == []


def test_screenshot_1x3_with_overlay_and_ruler(qtbot, window, sample, tmp_path):
    """The picture in docs/: checked by a person; here, that it is a real, non-blank image."""
    from radview.core.annotations import Annotation, AnnotationKind

    _open(qtbot, window, sample / "dicom", sample / "truth" / "labels.nii.gz")
    lesions = json.loads((sample / "truth" / "lesions.json").read_text())["lesions"]
    centre = lesions[0]["centre_lps_mm"]
    window.state.cursor = tuple(centre)
    volume = window.state.volume
    index = window.state.slice_index(ViewPlane.AXIAL)
    half = lesions[0]["diameters_mm"][0] / 2
    ruler = Annotation(AnnotationKind.RULER, ViewPlane.AXIAL, index,
                       ((centre[0] - half, centre[1], centre[2]),
                        (centre[0] + half, centre[1], centre[2])))
    window.viewport.annotation_created.emit(ruler)
    qtbot.wait(200)
    path = tmp_path / "window.png"
    assert window.grab().save(str(path))
    image = window.grab().toImage()
    assert image.width() >= 1000
    grey = np.array([image.pixelColor(x, image.height() // 2).lightness()
                     for x in range(0, image.width(), 7)])
    assert grey.std() > 10  # not a blank window
    if os.environ.get("RADVIEW_DOCS_SCREENSHOT"):
        window.grab().save(os.environ["RADVIEW_DOCS_SCREENSHOT"])
    assert volume is window.state.volume


def test_mr_series_opens_with_an_automatic_window_of_its_real_values(qtbot, window, tmp_path):
    from radview.core.windowing import auto_window
    from tests.io.conftest import make_ct_volume, write_series

    mr = make_ct_volume(shape=(12, 32, 32))
    mr = mr.with_voxels((mr.voxels.astype(np.int32) + 1000).astype(np.int16), modality="MR")
    write_series(mr, tmp_path / "mr", modality="MR")
    _open(qtbot, window, tmp_path / "mr")
    assert window.state.window == auto_window(window.state.volume)
    assert window.state.window.width > 100  # not the 1-wide window of a blank array


def test_tags_panel_follows_the_slice_under_the_crosshair(qtbot, window, sample):
    _open(qtbot, window, sample / "dicom")
    volume = window.state.volume
    window.state.set_slice(ViewPlane.AXIAL, 0)
    qtbot.waitUntil(lambda: window.tags_panel.path == volume.source.slice_files[0][0],
                    timeout=3000)
    window.state.set_slice(ViewPlane.AXIAL, 39)
    qtbot.waitUntil(lambda: window.tags_panel.path == volume.source.slice_files[39][0],
                    timeout=3000)
    assert window.tags_panel.path != volume.source.slice_files[0][0]
