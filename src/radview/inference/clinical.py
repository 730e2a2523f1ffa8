"""Clinical scores from values the user enters: Child-Pugh, MELD / MELD-Na, ALBI, ECOG, BCLC.

The values are typed in by a person (a form in the viewer, or a JSON file next to a batch job),
so most of this module is about not computing a score from a wrong number:

* :class:`ClinicalValues` holds the inputs in one set of units, named in the field names
  (``bilirubin_mg_dl``, ``albumin_g_dl``, ...). :meth:`ClinicalValues.from_mapping` and
  :func:`load_clinical_json` also accept SI keys (``bilirubin_umol_l``, ``albumin_g_l``,
  ``creatinine_umol_l``) and convert them.
* :func:`validate` / :func:`validate_mapping` return *every* problem as a :class:`FieldProblem`
  (for a form that marks each field as the user types); :func:`check`,
  :meth:`ClinicalValues.from_mapping` and the score functions raise the first one as a
  :class:`ClinicalValueError`. A value outside its plausible range that would be plausible in
  the other common unit (albumin 35 "g/dL", creatinine 90 "mg/dL") carries a hint saying so.
* A missing input is never guessed: the score functions raise
  :class:`MissingClinicalValueError`, :func:`clinical_summary` returns ``None`` for that score
  and lists the missing fields. That includes ``on_dialysis`` for MELD (it can move the score by
  many points, so "not answered" is not read as "no").

Results are data (DESIGN rule 8): each score returns a small frozen dataclass with the value,
the class/grade, the points per item (:class:`ScoreComponent`), any bounds applied to the
inputs (:class:`Adjustment`), the formula and the citation; ``to_dict()`` gives a JSON-friendly
form. Fixed choices are enums (rule 9).

Conventions
-----------
* Thresholds are the published ones in conventional units (mg/dL, g/dL); SI inputs are
  converted with bilirubin 1 mg/dL = 17.1 µmol/L, creatinine 1 mg/dL = 88.4 µmol/L,
  albumin 1 g/dL = 10 g/L, rounded to 10 decimals so that 51.3 µmol/L is exactly 3.0 mg/dL.
* MELD follows the OPTN policy in force 2016-2023: MELD(i) is rounded half-up to the tenth
  before the ×10, the sodium step is done in exact decimal arithmetic and rounded half-up.
* The ALBI grade is taken from the unrounded score.
* BCLC staging is a simplified reading of the 2022 update (see :func:`bclc_stage`); the
  treatment options it returns are guideline reference text, not a recommendation.
"""

from __future__ import annotations

import difflib
import json
import math
import numbers
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields
from decimal import ROUND_HALF_UP, Decimal
from enum import IntEnum, StrEnum
from pathlib import Path
from typing import Any, NoReturn

from radview.core.errors import InputFileError, RadviewError

__all__ = [
    "Ascites",
    "Encephalopathy",
    "EcogStatus",
    "ChildPughClass",
    "AlbiGrade",
    "BclcStage",
    "BclcRule",
    "BclcCaveat",
    "MeldVariant",
    "AdjustmentRule",
    "ProblemKind",
    "ClinicalValues",
    "FieldProblem",
    "ClinicalValueError",
    "MissingClinicalValueError",
    "ClinicalFileError",
    "ScoreComponent",
    "Adjustment",
    "ChildPughResult",
    "MeldResult",
    "AlbiResult",
    "BclcResult",
    "BILIRUBIN_UMOL_L_PER_MG_DL",
    "CREATININE_UMOL_L_PER_MG_DL",
    "ALBUMIN_G_L_PER_G_DL",
    "BCLC_DISCLAIMER",
    "validate",
    "validate_mapping",
    "validate_lesion_diameters",
    "check",
    "load_clinical_json",
    "child_pugh",
    "meld",
    "meld_na",
    "albi",
    "bclc_stage",
    "clinical_summary",
]

#: Unit conversion factors (conventional → SI).
BILIRUBIN_UMOL_L_PER_MG_DL = 17.1
CREATININE_UMOL_L_PER_MG_DL = 88.4
ALBUMIN_G_L_PER_G_DL = 10.0
#: Converted values are rounded to this many decimals, which removes binary round-off
#: (51.3 / 17.1 = 2.9999999999999996) without changing any clinical meaning.
_CONVERSION_DECIMALS = 10

CITATION_CHILD_PUGH = (
    "Pugh RN, Murray-Lyon IM, Dawson JL, Pietroni MC, Williams R. Transection of the oesophagus "
    "for bleeding oesophageal varices. Br J Surg. 1973;60(8):646-649."
)
CITATION_MELD = (
    "Kamath PS et al. A model to predict survival in patients with end-stage liver disease. "
    "Hepatology. 2001;33(2):464-470; Kim WR et al. Hyponatremia and mortality among patients "
    "on the liver-transplant waiting list. N Engl J Med. 2008;359(10):1018-1026; OPTN/UNOS "
    "policy notice: MELD-Na calculation, effective January 2016."
)
CITATION_ALBI = (
    "Johnson PJ, Berhane S, Kagebayashi C, et al. Assessment of liver function in patients with "
    "hepatocellular carcinoma: a new evidence-based approach - the ALBI grade. J Clin Oncol. "
    "2015;33(6):550-558."
)
CITATION_ECOG = (
    "Oken MM, Creech RH, Tormey DC, et al. Toxicity and response criteria of the Eastern "
    "Cooperative Oncology Group. Am J Clin Oncol. 1982;5(6):649-655."
)
CITATION_BCLC = (
    "Reig M, Forner A, Rimola J, et al. BCLC strategy for prognosis prediction and treatment "
    "recommendation: the 2022 update. J Hepatol. 2022;76(3):681-693."
)
BCLC_DISCLAIMER = (
    "Guideline reference, not a treatment recommendation; decision by the multidisciplinary team."
)

FORMULA_CHILD_PUGH = (
    "1-3 points each: bilirubin <2 / 2-3 / >3 mg/dL; albumin >3.5 / 2.8-3.5 / <2.8 g/dL; "
    "INR <1.7 / 1.7-2.3 / >2.3; ascites none / mild / moderate-severe; encephalopathy none / "
    "grade 1-2 / grade 3-4. Class A 5-6, B 7-9, C 10-15."
)
_FORMULA_MELD_I = (
    "MELD(i) = 0.957 ln(creatinine mg/dL) + 0.378 ln(bilirubin mg/dL) + 1.120 ln(INR) + 0.643, "
    "rounded to the tenth and multiplied by 10; bilirubin, creatinine and INR below 1.0 are set "
    "to 1.0; creatinine above 4.0, or on dialysis (>=2 in the past week or 24 h CVVHD), is set "
    "to 4.0"
)
FORMULA_MELD = _FORMULA_MELD_I + "; maximum 40."
FORMULA_MELD_NA = _FORMULA_MELD_I + (
    "; if MELD(i) > 11: MELD = MELD(i) + 1.32 (137 - Na) - 0.033 MELD(i) (137 - Na) with sodium "
    "bounded to 125-137 mmol/L; rounded half-up to an integer, maximum 40."
)
FORMULA_ALBI = (
    "ALBI = 0.66 log10(bilirubin µmol/L) - 0.085 albumin g/L; grade 1 <= -2.60, "
    "grade 2 > -2.60 to <= -1.39, grade 3 > -1.39."
)


