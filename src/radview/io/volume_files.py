"""Read NIfTI, NRRD and MetaImage volume files into a :class:`~radview.core.Volume` (LPS).

``.nii`` / ``.nii.gz`` (NIfTI-1 and NIfTI-2, single file) are read with nibabel's header and
array-proxy classes; ``.nrrd`` / ``.nhdr`` (NRRD) and ``.mha`` / ``.mhd`` (MetaImage) with
SimpleITK, whose geometry is LPS already. Files are only opened for reading.

NIfTI geometry policy
---------------------
1. ``sform_code > 0``: the sform (``srow_x/y/z``) is used. FSL, SPM, nibabel, MRIcron and
   dcm2niix treat it as the authoritative transform, and it can hold any rotation at full float32
   precision. When ``qform_code > 0`` as well and the two transforms put some corner voxel of the
   image more than 0.01 mm apart, a warning gives the largest distance in mm. It is reported, not
   resolved silently, because readers disagree here: ITK/SimpleITK sometimes take the qform (for
   Debian mricron-data's ``AICHAmc.nii.gz`` the two choices are up to 145 mm apart).
2. Else ``qform_code > 0``: the qform (quaternion, ``pixdim[1:4]``, ``qfac = pixdim[0]``,
   ``qoffset``). A ``qfac`` other than -1 counts as 1, as the NIfTI standard says.
3. Else (both codes 0, an "Analyze"-style file): spacing ``pixdim[1:4]``, origin 0 and the array
   axes i, j, k taken as L, P, S, so the array is shown as stored (SimpleITK does the same), with
   a warning that the orientation is unknown.

The transform chosen is never swapped for the other one when it is broken; the file is refused:

* NaN or infinity in it, an axis of zero length, a ``pixdim`` <= 0 used by the qform or the
  Analyze fallback, or axes so nearly parallel that the 3x3 is singular:
  ``DegenerateAffineError``.
* Shear, i.e. two axes whose angle has ``|cos| > 1e-3``: ``NonOrthonormalAffineError``. Below
  that tolerance the axes are made exactly perpendicular (nearest rotation or reflection), with a
  warning when that moves some corner voxel by more than 0.01 mm.

Reflections (determinant -1: ``qfac = -1``, an sform with one axis flipped) are legal and kept.
An axis of one voxel with zero length (2D images often have ``pixdim[3] = 0``) gets 1 mm along
the normal of the other two axes. Spatial units of metres or microns are converted to mm (as ITK
does); unknown units are taken as mm. The RAS+ result is converted to LPS by negating x and y.

NIfTI voxel policy
------------------
* Voxels keep the stored type (uint8, int8, int16, uint16, int32, uint32, float32), read
  unscaled (an ``ArrayProxy`` with slope 1 and intercept 0, as ``get_unscaled`` would).
* Scaling follows the NIfTI standard: ``scl_slope`` 0 or not finite means no scaling (the
  intercept is then ignored); a NaN ``scl_inter`` counts as 0; slope 1 with intercept 0 is no
  scaling. Any other pair gives float32 voxels ``slope * stored + inter``, recorded in
  ``Volume.rescale``. An infinite intercept with a valid slope is refused.
* float64 becomes float32; int64/uint64 become the smallest 16/32-bit type that holds the values
  and are refused when the values do not fit in 32 bits. RGB, RGBA, complex, binary and float128
  are refused with ``UnsupportedVolumeFileError`` naming the type.
* A 2D image becomes one slice. A 4D image gives its first volume, with a warning saying how many
  volumes were ignored (so a 4D series can still be looked at); images with more than one value
  per voxel in dimensions 5 to 7 (vectors, tensors) are refused.

NRRD and MetaImage
------------------
SimpleITK reads them (LPS). The same geometry checks apply: ITK accepts sheared headers and
normalises their columns, so its direction is checked for perpendicular axes. Multi-component
pixels (RGB, vectors, complex, NRRD ``list`` axes) are refused. A NRRD without a ``space`` field
gets a warning that its orientation is unknown. A MetaImage ``Modality`` of CT, MR, NM or US
becomes ``Volume.modality``; otherwise the modality is ``""``. 2D and 4D as for NIfTI.

Damaged files
-------------
Every failure is a :class:`~radview.core.errors.InputFileError` subclass with one line naming the
file. A gzip stream is read to its end so that its CRC is checked (nibabel alone stops reading
where the data ends, so a damaged stream could show wrong voxels without any error). Data ending
early gives ``TruncatedFileError``; anything else unreadable gives ``UnsupportedVolumeFileError``.
"""

