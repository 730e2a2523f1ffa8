"""The Export dialog: the viewer's front end to :func:`radview.report.export_study.export_report`.

It reads the form (output folder, de-identification, institution, optional clinical values),
runs the one export function in a :class:`TaskRunner` and shows what it wrote, its warnings and
page 1 of the PDF. Clinical values are checked with :func:`validate_mapping` while the user
types, each problem shown next to its field; Export stays disabled until they are fixed.
When the labels are exactly what the Analyze panel's last run showed, the report names its
models and carries their staging and triage (``model_inputs``, from
:func:`radview.inference.analyze.report_inputs`); the dialog says which models, or that none.

``export_report`` has no cancel hook (it takes about a second), so there is no Cancel button
while it runs: the dialog says so and cannot be closed until it is done.
"""

from __future__ import annotations

import functools
import logging
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from PySide6.QtCore import QSettings, Qt, QUrl
from PySide6.QtGui import QDesktopServices, QPixmap
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QFileDialog,
    QFormLayout,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QSizePolicy,
    QVBoxLayout,
    QWidget,
)

from radview.core.errors import RadviewError
from radview.core.labelmap import LabelMap
from radview.core.volume import Volume
from radview.inference.clinical import (
    Ascites,
    ClinicalValues,
    EcogStatus,
    Encephalopathy,
    validate_mapping,
)
from radview.report.export_study import (
    OUTPUT_NAMES,
    ExportResult,
    deidentification_secret,
    export_report,
)
from radview.viewer.workers import TaskRunner

__all__ = ["ExportDialog", "ExportOutcome", "render_pdf_page_png", "DEFAULT_EXPORT_FOLDER"]

log = logging.getLogger(__name__)

#: Where exports go when the user has not chosen a folder before (never the scans' folder).
DEFAULT_EXPORT_FOLDER = Path.home() / "radview-exports"
SETTINGS_LAST_FOLDER = "export/last_folder"
SETTINGS_INSTITUTION = "export/institution"
PREVIEW_DPI = 50
PREVIEW_TIMEOUT_S = 20
NO_PDFTOPPM = "Preview needs poppler-utils (pdftoppm)"

#: (key for validate_mapping, label) of the numeric clinical inputs, in form order.
_NUMBER_FIELDS = (
    ("bilirubin_mg_dl", "Bilirubin (mg/dL)"),
    ("albumin_g_dl", "Albumin (g/dL)"),
    ("inr", "INR"),
    ("creatinine_mg_dl", "Creatinine (mg/dL)"),
    ("sodium_mmol_l", "Sodium (mmol/L)"),
)
_NOT_ENTERED = "not entered"
#: (key, label, [(shown text, value)]) of the choice inputs; the first entry means "not entered".
_CHOICE_FIELDS = (
    ("ascites", "Ascites", [("none", Ascites.NONE.value), ("mild", Ascites.MILD.value),
                            ("moderate / severe", Ascites.MODERATE_SEVERE.value)]),
    ("encephalopathy", "Encephalopathy",
     [("none", Encephalopathy.NONE.value), ("grade 1-2", Encephalopathy.GRADE_1_2.value),
      ("grade 3-4", Encephalopathy.GRADE_3_4.value)]),
    # Short texts from the enum names; the full description is the item's tool tip.
    ("ecog", "ECOG", [(f"{s.value} – {s.name.lower().replace('_', ' ')}", s.value)
                      for s in EcogStatus]),
    # Yes/no questions are choices, not check boxes: an unticked box would read as "no", and
    # "not answered" must stay distinguishable (MELD's dialysis rule moves the score a lot).
    ("on_dialysis", "On dialysis (MELD rule)", [("no", False), ("yes", True)]),
    ("vascular_invasion", "Vascular invasion", [("no", False), ("yes", True)]),
    ("extrahepatic_spread", "Extrahepatic spread", [("no", False), ("yes", True)]),
)


@dataclass(frozen=True)
class _ExportRequest:
    image: Volume
    labels: LabelMap
    out_dir: Path
    clinical_values: ClinicalValues | None
    deidentify: bool
    data_dir: Path
    institution: str | None
    #: export_report's model arguments (provenance, staging, triage); empty: labels not a model's
    model_inputs: dict[str, object]


@dataclass
class ExportOutcome:
    """What the worker hands back: the export's result and the page-1 preview (PNG bytes)."""

    result: ExportResult
    preview_png: bytes | None
    preview_note: str


