"""The fast header path gives exactly what the pydicom path gives, on every real file it takes."""

from __future__ import annotations

import dataclasses
import os
import warnings
from pathlib import Path

import pydicom
import pytest
from pydicom.data import get_testdata_file

from radview.core.errors import InputFileError
from radview.io import dicom_scan
from radview.io.dicom_fast_header import HEAD_BYTES, parse_fast_header

from .conftest import make_ct_volume, write_series


def _real_files() -> list[Path]:
    roots = [Path(os.path.dirname(get_testdata_file("CT_small.dcm")))]
    try:
        import data_store

        roots.append(Path(data_store.__file__).parent / "data")
    except ImportError:
        pass  # pydicom-data is a test extra; the pydicom files still run
    return sorted(p for root in roots for p in root.rglob("*") if p.is_file())


def _pydicom_header(path: Path):
    stat = path.stat()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dataset = dicom_scan._parse(path)
        return dicom_scan._instance_from_pydicom(dataset, path, stat.st_size, stat.st_mtime_ns)


def test_fast_and_pydicom_headers_agree_on_real_files():
    compared = 0
    for path in _real_files():
        fast = parse_fast_header(path.read_bytes()[:HEAD_BYTES])
        if fast is None:
            continue
        try:
            expected = _pydicom_header(path)
        except InputFileError:
            with pytest.raises(InputFileError):
                dicom_scan.read_instance_header(path)
            continue
        actual = dicom_scan.read_instance_header(path)
        assert dataclasses.asdict(actual) == dataclasses.asdict(expected), path.name
        compared += 1
    assert compared >= 30  # the fast path really is taken on the common files


def test_fast_path_is_taken_for_our_own_series(tmp_path, monkeypatch):
    files = write_series(make_ct_volume(shape=(3, 16, 16)), tmp_path / "s",
                         patient_name="Müller^Zoë", series_description="Liver <arterial> & more")
    calls = []
    monkeypatch.setattr(dicom_scan, "_parse", lambda path: calls.append(path))
    header = dicom_scan.read_instance_header(files[0])
    assert calls == []  # pydicom was not needed
    assert header.patient_name == "Müller^Zoë"
    assert header.series_description == "Liver <arterial> & more"
    assert header.pixel_data_offset is not None


def test_other_syntaxes_and_charsets_fall_back(tmp_path):
    files = write_series(make_ct_volume(shape=(2, 16, 16)), tmp_path / "i",
                         transfer_syntax=pydicom.uid.ImplicitVRLittleEndian)
    assert parse_fast_header(files[0].read_bytes()[:HEAD_BYTES]) is None
    files = write_series(make_ct_volume(shape=(2, 16, 16)), tmp_path / "c")
    ds = pydicom.dcmread(files[0])
    ds.SpecificCharacterSet = "ISO_IR 144"  # Cyrillic: pydicom's job
    ds.PatientName = "Иванов^Иван"
    ds.save_as(files[0])
    assert parse_fast_header(files[0].read_bytes()[:HEAD_BYTES]) is None
    assert dicom_scan.read_instance_header(files[0]).patient_name == "Иванов^Иван"


@pytest.mark.parametrize("cut", [140, 300, 700])
def test_truncated_head_never_misleads(tmp_path, cut):
    files = write_series(make_ct_volume(shape=(1, 16, 16)), tmp_path / "t")
    assert parse_fast_header(files[0].read_bytes()[:cut]) is None
