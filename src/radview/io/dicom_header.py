"""What a header-only scan learns about a DICOM file: plain frozen records, no pydicom objects.

Keeping these free of pydicom datasets lets a scan of thousands of files stay small in memory,
lets the study index store and restore them, and lets grouping/sorting be tested without files.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["FrameHeader", "InstanceHeader", "FileProblem"]


@dataclass(frozen=True)
class FrameHeader:
    """One 2D image: a single-frame file, or frame ``frame`` (0-based) of a multi-frame file.

    Geometry comes from the per-frame functional groups when the file is an enhanced
    multi-frame object, else from the top-level attributes.
    """

    path: str
    frame: int = 0
    position: tuple[float, float, float] | None = None  # ImagePositionPatient, mm
    orientation: tuple[float, float, float, float, float, float] | None = None  # IOP
    pixel_spacing: tuple[float, float] | None = None  # (between rows, between columns), mm
    slice_thickness: float | None = None
    rescale_slope: float = 1.0
    rescale_intercept: float = 0.0
    instance_number: int | None = None
    acquisition_number: int | None = None
    echo_number: int | None = None
    temporal_position: int | None = None


@dataclass(frozen=True)
class InstanceHeader:
    """Everything radview needs from one DICOM file without reading its pixels."""

    path: str
    file_size: int
    mtime_ns: int
    sop_class_uid: str
    sop_instance_uid: str
    transfer_syntax_uid: str
    # patient / study / series (strings exactly as in the header; escape before display)
    patient_name: str = ""
    patient_id: str = ""
    patient_birth_date: str = ""
    patient_sex: str = ""
    study_uid: str = ""
    study_date: str = ""
    study_time: str = ""
    study_description: str = ""
    accession_number: str = ""
    referring_physician: str = ""
    series_uid: str = ""
    series_number: int | None = None
    series_description: str = ""
    modality: str = ""
    body_part: str = ""
    # image pixel description; rows == 0 means the file holds no image
    rows: int = 0
    columns: int = 0
    number_of_frames: int = 1
    samples_per_pixel: int = 1
    photometric: str = ""
    bits_allocated: int = 0
    bits_stored: int = 0
    high_bit: int = 0
    pixel_representation: int = 0
    image_type: tuple[str, ...] = ()
    rescale_type: str = ""
    has_modality_lut_sequence: bool = False
    has_pixel_data: bool = False
    #: byte offset and length of the Pixel Data value when the scan could see them (large
    #: native pixel data is read straight from there); length None when encapsulated
    pixel_data_offset: int | None = None
    pixel_data_length: int | None = None
    frames: tuple[FrameHeader, ...] = field(default=())

    @property
    def is_image(self) -> bool:
        return self.rows > 0 and self.columns > 0 and self.has_pixel_data

    @property
    def is_localizer(self) -> bool:
        return "LOCALIZER" in self.image_type


@dataclass(frozen=True)
class FileProblem:
    """A file that was skipped or flagged, with a one-line reason naming the problem."""

    path: str
    reason: str
    kind: str = "error"  # "not_dicom", "not_image", "unsupported", "corrupt", "unreadable", "error"
