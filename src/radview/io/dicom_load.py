"""Decode a :class:`SeriesStack` into a :class:`Volume`, in bounded memory, in parallel.

Memory: the output array is allocated once (after checking that it fits) and every slice is
decoded straight into it; at most a few frames are in flight besides it. Native files are read
with ``readinto`` at the Pixel Data offset (threads: the read releases the GIL). Compressed
frames are decoded in worker processes because the codecs hold the GIL; with two cores that
halves the time of a JPEG 2000 series.

Modality LUT: ``value = slope * stored + intercept`` per frame. Voxels keep an integer type
when every slope is 1 and every intercept an integer and the whole stored range fits (int16 for
the usual CT); otherwise they are float32. MONOCHROME1 values are kept as they are (so
measurements stay true); the Volume says to display them inverted.
"""

from __future__ import annotations

import multiprocessing
import os
import time
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import (
    FIRST_COMPLETED,
    BrokenExecutor,
    Executor,
    Future,
    ProcessPoolExecutor,
    ThreadPoolExecutor,
    wait,
)
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import psutil
from pydicom.uid import UID, DeflatedExplicitVRLittleEndian

from radview.core.errors import ImageTooLargeError, InputFileError, LoadCancelled
from radview.core.volume import Rescale, Volume, VolumeSource
from radview.io.decoder_pool import DecoderPool
from radview.io.dicom_header import FileProblem, FrameHeader, InstanceHeader
from radview.io.dicom_pixels import (
    decode_frames,
    is_native_readable,
    pixel_format,
    read_dataset_for_modality_lut,
    read_native_frames,
)
from radview.io.dicom_scan import problem_from_error
from radview.io.dicom_series import SeriesStack

__all__ = ["LoadResult", "load_stack", "plan_voxel_type"]

ProgressCallback = Callable[[int, int], None]
CancelCallback = Callable[[], bool]
SliceCallback = Callable[[int, np.ndarray], None]

#: Below this many compressed frames, starting worker processes costs more than it saves.
_PROCESS_POOL_MIN_FRAMES = 16
#: Frames per task for native reads: big enough to amortise overhead, small enough to stream.
_NATIVE_BATCH = 8
#: Frames per task for compressed multi-frame files (each task parses the file once).
_CODEC_BATCH = 16


@dataclass
class LoadResult:
    volume: Volume
    problems: list[FileProblem] = field(default_factory=list)
    seconds: float = 0.0


@dataclass(frozen=True)
class _Task:
    header: InstanceHeader
    frames: tuple[int, ...]
    slots: tuple[int, ...]
    native: bool


def plan_voxel_type(stack: SeriesStack) -> tuple[np.dtype, bool]:
    """(voxel dtype, whether a rescale must be applied) for the whole stack.

    With integer rescales the voxel type is the smallest of int16/uint16/int32 that holds the
    whole stored range after the intercept, except that 16-bit data never widens to int32: a
    signed 16-bit CT with intercept -1024 could in theory reach -33792, but real scans stay far
    inside int16, and int32 would double the memory of every CT. The rare voxels outside int16
    are clipped and counted in a warning.
    """
    formats = {pixel_format(h) for h in stack.instances}
    frames = [f for f in stack.slots if f is not None]
    if any(h.has_modality_lut_sequence for h in stack.instances):
        return np.dtype(np.float32), True
    identity = all(f.rescale_slope == 1.0 and f.rescale_intercept == 0.0 for f in frames)
    if identity and len({f.stored_dtype for f in formats}) == 1:
        return next(iter(formats)).stored_dtype, False
    integer_rescale = all(
        f.rescale_slope == 1.0 and float(f.rescale_intercept).is_integer() for f in frames
    )
    if not integer_rescale:
        return np.dtype(np.float32), True
    lo = min(fmt.stored_min for fmt in formats) + min(int(f.rescale_intercept) for f in frames)
    hi = max(fmt.stored_max for fmt in formats) + max(int(f.rescale_intercept) for f in frames)
    for candidate in (np.int16, np.uint16, np.int32):
        info = np.iinfo(candidate)
        if info.min <= lo and hi <= info.max:
            if candidate is np.int32 and max(f.stored_dtype.itemsize for f in formats) <= 2:
                return np.dtype(np.int16), True
            return np.dtype(candidate), True
    return np.dtype(np.float32), True


