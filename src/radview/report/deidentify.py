"""De-identification of the DICOM objects radview exports (PS3.15 Annex E, Basic Profile).

A :class:`Deidentifier` is applied to the *source* headers before an output (SEG, SR,
encapsulated PDF) is built from them, so everything the output copies or references is already
de-identified, and the same :class:`Deidentifier` maps the same input to the same output in
every export: SR -> SEG -> image references keep resolving.

What it does (the Basic Application Level Confidentiality Profile, Table E.1-1, for the
attributes radview's outputs carry, with the Retain Longitudinal Temporal Information with
Modified Dates option):

* **UIDs** (every ``UI`` value, at any depth, except SOP Class / Transfer Syntax / coding-scheme
  UIDs and any UID under the DICOM root ``1.2.840.10008``) become ``2.25.<n>``, where ``<n>`` is a
  128-bit RFC 9562 version-8 UUID made from HMAC-SHA256(secret, UID): the same UID always maps
  to the same new UID, different UIDs never collide in practice, and nobody without the secret
  can map back or test a guess.
* **Patient Name / Patient ID** become pseudonyms made the same way from the original Patient
  ID (``ANONYMOUS^3F9A...`` / ``ANON-3F9A...``), so studies of one patient stay linked.
* **Dates** (every ``DA`` and the date part of every ``DT``) are shifted by a whole number of
  days: ``date_shift_days`` when given, else a per-patient offset of 1..3650 days into the past
  derived from the secret and the original Patient ID (the same patient is always shifted by
  the same amount, so intervals between studies are kept). Times are kept (option 113107).
  Patient's Birth Date is emptied (Basic Profile ``Z``), not shifted.
* **Emptied** (``Z``): Accession Number, Referring Physician's Name, Patient's Birth Date,
  Patient's Sex, Content Creator's Name, and every other person name (``PN``). Study ID gets a
  keyed dummy (``S`` + 10 hex digits, the same for every object of the study).
* **Removed** (``X``): institution, station, operator and physician names, addresses and phone
  numbers, other patient IDs/names, age, size, weight, history, comments, descriptions (study,
  series, protocol, procedure), device serial numbers, request attributes, every private
  attribute and every overlay / curve group (they may hold burned-in text).
* The result is marked: Patient Identity Removed ``YES``, De-identification Method (naming the
  key by a fingerprint, never the key), De-identification Method Code Sequence ``(113100, DCM)``
  Basic Application Confidentiality Profile and ``(113107, DCM)`` Retain Longitudinal Temporal
  Information Modified Dates Option, and Longitudinal Temporal Information Modified
  ``MODIFIED``.

An object this de-identifier already produced (marked with its key fingerprint) passes through
unchanged, so a SEG written de-identified can be referenced by a de-identified SR.

Limits: pixel data is not inspected (burned-in text in the images would stay; radview's outputs
carry no source pixels), free text inside an encapsulated PDF is not rewritten (the PDF must be
rendered from de-identified data), and attributes outside the tables above (e.g. the Clinical
Trial modules) are kept as they are.
"""

from __future__ import annotations

import copy
import hashlib
import hmac
from collections.abc import Iterable
from datetime import datetime, timedelta

from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence as DicomSequence
from pydicom.sr.coding import Code

__all__ = [
    "Deidentifier",
    "BASIC_PROFILE_CODE",
    "MODIFIED_DATES_OPTION_CODE",
    "MIN_SECRET_BYTES",
]

#: (113100, DCM) Basic Application Confidentiality Profile
BASIC_PROFILE_CODE = Code("113100", "DCM", "Basic Application Confidentiality Profile")
#: (113107, DCM) Retain Longitudinal Temporal Information Modified Dates Option
MODIFIED_DATES_OPTION_CODE = Code(
    "113107", "DCM", "Retain Longitudinal Temporal Information Modified Dates Option"
)
#: A shorter secret could be brute-forced through the pseudonyms of known patient IDs.
MIN_SECRET_BYTES = 16
#: Per-patient offsets lie in 1..this many days before the original date.
_MAX_SHIFT_DAYS = 3650
_DICOM_ROOT = "1.2.840.10008."


def _keywords(text: str) -> frozenset[str]:
    """DICOM keywords written one after another (the tables below stay readable)."""
    return frozenset(text.split())


