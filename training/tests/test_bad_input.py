"""Training and evaluation refuse what they cannot use, say why, and go on with the rest."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from radview.core.volume import Volume
from radview.io.convert import volume_to_nifti
from training.data import DatasetError, iter_msd_pairs, load_cache
from training.evaluate import main as evaluate_main
from training.train import TrainConfig, train_model


def _volume(shape=(6, 20, 24), spacing=(1.5, 1.5, 3.0), origin=(0.0, 0.0, 0.0),
            dtype=np.int16) -> Volume:
    data = np.zeros(shape, dtype)
    return Volume(data, spacing=spacing, origin=origin, direction=np.eye(3))


def _write(path: Path, volume: Volume) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(volume_to_nifti(volume), path)


def test_mismatched_geometry_and_corrupt_and_missing_cases_are_reported_and_skipped(tmp_path):
    _write(tmp_path / "imagesTr" / "good.nii.gz", _volume())
    _write(tmp_path / "labelsTr" / "good.nii.gz", _volume(dtype=np.uint8))
    _write(tmp_path / "imagesTr" / "shifted.nii.gz", _volume())
    _write(tmp_path / "labelsTr" / "shifted.nii.gz", _volume(spacing=(1.5, 1.5, 2.0),
                                                             dtype=np.uint8))
    (tmp_path / "imagesTr" / "broken.nii.gz").write_bytes(b"\x1f\x8b not really gzip")
    _write(tmp_path / "labelsTr" / "broken.nii.gz", _volume(dtype=np.uint8))
    _write(tmp_path / "imagesTr" / "unlabelled.nii.gz", _volume())
    results = {name: problem for name, _image, _labels, problem in iter_msd_pairs(tmp_path)}
    assert results["good"] is None
    assert "labels do not match the image geometry" in results["shifted"]
    assert "spacing" in results["shifted"] and "shifted.nii.gz" in results["shifted"]
    assert "broken.nii.gz" in results["broken"]
    assert "no label file unlabelled.nii.gz" in results["unlabelled"]


def test_a_folder_that_is_not_msd_layout_is_refused(tmp_path):
    with pytest.raises(DatasetError, match="imagesTr"):
        list(iter_msd_pairs(tmp_path))


def test_evaluate_cli_exits_2_with_a_clear_message(smoke_build, tmp_path, capsys):
    models = ["--models-dir", str(smoke_build / "models_onnx")]
    assert evaluate_main(["--data", str(tmp_path), "--model", "liver-tumor-seg", *models]) == 2
    assert "not a Medical Segmentation Decathlon / LiTS folder" in capsys.readouterr().err
    assert evaluate_main(["--data", str(tmp_path), "--model", "no-such-model", *models]) == 2
    assert "model no-such-model not found" in capsys.readouterr().err


def test_evaluate_cli_measures_usable_cases_and_skips_the_rest(smoke_build, tmp_path, capsys):
    heldout = smoke_build / "heldout_msd"
    data = tmp_path / "data"
    (data / "imagesTr").mkdir(parents=True)
    (data / "labelsTr").mkdir()
    for name in ("phantom_200000", "phantom_200001"):
        for sub in ("imagesTr", "labelsTr"):
            (data / sub / f"{name}.nii.gz").write_bytes((heldout / sub / f"{name}.nii.gz")
                                                        .read_bytes())
    (data / "imagesTr" / "corrupt.nii.gz").write_bytes(b"garbage")
    (data / "labelsTr" / "corrupt.nii.gz").write_bytes(b"garbage")
    out = tmp_path / "result.json"
    code = evaluate_main(["--data", str(data), "--model", "liver-tumor-seg", "--models-dir",
                          str(smoke_build / "models_onnx"), "--json", str(out)])
    captured = capsys.readouterr()
    assert code == 0
    assert "skipped corrupt" in captured.err
    assert "liver_dice" in captured.out and "2 cases, 1 skipped" in captured.out
    result = json.loads(out.read_text())
    assert [row["case"] for row in result["rows"]] == ["phantom_200000", "phantom_200001"]


def test_staging_can_be_measured_on_a_segmentation_models_liver(smoke_build, tmp_path,
                                                                 capsys):
    """``--liver-from``: the liver comes from a segmentation model's labels, as in the app."""
    models = ["--models-dir", str(smoke_build / "models_onnx")]
    out = tmp_path / "result.json"
    code = evaluate_main(["--data", str(smoke_build / "heldout_msd"), "--model",
                          "liver-stage-cnnlstm", *models, "--liver-from", "liver-seg-deeplab",
                          "--json", str(out)])
    assert code == 0, capsys.readouterr().err
    result = json.loads(out.read_text())
    assert result["liver_from"] == "liver-seg-deeplab" and result["cases"] >= 1
    assert evaluate_main(["--data", str(smoke_build / "heldout_msd"), "--model",
                          "liver-stage-cnnlstm", *models, "--liver-from", "slice-triage"]) == 2
    assert "--liver-from slice-triage: not a segmentation model" in capsys.readouterr().err


def test_corrupt_cache_file_is_skipped(smoke_build, tmp_path, capsys):
    good = sorted((smoke_build / "cache" / "train").glob("*.npz"))[0]
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"PK\x03\x04 truncated")
    cases = load_cache([good, bad])
    assert [case.name for case in cases] == [good.stem]
    assert "skipped" in capsys.readouterr().err


