"""TaskRunner: outcomes, GUI-thread delivery, throttled progress, cancellation, clean-up."""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import logging
import threading
import time

import pytest
import shiboken6
from PySide6.QtCore import QObject, QThread
from PySide6.QtWidgets import QApplication

from radview.core.errors import LoadCancelled, NotDicomError
from radview.viewer.workers import TaskRunner

pytestmark = pytest.mark.gui


def _slow_count(n: int, *, progress, cancel, delay: float = 0.002) -> int:
    """A long pure function in the project's style: polls cancel, reports every step."""
    for i in range(n):
        if cancel():
            raise LoadCancelled("counting cancelled")
        time.sleep(delay)
        progress(i + 1, n)
    return n


@pytest.fixture
def runners():
    """Runners made by a test; each is cancelled and joined afterwards."""
    made: list[TaskRunner] = []
    yield made
    for runner in made:
        if shiboken6.isValid(runner):
            runner.cancel()
            runner.wait(5000)


def _start(runners, runner: TaskRunner) -> TaskRunner:
    runners.append(runner)
    runner.start()
    return runner


def test_finished_delivers_the_result(qtbot, runners):
    runner = TaskRunner(lambda progress, cancel, emit: {"answer": 42})
    with qtbot.waitSignal(runner.finished, timeout=5000) as blocker:
        _start(runners, runner)
    assert blocker.args == [{"answer": 42}]
    assert runner.outcome == "finished"
    assert not runner.is_running()


def test_for_function_passes_keyword_callbacks(qtbot, runners):
    runner = TaskRunner.for_function(_slow_count, 20, delay=0.0)
    with qtbot.waitSignal(runner.finished, timeout=5000) as blocker:
        _start(runners, runner)
    assert blocker.args == [20]


def test_radview_error_becomes_failed_with_its_one_line_message(qtbot, runners):
    def bad(progress, cancel, emit):
        raise NotDicomError("/scans/x.dcm", "not a DICOM file")

    runner = TaskRunner(bad)
    with qtbot.waitSignal(runner.failed, timeout=5000) as blocker:
        _start(runners, runner)
    assert blocker.args == ["/scans/x.dcm: not a DICOM file"]
    assert runner.outcome == "failed"


def test_oserror_becomes_a_one_line_failure(qtbot, runners):
    def bad(progress, cancel, emit):
        raise PermissionError(13, "Permission denied", "/scans/locked")

    runner = TaskRunner(bad)
    with qtbot.waitSignal(runner.failed, timeout=5000) as blocker:
        _start(runners, runner)
    assert blocker.args == ["/scans/locked: Permission denied"]


def test_a_bug_is_logged_with_traceback_and_reported_as_internal_error(qtbot, runners, caplog):
    def buggy(progress, cancel, emit):
        return {}["missing\nkey"]

    runner = TaskRunner(buggy, name="buggy job")
    with (
        caplog.at_level(logging.ERROR, logger="radview.viewer.workers"),
        qtbot.waitSignal(runner.failed, timeout=5000) as blocker,
    ):
        _start(runners, runner)
    message = blocker.args[0]
    assert message.startswith("internal error: KeyError")
    assert "\n" not in message
    record = next(r for r in caplog.records if "buggy job" in r.getMessage())
    assert record.exc_info is not None and record.exc_info[0] is KeyError


def test_signals_arrive_on_the_gui_thread(qtbot, runners):
    gui = QApplication.instance().thread()
    seen: dict[str, bool] = {}
    worker_threads: list[QThread] = []

    def job(progress, cancel, emit):
        worker_threads.append(QThread.currentThread())
        progress(1, 2)
        emit("first")
        progress(2, 2)
        return "done"

    runner = TaskRunner(job)
    runner.progress.connect(lambda d, t: seen.__setitem__("progress", QThread.currentThread()
                                                           is gui))
    runner.item.connect(lambda v: seen.__setitem__("item", QThread.currentThread() is gui))
    runner.finished.connect(lambda r: seen.__setitem__("finished", QThread.currentThread()
                                                       is gui))
    with qtbot.waitSignal(runner.finished, timeout=5000):
        _start(runners, runner)
    assert worker_threads and worker_threads[0] is not gui
    assert seen == {"progress": True, "item": True, "finished": True}


def test_streamed_items_keep_their_order(qtbot, runners):
    def job(progress, cancel, emit):
        for index in range(50):
            emit(index)
        emit("two", "values")
        return None

    runner = TaskRunner(job)
    items: list[object] = []
    runner.item.connect(items.append)
    with qtbot.waitSignal(runner.finished, timeout=5000):
        _start(runners, runner)
    assert items == [*range(50), ("two", "values")]


