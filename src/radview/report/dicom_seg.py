"""DICOM Segmentation (SEG) export of a label map, plus the DICOM plumbing the exporters share.

:func:`write_seg` turns a uint8 label map on the grid of a single-frame DICOM series into one
BINARY Segmentation instance (highdicom): a new series in the source's study and frame of
reference, one segment per label id (segment number = label id, so the label map comes back
unchanged, :func:`read_seg_labels`), each frame referencing the source image it was cut from.

Segment codes (CID 7150 category / CID 7151 type):

* liver (:attr:`LiverLabel.LIVER`): category (91723000, SCT) "Anatomical Structure", type
  (10200004, SCT) "Liver";
* liver tumour (:attr:`LiverLabel.TUMOUR`): category (49755003, SCT) "Morphologically Abnormal
  Structure", type (108369006, SCT) "Neoplasm", anatomic region (10200004, SCT) "Liver";
* every other id: category and type (85756007, SCT) "Tissue", labelled by its name.

Algorithm: AUTOMATIC with an Algorithm Identification (name, version, family (123110, DCM)
"Artificial Intelligence") when the labels came from a model; MANUAL when they came from a
file (``algorithm=None``): radview then cannot know how they were made.

Shared plumbing (used by the SR and encapsulated-PDF writers too): :func:`read_source_datasets`
reads the headers of a loaded series, :func:`prepare_sources` copies and (optionally)
de-identifies them and fits over-long header text into its value representation,
:func:`clean_text` makes caller text safe for a DICOM string, and :func:`write_dataset` writes
a dataset atomically with the right Specific Character Set (``ISO_IR 192``, UTF-8, whenever any
text is not ASCII).
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
import pydicom
from pydicom import config as pydicom_config
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code
from pydicom.valuerep import PersonName

import radview
from radview.core.labelmap import LiverLabel
from radview.core.volume import Volume
from radview.report.deidentify import Deidentifier
from radview.report.tables import ExportError, export_target

__all__ = [
    "AlgorithmInfo",
    "SegmentType",
    "LIVER_SEGMENT_TYPES",
    "GENERIC_SEGMENT_TYPE",
    "SEG_SOP_CLASS_UID",
    "write_seg",
    "read_seg_labels",
    "read_source_datasets",
    "prepare_sources",
    "clean_text",
    "write_dataset",
    "refuse_source_target",
    "highdicom_errors",
    "creation_time",
]

SEG_SOP_CLASS_UID = "1.2.840.10008.5.1.4.1.1.66.4"
MANUFACTURER = "radview"
#: DeviceSerialNumber is type 1 in Enhanced General Equipment; radview has no hardware serial.
DEVICE_SERIAL_NUMBER = "radview-software"
#: Positions and orientations must agree this well for a label map to sit on the source grid.
_POSITION_TOLERANCE_MM = 0.01
_DIRECTION_TOLERANCE = 1e-4

# Maximum value lengths (characters) of the string VRs whose values we copy or set.
_MAX_LENGTH = {"AE": 16, "CS": 16, "SH": 16, "LO": 64, "PN": 64, "ST": 1024, "LT": 10240}
# Control characters a DICOM string may not hold (ESC stays: ISO 2022 escape sequences).
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x0c\x0e-\x1a\x1c-\x1f\x7f]")
_LINE_BREAKS = re.compile(r"[\r\n\t\f]+")


@dataclass(frozen=True)
class AlgorithmInfo:
    """The algorithm that made a segmentation or measurement (DICOM Algorithm Identification).

    ``family`` is a CID 7162 code, by default (123110, DCM) "Artificial Intelligence".
    """

    name: str = "radview"
    version: str = radview.__version__
    family: Code = codes.DCM.ArtificialIntelligence


@dataclass(frozen=True)
class SegmentType:
    """How a label is coded: property category (CID 7150), type (CID 7151), anatomic region."""

    category: Code
    property_type: Code
    anatomic_region: Code | None = None


#: The codes of radview's liver label ids.
LIVER_SEGMENT_TYPES: Mapping[int, SegmentType] = {
    int(LiverLabel.LIVER): SegmentType(codes.SCT.AnatomicalStructure, codes.SCT.Liver),
    int(LiverLabel.TUMOUR): SegmentType(
        codes.SCT.MorphologicallyAbnormalStructure, codes.SCT.Neoplasm, codes.SCT.Liver
    ),
}
#: The codes of any other label id (the standard has no "unknown"; Tissue is the generic term).
GENERIC_SEGMENT_TYPE = SegmentType(codes.SCT.Tissue, codes.SCT.Tissue)


# ---------------------------------------------------------------------------- shared plumbing
def clean_text(value: object, vr: str = "LO") -> str:
    """Caller text made safe for a DICOM string of value representation ``vr``.

    Control characters are removed, line breaks become spaces (except in ST/LT, which may
    hold them), a backslash (the value separator of LO/SH/PN/CS) becomes ``/``, and the text
    is cut to the VR's maximum length (for PN: each of its component groups). Markup such as
    ``<script>`` or ``&`` is kept verbatim: DICOM text is plain text, and whoever renders it
    escapes it.
    """
    text = "" if value is None else str(value)
    text = _CONTROL.sub("", text)
    if vr not in ("ST", "LT", "UT"):
        text = _LINE_BREAKS.sub(" ", text).replace("\\", "/")
    limit = _MAX_LENGTH.get(vr)
    if limit is None:
        return text
    if vr == "PN":
        return "=".join(_fit_name_group(group, limit) for group in text.split("=")[:3])
    return text[:limit]


def _fit_name_group(group: str, limit: int) -> str:
    """A PN component group cut to ``limit`` characters, longest components first.

    Cutting the end of the whole group would drop the given name of a long family name
    (and its ``^``); shortening the longest component keeps every component.
    """
    parts = group.split("^")[:5]
    excess = len("^".join(parts)) - limit
    while excess > 0:
        longest = max(range(len(parts)), key=lambda n: len(parts[n]))
        if not parts[longest]:
            break
        parts[longest] = parts[longest][:-1]
        excess -= 1
    return "^".join(parts)[:limit]


def _fit_element(element) -> None:
    """Cut an over-long string value to its VR's maximum (they come from other tools)."""
    vr = element.VR
    limit = _MAX_LENGTH.get(vr)
    if limit is None or element.value is None:
        return
    values = element.value if element.VM > 1 else [element.value]
    fitted = []
    changed = False
    for value in values:
        text = str(value)
        new = clean_text(text, vr) if vr == "PN" else text[:limit]
        changed |= new != text
        fitted.append(PersonName(new) if vr == "PN" else new)
    if changed:
        element.value = fitted if element.VM > 1 else fitted[0]


