"""The model registry: find every model manifest, check it against its ``.onnx``, list the rest.

Built-in and third-party models take the same route (DESIGN rule 7): a folder holding a
``model.toml`` (see :mod:`radview.inference.manifest`) next to the ``.onnx`` file it describes.

Where models come from, in this order
-------------------------------------
1. **builtin**: every sub-folder of the package's ``radview/models_onnx/`` (may be empty).
2. **entry-point**: installed distributions advertise models in the entry-point group
   ``radview.models``. Contract: the entry point refers to either a path (``str`` or
   ``os.PathLike``, e.g. a module attribute ``MODEL_DIR = Path(__file__).parent / "liver"``)
   or a callable taking no arguments that returns one. The path is a folder on the file system
   (not inside a zip) that contains ``model.toml``; one entry point, one model::

       [project.entry-points."radview.models"]
       liver-seg-v2 = "acme_models:liver_seg_v2_dir"

   A failing entry point (import error, exception, wrong return value) is listed as invalid
   with its reason; it never stops the discovery of the others.
3. **user**: every sub-folder of ``<user data dir>/models`` (``$RADVIEW_DATA_DIR/models`` when
   that variable is set, as for the study index). Nothing is created there by discovery.

Sub-folders whose names start with ``.`` are skipped; a sub-folder with ``.onnx`` files but no
``model.toml`` is listed as invalid (the user probably forgot the manifest).

What is checked, per manifest
-----------------------------
The manifest schema; the ``.onnx`` file (and ``card``/``license_file``) exists; its SHA-256
(streamed) equals ``sha256``; onnxruntime loads it on the CPU; the graph's input named
``input.name`` exists, is the only input the graph requires, has the element type, rank
(``len(input.layout)``) and sizes the manifest gives (axes in ``input.dynamic_axes`` may be
symbolic or any size; every other axis must be the same fixed size in the graph); the output
named ``output.name`` exists (with ``output.shape`` when given); the ``ai.onnx`` opset the model
imports equals ``opset``. The opset is read from the ModelProto's header with a few lines of
protobuf parsing (onnxruntime does not expose it and the ``onnx`` package is only a test
dependency), so the check always runs.

Duplicate ids
-------------
Within one source the first folder in name order wins; the others are listed as invalid
("duplicate id"). Across sources the later source wins: **user overrides entry-point overrides
builtin**, so a site can replace a built-in model by dropping a newer version in its data
folder. The winner carries a note naming what it replaced, and the result's ``notes`` list it.
Only valid models take part: an invalid user copy never hides a working built-in model.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import io
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any, BinaryIO

from radview.core.errors import InputFileError, RadviewError
from radview.inference.manifest import (
    MANIFEST_FILE_NAME,
    ManifestError,
    ModelManifest,
    ModelTask,
    load_manifest,
)
from radview.inference.runtime import (
    CPU_PROVIDER,
    import_onnxruntime,
    runtime_errors,
    session_options,
)

__all__ = [
    "ENTRY_POINT_GROUP",
    "ModelSource",
    "ModelFileError",
    "ModalityMismatchError",
    "UnknownModelError",
    "RegisteredModel",
    "InvalidModel",
    "RegistryResult",
    "default_builtin_dir",
    "default_user_dir",
    "discover_models",
    "validate_model",
    "read_onnx_opsets",
    "sha256_of",
    "check_modality",
]

ENTRY_POINT_GROUP = "radview.models"
_ONNX_DTYPES = {"float32": "tensor(float)", "float16": "tensor(float16)"}
_HASH_CHUNK = 1 << 20


class ModelSource(Enum):
    """Where a model was found; later sources override earlier ones (see the module doc)."""

    BUILTIN = "builtin"
    ENTRY_POINT = "entry-point"
    USER = "user"


class ModelFileError(InputFileError):
    """A model's ``.onnx`` file cannot be used (not ONNX, unreadable, no opset)."""


class ModalityMismatchError(RadviewError):
    """The series' modality is not the one the model was trained on (and not forced)."""


