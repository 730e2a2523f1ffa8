"""Choose the tumour speck threshold (``TUMOUR_MIN_VOLUME_MM3``) on the validation phantoms.

    python -m training.tune_postprocess --data build/train/val_msd [--models-dir DIR]

Segments every validation case once with no speck removal (and no lesion filter, which is
fitted on top of the chosen threshold: training.lesion_filter), then applies each candidate
threshold to that same output; each candidate's lesion sensitivity (>= 10 mm), false positives
per scan and tumour Dice are printed, one JSON line each, and the candidate the rule below
picks is printed last. The test split is never used here.

The rule: the fewest false positives per scan among the candidates that lose at most
:data:`MAX_SENSITIVITY_LOSS` of the no-threshold sensitivity and no tumour Dice.

(A minimum tumour probability instead of argmax was tried the same way on 2026-11-22: at 0.6
and 0.75 it traded sensitivity for false positives no better than the speck threshold does, so
the pipeline keeps argmax.)
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
MAX_SENSITIVITY_LOSS = 0.02


def _segment_all(data: Path, model, sessions: SessionCache, log=print) -> list[tuple]:
    outputs = []
    for name, image, labels, problem in iter_msd_pairs(data):
        if problem:
            log(f"skipped {name}: {problem}")
            continue
        # without the lesion filter: it is fitted afterwards, on what this threshold leaves
        result = pipeline.segment(image, model, sessions, device="cpu", force=True,
                                  apply_lesion_filter=False)
        outputs.append((result.labels.voxels, np.asarray(labels.voxels), image.spacing))
    return outputs


def _score(outputs: list[tuple], min_volume_mm3: float) -> dict:
    counted = detected = fps = 0
    dices = []
    for predicted, truth, spacing in outputs:
        out = predicted.copy()
        pipeline._drop_small_tumours(out, spacing, min_volume_mm3)
        found = detect_lesions(out == 2, truth == 2, spacing)
        counted += found["truth_lesions"]
        detected += found["detected"]
        fps += found["false_positives"]
        if (truth == 2).any():
            dices.append(dice(out == 2, truth == 2))
    return {"sensitivity_10mm": detected / max(1, counted),
            "false_positives_per_scan": fps / len(outputs),
            "tumour_dice": float(np.mean(dices)) if dices else None}


def choose(table: list[dict]) -> dict:
    """The row the module's rule picks (the table's first row is no threshold)."""
    baseline = table[0]

    def keeps_dice(row: dict) -> bool:
        return baseline["tumour_dice"] is None or row["tumour_dice"] >= baseline["tumour_dice"]

    allowed = [row for row in table
               if row["sensitivity_10mm"] >= baseline["sensitivity_10mm"] - MAX_SENSITIVITY_LOSS
               and keeps_dice(row)]
    return min(allowed or [baseline], key=lambda row: row["false_positives_per_scan"])


def tune(data: Path, model, log=print) -> list[dict]:
    """Every candidate's row on the cases in ``data`` (see the module docstring)."""
    saved = pipeline.TUMOUR_MIN_VOLUME_MM3
    pipeline.TUMOUR_MIN_VOLUME_MM3 = 0.0
    try:
        outputs = _segment_all(data, model, SessionCache(), log)
    finally:
        pipeline.TUMOUR_MIN_VOLUME_MM3 = saved
    if not outputs:
        raise SystemExit(f"{data}: no validation case could be segmented")
    return [{"min_tumour_mm3": volume, **_score(outputs, volume)} for volume in CANDIDATES_MM3]


def table_text(table: list[dict]) -> str:
    """The table as the model card shows it: one JSON line per candidate, then the choice, and
    a note when the pipeline's constant is not the chosen value."""
    chosen = choose(table)
    lines = [json.dumps(row) for row in table] + ["chosen: " + json.dumps(chosen)]
    if chosen["min_tumour_mm3"] != pipeline.TUMOUR_MIN_VOLUME_MM3:
        lines.append(f"note: the pipeline's TUMOUR_MIN_VOLUME_MM3 is "
                     f"{pipeline.TUMOUR_MIN_VOLUME_MM3:g}, not the chosen value")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.tune_postprocess")
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--model", default="liver-tumor-seg")
    parser.add_argument("--models-dir", type=Path)
    args = parser.parse_args(argv)
    model = find_model(args.model, args.models_dir)
    print(table_text(tune(args.data, model)), end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