from __future__ import annotations

import gzip
import itertools
import math
import re
import zlib
from pathlib import Path
from typing import IO, TYPE_CHECKING

import numpy as np

from radview.core.errors import (
    DegenerateAffineError,
    ImageTooLargeError,
    InputFileError,
    NonOrthonormalAffineError,
    TruncatedFileError,
    UnsupportedVolumeFileError,
)
from radview.core.volume import Rescale, Volume, VolumeSource
from radview.io.convert import volume_from_nifti_arrays, volume_from_sitk

if TYPE_CHECKING:
    import SimpleITK

__all__ = [
    "VOLUME_FILE_SUFFIXES",
    "MAX_VOLUME_BYTES",
    "is_volume_file",
    "read_volume_file",
]

#: File name endings this module reads, lower case, longest first so ``.nii.gz`` wins over ``.gz``.
VOLUME_FILE_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd")

_KIND_BY_SUFFIX = {
    ".nii.gz": "nifti",
    ".nii": "nifti",
    ".nrrd": "nrrd",
    ".nhdr": "nrrd",
    ".mha": "metaimage",
    ".mhd": "metaimage",
}

#: Largest voxel array (bytes, as it will be held in memory) a file may declare. Refused before
#: allocation so a corrupt header cannot make the workstation swap.
MAX_VOLUME_BYTES = 8 * 2**30

#: Largest |cos| of the angle between two axes that still counts as perpendicular (0.06 deg).
_SHEAR_TOLERANCE = 1e-3
#: Geometry differences below this (at any corner voxel) are float32 rounding, not worth a warning.
_POSITION_TOLERANCE_MM = 0.01
#: An axis shorter than this is "zero length" (no real image has sub-nanometre voxels).
_MIN_SPACING_MM = 1e-6

_MM_PER_UNIT = {"meter": 1000.0, "mm": 1.0, "micron": 0.001, "unknown": 1.0}

_GZIP_MAGIC = b"\x1f\x8b"
_READ_CHUNK = 16 * 2**20


def is_volume_file(path: str | Path) -> bool:
    """True when the file name ends in a suffix :func:`read_volume_file` reads.

    Only the name is looked at (case-insensitive); the file need not exist.
    """
    return _kind_of(Path(path)) is not None


def read_volume_file(path: str | Path) -> Volume:
    """Read a NIfTI, NRRD or MetaImage file into a Volume in LPS coordinates.

    See the module docstring for the geometry and voxel-type policy.

    Parameters
    ----------
    path
        A ``.nii``, ``.nii.gz``, ``.nrrd``, ``.nhdr``, ``.mha`` or ``.mhd`` file.

    Returns
    -------
    Volume
        ``source.kind`` is ``"nifti"``, ``"nrrd"`` or ``"metaimage"``; ``warnings`` lists what
        the reader had to assume or ignore.

    Raises
    ------
    InputFileError
        The file does not exist or cannot be opened.
    UnsupportedVolumeFileError
        Not a readable file of its format, an unsupported voxel type or dimensionality.
    TruncatedFileError
        The file ends before the data its header declares.
    NonOrthonormalAffineError
        The geometry has shear.
    DegenerateAffineError
        The geometry is singular, non-finite or has a zero spacing.
    ImageTooLargeError
        The header declares more than :data:`MAX_VOLUME_BYTES` of voxels.
    """
    path = Path(path)
    kind = _kind_of(path)
    if kind is None:
        raise UnsupportedVolumeFileError(
            path, f"not a volume file name (expected one of {', '.join(VOLUME_FILE_SUFFIXES)})"
        )
    if not path.exists():
        raise InputFileError(path, "no such file")
    if not path.is_file():
        raise InputFileError(path, "not a regular file")
    source = VolumeSource(kind=kind, paths=(str(path),), description=path.name)
    if kind == "nifti":
        return _read_nifti(path, source)
    return _read_with_sitk(path, source)


