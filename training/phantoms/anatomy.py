"""Abdominal anatomy of the phantom: parameters drawn from an rng, then painted as a tissue map.

Everything is in LPS millimetres (+x patient left, +y posterior, +z superior) on an axis-aligned
grid (identity direction). The in-plane body centre is the LPS origin; ``z = 0`` is roughly the
level of the liver's centre (about T12/L1). Organs are implicit shapes (rotated ellipsoids,
smooth unions of them, capsule chains for tubes) evaluated only inside their bounding boxes, and
painted into a ``uint8`` tissue map in anatomical order (later organs cover earlier ones). The
tissue map *is* the truth: labels are read back from it, so labels always match the painting.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

import numpy as np
from scipy import ndimage

__all__ = ["Tissue", "TISSUE_NAMES", "Grid", "sample_anatomy", "render_anatomy", "smooth_field"]


class Tissue(IntEnum):
    """Values of the ``organs`` volume (one tissue class per voxel)."""

    OUTSIDE = 0
    LIVER = 1
    TUMOUR = 2
    SKIN = 3
    SUBCUTANEOUS_FAT = 4
    MUSCLE = 5
    VISCERAL_FAT = 6
    CORTICAL_BONE = 7
    CANCELLOUS_BONE = 8
    RIB = 9
    DISC = 10
    SPINAL_CANAL = 11
    LUNG = 12
    HEART = 13
    SPLEEN = 14
    KIDNEY = 15
    STOMACH_WALL = 16
    STOMACH_CONTENT = 17
    BOWEL_WALL = 18
    BOWEL_CONTENT = 19
    BOWEL_GAS = 20
    AORTA = 21
    IVC = 22
    PORTAL_VEIN = 23
    HEPATIC_VEIN = 24
    GALLBLADDER = 25
    ASCITES = 26
    VARICES = 27
    TABLE = 28


TISSUE_NAMES: dict[int, str] = {int(t): t.name.replace("_", " ").capitalize() for t in Tissue}


@dataclass(frozen=True)
class Grid:
    """Voxel-centre coordinates (LPS mm) of an axis-aligned grid: ``xs`` columns, ``ys`` rows."""

    xs: np.ndarray
    ys: np.ndarray
    zs: np.ndarray

    @property
    def shape(self) -> tuple[int, int, int]:
        return (len(self.zs), len(self.ys), len(self.xs))

    @property
    def spacing(self) -> tuple[float, float, float]:
        def step(a: np.ndarray) -> float:
            return float(a[1] - a[0]) if len(a) > 1 else 1.0

        return (step(self.xs), step(self.ys), step(self.zs))

    def box(self, lo: np.ndarray, hi: np.ndarray) -> tuple[tuple[slice, slice, slice], ...] | None:
        """Array slices (k, j, i) of the voxels within the LPS box ``lo..hi`` (None: empty)."""
        out = []
        for coords, a, b in (
            (self.zs, lo[2], hi[2]),
            (self.ys, lo[1], hi[1]),
            (self.xs, lo[0], hi[0]),
        ):
            start = int(np.searchsorted(coords, a, side="left"))
            stop = int(np.searchsorted(coords, b, side="right"))
            if start >= stop:
                return None
            out.append(slice(start, stop))
        return (tuple(out),)

    def coords(self, sl: tuple[slice, slice, slice]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Broadcastable ``(x, y, z)`` coordinate arrays of the sub-grid ``sl`` (float32)."""
        kz, jy, ix = sl
        return (
            self.xs[ix].astype(np.float32)[None, None, :],
            self.ys[jy].astype(np.float32)[None, :, None],
            self.zs[kz].astype(np.float32)[:, None, None],
        )


# ---------------------------------------------------------------------- helpers
def rotation(yaw_deg: float, pitch_deg: float = 0.0, roll_deg: float = 0.0) -> np.ndarray:
    """Columns = the shape's local axes in LPS (yaw about z, then pitch about y, roll about x)."""
    a, b, c = (math.radians(v) for v in (yaw_deg, pitch_deg, roll_deg))
    rz = np.array([[math.cos(a), -math.sin(a), 0], [math.sin(a), math.cos(a), 0], [0, 0, 1]])
    ry = np.array([[math.cos(b), 0, math.sin(b)], [0, 1, 0], [-math.sin(b), 0, math.cos(b)]])
    rx = np.array([[1, 0, 0], [0, math.cos(c), -math.sin(c)], [0, math.sin(c), math.cos(c)]])
    return rz @ ry @ rx


