"""Enhanced (multi-frame) CT: geometry and rescale come from the per-frame functional groups."""

from __future__ import annotations

import copy

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from radview.io.dicom_load import load_stack
from radview.io.discover import discover


def _enhanced_ct(path, positions_z, intercepts, frames: np.ndarray) -> None:
    """An Enhanced CT file (from pydicom's real eCT_Supplemental.dcm) with our own frames."""
    ds = pydicom.dcmread(get_testdata_file("eCT_Supplemental.dcm"))
    n, rows, columns = frames.shape
    template = ds.PerFrameFunctionalGroupsSequence[0]
    shared = ds.SharedFunctionalGroupsSequence[0]
    del shared.PixelValueTransformationSequence  # per frame instead, to test that path
    items = []
    for z, intercept in zip(positions_z, intercepts, strict=True):
        item = copy.deepcopy(template)
        item.PlanePositionSequence[0].ImagePositionPatient = [99.5, -301.5, float(z)]
        transform = Dataset()
        transform.RescaleIntercept = str(intercept)
        transform.RescaleSlope = "1"
        transform.RescaleType = "HU"
        item.PixelValueTransformationSequence = Sequence([transform])
        items.append(item)
    ds.PerFrameFunctionalGroupsSequence = Sequence(items)
    ds.NumberOfFrames = n
    ds.Rows, ds.Columns = rows, columns
    ds.PixelData = frames.astype(np.uint16).tobytes()
    ds.save_as(path)


def test_frames_sorted_by_per_frame_position_with_per_frame_rescale(tmp_path):
    rng = np.random.default_rng(0)
    n = 6
    stored = rng.integers(0, 3000, size=(n, 32, 24)).astype(np.uint16)
    z = np.array([-150.0, -160.0, -140.0, -155.0, -145.0, -165.0])  # out of order on purpose
    intercepts = [-1024, -1024, -1000, -1024, -1024, -1024]
    _enhanced_ct(tmp_path / "ect.dcm", z, intercepts, stored)

    found = discover([tmp_path])
    assert found.problems == []
    (stack,) = found.stacks
    assert len(stack.instances) == 1 and len(stack.slots) == n
    volume = load_stack(stack).volume
    # IOP (-1,0,0, 0,1,0): the slice normal is row x column = (0, 0, -1), so slices are
    # sorted along -z: slice 0 is the most superior one.
    assert np.allclose(volume.direction[:, 2], [0, 0, -1])
    order = np.argsort(-z)
    expected = stored[order].astype(np.int32) + np.asarray(intercepts)[order][:, None, None]
    np.testing.assert_array_equal(volume.voxels, expected)
    assert volume.voxels.dtype == np.int16
    assert volume.spacing[2] == pytest.approx(5.0)
    assert volume.origin[2] == pytest.approx(-140.0)
