"""Which slices the training batches draw from."""

from __future__ import annotations

import numpy as np

from training.data import STAGES, CachedCase
from training.samplers import SliceSampler


def _case(name: str, stage: str, liver_slices: range, tumour_slices: range = range(0)):
    labels = np.zeros((10, 8, 8), np.uint8)
    for k in liver_slices:
        labels[k, 2:6, 2:6] = 1
    for k in tumour_slices:
        labels[k, 3:5, 3:5] = 2
    return CachedCase(name, np.zeros((10, 8, 8), np.int16), labels,
                      np.zeros((10, 4, 4), np.int16), labels[:, ::2, ::2], STAGES.index(stage))


CASES = [_case("mild", "Mild", range(2, 8), range(4, 6)), _case("end", "End-stage", range(3, 6))]


def test_end_stage_share_draws_end_stage_liver_slices():
    sampler = SliceSampler(CASES, channels=3)
    picks = sampler.draw(np.random.default_rng(0), 200, end_stage_share=1.0)
    assert set(picks) == {(1, 3), (1, 4), (1, 5)}
    mixed = sampler.draw(np.random.default_rng(0), 400, end_stage_share=0.25)
    share = np.mean([c == 1 and k in (3, 4, 5) for c, k in mixed])
    assert 0.25 < share < 0.5  # a quarter on purpose, plus the end-stage liver drawn otherwise


def test_without_the_share_the_draws_are_those_of_earlier_runs():
    # a run planned before end_stage_share existed must resume onto the same batches
    sampler = SliceSampler(CASES, channels=3)
    rng = np.random.default_rng(7)
    expected = []
    for _ in range(50):  # the original rule: one uniform for the pool, one integer for the slice
        u = rng.random()
        pool = "tumour" if u < 0.4 else "liver" if u < 0.8 else "any"
        expected.append(sampler.slices[pool][int(rng.integers(len(sampler.slices[pool])))])
    assert sampler.draw(np.random.default_rng(7), 50) == expected


def test_tumour_share_sets_the_segmentation_draws():
    from training.train import TrainConfig, segmentation_sampler

    default = segmentation_sampler(CASES, TrainConfig(model="liver-tumor-seg"))
    assert default.shares == (0.4, 0.4)  # the draws of the runs planned before the setting
    only_tumour = segmentation_sampler(CASES, TrainConfig(model="liver-tumor-seg",
                                                          tumour_share=1.0))
    assert set(only_tumour.draw(np.random.default_rng(1), 100)) == {(0, 4), (0, 5)}
    more = segmentation_sampler(CASES, TrainConfig(model="liver-tumor-seg", tumour_share=0.7))
    picks = more.draw(np.random.default_rng(2), 1000)
    assert 0.65 < np.mean([p in {(0, 4), (0, 5)} for p in picks]) < 0.8


def test_staging_sequences_carry_the_liver_mask_beside_the_slices():
    from training.samplers import SequenceSampler
    from training.train import TrainConfig, _staging_batch

    hu = np.arange(10 * 4 * 4, dtype=np.int16).reshape(10, 4, 4)
    cases = [CachedCase(c.name, c.slice_hu, c.slice_labels, hu, c.stage_labels, c.stage)
             for c in CASES]
    plain = SequenceSampler(cases, length=4).sequence(cases[0], None)
    masked = SequenceSampler(cases, length=4, liver_mask=True).sequence(cases[0], None)
    assert plain.shape == (4, 1, 4, 4) and masked.shape == (4, 2, 4, 4)
    np.testing.assert_array_equal(masked[:, 0], plain[:, 0])
    picks = [2, 4, 5, 7]  # spread over the liver's slices 2-7
    np.testing.assert_array_equal(masked[:, 0], hu[picks])
    np.testing.assert_array_equal(masked[:, 1], cases[0].stage_labels[picks] > 0)

    config = TrainConfig(model="liver-stage-cnnlstm", liver_mask=True, batch=3)
    sampler = SequenceSampler(cases, length=4, liver_mask=True)
    x, stages = _staging_batch(sampler, config, np.random.default_rng(0))
    assert tuple(x.shape) == (3, 4, 2, 4, 4) and stages.shape == (3,)
    assert float(x.min()) >= 0.0 and float(x.max()) <= 1.0
    # the mask stays a mask: mostly 0 or 1 (interpolated only at the edge)
    assert float(((x[:, :, 1] < 0.01) | (x[:, :, 1] > 0.99)).float().mean()) > 0.5
