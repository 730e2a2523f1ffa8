"""The annotations of the current series as an evented model with undo/redo.

Views never keep their own list: the slice views draw ``store.annotations``, the measurement
panel lists them, and both change them only through the store, which records every change on
its :class:`~radview.core.undo.UndoStack` and then emits ``changed`` (DESIGN rule 2).
:meth:`AnnotationStore.load` is how annotations read from disk arrive: it replaces the list
and forgets the history, so there is nothing to undo right after opening a series.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from psygnal import Signal

from radview.core.annotations import Annotation
from radview.core.undo import DEFAULT_UNDO_LIMIT, FunctionCommand, UndoStack

__all__ = ["AnnotationStore"]


class AnnotationStore:
    """An ordered list of annotations with undoable edits and a selection.

    Parameters
    ----------
    undo_limit
        Maximum number of undo steps kept.

    Signals
    -------
    changed(tuple[Annotation, ...])
        After every change of the list (add, remove, edit, clear, load, undo, redo); carries
        the new list.
    selected_id_changed(str | None)
        After :attr:`selected_id` changed, also when the selected annotation went away.
    """

    changed = Signal(tuple)
    selected_id_changed = Signal(object)

    def __init__(self, undo_limit: int = DEFAULT_UNDO_LIMIT) -> None:
        self._items: list[Annotation] = []
        self._selected_id: str | None = None
        self._history = UndoStack(undo_limit)

    # ------------------------------------------------------------------ reading
    @property
    def annotations(self) -> tuple[Annotation, ...]:
        """The annotations in the order they were added."""
        return tuple(self._items)

    def get(self, annotation_id: str) -> Annotation | None:
        """The annotation with this id, or None."""
        return next((a for a in self._items if a.id == annotation_id), None)

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[Annotation]:
        return iter(tuple(self._items))

    def __contains__(self, annotation_id: object) -> bool:
        return any(a.id == annotation_id for a in self._items)

    # ------------------------------------------------------------------ undoable edits
    def add(self, annotation: Annotation) -> None:
        """Append ``annotation`` (undoable).

        Raises
        ------
        ValueError
            An annotation with the same id is already in the store.
        """
        if not isinstance(annotation, Annotation):
            raise TypeError(f"expected an Annotation, got {type(annotation).__name__}")
        if annotation.id in self:
            raise ValueError(f"annotation {annotation.id} is already in the store")
        position = len(self._items)
        self._history.push(
            FunctionCommand(
                f"add {annotation.kind.value}",
                lambda: self._insert(position, annotation),
                lambda: self._delete(annotation.id),
            )
        )

    def remove(self, annotation_id: str) -> None:
        """Delete the annotation with this id (undoable; undo puts it back in its place).

        Raises
        ------
        KeyError
            No annotation has this id.
        """
        position = self._position(annotation_id)
        annotation = self._items[position]
        self._history.push(
            FunctionCommand(
                f"delete {annotation.kind.value}",
                lambda: self._delete(annotation_id),
                lambda: self._insert(position, annotation),
            )
        )

    def replace(self, annotation: Annotation) -> None:
        """Put ``annotation`` in place of the stored one with the same id (an edit; undoable).

        Replacing an annotation by an equal one changes nothing and records no step.

        Raises
        ------
        KeyError
            No annotation has ``annotation.id``.
        """
        if not isinstance(annotation, Annotation):
            raise TypeError(f"expected an Annotation, got {type(annotation).__name__}")
        position = self._position(annotation.id)
        before = self._items[position]
        if before == annotation:
            return
        self._history.push(
            FunctionCommand(
                f"edit {annotation.kind.value}",
                lambda: self._set(position, annotation),
                lambda: self._set(position, before),
            )
        )

    def clear(self) -> None:
        """Delete all annotations (one undoable step; nothing happens if there are none)."""
        if not self._items:
            return
        before = list(self._items)
        self._history.push(
            FunctionCommand(
                "delete all annotations",
                lambda: self._set_all([]),
                lambda: self._set_all(before),
            )
        )

    # ------------------------------------------------------------------ history
    def undo(self) -> bool:
        """Undo the last edit; False if there was nothing to undo."""
        return self._history.undo()

    def redo(self) -> bool:
        """Redo the last undone edit; False if there was nothing to redo."""
        return self._history.redo()

    @property
    def can_undo(self) -> bool:
        return self._history.can_undo

    @property
    def can_redo(self) -> bool:
        return self._history.can_redo

    @property
    def undo_text(self) -> str:
        """What :meth:`undo` would undo (``"delete ruler"``), or ``""``."""
        return self._history.undo_text

    @property
    def redo_text(self) -> str:
        return self._history.redo_text

    # ------------------------------------------------------------------ not undoable
    def load(self, annotations: Iterable[Annotation]) -> None:
        """Replace everything with ``annotations`` (read from disk, or a new series).

        Not an edit: the undo history is forgotten and the selection cleared.

        Raises
        ------
        ValueError
            Two annotations share an id.
        """
        items = list(annotations)
        ids = [a.id for a in items]
        if len(set(ids)) != len(ids):
            raise ValueError("annotations to load have duplicate ids")
        self._history.clear()
        had_selection = self._selected_id is not None
        self._selected_id = None
        self._set_all(items)
        if had_selection:
            self.selected_id_changed.emit(None)

    # ------------------------------------------------------------------ selection
    @property
    def selected_id(self) -> str | None:
        """The id of the selected annotation, or None."""
        return self._selected_id

    @selected_id.setter
    def selected_id(self, annotation_id: str | None) -> None:
        if annotation_id is not None and annotation_id not in self:
            raise KeyError(f"no annotation {annotation_id!r} to select")
        self._select(annotation_id)

    @property
    def selected(self) -> Annotation | None:
        """The selected annotation, or None."""
        return None if self._selected_id is None else self.get(self._selected_id)

    # ------------------------------------------------------------------ primitives
    # The commands call only these; each leaves the store consistent and emits once.
    def _position(self, annotation_id: str) -> int:
        for position, annotation in enumerate(self._items):
            if annotation.id == annotation_id:
                return position
        raise KeyError(f"no annotation {annotation_id!r}")

    def _insert(self, position: int, annotation: Annotation) -> None:
        self._items.insert(position, annotation)
        self._emit_changed()

    def _delete(self, annotation_id: str) -> None:
        del self._items[self._position(annotation_id)]
        self._emit_changed()

    def _set(self, position: int, annotation: Annotation) -> None:
        self._items[position] = annotation
        self._emit_changed()

    def _set_all(self, annotations: list[Annotation]) -> None:
        self._items = list(annotations)
        self._emit_changed()

    def _emit_changed(self) -> None:
        # The selection is fixed before anyone hears of the change, so a listener of
        # `changed` never sees a selected id that is not in the list.
        lost_selection = self._selected_id is not None and self._selected_id not in self
        if lost_selection:
            self._selected_id = None
        self.changed.emit(self.annotations)
        if lost_selection:
            self.selected_id_changed.emit(None)

    def _select(self, annotation_id: str | None) -> None:
        if annotation_id == self._selected_id:
            return
        self._selected_id = annotation_id
        self.selected_id_changed.emit(annotation_id)
