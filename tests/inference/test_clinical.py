"""Clinical scores against published worked examples, their boundaries and the input checks.

Every expected score says where it comes from. "Published" means a worked example printed by
the named source; "by hand" means computed from the formula in the comment because no
published example with those inputs was found.
"""

import json
import math
import pickle
import subprocess
import sys

import numpy as np
import pytest

from radview.core.errors import InputFileError, RadviewError
from radview.inference.clinical import (
    BCLC_DISCLAIMER,
    Adjustment,
    AdjustmentRule,
    AlbiGrade,
    Ascites,
    BclcCaveat,
    BclcRule,
    BclcStage,
    ChildPughClass,
    ClinicalFileError,
    ClinicalValueError,
    ClinicalValues,
    EcogStatus,
    Encephalopathy,
    FieldProblem,
    MeldVariant,
    MissingClinicalValueError,
    ProblemKind,
    albi,
    bclc_stage,
    check,
    child_pugh,
    clinical_summary,
    load_clinical_json,
    meld,
    meld_na,
    validate,
    validate_lesion_diameters,
    validate_mapping,
)


def _labs(bili, crea, inr, sodium=None, dialysis=False) -> ClinicalValues:
    return ClinicalValues(bilirubin_mg_dl=bili, creatinine_mg_dl=crea, inr=inr,
                          sodium_mmol_l=sodium, on_dialysis=dialysis)


def _cp(bili=1.0, alb=4.0, inr=1.0, ascites=Ascites.NONE,
        enceph=Encephalopathy.NONE) -> ClinicalValues:
    return ClinicalValues(bilirubin_mg_dl=bili, albumin_g_dl=alb, inr=inr, ascites=ascites,
                          encephalopathy=enceph)


def _full(**changes) -> ClinicalValues:
    values = dict(
        bilirubin_mg_dl=1.2, albumin_g_dl=3.8, inr=1.1, creatinine_mg_dl=0.9, sodium_mmol_l=138,
        ascites=Ascites.NONE, encephalopathy=Encephalopathy.NONE, ecog=0, on_dialysis=False,
        vascular_invasion=False, extrahepatic_spread=False,
    )
    values.update(changes)
    return ClinicalValues(**values)


# ------------------------------------------------------------------------------ Child-Pugh


def test_child_pugh_published_example_class_c():
    # Published: github.com/lakshay321123/medx __tests__/child_pugh.test.ts — bilirubin 3.2 mg/dL,
    # albumin 2.6 g/dL, INR 2.0, mild ascites, mild (grade 1-2) encephalopathy -> 12, class C.
    # By the Pugh table: 3 + 3 + 2 + 2 + 2 = 12.
    result = child_pugh(_cp(3.2, 2.6, 2.0, Ascites.MILD, Encephalopathy.GRADE_1_2))
    assert result.score == 12
    assert result.child_pugh_class is ChildPughClass.C
    assert [c.points for c in result.components] == [3, 3, 2, 2, 2]
    assert [c.item for c in result.components] == [
        "bilirubin", "albumin", "inr", "ascites", "encephalopathy"]
    assert "Pugh RN" in result.citation and "Br J Surg. 1973" in result.citation


def test_child_pugh_by_hand_class_a_and_b():
    # By hand from the Pugh table: all normal -> 1 x 5 = 5 (A);
    # bilirubin 2.5 (2), albumin 3.0 (2), INR 1.8 (2), mild ascites (2), no HE (1) -> 9 (B).
    assert child_pugh(_cp()).score == 5
    assert child_pugh(_cp()).child_pugh_class is ChildPughClass.A
    result = child_pugh(_cp(2.5, 3.0, 1.8, Ascites.MILD))
    assert (result.score, result.child_pugh_class) == (9, ChildPughClass.B)


@pytest.mark.parametrize(
    ("bili", "points"), [(1.99, 1), (2.0, 2), (3.0, 2), (3.01, 3)],
)
def test_child_pugh_bilirubin_bands_include_their_ends(bili, points):
    # Table: <2 -> 1, 2-3 -> 2, >3 -> 3 mg/dL; exactly 2.0 and 3.0 score 2.
    assert child_pugh(_cp(bili=bili)).components[0].points == points


@pytest.mark.parametrize(("alb", "points"), [(3.51, 1), (3.5, 2), (2.8, 2), (2.79, 3)])
def test_child_pugh_albumin_bands(alb, points):
    assert child_pugh(_cp(alb=alb)).components[1].points == points


@pytest.mark.parametrize(("inr", "points"), [(1.69, 1), (1.7, 2), (2.3, 2), (2.31, 3)])
def test_child_pugh_inr_bands(inr, points):
    assert child_pugh(_cp(inr=inr)).components[2].points == points


