"""The clinical-values form: laboratory and clinical inputs, and the scores they allow.

Every number, range, unit and message comes from :mod:`radview.inference.clinical`; this
widget only reads its controls, asks that module (:func:`validate_mapping`,
:func:`clinical_summary`) and shows the answer (DESIGN rule 3). Scores are recomputed on every
keystroke. A field whose value is implausible or looks like a wrong unit shows clinical.py's
message beside it and is left out, so the scores that do not need it still update; the ones
that do say which field they are waiting for.

BCLC also needs the lesion count and size. They come from the measured segmentation
(:meth:`ClinicalForm.set_findings`, the lesions inside the liver, RECIST long axes); without one
the BCLC row says so instead of guessing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QGridLayout,
    QGroupBox,
    QLabel,
    QLineEdit,
    QVBoxLayout,
    QWidget,
)

from radview.core.lesions import LiverFindings
from radview.inference.clinical import (
    Ascites,
    ClinicalValueError,
    ClinicalValues,
    EcogStatus,
    Encephalopathy,
    FieldProblem,
    ProblemKind,
    clinical_summary,
    validate_lesion_diameters,
    validate_mapping,
)

__all__ = ["ClinicalForm", "NEEDS_SEGMENTATION"]

NEEDS_SEGMENTATION = (
    "BCLC needs a segmentation: the lesion count and size come from the measured lesions "
    "(run Analyze or open a label map)."
)
_PROBLEM_STYLE = "color: #ff8a80;"
_NOTE_STYLE = "color: #9a9a9a;"
_NOT_ENTERED = "—"


@dataclass(frozen=True)
class _NumberField:
    """A numeric input: the ClinicalValues field it fills and the keys (= units) it may be
    entered in, the first being the conventional unit clinical.py's thresholds use."""

    field: str
    label: str
    keys: tuple[str, ...]


_NUMBER_FIELDS = (
    _NumberField("bilirubin_mg_dl", "Bilirubin", ("bilirubin_mg_dl", "bilirubin_umol_l")),
    _NumberField("albumin_g_dl", "Albumin", ("albumin_g_dl", "albumin_g_l")),
    _NumberField("inr", "INR", ("inr",)),
    _NumberField("creatinine_mg_dl", "Creatinine", ("creatinine_mg_dl", "creatinine_umol_l")),
    _NumberField("sodium_mmol_l", "Sodium", ("sodium_mmol_l",)),
)

_YES_NO = ((_NOT_ENTERED, None), ("No", False), ("Yes", True))
#: (field, label, choices as (text, value)); "—" = not entered, which is never read as "no".
_CHOICE_FIELDS: tuple[tuple[str, str, tuple[tuple[str, Any], ...]], ...] = (
    ("on_dialysis", "On dialysis", _YES_NO),
    ("ascites", "Ascites", ((_NOT_ENTERED, None), ("None", Ascites.NONE), ("Mild", Ascites.MILD),
                            ("Moderate / severe", Ascites.MODERATE_SEVERE))),
    ("encephalopathy", "Encephalopathy", (
        (_NOT_ENTERED, None), ("None", Encephalopathy.NONE),
        ("Grade 1-2", Encephalopathy.GRADE_1_2), ("Grade 3-4", Encephalopathy.GRADE_3_4))),
    ("ecog", "ECOG", ((_NOT_ENTERED, None),
                      *((str(int(status)), status) for status in EcogStatus))),
    ("vascular_invasion", "Vascular invasion", _YES_NO),
    ("extrahepatic_spread", "Extrahepatic spread", _YES_NO),
)

#: Readable names of the fields a score may wait for.
_FIELD_NAMES = {
    **{spec.field: spec.label.lower() if spec.label != "INR" else "INR"
       for spec in _NUMBER_FIELDS},
    **{name: label.lower() if name != "ecog" else "ECOG" for name, label, _ in _CHOICE_FIELDS},
    "lesion_diameters_mm": "measured lesions",
}


def _unit_of(key: str) -> str:
    """The unit clinical.py gives an entry key ('' for INR).

    clinical.py publishes units on its :class:`FieldProblem` ("the unit that key implies"), so
    the form asks it with a value that can never parse instead of keeping a second table.
    """
    problems = validate_mapping({key: "?"})
    return problems[0].unit if problems else ""


