"""Runs inside spawned decoder workers (tests only): makes one file crash the process, as a
faulty codec would, by replacing the decode function in that worker."""

from __future__ import annotations

import os
from pathlib import Path


def install_crash(file_name: str) -> None:
    from radview.io import dicom_pixels

    real = dicom_pixels.decode_frames

    def crashing(path, *args, **kwargs):
        if Path(path).name == file_name:
            os._exit(3)  # no exception, no cleanup: what a segfaulting codec looks like
        return real(path, *args, **kwargs)

    dicom_pixels.decode_frames = crashing
