"""write_dicom_series: geometry, pixel round trips for every syntax, peers and a validator."""

from __future__ import annotations

import shutil
import subprocess
from datetime import datetime
from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from pydicom.pixels import apply_modality_lut
from pydicom.uid import (
    UID,
    CTImageStorage,
    ExplicitVRLittleEndian,
    JPEGBaseline8Bit,
    JPEGLosslessSV1,
    MRImageStorage,
)

from radview.core.errors import LoadCancelled
from radview.core.volume import Volume
from radview.io.dicom_write import (
    unavailable_transfer_syntaxes,
    writable_transfer_syntaxes,
    write_dicom_series,
)

DCIODVFY = Path("/usr/bin/dciodvfy")
FIXED_TIME = datetime(2001, 2, 3, 4, 5, 6)


def _rotation(axis: np.ndarray, angle_deg: float) -> np.ndarray:
    """Rodrigues' rotation matrix (a proper rotation keeps the series right-handed)."""
    axis = axis / np.linalg.norm(axis)
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    angle = np.radians(angle_deg)
    return np.eye(3) + np.sin(angle) * k + (1 - np.cos(angle)) * k @ k


def _hu_volume(direction: np.ndarray | None = None) -> Volume:
    rng = np.random.default_rng(7)
    voxels = rng.integers(-1024, 3000, size=(6, 40, 32)).astype(np.int16)
    return Volume(
        voxels=voxels,
        spacing=(0.7, 0.9, 2.5),
        origin=(-12.5, 30.25, -100.0),
        direction=np.eye(3) if direction is None else direction,
        modality="CT",
    )


@pytest.fixture(scope="module")
def axial() -> Volume:
    return _hu_volume()


@pytest.fixture(scope="module")
def oblique() -> Volume:
    return _hu_volume(_rotation(np.array([1.0, 0.3, 0.2]), 25.0))


def _read(paths: list[Path]) -> list[pydicom.Dataset]:
    return [pydicom.dcmread(path) for path in paths]


@pytest.mark.parametrize("volume_name", ["axial", "oblique"])
def test_geometry_and_hu_read_back_with_pydicom(
    volume_name: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    volume: Volume = request.getfixturevalue(volume_name)
    paths = write_dicom_series(volume, tmp_path / "series")
    assert [p.name for p in paths] == [f"IM{k:04d}.dcm" for k in range(1, 7)]
    datasets = _read(paths)
    for k, ds in enumerate(datasets):
        assert ds.file_meta.MediaStorageSOPClassUID == CTImageStorage
        assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
        assert ds.InstanceNumber == k + 1
        expected_position = volume.index_to_world((0, 0, k))
        assert np.allclose(
            [float(v) for v in ds.ImagePositionPatient], expected_position, atol=1e-4
        )
        orientation = [float(v) for v in ds.ImageOrientationPatient]
        assert np.allclose(orientation[:3], volume.direction[:, 0], atol=1e-6)
        assert np.allclose(orientation[3:], volume.direction[:, 1], atol=1e-6)
        assert [float(v) for v in ds.PixelSpacing] == [0.9, 0.7]  # [row, column] spacing
        assert float(ds.SliceThickness) == float(ds.SpacingBetweenSlices) == 2.5
        hu = apply_modality_lut(ds.pixel_array, ds)
        assert np.array_equal(hu, volume.voxels[k])
    uids = {ds.SOPInstanceUID for ds in datasets}
    assert len(uids) == len(datasets)
    assert all(UID(uid).is_valid for uid in uids)
    assert len({ds.SeriesInstanceUID for ds in datasets}) == 1
    assert len({ds.FrameOfReferenceUID for ds in datasets}) == 1


@pytest.mark.parametrize("syntax", writable_transfer_syntaxes(), ids=lambda uid: uid.name)
def test_every_writable_syntax_round_trips_losslessly(
    syntax: UID, axial: Volume, tmp_path: Path
) -> None:
    paths = write_dicom_series(axial, tmp_path, transfer_syntax=syntax)
    for k, ds in enumerate(_read(paths)):
        assert ds.file_meta.TransferSyntaxUID == syntax
        stored = axial.voxels[k].astype(np.int32) + 1024  # default CT intercept is -1024
        assert (ds.pixel_array.dtype.kind, ds.pixel_array.dtype.itemsize) == ("i", 2)
        assert np.array_equal(ds.pixel_array, stored)


def test_the_core_syntaxes_are_writable() -> None:
    writable = set(writable_transfer_syntaxes())
    assert ExplicitVRLittleEndian in writable
    assert len(writable) >= 6  # four native + RLE + JPEG 2000 with the pinned dependencies


@pytest.mark.parametrize(
    "syntax",
    [*unavailable_transfer_syntaxes(), JPEGBaseline8Bit],
    ids=lambda uid: UID(uid).name,
)
def test_unwritable_syntax_is_refused_with_the_list(
    syntax: UID, axial: Volume, tmp_path: Path
) -> None:
    with pytest.raises(ValueError, match="writable here: Explicit VR Little Endian"):
        write_dicom_series(axial, tmp_path / "out", transfer_syntax=syntax)
    assert not (tmp_path / "out").exists()


def test_jpeg_lossless_sv1_is_reported_without_encoder() -> None:
    assert "no encoder" in unavailable_transfer_syntaxes()[JPEGLosslessSV1]


@pytest.mark.parametrize("volume_name", ["axial", "oblique"])
def test_simpleitk_series_reader_sees_the_same_volume(
    volume_name: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    volume: Volume = request.getfixturevalue(volume_name)
    write_dicom_series(volume, tmp_path)
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(tmp_path)))
    image = reader.Execute()
    assert np.allclose(image.GetOrigin(), volume.origin, atol=1e-4)
    assert np.allclose(image.GetSpacing(), volume.spacing, atol=1e-4)
    assert np.allclose(np.reshape(image.GetDirection(), (3, 3)), volume.direction, atol=1e-5)
    assert np.array_equal(sitk.GetArrayFromImage(image), volume.voxels)


