"""Train one of radview's models on the cached phantoms, with checkpoints and resume.

    python -m training.train liver-tumor-seg [--steps N] [--config FILE.json] [--work DIR]

A checkpoint (weights, optimiser, schedule, step, history, best validation score) is written
atomically every ``checkpoint_every`` steps to ``WORK/<model>/checkpoint.pt``; starting again
with the same arguments resumes from it (``--fresh`` starts over). Each step's batch depends
only on (seed, step), so a resumed run trains on exactly the batches an uninterrupted one would.
The best weights by the validation score are kept in ``WORK/<model>/best.pt``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from training import augment
from training.data import CachedCase, load_cache, normalise
from training.metrics import binary_auc, dice, macro_f1
from training.networks import (
    CnnLstmStager,
    DeepLabV3Plus,
    LogitAverage,
    SliceTriageNet,
    UNet25D,
)
from training.samplers import SequenceSampler, SliceSampler, triage_targets

__all__ = ["TrainConfig", "MODEL_IDS", "AVERAGED_SEEDS", "build_network", "train_model",
           "predict_slices", "load_best", "load_shipped", "seed_runs", "main"]

MODEL_IDS = ("liver-tumor-seg", "liver-seg-deeplab", "liver-stage-cnnlstm", "slice-triage")
#: Models shipped as the mean of the logits of runs that differ only in the seed: the run with
#: the configured seed, then one per seed here (trained into :func:`seed_runs`). One staging
#: run moves by up to 0.1 macro-F1 with the seed alone; the mean of three is steadier and
#: scored above each run's mean on the validation scans (training/README.md).
AVERAGED_SEEDS: dict[str, tuple[int, ...]] = {"liver-stage-cnnlstm": (1, 2)}


@dataclass
class TrainConfig:
    """Everything a run depends on (saved in the checkpoint and the model card)."""

    model: str
    steps: int = 3000
    batch: int = 8
    lr: float = 2e-3
    weight_decay: float = 1e-4
    width: int = 16  # base channels
    dropout: float = 0.0
    crop: int = 160  # training crop (segmentation); inference runs on the whole slice
    channels: int = 3  # neighbouring slices (segmentation, triage)
    dice_weight: float = 1.0
    tumour_class_weight: float = 2.0
    augment_strength: float = 1.0
    hard_negative_share: float = 0.0  # triage: share of draws from liver slices
    end_stage_share: float = 0.0  # segmentation: share of draws from End-stage liver slices
    tumour_share: float = 0.4  # segmentation: share of the other draws from tumour slices
    liver_mask: bool = False  # staging: the liver mask as a second input channel
    seed: int = 0
    checkpoint_every: int = 100
    validate_every: int = 500
    val_cases: int | None = None  # None: all validation cases
    extra: dict = field(default_factory=dict)

    @classmethod
    def from_dict(cls, values: dict) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise ValueError(f"unknown training settings: {', '.join(sorted(unknown))}")
        return cls(**values)


def build_network(config: TrainConfig) -> nn.Module:
    if config.model == "liver-tumor-seg":
        return UNet25D(config.channels, 3, config.width, dropout=config.dropout)
    if config.model == "liver-seg-deeplab":
        return DeepLabV3Plus(config.channels, 2, config.width)
    if config.model == "liver-stage-cnnlstm":
        return CnnLstmStager(4, config.width, dropout=config.dropout or 0.2,
                             liver_mask=config.liver_mask)
    if config.model == "slice-triage":
        return SliceTriageNet(config.channels, config.width, dropout=config.dropout or 0.3)
    raise ValueError(f"unknown model {config.model!r}; choose from {', '.join(MODEL_IDS)}")


# ---------------------------------------------------------------------------- batches and losses
def segmentation_sampler(cases: list[CachedCase], config: TrainConfig) -> SliceSampler:
    """``config.tumour_share`` of the draws from tumour slices; the rest two parts from liver
    slices to one part from anywhere (0.4 gives the 0.4 / 0.4 / 0.2 of the first runs)."""
    liver = round((1.0 - config.tumour_share) * 2 / 3, 6)  # rounded: exactly 0.4 at 0.4
    return SliceSampler(cases, config.channels, shares=(config.tumour_share, liver))


def _segmentation_batch(sampler: SliceSampler, config: TrainConfig, rng: np.random.Generator,
                        liver_only: bool) -> tuple[torch.Tensor, torch.Tensor]:
    hu, labels = sampler.batch(rng, config.batch, crop=config.crop,
                               end_stage_share=config.end_stage_share)
    x = torch.from_numpy(augment.intensity_hu(hu, rng, config.augment_strength))
    y = torch.from_numpy(labels.astype(np.int64))
    if liver_only:
        y = (y > 0).long()
    x, y = augment.spatial(x, y, rng)
    return augment.blur_gamma(x, rng), y


def _segmentation_loss(logits: torch.Tensor, target: torch.Tensor,
                       config: TrainConfig) -> torch.Tensor:
    classes = logits.shape[1]
    weights = torch.ones(classes)
    if classes == 3:
        weights[2] = config.tumour_class_weight
    loss = F.cross_entropy(logits, target, weight=weights)
    if config.dice_weight > 0:
        probabilities = logits.softmax(dim=1)[:, 1:]
        onehot = F.one_hot(target, classes).permute(0, 3, 1, 2)[:, 1:].float()
        overlap = (probabilities * onehot).sum(dim=(0, 2, 3))
        total = probabilities.sum(dim=(0, 2, 3)) + onehot.sum(dim=(0, 2, 3))
        loss = loss + config.dice_weight * (1 - ((2 * overlap + 1) / (total + 1)).mean())
    return loss


def _triage_batch(sampler: SliceSampler, config: TrainConfig, rng: np.random.Generator
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    hu, labels = sampler.batch(rng, config.batch, balance_triage=True,
                                hard_negative_share=config.hard_negative_share)
    x = torch.from_numpy(augment.intensity_hu(hu, rng, config.augment_strength))
    y = torch.from_numpy(triage_targets(labels[:, None]).reshape(-1))
    x, _ = augment.spatial(x, None, rng)
    return augment.blur_gamma(x, rng), y


def _staging_batch(sampler: SequenceSampler, config: TrainConfig, rng: np.random.Generator
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    sequences, stages = sampler.batch(rng, config.batch)  # (n, t, c, h, w): HU [, liver mask]
    n, t, c = sequences.shape[:3]
    hu = torch.from_numpy(augment.intensity_hu(sequences[:, :, :1], rng,
                                               config.augment_strength))
    x = torch.cat([hu, torch.from_numpy(sequences[:, :, 1:])], dim=2)
    # the same spatial transform for every slice and channel of a sequence (the mask is
    # interpolated too: its edge pixels give the liver's share), blur and gamma on HU only
    x, _ = augment.spatial(x.reshape(n, t * c, *x.shape[3:]), None, rng, max_rotation_deg=8.0)
    x = x.reshape(n * t, c, *x.shape[2:])
    hu = augment.blur_gamma(x[:, :1].reshape(n, t, *x.shape[2:]), rng)
    planes = [hu.reshape(n * t, 1, *x.shape[2:])]
    if c > 1:  # in use the mask is the segmentation's, whose edge is off by a pixel or so
        planes.append(augment.jitter_mask_edge(x[:, 1:].reshape(n, t, *x.shape[2:]), rng)
                      .reshape(n * t, 1, *x.shape[2:]))
    return torch.cat(planes, dim=1).reshape(n, t, c, *x.shape[2:]), torch.from_numpy(stages)


def staging_tensor(sequence: np.ndarray) -> torch.Tensor:
    """One sampled sequence (t, c, h, w; HU [, liver mask]) -> the model input (1, t, c, h, w):
    HU normalised as the manifest says, the mask as it is."""
    x = sequence.astype(np.float32).copy()
    x[:, 0] = normalise(x[:, 0])
    return torch.from_numpy(x[None])


# ---------------------------------------------------------------------------- prediction
@torch.no_grad()
def predict_slices(net: nn.Module, hu: np.ndarray, channels: int, batch: int = 16) -> np.ndarray:
    """Logits (z, classes, H, W) of every slice of a cached volume (HU, z x H x W)."""
    net.eval()
    depth = hu.shape[0]
    half = channels // 2
    out = []
    for start in range(0, depth, batch):
        index = np.clip(np.arange(start, min(depth, start + batch))[:, None]
                        + np.arange(-half, half + 1)[None], 0, depth - 1)
        out.append(net(torch.from_numpy(normalise(hu[index]))).numpy())
    return np.concatenate(out)


def _validate(config: TrainConfig, net: nn.Module, cases: list[CachedCase]) -> dict[str, float]:
    """Validation metrics on the slice grid (the full-pipeline ones are training.evaluate's)."""
    net.eval()
    if config.model in ("liver-tumor-seg", "liver-seg-deeplab"):
        liver, tumour = [], []
        for case in cases:
            predicted = predict_slices(net, case.slice_hu, config.channels).argmax(axis=1)
            if config.model == "liver-seg-deeplab":
                liver.append(dice(predicted == 1, case.slice_labels > 0))
                continue
            liver.append(dice(predicted > 0, case.slice_labels > 0))
            if (case.slice_labels == 2).any():
                tumour.append(dice(predicted == 2, case.slice_labels == 2))
        result = {"dice_liver": float(np.mean(liver))}
        if tumour:
            result["dice_tumor"] = float(np.mean(tumour))
        result["score"] = float(np.mean(list(result.values())))
        return result
    if config.model == "slice-triage":
        scores, targets = [], []
        for case in cases:
            logits = predict_slices(net, case.slice_hu, config.channels, batch=32)
            scores.append(torch.from_numpy(logits).softmax(1)[:, 1].numpy())
            targets.append(triage_targets(case.slice_labels))
        auc = binary_auc(np.concatenate(targets), np.concatenate(scores))
        return {"auc": auc, "score": auc}
    sampler = SequenceSampler(cases, liver_mask=config.liver_mask)
    with torch.no_grad():
        predicted = [int(net(staging_tensor(sampler.sequence(case, None))).argmax())
                     for case in sampler.cases]
    truth = [case.stage for case in sampler.cases]
    f1 = macro_f1(truth, predicted, 4)
    accuracy = float(np.mean(np.array(truth) == np.array(predicted)))
    return {"macro_f1": f1, "accuracy": accuracy, "score": f1}


# ---------------------------------------------------------------------------- loop
def _save_atomic(obj, path: Path) -> None:
    tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def _saved_config(values: dict) -> TrainConfig | None:
    """A checkpoint's settings; a setting added since it was written takes its default (the
    value the run was trained with). None when it names a setting that no longer exists."""
    try:
        return TrainConfig.from_dict(values)
    except (TypeError, ValueError):
        return None


def train_model(config: TrainConfig, train_cases: list[CachedCase], val_cases: list[CachedCase],
                work: Path, *, fresh: bool = False, log: Callable[[str], None] = print,
                time_budget_s: float | None = None) -> dict:
    """Train (or resume) and return the summary: config, best validation metrics, history."""
    torch.manual_seed(config.seed)
    folder = work / config.model
    folder.mkdir(parents=True, exist_ok=True)
    checkpoint_path = folder / "checkpoint.pt"
    net = build_network(config)
    optimiser = torch.optim.AdamW(net.parameters(), lr=config.lr,
                                  weight_decay=config.weight_decay)
    warmup = min(100, max(1, config.steps // 10))

    def schedule(step: int) -> float:  # linear warm-up, then cosine to 2 % of the rate
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, config.steps - warmup)
        return 0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimiser, schedule)
    state = {"step": 0, "history": [], "best": None, "best_metrics": None}
    if checkpoint_path.exists() and not fresh:
        saved = torch.load(checkpoint_path, weights_only=False)
        if _saved_config(saved["config"]) != config:
            raise SystemExit(f"{checkpoint_path}: a checkpoint from different settings exists; "
                             "pass --fresh to start over")
        net.load_state_dict(saved["model"])
        optimiser.load_state_dict(saved["optimiser"])
        scheduler.load_state_dict(saved["scheduler"])
        state = saved["state"]
        log(f"{config.model}: resumed at step {state['step']}")

    if config.model == "liver-stage-cnnlstm":
        sampler = SequenceSampler(train_cases, liver_mask=config.liver_mask)
        def next_batch(rng):
            return _staging_batch(sampler, config, rng)
        def loss_fn(logits, target):
            return F.cross_entropy(logits, target, label_smoothing=0.05)
    elif config.model == "slice-triage":
        sampler = SliceSampler(train_cases, config.channels)
        def next_batch(rng):
            return _triage_batch(sampler, config, rng)
        def loss_fn(logits, target):
            return F.cross_entropy(logits, target)
    else:
        sampler = segmentation_sampler(train_cases, config)
        liver_only = config.model == "liver-seg-deeplab"
        def next_batch(rng):
            return _segmentation_batch(sampler, config, rng, liver_only)
        def loss_fn(logits, target):
            return _segmentation_loss(logits, target, config)

    validation = val_cases[:config.val_cases] if config.val_cases else val_cases
    started = time.perf_counter()
    earlier_seconds = float(state.get("seconds", 0.0))  # training time before a resume
    running = []

    def checkpoint() -> None:
        state["seconds"] = earlier_seconds + time.perf_counter() - started
        _save_atomic({"config": asdict(config), "model": net.state_dict(),
                      "optimiser": optimiser.state_dict(), "scheduler": scheduler.state_dict(),
                      "state": state}, checkpoint_path)

    def validate() -> None:
        metrics = _validate(config, net, validation)
        state["history"].append({"step": state["step"], **metrics})
        log(f"{config.model}: step {state['step']} validation "
            + ", ".join(f"{k} {v:.4f}" for k, v in metrics.items()))
        if state["best"] is None or metrics["score"] >= state["best"]:
            state["best"], state["best_metrics"] = metrics["score"], metrics
            _save_atomic({"config": asdict(config), "model": net.state_dict(),
                          "metrics": metrics, "step": state["step"]}, folder / "best.pt")

    while state["step"] < config.steps:
        net.train()
        # batch and dropout depend only on (seed, step): a resumed run repeats an
        # uninterrupted one exactly
        rng = np.random.default_rng([config.seed, state["step"]])
        torch.manual_seed(config.seed * 1_000_003 + state["step"])
        x, y = next_batch(rng)
        loss = loss_fn(net(x), y)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        scheduler.step()
        state["step"] += 1
        running.append(loss.item())
        if state["step"] % 50 == 0:
            log(f"{config.model}: step {state['step']}/{config.steps} loss "
                f"{np.mean(running):.4f} ({time.perf_counter() - started:.0f} s)")
            running.clear()
        if state["step"] % config.validate_every == 0 or state["step"] == config.steps:
            validate()
        if state["step"] % config.checkpoint_every == 0 or state["step"] == config.steps:
            checkpoint()
        if time_budget_s is not None and time.perf_counter() - started > time_budget_s:
            log(f"{config.model}: time budget reached at step {state['step']}")
            validate()
            checkpoint()
            break
    return {"config": asdict(config), "best_metrics": state["best_metrics"],
            "history": state["history"], "steps_done": state["step"],
            "seconds": earlier_seconds + time.perf_counter() - started}


def load_best(work: Path, model: str) -> tuple[nn.Module, TrainConfig]:
    saved = torch.load(work / model / "best.pt", weights_only=False)
    config = TrainConfig.from_dict(saved["config"])
    net = build_network(config)
    net.load_state_dict(saved["model"])
    return net.eval(), config


def seed_runs(work: Path, seed: int) -> Path:
    """Where the extra-seed run of an averaged model is trained (its ``work`` folder)."""
    return work / f"seed-{seed}"


def load_shipped(work: Path, model: str) -> tuple[nn.Module, TrainConfig]:
    """The network that is exported: the best run, or for a model in :data:`AVERAGED_SEEDS`
    the :class:`~training.networks.LogitAverage` of its runs (the config is the first run's)."""
    net, config = load_best(work, model)
    extra = AVERAGED_SEEDS.get(model, ())
    if not extra:
        return net, config
    members = [net]
    for seed in extra:
        member, member_config = load_best(seed_runs(work, seed), model)
        if replace(member_config, seed=config.seed) != config:
            raise SystemExit(f"{seed_runs(work, seed) / model}: trained with other settings "
                             "than the run it is averaged with")
        members.append(member)
    return LogitAverage(members).eval(), config


# ---------------------------------------------------------------------------- command line
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.train", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", choices=MODEL_IDS)
    parser.add_argument("--cache", type=Path, default=Path("build/train/cache"),
                        help="folder with train/ and val/ cached cases (training.data)")
    parser.add_argument("--work", type=Path, default=Path("build/train/runs"))
    parser.add_argument("--config", type=Path, help="JSON of TrainConfig settings")
    parser.add_argument("--steps", type=int)
    parser.add_argument("--fresh", action="store_true", help="ignore an existing checkpoint")
    args = parser.parse_args(argv)
    settings = {"model": args.model}
    if args.config:
        settings.update(json.loads(args.config.read_text()))
    if args.steps:
        settings["steps"] = args.steps
    config = TrainConfig.from_dict(settings)
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    train = load_cache(sorted((args.cache / "train").glob("*.npz")))
    val = load_cache(sorted((args.cache / "val").glob("*.npz")))
    if not train or not val:
        print(f"{args.cache}: no cached cases; run python -m training.data first",
              file=sys.stderr)
        return 2
    summary = train_model(config, train, val, args.work, fresh=args.fresh)
    (args.work / config.model / "summary.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary["best_metrics"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