def _kind_of(path: Path) -> str | None:
    name = path.name.lower()
    for suffix in VOLUME_FILE_SUFFIXES:
        if name.endswith(suffix):
            return _KIND_BY_SUFFIX[suffix]
    return None


# ====================================================================== NIfTI


def _read_nifti(path: Path, source: VolumeSource) -> Volume:
    try:
        raw = path.open("rb")
    except OSError as error:
        raise InputFileError(path, f"cannot be opened: {error.strerror or error}") from error
    with raw:
        compressed = raw.read(2) == _GZIP_MAGIC
        raw.seek(0)
        # Sniffing the content rather than trusting ".gz" also reads a misnamed plain file.
        stream: IO[bytes] = gzip.GzipFile(fileobj=raw, mode="rb") if compressed else raw
        try:
            with stream:
                return _read_nifti_stream(path, stream, compressed, source)
        except EOFError as error:
            raise TruncatedFileError(path, "the gzip stream ends early (file truncated)") from error
        except (gzip.BadGzipFile, zlib.error) as error:
            raise UnsupportedVolumeFileError(path, f"damaged gzip data ({error})") from error
        except OSError as error:
            # nibabel's array reader says "Expected N bytes, got M bytes" on short files.
            if "Expected" in str(error):
                raise TruncatedFileError(path, _first_line(error)) from error
            raise UnsupportedVolumeFileError(path, f"read error: {_first_line(error)}") from error


def _read_nifti_stream(
    path: Path, stream: IO[bytes], compressed: bool, source: VolumeSource
) -> Volume:
    from nibabel.arrayproxy import ArrayProxy

    header = _nifti_header(path, stream)
    shape, first_volume_slicer, warnings = _nifti_shape(path, header)
    dtype = _nifti_dtype(path, header)
    rescale, scaled = _nifti_rescale(path, header)
    spatial_shape = shape[:3] if len(shape) >= 3 else (*shape, 1)

    out_itemsize = 4 if scaled else min(dtype.itemsize, 4)
    _check_size(path, spatial_shape, out_itemsize, dtype.itemsize)
    affine_ras, geometry_warnings = _nifti_affine(path, header, spatial_shape)
    warnings += geometry_warnings

    offset = int(header.get_data_offset())
    data_end = offset + math.prod(shape) * dtype.itemsize
    if not compressed:
        file_size = path.stat().st_size
        if file_size < data_end:
            raise TruncatedFileError(
                path, f"the header declares {data_end} bytes but the file has {file_size}"
            )
    # Our own proxy without scaling: nibabel's image loader would apply scl_slope itself and
    # (with check=True) silently turn zero/negative pixdims into 1 or abs values.
    proxy = ArrayProxy(stream, (shape, dtype, offset), mmap=False)
    data = np.asarray(proxy[first_volume_slicer])
    if compressed:
        # Read to the end of the gzip stream: only there does gzip compare its CRC.
        while stream.read(_READ_CHUNK):
            pass
        if stream.tell() < data_end:
            raise TruncatedFileError(
                path, f"the header declares {data_end} bytes but the data has {stream.tell()}"
            )
    if data.ndim == 2:
        data = data[:, :, np.newaxis]
    data = _native(data)
    data = _voxels_after_rescale(path, data, rescale, scaled)
    return volume_from_nifti_arrays(
        data, affine_ras, source=source, rescale=rescale, warnings=tuple(warnings)
    )