#: Basic Profile "X": removed wherever they occur.
_REMOVE = _keywords(
    """
    InstitutionName InstitutionAddress InstitutionalDepartmentName
    InstitutionalDepartmentTypeCodeSequence StationName OperatorsName
    OperatorIdentificationSequence PerformingPhysicianName
    PerformingPhysicianIdentificationSequence NameOfPhysiciansReadingStudy
    PhysiciansReadingStudyIdentificationSequence PhysiciansOfRecord
    PhysiciansOfRecordIdentificationSequence RequestingPhysician
    RequestingPhysicianIdentificationSequence ReferringPhysicianAddress
    ReferringPhysicianTelephoneNumbers ReferringPhysicianIdentificationSequence
    ConsultingPhysicianName ConsultingPhysicianIdentificationSequence
    OtherPatientIDs OtherPatientIDsSequence OtherPatientNames PatientBirthName PatientAddress
    PatientTelephoneNumbers PatientTelecomInformation PatientMotherBirthName MilitaryRank
    BranchOfService MedicalRecordLocator PatientAge PatientSize PatientWeight EthnicGroup
    Occupation AdditionalPatientHistory PatientComments PatientReligiousPreference
    PatientBirthTime PatientSexNeutered CountryOfResidence RegionOfResidence SmokingStatus
    MedicalAlerts Allergies LastMenstrualDate PregnancyStatus PatientTransportArrangements
    PatientState PatientInstitutionResidence PatientInsurancePlanCodeSequence
    PatientPrimaryLanguageCodeSequence ResponsiblePerson ResponsibleOrganization
    IssuerOfPatientID IssuerOfPatientIDQualifiersSequence IssuerOfAccessionNumberSequence
    AdmittingDiagnosesDescription AdmittingDiagnosesCodeSequence AdmissionID
    IssuerOfAdmissionID ServiceEpisodeID ServiceEpisodeDescription CurrentPatientLocation
    VisitComments StudyDescription StudyComments SeriesDescription ImageComments FrameComments
    ProtocolName DerivationDescription AcquisitionComments RequestedProcedureDescription
    RequestedProcedureID ReasonForTheRequestedProcedure ReasonForStudy RequestingService
    PerformedProcedureStepDescription PerformedProcedureStepID
    ScheduledProcedureStepDescription ScheduledPerformingPhysicianName PerformedLocation
    PerformedStationName ScheduledStationName RequestAttributesSequence
    ReferencedPatientSequence ImagingServiceRequestComments OrderEnteredBy
    OrderEntererLocation OrderCallbackPhoneNumber PlacerOrderNumberImagingServiceRequest
    FillerOrderNumberImagingServiceRequest DeviceSerialNumber DetectorID GantryID PlateID
    CassetteID GeneratorID ModifiedAttributesSequence OriginalAttributesSequence
    InterpretationRecorder InterpretationTranscriber InterpretationAuthor DistributionName
    PersonAddress PersonTelephoneNumbers IconImageSequence
    """
)
#: Basic Profile "Z": kept, but empty.
_EMPTY = _keywords(
    """
    AccessionNumber ReferringPhysicianName PatientBirthDate PatientSex ContentCreatorName
    """
)
#: UIDs that name a class, a syntax or a coding scheme, not an instance: never remapped.
_KEEP_UIDS = _keywords(
    """
    SOPClassUID ReferencedSOPClassUID MediaStorageSOPClassUID TransferSyntaxUID
    ImplementationClassUID CodingSchemeUID ContextUID MappingResourceUID
    ContextGroupExtensionCreatorUID ReferencedSOPClassUIDInFile
    ReferencedTransferSyntaxUIDInFile RelatedGeneralSOPClassUID OriginalSpecializedSOPClassUID
    PrivateInformationCreatorUID
    """
)
#: Attributes the de-identification itself writes; never rewritten by it.
_MARKERS = frozenset(
    {
        "PatientIdentityRemoved",
        "DeidentificationMethod",
        "DeidentificationMethodCodeSequence",
        "LongitudinalTemporalInformationModified",
    }
)


