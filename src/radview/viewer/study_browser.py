"""The study browser: Patient → Study → Series from the study index, search, import.

The panel only shows what :class:`~radview.io.study_index.StudyIndex` answers and starts the
index's own functions (DESIGN rule 3). Importing is ``StudyIndex.update`` in a worker thread;
because an SQLite connection belongs to the thread that opened it, the worker opens its own
``StudyIndex`` on the same file (WAL lets the panel keep reading meanwhile). An update is one
transaction, so a cancelled import leaves the index exactly as it was.

Everything that comes from a DICOM header (names, descriptions) is put into
``QStandardItem`` text and plain-text labels only, never into rich text, so markup in a header
is shown literally.
"""

from __future__ import annotations

import dataclasses
import os
import weakref
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from PIL import Image
from PySide6.QtCore import (
    QEvent,
    QModelIndex,
    QObject,
    QSettings,
    QSize,
    Qt,
    QTimer,
    Signal,
    Slot,
)
from PySide6.QtGui import (
    QAction,
    QDragEnterEvent,
    QDragMoveEvent,
    QDropEvent,
    QFont,
    QIcon,
    QImage,
    QPalette,
    QPixmap,
    QStandardItem,
    QStandardItemModel,
)
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QSizePolicy,
    QToolButton,
    QTreeView,
    QVBoxLayout,
    QWidget,
)

from radview.core.dicom_text import format_dicom_date, format_person_name
from radview.core.errors import RadviewError
from radview.core.windowing import window_for, window_to_uint8
from radview.io.dicom_header import InstanceHeader
from radview.io.study_index import IndexUpdate, PatientRow, SeriesRow, StudyIndex, StudyRow
from radview.viewer.workers import TaskRunner

__all__ = ["StudyBrowserPanel", "make_series_thumbnail", "update_index"]

#: Edge of the square series thumbnails, pixels.
THUMBNAIL_SIZE = 64
#: Thumbnails decoded at the same time (the rest wait; imports must not queue behind them).
_THUMBNAILS_IN_FLIGHT = 2
#: Trees with at most this many series open fully expanded.
_EXPAND_ALL_MAX_SERIES = 100
_SEARCH_DELAY_MS = 200
_MIN_NAME_WIDTH = 240
_SETTINGS_LAST_FOLDER = "study_browser/last_folder"
_ALL_MODALITIES = "All modalities"

# Item data roles on column 0: what the row is and its key.
ROLE_KIND = Qt.ItemDataRole.UserRole + 1
ROLE_KEY = Qt.ItemDataRole.UserRole + 2
KIND_PATIENT = "patient"
KIND_STUDY = "study"
KIND_SERIES = "series"

# Images next to Modality: in a narrow dock those two stay visible without scrolling.
COLUMNS = ("Name", "Modality", "Images", "Date", "Details")
COL_NAME, COL_MODALITY, COL_IMAGES, COL_DATE, COL_DETAILS = range(len(COLUMNS))


# ---------------------------------------------------------------------------- worker functions
def update_index(
    index_path: str,
    paths: Sequence[str],
    *,
    progress: Callable[[int, int], None] | None = None,
    cancel: Callable[[], bool] | None = None,
) -> IndexUpdate:
    """Run :meth:`StudyIndex.update` on its own connection (for a worker thread).

    Parameters
    ----------
    index_path
        The database file of the panel's index.
    paths
        Folders and files to import.
    progress, cancel
        Passed to :meth:`StudyIndex.update`.

    Returns
    -------
    IndexUpdate
        What the update did.
    """
    with StudyIndex(index_path) as index:
        return index.update(paths, progress=progress, cancel=cancel)