def test_child_pugh_class_boundaries():
    # 6 -> A, 7 -> B, 9 -> B, 10 -> C (class A 5-6, B 7-9, C 10-15).
    assert child_pugh(_cp(ascites=Ascites.MILD)).child_pugh_class is ChildPughClass.A  # 6
    assert child_pugh(_cp(bili=2.0, ascites=Ascites.MILD)).child_pugh_class is ChildPughClass.B
    nine = _cp(bili=2.0, alb=3.0, inr=1.8, ascites=Ascites.MILD)
    assert (child_pugh(nine).score, child_pugh(nine).child_pugh_class) == (9, ChildPughClass.B)
    ten = _cp(bili=3.5, alb=3.0, inr=1.8, ascites=Ascites.MILD)
    assert (child_pugh(ten).score, child_pugh(ten).child_pugh_class) == (10, ChildPughClass.C)
    worst = _cp(4.0, 2.0, 3.0, Ascites.MODERATE_SEVERE, Encephalopathy.GRADE_3_4)
    assert child_pugh(worst).score == 15


def test_child_pugh_from_si_units_at_the_band_edges():
    # 34.2 µmol/L = 2.0 mg/dL and 51.3 µmol/L = 3.0 mg/dL exactly (x 17.1), both 2 points;
    # 28 g/L = 2.8 g/dL -> 2 points. Conversion must not leave 2.9999999999999996 behind.
    low = ClinicalValues.from_mapping({"bilirubin_umol_l": 34.2, "albumin_g_l": 28, "inr": 1,
                                       "ascites": "none", "encephalopathy": "none"})
    high = ClinicalValues.from_mapping({"bilirubin_umol_l": 51.3, "albumin_g_l": 28, "inr": 1,
                                        "ascites": "none", "encephalopathy": "none"})
    assert low.bilirubin_mg_dl == 2.0 and high.bilirubin_mg_dl == 3.0
    assert child_pugh(low).components[0].points == 2
    assert child_pugh(high).components[0].points == 2
    assert child_pugh(low).components[1].points == 2


def test_child_pugh_missing_input_raises_missing_error():
    with pytest.raises(MissingClinicalValueError) as info:
        child_pugh(ClinicalValues(bilirubin_mg_dl=1.0, albumin_g_dl=4.0, inr=1.0))
    assert info.value.field == "ascites"
    assert str(info.value) == "ascites is missing — Child-Pugh needs it"


def test_child_pugh_refuses_an_implausible_value():
    # albumin entered in g/L in the g/dL field: the score is not computed.
    with pytest.raises(ClinicalValueError) as info:
        child_pugh(_cp(alb=35))
    assert str(info.value) == "albumin_g_dl 35 is outside 1.0-6.5 g/dL — was it entered in g/L?"
    assert info.value.field == "albumin_g_dl"


# ------------------------------------------------------------------------------ MELD


def test_meld_published_example_calculatorlib():
    # Published: calculatorlib.com/meld-score-calculator "Worked Example": bilirubin 1.9,
    # INR 1.2, creatinine 1.3 -> 13.41, "which rounds to a MELD score of 13".
    result = meld(_labs(1.9, 1.3, 1.2))
    assert result.variant is MeldVariant.MELD
    assert result.meld_i_unrounded == pytest.approx(13.41, abs=0.005)
    assert result.score == 13


def test_meld_na_published_example_novacalculator():
    # Published: novacalculator.com ... /model-for-end-stage-liver-disease-na-calculator/,
    # "Example 1: Compensated Cirrhosis": bilirubin 1.8, creatinine 0.9 (set to 1.0), INR 1.3,
    # sodium 139 (bounded to 137) -> MELD 11.6 = 12; MELD-Na = 12 + 1.32 (137 - 137) ... = 12.
    result = meld_na(_labs(1.8, 0.9, 1.3, sodium=139))
    assert result.meld_i_unrounded == pytest.approx(11.6, abs=0.05)
    assert result.meld_i == 12
    assert result.sodium_corrected
    assert result.score == 12
    rules = {(a.field, a.rule) for a in result.adjustments}
    assert ("creatinine_mg_dl", AdjustmentRule.RAISED_TO_1) in rules
    assert ("sodium_mmol_l", AdjustmentRule.SODIUM_LOWERED_TO_137) in rules


