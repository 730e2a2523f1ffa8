"""A synthetic contrast-enhanced abdominal CT with known liver and tumour truth (pure numpy).

The phantom is a scene of axis-aligned ellipsoids and elliptic cylinders in LPS millimetres,
painted in order (later shapes cover earlier ones). Labels come from the same painting, so they
match the rendered liver and tumour regions exactly; only the blur and noise added afterwards
make the CT values differ from the piecewise-constant scene.

Anatomy (LPS: +x patient left, +y posterior, +z head): the liver fills the patient's right upper
abdomen (negative x), the spleen and stomach the left (positive x), the spine, aorta and kidneys
lie posterior (positive y), bowel loops anterior (negative y). The scene is centred on the
volume centre, which is the LPS origin (0, 0, 0); the FOV (``matrix * pixel_spacing``) and the
covered length (``slices * slice_thickness``) crop it like a real scan would.

Rendering is per axial slice and per shape's bounding box, so the default 512 x 512 x 80 study
takes well under two seconds on two cores.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import IntEnum

import numpy as np

from radview.core.volume import Rescale, Volume, VolumeSource

__all__ = [
    "PHANTOM_GENERATOR",
    "PHANTOM_VERSION",
    "PhantomLabel",
    "LesionTruth",
    "Phantom",
    "make_abdomen_phantom",
]

#: Name and version written next to any truth derived from a phantom. Bump the version whenever
#: the same arguments would produce different voxels.
PHANTOM_GENERATOR = "radview.core.phantom.make_abdomen_phantom"
PHANTOM_VERSION = 1

_AIR_HU = -1000.0
_NOISE_SD_HU = 10.0
_LESION_DIAMETER_RANGE_MM = (10.0, 40.0)
_LESION_MARGIN_MM = 3.0  # liver tissue kept around every lesion, and between lesions
_PLACEMENT_ATTEMPTS = 400


class PhantomLabel(IntEnum):
    """Values of the phantom's label map."""

    BACKGROUND = 0
    LIVER = 1
    TUMOUR = 2


@dataclass(frozen=True)
class LesionTruth:
    """One rendered liver lesion: an axis-aligned ellipsoid in LPS millimetres."""

    id: int
    centre_lps_mm: tuple[float, float, float]
    diameters_mm: tuple[float, float, float]  # full axes along LPS x, y, z
    mean_hu: float

    @property
    def volume_ml(self) -> float:
        """Analytic ellipsoid volume, pi/6 * dx * dy * dz, in millilitres."""
        dx, dy, dz = self.diameters_mm
        return math.pi / 6.0 * dx * dy * dz / 1000.0


@dataclass(frozen=True, eq=False)
class Phantom:
    """A synthetic CT, its label map on the same grid, and the lesions it contains."""

    ct: Volume  # int16 HU
    labels: Volume  # uint8 PhantomLabel values
    lesions: tuple[LesionTruth, ...]
    seed: int


@dataclass(frozen=True)
class _Shape:
    """An axis-aligned ellipsoid (``semi[2] = inf``: an elliptic cylinder along z).

    ``z_range`` cuts the shape to a slab; ``clip`` keeps only the part inside another shape
    (organs stay within the abdominal cavity).
    """

    centre: tuple[float, float, float]
    semi: tuple[float, float, float]
    hu: float
    label: PhantomLabel = PhantomLabel.BACKGROUND
    z_range: tuple[float, float] | None = None
    clip: _Shape | None = None

    def cross_section(self, z: float) -> float:
        """Squared scale of the ellipse cut at height ``z`` (<= 0: the plane misses)."""
        if self.z_range is not None and not self.z_range[0] <= z <= self.z_range[1]:
            return 0.0
        if math.isinf(self.semi[2]):
            return 1.0
        return 1.0 - ((z - self.centre[2]) / self.semi[2]) ** 2

    def contains(self, points: np.ndarray) -> np.ndarray:
        """Which of the ``(n, 3)`` LPS points lie inside (used to place lesions)."""
        d = (points - np.asarray(self.centre)) / np.asarray(self.semi)
        inside = np.sum(d**2, axis=1) <= 1.0
        if self.z_range is not None:
            inside &= (points[:, 2] >= self.z_range[0]) & (points[:, 2] <= self.z_range[1])
        if self.clip is not None:
            inside &= self.clip.contains(points)
        return inside

    def slice_mask(
        self, xs: np.ndarray, ys: np.ndarray, z: float
    ) -> tuple[slice, slice, np.ndarray] | None:
        """Rows, columns and mask of the shape on the axial plane ``z`` (None: not there).

        ``xs``/``ys`` are the increasing LPS coordinates of the columns/rows. Only the bounding
        box is evaluated, which is what keeps rendering fast.
        """
        scale = self.cross_section(z)
        if scale <= 0.0:
            return None
        half_x = self.semi[0] * math.sqrt(scale)
        half_y = self.semi[1] * math.sqrt(scale)
        cols = _index_window(xs, self.centre[0], half_x)
        rows = _index_window(ys, self.centre[1], half_y)
        if cols.start >= cols.stop or rows.start >= rows.stop:
            return None
        dx2 = ((xs[cols] - self.centre[0]) / self.semi[0]) ** 2
        dy2 = ((ys[rows] - self.centre[1]) / self.semi[1]) ** 2
        mask = dy2[:, None] + dx2[None, :] <= scale
        if self.clip is not None:
            clipped = self.clip.slice_mask(xs, ys, z)
            if clipped is None:
                return None
            mask &= _window_of(clipped, rows, cols)
        return rows, cols, mask


