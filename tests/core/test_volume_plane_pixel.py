"""Volume.plane_pixel_of_world: the inverse of world_of_plane_pixel, on every plane."""

import numpy as np
import pytest

from radview.core.volume import ViewPlane, Volume


def _rotation_z(degrees: float) -> np.ndarray:
    a = np.radians(degrees)
    return np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])


DIRECTIONS = {
    "identity": np.eye(3),
    "flipped j and k": np.diag([1.0, -1.0, -1.0]),
    "i to the right, k down": np.diag([-1.0, 1.0, -1.0]),
    "oblique 30 degrees": _rotation_z(30) @ np.diag([1.0, -1.0, -1.0]),
    "coronal acquisition": np.array([[1.0, 0, 0], [0, 0, -1.0], [0, 1.0, 0]]),
}


@pytest.mark.parametrize("direction", DIRECTIONS.values(), ids=DIRECTIONS.keys())
@pytest.mark.parametrize("plane", list(ViewPlane), ids=lambda p: p.value)
def test_inverts_world_of_plane_pixel(direction: np.ndarray, plane: ViewPlane) -> None:
    volume = Volume(np.zeros((6, 7, 8), np.int16), spacing=(0.7, 0.9, 2.5),
                    origin=(-12.0, 30.0, 4.0), direction=direction)
    g = volume.plane_geometry(plane)
    rows, cols = volume.plane_slice(plane, 0).shape
    for index in (0, g.slice_count - 1):
        for row, col in ((0.0, 0.0), (rows - 1, cols - 1), (2.25, 1.75), (-0.5, cols - 0.5)):
            world = volume.world_of_plane_pixel(plane, index, row, col)
            np.testing.assert_allclose(
                volume.plane_pixel_of_world(plane, world), (index, row, col), atol=1e-9
            )


def test_reference_values_axial_and_coronal() -> None:
    # identity geometry: axial row = j, col = i; coronal row counts down from the top slice
    volume = Volume(np.zeros((10, 20, 30), np.int16), spacing=(0.5, 0.7, 2.5),
                    origin=(-100.0, 50.0, 10.0))
    world = volume.index_to_world((4, 6, 3))  # i, j, k
    assert volume.plane_pixel_of_world(ViewPlane.AXIAL, world) == pytest.approx((3, 6, 4))
    assert volume.plane_pixel_of_world(ViewPlane.CORONAL, world) == pytest.approx((6, 6, 4))
    assert volume.plane_pixel_of_world(ViewPlane.SAGITTAL, world) == pytest.approx((4, 6, 6))


def test_between_slices_and_outside_is_not_rounded_or_clamped() -> None:
    volume = Volume(np.zeros((4, 5, 6), np.int16), spacing=(1.0, 1.0, 2.0))
    index, row, col = volume.plane_pixel_of_world(ViewPlane.AXIAL, (-3.0, 1.5, 3.0))
    assert (index, row, col) == pytest.approx((1.5, 1.5, -3.0))
    assert volume.plane_index_of_world(ViewPlane.AXIAL, (-3.0, 1.5, 3.0)) == 2  # this one rounds
