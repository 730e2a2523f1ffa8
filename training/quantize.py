"""Quantise a segmentation model to INT8 and measure whether it may ship.

    python -m training.quantize --model liver-tumor-seg --heldout build/train/heldout_msd \\
        --cases 20 [--models-dir src/radview/models_onnx] [--out build/train/quantized]
        [--calibration-slices 64] [--calibration-cases 8] [--calibrate-method minmax]
        [--threads 2] [--speed-slices 32] [--speed-rounds 5]

1. **Calibration data**: ``--calibration-slices`` slices from ``--calibration-cases`` phantoms of
   the *training* split (``training.data.SPLITS["train"]``, never the held-out set), put on the
   model grid exactly as the app does it (:func:`radview.inference.pipeline.to_model_grid`, the
   manifest's window and scale, 2.5D neighbouring slices with edge replication). Half of each
   case's slices are spread over the liver, the rest over the whole scan.
2. **Quantisation**: ``onnxruntime.quantization.quantize_static`` in QDQ format, per-channel
   weights, signed 8-bit activations and weights (S8S8, what ONNX Runtime recommends for QDQ on
   x86), after ``quant_pre_process`` (shape inference and graph clean-up).
3. **Output**: ``OUT/<id>/<file>`` plus a copy of the manifest with ``sha256`` (and ``opset``)
   updated and the files it names (model card, licence), validated by the app's registry. The
   shipped FP32 model is never touched.
4. **Accuracy**: :func:`training.evaluate.evaluate` (the app's own ``segment``) of the FP32 and
   the INT8 model on the same first ``--cases`` held-out cases: liver Dice and tumour Dice.
5. **Speed**: model-only milliseconds per slice of both, ``--threads`` intra-op threads, on the
   calibration slices in batches of 8 (the segmentation pipeline's batch), rounds alternating
   between the two models; medians.

``OUT/<id>/quantization.json`` holds ``dice_fp32``, ``dice_int8`` (liver, tumour), ``drop``
(the larger of the two Dice drops, FP32 minus INT8), ``speedup`` (FP32 ms / INT8 ms) and
``ship``: ``drop < 0.01`` **and** ``speedup > 1`` (an INT8 model that is not faster has no reason
to replace the FP32 one). The decision is printed, and when ``ship`` is true the command that
copies the INT8 model over the FP32 one; the copy is left to a person.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from radview.core.errors import RadviewError
from radview.inference.manifest import ModelManifest, ModelTask
from radview.inference.pipeline import normalise_intensities, to_model_grid
from radview.inference.registry import (
    ModelSource,
    RegisteredModel,
    read_onnx_opsets,
    sha256_of,
    validate_model,
)
from radview.inference.runtime import CPU_PROVIDER, import_onnxruntime, session_options
from radview.io.atomic import write_bytes_atomically
from training.data import SPLITS, DatasetError, phantom_config
from training.phantoms import generate_case

__all__ = ["MAX_DICE_DROP", "calibration_slices", "quantize_model", "model_speed",
           "heldout_subset", "run", "main"]

#: The INT8 model may lose less than this much Dice (liver and tumour) to ship.
MAX_DICE_DROP = 0.01
#: Slices per inference call when timing (the segmentation pipeline's default batch).
SPEED_BATCH = 8
CALIBRATION_BATCH = 8
_CALIBRATE_METHODS = ("minmax", "entropy", "percentile")


# ---------------------------------------------------------------------------- calibration data
def _pick_slices(liver_rows: np.ndarray, depth: int, count: int) -> np.ndarray:
    """``count`` distinct slice indices: half spread over the liver, the rest spread over the
    other slices of the scan."""
    count = min(count, depth)
    liver = np.flatnonzero(liver_rows)
    on_liver = min(len(liver), count // 2)
    chosen = set(liver[np.linspace(0, len(liver) - 1, on_liver).round().astype(int)].tolist()
                 if on_liver else [])
    others = np.array([k for k in range(depth) if k not in chosen], int)
    need = count - len(chosen)
    if need:
        chosen.update(others[np.linspace(0, len(others) - 1, need).round().astype(int)].tolist())
    return np.array(sorted(chosen), int)


def model_input(hu: np.ndarray, slices: np.ndarray, manifest: ModelManifest) -> np.ndarray:
    """The model input for ``slices`` of a model-grid image ``hu`` (z, H, W) in HU: 2.5D
    neighbouring slices (edge replicated), the manifest's normalisation, its axis order."""
    spec = manifest.input
    offsets = np.arange(spec.channels) - spec.channels // 2
    index = np.clip(slices[:, None] + offsets[None, :], 0, hu.shape[0] - 1)
    batch = normalise_intensities(hu[index], manifest)  # (n, C, H, W)
    order = ["NCHW".index(axis) for axis in spec.layout]
    return np.ascontiguousarray(batch.transpose(order).astype(np.float32, copy=False))