def make_abdomen_phantom(
    matrix: int = 512,
    slices: int = 80,
    seed: int = 0,
    pixel_spacing: float = 0.78,
    slice_thickness: float = 2.5,
) -> Phantom:
    """Render a synthetic portal-venous abdominal CT with 2-4 hypodense liver lesions.

    Parameters
    ----------
    matrix
        Rows and columns of every axial slice.
    slices
        Number of axial slices; slice 0 is the most inferior.
    seed
        Everything random (anatomy jitter, bowel, lesions, noise) comes from
        ``np.random.default_rng(seed)``, so a seed always gives the same phantom.
    pixel_spacing, slice_thickness
        Voxel size in mm (in-plane, and between slices; they may differ).

    Returns
    -------
    Phantom
        ``ct`` (int16 HU, identity direction, centred on the LPS origin), ``labels`` (uint8,
        :class:`PhantomLabel`) and the truth of every lesion. Lesions lie fully inside the liver
        and the grid; fewer than two are placed only when the grid cannot hold them.
    """
    if matrix < 2 or slices < 1:
        raise ValueError(f"need matrix >= 2 and slices >= 1, got {matrix} and {slices}")
    if not (pixel_spacing > 0 and slice_thickness > 0):
        raise ValueError("pixel_spacing and slice_thickness must be positive")
    rng = np.random.default_rng(seed)
    grid = _grid(matrix, slices, float(pixel_spacing), float(slice_thickness))
    anatomy = _anatomy(rng)
    lesion_truth = _place_lesions(rng, anatomy, grid)
    scene = anatomy + [_lesion_shape(lesion) for lesion in lesion_truth]
    ct, labels = _render(scene, grid)
    _blur_in_plane(ct)
    ct += rng.standard_normal(ct.shape, dtype=np.float32) * np.float32(_NOISE_SD_HU)
    ct_int16 = np.rint(ct).astype(np.int16)
    del ct
    description = f"radview abdomen phantom (seed {seed})"
    ct_volume = grid.with_voxels(
        ct_int16,
        modality="CT",
        rescale=Rescale(slope=1.0, intercept=0.0, unit="HU", applied=True),
        source=VolumeSource("synthetic", description=description),
    )
    label_volume = grid.with_voxels(
        labels, source=VolumeSource("synthetic", description=f"{description} labels")
    )
    return Phantom(ct=ct_volume, labels=label_volume, lesions=tuple(lesion_truth), seed=seed)


# ---------------------------------------------------------------------- grid
def _grid(matrix: int, slices: int, pixel_spacing: float, slice_thickness: float) -> Volume:
    """An empty Volume carrying the geometry: axial, identity direction, centred on 0."""
    origin = (
        -(matrix - 1) / 2.0 * pixel_spacing,
        -(matrix - 1) / 2.0 * pixel_spacing,
        -(slices - 1) / 2.0 * slice_thickness,
    )
    # A broadcast zero array costs no memory; only the geometry of this Volume is used.
    placeholder = np.broadcast_to(np.zeros((), np.uint8), (slices, matrix, matrix))
    return Volume(
        voxels=placeholder,
        spacing=(pixel_spacing, pixel_spacing, slice_thickness),
        origin=origin,
    )


