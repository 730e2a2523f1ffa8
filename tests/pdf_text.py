"""The text of a PDF as a reader gets it (poppler's pdftotext), for tests that check what a
report says. Without poppler-utils the calling test is skipped, which CI
(RADVIEW_REQUIRE_TOOLS=1, tests/conftest.py) turns into a failure: the check never silently
does nothing."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest


def pdf_text(path: Path) -> str:
    """``pdftotext`` of ``path`` (UTF-8, reading order)."""
    if shutil.which("pdftotext") is None:
        pytest.skip("pdftotext (poppler-utils) is not installed")
    return subprocess.run(["pdftotext", "-enc", "UTF-8", str(path), "-"], check=True,
                          capture_output=True, text=True, timeout=60).stdout


def pdf_words(path: Path) -> str:
    """:func:`pdf_text` with every run of whitespace collapsed to one space (line breaks in a
    wrapped sentence do not matter)."""
    return " ".join(pdf_text(path).split())