def calibration_slices(manifest: ModelManifest, slices: int = 64, cases: int = 8,
                       log=print) -> tuple[np.ndarray, dict]:
    """Preprocessed calibration slices from training-split phantoms and where they came from."""
    first, size = SPLITS["train"]
    cases = max(1, min(cases, slices, size))
    seeds = list(range(first, first + cases))
    spec = manifest.input
    parts, taken = [], {}
    started = time.perf_counter()
    for number, seed in enumerate(seeds):
        wanted = slices // cases + (1 if number < slices % cases else 0)
        case = generate_case(seed, config=phantom_config(seed))
        grid = to_model_grid(case.ct, tuple(spec.spacing_mm), tuple(spec.size),
                             labels=case.labels.voxels,
                             window_low=manifest.normalization.window_low)
        liver_rows = grid.labels.reshape(grid.labels.shape[0], -1).any(axis=1)
        chosen = _pick_slices(liver_rows, grid.hu.shape[0], wanted)
        parts.append(model_input(grid.hu, chosen, manifest))
        taken[str(seed)] = chosen.tolist()
    data = np.concatenate(parts)
    log(f"calibration: {len(data)} slices from {len(seeds)} training phantoms "
        f"({time.perf_counter() - started:.0f} s)")
    return data, {"source": "training phantoms (train split), generated with training.phantoms",
                  "seeds": seeds, "slices": int(len(data)), "slices_per_seed": taken,
                  "preprocessing": "radview.inference.pipeline.to_model_grid + the manifest's "
                                   "normalisation, 2.5D channels with edge replication"}


# ---------------------------------------------------------------------------- quantisation
def _calibration_reader(input_name: str, data: np.ndarray, batch: int):
    from onnxruntime.quantization import CalibrationDataReader

    class _Slices(CalibrationDataReader):
        def __init__(self) -> None:
            self._start = 0

        def get_next(self):
            if self._start >= len(data):
                return None
            feed = {input_name: data[self._start:self._start + batch]}
            self._start += batch
            return feed

        def rewind(self) -> None:
            self._start = 0

    return _Slices()


def _manifest_copy(text: str, sha256: str, opset: int, path: Path) -> str:
    """The FP32 manifest's text with ``sha256`` and ``opset`` replaced (nothing else)."""
    for key, value in (("sha256", f'"{sha256}"'), ("opset", str(opset))):
        text, count = re.subn(rf"(?m)^{key}\s*=\s*\S+\s*$", f"{key} = {value}", text, count=1)
        if count != 1:
            raise DatasetError(f"{path}: no top-level {key} line to update")
    return text


