"""The DICOM tags of one file as an expandable, searchable tree.

Reading one header is quick, so :meth:`TagsPanel.show_file` reads it synchronously with
pydicom (``stop_before_pixels``). Values are shown as plain ``QStandardItem`` text, cut to
:data:`MAX_VALUE_CHARS` characters on one line; binary values show only their size. Nothing
from the file ever reaches rich text, so markup in a header is shown literally.
"""

from __future__ import annotations

import html
import logging
import os
import re
import warnings

import pydicom
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence
from pydicom.tag import BaseTag
from pydicom.uid import UID
from PySide6.QtCore import QModelIndex, QPersistentModelIndex, QSortFilterProxyModel, Qt, Slot
from PySide6.QtGui import QStandardItem, QStandardItemModel
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHeaderView,
    QLabel,
    QLineEdit,
    QSizePolicy,
    QTreeView,
    QVBoxLayout,
    QWidget,
)

from radview.io.dicom_scan import PYDICOM_WARNINGS_LOCK

__all__ = ["MAX_VALUE_CHARS", "TagsPanel"]

log = logging.getLogger(__name__)

#: Longest value shown; longer ones end with an ellipsis.
MAX_VALUE_CHARS = 200
#: Longest value in a tooltip; values longer than _TOOLTIP_FROM_CHARS get one.
MAX_TOOLTIP_CHARS = 1000
_TOOLTIP_FROM_CHARS = 40
#: Items shown per sequence; a sequence with more ends with a "… more items" row.
MAX_SEQUENCE_ITEMS = 500
_PER_FRAME_GROUPS = 0x52009230  # Per-Frame Functional Groups Sequence: one item per frame
_BINARY_VRS = {"OB", "OD", "OF", "OL", "OV", "OW", "UN", "OB or OW", "US or OW"}
_LINE_BREAKS = re.compile(r"\r\n|\r|\n")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")

COLUMNS = ("Tag", "Name", "VR", "Value")
COL_TAG, COL_NAME, COL_VR, COL_VALUE = range(len(COLUMNS))
#: Extra text a row is searchable by (keyword, dictionary name, creator, tag without commas).
ROLE_SEARCH = Qt.ItemDataRole.UserRole + 1


class _TagFilterProxy(QSortFilterProxyModel):
    """Keeps rows whose tag, name, value or keyword contain the search text (any case).

    Parents of matching rows stay visible (recursive filtering) and children of matching rows
    too (a matching sequence shows its items).
    """

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._needle = ""
        self.setRecursiveFilteringEnabled(True)
        self.setAutoAcceptChildRows(True)

    def set_needle(self, text: str) -> None:
        self.beginFilterChange()
        self._needle = text.strip().casefold()
        self.endFilterChange(QSortFilterProxyModel.Direction.Rows)

    def filterAcceptsRow(
        self, source_row: int, source_parent: QModelIndex | QPersistentModelIndex
    ) -> bool:
        if not self._needle:
            return True
        model = self.sourceModel()
        for column in (COL_TAG, COL_NAME, COL_VALUE):
            text = model.index(source_row, column, source_parent).data() or ""
            if self._needle in str(text).casefold():
                return True
        extra = model.index(source_row, COL_TAG, source_parent).data(ROLE_SEARCH) or ""
        return self._needle in str(extra).casefold()