# --------------------------------------------------------------------------------------------
# Fixed choices


class Ascites(StrEnum):
    """Ascites as graded for Child-Pugh."""

    NONE = "none"
    MILD = "mild"
    MODERATE_SEVERE = "moderate_severe"


class Encephalopathy(StrEnum):
    """Hepatic encephalopathy (West Haven grade) as grouped for Child-Pugh."""

    NONE = "none"
    GRADE_1_2 = "grade_1_2"
    GRADE_3_4 = "grade_3_4"


class EcogStatus(IntEnum):
    """ECOG performance status 0-4 (Oken et al. 1982); grade 5 (dead) is not an input."""

    FULLY_ACTIVE = 0
    RESTRICTED_STRENUOUS_ACTIVITY = 1
    AMBULATORY_NO_WORK = 2
    LIMITED_SELF_CARE = 3
    COMPLETELY_DISABLED = 4

    @property
    def description(self) -> str:
        """The ECOG definition of this grade."""
        return _ECOG_DESCRIPTIONS[self]

    @property
    def citation(self) -> str:
        return CITATION_ECOG


_ECOG_DESCRIPTIONS = {
    EcogStatus.FULLY_ACTIVE: (
        "Fully active, able to carry on all pre-disease performance without restriction"
    ),
    EcogStatus.RESTRICTED_STRENUOUS_ACTIVITY: (
        "Restricted in physically strenuous activity but ambulatory and able to carry out work "
        "of a light or sedentary nature"
    ),
    EcogStatus.AMBULATORY_NO_WORK: (
        "Ambulatory and capable of all self-care but unable to carry out any work activities; "
        "up and about more than 50% of waking hours"
    ),
    EcogStatus.LIMITED_SELF_CARE: (
        "Capable of only limited self-care; confined to bed or chair more than 50% of waking "
        "hours"
    ),
    EcogStatus.COMPLETELY_DISABLED: (
        "Completely disabled; cannot carry on any self-care; totally confined to bed or chair"
    ),
}


class ChildPughClass(StrEnum):
    A = "A"
    B = "B"
    C = "C"


class AlbiGrade(IntEnum):
    GRADE_1 = 1
    GRADE_2 = 2
    GRADE_3 = 3

    @classmethod
    def from_score(cls, score: float) -> AlbiGrade:
        """Grade 1 <= -2.60 < grade 2 <= -1.39 < grade 3 (Johnson et al. 2015)."""
        if score <= -2.60:
            return cls.GRADE_1
        if score <= -1.39:
            return cls.GRADE_2
        return cls.GRADE_3


class BclcStage(StrEnum):
    VERY_EARLY = "0"
    EARLY = "A"
    INTERMEDIATE = "B"
    ADVANCED = "C"
    TERMINAL = "D"

    @property
    def label(self) -> str:
        return f"BCLC {self.value} ({self.name.lower().replace('_', ' ')})"


class BclcRule(StrEnum):
    """The rules :func:`bclc_stage` applies; ``description`` says what each one means."""

    END_STAGE_LIVER_FUNCTION = "end_stage_liver_function"
    ECOG_3_4 = "ecog_3_4"
    VASCULAR_INVASION = "vascular_invasion"
    EXTRAHEPATIC_SPREAD = "extrahepatic_spread"
    ECOG_1_2 = "ecog_1_2"
    SINGLE_UP_TO_20_MM = "single_up_to_20_mm"
    SINGLE_ANY_SIZE = "single_any_size"
    UP_TO_3_NODULES_UP_TO_30_MM = "up_to_3_nodules_up_to_30_mm"
    MULTINODULAR = "multinodular"

    @property
    def description(self) -> str:
        return _BCLC_RULE_DESCRIPTIONS[self]


_BCLC_RULE_DESCRIPTIONS = {
    BclcRule.END_STAGE_LIVER_FUNCTION: "Child-Pugh C (end-stage liver function) -> BCLC D",
    BclcRule.ECOG_3_4: "ECOG performance status 3-4 -> BCLC D",
    BclcRule.VASCULAR_INVASION: "macrovascular invasion -> BCLC C",
    BclcRule.EXTRAHEPATIC_SPREAD: "extrahepatic spread -> BCLC C",
    BclcRule.ECOG_1_2: "ECOG performance status 1-2 -> BCLC C",
    BclcRule.SINGLE_UP_TO_20_MM: (
        "single lesion <= 20 mm, Child-Pugh A, ECOG 0 -> BCLC 0"
    ),
    BclcRule.SINGLE_ANY_SIZE: "single lesion (any size), ECOG 0 -> BCLC A",
    BclcRule.UP_TO_3_NODULES_UP_TO_30_MM: "2-3 lesions each <= 30 mm, ECOG 0 -> BCLC A",
    BclcRule.MULTINODULAR: (
        "multinodular beyond BCLC A (more than 3 lesions, or 2-3 with one > 30 mm), ECOG 0 "
        "-> BCLC B"
    ),
}


class BclcCaveat(StrEnum):
    """Things the team should know about how a stage was reached."""

    CHILD_PUGH_B = "child_pugh_b"
    SMALL_SINGLE_LESION_NOT_CHILD_PUGH_A = "small_single_lesion_not_child_pugh_a"

    @property
    def description(self) -> str:
        return _BCLC_CAVEAT_DESCRIPTIONS[self]


_BCLC_CAVEAT_DESCRIPTIONS = {
    BclcCaveat.CHILD_PUGH_B: (
        "Child-Pugh B: BCLC 2022 stages 0-C assume preserved liver function, which is a "
        "clinical judgement beyond the Child-Pugh class"
    ),
    BclcCaveat.SMALL_SINGLE_LESION_NOT_CHILD_PUGH_A: (
        "single lesion <= 20 mm but not Child-Pugh A: staged A, not 0"
    ),
}

_BCLC_TREATMENT_REFERENCE: dict[BclcStage, tuple[str, ...]] = {
    BclcStage.VERY_EARLY: (
        "Evaluation for liver transplantation",
        "Ablation",
        "Resection",
    ),
    BclcStage.EARLY: (
        "Resection",
        "Liver transplantation",
        "Ablation",
    ),
    BclcStage.INTERMEDIATE: (
        "Liver transplantation (extended criteria, e.g. after successful downstaging)",
        "TACE (well-defined nodules, preserved portal flow, selective access)",
        "Systemic therapy (diffuse, infiltrative or extensive bilobar involvement)",
    ),
    BclcStage.ADVANCED: (
        "Systemic therapy: first line atezolizumab-bevacizumab or durvalumab-tremelimumab; "
        "alternatives sorafenib, lenvatinib or durvalumab",
        "Later lines per guideline (e.g. regorafenib, cabozantinib, ramucirumab)",
    ),
    BclcStage.TERMINAL: ("Best supportive care",),
}