class UnknownModelError(RadviewError):
    """No valid model has the requested id."""


@dataclass(frozen=True)
class RegisteredModel:
    """A model whose manifest and ``.onnx`` file passed every check."""

    manifest: ModelManifest
    source: ModelSource
    #: Where it came from, for people: the folder, or the entry point and its distribution.
    origin: str
    #: The graph's input and output shapes as onnxruntime reports them (ints, names or None).
    graph_input_shape: tuple[Any, ...] = ()
    graph_output_shape: tuple[Any, ...] = ()
    notes: tuple[str, ...] = ()

    @property
    def id(self) -> str:
        return self.manifest.id

    @property
    def folder(self) -> Path:
        return self.manifest.folder

    @property
    def onnx_path(self) -> Path:
        return self.manifest.onnx_path


@dataclass(frozen=True)
class InvalidModel:
    """A model that cannot be used; ``path`` names the file (or entry point) at fault."""

    path: str
    reason: str
    source: ModelSource
    #: The manifest's id when the manifest itself could be read.
    model_id: str | None = None


@dataclass
class RegistryResult:
    """What :func:`discover_models` found: usable models (by id) and unusable ones (why)."""

    valid: list[RegisteredModel] = field(default_factory=list)
    invalid: list[InvalidModel] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def ids(self) -> list[str]:
        return [model.id for model in self.valid]

    def get(self, model_id: str) -> RegisteredModel:
        """The valid model with ``model_id``.

        Raises
        ------
        UnknownModelError
            No valid model has that id; the message says why (invalid, or what is available).
        """
        for model in self.valid:
            if model.id == model_id:
                return model
        for bad in self.invalid:
            if bad.model_id == model_id:
                raise UnknownModelError(f"model {model_id} cannot be used: {bad.path}: "
                                        f"{bad.reason}")
        known = ", ".join(self.ids()) or "none"
        raise UnknownModelError(f"no model {model_id!r} is installed (available: {known})")

    def for_task(self, task: ModelTask) -> list[RegisteredModel]:
        return [model for model in self.valid if model.manifest.task is task]


# ---------------------------------------------------------------------------- locations
def default_builtin_dir() -> Path:
    """The package's ``radview/models_onnx`` folder."""
    return Path(__file__).resolve().parent.parent / "models_onnx"


def default_user_dir() -> Path:
    """``<radview data dir>/models``: ``$RADVIEW_DATA_DIR/models`` or the platform's data dir.

    The data dir is the one the study index uses
    (:func:`radview.io.study_index.default_index_path`), so one environment variable moves all of
    radview's user data.
    """
    from radview.io.study_index import default_index_path

    return default_index_path().parent / "models"


