"""Tiny real ONNX "segmentation models" and synthetic CT phantoms with exact HU bands.

The model is a fixed 1x1 convolution on the centre channel of a 2.5D input: with the window
[-200, 300] HU mapped onto [0, 1] (x = (HU + 200) / 500) its logits are

    background 0,  liver 10 (x - 0.36),  tumour 20 (x - 0.36) - 2.5

so argmax gives background below -20 HU, liver from -20 to 105 HU and tumour above 105 HU
(the thresholds are the midpoints between fat and liver and between liver and tumour)
(a hyperdense, enhancing lesion: the liver-fat edge never passes through the tumour band, so
partial-volume voxels cannot invent a tumour rim). The phantom uses air -1000, fat -100,
liver 60 and tumour 150 HU.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
from onnx import TensorProto, helper, numpy_helper

from radview.core.volume import Volume
from radview.inference.lesion_filter import FEATURES

AIR_HU, FAT_HU, LIVER_HU, TUMOUR_HU = -1000, -100, 60, 150

MANIFEST = """\
id = "{model_id}"
version = "0.1-test"
task = "segmentation"
modality = "{modality}"
file = "model.onnx"
sha256 = "{sha256}"
opset = 17
training_data = "none: a fixed 1x1 convolution for tests"

[labels]
0 = "background"
1 = "liver"
2 = "tumor"

[input]
name = "image"
layout = "NCHW"
size = [{height}, {width}]
spacing_mm = {spacing}
channels = {channels}

[normalization]
window_low = -200.0
window_high = 300.0
scale = [0.0, 1.0]

[output]
name = "logits"
kind = "logits"

