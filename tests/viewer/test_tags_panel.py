"""TagsPanel: real DICOM files, sequences, private tags, search, hostile text, bad files."""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from pathlib import Path

import pytest
from pydicom.data import get_testdata_file
from PySide6.QtCore import QModelIndex, QSortFilterProxyModel, Qt
from PySide6.QtGui import QTextDocumentFragment

from radview.viewer.tags_panel import (
    COL_NAME,
    COL_TAG,
    COL_VALUE,
    COL_VR,
    MAX_VALUE_CHARS,
    TagsPanel,
)
from tests.io.conftest import make_ct_volume, write_series

pytestmark = pytest.mark.gui


@pytest.fixture
def panel(qtbot) -> TagsPanel:
    widget = TagsPanel()
    qtbot.addWidget(widget)
    widget.resize(700, 500)
    return widget


def _rows(model, parent: QModelIndex | None = None) -> list[QModelIndex]:
    """Every row (column 0) under ``parent``, depth first."""
    parent = parent or QModelIndex()
    found = []
    for row in range(model.rowCount(parent)):
        index = model.index(row, COL_TAG, parent)
        found.append(index)
        found.extend(_rows(model, index))
    return found


def _cell(index: QModelIndex, column: int) -> str:
    return index.siblingAtColumn(column).data() or ""


def _find(model, tag: str, parent: QModelIndex | None = None) -> QModelIndex:
    for index in _rows(model, parent):
        if index.data() == tag:
            return index
    raise AssertionError(f"{tag} not shown")


def _visible_tags(panel: TagsPanel) -> set[str]:
    return {index.data() for index in _rows(panel.proxy)}


# ---------------------------------------------------------------------------- content
def test_shows_meta_and_dataset_elements(panel):
    assert panel.show_file(get_testdata_file("CT_small.dcm"))
    model = panel.model
    top = [model.index(row, COL_TAG).data() for row in range(model.rowCount())]
    assert top[0].startswith("(0002,")  # file meta first
    patient_id = _find(model, "(0010,0020)")
    assert _cell(patient_id, COL_NAME) == "PatientID"
    assert _cell(patient_id, COL_VR) == "LO"
    assert _cell(patient_id, COL_VALUE) == "1CT1"
    syntax = _find(model, "(0002,0010)")
    assert _cell(syntax, COL_VALUE) == "1.2.840.10008.1.2.1 (Explicit VR Little Endian)"
    assert _cell(_find(model, "(0002,0001)"), COL_VALUE) == "<2 bytes>"
    image_type = _find(model, "(0008,0008)")
    assert _cell(image_type, COL_VALUE) == "ORIGINAL\\PRIMARY\\AXIAL"
    # pixel data is never read
    assert "(7FE0,0010)" not in {index.data() for index in _rows(model)}
    assert panel.message() == ""
    assert panel.file_label.text() == get_testdata_file("CT_small.dcm")


def test_private_tags_show_their_creator(panel):
    panel.show_file(get_testdata_file("CT_small.dcm"))
    model = panel.model
    assert _cell(_find(model, "(0009,0010)"), COL_NAME) == "Private Creator"
    assert _cell(_find(model, "(0009,0010)"), COL_VALUE) == "GEMS_IDEN_01"
    assert _cell(_find(model, "(0009,1001)"), COL_NAME) == "[Full fidelity] · GEMS_IDEN_01"
    assert _cell(_find(model, "(0011,1010)"), COL_NAME) == "[Patient Status] · GEMS_PATI_01"


def test_sequences_expand_to_their_items(qtbot, panel):
    panel.show_file(get_testdata_file("rtplan.dcm"))
    model = panel.model
    beams = _find(model, "(300A,00B0)")  # Beam Sequence
    assert _cell(beams, COL_NAME) == "BeamSequence"
    assert _cell(beams, COL_VR) == "SQ"
    assert model.rowCount(beams) == 1
    item = model.index(0, COL_TAG, beams)
    assert item.data() == "Item 1"
    assert _cell(item, COL_VALUE).endswith("elements")
    beam_name = _find(model, "(300A,00C2)", item)
    assert _cell(beam_name, COL_NAME) == "BeamName"
    # nested sequences are there too
    control_points = _find(model, "(300A,0111)", item)
    assert model.rowCount(control_points) >= 2

    view_index = panel.proxy.mapFromSource(beams)
    assert not panel.tree.isExpanded(view_index)  # collapsed until the user opens it
    panel.tree.expand(view_index)
    assert panel.tree.isExpanded(view_index)
    assert panel.proxy.rowCount(view_index) == 1


def test_multiframe_shows_the_per_frame_item_of_the_frame(panel):
    path = get_testdata_file("liver.dcm")
    assert path is not None, "pydicom-data provides liver.dcm"
    panel.show_file(path, frame=1)
    groups = _find(panel.model, "(5200,9230)")
    assert "showing frame 2" in _cell(groups, COL_VALUE)
    assert panel.model.rowCount(groups) == 1
    assert panel.model.index(0, COL_TAG, groups).data() == "Item 2 of 3 (this frame)"
    assert panel.file_label.text().endswith("(frame 2)")


# ---------------------------------------------------------------------------- search
@pytest.mark.parametrize("text", ["PatientID", "patientid", "(0010,0020)", "0010,0020",
                                  "00100020", "1ct1"])
