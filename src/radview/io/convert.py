"""Named conversions between :class:`~radview.core.Volume` and SimpleITK / nibabel images.

SimpleITK already works in LPS with the same ``(x, y, z)`` conventions as Volume, so that
conversion only reorders nothing but the metadata. nibabel works in RAS+ with array axes
``(i, j, k)``, so converting flips the sign of the first two world axes and transposes the array.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from radview.core.volume import ALLOWED_VOXEL_TYPES, Rescale, Volume, VolumeSource

if TYPE_CHECKING:  # imported lazily: both are heavy and not needed for DICOM display
    import nibabel
    import SimpleITK

__all__ = [
    "LPS_TO_RAS",
    "volume_to_sitk",
    "volume_from_sitk",
    "volume_to_nifti",
    "volume_from_nifti_arrays",
]

#: Multiplying an LPS point by this gives RAS (and vice versa): x and y change sign.
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0])


def volume_to_sitk(volume: Volume) -> SimpleITK.Image:
    """A SimpleITK image sharing nothing with ``volume`` (SimpleITK copies the buffer)."""
    import SimpleITK as sitk

    image = sitk.GetImageFromArray(np.ascontiguousarray(volume.voxels), isVector=False)
    image.SetSpacing(volume.spacing)
    image.SetOrigin(volume.origin)
    image.SetDirection(tuple(float(v) for v in volume.direction.ravel()))
    return image


def volume_from_sitk(
    image: SimpleITK.Image,
    *,
    modality: str = "",
    rescale: Rescale | None = None,
    source: VolumeSource | None = None,
    warnings: tuple[str, ...] = (),
) -> Volume:
    """Volume from a scalar 3D (or 2D, as one slice) SimpleITK image, keeping its voxel type.

    float64 images are narrowed to float32 (Volume never holds float64).
    """
    import SimpleITK as sitk

    if image.GetNumberOfComponentsPerPixel() != 1:
        raise ValueError("only scalar images can become a Volume")
    if image.GetDimension() == 2:
        image = sitk.JoinSeries(image)
    if image.GetDimension() != 3:
        raise ValueError(f"a Volume is 3D, the image has {image.GetDimension()} dimensions")
    voxels = sitk.GetArrayFromImage(image)
    voxels = _narrow(voxels)
    return Volume(
        voxels=voxels,
        spacing=tuple(image.GetSpacing()),
        origin=tuple(image.GetOrigin()),
        direction=np.asarray(image.GetDirection(), dtype=np.float64).reshape(3, 3),
        modality=modality,
        rescale=rescale or Rescale(),
        source=source or VolumeSource("synthetic"),
        warnings=warnings,
    )


def volume_to_nifti(volume: Volume) -> nibabel.Nifti1Image:
    """A NIfTI-1 image (RAS+ affine, array axes i, j, k) with qform and sform both set.

    Both codes are NIFTI_XFORM_SCANNER_ANAT (1): the geometry is the scanner's patient frame.
    """
    import nibabel as nib

    affine = volume.affine.copy()
    affine[:3, :] = LPS_TO_RAS @ affine[:3, :]
    data = np.ascontiguousarray(volume.voxels.transpose(2, 1, 0))
    image = nib.Nifti1Image(data, affine)
    image.set_qform(affine, code=1)
    image.set_sform(affine, code=1)
    image.header.set_xyzt_units("mm", "sec")
    return image


def volume_from_nifti_arrays(
    data_ijk: np.ndarray,
    affine_ras: np.ndarray,
    *,
    source: VolumeSource,
    modality: str = "",
    rescale: Rescale | None = None,
    warnings: tuple[str, ...] = (),
) -> Volume:
    """Volume from a NIfTI-style array ``[i, j, k]`` and a 4x4 RAS+ affine.

    The affine must already be validated (orthonormal axes, positive finite spacing);
    ``radview.io.volume_files`` does that and raises the user-facing errors.
    """
    affine_lps = np.asarray(affine_ras, dtype=np.float64).copy()
    affine_lps[:3, :] = LPS_TO_RAS @ affine_lps[:3, :]
    linear = affine_lps[:3, :3]
    spacing = np.linalg.norm(linear, axis=0)
    direction = linear / spacing[None, :]
    # Narrow first: a float64 file would otherwise be copied at full size before becoming
    # float32 (2.5x the volume's memory at the peak instead of 1.5x).
    voxels = np.ascontiguousarray(_narrow(data_ijk).transpose(2, 1, 0))
    return Volume(
        voxels=voxels,
        spacing=tuple(float(s) for s in spacing),
        origin=tuple(float(o) for o in affine_lps[:3, 3]),
        direction=direction,
        modality=modality,
        rescale=rescale or Rescale(),
        source=source,
        warnings=warnings,
    )


def _narrow(voxels: np.ndarray) -> np.ndarray:
    """Cast to a type Volume accepts: float64 -> float32, int64 -> int32 when it fits."""
    if not voxels.dtype.isnative:
        # A big-endian '>u2' is not in ALLOWED_VOXEL_TYPES and would otherwise fall through to
        # the range-based narrowing below and change type (uint16 -> int16) with the data.
        voxels = voxels.astype(voxels.dtype.newbyteorder("="))
    if voxels.dtype in ALLOWED_VOXEL_TYPES:
        return voxels
    if voxels.dtype.kind == "f":
        return voxels.astype(np.float32)
    if voxels.dtype == np.bool_:
        return voxels.astype(np.uint8)
    if voxels.dtype.kind in "iu":
        lo, hi = (int(voxels.min()), int(voxels.max())) if voxels.size else (0, 0)
        for candidate in (np.int16, np.uint16, np.int32, np.uint32):
            info = np.iinfo(candidate)
            if info.min <= lo and hi <= info.max:
                return voxels.astype(candidate)
        return voxels.astype(np.float32)
    raise TypeError(f"voxel type {voxels.dtype} cannot be shown")
