"""Every error a user can cause has its own type here.

Each message is one line that names the file (or series) and says what is wrong, so the
viewer and the command line can show ``str(error)`` as it is.
"""

from __future__ import annotations

from pathlib import Path

__all__ = [
    "RadviewError",
    "InputFileError",
    "NotDicomError",
    "NotAnImageError",
    "TruncatedFileError",
    "UnsupportedTransferSyntaxError",
    "InvalidPixelDescriptionError",
    "PixelDataSizeError",
    "ImageTooLargeError",
    "DecodeError",
    "GeometryError",
    "InconsistentSeriesError",
    "UnsupportedVolumeFileError",
    "NonOrthonormalAffineError",
    "DegenerateAffineError",
    "LoadCancelled",
    "NothingToOpenError",
    "LabelMapError",
]


class RadviewError(Exception):
    """Base class of all errors radview reports to the user."""


class InputFileError(RadviewError):
    """A problem with one input file; ``path`` names it and ``reason`` says what is wrong."""

    def __init__(self, path: str | Path, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")

    def __reduce__(self):  # errors cross process boundaries (decoder workers): keep both fields
        return (type(self), (self.path, self.reason))


class NotDicomError(InputFileError):
    """The file is not DICOM (no preamble/magic and no recognisable dataset)."""


class NotAnImageError(InputFileError):
    """A readable DICOM object that holds no image (DICOMDIR, SR, plan, empty dataset)."""


class TruncatedFileError(InputFileError):
    """The file ends before the data it declares."""


class UnsupportedTransferSyntaxError(InputFileError):
    """No installed decoder handles the file's transfer syntax."""


class InvalidPixelDescriptionError(InputFileError):
    """Rows, Columns, Bits Allocated/Stored, High Bit or Samples per Pixel are inconsistent."""


class PixelDataSizeError(InputFileError):
    """Pixel Data holds fewer bytes than Rows x Columns x frames x bytes per sample."""


class ImageTooLargeError(InputFileError):
    """The declared image is too large to allocate; refused before any allocation."""


class DecodeError(InputFileError):
    """A compressed frame could not be decoded (corrupt data or codec failure)."""


class GeometryError(InputFileError):
    """Position/orientation data is missing or unusable for what was asked."""


class InconsistentSeriesError(RadviewError):
    """The files of one stack disagree on something that must be common (matrix, type)."""


class UnsupportedVolumeFileError(InputFileError):
    """A NIfTI/NRRD/MHA file that cannot be read (format, data type, dimensionality)."""


class NonOrthonormalAffineError(InputFileError):
    """A volume file's affine has shear: its axes are not perpendicular."""


class DegenerateAffineError(InputFileError):
    """A volume file's affine is singular or has a zero/negative/non-finite spacing."""


class LoadCancelled(RadviewError):
    """The user cancelled a long operation; nothing partial is kept."""


class NothingToOpenError(RadviewError):
    """A file or folder holds nothing radview can show; the message lists why, file by file."""


class LabelMapError(InputFileError):
    """A label map file cannot be used with the displayed image (values, grid, type)."""
