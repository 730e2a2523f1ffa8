"""The render and soak benchmarks run end to end at tiny sizes and write the documented JSON."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]


def _run(module: str, out: Path, *args: str) -> dict:
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    result = subprocess.run([sys.executable, "-m", module, "--out", str(out), *args],
                            cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(out.read_text())


def test_render_benchmark_writes_results_and_targets(tmp_path):
    results = _run("benchmarks.render", tmp_path / "render.json", "--matrix", "48",
                   "--slices", "12", "--size", "160", "--frames", "8", "--warmup", "1")
    assert {"machine", "versions", "parameters", "study", "reslice_only", "display_paths",
            "targets", "all_passed"} <= results.keys()
    for name in ("slice_view_axial", "slice_view_coronal", "slice_view_sagittal",
                 "image_view_axial"):
        for mode in ("forced", "event_loop"):
            timing = results[name][mode]
            assert {"median_ms", "p95_ms", "cpu_median_ms", "frames"} <= timing.keys()
            assert timing["frames"] == 8
        # Every timed forced frame really painted the graphics viewport once.
        assert results[name]["forced"]["paints_per_frame"] == 1.0
    assert set(results["targets"]) == {"axial_median_ms", "axial_not_slower_than_image_view",
                                       "coronal_frame_median_ms", "sagittal_frame_median_ms"}
    for target in results["targets"].values():
        assert {"value", "limit", "pass", "description"} <= target.keys()
        assert isinstance(target["pass"], bool)
    assert set(results["reslice_only"]) == {"axial", "coronal", "sagittal"}
    assert set(results["display_paths"]) == {"imageitem_levels_on_raw_int16",
                                             "window_to_uint8_then_imageitem_levels",
                                             "radview_lut_to_rgb32"}


def test_soak_benchmark_reports_memory_and_exit_status(tmp_path):
    results = _run("benchmarks.soak", tmp_path / "soak.json", "--changes", "120",
                   "--matrix", "32", "--slices", "10", "--size", "120")
    soak = results["soak"]
    assert soak["returncode"] == 0 and soak["completed"] and not soak["crashed"]
    assert soak["changes"] == 120
    assert {"rss_before_mb", "rss_after_mb", "rss_growth_mb", "rss_samples",
            "ms_per_change", "scene_items_before", "scene_items_after"} <= soak.keys()
    assert set(results["targets"]) == {"completed_without_crash", "rss_growth_mb"}
    assert results["targets"]["completed_without_crash"]["pass"] is True
    assert results["all_passed"] == all(t["pass"] for t in results["targets"].values())


def test_responsiveness_benchmark_measures_the_event_loop_during_a_load(tmp_path):
    results = _run("benchmarks.responsiveness", tmp_path / "resp.json", "--matrix", "48",
                   "--slices", "12", "--data-dir", str(tmp_path / "data"))
    ours = results["radview_background_load"]
    assert ours["load_seconds"] > 0 and ours["ticks"] > 0
    assert ours["first_slice_seconds"] <= ours["load_seconds"]
    assert set(results["targets"]) == {"max_event_loop_gap_ms", "first_slice_before_load_end"}
    assert {"cpu_count", "platform"} <= results["machine"].keys()
