"""Run a long pure function off the GUI thread and report back through Qt signals.

The pure functions of ``io`` / ``inference`` / ``report`` take ``progress(done, total)`` and
``cancel() -> bool`` callbacks (DESIGN rule 4). A :class:`TaskRunner` calls one such function
in a worker thread, hands it callbacks that feed its signals, and delivers every signal on the
GUI thread, so slots may touch widgets::

    runner = TaskRunner(lambda progress, cancel, emit: load(stack, progress=progress,
                                                            cancel=cancel, on_start=emit),
                        parent=self)
    runner.finished.connect(self._on_load_finished)
    runner.start()

or, for a function with the usual keyword callbacks, ``TaskRunner.for_function(fn, *args)``.

Threading model
---------------
* The worker thread never touches the runner. It talks to a plain ``_TaskCore`` (cancel flag,
  latest progress) and emits a private ``_Relay`` QObject that lives on the GUI thread; the
  relay's queued signals reach the runner, which emits its public signals on the GUI thread.
* Each runner owns a one-thread ``QThreadPool`` as its *first* child. Qt destroys children in
  creation order, so if the runner's parent is deleted while the function runs, the runner
  first cancels (``destroyed`` fires before the children go) and the pool's destructor waits
  for the function to return before the relay goes away: no "QThread destroyed while running".
* On ``QCoreApplication.aboutToQuit`` a running task is cancelled and waited for, so no worker
  is still running Python while the interpreter shuts down.
* Progress is coalesced: at most one progress event per runner is queued at any time, at most
  every :data:`PROGRESS_INTERVAL_S`, and the last value reported before the function returns
  is always delivered. A function that reports every file cannot flood the event queue.

Outcome signals
---------------
Exactly one of ``finished(result)``, ``failed(message)`` or ``cancelled()`` is emitted:

* ``cancelled`` when the function raised :class:`~radview.core.errors.LoadCancelled`, or when
  it was cancelled before it started;
* ``failed`` with ``str(error)`` for a :class:`~radview.core.errors.RadviewError` (one line
  naming the file), a one-line message for ``OSError`` / ``MemoryError``, and
  ``"internal error: ..."`` for anything else (a bug, logged with its traceback);
* ``finished`` otherwise, even when ``cancel()`` came too late to stop the function: its result
  is then complete and its side effects (a committed index update) happened.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QCoreApplication, QObject, QThreadPool, Signal, Slot

from radview.core.errors import LoadCancelled, RadviewError

__all__ = ["PROGRESS_INTERVAL_S", "TaskRunner"]

log = logging.getLogger(__name__)

ProgressCallback = Callable[[int, int], None]
CancelCallback = Callable[[], bool]
EmitCallback = Callable[..., None]
#: The function a TaskRunner runs: ``fn(progress, cancel, emit) -> result``.
TaskFunction = Callable[[ProgressCallback, CancelCallback, EmitCallback], Any]

#: Minimum time between two progress signals (the value before the end always passes).
PROGRESS_INTERVAL_S = 0.05
#: Longest message a ``failed`` signal carries; longer ones are cut with an ellipsis.
_MAX_MESSAGE = 500

_FINISHED = "finished"
_FAILED = "failed"
_CANCELLED = "cancelled"


class _TaskCore:
    """The state the worker thread may touch: plain Python, guarded by a lock."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.cancel_event = threading.Event()
        self.done_event = threading.Event()
        self.lock = threading.Lock()
        self.latest: tuple[int, int] | None = None
        self.delivered: tuple[int, int] | None = None
        self.progress_queued = False
        self.last_emit = float("-inf")

    def is_cancelled(self) -> bool:
        return self.cancel_event.is_set()

    def request_cancel(self, *_args: object) -> None:
        self.cancel_event.set()


class _Relay(QObject):
    """Lives on the GUI thread and is emitted from the worker, so every connection is queued."""

    progress_ready = Signal()
    item_ready = Signal(object)
    done = Signal(str, object)