def quantize_model(model: RegisteredModel, out_folder: Path, calibration: np.ndarray, *,
                   method: str = "minmax", log=print) -> tuple[RegisteredModel, dict]:
    """Write the INT8 QDQ model + manifest copy into ``out_folder``; returns it as the app's
    registry validates it, and the settings used."""
    from onnxruntime.quantization import (
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    manifest = model.manifest
    out_folder = Path(out_folder).resolve()
    if out_folder == model.folder.resolve():
        raise DatasetError(f"{out_folder}: refusing to write the INT8 model over the FP32 model")
    methods = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
               "percentile": CalibrationMethod.Percentile}
    started = time.perf_counter()
    out_folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".quantize-", dir=out_folder) as scratch:
        prepared = Path(scratch) / "prepared.onnx"
        quant_pre_process(str(model.onnx_path), str(prepared))
        quantized = Path(scratch) / manifest.file
        quantize_static(
            str(prepared), str(quantized),
            _calibration_reader(manifest.input.name, calibration, CALIBRATION_BATCH),
            quant_format=QuantFormat.QDQ, per_channel=True,
            activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
            calibrate_method=methods[method])
        opset = read_onnx_opsets(quantized).get("", manifest.opset)
        text = _manifest_copy(manifest.path.read_text(), sha256_of(quantized), opset,
                              manifest.path)
        for name in (manifest.card, manifest.license_file):
            if name:
                shutil.copyfile(manifest.folder / name, out_folder / name)
        os.replace(quantized, out_folder / manifest.file)
        write_bytes_atomically(out_folder / "model.toml", text.encode("utf-8"), fsync=False)
    int8 = validate_model(out_folder, ModelSource.BUILTIN)
    log(f"quantised {manifest.id}: {int8.onnx_path} "
        f"({int8.onnx_path.stat().st_size / 1e6:.2f} MB, {time.perf_counter() - started:.0f} s)")
    return int8, {"format": "QDQ", "per_channel": True, "activation_type": "QInt8",
                  "weight_type": "QInt8", "calibrate_method": method,
                  "quant_pre_process": True}


# ---------------------------------------------------------------------------- measurement
def model_speed(paths: dict[str, Path], input_name: str, data: np.ndarray, *, threads: int = 2,
                rounds: int = 5, batch: int = SPEED_BATCH) -> dict[str, dict]:
    """Model-only milliseconds per slice of each ONNX file on ``data``: one warm-up pass, then
    ``rounds`` timed passes over all of ``data`` in batches of ``batch``, the models in an order
    that alternates from round to round. Median and min over the rounds."""
    ort = import_onnxruntime()
    sessions = {name: ort.InferenceSession(str(path), sess_options=session_options(
        threads=threads), providers=[CPU_PROVIDER]) for name, path in paths.items()}
    batches = [data[start:start + batch] for start in range(0, len(data), batch)]

    def one_pass(session) -> float:
        started = time.perf_counter()
        for feed in batches:
            session.run(None, {input_name: feed})
        return 1000 * (time.perf_counter() - started) / len(data)

    for session in sessions.values():
        one_pass(session)
    times: dict[str, list[float]] = {name: [] for name in sessions}
    names = list(sessions)
    for number in range(rounds):
        for name in (names if number % 2 == 0 else names[::-1]):
            times[name].append(one_pass(sessions[name]))
    return {name: {"ms_per_slice": statistics.median(values), "min_ms_per_slice": min(values),
                   "rounds": values, "threads": threads, "slices": int(len(data)),
                   "batch": batch} for name, values in times.items()}


def _heldout_images(heldout: Path) -> list[Path]:
    images, labels = Path(heldout) / "imagesTr", Path(heldout) / "labelsTr"
    if not images.is_dir() or not labels.is_dir():
        raise DatasetError(f"{heldout}: not a Medical Segmentation Decathlon / LiTS folder "
                           "(expected imagesTr/ and labelsTr/)")
    files = sorted(p for p in images.iterdir()
                   if p.name.endswith((".nii", ".nii.gz")) and not p.name.startswith("._"))
    if not files:
        raise DatasetError(f"{images}: no NIfTI images")
    return files


def heldout_subset(heldout: Path, cases: int, folder: Path) -> tuple[Path, list[str]]:
    """An MSD folder of symbolic links to the first ``cases`` image/label pairs of ``heldout``
    (in name order, the order :func:`training.data.iter_msd_pairs` reads them)."""
    files = _heldout_images(heldout)
    labels = Path(heldout) / "labelsTr"
    (folder / "imagesTr").mkdir(parents=True, exist_ok=True)
    (folder / "labelsTr").mkdir(parents=True, exist_ok=True)
    names = []
    for image in files[:cases]:
        (folder / "imagesTr" / image.name).symlink_to(image.resolve())
        base = image.name.removesuffix(".gz").removesuffix(".nii").removesuffix("_0000")
        for ext in (".nii.gz", ".nii"):
            label = labels / f"{base}{ext}"
            if label.exists():
                (folder / "labelsTr" / label.name).symlink_to(label.resolve())
                break
        names.append(base)
    return folder, names


