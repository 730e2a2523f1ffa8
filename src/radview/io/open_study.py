"""Open what a user points at: pick the series to show, load it, and load a label map onto it.

One logic function per user action, so the viewer's handlers stay thin (read controls, call
this, show the result or the error) and the command line can do exactly the same.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from radview.core.errors import (
    InputFileError,
    LabelMapError,
    LoadCancelled,
    NothingToOpenError,
    RadviewError,
)
from radview.core.labelmap import LabelMap, LiverLabel
from radview.core.volume import Volume
from radview.io.decoder_pool import DecoderPool
from radview.io.dicom_header import FileProblem, InstanceHeader
from radview.io.dicom_load import load_stack
from radview.io.dicom_scan import problem_from_error, read_instance_header
from radview.io.dicom_series import SeriesStack, group_series
from radview.io.discover import discover
from radview.io.volume_files import read_volume_file

__all__ = ["OpenedImage", "open_images", "open_series_headers", "load_label_map"]

ProgressCallback = Callable[[int, int], None]
CancelCallback = Callable[[], bool]


@dataclass
class OpenedImage:
    volume: Volume
    problems: list[FileProblem] = field(default_factory=list)
    #: the other stacks found (another series, a localizer): the user may open them next
    other_stacks: list[SeriesStack] = field(default_factory=list)
    seconds: float = 0.0


def open_images(
    paths: Iterable[Path | str],
    *,
    progress: ProgressCallback | None = None,
    cancel: CancelCallback | None = None,
    on_start: Callable[[Volume], None] | None = None,
    codec_pool: DecoderPool | None = None,
) -> OpenedImage:
    """Find everything under ``paths`` and load the series a radiologist most likely wants.

    That is the DICOM stack with the most slices (localizers last), else the first volume file.
    ``progress`` covers the header scan, then the decoding, as ``(done, total)`` of each phase.
    """
    started = time.perf_counter()
    found = discover(paths, progress=progress, cancel=cancel)
    stacks = sorted(found.stacks, key=lambda s: ("localizer" in s.part, -len(s.slots)))
    problems = list(found.problems)
    if stacks:
        chosen, others = stacks[0], stacks[1:]
        result = load_stack(chosen, progress=progress, cancel=cancel, on_start=on_start,
                            codec_pool=codec_pool)
        return OpenedImage(result.volume, problems + result.problems, others,
                           time.perf_counter() - started)
    for path in found.volume_files:
        try:
            volume = read_volume_file(path)
        except RadviewError as error:
            problems.append(FileProblem(str(path), getattr(error, "reason", str(error))))
            continue
        if cancel is not None and cancel():  # reading a large NIfTI cannot be interrupted
            raise LoadCancelled("opening cancelled")
        if on_start is not None:
            on_start(volume)
        return OpenedImage(volume, problems, [], time.perf_counter() - started)
    raise NothingToOpenError(_nothing_message(paths, problems))


def open_series_headers(
    headers: list[InstanceHeader],
    *,
    progress: ProgressCallback | None = None,
    cancel: CancelCallback | None = None,
    on_start: Callable[[Volume], None] | None = None,
    codec_pool: DecoderPool | None = None,
) -> OpenedImage:
    """Load a series chosen in the study browser from its indexed headers (no re-scan)."""
    started = time.perf_counter()
    headers, stale_problems = _refresh_changed(headers)
    grouping = group_series(headers)
    stacks = sorted(grouping.stacks, key=lambda s: ("localizer" in s.part, -len(s.slots)))
    if not stacks:
        raise NothingToOpenError(_nothing_message([h.path for h in headers[:1]],
                                                  list(grouping.problems)))
    result = load_stack(stacks[0], progress=progress, cancel=cancel, on_start=on_start,
                        codec_pool=codec_pool)
    return OpenedImage(result.volume, stale_problems + list(grouping.problems) + result.problems,
                       stacks[1:], time.perf_counter() - started)


def _refresh_changed(
    headers: list[InstanceHeader],
) -> tuple[list[InstanceHeader], list[FileProblem]]:
    """Re-read the headers of files changed since they were indexed.

    The index stores each file's Pixel Data offset; a file rewritten since (same name, new
    header length) would otherwise be read at the wrong offset and show wrong pixels.
    """
    fresh: list[InstanceHeader] = []
    problems: list[FileProblem] = []
    for header in headers:
        try:
            info = os.stat(header.path)
        except OSError as error:
            problems.append(FileProblem(header.path, f"cannot read file ({error.strerror}); "
                                        "re-import the folder", "unreadable"))
            continue
        if (info.st_size, info.st_mtime_ns) == (header.file_size, header.mtime_ns):
            fresh.append(header)
            continue
        try:
            fresh.append(read_instance_header(header.path))
        except InputFileError as error:
            problems.append(problem_from_error(error))
    return fresh, problems


def load_label_map(path: Path | str, reference: Volume) -> LabelMap:
    """A label map file on ``reference``'s grid (resampled, nearest neighbour, if needed)."""
    labels = read_volume_file(path)
    voxels = labels.voxels
    if voxels.dtype.kind == "f" and not np.all(np.equal(np.mod(voxels, 1), 0)):
        raise LabelMapError(path, "holds fractional values; a label map holds integer ids")
    if voxels.size and (voxels.min() < 0 or voxels.max() > 255):
        raise LabelMapError(path, f"values {voxels.min()}..{voxels.max()} outside 0..255")
    labels = labels.with_voxels(voxels.astype(np.uint8, copy=False))
    on_grid = LabelMap(labels)
    if not on_grid.matches(reference):
        labels = _resample_nearest(labels, reference, path)
    values = {int(v) for v in np.unique(labels.voxels)} - {0}
    if values <= {int(LiverLabel.LIVER), int(LiverLabel.TUMOUR)}:
        return LabelMap.liver(labels)
    return LabelMap(labels)


def _resample_nearest(labels: Volume, reference: Volume, path: Path | str) -> Volume:
    import SimpleITK as sitk

    from radview.io.convert import volume_from_sitk, volume_to_sitk

    resampled = sitk.Resample(volume_to_sitk(labels), volume_to_sitk(reference),
                              sitk.Transform(), sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)
    result = volume_from_sitk(resampled).voxels
    if not result.any():
        raise LabelMapError(path, "does not overlap the displayed image (different patient "
                                  "space or wrong file)")
    return reference.with_voxels(result, modality="SEG", warnings=(
        "label map resampled (nearest neighbour) onto the image grid",))


def _nothing_message(paths: Iterable[Path | str], problems: list[FileProblem]) -> str:
    names = ", ".join(str(p) for p in list(paths)[:3])
    if not problems:
        return f"{names}: no DICOM series or volume files found"
    shown = "; ".join(f"{Path(p.path).name}: {p.reason}" for p in problems[:3])
    more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
    return f"{names}: nothing could be opened — {shown}{more}"
