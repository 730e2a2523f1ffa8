"""Bad input (issue #2): each case is skipped or flagged with a one-line reason naming the file;
everything else loads; nothing crashes or hangs; the source folder is never touched."""

from __future__ import annotations

import os
import struct
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.uid import JPEG2000Lossless

from radview.io.dicom_load import load_stack
from radview.io.discover import discover

from .conftest import folder_fingerprint, make_ct_volume, write_series


def _reasons(found) -> dict[str, str]:
    return {Path(p.path).name: p.reason for p in found.problems}


def _edit(path: Path, **attributes) -> None:
    ds = pydicom.dcmread(path)
    for keyword, value in attributes.items():
        if value is None:
            delattr(ds, keyword)
        else:
            setattr(ds, keyword, value)
    ds.save_as(path)


@pytest.fixture
def series(tmp_path):
    volume = make_ct_volume(shape=(10, 16, 16))
    files = write_series(volume, tmp_path / "in")
    return volume, files, tmp_path / "in"


def test_junk_files_mixed_into_a_series_folder(series):
    volume, files, folder = series
    (folder / "empty.dcm").write_bytes(b"")
    (folder / "random.bin").write_bytes(np.random.default_rng(0).bytes(5000))
    (folder / "notes.txt").write_text("not an image <b>&</b>")
    (folder / "sub").mkdir()
    (folder / "sub" / "fake.dcm").write_bytes(b"\0" * 128 + b"DICM" + b"\xff" * 40)
    before = folder_fingerprint(folder)

    found = discover([folder])
    reasons = _reasons(found)
    assert reasons["empty.dcm"] == "empty file"
    assert "not a DICOM file" in reasons["random.bin"]
    assert "not a DICOM file" in reasons["notes.txt"]
    assert "fake.dcm" in reasons
    assert all("\n" not in r for r in reasons.values())
    assert str(folder / "random.bin") in [p.path for p in found.problems]
    loaded = load_stack(found.stacks[0]).volume
    np.testing.assert_array_equal(loaded.voxels, volume.voxels)
    assert folder_fingerprint(folder) == before


def test_truncated_files(series):
    _, files, folder = series
    in_header = files[3].read_bytes()[:300]
    files[3].write_bytes(in_header)
    data = files[6].read_bytes()
    files[6].write_bytes(data[: len(data) - 100])  # pixel data short by 100 bytes
    found = discover([folder])
    reasons = _reasons(found)
    assert files[3].name in reasons
    assert "pixel data holds" in reasons[files[6].name]
    assert "needs" in reasons[files[6].name]
    stack = found.stacks[0]
    assert stack.frame_count == 8
    load_stack(stack)


