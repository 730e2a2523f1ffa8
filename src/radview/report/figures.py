"""Report figures (numpy + Pillow only): lesion key images, a staging chart, a triage plot.

Key images
----------
:func:`key_image` draws one display plane through a lesion the way the viewer shows it
(radiological convention, :meth:`Volume.plane_slice`):

* the slice: for the acquisition plane (array axis 0; axial for an axial series) the lesion's
  RECIST slice (:attr:`Lesion.recist_slice`), for the other planes the slice through the
  lesion's centroid (or the nearest one that holds tumour, for odd shapes);
* a field of view centred on the lesion: at least :data:`MIN_FIELD_OF_VIEW_MM`, at least
  :data:`FIELD_OF_VIEW_PER_DIAMETER` x the lesion's maximum diameter, never beyond the image;
* windowed (liver window W150 L30 for CT in HU, the automatic window otherwise) and resampled
  to *square output pixels*: rows and columns are scaled by their own mm spacing, so a coronal
  image of 2.5 mm slices has the true height/width ratio of its field of view;
* outlines (2 output pixels) of the liver organ (liver + tumour labels; Okabe-Ito bluish green)
  and of all tumour (vermillion): the iso-contour at 0.5 of the bilinearly resampled masks,
  the same level the lesion measurements use;
* the RECIST long axis (yellow) and short axis (sky blue) from their LPS end points (mapped
  with :meth:`Volume.plane_pixel_of_world`), drawn only where both ends lie in the shown slice,
  i.e. on the acquisition-plane image (they are measured there);
* the lesion number next to the lesion, a millimetre scale bar (10/20/50/100 mm, the longest
  that fits in 40 % of the width) and the orientation letters of
  :attr:`PlaneGeometry.edge_letters` on the four edges.

The result is JPEG (quality 85, no chroma subsampling so that the thin coloured outlines stay
sharp) or PNG bytes with the numbers a caption needs (:class:`KeyImage`).

Charts
------
:func:`probability_chart` (horizontal bars, one per class) and :func:`triage_plot`
(per-slice probability against slice number, with the threshold) are small PNGs: flat colours
compress far better losslessly than as JPEG.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from radview.core.lesions import Lesion
from radview.core.volume import PlaneGeometry, ViewPlane, Volume
from radview.core.windowing import WindowLevel, WindowPreset, auto_window, window_to_uint8
from radview.report.fonts import PRIMARY_BOLD_FILES, PRIMARY_REGULAR_FILES, find_font_file

__all__ = [
    "LIVER_OUTLINE_RGB",
    "LESION_OUTLINE_RGB",
    "LONG_AXIS_RGB",
    "SHORT_AXIS_RGB",
    "MIN_FIELD_OF_VIEW_MM",
    "FIELD_OF_VIEW_PER_DIAMETER",
    "RenderedImage",
    "KeyImage",
    "default_window",
    "key_image",
    "key_images",
    "probability_chart",
    "triage_plot",
]

# Okabe-Ito colours: distinguishable for the common colour-vision deficiencies and on grey.
LIVER_OUTLINE_RGB = (0, 158, 115)  # bluish green (the viewer's liver colour)
LESION_OUTLINE_RGB = (213, 94, 0)  # vermillion (the viewer's tumour colour)
LONG_AXIS_RGB = (240, 228, 66)  # yellow
SHORT_AXIS_RGB = (86, 180, 233)  # sky blue
_BAR_RGB = (0, 114, 178)  # blue
_HIGHLIGHT_RGB = (230, 159, 0)  # orange
_WHITE = (255, 255, 255)
_BLACK = (0, 0, 0)
_GRID_RGB = (215, 215, 215)
_TEXT_RGB = (40, 40, 40)

#: Key images show at least this much of the patient (mm), for anatomical context ...
MIN_FIELD_OF_VIEW_MM = 150.0
#: ... and at least this many times the lesion's maximum diameter.
FIELD_OF_VIEW_PER_DIAMETER = 3.0
_SCALE_BAR_CHOICES_MM = (100.0, 50.0, 20.0, 10.0, 5.0)
_SCALE_BAR_MAX_FRACTION = 0.4
_OUTLINE_PX = 2
_JPEG_QUALITY = 85


@dataclass(frozen=True)
class RenderedImage:
    """Encoded image bytes and their pixel size."""

    data: bytes
    format: str  # "JPEG" or "PNG"
    width_px: int
    height_px: int


@dataclass(frozen=True)
class KeyImage:
    """One key image and what its caption needs (all data; formatted by the report).

    ``slice_index`` is the plane's display slice number (0 = most right / anterior /
    inferior, as :meth:`Volume.plane_slice`); ``field_of_view_mm`` is ``(width, height)``.
    """

    lesion_id: int
    plane: ViewPlane
    slice_index: int
    slice_count: int
    window: WindowLevel
    field_of_view_mm: tuple[float, float]
    scale_bar_mm: float
    axes_drawn: bool
    edge_letters: tuple[str, str, str, str]  # (top, bottom, left, right)
    image: RenderedImage


# ---------------------------------------------------------------------------- key images
def default_window(image: Volume) -> WindowLevel:
    """Liver window (W150 L30) for CT in HU; the automatic window for anything else."""
    if image.modality == "CT" and image.rescale.unit == "HU":
        return WindowPreset.LIVER.window()
    return auto_window(image)


def key_images(
    image: Volume,
    labels: Volume,
    lesions: Sequence[Lesion],
    *,
    planes: Sequence[ViewPlane] = (ViewPlane.AXIAL, ViewPlane.CORONAL),
    max_images: int = 6,
    window: WindowLevel | None = None,
    liver_label: int = 1,
    tumour_label: int = 2,
    size_px: int = 512,
    image_format: str = "JPEG",
) -> tuple[KeyImage, ...]:
    """Key images of the largest lesions: every plane of ``planes`` for each, largest first.

    ``lesions`` are taken in the order given (:func:`measure_liver` sorts them by volume) until
    ``max_images`` images are made; a lesion gets all its planes or none.
    """
    if window is None:
        window = default_window(image)
    per_lesion = max(len(planes), 1)
    count = min(len(lesions), max_images // per_lesion)
    return tuple(
        key_image(image, labels, lesion, plane, window=window, liver_label=liver_label,
                  tumour_label=tumour_label, size_px=size_px, image_format=image_format)
        for lesion in lesions[:count]
        for plane in planes
    )


def key_image(
    image: Volume,
    labels: Volume,
    lesion: Lesion,
    plane: ViewPlane,
    *,
    window: WindowLevel | None = None,
    liver_label: int = 1,
    tumour_label: int = 2,
    size_px: int = 512,
    image_format: str = "JPEG",
    field_of_view_mm: float | None = None,
) -> KeyImage:
    """One annotated key image of ``lesion`` in ``plane`` (see the module docstring).

    Parameters
    ----------
    image, labels
        The image (HU for CT) and its label map on the same grid.
    lesion
        A lesion measured on ``labels`` (:func:`radview.core.lesions.measure_liver`).
    plane
        The display plane.
    window
        Display window; :func:`default_window` when None.
    size_px
        Output size of the longer side of the field of view.
    image_format
        ``"JPEG"`` or ``"PNG"``.
    field_of_view_mm
        Square field of view to show (clipped to the image); automatic when None.
    """
    if labels.shape != image.shape:
        raise ValueError(f"labels {labels.shape} are not on the image grid {image.shape}")
    if image_format not in ("JPEG", "PNG"):
        raise ValueError(f"image_format must be JPEG or PNG, got {image_format!r}")
    if window is None:
        window = default_window(image)
    geometry = image.plane_geometry(plane)
    slice_index = _slice_for(image, labels, lesion, plane, geometry, tumour_label)
    pixels = image.plane_slice(plane, slice_index)
    label_slice = image.plane_slice(plane, slice_index, labels.voxels)
    row_mm, col_mm = geometry.pixel_spacing
    n_rows, n_cols = pixels.shape

    # Field of view: a square around the lesion centre, clipped to the image.
    _s, centre_row, centre_col = image.plane_pixel_of_world(plane, lesion.centroid_lps)
    fov = field_of_view_mm or max(MIN_FIELD_OF_VIEW_MM,
                                  FIELD_OF_VIEW_PER_DIAMETER * lesion.max_diameter.value)
    r0, r1 = _crop_range(centre_row, fov / row_mm, n_rows)
    c0, c1 = _crop_range(centre_col, fov / col_mm, n_cols)
    height_mm, width_mm = (r1 - r0) * row_mm, (c1 - c0) * col_mm
    mm_per_px = max(height_mm, width_mm) / size_px
    out_w = max(1, round(width_mm / mm_per_px))
    out_h = max(1, round(height_mm / mm_per_px))

    grey = _display_bytes(image, pixels[r0:r1, c0:c1], window)
    grey_image = Image.fromarray(grey).resize((out_w, out_h), Image.Resampling.BICUBIC)
    rgb = np.repeat(np.asarray(grey_image)[:, :, None], 3, axis=2)
    labels_crop = label_slice[r0:r1, c0:c1]
    tumour = labels_crop == tumour_label
    liver = tumour | (labels_crop == liver_label)
    rgb[_outline(_resampled_mask(liver, out_w, out_h))] = LIVER_OUTLINE_RGB
    rgb[_outline(_resampled_mask(tumour, out_w, out_h))] = LESION_OUTLINE_RGB
    picture = Image.fromarray(rgb)
    draw = ImageDraw.Draw(picture)

    def to_output(point_lps: Sequence[float]) -> tuple[float, float, float]:
        """(slice, x, y) in output pixels (x right, y down) of an LPS point."""
        s, row, col = image.plane_pixel_of_world(plane, point_lps)
        return s, (col - c0 + 0.5) * out_w / (c1 - c0), (row - r0 + 0.5) * out_h / (r1 - r0)

    line_px = max(2, round(size_px / 170))
    axes_drawn = False
    for ends, colour in ((lesion.long_axis_endpoints_lps, LONG_AXIS_RGB),
                         (lesion.short_axis_endpoints_lps, SHORT_AXIS_RGB)):
        (s_a, xa, ya), (s_b, xb, yb) = to_output(ends[0]), to_output(ends[1])
        if abs(s_a - slice_index) < 0.5 and abs(s_b - slice_index) < 0.5:
            draw.line([(xa, ya), (xb, yb)], fill=colour, width=line_px)
            for x, y in ((xa, ya), (xb, yb)):
                r = line_px + 1
                draw.ellipse([x - r, y - r, x + r, y + r], fill=colour)
            axes_drawn = True

    text_px = max(12, round(size_px / 20))
    bold = _pillow_font(text_px, bold=True)
    # lesion number, up and to the right of the lesion, kept inside the picture
    _s, cx, cy = to_output(lesion.centroid_lps)
    offset = 0.5 * lesion.max_diameter.value / mm_per_px * 0.75 + text_px * 0.4
    _halo_text(draw, (min(max(cx + offset, 2), out_w - text_px * 2),
                      min(max(cy - offset - text_px, 2), out_h - text_px * 1.5)),
               str(lesion.id), bold, LESION_OUTLINE_RGB)
    bar_mm = _scale_bar_length(width_mm)
    _scale_bar(draw, bar_mm / mm_per_px, f"{bar_mm:g} mm", out_h,
               _pillow_font(max(10, round(text_px * 0.8)), bold=True))
    _edge_letters(draw, geometry.edge_letters, out_w, out_h, bold)
    return KeyImage(
        lesion_id=lesion.id,
        plane=plane,
        slice_index=slice_index,
        slice_count=geometry.slice_count,
        window=window,
        field_of_view_mm=(width_mm, height_mm),
        scale_bar_mm=bar_mm,
        axes_drawn=axes_drawn,
        edge_letters=geometry.edge_letters,
        image=_encode(picture, image_format),
    )


def _slice_for(image: Volume, labels: Volume, lesion: Lesion, plane: ViewPlane,
               geometry: PlaneGeometry, tumour_label: int) -> int:
    """The plane's display slice for ``lesion`` (see the module docstring)."""
    if geometry.normal_axis == 0:  # the acquisition plane: the RECIST slice
        array_index = lesion.recist_slice
        return geometry.slice_count - 1 - array_index if geometry.normal_flipped else array_index
    start = image.plane_index_of_world(plane, lesion.centroid_lps)
    # A crescent's centroid can lie outside it: then take the nearest slice holding tumour.
    for distance in range(geometry.slice_count):
        for candidate in (start - distance, start + distance):
            if 0 <= candidate < geometry.slice_count and np.any(
                image.plane_slice(plane, candidate, labels.voxels) == tumour_label
            ):
                return candidate
    return start