def test_meld_and_meld_na_published_example_ameld():
    # Published: github.com/ampel-leipzig/ameld tests/testthat/test_meld.R —
    # meld(creatinine 1.9, bilirubin 4.2, INR 1.2) = 20.0391626 (unrounded), 20 rounded;
    # meld_na(..., sodium 125, type = "unos", round = TRUE) = 28.
    # OPTN steps by hand: MELD(i) 2.0039 -> 2.0 -> 20; 20 + 1.32*12 - 0.033*20*12 = 27.92 -> 28.
    values = _labs(4.2, 1.9, 1.2, sodium=125)
    assert meld(values).meld_i_unrounded == pytest.approx(20.0391626, abs=1e-6)
    assert meld(values).score == 20
    result = meld_na(values)
    assert result.score == 28
    sodium = result.components[-1]
    assert sodium.item == "sodium" and sodium.points == pytest.approx(15.84 - 7.92)


def test_meld_published_example_si_units_transplantr():
    # Published: github.com/johnasher/transplantr tests/testthat/test_liver.R —
    # meld(INR = 2.0, bili = 54 µmol/L, creat = 170 µmol/L) = 24.798 (unrounded, SI units).
    # Integer by hand (OPTN): 2.4798 -> 2.5 -> 25.
    values = ClinicalValues.from_mapping({"inr": 2.0, "bilirubin_umol_l": 54,
                                          "creatinine_umol_l": 170, "on_dialysis": False})
    result = meld(values)
    assert round(result.meld_i_unrounded, 3) == 24.798
    assert result.score == 25


def test_meld_na_by_hand_thecalculator_inputs():
    # Inputs of the thecalculator.co MELD page example (INR 1.1, bilirubin 1.5, creatinine 2.7,
    # no dialysis, sodium 135); its printed results are cut off in the copy we could read, so
    # by hand: MELD(i) = 0.957 ln 2.7 + 0.378 ln 1.5 + 1.12 ln 1.1 + 0.643 = 1.8536 -> 1.9 -> 19;
    # MELD-Na = 19 + 1.32*2 - 0.033*19*2 = 20.386 -> 20.
    values = _labs(1.5, 2.7, 1.1, sodium=135)
    assert meld(values).score == 19
    assert meld_na(values).score == 20


def test_meld_lower_bounds_floor_at_one():
    # ameld test_meld.R: creatinine/bilirubin/INR 0.9 give the same score as 1.0; with all at
    # 1.0 the formula is the constant 6.43 -> MELD 6.
    low, one = meld(_labs(0.9, 0.9, 0.9)), meld(_labs(1.0, 1.0, 1.0))
    assert low.score == one.score == 6
    assert low.meld_i_unrounded == pytest.approx(6.43)
    assert {a.field for a in low.adjustments} == {"bilirubin_mg_dl", "creatinine_mg_dl", "inr"}


def test_meld_creatinine_cap_and_dialysis():
    # OPTN: creatinine > 4.0 -> 4.0; dialysis (>=2 in a week or 24 h CVVHD) -> 4.0.
    # ameld test_meld.R: creatinine 4.1 == 4.0, and creatinine 1.0 on dialysis == 4.0.
    at_cap = meld_na(_labs(2.0, 4.0, 1.5, sodium=130))
    above = meld_na(_labs(2.0, 6.0, 1.5, sodium=130))
    dialysis = meld_na(_labs(2.0, 1.0, 1.5, sodium=130, dialysis=True))
    assert at_cap.score == above.score == dialysis.score
    assert at_cap.adjustments == ()
    assert above.adjustments[0].rule is AdjustmentRule.CREATININE_CAPPED_AT_4
    assert dialysis.adjustments[0].rule is AdjustmentRule.DIALYSIS_CREATININE_4
    assert dialysis.adjustments[0].entered == 1.0 and dialysis.adjustments[0].used == 4.0
    # Dialysis overrides a creatinine below 1.0 as well.
    assert meld(_labs(2.0, 0.6, 1.5, dialysis=True)).score == meld(_labs(2.0, 4.0, 1.5)).score


def test_meld_na_no_sodium_correction_at_or_below_11():
    # By hand: bilirubin 1, creatinine 1, INR 1.5: MELD(i) = 1.12 ln 1.5 + 0.643 = 1.0971 -> 1.1
    # -> 11, not > 11, so sodium 125 changes nothing. INR 1.6: 1.1694 -> 1.2 -> 12 > 11:
    # 12 + 1.32*12 - 0.033*12*12 = 23.088 -> 23.
    eleven = meld_na(_labs(1.0, 1.0, 1.5, sodium=125))
    assert (eleven.meld_i, eleven.score, eleven.sodium_corrected) == (11, 11, False)
    assert all(c.item != "sodium" for c in eleven.components)
    twelve = meld_na(_labs(1.0, 1.0, 1.6, sodium=125))
    assert (twelve.meld_i, twelve.score, twelve.sodium_corrected) == (12, 23, True)