#: Type 2 attributes highdicom reads from the first source image; empty when missing.
_REQUIRED_COPIED = (
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "AccessionNumber",
    "StudyID",
    "StudyDate",
    "StudyTime",
    "ReferringPhysicianName",
)


def prepare_sources(
    source_datasets: Sequence[Dataset | None], deidentifier: Deidentifier | None = None
) -> list[Dataset | None]:
    """Copies of the source headers, de-identified when asked, ready to build an output from.

    Every text value is decoded from the source's character set (so it can be written again
    as UTF-8), over-long values are cut to their VR's maximum (a 200-character patient name
    from another tool would make the output invalid), and the type 2 patient/study attributes
    an output copies are present (empty when the source lacks them). ``None`` entries (missing
    slices) stay ``None``. The originals are not modified.
    """
    prepared: list[Dataset | None] = []
    # Over-long values are what we are fixing: validating them on access would only warn.
    with pydicom_config.disable_value_validation():
        for source in source_datasets:
            if source is None:
                prepared.append(None)
                continue
            ds = deidentifier.deidentify(source) if deidentifier else copy.deepcopy(source)
            for element in ds.iterall():  # converts raw elements: decodes their text
                _fit_element(element)
                if element.VR == "PN" and element.VM == 1 and element.value:
                    # "Bono" and "Bono^" are the same name; highdicom refuses the first
                    # as a likely encoding mistake
                    name = str(element.value)
                    if "^" not in name:
                        element.value = PersonName(name.replace("=", "^=", 1) if "=" in name
                                                   else name + "^")
            for keyword in _REQUIRED_COPIED:
                if keyword not in ds:
                    setattr(ds, keyword, "")
            prepared.append(ds)
    return prepared


