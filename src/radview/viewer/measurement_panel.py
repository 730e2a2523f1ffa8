"""The list of the current series' annotations with what each measures.

A view of :class:`~radview.core.annotation_store.AnnotationStore` (DESIGN rule 2): it redraws
on ``store.changed``, follows ``store.selected_id_changed``, and changes the store only through
its methods, so every delete and rename here is undoable and shows in the slice views at once.
The numbers come from :func:`radview.core.measurements.measure`; this module only formats them
(rule 8). Every string reaches Qt as plain text: table items never interpret markup, and the
tooltip is escaped. A label is edited in place in the first column (F2 or the Rename button): the
editor shows the label alone, and committing it replaces the annotation in the store.
"""

from __future__ import annotations

import dataclasses
import html
import weakref
from collections.abc import Callable

from PySide6.QtCore import QAbstractItemModel, QEvent, QModelIndex, QObject, Qt, Signal
from PySide6.QtGui import QAction, QKeyEvent, QKeySequence
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QStyledItemDelegate,
    QStyleOptionViewItem,
    QTableWidget,
    QTableWidgetItem,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from radview.core.annotation_store import AnnotationStore
from radview.core.annotations import Annotation, AnnotationKind
from radview.core.measurements import measure, measurement_lines
from radview.core.volume import Volume

__all__ = ["MAX_LABEL_LENGTH", "MeasurementPanel", "plain_label"]

_KIND_TEXT = {
    AnnotationKind.RULER: "Ruler",
    AnnotationKind.ANGLE: "Angle",
    AnnotationKind.ELLIPSE: "Ellipse",
    AnnotationKind.RECTANGLE: "Rectangle",
}
_COLUMNS = ("Kind", "Slice", "Measurements")
_ID_ROLE = Qt.ItemDataRole.UserRole
#: Longest label kept (characters): a name for a finding, not a report.
MAX_LABEL_LENGTH = 80