def test_meld_na_sodium_bounds_125_and_137():
    # ameld test_meld.R (type "unos"): sodium 124 == 125 and 138 == 137. At 137 the sodium term is
    # zero, so MELD-Na == MELD.
    base = (4.2, 1.9, 1.2)  # bilirubin, creatinine, INR
    assert meld_na(_labs(*base, sodium=124)).score == meld_na(_labs(*base, sodium=125)).score
    assert meld_na(_labs(*base, sodium=138)).score == meld_na(_labs(*base, sodium=137)).score
    assert meld_na(_labs(*base, sodium=137)).score == meld(_labs(*base)).score == 20
    raised = meld_na(_labs(*base, sodium=120))
    assert raised.adjustments == (
        Adjustment("sodium_mmol_l", 120.0, 125.0, AdjustmentRule.SODIUM_RAISED_TO_125),)


def test_meld_capped_at_40():
    # By hand: creatinine 4, bilirubin 40, INR 5: 0.957 ln 4 + 0.378 ln 40 + 1.12 ln 5 + 0.643
    # = 5.1666 -> 5.2 -> 52 -> capped at 40; the sodium step cannot lower it below 40.
    values = _labs(40.0, 4.0, 5.0, sodium=125)
    assert meld(values).meld_i == 52
    assert (meld(values).score, meld(values).capped_at_40) == (40, True)
    assert (meld_na(values).score, meld_na(values).capped_at_40) == (40, True)


def test_meld_needs_dialysis_answer_and_meld_na_needs_sodium():
    with pytest.raises(MissingClinicalValueError) as info:
        meld(ClinicalValues(bilirubin_mg_dl=1.0, creatinine_mg_dl=1.0, inr=1.0))
    assert info.value.field == "on_dialysis"
    with pytest.raises(MissingClinicalValueError) as info:
        meld_na(_labs(1.0, 1.0, 1.0))
    assert info.value.field == "sodium_mmol_l"


# ------------------------------------------------------------------------------ ALBI


def test_albi_published_example_grade_2():
    # Published: cal57.calculator.city/albi-calculator.html "Worked example": albumin 3.5 g/dL
    # (35 g/L), bilirubin 1.2 mg/dL (20.52 µmol/L), ALBI ≈ -2.10 -> grade 2.
    # (A sister page, cal57.calculator.city/albi-score-calculator.html, prints ≈ -2.35 for the
    # same inputs; by hand 0.66 log10 20.52 - 0.085*35 = 0.8660 - 2.975 = -2.109, so -2.10.)
    result = albi(ClinicalValues(bilirubin_mg_dl=1.2, albumin_g_dl=3.5))
    assert result.score == pytest.approx(-2.10, abs=0.01)
    assert result.grade is AlbiGrade.GRADE_2
    assert result.components[0].value == pytest.approx(20.52)
    assert result.components[1].value == pytest.approx(35.0)
    assert "Johnson PJ" in result.citation and "J Clin Oncol. 2015" in result.citation


def test_albi_same_result_from_si_entry():
    si = ClinicalValues.from_mapping({"bilirubin_umol_l": 20.52, "albumin_g_l": 35})
    assert albi(si).score == pytest.approx(albi(ClinicalValues(
        bilirubin_mg_dl=1.2, albumin_g_dl=3.5)).score, abs=1e-9)


def test_albi_by_hand_grades_1_and_3():
    # By hand: bilirubin 10 µmol/L, albumin 45 g/L: 0.66*1 - 3.825 = -3.165 -> grade 1.
    # bilirubin 100 µmol/L, albumin 25 g/L: 0.66*2 - 2.125 = -0.805 -> grade 3.
    one = albi(ClinicalValues.from_mapping({"bilirubin_umol_l": 10, "albumin_g_l": 45}))
    three = albi(ClinicalValues.from_mapping({"bilirubin_umol_l": 100, "albumin_g_l": 25}))
    assert one.score == pytest.approx(-3.165) and one.grade is AlbiGrade.GRADE_1
    assert three.score == pytest.approx(-0.805) and three.grade is AlbiGrade.GRADE_3


@pytest.mark.parametrize(
    ("score", "grade"),
    [(-2.61, 1), (-2.60, 1), (-2.5999, 2), (-1.39, 2), (-1.3899, 3), (0.0, 3)],
)
def test_albi_grade_thresholds(score, grade):
    # Johnson 2015: grade 1 <= -2.60; grade 2 > -2.60 to <= -1.39; grade 3 > -1.39.
    assert AlbiGrade.from_score(score) == grade


# ------------------------------------------------------------------------------ ECOG


def test_ecog_is_an_enum_with_descriptions():
    assert [int(s) for s in EcogStatus] == [0, 1, 2, 3, 4]
    assert EcogStatus(0).description.startswith("Fully active")
    assert "50% of waking hours" in EcogStatus(2).description
    assert "Completely disabled" in EcogStatus(4).description
    assert "Oken MM" in EcogStatus(1).citation
    assert ClinicalValues(ecog=2).ecog is EcogStatus.AMBULATORY_NO_WORK