class MeldVariant(StrEnum):
    MELD = "MELD"
    MELD_NA = "MELD-Na"


class AdjustmentRule(StrEnum):
    """Bounds a score applies to an entered value before using it."""

    RAISED_TO_1 = "raised_to_1"
    CREATININE_CAPPED_AT_4 = "creatinine_capped_at_4"
    DIALYSIS_CREATININE_4 = "dialysis_creatinine_4"
    SODIUM_RAISED_TO_125 = "sodium_raised_to_125"
    SODIUM_LOWERED_TO_137 = "sodium_lowered_to_137"


class ProblemKind(StrEnum):
    MISSING = "missing"
    NOT_A_NUMBER = "not_a_number"
    NOT_FINITE = "not_finite"
    OUT_OF_RANGE = "out_of_range"
    LIKELY_UNIT_MISTAKE = "likely_unit_mistake"
    INVALID_CHOICE = "invalid_choice"
    UNKNOWN_FIELD = "unknown_field"
    DUPLICATE_FIELD = "duplicate_field"
    EMPTY = "empty"


# --------------------------------------------------------------------------------------------
# Problems and errors


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, str):
        return repr(value)
    return str(value)


def _fmt_range(low: float, high: float) -> str:
    if float(low).is_integer() and float(high).is_integer():
        return f"{low:.0f}-{high:.0f}"
    return f"{low:.1f}-{high:.1f}"


def _json_scalar(value: object) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)  # NaN / Infinity are not JSON
    return isinstance(value, (int, str, bool))


@dataclass(frozen=True)
class FieldProblem:
    """One problem with one entered field; ``message`` is its one-line description.

    ``field`` is the key the user entered (``albumin_g_l`` stays ``albumin_g_l``), ``value`` the
    value as entered, ``unit`` the unit that key implies (empty for INR, ECOG and choices).
    """

    field: str
    kind: ProblemKind
    value: object = None
    unit: str = ""
    plausible_range: tuple[float, float] | None = None
    hint: str | None = None

    @property
    def message(self) -> str:
        hint = f" — {self.hint}" if self.hint else ""
        unit = f" {self.unit}" if self.unit else ""
        if self.kind in (ProblemKind.OUT_OF_RANGE, ProblemKind.LIKELY_UNIT_MISTAKE):
            assert self.plausible_range is not None
            low, high = self.plausible_range
            return f"{self.field} {_fmt(self.value)} is outside {_fmt_range(low, high)}{unit}{hint}"
        if self.kind is ProblemKind.NOT_A_NUMBER:
            return f"{self.field} {_fmt(self.value)} is not a number{hint}"
        if self.kind is ProblemKind.NOT_FINITE:
            return f"{self.field} {_fmt(self.value)} is not a finite number{hint}"
        if self.kind is ProblemKind.INVALID_CHOICE:
            return f"{self.field} {_fmt(self.value)} is not a valid choice{hint}"
        if self.kind is ProblemKind.UNKNOWN_FIELD:
            return f"{self.field} is not a known clinical value{hint}"
        if self.kind is ProblemKind.DUPLICATE_FIELD:
            return f"{self.field} is given more than once{hint}"
        if self.kind is ProblemKind.EMPTY:
            return f"{self.field} is empty{hint}"
        return f"{self.field} is missing{hint}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "field": self.field,
            "kind": self.kind.value,
            "value": self.value if _json_scalar(self.value) else None,
            "unit": self.unit,
            "plausible_range": list(self.plausible_range) if self.plausible_range else None,
            "hint": self.hint,
            "message": self.message,
        }


class ClinicalValueError(RadviewError, ValueError):
    """An entered clinical value is wrong; ``field`` names it and ``problem`` has the details."""

    def __init__(self, problem: FieldProblem, source: str | None = None) -> None:
        self.problem = problem
        self.field = problem.field
        self.source = source
        self.message = f"{source}: {problem.message}" if source else problem.message
        super().__init__(self.message)

    def __reduce__(self):  # keep both fields when pickled (worker processes)
        return (type(self), (self.problem, self.source))


class MissingClinicalValueError(ClinicalValueError):
    """A score needs a value that was not entered."""


class ClinicalFileError(InputFileError):
    """A clinical-values JSON file cannot be read or is not a JSON object."""


def _raise(problem: FieldProblem, source: str | None = None) -> NoReturn:
    if problem.kind is ProblemKind.MISSING:
        raise MissingClinicalValueError(problem, source)
    raise ClinicalValueError(problem, source)


# --------------------------------------------------------------------------------------------
# Field specifications


@dataclass(frozen=True)
class _NumberSpec:
    key: str
    canonical: str
    unit: str
    low: float
    high: float
    #: canonical value = entered value * to_canonical
    to_canonical: float = 1.0
    #: Returns a hint when an out-of-range value looks like a unit mistake.
    mistake_hint: Callable[[float], str | None] | None = None


def _other_unit(unit: str, factor: float, low: float, high: float) -> Callable[[float], str | None]:
    """Hint when ``value * factor`` (the value read in ``unit``) would be plausible."""

    def hint(value: float) -> str | None:
        return f"was it entered in {unit}?" if low <= value * factor <= high else None

    return hint


def _inr_hint(value: float) -> str | None:
    # A prothrombin time is typically 10-60 s; an "INR" in that span is most likely one.
    if 10.0 < value <= 60.0:
        return "was the prothrombin time in seconds entered instead of the INR?"
    return None


_BILI_MG = (0.1, 50.0)
_ALB_G_DL = (1.0, 6.5)
_CREA_MG = (0.1, 20.0)
_BILI_UMOL = (2.0, 855.0)  # 0.117-50 mg/dL
_ALB_G_L = (10.0, 65.0)
_CREA_UMOL = (9.0, 1768.0)  # 0.102-20 mg/dL

