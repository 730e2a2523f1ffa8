"""The trained models that ship, end to end through `radview analyze` on a held-out-style
phantom (a seed outside every training split): the liver is found, staging and triage run."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
from training.phantoms import PhantomConfig, generate_case

from radview.cli import main
from radview.io.convert import volume_to_nifti

pytestmark = pytest.mark.shipped_models


def test_shipped_models_analyze_a_phantom_end_to_end(tmp_path, capsys):
    case = generate_case(987_654, config=PhantomConfig(matrix=224, slices=40,
                                                       pixel_spacing_mm=(1.6, 2.0)))
    scan = tmp_path / "scan" / "ct.nii.gz"
    scan.parent.mkdir()
    nib.save(volume_to_nifti(case.ct), scan)
    out = tmp_path / "out"
    code = main(["analyze", str(scan), "--out", str(out), "--device", "cpu", "--force"])
    printed = capsys.readouterr()
    assert code == 0, printed.err
    assert "model liver-tumor-seg 1.1.0" in printed.out
    document = json.loads((out / "measurements.json").read_text())
    assert [m["id"] for m in document["models"]] == ["liver-tumor-seg", "liver-stage-cnnlstm",
                                                      "slice-triage"]
    labels = nib.load(out / "labels.nii.gz").get_fdata()
    truth_ml = float((case.labels.voxels > 0).sum()) * float(np.prod(case.ct.spacing)) / 1000
    assert document["liver"]["volume_ml"] == pytest.approx(truth_ml, rel=0.15)
    assert labels.max() >= 1
    assert set(document["staging"]["probabilities"]) == {"Mild", "Moderate", "Severe",
                                                         "End-stage"}
    assert len(document["triage"]["probabilities"]) == case.ct.shape[0]
