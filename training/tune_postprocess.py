"""Choose the tumour speck threshold (``TUMOUR_MIN_VOLUME_MM3``) on the validation phantoms.

    python -m training.tune_postprocess --data build/train/val_msd [--models-dir DIR]

Segments every validation case once with no speck removal, then applies each candidate
threshold to the same output and reports lesion sensitivity (>= 10 mm), false positives per
scan and tumour Dice. The test split is never used here.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from radview.inference import pipeline
from radview.inference.runtime import SessionCache
from training.data import iter_msd_pairs
from training.evaluate import find_model
from training.metrics import detect_lesions, dice

CANDIDATES_MM3 = (0.0, 30.0, 65.0, 100.0, 150.0, 250.0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.tune_postprocess")
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--model", default="liver-tumor-seg")
    parser.add_argument("--models-dir", type=Path)
    args = parser.parse_args(argv)
    model = find_model(args.model, args.models_dir)
    sessions = SessionCache()
    saved = pipeline.TUMOUR_MIN_VOLUME_MM3
    pipeline.TUMOUR_MIN_VOLUME_MM3 = 0.0
    outputs = []
    try:
        for name, image, labels, problem in iter_msd_pairs(args.data):
            if problem:
                print(f"skipped {name}: {problem}")
                continue
            result = pipeline.segment(image, model, sessions, device="cpu", force=True)
            outputs.append((result.labels.voxels, np.asarray(labels.voxels), image.spacing))
    finally:
        pipeline.TUMOUR_MIN_VOLUME_MM3 = saved
    table = []
    for threshold in CANDIDATES_MM3:
        counted = detected = fps = 0
        dices = []
        for predicted, truth, spacing in outputs:
            out = predicted.copy()
            pipeline._drop_small_tumours(out, spacing, threshold)
            found = detect_lesions(out == 2, truth == 2, spacing)
            counted += found["truth_lesions"]
            detected += found["detected"]
            fps += found["false_positives"]
            if (truth == 2).any():
                dices.append(dice(out == 2, truth == 2))
        row = {"min_tumour_mm3": threshold, "sensitivity_10mm": detected / max(1, counted),
               "false_positives_per_scan": fps / len(outputs),
               "tumour_dice": float(np.mean(dices))}
        table.append(row)
        print(json.dumps(row))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