_NUMBER_SPECS: dict[str, _NumberSpec] = {
    spec.key: spec
    for spec in (
        _NumberSpec(
            "bilirubin_mg_dl", "bilirubin_mg_dl", "mg/dL", *_BILI_MG,
            mistake_hint=_other_unit("µmol/L", 1 / BILIRUBIN_UMOL_L_PER_MG_DL, *_BILI_MG),
        ),
        _NumberSpec(
            "albumin_g_dl", "albumin_g_dl", "g/dL", *_ALB_G_DL,
            mistake_hint=_other_unit("g/L", 1 / ALBUMIN_G_L_PER_G_DL, *_ALB_G_DL),
        ),
        _NumberSpec("inr", "inr", "", 0.5, 10.0, mistake_hint=_inr_hint),
        _NumberSpec(
            "creatinine_mg_dl", "creatinine_mg_dl", "mg/dL", *_CREA_MG,
            mistake_hint=_other_unit("µmol/L", 1 / CREATININE_UMOL_L_PER_MG_DL, *_CREA_MG),
        ),
        _NumberSpec("sodium_mmol_l", "sodium_mmol_l", "mmol/L", 100.0, 180.0),
        _NumberSpec("sodium_meq_l", "sodium_mmol_l", "mEq/L", 100.0, 180.0),
        _NumberSpec(
            "bilirubin_umol_l", "bilirubin_mg_dl", "µmol/L", *_BILI_UMOL,
            to_canonical=1 / BILIRUBIN_UMOL_L_PER_MG_DL,
            mistake_hint=_other_unit("mg/dL", BILIRUBIN_UMOL_L_PER_MG_DL, *_BILI_UMOL),
        ),
        _NumberSpec(
            "albumin_g_l", "albumin_g_dl", "g/L", *_ALB_G_L,
            to_canonical=1 / ALBUMIN_G_L_PER_G_DL,
            mistake_hint=_other_unit("g/dL", ALBUMIN_G_L_PER_G_DL, *_ALB_G_L),
        ),
        _NumberSpec(
            "creatinine_umol_l", "creatinine_mg_dl", "µmol/L", *_CREA_UMOL,
            to_canonical=1 / CREATININE_UMOL_L_PER_MG_DL,
            mistake_hint=_other_unit("mg/dL", CREATININE_UMOL_L_PER_MG_DL, *_CREA_UMOL),
        ),
    )
}

_ENUM_FIELDS: dict[str, type[StrEnum]] = {
    "ascites": Ascites,
    "encephalopathy": Encephalopathy,
}
_ENUM_ALIASES: dict[str, dict[str, StrEnum]] = {
    "ascites": {
        "absent": Ascites.NONE,
        "no": Ascites.NONE,
        "slight": Ascites.MILD,
        "moderate": Ascites.MODERATE_SEVERE,
        "severe": Ascites.MODERATE_SEVERE,
    },
    "encephalopathy": {
        "absent": Encephalopathy.NONE,
        "no": Encephalopathy.NONE,
        "0": Encephalopathy.NONE,
        "1": Encephalopathy.GRADE_1_2,
        "2": Encephalopathy.GRADE_1_2,
        "3": Encephalopathy.GRADE_3_4,
        "4": Encephalopathy.GRADE_3_4,
        "minimal": Encephalopathy.GRADE_1_2,
        "mild": Encephalopathy.GRADE_1_2,
        "advanced": Encephalopathy.GRADE_3_4,
        "severe": Encephalopathy.GRADE_3_4,
    },
}
_BOOL_FIELDS = ("on_dialysis", "vascular_invasion", "extrahepatic_spread")
_TRUE_WORDS = {"true", "yes", "y", "1"}
_FALSE_WORDS = {"false", "no", "n", "0"}

_KNOWN_KEYS = (*_NUMBER_SPECS, *_ENUM_FIELDS, "ecog", *_BOOL_FIELDS)

LESION_FIELD = "lesion_diameters_mm"
_LESION_RANGE_MM = (1.0, 300.0)


# --------------------------------------------------------------------------------------------
# Parsing one entered value


def _is_number(raw: object) -> bool:
    return isinstance(raw, numbers.Real) and not isinstance(raw, bool)


def _parse_number(key: str, raw: object, unit: str) -> float | None | FieldProblem:
    """A float, ``None`` for "not entered", or the problem with ``raw``."""
    if raw is None:
        return None
    if _is_number(raw):
        value = float(raw)  # type: ignore[arg-type]
    elif isinstance(raw, str):
        text = raw.strip()
        if not text:
            return None
        if "," in text:
            return FieldProblem(key, ProblemKind.NOT_A_NUMBER, raw, unit,
                                hint="use a decimal point, not a comma")
        try:
            value = float(text)
        except ValueError:
            return FieldProblem(key, ProblemKind.NOT_A_NUMBER, raw, unit)
    else:
        return FieldProblem(key, ProblemKind.NOT_A_NUMBER, raw, unit)
    if not math.isfinite(value):
        return FieldProblem(key, ProblemKind.NOT_FINITE, value, unit)
    return value


def _range_problem(spec: _NumberSpec, value: float) -> FieldProblem | None:
    if spec.low <= value <= spec.high:
        return None
    hint = spec.mistake_hint(value) if spec.mistake_hint else None
    kind = ProblemKind.LIKELY_UNIT_MISTAKE if hint else ProblemKind.OUT_OF_RANGE
    return FieldProblem(spec.key, kind, value, spec.unit, (spec.low, spec.high), hint)


def _normalise_word(text: str) -> str:
    word = text.strip().lower()
    for separator in ("-", " ", "/"):
        word = word.replace(separator, "_")
    return word


def _parse_choice(key: str, raw: object, enum: type[StrEnum]) -> StrEnum | None | FieldProblem:
    if raw is None:
        return None
    if isinstance(raw, enum):
        return raw
    aliases = _ENUM_ALIASES.get(key, {})
    text = raw if isinstance(raw, str) else None
    if _is_number(raw) and float(raw).is_integer():  # type: ignore[arg-type]
        text = str(int(raw))  # type: ignore[call-overload]  # an encephalopathy grade 0-4
    if text is not None:
        word = _normalise_word(text)
        if not word:
            return None
        for member in enum:
            if word in (member.value, member.name.lower()):
                return member
        if word in aliases:
            return aliases[word]
    choices = ", ".join(member.value for member in enum)
    return FieldProblem(key, ProblemKind.INVALID_CHOICE, raw, hint=f"expected one of: {choices}")


def _parse_ecog(key: str, raw: object) -> EcogStatus | None | FieldProblem:
    if raw is None:
        return None
    if isinstance(raw, EcogStatus):
        return raw
    number: float | None = None
    if _is_number(raw):
        number = float(raw)  # type: ignore[arg-type]
    elif isinstance(raw, str):
        if not raw.strip():
            return None
        try:
            number = float(raw.strip())
        except ValueError:
            number = None
    if number is not None and number.is_integer() and 0 <= number <= 4:
        return EcogStatus(int(number))
    return FieldProblem(key, ProblemKind.INVALID_CHOICE, raw,
                        hint="ECOG performance status is an integer 0-4")


def _parse_bool(key: str, raw: object) -> bool | None | FieldProblem:
    if raw is None or isinstance(raw, bool):
        return raw  # type: ignore[return-value]
    if _is_number(raw) and raw in (0, 1):
        return bool(raw)
    if isinstance(raw, str):
        word = raw.strip().lower()
        if not word:
            return None
        if word in _TRUE_WORDS:
            return True
        if word in _FALSE_WORDS:
            return False
    return FieldProblem(key, ProblemKind.INVALID_CHOICE, raw, hint="expected true or false")


