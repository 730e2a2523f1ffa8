"""DICOM SEG export: round trip of the label map, coded segments, references, validation.

The study is the embedded sample (a real CT series written by radview plus its truth label
map on the same grid), loaded through the normal readers. The module also holds the helpers
the other report tests share (the sample study, dciodvfy, a scan of every written value).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from copy import deepcopy
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset

from radview.core.labelmap import LiverLabel
from radview.core.lesions import LiverFindings, measure_liver
from radview.core.volume import Volume
from radview.io.dicom_load import load_stack
from radview.io.discover import discover
from radview.io.sample_study import write_sample_study
from radview.io.volume_files import read_volume_file
from radview.report.dicom_seg import (
    SEG_SOP_CLASS_UID,
    AlgorithmInfo,
    read_seg_labels,
    read_source_datasets,
    write_seg,
)
from radview.report.tables import ExportError

DCIODVFY = "/usr/bin/dciodvfy"
LIVER_NAMES = {1: "Liver", 2: "Tumour"}


# ---------------------------------------------------------------------------- shared helpers
@dataclass(frozen=True)
class Study:
    root: Path
    ct: Volume
    labels: Volume
    sources: list[Dataset]
    findings: LiverFindings


def build_study(root: Path) -> Study:
    """The sample study at 128 x 128 x 40, read back by radview's own readers."""
    paths = write_sample_study(root, matrix=128, slices=40)
    ct = load_stack(discover([paths.dicom_dir]).stacks[0]).volume
    labels = read_volume_file(paths.labels_nifti)
    labels = labels.with_voxels(labels.voxels.astype(np.uint8))
    return Study(root, ct, labels, read_source_datasets(ct), measure_liver(labels, ct))


def dciodvfy(path: Path) -> tuple[list[str], list[str]]:
    """(error lines, warning lines) of dciodvfy on ``path``."""
    result = subprocess.run(
        [DCIODVFY, str(path)], capture_output=True, text=True, timeout=120, check=False
    )
    lines = (result.stdout + result.stderr).splitlines()
    return (
        [line for line in lines if line.startswith("Error")],
        [line for line in lines if line.startswith("Warning")],
    )


needs_dciodvfy = pytest.mark.skipif(
    not os.access(DCIODVFY, os.X_OK) and shutil.which("dciodvfy") is None,
    reason="dciodvfy (Debian dicom3tools) is not installed",
)


def all_values(dataset: Dataset) -> list[str]:
    """Every element value of ``dataset`` (file meta included, recursively) as text."""
    values: list[str] = []

    def visit(ds: Dataset) -> None:
        for element in ds:
            if element.VR == "SQ":
                for item in element.value:
                    visit(item)
            elif element.VR not in ("OB", "OW", "OF", "OD", "OL", "UN"):
                value = element.value
                items = value if element.VM > 1 else [value]
                values.extend(str(v) for v in items)

    if getattr(dataset, "file_meta", None) is not None:
        visit(dataset.file_meta)
    visit(dataset)
    return values


def shift_sources(sources: list[Dataset], **changes: object) -> list[Dataset]:
    """Copies of the source headers with some attributes changed (by keyword)."""
    result = []
    for ds in sources:
        copy = deepcopy(ds)
        for keyword, value in changes.items():
            setattr(copy, keyword, value)
        result.append(copy)
    return result


# ---------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def study(tmp_path_factory) -> Study:
    return build_study(tmp_path_factory.mktemp("sample"))


def _uids(sources) -> list[str]:
    return [str(ds.SOPInstanceUID) for ds in sources]


# ---------------------------------------------------------------------------- tests
def test_round_trip_gives_the_same_label_map(study, tmp_path) -> None:
    import highdicom as hd

    out = write_seg(study.labels, study.sources, LIVER_NAMES, tmp_path / "seg.dcm",
                    algorithm=AlgorithmInfo())
    assert out == tmp_path / "seg.dcm"
    assert np.array_equal(read_seg_labels(out, _uids(study.sources)), study.labels.voxels)
    # and straight through highdicom's own API (pixels by source instance)
    seg = hd.seg.segread(out)
    pixels = seg.get_pixels_by_source_instance(
        _uids(study.sources), combine_segments=True, assert_missing_frames_are_empty=True
    )
    assert np.array_equal(pixels, study.labels.voxels)
    # and by geometry alone: highdicom's volume (only the slices with frames, in its own slice
    # order) put back onto our grid through its affine
    volume = seg.get_volume(combine_segments=True)
    rebuilt = np.zeros_like(study.labels.voxels)
    for s in range(volume.spatial_shape[0]):
        world = (volume.affine @ np.array([s, 0.0, 0.0, 1.0]))[:3]
        i, j, k = np.rint(study.labels.world_to_index(world)).astype(int)
        assert (i, j) == (0, 0)
        rebuilt[k] = volume.array[s]
    assert np.array_equal(rebuilt, study.labels.voxels)
    assert [p.name for p in tmp_path.iterdir()] == ["seg.dcm"]


