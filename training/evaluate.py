"""Measure a model on labelled CT through radview's own pipelines (what a user would get).

    python -m training.evaluate --data DIR --model ID [--models-dir DIR] [--json OUT]
                                [--liver-from SEG_ID]

``DIR`` is in Medical Segmentation Decathlon / LiTS layout: ``imagesTr/*.nii.gz`` and
``labelsTr/*.nii.gz`` with the same names (an nnU-Net ``_0000`` suffix on images is accepted);
labels 0 background, 1 liver, 2 tumour. An optional ``stages.json`` ({case: "Mild" | "Moderate"
| "Severe" | "End-stage"}) enables the staging metrics. A missing, unreadable or mismatched pair
is reported and skipped; the rest are measured. NIfTI carries no modality: the folder is taken
to be of the model's modality (CT), as the Decathlon's liver task is.

Per model task:

* segmentation: liver Dice (liver + tumour against liver + tumour, as LiTS scores it), tumour
  Dice (cases with truth tumour), IoU, pixel accuracy, mean IoU over classes, and lesion
  detection (sensitivity for truth lesions >= 10 mm, also split by contrast: lesions whose
  contrast to the liver around them is below the liver's own voxel spread, CNR < 1, and the
  rest; false positives per scan);
* staging: accuracy, macro-F1 and the confusion matrix (the liver range, and the liver mask
  of a model that reads one, from the truth labels, so the stage is measured on its own; with
  ``--liver-from SEG_ID`` from that segmentation model's labels instead, as in the app);
* triage: AUC of P(tumour) per slice against "the truth tumour cross-section on the slice is at
  least 20 mm^2" (over all slices, and over the slices through the truth liver only),
  sensitivity and specificity at 0.5.

Every mean comes with a 95 % bootstrap confidence interval over cases.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from radview.core.errors import RadviewError
from radview.inference.manifest import ModelTask
from radview.inference.pipeline import segment, segments_tumour
from radview.inference.registry import RegisteredModel, discover_models
from radview.inference.runtime import SessionCache
from radview.inference.staging import stage_liver
from radview.inference.triage import triage_slices
from training.data import STAGES, DatasetError, iter_msd_pairs
from training.metrics import (
    binary_auc,
    bootstrap_ci,
    confusion_matrix,
    detect_lesions,
    dice,
    iou,
    macro_f1,
    pixel_accuracy,
)

__all__ = ["TRIAGE_MIN_TUMOUR_MM2", "evaluate", "find_model", "main"]

TRIAGE_MIN_TUMOUR_MM2 = 20.0


def find_model(model_id: str, models_dir: Path | None) -> RegisteredModel:
    registry = discover_models(builtin_dir=models_dir, user_dir=Path("/nonexistent-user-dir"),
                               entry_points=False)
    for model in registry.valid:
        if model.id == model_id:
            return model
    invalid = [f"{m.path}: {m.reason}" for m in registry.invalid]
    raise DatasetError(f"model {model_id} not found in {models_dir or 'the built-in models'}"
                       + (f" (invalid: {'; '.join(invalid)})" if invalid else ""))


def _summary(rows: list[dict], key: str) -> dict | None:
    values = [row[key] for row in rows if row.get(key) is not None and np.isfinite(row[key])]
    if not values:
        return None
    low, high = bootstrap_ci(values)
    return {"mean": float(np.mean(values)), "ci95": [low, high], "n": len(values)}


def _segmentation_row(model: RegisteredModel, image, labels, sessions) -> dict:
    result = segment(image, model, sessions, device="cpu", force=True)
    predicted = result.labels.voxels
    truth = np.asarray(labels.voxels).astype(np.uint8)
    liver_only = not segments_tumour(model.manifest)
    row = {"liver_dice": dice(predicted > 0, truth > 0), "liver_iou": iou(predicted > 0, truth > 0),
           "seconds": result.seconds}
    if liver_only:
        row["pixel_accuracy"] = pixel_accuracy(predicted > 0, truth > 0)
        row["mean_iou"] = (iou(predicted > 0, truth > 0) + iou(predicted == 0, truth == 0)) / 2
        return row
    row["pixel_accuracy"] = pixel_accuracy(predicted, np.minimum(truth, 2))
    row["mean_iou"] = float(np.mean([iou(predicted == c, truth == c) for c in (0, 1, 2)]))
    if (truth == 2).any():
        row["tumor_dice"] = dice(predicted == 2, truth == 2)
        row["tumor_iou"] = iou(predicted == 2, truth == 2)
    row.update(detect_lesions(predicted == 2, truth == 2, image.spacing,
                              hu=np.asarray(image.voxels), liver=truth == 1))
    return row


def _triage_row(model, image, labels, sessions) -> dict:
    result = triage_slices(image, model, sessions, device="cpu", force=True)
    truth = np.asarray(labels.voxels) == 2
    pixel_mm2 = image.spacing[0] * image.spacing[1]
    targets = truth.reshape(truth.shape[0], -1).sum(axis=1) * pixel_mm2 >= TRIAGE_MIN_TUMOUR_MM2
    liver = (np.asarray(labels.voxels) > 0).reshape(truth.shape[0], -1).any(axis=1)
    return {"targets": targets.tolist(), "scores": result.probabilities.tolist(),
            "liver_slices": liver.tolist(),
            "ms_per_slice": 1000 * result.seconds / max(1, len(targets))}


def evaluate(data: Path, model: RegisteredModel, log=print,
             liver_from: RegisteredModel | None = None) -> dict:
    """Evaluate ``model`` on every usable case of ``data``; returns the rows and summaries.
    ``liver_from``: a segmentation model whose labels staging reads instead of the truth."""
    sessions = SessionCache()
    task = model.manifest.task
    stages_file = data / "stages.json"
    stages = json.loads(stages_file.read_text()) if stages_file.exists() else {}
    rows, skipped = [], []
    for name, image, labels, problem in iter_msd_pairs(data):
        if problem is not None:
            log(f"skipped {name}: {problem}")
            skipped.append({"case": name, "problem": problem})
            continue
        try:
            if task is ModelTask.SEGMENTATION:
                row = _segmentation_row(model, image, labels, sessions)
                if name in stages:  # for the breakdowns by liver disease stage
                    row["stage"] = stages[name]
            elif task is ModelTask.TRIAGE:
                row = _triage_row(model, image, labels, sessions)
            else:
                if name not in stages:
                    log(f"skipped {name}: no stage in {stages_file}")
                    continue
                if liver_from is not None:
                    labels = segment(image, liver_from, sessions, device="cpu",
                                     force=True).labels
                result = stage_liver(image, labels, model, sessions, device="cpu", force=True)
                if result is None:
                    log(f"skipped {name}: no liver in the "
                        f"{'truth' if liver_from is None else liver_from.id} labels")
                    continue
                row = {"truth": STAGES.index(stages[name]), "predicted": STAGES.index(
                    result.stage), "probabilities": result.probabilities}
        except RadviewError as error:
            log(f"skipped {name}: {error}")
            skipped.append({"case": name, "problem": str(error)})
            continue
        rows.append({"case": name, **row})
    return {"model": model.id, "version": model.manifest.version, "task": task.value,
            **({"liver_from": liver_from.id} if liver_from is not None else {}),
            "cases": len(rows), "skipped": skipped, "rows": rows,
            "summary": _summarise(task, rows)}


def _summarise(task: ModelTask, rows: list[dict]) -> dict:
    if not rows:
        return {}
    if task is ModelTask.SEGMENTATION:
        out = {key: _summary(rows, key) for key in
               ("liver_dice", "liver_iou", "tumor_dice", "tumor_iou", "pixel_accuracy",
                "mean_iou", "seconds")}
        liver_by_stage = {stage: float(np.mean(values)) for stage in STAGES
                          if (values := [r["liver_dice"] for r in rows if r.get("stage") == stage])}
        if liver_by_stage:
            out["liver_dice_by_stage"] = liver_by_stage
        if "truth_lesions" in rows[0]:
            counted = sum(r["truth_lesions"] for r in rows)
            found = sum(r["detected"] for r in rows)
            fps = [r["false_positives"] for r in rows]
            # sensitivity CI: bootstrap over scans of (detected, counted) pairs
            pairs = [(r["detected"], r["truth_lesions"]) for r in rows]
            def pooled(sample):
                total = sum(c for _, c in sample)
                return sum(d for d, _ in sample) / total if total else float("nan")
            out["detection"] = {
                "lesions_10mm": counted, "detected": found,
                "sensitivity": found / counted if counted else None,
                "sensitivity_ci95": list(bootstrap_ci(pairs, pooled)),
                "false_positives_per_scan": float(np.mean(fps)),
                "false_positives_ci95": list(bootstrap_ci(fps)),
            }
            by_stage = {stage: [r["false_positives"] for r in rows if r.get("stage") == stage]
                        for stage in STAGES}
            if any(by_stage.values()):
                out["detection"]["false_positives_per_scan_by_stage"] = {
                    stage: float(np.mean(v)) for stage, v in by_stage.items() if v}
            if "low_contrast_lesions" in rows[0]:
                low = sum(r["low_contrast_lesions"] for r in rows)
                low_found = sum(r["low_contrast_detected"] for r in rows)
                out["detection"].update(
                    low_contrast_lesions=low, low_contrast_detected=low_found,
                    sensitivity_low_contrast=low_found / low if low else None,
                    sensitivity_other=((found - low_found) / (counted - low)
                                       if counted > low else None))
        return {k: v for k, v in out.items() if v is not None}
    if task is ModelTask.TRIAGE:
        targets = np.concatenate([r["targets"] for r in rows]).astype(bool)
        scores = np.concatenate([r["scores"] for r in rows])
        def auc_of(sample):
            t = np.concatenate([r["targets"] for r in sample]).astype(bool)
            s = np.concatenate([r["scores"] for r in sample])
            return binary_auc(t, s)
        predicted = scores >= 0.5
        # the harder question: among slices through the liver, is the tumour found?
        liver = np.concatenate([r["liver_slices"] for r in rows]).astype(bool)
        return {"auc": binary_auc(targets, scores), "auc_ci95": list(bootstrap_ci(rows, auc_of,
                                                                                  samples=500)),
                "auc_liver_slices": binary_auc(targets[liver], scores[liver]),
                "sensitivity_at_0.5": float(predicted[targets].mean()) if targets.any() else None,
                "specificity_at_0.5": float((~predicted[~targets]).mean()),
                "slices": int(targets.size), "positive_slices": int(targets.sum()),
                "ms_per_slice_pipeline": float(np.mean([r["ms_per_slice"] for r in rows]))}
    truth = [r["truth"] for r in rows]
    predicted = [r["predicted"] for r in rows]
    pairs = list(zip(truth, predicted, strict=True))
    return {"accuracy": float(np.mean(np.array(truth) == np.array(predicted))),
            "accuracy_ci95": list(bootstrap_ci([float(t == p) for t, p in pairs])),
            "macro_f1": macro_f1(truth, predicted, len(STAGES)),
            "macro_f1_ci95": list(bootstrap_ci(pairs, lambda s: macro_f1(
                [t for t, _ in s], [p for _, p in s], len(STAGES)), samples=1000)),
            "confusion_matrix": confusion_matrix(truth, predicted, len(STAGES)).tolist(),
            "labels": list(STAGES)}


def _print_summary(result: dict) -> None:
    print(f"{result['model']} {result['version']} ({result['task']}): {result['cases']} cases, "
          f"{len(result['skipped'])} skipped")
    for key, value in result["summary"].items():
        if isinstance(value, dict) and "mean" in value:
            low, high = value["ci95"]
            print(f"  {key:16s} {value['mean']:.4f}  (95% CI {low:.4f}-{high:.4f}, n={value['n']})")
        else:
            print(f"  {key:16s} {value}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.evaluate", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--model", required=True, help="model id, e.g. liver-tumor-seg")
    parser.add_argument("--models-dir", type=Path,
                        help="folder of model folders (default: the built-in models)")
    parser.add_argument("--json", type=Path, help="also write every row and summary here")
    parser.add_argument("--liver-from", metavar="SEG_ID",
                        help="staging: read the liver from this built-in segmentation model's "
                             "labels (as the app does) instead of the truth labels")
    args = parser.parse_args(argv)
    try:
        model = find_model(args.model, args.models_dir)
        liver_from = None
        if args.liver_from:
            liver_from = find_model(args.liver_from, None)
            if liver_from.manifest.task is not ModelTask.SEGMENTATION:
                raise DatasetError(f"--liver-from {args.liver_from}: not a segmentation model")
        result = evaluate(args.data, model, log=lambda line: print(line, file=sys.stderr),
                          liver_from=liver_from)
    except RadviewError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if not result["rows"]:
        print(f"error: {args.data}: no usable cases", file=sys.stderr)
        return 2
    _print_summary(result)
    if args.json:
        args.json.write_text(json.dumps(result, indent=1, default=float))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
