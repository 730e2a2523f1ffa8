"""Annotations in the study index: round trip, reopening, schema 1 -> 2 upgrade, damaged rows."""

from __future__ import annotations

import json
import logging
import sqlite3
from pathlib import Path

import pytest

from radview.core.annotations import Annotation, AnnotationKind
from radview.core.volume import ViewPlane
from radview.io import study_index
from radview.io.study_index import SCHEMA_VERSION, StudyIndex, StudyIndexError

SERIES = "1.2.840.113619.2.55.3.604688119.969.1268071029.320"


def sample_annotations() -> list[Annotation]:
    """The same four annotations (fixed ids) on every call."""
    return [
        Annotation(AnnotationKind.RULER, ViewPlane.AXIAL, 12,
                   ((-10.25, 30.5, 12.0), (44.125, 30.5, 12.0)), id="r1", label="Lesion 1"),
        Annotation(AnnotationKind.ANGLE, ViewPlane.CORONAL, 3,
                   ((0.0, 1.0, 2.0), (3.0, 1.0, 5.0), (6.0, 1.0, 2.0)), id="a1"),
        Annotation(AnnotationKind.ELLIPSE, ViewPlane.SAGITTAL, 0,
                   ((7.0, -1.0, -2.0), (7.0, 9.0, 8.0)), id="e1", label="Läsion «2» <b>"),
        Annotation(AnnotationKind.RECTANGLE, ViewPlane.AXIAL, 99,
                   ((1e-7, 2.0, 3.0), (4.0, 5.0, 3.0)), id="q1"),
    ]


@pytest.fixture
def index_path(tmp_path: Path) -> Path:
    return tmp_path / "index.sqlite3"


@pytest.fixture
def index(index_path: Path) -> StudyIndex:
    with StudyIndex.open(index_path) as opened:
        yield opened


def _make_version_1_index(path: Path) -> None:
    """A schema-1 file as the previous radview wrote it, with a patient in it."""
    db = sqlite3.connect(path, isolation_level=None)
    for statement in study_index._SCHEMA:
        db.execute(statement)
    db.execute(f"PRAGMA application_id={study_index._APPLICATION_ID}")
    db.execute("PRAGMA user_version=1")
    db.execute(
        "INSERT INTO patient (patient_id, patient_name, birth_date, sex, patient_id_fold, "
        "patient_name_fold) VALUES ('P1', 'DOE^JANE', '19700101', 'F', 'p1', 'doe jane')"
    )
    db.close()


def _insert_raw(path: Path, payloads: list[str], key: str = SERIES) -> None:
    db = sqlite3.connect(path, isolation_level=None)
    db.executemany(
        "INSERT INTO annotation (series_uid, stack, position, payload, updated_ns) "
        "VALUES (?, '', ?, ?, 0)",
        [(key, position, payload) for position, payload in enumerate(payloads)],
    )
    db.close()


# ---------------------------------------------------------------------------- round trip
def test_round_trip_keeps_every_field_and_the_order(index: StudyIndex) -> None:
    annotations = sample_annotations()
    index.save_annotations(SERIES, annotations)
    assert index.load_annotations(SERIES) == annotations
    assert index.read_annotations(SERIES) == (annotations, [])


def test_annotations_survive_reopening_the_index(index_path: Path) -> None:
    with StudyIndex.open(index_path) as index:
        index.save_annotations(SERIES, sample_annotations())
    with StudyIndex.open(index_path) as index:
        assert index.load_annotations(SERIES) == sample_annotations()


def test_save_replaces_the_whole_set_and_empty_deletes(index: StudyIndex) -> None:
    first, second, *_ = sample_annotations()
    index.save_annotations(SERIES, [first, second])
    index.save_annotations(SERIES, [second])
    assert index.load_annotations(SERIES) == [second]
    index.save_annotations(SERIES, [])
    assert index.load_annotations(SERIES) == []
    count = index._db.execute("SELECT COUNT(*) FROM annotation").fetchone()[0]
    assert count == 0


def test_series_and_stacks_are_kept_apart(index: StudyIndex) -> None:
    a, b, c, d = sample_annotations()
    odd_key = "/scans/{weird} 'name'.nii.gz"
    index.save_annotations(SERIES, [a])
    index.save_annotations(SERIES, [b], stack="localizer")
    index.save_annotations(odd_key, [c, d])
    assert index.load_annotations(SERIES) == [a]
    assert index.load_annotations(SERIES, stack="localizer") == [b]
    assert index.load_annotations(odd_key) == [c, d]
    assert index.load_annotations("unknown") == []


def test_annotations_are_not_removed_by_forget(index: StudyIndex, tmp_path: Path) -> None:
    index.save_annotations(SERIES, sample_annotations())
    index.forget([tmp_path])
    assert len(index.load_annotations(SERIES)) == 4