def _needs_unicode(dataset: Dataset) -> bool:
    for element in dataset.iterall():
        values = element.value if element.VM > 1 else [element.value]
        for value in values:
            if isinstance(value, (str, PersonName)) and not str(value).isascii():
                return True
    return False


def write_dataset(dataset: Dataset, out_path: str | Path) -> Path:
    """Write ``dataset`` as a DICOM file, atomically (see :func:`~.tables.export_target`).

    The Specific Character Set becomes ``ISO_IR 192`` (UTF-8) when any text is not ASCII, so
    names like ``Müller^Zoë`` or ``山田^太郎`` are stored as what they are.

    Raises
    ------
    ExportError
        The file cannot be written.
    """
    if _needs_unicode(dataset):
        dataset.SpecificCharacterSet = "ISO_IR 192"
    out_path = Path(out_path)
    with export_target(out_path) as handle:
        pydicom.dcmwrite(handle, dataset, enforce_file_format=True)
    return out_path


def refuse_source_target(out_path: Path, datasets: Sequence[Dataset | None]) -> None:
    """Source files are never modified: refuse an output path that is one of them."""
    target = Path(out_path).resolve()
    for ds in datasets:
        name = getattr(ds, "filename", None) if ds is not None else None
        if isinstance(name, (str, Path)) and Path(name).resolve() == target:
            raise ExportError(out_path, "is one of the source images; choose another file")


@contextmanager
def highdicom_errors(out_path: Path, what: str) -> Iterator[None]:
    """highdicom's refusals of unusual source headers become an :class:`ExportError`.

    (A source without a Frame of Reference, an unknown SOP class...: the user can cause
    these by choosing such a series, so they get a one-line message, not a traceback.)
    """
    try:
        yield
    except (ValueError, TypeError, AttributeError, KeyError) as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else repr(error)
        raise ExportError(
            out_path, f"cannot build the {what} from these images ({first_line})"
        ) from error


def creation_time(
    original: Dataset | None, deidentifier: Deidentifier | None, now: datetime | None = None
) -> datetime:
    """The creation date/time of an output: now, shifted like the patient's dates if asked."""
    moment = (now or datetime.now()).replace(microsecond=0)
    if deidentifier is not None and original is not None:
        moment = deidentifier.shift_datetime(moment, original)
    return moment


def set_creation_time(dataset: Dataset, moment: datetime) -> None:
    """Instance creation (and content / series, when present) date and time of an output."""
    date, time = moment.strftime("%Y%m%d"), moment.strftime("%H%M%S")
    dataset.InstanceCreationDate, dataset.InstanceCreationTime = date, time
    for prefix in ("Content", "Series"):
        if f"{prefix}Date" in dataset:
            setattr(dataset, f"{prefix}Date", date)
            setattr(dataset, f"{prefix}Time", time)


def read_source_datasets(volume: Volume) -> list[Dataset | None]:
    """The headers (no pixel data) of the source images of a DICOM volume, in slice order.

    ``None`` stands for a slice the loader filled in (missing in the series).

    Raises
    ------
    ExportError
        The volume is not from a single-frame DICOM series, or a header cannot be read.
    """
    files = volume.source.slice_files
    if volume.source.kind != "dicom" or not files:
        raise ExportError(
            volume.source.display_name, "DICOM exports need a volume loaded from a DICOM series"
        )
    used = [path for path, _ in files if path]
    if len(set(used)) != len(used):
        raise ExportError(
            used[0], "DICOM exports of multi-frame (enhanced) source images are not supported"
        )
    headers: list[Dataset | None] = []
    for path, _frame in files:
        if not path:
            headers.append(None)
            continue
        try:
            headers.append(pydicom.dcmread(path, stop_before_pixels=True))
        except (OSError, InvalidDicomError) as error:
            raise ExportError(path, f"cannot read the source image header ({error})") from error
    return headers


