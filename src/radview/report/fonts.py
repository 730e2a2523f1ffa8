"""TrueType fonts for reports: found on the system, embedded as subsets, with per-run fallback.

A report prints names from DICOM headers, which may be in any script ('Müller^Zoë',
'山田^太郎', 'Ωμέγα'). reportlab's built-in PDF fonts (Helvetica, ...) cover Latin-1 only and
are not embedded, so the report registers TrueType fonts instead (reportlab always embeds
TrueType fonts as subsets of the glyphs used):

* the *primary* family, DejaVu Sans (Latin, Greek, Cyrillic, many symbols), regular and bold;
* *fallback* fonts for what DejaVu lacks, CJK above all: Droid Sans Fallback, WenQuanYi, IPA
  Gothic, ... (the first one found that reportlab can read: it handles TrueType outlines only,
  so the CFF-based Noto CJK ``.otf``/``.ttc`` files are tried and skipped).

Text is split into *runs* of characters one font can draw (:meth:`FontSet.runs`); a
character no registered font has stays in the primary font (it prints as an empty box, but its
text stays searchable). :meth:`FontSet.markup` returns the runs as escaped reportlab
Paragraph markup, so every caller gets escaping and fallback in one step.

Fonts are searched in the bundled folder ``radview/resources/fonts`` first (empty today; a
packaged build can ship fonts there), then in ``RADVIEW_FONT_DIR`` (``os.pathsep``-separated),
then in the platform's standard font folders. When no TrueType font is found at all, reports
fall back to Helvetica and :attr:`FontSet.warnings` says that non-Latin-1 text cannot print.

The font files are parsed once per process and kept (:func:`report_fonts` caches the set):
fonts are read-only resources, and reportlab keeps per-document subset state itself.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import escape

__all__ = [
    "PRIMARY_REGULAR_FILES",
    "PRIMARY_BOLD_FILES",
    "FALLBACK_FILES",
    "FontSet",
    "font_search_dirs",
    "find_font_file",
    "report_fonts",
]

#: File names of the primary family, best first (DejaVu; then look-alikes with wide coverage).
PRIMARY_REGULAR_FILES = ("DejaVuSans.ttf", "NotoSans-Regular.ttf", "LiberationSans-Regular.ttf",
                         "FreeSans.ttf", "Arial Unicode.ttf", "arial.ttf")
PRIMARY_BOLD_FILES = ("DejaVuSans-Bold.ttf", "NotoSans-Bold.ttf", "LiberationSans-Bold.ttf",
                      "FreeSansBold.ttf", "arialbd.ttf")
#: Fallback fonts for scripts the primary family lacks (CJK above all), best first.
FALLBACK_FILES = (
    "DroidSansFallbackFull.ttf",
    "DroidSansFallback.ttf",
    "wqy-microhei.ttc",
    "wqy-zenhei.ttc",
    "NotoSansCJK-Regular.ttc",  # CFF outlines: reportlab refuses it, then the next is tried
    "NotoSansCJKjp-Regular.otf",
    "ipagp.ttf",
    "ipag.ttf",
    "fonts-japanese-gothic.ttf",
    "UnDotum.ttf",
    "NanumGothic.ttf",
    "msyh.ttc",
    "simsun.ttc",
    "msgothic.ttc",
    "malgun.ttf",
)

_REGULAR_NAME = "RadviewSans"
_BOLD_NAME = "RadviewSans-Bold"
_FALLBACK_NAME = "RadviewFallback{}"
_BUNDLED_DIR = Path(__file__).resolve().parent.parent / "resources" / "fonts"
_HELVETICA = ("Helvetica", "Helvetica-Bold")


def font_search_dirs() -> tuple[Path, ...]:
    """Folders searched for fonts, in order: bundled, ``RADVIEW_FONT_DIR``, the system's."""
    dirs = [_BUNDLED_DIR]
    extra = os.environ.get("RADVIEW_FONT_DIR", "")
    dirs.extend(Path(p) for p in extra.split(os.pathsep) if p)
    home = Path.home()
    if sys.platform == "darwin":
        dirs += [home / "Library/Fonts", Path("/Library/Fonts"), Path("/System/Library/Fonts"),
                 Path("/System/Library/Fonts/Supplemental")]
    elif os.name == "nt":
        windir = Path(os.environ.get("WINDIR", r"C:\Windows"))
        dirs += [windir / "Fonts",
                 Path(os.environ.get("LOCALAPPDATA", home)) / "Microsoft/Windows/Fonts"]
    else:
        data_home = Path(os.environ.get("XDG_DATA_HOME", home / ".local/share"))
        dirs += [data_home / "fonts", home / ".fonts", Path("/usr/local/share/fonts"),
                 Path("/usr/share/fonts")]
    return tuple(dirs)


