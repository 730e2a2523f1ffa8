"""The staging panel: the CNN-LSTM's chronic liver disease stage as class probabilities.

One horizontal bar per class, in the fixed order Mild, Moderate, Severe, End-stage, each with
its percentage; the most probable class is highlighted, with any stage within ten points of it
(a close call named in the headline; :data:`radview.inference.staging.CLOSE_CALL_MARGIN`), and
the panel names the model that produced them. The wording never claims more than the numbers:
there is no "diagnosis" and no single stage without its probability, percentages that round to
0 or 100 are shown as "<1 %" / ">99 %", and a note says the model was trained on synthetic
data.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from enum import Enum

from PySide6.QtCore import QRectF, QSize, Qt
from PySide6.QtGui import QColor, QFont, QPainter
from PySide6.QtWidgets import QGridLayout, QLabel, QSizePolicy, QVBoxLayout, QWidget

from radview.inference.staging import close_alternatives

__all__ = ["DiseaseStage", "StagingPanel", "STAGING_NOTE", "format_probability"]

STAGING_NOTE = (
    "Decision support: probabilities from a model trained on synthetic data; not a diagnosis."
)
#: Probabilities may miss 1 by float32 round-off, not by more.
_SUM_TOLERANCE = 0.01
_GROOVE = QColor(42, 43, 47)
_FILL = QColor(110, 118, 132)
_FILL_TOP = QColor(86, 180, 233)  # Okabe-Ito sky blue: the most probable class
_NOTE_STYLE = "color: #9a9a9a;"


class DiseaseStage(Enum):
    """The staging model's classes, in display order (training/networks.py: CnnLstmStager)."""

    MILD = "Mild"
    MODERATE = "Moderate"
    SEVERE = "Severe"
    END_STAGE = "End-stage"

    @classmethod
    def from_name(cls, name: str) -> DiseaseStage | None:
        """The class named ``name`` ("End-stage", "end_stage", "END STAGE"...), or None."""
        word = name.strip().lower().replace("_", "-").replace(" ", "-")
        return next((stage for stage in cls if stage.value.lower() == word), None)


def format_probability(p: float) -> str:
    """A probability as a whole percentage that never rounds to certainty.

    0.999 is ">99 %", not "100 %"; 0.001 is "<1 %", not "0 %".
    """
    if 0.0 < p < 0.005:
        return "<1 %"
    if 0.995 <= p < 1.0:
        return ">99 %"
    return f"{int(p * 100 + 0.5)} %"  # half up: 0.5 % is "1 %" (format() rounds half to even)


