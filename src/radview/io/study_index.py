"""The local study index: an SQLite database of the DICOM files radview has seen.

The index lets the Patient → Study → Series browser and the search box answer at once, and
lets a series be grouped and sorted again without re-reading its files: every instance row
keeps the full :class:`~radview.io.dicom_header.InstanceHeader` record as JSON.

Files are referenced in place. The index never writes, moves or creates anything next to the
user's scans; its database lives in the user data dir (``RADVIEW_DATA_DIR`` overrides it).

Design choices
--------------
* **One transaction per update.** :meth:`StudyIndex.update` commits all of its changes at the
  end or none of them: cancelling (or any error) leaves the index exactly as it was, so no
  half-indexed series can ever be browsed or loaded as if it were complete. Readers on other
  connections keep seeing the previous state meanwhile (WAL). The price: a cancelled first scan
  of a large archive starts over next time.
* **Instances are keyed by file path.** Two files with the same SOP Instance UID (a copied
  folder, an export next to the original) are both indexed; the SOP UID has a non-unique index.
  Counts of images count such duplicates once; :meth:`StudyIndex.headers_for_series` returns
  both files, and grouping/loading decides which one to use.
* **Paths are stored as bytes** (``os.fsencode``) so file names that are not valid UTF-8 round
  trip exactly; SQLite text must be UTF-8.
* **Unchanged means same (size, mtime_ns).** Such files are not read again. Files that failed
  for a reason in their content (not DICOM, truncated, ...) are remembered the same way, so a
  folder full of JPEGs is not re-parsed on every update; I/O failures (permission denied,
  file vanished) are not remembered and are retried next time.
* **Removal needs evidence.** After a complete walk, an indexed file under a scanned folder that
  was not seen is removed only if it is really gone. A scanned folder that does not exist at
  all (an unplugged drive) is reported as a problem and its entries are kept;
  :meth:`StudyIndex.forget` removes them on request.
* **Annotations are the user's work, kept apart from the scanned data.** The ``annotation``
  table (schema 2) is keyed by a series key string and a stack name, with no foreign key to
  ``series``: rescans, pruning and :meth:`StudyIndex.forget` never delete a radiologist's
  measurements, and volumes that are not DICOM (NIfTI files) can be annotated too. Each row holds
  one :class:`~radview.core.annotations.Annotation` as JSON; a damaged row is skipped with a
  one-line warning, never a crash.
* **Schema upgrades happen in place.** ``_MIGRATIONS[n]`` turns schema ``n - 1`` into ``n``; a new
  file gets the version 1 tables and then every migration, so both routes give one layout.
* **Search is literal substring matching** on case-folded copies of the searched columns
  (``instr``, not ``LIKE``): the user's ``%`` and ``_`` need no escaping, non-ASCII letters
  fold correctly (SQLite's ``LIKE`` folds ASCII only), and long input cannot hit ``LIKE``'s
  pattern-length limit.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import sqlite3
import stat
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import platformdirs

from radview.core.annotations import Annotation
from radview.core.errors import InputFileError, LoadCancelled, RadviewError
from radview.io.dicom_header import FileProblem, FrameHeader, InstanceHeader

__all__ = [
    "SCHEMA_VERSION",
    "DATA_DIR_ENV",
    "StudyIndexError",
    "IndexUpdate",
    "PatientRow",
    "StudyRow",
    "SeriesRow",
    "StudyIndex",
    "default_index_path",
]

#: Version of the database layout this module writes (``PRAGMA user_version``).
#: 1: patients, studies, series, instances, failed files. 2: + annotations.
SCHEMA_VERSION = 2
#: Environment variable naming radview's data folder (tests and CI point it at a temp dir).
DATA_DIR_ENV = "RADVIEW_DATA_DIR"
#: ``PRAGMA application_id`` marking the file as a radview index ("RDVI").
_APPLICATION_ID = 0x52445649
_INDEX_FILE_NAME = "index.sqlite3"
#: Progress callbacks at most this often: a GUI repaint per file slows indexing severalfold.
_PROGRESS_INTERVAL_S = 0.05
#: Seconds to wait for another connection's write lock before reporting the index busy.
_BUSY_TIMEOUT_S = 5.0
_INT64 = (-(2**63), 2**63 - 1)
_DICOM_DATE = re.compile(r"\d{8}")
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")
_LEGACY_DATE = re.compile(r"(\d{4})\.(\d{2})\.(\d{2})")  # ACR-NEMA style YYYY.MM.DD
#: Separator for aggregated modality lists; cannot occur in a Modality value (CS).
_LIST_SEPARATOR = "\x1f"

ProgressCallback = Callable[[int, int], None]
CancelCallback = Callable[[], bool]
HeaderReader = Callable[[Path], InstanceHeader]

# The clock used for progress throttling; a module attribute so tests can drive it.
_monotonic = time.monotonic
_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _FileChange:
    """One new/changed/failed file found by an update's read phase, applied by its write phase."""

    path: str
    key: bytes
    signature: tuple[int, int]
    was_indexed: bool
    header: InstanceHeader | None
    problem: FileProblem | None
    remember: bool


class StudyIndexError(RadviewError):
    """The study index database cannot be used (damaged, foreign, newer, busy, not writable)."""


