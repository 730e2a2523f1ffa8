"""Header-only DICOM scanning: files -> :class:`InstanceHeader` records, or a reason why not.

The scan never reads pixel data: pydicom defers every large value (``defer_size``), and the
Pixel Data element's file offset is recorded so the loader can read native pixels straight
into the volume. Each file is bounded work (one parse, no retries beyond one ``force`` read
of a preamble-less file), and every failure becomes a :class:`FileProblem` naming the file.
"""

from __future__ import annotations

import dataclasses
import math
import os
import struct
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path

import pydicom
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.multival import MultiValue

from radview.core.errors import (
    InputFileError,
    InvalidPixelDescriptionError,
    NotAnImageError,
    NotDicomError,
    TruncatedFileError,
    UnsupportedTransferSyntaxError,
)
from radview.io.dicom_fast_header import HEAD_BYTES, FastHeader, parse_fast_header
from radview.io.dicom_header import FileProblem, FrameHeader, InstanceHeader

__all__ = [
    "iter_candidate_files",
    "read_instance_header",
    "problem_from_error",
]

#: Serialises pydicom parsing that records warnings (``warnings.catch_warnings`` is global).
PYDICOM_WARNINGS_LOCK = threading.RLock()

#: Values larger than this are not read during a scan (pixel data, overlays, private blobs).
_DEFER_BYTES = 1024
_PIXEL_DATA_TAG = 0x7FE00010
_FLOAT_PIXEL_DATA_TAGS = (0x7FE00008, 0x7FE00009)

#: What pydicom raises on files that are damaged or not DICOM at all. Listed rather than a
#: blanket ``except Exception`` so a bug in radview itself still surfaces in tests.
PARSER_FAILURES: tuple[type[BaseException], ...] = (
    InvalidDicomError,
    EOFError,
    struct.error,
    ValueError,
    TypeError,
    KeyError,
    IndexError,
    AttributeError,
    NotImplementedError,
    UnicodeError,
    OverflowError,
    LookupError,
)

def problem_from_error(error: InputFileError) -> FileProblem:
    """The FileProblem record of a user-facing input error."""
    kinds = {
        NotDicomError: "not_dicom",
        NotAnImageError: "not_image",
        UnsupportedTransferSyntaxError: "unsupported",
        InputFileError: "unreadable",  # the base class is raised for I/O failures
    }
    return FileProblem(error.path, error.reason, kinds.get(type(error), "corrupt"))


def iter_candidate_files(root: Path, problems: list[FileProblem]) -> Iterator[Path]:
    """Every regular file under ``root`` (or ``root`` itself), in a stable sorted order.

    Unreadable folders are reported in ``problems`` and skipped. Symbolic links to folders are
    not followed, so link loops cannot make the walk endless.
    """
    root = Path(root)
    if root.is_file():
        yield root
        return
    if not root.exists():
        problems.append(FileProblem(str(root), "does not exist", "unreadable"))
        return

    def on_error(error: OSError) -> None:
        problems.append(
            FileProblem(str(error.filename or root), f"cannot read folder ({error.strerror})",
                        "unreadable")
        )

    for folder, dirs, files in os.walk(root, onerror=on_error, followlinks=False):
        dirs.sort()
        for name in sorted(files):
            path = Path(folder, name)
            if path.is_file():  # skips sockets, fifos and dangling links
                yield path


def read_instance_header(path: Path | str) -> InstanceHeader:
    """Parse one file's header; raise an :class:`InputFileError` subclass naming the problem."""
    path = Path(path)
    try:
        stat = path.stat()
    except OSError as error:
        raise InputFileError(path, f"cannot read file ({error.strerror})") from error
    if stat.st_size == 0:
        raise NotDicomError(path, "empty file")
    fast = _read_fast(path)
    if fast is not None:
        try:
            return _instance_from_dataset(
                fast, path, stat.st_size, stat.st_mtime_ns,
                transfer_syntax=fast.transfer_syntax_uid,
                media_sop_class=fast.media_storage_sop_class_uid,
                pixel_location=(True, fast.pixel_offset, fast.pixel_length),
            )
        except PARSER_FAILURES:
            pass  # values the fast path cannot convert: pydicom decides below
    # pydicom warns about the many small standard violations found in real files (while
    # parsing and while converting values); those are not the user's problem. A warning that
    # the file ended early is: it becomes an error. catch_warnings changes process-wide state,
    # so threads (a load, an import, the tags panel) take turns here.
    with PYDICOM_WARNINGS_LOCK, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            dataset = _parse(path)
            header = _instance_from_pydicom(dataset, path, stat.st_size, stat.st_mtime_ns)
        except PARSER_FAILURES as error:
            failure: InputFileError | None = TruncatedFileError(
                path, f"damaged header ({_first_line(error)})"
            )
        except InputFileError as error:
            failure = error
        else:
            failure = None
    if any("End of file reached" in str(w.message) for w in caught):
        raise TruncatedFileError(path, "file ends before its data (truncated)")
    if failure is not None:
        raise failure
    return header


