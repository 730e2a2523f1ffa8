"""Connecting widgets to the evented state for exactly as long as the widget lives."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from PySide6.QtCore import QObject

__all__ = ["bind_while_alive"]


def bind_while_alive(widget: QObject, handlers: Iterable[tuple[Any, Callable]]) -> None:
    """Connect each psygnal ``(signal, handler)`` pair and disconnect them all when ``widget``'s
    C++ object is destroyed.

    The state usually outlives the widget (a closed panel, a rebuilt view); without this,
    psygnal would keep calling into a deleted widget.
    """
    pairs = list(handlers)
    for signal, handler in pairs:
        signal.connect(handler)

    def disconnect(*_: object) -> None:
        for signal, handler in pairs:
            signal.disconnect(handler)

    widget.destroyed.connect(disconnect)
