"""Export a trained network to ONNX with its ``model.toml``, and check ONNX Runtime parity.

The manifest is what the app's registry validates (``radview.inference.manifest``): spacing,
size, channels, normalisation and labels come from :mod:`training.data`, so the app preprocesses
exactly as training did.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from radview.inference.lesion_filter import LesionFilterSpec
from training.data import (
    HU_WINDOW,
    SEQUENCE_LENGTH,
    SLICE_SIZE,
    SLICE_SPACING_MM,
    STAGE_ANTIALIAS,
    STAGE_SIZE,
    STAGE_SPACING_MM,
    STAGES,
)
from training.phantoms import GENERATOR_VERSION
from training.train import TrainConfig

__all__ = ["OPSET", "MODEL_VERSIONS", "example_input", "export_onnx", "parity",
           "write_manifest", "sha256_of"]

OPSET = 17
#: Each model's version, as reports name it: raised when what the model gives changes.
#: 1.1.0 (2026-11-22): liver-tumor-seg gained its lesion filter (same network);
#: liver-stage-cnnlstm became the mean of three runs.
MODEL_VERSIONS = {"liver-tumor-seg": "1.1.0", "liver-seg-deeplab": "1.0.0",
                  "liver-stage-cnnlstm": "1.1.0", "slice-triage": "1.0.0"}
PARITY_TOLERANCE = 1e-4

_TASKS = {"liver-tumor-seg": "segmentation", "liver-seg-deeplab": "segmentation",
          "liver-stage-cnnlstm": "staging", "slice-triage": "triage"}
_LABELS = {
    "liver-tumor-seg": {0: "background", 1: "liver", 2: "tumor"},
    "liver-seg-deeplab": {0: "background", 1: "liver"},
    "liver-stage-cnnlstm": dict(enumerate(STAGES)),
    "slice-triage": {0: "no tumor", 1: "tumor"},
}


def input_channels(config: TrainConfig) -> int:
    if config.model == "liver-stage-cnnlstm":
        return 2 if config.liver_mask else 1
    return config.channels


def example_input(config: TrainConfig, batch: int = 2, seed: int = 0) -> torch.Tensor:
    """A random input of the model's shape, in [0, 1] like normalised images; a liver mask
    channel holds a binary disc (as masks do: 0 or 1, never in between)."""
    generator = torch.Generator().manual_seed(seed)
    if config.model != "liver-stage-cnnlstm":
        return torch.rand((batch, config.channels, SLICE_SIZE, SLICE_SIZE), generator=generator)
    x = torch.rand((batch, SEQUENCE_LENGTH, input_channels(config), STAGE_SIZE, STAGE_SIZE),
                   generator=generator)
    if config.liver_mask:
        yy, xx = torch.meshgrid(torch.arange(STAGE_SIZE), torch.arange(STAGE_SIZE), indexing="ij")
        radius = STAGE_SIZE * (0.1 + 0.3 * torch.rand((batch, SEQUENCE_LENGTH, 1, 1),
                                                      generator=generator))
        x[:, :, 1] = (((yy - STAGE_SIZE / 2) ** 2 + (xx - STAGE_SIZE / 3) ** 2)
                      < radius ** 2).float()
    return x


def export_onnx(net: nn.Module, config: TrainConfig, path: Path) -> Path:
    net = net.eval()
    path.parent.mkdir(parents=True, exist_ok=True)
    input_name = "slices" if config.model == "liver-stage-cnnlstm" else "image"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
        torch.onnx.export(net, (example_input(config, 1),), str(path), opset_version=OPSET,
                          input_names=[input_name], output_names=["logits"],
                          dynamic_axes={input_name: {0: "N"}, "logits": {0: "N"}},
                          dynamo=False)
    return path


def parity(net: nn.Module, config: TrainConfig, path: Path, batches: int = 3) -> float:
    """Max |ONNX Runtime - PyTorch| over the logits of a few random inputs."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    worst = 0.0
    net.eval()
    for seed in range(batches):
        x = example_input(config, batch=2, seed=seed)
        with torch.no_grad():
            expected = net(x).numpy()
        got = session.run(["logits"], {name: x.numpy()})[0]
        worst = max(worst, float(np.abs(expected - got).max()))
    return worst


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _toml_value(value) -> str:
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, float):
        return repr(round(value, 4))
    return str(value)


