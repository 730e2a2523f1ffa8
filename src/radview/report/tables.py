"""Plain-data exports (NIfTI label map, findings JSON, lesion CSV) and the export plumbing.

Every exporter in :mod:`radview.report` writes through :func:`export_target`: the bytes go to a
hidden temporary file in the target folder and replace the target only when complete
(:func:`radview.io.atomic.atomic_write`), and any ``OSError`` (full disk, read-only folder,
missing folder) becomes an :class:`ExportError` whose message names the file and says what to
do. Nothing partial is ever left under the final name, and no temporary file is left behind.

Output names are chosen by the caller (``seg.dcm``, ``labels.nii.gz``...). When a name must be
built from header text, :func:`safe_file_name` turns it into one plain, portable file name.
"""

from __future__ import annotations

import csv
import errno
import gzip
import io
import json
import math
import re
import unicodedata
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

import numpy as np

from radview.core.errors import RadviewError
from radview.core.lesions import Lesion, LiverFindings
from radview.core.volume import Volume
from radview.io.atomic import atomic_write

__all__ = [
    "ExportError",
    "export_target",
    "write_export_bytes",
    "safe_file_name",
    "write_labels_nifti",
    "write_findings_json",
    "write_lesion_csv",
    "LESION_CSV_COLUMNS",
]

#: Columns of :func:`write_lesion_csv`, in order.
LESION_CSV_COLUMNS = (
    "id",
    "lobe",
    "in_liver",
    "long_axis_mm",
    "short_axis_mm",
    "max_diameter_mm",
    "volume_ml",
    "mean_hu",
    "centroid_x_mm",
    "centroid_y_mm",
    "centroid_z_mm",
)

#: A spreadsheet evaluates a text cell starting with one of these as a formula (CSV injection).
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
_WINDOWS_RESERVED = {"CON", "PRN", "AUX", "NUL"} | {f"{p}{n}" for p in ("COM", "LPT") for n in
                                                    range(1, 10)}
_UNSAFE_NAME_CHARACTERS = re.compile(r"[^A-Za-z0-9._-]+")


