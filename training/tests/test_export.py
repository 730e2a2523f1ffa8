"""Every model exports to ONNX that ONNX Runtime runs with PyTorch's logits (max |diff| <= 1e-4),
with a manifest radview's registry accepts and a model card built from measured numbers."""

from __future__ import annotations

import tomllib

import pytest

from radview.inference.registry import discover_models
from training.export import PARITY_TOLERANCE, example_input, export_onnx, parity
from training.train import MODEL_IDS, TrainConfig, build_network, load_best


@pytest.mark.parametrize("model_id", MODEL_IDS)
def test_trained_model_onnx_matches_pytorch(smoke_build, model_id, tmp_path):
    net, config = load_best(smoke_build / "runs", model_id)
    path = export_onnx(net, config, tmp_path / "model.onnx")
    assert parity(net, config, path, batches=2) <= PARITY_TOLERANCE


FULL_WIDTH = [TrainConfig(model=model_id) for model_id in MODEL_IDS] + [
    TrainConfig(model="liver-stage-cnnlstm", liver_mask=True)]


@pytest.mark.parametrize("config", FULL_WIDTH, ids=[
    c.model + ("-liver-mask" if c.liver_mask else "") for c in FULL_WIDTH])
def test_full_width_network_parity_with_trained_batchnorm_statistics(config, tmp_path):
    """The shipped widths: BatchNorm running statistics made non-trivial by forward passes in
    training mode, so the exporter's folding is really exercised."""
    import torch

    net = build_network(config)
    net.train()
    with torch.no_grad():
        for seed in range(3):
            net(example_input(config, batch=2, seed=10 + seed) * (1 + seed))
    path = export_onnx(net, config, tmp_path / "model.onnx")
    assert parity(net, config, path, batches=2) <= PARITY_TOLERANCE


def test_smoke_models_are_valid_in_the_app_registry(smoke_build):
    registry = discover_models(builtin_dir=smoke_build / "models_onnx",
                               user_dir=smoke_build / "no-user-models", entry_points=False)
    assert not registry.invalid, [m.reason for m in registry.invalid]
    assert sorted(m.id for m in registry.valid) == sorted(MODEL_IDS)
    tasks = {m.id: m.manifest.task.value for m in registry.valid}
    assert tasks == {"liver-tumor-seg": "segmentation", "liver-seg-deeplab": "segmentation",
                     "liver-stage-cnnlstm": "staging", "slice-triage": "triage"}


def test_manifest_and_card_carry_the_measured_held_out_numbers(smoke_build):
    folder = smoke_build / "models_onnx" / "liver-tumor-seg"
    manifest = tomllib.loads((folder / "model.toml").read_text())
    assert manifest["opset"] >= 17
    assert manifest["metrics"]["heldout_cases"] == 2
    card = (folder / "MODEL_CARD.md").read_text()
    for heading in ("Intended use", "Training data", "Held-out metrics",
                    "Hyperparameter search", "Post-processing threshold", "Known limits",
                    "Decision support only"):
        assert heading in card
    assert "chosen: " in card  # the speck-threshold table, measured on the validation split
    liver_dice = manifest["metrics"]["heldout_liver_dice"]
    assert f"{liver_dice:.3f}" in card
    staging_card = (smoke_build / "models_onnx" / "liver-stage-cnnlstm" / "MODEL_CARD.md")
    assert "Confusion matrix" in staging_card.read_text()


def test_search_ran_random_and_bayesian_trials(smoke_build):
    import json

    search = json.loads((smoke_build / "runs" / "search" / "search.json").read_text())
    assert {row["method"] for row in search["trials"]} == {"random", "tpe"}
    assert search["best"]["score"] == max(row["score"] for row in search["trials"])


def test_staging_card_gives_the_stage_measured_on_the_apps_liver_beside_the_truths(
        smoke_build, tmp_path):
    """The card's staging table has a row for the stage read from the segmentation's liver
    (saved by publish.evaluate_all as runs/<id>/heldout_app_liver.json), with its own numbers."""
    import json

    from training.model_card import write_model_card

    runs = smoke_build / "runs" / "liver-stage-cnnlstm"
    result = json.loads((runs / "heldout.json").read_text())
    summary = json.loads((runs / "summary.json").read_text())
    export = json.loads((runs / "export.json").read_text())
    app_liver = {**result, "liver_from": "liver-tumor-seg", "cases": 7,
                 "summary": {**result["summary"], "macro_f1": 0.4321,
                             "macro_f1_ci95": [0.1234, 0.5678]}}
    card = write_model_card(tmp_path / "card.md", "liver-stage-cnnlstm", result, summary,
                            export, None, None, app_liver=app_liver).read_text()
    assert ("| Macro-F1 on liver-tumor-seg's liver (as in the app; 7 scans) | 0.432 "
            "(95% CI 0.123-0.568) |") in card
    plain = write_model_card(tmp_path / "plain.md", "liver-stage-cnnlstm", result, summary,
                             export, None, None).read_text()
    assert "as in the app" not in plain


def test_an_average_of_staging_runs_exports_with_parity_and_averages_the_logits(tmp_path):
    """The shipped staging model is the mean of the logits of runs that differ in the seed."""
    import torch

    from training.networks import LogitAverage

    config = TrainConfig(model="liver-stage-cnnlstm")
    members = []
    for seed in range(3):
        torch.manual_seed(seed)
        members.append(build_network(config).eval())
    average = LogitAverage(members).eval()
    x = example_input(config, batch=2, seed=5)
    with torch.no_grad():
        singles = torch.stack([m(x) for m in members])
        assert torch.allclose(average(x), singles.mean(dim=0))
        assert not torch.allclose(singles[0], singles[1])  # the members really differ
    path = export_onnx(average, config, tmp_path / "model.onnx")
    assert parity(average, config, path, batches=2) <= PARITY_TOLERANCE
