"""Headers -> series -> stacks: grouping, splitting, sorting and geometry checks.

A *series* (one Series Instance UID) may hold several things that cannot share one volume:
localizers, a second orientation, another matrix size, a repeated acquisition. Each becomes a
*stack*. Slices are sorted by their position along the slice normal (never by Instance Number or
file name, which scanners and exporters get wrong), and the stack's geometry is checked; every
problem becomes a warning with numbers, shown to the user next to the series.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from radview.core.errors import InputFileError
from radview.io.dicom_header import FileProblem, FrameHeader, InstanceHeader
from radview.io.dicom_pixels import check_decoder_available, check_pixel_description
from radview.io.dicom_scan import problem_from_error

__all__ = ["SeriesStack", "GroupingResult", "group_series"]

#: Positions closer than this along the normal are the same slice position.
DUPLICATE_TOLERANCE_MM = 0.01
#: Spacing deviations above this are reported (issue #2: "> 0.01 mm").
SPACING_TOLERANCE_MM = 0.01
#: Tilt angles above this are reported.
TILT_TOLERANCE_DEG = 0.01


@dataclass(frozen=True)
class SeriesStack:
    """One loadable image stack: frames with a common orientation and matrix, sorted.

    ``slots`` lists the frame for each slice of the volume, bottom (lowest position along the
    normal) first; ``None`` marks a missing slice that the loader fills with blank voxels so that
    distances stay right.
    """

    study_uid: str
    series_uid: str
    modality: str
    description: str
    series_number: int | None
    part: str  # "" for a whole series, else what distinguishes this stack ("localizer", ...)
    instances: tuple[InstanceHeader, ...]
    slots: tuple[FrameHeader | None, ...]
    rows: int
    columns: int
    spacing: tuple[float, float, float]  # (x, y, z) mm
    origin: tuple[float, float, float]
    direction: tuple[tuple[float, float, float], ...]  # 3x3, columns = i, j, k directions
    geometry_known: bool
    warnings: tuple[str, ...]

    @property
    def key(self) -> str:
        """Identifies the stack among all stacks: the series UID plus its part."""
        return f"{self.series_uid}#{self.part}" if self.part else self.series_uid

    @property
    def frame_count(self) -> int:
        return sum(1 for slot in self.slots if slot is not None)

    @property
    def first_instance(self) -> InstanceHeader:
        return self.instances[0]

    @property
    def orientation_label(self) -> str:
        """AXIAL / CORONAL / SAGITTAL / OBLIQUE from the slice normal, or UNKNOWN."""
        if not self.geometry_known:
            return "UNKNOWN"
        normal = np.abs(np.asarray(self.direction)[:, 2])
        axis = int(np.argmax(normal))
        if normal[axis] < math.cos(math.radians(30)):
            return "OBLIQUE"
        return ("SAGITTAL", "CORONAL", "AXIAL")[axis]


@dataclass(frozen=True)
class GroupingResult:
    stacks: tuple[SeriesStack, ...]
    problems: tuple[FileProblem, ...]


def group_series(instances: Iterable[InstanceHeader]) -> GroupingResult:
    """Group image headers into stacks; non-image and unusable files become problems."""
    problems: list[FileProblem] = []
    by_series: dict[tuple[str, str], list[InstanceHeader]] = defaultdict(list)
    for header in instances:
        if not header.has_pixel_data:
            if header.rows > 0 or _is_image_storage(header.sop_class_uid):
                # An image object whose Pixel Data never came: damaged, not a non-image object.
                problems.append(FileProblem(header.path, "image without Pixel Data "
                                            "(damaged, truncated or header-only file)", "corrupt"))
            else:
                what = header.modality or "unknown modality"
                problems.append(FileProblem(header.path, f"not an image ({what} object)",
                                            "not_image"))
            continue
        try:
            check_pixel_description(header)
            check_decoder_available(header)
        except InputFileError as error:
            problems.append(problem_from_error(error))
            continue
        by_series[(header.study_uid, header.series_uid)].append(header)

    stacks: list[SeriesStack] = []
    for headers in by_series.values():
        stacks.extend(_stacks_of_series(headers, problems))
    stacks.sort(key=lambda s: (s.study_uid, s.series_number or 0, s.series_uid, s.part))
    return GroupingResult(tuple(stacks), tuple(problems))


def _is_image_storage(sop_class_uid: str) -> bool:
    from pydicom.uid import UID

    return "Image Storage" in UID(sop_class_uid).name if sop_class_uid else False


# ---------------------------------------------------------------------------- splitting
def _stacks_of_series(
    headers: list[InstanceHeader], problems: list[FileProblem]
) -> list[SeriesStack]:
    by_path = {h.path: h for h in headers}
    groups: dict[tuple, list[FrameHeader]] = defaultdict(list)
    for header in headers:
        for frame in header.frames:
            groups[_split_key(header, frame)].append(frame)

    labels = _part_labels(list(groups))
    stacks = []
    for key, frames in groups.items():
        for sub_label, sub_frames in _split_repeated_positions(frames):
            part = " ".join(p for p in (labels[key], sub_label) if p)
            stacks.append(_build_stack(sub_frames, by_path, part, problems))
    return stacks


def _split_key(header: InstanceHeader, frame: FrameHeader) -> tuple:
    orientation = (
        tuple(round(v, 3) for v in frame.orientation) if frame.orientation is not None else None
    )
    spacing = (
        tuple(round(v, 4) for v in frame.pixel_spacing) if frame.pixel_spacing is not None else None
    )
    return (
        header.is_localizer,
        orientation,
        header.rows,
        header.columns,
        spacing,
        header.samples_per_pixel,
    )


def _part_labels(keys: list[tuple]) -> dict[tuple, str]:
    """Names that tell a radiologist how the stacks of one series differ."""
    if len(keys) == 1:
        return {keys[0]: ""}
    labels = {}
    for n, key in enumerate(keys, start=1):
        localizer, orientation, rows, columns, spacing, _samples = key
        words = []
        if localizer:
            words.append("localizer")
        if len({k[1] for k in keys}) > 1:
            words.append(_orientation_word(orientation))
        if len({(k[2], k[3]) for k in keys}) > 1:
            words.append(f"{rows}x{columns}")
        if len({k[4] for k in keys}) > 1 and spacing is not None:
            words.append(f"{spacing[1]:g}x{spacing[0]:g}mm")
        labels[key] = " ".join(words) or f"part {n}"
    if len(set(labels.values())) < len(labels):  # e.g. two oblique stacks: number them
        labels = {k: f"{v} {n}" for n, (k, v) in enumerate(labels.items(), start=1)}
    return labels


def _orientation_word(orientation: tuple | None) -> str:
    if orientation is None:
        return "no-orientation"
    normal = np.abs(np.cross(orientation[:3], orientation[3:]))
    axis = int(np.argmax(normal))
    if normal[axis] < math.cos(math.radians(30)):
        return "oblique"
    return ("sagittal", "coronal", "axial")[axis]


def _split_repeated_positions(frames: list[FrameHeader]) -> list[tuple[str, list[FrameHeader]]]:
    """Split by acquisition, echo or time when that is what makes positions repeat.

    Splitting by Acquisition Number unconditionally would be wrong: some scanners give every
    slice its own acquisition number. Split only when positions repeat and a split removes it.
    """
    if not _has_duplicates(frames):
        return [("", frames)]
    for attribute, word in (
        ("acquisition_number", "acq"),
        ("echo_number", "echo"),
        ("temporal_position", "time"),
    ):
        values = {getattr(f, attribute) for f in frames}
        if len(values) < 2:
            continue
        parts: dict[object, list[FrameHeader]] = defaultdict(list)
        for frame in frames:
            parts[getattr(frame, attribute)].append(frame)
        if not any(_has_duplicates(p) for p in parts.values()):
            return [
                (f"{word} {value}", parts[value])
                for value in sorted(parts, key=lambda v: (v is None, v if v is not None else 0))
            ]
    return [("", frames)]


def _has_duplicates(frames: list[FrameHeader]) -> bool:
    distances = _distances(frames)
    if distances is None:
        return False
    ordered = np.sort(distances)
    return bool(np.any(np.diff(ordered) < DUPLICATE_TOLERANCE_MM))


def _distances(frames: list[FrameHeader]) -> np.ndarray | None:
    """Position of every frame along the common slice normal, or None without geometry."""
    if any(f.position is None or f.orientation is None for f in frames):
        return None
    normal = _unit_normal(frames[0].orientation)  # type: ignore[arg-type]
    positions = np.array([f.position for f in frames], dtype=np.float64)
    return positions @ normal


def _unit_normal(orientation: tuple[float, ...]) -> np.ndarray:
    row, col = _orthonormal_pair(orientation)
    return np.cross(row, col)


def _orthonormal_pair(orientation: tuple[float, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Row and column cosines made exactly unit and perpendicular (headers round to ~6 digits)."""
    row = np.asarray(orientation[:3], dtype=np.float64)
    col = np.asarray(orientation[3:], dtype=np.float64)
    row /= np.linalg.norm(row) or 1.0
    col = col - row * float(row @ col)
    col /= np.linalg.norm(col) or 1.0
    return row, col