class TagsPanel(QWidget):
    """Shows every element of one DICOM file: tag, keyword, VR, value; sequences expand.

    Parameters
    ----------
    parent
        Usual QWidget parent.
    """

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.path: str | None = None
        self.frame = 0

        self.search_edit = QLineEdit()
        self.search_edit.setPlaceholderText("Filter tags: number, keyword or value")
        self.search_edit.setClearButtonEnabled(True)
        self.search_edit.textChanged.connect(self._on_search_text_changed)

        self.file_label = QLabel()
        self.file_label.setTextFormat(Qt.TextFormat.PlainText)
        self.file_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        # a long path must not force the dock wider: the label is cut instead
        self.file_label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.message_label = QLabel()
        self.message_label.setTextFormat(Qt.TextFormat.PlainText)
        self.message_label.setWordWrap(True)
        self.message_label.hide()

        self.model = QStandardItemModel(0, len(COLUMNS), self)
        self.model.setHorizontalHeaderLabels(list(COLUMNS))
        self.proxy = _TagFilterProxy(self)
        self.proxy.setSourceModel(self.model)
        self.tree = QTreeView()
        self.tree.setModel(self.proxy)
        self.tree.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.tree.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.tree.setUniformRowHeights(True)
        self.tree.setAlternatingRowColors(True)
        self.tree.setTextElideMode(Qt.TextElideMode.ElideRight)
        header = self.tree.header()
        header.setStretchLastSection(True)
        # nested items indent the tag column: size it to what is shown
        header.setSectionResizeMode(COL_TAG, QHeaderView.ResizeMode.ResizeToContents)
        header.resizeSection(COL_NAME, 190)
        header.resizeSection(COL_VR, 36)

        layout = QVBoxLayout(self)
        layout.addWidget(self.search_edit)
        layout.addWidget(self.file_label)
        layout.addWidget(self.message_label)
        layout.addWidget(self.tree, 1)

    # ------------------------------------------------------------------ public API
    def show_file(self, path: str | os.PathLike[str], frame: int = 0) -> bool:
        """Show the tags of ``path``; for a multi-frame file, the per-frame item of ``frame``.

        Returns
        -------
        bool
            False if the file could not be read; the panel then shows why, in one line.
        """
        self.path = os.fspath(path)
        self.frame = max(0, int(frame))
        self.model.removeRows(0, self.model.rowCount())
        label = self.path if self.frame == 0 else f"{self.path} (frame {self.frame + 1})"
        self.file_label.setText(label)
        try:
            dataset, truncated = _read_header(self.path)
        except InvalidDicomError:
            return self._show_error(f"{self.path}: not a DICOM file")
        except OSError as error:
            return self._show_error(f"{self.path}: cannot read file ({error.strerror or error})")
        except Exception as error:  # pydicom raises many types for damaged files
            log.warning("cannot read DICOM header of %s", self.path, exc_info=True)
            return self._show_error(
                f"{self.path}: damaged DICOM header ({type(error).__name__}: {_flat(error)})"
            )
        self.message_label.hide()
        root = self.model.invisibleRootItem()
        with PYDICOM_WARNINGS_LOCK, warnings.catch_warnings():
            warnings.simplefilter("ignore")  # standard violations are shown, not warned about
            if dataset.file_meta:
                _add_elements(root, dataset.file_meta, self.frame)
            _add_elements(root, dataset, self.frame)
        self._apply_filter()
        if self.model.rowCount() == 0:
            return self._show_error(f"{self.path}: no DICOM elements could be read")
        if truncated:
            # still worth showing: the header of a damaged file is often what explains it
            self._show_error(f"{self.path}: the file ends early (truncated or damaged); "
                             "showing the elements read before the break")
        return True

    def clear(self) -> None:
        """Show nothing."""
        self.path = None
        self.model.removeRows(0, self.model.rowCount())
        self.file_label.clear()
        self.message_label.hide()

    def message(self) -> str:
        """The error shown for the current file, or ''."""
        return self.message_label.text() if self.message_label.isVisibleTo(self) else ""

    # ------------------------------------------------------------------ slots
    @Slot(str)
    def _on_search_text_changed(self, _text: str) -> None:
        self._apply_filter()

    def _apply_filter(self) -> None:
        text = self.search_edit.text()
        self.proxy.set_needle(text)
        if text.strip():
            self.tree.expandAll()  # matches inside sequences must be visible
        else:
            self.tree.collapseAll()

    def _show_error(self, text: str) -> bool:
        self.message_label.setText(_flat(text))
        self.message_label.show()
        return False


# ---------------------------------------------------------------------------- reading
def _read_header(path: str) -> tuple[Dataset, bool]:
    """The dataset without pixel data, and whether the file ended before its data did."""
    # the lock: catch_warnings is process-wide and loads/imports parse in other threads
    with PYDICOM_WARNINGS_LOCK, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            dataset = pydicom.dcmread(path, stop_before_pixels=True)
        except InvalidDicomError:
            # preamble-less files are DICOM if they start with a group 0002 or 0008 tag
            with open(path, "rb") as handle:
                start = handle.read(2)
            if start not in (b"\x02\x00", b"\x08\x00"):
                raise
            dataset = pydicom.dcmread(path, stop_before_pixels=True, force=True)
    truncated = any("End of file" in str(warning.message) for warning in caught)
    return dataset, truncated


def _add_elements(parent: QStandardItem, dataset: Dataset, frame: int) -> None:
    for tag in list(dataset.keys()):
        try:
            element = dataset[tag]
        except Exception as error:  # a value that cannot be converted: show why, keep going
            log.debug("cannot convert %s", tag, exc_info=True)
            problem = f"<cannot read: {_flat(error)}>"
            parent.appendRow(_row(_tag_text(BaseTag(tag)), "", "", problem))
            continue
        parent.appendRow(_element_row(element, dataset, frame))


