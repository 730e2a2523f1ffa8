"""The one image type: a voxel array plus its geometry in LPS patient coordinates.

Conventions (written down once; ``docs/ARCHITECTURE.md`` repeats them with a figure)
-----------------------------------------------------------------------------------
* ``voxels`` is indexed ``voxels[k, j, i]``: axis 0 = slice ``k``, axis 1 = row ``j``,
  axis 2 = column ``i``. So the array shape is ``(z, y, x)`` = ``(slices, rows, columns)``.
* Every *world-facing* triple is in ITK order ``(x, y, z)`` / ``(i, j, k)``: ``spacing`` is
  ``(column spacing, row spacing, slice spacing)`` in mm, a continuous *index* is ``(i, j, k)``.
* World coordinates are DICOM patient coordinates, LPS: +x towards the patient's Left,
  +y towards Posterior, +z towards Superior (head), in millimetres.
* ``direction`` is a 3x3 matrix whose *columns* are the unit vectors of increasing ``i``,
  ``j`` and ``k`` in LPS (for DICOM: column 0 = ImageOrientationPatient[0:3] (along a row),
  column 1 = ImageOrientationPatient[3:6] (down a column), column 2 = the slice normal).
* ``world = origin + direction @ (spacing * index)``; ``origin`` is the centre of voxel
  ``(0, 0, 0)`` (DICOM ImagePositionPatient of the first slice).

Display planes follow the radiological convention: axial and coronal views show the patient's
right on the left of the screen; the sagittal view shows anterior on the left; coronal and
sagittal views show superior at the top. Slice number 0 of a plane is the most right / anterior /
inferior one, so the slice number grows with the LPS coordinate of the plane's normal.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field, replace
from enum import Enum
from pathlib import Path

import numpy as np

__all__ = [
    "ALLOWED_VOXEL_TYPES",
    "Rescale",
    "VolumeSource",
    "Volume",
    "ViewPlane",
    "PlaneGeometry",
]

#: Voxel types a Volume may hold. Never float64: a 512x512x1000 CT would need 2 GB.
ALLOWED_VOXEL_TYPES = frozenset(
    np.dtype(t) for t in (np.uint8, np.int8, np.int16, np.uint16, np.int32, np.uint32, np.float32)
)


@dataclass(frozen=True)
class Rescale:
    """How stored values became the values in ``voxels``.

    ``applied`` is True when ``voxels`` already hold modality values (HU for CT): the loader
    applied ``value = slope * stored + intercept``. ``unit`` names what the voxels mean
    (``"HU"`` for CT after rescale, ``""`` when unknown).
    """

    slope: float = 1.0
    intercept: float = 0.0
    unit: str = ""
    applied: bool = True


@dataclass(frozen=True)
class VolumeSource:
    """Where a Volume came from, for provenance, error messages and the study index."""

    kind: str  # "dicom", "nifti", "nrrd", "metaimage", "synthetic"
    paths: tuple[str, ...] = ()
    study_uid: str = ""
    series_uid: str = ""
    description: str = ""
    #: DICOM only: (file, frame) of each slice k of the volume, ("", 0) for a missing slice
    slice_files: tuple[tuple[str, int], ...] = ()

    @property
    def display_name(self) -> str:
        if self.description:
            return self.description
        if self.paths:
            return Path(self.paths[0]).name
        return self.kind


class ViewPlane(Enum):
    """The three display planes, named by the patient axis they are perpendicular to."""

    AXIAL = "axial"  # perpendicular to S/I (LPS z)
    CORONAL = "coronal"  # perpendicular to A/P (LPS y)
    SAGITTAL = "sagittal"  # perpendicular to L/R (LPS x)


# For each plane: (patient axis of the normal, patient axis pointing down the screen and whether
# down is the positive LPS direction, patient axis pointing right and whether right is positive).
# LPS axes: 0 = x (R->L), 1 = y (A->P), 2 = z (I->S).
_PLANE_LAYOUT: dict[ViewPlane, tuple[int, tuple[int, bool], tuple[int, bool]]] = {
    ViewPlane.AXIAL: (2, (1, True), (0, True)),  # down = posterior, right = patient left
    ViewPlane.CORONAL: (1, (2, False), (0, True)),  # down = inferior, right = patient left
    ViewPlane.SAGITTAL: (0, (2, False), (1, True)),  # down = inferior, right = posterior
}

# Screen-edge letters of each patient direction: (negative LPS end, positive LPS end).
_AXIS_LETTERS = (("R", "L"), ("A", "P"), ("I", "S"))


@dataclass(frozen=True)
class PlaneGeometry:
    """How one display plane maps onto the voxel array.

    ``normal_axis``/``row_axis``/``col_axis`` are *array* axes (0 = k, 1 = j, 2 = i);
    the ``*_flipped`` flags say that screen order runs against array order on that axis.
    """

    plane: ViewPlane
    normal_axis: int
    normal_flipped: bool
    row_axis: int
    row_flipped: bool
    col_axis: int
    col_flipped: bool
    slice_count: int
    pixel_spacing: tuple[float, float]  # (mm between screen rows, mm between screen columns)
    edge_letters: tuple[str, str, str, str]  # (top, bottom, left, right)


@dataclass(frozen=True, eq=False)
class Volume:
    """A 3D image: ``voxels[k, j, i]`` plus LPS geometry (see the module docstring)."""

    voxels: np.ndarray
    spacing: tuple[float, float, float] = (1.0, 1.0, 1.0)
    origin: tuple[float, float, float] = (0.0, 0.0, 0.0)
    direction: np.ndarray = field(default_factory=lambda: np.eye(3))
    modality: str = ""
    rescale: Rescale = field(default_factory=Rescale)
    source: VolumeSource = field(default_factory=lambda: VolumeSource("synthetic"))
    #: False when positions/orientation were missing: the images are shown as a 2D stack and
    #: nothing may be measured across slices.
    geometry_known: bool = True
    #: MONOCHROME1 data: the modality shows low values bright. Voxels keep their true values
    #: (measurements stay right); viewers start with an inverted grey scale instead.
    display_inverted: bool = False
    warnings: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        voxels = self.voxels
        if voxels.ndim != 3:
            raise ValueError(f"Volume needs a 3D array (z, y, x), got shape {voxels.shape}")
        if voxels.dtype not in ALLOWED_VOXEL_TYPES:
            raise TypeError(f"Volume voxels may not be {voxels.dtype}; allowed: int/uint, float32")
        spacing = tuple(float(s) for s in self.spacing)
        if len(spacing) != 3 or not all(np.isfinite(s) and s > 0 for s in spacing):
            raise ValueError(f"spacing must be three positive finite numbers, got {self.spacing}")
        origin = tuple(float(o) for o in self.origin)
        if len(origin) != 3 or not all(np.isfinite(origin)):
            raise ValueError(f"origin must be three finite numbers, got {self.origin}")
        direction = np.asarray(self.direction, dtype=np.float64).reshape(3, 3)
        if not np.allclose(direction.T @ direction, np.eye(3), atol=1e-4):
            raise ValueError("direction must be orthonormal (columns are unit, perpendicular)")
        direction.setflags(write=False)
        object.__setattr__(self, "spacing", spacing)
        object.__setattr__(self, "origin", origin)
        object.__setattr__(self, "direction", direction)
        object.__setattr__(self, "warnings", tuple(self.warnings))

    # ------------------------------------------------------------------ basic facts
    @property
    def shape(self) -> tuple[int, int, int]:
        """Array shape ``(slices, rows, columns)``."""
        return tuple(int(n) for n in self.voxels.shape)  # type: ignore[return-value]

    @property
    def size_xyz(self) -> tuple[int, int, int]:
        """Voxel counts in ITK order ``(columns, rows, slices)``."""
        k, j, i = self.shape
        return (i, j, k)

    @property
    def voxel_volume_mm3(self) -> float:
        sx, sy, sz = self.spacing
        return sx * sy * sz

    @property
    def affine(self) -> np.ndarray:
        """4x4 matrix mapping homogeneous index ``(i, j, k, 1)`` to LPS mm."""
        a = np.eye(4)
        a[:3, :3] = self.direction * np.asarray(self.spacing)[None, :]
        a[:3, 3] = self.origin
        return a

    def with_voxels(self, voxels: np.ndarray, **changes: object) -> Volume:
        """A new Volume on the same grid with other voxels (label maps, filtered images)."""
        if tuple(voxels.shape) != self.shape:
            raise ValueError(f"new voxels {voxels.shape} do not match the grid {self.shape}")
        return replace(self, voxels=voxels, **changes)  # type: ignore[arg-type]

    # ------------------------------------------------------------------ index <-> world
    def index_to_world(self, ijk: np.ndarray | tuple[float, float, float]) -> np.ndarray:
        """LPS mm of continuous index/indices ``(i, j, k)`` (shape ``(3,)`` or ``(n, 3)``)."""
        ijk = np.asarray(ijk, dtype=np.float64)
        scaled = ijk * np.asarray(self.spacing)
        return scaled @ self.direction.T + np.asarray(self.origin)

    def world_to_index(self, xyz: np.ndarray | tuple[float, float, float]) -> np.ndarray:
        """Continuous index ``(i, j, k)`` of LPS point(s) (shape ``(3,)`` or ``(n, 3)``)."""
        xyz = np.asarray(xyz, dtype=np.float64)
        # direction is orthonormal, so its inverse is its transpose.
        return ((xyz - np.asarray(self.origin)) @ self.direction) / np.asarray(self.spacing)

    def contains_index(self, ijk: np.ndarray | tuple[float, float, float]) -> bool:
        """True when the continuous index lies inside the voxel grid (voxel centres +- 0.5)."""
        ijk = np.asarray(ijk, dtype=np.float64)
        upper = np.asarray(self.size_xyz) - 0.5
        return bool(np.all(ijk >= -0.5) and np.all(ijk < upper))

    # ------------------------------------------------------------------ display planes
    def index_axis_to_patient_axis(self) -> tuple[tuple[int, int], ...]:
        """For index axes i, j, k: the LPS axis each runs closest to and its sign (+1/-1).

        Oblique series are shown on the nearest patient plane (as Slicer and OHIF do for
        non-resliced display). The assignment is a permutation chosen to maximise alignment,
        so a 45 degree tilt cannot map two index axes to the same patient axis.
        """
        alignment = np.abs(self.direction)  # [patient axis, index axis]
        best = max(
            itertools.permutations(range(3)),
            key=lambda perm: sum(alignment[perm[c], c] for c in range(3)),
        )
        return tuple(
            (best[c], 1 if self.direction[best[c], c] >= 0 else -1) for c in range(3)
        )

    def plane_geometry(self, plane: ViewPlane) -> PlaneGeometry:
        """How ``plane`` is cut from the array; see :meth:`plane_slice`."""
        mapping = self.index_axis_to_patient_axis()
        # index axis c (0=i, 1=j, 2=k) is array axis 2 - c
        patient_to_array = {p: (2 - c, sign) for c, (p, sign) in enumerate(mapping)}
        normal_p, (down_p, down_positive), (right_p, right_positive) = _PLANE_LAYOUT[plane]
        normal_axis, normal_sign = patient_to_array[normal_p]
        row_axis, row_sign = patient_to_array[down_p]
        col_axis, col_sign = patient_to_array[right_p]
        spacing_by_array_axis = self.spacing[::-1]  # (sz, sy, sx)
        down_letters = _AXIS_LETTERS[down_p] if down_positive else _AXIS_LETTERS[down_p][::-1]
        right_letters = _AXIS_LETTERS[right_p] if right_positive else _AXIS_LETTERS[right_p][::-1]
        return PlaneGeometry(
            plane=plane,
            normal_axis=normal_axis,
            normal_flipped=normal_sign < 0,
            row_axis=row_axis,
            row_flipped=(row_sign > 0) != down_positive,
            col_axis=col_axis,
            col_flipped=(col_sign > 0) != right_positive,
            slice_count=self.shape[normal_axis],
            pixel_spacing=(spacing_by_array_axis[row_axis], spacing_by_array_axis[col_axis]),
            edge_letters=(down_letters[0], down_letters[1], right_letters[0], right_letters[1]),
        )

    def plane_slice(
        self, plane: ViewPlane, index: int, array: np.ndarray | None = None
    ) -> np.ndarray:
        """The 2D image of ``plane`` number ``index``, oriented for the screen.

        Row 0 is the top of the screen and column 0 its left edge. The result is a numpy
        view (no copy), so reslicing costs nothing until the caller renders it. Pass
        ``array`` (same shape as ``voxels``, e.g. a label map) to cut that instead.
        """
        g = self.plane_geometry(plane)
        source = self.voxels if array is None else array
        if source.shape != self.voxels.shape:
            raise ValueError(f"array {source.shape} does not match the grid {self.voxels.shape}")
        if not 0 <= index < g.slice_count:
            raise IndexError(f"{plane.value} slice {index} outside 0..{g.slice_count - 1}")
        array_index = g.slice_count - 1 - index if g.normal_flipped else index
        image = _take_view(source, g.normal_axis, array_index)
        remaining = [a for a in range(3) if a != g.normal_axis]
        # After removing the normal axis, the two remaining array axes keep their order.
        if remaining.index(g.row_axis) == 1:
            image = image.T
        if g.row_flipped:
            image = image[::-1, :]
        if g.col_flipped:
            image = image[:, ::-1]
        return image

    def plane_index_of_world(self, plane: ViewPlane, xyz: tuple[float, float, float]) -> int:
        """The slice number of ``plane`` nearest to an LPS point, clamped into range."""
        g = self.plane_geometry(plane)
        array_index = float(self.world_to_index(xyz)[2 - g.normal_axis])
        nearest = int(np.clip(np.rint(array_index), 0, g.slice_count - 1))
        return g.slice_count - 1 - nearest if g.normal_flipped else nearest

    def world_of_plane_pixel(
        self, plane: ViewPlane, index: int, row: float, col: float
    ) -> np.ndarray:
        """LPS mm of a (continuous) pixel ``(row, col)`` of :meth:`plane_slice` ``index``."""
        g = self.plane_geometry(plane)
        array_pos = [0.0, 0.0, 0.0]
        array_pos[g.normal_axis] = g.slice_count - 1 - index if g.normal_flipped else index
        n_rows = self.shape[g.row_axis]
        n_cols = self.shape[g.col_axis]
        array_pos[g.row_axis] = n_rows - 1 - row if g.row_flipped else row
        array_pos[g.col_axis] = n_cols - 1 - col if g.col_flipped else col
        k, j, i = array_pos
        return self.index_to_world((i, j, k))

    def plane_pixel_of_world(
        self, plane: ViewPlane, xyz: np.ndarray | tuple[float, float, float]
    ) -> tuple[float, float, float]:
        """Continuous ``(slice index, row, col)`` of ``plane`` at an LPS point.

        The exact inverse of :meth:`world_of_plane_pixel`: nothing is rounded or clamped, so
        a point outside the grid gives numbers outside ``0..n - 1`` and a point between two
        slices gives a fractional slice index (:meth:`plane_index_of_world` rounds it).
        """
        g = self.plane_geometry(plane)
        i, j, k = (float(v) for v in self.world_to_index(xyz))
        array_pos = (k, j, i)
        normal = array_pos[g.normal_axis]
        row = array_pos[g.row_axis]
        col = array_pos[g.col_axis]
        return (
            g.slice_count - 1 - normal if g.normal_flipped else normal,
            self.shape[g.row_axis] - 1 - row if g.row_flipped else row,
            self.shape[g.col_axis] - 1 - col if g.col_flipped else col,
        )


def _take_view(array: np.ndarray, axis: int, index: int) -> np.ndarray:
    """``array`` with ``axis`` fixed at ``index`` as a view (``np.take`` would copy)."""
    selector: list[slice | int] = [slice(None)] * array.ndim
    selector[axis] = index
    return array[tuple(selector)]
