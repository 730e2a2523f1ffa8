"""The GUI's composition root: builds the state, the index and the window, and wires them.

Nothing here is global: everything the window needs is created in :func:`build_main_window` and
passed down (DESIGN rule 12), so tests can build a window with a temporary index and settings.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

__all__ = ["build_main_window", "run_gui"]

log = logging.getLogger(__name__)

ORGANISATION = "radview"
APPLICATION = "radview"


def _qt_application():
    from PySide6.QtWidgets import QApplication

    app = QApplication.instance()
    if app is None:
        QApplication.setOrganizationName(ORGANISATION)
        QApplication.setApplicationName(APPLICATION)
        app = QApplication(sys.argv[:1])
        from radview.viewer.theme import apply_dark_theme

        apply_dark_theme(app)
    return app


def build_main_window(*, index_path: Path | None = None, settings=None):
    """A fully wired MainWindow (not shown). The caller owns the QApplication's event loop."""
    import pyqtgraph as pg
    from PySide6.QtCore import QSettings

    from radview.core.annotation_store import AnnotationStore
    from radview.core.viewer_state import ViewerState
    from radview.io.decoder_pool import DecoderPool
    from radview.io.study_index import StudyIndex
    from radview.viewer.main_window import MainWindow

    _qt_application()
    # Row-major: image arrays are (rows, columns), as numpy and our Volume slices are.
    pg.setConfigOptions(imageAxisOrder="row-major", antialias=True)
    if settings is None:
        settings = QSettings(ORGANISATION, APPLICATION)
    index = StudyIndex.open(index_path)
    decoder_pool = DecoderPool()  # started on the first compressed series, shut down on close
    window = MainWindow(ViewerState(), AnnotationStore(), index, settings, decoder_pool)
    window.destroyed.connect(lambda *_: index.close())
    return window


def run_gui(path: Path | None = None, *, labels: Path | None = None, layout: str | None = None,
            screenshot: Path | None = None) -> int:
    """Run the viewer; with ``screenshot``, save a PNG once the series is shown, then exit."""
    from PySide6.QtCore import QTimer

    from radview.core.viewer_state import Layout

    app = _qt_application()
    window = build_main_window()
    if layout is not None:
        window.state.layout = Layout(layout)
    window.resize(1600, 900)
    window.show()
    outcome = {"code": 0}

    if screenshot is not None:
        def save_and_quit() -> None:
            from radview.viewer.screenshot import save_png_atomically

            if save_png_atomically(window.grab(), screenshot):
                log.info("screenshot saved to %s", screenshot)
            else:
                print(f"radview: {screenshot}: could not save the screenshot", file=sys.stderr)
                outcome["code"] = 2
            app.quit()

        def on_failed(message: str) -> None:
            print(f"radview: {message}", file=sys.stderr)
            outcome["code"] = 2
            app.quit()

        # Let the views paint the final state before grabbing.
        window.series_shown.connect(lambda: QTimer.singleShot(400, save_and_quit))
        window.open_failed.connect(on_failed)
        if path is None:
            QTimer.singleShot(400, save_and_quit)
    if path is not None:
        window.open_paths([path], labels=labels)
    app.exec()
    return outcome["code"]


def offscreen_if_headless() -> None:
    """Use Qt's offscreen platform when there is no display (CI, ssh) and none was chosen."""
    if sys.platform.startswith("linux") and not os.environ.get("DISPLAY") \
            and not os.environ.get("WAYLAND_DISPLAY"):
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