[metrics]
"""


def band_model_bytes(*, channels: int = 3, size: tuple[int, int] = (64, 64)) -> bytes:
    """The 1x1 convolution ``image [N, C, H, W] -> logits [N, 3, H, W]`` described above."""
    image = helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", channels, *size])
    logits = helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 3, *size])
    weight = np.zeros((3, channels, 1, 1), np.float32)
    weight[:, channels // 2, 0, 0] = [0.0, 10.0, 20.0]
    bias = np.array([0.0, -3.6, -9.7], np.float32)
    graph = helper.make_graph(
        [helper.make_node("Conv", ["image", "weight", "bias"], ["logits"])], "band-seg",
        [image], [logits],
        [numpy_helper.from_array(weight, "weight"), numpy_helper.from_array(bias, "bias")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)],
                              producer_name="radview-tests")
    model.ir_version = 8
    return model.SerializeToString()


def install_band_model(models_dir: Path, model_id: str = "tiny-liver-seg", *,
                       spacing: tuple[float, ...] = (1.0, 1.0), size: tuple[int, int] = (64, 64),
                       channels: int = 3, modality: str = "CT",
                       lesion_filter_bias: float | None = None) -> Path:
    """Write ``models_dir/model_id/{model.onnx, model.toml}`` (sha256 computed); the folder.
    ``lesion_filter_bias``: the manifest gets a lesion filter keeping tumour components with
    ln(volume in mm^3) + bias >= 0 (P(lesion) = sigmoid of that, threshold 0.5)."""
    folder = Path(models_dir) / model_id
    folder.mkdir(parents=True, exist_ok=True)
    data = band_model_bytes(channels=channels, size=size)
    (folder / "model.onnx").write_bytes(data)
    (folder / "model.toml").write_text(MANIFEST.format(
        model_id=model_id, modality=modality, sha256=hashlib.sha256(data).hexdigest(),
        height=size[0], width=size[1], spacing=list(spacing), channels=channels)
        + ("" if lesion_filter_bias is None else LESION_FILTER.format(
            features=list(FEATURES), bias=lesion_filter_bias)),
        encoding="utf-8")
    return folder


LESION_FILTER = """
[lesion_filter]
features = {features}
mean = [0, 0, 0, 0, 0, 0, 0, 0]
scale = [1, 1, 1, 1, 1, 1, 1, 1]
weights = [1, 0, 0, 0, 0, 0, 0, 0]
bias = {bias}
threshold = 0.5
"""


def phantom(shape: tuple[int, int, int] = (24, 96, 96),
            spacing: tuple[float, float, float] = (0.7, 0.7, 2.5), *,
            liver_half_mm: float = 18.0, tumour_radius_mm: float = 7.0,
            blobs: bool = False, modality: str = "CT",
            origin: tuple[float, float, float] = (-30.0, -40.0, 100.0),
            ) -> tuple[Volume, np.ndarray]:
    """A CT phantom and its analytic truth (uint8, 1 liver, 2 tumour) on the same grid.

    Air outside an elliptic-cylinder body of fat; a liver cube of half side ``liver_half_mm``
    centred in the body and a tumour sphere inside it (centre offset by 3 mm in x). With
    ``blobs``: a small disconnected liver-HU cube and a tumour-HU cube in the fat, which
    post-processing must remove (the truth does not contain them).
    """
    nz, ny, nx = shape
    sx, sy, sz = spacing
    z, y, x = np.meshgrid((np.arange(nz) - (nz - 1) / 2) * sz, (np.arange(ny) - (ny - 1) / 2) * sy,
                          (np.arange(nx) - (nx - 1) / 2) * sx, indexing="ij", sparse=True)
    half_x, half_y = nx * sx / 2 * 0.9, ny * sy / 2 * 0.9
    body = (x / half_x) ** 2 + (y / half_y) ** 2 <= 1.0
    liver = (np.abs(x) <= liver_half_mm) & (np.abs(y) <= liver_half_mm) & (
        np.abs(z) <= liver_half_mm)
    tumour = (x - 3.0) ** 2 + y ** 2 + z ** 2 <= tumour_radius_mm ** 2
    voxels = np.full(shape, AIR_HU, np.int16)
    voxels[np.broadcast_to(body, shape)] = FAT_HU
    truth = np.zeros(shape, np.uint8)
    truth[liver] = 1
    truth[liver & tumour] = 2
    voxels[truth == 1] = LIVER_HU
    voxels[truth == 2] = TUMOUR_HU
    if blobs:
        # 4 x 4 mm blobs, one slice thick region of 3 slices, in the fat beside the liver
        bx = (x > liver_half_mm + 5) & (x < liver_half_mm + 9)
        blob_y1 = (y > -6) & (y < -2)
        blob_y2 = (y > 4) & (y < 8)
        bz = np.abs(z) <= 3.0
        voxels[np.broadcast_to(bx & blob_y1 & bz, shape)] = LIVER_HU
        voxels[np.broadcast_to(bx & blob_y2 & bz, shape)] = TUMOUR_HU
    volume = Volume(voxels, spacing=spacing, origin=origin, modality=modality)
    return volume, truth


def dice(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.astype(bool), b.astype(bool)
    total = int(a.sum()) + int(b.sum())
    return 1.0 if total == 0 else 2.0 * int((a & b).sum()) / total


# ---------------------------------------------------------------------------- staging, triage
STAGE_NAMES = ("Mild", "Moderate", "Severe", "End-stage")

FOLLOW_UP_MANIFEST = """\
id = "{model_id}"
version = "0.1-test"
task = "{task}"
modality = "CT"
file = "model.onnx"
sha256 = "{sha256}"
opset = 17
training_data = "none: a fixed function for tests"

[labels]
{labels}

[input]
name = "image"
layout = "{layout}"
size = [{size}, {size}]
spacing_mm = [{spacing}, {spacing}]
channels = {channels}
{sequence}

[normalization]
window_low = -200.0
window_high = 300.0
scale = [0.0, 1.0]

[output]
name = "logits"
kind = "logits"

