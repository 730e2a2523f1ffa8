"""Lesion detection and its contrast breakdown, on scenes whose answers are known."""

from __future__ import annotations

import numpy as np

from training.metrics import LOW_CONTRAST_CNR, detect_lesions, lesion_contrast_to_noise


def _ball(shape, centre, radius):
    z, y, x = np.ogrid[:shape[0], :shape[1], :shape[2]]
    return (z - centre[0]) ** 2 + (y - centre[1]) ** 2 + (x - centre[2]) ** 2 <= radius ** 2


def _scene(contrast_hu: float, noise_hu: float = 10.0, seed: int = 0):
    """A 1 mm liver block with one 12 mm lesion ``contrast_hu`` below it, and noise."""
    shape = (40, 40, 40)
    liver = np.zeros(shape, bool)
    liver[2:38, 2:38, 2:38] = True
    lesion = _ball(shape, (20, 20, 20), 6)
    hu = np.where(liver, 60.0, -100.0) + np.random.default_rng(seed).normal(0, noise_hu, shape)
    hu[lesion] -= contrast_hu
    return hu, lesion, liver & ~lesion


def test_contrast_to_noise_separates_a_faint_lesion_from_a_clear_one():
    hu, lesion, liver = _scene(contrast_hu=5.0)
    faint = lesion_contrast_to_noise(hu, lesion, liver)
    hu, lesion, liver = _scene(contrast_hu=30.0)
    clear = lesion_contrast_to_noise(hu, lesion, liver)
    assert faint is not None and clear is not None
    assert 0.3 < faint < LOW_CONTRAST_CNR < 2.5 < clear < 3.5  # 0.5 and 3 noise SDs


def test_detection_counts_lesions_false_positives_and_the_low_contrast_share():
    hu, lesion, liver = _scene(contrast_hu=5.0)
    truth = lesion.copy()
    truth[5:8, 5:8, 5:8] = True  # a 3 mm lesion: not counted (< 10 mm), not a false positive
    predicted = np.zeros_like(truth)
    predicted[20, 20, 20] = True  # one voxel inside the 12 mm lesion detects it
    predicted[5, 5, 5] = True  # inside the small truth lesion
    predicted[30:32, 30:32, 30:32] = True  # in no truth lesion: a false positive
    found = detect_lesions(predicted, truth, (1.0, 1.0, 1.0), hu=hu, liver=liver)
    assert found == {"truth_lesions": 1, "detected": 1, "false_positives": 1,
                     "predicted_lesions": 3, "all_truth_lesions": 2,
                     "low_contrast_lesions": 1, "low_contrast_detected": 1}
    missed = detect_lesions(np.zeros_like(truth), truth, (1.0, 1.0, 1.0))
    assert missed["detected"] == 0 and "low_contrast_lesions" not in missed


def test_speck_threshold_rule_takes_the_fewest_false_positives_that_keep_the_lesions():
    from training.tune_postprocess import choose

    def row(volume, sensitivity, fps, tumour_dice=0.6):
        return {"min_tumour_mm3": volume, "sensitivity_10mm": sensitivity,
                "false_positives_per_scan": fps, "tumour_dice": tumour_dice}

    table = [row(0, 0.80, 3.0), row(100, 0.79, 2.0), row(150, 0.79, 1.5, 0.59),
             row(250, 0.70, 0.5)]
    # 250 loses lesions, 150 loses tumour Dice: 100 is the one the rule allows
    assert choose(table)["min_tumour_mm3"] == 100
    no_tumour = [row(0, 0.0, 1.0, None), row(100, 0.0, 0.0, None)]
    assert choose(no_tumour)["min_tumour_mm3"] == 100
