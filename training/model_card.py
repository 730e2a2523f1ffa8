"""``MODEL_CARD.md`` from measured numbers only: the held-out evaluation, the training summary,
the export parity check, the hyperparameter search (segmentation) and the real-scan notes."""

from __future__ import annotations

from pathlib import Path

from training.data import (
    HU_WINDOW,
    SLICE_SPACING_MM,
    SPLITS,
    STAGE_ANTIALIAS,
    STAGE_SPACING_MM,
)
from training.phantoms import GENERATOR_VERSION

__all__ = ["write_model_card", "INTENDED_USE", "KNOWN_LIMITS", "MODEL_LIMITS"]

INTENDED_USE = {
    "liver-tumor-seg": "Segments the liver and liver tumours on axial CT (any phase) so that "
                       "radview can measure liver volume and every lesion.",
    "liver-seg-deeplab": "Segments the liver (no tumour class) on axial CT; a second, "
                         "architecturally different liver model for comparison.",
    "liver-stage-cnnlstm": "Gives probabilities of four chronic liver disease appearance "
                           "stages (Mild, Moderate, Severe, End-stage) from liver slices.",
    "slice-triage": "Gives P(tumour on this slice) for every axial slice, to point the reader "
                    "at slices worth looking at first.",
}

KNOWN_LIMITS = [
    "Trained only on synthetic phantoms (training/phantoms). Real CT differs: texture, "
    "vessels, artefacts (beam hardening, streaks from metal or contrast), organs the phantom "
    "does not have (pancreas, pelvis), motion. Expect lower accuracy on real scans than the "
    "held-out synthetic numbers above.",
    "Phantom lesions are ellipsoids with smooth or rimmed enhancement; infiltrative, "
    "calcified, cystic-septated or ill-defined real lesions are not represented.",
    "Liver disease stages are defined from the phantom's generated features (training/phantoms/"
    "README.md), not from histology or elastography; the stage model has never seen a real "
    "cirrhotic liver.",
    "Adult abdomen, CT only; not for MR, paediatric scans or non-axial reconstructions.",
]

#: Per model, limits the held-out breakdowns above show (read them with the table).
MODEL_LIMITS = {
    "liver-tumor-seg": [
        "Lesions that differ from the liver around them by less than the liver's own "
        "voxel-to-voxel spread (CNR < 1; the phantoms include lesions nearly isodense to the "
        "liver, as on real non-contrast scans) are missed far more often than the others: "
        "see the detection rows split by contrast.",
        "False-positive lesions concentrate in livers with heterogeneous texture or a nodular "
        "surface (the Moderate to End-stage phantoms): see the false positives by stage. Read "
        "every reported lesion in a diseased liver as a candidate, not a finding.",
        "The lesion filter trades found lesions for fewer false ones: on the held-out scans "
        "it removed more than half of the false positives and also set aside about 1 in 17 "
        "of the lesions the network had found (see its table). What it sets aside is shown "
        "as liver, not as a lesion; the analysis status and the report's Methods say how many "
        "candidates were set aside in the scan, so look for them where that count is not "
        "zero.",
        "Shrunken End-stage livers surrounded by ascites have the lowest liver Dice (see Dice "
        "by stage): on 12 held-out End-stage scans the label spills into the ascites by 6.5 % "
        "of the liver's volume and misses 6.1 %. Check the outline before using the volume of "
        "a cirrhotic liver with ascites.",
        "Chest CT that reaches only the liver dome is outside what it was trained on (see the "
        "real CT checks): the liver can be partly missed.",
    ],
    "liver-seg-deeplab": [
        "Shrunken End-stage livers surrounded by ascites have the lowest liver Dice (see Dice "
        "by stage): on 12 held-out End-stage scans the label spills into the ascites by 8.4 % "
        "of the liver's volume and misses 5.9 %. Check the outline before using the volume.",
        "On a chest CT reaching only the liver dome it labelled shoulder muscle as liver and, "
        "as that blob was the largest, lost the liver itself (see the real CT checks): the "
        "phantoms have no shoulders or arms. Do not use it on chest CT without looking.",
    ],
    "liver-stage-cnnlstm": [
        "Moderate and Mild are the stages it confuses most (see the confusion matrix; on the "
        "200 validation phantoms more than a third of the Moderate livers were called Mild): "
        "what separates them in the phantoms is a faint parenchymal texture and the degree "
        "of steatosis. Treat a Mild or Moderate call with caution.",
        "A single training run's score depends on its seed: these settings trained with "
        "seeds 0, 1 and 2 gave a macro-F1 of 0.731, 0.675 and 0.774 on 200 validation "
        "phantoms. This file is the mean of the three runs' logits (0.758 there), which is "
        "steadier than any one run; it is not a larger model, and it confuses the same "
        "stages.",
    ],
    "slice-triage": [
        "Tumour-free slices through the liver are the hard negatives: the AUC among slices "
        "through the liver is lower than over all slices, which include the easy slices "
        "above and below the liver.",
        "Its separation does not carry over beyond its own generator's phantoms: on radview's "
        "built-in sample study (drawn by the simpler phantom in radview.core.phantom) it gives "
        "0.5-0.6 on every liver slice, with or without tumour, and on real CT (below) up to "
        "0.9 on scans with no known tumour. Use it to order reading, never to skip slices.",
    ],
}


