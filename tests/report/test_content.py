"""The report content model: RECIST targets, sections as data, de-identification."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from types import SimpleNamespace

import pytest

from radview import __version__
from radview.core.lesions import Lesion, Lobe, measure_liver
from radview.core.measurements import Measurement
from radview.core.volume import ViewPlane
from radview.inference.clinical import ClinicalValues, clinical_summary
from radview.io.dicom_load import load_stack
from radview.io.discover import discover
from radview.io.open_study import load_label_map
from radview.io.sample_study import write_sample_study
from radview.report.content import (
    DECISION_SUPPORT_STATEMENT,
    NO_STAGING_MODEL,
    NO_TRIAGE_MODEL,
    RECIST_MAX_TARGETS_PER_ORGAN,
    ReportContent,
    build_report_content,
    header_from_instance,
    recist_targets,
)

GENERATED = datetime(2026, 3, 4, 5, 6, tzinfo=UTC)
HEADER = {
    "patient_name": "Doe^Jane",
    "patient_id": "PID-12345",
    "birth_date": "19600101",
    "sex": "F",
    "study_date": "20250102",
    "study_description": "CT ABDOMEN <b>&",
    "accession": "ACC-999",
    "referring_physician": "Who^Doctor",
    "institution": "Example Hospital",
    "series_description": "Axial 5 mm",
    "kvp": 120,
    "Contrast phase": "portal venous",
}


def _mm(value: float) -> Measurement:
    return Measurement("Long axis (RECIST 1.1)", value, "mm", "test")


def _lesion(lesion_id: int, long_axis: float, *, in_liver: bool = True) -> Lesion:
    point = (0.0, 0.0, 0.0)
    return Lesion(
        id=lesion_id, voxel_count=10, volume=Measurement("Volume", 1.0, "mL", "test"),
        max_diameter=_mm(long_axis), max_diameter_endpoints_lps=(point, point),
        long_axis=_mm(long_axis), long_axis_endpoints_lps=(point, point),
        short_axis=_mm(long_axis / 2), short_axis_endpoints_lps=(point, point),
        recist_slice=0, centroid_lps=point, slice_range=(0, 0),
        mean=Measurement("Mean", 40.0, "HU", "test"), sd=Measurement("SD", 5.0, "HU", "test"),
        in_liver=in_liver, lobe=Lobe.RIGHT if in_liver else None,
    )


# ---------------------------------------------------------------------------- RECIST rule
def test_targets_are_the_two_longest_measurable_liver_lesions():
    lesions = [_lesion(1, 25.0), _lesion(2, 12.0), _lesion(3, 35.0), _lesion(4, 9.99),
               _lesion(5, 50.0, in_liver=False)]
    ids, total, minimum = recist_targets(lesions)
    assert ids == (3, 1)  # longest first; the 50 mm lesion outside the liver is no target
    assert len(ids) == RECIST_MAX_TARGETS_PER_ORGAN
    assert total.value == pytest.approx(60.0) and total.unit == "mm"
    assert minimum.value == 10.0


def test_ten_millimetres_is_measurable_just_below_is_not():
    ids, total, _ = recist_targets([_lesion(1, 10.0), _lesion(2, 9.999)])
    assert ids == (1,)
    assert total.value == pytest.approx(10.0)


def test_thick_slices_raise_the_minimum_to_twice_the_spacing():
    lesions = [_lesion(1, 11.9), _lesion(2, 12.0)]
    assert recist_targets(lesions, slice_spacing_mm=5.0)[0] == (2, 1)
    ids, _total, minimum = recist_targets(lesions, slice_spacing_mm=6.0)
    assert ids == (2,) and minimum.value == 12.0


def test_no_measurable_lesion_gives_no_target_and_a_zero_sum():
    ids, total, _ = recist_targets([_lesion(1, 8.0)])
    assert ids == () and total.value == 0.0
    assert recist_targets([])[0] == ()


def test_ties_go_to_the_lower_lesion_id():
    assert recist_targets([_lesion(2, 20.0), _lesion(1, 20.0), _lesion(3, 20.0)])[0] == (1, 2)


# ---------------------------------------------------------------------------- sample study
@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    folder = tmp_path_factory.mktemp("sample")
    paths = write_sample_study(folder, matrix=128, slices=40, seed=3)
    stack = discover([paths.dicom_dir]).stacks[0]
    image = load_stack(stack).volume
    labels = load_label_map(paths.labels_nifti, image)
    findings = measure_liver(labels, image)
    assert len(findings.lesions) == 4
    return SimpleNamespace(stack=stack, image=image, labels=labels, findings=findings)


def _build(sample, **options):
    options.setdefault("generated_at", GENERATED)
    header = options.pop("header", HEADER)
    return build_report_content(sample.findings, sample.image, sample.labels, header, **options)


def test_lesion_table_keeps_the_findings_order_and_marks_the_targets(sample):
    content = _build(sample)
    rows = content.findings.lesions
    lesions = sample.findings.lesions
    assert [r.lesion_id for r in rows] == [les.id for les in lesions]
    assert [r.long_axis for r in rows] == [les.long_axis for les in lesions]
    assert [r.volume.unit for r in rows] == ["mL"] * 4 and rows[0].mean.unit == "HU"
    longest = sorted(lesions, key=lambda les: -les.long_axis.value)[:2]
    recist = content.findings.recist
    assert recist.target_ids == tuple(les.id for les in longest)
    assert [r.lesion_id for r in rows if r.target] == sorted(recist.target_ids)
    assert recist.sum_of_diameters.value == pytest.approx(
        sum(les.long_axis.value for les in longest))
    assert content.findings.liver_volume == sample.findings.liver_volume
    # identity direction: the axial display slice is the RECIST (array) slice
    assert [r.axial_slice for r in rows] == [les.recist_slice for les in lesions]


def test_six_key_images_axial_and_coronal_of_the_three_largest(sample):
    content = _build(sample)
    images = content.key_images
    assert len(images) == 6
    assert [k.lesion_id for k in images] == [1, 1, 2, 2, 3, 3]
    assert [k.plane for k in images[:2]] == [ViewPlane.AXIAL, ViewPlane.CORONAL]
    assert all(k.image.format == "JPEG" for k in images)
    assert _build(sample, max_key_images=2, key_image_format="PNG").key_images[0].image.format \
        == "PNG"


def test_sections_without_results_give_the_analysis_reason(sample):
    """Installed but left out of the run is not "not installed": the analysis's own note."""
    content = _build(sample, unavailable={"staging": "no staging model among the requested "
                                                     "models", "triage": "triage failed: boom"})
    assert content.staging.unavailable_reason == ("not available: no staging model among the "
                                                  "requested models")
    assert content.triage_unavailable_reason == "not available: triage failed: boom"