def _nifti_header(path: Path, stream: IO[bytes]):  # -> nibabel Nifti1Header | Nifti2Header
    import nibabel as nib
    from nibabel.spatialimages import HeaderDataError

    first = stream.read(4)
    if len(first) < 4:
        raise UnsupportedVolumeFileError(path, "not a NIfTI file (shorter than a header)")
    sizes = {int.from_bytes(first, "little"), int.from_bytes(first, "big")}
    if 348 in sizes:
        header_class, magic = nib.Nifti1Header, b"n+1"
    elif 540 in sizes:
        header_class, magic = nib.Nifti2Header, b"n+2"
    else:
        raise UnsupportedVolumeFileError(
            path, "not a NIfTI file (its first 4 bytes are not a NIfTI header size)"
        )
    block = first + stream.read(header_class.template_dtype.itemsize - 4)
    if len(block) < header_class.template_dtype.itemsize:
        raise TruncatedFileError(path, "the file ends inside the NIfTI header")
    try:
        # check=False: keep the header as written; our own checks below decide what is usable.
        header = header_class(block, check=False)
    except HeaderDataError as error:
        raise UnsupportedVolumeFileError(path, f"invalid NIfTI header: {error}") from error
    found = bytes(header["magic"]).rstrip(b"\x00")[:3]
    if found == magic.replace(b"+", b"i"):
        raise UnsupportedVolumeFileError(
            path, "header of a .hdr/.img pair (magic 'ni1'), not a single-file NIfTI"
        )
    if found != magic:
        raise UnsupportedVolumeFileError(path, f"not a NIfTI file (magic {found!r})")
    vox_offset = float(header["vox_offset"])
    if not math.isfinite(vox_offset) or vox_offset < header.single_vox_offset:
        raise UnsupportedVolumeFileError(path, f"vox_offset {vox_offset:g} is not after the header")
    return header


def _nifti_shape(path: Path, header) -> tuple[tuple[int, ...], tuple, list[str]]:
    """Declared shape, the slicer that reads the first 3D volume, and warnings."""
    from nibabel.spatialimages import HeaderDataError

    try:
        shape = tuple(int(n) for n in header.get_data_shape())
    except (HeaderDataError, ValueError) as error:
        raise UnsupportedVolumeFileError(path, f"invalid dimensions: {error}") from error
    if not shape or any(n <= 0 for n in shape):
        raise UnsupportedVolumeFileError(path, f"the image has no voxels (dimensions {shape})")
    if len(shape) < 2:
        raise UnsupportedVolumeFileError(path, f"{len(shape)}-D image: not a volume")
    if len(shape) > 4 and math.prod(shape[4:]) > 1:
        raise UnsupportedVolumeFileError(
            path,
            f"{len(shape)}-D image {shape} (vector/tensor data) is not supported; "
            "only 2D, 3D and 4D images are",
        )
    warnings: list[str] = []
    if len(shape) <= 3:
        return shape, (), warnings
    extra = math.prod(shape[3:])
    if extra > 1:
        warnings.append(
            f"{len(shape)}-D image with {extra} volumes: showing the first, {extra - 1} ignored"
        )
    return shape, (slice(None),) * 3 + (0,) * (len(shape) - 3), warnings


def _nifti_dtype(path: Path, header) -> np.dtype:
    from nibabel.spatialimages import HeaderDataError

    code = int(header["datatype"])
    try:
        label = str(header.get_value_label("datatype"))
        dtype = np.dtype(header.get_data_dtype())
    except (KeyError, HeaderDataError) as error:
        raise UnsupportedVolumeFileError(
            path, f"datatype code {code} is not a NIfTI data type"
        ) from error
    if dtype.kind not in "iuf" or dtype.itemsize > 8:
        raise UnsupportedVolumeFileError(
            path, f"voxel type {label} (NIfTI datatype {code}) is not supported"
        )
    return dtype


def _nifti_rescale(path: Path, header) -> tuple[Rescale, bool]:
    """The Rescale to record and whether voxels must become float32."""
    slope = float(header["scl_slope"])
    inter = float(header["scl_inter"])
    if slope == 0 or not math.isfinite(slope):
        return Rescale(), False  # the standard: scaling only applies with a non-zero slope
    if math.isnan(inter):
        inter = 0.0
    elif not math.isfinite(inter):
        raise UnsupportedVolumeFileError(path, f"scl_inter is {inter} with scl_slope {slope}")
    if slope == 1 and inter == 0:
        return Rescale(), False
    return Rescale(slope=slope, intercept=inter, applied=True), True


