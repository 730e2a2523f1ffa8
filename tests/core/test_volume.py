"""Volume geometry: reference values for index<->world and the display planes."""

import numpy as np
import pytest

from radview.core.volume import ViewPlane, Volume


def _rotation_z(degrees: float) -> np.ndarray:
    a = np.radians(degrees)
    return np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])


def test_index_to_world_reference_values():
    volume = Volume(np.zeros((4, 3, 2), np.int16), spacing=(0.5, 0.7, 2.5),
                    origin=(-100.0, 50.0, 10.0))
    # voxel (i=1, j=2, k=3): x = -100 + 0.5, y = 50 + 1.4, z = 10 + 7.5
    np.testing.assert_allclose(volume.index_to_world((1, 2, 3)), [-99.5, 51.4, 17.5])
    np.testing.assert_allclose(volume.world_to_index([-99.5, 51.4, 17.5]), [1, 2, 3])


def test_index_world_round_trip_oblique():
    direction = _rotation_z(30) @ np.diag([1, -1, -1])  # det +1, oblique, flipped j and k
    volume = Volume(np.zeros((5, 6, 7), np.int16), spacing=(0.8, 0.9, 3.0),
                    origin=(1.0, 2.0, 3.0), direction=direction)
    points = np.array([[0, 0, 0], [6, 5, 4], [2.5, 1.25, 3.75]])
    world = volume.index_to_world(points)
    np.testing.assert_allclose(volume.world_to_index(world), points, atol=1e-9)
    # The affine does the same thing.
    homogeneous = np.c_[points, np.ones(3)] @ volume.affine.T
    np.testing.assert_allclose(homogeneous[:, :3], world)


def test_rejects_float64_and_bad_geometry():
    with pytest.raises(TypeError):
        Volume(np.zeros((2, 2, 2), np.float64))
    with pytest.raises(ValueError, match="spacing"):
        Volume(np.zeros((2, 2, 2), np.int16), spacing=(1, 0, 1))
    with pytest.raises(ValueError, match="orthonormal"):
        Volume(np.zeros((2, 2, 2), np.int16), direction=[[1, 0.5, 0], [0, 1, 0], [0, 0, 1]])
    with pytest.raises(ValueError, match="3D"):
        Volume(np.zeros((2, 2), np.int16))


def _labelled_axes_volume(direction=None):
    """Voxels encode their own index: value = 100*k + 10*j + i."""
    direction = np.eye(3) if direction is None else direction
    k, j, i = np.meshgrid(np.arange(4), np.arange(3), np.arange(5), indexing="ij")
    voxels = (100 * k + 10 * j + i).astype(np.int16)
    return Volume(voxels, spacing=(1.0, 2.0, 3.0), direction=direction)


def test_axial_plane_is_radiological():
    volume = _labelled_axes_volume()
    image = volume.plane_slice(ViewPlane.AXIAL, 2)
    # identity LPS: columns go patient right -> left (screen left = R), rows anterior -> posterior
    assert image.shape == (3, 5)
    assert image[0, 0] == 200 and image[0, 4] == 204 and image[2, 0] == 220
    g = volume.plane_geometry(ViewPlane.AXIAL)
    assert g.edge_letters == ("A", "P", "R", "L")
    assert g.pixel_spacing == (2.0, 1.0)


def test_coronal_plane_has_head_at_top():
    volume = _labelled_axes_volume()
    image = volume.plane_slice(ViewPlane.CORONAL, 1)  # j = 1
    assert image.shape == (4, 5)
    # top row is the most superior slice (k = 3), left column patient right (i = 0)
    assert image[0, 0] == 310 and image[-1, 0] == 10
    g = volume.plane_geometry(ViewPlane.CORONAL)
    assert g.edge_letters == ("S", "I", "R", "L")
    assert g.pixel_spacing == (3.0, 1.0)  # anisotropic: rows are 3 mm apart