class ExportError(RadviewError):
    """An export could not be written; ``path`` names the file and ``reason`` says why."""

    def __init__(self, path: str | Path, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")

    def __reduce__(self):  # keep both fields across process boundaries
        return (type(self), (self.path, self.reason))


# ---------------------------------------------------------------------------- plumbing
def _reason(error: OSError) -> str:
    if error.errno == errno.ENOSPC:
        return "the disk is full (no space left on device); free space or choose another folder"
    if error.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return "the folder is not writable; choose another folder"
    if error.errno == errno.ENOENT:
        return "the folder does not exist; choose an existing folder"
    text = error.strerror or str(error)
    return f"cannot be written ({text})"


@contextmanager
def export_target(path: str | Path) -> Iterator[BinaryIO]:
    """Open ``path`` for an atomic write; ``OSError`` becomes :class:`ExportError`.

    Raises
    ------
    ExportError
        The folder is missing or not writable, the disk is full, or ``path`` is a folder.
        The target is then unchanged and no temporary file is left.
    """
    path = Path(path)
    if path.is_dir():
        raise ExportError(path, "is a folder; choose a file name")
    if not path.parent.is_dir():
        raise ExportError(path, "the folder does not exist; choose an existing folder")
    try:
        with atomic_write(path) as handle:
            yield handle
    except OSError as error:
        raise ExportError(path, _reason(error)) from error


def write_export_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (see :func:`export_target`)."""
    with export_target(path) as handle:
        handle.write(data)
    return Path(path)


def safe_file_name(text: str, *, fallback: str = "export", max_length: int = 64) -> str:
    """A plain, portable file name made from untrusted text (a DICOM header string).

    Unicode is folded to ASCII where it has an equivalent (``Zoë`` -> ``Zoe``); everything but
    letters, digits, ``.``, ``_`` and ``-`` becomes ``_``; leading dots and separators are
    dropped (no hidden files, no ``..``); Windows device names get a ``_`` prefix; the result
    is at most ``max_length`` characters, and ``fallback`` when nothing is left.
    """
    name = _sanitised(text, max_length) or _sanitised(fallback, max_length) or "export"
    if name.split(".")[0].upper() in _WINDOWS_RESERVED:
        name = f"_{name}"[:max_length]
    return name


def _sanitised(text: str, max_length: int) -> str:
    folded = unicodedata.normalize("NFKD", str(text)).encode("ascii", "ignore").decode("ascii")
    name = _UNSAFE_NAME_CHARACTERS.sub("_", folded)
    name = re.sub(r"\.{2,}", ".", name).strip("._-")
    return name[:max_length].rstrip("._-")


# ---------------------------------------------------------------------------- NIfTI
def write_labels_nifti(label_map: Volume, path: str | Path) -> Path:
    """Write a uint8 label map as gzipped NIfTI-1 (``.nii.gz``), atomically.

    The geometry goes through :func:`radview.io.convert.volume_to_nifti` (RAS affine, qform and
    sform set). The gzip header carries no name and no time stamp, so equal label maps give
    byte-identical files.

    Raises
    ------
    ValueError
        ``path`` does not end in ``.nii.gz`` or the voxels are not uint8.
    ExportError
        The file cannot be written.
    """
    from radview.io.convert import volume_to_nifti

    path = Path(path)
    if not path.name.endswith(".nii.gz"):
        raise ValueError(f"{path}: a label map is written as .nii.gz")
    if label_map.voxels.dtype != np.uint8:
        raise ValueError(f"label maps are uint8, got {label_map.voxels.dtype}")
    buffer = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buffer, mtime=0) as gz:
        gz.write(volume_to_nifti(label_map).to_bytes())
    return write_export_bytes(path, buffer.getvalue())


# ---------------------------------------------------------------------------- JSON
def _plain(value: object) -> object:
    """JSON-ready data: numpy scalars/arrays to Python, non-finite floats to None."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return [_plain(v) for v in value.tolist()]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None  # JSON has no NaN/Infinity; null means "not measured"
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


def write_findings_json(
    findings_json: Mapping[str, object],
    path: str | Path,
    *,
    identifiers: Mapping[str, str] | None = None,
) -> Path:
    """Write findings (:func:`radview.core.lesions.to_json`) as UTF-8 JSON, atomically.

    Keys are sorted and the file ends with a newline, so equal findings give equal files.
    ``to_json`` output holds no patient identifiers; they appear only when passed as
    ``identifiers`` (stored under the key ``"patient"``). Non-finite numbers become ``null``.

    Raises
    ------
    ValueError
        ``findings_json`` already has a ``"patient"`` key and ``identifiers`` are given.
    ExportError
        The file cannot be written.
    """
    document = dict(_plain(findings_json))  # type: ignore[arg-type]
    if identifiers is not None:
        if "patient" in document:
            raise ValueError("findings_json already has a 'patient' entry")
        document["patient"] = {str(k): str(v) for k, v in identifiers.items()}
    text = json.dumps(document, sort_keys=True, indent=2, ensure_ascii=False, allow_nan=False)
    return write_export_bytes(path, (text + "\n").encode("utf-8"))


# ---------------------------------------------------------------------------- CSV
def _number_cell(value: float) -> str:
    """A float literal (shortest exact form); empty when not finite."""
    value = float(value)
    return repr(value) if math.isfinite(value) else ""


def _text_cell(value: object) -> str:
    """Text a spreadsheet shows as text: formula-like starts get a leading apostrophe."""
    text = "" if value is None else str(value)
    return f"'{text}" if text.startswith(_FORMULA_STARTS) else text


def _lesion_row(lesion: Lesion) -> list[str]:
    x, y, z = lesion.centroid_lps
    return [
        str(int(lesion.id)),
        _text_cell(None if lesion.lobe is None else getattr(lesion.lobe, "value", lesion.lobe)),
        "yes" if lesion.in_liver else "no",
        _number_cell(lesion.long_axis.value),
        _number_cell(lesion.short_axis.value),
        _number_cell(lesion.max_diameter.value),
        _number_cell(lesion.volume.value),
        _number_cell(lesion.mean.value),
        _number_cell(x),
        _number_cell(y),
        _number_cell(z),
    ]


def write_lesion_csv(findings: LiverFindings, path: str | Path) -> Path:
    """One row per lesion (columns :data:`LESION_CSV_COLUMNS`), UTF-8, atomically.

    Numbers are written as plain float literals (a negative LPS coordinate stays a number);
    text cells that a spreadsheet would evaluate as a formula (starting with ``= + - @``, tab
    or carriage return) are prefixed with ``'``. Centroids are LPS millimetres; ``mean_hu``
    is in the image's unit (HU for CT).

    Raises
    ------
    ExportError
        The file cannot be written.
    """
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(LESION_CSV_COLUMNS)
    for lesion in findings.lesions:
        writer.writerow(_lesion_row(lesion))
    return write_export_bytes(path, buffer.getvalue().encode("utf-8"))
