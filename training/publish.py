"""Export the trained models into ``models_onnx/`` and measure them on the held-out phantoms.

:func:`export_all` writes ``<id>/model.onnx`` + ``model.toml`` for every trained model and
refuses one whose ONNX Runtime logits differ from PyTorch's by more than 1e-4.
:func:`evaluate_all` writes the held-out test phantoms once as an MSD-layout folder (NIfTI, with
``stages.json``), runs :mod:`training.evaluate` on it for every model, puts the headline metrics
into each ``model.toml`` and writes ``MODEL_CARD.md`` from the measured numbers.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import nibabel as nib

from radview.inference.manifest import ModelTask
from radview.io.convert import volume_to_nifti
from training.data import SPLITS, STAGES, phantom_config
from training.export import (
    PARITY_TOLERANCE,
    export_onnx,
    parity,
    sha256_of,
    training_data_text,
    with_lesion_filter,
    write_manifest,
)
from training.model_card import write_model_card
from training.phantoms import generate_case
from training.train import AVERAGED_SEEDS, MODEL_IDS, TrainConfig, load_shipped, seed_runs

__all__ = ["export_all", "write_heldout_msd", "evaluate_all", "headline_metrics"]

#: the segmentation model whose liver the app stages by default (analyze prefers a model that
#: also segments tumours), and where the staging evaluation on it is saved
APP_LIVER_MODEL = "liver-tumor-seg"
APP_LIVER_RESULT = "heldout_app_liver.json"
#: where a segmentation model's fitted lesion filter is saved (in its runs folder)
LESION_FILTER_RESULT = "lesion_filter.json"
_STAGE_NAMES = dict(zip(("mild", "moderate", "severe", "end_stage"), STAGES, strict=True))


def export_all(runs: Path, models_out: Path, seeds: tuple[int, int], log=print,
               models: tuple[str, ...] = MODEL_IDS) -> dict:
    report = {}
    for model in models:
        if not (runs / model / "best.pt").exists():
            log(f"export {model}: not trained, skipped")
            continue
        net, config = load_shipped(runs, model)
        folder = models_out / model
        onnx_path = export_onnx(net, config, folder / "model.onnx")
        worst = parity(net, config, onnx_path)
        if worst > PARITY_TOLERANCE:
            raise SystemExit(f"{onnx_path}: ONNX Runtime differs from PyTorch by {worst:.2e} "
                             f"(> {PARITY_TOLERANCE:g})")
        previous = _existing_metrics(folder / "model.toml")
        write_manifest(folder, config, "model.onnx", previous, training_data_text(seeds))
        size_mb = onnx_path.stat().st_size / 1e6
        report[model] = {"parity_max_abs": worst, "size_mb": size_mb}
        (runs / model / "export.json").write_text(json.dumps(report[model]))
        log(f"export {model}: {size_mb:.1f} MB, parity max |diff| {worst:.2e}")
    return report


def _existing_metrics(path: Path) -> dict:
    if not path.exists():
        return {}
    import tomllib

    return dict(tomllib.loads(path.read_text()).get("metrics", {}))


def write_heldout_msd(folder: Path, count: int | None = None, log=print,
                      split: str = "test") -> Path:
    """The ``split``'s phantoms (default: the held-out test split) as ``imagesTr``/``labelsTr``
    NIfTI plus ``stages.json``."""
    first, size = SPLITS[split]
    seeds = range(first, first + (size if count is None else min(size, count)))
    images, labels = folder / "imagesTr", folder / "labelsTr"
    images.mkdir(parents=True, exist_ok=True)
    labels.mkdir(parents=True, exist_ok=True)
    stages_path = folder / "stages.json"
    stages = json.loads(stages_path.read_text()) if stages_path.exists() else {}
    started = time.perf_counter()
    for seed in seeds:
        name = f"phantom_{seed:06d}"
        if (labels / f"{name}.nii.gz").exists() and name in stages:
            continue
        case = generate_case(seed, config=phantom_config(seed))
        nib.save(volume_to_nifti(case.ct), images / f"{name}.nii.gz")
        nib.save(volume_to_nifti(case.labels), labels / f"{name}.nii.gz")
        stages[name] = _STAGE_NAMES[case.stage.value]
        stages_path.write_text(json.dumps(stages, indent=1))
    log(f"{split} set: {len(seeds)} cases in {folder} ({time.perf_counter() - started:.0f} s)")
    return folder


def _quantization(work: Path, model_id: str) -> dict | None:
    path = work / "quantized" / model_id / "quantization.json"
    return json.loads(path.read_text()) if path.exists() else None


def _read_if_exists(path: Path) -> str | None:
    return path.read_text() if path.exists() else None


def _read_json_if_exists(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.exists() else None


def headline_metrics(result: dict) -> dict[str, float]:
    """The numbers that go into model.toml's [metrics] (held-out means)."""
    summary = result["summary"]
    out: dict[str, float] = {}
    for key in ("liver_dice", "tumor_dice", "mean_iou", "pixel_accuracy"):
        if isinstance(summary.get(key), dict):
            out[f"heldout_{key}"] = summary[key]["mean"]
    detection = summary.get("detection")
    if detection and detection.get("sensitivity") is not None:
        out["heldout_detection_sensitivity_10mm"] = detection["sensitivity"]
        out["heldout_false_positives_per_scan"] = detection["false_positives_per_scan"]
    for key in ("auc", "macro_f1", "accuracy"):
        if isinstance(summary.get(key), float):
            out[f"heldout_{key}"] = summary[key]
    out["heldout_cases"] = float(result["cases"])
    return out