class TaskRunner(QObject):
    """Runs one function in a worker thread; its signals arrive on the GUI thread.

    Parameters
    ----------
    fn
        Called once as ``fn(progress, cancel, emit)`` in the worker thread: ``progress(done,
        total)`` reports progress, ``cancel()`` returns True once :meth:`cancel` was called (the
        function should then raise :class:`~radview.core.errors.LoadCancelled`), and
        ``emit(value)`` streams a value to the ``item`` signal. Its return value is the
        ``finished`` payload.
    parent
        Usual QObject parent. Deleting the parent cancels the function and waits for it.
    name
        For log messages; defaults to the function's name.

    Signals
    -------
    progress(done, total)
        Throttled progress.
    item(value)
        A value passed to ``emit`` (one argument) or the tuple of its arguments (several).
    finished(result)
        The function's return value.
    failed(message)
        A one-line message for the user.
    cancelled()
        The function stopped because of :meth:`cancel`.
    """

    progress = Signal(int, int)
    item = Signal(object)
    finished = Signal(object)
    failed = Signal(str)
    cancelled = Signal()

    def __init__(self, fn: TaskFunction, parent: QObject | None = None, *, name: str = "") -> None:
        super().__init__(parent)
        # First child on purpose: see the module docstring (threading model).
        self._pool = QThreadPool(self)
        self._pool.setMaxThreadCount(1)
        self._relay = _Relay(self)
        self._relay.progress_ready.connect(self._on_progress_ready)
        self._relay.item_ready.connect(self._on_item_ready)
        self._relay.done.connect(self._on_done)
        self._fn = fn
        self._core = _TaskCore(name or getattr(fn, "__name__", "task"))
        self._started = False
        #: "finished", "failed" or "cancelled" once the outcome signal was emitted, else None
        self.outcome: str | None = None
        # destroyed() is emitted before the children (the pool) are destroyed: stop the
        # function so the pool's destructor does not wait for a long job to complete.
        self.destroyed.connect(self._core.request_cancel)
        app = QCoreApplication.instance()
        if app is not None:
            app.aboutToQuit.connect(self._on_about_to_quit)

    @classmethod
    def for_function(
        cls,
        fn: Callable[..., Any],
        *args: Any,
        parent: QObject | None = None,
        name: str = "",
        progress_arg: str | None = "progress",
        cancel_arg: str | None = "cancel",
        stream_arg: str | None = None,
        **kwargs: Any,
    ) -> TaskRunner:
        """A runner for ``fn(*args, progress=..., cancel=..., **kwargs)``.

        Parameters
        ----------
        progress_arg, cancel_arg
            Keywords under which ``fn`` takes the callbacks; None leaves one out.
        stream_arg
            Keyword of a callback whose calls become ``item`` signals (``"on_start"``).
        """

        def call(progress: ProgressCallback, cancel: CancelCallback, emit: EmitCallback) -> Any:
            callbacks = dict(kwargs)
            if progress_arg is not None:
                callbacks[progress_arg] = progress
            if cancel_arg is not None:
                callbacks[cancel_arg] = cancel
            if stream_arg is not None:
                callbacks[stream_arg] = emit
            return fn(*args, **callbacks)

        return cls(call, parent, name=name or getattr(fn, "__name__", "task"))

    # ------------------------------------------------------------------ control
    @property
    def name(self) -> str:
        return self._core.name

    def start(self) -> None:
        """Start the function in the worker thread (once; later calls are ignored)."""
        if self._started:
            return
        self._started = True
        core, relay, fn = self._core, self._relay, self._fn
        self._pool.start(lambda: _run(core, relay, fn))

    def cancel(self) -> None:
        """Ask the function to stop; it notices at its next ``cancel()`` poll."""
        self._core.cancel_event.set()

    def is_cancel_requested(self) -> bool:
        return self._core.cancel_event.is_set()

    def is_running(self) -> bool:
        """Started and the outcome signal not emitted yet."""
        return self._started and self.outcome is None

    def wait(self, timeout_ms: int = -1) -> bool:
        """Block until the function has returned in its thread (-1: no time limit).

        The outcome signal is delivered later, by the event loop.

        Returns
        -------
        bool
            False if the function was still running after ``timeout_ms``.
        """
        if not self._started:
            return True
        timeout = None if timeout_ms < 0 else timeout_ms / 1000
        return self._core.done_event.wait(timeout)

    # ------------------------------------------------------------------ slots
    @Slot()
    def _on_about_to_quit(self) -> None:
        self.cancel()
        if self._started and not self.wait(10_000):
            log.warning("background task %s still running at exit", self.name)

    @Slot()
    def _on_progress_ready(self) -> None:
        core = self._core
        with core.lock:
            latest = core.delivered = core.latest
            core.progress_queued = False
        if latest is not None and self.outcome is None:
            self.progress.emit(*latest)

    @Slot(object)
    def _on_item_ready(self, value: object) -> None:
        if self.outcome is None:
            self.item.emit(value)

    @Slot(str, object)
    def _on_done(self, outcome: str, payload: object) -> None:
        if self.outcome is not None:
            return
        self.outcome = outcome
        self._fn = None  # let go of what the function's closure holds (headers, volumes)
        if outcome == _FINISHED:
            self.finished.emit(payload)
        elif outcome == _FAILED:
            self.failed.emit(str(payload))
        else:
            self.cancelled.emit()