class MeasurementPanel(QWidget):
    """A table of annotations: kind, slice, measurements; rename, delete, undo, redo, jump.

    Parameters
    ----------
    store
        The annotations of the current series.
    volume_provider
        Returns the displayed volume (or None); called whenever the table is redrawn, so the
        panel never holds on to an old volume.

    Signals
    -------
    jump_requested(Annotation)
        A row was double-clicked or Enter was pressed on it: show that annotation.

    Attributes
    ----------
    undo_action, redo_action
        For the main window's Edit menu; Ctrl+Z and Ctrl+Shift+Z / Ctrl+Y.
    delete_action
        Deletes the selected annotation; Delete / Backspace while the panel has focus.
    rename_action
        Edits the selected annotation's label in place; F2 while the panel has focus.
    """

    jump_requested = Signal(object)

    def __init__(
        self,
        store: AnnotationStore,
        volume_provider: Callable[[], Volume | None],
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self._store = store
        self._volume_provider = volume_provider
        self._updating_selection = False

        self.undo_action = QAction("Undo", self)
        self.undo_action.setShortcuts(QKeySequence.keyBindings(QKeySequence.StandardKey.Undo))
        self.redo_action = QAction("Redo", self)
        # Ctrl+Shift+Z and Ctrl+Y on every platform: users come from both conventions.
        self.redo_action.setShortcuts(
            [QKeySequence("Ctrl+Shift+Z"), QKeySequence("Ctrl+Y")]
        )
        self.delete_action = QAction("Delete", self)
        self.delete_action.setShortcuts(
            [QKeySequence(QKeySequence.StandardKey.Delete), QKeySequence(Qt.Key.Key_Backspace)]
        )
        # Only while the panel has focus: Delete in another widget must not remove a row here.
        self.delete_action.setShortcutContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
        self.delete_action.setToolTip("Delete the selected measurement (Delete)")
        self.rename_action = QAction("Rename", self)
        self.rename_action.setShortcut(QKeySequence(Qt.Key.Key_F2))
        self.rename_action.setShortcutContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
        self.rename_action.setToolTip("Edit the selected measurement's label (F2)")
        self.undo_action.setToolTip("Undo the last measurement edit (Ctrl+Z)")
        self.redo_action.setToolTip("Redo (Ctrl+Shift+Z)")
        # Added to the panel so the shortcuts work even if no menu holds the actions; the main
        # window adds the *same* actions to its menu, which is not an ambiguous shortcut.
        self.addActions([self.undo_action, self.redo_action, self.delete_action,
                         self.rename_action])

        self.table = QTableWidget(0, len(_COLUMNS))
        self.table.setHorizontalHeaderLabels(_COLUMNS)
        self.table.setAccessibleName("Measurements")
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        # Only the rename action opens an editor (a double-click jumps to the annotation).
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self._label_delegate = _LabelDelegate(self._label_of, self.rename, self.table)
        self.table.setItemDelegateForColumn(0, self._label_delegate)
        self.table.setWordWrap(True)
        self.table.verticalHeader().setVisible(False)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(1, QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(2, QHeaderView.ResizeMode.Stretch)
        self.table.installEventFilter(self)

        self.empty_label = QLabel("No measurements. Draw one with a ruler, angle, ellipse or "
                                  "rectangle tool.")
        self.empty_label.setTextFormat(Qt.TextFormat.PlainText)
        self.empty_label.setWordWrap(True)

        self.rename_button = _tool_button(self.rename_action)
        self.delete_button = _tool_button(self.delete_action)
        self.undo_button = _tool_button(self.undo_action)
        self.redo_button = _tool_button(self.redo_action)
        buttons = QHBoxLayout()
        for button in (self.rename_button, self.delete_button, self.undo_button,
                       self.redo_button):
            buttons.addWidget(button)
        buttons.addStretch(1)

        layout = QVBoxLayout(self)
        layout.addWidget(self.empty_label)
        layout.addWidget(self.table, stretch=1)
        layout.addLayout(buttons)

        self.undo_action.triggered.connect(self._on_undo)
        self.redo_action.triggered.connect(self._on_redo)
        self.delete_action.triggered.connect(self._on_delete)
        self.rename_action.triggered.connect(self._on_rename)
        self.table.itemSelectionChanged.connect(self._on_table_selection_changed)
        self.table.doubleClicked.connect(self._on_row_activated)
        store.changed.connect(self.refresh)
        store.selected_id_changed.connect(self._on_store_selection_changed)
        self.destroyed.connect(_disconnector(store, self))
        self.refresh()

    # ------------------------------------------------------------------ public
    def refresh(self, *_: object) -> None:
        """Redraw every row from the store (also after the displayed volume changed)."""
        volume = self._volume_provider()
        annotations = self._store.annotations
        self._updating_selection = True
        try:
            self.table.setRowCount(len(annotations))
            for row, annotation in enumerate(annotations):
                for column, item in enumerate(_row_items(annotation, volume)):
                    item.setData(_ID_ROLE, annotation.id)
                    self.table.setItem(row, column, item)
            self.table.resizeRowsToContents()
        finally:
            self._updating_selection = False
        self.empty_label.setVisible(not annotations)
        self._show_selection(self._store.selected_id)
        self._update_actions()

    def annotation_at(self, row: int) -> Annotation | None:
        """The annotation shown in ``row``, or None."""
        item = self.table.item(row, 0)
        return None if item is None else self._store.get(item.data(_ID_ROLE))

    def rename(self, annotation_id: str, text: str) -> None:
        """Give an annotation the label ``text`` (made plain: see :func:`plain_label`).

        One undoable step in the store; nothing happens if the label stays the same or the
        annotation is gone (deleted while its editor was open).
        """
        annotation = self._store.get(annotation_id)
        if annotation is None:
            return
        label = plain_label(text)
        if label != annotation.label:
            self._store.replace(dataclasses.replace(annotation, label=label))

    # ------------------------------------------------------------------ slots
    def _on_undo(self) -> None:
        self._store.undo()

    def _on_redo(self) -> None:
        self._store.redo()

    def _on_delete(self) -> None:
        selected = self._store.selected_id
        if selected is not None:
            self._store.remove(selected)

    def _on_rename(self) -> None:
        """Open the label editor on the selected annotation's row."""
        selected = self._store.selected_id
        for row in range(self.table.rowCount()):
            item = self.table.item(row, 0)
            if item is not None and item.data(_ID_ROLE) == selected:
                self.table.setFocus(Qt.FocusReason.OtherFocusReason)
                self.table.setCurrentItem(item)
                self.table.editItem(item)
                return

    def _label_of(self, annotation_id: str) -> str:
        annotation = self._store.get(annotation_id)
        return "" if annotation is None else annotation.label

    def _on_table_selection_changed(self) -> None:
        if self._updating_selection:
            return
        rows = self.table.selectionModel().selectedRows()
        annotation = self.annotation_at(rows[0].row()) if rows else None
        self._store.selected_id = None if annotation is None else annotation.id

    def _on_store_selection_changed(self, annotation_id: str | None) -> None:
        self._show_selection(annotation_id)
        self._update_actions()

    def _on_row_activated(self, *_: object) -> None:
        annotation = self.annotation_at(self.table.currentRow())
        if annotation is not None:
            self.jump_requested.emit(annotation)

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        # Enter/Return jump to the row. Handled here rather than through QAbstractItemView's
        # `activated`, which some platforms and styles also fire on a single click.
        if (
            watched is self.table
            and event.type() == QEvent.Type.KeyPress
            and isinstance(event, QKeyEvent)
            and event.key() in (Qt.Key.Key_Return, Qt.Key.Key_Enter)
        ):
            self._on_row_activated()
            return True
        return super().eventFilter(watched, event)

    # ------------------------------------------------------------------ helpers
    def _show_selection(self, annotation_id: str | None) -> None:
        """Select the row of ``annotation_id`` without echoing it back to the store."""
        self._updating_selection = True
        try:
            target = None
            for row in range(self.table.rowCount()):
                item = self.table.item(row, 0)
                if item is not None and item.data(_ID_ROLE) == annotation_id:
                    target = row
                    break
            if target is None:
                self.table.clearSelection()
            else:
                self.table.selectRow(target)
                self.table.scrollToItem(self.table.item(target, 0))
        finally:
            self._updating_selection = False

    def _update_actions(self) -> None:
        store = self._store
        self.undo_action.setEnabled(store.can_undo)
        self.redo_action.setEnabled(store.can_redo)
        # command texts are our own fixed words, never user strings, so no '&' mnemonics
        self.undo_action.setText(f"Undo {store.undo_text}" if store.can_undo else "Undo")
        self.redo_action.setText(f"Redo {store.redo_text}" if store.can_redo else "Redo")
        self.delete_action.setEnabled(store.selected_id is not None)
        self.rename_action.setEnabled(store.selected_id is not None)


def _disconnector(store: AnnotationStore, panel: MeasurementPanel) -> Callable[..., None]:
    """A slot for ``panel.destroyed`` that unhooks the panel from ``store``.

    The store outlives the panel (the composition root owns it), and psygnal only drops a
    callback when its Python object is collected, not when Qt deletes the widget under it.
    The panel is held weakly so the connection does not keep it alive.
    """
    panel_ref = weakref.ref(panel)

    def disconnect(*_: object) -> None:
        alive = panel_ref()
        if alive is not None:  # otherwise psygnal already dropped its weak callbacks
            store.changed.disconnect(alive.refresh)
            store.selected_id_changed.disconnect(alive._on_store_selection_changed)

    return disconnect


def plain_label(text: str) -> str:
    """``text`` as a one-line plain label: whitespace runs (newlines, tabs) become one space,
    other control and format characters are dropped, and at most :data:`MAX_LABEL_LENGTH`
    characters are kept. Markup characters stay as typed: every place that shows a label shows
    it as plain text."""
    words = "".join(ch for ch in " ".join(text.split()) if ch.isprintable())
    return words[:MAX_LABEL_LENGTH].rstrip()


class _LabelDelegate(QStyledItemDelegate):
    """The first column's editor: a line edit holding the label alone (not "Ruler: label").

    Committing does not write the table model: it renames the annotation in the store, whose
    ``changed`` redraws the row like any other change.
    """

    def __init__(self, label_of: Callable[[str], str], rename: Callable[[str, str], None],
                 parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._label_of = label_of
        self._rename = rename

    def createEditor(self, parent: QWidget, option: QStyleOptionViewItem,
                     index: QModelIndex) -> QWidget:
        editor = QLineEdit(parent)
        editor.setMaxLength(MAX_LABEL_LENGTH)
        editor.setPlaceholderText("Label")
        editor.setAccessibleName("Measurement label")
        return editor

    def setEditorData(self, editor: QWidget, index: QModelIndex) -> None:
        assert isinstance(editor, QLineEdit)
        editor.setText(self._label_of(index.data(_ID_ROLE)))

    def setModelData(self, editor: QWidget, model: QAbstractItemModel,
                     index: QModelIndex) -> None:
        assert isinstance(editor, QLineEdit)
        self._rename(index.data(_ID_ROLE), editor.text())


def _tool_button(action: QAction) -> QToolButton:
    button = QToolButton()
    button.setDefaultAction(action)
    button.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextOnly)
    return button


def _row_items(annotation: Annotation, volume: Volume | None) -> list[QTableWidgetItem]:
    kind = _KIND_TEXT[annotation.kind]
    if annotation.label:
        kind = f"{kind}: {annotation.label}"
    plane = annotation.plane.value.capitalize()
    # 1-based, as radiologists count images; the total says which end is which
    number = annotation.slice_index + 1
    slice_text = f"{plane} {number}"
    if volume is not None:
        slice_text += f"/{volume.plane_geometry(annotation.plane).slice_count}"
    if volume is None:
        lines = ["no image"]
        methods = []
    else:
        try:
            measurements = measure(annotation, volume)
        except IndexError as error:  # drawn on another volume: say so in the row
            measurements = ()
            lines = [f"not measurable: {error}"]
        else:
            lines = measurement_lines(measurements) or ["nothing measurable"]
        methods = [f"{m.name}: {m.method}" for m in measurements]
    items = [QTableWidgetItem(kind), QTableWidgetItem(slice_text),
             QTableWidgetItem("\n".join(lines))]
    items[0].setToolTip("F2: edit the label")
    for item in items[1:]:  # only the label (first column) is edited in place
        item.setFlags(item.flags() & ~Qt.ItemFlag.ItemIsEditable)
    if methods:
        # Tooltips guess whether text is markup, so it is escaped and marked up explicitly.
        items[2].setToolTip("<qt>" + "<br>".join(html.escape(m) for m in methods) + "</qt>")
    return items