class ClinicalForm(QWidget):
    """Clinical values in, Child-Pugh / MELD-Na / ALBI / BCLC out, recomputed as the user types.

    Attributes
    ----------
    number_edits, unit_combos, unit_labels, problem_labels
        By ClinicalValues field (``bilirubin_mg_dl`` ...): the line edit, the unit choice
        (fields with two units) or fixed unit label, and the field's message line.
    choice_combos
        By field (``ascites``, ``ecog``, ...): the choice; "—" means not entered.
    child_pugh_label, meld_label, albi_label, bclc_label, bclc_details, lesion_source
        The score lines, the BCLC reasoning / reference text / citation, and where the
        lesion count and size came from.

    Signals
    -------
    values_changed(object)
        After every recomputation: :meth:`values` (a ClinicalValues or None).
    """

    values_changed = Signal(object)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._findings: LiverFindings | None = None
        self._problems: list[FieldProblem] = []
        self._values: ClinicalValues | None = None
        self.number_edits: dict[str, QLineEdit] = {}
        self.unit_combos: dict[str, QComboBox] = {}
        self.unit_labels: dict[str, QLabel] = {}
        self.problem_labels: dict[str, QLabel] = {}
        self.choice_combos: dict[str, QComboBox] = {}
        self._field_of_key: dict[str, str] = {}

        labs = QGroupBox("Laboratory values")
        grid = QGridLayout(labs)
        grid.setColumnStretch(1, 1)
        row = 0
        for spec in _NUMBER_FIELDS:
            edit = QLineEdit()
            edit.setPlaceholderText("not entered")
            edit.setAccessibleName(spec.label)
            edit.textChanged.connect(self._recompute)
            grid.addWidget(QLabel(spec.label), row, 0)
            grid.addWidget(edit, row, 1)
            if len(spec.keys) > 1:
                units = QComboBox()
                for key in spec.keys:
                    units.addItem(_unit_of(key), key)
                units.setToolTip("Unit of the entered value")
                units.currentIndexChanged.connect(self._recompute)
                self.unit_combos[spec.field] = units
                grid.addWidget(units, row, 2)
            else:
                unit = _plain_label(_unit_of(spec.keys[0]))
                self.unit_labels[spec.field] = unit
                grid.addWidget(unit, row, 2)
            problem = _plain_label(style=_PROBLEM_STYLE)
            problem.hide()
            grid.addWidget(problem, row + 1, 0, 1, 3)
            self.number_edits[spec.field] = edit
            self.problem_labels[spec.field] = problem
            for key in spec.keys:
                self._field_of_key[key] = spec.field
            row += 2

        clinical = QGroupBox("Clinical findings")
        choices = QGridLayout(clinical)
        choices.setColumnStretch(1, 1)
        self.ecog_description = _plain_label(style=_NOTE_STYLE)
        row = 0
        for name, label, options in _CHOICE_FIELDS:
            combo = QComboBox()
            for text, value in options:
                combo.addItem(text, value)
            combo.setAccessibleName(label)
            combo.currentIndexChanged.connect(self._recompute)
            self.choice_combos[name] = combo
            choices.addWidget(QLabel(label), row, 0)
            choices.addWidget(combo, row, 1)
            row += 1
            if name == "ecog":  # the grade's definition, right under it
                for index in range(1, combo.count()):
                    combo.setItemData(index, combo.itemData(index).description,
                                      Qt.ItemDataRole.ToolTipRole)
                choices.addWidget(self.ecog_description, row, 0, 1, 2)
                row += 1
        self.choice_combos["on_dialysis"].setToolTip(
            "At least two dialyses in the past week, or 24 h of CVVHD (the MELD rule)")

        scores = QGroupBox("Scores")
        score_grid = QGridLayout(scores)
        score_grid.setColumnStretch(1, 1)
        self.child_pugh_label = _plain_label()
        self.meld_label = _plain_label()
        self.albi_label = _plain_label()
        self.bclc_label = _plain_label()
        for row, (name, label) in enumerate((("Child-Pugh", self.child_pugh_label),
                                             ("MELD-Na", self.meld_label),
                                             ("ALBI", self.albi_label),
                                             ("BCLC", self.bclc_label))):
            title = QLabel(name)
            title.setAlignment(Qt.AlignmentFlag.AlignTop)
            score_grid.addWidget(title, row, 0)
            score_grid.addWidget(label, row, 1)
        self.lesion_source = _plain_label(style=_NOTE_STYLE)
        self.bclc_details = _plain_label()
        score_grid.addWidget(self.lesion_source, 4, 0, 1, 2)
        score_grid.addWidget(self.bclc_details, 5, 0, 1, 2)
        self.error_label = _plain_label(style=_PROBLEM_STYLE)
        self.error_label.hide()

        layout = QVBoxLayout(self)
        layout.addWidget(labs)
        layout.addWidget(clinical)
        layout.addWidget(scores)
        layout.addWidget(self.error_label)
        layout.addStretch(1)
        self._recompute()

    # ------------------------------------------------------------------ public API
    def set_findings(self, findings: LiverFindings | None) -> None:
        """Take the lesion count and size for BCLC from these measurements (None: none)."""
        self._findings = findings
        self._recompute()

    def values(self) -> ClinicalValues | None:
        """What was entered, for the analysis and the report.

        ``None`` when nothing was entered or any entered value has a problem: a report must
        not carry scores computed around a value the form marked as wrong.
        """
        return self._values

    def problems(self) -> list[FieldProblem]:
        """clinical.py's problems with the entered values (empty when all are plausible)."""
        return list(self._problems)

    def lesion_diameters_mm(self) -> list[float] | None:
        """RECIST long axes (mm) of the lesions inside the liver; None without findings."""
        if self._findings is None:
            return None
        return [lesion.long_axis.value for lesion in self._findings.lesions if lesion.in_liver]

    def clear(self) -> None:
        """Empty every field (another patient's series was opened)."""
        for widget in (*self.number_edits.values(), *self.choice_combos.values()):
            widget.blockSignals(True)
        try:
            for edit in self.number_edits.values():
                edit.clear()
            for combo in self.choice_combos.values():
                combo.setCurrentIndex(0)
        finally:
            for widget in (*self.number_edits.values(), *self.choice_combos.values()):
                widget.blockSignals(False)
        self._recompute()

    # ------------------------------------------------------------------ recomputing
    def _entered(self) -> dict[str, object]:
        """The entered values by the key of their unit (clinical.py's entry keys)."""
        entered: dict[str, object] = {}
        for spec in _NUMBER_FIELDS:
            text = self.number_edits[spec.field].text()
            if text.strip():
                units = self.unit_combos.get(spec.field)
                key = units.currentData() if units is not None else spec.keys[0]
                entered[key] = text
        for name, combo in self.choice_combos.items():
            value = combo.currentData()
            if value is not None:
                entered[name] = value
        return entered

    def _recompute(self, *_: object) -> None:
        entered = self._entered()
        problems = validate_mapping(entered)
        bad_keys = {problem.field for problem in problems}
        self._problems = problems
        self._show_problems(problems)
        usable = {key: value for key, value in entered.items() if key not in bad_keys}
        diameters = self.lesion_diameters_mm()
        lesion_problems = validate_lesion_diameters(diameters) if diameters is not None else []
        try:
            values = ClinicalValues.from_mapping(usable)
            summary = clinical_summary(values, None if lesion_problems else diameters)
        except ClinicalValueError as error:  # not expected after validation; never hidden
            self._values = None
            self.error_label.setText(str(error))
            self.error_label.show()
            self.values_changed.emit(None)
            return
        self.error_label.hide()
        self._values = values if entered and not problems else None
        bad_fields = {self._field_of_key.get(key, key) for key in bad_keys}
        self._show_scores(summary, bad_fields, lesion_problems)
        status = self.choice_combos["ecog"].currentData()
        self.ecog_description.setText(status.description if status is not None else "")
        self.ecog_description.setVisible(status is not None)
        self.values_changed.emit(self._values)

    def _show_problems(self, problems: list[FieldProblem]) -> None:
        by_field: dict[str, list[str]] = {}
        for problem in problems:
            field = self._field_of_key.get(problem.field)
            if field is None:  # choices come from combos and cannot be invalid
                continue
            label = next(spec.label for spec in _NUMBER_FIELDS if spec.field == field)
            # clinical.py names the entry key; the form names the field as its row does.
            by_field.setdefault(field, []).append(problem.message.replace(problem.field, label, 1))
        for field, label in self.problem_labels.items():
            messages = by_field.get(field, [])
            label.setText("\n".join(messages))
            label.setVisible(bool(messages))
            edit = self.number_edits[field]
            edit.setStyleSheet("QLineEdit { border: 1px solid #c0504d; }" if messages else "")
            edit.setToolTip("\n".join(messages))

    def _show_scores(self, summary: dict[str, Any], bad_fields: set[str],
                     lesion_problems: list[FieldProblem]) -> None:
        missing = summary["missing"]

        def waiting(score: str) -> str:
            names = []
            for field in missing[score]:
                name = _FIELD_NAMES.get(field, field)
                names.append(f"{name} (check the value)" if field in bad_fields else name)
            return "needs " + ", ".join(names)

        cp = summary["child_pugh"]
        _set_score(self.child_pugh_label,
                   f"Class {cp['class']} ({cp['score']} points)" if cp else waiting("child_pugh"),
                   cp)
        meld = summary["meld_na"]
        if meld:
            text = f"{meld['score']}" + (" (capped at 40)" if meld["capped_at_40"] else "")
            adjusted = [f"{a['field'].split('_')[0]} {a['entered']:g} counted as {a['used']:g}"
                        for a in meld["adjustments"]]
            if adjusted:  # the bounds MELD applies, so the number is not a surprise
                text += f" ({'; '.join(adjusted)})"
        else:
            text = waiting("meld_na")
        _set_score(self.meld_label, text, meld)
        albi = summary["albi_grade"]
        _set_score(self.albi_label,
                   f"Grade {albi['grade']} (score {albi['score']:.2f})" if albi
                   else waiting("albi_grade"), albi)
        self._show_bclc(summary["bclc"], waiting("bclc"), lesion_problems)

    def _show_bclc(self, bclc: dict[str, Any] | None, waiting: str,
                   lesion_problems: list[FieldProblem]) -> None:
        findings = self._findings
        diameters = self.lesion_diameters_mm()
        self.lesion_source.setVisible(findings is not None)
        if findings is None:
            self.lesion_source.setText("")
        elif not diameters:
            self.lesion_source.setText("The segmentation has no lesion in the liver.")
        else:
            self.lesion_source.setText(
                f"From the segmentation: {len(diameters)} lesion(s) in the liver, largest "
                f"long axis {max(diameters):.1f} mm")
        if bclc is None:
            if findings is None:
                text = NEEDS_SEGMENTATION
            elif lesion_problems:
                text = "; ".join(_lesion_message(problem) for problem in lesion_problems)
            else:
                text = waiting
            self.bclc_label.setText(text)
            self.bclc_label.setToolTip("")
            self.bclc_details.setText("")
            self.bclc_details.hide()
            return
        self.bclc_label.setText(bclc["label"])
        self.bclc_label.setToolTip(bclc["citation"])
        lines = [f"Decided by: {bclc['reasons'][0]}"]
        lines += [f"Caveat: {caveat}" for caveat in bclc["caveats"]]
        lines.append("Guideline reference (BCLC 2022):")
        lines += [f"  • {option}" for option in bclc["treatment_reference"]]
        lines.append(bclc["disclaimer"])
        lines.append(bclc["citation"])
        self.bclc_details.setText("\n".join(lines))
        self.bclc_details.show()


def _set_score(label: QLabel, text: str, result: dict[str, Any] | None) -> None:
    label.setText(text)
    label.setToolTip(f"{result['formula']}\n\n{result['citation']}" if result else "")


def _lesion_message(problem: FieldProblem) -> str:
    if problem.kind is ProblemKind.EMPTY and problem.hint:
        return problem.hint[:1].upper() + problem.hint[1:]
    return problem.message


def _plain_label(text: str = "", style: str = "") -> QLabel:
    label = QLabel(text)
    label.setTextFormat(Qt.TextFormat.PlainText)
    label.setWordWrap(True)
    if style:
        label.setStyleSheet(style)
    return label