# ---------------------------------------------------------------------------- one stack
def _build_stack(
    frames: list[FrameHeader],
    by_path: dict[str, InstanceHeader],
    part: str,
    problems: list[FileProblem],
) -> SeriesStack:
    warnings: list[str] = []
    first = by_path[frames[0].path]
    distances = _distances(frames)
    if distances is None or not _orientation_valid(frames[0].orientation):
        slots, spacing_z, origin, direction = _unknown_geometry(frames, warnings)
        geometry_known = False
    else:
        order = np.argsort(distances, kind="stable")
        frames = [frames[i] for i in order]
        distances = distances[order]
        frames, distances = _drop_duplicates(frames, distances, problems, warnings)
        slots, spacing_z = _slots_and_spacing(frames, distances, warnings)
        row, col = _orthonormal_pair(frames[0].orientation)  # type: ignore[arg-type]
        normal = np.cross(row, col)
        direction = np.column_stack([row, col, normal])
        origin = tuple(float(v) for v in frames[0].position)  # type: ignore[union-attr]
        _check_tilt(frames, normal, warnings)
        geometry_known = True

    pixel_spacing = frames[0].pixel_spacing
    if pixel_spacing is None or min(pixel_spacing) <= 0:
        warnings.append("no Pixel Spacing: distances are in pixels, not millimetres")
        pixel_spacing = (1.0, 1.0)
    paths_in_stack = {f.path for f in frames}
    instances = tuple(by_path[p] for p in sorted(paths_in_stack))
    return SeriesStack(
        study_uid=first.study_uid,
        series_uid=first.series_uid,
        modality=first.modality,
        description=first.series_description,
        series_number=first.series_number,
        part=part,
        instances=instances,
        slots=tuple(slots),
        rows=first.rows,
        columns=first.columns,
        spacing=(float(pixel_spacing[1]), float(pixel_spacing[0]), float(spacing_z)),
        origin=origin,
        direction=tuple(tuple(float(v) for v in r) for r in direction),
        geometry_known=geometry_known,
        warnings=tuple(warnings),
    )


