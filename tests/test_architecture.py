"""The layering rules of DESIGN.md, checked on the installed code."""

import os
import subprocess
import sys

import pytest


def test_non_gui_packages_import_without_qt():
    # A fresh interpreter with Qt blocked imports every non-viewer package.
    code = (
        "import importlib.abc, sys\n"
        "class B(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('PySide6', 'shiboken6', 'pyqtgraph'):\n"
        "            raise ModuleNotFoundError(name)\n"
        "sys.meta_path.insert(0, B())\n"
        "import radview.core, radview.io.discover, radview.io.dicom_load, radview.cli\n"
        "import radview.io.volume_files, radview.io.study_index\n"
        "print('ok')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


@pytest.mark.skipif(os.environ.get("RADVIEW_BLOCK_QT") == "1", reason="checks the blocker itself")
def test_qt_blocker_blocks():
    code = (
        "import os; os.environ['RADVIEW_BLOCK_QT'] = '1'\n"
        "import runpy, sys; sys.path.insert(0, 'tests')\n"
        "import conftest\n"
        "try:\n    import PySide6\nexcept ModuleNotFoundError as e:\n    print('blocked')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            cwd=os.path.dirname(os.path.dirname(__file__)))
    assert "blocked" in result.stdout, result.stderr


def test_a_skip_fails_when_tools_are_required(tmp_path):
    """CI sets RADVIEW_REQUIRE_TOOLS=1: a check that silently skipped would be a hidden gap."""
    (tmp_path / "test_probe.py").write_text(
        "import pytest\n\ndef test_needs_a_tool():\n    pytest.skip('tool not installed')\n")
    root = os.path.dirname(os.path.dirname(__file__))
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p",
               "tests.conftest", str(tmp_path / "test_probe.py")]
    relaxed = subprocess.run(command, cwd=root, capture_output=True, text=True,
                             env=dict(os.environ, RADVIEW_REQUIRE_TOOLS=""))
    strict = subprocess.run(command, cwd=root, capture_output=True, text=True,
                            env=dict(os.environ, RADVIEW_REQUIRE_TOOLS="1"))
    assert relaxed.returncode == 0, relaxed.stdout
    assert strict.returncode == 1 and "tool not installed" in strict.stdout, strict.stdout
