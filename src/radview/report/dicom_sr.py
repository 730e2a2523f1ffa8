"""DICOM SR measurement report (TID 1500) of the liver findings, referencing the SEG.

:func:`write_measurement_report` writes one Comprehensive 3D SR instance (highdicom) in the
source's study, as a new series. Its content tree is TID 1500 "Imaging Measurement Report"
(procedure reported: LOINC "CT/MRI unspecified body region" of CID 100), observed by the
algorithm (a device observer) and, when given, a person. Imaging measurements:

* **Liver** - a TID 1501 measurement group, tracking identifier "Liver", finding type
  (10200004, SCT) Liver: Volume (118565006, SCT) in mL. It references no segment on purpose:
  the liver volume counts the liver label *plus the lesions in it*, which is no single segment
  of the SEG, and a segment reference would tell a viewer to recompute a different number.
* **Each lesion** - two groups that share one tracking identifier ("Lesion <id>") and one
  tracking UID:

  - TID 1411 volumetric ROI group referencing the SEG's tumour segment (ReferencedSegment,
    with the source series): finding type (108369006, SCT) Neoplasm, category (49755003, SCT)
    Morphologically abnormal structure, finding site Liver (lesions in the liver); Volume (mL,
    method (126030, DCM) Sum of segmented voxel method for volume), Mean and Standard Deviation
    of the image (Hounsfield unit for CT).
  - TID 1501 group of the lesion's axes, each a measurement with its end points as a SCOORD3D
    POLYLINE in the source's frame of reference (LPS mm): Long axis (103339001, SCT) with
    method (126081, DCM) RECIST 1.1, Short axis (103340004, SCT), and Diameter (81827009, SCT)
    with derivation Maximum (56851009, SCT) for the maximum 3D diameter.

  highdicom (following TID 1419) does not allow coordinates inside ROI groups, hence the
  second group. The tumour segment holds *every* lesion: a lesion's group points at it, and
  the lesion itself is its 26-connected component there (identified by the group's tracking
  identifier and by its axes, whose end points lie on the lesion).

:func:`read_measurement_report` reads these numbers back (round trip tests, re-import).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code
from pydicom.uid import generate_uid

import radview
from radview.core.labelmap import LiverLabel
from radview.core.lesions import Lesion, LiverFindings
from radview.report.deidentify import Deidentifier
from radview.report.dicom_seg import (
    DEVICE_SERIAL_NUMBER,
    MANUFACTURER,
    SEG_SOP_CLASS_UID,
    AlgorithmInfo,
    clean_text,
    creation_time,
    highdicom_errors,
    prepare_sources,
    refuse_source_target,
    set_creation_time,
    write_dataset,
)
from radview.report.tables import ExportError

__all__ = [
    "COMPREHENSIVE_3D_SR_SOP_CLASS_UID",
    "write_measurement_report",
    "read_measurement_report",
    "ReportedLesion",
    "ReportedMeasurements",
]

COMPREHENSIVE_3D_SR_SOP_CLASS_UID = "1.2.840.10008.5.1.4.1.1.88.34"
_ML = Code("ml", "UCUM", "milliliter")
_MM = codes.UCUM.Millimeter
_NO_UNIT = Code("1", "UCUM", "no units")
_PROCEDURE_BY_MODALITY = {
    "CT": codes.cid100.CTUnspecifiedBodyRegion,
    "MR": codes.cid100.MRIUnspecifiedBodyRegion,
}
_LIVER_TRACKING_ID = "Liver"


# ---------------------------------------------------------------------------- reading back
@dataclass
class ReportedLesion:
    """One lesion's numbers as stored in the SR."""

    tracking_id: str
    tracking_uid: str
    segment_number: int | None = None
    volume_ml: float | None = None
    mean: float | None = None
    sd: float | None = None
    long_axis_mm: float | None = None
    short_axis_mm: float | None = None
    max_diameter_mm: float | None = None
    #: measurement name -> (2, 3) LPS end points
    endpoints: dict[str, np.ndarray] = field(default_factory=dict)
    frame_of_reference_uid: str | None = None


@dataclass
class ReportedMeasurements:
    """What :func:`read_measurement_report` found."""

    liver_volume_ml: float | None
    lesions: dict[str, ReportedLesion]  # by tracking identifier ("Lesion 1", ...)
    seg_sop_instance_uid: str | None
    study_instance_uid: str


# ---------------------------------------------------------------------------- helpers
def _load_seg(seg: str | Path | Dataset, out_path: Path) -> Dataset:
    if isinstance(seg, Dataset):
        return seg
    try:
        return pydicom.dcmread(seg, stop_before_pixels=True)
    except (OSError, InvalidDicomError) as error:
        raise ExportError(seg, f"cannot read the segmentation ({error})") from error