def _fmt(value: dict | float | None) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, dict):
        low, high = value["ci95"]
        return f"{value['mean']:.3f} (95% CI {low:.3f}-{high:.3f}; n = {value['n']})"
    return f"{value:.3f}"


def _metrics_table(result: dict, app_liver: dict | None = None) -> list[str]:
    """The held-out table; ``app_liver``: the staging evaluation on the segmentation model's
    liver instead of the truth's (what the app does)."""
    summary = result["summary"]
    lines = ["| Metric | Held-out value |", "|---|---|"]
    if result["task"] == "segmentation":
        for key, label in (("liver_dice", "Liver Dice (liver + tumour)"),
                           ("liver_iou", "Liver IoU"),
                           ("tumor_dice", "Tumour Dice (scans with tumour)"),
                           ("tumor_iou", "Tumour IoU"),
                           ("mean_iou", "Mean IoU over classes"),
                           ("pixel_accuracy", "Pixel accuracy"),
                           ("seconds", "Seconds per scan (app pipeline, CPU)")):
            if key in summary:
                lines.append(f"| {label} | {_fmt(summary[key])} |")
        if summary.get("liver_dice_by_stage"):
            lines.append("| Liver Dice by liver disease stage of the scan | " + ", ".join(
                f"{stage} {value:.3f}" for stage, value in summary["liver_dice_by_stage"].items())
                + " |")
        detection = summary.get("detection")
        if detection and detection["sensitivity"] is None:
            lines.append("| Lesion detection sensitivity, lesions >= 10 mm | n/a (no such "
                         "lesion in the held-out scans) |")
        elif detection:
            low, high = detection["sensitivity_ci95"]
            flow, fhigh = detection["false_positives_ci95"]
            lines.append(f"| Lesion detection sensitivity, lesions >= 10 mm | "
                         f"{detection['sensitivity']:.3f} ({detection['detected']} of "
                         f"{detection['lesions_10mm']}; 95% CI {low:.3f}-{high:.3f}) |")
            if detection.get("low_contrast_lesions"):
                low = _fmt(detection["sensitivity_low_contrast"])
                lines.append(
                    f"| ... of them low-contrast (CNR < 1: contrast to the liver around them "
                    f"below the liver's voxel spread) | {low} "
                    f"({detection['low_contrast_detected']} of "
                    f"{detection['low_contrast_lesions']}) |")
                lines.append(f"| ... of them the others (CNR >= 1) | "
                             f"{_fmt(detection.get('sensitivity_other'))} "
                             f"({detection['detected'] - detection['low_contrast_detected']} of "
                             f"{detection['lesions_10mm'] - detection['low_contrast_lesions']}) |")
            lines.append(f"| False-positive lesions per scan | "
                         f"{detection['false_positives_per_scan']:.2f} (95% CI "
                         f"{flow:.2f}-{fhigh:.2f}) |")
            by_stage = detection.get("false_positives_per_scan_by_stage") or {}
            if by_stage:
                lines.append("| ... by liver disease stage of the scan | " + ", ".join(
                    f"{stage} {value:.1f}" for stage, value in by_stage.items()) + " |")
    elif result["task"] == "triage":
        low, high = summary["auc_ci95"]
        lines += [f"| Slice AUC | {summary['auc']:.3f} (95% CI {low:.3f}-{high:.3f}) |",
                  f"| Slice AUC among slices through the liver | "
                  f"{_fmt(summary.get('auc_liver_slices'))} |",
                  f"| Sensitivity at P >= 0.5 | {_fmt(summary.get('sensitivity_at_0.5'))} |",
                  f"| Specificity at P >= 0.5 | {_fmt(summary.get('specificity_at_0.5'))} |",
                  f"| Slices (positive) | {summary['slices']} ({summary['positive_slices']}) |",
                  f"| ms per slice (whole app pipeline, CPU) | "
                  f"{summary['ms_per_slice_pipeline']:.2f} |"]
    else:
        low, high = summary["macro_f1_ci95"]
        alow, ahigh = summary["accuracy_ci95"]
        lines += [f"| Macro-F1 | {summary['macro_f1']:.3f} (95% CI {low:.3f}-{high:.3f}) |",
                  f"| Accuracy | {summary['accuracy']:.3f} (95% CI {alow:.3f}-{ahigh:.3f}) |"]
        if app_liver and app_liver.get("summary"):
            app = app_liver["summary"]
            low, high = app["macro_f1_ci95"]
            lines.append(f"| Macro-F1 on {app_liver['liver_from']}'s liver (as in the app; "
                         f"{app_liver['cases']} scans) | {app['macro_f1']:.3f} (95% CI "
                         f"{low:.3f}-{high:.3f}) |")
        labels = summary["labels"]
        lines += ["", "Confusion matrix (rows: truth, columns: predicted):", "",
                  "| truth \\ predicted | " + " | ".join(labels) + " |",
                  "|---" * (len(labels) + 1) + "|"]
        for name, row in zip(labels, summary["confusion_matrix"], strict=True):
            lines.append(f"| {name} | " + " | ".join(str(v) for v in row) + " |")
    return lines


