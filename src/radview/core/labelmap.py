"""Label maps: a uint8 Volume on an image's grid plus the name and colour of every label."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum

import numpy as np

from radview.core.volume import Volume

__all__ = ["LiverLabel", "LabelMap", "DEFAULT_COLOURS"]


class LiverLabel(IntEnum):
    """Label ids of the liver models and of the sample study's truth (0 = background)."""

    BACKGROUND = 0
    LIVER = 1
    TUMOUR = 2


#: Distinguishable on a grey CT and for the common colour-vision deficiencies (Okabe-Ito).
DEFAULT_COLOURS: dict[int, tuple[int, int, int]] = {
    1: (0, 158, 115),  # bluish green
    2: (213, 94, 0),  # vermillion
    3: (86, 180, 233),  # sky blue
    4: (230, 159, 0),  # orange
    5: (204, 121, 167),  # reddish purple
    6: (240, 228, 66),  # yellow
    7: (0, 114, 178),  # blue
}


@dataclass(frozen=True, eq=False)
class LabelMap:
    """``volume`` holds label ids (uint8); ``names``/``colours`` describe the non-zero ones."""

    volume: Volume
    names: dict[int, str] = field(default_factory=dict)
    colours: dict[int, tuple[int, int, int]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.volume.voxels.dtype != np.uint8:
            raise TypeError(f"label maps are uint8, got {self.volume.voxels.dtype}")
        present = [int(v) for v in np.unique(self.volume.voxels) if v != 0]
        names = {v: self.names.get(v, f"Label {v}") for v in sorted(set(present) | set(self.names))}
        colours = {v: self.colours.get(v, DEFAULT_COLOURS.get(v, _colour_for(v))) for v in names}
        object.__setattr__(self, "names", names)
        object.__setattr__(self, "colours", colours)

    @classmethod
    def liver(cls, volume: Volume) -> LabelMap:
        return cls(volume, {LiverLabel.LIVER: "Liver", LiverLabel.TUMOUR: "Tumour"})

    def lookup_table(self) -> np.ndarray:
        """256 x 4 RGBA table (alpha 255 for labels, 0 for background and unused ids)."""
        table = np.zeros((256, 4), np.uint8)
        for value, colour in self.colours.items():
            table[value, :3] = colour
            table[value, 3] = 255
        return table

    def matches(self, image: Volume) -> bool:
        """True when the label map lies on ``image``'s voxel grid (same shape and geometry)."""
        return (
            self.volume.shape == image.shape
            and np.allclose(self.volume.spacing, image.spacing, atol=1e-3)
            and np.allclose(self.volume.origin, image.origin, atol=1e-2)
            and np.allclose(self.volume.direction, image.direction, atol=1e-4)
        )


def _colour_for(value: int) -> tuple[int, int, int]:
    rng = np.random.default_rng(value)
    r, g, b = rng.integers(60, 255, size=3)
    return int(r), int(g), int(b)