def check_on_source_grid(
    volume: Volume, sources: Sequence[Dataset | None], out_path: Path
) -> None:
    """Refuse a label map that does not lie on the grid of the source images."""
    if len(sources) != volume.shape[0]:
        raise ExportError(
            out_path,
            f"the label map has {volume.shape[0]} slices but {len(sources)} source images "
            "were given",
        )
    rows, columns = volume.shape[1:]
    expected_orientation = np.concatenate([volume.direction[:, 0], volume.direction[:, 1]])
    expected_spacing = (volume.spacing[1], volume.spacing[0])
    for k, ds in enumerate(sources):
        if ds is None:
            continue
        try:
            position = np.asarray([float(v) for v in ds.ImagePositionPatient])
            orientation = np.asarray([float(v) for v in ds.ImageOrientationPatient])
            spacing = tuple(float(v) for v in ds.PixelSpacing)
            size = (int(ds.Rows), int(ds.Columns))
        except (AttributeError, TypeError, ValueError) as error:
            raise ExportError(
                out_path, f"source image {k + 1} lacks its plane geometry ({error})"
            ) from error
        expected_position = volume.index_to_world((0.0, 0.0, float(k)))
        if (
            size != (rows, columns)
            or not np.allclose(position, expected_position, atol=_POSITION_TOLERANCE_MM)
            or not np.allclose(orientation, expected_orientation, atol=_DIRECTION_TOLERANCE)
            or not np.allclose(spacing, expected_spacing, atol=1e-3)
        ):
            raise ExportError(
                out_path,
                f"the label map is not on the grid of source image {k + 1} "
                "(position, orientation, spacing or matrix differ)",
            )


# ---------------------------------------------------------------------------- SEG
def _segment_descriptions(
    numbers: Sequence[int],
    segment_names: Mapping[int, str],
    segment_types: Mapping[int, SegmentType],
    algorithm: AlgorithmInfo | None,
):
    import highdicom as hd

    if algorithm is None:
        algorithm_type = hd.seg.SegmentAlgorithmTypeValues.MANUAL
        identification = None
    else:
        algorithm_type = hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC
        identification = hd.AlgorithmIdentificationSequence(
            name=clean_text(algorithm.name, "LO") or "radview",
            family=algorithm.family,
            version=clean_text(algorithm.version, "LO") or "unknown",
        )
    descriptions = []
    for number in numbers:
        kind = segment_types.get(number, GENERIC_SEGMENT_TYPE)
        label = clean_text(segment_names.get(number, ""), "LO") or f"Label {number}"
        descriptions.append(
            hd.seg.SegmentDescription(
                segment_number=number,
                segment_label=label,
                segmented_property_category=kind.category,
                segmented_property_type=kind.property_type,
                algorithm_type=algorithm_type,
                algorithm_identification=identification,
                anatomic_regions=None if kind.anatomic_region is None else [kind.anatomic_region],
            )
        )
    return descriptions