def _dice(result: dict) -> dict[str, float | None]:
    summary = result["summary"]
    return {key: (summary[f"{key}_dice"]["mean"] if isinstance(summary.get(f"{key}_dice"), dict)
                  else None) for key in ("liver", "tumor")}


def _drops(fp32: dict, int8: dict) -> dict[str, float | None]:
    return {key: (None if fp32[key] is None or int8[key] is None else fp32[key] - int8[key])
            for key in fp32}


def run(model_id: str, heldout: Path, cases: int, models_dir: Path | None, out: Path, *,
        calibration_count: int = 64, calibration_cases: int = 8, method: str = "minmax",
        threads: int = 2, speed_slices: int = 32, speed_rounds: int = 5, log=print) -> dict:
    """Quantise, evaluate, time and decide (see the module docstring); writes and returns
    ``quantization.json``."""
    from training.evaluate import evaluate, find_model

    fp32 = find_model(model_id, models_dir)
    if fp32.manifest.task is not ModelTask.SEGMENTATION:
        raise DatasetError(f"model {model_id} is a {fp32.manifest.task.value} model; "
                           "training.quantize measures Dice, so it takes segmentation models")
    _heldout_images(heldout)  # fail before minutes of calibration, not after
    folder = Path(out) / model_id
    calibration, calibration_info = calibration_slices(fp32.manifest, calibration_count,
                                                       calibration_cases, log=log)
    int8, settings = quantize_model(fp32, folder, calibration, method=method, log=log)

    with tempfile.TemporaryDirectory(prefix="heldout-subset-") as scratch:
        subset, names = heldout_subset(heldout, cases, Path(scratch))
        log(f"evaluating FP32 and INT8 on {len(names)} held-out cases")
        evaluations = {name: evaluate(subset, model, log=log)
                       for name, model in (("fp32", fp32), ("int8", int8))}
    for name, result in evaluations.items():
        if not result["rows"]:
            raise DatasetError(f"{heldout}: no held-out case could be measured with the "
                               f"{name} model")

    speed = model_speed({"fp32": fp32.onnx_path, "int8": int8.onnx_path},
                        fp32.manifest.input.name, calibration[:speed_slices], threads=threads,
                        rounds=speed_rounds)
    dice_fp32, dice_int8 = _dice(evaluations["fp32"]), _dice(evaluations["int8"])
    drops = _drops(dice_fp32, dice_int8)
    measured = [value for value in drops.values() if value is not None]
    drop = max(measured)
    speedup = speed["fp32"]["ms_per_slice"] / speed["int8"]["ms_per_slice"]
    ship = bool(drop < MAX_DICE_DROP and speedup > 1.0)
    copy_command = None
    if ship:
        files = " ".join(str(_relative(folder / n)) for n in (int8.manifest.file, "model.toml"))
        copy_command = f"cp {files} {_relative(fp32.folder)}/"
    result = {
        "model": model_id,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "fp32": _describe(fp32),
        "int8": {**_describe(int8), **settings},
        "calibration": calibration_info,
        "heldout": {"folder": str(heldout), "cases_requested": cases, "cases": names,
                    "measured_fp32": evaluations["fp32"]["cases"],
                    "measured_int8": evaluations["int8"]["cases"]},
        "dice_fp32": dice_fp32,
        "dice_int8": dice_int8,
        "drop_liver": drops["liver"],
        "drop_tumor": drops["tumor"],
        "drop": drop,
        "ms_per_slice_fp32": speed["fp32"]["ms_per_slice"],
        "ms_per_slice_int8": speed["int8"]["ms_per_slice"],
        "threads": threads,
        "speedup": speedup,
        "ship": ship,
        "ship_rule": f"drop < {MAX_DICE_DROP} (larger of the liver and tumour Dice drops) and "
                     "speedup > 1",
        "copy_command": copy_command,
        "speed": speed,
        "evaluation_fp32": {k: evaluations["fp32"][k] for k in ("summary", "rows", "skipped")},
        "evaluation_int8": {k: evaluations["int8"][k] for k in ("summary", "rows", "skipped")},
    }
    write_bytes_atomically(folder / "quantization.json",
                           (json.dumps(result, indent=1, default=float) + "\n").encode(),
                           fsync=False)
    return result


