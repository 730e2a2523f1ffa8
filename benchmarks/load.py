"""Load benchmark: radview's ``discover`` + ``load_stack`` against SimpleITK's series reader.

Usage (from the repository root)::

    python -m benchmarks.load --out build/bench/load.json [--slices 500] [--matrix 512]
        [--j2k-slices 100] [--repeat 3] [--data-dir build/bench/data]

Two synthetic CT series are written once and cached under ``--data-dir`` (keyed by their
parameters): an uncompressed int16 series (Explicit VR Little Endian, rescale intercept -1024)
and a JPEG 2000 lossless one. Every measurement runs in a fresh subprocess, so that its peak
RSS is its own, with a warm page cache (all files read once before the child starts) and one
untimed warm-up run before the timed one. ``--repeat`` rounds run every contender once each, in
rotating order, so that other load on a shared machine hits all contenders alike; medians and
minima are over the rounds. A separate subprocess loads each series with both libraries and
checks that they give the same voxels and geometry.

The issue's targets are evaluated and written to the JSON as pass/fail; a failed target is
printed as a ``FAIL`` line but does not change the exit code (a crashed contender does).

This module is also the entry point of the child processes (``--child``), and the loader's
spawned worker processes re-import it as ``__mp_main__``: keep its top-level imports to the
standard library so that workers stay small and start fast.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import machine_info, package_versions, publish, target, verdict_lines

__all__ = ["main"]

#: Bump when the same parameters would write different series (invalidates the cache).
DATA_VERSION = 1
REPO_ROOT = Path(__file__).resolve().parents[1]
MIB = 2**20

#: Targets from the issue.
SPEEDUP_TARGET = 2.0  # radview total at least 2x faster than SimpleITK total (warm cache)
RSS_FACTOR, RSS_ALLOWANCE_MIB = 1.3, 150.0  # peak RSS <= 1.3 x raw voxel bytes + 150 MB
CPU_PER_WALL_TARGET = 1.5  # parallel JPEG 2000 decode keeps two cores busy
GEOMETRY_TOLERANCE_MM = 1e-3

_KINDS = {
    "uncompressed": ("evle", "Explicit VR Little Endian"),
    "jpeg2000": ("j2k", "JPEG 2000 Image Compression (Lossless Only)"),
}


# ============================================================================ test data
def series_geometry(matrix: int, slices: int) -> tuple[float, float]:
    """(pixel spacing, slice thickness) in mm: a ~400 mm field of view and a realistic
    protocol, the thinnest of 0.625/1.25/2.5 mm that still covers 300 mm of abdomen."""
    pixel_spacing = round(0.78 * 512 / matrix, 4)
    thickness = next((t for t in (0.625, 1.25) if slices * t >= 300.0), 2.5)
    return pixel_spacing, thickness


def series_name(kind: str, matrix: int, slices: int) -> str:
    return f"ct-{_KINDS[kind][0]}-{matrix}x{matrix}x{slices}-v{DATA_VERSION}"


def ensure_series(data_dir: Path, kind: str, matrix: int, slices: int) -> tuple[Path, dict]:
    """The cached series folder (``<name>/dicom``) and its description; written if missing.

    Writing happens in a child process: the phantom needs ~1.4 GB for 500 slices, and on
    Linux a process inherits its parent's peak RSS through fork + exec (``ru_maxrss``), so a
    big parent would inflate every contender's measurement.
    """
    final = data_dir / series_name(kind, matrix, slices)
    info_path = final / "series.json"
    if not info_path.is_file():
        print(f"writing {final.name} (once; cached in {data_dir}) ...", flush=True)
        _in_subprocess("generate", final, kind=kind, matrix=matrix, slices=slices)
        cached = False
    else:
        cached = True
    info = json.loads(info_path.read_text())
    info["cached"] = cached
    return final / "dicom", info


def _child_generate(final: Path, kind: str, matrix: int, slices: int) -> dict:
    """Write one benchmark series into ``final`` (see :func:`ensure_series`).

    The series is written into a temporary folder that is renamed into place only when
    complete, so an interrupted run never leaves a half-written series in the cache.
    """
    import numpy as np

    from radview.core.phantom import make_abdomen_phantom
    from radview.io.dicom_write import write_dicom_series

    name = final.name
    pixel_spacing, thickness = series_geometry(matrix, slices)
    started = time.perf_counter()
    phantom = make_abdomen_phantom(matrix, slices, seed=0, pixel_spacing=pixel_spacing,
                                   slice_thickness=thickness)
    ct = phantom.ct
    del phantom
    final.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{name}-", dir=final.parent) as scratch:
        staging = Path(scratch) / name
        syntax = "1.2.840.10008.1.2.1" if kind == "uncompressed" else "1.2.840.10008.1.2.4.90"
        files = write_dicom_series(
            ct, staging / "dicom", transfer_syntax=syntax, stored_dtype=np.int16,
            rescale_intercept=-1024.0, fsync=False, uid_seed=name,
            series_description=f"radview load benchmark {kind}",
            body_part_examined="ABDOMEN",
        )
        info = {
            "name": name,
            "transfer_syntax": _KINDS[kind][1],
            "shape": list(ct.shape),
            "voxel_dtype": "int16",
            "rescale_intercept": -1024.0,
            "spacing_mm": list(ct.spacing),
            "hu_range": [int(ct.voxels.min()), int(ct.voxels.max())],
            "files": len(files),
            "bytes_on_disk": sum(p.stat().st_size for p in files),
            "raw_voxel_bytes": int(ct.voxels.nbytes),
            "write_seconds": round(time.perf_counter() - started, 2),
        }
        (staging / "series.json").write_text(json.dumps(info, indent=2))
        if final.exists():  # a stale folder without series.json: replace it
            shutil.rmtree(final)
        os.replace(staging, final)
    return info


def warm_page_cache(folder: Path) -> float:
    """Read every file once (like ``cat * > /dev/null``); returns the seconds it took."""
    started = time.perf_counter()
    for path in sorted(folder.iterdir()):
        with open(path, "rb", buffering=0) as handle:
            while handle.read(1 << 20):
                pass
    return time.perf_counter() - started


# ============================================================================ child side
def _ru_maxrss_mib(who: int) -> float:
    """``getrusage(who).ru_maxrss`` in MiB (KiB on Linux, bytes on macOS).

    Caveat: on Linux, exec() folds the pre-exec address space's peak into the new process's
    ``ru_maxrss``, so a child reports at least its parent's peak at fork time. That is why the
    orchestrating process stays small, and why worker figures come from sampling instead.
    """
    peak = resource.getrusage(who).ru_maxrss
    return peak / MIB if sys.platform == "darwin" else peak / 1024


def _peak_rss_mib() -> float:
    """This process's own high-water RSS: ``VmHWM`` (per address space, so nothing is
    inherited from the parent) where Linux provides it, else ``ru_maxrss``."""
    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass  # not Linux: fall back to getrusage
    return _ru_maxrss_mib(resource.RUSAGE_SELF)


def _cpu_seconds() -> float:
    """User + system CPU time of this process and of its terminated, waited-for children."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