def _axis_coordinates(grid: Volume) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """LPS x of each column, y of each row and z of each slice (identity direction)."""
    k, j, i = grid.shape
    sx, sy, sz = grid.spacing
    ox, oy, oz = grid.origin
    return ox + sx * np.arange(i), oy + sy * np.arange(j), oz + sz * np.arange(k)


def _index_window(coords: np.ndarray, centre: float, half: float) -> slice:
    """Indices of the increasing ``coords`` within ``centre +- half``."""
    start = int(np.searchsorted(coords, centre - half, side="left"))
    stop = int(np.searchsorted(coords, centre + half, side="right"))
    return slice(start, stop)


def _window_of(found: tuple[slice, slice, np.ndarray], rows: slice, cols: slice) -> np.ndarray:
    """The part of another shape's windowed mask that falls on ``rows`` x ``cols``."""
    other_rows, other_cols, other_mask = found
    out = np.zeros((rows.stop - rows.start, cols.stop - cols.start), dtype=bool)
    r0, r1 = max(rows.start, other_rows.start), min(rows.stop, other_rows.stop)
    c0, c1 = max(cols.start, other_cols.start), min(cols.stop, other_cols.stop)
    if r0 < r1 and c0 < c1:
        out[r0 - rows.start : r1 - rows.start, c0 - cols.start : c1 - cols.start] = other_mask[
            r0 - other_rows.start : r1 - other_rows.start,
            c0 - other_cols.start : c1 - other_cols.start,
        ]
    return out


# ---------------------------------------------------------------------- anatomy
def _cylinder(x: float, y: float, a: float, b: float, hu: float, **kw: object) -> _Shape:
    return _Shape((x, y, 0.0), (a, b, math.inf), hu, **kw)  # type: ignore[arg-type]


def _anatomy(rng: np.random.Generator) -> list[_Shape]:
    """The organs in painting order (everything but the lesions), jittered by ``rng``."""
    half_width = float(rng.uniform(160.0, 185.0))  # body semi-axes, LPS x and y
    half_depth = float(rng.uniform(118.0, 132.0))
    cavity = _cylinder(0.0, 0.0, half_width - 26.0, half_depth - 24.0, -90.0)
    shapes = [
        _cylinder(0.0, 0.0, half_width, half_depth, 45.0),  # skin
        _cylinder(0.0, 0.0, half_width - 4.0, half_depth - 4.0, -100.0),  # subcutaneous fat
        _cylinder(0.0, 0.0, half_width - 18.0, half_depth - 16.0, 55.0),  # abdominal wall
        cavity,  # intra-abdominal fat
        _cylinder(-38.0, half_depth - 42.0, 24.0, 26.0, 55.0),  # paraspinal muscles
        _cylinder(38.0, half_depth - 42.0, 24.0, 26.0, 55.0),
    ]
    shapes += _bowel(rng, half_depth)
    shapes += _stomach_and_spleen(rng, cavity)
    shapes += _liver(rng, cavity)
    shapes += _retroperitoneum(rng)
    shapes += _spine(rng, half_depth)
    return shapes


def _bowel(rng: np.random.Generator, half_depth: float) -> list[_Shape]:
    """Small-bowel and colon loops in the anterior abdomen, some holding gas."""
    loops: list[_Shape] = []
    for _ in range(int(rng.integers(8, 13))):
        centre = (
            float(rng.uniform(-70.0, 90.0)),
            float(rng.uniform(-half_depth + 45.0, 15.0)),
            float(rng.uniform(-100.0, 30.0)),
        )
        semi = (
            float(rng.uniform(12.0, 22.0)),
            float(rng.uniform(10.0, 18.0)),
            float(rng.uniform(15.0, 35.0)),
        )
        loops.append(_Shape(centre, semi, float(rng.uniform(25.0, 40.0))))
        if rng.random() < 0.6:
            gas = (semi[0] * 0.6, semi[1] * 0.6, semi[2] * 0.6)
            loops.append(_Shape(centre, gas, float(rng.uniform(-1000.0, -900.0))))
    return loops