def default_index_path() -> Path:
    """Where the study index lives: ``$RADVIEW_DATA_DIR/index.sqlite3`` or the user data dir.

    Returns
    -------
    Path
        ``platformdirs.user_data_path("radview") / "index.sqlite3"`` unless the environment
        variable ``RADVIEW_DATA_DIR`` is set to a non-empty folder path.
    """
    override = os.environ.get(DATA_DIR_ENV, "").strip()
    if override:
        return Path(override).expanduser() / _INDEX_FILE_NAME
    return platformdirs.user_data_path("radview") / _INDEX_FILE_NAME


# ---------------------------------------------------------------------------- records
@dataclass
class IndexUpdate:
    """What one :meth:`StudyIndex.update` did.

    The counts are of indexed DICOM files (instances). ``problems`` lists every file under the
    scanned paths that is not indexed, with its reason, including files that failed in an
    earlier update and were skipped now because they have not changed, plus unreadable or
    missing folders.
    """

    added: int = 0
    updated: int = 0
    unchanged: int = 0
    removed: int = 0
    problems: list[FileProblem] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class PatientRow:
    """One patient of the browser (identity is patient ID + name + birth date)."""

    key: int
    patient_id: str
    patient_name: str
    birth_date: str
    sex: str
    number_of_studies: int


@dataclass(frozen=True, slots=True)
class StudyRow:
    """One study, with the modalities of its series and how many images it holds."""

    study_uid: str
    patient_key: int
    patient_name: str
    patient_id: str
    patient_birth_date: str
    study_date: str
    study_time: str
    description: str
    accession_number: str
    modalities: tuple[str, ...]
    number_of_series: int
    number_of_images: int


@dataclass(frozen=True, slots=True)
class SeriesRow:
    """One series. ``is_image`` is False for series of non-image objects (SR, PR, ...).

    ``number_of_images`` counts frames of image instances, each SOP Instance UID once;
    ``number_of_files`` counts indexed files, duplicates included. ``date`` is the study date
    (the scan does not record a series date).
    """

    series_uid: str
    study_uid: str
    series_number: int | None
    modality: str
    description: str
    date: str
    body_part: str
    number_of_files: int
    number_of_images: int
    is_image: bool


# ---------------------------------------------------------------------------- schema
_SCHEMA = (
    """CREATE TABLE patient (
        patient_key INTEGER PRIMARY KEY,
        patient_id TEXT NOT NULL,
        patient_name TEXT NOT NULL,
        birth_date TEXT NOT NULL,
        sex TEXT NOT NULL,
        patient_id_fold TEXT NOT NULL,
        patient_name_fold TEXT NOT NULL,
        UNIQUE (patient_id, patient_name, birth_date)
    )""",
    "CREATE INDEX patient_by_name ON patient (patient_name_fold)",
    "CREATE INDEX patient_by_id ON patient (patient_id_fold)",
    """CREATE TABLE study (
        study_key INTEGER PRIMARY KEY,
        study_uid TEXT NOT NULL UNIQUE,
        patient_key INTEGER NOT NULL REFERENCES patient (patient_key),
        study_date TEXT NOT NULL,
        study_time TEXT NOT NULL,
        study_description TEXT NOT NULL,
        accession_number TEXT NOT NULL,
        referring_physician TEXT NOT NULL,
        study_description_fold TEXT NOT NULL
    )""",
    "CREATE INDEX study_by_patient ON study (patient_key)",
    "CREATE INDEX study_by_date ON study (study_date)",
    """CREATE TABLE series (
        series_key INTEGER PRIMARY KEY,
        series_uid TEXT NOT NULL UNIQUE,
        study_key INTEGER NOT NULL REFERENCES study (study_key),
        series_number INTEGER,
        series_description TEXT NOT NULL,
        modality TEXT NOT NULL,
        body_part TEXT NOT NULL,
        series_description_fold TEXT NOT NULL
    )""",
    "CREATE INDEX series_by_study ON series (study_key)",
    "CREATE INDEX series_by_modality ON series (modality COLLATE NOCASE)",
    """CREATE TABLE instance (
        instance_key INTEGER PRIMARY KEY,
        path BLOB NOT NULL UNIQUE,
        series_key INTEGER NOT NULL REFERENCES series (series_key),
        file_size INTEGER NOT NULL,
        mtime_ns INTEGER NOT NULL,
        sop_instance_uid TEXT NOT NULL,
        sop_class_uid TEXT NOT NULL,
        transfer_syntax_uid TEXT NOT NULL,
        image_rows INTEGER NOT NULL,
        image_columns INTEGER NOT NULL,
        number_of_frames INTEGER NOT NULL,
        instance_number INTEGER,
        is_image INTEGER NOT NULL,
        header_json TEXT NOT NULL
    )""",
    "CREATE INDEX instance_by_series ON instance (series_key)",
    "CREATE INDEX instance_by_sop ON instance (sop_instance_uid)",
    """CREATE TABLE file_problem (
        path BLOB PRIMARY KEY,
        file_size INTEGER NOT NULL,
        mtime_ns INTEGER NOT NULL,
        kind TEXT NOT NULL,
        reason TEXT NOT NULL
    ) WITHOUT ROWID""",
)

# Schema upgrades: _MIGRATIONS[n] turns schema n - 1 into n. Only ever append to this.
_MIGRATIONS: dict[int, tuple[str, ...]] = {
    2: (
        # series_uid holds any stable series key (a Series Instance UID, or a volume file's
        # path); stack is the SeriesStack part ("" for a whole series). No foreign key on
        # purpose: see the module docstring.
        """CREATE TABLE annotation (
            series_uid TEXT NOT NULL,
            stack TEXT NOT NULL,
            position INTEGER NOT NULL,
            payload TEXT NOT NULL,
            updated_ns INTEGER NOT NULL
        )""",
        "CREATE INDEX annotation_by_series ON annotation (series_uid, stack, position)",
    ),
}
assert sorted(_MIGRATIONS) == list(range(2, SCHEMA_VERSION + 1)), "a migration is missing"

