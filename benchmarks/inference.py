"""Inference benchmark: liver segmentation end to end (ONNX Runtime against PyTorch eager in the
same pipeline), its peak memory, per-slice triage speed on one core, and INT8 when it exists.

Usage (from the repository root)::

    python -m benchmarks.inference --out build/bench/inference.json [--slices 300] [--matrix 512]
        [--models-dir src/radview/models_onnx] [--runs-dir build/train/runs]
        [--quantized-dir build/train/quantized] [--untrained [--width 16]] [--repeat 3]
        [--threads 2] [--seed 0] [--data-dir build/bench/data]

**The volume** is a synthetic abdominal CT from the training phantom generator
(``training.phantoms.generate_case``, the models' own domain) with ``--matrix`` x ``--matrix``
x ``--slices`` int16 voxels, a ~384 mm field of view (pixel spacing 0.7-0.8 mm at 512) and
300 mm of coverage (1 mm slices at 300). It is generated once in a child process and cached
under ``--data-dir`` as ``ct.npy`` + ``volume.json``; generating it is not timed.

**The models** are ``liver-tumor-seg`` and ``slice-triage`` from ``--models-dir`` (validated by
the app's registry), and the PyTorch weights of the same segmentation network from
``--runs-dir/liver-tumor-seg/best.pt``. ``--untrained`` instead exports freshly initialised
networks (``--width`` base channels, the shipped architecture) into a temporary folder: speed
does not depend on the weights, but post-processing and lesion measurement then work on
meaningless labels. An INT8 model written by ``python -m training.quantize`` in
``--quantized-dir/liver-tumor-seg`` is timed too when it exists.

**Contenders** (each run in its own fresh interpreter, so peak memory is its own; ``--repeat``
rounds, every contender once per round in rotating order):

* ``onnxruntime``: :func:`radview.inference.pipeline.segment` on the CPU with a
  :class:`~radview.inference.runtime.SessionCache` of ``--threads`` intra-op threads, then
  :func:`radview.core.lesions.measure_liver` on its labels. Wall time from the call of
  ``segment`` (which opens the session) to the findings; loading the volume is not timed.
* ``pytorch`` (the named peer): the *same* network under PyTorch eager
  (``torch.set_num_threads(--threads)``, ``torch.inference_mode()``) inside the *same*
  pipeline: :class:`TorchSessions` stands in for the session cache, so preprocessing and
  post-processing are identical and only the inference engine differs. Opening it loads the
  weights, as opening an onnxruntime session loads the model. After the timed run the child
  checks that the network really is the ONNX model's (max |logit difference| on random inputs,
  ``training.export.parity``).
* ``onnxruntime_int8``: as ``onnxruntime`` with the quantised model (only if it exists).
* ``triage``: :func:`radview.inference.triage.triage_slices` on the same volume, with one
  intra-op thread and the process pinned to one CPU (``sched_setaffinity``, Linux).

Every session is wrapped in :class:`TimedSessions`, which adds up the time spent in ``run``:
that is the inference-only time of each engine, measured inside the real pipeline.

**Memory**: ``peak_rss_mib`` is the child's ``VmHWM`` (Linux; ``ru_maxrss`` elsewhere), nothing
subtracted: the interpreter, the imports, the loaded volume and the run. The parent imports
nothing heavy, so it adds nothing through fork + exec.

**Targets** (from the issue; a miss is printed as a ``FAIL`` line, the exit status stays 0; a
crashed child makes it non-zero):

* ``segment_end_to_end_s``: median segment + measure_liver wall time <= 20 s;
* ``onnxruntime_speedup_vs_pytorch``: PyTorch end-to-end median / ONNX Runtime's >= 1.5;
* ``pytorch_peer_same_network``: the peer's logits equal the ONNX model's within 1e-3;
* ``segment_peak_rss_mib``: ONNX Runtime child's peak <= 2.5 x raw int16 voxel bytes + 300 MiB;
* ``triage_model_ms_per_slice_one_core``: time in ``run`` / slices through the model <= 5 ms.

This module is also the entry point of the child processes (``--child``): its top-level
imports are the standard library only, so the parent stays small.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import inspect
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path

from benchmarks.common import machine_info, package_versions, publish, target, verdict_lines

__all__ = ["main", "run_benchmark", "export_untrained", "TorchSessions", "TimedSessions"]

#: Bump when the same parameters would generate a different volume (invalidates the cache).
DATA_VERSION = 1
REPO_ROOT = Path(__file__).resolve().parents[1]
MIB = 2**20
SEGMENTATION_ID = "liver-tumor-seg"
TRIAGE_ID = "slice-triage"
#: Field of view and coverage of the synthetic CT (the 512 x 512 x 300 case: 0.7-0.8 mm, 1 mm).
FOV_SPACING_AT_512_MM = (0.7, 0.8)
COVERAGE_MM = 300.0

#: Targets from the issue.
END_TO_END_LIMIT_S = 20.0
SPEEDUP_TARGET = 1.5  # ONNX Runtime at least 1.5x faster than PyTorch eager, same pipeline
RSS_FACTOR, RSS_ALLOWANCE_MIB = 2.5, 300.0  # peak RSS <= 2.5 x raw int16 bytes + 300 MiB
TRIAGE_MS_PER_SLICE_LIMIT = 5.0  # "<= 5 ms per slice on one CPU core" (model only)
SAME_NETWORK_TOLERANCE = 1e-3  # max |logit difference| between the peer and the ONNX model


# ============================================================================ session adapters
class TimedSessions:
    """Wraps a session cache (radview's :class:`SessionCache` or :class:`TorchSessions`) and
    adds up the wall time spent opening sessions and inside ``run``, and the slices run."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.open_s = 0.0
        self.run_s = 0.0
        #: VmHWM when the first session was opened, i.e. the peak of preprocessing alone
        self.peak_rss_at_open_mib: float | None = None
        self.calls: list[float] = []  # seconds of each run() call
        self.call_slices: list[int] = []  # slices (batch size) of each call

    @property
    def slices(self) -> int:
        return sum(self.call_slices)

    def open(self, model_path, device="auto"):
        if self.peak_rss_at_open_mib is None:
            self.peak_rss_at_open_mib = round(_peak_rss_mib(), 1)
        started = time.perf_counter()
        session = self.inner.open(model_path, device)
        self.open_s += time.perf_counter() - started
        return _TimedSession(self, session)

    def ms_per_slice_after_first_call(self) -> float | None:
        """Steady-state time per slice: without the first call, which carries the engine's
        one-time set-up (PyTorch's lazy kernel initialisation, onnxruntime's first arena
        allocation). None with fewer than two calls."""
        rest = sum(self.call_slices[1:])
        return 1000 * sum(self.calls[1:]) / rest if rest else None


class _TimedSession:
    def __init__(self, owner: TimedSessions, session) -> None:
        self._owner = owner
        self._session = session

    @property
    def provider(self) -> str:
        return self._session.provider

    @property
    def fallback_reason(self) -> str | None:
        return self._session.fallback_reason

    def run(self, feeds, output_names=None):
        started = time.perf_counter()
        result = self._session.run(feeds, output_names)
        elapsed = time.perf_counter() - started
        owner = self._owner
        owner.run_s += elapsed
        owner.calls.append(elapsed)
        owner.call_slices.append(int(next(iter(feeds.values())).shape[0]))
        return result


class TorchSessions:
    """A stand-in for :class:`radview.inference.runtime.SessionCache` that runs a PyTorch
    module instead of the ONNX file, with the interface the pipelines use: ``open(path,
    device)`` returns an object with ``provider``, ``fallback_reason`` and ``run(feeds,
    output_names) -> RunResult``.

    Parameters
    ----------
    load
        Called once, on the first ``open``: returns ``(module, anything)``, e.g.
        ``lambda: training.train.load_best(runs, model_id)``. Loading is part of opening, as
        loading the ``.onnx`` is part of opening an onnxruntime session.
    threads
        ``torch.set_num_threads``.
    """

    def __init__(self, load, threads: int) -> None:
        self._load = load
        self.threads = threads
        self.net = None
        self.extra = None
        self._session = None

    def open(self, model_path, device="cpu") -> _TorchSession:
        if device not in ("cpu", "auto"):
            raise ValueError(f"TorchSessions runs on the CPU only, not {device!r}")
        if self._session is None:
            import torch

            torch.set_num_threads(self.threads)
            self.net, self.extra = self._load()
            self.net.eval()
            self._session = _TorchSession(self.net, f"PyTorch eager CPU ({self.threads} threads)")
        return self._session


class _TorchSession:
    fallback_reason = None

    def __init__(self, net, provider: str) -> None:
        self.net = net
        self.provider = provider

    def run(self, feeds, output_names=None):
        import numpy as np
        import torch

        from radview.inference.runtime import RunResult

        if len(feeds) != 1:
            raise ValueError(f"expected one input, got {sorted(feeds)}")
        (value,) = feeds.values()
        with torch.inference_mode():
            output = self.net(torch.from_numpy(np.ascontiguousarray(value)))
        names = list(output_names) if output_names else ["logits"]
        return RunResult({names[0]: output.numpy()}, self.provider, None)


# ============================================================================ child side
def _peak_rss_mib() -> float:
    """This process's own high-water RSS: ``VmHWM`` where Linux provides it (per address
    space, nothing inherited from the parent), else ``ru_maxrss``."""
    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass  # not Linux: fall back to getrusage
    return _ru_maxrss_mib()


def _ru_maxrss_mib() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / MIB if sys.platform == "darwin" else peak / 1024


def _cpu_seconds() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    return own.ru_utime + own.ru_stime


def _child_generate(folder: Path, matrix: int, slices: int, seed: int) -> dict:
    """Render the benchmark CT into ``folder`` (``ct.npy`` + ``volume.json``), atomically."""
    import numpy as np
    from training.phantoms import GENERATOR_VERSION, PhantomConfig, generate_case

    scale = 512 / matrix
    spacing = tuple(round(value * scale, 4) for value in FOV_SPACING_AT_512_MM)
    thickness = round(COVERAGE_MM / slices, 4)
    started = time.perf_counter()
    case = generate_case(seed, config=PhantomConfig(
        matrix=matrix, slices=slices, pixel_spacing_mm=spacing,
        slice_thickness_mm=(thickness, thickness)))
    seconds = time.perf_counter() - started
    ct = case.ct
    truth = case.labels.voxels
    info = {
        "name": folder.name,
        "generator": f"training.phantoms v{GENERATOR_VERSION}, seed {seed}",
        "shape": list(ct.shape),
        "dtype": str(ct.voxels.dtype),
        "spacing_mm": list(ct.spacing),
        "origin": list(ct.origin),
        "direction": [list(map(float, row)) for row in ct.direction],
        "modality": ct.modality,
        "hu_range": [int(ct.voxels.min()), int(ct.voxels.max())],
        "raw_voxel_bytes": int(ct.voxels.size * 2),  # int16, as a CT series is stored
        "truth_liver_voxels": int(np.count_nonzero(truth == 1)),
        "truth_tumour_voxels": int(np.count_nonzero(truth == 2)),
        "truth_lesions": len(case.lesions),
        "generate_seconds": round(seconds, 2),
    }
    folder.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{folder.name}-", dir=folder.parent) as scratch:
        staging = Path(scratch) / folder.name
        staging.mkdir()
        np.save(staging / "ct.npy", np.ascontiguousarray(ct.voxels.astype(np.int16, copy=False)))
        (staging / "volume.json").write_text(json.dumps(info, indent=2))
        if folder.exists():  # a stale folder without volume.json: replace it
            shutil.rmtree(folder)
        os.replace(staging, folder)
    return info


def _load_volume(folder: Path):
    import numpy as np

    from radview.core.volume import Rescale, Volume, VolumeSource

    info = json.loads((folder / "volume.json").read_text())
    voxels = np.load(folder / "ct.npy")
    return Volume(voxels, spacing=tuple(info["spacing_mm"]), origin=tuple(info["origin"]),
                  direction=np.asarray(info["direction"], float), modality=info["modality"],
                  rescale=Rescale(1.0, 0.0, "HU", True),
                  source=VolumeSource("synthetic", description=info["generator"]))


def _registered(model_folder: Path):
    """The model in ``model_folder`` as the app's registry validates it."""
    from radview.inference.registry import ModelSource, validate_model

    return validate_model(model_folder, ModelSource.BUILTIN)


def _model_info(model) -> dict:
    return {"id": model.id, "version": model.manifest.version, "folder": str(model.folder),
            "sha256": model.manifest.sha256,
            "size_mb": round(model.onnx_path.stat().st_size / 1e6, 3)}


def export_untrained(folder: Path, width: int) -> dict:
    """Untrained networks of the shipped architectures: ``models/<id>/`` (ONNX + manifest, as
    the app installs them) and ``runs/<id>/best.pt`` (as ``training.train`` saves them)."""
    from dataclasses import asdict

    import torch
    from training.export import export_onnx, write_manifest
    from training.train import TrainConfig, build_network

    torch.manual_seed(0)
    out = {}
    for model_id in (SEGMENTATION_ID, TRIAGE_ID):
        config = TrainConfig(model=model_id, width=width)
        net = build_network(config).eval()
        model_dir = folder / "models" / model_id
        export_onnx(net, config, model_dir / "model.onnx")
        write_manifest(model_dir, config, "model.onnx", {},
                       f"untrained (benchmark only): width {width}, torch seed 0")
        run_dir = folder / "runs" / model_id
        run_dir.mkdir(parents=True, exist_ok=True)
        torch.save({"config": asdict(config), "model": net.state_dict()}, run_dir / "best.pt")
        out[model_id] = {"width": width}
    return out


def _labels_summary(labels) -> dict:
    import numpy as np

    counts = np.bincount(labels.ravel(), minlength=3)
    return {"liver_voxels": int(counts[1]), "tumour_voxels": int(counts[2]),
            "labels_sha256": hashlib.sha256(np.ascontiguousarray(labels).data).hexdigest()}


def _child_segment(volume_dir: Path, model_folder: Path, engine: str, threads: int,
                   runs_dir: str | None) -> dict:
    from radview.core.lesions import NoLiverError, measure_liver
    from radview.inference.pipeline import segment
    from radview.inference.runtime import SessionCache, import_onnxruntime

    import_onnxruntime()
    if engine == "pytorch":
        import torch  # imported before the clock, as onnxruntime is
        from training.train import load_best

        inner = TorchSessions(lambda: load_best(Path(runs_dir), SEGMENTATION_ID), threads)
        engine_version = torch.__version__
    else:
        inner = SessionCache(threads=threads)
        engine_version = import_onnxruntime().__version__
    model = _registered(model_folder)
    gc.collect()
    baseline = _peak_rss_mib()
    volume = _load_volume(volume_dir)
    loaded = _peak_rss_mib()
    sessions = TimedSessions(inner)

    cpu0, t0 = _cpu_seconds(), time.perf_counter()
    result = segment(volume, model, sessions, device="cpu")
    t1 = time.perf_counter()
    try:  # as `radview analyze` does: no liver is a result, not an error
        findings = measure_liver(result.labels, volume)
    except NoLiverError:
        findings = None
    t2, cpu2 = time.perf_counter(), _cpu_seconds()
    peak = _peak_rss_mib()

    run = {
        "segment_s": t1 - t0,
        "measure_s": t2 - t1,
        "total_s": t2 - t0,
        "inference_s": sessions.run_s,
        "session_open_s": sessions.open_s,
        "pipeline_other_s": (t1 - t0) - sessions.run_s - sessions.open_s,
        "inference_ms_per_slice": 1000 * sessions.run_s / max(1, sessions.slices),
        "inference_ms_per_slice_after_first_batch": sessions.ms_per_slice_after_first_call(),
        "cpu_s": cpu2 - cpu0,
        "cpu_per_wall": (cpu2 - cpu0) / (t2 - t0),
    }
    report = {
        "engine": engine,
        "engine_version": engine_version,
        "model": _model_info(model),
        "threads": threads,
        "batch_size": inspect.signature(segment).parameters["batch_size"].default,
        "provider": result.provider,
        "fallback_reason": result.fallback_reason,
        "warnings": list(result.warnings),
        "inference_calls": len(sessions.calls),
        "model_slices": sessions.slices,
        "liver_found": findings is not None,
        "lesions_found": None if findings is None else len(findings.lesions),
        **_labels_summary(result.labels.voxels),
        "runs": [run],
        "baseline_rss_mib": round(baseline, 1),
        "volume_loaded_rss_mib": round(loaded, 1),
        "peak_rss_mib": round(peak, 1),
        "preprocessing_peak_rss_mib": sessions.peak_rss_at_open_mib,
        "ru_maxrss_mib": round(_ru_maxrss_mib(), 1),
    }
    if engine == "pytorch":
        from training.export import parity

        report["weights"] = str(Path(runs_dir) / SEGMENTATION_ID / "best.pt")
        report["parity_max_abs_vs_onnx"] = parity(inner.net, inner.extra, model.onnx_path,
                                                  batches=1)
    return report


def _child_triage(volume_dir: Path, model_folder: Path, threads: int, pin: bool) -> dict:
    from radview.inference.runtime import SessionCache, import_onnxruntime
    from radview.inference.triage import triage_slices

    ort = import_onnxruntime()
    affinity = None
    if pin and hasattr(os, "sched_setaffinity"):
        first = min(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {first})
        affinity = sorted(os.sched_getaffinity(0))
    model = _registered(model_folder)
    volume = _load_volume(volume_dir)
    sessions = TimedSessions(SessionCache(threads=threads))
    gc.collect()
    t0 = time.perf_counter()
    result = triage_slices(volume, model, sessions, device="cpu")
    seconds = time.perf_counter() - t0
    run = {
        "pipeline_s": seconds,
        "pipeline_ms_per_slice": 1000 * seconds / volume.shape[0],
        "model_s": sessions.run_s,
        "model_ms_per_slice": 1000 * sessions.run_s / max(1, sessions.slices),
        "model_ms_per_slice_after_first_batch": sessions.ms_per_slice_after_first_call(),
        "session_open_s": sessions.open_s,
    }
    return {
        "engine_version": ort.__version__,
        "model": _model_info(model),
        "threads": threads,
        "cpu_affinity": affinity,
        "batch_size": inspect.signature(triage_slices).parameters["batch_size"].default,
        "provider": result.provider,
        "source_slices": int(volume.shape[0]),
        "model_slices": sessions.slices,
        "inference_calls": len(sessions.calls),
        "slices_over_0_5": int((result.probabilities >= 0.5).sum()),
        "runs": [run],
        "peak_rss_mib": round(_peak_rss_mib(), 1),
    }


def _run_child(spec: dict) -> None:
    task = spec["task"]
    if task == "generate":
        result = _child_generate(Path(spec["folder"]), spec["matrix"], spec["slices"],
                                 spec["seed"])
    elif task == "export":
        result = export_untrained(Path(spec["folder"]), spec["width"])
    elif task == "segment":
        result = _child_segment(Path(spec["volume"]), Path(spec["model"]), spec["engine"],
                                spec["threads"], spec.get("runs_dir"))
    elif task == "triage":
        result = _child_triage(Path(spec["volume"]), Path(spec["model"]), spec["threads"],
                               spec["pin"])
    else:
        raise ValueError(f"unknown child task {task!r}")
    Path(spec["result"]).write_text(json.dumps(result))


# ============================================================================ parent side
def _in_subprocess(task: str, **options: object) -> dict:
    """Run one child task in a fresh interpreter and return its JSON report."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p)
    with tempfile.TemporaryDirectory(prefix="radview-bench-") as scratch:
        result_path = Path(scratch) / "result.json"
        spec = {"task": task, "result": str(result_path), **options}
        command = [sys.executable, "-m", "benchmarks.inference", "--child", json.dumps(spec)]
        completed = subprocess.run(command, cwd=REPO_ROOT, env=env, check=False)
        if completed.returncode != 0:
            raise RuntimeError(f"benchmark child {task} {options} exited with status "
                               f"{completed.returncode}")
        return json.loads(result_path.read_text())


def ensure_volume(data_dir: Path, matrix: int, slices: int, seed: int) -> tuple[Path, dict]:
    """The cached volume folder and its description; generated (in a child) if missing."""
    folder = data_dir / f"inference-ct-{matrix}x{matrix}x{slices}-seed{seed}-v{DATA_VERSION}"
    info_path = folder / "volume.json"
    cached = info_path.is_file()
    if not cached:
        print(f"generating {folder.name} (once; cached in {data_dir}) ...", flush=True)
        _in_subprocess("generate", folder=str(folder), matrix=matrix, slices=slices, seed=seed)
    info = json.loads(info_path.read_text())
    info["cached"] = cached
    return folder, info


def find_model_folder(models_dir: Path, model_id: str) -> Path | None:
    """The sub-folder of ``models_dir`` whose ``model.toml`` has ``id = model_id`` (read with
    tomllib only: the parent process stays small; the children validate it fully)."""
    if not models_dir.is_dir():
        return None
    for folder in sorted(models_dir.iterdir()):
        manifest = folder / "model.toml"
        if folder.name.startswith(".") or not manifest.is_file():
            continue
        try:
            if tomllib.loads(manifest.read_text()).get("id") == model_id:
                return folder
        except (tomllib.TOMLDecodeError, OSError, UnicodeDecodeError):
            continue  # the registry explains broken manifests; here it is just not a match
    return None


def _merge(parts: list[dict]) -> dict:
    """One contender's report from its children: every run, median and min per timing, the
    largest peak memory."""
    merged = dict(parts[-1])
    merged["runs"] = [run for part in parts for run in part["runs"]]
    for key in merged:
        if key.endswith("_mib"):
            merged[key] = max(part[key] for part in parts)
    runs = merged["runs"]
    keys = [k for k in runs[0] if all(isinstance(r.get(k), (int, float)) for r in runs)]
    merged["median"] = {k: statistics.median(r[k] for r in runs) for k in keys}
    merged["min"] = {k: min(r[k] for r in runs) for k in keys}
    if "labels_sha256" in merged:
        merged["labels_same_in_every_run"] = len({p["labels_sha256"] for p in parts}) == 1
    if "parity_max_abs_vs_onnx" in merged:
        merged["parity_max_abs_vs_onnx"] = max(p["parity_max_abs_vs_onnx"] for p in parts)
    return merged


def run_benchmark(*, matrix: int, slices: int, seed: int, repeat: int, threads: int,
                  data_dir: Path, models_dir: Path, runs_dir: Path, quantized_dir: Path,
                  untrained: bool, width: int, scratch: Path) -> dict:
    results: dict = {
        "benchmark": "inference",
        "machine": machine_info(),
        "versions": package_versions("radview", "onnxruntime", "torch", "numpy", "SimpleITK",
                                     "scipy"),
        "parameters": {"matrix": matrix, "slices": slices, "seed": seed, "repeat": repeat,
                       "threads": threads, "models_dir": str(models_dir),
                       "runs_dir": str(runs_dir), "quantized_dir": str(quantized_dir),
                       "untrained": untrained, "width": width if untrained else None},
    }
    if untrained:
        print(f"exporting untrained networks (width {width}) to {scratch}", flush=True)
        _in_subprocess("export", folder=str(scratch), width=width)
        models_dir, runs_dir = scratch / "models", scratch / "runs"
    seg_folder = find_model_folder(models_dir, SEGMENTATION_ID)
    triage_folder = find_model_folder(models_dir, TRIAGE_ID)
    int8_folder = find_model_folder(quantized_dir, SEGMENTATION_ID)
    int8_matches = _quantized_from(int8_folder, seg_folder) if int8_folder else None
    results["weights"] = ("untrained (exported for this run)" if untrained
                          else str(runs_dir / SEGMENTATION_ID / "best.pt"))

    folder, info = ensure_volume(data_dir, matrix, slices, seed)
    results["volume"] = {**info, "folder": str(folder)}
    shape = "x".join(str(n) for n in reversed(info["shape"]))
    print(f"volume {shape} int16 ({info['raw_voxel_bytes'] / MIB:.0f} MiB raw)", flush=True)

    contenders: dict[str, dict] = {
        "onnxruntime": {"task": "segment", "engine": "onnxruntime", "model": str(seg_folder)},
        "pytorch": {"task": "segment", "engine": "pytorch", "model": str(seg_folder),
                    "runs_dir": str(runs_dir)},
        "triage": {"task": "triage", "model": str(triage_folder), "threads": 1, "pin": True},
    }
    if int8_folder is not None:
        contenders["onnxruntime_int8"] = {"task": "segment", "engine": "onnxruntime",
                                          "model": str(int8_folder)}
    names = list(contenders)
    parts: dict[str, list[dict]] = {name: [] for name in names}
    for round_number in range(repeat):
        shift = round_number % len(names)
        for name in names[shift:] + names[:shift]:
            options = {"threads": threads, **contenders[name], "volume": str(folder)}
            task = options.pop("task")
            print(f"round {round_number + 1}/{repeat}: {name}", flush=True)
            parts[name].append(_in_subprocess(task, **options))
    reports = {name: _merge(parts[name]) for name in names}

    ort, torch_peer = reports["onnxruntime"], reports["pytorch"]
    segmentation: dict = {"onnxruntime": ort, "pytorch": torch_peer,
                          "onnxruntime_int8": reports.get("onnxruntime_int8")}
    segmentation["speedup_end_to_end_vs_pytorch"] = (
        torch_peer["median"]["total_s"] / ort["median"]["total_s"])
    segmentation["speedup_inference_vs_pytorch"] = (
        torch_peer["median"]["inference_s"] / ort["median"]["inference_s"])
    steady = (ort["median"].get("inference_ms_per_slice_after_first_batch"),
              torch_peer["median"].get("inference_ms_per_slice_after_first_batch"))
    segmentation["speedup_inference_after_first_batch_vs_pytorch"] = (
        steady[1] / steady[0] if None not in steady else None)
    segmentation["labels_identical_onnxruntime_pytorch"] = (
        ort["labels_sha256"] == torch_peer["labels_sha256"])
    segmentation["liver_voxels_relative_difference_pytorch"] = _relative(
        torch_peer["liver_voxels"], ort["liver_voxels"])
    int8 = segmentation["onnxruntime_int8"]
    if int8 is not None:
        segmentation["int8_speedup_end_to_end"] = ort["median"]["total_s"] / int8["median"][
            "total_s"]
        segmentation["int8_speedup_inference"] = (ort["median"]["inference_s"]
                                                  / int8["median"]["inference_s"])
        segmentation["liver_voxels_relative_difference_int8"] = _relative(
            int8["liver_voxels"], ort["liver_voxels"])
        segmentation["int8_quantized_from_this_fp32"] = int8_matches
    results["segmentation"] = segmentation
    results["triage"] = reports["triage"]
    results["targets"] = evaluate_targets(results)
    results["all_passed"] = all(t["pass"] is not False for t in results["targets"].values())
    if hasattr(os, "getloadavg"):
        results["machine"]["loadavg_at_end"] = list(os.getloadavg())
    return results


def _quantized_from(int8_folder: Path, fp32_folder: Path) -> bool | None:
    """Whether ``training.quantize`` made the INT8 model from this FP32 model (its
    ``quantization.json`` names the FP32 sha256); None when that record is missing."""
    record = int8_folder / "quantization.json"
    if not record.is_file():
        return None
    fp32_sha = tomllib.loads((fp32_folder / "model.toml").read_text()).get("sha256")
    return json.loads(record.read_text()).get("fp32", {}).get("sha256") == fp32_sha


def _relative(value: int, reference: int) -> float | None:
    return None if reference == 0 else (value - reference) / reference


def evaluate_targets(results: dict) -> dict:
    seg = results["segmentation"]
    ort, torch_peer = seg["onnxruntime"], seg["pytorch"]
    raw = results["volume"]["raw_voxel_bytes"]
    rss_limit = RSS_FACTOR * raw / MIB + RSS_ALLOWANCE_MIB
    total = ort["median"]["total_s"]
    speedup = seg["speedup_end_to_end_vs_pytorch"]
    parity = torch_peer["parity_max_abs_vs_onnx"]
    triage_ms = results["triage"]["median"]["model_ms_per_slice"]
    return {
        "segment_end_to_end_s": target(
            round(total, 3), END_TO_END_LIMIT_S, total <= END_TO_END_LIMIT_S,
            "median wall seconds of segment() (ONNX Runtime, CPU, intra-op threads = "
            "--threads) + measure_liver() on the synthetic CT; loading not timed"),
        "onnxruntime_speedup_vs_pytorch": target(
            round(speedup, 3), SPEEDUP_TARGET, speedup >= SPEEDUP_TARGET,
            "PyTorch eager end-to-end median / ONNX Runtime end-to-end median, same network "
            "in the same pipeline (inference-only ratio in segmentation.*)"),
        "pytorch_peer_same_network": target(
            parity, SAME_NETWORK_TOLERANCE, parity <= SAME_NETWORK_TOLERANCE,
            "max |logit difference| between the PyTorch peer and the ONNX model on random "
            "inputs; larger means the comparison is not of the same network"),
        "segment_peak_rss_mib": target(
            ort["peak_rss_mib"], round(rss_limit, 1), ort["peak_rss_mib"] <= rss_limit,
            "VmHWM of the ONNX Runtime child (interpreter, imports, volume and run, nothing "
            "subtracted) <= 2.5 x raw int16 voxel bytes + 300 MiB"),
        "triage_model_ms_per_slice_one_core": target(
            round(triage_ms, 3), TRIAGE_MS_PER_SLICE_LIMIT,
            triage_ms <= TRIAGE_MS_PER_SLICE_LIMIT,
            "median time inside the triage model's run() per slice, one intra-op thread, "
            "process pinned to one CPU (first batch included)"),
    }


# ============================================================================ output
def _row(label: str, report: dict) -> str:
    med = report["median"]
    return (f"  {label:<18}{med['total_s']:>9.2f}{med['segment_s']:>9.2f}"
            f"{med['measure_s']:>9.2f}{med['inference_s']:>10.2f}"
            f"{med['inference_ms_per_slice']:>9.1f}{report['peak_rss_mib']:>9.0f}")


def format_report(results: dict) -> str:
    vol = results["volume"]
    seg = results["segmentation"]
    tri = results["triage"]
    shape = "x".join(str(n) for n in reversed(vol["shape"]))
    lines = [
        f"inference benchmark, {results['machine']['cpu_count']} cores; synthetic CT {shape} "
        f"({vol['raw_voxel_bytes'] / MIB:.0f} MiB int16), weights: {results['weights']}",
        f"segmentation ({seg['onnxruntime']['model']['id']}, {results['parameters']['threads']} "
        f"threads), seconds as median of {results['parameters']['repeat']} fresh processes",
        f"  {'engine':<18}{'total':>9}{'segment':>9}{'measure':>9}{'inference':>10}"
        f"{'ms/slice':>9}{'RSS MiB':>9}",
        _row("onnxruntime", seg["onnxruntime"]),
        _row("pytorch eager", seg["pytorch"]),
    ]
    if seg["onnxruntime_int8"] is not None:
        lines.append(_row("onnxruntime int8", seg["onnxruntime_int8"]))
    ort = seg["onnxruntime"]
    lines.append(f"  onnxruntime memory: {ort['baseline_rss_mib']:.0f} MiB after imports, peak "
                 f"{ort['preprocessing_peak_rss_mib']:.0f} MiB before inference (preprocessing), "
                 f"{ort['peak_rss_mib']:.0f} MiB overall")
    lines.append(f"  ONNX Runtime vs PyTorch: {seg['speedup_end_to_end_vs_pytorch']:.2f}x end to "
                 f"end, {seg['speedup_inference_vs_pytorch']:.2f}x inference only; identical "
                 f"labels: {seg['labels_identical_onnxruntime_pytorch']}")
    if not seg["onnxruntime"]["liver_found"]:
        lines.append("  note: the model found no liver (untrained weights?), so measure_liver "
                     "had nothing to measure and post-processing little to do")
    if seg["onnxruntime_int8"] is not None:
        lines.append(f"  INT8 vs FP32: {seg['int8_speedup_end_to_end']:.2f}x end to end, "
                     f"{seg['int8_speedup_inference']:.2f}x inference only")
        if seg["int8_quantized_from_this_fp32"] is not True:
            lines.append("  note: the INT8 model was not (or not provably) quantised from this "
                         "FP32 model (quantization.json), so its speed-up compares different "
                         "networks")
    med = tri["median"]
    lines += [
        f"triage ({tri['model']['id']}, 1 thread, CPUs {tri['cpu_affinity']}): model "
        f"{med['model_ms_per_slice']:.2f} ms/slice, whole pipeline "
        f"{med['pipeline_ms_per_slice']:.2f} ms/slice ({tri['source_slices']} slices)",
        "targets",
    ]
    return "\n".join(lines + verdict_lines(results))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.inference",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("build/bench/inference.json"))
    parser.add_argument("--matrix", type=int, default=512)
    parser.add_argument("--slices", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0, help="phantom seed")
    parser.add_argument("--repeat", type=int, default=3, help="rounds of fresh processes")
    parser.add_argument("--threads", type=int, default=2,
                        help="intra-op threads of the segmentation engines")
    parser.add_argument("--data-dir", type=Path, default=Path("build/bench/data"),
                        help="where the generated volume is cached")
    parser.add_argument("--models-dir", type=Path, default=Path("src/radview/models_onnx"),
                        help="folder of model folders (model.onnx + model.toml)")
    parser.add_argument("--runs-dir", type=Path, default=Path("build/train/runs"),
                        help="training runs: <runs-dir>/liver-tumor-seg/best.pt is the peer")
    parser.add_argument("--quantized-dir", type=Path, default=Path("build/train/quantized"),
                        help="INT8 models from training.quantize (timed when present)")
    parser.add_argument("--untrained", action="store_true",
                        help="export freshly initialised networks instead of the trained ones")
    parser.add_argument("--width", type=int, default=16,
                        help="base channels of the --untrained networks")
    parser.add_argument("--child", help=argparse.SUPPRESS)  # internal: one contender's run
    args = parser.parse_args(argv)
    if args.child:
        _run_child(json.loads(args.child))
        return 0
    if args.matrix < 16 or args.slices < 1 or args.repeat < 1 or args.threads < 1:
        parser.error("need --matrix >= 16, --slices >= 1, --repeat >= 1, --threads >= 1")
    models_dir, runs_dir = args.models_dir.resolve(), args.runs_dir.resolve()
    if not args.untrained:
        missing = [f"model {model_id} in {models_dir}" for model_id in (SEGMENTATION_ID, TRIAGE_ID)
                   if find_model_folder(models_dir, model_id) is None]
        weights = runs_dir / SEGMENTATION_ID / "best.pt"
        if not weights.is_file():
            missing.append(str(weights))
        if missing:
            parser.error(f"not found: {', '.join(missing)}; train and export the models, or "
                         "pass --untrained to time freshly initialised networks of the same "
                         "architecture")
    with tempfile.TemporaryDirectory(prefix="radview-bench-models-") as scratch:
        results = run_benchmark(
            matrix=args.matrix, slices=args.slices, seed=args.seed, repeat=args.repeat,
            threads=args.threads, data_dir=args.data_dir.resolve(), models_dir=models_dir,
            runs_dir=runs_dir, quantized_dir=args.quantized_dir.resolve(),
            untrained=args.untrained, width=args.width, scratch=Path(scratch))
    publish(results, args.out, format_report(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