def _parse_field(key: str, raw: object) -> object:
    """Parse one value of a known key: the parsed value, ``None``, or a :class:`FieldProblem`."""
    if key in _NUMBER_SPECS:
        spec = _NUMBER_SPECS[key]
        return _parse_number(key, raw, spec.unit)
    if key in _ENUM_FIELDS:
        return _parse_choice(key, raw, _ENUM_FIELDS[key])
    if key == "ecog":
        return _parse_ecog(key, raw)
    return _parse_bool(key, raw)


# --------------------------------------------------------------------------------------------
# The values


@dataclass(frozen=True)
class ClinicalValues:
    """What the user entered, in conventional units; every field is optional.

    Constructing one checks types (a number is a number, a choice is one of the choices) and
    raises :class:`ClinicalValueError`; plausibility ranges are checked by :func:`validate` /
    :func:`check` and by every score, so a form can hold an implausible value while the user is
    still typing. Choices may be given as the enum or its value (``"mild"``), ``ecog`` as 0-4.

    ``on_dialysis`` follows the MELD rule: at least two dialyses in the past week, or 24 h of
    continuous veno-venous haemodialysis.
    """

    bilirubin_mg_dl: float | None = None
    albumin_g_dl: float | None = None
    inr: float | None = None
    creatinine_mg_dl: float | None = None
    sodium_mmol_l: float | None = None
    ascites: Ascites | None = None
    encephalopathy: Encephalopathy | None = None
    ecog: EcogStatus | None = None
    on_dialysis: bool | None = None
    vascular_invasion: bool | None = None
    extrahepatic_spread: bool | None = None

    def __post_init__(self) -> None:
        for item in fields(self):
            parsed = _parse_field(item.name, getattr(self, item.name))
            if isinstance(parsed, FieldProblem):
                _raise(parsed)
            object.__setattr__(self, item.name, parsed)

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, object]) -> ClinicalValues:
        """Values from a mapping of entered keys (conventional or SI units) to values.

        Keys are case-insensitive: ``bilirubin_mg_dl`` or ``bilirubin_umol_l``, ``albumin_g_dl``
        or ``albumin_g_l``, ``creatinine_mg_dl`` or ``creatinine_umol_l``, ``inr``,
        ``sodium_mmol_l`` (or ``sodium_meq_l``), ``ascites``, ``encephalopathy``, ``ecog``,
        ``on_dialysis``, ``vascular_invasion``, ``extrahepatic_spread``. ``None`` or an empty
        string means "not entered". Numbers may be strings (from a form).

        Raises
        ------
        ClinicalValueError
            The first problem :func:`validate_mapping` finds, named by the key as entered.
        """
        parsed, problems = _parse_mapping(mapping)
        if problems:
            _raise(problems[0])
        return cls(**parsed)

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly: enums as their values."""
        out: dict[str, Any] = {}
        for item in fields(self):
            value = getattr(self, item.name)
            out[item.name] = value.value if isinstance(value, (StrEnum, IntEnum)) else value
        return out


def _parse_mapping(mapping: Mapping[str, object]) -> tuple[dict[str, Any], list[FieldProblem]]:
    parsed: dict[str, Any] = {}
    problems: list[FieldProblem] = []
    given_as: dict[str, str] = {}  # canonical field -> key it was entered as
    for raw_key, raw in mapping.items():
        key = raw_key.strip().lower() if isinstance(raw_key, str) else str(raw_key)
        if key not in _KNOWN_KEYS:
            close = difflib.get_close_matches(key, _KNOWN_KEYS, n=1)
            hint = f"did you mean {close[0]}?" if close else "expected one of: " + ", ".join(
                _KNOWN_KEYS)
            problems.append(FieldProblem(str(raw_key), ProblemKind.UNKNOWN_FIELD, raw, hint=hint))
            continue
        spec = _NUMBER_SPECS.get(key)
        canonical = spec.canonical if spec else key
        if canonical in given_as:
            problems.append(FieldProblem(key, ProblemKind.DUPLICATE_FIELD, raw,
                                         hint=f"also given as {given_as[canonical]}; keep one"))
            continue
        given_as[canonical] = key
        value = _parse_field(key, raw)
        if isinstance(value, FieldProblem):
            problems.append(value)
            continue
        if spec is not None and value is not None:
            problem = _range_problem(spec, value)  # in the unit the user entered
            if problem:
                problems.append(problem)
                continue
            if spec.to_canonical != 1.0:
                value = round(value * spec.to_canonical, _CONVERSION_DECIMALS)
        parsed[canonical] = value
    return parsed, problems


def validate_mapping(mapping: Mapping[str, object]) -> list[FieldProblem]:
    """Every problem with a mapping of entered values (unknown keys, types, ranges, units).

    For a form that marks each field as the user types; an empty list means
    :meth:`ClinicalValues.from_mapping` will succeed.
    """
    return _parse_mapping(mapping)[1]


def validate(values: ClinicalValues) -> list[FieldProblem]:
    """Every entered numeric value that is outside its plausible range, in field order."""
    problems = []
    for key in ("bilirubin_mg_dl", "albumin_g_dl", "inr", "creatinine_mg_dl", "sodium_mmol_l"):
        value = getattr(values, key)
        if value is not None:
            problem = _range_problem(_NUMBER_SPECS[key], value)
            if problem:
                problems.append(problem)
    return problems


def check(values: ClinicalValues) -> None:
    """Raise :class:`ClinicalValueError` for the first problem :func:`validate` finds."""
    problems = validate(values)
    if problems:
        _raise(problems[0])


def validate_lesion_diameters(diameters_mm: Sequence[object]) -> list[FieldProblem]:
    """Problems with lesion long-axis diameters (mm): each a finite number in 1-300 mm."""
    problems: list[FieldProblem] = []
    if len(diameters_mm) == 0:
        return [FieldProblem(LESION_FIELD, ProblemKind.EMPTY,
                             hint="BCLC staging needs at least one measured lesion")]
    low, high = _LESION_RANGE_MM
    for index, raw in enumerate(diameters_mm):
        key = f"{LESION_FIELD}[{index}]"
        value = _parse_number(key, raw, "mm")
        if value is None:
            problems.append(FieldProblem(key, ProblemKind.MISSING, raw, "mm"))
        elif isinstance(value, FieldProblem):
            problems.append(value)
        elif not low <= value <= high:
            hint = "was it entered in cm?" if value < low else None
            kind = ProblemKind.LIKELY_UNIT_MISTAKE if hint else ProblemKind.OUT_OF_RANGE
            problems.append(FieldProblem(key, kind, value, "mm", _LESION_RANGE_MM, hint))
    return problems


def load_clinical_json(path: str | Path) -> ClinicalValues:
    """Clinical values from a JSON object file (same keys as :meth:`ClinicalValues.from_mapping`).

    Raises
    ------
    ClinicalFileError
        The file cannot be read or is not a JSON object.
    ClinicalValueError
        A value in it is wrong; the message starts with the file name.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ClinicalFileError(path, "file not found") from None
    except UnicodeDecodeError as exc:
        raise ClinicalFileError(path, f"not UTF-8 text ({exc.reason})") from None
    except OSError as exc:
        raise ClinicalFileError(path, f"cannot be read ({exc.strerror})") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ClinicalFileError(
            path, f"not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno})"
        ) from None
    if not isinstance(data, dict):
        raise ClinicalFileError(
            path, f"expected a JSON object of clinical values, found {type(data).__name__}")
    try:
        return ClinicalValues.from_mapping(data)
    except ClinicalValueError as exc:
        raise type(exc)(exc.problem, source=str(path)) from None