def _crop_range(centre: float, length: float, size: int) -> tuple[int, int]:
    """Integer ``[start, stop)`` of ``length`` pixels centred on ``centre``, inside ``0..size``."""
    n = min(size, max(1, math.ceil(length)))
    start = int(round(centre + 0.5 - n / 2))
    start = min(max(start, 0), size - n)
    return start, start + n


def _display_bytes(image: Volume, pixels: np.ndarray, window: WindowLevel) -> np.ndarray:
    values = pixels
    if not image.rescale.applied:  # stored values: map them to modality values first
        values = pixels.astype(np.float32) * np.float32(image.rescale.slope) + np.float32(
            image.rescale.intercept)
    return window_to_uint8(values, window, invert=image.display_inverted)


def _resampled_mask(mask: np.ndarray, width: int, height: int) -> np.ndarray:
    """``mask`` resampled bilinearly to the output size, thresholded at 0.5."""
    if not mask.any():
        return np.zeros((height, width), dtype=bool)
    scaled = Image.fromarray(mask.astype(np.uint8) * 255).resize(
        (width, height), Image.Resampling.BILINEAR)
    return np.asarray(scaled) >= 128


def _outline(mask: np.ndarray, width: int = _OUTLINE_PX) -> np.ndarray:
    """The inner boundary band of ``mask``, ``width`` pixels wide (4-connected erosion).

    The picture's border is not a boundary (edge padding): an organ cut by the field of view
    must not look as if it ended there.
    """
    eroded = mask
    for _ in range(width):
        padded = np.pad(eroded, 1, mode="edge")
        eroded = (padded[1:-1, 1:-1] & padded[:-2, 1:-1] & padded[2:, 1:-1]
                  & padded[1:-1, :-2] & padded[1:-1, 2:])
    return mask & ~eroded