def test_progress_is_throttled_but_the_last_value_arrives(qtbot, runners):
    def job(progress, cancel, emit):
        for done in range(1, 20_001):
            progress(done, 20_000)  # far faster than anyone could watch
        return None

    runner = TaskRunner(job)
    values: list[tuple[int, int]] = []
    runner.progress.connect(lambda d, t: values.append((d, t)))
    with qtbot.waitSignal(runner.finished, timeout=10_000):
        _start(runners, runner)
    assert values, "progress was never delivered"
    assert values[-1] == (20_000, 20_000)
    assert len(values) < 100
    assert values == sorted(values)


def test_progress_held_back_by_throttling_is_flushed_before_the_end(qtbot, runners):
    def job(progress, cancel, emit):
        progress(0, 10)
        progress(7, 10)  # within the throttle interval: held back, then flushed
        return None

    runner = TaskRunner(job)
    values: list[tuple[int, int]] = []
    runner.progress.connect(lambda d, t: values.append((d, t)))
    with qtbot.waitSignal(runner.finished, timeout=5000):
        _start(runners, runner)
    assert values[-1] == (7, 10)


def test_cancel_stops_a_long_task(qtbot, runners):
    runner = TaskRunner.for_function(_slow_count, 100_000, delay=0.001)  # ~2 minutes if run out
    finished: list[object] = []
    runner.finished.connect(finished.append)
    values: list[int] = []
    runner.progress.connect(lambda d, t: values.append(d))
    _start(runners, runner)
    qtbot.waitUntil(lambda: bool(values), timeout=5000)
    started = time.monotonic()
    with qtbot.waitSignal(runner.cancelled, timeout=5000):
        runner.cancel()
    assert time.monotonic() - started < 2.0
    assert runner.wait(1000)
    assert runner.outcome == "cancelled"
    assert finished == []
    assert values[-1] < 100_000


def test_cancel_before_start_runs_nothing(qtbot, runners):
    called = threading.Event()

    def job(progress, cancel, emit):
        called.set()

    runner = TaskRunner(job)
    runner.cancel()
    with qtbot.waitSignal(runner.cancelled, timeout=5000):
        _start(runners, runner)
    assert not called.is_set()


def test_finished_when_cancel_comes_too_late(qtbot, runners):
    started, release = threading.Event(), threading.Event()

    def job(progress, cancel, emit):
        started.set()
        release.wait(5)
        return "committed"  # never polls cancel again: its work is done

    runner = TaskRunner(job)
    _start(runners, runner)
    assert started.wait(5)
    runner.cancel()
    with qtbot.waitSignal(runner.finished, timeout=5000) as blocker:
        release.set()
    assert blocker.args == ["committed"]


def test_exactly_one_outcome_signal(qtbot, runners):
    outcomes: list[str] = []
    runner = TaskRunner.for_function(_slow_count, 5, delay=0.0)
    runner.finished.connect(lambda r: outcomes.append("finished"))
    runner.failed.connect(lambda m: outcomes.append("failed"))
    runner.cancelled.connect(lambda: outcomes.append("cancelled"))
    with qtbot.waitSignal(runner.finished, timeout=5000):
        _start(runners, runner)
    runner.start()  # a second start is ignored
    qtbot.wait(50)
    assert outcomes == ["finished"]


def test_wait_blocks_until_the_function_returned(qtbot, runners):
    runner = TaskRunner.for_function(_slow_count, 50, delay=0.002)
    _start(runners, runner)
    assert runner.wait(5000)
    assert runner.wait(0)  # already returned: True at once
    with qtbot.waitSignal(runner.finished, timeout=5000):
        pass


def test_deleting_the_parent_cancels_and_joins_the_worker(qtbot):
    parent = QObject()
    returned = threading.Event()

    def job(progress, cancel, emit):
        try:
            while not cancel():
                time.sleep(0.005)
            raise LoadCancelled("stopped")
        finally:
            returned.set()

    runner = TaskRunner(job, parent)
    runner.start()
    time.sleep(0.05)
    started = time.monotonic()
    shiboken6.delete(parent)  # no "QThread destroyed while running", no hang
    assert returned.is_set()
    assert time.monotonic() - started < 2.0
    qtbot.wait(20)  # the queued outcome of a deleted runner is dropped harmlessly


def test_about_to_quit_cancels_and_waits(qtbot, runners):
    returned = threading.Event()

    def job(progress, cancel, emit):
        while not cancel():
            time.sleep(0.005)
        returned.set()
        raise LoadCancelled("stopped")

    runner = _start(runners, TaskRunner(job))
    time.sleep(0.02)
    runner._on_about_to_quit()  # what QCoreApplication.aboutToQuit triggers
    assert returned.is_set()
    with qtbot.waitSignal(runner.cancelled, timeout=5000):
        pass