class _TreeRssSampler:
    """Polls the RSS of this process and its descendants (the loader's worker processes)
    every few milliseconds on a thread, keeping the peaks; used only in the untimed warm-up
    run so that the polling cannot slow the timed ones."""

    def __init__(self, interval: float = 0.005) -> None:
        import threading

        import psutil

        self._psutil = psutil
        self._me = psutil.Process()
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)
        self.workers_peak = 0
        self.tree_peak = 0

    def __enter__(self) -> _TreeRssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while True:
            self.sample()
            if self._stop.wait(self._interval):
                return

    def sample(self) -> None:
        workers = 0
        for child in self._me.children(recursive=True):
            try:
                workers += child.memory_info().rss
            except self._psutil.Error:
                continue  # exited between listing and reading: it holds no memory any more
        self.workers_peak = max(self.workers_peak, workers)
        self.tree_peak = max(self.tree_peak, self._me.memory_info().rss + workers)


def _timed_runs(once, repeat: int) -> dict:
    """One untimed warm-up call (with worker RSS sampling), then ``repeat`` timed ones."""
    gc.collect()
    baseline = _peak_rss_mib()  # after imports, before any run: the interpreter's share
    with _TreeRssSampler() as sampler:
        warmup = once()
    runs = []
    for _ in range(repeat):
        gc.collect()  # the previous run's volume must be gone before the next one is built
        runs.append(once())
    return {
        "runs": runs,
        "warmup": warmup,
        "baseline_rss_mib": round(baseline, 1),
        "peak_rss_mib": round(_peak_rss_mib(), 1),
        "ru_maxrss_mib": round(_ru_maxrss_mib(resource.RUSAGE_SELF), 1),
        "workers_peak_rss_mib": round(sampler.workers_peak / MIB, 1),
        "tree_peak_sampled_rss_mib": round(sampler.tree_peak / MIB, 1),
        "children_ru_maxrss_mib": round(_ru_maxrss_mib(resource.RUSAGE_CHILDREN), 1),
    }