def ellipsoid_extent(semi: np.ndarray, rot: np.ndarray) -> np.ndarray:
    """Half extent along x, y, z of a rotated ellipsoid."""
    return np.sqrt(((rot * np.asarray(semi)[None, :]) ** 2).sum(axis=1))


def ellipsoid_radius(
    grid: Grid, sl: tuple[slice, slice, slice], centre: Any, semi: Any, rot: np.ndarray
) -> np.ndarray:
    """Normalised radius squared (<= 1 inside) of an ellipsoid on the sub-grid ``sl``."""
    x, y, z = grid.coords(sl)
    dx, dy, dz = x - np.float32(centre[0]), y - np.float32(centre[1]), z - np.float32(centre[2])
    r2 = None
    for axis in range(3):
        u = (
            np.float32(rot[0, axis]) * dx
            + np.float32(rot[1, axis]) * dy
            + np.float32(rot[2, axis]) * dz
        ) / np.float32(semi[axis])
        r2 = u * u if r2 is None else r2 + u * u
    assert r2 is not None
    return r2


def ellipsoid_box(
    grid: Grid, centre: Any, semi: Any, rot: np.ndarray, pad: float = 0.0
) -> tuple[slice, slice, slice] | None:
    ext = ellipsoid_extent(np.asarray(semi, float), rot) + pad
    found = grid.box(np.asarray(centre) - ext, np.asarray(centre) + ext)
    return None if found is None else found[0]


def smooth_field(
    rng: np.random.Generator,
    grid: Grid,
    scale_mm: float,
    sl: tuple[slice, slice, slice] | None = None,
) -> np.ndarray:
    """A smooth random field (about unit SD) with features of ``scale_mm``, on ``grid[sl]``.

    Unit normal values on a lattice of pitch ``scale_mm`` covering the grid, interpolated with
    separable Gaussian weights (three small matrix products: fast, no full-volume filter).
    """
    full = (slice(None), slice(None), slice(None))
    kz, jy, ix = sl if sl is not None else full
    axes = (grid.xs, grid.ys, grid.zs)
    lattices = [np.arange(a[0] - 2 * scale_mm, a[-1] + 2.01 * scale_mm, scale_mm) for a in axes]
    values = rng.standard_normal(tuple(len(lat) for lat in reversed(lattices))).astype(np.float32)
    sigma = 0.7 * scale_mm

    def weights(points: np.ndarray, lattice: np.ndarray) -> np.ndarray:
        w = np.exp(-0.5 * ((points[:, None] - lattice[None, :]) / sigma) ** 2)
        return (w / np.sqrt((w**2).sum(axis=1, keepdims=True))).astype(np.float32)

    wx = weights(grid.xs[ix], lattices[0])
    wy = weights(grid.ys[jy], lattices[1])
    wz = weights(grid.zs[kz], lattices[2])
    t = values @ wx.T  # (cz, cy, nx)
    t = np.matmul(wy[None], t)  # (cz, ny, nx)
    return np.tensordot(wz, t, axes=(1, 0)).astype(np.float32)  # (nz, ny, nx)


def _capsule_chain(
    tissue: np.ndarray,
    grid: Grid,
    points: np.ndarray,
    radii: np.ndarray,
    value: int,
    where: np.ndarray | None = None,
    out_mask: np.ndarray | None = None,
) -> None:
    """Paint tubes along a polyline (radius interpolated along each segment)."""
    for p0, p1, r0, r1 in zip(points[:-1], points[1:], radii[:-1], radii[1:], strict=True):
        r = max(r0, r1)
        lo, hi = np.minimum(p0, p1) - r, np.maximum(p0, p1) + r
        found = grid.box(lo, hi)
        if found is None:
            continue
        sl = found[0]
        x, y, z = grid.coords(sl)
        d = (p1 - p0).astype(np.float32)
        length2 = float(d @ d) or 1.0
        px, py, pz = x - np.float32(p0[0]), y - np.float32(p0[1]), z - np.float32(p0[2])
        t = np.clip((px * d[0] + py * d[1] + pz * d[2]) / np.float32(length2), 0.0, 1.0)
        qx, qy, qz = px - t * d[0], py - t * d[1], pz - t * d[2]
        rad = np.float32(r0) + t * np.float32(r1 - r0)
        mask = qx * qx + qy * qy + qz * qz <= rad * rad
        if where is not None:
            mask &= where[sl]
        tissue[sl][mask] = value
        if out_mask is not None:
            out_mask[sl] |= mask


