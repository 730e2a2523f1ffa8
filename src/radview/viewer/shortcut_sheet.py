"""The keyboard shortcut sheet (F1): one table, the same one the tests check against the menus."""

from __future__ import annotations

from PySide6.QtWidgets import QDialog, QDialogButtonBox, QTableWidget, QTableWidgetItem, QVBoxLayout

from radview.core.windowing import WindowPreset

__all__ = ["SHORTCUTS", "ShortcutSheet"]

#: (keys, what they do). Mouse gestures are listed too: they are what users forget first.
SHORTCUTS: tuple[tuple[str, str], ...] = (
    ("Wheel, Up/Down", "Previous / next slice"),
    ("PageUp / PageDown", "Ten slices back / forward"),
    ("Home / End", "First / last slice"),
    ("Left-drag", "Window / level (horizontal: width, vertical: level)"),
    ("Right-drag", "Zoom"),
    ("Middle-drag, Shift+left-drag", "Pan"),
    ("Click", "Move the crosshair; the other views follow"),
    ("Double-click", "Maximise / restore a view"),
    ("R", "Reset zoom, pan and window"),
    ("I", "Invert grey scale"),
    ("O", "Show / hide the label overlay"),
    ("X", "Show / hide the RECIST axes of the lesion selected in the lesion table"),
    ("Space", "Cine play / stop"),
    *(
        (str(p.key), f"Window preset: {p.label}" + (
            "" if p is WindowPreset.AUTO else f" (W {p.value[2]:.0f} L {p.value[3]:.0f})"))
        for p in WindowPreset
    ),
    ("Esc", "Back to the window/level tool"),
    ("M", "Ruler tool"),
    ("A", "Angle tool"),
    ("E", "Ellipse ROI tool"),
    ("T", "Rectangle ROI tool"),
    ("Delete", "Delete the selected measurement"),
    ("Ctrl+Z / Ctrl+Shift+Z / Ctrl+Y", "Undo / redo measurement edits"),
    ("Drag a handle", "Move a point of the selected measurement (drag its line to move it)"),
    ("F2", "Rename the selected measurement"),
    ("Ctrl+1 / Ctrl+2 / Ctrl+3", "Layout 1x1 / 1x3 / 2x2"),
    ("Ctrl+H", "Hide / show patient name and ID (screen sharing)"),
    ("Ctrl+O", "Open a folder"),
    ("Ctrl+I", "Import a folder into the study index"),
    ("Ctrl+E", "Export the report (PDF, DICOM SEG / SR, tables)"),
    ("F1", "This sheet"),
)


class ShortcutSheet(QDialog):
    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Keyboard shortcuts")
        table = QTableWidget(len(SHORTCUTS), 2, self)
        table.setHorizontalHeaderLabels(["Keys", "Action"])
        for row, (keys, action) in enumerate(SHORTCUTS):
            table.setItem(row, 0, QTableWidgetItem(keys))
            table.setItem(row, 1, QTableWidgetItem(action))
        table.verticalHeader().setVisible(False)
        table.resizeColumnsToContents()
        table.horizontalHeader().setStretchLastSection(True)
        table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.table = table
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(table)
        layout.addWidget(buttons)
        self.resize(560, 640)
