"""Lesion measurements on the sample study, read back from its files, against its truth.

The CT comes from the written DICOM series (discover + load_stack) and the labels from
``truth/labels.nii.gz``, so the measurement runs on the geometry the readers produce. The truth
lesions are axis-aligned ellipsoids (``lesions.json``); the grid is coarse (128 x 128 x 40:
3.12 mm pixels, 5 mm slices), so volumes are compared within 15 % and lengths within 1.5 voxel
spacings along the measured axis.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from radview.core.labelmap import LiverLabel
from radview.core.lesions import LiverFindings, Lobe, measure_liver, to_json
from radview.core.volume import Volume
from radview.io.dicom_load import load_stack
from radview.io.discover import discover
from radview.io.sample_study import write_sample_study
from radview.io.volume_files import read_volume_file

VOLUME_REL_TOLERANCE = 0.15
LENGTH_TOLERANCE_VOXELS = 1.5
HU_TOLERANCE = 15.0  # the phantom's in-plane blur mixes liver (~60 HU) into the lesion edge


@pytest.fixture(scope="module", params=[0, 3], ids=["seed0", "seed3"])
def measured(request, tmp_path_factory) -> tuple[Volume, Volume, dict, LiverFindings]:
    paths = write_sample_study(
        tmp_path_factory.mktemp("sample"), matrix=128, slices=40, seed=request.param
    )
    labels = read_volume_file(paths.labels_nifti)
    found = discover([paths.dicom_dir])
    assert len(found.stacks) == 1
    ct = load_stack(found.stacks[0]).volume
    truth = json.loads(Path(paths.lesions_json).read_text())
    return labels, ct, truth, measure_liver(labels, ct)


def _matched(findings: LiverFindings, truth: dict):
    """(truth record, lesion) pairs, matched by nearest centroid; the match is one-to-one."""
    pairs = []
    for record in truth["lesions"]:
        centre = np.asarray(record["centre_lps_mm"])
        lesion = min(
            findings.lesions, key=lambda found: np.linalg.norm(found.centroid_lps - centre)
        )
        pairs.append((record, lesion))
    assert len({lesion.id for _, lesion in pairs}) == len(pairs)
    return pairs


def test_every_truth_lesion_is_found_once(measured) -> None:
    _, ct, truth, findings = measured
    assert len(findings.lesions) == len(truth["lesions"]) >= 2
    for record, lesion in _matched(findings, truth):
        distance = np.linalg.norm(np.subtract(lesion.centroid_lps, record["centre_lps_mm"]))
        assert distance < max(ct.spacing[:2])
        assert lesion.in_liver
        assert lesion.lobe in (Lobe.RIGHT, Lobe.LEFT)
    assert findings.warnings == ()


def test_volumes_match_the_ellipsoids(measured) -> None:
    _, _, truth, findings = measured
    for record, lesion in _matched(findings, truth):
        assert lesion.volume.value == pytest.approx(record["volume_ml"], rel=VOLUME_REL_TOLERANCE)


def test_diameters_match_the_ellipsoids(measured) -> None:
    _, ct, truth, findings = measured
    sx, sy, sz = ct.spacing
    for record, lesion in _matched(findings, truth):
        dx, dy, dz = record["diameters_mm"]
        # the longest axis' spacing: x/y in-plane, z between slices
        spacing_of_longest = (sx, sy, sz)[int(np.argmax([dx, dy, dz]))]
        assert abs(lesion.max_diameter.value - max(dx, dy, dz)) <= (
            LENGTH_TOLERANCE_VOXELS * spacing_of_longest
        )
        # RECIST on axial slices: the largest axial section is the x-y ellipse
        in_plane = LENGTH_TOLERANCE_VOXELS * max(sx, sy)
        assert abs(lesion.long_axis.value - max(dx, dy)) <= in_plane
        assert abs(lesion.short_axis.value - min(dx, dy)) <= in_plane


def test_intensity_and_totals(measured) -> None:
    labels, ct, truth, findings = measured
    tumour = labels.voxels == LiverLabel.TUMOUR
    liver_or_tumour = np.isin(labels.voxels, (LiverLabel.LIVER, LiverLabel.TUMOUR))
    voxel_ml = ct.voxel_volume_mm3 / 1000
    assert findings.liver_volume.value == pytest.approx(liver_or_tumour.sum() * voxel_ml)
    assert findings.total_tumour_volume.value == pytest.approx(tumour.sum() * voxel_ml)
    assert findings.tumour_burden.value == pytest.approx(
        100 * findings.total_tumour_volume.value / findings.liver_volume.value
    )
    for record, lesion in _matched(findings, truth):
        assert abs(lesion.mean.value - record["mean_hu"]) <= HU_TOLERANCE
        assert lesion.mean.unit == "HU"
    all_values = ct.voxels[tumour].astype(np.float64)
    weighted = sum(lesion.mean.value * lesion.voxel_count for lesion in findings.lesions)
    assert weighted / tumour.sum() == pytest.approx(all_values.mean())


def test_json_of_the_sample(measured) -> None:
    *_, findings = measured
    document = to_json(findings)
    assert json.loads(json.dumps(document)) == document
    assert [record["id"] for record in document["lesions"]] == list(
        range(1, len(findings.lesions) + 1)
    )