def test_segments_are_coded_and_the_series_is_new(study, tmp_path) -> None:
    out = write_seg(study.labels, study.sources, LIVER_NAMES, tmp_path / "seg.dcm",
                    algorithm=AlgorithmInfo(name="liver-net", version="1.2"))
    seg = pydicom.dcmread(out)
    source = study.sources[0]
    assert seg.SOPClassUID == SEG_SOP_CLASS_UID
    assert seg.Modality == "SEG" and seg.SegmentationType == "BINARY"
    assert seg.StudyInstanceUID == source.StudyInstanceUID
    assert seg.FrameOfReferenceUID == source.FrameOfReferenceUID
    assert seg.SeriesInstanceUID != source.SeriesInstanceUID
    assert seg.PatientID == source.PatientID
    liver, tumour = seg.SegmentSequence
    assert (liver.SegmentNumber, liver.SegmentLabel) == (1, "Liver")
    assert liver.SegmentedPropertyTypeCodeSequence[0].CodeValue == "10200004"
    assert liver.SegmentedPropertyCategoryCodeSequence[0].CodeValue == "91723000"
    assert (tumour.SegmentNumber, tumour.SegmentLabel) == (2, "Tumour")
    assert tumour.SegmentedPropertyTypeCodeSequence[0].CodeValue == "108369006"
    assert tumour.SegmentedPropertyCategoryCodeSequence[0].CodeValue == "49755003"
    assert tumour.AnatomicRegionSequence[0].CodeValue == "10200004"
    for segment in seg.SegmentSequence:
        assert segment.SegmentAlgorithmType == "AUTOMATIC"
        algorithm = segment.SegmentationAlgorithmIdentificationSequence[0]
        assert (algorithm.AlgorithmName, algorithm.AlgorithmVersion) == ("liver-net", "1.2")
        assert algorithm.AlgorithmFamilyCodeSequence[0].CodeValue == "123110"
    # every source image is referenced
    referenced = {
        item.ReferencedSOPInstanceUID
        for item in seg.ReferencedSeriesSequence[0].ReferencedInstanceSequence
    }
    assert referenced == set(_uids(study.sources))


def test_labels_from_a_file_are_manual(study, tmp_path) -> None:
    out = write_seg(study.labels, study.sources, LIVER_NAMES, tmp_path / "seg.dcm",
                    algorithm=None)
    seg = pydicom.dcmread(out, stop_before_pixels=True)
    for segment in seg.SegmentSequence:
        assert segment.SegmentAlgorithmType == "MANUAL"
        assert "SegmentationAlgorithmIdentificationSequence" not in segment


def test_other_label_ids_become_generic_segments(study, tmp_path) -> None:
    voxels = study.labels.voxels.copy()
    voxels[:3, :4, :4] = 5  # a corner block of a fifth label
    labels = study.labels.with_voxels(voxels)
    names = {1: "Liver", 2: "Tumour", 5: "=cmd|<script>&amp;\\x"}
    out = write_seg(labels, study.sources, names, tmp_path / "seg.dcm", algorithm=None)
    assert np.array_equal(read_seg_labels(out, _uids(study.sources)), voxels)
    seg = pydicom.dcmread(out, stop_before_pixels=True)
    segments = {int(s.SegmentNumber): s for s in seg.SegmentSequence}
    assert sorted(segments) == [1, 2, 3, 4, 5]  # segment number = label id
    assert segments[3].SegmentLabel == "Label 3"
    assert segments[3].SegmentedPropertyTypeCodeSequence[0].CodeValue == "85756007"
    # markup is kept verbatim; the backslash (a value separator) is replaced
    assert segments[5].SegmentLabel == "=cmd|<script>&amp;/x"


def test_missing_slices_are_skipped_but_may_not_hold_labels(study, tmp_path) -> None:
    sources: list = list(study.sources)
    sources[0] = None  # the loader filled this slice in
    assert not study.labels.voxels[0].any()
    out = write_seg(study.labels, sources, LIVER_NAMES, tmp_path / "seg.dcm", algorithm=None)
    back = read_seg_labels(out, _uids(study.sources[1:]))
    assert np.array_equal(back, study.labels.voxels[1:])

    busy = int(np.flatnonzero(study.labels.voxels.any(axis=(1, 2)))[0])
    sources = list(study.sources)
    sources[busy] = None
    with pytest.raises(ExportError, match="missing"):
        write_seg(study.labels, sources, LIVER_NAMES, tmp_path / "bad.dcm", algorithm=None)
    assert not (tmp_path / "bad.dcm").exists()