def test_search_finds_patient_id(qtbot, panel, text):
    panel.show_file(get_testdata_file("CT_small.dcm"))
    everything = len(_rows(panel.proxy))
    qtbot.keyClicks(panel.search_edit, text)
    visible = _visible_tags(panel)
    assert "(0010,0020)" in visible
    assert len(visible) < everything / 4
    assert isinstance(panel.proxy, QSortFilterProxyModel)


def test_search_keeps_parents_of_matches_and_expands_them(qtbot, panel):
    panel.show_file(get_testdata_file("rtplan.dcm"))
    qtbot.keyClicks(panel.search_edit, "BeamName")
    proxy = panel.proxy
    beams = next(index for index in _rows(proxy) if index.data() == "(300A,00B0)")
    item = proxy.index(0, COL_TAG, beams)
    assert item.data() == "Item 1"
    assert [proxy.index(r, COL_TAG, item).siblingAtColumn(COL_NAME).data()
            for r in range(proxy.rowCount(item))] == ["BeamName"]
    assert panel.tree.isExpanded(beams) and panel.tree.isExpanded(item)
    # rows outside the path are hidden
    assert "(0010,0010)" not in _visible_tags(panel)

    panel.search_edit.clear()
    assert "(0010,0010)" in _visible_tags(panel)


def test_search_by_private_creator(qtbot, panel):
    panel.show_file(get_testdata_file("CT_small.dcm"))
    qtbot.keyClicks(panel.search_edit, "gems_pati")
    assert "(0011,1010)" in _visible_tags(panel)
    assert "(0010,0020)" not in _visible_tags(panel)


# ---------------------------------------------------------------------------- hostile input
def test_hostile_values_are_shown_literally_and_cut(panel, tmp_path):
    history = "<b>bold</b> & <script>alert(1)</script>\nsecond line " + "x" * 5000
    files = write_series(make_ct_volume(shape=(1, 8, 8)), tmp_path / "evil",
                         patient_name="<b>x</b>", patient_id="&",
                         study_description="&amp; <i>study</i>",
                         extra_attributes={"AdditionalPatientHistory": history})
    panel.show_file(files[0])
    model = panel.model
    assert _cell(_find(model, "(0010,0010)"), COL_VALUE) == "<b>x</b>"
    assert _cell(_find(model, "(0010,0020)"), COL_VALUE) == "&"
    assert _cell(_find(model, "(0008,1030)"), COL_VALUE) == "&amp; <i>study</i>"
    shown = _cell(_find(model, "(0010,21B0)"), COL_VALUE)
    assert len(shown) == MAX_VALUE_CHARS
    assert shown.startswith("<b>bold</b> & <script>alert(1)</script> ⏎ second line xxx")
    assert shown.endswith("…")
    assert "\n" not in shown
    # the tooltip holds more of it, escaped inside explicit rich text so it shows literally
    history_cell = _find(model, "(0010,21B0)").siblingAtColumn(COL_VALUE)
    tooltip = history_cell.data(Qt.ItemDataRole.ToolTipRole)
    assert tooltip.startswith("<qt>&lt;b&gt;bold&lt;/b&gt; &amp; &lt;script&gt;")
    assert QTextDocumentFragment.fromHtml(tooltip).toPlainText().startswith(
        "<b>bold</b> & <script>alert(1)</script>")
    # labels that show file names never interpret markup
    assert panel.file_label.textFormat().name == "PlainText"
    assert panel.message_label.textFormat().name == "PlainText"


# ---------------------------------------------------------------------------- bad files
def test_not_dicom_shows_a_one_line_message(panel, tmp_path):
    path = tmp_path / "<b>notes<i> &amp;.txt"
    path.write_text("just text\nnot DICOM\n")
    assert not panel.show_file(path)
    assert panel.message() == f"{path}: not a DICOM file"
    assert panel.model.rowCount() == 0


def test_missing_file_shows_a_one_line_message(panel, tmp_path):
    path = tmp_path / "gone.dcm"
    assert not panel.show_file(path)
    assert panel.message().startswith(f"{path}: cannot read file")


def test_damaged_file_shows_what_was_read_and_says_so(panel, tmp_path):
    good = Path(get_testdata_file("rtplan.dcm")).read_bytes()
    damaged = tmp_path / "damaged.dcm"
    damaged.write_bytes(good[:700] + b"\xff" * 64)  # breaks inside an element
    assert panel.show_file(damaged)
    assert panel.model.rowCount() > 0
    message = panel.message()
    assert message.startswith(f"{damaged}: the file ends early")
    assert "\n" not in message

    hopeless = tmp_path / "hopeless.dcm"
    hopeless.write_bytes(good[:200] + b"\xff" * 64)  # breaks inside the file meta
    assert not panel.show_file(hopeless)
    assert panel.message() == f"{hopeless}: no DICOM elements could be read"

    # a good file afterwards replaces the message
    assert panel.show_file(get_testdata_file("CT_small.dcm"))
    assert panel.message() == ""
    assert panel.model.rowCount() > 10


def test_truncated_file_from_pydicom(panel):
    path = get_testdata_file("rtplan_truncated.dcm")
    panel.show_file(path)  # either partial tags or a message; never an exception
    assert panel.model.rowCount() > 0 or panel.message().startswith(f"{path}: ")


def test_clear(panel):
    panel.show_file(get_testdata_file("CT_small.dcm"))
    panel.clear()
    assert panel.model.rowCount() == 0
    assert panel.path is None