def load_stack(
    stack: SeriesStack,
    *,
    progress: ProgressCallback | None = None,
    cancel: CancelCallback | None = None,
    on_slice: SliceCallback | None = None,
    on_start: Callable[[Volume], None] | None = None,
    workers: int | None = None,
    codec_pool: DecoderPool | None = None,
) -> LoadResult:
    """Decode every slice of ``stack`` into a new Volume.

    ``on_slice(index, image)`` is called (in the calling thread) as soon as each slice is in the
    volume, so a viewer can show the first slice long before the last one is decoded.
    ``codec_pool`` lends a long-lived process pool for compressed frames (started only if this
    series needs it); without it a pool is started for this call.
    ``on_start(volume)`` receives, before decoding starts, a provisional Volume whose voxels are
    the array being filled (blank until each slice lands); the returned Volume shares it.
    ``progress(done, total)`` is throttled to 20 calls per second; ``cancel()`` is polled
    between slices and raises :class:`LoadCancelled`. A frame that cannot be decoded is left
    blank and reported in ``problems`` and the volume's warnings; the rest still loads.
    """
    started = time.perf_counter()
    dtype, needs_rescale = plan_voxel_type(stack)
    shape = (len(stack.slots), stack.rows, stack.columns)
    _check_fits_in_memory(stack, shape, dtype)
    voxels = np.empty(shape, dtype=dtype)
    blank_value = _blank_value(stack, dtype)
    warnings = list(stack.warnings)
    problems: list[FileProblem] = []
    if any(h.samples_per_pixel == 3 for h in stack.instances):
        warnings.append("colour image shown as greyscale luminance")

    if on_start is not None:
        voxels.fill(blank_value)  # a viewer shows this array while it fills: no garbage
        on_start(_volume(stack, voxels, tuple(warnings)))
    else:
        for slot, frame in enumerate(stack.slots):
            if frame is None:
                voxels[slot] = blank_value

    tasks = _plan_tasks(stack)
    by_path = {h.path: h for h in stack.instances}
    total = stack.frame_count
    done = 0
    last_report = 0.0
    workers = workers or os.cpu_count() or 1
    codec_frames = sum(len(t.frames) for t in tasks if not t.native)
    use_processes = workers > 1 and codec_frames >= _PROCESS_POOL_MIN_FRAMES
    clipped = 0

    decoders = _Decoders(codec_pool, workers, use_processes)
    with ThreadPoolExecutor(workers) as io_pool:
        # future -> (task, the decoder pool it went to, whether it ran alone)
        pending: dict[Future, tuple[_Task, Executor | None, bool]] = {}
        queue = list(reversed(tasks))
        max_in_flight = workers * 4  # bounds memory held by decoded-but-unplaced frames
        # After a codec crash, compressed files are decoded one at a time, so the next crash
        # names its file exactly and innocent files are decoded again instead of left blank.
        isolating = False
        try:
            while queue or pending:
                while queue and len(pending) < (1 if isolating else max_in_flight):
                    task = queue.pop()
                    pool = None if task.native else decoders.get()
                    try:
                        future = _submit(task, pool, io_pool, voxels)
                    except BrokenExecutor:
                        queue.append(task)
                        decoders.restart(pool)
                        isolating = True
                        continue
                    pending[future] = (task, pool, isolating)
                finished, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in finished:
                    task, pool, alone = pending.pop(future)
                    if isinstance(future.exception(), BrokenExecutor) and not alone:
                        queue.append(task)  # maybe innocent: decode it again, alone
                        decoders.restart(pool)
                        isolating = True
                        continue
                    if alone and isinstance(future.exception(), BrokenExecutor):
                        decoders.restart(pool)  # this file crashed the decoder by itself
                    images = _task_result(future, task, by_path, problems, warnings)
                    for slot, image in zip(task.slots, images, strict=True):
                        frame = stack.slots[slot]
                        assert frame is not None
                        if image is None:
                            voxels[slot] = blank_value
                        else:
                            if _is_slot_memory(image, voxels, slot):
                                image = voxels[slot]  # read in place; rescale in place too
                            clipped += _place(voxels, slot, image, frame,
                                              by_path[task.header.path], needs_rescale)
                        done += 1
                        if on_slice is not None:
                            on_slice(slot, voxels[slot])
                    if cancel is not None and cancel():
                        raise LoadCancelled(f"loading {stack.description or stack.series_uid} "
                                            "cancelled")
                    now = time.monotonic()
                    if progress is not None and (now - last_report >= 0.05 or done == total):
                        progress(done, total)
                        last_report = now
        except BaseException:
            for future in pending:
                future.cancel()
            raise
        finally:
            decoders.close()

    if clipped:
        info = np.iinfo(dtype)
        warnings.append(f"{clipped} voxel(s) outside {info.min}..{info.max} clipped")
    volume = _volume(stack, voxels, tuple(warnings))
    return LoadResult(volume, problems, time.perf_counter() - started)


