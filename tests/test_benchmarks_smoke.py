"""The load benchmark runs end to end at a tiny size and writes the JSON the docs describe."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
CONTENDER_KEYS = {"runs", "median", "min", "peak_rss_mib", "workers_peak_rss_mib"}
TARGETS = {
    "uncompressed_total_speedup_vs_simpleitk",
    "uncompressed_peak_rss_mib",
    "first_slice_before_load_end",
    "uncompressed_same_as_simpleitk",
    "jpeg2000_same_as_simpleitk",
    "jpeg2000_cpu_per_wall",
}


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_load_benchmark_at_tiny_size(tmp_path: Path) -> None:
    out = tmp_path / "bench" / "load.json"
    command = [
        sys.executable, "-m", "benchmarks.load",
        "--matrix", "64", "--slices", "20", "--j2k-slices", "20", "--repeat", "1",
        "--out", str(out), "--data-dir", str(tmp_path / "data"),
    ]
    completed = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True,
                               timeout=170, check=False)
    assert completed.returncode == 0, completed.stdout + completed.stderr

    results = json.loads(out.read_text())
    assert {"machine", "versions", "uncompressed", "jpeg2000", "targets"} <= results.keys()
    assert {"cpu_count", "python", "platform"} <= results["machine"].keys()
    assert {"radview", "pydicom", "SimpleITK", "numpy"} <= results["versions"].keys()

    plain, j2k = results["uncompressed"], results["jpeg2000"]
    assert plain["voxels_equal"] is True and plain["geometry_equal"] is True
    assert j2k["voxels_equal"] is True and j2k["geometry_equal"] is True
    assert plain["series"]["shape"] == [20, 64, 64] and j2k["series"]["shape"] == [20, 64, 64]
    for report in (plain["radview"], plain["simpleitk"], j2k["radview"],
                   j2k["radview_workers1"], j2k["simpleitk"]):
        assert report.keys() >= CONTENDER_KEYS
        assert len(report["runs"]) == 1
        assert {"discover_s", "load_s", "total_s"} <= report["median"].keys()
    assert plain["radview"]["median"]["first_slice_s"] < plain["radview"]["median"]["load_s"]
    assert j2k["radview_workers1"]["workers"] == 1

    assert set(results["targets"]) == TARGETS
    for name, target in results["targets"].items():
        assert {"value", "limit", "pass"} <= target.keys()
        if target["pass"] is False:  # a missed target is printed, not hidden
            assert f"FAIL  {name}" in completed.stdout

    # The series are cached: a second run reuses them instead of writing them again.
    again = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True,
                           timeout=170, check=False)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "writing" not in again.stdout
    assert json.loads(out.read_text())["uncompressed"]["series"]["cached"] is True
