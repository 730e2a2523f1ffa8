"""One display plane (axial, coronal or sagittal) of the :class:`ViewerState`.

The view is a pyqtgraph ``GraphicsView`` + ``ViewBox`` whose coordinates are millimetres: the
image item is stretched by the plane's pixel spacing, so anisotropic voxels keep their true
aspect with the ViewBox's aspect lock. Pixel ``(row, col)`` of the plane's image covers
``[col * sc, (col + 1) * sc] x [row * sr, (row + 1) * sr]`` (``sr, sc`` = mm between rows /
columns), so its centre (the voxel centre that ``Volume`` geometry refers to) is at
``((col + 0.5) * sc, (row + 0.5) * sr)``; the ViewBox's y axis points down.

Rendering. The slice is cut with ``Volume.plane_slice`` (a numpy view) and mapped straight to
32-bit RGB pixels through a cached lookup table of every possible voxel value (65 536 entries
for 16-bit data), so a slice change is one ``np.take`` into a kept buffer: no float
conversion, no allocation. The label overlay is one ``np.take`` through a 256-entry ARGB table,
over the box where the label map has labels only (found once per label map): organs fill a
small part of a scan, and cutting a sagittal label slice is a cache miss per pixel.
Both items hand Qt formats its raster engine draws without converting (``RGB32``/``ARGB32``);
``Grayscale8`` and ``Indexed8`` -- what pyqtgraph makes of windowed uint8 -- are converted on
every paint, which costs several times more than the lookup (see ``benchmarks/render.py``).

Mouse and wheel events are handled here, on the graphics view's viewport, before pyqtgraph's
scene sees them: the tools need exact press/drag/release semantics (pyqtgraph's scene drops
moves above its rate limit and turns short drags into clicks).

Editing annotations. A click on an annotation of the current slice asks for it to be selected
(``annotation_selected``); the view draws the selection it is given back
(:meth:`SliceView.set_selected_annotation`), with square handles at its defining points. Hit
tests are in viewport pixels, so the tolerance is the same at any zoom. A left press on a handle
of the selected annotation -- or on its body -- wins over every tool (window/level, crosshair,
drawing): dragging moves that point (or the whole shape) with a live preview, and the release
emits the edited copy (``annotation_edited``). The view never changes an annotation itself: the
store does, so every edit is one undoable step.
"""

from __future__ import annotations

import dataclasses
import html
import math
from dataclasses import dataclass

import numpy as np
import pyqtgraph as pg
from PySide6 import QtCore, QtGui, QtWidgets

from radview.core.annotations import Annotation, AnnotationKind
from radview.core.dicom_text import format_dicom_date, format_person_name
from radview.core.labelmap import LabelMap
from radview.core.viewer_state import Tool, ViewerState
from radview.core.volume import PlaneGeometry, ViewPlane, Volume
from radview.core.windowing import WindowLevel, window_for, window_to_uint8
from radview.viewer.state_binding import bind_while_alive

__all__ = [
    "PLANE_COLOURS",
    "HIT_TOLERANCE_PIXELS",
    "WINDOW_DRAG_PIXELS",
    "ZOOM_DRAG_PIXELS",
    "PAGE_STEP",
    "SliceView",
    "label_bounds",
    "label_outline",
    "DisplayTable",
    "PackedImageItem",
    "label_table_argb32",
]

#: Colour that identifies each plane: its crosshair line in the other views and its label.
#: (Slicer's red / green / yellow convention.)
PLANE_COLOURS: dict[ViewPlane, tuple[int, int, int]] = {
    ViewPlane.AXIAL: (230, 80, 80),
    ViewPlane.CORONAL: (90, 200, 110),
    ViewPlane.SAGITTAL: (235, 205, 60),
}

#: Which planes the crosshair lines of a view stand for: (vertical line, horizontal line).
#: Follows the screen layout of ``core.volume``: axial columns run R->L (the sagittal plane is
#: vertical), its rows A->P; coronal and sagittal rows run S->I (the axial plane is horizontal).
_CROSSHAIR_PLANES: dict[ViewPlane, tuple[ViewPlane, ViewPlane]] = {
    ViewPlane.AXIAL: (ViewPlane.SAGITTAL, ViewPlane.CORONAL),
    ViewPlane.CORONAL: (ViewPlane.SAGITTAL, ViewPlane.AXIAL),
    ViewPlane.SAGITTAL: (ViewPlane.CORONAL, ViewPlane.AXIAL),
}

#: Left-drag window/level: dragging this many pixels right doubles the window width; dragging
#: it down raises the level by the starting width (so the feel is the same for a 80 HU brain
#: window and a 1500 HU lung window).
WINDOW_DRAG_PIXELS = 200.0
#: Right-drag zoom: dragging this many pixels up doubles the magnification.
ZOOM_DRAG_PIXELS = 100.0
#: Slices moved by PageUp / PageDown.
PAGE_STEP = 10
#: Mouse travel (screen pixels) below which a press + release is a click, not a drag.
_CLICK_DISTANCE = 4.0
#: How near (screen pixels) a press must be to an annotation's outline or handle to hit it.
HIT_TOLERANCE_PIXELS = 6.0
#: Half the side of the square handles drawn at the selected annotation's points (screen pixels).
_HANDLE_HALF_SIZE = 3.5
#: Ellipse outlines are hit-tested as a polygon of this many sides (error < 0.1 px at 100 px).
_ELLIPSE_HIT_SIDES = 96

_BACKGROUND = (0, 0, 0)
_TEXT_COLOUR = QtGui.QColor(235, 235, 235)
_SHADOW_COLOUR = QtGui.QColor(0, 0, 0, 220)
_ANNOTATION_COLOUR = (0, 200, 255)
_SELECTED_COLOUR = (255, 230, 0)
_PREVIEW_COLOUR = (255, 160, 0)
_DRAWING_TOOLS = {
    Tool.RULER: AnnotationKind.RULER,
    Tool.ANGLE: AnnotationKind.ANGLE,
    Tool.ELLIPSE: AnnotationKind.ELLIPSE,
    Tool.RECTANGLE: AnnotationKind.RECTANGLE,
}


# ============================================================================ pixel maths
class DisplayTable:
    """Voxel value -> 32-bit RGB pixel, as a lookup table cached per (dtype, window, invert).

    For 8- and 16-bit data the table holds every possible value, so windowing a slice is one
    ``np.take`` (integers index the table through their unsigned view: no conversion). Wider
    types go through :func:`window_to_uint8` and a 256-entry grey table.
    """

    def __init__(self) -> None:
        self._key: tuple | None = None
        self._table = np.empty(0, np.uint32)
        self._grey = _grey_rgb32()

    def apply(self, image: np.ndarray, window: WindowLevel, invert: bool,
              out: np.ndarray) -> np.ndarray:
        """Write the display pixels of ``image`` into ``out`` (uint32, same shape)."""
        dtype = image.dtype
        if dtype.itemsize <= 2 and dtype.kind in "iu":
            table = self._table_for(dtype, window, invert)
            unsigned = image.view(np.uint8 if dtype.itemsize == 1 else np.uint16)
            # mode="wrap": every value indexes the full table, and unlike the default "raise"
            # numpy then writes straight into ``out`` instead of through a temporary.
            return np.take(table, unsigned, out=out, mode="wrap")
        grey = window_to_uint8(image, window, invert=invert)
        return np.take(self._grey, grey, out=out, mode="wrap")

    def _table_for(self, dtype: np.dtype, window: WindowLevel, invert: bool) -> np.ndarray:
        key = (dtype.str, window, invert)
        if key != self._key:
            unsigned = np.uint8 if dtype.itemsize == 1 else np.uint16
            # Entry u of the table is the voxel whose bits read as u when unsigned.
            values = np.arange(np.iinfo(unsigned).max + 1, dtype=unsigned).view(dtype)
            self._table = np.take(self._grey, window_to_uint8(values, window, invert=invert))
            self._key = key
        return self._table


def _grey_rgb32() -> np.ndarray:
    grey = np.arange(256, dtype=np.uint32)
    return (0xFF000000 | (grey << 16) | (grey << 8) | grey).astype(np.uint32)


def label_table_argb32(labels: LabelMap) -> np.ndarray:
    """The label map's RGBA lookup table packed as 256 ARGB32 pixels (Qt's native order)."""
    rgba = labels.lookup_table().astype(np.uint32)
    return (rgba[:, 3] << 24) | (rgba[:, 0] << 16) | (rgba[:, 1] << 8) | rgba[:, 2]


