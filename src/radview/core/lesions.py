"""Liver and lesion measurements from a liver/tumour label map (pure numpy/scipy).

:func:`measure_liver` turns a label map on an image's grid into :class:`LiverFindings`:
the liver volume, every lesion's size, position and attenuation, and the tumour burden. All
numbers are :class:`~radview.core.measurements.Measurement` objects (name, value, unit, method)
or plain floats/ints; points are LPS millimetres as tuples. Nothing is formatted here
(DESIGN rule 8); :func:`to_json` gives the plain-data form for reports and batch analysis.

Definitions
-----------
Lesion
    One 3D connected component of the tumour label, with 26-connectivity (voxels touching by a
    face, an edge or a corner belong together). Lesions are numbered 1..n by volume, largest
    first (ties: in raster order of their first voxel).
Contour points
    A voxel is a box of ``sx x sy x sz`` mm around its centre, and a slice is sampled at its
    centre plane. A slice's contour points are the centres of the lesion's exposed pixel edges
    on that slice (edges between a lesion pixel and a non-lesion pixel), at the slice's centre
    plane: the vertices marching squares places at level 0.5, so an in-plane extent along a
    grid axis is the pixel extent (first pixel's outer edge to last pixel's outer edge), which
    is what calipers laid on the displayed lesion measure. Along the slice axis the lesion's
    ends are taken at the centres of its first and last slices, not at the slab faces:
    how far a lesion reaches into the slab beyond its last slice is unknown, and flat caps half
    a slice out (the full marching-cubes surface) inflate oblique diameters by up to a slice
    thickness on thick-slice CT (measured: up to 1.5 voxel spacings on 0.7 x 0.8 x 2.5 mm).
Maximum 3D diameter
    The largest distance between two contour points of any slices. Computed exactly on the
    vertices of their convex hull (``scipy.spatial.ConvexHull``), never over all voxel pairs.
    It is never shorter than the long axis (its points include the long axis' ones).
RECIST 1.1 long axis
    On each slice of the lesion, the longest distance between two of the slice's exposed
    pixel-edge centres (the 2D surface points); the long axis is the longest of these over
    the slices. "Slice" means the acquisition plane, the plane of array axis 0: the axial plane
    for an axial series. Oblique or coronal acquisitions are measured in their own plane (no
    reformatting), and :attr:`LiverFindings.warnings` says so. Ties between slices go to the
    slice with the larger lesion area, then to the lower slice index.
Short axis
    On the long axis' slice: the longest chord of the lesion (its pixels taken as squares)
    perpendicular to the long axis, at any position along it. It is found by sampling
    perpendicular lines every ``h`` mm (``h`` = 1/8 of the smaller pixel spacing, coarser only
    for very large lesions), and the ends of the best chord are refined by bisection onto the
    pixel edges, so both end points lie on the lesion's boundary. For an ellipse this is its
    minor axis; for a crescent it is the widest part of the lesion itself, not its bounding
    box.
Intensity
    Mean and population SD (``ddof=0``) of the image over the lesion's voxels, in the image's
    modality unit (HU for CT; the rescale is applied here if the loader did not).
Liver volume and tumour burden
    A lesion is *in the liver* when it touches a liver voxel (26-neighbourhood); lesions of a
    liver/tumour model are drawn inside the liver, so a lesion that does not touch it is most
    likely a false positive elsewhere: it is still listed, flagged ``in_liver = False`` and
    named in the warnings, but counted neither in the liver volume nor in the burden.
    Liver volume = (liver-label voxels + voxels of the lesions in the liver) x voxel volume;
    total tumour volume = sum of the volumes of the lesions in the liver; tumour burden (%) =
    total tumour volume / liver volume x 100.
Lobe (approximate)
    The functional right/left split of the liver (Cantlie's line, gallbladder fossa to IVC)
    cannot be found without the vessels. As an approximation the liver is cut by a sagittal
    plane (constant LPS x) placed so that 60 % of the liver volume lies on the patient's right
    (the right liver, Couinaud segments V-VIII, holds about 60-65 % of the liver volume). A
    lesion whose centroid lies to the patient's right of the plane (LPS x smaller: +x is the
    patient's LEFT) is "right", otherwise "left". The plane's x is reported
    (:attr:`LiverFindings.lobe_split_x_mm`). Note that the liver's centroid lies inside the
    larger right lobe, so a cut at the centroid would call many right-lobe lesions "left".

Distances do not depend on the direction matrix (it is orthonormal), so they are computed in
grid millimetres (index x spacing) and only the end points and centroids are mapped to LPS.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, replace
from enum import StrEnum

import numpy as np
from scipy import ndimage
from scipy.spatial import ConvexHull, QhullError

from radview.core.errors import RadviewError
from radview.core.labelmap import LabelMap, LiverLabel
from radview.core.measurements import Measurement, MeasurementName
from radview.core.volume import Volume

__all__ = [
    "Lobe",
    "LesionMeasurementName",
    "LesionMeasurementError",
    "NoLiverError",
    "UnknownGeometryError",
    "Lesion",
    "LiverFindings",
    "RIGHT_LIVER_VOLUME_FRACTION",
    "measure_liver",
    "to_json",
]

Point = tuple[float, float, float]

#: Share of the liver volume placed on the patient's right of the approximate lobe plane.
RIGHT_LIVER_VOLUME_FRACTION = 0.6

_UNIT_ML = "mL"
_UNIT_MM = "mm"
_UNIT_PERCENT = "%"
_MM3_PER_ML = 1000.0
_FULL_CONNECTIVITY = np.ones((3, 3, 3), dtype=bool)  # 26-connectivity
#: Below this many points the farthest pair is found by brute force (no hull needed).
_BRUTE_FORCE_POINTS = 256
_PAIR_BLOCK = 1024  # rows per block of the pairwise distance search (bounds memory)
#: Short-axis sampling step as a fraction of the smaller pixel spacing ...
_CHORD_STEP_FRACTION = 1.0 / 8.0
#: ... but never more than this many samples along either side of the sampling grid.
_CHORD_MAX_SAMPLES = 1024
_BISECTION_STEPS = 40
_LOBE_BIN_MM = 0.25  # resolution of the liver's LPS-x histogram for the lobe plane
_NEGLIGIBLE_MM = 1e-9  # an x coefficient below this means x does not vary along that axis
# Grid agreement between labels and image, as radview.core.labelmap.LabelMap.matches.
_SPACING_ATOL, _ORIGIN_ATOL, _DIRECTION_ATOL = 1e-3, 1e-2, 1e-4

_METHOD_VOLUME = "voxel count x voxel volume ({voxel}) of one 26-connected component"
_METHOD_MAX_DIAMETER = (
    "largest distance between the lesion's contour points on any two slices (centres of "
    "exposed pixel edges, at the slice centre planes), searched among their 3D convex hull "
    "vertices; LPS mm"
)
_METHOD_LONG_AXIS = (
    "RECIST 1.1 long axis: longest in-plane distance between the lesion's contour points "
    "(centres of exposed pixel edges) on one slice of the acquisition plane (array axis 0; "
    "axial for an axial series), on the slice where it is longest"
)
_METHOD_SHORT_AXIS = (
    "longest chord of the lesion's pixels perpendicular to the long axis on the same slice, "
    "anywhere along it (lines sampled every {step:.3g} mm, ends refined to the pixel edges)"
)
_METHOD_MEAN = "mean of the image over the lesion's voxels"
_METHOD_SD = "population standard deviation (ddof=0) of the image over the lesion's voxels"
_METHOD_LIVER_VOLUME = (
    "(liver-label voxels + voxels of the lesions touching the liver) x voxel volume ({voxel})"
)
_METHOD_TOTAL_TUMOUR = "sum of the volumes of the lesions touching the liver"
_METHOD_BURDEN = "total tumour volume / liver volume x 100"


class Lobe(StrEnum):
    """Approximate liver lobe of a lesion (see the module docstring for the rule)."""

    RIGHT = "right"
    LEFT = "left"


class LesionMeasurementName(StrEnum):
    """Names of the measurements made here (intensity ones reuse ``MeasurementName``)."""

    VOLUME = "Volume"
    MAX_3D_DIAMETER = "Maximum 3D diameter"
    LONG_AXIS = "Long axis (RECIST 1.1)"
    SHORT_AXIS = "Short axis"
    LIVER_VOLUME = "Liver volume"
    TOTAL_TUMOUR_VOLUME = "Total tumour volume"
    TUMOUR_BURDEN = "Tumour burden"


class LesionMeasurementError(RadviewError):
    """The label map cannot be measured as asked."""


class NoLiverError(LesionMeasurementError):
    """The label map holds no liver voxels, so nothing liver-relative can be measured."""


class UnknownGeometryError(LesionMeasurementError):
    """The series has no known slice geometry (a 2D stack): volumes and 3D sizes are undefined."""


@dataclass(frozen=True)
class Lesion:
    """One lesion: a 26-connected component of the tumour label (see the module docstring)."""

    id: int
    voxel_count: int
    volume: Measurement  # mL
    max_diameter: Measurement  # mm
    max_diameter_endpoints_lps: tuple[Point, Point]
    long_axis: Measurement  # mm, RECIST 1.1
    long_axis_endpoints_lps: tuple[Point, Point]
    short_axis: Measurement  # mm, perpendicular to the long axis on the same slice
    short_axis_endpoints_lps: tuple[Point, Point]
    recist_slice: int  # array slice index (axis 0) of the long and short axes
    centroid_lps: Point  # mean of the voxel centres
    slice_range: tuple[int, int]  # first and last array slice index holding the lesion
    mean: Measurement  # image unit (HU for CT)
    sd: Measurement
    in_liver: bool  # touches a liver voxel
    lobe: Lobe | None  # None when the lesion is not in the liver


@dataclass(frozen=True)
class LiverFindings:
    """Everything :func:`measure_liver` measured on one label map."""

    liver_volume: Measurement  # mL, liver label + lesions in the liver
    total_tumour_volume: Measurement  # mL, lesions in the liver
    tumour_burden: Measurement  # %
    lesions: tuple[Lesion, ...]  # largest first; ids 1..n
    liver_centroid_lps: Point
    lobe_split_x_mm: float  # LPS x of the approximate right/left lobe plane
    warnings: tuple[str, ...] = ()


# ---------------------------------------------------------------------------- measuring
def measure_liver(
    labels: Volume | LabelMap,
    image: Volume,
    *,
    liver_label: int = LiverLabel.LIVER,
    tumour_label: int = LiverLabel.TUMOUR,
) -> LiverFindings:
    """Measure the liver and every lesion of a liver/tumour label map.

    Parameters
    ----------
    labels
        Integer label ids (uint8) on ``image``'s voxel grid, or a :class:`LabelMap` of them.
    image
        The image the labels belong to (HU for CT); gives the lesions' mean and SD.
    liver_label, tumour_label
        The label ids of liver parenchyma and of tumour.

    Returns
    -------
    LiverFindings
        Lesions sorted by volume, largest first, with ids 1..n; no lesions and a burden of 0
        when there is no tumour label.

    Raises
    ------
    NoLiverError
        No voxel carries ``liver_label``.
    UnknownGeometryError
        ``image`` or ``labels`` has no known geometry (``geometry_known`` False).
    ValueError
        ``labels`` is not on ``image``'s grid, or the two label ids are equal or out of range.
    TypeError
        ``labels`` does not hold integers.
    """
    label_volume = labels.volume if isinstance(labels, LabelMap) else labels
    _check_inputs(label_volume, image, int(liver_label), int(tumour_label))
    box = _labelled_box(label_volume.voxels)
    if box is not None and any(s.stop - s.start < n for s, n in
                               zip(box, label_volume.shape, strict=True)):
        # Measure inside the labelled part only (peak memory: its masks, not the volume's);
        # array slice indices are shifted back so they still index the full volume.
        inner = measure_liver(_crop_volume(label_volume, box), _crop_volume(image, box),
                              liver_label=liver_label, tumour_label=tumour_label)
        k0 = box[0].start
        return replace(inner, lesions=tuple(
            replace(lesion, recist_slice=lesion.recist_slice + k0,
                                slice_range=(lesion.slice_range[0] + k0,
                                             lesion.slice_range[1] + k0))
            for lesion in inner.lesions))
    voxels = label_volume.voxels
    spacing_kji = np.asarray(label_volume.spacing[::-1], dtype=np.float64)  # (sz, sy, sx)
    voxel_mm3 = label_volume.voxel_volume_mm3
    name = image.source.display_name

    liver_mask = voxels == liver_label
    liver_box = _bounding_box(liver_mask)
    if liver_box is None:
        raise NoLiverError(f"{name}: no liver found (no voxel has label {int(liver_label)})")
    liver_crop = liver_mask[liver_box]
    del liver_mask
    liver_count = int(np.count_nonzero(liver_crop))

    lesions = _measure_lesions(
        voxels, image, label_volume, int(liver_label), int(tumour_label), spacing_kji, voxel_mm3
    )

    # The liver organ: liver-label voxels plus the lesions that lie in it.
    inside = [lesion for lesion in lesions if lesion.measured.in_liver]
    organ_count = liver_count + sum(lesion.measured.voxel_count for lesion in inside)
    liver_offset = tuple(s.start for s in liver_box)
    centroid_sum = _index_sum(liver_crop, liver_offset)
    for lesion in inside:
        centroid_sum += lesion.index_sum
    liver_centroid = _to_point(label_volume.index_to_world(centroid_sum[::-1] / organ_count))

    split_x = _lobe_split_x(label_volume, liver_crop, liver_offset, inside)
    tumour_mm3 = sum(lesion.measured.voxel_count for lesion in inside) * voxel_mm3
    liver_mm3 = organ_count * voxel_mm3
    voxel_text = _voxel_text(label_volume)
    final = tuple(_with_lobe(lesion.measured, split_x) for lesion in lesions)
    warnings = _warnings(label_volume, final)
    return LiverFindings(
        liver_volume=Measurement(
            LesionMeasurementName.LIVER_VOLUME,
            liver_mm3 / _MM3_PER_ML,
            _UNIT_ML,
            _METHOD_LIVER_VOLUME.format(voxel=voxel_text),
        ),
        total_tumour_volume=Measurement(
            LesionMeasurementName.TOTAL_TUMOUR_VOLUME,
            tumour_mm3 / _MM3_PER_ML,
            _UNIT_ML,
            _METHOD_TOTAL_TUMOUR,
        ),
        tumour_burden=Measurement(
            LesionMeasurementName.TUMOUR_BURDEN,
            100.0 * tumour_mm3 / liver_mm3,
            _UNIT_PERCENT,
            _METHOD_BURDEN,
        ),
        lesions=final,
        liver_centroid_lps=liver_centroid,
        lobe_split_x_mm=split_x,
        warnings=warnings,
    )


def _check_inputs(labels: Volume, image: Volume, liver_label: int, tumour_label: int) -> None:
    name = image.source.display_name
    if not np.issubdtype(labels.voxels.dtype, np.integer):
        raise TypeError(f"label maps hold integer label ids, got {labels.voxels.dtype}")
    if liver_label == tumour_label:
        raise ValueError(f"liver and tumour labels must differ, both are {liver_label}")
    info = np.iinfo(labels.voxels.dtype)
    for value in (liver_label, tumour_label):
        if not (1 <= value <= info.max):
            raise ValueError(f"label id {value} is outside 1..{info.max} ({labels.voxels.dtype})")
    if not (image.geometry_known and labels.geometry_known):
        raise UnknownGeometryError(
            f"{name}: slice positions/orientation are unknown (2D stack), so lesion volumes "
            "and diameters in mm cannot be measured"
        )
    on_grid = (
        labels.shape == image.shape
        and np.allclose(labels.spacing, image.spacing, atol=_SPACING_ATOL)
        and np.allclose(labels.origin, image.origin, atol=_ORIGIN_ATOL)
        and np.allclose(labels.direction, image.direction, atol=_DIRECTION_ATOL)
    )
    if not on_grid:
        raise ValueError(
            f"{name}: the label map is not on the image's voxel grid (labels {labels.shape}, "
            f"spacing {labels.spacing}, origin {labels.origin}; image {image.shape}, "
            f"spacing {image.spacing}, origin {image.origin}); resample it first"
        )


# ---------------------------------------------------------------------------- lesions
@dataclass(frozen=True, eq=False)
class _Measured:
    """A lesion before its lobe is known, plus the sums the liver totals need."""

    measured: Lesion
    index_sum: np.ndarray  # sum of the voxel indices (k, j, i): for the organ's centroid
    mask: np.ndarray  # the component, cropped to its bounding box
    offset: tuple[int, int, int]  # array index of the crop's first voxel


def _measure_lesions(
    voxels: np.ndarray,
    image: Volume,
    grid: Volume,
    liver_label: int,
    tumour_label: int,
    spacing_kji: np.ndarray,
    voxel_mm3: float,
) -> list[_Measured]:
    tumour_mask = voxels == tumour_label
    box = _bounding_box(tumour_mask)
    if box is None:
        return []
    components, count = ndimage.label(tumour_mask[box], structure=_FULL_CONNECTIVITY)
    del tumour_mask
    sizes = np.bincount(components.ravel(), minlength=count + 1)[1:]
    objects = ndimage.find_objects(components)
    order = sorted(range(count), key=lambda c: (-int(sizes[c]), c))
    box_start = np.array([s.start for s in box])
    result = []
    for lesion_id, c in enumerate(order, start=1):
        local = objects[c]
        mask = components[local] == c + 1
        offset = tuple(int(v) for v in box_start + [s.start for s in local])
        result.append(
            _measure_component(
                lesion_id, mask, offset, voxels, image, grid, liver_label, spacing_kji, voxel_mm3
            )
        )
    return result


def _measure_component(
    lesion_id: int,
    mask: np.ndarray,
    offset: tuple[int, int, int],
    voxels: np.ndarray,
    image: Volume,
    grid: Volume,
    liver_label: int,
    spacing_kji: np.ndarray,
    voxel_mm3: float,
) -> _Measured:
    count = int(np.count_nonzero(mask))
    origin = np.asarray(offset, dtype=np.float64)
    index_sum = _index_sum(mask, offset)
    centroid = _to_point(grid.index_to_world(index_sum[::-1] / count))
    padded = np.pad(mask, 1)
    shift = origin - 1.0  # padded-crop index -> volume index

    def to_lps(index_kji: np.ndarray) -> Point:
        return _to_point(grid.index_to_world((np.asarray(index_kji) + shift)[::-1]))

    # contour points of every slice (padded-crop index (k, j, i)), ordered by slice
    contour = _contour_points(padded)
    contour_mm = contour * spacing_kji
    diameter, a, b = _farthest_pair(contour_mm)
    max_diameter_ends = (to_lps(contour[a]), to_lps(contour[b]))

    # RECIST long axis: the longest in-slice diameter over the slices
    slice_of = contour[:, 0].astype(np.intp)
    best: tuple[float, int, int] | None = None  # (length, area, -k): the largest wins
    best_ends: tuple[np.ndarray, np.ndarray] | None = None
    best_k = -1
    bounds = np.flatnonzero(np.diff(slice_of)) + 1
    for group in np.split(np.arange(len(slice_of)), bounds):
        k = int(slice_of[group[0]])
        length, p, q = _farthest_pair(contour_mm[group, 1:])
        key = (length, int(np.count_nonzero(padded[k])), -k)
        if best is None or key > best:
            best, best_k = key, k
            best_ends = (contour[group[p]], contour[group[q]])
    assert best is not None and best_ends is not None  # a lesion has at least one slice
    long_axis = best[0]
    start_mm = best_ends[0][1:] * spacing_kji[1:]
    end_mm = best_ends[1][1:] * spacing_kji[1:]
    direction = (end_mm - start_mm) / long_axis
    short_axis, short_ends_ji, step = _perpendicular_chord(
        padded[best_k], spacing_kji[1:], direction
    )
    short_ends = tuple(to_lps(np.array([best_k, *end])) for end in short_ends_ji)

    # intensity, over the lesion's voxels
    region = tuple(slice(o, o + n) for o, n in zip(offset, mask.shape, strict=True))
    values = image.voxels[region][mask].astype(np.float64)
    rescale = image.rescale
    if not rescale.applied:
        values = values * rescale.slope + rescale.intercept
    unit = rescale.unit

    kk = np.flatnonzero(np.any(mask, axis=(1, 2)))
    lesion = Lesion(
        id=lesion_id,
        voxel_count=count,
        volume=Measurement(
            LesionMeasurementName.VOLUME,
            count * voxel_mm3 / _MM3_PER_ML,
            _UNIT_ML,
            _METHOD_VOLUME.format(voxel=_voxel_text(grid)),
        ),
        max_diameter=Measurement(
            LesionMeasurementName.MAX_3D_DIAMETER, diameter, _UNIT_MM, _METHOD_MAX_DIAMETER
        ),
        max_diameter_endpoints_lps=max_diameter_ends,
        long_axis=Measurement(
            LesionMeasurementName.LONG_AXIS, long_axis, _UNIT_MM, _METHOD_LONG_AXIS
        ),
        long_axis_endpoints_lps=(to_lps(best_ends[0]), to_lps(best_ends[1])),
        short_axis=Measurement(
            LesionMeasurementName.SHORT_AXIS,
            short_axis,
            _UNIT_MM,
            _METHOD_SHORT_AXIS.format(step=step),
        ),
        short_axis_endpoints_lps=(short_ends[0], short_ends[1]),
        recist_slice=best_k + offset[0] - 1,
        centroid_lps=centroid,
        slice_range=(offset[0] + int(kk[0]), offset[0] + int(kk[-1])),
        mean=Measurement(MeasurementName.MEAN, float(values.mean()), unit, _METHOD_MEAN),
        sd=Measurement(MeasurementName.SD, float(values.std(ddof=0)), unit, _METHOD_SD),
        in_liver=_touches(mask, offset, voxels, liver_label),
        lobe=None,
    )
    return _Measured(lesion, index_sum, mask, offset)


def _contour_points(padded: np.ndarray) -> np.ndarray:
    """Every slice's contour points: centres of the in-plane edges between set and unset pixels.

    ``padded`` has a background border, so edges on the crop's border are found too. Returns
    an ``(n, 3)`` array of array indices ``(k, j, i)`` (integer ``k``; one of ``j``, ``i``
    half-integer), sorted by ``k``.
    """
    parts = []
    for axis in (1, 2):
        lower = [slice(None)] * 3
        upper = [slice(None)] * 3
        lower[axis] = slice(None, -1)
        upper[axis] = slice(1, None)
        exposed = padded[tuple(lower)] != padded[tuple(upper)]
        centres = np.argwhere(exposed).astype(np.float64)
        centres[:, axis] += 0.5
        parts.append(centres)
    points = np.concatenate(parts)
    return points[np.argsort(points[:, 0], kind="stable")]


def _farthest_pair(points: np.ndarray) -> tuple[float, int, int]:
    """``(distance, a, b)``: the two points of ``points`` (``(n, d)``) farthest apart.

    Exact: the farthest pair of a point set are vertices of its convex hull, so only those
    are compared (in blocks, so memory stays bounded).
    """
    if len(points) < 2:
        return 0.0, 0, 0
    # Coordinates that never change (a one-slice lesion's k) would make the hull flat.
    points = points[:, np.ptp(points, axis=0) > 0]
    if points.shape[1] == 0:
        return 0.0, 0, 0
    candidates = np.arange(len(points))
    if points.shape[1] == 1:
        candidates = np.array([np.argmin(points[:, 0]), np.argmax(points[:, 0])])
    elif len(points) > _BRUTE_FORCE_POINTS:
        # other degenerate input (e.g. all points on one line) has no hull: then all
        # points are compared, which is still exact
        with contextlib.suppress(QhullError):
            candidates = ConvexHull(points).vertices
    subset = points[candidates]
    best, best_a, best_b = -1.0, 0, 0
    for start in range(0, len(subset), _PAIR_BLOCK):
        block = subset[start : start + _PAIR_BLOCK]
        squared = np.sum((block[:, None, :] - subset[None, :, :]) ** 2, axis=2)
        flat = int(np.argmax(squared))
        row, col = divmod(flat, squared.shape[1])
        if squared[row, col] > best:
            best, best_a, best_b = float(squared[row, col]), start + row, col
    return math.sqrt(best), int(candidates[best_a]), int(candidates[best_b])


def _perpendicular_chord(
    mask: np.ndarray, spacing_ji: np.ndarray, long_dir: np.ndarray
) -> tuple[float, tuple[np.ndarray, np.ndarray], float]:
    """Longest chord of ``mask``'s pixel squares perpendicular to ``long_dir``.

    ``mask`` is one padded slice; ``spacing_ji`` the (row, column) spacing; ``long_dir`` a unit
    vector in (row, column) mm. Returns the length (mm), its two end points as continuous
    (row, column) indices of ``mask``, and the sampling step (mm).
    """
    perp = np.array([-long_dir[1], long_dir[0]])
    centres = np.argwhere(mask).astype(np.float64) * spacing_ji
    # half the extent of one pixel square along each direction
    half_u = 0.5 * float(np.abs(long_dir) @ spacing_ji)
    half_v = 0.5 * float(np.abs(perp) @ spacing_ji)
    u, v = centres @ long_dir, centres @ perp
    u_lo, u_hi = float(u.min()) - half_u, float(u.max()) + half_u
    v_lo, v_hi = float(v.min()) - half_v, float(v.max()) + half_v
    step = max(
        float(spacing_ji.min()) * _CHORD_STEP_FRACTION,
        max(u_hi - u_lo, v_hi - v_lo) / _CHORD_MAX_SAMPLES,
    )
    t = u_lo + step * (np.arange(math.ceil((u_hi - u_lo) / step)) + 0.5)
    s = v_lo + step * (np.arange(math.ceil((v_hi - v_lo) / step)) + 0.5)

    def inside(tt: np.ndarray, ss: np.ndarray) -> np.ndarray:
        rows = np.rint((tt * long_dir[0] + ss * perp[0]) / spacing_ji[0]).astype(np.intp)
        cols = np.rint((tt * long_dir[1] + ss * perp[1]) / spacing_ji[1]).astype(np.intp)
        valid = (rows >= 0) & (rows < mask.shape[0]) & (cols >= 0) & (cols < mask.shape[1])
        result = np.zeros(np.broadcast(rows, cols).shape, dtype=bool)
        result[valid] = mask[rows[valid], cols[valid]]
        return result

    hits = inside(t[:, None], s[None, :])
    edges = np.diff(np.pad(hits, ((0, 0), (1, 1))).astype(np.int8), axis=1)
    starts, ends = np.argwhere(edges == 1), np.argwhere(edges == -1)  # paired, row-major
    lengths = ends[:, 1] - starts[:, 1]
    best = int(np.argmax(lengths))
    line, first, last = int(starts[best, 0]), int(starts[best, 1]), int(ends[best, 1]) - 1
    t_line = np.array(t[line])

    def edge(s_in: float, s_out: float) -> float:
        """The pixel edge between an inside and an outside sample of the chosen line."""
        for _ in range(_BISECTION_STEPS):
            middle = 0.5 * (s_in + s_out)
            if inside(t_line, np.array(middle)):
                s_in = middle
            else:
                s_out = middle
        return s_in

    s_start = edge(float(s[first]), float(s[first]) - step)
    s_end = edge(float(s[last]), float(s[last]) + step)
    ends_mm = [float(t[line]) * long_dir + value * perp for value in (s_start, s_end)]
    ends_index = (ends_mm[0] / spacing_ji, ends_mm[1] / spacing_ji)
    return s_end - s_start, ends_index, step


def _touches(
    mask: np.ndarray, offset: tuple[int, int, int], voxels: np.ndarray, liver_label: int
) -> bool:
    """True when a voxel in the component's 26-neighbourhood carries ``liver_label``."""
    grown = ndimage.binary_dilation(np.pad(mask, 1), structure=_FULL_CONNECTIVITY)
    lo = [o - 1 for o in offset]
    hi = [o + n + 1 for o, n in zip(offset, mask.shape, strict=True)]
    lo_in = [max(v, 0) for v in lo]
    hi_in = [min(v, n) for v, n in zip(hi, voxels.shape, strict=True)]
    region = tuple(slice(a, b) for a, b in zip(lo_in, hi_in, strict=True))
    local = tuple(slice(a - o, b - o) for a, b, o in zip(lo_in, hi_in, lo, strict=True))
    return bool(np.any(voxels[region][grown[local]] == liver_label))