# --------------------------------------------------------------------------------------------
# Results


@dataclass(frozen=True)
class ScoreComponent:
    """What one item contributed: ``value`` as used (after any bound), ``points`` to the score."""

    item: str
    value: float | str
    unit: str
    points: float

    def to_dict(self) -> dict[str, Any]:
        return {"item": self.item, "value": self.value, "unit": self.unit, "points": self.points}


@dataclass(frozen=True)
class Adjustment:
    """An entered value a score replaced by a bound before using it."""

    field: str
    entered: float
    used: float
    rule: AdjustmentRule

    def to_dict(self) -> dict[str, Any]:
        return {"field": self.field, "entered": self.entered, "used": self.used,
                "rule": self.rule.value}


@dataclass(frozen=True)
class ChildPughResult:
    score: int
    child_pugh_class: ChildPughClass
    components: tuple[ScoreComponent, ...]
    formula: str = FORMULA_CHILD_PUGH
    citation: str = CITATION_CHILD_PUGH

    def to_dict(self) -> dict[str, Any]:
        return {
            "score": self.score,
            "class": self.child_pugh_class.value,
            "components": [c.to_dict() for c in self.components],
            "formula": self.formula,
            "citation": self.citation,
        }


@dataclass(frozen=True)
class MeldResult:
    """A MELD or MELD-Na score.

    ``score`` is the final integer (capped at 40); ``meld_i`` the MELD(i) after the OPTN
    rounding (tenth, ×10); ``meld_i_unrounded`` ten times the raw formula (what papers and some
    calculators report before rounding); ``sodium_corrected`` whether the sodium step ran.
    Component points are on the ×10 scale, before rounding.
    """

    variant: MeldVariant
    score: int
    meld_i: int
    meld_i_unrounded: float
    sodium_corrected: bool
    capped_at_40: bool
    components: tuple[ScoreComponent, ...]
    adjustments: tuple[Adjustment, ...]
    formula: str
    citation: str = CITATION_MELD

    def to_dict(self) -> dict[str, Any]:
        return {
            "variant": self.variant.value,
            "score": self.score,
            "meld_i": self.meld_i,
            "meld_i_unrounded": self.meld_i_unrounded,
            "sodium_corrected": self.sodium_corrected,
            "capped_at_40": self.capped_at_40,
            "components": [c.to_dict() for c in self.components],
            "adjustments": [a.to_dict() for a in self.adjustments],
            "formula": self.formula,
            "citation": self.citation,
        }


@dataclass(frozen=True)
class AlbiResult:
    score: float
    grade: AlbiGrade
    components: tuple[ScoreComponent, ...]
    formula: str = FORMULA_ALBI
    citation: str = CITATION_ALBI

    def to_dict(self) -> dict[str, Any]:
        return {
            "score": self.score,
            "grade": int(self.grade),
            "components": [c.to_dict() for c in self.components],
            "formula": self.formula,
            "citation": self.citation,
        }


@dataclass(frozen=True)
class BclcResult:
    """A BCLC stage, the rules that gave it (the deciding one first) and reference text."""

    stage: BclcStage
    rules: tuple[BclcRule, ...]
    caveats: tuple[BclcCaveat, ...]
    lesion_count: int
    largest_diameter_mm: float
    child_pugh_class: ChildPughClass
    ecog: EcogStatus
    vascular_invasion: bool
    extrahepatic_spread: bool
    treatment_reference: tuple[str, ...]
    disclaimer: str = BCLC_DISCLAIMER
    citation: str = CITATION_BCLC

    @property
    def decided_by(self) -> BclcRule:
        return self.rules[0]

    @property
    def reasons(self) -> tuple[str, ...]:
        return tuple(rule.description for rule in self.rules)

    def to_dict(self) -> dict[str, Any]:
        return {
            "stage": self.stage.value,
            "label": self.stage.label,
            "decided_by": self.decided_by.value,
            "rules": [rule.value for rule in self.rules],
            "reasons": list(self.reasons),
            "caveats": [caveat.description for caveat in self.caveats],
            "lesion_count": self.lesion_count,
            "largest_diameter_mm": self.largest_diameter_mm,
            "child_pugh_class": self.child_pugh_class.value,
            "ecog": int(self.ecog),
            "vascular_invasion": self.vascular_invasion,
            "extrahepatic_spread": self.extrahepatic_spread,
            "treatment_reference": list(self.treatment_reference),
            "disclaimer": self.disclaimer,
            "citation": self.citation,
        }


# --------------------------------------------------------------------------------------------
# Scores

_CHILD_PUGH_NEEDS = ("bilirubin_mg_dl", "albumin_g_dl", "inr", "ascites", "encephalopathy")
_MELD_NEEDS = ("bilirubin_mg_dl", "creatinine_mg_dl", "inr", "on_dialysis")
_MELD_NA_NEEDS = (*_MELD_NEEDS, "sodium_mmol_l")
_ALBI_NEEDS = ("bilirubin_mg_dl", "albumin_g_dl")
_BCLC_NEEDS = ("ecog", "vascular_invasion", "extrahepatic_spread")


def _missing(values: ClinicalValues, needs: Sequence[str]) -> list[str]:
    return [name for name in needs if getattr(values, name) is None]


def _require(values: ClinicalValues, needs: Sequence[str], score: str) -> None:
    missing = _missing(values, needs)
    if missing:
        _raise(FieldProblem(missing[0], ProblemKind.MISSING, hint=f"{score} needs it"))
    for name in needs:
        spec = _NUMBER_SPECS.get(name)
        if spec is not None:
            problem = _range_problem(spec, getattr(values, name))
            if problem:
                _raise(problem)


def _three_bands(value: float, one: Callable[[float], bool], two: Callable[[float], bool]) -> int:
    return 1 if one(value) else 2 if two(value) else 3