# ---------------------------------------------------------------------- sampling
def _u(rng: np.random.Generator, lo: float, hi: float) -> float:
    return round(float(rng.uniform(lo, hi)), 3)


def sample_anatomy(rng: np.random.Generator) -> dict[str, Any]:
    """Draw every anatomical parameter (JSON-serialisable floats/lists)."""
    habitus = _u(rng, 0.0, 1.0)  # 0 slim .. 1 large
    half_width = 135.0 + 60.0 * habitus + _u(rng, -10, 10)
    p: dict[str, Any] = {
        "habitus": habitus,
        "body_half_width": round(half_width, 2),
        "body_half_depth_anterior": round(half_width * _u(rng, 0.6, 0.78), 2),
        "body_half_depth_posterior": round(half_width * _u(rng, 0.55, 0.68), 2),
        "body_taper_per_m": _u(rng, -0.05, 0.15),
        "skin_mm": _u(rng, 1.5, 3.0),
        "subcutaneous_fat_mm": round(6.0 + 40.0 * habitus * _u(rng, 0.6, 1.2), 2),
        "muscle_wall_mm": _u(rng, 7.0, 14.0),
        "table_gap_mm": _u(rng, 0.0, 15.0),
        "table_present": bool(rng.random() < 0.7),
        "dome_right_z": _u(rng, 55.0, 80.0),
        "dome_left_drop": _u(rng, 5.0, 20.0),
        "dome_curvature": _u(rng, 0.006, 0.010),
        "heart_semi": [_u(rng, 45, 60), _u(rng, 40, 50), _u(rng, 40, 55)],
        "heart_yaw": _u(rng, 20, 45),
        "liver_scale": _u(rng, 0.88, 1.12),
        "liver_shift": [_u(rng, -10, 10), _u(rng, -10, 10), _u(rng, -8, 8)],
        "left_lobe_size": _u(rng, 0.6, 1.3),
        "liver_deform_amp": _u(rng, 0.05, 0.12),
        "liver_deform_scale_mm": _u(rng, 35, 60),
        "spleen_semi": [_u(rng, 20, 28), _u(rng, 40, 55), _u(rng, 40, 55)],
        "spleen_yaw": _u(rng, -45, -25),
        "stomach_semi": [_u(rng, 30, 50), _u(rng, 25, 40), _u(rng, 35, 55)],
        "stomach_gas_fraction": _u(rng, 0.0, 0.5),
        "kidney_z": [_u(rng, -75, -50), _u(rng, -60, -35)],
        "kidney_semi": [_u(rng, 25, 32), _u(rng, 18, 24), _u(rng, 48, 60)],
        "aorta_radius": _u(rng, 9, 14),
        "ivc_semi": [_u(rng, 11, 16), _u(rng, 7, 12)],
        "vertebra_level_mm": _u(rng, 30, 36),
        "vertebra_phase_mm": _u(rng, 0, 36),
        "rib_spacing_mm": _u(rng, 22, 30),
        "rib_bottom_z": _u(rng, -45, -20),
        "rib_drop_mm": _u(rng, 35, 65),
        "gallbladder": bool(rng.random() < 0.7),
        "gallbladder_semi": [_u(rng, 12, 20), _u(rng, 12, 20), _u(rng, 25, 45)],
        "bowel_loops": [],
        "portal_tree_seed": int(rng.integers(2**31)),
        "hepatic_vein_angles": [_u(rng, -20, 10), _u(rng, 30, 60), _u(rng, 80, 120)],
        "bowel_seed": int(rng.integers(2**31)),
        "texture_seed": int(rng.integers(2**31)),
    }
    return p


# ---------------------------------------------------------------------- rendering
@dataclass
class AnatomyRender:
    """The painted tissue map plus masks the later steps need."""

    tissue: np.ndarray  # uint8 Tissue values
    liver_hull: np.ndarray  # bool: the liver envelope (parenchyma + intrahepatic vessels)
    abdomen: np.ndarray  # bool: abdominal cavity below the diaphragm
    liver_volume_ml: float
    spleen_volume_ml: float


def _body_q(grid: Grid, a: float, b_ant: float, b_post: float, inset: float) -> np.ndarray:
    """2D normalised radius squared of the body outline shrunk by ``inset`` mm."""
    x = grid.xs.astype(np.float32)[None, :]
    y = grid.ys.astype(np.float32)[:, None]
    b = np.where(y > 0, np.float32(b_post - inset), np.float32(b_ant - inset))
    return (x / np.float32(a - inset)) ** 2 + (y / b) ** 2


