"""What a liver CT report says, as data: :class:`ReportContent` and :func:`build_report_content`.

The content model holds numbers with units (:class:`~radview.core.measurements.Measurement`),
plain strings exactly as they came in (never markup: the renderer escapes them), enums and
rendered figures (:mod:`radview.report.figures`). Nothing is formatted or rounded here
(DESIGN rule 8); :mod:`radview.report.pdf` is the last step. A DICOM SR or JSON writer can
read the same object.

RECIST 1.1 target lesions (Eisenhauer et al., Eur J Cancer 2009;45:228-247)
---------------------------------------------------------------------------
* *Measurable*: long axis >= 10 mm, or >= 2 x the slice spacing when slices are more than
  5 mm apart (the RECIST minimum for CT); the slice spacing of the image stands in for the
  reconstructed slice thickness.
* *Targets*: the measurable lesions with the longest long axes, at most
  :data:`RECIST_MAX_TARGETS_PER_ORGAN` (2) per organ and :data:`RECIST_MAX_TARGETS` (5) in
  all. Every lesion of a liver/tumour model is a liver lesion; a lesion that does not touch the
  liver (``Lesion.in_liver`` False, most likely a false positive) has no known organ and is never
  a target.
* *Sum of diameters*: the sum of the targets' long axes (no lymph nodes here, so no short
  axes).

The lesion table keeps :func:`measure_liver`'s order (volume, largest first; lesion ids 1..n).

De-identified reports
---------------------
With ``deidentified=True`` the identifying header fields (patient name, ID, birth date,
accession number, referring physician) are dropped from the content, whatever the header says,
and the report prints "de-identified" in their place. Everything else is shown as given: date
shifting and the rest of the DICOM de-identification profile are the de-identifier's job.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from radview import __version__
from radview.core.labelmap import LabelMap, LiverLabel
from radview.core.lesions import Lesion, LiverFindings
from radview.core.measurements import Measurement
from radview.core.volume import ViewPlane, Volume
from radview.core.windowing import WindowLevel
from radview.inference.pipeline import TUMOUR_MIN_VOLUME_MM3
from radview.inference.staging import close_alternatives
from radview.report.figures import (
    KeyImage,
    RenderedImage,
    default_window,
    key_images,
    probability_chart,
    triage_plot,
)

__all__ = [
    "DECISION_SUPPORT_STATEMENT",
    "NO_STAGING_MODEL",
    "NO_TRIAGE_MODEL",
    "RECIST_MAX_TARGETS",
    "RECIST_MAX_TARGETS_PER_ORGAN",
    "RECIST_MIN_LONG_AXIS_MM",
    "HeaderField",
    "PatientStudy",
    "LesionRow",
    "RecistSummary",
    "FindingsSection",
    "StagingSection",
    "ScoreLine",
    "BclcSection",
    "ClinicalSection",
    "TriageSection",
    "ProvenanceEntry",
    "ReportContent",
    "build_report_content",
    "recist_targets",
    "header_from_instance",
]

DECISION_SUPPORT_STATEMENT = (
    "Decision support only: computer-generated measurements and AI outputs must be reviewed "
    "and confirmed by a radiologist; not a diagnosis."
)
#: When the caller does not say why there is no result (``unavailable``): the models may be
#: installed and not run (labels drawn by hand, or a run that left a model out).
NO_STAGING_MODEL = "not available: no staging model was run"
NO_TRIAGE_MODEL = "not available: no triage model was run"
RECIST_MIN_LONG_AXIS_MM = 10.0
RECIST_MAX_TARGETS_PER_ORGAN = 2
RECIST_MAX_TARGETS = 5
#: Above this slice spacing RECIST's minimum measurable size is twice the spacing.
_RECIST_THICK_SLICE_MM = 5.0
_LIVER = "liver"
_TRIAGE_THRESHOLD = 0.5
_SHA_PREFIX = 12
_UNIT_MM = "mm"
_UNIT_S = "s"


class HeaderField(StrEnum):
    """Keys of the ``header`` mapping :func:`build_report_content` understands.

    Any other key is shown as an acquisition detail under its own name (``"Contrast"``).
    """

    PATIENT_NAME = "patient_name"
    PATIENT_ID = "patient_id"
    BIRTH_DATE = "birth_date"
    SEX = "sex"
    STUDY_DATE = "study_date"
    STUDY_DESCRIPTION = "study_description"
    ACCESSION = "accession"
    REFERRING_PHYSICIAN = "referring_physician"
    INSTITUTION = "institution"
    SERIES_DESCRIPTION = "series_description"
    MODALITY = "modality"
    KVP = "kvp"
    SLICE_THICKNESS = "slice_thickness"
    MANUFACTURER = "manufacturer"
    CONVOLUTION_KERNEL = "convolution_kernel"
    CONTRAST = "contrast"


_IDENTIFYING = (HeaderField.PATIENT_NAME, HeaderField.PATIENT_ID, HeaderField.BIRTH_DATE,
                HeaderField.ACCESSION, HeaderField.REFERRING_PHYSICIAN)
#: Acquisition details with a fixed label (other unknown keys keep their own name).
_ACQUISITION_LABELS = {
    HeaderField.KVP: "kVp",
    HeaderField.SLICE_THICKNESS: "Slice thickness",
    HeaderField.MANUFACTURER: "Scanner",
    HeaderField.CONVOLUTION_KERNEL: "Kernel",
    HeaderField.CONTRAST: "Contrast",
}


# ---------------------------------------------------------------------------- data model
@dataclass(frozen=True)
class PatientStudy:
    """Header strings as given (``None``: not known, or removed for de-identification)."""

    patient_name: str | None
    patient_id: str | None
    birth_date: str | None
    sex: str | None
    study_date: str | None
    study_description: str | None
    accession: str | None
    referring_physician: str | None
    institution: str | None
    series_description: str | None
    modality: str | None
    #: (label, value) pairs: kVp, slice thickness, matrix, voxel size, ...
    acquisition: tuple[tuple[str, str], ...]
    deidentified: bool


@dataclass(frozen=True)
class LesionRow:
    """One row of the lesion table."""

    lesion_id: int
    lobe: str | None  # "right" / "left"; None outside the liver
    in_liver: bool
    long_axis: Measurement
    short_axis: Measurement
    max_diameter: Measurement
    volume: Measurement
    mean: Measurement
    axial_slice: int  # display slice number of the RECIST measurement
    target: bool
    measurable: bool


@dataclass(frozen=True)
class RecistSummary:
    target_ids: tuple[int, ...]  # largest long axis first
    sum_of_diameters: Measurement
    measurable_minimum: Measurement
    max_targets_per_organ: int
    rule: str


@dataclass(frozen=True)
class FindingsSection:
    liver_volume: Measurement
    total_tumour_volume: Measurement
    tumour_burden: Measurement
    lesions: tuple[LesionRow, ...]
    recist: RecistSummary
    #: (quantity, how it was measured)
    methods: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class StagingSection:
    """AI staging: class probabilities from a staging model, or why there are none."""

    available: bool
    predicted: str | None
    probabilities: tuple[tuple[str, float], ...]
    model: str | None
    chart: RenderedImage | None
    unavailable_reason: str | None
    #: other stages within CLOSE_CALL_MARGIN of the predicted one, most probable first
    close: tuple[tuple[str, float], ...] = ()


@dataclass(frozen=True)
class ScoreLine:
    name: str  # "Child-Pugh", "MELD-Na", "ALBI"
    value: float
    grade: str | None  # class / grade, None when the score has none
    citation: str


@dataclass(frozen=True)
class BclcSection:
    stage: str
    label: str
    reasons: tuple[str, ...]
    caveats: tuple[str, ...]
    treatment_reference: tuple[str, ...]
    disclaimer: str
    citation: str


@dataclass(frozen=True)
class ClinicalSection:
    scores: tuple[ScoreLine, ...]
    bclc: BclcSection | None
    #: (score, fields it lacks) for the scores that could not be computed
    missing: tuple[tuple[str, tuple[str, ...]], ...]


@dataclass(frozen=True)
class TriageSection:
    """Per-slice triage probabilities (index = axial display slice, 0 = most inferior)."""

    probabilities: tuple[float, ...]
    threshold: float
    slices_above: int
    max_probability: float
    max_slice: int
    chart: RenderedImage


@dataclass(frozen=True)
class ProvenanceEntry:
    component: str
    version: str | None
    sha256_prefix: str | None
    provider: str | None
    run_time: Measurement | None  # seconds


@dataclass(frozen=True)
class ReportContent:
    """Everything one liver CT report shows, as data."""

    title: str
    header: PatientStudy
    findings: FindingsSection
    key_images: tuple[KeyImage, ...]
    staging: StagingSection
    clinical: ClinicalSection | None
    triage: TriageSection | None
    provenance: tuple[ProvenanceEntry, ...]
    warnings: tuple[str, ...]
    generated_at: datetime
    radview_version: str
    disclaimer: str = DECISION_SUPPORT_STATEMENT
    #: why ``triage`` is None
    triage_unavailable_reason: str = NO_TRIAGE_MODEL
    window: WindowLevel | None = None  # of the key images


# ---------------------------------------------------------------------------- building
def build_report_content(
    findings: LiverFindings,
    image: Volume,
    labels: Volume | LabelMap,
    header: Mapping[str, object],
    *,
    clinical: Mapping[str, Any] | None = None,
    staging: Mapping[str, Any] | None = None,
    triage: Sequence[float] | None = None,
    unavailable: Mapping[str, str] | None = None,
    provenance: Sequence[Mapping[str, Any]] = (),
    warnings: Sequence[str] = (),
    deidentified: bool = False,
    generated_at: datetime,
    title: str = "Liver CT analysis",
    key_image_planes: Sequence[ViewPlane] = (ViewPlane.AXIAL, ViewPlane.CORONAL),
    max_key_images: int = 6,
    key_image_format: str = "JPEG",
    key_image_px: int = 512,
    liver_label: int = LiverLabel.LIVER,
    tumour_label: int = LiverLabel.TUMOUR,
) -> ReportContent:
    """Collect everything a report shows and render its figures.

    Parameters
    ----------
    findings
        :func:`radview.core.lesions.measure_liver` of ``labels`` on ``image``.
    image, labels
        The CT (HU) and its label map on the same grid, for the key images.
    header
        Patient/study strings by :class:`HeaderField` key (missing keys: unknown). Values are
        kept verbatim (``str()`` of non-strings); DICOM dates ``YYYYMMDD`` are left as they
        are and formatted by the renderer.
    clinical
        :func:`radview.inference.clinical.clinical_summary` output, or None.
    staging
        ``{"probabilities": {class: p, ...} or [[class, p], ...], "stage": predicted class
        (default: the most probable), "model": model id}``; None when no staging model ran.
    triage
        One probability per axial display slice (0 = most inferior), or None.
    unavailable
        Why there is no ``"staging"`` or ``"triage"`` result (the analysis's notes, e.g. "no
        staging model among the requested models"); without one the report says no model
        was run.
    provenance
        One mapping per model run: ``model_id``, ``version``, ``sha256`` (a prefix is shown),
        ``provider``, ``seconds``; radview's own version is always added.
    warnings
        Loading/geometry warnings; the image's, the label map's and the findings' warnings are
        added (in that order after these, without duplicates).
    deidentified
        Drop the identifying header fields (see the module docstring).
    generated_at
        When the report was made (shown on every page).
    key_image_planes, max_key_images, key_image_format, key_image_px
        Key images: these planes for each of the largest lesions, at most this many images,
        ``"JPEG"`` or ``"PNG"``, pixels of the longer side.

    Raises
    ------
    ValueError
        ``labels`` is not on ``image``'s grid, or a staging/triage probability is not a
        finite number in 0..1.
    """
    label_volume = labels.volume if isinstance(labels, LabelMap) else labels
    if label_volume.shape != image.shape:
        raise ValueError(f"labels {label_volume.shape} are not on the image grid {image.shape}")
    all_warnings = _unique([*warnings, *image.warnings, *label_volume.warnings,
                            *findings.warnings])
    rows, recist = _lesion_rows(findings.lesions, image)
    window = default_window(image)
    images = key_images(image, label_volume, findings.lesions, planes=key_image_planes,
                        max_images=max_key_images, window=window, liver_label=liver_label,
                        tumour_label=tumour_label, size_px=key_image_px,
                        image_format=key_image_format)
    triage_section = None
    if triage is not None:
        target_slices = [row.axial_slice for row in rows if row.target]
        triage_section = _triage(triage, target_slices)
        axial_count = image.plane_geometry(ViewPlane.AXIAL).slice_count
        if len(triage_section.probabilities) != axial_count:
            all_warnings.append(
                f"triage has {len(triage_section.probabilities)} slice probabilities but the "
                f"series has {axial_count} axial slices"
            )
    return ReportContent(
        title=title,
        header=_patient_study(header, image, deidentified),
        findings=FindingsSection(
            liver_volume=findings.liver_volume,
            total_tumour_volume=findings.total_tumour_volume,
            tumour_burden=findings.tumour_burden,
            lesions=rows,
            recist=recist,
            methods=_methods(findings, _lesion_method(provenance)),
        ),
        key_images=images,
        staging=_staging(staging, _unavailable(unavailable, "staging", NO_STAGING_MODEL)),
        clinical=None if clinical is None else _clinical(clinical),
        triage=triage_section,
        triage_unavailable_reason=_unavailable(unavailable, "triage", NO_TRIAGE_MODEL),
        provenance=_provenance(provenance),
        warnings=tuple(all_warnings),
        generated_at=generated_at,
        radview_version=__version__,
        window=window,
    )


def recist_targets(
    lesions: Sequence[Lesion], *, slice_spacing_mm: float = 0.0
) -> tuple[tuple[int, ...], Measurement, Measurement]:
    """RECIST 1.1 target lesion ids (longest first), their sum of diameters and the minimum.

    See the module docstring for the rule. Returns ``(target ids, sum of long axes,
    measurable minimum)``; the sum is 0 mm when nothing is measurable.
    """
    minimum = RECIST_MIN_LONG_AXIS_MM
    if slice_spacing_mm > _RECIST_THICK_SLICE_MM:
        minimum = 2.0 * slice_spacing_mm
    by_organ: dict[str, int] = {}
    targets: list[Lesion] = []
    candidates = sorted(
        (lesion for lesion in lesions if lesion.in_liver and lesion.long_axis.value >= minimum),
        key=lambda lesion: (-lesion.long_axis.value, lesion.id),
    )
    for lesion in candidates:
        organ = _LIVER  # every lesion of a liver/tumour model that touches the liver
        if by_organ.get(organ, 0) >= RECIST_MAX_TARGETS_PER_ORGAN:
            continue
        if len(targets) >= RECIST_MAX_TARGETS:
            break
        by_organ[organ] = by_organ.get(organ, 0) + 1
        targets.append(lesion)
    total = math.fsum(lesion.long_axis.value for lesion in targets)
    return (
        tuple(lesion.id for lesion in targets),
        Measurement("Sum of diameters (RECIST 1.1 target lesions)", total, _UNIT_MM,
                    "sum of the target lesions' long axes"),
        Measurement("Minimum measurable long axis", minimum, _UNIT_MM,
                    "RECIST 1.1: 10 mm, or twice the slice spacing above 5 mm"),
    )


def _lesion_rows(lesions: Sequence[Lesion], image: Volume
                 ) -> tuple[tuple[LesionRow, ...], RecistSummary]:
    slice_spacing = _slice_spacing(image)
    target_ids, total, minimum = recist_targets(lesions, slice_spacing_mm=slice_spacing)
    axial = image.plane_geometry(ViewPlane.AXIAL)
    rows = []
    for lesion in lesions:
        if axial.normal_axis == 0:
            axial_slice = (axial.slice_count - 1 - lesion.recist_slice if axial.normal_flipped
                           else lesion.recist_slice)
        else:
            axial_slice = image.plane_index_of_world(ViewPlane.AXIAL, lesion.centroid_lps)
        rows.append(LesionRow(
            lesion_id=lesion.id,
            lobe=None if lesion.lobe is None else str(lesion.lobe.value),
            in_liver=lesion.in_liver,
            long_axis=lesion.long_axis,
            short_axis=lesion.short_axis,
            max_diameter=lesion.max_diameter,
            volume=lesion.volume,
            mean=lesion.mean,
            axial_slice=axial_slice,
            target=lesion.id in target_ids,
            measurable=lesion.in_liver and lesion.long_axis.value >= minimum.value,
        ))
    rule = (
        f"RECIST 1.1: measurable = long axis >= {minimum.value:g} mm; targets = the longest "
        f"measurable lesions, at most {RECIST_MAX_TARGETS_PER_ORGAN} per organ "
        f"({RECIST_MAX_TARGETS} in all); lesions outside the liver are never targets"
    )
    return tuple(rows), RecistSummary(target_ids, total, minimum, RECIST_MAX_TARGETS_PER_ORGAN,
                                      rule)


def _slice_spacing(image: Volume) -> float:
    """Spacing of the acquisition slices (array axis 0) in mm."""
    return float(image.spacing[2])


def _lesion_method(provenance: Sequence[Mapping[str, Any]]) -> str | None:
    """How the lesions were found, when the provenance names the segmentation model that made
    the labels: what it can never report (everything, for a liver-only model; otherwise
    tumour regions below the pipeline's speck threshold, and those its lesion filter set
    aside)."""
    for entry in provenance:
        if entry.get("task") != "segmentation":
            continue
        model = _text(entry.get("model_id") or entry.get("id")) or "a segmentation model"
        if entry.get("segments_tumour") is False:
            return (f"automatic liver segmentation ({model}); this model does not segment "
                    "tumours, so it reports no lesion, whatever the liver holds")
        diameter = 2 * (3 * TUMOUR_MIN_VOLUME_MM3 / (4 * math.pi)) ** (1 / 3)
        text = (f"automatic segmentation ({model}); tumour regions smaller than "
                f"{TUMOUR_MIN_VOLUME_MM3:g} mm\u00b3 (a sphere {diameter:.1f} mm across) are not "
                "reported")
        threshold, set_aside = entry.get("lesion_filter_threshold"), entry.get(
            "lesions_set_aside")
        if isinstance(threshold, int | float) and isinstance(set_aside, int):
            text += (f", nor candidate regions its lesion filter gave less than a "
                     f"{100 * threshold:.0f} % probability of being a lesion ({set_aside} in "
                     "this scan)")
        return text
    return None


def _methods(findings: LiverFindings, lesion_method: str | None = None
             ) -> tuple[tuple[str, str], ...]:
    methods = [("Liver volume", findings.liver_volume.method),
               ("Tumour burden", findings.tumour_burden.method)]
    if lesion_method is not None:  # a reader must know what the AI can never report
        methods.append(("Lesions found", lesion_method))
    if findings.lesions:
        first = findings.lesions[0]
        methods += [
            ("Long axis", first.long_axis.method),
            ("Short axis", first.short_axis.method),
            ("Maximum 3D diameter", first.max_diameter.method),
            ("Volume", first.volume.method),
            ("Mean", first.mean.method),
            ("Lobe", "approximate: a sagittal plane with 60 % of the liver volume on the "
                     "patient's right; the side of the lesion centroid"),
        ]
    return tuple(methods)


def _text(value: object) -> str | None:
    """A header value as a string (None for missing/empty)."""
    if value is None:
        return None
    text = value if isinstance(value, str) else str(value)
    return text if text.strip() else None


def _patient_study(header: Mapping[str, object], image: Volume,
                   deidentified: bool) -> PatientStudy:
    values = {str(key): _text(value) for key, value in header.items()}
    if deidentified:
        for key in _IDENTIFYING:
            values.pop(key.value, None)
    known = {f.value for f in HeaderField}
    acquisition: list[tuple[str, str]] = []
    for key, label in _ACQUISITION_LABELS.items():
        text = values.get(key.value)
        if text is not None:
            acquisition.append((label, text))
    if values.get(HeaderField.SLICE_THICKNESS.value) is None:
        acquisition.append(("Slice spacing", f"{_slice_spacing(image):g} mm"))
    k, j, i = image.shape
    sx, sy, _sz = image.spacing
    acquisition.append(("Matrix", f"{i} x {j} x {k}"))
    acquisition.append(("Pixel spacing", f"{sx:g} x {sy:g} mm"))
    for key, text in values.items():
        if key not in known and text is not None:
            acquisition.append((key, text))
    return PatientStudy(
        patient_name=values.get(HeaderField.PATIENT_NAME.value),
        patient_id=values.get(HeaderField.PATIENT_ID.value),
        birth_date=values.get(HeaderField.BIRTH_DATE.value),
        sex=values.get(HeaderField.SEX.value),
        study_date=values.get(HeaderField.STUDY_DATE.value),
        study_description=values.get(HeaderField.STUDY_DESCRIPTION.value),
        accession=values.get(HeaderField.ACCESSION.value),
        referring_physician=values.get(HeaderField.REFERRING_PHYSICIAN.value),
        institution=values.get(HeaderField.INSTITUTION.value),
        series_description=values.get(HeaderField.SERIES_DESCRIPTION.value),
        modality=values.get(HeaderField.MODALITY.value) or image.modality or None,
        acquisition=tuple(acquisition),
        deidentified=deidentified,
    )


def _probability(value: object, what: str) -> float:
    try:
        p = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ValueError(f"{what}: {value!r} is not a number") from None
    if not (math.isfinite(p) and 0.0 <= p <= 1.0):
        raise ValueError(f"{what}: {value!r} is not a probability in 0..1")
    return p


def _unavailable(notes: Mapping[str, str] | None, task: str, default: str) -> str:
    note = (notes or {}).get(task)
    return f"not available: {note}" if note else default


def _staging(staging: Mapping[str, Any] | None, unavailable_reason: str) -> StagingSection:
    if staging is None:
        return StagingSection(False, None, (), None, None, unavailable_reason)
    raw = staging.get("probabilities", {})
    pairs = list(raw.items()) if isinstance(raw, Mapping) else [tuple(item) for item in raw]
    probabilities = tuple((str(name), _probability(p, f"staging probability of {name}"))
                          for name, p in pairs)
    if not probabilities:
        return StagingSection(False, None, (), _text(staging.get("model")), None,
                              "not available: the staging model returned no probabilities")
    predicted = _text(staging.get("stage"))
    if predicted is None:
        predicted = max(probabilities, key=lambda pair: pair[1])[0]
    names = [name for name, _p in probabilities]
    by_name = dict(probabilities)
    close = tuple((name, by_name[name]) for name in close_alternatives(by_name, predicted))
    shown = [predicted, *(name for name, _p in close)]
    chart = probability_chart(names, [p for _name, p in probabilities],
                              highlight=[names.index(name) for name in shown if name in names])
    return StagingSection(True, predicted, probabilities, _text(staging.get("model")), chart, None,
                          close)


def _clinical(summary: Mapping[str, Any]) -> ClinicalSection:
    scores: list[ScoreLine] = []
    child_pugh = summary.get("child_pugh")
    if child_pugh:
        scores.append(ScoreLine("Child-Pugh", float(child_pugh["score"]),
                                f"class {child_pugh['class']}", str(child_pugh["citation"])))
    meld = summary.get("meld_na")
    if meld:
        scores.append(ScoreLine("MELD-Na", float(meld["score"]), None, str(meld["citation"])))
    albi = summary.get("albi_grade")
    if albi:
        scores.append(ScoreLine("ALBI", float(albi["score"]), f"grade {albi['grade']}",
                                str(albi["citation"])))
    bclc = summary.get("bclc")
    bclc_section = None
    if bclc:
        bclc_section = BclcSection(
            stage=str(bclc["stage"]),
            label=str(bclc["label"]),
            reasons=tuple(str(r) for r in bclc.get("reasons", ())),
            caveats=tuple(str(c) for c in bclc.get("caveats", ())),
            treatment_reference=tuple(str(t) for t in bclc.get("treatment_reference", ())),
            disclaimer=str(bclc["disclaimer"]),
            citation=str(bclc["citation"]),
        )
    missing = tuple(
        (str(name), tuple(str(f) for f in fields_))
        for name, fields_ in (summary.get("missing") or {}).items()
        if fields_
    )
    return ClinicalSection(tuple(scores), bclc_section, missing)


def _triage(values: Sequence[float], marks: Sequence[int]) -> TriageSection:
    probabilities = tuple(_probability(v, f"triage probability of slice {i}")
                          for i, v in enumerate(values))
    if not probabilities:
        raise ValueError("triage: no slice probabilities")
    best = max(range(len(probabilities)), key=lambda i: probabilities[i])
    return TriageSection(
        probabilities=probabilities,
        threshold=_TRIAGE_THRESHOLD,
        slices_above=sum(p >= _TRIAGE_THRESHOLD for p in probabilities),
        max_probability=probabilities[best],
        max_slice=best,
        chart=triage_plot(probabilities, threshold=_TRIAGE_THRESHOLD, marks=marks),
    )


def _provenance(entries: Sequence[Mapping[str, Any]]) -> tuple[ProvenanceEntry, ...]:
    rows = []
    for entry in entries:
        sha = _text(entry.get("sha256") or entry.get("sha256_prefix"))
        seconds = entry.get("seconds")
        run_time = None
        if seconds is not None:
            value = float(seconds)
            if math.isfinite(value):
                run_time = Measurement("Run time", value, _UNIT_S, "wall clock of the model run")
        rows.append(ProvenanceEntry(
            component=_text(entry.get("model_id") or entry.get("id")) or "unnamed model",
            version=_text(entry.get("version")),
            sha256_prefix=None if sha is None else sha[:_SHA_PREFIX],
            provider=_text(entry.get("provider")),
            run_time=run_time,
        ))
    rows.append(ProvenanceEntry("radview", __version__, None, None, None))
    return tuple(rows)


def _unique(items: Sequence[str]) -> list[str]:
    seen: set[str] = set()
    result = []
    for item in items:
        if item not in seen:
            seen.add(item)
            result.append(item)
    return result


def header_from_instance(instance: object) -> dict[str, str]:
    """Report header strings from a DICOM header object (e.g. ``SeriesStack.first_instance``).

    Reads the attributes ``patient_name``, ``patient_id``, ``patient_birth_date``,
    ``patient_sex``, ``study_date``, ``study_description``, ``accession_number``,
    ``referring_physician``, ``series_description``, ``modality`` where present.
    """
    sources = {
        HeaderField.PATIENT_NAME: "patient_name",
        HeaderField.PATIENT_ID: "patient_id",
        HeaderField.BIRTH_DATE: "patient_birth_date",
        HeaderField.SEX: "patient_sex",
        HeaderField.STUDY_DATE: "study_date",
        HeaderField.STUDY_DESCRIPTION: "study_description",
        HeaderField.ACCESSION: "accession_number",
        HeaderField.REFERRING_PHYSICIAN: "referring_physician",
        HeaderField.SERIES_DESCRIPTION: "series_description",
        HeaderField.MODALITY: "modality",
    }
    header = {}
    for key, attribute in sources.items():
        text = _text(getattr(instance, attribute, None))
        if text is not None:
            header[key.value] = text
    return header