def _search_table(search: dict) -> list[str]:
    keys = ["method", "trial", "lr", "width", "dice_weight", "tumour_class_weight", "dropout",
            "dice_liver", "dice_tumor", "score", "seconds"]
    lines = ["| " + " | ".join(keys) + " |", "|---" * len(keys) + "|"]
    for row in search["trials"]:
        cells = []
        for key in keys:
            value = row.get(key, "")
            cells.append(f"{value:.4g}" if isinstance(value, float) else str(value))
        lines.append("| " + " | ".join(cells) + " |")
    best = search["best"]
    lines += ["", f"Chosen: {best['method']} trial {best['trial']} (highest validation score "
              f"{best['score']:.4f}). Each trial trained {search['base']['steps']} steps from "
              f"scratch on {search['base']['crop']}-pixel crops and was scored on "
              f"{search['base']['val_cases']} validation cases (never the test cases)."]
    return lines


def _averaged_text(summary: dict, others: list[dict]) -> str:
    runs = [summary, *others]
    seeds = ", ".join(str(run["config"]["seed"]) for run in runs)
    scores = ", ".join(f"{run['best_metrics']['score']:.3f}" for run in runs)
    return (f" **Shipped as the mean of the logits of {len(runs)} runs** with these settings "
            f"that differ only in the seed ({seeds}; best validation scores {scores}, "
            "in that order): one run's score moves by up to 0.1 with the seed alone.")


