"""Suite-wide fixtures and the "Qt absent" mode used by `make test-headless`."""

from __future__ import annotations

import importlib.abc
import os
import sys

import pytest

_QT_MODULES = ("PySide6", "shiboken6", "pyqtgraph")


class _BlockQt(importlib.abc.MetaPathFinder):
    """Makes Qt unimportable, so non-GUI code is proven to run where Qt is not installed."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname.split(".")[0] in _QT_MODULES:
            raise ModuleNotFoundError(f"{fullname} is blocked (RADVIEW_BLOCK_QT=1)")
        return None


if os.environ.get("RADVIEW_BLOCK_QT") == "1":
    for name in list(sys.modules):
        if name.split(".")[0] in _QT_MODULES:
            del sys.modules[name]
    sys.meta_path.insert(0, _BlockQt())


@pytest.fixture(autouse=True)
def _isolated_user_data(tmp_path_factory, monkeypatch):
    """Nothing a test does may land in the real user data dir."""
    monkeypatch.setenv("RADVIEW_DATA_DIR", str(tmp_path_factory.mktemp("userdata")))