# Shared SELECT of the browser rows; the aggregates are computed on demand because they change
# with every update and are cheap with the indexes above.
_STUDY_SELECT = f"""
    SELECT s.study_uid, p.patient_key, p.patient_name, p.patient_id, p.birth_date,
           s.study_date, s.study_time, s.study_description, s.accession_number,
           (SELECT group_concat(m, char({ord(_LIST_SEPARATOR)})) FROM (
                SELECT DISTINCT upper(se.modality) AS m FROM series se
                WHERE se.study_key = s.study_key AND se.modality != '' ORDER BY m)),
           (SELECT COUNT(*) FROM series se WHERE se.study_key = s.study_key),
           (SELECT COALESCE(SUM(frames), 0) FROM (
                SELECT MAX(i.number_of_frames) AS frames
                FROM instance i JOIN series se ON se.series_key = i.series_key
                WHERE se.study_key = s.study_key AND i.is_image
                GROUP BY se.series_key,
                         CASE WHEN i.sop_instance_uid = '' THEN i.path
                              ELSE i.sop_instance_uid END))
    FROM study s JOIN patient p ON p.patient_key = s.patient_key
"""
_STUDY_ORDER = " ORDER BY s.study_date DESC, s.study_time DESC, p.patient_name_fold, s.study_uid"

_SERIES_SELECT = """
    SELECT se.series_uid, s.study_uid, se.series_number, se.modality, se.series_description,
           s.study_date, se.body_part,
           (SELECT COUNT(*) FROM instance i WHERE i.series_key = se.series_key),
           (SELECT COALESCE(SUM(frames), 0) FROM (
                SELECT MAX(i.number_of_frames) AS frames FROM instance i
                WHERE i.series_key = se.series_key AND i.is_image
                GROUP BY CASE WHEN i.sop_instance_uid = '' THEN i.path
                              ELSE i.sop_instance_uid END)),
           EXISTS (SELECT 1 FROM instance i WHERE i.series_key = se.series_key AND i.is_image)
    FROM series se JOIN study s ON s.study_key = se.study_key
"""