def make_series_thumbnail(index_path: str, series_uid: str, size: int = THUMBNAIL_SIZE) -> QImage:
    """A ``size`` x ``size`` greyscale thumbnail of the middle image of a series.

    Reads the stored headers on its own index connection, groups them, takes the largest stack
    and decodes only its middle slice. Safe in a worker thread (QImage, not QPixmap).

    Raises
    ------
    RadviewError
        The series has no decodable image (the caller then shows no thumbnail).
    """
    from radview.io.dicom_load import load_stack
    from radview.io.dicom_series import group_series

    with StudyIndex(index_path) as index:
        headers = index.headers_for_series(series_uid)
    stacks = group_series(headers).stacks
    if not stacks:
        raise RadviewError(f"series {series_uid}: no image to show")
    stack = max(stacks, key=lambda s: (s.part != "localizer", s.frame_count))
    present = [frame for frame in stack.slots if frame is not None]
    middle = present[len(present) // 2]
    header = next(h for h in stack.instances if h.path == middle.path)
    single = dataclasses.replace(stack, slots=(middle,), instances=(header,))
    loaded = load_stack(single, workers=1)
    if loaded.problems:  # the slice was left blank: better no thumbnail than a black one
        problem = loaded.problems[0]
        raise RadviewError(f"{problem.path}: {problem.reason}")
    volume = loaded.volume
    pixels = window_to_uint8(volume.voxels[0], window_for(volume))
    return _square_thumbnail(pixels, stack.spacing[0], stack.spacing[1], size)


def _square_thumbnail(pixels: np.ndarray, column_mm: float, row_mm: float, size: int) -> QImage:
    """``pixels`` (uint8 rows x columns) scaled to true aspect inside a black ``size`` square.

    Scaled and composed with Pillow, not ``QImage.scaled``/``QPainter``: those ran in this
    worker thread and once crashed the process inside Qt's smooth scaling (which may hand work
    to Qt's own thread pool); Pillow's resampling is plain, thread-safe C.
    """
    rows, columns = pixels.shape
    width_mm, height_mm = columns * column_mm, rows * row_mm
    scale = size / max(width_mm, height_mm)
    width = min(size, max(1, round(width_mm * scale)))
    height = min(size, max(1, round(height_mm * scale)))
    scaled = Image.fromarray(np.ascontiguousarray(pixels)).resize(
        (width, height), Image.Resampling.BILINEAR, reducing_gap=2.0)
    square = Image.new("L", (size, size), 0)
    square.paste(scaled, ((size - width) // 2, (size - height) // 2))
    data = np.ascontiguousarray(np.asarray(square))
    # copy(): the QImage must own its pixels, not borrow the array's
    return QImage(data.data, size, size, size, QImage.Format.Format_Grayscale8).copy()


# ---------------------------------------------------------------------------- formatting
def _format_time(value: str) -> str:
    value = value.strip()
    if len(value) >= 4 and value[:4].isdigit():
        return f"{value[:2]}:{value[2:4]}"
    return value


def _person_name(value: str) -> str:
    return format_person_name(value) or "(no name)"


def _joined(*parts: str) -> str:
    return " · ".join(part for part in parts if part)


# ---------------------------------------------------------------------------- the panel
class StudyBrowserPanel(QWidget):
    """Browse, search and import studies of a :class:`StudyIndex`.

    Parameters
    ----------
    index
        The GUI thread's open index (read here; imports open their own connection to its file).
    settings
        Remembers the last import folder (``study_browser/last_folder``); None: not remembered.
    parent
        Usual QWidget parent.

    Signals
    -------
    series_activated(series_uid, headers)
        A series was double-clicked or Enter was pressed on it; ``headers`` is the
        ``list[InstanceHeader]`` of its files from :meth:`StudyIndex.headers_for_series`.
    import_finished(update)
        An import completed (:class:`IndexUpdate`); the tree has been refreshed.
    """

    series_activated = Signal(str, object)
    import_finished = Signal(object)

    def __init__(
        self,
        index: StudyIndex,
        *,
        settings: QSettings | None = None,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self._index = index
        self._settings = settings
        self._import_task: TaskRunner | None = None
        self._pending_imports: deque[list[str]] = deque()
        self.last_update: IndexUpdate | None = None
        self._details_dialog: QDialog | None = None
        # thumbnails: cache key (uid, files) -> icon, or None when it could not be made
        self._thumbnails: dict[tuple[str, int], QIcon | None] = {}
        self._thumbnail_queue: deque[tuple[str, int]] = deque()
        self._thumbnail_tasks: dict[tuple[str, int], TaskRunner] = {}
        self._series_items: dict[str, QStandardItem] = {}
        self._series_rows: dict[str, SeriesRow] = {}
        self._expanded: dict[tuple[str, object], bool] = {}
        blank = QPixmap(THUMBNAIL_SIZE, THUMBNAIL_SIZE)
        blank.fill(Qt.GlobalColor.transparent)
        self._blank_icon = QIcon(blank)

        self.import_folder_action = QAction("Import &folder…", self)
        self.import_folder_action.setToolTip("Add a folder of DICOM files to the study index")
        self.import_folder_action.triggered.connect(self._on_import_folder_triggered)
        self.import_files_action = QAction("Import fi&les…", self)
        self.import_files_action.setToolTip("Add DICOM files to the study index")
        self.import_files_action.triggered.connect(self._on_import_files_triggered)

        self._build_ui()
        self.setAcceptDrops(True)
        self._search_timer = QTimer(self)
        self._search_timer.setSingleShot(True)
        self._search_timer.setInterval(_SEARCH_DELAY_MS)
        self._search_timer.timeout.connect(self.refresh)
        self.refresh()

    # ------------------------------------------------------------------ construction
    def _build_ui(self) -> None:
        self.search_edit = QLineEdit()
        self.search_edit.setPlaceholderText("Search name, patient ID, description")
        self.search_edit.setClearButtonEnabled(True)
        self.search_edit.textChanged.connect(self._on_search_text_changed)
        self.modality_combo = QComboBox()
        self.modality_combo.addItem(_ALL_MODALITIES, "")
        self.modality_combo.setToolTip("Show only studies with a series of this modality")
        self.modality_combo.currentIndexChanged.connect(self._on_modality_changed)
        folder_button = QToolButton()
        folder_button.setDefaultAction(self.import_folder_action)
        files_button = QToolButton()
        files_button.setDefaultAction(self.import_files_action)
        # two rows so that the search box keeps its width in a narrow dock
        controls = QHBoxLayout()
        controls.addWidget(self.modality_combo)
        controls.addStretch(1)
        controls.addWidget(folder_button)
        controls.addWidget(files_button)

        self.model = QStandardItemModel(0, len(COLUMNS), self)
        self.model.setHorizontalHeaderLabels(list(COLUMNS))
        self.tree = QTreeView()
        self.tree.setModel(self.model)
        self.tree.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.tree.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.tree.setIconSize(QSize(THUMBNAIL_SIZE * 3 // 4, THUMBNAIL_SIZE * 3 // 4))
        self.tree.setAlternatingRowColors(True)
        self.tree.setExpandsOnDoubleClick(True)
        self.tree.activated.connect(self._on_tree_activated)
        self.tree.expanded.connect(self._on_tree_expanded)
        self.tree.collapsed.connect(self._on_tree_collapsed)
        header = self.tree.header()
        header.setStretchLastSection(False)
        # The name column takes what the others leave, but never less than _MIN_NAME_WIDTH: in
        # a narrow dock the tree scrolls sideways instead of squeezing names to "...".
        header.setSectionResizeMode(COL_NAME, QHeaderView.ResizeMode.Interactive)
        for column in (COL_MODALITY, COL_DATE, COL_DETAILS, COL_IMAGES):
            header.setSectionResizeMode(column, QHeaderView.ResizeMode.ResizeToContents)
        header.sectionResized.connect(self._on_section_resized)
        self.tree.viewport().installEventFilter(self)

        self.progress_bar = QProgressBar()
        self.progress_bar.setTextVisible(True)
        self.progress_label = QLabel()
        self.progress_label.setTextFormat(Qt.TextFormat.PlainText)
        self.progress_label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.clicked.connect(self._on_cancel_clicked)
        self._progress_row = QWidget()
        progress_layout = QHBoxLayout(self._progress_row)
        progress_layout.setContentsMargins(0, 0, 0, 0)
        progress_layout.addWidget(self.progress_label)
        progress_layout.addWidget(self.progress_bar, 1)
        progress_layout.addWidget(self.cancel_button)
        self._progress_row.hide()

        self.summary_label = QLabel()
        self.summary_label.setTextFormat(Qt.TextFormat.PlainText)
        self.summary_label.setWordWrap(True)
        self.details_button = QPushButton("Details…")
        self.details_button.clicked.connect(self.show_problem_details)
        self.details_button.hide()
        summary_row = QHBoxLayout()
        summary_row.addWidget(self.summary_label, 1)
        summary_row.addWidget(self.details_button)

        layout = QVBoxLayout(self)
        layout.addWidget(self.search_edit)
        layout.addLayout(controls)
        layout.addWidget(self.tree, 1)
        layout.addWidget(self._progress_row)
        layout.addLayout(summary_row)

    # ------------------------------------------------------------------ browsing
    @Slot()
    def refresh(self) -> None:
        """Rebuild the tree from the index with the current search text and modality."""
        self._search_timer.stop()
        text = self.search_edit.text()
        modality = str(self.modality_combo.currentData() or "")
        try:
            all_studies = self._index.search()
            filtered = bool(text.strip() or modality)
            studies = self._index.search(text=text, modality=modality) if filtered else all_studies
            patients = {row.key: row for row in self._index.patients()}
            series_of = {study.study_uid: self._index.series(study.study_uid)
                         for study in studies}
        except RadviewError as error:
            self._show_message(str(error))
            return
        self._update_modality_choices(all_studies)
        self._save_expansion()
        self.model.removeRows(0, self.model.rowCount())
        self._series_items.clear()
        self._series_rows.clear()

        by_patient: dict[int, list[StudyRow]] = {}
        for study in studies:
            by_patient.setdefault(study.patient_key, []).append(study)
        wanted = modality.upper()
        position = {key: n for n, key in enumerate(patients)}  # the index's patient order
        ordered = sorted(by_patient, key=lambda key: position.get(key, len(position)))
        for patient_key in ordered:
            patient_studies = by_patient[patient_key]
            patient_row = self._patient_items(patients.get(patient_key), patient_studies)
            for study in patient_studies:
                series_rows = [row for row in series_of[study.study_uid]
                               if not wanted or row.modality.upper() == wanted]
                study_row = self._study_items(study)
                for series in series_rows:
                    study_row[0].appendRow(self._series_items_of(series))
                patient_row[0].appendRow(study_row)
            self.model.appendRow(patient_row)
        self._restore_expansion(sum(len(rows) for rows in series_of.values()))
        self._request_visible_thumbnails()

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if watched is self.tree.viewport() and event.type() == QEvent.Type.Resize:
            self._fit_name_column()
        return super().eventFilter(watched, event)

    @Slot(int, int, int)
    def _on_section_resized(self, column: int, _old: int, _new: int) -> None:
        if column != COL_NAME:
            self._fit_name_column()

    def _fit_name_column(self) -> None:
        header = self.tree.header()
        others = sum(header.sectionSize(c) for c in range(1, len(COLUMNS)))
        width = max(_MIN_NAME_WIDTH, self.tree.viewport().width() - others)
        if header.sectionSize(COL_NAME) != width:
            header.resizeSection(COL_NAME, width)

    def patient_count(self) -> int:
        """Patients shown in the tree."""
        return self.model.rowCount()

    def study_count(self) -> int:
        """Studies shown in the tree."""
        root = self.model.invisibleRootItem()
        return sum(root.child(p).rowCount() for p in range(root.rowCount()))

    def series_count(self) -> int:
        """Series shown in the tree."""
        return len(self._series_items)

    def series_index(self, series_uid: str) -> QModelIndex:
        """The model index of a series row (invalid if it is not shown)."""
        item = self._series_items.get(series_uid)
        return item.index() if item is not None else QModelIndex()

    def _patient_items(self, patient: PatientRow | None,
                       studies: list[StudyRow]) -> list[QStandardItem]:
        name = _person_name(patient.patient_name if patient else studies[0].patient_name)
        patient_id = patient.patient_id if patient else studies[0].patient_id
        birth = patient.birth_date if patient else studies[0].patient_birth_date
        sex = patient.sex if patient else ""
        modalities = sorted({m for study in studies for m in study.modalities})
        details = _joined(f"ID {patient_id}" if patient_id else "",
                          f"born {format_dicom_date(birth)}" if birth else "", sex)
        items = _row(name, ", ".join(modalities), "", details,
                     str(sum(study.number_of_images for study in studies)))
        font = QFont(items[0].font())
        font.setBold(True)
        items[0].setFont(font)
        key = studies[0].patient_key
        items[0].setData(KIND_PATIENT, ROLE_KIND)
        items[0].setData(key, ROLE_KEY)
        return items

    def _study_items(self, study: StudyRow) -> list[QStandardItem]:
        when = " ".join(part for part in (format_dicom_date(study.study_date),
                                          _format_time(study.study_time)) if part)
        details = _joined(f"{study.number_of_series} series",
                          f"accession {study.accession_number}" if study.accession_number
                          else "")
        items = _row(study.description or "(no study description)", ", ".join(study.modalities),
                     when, details, str(study.number_of_images))
        items[0].setData(KIND_STUDY, ROLE_KIND)
        items[0].setData(study.study_uid, ROLE_KEY)
        return items

    def _series_items_of(self, series: SeriesRow) -> list[QStandardItem]:
        label = series.description or "(no series description)"
        if series.series_number is not None:
            label = f"{series.series_number}: {label}"
        details = series.body_part
        if not series.is_image:
            details = _joined(details, "no images")
        items = _row(label, series.modality, "", details, str(series.number_of_images))
        items[0].setData(KIND_SERIES, ROLE_KIND)
        items[0].setData(series.series_uid, ROLE_KEY)
        if series.is_image:
            cached = self._thumbnails.get(_thumbnail_key(series))
            items[0].setIcon(cached if cached is not None else self._blank_icon)
        else:
            disabled = self.palette().color(QPalette.ColorGroup.Disabled,
                                            QPalette.ColorRole.Text)
            for item in items:
                item.setForeground(disabled)
        self._series_items[series.series_uid] = items[0]
        self._series_rows[series.series_uid] = series
        return items

    def _update_modality_choices(self, studies: list[StudyRow]) -> None:
        current = str(self.modality_combo.currentData() or "")
        modalities = sorted({m for study in studies for m in study.modalities} | (
            {current} if current else set()))
        existing = [self.modality_combo.itemData(i) for i in range(1, self.modality_combo.count())]
        if existing == modalities:
            return
        self.modality_combo.blockSignals(True)
        try:
            while self.modality_combo.count() > 1:
                self.modality_combo.removeItem(1)
            for modality in modalities:
                self.modality_combo.addItem(modality, modality)
            self.modality_combo.setCurrentIndex(max(0, self.modality_combo.findData(current)))
        finally:
            self.modality_combo.blockSignals(False)

    def _save_expansion(self) -> None:
        for item, index in self._tree_items():
            if item.hasChildren():
                self._expanded[(item.data(ROLE_KIND), item.data(ROLE_KEY))] = (
                    self.tree.isExpanded(index))

    def _restore_expansion(self, series_total: int) -> None:
        expand_new = series_total <= _EXPAND_ALL_MAX_SERIES
        for item, index in self._tree_items():
            if not item.hasChildren():
                continue
            kind = item.data(ROLE_KIND)
            default = expand_new or kind == KIND_PATIENT
            self.tree.setExpanded(index, self._expanded.get((kind, item.data(ROLE_KEY)), default))

    def _tree_items(self):
        stack = [self.model.invisibleRootItem()]
        while stack:
            parent = stack.pop()
            for row in range(parent.rowCount()):
                child = parent.child(row, 0)
                yield child, child.index()
                stack.append(child)

    @Slot(str)
    def _on_search_text_changed(self, _text: str) -> None:
        self._search_timer.start()

    @Slot(int)
    def _on_modality_changed(self, _index: int) -> None:
        self.refresh()

    @Slot(QModelIndex)
    def _on_tree_activated(self, index: QModelIndex) -> None:
        item = self.model.itemFromIndex(index.siblingAtColumn(COL_NAME))
        if item is None or item.data(ROLE_KIND) != KIND_SERIES:
            return
        series_uid = str(item.data(ROLE_KEY))
        row = self._series_rows.get(series_uid)
        if row is not None and not row.is_image:
            self._show_message(f"Series “{row.description or series_uid}” holds no images.")
            return
        try:
            headers: list[InstanceHeader] = self._index.headers_for_series(series_uid)
        except RadviewError as error:
            self._show_message(str(error))
            return
        self.series_activated.emit(series_uid, headers)

    @Slot(QModelIndex)
    def _on_tree_expanded(self, index: QModelIndex) -> None:
        item = self.model.itemFromIndex(index)
        if item is not None:
            self._expanded[(item.data(ROLE_KIND), item.data(ROLE_KEY))] = True
        self._request_visible_thumbnails()

    @Slot(QModelIndex)
    def _on_tree_collapsed(self, index: QModelIndex) -> None:
        item = self.model.itemFromIndex(index)
        if item is not None:
            self._expanded[(item.data(ROLE_KIND), item.data(ROLE_KEY))] = False

    # ------------------------------------------------------------------ thumbnails
    def _request_visible_thumbnails(self) -> None:
        for series_uid, item in self._series_items.items():
            row = self._series_rows[series_uid]
            key = _thumbnail_key(row)
            if (not row.is_image or key in self._thumbnails or key in self._thumbnail_tasks
                    or key in self._thumbnail_queue):
                continue
            study_index = item.index().parent()
            if self.tree.isExpanded(study_index) and self.tree.isExpanded(study_index.parent()):
                self._thumbnail_queue.append(key)
        self._start_thumbnails()

    def _start_thumbnails(self) -> None:
        while self._thumbnail_queue and len(self._thumbnail_tasks) < _THUMBNAILS_IN_FLIGHT:
            key = self._thumbnail_queue.popleft()
            task = TaskRunner.for_function(
                make_series_thumbnail, str(self._index.path), key[0], parent=self,
                name="thumbnail", progress_arg=None, cancel_arg=None,
            )
            self._thumbnail_tasks[key] = task
            # weak: a closure holding the panel would keep it alive from its own child, and
            # releasing it while the child is being deleted deletes the child twice
            task.finished.connect(_weak_call(self._on_thumbnail_ready, key))
            task.failed.connect(_weak_call(self._on_thumbnail_ready, key, None, arity=0))
            task.cancelled.connect(_weak_call(self._on_thumbnail_ready, key, None))
            task.start()

    def _on_thumbnail_ready(self, key: tuple[str, int], image: QImage | None) -> None:
        task = self._thumbnail_tasks.pop(key, None)
        if task is not None:
            task.deleteLater()
        icon = QIcon(QPixmap.fromImage(image)) if image is not None and not image.isNull() else None
        self._thumbnails[key] = icon
        item = self._series_items.get(key[0])
        row = self._series_rows.get(key[0])
        if item is not None and row is not None and _thumbnail_key(row) == key:
            item.setIcon(icon if icon is not None else self._blank_icon)
        self._start_thumbnails()

    def thumbnail_for(self, series_uid: str) -> QIcon | None:
        """The series' thumbnail if it has been made (None: not yet, or it could not be)."""
        row = self._series_rows.get(series_uid)
        return self._thumbnails.get(_thumbnail_key(row)) if row is not None else None

    def thumbnails_pending(self) -> int:
        """Thumbnails queued or being decoded."""
        return len(self._thumbnail_queue) + len(self._thumbnail_tasks)

    # ------------------------------------------------------------------ importing
    def import_paths(self, paths: Sequence[str | os.PathLike[str]]) -> None:
        """Import folders/files into the index in the background (queued if one is running)."""
        paths = [os.fspath(path) for path in paths]
        if not paths:
            return
        self._pending_imports.append(paths)
        if self._import_task is None:
            self._start_next_import()

    def is_importing(self) -> bool:
        return self._import_task is not None

    def _start_next_import(self) -> None:
        if not self._pending_imports:
            return
        paths = self._pending_imports.popleft()
        names = ", ".join(Path(path).name or path for path in paths[:2])
        if len(paths) > 2:
            names += f" and {len(paths) - 2} more"
        self.progress_label.setText(f"Importing {names}")
        self.progress_bar.setRange(0, 0)  # busy until the listing of files is complete
        self.cancel_button.setEnabled(True)
        self._progress_row.show()
        self.details_button.hide()
        self._show_message("Looking for files…")
        task = TaskRunner.for_function(update_index, str(self._index.path), paths, parent=self,
                                       name="import")
        task.progress.connect(self._on_import_progress)
        task.finished.connect(self._on_import_finished)
        task.failed.connect(self._on_import_failed)
        task.cancelled.connect(self._on_import_cancelled)
        self._import_task = task
        task.start()

    @Slot()
    def cancel_import(self) -> None:
        """Stop the running import (the index stays unchanged) and drop queued ones."""
        self._pending_imports.clear()
        if self._import_task is not None:
            self._import_task.cancel()
            self.cancel_button.setEnabled(False)
            self._show_message("Cancelling…")

    @Slot()
    def _on_cancel_clicked(self) -> None:
        self.cancel_import()

    @Slot(int, int)
    def _on_import_progress(self, done: int, total: int) -> None:
        self.progress_bar.setRange(0, max(total, 1))
        self.progress_bar.setValue(done)
        if self.cancel_button.isEnabled():
            self._show_message(f"Reading headers: {done} of {total} files")

    @Slot(object)
    def _on_import_finished(self, update: IndexUpdate) -> None:
        self._import_ended()
        self.last_update = update
        text = (f"Import done: {update.added} added, {update.updated} updated, "
                f"{update.unchanged} unchanged")
        if update.removed:
            text += f", {update.removed} removed"
        if update.problems:
            count = len(update.problems)
            text += f"; {count} file{'s' if count != 1 else ''} not used"
        self._show_message(text + ".")
        self.details_button.setVisible(bool(update.problems))
        self.refresh()
        self.import_finished.emit(update)
        self._start_next_import()

    @Slot(str)
    def _on_import_failed(self, message: str) -> None:
        self._import_ended()
        self._show_message(f"Import failed: {message}")
        self._start_next_import()

    @Slot()
    def _on_import_cancelled(self) -> None:
        self._import_ended()
        self._show_message("Import cancelled; the index is unchanged.")
        self._start_next_import()

    def _import_ended(self) -> None:
        if self._import_task is not None:
            self._import_task.deleteLater()
        self._import_task = None
        self._progress_row.hide()

    def problem_lines(self) -> list[str]:
        """``file: reason`` for every file the last import did not use."""
        if self.last_update is None:
            return []
        return [f"{problem.path}: {problem.reason}" for problem in self.last_update.problems]

    @Slot()
    def show_problem_details(self) -> None:
        """Show the files the last import did not use, one ``file: reason`` per line."""
        if self._details_dialog is None:
            dialog = QDialog(self)
            dialog.setWindowTitle("Files not imported")
            text = QPlainTextEdit()
            text.setReadOnly(True)
            text.setLineWrapMode(QPlainTextEdit.LineWrapMode.NoWrap)
            buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
            buttons.rejected.connect(dialog.reject)
            layout = QVBoxLayout(dialog)
            layout.addWidget(text)
            layout.addWidget(buttons)
            dialog.resize(700, 360)
            dialog.details_text = text  # type: ignore[attr-defined]
            self._details_dialog = dialog
        self._details_dialog.details_text.setPlainText("\n".join(self.problem_lines()))
        self._details_dialog.show()
        self._details_dialog.raise_()

    @Slot()
    def _on_import_folder_triggered(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Import folder", self._last_folder())
        if folder:
            self._remember_folder(folder)
            self.import_paths([folder])

    @Slot()
    def _on_import_files_triggered(self) -> None:
        files, _filter = QFileDialog.getOpenFileNames(
            self, "Import files", self._last_folder(), "All files (*)"
        )
        if files:
            self._remember_folder(str(Path(files[0]).parent))
            self.import_paths(files)

    def _last_folder(self) -> str:
        if self._settings is None:
            return ""
        value = self._settings.value(_SETTINGS_LAST_FOLDER, "")
        return str(value) if value and os.path.isdir(str(value)) else ""

    def _remember_folder(self, folder: str) -> None:
        if self._settings is not None:
            self._settings.setValue(_SETTINGS_LAST_FOLDER, folder)

    # ------------------------------------------------------------------ drag and drop
    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        if _local_paths(event.mimeData()):
            event.acceptProposedAction()
        else:
            event.ignore()

    def dragMoveEvent(self, event: QDragMoveEvent) -> None:
        if _local_paths(event.mimeData()):
            event.acceptProposedAction()
        else:
            event.ignore()

    def dropEvent(self, event: QDropEvent) -> None:
        paths = _local_paths(event.mimeData())
        if not paths:
            event.ignore()
            return
        event.acceptProposedAction()
        self.import_paths(paths)

    # ------------------------------------------------------------------ lifetime
    def shutdown(self, timeout_ms: int = -1) -> bool:
        """Cancel the import and the thumbnails and wait for their threads (app exit).

        Returns
        -------
        bool
            False if some background work was still running after ``timeout_ms``.
        """
        self.cancel_import()
        self._thumbnail_queue.clear()
        tasks = list(self._thumbnail_tasks.values())
        if self._import_task is not None:
            tasks.append(self._import_task)
        for task in tasks:
            task.cancel()
        return all(task.wait(timeout_ms) for task in tasks)

    def _show_message(self, text: str) -> None:
        self.summary_label.setText(text)


# ---------------------------------------------------------------------------- helpers
def _row(name: str, modality: str, date: str, details: str, images: str) -> list[QStandardItem]:
    texts = {COL_NAME: name, COL_MODALITY: modality, COL_DATE: date, COL_DETAILS: details,
             COL_IMAGES: images}
    items = []
    for column in range(len(COLUMNS)):
        item = QStandardItem(texts[column])  # plain text: markup in headers is shown literally
        item.setEditable(False)
        items.append(item)
    items[COL_IMAGES].setTextAlignment(Qt.AlignmentFlag.AlignCenter)
    return items


def _weak_call(method: Callable[..., None], *first: object, arity: int | None = None):
    """A slot calling ``method(*first, *signal_args)`` without keeping its object alive.

    ``arity`` limits how many of the signal's arguments are passed on.
    """
    reference = weakref.WeakMethod(method)

    def call(*args: object) -> None:
        bound = reference()
        if bound is not None:
            bound(*first, *(args if arity is None else args[:arity]))

    return call


def _thumbnail_key(series: SeriesRow) -> tuple[str, int]:
    # the file count changes when an import adds or removes files of the series
    return (series.series_uid, series.number_of_files)


def _local_paths(mime) -> list[str]:
    if mime is None or not mime.hasUrls():
        return []
    return [url.toLocalFile() for url in mime.urls() if url.isLocalFile()]
