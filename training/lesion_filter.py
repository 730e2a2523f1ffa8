"""Fit a segmentation model's lesion filter (:mod:`radview.inference.lesion_filter`).

1. ``collect``: run the model through the app's pipeline, without a filter, on every scan of an
   MSD-layout folder (by default the ``lesion_filter`` phantom split: scans the network never
   saw, so its false positives there are like those on new scans) and record, for every tumour
   component it reports, the filter's features and what it is in the truth: which lesions of
   10 mm or more it touches, whether it touches any truth tumour (if not: a false positive),
   and its overlap with the truth (for tumour Dice).
2. ``fit``: an L2-regularised logistic regression of "touches a truth tumour" on the
   standardised features.
3. ``choose_threshold``: the operating point, by :data:`THRESHOLD_RULE`, on the same scans.

``python -m training.lesion_filter --data DIR [DIR ...] [--evaluate DIR ...] [--cache DIR]``
does all three and prints the table of thresholds on the fitting scans and, with
``--evaluate``, on other folders (e.g. the validation phantoms); ``--tumour-weight`` makes the
candidates with another weight. ``make train`` fits the filter and writes it into the model's
``model.toml`` (``training.publish.fit_lesion_filter``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from scipy import ndimage, optimize

from radview.inference.lesion_filter import (
    FEATURES,
    LesionFilterSpec,
    component_features,
    lesion_probabilities,
)
from radview.inference.pipeline import segment
from radview.inference.runtime import SessionCache
from training.data import iter_msd_pairs
from training.metrics import largest_extent_mm

__all__ = ["ScanComponents", "collect", "load_or_collect", "fit", "fit_result",
           "operating_point", "choose_threshold", "threshold_table", "spec_from_result",
           "THRESHOLD_RULE", "TUMOUR_WEIGHT"]

#: How the threshold is chosen on the fitting scans, written before any validation result.
THRESHOLD_RULE = ("the highest threshold that keeps at least 97 % of the lesions >= 10 mm the "
                  "unfiltered model finds on the fitting scans")
KEEP_SHARE = 0.97
#: The tumour probability's weight when candidates are made (``segment``'s tumour_weight).
TUMOUR_WEIGHT = 1.0
#: L2 penalty on the standardised weights (the bias is not penalised).
L2 = 1e-2
MIN_DIAMETER_MM = 10.0  # lesions counted for sensitivity, as in metrics.detect_lesions
_CONNECTIVITY = np.ones((3, 3, 3), bool)


@dataclass
class ScanComponents:
    """One scan's predicted tumour components and their truth."""

    name: str
    features: np.ndarray  # (components, F)
    touches_truth: np.ndarray  # (components,) bool: overlaps any truth tumour voxel
    lesions_touched: list[list[int]]  # per component: the counted truth lesions it overlaps
    overlap_voxels: np.ndarray  # (components,) voxels inside the truth tumour
    size_voxels: np.ndarray  # (components,)
    counted_lesions: int  # truth lesions >= 10 mm (ids 0..counted-1)
    truth_voxels: int

    def to_json(self) -> dict:
        return {"name": self.name, "features": np.where(np.isnan(self.features), None,
                                                        self.features).tolist(),
                "touches_truth": self.touches_truth.tolist(),
                "lesions_touched": self.lesions_touched,
                "overlap_voxels": self.overlap_voxels.tolist(),
                "size_voxels": self.size_voxels.tolist(),
                "counted_lesions": self.counted_lesions, "truth_voxels": self.truth_voxels}

    @classmethod
    def from_json(cls, row: dict) -> ScanComponents:
        features = np.array([[np.nan if v is None else v for v in r] for r in row["features"]],
                            float).reshape(-1, len(FEATURES))
        return cls(row["name"], features, np.array(row["touches_truth"], bool),
                   row["lesions_touched"], np.array(row["overlap_voxels"], np.int64),
                   np.array(row["size_voxels"], np.int64), row["counted_lesions"],
                   row["truth_voxels"])


def _scan_components(name: str, labels: np.ndarray, truth: np.ndarray, hu: np.ndarray,
                     probability: np.ndarray, spacing_xyz) -> ScanComponents:
    found = component_features(labels, hu, probability, spacing_xyz)
    count, features = found.count, found.features
    components = np.zeros(labels.shape, np.int32)  # training only: the memory does not matter
    components[found.box] = found.labels
    truth_tumour = truth == 2
    truth_components, _ = ndimage.label(truth_tumour, _CONNECTIVITY)
    counted_ids: dict[int, int] = {}  # truth component label -> counted lesion id
    for index, box in enumerate(ndimage.find_objects(truth_components), start=1):
        if box is not None and largest_extent_mm(box, spacing_xyz) >= MIN_DIAMETER_MM:
            counted_ids[index] = len(counted_ids)
    touches = np.zeros(count, bool)
    touched: list[list[int]] = [[] for _ in range(count)]
    overlap = np.zeros(count, np.int64)
    size = np.zeros(count, np.int64)
    for index, box in enumerate(ndimage.find_objects(components), start=1):
        if box is None:
            continue
        inside = components[box] == index
        hit = truth_components[box][inside]
        size[index - 1] = int(inside.sum())
        overlap[index - 1] = int(np.count_nonzero(hit))
        touches[index - 1] = overlap[index - 1] > 0
        touched[index - 1] = sorted({counted_ids[int(t)] for t in np.unique(hit)
                                     if int(t) in counted_ids})
    return ScanComponents(name, features, touches, touched, overlap, size, len(counted_ids),
                          int(truth_tumour.sum()))


