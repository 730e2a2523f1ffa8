"""`radview report`: every output from one command, validated by independent tools."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.io.conftest import folder_fingerprint
from tests.pdf_text import pdf_text


def run_cli(*args: str, data_dir: Path) -> subprocess.CompletedProcess:
    import os

    env = dict(os.environ, RADVIEW_DATA_DIR=str(data_dir))
    return subprocess.run([sys.executable, "-m", "radview.cli", *args], capture_output=True,
                          text=True, timeout=300, env=env)


@pytest.fixture(scope="module")
def sample(tmp_path_factory) -> Path:
    from radview.io.sample_study import write_sample_study

    out = tmp_path_factory.mktemp("sample")
    write_sample_study(out, matrix=128, slices=40, seed=3)
    return out


@pytest.mark.parametrize("deidentify", [False, True])
def test_report_writes_all_outputs(sample, tmp_path, deidentify):
    before = folder_fingerprint(sample)
    clinical = tmp_path / "clinical.json"
    clinical.write_text(json.dumps({"bilirubin_umol_l": 30, "albumin_g_l": 34, "inr": 1.2,
                                    "ascites": "none", "encephalopathy": "none", "ecog": 0}))
    out = tmp_path / "out"
    args = ["report", str(sample / "dicom"), "--labels", str(sample / "truth" / "labels.nii.gz"),
            "--out", str(out), "--clinical", str(clinical)]
    if deidentify:
        args.append("--deidentify")
    result = run_cli(*args, data_dir=tmp_path / "data")
    assert result.returncode == 0, result.stderr
    expected = {"report.pdf", "seg.dcm", "sr.dcm", "report_pdf.dcm", "labels.nii.gz",
                "measurements.json", "lesions.csv"}
    assert {p.name for p in out.iterdir()} == expected
    assert folder_fingerprint(sample) == before  # nothing written next to the scans

    measurements = json.loads((out / "measurements.json").read_text())
    truth = json.loads((sample / "truth" / "lesions.json").read_text())["lesions"]
    assert len(measurements["lesions"]) == len(truth)
    # bilirubin 30 umol/L = 1.75 mg/dL (1), albumin 34 g/L (2), INR 1.2 (1), no ascites (1),
    # no encephalopathy (1): Child-Pugh 6, class A
    assert measurements["clinical"]["child_pugh"]["score"] == 6
    assert measurements["clinical"]["child_pugh"]["class"] == "A"

    text = pdf_text(out / "report.pdf")  # a skip without poppler: a failure in CI
    assert "Decision support only" in text
    assert ("RADVIEW-SAMPLE" in text) is not deidentify
    if shutil.which("dciodvfy"):
        for name in ("seg.dcm", "sr.dcm", "report_pdf.dcm"):
            check = subprocess.run(["dciodvfy", str(out / name)], capture_output=True, text=True)
            errors = [line for line in (check.stdout + check.stderr).splitlines()
                      if line.startswith("Error")]
            assert errors == [], (name, errors)


def test_report_with_labels_off_the_grid_is_a_clear_error(sample, tmp_path):
    import nibabel as nib
    import numpy as np

    far = np.eye(4)
    far[:3, 3] = 5000.0  # five metres away: cannot overlap the patient
    nib.save(nib.Nifti1Image(np.ones((4, 4, 4), np.uint8), far), tmp_path / "far.nii.gz")
    result = run_cli("report", str(sample / "dicom"), "--labels", str(tmp_path / "far.nii.gz"),
                     "--out", str(tmp_path / "out"), data_dir=tmp_path / "data")
    assert result.returncode == 2
    assert "far.nii.gz" in result.stderr and "Traceback" not in result.stderr
