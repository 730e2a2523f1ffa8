"""segment(): manifest-driven preprocessing, batched inference with a tiny real ONNX model,
labels back on the source grid, post-processing, progress/cancel, modality check."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

pytest.importorskip("onnx")

from radview.core.errors import LoadCancelled
from radview.core.volume import Volume
from radview.inference.pipeline import (
    TUMOUR_MIN_VOLUME_MM3,
    labels_from_foreground,
    postprocess_liver,
    segment,
)
from radview.inference.registry import (
    ModalityMismatchError,
    default_user_dir,
    discover_models,
)
from radview.inference.runtime import SessionCache
from tests.inference.tiny_models import (
    FAT_HU,
    LIVER_HU,
    TUMOUR_HU,
    dice,
    install_band_model,
    phantom,
)


def registered(model_id: str = "tiny-liver-seg", **kwargs):
    """Install the band model in the (per-test) user models folder and discover it."""
    install_band_model(default_user_dir(), model_id, **kwargs)
    found = discover_models(entry_points=False)
    assert not found.invalid, found.invalid
    return found.get(model_id)


@pytest.fixture(scope="module")
def sessions() -> SessionCache:
    return SessionCache(threads=1)


def test_registry_finds_the_tiny_model_in_the_user_folder():
    model = registered()
    assert model.source.value == "user"
    assert model.manifest.task.value == "segmentation"
    assert model.manifest.input.channels == 3


@pytest.mark.parametrize("spacing", [(1.0, 1.0), (1.0, 1.0, 2.0)],
                         ids=["in-plane", "in-plane-and-through-plane"])
def test_labels_on_the_source_grid_match_the_analytic_truth(sessions, spacing):
    model = registered(spacing=spacing)
    volume, truth = phantom()  # 0.7 x 0.7 x 2.5 mm, 96 x 96 x 24
    result = segment(volume, model, sessions, device="cpu")
    labels = result.labels
    assert labels.voxels.dtype == np.uint8
    assert labels.shape == volume.shape
    assert labels.spacing == volume.spacing and labels.origin == volume.origin
    assert result.provider == "CPUExecutionProvider"
    assert result.fallback_reason is None and result.warnings == ()
    assert set(np.unique(labels.voxels)) == {0, 1, 2}
    assert dice(labels.voxels > 0, truth > 0) > 0.95
    assert dice(labels.voxels == 2, truth == 2) > 0.9
    assert dice(labels.voxels == 1, truth == 1) > 0.95


def test_label_edges_follow_the_anatomy_between_coarse_model_voxels(sessions):
    # A 3 mm model grid on a 0.7 mm series: resampling the labels by nearest neighbour put
    # every edge on the model's 3 mm staircase (liver Dice 0.94, tumour 0.87 here); the class
    # probabilities resampled linearly put it where they cross, within a source voxel or so.
    model = registered(spacing=(3.0, 3.0))
    volume, truth = phantom()
    labels = segment(volume, model, sessions, device="cpu").labels.voxels
    assert dice(labels > 0, truth > 0) > 0.955
    assert dice(labels == 2, truth == 2) > 0.9


def test_the_most_probable_class_wins_and_ties_go_to_background():
    # columns: (liver, tumour) probabilities on the 0-255 scale; background is the rest
    foreground = np.array([[102, 25, 30, 85], [115, 128, 60, 85]], np.uint8)
    np.testing.assert_array_equal(labels_from_foreground(foreground), [2, 2, 0, 0])
    # a tumour weight of 2 compares 2 x P(tumour): column 3 (tumour 60, background 165) stays
    # background, column 4 (liver 85, tumour 85 -> 170, background 85) becomes tumour
    np.testing.assert_array_equal(labels_from_foreground(foreground, np.array([1.0, 2.0])),
                                  [2, 2, 0, 2])


def test_a_tumour_weight_makes_larger_candidates(sessions):
    # a weight of 2 lets tumour win where its probability is at least half the liver's: the
    # partial-volume rim of the tumour (blurred edges), on the resampled grid and on the
    # source grid itself
    sharp, _ = phantom()
    volume = sharp.with_voxels(ndimage.gaussian_filter(sharp.voxels.astype(np.float32), 1.0))
    for spacing in ((1.0, 1.0), (0.7, 0.7, 2.5)):
        model = registered(spacing=spacing)
        plain = segment(volume, model, sessions, device="cpu").labels.voxels
        weighted = segment(volume, model, sessions, device="cpu", tumour_weight=2.0).labels.voxels
        assert np.all(weighted[plain == 2] == 2)
        assert np.count_nonzero(weighted == 2) > 1.1 * np.count_nonzero(plain == 2)


def test_same_spacing_is_exact_and_a_large_body_is_cropped_with_a_warning(sessions):
    model = registered(spacing=(0.7, 0.7), size=(48, 48))  # 34 mm field of view
    volume, truth = phantom(liver_half_mm=12.0, tumour_radius_mm=5.0)
    result = segment(volume, model, sessions, device="cpu")
    np.testing.assert_array_equal(result.labels.voxels, truth)
    assert any("larger than the model's field of view" in w for w in result.warnings)


def test_a_volume_smaller_than_the_model_input_is_padded(sessions):
    model = registered(spacing=(1.0, 1.0), size=(64, 64))
    volume, truth = phantom(shape=(10, 30, 26), spacing=(1.0, 1.0, 2.5), liver_half_mm=8.0,
                            tumour_radius_mm=4.4)
    assert (truth == 2).sum() * 2.5 > TUMOUR_MIN_VOLUME_MM3  # kept, not a speck
    result = segment(volume, model, sessions, device="cpu")
    np.testing.assert_array_equal(result.labels.voxels, truth)
    assert result.warnings == ()


def test_oblique_direction_and_fixed_batch_of_one_slice(sessions):
    model = registered(spacing=(1.0, 1.0))
    volume, truth = phantom()
    angle = np.deg2rad(20)
    direction = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0],
                          [0, 0, 1]])
    oblique = Volume(volume.voxels, spacing=volume.spacing, origin=volume.origin,
                     direction=direction, modality="CT")
    result = segment(oblique, model, sessions, device="cpu", batch_size=1)
    assert dice(result.labels.voxels > 0, truth > 0) > 0.95
    assert np.allclose(result.labels.direction, direction)


def test_nan_voxels_are_replaced_by_the_window_minimum_with_a_warning(sessions):
    model = registered()
    volume, truth = phantom()
    voxels = volume.voxels.astype(np.float32)
    voxels[:, :3, :] = np.nan  # an edge band of NaNs, as a broken NIfTI may hold
    voxels[5, 50, 50] = np.nan  # and one inside the liver (filled back by hole filling)
    result = segment(volume.with_voxels(voxels), model, sessions, device="cpu")
    assert len(result.warnings) == 1
    assert "NaN" in result.warnings[0] and "-200" in result.warnings[0]
    assert dice(result.labels.voxels > 0, truth > 0) > 0.95


def test_progress_reaches_the_total_and_cancel_stops_between_batches(sessions):
    model = registered()
    volume, _ = phantom()
    calls: list[tuple[int, int]] = []
    segment(volume, model, sessions, device="cpu", progress=lambda d, t: calls.append((d, t)),
            batch_size=4)
    assert calls and calls[-1][0] == calls[-1][1] == 24  # no through-plane resampling
    assert [d for d, _ in calls] == sorted(d for d, _ in calls)

    polls = []

    def cancel_after_two() -> bool:
        polls.append(1)
        return len(polls) > 2

    with pytest.raises(LoadCancelled):
        segment(volume, model, sessions, device="cpu", cancel=cancel_after_two, batch_size=4)
    assert len(polls) == 3


def test_post_processing_removes_blobs_outside_the_liver(sessions):
    model = registered()
    volume, truth = phantom(blobs=True)
    assert np.count_nonzero(volume.voxels == LIVER_HU) > np.count_nonzero(truth == 1)
    result = segment(volume, model, sessions, device="cpu")
    labels = result.labels.voxels
    # The blobs lie in the fat beside the liver: nothing is labelled there.
    blob_region = volume.voxels.copy()
    blob_region[truth > 0] = FAT_HU
    assert not np.any(labels[(blob_region == LIVER_HU) | (blob_region == TUMOUR_HU)])
    assert dice(labels > 0, truth > 0) > 0.95


def test_postprocess_liver_definitions():
    labels = np.zeros((5, 40, 40), np.uint8)
    labels[1:4, 5:25, 5:25] = 1  # the liver
    labels[2, 14, 14] = 0  # a hole (vessel) inside it
    labels[2, 10:13, 10:13] = 2  # a lesion inside it
    labels[1:4, 5:25, 25:30] = 2  # a lesion bulging 3.5 mm out of the liver's edge
    labels[2, 34:37, 34:37] = 1  # a small disconnected liver blob (removed)
    out = postprocess_liver(labels, (0.7, 0.7, 2.5), min_tumour_mm3=0)
    assert out[2, 14, 14] == 1  # hole filled as liver
    assert np.all(out[2, 10:13, 10:13] == 2)
    assert np.all(out[1:4, 5:25, 25:27] == 2)  # within 2 mm (0.7 and 1.4 mm): kept
    assert not np.any(out[1:4, 5:25, 27:30])  # 2.1 mm and farther: trimmed
    assert not np.any(out[2, 34:37, 34:37])
    assert np.all(out[1:4, 5:25, 5:25] > 0)
    assert postprocess_liver(np.zeros((3, 4, 4), np.uint8), (1, 1, 1)).sum() == 0


def test_tumour_specks_below_the_minimum_volume_become_liver():
    labels = np.zeros((5, 40, 40), np.uint8)
    labels[:, 5:35, 5:35] = 1
    labels[2, 10:12, 10:12] = 2  # 4 voxels x 1.225 mm^3 = 4.9 mm^3: a speck
    labels[1:4, 17:27, 17:27] = 2  # 300 voxels = 368 mm^3 (an 8.9 mm sphere's volume): kept
    out = postprocess_liver(labels, (0.7, 0.7, 2.5))
    assert 4.9 < TUMOUR_MIN_VOLUME_MM3 < 368
    assert np.all(out[2, 10:12, 10:12] == 1)
    assert np.all(out[1:4, 17:27, 17:27] == 2)
    kept = postprocess_liver(labels, (0.7, 0.7, 2.5), min_tumour_mm3=0)
    assert np.all(kept[2, 10:12, 10:12] == 2)


def test_no_liver_is_an_empty_result_not_an_error(sessions):
    model = registered()
    volume = Volume(np.full((6, 40, 40), FAT_HU, np.int16), spacing=(0.7, 0.7, 2.5),
                    modality="CT")
    result = segment(volume, model, sessions, device="cpu")
    assert not result.has_liver and not np.any(result.labels.voxels)


def test_a_series_of_another_modality_is_refused_unless_forced(sessions):
    model = registered()
    volume, _ = phantom(modality="MR")
    with pytest.raises(ModalityMismatchError, match="expects CT, the series is MR"):
        segment(volume, model, sessions, device="cpu")
    result = segment(volume, model, sessions, device="cpu", force=True)
    assert any("forced" in w for w in result.warnings)


def test_fast_hole_filling_matches_scipy():
    from scipy import ndimage

    from radview.inference.pipeline import _fill_holes, _fill_holes_per_slice

    rng = np.random.default_rng(3)
    for _ in range(5):
        mask = ndimage.binary_opening(rng.random((12, 30, 34)) > 0.45)
        np.testing.assert_array_equal(_fill_holes(mask), ndimage.binary_fill_holes(mask))
        structure = np.zeros((3, 3, 3), bool)
        structure[1] = ndimage.generate_binary_structure(2, 1)
        np.testing.assert_array_equal(_fill_holes_per_slice(mask),
                                      ndimage.binary_fill_holes(mask, structure=structure))