def _child_radview(folder: Path, repeat: int, workers: int | None) -> dict:
    from radview.io.dicom_load import load_stack
    from radview.io.discover import discover

    shape: list[int] = []
    dtype = ""

    def once() -> dict:
        nonlocal shape, dtype
        first_slice: list[float] = []

        def on_slice(index: int, image: object) -> None:
            if not first_slice:
                first_slice.append(time.perf_counter())

        cpu0, t0 = _cpu_seconds(), time.perf_counter()
        found = discover([folder])
        cpu1, t1 = _cpu_seconds(), time.perf_counter()
        if len(found.stacks) != 1 or found.problems:
            raise RuntimeError(f"{folder}: expected one stack and no problems, got "
                               f"{len(found.stacks)} stack(s), problems {found.problems[:3]}")
        result = load_stack(found.stacks[0], on_slice=on_slice, workers=workers)
        cpu2, t2 = _cpu_seconds(), time.perf_counter()
        shape, dtype = list(result.volume.shape), str(result.volume.voxels.dtype)
        del result, found
        return {
            "discover_s": t1 - t0,
            "load_s": t2 - t1,
            "total_s": t2 - t0,
            "first_slice_s": first_slice[0] - t1 if first_slice else None,
            "first_slice_from_start_s": first_slice[0] - t0 if first_slice else None,
            "cpu_s": cpu2 - cpu0,
            "load_cpu_s": cpu2 - cpu1,
            "load_cpu_per_wall": (cpu2 - cpu1) / (t2 - t1),
            "total_cpu_per_wall": (cpu2 - cpu0) / (t2 - t0),
        }

    report = _timed_runs(once, repeat)
    report.update(shape=shape, dtype=dtype, workers=workers or os.cpu_count())
    return report


def _child_simpleitk(folder: Path, repeat: int) -> dict:
    import SimpleITK as sitk

    shape: list[int] = []
    dtype = ""

    def once() -> dict:
        nonlocal shape, dtype
        cpu0, t0 = _cpu_seconds(), time.perf_counter()
        reader = sitk.ImageSeriesReader()
        names = reader.GetGDCMSeriesFileNames(str(folder))
        t1 = time.perf_counter()
        reader.SetFileNames(names)
        image = reader.Execute()
        cpu2, t2 = _cpu_seconds(), time.perf_counter()
        shape = list(reversed(image.GetSize()))
        dtype = image.GetPixelIDTypeAsString()
        del image, reader
        return {
            "discover_s": t1 - t0,  # GetGDCMSeriesFileNames: scan, group and sort the files
            "load_s": t2 - t1,  # SetFileNames + Execute
            "total_s": t2 - t0,
            "cpu_s": cpu2 - cpu0,
            "total_cpu_per_wall": (cpu2 - cpu0) / (t2 - t0),
        }

    report = _timed_runs(once, repeat)
    report.update(shape=shape, dtype=dtype,
                  threads=sitk.ProcessObject.GetGlobalDefaultNumberOfThreads())
    return report


def _child_verify(folder: Path) -> dict:
    """Load with both libraries in one process and compare voxels and geometry."""
    import numpy as np
    import SimpleITK as sitk

    from radview.io.dicom_load import load_stack
    from radview.io.discover import discover

    volume = load_stack(discover([folder]).stacks[0]).volume
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder)))
    image = reader.Execute()
    theirs = sitk.GetArrayViewFromImage(image)  # (z, y, x), like Volume.voxels
    ours = volume.voxels
    same_shape = ours.shape == theirs.shape
    equal = bool(same_shape and np.array_equal(ours, theirs))  # by value, across dtypes
    differing = max_diff = None
    if same_shape and not equal:
        diff = ours.astype(np.int64) - theirs.astype(np.int64)
        differing, max_diff = int(np.count_nonzero(diff)), int(np.abs(diff).max())
    direction = np.asarray(image.GetDirection()).reshape(3, 3)
    origin_diff = float(np.max(np.abs(np.subtract(volume.origin, image.GetOrigin()))))
    spacing_diff = float(np.max(np.abs(np.subtract(volume.spacing, image.GetSpacing()))))
    direction_diff = float(np.max(np.abs(volume.direction - direction)))
    return {
        "voxels_equal": equal,
        "differing_voxels": differing,
        "max_abs_difference": max_diff,
        "radview": {"shape": list(ours.shape), "dtype": str(ours.dtype),
                    "origin": list(volume.origin), "spacing": list(volume.spacing)},
        "simpleitk": {"shape": list(theirs.shape), "dtype": image.GetPixelIDTypeAsString(),
                      "origin": list(image.GetOrigin()), "spacing": list(image.GetSpacing())},
        "origin_max_abs_diff_mm": origin_diff,
        "spacing_max_abs_diff_mm": spacing_diff,
        "direction_max_abs_diff": direction_diff,
        "geometry_equal": max(origin_diff, spacing_diff, direction_diff) <= GEOMETRY_TOLERANCE_MM,
    }