# ---------------------------------------------------------------------------- discovery
def discover_models(builtin_dir: str | Path | None = None, user_dir: str | Path | None = None,
                    entry_points: bool = True) -> RegistryResult:
    """Find, validate and list every model.

    Parameters
    ----------
    builtin_dir
        Folder of built-in model folders; default :func:`default_builtin_dir`.
    user_dir
        Folder of the user's model folders; default :func:`default_user_dir`.
    entry_points
        Also load the ``radview.models`` entry points of installed distributions.

    Returns
    -------
    RegistryResult
        ``valid`` sorted by id (one model per id, see "Duplicate ids" in the module doc),
        ``invalid`` in discovery order, each with a one-line reason.

    Raises
    ------
    InferenceUnavailableError
        onnxruntime cannot be imported, so no model can be checked.
    """
    import_onnxruntime()  # fail once, clearly, instead of once per model
    result = RegistryResult()
    chosen: dict[str, RegisteredModel] = {}
    sources: list[tuple[ModelSource, Iterator[tuple[str, Path] | InvalidModel]]] = [
        (ModelSource.BUILTIN, _folder_candidates(
            Path(builtin_dir) if builtin_dir is not None else default_builtin_dir(),
            ModelSource.BUILTIN)),
    ]
    if entry_points:
        sources.append((ModelSource.ENTRY_POINT, _entry_point_candidates()))
    sources.append((ModelSource.USER, _folder_candidates(
        Path(user_dir) if user_dir is not None else default_user_dir(), ModelSource.USER)))

    for source, candidates in sources:
        from_this_source: dict[str, RegisteredModel] = {}
        for candidate in candidates:
            if isinstance(candidate, InvalidModel):
                result.invalid.append(candidate)
                continue
            origin, folder = candidate
            try:
                model = validate_model(folder, source, origin=origin)
            except RadviewError as error:
                result.invalid.append(_invalid(error, folder, source))
                continue
            first = from_this_source.get(model.id)
            if first is not None:
                result.invalid.append(InvalidModel(
                    str(model.manifest.path), f"duplicate id {model.id!r}: {first.origin} "
                    "already provides it", source, model.id))
                continue
            from_this_source[model.id] = model
            replaced = chosen.get(model.id)
            if replaced is not None:
                note = (f"{source.value} model {model.id} {model.manifest.version} ({origin}) "
                        f"overrides {replaced.source.value} model {replaced.id} "
                        f"{replaced.manifest.version} ({replaced.origin})")
                model = _with_note(model, note)
                result.notes.append(note)
            chosen[model.id] = model
    result.valid = sorted(chosen.values(), key=lambda m: m.id)
    return result


def _folder_candidates(root: Path, source: ModelSource
                       ) -> Iterator[tuple[str, Path] | InvalidModel]:
    if not root.is_dir():  # no user models yet, or a package without built-in models
        return
    try:
        children = sorted(root.iterdir(), key=lambda p: p.name)
    except OSError as error:
        yield InvalidModel(str(root), f"cannot be listed ({error.strerror or error})", source)
        return
    for child in children:
        if child.name.startswith(".") or not child.is_dir():
            continue
        if (child / MANIFEST_FILE_NAME).is_file():
            yield str(child), child
        elif any(child.glob("*.onnx")):
            yield InvalidModel(str(child), f"has .onnx files but no {MANIFEST_FILE_NAME}",
                               source)


def _entry_point_candidates() -> Iterator[tuple[str, Path] | InvalidModel]:
    source = ModelSource.ENTRY_POINT
    seen: set[tuple[str, str]] = set()
    for entry in sorted(_entry_points(), key=lambda e: (e.name, e.value)):
        if (entry.name, entry.value) in seen:  # the same distribution found twice on sys.path
            continue
        seen.add((entry.name, entry.value))
        dist = getattr(entry, "dist", None)
        origin = f"entry point {entry.name} = {entry.value}"
        if dist is not None:
            origin += f" ({dist.name} {dist.version})"
        try:
            target = entry.load()
            if callable(target) and not isinstance(target, str | os.PathLike):
                target = target()
        except Exception as error:  # noqa: BLE001 - third-party code must not stop discovery
            yield InvalidModel(origin, f"failed: {type(error).__name__}: {_first_line(error)}",
                               source)
            continue
        if not isinstance(target, str | os.PathLike):
            yield InvalidModel(origin, f"returned {type(target).__name__}, expected the path "
                                       f"of a folder containing {MANIFEST_FILE_NAME}", source)
            continue
        folder = Path(target)
        if not (folder / MANIFEST_FILE_NAME).is_file():
            yield InvalidModel(origin, f"{folder} holds no {MANIFEST_FILE_NAME}", source)
            continue
        yield origin, folder


def _entry_points() -> Sequence[importlib.metadata.EntryPoint]:
    """The installed ``radview.models`` entry points (a function so tests can replace it)."""
    return list(importlib.metadata.entry_points(group=ENTRY_POINT_GROUP))


def _invalid(error: RadviewError, folder: Path, source: ModelSource) -> InvalidModel:
    path = getattr(error, "path", str(folder / MANIFEST_FILE_NAME))
    reason = getattr(error, "reason", str(error))
    return InvalidModel(path, reason, source, getattr(error, "model_id", None))


