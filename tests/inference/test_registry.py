"""Model discovery and validation against real (tiny) ONNX files, and `radview models`."""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from radview.cli import main  # noqa: E402
from radview.inference import registry  # noqa: E402
from radview.inference.manifest import ManifestError, load_manifest  # noqa: E402
from radview.inference.registry import (  # noqa: E402
    ModalityMismatchError,
    ModelFileError,
    ModelSource,
    RegisteredModel,
    UnknownModelError,
    check_modality,
    discover_models,
    read_onnx_opsets,
    sha256_of,
    validate_model,
)


# ---------------------------------------------------------------------------- builders
def write_onnx(path: Path, *, input_name: str = "image", output_name: str = "logits",
               channels: int = 3, size: tuple[int, int] = (8, 8), classes: int = 2,
               batch: int | str = "N", opset: int = 17, extra_opsets: dict | None = None,
               elem_type: int = TensorProto.FLOAT) -> bytes:
    """A 1x1 convolution ``image [N, C, H, W] -> logits [N, classes, H, W]``."""
    image = helper.make_tensor_value_info(input_name, elem_type, [batch, channels, *size])
    logits = helper.make_tensor_value_info(output_name, elem_type, [batch, classes, *size])
    dtype = np.float16 if elem_type == TensorProto.FLOAT16 else np.float32
    weight = numpy_helper.from_array(
        np.arange(classes * channels, dtype=dtype).reshape(classes, channels, 1, 1), "weight")
    graph = helper.make_graph([helper.make_node("Conv", [input_name, "weight"], [output_name])],
                              "tiny", [image], [logits], [weight])
    opsets = [helper.make_opsetid("", opset)]
    opsets += [helper.make_opsetid(d, v) for d, v in (extra_opsets or {}).items()]
    model = helper.make_model(graph, opset_imports=opsets, producer_name="radview-tests")
    model.ir_version = 8  # what onnxruntime 1.18+ all read
    data = model.SerializeToString()
    path.write_bytes(data)
    return data