def _scale_bar_length(width_mm: float) -> float:
    for length in _SCALE_BAR_CHOICES_MM:
        if length <= _SCALE_BAR_MAX_FRACTION * width_mm:
            return length
    return _SCALE_BAR_CHOICES_MM[-1]


def _scale_bar(draw: ImageDraw.ImageDraw, length_px: float, label: str, out_h: int,
               font: ImageFont.FreeTypeFont | ImageFont.ImageFont) -> None:
    margin = max(6, round(out_h / 40))
    thickness = max(3, round(out_h / 120))
    x0, y1 = margin, out_h - margin
    y0 = y1 - thickness
    draw.rectangle([x0 - 1, y0 - 1, x0 + length_px + 1, y1 + 1], fill=_BLACK)
    draw.rectangle([x0, y0, x0 + length_px, y1], fill=_WHITE)
    top = draw.textbbox((0, 0), label, font=font)
    _halo_text(draw, (x0, y0 - (top[3] - top[1]) - thickness - 2 - top[1]), label, font, _WHITE)


def _edge_letters(draw: ImageDraw.ImageDraw, letters: tuple[str, str, str, str],
                  out_w: int, out_h: int,
                  font: ImageFont.FreeTypeFont | ImageFont.ImageFont) -> None:
    top, bottom, left, right = letters
    margin = max(3, round(min(out_w, out_h) / 100))

    def size(text: str) -> tuple[float, float, float, float]:
        return draw.textbbox((0, 0), text, font=font)

    for text, anchor in ((top, "top"), (bottom, "bottom"), (left, "left"), (right, "right")):
        x0, y0, x1, y1 = size(text)
        w, h = x1 - x0, y1 - y0
        if anchor == "top":
            xy = ((out_w - w) / 2 - x0, margin - y0)
        elif anchor == "bottom":
            xy = ((out_w - w) / 2 - x0, out_h - margin - h - y0)
        elif anchor == "left":
            xy = (margin - x0, (out_h - h) / 2 - y0)
        else:
            xy = (out_w - margin - w - x0, (out_h - h) / 2 - y0)
        _halo_text(draw, xy, text, font, _WHITE)