def test_a_cache_file_from_another_preprocessing_is_refused_and_rebuilt(smoke_build, tmp_path):
    from training.data import STAGE_ANTIALIAS, build_phantom_cache

    current = sorted((smoke_build / "cache" / "train").glob("*.npz"))[0]
    with np.load(current) as data:
        arrays = {key: data[key] for key in data.files}
    arrays["stage_antialias"] = np.bool_(not STAGE_ANTIALIAS)
    stale = tmp_path / "train" / current.name
    stale.parent.mkdir()
    np.savez(stale, **arrays)
    with pytest.raises(DatasetError, match=f"{stale}: cached with another preprocessing"):
        load_cache([stale])
    seed_count = int(current.stem.split("-")[1]) + 1  # the smoke cache starts at seed 0
    build_phantom_cache(tmp_path, "train", count=seed_count, workers=1)
    rebuilt = load_cache([stale])[0]
    with np.load(current) as data:
        np.testing.assert_array_equal(rebuilt.stage_hu, data["stage_hu"])


class _Interrupt(Exception):
    """Stands for Ctrl+C or a killed process in the middle of training."""


def _interrupt_at(text: str):
    """A training log callback that interrupts the run at the first line containing ``text``
    (after the checkpoint before it was written)."""
    def log(line: str) -> None:
        if text in line:
            raise _Interrupt
    return log


def test_interrupted_training_resumes_to_the_same_weights(smoke_build, tmp_path):
    import torch

    cases = load_cache(sorted((smoke_build / "cache" / "train").glob("*.npz")))
    val = load_cache(sorted((smoke_build / "cache" / "val").glob("*.npz")))
    config = TrainConfig(model="liver-tumor-seg", steps=4, batch=2, crop=64, width=4,
                         dropout=0.1, checkpoint_every=2, validate_every=3, val_cases=1)

    with pytest.raises(_Interrupt):
        train_model(config, cases, val, tmp_path / "interrupted",
                    log=_interrupt_at("step 3 validation"))
    resumed_log: list[str] = []
    resumed = train_model(config, cases, val, tmp_path / "interrupted", log=resumed_log.append)
    assert any("resumed at step 2" in line for line in resumed_log)
    assert resumed["steps_done"] == 4
    train_model(config, cases, val, tmp_path / "straight", log=lambda _line: None)
    a = torch.load(tmp_path / "interrupted" / config.model / "checkpoint.pt", weights_only=False)
    b = torch.load(tmp_path / "straight" / config.model / "checkpoint.pt", weights_only=False)
    for key, value in a["model"].items():
        assert torch.allclose(value.float(), b["model"][key].float(), atol=1e-6), key


def test_a_checkpoint_from_before_a_new_setting_still_resumes(smoke_build, tmp_path):
    import torch

    cases = load_cache(sorted((smoke_build / "cache" / "train").glob("*.npz")))
    config = TrainConfig(model="slice-triage", steps=3, batch=2, width=4, checkpoint_every=1,
                         validate_every=2, val_cases=1)

    with pytest.raises(_Interrupt):
        train_model(config, cases, cases, tmp_path, log=_interrupt_at("step 2 validation"))
    checkpoint = tmp_path / config.model / "checkpoint.pt"
    saved = torch.load(checkpoint, weights_only=False)
    for newer in ("hard_negative_share", "end_stage_share", "tumour_share"):
        del saved["config"][newer]  # as written before these settings existed
    torch.save(saved, checkpoint)
    log: list[str] = []
    assert train_model(config, cases, cases, tmp_path, log=log.append)["steps_done"] == 3
    assert any("resumed at step 1" in line for line in log)


def test_resuming_with_other_settings_is_refused(smoke_build, tmp_path):
    cases = load_cache(sorted((smoke_build / "cache" / "train").glob("*.npz")))
    config = TrainConfig(model="slice-triage", steps=2, batch=2, width=4, checkpoint_every=1,
                         validate_every=2, val_cases=1)
    train_model(config, cases, cases, tmp_path, log=lambda _line: None)
    with pytest.raises(SystemExit, match="different settings"):
        train_model(TrainConfig(model="slice-triage", steps=3, batch=2, width=4,
                                checkpoint_every=1, validate_every=2, val_cases=1),
                    cases, cases, tmp_path, log=lambda _line: None)


def test_msd_folder_is_cached_for_fine_tuning_with_bad_pairs_skipped(tmp_path, capsys):
    from training.data import main as data_main

    image = _volume(shape=(4, 40, 40))
    image = image.with_voxels(np.full(image.shape, -50, np.int16))
    labels = _volume(shape=(4, 40, 40), dtype=np.uint8)
    labels = labels.with_voxels(np.zeros(labels.shape, np.uint8))
    labels.voxels[:, 10:30, 10:30] = 1
    _write(tmp_path / "msd" / "imagesTr" / "case1.nii.gz", image)
    _write(tmp_path / "msd" / "labelsTr" / "case1.nii.gz", labels)
    _write(tmp_path / "msd" / "imagesTr" / "case2.nii.gz", image)
    _write(tmp_path / "msd" / "labelsTr" / "case2.nii.gz", _volume(shape=(5, 40, 40),
                                                                   dtype=np.uint8))
    assert data_main(["--msd", str(tmp_path / "msd"), "--out", str(tmp_path / "cache")]) == 0
    captured = capsys.readouterr()
    assert "skipped case2" in captured.err and "1 cases cached" in captured.out
    cached = load_cache([tmp_path / "cache" / "case1.npz"])[0]
    assert cached.stage == -1
    assert cached.slice_hu.shape[1:] == (224, 224)
    assert (cached.slice_labels == 1).sum() > 0