# ---------------------------------------------------------------------------- worker side
def _run(core: _TaskCore, relay: _Relay, fn: TaskFunction) -> None:
    """The worker-thread body: call ``fn`` and turn whatever happens into one outcome."""
    outcome, payload = _CANCELLED, None
    try:
        if not core.is_cancelled():
            outcome, payload = _call(core, relay, fn)
        _flush_progress(core, relay)
    finally:
        try:
            relay.done.emit(outcome, payload)  # queued before wait() returns
        finally:
            core.done_event.set()


def _call(core: _TaskCore, relay: _Relay, fn: TaskFunction) -> tuple[str, object]:
    def progress(done: int, total: int) -> None:
        now = time.monotonic()
        with core.lock:
            core.latest = (int(done), int(total))
            due = done >= total or now - core.last_emit >= PROGRESS_INTERVAL_S
            if not due or core.progress_queued:
                return  # a queued event will carry the newest value
            core.progress_queued = True
            core.last_emit = now
        relay.progress_ready.emit()

    def emit(*args: Any) -> None:
        relay.item_ready.emit(args[0] if len(args) == 1 else args)

    try:
        return _FINISHED, fn(progress, core.is_cancelled, emit)
    except LoadCancelled:
        return _CANCELLED, None
    except RadviewError as error:
        return _FAILED, _one_line(str(error))
    except MemoryError:
        log.warning("%s: out of memory", core.name, exc_info=True)
        return _FAILED, f"{core.name}: not enough memory"
    except OSError as error:
        # file system trouble the function did not translate (disk full, drive gone)
        where = f"{error.filename}: " if error.filename else ""
        return _FAILED, _one_line(f"{where}{error.strerror or error}")
    except Exception as error:
        # a bug: keep the traceback for the log, keep the application running
        log.exception("background task %s failed", core.name)
        return _FAILED, _one_line(f"internal error: {type(error).__name__}: {error}")


def _flush_progress(core: _TaskCore, relay: _Relay) -> None:
    """Queue the last progress value if throttling held it back."""
    with core.lock:
        if core.latest is None or core.progress_queued or core.latest == core.delivered:
            return
        core.progress_queued = True
    relay.progress_ready.emit()


def _one_line(text: str) -> str:
    line = " ".join(text.split())
    return line if len(line) <= _MAX_MESSAGE else line[: _MAX_MESSAGE - 1] + "…"
