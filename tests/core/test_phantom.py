"""The synthetic abdomen phantom: determinism, geometry, anatomy sides and exact truth."""

from __future__ import annotations

import numpy as np
import pytest

from radview.core.phantom import LesionTruth, Phantom, PhantomLabel, make_abdomen_phantom
from radview.core.volume import ViewPlane, Volume

# Small grids keep the suite fast; the "fine" one is detailed enough to check lesion volumes.
COARSE = {"matrix": 128, "slices": 40, "pixel_spacing": 3.0, "slice_thickness": 4.0}
FINE = {"matrix": 256, "slices": 80, "pixel_spacing": 1.5, "slice_thickness": 1.5}


@pytest.fixture(scope="module")
def coarse() -> Phantom:
    return make_abdomen_phantom(seed=3, **COARSE)


@pytest.fixture(scope="module")
def fine() -> Phantom:
    return make_abdomen_phantom(seed=2, **FINE)


def _ellipsoid_mask(grid: Volume, lesion: LesionTruth) -> np.ndarray:
    """Voxel centres inside the lesion's analytic ellipsoid (identity direction)."""
    k, j, i = np.indices(grid.shape, sparse=True)
    ox, oy, oz = grid.origin
    sx, sy, sz = grid.spacing
    cx, cy, cz = lesion.centre_lps_mm
    a, b, c = (d / 2.0 for d in lesion.diameters_mm)
    x = (ox + i * sx - cx) / a
    y = (oy + j * sy - cy) / b
    z = (oz + k * sz - cz) / c
    return x * x + y * y + z * z <= 1.0


def test_same_seed_gives_identical_phantom(coarse: Phantom) -> None:
    again = make_abdomen_phantom(seed=3, **COARSE)
    assert np.array_equal(again.ct.voxels, coarse.ct.voxels)
    assert np.array_equal(again.labels.voxels, coarse.labels.voxels)
    assert again.lesions == coarse.lesions


def test_other_seed_gives_other_phantom(coarse: Phantom) -> None:
    other = make_abdomen_phantom(seed=4, **COARSE)
    assert not np.array_equal(other.ct.voxels, coarse.ct.voxels)
    assert other.lesions != coarse.lesions


def test_types_and_geometry(coarse: Phantom) -> None:
    ct, labels = coarse.ct, coarse.labels
    assert ct.voxels.dtype == np.int16
    assert labels.voxels.dtype == np.uint8
    assert ct.shape == labels.shape == (40, 128, 128)
    assert ct.spacing == labels.spacing == (3.0, 3.0, 4.0)
    assert ct.origin == labels.origin
    assert np.array_equal(ct.direction, np.eye(3))
    assert ct.modality == "CT"
    assert ct.rescale.unit == "HU"
    centre = ct.index_to_world((np.asarray(ct.size_xyz) - 1) / 2.0)
    assert np.allclose(centre, 0.0)
    assert set(np.unique(labels.voxels)) <= {int(label) for label in PhantomLabel}


def test_anisotropic_grid_keeps_its_spacing() -> None:
    phantom = make_abdomen_phantom(
        matrix=100, slices=12, seed=1, pixel_spacing=4.0, slice_thickness=10.0
    )
    assert phantom.ct.spacing == (4.0, 4.0, 10.0)
    assert phantom.ct.shape == (12, 100, 100)


def test_liver_is_on_the_patients_right(coarse: Phantom) -> None:
    k, j, i = np.nonzero(coarse.labels.voxels == PhantomLabel.LIVER)
    centroid = coarse.ct.index_to_world(np.array([i.mean(), j.mean(), k.mean()]))
    assert centroid[0] < -30.0  # LPS: patient right is negative x
    # ... which the axial view shows on the left half of the screen.
    slice_number = coarse.ct.plane_index_of_world(ViewPlane.AXIAL, tuple(centroid))
    shown = coarse.ct.plane_slice(ViewPlane.AXIAL, slice_number, coarse.labels.voxels)
    columns = np.nonzero(shown == PhantomLabel.LIVER)[1]
    assert columns.mean() < shown.shape[1] / 2