@pytest.mark.parametrize("bad", [5, -1, 1.5, True, "two"])
def test_ecog_outside_0_to_4_is_rejected(bad):
    with pytest.raises(ClinicalValueError) as info:
        ClinicalValues(ecog=bad)
    assert info.value.field == "ecog"
    assert info.value.problem.kind is ProblemKind.INVALID_CHOICE


# ------------------------------------------------------------------------------ BCLC


def _bclc(diameters, cp="A", ecog=0, vi=False, ehs=False):
    return bclc_stage(diameters, cp, ecog, vi, ehs)


def test_bclc_0_very_early():
    result = _bclc([18.0])
    assert result.stage is BclcStage.VERY_EARLY
    assert result.decided_by is BclcRule.SINGLE_UP_TO_20_MM
    assert result.reasons == (BclcRule.SINGLE_UP_TO_20_MM.description,)
    assert result.treatment_reference == (
        "Evaluation for liver transplantation", "Ablation", "Resection")
    assert result.disclaimer == BCLC_DISCLAIMER
    assert "not a treatment recommendation" in BCLC_DISCLAIMER
    assert "multidisciplinary team" in BCLC_DISCLAIMER
    assert "Reig M" in result.citation and "J Hepatol. 2022" in result.citation


def test_bclc_20_mm_boundary():
    # "single <= 2 cm": 20.0 mm is very early, 20.1 mm is early.
    assert _bclc([20.0]).stage is BclcStage.VERY_EARLY
    assert _bclc([20.1]).stage is BclcStage.EARLY
    assert _bclc([20.1]).decided_by is BclcRule.SINGLE_ANY_SIZE


def test_bclc_a_early():
    single = _bclc([45.0])
    assert (single.stage, single.decided_by) == (BclcStage.EARLY, BclcRule.SINGLE_ANY_SIZE)
    three = _bclc([30.0, 25.0, 12.0])
    assert (three.stage, three.decided_by) == (
        BclcStage.EARLY, BclcRule.UP_TO_3_NODULES_UP_TO_30_MM)
    assert single.treatment_reference == ("Resection", "Liver transplantation", "Ablation")


def test_bclc_b_intermediate():
    # Beyond A: 2-3 nodules with one > 30 mm, or more than 3 nodules.
    for diameters in ([31.0, 20.0], [10.0, 10.0, 10.0, 10.0]):
        result = _bclc(diameters)
        assert (result.stage, result.decided_by) == (
            BclcStage.INTERMEDIATE, BclcRule.MULTINODULAR)
    text = " ".join(_bclc([31.0, 20.0]).treatment_reference)
    assert "TACE" in text and "extended criteria" in text and "Systemic therapy" in text


def test_bclc_c_advanced_lists_every_rule_deciding_first():
    assert _bclc([15.0], vi=True).decided_by is BclcRule.VASCULAR_INVASION
    assert _bclc([15.0], ehs=True).decided_by is BclcRule.EXTRAHEPATIC_SPREAD
    assert _bclc([15.0], ecog=1).decided_by is BclcRule.ECOG_1_2
    both = _bclc([15.0], ecog=2, vi=True, ehs=True)
    assert both.stage is BclcStage.ADVANCED
    assert both.rules == (BclcRule.VASCULAR_INVASION, BclcRule.EXTRAHEPATIC_SPREAD,
                          BclcRule.ECOG_1_2)
    text = " ".join(both.treatment_reference)
    assert "atezolizumab-bevacizumab" in text and "durvalumab-tremelimumab" in text


def test_bclc_d_terminal():
    assert _bclc([15.0], cp=ChildPughClass.C).decided_by is BclcRule.END_STAGE_LIVER_FUNCTION
    assert _bclc([15.0], ecog=3).decided_by is BclcRule.ECOG_3_4
    worst = _bclc([80.0], cp="c", ecog=EcogStatus.COMPLETELY_DISABLED, vi=True)
    assert worst.stage is BclcStage.TERMINAL
    assert worst.rules == (BclcRule.END_STAGE_LIVER_FUNCTION, BclcRule.ECOG_3_4)
    assert worst.treatment_reference == ("Best supportive care",)


def test_bclc_child_pugh_b_carries_caveats():
    small = _bclc([15.0], cp="B")
    assert small.stage is BclcStage.EARLY  # very early needs Child-Pugh A
    assert small.caveats == (BclcCaveat.SMALL_SINGLE_LESION_NOT_CHILD_PUGH_A,
                             BclcCaveat.CHILD_PUGH_B)
    assert _bclc([15.0]).caveats == ()


