"""Staging and triage pipelines on phantoms with known answers, through real tiny ONNX models,
and the model grid's canonical orientation (what the trained models assume)."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("onnx")

from radview.core.volume import Volume
from radview.inference.pipeline import UnsupportedModelError, segment, to_model_grid
from radview.inference.registry import discover_models
from radview.inference.runtime import SessionCache
from radview.inference.staging import close_alternatives, liver_slice_picks, stage_liver
from radview.inference.triage import TriageNotApplicable, triage_slices
from tests.inference.tiny_models import (
    STAGE_NAMES,
    dice,
    install_band_model,
    install_follow_up_model,
    phantom,
)


@pytest.fixture
def models(tmp_path):
    install_follow_up_model(tmp_path, "staging")
    install_follow_up_model(tmp_path, "triage")
    install_band_model(tmp_path, "tiny-liver-seg", spacing=(1.0, 1.0))
    registry = discover_models(builtin_dir=tmp_path, user_dir=tmp_path / "none",
                               entry_points=False)
    assert not registry.invalid, registry.invalid
    return {model.id: model for model in registry.valid}


def _labels(volume: Volume, truth: np.ndarray) -> Volume:
    return volume.with_voxels(truth)


def test_liver_slice_picks_spread_evenly_over_the_liver_inferior_first():
    mask = np.zeros((30, 4, 4), bool)
    mask[5:21, 1, 1] = True
    picks = liver_slice_picks(mask, 6)
    assert picks.tolist() == [5, 8, 11, 14, 17, 20]
    assert liver_slice_picks(np.zeros((5, 2, 2), bool), 4) is None
    jittered = liver_slice_picks(mask, 6, jitter=np.random.default_rng(1))
    assert jittered.min() >= 5 and jittered.max() <= 20 and np.all(np.diff(jittered) >= 0)


def test_stages_within_ten_points_of_the_reported_one_are_close_calls():
    p = {"Mild": 0.05, "Moderate": 0.41, "Severe": 0.43, "End-stage": 0.11}
    assert close_alternatives(p) == ("Moderate",)
    assert close_alternatives(p, "Moderate") == ("Severe",)
    assert close_alternatives({"Mild": 0.1, "Moderate": 0.7, "Severe": 0.2}) == ()
    assert close_alternatives({}) == ()
    # a stage far above a reported one is not "close" to it
    assert close_alternatives({"Mild": 0.1, "Moderate": 0.7, "Severe": 0.2}, "Mild") == (
        "Severe",)


def test_staging_gives_probabilities_and_follows_the_image(models):
    volume, truth = phantom(shape=(20, 80, 80), spacing=(1.0, 1.0, 2.5))
    sessions = SessionCache()
    result = stage_liver(volume, _labels(volume, truth), models["tiny-staging"], sessions,
                         device="cpu")
    assert list(result.probabilities) == list(STAGE_NAMES)
    assert sum(result.probabilities.values()) == pytest.approx(1.0, abs=1e-6)
    assert result.stage == max(result.probabilities, key=result.probabilities.get)
    brighter = volume.with_voxels((volume.voxels.astype(np.int16) + 250).astype(np.int16))
    later = stage_liver(brighter, _labels(volume, truth), models["tiny-staging"], sessions,
                        device="cpu")
    assert STAGE_NAMES.index(later.stage) > STAGE_NAMES.index(result.stage)
    no_liver = stage_liver(volume, _labels(volume, np.zeros_like(truth)),
                           models["tiny-staging"], sessions, device="cpu")
    assert no_liver is None


def test_a_model_reading_the_liver_mask_sees_the_segmented_liver(tmp_path):
    """With ``liver_mask_channel`` the second channel is the segmentation's liver, on the same
    grid as the image: the tiny model averages the image inside it, so brightening the fat
    around the liver changes nothing and darkening the liver lowers the stage."""
    install_follow_up_model(tmp_path, "staging", liver_mask=True)
    registry = discover_models(builtin_dir=tmp_path, user_dir=tmp_path / "none",
                               entry_points=False)
    assert not registry.invalid, registry.invalid
    model = registry.valid[0]
    volume, truth = phantom(shape=(20, 80, 80), spacing=(1.0, 1.0, 2.5))
    labels = _labels(volume, truth)
    sessions = SessionCache()
    first = stage_liver(volume, labels, model, sessions, device="cpu")
    voxels = volume.voxels.astype(np.int16)
    brighter_fat = np.where(truth == 0, voxels + 250, voxels).astype(np.int16)
    around = stage_liver(volume.with_voxels(brighter_fat), labels, model, sessions, device="cpu")
    assert around.probabilities == pytest.approx(first.probabilities, abs=1e-5)
    darker_liver = np.where(truth > 0, voxels - 150, voxels).astype(np.int16)
    inside = stage_liver(volume.with_voxels(darker_liver), labels, model, sessions,
                         device="cpu")
    assert STAGE_NAMES.index(inside.stage) < STAGE_NAMES.index(first.stage)


def test_staging_refuses_a_model_without_a_sequence_layout(models):
    volume, truth = phantom(shape=(8, 40, 40))
    with pytest.raises(UnsupportedModelError, match="sequence_length"):
        stage_liver(volume, _labels(volume, truth), models["tiny-triage"], SessionCache(),
                    device="cpu")


def test_triage_marks_exactly_the_tumour_slices(models):
    volume, truth = phantom(shape=(24, 80, 80), spacing=(1.0, 1.0, 2.5), tumour_radius_mm=6.0)
    result = triage_slices(volume, models["tiny-triage"], SessionCache(), device="cpu")
    tumour = (truth == 2).reshape(truth.shape[0], -1).any(axis=1)
    assert result.probabilities.shape == (24,)
    assert np.all(result.probabilities[tumour] > 0.9)
    assert np.all(result.probabilities[~tumour] < 0.1)


def test_triage_of_a_series_stored_superior_to_inferior_stays_on_its_slices(models):
    volume, truth = phantom(shape=(24, 80, 80), spacing=(1.0, 1.0, 2.5), tumour_radius_mm=5.0)
    # move the tumour towards the top so the two orders differ
    shifted = np.roll(volume.voxels, 6, axis=0)
    truth = np.roll(truth, 6, axis=0)
    flipped = Volume(shifted[::-1].copy(), spacing=volume.spacing,
                     origin=tuple(np.add(volume.origin, (0, 0, 23 * 2.5))),
                     direction=np.diag([1.0, 1.0, -1.0]), modality="CT")
    result = triage_slices(flipped, models["tiny-triage"], SessionCache(), device="cpu")
    tumour = (truth[::-1] == 2).reshape(24, -1).any(axis=1)
    assert np.all(result.probabilities[tumour] > 0.9)
    assert np.all(result.probabilities[~tumour] < 0.1)


def test_triage_refuses_a_sagittal_series(models):
    volume, _ = phantom(shape=(8, 40, 40))
    sagittal = Volume(volume.voxels, spacing=volume.spacing, origin=volume.origin,
                      direction=np.array([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]),
                      modality="CT")
    with pytest.raises(TriageNotApplicable, match="axial"):
        triage_slices(sagittal, models["tiny-triage"], SessionCache(), device="cpu")


def _flipped_in_plane(volume: Volume) -> Volume:
    """The same patient stored with rows and columns reversed (as many NIfTI files are)."""
    nz, ny, nx = volume.shape
    sx, sy, _ = volume.spacing
    origin = np.add(volume.origin, ((nx - 1) * sx, (ny - 1) * sy, 0.0))
    return Volume(volume.voxels[:, ::-1, ::-1].copy(), spacing=volume.spacing,
                  origin=tuple(origin), direction=np.diag([-1.0, -1.0, 1.0]),
                  modality=volume.modality)


def test_model_grid_is_patient_aligned_whatever_the_storage_order():
    # MR: no body crop, whose box (found on a subsampled mask) is not mirror-symmetric
    volume, truth = phantom(shape=(10, 70, 90), spacing=(0.8, 0.8, 2.5), modality="MR")
    volume = volume.with_voxels(volume.voxels.copy())
    volume.voxels[:, 10:20, 5:15] = 300  # an asymmetric mark: patient right, anterior
    plain = to_model_grid(volume, (2.0, 2.0), (48, 48), labels=truth)
    flipped = to_model_grid(_flipped_in_plane(volume), (2.0, 2.0), (48, 48),
                            labels=truth[:, ::-1, ::-1])
    np.testing.assert_allclose(flipped.hu, plain.hu, atol=1e-3)
    np.testing.assert_array_equal(flipped.labels, plain.labels)


def test_segmentation_of_a_flipped_series_lands_on_its_own_grid(models):
    volume, truth = phantom(shape=(16, 72, 72), liver_half_mm=15.0, tumour_radius_mm=6.0)
    flipped = _flipped_in_plane(volume)
    result = segment(flipped, models["tiny-liver-seg"], SessionCache(), device="cpu")
    assert dice(result.labels.voxels > 0, truth[:, ::-1, ::-1] > 0) > 0.95
    assert dice(result.labels.voxels == 2, truth[:, ::-1, ::-1] == 2) > 0.8


def test_antialiased_model_grid_averages_pixel_noise_and_keeps_the_mean():
    # a 0.7 mm scan of uniform 50 HU tissue with 20 HU white noise, onto a 4 mm grid
    rng = np.random.default_rng(3)
    voxels = (50 + 20 * rng.standard_normal((6, 320, 320))).astype(np.float32)
    volume = Volume(voxels, spacing=(0.7, 0.7, 3.0), modality="MR")  # MR: no body crop
    plain = to_model_grid(volume, (4.0, 4.0), (56, 56))
    smooth = to_model_grid(volume, (4.0, 4.0), (56, 56), antialias=True)
    inner = (slice(None), slice(4, -4), slice(4, -4))  # away from the padded border
    assert plain.hu[inner].std() > 12  # linear interpolation keeps most of the noise
    assert smooth.hu[inner].std() < 6  # the smoothed grid averages it, as a 4 mm scan would
    assert abs(smooth.hu[inner].mean() - 50) < 1
    # upsampling has nothing to average: the option changes nothing
    fine = to_model_grid(volume, (0.5, 0.5), (64, 64))
    fine_smooth = to_model_grid(volume, (0.5, 0.5), (64, 64), antialias=True)
    np.testing.assert_array_equal(fine.hu, fine_smooth.hu)