# ---------------------------------------------------------------------------- parsing
def _parse(path: Path) -> Dataset:
    try:
        return pydicom.dcmread(path, defer_size=_DEFER_BYTES)
    except InvalidDicomError:
        pass  # no 'DICM' marker: may still be a raw (preamble-less) dataset, checked below
    except PermissionError as error:
        raise InputFileError(path, "permission denied") from error
    except OSError as error:
        raise InputFileError(path, f"cannot read file ({error.strerror})") from error
    except PARSER_FAILURES as error:
        raise TruncatedFileError(path, f"damaged or truncated ({_first_line(error)})") from error

    if not _looks_like_raw_dataset(path):
        raise NotDicomError(path, "not a DICOM file (no DICM marker, no dataset at the start)")
    try:
        return pydicom.dcmread(path, defer_size=_DEFER_BYTES, force=True)
    except PARSER_FAILURES as error:
        raise NotDicomError(path, f"not a readable DICOM file ({_first_line(error)})") from error
    except OSError as error:
        raise InputFileError(path, f"cannot read file ({error.strerror})") from error


def _looks_like_raw_dataset(path: Path) -> bool:
    """True when the file starts with a group 0x0002 or 0x0008 tag (old ACR-NEMA style files)."""
    with open(path, "rb") as handle:
        head = handle.read(8)
    if len(head) < 8:
        return False
    group_le = struct.unpack("<H", head[:2])[0]
    group_be = struct.unpack(">H", head[:2])[0]
    return group_le in (0x0002, 0x0008) or group_be in (0x0002, 0x0008)


def _read_fast(path: Path) -> FastHeader | None:
    try:
        with open(path, "rb") as handle:
            head = handle.read(HEAD_BYTES)
    except OSError:
        return None  # the pydicom path reports the error with its reason
    return parse_fast_header(head)


def _instance_from_pydicom(ds: Dataset, path: Path, size: int, mtime_ns: int) -> InstanceHeader:
    meta = getattr(ds, "file_meta", None)
    transfer_syntax = str(getattr(meta, "TransferSyntaxUID", "") or "") if meta else ""
    if not transfer_syntax:
        # preamble-less files: pydicom guessed the encoding; record what it used
        transfer_syntax = (
            pydicom.uid.ImplicitVRLittleEndian
            if ds.original_encoding[0]
            else pydicom.uid.ExplicitVRLittleEndian
        )
    media_sop_class = str(meta.get("MediaStorageSOPClassUID", "") or "") if meta else ""
    return _instance_from_dataset(ds, path, size, mtime_ns, transfer_syntax=transfer_syntax,
                                  media_sop_class=media_sop_class,
                                  pixel_location=_pixel_data_location(ds))


