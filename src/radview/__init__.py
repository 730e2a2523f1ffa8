"""radview: an offline radiology workstation (DICOM/NIfTI viewing, liver AI decision support)."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("radview")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
