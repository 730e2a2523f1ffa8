"""training.quantize on a tiny untrained U-Net and two tiny held-out cases: the INT8 model is
written next to (never over) the FP32 one, the app's registry accepts it and segments with it,
and quantization.json carries the numbers the decision is made from."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from radview.core.volume import Volume
from radview.inference.pipeline import segment
from radview.inference.registry import discover_models, sha256_of
from radview.inference.runtime import SessionCache
from radview.io.convert import volume_to_nifti
from training.export import export_onnx, write_manifest
from training.phantoms import PhantomConfig, generate_case
from training.quantize import _pick_slices, main
from training.train import TrainConfig, build_network

MODEL_ID = "liver-tumor-seg"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    """``models/liver-tumor-seg`` (width 4, untrained, with a model card) and ``msd/`` with two
    64 x 64 x 10 phantoms of the test split's seeds, each with tumour."""
    import torch

    root = tmp_path_factory.mktemp("quantize")
    torch.manual_seed(0)
    config = TrainConfig(model=MODEL_ID, width=4)
    folder = root / "models" / MODEL_ID
    export_onnx(build_network(config), config, folder / "model.onnx")
    (folder / "MODEL_CARD.md").write_text("# tiny test model\n")
    write_manifest(folder, config, "model.onnx", {"heldout_liver_dice": 0.5}, "test only")
    for seed in (200_000, 200_001):
        case = generate_case(seed, config=PhantomConfig(
            matrix=64, slices=10, pixel_spacing_mm=(6.0, 6.0), slice_thickness_mm=(6.0, 6.0),
            lesion_count=(2, 3), lesion_diameter_mm=(20.0, 50.0)))
        assert (case.labels.voxels == 2).any()
        for sub, volume in (("imagesTr", case.ct), ("labelsTr", case.labels)):
            (root / "msd" / sub).mkdir(parents=True, exist_ok=True)
            nib.save(volume_to_nifti(volume), root / "msd" / sub / f"phantom_{seed}.nii.gz")
    return root


@pytest.mark.slow
def test_quantize_writes_an_int8_model_the_app_runs_and_the_decision(tiny, capsys):
    fp32_folder = tiny / "models" / MODEL_ID
    fp32_before = {p.name: p.read_bytes() for p in fp32_folder.iterdir()}
    out = tiny / "quantized"

    assert main(["--model", MODEL_ID, "--heldout", str(tiny / "msd"), "--cases", "2",
                 "--models-dir", str(tiny / "models"), "--out", str(out),
                 "--calibration-slices", "4", "--calibration-cases", "1",
                 "--speed-slices", "4", "--speed-rounds", "2"]) == 0

    # The shipped FP32 model is untouched.
    assert {p.name: p.read_bytes() for p in fp32_folder.iterdir()} == fp32_before

    result = json.loads((out / MODEL_ID / "quantization.json").read_text())
    assert {"dice_fp32", "dice_int8", "drop", "speedup", "ship", "ms_per_slice_fp32",
            "ms_per_slice_int8", "calibration", "heldout", "copy_command"} <= result.keys()
    assert set(result["dice_fp32"]) == set(result["dice_int8"]) == {"liver", "tumor"}
    assert result["dice_fp32"]["tumor"] is not None  # both cases have truth tumour
    assert result["heldout"]["measured_fp32"] == result["heldout"]["measured_int8"] == 2
    drops = [d for d in (result["drop_liver"], result["drop_tumor"]) if d is not None]
    assert result["drop"] == max(drops)
    assert result["speedup"] == pytest.approx(
        result["ms_per_slice_fp32"] / result["ms_per_slice_int8"])
    assert result["ship"] == (result["drop"] < 0.01 and result["speedup"] > 1)
    assert result["threads"] == 2
    # Calibration came from training-split phantoms, never from the held-out cases.
    assert result["calibration"]["seeds"] == [0]
    assert result["calibration"]["slices"] == 4
    printed = capsys.readouterr().out
    assert ("SHIP" in printed) == result["ship"]
    assert (result["copy_command"] is not None) == result["ship"]
    if result["ship"]:
        assert result["copy_command"] in printed

    # The INT8 copy: QDQ nodes, its own sha256 in a manifest otherwise identical, the card.
    int8_folder = out / MODEL_ID
    import onnx

    ops = {node.op_type for node in onnx.load(str(int8_folder / "model.onnx")).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    manifest = (int8_folder / "model.toml").read_text()
    assert f'sha256 = "{sha256_of(int8_folder / "model.onnx")}"' in manifest
    original = (fp32_folder / "model.toml").read_text()
    differing = set(manifest.splitlines()) ^ set(original.splitlines())
    assert {line.split(" = ")[0] for line in differing} == {"sha256"}
    assert (int8_folder / "MODEL_CARD.md").exists()

    # The app's registry accepts it and the segmentation pipeline runs it.
    registry = discover_models(builtin_dir=out, user_dir=tiny / "no-user-models",
                               entry_points=False)
    assert not registry.invalid, [m.reason for m in registry.invalid]
    model = registry.get(MODEL_ID)
    image = Volume(np.full((4, 40, 40), -1000, np.int16), spacing=(8.0, 8.0, 8.0),
                   modality="CT")
    image.voxels[:, 8:32, 8:32] = 60
    labels = segment(image, model, SessionCache(threads=1), device="cpu").labels
    assert labels.shape == image.shape and labels.voxels.dtype == np.uint8


def test_refuses_a_missing_held_out_folder(tiny, tmp_path, capsys):
    code = main(["--model", MODEL_ID, "--heldout", str(tmp_path / "nothing"), "--cases", "1",
                 "--models-dir", str(tiny / "models"), "--out", str(tmp_path / "q"),
                 "--calibration-slices", "2", "--calibration-cases", "1"])
    assert code == 2
    assert "not a Medical Segmentation Decathlon" in capsys.readouterr().err


def test_calibration_slices_cover_the_liver_and_the_scan():
    liver = np.zeros(40, bool)
    liver[10:20] = True
    chosen = _pick_slices(liver, 40, 8)
    assert len(chosen) == len(set(chosen)) == 8
    assert (liver[chosen]).sum() >= 4  # half on the liver
    assert chosen.min() < 10 and chosen.max() >= 20  # the rest over the whole scan
    assert len(_pick_slices(np.zeros(3, bool), 3, 8)) == 3  # never more than there are
