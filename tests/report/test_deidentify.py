"""De-identification (PS3.15 Basic Profile): nothing original is left, references still resolve.

The source headers are given identifying values first (hostile names, accession number,
physician, institution, private tags), then a SEG, an SR and an encapsulated PDF are exported
with one Deidentifier and every written value, and the raw bytes, are searched for the originals.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta

import pydicom
import pytest
from pydicom.dataset import Dataset

from radview.report.deidentify import Deidentifier
from radview.report.dicom_seg import AlgorithmInfo, read_seg_labels, write_seg
from radview.report.dicom_sr import read_measurement_report, write_measurement_report
from radview.report.encapsulated_pdf import write_encapsulated_pdf
from radview.report.tables import ExportError, safe_file_name
from tests.report.test_dicom_seg import (
    LIVER_NAMES,
    Study,
    all_values,
    build_study,
    dciodvfy,
    needs_dciodvfy,
    shift_sources,
)
from tests.report.test_encapsulated_pdf import make_pdf

SECRET = b"radview-test-secret-0123456789"
IDENTIFYING = {
    "PatientName": "Müller-Lüdenscheidt^Zoë^<script>",
    "PatientID": "PID-7734-XQ",
    "PatientBirthDate": "19610423",
    "PatientAge": "062Y",
    "AccessionNumber": "ACC-55501234",
    "ReferringPhysicianName": "House^Gregory",
    "InstitutionName": "Princeton-Plainsboro Teaching Hospital",
    "StationName": "CT-ROOM-7",
    "OperatorsName": "Operator^Olga",
    "StudyID": "ST-8812",
    "OtherPatientIDs": "OTHER-4411",
}
ORIGINAL_DATE = "20000101"  # the sample's study / series / content date


def _identifying_sources(study: Study) -> list[Dataset]:
    sources = shift_sources(study.sources, **IDENTIFYING)
    for ds in sources:
        ds.add_new(0x00091010, "LO", "private secret")  # with its creator below
        ds.add_new(0x00090010, "LO", "ACME 1.0")
        ds.AcquisitionDateTime = ORIGINAL_DATE + "091500"
    return sources


def _originals(sources: list[Dataset]) -> set[str]:
    """Strings that must not appear in a de-identified export."""
    values = {v for v in IDENTIFYING.values() if v}
    values |= {"Müller-Lüdenscheidt", "Zoë", "Gregory", "private secret", ORIGINAL_DATE}
    for ds in sources:
        values |= {
            str(ds.SOPInstanceUID),
            str(ds.SeriesInstanceUID),
            str(ds.StudyInstanceUID),
            str(ds.FrameOfReferenceUID),
            str(ds.file_meta.MediaStorageSOPInstanceUID),
        }
    return values


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> Study:
    return build_study(tmp_path_factory.mktemp("sample"))


@pytest.fixture(scope="module")
def sources(study) -> list[Dataset]:
    return _identifying_sources(study)


def _export(study: Study, sources, folder, deidentifier):
    folder.mkdir(exist_ok=True)
    seg = write_seg(study.labels, sources, LIVER_NAMES, folder / "seg.dcm",
                    algorithm=AlgorithmInfo(), deidentifier=deidentifier)
    sr = write_measurement_report(study.findings, sources, seg, folder / "sr.dcm",
                                  deidentifier=deidentifier)
    pdf = write_encapsulated_pdf(make_pdf("Liver report"), sources[0],
                                 folder / "report_pdf.dcm", title="Liver report",
                                 deidentifier=deidentifier, derived_from=[pydicom.dcmread(seg)])
    return seg, sr, pdf


@pytest.fixture(scope="module")
def exported(study, sources, tmp_path_factory):
    folder = tmp_path_factory.mktemp("export")
    return _export(study, sources, folder, Deidentifier(SECRET))


# ---------------------------------------------------------------------------- unit rules
def test_uids_are_deterministic_2_25_uids() -> None:
    deid = Deidentifier(SECRET)
    uid = deid.uid("1.2.826.0.1.3680043.8.498.123")
    assert uid == Deidentifier(SECRET).uid("1.2.826.0.1.3680043.8.498.123")
    assert uid != deid.uid("1.2.826.0.1.3680043.8.498.124")
    assert uid != Deidentifier(b"another-secret-of-16").uid("1.2.826.0.1.3680043.8.498.123")
    assert re.fullmatch(r"2\.25\.[1-9][0-9]*", uid) and len(uid) <= 64
    assert SECRET.decode() not in repr(deid)


def test_a_weak_secret_or_a_zero_shift_is_refused() -> None:
    with pytest.raises(ValueError, match="secret"):
        Deidentifier(b"short")
    with pytest.raises(ValueError, match="0"):
        Deidentifier(SECRET, date_shift_days=0)


def test_header_rules(study, sources) -> None:
    deid = Deidentifier(SECRET, date_shift_days=-10)
    original = sources[0]
    clean = deid.deidentify(original)
    assert str(original.PatientID) == IDENTIFYING["PatientID"]  # the input is untouched
    assert clean.PatientID.startswith("ANON-") and clean.PatientName.family_name == "ANONYMOUS"
    assert clean.PatientBirthDate == "" and clean.PatientSex == ""
    assert clean.AccessionNumber == "" and clean.ReferringPhysicianName == ""
    for keyword in ("InstitutionName", "StationName", "OperatorsName", "OtherPatientIDs",
                    "PatientAge", "StudyDescription", "SeriesDescription", "ImageComments"):
        assert keyword not in clean, keyword
    assert not any(element.tag.is_private for element in clean)
    assert clean.StudyDate == "19991222"  # 2000-01-01 minus 10 days
    assert clean.AcquisitionDateTime == "19991222091500"
    assert clean.StudyTime == original.StudyTime  # times are kept (option 113107)
    assert clean.SOPClassUID == original.SOPClassUID  # class UIDs are not instance data
    assert clean.SOPInstanceUID == deid.uid(original.SOPInstanceUID)
    assert clean.file_meta.MediaStorageSOPInstanceUID == clean.SOPInstanceUID
    assert clean.PatientIdentityRemoved == "YES"
    assert deid.key_id in clean.DeidentificationMethod
    assert [c.CodeValue for c in clean.DeidentificationMethodCodeSequence] == ["113100", "113107"]
    assert clean.LongitudinalTemporalInformationModified == "MODIFIED"
    # an object this key already de-identified passes unchanged
    assert deid.is_own_output(clean)
    assert deid.deidentify(clean).SOPInstanceUID == clean.SOPInstanceUID


def test_per_patient_date_offsets_are_stable_and_in_the_past(sources) -> None:
    deid = Deidentifier(SECRET)
    offset = deid.date_offset_days(sources[0])
    assert -3650 <= offset <= -1
    assert all(deid.date_offset_days(ds) == offset for ds in sources)
    other = Dataset()
    other.PatientID = "SOMEONE-ELSE"
    offsets = {deid.date_offset_days(other)} | {
        Deidentifier(SECRET).date_offset_days(_patient(f"P{n}")) for n in range(20)
    }
    assert len(offsets) > 10  # patients are shifted differently


def _patient(patient_id: str) -> Dataset:
    ds = Dataset()
    ds.PatientID = patient_id
    return ds


# ---------------------------------------------------------------------------- exports
def test_nothing_original_is_left_in_any_export(exported, sources) -> None:
    originals = _originals(sources)
    for path in exported:
        ds = pydicom.dcmread(path)
        values = all_values(ds)
        for original in originals:
            assert not any(original in value for value in values), (path.name, original)
        raw = path.read_bytes()
        for original in originals:
            assert original.encode("utf-8") not in raw, (path.name, original)
        assert ds.PatientIdentityRemoved == "YES"
        assert [c.CodeValue for c in ds.DeidentificationMethodCodeSequence] == [
            "113100", "113107"
        ]
        # the outputs' own dates are shifted too (they would date the study otherwise)
        deid = Deidentifier(SECRET)
        allowed = {  # today, or yesterday when the export ran before midnight
            deid.shift_datetime(datetime.now() - timedelta(days=d), sources[0]).strftime("%Y%m%d")
            for d in (0, 1)
        }
        assert ds.InstanceCreationDate in allowed
        assert ds.ContentDate in allowed


def test_references_resolve_after_remapping(study, exported, sources) -> None:
    seg_path, sr_path, pdf_path = exported
    deid = Deidentifier(SECRET)
    seg = pydicom.dcmread(seg_path)
    sr = pydicom.dcmread(sr_path)
    pdf = pydicom.dcmread(pdf_path, stop_before_pixels=True)
    remapped = {deid.uid(ds.SOPInstanceUID) for ds in sources}
    study_uid = deid.uid(sources[0].StudyInstanceUID)
    assert seg.StudyInstanceUID == sr.StudyInstanceUID == pdf.StudyInstanceUID == study_uid
    assert seg.FrameOfReferenceUID == deid.uid(sources[0].FrameOfReferenceUID)
    # SEG -> source images
    seg_refs = {
        item.ReferencedSOPInstanceUID
        for item in seg.ReferencedSeriesSequence[0].ReferencedInstanceSequence
    }
    assert seg_refs == remapped
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == deid.uid(
        sources[0].SeriesInstanceUID
    )
    labels = read_seg_labels(seg_path, [deid.uid(ds.SOPInstanceUID) for ds in sources])
    assert (labels == study.labels.voxels).all()
    # SR -> SEG (and its evidence: the SEG and the remapped images)
    report = read_measurement_report(sr_path)
    assert report.seg_sop_instance_uid == seg.SOPInstanceUID
    evidence = {
        instance.ReferencedSOPInstanceUID
        for study_item in sr.CurrentRequestedProcedureEvidenceSequence
        for series in study_item.ReferencedSeriesSequence
        for instance in series.ReferencedSOPSequence
    }
    assert evidence == remapped | {seg.SOPInstanceUID}
    for lesion in report.lesions.values():
        assert lesion.frame_of_reference_uid == seg.FrameOfReferenceUID
    # PDF -> source image and SEG
    pdf_refs = [item.ReferencedSOPInstanceUID for item in pdf.SourceInstanceSequence]
    assert pdf_refs == [deid.uid(sources[0].SOPInstanceUID), seg.SOPInstanceUID]
    # one pseudonymous patient everywhere
    assert seg.PatientID == sr.PatientID == pdf.PatientID
    assert seg.PatientName == sr.PatientName == pdf.PatientName
    assert seg.StudyDate == sr.StudyDate == pdf.StudyDate != ORIGINAL_DATE


def test_two_exports_with_the_same_key_agree(study, sources, exported, tmp_path) -> None:
    again = _export(study, sources, tmp_path / "again", Deidentifier(SECRET))
    other = _export(study, sources, tmp_path / "other", Deidentifier(b"a-different-secret!"))
    for first, second, third in zip(exported, again, other, strict=True):
        a, b, c = (pydicom.dcmread(p, stop_before_pixels=True) for p in (first, second, third))
        assert (a.StudyInstanceUID, a.PatientID, a.PatientName, a.StudyDate, a.StudyID) == (
            b.StudyInstanceUID, b.PatientID, b.PatientName, b.StudyDate, b.StudyID
        )
        assert a.StudyInstanceUID != c.StudyInstanceUID and a.PatientID != c.PatientID
    seg_a, seg_b = (pydicom.dcmread(p) for p in (exported[0], again[0]))
    refs = [
        sorted(i.ReferencedSOPInstanceUID
               for i in s.ReferencedSeriesSequence[0].ReferencedInstanceSequence)
        for s in (seg_a, seg_b)
    ]
    assert refs[0] == refs[1]


def test_an_identified_seg_cannot_feed_a_de_identified_report(study, sources, tmp_path) -> None:
    seg = write_seg(study.labels, sources, LIVER_NAMES, tmp_path / "seg.dcm", algorithm=None)
    with pytest.raises(ExportError, match="de-identified"):
        write_measurement_report(study.findings, sources, seg, tmp_path / "sr.dcm",
                                 deidentifier=Deidentifier(SECRET))
    assert not (tmp_path / "sr.dcm").exists()


def test_file_names_from_header_text_are_sanitised(sources) -> None:
    assert safe_file_name("../../etc/passwd") == "etc_passwd"
    assert safe_file_name("<>:\"|?*") == "export"
    assert safe_file_name("..") == "export"
    assert safe_file_name(str(sources[0].PatientName)) == "Muller-Ludenscheidt_Zoe_script"
    assert safe_file_name("CON") == "_CON"
    assert safe_file_name("山田^太郎", fallback="patient") == "patient"
    assert len(safe_file_name("x" * 500)) == 64
    for name in ("../", "<>", "a/b\\c", ".hidden", "a\x00b"):
        result = safe_file_name(name)
        assert "/" not in result and "\\" not in result and not result.startswith(".")
        assert re.fullmatch(r"[A-Za-z0-9._-]+", result)


@pytest.mark.external
@needs_dciodvfy
def test_de_identified_exports_pass_dciodvfy(exported) -> None:
    for path in exported:
        errors, _warnings = dciodvfy(path)
        assert errors == [], (path.name, errors)
