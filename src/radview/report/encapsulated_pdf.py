"""The PDF report wrapped as a DICOM Encapsulated PDF instance, so a PACS can store it.

highdicom 0.28 has no Encapsulated Document class, so the object is built with pydicom following
the Encapsulated PDF IOD (PS3.3 A.45.1): Patient and General Study copied from a source image
(de-identified first when asked), Encapsulated Document Series (Modality ``DOC``, a new
series), General Equipment, SC Equipment (Conversion Type ``WSD``: made on a workstation),
Encapsulated Document (Document Title, Concept Name (18748-4, LN) "Diagnostic Imaging Report",
Burned In Annotation ``YES`` because the report shows patient data as text, MIME type
``application/pdf``, the document padded to an even length with its true length in
Encapsulated Document Length, and a Source Instance Sequence naming the images it was derived
from) and SOP Common (SOP Class 1.2.840.10008.5.1.4.1.1.104.1).

De-identification covers the DICOM header only; the PDF's text is not rewritten. As a safety
net the writer refuses a PDF in which it can still find the original patient ID, accession
number or name (in the raw file or in its Flate / ASCII85 streams): render the PDF from
de-identified data instead. That search is best effort: text drawn with font-specific
encodings (octal escapes of non-ASCII letters, subset TrueType glyph ids) is not found.
"""

from __future__ import annotations

import base64
import contextlib
import re
import zlib
from collections.abc import Sequence
from pathlib import Path

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

import radview
from radview.report.deidentify import Deidentifier
from radview.report.dicom_seg import (
    DEVICE_SERIAL_NUMBER,
    MANUFACTURER,
    clean_text,
    creation_time,
    prepare_sources,
    refuse_source_target,
    write_dataset,
)
from radview.report.tables import ExportError

__all__ = ["ENCAPSULATED_PDF_SOP_CLASS_UID", "DOCUMENT_CODE", "write_encapsulated_pdf"]

ENCAPSULATED_PDF_SOP_CLASS_UID = "1.2.840.10008.5.1.4.1.1.104.1"
#: Concept Name of the document: (18748-4, LN) "Diagnostic Imaging Report".
DOCUMENT_CODE: Code = codes.LN.DiagnosticImagingReport
_PDF_MAGIC = b"%PDF-"

# Patient, Clinical Trial Subject, General Study and Patient Study attributes copied from the
# source (after de-identification, when asked).
_COPIED = (
    "PatientName",
    "PatientID",
    "IssuerOfPatientID",
    "PatientBirthDate",
    "PatientSex",
    "PatientAge",
    "PatientSize",
    "PatientWeight",
    "PatientIdentityRemoved",
    "DeidentificationMethod",
    "DeidentificationMethodCodeSequence",
    "StudyInstanceUID",
    "StudyDate",
    "StudyTime",
    "ReferringPhysicianName",
    "StudyID",
    "AccessionNumber",
    "StudyDescription",
    "LongitudinalTemporalInformationModified",
)
_STREAM = re.compile(rb"stream\r?\n(.*?)endstream", re.DOTALL)
_MIN_NEEDLE = 3  # shorter name parts would match ordinary words


def _code_item(code: Code) -> Dataset:
    item = Dataset()
    item.CodeValue = code.value
    item.CodingSchemeDesignator = code.scheme_designator
    item.CodeMeaning = code.meaning
    return item


def _identifiers(original: Dataset) -> list[str]:
    """Strings of the original header that must not appear in a de-identified PDF."""
    needles = [
        str(original.get("PatientID", "") or ""),
        str(original.get("AccessionNumber", "") or ""),
    ]
    name = original.get("PatientName", None)
    if name:
        # Whole-name forms only: single name parts ("Long", "Mass", "Liver") are ordinary words
        # that a report prints anyway, so searching them would refuse innocent PDFs.
        parts = [part.strip() for part in re.split(r"[\^=]", str(name)) if part.strip()]
        needles.append(str(name))
        if len(parts) >= 2:
            family, given = parts[0], parts[1]
            needles += [f"{family} {given}", f"{given} {family}", f"{family}, {given}"]
    return [n.strip() for n in needles if len(n.strip()) >= _MIN_NEEDLE]


def _inflate(data: bytes) -> bytes | None:
    try:
        return zlib.decompressobj().decompress(data)
    except zlib.error:
        return None


def _pdf_texts(pdf: bytes) -> list[bytes]:
    """The raw PDF plus every stream we can decode (Flate, ASCII85, ASCII85 + Flate)."""
    texts = [pdf]
    for match in _STREAM.finditer(pdf):
        data = match.group(1)
        candidates = [data]
        with contextlib.suppress(ValueError):  # not ASCII85 (binary Flate data, usually)
            candidates.append(base64.a85decode(data.strip(), adobe=True))
        for candidate in candidates:
            inflated = _inflate(candidate)
            texts.append(candidate if inflated is None else inflated)
    return texts