def _stomach_and_spleen(rng: np.random.Generator, cavity: _Shape) -> list[_Shape]:
    shift = rng.uniform(-6.0, 6.0, size=3)
    stomach_centre = (60.0 + shift[0], -25.0 + shift[1], 45.0 + shift[2])
    # A supine patient's stomach gas rises anteriorly (negative y).
    gas_centre = (stomach_centre[0], stomach_centre[1] - 20.0, stomach_centre[2] + 5.0)
    spleen_scale = float(rng.uniform(0.9, 1.1))
    return [
        _Shape(stomach_centre, (45.0, 35.0, 40.0), 30.0, clip=cavity),
        _Shape(gas_centre, (25.0, 12.0, 20.0), -950.0, clip=cavity),
        _Shape(
            (100.0 + shift[0], 35.0, 40.0 + shift[2]),
            (30.0 * spleen_scale, 45.0 * spleen_scale, 50.0 * spleen_scale),
            50.0,
            clip=cavity,
        ),
    ]


def _liver(rng: np.random.Generator, cavity: _Shape) -> list[_Shape]:
    """Right lobe plus a left lobe reaching across the midline, kept inside the cavity."""
    scale = float(rng.uniform(0.92, 1.08))
    shift = rng.uniform(-8.0, 8.0, size=3)
    hu = float(rng.uniform(55.0, 65.0))
    right = _Shape(
        (-65.0 + shift[0], -5.0 + shift[1], 30.0 + shift[2]),
        (70.0 * scale, 80.0 * scale, 70.0 * scale),
        hu,
        PhantomLabel.LIVER,
        clip=cavity,
    )
    left = _Shape(
        (5.0 + shift[0], -45.0 + shift[1], 50.0 + shift[2]),
        (45.0 * scale, 28.0 * scale, 38.0 * scale),
        hu,
        PhantomLabel.LIVER,
        clip=cavity,
    )
    return [right, left]


def _retroperitoneum(rng: np.random.Generator) -> list[_Shape]:
    """Kidneys (the right one lower, under the liver), IVC and aorta."""
    right_z, left_z = float(rng.uniform(-35.0, -20.0)), float(rng.uniform(-20.0, -5.0))
    return [
        _Shape((-72.0, 52.0, right_z), (28.0, 22.0, 55.0), 150.0),
        _Shape((72.0, 52.0, left_z), (28.0, 22.0, 55.0), 150.0),
        _cylinder(-24.0, 30.0, 13.0, 10.0, 120.0),  # inferior vena cava
        _cylinder(12.0, 35.0, 12.0, 12.0, 150.0),  # aorta
    ]


def _spine(rng: np.random.Generator, half_depth: float) -> list[_Shape]:
    """Vertebral bodies (cortex + cancellous bone), discs, canal and posterior elements."""
    body_y = 62.0
    shapes = [
        _cylinder(0.0, body_y, 21.0, 19.0, 850.0),  # cortical bone
        _cylinder(0.0, body_y, 18.0, 16.0, 250.0),  # cancellous bone
    ]
    level_height = 32.0  # one vertebra plus its disc
    phase = float(rng.uniform(0.0, level_height))
    for n in range(-5, 6):
        bottom = phase + n * level_height
        shapes.append(
            _cylinder(0.0, body_y, 21.0, 19.0, 90.0, z_range=(bottom, bottom + 7.0))  # disc
        )
    arch_y = body_y + 32.0
    spinous_y = min(arch_y + 16.0, half_depth - 14.0)
    shapes += [
        _cylinder(0.0, arch_y, 15.0, 13.0, 600.0),  # neural arch
        _cylinder(0.0, arch_y, 9.0, 8.0, 15.0),  # spinal canal (CSF)
        _cylinder(0.0, spinous_y, 5.0, 10.0, 600.0),  # spinous process
    ]
    return shapes


# ---------------------------------------------------------------------- lesions
def _scene_labels(scene: list[_Shape], points: np.ndarray) -> np.ndarray:
    """The label the painted scene gives each LPS point (the last shape containing it)."""
    labels = np.full(len(points), PhantomLabel.BACKGROUND, dtype=np.uint8)
    for shape in scene:
        labels[shape.contains(points)] = shape.label
    return labels


def _probe_points(centre: np.ndarray, semi: np.ndarray, margin: float) -> np.ndarray:
    """Points filling an ellipsoid grown by ``margin``: nested shells plus the centre."""
    count = 256
    golden = math.pi * (3.0 - math.sqrt(5.0))
    t = np.arange(count) + 0.5
    z = 1.0 - 2.0 * t / count
    r = np.sqrt(1.0 - z**2)
    unit = np.stack([r * np.cos(golden * t), r * np.sin(golden * t), z], axis=1)
    shells = [unit * (semi + margin)] + [unit * semi * f for f in (0.75, 0.5, 0.25)]
    return np.concatenate([centre[None, :], *[centre + s for s in shells]])


