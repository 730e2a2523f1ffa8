"""Training data: phantom cases (or an MSD/LiTS folder) put on the models' grids and cached.

Every case goes through :func:`radview.inference.pipeline.to_model_grid`, the app's own
preprocessing, so a model is trained on exactly what it will be given:

* the **slice grid** (``SLICE_SPACING_MM`` in-plane, ``SLICE_SIZE`` square, native slice
  spacing): the segmentation U-Net and DeepLabV3+ and the triage CNN;
* the **staging grid** (``STAGE_SPACING_MM``, ``STAGE_SIZE``): the CNN-LSTM.

A cached case is one ``.npz`` (int16 HU, uint8 labels, the stage) in a cache folder; writing
is atomic, so an interrupted build resumes where it stopped.

Splits are disjoint seed ranges (:data:`SPLITS`): ``train`` (training and the hyperparameter
search's training), ``val`` (search objective and early stopping), ``test`` (held out: only
:mod:`training.evaluate` reads it, and only after training), ``val_extra`` (more validation,
for choosing between finished models).
"""

from __future__ import annotations

import json
import os
import sys
import zipfile
from collections.abc import Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from radview.core.errors import RadviewError
from radview.core.volume import Volume
from radview.inference.pipeline import to_model_grid
from training.phantoms import GENERATOR_VERSION, LiverStage, PhantomConfig, generate_case

__all__ = [
    "SLICE_SPACING_MM", "SLICE_SIZE", "STAGE_SPACING_MM", "STAGE_SIZE", "STAGE_ANTIALIAS",
    "SEQUENCE_LENGTH",
    "HU_WINDOW", "STAGES", "SPLITS", "DatasetError", "CachedCase", "phantom_config",
    "build_phantom_cache", "build_msd_cache", "load_cache", "iter_msd_pairs",
    "check_same_geometry", "normalise", "main",
]

SLICE_SPACING_MM = 2.0
SLICE_SIZE = 224  # 448 mm field of view
STAGE_SPACING_MM = 4.0
STAGE_SIZE = 112  # 448 mm field of view
#: Whether the staging grid is smoothed before downsampling (manifest ``input.antialias``), so
#: a 4 mm pixel averages the source pixels it covers instead of keeping their full noise. Tried
#: on 2026-11-22 (the shipped settings otherwise): validation macro-F1 0.68 against 0.73
#: without it, on 200 validation phantoms (Mild/Moderate no better, Severe/End-stage worse),
#: so it is off. The cache records the setting and is rebuilt when it changes.
STAGE_ANTIALIAS = False
SEQUENCE_LENGTH = 16  # liver slices the CNN-LSTM reads
#: Intensity window of every model (HU); mapped onto [0, 1].
HU_WINDOW = (-200.0, 300.0)
STAGES = ("Mild", "Moderate", "Severe", "End-stage")
_STAGE_INDEX = {LiverStage.MILD: 0, LiverStage.MODERATE: 1, LiverStage.SEVERE: 2,
                LiverStage.END_STAGE: 3}
#: split -> (first seed, count). Disjoint; the test split is never used for training or search.
#: ``val_extra`` is more validation for choosing between finished models (40 scans give a
#: staging F1 95 % interval 0.28 wide); no training run reads it. ``lesion_filter``: the
#: scans the segmentation model's lesion filter is fitted on (training/lesion_filter.py), new
#: to the network, so its false positives there are like those on unseen scans.
SPLITS = {"train": (0, 480), "val": (100_000, 40), "test": (200_000, 120),
          "val_extra": (300_000, 160), "lesion_filter": (400_000, 320)}


class DatasetError(RadviewError):
    """A dataset folder or volume that cannot be used (message names the file)."""


def phantom_config(seed: int) -> PhantomConfig:
    """A quarter of the cases are rendered at a fine in-plane spacing (0.6-1.0 mm, a 154-256 mm
    field of view that truncates the body) and resampled like a real scan; the rest at
    1.6-2.4 mm over the whole body. Both families keep 1-5 mm slices."""
    if seed % 4 == 0:
        return PhantomConfig(matrix=256, pixel_spacing_mm=(0.6, 1.0))
    return PhantomConfig(matrix=224, pixel_spacing_mm=(1.6, 2.4))


