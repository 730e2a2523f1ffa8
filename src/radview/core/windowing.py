"""Window/level: presets, the automatic window, and mapping voxel values to display bytes."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

import numpy as np

from radview.core.volume import Volume

__all__ = ["WindowLevel", "WindowPreset", "auto_window", "window_for", "window_to_uint8"]


@dataclass(frozen=True)
class WindowLevel:
    """A display window: values ``level - width/2 .. level + width/2`` map to black..white."""

    width: float
    level: float

    def __post_init__(self) -> None:
        if not np.isfinite(self.width) or not np.isfinite(self.level):
            raise ValueError("window width and level must be finite")
        object.__setattr__(self, "width", max(float(self.width), 1e-3))
        object.__setattr__(self, "level", float(self.level))

    @property
    def low(self) -> float:
        return self.level - self.width / 2

    @property
    def high(self) -> float:
        return self.level + self.width / 2

    def dragged(self, d_width: float, d_level: float) -> WindowLevel:
        return WindowLevel(self.width + d_width, self.level + d_level)

    def label(self) -> str:
        return f"W {self.width:.0f} L {self.level:.0f}"


class WindowPreset(Enum):
    """The CT presets radiologists expect (HU), plus an automatic window for other data.

    Each value is ``(menu label, number key, width, level)``; AUTO has no fixed numbers.
    """

    SOFT_TISSUE = ("Soft tissue", 1, 400.0, 40.0)
    LIVER = ("Liver", 2, 150.0, 30.0)
    LUNG = ("Lung", 3, 1500.0, -600.0)
    BONE = ("Bone", 4, 1800.0, 400.0)
    BRAIN = ("Brain", 5, 80.0, 40.0)
    MEDIASTINUM = ("Mediastinum", 6, 350.0, 50.0)
    AUTO = ("Automatic", 0, float("nan"), float("nan"))

    @property
    def label(self) -> str:
        return self.value[0]

    @property
    def key(self) -> int:
        return self.value[1]

    def window(self, volume: Volume | None = None) -> WindowLevel:
        if self is WindowPreset.AUTO:
            if volume is None:
                raise ValueError("the automatic window needs a volume")
            return auto_window(volume)
        return WindowLevel(self.value[2], self.value[3])


def auto_window(volume: Volume, low_percentile: float = 1.0,
                high_percentile: float = 99.0) -> WindowLevel:
    """Window spanning the 1st..99th percentile of the voxels (sampled: fast on any size).

    MR and other modalities have no absolute scale, so fixed presets make no sense there.
    """
    voxels = volume.voxels
    step = max(1, int(round((voxels.size / 2_000_000) ** (1 / 3))))
    sample = voxels[::step, ::step, ::step]
    if sample.dtype.kind == "f":
        sample = sample[np.isfinite(sample)]  # NaN/inf in float maps must not poison the window
    if sample.size == 0:
        return WindowLevel(1.0, 0.0)
    low, high = np.percentile(sample, [low_percentile, high_percentile])
    if high <= low:
        high = low + 1.0
    return WindowLevel(float(high - low), float((high + low) / 2))


def window_for(volume: Volume) -> WindowLevel:
    """The window a study opens with: soft tissue for CT in HU, automatic otherwise."""
    if volume.modality == "CT" and volume.rescale.unit == "HU":
        return WindowPreset.SOFT_TISSUE.window()
    return auto_window(volume)


def window_to_uint8(image: np.ndarray, window: WindowLevel, *,
                    invert: bool = False) -> np.ndarray:
    """Display bytes of ``image`` under ``window`` (0 = black), optionally inverted."""
    scale = 255.0 / window.width
    result = np.empty(image.shape, np.float32)
    np.subtract(image, np.float32(window.low), out=result, dtype=np.float32)
    result *= np.float32(scale)
    if image.dtype.kind == "f":  # NaN/inf in float maps: black / white, not a cast error
        np.nan_to_num(result, copy=False, nan=0.0, posinf=255.0, neginf=0.0)
    np.clip(result, 0, 255, out=result)
    if invert:
        np.subtract(255, result, out=result)
    return result.astype(np.uint8)