def _check_seg_matches(seg: Dataset, source: Dataset, out_path: Path) -> None:
    """The SEG must segment these (possibly de-identified) source images."""
    if str(seg.get("SOPClassUID", "")) != SEG_SOP_CLASS_UID:
        raise ExportError(out_path, "the given segmentation is not a DICOM SEG")
    referenced_series = {
        str(item.SeriesInstanceUID) for item in seg.get("ReferencedSeriesSequence", [])
    }
    same = (
        str(seg.StudyInstanceUID) == str(source.StudyInstanceUID)
        and str(seg.get("FrameOfReferenceUID", "")) == str(source.get("FrameOfReferenceUID", ""))
        and str(source.SeriesInstanceUID) in referenced_series
    )
    if not same:
        raise ExportError(
            out_path,
            "the segmentation does not belong to these source images (different study, "
            "series or frame of reference; export the SEG and the SR with the same "
            "de-identification setting)",
        )


def _segment_numbers(seg: Dataset) -> set[int]:
    return {int(item.SegmentNumber) for item in seg.get("SegmentSequence", [])}


def _value_unit(unit: str) -> Code:
    return codes.UCUM.HounsfieldUnit if unit == "HU" else _NO_UNIT


def _polyline(points, frame_of_reference_uid: str):
    import highdicom as hd

    data = np.asarray(points, dtype=np.float64).reshape(2, 3)
    return hd.sr.CoordinatesForMeasurement3D(
        graphic_type=hd.sr.GraphicTypeValues3D.POLYLINE,
        graphic_data=data,
        frame_of_reference_uid=frame_of_reference_uid,
    )


def _lesion_groups(
    lesion: Lesion,
    seg: Dataset,
    tumour_segment: int,
    source_series_uid: str,
    frame_of_reference_uid: str,
    algorithm_id,
) -> list:
    import highdicom as hd

    tracking = hd.sr.TrackingIdentifier(uid=hd.UID(), identifier=f"Lesion {int(lesion.id)}")
    sites = [hd.sr.FindingSite(codes.SCT.Liver)] if lesion.in_liver else None
    value_unit = _value_unit(lesion.mean.unit)
    volumetric = hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations(
        tracking_identifier=tracking,
        referenced_segment=hd.sr.ReferencedSegment(
            sop_class_uid=seg.SOPClassUID,
            sop_instance_uid=seg.SOPInstanceUID,
            segment_number=int(tumour_segment),
            source_series=hd.sr.SourceSeriesForSegmentation(source_series_uid),
        ),
        finding_type=codes.SCT.Neoplasm,
        finding_category=codes.SCT.MorphologicallyAbnormalStructure,
        finding_sites=sites,
        algorithm_id=algorithm_id,
        measurements=[
            hd.sr.Measurement(
                name=codes.SCT.Volume,
                value=float(lesion.volume.value),
                unit=_ML,
                method=codes.DCM.SumOfSegmentedVoxelMethodForVolume,
            ),
            hd.sr.Measurement(
                name=codes.SCT.Mean, value=float(lesion.mean.value), unit=value_unit
            ),
            hd.sr.Measurement(
                name=codes.SCT.StandardDeviation, value=float(lesion.sd.value), unit=value_unit
            ),
        ],
    )
    axes = hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=tracking,
        finding_type=codes.SCT.Neoplasm,
        finding_category=codes.SCT.MorphologicallyAbnormalStructure,
        finding_sites=sites,
        algorithm_id=algorithm_id,
        measurements=[
            hd.sr.Measurement(
                name=codes.SCT.LongAxis,
                value=float(lesion.long_axis.value),
                unit=_MM,
                method=codes.DCM.RECIST1Point1,
                referenced_coordinates=[
                    _polyline(lesion.long_axis_endpoints_lps, frame_of_reference_uid)
                ],
            ),
            hd.sr.Measurement(
                name=codes.SCT.ShortAxis,
                value=float(lesion.short_axis.value),
                unit=_MM,
                referenced_coordinates=[
                    _polyline(lesion.short_axis_endpoints_lps, frame_of_reference_uid)
                ],
            ),
            hd.sr.Measurement(
                name=codes.SCT.Diameter,
                value=float(lesion.max_diameter.value),
                unit=_MM,
                derivation=codes.SCT.Maximum,
                referenced_coordinates=[
                    _polyline(lesion.max_diameter_endpoints_lps, frame_of_reference_uid)
                ],
            ),
        ],
    )
    return [volumetric, axes]