def test_unsigned_12_bit_storage(axial: Volume, tmp_path: Path) -> None:
    paths = write_dicom_series(axial, tmp_path, stored_dtype=np.uint16)
    ds = pydicom.dcmread(paths[0])
    assert (ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation) == (16, 12, 11, 0)
    assert np.array_equal(apply_modality_lut(ds.pixel_array, ds), axial.voxels[0])


def test_float_volume_with_slope_round_trips(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    values = (rng.integers(-2000, 2000, size=(2, 16, 16)) * 0.5).astype(np.float32)
    volume = Volume(values, spacing=(1.0, 1.0, 3.0), modality="CT")
    paths = write_dicom_series(volume, tmp_path, rescale_slope=0.5, rescale_intercept=0.0)
    for k, ds in enumerate(_read(paths)):
        assert np.array_equal(apply_modality_lut(ds.pixel_array, ds), values[k])


def test_values_that_do_not_fit_are_refused(tmp_path: Path) -> None:
    voxels = np.zeros((1, 4, 4), np.int16)
    voxels[0, 0, 0] = 32000  # + 1024 overflows int16
    with pytest.raises(ValueError, match="do not fit int16"):
        write_dicom_series(Volume(voxels), tmp_path)
    with pytest.raises(ValueError, match="do not fit uint16"):
        write_dicom_series(Volume(voxels - 2000), tmp_path, stored_dtype=np.uint16)


def test_mr_series_uses_mr_image_storage(axial: Volume, tmp_path: Path) -> None:
    paths = write_dicom_series(axial, tmp_path, modality="MR", rescale_intercept=-1024.0)
    ds = pydicom.dcmread(paths[0])
    assert ds.SOPClassUID == MRImageStorage
    assert ds.Modality == "MR"
    assert np.array_equal(apply_modality_lut(ds.pixel_array, ds), axial.voxels[0])


def test_unknown_modality_is_refused(axial: Volume, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="supported: CT, MR"):
        write_dicom_series(axial, tmp_path, modality="PT")


def test_seeded_output_is_byte_identical(axial: Volume, tmp_path: Path) -> None:
    options = {"uid_seed": "test-seed", "study_datetime": FIXED_TIME}
    first = write_dicom_series(axial, tmp_path / "a", **options)
    second = write_dicom_series(axial, tmp_path / "b", **options)
    assert [p.read_bytes() for p in first] == [p.read_bytes() for p in second]
    other = write_dicom_series(axial, tmp_path / "c", uid_seed="other", study_datetime=FIXED_TIME)
    assert pydicom.dcmread(other[0]).StudyInstanceUID != pydicom.dcmread(first[0]).StudyInstanceUID


def test_given_uids_and_header_strings_are_used(axial: Volume, tmp_path: Path) -> None:
    paths = write_dicom_series(
        axial,
        tmp_path,
        patient_name="Test^Patient",
        patient_id="P1",
        study_uid="1.2.3.4",
        series_uid="1.2.3.4.5",
        series_description="Series",
        study_description="Study",
        extra_attributes={"BodyPartExamined": "ABDOMEN"},
    )
    ds = pydicom.dcmread(paths[-1])
    assert (ds.PatientName, ds.PatientID) == ("Test^Patient", "P1")
    assert (ds.StudyInstanceUID, ds.SeriesInstanceUID) == ("1.2.3.4", "1.2.3.4.5")
    assert (ds.StudyDescription, ds.SeriesDescription) == ("Study", "Series")
    assert ds.BodyPartExamined == "ABDOMEN"


def test_unknown_extra_keyword_is_refused(axial: Volume, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not a DICOM keyword"):
        write_dicom_series(axial, tmp_path, extra_attributes={"NoSuchKeyword": "x"})


@pytest.mark.parametrize("pattern", ["sub/IM{index}.dcm", "IM.dcm", ".IM{index}"])
def test_bad_file_name_patterns_are_refused(pattern: str, axial: Volume, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="file_name_pattern"):
        write_dicom_series(axial, tmp_path, file_name_pattern=pattern)


def test_progress_reports_every_file(axial: Volume, tmp_path: Path) -> None:
    calls: list[tuple[int, int]] = []
    write_dicom_series(axial, tmp_path, progress=lambda done, total: calls.append((done, total)))
    assert calls == [(k, 6) for k in range(1, 7)]


def test_cancel_removes_partial_output_and_the_created_folder(
    axial: Volume, tmp_path: Path
) -> None:
    polls = iter([False, False, False, True])
    folder = tmp_path / "new"
    with pytest.raises(LoadCancelled):
        write_dicom_series(axial, folder, cancel=lambda: next(polls))
    assert not folder.exists()


def test_cancel_keeps_files_it_did_not_write(axial: Volume, tmp_path: Path) -> None:
    keep = tmp_path / "notes.txt"
    keep.write_text("not ours")
    polls = iter([False, False, True])
    with pytest.raises(LoadCancelled):
        write_dicom_series(axial, tmp_path, cancel=lambda: next(polls))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def _dciodvfy(path: Path) -> list[str]:
    result = subprocess.run(
        [str(DCIODVFY), str(path)], capture_output=True, text=True, timeout=60, check=False
    )
    return (result.stdout + result.stderr).splitlines()


@pytest.mark.external
@pytest.mark.skipif(not DCIODVFY.exists(), reason="dciodvfy (Debian dicom3tools) not installed")
@pytest.mark.parametrize(
    ("modality", "options"),
    [
        ("CT", {}),
        ("CT", {"stored_dtype": np.uint16, "body_part_examined": "ABDOMEN"}),
        ("MR", {}),
    ],
)
def test_dciodvfy_finds_no_errors(
    modality: str, options: dict[str, object], axial: Volume, tmp_path: Path
) -> None:
    paths = write_dicom_series(axial, tmp_path, modality=modality, **options)  # type: ignore[arg-type]
    lines = _dciodvfy(paths[0])
    assert lines, "dciodvfy printed nothing"
    assert [line for line in lines if line.startswith("Error")] == []


@pytest.mark.external
@pytest.mark.skipif(shutil.which("dcmdump") is None, reason="dcmdump (Debian dcmtk) not installed")
def test_dcmtk_parses_every_writable_syntax(axial: Volume, tmp_path: Path) -> None:
    # dicom3tools cannot parse deflated files, so an independent toolkit checks all syntaxes.
    for syntax in writable_transfer_syntaxes():
        folder = tmp_path / syntax.replace(".", "_")
        paths = write_dicom_series(axial, folder, transfer_syntax=syntax)
        result = subprocess.run(
            ["dcmdump", str(paths[0])],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 0, (syntax.name, result.stderr)
        assert "E:" not in result.stderr, (syntax.name, result.stderr)


def test_cancel_keeps_files_that_were_already_there(tmp_path):
    from radview.core.errors import LoadCancelled
    from tests.io.conftest import folder_fingerprint, make_ct_volume, write_series

    write_series(make_ct_volume(shape=(4, 16, 16), seed=1), tmp_path / "s")
    before = folder_fingerprint(tmp_path / "s")
    calls = iter([False, False, True])
    with pytest.raises(LoadCancelled):
        write_series(make_ct_volume(shape=(4, 16, 16), seed=2), tmp_path / "s",
                     cancel=lambda: next(calls))
    assert folder_fingerprint(tmp_path / "s") == before  # the earlier series is untouched