def test_bclc_result_is_json_friendly():
    data = _bclc([31.0, 20.0]).to_dict()
    assert json.loads(json.dumps(data)) == data
    assert data["stage"] == "B" and data["label"] == "BCLC B (intermediate)"
    assert data["decided_by"] == "multinodular" and data["lesion_count"] == 2
    assert data["largest_diameter_mm"] == 31.0 and data["disclaimer"] == BCLC_DISCLAIMER


def test_bclc_input_errors():
    with pytest.raises(ClinicalValueError) as info:
        _bclc([])
    assert info.value.problem.kind is ProblemKind.EMPTY
    with pytest.raises(ClinicalValueError) as info:
        _bclc([0.5])
    assert str(info.value) == (
        "lesion_diameters_mm[0] 0.5 is outside 1-300 mm — was it entered in cm?")
    with pytest.raises(ClinicalValueError, match="child_pugh_class 'X'"):
        _bclc([10.0], cp="X")
    with pytest.raises(ClinicalValueError, match="ecog 5"):
        _bclc([10.0], ecog=5)
    with pytest.raises(ClinicalValueError, match="vascular_invasion"):
        _bclc([10.0], vi=None)
    assert [p.field for p in validate_lesion_diameters([12, "x", float("nan"), 400])] == [
        "lesion_diameters_mm[1]", "lesion_diameters_mm[2]", "lesion_diameters_mm[3]"]


def test_bclc_accepts_numpy_diameters():
    assert _bclc(np.array([12.0, 9.5])).stage is BclcStage.EARLY


# ------------------------------------------------------------------------------ parsing, units


def test_si_conversions():
    values = ClinicalValues.from_mapping({
        "bilirubin_umol_l": 17.1, "creatinine_umol_l": 88.4, "albumin_g_l": 35,
        "sodium_meq_l": 131,
    })
    assert values.bilirubin_mg_dl == 1.0
    assert values.creatinine_mg_dl == 1.0
    assert values.albumin_g_dl == 3.5
    assert values.sodium_mmol_l == 131.0
    assert ClinicalValues.from_mapping({"creatinine_umol_l": 354}).creatinine_mg_dl == (
        pytest.approx(4.0045, abs=1e-4))


def test_form_strings_and_case_insensitive_keys():
    values = ClinicalValues.from_mapping({
        "Albumin_g_dL": " 3.4 ", "INR": "1.3", "bilirubin_mg_dl": "", "ascites": "Moderate-Severe",
        "encephalopathy": "grade 3-4", "ecog": "1", "on_dialysis": "no",
        "vascular_invasion": "yes", "extrahepatic_spread": 0,
    })
    assert values.albumin_g_dl == 3.4 and values.inr == 1.3 and values.bilirubin_mg_dl is None
    assert values.ascites is Ascites.MODERATE_SEVERE
    assert values.encephalopathy is Encephalopathy.GRADE_3_4
    assert values.ecog is EcogStatus.RESTRICTED_STRENUOUS_ACTIVITY
    assert (values.on_dialysis, values.vascular_invasion, values.extrahepatic_spread) == (
        False, True, False)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [(0, Encephalopathy.NONE), (2, Encephalopathy.GRADE_1_2), ("3", Encephalopathy.GRADE_3_4),
     ("absent", Encephalopathy.NONE), ("GRADE_1_2", Encephalopathy.GRADE_1_2)],
)
def test_encephalopathy_accepts_grades_and_names(raw, expected):
    assert ClinicalValues(encephalopathy=raw).encephalopathy is expected


@pytest.mark.parametrize(
    ("mapping", "message"),
    [
        ({"albumin_g_dl": 35}, "albumin_g_dl 35 is outside 1.0-6.5 g/dL — was it entered in g/L?"),
        ({"bilirubin_mg_dl": 60},
         "bilirubin_mg_dl 60 is outside 0.1-50.0 mg/dL — was it entered in µmol/L?"),
        ({"creatinine_mg_dl": 90},
         "creatinine_mg_dl 90 is outside 0.1-20.0 mg/dL — was it entered in µmol/L?"),
        ({"albumin_g_l": 3.5}, "albumin_g_l 3.5 is outside 10-65 g/L — was it entered in g/dL?"),
        ({"bilirubin_umol_l": 1.2},
         "bilirubin_umol_l 1.2 is outside 2-855 µmol/L — was it entered in mg/dL?"),
        ({"creatinine_umol_l": 1.1},
         "creatinine_umol_l 1.1 is outside 9-1768 µmol/L — was it entered in mg/dL?"),
        ({"inr": 25}, "inr 25 is outside 0.5-10.0 — was the prothrombin time in seconds "
                      "entered instead of the INR?"),
    ],
)
def test_unit_mistake_hints(mapping, message):
    with pytest.raises(ClinicalValueError) as info:
        ClinicalValues.from_mapping(mapping)
    assert str(info.value) == message
    assert info.value.problem.kind is ProblemKind.LIKELY_UNIT_MISTAKE
    assert info.value.field == next(iter(mapping))