def _halo_text(draw: ImageDraw.ImageDraw, xy: tuple[float, float], text: str,
               font: ImageFont.FreeTypeFont | ImageFont.ImageFont,
               fill: tuple[int, int, int]) -> None:
    """Text with a black outline, readable on any grey value."""
    draw.text(xy, text, font=font, fill=fill, stroke_width=2, stroke_fill=_BLACK)


def _encode(picture: Image.Image, image_format: str) -> RenderedImage:
    buffer = io.BytesIO()
    if image_format == "JPEG":
        picture.save(buffer, format="JPEG", quality=_JPEG_QUALITY, subsampling=0)
    else:
        picture.save(buffer, format="PNG", compress_level=6)
    return RenderedImage(buffer.getvalue(), image_format, picture.width, picture.height)


@lru_cache(maxsize=32)
def _pillow_font(size: int, bold: bool = False) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """DejaVu Sans (bold) at ``size`` pixels; Pillow's bundled font when none is installed."""
    path = find_font_file(PRIMARY_BOLD_FILES if bold else PRIMARY_REGULAR_FILES)
    if path is not None:
        try:
            return ImageFont.truetype(str(path), size)
        except OSError:
            pass  # unreadable font file: the bundled font below still labels the image
    return ImageFont.load_default(size)