def collect(data: Path, model_id: str, log=print, models_dir: Path | None = None,
            tumour_weight: float = 1.0) -> list[ScanComponents]:
    """Every usable scan's components (see the module docstring); unusable pairs are logged
    and skipped. ``models_dir``: where the model is (default: the installed models);
    ``tumour_weight``: how the candidates are made (``segment``'s)."""
    from training.evaluate import find_model

    model = find_model(model_id, models_dir)
    sessions = SessionCache()
    scans = []
    started = time.perf_counter()
    for name, image, labels, problem in iter_msd_pairs(data):
        if problem is not None:
            log(f"skipped {name}: {problem}")
            continue
        result = segment(image, model, sessions, device="cpu", force=True,
                         apply_lesion_filter=False, keep_tumour_probability=True,
                         tumour_weight=tumour_weight)
        scans.append(_scan_components(
            name, np.asarray(result.labels.voxels), np.asarray(labels.voxels).astype(np.uint8),
            np.asarray(image.voxels), result.tumour_probability, image.spacing))
        if len(scans) % 20 == 0:
            log(f"{len(scans)} scans ({time.perf_counter() - started:.0f} s)")
    return scans


def fit(scans: list[ScanComponents], l2: float = L2) -> tuple[np.ndarray, np.ndarray,
                                                                np.ndarray, float]:
    """(mean, scale, weights, bias) of the logistic regression of ``touches_truth``."""
    x = np.concatenate([s.features for s in scans])
    y = np.concatenate([s.touches_truth for s in scans]).astype(float)
    mean = np.nanmean(x, axis=0)
    scale = np.nanstd(x, axis=0)
    scale = np.where(scale > 1e-9, scale, 1.0)
    z = (np.where(np.isnan(x), mean, x) - mean) / scale

    def loss(theta):
        w, b = theta[:-1], theta[-1]
        logits = z @ w + b
        # log(1 + e^l) - y l, stable
        value = np.sum(np.logaddexp(0.0, logits) - y * logits) + 0.5 * l2 * len(y) * w @ w
        p = 1.0 / (1.0 + np.exp(-logits))
        grad = np.concatenate([z.T @ (p - y) + l2 * len(y) * w, [np.sum(p - y)]])
        return value, grad

    result = optimize.minimize(loss, np.zeros(z.shape[1] + 1), jac=True, method="L-BFGS-B")
    return mean, scale, result.x[:-1], float(result.x[-1])


def operating_point(scans: list[ScanComponents], spec: LesionFilterSpec | None) -> dict:
    """Detection (lesions >= 10 mm), false positives per scan and mean tumour Dice (scans with
    a truth tumour) when ``spec`` filters the components (None: no filter)."""
    found = counted = false_positives = 0
    dices = []
    for scan in scans:
        keep = (np.ones(len(scan.features), bool) if spec is None or not len(scan.features)
                else lesion_probabilities(scan.features, spec) >= spec.threshold)
        hit = {lesion for k, lesions in zip(keep, scan.lesions_touched, strict=True) if k
               for lesion in lesions}
        found += len(hit)
        counted += scan.counted_lesions
        false_positives += int(np.sum(keep & ~scan.touches_truth))
        if scan.truth_voxels:
            dices.append(2.0 * scan.overlap_voxels[keep].sum()
                         / (scan.size_voxels[keep].sum() + scan.truth_voxels))
    return {"sensitivity": found / counted if counted else float("nan"), "detected": found,
            "lesions_10mm": counted, "false_positives_per_scan": false_positives / len(scans),
            "tumor_dice": float(np.mean(dices)) if dices else float("nan")}


def _spec(fitted, threshold: float, tumour_weight: float = 1.0) -> LesionFilterSpec:
    """The filter as the manifest stores it (6 significant digits), so that what is measured
    here is exactly what the app applies."""
    mean, scale, weights, bias = fitted

    def short(values):
        return tuple(float(f"{float(v):.6g}") for v in values)

    return LesionFilterSpec(short(mean), short(scale), short(weights), short([bias])[0],
                            float(threshold), float(tumour_weight))


THRESHOLDS = tuple(round(t, 2) for t in np.arange(0.05, 0.96, 0.05))


def choose_threshold(scans: list[ScanComponents], fitted) -> tuple[float, list[dict]]:
    """The threshold by :data:`THRESHOLD_RULE` and the table it was chosen from."""
    table = threshold_table(scans, _spec(fitted, 0.0))
    unfiltered = table[0]
    allowed = [row["threshold"] for row in table[1:]
               if row["detected"] >= KEEP_SHARE * unfiltered["detected"]]
    return (max(allowed) if allowed else 0.0), table