@dataclass(frozen=True)
class CachedCase:
    name: str
    slice_hu: np.ndarray  # (z, SLICE_SIZE, SLICE_SIZE) int16
    slice_labels: np.ndarray  # uint8 0/1/2
    stage_hu: np.ndarray  # (z', STAGE_SIZE, STAGE_SIZE) int16
    stage_labels: np.ndarray
    stage: int  # index into STAGES; -1 unknown


def normalise(hu: np.ndarray) -> np.ndarray:
    """HU -> [0, 1] over :data:`HU_WINDOW` (the manifests say the same)."""
    low, high = HU_WINDOW
    return ((np.clip(hu.astype(np.float32), low, high) - low) / (high - low)).astype(np.float32)


def _cache_arrays(ct: Volume, labels: np.ndarray) -> dict[str, np.ndarray]:
    low = HU_WINDOW[0] - 800.0  # pad with air, not with the window's low end
    grid = to_model_grid(ct, (SLICE_SPACING_MM, SLICE_SPACING_MM), (SLICE_SIZE, SLICE_SIZE),
                         labels=labels, window_low=low)
    stage = to_model_grid(ct, (STAGE_SPACING_MM, STAGE_SPACING_MM), (STAGE_SIZE, STAGE_SIZE),
                          labels=labels, window_low=low, antialias=STAGE_ANTIALIAS)
    return {
        "slice_hu": np.clip(np.rint(grid.hu), -1024, 3071).astype(np.int16),
        "slice_labels": grid.labels,
        "stage_hu": np.clip(np.rint(stage.hu), -1024, 3071).astype(np.int16),
        "stage_labels": stage.labels,
        "stage_antialias": np.bool_(STAGE_ANTIALIAS),
    }


def _is_current(path: Path) -> bool:
    """Whether a cached file exists and was made with today's preprocessing."""
    if not path.exists():
        return False
    try:
        with np.load(path) as data:
            return _stage_antialias(data) == STAGE_ANTIALIAS
    except (OSError, ValueError, EOFError, zipfile.BadZipFile):
        return False


def _stage_antialias(data) -> bool:
    # files written before the setting existed have no entry: they were not antialiased
    return bool(data["stage_antialias"]) if "stage_antialias" in data else False


def _atomic_savez(path: Path, **arrays) -> None:
    tmp = path.with_name(path.name + f".{os.getpid()}.tmp.npz")
    np.savez(tmp, **arrays)
    os.replace(tmp, path)


def _build_one(args: tuple[int, str]) -> str:
    seed, folder = args
    path = Path(folder) / f"phantom-{seed:06d}.npz"
    if _is_current(path):
        return path.name
    case = generate_case(seed, config=phantom_config(seed))
    arrays = _cache_arrays(case.ct, case.labels.voxels)
    lesions = [max(lesion.axes_mm) for lesion in case.lesions]
    _atomic_savez(path, **arrays, stage=np.int64(_STAGE_INDEX[case.stage]),
                  lesion_diameters_mm=np.asarray(lesions, np.float32))
    return path.name


def build_phantom_cache(folder: Path, split: str, count: int | None = None,
                        workers: int = 2) -> list[Path]:
    """Render the ``split``'s phantoms (the first ``count`` of them) into ``folder/split``."""
    first, size = SPLITS[split]
    seeds = range(first, first + (size if count is None else min(count, size)))
    out = folder / split
    out.mkdir(parents=True, exist_ok=True)
    (out / "generator.json").write_text(json.dumps(
        {"generator_version": GENERATOR_VERSION, "seeds": [seeds.start, seeds.stop - 1]}))
    jobs = [(seed, str(out)) for seed in seeds]
    if workers > 1:
        with ProcessPoolExecutor(workers) as pool:
            names = list(pool.map(_build_one, jobs, chunksize=4))
    else:
        names = [_build_one(job) for job in jobs]
    return [out / name for name in names]


def load_cache(paths: Iterable[Path]) -> list[CachedCase]:
    """Read cached cases; an unreadable file is reported on stderr and skipped."""
    cases = []
    for path in paths:
        try:
            with open(path, "rb") as stream, np.load(stream) as data:
                if _stage_antialias(data) != STAGE_ANTIALIAS:
                    raise DatasetError(f"{path}: cached with another preprocessing of the "
                                       "staging grid (antialias); run the data step again "
                                       "(python -m training.data) to rebuild it")
                cases.append(CachedCase(
                    Path(path).stem, data["slice_hu"], data["slice_labels"], data["stage_hu"],
                    data["stage_labels"], int(data["stage"]) if "stage" in data else -1))
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as error:
            print(f"skipped {path}: unreadable cache file ({error})", file=sys.stderr)
    return cases


