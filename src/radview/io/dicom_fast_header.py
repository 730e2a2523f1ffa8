"""A fast path for the commonest DICOM header: Explicit VR Little Endian, default character set.

Why this exists: ``benchmarks/load.py`` showed the header scan was 75 % of the time to open an
uncompressed 500-slice CT (pydicom's ``dcmread`` plus value conversion cost ~0.75 ms per file,
SimpleITK's whole scan ~0.2 ms). This walks the header bytes with ``struct`` up to Pixel Data and
hands back raw values by keyword, ~10x faster. It handles only what it fully understands and
returns ``None`` for anything else (another transfer syntax, a specific character set other than
Latin-1/ASCII, enhanced multi-frame functional groups, a header longer than the first read,
anything malformed) so the caller falls back to pydicom. ``tests/io/test_fast_header.py`` checks
that both paths give identical headers on real files.
"""

from __future__ import annotations

import struct
from functools import lru_cache

from pydicom.datadict import tag_for_keyword

__all__ = ["FastHeader", "parse_fast_header", "HEAD_BYTES"]

#: Bytes read for the fast path; CT/MR headers are typically 1-6 KiB.
HEAD_BYTES = 16384

_EXPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2.1"
_PIXEL_DATA = 0x7FE00010
_SPECIFIC_CHARACTER_SET = 0x00080005
_ITEM, _ITEM_END, _SEQUENCE_END = 0xFFFEE000, 0xFFFEE00D, 0xFFFEE0DD
_UNDEFINED = 0xFFFFFFFF
#: VRs with a 2-byte reserved field and a 4-byte length in explicit VR.
_LONG_VRS = frozenset({b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN",
                       b"UR", b"UT", b"UV"})
_TEXT_VRS = frozenset({"AE", "AS", "CS", "DA", "DS", "DT", "IS", "LO", "LT", "PN", "SH", "ST",
                       "TM", "UC", "UI", "UR", "UT"})
_SINGLE_VALUE_TEXT = frozenset({"LT", "ST", "UT", "UR"})
_NUMBER_FORMATS = {"US": "H", "SS": "h", "UL": "I", "SL": "i", "FL": "f", "FD": "d"}
#: Top-level sequences that need pydicom (per-frame geometry lives in them).
_NEEDS_PYDICOM = frozenset({0x52009229, 0x52009230})
#: Specific Character Sets handled here, and the Python codec of each.
_CHARSETS = {"": "latin-1", "ISO_IR 6": "latin-1", "ISO 2022 IR 6": "latin-1",
             "ISO_IR 100": "latin-1", "ISO_IR 192": "utf-8"}


class _NotHandled(Exception):
    """The fast path does not handle this file; the caller uses pydicom."""


class FastHeader:
    """The top-level elements of one file, converted on demand like pydicom would."""

    def __init__(self, meta: dict[int, tuple[str, bytes]], elements: dict[int, tuple[str, bytes]],
                 pixel_offset: int | None, pixel_length: int | None,
                 encoding: str = "latin-1") -> None:
        self._meta = meta
        self._encoding = encoding
        self._elements = elements
        self.pixel_offset = pixel_offset
        self.pixel_length = pixel_length

    @property
    def has_pixel_data(self) -> bool:
        return self.pixel_offset is not None

    @property
    def transfer_syntax_uid(self) -> str:
        return str(_value(self._meta, 0x00020010) or "")

    @property
    def media_storage_sop_class_uid(self) -> str:
        return str(_value(self._meta, 0x00020002) or "")

    def __contains__(self, keyword: str) -> bool:
        return _tag(keyword) in self._elements

    def get(self, keyword: str, default: object = None) -> object:
        tag = _tag(keyword)
        if tag not in self._elements:
            return default
        return _value(self._elements, tag, self._encoding)


def _value(elements: dict[int, tuple[str, bytes]], tag: int, encoding: str = "latin-1") -> object:
    """A value converted as pydicom would: text stripped and split at backslashes, numbers."""
    vr, raw = elements[tag]
    if vr in _TEXT_VRS:
        text = raw.decode(encoding).rstrip(" \x00")
        if vr in _SINGLE_VALUE_TEXT or "\\" not in text:
            return text.strip() if vr not in _SINGLE_VALUE_TEXT else text
        return [v.strip() for v in text.split("\\")]
    if vr in _NUMBER_FORMATS:
        code = _NUMBER_FORMATS[vr]
        count = len(raw) // struct.calcsize(code)
        values = struct.unpack(f"<{count}{code}", raw[: count * struct.calcsize(code)])
        if not values:
            return None
        return values[0] if count == 1 else list(values)
    return raw