# ---------------------------------------------------------------------------- liver
def _lobe_split_x(
    grid: Volume,
    liver_crop: np.ndarray,
    liver_offset: tuple[int, ...],
    lesions: list[_Measured],
) -> float:
    """LPS x of the sagittal plane with RIGHT_LIVER_VOLUME_FRACTION of the liver to its right."""
    # x = origin_x + sum over array axes of coef[axis] * index[axis]
    coef = grid.direction[0, ::-1] * np.asarray(grid.spacing[::-1], dtype=np.float64)
    boxes = [(liver_offset, liver_crop.shape)] + [(m.offset, m.mask.shape) for m in lesions]
    corner_xs = [
        grid.origin[0] + (np.asarray(offset) + np.array([a, b, c]) * np.asarray(shape)) @ coef
        for offset, shape in boxes
        for a in (0, 1)
        for b in (0, 1)
        for c in (0, 1)
    ]
    x_lo = min(corner_xs) - _LOBE_BIN_MM
    n_bins = math.ceil((max(corner_xs) - x_lo) / _LOBE_BIN_MM) + 2
    hist = _x_histogram(grid, coef, liver_crop, liver_offset, x_lo, n_bins)
    for lesion in lesions:
        hist += _x_histogram(grid, coef, lesion.mask, lesion.offset, x_lo, n_bins)
    cumulative = np.cumsum(hist)
    bin_index = int(np.searchsorted(cumulative, RIGHT_LIVER_VOLUME_FRACTION * cumulative[-1]))
    return float(x_lo + (bin_index + 0.5) * _LOBE_BIN_MM)