def _element_row(element: DataElement, dataset: Dataset, frame: int) -> list[QStandardItem]:
    tag = element.tag
    name, search = _names(element, dataset)
    vr = str(element.VR or "")
    if vr == "SQ" and isinstance(element.value, Sequence):
        items = list(element.value)
        count = f"{len(items)} item{'s' if len(items) != 1 else ''}"
        row = _row(_tag_text(tag), name, vr, count, search)
        _set_tooltip(row, element)
        if tag == _PER_FRAME_GROUPS and len(items) > 1:
            shown = min(frame, len(items) - 1)
            _add_item(row[0], items[shown], f"Item {shown + 1} of {len(items)} (this frame)",
                      frame)
            row[COL_VALUE].setText(f"{len(items)} items (one per frame; showing frame "
                                   f"{shown + 1})")
            return row
        for number, item in enumerate(items[:MAX_SEQUENCE_ITEMS], start=1):
            _add_item(row[0], item, f"Item {number}", frame)
        if len(items) > MAX_SEQUENCE_ITEMS:
            more = len(items) - MAX_SEQUENCE_ITEMS
            row[0].appendRow(_row("…", f"{more} more items not shown", "", ""))
        return row
    try:
        value = _value_text(element)
    except Exception as error:  # a value pydicom cannot convert: show why, keep going
        log.debug("cannot convert %s", tag, exc_info=True)
        value = f"<cannot read: {_flat(error)}>"
    row = _row(_tag_text(tag), name, vr, _shortened(value, MAX_VALUE_CHARS), search)
    _set_tooltip(row, element)
    if len(value) > _TOOLTIP_FROM_CHARS:
        row[COL_VALUE].setToolTip(_plain_tooltip(_shortened(value, MAX_TOOLTIP_CHARS)))
    return row


def _add_item(parent: QStandardItem, item: Dataset, label: str, frame: int) -> None:
    count = len(item)
    row = _row(label, "", "", f"{count} element{'s' if count != 1 else ''}")
    _add_elements(row[0], item, frame)
    parent.appendRow(row)


def _names(element: DataElement, dataset: Dataset) -> tuple[str, str]:
    """(shown name, extra search text) of an element."""
    tag = element.tag
    if not tag.is_private:
        keyword = element.keyword or ""
        shown = keyword or element.name
        return shown, f"{keyword} {element.name} {tag:08X}"
    if tag.is_private_creator:
        return "Private Creator", f"private creator {tag:08X}"
    creator = getattr(element, "private_creator", None) or _creator_of(tag, dataset)
    name = element.name if element.name != "Private tag data" else "Private tag"
    shown = f"{name} · {creator}" if creator else f"{name} · unknown creator"
    return shown, f"{name} {creator or ''} private {tag:08X}"


def _creator_of(tag: BaseTag, dataset: Dataset) -> str:
    creator_tag = (tag.group << 16) | (tag.element >> 8)
    try:
        element = dataset.get(creator_tag)
    except Exception:  # a damaged creator element: the tag is shown without one
        log.debug("cannot read private creator of %s", tag, exc_info=True)
        return ""
    return str(element.value).strip() if element is not None and element.value else ""


def _value_text(element: DataElement) -> str:
    value = element.value
    if value is None or value == "":
        return ""
    if isinstance(value, bytes | bytearray | memoryview):
        return f"<{len(value)} bytes>"
    if str(element.VR) in _BINARY_VRS and not isinstance(value, str):
        return f"<{_length(value)} bytes>"
    if isinstance(value, MultiValue | list | tuple):
        text = "\\".join(_one_value(item) for item in value)
    else:
        text = _one_value(value)
    return _shortened(_flat(text), MAX_TOOLTIP_CHARS)


def _one_value(value: object) -> str:
    if isinstance(value, UID) and value.is_valid and value.name != str(value):
        return f"{value} ({value.name})"
    if isinstance(value, bytes | bytearray):
        return f"<{len(value)} bytes>"
    return str(value)


def _length(value: object) -> int:
    try:
        return len(value)  # type: ignore[arg-type]
    except TypeError:
        return 0


def _flat(value: object) -> str:
    """One line: line breaks become ⏎, other control characters become �."""
    text = _LINE_BREAKS.sub(" ⏎ ", str(value))
    return _CONTROL.sub("\ufffd", text)


def _shortened(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _plain_tooltip(text: str) -> str:
    """Tooltip markup that shows ``text`` literally.

    Qt guesses whether a tooltip is rich text; escaping alone would make it show ``&lt;``
    when the guess is "plain", so the text is escaped *and* marked as rich text.
    """
    return f"<qt>{html.escape(text, quote=False)}</qt>"


def _tag_text(tag: BaseTag) -> str:
    return f"({tag.group:04X},{tag.element:04X})"


def _row(tag: str, name: str, vr: str, value: str, search: str = "") -> list[QStandardItem]:
    items = []
    for text in (tag, name, vr, value):
        item = QStandardItem(text)  # plain text: markup in values is shown literally
        item.setEditable(False)
        items.append(item)
    if search:
        items[COL_TAG].setData(search, ROLE_SEARCH)
    return items


def _set_tooltip(row: list[QStandardItem], element: DataElement) -> None:
    """The dictionary name (``Patient's Name``) over the keyword column."""
    if not element.tag.is_private:
        row[COL_NAME].setToolTip(_plain_tooltip(element.name))
