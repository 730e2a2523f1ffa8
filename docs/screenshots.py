"""Regenerate the screenshots in docs/ (run: python -m docs.screenshots, needs no display).

The sample study at full size, the crosshair on its largest lesion, a ruler across it, the
label overlay on: what a radiologist sees after `make run` and one measurement.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


def main() -> int:
    from PySide6.QtCore import QSettings
    from PySide6.QtWidgets import QApplication

    from radview.app import build_main_window
    from radview.core.annotations import Annotation, AnnotationKind
    from radview.core.volume import ViewPlane
    from radview.io.sample_study import write_sample_study

    out = Path(__file__).resolve().parent
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        os.environ["RADVIEW_DATA_DIR"] = str(scratch / "data")
        sample = write_sample_study(scratch / "sample")
        settings = QSettings(str(scratch / "settings.ini"), QSettings.Format.IniFormat)
        window = build_main_window(index_path=scratch / "index.sqlite3", settings=settings)
        window.resize(1600, 900)
        window.show()
        app = QApplication.instance()
        shown, indexed = [], []
        window.series_shown.connect(lambda: shown.append(True))
        window.browser.import_finished.connect(lambda *_: indexed.append(True))
        window.open_paths([sample.dicom_dir], labels=sample.labels_nifti)
        while not (shown and indexed):  # the series on screen and in the study browser
            app.processEvents()
        lesions = json.loads(sample.lesions_json.read_text())["lesions"]
        largest = max(lesions, key=lambda lesion: lesion["volume_ml"])
        x, y, z = largest["centre_lps_mm"]
        half = largest["diameters_mm"][0] / 2
        window.state.cursor = (x, y, z)
        index = window.state.slice_index(ViewPlane.AXIAL)
        window.viewport.annotation_created.emit(Annotation(
            AnnotationKind.RULER, ViewPlane.AXIAL, index, ((x - half, y, z), (x + half, y, z))))
        for _ in range(20):
            app.processEvents()
        window.grab().save(str(out / "screenshot-1x3.png"))
        window.close()
    print(f"wrote {out / 'screenshot-1x3.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
