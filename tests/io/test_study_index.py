"""Tests of the SQLite study index: schema, incremental updates, browsing, search, robustness.

Most tests use a fake header reader that builds an InstanceHeader from a small JSON file, so
they control every header value and count reads; the last ones index real DICOM files from
pydicom's test data with the real reader.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import sqlite3
import sys
from pathlib import Path

import platformdirs
import pytest

from radview.core.errors import (
    InputFileError,
    LoadCancelled,
    NotDicomError,
    RadviewError,
    TruncatedFileError,
)
from radview.io import study_index
from radview.io.dicom_header import FileProblem, FrameHeader, InstanceHeader
from radview.io.study_index import (
    SCHEMA_VERSION,
    IndexUpdate,
    PatientRow,
    SeriesRow,
    StudyIndex,
    StudyIndexError,
    StudyRow,
    default_index_path,
)

_HEADER_FIELDS = {f.name for f in dataclasses.fields(InstanceHeader)}


# ---------------------------------------------------------------------------- helpers
@pytest.fixture(autouse=True)
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test's index lives in a temp data dir, never in the real home."""
    folder = tmp_path / "data"
    monkeypatch.setenv("RADVIEW_DATA_DIR", str(folder))
    return folder


@pytest.fixture
def index(data_dir: Path) -> StudyIndex:
    with StudyIndex.open() as opened:
        yield opened


@pytest.fixture
def scans(tmp_path: Path) -> Path:
    folder = tmp_path / "scans"
    folder.mkdir()
    return folder


def make_header(path: str, size: int = 100, mtime_ns: int = 0, **values: object) -> InstanceHeader:
    """An image instance with plausible defaults; ``values`` override any header field."""
    frames = values.pop("frames", 1)
    record: dict[str, object] = {
        "sop_class_uid": "1.2.840.10008.5.1.4.1.1.2",
        "sop_instance_uid": f"1.2.99.{abs(hash(path)) % 10**12}",
        "transfer_syntax_uid": "1.2.840.10008.1.2.1",
        "patient_name": "DOE^JANE",
        "patient_id": "P1",
        "study_uid": "1.2.3",
        "study_date": "20240105",
        "study_description": "CT ABDOMEN",
        "series_uid": "1.2.3.1",
        "series_number": 2,
        "series_description": "Portal venous",
        "modality": "CT",
        "rows": 512,
        "columns": 512,
        "bits_allocated": 16,
        "bits_stored": 12,
        "high_bit": 11,
        "photometric": "MONOCHROME2",
        "image_type": ["ORIGINAL", "PRIMARY", "AXIAL"],
        "pixel_data_offset": 1234,
        "pixel_data_length": 512 * 512 * 2,
        "has_pixel_data": True,
    }
    record.update(values)
    if isinstance(frames, int):
        frames = tuple(
            FrameHeader(
                path=path,
                frame=f,
                position=(-100.0, -120.5, 10.0 + 2.5 * f),
                orientation=(1.0, 0.0, 0.0, 0.0, 1.0, 0.0),
                pixel_spacing=(0.703125, 0.703125),
                slice_thickness=2.5,
                rescale_intercept=-1024.0,
                instance_number=f + 1,
            )
            for f in range(frames if int(record["rows"]) else 0)  # type: ignore[call-overload]
        )
    record["image_type"] = tuple(record["image_type"])  # type: ignore[arg-type]
    known = {name: value for name, value in record.items() if name in _HEADER_FIELDS}
    return InstanceHeader(
        path=path,
        file_size=size,
        mtime_ns=mtime_ns,
        number_of_frames=max(len(frames), 1),  # type: ignore[arg-type]
        frames=frames,  # type: ignore[arg-type]
        **known,  # type: ignore[arg-type]
    )


def write_spec(path: Path, **values: object) -> Path:
    """A fake 'DICOM' file: JSON of the header values the fake reader will report."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(values), encoding="utf-8")
    return path


class FakeReader:
    """Reads the JSON written by :func:`write_spec`; counts calls; ``BROKEN`` files fail."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def __call__(self, path: Path) -> InstanceHeader:
        self.calls.append(str(path))
        data = path.read_bytes()
        if data.startswith(b"BROKEN"):
            raise TruncatedFileError(path, "file ends before its data (truncated)")
        if data.startswith(b"NOTDICOM"):
            raise NotDicomError(path, "not a DICOM file")
        if data.startswith(b"LOCKED"):
            raise InputFileError(path, "permission denied")
        info = path.stat()
        return make_header(str(path), info.st_size, info.st_mtime_ns, **json.loads(data))


def study_uids(rows: list[StudyRow]) -> list[str]:
    return [row.study_uid for row in rows]