def write_manifest(folder: Path, config: TrainConfig, onnx_name: str,
                   metrics: dict[str, float], training_data: str,
                   lesion_filter: LesionFilterSpec | None = None) -> Path:
    """Write ``folder/model.toml``; it names ``MODEL_CARD.md`` once that card exists."""
    model = config.model
    staging = model == "liver-stage-cnnlstm"
    size = STAGE_SIZE if staging else SLICE_SIZE
    spacing = STAGE_SPACING_MM if staging else SLICE_SPACING_MM
    labels = _LABELS[model]
    lines = [
        "schema_version = 1",
        f"id = {_toml_value(model)}",
        f"version = {_toml_value(MODEL_VERSIONS[model])}",
        f"task = {_toml_value(_TASKS[model])}",
        'modality = "CT"',
        f"file = {_toml_value(onnx_name)}",
        f"sha256 = {_toml_value(sha256_of(folder / onnx_name))}",
        f"opset = {OPSET}",
        f"training_data = {_toml_value(training_data)}",
        'license = "Apache-2.0"',
        *(['card = "MODEL_CARD.md"'] if (folder / "MODEL_CARD.md").exists() else []),
        "",
        "[labels]",
        *(f"{value} = {_toml_value(name)}" for value, name in labels.items()),
        "",
        "[input]",
        f'name = "{"slices" if staging else "image"}"',
        f'layout = "{"NTCHW" if staging else "NCHW"}"',
        f"size = [{size}, {size}]",
        f"spacing_mm = [{spacing}, {spacing}]",
        f"channels = {input_channels(config)}",
        'dynamic_axes = ["N"]',
        *([f"sequence_length = {SEQUENCE_LENGTH}"] if staging else []),
        *(["antialias = true"] if staging and STAGE_ANTIALIAS else []),
        *(["liver_mask_channel = true"] if staging and config.liver_mask else []),
        "",
        "[normalization]",
        f"window_low = {HU_WINDOW[0]}",
        f"window_high = {HU_WINDOW[1]}",
        "scale = [0.0, 1.0]",
        "",
        "[output]",
        'name = "logits"',
        'kind = "logits"',
        f'shape = ["N", {len(labels)}' + (f", {size}, {size}]" if _TASKS[model] ==
                                            "segmentation" else "]"),
        "",
        "[metrics]",
        *(f"{name} = {_toml_value(float(value))}" for name, value in sorted(metrics.items())
          if np.isfinite(value)),
        "",
    ]
    path = folder / "model.toml"
    path.write_text(with_lesion_filter("\n".join(lines), lesion_filter))
    return path


def with_lesion_filter(manifest_text: str, lesion_filter: LesionFilterSpec | None) -> str:
    """``manifest_text`` with its ``[lesion_filter]`` table (always the last one) replaced by
    ``lesion_filter``'s, or removed when None. Values at full precision: the app must apply
    exactly the fitted filter."""
    text = manifest_text.split("[lesion_filter]", 1)[0].rstrip("\n") + "\n"
    if lesion_filter is None:
        return text
    return text + "\n".join(["", "[lesion_filter]", *(
        f"{key} = {json.dumps(value)}" for key, value in lesion_filter.as_toml_table().items()),
        ""])


def training_data_text(seeds: tuple[int, int]) -> str:
    return (f"Synthetic abdominal CT phantoms only (training/phantoms, generator "
            f"{GENERATOR_VERSION}, seeds {seeds[0]}-{seeds[1]}); no patient data")