def test_pixel_data_shorter_than_declared(series):
    _, files, folder = series
    ds = pydicom.dcmread(files[2])
    ds.PixelData = ds.PixelData[: len(ds.PixelData) // 2]
    ds.save_as(files[2])
    reasons = _reasons(discover([folder]))
    assert "pixel data holds 256 bytes" in reasons[files[2].name]
    assert "16 x 16 x 1 frames x 2 bytes needs 512" in reasons[files[2].name]


@pytest.mark.parametrize(("rows", "columns", "expected"), [
    (0, 16, "is empty"),
    (16, 0, "is empty"),
    (60000, 60000, "refused before allocating"),
])
def test_zero_or_absurd_matrix_refused_before_allocating(series, rows, columns, expected):
    _, files, folder = series
    _edit(files[0], Rows=rows, Columns=columns)
    found = discover([folder])
    assert expected in _reasons(found)[files[0].name]
    assert found.stacks[0].frame_count == 9


@pytest.mark.parametrize(("attributes", "expected"), [
    ({"BitsStored": 20}, "Bits Stored 20 is not between 1 and Bits Allocated 16"),
    ({"HighBit": 3}, "High Bit 3 should be Bits Stored - 1 = 15"),
    ({"BitsAllocated": 12}, "Bits Allocated 12 is not 1, 8, 16 or 32"),
])
def test_inconsistent_bits(series, attributes, expected):
    _, files, folder = series
    _edit(files[1], **attributes)
    assert expected in _reasons(discover([folder]))[files[1].name]


def test_missing_position_and_orientation_is_2d_only(series):
    _, files, folder = series
    for path in files:
        _edit(path, ImagePositionPatient=None, ImageOrientationPatient=None)
    found = discover([folder])
    volume = load_stack(found.stacks[0]).volume
    assert volume.geometry_known is False
    assert any("2D images" in w for w in volume.warnings)
    assert volume.shape == (10, 16, 16)


def test_irregular_spacing_reports_maximum_deviation(series):
    _, files, folder = series
    ds = pydicom.dcmread(files[4])
    ds.ImagePositionPatient = [ds.ImagePositionPatient[0], ds.ImagePositionPatient[1],
                               float(ds.ImagePositionPatient[2]) + 0.4]
    ds.save_as(files[4])
    stack = discover([folder]).stacks[0]
    (warning,) = [w for w in stack.warnings if "irregular" in w]
    assert "maximum deviation 0.400 mm" in warning
    assert len(stack.slots) == 10


def test_missing_slice_is_blank_and_distances_stay_right(series):
    volume, files, folder = series
    os.remove(files[5])
    loaded = load_stack(discover([folder]).stacks[0]).volume
    assert any("missing slice(s): 1 between" in w for w in loaded.warnings)
    assert loaded.shape == volume.shape
    assert loaded.spacing[2] == pytest.approx(volume.spacing[2])
    np.testing.assert_array_equal(loaded.voxels[6:], volume.voxels[6:])
    assert np.all(loaded.voxels[5] == -1024)  # air, not a neighbouring slice


def test_duplicate_positions_keep_first_and_name_the_skipped_file(series):
    _, files, folder = series
    ds = pydicom.dcmread(files[2])
    ds.SOPInstanceUID = pydicom.uid.generate_uid()
    ds.save_as(folder / "copy_of_3.dcm")
    found = discover([folder])
    assert "duplicate slice position" in _reasons(found).get("copy_of_3.dcm", "") or \
        "duplicate slice position" in _reasons(found).get(files[2].name, "")
    assert len(found.stacks) == 1 and len(found.stacks[0].slots) == 10
    assert any("duplicate positions" in w for w in found.stacks[0].warnings)


def test_gantry_tilt_warns_with_angle(tmp_path):
    volume = make_ct_volume(shape=(6, 16, 16), spacing=(1.0, 1.0, 2.0))
    files = write_series(volume, tmp_path / "tilt")
    for k, path in enumerate(files):
        ds = pydicom.dcmread(path)
        x, y, z = (float(v) for v in ds.ImagePositionPatient)
        ds.ImagePositionPatient = [x, y + k * 2.0 * np.tan(np.radians(15)), z]
        ds.save_as(path)
    stack = discover([tmp_path / "tilt"]).stacks[0]
    (warning,) = [w for w in stack.warnings if "tilt" in w]
    assert "tilt 15.00 degrees" in warning


def test_one_corrupt_compressed_frame_leaves_the_rest(tmp_path):
    volume = make_ct_volume(shape=(6, 64, 64))
    files = write_series(volume, tmp_path / "j2k", transfer_syntax=JPEG2000Lossless)
    ds = pydicom.dcmread(files[2])
    fragments = bytearray(ds.PixelData)
    fragments[40:80] = b"\x00" * 40  # destroy the codestream header inside the fragment
    ds.PixelData = bytes(fragments)
    ds.save_as(files[2])
    result = load_stack(discover([tmp_path / "j2k"]).stacks[0])
    assert [Path(p.path).name for p in result.problems] == [files[2].name]
    assert "cannot decode" in result.problems[0].reason
    for k in (0, 1, 3, 4, 5):
        np.testing.assert_array_equal(result.volume.voxels[k], volume.voxels[k])
    assert any(files[2].name in w and "blank" in w for w in result.volume.warnings)


def test_markup_and_path_traversal_in_header_strings_stay_literal(series):
    _, files, folder = series
    hostile = "<script>alert(1)</script> & ../../etc/passwd"
    for path in files:
        _edit(path, SeriesDescription=hostile, PatientName="<b>O'Brien</b>^../x")
    before = folder_fingerprint(folder.parent)
    stack = discover([folder]).stacks[0]
    assert stack.description == hostile
    load_stack(stack)
    assert folder_fingerprint(folder.parent) == before  # nothing written anywhere near


def test_unreadable_file_and_directory(series, monkeypatch):
    _, files, folder = series
    (folder / "locked").mkdir()
    (folder / "locked" / "x.dcm").write_bytes(files[0].read_bytes())
    real_scandir = os.scandir
    real_open = open

    def scandir(path="."):
        if Path(path) == folder / "locked":
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    def guarded_open(file, *args, **kwargs):
        if Path(str(file)) == files[7]:
            raise PermissionError(13, "Permission denied", str(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(os, "scandir", scandir)
    monkeypatch.setattr("builtins.open", guarded_open)
    found = discover([folder])
    reasons = {p.path: p.reason for p in found.problems}
    assert "cannot read folder" in reasons[str(folder / "locked")]
    assert reasons[str(files[7])] == "permission denied"
    assert found.stacks[0].frame_count == 9


def test_huge_declared_element_length_does_not_hang(tmp_path, series):
    _, files, folder = series
    data = bytearray(files[0].read_bytes())
    # Declare a 4 GB Patient Comments (LT) value in the middle of the header.
    element = struct.pack("<HH2sHI", 0x0010, 0x4000, b"UN", 0, 0xFFFFFFF0)
    offset = data.index(b"\x10\x00\x10\x00")  # Patient's Name: insert just before it
    data[offset:offset] = element
    files[0].write_bytes(bytes(data))
    found = discover([folder])
    assert _reasons(found)[files[0].name] == (
        "image without Pixel Data (damaged, truncated or header-only file)")
    assert found.stacks[0].frame_count == 9


def test_nothing_loadable_at_all(tmp_path):
    (tmp_path / "a.txt").write_text("hello")
    found = discover([tmp_path])
    assert found.stacks == []
    assert len(found.problems) == 1