def render_anatomy(grid: Grid, p: dict[str, Any], disease: dict[str, Any]) -> AnatomyRender:
    """Paint the anatomy ``p`` (with the chronic liver disease features ``disease``)."""
    shape = grid.shape
    tissue = np.zeros(shape, np.uint8)
    zs = grid.zs.astype(np.float32)
    voxel_ml = float(np.prod(grid.spacing)) / 1000.0
    a, b_ant, b_post = (
        p["body_half_width"],
        p["body_half_depth_anterior"],
        p["body_half_depth_posterior"],
    )
    # Taper: the section grows towards the chest; applied as a per-slice threshold on q.
    taper = (1.0 + p["body_taper_per_m"] * zs / 1000.0) ** 2
    taper3 = taper[:, None, None]
    skin, fat, wall = p["skin_mm"], p["subcutaneous_fat_mm"], p["muscle_wall_mm"]
    fat = min(fat, 0.45 * b_post)
    layers = [
        (0.0, Tissue.SKIN),
        (skin, Tissue.SUBCUTANEOUS_FAT),
        (skin + fat, Tissue.MUSCLE),
        (skin + fat + wall, Tissue.VISCERAL_FAT),
    ]
    for inset, value in layers:
        q = _body_q(grid, a, b_ant, b_post, inset)
        tissue[q[None] <= taper3] = value
    q_cavity = _body_q(grid, a, b_ant, b_post, skin + fat + wall)
    cavity = q_cavity[None] <= taper3
    cav_a, cav_b_post = a - skin - fat - wall, b_post - skin - fat - wall

    # CT table under the patient (posterior): a shallow curved slab.
    if p["table_present"]:
        x = grid.xs.astype(np.float32)[None, :]
        y = grid.ys.astype(np.float32)[:, None]
        top = b_post + p["table_gap_mm"] + 0.0008 * x**2
        slab = (y >= top) & (y <= top + 6) & (np.abs(x) < 230)
        slab |= (y >= top + 40) & (y <= top + 44) & (np.abs(x) < 220)
        tissue[:, slab] = Tissue.TABLE

    # Diaphragm domes: lung above, abdomen below. Lower laterally and posteriorly (recesses).
    x2 = grid.xs.astype(np.float32)[None, :]
    y2 = grid.ys.astype(np.float32)[:, None]
    c = p["dome_curvature"]
    # Steeper posteriorly (deep posterior costophrenic recesses), flatter anteriorly.
    yy = np.where(y2 > -10, 0.8 * (y2 + 10) ** 2, 0.25 * (y2 + 10) ** 2)
    right = p["dome_right_z"] - c * ((x2 + 0.45 * cav_a) ** 2 + yy)
    left = p["dome_right_z"] - p["dome_left_drop"] - c * ((x2 - 0.45 * cav_a) ** 2 + yy)
    dome = np.maximum(np.maximum(right, left), p["dome_right_z"] - 55.0)
    dome = dome - 45.0 * np.clip(y2 / max(cav_b_post, 1.0), 0, 1) ** 2
    thorax = cavity & (zs[:, None, None] > dome[None])
    diaphragm = cavity & ~thorax & (zs[:, None, None] > dome[None] - 6.0)
    abdomen = cavity & ~thorax & ~diaphragm
    tissue[thorax] = Tissue.LUNG
    tissue[diaphragm] = Tissue.MUSCLE

    # Spine geometry (needed for the retroperitoneum).
    spine_y = b_post - skin - fat - 78.0 + 0.15 * fat
    # Heart on the central diaphragm, anterior and left; mediastinal fat behind it.
    heart_c = (
        18.0,
        -0.15 * b_ant,
        p["dome_right_z"] - p["dome_left_drop"] + 0.6 * p["heart_semi"][2],
    )
    rot = rotation(p["heart_yaw"], 0, 15)
    sl = ellipsoid_box(grid, heart_c, p["heart_semi"], rot)
    if sl is not None:
        m = ellipsoid_radius(grid, sl, heart_c, p["heart_semi"], rot) <= 1
        m &= thorax[sl]
        tissue[sl][m] = Tissue.HEART
    med = (np.abs(x2 - 5) < 22) & (y2 > -0.2 * b_ant) & (y2 < spine_y)
    tissue[thorax & med[None] & (tissue != Tissue.HEART)] = Tissue.VISCERAL_FAT

    brng = np.random.default_rng(p["bowel_seed"])
    _paint_bowel(tissue, grid, brng, abdomen, cav_a, b_ant, spine_y)
    _paint_stomach(tissue, grid, p, abdomen, cav_a)

    # Spleen (left, posterior), enlarged by disease: grows anteriorly and inferiorly.
    ss = disease["spleen_scale"]
    semi = np.asarray(p["spleen_semi"]) * np.asarray([ss**0.6, ss, ss])
    spleen_c = (
        cav_a - semi[0] - 8.0,
        spine_y - 20.0 - 0.5 * (semi[1] - p["spleen_semi"][1]),
        p["dome_right_z"] - p["dome_left_drop"] - semi[2] - 5.0,
    )
    rot = rotation(p["spleen_yaw"])
    sl = ellipsoid_box(grid, spleen_c, semi, rot)
    spleen_ml = 4.0 / 3.0 * math.pi * float(np.prod(semi)) / 1000.0
    if sl is not None:
        m = (ellipsoid_radius(grid, sl, spleen_c, semi, rot) <= 1) & abdomen[sl]
        tissue[sl][m] = Tissue.SPLEEN

    # Kidneys (right one lower), rotated so the hilum faces anteromedially.
    for side, z in ((-1, p["kidney_z"][0]), (1, p["kidney_z"][1])):
        kc = (side * 68.0, spine_y + 5.0, z)
        rot = rotation(-side * 35.0, side * 10.0)
        sl = ellipsoid_box(grid, kc, p["kidney_semi"], rot)
        if sl is not None:
            m = (ellipsoid_radius(grid, sl, kc, p["kidney_semi"], rot) <= 1) & abdomen[sl]
            tissue[sl][m] = Tissue.KIDNEY

    liver_hull, liver_ml = _paint_liver(tissue, grid, p, disease, abdomen, cav_a, spine_y)

    # Great vessels (constant sections along z) and the spine.
    ivc_c = (-22.0, spine_y - 32.0)
    ao_c = (14.0, spine_y - 28.0)
    ivc = ((x2 - ivc_c[0]) / p["ivc_semi"][0]) ** 2 + ((y2 - ivc_c[1]) / p["ivc_semi"][1]) ** 2 <= 1
    ao = (x2 - ao_c[0]) ** 2 + (y2 - ao_c[1]) ** 2 <= p["aorta_radius"] ** 2
    below_heart = zs[:, None, None] < heart_c[2]
    tissue[cavity & ivc[None] & below_heart] = Tissue.IVC
    tissue[cavity & ao[None]] = Tissue.AORTA
    liver_hull &= tissue == Tissue.LIVER
    _paint_hepatic_vessels(tissue, grid, p, liver_hull, ivc_c)
    _paint_spine(tissue, grid, p, x2, y2, spine_y)
    _paint_ribs(tissue, grid, p, x2, y2, a, b_ant, b_post, skin + fat, wall, taper)

    # Gallbladder: in the gallbladder fossa, on the liver's inferior surface.
    if p["gallbladder"]:
        gsemi = p["gallbladder_semi"]
        gc = (-35.0 + p["liver_shift"][0], -0.45 * b_ant, -40.0 + p["liver_shift"][2])
        rot = rotation(30, 25)
        sl = ellipsoid_box(grid, gc, gsemi, rot)
        if sl is not None:
            m = (ellipsoid_radius(grid, sl, gc, gsemi, rot) <= 1) & abdomen[sl]
            tissue[sl][m] = Tissue.GALLBLADDER

    _paint_disease_extras(tissue, grid, disease, abdomen, cav_a, b_ant, spleen_c)
    liver_hull = (
        np.isin(tissue, (Tissue.LIVER, Tissue.PORTAL_VEIN, Tissue.HEPATIC_VEIN)) & liver_hull
    )
    del liver_ml
    # Organs painted over the liver can cut off slivers: they become fat; the liver is one piece.
    parts, count = ndimage.label(liver_hull)
    if count > 1:
        sizes = np.bincount(parts.ravel())
        sizes[0] = 0
        sliver = (parts > 0) & (parts != int(np.argmax(sizes)))
        tissue[sliver] = Tissue.VISCERAL_FAT
        liver_hull &= ~sliver
    return AnatomyRender(
        tissue=tissue,
        liver_hull=liver_hull,
        abdomen=abdomen,
        liver_volume_ml=float(liver_hull.sum()) * voxel_ml,
        spleen_volume_ml=spleen_ml,
    )