def find_font_file(names: Sequence[str], dirs: Iterable[Path] | None = None) -> Path | None:
    """The first of ``names`` (file names, best first) found under ``dirs`` (recursively)."""
    found = _find_all(names, font_search_dirs() if dirs is None else dirs)
    return found[0] if found else None


def _find_all(names: Sequence[str], dirs: Iterable[Path]) -> list[Path]:
    """Every file of ``names`` under ``dirs``, ordered by name preference, then by folder."""
    wanted = {name.lower(): rank for rank, name in enumerate(names)}
    hits: list[tuple[int, int, Path]] = []
    for dir_rank, folder in enumerate(dirs):
        if not folder.is_dir():
            continue
        for root, _subdirs, files in os.walk(folder):
            for file in files:
                rank = wanted.get(file.lower())
                if rank is not None:
                    hits.append((rank, dir_rank, Path(root) / file))
    return [path for _rank, _dir, path in sorted(hits)]


@dataclass(frozen=True)
class _LoadedFont:
    name: str  # reportlab registration name
    path: Path | None
    codepoints: frozenset[int] | None  # None: unknown (a built-in Type 1 font)


class FontSet:
    """The registered report fonts and the run splitting that picks one per character.

    Attributes
    ----------
    regular, bold
        reportlab font names of the primary family (use them in styles).
    embedded
        True when the primary family is TrueType (embedded); False with the Helvetica fallback.
    warnings
        What cannot print as intended (no TrueType font found). Characters missing from
        every font are found per text with :meth:`missing`.
    """

    def __init__(self, regular: _LoadedFont, bold: _LoadedFont, fallback_paths: Sequence[Path],
                 warnings: Sequence[str] = (), key: str = "") -> None:
        self._key = key
        self._regular = regular
        self._bold = bold
        self._fallback_paths = list(fallback_paths)
        self._fallbacks: list[_LoadedFont] | None = None
        self._lock = threading.Lock()
        self._warnings = list(warnings)
        self.regular = regular.name
        self.bold = bold.name
        self.embedded = regular.codepoints is not None

    @property
    def warnings(self) -> tuple[str, ...]:
        return tuple(self._warnings)

    @property
    def font_files(self) -> tuple[Path, ...]:
        """Files of the fonts loaded so far (fallbacks load on first use)."""
        loaded = [self._regular, self._bold, *(self._fallbacks or [])]
        return tuple(f.path for f in loaded if f.path is not None)

    # ------------------------------------------------------------------ coverage
    def _primary(self, bold: bool) -> _LoadedFont:
        return self._bold if bold else self._regular

    def _load_fallbacks(self) -> list[_LoadedFont]:
        """Register the first readable fallback font (parsed only when first needed)."""
        with self._lock:
            if self._fallbacks is not None:
                return self._fallbacks
            loaded: list[_LoadedFont] = []
            for path in self._fallback_paths:
                font = _register_ttf(_FALLBACK_NAME.format(self._key), path, bold_alias=True)
                if font is not None:
                    loaded.append(font)
                    break
            self._fallbacks = loaded
            return loaded

    def font_for(self, char: str, bold: bool = False) -> str | None:
        """The font that draws ``char``: the primary one if it can, else the first fallback.

        None when no loaded font has the character (it is then drawn, as an empty box, in the
        primary font). With the Helvetica fallback coverage is unknown: always Helvetica.
        """
        primary = self._primary(bold)
        if primary.codepoints is None or ord(char) in primary.codepoints:
            return primary.name
        for fallback in self._load_fallbacks():
            assert fallback.codepoints is not None
            if ord(char) in fallback.codepoints:
                return fallback.name
        return None

    def missing(self, text: str, bold: bool = False) -> set[str]:
        """The characters of ``text`` no loaded font can draw (empty with Helvetica)."""
        primary = self._primary(bold)
        if primary.codepoints is None:
            return set()
        return {c for c in text if not c.isspace() and ord(c) not in primary.codepoints
                and self.font_for(c, bold) is None}

    def runs(self, text: str, bold: bool = False) -> list[tuple[str, str]]:
        """``text`` split into ``(font name, run)`` pieces, each drawable by its font."""
        runs: list[tuple[str, str]] = []
        primary = self._primary(bold)
        for char in text:
            if char.isspace() or primary.codepoints is None or ord(char) in primary.codepoints:
                font = primary.name  # the common case, without a call per character
            else:
                font = self.font_for(char, bold) or primary.name
            if runs and runs[-1][0] == font:
                runs[-1] = (font, runs[-1][1] + char)
            else:
                runs.append((font, char))
        return runs

    def markup(self, text: str, bold: bool = False) -> str:
        """``text`` as reportlab Paragraph markup: escaped, fallback runs in ``<font>`` tags.

        ``bold`` says which primary face the surrounding style uses (so that coverage is
        checked against the face that will draw the text).
        """
        primary = self._primary(bold).name
        parts = []
        for font, run in self.runs(text, bold):
            escaped = escape(run)
            parts.append(escaped if font == primary else f'<font face="{font}">{escaped}</font>')
        return "".join(parts)

    def string_width(self, text: str, size: float, bold: bool = False) -> float:
        """Width in points of ``text`` drawn with its runs' fonts at ``size``."""
        from reportlab.pdfbase.pdfmetrics import stringWidth

        return sum(stringWidth(run, font, size) for font, run in self.runs(text, bold))