def _instance_from_dataset(
    ds: Dataset | FastHeader,
    path: Path,
    size: int,
    mtime_ns: int,
    *,
    transfer_syntax: str,
    media_sop_class: str,
    pixel_location: tuple[bool, int | None, int | None],
) -> InstanceHeader:
    """The header record from either reader (both answer ``get(keyword)`` and ``in``)."""
    sop_class = str(ds.get("SOPClassUID", "") or media_sop_class)
    sop_instance = str(ds.get("SOPInstanceUID", "") or "")
    if "DirectoryRecordSequence" in ds:
        raise NotAnImageError(path, "DICOMDIR (a media index, not an image)")
    if not sop_instance and not ds.get("Rows"):
        raise NotAnImageError(path, "DICOM data without an image (no SOP Instance UID, no Rows)")

    has_pixels, offset, length = pixel_location
    rows = _int(ds, "Rows") or 0
    columns = _int(ds, "Columns") or 0
    frames_declared = _int(ds, "NumberOfFrames") or 1
    if _multi(ds, "NumberOfFrames") and _int(ds, "NumberOfFrames") is None:
        raise InvalidPixelDescriptionError(
            path, f"Number of Frames {_text(ds, 'NumberOfFrames')!r} is not a number"
        )
    header = InstanceHeader(
        path=str(path),
        file_size=size,
        mtime_ns=mtime_ns,
        sop_class_uid=sop_class,
        sop_instance_uid=sop_instance,
        transfer_syntax_uid=transfer_syntax,
        patient_name=_text(ds, "PatientName"),
        patient_id=_text(ds, "PatientID"),
        patient_birth_date=_text(ds, "PatientBirthDate"),
        patient_sex=_text(ds, "PatientSex"),
        study_uid=_text(ds, "StudyInstanceUID"),
        study_date=_text(ds, "StudyDate"),
        study_time=_text(ds, "StudyTime"),
        study_description=_text(ds, "StudyDescription"),
        accession_number=_text(ds, "AccessionNumber"),
        referring_physician=_text(ds, "ReferringPhysicianName"),
        series_uid=_text(ds, "SeriesInstanceUID"),
        series_number=_int(ds, "SeriesNumber"),
        series_description=_text(ds, "SeriesDescription"),
        modality=_text(ds, "Modality"),
        body_part=_text(ds, "BodyPartExamined"),
        rows=rows,
        columns=columns,
        number_of_frames=max(frames_declared, 1),
        samples_per_pixel=_int(ds, "SamplesPerPixel") or 1,
        photometric=_text(ds, "PhotometricInterpretation").upper(),
        bits_allocated=_int(ds, "BitsAllocated") or 0,
        bits_stored=_int(ds, "BitsStored") or 0,
        high_bit=_int(ds, "HighBit") or 0,
        pixel_representation=_int(ds, "PixelRepresentation") or 0,
        image_type=tuple(str(v).strip().upper() for v in _multi(ds, "ImageType")),
        rescale_type=_text(ds, "RescaleType"),
        has_modality_lut_sequence="ModalityLUTSequence" in ds,
        has_pixel_data=has_pixels,
        pixel_data_offset=offset,
        pixel_data_length=length,
        frames=_frames(ds, path, max(frames_declared, 1)) if has_pixels else (),
    )
    return header


def _pixel_data_location(ds: Dataset) -> tuple[bool, int | None, int | None]:
    """(has pixel data, value offset in the file, value length or None if encapsulated)."""
    for tag in _FLOAT_PIXEL_DATA_TAGS:
        if tag in ds:
            return True, None, None
    if _PIXEL_DATA_TAG not in ds:
        return False, None, None
    element = dict.__getitem__(ds._dict, _PIXEL_DATA_TAG)  # peek without converting the value
    if isinstance(element, RawDataElement):  # deferred or not, the raw element knows where
        undefined = element.length == 0xFFFFFFFF
        return True, element.value_tell, None if undefined else element.length
    return True, None, None  # already converted (not by the scan): the slow path decodes it


def _frames(ds: Dataset, path: Path, count: int) -> tuple[FrameHeader, ...]:
    """Per-frame geometry: enhanced functional groups, RT-dose grid offsets, or top level."""
    base = FrameHeader(
        path=str(path),
        position=_floats(ds, "ImagePositionPatient", 3),
        orientation=_floats(ds, "ImageOrientationPatient", 6),
        pixel_spacing=_floats(ds, "PixelSpacing", 2),
        slice_thickness=_float(ds, "SliceThickness"),
        # RT Dose stores its scaling as Dose Grid Scaling (to Gy) instead of Rescale Slope
        rescale_slope=_float(ds, "RescaleSlope") or _float(ds, "DoseGridScaling") or 1.0,
        rescale_intercept=_float(ds, "RescaleIntercept") or 0.0,
        instance_number=_int(ds, "InstanceNumber"),
        acquisition_number=_int(ds, "AcquisitionNumber"),
        echo_number=_int(ds, "EchoNumbers"),
        temporal_position=_int(ds, "TemporalPositionIdentifier"),
    )
    if "PerFrameFunctionalGroupsSequence" in ds or "SharedFunctionalGroupsSequence" in ds:
        return _enhanced_frames(ds, base, count)
    offsets = _multi(ds, "GridFrameOffsetVector")
    if count > 1 and len(offsets) == count and base.position and base.orientation:
        normal = _normal(base.orientation)
        return tuple(
            _replace(base, frame=f, position=tuple(
                p + float(off) * n for p, n in zip(base.position, normal, strict=True)))
            for f, off in enumerate(offsets)
        )
    if count == 1:
        return (base,)
    # A plain multi-frame (cine, NM, US): the frames share one position, which would make them
    # look like duplicates; they have no 3D geometry of their own.
    return tuple(_replace(base, frame=f, position=None) for f in range(count))