def _paint_bowel(
    tissue: np.ndarray,
    grid: Grid,
    rng: np.random.Generator,
    abdomen: np.ndarray,
    cav_a: float,
    b_ant: float,
    spine_y: float,
) -> None:
    """Small-bowel loops (curved tubes) and the colon frame, with air-fluid levels."""
    loops = []
    for _ in range(int(rng.integers(8, 15))):
        start = np.array(
            [
                rng.uniform(-0.6, 0.7) * cav_a,
                rng.uniform(-0.8 * b_ant, spine_y - 50),
                rng.uniform(-160, -10),
            ]
        )
        direction = rng.standard_normal(3)
        pts = [start]
        for _ in range(5):
            direction = direction + 0.8 * rng.standard_normal(3)
            direction /= np.linalg.norm(direction)
            pts.append(pts[-1] + direction * rng.uniform(15, 30))
        radius = rng.uniform(8, 15)
        loops.append((np.array(pts), radius, rng.uniform(0.0, 0.6)))
    # Colon: ascending (right), transverse (anterior, high), descending (left).
    cz = rng.uniform(-30, -5)
    frame = np.array(
        [
            [-0.7 * cav_a, spine_y - 40, -160],
            [-0.72 * cav_a, spine_y - 50, cz - 20],
            [-0.45 * cav_a, -0.55 * b_ant, cz],
            [0.0, -0.7 * b_ant, cz - 15],
            [0.5 * cav_a, -0.5 * b_ant, cz + 10],
            [0.75 * cav_a, spine_y - 45, cz - 10],
            [0.72 * cav_a, spine_y - 40, -160],
        ]
    )
    frame += rng.uniform(-8, 8, size=frame.shape)
    loops.append((frame, rng.uniform(18, 26), rng.uniform(0.3, 0.9)))
    ys_all = grid.ys.astype(np.float32)
    for pts, radius, gas in loops:
        n = len(pts)
        _capsule_chain(tissue, grid, pts, np.full(n, radius), Tissue.BOWEL_WALL, where=abdomen)
        found = grid.box(pts.min(axis=0) - radius, pts.max(axis=0) + radius)
        if found is None:
            continue
        sl = found[0]
        inner = np.zeros(tissue.shape, bool)
        _capsule_chain(
            tissue,
            grid,
            pts,
            np.full(n, radius - 2.5),
            Tissue.BOWEL_CONTENT,
            where=abdomen,
            out_mask=inner,
        )
        if gas > 0.05:
            # Supine: gas rises anteriorly (towards negative y); one level per loop.
            level = float(pts[:, 1].min()) + gas * 2 * radius - radius
            t = tissue[sl]
            t[inner[sl] & (ys_all[sl[1]][None, :, None] < level)] = Tissue.BOWEL_GAS


