"""Lesion measurements checked on analytic shapes: ellipsoids, cubes and box-shaped livers.

Every expected value is computed from the continuous shape (not from the voxels), in LPS, for
anisotropic grids and for rotated / flipped direction matrices. Tolerances follow the brief:
volumes within 3 %, lengths within one voxel spacing along the measured direction.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import replace

import numpy as np
import pytest

from radview.core.errors import RadviewError
from radview.core.labelmap import LabelMap, LiverLabel
from radview.core.lesions import (
    RIGHT_LIVER_VOLUME_FRACTION,
    LesionMeasurementName,
    LiverFindings,
    Lobe,
    NoLiverError,
    UnknownGeometryError,
    measure_liver,
    to_json,
)
from radview.core.measurements import Measurement, MeasurementName
from radview.core.volume import Rescale, Volume

SPACING = (0.7, 0.8, 2.5)  # (x, y, z) mm: anisotropic, as thick-slice CT
LIVER, TUMOUR = int(LiverLabel.LIVER), int(LiverLabel.TUMOUR)
LIVER_HU, LESION_HU = 60, 30


# ---------------------------------------------------------------------------- builders
def _rotation(axis: str, degrees: float) -> np.ndarray:
    c, s = math.cos(math.radians(degrees)), math.sin(math.radians(degrees))
    if axis == "x":
        return np.array([[1, 0, 0], [0, c, -s], [0, s, c]])
    if axis == "y":
        return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])


IDENTITY = np.eye(3)
#: oblique in-plane and tilted, with the y and z index axes flipped (det -1 would also be fine)
ROTATED_FLIPPED = _rotation("z", 25.0) @ _rotation("x", 8.0) @ np.diag([1.0, -1.0, -1.0])
#: rows and columns swapped (x <-> y), a reflection
SWAPPED = np.array([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])


def _grid(shape: tuple[int, int, int], spacing=SPACING, direction=IDENTITY,
          origin=(-40.0, 25.0, 110.0)) -> Volume:
    return Volume(np.zeros(shape, np.uint8), spacing=spacing, origin=origin, direction=direction)


def _world(grid: Volume) -> np.ndarray:
    """LPS mm of every voxel centre, shape (k, j, i, 3)."""
    k, j, i = np.meshgrid(*[np.arange(n) for n in grid.shape], indexing="ij")
    ijk = np.stack([i, j, k], axis=-1).reshape(-1, 3)
    return grid.index_to_world(ijk).reshape(*grid.shape, 3)


def _ct(labels: np.ndarray, grid: Volume) -> Volume:
    voxels = np.where(labels == TUMOUR, LESION_HU, LIVER_HU).astype(np.int16)
    return grid.with_voxels(voxels, modality="CT", rescale=Rescale(unit="HU"))


def _measure(labels: np.ndarray, grid: Volume) -> LiverFindings:
    return measure_liver(grid.with_voxels(labels), _ct(labels, grid))


class Ellipsoid:
    """An ellipsoid in LPS: centre, semi-axes and rotation (columns = axis directions)."""

    def __init__(self, semi, rotation=IDENTITY, spacing=SPACING, direction=IDENTITY,
                 offset=(0.31, -0.17, 0.23)):
        self.semi = np.asarray(semi, dtype=np.float64)
        self.rotation = np.asarray(rotation, dtype=np.float64)
        reach = float(self.semi.max())
        size_xyz = [int(2 * reach / s) + 8 for s in spacing]
        probe = _grid(tuple(size_xyz[::-1]), spacing, direction)
        # centre: the grid centre moved by a fraction of a voxel
        centre_index = (np.asarray(size_xyz) - 1) / 2 + np.asarray(offset)
        self.centre = probe.index_to_world(centre_index)
        self.grid = probe
        self.matrix = self.rotation @ np.diag(1 / self.semi**2) @ self.rotation.T
        local = (_world(probe) - self.centre) @ self.rotation
        self.mask = np.sum((local / self.semi) ** 2, axis=-1) <= 1.0
        self.labels = np.where(self.mask, TUMOUR, LIVER).astype(np.uint8)

    @property
    def volume_ml(self) -> float:
        return 4.0 / 3.0 * math.pi * float(np.prod(self.semi)) / 1000.0

    @property
    def max_diameter(self) -> float:
        return 2.0 * float(self.semi.max())

    def recist(self) -> tuple[float, float]:
        """(long, short) diameters of the section on the slice nearest the centre.

        Parallel sections of an ellipsoid are similar ellipses scaled by sqrt(1 - t^2 / h^2)
        (t: offset from the centre along the normal, h: the ellipsoid's half-extent along it).
        """
        d = self.grid.direction
        in_plane = d[:, :2]
        normal = d[:, 2]
        eigen = np.linalg.eigvalsh(in_plane.T @ self.matrix @ in_plane)
        k_centre = float(self.grid.world_to_index(self.centre)[2])
        t = (round(k_centre) - k_centre) * self.grid.spacing[2]
        h = math.sqrt(float(normal @ np.linalg.inv(self.matrix) @ normal))
        scale = math.sqrt(1.0 - (t / h) ** 2)
        return 2.0 * scale / math.sqrt(eigen[0]), 2.0 * scale / math.sqrt(eigen[1])


def _spacing_along(grid: Volume, a, b) -> float:
    """The width of one voxel along the direction a -> b (the 'one voxel spacing' there).

    Between the smallest and the largest spacing; e.g. 2.5 mm along z, 0.8 mm along y.
    """
    u = grid.direction.T @ (np.asarray(b) - np.asarray(a))  # in index axes (i, j, k)
    u /= np.linalg.norm(u)
    return float(np.abs(u) @ np.asarray(grid.spacing))


def _on_lesion(mask: np.ndarray, grid: Volume, point, tol: float = 1e-6) -> bool:
    """True when ``point`` lies in (or on) the box of a voxel of ``mask``."""
    i, j, k = grid.world_to_index(point)
    box = []
    for value, n in zip((k, j, i), mask.shape, strict=True):
        lo, hi = math.ceil(value - 0.5 - tol), math.floor(value + 0.5 + tol)
        box.append(slice(max(lo, 0), min(hi, n - 1) + 1))
    return bool(mask[tuple(box)].any())


# ---------------------------------------------------------------------------- analytic shapes
ELLIPSOIDS = {
    "sphere": dict(semi=(10.0, 10.0, 10.0)),
    "ellipsoid": dict(semi=(15.0, 9.0, 12.0)),
    "in-plane 30 deg": dict(semi=(16.0, 8.0, 11.0), rotation=_rotation("z", 30.0)),
    "3D rotated": dict(semi=(16.0, 9.0, 11.0),
                       rotation=_rotation("z", 30.0) @ _rotation("x", 20.0)),
    "3D rotated, rotated+flipped grid": dict(
        semi=(16.0, 9.0, 11.0), rotation=_rotation("z", -40.0) @ _rotation("y", 15.0),
        direction=ROTATED_FLIPPED,
    ),
    "swapped grid, long along z": dict(
        semi=(7.0, 9.0, 14.0), rotation=_rotation("x", 10.0), direction=SWAPPED,
        offset=(-0.4, 0.1, 0.45),
    ),
    "isotropic 0.8 mm": dict(semi=(12.0, 7.0, 9.0), rotation=_rotation("y", 35.0),
                             spacing=(0.8, 0.8, 0.8)),
}


@pytest.fixture(scope="module", params=list(ELLIPSOIDS), ids=list(ELLIPSOIDS))
def ellipsoid_case(request) -> tuple[Ellipsoid, LiverFindings]:
    shape = Ellipsoid(**ELLIPSOIDS[request.param])
    return shape, _measure(shape.labels, shape.grid)


def test_ellipsoid_is_one_lesion_with_its_volume(ellipsoid_case) -> None:
    shape, findings = ellipsoid_case
    assert len(findings.lesions) == 1
    lesion = findings.lesions[0]
    assert lesion.id == 1
    assert lesion.voxel_count == int(shape.mask.sum())
    assert lesion.volume.value == pytest.approx(shape.volume_ml, rel=0.03)
    assert lesion.volume.unit == "mL"


def test_max_diameter_within_one_voxel(ellipsoid_case) -> None:
    shape, findings = ellipsoid_case
    lesion = findings.lesions[0]
    a, b = lesion.max_diameter_endpoints_lps
    tolerance = _spacing_along(shape.grid, a, b)
    assert abs(lesion.max_diameter.value - shape.max_diameter) <= tolerance
    assert math.dist(a, b) == pytest.approx(lesion.max_diameter.value, abs=1e-9)
    assert lesion.max_diameter.value >= lesion.long_axis.value
    if len(set(shape.semi)) == 3:  # the diameter runs closest to the longest axis
        along = np.abs(np.subtract(b, a) @ shape.rotation)
        assert int(np.argmax(along)) == int(np.argmax(shape.semi))


def test_recist_axes_within_one_voxel(ellipsoid_case) -> None:
    shape, findings = ellipsoid_case
    lesion = findings.lesions[0]
    long_expected, short_expected = shape.recist()
    long_a, long_b = lesion.long_axis_endpoints_lps
    short_a, short_b = lesion.short_axis_endpoints_lps
    in_plane_spacing = max(shape.grid.spacing[:2])
    assert abs(lesion.long_axis.value - long_expected) <= in_plane_spacing
    assert abs(lesion.short_axis.value - short_expected) <= in_plane_spacing
    assert math.dist(long_a, long_b) == pytest.approx(lesion.long_axis.value, abs=1e-9)
    assert math.dist(short_a, short_b) == pytest.approx(lesion.short_axis.value, abs=1e-6)
    # perpendicular, and both in the plane of the RECIST slice
    long_dir = np.subtract(long_b, long_a)
    short_dir = np.subtract(short_b, short_a)
    assert abs(long_dir @ short_dir) <= 1e-6 * np.linalg.norm(long_dir) * np.linalg.norm(short_dir)
    for point in (long_a, long_b, short_a, short_b):
        k = shape.grid.world_to_index(point)[2]
        assert k == pytest.approx(lesion.recist_slice, abs=1e-9)


def test_end_points_lie_on_the_lesion(ellipsoid_case) -> None:
    shape, findings = ellipsoid_case
    lesion = findings.lesions[0]
    for pair in (
        lesion.long_axis_endpoints_lps,
        lesion.short_axis_endpoints_lps,
        lesion.max_diameter_endpoints_lps,
    ):
        for point in pair:
            assert _on_lesion(shape.mask, shape.grid, point)


def test_centroid_slices_and_intensity(ellipsoid_case) -> None:
    shape, findings = ellipsoid_case
    lesion = findings.lesions[0]
    # the voxel centroid of a sampled ellipsoid is within a fraction of a voxel of its centre
    assert np.allclose(lesion.centroid_lps, shape.centre, atol=0.25 * max(shape.grid.spacing))
    ks = np.flatnonzero(shape.mask.any(axis=(1, 2)))
    assert lesion.slice_range == (int(ks[0]), int(ks[-1]))
    assert lesion.slice_range[0] <= lesion.recist_slice <= lesion.slice_range[1]
    assert lesion.mean.value == LESION_HU
    assert lesion.sd.value == 0.0
    assert lesion.mean.unit == "HU"
    assert lesion.in_liver


def test_accuracy_table(ellipsoid_case, record_property) -> None:
    """Not a check: records the errors (``-rA`` / junit shows them) for the report."""
    shape, findings = ellipsoid_case
    lesion = findings.lesions[0]
    long_expected, short_expected = shape.recist()
    record_property("volume_error_percent", 100 * (lesion.volume.value / shape.volume_ml - 1))
    record_property("max_diameter_error_mm", lesion.max_diameter.value - shape.max_diameter)
    record_property("long_axis_error_mm", lesion.long_axis.value - long_expected)
    record_property("short_axis_error_mm", lesion.short_axis.value - short_expected)


def test_the_plane_is_the_acquisition_plane_and_coronal_is_reported() -> None:
    # k runs along patient y: a coronal acquisition
    coronal = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]])
    shape = Ellipsoid(semi=(12.0, 8.0, 6.0), direction=coronal)
    findings = _measure(shape.labels, shape.grid)
    lesion = findings.lesions[0]
    long_expected, short_expected = shape.recist()  # section across the grid's k axis
    tolerance = max(shape.grid.spacing[:2])
    assert lesion.long_axis.value == pytest.approx(long_expected, abs=tolerance)
    assert lesion.short_axis.value == pytest.approx(short_expected, abs=tolerance)
    assert any("coronal" in w and "acquisition plane" in w for w in findings.warnings)


def test_single_voxel_lesion() -> None:
    grid = _grid((5, 5, 5))
    labels = np.full(grid.shape, LIVER, np.uint8)
    labels[2, 2, 2] = TUMOUR
    lesion = _measure(labels, grid).lesions[0]
    sx, sy, _ = SPACING
    assert lesion.volume.value == pytest.approx(grid.voxel_volume_mm3 / 1000)
    # edge to edge of the one pixel: its longer side, and the shorter one across it
    assert lesion.long_axis.value == pytest.approx(max(sx, sy))
    assert lesion.short_axis.value == pytest.approx(min(sx, sy), abs=1e-6)
    assert lesion.max_diameter.value == pytest.approx(max(sx, sy))
    assert lesion.slice_range == (2, 2)


def test_short_axis_is_a_chord_of_the_lesion_not_its_bounding_width() -> None:
    """An L: long axis along the diagonal; the perpendicular chord stays inside the pixels."""
    grid = _grid((3, 60, 60), spacing=(1.0, 1.0, 1.0))
    labels = np.full(grid.shape, LIVER, np.uint8)
    labels[1, 10:50, 10:14] = TUMOUR  # vertical bar, 40 x 4
    labels[1, 46:50, 10:50] = TUMOUR  # horizontal bar, 4 x 40
    lesion = _measure(labels, grid).lesions[0]
    # contour points: edge midpoints of the two far pixels -> about 40*sqrt(2)
    assert lesion.long_axis.value == pytest.approx(math.hypot(39.5, 39.5), abs=1.0)
    # perpendicular chords across the L's corner are at most 4*sqrt(2)*2 long; the width of
    # the whole L across the diagonal would be about 28 mm
    assert lesion.short_axis.value <= 4 * math.sqrt(2) * 2 + 0.5
    mask = labels == TUMOUR
    for point in lesion.short_axis_endpoints_lps:
        assert _on_lesion(mask, grid, point)
    middle = np.mean(lesion.short_axis_endpoints_lps, axis=0)
    assert _on_lesion(mask, grid, middle)


# ---------------------------------------------------------------------------- connectivity
def _cubes(second_start: int) -> np.ndarray:
    labels = np.full((16, 16, 16), LIVER, np.uint8)
    labels[2:6, 2:6, 2:6] = TUMOUR  # 64 voxels
    labels[second_start : second_start + 3, second_start : second_start + 3,
           second_start : second_start + 3] = TUMOUR  # 27 voxels
    return labels


def test_cubes_touching_by_a_corner_are_one_lesion() -> None:
    grid = _grid((16, 16, 16))
    findings = _measure(_cubes(6), grid)  # voxel (5,5,5) touches (6,6,6) by a corner only
    assert len(findings.lesions) == 1
    assert findings.lesions[0].voxel_count == 64 + 27


def test_cubes_one_voxel_apart_are_two_lesions_largest_first() -> None:
    grid = _grid((16, 16, 16))
    findings = _measure(_cubes(7), grid)
    assert [lesion.id for lesion in findings.lesions] == [1, 2]
    assert [lesion.voxel_count for lesion in findings.lesions] == [64, 27]
    assert findings.lesions[0].volume.value > findings.lesions[1].volume.value


def test_lesions_sorted_by_volume_whatever_their_position() -> None:
    grid = _grid((16, 16, 16))
    labels = np.full(grid.shape, LIVER, np.uint8)
    labels[1:3, 1:3, 1:3] = TUMOUR  # 8, first in raster order
    labels[8:13, 8:13, 8:13] = TUMOUR  # 125
    labels[1:4, 10:13, 10:13] = TUMOUR  # 27
    findings = _measure(labels, grid)
    assert [lesion.voxel_count for lesion in findings.lesions] == [125, 27, 8]
    assert [lesion.id for lesion in findings.lesions] == [1, 2, 3]


# ---------------------------------------------------------------------------- liver, lobes
def _two_lobe_liver(direction=IDENTITY) -> tuple[Volume, np.ndarray, dict[str, np.ndarray]]:
    """A box liver: a big right lobe (patient right = negative LPS x), a small left lobe.

    Lesions: a sphere deep in the right lobe and one in the left lobe, in LPS.
    """
    spacing = (1.5, 1.5, 3.0)
    grid = Volume(np.zeros((30, 80, 150), np.uint8), spacing=spacing,
                  origin=(0.0, 0.0, 0.0), direction=direction)
    # centre the grid on LPS (0, 0, 0) whatever the direction
    centre = grid.index_to_world((np.asarray(grid.size_xyz) - 1) / 2)
    grid = Volume(grid.voxels, spacing=spacing, origin=tuple(-centre), direction=direction)
    world = _world(grid)
    x, y, z = world[..., 0], world[..., 1], world[..., 2]
    right = (x > -100) & (x < 0) & (np.abs(y) < 50) & (np.abs(z) < 40)
    left = (x >= 0) & (x < 60) & (np.abs(y + 20) < 25) & (np.abs(z - 10) < 25)
    labels = np.where(right | left, LIVER, 0).astype(np.uint8)
    centres = {"right": np.array([-60.0, 0.0, 0.0]), "left": np.array([40.0, -20.0, 10.0])}
    for centre_lps in centres.values():
        labels[np.linalg.norm(world - centre_lps, axis=-1) <= 9.0] = TUMOUR
    return grid, labels, centres


@pytest.mark.parametrize("direction", [IDENTITY, np.diag([-1.0, -1.0, 1.0]), SWAPPED],
                         ids=["LPS", "RAS-stored", "swapped"])
def test_lobe_assignment(direction) -> None:
    grid, labels, centres = _two_lobe_liver(direction)
    findings = _measure(labels, grid)
    assert len(findings.lesions) == 2
    for lesion in findings.lesions:
        side = min(centres, key=lambda name: np.linalg.norm(lesion.centroid_lps - centres[name]))
        assert lesion.lobe is Lobe(side)
    # the plane leaves RIGHT_LIVER_VOLUME_FRACTION of the organ on the patient's right
    # (to within the 0.25 mm bins of its histogram)
    x = _world(grid)[..., 0][labels > 0]
    split = findings.lobe_split_x_mm
    assert np.mean(x <= split + 0.13) >= RIGHT_LIVER_VOLUME_FRACTION
    assert np.mean(x < split - 0.13) < RIGHT_LIVER_VOLUME_FRACTION
    # the liver centroid lies in the right lobe, so a centroid cut would be too far right
    assert findings.liver_centroid_lps[0] < findings.lobe_split_x_mm
    assert np.allclose(findings.liver_centroid_lps, _world(grid)[labels > 0].mean(axis=0))


def test_liver_volume_and_burden() -> None:
    grid = _grid((20, 30, 40))
    labels = np.zeros(grid.shape, np.uint8)
    labels[2:18, 3:27, 4:36] = LIVER  # 16 * 24 * 32 = 12288 voxels, tumour included
    labels[5:9, 8:14, 10:20] = TUMOUR  # 4 * 6 * 10 = 240 voxels
    findings = _measure(labels, grid)
    voxel_ml = grid.voxel_volume_mm3 / 1000
    assert findings.liver_volume.value == pytest.approx(12288 * voxel_ml)
    assert findings.total_tumour_volume.value == pytest.approx(240 * voxel_ml)
    assert findings.tumour_burden.value == pytest.approx(240 / 12288 * 100)
    assert findings.tumour_burden.unit == "%"
    assert findings.liver_volume.name == LesionMeasurementName.LIVER_VOLUME
    assert findings.warnings == ()


def test_no_tumour_means_no_lesions_and_zero_burden() -> None:
    grid = _grid((6, 8, 8))
    labels = np.full(grid.shape, LIVER, np.uint8)
    findings = _measure(labels, grid)
    assert findings.lesions == ()
    assert findings.total_tumour_volume.value == 0.0
    assert findings.tumour_burden.value == 0.0
    assert findings.liver_volume.value == pytest.approx(6 * 8 * 8 * grid.voxel_volume_mm3 / 1000)


def test_lesion_outside_the_liver_is_listed_but_not_counted() -> None:
    grid = _grid((12, 30, 30))
    labels = np.zeros(grid.shape, np.uint8)
    labels[1:11, 1:14, 1:14] = LIVER
    labels[4:7, 4:7, 4:7] = TUMOUR  # inside: 27
    labels[4:6, 20:28, 20:28] = TUMOUR  # far from the liver: 128
    findings = _measure(labels, grid)
    outside, inside = findings.lesions  # sorted by volume
    assert (outside.voxel_count, outside.in_liver, outside.lobe) == (128, False, None)
    assert inside.in_liver and inside.lobe is not None
    voxel_ml = grid.voxel_volume_mm3 / 1000
    assert findings.liver_volume.value == pytest.approx((10 * 13 * 13) * voxel_ml)
    assert findings.total_tumour_volume.value == pytest.approx(27 * voxel_ml)
    assert any("lesion 1 does not touch the liver" in w for w in findings.warnings)


def test_no_liver_raises_its_own_error() -> None:
    grid = _grid((6, 8, 8))
    labels = np.zeros(grid.shape, np.uint8)
    labels[2:4, 2:4, 2:4] = TUMOUR
    with pytest.raises(NoLiverError, match="no liver found") as caught:
        _measure(labels, grid)
    assert isinstance(caught.value, RadviewError)
    with pytest.raises(NoLiverError):
        _measure(np.zeros(grid.shape, np.uint8), grid)


# ---------------------------------------------------------------------------- inputs
def test_labels_off_the_image_grid_are_refused() -> None:
    grid = _grid((6, 8, 8))
    labels = np.full(grid.shape, LIVER, np.uint8)
    image = _ct(labels, grid)
    shifted = Volume(labels, spacing=SPACING, origin=(0.0, 0.0, 0.0))
    with pytest.raises(ValueError, match="not on the image's voxel grid"):
        measure_liver(shifted, image)
    with pytest.raises(ValueError, match="not on the image's voxel grid"):
        measure_liver(_grid((6, 8, 9)).with_voxels(np.ones((6, 8, 9), np.uint8)), image)


def test_unknown_geometry_is_refused() -> None:
    grid = _grid((6, 8, 8))
    labels = np.full(grid.shape, LIVER, np.uint8)
    stack = replace(_ct(labels, grid), geometry_known=False)
    with pytest.raises(UnknownGeometryError, match="cannot be measured"):
        measure_liver(grid.with_voxels(labels), stack)


def test_bad_label_arguments() -> None:
    grid = _grid((6, 8, 8))
    labels = np.full(grid.shape, LIVER, np.uint8)
    image = _ct(labels, grid)
    with pytest.raises(ValueError, match="must differ"):
        measure_liver(grid.with_voxels(labels), image, liver_label=1, tumour_label=1)
    with pytest.raises(ValueError, match="outside"):
        measure_liver(grid.with_voxels(labels), image, tumour_label=300)
    with pytest.raises(TypeError):
        measure_liver(grid.with_voxels(labels.astype(np.float32)), image)


def test_label_map_custom_ids_and_unapplied_rescale() -> None:
    grid = _grid((8, 10, 10))
    labels = np.full(grid.shape, 5, np.uint8)
    labels[2:5, 3:6, 3:6] = 7
    rng = np.random.default_rng(3)
    stored = rng.integers(0, 200, size=grid.shape).astype(np.int16)
    image = grid.with_voxels(
        stored, rescale=Rescale(slope=2.0, intercept=-100.0, unit="HU", applied=False)
    )
    findings = measure_liver(LabelMap(grid.with_voxels(labels)), image,
                             liver_label=5, tumour_label=7)
    lesion = findings.lesions[0]
    hu = stored[labels == 7] * 2.0 - 100.0
    assert lesion.mean.value == pytest.approx(hu.mean())
    assert lesion.sd.value == pytest.approx(hu.std(ddof=0))
    assert lesion.mean.name == MeasurementName.MEAN
    assert lesion.sd.name == MeasurementName.SD


# ---------------------------------------------------------------------------- output
LESION_KEYS = {
    "id", "volume_ml", "long_axis_mm", "short_axis_mm", "max_diameter_mm", "centroid_lps",
    "slice_range", "mean_hu", "sd_hu", "lobe", "long_axis_endpoints_lps",
    "short_axis_endpoints_lps",
}


def test_to_json_keys_and_values() -> None:
    grid, labels, _ = _two_lobe_liver()
    findings = _measure(labels, grid)
    document = to_json(findings)
    assert {"liver", "lesions", "tumor_burden_percent", "total_tumour_volume_ml"} <= set(document)
    assert set(document["liver"]) >= {"volume_ml"}
    assert document["liver"]["volume_ml"] == findings.liver_volume.value
    assert document["tumor_burden_percent"] == findings.tumour_burden.value
    assert document["total_tumour_volume_ml"] == findings.total_tumour_volume.value
    for record, lesion in zip(document["lesions"], findings.lesions, strict=True):
        assert set(record) >= LESION_KEYS
        assert record["id"] == lesion.id
        assert record["long_axis_mm"] == lesion.long_axis.value
        assert record["lobe"] in ("right", "left")
        assert len(record["long_axis_endpoints_lps"]) == 2
        assert all(len(p) == 3 for p in record["short_axis_endpoints_lps"])
        assert record["slice_range"] == list(lesion.slice_range)
    # plain JSON: survives a round trip unchanged (no numpy scalars, no tuples)
    assert json.loads(json.dumps(document)) == document


def test_measurements_are_data() -> None:
    grid, labels, _ = _two_lobe_liver()
    findings = _measure(labels, grid)
    lesion = findings.lesions[0]
    for m in (lesion.volume, lesion.max_diameter, lesion.long_axis, lesion.short_axis,
              lesion.mean, lesion.sd, findings.liver_volume, findings.tumour_burden,
              findings.total_tumour_volume):
        assert isinstance(m, Measurement)
        assert type(m.value) is float
        assert m.method
    assert {lesion.long_axis.unit, lesion.short_axis.unit, lesion.max_diameter.unit} == {"mm"}
    assert all(type(v) is float for v in lesion.centroid_lps)
    assert all(type(v) is int for v in lesion.slice_range)
    assert type(findings.lobe_split_x_mm) is float


# ---------------------------------------------------------------------------- performance
def test_512_x_512_x_300_in_well_under_two_seconds() -> None:
    shape = (300, 512, 512)
    spacing = (0.78, 0.78, 1.0)
    labels = np.zeros(shape, np.uint8)
    k, j, i = np.ogrid[:300, :512, :512]
    liver = ((i - 180) * 0.78 / 100) ** 2 + ((j - 250) * 0.78 / 90) ** 2 + ((k - 150) / 90) ** 2
    labels[liver <= 1] = LIVER
    del liver
    for (kc, jc, ic), radius in (((150, 250, 150), 20), ((120, 200, 220), 12),
                                 ((190, 300, 120), 8), ((100, 260, 260), 5)):
        r_k, r_ji = radius + 1, int(radius / 0.78) + 2
        box = (slice(kc - r_k, kc + r_k), slice(jc - r_ji, jc + r_ji), slice(ic - r_ji, ic + r_ji))
        kk, jj, ii = np.ogrid[box]
        ball = ((ii - ic) * 0.78) ** 2 + ((jj - jc) * 0.78) ** 2 + (kk - kc) ** 2 <= radius**2
        labels[box][ball] = TUMOUR
    grid = Volume(labels, spacing=spacing)
    # a broadcast image costs no memory
    image = Volume(np.broadcast_to(np.int16(40), shape), spacing=spacing,
                   rescale=Rescale(unit="HU"))
    started = time.perf_counter()
    findings = measure_liver(grid, image)
    seconds = time.perf_counter() - started
    assert len(findings.lesions) == 4
    assert findings.lesions[0].max_diameter.value == pytest.approx(40.0, abs=1.0)
    assert seconds < 2.0