# ---------------------------------------------------------------------------- charts
def probability_chart(
    labels: Sequence[str],
    probabilities: Sequence[float],
    *,
    highlight: Sequence[int] = (),
    width_px: int = 900,
) -> RenderedImage:
    """Horizontal bars, one per class, with the percentage at the end (PNG).

    ``highlight`` are the indices of the predicted class and any close call beside it (drawn
    in orange, others blue).
    """
    if len(labels) != len(probabilities) or not labels:
        raise ValueError("need one probability per label, and at least one")
    font = _pillow_font(26)
    bar_h, gap, pad = 34, 14, 12
    label_w = max(_draw_width(font, text) for text in labels) + 24
    value_w = _draw_width(font, "100.0 %") + 16
    height = pad * 2 + len(labels) * (bar_h + gap) - gap
    picture = Image.new("RGB", (width_px, height), _WHITE)
    draw = ImageDraw.Draw(picture)
    x0 = pad + label_w
    span = width_px - x0 - value_w - pad
    for step in (0.25, 0.5, 0.75, 1.0):
        x = x0 + step * span
        draw.line([(x, pad), (x, height - pad)], fill=_GRID_RGB, width=1)
    draw.line([(x0, pad), (x0, height - pad)], fill=_TEXT_RGB, width=2)
    for index, (text, p) in enumerate(zip(labels, probabilities, strict=True)):
        y = pad + index * (bar_h + gap)
        colour = _HIGHLIGHT_RGB if index in highlight else _BAR_RGB
        draw.rectangle([x0, y, x0 + max(1.0, float(p) * span), y + bar_h], fill=colour)
        _text_mid(draw, (pad, y + bar_h / 2), _fit(font, text, label_w - 12), font)
        _text_mid(draw, (x0 + float(p) * span + 8, y + bar_h / 2), f"{100 * p:.1f} %", font)
    return _encode(picture, "PNG")


