"""model.toml parsing: the documented example, defaults, and one-line errors naming the field."""

from __future__ import annotations

import pickle
import textwrap
from pathlib import Path

import pytest

from radview.core.errors import RadviewError
from radview.inference import manifest as manifest_module
from radview.inference.manifest import (
    ManifestError,
    ModelTask,
    OutputKind,
    load_manifest,
    parse_manifest,
)

SHA = "ab" * 32

MINIMAL = f"""\
id = "liver-seg"
version = "0.1"
task = "segmentation"
modality = "CT"
file = "model.onnx"
sha256 = "{SHA}"
opset = 17
training_data = "synthetic phantoms"

[labels]
0 = "background"
1 = "liver"

[input]
name = "image"
layout = "NCHW"
size = [64, 64]
spacing_mm = [1.5, 1.5]
channels = 3

[normalization]
window_low = -100
window_high = 250
scale = [0.0, 1.0]

[output]
name = "logits"
kind = "logits"

[metrics]
dice_liver = 0.9
"""


def parse(text: str, path: str = "/models/liver/model.toml"):
    return parse_manifest(text, Path(path))


def docstring_example() -> str:
    doc = manifest_module.__doc__
    block = doc.split("A complete example, with every field::", 1)[1].split("\nRules\n", 1)[0]
    return textwrap.dedent(block)


def test_documented_example_is_valid():
    manifest = parse(docstring_example())
    assert manifest.id == "liver-tumor-seg"
    assert manifest.task is ModelTask.SEGMENTATION
    assert manifest.modality == "CT"
    assert dict(manifest.labels) == {0: "background", 1: "liver", 2: "tumor"}
    assert manifest.input.layout == "NCHW"
    assert manifest.input.size == (256, 256)
    assert manifest.input.spacing_mm == (0.8, 0.8, 2.5)
    assert manifest.input.channels == 3
    assert manifest.input.sequence_length is None  # commented out: the layout has no T axis
    assert manifest.normalization.scale == (0.0, 1.0)
    assert manifest.normalization.window_low == -100.0
    assert manifest.output.kind is OutputKind.LOGITS
    assert manifest.output.shape == ("N", 3, 256, 256)
    assert manifest.metrics == {"dice_liver": 0.96, "dice_tumor": 0.71}
    assert manifest.license == "Apache-2.0"
    assert manifest.card == "MODEL_CARD.md"
    assert manifest.onnx_path == Path("/models/liver/model.onnx")
    assert manifest.lesion_filter.threshold == 0.3
    assert manifest.lesion_filter.weights[1] == 1.1 and len(manifest.lesion_filter.mean) == 8


def test_documented_example_mentions_every_field():
    example = docstring_example()
    fields = {*manifest_module._TOP_FIELDS, *manifest_module._INPUT_FIELDS,
              *manifest_module._NORMALIZATION_FIELDS, *manifest_module._OUTPUT_FIELDS,
              *manifest_module._LESION_FILTER_FIELDS}
    missing = {f for f in fields if f"{f} =" not in example and f"[{f}]" not in example}
    assert not missing


def test_minimal_manifest_gets_defaults():
    manifest = parse(MINIMAL)
    assert manifest.schema_version == 1
    assert manifest.input.dynamic_axes == frozenset({"N"})
    assert manifest.input.dtype == "float32"
    assert manifest.input.antialias is False
    assert parse(MINIMAL.replace("channels = 3", "channels = 3\nantialias = true")
                 ).input.antialias is True
    assert manifest.input.liver_mask_channel is False
    assert parse(MINIMAL.replace("channels = 3", "channels = 2\nliver_mask_channel = true")
                 ).input.liver_mask_channel is True
    assert manifest.input.expected_shape() == (None, 3, 64, 64)
    assert manifest.license is None and manifest.card is None and manifest.license_file is None
    assert manifest.output.shape is None
    assert manifest.sha256 == SHA


def test_values_are_normalised():
    text = (MINIMAL.replace('modality = "CT"', 'modality = "ct"')
            .replace('task = "segmentation"', 'task = "Segmentation"')
            .replace(SHA, SHA.upper())
            .replace('kind = "logits"', 'kind = "PROBABILITIES"'))
    manifest = parse(text)
    assert manifest.modality == "CT"
    assert manifest.task is ModelTask.SEGMENTATION
    assert manifest.sha256 == SHA
    assert manifest.output.kind is OutputKind.PROBABILITIES


def test_mean_std_normalisation_without_window():
    text = MINIMAL.replace("window_low = -100\nwindow_high = 250\nscale = [0.0, 1.0]",
                           "mean = 40.0\nstd = 12.5")
    norm = parse(text).normalization
    assert (norm.mean, norm.std, norm.scale, norm.window_low) == (40.0, 12.5, None, None)


def test_sequence_layout_for_staging_models():
    text = (MINIMAL.replace('task = "segmentation"', 'task = "staging"')
            .replace('layout = "NCHW"', 'layout = "NTCHW"\nsequence_length = 16'))
    manifest = parse(text)
    assert manifest.task is ModelTask.STAGING
    assert manifest.input.expected_shape() == (None, 16, 3, 64, 64)
    dynamic = parse(text.replace("sequence_length = 16", 'dynamic_axes = ["N", "T"]'))
    assert dynamic.input.expected_shape() == (None, None, 3, 64, 64)


