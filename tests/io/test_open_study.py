"""Opening what a user points at: the right series is chosen; label maps land on its grid."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from radview.core.errors import LabelMapError, NothingToOpenError
from radview.core.labelmap import LiverLabel
from radview.core.volume import Volume
from radview.io.convert import volume_to_nifti
from radview.io.open_study import load_label_map, open_images

from .conftest import make_ct_volume, write_series


def test_largest_non_localizer_series_is_opened(tmp_path):
    small = make_ct_volume(shape=(4, 16, 16), seed=1)
    big = make_ct_volume(shape=(9, 16, 16), seed=2)
    write_series(small, tmp_path / "a", series_uid="1.2.3.1")
    write_series(big, tmp_path / "b", series_uid="1.2.3.2")
    (tmp_path / "junk.txt").write_text("x")
    opened = open_images([tmp_path])
    np.testing.assert_array_equal(opened.volume.voxels, big.voxels)
    assert [s.series_uid for s in opened.other_stacks] == ["1.2.3.1"]
    assert [p.path for p in opened.problems] == [str(tmp_path / "junk.txt")]


def test_nothing_to_open_lists_reasons(tmp_path):
    (tmp_path / "a.txt").write_text("hello")
    with pytest.raises(NothingToOpenError, match="a.txt: not a DICOM file"):
        open_images([tmp_path])


def test_label_map_on_the_same_grid_gets_liver_names(tmp_path):
    image = make_ct_volume(shape=(6, 16, 16))
    labels = np.zeros(image.shape, np.uint8)
    labels[2:4, 4:10, 4:10] = 1
    labels[3, 6:8, 6:8] = 2
    nib.save(volume_to_nifti(image.with_voxels(labels)), tmp_path / "l.nii.gz")
    label_map = load_label_map(tmp_path / "l.nii.gz", image)
    np.testing.assert_array_equal(label_map.volume.voxels, labels)
    assert label_map.names == {1: "Liver", 2: "Tumour"}
    assert label_map.names[LiverLabel.TUMOUR] == "Tumour"


def test_label_map_on_another_grid_is_resampled(tmp_path):
    image = make_ct_volume(shape=(6, 16, 16), spacing=(1.0, 1.0, 2.0), origin=(0, 0, 0))
    coarse = np.zeros((3, 8, 8), np.uint8)
    coarse[1, 2:6, 2:6] = 1
    coarse_volume = Volume(coarse, spacing=(2.0, 2.0, 4.0), origin=(0.5, 0.5, 1.0))
    nib.save(volume_to_nifti(coarse_volume), tmp_path / "c.nii.gz")
    label_map = load_label_map(tmp_path / "c.nii.gz", image)
    assert label_map.volume.shape == image.shape
    # each coarse voxel covers 2x2x2 fine voxels
    assert int((label_map.volume.voxels == 1).sum()) == 16 * 8
    assert any("resampled" in w for w in label_map.volume.warnings)


def test_label_map_with_fractional_values_is_refused(tmp_path):
    image = make_ct_volume(shape=(4, 8, 8))
    values = np.full(image.shape, 0.5, np.float32)
    nib.save(volume_to_nifti(image.with_voxels(values)), tmp_path / "p.nii.gz")
    with pytest.raises(LabelMapError, match="p.nii.gz: holds fractional values"):
        load_label_map(tmp_path / "p.nii.gz", image)


def test_label_map_elsewhere_in_space_is_refused(tmp_path):
    image = make_ct_volume(shape=(4, 8, 8), origin=(0, 0, 0))
    far = Volume(np.ones((4, 8, 8), np.uint8), origin=(500.0, 500.0, 500.0))
    nib.save(volume_to_nifti(far), tmp_path / "far.nii.gz")
    with pytest.raises(LabelMapError, match="does not overlap"):
        load_label_map(tmp_path / "far.nii.gz", image)


def test_series_from_a_stale_index_is_read_again(tmp_path):
    import dataclasses

    import pydicom

    from radview.io.dicom_scan import read_instance_header
    from radview.io.open_study import open_series_headers

    first = make_ct_volume(shape=(4, 16, 16), seed=1)
    files = write_series(first, tmp_path / "s")
    indexed = [read_instance_header(p) for p in files]
    # Rewritten since indexing: a longer header moves the Pixel Data offset.
    for path in files:
        ds = pydicom.dcmread(path)
        ds.SeriesDescription = "a much longer description than before"
        ds.save_as(path)
    opened = open_series_headers(indexed)
    np.testing.assert_array_equal(opened.volume.voxels, first.voxels)
    assert dataclasses.replace(indexed[0]).pixel_data_offset != read_instance_header(
        files[0]).pixel_data_offset
