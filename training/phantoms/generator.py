"""``generate_case``: a labelled synthetic abdominal CT, deterministic from its seed.

Pipeline: geometry (spacing, thickness, FOV) -> anatomy + disease features -> tissue map ->
lesions -> per-tissue HU drawn from the phase's ranges (SynthSeg-style) + textures -> partial
volume blur (in-plane kernel, through-plane slice profile) -> correlated noise -> int16.
Independent random streams (``SeedSequence.spawn``) feed each step, so forcing the phase or the
stage in :class:`PhantomConfig` leaves the rest of a seed's case unchanged.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from enum import Enum
from typing import Any

import numpy as np
from scipy import ndimage

from radview.core.volume import Rescale, Volume, VolumeSource
from training.phantoms.anatomy import (
    TISSUE_NAMES,
    Grid,
    Tissue,
    render_anatomy,
    sample_anatomy,
    smooth_field,
)
from training.phantoms.disease import (
    LesionKind,
    LesionTruth,
    LiverStage,
    place_lesions,
    sample_disease,
)

__all__ = [
    "ContrastPhase",
    "PhantomConfig",
    "PhantomCase",
    "TISSUE_HU",
    "LESION_CONTRAST_HU",
    "GENERATOR_VERSION",
    "generate_case",
]

#: Bump whenever the same seed and config would give different voxels.
GENERATOR_VERSION = 1


class ContrastPhase(Enum):
    NON_CONTRAST = "non_contrast"
    ARTERIAL = "arterial"  # late arterial, ~35 s
    PORTAL_VENOUS = "portal_venous"  # ~70 s


_NC, _AR, _PV = ContrastPhase.NON_CONTRAST, ContrastPhase.ARTERIAL, ContrastPhase.PORTAL_VENOUS

#: Mean HU range per tissue and phase; each case draws one mean per tissue uniformly within it.
#: The liver rows are for a normal liver: steatosis subtracts ``steatosis_hu`` (disease.py).
TISSUE_HU: dict[Tissue, dict[ContrastPhase, tuple[float, float]]] = {
    Tissue.OUTSIDE: {_NC: (-1010, -990), _AR: (-1010, -990), _PV: (-1010, -990)},
    Tissue.LIVER: {_NC: (50, 65), _AR: (65, 85), _PV: (100, 130)},
    Tissue.SKIN: {_NC: (20, 50), _AR: (30, 60), _PV: (40, 70)},
    Tissue.SUBCUTANEOUS_FAT: {_NC: (-120, -85), _AR: (-120, -85), _PV: (-115, -80)},
    Tissue.MUSCLE: {_NC: (40, 55), _AR: (45, 60), _PV: (50, 70)},
    Tissue.VISCERAL_FAT: {_NC: (-115, -80), _AR: (-110, -80), _PV: (-110, -75)},
    Tissue.CORTICAL_BONE: {_NC: (700, 1100), _AR: (700, 1100), _PV: (700, 1100)},
    Tissue.CANCELLOUS_BONE: {_NC: (150, 280), _AR: (160, 290), _PV: (170, 300)},
    Tissue.RIB: {_NC: (350, 650), _AR: (350, 650), _PV: (350, 650)},
    Tissue.DISC: {_NC: (70, 100), _AR: (70, 100), _PV: (75, 105)},
    Tissue.SPINAL_CANAL: {_NC: (5, 20), _AR: (5, 20), _PV: (5, 20)},
    Tissue.LUNG: {_NC: (-900, -820), _AR: (-890, -800), _PV: (-890, -800)},
    Tissue.HEART: {_NC: (35, 50), _AR: (250, 380), _PV: (130, 180)},
    Tissue.SPLEEN: {_NC: (40, 55), _AR: (90, 130), _PV: (105, 135)},
    Tissue.KIDNEY: {_NC: (25, 40), _AR: (150, 220), _PV: (150, 200)},
    Tissue.STOMACH_WALL: {_NC: (35, 50), _AR: (60, 100), _PV: (70, 110)},
    Tissue.STOMACH_CONTENT: {_NC: (0, 30), _AR: (0, 30), _PV: (0, 30)},
    Tissue.BOWEL_WALL: {_NC: (35, 50), _AR: (60, 100), _PV: (70, 110)},
    Tissue.BOWEL_CONTENT: {_NC: (5, 40), _AR: (5, 40), _PV: (5, 40)},
    Tissue.BOWEL_GAS: {_NC: (-1000, -900), _AR: (-1000, -900), _PV: (-1000, -900)},
    Tissue.AORTA: {_NC: (35, 50), _AR: (250, 400), _PV: (140, 190)},
    Tissue.IVC: {_NC: (35, 50), _AR: (60, 110), _PV: (120, 160)},
    Tissue.PORTAL_VEIN: {_NC: (35, 50), _AR: (90, 140), _PV: (150, 200)},
    Tissue.HEPATIC_VEIN: {_NC: (35, 50), _AR: (45, 75), _PV: (130, 180)},
    Tissue.GALLBLADDER: {_NC: (0, 20), _AR: (0, 20), _PV: (0, 20)},
    Tissue.ASCITES: {_NC: (0, 15), _AR: (0, 15), _PV: (0, 20)},
    Tissue.VARICES: {_NC: (35, 50), _AR: (80, 130), _PV: (140, 190)},
    Tissue.TABLE: {_NC: (-300, 0), _AR: (-300, 0), _PV: (-300, 0)},
}

#: Lesion mean HU relative to the (steatosis-corrected) liver, per kind and phase.
#: Cysts are absolute water density instead (see ``CYST_HU``).
LESION_CONTRAST_HU: dict[LesionKind, dict[ContrastPhase, tuple[float, float]]] = {
    LesionKind.HYPOVASCULAR: {_NC: (-25, -10), _AR: (-40, -15), _PV: (-70, -30)},
    LesionKind.HYPERVASCULAR: {_NC: (-15, -3), _AR: (25, 70), _PV: (-35, -10)},
}
CYST_HU = (0.0, 20.0)
RIM_HU = {_NC: (0.0, 0.0), _AR: (20.0, 60.0), _PV: (15.0, 40.0)}


@dataclass(frozen=True)
class PhantomConfig:
    """What a case may vary over (ranges are sampled uniformly unless noted)."""

    matrix: int = 256  # rows = columns
    slices: int = 64
    pixel_spacing_mm: tuple[float, float] = (0.6, 1.0)
    slice_thickness_mm: tuple[float, float] = (1.0, 5.0)  # = slice spacing (contiguous)
    phase: ContrastPhase | None = None  # None: random
    stage: LiverStage | None = None  # None: random
    lesion_count: tuple[int, int] = (0, 8)  # inclusive
    lesion_diameter_mm: tuple[float, float] = (5.0, 100.0)  # log-uniform
    noise_sd_hu: tuple[float, float] = (6.0, 25.0)
    fov_shift_mm: float = 20.0  # random shift of the FOV centre


@dataclass(frozen=True, eq=False)
class PhantomCase:
    """One labelled synthetic CT."""

    ct: Volume  # int16 HU
    labels: Volume  # uint8: 0 background, 1 liver, 2 tumour (radview LiverLabel)
    organs: Volume  # uint8 Tissue values (names in ``organ_names``)
    organ_names: dict[int, str]
    lesions: tuple[LesionTruth, ...]
    stage: LiverStage
    phase: ContrastPhase
    params: dict[str, Any]  # everything drawn, JSON-serialisable
    seed: int


def _geometry(
    rng: np.random.Generator, cfg: PhantomConfig, anatomy: dict[str, Any]
) -> dict[str, Any]:
    u = rng.random(6)
    ps = cfg.pixel_spacing_mm[0] + u[0] * (cfg.pixel_spacing_mm[1] - cfg.pixel_spacing_mm[0])
    th = cfg.slice_thickness_mm[0] + u[1] * (cfg.slice_thickness_mm[1] - cfg.slice_thickness_mm[0])
    ps, th = round(float(ps), 4), round(float(th), 4)
    half_fov = cfg.matrix * ps / 2.0
    # Centre on the body, shifted; if the FOV cannot hold the body, keep the liver (patient's
    # right upper abdomen) in view and let the patient's left/anterior side be truncated.
    cx = (2 * u[2] - 1) * cfg.fov_shift_mm
    cy = (2 * u[3] - 1) * cfg.fov_shift_mm
    if half_fov < anatomy["body_half_width"]:
        cx = min(cx, -anatomy["body_half_width"] + half_fov - 5.0)
        cx = max(cx, -0.35 * anatomy["body_half_width"])
    coverage = cfg.slices * th
    # Scan centre relative to the liver: the liver centre always within the covered range.
    cz = anatomy["dome_right_z"] - 70.0 + (2 * u[4] - 1) * min(0.3 * coverage, 60.0)
    return {
        "pixel_spacing_mm": ps,
        "slice_thickness_mm": th,
        "fov_centre_mm": [round(float(cx), 3), round(float(cy), 3), round(float(cz), 3)],
        "fov_mm": round(cfg.matrix * ps, 3),
    }


def _grid(cfg: PhantomConfig, geo: dict[str, Any]) -> Grid:
    ps, th = geo["pixel_spacing_mm"], geo["slice_thickness_mm"]
    cx, cy, cz = geo["fov_centre_mm"]
    n = cfg.matrix
    xs = cx + (np.arange(n) - (n - 1) / 2.0) * ps
    ys = cy + (np.arange(n) - (n - 1) / 2.0) * ps
    zs = cz + (np.arange(cfg.slices) - (cfg.slices - 1) / 2.0) * th
    return Grid(xs, ys, zs)


def _draw_intensities(rng: np.random.Generator, phase: ContrastPhase) -> dict[str, float]:
    """One mean HU per tissue (fixed draw count: every tissue, every phase)."""
    out = {}
    for tissue, ranges in TISSUE_HU.items():
        u = rng.random(len(ranges))
        lo, hi = ranges[phase]
        out[tissue.name] = round(lo + float(u[list(ranges).index(phase)]) * (hi - lo), 2)
    return out


def generate_case(seed: int, *, config: PhantomConfig | None = None) -> PhantomCase:
    """Render one labelled synthetic abdominal CT.

    Parameters
    ----------
    seed
        Everything random comes from ``np.random.SeedSequence(seed)``: the same seed and config
        give byte-identical volumes.
    config
        Ranges and forced choices (phase, stage); defaults to :class:`PhantomConfig()`.

    Returns
    -------
    PhantomCase
        ``ct`` int16 HU, ``labels`` uint8 (0/1 liver/2 tumour), ``organs`` uint8 tissue map, the
        lesion truth, the stage, the phase and the JSON-serialisable parameters.
    """
    cfg = config or PhantomConfig()
    if cfg.matrix < 8 or cfg.slices < 1:
        raise ValueError(f"need matrix >= 8 and slices >= 1, got {cfg.matrix}, {cfg.slices}")
    streams = [np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(7)]
    r_anat, r_geo, r_stage, r_lesion, r_hu, r_tex, r_noise = streams

    anatomy = sample_anatomy(r_anat)
    geometry = _geometry(r_geo, cfg, anatomy)
    disease = sample_disease(r_stage, cfg.stage)
    phases = list(ContrastPhase)
    drawn_phase = phases[int(r_hu.integers(len(phases)))]
    phase = cfg.phase if cfg.phase is not None else drawn_phase
    hu = _draw_intensities(r_hu, phase)
    grid = _grid(cfg, geometry)

    scene = render_anatomy(grid, anatomy, disease)
    disease.pop("_liver_field", None)
    tissue = scene.tissue
    liver_parenchyma = scene.liver_hull & (tissue == Tissue.LIVER)
    lesions, lesion_masks = place_lesions(
        r_lesion, grid, scene.liver_hull, cfg.lesion_count, cfg.lesion_diameter_mm
    )
    lesion_draws = r_lesion.random((len(lesions), 4))

    # ---- intensities
    lut = np.array([hu.get(t.name, 0.0) for t in Tissue], np.float32)
    liver_hu = hu["LIVER"] - disease["steatosis_hu"]
    lut[Tissue.LIVER] = liver_hu
    ct = lut[tissue]
    # Mild smooth inhomogeneity everywhere inside the body, plus the disease texture in the liver.
    body = tissue != Tissue.OUTSIDE
    tex_amp = float(r_tex.uniform(2.0, 5.0))
    ct += np.float32(tex_amp) * smooth_field(r_tex, grid, 20.0) * body
    if liver_parenchyma.any():
        kk, jj, ii = np.nonzero(scene.liver_hull)
        sl = (
            slice(kk.min(), kk.max() + 1),
            slice(jj.min(), jj.max() + 1),
            slice(ii.min(), ii.max() + 1),
        )
        field = smooth_field(r_tex, grid, disease["texture_scale_mm"], sl)
        sub = ct[sl]
        m = liver_parenchyma[sl]
        sub[m] += np.float32(disease["texture_hu"]) * field[m]
    lesion_params = []
    for lesion, (box, mask, r2), u in zip(lesions, lesion_masks, lesion_draws, strict=True):
        kind = LesionKind(lesion.kind)
        if kind is LesionKind.CYST:
            mean = CYST_HU[0] + u[0] * (CYST_HU[1] - CYST_HU[0])
        else:
            lo, hi = LESION_CONTRAST_HU[kind][phase]
            mean = liver_hu + lo + u[0] * (hi - lo)
        hetero = 0.0 if kind is LesionKind.CYST else 4.0 + 14.0 * u[1]
        rim_lo, rim_hi = RIM_HU[phase]
        rim = (rim_lo + u[2] * (rim_hi - rim_lo)) if lesion.rim else 0.0
        values = np.full(r2.shape, np.float32(mean))
        if hetero:
            values += np.float32(hetero) * smooth_field(r_tex, grid, 3.0 + 4.0 * u[3], box)
        if rim:
            # Enhancing outer ring: the outer ~20 % of the radius, centre relatively hypo.
            values += np.float32(rim) * (r2 > 0.65).astype(np.float32)
        ct[box][mask] = values[mask]
        tissue[box][mask] = Tissue.TUMOUR
        lesion_params.append(
            {
                "id": lesion.id,
                "mean_hu": round(float(mean), 2),
                "heterogeneity_hu": round(hetero, 2),
                "rim_hu": round(float(rim), 2),
            }
        )

    # ---- partial volume: in-plane reconstruction kernel + through-plane slice profile
    ps, th = geometry["pixel_spacing_mm"], geometry["slice_thickness_mm"]
    u = r_noise.random(4)
    kernel_mm = 0.5 + 0.5 * u[0]  # SD of the in-plane point spread, mm
    # Slice sensitivity profile FWHM ~ thickness; the grid already samples every thickness.
    sigma = (0.45, kernel_mm / ps, kernel_mm / ps)
    ct = ndimage.gaussian_filter(ct, sigma=sigma, mode="nearest", truncate=3.0)
    # ---- noise: white noise shaped by the kernel (correlated in-plane), random level
    noise_sd = cfg.noise_sd_hu[0] + u[1] * (cfg.noise_sd_hu[1] - cfg.noise_sd_hu[0])
    corr_px = (0.4 + 0.6 * u[2]) / ps * 1.0
    noise = r_noise.standard_normal(ct.shape, dtype=np.float32)
    noise = ndimage.gaussian_filter(noise, sigma=(0, corr_px, corr_px), truncate=2.5)
    noise *= np.float32(noise_sd / max(float(noise[0].std()), 1e-6))
    # Thin slices are noisier (noise ~ 1/sqrt(thickness)), relative to 3 mm.
    ct += noise * np.float32(math.sqrt(3.0 / th) ** 0.5)
    np.clip(ct, -1024, 3071, out=ct)
    ct_i16 = np.rint(ct).astype(np.int16)
    del ct, noise

    labels = np.zeros(tissue.shape, np.uint8)
    labels[scene.liver_hull] = 1
    labels[tissue == Tissue.TUMOUR] = 2

    stage = LiverStage(disease["stage"])
    params = {
        "generator_version": GENERATOR_VERSION,
        "seed": seed,
        "config": _config_json(cfg),
        "phase": phase.value,
        "geometry": geometry,
        "anatomy": anatomy,
        "disease": disease,
        "tissue_hu": hu,
        "liver_hu": round(liver_hu, 2),
        "blur_kernel_mm": round(kernel_mm, 3),
        "noise_sd_hu": round(noise_sd, 3),
        "lesions": [le.to_json() | lp for le, lp in zip(lesions, lesion_params, strict=True)],
        "liver_volume_ml": round(
            float(labels.astype(bool).sum()) * float(np.prod(grid.spacing)) / 1000, 3
        ),
        "spleen_volume_ml": round(scene.spleen_volume_ml, 3),
    }
    json.dumps(params)  # fail here, not in a training job, if something is not serialisable
    origin = (float(grid.xs[0]), float(grid.ys[0]), float(grid.zs[0]))
    spacing = (ps, ps, th)
    desc = f"radview training phantom v{GENERATOR_VERSION} seed {seed}"

    def volume(arr: np.ndarray, what: str, **kw: Any) -> Volume:
        return Volume(
            arr,
            spacing=spacing,
            origin=origin,
            source=VolumeSource("synthetic", description=f"{desc} {what}".strip()),
            **kw,
        )

    return PhantomCase(
        ct=volume(ct_i16, "", modality="CT", rescale=Rescale(1.0, 0.0, "HU", True)),
        labels=volume(labels, "labels"),
        organs=volume(tissue, "organs"),
        organ_names=dict(TISSUE_NAMES),
        lesions=tuple(lesions),
        stage=stage,
        phase=phase,
        params=params,
        seed=seed,
    )


def _config_json(cfg: PhantomConfig) -> dict[str, Any]:
    out = {}
    for name in cfg.__dataclass_fields__:
        v = getattr(cfg, name)
        out[name] = v.value if isinstance(v, Enum) else (list(v) if isinstance(v, tuple) else v)
    return out