def _with_note(model: RegisteredModel, note: str) -> RegisteredModel:
    return RegisteredModel(model.manifest, model.source, model.origin, model.graph_input_shape,
                           model.graph_output_shape, (*model.notes, note))


# ---------------------------------------------------------------------------- validation
def validate_model(folder: str | Path, source: ModelSource = ModelSource.USER, *,
                   origin: str | None = None) -> RegisteredModel:
    """Check one model folder (or its ``model.toml``) completely.

    Returns
    -------
    RegisteredModel

    Raises
    ------
    ManifestError
        The manifest is broken or disagrees with the model (file, sha256, graph, opset).
    ModelFileError
        The ``.onnx`` file is not a model onnxruntime can load.
    """
    manifest = load_manifest(folder)
    try:
        graph_input, graph_output = _check_files_and_graph(manifest)
    except (ManifestError, ModelFileError) as error:
        error.model_id = manifest.id  # lets RegistryResult.get explain an invalid model
        raise
    return RegisteredModel(manifest, source, origin or str(manifest.folder),
                           graph_input, graph_output)


def _check_files_and_graph(manifest: ModelManifest) -> tuple[tuple, tuple]:
    path = manifest.path
    onnx_path = manifest.onnx_path
    if not onnx_path.is_file():
        raise ManifestError(path, f"{manifest.file} does not exist in {manifest.folder}", "file")
    for key in ("card", "license_file"):
        name = getattr(manifest, key)
        if name is not None and not (manifest.folder / name).is_file():
            raise ManifestError(path, f"{name} does not exist in {manifest.folder}", key)
    try:
        digest = sha256_of(onnx_path)
    except OSError as error:
        raise ModelFileError(onnx_path, f"cannot be read ({error.strerror or error})") from None
    if digest != manifest.sha256:
        raise ManifestError(path, f"does not match {manifest.file} (its SHA-256 is "
                                  f"{digest[:16]}..., the manifest says {manifest.sha256[:16]}...)",
                            "sha256")
    session = _load_for_checking(onnx_path)
    graph_input = _check_input(manifest, session)
    graph_output = _check_output(manifest, session)
    _check_opset(manifest)
    return graph_input, graph_output


def _load_for_checking(onnx_path: Path):
    ort = import_onnxruntime()
    # Unoptimised and single-threaded: only the interface is looked at, quickly.
    options = session_options(threads=1, optimize=False)
    try:
        return ort.InferenceSession(str(onnx_path), sess_options=options,
                                    providers=[CPU_PROVIDER])
    except runtime_errors() as error:
        raise ModelFileError(onnx_path, f"is not a loadable ONNX model: {_ort_message(error)}"
                             ) from None


def _check_input(manifest: ModelManifest, session) -> tuple:
    spec = manifest.input
    inputs = {arg.name: arg for arg in session.get_inputs()}
    names = ", ".join(repr(n) for n in inputs) or "none"
    if spec.name not in inputs:
        raise ManifestError(manifest.path, f"the graph has no input {spec.name!r} (its inputs: "
                                           f"{names})", "input.name")
    if len(inputs) > 1:
        raise ManifestError(manifest.path, f"the graph needs inputs the manifest does not feed "
                                           f"(its inputs: {names})", "input.name")
    arg = inputs[spec.name]
    if arg.type != _ONNX_DTYPES[spec.dtype]:
        raise ManifestError(manifest.path, f"the graph input {spec.name!r} is {arg.type}, not "
                                           f"{_ONNX_DTYPES[spec.dtype]}", "input.dtype")
    shape = tuple(arg.shape)
    expected = spec.expected_shape()
    if len(shape) != len(expected):
        raise ManifestError(manifest.path, f"the graph input {spec.name!r} has {len(shape)} axes "
                                           f"{_shape_text(shape)}, layout {spec.layout!r} has "
                                           f"{len(expected)}", "input.layout")
    for axis, want, have in zip(spec.layout, expected, shape, strict=True):
        if want is None or have == want:
            continue
        field_name = _axis_field(axis)
        if not _is_fixed(have):
            raise ManifestError(manifest.path, f"axis {axis} of the graph input {spec.name!r} is "
                                               f"dynamic ({have!r}) but the manifest fixes it to "
                                               f"{want}; list {axis!r} in input.dynamic_axes to "
                                               "allow that", field_name)
        raise ManifestError(manifest.path, f"axis {axis} of the graph input {spec.name!r} is "
                                           f"{have}, the manifest says {want} "
                                           f"(graph shape {_shape_text(shape)})", field_name)
    return shape


