"""A long-lived pool of decoder processes, owned by the application.

Compressed frames are decoded in worker processes because the codecs hold the GIL. Starting two
spawned workers costs ~0.4 s (benchmarks/README.md), which a one-shot command pays once but a
viewer would pay on every series it opens. The application therefore owns one pool, started on
first use and shut down on exit; ``load_stack`` borrows it.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
from concurrent.futures import Executor, ProcessPoolExecutor

__all__ = ["DecoderPool"]


def _warm_up() -> bool:
    """Import the decoders in a worker so the first real frame does not pay for it."""
    import pydicom.pixels  # noqa: F401

    import radview.io.dicom_pixels  # noqa: F401

    return True


class DecoderPool:
    def __init__(self, workers: int | None = None) -> None:
        self.workers = workers or os.cpu_count() or 1
        self._pool: ProcessPoolExecutor | None = None
        # Loads run in worker threads and may overlap (a cancelled one winding down while the
        # next starts): creating or replacing the pool must happen once.
        self._lock = threading.Lock()

    def executor(self) -> Executor:
        """The pool, started (and warmed up) on first use, restarted if a codec crashed it."""
        with self._lock:
            # ProcessPoolExecutor has no public "is broken" query; a crashed worker sets
            # _broken and every later submit would fail, so a broken pool is replaced.
            if self._pool is not None and getattr(self._pool, "_broken", False):
                self._pool.shutdown(wait=False, cancel_futures=True)
                self._pool = None
            if self._pool is None:
                context = multiprocessing.get_context("spawn")  # fork is unsafe beside Qt
                self._pool = ProcessPoolExecutor(max_workers=self.workers, mp_context=context)
                for _ in range(self.workers):
                    self._pool.submit(_warm_up)
            return self._pool

    def start(self) -> None:
        """Start the workers now (e.g. while the user is still choosing a series)."""
        self.executor()

    def shutdown(self) -> None:
        with self._lock:
            if self._pool is not None:
                self._pool.shutdown(wait=True, cancel_futures=True)
                self._pool = None