def _lesion_filter_section(saved: dict) -> list[str]:
    spec = saved["spec"]
    heldout = {row["threshold"]: row for row in saved.get("heldout_table", [])}
    lines = [
        "## Lesion filter (`[lesion_filter]` in model.toml)",
        "After post-processing, each tumour component is scored by a logistic regression over "
        "its features (`radview.inference.lesion_filter`); components below the threshold "
        "become liver and the report says how many were set aside. Fitted "
        f"(`python -m training.lesion_filter`) on this model's unfiltered output on "
        f"{saved['fit_scans']} phantoms the network never saw (the `lesion_filter` seeds): "
        f"{saved['fit_components']} components, {saved['fit_false_positives']} of them false "
        f"positives. Threshold rule: {saved['rule']}; it chose **{spec['threshold']}**.",
        "",
        "| feature | standardised weight |",
        "|---|---|",
        *(f"| {name} | {weight:+.3f} |" for name, weight in
          zip(spec["features"], spec["weights"], strict=True)),
        "",
        "Detection of lesions >= 10 mm at each threshold (0 = no filter). The held-out columns "
        "are reported, not used to choose:",
        "",
        "| threshold | fitting: sensitivity | fitting: FP/scan | held-out: sensitivity "
        "| held-out: FP/scan | held-out: tumour Dice |",
        "|---|---|---|---|---|---|",
    ]
    for row in saved["fit_table"]:
        other = heldout.get(row["threshold"])
        mark = " (chosen)" if row["threshold"] == spec["threshold"] else ""
        lines.append(
            f"| {row['threshold']:.2f}{mark} | {row['sensitivity']:.3f} | "
            f"{row['false_positives_per_scan']:.2f} | "
            + (f"{other['sensitivity']:.3f} | {other['false_positives_per_scan']:.2f} | "
               f"{other['tumor_dice']:.3f} |" if other else "- | - | - |"))
    return [*lines, ""]