def _check_output(manifest: ModelManifest, session) -> tuple:
    spec = manifest.output
    outputs = {arg.name: arg for arg in session.get_outputs()}
    if spec.name not in outputs:
        names = ", ".join(repr(n) for n in outputs) or "none"
        raise ManifestError(manifest.path, f"the graph has no output {spec.name!r} (its outputs: "
                                           f"{names})", "output.name")
    shape = tuple(outputs[spec.name].shape)
    if spec.shape is None:
        return shape
    if len(shape) != len(spec.shape):
        raise ManifestError(manifest.path, f"the graph output {spec.name!r} has shape "
                                           f"{_shape_text(shape)}, the manifest says "
                                           f"{_shape_text(spec.shape)}", "output.shape")
    for index, (want, have) in enumerate(zip(spec.shape, shape, strict=True)):
        if isinstance(want, int) and have != want:
            raise ManifestError(manifest.path, f"axis {index} of the graph output {spec.name!r} "
                                               f"is {have!r}, the manifest says {want} (graph "
                                               f"shape {_shape_text(shape)})", "output.shape")
    return shape


def _check_opset(manifest: ModelManifest) -> None:
    try:
        opsets = read_onnx_opsets(manifest.onnx_path)
    except OSError as error:
        raise ModelFileError(manifest.onnx_path, f"cannot be read ({error.strerror or error})"
                             ) from None
    actual = opsets.get("", opsets.get("ai.onnx"))
    if actual is None:
        raise ModelFileError(manifest.onnx_path, "imports no ai.onnx opset")
    if actual != manifest.opset:
        raise ManifestError(manifest.path, f"the manifest says {manifest.opset}, "
                                           f"{manifest.file} imports opset {actual}", "opset")