def snapshot(folder: Path) -> dict[str, tuple[bytes, int]]:
    return {
        str(p.relative_to(folder)): (p.read_bytes(), p.stat().st_mtime_ns)
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


# ---------------------------------------------------------------------------- location/schema
def test_default_index_path_honours_the_data_dir_override(data_dir: Path) -> None:
    assert default_index_path() == data_dir / "index.sqlite3"


def test_default_index_path_without_override_is_the_user_data_dir(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("RADVIEW_DATA_DIR")
    assert default_index_path() == platformdirs.user_data_path("radview") / "index.sqlite3"
    monkeypatch.setenv("RADVIEW_DATA_DIR", "")  # empty means unset
    assert default_index_path() == platformdirs.user_data_path("radview") / "index.sqlite3"


def test_open_creates_the_schema_in_the_data_dir(data_dir: Path) -> None:
    with StudyIndex.open() as index:
        assert index.path == data_dir / "index.sqlite3"
        db = index._db
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert db.execute("PRAGMA foreign_keys").fetchone()[0] == 1
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        assert {"patient", "study", "series", "instance", "file_problem"} <= tables
        indexes = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='index'")}
        assert {
            "patient_by_name",
            "study_by_date",
            "series_by_modality",
            "instance_by_sop",
        } <= indexes
    assert (data_dir / "index.sqlite3").is_file()


def test_reopening_keeps_the_contents(scans: Path, data_dir: Path) -> None:
    write_spec(scans / "a.dcm")
    with StudyIndex.open() as index:
        index.update([scans], read_header=FakeReader())
    with StudyIndex.open(data_dir / "index.sqlite3") as index:
        assert [p.patient_id for p in index.patients()] == ["P1"]


def test_an_index_from_a_newer_version_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "newer.sqlite3"
    StudyIndex.open(path).close()
    with sqlite3.connect(path) as db:
        db.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    db.close()
    with pytest.raises(StudyIndexError, match="newer radview") as caught:
        StudyIndex.open(path)
    assert str(path) in str(caught.value)


def test_a_file_that_is_not_a_database_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "index.sqlite3"
    path.write_bytes(b"this is not SQLite at all\n" * 100)
    with pytest.raises(StudyIndexError, match="not a radview study index") as caught:
        StudyIndex.open(path)
    assert isinstance(caught.value, RadviewError)
    assert str(path) in str(caught.value)
    assert "\n" not in str(caught.value)
    assert path.read_bytes() == b"this is not SQLite at all\n" * 100  # left alone


def test_another_programs_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.sqlite3"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE notes (text TEXT)")
    db.commit()
    db.close()
    with pytest.raises(StudyIndexError, match="other tables"):
        StudyIndex.open(path)


def test_a_damaged_index_is_a_clear_error(tmp_path: Path, scans: Path) -> None:
    path = tmp_path / "damaged.sqlite3"
    for i in range(50):
        write_spec(scans / f"{i:03}.dcm", study_description="X" * 2000)
    with StudyIndex.open(path) as index:
        index.update([scans], read_header=FakeReader())
    data = bytearray(path.read_bytes())
    data[4096:] = b"\xa5" * (len(data) - 4096)  # keep the header page, ruin every other page
    path.write_bytes(bytes(data))
    with pytest.raises(StudyIndexError) as caught, StudyIndex.open(path) as index:
        index.patients()
        index.search(text="x")
    assert str(path) in str(caught.value)


def test_an_unwritable_location_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(StudyIndexError, match="cannot"):
        StudyIndex.open(blocker / "sub" / "index.sqlite3")


def test_closing_twice_is_harmless_and_the_context_manager_closes(data_dir: Path) -> None:
    index = StudyIndex.open()
    with index:
        pass
    index.close()
    with pytest.raises(sqlite3.ProgrammingError):
        index.patients()


# ---------------------------------------------------------------------------- updating
def test_first_update_adds_every_file(index: StudyIndex, scans: Path) -> None:
    for i in range(3):
        write_spec(scans / "s1" / f"{i}.dcm")
    write_spec(scans / "s2" / "0.dcm", series_uid="1.2.3.2", series_number=3, modality="MR")
    reader = FakeReader()
    result = index.update([scans], read_header=reader)
    assert result == IndexUpdate(added=4)
    assert len(reader.calls) == 4
    [study] = index.search()
    assert study.modalities == ("CT", "MR")
    assert (study.number_of_series, study.number_of_images) == (2, 4)


def test_unchanged_files_are_not_read_again(index: StudyIndex, scans: Path) -> None:
    for i in range(5):
        write_spec(scans / f"{i}.dcm")
    reader = FakeReader()
    index.update([scans], read_header=reader)
    assert len(reader.calls) == 5

    again = FakeReader()
    result = index.update([scans], read_header=again)
    assert again.calls == []
    assert result == IndexUpdate(unchanged=5)


def test_changed_files_are_read_again(index: StudyIndex, scans: Path) -> None:
    b = write_spec(scans / "a.dcm", series_description="first")
    a = write_spec(scans / "z.dcm", series_description="first")  # read last
    index.update([scans], read_header=FakeReader())

    write_spec(a, series_description="second, longer")  # new size
    stat = b.stat()
    os.utime(b, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))  # same size, new mtime
    reader = FakeReader()
    result = index.update([scans], read_header=reader)
    assert reader.calls == [str(b), str(a)]
    assert (result.added, result.updated, result.unchanged) == (0, 2, 0)
    [series] = index.series("1.2.3")
    assert series.description == "second, longer"  # last read wins