def child_pugh(values: ClinicalValues) -> ChildPughResult:
    """Child-Pugh score (5-15) and class (Pugh et al. 1973).

    Bilirubin <2 / 2-3 / >3 mg/dL, albumin >3.5 / 2.8-3.5 / <2.8 g/dL, INR <1.7 / 1.7-2.3 /
    >2.3, ascites and encephalopathy none / mild (grade 1-2) / moderate-severe (grade 3-4) score
    1 / 2 / 3 points; class A is 5-6, B 7-9, C 10-15. Bands include their ends (2.0 and 3.0 mg/dL
    are both 2 points).

    Raises
    ------
    MissingClinicalValueError, ClinicalValueError
    """
    _require(values, _CHILD_PUGH_NEEDS, "Child-Pugh")
    bili, alb, inr = values.bilirubin_mg_dl, values.albumin_g_dl, values.inr
    assert bili is not None and alb is not None and inr is not None
    assert values.ascites is not None and values.encephalopathy is not None
    components = (
        ScoreComponent("bilirubin", bili, "mg/dL",
                       _three_bands(bili, lambda v: v < 2.0, lambda v: v <= 3.0)),
        ScoreComponent("albumin", alb, "g/dL",
                       _three_bands(alb, lambda v: v > 3.5, lambda v: v >= 2.8)),
        ScoreComponent("inr", inr, "",
                       _three_bands(inr, lambda v: v < 1.7, lambda v: v <= 2.3)),
        ScoreComponent("ascites", values.ascites.value, "",
                       list(Ascites).index(values.ascites) + 1),
        ScoreComponent("encephalopathy", values.encephalopathy.value, "",
                       list(Encephalopathy).index(values.encephalopathy) + 1),
    )
    score = int(sum(c.points for c in components))
    grade = (ChildPughClass.A if score <= 6 else ChildPughClass.B if score <= 9
             else ChildPughClass.C)
    return ChildPughResult(score, grade, components)


def _round_half_up(value: float | Decimal, places: int) -> Decimal:
    # repr() is the shortest decimal that round-trips, so 1.85 stays 1.85, not 1.8499999...
    number = value if isinstance(value, Decimal) else Decimal(repr(value))
    return number.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP)


@dataclass(frozen=True)
class _MeldCore:
    meld_i: Decimal
    unrounded: float
    components: tuple[ScoreComponent, ...]
    adjustments: tuple[Adjustment, ...]


def _meld_core(values: ClinicalValues) -> _MeldCore:
    bili, crea, inr = values.bilirubin_mg_dl, values.creatinine_mg_dl, values.inr
    assert bili is not None and crea is not None and inr is not None
    adjustments: list[Adjustment] = []

    def at_least_1(name: str, value: float) -> float:
        if value < 1.0:
            adjustments.append(Adjustment(name, value, 1.0, AdjustmentRule.RAISED_TO_1))
            return 1.0
        return value

    if values.on_dialysis:
        crea_used = 4.0
        adjustments.append(Adjustment("creatinine_mg_dl", crea, 4.0,
                                      AdjustmentRule.DIALYSIS_CREATININE_4))
    elif crea > 4.0:
        crea_used = 4.0
        adjustments.append(Adjustment("creatinine_mg_dl", crea, 4.0,
                                      AdjustmentRule.CREATININE_CAPPED_AT_4))
    else:
        crea_used = at_least_1("creatinine_mg_dl", crea)
    bili_used = at_least_1("bilirubin_mg_dl", bili)
    inr_used = at_least_1("inr", inr)
    terms = (
        ScoreComponent("creatinine", crea_used, "mg/dL", 10 * 0.957 * math.log(crea_used)),
        ScoreComponent("bilirubin", bili_used, "mg/dL", 10 * 0.378 * math.log(bili_used)),
        ScoreComponent("inr", inr_used, "", 10 * 1.120 * math.log(inr_used)),
        ScoreComponent("constant", 0.643, "", 6.43),
    )
    raw = (0.957 * math.log(crea_used) + 0.378 * math.log(bili_used)
           + 1.120 * math.log(inr_used) + 0.643)
    meld_i = _round_half_up(raw, 1) * 10
    return _MeldCore(meld_i, 10 * raw, terms, tuple(adjustments))


def meld(values: ClinicalValues) -> MeldResult:
    """The original (pre-2016 UNOS) MELD score from creatinine, bilirubin, INR and dialysis.

    Raises
    ------
    MissingClinicalValueError, ClinicalValueError
    """
    _require(values, _MELD_NEEDS, "MELD")
    core = _meld_core(values)
    meld_i = int(core.meld_i)
    return MeldResult(
        MeldVariant.MELD, min(meld_i, 40), meld_i, core.unrounded, False, meld_i > 40,
        core.components, core.adjustments, FORMULA_MELD,
    )


def meld_na(values: ClinicalValues) -> MeldResult:
    """MELD-Na as calculated by OPTN/UNOS from January 2016 (Kim et al. 2008).

    MELD(i) is rounded to the tenth and multiplied by 10; only if it is above 11 is the sodium
    term added (sodium bounded to 125-137 mmol/L). The result is rounded half-up to an integer
    and capped at 40. Sodium is required even when MELD(i) <= 11 makes it irrelevant, so that
    the result never depends on whether a value happened to be entered.

    Raises
    ------
    MissingClinicalValueError, ClinicalValueError
    """
    _require(values, _MELD_NA_NEEDS, "MELD-Na")
    core = _meld_core(values)
    sodium = values.sodium_mmol_l
    assert sodium is not None
    meld_i = int(core.meld_i)
    components = list(core.components)
    adjustments = list(core.adjustments)
    corrected = meld_i > 11
    if corrected:
        sodium_used = min(max(sodium, 125.0), 137.0)
        if sodium_used != sodium:
            rule = (AdjustmentRule.SODIUM_RAISED_TO_125 if sodium < 125.0
                    else AdjustmentRule.SODIUM_LOWERED_TO_137)
            adjustments.append(Adjustment("sodium_mmol_l", sodium, sodium_used, rule))
        # Decimal arithmetic: MELD(i) and the coefficients are exact decimals here, so the
        # half-up rounding below cannot be tipped by binary round-off.
        deficit = Decimal(137) - Decimal(repr(sodium_used))
        exact = (core.meld_i + Decimal("1.32") * deficit
                 - Decimal("0.033") * core.meld_i * deficit)
        components.append(ScoreComponent("sodium", sodium_used, "mmol/L",
                                         float(exact - core.meld_i)))
        uncapped = int(_round_half_up(exact, 0))
    else:
        uncapped = meld_i
    return MeldResult(
        MeldVariant.MELD_NA, min(uncapped, 40), meld_i, core.unrounded, corrected,
        uncapped > 40, tuple(components), tuple(adjustments), FORMULA_MELD_NA,
    )


def albi(values: ClinicalValues) -> AlbiResult:
    """ALBI score and grade (Johnson et al. 2015), graded on the unrounded score.

    ALBI = 0.66 log10(bilirubin µmol/L) - 0.085 albumin g/L; grade 1 <= -2.60, grade 2
    > -2.60 to <= -1.39, grade 3 > -1.39.

    Raises
    ------
    MissingClinicalValueError, ClinicalValueError
    """
    _require(values, _ALBI_NEEDS, "ALBI")
    assert values.bilirubin_mg_dl is not None and values.albumin_g_dl is not None
    bili_umol = values.bilirubin_mg_dl * BILIRUBIN_UMOL_L_PER_MG_DL
    alb_g_l = values.albumin_g_dl * ALBUMIN_G_L_PER_G_DL
    components = (
        ScoreComponent("bilirubin", bili_umol, "µmol/L", 0.66 * math.log10(bili_umol)),
        ScoreComponent("albumin", alb_g_l, "g/L", -0.085 * alb_g_l),
    )
    score = components[0].points + components[1].points
    return AlbiResult(score, AlbiGrade.from_score(score), components)