def _volume(stack: SeriesStack, voxels: np.ndarray, warnings: tuple[str, ...]) -> Volume:
    return Volume(
        voxels=voxels,
        spacing=stack.spacing,
        origin=stack.origin,
        direction=np.asarray(stack.direction),
        modality=stack.modality,
        rescale=_rescale_info(stack),
        source=VolumeSource(
            kind="dicom",
            paths=tuple(h.path for h in stack.instances),
            study_uid=stack.study_uid,
            series_uid=stack.series_uid,
            description=" ".join(p for p in (stack.description, stack.part) if p),
            slice_files=tuple((f.path, f.frame) if f is not None else ("", 0)
                              for f in stack.slots),
        ),
        geometry_known=stack.geometry_known,
        display_inverted=any(h.photometric == "MONOCHROME1" for h in stack.instances),
        warnings=warnings,
    )


# ---------------------------------------------------------------------------- planning
def _plan_tasks(stack: SeriesStack) -> list[_Task]:
    """One task per file for compressed data; batches of slices for native files."""
    by_path: dict[str, list[tuple[int, FrameHeader]]] = defaultdict(list)
    for slot, frame in enumerate(stack.slots):
        if frame is not None:
            by_path[frame.path].append((slot, frame))
    headers = {h.path: h for h in stack.instances}
    # Order tasks by their first slot so slices arrive bottom-up, the order a viewer shows.
    ordered = sorted(by_path.items(), key=lambda item: item[1][0][0])
    tasks = []
    for path, entries in ordered:
        header = headers[path]
        native = is_native_readable(header)
        # Native reads stream in small batches; a compressed multi-frame file is split too,
        # so that both worker processes decode it.
        batch = _NATIVE_BATCH if native else _CODEC_BATCH
        for start in range(0, len(entries), batch):
            chunk = entries[start:start + batch]
            tasks.append(_Task(header, tuple(f.frame for _, f in chunk),
                               tuple(s for s, _ in chunk), native))
    return tasks


def _check_fits_in_memory(stack: SeriesStack, shape: tuple[int, int, int], dtype: np.dtype):
    needed = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    available = psutil.virtual_memory().available
    if needed > 0.8 * available:
        raise ImageTooLargeError(
            stack.first_instance.path,
            f"series needs {needed / 2**20:.0f} MB but only {available / 2**20:.0f} MB are free; "
            "refused before allocating",
        )


def _blank_value(stack: SeriesStack, dtype: np.dtype) -> float:
    """What missing/undecodable slices show: air for CT, else the lowest representable value."""
    if stack.modality == "CT":
        return -1024 if np.issubdtype(dtype, np.signedinteger) or dtype.kind == "f" else 0
    return 0


def _rescale_info(stack: SeriesStack) -> Rescale:
    """The (first frame's) rescale the loader applied; voxels hold modality values."""
    first = next(f for f in stack.slots if f is not None)
    rescale_type = stack.first_instance.rescale_type
    if stack.modality == "CT" and rescale_type in ("", "HU"):
        unit = "HU"
    elif stack.modality == "RTDOSE":
        unit = "Gy"
    else:
        unit = "" if rescale_type == "US" else rescale_type  # US = unspecified
    return Rescale(first.rescale_slope, first.rescale_intercept, unit, applied=True)


# ---------------------------------------------------------------------------- execution
class _Decoders:
    """The pool compressed frames go to: borrowed (kept alive) or owned by this load."""

    def __init__(self, borrowed: DecoderPool | None, workers: int, use_processes: bool) -> None:
        self._borrowed = borrowed if use_processes else None
        self._workers = workers
        self._use_processes = use_processes
        self._own: Executor | None = None

    def get(self) -> Executor:
        if self._borrowed is not None:
            return self._borrowed.executor()
        if self._own is None:
            self._own = _executor(self._workers, self._use_processes)
        return self._own

    def restart(self, broken: Executor | None) -> None:
        """Replace the pool that ``broken`` was, unless that already happened."""
        if self._borrowed is not None:
            return  # DecoderPool.executor() replaces a broken pool itself
        if self._own is not None and self._own is broken:
            self._own.shutdown(wait=False, cancel_futures=True)
            self._own = None

    def close(self) -> None:
        if self._own is not None:
            self._own.shutdown(wait=True, cancel_futures=True)
            self._own = None