def sha256_of(path: str | Path) -> str:
    """The SHA-256 of a file, read in 1 MiB chunks (models can be hundreds of MB)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


# ---------------------------------------------------------------------------- ONNX header
class _NotProtobuf(Exception):
    pass


def read_onnx_opsets(path: str | Path) -> dict[str, int]:
    """The opsets an ONNX file imports (domain -> version; ``""`` is ai.onnx).

    Reads only the ModelProto's top-level fields and ``opset_import`` (field 8), seeking past
    the graph, so it costs a few reads whatever the model's size and needs no ``onnx`` package.

    Raises
    ------
    ModelFileError
        The file is not a protobuf ModelProto.
    OSError
        The file cannot be read.
    """
    path = Path(path)
    opsets: dict[str, int] = {}
    with open(path, "rb") as handle:
        size = os.fstat(handle.fileno()).st_size
        try:
            for number, wire, value in _fields(handle, size, skip_except={8}):
                if number == 8 and wire == 2:
                    domain, version = _opset_entry(value)
                    opsets[domain] = version
        except _NotProtobuf as error:
            raise ModelFileError(path, f"is not an ONNX model ({error})") from None
    return opsets


def _opset_entry(data: bytes) -> tuple[str, int]:
    domain, version = "", 0
    for number, wire, value in _fields(io.BytesIO(data), len(data), skip_except={1}):
        if number == 1 and wire == 2:
            try:
                domain = value.decode("utf-8")
            except UnicodeDecodeError:
                raise _NotProtobuf("opset domain is not UTF-8") from None
        elif number == 2 and wire == 0:
            version = value
    return domain, version


def _fields(handle: BinaryIO, size: int, skip_except: set[int]) -> Iterator[tuple[int, int, Any]]:
    """Yield (field number, wire type, value) of one protobuf message; length-delimited fields
    not in ``skip_except`` are skipped (their value is None)."""
    while True:
        start = handle.tell()
        key = _varint(handle, allow_eof=True)
        if key is None:
            return
        number, wire = key >> 3, key & 7
        if number == 0:
            raise _NotProtobuf(f"field number 0 at byte {start}")
        if wire == 0:
            yield number, wire, _varint(handle)
        elif wire == 1:
            _skip(handle, 8, size)
        elif wire == 5:
            _skip(handle, 4, size)
        elif wire == 2:
            length = _varint(handle)
            if handle.tell() + length > size:
                raise _NotProtobuf(f"field {number} at byte {start} runs past the end of the file")
            if number in skip_except:
                yield number, wire, handle.read(length)
            else:
                handle.seek(length, io.SEEK_CUR)
        else:
            raise _NotProtobuf(f"unknown wire type {wire} at byte {start}")


def _varint(handle: BinaryIO, allow_eof: bool = False) -> int | None:
    result = shift = 0
    while True:
        byte = handle.read(1)
        if not byte:
            if allow_eof and shift == 0:
                return None
            raise _NotProtobuf("truncated")
        result |= (byte[0] & 0x7F) << shift
        if not byte[0] & 0x80:
            return result
        shift += 7
        if shift > 63:
            raise _NotProtobuf("varint too long")


def _skip(handle: BinaryIO, count: int, size: int) -> None:
    if handle.tell() + count > size:
        raise _NotProtobuf("truncated")
    handle.seek(count, io.SEEK_CUR)


# ---------------------------------------------------------------------------- modality
def check_modality(model: ModelManifest | RegisteredModel, volume_modality: str | None,
                   force: bool = False) -> str | None:
    """Refuse to run a model on a series of another modality unless forced.

    Parameters
    ----------
    model
        The model (or its manifest).
    volume_modality
        The series' DICOM Modality; empty or None when unknown (e.g. a NIfTI file).
    force
        Run anyway (the user said ``--force``).

    Returns
    -------
    str or None
        None when the modalities agree; otherwise (forced) a one-line warning to show and to
        record in the report.

    Raises
    ------
    ModalityMismatchError
        The modalities differ (or the series' is unknown) and ``force`` is False.
    """
    manifest = model.manifest if isinstance(model, RegisteredModel) else model
    expected = manifest.modality.upper()
    actual = (volume_modality or "").strip().upper()
    if actual == expected:
        return None
    series = f"the series is {actual}" if actual else "the series' modality is unknown"
    if not force:
        raise ModalityMismatchError(f"model {manifest.id} expects {expected}, {series}; "
                                    "use --force to run anyway")
    return f"model {manifest.id} expects {expected}, {series}; run anyway (forced)"


# ---------------------------------------------------------------------------- helpers
def _axis_field(axis: str) -> str:
    return {"N": "input.dynamic_axes", "C": "input.channels",
            "T": "input.sequence_length"}.get(axis, "input.size")


def _is_fixed(dim: Any) -> bool:
    return isinstance(dim, int) and dim >= 0


def _shape_text(shape: Sequence[Any]) -> str:
    return "[" + ", ".join("?" if d is None else str(d) for d in shape) + "]"


def _ort_message(error: BaseException) -> str:
    # "[ONNXRuntimeError] : 7 : INVALID_PROTOBUF : Load model from /x failed:Protobuf parsing
    # failed." -> the part after the status name, without the path we already print.
    text = _first_line(error)
    parts = text.split(" : ", 3)
    message = parts[-1] if len(parts) == 4 else text
    return message


def _first_line(error: object) -> str:
    text = str(error).strip()
    line = text.splitlines()[0] if text else type(error).__name__
    return line if len(line) <= 200 else line[:197] + "..."