# ---------------------------------------------------------------------------- the index
class StudyIndex:
    """An open study index. Use as a context manager, or call :meth:`close`.

    One instance per thread: the underlying SQLite connection refuses use from another thread,
    so a background indexer opens its own ``StudyIndex`` on the same file (WAL lets the GUI's
    connection keep reading meanwhile).

    Parameters
    ----------
    path
        Database file; ``None`` means :func:`default_index_path`. Missing parent folders are
        created.

    Raises
    ------
    StudyIndexError
        The file is not an SQLite database, is another application's database, was written by
        a newer radview, is damaged, or cannot be created.
    """

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        self.path = Path(path).expanduser() if path is not None else default_index_path()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise StudyIndexError(
                f"{self.path}: cannot create the study index folder ({error.strerror})"
            ) from error
        try:
            self._db = sqlite3.connect(self.path, timeout=_BUSY_TIMEOUT_S, isolation_level=None)
        except sqlite3.Error as error:
            raise StudyIndexError(f"{self.path}: cannot open the study index ({error})") from error
        try:
            with self._errors():
                self._prepare()
        except BaseException:
            self._db.close()
            raise

    @classmethod
    def open(cls, path: str | os.PathLike[str] | None = None) -> StudyIndex:
        """Open (creating if needed) the index at ``path`` or at :func:`default_index_path`."""
        return cls(path)

    def close(self) -> None:
        """Close the database; closing twice is harmless."""
        self._db.close()

    def __enter__(self) -> StudyIndex:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"StudyIndex({str(self.path)!r})"

    # ------------------------------------------------------------------ opening
    def _prepare(self) -> None:
        db = self._db
        # The first statement is where SQLite notices a file that is not a database at all.
        application_id = db.execute("PRAGMA application_id").fetchone()[0]
        version = db.execute("PRAGMA user_version").fetchone()[0]
        if application_id not in (0, _APPLICATION_ID):
            raise StudyIndexError(f"{self.path}: not a radview study index (another program's)")
        if version > SCHEMA_VERSION:
            raise StudyIndexError(
                f"{self.path}: study index written by a newer radview (schema {version}; this "
                f"version reads up to {SCHEMA_VERSION}); update radview or use another index file"
            )
        # WAL: the browser keeps reading while an update writes. Must be set outside a
        # transaction; a file system without shared memory keeps its old mode, which is fine.
        db.execute("PRAGMA journal_mode=WAL").fetchone()
        db.execute("PRAGMA foreign_keys=ON")
        # NORMAL is durable enough in WAL mode for an index that a rescan can rebuild.
        db.execute("PRAGMA synchronous=NORMAL")
        if version == SCHEMA_VERSION:
            return
        with self._transaction():
            # Checked again under the write lock: another process may have just created or
            # upgraded it.
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version == SCHEMA_VERSION:
                return
            if version == 0:
                if db.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()[0]:
                    raise StudyIndexError(
                        f"{self.path}: not a radview study index (an SQLite database with "
                        "other tables)"
                    )
                for statement in _SCHEMA:
                    db.execute(statement)
                db.execute(f"PRAGMA application_id={_APPLICATION_ID}")
                version = 1
            # In the same transaction as everything else: an upgrade that fails half-way
            # (disk full) leaves the file at its old version, still usable.
            for target in range(version + 1, SCHEMA_VERSION + 1):
                for statement in _MIGRATIONS[target]:
                    db.execute(statement)
            db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

    @contextmanager
    def _errors(self) -> Iterator[None]:
        """Turn SQLite failures into one-line :class:`StudyIndexError` messages."""
        try:
            yield
        except sqlite3.ProgrammingError:
            raise  # misuse by radview itself (closed index, wrong thread): not the user's doing
        except sqlite3.DatabaseError as error:
            message = str(error)
            if "not a database" in message:
                text = "not a radview study index (the file is not an SQLite database)"
            elif "malformed" in message or "corrupt" in message:
                text = f"the study index is damaged ({message}); delete it and scan again"
            elif "locked" in message or "busy" in message:
                text = "the study index is busy (an import is writing to it); try again"
            else:
                text = f"study index error ({message})"
            raise StudyIndexError(f"{self.path}: {text}") from error

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        # IMMEDIATE takes the write lock now, so a concurrent writer is reported before any
        # work is done rather than at the end of a long scan.
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    # ------------------------------------------------------------------ updating
    def update(
        self,
        paths: Iterable[str | os.PathLike[str]],
        *,
        progress: ProgressCallback | None = None,
        cancel: CancelCallback | None = None,
        read_header: HeaderReader | None = None,
    ) -> IndexUpdate:
        """Bring the index up to date with the files under ``paths`` (folders or files).

        New and changed files are read (header only), unchanged ones are skipped, and indexed
        files under these folders that are gone are removed, pruning empty series, studies and
        patients. Headers are read without holding the write lock; the changes are then
        committed in one short transaction, so the index is never half-updated.

        Parameters
        ----------
        paths
            Folders (searched recursively) and/or files.
        progress
            ``progress(done, total)`` over the files found: once with ``done == 0`` when the
            listing is complete, then at most every 50 ms, and always with ``done == total``.
        cancel
            Polled between files (also while listing); returning True stops the update.
        read_header
            The header reader; defaults to :func:`radview.io.dicom_scan.read_instance_header`.

        Returns
        -------
        IndexUpdate
            Counts of added/updated/unchanged/removed instances and the files not indexed.

        Raises
        ------
        LoadCancelled
            ``cancel()`` returned True; the index is unchanged.
        StudyIndexError
            The database failed (damaged, busy, disk full).
        """
        # Imported here: dicom_scan pulls in pydicom, which browsing the index never needs.
        from radview.io import dicom_scan

        reader = read_header if read_header is not None else dicom_scan.read_instance_header
        result = IndexUpdate()
        walked_roots: list[str] = []
        files: dict[str, None] = {}  # an ordered set: overlapping roots list a file once
        for raw in paths:
            _check_cancel(cancel)
            root = os.path.abspath(os.fspath(raw))
            if os.path.exists(root):
                walked_roots.append(root)
            # a missing root is reported by the walker and its entries are kept (see module doc)
            for path in dicom_scan.iter_candidate_files(Path(root), result.problems):
                _check_cancel(cancel)
                files[str(path)] = None

        report = _ThrottledProgress(progress, len(files))
        report(0)
        seen: set[bytes] = set()
        # Read phase, without the write lock: headers are read while viewers and other
        # connections keep reading *and writing* (e.g. saving measurements) the index.
        changes: list[_FileChange] = []
        with self._errors():
            for done, path in enumerate(files, start=1):
                _check_cancel(cancel)
                change = self._read_file(path, reader, result, seen)
                if change is not None:
                    changes.append(change)
                report(done)
            _check_cancel(cancel)
            # Write phase: one short transaction, so the index is never half-updated.
            with self._transaction():
                for change in changes:
                    self._apply_change(change, result)
                for root in walked_roots:
                    result.removed += self._remove_gone(root, seen)
                if result.added or result.updated or result.removed:
                    self._prune_empty()
        return result

    def _read_file(
        self, path: str, reader: HeaderReader, result: IndexUpdate, seen: set[bytes]
    ) -> _FileChange | None:
        """What changed for one file (None when nothing did); reads, never writes."""
        db = self._db
        key = os.fsencode(path)
        try:
            info = os.stat(path)
        except OSError as error:
            # gone or inaccessible since the listing; the removal pass handles a gone file
            result.problems.append(
                FileProblem(path, f"cannot read file ({error.strerror})", "unreadable")
            )
            return None
        seen.add(key)
        signature = (info.st_size, info.st_mtime_ns)
        stored = db.execute(
            "SELECT file_size, mtime_ns FROM instance WHERE path = ?", (key,)
        ).fetchone()
        if stored is not None and tuple(stored) == signature:
            result.unchanged += 1
            return None
        if stored is None:
            failed = db.execute(
                "SELECT file_size, mtime_ns, kind, reason FROM file_problem WHERE path = ?",
                (key,),
            ).fetchone()
            if failed is not None and tuple(failed[:2]) == signature:
                result.problems.append(FileProblem(path, failed[3], failed[2]))
                return None

        try:
            header = reader(Path(path))
        except InputFileError as error:
            from radview.io.dicom_scan import problem_from_error

            problem = replace(problem_from_error(error), path=path)
            # A plain InputFileError is how the reader reports I/O failures (permission,
            # vanished file): those may go away without the file changing, so retry them.
            remember = type(error) is not InputFileError
        except OSError as error:
            problem = FileProblem(path, f"cannot read file ({error.strerror})", "unreadable")
            remember = False
        else:
            return _FileChange(path, key, signature, stored is not None, header, None, False)
        return _FileChange(path, key, signature, stored is not None, None, problem, remember)

    def _apply_change(self, change: _FileChange, result: IndexUpdate) -> None:
        db = self._db
        key = change.key
        if change.header is not None:
            self._write_instance(key, change.signature, change.header)
            db.execute("DELETE FROM file_problem WHERE path = ?", (key,))
            if change.was_indexed:
                result.updated += 1
            else:
                result.added += 1
            return
        problem = change.problem
        assert problem is not None
        result.problems.append(problem)
        if change.was_indexed:
            db.execute("DELETE FROM instance WHERE path = ?", (key,))
            result.removed += 1
        if change.remember:
            db.execute(
                "INSERT INTO file_problem (path, file_size, mtime_ns, kind, reason) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT (path) DO UPDATE SET "
                "file_size = excluded.file_size, mtime_ns = excluded.mtime_ns, "
                "kind = excluded.kind, reason = excluded.reason",
                (key, *change.signature, _text(problem.kind), _text(problem.reason)),
            )
        else:
            db.execute("DELETE FROM file_problem WHERE path = ?", (key,))

    def _write_instance(self, key: bytes, signature: tuple[int, int], h: InstanceHeader) -> None:
        """Insert or replace one file's rows. Patient/study/series attributes: last read wins."""
        db = self._db
        db.execute(
            "INSERT INTO patient (patient_id, patient_name, birth_date, sex, patient_id_fold, "
            "patient_name_fold) VALUES (?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (patient_id, patient_name, birth_date) DO UPDATE SET sex = excluded.sex",
            (
                _text(h.patient_id),
                _text(h.patient_name),
                _text(h.patient_birth_date),
                _text(h.patient_sex),
                _fold(h.patient_id),
                _fold(h.patient_name),
            ),
        )
        patient_key = db.execute(
            "SELECT patient_key FROM patient WHERE patient_id = ? AND patient_name = ? "
            "AND birth_date = ?",
            (_text(h.patient_id), _text(h.patient_name), _text(h.patient_birth_date)),
        ).fetchone()[0]

        study_uid = _study_key_uid(h)
        db.execute(
            "INSERT INTO study (study_uid, patient_key, study_date, study_time, "
            "study_description, accession_number, referring_physician, study_description_fold) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (study_uid) DO UPDATE SET "
            "patient_key = excluded.patient_key, study_date = excluded.study_date, "
            "study_time = excluded.study_time, study_description = excluded.study_description, "
            "accession_number = excluded.accession_number, "
            "referring_physician = excluded.referring_physician, "
            "study_description_fold = excluded.study_description_fold",
            (
                study_uid,
                patient_key,
                _normalised_date(h.study_date),
                _text(h.study_time),
                _text(h.study_description),
                _text(h.accession_number),
                _text(h.referring_physician),
                _fold(h.study_description),
            ),
        )
        study_key = db.execute(
            "SELECT study_key FROM study WHERE study_uid = ?", (study_uid,)
        ).fetchone()[0]

        series_uid = _series_key_uid(h, study_uid)
        db.execute(
            "INSERT INTO series (series_uid, study_key, series_number, series_description, "
            "modality, body_part, series_description_fold) VALUES (?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (series_uid) DO UPDATE SET study_key = excluded.study_key, "
            "series_number = excluded.series_number, "
            "series_description = excluded.series_description, modality = excluded.modality, "
            "body_part = excluded.body_part, "
            "series_description_fold = excluded.series_description_fold",
            (
                series_uid,
                study_key,
                _int64(h.series_number),
                _text(h.series_description),
                _text(h.modality),
                _text(h.body_part),
                _fold(h.series_description),
            ),
        )
        series_key = db.execute(
            "SELECT series_key FROM series WHERE series_uid = ?", (series_uid,)
        ).fetchone()[0]

        instance_number = h.frames[0].instance_number if h.frames else None
        db.execute(
            "INSERT INTO instance (path, series_key, file_size, mtime_ns, sop_instance_uid, "
            "sop_class_uid, transfer_syntax_uid, image_rows, image_columns, number_of_frames, "
            "instance_number, is_image, header_json) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (path) DO UPDATE SET "
            "series_key = excluded.series_key, file_size = excluded.file_size, "
            "mtime_ns = excluded.mtime_ns, sop_instance_uid = excluded.sop_instance_uid, "
            "sop_class_uid = excluded.sop_class_uid, "
            "transfer_syntax_uid = excluded.transfer_syntax_uid, "
            "image_rows = excluded.image_rows, image_columns = excluded.image_columns, "
            "number_of_frames = excluded.number_of_frames, "
            "instance_number = excluded.instance_number, is_image = excluded.is_image, "
            "header_json = excluded.header_json",
            (
                key,
                series_key,
                # the stat taken before reading: if the file changed while it was read, the
                # next update sees a different signature and reads it again
                *signature,
                _text(h.sop_instance_uid),
                _text(h.sop_class_uid),
                _text(h.transfer_syntax_uid),
                _int64(h.rows) or 0,
                _int64(h.columns) or 0,
                _int64(h.number_of_frames) or 1,
                _int64(instance_number),
                int(h.is_image),
                _header_to_json(h),
            ),
        )

    def _remove_gone(self, root: str, seen: set[bytes]) -> int:
        """Delete rows of files under ``root`` that the walk did not see and that are gone."""
        removed = 0
        for table in ("instance", "file_problem"):
            for (key,) in self._db.execute(
                f"SELECT path FROM {table} WHERE " + _UNDER_ROOT, _under_root_params(root)
            ).fetchall():
                if key in seen or not _is_gone(key):
                    continue  # e.g. inside a folder that could not be listed this time
                self._db.execute(f"DELETE FROM {table} WHERE path = ?", (key,))
                removed += table == "instance"
        return removed

    def _prune_empty(self) -> None:
        db = self._db
        db.execute(
            "DELETE FROM series WHERE NOT EXISTS "
            "(SELECT 1 FROM instance i WHERE i.series_key = series.series_key)"
        )
        db.execute(
            "DELETE FROM study WHERE NOT EXISTS "
            "(SELECT 1 FROM series se WHERE se.study_key = study.study_key)"
        )
        db.execute(
            "DELETE FROM patient WHERE NOT EXISTS "
            "(SELECT 1 FROM study s WHERE s.patient_key = patient.patient_key)"
        )

    def forget(self, paths: Iterable[str | os.PathLike[str]]) -> int:
        """Remove every entry for files under ``paths`` (folders or files), present or not.

        This is how entries of a folder that no longer exists (or of an unplugged drive) are
        dropped; :meth:`update` keeps them.

        Returns
        -------
        int
            The number of instances removed.
        """
        removed = 0
        with self._errors(), self._transaction():
            for raw in paths:
                params = _under_root_params(os.path.abspath(os.fspath(raw)))
                removed += self._db.execute(
                    "DELETE FROM instance WHERE " + _UNDER_ROOT, params
                ).rowcount
                self._db.execute("DELETE FROM file_problem WHERE " + _UNDER_ROOT, params)
            self._prune_empty()
        return removed

    # ------------------------------------------------------------------ browsing
    def patients(self) -> list[PatientRow]:
        """Every patient, by name then ID."""
        with self._errors():
            rows = self._db.execute(
                "SELECT patient_key, patient_id, patient_name, birth_date, sex, "
                "(SELECT COUNT(*) FROM study s WHERE s.patient_key = p.patient_key) "
                "FROM patient p ORDER BY patient_name_fold, patient_id_fold, patient_key"
            ).fetchall()
        return [PatientRow(*row) for row in rows]

    def studies(self, patient_key: int) -> list[StudyRow]:
        """The studies of one patient (:attr:`PatientRow.key`), newest first."""
        with self._errors():
            rows = self._db.execute(
                _STUDY_SELECT + " WHERE s.patient_key = ?" + _STUDY_ORDER, (patient_key,)
            ).fetchall()
        return [_study_row(row) for row in rows]

    def series(self, study_uid: str) -> list[SeriesRow]:
        """The series of one study, by series number (unnumbered last), then description."""
        with self._errors():
            rows = self._db.execute(
                _SERIES_SELECT + " WHERE s.study_uid = ? ORDER BY se.series_number IS NULL, "
                "se.series_number, se.series_description_fold, se.series_uid",
                (study_uid,),
            ).fetchall()
        return [_series_row(row) for row in rows]

    def search(
        self,
        *,
        text: str = "",
        patient: str = "",
        date_from: str = "",
        date_to: str = "",
        modality: str = "",
        description: str = "",
    ) -> list[StudyRow]:
        """Studies matching every given filter (empty filters match everything), newest first.

        Text filters are split into words; each word must occur, case-insensitively and
        literally (``%``, ``_`` and quotes are ordinary characters), in one of the columns the
        filter covers. In patient names the DICOM ``^`` separator counts as a space, so
        ``"doe john"`` finds ``DOE^JOHN``.

        Parameters
        ----------
        text
            Patient name or ID, study description or any series description.
        patient
            Patient name or ID.
        date_from, date_to
            Inclusive study date bounds, DICOM ``YYYYMMDD``; studies without a date are
            excluded when either is given.
        modality
            A modality (``"CT"``) that at least one series of the study has.
        description
            Study description or any series description.

        Raises
        ------
        ValueError
            A date is not ``YYYYMMDD``.
        """
        where: list[str] = []
        params: list[Any] = []
        any_series_description = (
            "EXISTS (SELECT 1 FROM series se WHERE se.study_key = s.study_key "
            "AND instr(se.series_description_fold, ?) > 0)"
        )
        for word in _words(text):
            where.append(
                "(instr(p.patient_name_fold, ?) > 0 OR instr(p.patient_id_fold, ?) > 0 "
                f"OR instr(s.study_description_fold, ?) > 0 OR {any_series_description})"
            )
            params += [word] * 4
        for word in _words(patient):
            where.append("(instr(p.patient_name_fold, ?) > 0 OR instr(p.patient_id_fold, ?) > 0)")
            params += [word] * 2
        for word in _words(description):
            where.append(f"(instr(s.study_description_fold, ?) > 0 OR {any_series_description})")
            params += [word] * 2
        if date_from or date_to:
            where.append("s.study_date GLOB '" + "[0-9]" * 8 + "'")
        if date_from:
            where.append("s.study_date >= ?")
            params.append(_checked_date(date_from, "date_from"))
        if date_to:
            where.append("s.study_date <= ?")
            params.append(_checked_date(date_to, "date_to"))
        if modality.strip():
            where.append(
                "EXISTS (SELECT 1 FROM series se WHERE se.study_key = s.study_key "
                "AND se.modality = ? COLLATE NOCASE)"
            )
            params.append(_text(modality.strip()))
        sql = _STUDY_SELECT + (" WHERE " + " AND ".join(where) if where else "") + _STUDY_ORDER
        with self._errors():
            rows = self._db.execute(sql, params).fetchall()
        return [_study_row(row) for row in rows]

    # ------------------------------------------------------------------ annotations
    def save_annotations(
        self, series_key: str, annotations: Iterable[Annotation], *, stack: str = ""
    ) -> None:
        """Store ``annotations`` as the complete set for one series (or stack of it).

        Replaces whatever was stored for ``(series_key, stack)`` in one transaction; an empty
        list deletes them. The order is kept.

        Parameters
        ----------
        series_key
            A stable key of the series: its Series Instance UID for DICOM, the file path of a
            NIfTI/NRRD/MHA volume.
        annotations
            The annotations, in display order.
        stack
            Which stack of the series (:attr:`radview.io.dicom_series.SeriesStack.part`);
            ``""`` for a whole series.

        Raises
        ------
        ValueError
            An annotation has a non-finite coordinate (nothing is written).
        StudyIndexError
            The database failed (damaged, busy, disk full); the stored set is unchanged.
        """
        payloads = []
        for annotation in annotations:
            if not isinstance(annotation, Annotation):
                raise TypeError(f"expected an Annotation, got {type(annotation).__name__}")
            # allow_nan=False: NaN is not JSON, and a NaN point cannot be measured anyway
            payloads.append(
                json.dumps(
                    annotation.to_json(), ensure_ascii=True, allow_nan=False, separators=(",", ":")
                )
            )
        key, part = _text(series_key), _text(stack)
        now = time.time_ns()
        with self._errors(), self._transaction():
            self._db.execute(
                "DELETE FROM annotation WHERE series_uid = ? AND stack = ?", (key, part)
            )
            self._db.executemany(
                "INSERT INTO annotation (series_uid, stack, position, payload, updated_ns) "
                "VALUES (?, ?, ?, ?, ?)",
                [(key, part, position, text, now) for position, text in enumerate(payloads)],
            )

    def read_annotations(
        self, series_key: str, *, stack: str = ""
    ) -> tuple[list[Annotation], list[str]]:
        """The stored annotations of one series, and a warning for each damaged row.

        A row that is not valid JSON, or not a valid annotation, or repeats an id, is skipped;
        its warning is one line naming the index file, the series and what is wrong.

        Raises
        ------
        StudyIndexError
            The database itself failed.
        """
        with self._errors():
            rows = self._db.execute(
                "SELECT position, payload FROM annotation WHERE series_uid = ? AND stack = ? "
                "ORDER BY position, rowid",
                (_text(series_key), _text(stack)),
            ).fetchall()
        annotations: list[Annotation] = []
        warnings: list[str] = []
        seen: set[str] = set()
        of_series = f"of series {series_key!r}" + (f" stack {stack!r}" if stack else "")
        for position, payload in rows:
            try:
                annotation = _annotation_from_json(payload)
            except (ValueError, KeyError, TypeError, AttributeError) as error:
                # edited or damaged outside radview: keep the rest of the user's work
                reason = str(error).splitlines()[0] if str(error) else type(error).__name__
                warnings.append(
                    f"{self.path}: annotation {position} {of_series} is damaged ({reason}); "
                    "skipped"
                )
                continue
            if annotation.id in seen:
                warnings.append(
                    f"{self.path}: annotation {position} {of_series} repeats id "
                    f"{annotation.id!r}; skipped"
                )
                continue
            seen.add(annotation.id)
            annotations.append(annotation)
        return annotations, warnings

    def load_annotations(self, series_key: str, *, stack: str = "") -> list[Annotation]:
        """The stored annotations of one series, in the saved order.

        Damaged rows are skipped and each is logged as a one-line warning; use
        :meth:`read_annotations` to get those warnings instead. Never raises for a damaged
        row.

        Raises
        ------
        StudyIndexError
            The database itself failed.
        """
        annotations, warnings = self.read_annotations(series_key, stack=stack)
        for warning in warnings:
            _log.warning("%s", warning)
        return annotations

    def headers_for_series(self, series_uid: str) -> list[InstanceHeader]:
        """The stored headers of a series' files, exactly as the reader returned them.

        Ordered by path; sorting slices is the grouping code's job. Files are not touched.

        Raises
        ------
        StudyIndexError
            A stored record cannot be decoded.
        """
        with self._errors():
            rows = self._db.execute(
                "SELECT i.header_json FROM instance i JOIN series se "
                "ON se.series_key = i.series_key WHERE se.series_uid = ? ORDER BY i.path",
                (series_uid,),
            ).fetchall()
        try:
            return [_header_from_json(text) for (text,) in rows]
        except (ValueError, TypeError) as error:  # a row edited or damaged outside radview
            raise StudyIndexError(
                f"{self.path}: a stored header of series {series_uid} is damaged ({error}); "
                "scan its folder again"
            ) from error


