"""Files and folders -> everything loadable in them: DICOM stacks and volume files.

This is what "open a folder" means everywhere (command line, viewer, index): scan headers,
group DICOM into stacks, recognise NIfTI/NRRD/MetaImage files by name, and collect one
reason per file that could not be used.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from radview.core.errors import InputFileError, LoadCancelled
from radview.io.dicom_header import FileProblem
from radview.io.dicom_scan import iter_candidate_files, problem_from_error, read_instance_header
from radview.io.dicom_series import SeriesStack, group_series
from radview.io.volume_files import is_volume_file

__all__ = ["Discovery", "discover"]

#: Files that accompany others and are never opened on their own (MetaImage raw data,
#: DICOMDIR lock files, OS clutter); reporting them as "not DICOM" would only be noise.
_COMPANION_SUFFIXES = (".raw", ".zraw", ".img.gz")
_IGNORED_NAMES = {".DS_Store", "Thumbs.db", "desktop.ini"}


@dataclass
class Discovery:
    stacks: list[SeriesStack] = field(default_factory=list)
    volume_files: list[Path] = field(default_factory=list)
    problems: list[FileProblem] = field(default_factory=list)
    files_seen: int = 0


def discover(
    paths: Iterable[Path | str],
    *,
    progress: Callable[[int, int], None] | None = None,
    cancel: Callable[[], bool] | None = None,
) -> Discovery:
    """Scan ``paths`` (files or folders, recursively); never raises for a bad file.

    ``progress(done, total)`` is throttled to 20 calls per second; ``cancel()`` is polled
    between files and raises :class:`LoadCancelled`.
    """
    result = Discovery()
    files: list[Path] = []
    for root in paths:
        files.extend(iter_candidate_files(Path(root), result.problems))
    result.files_seen = len(files)
    headers = []
    last_report = 0.0
    for done, path in enumerate(files, start=1):
        if cancel is not None and cancel():
            raise LoadCancelled("scan cancelled")
        if path.name in _IGNORED_NAMES or path.name.lower().endswith(_COMPANION_SUFFIXES):
            pass  # companion/clutter file: deliberately neither loaded nor reported
        elif is_volume_file(path):
            result.volume_files.append(path)
        else:
            try:
                headers.append(read_instance_header(path))
            except InputFileError as error:
                result.problems.append(problem_from_error(error))
        now = time.monotonic()
        if progress is not None and (now - last_report >= 0.05 or done == len(files)):
            progress(done, len(files))
            last_report = now
    grouping = group_series(headers)
    result.stacks.extend(grouping.stacks)
    result.problems.extend(grouping.problems)
    return result
