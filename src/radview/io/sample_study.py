"""The embedded sample study: a synthetic abdominal CT series plus its liver/tumour truth.

Layout of ``out_dir``::

    dicom/IM0001.dcm ...     one CT series (Explicit VR Little Endian)
    truth/labels.nii.gz      uint8 label map (0 background, 1 liver, 2 tumour), same geometry
    truth/lesions.json       every lesion's centre, diameters, analytic volume and mean HU

Everything is a function of the arguments: the same seed writes the same pixel data, the same
UIDs and the same truth files (dates are fixed and the gzip header carries no timestamp).
"""

from __future__ import annotations

import gzip
import io
import json
import os
import shutil
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from radview.core.phantom import (
    PHANTOM_GENERATOR,
    PHANTOM_VERSION,
    LesionTruth,
    Phantom,
    PhantomLabel,
    make_abdomen_phantom,
)
from radview.io.atomic import write_bytes_atomically
from radview.io.convert import volume_to_nifti
from radview.io.dicom_write import CancelCallback, ProgressCallback, write_dicom_series

__all__ = [
    "SAMPLE_FOV_MM",
    "SAMPLE_LENGTH_MM",
    "SAMPLE_PATIENT_NAME",
    "SampleStudyPaths",
    "write_sample_study",
]

#: Unmistakably synthetic, so nobody takes the sample for a patient.
SAMPLE_PATIENT_NAME = "Sample^Liver^^^SYNTHETIC"
#: The box every sample covers, whatever its matrix: (in-plane FOV, craniocaudal length) in mm.
#: At the defaults (512 x 512 x 80) this gives 0.78 mm pixels and 2.5 mm slices.
SAMPLE_FOV_MM = 399.36
SAMPLE_LENGTH_MM = 200.0
# A fixed date keeps the files reproducible; it is obviously not an acquisition date.
_SAMPLE_DATETIME = datetime(2000, 1, 1, 9, 0, 0)


@dataclass(frozen=True)
class SampleStudyPaths:
    """Where :func:`write_sample_study` put everything."""

    root: Path
    dicom_dir: Path
    dicom_files: tuple[Path, ...]
    labels_nifti: Path
    lesions_json: Path


def write_sample_study(
    out_dir: Path,
    *,
    matrix: int = 512,
    slices: int = 80,
    seed: int = 0,
    progress: ProgressCallback | None = None,
    cancel: CancelCallback | None = None,
) -> SampleStudyPaths:
    """Generate the abdomen phantom and write it as DICOM plus truth files under ``out_dir``.

    Parameters
    ----------
    out_dir
        Created if missing. ``out_dir/dicom`` must not exist or be empty: the series appears
        there complete (written to a sibling temporary folder, then renamed) or not at all.
    matrix, slices, seed
        Passed to :func:`radview.core.phantom.make_abdomen_phantom`. The sample always covers
        :data:`SAMPLE_FOV_MM` in-plane and :data:`SAMPLE_LENGTH_MM` along the patient, so
        ``matrix`` and ``slices`` only set the resolution (small values make quick tests).
    progress
        Called as ``progress(done, total)`` with ``total = slices + 2`` (phantom, each DICOM
        file, truth).
    cancel
        Polled between files; when it returns True nothing new is left behind and
        :class:`~radview.core.errors.LoadCancelled` is raised.

    Returns
    -------
    SampleStudyPaths
    """
    out_dir = Path(out_dir)
    dicom_dir = out_dir / "dicom"
    if dicom_dir.exists() and any(dicom_dir.iterdir()):
        raise FileExistsError(f"{dicom_dir}: already holds files; choose an empty folder")
    total = slices + 2
    phantom = make_abdomen_phantom(
        matrix=matrix,
        slices=slices,
        seed=seed,
        pixel_spacing=SAMPLE_FOV_MM / matrix,
        slice_thickness=SAMPLE_LENGTH_MM / slices,
    )
    if progress is not None:
        progress(1, total)

    def dicom_progress(done: int, _count: int) -> None:
        if progress is not None:
            progress(1 + done, total)

    out_dir.mkdir(parents=True, exist_ok=True)
    files = _write_series(phantom, dicom_dir, dicom_progress, cancel)
    truth_dir = out_dir / "truth"
    truth_dir.mkdir(exist_ok=True)
    labels_path = truth_dir / "labels.nii.gz"
    lesions_path = truth_dir / "lesions.json"
    write_bytes_atomically(labels_path, _labels_nifti_gz(phantom))
    write_bytes_atomically(lesions_path, _lesions_json(phantom, matrix, slices).encode("utf-8"))
    if progress is not None:
        progress(total, total)
    return SampleStudyPaths(out_dir, dicom_dir, tuple(files), labels_path, lesions_path)