def evaluate_all(cache: Path, work: Path, models_out: Path, search_result: dict, *,
                 smoke: bool = False, log=print) -> dict:
    from training.evaluate import evaluate, find_model

    heldout = write_heldout_msd(work / "heldout_msd", 2 if smoke else None, log=log)
    if (models_out / "liver-tumor-seg" / "model.toml").exists():
        _tune_postprocess(work, models_out, smoke, log)
        fit_lesion_filter(work, models_out, "liver-tumor-seg", smoke, log)
    results = {}
    for model_id in MODEL_IDS:
        folder = models_out / model_id
        if not (folder / "model.toml").exists():
            continue
        started = time.perf_counter()
        model = find_model(model_id, models_out)
        result = evaluate(heldout, model, log=log)
        if not result["rows"]:
            raise SystemExit(f"evaluate {model_id}: no held-out case could be measured")
        (work / "runs" / model_id / "heldout.json").write_text(
            json.dumps(result, indent=1, default=float))
        if model.manifest.lesion_filter is not None:
            _heldout_lesion_filter_table(work, heldout, models_out, model_id, log)
        if model.manifest.task is ModelTask.STAGING and (
                models_out / APP_LIVER_MODEL / "model.toml").exists():
            # what a user gets: the stage read from the segmentation's liver, not the truth's
            on_app_liver = evaluate(heldout, model, log=log,
                                    liver_from=find_model(APP_LIVER_MODEL, models_out))
            (work / "runs" / model_id / APP_LIVER_RESULT).write_text(
                json.dumps(on_app_liver, indent=1, default=float))
        metrics = write_card(work, models_out, model_id, search_result)
        results[model_id] = result["summary"]
        log(f"evaluate {model_id}: {json.dumps(metrics)} ({time.perf_counter() - started:.0f} s)")
    return results


def _tune_postprocess(work: Path, models_out: Path, smoke: bool, log) -> None:
    """The speck-threshold table on the validation phantoms, for the U-Net's card; a log line
    when its rule would choose another value than the pipeline's constant (set by hand)."""
    from training.evaluate import find_model
    from training.tune_postprocess import table_text, tune

    started = time.perf_counter()
    validation = write_heldout_msd(work / "val_msd", 1 if smoke else None, log=log, split="val")
    text = table_text(tune(validation, find_model("liver-tumor-seg", models_out), log=log))
    (work / "tune_postprocess.txt").write_text(text)
    for line in text.splitlines()[-2:]:
        if line.startswith(("chosen", "note")):
            log(f"tune_postprocess {line} ({time.perf_counter() - started:.0f} s)")


