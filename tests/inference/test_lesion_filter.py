"""The lesion filter: component features measured on known shapes, the logistic decision, and
the filter running inside the segmentation pipeline from a manifest."""

from __future__ import annotations

import numpy as np
import pytest

from radview.core.labelmap import LiverLabel
from radview.inference.analyze import models_provenance
from radview.inference.lesion_filter import (
    FEATURES,
    LesionFilterSpec,
    component_features,
    filter_lesions,
    lesion_probabilities,
)
from radview.inference.pipeline import segment
from radview.inference.registry import default_user_dir, discover_models
from radview.inference.runtime import SessionCache
from tests.inference.tiny_models import TUMOUR_HU, install_band_model, phantom

SPACING = (0.8, 0.8, 2.0)  # x, y, z (mm)
LIVER_HU, LESION_HU, NOISE_SD = 100.0, 40.0, 10.0


def _grid(shape=(40, 120, 120)):
    nz, ny, nx = shape
    z, y, x = np.meshgrid(np.arange(nz) * SPACING[2], np.arange(ny) * SPACING[1],
                          np.arange(nx) * SPACING[0], indexing="ij", sparse=True)
    return z, y, x


def _scene():
    """A 64 mm liver cube in the middle of the grid with three tumour components: a 7 mm
    sphere deep inside (probability 0.8), a 7 mm sphere centred on the liver's right face
    (probability 0.4) and a thin 30 mm rod (probability 0.6); HU with noise."""
    z, y, x = _grid()
    labels = np.zeros((40, 120, 120), np.uint8)
    liver = (np.abs(x - 48) <= 32) & (np.abs(y - 48) <= 32) & (np.abs(z - 40) <= 32)
    labels[liver] = LiverLabel.LIVER
    deep = (x - 40) ** 2 + (y - 40) ** 2 + (z - 40) ** 2 <= 7 ** 2
    edge = ((x - 80) ** 2 + (y - 60) ** 2 + (z - 40) ** 2 <= 7 ** 2) & liver
    rod = (np.abs(y - 64) <= 0.4) & (np.abs(z - 56) <= 1.0) & (np.abs(x - 40) <= 15)
    rod = np.broadcast_to(rod, labels.shape)
    probability = np.zeros(labels.shape, np.uint8)
    for mask, p in ((deep, 204), (edge, 102), (rod, 153)):
        labels[mask] = LiverLabel.TUMOUR
        probability[mask] = p
    rng = np.random.default_rng(0)
    hu = np.where(labels == LiverLabel.LIVER, LIVER_HU, -100.0)
    hu[labels == LiverLabel.TUMOUR] = LESION_HU
    hu = (hu + rng.normal(0, NOISE_SD, labels.shape)).astype(np.float32)
    return labels, hu, probability, {"deep": deep, "edge": edge, "rod": rod}


def _row(components, features, mask):
    index = int(np.bincount(components[np.broadcast_to(mask, components.shape)]).argmax())
    return dict(zip(FEATURES, features[index - 1], strict=True))


def test_features_of_known_shapes():
    labels, hu, probability, masks = _scene()
    found = component_features(labels, hu, probability, SPACING)
    count, features = found.count, found.features
    components = np.zeros(labels.shape, np.int32)
    components[found.box] = found.labels
    assert count == 3 and features.shape == (3, len(FEATURES))
    for index in range(1, 4):  # centres of mass in the whole array's indices
        assert np.allclose(found.centres_zyx[index - 1], np.argwhere(components == index).mean(0))
    deep = _row(components, features, masks["deep"])
    assert np.exp(deep["log_volume_mm3"]) == pytest.approx(4 / 3 * np.pi * 7 ** 3, rel=0.15)
    assert deep["mean_probability"] == pytest.approx(0.8) and deep["max_probability"] == 0.8
    assert deep["contrast_hu"] == pytest.approx(LESION_HU - LIVER_HU, abs=3)
    assert deep["shell_sd_hu"] == pytest.approx(NOISE_SD, rel=0.1)
    assert deep["contrast_to_noise"] == pytest.approx(6.0, rel=0.15)
    assert deep["roundness"] > 0.8
    assert deep["edge_fraction"] == 0.0
    edge = _row(components, features, masks["edge"])
    assert 0.3 < edge["edge_fraction"] < 0.7  # half of its surroundings lie outside the liver
    assert edge["mean_probability"] == pytest.approx(0.4)
    rod = _row(components, features, masks["rod"])
    assert rod["roundness"] < 0.15


def test_a_lesion_without_liver_around_it_has_no_contrast_and_counts_as_average():
    labels = np.zeros((10, 30, 30), np.uint8)
    labels[3:7, 10:20, 10:20] = LiverLabel.TUMOUR  # tumour alone: no liver shell
    hu = np.full(labels.shape, 50.0, np.float32)
    probability = np.full(labels.shape, 255, np.uint8)
    found = component_features(labels, hu, probability, SPACING)
    count, features = found.count, found.features
    assert count == 1
    names = list(FEATURES)
    for name in ("contrast_hu", "contrast_to_noise", "shell_sd_hu"):
        assert np.isnan(features[0, names.index(name)])
    weights = np.zeros(len(FEATURES))
    weights[names.index("contrast_hu")] = 5.0  # a large weight on the missing feature
    spec = LesionFilterSpec(tuple(np.full(len(FEATURES), -20.0)), tuple(np.ones(len(FEATURES))),
                            tuple(weights), 0.0, 0.5)
    assert lesion_probabilities(features, spec)[0] == pytest.approx(0.5)  # its mean: neutral