def _as_child_pugh_class(raw: ChildPughClass | str) -> ChildPughClass:
    if isinstance(raw, ChildPughClass):
        return raw
    if isinstance(raw, str) and raw.strip().upper() in ChildPughClass.__members__:
        return ChildPughClass(raw.strip().upper())
    raise ClinicalValueError(FieldProblem("child_pugh_class", ProblemKind.INVALID_CHOICE, raw,
                                          hint="expected A, B or C"))


def bclc_stage(
    lesion_diameters_mm: Sequence[float],
    child_pugh_class: ChildPughClass | str,
    ecog: EcogStatus | int,
    vascular_invasion: bool,
    extrahepatic_spread: bool,
) -> BclcResult:
    """BCLC stage (2022 update, Reig et al.), the deciding rule and guideline reference text.

    Parameters
    ----------
    lesion_diameters_mm
        Long-axis diameter of each HCC lesion from imaging, in mm.
    child_pugh_class, ecog, vascular_invasion, extrahepatic_spread
        Liver function, performance status, macrovascular invasion, extrahepatic spread.

    Rules, first match wins: Child-Pugh C or ECOG 3-4 -> D; vascular invasion, extrahepatic
    spread or ECOG 1-2 -> C; then, with ECOG 0: single lesion <= 20 mm and Child-Pugh A -> 0;
    single lesion of any size, or 2-3 lesions each <= 30 mm -> A; otherwise -> B. All rules that
    hold for the returned stage are listed, the deciding one first.

    This is a simplification: BCLC 2022 speaks of "preserved" and "end-stage" liver function
    rather than Child-Pugh classes, and a Child-Pugh B result carries a caveat saying so.

    Raises
    ------
    ClinicalValueError
        An empty or implausible diameter list, or an invalid class / ECOG / flag.
    """
    problems = validate_lesion_diameters(lesion_diameters_mm)
    if problems:
        _raise(problems[0])
    diameters = [float(d) for d in lesion_diameters_mm]
    cp_class = _as_child_pugh_class(child_pugh_class)
    status = _parse_ecog("ecog", ecog)
    if status is None:
        status = FieldProblem("ecog", ProblemKind.MISSING, hint="BCLC needs it")
    if isinstance(status, FieldProblem):
        _raise(status)
    for name, flag in (("vascular_invasion", vascular_invasion),
                       ("extrahepatic_spread", extrahepatic_spread)):
        if not isinstance(flag, bool):
            _raise(FieldProblem(name, ProblemKind.INVALID_CHOICE, flag,
                                hint="expected true or false"))

    count, largest = len(diameters), max(diameters)
    caveats: list[BclcCaveat] = []
    rules: list[BclcRule] = []
    if cp_class is ChildPughClass.C:
        rules.append(BclcRule.END_STAGE_LIVER_FUNCTION)
    if status >= EcogStatus.LIMITED_SELF_CARE:
        rules.append(BclcRule.ECOG_3_4)
    if rules:
        stage = BclcStage.TERMINAL
    else:
        if vascular_invasion:
            rules.append(BclcRule.VASCULAR_INVASION)
        if extrahepatic_spread:
            rules.append(BclcRule.EXTRAHEPATIC_SPREAD)
        if status >= EcogStatus.RESTRICTED_STRENUOUS_ACTIVITY:
            rules.append(BclcRule.ECOG_1_2)
        if rules:
            stage = BclcStage.ADVANCED
        elif count == 1 and largest <= 20.0 and cp_class is ChildPughClass.A:
            stage, rules = BclcStage.VERY_EARLY, [BclcRule.SINGLE_UP_TO_20_MM]
        elif count == 1:
            stage, rules = BclcStage.EARLY, [BclcRule.SINGLE_ANY_SIZE]
            if largest <= 20.0:
                caveats.append(BclcCaveat.SMALL_SINGLE_LESION_NOT_CHILD_PUGH_A)
        elif count <= 3 and largest <= 30.0:
            stage, rules = BclcStage.EARLY, [BclcRule.UP_TO_3_NODULES_UP_TO_30_MM]
        else:
            stage, rules = BclcStage.INTERMEDIATE, [BclcRule.MULTINODULAR]
        if cp_class is ChildPughClass.B:
            caveats.append(BclcCaveat.CHILD_PUGH_B)
    return BclcResult(
        stage=stage, rules=tuple(rules), caveats=tuple(caveats), lesion_count=count,
        largest_diameter_mm=largest, child_pugh_class=cp_class, ecog=status,
        vascular_invasion=vascular_invasion, extrahepatic_spread=extrahepatic_spread,
        treatment_reference=_BCLC_TREATMENT_REFERENCE[stage],
    )


def clinical_summary(
    values: ClinicalValues, lesion_diameters_mm: Sequence[float] | None = None
) -> dict[str, Any]:
    """Every score the entered values allow, JSON-friendly.

    Returns
    -------
    dict
        ``child_pugh``, ``meld_na``, ``albi_grade`` and ``bclc``: each a result's ``to_dict()``
        or ``None`` when inputs are missing; ``missing``: for each score, the fields it lacks
        (``[]`` when it was computed). BCLC needs the Child-Pugh inputs, ECOG, both invasion
        flags and at least one lesion diameter (``None`` or an empty list count as missing).

    Raises
    ------
    ClinicalValueError
        An entered value is implausible or a diameter is invalid: scores are not computed
        around a wrong value.
    """
    check(values)
    missing: dict[str, list[str]] = {
        "child_pugh": _missing(values, _CHILD_PUGH_NEEDS),
        "meld_na": _missing(values, _MELD_NA_NEEDS),
        "albi_grade": _missing(values, _ALBI_NEEDS),
    }
    bclc_missing = [*missing["child_pugh"], *_missing(values, _BCLC_NEEDS)]
    if lesion_diameters_mm is None or len(lesion_diameters_mm) == 0:
        bclc_missing.append(LESION_FIELD)
    missing["bclc"] = bclc_missing

    cp = None if missing["child_pugh"] else child_pugh(values)
    summary: dict[str, Any] = {
        "child_pugh": cp.to_dict() if cp else None,
        "meld_na": None if missing["meld_na"] else meld_na(values).to_dict(),
        "albi_grade": None if missing["albi_grade"] else albi(values).to_dict(),
        "bclc": None,
        "missing": missing,
    }
    if not bclc_missing:
        assert cp is not None and lesion_diameters_mm is not None
        assert values.ecog is not None
        assert values.vascular_invasion is not None and values.extrahepatic_spread is not None
        summary["bclc"] = bclc_stage(
            lesion_diameters_mm, cp.child_pugh_class, values.ecog,
            values.vascular_invasion, values.extrahepatic_spread,
        ).to_dict()
    return summary