def render_pdf_page_png(pdf: Path, *, dpi: int = PREVIEW_DPI,
                        timeout_s: float = PREVIEW_TIMEOUT_S) -> tuple[bytes | None, str]:
    """Page 1 of ``pdf`` as PNG bytes via poppler's ``pdftoppm``, or ``(None, why not)``."""
    tool = shutil.which("pdftoppm")
    if tool is None:
        return None, NO_PDFTOPPM
    with tempfile.TemporaryDirectory(prefix="radview-preview-") as folder:
        stem = Path(folder) / "page"
        try:
            subprocess.run([tool, "-r", str(dpi), "-f", "1", "-l", "1", "-png", str(pdf),
                            str(stem)], check=True, capture_output=True, timeout=timeout_s)
        except subprocess.TimeoutExpired:
            return None, f"Preview not shown: pdftoppm took longer than {timeout_s:g} s"
        except subprocess.CalledProcessError as error:
            reason = error.stderr.decode(errors="replace").strip().splitlines()
            return None, "Preview not shown: pdftoppm failed" + (f" ({reason[0]})" if reason
                                                                 else "")
        except OSError as error:
            return None, f"Preview not shown: cannot run pdftoppm ({error.strerror})"
        # pdftoppm numbers the page file (page-1.png, page-01.png... by page count).
        pages = sorted(Path(folder).glob("page*.png"))
        if not pages:
            return None, "Preview not shown: pdftoppm wrote no image"
        return pages[0].read_bytes(), ""


def _run_export(request: _ExportRequest, progress, cancel, emit) -> ExportOutcome:
    """The worker's job: export, then render the preview (no Qt here)."""
    secret = deidentification_secret(request.data_dir) if request.deidentify else None
    result = export_report(request.image, request.labels, request.out_dir,
                           clinical_values=request.clinical_values, deidentify_with=secret,
                           institution=request.institution, **request.model_inputs)
    pdf = result.files.get("pdf")
    png, note = render_pdf_page_png(pdf) if pdf is not None else (None, "No PDF was written")
    return ExportOutcome(result, png, note)


def _models_text(model_inputs: dict[str, object]) -> str:
    """Which models the report will name, or why it names none."""
    entries = model_inputs.get("provenance") or []
    if not entries:
        return ("AI: none in the report (these labels were not made by an analysis run in this "
                "window, or were changed since)")
    names = ", ".join(f"{entry['id']} {entry['version']} ({entry['task']})" for entry in entries)
    return f"AI in the report: {names}"


def _plain_label(text: str = "") -> QLabel:
    label = QLabel(text)
    label.setTextFormat(Qt.TextFormat.PlainText)  # may carry header-derived text
    return label