# ---------------------------------------------------------------------------- helpers
class _ThrottledProgress:
    """Calls ``callback(done, total)`` at most every 50 ms, plus at the start and the end."""

    def __init__(self, callback: ProgressCallback | None, total: int) -> None:
        self._callback = callback
        self._total = total
        self._last = float("-inf")

    def __call__(self, done: int) -> None:
        if self._callback is None:
            return
        now = _monotonic()
        if done in (0, self._total) or now - self._last >= _PROGRESS_INTERVAL_S:
            self._last = now
            self._callback(done, self._total)


def _check_cancel(cancel: CancelCallback | None) -> None:
    if cancel is not None and cancel():
        raise LoadCancelled("study index update cancelled; the index is unchanged")


# Rows whose path is the root itself or lies below it: a BLOB range, so the unique index on
# path answers it. The upper bound is the prefix with its last byte (the separator) + 1.
_UNDER_ROOT = "(path = ? OR (path >= ? AND path < ?))"


def _under_root_params(root: str) -> tuple[bytes, bytes, bytes]:
    key = os.fsencode(root)
    separator = os.fsencode(os.sep)
    prefix = key if key.endswith(separator) else key + separator
    return key, prefix, prefix[:-1] + bytes([prefix[-1] + 1])


def _is_gone(key: bytes) -> bool:
    """True if the file is definitely no longer there (not merely inaccessible)."""
    try:
        info = os.stat(key)
    except (FileNotFoundError, NotADirectoryError):
        return True
    except OSError:
        return False  # permission or I/O trouble: keep the entry rather than guess
    return not stat.S_ISREG(info.st_mode)  # replaced by a folder or a device