def test_deleted_files_are_removed_and_empty_levels_pruned(index: StudyIndex, scans: Path) -> None:
    write_spec(scans / "keep.dcm")
    gone = write_spec(
        scans / "sub" / "gone.dcm", patient_id="P2", study_uid="9.9", series_uid="9.9.1"
    )
    index.update([scans], read_header=FakeReader())
    assert len(index.patients()) == 2

    shutil.rmtree(gone.parent)
    result = index.update([scans], read_header=FakeReader())
    assert (result.removed, result.unchanged) == (1, 1)
    assert [p.patient_id for p in index.patients()] == ["P1"]
    assert index.series("9.9") == []
    assert index.headers_for_series("9.9.1") == []
    db = index._db
    assert db.execute("SELECT COUNT(*) FROM study").fetchone()[0] == 1
    assert db.execute("SELECT COUNT(*) FROM series").fetchone()[0] == 1


def test_a_file_moving_to_another_series_prunes_the_old_one(index: StudyIndex, scans: Path) -> None:
    f = write_spec(scans / "a.dcm", series_uid="1.2.3.1")
    write_spec(scans / "b.dcm", series_uid="1.2.3.7", series_number=7)
    index.update([scans], read_header=FakeReader())
    write_spec(f, series_uid="1.2.3.7", series_number=7, study_description="moved")
    index.update([scans], read_header=FakeReader())
    assert [s.series_uid for s in index.series("1.2.3")] == ["1.2.3.7"]


def test_only_files_under_the_scanned_roots_are_removed(index: StudyIndex, tmp_path: Path) -> None:
    one = write_spec(tmp_path / "one" / "a.dcm")
    write_spec(tmp_path / "one-two" / "b.dcm", series_uid="1.2.3.2")  # shares the prefix "one"
    write_spec(tmp_path / "two" / "c.dcm", series_uid="1.2.3.3")
    index.update(
        [tmp_path / "one", tmp_path / "one-two", tmp_path / "two"], read_header=FakeReader()
    )
    shutil.rmtree(tmp_path / "one-two")
    shutil.rmtree(tmp_path / "two")
    result = index.update([one.parent], read_header=FakeReader())
    assert result.removed == 0  # the deleted folders were not part of this update
    assert len(index.series("1.2.3")) == 3


def test_a_missing_root_keeps_its_entries_until_forgotten(
    index: StudyIndex, tmp_path: Path
) -> None:
    drive = tmp_path / "usb"
    write_spec(drive / "a.dcm")
    index.update([drive], read_header=FakeReader())
    shutil.rmtree(drive)  # e.g. an unplugged drive

    result = index.update([drive], read_header=FakeReader())
    assert result.removed == 0
    assert [p.path for p in result.problems] == [str(drive)]
    assert len(index.patients()) == 1

    assert index.forget([drive]) == 1
    assert index.patients() == []


def test_a_single_file_root(index: StudyIndex, scans: Path) -> None:
    f = write_spec(scans / "one.dcm")
    write_spec(scans / "other.dcm", series_uid="1.2.3.9")
    assert index.update([f], read_header=FakeReader()).added == 1
    assert index.update([f, f, scans / "one.dcm"], read_header=FakeReader()).unchanged == 1


def test_overlapping_roots_list_a_file_once(index: StudyIndex, scans: Path) -> None:
    write_spec(scans / "sub" / "a.dcm")
    reader = FakeReader()
    result = index.update([scans, scans / "sub", scans / "sub" / ".." / "sub"], read_header=reader)
    assert (result.added, len(reader.calls)) == (1, 1)


