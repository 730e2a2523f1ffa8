"""The Analyze panel: segment liver and tumour in the shown series with an installed model.

Model discovery and segmentation run in :class:`~radview.viewer.workers.TaskRunner` workers
(DESIGN rule 4); the handlers only read the controls, start one pure function
(:func:`radview.inference.registry.discover_models`,
:func:`radview.inference.pipeline.segment`) and show its result or its one-line error. The
result goes into the evented state (``state.set_labels``), so the overlay and the lesion table
follow without knowing about this panel.

After the segmentation the same worker runs the installed staging and triage models
(:func:`radview.inference.analyze.run_staging_and_triage`); their results (and whether their
models are installed) are shown beside it by :class:`~radview.viewer.staging_panel.StagingPanel`
and the triage strip, which the main window feeds from :attr:`AnalyzePanel.models_listed` and
:attr:`AnalyzePanel.follow_up_finished` (through ``MainWindow.show_analysis_extras``).
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QProgressBar,
    QPushButton,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from radview.core.errors import RadviewError
from radview.core.labelmap import LabelMap
from radview.core.viewer_state import ViewerState
from radview.core.volume import Volume
from radview.inference.analyze import (
    FollowUpResults,
    rank_segmentation_models,
    report_inputs,
    run_staging_and_triage,
)
from radview.inference.manifest import ModelTask
from radview.inference.pipeline import SegmentationResult, segment
from radview.inference.registry import (
    ModalityMismatchError,
    RegisteredModel,
    RegistryResult,
    check_modality,
    discover_models,
)
from radview.inference.runtime import SessionCache, choose_providers
from radview.viewer.state_binding import bind_while_alive
from radview.viewer.workers import TaskRunner

__all__ = ["AnalyzePanel", "NO_MODEL_MESSAGE"]

NO_MODEL_MESSAGE = "No segmentation model installed — see `radview models`"
_DEVICES = (("Automatic", "auto"), ("CPU", "cpu"), ("GPU", "gpu"))


class AnalyzePanel(QWidget):
    """Choose a segmentation model and a device, run it on the shown volume, show the outcome.

    Parameters
    ----------
    state
        The viewer state: the volume to analyse, where the labels go.
    sessions
        The onnxruntime session cache (shared, so a second run reuses the loaded model).
    models_dir
        The user models folder to search; default the registry's default.
    """

    #: the SegmentationResult of a successful run
    analysis_finished = Signal(object)
    #: staging and triage of the same run (:class:`FollowUpResults`), after analysis_finished
    follow_up_finished = Signal(object)
    #: the RegistryResult once the models were discovered (None when discovery failed)
    models_listed = Signal(object)

    def __init__(self, state: ViewerState, sessions: SessionCache, *,
                 models_dir: Path | None = None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._state = state
        self._sessions = sessions
        self._models_dir = models_dir
        self._models: list[RegisteredModel] = []
        self._registry: RegistryResult | None = None
        self._discovery: TaskRunner | None = None
        self._runner: TaskRunner | None = None
        self._run_model: RegisteredModel | None = None
        #: the last successful result (for tests and for a report later)
        self.result: SegmentationResult | None = None
        #: what the last run put on screen: (volume, labels, model, follow-up results)
        self._made: tuple[Volume, LabelMap, RegisteredModel, FollowUpResults] | None = None

        self.model_combo = QComboBox()
        self.device_combo = QComboBox()
        for text, device in _DEVICES:
            self.device_combo.addItem(text, device)
        self.device_combo.currentIndexChanged.connect(self._on_device_changed)
        self.device_note = _plain_label()
        self.device_note.hide()
        form = QFormLayout()
        form.addRow("Model", self.model_combo)
        form.addRow("Device", self.device_combo)

        self.invalid_toggle = QToolButton()
        self.invalid_toggle.setCheckable(True)
        self.invalid_toggle.setArrowType(Qt.ArrowType.RightArrow)
        self.invalid_toggle.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.invalid_toggle.toggled.connect(self._on_invalid_toggled)
        self.invalid_toggle.hide()
        self.invalid_note = _plain_label()
        self.invalid_note.setEnabled(False)  # greyed: for information only
        self.invalid_note.hide()

        self.force_check = QCheckBox("Run anyway (another modality)")
        self.force_check.hide()
        self.run_button = QPushButton("Run")
        self.run_button.clicked.connect(self._on_run)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.clicked.connect(self._on_cancel)
        self.cancel_button.hide()
        buttons = QHBoxLayout()
        buttons.addWidget(self.run_button)
        buttons.addWidget(self.cancel_button)
        buttons.addStretch(1)
        self.progress_bar = QProgressBar()
        self.progress_bar.hide()

        self.status = _plain_label("Looking for models…")
        self.warnings_label = _plain_label()
        self.warnings_label.hide()
        # what the model's lesion filter set aside: the radiologist can still look at each
        self.set_aside_list = QListWidget()
        self.set_aside_list.setToolTip("Candidate regions the lesion filter set aside (labelled "
                                       "liver). Double-click or Enter: go there")
        self.set_aside_list.setMaximumHeight(110)
        self.set_aside_list.itemActivated.connect(self._on_set_aside_activated)
        self.set_aside_list.hide()

        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.device_note)
        layout.addWidget(self.invalid_toggle)
        layout.addWidget(self.invalid_note)
        layout.addWidget(self.force_check)
        layout.addLayout(buttons)
        layout.addWidget(self.progress_bar)
        layout.addWidget(self.status)
        layout.addWidget(self.set_aside_list)
        layout.addWidget(self.warnings_label)
        layout.addStretch(1)

        bind_while_alive(self, [(state.events.volume, self._on_volume_changed)])
        self._update_run_enabled()
        self.refresh_models()

    # ------------------------------------------------------------------ models
    def refresh_models(self) -> None:
        """Discover the installed models in the background; ``models_listed`` tells when."""
        runner = TaskRunner(_discoverer(self._models_dir), parent=self, name="model discovery")
        runner.finished.connect(self._on_models_found)
        runner.failed.connect(self._on_models_failed)
        self._discovery = runner
        runner.start()

    def _on_models_found(self, registry: RegistryResult) -> None:
        if self.sender() is not self._discovery:
            return
        self._discovery = None
        self._registry = registry
        self._models = rank_segmentation_models(registry.for_task(ModelTask.SEGMENTATION))
        self.model_combo.clear()
        for model in self._models:
            self.model_combo.addItem(f"{model.id} {model.manifest.version}", model.id)
        self.status.setText("" if self._models else NO_MODEL_MESSAGE)
        invalid = [f"{bad.model_id or bad.path}: {bad.reason}" for bad in registry.invalid]
        self.invalid_note.setText("\n".join(invalid))
        self.invalid_toggle.setText(f"{len(invalid)} unusable model(s)")
        self.invalid_toggle.setVisible(bool(invalid))
        self.invalid_note.setVisible(bool(invalid) and self.invalid_toggle.isChecked())
        self._update_run_enabled()
        self.models_listed.emit(registry)

    def _on_models_failed(self, message: str) -> None:
        if self.sender() is not self._discovery:
            return
        self._discovery = None
        self._models = []
        self.model_combo.clear()
        self.status.setText(message)  # e.g. onnxruntime is not installed
        self._update_run_enabled()
        self.models_listed.emit(None)

    def _on_invalid_toggled(self, shown: bool) -> None:
        self.invalid_toggle.setArrowType(Qt.ArrowType.DownArrow if shown
                                         else Qt.ArrowType.RightArrow)
        self.invalid_note.setVisible(shown)

    def _on_device_changed(self, *_: object) -> None:
        device = self.device_combo.currentData()
        if device != "gpu":
            self.device_note.hide()
            return
        try:
            choice = choose_providers("gpu")
        except RadviewError as error:
            self.device_note.setText(str(error))
        else:
            if choice.uses_gpu:
                self.device_note.hide()
                return
            self.device_note.setText(choice.reason)
        self.device_note.show()

    # ------------------------------------------------------------------ running
    def _selected_model(self) -> RegisteredModel | None:
        index = self.model_combo.currentIndex()
        return self._models[index] if 0 <= index < len(self._models) else None

    def _on_volume_changed(self, *_: object) -> None:
        if self._runner is not None:  # the series it analyses is no longer shown
            self._runner.cancel()
        self._made = None  # nor would the last result be shown (and it would pin its volume)
        self.force_check.hide()
        self.force_check.setChecked(False)
        self._update_run_enabled()

    def _update_run_enabled(self) -> None:
        running = self._runner is not None
        self.run_button.setEnabled(not running and bool(self._models)
                                   and self._state.volume is not None)
        self.model_combo.setEnabled(not running)
        self.device_combo.setEnabled(not running)

    def _on_run(self) -> None:
        model, volume = self._selected_model(), self._state.volume
        if model is None or volume is None or self._runner is not None:
            return
        force = not self.force_check.isHidden() and self.force_check.isChecked()
        try:
            check_modality(model, volume.modality, force)
        except ModalityMismatchError as error:
            # the registry's message speaks of the command line's --force
            self.status.setText(str(error).replace("use --force", 'tick "Run anyway"'))
            self.force_check.show()
            return
        self.warnings_label.hide()
        self._show_set_aside(())
        self.status.setText(f"Segmenting with {model.id} {model.manifest.version}…")
        self.progress_bar.setRange(0, 0)  # busy until the first batch reports
        self.progress_bar.show()
        self.cancel_button.show()
        self.cancel_button.setEnabled(True)
        runner = TaskRunner(
            _segmenter(volume, model, self._registry, self._sessions,
                       self.device_combo.currentData(), force),
            parent=self, name="segmentation")
        runner.progress.connect(self._on_progress)
        runner.finished.connect(self._on_finished)
        runner.failed.connect(self._on_failed)
        runner.cancelled.connect(self._on_cancelled)
        self._runner, self._run_model = runner, model
        self._update_run_enabled()
        runner.start()

    def _on_cancel(self) -> None:
        if self._runner is not None:
            self._runner.cancel()
            self.cancel_button.setEnabled(False)
            self.status.setText("Cancelling…")

    def _on_progress(self, done: int, total: int) -> None:
        if self.sender() is self._runner:
            self.progress_bar.setRange(0, max(total, 1))
            self.progress_bar.setValue(done)

    def _on_finished(self, outcome: tuple[SegmentationResult, FollowUpResults]) -> None:
        if self.sender() is not self._runner:
            return
        result, follow_up = outcome
        model = self._run_model
        self._end_run()
        volume = self._state.volume
        labels = LabelMap.liver(result.labels)
        if volume is None or not labels.matches(volume):
            self.status.setText("The shown series changed during the analysis; result discarded.")
            return
        self.result = result
        self._made = (volume, labels, model, follow_up)
        self._state.set_labels(labels)
        self._state.overlay_visible = True
        line = f"{model.id} {model.manifest.version} · {result.provider} · {result.seconds:.1f} s"
        if not result.has_liver:
            line += "\nNo liver found in this series."
        if result.lesions_set_aside and model.manifest.lesion_filter is not None:
            line += (f"\nLesion filter: {result.lesions_set_aside} candidate region(s) below "
                     f"{100 * model.manifest.lesion_filter.threshold:.0f} % lesion probability "
                     "set aside (shown as liver; listed below).")
        self.status.setText(line)
        self._show_set_aside(result.set_aside or ())
        notes = list(result.warnings)
        if result.fallback_reason:
            notes.append(result.fallback_reason)
        notes.extend(w for w in follow_up.warnings if w not in notes)
        self.warnings_label.setText("\n".join(notes))
        self.warnings_label.setVisible(bool(notes))
        self.analysis_finished.emit(result)
        self.follow_up_finished.emit(follow_up)

    def _show_set_aside(self, candidates) -> None:
        self.set_aside_list.clear()
        for candidate in candidates:
            item = QListWidgetItem(
                f"slice {candidate.slice_index + 1} · {candidate.volume_ml:.2f} mL · "
                f"P(lesion) {100 * candidate.lesion_probability:.0f} %")
            item.setData(Qt.ItemDataRole.UserRole, candidate.position_lps)
            self.set_aside_list.addItem(item)
        self.set_aside_list.setVisible(bool(candidates))

    def _on_set_aside_activated(self, item: QListWidgetItem) -> None:
        """Crosshair on the candidate's centre (all three views follow the state)."""
        self._state.cursor = tuple(item.data(Qt.ItemDataRole.UserRole))

    def _on_failed(self, message: str) -> None:
        if self.sender() is not self._runner:
            return
        self._end_run()
        self.status.setText(message)

    def _on_cancelled(self) -> None:
        if self.sender() is not self._runner:
            return
        self._end_run()
        self.status.setText("Analysis cancelled.")

    def _end_run(self) -> None:
        self._runner = self._run_model = None
        self.progress_bar.hide()
        self.cancel_button.hide()
        self._update_run_enabled()

    def report_inputs_for(self, volume: Volume, labels: LabelMap) -> dict[str, object]:
        """``export_report``'s model arguments when ``labels`` on ``volume`` are exactly what the
        last run showed (provenance, staging, triage); empty otherwise, e.g. after an edit or
        for a label map opened from a file, so a report never credits a model with them."""
        if self._made is None:
            return {}
        made_volume, made_labels, model, follow_up = self._made
        if volume is not made_volume or labels is not made_labels or self.result is None:
            return {}
        return report_inputs(volume, model, self.result, follow_up)

    # ------------------------------------------------------------------ for tests
    def is_running(self) -> bool:
        return self._runner is not None


def _plain_label(text: str = "") -> QLabel:
    label = QLabel(text)
    label.setTextFormat(Qt.TextFormat.PlainText)  # model ids, reasons and paths are not markup
    label.setWordWrap(True)
    return label


def _discoverer(models_dir: Path | None):
    """The discovery worker function; it captures data only (no widgets)."""

    def discover(progress, cancel, emit) -> RegistryResult:
        return discover_models(user_dir=models_dir)

    return discover


def _segmenter(volume: Volume, model: RegisteredModel, registry: RegistryResult | None,
               sessions: SessionCache, device: str, force: bool):
    """The worker function: segmentation, then staging and triage; data only (no widgets)."""

    def run(progress, cancel, emit) -> tuple[SegmentationResult, FollowUpResults]:
        result = segment(volume, model, sessions, device=device, progress=progress,
                         cancel=cancel, force=force)
        if registry is None:
            return result, FollowUpResults()
        follow_up = run_staging_and_triage(volume, result.labels, registry, sessions,
                                           device=device, force=force,
                                           liver_found=result.has_liver, progress=progress,
                                           cancel=cancel)
        return result, follow_up

    return run