def _observation_context(algorithm: AlgorithmInfo, observer_name: str | None):
    import highdicom as hd

    # The device UID names this software version, the same in every report it writes.
    device_uid = generate_uid(
        prefix=None, entropy_srcs=["radview-device", algorithm.name, algorithm.version]
    )
    device = hd.sr.ObserverContext(
        observer_type=codes.DCM.Device,
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=device_uid,
            name=clean_text(algorithm.name, "LO") or "radview",
            manufacturer_name=MANUFACTURER,
            model_name=clean_text(f"{algorithm.name} {algorithm.version}", "LO"),
        ),
    )
    person = None
    name = clean_text(observer_name, "PN") if observer_name else ""
    if name:
        person = hd.sr.ObserverContext(
            observer_type=codes.DCM.Person,
            observer_identifying_attributes=hd.sr.PersonObserverIdentifyingAttributes(
                name=name
            ),
        )
    return hd.sr.ObservationContext(observer_person_context=person, observer_device_context=device)


# ---------------------------------------------------------------------------- writing
def write_measurement_report(
    findings: LiverFindings,
    source_datasets: Sequence[Dataset | None],
    seg_path_or_dataset: str | Path | Dataset,
    out_path: str | Path,
    *,
    algorithm: AlgorithmInfo | None = None,
    observer_name: str | None = None,
    deidentifier: Deidentifier | None = None,
    liver_segment: int = int(LiverLabel.LIVER),
    tumour_segment: int = int(LiverLabel.TUMOUR),
    series_number: int = 301,
    series_description: str = "radview liver measurements",
    series_instance_uid: str | None = None,
    sop_instance_uid: str | None = None,
) -> Path:
    """Write the findings as a TID 1500 Comprehensive 3D SR referencing the SEG.

    Parameters
    ----------
    findings
        :func:`radview.core.lesions.measure_liver` of the label map stored in the SEG.
    source_datasets
        The source series' headers (as for :func:`~radview.report.dicom_seg.write_seg`);
        ``None`` entries are skipped.
    seg_path_or_dataset
        The SEG written by :func:`~radview.report.dicom_seg.write_seg` for these images, with
        the same ``deidentifier`` (a de-identified SEG passes through it unchanged).
    out_path
        The file to write (a name chosen by the caller, e.g. ``sr.dcm``).
    algorithm
        The device observer (default: radview itself, this version).
    observer_name
        A person observer (the reading radiologist), as a DICOM person name
        (``Family^Given``); none by default.
    deidentifier
        De-identify as for the SEG, so the references keep resolving.
    liver_segment, tumour_segment
        Segment numbers in the SEG.

    Raises
    ------
    ExportError
        The SEG does not belong to the source images or lacks the tumour segment, there are
        no source images, or the file cannot be written.
    """
    import highdicom as hd

    out_path = Path(out_path)
    algorithm = algorithm or AlgorithmInfo()
    originals = [ds for ds in source_datasets if ds is not None]
    if not originals:
        raise ExportError(out_path, "no source images were given")
    refuse_source_target(out_path, originals)
    sources = [ds for ds in prepare_sources(originals, deidentifier) if ds is not None]
    seg = _load_seg(seg_path_or_dataset, out_path)
    if deidentifier is not None and not deidentifier.is_own_output(seg):
        raise ExportError(
            out_path,
            "the segmentation was not de-identified with this key; export the SEG again "
            "with the same de-identifier",
        )
    _check_seg_matches(seg, sources[0], out_path)
    available = _segment_numbers(seg)
    if findings.lesions and tumour_segment not in available:
        raise ExportError(out_path, f"the segmentation has no segment {tumour_segment}")
    if liver_segment not in available:
        raise ExportError(out_path, f"the segmentation has no segment {liver_segment}")

    moment = creation_time(originals[0], deidentifier)
    with highdicom_errors(out_path, "measurement report"):
        first = sources[0]
        frame_of_reference_uid = str(first.FrameOfReferenceUID)
        algorithm_id = hd.sr.AlgorithmIdentification(
            name=clean_text(algorithm.name, "LO") or "radview",
            version=clean_text(algorithm.version, "LO") or "unknown",
        )
        groups: list = [
            hd.sr.MeasurementsAndQualitativeEvaluations(
                tracking_identifier=hd.sr.TrackingIdentifier(
                    uid=hd.UID(), identifier=_LIVER_TRACKING_ID
                ),
                finding_type=codes.SCT.Liver,
                finding_category=codes.SCT.AnatomicalStructure,
                finding_sites=[hd.sr.FindingSite(codes.SCT.Liver)],
                algorithm_id=algorithm_id,
                measurements=[
                    hd.sr.Measurement(
                        name=codes.SCT.Volume,
                        value=float(findings.liver_volume.value),
                        unit=_ML,
                        method=codes.DCM.SumOfSegmentedVoxelMethodForVolume,
                    )
                ],
            )
        ]
        for lesion in findings.lesions:
            groups += _lesion_groups(
                lesion,
                seg,
                tumour_segment,
                str(first.SeriesInstanceUID),
                frame_of_reference_uid,
                algorithm_id,
            )
        procedure = _PROCEDURE_BY_MODALITY.get(
            str(first.get("Modality", "")).upper(), codes.cid100.CTUnspecifiedBodyRegion
        )
        report = hd.sr.MeasurementReport(
            observation_context=_observation_context(algorithm, observer_name),
            procedure_reported=procedure,
            imaging_measurements=groups,
            title=codes.DCM.ImagingMeasurementReport,
        )
        document = hd.sr.Comprehensive3DSR(
            evidence=[*sources, seg],
            content=report,
            series_instance_uid=series_instance_uid or hd.UID(),
            series_number=int(series_number),
            sop_instance_uid=sop_instance_uid or hd.UID(),
            instance_number=1,
            manufacturer=MANUFACTURER,
            is_complete=True,
            is_final=False,  # machine measurements: preliminary until a reader signs them
            is_verified=False,
            series_description=clean_text(series_description, "LO"),
            manufacturer_model_name="radview",
            software_versions=radview.__version__,
            device_serial_number=DEVICE_SERIAL_NUMBER,
            content_date=moment.date(),
            content_time=moment.time(),
            series_date=moment.date(),
            series_time=moment.time(),
        )
    set_creation_time(document, moment)
    if deidentifier is not None:
        deidentifier.mark(document)
    return write_dataset(document, out_path)