def test_relative_roots_are_made_absolute(
    index: StudyIndex, scans: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_spec(scans / "a.dcm")
    monkeypatch.chdir(scans.parent)
    index.update([Path("scans")], read_header=FakeReader())
    [header] = index.headers_for_series("1.2.3.1")
    assert header.path == str(scans / "a.dcm")


def test_failed_files_are_remembered_until_they_change(index: StudyIndex, scans: Path) -> None:
    broken = scans / "broken.dcm"
    broken.write_bytes(b"BROKEN" + bytes(100))
    (scans / "notes.txt").write_bytes(b"NOTDICOM shopping list")
    write_spec(scans / "ok.dcm")
    first = index.update([scans], read_header=FakeReader())
    assert first.added == 1
    kinds = {Path(p.path).name: p.kind for p in first.problems}
    assert kinds == {"broken.dcm": "corrupt", "notes.txt": "not_dicom"}

    reader = FakeReader()
    second = index.update([scans], read_header=reader)
    assert reader.calls == []  # known failures are skipped while unchanged
    assert sorted(second.problems, key=lambda p: p.path) == sorted(
        first.problems, key=lambda p: p.path
    )

    write_spec(broken)  # repaired
    third = index.update([scans], read_header=(reader := FakeReader()))
    assert reader.calls == [str(broken)]
    assert (third.added, third.unchanged) == (1, 1)
    assert [Path(p.path).name for p in third.problems] == ["notes.txt"]


def test_io_failures_are_retried(index: StudyIndex, scans: Path) -> None:
    locked = scans / "locked.dcm"
    locked.write_bytes(b"LOCKED")
    for _ in range(2):
        reader = FakeReader()
        result = index.update([scans], read_header=reader)
        assert reader.calls == [str(locked)]
        assert [p.reason for p in result.problems] == ["permission denied"]


def test_oserror_from_the_reader_does_not_stop_the_update(index: StudyIndex, scans: Path) -> None:
    write_spec(scans / "a.dcm")
    write_spec(scans / "b.dcm")

    def reader(path: Path) -> InstanceHeader:
        if path.name == "a.dcm":
            raise PermissionError(13, "Permission denied", str(path))
        return FakeReader()(path)

    result = index.update([scans], read_header=reader)
    assert result.added == 1
    assert [(Path(p.path).name, p.kind) for p in result.problems] == [("a.dcm", "unreadable")]


def test_an_indexed_file_that_becomes_corrupt_is_removed(index: StudyIndex, scans: Path) -> None:
    f = write_spec(scans / "a.dcm")
    index.update([scans], read_header=FakeReader())
    f.write_bytes(b"BROKEN now")
    result = index.update([scans], read_header=FakeReader())
    assert result.removed == 1
    assert index.patients() == []


def test_cancelling_leaves_the_index_unchanged(index: StudyIndex, scans: Path) -> None:
    write_spec(scans / "old.dcm")
    index.update([scans], read_header=FakeReader())
    before = index.search()
    for i in range(10):
        write_spec(scans / f"new{i}.dcm", patient_id="P2", study_uid="7.7", series_uid="7.7.1")
    (scans / "old.dcm").unlink()

    reader = FakeReader()
    with pytest.raises(LoadCancelled):
        index.update([scans], cancel=lambda: len(reader.calls) >= 5, read_header=reader)
    assert len(reader.calls) == 5
    assert index.search() == before
    assert index._db.execute("SELECT COUNT(*) FROM instance").fetchone()[0] == 1

    result = index.update([scans], read_header=FakeReader())  # and it is still usable
    assert (result.added, result.removed) == (10, 1)


def test_cancel_is_checked_while_listing(index: StudyIndex, scans: Path) -> None:
    write_spec(scans / "a.dcm")
    reader = FakeReader()
    with pytest.raises(LoadCancelled):
        index.update([scans], cancel=lambda: True, read_header=reader)
    assert reader.calls == []


def test_an_error_in_the_middle_rolls_back(index: StudyIndex, scans: Path) -> None:
    for i in range(3):
        write_spec(scans / f"{i}.dcm")

    def reader(path: Path) -> InstanceHeader:
        if path.name == "2.dcm":
            raise RuntimeError("bug in a reader")
        return FakeReader()(path)

    with pytest.raises(RuntimeError):
        index.update([scans], read_header=reader)
    assert index.patients() == []


def test_progress_is_throttled_and_complete(
    index: StudyIndex, scans: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = [1000.0]
    monkeypatch.setattr(study_index, "_monotonic", lambda: clock[0])
    for i in range(200):
        write_spec(scans / f"{i:03}.dcm")
    fake = FakeReader()

    def reader(path: Path) -> InstanceHeader:
        clock[0] += 0.01  # 10 ms per file: 2 s in all
        return fake(path)

    calls: list[tuple[int, int]] = []
    index.update(
        [scans], progress=lambda done, total: calls.append((done, total)), read_header=reader
    )
    assert calls[0] == (0, 200)
    assert calls[-1] == (200, 200)
    assert all(total == 200 for _, total in calls)
    assert [d for d, _ in calls] == sorted({d for d, _ in calls})
    assert len(calls) <= 2 / 0.05 + 3  # at most ~20 per second


def test_progress_with_no_files(index: StudyIndex, scans: Path) -> None:
    calls: list[tuple[int, int]] = []
    result = index.update([scans], progress=lambda d, t: calls.append((d, t)))
    assert calls == [(0, 0)]
    assert result == IndexUpdate()


def test_duplicate_sop_instance_uids_keep_both_files(index: StudyIndex, scans: Path) -> None:
    write_spec(scans / "a" / "1.dcm", sop_instance_uid="1.2.3.1.1")
    write_spec(scans / "b" / "1.dcm", sop_instance_uid="1.2.3.1.1")
    write_spec(scans / "a" / "2.dcm", sop_instance_uid="1.2.3.1.2")
    assert index.update([scans], read_header=FakeReader()).added == 3
    headers = index.headers_for_series("1.2.3.1")
    assert [Path(h.path).relative_to(scans).as_posix() for h in headers] == [
        "a/1.dcm",
        "a/2.dcm",
        "b/1.dcm",
    ]
    [series] = index.series("1.2.3")
    assert (series.number_of_files, series.number_of_images) == (3, 2)
    assert index.search()[0].number_of_images == 2


def test_non_image_objects_are_indexed_as_non_image_series(index: StudyIndex, scans: Path) -> None:
    write_spec(scans / "ct.dcm")
    write_spec(
        scans / "sr.dcm",
        series_uid="1.2.3.99",
        series_number=99,
        modality="SR",
        series_description="Dose report",
        sop_class_uid="1.2.840.10008.5.1.4.1.1.88.67",
        rows=0,
        columns=0,
        pixel_data_offset=None,
        pixel_data_length=None,
        has_pixel_data=False,
    )
    index.update([scans], read_header=FakeReader())
    ct, sr = index.series("1.2.3")
    assert (ct.modality, ct.is_image, ct.number_of_images) == ("CT", True, 1)
    assert (sr.modality, sr.is_image, sr.number_of_images, sr.number_of_files) == (
        "SR",
        False,
        0,
        1,
    )
    assert index.search(modality="sr")[0].modalities == ("CT", "SR")
    [header] = index.headers_for_series("1.2.3.99")
    assert header.rows == 0 and header.frames == ()


def test_multi_frame_images_count_their_frames(index: StudyIndex, scans: Path) -> None:
    write_spec(scans / "enhanced.dcm", frames=150)
    index.update([scans], read_header=FakeReader())
    [series] = index.series("1.2.3")
    assert (series.number_of_files, series.number_of_images) == (1, 150)
    row = index._db.execute("SELECT number_of_frames, instance_number FROM instance").fetchone()
    assert tuple(row) == (150, 1)


def test_files_without_uids_are_not_merged_across_patients(index: StudyIndex, scans: Path) -> None:
    write_spec(scans / "a.dcm", study_uid="", series_uid="", patient_id="A")
    write_spec(scans / "b.dcm", study_uid="", series_uid="", patient_id="B")
    index.update([scans], read_header=FakeReader())
    patients = index.patients()
    assert len(patients) == 2
    for patient in patients:
        [study] = index.studies(patient.key)
        [series] = index.series(study.study_uid)
        [header] = index.headers_for_series(series.series_uid)
        assert header.study_uid == header.series_uid == ""  # the record itself is exact


def test_headers_are_rebuilt_exactly(index: StudyIndex, scans: Path) -> None:
    reader = FakeReader()
    write_spec(scans / "1.dcm", frames=3, image_type=["DERIVED", "SECONDARY"], rescale_type="HU")
    write_spec(scans / "2.dcm", series_number=None, pixel_data_length=None, body_part="LIVER")
    index.update([scans], read_header=reader)
    expected = [reader(scans / "1.dcm"), reader(scans / "2.dcm")]
    rebuilt = index.headers_for_series("1.2.3.1")
    assert rebuilt == expected
    assert isinstance(rebuilt[0].frames, tuple)
    assert isinstance(rebuilt[0].frames[0].position, tuple)
    assert isinstance(rebuilt[0].image_type, tuple)


def test_headers_round_trip_with_absent_geometry(index: StudyIndex, scans: Path) -> None:
    header = make_header(str(scans / "x.dcm"), frames=())
    geometry_free = dataclasses.replace(
        header, frames=(FrameHeader(path=header.path, echo_number=2, temporal_position=-1),)
    )
    (scans / "x.dcm").write_bytes(b"x")
    index.update([scans], read_header=lambda path: geometry_free)
    assert index.headers_for_series("1.2.3.1") == [geometry_free]


def test_a_damaged_stored_header_is_a_clear_error(index: StudyIndex, scans: Path) -> None:
    write_spec(scans / "a.dcm")
    index.update([scans], read_header=FakeReader())
    index._db.execute("UPDATE instance SET header_json = '{\"path\": 1'")
    with pytest.raises(StudyIndexError, match="damaged"):
        index.headers_for_series("1.2.3.1")
    index._db.execute("UPDATE instance SET header_json = '{}'")  # required fields missing
    with pytest.raises(StudyIndexError, match="damaged"):
        index.headers_for_series("1.2.3.1")


def test_forget_also_drops_remembered_problems(index: StudyIndex, scans: Path) -> None:
    (scans / "broken.dcm").write_bytes(b"BROKEN")
    write_spec(scans / "a.dcm")
    index.update([scans], read_header=FakeReader())
    assert index.forget([scans / "a.dcm"]) == 1
    assert index.forget([scans]) == 0
    reader = FakeReader()
    result = index.update([scans], read_header=reader)
    assert sorted(Path(c).name for c in reader.calls) == ["a.dcm", "broken.dcm"]
    assert result.added == 1


def test_absurd_numbers_are_stored_in_the_record_only(index: StudyIndex, scans: Path) -> None:
    write_spec(scans / "a.dcm", series_number=2**70)
    index.update([scans], read_header=FakeReader())
    [series] = index.series("1.2.3")
    assert series.series_number is None
    assert index.headers_for_series("1.2.3.1")[0].series_number == 2**70


# ---------------------------------------------------------------------------- browsing
@pytest.fixture
def library(index: StudyIndex, scans: Path) -> StudyIndex:
    """Three patients, four studies, a mix of modalities and descriptions."""
    specs = {
        "doe/ct1.dcm": {},
        "doe/ct2.dcm": {},
        "doe/mr.dcm": {
            "series_uid": "1.2.3.2",
            "series_number": 1,
            "modality": "MR",
            "series_description": "T2 HASTE",
        },
        "doe/old.dcm": {
            "study_uid": "1.2.4",
            "study_date": "20190301",
            "study_description": "Chest",
            "series_uid": "1.2.4.1",
            "modality": "CR",
            "series_description": "PA",
        },
        "mueller/a.dcm": {
            "patient_name": "MÜLLER^Jörg",
            "patient_id": "M-77",
            "study_uid": "2.1",
            "study_date": "20230615",
            "study_description": "Leber",
            "series_uid": "2.1.1",
            "modality": "MR",
            "series_description": "Arterielle Phase",
        },
        "percent/a.dcm": {
            "patient_name": "100%^SURE",
            "patient_id": "ID_1",
            "study_uid": "3.1",
            "study_date": "",
            "study_description": "",
            "series_uid": "3.1.1",
            "series_description": "",
        },
        "percent/b.dcm": {
            "patient_name": "1000^OTHER",
            "patient_id": "IDX1",
            "study_uid": "3.2",
            "study_date": "2021.02.03",  # ACR-NEMA style date
            "study_description": "",
            "series_uid": "3.2.1",
            "series_description": "",
        },
    }
    for name, values in specs.items():
        write_spec(scans / name, **values)
    index.update([scans], read_header=FakeReader())
    return index


def test_patients_studies_series_browse_the_hierarchy(library: StudyIndex) -> None:
    patients = library.patients()
    assert [p.patient_name for p in patients] == [
        "100%^SURE",
        "1000^OTHER",
        "DOE^JANE",
        "MÜLLER^Jörg",
    ]
    doe = patients[2]
    assert doe == PatientRow(doe.key, "P1", "DOE^JANE", "", "", 2)

    studies = library.studies(doe.key)
    assert study_uids(studies) == ["1.2.3", "1.2.4"]  # newest first
    assert studies[0] == StudyRow(
        study_uid="1.2.3",
        patient_key=doe.key,
        patient_name="DOE^JANE",
        patient_id="P1",
        patient_birth_date="",
        study_date="20240105",
        study_time="",
        description="CT ABDOMEN",
        accession_number="",
        modalities=("CT", "MR"),
        number_of_series=2,
        number_of_images=3,
    )
    series = library.series("1.2.3")
    assert series == [
        SeriesRow("1.2.3.2", "1.2.3", 1, "MR", "T2 HASTE", "20240105", "", 1, 1, True),
        SeriesRow("1.2.3.1", "1.2.3", 2, "CT", "Portal venous", "20240105", "", 2, 2, True),
    ]
    assert library.studies(10**9) == []
    assert library.series("no.such.study") == []


def test_search_without_filters_lists_every_study(library: StudyIndex) -> None:
    assert study_uids(library.search()) == ["1.2.3", "2.1", "3.2", "1.2.4", "3.1"]


def test_text_search_covers_names_ids_and_descriptions(library: StudyIndex) -> None:
    assert study_uids(library.search(text="doe")) == ["1.2.3", "1.2.4"]
    assert study_uids(library.search(text="jane doe")) == ["1.2.3", "1.2.4"]  # word order free
    assert study_uids(library.search(text="DOE^JANE")) == ["1.2.3", "1.2.4"]
    assert study_uids(library.search(text="m-77")) == ["2.1"]
    assert study_uids(library.search(text="abdomen")) == ["1.2.3"]
    assert study_uids(library.search(text="haste")) == ["1.2.3"]  # a series description
    assert study_uids(library.search(text="haste chest")) == []  # every word must match
    assert library.search(text="nobody") == []


def test_text_search_folds_non_ascii_case(library: StudyIndex) -> None:
    assert study_uids(library.search(text="müller")) == ["2.1"]
    assert study_uids(library.search(text="JÖRG")) == ["2.1"]
    assert study_uids(library.search(patient="mÜller jörg")) == ["2.1"]


def test_percent_and_underscore_are_literal(library: StudyIndex) -> None:
    assert study_uids(library.search(text="100%")) == ["3.1"]
    assert study_uids(library.search(patient="100%")) == ["3.1"]
    assert study_uids(library.search(text="%")) == ["3.1"]
    assert study_uids(library.search(text="id_1")) == ["3.1"]  # "_" is not a wildcard
    assert study_uids(library.search(text="_")) == ["3.1"]
    assert library.search(text="'; DROP TABLE study; --") == []
    assert len(library.search()) == 5


def test_patient_and_description_filters(library: StudyIndex) -> None:
    assert study_uids(library.search(patient="abdomen")) == []
    assert study_uids(library.search(description="doe")) == []
    assert study_uids(library.search(description="arterielle")) == ["2.1"]
    assert study_uids(library.search(description="chest")) == ["1.2.4"]
    assert study_uids(library.search(patient="p1", description="pa")) == ["1.2.4"]


def test_date_range_is_inclusive_and_excludes_unknown_dates(library: StudyIndex) -> None:
    assert study_uids(library.search(date_from="20230615")) == ["1.2.3", "2.1"]
    assert study_uids(library.search(date_to="20210203")) == ["3.2", "1.2.4"]
    assert study_uids(library.search(date_from="20200101", date_to="20231231")) == ["2.1", "3.2"]
    assert library.search(date_from="20250101") == []
    with pytest.raises(ValueError, match="YYYYMMDD"):
        library.search(date_from="2024-01-05")


def test_modality_matches_any_series_of_the_study(library: StudyIndex) -> None:
    assert study_uids(library.search(modality="MR")) == ["1.2.3", "2.1"]
    assert study_uids(library.search(modality="ct")) == ["1.2.3", "3.2", "3.1"]
    assert study_uids(library.search(modality="CR", text="doe")) == ["1.2.4"]
    assert library.search(modality="PT") == []


# ---------------------------------------------------------------------------- robustness
def test_hostile_strings_round_trip_literally(index: StudyIndex, scans: Path) -> None:
    values = {
        "patient_name": 'O\'Brien^"Bob" <script>alert(1)</script>',
        "patient_id": "../../etc/passwd",
        "study_description": "; DROP TABLE study; -- " + "long " * 4000,
        "series_description": "tab\there\nnew line \\ back\u200bslash \x00 nul",
        "accession_number": "%_*?[]",
        "referring_physician": "山田^太郎",
    }
    write_spec(scans / "a.dcm", **values)
    reader = FakeReader()
    index.update([scans], read_header=reader)
    [header] = index.headers_for_series("1.2.3.1")
    assert header == reader(scans / "a.dcm")
    for name, value in values.items():
        assert getattr(header, name) == value
    [patient] = index.patients()
    assert (patient.patient_name, patient.patient_id) == (
        values["patient_name"],
        "../../etc/passwd",
    )
    [study] = index.search(text="<script>")
    assert study.description == values["study_description"]
    assert study.accession_number == "%_*?[]"
    assert index.series("1.2.3")[0].description == values["series_description"]
    assert study_uids(index.search(text='o\'brien "bob"')) == ["1.2.3"]
    assert study_uids(index.search(patient="../")) == ["1.2.3"]


@pytest.mark.skipif(sys.platform in ("win32", "darwin"), reason="needs arbitrary byte file names")
def test_file_names_that_are_not_utf8_round_trip(index: StudyIndex, scans: Path) -> None:
    raw_name = os.fsencode(scans) + b"/caf\xe9 \xff\xfe.dcm"
    try:
        with open(raw_name, "wb") as handle:
            handle.write(json.dumps({"patient_name": "X"}).encode())
    except OSError:
        pytest.skip("this file system refuses non-UTF-8 names")
    path = Path(os.fsdecode(raw_name))
    reader = FakeReader()
    assert index.update([scans], read_header=reader).added == 1
    [header] = index.headers_for_series("1.2.3.1")
    assert os.fsencode(header.path) == raw_name
    assert header.frames[0].path == header.path
    assert header == reader(path)
    assert index.update([scans], read_header=FakeReader()).unchanged == 1
    os.remove(raw_name)
    assert index.update([scans], read_header=FakeReader()).removed == 1


def test_undecodable_header_text_is_kept_exactly(index: StudyIndex, scans: Path) -> None:
    (scans / "a.dcm").write_bytes(b"x")
    header = make_header(str(scans / "a.dcm"), patient_name="bad \udcff name")
    index.update([scans], read_header=lambda path: header)
    assert index.headers_for_series("1.2.3.1") == [header]
    assert index.patients()[0].patient_name == "bad \ufffd name"  # displayable column
    assert study_uids(index.search(text="bad")) == ["1.2.3"]


def test_the_scanned_folder_is_never_modified(index: StudyIndex, scans: Path) -> None:
    for i in range(4):
        write_spec(scans / "series" / f"{i}.dcm")
    (scans / "junk.bin").write_bytes(b"BROKEN")
    before = snapshot(scans)
    listing = sorted(os.listdir(scans))
    index.update([scans], read_header=FakeReader())
    index.update([scans], read_header=FakeReader())
    assert snapshot(scans) == before
    assert sorted(os.listdir(scans)) == listing
    assert not index.path.is_relative_to(scans)


def test_a_second_connection_reads_while_an_update_writes(
    index: StudyIndex, scans: Path, data_dir: Path
) -> None:
    write_spec(scans / "a.dcm")
    index.update([scans], read_header=FakeReader())
    write_spec(scans / "b.dcm", patient_id="P2", study_uid="5.5", series_uid="5.5.1")
    with StudyIndex.open() as browser:
        seen_during: list[int] = []
        fake = FakeReader()

        def reader(path: Path) -> InstanceHeader:
            seen_during.append(len(browser.patients()))  # not blocked, sees the old state
            return fake(path)

        index.update([scans], read_header=reader)
        assert seen_during == [1]
        assert len(browser.patients()) == 2


def test_a_busy_index_is_reported(index: StudyIndex, scans: Path, data_dir: Path) -> None:
    write_spec(scans / "a.dcm")
    index._db.execute("PRAGMA busy_timeout=0")
    with StudyIndex.open() as other:
        other._db.execute("BEGIN IMMEDIATE")  # another writer holds the lock
        try:
            with pytest.raises(StudyIndexError, match="busy"):
                index.update([scans], read_header=FakeReader())
        finally:
            other._db.execute("ROLLBACK")


def test_reading_headers_does_not_block_other_writers(
    index: StudyIndex, scans: Path, data_dir: Path
) -> None:
    """An import reads headers without the write lock, so the viewer can save meanwhile."""
    write_spec(scans / "a.dcm")
    fake = FakeReader()
    saved: list[bool] = []

    def reader(path: Path) -> InstanceHeader:
        with StudyIndex.open() as other:
            other._db.execute("PRAGMA busy_timeout=0")
            other.save_annotations("1.2.3", [])
            saved.append(True)
        return fake(path)

    index.update([scans], read_header=reader)
    assert saved == [True]


# ---------------------------------------------------------------------------- real DICOM files
REAL_FILES = ("CT_small.dcm", "MR_small.dcm", "test-SR.dcm", "JPEG2000.dcm")


@pytest.fixture
def real_scans(scans: Path) -> Path:
    pytest.importorskip("radview.io.dicom_scan")
    from pydicom.data import get_testdata_file

    for name in REAL_FILES:
        source = get_testdata_file(name)
        assert source is not None
        shutil.copy2(source, scans / name)
    (scans / "readme.txt").write_text("not DICOM\n")
    return scans


def test_real_files_are_indexed_and_rebuilt(index: StudyIndex, real_scans: Path) -> None:
    from radview.io.dicom_scan import read_instance_header

    result = index.update([real_scans])
    assert result.added == len(REAL_FILES), result.problems
    assert [Path(p.path).name for p in result.problems] == ["readme.txt"]
    assert result.problems[0].kind == "not_dicom"

    ct_header = read_instance_header(real_scans / "CT_small.dcm")
    [ct_study] = index.search(modality="CT", text=ct_header.patient_name)
    assert ct_study.study_uid == ct_header.study_uid
    [ct_series] = [s for s in index.series(ct_header.study_uid) if s.modality == "CT"]
    assert ct_series.is_image
    assert index.headers_for_series(ct_series.series_uid) == [ct_header]

    sr_header = read_instance_header(real_scans / "test-SR.dcm")
    [sr_series] = [s for s in index.series(sr_header.study_uid) if s.modality == "SR"]
    assert not sr_series.is_image and sr_series.number_of_images == 0


def test_real_files_are_not_read_again_and_not_touched(index: StudyIndex, real_scans: Path) -> None:
    from radview.io.dicom_scan import read_instance_header

    before = snapshot(real_scans)
    index.update([real_scans])
    calls: list[Path] = []

    def counting_reader(path: Path) -> InstanceHeader:
        calls.append(path)
        return read_instance_header(path)

    result = index.update([real_scans], read_header=counting_reader)
    assert calls == []
    assert result.unchanged == len(REAL_FILES)
    assert [Path(p.path).name for p in result.problems] == ["readme.txt"]
    assert snapshot(real_scans) == before
    assert sorted(os.listdir(real_scans)) == sorted([*REAL_FILES, "readme.txt"])


def test_file_problems_are_records(index: StudyIndex, real_scans: Path) -> None:
    problems = index.update([real_scans]).problems
    assert all(isinstance(p, FileProblem) and "\n" not in p.reason for p in problems)


def test_a_series_written_by_radview_is_indexed_and_rebuilt(
    index: StudyIndex, request: pytest.FixtureRequest
) -> None:
    pytest.importorskip("radview.io.dicom_write")
    from radview.io.dicom_scan import read_instance_header

    volume, files = request.getfixturevalue("ct_series")  # tests/io/conftest.py
    folder = files[0].parent
    before = snapshot(folder)
    assert index.update([folder]).added == len(files)
    [study] = index.search(modality="CT")
    [series] = index.series(study.study_uid)
    assert (series.number_of_files, series.number_of_images) == (len(files), volume.shape[0])
    expected = sorted((read_instance_header(f) for f in files), key=lambda h: os.fsencode(h.path))
    assert index.headers_for_series(series.series_uid) == expected
    assert snapshot(folder) == before
