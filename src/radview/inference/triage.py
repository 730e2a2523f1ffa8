"""Per-slice tumour triage: P(tumour on this slice) for every axial slice of a series.

Each slice goes through the segmentation pipeline's own preprocessing
(:func:`radview.inference.pipeline.to_model_grid`: body crop, in-plane resampling to the
manifest's spacing, centred pad/crop, normalisation); ``channels = 2k + 1`` neighbouring slices
when the manifest asks for them. The output is two logits (no tumour, tumour) or one logit per
slice; the result has one probability per source slice (voxels axis 0). Slices outside the
body crop get 0.

Triage only makes sense per acquired axial slice: a series whose slices are not axial gets a
:class:`TriageNotApplicable` with the reason.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from radview.core.errors import LoadCancelled, RadviewError
from radview.core.volume import Volume
from radview.inference.manifest import OutputKind
from radview.inference.pipeline import UnsupportedModelError, normalise_intensities, to_model_grid
from radview.inference.registry import RegisteredModel, check_modality
from radview.inference.runtime import SessionCache
from radview.inference.staging import softmax

__all__ = ["TriageResult", "TriageNotApplicable", "triage_slices"]

#: Slices whose normal is farther than this from the body axis are not "axial" here.
_MAX_AXIAL_TILT_DEG = 30.0


class TriageNotApplicable(RadviewError):
    """The series cannot be triaged slice by slice (e.g. it is not axial)."""


@dataclass(frozen=True)
class TriageResult:
    probabilities: np.ndarray  # float32, one per source slice (voxels axis 0)
    model_id: str
    model_version: str
    provider: str
    seconds: float
    fallback_reason: str | None = None
    warnings: tuple[str, ...] = field(default_factory=tuple)
    model_sha256: str = ""


def triage_slices(
    volume: Volume,
    model: RegisteredModel,
    sessions: SessionCache,
    *,
    device: str = "auto",
    batch_size: int = 32,
    progress: Callable[[int, int], None] | None = None,
    cancel: Callable[[], bool] | None = None,
    force: bool = False,
) -> TriageResult:
    started = time.perf_counter()
    manifest = model.manifest
    spec = manifest.input
    if set(spec.layout) != set("NCHW"):
        raise UnsupportedModelError(f"model {manifest.id}: triage needs an N, C, H, W input "
                                    f"(got {spec.layout})")
    normal = np.asarray(volume.direction, float)[:, 2]
    tilt = math.degrees(math.acos(min(1.0, abs(normal[2]) / np.linalg.norm(normal))))
    if tilt > _MAX_AXIAL_TILT_DEG:
        raise TriageNotApplicable(f"slice triage needs an axial series; these slices are "
                                  f"{tilt:.0f} degrees from axial")
    warnings: list[str] = []
    mismatch = check_modality(model, volume.modality, force)
    if mismatch:
        warnings.append(mismatch)
    grid = to_model_grid(volume, spec.spacing_mm[:2], tuple(spec.size),
                         window_low=manifest.normalization.window_low, warnings=warnings,
                         antialias=spec.antialias)
    image = grid.hu
    depth = image.shape[0]
    half = spec.channels // 2
    offsets = np.arange(spec.channels) - half
    order = ["NCHW".index(axis) for axis in spec.layout]
    dtype = np.float16 if spec.dtype == "float16" else np.float32
    if "N" not in spec.dynamic_axes:
        batch_size = 1
    session = sessions.open(model.onnx_path, device)
    model_probabilities = np.zeros(depth, np.float32)
    provider, fallback = session.provider, session.fallback_reason
    for start in range(0, depth, batch_size):
        if cancel is not None and cancel():
            raise LoadCancelled("triage cancelled")
        stop = min(depth, start + batch_size)
        index = np.clip(np.arange(start, stop)[:, None] + offsets[None, :], 0, depth - 1)
        batch = normalise_intensities(image[index], manifest).transpose(order)
        result = session.run({spec.name: np.ascontiguousarray(batch.astype(dtype))},
                             [manifest.output.name])
        provider, fallback = result.provider, result.fallback_reason
        scores = np.asarray(result.outputs[manifest.output.name], np.float64).reshape(
            stop - start, -1)
        model_probabilities[start:stop] = _tumour_probability(scores, manifest.output.kind,
                                                              manifest.id)
        if progress is not None:
            progress(stop, depth)
    # model slices -> source slices (the model grid keeps the source's slice positions
    # unless the series runs superior to inferior, when it is the reverse)
    probabilities = np.zeros(volume.shape[0], np.float32)
    probabilities[grid.source_slice] = model_probabilities
    return TriageResult(probabilities, manifest.id, manifest.version, provider,
                        time.perf_counter() - started, fallback, tuple(warnings),
                        manifest.sha256)


def _tumour_probability(scores: np.ndarray, kind: OutputKind, model_id: str) -> np.ndarray:
    if scores.shape[1] == 1:
        values = scores[:, 0]
        return values if kind is OutputKind.PROBABILITIES else 1.0 / (1.0 + np.exp(-values))
    if scores.shape[1] == 2:
        probabilities = scores if kind is OutputKind.PROBABILITIES else softmax(scores, axis=1)
        return probabilities[:, 1]
    raise UnsupportedModelError(f"model {model_id}: triage output has {scores.shape[1]} "
                                "values per slice, expected 1 or 2")