def _run_child(spec: dict) -> None:
    folder = Path(spec["folder"])
    task = spec["task"]
    if task == "radview":
        result = _child_radview(folder, spec["repeat"], spec["workers"])
    elif task == "simpleitk":
        result = _child_simpleitk(folder, spec["repeat"])
    elif task == "verify":
        result = _child_verify(folder)
    elif task == "generate":
        result = _child_generate(folder, spec["kind"], spec["matrix"], spec["slices"])
    else:
        raise ValueError(f"unknown child task {task!r}")
    Path(spec["result"]).write_text(json.dumps(result))


# ============================================================================ parent side
def _in_subprocess(task: str, folder: Path, **options: object) -> dict:
    """Run one child task in a fresh interpreter (with a warm page cache) and return its
    report; ``options`` are the task's parameters (``repeat``, ``workers``, ...)."""
    if task != "generate":
        warm_page_cache(folder)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p
    )
    with tempfile.TemporaryDirectory(prefix="radview-bench-") as scratch:
        result_path = Path(scratch) / "result.json"
        spec = {"task": task, "folder": str(folder), "result": str(result_path), **options}
        command = [sys.executable, "-m", "benchmarks.load", "--child", json.dumps(spec)]
        completed = subprocess.run(command, cwd=REPO_ROOT, env=env, check=False)
        if completed.returncode != 0:
            raise RuntimeError(f"benchmark child {task} {options} on {folder} "
                               f"exited with status {completed.returncode}")
        return json.loads(result_path.read_text())


def _measure_interleaved(folder: Path, contenders: dict[str, dict], repeat: int) -> dict:
    """Each contender's report, measured in ``repeat`` rounds of fresh subprocesses.

    A round runs every contender once (warm-up + one timed run), in an order that rotates
    from round to round, so that other work on a shared machine hits all contenders alike
    instead of whichever happened to run during the busy minute.
    """
    names = list(contenders)
    reports: dict[str, list[dict]] = {name: [] for name in names}
    for round_number in range(repeat):
        shift = round_number % len(names)
        for name in names[shift:] + names[:shift]:
            options = dict(contenders[name])
            task = options.pop("task")
            reports[name].append(_in_subprocess(task, folder, repeat=1, **options))
    return {name: _merge(parts) for name, parts in reports.items()}


def _merge(parts: list[dict]) -> dict:
    """One report from several children: all runs, peak memory = the largest child's, and
    per-phase median and min over the timed runs."""
    merged = dict(parts[0])
    merged["runs"] = [run for part in parts for run in part["runs"]]
    merged["warmups"] = [part["warmup"] for part in parts]
    del merged["warmup"]
    for key in merged:
        if key.endswith("_mib"):
            merged[key] = max(part[key] for part in parts)
    runs = merged["runs"]
    keys = [k for k in runs[0] if all(isinstance(r.get(k), (int, float)) for r in runs)]
    merged["median"] = {k: statistics.median(r[k] for r in runs) for k in keys}
    merged["min"] = {k: min(r[k] for r in runs) for k in keys}
    return merged


