"""Chronic liver disease stages and focal liver lesions of the phantom.

The stage is drawn first; its features are then drawn from the stage's parameter ranges
(:data:`STAGE_RANGES`), and :func:`stage_from_features` recovers the stage from the features
alone (the documented rule, tested for consistency). Lesions are rotated ellipsoids placed with
a margin fully inside the rendered liver, using a distance transform of the liver mask.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from enum import Enum
from typing import Any

import numpy as np
from scipy import ndimage

from training.phantoms.anatomy import Grid, ellipsoid_box, ellipsoid_radius, rotation

__all__ = [
    "LiverStage",
    "LesionKind",
    "LesionTruth",
    "STAGE_RANGES",
    "sample_disease",
    "stage_from_features",
    "place_lesions",
]


class LiverStage(Enum):
    """Chronic liver disease stage of a phantom (see README.md for the definitions)."""

    MILD = "mild"  # steatosis: lower liver attenuation, smooth surface
    MODERATE = "moderate"  # heterogeneous parenchyma, mild surface irregularity
    SEVERE = "severe"  # surface nodularity, caudate hypertrophy, splenomegaly
    END_STAGE = "end_stage"  # shrunken nodular liver, ascites, large spleen, varices


class LesionKind(Enum):
    """Enhancement behaviour of a focal lesion (relative to the liver, per phase)."""

    CYST = "cyst"  # water density, no enhancement: hypo in every phase
    HYPOVASCULAR = "hypovascular"  # e.g. colorectal metastasis: hypo in every phase
    HYPERVASCULAR = "hypervascular"  # e.g. HCC: arterial hyper, portal-venous washout


#: Per stage: feature -> (low, high). Draws are uniform within the range.
STAGE_RANGES: dict[LiverStage, dict[str, tuple[float, float]]] = {
    LiverStage.MILD: {
        "steatosis_hu": (12.0, 40.0),  # HU subtracted from the liver in every phase
        "texture_hu": (0.0, 4.0),  # SD of the smooth parenchymal texture
        "surface_amp": (0.0, 0.008),  # amplitude of surface nodularity (normalised radius)
        "caudate_scale": (1.0, 1.05),
        "right_lobe_scale": (1.0, 1.0),
        "liver_shrink": (1.0, 1.08),  # fatty livers are often large
        "spleen_scale": (0.9, 1.05),
        "ascites_mm": (0.0, 0.0),
        "varix_count": (0, 0),
    },
    LiverStage.MODERATE: {
        "steatosis_hu": (0.0, 15.0),
        "texture_hu": (7.0, 12.0),
        "surface_amp": (0.012, 0.025),
        "caudate_scale": (1.0, 1.15),
        "right_lobe_scale": (0.95, 1.0),
        "liver_shrink": (0.95, 1.02),
        "spleen_scale": (1.0, 1.12),
        "ascites_mm": (0.0, 0.0),
        "varix_count": (0, 0),
    },
    LiverStage.SEVERE: {
        "steatosis_hu": (0.0, 8.0),
        "texture_hu": (10.0, 16.0),
        "surface_amp": (0.035, 0.06),
        "caudate_scale": (1.3, 1.6),
        "right_lobe_scale": (0.82, 0.92),
        "liver_shrink": (0.9, 0.98),
        "spleen_scale": (1.25, 1.45),
        "ascites_mm": (0.0, 0.0),
        "varix_count": (0, 0),
    },
    LiverStage.END_STAGE: {
        "steatosis_hu": (0.0, 5.0),
        "texture_hu": (12.0, 20.0),
        "surface_amp": (0.06, 0.09),
        "caudate_scale": (1.3, 1.7),
        "right_lobe_scale": (0.7, 0.82),
        "liver_shrink": (0.72, 0.84),
        "spleen_scale": (1.5, 1.8),
        "ascites_mm": (12.0, 35.0),
        "varix_count": (3, 8),
    },
}


def sample_disease(rng: np.random.Generator, forced: LiverStage | None) -> dict[str, Any]:
    """Draw the stage (unless ``forced``) and its features.

    The same number of draws is made whatever the stage, so a seed keeps its lesion and
    texture streams when only the stage is forced (a "seed family" across stages).
    """
    stages = list(LiverStage)
    drawn = stages[int(rng.integers(len(stages)))]
    stage = forced if forced is not None else drawn
    u = rng.random(len(STAGE_RANGES[stage]))
    features: dict[str, Any] = {"stage": stage.value}
    for x, (name, (lo, hi)) in zip(u, STAGE_RANGES[stage].items(), strict=True):
        value = lo + float(x) * (hi - lo)
        features[name] = int(round(value)) if name == "varix_count" else round(value, 4)
    features["surface_scale_mm"] = round(6.0 + 6.0 * float(rng.random()), 3)
    features["texture_scale_mm"] = round(5.0 + 7.0 * float(rng.random()), 3)
    features["varix_seed"] = int(rng.integers(2**31))
    return features


def stage_from_features(f: dict[str, Any]) -> LiverStage:
    """The documented rule: the most advanced stage whose defining features are all present.

    END_STAGE: ascites and a shrunken liver (shrink < 0.86) and spleen scale >= 1.45.
    SEVERE: surface amplitude >= 0.03, caudate scale >= 1.25, spleen scale >= 1.2.
    MODERATE: texture SD >= 6 HU and surface amplitude >= 0.01.
    MILD: otherwise (steatosis).
    """
    if f["ascites_mm"] > 0 and f["liver_shrink"] < 0.86 and f["spleen_scale"] >= 1.45:
        return LiverStage.END_STAGE
    if f["surface_amp"] >= 0.03 and f["caudate_scale"] >= 1.25 and f["spleen_scale"] >= 1.2:
        return LiverStage.SEVERE
    if f["texture_hu"] >= 6.0 and f["surface_amp"] >= 0.01:
        return LiverStage.MODERATE
    return LiverStage.MILD


# ---------------------------------------------------------------------- lesions
@dataclass(frozen=True)
class LesionTruth:
    """One rendered lesion: a rotated ellipsoid (``axes_mm`` = full axis lengths)."""

    id: int
    centre_lps_mm: tuple[float, float, float]
    axes_mm: tuple[float, float, float]
    rotation_deg: tuple[float, float, float]  # yaw, pitch, roll of the lesion's axes
    volume_ml: float
    kind: str  # LesionKind value
    rim: bool  # rim enhancement (arterial / portal venous)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


_MARGIN_MM = 2.0  # liver kept around every lesion and between lesions


def place_lesions(
    rng: np.random.Generator,
    grid: Grid,
    liver: np.ndarray,
    count_range: tuple[int, int],
    diameter_range: tuple[float, float],
) -> tuple[list[LesionTruth], list[tuple[tuple[slice, slice, slice], np.ndarray, np.ndarray]]]:
    """Place up to ``count`` lesions fully inside ``liver``.

    Returns the truth and, per lesion, ``(slices, mask, normalised radius squared)`` on its box.
    The centre is chosen where the liver's distance transform exceeds the lesion's largest
    semi-axis plus a margin, so the whole (arbitrarily rotated) ellipsoid is inside the liver.
    """
    wanted = int(rng.integers(count_range[0], count_range[1] + 1))
    draws = rng.random((wanted, 10))  # fixed consumption per lesion
    truths: list[LesionTruth] = []
    masks: list[tuple[tuple[slice, slice, slice], np.ndarray, np.ndarray]] = []
    if wanted == 0 or not liver.any():
        return truths, masks
    kk, jj, ii = np.nonzero(liver)
    sl = (
        slice(kk.min(), kk.max() + 1),
        slice(jj.min(), jj.max() + 1),
        slice(ii.min(), ii.max() + 1),
    )
    sub = np.pad(liver[sl], 1)  # the grid edge counts as outside the liver
    sx, sy, sz = grid.spacing
    dist = ndimage.distance_transform_edt(sub, sampling=(sz, sy, sx))[1:-1, 1:-1, 1:-1]
    # Voxel centres sample the continuous liver; keep half a voxel diagonal in reserve.
    dist = dist.astype(np.float32) - np.float32(0.5 * math.sqrt(sx * sx + sy * sy + sz * sz))
    lo_d, hi_d = diameter_range
    for n in range(wanted):
        u = draws[n]
        diameter = math.exp(math.log(lo_d) + u[0] * (math.log(hi_d) - math.log(lo_d)))
        free = float(dist.max()) - _MARGIN_MM
        diameter = min(diameter, 2.0 * free)
        if diameter < lo_d:
            break
        semi = np.array([1.0, 0.75 + 0.25 * u[1], 0.7 + 0.3 * u[2]]) * diameter / 2.0
        semi = np.round(semi, 2)
        candidates = np.flatnonzero(dist.ravel() >= semi.max() + _MARGIN_MM)
        if len(candidates) == 0:
            break
        flat = candidates[int(u[3] * len(candidates))]
        k, j, i = np.unravel_index(flat, dist.shape)
        centre = np.array([grid.xs[sl[2]][i], grid.ys[sl[1]][j], grid.zs[sl[0]][k]], dtype=float)
        angles = (round(360 * u[4], 1), round(60 * u[5] - 30, 1), round(60 * u[6] - 30, 1))
        rot = rotation(*angles)
        box = ellipsoid_box(grid, centre, semi, rot)
        assert box is not None
        r2 = ellipsoid_radius(grid, box, centre, semi, rot)
        mask = r2 <= 1.0
        kinds = list(LesionKind)
        kind = kinds[min(int(u[7] * len(kinds)), len(kinds) - 1)]
        rim = kind is not LesionKind.CYST and u[8] < 0.35 and diameter >= 12.0
        truths.append(
            LesionTruth(
                id=len(truths) + 1,
                centre_lps_mm=(float(centre[0]), float(centre[1]), float(centre[2])),
                axes_mm=(float(2 * semi[0]), float(2 * semi[1]), float(2 * semi[2])),
                rotation_deg=angles,
                volume_ml=round(4.0 / 3.0 * math.pi * float(np.prod(semi)) / 1000.0, 4),
                kind=kind.value,
                rim=bool(rim),
            )
        )
        masks.append((box, mask, r2))
        # Keep later lesions (and their margin) away from this one.
        reach = float(semi.max()) + _MARGIN_MM
        zz, yy, xx = (grid.zs[sl[0]], grid.ys[sl[1]], grid.xs[sl[2]])
        d2 = (
            (zz - centre[2])[:, None, None] ** 2
            + (yy - centre[1])[None, :, None] ** 2
            + (xx - centre[0])[None, None, :] ** 2
        )
        # Distance to this lesion's bounding sphere limits how big a neighbour may be.
        gap = np.sqrt(d2).astype(np.float32) - np.float32(reach)
        np.minimum(dist, gap, out=dist)
    return truths, masks
