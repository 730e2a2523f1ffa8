"""The PDF report (reportlab): :func:`render_report_pdf` and :func:`write_report_pdf`.

This is the last step of the report path: :class:`~radview.report.content.ReportContent`
holds numbers with units and raw strings; here they are formatted (:func:`format_value`) and
laid out on A4.

Safety of text
--------------
Every string that did not come from this module (DICOM header values, warnings, model names,
stage labels, citations) goes through :func:`_markup`: control and bidirectional-override
characters are replaced, over-long values are cut with an ellipsis, the text is split into
font runs (:meth:`FontSet.markup`, with a fallback font for CJK) and each run is escaped with
``xml.sax.saxutils.escape`` before it becomes Paragraph markup. So ``<font>``, ``<script>`` or
``&`` in a patient name print literally and cannot change the layout. Long words wrap inside
their table cell (reportlab's ``splitLongWords``).

Layout
------
Page 1: institution and title, the patient/study table (or "de-identified"), the
decision-support statement, findings (liver volume, lesion table with RECIST marks, sum of
target diameters), then key images (one column per lesion, one row per plane), AI staging and
clinical scores (BCLC as guideline reference text with its citation), the per-slice triage
plot, provenance, warnings and methods, flowing onto further pages. Every page carries the
generation time, the radview version, a short decision-support note and "page X of Y"; pages
after the first repeat the institution and the patient in a running header.

Slice numbers are printed 1-based, as the viewer shows them (the content holds 0-based
indices).

PDF metadata: title, subject, author and creator ``radview <version>``; no patient data is
put into the metadata (it is indexed by file managers and search tools).
"""

from __future__ import annotations

import io
import math
import re
import threading
import unicodedata
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

from reportlab import rl_config
from reportlab.lib import colors
from reportlab.lib.enums import TA_RIGHT
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle
from reportlab.lib.units import mm
from reportlab.pdfgen.canvas import Canvas
from reportlab.platypus import (
    BaseDocTemplate,
    Frame,
    Image,
    KeepTogether,
    PageTemplate,
    Paragraph,
    Spacer,
    Table,
    TableStyle,
)
from reportlab.platypus.flowables import Flowable

from radview.core.dicom_text import format_person_name
from radview.core.measurements import Measurement
from radview.core.volume import ViewPlane
from radview.io.atomic import write_bytes_atomically
from radview.report.content import BclcSection, LesionRow, ReportContent
from radview.report.figures import KeyImage, RenderedImage
from radview.report.fonts import FontSet, report_fonts

__all__ = [
    "MAX_FIELD_CHARS",
    "MAX_TEXT_CHARS",
    "format_value",
    "format_measurement",
    "format_date",
    "render_report_pdf",
    "write_report_pdf",
]