def _nifti_affine(
    path: Path, header, spatial_shape: tuple[int, int, int]
) -> tuple[np.ndarray, list[str]]:
    """The validated RAS+ affine (mm) per the policy in the module docstring, and warnings."""
    warnings: list[str] = []
    sform_code = int(header["sform_code"])
    qform_code = int(header["qform_code"])
    try:
        space_unit = header.get_xyzt_units()[0]
    except KeyError:  # an undefined unit code: treated like "unknown"
        space_unit = "unknown"
    mm_per_unit = _MM_PER_UNIT.get(space_unit, 1.0)
    if space_unit in ("meter", "micron"):
        warnings.append(f"spatial units are {space_unit}s: converted to mm")

    if sform_code > 0:
        chosen_name = f"sform (code {sform_code})"
        chosen = np.asarray(header.get_sform(), dtype=np.float64)
    elif qform_code > 0:
        chosen_name = f"qform (code {qform_code})"
        chosen = _qform(path, header)
    else:
        chosen_name = "pixdim (no sform or qform)"
        chosen = _analyze_affine(path, header)
        warnings.append(
            "no sform or qform: orientation unknown, array axes shown as stored "
            "(i to the left, j posterior, k superior; origin 0)"
        )
    chosen = _scaled_affine(chosen, mm_per_unit)
    linear, more = _validated_linear(path, chosen_name, chosen, spatial_shape)
    warnings += more
    affine = chosen.copy()
    affine[:3, :3] = linear

    if sform_code > 0 and qform_code > 0:
        try:
            qform = _scaled_affine(_qform(path, header), mm_per_unit)
        except DegenerateAffineError as error:
            warnings.append(f"the qform is unusable and was ignored ({error.reason})")
        else:
            distance = _corner_distance_mm(chosen, qform, spatial_shape)
            if not math.isfinite(distance) or distance > _POSITION_TOLERANCE_MM:
                warnings.append(
                    f"sform and qform disagree by up to {distance:.3g} mm at the image "
                    f"corners; using the sform (code {sform_code})"
                )
    return affine, warnings


def _qform(path: Path, header) -> np.ndarray:
    """The qform affine as the NIfTI standard defines it, refusing what it cannot mean."""
    from nibabel.spatialimages import HeaderDataError

    pixdim = np.asarray(header["pixdim"], dtype=np.float64)
    if not np.all(np.isfinite(pixdim[1:4])) or np.any(pixdim[1:4] <= 0):
        raise DegenerateAffineError(
            path, f"qform spacing pixdim[1:4] = {_fmt(pixdim[1:4])} must be positive and finite"
        )
    fixed = header.copy()
    # The standard: qfac is -1 when pixdim[0] < 0, else 1 (nibabel refuses anything but +-1).
    fixed["pixdim"][0] = -1.0 if pixdim[0] < 0 else 1.0
    try:
        return np.asarray(fixed.get_qform(), dtype=np.float64)
    except (HeaderDataError, ValueError) as error:
        raise DegenerateAffineError(path, f"invalid qform: {_first_line(error)}") from error


def _analyze_affine(path: Path, header) -> np.ndarray:
    """Spacing from pixdim, origin 0, axes i, j, k along L, P, S, expressed as RAS+."""
    pixdim = np.asarray(header["pixdim"][1:4], dtype=np.float64)
    if not np.all(np.isfinite(pixdim)) or np.any(pixdim <= 0):
        raise DegenerateAffineError(
            path, f"spacing pixdim[1:4] = {_fmt(pixdim)} must be positive and finite"
        )
    affine = np.eye(4)
    # LPS identity in RAS+: x and y reversed.
    affine[:3, :3] = np.diag([-1.0, -1.0, 1.0]) * pixdim[None, :]
    return affine


def _scaled_affine(affine: np.ndarray, mm_per_unit: float) -> np.ndarray:
    scaled = affine.copy()
    scaled[:3, :] *= mm_per_unit
    return scaled


# ====================================================================== NRRD / MetaImage

_SITK_IO = {"nrrd": "NrrdImageIO", "metaimage": "MetaImageIO"}
_MODALITY_BY_MET = {"MET_MOD_CT": "CT", "MET_MOD_MR": "MR", "MET_MOD_NM": "NM", "MET_MOD_US": "US"}
_TRUNCATION_HINTS = re.compile(
    r"fread got only|but received|data not read completely|unexpected end|ended before", re.I
)