def _paint_stomach(
    tissue: np.ndarray, grid: Grid, p: dict[str, Any], abdomen: np.ndarray, cav_a: float
) -> None:
    semi = np.asarray(p["stomach_semi"])
    c = (0.35 * cav_a, -35.0, p["dome_right_z"] - p["dome_left_drop"] - semi[2] - 8)
    rot = rotation(-30, 20)
    sl = ellipsoid_box(grid, c, semi, rot)
    if sl is None:
        return
    r2 = ellipsoid_radius(grid, sl, c, semi, rot)
    inside = (r2 <= 1) & abdomen[sl]
    wall_frac = 1 - (4.0 / semi.min())
    content = inside & (r2 <= wall_frac**2)
    t = tissue[sl]
    t[inside] = Tissue.STOMACH_WALL
    t[content] = Tissue.STOMACH_CONTENT
    _, y, _ = grid.coords(sl)
    level = c[1] - semi[1] + 2 * semi[1] * p["stomach_gas_fraction"]
    t[content & (y < level)] = Tissue.BOWEL_GAS


def _paint_liver(
    tissue: np.ndarray,
    grid: Grid,
    p: dict[str, Any],
    disease: dict[str, Any],
    abdomen: np.ndarray,
    cav_a: float,
    spine_y: float,
) -> tuple[np.ndarray, float]:
    """Smooth union of right lobe, left lobe and caudate, deformed by smooth random fields."""
    s = p["liver_scale"] * disease["liver_shrink"]
    sx, sy, sz = p["liver_shift"]
    top = p["dome_right_z"]
    lobes = [  # (centre, semi, rotation)
        (
            (-0.5 * cav_a + sx, -15.0 + sy, top - 70 * s + sz),
            np.array([0.52 * cav_a, 85.0, 80.0]) * s * disease["right_lobe_scale"],
            rotation(-10),
        ),
        (
            (5.0 + sx, -55.0 + sy, top - 45 * s + sz),
            np.array([60.0 * p["left_lobe_size"], 32.0, 42.0]) * s,
            rotation(-20, -10),
        ),
        (
            (-12.0 + sx, spine_y - 50 + sy, top - 60 * s + sz),
            np.array([20.0, 20.0, 38.0]) * s * disease["caudate_scale"],
            rotation(0),
        ),
    ]
    # Room for the deformation fields to push the surface out (f can drop ~0.4 below 1).
    lo = np.min([np.asarray(c) - 1.5 * ellipsoid_extent(se, r) for c, se, r in lobes], axis=0)
    hi = np.max([np.asarray(c) + 1.5 * ellipsoid_extent(se, r) for c, se, r in lobes], axis=0)
    found = grid.box(lo, hi)
    hull = np.zeros(tissue.shape, bool)
    if found is None:
        return hull, 0.0
    sl = found[0]
    # Smooth minimum of the lobes' normalised radii (k controls how the lobes blend).
    fields = [np.sqrt(ellipsoid_radius(grid, sl, c, se, r)) for c, se, r in lobes]
    k = np.float32(0.15)
    f = fields[0]
    for g in fields[1:]:
        h = np.clip(0.5 + 0.5 * (g - f) / k, 0.0, 1.0)
        f = g * (1 - h) + f * h - k * h * (1 - h)
    trng = np.random.default_rng(p["texture_seed"])
    f = f + np.float32(p["liver_deform_amp"]) * smooth_field(
        trng, grid, p["liver_deform_scale_mm"], sl
    )
    amp = disease["surface_amp"]
    if amp > 0:
        f = f + np.float32(amp) * smooth_field(trng, grid, disease["surface_scale_mm"], sl)
    m = (f <= 1.0) & abdomen[sl]
    # The deformation can pinch off small islands: keep the main body of the liver only.
    parts, count = ndimage.label(m)
    if count > 1:
        sizes = np.bincount(parts.ravel())
        sizes[0] = 0
        m = parts == int(np.argmax(sizes))
    tissue[sl][m] = Tissue.LIVER
    hull[sl] = m
    disease["_liver_field"] = (sl, f)  # used for perihepatic ascites
    return hull, 0.0