def _executor(workers: int, use_processes: bool) -> Executor:
    if use_processes:
        # "spawn": forking a process that runs Qt or other threads is unsafe.
        context = multiprocessing.get_context("spawn")
        return ProcessPoolExecutor(max_workers=workers, mp_context=context)
    return ThreadPoolExecutor(1)  # a few compressed frames: not worth starting processes


def _is_slot_memory(image: np.ndarray, voxels: np.ndarray, slot: int) -> bool:
    """True when ``image`` is the volume's own slice (the native path read straight into it)."""
    return image.__array_interface__["data"][0] == voxels[slot].__array_interface__["data"][0]


def _submit(task: _Task, codec_pool: Executor | None, io_pool: Executor,
            voxels: np.ndarray) -> Future:
    if task.native:
        fmt = pixel_format(task.header)
        # Read straight into the volume when the stored type is the voxel type; inversion and
        # rescale then run in place on that slice.
        direct = voxels.dtype == fmt.stored_dtype
        out = [voxels[slot] for slot in task.slots] if direct else None
        return io_pool.submit(read_native_frames, task.header, list(task.frames), out)
    deflated = UID(task.header.transfer_syntax_uid) == DeflatedExplicitVRLittleEndian
    assert codec_pool is not None
    return codec_pool.submit(
        decode_frames, task.header.path, list(task.frames), task.header.number_of_frames,
        deflated, task.header.photometric == "PALETTE COLOR",
    )


def _task_result(future, task, by_path, problems, warnings) -> list[np.ndarray | None]:
    try:
        return future.result()
    except InputFileError as error:
        problems.append(problem_from_error(error))
        slots = ", ".join(str(s + 1) for s in task.slots[:5])
        warnings.append(f"{Path(error.path).name}: {error.reason}; slice(s) {slots} left blank")
        return [None] * len(task.slots)
    except BrokenExecutor:
        # A codec crashed its worker process: that is why codecs run in processes. The
        # frames stay blank and the file is named; the application keeps running.
        problems.append(FileProblem(task.header.path, "the decoder crashed on this file",
                                    "corrupt"))
        warnings.append(f"{Path(task.header.path).name}: the decoder crashed on this file; "
                        "slice(s) left blank")
        return [None] * len(task.slots)
    except OSError as error:
        problems.append(FileProblem(task.header.path, f"cannot read ({error.strerror})",
                                    "unreadable"))
        warnings.append(f"{Path(task.header.path).name}: cannot read; slice(s) left blank")
        return [None] * len(task.slots)


def _place(voxels, slot, image, frame: FrameHeader, header: InstanceHeader,
           needs_rescale: bool) -> int:
    """Put one frame of stored values into the volume, applying the modality LUT.

    ``image`` may already be the volume's own slice (native reads land there directly); the
    work is then done in place. Returns how many voxels had to be clipped to the voxel type.
    """
    target = voxels[slot]
    if image.shape != target.shape:
        raise InputFileError(header.path, f"frame is {image.shape}, series is {target.shape}")
    if header.has_modality_lut_sequence:
        target[...] = _apply_modality_lut_sequence(header.path, image)
        return 0
    if not needs_rescale:
        if image is not target:
            target[...] = image
        return 0
    if voxels.dtype.kind == "f":
        np.multiply(image, np.float32(frame.rescale_slope), out=target, casting="unsafe")
        target += np.float32(frame.rescale_intercept)
        return 0
    intercept = np.int64(int(frame.rescale_intercept))
    info = np.iinfo(voxels.dtype)
    lowest, highest = int(image.min()) + int(intercept), int(image.max()) + int(intercept)
    if info.min <= lowest and highest <= info.max:
        np.add(image, intercept, out=target, casting="unsafe")
        return 0
    shifted = image.astype(np.int64) + intercept
    clipped = int(np.count_nonzero((shifted < info.min) | (shifted > info.max)))
    np.clip(shifted, info.min, info.max, out=shifted)
    target[...] = shifted
    return clipped


def _apply_modality_lut_sequence(path: str, image: np.ndarray) -> np.ndarray:
    from pydicom.pixels import apply_modality_lut

    dataset = read_dataset_for_modality_lut(path)
    return apply_modality_lut(image, dataset).astype(np.float32)
