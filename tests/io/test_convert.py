"""Volume <-> SimpleITK / nibabel conversions (radview.io.convert)."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk

from radview.core.volume import Rescale, Volume, VolumeSource
from radview.io.convert import (
    LPS_TO_RAS,
    volume_from_nifti_arrays,
    volume_from_sitk,
    volume_to_nifti,
    volume_to_sitk,
)


def _rotation(ax: float, ay: float, az: float) -> np.ndarray:
    cx, sx, cy, sy, cz, sz = (f(np.deg2rad(a)) for a in (ax, ay, az) for f in (np.cos, np.sin))
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return rz @ ry @ rx


DIRECTIONS = pytest.mark.parametrize(
    "direction",
    [np.eye(3), _rotation(17.0, -23.0, 31.0), _rotation(5.0, 40.0, -60.0) @ np.diag([-1, 1, 1])],
    ids=["identity", "oblique-det+1", "flipped-det-1"],
)
DTYPES = pytest.mark.parametrize(
    "dtype", [np.uint8, np.int8, np.int16, np.uint16, np.int32, np.uint32, np.float32]
)


def _volume(direction: np.ndarray, dtype: type = np.int16) -> Volume:
    voxels = (np.arange(4 * 5 * 6) % 100).reshape(4, 5, 6).astype(dtype)
    return Volume(voxels, spacing=(0.6, 0.9, 2.5), origin=(-10.5, 20.25, 33.0), direction=direction)


ARRAY_POINTS = np.array([[0, 0, 0], [5, 0, 0], [0, 4, 0], [0, 0, 3], [5, 4, 3], [2, 1, 3]])


# ---------------------------------------------------------------------- SimpleITK


@DIRECTIONS
@DTYPES
def test_sitk_round_trip(direction: np.ndarray, dtype: type) -> None:
    original = _volume(direction, dtype)
    back = volume_from_sitk(volume_to_sitk(original))
    assert back.voxels.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(back.voxels, original.voxels)
    assert back.spacing == original.spacing
    assert back.origin == original.origin
    np.testing.assert_array_equal(back.direction, original.direction)


@DIRECTIONS
def test_sitk_image_has_the_same_geometry(direction: np.ndarray) -> None:
    volume = _volume(direction)
    image = volume_to_sitk(volume)
    assert image.GetSize() == volume.size_xyz
    for i, j, k in ARRAY_POINTS:
        index = (int(i), int(j), int(k))
        assert image.GetPixel(index) == volume.voxels[k, j, i]
        np.testing.assert_allclose(
            image.TransformIndexToPhysicalPoint(index), volume.index_to_world(index), atol=1e-12
        )


def test_sitk_image_does_not_share_memory() -> None:
    volume = _volume(np.eye(3))
    image = volume_to_sitk(volume)
    image.SetPixel((0, 0, 0), 123)
    assert volume.voxels[0, 0, 0] == 0


def test_volume_from_sitk_passes_metadata_through() -> None:
    source = VolumeSource("nrrd", paths=("/x.nrrd",), description="x")
    rescale = Rescale(slope=2.0, intercept=1.0, unit="HU")
    volume = volume_from_sitk(
        volume_to_sitk(_volume(np.eye(3))),
        modality="CT",
        rescale=rescale,
        source=source,
        warnings=("w",),
    )
    assert (volume.modality, volume.rescale, volume.source, volume.warnings) == (
        "CT",
        rescale,
        source,
        ("w",),
    )


def test_2d_sitk_image_is_one_slice() -> None:
    image = sitk.GetImageFromArray(np.arange(12, dtype=np.int16).reshape(3, 4))
    image.SetSpacing((0.5, 0.7))
    image.SetOrigin((1.0, 2.0))
    image.SetDirection((0.0, 1.0, 1.0, 0.0))
    volume = volume_from_sitk(image)
    assert volume.shape == (1, 3, 4)
    np.testing.assert_array_equal(volume.voxels[0], np.arange(12).reshape(3, 4))
    assert volume.spacing == (0.5, 0.7, 1.0)
    assert volume.origin == (1.0, 2.0, 0.0)
    np.testing.assert_array_equal(
        volume.direction, [[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]
    )


def test_float64_sitk_image_becomes_float32() -> None:
    values = np.linspace(-1.0, 1.0, 24).reshape(2, 3, 4)
    volume = volume_from_sitk(sitk.GetImageFromArray(values))
    assert volume.voxels.dtype == np.float32
    np.testing.assert_allclose(volume.voxels, values, rtol=1e-7)


def test_int64_sitk_image_is_narrowed_without_changing_values() -> None:
    values = np.arange(-12, 12, dtype=np.int64).reshape(2, 3, 4)
    volume = volume_from_sitk(sitk.GetImageFromArray(values))
    assert volume.voxels.dtype == np.int16
    np.testing.assert_array_equal(volume.voxels, values)


def test_vector_and_4d_sitk_images_are_refused() -> None:
    with pytest.raises(ValueError, match="scalar"):
        volume_from_sitk(sitk.Image([2, 2, 2], sitk.sitkVectorUInt8, 3))
    with pytest.raises(ValueError, match="4 dimensions"):
        volume_from_sitk(sitk.Image([2, 2, 2, 2], sitk.sitkInt16))


# ---------------------------------------------------------------------- nibabel


@DIRECTIONS
def test_nifti_affine_is_the_lps_affine_in_ras(direction: np.ndarray) -> None:
    volume = _volume(direction)
    image = volume_to_nifti(volume)
    ijk = ARRAY_POINTS.astype(float)  # rows of (i, j, k)
    ras = nib.affines.apply_affine(image.affine, ijk)
    # atol: nibabel rounds the affine to the header's float32 numbers.
    np.testing.assert_allclose(ras, volume.index_to_world(ijk) @ LPS_TO_RAS.T, atol=1e-5)
    assert image.shape == volume.size_xyz
    data = np.asarray(image.dataobj)
    for i, j, k in ijk.astype(int):
        assert data[i, j, k] == volume.voxels[k, j, i]


@DIRECTIONS
def test_nifti_sets_both_forms_to_scanner(direction: np.ndarray) -> None:
    header = volume_to_nifti(_volume(direction)).header
    assert int(header["qform_code"]) == 1 and int(header["sform_code"]) == 1
    # The qform stores a quaternion in float32: equal to the sform up to rounding.
    np.testing.assert_allclose(header.get_qform(), header.get_sform(), atol=1e-5)
    assert header.get_xyzt_units() == ("mm", "sec")


@DIRECTIONS
@DTYPES
def test_nifti_arrays_round_trip(direction: np.ndarray, dtype: type) -> None:
    original = _volume(direction, dtype)
    image = volume_to_nifti(original)
    source = VolumeSource("nifti")
    back = volume_from_nifti_arrays(np.asarray(image.dataobj), image.affine, source=source)
    assert back.voxels.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(back.voxels, original.voxels)
    # The image's affine is what its header holds: float32 numbers.
    np.testing.assert_allclose(back.spacing, original.spacing, rtol=1e-6)
    np.testing.assert_allclose(back.origin, original.origin, atol=1e-5)
    np.testing.assert_allclose(back.direction, original.direction, atol=1e-6)
    assert back.source is source


def test_nifti_arrays_from_known_ras_affine() -> None:
    affine = np.array(
        [[-1.0, 0.0, 0.0, 10.0], [0.0, 2.0, 0.0, -20.0], [0.0, 0.0, 3.0, 30.0], [0, 0, 0, 1]]
    )
    data = np.arange(24, dtype=np.int16).reshape(2, 3, 4)
    volume = volume_from_nifti_arrays(data, affine, source=VolumeSource("nifti"))
    assert volume.shape == (4, 3, 2)
    assert volume.spacing == (1.0, 2.0, 3.0)
    assert volume.origin == (-10.0, 20.0, 30.0)
    np.testing.assert_array_equal(volume.direction, np.diag([1.0, -1.0, 1.0]))


@pytest.mark.parametrize("dtype", [">u2", ">i2", ">i4", ">u4", ">f4", ">f8"])
def test_big_endian_arrays_keep_their_type(dtype: str) -> None:
    # Regression: '>u2' used to become int16 (range-based narrowing) instead of uint16.
    data = np.arange(24).reshape(2, 3, 4).astype(dtype)
    volume = volume_from_nifti_arrays(data, np.eye(4), source=VolumeSource("nifti"))
    expected = np.dtype(np.float32) if dtype == ">f8" else np.dtype(dtype).newbyteorder("=")
    assert volume.voxels.dtype == expected
    assert volume.voxels.dtype.isnative
    np.testing.assert_array_equal(volume.voxels, data.transpose(2, 1, 0))
