"""DICOM SR (TID 1500) export: the numbers come back, the references resolve, it validates."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pydicom
import pytest

from radview.report.deidentify import Deidentifier
from radview.report.dicom_seg import AlgorithmInfo, write_seg
from radview.report.dicom_sr import (
    COMPREHENSIVE_3D_SR_SOP_CLASS_UID,
    read_measurement_report,
    write_measurement_report,
)
from radview.report.tables import ExportError
from tests.report.test_dicom_seg import (
    LIVER_NAMES,
    Study,
    build_study,
    dciodvfy,
    needs_dciodvfy,
    shift_sources,
)

TOLERANCE = 1e-3


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> Study:
    return build_study(tmp_path_factory.mktemp("sample"))


@pytest.fixture(scope="module")
def seg_path(study, tmp_path_factory):
    folder = tmp_path_factory.mktemp("seg")
    return write_seg(study.labels, study.sources, LIVER_NAMES, folder / "seg.dcm",
                     algorithm=AlgorithmInfo())


def _content_items(dataset):
    for item in dataset.get("ContentSequence", []):
        yield item
        yield from _content_items(item)


def test_the_numbers_come_back(study, seg_path, tmp_path) -> None:
    findings = study.findings
    assert len(findings.lesions) >= 2
    out = write_measurement_report(findings, study.sources, seg_path, tmp_path / "sr.dcm")
    assert out == tmp_path / "sr.dcm"
    report = read_measurement_report(out)
    assert report.liver_volume_ml == pytest.approx(findings.liver_volume.value, abs=TOLERANCE)
    assert set(report.lesions) == {f"Lesion {lesion.id}" for lesion in findings.lesions}
    tracking_uids = set()
    for lesion in findings.lesions:
        found = report.lesions[f"Lesion {lesion.id}"]
        tracking_uids.add(found.tracking_uid)
        assert found.volume_ml == pytest.approx(lesion.volume.value, abs=TOLERANCE)
        assert found.long_axis_mm == pytest.approx(lesion.long_axis.value, abs=TOLERANCE)
        assert found.short_axis_mm == pytest.approx(lesion.short_axis.value, abs=TOLERANCE)
        assert found.max_diameter_mm == pytest.approx(lesion.max_diameter.value, abs=TOLERANCE)
        assert found.mean == pytest.approx(lesion.mean.value, abs=TOLERANCE)
        assert found.sd == pytest.approx(lesion.sd.value, abs=TOLERANCE)
        for name, points in (
            ("long_axis_mm", lesion.long_axis_endpoints_lps),
            ("short_axis_mm", lesion.short_axis_endpoints_lps),
            ("max_diameter_mm", lesion.max_diameter_endpoints_lps),
        ):
            np.testing.assert_allclose(found.endpoints[name], np.asarray(points), atol=TOLERANCE)
        # the stored end points give the stored length
        ends = found.endpoints["long_axis_mm"]
        assert np.linalg.norm(ends[1] - ends[0]) == pytest.approx(found.long_axis_mm, abs=1e-3)
        assert found.segment_number == 2
        assert found.frame_of_reference_uid == study.sources[0].FrameOfReferenceUID
    assert len(tracking_uids) == len(findings.lesions)  # one tracking UID per lesion


def test_the_report_references_the_seg_and_the_images(study, seg_path, tmp_path) -> None:
    out = write_measurement_report(study.findings, study.sources, seg_path, tmp_path / "sr.dcm")
    sr = pydicom.dcmread(out)
    seg = pydicom.dcmread(seg_path, stop_before_pixels=True)
    source = study.sources[0]
    assert sr.SOPClassUID == COMPREHENSIVE_3D_SR_SOP_CLASS_UID
    assert sr.Modality == "SR"
    assert sr.StudyInstanceUID == source.StudyInstanceUID
    assert sr.SeriesInstanceUID not in (source.SeriesInstanceUID, seg.SeriesInstanceUID)
    assert (sr.CompletionFlag, sr.VerificationFlag) == ("COMPLETE", "UNVERIFIED")
    root = sr.ConceptNameCodeSequence[0]
    assert (root.CodeValue, root.CodingSchemeDesignator) == ("126000", "DCM")
    assert sr.ContentTemplateSequence[0].TemplateIdentifier == "1500"

    # every referenced segment is a segment of this SEG
    segment_numbers = {int(s.SegmentNumber) for s in seg.SegmentSequence}
    segment_refs = [
        item.ReferencedSOPSequence[0]
        for item in _content_items(sr)
        if item.ValueType == "IMAGE" and item.ConceptNameCodeSequence[0].CodeValue == "121191"
    ]
    assert len(segment_refs) == len(study.findings.lesions)
    for reference in segment_refs:
        assert reference.ReferencedSOPInstanceUID == seg.SOPInstanceUID
        assert reference.ReferencedSOPClassUID == seg.SOPClassUID
        assert int(reference.ReferencedSegmentNumber) in segment_numbers
    # every SCOORD3D lies in the images' frame of reference
    scoords = [item for item in _content_items(sr) if item.ValueType == "SCOORD3D"]
    assert len(scoords) == 3 * len(study.findings.lesions)
    assert {item.ReferencedFrameOfReferenceUID for item in scoords} == {
        source.FrameOfReferenceUID
    }
    # the evidence lists the SEG and every source image
    evidence = {
        instance.ReferencedSOPInstanceUID
        for study_item in sr.CurrentRequestedProcedureEvidenceSequence
        for series in study_item.ReferencedSeriesSequence
        for instance in series.ReferencedSOPSequence
    }
    assert evidence == {seg.SOPInstanceUID} | {ds.SOPInstanceUID for ds in study.sources}


def test_observers_device_and_person(study, seg_path, tmp_path) -> None:
    out = write_measurement_report(
        study.findings, study.sources, seg_path, tmp_path / "sr.dcm",
        algorithm=AlgorithmInfo(name="liver-net", version="2.0"), observer_name="山田^太郎",
    )
    sr = pydicom.dcmread(out)
    assert sr.SpecificCharacterSet == "ISO_IR 192"
    names = [str(item.PersonName) for item in _content_items(sr) if item.ValueType == "PNAME"]
    assert names == ["山田^太郎"]
    texts = [str(item.TextValue) for item in _content_items(sr) if item.ValueType == "TEXT"]
    assert "liver-net" in texts


@pytest.mark.parametrize("name", ["山田^太郎", "<font>Zoë</font>^&amp;<script>"])
def test_hostile_patient_names_are_carried_correctly(study, tmp_path, name) -> None:
    sources = shift_sources(study.sources, PatientName=name)
    seg = write_seg(study.labels, sources, LIVER_NAMES, tmp_path / "seg.dcm", algorithm=None)
    out = write_measurement_report(study.findings, sources, seg, tmp_path / "sr.dcm")
    sr = pydicom.dcmread(out)
    assert str(sr.PatientName) == name
    assert sr.SpecificCharacterSet == "ISO_IR 192"
    assert name.encode("utf-8") in out.read_bytes()


def test_a_seg_of_other_images_is_refused(study, seg_path, tmp_path) -> None:
    other = shift_sources(study.sources, StudyInstanceUID="1.2.3.4.5")
    with pytest.raises(ExportError, match="does not belong"):
        write_measurement_report(study.findings, other, seg_path, tmp_path / "sr.dcm")
    # a de-identified report needs a SEG de-identified with the same key
    with pytest.raises(ExportError, match="not de-identified with this key"):
        write_measurement_report(study.findings, study.sources, seg_path, tmp_path / "sr.dcm",
                                 deidentifier=Deidentifier(b"k" * 32))
    with pytest.raises(ExportError, match="no segment 7"):
        write_measurement_report(study.findings, study.sources, seg_path, tmp_path / "sr.dcm",
                                 tumour_segment=7)
    assert list(tmp_path.iterdir()) == []


def test_a_liver_without_lesions_still_gets_a_report(study, seg_path, tmp_path) -> None:
    findings = replace(study.findings, lesions=())
    out = write_measurement_report(findings, study.sources, seg_path, tmp_path / "sr.dcm")
    report = read_measurement_report(out)
    assert report.lesions == {}
    assert report.liver_volume_ml == pytest.approx(findings.liver_volume.value, abs=TOLERANCE)


def test_a_dataset_works_as_well_as_a_path(study, seg_path, tmp_path) -> None:
    seg = pydicom.dcmread(seg_path)
    out = write_measurement_report(study.findings, study.sources, seg, tmp_path / "sr.dcm")
    assert read_measurement_report(pydicom.dcmread(out)).seg_sop_instance_uid == seg.SOPInstanceUID


@pytest.mark.external
@needs_dciodvfy
def test_dciodvfy_finds_no_errors(study, seg_path, tmp_path) -> None:
    out = write_measurement_report(study.findings, study.sources, seg_path, tmp_path / "sr.dcm",
                                   observer_name="Müller^Zoë")
    errors, _warnings = dciodvfy(out)
    assert errors == [], errors
