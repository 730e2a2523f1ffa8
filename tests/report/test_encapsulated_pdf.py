"""Encapsulated PDF export: the PDF comes back byte for byte in a valid DICOM object."""

from __future__ import annotations

import io

import pydicom
import pytest
from reportlab.pdfgen import canvas

from radview.report.deidentify import Deidentifier
from radview.report.encapsulated_pdf import (
    ENCAPSULATED_PDF_SOP_CLASS_UID,
    write_encapsulated_pdf,
)
from radview.report.tables import ExportError
from tests.report.test_dicom_seg import (
    Study,
    build_study,
    dciodvfy,
    needs_dciodvfy,
    shift_sources,
)

HOSTILE_TITLE = "Liver CT <font color=red>report</font> & <script>alert(1)</script> — Zoë 山田"


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> Study:
    return build_study(tmp_path_factory.mktemp("sample"))


def make_pdf(*lines: str, compress: bool = False) -> bytes:
    """A small valid PDF made by reportlab (page streams deflated when ``compress``)."""
    buffer = io.BytesIO()
    page = canvas.Canvas(buffer, pageCompression=1 if compress else 0)
    for n, line in enumerate(lines or ("radview report",)):
        page.drawString(72, 720 - 14 * n, line)
    page.showPage()
    page.save()
    return buffer.getvalue()


@pytest.mark.parametrize("extra", [b"", b"%"], ids=["as-made", "odd-length"])
def test_the_pdf_comes_back_unchanged(study, tmp_path, extra) -> None:
    pdf = make_pdf() + extra
    source = study.sources[0]
    out = write_encapsulated_pdf(pdf, source, tmp_path / "report_pdf.dcm", title=HOSTILE_TITLE,
                                 derived_from=study.sources[1:3])
    assert out == tmp_path / "report_pdf.dcm"
    ds = pydicom.dcmread(out)
    document = ds.EncapsulatedDocument
    assert len(document) % 2 == 0
    assert ds.EncapsulatedDocumentLength == len(pdf)
    assert document[: ds.EncapsulatedDocumentLength] == pdf
    assert ds.SOPClassUID == ENCAPSULATED_PDF_SOP_CLASS_UID
    assert ds.file_meta.MediaStorageSOPClassUID == ENCAPSULATED_PDF_SOP_CLASS_UID
    assert ds.MIMETypeOfEncapsulatedDocument == "application/pdf"
    assert ds.Modality == "DOC" and ds.BurnedInAnnotation == "YES"
    assert ds.StudyInstanceUID == source.StudyInstanceUID
    assert ds.SeriesInstanceUID != source.SeriesInstanceUID
    assert (ds.PatientName, ds.PatientID) == (source.PatientName, source.PatientID)
    assert ds.DocumentTitle == HOSTILE_TITLE  # markup kept verbatim, UTF-8 encoded
    assert ds.SpecificCharacterSet == "ISO_IR 192"
    concept = ds.ConceptNameCodeSequence[0]
    assert (concept.CodeValue, concept.CodingSchemeDesignator) == ("18748-4", "LN")
    assert [item.ReferencedSOPInstanceUID for item in ds.SourceInstanceSequence] == [
        ds_.SOPInstanceUID for ds_ in study.sources[:3]
    ]


def test_a_non_latin_patient_name_is_utf8(study, tmp_path) -> None:
    source = shift_sources(study.sources[:1], PatientName="山田^太郎")[0]
    out = write_encapsulated_pdf(make_pdf(), source, tmp_path / "r.dcm", title="report")
    ds = pydicom.dcmread(out)
    assert (str(ds.PatientName), ds.SpecificCharacterSet) == ("山田^太郎", "ISO_IR 192")


def test_something_else_than_a_pdf_is_refused(study, tmp_path) -> None:
    with pytest.raises(ExportError, match="not a PDF"):
        write_encapsulated_pdf(b"<html>no</html>", study.sources[0], tmp_path / "r.dcm",
                               title="x")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("compress", [False, True], ids=["plain", "deflated"])
def test_a_pdf_naming_the_patient_is_refused_when_de_identifying(study, tmp_path,
                                                                 compress) -> None:
    source = study.sources[0]
    leaky = make_pdf("Patient:", str(source.PatientID), compress=compress)
    assert (str(source.PatientID).encode() in leaky) is not compress
    with pytest.raises(ExportError, match="identifier"):
        write_encapsulated_pdf(leaky, source, tmp_path / "r.dcm", title="x",
                               deidentifier=Deidentifier(b"s" * 16))
    assert list(tmp_path.iterdir()) == []
    # without de-identification the same PDF is the user's business
    write_encapsulated_pdf(leaky, source, tmp_path / "r.dcm", title="x")


def test_a_long_title_is_cut_to_the_maximum(study, tmp_path) -> None:
    out = write_encapsulated_pdf(make_pdf(), study.sources[0], tmp_path / "r.dcm",
                                 title="T" * 5000)
    assert pydicom.dcmread(out).DocumentTitle == "T" * 1024


@pytest.mark.external
@needs_dciodvfy
def test_dciodvfy_finds_no_errors(study, tmp_path) -> None:
    plain = write_encapsulated_pdf(make_pdf() + b"%", study.sources[0], tmp_path / "a.dcm",
                                   title=HOSTILE_TITLE, derived_from=study.sources[1:])
    anonymous = write_encapsulated_pdf(make_pdf(), study.sources[0], tmp_path / "b.dcm",
                                       title="Liver report",
                                       deidentifier=Deidentifier(b"s" * 16))
    for path in (plain, anonymous):
        errors, _warnings = dciodvfy(path)
        assert errors == [], errors