def test_labels_off_the_source_grid_are_refused(study, tmp_path) -> None:
    x, y, z = study.labels.origin
    shifted = replace(study.labels, origin=(x, y, z + 2.0))
    with pytest.raises(ExportError, match="not on the grid"):
        write_seg(shifted, study.sources, LIVER_NAMES, tmp_path / "seg.dcm", algorithm=None)
    with pytest.raises(ExportError, match="slices"):
        write_seg(study.labels, study.sources[:-1], LIVER_NAMES, tmp_path / "seg.dcm",
                  algorithm=None)
    empty = study.labels.with_voxels(np.zeros_like(study.labels.voxels))
    with pytest.raises(ExportError, match="empty"):
        write_seg(empty, study.sources, LIVER_NAMES, tmp_path / "seg.dcm", algorithm=None)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "name",
    ["Müller^Zoë", "山田^太郎", "<font color=red>X</font>^<script>alert(1)</script>&amp;"],
)
def test_hostile_and_non_latin_names_survive(study, tmp_path, name) -> None:
    sources = shift_sources(study.sources, PatientName=name)
    out = write_seg(study.labels, sources, LIVER_NAMES, tmp_path / "seg.dcm", algorithm=None)
    seg = pydicom.dcmread(out, stop_before_pixels=True)
    assert str(seg.PatientName) == name
    if not name.isascii():
        assert seg.SpecificCharacterSet == "ISO_IR 192"
        assert name.encode("utf-8") in out.read_bytes()


def test_over_long_header_values_are_cut_to_their_maximum(study, tmp_path) -> None:
    long_name = "Ä" * 100 + "^" + "B" * 80
    with pytest.warns(UserWarning, match="exceeds the maximum"):
        sources = shift_sources(study.sources, PatientName=long_name)
    out = write_seg(study.labels, sources, LIVER_NAMES, tmp_path / "seg.dcm", algorithm=None)
    seg = pydicom.dcmread(out, stop_before_pixels=True)
    # 64 characters per component group, the longest components shortened first
    assert str(seg.PatientName) == "Ä" * 31 + "^" + "B" * 32
    assert str(sources[0].PatientName) == long_name  # the caller's headers are untouched


def test_a_full_disk_leaves_nothing_behind(study, tmp_path, monkeypatch) -> None:
    target = tmp_path / "seg.dcm"
    target.write_bytes(b"previous export")

    def full_disk(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", full_disk)
    with pytest.raises(ExportError, match="disk is full") as caught:
        write_seg(study.labels, study.sources, LIVER_NAMES, target, algorithm=None)
    assert str(target) in str(caught.value)
    assert target.read_bytes() == b"previous export"
    assert [p.name for p in tmp_path.iterdir()] == ["seg.dcm"]


def test_a_name_without_caret_is_written_as_a_family_name(study, tmp_path) -> None:
    # "Bono" is a valid person name; highdicom refuses it as a probable mistake
    sources = shift_sources(study.sources, PatientName="Bono")
    out = write_seg(study.labels, sources, LIVER_NAMES, tmp_path / "seg.dcm", algorithm=None)
    name = pydicom.dcmread(out, stop_before_pixels=True).PatientName
    assert (name.family_name, name.given_name) == ("Bono", "")


def test_headers_highdicom_refuses_give_a_clear_error(study, tmp_path) -> None:
    sources = shift_sources(study.sources)
    for ds in sources:
        del ds.FrameOfReferenceUID
    with pytest.raises(ExportError, match="cannot build the segmentation"):
        write_seg(study.labels, sources, LIVER_NAMES, tmp_path / "seg.dcm", algorithm=None)
    assert list(tmp_path.iterdir()) == []


def test_a_source_file_is_never_overwritten(study, tmp_path) -> None:
    first = Path(study.sources[0].filename)
    before = first.read_bytes()
    with pytest.raises(ExportError, match="source images"):
        write_seg(study.labels, study.sources, LIVER_NAMES, first, algorithm=None)
    assert first.read_bytes() == before


def test_liver_label_ids_match_the_label_enum() -> None:
    assert (int(LiverLabel.LIVER), int(LiverLabel.TUMOUR)) == (1, 2)


@pytest.mark.external
@needs_dciodvfy
def test_dciodvfy_finds_no_errors(study, tmp_path) -> None:
    automatic = write_seg(study.labels, study.sources, LIVER_NAMES, tmp_path / "auto.dcm",
                          algorithm=AlgorithmInfo())
    manual = write_seg(study.labels, shift_sources(study.sources, PatientName="山田^太郎"),
                       LIVER_NAMES, tmp_path / "manual.dcm", algorithm=None)
    for path in (automatic, manual):
        errors, _warnings = dciodvfy(path)
        assert errors == [], errors