def _orientation_valid(orientation: tuple[float, ...] | None) -> bool:
    if orientation is None:
        return False
    row = np.asarray(orientation[:3])
    col = np.asarray(orientation[3:])
    return bool(np.linalg.norm(row) > 0.5 and np.linalg.norm(col) > 0.5
                and np.linalg.norm(np.cross(row, col)) > 0.5)


def _unknown_geometry(frames: list[FrameHeader], warnings: list[str]):
    frames = sorted(
        frames, key=lambda f: (f.instance_number is None, f.instance_number or 0, f.path, f.frame)
    )
    if len(frames) > 1 or frames[0].position is None or frames[0].orientation is None:
        warnings.append(
            "no usable Image Position/Orientation (Patient): shown as 2D images in Instance "
            "Number order; no 3D geometry, no measurements across slices"
        )
    origin = tuple(frames[0].position) if frames[0].position is not None else (0.0, 0.0, 0.0)
    if frames[0].orientation is not None and _orientation_valid(frames[0].orientation):
        row, col = _orthonormal_pair(frames[0].orientation)
        direction = np.column_stack([row, col, np.cross(row, col)])
    else:
        direction = np.eye(3)
    thickness = frames[0].slice_thickness
    spacing_z = thickness if thickness and thickness > 0 else 1.0
    return list(frames), spacing_z, origin, direction