def _place_lesions(
    rng: np.random.Generator, anatomy: list[_Shape], grid: Volume
) -> list[LesionTruth]:
    """Rejection-sample 2-4 lesions that lie, with a margin, inside the liver and the grid."""
    wanted = int(rng.integers(2, 5))
    liver_boxes = [s for s in anatomy if s.label == PhantomLabel.LIVER]
    low = np.min([np.subtract(s.centre, s.semi) for s in liver_boxes], axis=0)
    high = np.max([np.add(s.centre, s.semi) for s in liver_boxes], axis=0)
    placed: list[LesionTruth] = []
    for _ in range(_PLACEMENT_ATTEMPTS):
        if len(placed) == wanted:
            break
        base = rng.uniform(*_LESION_DIAMETER_RANGE_MM)
        diameters = np.clip(base * rng.uniform(0.85, 1.15, size=3), *_LESION_DIAMETER_RANGE_MM)
        # Round so that the truth written to JSON is exactly what gets painted.
        diameters = np.round(diameters, 1)
        centre = np.round(rng.uniform(low, high), 1)
        hu = round(float(rng.uniform(20.0, 30.0)), 1)
        if _lesion_fits(centre, diameters / 2.0, anatomy, grid, placed):
            placed.append(LesionTruth(len(placed) + 1, _triple(centre), _triple(diameters), hu))
    return placed


def _lesion_fits(
    centre: np.ndarray,
    semi: np.ndarray,
    anatomy: list[_Shape],
    grid: Volume,
    placed: list[LesionTruth],
) -> bool:
    for other in placed:
        # Disjoint bounding spheres keep every lesion countable on its own.
        reach = semi.max() + max(other.diameters_mm) / 2.0 + _LESION_MARGIN_MM
        if np.linalg.norm(centre - np.asarray(other.centre_lps_mm)) < reach:
            return False
    probes = _probe_points(centre, semi, _LESION_MARGIN_MM)
    index = grid.world_to_index(probes)
    if np.any(index < 0.0) or np.any(index > np.asarray(grid.size_xyz) - 1.0):
        return False
    return bool(np.all(_scene_labels(anatomy, probes) == PhantomLabel.LIVER))


def _lesion_shape(lesion: LesionTruth) -> _Shape:
    semi = tuple(d / 2.0 for d in lesion.diameters_mm)
    return _Shape(lesion.centre_lps_mm, semi, lesion.mean_hu, PhantomLabel.TUMOUR)  # type: ignore[arg-type]


def _triple(values: np.ndarray) -> tuple[float, float, float]:
    return (float(values[0]), float(values[1]), float(values[2]))


# ---------------------------------------------------------------------- rendering
def _render(scene: list[_Shape], grid: Volume) -> tuple[np.ndarray, np.ndarray]:
    """Paint the scene slice by slice: float32 HU (noise-free) and uint8 labels."""
    xs, ys, zs = _axis_coordinates(grid)
    ct = np.full(grid.shape, _AIR_HU, dtype=np.float32)
    labels = np.zeros(grid.shape, dtype=np.uint8)
    for k, z in enumerate(zs):
        ct_slice, label_slice = ct[k], labels[k]
        for shape in scene:
            found = shape.slice_mask(xs, ys, float(z))
            if found is None:
                continue
            rows, cols, mask = found
            ct_slice[rows, cols][mask] = shape.hu
            label_slice[rows, cols][mask] = shape.label
    return ct, labels


def _blur_in_plane(ct: np.ndarray) -> None:
    """Soften edges in place with a [1, 2, 1] / 4 kernel along rows, then columns.

    Stands in for the scanner's reconstruction kernel; the outermost pixels stay unblurred.
    Slice by slice, so the temporaries stay small for long volumes.
    """
    for image in ct:
        image[1:-1, :] = 0.5 * image[1:-1, :] + 0.25 * (image[:-2, :] + image[2:, :])
        image[:, 1:-1] = 0.5 * image[:, 1:-1] + 0.25 * (image[:, :-2] + image[:, 2:])