def _paint_hepatic_vessels(
    tissue: np.ndarray, grid: Grid, p: dict[str, Any], hull: np.ndarray, ivc_c: tuple[float, float]
) -> None:
    """Portal tree from the hilum and three hepatic veins draining into the IVC (liver only)."""
    rng = np.random.default_rng(p["portal_tree_seed"])
    sx, sy, sz = p["liver_shift"]
    hilum = np.array([-25.0 + sx, -10.0 + sy, p["dome_right_z"] - 85 + sz])
    # Extrahepatic portal trunk (shown only where it passes through the liver envelope).
    stack = [
        (hilum, np.array([-1.0, 0.2, 0.3]), 7.0, 0),
        (hilum, np.array([1.0, -0.6, 0.3]), 6.0, 0),
    ]
    while stack:
        start, direction, radius, depth = stack.pop()
        direction = direction / np.linalg.norm(direction)
        length = rng.uniform(25, 45) * (0.8**depth)
        end = start + direction * length
        _capsule_chain(
            tissue,
            grid,
            np.array([start, end]),
            np.array([radius, radius * 0.85]),
            Tissue.PORTAL_VEIN,
            where=hull,
        )
        if depth < 3 and radius > 1.5:
            for _ in range(2):
                turn = rng.standard_normal(3) * 0.6
                stack.append((end, direction + turn, radius * 0.72, depth + 1))
    top = np.array([ivc_c[0], ivc_c[1] - 5, p["dome_right_z"] - 25])
    for angle in p["hepatic_vein_angles"]:
        a = math.radians(angle + 180)  # fan anteriorly: right, middle, left veins
        d = np.array([math.cos(a) * 0.9, -abs(math.sin(a)) - 0.3, -0.5])
        pts = np.array([top, top + 45 * d, top + 90 * d + np.array([0, 0, -15])])
        _capsule_chain(
            tissue, grid, pts, np.array([6.0, 4.0, 2.0]), Tissue.HEPATIC_VEIN, where=hull
        )