# ---------------------------------------------------------------------------- MSD / LiTS
def check_same_geometry(image: Volume, labels: Volume, label_path: Path) -> None:
    """Refuse labels that are not on the image's grid (shape, spacing, origin, direction)."""
    problems = []
    if image.shape != labels.shape:
        problems.append(f"shape {labels.shape} != image {image.shape}")
    if not np.allclose(image.spacing, labels.spacing, atol=1e-3):
        problems.append(f"spacing {tuple(round(s, 4) for s in labels.spacing)} != image "
                        f"{tuple(round(s, 4) for s in image.spacing)}")
    if not np.allclose(image.origin, labels.origin, atol=1e-2):
        problems.append("origin differs from the image's")
    if not np.allclose(image.direction, labels.direction, atol=1e-4):
        problems.append("direction differs from the image's")
    if problems:
        raise DatasetError(f"{label_path}: labels do not match the image geometry: "
                           + "; ".join(problems))


def iter_msd_pairs(folder: Path) -> Iterator[tuple[str, Volume | None, Volume | None, str | None]]:
    """(case name, image, labels, problem) for each ``imagesTr/*.nii[.gz]`` of an MSD/LiTS
    folder; a missing, unreadable or mismatched pair yields its problem instead of volumes."""
    from radview.io.volume_files import read_volume_file

    images = Path(folder) / "imagesTr"
    labels_dir = Path(folder) / "labelsTr"
    if not images.is_dir() or not labels_dir.is_dir():
        raise DatasetError(f"{folder}: not a Medical Segmentation Decathlon / LiTS folder "
                           "(expected imagesTr/ and labelsTr/)")
    files = sorted(p for p in images.iterdir()
                   if p.name.endswith((".nii", ".nii.gz")) and not p.name.startswith("._"))
    if not files:
        raise DatasetError(f"{images}: no NIfTI images")
    for image_path in files:
        name = image_path.name.removesuffix(".gz").removesuffix(".nii")
        base = name.removesuffix("_0000")  # nnU-Net channel suffix
        label_path = next((labels_dir / f"{base}{ext}" for ext in (".nii.gz", ".nii")
                           if (labels_dir / f"{base}{ext}").exists()), None)
        if label_path is None:
            yield name, None, None, f"{image_path}: no label file {base}.nii.gz in {labels_dir}"
            continue
        try:
            image = read_volume_file(image_path)
            labels = read_volume_file(label_path)
            check_same_geometry(image, labels, label_path)
        except RadviewError as error:
            yield name, None, None, str(error)
            continue
        yield name, image, labels, None


# ---------------------------------------------------------------------------- command line
def build_msd_cache(folder: Path, out: Path, log=print) -> list[Path]:
    """Cache a labelled MSD/LiTS folder (e.g. real CT to fine-tune on) like the phantoms;
    unusable pairs are reported and skipped. The stage is unknown (-1): staging ignores them."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, image, labels, problem in iter_msd_pairs(folder):
        if problem is not None:
            log(f"skipped {name}: {problem}")
            continue
        path = out / f"{name}.npz"
        if not _is_current(path):
            arrays = _cache_arrays(image, np.minimum(labels.voxels, 2).astype(np.uint8))
            _atomic_savez(path, **arrays, stage=np.int64(-1),
                          lesion_diameters_mm=np.zeros(0, np.float32))
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    """``python -m training.data --msd DIR --out CACHE/train``: cache real labelled CT for
    fine-tuning (``python -m training.train MODEL --cache CACHE``)."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m training.data", description=main.__doc__)
    parser.add_argument("--msd", type=Path, required=True, help="imagesTr/ + labelsTr/ folder")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    try:
        written = build_msd_cache(args.msd, args.out,
                                  log=lambda line: print(line, file=sys.stderr))
    except DatasetError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"{len(written)} cases cached in {args.out}")
    return 0 if written else 2


if __name__ == "__main__":
    raise SystemExit(main())