@lru_cache(maxsize=512)
def _tag(keyword: str) -> int:
    tag = tag_for_keyword(keyword)
    if tag is None:
        raise KeyError(keyword)
    return int(tag)


def parse_fast_header(head: bytes) -> FastHeader | None:
    """Parse the first bytes of a file, or return None when pydicom must do it."""
    try:
        return _parse(head)
    except (_NotHandled, struct.error, IndexError, UnicodeDecodeError):
        return None


def _parse(data: bytes) -> FastHeader:
    if len(data) < 132 or data[128:132] != b"DICM":
        raise _NotHandled
    meta, position = _read_group_two(data, 132)
    syntax = _value(meta, 0x00020010) if 0x00020010 in meta else ""
    if syntax != _EXPLICIT_VR_LITTLE_ENDIAN:
        raise _NotHandled
    elements: dict[int, tuple[str, bytes]] = {}
    encoding = "latin-1"
    end = len(data)
    while position + 8 <= end:
        tag, vr, length, value_start = _element_header(data, position)
        if tag == _PIXEL_DATA:
            if length == _UNDEFINED:
                raise _NotHandled  # encapsulated data under a native syntax: let pydicom judge
            return FastHeader(meta, elements, value_start, length, encoding)
        if tag in _NEEDS_PYDICOM:
            raise _NotHandled
        if vr == "SQ":
            position = _skip_sequence(data, value_start, length)
            elements[tag] = (vr, b"")
            continue
        if length == _UNDEFINED:
            raise _NotHandled
        value_end = value_start + length
        if value_end > end:
            raise _NotHandled  # the header goes on beyond what was read
        elements[tag] = (vr, data[value_start:value_end])
        if tag == _SPECIFIC_CHARACTER_SET:
            charset = data[value_start:value_end].decode("latin-1").strip(" \x00")
            if charset not in _CHARSETS:
                raise _NotHandled  # code extensions, Asian sets: pydicom's job
            encoding = _CHARSETS[charset]
        position = value_end
    raise _NotHandled  # no Pixel Data in the first bytes (non-image or a very long header)


def _read_group_two(data: bytes, position: int) -> tuple[dict[int, tuple[str, bytes]], int]:
    meta: dict[int, tuple[str, bytes]] = {}
    while position + 8 <= len(data):
        group = struct.unpack_from("<H", data, position)[0]
        if group != 0x0002:
            break
        tag, vr, length, value_start = _element_header(data, position)
        if length == _UNDEFINED or value_start + length > len(data):
            raise _NotHandled
        meta[tag] = (vr, data[value_start:value_start + length])
        position = value_start + length
    return meta, position


def _element_header(data: bytes, position: int) -> tuple[int, str, int, int]:
    group, element = struct.unpack_from("<HH", data, position)
    tag = (group << 16) | element
    vr_bytes = data[position + 4:position + 6]
    if not (vr_bytes.isalpha() and vr_bytes.isupper()):
        raise _NotHandled  # not explicit VR after all
    if vr_bytes in _LONG_VRS:
        length = struct.unpack_from("<I", data, position + 8)[0]
        return tag, vr_bytes.decode(), length, position + 12
    length = struct.unpack_from("<H", data, position + 6)[0]
    return tag, vr_bytes.decode(), length, position + 8


def _skip_sequence(data: bytes, position: int, length: int) -> int:
    """Position just after a sequence value (defined or undefined length, nested)."""
    if length != _UNDEFINED:
        if position + length > len(data):
            raise _NotHandled
        return position + length
    while True:
        tag, item_length = _item_header(data, position)
        position += 8
        if tag == _SEQUENCE_END:
            return position
        if tag != _ITEM:
            raise _NotHandled
        if item_length != _UNDEFINED:
            position += item_length
            continue
        position = _skip_item_elements(data, position)


def _skip_item_elements(data: bytes, position: int) -> int:
    """Skip the elements of an undefined-length item, returning the position after it."""
    while True:
        group, element = struct.unpack_from("<HH", data, position)
        if (group << 16) | element == _ITEM_END:
            return position + 8
        _tag_value, vr, length, value_start = _element_header(data, position)
        if vr == "SQ":
            position = _skip_sequence(data, value_start, length)
        elif length == _UNDEFINED:
            raise _NotHandled
        else:
            position = value_start + length
        if position > len(data):
            raise _NotHandled


def _item_header(data: bytes, position: int) -> tuple[int, int]:
    if position + 8 > len(data):
        raise _NotHandled
    group, element, length = struct.unpack_from("<HHI", data, position)
    return (group << 16) | element, length