def test_3d_layout_takes_three_sizes():
    text = (MINIMAL.replace('layout = "NCHW"', 'layout = "NCDHW"')
            .replace("size = [64, 64]", "size = [32, 64, 64]")
            .replace("spacing_mm = [1.5, 1.5]", "spacing_mm = [1.5, 1.5, 3.0]"))
    assert parse(text).input.expected_shape() == (None, 3, 32, 64, 64)


LESION_FILTER = """
[lesion_filter]
features = ["log_volume_mm3", "mean_probability", "max_probability", "contrast_hu",
            "contrast_to_noise", "shell_sd_hu", "roundness", "edge_fraction"]
mean = [0, 0, 0, 0, 0, 0, 0, 0]
scale = [1, 1, 1, 1, 1, 1, 1, 1]
weights = [0, 1, 0, 0, 0, 0, 0, 0]
bias = -0.5
threshold = 0.4
"""

BROKEN = [
    # (what to replace, replacement, field, words in the message)
    ('id = "liver-seg"\n', "", "id", "missing"),
    ('id = "liver-seg"', 'id = "Liver Seg"', "id", "not a valid id"),
    ('task = "segmentation"', 'task = "registration"', "task", "unknown task 'registration'"),
    (f'sha256 = "{SHA}"', 'sha256 = "abc123"', "sha256", "64 hexadecimal digits"),
    (f'sha256 = "{SHA}"', f'sha256 = "{"zz" * 32}"', "sha256", "64 hexadecimal digits"),
    ("opset = 17", 'opset = "17"', "opset", "expected an integer"),
    ("opset = 17", "opset = 0", "opset", "positive"),
    ('modality = "CT"', 'modality = "C T"', "modality", "DICOM modality"),
    ('version = "0.1"', "version = 1", "version", "expected non-empty text"),
    ('training_data = "synthetic phantoms"\n', "", "training_data", "missing"),
    ('file = "model.onnx"', 'file = "../elsewhere/model.onnx"', "file", "inside the model folder"),
    ('file = "model.onnx"', 'file = "/abs/model.onnx"', "file", "inside the model folder"),
    ("opset = 17", 'opset = 17\nsha265 = "x"', "sha265", "did you mean 'sha256'"),
    ('0 = "background"', 'x = "background"', "labels.x", "integers 0-255"),
    ('1 = "liver"', '1 = "background"', "labels", "unique"),
    ('0 = "background"\n1 = "liver"\n', "", "labels", "at least one"),
    ("size = [64, 64]", "size = [64]", "input.size", "2 positive integers"),
    ("size = [64, 64]", "size = [64, -1]", "input.size", "2 positive integers"),
    ("spacing_mm = [1.5, 1.5]", "spacing_mm = [1.5, 0]", "input.spacing_mm", "positive numbers"),
    ("channels = 3", "channels = 0", "input.channels", "positive"),
    ("channels = 3", "channels = true", "input.channels", "expected an integer"),
    ('layout = "NCHW"', 'layout = "NCHWX"', "input.layout", "must use N, C, H and W"),
    ('layout = "NCHW"', 'layout = "NCH"', "input.layout", "must use N, C, H and W"),
    ("channels = 3", 'channels = 3\ndynamic_axes = ["Q"]', "input.dynamic_axes", "not axes"),
    ('layout = "NCHW"', 'layout = "NTCHW"', "input.sequence_length", "required"),
    ("channels = 3", "channels = 3\nsequence_length = 4", "input.sequence_length", "no T axis"),
    ("channels = 3", 'channels = 3\ndtype = "int8"', "input.dtype", "float32"),
    ("channels = 3", 'channels = 3\nantialias = "yes"', "input.antialias", "true or false"),
    ("channels = 3", "channels = 3\nliver_mask_channel = 1", "input.liver_mask_channel",
     "true or false"),
    ("channels = 3", "channels = 1\nliver_mask_channel = true", "input.liver_mask_channel",
     "at least 2 channels"),
    ('name = "image"\n', "", "input.name", "missing"),
    ("scale = [0.0, 1.0]", "scale = [0.0, 1.0]\nmean = 0.0\nstd = 1.0", "normalization",
     "not both"),
    ("scale = [0.0, 1.0]", "", "normalization", "needs scale"),
    ("scale = [0.0, 1.0]", "scale = [1.0, 0.0]", "normalization.scale", "low < high"),
    ("window_high = 250", "window_high = -200", "normalization.window_high", "above"),
    ("window_high = 250\n", "", "normalization", "go together"),
    ("window_low = -100\nwindow_high = 250\n", "", "normalization.scale", "needs window_low"),
    ("scale = [0.0, 1.0]", "mean = 0.0\nstd = 0.0", "normalization.std", "positive"),
    ('kind = "logits"', 'kind = "softmax"', "output.kind", "unknown kind 'softmax'"),
    ('kind = "logits"', 'kind = "logits"\nshape = [1, 0]', "output.shape", "positive integers"),
    ("dice_liver = 0.9", 'dice_liver = "good"', "metrics.dice_liver", "expected a number"),
    ("[metrics]\ndice_liver = 0.9\n", "", "metrics", "missing"),
    ('id = "liver-seg"', 'schema_version = 2\nid = "liver-seg"', "schema_version",
     "not supported"),
    # the lesion filter: exactly the features this radview computes, a probability threshold
    ("dice_liver = 0.9\n", "dice_liver = 0.9\n" + LESION_FILTER.replace(
        '"roundness", "edge_fraction"', '"edge_fraction", "roundness"'),
     "lesion_filter.features", "the features this radview computes"),
    ("dice_liver = 0.9\n", "dice_liver = 0.9\n" + LESION_FILTER.replace(
        "threshold = 0.4", "threshold = 1.5"), "lesion_filter.threshold", "from 0 to 1"),
    ("dice_liver = 0.9\n", "dice_liver = 0.9\n" + LESION_FILTER.replace(
        "scale = [1, 1, 1, 1, 1, 1, 1, 1]", "scale = [1, 1, 1, 0, 1, 1, 1, 1]"),
     "lesion_filter.scale", "positive numbers"),
    ("dice_liver = 0.9\n", "dice_liver = 0.9\n" + LESION_FILTER.replace(
        "bias = -0.5", "bias = -0.5\ncutoff = 2"), "lesion_filter.cutoff", "unknown"),
    ("dice_liver = 0.9\n", "dice_liver = 0.9\n" + LESION_FILTER.replace(
        "weights = [0, 1, 0, 0, 0, 0, 0, 0]", "weights = [0, 1]"),
     "lesion_filter.weights", "a list of 8 numbers"),
]


