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
def _no_shipped_models(request, tmp_path_factory, monkeypatch):
    """Tests see only the models they install, unless marked ``shipped_models``: the trained
    models in ``radview/models_onnx`` would otherwise be chosen over a test's tiny model."""
    if request.node.get_closest_marker("shipped_models") is None:
        empty = tmp_path_factory.mktemp("no-builtin-models")
        monkeypatch.setattr("radview.inference.registry.default_builtin_dir", lambda: empty)


@pytest.fixture(autouse=True)
def _isolated_user_data(tmp_path_factory, monkeypatch):
    """Nothing a test does may land in the real user data dir."""
    monkeypatch.setenv("RADVIEW_DATA_DIR", str(tmp_path_factory.mktemp("userdata")))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """In CI (``RADVIEW_REQUIRE_TOOLS=1``, set by .ci/run) a skipped test is a failure.

    Tests that need Debian peers (dciodvfy, dcm2niix, Xvfb, poppler, mricron-data) skip on a
    developer machine without them; CI installs them all, so a skip there means a check that
    silently did not run.
    """
    outcome = yield
    report = outcome.get_result()
    if report.skipped and os.environ.get("RADVIEW_REQUIRE_TOOLS") == "1" and not hasattr(
        report, "wasxfail"
    ):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        report.outcome = "failed"
        report.longrepr = f"skipped, but RADVIEW_REQUIRE_TOOLS=1 (CI): {reason}"
