"""Batches drawn from cached cases: 2.5D slice crops (segmentation, triage) and liver slice
sequences (staging). Every draw takes an explicit ``numpy`` generator, so a step's batch depends
only on (seed, step) and a resumed run sees the batches it would have seen."""

from __future__ import annotations

import numpy as np

from radview.inference.staging import liver_slice_picks
from training.data import SEQUENCE_LENGTH, STAGES, CachedCase

__all__ = ["TRIAGE_MIN_TUMOUR_PIXELS", "SliceSampler", "SequenceSampler", "triage_targets"]

#: A slice is "tumour" for triage when its truth tumour cross-section on the 2 mm model grid is
#: at least this many pixels (20 mm^2, a 5 mm disc): smaller edge caps are ignored.
TRIAGE_MIN_TUMOUR_PIXELS = 5


def triage_targets(labels: np.ndarray) -> np.ndarray:
    """Per slice (axis 0): 1 when the tumour cross-section reaches the triage threshold."""
    area = (labels == 2).reshape(labels.shape[0], -1).sum(axis=1)
    return (area >= TRIAGE_MIN_TUMOUR_PIXELS).astype(np.int64)


def neighbours(volume: np.ndarray, k: int, channels: int) -> np.ndarray:
    half = channels // 2
    index = np.clip(np.arange(k - half, k + half + 1), 0, volume.shape[0] - 1)
    return volume[index]


class SliceSampler:
    """2.5D slices with their labels: a share from tumour slices, a share from liver slices,
    the rest from anywhere (so the model also learns what is not liver)."""

    def __init__(self, cases: list[CachedCase], channels: int,
                 shares: tuple[float, float] = (0.4, 0.4)) -> None:
        if not cases:
            raise ValueError("no training cases")
        self.cases = cases
        self.channels = channels
        self.shares = shares
        self.slices: dict[str, list[tuple[int, int]]] = {
            "tumour": [], "liver": [], "any": [], "end_stage_liver": []}
        end_stage = STAGES.index("End-stage")
        for c, case in enumerate(cases):
            per_slice = case.slice_labels.reshape(case.slice_labels.shape[0], -1)
            for k in range(per_slice.shape[0]):
                self.slices["any"].append((c, k))
                if (per_slice[k] == 2).any():
                    self.slices["tumour"].append((c, k))
                if (per_slice[k] > 0).any():
                    self.slices["liver"].append((c, k))
                    if case.stage == end_stage:
                        self.slices["end_stage_liver"].append((c, k))

    def draw(self, rng: np.random.Generator, count: int, balance_triage: bool = False,
             hard_negative_share: float = 0.0, end_stage_share: float = 0.0
             ) -> list[tuple[int, int]]:
        """``balance_triage``: half the draws from tumour slices, ``hard_negative_share`` from
        liver slices (mostly tumour-free liver: the negatives triage finds hard), the rest
        from anywhere. Otherwise ``end_stage_share`` of the draws come from liver slices of
        End-stage cases (the shrunken liver's edge against ascites), the rest by ``shares``."""
        picks = []
        for _ in range(count):
            # no extra draw at share 0: runs planned without it keep their batches
            if end_stage_share > 0 and not balance_triage and rng.random() < end_stage_share:
                pool = "end_stage_liver"
            elif balance_triage:
                u = rng.random()
                pool = ("tumour" if u < 0.5 else
                        "liver" if u < 0.5 + hard_negative_share else "any")
            else:
                u = rng.random()
                pool = ("tumour" if u < self.shares[0] else
                        "liver" if u < self.shares[0] + self.shares[1] else "any")
            if not self.slices[pool]:
                pool = "any"
            picks.append(self.slices[pool][int(rng.integers(len(self.slices[pool])))])
        return picks

    def batch(self, rng: np.random.Generator, count: int, crop: int | None = None,
              balance_triage: bool = False, hard_negative_share: float = 0.0,
              end_stage_share: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
        """(HU (B, C, h, w) float32, labels (B, h, w) uint8); ``crop`` cuts a random square
        that holds the liver's centre when the slice has liver."""
        images, labels = [], []
        for c, k in self.draw(rng, count, balance_triage, hard_negative_share,
                               end_stage_share):
            case = self.cases[c]
            image = neighbours(case.slice_hu, k, self.channels)
            label = case.slice_labels[k]
            if crop is not None and crop < label.shape[0]:
                y0, x0 = self._crop_origin(rng, label, crop)
                image = image[:, y0:y0 + crop, x0:x0 + crop]
                label = label[y0:y0 + crop, x0:x0 + crop]
            images.append(image)
            labels.append(label)
        return np.stack(images).astype(np.float32), np.stack(labels)

    @staticmethod
    def _crop_origin(rng: np.random.Generator, label: np.ndarray, crop: int) -> tuple[int, int]:
        size = label.shape[0]
        ys, xs = np.nonzero(label)
        if ys.size and rng.random() < 0.8:
            cy = int(ys.mean()) + int(rng.integers(-crop // 3, crop // 3 + 1))
            cx = int(xs.mean()) + int(rng.integers(-crop // 3, crop // 3 + 1))
        else:
            cy, cx = (int(v) for v in rng.integers(crop // 2, size - crop // 2 + 1, 2))
        y0 = int(np.clip(cy - crop // 2, 0, size - crop))
        x0 = int(np.clip(cx - crop // 2, 0, size - crop))
        return y0, x0


class SequenceSampler:
    """Liver slice sequences (B, T, C, H, W) and stage labels, balanced over stages: channel 0
    HU, and with ``liver_mask`` channel 1 the liver mask (0/1)."""

    def __init__(self, cases: list[CachedCase], length: int = SEQUENCE_LENGTH,
                 liver_mask: bool = False) -> None:
        self.cases = [c for c in cases if c.stage >= 0 and (c.stage_labels > 0).any()]
        if not self.cases:
            raise ValueError("no staged cases with liver")
        self.length = length
        self.liver_mask = liver_mask
        self.by_stage: dict[int, list[int]] = {}
        for index, case in enumerate(self.cases):
            self.by_stage.setdefault(case.stage, []).append(index)

    def sequence(self, case: CachedCase, rng: np.random.Generator | None) -> np.ndarray:
        liver = case.stage_labels > 0
        picks = liver_slice_picks(liver, self.length, jitter=rng)
        channels = [case.stage_hu[picks].astype(np.float32)]
        if self.liver_mask:
            channels.append(liver[picks].astype(np.float32))
        return np.stack(channels, axis=1)

    def batch(self, rng: np.random.Generator, count: int) -> tuple[np.ndarray, np.ndarray]:
        stages = sorted(self.by_stage)
        chosen = [self.by_stage[stages[int(rng.integers(len(stages)))]] for _ in range(count)]
        cases = [self.cases[pool[int(rng.integers(len(pool)))]] for pool in chosen]
        return (np.stack([self.sequence(case, rng) for case in cases]),
                np.array([case.stage for case in cases], np.int64))