class _ProbabilityBar(QWidget):
    """A flat horizontal bar filled to ``value`` (0-1); two fillRects, no style machinery."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.value = 0.0
        self.highlighted = False
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)

    def sizeHint(self) -> QSize:
        return QSize(120, 14)

    def set(self, value: float, highlighted: bool) -> None:
        self.value, self.highlighted = value, highlighted
        self.update()

    def paintEvent(self, event) -> None:
        painter = QPainter(self)
        rect = QRectF(self.rect()).adjusted(0, 2, 0, -2)
        painter.fillRect(rect, _GROOVE)
        filled = QRectF(rect)
        filled.setWidth(rect.width() * min(max(self.value, 0.0), 1.0))
        painter.fillRect(filled, _FILL_TOP if self.highlighted else _FILL)
        painter.end()


class StagingPanel(QWidget):
    """Shows a staging result (:meth:`show_staging`) or why there is none
    (:meth:`show_unavailable`).

    Attributes
    ----------
    name_labels, bars, percent_labels
        By :class:`DiseaseStage`: the class name, its bar and its percentage.
    headline, model_label, note, reason_label
        The most probable class line, the model id and version, the decision-support note,
        and the reason shown instead of the bars.
    """

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.title = QLabel("Liver disease stage (CNN-LSTM)")
        bold = QFont(self.title.font())
        bold.setBold(True)
        self.title.setFont(bold)
        self.reason_label = _plain_label()
        self.rows = QWidget()
        grid = QGridLayout(self.rows)
        grid.setContentsMargins(0, 0, 0, 0)
        grid.setColumnStretch(1, 1)
        self.name_labels: dict[DiseaseStage, QLabel] = {}
        self.bars: dict[DiseaseStage, _ProbabilityBar] = {}
        self.percent_labels: dict[DiseaseStage, QLabel] = {}
        for row, stage in enumerate(DiseaseStage):
            name = QLabel(stage.value)
            bar = _ProbabilityBar()
            percent = QLabel()
            percent.setAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
            percent.setMinimumWidth(percent.fontMetrics().horizontalAdvance(">99 %") + 6)
            grid.addWidget(name, row, 0)
            grid.addWidget(bar, row, 1)
            grid.addWidget(percent, row, 2)
            self.name_labels[stage], self.bars[stage], self.percent_labels[stage] = (
                name, bar, percent)
        self.headline = _plain_label()
        self.model_label = _plain_label(style=_NOTE_STYLE)
        self.note = _plain_label(STAGING_NOTE, style=_NOTE_STYLE)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.title)
        layout.addWidget(self.reason_label)
        layout.addWidget(self.rows)
        layout.addWidget(self.headline)
        layout.addWidget(self.model_label)
        layout.addWidget(self.note)
        self._highlighted: tuple[DiseaseStage, ...] = ()
        self.show_unavailable("no staging result yet")

    # ------------------------------------------------------------------ public API
    def show_staging(self, stage: str, probabilities: Mapping[str, float], model: str) -> None:
        """Show one result: ``probabilities`` by class name (all four, summing to 1).

        A result that is not that (unknown or missing classes, values outside 0-1, a sum
        other than 1) is not drawn as bars: the panel says what is wrong instead.
        """
        by_stage, problem = _checked(probabilities)
        if problem:
            self.show_unavailable(f"staging result not shown: {problem}")
            return
        shown = {stage_: format_probability(p) for stage_, p in by_stage.items()}
        best = max(DiseaseStage, key=lambda s: by_stage[s])
        # A near tie is a tie: highlighting one of them would claim more than the model knows.
        close = {DiseaseStage.from_name(name) for name in close_alternatives(
            {s.value: by_stage[s] for s in DiseaseStage}, best.value)}
        top = tuple(s for s in DiseaseStage if s == best or s in close)
        for stage_ in DiseaseStage:
            highlighted = stage_ in top
            self.bars[stage_].set(by_stage[stage_], highlighted)
            self.bars[stage_].setToolTip(f"{stage_.value}: P = {by_stage[stage_]:.3f}")
            self.percent_labels[stage_].setText(shown[stage_])
            for label in (self.name_labels[stage_], self.percent_labels[stage_]):
                font = label.font()
                font.setBold(highlighted)
                label.setFont(font)
        self._highlighted = top
        if all(shown[s] == shown[best] for s in top):
            each = " each" if len(top) > 1 else ""
            headline = f"Most probable: {' or '.join(s.value for s in top)} ({shown[best]}{each})"
        else:
            others = " or ".join(f"{s.value} ({shown[s]})" for s in top if s != best)
            headline = (f"Most probable: {best.value} ({shown[best]})\n"
                        f"Close to it: {others}; the model does not separate these stages.")
        reported = DiseaseStage.from_name(stage)
        if reported is None or reported not in top:
            headline += f"\nThe model reported {stage!r}, which is not its most probable class."
        self.headline.setText(headline)
        self.model_label.setText(f"Model: {model}")
        self.reason_label.hide()
        for widget in (self.rows, self.headline, self.model_label, self.note):
            widget.show()

    def show_unavailable(self, reason: str) -> None:
        """No result: say why (e.g. "no staging model installed") instead of bars."""
        self._highlighted = ()
        self.reason_label.setText(f"Staging: {reason}")
        self.reason_label.show()
        for widget in (self.rows, self.headline, self.model_label, self.note):
            widget.hide()

    def highlighted(self) -> tuple[DiseaseStage, ...]:
        """The class(es) shown as most probable (empty when no result is shown)."""
        return self._highlighted


def _checked(probabilities: Mapping[str, float]
             ) -> tuple[dict[DiseaseStage, float], str | None]:
    """Probabilities by class, or a one-line description of what is wrong with them."""
    by_stage: dict[DiseaseStage, float] = {}
    unknown = []
    for name, raw in probabilities.items():
        stage = DiseaseStage.from_name(str(name))
        if stage is None:
            unknown.append(str(name))
            continue
        if stage in by_stage:
            return {}, f"{stage.value} is given more than once"
        try:
            value = float(raw)
        except (TypeError, ValueError):
            return {}, f"{name} probability {raw!r} is not a number"
        if not math.isfinite(value) or not 0.0 <= value <= 1.0:
            return {}, f"{name} probability {value:g} is outside 0-1"
        by_stage[stage] = value
    expected = ", ".join(stage.value for stage in DiseaseStage)
    if unknown:
        return {}, f"unknown class(es) {', '.join(unknown)}; expected {expected}"
    missing = [stage.value for stage in DiseaseStage if stage not in by_stage]
    if missing:
        return {}, f"no probability for {', '.join(missing)}"
    total = sum(by_stage.values())
    if abs(total - 1.0) > _SUM_TOLERANCE:
        return {}, f"the probabilities add up to {total:.3f}, not 1"
    return by_stage, None


def _plain_label(text: str = "", style: str = "") -> QLabel:
    label = QLabel(text)
    label.setTextFormat(Qt.TextFormat.PlainText)  # model ids and reasons are not markup
    label.setWordWrap(True)
    if style:
        label.setStyleSheet(style)
    return label
