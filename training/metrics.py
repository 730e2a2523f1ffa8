"""Metrics with their confidence intervals: Dice, IoU, pixel accuracy, AUC, macro-F1, lesion
detection, and a percentile bootstrap over cases."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from scipy import ndimage

__all__ = ["dice", "iou", "pixel_accuracy", "binary_auc", "macro_f1", "confusion_matrix",
           "bootstrap_ci", "detect_lesions", "largest_extent_mm", "lesion_contrast_to_noise",
           "LOW_CONTRAST_CNR"]

#: A lesion whose contrast to the surrounding liver is below the liver's own voxel-to-voxel
#: spread (texture + noise) is "low contrast" in the detection breakdown.
LOW_CONTRAST_CNR = 1.0


def dice(predicted: np.ndarray, truth: np.ndarray) -> float:
    """Dice of two masks; 1.0 when both are empty (nothing to find, nothing found)."""
    total = int(predicted.sum()) + int(truth.sum())
    if total == 0:
        return 1.0
    return 2.0 * int(np.logical_and(predicted, truth).sum()) / total


def iou(predicted: np.ndarray, truth: np.ndarray) -> float:
    union = int(np.logical_or(predicted, truth).sum())
    if union == 0:
        return 1.0
    return int(np.logical_and(predicted, truth).sum()) / union


def pixel_accuracy(predicted: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean(predicted == truth))


def binary_auc(targets: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney U with tied ranks); NaN with one class only."""
    targets = np.asarray(targets).astype(bool)
    positives, negatives = int(targets.sum()), int((~targets).sum())
    if positives == 0 or negatives == 0:
        return float("nan")
    ranks = _tied_ranks(np.asarray(scores, float))
    return float((ranks[targets].sum() - positives * (positives + 1) / 2)
                 / (positives * negatives))


def _tied_ranks(values: np.ndarray) -> np.ndarray:
    order = np.argsort(values, kind="mergesort")
    ranks = np.empty(len(values), float)
    sorted_values = values[order]
    start = 0
    for end in range(1, len(values) + 1):
        if end == len(values) or sorted_values[end] != sorted_values[start]:
            ranks[order[start:end]] = (start + end + 1) / 2  # ranks start at 1
            start = end
    return ranks


def confusion_matrix(truth: Sequence[int], predicted: Sequence[int], classes: int) -> np.ndarray:
    matrix = np.zeros((classes, classes), np.int64)
    for t, p in zip(truth, predicted, strict=True):
        matrix[t, p] += 1
    return matrix


def macro_f1(truth: Sequence[int], predicted: Sequence[int], classes: int) -> float:
    """Mean F1 over the classes present in the truth or the prediction."""
    matrix = confusion_matrix(truth, predicted, classes)
    scores = []
    for c in range(classes):
        tp = matrix[c, c]
        fp = matrix[:, c].sum() - tp
        fn = matrix[c, :].sum() - tp
        if tp + fp + fn == 0:
            continue
        scores.append(2 * tp / (2 * tp + fp + fn))
    return float(np.mean(scores)) if scores else float("nan")


def bootstrap_ci(values: Sequence, statistic: Callable[[Sequence], float] = np.mean,
                 samples: int = 2000, seed: int = 0) -> tuple[float, float]:
    """95 % percentile bootstrap interval of ``statistic`` over cases."""
    values = list(values)
    if not values:
        return (float("nan"), float("nan"))
    rng = np.random.default_rng(seed)
    n = len(values)
    stats = np.array([statistic([values[i] for i in rng.integers(0, n, n)])
                      for _ in range(samples)], float)
    stats = stats[np.isfinite(stats)]  # resamples where the statistic is undefined
    if stats.size == 0:
        return (float("nan"), float("nan"))
    low, high = np.percentile(stats, [2.5, 97.5])
    return float(low), float(high)


def lesion_contrast_to_noise(hu: np.ndarray, lesion: np.ndarray, liver: np.ndarray
                             ) -> float | None:
    """How far a lesion stands out of the liver around it, voxel by voxel: |mean HU of the
    lesion's interior (eroded by one voxel when that leaves any) - mean HU of the liver in a
    shell 2-4 voxels outside it| / the HU standard deviation in that shell (texture + noise).
    None when the shell holds fewer than 20 liver voxels. Arrays are the lesion's box with a
    margin of at least 4 voxels."""
    inner = ndimage.binary_erosion(lesion)
    if not inner.any():
        inner = lesion
    shell = (ndimage.binary_dilation(lesion, iterations=4)
             & ~ndimage.binary_dilation(lesion, iterations=1) & liver)
    if int(shell.sum()) < 20:
        return None
    around = hu[shell].astype(np.float64)
    spread = float(around.std())
    return abs(float(hu[inner].mean()) - float(around.mean())) / max(spread, 1e-6)


def largest_extent_mm(box: tuple[slice, ...], spacing_xyz: Sequence[float]) -> float:
    """A component's largest bounding-box extent along any axis (z, y, x box; mm)."""
    return max((box[0].stop - box[0].start) * spacing_xyz[2],
               (box[1].stop - box[1].start) * spacing_xyz[1],
               (box[2].stop - box[2].start) * spacing_xyz[0])


def detect_lesions(predicted: np.ndarray, truth: np.ndarray, spacing_xyz: Sequence[float],
                   min_diameter_mm: float = 10.0, *, hu: np.ndarray | None = None,
                   liver: np.ndarray | None = None) -> dict[str, int]:
    """Lesion-level detection on one scan (26-connected components of the tumour masks).

    A truth lesion counts (``truth_lesions``) when its largest extent along any axis is at
    least ``min_diameter_mm``; it is detected when any predicted tumour voxel lies in it. A
    predicted component touching no truth tumour voxel (of any size) is a false positive.
    With the image ``hu`` and the truth ``liver`` mask, counted lesions whose
    :func:`lesion_contrast_to_noise` is below :data:`LOW_CONTRAST_CNR` are also counted
    (``low_contrast_lesions``, ``low_contrast_detected``).
    """
    structure = np.ones((3, 3, 3), bool)
    truth_components, truth_count = ndimage.label(truth, structure)
    predicted_components, predicted_count = ndimage.label(predicted, structure)
    counted = detected = low_counted = low_detected = 0
    for index, box in enumerate(ndimage.find_objects(truth_components), start=1):
        if box is None or largest_extent_mm(box, spacing_xyz) < min_diameter_mm:
            continue
        counted += 1
        found = bool(predicted[box][truth_components[box] == index].any())
        detected += found
        if hu is not None and liver is not None:
            around = tuple(slice(max(0, s.start - 5), s.stop + 5) for s in box)
            cnr = lesion_contrast_to_noise(hu[around], truth_components[around] == index,
                                           liver[around])
            if cnr is not None and cnr < LOW_CONTRAST_CNR:
                low_counted += 1
                low_detected += found
    false_positives = 0
    for index, box in enumerate(ndimage.find_objects(predicted_components), start=1):
        if box is not None and not truth[box][predicted_components[box] == index].any():
            false_positives += 1
    out = {"truth_lesions": counted, "detected": detected, "false_positives": false_positives,
           "predicted_lesions": int(predicted_count), "all_truth_lesions": int(truth_count)}
    if hu is not None and liver is not None:
        out.update(low_contrast_lesions=low_counted, low_contrast_detected=low_detected)
    return out
