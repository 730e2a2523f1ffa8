"""Saving window pictures: atomically, and saying whether it worked."""

from __future__ import annotations

import os
from pathlib import Path

from PySide6.QtGui import QPixmap

__all__ = ["save_png_atomically"]


def save_png_atomically(pixmap: QPixmap, path: Path) -> bool:
    """Write ``pixmap`` as PNG to ``path`` via a temporary file; False if it could not be saved.

    QPixmap.save writes in place and only returns False on failure, so a full disk or a missing
    folder would otherwise leave a truncated file or pass unnoticed.
    """
    path = Path(path)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp.png")
    try:
        if not pixmap.save(str(temporary), "PNG"):
            return False
        os.replace(temporary, path)
        return True
    except OSError:
        return False
    finally:
        temporary.unlink(missing_ok=True)