def test_sections_without_models_say_so(sample):
    content = _build(sample)
    assert content.staging.available is False
    assert content.staging.unavailable_reason == NO_STAGING_MODEL
    assert content.triage is None and content.clinical is None
    assert content.triage_unavailable_reason == NO_TRIAGE_MODEL
    assert content.disclaimer == DECISION_SUPPORT_STATEMENT
    assert content.provenance[-1].component == "radview"
    assert content.provenance[-1].version == __version__
    assert content.radview_version == __version__


def test_provenance_rows_keep_numbers_as_data(sample):
    content = _build(sample, provenance=[
        {"model_id": "liver-seg", "version": "1.2", "sha256": "0123456789abcdef" * 4,
         "provider": "CPUExecutionProvider", "seconds": 3.25},
        {"model_id": "staging"},
    ])
    seg, staging, radview = content.provenance
    assert seg.sha256_prefix == "0123456789ab"
    assert seg.run_time is not None and seg.run_time.value == 3.25 and seg.run_time.unit == "s"
    assert staging.version is None and staging.run_time is None
    assert radview.component == "radview"


def test_methods_say_what_lesion_size_an_ai_segmentation_never_reports(sample):
    from radview.inference.pipeline import TUMOUR_MIN_VOLUME_MM3

    by_model = dict(_build(sample, provenance=[
        {"id": "liver-tumor-seg", "version": "1.0.0", "task": "segmentation",
         "segments_tumour": True},
        {"id": "stager", "task": "staging"},
    ]).findings.methods)
    assert by_model["Lesions found"].startswith("automatic segmentation (liver-tumor-seg)")
    assert f"smaller than {TUMOUR_MIN_VOLUME_MM3:g} mm\u00b3" in by_model["Lesions found"]
    assert "lesion filter" not in by_model["Lesions found"]  # this model ran without one
    # with a lesion filter: its threshold and what it set aside in this scan
    filtered = dict(_build(sample, provenance=[
        {"id": "liver-tumor-seg", "task": "segmentation", "segments_tumour": True,
         "lesion_filter_threshold": 0.15, "lesions_set_aside": 2},
    ]).findings.methods)
    assert ("nor candidate regions its lesion filter gave less than a 15 % probability of "
            "being a lesion (2 in this scan)") in filtered["Lesions found"]
    # a liver-only model finds no lesion at all; the report must not imply a size rule
    liver_only = dict(_build(sample, provenance=[
        {"id": "liver-seg-deeplab", "task": "segmentation", "segments_tumour": False},
    ]).findings.methods)
    assert "does not segment tumours" in liver_only["Lesions found"]
    assert "mm\u00b3" not in liver_only["Lesions found"]
    # labels drawn or loaded by a person: no model rule to state
    assert "Lesions found" not in dict(_build(sample).findings.methods)


def test_staging_probabilities_and_the_predicted_class(sample):
    content = _build(sample, staging={"probabilities": {"A": 0.2, "B": 0.7, "C": 0.1},
                                      "model": "stager"})
    staging = content.staging
    assert staging.available and staging.predicted == "B" and staging.model == "stager"
    assert staging.probabilities == (("A", 0.2), ("B", 0.7), ("C", 0.1))
    assert staging.chart is not None and staging.chart.format == "PNG"
    given = _build(sample, staging={"probabilities": [["A", 0.4], ["B", 0.6]], "stage": "A"})
    assert given.staging.predicted == "A"
    assert staging.close == ()
    assert given.staging.close == ()  # B is 20 points above the reported A: not a close call


