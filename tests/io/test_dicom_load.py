"""DICOM series: sorting, splitting, geometry, decoding, and agreement with SimpleITK."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    RLELossless,
)

from radview.core.volume import ViewPlane
from radview.io.dicom_load import load_stack
from radview.io.discover import discover

from .conftest import make_ct_volume, write_series


def load_only_stack(folder):
    found = discover([folder])
    assert len(found.stacks) == 1, [s.part for s in found.stacks]
    return load_stack(found.stacks[0]).volume, found


def assert_same_geometry(volume, expected, atol=1e-4):
    np.testing.assert_allclose(volume.spacing, expected.spacing, atol=atol)
    np.testing.assert_allclose(volume.origin, expected.origin, atol=atol)
    np.testing.assert_allclose(volume.direction, expected.direction, atol=atol)


def test_round_trip_geometry_and_hu(ct_series):
    expected, _files = ct_series
    volume, found = load_only_stack(_files[0].parent)
    assert found.problems == []
    assert volume.voxels.dtype == np.int16
    np.testing.assert_array_equal(volume.voxels, expected.voxels)
    assert_same_geometry(volume, expected)
    assert volume.rescale.unit == "HU"
    assert volume.warnings == ()


def test_sorts_by_position_not_instance_number_or_name(tmp_path):
    expected = make_ct_volume()
    files = write_series(expected, tmp_path / "s")
    # Scramble file names and instance numbers: only the positions tell the true order.
    rng = np.random.default_rng(1)
    order = rng.permutation(len(files))
    for new_index, old in enumerate(order):
        ds = pydicom.dcmread(files[old])
        ds.InstanceNumber = int(rng.integers(1, 1000))
        ds.save_as(tmp_path / "s" / f"tmp{new_index:03d}", enforce_file_format=True)
        os.remove(files[old])
    volume, _ = load_only_stack(tmp_path / "s")
    np.testing.assert_array_equal(volume.voxels, expected.voxels)


def test_oblique_flipped_series_matches_simpleitk(tmp_path):
    a = np.radians(20)
    direction = np.array([[np.cos(a), 0, np.sin(a)], [0, -1, 0], [np.sin(a), 0, -np.cos(a)]])
    expected = make_ct_volume(direction=direction)
    write_series(expected, tmp_path / "obl")
    volume, _ = load_only_stack(tmp_path / "obl")
    assert_same_geometry(volume, expected)
    np.testing.assert_array_equal(volume.voxels, expected.voxels)

    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(tmp_path / "obl")))
    itk = reader.Execute()
    np.testing.assert_allclose(itk.GetOrigin(), volume.origin, atol=1e-3)
    np.testing.assert_allclose(itk.GetSpacing(), volume.spacing, atol=1e-3)
    np.testing.assert_allclose(np.reshape(itk.GetDirection(), (3, 3)), volume.direction,
                               atol=1e-4)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(itk), volume.voxels)


@pytest.mark.parametrize("syntax", [ImplicitVRLittleEndian, ExplicitVRBigEndian,
                                    DeflatedExplicitVRLittleEndian, RLELossless,
                                    JPEG2000Lossless])
def test_transfer_syntaxes_decode_identically(tmp_path, syntax):
    expected = make_ct_volume(shape=(4, 64, 48))  # J2K needs room for its resolutions
    write_series(expected, tmp_path / "ts", transfer_syntax=syntax)
    volume, found = load_only_stack(tmp_path / "ts")
    assert found.problems == []
    np.testing.assert_array_equal(volume.voxels, expected.voxels)


def test_uint16_storage_with_negative_intercept_gives_int16_hu(tmp_path):
    expected = make_ct_volume()
    write_series(expected, tmp_path / "u", stored_dtype=np.uint16, rescale_intercept=-1024)
    volume, _ = load_only_stack(tmp_path / "u")
    assert volume.voxels.dtype == np.int16
    np.testing.assert_array_equal(volume.voxels, expected.voxels)


def test_fractional_slope_gives_float32(tmp_path):
    expected = make_ct_volume()
    files = write_series(expected, tmp_path / "f")
    for path in files:
        ds = pydicom.dcmread(path)
        ds.RescaleSlope = "0.5"
        ds.save_as(path)
    volume, _ = load_only_stack(tmp_path / "f")
    assert volume.voxels.dtype == np.float32
    stored = expected.voxels.astype(np.float32) + 1024
    np.testing.assert_allclose(volume.voxels, stored * 0.5 - 1024)


def test_first_slice_arrives_before_the_last_and_progress_is_reported(ct_series):
    _, files = ct_series
    found = discover([files[0].parent])
    seen, progress = [], []
    load_stack(found.stacks[0], on_slice=lambda i, image: seen.append((i, image.copy())),
               progress=lambda done, total: progress.append((done, total)))
    assert sorted(i for i, _ in seen) == list(range(len(files)))
    first_index, first_image = seen[0]
    assert first_image.shape == (24, 20)
    assert progress[-1] == (len(files), len(files))


def test_provisional_volume_is_the_array_being_filled(ct_series):
    expected, files = ct_series
    found = discover([files[0].parent])
    provisional = []
    result = load_stack(found.stacks[0], on_start=provisional.append)
    (early,) = provisional
    assert early.voxels is result.volume.voxels
    assert early.spacing == result.volume.spacing
    np.testing.assert_array_equal(early.voxels, expected.voxels)


def test_cancel_stops_loading(ct_series):
    from radview.core.errors import LoadCancelled

    _, files = ct_series
    found = discover([files[0].parent])
    with pytest.raises(LoadCancelled):
        load_stack(found.stacks[0], cancel=lambda: True)


def test_mixed_orientation_and_matrix_split_into_stacks(tmp_path):
    axial = make_ct_volume(shape=(6, 16, 16))
    coronal = make_ct_volume(shape=(5, 16, 16),
                             direction=np.array([[1, 0, 0], [0, 0, 1], [0, -1, 0]]))
    small = make_ct_volume(shape=(3, 8, 8), origin=(0, 0, 100))
    write_series(axial, tmp_path / "mix", series_uid="1.2.3.4.5", study_uid="1.2.3.4",
                 uid_seed="a",
                 file_name_pattern="A{index:03d}.dcm")
    write_series(coronal, tmp_path / "mix", series_uid="1.2.3.4.5", study_uid="1.2.3.4",
                 uid_seed="b",
                 file_name_pattern="C{index:03d}.dcm")
    write_series(small, tmp_path / "mix", series_uid="1.2.3.4.5", study_uid="1.2.3.4",
                 uid_seed="c",
                 file_name_pattern="S{index:03d}.dcm")
    found = discover([tmp_path / "mix"])
    parts = sorted((s.part, len(s.slots)) for s in found.stacks)
    assert len(parts) == 3
    assert {n for _, n in parts} == {6, 5, 3}
    assert all(part for part, _ in parts)  # each stack says how it differs
    for stack in found.stacks:
        assert stack.series_uid == "1.2.3.4.5"
        load_stack(stack)


def test_series_spread_over_folders_and_two_series_in_one(tmp_path):
    first = make_ct_volume(shape=(8, 10, 10))
    second = make_ct_volume(shape=(4, 10, 10), seed=3)
    files = write_series(first, tmp_path / "study" / "a", series_uid="1.2.826.0.1.1")
    for path in files[4:]:
        (tmp_path / "study" / "b").mkdir(exist_ok=True)
        shutil.move(path, tmp_path / "study" / "b" / path.name)
    write_series(second, tmp_path / "study" / "a", series_uid="1.2.826.0.1.2",
                 file_name_pattern="X{index:03d}.dcm")
    found = discover([tmp_path / "study"])
    by_uid = {s.series_uid: s for s in found.stacks}
    assert set(by_uid) == {"1.2.826.0.1.1", "1.2.826.0.1.2"}
    np.testing.assert_array_equal(load_stack(by_uid["1.2.826.0.1.1"]).volume.voxels,
                                  first.voxels)


def test_acquisitions_at_same_positions_split_only_when_needed(tmp_path):
    volume = make_ct_volume(shape=(5, 8, 8))
    write_series(volume, tmp_path / "acq", series_uid="1.2.3.9", study_uid="1.2.3", uid_seed="1",
                 extra_attributes={"AcquisitionNumber": 1}, file_name_pattern="A{index}.dcm")
    write_series(volume, tmp_path / "acq", series_uid="1.2.3.9", study_uid="1.2.3", uid_seed="2",
                 extra_attributes={"AcquisitionNumber": 2}, file_name_pattern="B{index}.dcm")
    found = discover([tmp_path / "acq"])
    assert sorted(s.part for s in found.stacks) == ["acq 1", "acq 2"]

    # Every slice with its own acquisition number (some scanners do this): one stack.
    files = write_series(volume, tmp_path / "each", series_uid="1.2.3.10")
    for n, path in enumerate(files):
        ds = pydicom.dcmread(path)
        ds.AcquisitionNumber = n + 1
        ds.save_as(path)
    found = discover([tmp_path / "each"])
    assert len(found.stacks) == 1 and found.stacks[0].part == ""


def test_localizer_is_its_own_stack(tmp_path):
    volume = make_ct_volume(shape=(6, 12, 12))
    write_series(volume, tmp_path / "loc", series_uid="1.2.3.11", study_uid="1.2.3")
    scout = make_ct_volume(shape=(1, 12, 12), direction=np.array([[1, 0, 0], [0, 0, 1],
                                                                   [0, -1, 0]]))
    write_series(scout, tmp_path / "loc", series_uid="1.2.3.11", study_uid="1.2.3",
                 uid_seed="scout", file_name_pattern="LOC{index}.dcm",
                 extra_attributes={"ImageType": ["ORIGINAL", "PRIMARY", "LOCALIZER"]})
    found = discover([tmp_path / "loc"])
    parts = sorted((s.part, len(s.slots)) for s in found.stacks)
    assert len(parts) == 2
    assert "localizer" in parts[1][0] and parts[1][1] == 1, parts
    assert "localizer" not in parts[0][0] and parts[0][1] == 6, parts


def test_coronal_display_of_loaded_series_uses_mm_aspect(ct_series):
    _, files = ct_series
    volume, _ = load_only_stack(files[0].parent)
    g = volume.plane_geometry(ViewPlane.CORONAL)
    assert g.pixel_spacing == pytest.approx((2.5, 0.8))
    assert g.edge_letters == ("S", "I", "R", "L")


def test_monochrome1_keeps_values_and_asks_for_inverted_display(tmp_path):
    from radview.core.viewer_state import ViewerState

    expected = make_ct_volume(shape=(3, 8, 8))
    files = write_series(expected, tmp_path / "m1")
    for path in files:
        ds = pydicom.dcmread(path)
        ds.PhotometricInterpretation = "MONOCHROME1"
        ds.save_as(path)
    volume, _ = load_only_stack(tmp_path / "m1")
    np.testing.assert_array_equal(volume.voxels, expected.voxels)  # HU stay true
    assert volume.display_inverted
    state = ViewerState()
    state.show_volume(volume)
    assert state.invert is True


def test_borrowed_decoder_pool_is_reused_and_survives(tmp_path):
    from radview.io.decoder_pool import DecoderPool

    expected = make_ct_volume(shape=(20, 64, 64))
    write_series(expected, tmp_path / "j", transfer_syntax=JPEG2000Lossless)
    stack = discover([tmp_path / "j"]).stacks[0]
    pool = DecoderPool(workers=2)
    try:
        first = load_stack(stack, codec_pool=pool, workers=2).volume
        executor = pool.executor()
        second = load_stack(stack, codec_pool=pool, workers=2).volume
        assert pool.executor() is executor  # the same worker processes served both loads
        np.testing.assert_array_equal(first.voxels, expected.voxels)
        np.testing.assert_array_equal(second.voxels, expected.voxels)
    finally:
        pool.shutdown()


def test_a_crashing_codec_blanks_only_its_own_file(tmp_path):
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    from tests.io.crash_helper import install_crash

    class CrashingPool:  # a DecoderPool whose workers crash on one file
        def __init__(self):
            self._pool = None

        def executor(self):
            if self._pool is None or getattr(self._pool, "_broken", False):
                self._pool = ProcessPoolExecutor(
                    2, mp_context=multiprocessing.get_context("spawn"),
                    initializer=install_crash, initargs=("IM0004.dcm",))
            return self._pool

        def shutdown(self):
            self._pool.shutdown()

    expected = make_ct_volume(shape=(40, 32, 32))
    files = write_series(expected, tmp_path / "j", transfer_syntax=RLELossless)
    pool = CrashingPool()
    try:
        result = load_stack(discover([tmp_path / "j"]).stacks[0], codec_pool=pool, workers=2)
    finally:
        pool.shutdown()
    assert [(Path(p.path).name, p.reason) for p in result.problems] == [
        ("IM0004.dcm", "the decoder crashed on this file")]
    assert files[3].name == "IM0004.dcm"
    for k in range(40):
        if k != 3:
            np.testing.assert_array_equal(result.volume.voxels[k], expected.voxels[k])
    assert np.all(result.volume.voxels[3] == -1024)
