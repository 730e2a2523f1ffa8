"""Shared builders for DICOM I/O tests: small, real, valid series written by our own writer,
which tests then damage in the specific way each case needs."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from radview.core.volume import Volume


def make_ct_volume(shape=(12, 24, 20), spacing=(0.8, 0.7, 2.5), direction=None,
                   origin=(-10.0, 20.0, -300.0), seed=0) -> Volume:
    """A small CT volume whose voxels are distinct per slice (so order errors show)."""
    rng = np.random.default_rng(seed)
    k = np.arange(shape[0], dtype=np.int16)[:, None, None]
    voxels = (rng.integers(-200, 200, size=shape) + 10 * k).astype(np.int16)
    return Volume(voxels, spacing=spacing, origin=origin,
                  direction=np.eye(3) if direction is None else direction, modality="CT")


def write_series(volume: Volume, folder: Path, **kwargs) -> list[Path]:
    from radview.io.dicom_write import write_dicom_series

    kwargs.setdefault("fsync", False)
    kwargs.setdefault("uid_seed", str(folder))
    return write_dicom_series(volume, folder, **kwargs)


def folder_fingerprint(folder: Path) -> dict[str, tuple[int, int, str]]:
    """(size, mtime_ns, sha256) of every file: proves a folder was not touched."""
    result = {}
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            stat = path.stat()
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            result[str(path.relative_to(folder))] = (stat.st_size, stat.st_mtime_ns, digest)
    return result


@pytest.fixture
def ct_volume() -> Volume:
    return make_ct_volume()


@pytest.fixture
def ct_series(tmp_path, ct_volume) -> tuple[Volume, list[Path]]:
    folder = tmp_path / "ct"
    return ct_volume, write_series(ct_volume, folder)