def _enhanced_frames(ds: Dataset, base: FrameHeader, count: int) -> tuple[FrameHeader, ...]:
    shared = _first_item(ds, "SharedFunctionalGroupsSequence")
    per_frame = list(ds.get("PerFrameFunctionalGroupsSequence", []) or [])
    shared_values = _functional_group_values(shared) if shared is not None else {}
    frames = []
    for f in range(count):
        values = dict(shared_values)
        if f < len(per_frame):
            values.update(_functional_group_values(per_frame[f]))
        frames.append(_replace(base, frame=f, **values))
    return tuple(frames)


def _functional_group_values(group: Dataset) -> dict[str, object]:
    values: dict[str, object] = {}
    position = _first_item(group, "PlanePositionSequence")
    if position is not None and (ipp := _floats(position, "ImagePositionPatient", 3)):
        values["position"] = ipp
    orientation = _first_item(group, "PlaneOrientationSequence")
    if orientation is not None and (iop := _floats(orientation, "ImageOrientationPatient", 6)):
        values["orientation"] = iop
    measures = _first_item(group, "PixelMeasuresSequence")
    if measures is not None:
        if spacing := _floats(measures, "PixelSpacing", 2):
            values["pixel_spacing"] = spacing
        if (thickness := _float(measures, "SliceThickness")) is not None:
            values["slice_thickness"] = thickness
    transform = _first_item(group, "PixelValueTransformationSequence")
    if transform is not None:
        if (slope := _float(transform, "RescaleSlope")) is not None:
            values["rescale_slope"] = slope
        if (intercept := _float(transform, "RescaleIntercept")) is not None:
            values["rescale_intercept"] = intercept
    content = _first_item(group, "FrameContentSequence")
    if content is not None:
        if (temporal := _int(content, "TemporalPositionIndex")) is not None:
            values["temporal_position"] = temporal
        stack_number = _int(content, "InStackPositionNumber")
        if stack_number is not None:
            values["instance_number"] = stack_number
    return values


# ---------------------------------------------------------------------------- value helpers
def _replace(template: FrameHeader, **changes: object) -> FrameHeader:
    return dataclasses.replace(template, **changes)  # type: ignore[arg-type]


def _first_item(ds: Dataset, keyword: str) -> Dataset | None:
    sequence = ds.get(keyword)
    if sequence is None:
        return None
    try:
        return sequence[0] if len(sequence) else None
    except TypeError:  # not a sequence in a damaged file
        return None


def _normal(iop: tuple[float, ...]) -> tuple[float, float, float]:
    r, c = iop[:3], iop[3:]
    n = (r[1] * c[2] - r[2] * c[1], r[2] * c[0] - r[0] * c[2], r[0] * c[1] - r[1] * c[0])
    length = math.sqrt(sum(v * v for v in n)) or 1.0
    return (n[0] / length, n[1] / length, n[2] / length)


def _multi(ds: Dataset, keyword: str) -> list:
    value = ds.get(keyword)
    if value is None or value == "":
        return []
    if isinstance(value, str | bytes | int | float):
        return [value]
    return list(value)


def _text(ds: Dataset, keyword: str) -> str:
    value = ds.get(keyword)
    if value is None:
        return ""
    if isinstance(value, bytes):
        return value.decode("latin-1", errors="replace").strip()
    if isinstance(value, list | tuple | MultiValue):  # several values: DICOM's own separator
        return "\\".join(str(v).strip() for v in value).replace("\x00", "")
    return str(value).strip().replace("\x00", "")


def _int(ds: Dataset, keyword: str) -> int | None:
    values = _multi(ds, keyword)
    if not values:
        return None
    try:
        return int(float(values[0]))
    except (TypeError, ValueError, OverflowError):
        return None


def _float(ds: Dataset, keyword: str) -> float | None:
    values = _multi(ds, keyword)
    if not values:
        return None
    try:
        number = float(values[0])
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _floats(ds: Dataset, keyword: str, count: int) -> tuple[float, ...] | None:
    """Exactly ``count`` finite numbers, or None (missing or malformed means unknown)."""
    values = _multi(ds, keyword)
    if len(values) != count:
        return None
    try:
        numbers = tuple(float(v) for v in values)
    except (TypeError, ValueError):
        return None
    return numbers if all(math.isfinite(n) for n in numbers) else None


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    message = text[0] if text else type(error).__name__
    return message[:200]