def _write_series(
    phantom: Phantom,
    dicom_dir: Path,
    progress: ProgressCallback,
    cancel: CancelCallback | None,
) -> list[Path]:
    """Write into a hidden sibling folder, then rename it to ``dicom_dir`` in one step."""
    staging = dicom_dir.with_name(f".{dicom_dir.name}.{os.getpid()}.partial")
    shutil.rmtree(staging, ignore_errors=True)  # left over from a crash of this same pid
    slices, matrix = phantom.ct.shape[0], phantom.ct.shape[2]
    try:
        written = write_dicom_series(
            phantom.ct,
            staging,
            patient_name=SAMPLE_PATIENT_NAME,
            patient_id=f"RADVIEW-SAMPLE-{phantom.seed}",
            study_description="CT ABDOMEN PORTAL VENOUS (SYNTHETIC PHANTOM)",
            series_description=f"Axial {phantom.ct.spacing[2]:.3g} mm (synthetic)",
            body_part_examined="ABDOMEN",
            modality="CT",
            study_datetime=_SAMPLE_DATETIME,
            uid_seed=(
                f"radview-sample/v{PHANTOM_VERSION}/seed={phantom.seed}"
                f"/matrix={matrix}/slices={slices}"
            ),
            extra_attributes={
                "PatientSex": "O",
                "ImageComments": "Synthetic phantom generated by radview; not patient data",
                "ContrastBolusAgent": "IV CONTRAST (SIMULATED)",
            },
            progress=progress,
            cancel=cancel,
        )
        # rename() refuses a non-empty target, so a series that appeared meanwhile survives.
        staging.rename(dicom_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return [dicom_dir / path.name for path in written]


def _labels_nifti_gz(phantom: Phantom) -> bytes:
    """The label map as gzipped NIfTI-1 bytes; mtime 0 in the gzip header keeps them stable."""
    image = volume_to_nifti(phantom.labels)
    buffer = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buffer, mtime=0) as gz:
        gz.write(image.to_bytes())
    return buffer.getvalue()


def _lesion_record(lesion: LesionTruth) -> dict[str, object]:
    return {
        "id": lesion.id,
        "label": int(PhantomLabel.TUMOUR),
        "centre_lps_mm": list(lesion.centre_lps_mm),
        "diameters_mm": list(lesion.diameters_mm),
        "volume_ml": round(lesion.volume_ml, 4),
        "mean_hu": lesion.mean_hu,
    }


def _lesions_json(phantom: Phantom, matrix: int, slices: int) -> str:
    document = {
        "generator": PHANTOM_GENERATOR,
        "generator_version": PHANTOM_VERSION,
        "seed": phantom.seed,
        "matrix": matrix,
        "slices": slices,
        "spacing_mm": list(phantom.ct.spacing),
        "coordinate_system": "DICOM patient (LPS), millimetres",
        "diameters_axes": "full ellipsoid axes along LPS x, y, z",
        "labels": {label.name.lower(): int(label) for label in PhantomLabel},
        "lesions": [_lesion_record(lesion) for lesion in phantom.lesions],
    }
    return json.dumps(document, indent=2) + "\n"