class ExportDialog(QDialog):
    """Export the shown image's analysis (PDF, DICOM SEG/SR, tables) into a chosen folder."""

    def __init__(self, image: Volume, labels: LabelMap, settings: QSettings, data_dir: Path,
                 parent: QWidget | None = None, *,
                 model_inputs: dict[str, object] | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Export report")
        self._image = image
        self._labels = labels
        self._model_inputs = dict(model_inputs or {})
        self._settings = settings
        self._data_dir = Path(data_dir)
        self._runner: TaskRunner | None = None
        self._clinical_problems: dict[str, str] = {}
        self.last_outcome: ExportOutcome | None = None

        description = image.source.description or image.source.display_name
        self.series_label = _plain_label(f"Series: {description}")
        self.series_label.setWordWrap(True)
        self.models_label = _plain_label(_models_text(self._model_inputs))
        self.models_label.setWordWrap(True)

        # ---- where and how
        self.folder_edit = QLineEdit(str(self._default_folder()))
        self.browse_button = QPushButton("Browse…")
        self.browse_button.clicked.connect(self._on_browse)
        folder_row = QHBoxLayout()
        folder_row.addWidget(self.folder_edit, stretch=1)
        folder_row.addWidget(self.browse_button)
        self.deidentify_box = QCheckBox("De-identify all outputs")
        self.deidentify_box.setToolTip(
            "PS3.15 basic profile with this installation's key: consistent pseudonyms and UIDs; "
            "the PDF shows no patient identifiers")
        self.institution_edit = QLineEdit(str(settings.value(SETTINGS_INSTITUTION, "") or ""))
        self.institution_edit.setPlaceholderText("printed in the report header (optional)")
        form = QFormLayout()
        form.addRow("Output folder", folder_row)
        form.addRow("", self.deidentify_box)
        form.addRow("Institution", self.institution_edit)

        # ---- optional clinical values: label | input | its problem
        self.clinical_inputs: dict[str, QLineEdit | QComboBox] = {}
        self.field_errors: dict[str, QLabel] = {}
        clinical = QGroupBox("Clinical values (optional; empty = not entered)")
        grid = QGridLayout(clinical)
        grid.setColumnStretch(2, 1)
        grid.setColumnMinimumWidth(2, 280)  # room for the problem next to each field
        row = 0
        for key, text in _NUMBER_FIELDS:
            edit = QLineEdit()
            edit.setPlaceholderText(_NOT_ENTERED)
            edit.setFixedWidth(120)
            edit.textChanged.connect(self._on_clinical_changed)
            self._add_clinical_row(grid, row, key, text, edit)
            row += 1
        for key, text, choices in _CHOICE_FIELDS:
            combo = QComboBox()
            combo.addItem(_NOT_ENTERED, None)
            for shown, value in choices:
                combo.addItem(shown, value)
                if key == "ecog":
                    combo.setItemData(combo.count() - 1, EcogStatus(value).description,
                                      Qt.ItemDataRole.ToolTipRole)
            combo.setSizePolicy(QSizePolicy.Policy.Fixed, QSizePolicy.Policy.Fixed)
            combo.currentIndexChanged.connect(self._on_clinical_changed)
            self._add_clinical_row(grid, row, key, text, combo)
            row += 1

        combos = [w for w in self.clinical_inputs.values() if isinstance(w, QComboBox)]
        widest = max(combo.sizeHint().width() for combo in combos)
        for combo in combos:
            combo.setFixedWidth(widest)
        self._clinical_group = clinical

        # ---- running and results
        self.status_label = _plain_label("")
        self.status_label.setWordWrap(True)
        self.progress_bar = QProgressBar()
        self.progress_bar.setRange(0, 0)  # busy: export_report reports no progress
        self.progress_bar.hide()
        self.files_list = QListWidget()
        self.files_list.setMinimumHeight(120)
        self.warnings_list = QListWidget()
        self.warnings_list.setMaximumHeight(90)
        self.warnings_title = _plain_label("Warnings")
        self.warnings_title.hide()
        self.warnings_list.hide()
        self.preview_label = _plain_label("The first page of the report shows here after export.")
        self.preview_label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.preview_label.setWordWrap(True)
        self.preview_label.setFixedSize(300, 400)
        self.preview_label.setObjectName("exportPreview")
        self.preview_label.setStyleSheet("#exportPreview { border: 1px solid palette(mid); }")

        self.export_button = QPushButton("Export")
        self.export_button.setDefault(True)
        self.export_button.clicked.connect(self._on_export)
        self.open_folder_button = QPushButton("Open folder")
        self.open_folder_button.setEnabled(False)
        self.open_folder_button.clicked.connect(self._on_open_folder)
        self.close_button = QPushButton("Close")
        self.close_button.clicked.connect(self.reject)
        buttons = QHBoxLayout()
        buttons.addWidget(self.progress_bar, stretch=1)
        buttons.addStretch(0)
        buttons.addWidget(self.open_folder_button)
        buttons.addWidget(self.export_button)
        buttons.addWidget(self.close_button)

        left = QVBoxLayout()
        left.addWidget(self.series_label)
        left.addWidget(self.models_label)
        left.addLayout(form)
        left.addWidget(clinical)
        self.files_title = _plain_label("Written files")
        left.addWidget(self.files_title)
        left.addWidget(self.files_list, stretch=1)
        left.addWidget(self.warnings_title)
        left.addWidget(self.warnings_list)
        right = QVBoxLayout()
        right.addWidget(_plain_label("Report, page 1"))
        right.addWidget(self.preview_label)
        right.addStretch(1)
        columns = QHBoxLayout()
        columns.addLayout(left, stretch=1)
        columns.addLayout(right)
        outer = QVBoxLayout(self)
        outer.addLayout(columns, stretch=1)
        outer.addWidget(self.status_label)
        outer.addLayout(buttons)

        self.folder_edit.textChanged.connect(self._update_export_button)
        self._on_clinical_changed()
        self.resize(900, 720)

    def _add_clinical_row(self, grid: QGridLayout, row: int, key: str, text: str,
                          widget: QLineEdit | QComboBox) -> None:
        error = _plain_label("")
        error.setObjectName("fieldError")
        error.setStyleSheet("#fieldError { color: #d04040; }")
        error.setWordWrap(True)
        grid.addWidget(QLabel(text), row, 0)
        grid.addWidget(widget, row, 1)
        grid.addWidget(error, row, 2)
        self.clinical_inputs[key] = widget
        self.field_errors[key] = error

    # ------------------------------------------------------------------ form
    def _source_folders(self) -> set[Path]:
        folders = set()
        for path in self._image.source.paths:
            with_parent = Path(path)
            folders.add(_resolved(with_parent if with_parent.is_dir() else with_parent.parent))
        return folders

    def _is_source_folder(self, folder: Path) -> bool:
        target = _resolved(folder)
        return any(target == source or target.is_relative_to(source)
                   for source in self._source_folders())

    def _default_folder(self) -> Path:
        remembered = str(self._settings.value(SETTINGS_LAST_FOLDER, "") or "")
        if remembered and not self._is_source_folder(Path(remembered)):
            return Path(remembered)
        return DEFAULT_EXPORT_FOLDER

    def clinical_mapping(self) -> dict[str, object]:
        """The entered clinical values keyed for :func:`validate_mapping` (empty ones left out)."""
        mapping: dict[str, object] = {}
        for key, widget in self.clinical_inputs.items():
            if isinstance(widget, QLineEdit):
                text = widget.text().strip()
                if text:
                    mapping[key] = text
            elif widget.currentData() is not None:
                mapping[key] = widget.currentData()
        return mapping

    def _on_clinical_changed(self, *_: object) -> None:
        problems: dict[str, str] = {}
        for problem in validate_mapping(self.clinical_mapping()):
            problems.setdefault(problem.field, problem.message)
        self._clinical_problems = problems
        for key, label in self.field_errors.items():
            label.setText(problems.get(key, ""))
        self._update_export_button()

    def _update_export_button(self, *_: object) -> None:
        running = self._runner is not None
        ready = bool(self.folder_edit.text().strip()) and not self._clinical_problems
        self.export_button.setEnabled(ready and not running)
        self.export_button.setToolTip("" if ready else
                                      "Fix the marked clinical values (or clear them) first"
                                      if self._clinical_problems else "Choose an output folder")

    def _on_browse(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Export into folder",
                                                  self.folder_edit.text().strip())
        if folder:
            self.folder_edit.setText(folder)

    def _confirm_target(self, out_dir: Path) -> bool:
        """Ask before writing next to the scans or over an earlier export."""
        reasons = []
        if self._is_source_folder(out_dir):
            reasons.append("This is the folder of the scan's own files. The exported DICOM "
                           "objects would be picked up by the next import of that folder.")
        existing = [name for name in OUTPUT_NAMES.values() if (out_dir / name).exists()]
        if existing:
            reasons.append(f"The folder already holds an export ({', '.join(existing)}); files "
                           "with the same names will be replaced and the others left as they "
                           "are.")
        if not reasons:
            return True
        answer = QMessageBox.question(
            self, "Export here?", "\n\n".join([*reasons, "Export into this folder anyway?"]),
            QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
            QMessageBox.StandardButton.No)
        return answer == QMessageBox.StandardButton.Yes

    # ------------------------------------------------------------------ export
    def _on_export(self) -> None:
        if self._runner is not None:
            return
        text = self.folder_edit.text().strip()
        if not text:
            self._show_status("Choose an output folder.", error=True)
            return
        out_dir = Path(text).expanduser()
        mapping = self.clinical_mapping()
        try:
            clinical = ClinicalValues.from_mapping(mapping) if mapping else None
        except RadviewError as error:
            self._show_status(str(error), error=True)
            return
        if not self._confirm_target(out_dir):
            self._show_status("Export not started.")
            return
        institution = self.institution_edit.text().strip()
        request = _ExportRequest(self._image, self._labels, out_dir, clinical,
                                 self.deidentify_box.isChecked(), self._data_dir,
                                 institution or None, self._model_inputs)
        self._settings.setValue(SETTINGS_INSTITUTION, institution)
        runner = TaskRunner(functools.partial(_run_export, request), parent=self, name="export")
        runner.finished.connect(self._on_export_finished)
        runner.failed.connect(self._on_export_failed)
        runner.cancelled.connect(self._on_export_cancelled)
        self._runner = runner
        self._clear_results()
        self._set_running(True)
        self._show_status(f"Exporting into {out_dir}… (a few seconds; it cannot be cancelled "
                          "once started)")
        runner.start()

    def _take_runner(self) -> bool:
        """True if the signal comes from the current export (and forget that runner)."""
        sender = self.sender()
        if sender is None or sender is not self._runner:
            return False
        sender.deleteLater()
        self._runner = None
        self._set_running(False)
        return True

    def _on_export_finished(self, outcome: ExportOutcome) -> None:
        if not self._take_runner():
            return
        self.last_outcome = outcome
        result = outcome.result
        for path in result.files.values():
            self.files_list.addItem(path.name)
            self.files_list.item(self.files_list.count() - 1).setToolTip(str(path))
        self.warnings_list.addItems(result.warnings)
        self.warnings_title.setVisible(bool(result.warnings))
        self.warnings_list.setVisible(bool(result.warnings))
        folder = next(iter(result.files.values())).parent if result.files else None
        if folder is not None:
            self.files_title.setText(f"Written files (in {folder})")
            self._settings.setValue(SETTINGS_LAST_FOLDER, str(folder))
        self.open_folder_button.setEnabled(folder is not None)
        self._show_preview(outcome)
        lesions = f"{result.lesion_count} lesion{'s' if result.lesion_count != 1 else ''}"
        deid = ", de-identified" if result.deidentified else ""
        self._show_status(f"Exported {len(result.files)} files ({lesions}{deid}).")

    def _on_export_failed(self, message: str) -> None:
        if not self._take_runner():
            return
        self._show_status(f"Export failed: {message}", error=True)

    def _on_export_cancelled(self) -> None:
        if not self._take_runner():
            return
        self._show_status("Export cancelled.", error=True)

    def _show_preview(self, outcome: ExportOutcome) -> None:
        pixmap = QPixmap()
        if outcome.preview_png is not None and pixmap.loadFromData(outcome.preview_png, "PNG"):
            self.preview_label.setPixmap(pixmap.scaled(
                self.preview_label.size(), Qt.AspectRatioMode.KeepAspectRatio,
                Qt.TransformationMode.SmoothTransformation))
        else:
            self.preview_label.setPixmap(QPixmap())
            self.preview_label.setText(outcome.preview_note or "Preview not available")

    def _clear_results(self) -> None:
        """Nothing of an earlier export stays on show while (or after) a new one runs."""
        self.last_outcome = None
        self.files_list.clear()
        self.files_title.setText("Written files")
        self.warnings_list.clear()
        self.warnings_title.hide()
        self.warnings_list.hide()
        self.open_folder_button.setEnabled(False)
        self.preview_label.setPixmap(QPixmap())
        self.preview_label.setText("")

    def _on_open_folder(self) -> None:
        if self.last_outcome is None or not self.last_outcome.result.files:
            return
        folder = next(iter(self.last_outcome.result.files.values())).parent
        if not QDesktopServices.openUrl(QUrl.fromLocalFile(str(folder))):
            self._show_status(f"{folder}: no program to open the folder with", error=True)

    def _set_running(self, running: bool) -> None:
        self.progress_bar.setVisible(running)
        for widget in (self.browse_button, self.folder_edit, self.close_button,
                       self.deidentify_box, self.institution_edit, self._clinical_group):
            widget.setEnabled(not running)
        self._update_export_button()

    def _show_status(self, text: str, error: bool = False) -> None:
        self.status_label.setStyleSheet("color: #d04040;" if error else "")
        self.status_label.setText(" ".join(text.split()))

    # ------------------------------------------------------------------ closing
    def is_exporting(self) -> bool:
        return self._runner is not None

    def reject(self) -> None:
        # The export cannot be interrupted: keep the dialog (and its runner) until it is done.
        if self.is_exporting():
            self._show_status("Still exporting: the dialog can be closed once the files are "
                              "written.")
            return
        super().reject()

    def closeEvent(self, event) -> None:
        if self.is_exporting():
            event.ignore()
            self.reject()
            return
        super().closeEvent(event)


def _resolved(path: Path) -> Path:
    try:
        return path.expanduser().resolve()
    except OSError:  # an unreachable network path: compare it as typed
        return path.expanduser().absolute()