MANIFEST = """\
id = "{id}"
version = "{version}"
task = "{task}"
modality = "{modality}"
file = "model.onnx"
sha256 = "{sha256}"
opset = {opset}
training_data = "synthetic phantoms (tests)"

[labels]
0 = "background"
1 = "liver"

[input]
name = "{input_name}"
layout = "NCHW"
size = [8, 8]
spacing_mm = [1.0, 1.0, 2.0]
channels = {channels}

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


def make_model(root: Path, folder: str, *, onnx_kwargs: dict | None = None,
               sha256: str | None = None, extra: str = "", **manifest) -> Path:
    """A model folder ``root/folder`` with model.onnx and a manifest (valid unless told)."""
    path = root / folder
    path.mkdir(parents=True, exist_ok=True)
    data = write_onnx(path / "model.onnx", **(onnx_kwargs or {}))
    values = {"id": folder, "version": "1.0", "task": "segmentation", "modality": "CT",
              "sha256": sha256 or hashlib.sha256(data).hexdigest(), "opset": 17,
              "input_name": "image", "channels": 3}
    values.update(manifest)
    (path / "model.toml").write_text(MANIFEST.format(**values) + extra, encoding="utf-8")
    return path


@pytest.fixture
def builtin(tmp_path) -> Path:
    path = tmp_path / "builtin"
    path.mkdir()
    (path / ".keep").write_text("")  # as in the package: no models, just a placeholder
    return path


@pytest.fixture
def user(tmp_path) -> Path:
    path = tmp_path / "user"
    path.mkdir()
    return path


def discover(builtin: Path, user: Path, **kwargs):
    kwargs.setdefault("entry_points", False)
    return discover_models(builtin_dir=builtin, user_dir=user, **kwargs)


def reasons(result) -> dict[str, str]:
    return {Path(bad.path).parent.name if bad.path.endswith((".toml", ".onnx"))
            else Path(bad.path).name: bad.reason for bad in result.invalid}


# ---------------------------------------------------------------------------- discovery
def test_empty_builtin_folder_and_missing_user_folder(builtin, tmp_path):
    result = discover(builtin, tmp_path / "no-such-folder")
    assert (result.valid, result.invalid, result.notes) == ([], [], [])


def test_shipped_builtin_models_are_all_valid(tmp_path):
    # The package's models_onnx/ holds only a .keep today; whatever ships there must validate.
    result = discover_models(user_dir=tmp_path / "none", entry_points=False)
    assert [bad for bad in result.invalid if bad.source is ModelSource.BUILTIN] == []
    assert registry.default_builtin_dir().is_dir()


def test_valid_model_is_listed(builtin, user):
    make_model(user, "liver-seg")
    result = discover(builtin, user)
    assert result.invalid == []
    [model] = result.valid
    assert isinstance(model, RegisteredModel)
    assert (model.id, model.source, model.manifest.version) == ("liver-seg", ModelSource.USER,
                                                                "1.0")
    assert model.onnx_path == user / "liver-seg" / "model.onnx"
    assert model.graph_input_shape == ("N", 3, 8, 8)
    assert model.graph_output_shape == ("N", 2, 8, 8)
    assert result.get("liver-seg") is model


def test_each_broken_model_is_listed_with_its_reason_and_the_rest_still_work(builtin, user):
    make_model(user, "good")
    make_model(user, "wrong-sha", sha256="0" * 64)
    missing = make_model(user, "missing-field")
    text = (missing / "model.toml").read_text().replace('training_data = "synthetic phantoms '
                                                        '(tests)"\n', "")
    (missing / "model.toml").write_text(text)
    make_model(user, "wrong-input", input_name="img")
    corrupt = make_model(user, "corrupt")
    garbage = b"\x08\x07this is not a protobuf model at all" * 10
    (corrupt / "model.onnx").write_bytes(garbage)
    text = (corrupt / "model.toml").read_text()
    old_sha = text.split('sha256 = "')[1][:64]
    (corrupt / "model.toml").write_text(text.replace(old_sha, hashlib.sha256(garbage).hexdigest()))
    make_model(user, "unknown-task", task="registration")
    make_model(user, "wrong-opset", opset=13)
    make_model(user, "wrong-channels", channels=5)
    make_model(user, "fixed-batch-dynamic-h", onnx_kwargs={"size": ("height", 8)})
    make_model(user, "no-output", onnx_kwargs={"output_name": "scores"})
    make_model(user, "half", onnx_kwargs={"elem_type": TensorProto.FLOAT16})
    no_onnx = make_model(user, "file-missing")
    (no_onnx / "model.onnx").unlink()
    (user / "forgot-manifest").mkdir()
    write_onnx(user / "forgot-manifest" / "net.onnx")
    (user / "empty-folder").mkdir()
    (user / ".hidden").mkdir()
    write_onnx(user / ".hidden" / "x.onnx")

    result = discover(builtin, user)

    assert result.ids() == ["good"]
    why = reasons(result)
    assert set(why) == {"wrong-sha", "missing-field", "wrong-input", "corrupt", "unknown-task",
                        "wrong-opset", "wrong-channels", "fixed-batch-dynamic-h", "no-output",
                        "half", "file-missing", "forgot-manifest"}
    assert why["wrong-sha"].startswith("sha256: does not match model.onnx (its SHA-256 is ")
    assert why["missing-field"] == "training_data: missing"
    assert why["wrong-input"] == "input.name: the graph has no input 'img' (its inputs: 'image')"
    assert why["corrupt"].startswith("is not a loadable ONNX model")
    assert why["unknown-task"].startswith("task: unknown task 'registration'")
    assert why["wrong-opset"] == "opset: the manifest says 13, model.onnx imports opset 17"
    assert why["wrong-channels"].startswith(
        "input.channels: axis C of the graph input 'image' is 3, the manifest says 5")
    assert "axis H of the graph input 'image' is dynamic ('height')" in why["fixed-batch-dynamic-h"]
    assert "input.dynamic_axes" in why["fixed-batch-dynamic-h"]
    assert why["no-output"] == ("output.name: the graph has no output 'logits' (its outputs: "
                                "'scores')")
    assert why["half"] == ("input.dtype: the graph input 'image' is tensor(float16), not "
                           "tensor(float)")
    assert why["file-missing"].startswith("file: model.onnx does not exist in ")
    assert why["forgot-manifest"] == "has .onnx files but no model.toml"
    for bad in result.invalid:
        assert bad.source is ModelSource.USER
        assert "\n" not in bad.reason
    by_folder = {Path(b.path).parent.name: b for b in result.invalid}
    assert by_folder["corrupt"].path == str(corrupt / "model.onnx")  # the file at fault
    assert by_folder["wrong-sha"].path == str(user / "wrong-sha" / "model.toml")
    assert by_folder["wrong-sha"].model_id == "wrong-sha"
    assert by_folder["unknown-task"].model_id is None  # the manifest itself is unreadable


def test_dynamic_axes_allow_free_graph_axes(builtin, user):
    # Free H/W in the graph: refused while the manifest fixes them (see above), allowed here.
    make_model(user, "free-size", onnx_kwargs={"size": ("height", "width")})
    toml = user / "free-size" / "model.toml"
    toml.write_text(toml.read_text().replace("channels = 3",
                                             'channels = 3\ndynamic_axes = ["N", "H", "W"]'))
    make_model(user, "batch-one", onnx_kwargs={"batch": 1})  # N in dynamic_axes by default
    result = discover(builtin, user)
    assert result.invalid == []
    assert result.ids() == ["batch-one", "free-size"]
    assert result.get("free-size").graph_input_shape == ("N", 3, "height", "width")


def test_batch_axis_not_declared_dynamic_must_be_one(builtin, user):
    folder = make_model(user, "strict-batch")
    toml = folder / "model.toml"
    toml.write_text(toml.read_text().replace("channels = 3", "channels = 3\ndynamic_axes = []"))
    [bad] = discover(builtin, user).invalid
    assert "axis N of the graph input 'image' is dynamic ('N')" in bad.reason


def test_output_shape_is_checked_when_given(builtin, user):
    make_model(user, "shape-ok")
    make_model(user, "shape-bad")
    for name, shape in (("shape-ok", '["N", 2, 8, 8]'), ("shape-bad", '["N", 3, 8, 8]')):
        toml = user / name / "model.toml"
        toml.write_text(toml.read_text().replace('kind = "logits"',
                                                 f'kind = "logits"\nshape = {shape}'))
    result = discover(builtin, user)
    assert result.ids() == ["shape-ok"]
    assert reasons(result)["shape-bad"].startswith(
        "output.shape: axis 1 of the graph output 'logits' is 2, the manifest says 3")


def test_card_and_license_files_must_exist(builtin, user):
    folder = make_model(user, "carded")
    toml = folder / "model.toml"
    toml.write_text(toml.read_text().replace('file = "model.onnx"',
                                             'file = "model.onnx"\ncard = "MODEL_CARD.md"'))
    assert reasons(discover(builtin, user))["carded"].startswith("card: MODEL_CARD.md does not")
    (folder / "MODEL_CARD.md").write_text("# card\n")
    assert discover(builtin, user).ids() == ["carded"]


def test_validate_model_raises_the_specific_error(user):
    good = make_model(user, "good")
    assert validate_model(good).id == "good"
    bad = make_model(user, "bad", sha256="1" * 64)
    with pytest.raises(ManifestError, match=r"model.toml: sha256: does not match"):
        validate_model(bad)


# ---------------------------------------------------------------------------- duplicates
def test_user_model_overrides_builtin_with_a_note(builtin, user):
    make_model(builtin, "liver-seg", version="1.0")
    make_model(user, "liver-seg", version="2.0")
    result = discover(builtin, user)
    [model] = result.valid
    assert (model.source, model.manifest.version) == (ModelSource.USER, "2.0")
    assert len(result.notes) == 1
    assert result.notes[0].startswith("user model liver-seg 2.0 (")
    assert "overrides builtin model liver-seg 1.0" in result.notes[0]
    assert model.notes == tuple(result.notes)
    assert result.invalid == []


def test_invalid_user_copy_does_not_hide_the_builtin(builtin, user):
    make_model(builtin, "liver-seg", version="1.0")
    make_model(user, "liver-seg", version="2.0", sha256="2" * 64)
    result = discover(builtin, user)
    assert [(m.source, m.manifest.version) for m in result.valid] == [(ModelSource.BUILTIN,
                                                                       "1.0")]
    assert [bad.source for bad in result.invalid] == [ModelSource.USER]
    assert result.notes == []


def test_duplicate_id_within_one_source_keeps_the_first(builtin, user):
    make_model(user, "a-folder", id="same")
    make_model(user, "b-folder", id="same")
    result = discover(builtin, user)
    assert [m.folder.name for m in result.valid] == ["a-folder"]
    [bad] = result.invalid
    assert bad.path == str(user / "b-folder" / "model.toml")
    assert bad.reason.startswith("duplicate id 'same': ")
    assert str(user / "a-folder") in bad.reason


def test_get_explains_unknown_and_invalid_ids(builtin, user):
    make_model(user, "good")
    make_model(user, "broken", sha256="3" * 64)
    result = discover(builtin, user)
    with pytest.raises(UnknownModelError,
                       match=r"no model 'nope' is installed \(available: good\)"):
        result.get("nope")
    with pytest.raises(UnknownModelError, match=r"model broken cannot be used: .*sha256: does not"):
        result.get("broken")


# ---------------------------------------------------------------------------- entry points
@pytest.fixture
def plugin_module(tmp_path, monkeypatch):
    """An importable module ``radview_test_plugin`` exposing model folders several ways."""
    package_dir = tmp_path / "site"
    package_dir.mkdir()
    models = tmp_path / "plugin-models"
    make_model(models, "plugin-seg")
    make_model(models, "plugin-attr")
    make_model(models, "builtin-seg", version="3.0")
    (package_dir / "radview_test_plugin.py").write_text(textwrap.dedent(f"""
        from pathlib import Path
        ATTR_DIR = Path({str(models / "plugin-attr")!r})
        def seg_dir():
            return {str(models / "plugin-seg")!r}
        def override_dir():
            return Path({str(models / "builtin-seg")!r})
        def broken():
            raise RuntimeError("licence server unreachable")
        def not_a_path():
            return 42
        def empty_dir():
            return {str(tmp_path)!r}
    """))
    monkeypatch.syspath_prepend(str(package_dir))
    yield "radview_test_plugin"
    sys.modules.pop("radview_test_plugin", None)


def test_entry_points_contract(builtin, user, plugin_module, monkeypatch, tmp_path):
    make_model(builtin, "builtin-seg", version="1.0")
    group = registry.ENTRY_POINT_GROUP

    def entry(name, target):
        return importlib.metadata.EntryPoint(name, target, group)

    points = [
        entry("seg", f"{plugin_module}:seg_dir"),
        entry("seg", f"{plugin_module}:seg_dir"),  # the same distribution seen twice
        entry("attr", f"{plugin_module}:ATTR_DIR"),
        entry("override", f"{plugin_module}:override_dir"),
        entry("broken", f"{plugin_module}:broken"),
        entry("number", f"{plugin_module}:not_a_path"),
        entry("empty", f"{plugin_module}:empty_dir"),
        entry("missing-module", "radview_no_such_module:models"),
    ]
    monkeypatch.setattr(registry, "_entry_points", lambda: points)

    result = discover(builtin, user, entry_points=True)

    assert result.ids() == ["builtin-seg", "plugin-attr", "plugin-seg"]
    sources = {m.id: m.source for m in result.valid}
    assert sources == {"builtin-seg": ModelSource.ENTRY_POINT,
                       "plugin-attr": ModelSource.ENTRY_POINT,
                       "plugin-seg": ModelSource.ENTRY_POINT}
    assert result.get("plugin-seg").origin == f"entry point seg = {plugin_module}:seg_dir"
    assert result.get("builtin-seg").manifest.version == "3.0"
    assert "entry-point model builtin-seg 3.0" in result.notes[0]
    why = {bad.path: bad.reason for bad in result.invalid}
    assert why == {
        f"entry point broken = {plugin_module}:broken":
            "failed: RuntimeError: licence server unreachable",
        f"entry point number = {plugin_module}:not_a_path":
            "returned int, expected the path of a folder containing model.toml",
        f"entry point empty = {plugin_module}:empty_dir": f"{tmp_path} holds no model.toml",
        "entry point missing-module = radview_no_such_module:models":
            "failed: ModuleNotFoundError: No module named 'radview_no_such_module'",
    }
    assert all(bad.source is ModelSource.ENTRY_POINT for bad in result.invalid)


def test_entry_points_can_be_switched_off(builtin, user, monkeypatch):
    def fail():
        raise AssertionError("entry points must not be loaded")

    monkeypatch.setattr(registry, "_entry_points", fail)
    assert discover(builtin, user, entry_points=False).valid == []


def test_installed_entry_points_are_read(builtin, user):
    # Whatever is installed in this environment: discovery must not raise.
    result = discover(builtin, user, entry_points=True)
    assert all(bad.source is ModelSource.ENTRY_POINT for bad in result.invalid)


# ---------------------------------------------------------------------------- file checks
def test_sha256_is_streamed_and_exact(tmp_path):
    path = tmp_path / "big.bin"
    data = os.urandom(3 * (1 << 20) + 123)  # several chunks plus a partial one
    path.write_bytes(data)
    assert sha256_of(path) == hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize("opset", [11, 13, 17, 21])
def test_opsets_are_read_from_the_model_header(tmp_path, opset):
    path = tmp_path / "m.onnx"
    write_onnx(path, opset=opset, extra_opsets={"com.microsoft": 1})
    assert read_onnx_opsets(path) == {"": opset, "com.microsoft": 1}
    loaded = onnx.load(str(path), load_external_data=False)  # the reference reader agrees
    assert {o.domain: o.version for o in loaded.opset_import} == read_onnx_opsets(path)


@pytest.mark.parametrize("data", [b"\xff\xff\xff", b"\x3a\xff\x7f", b"\x0f", b""])
def test_opset_reader_refuses_non_protobuf(tmp_path, data):
    path = tmp_path / "m.onnx"
    path.write_bytes(data)
    if data:
        with pytest.raises(ModelFileError, match=r"m.onnx: is not an ONNX model \("):
            read_onnx_opsets(path)
    else:
        assert read_onnx_opsets(path) == {}


# ---------------------------------------------------------------------------- modality
def test_modality_check(user):
    model = validate_model(make_model(user, "liver-tumor-seg"))
    assert check_modality(model, "CT") is None
    assert check_modality(model.manifest, " ct ") is None
    with pytest.raises(ModalityMismatchError) as caught:
        check_modality(model, "MR")
    assert str(caught.value) == ("model liver-tumor-seg expects CT, the series is MR; use --force "
                                 "to run anyway")
    with pytest.raises(ModalityMismatchError, match="the series' modality is unknown"):
        check_modality(model, "")
    warning = check_modality(model, "MR", force=True)
    assert warning == "model liver-tumor-seg expects CT, the series is MR; run anyway (forced)"


# ---------------------------------------------------------------------------- locations
def test_user_dir_follows_radview_data_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("RADVIEW_DATA_DIR", str(tmp_path / "data"))
    assert registry.default_user_dir() == tmp_path / "data" / "models"
    monkeypatch.setenv("RADVIEW_DATA_DIR", "")
    import platformdirs

    assert registry.default_user_dir() == platformdirs.user_data_path("radview") / "models"


def test_modules_do_not_import_onnxruntime_at_import_time():
    code = ("import sys\n"
            "import radview.inference.manifest, radview.inference.registry\n"
            "import radview.inference.runtime, radview.cli\n"
            "print('onnxruntime' in sys.modules)\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"


# ---------------------------------------------------------------------------- CLI
def test_cli_models_json(tmp_path, monkeypatch, capsys):
    data_dir = tmp_path / "data"
    make_model(data_dir / "models", "user-seg")
    make_model(data_dir / "models", "user-broken", sha256="4" * 64)
    monkeypatch.setenv("RADVIEW_DATA_DIR", str(data_dir))

    assert main(["models", "--json"]) == 0

    payload = json.loads(capsys.readouterr().out)
    assert set(payload) == {"models", "invalid", "notes", "execution", "providers", "search"}
    user_models = [m for m in payload["models"] if m["source"] == "user"]
    assert user_models == [{
        "id": "user-seg",
        "version": "1.0",
        "task": "segmentation",
        "modality": "CT",
        "source": "user",
        "origin": str(data_dir / "models" / "user-seg"),
        "sha256_prefix": sha256_of(data_dir / "models" / "user-seg" / "model.onnx")[:12],
        "provider": "CPUExecutionProvider",
        "folder": str(data_dir / "models" / "user-seg"),
        "file": "model.onnx",
        "labels": {"0": "background", "1": "liver"},
        "notes": [],
    }]
    broken = [bad for bad in payload["invalid"] if bad["source"] == "user"]
    assert broken == [{"path": str(data_dir / "models" / "user-broken" / "model.toml"),
                       "reason": broken[0]["reason"], "source": "user", "id": "user-broken"}]
    assert broken[0]["reason"].startswith("sha256: does not match model.onnx")
    assert payload["execution"]["providers"][-1] == "CPUExecutionProvider"
    assert payload["execution"]["device"] == "auto"
    assert payload["search"]["user"] == str(data_dir / "models")
    assert payload["search"]["entry_point_group"] == "radview.models"
    assert {p["name"] for p in payload["providers"]} >= {"CPUExecutionProvider",
                                                          "CUDAExecutionProvider"}


def test_cli_models_text(tmp_path, monkeypatch, capsys):
    data_dir = tmp_path / "data"
    make_model(data_dir / "models", "user-seg")
    make_model(data_dir / "models", "user-broken", task="bogus")
    monkeypatch.setenv("RADVIEW_DATA_DIR", str(data_dir))
    assert main(["models", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "execution provider: CPUExecutionProvider (CPU requested)" in out
    assert "user-seg 1.0  segmentation  CT  user  sha256 " in out
    assert f"{data_dir / 'models' / 'user-broken' / 'model.toml'}: task: unknown task" in out


def test_cli_models_with_nothing_installed(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("RADVIEW_DATA_DIR", str(tmp_path / "empty"))
    assert main(["models", "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert [m for m in payload["models"] if m["source"] == "user"] == []


def test_cli_models_reports_a_listing_failure(monkeypatch, capsys):
    from radview.inference import runtime

    def unavailable():
        raise runtime.InferenceUnavailableError("onnxruntime cannot be imported (test)")

    monkeypatch.setattr(registry, "import_onnxruntime", unavailable)
    assert main(["models"]) == 2
    assert "radview: onnxruntime cannot be imported (test)" in capsys.readouterr().err


def test_load_manifest_of_built_model(user):
    manifest = load_manifest(make_model(user, "m"))
    assert manifest.sha256 == sha256_of(user / "m" / "model.onnx")