def _x_histogram(
    grid: Volume,
    coef: np.ndarray,
    mask: np.ndarray,
    offset: tuple[int, ...],
    x_lo: float,
    n_bins: int,
) -> np.ndarray:
    """Voxel counts of ``mask`` (a crop at ``offset``) per LPS-x bin of width _LOBE_BIN_MM."""
    coef = coef.copy()
    counts: np.ndarray = mask
    for axis in range(3):
        # x does not vary along this axis: count along it first (usual: axis 0 of axial CT)
        if abs(coef[axis]) < _NEGLIGIBLE_MM:
            if counts.dtype == bool:  # count_nonzero is the fast reduction of a mask
                counts = np.count_nonzero(counts, axis=axis, keepdims=True)
            else:
                counts = np.sum(counts, axis=axis, keepdims=True, dtype=np.int64)
            coef[axis] = 0.0
    index = [np.arange(n, dtype=np.float64) + o for n, o in zip(counts.shape, offset, strict=True)]
    in_plane = grid.origin[0] + coef[1] * index[1][:, None] + coef[2] * index[2][None, :]
    hist = np.zeros(n_bins, dtype=np.float64)
    for k in range(counts.shape[0]):
        weights = counts[k].astype(np.float64).ravel()
        if not weights.any():
            continue
        x = in_plane + coef[0] * index[0][k]
        bins = np.clip(((x - x_lo) / _LOBE_BIN_MM).astype(np.intp), 0, n_bins - 1)
        hist += np.bincount(bins.ravel(), weights=weights, minlength=n_bins)
    return hist