def _describe(model: RegisteredModel) -> dict:
    return {"folder": str(model.folder), "onnx": str(model.onnx_path),
            "sha256": model.manifest.sha256,
            "size_mb": round(model.onnx_path.stat().st_size / 1e6, 3)}


def _relative(path: Path) -> Path:
    try:
        return Path(path).resolve().relative_to(Path.cwd())
    except ValueError:
        return Path(path).resolve()


def _format(result: dict) -> str:
    def number(value) -> str:
        return "n/a" if value is None else f"{value:.4f}"

    fp32, int8 = result["dice_fp32"], result["dice_int8"]
    lines = [
        f"{result['model']}: INT8 {result['int8']['size_mb']:.2f} MB (FP32 "
        f"{result['fp32']['size_mb']:.2f} MB), {len(result['heldout']['cases'])} held-out cases",
        f"  liver Dice  FP32 {number(fp32['liver'])}  INT8 {number(int8['liver'])}  "
        f"drop {number(result['drop_liver'])}",
        f"  tumour Dice FP32 {number(fp32['tumor'])}  INT8 {number(int8['tumor'])}  "
        f"drop {number(result['drop_tumor'])}",
        f"  model only, {result['threads']} threads: FP32 {result['ms_per_slice_fp32']:.2f} "
        f"ms/slice, INT8 {result['ms_per_slice_int8']:.2f} ms/slice, speed-up "
        f"{result['speedup']:.2f}x",
        f"decision: {'SHIP' if result['ship'] else 'do not ship'} ({result['ship_rule']}; drop "
        f"{result['drop']:.4f}, speed-up {result['speedup']:.2f}x)",
    ]
    if result["copy_command"]:
        lines.append(f"to ship it (not done here): {result['copy_command']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.quantize", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="liver-tumor-seg")
    parser.add_argument("--heldout", type=Path, default=Path("build/train/heldout_msd"),
                        help="held-out MSD folder (imagesTr/, labelsTr/)")
    parser.add_argument("--cases", type=int, default=20, help="held-out cases to evaluate")
    parser.add_argument("--models-dir", type=Path, default=Path("src/radview/models_onnx"),
                        help="folder of model folders holding the FP32 model")
    parser.add_argument("--out", type=Path, default=Path("build/train/quantized"))
    parser.add_argument("--calibration-slices", type=int, default=64)
    parser.add_argument("--calibration-cases", type=int, default=8,
                        help="training phantoms the calibration slices come from")
    parser.add_argument("--calibrate-method", choices=_CALIBRATE_METHODS, default="minmax")
    parser.add_argument("--threads", type=int, default=2, help="intra-op threads for timing")
    parser.add_argument("--speed-slices", type=int, default=32)
    parser.add_argument("--speed-rounds", type=int, default=5)
    args = parser.parse_args(argv)
    if min(args.cases, args.calibration_slices, args.calibration_cases, args.threads,
           args.speed_slices, args.speed_rounds) < 1:
        parser.error("counts must be >= 1")
    try:
        result = run(args.model, args.heldout, args.cases, args.models_dir, args.out,
                     calibration_count=args.calibration_slices,
                     calibration_cases=args.calibration_cases, method=args.calibrate_method,
                     threads=args.threads, speed_slices=args.speed_slices,
                     speed_rounds=args.speed_rounds,
                     log=lambda line: print(line, file=sys.stderr, flush=True))
    except RadviewError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(_format(result))
    print(f"written: {args.out / args.model / 'quantization.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
