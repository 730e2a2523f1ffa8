"""Chronic liver disease staging with a CNN-LSTM: a sequence of liver slices -> stage probabilities.

Input (manifest layout ``NTCHW``): ``sequence_length`` axial slices spread evenly over the
liver's craniocaudal range (inferior first), each resampled to the manifest's in-plane spacing
and size with the segmentation pipeline's own preprocessing
(:func:`radview.inference.pipeline.to_model_grid`), normalised as the manifest says. The liver
range comes from the segmentation, so staging runs after it. Output: one logit (or probability)
per stage; the manifest's labels name the stages in order.

The result is decision support: the probabilities are shown, not just the top class.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from radview.core.labelmap import LiverLabel
from radview.core.volume import Volume
from radview.inference.manifest import ModelManifest, OutputKind
from radview.inference.pipeline import UnsupportedModelError, normalise_intensities, to_model_grid
from radview.inference.registry import RegisteredModel, check_modality
from radview.inference.runtime import SessionCache

__all__ = ["CLOSE_CALL_MARGIN", "StagingResult", "close_alternatives", "liver_slice_picks",
           "staging_input", "stage_liver", "softmax"]

#: A stage whose probability is within this of the reported one is named beside it ("Severe,
#: close to Moderate"): calling one of two stages at 43 % and 41 % "the" stage would claim a
#: separation the model did not make.
CLOSE_CALL_MARGIN = 0.10


@dataclass(frozen=True)
class StagingResult:
    stage: str
    probabilities: dict[str, float]  # stage name -> probability, in the manifest's order
    model_id: str
    model_version: str
    provider: str
    seconds: float
    fallback_reason: str | None = None
    warnings: tuple[str, ...] = field(default_factory=tuple)
    model_sha256: str = ""

    def to_json(self) -> dict:
        return {"stage": self.stage,
                "probabilities": {k: round(v, 4) for k, v in self.probabilities.items()},
                "model": f"{self.model_id} {self.model_version}"}


def close_alternatives(probabilities: Mapping[str, float], reported: str | None = None,
                       margin: float = CLOSE_CALL_MARGIN) -> tuple[str, ...]:
    """The stages other than ``reported`` (default: the most probable) whose probability is
    within ``margin`` of the reported one's, most probable first."""
    if not probabilities:
        return ()
    if reported is None or reported not in probabilities:
        reported = max(probabilities, key=lambda name: probabilities[name])
    others = [name for name, p in probabilities.items()
              if name != reported and abs(p - probabilities[reported]) <= margin]
    return tuple(sorted(others, key=lambda name: -probabilities[name]))


def softmax(logits: np.ndarray, axis: int = -1) -> np.ndarray:
    shifted = logits - logits.max(axis=axis, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=axis, keepdims=True)


def liver_slice_picks(liver_mask: np.ndarray, length: int,
                      jitter: np.random.Generator | None = None) -> np.ndarray | None:
    """Indices (axis 0) of ``length`` slices spread evenly over the slices holding liver,
    inferior first (the model grid runs inferior to superior); None without liver.

    ``jitter`` (training augmentation) moves each pick randomly within its interval.
    """
    rows = np.flatnonzero(liver_mask.reshape(liver_mask.shape[0], -1).any(axis=1))
    if rows.size == 0:
        return None
    first, last = int(rows[0]), int(rows[-1])
    positions = np.linspace(first, last, length)
    if jitter is not None and last > first:
        step = (last - first) / max(1, length - 1)
        positions = positions + jitter.uniform(-0.5, 0.5, length) * step
    return np.clip(np.rint(positions), first, last).astype(np.int64)


def staging_input(volume: Volume, labels: np.ndarray, manifest: ModelManifest,
                  warnings: list[str] | None = None) -> np.ndarray | None:
    """The model input (1, T, C, H, W) float32 in NTCHW order, or None when there is no liver.

    Channel 0 holds the slices; with ``input.liver_mask_channel`` channel 1 holds the liver
    mask (liver and tumour) on the same grid.
    """
    spec = manifest.input
    channels = 2 if spec.liver_mask_channel else 1
    if set(spec.layout) != set("NTCHW") or spec.sequence_length is None or (
            spec.channels != channels):
        raise UnsupportedModelError(
            f"model {manifest.id}: staging needs an N, T, C, H, W input with a fixed "
            f"sequence_length and C = 1 (the image), or C = 2 with liver_mask_channel (got "
            f"layout {spec.layout}, {spec.channels} channels)")
    liver = (labels == LiverLabel.LIVER) | (labels == LiverLabel.TUMOUR)
    grid = to_model_grid(volume, spec.spacing_mm, tuple(spec.size), labels=liver.astype(np.uint8),
                         window_low=manifest.normalization.window_low, warnings=warnings,
                         antialias=spec.antialias)
    picks = liver_slice_picks(grid.labels, spec.sequence_length)
    if picks is None:
        return None
    planes = [normalise_intensities(grid.hu[picks], manifest)]
    if spec.liver_mask_channel:
        planes.append(grid.labels[picks].astype(np.float32))
    sequence = np.stack(planes, axis=1)[None]  # N T C H W
    order = ["NTCHW".index(axis) for axis in spec.layout]
    return np.ascontiguousarray(sequence.transpose(order))


def stage_liver(volume: Volume, labels: Volume, model: RegisteredModel, sessions: SessionCache,
                *, device: str = "auto", force: bool = False) -> StagingResult | None:
    """Stage the liver in ``volume`` given its segmentation ``labels``; None without liver."""
    started = time.perf_counter()
    manifest = model.manifest
    warnings: list[str] = []
    mismatch = check_modality(model, volume.modality, force)
    if mismatch:
        warnings.append(mismatch)
    feed = staging_input(volume, labels.voxels, manifest, warnings)
    if feed is None:
        return None
    session = sessions.open(model.onnx_path, device)
    result = session.run({manifest.input.name: feed.astype(
        np.float16 if manifest.input.dtype == "float16" else np.float32)},
        [manifest.output.name])
    scores = np.asarray(result.outputs[manifest.output.name], np.float64).reshape(-1)
    names = [manifest.labels[key] for key in sorted(manifest.labels)]
    if scores.size != len(names):
        raise UnsupportedModelError(f"model {manifest.id}: {scores.size} outputs but "
                                    f"{len(names)} labels")
    probabilities = scores if manifest.output.kind is OutputKind.PROBABILITIES else softmax(scores)
    ranked = {name: float(p) for name, p in zip(names, probabilities, strict=True)}
    return StagingResult(max(ranked, key=ranked.__getitem__), ranked, manifest.id,
                         manifest.version, result.provider, time.perf_counter() - started,
                         result.fallback_reason, tuple(warnings), manifest.sha256)
