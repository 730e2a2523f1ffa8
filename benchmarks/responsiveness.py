"""UI responsiveness while a 500-slice series loads (issue: never frozen > 100 ms; the first
slice on screen before the load ends).

The real MainWindow runs offscreen and opens the benchmark's uncompressed 512x512x500 CT
series (cached by ``benchmarks.load``). A 5 ms QTimer stands in for the user: every gap between
its ticks is a time the event loop could not answer input. The named peer is the same window
loading the same files synchronously in the GUI thread (what a naive viewer does): it shows
what "frozen" looks like on this machine in the same run.

Run: ``python -m benchmarks.responsiveness --out build/bench/responsiveness.json``
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from benchmarks.common import machine_info, package_versions, write_results

FREEZE_LIMIT_MS = 100.0


def _measure(folder: Path, synchronous: bool) -> dict:
    from PySide6.QtCore import QEventLoop, QSettings, QTimer
    from PySide6.QtWidgets import QApplication

    from radview.app import build_main_window
    from radview.io.open_study import open_images

    scratch = Path(tempfile.mkdtemp())
    settings = QSettings(str(scratch / "settings.ini"), QSettings.Format.IniFormat)
    window = build_main_window(index_path=scratch / "index.sqlite3", settings=settings)
    window.resize(1600, 900)
    window.show()
    app = QApplication.instance()
    ticks: list[float] = []
    timer = QTimer(interval=5)
    timer.timeout.connect(lambda: ticks.append(time.perf_counter()))
    first_shown: list[float] = []
    window.state.events.volume.connect(
        lambda v: first_shown.append(time.perf_counter()) if v is not None and not first_shown
        else None)
    done: list[float] = []
    loop = QEventLoop()
    window.series_shown.connect(lambda: done.append(time.perf_counter()))
    window.series_shown.connect(loop.quit)
    for _ in range(5):
        app.processEvents()
    timer.start()
    started = time.perf_counter()
    ticks.append(started)
    if synchronous:
        QTimer.singleShot(0, lambda: (window.state.show_volume(open_images([folder]).volume),
                                      done.append(time.perf_counter()), loop.quit()))
    else:
        window.open_paths([folder])
    deadline = started + 300
    QTimer.singleShot(300_000, loop.quit)
    loop.exec()  # a real event loop, as in the application (no busy polling here)
    for _ in range(10):  # a few more ticks after the end
        app.processEvents()
        time.sleep(0.005)
    timer.stop()
    window.close()
    window.browser.shutdown(10_000)
    gaps = [b - a for a, b in zip(ticks, ticks[1:], strict=False) if a <= (done or [deadline])[0]]
    gaps_ms = sorted(g * 1000 for g in gaps) or [0.0]
    return {
        "load_seconds": (done[0] - started) if done else None,
        "first_slice_seconds": (first_shown[0] - started) if first_shown else None,
        "max_gap_ms": gaps_ms[-1],
        "p99_gap_ms": gaps_ms[int(0.99 * (len(gaps_ms) - 1))],
        "ticks": len(ticks),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.responsiveness")
    parser.add_argument("--out", type=Path, default=Path("build/bench/responsiveness.json"))
    parser.add_argument("--matrix", type=int, default=512)
    parser.add_argument("--slices", type=int, default=500)
    parser.add_argument("--data-dir", type=Path, default=Path("build/bench/data"))
    args = parser.parse_args(argv)

    from benchmarks.load import ensure_series

    folder, _info = ensure_series(args.data_dir, "uncompressed", args.matrix, args.slices)
    os.environ["RADVIEW_DATA_DIR"] = tempfile.mkdtemp()
    radview = _measure(folder, synchronous=False)
    peer = _measure(folder, synchronous=True)
    targets = {
        "max_event_loop_gap_ms": {
            "value": radview["max_gap_ms"], "limit": FREEZE_LIMIT_MS,
            "pass": radview["max_gap_ms"] <= FREEZE_LIMIT_MS},
        "first_slice_before_load_end": {
            "value": radview["first_slice_seconds"], "limit": radview["load_seconds"],
            "pass": (radview["first_slice_seconds"] is not None
                     and radview["load_seconds"] is not None
                     and radview["first_slice_seconds"] < radview["load_seconds"])},
    }
    result = {"series": f"{args.matrix}x{args.matrix}x{args.slices} uncompressed int16",
              "radview_background_load": radview, "peer_synchronous_load": peer,
              "targets": targets}
    result["machine"] = machine_info()
    result["versions"] = package_versions("radview", "PySide6-Essentials", "pyqtgraph")
    write_results(result, args.out)
    print(f"radview (worker thread): load {radview['load_seconds']:.2f} s, first slice "
          f"{radview['first_slice_seconds']:.2f} s, longest UI freeze "
          f"{radview['max_gap_ms']:.0f} ms (p99 {radview['p99_gap_ms']:.0f} ms)")
    print(f"peer (GUI-thread load): load {peer['load_seconds']:.2f} s, longest UI freeze "
          f"{peer['max_gap_ms']:.0f} ms")
    for name, target in targets.items():
        print(f"  {'PASS' if target['pass'] else 'FAIL'}  {name}: {target['value']} "
              f"(limit {target['limit']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