def _paint_spine(
    tissue: np.ndarray,
    grid: Grid,
    p: dict[str, Any],
    x2: np.ndarray,
    y2: np.ndarray,
    spine_y: float,
) -> None:
    def ell(cx: float, cy: float, ax: float, by: float) -> np.ndarray:
        return ((x2 - cx) / ax) ** 2 + ((y2 - cy) / by) ** 2 <= 1

    body_outer, body_inner = ell(0, spine_y, 22, 18), ell(0, spine_y, 19, 15)
    arch_y = spine_y + 30
    arch = ell(0, arch_y, 17, 13) | ell(0, arch_y + 20, 5, 14)
    transverse = ell(-28, arch_y - 6, 14, 4) | ell(28, arch_y - 6, 14, 4)
    canal = ell(0, arch_y - 4, 10, 8)
    level, phase = p["vertebra_level_mm"], p["vertebra_phase_mm"]
    zs = grid.zs
    within = np.mod(zs - phase, level)
    disc = within < 0.22 * level
    for k in range(len(zs)):
        t = tissue[k]
        t[arch] = Tissue.CORTICAL_BONE
        if disc[k]:
            t[body_outer] = Tissue.DISC
        else:
            t[body_outer] = Tissue.CORTICAL_BONE
            t[body_inner] = Tissue.CANCELLOUS_BONE
            if 0.45 * level < within[k] < 0.8 * level:
                t[transverse] = Tissue.CORTICAL_BONE
        t[canal] = Tissue.SPINAL_CANAL


def _paint_ribs(
    tissue: np.ndarray,
    grid: Grid,
    p: dict[str, Any],
    x2: np.ndarray,
    y2: np.ndarray,
    a: float,
    b_ant: float,
    b_post: float,
    outer_inset: float,
    wall: float,
    taper: np.ndarray,
) -> None:
    """Ribs: oblique arcs in the muscle wall, descending anteriorly; partial arcs per slice."""
    q = _body_q(grid, a, b_ant, b_post, outer_inset + 0.5 * wall)
    mean_semi = 0.5 * (a + b_post) - outer_inset
    radial = np.abs(np.sqrt(q) - 1.0) * mean_semi  # ~mm from the rib ellipse
    band = radial < min(4.0, 0.35 * wall)
    j, i = np.nonzero(band)
    if len(j) == 0:
        return
    phi = np.degrees(np.arctan2(np.abs(x2[0, i]), y2[j, 0]))  # 0 posterior .. 180 anterior
    ends = [75.0, 105.0] + [150.0] * 10
    for n, end in enumerate(ends):
        z0 = p["rib_bottom_z"] + n * p["rib_spacing_mm"]
        start = 25.0
        frac = np.clip((phi - start) / (end - start), 0, 1)
        z_rib = z0 - p["rib_drop_mm"] * frac
        on = (phi >= start) & (phi <= end)
        for k, z in enumerate(grid.zs):
            hit = on & (np.abs(z - z_rib) < 5.0)
            if hit.any():
                inside = np.sqrt(taper[k]) > 0  # taper only rescales; keep all band pixels
                if inside:
                    tissue[k, j[hit], i[hit]] = Tissue.RIB


def _paint_disease_extras(
    tissue: np.ndarray,
    grid: Grid,
    disease: dict[str, Any],
    abdomen: np.ndarray,
    cav_a: float,
    b_ant: float,
    spleen_c: tuple[float, float, float],
) -> None:
    """Ascites (perihepatic, perisplenic and along the flanks) and varices at the splenic hilum."""
    depth = disease["ascites_mm"]
    if depth > 0:
        fat = (tissue == Tissue.VISCERAL_FAT) & abdomen
        sl, f = disease["_liver_field"]
        peri = np.zeros(tissue.shape, bool)
        peri[sl] = f <= 1.0 + depth / 60.0
        # Flanks and anterior abdomen: within ``depth`` of the cavity wall.
        x = grid.xs.astype(np.float32)[None, :]
        y = grid.ys.astype(np.float32)[:, None]
        shrink = ((x / max(cav_a - depth, 5.0)) ** 2 + (y / max(0.8 * b_ant - depth, 5.0)) ** 2) > 1
        tissue[fat & (peri | shrink[None])] = Tissue.ASCITES
    rng = np.random.default_rng(disease["varix_seed"])
    for _ in range(disease["varix_count"]):
        c = np.asarray(spleen_c) + np.array([-45.0, -25.0, 25.0]) + rng.uniform(-15, 15, 3)
        pts = [c]
        for _ in range(3):
            pts.append(pts[-1] + rng.uniform(-8, 8, 3))
        r = rng.uniform(2.5, 5.0)
        _capsule_chain(
            tissue,
            grid,
            np.array(pts),
            np.full(len(pts), r),
            Tissue.VARICES,
            where=abdomen & (tissue != Tissue.LIVER) & (tissue != Tissue.SPLEEN),
        )