def test_a_near_tie_names_the_close_stage_beside_the_most_probable(sample):
    content = _build(sample, staging={"probabilities": {"Mild": 0.05, "Moderate": 0.427,
                                                        "Severe": 0.431, "End-stage": 0.092}})
    assert content.staging.predicted == "Severe"
    assert content.staging.close == (("Moderate", 0.427),)


@pytest.mark.parametrize("bad", [1.5, -0.1, float("nan"), "high", None])
def test_invalid_probabilities_are_refused(sample, bad):
    with pytest.raises(ValueError, match="probabilit"):
        _build(sample, staging={"probabilities": {"A": bad}})
    with pytest.raises(ValueError, match="triage"):
        _build(sample, triage=[0.1, bad])


def test_triage_summary_and_a_length_mismatch_warning(sample):
    slices = sample.image.shape[0]
    values = [0.0] * slices
    values[7], values[8] = 0.9, 0.6
    content = _build(sample, triage=values)
    triage = content.triage
    assert triage is not None
    assert (triage.slices_above, triage.max_slice, triage.max_probability) == (2, 7, 0.9)
    assert not any("triage" in w for w in content.warnings)
    short = _build(sample, triage=values[:-3])
    assert any(f"but the series has {slices} axial slices" in w for w in short.warnings)


def test_warnings_are_merged_without_duplicates(sample):
    content = _build(sample, warnings=["tilt corrected", "tilt corrected"])
    assert content.warnings.count("tilt corrected") == 1
    for warning in sample.findings.warnings:
        assert warning in content.warnings


def test_header_is_kept_verbatim_and_extra_keys_become_acquisition_details(sample):
    header = _build(sample).header
    assert header.patient_name == "Doe^Jane"
    assert header.study_description == "CT ABDOMEN <b>&"  # escaping is the renderer's job
    assert header.modality == "CT"  # from the image when the header has none
    details = dict(header.acquisition)
    assert details["kVp"] == "120" and details["Contrast phase"] == "portal venous"
    assert details["Matrix"] == "128 x 128 x 40"


def test_deidentified_content_drops_every_identifying_field(sample):
    header = _build(sample, deidentified=True).header
    assert header.deidentified
    for name in ("patient_name", "patient_id", "birth_date", "accession",
                 "referring_physician"):
        assert getattr(header, name) is None
    assert header.study_description == "CT ABDOMEN <b>&" and header.sex == "F"


def test_clinical_summary_becomes_score_lines_and_bclc_reference(sample):
    values = ClinicalValues(bilirubin_mg_dl=1.0, albumin_g_dl=3.8, inr=1.0,
                            creatinine_mg_dl=0.8, sodium_mmol_l=140, ascites="none",
                            encephalopathy="none", ecog=0, on_dialysis=False,
                            vascular_invasion=False, extrahepatic_spread=False)
    diameters = [les.long_axis.value for les in sample.findings.lesions]
    clinical = _build(sample, clinical=clinical_summary(values, diameters)).clinical
    assert clinical is not None
    assert [s.name for s in clinical.scores] == ["Child-Pugh", "MELD-Na", "ALBI"]
    assert clinical.scores[0].grade == "class A" and clinical.scores[0].value == 5
    bclc = clinical.bclc
    assert bclc is not None and bclc.stage == "B"
    assert bclc.treatment_reference and "multidisciplinary team" in bclc.disclaimer
    assert "Reig" in bclc.citation
    partial = _build(sample, clinical=clinical_summary(ClinicalValues(bilirubin_mg_dl=1.0,
                                                                      albumin_g_dl=3.8)))
    assert partial.clinical is not None and [s.name for s in partial.clinical.scores] == ["ALBI"]
    assert dict(partial.clinical.missing)["child_pugh"] == ("inr", "ascites", "encephalopathy")


def test_content_is_frozen_and_labels_must_share_the_grid(sample):
    content = _build(sample)
    assert isinstance(content, ReportContent)
    with pytest.raises(dataclasses.FrozenInstanceError):
        content.title = "changed"  # type: ignore[misc]
    off_grid = sample.labels.volume.with_voxels(sample.labels.volume.voxels)
    off_grid = type(off_grid)(off_grid.voxels[:-1], spacing=off_grid.spacing)
    with pytest.raises(ValueError, match="grid"):
        build_report_content(sample.findings, sample.image, off_grid, {},
                             generated_at=GENERATED)


def test_header_from_a_dicom_instance(sample):
    header = header_from_instance(sample.stack.first_instance)
    assert header["patient_name"] == "Sample^Liver^^^SYNTHETIC"
    assert header["modality"] == "CT" and header["study_date"] == "20000101"
    assert "accession" not in header or header["accession"]
    assert header_from_instance(SimpleNamespace(patient_id="  ")) == {}