def _text(value: str) -> str:
    """``value`` as valid UTF-8 text for SQLite (lone surrogates become U+FFFD).

    Only the searchable/displayed columns go through this; the exact value is kept in the
    stored header JSON.
    """
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return _LONE_SURROGATE.sub("\ufffd", value)
    return value


def _fold(value: str) -> str:
    """Search form: case-folded, with the DICOM name separators ``^`` and ``=`` as spaces."""
    return _text(value).replace("^", " ").replace("=", " ").casefold()


def _words(query: str) -> list[str]:
    return _fold(query).split()


def _checked_date(value: str, name: str) -> str:
    value = value.strip()
    if not _DICOM_DATE.fullmatch(value):
        raise ValueError(f"{name} must be a DICOM date YYYYMMDD, got {value!r}")
    return value


def _normalised_date(value: str) -> str:
    """The study date for the date filter; ACR-NEMA ``YYYY.MM.DD`` becomes ``YYYYMMDD``."""
    value = _text(value).strip()
    legacy = _LEGACY_DATE.fullmatch(value)
    return "".join(legacy.groups()) if legacy else value


def _int64(value: int | None) -> int | None:
    """``value`` if SQLite can store it; a damaged header's absurd number becomes unknown."""
    if value is None or not _INT64[0] <= value <= _INT64[1]:
        return None
    return int(value)


