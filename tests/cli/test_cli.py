"""The command line as a user runs it: real subprocesses, real files, exit codes, JSON."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from radview.cli import main
from tests.io.conftest import folder_fingerprint, make_ct_volume, write_series


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "radview.cli", *args],
                          capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def sample_study(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("sample")
    result = run_cli("sample", "--out", str(out), "--matrix", "96", "--slices", "24")
    assert result.returncode == 0, result.stderr
    return out


def test_sample_writes_dicom_and_truth(sample_study):
    assert len(list((sample_study / "dicom").glob("*.dcm"))) == 24
    lesions = json.loads((sample_study / "truth" / "lesions.json").read_text())
    assert lesions["lesions"], "the sample study has liver lesions"
    for lesion in lesions["lesions"]:
        assert len(lesion["centre_lps_mm"]) == 3
        assert all(d > 0 for d in lesion["diameters_mm"])
    assert (sample_study / "truth" / "labels.nii.gz").stat().st_size > 0


def test_sample_if_missing_keeps_existing_study(sample_study):
    before = folder_fingerprint(sample_study)
    result = run_cli("sample", "--out", str(sample_study), "--if-missing")
    assert result.returncode == 0
    assert "already" in result.stdout
    assert folder_fingerprint(sample_study) == before


def test_info_json_describes_the_series(sample_study):
    result = run_cli("info", str(sample_study / "dicom"), "--json", "--load")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["errors"] == []
    (series,) = report["series"]
    for key in ("study_uid", "series_uid", "modality", "description", "slice_count",
                "instance_count", "matrix", "spacing", "origin", "direction", "warnings",
                "load_seconds", "peak_rss_mb"):
        assert key in series, key
    assert series["modality"] == "CT"
    assert series["slice_count"] == series["instance_count"] == 24
    assert series["matrix"] == [96, 96, 24]
    assert series["spacing"][0] == pytest.approx(399.36 / 96, rel=1e-3)
    assert series["load_seconds"] > 0
    assert series["peak_rss_mb"] > 10
    assert series["dtype"] == "int16"
    low, high = series["value_range"]
    assert low <= -900 and high >= 300  # air and bone: real HU, not stored values


def test_info_text_lists_series_and_problems(tmp_path):
    volume = make_ct_volume(shape=(5, 16, 16))
    write_series(volume, tmp_path / "s", series_description="Liver <arterial> & more")
    (tmp_path / "s" / "junk.dcm").write_bytes(b"not dicom at all")
    result = run_cli("info", str(tmp_path / "s"))
    assert result.returncode == 0
    assert "Liver <arterial> & more" in result.stdout
    assert "16x16x5 voxels" in result.stdout
    assert f"{tmp_path / 's' / 'junk.dcm'}: not a DICOM file" in result.stdout


def test_info_exit_2_with_reasons_when_nothing_loads(tmp_path):
    (tmp_path / "a.txt").write_text("hello")
    (tmp_path / "b.dcm").write_bytes(b"")
    result = run_cli("info", str(tmp_path), "--json")
    assert result.returncode == 2
    report = json.loads(result.stdout)
    assert report["series"] == []
    reasons = {Path(e["file"]).name: e["reason"] for e in report["errors"]}
    assert reasons == {"a.txt": reasons["a.txt"], "b.dcm": "empty file"}
    assert "not a DICOM file" in reasons["a.txt"]


def test_info_missing_path_is_a_clear_error(tmp_path, capsys):
    assert main(["info", str(tmp_path / "nope")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_info_reads_nifti(tmp_path):
    import nibabel as nib

    data = np.arange(4 * 5 * 6, dtype=np.int16).reshape(4, 5, 6)
    nib.save(nib.Nifti1Image(data, np.diag([-2.0, -2.0, 3.0, 1.0])), tmp_path / "v.nii.gz")
    assert main(["info", str(tmp_path / "v.nii.gz"), "--json", "--load"]) == 0


def test_sample_rejects_silly_sizes(tmp_path, capsys):
    assert main(["sample", "--out", str(tmp_path), "--matrix", "5"]) == 2
    assert "--matrix" in capsys.readouterr().err