# ---------------------------------------------------------------------------- reading
def _coordinates(measurement) -> tuple[np.ndarray | None, str | None]:
    for item in measurement.referenced_coordinates:
        data = np.asarray(item.value, dtype=np.float64).reshape(-1, 3)
        return data, str(item.ReferencedFrameOfReferenceUID)
    return None, None


def read_measurement_report(path_or_dataset: str | Path | Dataset) -> ReportedMeasurements:
    """The numbers of a report written by :func:`write_measurement_report`.

    Raises
    ------
    ExportError
        The file is not a readable Comprehensive 3D SR.
    """
    import highdicom as hd

    try:
        if isinstance(path_or_dataset, Dataset):
            document = hd.sr.Comprehensive3DSR.from_dataset(path_or_dataset, copy=True)
        else:
            document = hd.sr.srread(path_or_dataset)
    except (OSError, InvalidDicomError, ValueError, AttributeError) as error:
        raise ExportError(
            str(path_or_dataset), f"not a readable measurement report ({error})"
        ) from error
    content = document.content
    liver_volume = None
    lesions: dict[str, ReportedLesion] = {}
    seg_uid = None

    def lesion_for(group) -> ReportedLesion:
        key = str(group.tracking_identifier)
        if key not in lesions:
            lesions[key] = ReportedLesion(key, str(group.tracking_uid))
        return lesions[key]

    for group in content.get_volumetric_roi_measurement_groups():
        lesion = lesion_for(group)
        for item in group[0].ContentSequence:
            concept = item.ConceptNameCodeSequence[0].CodeValue
            if concept == codes.DCM.ReferencedSegment.value and "ReferencedSOPSequence" in item:
                reference = item.ReferencedSOPSequence[0]
                seg_uid = str(reference.ReferencedSOPInstanceUID)
                lesion.segment_number = int(reference.ReferencedSegmentNumber)
        for name, attribute in (
            (codes.SCT.Volume, "volume_ml"),
            (codes.SCT.Mean, "mean"),
            (codes.SCT.StandardDeviation, "sd"),
        ):
            found = group.get_measurements(name=name)
            if found:
                setattr(lesion, attribute, float(found[0].value))
    for group in content.get_image_measurement_groups():
        if str(group.tracking_identifier) == _LIVER_TRACKING_ID:
            found = group.get_measurements(name=codes.SCT.Volume)
            if found:
                liver_volume = float(found[0].value)
            continue
        lesion = lesion_for(group)
        for name, attribute in (
            (codes.SCT.LongAxis, "long_axis_mm"),
            (codes.SCT.ShortAxis, "short_axis_mm"),
            (codes.SCT.Diameter, "max_diameter_mm"),
        ):
            found = group.get_measurements(name=name)
            if not found:
                continue
            setattr(lesion, attribute, float(found[0].value))
            points, frame = _coordinates(found[0])
            if points is not None:
                lesion.endpoints[attribute] = points
                lesion.frame_of_reference_uid = frame
    return ReportedMeasurements(liver_volume, lesions, seg_uid, str(document.StudyInstanceUID))