def _with_lobe(lesion: Lesion, split_x: float) -> Lesion:
    if not lesion.in_liver:
        return lesion
    lobe = Lobe.RIGHT if lesion.centroid_lps[0] < split_x else Lobe.LEFT
    return replace(lesion, lobe=lobe)


def _warnings(grid: Volume, lesions: tuple[Lesion, ...]) -> tuple[str, ...]:
    warnings = []
    normal_axis, _ = grid.index_axis_to_patient_axis()[2]
    if lesions and normal_axis != 2:
        plane = "sagittal" if normal_axis == 0 else "coronal"
        warnings.append(
            f"the slices are {plane}, not axial: the RECIST long and short axes were measured "
            "in the acquisition plane"
        )
    for lesion in lesions:
        if not lesion.in_liver:
            warnings.append(
                f"lesion {lesion.id} does not touch the liver: listed, but not counted in the "
                "liver volume or the tumour burden"
            )
    return tuple(warnings)


# ---------------------------------------------------------------------------- helpers
def _labelled_box(voxels: np.ndarray) -> tuple[slice, slice, slice] | None:
    """The box of every labelled (non-zero) voxel, one voxel wider where the volume allows
    (so "touches the volume's edge" and contours mean the same inside it); None: no label."""
    spans = []
    for axis, others in ((0, (1, 2)), (1, (0, 2)), (2, (0, 1))):
        hits = np.flatnonzero(np.any(voxels, axis=others))
        if hits.size == 0:
            return None
        spans.append(slice(max(0, int(hits[0]) - 1), min(voxels.shape[axis], int(hits[-1]) + 2)))
    return tuple(spans)  # type: ignore[return-value]