@pytest.mark.parametrize(("old", "new", "field", "words"), BROKEN,
                         ids=[f"{case[2]}-{i}" for i, case in enumerate(BROKEN)])
def test_broken_manifest_names_file_and_field(old, new, field, words):
    assert old in MINIMAL
    path = "/models/liver/model.toml"
    with pytest.raises(ManifestError) as caught:
        parse(MINIMAL.replace(old, new, 1), path)
    message = str(caught.value)
    assert caught.value.field == field
    assert message.startswith(f"{path}: {field}: "), message
    assert words in message
    assert "\n" not in message


def test_table_given_as_value():
    text = MINIMAL.replace('opset = 17', 'opset = 17\nlabels = "background"').replace(
        '[labels]\n0 = "background"\n1 = "liver"\n', "")
    with pytest.raises(ManifestError, match=r"model.toml: labels: expected a table \(\[labels\]\)"):
        parse(text)


def test_not_toml():
    with pytest.raises(ManifestError, match=r"^/m/model.toml: is not valid TOML \(.*line 1"):
        parse("id = = 3\n", "/m/model.toml")


def test_load_manifest_from_folder_or_file(tmp_path):
    (tmp_path / "model.toml").write_text(MINIMAL, encoding="utf-8")
    assert load_manifest(tmp_path).path == tmp_path / "model.toml"
    assert load_manifest(tmp_path / "model.toml").folder == tmp_path


def test_load_manifest_missing_or_not_utf8(tmp_path):
    with pytest.raises(ManifestError, match="model.toml: does not exist"):
        load_manifest(tmp_path)
    (tmp_path / "model.toml").write_bytes(b'id = "\xff"\n')
    with pytest.raises(ManifestError, match="is not UTF-8"):
        load_manifest(tmp_path)


def test_manifest_error_is_a_radview_error_and_pickles():
    error = ManifestError("/m/model.toml", "missing", "id")
    assert isinstance(error, RadviewError)
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.path, copy.field, copy.problem, str(copy)) == (
        error.path, "id", "missing", "/m/model.toml: id: missing")


def test_manifest_is_immutable():
    manifest = parse(MINIMAL)
    with pytest.raises(AttributeError):
        manifest.id = "other"  # type: ignore[misc]
    with pytest.raises(TypeError):
        manifest.labels[5] = "x"  # type: ignore[index]


def test_lesion_filter_is_optional_and_only_for_segmentation():
    assert parse(MINIMAL).lesion_filter is None
    spec = parse(MINIMAL + LESION_FILTER).lesion_filter
    assert spec.weights == (0, 1, 0, 0, 0, 0, 0, 0) and spec.bias == -0.5
    assert spec.threshold == 0.4 and spec.tumour_weight == 1.0  # the default
    assert parse(MINIMAL + LESION_FILTER + "tumour_weight = 2.5\n").lesion_filter \
        .tumour_weight == 2.5
    with pytest.raises(ManifestError, match="expected a positive number up to 100") as caught:
        parse(MINIMAL + LESION_FILTER + "tumour_weight = 0\n")
    assert caught.value.field == "lesion_filter.tumour_weight"
    triage = MINIMAL.replace('task = "segmentation"', 'task = "triage"') + LESION_FILTER
    with pytest.raises(ManifestError, match="only segmentation models have one") as caught:
        parse(triage)
    assert caught.value.field == "lesion_filter"
