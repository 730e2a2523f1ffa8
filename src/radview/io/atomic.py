"""Atomic file output: nothing is ever left half-written under its final name.

Every writer in radview (DICOM, NIfTI, JSON, reports) goes through :func:`atomic_write`: the data
goes to a hidden temporary file in the *same* folder (so the final rename cannot cross file
systems), is flushed and fsynced, and only then replaces the target with ``os.replace``. On any
error, including a full disk or a cancel, the temporary file is removed and the target is
untouched.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

__all__ = ["atomic_write", "write_bytes_atomically", "fsync_directory"]


@contextmanager
def atomic_write(path: Path, *, fsync: bool = True) -> Iterator[BinaryIO]:
    """Open a temporary file for writing; on success it becomes ``path``."""
    path = Path(path)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(temporary, "wb") as handle:
            yield handle
            if fsync:
                handle.flush()
                os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def write_bytes_atomically(path: Path, data: bytes, *, fsync: bool = True) -> None:
    with atomic_write(path, fsync=fsync) as handle:
        handle.write(data)


def fsync_directory(folder: Path) -> None:
    """Make renames in ``folder`` durable too (a no-op where directories cannot be opened)."""
    if os.name != "posix":
        return
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