def _read_with_sitk(path: Path, source: VolumeSource) -> Volume:
    import SimpleITK as sitk

    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    # Force the IO of the suffix so a file is never read as some other format ITK can sniff.
    reader.SetImageIO(_SITK_IO[source.kind])
    try:
        reader.ReadImageInformation()
    except RuntimeError as error:
        raise _sitk_error(path, error, reading_data=False) from error

    dimension = reader.GetDimension()
    size = tuple(int(n) for n in reader.GetSize())
    pixel_id = reader.GetPixelID()
    components = reader.GetNumberOfComponents()
    itemsize = _sitk_scalar_itemsize(pixel_id)
    if components != 1 or itemsize is None:
        raise UnsupportedVolumeFileError(
            path,
            f"voxel type '{sitk.GetPixelIDValueAsString(pixel_id)}' with {components} "
            "component(s) is not supported (only scalar images)",
        )
    if dimension not in (2, 3, 4):
        raise UnsupportedVolumeFileError(path, f"{dimension}-D image: only 2D, 3D, 4D are read")
    if any(n <= 0 for n in size):
        raise UnsupportedVolumeFileError(path, f"the image has no voxels (size {size})")
    spatial_size = (*size[:3], 1) if dimension == 2 else size[:3]
    _check_size(path, spatial_size, min(itemsize, 4), itemsize)

    origin, linear = _sitk_spatial_geometry(reader, dimension)
    if not np.all(np.isfinite(origin)):
        raise DegenerateAffineError(path, f"the origin {_fmt(origin)} is not finite")
    checked, warnings = _validated_linear(path, "geometry", linear, spatial_size)
    if dimension == 4:
        volumes = size[3]
        if volumes > 1:
            warnings.append(
                f"4-D image with {volumes} volumes: showing the first, {volumes - 1} ignored"
            )
        # Size 0 on the fourth axis collapses it: only the first volume is read.
        reader.SetExtractSize((*size[:3], 0))
        reader.SetExtractIndex((0, 0, 0, 0))
    keys = set(reader.GetMetaDataKeys())
    if source.kind == "nrrd" and "NRRD_space" not in keys:
        warnings.append(
            "no 'space' field: orientation unknown, array axes shown as stored "
            "(i to the left, j posterior, k superior)"
        )
    modality = ""
    if "Modality" in keys:
        modality = _MODALITY_BY_MET.get(reader.GetMetaData("Modality").strip(), "")

    try:
        image = reader.Execute()
    except RuntimeError as error:
        raise _sitk_error(path, error, reading_data=True) from error
    if image.GetDimension() == 2:
        image = sitk.JoinSeries(image)
    spacing_out = np.linalg.norm(checked, axis=0)
    image.SetSpacing(tuple(float(s) for s in spacing_out))
    image.SetOrigin(tuple(float(o) for o in origin))
    image.SetDirection(tuple(float(v) for v in (checked / spacing_out[None, :]).ravel()))
    if pixel_id in (sitk.sitkInt64, sitk.sitkUInt64):
        _check_integer_range(path, sitk.GetArrayViewFromImage(image))
    return volume_from_sitk(image, modality=modality, source=source, warnings=tuple(warnings))


def _sitk_spatial_geometry(
    reader: SimpleITK.ImageFileReader, dimension: int
) -> tuple[np.ndarray, np.ndarray]:
    """Origin and linear part (direction x spacing) of the three spatial axes, LPS."""
    spacing = np.asarray(reader.GetSpacing(), dtype=np.float64)
    origin = np.asarray(reader.GetOrigin(), dtype=np.float64)
    direction = np.asarray(reader.GetDirection(), dtype=np.float64).reshape(dimension, dimension)
    if dimension == 2:
        # As sitk.JoinSeries does: the new slice axis is +z with 1 mm spacing at z = 0.
        direction = np.block([[direction, np.zeros((2, 1))], [np.zeros((1, 2)), np.ones((1, 1))]])
        spacing = np.append(spacing, 1.0)
        origin = np.append(origin, 0.0)
    # ITK applies direction @ diag(spacing); a direction with non-unit columns (MetaImage
    # TransformMatrix) is therefore validated as that product, not as written.
    return origin[:3], direction[:3, :3] * spacing[None, :3]