def write_seg(
    label_map: Volume,
    source_datasets: Sequence[Dataset | None],
    segment_names: Mapping[int, str],
    out_path: str | Path,
    *,
    algorithm: AlgorithmInfo | None,
    series_number: int = 300,
    series_description: str = "radview segmentation",
    segment_types: Mapping[int, SegmentType] = LIVER_SEGMENT_TYPES,
    deidentifier: Deidentifier | None = None,
    series_instance_uid: str | None = None,
    sop_instance_uid: str | None = None,
) -> Path:
    """Write ``label_map`` as a BINARY DICOM Segmentation of the source series.

    Parameters
    ----------
    label_map
        uint8 label ids on the source grid: ``voxels[k]`` lies on ``source_datasets[k]``.
    source_datasets
        The source series' headers in slice order (:func:`read_source_datasets`; pixel data
        not needed). ``None`` marks a missing slice, whose labels must be 0.
    segment_names
        Label id -> segment label (e.g. ``LabelMap.names``). Every id from 1 to the largest
        present or named one becomes segment number = id; unnamed ids are "Label <id>".
    out_path
        The file to write (a name chosen by the caller, e.g. ``seg.dcm``).
    algorithm
        The model that made the labels (AUTOMATIC), or ``None`` for labels from a file
        (MANUAL). Deliberately required: a wrong claim of provenance is worse than none.
    series_number, series_description
        Of the new SEG series.
    segment_types
        Label id -> codes; ids not listed get :data:`GENERIC_SEGMENT_TYPE`.
    deidentifier
        De-identify the copied patient/study data and the references (same mapping as the
        other exports made with it).
    series_instance_uid, sop_instance_uid
        Of the new series and instance; generated when not given.

    Returns
    -------
    Path
        ``out_path``.

    Raises
    ------
    ExportError
        The label map is empty, not on the source grid, has labels on a missing slice, or the
        file cannot be written.
    """
    import highdicom as hd

    out_path = Path(out_path)
    voxels = label_map.voxels
    if voxels.dtype != np.uint8:
        raise ExportError(out_path, f"label maps are uint8, got {voxels.dtype}")
    refuse_source_target(out_path, source_datasets)
    check_on_source_grid(label_map, source_datasets, out_path)
    present_slices = [k for k, ds in enumerate(source_datasets) if ds is not None]
    missing = [k for k, ds in enumerate(source_datasets) if ds is None]
    if missing and voxels[missing].any():
        raise ExportError(out_path, "labels lie on slices that are missing from the series")
    present_ids = {int(v) for v in np.unique(voxels)} - {0}
    if not present_ids:
        raise ExportError(out_path, "the label map is empty: there is nothing to export")
    numbers = list(range(1, max(present_ids | {int(n) for n in segment_names}) + 1))

    originals = [source_datasets[k] for k in present_slices]
    sources = [ds for ds in prepare_sources(originals, deidentifier) if ds is not None]
    moment = creation_time(originals[0], deidentifier)
    with highdicom_errors(out_path, "segmentation"):
        segmentation = _build_segmentation(
            hd, sources, np.ascontiguousarray(voxels[present_slices]),
            _segment_descriptions(numbers, segment_names, segment_types, algorithm),
            series_instance_uid=series_instance_uid or hd.UID(),
            series_number=int(series_number),
            sop_instance_uid=sop_instance_uid or hd.UID(),
            description=clean_text(series_description, "LO"),
            moment=moment,
        )
    set_creation_time(segmentation, moment)
    if deidentifier is not None:
        deidentifier.mark(segmentation)
    return write_dataset(segmentation, out_path)


def _build_segmentation(
    hd, sources, pixels, descriptions, *, series_instance_uid, series_number, sop_instance_uid,
    description, moment,
):
    return hd.seg.Segmentation(
        source_images=sources,
        pixel_array=pixels,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=descriptions,
        series_instance_uid=series_instance_uid,
        series_number=series_number,
        sop_instance_uid=sop_instance_uid,
        instance_number=1,
        manufacturer=MANUFACTURER,
        manufacturer_model_name="radview",
        software_versions=radview.__version__,
        device_serial_number=DEVICE_SERIAL_NUMBER,
        content_label="SEGMENTATION",
        content_description=description,
        series_description=description,
        content_date=moment.date(),
        content_time=moment.time(),
        series_date=moment.date(),
        series_time=moment.time(),
        omit_empty_frames=True,
    )


def read_seg_labels(
    seg: str | Path | Dataset, source_sop_instance_uids: Sequence[str]
) -> np.ndarray:
    """The label map stored by :func:`write_seg`, on the slices of the given source images.

    Returns a uint8 array ``(len(uids), rows, columns)``: each pixel holds the number of its
    segment (= the label id) and 0 elsewhere; slices without frames are 0.
    """
    import highdicom as hd

    if isinstance(seg, (str, Path)):
        segmentation = hd.seg.segread(seg)
    elif isinstance(seg, hd.seg.Segmentation):
        segmentation = seg
    else:
        segmentation = hd.seg.Segmentation.from_dataset(seg, copy=True)
    referenced = {str(uids[2]) for uids in segmentation.get_source_image_uids()}
    uids = [str(uid) for uid in source_sop_instance_uids]
    rows, columns = int(segmentation.Rows), int(segmentation.Columns)
    result = np.zeros((len(uids), rows, columns), dtype=np.uint8)
    wanted = [i for i, uid in enumerate(uids) if uid in referenced]
    if wanted:
        labels = segmentation.get_pixels_by_source_instance(
            [uids[i] for i in wanted],
            combine_segments=True,
            assert_missing_frames_are_empty=True,
            dtype=np.uint8,
        )
        result[wanted] = labels
    return result
