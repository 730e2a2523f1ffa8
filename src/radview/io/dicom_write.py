"""Write a :class:`~radview.core.Volume` as a single-frame CT or MR DICOM series.

Used for the embedded sample study, by tests that need real files (including deliberately broken
ones, built from a valid series) and by benchmarks that need a large series quickly. Speed comes
from building one template dataset and changing only the per-slice attributes before each write.

Geometry follows ``radview.core.volume``: slice ``k`` is ``voxels[k]``, its ImagePositionPatient
is the LPS centre of voxel ``(0, 0, k)``, ImageOrientationPatient is direction columns 0 and 1,
and PixelSpacing is ``[row spacing, column spacing]`` = ``[spacing[1], spacing[0]]``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
from pydicom import dcmwrite
from pydicom.datadict import tag_for_keyword
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.pixels import encoders
from pydicom.uid import (
    UID,
    CTImageStorage,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    MRImageStorage,
    RLELossless,
    generate_uid,
)
from pydicom.valuerep import format_number_as_ds

import radview
from radview.core.errors import LoadCancelled
from radview.core.volume import Volume
from radview.io.atomic import atomic_write, fsync_directory

__all__ = [
    "writable_transfer_syntaxes",
    "unavailable_transfer_syntaxes",
    "write_dicom_series",
]

ProgressCallback = Callable[[int, int], None]
CancelCallback = Callable[[], bool]

#: Uncompressed syntaxes pydicom writes itself (deflate included: it compresses the dataset).
_NATIVE_SYNTAXES: tuple[UID, ...] = (
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    ExplicitVRBigEndian,
    DeflatedExplicitVRLittleEndian,
)

#: Lossless compressed syntaxes and pydicom's encoder for each (None: pydicom has none).
_COMPRESSED_SYNTAXES: dict[UID, object | None] = {
    RLELossless: encoders.RLELosslessEncoder,
    JPEG2000Lossless: encoders.JPEG2000LosslessEncoder,
    JPEGLSLossless: encoders.JPEGLSLosslessEncoder,
    JPEGLosslessSV1: None,
}

_SOP_CLASS_BY_MODALITY: dict[str, UID] = {"CT": CTImageStorage, "MR": MRImageStorage}
_STORED_TYPES = (np.dtype(np.int16), np.dtype(np.uint16))


@dataclass(frozen=True)
class _PixelPlan:
    """How modality values become stored values; fixed for the whole series."""

    dtype: np.dtype
    bits_stored: int
    slope: float
    intercept: float
    integer_shift: int | None  # stored = value - shift, exact, when slope is 1 and data integer


def writable_transfer_syntaxes() -> tuple[UID, ...]:
    """Transfer syntaxes :func:`write_dicom_series` can write with the installed packages."""
    compressed = tuple(
        uid
        for uid, encoder in _COMPRESSED_SYNTAXES.items()
        if encoder is not None and encoder.is_available  # type: ignore[attr-defined]
    )
    return _NATIVE_SYNTAXES + compressed


def unavailable_transfer_syntaxes() -> dict[UID, str]:
    """Known lossless syntaxes that cannot be written here, each with the reason."""
    reasons: dict[UID, str] = {}
    for uid, encoder in _COMPRESSED_SYNTAXES.items():
        if encoder is None:
            reasons[uid] = "pydicom has no encoder for it"
        elif not encoder.is_available:  # type: ignore[attr-defined]
            missing = "; ".join(encoder.missing_dependencies)  # type: ignore[attr-defined]
            reasons[uid] = f"install a plugin: {missing}"
    return reasons


def write_dicom_series(
    volume: Volume,
    folder: Path,
    *,
    patient_name: str = "RADVIEW^SAMPLE",
    patient_id: str = "RADVIEW-0000",
    study_uid: str | None = None,
    series_uid: str | None = None,
    series_description: str = "radview synthetic series",
    study_description: str = "radview synthetic study",
    series_number: int = 1,
    body_part_examined: str = "",
    modality: str = "CT",
    transfer_syntax: str = ExplicitVRLittleEndian,
    stored_dtype: type | np.dtype = np.int16,
    rescale_intercept: float | None = None,
    rescale_slope: float = 1.0,
    study_datetime: datetime | None = None,
    uid_seed: str | None = None,
    uid_prefix: str | None = None,
    extra_attributes: Mapping[str, object] | None = None,
    file_name_pattern: str = "IM{index:04d}.dcm",
    fsync: bool = True,
    progress: ProgressCallback | None = None,
    cancel: CancelCallback | None = None,
) -> list[Path]:
    """Write ``volume`` as one single-frame DICOM file per slice into ``folder``.

    Parameters
    ----------
    volume
        Voxels hold modality values (HU for CT); ``voxels[k]`` becomes file ``k + 1``.
    folder
        Created if missing. Existing files with the same names are replaced.
    patient_name, patient_id, study_description, series_description, series_number
        Header strings; callers should make synthetic data recognisable as such.
    study_uid, series_uid
        Reused when given (e.g. to put several series in one study), else generated.
    body_part_examined
        A Body Part Examined defined term (``"ABDOMEN"``). Without one, an empty Laterality is
        written, as the standard asks when it is not known whether the part is paired.
    modality
        ``"CT"`` (CT Image Storage) or ``"MR"`` (MR Image Storage).
    transfer_syntax
        One of :func:`writable_transfer_syntaxes`; anything else raises ``ValueError``.
    stored_dtype
        ``np.int16`` or ``np.uint16``. Values that do not fit after rescaling raise
        ``ValueError`` rather than being clipped.
    rescale_intercept, rescale_slope
        ``stored = round((value - intercept) / slope)``. The intercept defaults to -1024 for CT
        (so uint16 can hold air) and 0 otherwise.
    study_datetime
        Study/series/content date and time; defaults to now. Pass a fixed value together with
        ``uid_seed`` for byte-identical output.
    uid_seed, uid_prefix
        With a seed, every generated UID is derived from it (``generate_uid(entropy_srcs=...)``),
        so the same call writes the same UIDs. ``uid_prefix`` defaults to pydicom's root.
    extra_attributes
        Further attributes by DICOM keyword (``{"BodyPartExamined": "ABDOMEN"}``), set on every
        file after the standard ones, so they may also override them.
    file_name_pattern
        ``str.format`` pattern with ``index`` (1-based); must give a plain file name.
    fsync
        Flush each file to disk before renaming it into place; benchmarks may turn it off.
    progress
        Called as ``progress(files_done, files_total)`` after each file.
    cancel
        Polled before each file; when it returns True, the files written so far are removed and
        :class:`~radview.core.errors.LoadCancelled` is raised.

    Returns
    -------
    list of Path
        The written files in slice order.
    """
    syntax = _check_transfer_syntax(transfer_syntax)
    modality = modality.upper()
    if modality not in _SOP_CLASS_BY_MODALITY:
        supported = ", ".join(_SOP_CLASS_BY_MODALITY)
        raise ValueError(f"cannot write modality {modality!r}; supported: {supported}")
    if rescale_intercept is None:
        rescale_intercept = -1024.0 if modality == "CT" else 0.0
    plan = _pixel_plan(volume, np.dtype(stored_dtype), float(rescale_slope), rescale_intercept)
    names = _file_names(file_name_pattern, volume.shape[0])

    uids = _UidSource(uid_seed, uid_prefix)
    study_uid = study_uid or uids.make("study")
    series_uid = series_uid or uids.make("series", study_uid)
    template = _template(
        volume,
        plan,
        modality=modality,
        syntax=syntax,
        patient_name=patient_name,
        patient_id=patient_id,
        study_uid=study_uid,
        series_uid=series_uid,
        frame_of_reference_uid=uids.make("frame-of-reference", series_uid),
        study_description=study_description,
        series_description=series_description,
        series_number=series_number,
        body_part_examined=body_part_examined,
        when=study_datetime or datetime.now().replace(microsecond=0),
    )
    _apply_extra_attributes(template, extra_attributes or {})

    folder = Path(folder)
    created_folder = not folder.exists()
    folder.mkdir(parents=True, exist_ok=True)
    # Files are written into a hidden staging folder first and moved into place only when the
    # whole series is written: a cancel or an error then never removes or half-replaces files
    # that were already in ``folder`` (e.g. an earlier series with the same names).
    staging = folder / f".radview-staging-{os.getpid()}"
    staging.mkdir(exist_ok=True)
    staged: list[Path] = []
    try:
        for k, name in enumerate(names):
            if cancel is not None and cancel():
                raise LoadCancelled(f"{folder}: writing the DICOM series was cancelled")
            _fill_slice(template, volume, k, plan, syntax, uids.make("instance", series_uid, k))
            staged.append(_write_atomically(template, staging / name, fsync))
            if progress is not None:
                progress(k + 1, len(names))
        written = []
        for path in staged:
            os.replace(path, folder / path.name)
            written.append(folder / path.name)
        staging.rmdir()
        if fsync:
            fsync_directory(folder)
    except BaseException:
        # Nothing partial is kept (DESIGN: outputs are all or nothing for the caller).
        _remove_partial(staged, staging)
        if created_folder and not any(folder.iterdir()):
            folder.rmdir()
        raise
    return written


# ---------------------------------------------------------------------- validation and planning
def _check_transfer_syntax(transfer_syntax: str) -> UID:
    syntax = UID(str(transfer_syntax))
    writable = writable_transfer_syntaxes()
    if syntax in writable:
        return syntax
    listed = ", ".join(uid.name for uid in writable)
    reason = unavailable_transfer_syntaxes().get(syntax, "not a supported lossless syntax")
    raise ValueError(
        f"cannot write transfer syntax {syntax.name} ({syntax}): {reason}; writable here: {listed}"
    )


def _pixel_plan(volume: Volume, dtype: np.dtype, slope: float, intercept: float) -> _PixelPlan:
    """Choose the stored representation and refuse values that would not fit it."""
    if dtype not in _STORED_TYPES:
        raise ValueError(f"stored_dtype must be int16 or uint16, got {dtype}")
    if not (np.isfinite(slope) and slope > 0 and np.isfinite(intercept)):
        raise ValueError(f"rescale slope must be > 0 and both finite, got {slope}, {intercept}")
    voxels = volume.voxels
    if voxels.dtype.kind == "f" and not np.all(np.isfinite(voxels)):
        raise ValueError("the volume holds NaN or infinite values, which DICOM cannot store")
    lowest = round((float(voxels.min()) - intercept) / slope)
    highest = round((float(voxels.max()) - intercept) / slope)
    info = np.iinfo(dtype)
    if lowest < info.min or highest > info.max:
        raise ValueError(
            f"stored values {lowest}..{highest} do not fit {dtype} "
            f"(rescale intercept {intercept}, slope {slope}); choose another intercept or type"
        )
    # 12 bits when unsigned data allows it: what most CT scanners write, and still exact.
    bits_stored = 12 if dtype == np.uint16 and highest < 4096 else 16
    exact_integers = voxels.dtype.kind in "iu" and slope == 1.0 and float(intercept).is_integer()
    return _PixelPlan(
        dtype, bits_stored, slope, intercept, int(intercept) if exact_integers else None
    )


def _file_names(pattern: str, count: int) -> list[str]:
    names = [pattern.format(index=k + 1) for k in range(count)]
    for name in names:
        if not name or Path(name).name != name or name in (".", "..") or name.startswith("."):
            raise ValueError(f"file_name_pattern must give plain file names, got {name!r}")
    if len(set(names)) != len(names):
        raise ValueError(f"file_name_pattern {pattern!r} gives the same name to several slices")
    return names


class _UidSource:
    """Random UIDs, or reproducible ones derived from a seed and what the UID names."""

    def __init__(self, seed: str | None, prefix: str | None) -> None:
        self._seed = seed
        self._prefix = prefix if prefix is not None else "1.2.826.0.1.3680043.8.498."

    def make(self, *what: object) -> UID:
        if self._seed is None:
            return generate_uid(prefix=self._prefix)
        return generate_uid(self._prefix, entropy_srcs=[self._seed, *(str(w) for w in what)])


# ---------------------------------------------------------------------- header
def _ds(value: float) -> str:
    """A Decimal String of at most 16 characters, without float noise such as 0.780000001."""
    return format_number_as_ds(round(float(value), 6) + 0.0)  # + 0.0 turns -0.0 into 0.0


def _template(
    volume: Volume,
    plan: _PixelPlan,
    *,
    modality: str,
    syntax: UID,
    patient_name: str,
    patient_id: str,
    study_uid: str,
    series_uid: str,
    frame_of_reference_uid: str,
    study_description: str,
    series_description: str,
    series_number: int,
    body_part_examined: str,
    when: datetime,
) -> Dataset:
    """The dataset every slice starts from: all attributes that do not change per slice."""
    sop_class = _SOP_CLASS_BY_MODALITY[modality]
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = sop_class
    ds.file_meta.TransferSyntaxUID = syntax
    ds.file_meta.ImplementationVersionName = f"RADVIEW_{radview.__version__}"[:16]

    date, time = when.strftime("%Y%m%d"), when.strftime("%H%M%S")
    # SOP Common; UTF-8 so that callers may pass any patient name.
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.SOPClassUID = sop_class
    ds.InstanceCreationDate, ds.InstanceCreationTime = date, time
    # Patient
    ds.PatientName = patient_name
    ds.PatientID = patient_id
    ds.PatientBirthDate = ""
    ds.PatientSex = ""
    # General Study
    ds.StudyInstanceUID = study_uid
    ds.StudyDate, ds.StudyTime = date, time
    ds.ReferringPhysicianName = ""
    ds.StudyID = "1"
    ds.AccessionNumber = ""
    ds.StudyDescription = study_description
    # General Series
    ds.Modality = modality
    ds.SeriesInstanceUID = series_uid
    ds.SeriesNumber = series_number
    ds.SeriesDate, ds.SeriesTime = date, time
    ds.SeriesDescription = series_description
    if body_part_examined:
        ds.BodyPartExamined = body_part_examined
    else:
        # Type 2C, needed unless the body part is known to be unpaired: empty means unknown.
        ds.Laterality = ""
    ds.PatientPosition = "HFS"  # type 2C for CT and MR; the synthetic patient lies head first
    # Frame of Reference
    ds.FrameOfReferenceUID = frame_of_reference_uid
    ds.PositionReferenceIndicator = ""
    # General Equipment
    ds.Manufacturer = "radview"
    ds.ManufacturerModelName = "radview DICOM writer"
    ds.SoftwareVersions = radview.__version__
    # General Image / Acquisition
    ds.ContentDate, ds.ContentTime = date, time
    ds.AcquisitionNumber = 1
    ds.BurnedInAnnotation = "NO"
    ds.LossyImageCompression = "00"
    _add_plane(ds, volume)
    _add_pixel_description(ds, volume, plan)
    if modality == "CT":
        _add_ct_image(ds, plan)
    else:
        _add_mr_image(ds, plan)
    return ds


def _add_plane(ds: Dataset, volume: Volume) -> None:
    """Image Plane attributes shared by all slices (position is set per slice)."""
    spacing_x, spacing_y, spacing_z = volume.spacing
    direction = volume.direction
    ds.ImageOrientationPatient = [_ds(v) for v in (*direction[:, 0], *direction[:, 1])]
    ds.PixelSpacing = [_ds(spacing_y), _ds(spacing_x)]  # DICOM: [between rows, between columns]
    ds.SliceThickness = _ds(spacing_z)
    ds.SpacingBetweenSlices = _ds(spacing_z)


def _add_pixel_description(ds: Dataset, volume: Volume, plan: _PixelPlan) -> None:
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = volume.shape[1], volume.shape[2]
    ds.BitsAllocated = 16
    ds.BitsStored = plan.bits_stored
    ds.HighBit = plan.bits_stored - 1
    ds.PixelRepresentation = 1 if plan.dtype.kind == "i" else 0


def _add_ct_image(ds: Dataset, plan: _PixelPlan) -> None:
    # Value 3 of a CT Image Type must be AXIAL or LOCALIZER; DERIVED/SECONDARY because no
    # scanner acquired these pixels.
    ds.ImageType = ["DERIVED", "SECONDARY", "AXIAL"]
    ds.KVP = ""
    ds.RescaleIntercept = _ds(plan.intercept)
    ds.RescaleSlope = _ds(plan.slope)
    ds.RescaleType = "HU"
    ds.WindowCenter, ds.WindowWidth = "40", "400"  # soft-tissue window for a first display
    ds.WindowCenterWidthExplanation = "SOFT TISSUE"


def _add_mr_image(ds: Dataset, plan: _PixelPlan) -> None:
    ds.ImageType = ["DERIVED", "SECONDARY", "OTHER"]
    ds.ScanningSequence = "RM"  # research mode: no real pulse sequence made these images
    ds.SequenceVariant = "NONE"
    ds.ScanOptions = ""
    ds.MRAcquisitionType = "3D"
    ds.RepetitionTime = ""
    ds.EchoTime = ""
    ds.EchoTrainLength = ""
    # The MR IOD has no rescale; write it only when the values actually need it.
    if plan.slope != 1.0 or plan.intercept != 0.0:
        ds.RescaleIntercept = _ds(plan.intercept)
        ds.RescaleSlope = _ds(plan.slope)
        ds.RescaleType = "US"


def _apply_extra_attributes(ds: Dataset, extra: Mapping[str, object]) -> None:
    for keyword, value in extra.items():
        if tag_for_keyword(keyword) is None:
            raise ValueError(f"extra_attributes: {keyword!r} is not a DICOM keyword")
        setattr(ds, keyword, value)


# ---------------------------------------------------------------------- per slice
def _fill_slice(
    ds: Dataset, volume: Volume, k: int, plan: _PixelPlan, syntax: UID, sop_instance_uid: UID
) -> None:
    """Set everything that differs between slices on the (reused) template."""
    position = volume.index_to_world((0.0, 0.0, float(k)))
    ds.SOPInstanceUID = sop_instance_uid
    ds.file_meta.MediaStorageSOPInstanceUID = sop_instance_uid
    ds.InstanceNumber = k + 1
    ds.ImagePositionPatient = [_ds(v) for v in position]
    ds.SliceLocation = _ds(float(position @ volume.direction[:, 2]))
    stored = _stored_slice(volume.voxels[k], plan)
    if syntax in _COMPRESSED_SYNTAXES:
        _set_encapsulated_pixels(ds, stored, syntax)
    else:
        byte_order = "<" if syntax.is_little_endian else ">"
        ds.PixelData = stored.astype(plan.dtype.newbyteorder(byte_order), copy=False).tobytes()


def _stored_slice(values: np.ndarray, plan: _PixelPlan) -> np.ndarray:
    """Modality values of one slice -> stored values (range already checked for the volume)."""
    if plan.integer_shift is not None:
        return (values.astype(np.int32) - plan.integer_shift).astype(plan.dtype)
    # float64 only for this one slice, so rounding matches the range check exactly.
    scaled = (values.astype(np.float64) - plan.intercept) / plan.slope
    return np.rint(scaled).astype(plan.dtype)


def _set_encapsulated_pixels(ds: Dataset, stored: np.ndarray, syntax: UID) -> None:
    encoder = _COMPRESSED_SYNTAXES[syntax]
    frame = encoder.encode(  # type: ignore[attr-defined]
        np.ascontiguousarray(stored),
        rows=ds.Rows,
        columns=ds.Columns,
        samples_per_pixel=1,
        bits_allocated=16,
        bits_stored=ds.BitsStored,
        pixel_representation=ds.PixelRepresentation,
        photometric_interpretation="MONOCHROME2",
        number_of_frames=1,
    )
    ds.PixelData = encapsulate([frame])
    element = ds["PixelData"]
    element.VR = "OB"
    element.is_undefined_length = True


def _write_atomically(ds: Dataset, path: Path, fsync: bool) -> Path:
    with atomic_write(path, fsync=fsync) as handle:
        dcmwrite(handle, ds, enforce_file_format=True)
    return path


def _remove_partial(staged: Sequence[Path], staging: Path) -> None:
    for path in staged:
        path.unlink(missing_ok=True)
    if staging.exists():
        for leftover in staging.iterdir():  # a temporary file of the write that failed
            leftover.unlink(missing_ok=True)
        staging.rmdir()
