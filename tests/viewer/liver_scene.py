"""A small synthetic CT with a liver and spherical lesions of known size, for the GUI tests of
things drawn from lesion measurements (RECIST axes, BCLC from findings, main-window wiring)."""

from __future__ import annotations

import numpy as np

from radview.core.labelmap import LabelMap, LiverLabel
from radview.core.volume import Rescale, Volume

#: (slices, rows, columns) and spacing (x, y, z) mm of the scene.
SHAPE = (24, 96, 96)
SPACING = (1.0, 1.0, 2.0)


Lesion = tuple[tuple[int, int, int], float | tuple[float, float, float]]


def liver_scene(lesions: tuple[Lesion, ...] = (((12, 40, 40), 8.0),),
                direction: np.ndarray | None = None, shape: tuple[int, int, int] = SHAPE,
                spacing: tuple[float, float, float] = SPACING) -> tuple[Volume, LabelMap]:
    """An image and its liver/tumour label map.

    ``lesions`` are (centre (k, j, i), radius mm or radii (x, y, z) mm) ellipsoids of tumour
    inside a liver box that fills the middle of the volume.
    """
    k, j, i = np.indices(shape)
    labels = np.zeros(shape, np.uint8)
    labels[2:-2, 10:-10, 10:-10] = LiverLabel.LIVER
    sx, sy, sz = spacing
    for (ck, cj, ci), radius in lesions:
        rx, ry, rz = (radius,) * 3 if isinstance(radius, float | int) else radius
        inside = (((i - ci) * sx / rx) ** 2 + ((j - cj) * sy / ry) ** 2
                  + ((k - ck) * sz / rz) ** 2) <= 1.0
        labels[inside] = LiverLabel.TUMOUR
    voxels = np.where(labels == LiverLabel.TUMOUR, 20,
                      np.where(labels == LiverLabel.LIVER, 60, -100)).astype(np.int16)
    image = Volume(voxels, spacing=spacing, direction=np.eye(3) if direction is None else direction,
                   modality="CT", rescale=Rescale(unit="HU"))
    return image, LabelMap.liver(image.with_voxels(labels))
