"""How DICOM header values are shown to people: one place, so every view agrees."""

from __future__ import annotations

__all__ = ["format_person_name", "format_dicom_date"]


def format_person_name(value: str) -> str:
    """DICOM PN ``Family^Given^Middle^Prefix^Suffix`` as ``Family, Given Middle``.

    Only the alphabetic group (before any ``=``, which separates ideographic and phonetic
    forms) is shown; empty components are dropped, so ``DOE^JANE^^^`` is ``DOE, JANE``.
    """
    alphabetic = value.split("=", 1)[0] or value
    parts = [part.strip() for part in alphabetic.split("^")]
    family = parts[0] if parts else ""
    given = " ".join(part for part in parts[1:3] if part)
    return ", ".join(part for part in (family, given) if part)


def format_dicom_date(value: str) -> str:
    """DICOM DA ``YYYYMMDD`` as ``YYYY-MM-DD``; anything else unchanged."""
    value = value.strip()
    if len(value) == 8 and value.isdigit():
        return f"{value[:4]}-{value[4:6]}-{value[6:]}"
    return value