def run_benchmark(matrix: int, slices: int, j2k_slices: int, repeat: int,
                  data_dir: Path) -> dict:
    results: dict = {
        "machine": machine_info(),
        "versions": package_versions("radview", "pydicom", "SimpleITK", "numpy",
                                     "pylibjpeg-openjpeg"),
        "parameters": {"matrix": matrix, "slices": slices, "j2k_slices": j2k_slices,
                       "repeat": repeat, "cache": "warm"},
    }

    folder, info = ensure_series(data_dir, "uncompressed", matrix, slices)
    print(f"uncompressed: {info['files']} files, {info['bytes_on_disk'] / MIB:.0f} MiB", flush=True)
    plain = {"series": {**info, "folder": str(folder)}}
    plain.update(_measure_interleaved(folder, {
        "radview": {"task": "radview", "workers": None},
        "simpleitk": {"task": "simpleitk"},
    }, repeat))
    plain["check"] = _in_subprocess("verify", folder)
    plain["voxels_equal"] = plain["check"]["voxels_equal"]
    plain["geometry_equal"] = plain["check"]["geometry_equal"]
    plain["speedup_total_vs_simpleitk"] = (
        plain["simpleitk"]["median"]["total_s"] / plain["radview"]["median"]["total_s"]
    )
    plain["speedup_total_vs_simpleitk_best_runs"] = (
        plain["simpleitk"]["min"]["total_s"] / plain["radview"]["min"]["total_s"]
    )
    results["uncompressed"] = plain

    folder, info = ensure_series(data_dir, "jpeg2000", matrix, j2k_slices)
    print(f"jpeg2000: {info['files']} files, {info['bytes_on_disk'] / MIB:.0f} MiB", flush=True)
    j2k = {"series": {**info, "folder": str(folder)}}
    j2k.update(_measure_interleaved(folder, {
        "radview": {"task": "radview", "workers": None},
        "radview_workers1": {"task": "radview", "workers": 1},
        "simpleitk": {"task": "simpleitk"},
    }, repeat))
    j2k["check"] = _in_subprocess("verify", folder)
    j2k["voxels_equal"] = j2k["check"]["voxels_equal"]
    j2k["geometry_equal"] = j2k["check"]["geometry_equal"]
    j2k["cpu_per_wall_load"] = j2k["radview"]["median"]["load_cpu_per_wall"]
    j2k["cpu_per_wall_total"] = j2k["radview"]["median"]["total_cpu_per_wall"]
    j2k["speedup_load_vs_workers1"] = (
        j2k["radview_workers1"]["median"]["load_s"] / j2k["radview"]["median"]["load_s"]
    )
    j2k["speedup_total_vs_workers1"] = (
        j2k["radview_workers1"]["median"]["total_s"] / j2k["radview"]["median"]["total_s"]
    )
    j2k["speedup_total_vs_simpleitk"] = (
        j2k["simpleitk"]["median"]["total_s"] / j2k["radview"]["median"]["total_s"]
    )
    results["jpeg2000"] = j2k
    results["targets"] = evaluate_targets(results)
    if hasattr(os, "getloadavg"):
        results["machine"]["loadavg_at_end"] = list(os.getloadavg())
    return results


def evaluate_targets(results: dict) -> dict:
    plain, j2k = results["uncompressed"], results["jpeg2000"]
    rv = plain["radview"]
    raw_bytes = plain["series"]["raw_voxel_bytes"]
    rss_limit = RSS_FACTOR * raw_bytes / MIB + RSS_ALLOWANCE_MIB
    rss = rv["peak_rss_mib"] + rv["workers_peak_rss_mib"]
    fractions = [r["first_slice_s"] / r["load_s"] for r in rv["runs"]
                 if r["first_slice_s"] is not None]
    first_fraction = max(fractions) if len(fractions) == len(rv["runs"]) else None
    cores = results["machine"]["cpu_count"] or 1
    cpu_per_wall = j2k["cpu_per_wall_load"]
    return {
        "uncompressed_total_speedup_vs_simpleitk": target(
            round(plain["speedup_total_vs_simpleitk"], 3), SPEEDUP_TARGET,
            plain["speedup_total_vs_simpleitk"] >= SPEEDUP_TARGET,
            "SimpleITK total / radview total (median, warm cache); radview must be >= 2x faster",
        ),
        "uncompressed_peak_rss_mib": target(
            round(rss, 1), round(rss_limit, 1), rss <= rss_limit,
            "radview peak RSS in MiB (loading process VmHWM + sampled peak of its worker "
            "processes) <= 1.3 x raw voxel bytes + 150 MiB",
        ),
        "first_slice_before_load_end": target(
            None if first_fraction is None else round(first_fraction, 4), 1.0,
            first_fraction is not None and first_fraction < 1.0,
            "first on_slice callback time / load_stack time, worst timed run; must be < 1",
        ),
        "uncompressed_same_as_simpleitk": target(
            plain["voxels_equal"] and plain["geometry_equal"], True,
            plain["voxels_equal"] and plain["geometry_equal"],
            "identical voxel values; origin, spacing and direction within 1e-3",
        ),
        "jpeg2000_same_as_simpleitk": target(
            j2k["voxels_equal"] and j2k["geometry_equal"], True,
            j2k["voxels_equal"] and j2k["geometry_equal"],
            "identical voxel values; origin, spacing and direction within 1e-3",
        ),
        "jpeg2000_cpu_per_wall": target(
            round(cpu_per_wall, 3), CPU_PER_WALL_TARGET,
            cpu_per_wall > CPU_PER_WALL_TARGET if cores >= 2 else None,
            "CPU seconds (self + workers) / wall seconds of radview's parallel load_stack; "
            "> 1.5 shows two cores at work (not evaluated on one core)",
        ),
    }