def test_another_connection_sees_saved_annotations(index: StudyIndex, index_path: Path) -> None:
    with StudyIndex.open(index_path) as other:
        other.save_annotations(SERIES, sample_annotations()[:1])
    assert index.load_annotations(SERIES) == sample_annotations()[:1]


def test_non_finite_points_are_refused_before_anything_is_written(index: StudyIndex) -> None:
    index.save_annotations(SERIES, sample_annotations())
    bad = Annotation(AnnotationKind.RULER, ViewPlane.AXIAL, 0,
                     ((float("nan"), 0.0, 0.0), (1.0, 0.0, 0.0)))
    with pytest.raises(ValueError):
        index.save_annotations(SERIES, [bad])
    with pytest.raises(TypeError):
        index.save_annotations(SERIES, [{"kind": "ruler"}])  # type: ignore[list-item]
    assert index.load_annotations(SERIES) == sample_annotations()


def test_updated_ns_is_recorded(index: StudyIndex) -> None:
    index.save_annotations(SERIES, sample_annotations()[:1])
    (updated,) = index._db.execute("SELECT updated_ns FROM annotation").fetchone()
    assert updated > 1_600_000_000 * 10**9


# ---------------------------------------------------------------------------- schema upgrade
def test_a_version_1_index_is_upgraded_in_place(index_path: Path) -> None:
    _make_version_1_index(index_path)
    with StudyIndex.open(index_path) as index:
        db = index._db
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 2
        assert [p.patient_id for p in index.patients()] == ["P1"]  # old contents kept
        index.save_annotations(SERIES, sample_annotations())
    with StudyIndex.open(index_path) as index:  # and the upgrade happens only once
        assert index.load_annotations(SERIES) == sample_annotations()


def test_new_and_upgraded_indexes_have_the_same_layout(tmp_path: Path) -> None:
    def layout(path: Path) -> set[tuple[str, str]]:
        db = sqlite3.connect(path)
        rows = db.execute("SELECT type, name, sql FROM sqlite_master WHERE sql IS NOT NULL")
        result = {(kind, name + ":" + " ".join(sql.split())) for kind, name, sql in rows}
        db.close()
        return result

    StudyIndex.open(tmp_path / "new.sqlite3").close()
    _make_version_1_index(tmp_path / "old.sqlite3")
    StudyIndex.open(tmp_path / "old.sqlite3").close()
    assert layout(tmp_path / "new.sqlite3") == layout(tmp_path / "old.sqlite3")


def test_a_failed_upgrade_leaves_version_1_intact(index_path: Path) -> None:
    _make_version_1_index(index_path)
    db = sqlite3.connect(index_path, isolation_level=None)
    db.execute("CREATE TABLE annotation (x)")  # makes the migration's CREATE TABLE fail
    db.close()
    with pytest.raises(StudyIndexError, match="already exists"):
        StudyIndex.open(index_path)
    db = sqlite3.connect(index_path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == 1
    assert db.execute("SELECT COUNT(*) FROM patient").fetchone()[0] == 1
    db.close()


# ---------------------------------------------------------------------------- damaged rows
def test_damaged_rows_are_skipped_with_one_line_warnings(
    index: StudyIndex, index_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    good = sample_annotations()[0]
    valid = json.dumps(good.to_json())
    wrong_points = dict(good.to_json(), id="w1", points=[[0, 0, 0]])
    two_d = dict(good.to_json(), id="w2", points=[[0, 0], [1, 1]])
    nan_point = dict(good.to_json(), id="w3", points=[[0, 0, 0], [1, 1, 1]])
    negative_slice = dict(good.to_json(), id="w4", slice_index=-1)
    _insert_raw(index_path, [
        "{not json",
        valid,
        "[1, 2, 3]",
        json.dumps({"kind": "ruler"}),
        json.dumps(dict(good.to_json(), id="k1", kind="freehand")),
        json.dumps(wrong_points),
        json.dumps(two_d),
        json.dumps(nan_point).replace("[1, 1, 1]", "[NaN, 1, 1]"),
        json.dumps(negative_slice),
        valid,  # the same id again
    ])
    annotations, warnings = index.read_annotations(SERIES)
    assert annotations == [good]
    assert len(warnings) == 9
    for warning in warnings:
        assert "\n" not in warning and str(index_path) in warning and SERIES in warning
    assert "annotation 0 " in warnings[0] and "damaged" in warnings[0]
    assert "repeats id" in warnings[-1]

    with caplog.at_level(logging.WARNING, logger="radview.io.study_index"):
        assert index.load_annotations(SERIES) == [good]
    assert [r.getMessage() for r in caplog.records] == warnings


def test_a_newer_schema_is_still_refused(index_path: Path) -> None:
    StudyIndex.open(index_path).close()
    db = sqlite3.connect(index_path, isolation_level=None)
    db.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    db.close()
    with pytest.raises(StudyIndexError, match="newer radview"):
        StudyIndex.open(index_path)
