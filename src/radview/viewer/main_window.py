"""The main window: study browser, viewports, side panels, menus, status bar.

It only wires things together. Every handler reads a control, calls one logic function from
``radview.io`` / ``radview.core`` (in a worker when it may take long) and shows the result or
its one-line error; the state it shows lives in :class:`ViewerState` and
:class:`AnnotationStore`, not here.
"""

from __future__ import annotations

import contextlib
import html
import logging
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from PySide6.QtCore import QSettings, Qt, QTimer, Signal
from PySide6.QtGui import QAction, QActionGroup, QKeySequence
from PySide6.QtWidgets import (
    QDockWidget,
    QFileDialog,
    QLabel,
    QMainWindow,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from radview import __version__
from radview.core.annotation_store import AnnotationStore
from radview.core.annotations import Annotation
from radview.core.errors import RadviewError
from radview.core.measurements import measure, summary_label
from radview.core.viewer_state import Layout, StudyInfo, Tool, ViewerState
from radview.core.volume import ViewPlane, Volume
from radview.core.windowing import WindowPreset, window_for
from radview.inference.manifest import ModelTask
from radview.inference.registry import RegistryResult
from radview.inference.runtime import SessionCache
from radview.io.decoder_pool import DecoderPool
from radview.io.open_study import OpenedImage, load_label_map, open_images, open_series_headers
from radview.io.study_index import StudyIndex
from radview.viewer.analyze_panel import AnalyzePanel
from radview.viewer.clinical_form import ClinicalForm
from radview.viewer.export_dialog import ExportDialog
from radview.viewer.lesion_panel import LesionPanel
from radview.viewer.measurement_panel import MeasurementPanel
from radview.viewer.overlay_panel import OverlayPanel
from radview.viewer.recist_overlay import RecistOverlay
from radview.viewer.screenshot import save_png_atomically
from radview.viewer.shortcut_sheet import ShortcutSheet
from radview.viewer.staging_panel import StagingPanel
from radview.viewer.study_browser import StudyBrowserPanel
from radview.viewer.tags_panel import TagsPanel
from radview.viewer.triage_strip import TriageStrip
from radview.viewer.viewport import ViewportPanel
from radview.viewer.workers import TaskRunner

__all__ = ["MainWindow"]

log = logging.getLogger(__name__)

#: Views refresh at most this often while a series streams in (keeps the UI responsive).
_PARTIAL_REFRESH_MS = 100
_CINE_FPS = 10


class MainWindow(QMainWindow):
    #: emitted when a series (and its label map, if one was asked for) is on screen
    series_shown = Signal()
    #: emitted with a one-line message when opening failed
    open_failed = Signal(str)

    def __init__(self, state: ViewerState, store: AnnotationStore, index: StudyIndex,
                 settings: QSettings, decoder_pool: DecoderPool,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.state = state
        self.store = store
        self.index = index
        self.settings = settings
        self._loader: TaskRunner | None = None
        self._pending_labels: Path | None = None
        self._opened_paths: list[Path] = []
        self._loading_annotations = False
        self._label_runner: TaskRunner | None = None
        #: the open Export dialog (deleted when closed), for tests and to avoid opening two
        self.export_dialog: ExportDialog | None = None
        self._provisional_window = state.window
        self.decoder_pool = decoder_pool
        self._series_key = ""
        self._load_started = 0.0
        self.setWindowTitle("radview")
        self.setAcceptDrops(True)

        self.viewport = ViewportPanel(state)
        self.banner = QLabel()
        self.banner.setObjectName("warningBanner")
        self.banner.setWordWrap(True)
        self.banner.setTextFormat(Qt.TextFormat.PlainText)
        self.banner.hide()
        central = QWidget()
        column = QVBoxLayout(central)
        column.setContentsMargins(0, 0, 0, 0)
        column.setSpacing(0)
        column.addWidget(self.banner)
        column.addWidget(self.viewport, stretch=1)
        self.setCentralWidget(central)

        self.browser = StudyBrowserPanel(index, settings=settings)
        self.overlay_panel = OverlayPanel(state)
        self.measurement_panel = MeasurementPanel(store, lambda: self.state.volume)
        self.tags_panel = TagsPanel()
        self.side_tabs = QTabWidget()
        self.lesion_panel = LesionPanel(state)
        self.side_tabs.addTab(self.overlay_panel, "Overlay")
        self.side_tabs.addTab(self.lesion_panel, "Lesions")
        self.analyze_panel = AnalyzePanel(state, SessionCache())
        self.analyze_panel.analysis_finished.connect(self._on_analysis_finished)
        self.analyze_panel.models_listed.connect(self._on_models_listed)
        self.analyze_panel.follow_up_finished.connect(self._on_follow_up_finished)
        self.staging_panel = StagingPanel()
        self.staging_note = _plain_label()
        self.triage_note = _plain_label()
        self.staging_note.hide()
        self.triage_note.hide()
        self._extras_voxels = None  # the volume array the shown staging / triage belong to
        # What the staging panel / triage note say while no result is shown.
        self._staging_idle_reason = "no staging result yet"
        self._triage_idle_note = ""
        analyze_tab = QWidget()
        analyze_column = QVBoxLayout(analyze_tab)
        analyze_column.setContentsMargins(0, 0, 0, 0)
        analyze_column.addWidget(self.analyze_panel)
        extras = QVBoxLayout()
        extras.setContentsMargins(9, 0, 9, 9)
        extras.addWidget(self.staging_panel)
        extras.addWidget(self.staging_note)
        extras.addWidget(self.triage_note)
        analyze_column.addLayout(extras)
        analyze_column.addStretch(1)
        self.side_tabs.addTab(_scrolling(analyze_tab), "Analyze")
        self.clinical_form = ClinicalForm()
        self._clinical_patient = state.study.patient_id
        self.lesion_panel.findings_changed.connect(self.clinical_form.set_findings)
        self.side_tabs.addTab(_scrolling(self.clinical_form), "Clinical")
        self.side_tabs.addTab(self.measurement_panel, "Measurements")
        self.side_tabs.addTab(self.tags_panel, "DICOM tags")
        self._add_dock("Studies", self.browser, Qt.DockWidgetArea.LeftDockWidgetArea)
        self._add_dock("Panels", self.side_tabs, Qt.DockWidgetArea.RightDockWidgetArea)

        # Per-slice triage beside the axial slice bar; RECIST axes of the selected lesion in
        # whichever view shows the acquisition plane.
        axial = self.viewport.views[ViewPlane.AXIAL]
        self.triage_strip = TriageStrip(state, axial.slider)
        axial.add_beside_slider(self.triage_strip)
        self.recist_overlays = {plane: RecistOverlay(state, view)
                                for plane, view in self.viewport.views.items()}
        self.lesion_panel.lesion_selected.connect(self._on_lesion_selected)

        self._build_status_bar()
        self._build_menus()
        self._partial_timer = QTimer(self, interval=_PARTIAL_REFRESH_MS)
        self._partial_timer.timeout.connect(self._on_partial_refresh)
        # The tags panel follows the slice under the crosshair, debounced: scrolling fast must
        # not parse a header per slice.
        self._tags_timer = QTimer(self, interval=150, singleShot=True)
        self._tags_timer.timeout.connect(self._on_show_current_tags)
        self._shown_tags: tuple[str, int] | None = None
        self._cine_timer = QTimer(self, interval=1000 // _CINE_FPS)
        self._cine_timer.timeout.connect(self._on_cine_tick)

        self.browser.series_activated.connect(self._on_series_activated)
        self.viewport.annotation_created.connect(self._on_annotation_created)
        # Edits from the views go through the store, so each is one undoable step.
        self.viewport.annotation_edited.connect(store.replace)
        self.viewport.annotation_delete_requested.connect(store.remove)
        self.viewport.annotation_selected.connect(  # "" = a click beside the selection
            lambda annotation_id: setattr(store, "selected_id", annotation_id or None))
        self.viewport.cursor_moved.connect(self._on_cursor_moved)
        self.measurement_panel.jump_requested.connect(self._on_jump_requested)
        store.changed.connect(self._on_annotations_changed)
        store.selected_id_changed.connect(self._on_selected_annotation)
        state.events.layout.connect(self._on_layout_changed)
        state.events.volume.connect(self._on_volume_changed)
        state.events.volume.connect(self._update_export_action)
        state.events.labels.connect(self._update_export_action)
        state.events.cursor.connect(self._on_cursor_changed)
        state.events.study.connect(self._on_study_changed)
        self._restore_settings()

    # ------------------------------------------------------------------ construction
    def _add_dock(self, title: str, widget: QWidget, area: Qt.DockWidgetArea) -> QDockWidget:
        dock = QDockWidget(title, self)
        dock.setObjectName(f"dock_{title}")
        dock.setWidget(widget)
        self.addDockWidget(area, dock)
        return dock

    def _on_analysis_finished(self, result) -> None:
        self.timing_label.setText(f"{result.provider} · {result.seconds:.1f} s")

    def _on_follow_up_finished(self, follow_up) -> None:
        staging = follow_up.staging.to_json() if follow_up.staging is not None else None
        triage = follow_up.triage.probabilities.tolist() if follow_up.triage is not None else None
        self.show_analysis_extras(staging, triage, follow_up.notes.get("staging"),
                                  follow_up.notes.get("triage"))

    # ------------------------------------------------------------------ analysis extras
    def show_analysis_extras(self, staging: Mapping | None, triage: Sequence[float] | None,
                             staging_note: str | None = None,
                             triage_note: str | None = None) -> None:
        """Show what an analysis found beyond the segmentation, for the shown series.

        Parameters
        ----------
        staging
            ``{"stage": str, "probabilities": {class name: p}, "model": "id version"}`` from
            the staging model, or None (then ``staging_note`` says why, e.g. "no staging
            model installed").
        triage
            P(tumour) per slice, index k = array slice (axis 0) of the shown volume, or None
            (then ``triage_note`` says why).
        staging_note, triage_note
            One line each shown under the result (a CPU fallback, a reason for no result).
        """
        volume = self.state.volume
        self._extras_voxels = volume.voxels if volume is not None else None
        if staging is None:
            self.staging_panel.show_unavailable(staging_note or "no staging result")
            _set_note(self.staging_note, "")
        else:
            try:
                stage, probabilities = str(staging["stage"]), staging["probabilities"]
                model = str(staging["model"])
            except (KeyError, TypeError):
                self.staging_panel.show_unavailable(
                    "staging result not shown: it needs stage, probabilities and model")
            else:
                self.staging_panel.show_staging(stage, probabilities, model)
            _set_note(self.staging_note, staging_note or "")
        self.triage_strip.set_probabilities(triage)
        lines = []
        if triage is not None and self.triage_strip.reason:
            lines.append(f"Slice triage not shown: {self.triage_strip.reason}")
        elif triage is not None:
            strip = self.triage_strip
            number = max(range(len(triage)), key=strip.probability_of_slice)
            lines.append("Slice triage: P(tumour) per slice beside the axial slice bar; "
                         f"highest {strip.probability_of_slice(number):.2f} at slice "
                         f"{number + 1}")
        if triage_note:
            lines.append(triage_note if triage is not None else f"Slice triage: {triage_note}")
        _set_note(self.triage_note, "\n".join(lines))

    def _on_models_listed(self, registry: RegistryResult | None) -> None:
        def idle(task: ModelTask) -> str:
            if registry is None:
                return "the installed models could not be listed"
            if registry.for_task(task):
                return "not run on this series yet"
            return f"no {task.value} model installed"

        self._staging_idle_reason = idle(ModelTask.STAGING)
        self._triage_idle_note = f"Slice triage: {idle(ModelTask.TRIAGE)}"
        if self._extras_voxels is None:  # never replace a result on screen
            self.staging_panel.show_unavailable(self._staging_idle_reason)
            _set_note(self.triage_note, self._triage_idle_note)

    def _clear_analysis_extras(self) -> None:
        self._extras_voxels = None
        self.staging_panel.show_unavailable(self._staging_idle_reason)
        self.triage_strip.set_probabilities(None)
        _set_note(self.staging_note, "")
        _set_note(self.triage_note, self._triage_idle_note)

    def _on_lesion_selected(self, lesion) -> None:
        for overlay in self.recist_overlays.values():
            overlay.set_lesion(lesion)

    def _on_toggle_recist(self, checked: bool) -> None:
        for overlay in self.recist_overlays.values():
            overlay.set_enabled(checked)

    def _on_study_changed(self, study: StudyInfo) -> None:
        # Clinical values belong to one patient: another patient's series empties the form.
        # Values typed before any named series was shown stay (they are for the one opened).
        previous, self._clinical_patient = self._clinical_patient, study.patient_id
        if previous and study.patient_id != previous:
            self.clinical_form.clear()

    def _build_status_bar(self) -> None:
        bar = self.statusBar()
        self.position_label = QLabel("")
        self.timing_label = QLabel("")
        for label in (self.position_label, self.timing_label):
            label.setTextFormat(Qt.TextFormat.PlainText)  # units come from DICOM headers
        self.progress_bar = QProgressBar()
        self.progress_bar.setMaximumWidth(220)
        self.progress_bar.hide()
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.hide()
        self.cancel_button.clicked.connect(self.cancel_loading)
        bar.addWidget(self.position_label, stretch=1)
        bar.addPermanentWidget(self.timing_label)
        bar.addPermanentWidget(self.progress_bar)
        bar.addPermanentWidget(self.cancel_button)

    def _action(self, text: str, slot, shortcut: str | QKeySequence | None = None,
                checkable: bool = False) -> QAction:
        action = QAction(text, self)
        if shortcut is not None:
            action.setShortcut(QKeySequence(shortcut))
            action.setShortcutContext(Qt.ShortcutContext.WindowShortcut)
        action.setCheckable(checkable)
        action.triggered.connect(slot)
        self.addAction(action)  # shortcuts work even when the menu bar is hidden
        return action

    def _build_menus(self) -> None:
        menu = self.menuBar()
        file_menu = menu.addMenu("&File")
        file_menu.addAction(self._action("Open folder…", self._on_open_folder, "Ctrl+O"))
        file_menu.addAction(self._action("Open file…", self._on_open_file, "Ctrl+Shift+O"))
        file_menu.addAction(self._action("Open label map…", self._on_open_labels))
        self.browser.import_folder_action.setShortcut(QKeySequence("Ctrl+I"))
        file_menu.addAction(self.browser.import_folder_action)
        file_menu.addAction(self.browser.import_files_action)
        file_menu.addSeparator()
        file_menu.addAction(self._action("Save screenshot…", self._on_save_screenshot))
        self.export_action = self._action("Export report…", self._on_export_report, "Ctrl+E")
        self.export_action.setEnabled(False)  # needs a volume and a label map on screen
        file_menu.addAction(self.export_action)
        file_menu.addSeparator()
        file_menu.addAction(self._action("Quit", self.close, QKeySequence.StandardKey.Quit))

        edit_menu = menu.addMenu("&Edit")
        edit_menu.addAction(self.measurement_panel.undo_action)
        edit_menu.addAction(self.measurement_panel.redo_action)

        view_menu = menu.addMenu("&View")
        layouts = QActionGroup(self)
        self.layout_actions: dict[Layout, QAction] = {}
        for number, layout in enumerate(Layout, start=1):
            action = self._action(f"Layout {layout.value}",
                                  lambda _=False, lo=layout: setattr(self.state, "layout", lo),
                                  f"Ctrl+{number}", checkable=True)
            layouts.addAction(action)
            view_menu.addAction(action)
            self.layout_actions[layout] = action
        view_menu.addSeparator()
        self.hide_patient_action = self._action("Hide patient name and ID", self._on_hide_patient,
                                                "Ctrl+H", checkable=True)
        view_menu.addAction(self.hide_patient_action)
        view_menu.addAction(self._action("Invert grey scale", self._on_invert, "I"))
        view_menu.addAction(self._action("Reset views", self._on_reset, "R"))
        self.overlay_action = self._action("Show label overlay", self._on_toggle_overlay, "O",
                                           checkable=True)
        view_menu.addAction(self.overlay_action)
        self.recist_action = self._action("Show RECIST axes", self._on_toggle_recist, "X",
                                          checkable=True)
        self.recist_action.setChecked(True)
        view_menu.addAction(self.recist_action)
        self.cine_action = self._action("Cine play", self._on_toggle_cine, "Space",
                                        checkable=True)
        view_menu.addAction(self.cine_action)

        window_menu = menu.addMenu("&Window")
        for preset in WindowPreset:
            action = self._action(preset.label, lambda _=False, p=preset: self.apply_preset(p),
                                  str(preset.key))
            window_menu.addAction(action)

        tools_menu = menu.addMenu("&Tools")
        tools = QActionGroup(self)
        self.tool_actions: dict[Tool, QAction] = {}
        for tool, text, key in ((Tool.WINDOW, "Window / level", "Esc"), (Tool.RULER, "Ruler", "M"),
                                (Tool.ANGLE, "Angle", "A"), (Tool.ELLIPSE, "Ellipse ROI", "E"),
                                (Tool.RECTANGLE, "Rectangle ROI", "T")):
            action = self._action(text, lambda _=False, t=tool: setattr(self.state, "tool", t),
                                  key, checkable=True)
            tools.addAction(action)
            tools_menu.addAction(action)
            self.tool_actions[tool] = action
        self.tool_actions[Tool.WINDOW].setChecked(True)
        self.state.events.tool.connect(lambda tool: self.tool_actions[tool].setChecked(True))

        help_menu = menu.addMenu("&Help")
        help_menu.addAction(self._action("Keyboard shortcuts", self.show_shortcuts, "F1"))
        help_menu.addAction(self._action("About radview", self._on_about))

    # ------------------------------------------------------------------ opening
    def open_paths(self, paths: list[Path], labels: Path | None = None) -> None:
        """Open files/folders in the background; the first slice shows as soon as it lands."""
        self._pending_labels = labels
        self._opened_paths = list(paths)
        pool = self.decoder_pool
        self._start_load(lambda progress, cancel, on_start: open_images(
            paths, progress=progress, cancel=cancel, on_start=on_start, codec_pool=pool),
            title=", ".join(p.name for p in paths))
        self._remember_folder(paths[0])

    def _on_series_activated(self, series_uid: str, headers: list) -> None:
        self._pending_labels = None
        self._opened_paths = []  # already in the index
        pool = self.decoder_pool
        self._start_load(lambda progress, cancel, on_start: open_series_headers(
            headers, progress=progress, cancel=cancel, on_start=on_start, codec_pool=pool),
            title=series_uid)

    def _start_load(self, job, title: str) -> None:
        self.cancel_loading()
        self._load_started = time.perf_counter()
        self.set_banner("")
        self.viewport.set_message(f"Opening {title}…")
        runner = TaskRunner(job, parent=self, name="open")
        runner.item.connect(self._on_load_started)
        runner.progress.connect(self._on_load_progress)
        runner.finished.connect(self._on_load_finished)
        runner.failed.connect(self._on_load_failed)
        runner.cancelled.connect(self._on_load_cancelled)
        self._loader = runner
        self.progress_bar.setValue(0)
        self.progress_bar.show()
        self.cancel_button.show()
        runner.start()

    def cancel_loading(self) -> None:
        if self._loader is not None:
            self._loader.cancel()

    def _is_current(self) -> bool:
        """False for late signals of a load that was cancelled and replaced by another.

        A replaced runner is deleted once its last signal (finished/failed/cancelled) arrives.
        """
        sender = self.sender()
        if sender is self._loader:
            return True
        if isinstance(sender, TaskRunner) and not sender.is_running():
            sender.deleteLater()
        return False

    def _on_load_started(self, volume: Volume) -> None:
        """The provisional volume: show it at once and keep refreshing while it fills."""
        if not self._is_current():
            return
        # Annotations belong to the new series from now on: nothing drawn meanwhile may land
        # on the previous one (they are loaded from the index when the load finishes).
        self._series_key = self._series_key_of(volume)
        self._load_annotations_quietly([])
        self.state.show_volume(volume, self._study_info(volume))
        self._apply_remembered_preset(volume)
        # An automatic window computed now would see the blank array; recompute at the end
        # unless the user sets one meanwhile.
        self._provisional_window = self.state.window
        self._partial_timer.start()

    def _on_load_progress(self, done: int, total: int) -> None:
        if not self._is_current():
            return
        self.progress_bar.setMaximum(max(total, 1))
        self.progress_bar.setValue(done)
        self.viewport.set_message(f"Loading {done}/{total}…" if self.state.volume is None else "")

    def _on_partial_refresh(self) -> None:
        for view in self.viewport.views.values():
            view.refresh()

    def _on_load_finished(self, opened: OpenedImage) -> None:
        if not self._is_current():
            return
        self._end_load()
        volume = opened.volume
        if self.state.volume is not None and self.state.volume.voxels is volume.voxels:
            self.state.replace_volume(volume)  # same array, final warnings: keep the crosshair
            if self.state.window == self._provisional_window:
                self.state.window = window_for(volume)
                self._apply_remembered_preset(volume)
        else:
            self.state.show_volume(volume, self._study_info(volume))
            self._apply_remembered_preset(volume)
        for view in self.viewport.views.values():
            view.set_message("")
            view.refresh()
        seconds = time.perf_counter() - self._load_started
        self.timing_label.setText(f"loaded in {seconds:.2f} s")
        notes = list(volume.warnings)
        if opened.problems:
            notes.append(f"{len(opened.problems)} file(s) not used, e.g. "
                         f"{Path(opened.problems[0].path).name}: {opened.problems[0].reason}")
        if opened.other_stacks:
            notes.append(f"{len(opened.other_stacks)} other series/stack(s) in this location; "
                         "import the folder to browse them")
        self.set_banner("; ".join(notes))
        self._load_annotations(volume)
        self._shown_tags = None
        self._on_show_current_tags()
        if volume.source.kind == "dicom" and self._opened_paths:
            # What a user opened should be in the browser next time: index it in the background.
            self.browser.import_paths(self._opened_paths)
            self._opened_paths = []
        if self._pending_labels is not None:
            labels, self._pending_labels = self._pending_labels, None
            self.open_label_map(labels)  # emits series_shown when the overlay is on screen
        else:
            self.series_shown.emit()

    def _on_load_failed(self, message: str) -> None:
        if not self._is_current():
            return
        self._end_load()
        self.viewport.set_message(message)
        self.set_banner(message, error=True)
        self.open_failed.emit(message)

    def _on_load_cancelled(self) -> None:
        if not self._is_current():
            return
        self._end_load()
        # The provisional volume is incomplete: nothing partial stays on screen.
        self.state.clear_volume()
        self.viewport.set_message("Loading cancelled")

    def _end_load(self) -> None:
        self._partial_timer.stop()
        self.progress_bar.hide()
        self.cancel_button.hide()
        if self._loader is not None:
            self._loader.deleteLater()
        self._loader = None

    def open_label_map(self, path: Path) -> None:
        """Load a label map onto the shown image in the background (reading and resampling a
        large NIfTI takes seconds); ``series_shown`` follows once it is on screen."""
        volume = self.state.volume
        if volume is None:
            self.set_banner("Open an image before its label map.", error=True)
            return
        runner = TaskRunner(lambda progress, cancel, emit: load_label_map(path, volume),
                            parent=self, name="labels")
        runner.finished.connect(self._on_labels_loaded)
        runner.failed.connect(self._on_labels_failed)
        self._label_runner = runner
        runner.start()

    def _on_labels_loaded(self, label_map) -> None:
        if self.sender() is not self._label_runner:
            return
        self._label_runner = None
        try:
            self.state.set_labels(label_map)
        except ValueError as error:  # the user opened another series meanwhile
            self.add_to_banner(str(error))
        else:
            self.state.overlay_visible = True
        self.series_shown.emit()

    def _on_labels_failed(self, message: str) -> None:
        if self.sender() is not self._label_runner:
            return
        self._label_runner = None
        self.add_to_banner(message)
        self.series_shown.emit()

    def _study_info(self, volume: Volume) -> StudyInfo:
        header = None
        if volume.source.kind == "dicom" and volume.source.series_uid:
            headers = self.index.headers_for_series(volume.source.series_uid)
            header = headers[0] if headers else None
        if header is None and volume.source.kind == "dicom" and volume.source.paths:
            from radview.io.dicom_scan import read_instance_header

            try:
                header = read_instance_header(volume.source.paths[0])
            except Exception:  # noqa: BLE001 - annotations are optional; the image still shows
                header = None
        if header is None:
            return StudyInfo(series_description=volume.source.display_name,
                             modality=volume.modality)
        return StudyInfo(patient_name=header.patient_name,
                         patient_id=header.patient_id, study_date=header.study_date,
                         series_description=volume.source.description, modality=volume.modality)

    # ------------------------------------------------------------------ annotations
    def _series_key_of(self, volume: Volume) -> str:
        return volume.source.series_uid or (volume.source.paths[0] if volume.source.paths else "")

    def _load_annotations(self, volume: Volume) -> None:
        self._series_key = self._series_key_of(volume)
        annotations = self.index.load_annotations(self._series_key) if self._series_key else []
        self._load_annotations_quietly(annotations)

    def _load_annotations_quietly(self, annotations: list[Annotation]) -> None:
        """Show stored annotations without writing them straight back to the index."""
        self._loading_annotations = True
        try:
            self.store.load(annotations)
        finally:
            self._loading_annotations = False

    def _on_annotation_created(self, annotation: Annotation) -> None:
        self.store.add(annotation)
        self.store.selected_id = annotation.id

    def _on_annotations_changed(self, *_: object) -> None:
        volume = self.state.volume
        annotations = list(self.store.annotations)
        labels = {a.id: self._label_of(a, volume) for a in annotations} if volume else {}
        self.viewport.set_annotations(annotations, labels)
        if self._series_key and not self._loading_annotations:
            try:
                self.index.save_annotations(self._series_key, annotations)
            except RadviewError as error:  # keep drawing; tell the user why it was not saved
                self.add_to_banner(f"measurements not saved: {error}")

    @staticmethod
    def _label_of(annotation: Annotation, volume: Volume) -> str:
        try:
            return summary_label(annotation, measure(annotation, volume))
        except (IndexError, ValueError):  # drawn on another series' grid: show it unmeasured
            return ""

    def _on_selected_annotation(self, annotation_id: str | None) -> None:
        self.viewport.set_selected_annotation(annotation_id)

    def _on_jump_requested(self, annotation: Annotation) -> None:
        points = annotation.points
        centre = tuple(sum(p[i] for p in points) / len(points) for i in range(3))
        self.state.cursor = centre
        if self.state.maximized is None and self.state.layout is Layout.ONE:
            self.state.maximized = annotation.plane

    # ------------------------------------------------------------------ view actions
    def apply_preset(self, preset: WindowPreset) -> None:
        volume = self.state.volume
        if volume is None:
            return
        self.state.window = preset.window(volume)
        # Remembered per modality: the next CT opens in the window this reader last chose.
        self.settings.setValue(f"window_preset/{volume.modality or 'OTHER'}", preset.name)

    def _apply_remembered_preset(self, volume: Volume) -> None:
        name = self.settings.value(f"window_preset/{volume.modality or 'OTHER'}")
        if name in WindowPreset.__members__:
            self.state.window = WindowPreset[name].window(volume)

    def _on_hide_patient(self, checked: bool) -> None:
        self.state.hide_patient_info = checked

    def _on_invert(self) -> None:
        self.state.invert = not self.state.invert

    def _on_reset(self) -> None:
        for view in self.viewport.views.values():
            view.reset_view()
        if self.state.volume is not None:
            self.state.window = window_for(self.state.volume)

    def _on_toggle_overlay(self, checked: bool) -> None:
        self.state.overlay_visible = checked

    def _on_toggle_cine(self, checked: bool) -> None:
        if checked and self.state.volume is not None:
            self._cine_timer.start()
        else:
            self._cine_timer.stop()
            self.cine_action.setChecked(False)

    def _on_cine_tick(self) -> None:
        plane = self.state.maximized or ViewPlane.AXIAL
        volume = self.state.volume
        if volume is None:
            return
        index = self.state.slice_index(plane) + 1
        if index >= volume.plane_geometry(plane).slice_count:
            index = 0
        self.state.set_slice(plane, index)

    def _on_cursor_changed(self, *_: object) -> None:
        self._tags_timer.start()

    def _on_show_current_tags(self) -> None:
        """Show the header of the file (and frame) of the slice under the crosshair."""
        volume = self.state.volume
        if volume is None or not volume.source.slice_files:
            return
        k = int(round(float(volume.world_to_index(self.state.cursor)[2])))
        k = min(max(k, 0), len(volume.source.slice_files) - 1)
        current = volume.source.slice_files[k]
        if current[0] and current != self._shown_tags:
            self._shown_tags = current
            self.tags_panel.show_file(*current)

    def _on_layout_changed(self, layout: Layout) -> None:
        self.layout_actions[layout].setChecked(True)
        self.settings.setValue("layout", layout.value)

    def _on_volume_changed(self, volume: Volume | None) -> None:
        self.overlay_action.setChecked(self.state.overlay_visible)
        if self._extras_voxels is not None and (volume is None
                                                or volume.voxels is not self._extras_voxels):
            self._clear_analysis_extras()  # they described the previous series
        if volume is not None:
            title = self.state.study.series_description or volume.source.display_name
            self.setWindowTitle(f"radview — {title}")

    def _on_cursor_moved(self, world: tuple, value: object, label: object) -> None:
        x, y, z = world
        text = f"LPS ({x:.1f}, {y:.1f}, {z:.1f}) mm"
        volume = self.state.volume
        if value is not None and volume is not None:
            unit = volume.rescale.unit
            number = (f"{value:.0f}" if volume.voxels.dtype.kind in "iu"
                      else f"{value:.4g}")  # float data (PET, dose, maps): keep the decimals
            text += f"   {number} {unit}".rstrip()
        if label:
            text += f"   {label}"
        self.position_label.setText(text)

    def add_to_banner(self, text: str) -> None:
        """Add a message without hiding the warnings already shown (e.g. geometry problems)."""
        current = self.banner.text() if self.banner.isVisible() else ""
        self.set_banner(f"{current}; {text}" if current else text, error=True)

    def set_banner(self, text: str, error: bool = False) -> None:
        self.banner.setObjectName("errorBanner" if error else "warningBanner")
        self.banner.setStyleSheet("")  # re-polish for the new object name
        self.banner.setText(text)
        self.banner.setVisible(bool(text))

    def show_shortcuts(self) -> None:
        ShortcutSheet(self).exec()

    def _on_about(self) -> None:
        QMessageBox.about(self, "About radview", f"<b>radview {html.escape(__version__)}</b>"
                          "<p>Offline radiology workstation. AI outputs are decision support and "
                          "must be reviewed by a radiologist.</p>")

    def _on_open_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Open folder", self._last_folder())
        if folder:
            self.open_paths([Path(folder)])

    def _on_open_file(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, "Open image", self._last_folder(),
            "Images (*.dcm *.nii *.nii.gz *.nrrd *.nhdr *.mha *.mhd);;All files (*)")
        if path:
            self.open_paths([Path(path)])

    def _on_open_labels(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, "Open label map", self._last_folder(),
            "Label maps (*.nii *.nii.gz *.nrrd *.mha *.mhd);;All files (*)")
        if path:
            self.open_label_map(Path(path))

    def _update_export_action(self, *_: object) -> None:
        self.export_action.setEnabled(self.state.volume is not None
                                      and self.state.labels is not None)

    def _on_export_report(self) -> None:
        volume, labels = self.state.volume, self.state.labels
        if volume is None or labels is None:
            return
        # The de-identification key lives next to the study index (the user data dir).
        dialog = ExportDialog(volume, labels, self.settings, self.index.path.parent, self,
                              model_inputs=self.analyze_panel.report_inputs_for(volume, labels))
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.finished.connect(self._on_export_dialog_finished)
        self.export_dialog = dialog
        dialog.open()

    def _on_export_dialog_finished(self, _result: int) -> None:
        if self.sender() is self.export_dialog:
            self.export_dialog = None

    def _on_save_screenshot(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Save screenshot", self._last_folder(),
                                              "PNG image (*.png)")
        if path:
            target = Path(path if path.lower().endswith(".png") else f"{path}.png")
            if not save_png_atomically(self.grab(), target):
                self.add_to_banner(f"{target}: could not save the screenshot")

    # ------------------------------------------------------------------ drag and drop
    def dragEnterEvent(self, event) -> None:
        if event.mimeData().hasUrls():
            event.acceptProposedAction()

    def dropEvent(self, event) -> None:
        paths = [Path(url.toLocalFile()) for url in event.mimeData().urls() if url.isLocalFile()]
        if paths:
            self.open_paths(paths)

    # ------------------------------------------------------------------ settings
    def _last_folder(self) -> str:  # where the last scans were opened from
        return str(self.settings.value("last_folder", str(Path.home())))

    def _remember_folder(self, path: Path) -> None:
        folder = path if path.is_dir() else path.parent
        self.settings.setValue("last_folder", str(folder))

    def _restore_settings(self) -> None:
        layout = self.settings.value("layout", Layout.THREE.value)
        try:
            self.state.layout = Layout(layout)
        except ValueError:
            self.state.layout = Layout.THREE
        self.layout_actions[self.state.layout].setChecked(True)
        opacity = self.settings.value("overlay_opacity", self.state.overlay_opacity)
        with contextlib.suppress(TypeError, ValueError):  # damaged value: keep the default
            self.state.overlay_opacity = min(1.0, max(0.0, float(opacity)))
        geometry = self.settings.value("geometry")
        if geometry is not None:
            self.restoreGeometry(geometry)

    def closeEvent(self, event) -> None:
        self.cancel_loading()
        if self._loader is not None:
            self._loader.wait(5000)
        self.browser.shutdown(5000)
        self.decoder_pool.shutdown()
        self.settings.setValue("geometry", self.saveGeometry())
        self.settings.setValue("overlay_opacity", self.state.overlay_opacity)
        self.settings.setValue("layout", self.state.layout.value)
        super().closeEvent(event)


def _plain_label(text: str = "") -> QLabel:
    label = QLabel(text)
    label.setTextFormat(Qt.TextFormat.PlainText)  # notes may quote model ids and paths
    label.setWordWrap(True)
    return label


def _set_note(label: QLabel, text: str) -> None:
    label.setText(text)
    label.setVisible(bool(text))


def _scrolling(widget: QWidget) -> QScrollArea:
    """``widget`` in a frameless vertical scroll area (long forms in a short dock)."""
    area = QScrollArea()
    area.setWidget(widget)
    area.setWidgetResizable(True)
    area.setFrameShape(QScrollArea.Shape.NoFrame)
    area.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
    return area