def test_out_of_range_without_a_plausible_other_unit_has_no_hint():
    # albumin 8 g/dL read as g/L would be 0.8 g/dL, not plausible either: no hint.
    (problem,) = validate(ClinicalValues(albumin_g_dl=8))
    assert problem.kind is ProblemKind.OUT_OF_RANGE and problem.hint is None
    assert problem.message == "albumin_g_dl 8 is outside 1.0-6.5 g/dL"
    (problem,) = validate(ClinicalValues(sodium_mmol_l=90))
    assert problem.message == "sodium_mmol_l 90 is outside 100-180 mmol/L"
    assert problem.plausible_range == (100.0, 180.0) and problem.unit == "mmol/L"


def test_validate_returns_every_problem_and_check_raises_the_first():
    values = ClinicalValues(bilirubin_mg_dl=80, albumin_g_dl=35, inr=1.1, creatinine_mg_dl=200)
    problems = validate(values)
    assert [p.field for p in problems] == ["bilirubin_mg_dl", "albumin_g_dl", "creatinine_mg_dl"]
    assert all(isinstance(p, FieldProblem) for p in problems)
    with pytest.raises(ClinicalValueError) as info:
        check(values)
    assert info.value.field == "bilirubin_mg_dl"
    assert validate(_full()) == []
    check(_full())


def test_validate_mapping_reports_every_field_problem():
    problems = validate_mapping({
        "bilirubine": 2, "inr": "x", "sodium_mmol_l": "1,5", "ascites": "lots",
        "bilirubin_mg_dl": 1.0, "bilirubin_umol_l": 17, "on_dialysis": "maybe",
        "albumin_g_dl": float("nan"), "creatinine_mg_dl": True,
    })
    by_field = {p.field: p for p in problems}
    assert by_field["bilirubine"].kind is ProblemKind.UNKNOWN_FIELD
    assert by_field["bilirubine"].message == (
        "bilirubine is not a known clinical value — did you mean bilirubin_mg_dl?")
    assert by_field["inr"].message == "inr 'x' is not a number"
    assert by_field["sodium_mmol_l"].hint == "use a decimal point, not a comma"
    assert by_field["ascites"].message == (
        "ascites 'lots' is not a valid choice — expected one of: none, mild, moderate_severe")
    assert by_field["bilirubin_umol_l"].kind is ProblemKind.DUPLICATE_FIELD
    assert "bilirubin_mg_dl" in by_field["bilirubin_umol_l"].message
    assert by_field["on_dialysis"].kind is ProblemKind.INVALID_CHOICE
    assert by_field["albumin_g_dl"].kind is ProblemKind.NOT_FINITE
    assert by_field["creatinine_mg_dl"].kind is ProblemKind.NOT_A_NUMBER
    assert len(problems) == 8  # bilirubin_mg_dl itself is fine
    for problem in problems:
        assert "\n" not in problem.message
        assert json.loads(json.dumps(problem.to_dict(), allow_nan=False))["message"] == (
            problem.message)
    assert validate_mapping({"albumin_g_l": 40, "inr": 1.0}) == []


def test_clinical_value_error_is_a_one_line_radview_error_that_pickles():
    with pytest.raises(ClinicalValueError) as info:
        ClinicalValues.from_mapping({"albumin_g_dl": 35})
    error = info.value
    assert isinstance(error, RadviewError) and isinstance(error, ValueError)
    copy = pickle.loads(pickle.dumps(error))
    assert (type(copy), str(copy), copy.field) == (ClinicalValueError, str(error), error.field)


def test_constructor_rejects_wrong_types():
    with pytest.raises(ClinicalValueError, match="bilirubin_mg_dl True is not a number"):
        ClinicalValues(bilirubin_mg_dl=True)
    with pytest.raises(ClinicalValueError, match="inr inf is not a finite number"):
        ClinicalValues(inr=math.inf)
    with pytest.raises(ClinicalValueError, match="ascites 'huge'"):
        ClinicalValues(ascites="huge")
    # An implausible but well-typed value is accepted until it is validated or scored.
    assert ClinicalValues(albumin_g_dl=35).albumin_g_dl == 35.0


# ------------------------------------------------------------------------------ JSON file