def test_sagittal_plane_has_anterior_left():
    volume = _labelled_axes_volume()
    image = volume.plane_slice(ViewPlane.SAGITTAL, 4)  # i = 4
    assert image.shape == (4, 3)
    assert image[0, 0] == 304 and image[0, 2] == 324  # anterior (j=0) left, posterior right
    assert volume.plane_geometry(ViewPlane.SAGITTAL).edge_letters == ("S", "I", "A", "P")


def test_planes_honour_flipped_direction():
    # Rows run posterior -> anterior and slices run superior -> inferior in the array.
    flipped = _labelled_axes_volume(direction=np.diag([1.0, -1.0, -1.0]))
    for plane in ViewPlane:
        for index in range(flipped.plane_geometry(plane).slice_count):
            world = flipped.world_of_plane_pixel(plane, index, 0, 0)
            assert flipped.plane_index_of_world(plane, world) == index
    axial = flipped.plane_slice(ViewPlane.AXIAL, 0)
    # slice 0 is the most inferior: array k = 3 (z = -9 mm); top row anterior: array j = 2
    assert axial[0, 0] == 320


def test_plane_pixel_world_positions_follow_letters():
    direction = np.diag([-1.0, 1.0, -1.0])  # i runs to patient right, k downwards
    volume = _labelled_axes_volume(direction=direction)
    for plane in ViewPlane:
        g = volume.plane_geometry(plane)
        n_rows, n_cols = volume.plane_slice(plane, 0).shape
        top_left = volume.world_of_plane_pixel(plane, 0, 0, 0)
        bottom_right = volume.world_of_plane_pixel(plane, 0, n_rows - 1, n_cols - 1)
        delta = bottom_right - top_left
        # right edge letter L means +x grows to the right; P means +y; S at top means -z down
        letter_axis = {"L": (0, 1), "R": (0, -1), "P": (1, 1), "A": (1, -1),
                       "S": (2, 1), "I": (2, -1)}
        axis, sign = letter_axis[g.edge_letters[3]]
        assert np.sign(delta[axis]) == sign or n_cols == 1
        axis, sign = letter_axis[g.edge_letters[1]]
        assert np.sign(delta[axis]) == sign or n_rows == 1


def test_plane_slice_is_a_view_and_cuts_label_maps():
    volume = _labelled_axes_volume()
    image = volume.plane_slice(ViewPlane.CORONAL, 0)
    assert np.shares_memory(image, volume.voxels)
    labels = (volume.voxels % 2).astype(np.uint8)
    np.testing.assert_array_equal(volume.plane_slice(ViewPlane.CORONAL, 0, labels), image % 2)
    with pytest.raises(IndexError):
        volume.plane_slice(ViewPlane.AXIAL, 4)


def test_oblique_45_degrees_maps_each_axis_once():
    volume = Volume(np.zeros((3, 4, 5), np.int16), direction=_rotation_z(45))
    mapping = volume.index_axis_to_patient_axis()
    assert sorted(p for p, _ in mapping) == [0, 1, 2]
    shapes = {p: volume.plane_slice(p, 0).shape for p in ViewPlane}
    assert shapes[ViewPlane.AXIAL] in ((4, 5), (5, 4))


def test_auto_window_ignores_nan_and_inf():
    from radview.core.windowing import auto_window

    voxels = np.linspace(0, 100, 1000, dtype=np.float32).reshape(10, 10, 10)
    voxels[0, 0, :3] = [np.nan, np.inf, -np.inf]
    window = auto_window(Volume(voxels))
    assert np.isfinite(window.width) and 90 < window.width < 100
    assert auto_window(Volume(np.full((2, 2, 2), np.nan, np.float32))).width == 1.0


def test_window_to_uint8_maps_nan_to_black_without_warnings():
    from radview.core.windowing import WindowLevel, window_to_uint8

    image = np.array([[np.nan, np.inf, -np.inf, 40.0]], np.float32)
    np.testing.assert_array_equal(window_to_uint8(image, WindowLevel(80, 40)),
                                  [[0, 255, 0, 127]])