def _crop_volume(volume: Volume, box: tuple[slice, slice, slice]) -> Volume:
    """``volume`` restricted to ``box`` (a view), with the origin of the box's first voxel."""
    start_ijk = tuple(s.start for s in box)[::-1]
    return replace(volume, voxels=volume.voxels[box],
                               origin=tuple(float(v) for v in volume.index_to_world(start_ijk)))


def _bounding_box(mask: np.ndarray) -> tuple[slice, slice, slice] | None:
    """The smallest box holding every set voxel of ``mask`` (None: nothing set).

    Each axis is searched inside the range already found, so the later passes are short.
    """
    ks = np.flatnonzero(np.any(mask, axis=(1, 2)))
    if ks.size == 0:
        return None
    k_box = slice(int(ks[0]), int(ks[-1]) + 1)
    js = np.flatnonzero(np.any(mask[k_box], axis=(0, 2)))
    j_box = slice(int(js[0]), int(js[-1]) + 1)
    i_s = np.flatnonzero(np.any(mask[k_box, j_box], axis=(0, 1)))
    return k_box, j_box, slice(int(i_s[0]), int(i_s[-1]) + 1)


def _index_sum(mask: np.ndarray, offset: tuple[int, ...]) -> np.ndarray:
    """Sum of the array indices ``(k, j, i)`` of the set voxels, from the marginal counts."""
    sums = []
    for axis in range(3):
        others = tuple(a for a in range(3) if a != axis)
        marginal = np.count_nonzero(mask, axis=others)
        positions = np.arange(mask.shape[axis], dtype=np.float64) + offset[axis]
        sums.append(float(marginal @ positions))
    return np.array(sums)


