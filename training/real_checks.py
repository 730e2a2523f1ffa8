"""Qualitative checks of the shipped models on real CT (never used for training).

    python -m training.real_checks CASE_DIR [CASE_DIR ...] --out DIR [--models-dir DIR]

A case folder holds the CT (a ``dicom/`` folder, or one ``.nii.gz`` / ``.nrrd`` volume) and
optionally a reference segmentation whose name contains ``reference_seg`` (TotalSegmentator's
multilabel output, liver = label 5) or ``liver_seg`` (liver = any label > 0). Real scans come
from public packages (see ``training/README.md`` for where to get them); they are not
committed. For each case this runs the app's pipelines (segmentation with each segmentation
model, staging, triage), measures liver Dice against the reference when there is one (compared
voxel by voxel when the grids have the same shape), and writes an overlay PNG per case and
``real_checks.md`` with the numbers, for a person to look at and describe in the model cards.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

from radview.core.errors import RadviewError
from radview.core.volume import Volume
from radview.inference.analyze import run_staging_and_triage
from radview.inference.manifest import ModelTask
from radview.inference.pipeline import segment
from radview.inference.registry import discover_models
from radview.inference.runtime import SessionCache
from radview.io.open_study import open_images
from radview.io.volume_files import read_volume_file
from training.metrics import dice

__all__ = ["find_case_files", "check_case", "main"]

TOTALSEGMENTATOR_LIVER = 5


def find_case_files(folder: Path) -> tuple[Path, Path | None]:
    """(image path, reference path or None) of one case folder."""
    reference = next((p for p in sorted(folder.glob("*.nii*"))
                      if "reference_seg" in p.name or "liver_seg" in p.name), None)
    if (folder / "dicom").is_dir():
        return folder / "dicom", reference
    volumes = [p for p in sorted(folder.iterdir())
               if p.name.endswith((".nii.gz", ".nii", ".nrrd", ".mha")) and p != reference
               and "seg" not in p.name]
    if not volumes:
        raise RadviewError(f"{folder}: no dicom/ folder and no volume file")
    return volumes[0], reference


def _reference_liver(path: Path, image: Volume) -> np.ndarray | None:
    """The reference liver mask on the image's grid: voxel by voxel when both files share one
    geometry, else resampled (nearest) through patient coordinates (a NIfTI may store the rows
    in the other order than the DICOM series)."""
    reference = read_volume_file(path)
    same_grid = (reference.shape == image.shape
                 and np.allclose(reference.spacing, image.spacing, atol=1e-3)
                 and np.allclose(reference.origin, image.origin, atol=1e-2)
                 and np.allclose(reference.direction, image.direction, atol=1e-4))
    if same_grid:
        values = reference.voxels
    else:
        values = _resample_onto(reference, image)
    if values is None:
        return None
    if "reference_seg" in path.name:
        return values == TOTALSEGMENTATOR_LIVER
    return values > 0


def _resample_onto(reference: Volume, image: Volume) -> np.ndarray | None:
    import SimpleITK as sitk

    def as_sitk(volume: Volume):
        out = sitk.GetImageFromArray(np.ascontiguousarray(volume.voxels))
        out.SetSpacing(volume.spacing)
        out.SetOrigin(volume.origin)
        out.SetDirection(tuple(float(v) for v in np.asarray(volume.direction).ravel()))
        return out

    target = as_sitk(image)
    resampled = sitk.Resample(as_sitk(reference), target, sitk.Transform(),
                              sitk.sitkNearestNeighbor, 0)
    values = sitk.GetArrayFromImage(resampled)
    return values if values.any() else None  # no overlap: the headers disagree


def _overlay_png(image: Volume, labels: np.ndarray, reference: np.ndarray | None,
                 path: Path) -> None:
    """The axial slice with the most predicted (or reference) liver, window -160..240 HU:
    predicted liver green, tumour red, reference outline yellow."""
    liver = labels > 0
    per_slice = liver.reshape(liver.shape[0], -1).sum(axis=1)
    if per_slice.max() == 0 and reference is not None:
        per_slice = reference.reshape(reference.shape[0], -1).sum(axis=1)
    k = int(np.argmax(per_slice))
    hu = image.voxels[k].astype(np.float32)
    grey = (np.clip((hu + 160.0) / 400.0, 0, 1) * 255).astype(np.uint8)
    rgb = np.stack([grey] * 3, axis=-1).astype(np.float32)
    for value, colour in ((1, (40, 200, 90)), (2, (230, 40, 40))):
        mask = labels[k] == value
        rgb[mask] = 0.55 * rgb[mask] + 0.45 * np.array(colour, np.float32)
    if reference is not None:
        ref = reference[k]
        edge = ref & ~(np.roll(ref, 1, 0) & np.roll(ref, -1, 0) & np.roll(ref, 1, 1)
                       & np.roll(ref, -1, 1))
        rgb[edge] = (255, 230, 0)
    if float(np.asarray(image.direction)[1, 1]) < 0:  # show anterior up, patient right left
        rgb = rgb[::-1]
    if float(np.asarray(image.direction)[0, 0]) < 0:
        rgb = rgb[:, ::-1]
    Image.fromarray(rgb.astype(np.uint8)).save(path)


def check_case(folder: Path, out: Path, models_dir: Path | None) -> dict:
    image_path, reference_path = find_case_files(folder)
    if image_path.is_dir():
        image = open_images([image_path]).volume
    else:
        image = read_volume_file(image_path)
    registry = discover_models(builtin_dir=models_dir, user_dir=Path("/nonexistent"),
                               entry_points=False)
    sessions = SessionCache()
    reference = _reference_liver(reference_path, image) if reference_path else None
    row: dict = {"case": folder.name, "shape": list(image.shape),
                 "spacing": [round(s, 3) for s in image.spacing]}
    main_labels = None
    for model in registry.for_task(ModelTask.SEGMENTATION):
        result = segment(image, model, sessions, device="cpu", force=True)
        labels = result.labels.voxels
        voxel_ml = float(np.prod(image.spacing)) / 1000.0
        entry = {"liver_ml": round(float((labels > 0).sum()) * voxel_ml, 1),
                 "tumour_ml": round(float((labels == 2).sum()) * voxel_ml, 1),
                 "seconds": round(result.seconds, 2)}
        if reference is not None:
            entry["liver_dice_vs_reference"] = round(dice(labels > 0, reference), 3)
        row[model.id] = entry
        if model.id == "liver-tumor-seg" or main_labels is None:
            main_labels = result
    if main_labels is not None:
        follow = run_staging_and_triage(image, main_labels.labels, registry, sessions,
                                        device="cpu", force=True,
                                        liver_found=bool((main_labels.labels.voxels > 0).any()))
        if follow.staging is not None:
            row["staging"] = {k: round(v, 3) for k, v in follow.staging.probabilities.items()}
        if follow.triage is not None:
            row["triage_max"] = round(float(follow.triage.probabilities.max()), 3)
            row["triage_slices_over_0.5"] = int((follow.triage.probabilities >= 0.5).sum())
        row["notes"] = follow.notes
        _overlay_png(image, main_labels.labels.voxels, reference, out / f"{folder.name}.png")
    if reference is None and reference_path is not None:
        row["reference"] = "not compared: different grid shape"
    return row


def _markdown(rows: list[dict]) -> str:
    lines = ["| Case | Grid | Model | Liver mL | Tumour mL | Liver Dice vs reference |",
             "|---|---|---|---|---|---|"]
    for row in rows:
        for key, value in row.items():
            if isinstance(value, dict) and "liver_ml" in value:
                lines.append(
                    f"| {row['case']} | {'x'.join(map(str, row['shape']))} @ "
                    f"{row['spacing']} mm | {key} | {value['liver_ml']} | {value['tumour_ml']} | "
                    f"{value.get('liver_dice_vs_reference', 'no reference')} |")
    lines += ["", "| Case | Staging probabilities | Triage: max P, slices >= 0.5 |",
              "|---|---|---|"]
    for row in rows:
        lines.append(f"| {row['case']} | {row.get('staging', row.get('notes', {}).get('staging'))}"
                     f" | {row.get('triage_max', '-')}, {row.get('triage_slices_over_0.5', '-')} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.real_checks", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("cases", nargs="+", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--models-dir", type=Path)
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    for folder in args.cases:
        try:
            rows.append(check_case(folder, args.out, args.models_dir))
        except RadviewError as error:
            print(f"skipped {folder}: {error}")
            continue
        print(rows[-1])
    (args.out / "real_checks.md").write_text(_markdown(rows) + "\n")
    return 0 if rows else 2


if __name__ == "__main__":
    raise SystemExit(main())
