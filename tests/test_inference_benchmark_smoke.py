"""The inference benchmark runs end to end on a tiny volume with tiny untrained models (a width-4
U-Net, its PyTorch weights, an INT8 copy and a triage net) and writes the documented JSON."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch", reason="the PyTorch peer needs the train extra (torch)")

REPO_ROOT = Path(__file__).resolve().parents[1]
TARGETS = {"segment_end_to_end_s", "onnxruntime_speedup_vs_pytorch",
           "pytorch_peer_same_network", "segment_peak_rss_mib",
           "triage_model_ms_per_slice_one_core"}
RUN_KEYS = {"segment_s", "measure_s", "total_s", "inference_s", "session_open_s",
            "inference_ms_per_slice"}


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory) -> Path:
    """``models/`` (ONNX + manifests), ``runs/<id>/best.pt`` and ``quantized/liver-tumor-seg``."""
    from benchmarks.inference import SEGMENTATION_ID, export_untrained
    from training.quantize import quantize_model

    from radview.inference.registry import ModelSource, validate_model

    root = tmp_path_factory.mktemp("inference-bench")
    export_untrained(root, width=4)
    fp32 = validate_model(root / "models" / SEGMENTATION_ID, ModelSource.BUILTIN)
    calibration = np.random.default_rng(0).random((4, 3, 224, 224), dtype=np.float32)
    quantize_model(fp32, root / "quantized" / SEGMENTATION_ID, calibration, log=lambda _: None)
    return root


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "benchmarks.inference", *args], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=170, check=False)


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_inference_benchmark_at_tiny_size(tiny_models, tmp_path):
    out = tmp_path / "bench" / "inference.json"
    completed = _run("--out", str(out), "--matrix", "96", "--slices", "8", "--repeat", "1",
                     "--models-dir", str(tiny_models / "models"),
                     "--runs-dir", str(tiny_models / "runs"),
                     "--quantized-dir", str(tiny_models / "quantized"),
                     "--data-dir", str(tmp_path / "data"))
    assert completed.returncode == 0, completed.stdout + completed.stderr

    results = json.loads(out.read_text())
    assert {"machine", "versions", "parameters", "volume", "segmentation", "triage",
            "targets", "all_passed"} <= results.keys()
    assert {"radview", "onnxruntime", "torch"} <= results["versions"].keys()
    assert results["volume"]["shape"] == [8, 96, 96]
    assert results["volume"]["raw_voxel_bytes"] == 96 * 96 * 8 * 2

    seg = results["segmentation"]
    ort, peer, int8 = seg["onnxruntime"], seg["pytorch"], seg["onnxruntime_int8"]
    for report in (ort, peer, int8):
        assert len(report["runs"]) == 1
        assert report["median"].keys() >= RUN_KEYS
        assert report["model_slices"] == 8 and report["peak_rss_mib"] > 0
        assert 0 < report["median"]["inference_s"] < report["median"]["segment_s"]
    # The peer really ran PyTorch, on the same network, inside the same pipeline.
    assert ort["provider"] == "CPUExecutionProvider"
    assert peer["provider"].startswith("PyTorch eager")
    assert peer["parity_max_abs_vs_onnx"] < 1e-3
    assert peer["model"]["sha256"] == ort["model"]["sha256"]
    assert int8["model"]["sha256"] != ort["model"]["sha256"]
    assert seg["speedup_end_to_end_vs_pytorch"] == pytest.approx(
        peer["median"]["total_s"] / ort["median"]["total_s"])
    assert seg["speedup_inference_vs_pytorch"] > 0 and seg["int8_speedup_inference"] > 0

    triage = results["triage"]
    assert triage["threads"] == 1 and triage["model_slices"] == 8
    assert {"pipeline_ms_per_slice", "model_ms_per_slice"} <= triage["median"].keys()
    if sys.platform.startswith("linux"):
        assert len(triage["cpu_affinity"]) == 1

    assert set(results["targets"]) == TARGETS
    for name, outcome in results["targets"].items():
        assert {"value", "limit", "pass", "description"} <= outcome.keys()
        if outcome["pass"] is False:  # a missed target is printed, not hidden
            assert f"FAIL  {name}" in completed.stdout
    assert results["targets"]["pytorch_peer_same_network"]["pass"] is True

    # The volume is cached: a second run would not generate it again.
    assert (Path(results["volume"]["folder"]) / "ct.npy").is_file()


def test_missing_models_name_the_untrained_option(tmp_path):
    completed = _run("--out", str(tmp_path / "x.json"), "--models-dir", str(tmp_path / "none"),
                     "--runs-dir", str(tmp_path / "none"))
    assert completed.returncode == 2
    assert "--untrained" in completed.stderr and "liver-tumor-seg" in completed.stderr
    assert not (tmp_path / "x.json").exists()
