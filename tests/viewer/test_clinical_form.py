"""The clinical-values form, typed into like a user: scores follow every keystroke, a wrong value
or unit is marked beside its field while the scores that do not need it still update, and BCLC
takes its lesions from the measured segmentation."""

from __future__ import annotations

import pytest
from PySide6.QtCore import Qt

from radview.core.lesions import measure_liver
from radview.inference.clinical import (
    ClinicalValues,
    EcogStatus,
    albi,
    child_pugh,
    meld_na,
)
from radview.viewer.clinical_form import NEEDS_SEGMENTATION, ClinicalForm
from tests.viewer.liver_scene import liver_scene

pytestmark = pytest.mark.gui


@pytest.fixture
def form(qtbot) -> ClinicalForm:
    widget = ClinicalForm()
    qtbot.addWidget(widget)
    widget.resize(420, 900)
    widget.show()
    return widget


def _type(qtbot, form: ClinicalForm, field: str, text: str) -> None:
    edit = form.number_edits[field]
    edit.clear()
    qtbot.keyClicks(edit, text)


def _choose(form: ClinicalForm, name: str, text: str) -> None:
    combo = form.choice_combos[name]
    index = combo.findText(text)
    assert index >= 0, f"{name} has no choice {text!r}"
    combo.setCurrentIndex(index)


def _child_pugh_a(qtbot, form: ClinicalForm) -> None:
    for field, text in (("bilirubin_mg_dl", "1.2"), ("albumin_g_dl", "3.6"), ("inr", "1.1")):
        _type(qtbot, form, field, text)
    _choose(form, "ascites", "None")
    _choose(form, "encephalopathy", "None")


def _visible_problem(form: ClinicalForm, field: str) -> str:
    label = form.problem_labels[field]
    return label.text() if label.isVisible() else ""


def test_units_from_clinical_py_are_shown_beside_each_field(form):
    assert [form.unit_combos["bilirubin_mg_dl"].itemText(i) for i in range(2)] == [
        "mg/dL", "µmol/L"]
    assert [form.unit_combos["albumin_g_dl"].itemText(i) for i in range(2)] == ["g/dL", "g/L"]
    assert [form.unit_combos["creatinine_mg_dl"].itemText(i) for i in range(2)] == [
        "mg/dL", "µmol/L"]
    assert form.unit_labels["sodium_mmol_l"].text() == "mmol/L"
    assert form.unit_labels["inr"].text() == ""  # INR is a ratio


def test_scores_are_recomputed_as_the_user_types(qtbot, form):
    assert form.values() is None  # nothing entered
    assert form.child_pugh_label.text().startswith("needs bilirubin")
    _type(qtbot, form, "bilirubin_mg_dl", "1.2")
    _type(qtbot, form, "albumin_g_dl", "3.1")
    # ALBI needs only these two: it is there before anything else is entered
    expected_albi = albi(ClinicalValues(bilirubin_mg_dl=1.2, albumin_g_dl=3.1))
    assert form.albi_label.text() == (
        f"Grade {int(expected_albi.grade)} (score {expected_albi.score:.2f})")
    assert form.child_pugh_label.text() == "needs INR, ascites, encephalopathy"
    _type(qtbot, form, "inr", "1.3")
    _choose(form, "ascites", "Mild")
    _choose(form, "encephalopathy", "None")
    entered = ClinicalValues(bilirubin_mg_dl=1.2, albumin_g_dl=3.1, inr=1.3, ascites="mild",
                             encephalopathy="none")
    cp = child_pugh(entered)
    assert form.child_pugh_label.text() == (
        f"Class {cp.child_pugh_class.value} ({cp.score} points)")
    assert "Pugh RN" in form.child_pugh_label.toolTip()  # the citation, from clinical.py
    assert form.meld_label.text() == "needs creatinine, on dialysis, sodium"

    _type(qtbot, form, "creatinine_mg_dl", "1.9")
    _type(qtbot, form, "sodium_mmol_l", "131")
    _choose(form, "on_dialysis", "No")
    expected = meld_na(ClinicalValues(bilirubin_mg_dl=1.2, albumin_g_dl=3.1, inr=1.3,
                                      creatinine_mg_dl=1.9, sodium_mmol_l=131,
                                      on_dialysis=False))
    assert form.meld_label.text() == str(expected.score)
    values = form.values()
    assert values is not None and values.creatinine_mg_dl == 1.9 and values.on_dialysis is False


