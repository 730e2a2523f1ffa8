"""The embedded sample study: files, truth alignment, reproducibility, all-or-nothing output."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from pydicom.pixels import apply_modality_lut

from radview.core.errors import LoadCancelled
from radview.core.phantom import (
    PHANTOM_GENERATOR,
    PHANTOM_VERSION,
    Phantom,
    PhantomLabel,
    make_abdomen_phantom,
)
from radview.core.volume import VolumeSource
from radview.io.convert import volume_from_nifti_arrays
from radview.io.sample_study import (
    SAMPLE_FOV_MM,
    SAMPLE_LENGTH_MM,
    SampleStudyPaths,
    write_sample_study,
)

SMALL = {"matrix": 96, "slices": 20, "seed": 5}


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> SampleStudyPaths:
    return write_sample_study(tmp_path_factory.mktemp("sample"), **SMALL)


@pytest.fixture(scope="module")
def phantom() -> Phantom:
    return make_abdomen_phantom(
        matrix=96,
        slices=20,
        seed=5,
        pixel_spacing=SAMPLE_FOV_MM / 96,
        slice_thickness=SAMPLE_LENGTH_MM / 20,
    )


def _read_series(folder: Path) -> sitk.Image:
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder)))
    return reader.Execute()


def test_layout(sample: SampleStudyPaths) -> None:
    assert sample.dicom_dir == sample.root / "dicom"
    assert [p.name for p in sample.dicom_files] == [f"IM{k:04d}.dcm" for k in range(1, 21)]
    assert sorted(p.name for p in sample.dicom_dir.iterdir()) == [
        p.name for p in sample.dicom_files
    ]
    assert sample.labels_nifti == sample.root / "truth" / "labels.nii.gz"
    assert sample.lesions_json == sample.root / "truth" / "lesions.json"
    # no temporary or staging leftovers
    assert sorted(p.name for p in sample.root.iterdir()) == ["dicom", "truth"]
    assert sorted(p.name for p in (sample.root / "truth").iterdir()) == [
        "labels.nii.gz",
        "lesions.json",
    ]


def test_dicom_holds_the_phantom_in_hu(sample: SampleStudyPaths, phantom: Phantom) -> None:
    for k, path in enumerate(sample.dicom_files):
        ds = pydicom.dcmread(path)
        assert np.array_equal(apply_modality_lut(ds.pixel_array, ds), phantom.ct.voxels[k])
    ds = pydicom.dcmread(sample.dicom_files[0])
    assert ds.Modality == "CT"
    assert "SYNTHETIC" in str(ds.PatientName).upper()
    assert "SYNTHETIC" in ds.StudyDescription.upper()
    assert ds.BodyPartExamined == "ABDOMEN"


def test_labels_are_aligned_with_the_dicom_series(
    sample: SampleStudyPaths, phantom: Phantom
) -> None:
    series = _read_series(sample.dicom_dir)
    image = nib.load(sample.labels_nifti)
    labels = volume_from_nifti_arrays(
        np.asarray(image.dataobj), image.affine, source=VolumeSource("nifti")
    )
    assert np.allclose(labels.origin, series.GetOrigin(), atol=1e-3)
    assert np.allclose(labels.spacing, series.GetSpacing(), atol=1e-4)
    assert np.allclose(labels.direction.ravel(), series.GetDirection(), atol=1e-6)
    assert labels.voxels.dtype == np.uint8
    assert np.array_equal(labels.voxels, phantom.labels.voxels)
    hu = sitk.GetArrayFromImage(series)
    assert 45.0 < float(hu[labels.voxels == PhantomLabel.LIVER].mean()) < 75.0


def test_lesions_json_matches_the_phantom(sample: SampleStudyPaths, phantom: Phantom) -> None:
    document = json.loads(sample.lesions_json.read_text(encoding="utf-8"))
    assert document["generator"] == PHANTOM_GENERATOR
    assert document["generator_version"] == PHANTOM_VERSION
    assert document["seed"] == 5
    assert document["labels"] == {"background": 0, "liver": 1, "tumour": 2}
    assert len(document["lesions"]) == len(phantom.lesions) >= 2
    for record, truth in zip(document["lesions"], phantom.lesions, strict=True):
        assert record["id"] == truth.id
        assert tuple(record["centre_lps_mm"]) == truth.centre_lps_mm
        assert tuple(record["diameters_mm"]) == truth.diameters_mm
        dx, dy, dz = truth.diameters_mm
        assert record["volume_ml"] == pytest.approx(np.pi / 6 * dx * dy * dz / 1000, abs=1e-4)
        assert record["mean_hu"] == truth.mean_hu


def test_same_seed_writes_identical_files(sample: SampleStudyPaths, tmp_path: Path) -> None:
    again = write_sample_study(tmp_path, **SMALL)
    for mine, theirs in zip(sample.dicom_files, again.dicom_files, strict=True):
        assert mine.read_bytes() == theirs.read_bytes()
    assert sample.labels_nifti.read_bytes() == again.labels_nifti.read_bytes()
    assert sample.lesions_json.read_bytes() == again.lesions_json.read_bytes()


def test_other_seed_gets_other_uids(sample: SampleStudyPaths, tmp_path: Path) -> None:
    other = write_sample_study(tmp_path, **{**SMALL, "seed": 6})
    mine = pydicom.dcmread(sample.dicom_files[0])
    theirs = pydicom.dcmread(other.dicom_files[0])
    assert mine.StudyInstanceUID != theirs.StudyInstanceUID
    assert mine.SOPInstanceUID != theirs.SOPInstanceUID


def test_progress_runs_to_the_total(tmp_path: Path) -> None:
    calls: list[tuple[int, int]] = []
    write_sample_study(tmp_path, matrix=32, slices=4, progress=lambda d, t: calls.append((d, t)))
    assert calls[-1] == (6, 6)
    assert [done for done, _ in calls] == sorted(done for done, _ in calls)


def test_refuses_a_non_empty_dicom_folder(tmp_path: Path) -> None:
    (tmp_path / "dicom").mkdir()
    (tmp_path / "dicom" / "mine.dcm").write_bytes(b"")
    with pytest.raises(FileExistsError, match="dicom"):
        write_sample_study(tmp_path, matrix=32, slices=4)
    assert [p.name for p in (tmp_path / "dicom").iterdir()] == ["mine.dcm"]


def test_cancel_leaves_nothing_behind(tmp_path: Path) -> None:
    polls = iter([False, False, True])
    with pytest.raises(LoadCancelled):
        write_sample_study(tmp_path, matrix=32, slices=4, cancel=lambda: next(polls))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.external
@pytest.mark.skipif(not Path("/usr/bin/dciodvfy").exists(), reason="dciodvfy not installed")
def test_sample_files_pass_dciodvfy_cleanly(sample: SampleStudyPaths) -> None:
    result = subprocess.run(
        ["/usr/bin/dciodvfy", str(sample.dicom_files[0])],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    lines = (result.stdout + result.stderr).splitlines()
    assert any(line.strip() == "CTImage" for line in lines), lines
    # The sample sets Body Part Examined, so not even a warning is expected.
    assert [line for line in lines if line.startswith(("Error", "Warning"))] == []