[metrics]
"""


def _model_bytes(nodes, inputs, outputs, initializers) -> bytes:
    graph = helper.make_graph(nodes, "tiny", inputs, outputs, initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)],
                              producer_name="radview-tests")
    model.ir_version = 8
    return model.SerializeToString()


def triage_model_bytes(size: int) -> bytes:
    """P(tumour) logits [0, 40 (max - 0.61)]: a slice whose brightest pixel is above about
    105 HU (x = 0.61 in the [-200, 300] window) is "tumour"."""
    image = helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 1, size, size])
    logits = helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 2])
    nodes = [
        helper.make_node("ReduceMax", ["image"], ["peak4"], axes=[2, 3], keepdims=1),
        helper.make_node("Reshape", ["peak4", "shape"], ["peak"]),
        helper.make_node("Sub", ["peak", "threshold"], ["above"]),
        helper.make_node("Mul", ["above", "gain"], ["tumour"]),
        helper.make_node("Mul", ["peak", "zero"], ["none"]),
        helper.make_node("Concat", ["none", "tumour"], ["logits"], axis=1),
    ]
    initializers = [numpy_helper.from_array(np.array([-1, 1], np.int64), "shape"),
                    numpy_helper.from_array(np.array([0.61], np.float32), "threshold"),
                    numpy_helper.from_array(np.array([40.0], np.float32), "gain"),
                    numpy_helper.from_array(np.array([0.0], np.float32), "zero")]
    return _model_bytes(nodes, [image], [logits], initializers)


def staging_model_bytes(size: int, length: int, liver_mask: bool = False) -> bytes:
    """Stage logits rising with the mean normalised intensity of the liver slices:
    logits = mean * [0, 10, 20, 30] + [0, -2, -5, -9] (brighter slices, later stage). With
    ``liver_mask`` the input has a second channel, the liver mask, and the mean is taken
    inside it only."""
    channels = 2 if liver_mask else 1
    image = helper.make_tensor_value_info("image", TensorProto.FLOAT,
                                          ["N", length, channels, size, size])
    logits = helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 4])
    if liver_mask:  # mean(image * mask) / mean(mask)
        nodes = [
            helper.make_node("Split", ["image", "halves"], ["pixels", "mask"], axis=2),
            helper.make_node("Mul", ["pixels", "mask"], ["inside"]),
            helper.make_node("ReduceMean", ["inside"], ["inside5"], axes=[1, 2, 3, 4],
                             keepdims=1),
            helper.make_node("ReduceMean", ["mask"], ["area5"], axes=[1, 2, 3, 4], keepdims=1),
            helper.make_node("Div", ["inside5", "area5"], ["mean5"]),
        ]
    else:
        nodes = [helper.make_node("ReduceMean", ["image"], ["mean5"], axes=[1, 2, 3, 4],
                                  keepdims=1)]
    nodes += [
        helper.make_node("Reshape", ["mean5", "shape"], ["mean"]),
        helper.make_node("MatMul", ["mean", "weight"], ["scaled"]),
        helper.make_node("Add", ["scaled", "bias"], ["logits"]),
    ]
    initializers = [numpy_helper.from_array(np.array([-1, 1], np.int64), "shape"),
                    numpy_helper.from_array(np.array([1, 1], np.int64), "halves"),
                    numpy_helper.from_array(np.array([[0, 10, 20, 30]], np.float32), "weight"),
                    numpy_helper.from_array(np.array([0, -2, -5, -9], np.float32), "bias")]
    return _model_bytes(nodes, [image], [logits], initializers)


def install_follow_up_model(models_dir: Path, task: str, model_id: str | None = None, *,
                            size: int = 48, spacing: float = 2.0, length: int = 8,
                            liver_mask: bool = False) -> Path:
    """Install the tiny ``"staging"`` or ``"triage"`` model; returns its folder.
    ``liver_mask``: a staging model that reads the liver mask as a second channel."""
    model_id = model_id or f"tiny-{task}"
    folder = Path(models_dir) / model_id
    folder.mkdir(parents=True, exist_ok=True)
    channels = 1
    if task == "staging":
        data = staging_model_bytes(size, length, liver_mask)
        labels = "\n".join(f'{i} = "{name}"' for i, name in enumerate(STAGE_NAMES))
        layout, sequence = "NTCHW", f"sequence_length = {length}"
        if liver_mask:
            channels, sequence = 2, sequence + "\nliver_mask_channel = true"
    else:
        data = triage_model_bytes(size)
        labels = '0 = "no tumor"\n1 = "tumor"'
        layout, sequence = "NCHW", ""
    (folder / "model.onnx").write_bytes(data)
    (folder / "model.toml").write_text(FOLLOW_UP_MANIFEST.format(
        model_id=model_id, task=task, sha256=hashlib.sha256(data).hexdigest(), labels=labels,
        layout=layout, size=size, spacing=spacing, sequence=sequence, channels=channels),
        encoding="utf-8")
    return folder
