"""GUI test setup: offscreen Qt, pyqtgraph's row-major images, every test here marked ``gui``.

The platform must be chosen before the first QApplication exists, so it is set at import time
(``setdefault``: a developer may still run the tests on a real display with
``QT_QPA_PLATFORM=xcb``). ``app.py`` sets the same pyqtgraph option in the application.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

_HERE = Path(__file__).resolve().parent

if os.environ.get("RADVIEW_BLOCK_QT") == "1":
    # Qt is made unimportable (`make test-headless`): nothing here can even be imported.
    collect_ignore_glob = ["test_*.py"]
else:
    import pyqtgraph as pg

    pg.setConfigOptions(imageAxisOrder="row-major")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # Conftest hooks see the whole session's items: mark only the ones under this folder.
    for item in items:
        if _HERE in item.path.resolve().parents:
            item.add_marker(pytest.mark.gui)