def _to_point(values: np.ndarray) -> Point:
    return (float(values[0]), float(values[1]), float(values[2]))


def _voxel_text(grid: Volume) -> str:
    sx, sy, sz = grid.spacing
    return f"{sx:g} x {sy:g} x {sz:g} mm"


# ---------------------------------------------------------------------------- JSON
def to_json(findings: LiverFindings) -> dict[str, object]:
    """The findings as plain JSON data (numbers unrounded; points as ``[x, y, z]`` LPS mm).

    Keys: ``liver`` (``volume_ml``, ``centroid_lps``), ``lesions`` (one object per lesion:
    ``id``, ``volume_ml``, ``long_axis_mm``, ``short_axis_mm``, ``max_diameter_mm``,
    ``centroid_lps``, ``slice_range``, ``mean_hu``, ``sd_hu``, ``lobe``,
    ``long_axis_endpoints_lps``, ``short_axis_endpoints_lps``, plus ``max_diameter_endpoints_lps``,
    ``recist_slice``, ``in_liver``), ``tumor_burden_percent``, ``total_tumour_volume_ml``,
    ``lobe_split_x_mm``, ``methods`` (how each quantity was measured) and ``warnings``.
    ``mean_hu``/``sd_hu`` are in the image's unit, which is HU for CT.
    """
    first = findings.lesions[0] if findings.lesions else None
    methods = {
        "liver_volume_ml": findings.liver_volume.method,
        "total_tumour_volume_ml": findings.total_tumour_volume.method,
        "tumor_burden_percent": findings.tumour_burden.method,
        "lobe": (
            f"approximate: sagittal plane with {RIGHT_LIVER_VOLUME_FRACTION:.0%} of the liver "
            "volume on the patient's right; the lesion centroid's side of it"
        ),
    }
    if first is not None:
        methods.update(
            volume_ml=first.volume.method,
            long_axis_mm=first.long_axis.method,
            short_axis_mm=first.short_axis.method,
            max_diameter_mm=first.max_diameter.method,
            mean_hu=first.mean.method,
            sd_hu=first.sd.method,
        )
    return {
        "liver": {
            "volume_ml": findings.liver_volume.value,
            "centroid_lps": list(findings.liver_centroid_lps),
        },
        "lesions": [_lesion_json(lesion) for lesion in findings.lesions],
        "tumor_burden_percent": findings.tumour_burden.value,
        "total_tumour_volume_ml": findings.total_tumour_volume.value,
        "lobe_split_x_mm": findings.lobe_split_x_mm,
        "methods": methods,
        "warnings": list(findings.warnings),
    }


def _lesion_json(lesion: Lesion) -> dict[str, object]:
    return {
        "id": lesion.id,
        "volume_ml": lesion.volume.value,
        "long_axis_mm": lesion.long_axis.value,
        "short_axis_mm": lesion.short_axis.value,
        "max_diameter_mm": lesion.max_diameter.value,
        "centroid_lps": list(lesion.centroid_lps),
        "slice_range": list(lesion.slice_range),
        "mean_hu": lesion.mean.value,
        "sd_hu": lesion.sd.value,
        "lobe": None if lesion.lobe is None else lesion.lobe.value,
        "long_axis_endpoints_lps": [list(p) for p in lesion.long_axis_endpoints_lps],
        "short_axis_endpoints_lps": [list(p) for p in lesion.short_axis_endpoints_lps],
        "max_diameter_endpoints_lps": [list(p) for p in lesion.max_diameter_endpoints_lps],
        "recist_slice": lesion.recist_slice,
        "in_liver": lesion.in_liver,
    }