def label_outline(labels: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """``labels`` kept only where a 4-neighbour differs (the outline), 0 elsewhere.

    Pixels on the image border count as outline. Whole-array comparisons of the 2D slice:
    ~0.3 ms for 512 x 512, so outline mode costs no precomputation per volume.
    """
    out = np.empty(labels.shape, np.uint8) if out is None else out
    out[...] = labels
    if labels.shape[0] < 3 or labels.shape[1] < 3:
        return out
    centre = labels[1:-1, 1:-1]
    interior = centre == labels[:-2, 1:-1]
    interior &= centre == labels[2:, 1:-1]
    interior &= centre == labels[1:-1, :-2]
    interior &= centre == labels[1:-1, 2:]
    np.multiply(centre, ~interior, out=out[1:-1, 1:-1], casting="unsafe")
    return out


def label_bounds(voxels: np.ndarray) -> tuple[slice, slice, slice] | None:
    """Array-axis slices of the box holding every non-zero label (None: all background).

    Organ and lesion labels fill a small part of a scan; the overlay only cuts, colours and
    paints this box. Two passes over the label map (~20 ms for 512 x 512 x 500).
    """
    per_slice = voxels.max(axis=(1, 2))
    slices = np.flatnonzero(per_slice)
    if slices.size == 0:
        return None
    k0, k1 = int(slices[0]), int(slices[-1]) + 1
    footprint = voxels[k0:k1].max(axis=0)
    rows = np.flatnonzero(footprint.max(axis=1))
    cols = np.flatnonzero(footprint.max(axis=0))
    return (slice(k0, k1), slice(int(rows[0]), int(rows[-1]) + 1),
            slice(int(cols[0]), int(cols[-1]) + 1))


@dataclass(frozen=True)
class _PlaneFrame:
    """How pixels of one plane map to LPS mm, taken from ``Volume.world_of_plane_pixel``.

    The map is affine in ``(slice, row, col)``, so three differences of it give every
    direction; with an orthonormal ``direction`` the row, column and slice steps are
    perpendicular, which makes the inverse a projection.
    """

    geometry: PlaneGeometry
    rows: int
    cols: int
    origin: np.ndarray  # LPS of pixel (0, 0) of slice 0
    row_step: np.ndarray  # LPS mm per row down the screen
    col_step: np.ndarray  # LPS mm per column to the right
    slice_step: np.ndarray  # LPS mm per slice number

    @classmethod
    def of(cls, volume: Volume, plane: ViewPlane) -> _PlaneFrame:
        geometry = volume.plane_geometry(plane)
        rows, cols = volume.plane_slice(plane, 0).shape
        origin = volume.world_of_plane_pixel(plane, 0, 0.0, 0.0)
        return cls(
            geometry=geometry,
            rows=int(rows),
            cols=int(cols),
            origin=origin,
            row_step=volume.world_of_plane_pixel(plane, 0, 1.0, 0.0) - origin,
            col_step=volume.world_of_plane_pixel(plane, 0, 0.0, 1.0) - origin,
            slice_step=volume.world_of_plane_pixel(plane, 1, 0.0, 0.0) - origin,
        )

    @property
    def size_mm(self) -> tuple[float, float]:
        """(width, height) of the whole image in mm."""
        row_mm, col_mm = self.geometry.pixel_spacing
        return self.cols * col_mm, self.rows * row_mm

    def display_bounds(self, bounds: tuple[slice, slice, slice]
                       ) -> tuple[range, slice, slice]:
        """Array-axis bounds as (slice numbers, display rows, display columns) of this plane."""
        g = self.geometry

        def shown(axis: int, flipped: bool, count: int) -> tuple[int, int]:
            start, stop = bounds[axis].start, bounds[axis].stop
            return (count - stop, count - start) if flipped else (start, stop)

        first, last = shown(g.normal_axis, g.normal_flipped, g.slice_count)
        row0, row1 = shown(g.row_axis, g.row_flipped, self.rows)
        col0, col1 = shown(g.col_axis, g.col_flipped, self.cols)
        return range(first, last), slice(row0, row1), slice(col0, col1)

    def pixel_of_world(self, xyz: np.ndarray | tuple[float, float, float]) -> tuple[float, float]:
        offset = np.asarray(xyz, dtype=np.float64) - self.origin
        row = float(offset @ self.row_step) / float(self.row_step @ self.row_step)
        col = float(offset @ self.col_step) / float(self.col_step @ self.col_step)
        return row, col

    def view_of_pixel(self, row: float, col: float) -> QtCore.QPointF:
        row_mm, col_mm = self.geometry.pixel_spacing
        return QtCore.QPointF((col + 0.5) * col_mm, (row + 0.5) * row_mm)

    def pixel_of_view(self, point: QtCore.QPointF) -> tuple[float, float]:
        row_mm, col_mm = self.geometry.pixel_spacing
        return point.y() / row_mm - 0.5, point.x() / col_mm - 0.5

    def position_text(self, index: int) -> str:
        """Where slice ``index`` lies along the plane's normal, e.g. ``'S 12.5 mm'``."""
        normal = self.slice_step / float(np.linalg.norm(self.slice_step))
        position = float((self.origin + index * self.slice_step) @ normal)
        axis = int(np.argmax(np.abs(normal)))
        position *= 1.0 if normal[axis] > 0 else -1.0
        negative, positive = (("R", "L"), ("A", "P"), ("I", "S"))[axis]
        letter = positive if position >= 0 else negative
        return f"{letter} {abs(position):.1f} mm"


# ============================================================================ graphics items
class PackedImageItem(pg.ImageItem):
    """An ImageItem that shows a prepared uint32 image (``RGB32``/``ARGB32``) as it is.

    pyqtgraph's ``render`` would re-derive a QImage through its levels/LUT machinery on every
    change; our pixels are final, so the QImage is a zero-copy wrapper of the buffer.
    """

    def __init__(self, image_format: QtGui.QImage.Format) -> None:
        super().__init__(axisOrder="row-major")
        self._image_format = image_format

    def render(self) -> None:
        image = self.image
        if image is None or image.size == 0:
            self._unrenderable = True
            return
        self.qimage = pg.functions.ndarray_to_qimage(image, self._image_format)
        self._renderRequired = False
        self._unrenderable = False


class _GraphicsView(pg.GraphicsView):
    """pyqtgraph's GraphicsView, telling when its scene (= viewport pixels) was resized."""

    resized = QtCore.Signal()

    def resizeEvent(self, event: QtGui.QResizeEvent) -> None:
        super().resizeEvent(event)  # sets the scene rect to the new viewport rect
        self.resized.emit()


class _TextItem(QtWidgets.QGraphicsItem):
    """Plain text lines with a dark shadow, anchored by a corner/edge to a scene point.

    Plain ``drawText`` (never rich text): header strings cannot inject markup here, and it is
    the cheapest text Qt can paint -- these lines change on every slice.
    """

    def __init__(self, alignment: QtCore.Qt.AlignmentFlag, point_size: float = 9.0,
                 bold: bool = False) -> None:
        super().__init__()
        self._alignment = alignment
        self._font = QtGui.QFont()
        self._font.setPointSizeF(point_size)
        self._font.setBold(bold)
        self._metrics = QtGui.QFontMetricsF(self._font)
        self._lines: tuple[str, ...] = ()
        self._colour = _TEXT_COLOUR
        self._rect = QtCore.QRectF()
        self._anchor = QtCore.QPointF()
        self.setZValue(100)

    @property
    def text(self) -> str:
        return "\n".join(self._lines)

    def set_colour(self, colour: QtGui.QColor) -> None:
        self._colour = colour
        self.update()

    def set_lines(self, *lines: str) -> None:
        lines = tuple(line for line in lines if line)
        if lines == self._lines:
            return
        self.prepareGeometryChange()
        self._lines = lines
        width = max((self._metrics.horizontalAdvance(line) for line in lines), default=0.0)
        self._rect = QtCore.QRectF(0, 0, width + 2, self._metrics.lineSpacing() * len(lines) + 2)
        self._place()

    def set_anchor(self, point: QtCore.QPointF) -> None:
        self._anchor = QtCore.QPointF(point)
        self._place()

    def _place(self) -> None:
        x, y = self._anchor.x(), self._anchor.y()
        align = self._alignment
        if align & QtCore.Qt.AlignmentFlag.AlignRight:
            x -= self._rect.width()
        elif align & QtCore.Qt.AlignmentFlag.AlignHCenter:
            x -= self._rect.width() / 2
        if align & QtCore.Qt.AlignmentFlag.AlignBottom:
            y -= self._rect.height()
        elif align & QtCore.Qt.AlignmentFlag.AlignVCenter:
            y -= self._rect.height() / 2
        self.setPos(round(x), round(y))

    def boundingRect(self) -> QtCore.QRectF:
        return self._rect

    def paint(self, painter: QtGui.QPainter, option, widget=None) -> None:
        if not self._lines:
            return
        painter.setFont(self._font)
        line_height = self._metrics.lineSpacing()
        ascent = self._metrics.ascent()
        right = self._alignment & QtCore.Qt.AlignmentFlag.AlignRight
        centre = self._alignment & QtCore.Qt.AlignmentFlag.AlignHCenter
        for number, line in enumerate(self._lines):
            x = 0.0
            if right or centre:
                spare = self._rect.width() - 2 - self._metrics.horizontalAdvance(line)
                x = spare if right else spare / 2
            y = ascent + number * line_height
            painter.setPen(_SHADOW_COLOUR)
            painter.drawText(QtCore.QPointF(x + 1, y + 1), line)
            painter.setPen(self._colour)
            painter.drawText(QtCore.QPointF(x, y), line)


class _RichTextItem(QtWidgets.QGraphicsItem):
    """A small rich-text block (the patient header) with the same shadow as ``_TextItem``.

    Callers must pass escaped text: the header strings come from DICOM files.
    """

    def __init__(self) -> None:
        super().__init__()
        self._document = QtGui.QTextDocument()
        self._document.setDocumentMargin(0)
        font = QtGui.QFont()
        font.setPointSizeF(9.0)
        self._document.setDefaultFont(font)
        self._html = ""
        self.setZValue(100)

    def font(self) -> QtGui.QFont:
        return self._document.defaultFont()

    @property
    def text(self) -> str:
        return self._document.toPlainText()

    def set_html(self, markup: str) -> None:
        if markup == self._html:
            return
        self.prepareGeometryChange()
        self._html = markup
        self._document.setHtml(markup)
        self.update()

    def boundingRect(self) -> QtCore.QRectF:
        size = self._document.size()
        return QtCore.QRectF(0, 0, size.width() + 1, size.height() + 1)

    def paint(self, painter: QtGui.QPainter, option, widget=None) -> None:
        if not self._html:
            return
        layout = self._document.documentLayout()
        context = QtGui.QAbstractTextDocumentLayout.PaintContext()
        painter.translate(1, 1)
        context.palette.setColor(QtGui.QPalette.ColorRole.Text, _SHADOW_COLOUR)
        layout.draw(painter, context)
        painter.translate(-1, -1)
        context.palette.setColor(QtGui.QPalette.ColorRole.Text, _TEXT_COLOUR)
        layout.draw(painter, context)


class _SliceBar(QtWidgets.QScrollBar):
    """A thin vertical scroll bar for the slice number, painted flat in the plane's colour.

    The style's own scroll bar (gradients, arrow buttons) costs ~1.5 ms to paint -- as much
    as the whole image -- and it repaints on every slice change; two ``fillRect`` do not.
    Geometry (where the handle is, what a click hits) still comes from the style.
    """

    def __init__(self, colour: tuple[int, int, int]) -> None:
        super().__init__(QtCore.Qt.Orientation.Vertical)
        self._groove = QtGui.QColor(28, 28, 28)
        self._handle = QtGui.QColor(*colour, 170)

    def paintEvent(self, event: QtGui.QPaintEvent) -> None:
        painter = QtGui.QPainter(self)
        painter.fillRect(self.rect(), self._groove)
        if self.maximum() > self.minimum():
            option = QtWidgets.QStyleOptionSlider()
            self.initStyleOption(option)
            handle = self.style().subControlRect(
                QtWidgets.QStyle.ComplexControl.CC_ScrollBar, option,
                QtWidgets.QStyle.SubControl.SC_ScrollBarSlider, self)
            painter.fillRect(handle.adjusted(2, 0, -2, 0), self._handle)
        painter.end()


def _pen(colour: tuple[int, ...], width: float = 1.5) -> QtGui.QPen:
    pen = QtGui.QPen(QtGui.QColor(*colour))
    pen.setWidthF(width)
    pen.setCosmetic(True)  # width in screen pixels at any zoom
    return pen


# ============================================================================ the view
@dataclass(frozen=True)
class _Hit:
    """What a viewport position is on: an annotation's handle, or its body."""

    annotation_id: str
    point: int | None  # index of the handle (defining point) hit; None: the outline / inside


@dataclass
class _Press:
    """A mouse press being tracked until it becomes a click or a drag."""

    button: QtCore.Qt.MouseButton
    modifiers: QtCore.Qt.KeyboardModifier
    position: QtCore.QPointF  # viewport pixels
    last: QtCore.QPointF
    mode: str = ""  # "" until dragged; then window / zoom / pan / draw / edit
    window: WindowLevel | None = None
    hit: _Hit | None = None  # the annotation under the press, if any


@dataclass
class _Edit:
    """A handle or body drag of the selected annotation, until the release commits it.

    Pixels are this plane's continuous ``(row, col)``; ``delta`` is how far the mouse has moved
    the grabbed point(s) since the press, so grabbing a handle off its centre makes no jump.
    """

    annotation: Annotation
    point: int | None  # the point being moved; None: all of them (the body was grabbed)
    pixels: tuple[tuple[float, float], ...]  # the annotation's points when the drag began
    start: tuple[float, float]  # the pixel under the press
    delta: tuple[float, float] = (0.0, 0.0)

    def moved_pixels(self) -> list[tuple[float, float]]:
        d_row, d_col = self.delta
        return [(row + d_row, col + d_col) if self.point in (None, number) else (row, col)
                for number, (row, col) in enumerate(self.pixels)]


class SliceView(QtWidgets.QWidget):
    """One plane of the viewer state, with overlay, crosshair, text, tools and a slice bar.

    Wheel, Up/Down, PageUp/PageDown (10), Home/End scroll slices; left-drag sets window/level
    (``Tool.WINDOW``) or draws the active measurement tool (the angle takes three clicks);
    right-drag zooms, middle- or Shift+left-drag pans; a click moves the crosshair; a
    double-click maximises the view (again: restores); R resets zoom, pan and window; I
    inverts; Escape drops a half-drawn annotation or cancels an edit in progress.

    A click on an annotation of this slice selects it (a click elsewhere drops a selection
    shown here); left-dragging a handle of the selected annotation moves that point, dragging
    its body moves the whole annotation, in any tool; Delete / Backspace delete it.

    Parameters
    ----------
    state
        The shared :class:`ViewerState`; the view draws from it and changes it, never keeps
        a copy.
    plane
        Which plane this view shows.

    Signals
    -------
    annotation_created(Annotation)
        A ruler / angle / ellipse / rectangle was completed; points in LPS mm.
    annotation_selected(str)
        The user clicked this annotation id; ``""`` when a click elsewhere dropped the
        selection shown in this view. The view shows the selection only once it is given
        back through :meth:`set_selected_annotation`.
    annotation_edited(Annotation)
        A handle or body drag ended: a copy of the selected annotation (same id, kind, plane,
        slice and label) with the moved point(s) in LPS mm.
    annotation_delete_requested(str)
        Delete / Backspace was pressed while the selected annotation is shown here.
    cursor_moved(tuple, object, object)
        The mouse hovers over ``(x, y, z)`` LPS mm; the voxel value there (``float`` in the
        volume's unit, ``None`` outside the image) and the label name there (``None`` when no
        overlay is shown or the pixel is background).
    """

    annotation_created = QtCore.Signal(object)
    annotation_selected = QtCore.Signal(str)
    annotation_edited = QtCore.Signal(object)
    annotation_delete_requested = QtCore.Signal(str)
    cursor_moved = QtCore.Signal(object, object, object)

    def __init__(self, state: ViewerState, plane: ViewPlane,
                 parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self._state = state
        self._plane = plane
        self._frame: _PlaneFrame | None = None
        self._index = 0
        self._image_slice: np.ndarray | None = None  # the plane_slice view on display
        self._label_slice: np.ndarray | None = None
        self._image_buffer = np.empty((0, 0), np.uint32)
        self._overlay_buffer = np.empty((0, 0), np.uint32)
        self._outline_buffer = np.empty((0, 0), np.uint8)
        self._display_table = DisplayTable()
        self._label_table: np.ndarray | None = None
        # Where labels exist in this plane: slice numbers, and the display rows/columns that
        # the overlay item covers (its buffer has exactly that shape).
        self._label_slices = range(0)
        self._label_region = (slice(0, 1), slice(0, 1))
        self._overlay_dirty = True
        # The items' mm rectangles must be set again after the image shape changed.
        self._image_rect_stale = True
        self._overlay_rect_stale = True
        self._message = ""
        self._annotations: list[Annotation] = []
        self._annotation_labels: dict[str, str] = {}
        self._selected_id: str | None = None
        # The graphics items of each annotation drawn (outline + label; handles are children
        # of the outline, so they come and go with it).
        self._annotation_items: dict[str, list[QtWidgets.QGraphicsItem]] = {}
        self._handle_items: list[QtWidgets.QGraphicsItem] = []
        self._shown_annotations: tuple[str, ...] | None = None
        self._edit: _Edit | None = None
        self._press: _Press | None = None
        self._draw_points: list[tuple[float, float]] = []  # (row, col) of the tool in progress
        self._wheel_remainder = 0

        self.setFocusPolicy(QtCore.Qt.FocusPolicy.StrongFocus)
        self._build_widgets()
        self._connect_state()
        self._on_volume_changed()

    # ------------------------------------------------------------------ public API
    @property
    def plane(self) -> ViewPlane:
        return self._plane

    @property
    def slice_index(self) -> int:
        """The slice on display (0 while no volume is shown)."""
        return self._index

    @property
    def image_item(self) -> pg.ImageItem:
        return self._image_item

    @property
    def overlay_item(self) -> pg.ImageItem:
        return self._overlay_item

    @property
    def view_box(self) -> pg.ViewBox:
        return self._view_box

    @property
    def graphics_view(self) -> pg.GraphicsView:
        return self._graphics

    @property
    def slider(self) -> QtWidgets.QScrollBar:
        return self._slider

    @property
    def crosshair_lines(self) -> tuple[pg.InfiniteLine, pg.InfiniteLine]:
        """(vertical, horizontal) crosshair lines, in view mm."""
        return self._vertical_line, self._horizontal_line

    def edge_letters(self) -> tuple[str, str, str, str]:
        """The orientation letters on display: (top, bottom, left, right); '' when hidden."""
        return tuple(_shown_text(item) for item in self._letter_items)  # type: ignore[return-value]

    def corner_text(self) -> dict[str, str]:
        """Plain text of the corner annotations on display, keyed ``top_left`` etc."""
        items = (self._header_item, self._top_right_item, self._bottom_left_item,
                 self._bottom_right_item)
        keys = ("top_left", "top_right", "bottom_left", "bottom_right")
        return {key: _shown_text(item) for key, item in zip(keys, items, strict=True)}

    def message(self) -> str:
        return self._message

    def set_message(self, text: str) -> None:
        """Show ``text`` centred over the view ('Loading 12/500...', an error); '' hides it.

        While the state has no volume, this message is all the view draws.
        """
        self._message = text
        self._message_item.set_lines(*text.splitlines())
        self._message_item.setVisible(bool(text))

    def set_annotations(self, annotations: list[Annotation], labels: dict[str, str]) -> None:
        """Draw ``annotations`` that lie on this plane's current slice, with ``labels[id]``.

        An edit in progress is dropped if its annotation changed or went away meanwhile (an
        undo during the drag): its moved copy would overwrite that change.
        """
        self._annotations = list(annotations)
        self._annotation_labels = dict(labels)
        if self._edit is not None and self._edit.annotation not in self._annotations:
            self._edit = None
        self._shown_annotations = None
        self._refresh_annotations()

    def set_selected_annotation(self, annotation_id: str | None) -> None:
        """Highlight one annotation (or none) and show handles at its points."""
        if annotation_id != self._selected_id:
            self._selected_id = annotation_id
            if self._edit is not None and self._edit.annotation.id != annotation_id:
                self._edit = None
            self._shown_annotations = None
            self._refresh_annotations()

    def handle_points(self) -> list[QtCore.QPointF]:
        """Viewport positions of the handles on display (the selected annotation's points)."""
        to_viewport = self._graphics.viewportTransform()
        return [to_viewport.map(item.scenePos()) for item in self._handle_items]

    def refresh(self) -> None:
        """Draw the current slice again from the arrays (they were changed in place).

        For progressive loading: the loader fills the shown volume's voxels while the views
        display it; nothing about the geometry, window or labels changes.
        """
        if self._frame is None:
            return
        self._render_image()
        self._overlay_dirty = True
        self._render_overlay()

    def shown_annotation_ids(self) -> tuple[str, ...]:
        """Ids of the annotations drawn now (those on this plane's current slice)."""
        return self._shown_annotations or ()

    def overlay_pixels(self) -> np.ndarray | None:
        """The overlay of the current slice as full-size ARGB32 pixels (None: no overlay).

        The overlay item itself covers only the box where labels exist.
        """
        if self._label_table is None or self._frame is None or self._overlay_item.image is None:
            return None
        full = np.zeros((self._frame.rows, self._frame.cols), np.uint32)
        full[self._label_region] = self._overlay_buffer
        return full

    def reset_view(self) -> None:
        """Fit the whole slice in the view (undo zoom and pan)."""
        if self._frame is None:
            return
        width, height = self._frame.size_mm
        self._view_box.setRange(QtCore.QRectF(0, 0, width, height), padding=0.0)

    def view_point_of_world(self, xyz: tuple[float, float, float]) -> QtCore.QPointF:
        """Where an LPS point falls in this view's mm coordinates (needs a volume)."""
        if self._frame is None:
            raise RuntimeError("no volume on display")
        return self._frame.view_of_pixel(*self._frame.pixel_of_world(xyz))

    def view_point_of_pixel(self, row: float, col: float) -> QtCore.QPointF:
        """Where continuous pixel ``(row, col)`` of this plane lies in the view's mm."""
        if self._frame is None:
            raise RuntimeError("no volume on display")
        return self._frame.view_of_pixel(row, col)

    def add_beside_slider(self, widget: QtWidgets.QWidget) -> None:
        """Put ``widget`` between the image and the slice bar, at the bar's full height (a
        strip whose rows line up with the bar's positions, e.g. the triage strip)."""
        layout = self.layout()
        layout.insertWidget(layout.indexOf(self._slider), widget)

    def viewport_point_of_pixel(self, row: float, col: float) -> QtCore.QPointF:
        """Viewport pixel position (float) of image pixel ``(row, col)`` of this plane."""
        if self._frame is None:
            raise RuntimeError("no volume on display")
        scene = self._view_box.mapViewToScene(self._frame.view_of_pixel(row, col))
        return self._graphics.viewportTransform().map(scene)

    # ------------------------------------------------------------------ construction
    def _build_widgets(self) -> None:
        self._graphics = _GraphicsView(background=_BACKGROUND)
        self._graphics.setFocusPolicy(QtCore.Qt.FocusPolicy.NoFocus)
        self._graphics.viewport().setFocusPolicy(QtCore.Qt.FocusPolicy.NoFocus)
        self._graphics.viewport().installEventFilter(self)
        self._graphics.setMinimumSize(64, 64)

        self._view_box = pg.ViewBox(lockAspect=True, invertY=True, enableMouse=False,
                                    enableMenu=False, defaultPadding=0.0)
        self._view_box.disableAutoRange()
        self._graphics.setCentralItem(self._view_box)

        self._image_item = PackedImageItem(QtGui.QImage.Format.Format_RGB32)
        self._overlay_item = PackedImageItem(QtGui.QImage.Format.Format_ARGB32)
        self._overlay_item.setZValue(1)
        self._view_box.addItem(self._image_item)
        self._view_box.addItem(self._overlay_item)

        vertical_plane, horizontal_plane = _CROSSHAIR_PLANES[self._plane]
        self._vertical_line = pg.InfiniteLine(
            angle=90, movable=False, pen=pg.mkPen(PLANE_COLOURS[vertical_plane] + (150,)))
        self._horizontal_line = pg.InfiniteLine(
            angle=0, movable=False, pen=pg.mkPen(PLANE_COLOURS[horizontal_plane] + (150,)))
        for line in (self._vertical_line, self._horizontal_line):
            line.setZValue(10)
            self._view_box.addItem(line, ignoreBounds=True)

        self._preview_item = QtWidgets.QGraphicsPathItem()
        self._preview_item.setPen(_pen(_PREVIEW_COLOUR))
        self._preview_item.setZValue(30)
        self._view_box.addItem(self._preview_item, ignoreBounds=True)
        self._preview_label = pg.TextItem(color=_PREVIEW_COLOUR, anchor=(0, 1))
        self._preview_label.setZValue(31)
        self._view_box.addItem(self._preview_label, ignoreBounds=True)

        # Text lives in the scene, not the ViewBox: scene units are viewport pixels.
        align = QtCore.Qt.AlignmentFlag
        scene = self._graphics.scene()
        self._header_item = _RichTextItem()
        self._top_right_item = _TextItem(align.AlignRight | align.AlignTop)
        self._top_right_item.set_colour(QtGui.QColor(*PLANE_COLOURS[self._plane]))
        self._bottom_left_item = _TextItem(align.AlignLeft | align.AlignBottom)
        self._bottom_right_item = _TextItem(align.AlignRight | align.AlignBottom)
        self._letter_items = (
            _TextItem(align.AlignHCenter | align.AlignTop, 11, bold=True),
            _TextItem(align.AlignHCenter | align.AlignBottom, 11, bold=True),
            _TextItem(align.AlignLeft | align.AlignVCenter, 11, bold=True),
            _TextItem(align.AlignRight | align.AlignVCenter, 11, bold=True),
        )
        self._message_item = _TextItem(align.AlignHCenter | align.AlignVCenter, 12, bold=True)
        self._message_item.setZValue(200)
        self._message_item.setVisible(False)
        for item in (self._header_item, self._top_right_item, self._bottom_left_item,
                     self._bottom_right_item, *self._letter_items, self._message_item):
            scene.addItem(item)

        self._slider = _SliceBar(PLANE_COLOURS[self._plane])
        self._slider.setFocusPolicy(QtCore.Qt.FocusPolicy.NoFocus)
        # Higher slice numbers (superior / posterior / left) at the top, like the wheel.
        self._slider.setInvertedAppearance(True)
        self._slider.setInvertedControls(False)
        self._slider.setFixedWidth(12)
        self._slider.setToolTip(f"{self._plane.value.capitalize()} slice")
        self._slider.valueChanged.connect(self._on_slider_moved)

        layout = QtWidgets.QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(1)
        layout.addWidget(self._graphics, 1)
        layout.addWidget(self._slider)

        self._view_box.sigTransformChanged.connect(self._on_view_transform_changed)
        self._graphics.resized.connect(self._place_text)

    def _connect_state(self) -> None:
        events = self._state.events
        handlers = [
            (events.volume, self._on_volume_changed),
            (events.labels, self._on_labels_changed),
            (events.study, self._on_header_changed),
            (events.hide_patient_info, self._on_header_changed),
            (events.cursor, self._on_cursor_changed),
            (events.window, self._on_window_changed),
            (events.invert, self._on_window_changed),
            (events.overlay_visible, self._on_overlay_style_changed),
            (events.overlay_opacity, self._on_overlay_style_changed),
            (events.overlay_outline, self._on_overlay_changed),
            (events.tool, self._on_tool_changed),
        ]
        bind_while_alive(self, handlers)

    # ------------------------------------------------------------------ state events
    def _on_volume_changed(self, *_: object) -> None:
        volume = self._state.volume
        self._cancel_drawing()
        if volume is None:
            self._frame = None
            self._image_slice = self._label_slice = None
            self._index = 0
            self._image_item.clear()
            self._overlay_item.clear()
            self._set_volume_items_visible(False)
            self._slider.blockSignals(True)
            self._slider.setRange(0, 0)
            self._slider.blockSignals(False)
            self._refresh_annotations()
            return
        previous = self._frame
        self._frame = _PlaneFrame.of(volume, self._plane)
        # The same grid again (a provisional volume replaced by the finished load, a
        # re-opened series): keep the user's zoom and pan.
        same_grid = previous is not None and (
            (previous.rows, previous.cols, previous.geometry.pixel_spacing)
            == (self._frame.rows, self._frame.cols, self._frame.geometry.pixel_spacing))
        shape = (self._frame.rows, self._frame.cols)
        self._image_buffer = np.empty(shape, np.uint32)
        self._image_rect_stale = True
        self._overlay_dirty = True
        self._index = self._state.slice_index(self._plane)
        self._slider.blockSignals(True)
        self._slider.setRange(0, self._frame.geometry.slice_count - 1)
        self._slider.setPageStep(PAGE_STEP)
        self._slider.setValue(self._index)
        self._slider.blockSignals(False)
        for item, letter in zip(self._letter_items, self._frame.geometry.edge_letters,
                                strict=True):
            item.set_lines(letter)
        self._set_volume_items_visible(True)
        self._render_image()
        self._labels_to_table()
        self._render_overlay()
        self._on_overlay_style_changed()
        self._place_crosshair()
        self._update_slice_text()
        self._update_window_text()
        self._on_header_changed()
        if not same_grid:
            self.reset_view()
        self._refresh_annotations()

    def _on_labels_changed(self, *_: object) -> None:
        self._labels_to_table()
        self._overlay_dirty = True
        self._render_overlay()
        self._on_overlay_style_changed()

    def _on_cursor_changed(self, *_: object) -> None:
        if self._frame is None:
            return
        index = self._state.slice_index(self._plane)
        if index != self._index:
            self._index = index
            self._render_image()
            self._overlay_dirty = True
            self._render_overlay()
            self._slider.blockSignals(True)
            self._slider.setValue(index)
            self._slider.blockSignals(False)
            self._update_slice_text()
            self._cancel_drawing()
            self._refresh_annotations()
        self._place_crosshair()

    def _on_window_changed(self, *_: object) -> None:
        if self._frame is not None:
            self._render_image()
        self._update_window_text()

    def _on_overlay_changed(self, *_: object) -> None:
        self._overlay_dirty = True
        self._render_overlay()

    def _on_overlay_style_changed(self, *_: object) -> None:
        state = self._state
        shown = state.overlay_visible and self._label_table is not None and self._frame is not None
        self._overlay_item.setOpacity(float(np.clip(state.overlay_opacity, 0.0, 1.0)))
        self._overlay_item.setVisible(shown)
        if shown and self._overlay_dirty:
            self._render_overlay()

    def _on_header_changed(self, *_: object) -> None:
        study = self._state.study
        lines: list[tuple[str, bool]] = []  # (plain text, bold)
        if not self._state.hide_patient_info:
            if study.patient_name:
                lines.append((format_person_name(study.patient_name), True))
            if study.patient_id:
                lines.append((f"ID {study.patient_id}", False))
        if study.study_date:
            lines.append((format_dicom_date(study.study_date), False))
        if study.series_description:
            lines.append((study.series_description, False))
        # Long lines end in an ellipsis before the top orientation letter (narrow views).
        room = max(40, self._graphics.viewport().width() // 2 - 20)
        font = self._header_item.font()
        bold = QtGui.QFont(font)
        bold.setBold(True)
        metrics = {False: QtGui.QFontMetrics(font), True: QtGui.QFontMetrics(bold)}
        markup = []
        for text, is_bold in lines:
            shown = metrics[is_bold].elidedText(text, QtCore.Qt.TextElideMode.ElideRight, room)
            # Escaped: these strings come from DICOM headers and this is rich text.
            shown = html.escape(shown)
            markup.append(f"<b>{shown}</b>" if is_bold else shown)
        self._header_item.set_html("<br>".join(markup))
        modality = study.modality or (self._state.volume.modality if self._state.volume else "")
        self._top_right_item.set_lines(self._plane.value.capitalize(), modality)

    def _on_tool_changed(self, *_: object) -> None:
        self._cancel_drawing()
        self._graphics.viewport().setCursor(self._tool_cursor())

    def _tool_cursor(self) -> QtCore.Qt.CursorShape:
        return (QtCore.Qt.CursorShape.CrossCursor if self._state.tool in _DRAWING_TOOLS
                else QtCore.Qt.CursorShape.ArrowCursor)

    def _on_slider_moved(self, value: int) -> None:
        self._state.set_slice(self._plane, value)

    def _on_view_transform_changed(self, *_: object) -> None:
        self._update_window_text()

    # ------------------------------------------------------------------ rendering
    def _image_rect(self) -> QtCore.QRectF:
        width, height = self._frame.size_mm
        return QtCore.QRectF(0, 0, width, height)

    def _render_image(self) -> None:
        volume = self._state.volume
        if volume is None or self._frame is None:
            return
        self._image_slice = volume.plane_slice(self._plane, self._index)
        state = self._state
        self._display_table.apply(self._image_slice, state.window, state.invert,
                                  self._image_buffer)
        if self._image_rect_stale:
            self._image_item.setImage(self._image_buffer, autoLevels=False,
                                      rect=self._image_rect())
            self._image_rect_stale = False
        else:
            self._image_item.setImage(self._image_buffer, autoLevels=False)

    def _labels_to_table(self) -> None:
        labels = self._state.labels
        volume = self._state.volume
        if labels is None or volume is None or labels.volume.shape != volume.shape:
            self._label_table = None
            return
        self._label_table = label_table_argb32(labels)
        bounds = label_bounds(labels.volume.voxels)
        if bounds is None:
            self._label_slices, self._label_region = range(0), (slice(0, 1), slice(0, 1))
        else:
            self._label_slices, *region = self._frame.display_bounds(bounds)
            self._label_region = tuple(region)  # type: ignore[assignment]
        rows, cols = self._label_region
        shape = (rows.stop - rows.start, cols.stop - cols.start)
        self._overlay_buffer = np.zeros(shape, np.uint32)
        self._outline_buffer = np.zeros(shape, np.uint8)
        self._overlay_rect_stale = True

    def _render_overlay(self) -> None:
        """Cut and colour the label slice -- only while it is shown (else on showing)."""
        labels = self._state.labels
        volume = self._state.volume
        if self._label_table is None or labels is None or volume is None:
            self._label_slice = None
            return
        self._label_slice = volume.plane_slice(self._plane, self._index, labels.volume.voxels)
        if not self._state.overlay_visible:
            return
        if self._index in self._label_slices:
            source = self._label_slice[self._label_region]
            if self._state.overlay_outline:
                # Outside the box there is only background, so the box edge needs no margin.
                source = label_outline(source, self._outline_buffer)
            # mode="wrap": every uint8 indexes the 256-entry table, and unlike the default
            # "raise" it writes straight into ``out`` without a temporary.
            np.take(self._label_table, source, out=self._overlay_buffer, mode="wrap")
        else:
            self._overlay_buffer.fill(0)
        if self._overlay_rect_stale:
            rows, cols = self._label_region
            row_mm, col_mm = self._frame.geometry.pixel_spacing
            rect = QtCore.QRectF(cols.start * col_mm, rows.start * row_mm,
                                 (cols.stop - cols.start) * col_mm,
                                 (rows.stop - rows.start) * row_mm)
            self._overlay_item.setImage(self._overlay_buffer, autoLevels=False, rect=rect)
            self._overlay_rect_stale = False
        else:
            self._overlay_item.setImage(self._overlay_buffer, autoLevels=False)
        self._overlay_dirty = False

    def _set_volume_items_visible(self, visible: bool) -> None:
        for item in (self._image_item, self._vertical_line, self._horizontal_line,
                     self._header_item, self._top_right_item, self._bottom_left_item,
                     self._bottom_right_item, *self._letter_items):
            item.setVisible(visible)
        if not visible:
            self._overlay_item.setVisible(False)

    def _place_crosshair(self) -> None:
        if self._frame is None:
            return
        point = self._frame.view_of_pixel(*self._frame.pixel_of_world(self._state.cursor))
        self._vertical_line.setValue(point.x())
        self._horizontal_line.setValue(point.y())

    def _update_slice_text(self) -> None:
        if self._frame is None:
            return
        count = self._frame.geometry.slice_count
        self._bottom_left_item.set_lines(
            f"Slice {self._index + 1}/{count}", self._frame.position_text(self._index))

    def _update_window_text(self) -> None:
        if self._frame is None:
            return
        window = self._state.window
        text = window.label() + (" inv" if self._state.invert else "")
        pixel_mm = self._view_box.viewPixelSize()[0]
        zoom = self._frame.geometry.pixel_spacing[1] / pixel_mm if pixel_mm > 0 else 0.0
        self._bottom_right_item.set_lines(text, f"Zoom {zoom * 100:.0f}%")

    def _place_text(self) -> None:
        """Anchor the text items to the viewport's corners and edges (scene = pixels)."""
        viewport = self._graphics.viewport().rect()
        to_scene = self._graphics.mapToScene
        margin = 6
        left, top = margin, margin
        right, bottom = viewport.width() - margin, viewport.height() - margin
        centre_x, centre_y = viewport.width() // 2, viewport.height() // 2
        self._header_item.setPos(to_scene(QtCore.QPoint(left, top)))
        self._top_right_item.set_anchor(to_scene(QtCore.QPoint(right, top)))
        self._bottom_left_item.set_anchor(to_scene(QtCore.QPoint(left, bottom)))
        self._bottom_right_item.set_anchor(to_scene(QtCore.QPoint(right, bottom)))
        top_letter, bottom_letter, left_letter, right_letter = self._letter_items
        top_letter.set_anchor(to_scene(QtCore.QPoint(centre_x, top)))
        bottom_letter.set_anchor(to_scene(QtCore.QPoint(centre_x, bottom)))
        left_letter.set_anchor(to_scene(QtCore.QPoint(left, centre_y)))
        right_letter.set_anchor(to_scene(QtCore.QPoint(right, centre_y)))
        self._message_item.set_anchor(to_scene(QtCore.QPoint(centre_x, centre_y)))
        self._on_header_changed()  # its lines are elided to the new width

    # ------------------------------------------------------------------ annotations
    def _refresh_annotations(self) -> None:
        """Rebuild the annotation items when the set on this slice (or the selection) changed."""
        shown = tuple(
            a.id for a in self._annotations
            if self._frame is not None and a.plane is self._plane and a.slice_index == self._index
        )
        if shown == self._shown_annotations:
            return
        self._shown_annotations = shown
        for items in self._annotation_items.values():
            for item in items:
                self._view_box.removeItem(item)
        self._annotation_items = {}
        self._handle_items = []
        by_id = {a.id: a for a in self._annotations}
        for annotation_id in shown:
            self._draw_annotation(by_id[annotation_id])

    def _draw_annotation(self, annotation: Annotation) -> None:
        """Add the items of one annotation (the moved copy while it is being edited)."""
        selected = annotation.id == self._selected_id
        colour = _SELECTED_COLOUR if selected else _ANNOTATION_COLOUR
        edit = self._edit
        if edit is None or edit.annotation != annotation:
            pixels = [self._frame.pixel_of_world(p) for p in annotation.points]
            text = self._annotation_labels.get(annotation.id, annotation.label)
        else:
            pixels = edit.moved_pixels()
            text = self._edit_read_out(edit, pixels)
        path_item = QtWidgets.QGraphicsPathItem(self._shape_path(annotation.kind, pixels))
        path_item.setPen(_pen(colour, 2.5 if selected else 1.5))
        path_item.setZValue(20)
        self._view_box.addItem(path_item, ignoreBounds=True)
        items: list[QtWidgets.QGraphicsItem] = [path_item]
        if selected:
            # Children of the outline: removed with it, and not extra items of the ViewBox.
            self._handle_items = [_handle_item(path_item, self._frame.view_of_pixel(*p), colour)
                                  for p in pixels]
        if text:
            label = pg.TextItem(text, color=colour, anchor=(0, 1),
                                fill=pg.mkBrush(0, 0, 0, 120))
            label.setPos(self._label_anchor(annotation.kind, pixels))
            label.setZValue(21)
            self._view_box.addItem(label, ignoreBounds=True)
            items.append(label)
        self._annotation_items[annotation.id] = items

    def _redraw_annotation(self, annotation: Annotation) -> None:
        """Replace the items of one shown annotation (each move of an edit)."""
        for item in self._annotation_items.pop(annotation.id, []):
            self._view_box.removeItem(item)
        if annotation.id == self._selected_id:
            self._handle_items = []
        self._draw_annotation(annotation)

    def _edit_read_out(self, edit: _Edit, pixels: list[tuple[float, float]]) -> str:
        """The label while a shape is dragged: its own text, and a ruler's live length.

        The measurements come back from ``core.measurements`` once the edit is committed; a
        region's statistics are not recomputed on every mouse move.
        """
        lines = [edit.annotation.label] if edit.annotation.label else []
        if edit.annotation.kind is AnnotationKind.RULER:
            ends = [self._world_of_pixel(*p) for p in pixels]
            lines.append(f"{np.linalg.norm(ends[1] - ends[0]):.1f} mm")
        return "\n".join(lines)

    def _shape_path(self, kind: AnnotationKind,
                    pixels: list[tuple[float, float]]) -> QtGui.QPainterPath:
        points = [self._frame.view_of_pixel(row, col) for row, col in pixels]
        path = QtGui.QPainterPath()
        if kind in (AnnotationKind.RULER, AnnotationKind.ANGLE):
            path.moveTo(points[0])
            for point in points[1:]:
                path.lineTo(point)
        elif len(points) >= 2:
            rect = QtCore.QRectF(points[0], points[1]).normalized()
            if kind is AnnotationKind.ELLIPSE:
                path.addEllipse(rect)
            else:
                path.addRect(rect)
        return path

    def _label_anchor(self, kind: AnnotationKind,
                      pixels: list[tuple[float, float]]) -> QtCore.QPointF:
        points = [self._frame.view_of_pixel(row, col) for row, col in pixels]
        if kind is AnnotationKind.ANGLE:
            return points[1]
        if kind is AnnotationKind.RULER:
            return max(points, key=lambda p: p.x())
        rect = QtCore.QRectF(points[0], points[1]).normalized()
        return rect.topRight()

    def _update_preview(self, cursor_pixel: tuple[float, float] | None) -> None:
        tool = self._state.tool
        kind = _DRAWING_TOOLS.get(tool)
        pixels = list(self._draw_points)
        if cursor_pixel is not None:
            pixels.append(cursor_pixel)
        if kind is None or len(pixels) < 2:
            self._preview_item.setPath(QtGui.QPainterPath())
            self._preview_label.setText("")
            return
        if kind is AnnotationKind.ANGLE:
            pixels = pixels[:3]
        self._preview_item.setPath(self._shape_path(kind, pixels))
        if kind is AnnotationKind.RULER:
            # Only a live read-out; the measurement itself is core.measurements' job.
            ends = [self._world_of_pixel(*p) for p in pixels[:2]]
            self._preview_label.setText(f"{np.linalg.norm(ends[1] - ends[0]):.1f} mm")
            self._preview_label.setPos(self._label_anchor(kind, pixels[:2]))
        else:
            self._preview_label.setText("")

    def _cancel_drawing(self) -> None:
        """Drop a half-drawn annotation and an edit in progress (tool, slice or volume
        changed, Escape)."""
        self._draw_points = []
        self._update_preview(None)
        self._cancel_edit()

    def _finish_drawing(self, kind: AnnotationKind) -> None:
        pixels = self._draw_points[: kind.point_count]
        self._cancel_drawing()
        points = tuple(tuple(float(v) for v in self._world_of_pixel(*p)) for p in pixels)
        annotation = Annotation(kind=kind, plane=self._plane, slice_index=self._index,
                                points=points)  # type: ignore[arg-type]
        self.annotation_created.emit(annotation)

    def _world_of_pixel(self, row: float, col: float) -> np.ndarray:
        volume = self._state.volume
        assert volume is not None
        return volume.world_of_plane_pixel(self._plane, self._index, row, col)

    # ------------------------------------------------------------------ selecting and editing
    def _hit(self, position: QtCore.QPointF) -> _Hit | None:
        """The annotation of this slice under a viewport position, if any.

        The selected annotation's handles come first, then its body (outline, or inside for
        an ellipse / rectangle), then the outlines of the others, topmost (last drawn) first.
        Distances are in viewport pixels, so the tolerance does not change with zoom.
        """
        if self._frame is None or (self._state.tool is Tool.ANGLE and self._draw_points):
            return None  # the clicks of a half-drawn angle place its points
        by_id = {a.id: a for a in self._annotations}
        shown = [by_id[i] for i in self.shown_annotation_ids() if i in by_id]
        here = np.array([position.x(), position.y()])
        selected = next((a for a in shown if a.id == self._selected_id), None)
        if selected is not None:
            points = self._viewport_points(selected)
            distances = np.hypot(*(points - here).T)
            nearest = int(np.argmin(distances))
            if distances[nearest] <= HIT_TOLERANCE_PIXELS:
                return _Hit(selected.id, nearest)
            if _on_shape(selected.kind, points, here, inside_counts=True):
                return _Hit(selected.id, None)
        for annotation in reversed(shown):
            if annotation is not selected and _on_shape(
                    annotation.kind, self._viewport_points(annotation), here,
                    inside_counts=False):
                return _Hit(annotation.id, None)
        return None

    def _viewport_points(self, annotation: Annotation) -> np.ndarray:
        """The annotation's points as viewport pixels, shape (n, 2) as (x, y)."""
        points = [self.viewport_point_of_pixel(*self._frame.pixel_of_world(p))
                  for p in annotation.points]
        return np.array([(p.x(), p.y()) for p in points], dtype=np.float64)

    def _begin_edit(self, press: _Press) -> bool:
        """Start dragging the selected annotation if the press hit it; False otherwise."""
        hit = press.hit
        if hit is None or hit.annotation_id != self._selected_id:
            return False
        annotation = next((a for a in self._annotations if a.id == hit.annotation_id), None)
        if annotation is None or annotation.id not in self.shown_annotation_ids():
            return False
        pixels = tuple(self._frame.pixel_of_world(p) for p in annotation.points)
        self._edit = _Edit(annotation, hit.point, pixels, self._pixel(press.position))
        return True

    def _move_edit(self, position: QtCore.QPointF) -> None:
        edit = self._edit
        if edit is None:
            return
        row, col = self._pixel(position)
        edit.delta = (row - edit.start[0], col - edit.start[1])
        self._redraw_annotation(edit.annotation)

    def _commit_edit(self) -> None:
        """Emit the moved copy of the annotation (nothing if it did not move)."""
        edit = self._edit
        if edit is None:
            return
        self._cancel_edit()  # back to the stored geometry until the store sends the new one
        if edit.delta == (0.0, 0.0):
            return
        volume = self._state.volume
        assert volume is not None
        # The in-plane displacement of the drag, in LPS mm. The pixel -> world map is affine,
        # so adding it moves a point exactly as far as the mouse went, at any zoom, and keeps
        # whatever offset from the slice centre the point had.
        index = edit.annotation.slice_index
        shift = (volume.world_of_plane_pixel(self._plane, index, *edit.delta)
                 - volume.world_of_plane_pixel(self._plane, index, 0.0, 0.0))
        points = tuple(
            tuple(float(v) for v in np.add(point, shift)) if edit.point in (None, number)
            else point
            for number, point in enumerate(edit.annotation.points)
        )
        self.annotation_edited.emit(dataclasses.replace(edit.annotation, points=points))

    def _cancel_edit(self) -> None:
        if self._edit is None:
            return
        self._edit = None
        self._shown_annotations = None
        self._refresh_annotations()

    def _request_delete(self) -> bool:
        """Ask for the selected annotation to be deleted, if it is shown here."""
        selected = self._selected_id
        if selected is None or selected not in self.shown_annotation_ids():
            return False
        self._cancel_edit()
        self.annotation_delete_requested.emit(selected)
        return True

    def _update_hover_cursor(self, position: QtCore.QPointF) -> None:
        hit = self._hit(position) if self.shown_annotation_ids() else None
        shapes = QtCore.Qt.CursorShape
        if hit is None:
            shape = self._tool_cursor()
        elif hit.annotation_id == self._selected_id:
            shape = shapes.SizeAllCursor
        else:
            shape = shapes.PointingHandCursor
        viewport = self._graphics.viewport()
        if viewport.cursor().shape() != shape:
            viewport.setCursor(shape)

    # ------------------------------------------------------------------ Qt events
    def showEvent(self, event: QtGui.QShowEvent) -> None:
        super().showEvent(event)
        self._place_text()

    def keyPressEvent(self, event: QtGui.QKeyEvent) -> None:
        key = QtCore.Qt.Key
        state = self._state
        count = self._frame.geometry.slice_count if self._frame is not None else 1
        actions = {
            key.Key_Up: lambda: state.step(self._plane, 1),
            key.Key_Down: lambda: state.step(self._plane, -1),
            key.Key_PageUp: lambda: state.step(self._plane, PAGE_STEP),
            key.Key_PageDown: lambda: state.step(self._plane, -PAGE_STEP),
            key.Key_Home: lambda: state.set_slice(self._plane, 0),
            key.Key_End: lambda: state.set_slice(self._plane, count - 1),
            key.Key_R: self._reset,
            key.Key_I: lambda: setattr(state, "invert", not state.invert),
            key.Key_Escape: self._cancel_drawing,
        }
        action = actions.get(QtCore.Qt.Key(event.key()))
        chord = event.modifiers() & (QtCore.Qt.KeyboardModifier.ControlModifier
                                     | QtCore.Qt.KeyboardModifier.AltModifier
                                     | QtCore.Qt.KeyboardModifier.MetaModifier)
        if (event.key() in (key.Key_Delete, key.Key_Backspace) and not chord
                and self._request_delete()):
            event.accept()
            return
        if action is None or state.volume is None or chord:  # Ctrl+R etc. belong to menus
            super().keyPressEvent(event)
            return
        action()
        event.accept()

    def _reset(self) -> None:
        self.reset_view()
        if self._state.volume is not None:
            self._state.window = window_for(self._state.volume)

    def eventFilter(self, watched: QtCore.QObject, event: QtCore.QEvent) -> bool:
        """Mouse and wheel events of the graphics view's viewport (consumed here)."""
        kind = event.type()
        types = QtCore.QEvent.Type
        if self._frame is None:
            return kind in (types.MouseButtonPress, types.MouseButtonRelease,
                            types.MouseButtonDblClick, types.Wheel)
        if kind == types.MouseButtonPress:
            self._mouse_press(event)
        elif kind == types.MouseMove:
            self._mouse_move(event)
        elif kind == types.MouseButtonRelease:
            self._mouse_release(event)
        elif kind == types.MouseButtonDblClick:
            self._mouse_double_click(event)
        elif kind == types.Wheel:
            self._wheel(event)
        else:
            return False
        return True

    def _mouse_press(self, event: QtGui.QMouseEvent) -> None:
        self.setFocus(QtCore.Qt.FocusReason.MouseFocusReason)
        if self._press is not None and event.buttons() & self._press.button:
            return  # a second button during a drag: ignore it
        position = event.position()
        hit = self._hit(position) if event.button() == QtCore.Qt.MouseButton.LeftButton else None
        self._press = _Press(event.button(), event.modifiers(), position, position, hit=hit)

    def _mouse_move(self, event: QtGui.QMouseEvent) -> None:
        position = event.position()
        press = self._press
        if press is not None and not event.buttons() & press.button:
            self._press = None  # its release went elsewhere (a popup, a lost grab)
            press = None
        if press is None:
            self._hover(position)
            self._update_hover_cursor(position)
            return
        if not press.mode:
            travel = position - press.position
            if abs(travel.x()) + abs(travel.y()) < _CLICK_DISTANCE:
                return
            self._start_drag(press)
        self._drag(press, position)
        press.last = position

    def _mouse_release(self, event: QtGui.QMouseEvent) -> None:
        press = self._press
        if press is None or event.button() != press.button:
            return
        self._press = None
        position = event.position()
        if press.mode:
            self._drag(press, position)
            self._end_drag(press)
        elif press.button == QtCore.Qt.MouseButton.LeftButton:
            self._click(position, press.hit)

    def _mouse_double_click(self, event: QtGui.QMouseEvent) -> None:
        # Qt sends press, release, double-click, release: the first pair already moved the
        # crosshair; the release after this event must not count as a click.
        self._press = None
        if event.button() != QtCore.Qt.MouseButton.LeftButton:
            return
        if self._state.tool is Tool.ANGLE and self._draw_points:
            return
        state = self._state
        state.maximized = None if state.maximized is self._plane else self._plane

    def _wheel(self, event: QtGui.QWheelEvent) -> None:
        delta = event.angleDelta().y()
        if event.modifiers() & QtCore.Qt.KeyboardModifier.ControlModifier:
            factor = 2.0 ** (-delta / 120 / 4)
            center = self._view_point(event.position())
            self._view_box.scaleBy((factor, factor), center=center)
            return
        # High-resolution wheels send fractions of a 120 notch; keep the remainder.
        self._wheel_remainder += delta
        steps = int(self._wheel_remainder / 120)
        if steps:
            self._wheel_remainder -= steps * 120
            self._state.step(self._plane, steps)

    def _start_drag(self, press: _Press) -> None:
        buttons = QtCore.Qt.MouseButton
        shift = bool(press.modifiers & QtCore.Qt.KeyboardModifier.ShiftModifier)
        if press.button == buttons.MiddleButton or (press.button == buttons.LeftButton and shift):
            press.mode = "pan"
        elif press.button == buttons.RightButton:
            press.mode = "zoom"
        elif press.button == buttons.LeftButton and self._begin_edit(press):
            press.mode = "edit"  # a handle or the body of the selected annotation: any tool
        elif press.button == buttons.LeftButton:
            tool = self._state.tool
            if tool is Tool.WINDOW:
                press.mode = "window"
                press.window = self._state.window
            elif tool is Tool.ANGLE:
                press.mode = "ignore"  # the angle is drawn with three clicks
            else:
                press.mode = "draw"
                self._draw_points = [self._pixel(press.position)]
        else:
            press.mode = "ignore"

    def _drag(self, press: _Press, position: QtCore.QPointF) -> None:
        if press.mode == "window" and press.window is not None:
            dx = position.x() - press.position.x()
            dy = position.y() - press.position.y()
            start = press.window
            width = start.width * 2.0 ** (dx / WINDOW_DRAG_PIXELS)
            level = start.level + dy * start.width / WINDOW_DRAG_PIXELS
            self._state.window = WindowLevel(width, level)
        elif press.mode == "zoom":
            factor = 2.0 ** ((position.y() - press.last.y()) / ZOOM_DRAG_PIXELS)
            self._view_box.scaleBy((factor, factor), center=self._view_point(press.position))
        elif press.mode == "pan":
            shift = self._view_point(position) - self._view_point(press.last)
            self._view_box.translateBy(t=(-shift.x(), -shift.y()))
        elif press.mode == "draw":
            self._update_preview(self._pixel(position))
        elif press.mode == "edit":
            self._move_edit(position)

    def _end_drag(self, press: _Press) -> None:
        if press.mode == "edit":
            self._commit_edit()
            return
        if press.mode != "draw":
            return
        kind = _DRAWING_TOOLS.get(self._state.tool)
        end = self._pixel(press.last)
        if kind is None or not self._draw_points or end == self._draw_points[0]:
            self._cancel_drawing()
            return
        self._draw_points.append(end)
        self._finish_drawing(kind)

    def _click(self, position: QtCore.QPointF, hit: _Hit | None) -> None:
        if hit is not None:  # selecting wins over moving the crosshair or placing a point
            if hit.annotation_id != self._selected_id:
                self.annotation_selected.emit(hit.annotation_id)
            return
        if self._selected_id is not None and self._selected_id in self.shown_annotation_ids():
            self.annotation_selected.emit("")  # a click beside the selection drops it
        row, col = self._pixel(position)
        if self._state.tool is Tool.ANGLE:
            self._draw_points.append((row, col))
            if len(self._draw_points) == AnnotationKind.ANGLE.point_count:
                self._finish_drawing(AnnotationKind.ANGLE)
            else:
                self._update_preview(None)
            return
        self._state.click(self._plane, row, col)

    def _hover(self, position: QtCore.QPointF) -> None:
        row, col = self._pixel(position)
        if self._state.tool is Tool.ANGLE and self._draw_points:
            self._update_preview((row, col))
        world = tuple(float(v) for v in self._world_of_pixel(row, col))
        value = label_name = None
        r, c = int(math.floor(row + 0.5)), int(math.floor(col + 0.5))
        image = self._image_slice
        if image is not None and 0 <= r < image.shape[0] and 0 <= c < image.shape[1]:
            value = float(image[r, c])
            labels = self._state.labels
            if (self._label_slice is not None and labels is not None
                    and self._state.overlay_visible):
                label = int(self._label_slice[r, c])
                label_name = labels.names.get(label) if label else None
        self.cursor_moved.emit(world, value, label_name)

    def _view_point(self, viewport_position: QtCore.QPointF) -> QtCore.QPointF:
        inverse, _ = self._graphics.viewportTransform().inverted()
        return self._view_box.mapSceneToView(inverse.map(viewport_position))

    def _pixel(self, viewport_position: QtCore.QPointF) -> tuple[float, float]:
        """Continuous (row, col) of this plane's image under a viewport position."""
        assert self._frame is not None
        return self._frame.pixel_of_view(self._view_point(viewport_position))


def _handle_item(parent: QtWidgets.QGraphicsItem, point: QtCore.QPointF,
                 colour: tuple[int, int, int]) -> QtWidgets.QGraphicsRectItem:
    """A small square at ``point`` (parent coordinates), the same size in pixels at any zoom."""
    half = _HANDLE_HALF_SIZE
    item = QtWidgets.QGraphicsRectItem(-half, -half, 2 * half, 2 * half, parent)
    item.setFlag(QtWidgets.QGraphicsItem.GraphicsItemFlag.ItemIgnoresTransformations)
    item.setPen(_pen(colour, 1.0))
    item.setBrush(QtGui.QColor(0, 0, 0, 160))
    item.setPos(point)
    return item


def _on_shape(kind: AnnotationKind, points: np.ndarray, here: np.ndarray, *,
              inside_counts: bool) -> bool:
    """Whether viewport position ``here`` is on a shape given by its viewport ``points``.

    On means within :data:`HIT_TOLERANCE_PIXELS` of the outline, or (``inside_counts``)
    inside an ellipse / rectangle.
    """
    tolerance = HIT_TOLERANCE_PIXELS
    if kind in (AnnotationKind.RULER, AnnotationKind.ANGLE):
        return _polyline_distance(here, points) <= tolerance
    low, high = points.min(axis=0), points.max(axis=0)
    if kind is AnnotationKind.RECTANGLE:
        if inside_counts and np.all(low <= here) and np.all(here <= high):
            return True
        corners = np.array([low, (high[0], low[1]), high, (low[0], high[1]), low])
        return _polyline_distance(here, corners) <= tolerance
    centre, semi = (low + high) / 2, (high - low) / 2
    if inside_counts and np.all(semi > 0) and np.sum(((here - centre) / semi) ** 2) <= 1.0:
        return True
    angles = np.linspace(0.0, 2 * math.pi, _ELLIPSE_HIT_SIDES + 1)
    outline = centre + semi * np.column_stack([np.cos(angles), np.sin(angles)])
    return _polyline_distance(here, outline) <= tolerance


def _polyline_distance(point: np.ndarray, vertices: np.ndarray) -> float:
    """Distance from ``point`` to the polyline through ``vertices`` (n >= 2, shape (n, 2))."""
    a, b = vertices[:-1], vertices[1:]
    ab = b - a
    length2 = np.einsum("ij,ij->i", ab, ab)
    along = np.einsum("ij,ij->i", point - a, ab)
    # a zero-length segment is its end point (t = 0)
    t = np.clip(np.divide(along, length2, out=np.zeros_like(along), where=length2 > 0), 0, 1)
    nearest = a + t[:, None] * ab
    return float(np.min(np.hypot(*(point - nearest).T)))


def _shown_text(item: _TextItem | _RichTextItem) -> str:
    return item.text if item.isVisible() else ""