def _probability_spec(threshold: float) -> LesionFilterSpec:
    """P(lesion) = sigmoid(10 (mean probability - 0.5))."""
    weights = np.zeros(len(FEATURES))
    weights[FEATURES.index("mean_probability")] = 10.0
    return LesionFilterSpec(tuple(np.zeros(len(FEATURES))), tuple(np.ones(len(FEATURES))),
                            tuple(weights), -5.0, threshold)


def test_filter_turns_unlikely_components_into_liver_in_place():
    labels, hu, probability, masks = _scene()
    before = labels.copy()
    [removed] = filter_lesions(labels, hu, probability, SPACING, _probability_spec(0.5))
    # the edge sphere (mean probability 0.4; P(lesion) = sigmoid(10 (0.4 - 0.5)))
    assert removed.lesion_probability == pytest.approx(1 / (1 + np.exp(1.0)))
    assert removed.volume_mm3 == pytest.approx(0.5 * 4 / 3 * np.pi * 7 ** 3, rel=0.2)
    z, y, x = removed.centre_zyx  # its centre of mass, in array indices (z, y, x)
    assert z * SPACING[2] == pytest.approx(40, abs=1) and y * SPACING[1] == pytest.approx(60, abs=1)
    assert 75 < x * SPACING[0] < 80  # the half inside the liver, left of the face at 80 mm
    assert np.all(labels[masks["edge"]] == LiverLabel.LIVER)
    assert np.all(labels[masks["deep"]] == LiverLabel.TUMOUR)
    assert np.all(labels[np.broadcast_to(masks["rod"], labels.shape)] == LiverLabel.TUMOUR)
    unchanged = ~masks["edge"]
    assert np.array_equal(labels[unchanged], before[unchanged])
    assert filter_lesions(labels, hu, probability, SPACING, _probability_spec(0.0)) == ()


def _two_tumour_phantom():
    """The band-model phantom (0.7 x 0.7 x 2.5 mm) with a 50 mm liver, its 9 mm tumour and a
    second, 5 mm one."""
    volume, truth = phantom((32, 110, 110), liver_half_mm=25.0, tumour_radius_mm=9.0)
    nz, ny, nx = volume.shape
    sx, sy, sz = volume.spacing
    z, y, x = np.meshgrid((np.arange(nz) - (nz - 1) / 2) * sz, (np.arange(ny) - (ny - 1) / 2) * sy,
                          (np.arange(nx) - (nx - 1) / 2) * sx, indexing="ij", sparse=True)
    small = (x + 15) ** 2 + (y + 12) ** 2 + z ** 2 <= 5.5 ** 2
    voxels = np.array(volume.voxels)
    voxels[small] = TUMOUR_HU
    truth[small] = LiverLabel.TUMOUR
    return volume.with_voxels(voxels), truth, small


def test_the_pipeline_applies_the_manifests_filter(tmp_path):
    # keep components over 1500 mm^3: the 9 mm sphere (3050 mm^3), not the 5.5 mm one (700)
    install_band_model(default_user_dir(), "tiny-filtered-seg",
                       lesion_filter_bias=-float(np.log(1500.0)))
    found = discover_models(entry_points=False)
    assert not found.invalid, found.invalid
    model = found.get("tiny-filtered-seg")
    assert model.manifest.lesion_filter is not None
    volume, truth, small = _two_tumour_phantom()
    sessions = SessionCache(threads=1)

    unfiltered = segment(volume, model, sessions, device="cpu", apply_lesion_filter=False,
                         keep_tumour_probability=True)
    assert np.mean(unfiltered.labels.voxels[small] == LiverLabel.TUMOUR) > 0.8
    probability = unfiltered.tumour_probability
    assert probability.shape == volume.shape and probability.dtype == np.uint8
    assert probability[truth == LiverLabel.TUMOUR].mean() > 127  # the tumour band wins there
    assert probability[truth == LiverLabel.LIVER].mean() < 100  # the band model: about 0.25

    assert unfiltered.lesions_set_aside is None  # no filter ran
    result = segment(volume, model, sessions, device="cpu")
    filtered = result.labels.voxels
    assert result.lesions_set_aside == 1
    [candidate] = result.set_aside  # where the small tumour was, for the user to look at
    centre = volume.index_to_world(np.argwhere(small).mean(axis=0)[::-1])
    assert np.allclose(candidate.position_lps, centre, atol=1.0)
    assert candidate.slice_index == round(np.argwhere(small).mean(axis=0)[0])
    assert candidate.volume_ml == pytest.approx(4 / 3 * np.pi * 5.5 ** 3 / 1000, rel=0.3)
    assert candidate.lesion_probability < 0.5
    provenance = models_provenance(model, result, None, None)[0]
    assert provenance["lesion_filter_threshold"] == 0.5 and provenance["lesions_set_aside"] == 1
    assert "lesions_set_aside" not in models_provenance(model, unfiltered, None, None)[0]
    assert filtered.shape == volume.shape
    assert np.all(filtered[small] == LiverLabel.LIVER)  # the small one became liver
    big = (truth == LiverLabel.TUMOUR) & ~small
    assert np.mean(filtered[big] == LiverLabel.TUMOUR) > 0.9  # the big one stays
    assert segment(volume, model, sessions, device="cpu").tumour_probability is None