class Deidentifier:
    """Consistent, keyed de-identification of DICOM headers (see the module docstring).

    Parameters
    ----------
    secret
        At least :data:`MIN_SECRET_BYTES` random bytes. Keep it to link later exports of the
        same patients (same pseudonyms, same UIDs, same date offsets); anyone holding it can
        test guesses of the original identifiers, so store it like a password.
    date_shift_days
        Shift every date by this many days (non-zero; negative is into the past). ``None``:
        a per-patient offset of 1..3650 days into the past, derived from the secret.

    Raises
    ------
    ValueError
        The secret is too short, or ``date_shift_days`` is 0 (that would keep the dates).
    """

    def __init__(self, secret: bytes, date_shift_days: int | None = None) -> None:
        if not isinstance(secret, (bytes, bytearray)) or len(secret) < MIN_SECRET_BYTES:
            raise ValueError(f"the de-identification secret needs {MIN_SECRET_BYTES}+ bytes")
        if date_shift_days is not None and int(date_shift_days) == 0:
            raise ValueError("date_shift_days must not be 0: dates would keep their values")
        self._secret = bytes(secret)
        self._fixed_shift = None if date_shift_days is None else int(date_shift_days)
        #: names the key in the outputs without revealing it
        self.key_id = self._digest(b"key-id", b"").hex()[:8]
        #: the De-identification Method text written into every output (<= 64 characters)
        self.method = f"radview PS3.15 Basic Profile, modified dates, key {self.key_id}"

    def __repr__(self) -> str:  # never show the secret
        return f"Deidentifier(key_id={self.key_id!r})"

    # ------------------------------------------------------------------ keyed values
    def _digest(self, purpose: bytes, value: bytes) -> bytes:
        return hmac.new(self._secret, purpose + b"\x00" + value, hashlib.sha256).digest()

    def uid(self, uid: str) -> str:
        """The replacement of ``uid``: ``2.25.`` + a version-8 UUID as a decimal integer."""
        raw = bytearray(self._digest(b"uid", str(uid).strip().encode("ascii", "replace"))[:16])
        raw[6] = (raw[6] & 0x0F) | 0x80  # version 8 (custom, RFC 9562)
        raw[8] = (raw[8] & 0x3F) | 0x80  # RFC 4122 variant
        return f"2.25.{int.from_bytes(raw, 'big')}"

    @staticmethod
    def _patient_key(dataset: Dataset) -> bytes:
        patient_id = str(dataset.get("PatientID", "") or "").strip()
        if patient_id:
            return b"id:" + patient_id.encode("utf-8")
        name = str(dataset.get("PatientName", "") or "")
        birth = str(dataset.get("PatientBirthDate", "") or "")
        return b"name:" + f"{name}|{birth}".encode()

    def pseudonyms(self, dataset: Dataset) -> tuple[str, str]:
        """(Patient ID, Patient Name) replacing the patient of ``dataset`` (an original)."""
        code = self._digest(b"patient", self._patient_key(dataset)).hex()[:16].upper()
        return f"ANON-{code}", f"ANONYMOUS^{code}"

    def date_offset_days(self, dataset: Dataset) -> int:
        """Days added to every date of the patient of ``dataset`` (an original header)."""
        if self._fixed_shift is not None:
            return self._fixed_shift
        digest = self._digest(b"date-shift", self._patient_key(dataset))
        return -(1 + int.from_bytes(digest[:8], "big") % _MAX_SHIFT_DAYS)

    def shift_datetime(self, moment: datetime, original: Dataset) -> datetime:
        """``moment`` moved by the date offset of ``original``'s patient.

        Writers use it for the creation date of a de-identified output, so the output's own
        dates do not reveal when the (shifted) study really took place.
        """
        return moment + timedelta(days=self.date_offset_days(original))

    # ------------------------------------------------------------------ datasets
    def is_own_output(self, dataset: Dataset) -> bool:
        """True when ``dataset`` was de-identified with this key (it then passes unchanged)."""
        if str(dataset.get("PatientIdentityRemoved", "")).upper() != "YES":
            return False
        methods = dataset.get("DeidentificationMethod", "")
        values = [methods] if isinstance(methods, str) else list(methods or [])
        return self.method in [str(v) for v in values]

    def deidentify(self, dataset: Dataset) -> Dataset:
        """A de-identified deep copy of ``dataset`` (the original is not modified)."""
        result = copy.deepcopy(dataset)
        if self.is_own_output(dataset):
            return result
        offset = self.date_offset_days(dataset)
        patient_id, patient_name = self.pseudonyms(dataset)
        self._clean(result, offset)
        file_meta = getattr(result, "file_meta", None)
        if file_meta is not None and "MediaStorageSOPInstanceUID" in file_meta:
            file_meta.MediaStorageSOPInstanceUID = self.uid(file_meta.MediaStorageSOPInstanceUID)
        for keyword in ("SourceApplicationEntityTitle", "SendingApplicationEntityTitle"):
            if file_meta is not None and keyword in file_meta:
                delattr(file_meta, keyword)
        result.PatientID = patient_id
        result.PatientName = patient_name
        if str(dataset.get("StudyID", "") or "").strip():
            # a dummy rather than empty: archives and DICOMDIRs expect a Study ID
            study = str(dataset.get("StudyInstanceUID", "")) + "|" + str(dataset.StudyID)
            result.StudyID = "S" + self._digest(b"study-id", study.encode()).hex()[:10].upper()
        self.mark(result)
        return result

    def deidentify_all(self, datasets: Iterable[Dataset | None]) -> list[Dataset | None]:
        """:meth:`deidentify` of each dataset; ``None`` (a missing slice) stays ``None``."""
        return [None if ds is None else self.deidentify(ds) for ds in datasets]

    def mark(self, dataset: Dataset) -> None:
        """Write the de-identification attributes (identity removed, method, codes)."""
        dataset.PatientIdentityRemoved = "YES"
        previous = dataset.get("DeidentificationMethod", None)
        methods = [] if previous in (None, "") else (
            [str(previous)] if isinstance(previous, str) else [str(v) for v in previous]
        )
        if self.method not in methods:
            methods.append(self.method)
        dataset.DeidentificationMethod = methods if len(methods) > 1 else methods[0]
        ours = (BASIC_PROFILE_CODE, MODIFIED_DATES_OPTION_CODE)
        # codes of an earlier de-identification (another tool) are kept, ours added once
        codes = [
            item
            for item in dataset.get("DeidentificationMethodCodeSequence", [])
            if (item.get("CodeValue"), item.get("CodingSchemeDesignator"))
            not in {(code.value, code.scheme_designator) for code in ours}
        ]
        for code in ours:
            item = Dataset()
            item.CodeValue = code.value
            item.CodingSchemeDesignator = code.scheme_designator
            item.CodeMeaning = code.meaning
            codes.append(item)
        dataset.DeidentificationMethodCodeSequence = codes
        dataset.LongitudinalTemporalInformationModified = "MODIFIED"

    # ------------------------------------------------------------------ the rules
    def _clean(self, dataset: Dataset, offset: int) -> None:
        for tag in list(dataset.keys()):
            group = tag >> 16
            if tag.is_private or (0x5000 <= group <= 0x50FF) or (
                0x6000 <= group <= 0x60FF and group % 2 == 0
            ):
                del dataset[tag]  # private data, curves and overlays may hold anything
                continue
            element = dataset[tag]  # converts a raw element (decodes its text)
            keyword = element.keyword
            if keyword in _MARKERS:
                continue
            if keyword in _REMOVE:
                del dataset[tag]
            elif keyword in _EMPTY:
                element.value = [] if element.VR == "SQ" else ""
            elif element.VR == "SQ":
                for item in element.value or []:
                    self._clean(item, offset)
            elif element.VR == "UI" and keyword not in _KEEP_UIDS:
                element.value = _map_values(element.value, self._remap_uid)
            elif element.VR == "DA":
                element.value = _map_values(element.value, lambda v: _shift_date(v, offset))
            elif element.VR == "DT":
                element.value = _map_values(element.value, lambda v: _shift_datetime(v, offset))
            elif element.VR == "PN":
                element.value = ""

    def _remap_uid(self, value: str) -> str:
        text = str(value).strip().rstrip("\x00")
        if not text or text.startswith(_DICOM_ROOT):
            return text
        return self.uid(text)


def _map_values(value, function):
    """Apply ``function`` to a single value or to each value of a multi-valued element."""
    if value is None:
        return value
    if isinstance(value, (MultiValue, list, tuple, DicomSequence)):
        return [function(str(v)) for v in value]
    return function(str(value))


def _shift_date(value: str, days: int) -> str:
    """``YYYYMMDD`` (or a ``A-B`` range, or the old ``YYYY.MM.DD``) moved by ``days``."""
    text = value.strip()
    if not text:
        return ""
    if "-" in text:
        return "-".join(_shift_date(part, days) if part else "" for part in text.split("-"))
    text = text.replace(".", "")
    try:
        moved = datetime.strptime(text[:8], "%Y%m%d") + timedelta(days=days)
    except ValueError:
        return ""  # not a date we can shift: remove rather than leak it
    return f"{moved.year:04d}{moved.month:02d}{moved.day:02d}"


def _shift_datetime(value: str, days: int) -> str:
    """A DT value with its date part moved; partial dates (no day) are removed."""
    text = value.strip()
    if len(text) < 8 or not text[:8].isdigit():
        return ""
    shifted = _shift_date(text[:8], days)
    return shifted + text[8:] if shifted else ""
