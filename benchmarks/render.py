"""Render benchmark: ``SliceView`` slice changes against pyqtgraph's stock ``ImageView``.

Usage (from the repository root)::

    python -m benchmarks.render --out build/bench/render.json [--matrix 512] [--slices 500]
        [--size 800] [--frames 300] [--warmup 30]

Runs offscreen (``QT_QPA_PLATFORM=offscreen`` unless already set). The study is the abdomen
phantom: int16 HU plus a uint8 liver/tumour label map, ``matrix`` x ``matrix`` x ``slices``
(at most 100 distinct slices are rendered; longer stacks repeat each one, which costs the
viewer the same). Every contender shows the label overlay at 45 % opacity and has a graphics
viewport of ``size`` x ``size`` pixels.

Contenders, all in this one process and run:

* ``slice_view_<plane>``: radview's :class:`SliceView` on a :class:`ViewerState`; a frame is
  ``state.set_slice`` (slice cut, window lookup, overlay, crosshair, text, slice bar).
* ``image_view_axial`` (the named peer): ``pg.ImageView`` holding the whole volume with fixed
  levels, a frame is ``setCurrentIndex`` -- its documented way to page through a stack --
  plus ``setImage`` of the label slice on an overlay ``ImageItem`` with the same RGBA table.

Two timings per frame (median and 95th percentile, wall clock and this thread's CPU time):

* ``forced``: the change plus a synchronous ``repaint()`` of the graphics viewport (one full
  paint, counted). Queued follow-up work is drained untimed after each frame.
* ``event_loop``: the change plus one ``processEvents()`` -- what the application's event loop
  does; everything it paints (slice bar, ImageView's histogram) is included.

``reslice_only`` times the numpy part of a frame (``plane_slice`` view -> display pixels and
overlay pixels into kept buffers). ``display_paths`` times three ways to show a windowed int16
slice in a pyqtgraph ``ImageItem`` -- levels on the raw data, ``window_to_uint8`` with levels,
and radview's lookup table to RGB32 -- which is how the viewer's choice was made.

The issue's targets are evaluated into the JSON (``targets``, each with ``pass``); a failed
target is printed as ``FAIL`` but the exit status stays 0 (a crash does not).
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import numpy as np

from benchmarks.common import machine_info, package_versions, publish, target

__all__ = ["main", "make_study", "run_benchmark"]

AXIAL_MEDIAN_TARGET_MS = 4.0
RESLICE_FRAME_TARGET_MS = 5.0
OVERLAY_OPACITY = 0.45
_MAX_DISTINCT_SLICES = 100


# ============================================================================ study
def make_study(matrix: int, slices: int):
    """(CT int16 Volume, label Volume uint8): the phantom, repeated along z to ``slices``."""
    from radview.core.phantom import make_abdomen_phantom

    distinct = min(slices, _MAX_DISTINCT_SLICES)
    repeat = math.ceil(slices / distinct)
    thickness = 0.625
    pixel_spacing = round(0.78 * 512 / matrix, 4)
    phantom = make_abdomen_phantom(matrix, distinct, seed=0, pixel_spacing=pixel_spacing,
                                   slice_thickness=thickness * repeat)
    ct_voxels = np.repeat(phantom.ct.voxels, repeat, axis=0)[:slices]
    label_voxels = np.repeat(phantom.labels.voxels, repeat, axis=0)[:slices]
    geometry = {
        "spacing": (pixel_spacing, pixel_spacing, thickness),
        "origin": (phantom.ct.origin[0], phantom.ct.origin[1], -(slices - 1) / 2.0 * thickness),
    }
    ct = replace(phantom.ct, voxels=np.ascontiguousarray(ct_voxels), **geometry)
    labels = replace(phantom.labels, voxels=np.ascontiguousarray(label_voxels), **geometry)
    return ct, labels


# ============================================================================ timing
class _PaintCounter:
    """Counts paint events of a widget (proves a frame was really painted)."""

    def __init__(self, widget) -> None:
        from PySide6 import QtCore

        class Filter(QtCore.QObject):
            count = 0

            def eventFilter(self, watched, event):
                if event.type() == QtCore.QEvent.Type.Paint:
                    Filter.count += 1
                return False

        self._filter = Filter()
        self._filter_type = Filter
        widget.installEventFilter(self._filter)

    @property
    def count(self) -> int:
        return self._filter_type.count


def _summary(wall_ms: list[float], cpu_ms: list[float], paints: int) -> dict:
    return {
        "frames": len(wall_ms),
        "median_ms": round(statistics.median(wall_ms), 3),
        "p95_ms": round(float(np.percentile(wall_ms, 95)), 3),
        "mean_ms": round(statistics.fmean(wall_ms), 3),
        "cpu_median_ms": round(statistics.median(cpu_ms), 3),
        "cpu_p95_ms": round(float(np.percentile(cpu_ms, 95)), 3),
        "paints_per_frame": round(paints / len(wall_ms), 3),
    }


def _time_frames(app, change: Callable[[int], None], count: int, viewport, frames: int,
                 warmup: int) -> dict:
    """``forced`` and ``event_loop`` timings of ``change(slice)`` walking through the stack."""
    counter = _PaintCounter(viewport)
    results = {}
    for mode in ("forced", "event_loop"):
        wall, cpu, paints = [], [], 0
        app.processEvents()
        for frame in range(-warmup, frames):
            index = (frame + warmup) % count
            before = counter.count
            t0, c0 = time.perf_counter(), time.thread_time()
            change(index)
            if mode == "forced":
                viewport.repaint()
            else:
                app.processEvents()
            t1, c1 = time.perf_counter(), time.thread_time()
            timed_paints = counter.count - before
            if mode == "forced":
                app.processEvents()  # drain queued work untimed (it may paint again)
            if frame >= 0:
                wall.append((t1 - t0) * 1000)
                cpu.append((c1 - c0) * 1000)
                paints += timed_paints
        results[mode] = _summary(wall, cpu, paints)
    return results


def _fit_viewport(app, widget, viewport, size: int) -> None:
    """Resize ``widget`` so that its graphics ``viewport`` is ``size`` x ``size``."""
    widget.resize(size, size)
    widget.show()
    app.processEvents()
    for _ in range(3):
        dw, dh = size - viewport.width(), size - viewport.height()
        if dw == dh == 0:
            break
        widget.resize(widget.width() + dw, widget.height() + dh)
        app.processEvents()


# ============================================================================ contenders
def bench_slice_view(app, ct, labels, plane, size: int, frames: int, warmup: int) -> dict:
    from radview.core.labelmap import LabelMap
    from radview.core.viewer_state import ViewerState
    from radview.viewer.slice_view import SliceView

    state = ViewerState(overlay_opacity=OVERLAY_OPACITY)
    view = SliceView(state, plane)
    state.show_volume(ct)
    state.set_labels(LabelMap.liver(labels))
    viewport = view.graphics_view.viewport()
    _fit_viewport(app, view, viewport, size)
    count = ct.plane_geometry(plane).slice_count

    def change(index: int) -> None:
        state.set_slice(plane, index)

    result = _time_frames(app, change, count, viewport, frames, warmup)
    result["viewport"] = [viewport.width(), viewport.height()]
    result["image_shape"] = list(ct.plane_slice(plane, 0).shape)
    view.close()
    view.deleteLater()
    app.processEvents()
    return result


def bench_image_view(app, ct, labels, size: int, frames: int, warmup: int) -> dict:
    import pyqtgraph as pg

    from radview.core.labelmap import LabelMap
    from radview.core.volume import ViewPlane
    from radview.core.windowing import window_for

    window = window_for(ct)
    # ImageView pages through axis 0 of a (t, y, x) array: the stored axial slices. Flip them
    # into display orientation once, outside the timing, so both show the same pixels.
    geometry = ct.plane_geometry(ViewPlane.AXIAL)
    stack = ct.voxels[::-1] if geometry.normal_flipped else ct.voxels
    label_stack = labels.voxels[::-1] if geometry.normal_flipped else labels.voxels
    lut = LabelMap.liver(labels).lookup_table()
    view = pg.ImageView()
    view.setImage(stack, autoRange=True, autoLevels=False, levels=(window.low, window.high),
                  autoHistogramRange=False)
    overlay = pg.ImageItem(axisOrder="row-major")
    overlay.setOpacity(OVERLAY_OPACITY)
    overlay.setImage(label_stack[0], lut=lut, levels=(0, 255), autoLevels=False)
    view.addItem(overlay)
    viewport = view.ui.graphicsView.viewport()
    _fit_viewport(app, view, viewport, size)
    view.autoRange()

    def change(index: int) -> None:
        view.setCurrentIndex(index)
        overlay.setImage(label_stack[index], lut=lut, levels=(0, 255), autoLevels=False)

    result = _time_frames(app, change, stack.shape[0], viewport, frames, warmup)
    result["viewport"] = [viewport.width(), viewport.height()]
    result["how"] = ("pg.ImageView.setImage(volume, levels) once; per frame setCurrentIndex(i) "
                     "+ overlay ImageItem.setImage(labels[i], lut=RGBA table, levels=(0, 255))")
    view.close()
    view.deleteLater()
    app.processEvents()
    return result


def bench_reslice_only(ct, labels, plane, frames: int) -> dict:
    """The numpy part of a frame, split: image (``plane_slice`` view -> RGB32 through the
    window table) and overlay (label slice -> ARGB32), the latter for the whole slice and for
    the box where labels exist (what ``SliceView`` cuts)."""
    from radview.core.labelmap import LabelMap
    from radview.core.windowing import window_for
    from radview.viewer.slice_view import DisplayTable, label_bounds, label_table_argb32

    table, window = DisplayTable(), window_for(ct)
    label_lut = label_table_argb32(LabelMap.liver(labels))
    geometry = ct.plane_geometry(plane)
    shape = ct.plane_slice(plane, 0).shape
    bounds = label_bounds(labels.voxels)
    # The box in display rows/columns: cut the plane from an array marking it (on every
    # slice along the plane's normal, so that any slice shows it).
    marker = np.zeros(ct.shape, np.uint8)
    if bounds is not None:
        box_3d = list(bounds)
        box_3d[geometry.normal_axis] = slice(None)
        marker[tuple(box_3d)] = 1
    inside = np.argwhere(ct.plane_slice(plane, 0, marker))
    box = (slice(0, 0), slice(0, 0)) if inside.size == 0 else (
        slice(inside[:, 0].min(), inside[:, 0].max() + 1),
        slice(inside[:, 1].min(), inside[:, 1].max() + 1))
    image_out, label_out = np.empty(shape, np.uint32), np.empty(shape, np.uint32)
    box_out = np.empty((box[0].stop - box[0].start, box[1].stop - box[1].start), np.uint32)

    def image(index: int) -> None:
        table.apply(ct.plane_slice(plane, index), window, False, image_out)

    def labels_full(index: int) -> None:
        np.take(label_lut, ct.plane_slice(plane, index, labels.voxels), out=label_out,
                mode="wrap")

    def labels_box(index: int) -> None:
        np.take(label_lut, ct.plane_slice(plane, index, labels.voxels)[box], out=box_out,
                mode="wrap")

    result = {"label_box_fraction": round(box_out.size / label_out.size, 3)}
    for name, step in (("image", image), ("labels_whole_slice", labels_full),
                       ("labels_box", labels_box)):
        wall, cpu = [], []
        for frame in range(frames + 5):
            index = frame % geometry.slice_count
            t0, c0 = time.perf_counter(), time.thread_time()
            step(index)
            t1, c1 = time.perf_counter(), time.thread_time()
            if frame >= 5:
                wall.append((t1 - t0) * 1000)
                cpu.append((c1 - c0) * 1000)
        summary = _summary(wall, cpu, 0)
        del summary["paints_per_frame"]
        result[name] = summary
    return result


def bench_display_paths(app, ct, size: int, frames: int, warmup: int) -> dict:
    """Three ways to show a windowed int16 slice in one ImageItem (no overlay, same view)."""
    import pyqtgraph as pg
    from PySide6 import QtCore, QtGui

    from radview.core.volume import ViewPlane
    from radview.core.windowing import window_for, window_to_uint8
    from radview.viewer.slice_view import DisplayTable, PackedImageItem

    window = window_for(ct)
    count = ct.plane_geometry(ViewPlane.AXIAL).slice_count
    shape = ct.plane_slice(ViewPlane.AXIAL, 0).shape
    table, buffer = DisplayTable(), np.empty(shape, np.uint32)
    graphics = pg.GraphicsView(background="k")
    box = pg.ViewBox(lockAspect=True, invertY=True, enableMouse=False, enableMenu=False)
    graphics.setCentralItem(box)
    viewport = graphics.viewport()
    _fit_viewport(app, graphics, viewport, size)
    box.setRange(QtCore.QRectF(0, 0, shape[1], shape[0]), padding=0)

    def raw_levels(item):
        return lambda i: item.setImage(ct.plane_slice(ViewPlane.AXIAL, i),
                                       levels=(window.low, window.high), autoLevels=False)

    def uint8_levels(item):
        return lambda i: item.setImage(window_to_uint8(ct.plane_slice(ViewPlane.AXIAL, i), window),
                                       levels=(0, 255), autoLevels=False)

    def lut_rgb32(item):
        def change(i: int) -> None:
            table.apply(ct.plane_slice(ViewPlane.AXIAL, i), window, False, buffer)
            item.setImage(buffer, autoLevels=False)
        return change

    paths = {
        "imageitem_levels_on_raw_int16": (pg.ImageItem, raw_levels),
        "window_to_uint8_then_imageitem_levels": (pg.ImageItem, uint8_levels),
        "radview_lut_to_rgb32": (lambda: PackedImageItem(QtGui.QImage.Format.Format_RGB32),
                                 lut_rgb32),
    }
    results = {}
    for name, (make_item, make_change) in paths.items():
        item = make_item()
        box.addItem(item)
        results[name] = _time_frames(app, make_change(item), count, viewport, frames,
                                     warmup)["forced"]
        box.removeItem(item)
    graphics.close()
    graphics.deleteLater()
    app.processEvents()
    return results


# ============================================================================ run + report
def evaluate_targets(results: dict) -> dict:
    ours = results["slice_view_axial"]["forced"]["median_ms"]
    peer = results["image_view_axial"]["forced"]["median_ms"]
    targets = {
        "axial_median_ms": target(
            ours, AXIAL_MEDIAN_TARGET_MS, ours <= AXIAL_MEDIAN_TARGET_MS,
            "SliceView, label overlay on: median wall ms per slice change incl. a forced "
            "repaint of the graphics viewport",
        ),
        "axial_not_slower_than_image_view": target(
            ours, peer, ours <= peer,
            "SliceView median <= pyqtgraph ImageView median (same data, same run, forced)",
        ),
    }
    for plane in ("coronal", "sagittal"):
        frame = results[f"slice_view_{plane}"]["forced"]["median_ms"]
        targets[f"{plane}_frame_median_ms"] = target(
            frame, RESLICE_FRAME_TARGET_MS, frame <= RESLICE_FRAME_TARGET_MS,
            f"{plane} reslice per frame: median wall ms of a whole frame (reslice, window, "
            "overlay, forced repaint)",
        )
    return targets


def run_benchmark(matrix: int, slices: int, size: int, frames: int, warmup: int) -> dict:
    import pyqtgraph as pg
    from PySide6 import QtWidgets

    from radview.core.volume import ViewPlane

    pg.setConfigOptions(imageAxisOrder="row-major")
    app = QtWidgets.QApplication.instance() or QtWidgets.QApplication([])
    results: dict = {
        "benchmark": "render",
        "machine": machine_info(),
        "versions": package_versions("numpy", "PySide6-Essentials", "pyqtgraph", "psygnal"),
        "parameters": {"matrix": matrix, "slices": slices, "size": size, "frames": frames,
                       "warmup": warmup, "overlay_opacity": OVERLAY_OPACITY},
    }
    started = time.perf_counter()
    ct, labels = make_study(matrix, slices)
    results["study"] = {"shape": list(ct.shape), "dtype": str(ct.voxels.dtype),
                        "spacing_mm": list(ct.spacing), "labels_dtype": str(labels.voxels.dtype),
                        "make_seconds": round(time.perf_counter() - started, 2)}
    print(f"study {'x'.join(map(str, ct.size_xyz))} int16 + labels ready", flush=True)

    for plane in ViewPlane:
        results[f"slice_view_{plane.value}"] = bench_slice_view(app, ct, labels, plane, size,
                                                                frames, warmup)
        print(f"slice_view_{plane.value}: done", flush=True)
    results["image_view_axial"] = bench_image_view(app, ct, labels, size, frames, warmup)
    print("image_view_axial: done", flush=True)
    results["reslice_only"] = {plane.value: bench_reslice_only(ct, labels, plane, frames)
                               for plane in ViewPlane}
    results["display_paths"] = bench_display_paths(app, ct, size, frames, warmup)
    results["targets"] = evaluate_targets(results)
    results["all_passed"] = all(t["pass"] for t in results["targets"].values())
    return results


def format_report(results: dict) -> str:
    p = results["parameters"]
    lines = [
        f"render benchmark: {'x'.join(map(str, reversed(results['study']['shape'])))} int16 + "
        f"labels, viewport {p['size']}x{p['size']}, {p['frames']} frames; ms per slice change",
        f"  {'contender':<34}{'forced med':>11}{'p95':>8}{'cpu med':>9}"
        f"{'loop med':>10}{'p95':>8}{'paints':>8}",
    ]
    for name in ("slice_view_axial", "image_view_axial", "slice_view_coronal",
                 "slice_view_sagittal"):
        forced, loop = results[name]["forced"], results[name]["event_loop"]
        lines.append(f"  {name:<34}{forced['median_ms']:>11.2f}{forced['p95_ms']:>8.2f}"
                     f"{forced['cpu_median_ms']:>9.2f}{loop['median_ms']:>10.2f}"
                     f"{loop['p95_ms']:>8.2f}{loop['paints_per_frame']:>8.2f}")
    lines.append("  reslice only (numpy), image / labels whole slice / labels box: " + ", ".join(
        f"{plane} {r['image']['median_ms']:.2f} / {r['labels_whole_slice']['median_ms']:.2f} / "
        f"{r['labels_box']['median_ms']:.2f}" for plane, r in results["reslice_only"].items()))
    lines.append("  display paths (forced, no overlay): " + ", ".join(
        f"{name} {r['median_ms']:.2f}" for name, r in results["display_paths"].items()))
    lines.append("targets")
    for name, outcome in results["targets"].items():
        verdict = "PASS" if outcome["pass"] else "FAIL"
        lines.append(f"  {verdict}  {name}: {outcome['value']} (limit {outcome['limit']})")
    busy = results["machine"]["cpu_busy_percent_at_start"]
    if busy > 10:
        lines.append(f"note: the machine was {busy:.0f}% busy before the run; wall times are "
                     "noisy (compare the cpu columns)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.render",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("build/bench/render.json"))
    parser.add_argument("--matrix", type=int, default=512)
    parser.add_argument("--slices", type=int, default=500)
    parser.add_argument("--size", type=int, default=800, help="graphics viewport pixels")
    parser.add_argument("--frames", type=int, default=300, help="timed frames per contender")
    parser.add_argument("--warmup", type=int, default=30, help="untimed frames first")
    args = parser.parse_args(argv)
    if args.matrix < 8 or args.slices < 2 or args.size < 64 or args.frames < 1 \
            or args.warmup < 0:
        parser.error("need --matrix >= 8, --slices >= 2, --size >= 64, --frames >= 1, "
                     "--warmup >= 0")
    results = run_benchmark(args.matrix, args.slices, args.size, args.frames, args.warmup)
    publish(results, args.out, format_report(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