def fit_lesion_filter(work: Path, models_out: Path, model_id: str, smoke: bool, log) -> None:
    """Fit ``model_id``'s lesion filter on the ``lesion_filter`` phantoms (training/
    lesion_filter.py) unless ``runs/<id>/lesion_filter.json`` already holds one for this very
    ONNX file, and write it into the model's manifest (None fitted: the manifest has none)."""
    from training.lesion_filter import TUMOUR_WEIGHT, collect, fit_result

    path = work / "runs" / model_id / LESION_FILTER_RESULT
    model_sha = sha256_of(models_out / model_id / "model.onnx")
    saved = _read_json_if_exists(path)
    if (saved is None or saved.get("model_sha256") != model_sha
            or (saved.get("spec") or {}).get("tumour_weight", TUMOUR_WEIGHT) != TUMOUR_WEIGHT):
        started = time.perf_counter()
        scans = write_heldout_msd(work / "lesion_filter_msd", 2 if smoke else None, log=log,
                                  split="lesion_filter")
        saved = fit_result(collect(scans, model_id, log=log, models_dir=models_out,
                                   tumour_weight=TUMOUR_WEIGHT), model_sha, TUMOUR_WEIGHT)
        path.write_text(json.dumps(saved or {"model_sha256": model_sha, "spec": None},
                                   indent=1))
        log(f"lesion filter for {model_id}: "
            f"{'threshold ' + str(saved['spec']['threshold']) if saved else 'too few components'}"
            f" ({time.perf_counter() - started:.0f} s)")
    manifest = models_out / model_id / "model.toml"
    manifest.write_text(with_lesion_filter(manifest.read_text(), _lesion_filter(work, model_id)))


def _heldout_lesion_filter_table(work: Path, heldout: Path, models_out: Path, model_id: str,
                                 log) -> None:
    """For the card: detection on the held-out scans at every filter threshold (the threshold
    itself was chosen on the fitting scans, never here)."""
    from training.lesion_filter import collect, spec_from_result, threshold_table

    path = work / "runs" / model_id / LESION_FILTER_RESULT
    saved = json.loads(path.read_text())
    spec = spec_from_result(saved)
    saved["heldout_table"] = threshold_table(
        collect(heldout, model_id, log=log, models_dir=models_out,
                tumour_weight=spec.tumour_weight), spec)
    path.write_text(json.dumps(saved, indent=1))


def _lesion_filter(work: Path, model_id: str):
    """The saved lesion filter of ``model_id`` (None: none fitted)."""
    from training.lesion_filter import spec_from_result

    saved = _read_json_if_exists(work / "runs" / model_id / LESION_FILTER_RESULT)
    return spec_from_result(saved) if saved and saved.get("spec") else None


def write_card(work: Path, models_out: Path, model_id: str, search_result: dict) -> dict:
    """The model card and the manifest's metrics from the saved held-out evaluation
    (``runs/<id>/heldout.json``), training summary and export check; returns the metrics."""
    runs = work / "runs" / model_id
    result = json.loads((runs / "heldout.json").read_text())
    summary = json.loads((runs / "summary.json").read_text())
    export = json.loads((runs / "export.json").read_text())
    folder = models_out / model_id
    metrics = headline_metrics(result)
    write_model_card(folder / "MODEL_CARD.md", model_id, result, summary, export,
                     search_result if model_id == "liver-tumor-seg" else None,
                     work / "real_checks.md", _read_if_exists(work / "tune_postprocess.txt"),
                     _quantization(work, model_id), _read_json_if_exists(runs / APP_LIVER_RESULT),
                     _read_json_if_exists(runs / LESION_FILTER_RESULT),
                     [json.loads((seed_runs(work / "runs", seed) / model_id / "summary.json")
                                 .read_text()) for seed in AVERAGED_SEEDS.get(model_id, ())])
    write_manifest(folder, TrainConfig.from_dict(summary["config"]), "model.onnx", metrics,
                   training_data_text((SPLITS["train"][0],
                                       SPLITS["train"][0] + SPLITS["train"][1] - 1)),
                   lesion_filter=_lesion_filter(work, model_id))
    return metrics
