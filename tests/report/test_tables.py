"""Label map (NIfTI), findings JSON and lesion CSV exports; atomic failure behaviour."""

from __future__ import annotations

import csv
import io
import json
import math
import os
from dataclasses import replace

import numpy as np
import pytest

from radview.core.lesions import to_json
from radview.io.volume_files import read_volume_file
from radview.report.tables import (
    LESION_CSV_COLUMNS,
    ExportError,
    write_findings_json,
    write_labels_nifti,
    write_lesion_csv,
)
from tests.report.test_dicom_seg import Study, build_study


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> Study:
    return build_study(tmp_path_factory.mktemp("sample"))


def _no_space(src, dst):
    raise OSError(28, "No space left on device")


# ---------------------------------------------------------------------------- NIfTI
def test_label_map_round_trips_through_nifti(study, tmp_path) -> None:
    out = write_labels_nifti(study.labels, tmp_path / "labels.nii.gz")
    back = read_volume_file(out)
    assert back.voxels.dtype == np.uint8
    assert np.array_equal(back.voxels, study.labels.voxels)
    np.testing.assert_allclose(back.spacing, study.labels.spacing, atol=1e-5)
    np.testing.assert_allclose(back.origin, study.labels.origin, atol=1e-4)
    np.testing.assert_allclose(back.direction, study.labels.direction, atol=1e-6)
    # no time stamp in the gzip header: the same labels give the same bytes
    again = write_labels_nifti(study.labels, tmp_path / "again.nii.gz")
    assert out.read_bytes() == again.read_bytes()


def test_nifti_needs_the_right_suffix_and_type(study, tmp_path) -> None:
    with pytest.raises(ValueError, match=r"\.nii\.gz"):
        write_labels_nifti(study.labels, tmp_path / "labels.nii")
    wide = study.labels.with_voxels(study.labels.voxels.astype(np.int16))
    with pytest.raises(ValueError, match="uint8"):
        write_labels_nifti(wide, tmp_path / "labels.nii.gz")
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------------------- JSON
def test_findings_json_is_sorted_and_has_no_identifiers(study, tmp_path) -> None:
    data = to_json(study.findings)
    out = write_findings_json(data, tmp_path / "findings.json")
    text = out.read_text(encoding="utf-8")
    assert text.endswith("\n")
    loaded = json.loads(text)
    assert loaded == json.loads(json.dumps(data))
    assert list(loaded) == sorted(loaded)
    assert "patient" not in loaded
    source = study.sources[0]
    for identifier in (str(source.PatientName), str(source.PatientID), "SYNTHETIC"):
        assert identifier not in text
    assert write_findings_json(data, tmp_path / "again.json").read_bytes() == out.read_bytes()


def test_identifiers_appear_only_when_passed(study, tmp_path) -> None:
    data = to_json(study.findings)
    out = write_findings_json(
        data, tmp_path / "findings.json", identifiers={"name": "山田^太郎", "id": "<x>&"}
    )
    loaded = json.loads(out.read_text(encoding="utf-8"))
    assert loaded["patient"] == {"name": "山田^太郎", "id": "<x>&"}


def test_non_finite_numbers_become_null(tmp_path) -> None:
    out = write_findings_json(
        {"a": math.nan, "b": [np.float32(1.5), np.inf], "c": np.int64(3)}, tmp_path / "f.json"
    )
    assert json.loads(out.read_text()) == {"a": None, "b": [1.5, None], "c": 3}


# ---------------------------------------------------------------------------- CSV
def _rows(path) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(path.read_text(encoding="utf-8"), newline="")))


def test_lesion_csv_has_one_row_per_lesion(study, tmp_path) -> None:
    out = write_lesion_csv(study.findings, tmp_path / "lesions.csv")
    header = out.read_text(encoding="utf-8").splitlines()[0]
    assert tuple(header.split(",")) == LESION_CSV_COLUMNS
    rows = _rows(out)
    assert len(rows) == len(study.findings.lesions) >= 2
    for row, lesion in zip(rows, study.findings.lesions, strict=True):
        assert int(row["id"]) == lesion.id
        assert row["lobe"] == lesion.lobe.value and row["in_liver"] == "yes"
        assert float(row["volume_ml"]) == lesion.volume.value  # exact: shortest repr
        assert float(row["long_axis_mm"]) == lesion.long_axis.value
        assert float(row["short_axis_mm"]) == lesion.short_axis.value
        assert float(row["max_diameter_mm"]) == lesion.max_diameter.value
        assert float(row["mean_hu"]) == lesion.mean.value
        centroid = tuple(float(row[f"centroid_{a}_mm"]) for a in "xyz")
        assert centroid == lesion.centroid_lps
    # negative coordinates stay numbers (no apostrophe)
    assert any(row["centroid_x_mm"].startswith("-") for row in rows)


def test_lesion_csv_defuses_formula_text(study, tmp_path) -> None:
    first = study.findings.lesions[0]
    hostile = [
        replace(first, lobe="=HYPERLINK(\"http://x\")"),  # labels from elsewhere may be text
        replace(first, lobe="+1"),
        replace(first, lobe="@SUM(A1)"),
        replace(first, lobe="-2+3"),
        replace(first, lobe=None, mean=replace(first.mean, value=math.nan)),
    ]
    findings = replace(study.findings, lesions=tuple(hostile))
    rows = _rows(write_lesion_csv(findings, tmp_path / "lesions.csv"))
    assert [row["lobe"] for row in rows] == [
        "'=HYPERLINK(\"http://x\")", "'+1", "'@SUM(A1)", "'-2+3", ""
    ]
    assert rows[-1]["mean_hu"] == ""  # not measured: empty, never 'nan'


# ---------------------------------------------------------------------------- failures
@pytest.mark.parametrize("writer", ["nifti", "json", "csv"])
def test_a_full_disk_is_a_clear_error_and_leaves_nothing(study, tmp_path, monkeypatch,
                                                         writer) -> None:
    names = {"nifti": "labels.nii.gz", "json": "findings.json", "csv": "lesions.csv"}
    target = tmp_path / names[writer]
    target.write_bytes(b"previous")
    monkeypatch.setattr(os, "replace", _no_space)
    with pytest.raises(ExportError, match="disk is full") as caught:
        if writer == "nifti":
            write_labels_nifti(study.labels, target)
        elif writer == "json":
            write_findings_json(to_json(study.findings), target)
        else:
            write_lesion_csv(study.findings, target)
    assert str(caught.value).startswith(str(target))
    assert target.read_bytes() == b"previous"
    assert [p.name for p in tmp_path.iterdir()] == [target.name]


def test_an_unwritable_or_missing_folder_is_a_clear_error(study, tmp_path, monkeypatch) -> None:
    with pytest.raises(ExportError, match="does not exist"):
        write_lesion_csv(study.findings, tmp_path / "missing" / "lesions.csv")
    with pytest.raises(ExportError, match="is a folder"):
        write_lesion_csv(study.findings, tmp_path)

    real_open = open

    def read_only(path, mode="r", *args, **kwargs):
        if "w" in mode:
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, mode, *args, **kwargs)

    monkeypatch.setattr("builtins.open", read_only)
    with pytest.raises(ExportError, match="not writable"):
        write_lesion_csv(study.findings, tmp_path / "lesions.csv")
    monkeypatch.undo()
    assert list(tmp_path.iterdir()) == []