#: Header values longer than this are cut (with an ellipsis): a 10 kB "description" must not
#: push the findings off page 1.
MAX_FIELD_CHARS = 160
#: Any other outside string (warnings, citations, model names).
MAX_TEXT_CHARS = 1000
DEIDENTIFIED = "de-identified"
NOT_GIVEN = "—"
_PAGE_W, _PAGE_H = A4
_MARGIN = 15 * mm
_TOP = 20 * mm
_TOP_FIRST = 12 * mm
_BOTTOM = 20 * mm
_TEXT_W = _PAGE_W - 2 * _MARGIN
_KEY_COLUMNS = 3
_KEY_GAP = 4 * mm
_GREY = colors.Color(0.42, 0.42, 0.42)
_RULE = colors.Color(0.75, 0.75, 0.75)
_HEAD_BG = colors.Color(0.92, 0.94, 0.96)
_NOTICE_BG = colors.Color(1.0, 0.96, 0.88)
_NOTICE_BORDER = colors.Color(0.84, 0.55, 0.0)
_TARGET_BG = colors.Color(1.0, 0.93, 0.86)
_RL_CONFIG_LOCK = threading.Lock()
_SHORT_NOTICE = "Decision support only; not a diagnosis"
# C0/C1 controls and the bidirectional embedding/override/isolate characters, which could
# reorder the text a reader sees (e.g. a name shown reversed).
_UNSAFE = re.compile("[\u0000-\u001f\u007f-\u009f\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_DICOM_DATE = re.compile(r"^(\d{4})(\d{2})(\d{2})$")
_PLANE_NAMES = {ViewPlane.AXIAL: "axial", ViewPlane.CORONAL: "coronal",
                ViewPlane.SAGITTAL: "sagittal"}


# ---------------------------------------------------------------------------- formatting
def format_value(measurement: Measurement) -> str:
    """The number of a measurement as the report prints it (no unit).

    mm: one decimal; mL: two decimals below 10 mL, one below 100 mL, none above; HU: none;
    %: one decimal (two below 1 %); s: two decimals below 10 s, else one. ``n/a`` for NaN/inf.
    """
    value, unit = float(measurement.value), measurement.unit
    if not math.isfinite(value):
        return "n/a"
    if unit == "mL":
        decimals = 2 if abs(value) < 10 else 1 if abs(value) < 100 else 0
    elif unit == "HU":
        decimals = 0
    elif unit == "%":
        decimals = 2 if abs(value) < 1 else 1
    elif unit == "s":
        decimals = 2 if abs(value) < 10 else 1
    else:
        decimals = 1
    text = f"{value:.{decimals}f}"
    return text[1:] if text.startswith("-") and float(text) == 0 else text


def format_measurement(measurement: Measurement) -> str:
    """``format_value`` plus the unit: ``'34.6 mm'``, ``'1843 mL'``, ``'1.9 %'``."""
    number = format_value(measurement)
    return f"{number} {measurement.unit}" if measurement.unit else number


def format_date(text: str) -> str:
    """DICOM ``YYYYMMDD`` as ``YYYY-MM-DD``; anything else unchanged."""
    match = _DICOM_DATE.match(text.strip())
    return f"{match[1]}-{match[2]}-{match[3]}" if match else text


def _format_time(moment: datetime) -> str:
    text = moment.strftime("%Y-%m-%d %H:%M")
    if moment.utcoffset() is not None:
        text += " " + (moment.tzname() or moment.strftime("%z"))
    return text


def _clean(text: str, limit: int, *, strip: bool = True) -> str:
    """Unsafe characters replaced by spaces, ends stripped, cut to ``limit`` characters."""
    text = unicodedata.normalize("NFC", _UNSAFE.sub(" ", str(text)))
    if strip:
        text = text.strip()
    if len(text) > limit:
        text = text[: limit - 1].rstrip() + "…"
    return text


# ---------------------------------------------------------------------------- rendering
def render_report_pdf(
    content: ReportContent,
    *,
    institution: str | None = None,
    fonts: FontSet | None = None,
) -> bytes:
    """The report as PDF bytes (A4).

    Parameters
    ----------
    content
        From :func:`radview.report.content.build_report_content`.
    institution
        Name printed at the top (the site's configuration); default: the header's institution,
        else "radview".
    fonts
        The fonts to use; :func:`radview.report.fonts.report_fonts` when None.
    """
    fonts = fonts or report_fonts()
    builder = _Builder(content, fonts, institution)
    with _binary_streams():
        return builder.build()


@contextmanager
def _binary_streams() -> Iterator[None]:
    """Write image and page streams as binary, not ASCII85 (reportlab's default).

    ASCII85 makes every stream 25 % bigger for the sake of 7-bit mail transport. reportlab
    reads the choice from its global ``rl_config``, so it is switched for the duration of one
    build, under a lock (reports may be rendered from worker threads), and restored.
    """
    with _RL_CONFIG_LOCK:
        saved = rl_config.useA85
        rl_config.useA85 = 0
        try:
            yield
        finally:
            rl_config.useA85 = saved


def write_report_pdf(content: ReportContent, path: Path | str, **options: object) -> Path:
    """Render the report and write it to ``path`` atomically (temp file + rename).

    ``options`` are passed to :func:`render_report_pdf`. Returns the path written.
    """
    path = Path(path)
    data = render_report_pdf(content, **options)  # type: ignore[arg-type]
    write_bytes_atomically(path, data)
    return path


class _Builder:
    """Turns one ReportContent into flowables and page decorations."""

    def __init__(self, content: ReportContent, fonts: FontSet, institution: str | None) -> None:
        self.content = content
        self.fonts = fonts
        self.institution = _clean(
            institution or content.header.institution or "radview", MAX_FIELD_CHARS)
        regular, bold = fonts.regular, fonts.bold
        self.styles = {
            "body": ParagraphStyle("body", fontName=regular, fontSize=8.5, leading=11),
            "small": ParagraphStyle("small", fontName=regular, fontSize=7, leading=8.8,
                                    textColor=_GREY),
            "cell": ParagraphStyle("cell", fontName=regular, fontSize=8, leading=10),
            "cell_bold": ParagraphStyle("cell_bold", fontName=bold, fontSize=8, leading=10),
            "cell_right": ParagraphStyle("cell_right", fontName=regular, fontSize=8, leading=10,
                                         alignment=TA_RIGHT),
            "label": ParagraphStyle("label", fontName=regular, fontSize=7.5, leading=10,
                                    textColor=_GREY),
            "h1": ParagraphStyle("h1", fontName=bold, fontSize=14, leading=17),
            "title": ParagraphStyle("title", fontName=bold, fontSize=11, leading=14,
                                    alignment=TA_RIGHT),
            # keepWithNext: a section heading never ends a page alone
            "h2": ParagraphStyle("h2", fontName=bold, fontSize=10.5, leading=13, spaceBefore=8,
                                 spaceAfter=3, textColor=colors.Color(0.1, 0.2, 0.35),
                                 keepWithNext=1),
            "notice": ParagraphStyle("notice", fontName=bold, fontSize=8.5, leading=11),
            "caption": ParagraphStyle("caption", fontName=regular, fontSize=7, leading=8.6),
        }
        self.generated = _format_time(content.generated_at)
        #: characters of this report that no installed font has (named in the warnings)
        self.missing: set[str] = set()

    # ------------------------------------------------------------------ text helpers
    def para(self, text: str, style: str = "body", *, limit: int = MAX_TEXT_CHARS) -> Paragraph:
        """A Paragraph of outside text: cleaned, escaped, with font fallback."""
        return Paragraph(self.markup(text, style, limit=limit), self.styles[style])

    def markup(self, text: str, style: str = "body", *, limit: int = MAX_TEXT_CHARS) -> str:
        bold = self.styles[style].fontName == self.fonts.bold
        text = _clean(text, limit)
        self.missing |= self.fonts.missing(text, bold)
        return self.fonts.markup(text, bold=bold)

    def table_style(self, commands: Sequence[tuple]) -> TableStyle:
        """``commands`` after our font for plain-string cells (reportlab's default is
        Helvetica, which would add a non-embedded font to the file)."""
        return TableStyle([("FONTNAME", (0, 0), (-1, -1), self.fonts.regular), *commands])

    def rich(self, parts: Sequence[tuple[str, bool]], style: str = "body") -> Paragraph:
        """A Paragraph of several pieces, each ``(text, bold)``; every piece is escaped."""
        markup = []
        for text, bold in parts:
            text = _clean(text, MAX_TEXT_CHARS, strip=False)
            self.missing |= self.fonts.missing(text, bold)
            escaped = self.fonts.markup(text, bold=bold)
            markup.append(f"<b>{escaped}</b>" if bold else escaped)
        return Paragraph("".join(markup), self.styles[style])

    # ------------------------------------------------------------------ document
    def build(self) -> bytes:
        buffer = io.BytesIO()
        version = self.content.radview_version
        doc = BaseDocTemplate(
            buffer,
            pagesize=A4,
            leftMargin=_MARGIN,
            rightMargin=_MARGIN,
            topMargin=_TOP,
            bottomMargin=_BOTTOM,
            title=f"{self.content.title} report",
            author=f"radview {version}",
            creator=f"radview {version}",
            producer=f"radview {version} (reportlab)",
            subject="Liver CT analysis: liver and lesion measurements, key images, AI outputs "
                    "(decision support)",
            keywords="radview, liver, CT, RECIST, decision support",
            lang="en",
            initialFontName=self.fonts.regular,
        )
        story = [
            *self.title_block(),
            self.patient_table(),
            Spacer(1, 3 * mm),
            self.notice(),
            *self.findings(),
            *self.key_images(),
            *self.staging(),
            *self.triage(),
            *self.provenance(),
            *self.warnings(),
            *self.methods(),
        ]
        height = _PAGE_H - _BOTTOM
        # Page 1 has no running header, so its frame starts higher.
        first = Frame(_MARGIN, _BOTTOM, _TEXT_W, height - _TOP_FIRST, id="first",
                      leftPadding=0, rightPadding=0, topPadding=0, bottomPadding=0)
        later = Frame(_MARGIN, _BOTTOM, _TEXT_W, height - _TOP, id="later",
                      leftPadding=0, rightPadding=0, topPadding=0, bottomPadding=0)
        doc.addPageTemplates([
            PageTemplate("first", [first], onPage=self.decorate_first, autoNextPageTemplate=
                         "later"),
            PageTemplate("later", [later], onPage=self.decorate_later),
        ])
        doc.build(story, canvasmaker=_numbered_canvas(self.fonts, self.footer_left()))
        return buffer.getvalue()

    def footer_left(self) -> str:
        return f"Generated {self.generated} by radview {self.content.radview_version}"

    def decorate_first(self, canvas: Canvas, _doc: object) -> None:
        self._footer_rule(canvas)

    def decorate_later(self, canvas: Canvas, _doc: object) -> None:
        self._footer_rule(canvas)
        header = self.content.header
        if header.deidentified:
            patient = f"Patient: {DEIDENTIFIED}"
        else:
            name = format_person_name(header.patient_name or "") or NOT_GIVEN
            patient = f"Patient: {name} · ID: {header.patient_id or NOT_GIVEN}"
        y = _PAGE_H - 12 * mm
        gap = 6 * mm
        left_w = min(self.fonts.string_width(self.institution, 8, bold=True), _TEXT_W * 0.4)
        _draw_runs(canvas, self.fonts, _MARGIN, y, self.institution, 8, bold=True,
                   max_width=left_w)
        _draw_runs(canvas, self.fonts, _PAGE_W - _MARGIN, y, _clean(patient, MAX_FIELD_CHARS),
                   8, max_width=_TEXT_W - left_w - gap, align_right=True)
        canvas.setStrokeColor(_RULE)
        canvas.setLineWidth(0.5)
        canvas.line(_MARGIN, y - 2.5 * mm, _PAGE_W - _MARGIN, y - 2.5 * mm)

    def _footer_rule(self, canvas: Canvas) -> None:
        canvas.saveState()
        canvas.setStrokeColor(_RULE)
        canvas.setLineWidth(0.5)
        canvas.line(_MARGIN, 14 * mm, _PAGE_W - _MARGIN, 14 * mm)
        canvas.restoreState()

    # ------------------------------------------------------------------ sections
    def title_block(self) -> list[Flowable]:
        title = f"{self.content.title} report"
        # the title keeps its width; the institution gets the rest (and wraps if it must)
        title_w = min(self.fonts.string_width(title, 11, bold=True) + 4 * mm, _TEXT_W * 0.45)
        table = Table(
            [[self.para(self.institution, "h1", limit=MAX_FIELD_CHARS),
              self.para(title, "title")],
             [self.para(f"Generated {self.generated}", "small"),
              Paragraph("", self.styles["small"])]],
            colWidths=[_TEXT_W - title_w, title_w],
        )
        table.setStyle(self.table_style([
            ("VALIGN", (0, 0), (-1, -1), "BOTTOM"),
            ("LEFTPADDING", (0, 0), (-1, -1), 0),
            ("RIGHTPADDING", (0, 0), (-1, -1), 0),
            ("LINEBELOW", (0, 0), (-1, 0), 1.2, colors.Color(0.1, 0.2, 0.35)),
            ("BOTTOMPADDING", (0, 0), (-1, 0), 4),
        ]))
        return [table, Spacer(1, 2 * mm)]

    def field(self, value: str | None, *, identifying: bool = False,
              date: bool = False) -> Paragraph:
        header = self.content.header
        if identifying and header.deidentified:
            return Paragraph(f"<i>{DEIDENTIFIED}</i>", self.styles["cell"])
        if value is None:
            return Paragraph(NOT_GIVEN, self.styles["cell"])
        text = format_date(value) if date else value
        return self.para(text, "cell", limit=MAX_FIELD_CHARS)

    def patient_table(self) -> Table:
        h = self.content.header
        label = self.label
        acquisition = "; ".join(f"{name} {value}" for name, value in h.acquisition)
        rows = [
            [label("Patient"), self.field(
                format_person_name(h.patient_name) if h.patient_name else h.patient_name,
                identifying=True),
             label("Patient ID"), self.field(h.patient_id, identifying=True)],
            [label("Birth date"), self.field(h.birth_date, identifying=True, date=True),
             label("Sex"), self.field(h.sex)],
            [label("Study date"), self.field(h.study_date, date=True),
             label("Accession"), self.field(h.accession, identifying=True)],
            [label("Referring"), self.field(h.referring_physician, identifying=True),
             label("Modality"), self.field(h.modality)],
            [label("Study"), self.field(h.study_description), "", ""],
            [label("Series"), self.field(h.series_description), "", ""],
            [label("Acquisition"), self.para(acquisition or NOT_GIVEN, "cell",
                                             limit=MAX_FIELD_CHARS * 2), "", ""],
        ]
        widths = [27 * mm, _TEXT_W / 2 - 27 * mm, 22 * mm, _TEXT_W / 2 - 22 * mm]
        table = Table(rows, colWidths=widths)
        table.setStyle(self.table_style([
            ("SPAN", (1, 4), (3, 4)),
            ("SPAN", (1, 5), (3, 5)),
            ("SPAN", (1, 6), (3, 6)),
            ("VALIGN", (0, 0), (-1, -1), "TOP"),
            ("TOPPADDING", (0, 0), (-1, -1), 1.2),
            ("BOTTOMPADDING", (0, 0), (-1, -1), 1.2),
            ("LEFTPADDING", (0, 0), (-1, -1), 2),
            ("LINEBELOW", (0, -1), (-1, -1), 0.5, _RULE),
        ]))
        return table

    def label(self, text: str) -> Paragraph:
        return Paragraph(text, self.styles["label"])

    def notice(self) -> Table:
        table = Table([[self.para(self.content.disclaimer, "notice")]], colWidths=[_TEXT_W])
        table.setStyle(self.table_style([
            ("BOX", (0, 0), (-1, -1), 1, _NOTICE_BORDER),
            ("BACKGROUND", (0, 0), (-1, -1), _NOTICE_BG),
            ("TOPPADDING", (0, 0), (-1, -1), 4),
            ("BOTTOMPADDING", (0, 0), (-1, -1), 5),
            ("LEFTPADDING", (0, 0), (-1, -1), 6),
        ]))
        return table

    def findings(self) -> list[Flowable]:
        f = self.content.findings
        lesions = f.lesions
        targets = f.recist.target_ids
        summary = [
            ("Liver volume: ", False), (format_measurement(f.liver_volume), True),
            (" · Total tumour volume: ", False), (format_measurement(f.total_tumour_volume), True),
            (" · Tumour burden: ", False), (format_measurement(f.tumour_burden), True),
            (" · Lesions: ", False), (str(len(lesions)), True),
        ]
        out: list[Flowable] = [Paragraph("Findings", self.styles["h2"]), self.rich(summary)]
        if not lesions:
            out.append(self.para("No lesion found in the label map."))
            return out
        out += [Spacer(1, 2 * mm), self.lesion_table(lesions), Spacer(1, 1.5 * mm)]
        if targets:
            ids = ", ".join(str(i) for i in targets)
            out.append(self.rich([
                ("Sum of target lesion diameters (RECIST 1.1): ", False),
                (format_measurement(f.recist.sum_of_diameters), True),
                (f"  (target lesion{'s' if len(targets) > 1 else ''} {ids})", False),
            ]))
        else:
            out.append(self.rich([
                ("Sum of target lesion diameters (RECIST 1.1): ", False),
                ("no target lesion", True),
                (f" (no lesion in the liver has a long axis of at least "
                 f"{format_measurement(f.recist.measurable_minimum)})", False),
            ]))
        out.append(self.para(
            f.recist.rule + ". Lobe: approximate (no vessel landmarks). Axes are measured in "
            "the acquisition plane.", "small"))
        return out

    def lesion_table(self, lesions: Sequence[LesionRow]) -> Table:
        header = ["Lesion", "Lobe", "Long axis\n(mm)", "Short axis\n(mm)", "Max 3D\ndiam. (mm)",
                  "Volume\n(mL)", "Mean\n(HU)", "Axial\nslice", "RECIST 1.1"]
        head = [Paragraph(text.replace("\n", "<br/>"), self.styles["cell_bold"])
                for text in header]
        rows: list[list[Flowable | str]] = [head]
        target_rows = []
        for index, row in enumerate(lesions, start=1):
            if row.target:
                mark = "target"
                target_rows.append(index)
            elif not row.in_liver:
                mark = "outside liver"
            else:
                mark = "non-target"
            cells = [
                str(row.lesion_id),
                row.lobe or NOT_GIVEN,
                format_value(row.long_axis),
                format_value(row.short_axis),
                format_value(row.max_diameter),
                format_value(row.volume),
                format_value(row.mean),
                str(row.axial_slice + 1),  # 1-based, as the viewer shows slices
            ]
            rows.append([self.para(c, "cell_right" if i not in (1,) else "cell")
                         for i, c in enumerate(cells)]
                        + [self.para(mark, "cell_bold" if row.target else "cell")])
        widths = [15, 14, 18, 18, 19, 17, 15, 15, 0]
        widths[-1] = _TEXT_W / mm - sum(widths)
        table = Table(rows, colWidths=[w * mm for w in widths], repeatRows=1)
        style = [
            ("BACKGROUND", (0, 0), (-1, 0), _HEAD_BG),
            ("LINEBELOW", (0, 0), (-1, 0), 0.8, _GREY),
            ("LINEBELOW", (0, -1), (-1, -1), 0.5, _RULE),
            ("VALIGN", (0, 0), (-1, -1), "MIDDLE"),
            ("TOPPADDING", (0, 0), (-1, -1), 1.5),
            ("BOTTOMPADDING", (0, 0), (-1, -1), 1.5),
        ]
        style += [("BACKGROUND", (0, r), (-1, r), _TARGET_BG) for r in target_rows]
        table.setStyle(self.table_style(style))
        return table

    def key_images(self) -> list[Flowable]:
        images = self.content.key_images
        if not images:
            return []
        by_lesion: dict[int, list[KeyImage]] = {}
        for image in images:
            by_lesion.setdefault(image.lesion_id, []).append(image)
        planes: list[ViewPlane] = []
        for image in images:
            if image.plane not in planes:
                planes.append(image.plane)
        cell_w = (_TEXT_W - (_KEY_COLUMNS - 1) * _KEY_GAP) / _KEY_COLUMNS
        lesion_ids = list(by_lesion)
        rows: list[Flowable] = []  # one table per plane and group of lesions: rows can split
        for start in range(0, len(lesion_ids), _KEY_COLUMNS):
            group = lesion_ids[start:start + _KEY_COLUMNS]
            for plane in planes:
                cells: list[list[Flowable] | str] = []
                for lesion_id in group:
                    found = [k for k in by_lesion[lesion_id] if k.plane is plane]
                    cells.append(self.key_image_cell(found[0], cell_w) if found else "")
                cells += [""] * (_KEY_COLUMNS - len(cells))
                table = Table([cells], colWidths=[cell_w + _KEY_GAP] * (_KEY_COLUMNS - 1)
                              + [cell_w])
                table.setStyle(self.table_style([
                    ("VALIGN", (0, 0), (-1, -1), "TOP"),
                    ("LEFTPADDING", (0, 0), (-1, -1), 0),
                    ("RIGHTPADDING", (0, 0), (-1, -1), 0),
                    ("TOPPADDING", (0, 0), (-1, -1), 0),
                    ("BOTTOMPADDING", (0, 0), (-1, -1), 2.5 * mm),
                ]))
                rows.append(table)
        legend = self.para(
            "Outlines: liver green, tumour orange-red (Okabe-Ito colours); RECIST long axis "
            "yellow, short axis blue (acquisition plane only). Edge letters give the patient "
            "orientation (R/L right/left, A/P anterior/posterior, S/I superior/inferior); "
            "images are shown in true millimetre proportions with a scale bar.", "small")
        heading = Paragraph("Key images", self.styles["h2"])
        return [KeepTogether([heading, rows[0]]), *rows[1:], legend]

    def key_image_cell(self, key: KeyImage, width: float) -> list[Flowable]:
        picture = _image_flowable(key.image, width)
        plane = _PLANE_NAMES[key.plane]
        # the field of view is on the scale bar; the caption stays one line
        caption = (
            f"Lesion {key.lesion_id} · {plane} slice {key.slice_index + 1}/{key.slice_count}"
            f" · W{key.window.width:.0f} L{key.window.level:.0f}"
        )
        return [picture, Spacer(1, 0.8 * mm), self.para(caption, "caption")]

    def staging(self) -> list[Flowable]:
        out: list[Flowable] = [Paragraph("Staging and clinical scores", self.styles["h2"])]
        staging = self.content.staging
        if not staging.available:
            out.append(self.rich([("AI staging: ", True),
                                  (staging.unavailable_reason or "not available", False)]))
        else:
            top, top_p = max(staging.probabilities, key=lambda pair: pair[1])
            wording = "most probable " if staging.predicted == top else "reported stage "
            parts = [(f"AI staging (model output): {wording}", False),
                     (staging.predicted or NOT_GIVEN, True)]
            if staging.predicted != top:
                parts.append((f" (not its most probable stage, {top} at {100 * top_p:.1f} %)",
                              False))
            if staging.close:
                # a near tie is reported as one: the model did not separate these stages
                others = " or ".join(f"{name} ({100 * p:.1f} %)" for name, p in staging.close)
                parts.append((f", close to {others}: the model does not separate these "
                              "stages", False))
            if staging.model:
                parts.append((f"  (model {staging.model})", False))
            out.append(self.rich(parts))
            rows = [[self.para(name, "cell"), self.para(f"{100 * p:.1f} %", "cell_right")]
                    for name, p in staging.probabilities]
            table = Table(rows, colWidths=[40 * mm, 20 * mm])
            table.setStyle(self.table_style([("TOPPADDING", (0, 0), (-1, -1), 0.5),
                                       ("BOTTOMPADDING", (0, 0), (-1, -1), 0.5)]))
            chart: Flowable | str = ""
            if staging.chart is not None:
                chart = _image_flowable(staging.chart, 95 * mm, max_height=26 * mm)
            both = Table([[table, chart]], colWidths=[64 * mm, _TEXT_W - 64 * mm])
            both.setStyle(self.table_style([("VALIGN", (0, 0), (-1, -1), "TOP"),
                                      ("LEFTPADDING", (0, 0), (-1, -1), 0)]))
            out.append(both)
        clinical = self.content.clinical
        if clinical is None:
            out.append(self.rich([("Clinical scores: ", True),
                                  ("not available: no clinical values entered", False)]))
            return out
        if clinical.scores:
            rows = [[Paragraph("Score", self.styles["cell_bold"]),
                     Paragraph("Value", self.styles["cell_bold"]),
                     Paragraph("Class / grade", self.styles["cell_bold"]),
                     Paragraph("Reference", self.styles["cell_bold"])]]
            for score in clinical.scores:
                value = (f"{score.value:.2f}" if score.name == "ALBI"
                         else f"{score.value:.0f}")
                rows.append([self.para(score.name, "cell"), self.para(value, "cell"),
                             self.para(score.grade or NOT_GIVEN, "cell"),
                             self.para(score.citation, "small")])
            table = Table(rows, colWidths=[22 * mm, 16 * mm, 24 * mm, _TEXT_W - 62 * mm],
                          repeatRows=1)
            table.setStyle(self.table_style([
                ("BACKGROUND", (0, 0), (-1, 0), _HEAD_BG),
                ("VALIGN", (0, 0), (-1, -1), "TOP"),
                ("LINEBELOW", (0, -1), (-1, -1), 0.5, _RULE),
            ]))
            out += [Spacer(1, 2 * mm), table]
        for name, missing in clinical.missing:
            out.append(self.para(f"{name}: not computed, missing {', '.join(missing)}", "small"))
        if clinical.bclc is not None:
            out += self.bclc(clinical.bclc)
        return out

    def bclc(self, bclc: BclcSection) -> list[Flowable]:
        out: list[Flowable] = [Spacer(1, 2 * mm), self.rich([("BCLC stage: ", False),
                                                             (bclc.label, True)])]
        for reason in bclc.reasons:
            out.append(self.para(f"• {reason}", "body"))
        for caveat in bclc.caveats:
            out.append(self.para(f"Caveat: {caveat}", "body"))
        if bclc.treatment_reference:
            out.append(self.para("Guideline reference (BCLC 2022) for this stage, for "
                                 "discussion by the multidisciplinary team:", "body"))
            for option in bclc.treatment_reference:
                out.append(self.para(f"• {option}", "body"))
        out.append(self.para(bclc.disclaimer, "notice"))
        out.append(self.para(bclc.citation, "small"))
        return [KeepTogether(out)]

    def triage(self) -> list[Flowable]:
        heading = Paragraph("Per-slice triage", self.styles["h2"])
        triage = self.content.triage
        if triage is None:
            return [heading, self.rich([("AI triage: ", True),
                                        (self.content.triage_unavailable_reason, False)])]
        picture = _image_flowable(triage.chart, _TEXT_W, max_height=42 * mm)
        text = (
            f"{triage.slices_above} of {len(triage.probabilities)} axial slices at or above "
            f"{triage.threshold:g}; highest {triage.max_probability:.2f} at axial slice "
            f"{triage.max_slice + 1}. Horizontal axis: axial slice (1 = most inferior); dashed "
            "line: threshold; triangles: slices of the target lesions."
        )
        return [KeepTogether([heading, picture, self.para(text, "small")])]

    def provenance(self) -> list[Flowable]:
        head = [Paragraph(t, self.styles["cell_bold"])
                for t in ("Component", "Version", "SHA-256 (prefix)", "Provider", "Run time")]
        rows: list[list[Flowable]] = [head]
        for entry in self.content.provenance:
            run_time = format_measurement(entry.run_time) if entry.run_time else NOT_GIVEN
            rows.append([self.para(entry.component, "cell"),
                         self.para(entry.version or NOT_GIVEN, "cell"),
                         self.para(entry.sha256_prefix or NOT_GIVEN, "cell"),
                         self.para(entry.provider or NOT_GIVEN, "cell"),
                         self.para(run_time, "cell")])
        table = Table(rows, colWidths=[50 * mm, 25 * mm, 35 * mm, 45 * mm, _TEXT_W - 155 * mm],
                      repeatRows=1)
        table.setStyle(self.table_style([
            ("BACKGROUND", (0, 0), (-1, 0), _HEAD_BG),
            ("VALIGN", (0, 0), (-1, -1), "TOP"),
            ("LINEBELOW", (0, -1), (-1, -1), 0.5, _RULE),
        ]))
        return [KeepTogether([Paragraph("Provenance", self.styles["h2"]), table])]

    def warnings(self) -> list[Flowable]:
        warnings = list(self.content.warnings) + list(self.fonts.warnings)
        if self.missing:
            shown = " ".join(f"U+{ord(c):04X}" for c in sorted(self.missing)[:20])
            warnings.append(f"no installed font has these characters, shown as empty boxes: "
                            f"{shown} (install fonts-droid-fallback or a Noto font)")
        out: list[Flowable] = [Paragraph("Warnings", self.styles["h2"])]
        if not warnings:
            out.append(self.para("None from loading, geometry or measurement."))
        for warning in warnings:
            out.append(self.para(f"• {warning}"))
        return out

    def methods(self) -> list[Flowable]:
        methods = self.content.findings.methods
        if not methods:
            return []
        out: list[Flowable] = [Paragraph("Methods", self.styles["h2"])]
        for name, method in methods:
            out.append(self.rich([(f"{name}: ", True), (method, False)], "small"))
        return out


def _image_flowable(image: RenderedImage, width: float,
                    max_height: float | None = None) -> Image:
    """An Image flowable ``width`` wide (less if ``max_height`` binds), true aspect ratio."""
    height = width * image.height_px / image.width_px
    if max_height is not None and height > max_height:
        width, height = max_height * image.width_px / image.height_px, max_height
    # reportlab embeds JPEG bytes as they are (DCTDecode); PNG is decoded and re-compressed.
    return Image(io.BytesIO(image.data), width=width, height=height)


def _draw_runs(canvas: Canvas, fonts: FontSet, x: float, y: float, text: str, size: float, *,
               bold: bool = False, max_width: float | None = None,
               align_right: bool = False) -> None:
    """Draw ``text`` with per-run fonts, shortened with an ellipsis to ``max_width``."""
    if max_width is not None and fonts.string_width(text, size, bold) > max_width:
        while text and fonts.string_width(text + "…", size, bold) > max_width:
            text = text[:-1]
        text += "…"
    if align_right:
        x -= fonts.string_width(text, size, bold)
    canvas.saveState()
    canvas.setFillColor(colors.black)
    for font, run in fonts.runs(text, bold):
        canvas.setFont(font, size)
        canvas.drawString(x, y, run)
        x += canvas.stringWidth(run, font, size)
    canvas.restoreState()


def _numbered_canvas(fonts: FontSet, footer_left: str) -> Callable[..., Canvas]:
    """A Canvas class that writes "page X of Y" once the page count is known."""

    class NumberedCanvas(Canvas):
        def __init__(self, *args: object, **kwargs: object) -> None:
            super().__init__(*args, **kwargs)  # type: ignore[arg-type]
            self._pages: list[dict] = []

        def showPage(self) -> None:  # reportlab's method name
            self._pages.append(dict(self.__dict__))
            self._startPage()

        def save(self) -> None:
            total = len(self._pages)
            for number, state in enumerate(self._pages, start=1):
                self.__dict__.update(state)
                y = 9 * mm
                _draw_runs(self, fonts, _MARGIN, y, footer_left, 7)
                _draw_runs(self, fonts, _PAGE_W / 2 + 8 * mm, y, _SHORT_NOTICE, 7,
                           align_right=False)
                _draw_runs(self, fonts, _PAGE_W - _MARGIN, y, f"page {number} of {total}", 7,
                           align_right=True)
                super().showPage()
            super().save()

    return NumberedCanvas
