"""Geometry and voxels agree with independent readers on a real MRI built into DICOM series.

The pixel data are real (Debian's mricron-data ch2.nii.gz, a T1 brain MRI); they are written as
axial and as sagittal DICOM MR series, then read by radview, by SimpleITK/GDCM and by dcm2niix.
Agreement is checked in patient space: a voxel's LPS position in one reader's volume must land on
a voxel centre with the same value in the other's, whatever axis order or flips each reader uses.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from radview.core.volume import Volume
from radview.io.convert import LPS_TO_RAS, volume_from_sitk
from radview.io.dicom_load import load_stack
from radview.io.discover import discover
from radview.io.volume_files import read_volume_file

from .conftest import write_series

CH2 = Path("/usr/share/mricron/templates/ch2.nii.gz")
pytestmark = [
    pytest.mark.external,
    pytest.mark.skipif(not CH2.exists(), reason="Debian package mricron-data not installed"),
]


def _crop(volume: Volume) -> Volume:
    """A 40-slice block of the brain: real anatomy, quick to write and convert."""
    voxels = np.ascontiguousarray(volume.voxels[60:100, 40:180, 30:150]).astype(np.int16)
    origin = volume.index_to_world((30, 40, 60))
    return Volume(voxels, spacing=volume.spacing, origin=tuple(origin),
                  direction=volume.direction, modality="MR")


def _as_sagittal(volume: Volume) -> Volume:
    """The same voxels in the same place, stored as sagittal slices (a det +1 permutation)."""
    nk, nj, ni = volume.shape
    d = volume.direction
    # new i' = old j, new j' = old k reversed, new k' = old i reversed
    voxels = np.ascontiguousarray(volume.voxels[::-1, :, ::-1].transpose(2, 0, 1))
    direction = np.column_stack([d[:, 1], -d[:, 2], -d[:, 0]])
    origin = volume.index_to_world((ni - 1, 0, nk - 1))
    sx, sy, sz = volume.spacing
    return Volume(voxels, spacing=(sy, sz, sx), origin=tuple(origin), direction=direction,
                  modality="MR")


def assert_same_in_patient_space(a: Volume, b: Volume, samples: int = 3000) -> None:
    rng = np.random.default_rng(0)
    size = np.asarray(a.size_xyz)
    ijk = rng.integers(0, size, size=(samples, 3))
    world = a.index_to_world(ijk)
    other = b.world_to_index(world)
    np.testing.assert_allclose(other, np.rint(other), atol=1e-3,
                               err_msg="voxel centres do not coincide")
    other = np.rint(other).astype(int)
    inside = np.all((other >= 0) & (other < np.asarray(b.size_xyz)), axis=1)
    assert inside.all(), "the other reader's volume does not cover the same region"
    values_a = a.voxels[ijk[:, 2], ijk[:, 1], ijk[:, 0]]
    values_b = b.voxels[other[:, 2], other[:, 1], other[:, 0]]
    np.testing.assert_array_equal(values_a, values_b)


@pytest.fixture(scope="module")
def real_mri() -> Volume:
    return _crop(read_volume_file(CH2))


@pytest.fixture(scope="module", params=["axial", "sagittal"])
def mri_series(request, real_mri, tmp_path_factory):
    volume = real_mri if request.param == "axial" else _as_sagittal(real_mri)
    folder = tmp_path_factory.mktemp(request.param) / "dicom"
    write_series(volume, folder, modality="MR", series_description=f"ch2 {request.param}")
    return volume, folder


def test_radview_reads_back_the_real_mri(mri_series):
    expected, folder = mri_series
    found = discover([folder])
    assert found.problems == []
    volume = load_stack(found.stacks[0]).volume
    assert volume.warnings == ()
    assert_same_in_patient_space(volume, expected)
    assert_same_in_patient_space(expected, volume)


def test_agrees_with_simpleitk_gdcm(mri_series):
    _, folder = mri_series
    ours = load_stack(discover([folder]).stacks[0]).volume
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder)))
    theirs = volume_from_sitk(reader.Execute())
    np.testing.assert_allclose(theirs.origin, ours.origin, atol=1e-3)
    np.testing.assert_allclose(theirs.spacing, ours.spacing, atol=1e-4)
    np.testing.assert_allclose(theirs.direction, ours.direction, atol=1e-5)
    np.testing.assert_array_equal(theirs.voxels, ours.voxels)


@pytest.mark.skipif(shutil.which("dcm2niix") is None, reason="Debian package dcm2niix missing")
def test_agrees_with_dcm2niix(mri_series, tmp_path):
    import nibabel as nib

    _, folder = mri_series
    ours = load_stack(discover([folder]).stacks[0]).volume
    subprocess.run(["dcm2niix", "-z", "y", "-b", "n", "-f", "converted", "-o", str(tmp_path),
                    str(folder)], check=True, capture_output=True, timeout=120)
    (converted,) = tmp_path.glob("converted*.nii.gz")
    # Read dcm2niix's output with nibabel directly, not through radview's NIfTI reader, so the
    # comparison does not depend on radview's own RAS/LPS conversion.
    image = nib.load(converted)
    affine_lps = image.affine.copy()
    affine_lps[:3, :] = LPS_TO_RAS @ affine_lps[:3, :]
    data_kji = np.asarray(image.dataobj).transpose(2, 1, 0)
    spacing = np.linalg.norm(affine_lps[:3, :3], axis=0)
    theirs = Volume(np.ascontiguousarray(data_kji).astype(np.int16),
                    spacing=tuple(spacing), origin=tuple(affine_lps[:3, 3]),
                    direction=affine_lps[:3, :3] / spacing)
    assert_same_in_patient_space(ours, theirs)
