"""A small undo stack of commands with ``do`` / ``undo`` (Qt's QUndoStack, without Qt).

A command is pushed instead of making its change directly: :meth:`UndoStack.push` runs its
``do``, so the same code makes the change the first time and on every redo, and the two can
never drift apart.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

__all__ = ["Command", "FunctionCommand", "UndoStack", "DEFAULT_UNDO_LIMIT"]

#: How many steps are kept; the oldest is forgotten first.
DEFAULT_UNDO_LIMIT = 100


class Command(Protocol):
    """Something that can be done and undone; ``text`` names it for a menu (``"add ruler"``)."""

    text: str

    def do(self) -> None: ...

    def undo(self) -> None: ...


@dataclass(frozen=True)
class FunctionCommand:
    """A command made of two callables."""

    text: str
    do_function: Callable[[], None]
    undo_function: Callable[[], None]

    def do(self) -> None:
        self.do_function()

    def undo(self) -> None:
        self.undo_function()


class UndoStack:
    """Done commands (to undo) and undone ones (to redo), at most ``limit`` of the former.

    Parameters
    ----------
    limit
        Maximum number of undo steps kept; pushing more forgets the oldest.
    """

    def __init__(self, limit: int = DEFAULT_UNDO_LIMIT) -> None:
        if limit < 1:
            raise ValueError(f"undo limit must be at least 1, got {limit}")
        self._done: deque[Command] = deque(maxlen=limit)
        self._undone: list[Command] = []

    @property
    def limit(self) -> int:
        return self._done.maxlen or 0

    def push(self, command: Command) -> None:
        """Run ``command.do()`` and record it; a new command discards what could be redone.

        If ``do`` raises, the history is as before and the exception propagates.
        """
        # The history is updated *before* the command runs, so whoever the command notifies
        # (a panel enabling its Undo button) already sees can_undo / can_redo as they will be.
        forgotten = self._done[0] if len(self._done) == self._done.maxlen else None
        undone = self._undone
        self._done.append(command)
        self._undone = []
        try:
            command.do()
        except BaseException:
            self._done.pop()
            if forgotten is not None:
                self._done.appendleft(forgotten)
            self._undone = undone
            raise

    def undo(self) -> bool:
        """Undo the last command; False if there was none."""
        if not self._done:
            return False
        command = self._done.pop()
        self._undone.append(command)
        try:
            command.undo()
        except BaseException:
            self._undone.pop()
            self._done.append(command)
            raise
        return True

    def redo(self) -> bool:
        """Redo the last undone command; False if there was none."""
        if not self._undone:
            return False
        command = self._undone.pop()
        self._done.append(command)
        try:
            command.do()
        except BaseException:
            self._done.pop()
            self._undone.append(command)
            raise
        return True

    def clear(self) -> None:
        """Forget all history (a new series was loaded)."""
        self._done.clear()
        self._undone.clear()

    @property
    def can_undo(self) -> bool:
        return bool(self._done)

    @property
    def can_redo(self) -> bool:
        return bool(self._undone)

    @property
    def undo_text(self) -> str:
        """The text of the command :meth:`undo` would undo, or ``""``."""
        return self._done[-1].text if self._done else ""

    @property
    def redo_text(self) -> str:
        return self._undone[-1].text if self._undone else ""

    def __len__(self) -> int:
        """Number of undoable steps."""
        return len(self._done)