def _pdf_leaks(pdf: bytes, original: Dataset) -> list[str]:
    leaks = []
    texts = _pdf_texts(pdf)
    for needle in _identifiers(original):
        forms = {needle.encode("utf-8"), needle.encode("utf-16-be")}
        with contextlib.suppress(UnicodeEncodeError):  # not representable: no such form
            forms.add(needle.encode("latin-1"))
        if any(form in text for form in forms for text in texts):
            leaks.append(needle)
    return leaks


def write_encapsulated_pdf(
    pdf_bytes: bytes,
    source_dataset: Dataset,
    out_path: str | Path,
    *,
    title: str,
    deidentifier: Deidentifier | None = None,
    derived_from: Sequence[Dataset] = (),
    series_number: int = 302,
    series_description: str = "radview report",
    series_instance_uid: str | None = None,
    sop_instance_uid: str | None = None,
) -> Path:
    """Write ``pdf_bytes`` as a DICOM Encapsulated PDF in the study of ``source_dataset``.

    Parameters
    ----------
    pdf_bytes
        A complete PDF file.
    source_dataset
        A header of the study (an image of the source series): patient and study are copied
        from it, and it is listed as a source instance.
    out_path
        The file to write (a name chosen by the caller, e.g. ``report_pdf.dcm``).
    title
        Document Title (plain text; cut to 1024 characters).
    deidentifier
        De-identify the copied patient/study data and the references; the PDF must then hold
        no identifiers itself (checked, best effort).
    derived_from
        Further instances the report was made from (the other source images, the SEG); they
        are listed in the Source Instance Sequence.

    Raises
    ------
    ExportError
        ``pdf_bytes`` is not a PDF, it still names the patient while de-identifying, or the
        file cannot be written.
    """
    out_path = Path(out_path)
    pdf = bytes(pdf_bytes)
    refuse_source_target(out_path, [source_dataset, *derived_from])
    if not pdf.startswith(_PDF_MAGIC):
        raise ExportError(out_path, "the report is not a PDF (no %PDF- header)")
    if deidentifier is not None:
        leaks = _pdf_leaks(pdf, source_dataset)
        if leaks:
            raise ExportError(
                out_path,
                f"the PDF still shows {len(leaks)} patient identifier(s); render it from "
                "de-identified data before a de-identified export",
            )
    prepared = prepare_sources([source_dataset, *derived_from], deidentifier)
    source = prepared[0]
    assert source is not None
    moment = creation_time(source_dataset, deidentifier)
    date, time = moment.strftime("%Y%m%d"), moment.strftime("%H%M%S")
    sop_instance_uid = sop_instance_uid or generate_uid()

    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = ENCAPSULATED_PDF_SOP_CLASS_UID
    ds.file_meta.MediaStorageSOPInstanceUID = sop_instance_uid
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.ImplementationVersionName = f"RADVIEW_{radview.__version__}"[:16]
    ds.preamble = b"\x00" * 128

    # SOP Common
    ds.SOPClassUID = ENCAPSULATED_PDF_SOP_CLASS_UID
    ds.SOPInstanceUID = sop_instance_uid
    ds.InstanceCreationDate, ds.InstanceCreationTime = date, time
    # Patient, General Study (copied; type 2 ones present even when the source lacks them)
    for keyword in _COPIED:
        if keyword in source:
            ds[keyword] = source[keyword]
    for keyword in ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate",
                    "StudyTime", "ReferringPhysicianName", "StudyID", "AccessionNumber"):
        if keyword not in ds:
            setattr(ds, keyword, "")
    # Encapsulated Document Series
    ds.Modality = "DOC"
    ds.SeriesInstanceUID = series_instance_uid or generate_uid()
    ds.SeriesNumber = int(series_number)
    ds.SeriesDate, ds.SeriesTime = date, time
    ds.SeriesDescription = clean_text(series_description, "LO")
    # General Equipment and SC Equipment
    ds.Manufacturer = MANUFACTURER
    ds.ManufacturerModelName = "radview"
    ds.SoftwareVersions = radview.__version__
    ds.DeviceSerialNumber = DEVICE_SERIAL_NUMBER
    ds.ConversionType = "WSD"  # made on a workstation
    # Encapsulated Document
    ds.InstanceNumber = 1
    ds.ContentDate, ds.ContentTime = date, time
    ds.AcquisitionDateTime = f"{date}{time}"
    ds.BurnedInAnnotation = "YES"  # the report shows patient data as text
    ds.DocumentTitle = clean_text(title, "ST")
    ds.ConceptNameCodeSequence = [_code_item(DOCUMENT_CODE)]
    references = []
    for item in prepared:
        if item is None or "SOPInstanceUID" not in item:
            continue
        reference = Dataset()
        reference.ReferencedSOPClassUID = item.SOPClassUID
        reference.ReferencedSOPInstanceUID = item.SOPInstanceUID
        references.append(reference)
    if references:
        ds.SourceInstanceSequence = references
    ds.MIMETypeOfEncapsulatedDocument = "application/pdf"
    ds.EncapsulatedDocumentLength = len(pdf)
    # OB values have even length; the true length is in Encapsulated Document Length.
    ds.EncapsulatedDocument = pdf + b"\x00" if len(pdf) % 2 else pdf
    if deidentifier is not None:
        deidentifier.mark(ds)
    return write_dataset(ds, out_path)