# ============================================================================ output
def _fmt(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds:.3f}"


def _row(label: str, report: dict, first_slice: bool = True) -> str:
    med, low = report["median"], report["min"]
    cells = [f"{_fmt(med[k])} ({_fmt(low[k])})" for k in ("discover_s", "load_s", "total_s")]
    first = _fmt(med.get("first_slice_s")) if first_slice else "-"
    return (f"  {label:<22}{cells[0]:>17}{cells[1]:>17}{cells[2]:>17}{first:>12}"
            f"{report['peak_rss_mib']:>10.0f}{report['workers_peak_rss_mib']:>10.0f}")


def format_report(results: dict) -> str:
    p = results["parameters"]
    header = (f"  {'contender':<22}{'find files':>17}{'load':>17}{'total':>17}{'1st slice':>12}"
              f"{'RSS MiB':>10}{'wkr MiB':>10}")
    plain, j2k = results["uncompressed"], results["jpeg2000"]
    shape = "x".join(str(n) for n in reversed(plain["series"]["shape"]))
    j2k_shape = "x".join(str(n) for n in reversed(j2k["series"]["shape"]))
    lines = [
        f"load benchmark, {results['machine']['cpu_count']} cores, warm cache; seconds as "
        f"median (min) of {p['repeat']} runs, each in a fresh process after a warm-up run",
        f"uncompressed int16 {shape} ({plain['series']['raw_voxel_bytes'] / MIB:.0f} MiB raw)",
        header,
        _row("radview", plain["radview"]),
        _row("SimpleITK", plain["simpleitk"], first_slice=False),
        f"  speed-up {plain['speedup_total_vs_simpleitk']:.2f}x; first slice "
        f"{plain['radview']['median']['first_slice_s']:.3f} s into load_stack "
        f"({plain['radview']['median']['first_slice_from_start_s']:.3f} s after discover began); "
        f"voxels equal: {plain['voxels_equal']}, geometry equal: {plain['geometry_equal']}",
        f"JPEG 2000 lossless {j2k_shape}",
        header,
        _row(f"radview ({j2k['radview']['workers']} workers)", j2k["radview"]),
        _row("radview (workers=1)", j2k["radview_workers1"]),
        _row("SimpleITK", j2k["simpleitk"], first_slice=False),
        f"  load speed-up over workers=1 {j2k['speedup_load_vs_workers1']:.2f}x, CPU/wall of the "
        f"parallel load {j2k['cpu_per_wall_load']:.2f}, total vs SimpleITK "
        f"{j2k['speedup_total_vs_simpleitk']:.2f}x, voxels equal: {j2k['voxels_equal']}",
        "targets",
    ]
    return "\n".join(lines + verdict_lines(results))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.load", description=__doc__
                                     .split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("build/bench/load.json"))
    parser.add_argument("--slices", type=int, default=500)
    parser.add_argument("--matrix", type=int, default=512)
    parser.add_argument("--j2k-slices", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--data-dir", type=Path, default=Path("build/bench/data"),
                        help="where the generated series are cached")
    parser.add_argument("--child", help=argparse.SUPPRESS)  # internal: one contender's run
    args = parser.parse_args(argv)
    if args.child:
        _run_child(json.loads(args.child))
        return 0
    if min(args.slices, args.j2k_slices, args.repeat) < 1 or args.matrix < 2:
        parser.error("--slices, --j2k-slices and --repeat must be >= 1, --matrix >= 2")

    results = run_benchmark(args.matrix, args.slices, args.j2k_slices, args.repeat,
                            args.data_dir.resolve())
    publish(results, args.out, format_report(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