def triage_plot(
    probabilities: Sequence[float],
    *,
    threshold: float = 0.5,
    marks: Sequence[int] = (),
    width_px: int = 1400,
    height_px: int = 360,
) -> RenderedImage:
    """Per-slice probability (y, 0..1) against slice number (x), with the threshold (PNG).

    ``probabilities[i]`` belongs to slice index ``i``; the axis is labelled with slice numbers
    ``i + 1``. ``marks`` are slice indices to flag below the axis (e.g. the target lesions').
    """
    values = np.asarray(probabilities, dtype=np.float64)
    if values.ndim != 1 or values.size == 0:
        raise ValueError("need a non-empty list of per-slice probabilities")
    font = _pillow_font(24)
    picture = Image.new("RGB", (width_px, height_px), _WHITE)
    draw = ImageDraw.Draw(picture)
    left = _draw_width(font, "1.0") + 24
    right, top, bottom = 20, 16, 64
    plot_w, plot_h = width_px - left - right, height_px - top - bottom
    n = values.size

    def xy(index: float, p: float) -> tuple[float, float]:
        x = left + (index / max(n - 1, 1)) * plot_w
        return x, top + (1.0 - p) * plot_h

    for p in (0.0, 0.25, 0.5, 0.75, 1.0):
        y = xy(0, p)[1]
        draw.line([(left, y), (left + plot_w, y)], fill=_GRID_RGB, width=1)
        if p in (0.0, 0.5, 1.0):
            _text_mid(draw, (8, y), f"{p:.1f}", font)
    # the threshold, dashed
    ty = xy(0, threshold)[1]
    for x in range(int(left), int(left + plot_w), 24):
        draw.line([(x, ty), (min(x + 12, left + plot_w), ty)], fill=_HIGHLIGHT_RGB, width=3)
    points = [xy(i, float(np.clip(v, 0.0, 1.0))) for i, v in enumerate(values)]
    above = values >= threshold
    bar_w = plot_w / max(n - 1, 1)  # contiguous: a run of slices reads as one band
    for i in np.flatnonzero(above):
        x, y = points[i]
        draw.rectangle([x - bar_w / 2, y, x + bar_w / 2, top + plot_h], fill=(253, 226, 196))
    if n > 1:
        draw.line(points, fill=_BAR_RGB, width=3)
    else:
        x, y = points[0]
        draw.ellipse([x - 4, y - 4, x + 4, y + 4], fill=_BAR_RGB)
    draw.rectangle([left, top, left + plot_w, top + plot_h], outline=_TEXT_RGB, width=2)
    for mark in marks:
        if 0 <= mark < n:
            x = xy(mark, 0)[0]
            base = top + plot_h + 4
            draw.polygon([(x, base), (x - 8, base + 14), (x + 8, base + 14)],
                         fill=LESION_OUTLINE_RGB)
    tick_step = _tick_step(n)
    # slice numbers are labelled 1-based, as the viewer shows them
    for number in sorted({1, *range(tick_step, n + 1, tick_step)}):
        x = xy(number - 1, 0)[0]
        draw.line([(x, top + plot_h), (x, top + plot_h + 4)], fill=_TEXT_RGB, width=2)
        label = str(number)
        w = _draw_width(font, label)
        _text_mid(draw, (min(max(x - w / 2, 0), width_px - w), top + plot_h + 36), label, font)
    return _encode(picture, "PNG")


def _tick_step(n: int) -> int:
    for step in (1, 2, 5, 10, 20, 25, 50, 100, 200, 250, 500, 1000):
        if n / step <= 12:
            return step
    return max(1, n // 10)


def _draw_width(font: ImageFont.FreeTypeFont | ImageFont.ImageFont, text: str) -> float:
    box = font.getbbox(text)
    return float(box[2] - box[0])


def _fit(font: ImageFont.FreeTypeFont | ImageFont.ImageFont, text: str, width: float) -> str:
    """``text`` shortened with an ellipsis until it is at most ``width`` pixels wide."""
    if _draw_width(font, text) <= width:
        return text
    while text and _draw_width(font, text + "…") > width:
        text = text[:-1]
    return text + "…"


def _text_mid(draw: ImageDraw.ImageDraw, xy: tuple[float, float], text: str,
              font: ImageFont.FreeTypeFont | ImageFont.ImageFont) -> None:
    """Text whose left edge is at ``x`` and whose vertical middle is at ``y``."""
    draw.text(xy, text, font=font, fill=_TEXT_RGB, anchor="lm")
