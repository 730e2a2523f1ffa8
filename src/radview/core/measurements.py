"""What an annotation measures, as data: ``Measurement(name, value, unit, method)``.

Measurements stay numbers with a unit and a description of how they were computed until the
very last step (DESIGN rule 8, after Slicer's SegmentStatistics ``createMeasurementInfo``):
the panel, the label next to a shape and the report each format them with
:func:`format_measurement` / :func:`measurement_lines` / :func:`summary_label`, and a DICOM SR
writer can take the values and units as they are.

Conventions
-----------
* Lengths and angles are computed from the annotation's LPS points, so they are right in any
  plane of an anisotropic volume (a vertical ruler in a coronal view of 2.5 mm slices measures
  2.5 mm per screen pixel) and on oblique series.
* Region statistics (ellipse, rectangle) are over the pixels of the annotation's plane slice
  whose *centre* lies inside the shape (boundary included, with a 1e-6 pixel tolerance so that
  round-off in the world <-> pixel conversion cannot drop a row of pixels). Parts of a shape
  outside the image contribute no pixels.
* The standard deviation is the population SD (``ddof=0``), as most workstations report it.
* Values are in the volume's modality unit (``volume.rescale.unit``: HU for CT). If the loader
  did not apply the rescale (``rescale.applied`` False) the statistics are mapped through it
  here, so the numbers are always modality values.
* A shape that cannot be measured yields fewer measurements, never NaN: an angle with a
  zero-length arm has no angle, a region without pixels has no mean/SD/min/max. On a volume
  without known geometry (a 2D stack) nothing measured across slices is reported: in a plane
  other than the acquired one only intensity statistics are given.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

import numpy as np

from radview.core.annotations import Annotation, AnnotationKind
from radview.core.volume import Volume

__all__ = [
    "MeasurementName",
    "Measurement",
    "measure",
    "region_mask",
    "format_measurement",
    "measurement_lines",
    "summary_label",
]

#: Slack, in pixels, when testing whether a pixel centre lies inside a shape.
_INSIDE_TOLERANCE_PX = 1e-6
#: Below this a ruler/angle arm counts as zero length (mm).
_DEGENERATE_MM = 1e-9

_UNIT_MM = "mm"
_UNIT_MM2 = "mm²"
_UNIT_DEGREE = "°"
_UNIT_PIXELS = "px"


class MeasurementName(StrEnum):
    """The names measurements carry; a ``StrEnum``, so each is also a plain ``str``."""

    LENGTH = "Length"
    ANGLE = "Angle"
    MEAN = "Mean"
    SD = "SD"
    MIN = "Min"
    MAX = "Max"
    PIXEL_COUNT = "Pixel count"
    AREA = "Area"
    ELLIPSE_AREA = "Ellipse area"


@dataclass(frozen=True)
class Measurement:
    """One measured quantity.

    Parameters
    ----------
    name
        What was measured (a :class:`MeasurementName`).
    value
        The number, in ``unit``; never pre-rounded.
    unit
        ``"mm"``, ``"mm²"``, ``"°"``, ``"px"`` or the volume's unit (``"HU"``; ``""`` when the
        volume's unit is unknown).
    method
        How the value was computed, in words, for the report and for a reviewer.
    """

    name: str
    value: float
    unit: str
    method: str


# ---------------------------------------------------------------------------- measuring
def measure(annotation: Annotation, volume: Volume) -> tuple[Measurement, ...]:
    """Everything ``annotation`` measures on ``volume``.

    Parameters
    ----------
    annotation
        A ruler, angle, ellipse or rectangle drawn on ``volume``.
    volume
        The volume the annotation was drawn on (its geometry converts the LPS points to
        pixels; its voxels give the region statistics).

    Returns
    -------
    tuple of Measurement
        Ruler: length. Angle: angle at the vertex (``points[1]``). Ellipse / rectangle: mean,
        SD, min, max, pixel count, area (pixel count x pixel area) and, for the ellipse, its
        analytic area. Fewer when something is undefined (see the module docstring).

    Raises
    ------
    IndexError
        A region annotation's slice does not exist in ``volume`` (annotation of another
        volume).
    """
    # A 2D stack (geometry unknown) has trustworthy pixel spacing but no slice spacing, so
    # millimetres are valid only in the acquired plane (the one cut across array axis 0).
    in_plane_mm_valid = volume.geometry_known or (
        volume.plane_geometry(annotation.plane).normal_axis == 0
    )
    kind = annotation.kind
    if kind is AnnotationKind.RULER:
        return (_length(annotation),) if in_plane_mm_valid else ()
    if kind is AnnotationKind.ANGLE:
        if not in_plane_mm_valid:
            return ()
        angle = _angle(annotation)
        return () if angle is None else (angle,)
    return _region(annotation, volume, with_mm=in_plane_mm_valid)


def _length(annotation: Annotation) -> Measurement:
    a, b = (np.asarray(p, dtype=np.float64) for p in annotation.points)
    return Measurement(
        MeasurementName.LENGTH,
        float(np.linalg.norm(b - a)),
        _UNIT_MM,
        "Euclidean distance between the two end points in patient coordinates (LPS mm)",
    )


def _angle(annotation: Annotation) -> Measurement | None:
    end_a, vertex, end_b = (np.asarray(p, dtype=np.float64) for p in annotation.points)
    arm_a, arm_b = end_a - vertex, end_b - vertex
    if min(np.linalg.norm(arm_a), np.linalg.norm(arm_b)) < _DEGENERATE_MM:
        return None
    # atan2(|a x b|, a . b) stays accurate near 0 and 180 degrees, where acos(dot) does not.
    angle = math.degrees(
        math.atan2(float(np.linalg.norm(np.cross(arm_a, arm_b))), float(arm_a @ arm_b))
    )
    return Measurement(
        MeasurementName.ANGLE,
        angle,
        _UNIT_DEGREE,
        "angle at the vertex (second point) between the two arms, in patient coordinates",
    )


def region_mask(
    annotation: Annotation, volume: Volume
) -> tuple[np.ndarray, tuple[int, int]]:
    """The pixels of an ellipse / rectangle on its plane slice.

    Returns
    -------
    mask, (row0, col0)
        A boolean mask of the shape's bounding box clipped to the image, and the slice pixel
        of its top-left element (so ``image[row0:row0 + h, col0:col0 + w][mask]`` are the
        pixels inside). The mask may be empty (shape of zero rows or columns).

    Raises
    ------
    ValueError
        ``annotation`` is a ruler or an angle.
    IndexError
        Its slice does not exist in ``volume``.
    """
    if annotation.kind not in (AnnotationKind.ELLIPSE, AnnotationKind.RECTANGLE):
        raise ValueError(f"a {annotation.kind.value} has no region")
    n_rows, n_cols = volume.plane_slice(annotation.plane, annotation.slice_index).shape
    top, bottom, left, right = _pixel_box(annotation, volume)
    tol = _INSIDE_TOLERANCE_PX
    row0 = max(0, math.ceil(top - tol))
    row1 = min(n_rows - 1, math.floor(bottom + tol))
    col0 = max(0, math.ceil(left - tol))
    col1 = min(n_cols - 1, math.floor(right + tol))
    if row1 < row0 or col1 < col0:
        return np.zeros((0, 0), dtype=bool), (row0, col0)
    rows = np.arange(row0, row1 + 1, dtype=np.float64)[:, None]
    cols = np.arange(col0, col1 + 1, dtype=np.float64)[None, :]
    semi_rows, semi_cols = (bottom - top) / 2, (right - left) / 2
    if min(semi_rows, semi_cols) <= tol:
        # a flat shape is a line: it has no area, so no pixel centre counts as inside it
        return np.zeros((rows.size, cols.size), dtype=bool), (row0, col0)
    if annotation.kind is AnnotationKind.RECTANGLE:
        # every centre in the clipped bounding box is inside the rectangle
        return np.ones((rows.size, cols.size), dtype=bool), (row0, col0)
    centre_row, centre_col = (top + bottom) / 2, (left + right) / 2
    # tolerance scaled to the normalised radius: ~tol pixels at the boundary
    limit = (1 + tol / min(semi_rows, semi_cols)) ** 2
    inside = ((rows - centre_row) / semi_rows) ** 2 + ((cols - centre_col) / semi_cols) ** 2
    return inside <= limit, (row0, col0)


def _pixel_box(annotation: Annotation, volume: Volume) -> tuple[float, float, float, float]:
    """``(top, bottom, left, right)``: the two corner points as continuous slice pixels.

    Only the in-plane coordinates are used; the slice is ``annotation.slice_index``.
    """
    (_, r_a, c_a), (_, r_b, c_b) = (
        volume.plane_pixel_of_world(annotation.plane, point) for point in annotation.points
    )
    return min(r_a, r_b), max(r_a, r_b), min(c_a, c_b), max(c_a, c_b)


def _region(annotation: Annotation, volume: Volume, *, with_mm: bool) -> tuple[Measurement, ...]:
    image = volume.plane_slice(annotation.plane, annotation.slice_index)
    mask, (row0, col0) = region_mask(annotation, volume)
    height, width = mask.shape
    values = image[row0 : row0 + height, col0 : col0 + width][mask].astype(np.float64)
    rescale = volume.rescale
    if not rescale.applied:
        values = values * rescale.slope + rescale.intercept
    unit = rescale.unit
    shape = annotation.kind.value
    inside = f"pixels of the {annotation.plane.value} slice whose centre lies inside the {shape}"
    result: list[Measurement] = []
    if values.size:
        result += [
            Measurement(MeasurementName.MEAN, float(values.mean()), unit, f"mean of the {inside}"),
            Measurement(
                MeasurementName.SD,
                float(values.std(ddof=0)),
                unit,
                f"population standard deviation (ddof=0) of the {inside}",
            ),
            Measurement(MeasurementName.MIN, float(values.min()), unit, f"minimum of the {inside}"),
            Measurement(MeasurementName.MAX, float(values.max()), unit, f"maximum of the {inside}"),
        ]
    result.append(
        Measurement(
            MeasurementName.PIXEL_COUNT, float(values.size), _UNIT_PIXELS, f"number of {inside}"
        )
    )
    if not with_mm:
        return tuple(result)
    row_mm, col_mm = volume.plane_geometry(annotation.plane).pixel_spacing
    result.append(
        Measurement(
            MeasurementName.AREA,
            values.size * row_mm * col_mm,
            _UNIT_MM2,
            f"pixel count x pixel area ({row_mm:g} mm x {col_mm:g} mm); {inside}",
        )
    )
    if annotation.kind is AnnotationKind.ELLIPSE:
        top, bottom, left, right = _pixel_box(annotation, volume)
        semi_rows_mm = (bottom - top) / 2 * row_mm
        semi_cols_mm = (right - left) / 2 * col_mm
        result.append(
            Measurement(
                MeasurementName.ELLIPSE_AREA,
                math.pi * semi_rows_mm * semi_cols_mm,
                _UNIT_MM2,
                "analytic area pi*a*b of the drawn ellipse (semi-axes a, b in mm), "
                "including any part outside the image",
            )
        )
    return tuple(result)


# ---------------------------------------------------------------------------- formatting
def format_measurement(m: Measurement, spread: Measurement | None = None) -> str:
    """``m`` as display text: ``'23.4 mm'``, ``'112.0°'``, ``'315 mm²'``, ``'41.2 HU'``.

    Parameters
    ----------
    m
        The measurement.
    spread
        An SD to append after the mean: ``'41.2 HU ± 8.1'``.

    Returns
    -------
    str
        Plain text (no markup); NaN/inf show as ``'n/a'``.
    """
    text = _with_unit(_number(m.value, m.unit), m.unit)
    if spread is not None:
        text += f" ± {_number(spread.value, spread.unit)}"
    return text


def measurement_lines(measurements: Sequence[Measurement]) -> list[str]:
    """One ``'Name: value'`` line per measurement; the mean and SD share one line."""
    sd = _find(measurements, MeasurementName.SD)
    lines = []
    for m in measurements:
        if m.name == MeasurementName.SD and _find(measurements, MeasurementName.MEAN):
            continue
        if m.name == MeasurementName.MEAN and sd is not None:
            lines.append(f"Mean ± SD: {format_measurement(m, sd)}")
        else:
            lines.append(f"{m.name}: {format_measurement(m)}")
    return lines


def summary_label(annotation: Annotation, measurements: Sequence[Measurement]) -> str:
    """Short plain text drawn next to a shape (lines separated by ``'\\n'``).

    Ruler: ``'23.4 mm'``; angle: ``'112.0°'``; ellipse / rectangle: ``'41.2 HU ± 8.1'`` and
    ``'315 mm²'`` (the pixel area, matching the statistics). The annotation's own label, if
    any, comes first.
    """
    lines = [annotation.label] if annotation.label else []
    mean = _find(measurements, MeasurementName.MEAN)
    for name in (MeasurementName.LENGTH, MeasurementName.ANGLE):
        found = _find(measurements, name)
        if found is not None:
            lines.append(format_measurement(found))
    if mean is not None:
        lines.append(format_measurement(mean, _find(measurements, MeasurementName.SD)))
    area = _find(measurements, MeasurementName.AREA)
    if area is not None:
        lines.append(format_measurement(area))
    return "\n".join(lines)


def _find(measurements: Sequence[Measurement], name: MeasurementName) -> Measurement | None:
    return next((m for m in measurements if m.name == name), None)


def _number(value: float, unit: str) -> str:
    if not math.isfinite(value):
        return "n/a"
    if unit == _UNIT_PIXELS:
        text = f"{value:.0f}"
    elif unit == _UNIT_MM2 and abs(value) >= 100:
        text = f"{value:.0f}"  # a tenth of a mm² is noise at this size
    else:
        text = f"{value:.1f}"
    # -0.0 HU reads as a sign error to a radiologist
    return text[1:] if text.startswith("-") and float(text) == 0 else text


def _with_unit(number: str, unit: str) -> str:
    if not unit:
        return number
    if unit == _UNIT_DEGREE:
        return number + unit
    return f"{number} {unit}"