def _sitk_error(path: Path, error: RuntimeError, *, reading_data: bool) -> InputFileError:
    """The user-facing error for a SimpleITK failure while reading the header or the data."""
    reason = _itk_reason(error, path)
    if _TRUNCATION_HINTS.search(str(error)):
        return TruncatedFileError(path, reason)
    if "File cannot be read" in reason and path.suffix.lower() in (".mha", ".mhd"):
        # MetaIO's message ends in a stale errno ("Reason: Success" even for a short file), so
        # say what the phase tells us instead.
        if not reading_data:
            return UnsupportedVolumeFileError(path, "not a readable MetaImage header")
        if path.suffix.lower() == ".mha":
            return TruncatedFileError(
                path, "the image data could not be read completely (file truncated or damaged)"
            )
        return UnsupportedVolumeFileError(
            path, "the image data could not be read (data file missing, truncated or damaged)"
        )
    return UnsupportedVolumeFileError(path, reason)


_ITK_PREFIX = re.compile(r"^(?:sitk::ERROR|itk::ERROR|ITK ERROR):\s*(?:\w+\(0x[0-9a-fA-F]+\):\s*)?")


def _itk_reason(error: RuntimeError, path: Path) -> str:
    """The first useful line of an ITK/SimpleITK exception (no source paths or addresses)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    head = next((i for i, line in enumerate(lines) if _ITK_PREFIX.match(line)), None)
    if head is None:
        useful = [line for line in lines if not line.startswith("Exception thrown in SimpleITK")]
        return useful[0].replace(str(path), path.name) if useful else "SimpleITK failed"
    reason = _ITK_PREFIX.sub("", lines[head])
    rest = lines[head + 1 :]
    # teem (NRRD) stacks its calls; the innermost, last line says what was wrong.
    details = [re.sub(r"^\[nrrd\]\s*\w+:\s*", "", line) for line in rest if line.startswith("[")]
    details = [d for d in details if d]
    if details:
        reason = f"{reason.rstrip(':')}: {details[-1]}"
    reason += "".join(f" {line}" for line in rest if line.startswith("Reason:"))
    # The error names the file already; drop ITK's method names and repeated full path.
    reason = re.sub(r"^(?:ReadImageInformation|Read):\s*", "", reason)
    return reason.replace(str(path), path.name)


# ====================================================================== shared checks


def _validated_linear(
    path: Path, what: str, affine_or_linear: np.ndarray, spatial_shape: tuple[int, int, int]
) -> tuple[np.ndarray, list[str]]:
    """Check a 3x3 (or 4x4) voxel-to-mm matrix and return its orthonormalised 3x3 part.

    ``spatial_shape`` is ``(ni, nj, nk)``. Raises the errors the module docstring lists.
    """
    matrix = np.asarray(affine_or_linear, dtype=np.float64)
    if not np.all(np.isfinite(matrix[:3, :])):
        raise DegenerateAffineError(path, f"the {what} contains NaN or infinite values")
    linear = matrix[:3, :3]
    lengths = np.linalg.norm(linear, axis=0)
    zero = lengths < _MIN_SPACING_MM
    if np.any(zero & (np.asarray(spatial_shape) > 1)) or np.count_nonzero(zero) > 1:
        axes = ", ".join("ijk"[c] for c in np.flatnonzero(zero))
        raise DegenerateAffineError(
            path, f"the {what} gives axis {axes} a spacing of 0 mm (columns {_fmt(lengths)})"
        )
    direction = np.where(zero[None, :], 0.0, linear / np.where(zero, 1.0, lengths)[None, :])
    if np.any(zero):
        # A single-voxel axis without a length (2D images): 1 mm along the normal of the others.
        c = int(np.flatnonzero(zero)[0])
        direction[:, c] = np.cross(direction[:, (c + 1) % 3], direction[:, (c + 2) % 3])
        lengths = np.where(zero, 1.0, lengths)
    determinant = float(np.linalg.det(direction))
    if abs(determinant) < 1e-6:
        raise DegenerateAffineError(
            path, f"the {what} is singular (axes are parallel; determinant {determinant:.3g})"
        )
    worst, pair = 0.0, (0, 1)
    for a, b in itertools.combinations(range(3), 2):
        cosine = abs(float(direction[:, a] @ direction[:, b]))
        if cosine > worst:
            worst, pair = cosine, (a, b)
    if worst > _SHEAR_TOLERANCE:
        angle = math.degrees(math.acos(float(direction[:, pair[0]] @ direction[:, pair[1]])))
        raise NonOrthonormalAffineError(
            path,
            f"the {what} has shear: axes {'ijk'[pair[0]]} and {'ijk'[pair[1]]} meet at "
            f"{angle:.3f} deg, not 90 (|cos| {worst:.3g} > {_SHEAR_TOLERANCE:g})",
        )
    # Nearest orthogonal matrix (polar decomposition); it keeps the sign of the determinant.
    u, _, vt = np.linalg.svd(direction)
    orthonormal = u @ vt
    result = orthonormal * lengths[None, :]
    warnings: list[str] = []
    if worst > 0:
        before, after = np.eye(4), np.eye(4)
        before[:3, :3] = np.where(zero[None, :], result, linear)
        after[:3, :3] = result
        moved = _corner_distance_mm(before, after, spatial_shape)
        if moved > _POSITION_TOLERANCE_MM:
            warnings.append(
                f"the axes of the {what} were not exactly perpendicular (|cos| {worst:.2g}); "
                f"made perpendicular, moving voxels by up to {moved:.3g} mm"
            )
    return result, warnings


def _corner_distance_mm(a: np.ndarray, b: np.ndarray, spatial_shape: tuple[int, int, int]) -> float:
    """Largest distance between where two 4x4 affines put the 8 corner voxel centres.

    The difference of two affine maps is affine, so over the box its largest length is reached
    at a corner.
    """
    corners = np.array(list(itertools.product(*[(0, n - 1) for n in spatial_shape])), float)
    homogeneous = np.c_[corners, np.ones(len(corners))]
    difference = homogeneous @ (np.asarray(a) - np.asarray(b))[:3, :].T
    return float(np.max(np.linalg.norm(difference, axis=1)))


def _check_size(
    path: Path, spatial_shape: tuple[int, ...], out_itemsize: int, stored_itemsize: int
) -> None:
    voxels = math.prod(spatial_shape)
    needed = voxels * max(out_itemsize, stored_itemsize)
    if needed > MAX_VOLUME_BYTES:
        raise ImageTooLargeError(
            path,
            f"{spatial_shape} voxels need {needed / 2**30:.1f} GiB "
            f"(limit {MAX_VOLUME_BYTES / 2**30:.0f} GiB)",
        )


def _native(data: np.ndarray) -> np.ndarray:
    """The array in native byte order (big-endian files would otherwise not be a Volume type)."""
    if data.dtype.isnative:
        return data
    return data.astype(data.dtype.newbyteorder("="))


def _check_integer_range(path: Path, data: np.ndarray) -> None:
    """Refuse 64-bit integer voxels that no 32-bit type holds (float32 would lose digits)."""
    if data.size == 0:
        return
    low, high = int(data.min()), int(data.max())
    if (
        low < np.iinfo(np.int32).min
        or high > np.iinfo(np.uint32).max
        or (low < 0 and high > np.iinfo(np.int32).max)
    ):
        raise UnsupportedVolumeFileError(
            path, f"{data.dtype} voxel values {low}..{high} do not fit a 32-bit type"
        )


def _voxels_after_rescale(
    path: Path, data: np.ndarray, rescale: Rescale, scaled: bool
) -> np.ndarray:
    if data.dtype.kind in "iu" and data.dtype.itemsize == 8 and not scaled:
        _check_integer_range(path, data)
    if not scaled:
        return data
    # float32 arithmetic: the float64 intermediate nibabel would use doubles peak memory.
    voxels = data.astype(np.float32)
    voxels *= np.float32(rescale.slope)
    voxels += np.float32(rescale.intercept)
    return voxels


def _sitk_scalar_itemsize(pixel_id: int) -> int | None:
    """Bytes per voxel of a scalar SimpleITK pixel type; None for vector/complex/label types."""
    import SimpleITK as sitk

    sizes = {
        sitk.sitkUInt8: 1,
        sitk.sitkInt8: 1,
        sitk.sitkUInt16: 2,
        sitk.sitkInt16: 2,
        sitk.sitkUInt32: 4,
        sitk.sitkInt32: 4,
        sitk.sitkUInt64: 8,
        sitk.sitkInt64: 8,
        sitk.sitkFloat32: 4,
        sitk.sitkFloat64: 8,
    }
    return sizes.get(pixel_id)


def _fmt(values: np.ndarray) -> str:
    return "(" + ", ".join(f"{float(v):.6g}" for v in np.ravel(values)) + ")"


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