def _study_key_uid(h: InstanceHeader) -> str:
    """The study's key: its UID, or for files without one a placeholder per patient.

    Without the placeholder every UID-less file of every patient would share one study.
    """
    if h.study_uid:
        return _text(h.study_uid)
    return _text(f"missing-study:{h.patient_id}^{h.patient_name}^{h.patient_birth_date}")


def _series_key_uid(h: InstanceHeader, study_uid: str) -> str:
    if h.series_uid:
        return _text(h.series_uid)
    return _text(
        f"missing-series:{study_uid}|{h.modality}|{h.series_number}|{h.series_description}"
    )


def _study_row(row: tuple[Any, ...]) -> StudyRow:
    modalities = tuple(row[9].split(_LIST_SEPARATOR)) if row[9] else ()
    return StudyRow(*row[:9], modalities, *row[10:])


def _series_row(row: tuple[Any, ...]) -> SeriesRow:
    return SeriesRow(*row[:9], bool(row[9]))


def _record(obj: Any) -> dict[str, Any]:
    # shallow on purpose: dataclasses.asdict deep-copies every value, which is slow for
    # multi-frame files with thousands of FrameHeaders
    return {f.name: getattr(obj, f.name) for f in fields(obj)}


def _header_to_json(header: InstanceHeader) -> str:
    record = _record(header)
    record["frames"] = [_record(frame) for frame in header.frames]
    # ensure_ascii keeps lone surrogates (undecodable file names) as \\udcxx escapes
    return json.dumps(record, ensure_ascii=True, separators=(",", ":"))


def _tuples(value: Any) -> Any:
    """JSON lists back to the tuples the header records use."""
    if isinstance(value, list):
        return tuple(_tuples(item) for item in value)
    return value


def _known(cls: type, record: dict[str, Any]) -> dict[str, Any]:
    names = {f.name for f in fields(cls)}
    return {name: _tuples(value) for name, value in record.items() if name in names}


def _header_from_json(text: str) -> InstanceHeader:
    record = json.loads(text)
    frames = tuple(FrameHeader(**_known(FrameHeader, item)) for item in record.pop("frames", ()))
    return InstanceHeader(**_known(InstanceHeader, record), frames=frames)


def _annotation_from_json(text: str) -> Annotation:
    record = json.loads(text)
    if not isinstance(record, dict):
        raise TypeError(f"expected a JSON object, got {type(record).__name__}")
    annotation = Annotation.from_json(record)
    if not all(math.isfinite(v) for point in annotation.points for v in point):
        raise ValueError("a point has a non-finite coordinate")
    if any(len(point) != 3 for point in annotation.points):
        raise ValueError("a point does not have three coordinates")
    if annotation.slice_index < 0:
        raise ValueError(f"negative slice index {annotation.slice_index}")
    return annotation