def _drop_duplicates(frames, distances, problems, warnings):
    keep_frames = [frames[0]]
    keep_distances = [distances[0]]
    dropped = 0
    for frame, distance in zip(frames[1:], distances[1:], strict=True):
        if distance - keep_distances[-1] < DUPLICATE_TOLERANCE_MM:
            dropped += 1
            kept = keep_frames[-1]
            problems.append(FileProblem(
                frame.path,
                f"duplicate slice position {distance:.2f} mm (same as {_name(kept)}); skipped",
                "duplicate",
            ))
            continue
        keep_frames.append(frame)
        keep_distances.append(distance)
    if dropped:
        warnings.append(f"{dropped} slice(s) at duplicate positions skipped (kept the first)")
    return keep_frames, np.asarray(keep_distances)


def _slots_and_spacing(frames, distances, warnings):
    """Slice slots (with ``None`` for missing slices) and the slice spacing in mm."""
    if len(frames) == 1:
        thickness = frames[0].slice_thickness
        return list(frames), (thickness if thickness and thickness > 0 else 1.0)
    gaps = np.diff(distances)
    nominal = float(np.median(gaps))
    multiples = np.rint(gaps / nominal)
    regular_multiples = np.abs(gaps - multiples * nominal) <= max(SPACING_TOLERANCE_MM,
                                                                    0.05 * nominal)
    missing = multiples >= 2
    if np.any(missing) and np.all(regular_multiples):
        slots: list[FrameHeader | None] = [frames[0]]
        descriptions = []
        for n, gap_multiple in enumerate(multiples.astype(int)):
            if gap_multiple >= 2:
                slots.extend([None] * (gap_multiple - 1))
                descriptions.append(
                    f"{gap_multiple - 1} between {distances[n]:.2f} and {distances[n + 1]:.2f} mm"
                )
            slots.append(frames[n + 1])
        warnings.append(
            f"missing slice(s): {'; '.join(descriptions)} (nominal spacing {nominal:.3f} mm); "
            "shown as blank slices so distances stay right"
        )
        deviation = float(np.max(np.abs(gaps - multiples * nominal)))
        if deviation > SPACING_TOLERANCE_MM:
            warnings.append(
                f"slice spacing varies: nominal {nominal:.3f} mm, maximum deviation "
                f"{deviation:.3f} mm"
            )
        return slots, nominal

    deviation = float(np.max(np.abs(gaps - nominal)))
    # Mean spacing keeps the stack's total extent exact when spacing is irregular.
    mean_spacing = float((distances[-1] - distances[0]) / (len(distances) - 1))
    if deviation > SPACING_TOLERANCE_MM:
        warnings.append(
            f"irregular slice spacing: {float(gaps.min()):.3f} to {float(gaps.max()):.3f} mm "
            f"(nominal {nominal:.3f} mm, maximum deviation {deviation:.3f} mm); volume uses the "
            f"mean {mean_spacing:.3f} mm, so positions between slices are approximate"
        )
    return list(frames), mean_spacing


def _check_tilt(frames, normal, warnings):
    if len(frames) < 2:
        return
    first = np.asarray(frames[0].position)
    last = np.asarray(frames[-1].position)
    delta = last - first
    length = float(np.linalg.norm(delta))
    if length == 0:
        return
    cosine = min(1.0, abs(float(delta @ normal)) / length)
    angle = math.degrees(math.acos(cosine))
    if angle > TILT_TOLERANCE_DEG:
        in_plane = float(np.linalg.norm(delta - (delta @ normal) * normal))
        warnings.append(
            f"gantry/detector tilt {angle:.2f} degrees: slices shift {in_plane:.1f} mm in-plane "
            "from first to last; shown without tilt correction"
        )


def _name(frame: FrameHeader) -> str:
    from pathlib import Path

    name = Path(frame.path).name
    return f"{name} frame {frame.frame + 1}" if frame.frame else name
