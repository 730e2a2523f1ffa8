"""The lesion table: every lesion of the shown label map, measured, with jump-to.

The label map may come from a file (a radiologist's segmentation, the sample's truth) or, later,
from the segmentation model. Measuring runs in a worker (``core.lesions.measure_liver``); the
table shows its data formatted only here. Selecting a row tells which lesion is selected
(``lesion_selected``: the main window draws its RECIST axes); a double-click (or Enter) moves
the crosshair to the lesion on the slice where its RECIST long axis was measured.
"""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHeaderView,
    QLabel,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from radview.core.labelmap import LabelMap, LiverLabel
from radview.core.lesions import Lesion, LiverFindings, measure_liver
from radview.core.viewer_state import ViewerState
from radview.core.volume import Volume
from radview.viewer.state_binding import bind_while_alive
from radview.viewer.workers import TaskRunner

__all__ = ["LesionPanel"]

_RIGHT = Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter
_COLUMNS = ("Lesion", "Lobe", "Long axis", "Short axis", "Max 3D", "Volume", "Mean")


class LesionPanel(QWidget):
    #: the findings of the current label map, once measured (None when cleared)
    findings_changed = Signal(object)
    #: the Lesion selected in the table, or None when the selection is cleared
    lesion_selected = Signal(object)

    def __init__(self, state: ViewerState, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._state = state
        self._runner: TaskRunner | None = None
        self.findings: LiverFindings | None = None
        self.summary = QLabel("No label map: open one to measure its lesions.")
        self.summary.setTextFormat(Qt.TextFormat.PlainText)
        self.summary.setWordWrap(True)
        self.table = QTableWidget(0, len(_COLUMNS))
        self.table.setHorizontalHeaderLabels(_COLUMNS)
        self.table.verticalHeader().setVisible(False)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.table.setToolTip("Double-click or Enter: go to the lesion (slice of its long axis)")
        self.table.itemActivated.connect(self._on_activated)
        self.table.itemSelectionChanged.connect(self._on_selection_changed)
        self.note = QLabel("Long/short axes: RECIST 1.1 in the acquisition plane. "
                           "Computer measurements: review before use.")
        self.note.setWordWrap(True)
        layout = QVBoxLayout(self)
        layout.addWidget(self.summary)
        layout.addWidget(self.table, stretch=1)
        layout.addWidget(self.note)
        events = state.events
        bind_while_alive(self, [(events.labels, self._on_labels_changed)])
        self._on_labels_changed()

    # ------------------------------------------------------------------ measuring
    def _on_labels_changed(self, *_: object) -> None:
        labels, image = self._state.labels, self._state.volume
        self._runner = None
        self._show(None)
        if labels is None or image is None:
            self.summary.setText("No label map: open one to measure its lesions.")
            return
        if int(LiverLabel.LIVER) not in labels.names:
            self.summary.setText("This label map has no liver label (1): nothing to measure.")
            return
        self.summary.setText("Measuring lesions…")
        runner = TaskRunner(_measurer(labels, image), parent=self, name="lesions")
        runner.finished.connect(self._on_measured)
        runner.failed.connect(self._on_failed)
        self._runner = runner
        runner.start()

    def _on_measured(self, findings: LiverFindings) -> None:
        if self.sender() is not self._runner:
            return  # a label map that was replaced meanwhile
        self._runner = None
        self._show(findings)

    def _on_failed(self, message: str) -> None:
        if self.sender() is not self._runner:
            return
        self._runner = None
        self.summary.setText(message)  # e.g. "no liver found"

    def _show(self, findings: LiverFindings | None) -> None:
        self.findings = findings
        self.table.clearSelection()
        self.table.setRowCount(0)
        self.findings_changed.emit(findings)
        self.lesion_selected.emit(None)  # the old selection belonged to the old findings
        if findings is None:
            return
        unit = self._state.volume.rescale.unit if self._state.volume is not None else ""
        self.summary.setText(
            f"Liver {findings.liver_volume.value:.0f} mL · tumour "
            f"{findings.total_tumour_volume.value:.1f} mL · burden "
            f"{findings.tumour_burden.value:.1f} % · {len(findings.lesions)} lesion(s)")
        self.table.setRowCount(len(findings.lesions))
        for row, lesion in enumerate(findings.lesions):
            values = (
                str(lesion.id),
                lesion.lobe.value if lesion.lobe is not None else "outside liver",
                f"{lesion.long_axis.value:.1f} mm",
                f"{lesion.short_axis.value:.1f} mm",
                f"{lesion.max_diameter.value:.1f} mm",
                f"{lesion.volume.value:.2f} mL",
                f"{lesion.mean.value:.0f} {unit}".rstrip(),
            )
            for column, text in enumerate(values):
                item = QTableWidgetItem(text)
                if column >= 2:  # numbers line up on the right
                    item.setTextAlignment(_RIGHT)
                self.table.setItem(row, column, item)

    # ------------------------------------------------------------------ selecting, jumping
    def selected_lesion(self) -> Lesion | None:
        rows = self.table.selectionModel().selectedRows()
        if self.findings is None or not rows:
            return None
        row = rows[0].row()
        return self.findings.lesions[row] if row < len(self.findings.lesions) else None

    def _on_selection_changed(self) -> None:
        self.lesion_selected.emit(self.selected_lesion())

    def _on_activated(self, item: QTableWidgetItem) -> None:
        if self.findings is not None:
            self.jump_to(self.findings.lesions[item.row()])

    def jump_to(self, lesion: Lesion) -> None:
        """Crosshair on the middle of the long axis (which lies on the lesion's RECIST slice)."""
        start, end = lesion.long_axis_endpoints_lps
        self._state.cursor = tuple((a + b) / 2 for a, b in zip(start, end, strict=True))


def _measurer(labels: LabelMap, image: Volume):
    """The worker function; it captures data only (no widgets), as TaskRunner requires."""

    def measure(progress, cancel, emit) -> LiverFindings:
        return measure_liver(labels, image)

    return measure
