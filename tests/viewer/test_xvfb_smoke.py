"""The real application under a real X server (Debian's Xvfb): it starts, shows the sample
study in a window, saves a screenshot and exits cleanly."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time

import pytest

pytestmark = [
    pytest.mark.external,
    pytest.mark.skipif(shutil.which("Xvfb") is None, reason="Debian package xvfb not installed"),
]


@pytest.fixture
def x_display():
    display = ":97"
    server = subprocess.Popen(["Xvfb", display, "-screen", "0", "1920x1080x24", "-nolisten",
                               "tcp"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while not os.path.exists(f"/tmp/.X11-unix/X{display[1:]}"):
            if time.monotonic() > deadline or server.poll() is not None:
                pytest.fail("Xvfb did not start")
            time.sleep(0.05)
        yield display
    finally:
        server.terminate()
        server.wait(10)


def test_app_starts_shows_sample_and_exits_cleanly(x_display, tmp_path):
    sample = tmp_path / "sample"
    subprocess.run([sys.executable, "-m", "radview.cli", "sample", "--out", str(sample),
                    "--matrix", "128", "--slices", "32"], check=True, timeout=120)
    env = dict(os.environ, DISPLAY=x_display, QT_QPA_PLATFORM="xcb",
               RADVIEW_DATA_DIR=str(tmp_path / "data"), HOME=str(tmp_path))
    shot = tmp_path / "window.png"
    result = subprocess.run(
        [sys.executable, "-m", "radview.cli", "view", str(sample / "dicom"), "--labels",
         str(sample / "truth" / "labels.nii.gz"), "--screenshot", str(shot)],
        env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert shot.stat().st_size > 20_000  # a real picture of the window, not an empty file