def test_load_clinical_json_with_si_units(tmp_path):
    path = tmp_path / "labs.json"
    path.write_text(json.dumps({
        "bilirubin_umol_l": 34.2, "albumin_g_l": 30, "inr": 1.4, "creatinine_umol_l": 88.4,
        "sodium_mmol_l": 134, "ascites": "mild", "encephalopathy": "none", "ecog": 0,
        "on_dialysis": False, "vascular_invasion": False, "extrahepatic_spread": False,
    }), encoding="utf-8")
    values = load_clinical_json(path)
    assert values.bilirubin_mg_dl == 2.0 and values.albumin_g_dl == 3.0
    assert child_pugh(values).score == 2 + 2 + 1 + 2 + 1


def test_load_clinical_json_errors_name_the_file(tmp_path):
    bad_json = tmp_path / "broken.json"
    bad_json.write_text("{ not json", encoding="utf-8")
    with pytest.raises(ClinicalFileError) as info:
        load_clinical_json(bad_json)
    assert isinstance(info.value, InputFileError)
    assert str(info.value).startswith(str(bad_json)) and "not valid JSON" in str(info.value)

    a_list = tmp_path / "list.json"
    a_list.write_text("[1, 2]", encoding="utf-8")
    with pytest.raises(ClinicalFileError, match="expected a JSON object"):
        load_clinical_json(a_list)

    with pytest.raises(ClinicalFileError, match="file not found"):
        load_clinical_json(tmp_path / "absent.json")

    wrong_unit = tmp_path / "wrong_unit.json"
    wrong_unit.write_text('{"albumin_g_dl": 35, "inr": NaN}', encoding="utf-8")
    with pytest.raises(ClinicalValueError) as info:
        load_clinical_json(wrong_unit)
    assert str(info.value) == (
        f"{wrong_unit}: albumin_g_dl 35 is outside 1.0-6.5 g/dL — was it entered in g/L?")
    assert info.value.source == str(wrong_unit)


# ------------------------------------------------------------------------------ summary


def test_clinical_summary_complete():
    # Child-Pugh 5 (A); MELD(i): creatinine 0.9 and INR 1.1 ... by hand 0.378 ln 1.2 + 1.12 ln 1.1
    # + 0.643 = 0.8186 -> 0.8 -> 8 (<= 11, no sodium step); ALBI by hand: 0.66 log10 20.52
    # - 0.085*38 = -2.364 -> grade 2; one 18 mm lesion, Child-Pugh A, ECOG 0 -> BCLC 0.
    summary = clinical_summary(_full(), [18.0])
    assert json.loads(json.dumps(summary)) == summary
    assert summary["missing"] == {"child_pugh": [], "meld_na": [], "albi_grade": [], "bclc": []}
    assert summary["child_pugh"]["score"] == 5 and summary["child_pugh"]["class"] == "A"
    assert summary["meld_na"]["score"] == 8 and summary["meld_na"]["variant"] == "MELD-Na"
    assert summary["albi_grade"]["grade"] == 2
    assert summary["albi_grade"]["score"] == pytest.approx(-2.364, abs=1e-3)
    assert summary["bclc"]["stage"] == "0"
    assert summary["bclc"]["disclaimer"] == BCLC_DISCLAIMER


def test_clinical_summary_missing_inputs_give_none_and_the_fields():
    summary = clinical_summary(ClinicalValues(bilirubin_mg_dl=1.2, albumin_g_dl=3.8, inr=1.1,
                                              creatinine_mg_dl=0.9, sodium_mmol_l=135))
    assert summary["child_pugh"] is None and summary["meld_na"] is None
    assert summary["bclc"] is None
    assert summary["albi_grade"]["grade"] == 2
    assert summary["missing"] == {
        "child_pugh": ["ascites", "encephalopathy"],
        "meld_na": ["on_dialysis"],
        "albi_grade": [],
        "bclc": ["ascites", "encephalopathy", "ecog", "vascular_invasion",
                 "extrahepatic_spread", "lesion_diameters_mm"],
    }


def test_clinical_summary_without_lesions_or_with_an_empty_list():
    for lesions in (None, []):
        summary = clinical_summary(_full(), lesions)
        assert summary["bclc"] is None
        assert summary["missing"]["bclc"] == ["lesion_diameters_mm"]
        assert summary["child_pugh"] is not None


def test_clinical_summary_refuses_implausible_values():
    with pytest.raises(ClinicalValueError, match="creatinine_mg_dl 150"):
        clinical_summary(_full(creatinine_mg_dl=150), [18.0])
    with pytest.raises(ClinicalValueError, match=r"lesion_diameters_mm\[0\]"):
        clinical_summary(_full(), [0.0])


# ------------------------------------------------------------------------------ layering


def test_imports_no_qt_and_no_onnxruntime():
    code = (
        "import sys\n"
        "import radview.inference.clinical\n"
        "bad = [m for m in ('PySide6', 'pyqtgraph', 'onnxruntime') if m in sys.modules]\n"
        "print(bad)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
