"""Export everything about one analysed series: PDF report, DICOM SEG / SR / encapsulated PDF,
NIfTI label map, JSON and CSV — optionally de-identified.

One logic function (:func:`export_report`) serves the command line and, later, the viewer's
Export dialog. It measures the label map, builds the report content, renders the PDF once and
writes each output atomically into a folder the user chose; a failure names the file and the
problem and leaves no partial file behind.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from pydicom.dataset import Dataset

from radview.core.labelmap import LabelMap
from radview.core.lesions import measure_liver, to_json
from radview.core.volume import Volume
from radview.inference.clinical import ClinicalValues, clinical_summary
from radview.report.content import HeaderField, build_report_content
from radview.report.deidentify import Deidentifier
from radview.report.dicom_seg import AlgorithmInfo, read_source_datasets, write_seg
from radview.report.dicom_sr import write_measurement_report
from radview.report.encapsulated_pdf import write_encapsulated_pdf
from radview.report.pdf import render_report_pdf
from radview.report.tables import (
    ExportError,
    write_export_bytes,
    write_findings_json,
    write_labels_nifti,
    write_lesion_csv,
)

__all__ = ["ExportResult", "export_report", "deidentification_secret"]

#: The fixed output names (never built from header strings).
OUTPUT_NAMES = {
    "pdf": "report.pdf",
    "seg": "seg.dcm",
    "sr": "sr.dcm",
    "pdf_dicom": "report_pdf.dcm",
    "labels": "labels.nii.gz",
    "json": "measurements.json",
    "csv": "lesions.csv",
}

_HEADER_KEYWORDS = {
    HeaderField.PATIENT_NAME: "PatientName",
    HeaderField.PATIENT_ID: "PatientID",
    HeaderField.BIRTH_DATE: "PatientBirthDate",
    HeaderField.SEX: "PatientSex",
    HeaderField.STUDY_DATE: "StudyDate",
    HeaderField.STUDY_DESCRIPTION: "StudyDescription",
    HeaderField.ACCESSION: "AccessionNumber",
    HeaderField.REFERRING_PHYSICIAN: "ReferringPhysicianName",
    HeaderField.INSTITUTION: "InstitutionName",
    HeaderField.SERIES_DESCRIPTION: "SeriesDescription",
    HeaderField.MODALITY: "Modality",
    HeaderField.KVP: "KVP",
    HeaderField.SLICE_THICKNESS: "SliceThickness",
    HeaderField.MANUFACTURER: "Manufacturer",
    HeaderField.CONVOLUTION_KERNEL: "ConvolutionKernel",
}


@dataclass
class ExportResult:
    files: dict[str, Path] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    lesion_count: int = 0
    deidentified: bool = False


def deidentification_secret(data_dir: Path) -> bytes:
    """This installation's de-identification key (created once, readable by the user only).

    The same key gives the same pseudonyms and UIDs every time, so repeated exports of a study
    stay consistent with each other; keeping it out of the outputs keeps them unlinkable for
    anyone without it.
    """
    path = Path(data_dir) / "deidentification.key"
    if path.exists():
        key = path.read_bytes()
        if len(key) >= 32:
            return key
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_bytes(32)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(key)
    return key


def export_report(
    image: Volume,
    labels: LabelMap,
    out_dir: Path,
    *,
    clinical_values: ClinicalValues | None = None,
    deidentify_with: bytes | None = None,
    institution: str | None = None,
    labels_from_model: bool = False,
    provenance: Sequence[Mapping[str, object]] = (),
    generated_at: datetime | None = None,
    staging: Mapping[str, object] | None = None,
    triage: Sequence[float] | None = None,
    unavailable: Mapping[str, str] | None = None,
    warnings: Sequence[str] = (),
) -> ExportResult:
    """Measure ``labels`` on ``image`` and write every output into ``out_dir``.

    ``clinical_values`` (entered by the user) give the clinical scores; BCLC uses the measured
    lesions' long axes.
    ``deidentify_with`` is the de-identification key: given, every output is de-identified
    (PS3.15 basic profile, consistent pseudonyms and UIDs) and the PDF shows no identifiers.
    ``provenance`` lists the models that made ``labels`` (id, version, sha256, provider,
    seconds) for the report's provenance table. ``staging`` (stage, probabilities, model) and
    ``triage`` (one probability per axial display slice, 0 = most inferior) fill the report's AI
    sections; None shows "not available", with the reason ``unavailable`` gives for
    ``"staging"`` or ``"triage"`` (the analysis's notes) or else "no model was run".
    ``warnings`` (the analysis's own, e.g. a model's field-of-view note) are listed first.
    DICOM outputs need a volume loaded from a single-frame DICOM series; for other sources
    they are skipped with a warning.
    """
    out_dir = Path(out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ExportError(out_dir, f"cannot create the folder ({error.strerror})") from error
    result = ExportResult(deidentified=deidentify_with is not None)
    findings = measure_liver(labels, image)
    result.lesion_count = len(findings.lesions)
    # the analysis's own warnings first (e.g. the body exceeded the model's field of view)
    result.warnings.extend(w for w in dict.fromkeys([*warnings, *image.warnings,
                                                     *findings.warnings]))
    deidentifier = Deidentifier(deidentify_with) if deidentify_with is not None else None
    clinical = None
    if clinical_values is not None:
        diameters = [lesion.long_axis.value for lesion in findings.lesions]
        clinical = clinical_summary(clinical_values, diameters)

    sources: list[Dataset | None] = []
    if image.source.kind == "dicom":
        try:
            sources = read_source_datasets(image)
        except ExportError as error:
            result.warnings.append(f"DICOM outputs skipped: {error}")
    else:
        result.warnings.append("DICOM outputs skipped: the image is not a DICOM series")
    first_source = next((ds for ds in sources if ds is not None), None)
    header_source = (deidentifier.deidentify(first_source)
                     if deidentifier is not None and first_source is not None else first_source)

    content = build_report_content(
        findings, image, labels, _header_of(header_source, image),
        clinical=clinical, provenance=provenance, warnings=result.warnings,
        staging=staging, triage=triage, unavailable=unavailable,
        deidentified=deidentifier is not None,
        generated_at=generated_at or datetime.now().replace(microsecond=0),
    )
    pdf_bytes = render_report_pdf(content, institution=institution)
    files = result.files
    files["pdf"] = write_export_bytes(out_dir / OUTPUT_NAMES["pdf"], pdf_bytes)
    files["labels"] = write_labels_nifti(labels.volume, out_dir / OUTPUT_NAMES["labels"])
    findings_json = to_json(findings)
    findings_json["series_uid"] = (deidentifier.uid(image.source.series_uid)
                                   if deidentifier is not None and image.source.series_uid
                                   else image.source.series_uid)
    if clinical is not None:
        findings_json["clinical"] = dict(clinical)
    findings_json["warnings"] = list(result.warnings)
    files["json"] = write_findings_json(findings_json, out_dir / OUTPUT_NAMES["json"])
    files["csv"] = write_lesion_csv(findings, out_dir / OUTPUT_NAMES["csv"])

    if first_source is not None:
        algorithm = AlgorithmInfo() if labels_from_model else None
        files["seg"] = write_seg(labels.volume, sources, labels.names,
                                 out_dir / OUTPUT_NAMES["seg"], algorithm=algorithm,
                                 deidentifier=deidentifier)
        files["sr"] = write_measurement_report(findings, sources, files["seg"],
                                               out_dir / OUTPUT_NAMES["sr"],
                                               algorithm=algorithm, deidentifier=deidentifier)
        files["pdf_dicom"] = write_encapsulated_pdf(
            pdf_bytes, first_source, out_dir / OUTPUT_NAMES["pdf_dicom"],
            title="Liver CT analysis report", deidentifier=deidentifier,
            derived_from=[ds for ds in sources if ds is not None])
    return result


def _header_of(dataset: Dataset | None, image: Volume) -> dict[str, str]:
    """Report header strings from a source image header (already de-identified if asked)."""
    header = {HeaderField.MODALITY.value: image.modality,
              HeaderField.SERIES_DESCRIPTION.value: image.source.description}
    if dataset is None:
        return header
    for key, keyword in _HEADER_KEYWORDS.items():
        value = dataset.get(keyword)
        if value not in (None, ""):
            header[key.value] = str(value)
    return header