def test_a_likely_unit_mistake_is_marked_beside_its_field_and_other_scores_still_update(
        qtbot, form):
    _child_pugh_a(qtbot, form)
    _type(qtbot, form, "creatinine_mg_dl", "1.0")
    _type(qtbot, form, "sodium_mmol_l", "137")
    _choose(form, "on_dialysis", "No")
    assert form.child_pugh_label.text().startswith("Class A")
    _type(qtbot, form, "albumin_g_dl", "35")  # g/L typed into a g/dL field
    assert _visible_problem(form, "albumin_g_dl") == (
        "Albumin 35 is outside 1.0-6.5 g/dL — was it entered in g/L?")
    assert form.child_pugh_label.text() == "needs albumin (check the value)"
    assert form.albi_label.text() == "needs albumin (check the value)"
    assert form.meld_label.text().isdigit()  # MELD-Na does not use albumin: still there
    assert form.values() is None  # the report must not use a value marked wrong
    assert [problem.field for problem in form.problems()] == ["albumin_g_dl"]

    form.unit_combos["albumin_g_dl"].setCurrentIndex(1)  # the user picks g/L
    assert _visible_problem(form, "albumin_g_dl") == ""
    assert form.child_pugh_label.text().startswith("Class ")
    values = form.values()
    assert values is not None and values.albumin_g_dl == pytest.approx(3.5)


def test_out_of_range_and_not_a_number_messages_come_from_clinical_py(qtbot, form):
    _type(qtbot, form, "inr", "14")
    assert _visible_problem(form, "inr") == (
        "INR 14 is outside 0.5-10.0 — was the prothrombin time in seconds entered instead of "
        "the INR?")
    _type(qtbot, form, "inr", "1,3")
    assert _visible_problem(form, "inr") == (
        "INR '1,3' is not a number — use a decimal point, not a comma")
    _type(qtbot, form, "sodium_mmol_l", "95")
    assert _visible_problem(form, "sodium_mmol_l") == "Sodium 95 is outside 100-180 mmol/L"
    assert _visible_problem(form, "inr")  # each field keeps its own message
    form.number_edits["inr"].clear()
    assert _visible_problem(form, "inr") == ""


def test_bclc_says_it_needs_a_segmentation_then_stages_from_the_findings(qtbot, form):
    _child_pugh_a(qtbot, form)
    _choose(form, "ecog", "0")
    _choose(form, "vascular_invasion", "No")
    _choose(form, "extrahepatic_spread", "No")
    assert form.bclc_label.text() == NEEDS_SEGMENTATION
    assert form.bclc_details.isHidden()

    image, labels = liver_scene((((12, 40, 40), 8.0),))  # one lesion, long axis 17 mm
    findings = measure_liver(labels, image)
    form.set_findings(findings)
    assert form.lesion_diameters_mm() == [findings.lesions[0].long_axis.value]
    assert form.bclc_label.text() == "BCLC 0 (very early)"
    assert "1 lesion(s) in the liver" in form.lesion_source.text()
    details = form.bclc_details.text()
    assert "single lesion <= 20 mm" in details  # the deciding rule
    assert "Guideline reference" in details and "Ablation" in details
    assert "not a treatment recommendation" in details
    assert "Reig M" in details  # the citation, from clinical.py

    _choose(form, "ecog", "1")
    assert form.bclc_label.text() == "BCLC C (advanced)"
    assert form.ecog_description.text() == EcogStatus(1).description

    form.set_findings(None)
    assert form.bclc_label.text() == NEEDS_SEGMENTATION


def test_bclc_with_a_segmentation_without_lesions_and_with_missing_answers(qtbot, form):
    image, labels = liver_scene(())
    form.set_findings(measure_liver(labels, image))
    _child_pugh_a(qtbot, form)
    _choose(form, "ecog", "0")
    _choose(form, "vascular_invasion", "No")
    _choose(form, "extrahepatic_spread", "No")
    assert form.bclc_label.text() == "BCLC staging needs at least one measured lesion"
    image, labels = liver_scene((((12, 40, 40), 8.0), ((12, 60, 70), 5.0)))
    form.set_findings(measure_liver(labels, image))
    _choose(form, "extrahepatic_spread", "—")  # not answered is not "no"
    assert form.bclc_label.text() == "needs extrahepatic spread"
    _choose(form, "extrahepatic_spread", "No")
    assert form.bclc_label.text() == "BCLC A (early)"


def test_values_changed_signal_and_clear(qtbot, form):
    emitted = []
    form.values_changed.connect(emitted.append)
    _type(qtbot, form, "sodium_mmol_l", "140")
    # one emission per keystroke: "1" and "14" are implausible sodium values, "140" is not
    assert emitted == [None, None, ClinicalValues(sodium_mmol_l=140.0)]
    _choose(form, "ascites", "Moderate / severe")
    form.clear()
    assert form.values() is None
    assert all(edit.text() == "" for edit in form.number_edits.values())
    assert all(combo.currentText() == "—" for combo in form.choice_combos.values())


def test_ecog_choices_explain_each_grade(form):
    combo = form.choice_combos["ecog"]
    assert [combo.itemText(i) for i in range(combo.count())] == ["—", "0", "1", "2", "3", "4"]
    assert combo.itemData(3, Qt.ItemDataRole.ToolTipRole) == EcogStatus(2).description
