"""Hyperparameter search for the segmentation U-Net: random search, then Bayesian optimisation
(optuna's TPE sampler), on short proxy runs scored on validation cases (never the test split).

Each trial trains ``steps`` steps from scratch and is scored by the mean of liver and tumour
Dice on the validation subset. The table of every trial and the chosen configuration are
written to ``OUT/search.json`` (and go into the model card).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, replace
from pathlib import Path

import optuna

from training.data import CachedCase
from training.train import TrainConfig, train_model

__all__ = ["SEARCH_SPACE", "search"]

#: name -> (kind, low, high) or ("choice", options)
SEARCH_SPACE = {
    "lr": ("log", 3e-4, 5e-3),
    "width": ("choice", (12, 16)),
    "dice_weight": ("float", 0.0, 1.5),
    "tumour_class_weight": ("float", 1.0, 4.0),
    "dropout": ("float", 0.0, 0.2),
}


def _suggest(trial: optuna.Trial) -> dict:
    values = {}
    for name, spec in SEARCH_SPACE.items():
        if spec[0] == "log":
            values[name] = trial.suggest_float(name, spec[1], spec[2], log=True)
        elif spec[0] == "float":
            values[name] = trial.suggest_float(name, spec[1], spec[2])
        else:
            values[name] = trial.suggest_categorical(name, list(spec[1]))
    return values


def search(base: TrainConfig, train: list[CachedCase], val: list[CachedCase], out: Path, *,
           random_trials: int = 4, bayes_trials: int = 4, log=print) -> dict:
    """Run both searches; return {"trials": [...], "best": {...}} (also in out/search.json)."""
    out.mkdir(parents=True, exist_ok=True)
    table: list[dict] = []

    def objective_for(method: str):
        def objective(trial: optuna.Trial) -> float:
            values = _suggest(trial)
            config = replace(base, **values)
            started = time.perf_counter()
            summary = train_model(config, train, val, out / f"{method}-{trial.number}",
                                  fresh=True, log=lambda _line: None)
            metrics = summary["best_metrics"] or {"score": 0.0}
            row = {"method": method, "trial": trial.number, **values,
                   **{k: round(v, 4) for k, v in metrics.items()},
                   "seconds": round(time.perf_counter() - started, 1)}
            table.append(row)
            log(f"search {method} #{trial.number}: " + json.dumps(row))
            return float(metrics["score"])
        return objective

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    random_study = optuna.create_study(direction="maximize",
                                       sampler=optuna.samplers.RandomSampler(seed=base.seed))
    random_study.optimize(objective_for("random"), n_trials=random_trials)
    bayes_study = optuna.create_study(
        direction="maximize",
        sampler=optuna.samplers.TPESampler(seed=base.seed, n_startup_trials=0))
    # TPE starts from what random search learned (its trials are added as prior evidence)
    for trial in random_study.trials:
        bayes_study.add_trial(trial)
    bayes_study.optimize(objective_for("tpe"), n_trials=bayes_trials)
    best = max(table, key=lambda row: row["score"])
    result = {"base": asdict(base), "space": {k: list(v[1:]) if v[0] != "choice" else
                                              list(v[1]) for k, v in SEARCH_SPACE.items()},
              "trials": table, "best": best}
    (out / "search.json").write_text(json.dumps(result, indent=2))
    return result