def test_tissue_values_are_plausible(coarse: Phantom) -> None:
    ct, labels = coarse.ct.voxels, coarse.labels.voxels
    assert abs(float(np.median(ct[:, :4, :4])) + 1000.0) < 30.0  # air in the corner
    liver = ct[labels == PhantomLabel.LIVER]
    assert 50.0 < float(liver.mean()) < 70.0
    assert 5.0 < float(liver.std()) < 20.0  # noise about 10 HU
    assert ct.max() > 400  # bone
    assert ct.min() <= -900  # air and bowel gas


def test_two_to_four_lesions_for_several_seeds() -> None:
    for seed in range(5):
        lesions = make_abdomen_phantom(seed=seed, **COARSE).lesions
        assert 2 <= len(lesions) <= 4
        assert [lesion.id for lesion in lesions] == list(range(1, len(lesions) + 1))
        for lesion in lesions:
            assert all(10.0 <= d <= 40.0 for d in lesion.diameters_mm)
            assert 20.0 <= lesion.mean_hu <= 30.0


def test_tumour_labels_are_exactly_the_lesion_ellipsoids(fine: Phantom) -> None:
    union = np.zeros(fine.labels.shape, dtype=bool)
    for lesion in fine.lesions:
        union |= _ellipsoid_mask(fine.labels, lesion)
    assert np.array_equal(union, fine.labels.voxels == PhantomLabel.TUMOUR)


def test_voxel_volume_matches_analytic_volume(fine: Phantom) -> None:
    tumour = fine.labels.voxels == PhantomLabel.TUMOUR
    assert fine.lesions
    for lesion in fine.lesions:
        inside = _ellipsoid_mask(fine.labels, lesion)
        counted_ml = np.count_nonzero(tumour & inside) * fine.labels.voxel_volume_mm3 / 1000.0
        assert counted_ml == pytest.approx(lesion.volume_ml, rel=0.05)


def test_lesions_lie_inside_the_liver(fine: Phantom) -> None:
    labels = fine.labels.voxels
    for lesion in fine.lesions:
        grown = LesionTruth(
            lesion.id,
            lesion.centre_lps_mm,
            tuple(d + 4.0 for d in lesion.diameters_mm),  # type: ignore[arg-type]
            lesion.mean_hu,
        )
        shell = _ellipsoid_mask(fine.labels, grown) & ~_ellipsoid_mask(fine.labels, lesion)
        assert np.all(labels[shell] == PhantomLabel.LIVER)


def test_lesions_are_hypodense(fine: Phantom) -> None:
    ct = fine.ct.voxels
    for lesion in fine.lesions:
        core = LesionTruth(
            lesion.id,
            lesion.centre_lps_mm,
            tuple(d * 0.6 for d in lesion.diameters_mm),  # type: ignore[arg-type]
            lesion.mean_hu,
        )
        # The core avoids the blurred rim, where liver values mix in.
        values = ct[_ellipsoid_mask(fine.ct, core)]
        assert float(values.mean()) == pytest.approx(lesion.mean_hu, abs=3.0)


def test_volume_ml_is_the_ellipsoid_formula() -> None:
    lesion = LesionTruth(1, (0.0, 0.0, 0.0), (20.0, 20.0, 20.0), 25.0)
    assert lesion.volume_ml == pytest.approx(4.0 / 3.0 * np.pi * 10.0**3 / 1000.0)


@pytest.mark.parametrize("bad", [{"matrix": 1}, {"slices": 0}, {"pixel_spacing": 0.0}])
def test_rejects_impossible_grids(bad: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        make_abdomen_phantom(**{**COARSE, **bad})  # type: ignore[arg-type]
