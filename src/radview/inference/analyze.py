"""One study, end to end: open a series, segment liver and tumour, measure, score, write.

:func:`analyze_study` is the logic behind ``radview analyze`` (and the viewer's "Analyse"
action): a pure function with ``progress``/``cancel`` (DESIGN rule 4). :func:`write_analysis`
writes ``measurements.json`` and ``labels.nii.gz`` (and, asked, the full report).

Layering: ``radview.inference`` sits below ``radview.report`` (import-linter "layers" contract),
so it cannot import the report writers. The composition root (``radview.cli``, ``radview.app``)
passes them in as :class:`AnalysisWriters`; :func:`write_analysis` only decides what to write.

``measurements.json`` holds no patient identifiers: ``series_uid`` (pseudonymised when
de-identifying), ``models`` (:func:`models_provenance`: id, version, sha256, task, provider,
seconds; the segmentation model also ``segments_tumour``), ``liver`` (``volume_ml``,
``centroid_lps``; ``null`` when no liver was found), ``lesions`` (as
:func:`radview.core.lesions.to_json`), ``tumor_burden_percent``, ``staging`` (``stage``,
``probabilities``, ``model``; ``null`` with a note in ``notes`` when no staging model is
installed or there is no liver), ``triage`` (``model`` and ``probabilities``, one per source
slice, voxels axis 0; ``null`` with a note likewise), ``clinical`` (when values were given) and
``warnings``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from radview.core.errors import LoadCancelled, NothingToOpenError, RadviewError
from radview.core.labelmap import LabelMap
from radview.core.lesions import LiverFindings, NoLiverError, measure_liver, to_json
from radview.core.volume import Volume
from radview.inference.clinical import ClinicalValues, clinical_summary
from radview.inference.manifest import ModelTask
from radview.inference.pipeline import SegmentationResult, segment, segments_tumour
from radview.inference.registry import RegisteredModel, RegistryResult, discover_models
from radview.inference.runtime import SessionCache
from radview.inference.staging import StagingResult, stage_liver
from radview.inference.triage import TriageNotApplicable, TriageResult, triage_slices

__all__ = [
    "NO_LIVER_WARNING",
    "NoModelError",
    "SeriesNotFoundError",
    "AnalysisResult",
    "AnalysisWriters",
    "WrittenAnalysis",
    "analyze_study",
    "FollowUpResults",
    "rank_segmentation_models",
    "run_staging_and_triage",
    "triage_in_display_order",
    "models_provenance",
    "report_inputs",
    "analysis_json",
    "write_analysis",
]

ProgressCallback = Callable[[int, int], None]
CancelCallback = Callable[[], bool]

NO_LIVER_WARNING = "no liver found"
MEASUREMENTS_NAME = "measurements.json"
LABELS_NAME = "labels.nii.gz"
_NOT_INSTALLED = "no {task} model installed"
_NOT_REQUESTED = "no {task} model among the requested models"
_NO_LIVER_STAGING = "not staged: no liver found"


class NoModelError(RadviewError):
    """No usable segmentation model is installed (or none of the requested ids is one)."""


class SeriesNotFoundError(RadviewError):
    """The requested series UID is not among the series found under the given paths."""


@dataclass
class AnalysisResult:
    """Everything :func:`analyze_study` found; ``findings`` is None when there is no liver."""

    image: Volume
    model: RegisteredModel
    segmentation: SegmentationResult
    findings: LiverFindings | None
    clinical: dict[str, Any] | None = None
    clinical_values: ClinicalValues | None = None
    #: ``{"staging": note, "triage": note}``: why there is no result for each
    notes: dict[str, str] = field(default_factory=dict)
    staging: StagingResult | None = None
    triage: TriageResult | None = None
    warnings: list[str] = field(default_factory=list)
    #: files under the paths that were not used (path, reason)
    problems: list[tuple[str, str]] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def labels(self) -> Volume:
        return self.segmentation.labels

    @property
    def liver_found(self) -> bool:
        return self.findings is not None


@dataclass(frozen=True)
class AnalysisWriters:
    """The report layer's writers, passed in by the composition root (see the module doc).

    ``write_json(document, path)`` and ``write_labels(volume, path)`` write atomically
    (:func:`radview.report.tables.write_findings_json`, :func:`~radview.report.tables.
    write_labels_nifti`); ``export_report`` is :func:`radview.report.export_study.export_report`;
    ``pseudonymise_uid(key, uid)`` maps a UID as the report's de-identification does.
    """

    write_json: Callable[[Mapping[str, object], Path], Path]
    write_labels: Callable[[Volume, Path], Path]
    export_report: Callable[..., Any] | None = None
    pseudonymise_uid: Callable[[bytes, str], str] | None = None


@dataclass
class WrittenAnalysis:
    files: dict[str, Path] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


# ---------------------------------------------------------------------------- analysis
def analyze_study(
    paths: Iterable[Path | str],
    *,
    series_uid: str | None = None,
    models: Sequence[str] | None = None,
    device: str = "auto",
    clinical_values: ClinicalValues | None = None,
    force: bool = False,
    progress: ProgressCallback | None = None,
    cancel: CancelCallback | None = None,
    sessions: SessionCache | None = None,
    registry: RegistryResult | None = None,
) -> AnalysisResult:
    """Open a series, segment it with the installed segmentation model, measure and score.

    Parameters
    ----------
    paths
        Files or folders holding the series (DICOM or a volume file).
    series_uid
        Analyse this series (the stack with the most slices if it has several); default the
        series :func:`radview.io.open_study.open_images` picks.
    models
        Only these model ids may be used; default any segmentation model (first by id).
    device
        ``"auto"``, ``"cpu"`` or ``"gpu"``.
    clinical_values
        Entered clinical values; the clinical scores are computed when given.
    force
        Run the model even if the series' modality is not the model's.
    progress, cancel
        ``progress(done, total)`` per phase (loading, then segmentation); ``cancel()`` stops
        with :class:`LoadCancelled`.
    sessions, registry
        A session cache and a discovery result to reuse; default new ones.

    Raises
    ------
    NoModelError
        No usable segmentation model (among ``models``) is installed.
    SeriesNotFoundError
        ``series_uid`` is not under ``paths``.
    NothingToOpenError
        Nothing under ``paths`` can be opened.
    ModalityMismatchError
        The series' modality is not the model's and ``force`` is False.
    ClinicalValueError
        A clinical value is implausible.
    """
    started = time.perf_counter()
    paths = [Path(p) for p in paths]
    registry = registry if registry is not None else discover_models()
    model = _segmentation_model(registry, models)
    image, problems = _open(paths, series_uid, progress, cancel)
    warnings = list(image.warnings)
    if cancel is not None and cancel():
        raise LoadCancelled("analysis cancelled")
    result = segment(image, model, sessions or SessionCache(), device=device,
                     progress=progress, cancel=cancel, force=force)
    warnings.extend(result.warnings)
    if result.fallback_reason:
        warnings.append(result.fallback_reason)
    findings: LiverFindings | None
    try:
        findings = measure_liver(result.labels, image)
    except NoLiverError:
        findings = None
        warnings.append(NO_LIVER_WARNING)
    else:
        warnings.extend(findings.warnings)
    clinical = None
    if clinical_values is not None:
        diameters = [lesion.long_axis.value for lesion in findings.lesions] if findings else None
        clinical = clinical_summary(clinical_values, diameters)
    follow_up = run_staging_and_triage(image, result.labels, registry, sessions or SessionCache(),
                                       device=device, models=models, force=force,
                                       liver_found=findings is not None, progress=progress,
                                       cancel=cancel)
    warnings.extend(follow_up.warnings)
    return AnalysisResult(image, model, result, findings, clinical, clinical_values,
                          notes=follow_up.notes, staging=follow_up.staging,
                          triage=follow_up.triage, warnings=warnings, problems=problems,
                          seconds=time.perf_counter() - started)


@dataclass
class FollowUpResults:
    """Staging and triage of one series; ``notes`` says why a result is missing."""

    staging: StagingResult | None = None
    triage: TriageResult | None = None
    notes: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


def _model_for(registry: RegistryResult, task: ModelTask,
               wanted: Sequence[str] | None) -> tuple[RegisteredModel | None, str]:
    installed = registry.for_task(task)
    if not installed:
        return None, _NOT_INSTALLED.format(task=task.value)
    if wanted:
        installed = [model for model in installed if model.id in wanted]
        if not installed:
            return None, _NOT_REQUESTED.format(task=task.value)
    return installed[0], ""


def run_staging_and_triage(
    image: Volume,
    labels: Volume,
    registry: RegistryResult,
    sessions: SessionCache,
    *,
    device: str = "auto",
    models: Sequence[str] | None = None,
    force: bool = False,
    liver_found: bool = True,
    progress: ProgressCallback | None = None,
    cancel: CancelCallback | None = None,
) -> FollowUpResults:
    """Run the installed (or requested) staging and triage models after the segmentation.

    Staging needs the liver (its slice range comes from ``labels``); triage runs on any axial
    series and reports ``progress(done, total)`` in slices. A missing model, a series that is
    not axial or a missing liver is a note, not an error; a model that fails is a warning and
    the other still runs.
    """
    out = FollowUpResults()
    staging_model, note = _model_for(registry, ModelTask.STAGING, models)
    if staging_model is None:
        out.notes[ModelTask.STAGING.value] = note
    elif not liver_found:
        out.notes[ModelTask.STAGING.value] = _NO_LIVER_STAGING
    else:
        try:
            out.staging = stage_liver(image, labels, staging_model, sessions, device=device,
                                      force=force)
        except RadviewError as error:
            out.notes[ModelTask.STAGING.value] = f"staging failed: {error}"
            out.warnings.append(f"staging failed: {error}")
        else:
            if out.staging is None:
                out.notes[ModelTask.STAGING.value] = _NO_LIVER_STAGING
            else:
                out.warnings.extend(out.staging.warnings)
                if out.staging.fallback_reason:
                    out.warnings.append(out.staging.fallback_reason)
    if cancel is not None and cancel():
        raise LoadCancelled("analysis cancelled")
    triage_model, note = _model_for(registry, ModelTask.TRIAGE, models)
    if triage_model is None:
        out.notes[ModelTask.TRIAGE.value] = note
    else:
        try:
            out.triage = triage_slices(image, triage_model, sessions, device=device,
                                       force=force, progress=progress, cancel=cancel)
        except TriageNotApplicable as error:
            out.notes[ModelTask.TRIAGE.value] = str(error)
        except LoadCancelled:
            raise
        except RadviewError as error:
            out.notes[ModelTask.TRIAGE.value] = f"triage failed: {error}"
            out.warnings.append(f"triage failed: {error}")
        else:
            out.warnings.extend(w for w in out.triage.warnings if w not in out.warnings)
            if out.triage.fallback_reason:
                out.warnings.append(out.triage.fallback_reason)
    return out


def triage_in_display_order(image: Volume, triage: TriageResult) -> list[float]:
    """Triage probabilities per axial display slice, 0 = most inferior (the report's order)."""
    values = [float(v) for v in triage.probabilities]
    return values if float(np.asarray(image.direction)[2, 2]) >= 0 else values[::-1]


def rank_segmentation_models(models: Sequence[RegisteredModel]) -> list[RegisteredModel]:
    """Segmentation models in the order they are offered: those that also segment tumours
    first (their output is what the lesion measurements need), then by id."""
    return sorted(models, key=lambda model: (not segments_tumour(model.manifest), model.id))


def _segmentation_model(registry: RegistryResult, wanted: Sequence[str] | None
                        ) -> RegisteredModel:
    candidates = rank_segmentation_models(registry.for_task(ModelTask.SEGMENTATION))
    if wanted:
        for model_id in wanted:
            if model_id not in registry.ids():
                registry.get(model_id)  # raises UnknownModelError explaining why
        candidates = [model for model in candidates if model.id in wanted]
        if not candidates:
            raise NoModelError(f"none of the models {', '.join(wanted)} is a segmentation "
                               "model (radview models lists what is available)")
    if not candidates:
        raise NoModelError("no segmentation model installed (radview models lists what is "
                           "available)")
    return candidates[0]


def _open(paths: list[Path], series_uid: str | None, progress: ProgressCallback | None,
          cancel: CancelCallback | None) -> tuple[Volume, list[tuple[str, str]]]:
    from radview.io.dicom_load import load_stack
    from radview.io.discover import discover
    from radview.io.open_study import open_images

    if series_uid is None:
        opened = open_images(paths, progress=progress, cancel=cancel)
        return opened.volume, [(p.path, p.reason) for p in opened.problems]
    found = discover(paths, progress=progress, cancel=cancel)
    stacks = [stack for stack in found.stacks if stack.series_uid == series_uid]
    if not stacks:
        available = ", ".join(sorted({s.series_uid for s in found.stacks})) or "none"
        if not found.stacks and not found.volume_files:
            raise NothingToOpenError(f"{', '.join(map(str, paths))}: no DICOM series found")
        raise SeriesNotFoundError(f"series {series_uid} is not under {', '.join(map(str, paths))} "
                                  f"(found: {available}; radview info lists them)")
    stacks.sort(key=lambda s: ("localizer" in s.part, -len(s.slots)))
    loaded = load_stack(stacks[0], progress=progress, cancel=cancel)
    problems = [(p.path, p.reason) for p in (*found.problems, *loaded.problems)]
    return loaded.volume, problems


# ---------------------------------------------------------------------------- output
def models_provenance(model: RegisteredModel, segmentation: SegmentationResult,
                      staging: StagingResult | None, triage: TriageResult | None
                      ) -> list[dict[str, object]]:
    """One entry per model that ran (id, version, sha256, task, provider, seconds, fallback
    reason): the segmentation model first (with ``segments_tumour``: whether it can find
    lesions at all; with a lesion filter, its ``lesion_filter_threshold``, how many
    ``lesions_set_aside`` in this scan and where: ``set_aside``), then staging and triage when
    they ran."""
    manifest = model.manifest
    entries: list[dict[str, object]] = [{
        "id": manifest.id, "version": manifest.version, "sha256": manifest.sha256,
        "task": manifest.task.value, "segments_tumour": segments_tumour(manifest),
        "provider": segmentation.provider, "seconds": segmentation.seconds,
        "fallback_reason": segmentation.fallback_reason,
    }]
    if manifest.lesion_filter is not None and segmentation.set_aside is not None:
        entries[0].update(
            lesion_filter_threshold=manifest.lesion_filter.threshold,
            lesions_set_aside=len(segmentation.set_aside),
            set_aside=[{"slice_index": c.slice_index, "position_lps": list(c.position_lps),
                        "volume_ml": c.volume_ml, "lesion_probability": c.lesion_probability}
                       for c in segmentation.set_aside])
    for task, run in (("staging", staging), ("triage", triage)):
        if run is not None:
            entries.append({
                "id": run.model_id, "version": run.model_version, "sha256": run.model_sha256,
                "task": task, "provider": run.provider, "seconds": run.seconds,
                "fallback_reason": run.fallback_reason})
    return entries


def report_inputs(image: Volume, model: RegisteredModel, segmentation: SegmentationResult,
                  follow_up: FollowUpResults) -> dict[str, object]:
    """The keyword arguments that tell the report layer's ``export_report`` the labels are a
    model's: ``labels_from_model`` (SEG/SR name the algorithm), ``provenance``, ``staging``
    and ``triage`` (in display order), and ``unavailable``: why staging or triage has no
    result. The same for ``radview analyze`` and the viewer."""
    staging, triage = follow_up.staging, follow_up.triage
    return {
        "labels_from_model": True,
        "provenance": models_provenance(model, segmentation, staging, triage),
        "staging": staging.to_json() if staging is not None else None,
        "triage": triage_in_display_order(image, triage) if triage is not None else None,
        "unavailable": dict(follow_up.notes),
    }


def analysis_json(result: AnalysisResult, *, series_uid: str | None = None) -> dict[str, object]:
    """``measurements.json`` content (see the module docstring); no patient identifiers.

    ``series_uid`` replaces the image's (a pseudonym when de-identifying).
    """
    document: dict[str, object]
    if result.findings is not None:
        document = to_json(result.findings)
    else:
        document = {"liver": None, "lesions": [], "tumor_burden_percent": None,
                    "total_tumour_volume_ml": None}
    document["series_uid"] = (series_uid if series_uid is not None
                              else result.image.source.series_uid)
    document["models"] = models_provenance(result.model, result.segmentation, result.staging,
                                           result.triage)
    document["staging"] = result.staging.to_json() if result.staging is not None else None
    document["triage"] = None if result.triage is None else {
        "model": f"{result.triage.model_id} {result.triage.model_version}",
        "slice_axis": "voxels axis 0 of the source series",
        "probabilities": [round(float(p), 4) for p in result.triage.probabilities]}
    document["notes"] = dict(result.notes)
    if result.clinical is not None:
        document["clinical"] = dict(result.clinical)
    document["warnings"] = list(dict.fromkeys(result.warnings))
    return document


def write_analysis(
    result: AnalysisResult,
    out_dir: str | Path,
    *,
    writers: AnalysisWriters,
    report: bool = False,
    deidentify_with: bytes | None = None,
) -> WrittenAnalysis:
    """Write ``labels.nii.gz`` and ``measurements.json`` (and the full report) to ``out_dir``.

    With ``report`` the report layer's ``export_report`` runs first (PDF, SEG, SR, encapsulated
    PDF, CSV, ...); ``measurements.json`` is written after it so the file with the models'
    provenance is the one that stays. Without a liver there is nothing to report: the report
    is skipped with a warning, the JSON and the (empty) label map are still written.

    Raises
    ------
    ExportError
        A file cannot be written.
    ValueError
        ``report`` is asked but ``writers`` has no ``export_report``.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = WrittenAnalysis()
    if report:
        if writers.export_report is None:
            raise ValueError("writers.export_report is needed to write the report")
        if result.findings is None:
            written.warnings.append(f"report not written: {NO_LIVER_WARNING}")
        else:
            exported = writers.export_report(
                result.image, LabelMap.liver(result.labels), out_dir,
                clinical_values=result.clinical_values, deidentify_with=deidentify_with,
                warnings=result.warnings,
                **report_inputs(result.image, result.model, result.segmentation,
                                FollowUpResults(result.staging, result.triage, result.notes)))
            written.files.update(exported.files)
            written.warnings.extend(w for w in exported.warnings if w not in result.warnings)
    series_uid = result.image.source.series_uid
    if deidentify_with is not None and series_uid:
        if writers.pseudonymise_uid is None:
            raise ValueError("writers.pseudonymise_uid is needed to de-identify")
        series_uid = writers.pseudonymise_uid(deidentify_with, series_uid)
    written.files["labels"] = writers.write_labels(result.labels, out_dir / LABELS_NAME)
    document = analysis_json(result, series_uid=series_uid)
    document["warnings"] = list(dict.fromkeys([*document["warnings"], *written.warnings]))
    written.files["json"] = writers.write_json(document, out_dir / MEASUREMENTS_NAME)
    return written
