"""Fitting the lesion filter: the logistic regression separates what it can, the threshold rule
keeps the stated share of found lesions, and the filter survives the manifest round trip."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from radview.inference.lesion_filter import FEATURES
from radview.inference.manifest import parse_manifest
from training.export import with_lesion_filter
from training.lesion_filter import (
    KEEP_SHARE,
    ScanComponents,
    fit_result,
    operating_point,
    spec_from_result,
)

PROBABILITY = FEATURES.index("mean_probability")


def _scans(count: int = 60, seed: int = 0) -> list[ScanComponents]:
    """Scans with one true lesion (10 mm or more) and two false positives each; the true ones
    have a higher mean probability on average, with overlap."""
    rng = np.random.default_rng(seed)
    scans = []
    for i in range(count):
        features = rng.normal(0.0, 1.0, (3, len(FEATURES)))
        features[:, PROBABILITY] = [rng.normal(0.85, 0.07), *rng.normal(0.6, 0.1, 2)]
        scans.append(ScanComponents(
            f"scan{i}", features, np.array([True, False, False]), [[0], [], []],
            np.array([80, 0, 0]), np.array([100, 30, 30]), counted_lesions=1,
            truth_voxels=100))
    return scans


def test_fit_learns_the_separating_feature_and_the_rule_keeps_the_found_lesions():
    scans = _scans()
    result = fit_result(scans, "ab" * 32)
    spec = spec_from_result(result)
    weights = np.abs(spec.weights)
    assert np.argmax(weights) == PROBABILITY and spec.weights[PROBABILITY] > 0
    unfiltered, filtered = operating_point(scans, None), operating_point(scans, spec)
    assert unfiltered["false_positives_per_scan"] == 2.0 and unfiltered["sensitivity"] == 1.0
    assert filtered["detected"] >= KEEP_SHARE * unfiltered["detected"]
    assert filtered["false_positives_per_scan"] < 0.5  # most false positives go
    assert filtered["tumor_dice"] > unfiltered["tumor_dice"]  # 2*80/(160) vs 2*80/(220)
    # the rule's threshold is the highest that keeps the share: the next one up does not
    higher = [row for row in result["fit_table"] if row["threshold"] > spec.threshold]
    assert all(row["detected"] < KEEP_SHARE * unfiltered["detected"] for row in higher)
    # and on new scans of the same kind it does what it did on the fitting ones
    fresh = operating_point(_scans(seed=1), spec)
    assert fresh["sensitivity"] >= 0.9 and fresh["false_positives_per_scan"] < 0.6


def test_too_few_components_or_one_kind_fit_nothing():
    assert fit_result(_scans(count=5), "ab" * 32) is None  # 15 components
    only_true = [ScanComponents(s.name, s.features[:1], s.touches_truth[:1], s.lesions_touched[:1],
                                s.overlap_voxels[:1], s.size_voxels[:1], 1, 100)
                 for s in _scans()]
    assert fit_result(only_true, "ab" * 32) is None


def test_the_fitted_filter_round_trips_through_the_manifest():
    spec = spec_from_result(fit_result(_scans(), "ab" * 32))
    manifest = (Path(__file__).parents[2] / "src/radview/models_onnx/liver-tumor-seg/model.toml"
                ).read_text()
    text = with_lesion_filter(manifest, spec)
    parsed = parse_manifest(text, Path("/m/model.toml")).lesion_filter
    assert parsed == spec  # exactly: the app applies what was measured
    again = with_lesion_filter(text, spec)
    assert again == text  # replacing it keeps one table
    removed = parse_manifest(with_lesion_filter(text, None), Path("/m/model.toml"))
    assert removed.lesion_filter is None


@pytest.mark.parametrize("missing", [None, "features"])
def test_scan_components_json_round_trip(missing):
    scan = _scans(count=1)[0]
    if missing:
        scan.features[1, 3] = np.nan  # a shell with too little liver
    back = ScanComponents.from_json(scan.to_json())
    assert np.array_equal(back.features, scan.features, equal_nan=True)
    assert back.lesions_touched == scan.lesions_touched
    assert np.array_equal(back.touches_truth, scan.touches_truth)