def _register_ttf(name: str, path: Path, *, bold_alias: bool = False) -> _LoadedFont | None:
    """Register ``path`` under ``name``; None if reportlab cannot read it (CFF, damaged)."""
    from reportlab.lib.fonts import addMapping
    from reportlab.pdfbase import pdfmetrics
    from reportlab.pdfbase.ttfonts import TTFError, TTFont

    try:
        font = TTFont(name, str(path))
    except (TTFError, OSError, ValueError, KeyError, IndexError, AssertionError):
        # reportlab raises assorted errors for fonts it cannot use (CFF outlines, broken
        # tables); any of them just means "try the next font".
        return None
    pdfmetrics.registerFont(font)
    if bold_alias:
        # A fallback has one face; <b> runs inside a Paragraph must still find a font.
        for bold in (0, 1):
            for italic in (0, 1):
                addMapping(name, bold, italic, name)
    return _LoadedFont(name, path, frozenset(font.face.charToGlyph))


_CACHE: dict[tuple[Path, ...], FontSet] = {}
_CACHE_LOCK = threading.Lock()


def report_fonts(dirs: Sequence[Path] | None = None) -> FontSet:
    """The report fonts, registered with reportlab (parsed once per process and search path).

    Parameters
    ----------
    dirs
        Folders to search instead of :func:`font_search_dirs` (tests use an empty list to
        exercise the Helvetica fallback).
    """
    search = tuple(font_search_dirs() if dirs is None else dirs)
    with _CACHE_LOCK:
        cached = _CACHE.get(search)
        if cached is not None:
            return cached
        # Names must be unique per search path; the default set gets the plain names.
        font_set = _build_font_set(search, "" if not _CACHE else f"-{len(_CACHE) + 1}")
        _CACHE[search] = font_set
        return font_set


def _build_font_set(search: tuple[Path, ...], key: str) -> FontSet:
    from reportlab.lib.fonts import addMapping

    regular = bold = None
    for path in _find_all(PRIMARY_REGULAR_FILES, search):
        regular = _register_ttf(f"{_REGULAR_NAME}{key}", path)
        if regular is not None:
            break
    if regular is not None:
        for path in _find_all(PRIMARY_BOLD_FILES, search):
            bold = _register_ttf(f"{_BOLD_NAME}{key}", path)
            if bold is not None:
                break
        bold = bold or regular
        for is_bold in (0, 1):
            for italic in (0, 1):
                addMapping(regular.name, is_bold, italic, bold.name if is_bold else regular.name)
        return FontSet(regular, bold, _find_all(FALLBACK_FILES, search), key=key)
    warning = (
        "no TrueType font found (install fonts-dejavu-core): the report uses Helvetica, which "
        "is not embedded and cannot print characters outside Latin-1"
    )
    return FontSet(_LoadedFont(_HELVETICA[0], None, None), _LoadedFont(_HELVETICA[1], None, None),
                   (), (warning,))