def write_model_card(path: Path, model_id: str, result: dict, summary: dict, export: dict,
                     search: dict | None, real_checks: Path | None,
                     postprocess_table: str | None = None,
                     quantization: dict | None = None, app_liver: dict | None = None,
                     lesion_filter: dict | None = None,
                     averaged: list[dict] | None = None) -> Path:
    config = summary["config"]
    first, count = SPLITS["train"]
    vfirst, vcount = SPLITS["val"]
    tfirst, tcount = SPLITS["test"]
    staging = model_id == "liver-stage-cnnlstm"
    spacing = STAGE_SPACING_MM if staging else SLICE_SPACING_MM
    lines = [
        f"# Model card: {model_id} {result['version']}",
        "",
        "**Decision support only.** This model's output is for a radiologist to review; it is "
        "not a diagnosis and must not be used on its own to decide care. radview shows its "
        "probabilities, not just its answer.",
        "",
        "## Intended use",
        INTENDED_USE[model_id],
        "",
        "## Training data",
        f"Synthetic abdominal CT phantoms only: `training/phantoms` generator version "
        f"{GENERATOR_VERSION}, training seeds {first}-{first + count - 1} ({count} scans), "
        f"validation seeds {vfirst}-{vfirst + vcount - 1} ({vcount}), held-out test seeds "
        f"{tfirst}-{tfirst + tcount - 1} ({tcount}, used only for the numbers below). No patient "
        "data. Each scan varies anatomy, contrast phase, noise, pixel spacing (0.6-2.4 mm), "
        "slice thickness (1-5 mm), field of view (truncation included), lesions (0-8, "
        "5-100 mm) and disease stage; training adds random intensity scale/offset, noise, blur, "
        "gamma, rotation, scaling and shifts.",
        "",
        "## Input and preprocessing",
        f"CT in HU, body-cropped and resampled in-plane to {spacing} mm by radview's pipeline"
        + (" (each slice smoothed first, so a 4 mm pixel averages the source pixels it covers: "
           "manifest `antialias = true`)" if staging and STAGE_ANTIALIAS else "") + ", "
        f"window {HU_WINDOW[0]:g} to {HU_WINDOW[1]:g} HU mapped to [0, 1]"
        + (", 16 liver slices spread over the liver's craniocaudal range (from the "
           "segmentation)" + (", each with the segmentation's liver mask as a second channel "
                              "(manifest `liver_mask_channel = true`)"
                              if config.get("liver_mask") else "") + "."
           if staging else f", {config['channels']} neighbouring slices as channels."),
        "",
        "## Training",
        f"Settings: `{ {k: v for k, v in config.items() if k not in ('extra',)} }`. "
        f"Steps run: {summary['steps_done']} in {summary['seconds'] / 60:.1f} min on 2 CPU "
        f"cores. Best validation: `{summary['best_metrics']}`."
        + (_averaged_text(summary, averaged) if averaged else ""),
        "",
        "## Held-out metrics",
        f"{result['cases']} held-out synthetic scans, measured through radview's own pipeline "
        "(resampling, post-processing) on the source grid; 95 % confidence intervals by "
        "bootstrap over scans (`python -m training.evaluate`).",
        "",
        *_metrics_table(result, app_liver),
        "",
        "## Export",
        f"ONNX opset 17, {export['size_mb']:.1f} MB; ONNX Runtime vs PyTorch logits max "
        f"|difference| {export['parity_max_abs']:.1e} on random inputs (limit 1e-4, checked at "
        "export and in CI).",
        "",
    ]
    if model_id == "liver-tumor-seg" and postprocess_table:
        lines += ["## Post-processing threshold (validation phantoms)",
                  "Tumour components below a volume become liver. Each candidate applied to the "
                  "same 40 validation segmentations (`python -m training.tune_postprocess`), "
                  "and the one its rule chose (the fewest false positives losing at most 0.02 "
                  "sensitivity and no tumour Dice):", "", "```", postprocess_table.strip(),
                  "```", ""]
    if lesion_filter and lesion_filter.get("spec"):
        lines += _lesion_filter_section(lesion_filter)
    if quantization is not None:
        lines += ["## INT8 (static quantisation, `python -m training.quantize`)",
                  f"QDQ, per-channel, calibrated on {quantization['calibration']['slices']} "
                  f"training-phantom slices: {quantization['int8']['size_mb']:.1f} MB. On "
                  f"{len(quantization['heldout']['cases'])} held-out scans liver Dice "
                  f"{quantization['dice_fp32']['liver']:.4f} (FP32) vs "
                  f"{quantization['dice_int8']['liver']:.4f} (INT8), tumour Dice "
                  f"{quantization['dice_fp32']['tumor']:.4f} vs "
                  f"{quantization['dice_int8']['tumor']:.4f}; model-only speed-up "
                  f"{quantization['speedup']:.2f}x on 2 threads. It passes the Dice rule "
                  "(drop < 0.01) but is not shipped: every shipped model must give PyTorch's "
                  "logits within 1e-4 (the parity rule), which an INT8 file cannot, and these "
                  "held-out "
                  "numbers would describe a different file. The end-to-end speed-up is in "
                  "benchmarks/README.md; `python -m training.quantize` rebuilds the INT8 file "
                  "for anyone who accepts that trade.", ""]
    if search is not None:
        lines += ["## Hyperparameter search", "Random search, then Bayesian optimisation "
                  "(optuna TPE, seeded with the random trials):", "", *_search_table(search), ""]
    limits = [*MODEL_LIMITS.get(model_id, []), *KNOWN_LIMITS]
    lines += ["## Known limits and failure modes", *[f"- {item}" for item in limits]]
    if real_checks is not None and real_checks.exists():
        lines += ["", "## Real CT checks (qualitative; never used for training)", "",
                  real_checks.read_text().strip()]
    path.write_text("\n".join(lines) + "\n")
    return path