def threshold_table(scans: list[ScanComponents], spec: LesionFilterSpec) -> list[dict]:
    """``operating_point`` on ``scans`` without a filter (threshold 0), then with ``spec``'s
    regression at every threshold of :data:`THRESHOLDS`."""
    return [{"threshold": 0.0, **operating_point(scans, None)}] + [
        {"threshold": t, **operating_point(scans, replace(spec, threshold=t))}
        for t in THRESHOLDS]


def load_or_collect(data: Path, model_id: str, cache_dir: Path | None, log=print,
                    tumour_weight: float = 1.0) -> list[ScanComponents]:
    """``collect``, or its saved result from ``cache_dir`` (one JSON per folder, model and
    tumour weight)."""
    weight = "" if tumour_weight == 1.0 else f"-w{tumour_weight:g}"
    cache = (cache_dir / f"{data.resolve().name}-{model_id}{weight}.json") if cache_dir else None
    if cache is not None and cache.exists():
        return [ScanComponents.from_json(r) for r in json.loads(cache.read_text())]
    scans = collect(data, model_id, log=log, tumour_weight=tumour_weight)
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        cache.write_text(json.dumps([s.to_json() for s in scans]))
    return scans


#: Fewer components (or only one kind) on the fitting scans: no filter (e.g. ``--smoke``).
MIN_COMPONENTS = 20


def fit_result(scans: list[ScanComponents], model_sha256: str, tumour_weight: float = 1.0
               ) -> dict | None:
    """The fitted filter with its threshold table, as saved in ``runs/<id>/lesion_filter.json``
    (None when the scans give too little to fit)."""
    touches = np.concatenate([s.touches_truth for s in scans]) if scans else np.zeros(0, bool)
    if len(touches) < MIN_COMPONENTS or touches.all() or not touches.any():
        return None
    fitted = fit(scans)
    threshold, table = choose_threshold(scans, fitted)
    return {"model_sha256": model_sha256, "rule": THRESHOLD_RULE, "fit_scans": len(scans),
            "fit_components": int(len(touches)), "fit_false_positives": int((~touches).sum()),
            "spec": dict(_spec(fitted, threshold, tumour_weight).as_toml_table()),
            "fit_table": table}


def spec_from_result(result: dict) -> LesionFilterSpec:
    spec = result["spec"]
    return LesionFilterSpec(tuple(spec["mean"]), tuple(spec["scale"]), tuple(spec["weights"]),
                            spec["bias"], spec["threshold"], spec.get("tumour_weight", 1.0))


def _print_table(rows: list[dict], log) -> None:
    log("threshold  sensitivity  found/lesions  FP/scan  tumour Dice")
    for r in rows:
        log(f"{r['threshold']:9.2f}  {r['sensitivity']:11.3f}  "
            f"{r['detected']:5d}/{r['lesions_10mm']:<6d}  "
            f"{r['false_positives_per_scan']:7.3f}  {r['tumor_dice']:.3f}")


def main(argv: list[str] | None = None) -> int:
    from training.evaluate import find_model
    from training.export import sha256_of

    parser = argparse.ArgumentParser(prog="python -m training.lesion_filter",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="liver-tumor-seg")
    parser.add_argument("--data", type=Path, nargs="+", required=True,
                        help="MSD folder(s) to fit on")
    parser.add_argument("--evaluate", type=Path, nargs="*", default=[],
                        help="MSD folder(s) to apply the fitted filter to, pooled")
    parser.add_argument("--cache", type=Path, help="folder for the collected components")
    parser.add_argument("--out", type=Path, help="write the fit and tables here (JSON)")
    parser.add_argument("--tumour-weight", type=float, default=TUMOUR_WEIGHT,
                        help=f"how candidates are made (default {TUMOUR_WEIGHT:g})")
    args = parser.parse_args(argv)
    weight = args.tumour_weight
    scans = [s for d in args.data for s in load_or_collect(d, args.model, args.cache,
                                                            tumour_weight=weight)]
    result = fit_result(scans, sha256_of(find_model(args.model, None).onnx_path), weight)
    if result is None:
        print(f"{', '.join(map(str, args.data))}: too few tumour components to fit a filter "
              f"({sum(len(s.features) for s in scans)} in {len(scans)} scans; it needs "
              f"{MIN_COMPONENTS}, true and false ones)", file=sys.stderr)
        return 2
    spec = spec_from_result(result)
    print(f"fitted on {len(scans)} scans, {result['fit_components']} components")
    print("weights:", dict(zip(FEATURES, np.round(spec.weights, 3).tolist(), strict=True)),
          "bias", round(spec.bias, 3))
    _print_table(result["fit_table"], print)
    print(f"chosen threshold {spec.threshold} ({THRESHOLD_RULE})")
    if args.evaluate:
        other = [s for d in args.evaluate for s in load_or_collect(
            d, args.model, args.cache, tumour_weight=weight)]
        result["evaluate_table"] = threshold_table(other, spec)
        print(f"applied to {len(other)} scans of {', '.join(map(str, args.evaluate))}:")
        _print_table(result["evaluate_table"], print)
    if args.out is not None:
        args.out.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
