"""Soak test of the slice views: many slice changes with the overlay on, watching memory.

Usage (from the repository root)::

    python -m benchmarks.soak --out build/bench/soak.json [--changes 10000] [--matrix 256]
        [--slices 120] [--size 500] [--timeout 1800]

A ``ViewportPanel`` (axial | coronal | sagittal, offscreen) shows the abdomen phantom with its
label overlay. Every change scrolls one view (the three take turns, sweeping up and down their
stacks) and lets the event loop paint; interleaved on fixed schedules are crosshair moves
(``state.click`` and synthetic mouse clicks), window/level changes (set on the state and by
synthetic left-drags), synthetic wheel events, overlay toggles (visible, outline, opacity),
annotation lists, a selection, and layout changes -- everything that creates or replaces
graphics items or buffers. The process RSS (psutil) is taken after a warm-up and at the end,
with samples in between.

The soak runs in a child process, so that a crash in Qt's paint code (the reason the PySide6
version is capped, see ``pyproject.toml``) is reported in the JSON instead of killing the
runner: the parent records the child's exit status and the end of its stderr. ``--in-process``
runs it directly (for a debugger).

Targets: the run completes without a crash, and RSS grows by less than 50 MB.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import package_versions, write_results

__all__ = ["main", "run_soak"]

RSS_GROWTH_LIMIT_MB = 50.0
MB = 1e6
_WARMUP_CHANGES = 300
_SAMPLES = 10


def run_soak(changes: int, matrix: int, slices: int, size: int) -> dict:
    """The soak itself (in this process); returns the measurements."""
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    import gc

    import numpy as np
    import psutil
    import pyqtgraph as pg
    from PySide6 import QtCore, QtGui, QtWidgets

    from benchmarks.render import make_study
    from radview.core.annotations import Annotation, AnnotationKind
    from radview.core.labelmap import LabelMap
    from radview.core.viewer_state import Layout, ViewerState
    from radview.core.volume import ViewPlane
    from radview.core.windowing import WindowLevel
    from radview.viewer.viewport import ViewportPanel

    pg.setConfigOptions(imageAxisOrder="row-major")
    app = QtWidgets.QApplication.instance() or QtWidgets.QApplication([])
    process = psutil.Process()
    rng = np.random.default_rng(0)
    ct, labels = make_study(matrix, slices)
    state = ViewerState()
    panel = ViewportPanel(state)
    panel.resize(3 * size, size)
    panel.show()
    state.show_volume(ct)
    state.set_labels(LabelMap.liver(labels))
    app.processEvents()
    planes = list(ViewPlane)
    counts = {plane: ct.plane_geometry(plane).slice_count for plane in planes}
    directions = dict.fromkeys(planes, 1)
    buttons = QtCore.Qt.MouseButton
    types = QtCore.QEvent.Type

    def mouse(view, kind, pos, button, held) -> None:
        viewport = view.graphics_view.viewport()
        event = QtGui.QMouseEvent(kind, pos, viewport.mapToGlobal(pos), button, held,
                                  QtCore.Qt.KeyboardModifier.NoModifier)
        QtWidgets.QApplication.sendEvent(viewport, event)

    def random_point(view) -> QtCore.QPointF:
        viewport = view.graphics_view.viewport()
        return QtCore.QPointF(rng.uniform(0.2, 0.8) * viewport.width(),
                              rng.uniform(0.2, 0.8) * viewport.height())

    def synthetic_click(view) -> None:
        pos = random_point(view)
        mouse(view, types.MouseButtonPress, pos, buttons.LeftButton, buttons.LeftButton)
        mouse(view, types.MouseButtonRelease, pos, buttons.LeftButton, buttons.NoButton)

    def synthetic_window_drag(view) -> None:
        start = random_point(view)
        mouse(view, types.MouseButtonPress, start, buttons.LeftButton, buttons.LeftButton)
        for step in range(1, 4):
            offset = QtCore.QPointF(rng.uniform(-30, 30) * step, rng.uniform(-30, 30) * step)
            mouse(view, types.MouseMove, start + offset, buttons.NoButton, buttons.LeftButton)
            app.processEvents()
        mouse(view, types.MouseButtonRelease, start + offset, buttons.LeftButton,
              buttons.NoButton)

    def synthetic_wheel(view) -> None:
        viewport = view.graphics_view.viewport()
        pos = random_point(view)
        event = QtGui.QWheelEvent(pos, viewport.mapToGlobal(pos), QtCore.QPoint(0, 0),
                                  QtCore.QPoint(0, int(rng.choice([-240, -120, 120, 240]))),
                                  buttons.NoButton, QtCore.Qt.KeyboardModifier.NoModifier,
                                  QtCore.Qt.ScrollPhase.NoScrollPhase, False)
        QtWidgets.QApplication.sendEvent(viewport, event)

    def annotations_here() -> list[Annotation]:
        made = []
        for plane in planes:
            index = state.slice_index(plane)
            rows, cols = ct.plane_slice(plane, index).shape
            points = tuple(tuple(float(v) for v in ct.world_of_plane_pixel(
                plane, index, rng.uniform(0, rows - 1), rng.uniform(0, cols - 1)))
                for _ in range(2))
            made.append(Annotation(AnnotationKind.RULER, plane, index, points))
        return made

    def scroll(plane) -> None:
        index = state.slice_index(plane)
        if not 0 <= index + directions[plane] < counts[plane]:
            directions[plane] = -directions[plane]
        state.step(plane, directions[plane])

    def one_change(n: int) -> None:
        plane = planes[n % 3]
        view = panel.views[plane]
        scroll(plane)
        if n % 10 == 0:
            other = planes[(n + 1) % 3]
            rows, cols = ct.plane_slice(other, state.slice_index(other)).shape
            state.click(other, rng.uniform(0, rows - 1), rng.uniform(0, cols - 1))
        if n % 17 == 0 and not view.isHidden():
            synthetic_click(view)
        if n % 13 == 0:
            state.window = WindowLevel(rng.uniform(50, 2000), rng.uniform(-500, 500))
        if n % 29 == 0 and not view.isHidden():
            synthetic_window_drag(view)
        if n % 31 == 0 and not view.isHidden():
            synthetic_wheel(view)
        if n % 97 == 0:
            state.overlay_outline = not state.overlay_outline
        if n % 157 == 0:
            state.overlay_opacity = float(rng.uniform(0.2, 0.9))
        if n % 211 == 0:
            state.overlay_visible = not state.overlay_visible
        if n % 250 == 0:
            made = annotations_here()
            panel.set_annotations(made, {a.id: f"{n} mm" for a in made[:2]})
            panel.set_selected_annotation(made[0].id if n % 500 else None)
        if n % 1000 == 500:
            state.layout = Layout.FOUR if state.layout is Layout.THREE else Layout.THREE
        if n % 1000 == 750:
            state.maximized = None if state.maximized else planes[(n // 1000) % 3]
        app.processEvents()

    def rss_mb() -> float:
        gc.collect()
        app.processEvents()
        return process.memory_info().rss / MB

    for n in range(_WARMUP_CHANGES):
        one_change(n)
    state.layout, state.maximized = Layout.THREE, None
    items_before = {p.value: len(v.graphics_view.scene().items()) for p, v in panel.views.items()}
    objects_before = len(gc.get_objects())
    rss_before = rss_mb()
    samples = [{"changes": 0, "rss_mb": round(rss_before, 1)}]
    every = max(1, changes // _SAMPLES)
    started = time.perf_counter()
    for n in range(changes):
        one_change(_WARMUP_CHANGES + n)
        if (n + 1) % every == 0 or n + 1 == changes:
            samples.append({"changes": n + 1, "rss_mb": round(rss_mb(), 1),
                            "seconds": round(time.perf_counter() - started, 1)})
    elapsed = time.perf_counter() - started
    state.layout, state.maximized = Layout.THREE, None
    panel.set_annotations([], {})
    rss_after = rss_mb()
    items_after = {p.value: len(v.graphics_view.scene().items()) for p, v in panel.views.items()}
    return {
        "changes": changes,
        "completed": True,
        "study_shape": list(ct.shape),
        "seconds": round(elapsed, 2),
        "ms_per_change": round(1000 * elapsed / changes, 3),
        "rss_before_mb": round(rss_before, 1),
        "rss_after_mb": round(rss_after, 1),
        "rss_growth_mb": round(rss_after - rss_before, 1),
        "rss_samples": samples,
        "scene_items_before": items_before,
        "scene_items_after": items_after,
        "python_objects_growth": len(gc.get_objects()) - objects_before,
        "final_state": {"window": [state.window.width, state.window.level],
                        "slices": {p.value: state.slice_index(p) for p in planes}},
    }


# ============================================================================ runner
def _run_child(args: argparse.Namespace) -> dict:
    """Run the soak in a fresh interpreter; a crash becomes data, not an exception."""
    with tempfile.TemporaryDirectory(prefix="radview-soak-") as scratch:
        result_path = Path(scratch) / "result.json"
        command = [sys.executable, "-m", "benchmarks.soak", "--in-process",
                   "--changes", str(args.changes), "--matrix", str(args.matrix),
                   "--slices", str(args.slices), "--size", str(args.size),
                   "--out", str(result_path)]
        env = dict(os.environ)
        env.setdefault("QT_QPA_PLATFORM", "offscreen")
        started = time.perf_counter()
        try:
            completed = subprocess.run(command, capture_output=True, text=True, env=env,
                                       timeout=args.timeout, cwd=Path(__file__).parents[1])
            returncode, stderr = completed.returncode, completed.stderr
        except subprocess.TimeoutExpired as expired:
            returncode = None
            stderr = expired.stderr or b""  # bytes even with text=True
            stderr = stderr.decode(errors="replace") if isinstance(stderr, bytes) else stderr
        child = {}
        if returncode == 0 and result_path.is_file():
            child = json.loads(result_path.read_text()).get("soak", {})
        return {
            "returncode": returncode,
            "timed_out": returncode is None,
            "crashed": returncode is not None and returncode < 0,
            "wall_seconds": round(time.perf_counter() - started, 1),
            "stderr_tail": stderr[-2000:],
            **child,
        }


def evaluate_targets(soak: dict) -> dict:
    completed = bool(soak.get("completed")) and soak.get("returncode", 0) == 0
    growth = soak.get("rss_growth_mb")
    return {
        "completed_without_crash": {
            "value": completed, "limit": True, "pass": completed,
            "description": "all changes done, child exit status 0 (no crash, no timeout)",
        },
        "rss_growth_mb": {
            "value": growth, "limit": RSS_GROWTH_LIMIT_MB,
            "pass": growth is not None and growth < RSS_GROWTH_LIMIT_MB,
            "description": "process RSS after the soak minus RSS after the warm-up, MB",
        },
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.soak",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("build/bench/soak.json"))
    parser.add_argument("--changes", type=int, default=10_000)
    parser.add_argument("--matrix", type=int, default=256)
    parser.add_argument("--slices", type=int, default=120)
    parser.add_argument("--size", type=int, default=500, help="pixels per view")
    parser.add_argument("--timeout", type=float, default=1800.0, help="child time limit, s")
    parser.add_argument("--in-process", action="store_true",
                        help="run the soak here instead of in a child process")
    args = parser.parse_args(argv)
    if args.changes < 1 or args.matrix < 8 or args.slices < 2 or args.size < 64:
        parser.error("need --changes >= 1, --matrix >= 8, --slices >= 2, --size >= 64")

    parameters = {"changes": args.changes, "matrix": args.matrix, "slices": args.slices,
                  "size": args.size, "warmup_changes": _WARMUP_CHANGES}
    if args.in_process:
        results = {"benchmark": "soak", "parameters": parameters,
                   "soak": run_soak(args.changes, args.matrix, args.slices, args.size)}
    else:
        soak = _run_child(args)
        targets = evaluate_targets(soak)
        results = {
            "benchmark": "soak",
            "machine": {"platform": platform.platform(), "cpu_count": os.cpu_count(),
                        "qt_platform": os.environ.get("QT_QPA_PLATFORM", "offscreen")},
            "versions": package_versions("numpy", "PySide6-Essentials", "pyqtgraph", "psygnal"),
            "parameters": parameters,
            "soak": soak,
            "targets": targets,
            "all_passed": all(t["pass"] for t in targets.values()),
        }
    write_results(results, args.out)
    if not args.in_process:
        soak = results["soak"]
        print(f"soak: {args.changes} changes, exit status {soak['returncode']}, "
              f"{soak.get('ms_per_change', '-')} ms per change, RSS "
              f"{soak.get('rss_before_mb', '-')} -> {soak.get('rss_after_mb', '-')} MB")
        for name, target in results["targets"].items():
            verdict = "PASS" if target["pass"] else "FAIL"
            print(f"  {verdict}  {name}: {target['value']} (limit {target['limit']})")
        print(f"results written to {args.out}")
        if soak["returncode"] != 0:
            print(soak["stderr_tail"], file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
