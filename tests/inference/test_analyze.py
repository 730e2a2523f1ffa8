"""analyze_study/write_analysis and `radview analyze` end to end on a DICOM series, with a tiny
real ONNX model installed in the (per-test) user models folder."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("onnx")

from radview.cli import main
from radview.core.volume import Volume
from radview.inference.analyze import (
    NO_LIVER_WARNING,
    AnalysisWriters,
    NoModelError,
    SeriesNotFoundError,
    analyze_study,
    write_analysis,
)
from radview.inference.registry import default_user_dir
from radview.io.volume_files import read_volume_file
from radview.report.tables import write_findings_json, write_labels_nifti
from tests.inference.tiny_models import (
    FAT_HU,
    STAGE_NAMES,
    dice,
    install_band_model,
    install_follow_up_model,
    phantom,
)
from tests.io.conftest import write_series
from tests.pdf_text import pdf_words

SERIES_UID = "1.2.826.0.1.3680043.8.498.1234567"
PATIENT = "DOE^JANE"
CLINICAL = {"bilirubin_mg_dl": 1.2, "albumin_g_dl": 3.8, "inr": 1.1, "ascites": "none",
            "encephalopathy": "none", "ecog": 0, "vascular_invasion": False,
            "extrahepatic_spread": False}


def _report_words(out) -> str:
    """The words of ``out/report.pdf``."""
    return pdf_words(out / "report.pdf")


@pytest.fixture
def series(tmp_path):
    volume, truth = phantom(shape=(16, 72, 72), liver_half_mm=15.0, tumour_radius_mm=6.0)
    folder = tmp_path / "scans" / "ct"
    write_series(volume, folder, series_uid=SERIES_UID, patient_name=PATIENT)
    return folder, truth


@pytest.fixture
def model():
    return install_band_model(default_user_dir(), "tiny-liver-seg", spacing=(1.0, 1.0))


def writers() -> AnalysisWriters:
    return AnalysisWriters(write_findings_json, write_labels_nifti)


def test_analyze_study_and_write_analysis(series, model, tmp_path):
    folder, truth = series
    result = analyze_study([folder], series_uid=SERIES_UID, device="cpu")
    assert result.model.id == "tiny-liver-seg"
    assert result.liver_found and len(result.findings.lesions) == 1
    assert dice(result.labels.voxels > 0, truth > 0) > 0.95
    written = write_analysis(result, tmp_path / "out", writers=writers())
    assert {p.name for p in written.files.values()} == {"measurements.json", "labels.nii.gz"}
    labels = read_volume_file(written.files["labels"])
    np.testing.assert_array_equal(labels.voxels, result.labels.voxels)


def test_unknown_series_uid_and_no_model(series, tmp_path):
    folder, _ = series
    with pytest.raises(NoModelError, match="no segmentation model installed"):
        analyze_study([folder], device="cpu")
    install_band_model(default_user_dir(), "tiny-liver-seg")
    with pytest.raises(SeriesNotFoundError, match="1.2.3.4"):
        analyze_study([folder], series_uid="1.2.3.4", device="cpu")


def test_cli_analyze_end_to_end_with_report(series, model, tmp_path, capsys):
    folder, _ = series
    clinical = tmp_path / "clinical.json"
    clinical.write_text(json.dumps(CLINICAL), encoding="utf-8")
    out = tmp_path / "out"
    code = main(["analyze", str(folder), "--out", str(out), "--report", "--device", "cpu",
                 "--clinical", str(clinical)])
    printed = capsys.readouterr()
    assert code == 0, printed.err
    assert "tiny-liver-seg" in printed.out and "CPUExecutionProvider" in printed.out
    assert "1 lesion(s)" in printed.out and "liver volume" in printed.out
    for name in ("measurements.json", "labels.nii.gz", "report.pdf", "seg.dcm", "sr.dcm",
                 "report_pdf.dcm", "lesions.csv"):
        assert (out / name).is_file(), name
    text = (out / "measurements.json").read_text(encoding="utf-8")
    assert PATIENT.split("^")[0] not in text
    data = json.loads(text)
    assert data["series_uid"] == SERIES_UID
    [entry] = data["models"]
    assert entry["id"] == "tiny-liver-seg" and entry["version"] == "0.1-test"
    assert entry["provider"] == "CPUExecutionProvider" and entry["seconds"] > 0
    assert len(entry["sha256"]) == 64
    assert data["liver"]["volume_ml"] > 0 and len(data["lesions"]) == 1
    assert data["tumor_burden_percent"] > 0
    assert data["staging"] is None and data["triage"] is None
    assert data["notes"]["staging"] == "no staging model installed"
    assert data["clinical"]["child_pugh"]["score"] == 5
    assert data["clinical"]["bclc"] is not None
    assert isinstance(data["warnings"], list)
    labels = read_volume_file(out / "labels.nii.gz")
    assert labels.shape == (16, 72, 72)
    report = _report_words(out)  # the provenance table names the model that ran
    assert "tiny-liver-seg" in report and "CPUExecutionProvider" in report


def test_cli_analyze_says_what_the_lesion_filter_set_aside(series, tmp_path, capsys):
    folder, _ = series
    # a filter that keeps only tumour components over 1e6 mm^3: the phantom's lesion goes
    install_band_model(default_user_dir(), "tiny-liver-seg", spacing=(1.0, 1.0),
                       lesion_filter_bias=-float(np.log(1e6)))
    out = tmp_path / "out"
    code = main(["analyze", str(folder), "--out", str(out), "--report", "--device", "cpu"])
    printed = capsys.readouterr()
    assert code == 0, printed.err
    assert "0 lesion(s)" in printed.out
    assert ("lesion filter: 1 candidate region(s) below 50% lesion probability set aside "
            "(labelled liver)") in printed.out
    assert "    set aside: slice index " in printed.out and "P(lesion) " in printed.out
    [entry] = json.loads((out / "measurements.json").read_text(encoding="utf-8"))["models"]
    assert entry["lesions_set_aside"] == 1 and entry["lesion_filter_threshold"] == 0.5
    [where] = entry["set_aside"]  # for batch users: where to look
    assert where["volume_ml"] > 0 and 0 <= where["lesion_probability"] < 0.5
    assert len(where["position_lps"]) == 3 and 0 <= where["slice_index"] < 16
    assert "lesion filter gave less than a 50 % probability of being a lesion (1 in this scan)" \
        in _report_words(out)


def test_cli_analyze_deidentified_pseudonymises_the_series_uid(series, model, tmp_path):
    folder, _ = series
    out = tmp_path / "out"
    assert main(["analyze", str(folder), "--out", str(out), "--device", "cpu",
                 "--deidentify"]) == 0
    data = json.loads((out / "measurements.json").read_text(encoding="utf-8"))
    assert data["series_uid"] and data["series_uid"] != SERIES_UID


def test_cli_no_liver_found_is_success(tmp_path, model, capsys):
    volume = Volume(np.full((6, 40, 40), FAT_HU, np.int16), spacing=(0.7, 0.7, 2.5),
                    modality="CT")
    write_series(volume, tmp_path / "scans")
    out = tmp_path / "out"
    assert main(["analyze", str(tmp_path / "scans"), "--out", str(out), "--report",
                 "--device", "cpu"]) == 0
    printed = capsys.readouterr().out
    assert "no liver found" in printed
    data = json.loads((out / "measurements.json").read_text(encoding="utf-8"))
    assert data["liver"] is None and data["lesions"] == []
    assert NO_LIVER_WARNING in data["warnings"]
    assert not (out / "report.pdf").exists()


def test_cli_bad_input_exits_2_with_one_line(series, tmp_path, capsys):
    folder, _ = series
    out = tmp_path / "out"
    assert main(["analyze", str(folder), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.strip() == ("radview: no segmentation model installed (radview models lists "
                           "what is available)")
    assert not out.exists()

    install_band_model(default_user_dir(), "mr-seg", modality="MR")
    assert main(["analyze", str(folder), "--out", str(out)]) == 2
    assert "expects MR, the series is CT" in capsys.readouterr().err
    assert main(["analyze", str(folder), "--out", str(out), "--force", "--device", "cpu"]) == 0
    capsys.readouterr()

    bad = tmp_path / "clinical.json"
    bad.write_text("[1, 2]", encoding="utf-8")
    assert main(["analyze", str(folder), "--out", str(out), "--clinical", str(bad)]) == 2
    assert "expected a JSON object" in capsys.readouterr().err

    assert main(["analyze", str(tmp_path / "missing"), "--out", str(out)]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["analyze", str(folder), "--out", str(folder / "results")]) == 2
    assert "inside the input folder" in capsys.readouterr().err
    assert main(["analyze", str(folder), "--out", str(out), "--models", "nope"]) == 2
    assert "nope" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # argparse: --out is required
        main(["analyze", str(folder)])
    capsys.readouterr()


def test_staging_and_triage_run_after_segmentation_and_reach_the_json(series, model,
                                                                        tmp_path):
    folder, truth = series
    install_follow_up_model(default_user_dir(), "staging")
    install_follow_up_model(default_user_dir(), "triage")
    result = analyze_study([folder], device="cpu")
    assert result.staging is not None and result.triage is not None
    assert set(result.staging.probabilities) == set(STAGE_NAMES)
    assert sum(result.staging.probabilities.values()) == pytest.approx(1.0, abs=1e-6)
    assert result.triage.probabilities.shape == (truth.shape[0],)
    tumour_slices = (truth == 2).reshape(truth.shape[0], -1).any(axis=1)
    assert np.all(result.triage.probabilities[tumour_slices] > 0.5)
    assert np.all(result.triage.probabilities[~tumour_slices] < 0.5)
    written = write_analysis(result, tmp_path / "out", writers=writers())
    document = json.loads(written.files["json"].read_text())
    assert document["staging"]["stage"] == result.staging.stage
    assert document["staging"]["model"] == "tiny-staging 0.1-test"
    assert len(document["triage"]["probabilities"]) == truth.shape[0]
    assert [m["task"] for m in document["models"]] == ["segmentation", "staging", "triage"]
    assert all(len(m["sha256"]) == 64 and m["provider"] for m in document["models"])
    assert "staging" not in document["notes"] and "triage" not in document["notes"]


def test_without_staging_or_triage_models_the_notes_say_so(series, model):
    folder, _ = series
    result = analyze_study([folder], device="cpu")
    assert result.staging is None and result.triage is None
    assert result.notes == {"staging": "no staging model installed",
                            "triage": "no triage model installed"}


def test_models_option_limits_staging_and_triage_too(series, model):
    folder, _ = series
    install_follow_up_model(default_user_dir(), "staging")
    install_follow_up_model(default_user_dir(), "triage")
    result = analyze_study([folder], models=["tiny-liver-seg", "tiny-triage"], device="cpu")
    assert result.staging is None and result.triage is not None
    assert result.notes["staging"] == "no staging model among the requested models"


def test_cli_analyze_prints_staging_and_triage_and_the_report_shows_them(series, model,
                                                                         tmp_path, capsys):
    folder, _ = series
    install_follow_up_model(default_user_dir(), "staging")
    install_follow_up_model(default_user_dir(), "triage")
    out = tmp_path / "out"
    code = main(["analyze", str(folder), "--out", str(out), "--report", "--device", "cpu"])
    printed = capsys.readouterr()
    assert code == 0, printed.err
    assert "liver disease stage (model tiny-staging, decision support): Mild" in printed.out
    assert "slice triage (model tiny-triage):" in printed.out
    text = _report_words(out)
    assert "AI staging: not available" not in text
    assert "AI triage: not available" not in text
    assert "tiny-staging" in text


def test_report_lists_the_analysis_warnings(series, tmp_path, capsys):
    """A model whose field of view is smaller than the body: the PDF's Warnings say so."""
    folder, _ = series
    install_band_model(default_user_dir(), "tiny-liver-seg", spacing=(1.0, 1.0), size=(32, 32))
    out = tmp_path / "out"
    assert main(["analyze", str(folder), "--out", str(out), "--report", "--device", "cpu"]) == 0
    capsys.readouterr()
    assert "larger than the model's field of view" in _report_words(out)


def test_report_of_a_run_that_left_staging_out_says_so_not_that_none_is_installed(
        series, model, tmp_path, capsys):
    folder, _ = series
    install_follow_up_model(default_user_dir(), "staging")
    install_follow_up_model(default_user_dir(), "triage")
    out = tmp_path / "out"
    code = main(["analyze", str(folder), "--out", str(out), "--report", "--device", "cpu",
                 "--models", "tiny-liver-seg,tiny-triage"])
    printed = capsys.readouterr()
    assert code == 0, printed.err
    text = _report_words(out)
    assert "AI staging: not available: no staging model among the requested models" in text
    assert "tiny-triage" in text
