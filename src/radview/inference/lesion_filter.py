"""Lesion-level false-positive filter: after post-processing, each tumour component the
segmentation model found is described by a few numbers (size, how sure the model was, how it
stands out of the liver around it, shape, whether it lies at the liver's edge) and a logistic
regression, fitted on phantom predictions by ``training/lesion_filter.py`` and stored in the
model's manifest (``[lesion_filter]``), gives the probability that it is a real lesion.
Components below the manifest's threshold become liver, like specks.

Why: a pixel-wise model sees one slice (and its neighbours) at a time; whether a blob is a
lesion or a patch of heterogeneous liver is easier to judge from the whole 3D component, and
false positives are what the detection target limits (0.5 per scan).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from radview.core.labelmap import LiverLabel

__all__ = ["FEATURES", "LesionFilterSpec", "SetAside", "Components", "component_features",
           "lesion_probabilities", "filter_lesions"]

#: The component features, in the order the manifest's ``mean``/``scale``/``weights`` follow.
FEATURES = (
    "log_volume_mm3",      # ln of the component's volume
    "mean_probability",    # the model's mean tumour probability inside it (0-1)
    "max_probability",     # and its maximum
    "contrast_hu",         # mean HU inside minus mean HU of the liver 2-6 mm around it
    "contrast_to_noise",   # |contrast_hu| / HU standard deviation of that liver shell
    "shell_sd_hu",         # that standard deviation (liver texture + noise)
    "roundness",           # sqrt(smallest / largest principal variance), 1 = sphere
    "edge_fraction",       # share of the 2 mm ring around it that is outside the organ
)
#: The liver shell around a component whose HU it is compared with (mm from its surface).
SHELL_MM = (2.0, 6.0)
#: The ring whose share outside the organ gives ``edge_fraction`` (mm from its surface).
EDGE_RING_MM = 2.0
#: A shell with fewer liver voxels gives no contrast (the features take their training mean).
MIN_SHELL_VOXELS = 20
_CONNECTIVITY = np.ones((3, 3, 3), bool)


@dataclass(frozen=True)
class LesionFilterSpec:
    """A fitted filter: standardise each feature ((x - mean) / scale), then
    P(lesion) = sigmoid(weights . z + bias); keep components with P >= threshold.
    ``tumour_weight``: how the candidates it judges were made (the tumour probability's weight
    in the pipeline's choice of class; above 1, more and larger candidates)."""

    mean: tuple[float, ...]
    scale: tuple[float, ...]
    weights: tuple[float, ...]
    bias: float
    threshold: float
    tumour_weight: float = 1.0

    def as_toml_table(self) -> Mapping[str, object]:
        return {"features": list(FEATURES), "mean": list(self.mean), "scale": list(self.scale),
                "weights": list(self.weights), "bias": self.bias, "threshold": self.threshold,
                "tumour_weight": self.tumour_weight}


@dataclass(frozen=True)
class Components:
    """The tumour components of a label array, labelled inside their common bounding ``box``
    only (a whole-volume int32 label array would cost four bytes a voxel), with their
    :data:`FEATURES` and centres of mass."""

    labels: np.ndarray  # int32 component labels (1..count) of the array's ``box`` part
    box: tuple[slice, slice, slice]
    count: int
    features: np.ndarray  # (count, F); NaN where a feature cannot be measured
    centres_zyx: np.ndarray  # (count, 3) continuous indices of the whole array


def component_features(labels: np.ndarray, hu: np.ndarray, tumour_probability: np.ndarray,
                       spacing_xyz: tuple[float, float, float]) -> Components:
    """The tumour components of ``labels`` (26-connected) and their :data:`FEATURES`.

    ``hu`` and ``tumour_probability`` (uint8, 255 = 1) lie on the same (z, y, x) grid as
    ``labels``. A feature that cannot be measured (a shell with too little liver) is NaN.
    """
    tumour = labels == LiverLabel.TUMOUR
    if not tumour.any():
        empty = (slice(0, 0),) * 3
        return Components(np.zeros((0, 0, 0), np.int32), empty, 0,
                          np.zeros((0, len(FEATURES))), np.zeros((0, 3)))
    sz, sy, sx = spacing_xyz[2], spacing_xyz[1], spacing_xyz[0]
    margin = [int(np.ceil(SHELL_MM[1] / s)) + 1 for s in (sz, sy, sx)]
    # the tumour's bounding box, widened by the shell: every component's surroundings in it
    box = tuple(slice(max(0, int(hits[0]) - m), min(n, int(hits[-1]) + 1 + m))
                for hits, m, n in ((np.flatnonzero(tumour.any(axis=axes)), m, labels.shape[a])
                                   for a, axes, m in ((0, (1, 2), margin[0]),
                                                      (1, (0, 2), margin[1]),
                                                      (2, (0, 1), margin[2]))))
    del tumour
    labels, hu, tumour_probability = labels[box], hu[box], tumour_probability[box]
    components, count = ndimage.label(labels == LiverLabel.TUMOUR, structure=_CONNECTIVITY)
    features = np.full((count, len(FEATURES)), np.nan)
    centres = np.zeros((count, 3))
    voxel_mm3 = sx * sy * sz
    offset = np.array([b.start for b in box], float)
    for index, found in enumerate(ndimage.find_objects(components), start=1):
        if found is None:
            continue
        around = tuple(slice(max(0, b.start - m), min(n, b.stop + m))
                       for b, m, n in zip(found, margin, labels.shape, strict=True))
        inside = components[around] == index
        distance = ndimage.distance_transform_edt(~inside, sampling=(sz, sy, sx))
        organ = labels[around] > 0
        liver = labels[around] == LiverLabel.LIVER
        shell = (distance > SHELL_MM[0]) & (distance <= SHELL_MM[1]) & liver
        ring = (distance > 0) & (distance <= EDGE_RING_MM)
        values = hu[around][inside].astype(np.float64)
        probability = tumour_probability[around][inside].astype(np.float64) / 255.0
        points = np.argwhere(inside)
        centres[index - 1] = points.mean(axis=0) + [a.start for a in around] + offset
        row = features[index - 1]
        row[0] = np.log(len(points) * voxel_mm3)
        row[1] = probability.mean()
        row[2] = probability.max()
        if shell.sum() >= MIN_SHELL_VOXELS:
            surrounding = hu[around][shell].astype(np.float64)
            spread = max(float(surrounding.std()), 1e-6)
            row[3] = values.mean() - surrounding.mean()
            row[4] = abs(row[3]) / spread
            row[5] = spread
        row[6] = _roundness(points * np.array([sz, sy, sx]))
        row[7] = float((ring & ~organ).sum()) / max(1, int(ring.sum()))
    return Components(components, box, count, features, centres)


def _roundness(points_mm: np.ndarray) -> float:
    """sqrt(smallest / largest variance along the principal axes); 1 for a one-voxel blob."""
    if len(points_mm) < 2:
        return 1.0
    variances = np.linalg.eigvalsh(np.cov(points_mm, rowvar=False))
    if variances[-1] <= 0:
        return 1.0
    return float(np.sqrt(max(variances[0], 0.0) / variances[-1]))


def lesion_probabilities(features: np.ndarray, spec: LesionFilterSpec) -> np.ndarray:
    """P(real lesion) per row of ``features``; NaN features count as their training mean."""
    mean = np.asarray(spec.mean)
    filled = np.where(np.isnan(features), mean, features)
    z = (filled - mean) / np.asarray(spec.scale)
    return 1.0 / (1.0 + np.exp(-(z @ np.asarray(spec.weights) + spec.bias)))


@dataclass(frozen=True)
class SetAside:
    """A tumour component the filter turned into liver: where it was (its centre of mass as a
    continuous (z, y, x) index of the array it was found in), its size and its score."""

    centre_zyx: tuple[float, float, float]
    volume_mm3: float
    lesion_probability: float


def filter_lesions(labels: np.ndarray, hu: np.ndarray, tumour_probability: np.ndarray,
                   spacing_xyz: tuple[float, float, float], spec: LesionFilterSpec
                   ) -> tuple[SetAside, ...]:
    """Turn tumour components that ``spec`` judges unlikely lesions into liver, in place
    (``labels`` may be a view); returns what was set aside, most likely lesion first."""
    found = component_features(labels, hu, tumour_probability, spacing_xyz)
    if found.count == 0:
        return ()
    probabilities = lesion_probabilities(found.features, spec)
    rejected = probabilities < spec.threshold
    if not rejected.any():
        return ()
    set_aside = [SetAside(tuple(float(c) for c in found.centres_zyx[i]),
                          float(np.exp(found.features[i, 0])), float(probabilities[i]))
                 for i in np.flatnonzero(rejected)]
    turned = np.concatenate([[False], rejected])[found.labels]
    labels[found.box][turned] = LiverLabel.LIVER
    return tuple(sorted(set_aside, key=lambda item: -item.lesion_probability))
