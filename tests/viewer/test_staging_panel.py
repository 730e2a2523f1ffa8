"""The staging panel: four probability bars in a fixed order, the most probable highlighted,
the model named, and wording that never claims more than the probabilities."""

from __future__ import annotations

import pytest

from radview.viewer.staging_panel import (
    STAGING_NOTE,
    DiseaseStage,
    StagingPanel,
    format_probability,
)

pytestmark = pytest.mark.gui

MODEL = "liver-stage-cnnlstm 0.1.0"


@pytest.fixture
def panel(qtbot) -> StagingPanel:
    widget = StagingPanel()
    qtbot.addWidget(widget)
    widget.resize(360, 260)
    widget.show()
    return widget


def _shown_rows(panel: StagingPanel) -> list[tuple[str, str]]:
    """(class name, percentage) top to bottom, as on screen."""
    stages = sorted(DiseaseStage, key=lambda s: panel.bars[s].mapTo(panel, panel.bars[s].rect()
                                                                       .topLeft()).y())
    return [(panel.name_labels[s].text(), panel.percent_labels[s].text()) for s in stages]


def _visible_text(panel: StagingPanel) -> str:
    labels = [panel.title, panel.reason_label, panel.headline, panel.model_label, panel.note,
              *panel.name_labels.values(), *panel.percent_labels.values()]
    return "\n".join(label.text() for label in labels if label.isVisible())


def test_probabilities_are_bars_in_stage_order_with_the_most_probable_highlighted(panel):
    panel.show_staging("Moderate", {"End-stage": 0.05, "Severe": 0.22, "Moderate": 0.61,
                                    "Mild": 0.12}, MODEL)
    assert _shown_rows(panel) == [("Mild", "12 %"), ("Moderate", "61 %"), ("Severe", "22 %"),
                                  ("End-stage", "5 %")]
    assert [round(panel.bars[s].value, 2) for s in DiseaseStage] == [0.12, 0.61, 0.22, 0.05]
    assert panel.bars[DiseaseStage.MODERATE].width() > 0
    assert panel.highlighted() == (DiseaseStage.MODERATE,)
    assert panel.bars[DiseaseStage.MODERATE].highlighted
    assert panel.name_labels[DiseaseStage.MODERATE].font().bold()
    assert not panel.name_labels[DiseaseStage.SEVERE].font().bold()
    assert panel.headline.text() == "Most probable: Moderate (61 %)"
    assert panel.model_label.text() == f"Model: {MODEL}"
    assert panel.note.isVisible() and panel.note.text() == STAGING_NOTE
    assert panel.reason_label.isHidden()


def test_the_wording_claims_no_diagnosis_and_no_certainty(panel):
    panel.show_staging("End-stage", {"Mild": 0.0004, "Moderate": 0.0006, "Severe": 0.001,
                                     "End-stage": 0.998}, MODEL)
    text = _visible_text(panel)
    assert "100 %" not in text  # 0.998 is not certainty
    assert panel.percent_labels[DiseaseStage.END_STAGE].text() == ">99 %"
    assert panel.percent_labels[DiseaseStage.MILD].text() == "<1 %"
    assert panel.headline.text() == "Most probable: End-stage (>99 %)"
    # "diagnosis" appears once: in "not a diagnosis"
    assert text.lower().count("diagnos") == 1 and "not a diagnosis" in text


def test_a_tie_as_displayed_highlights_every_tied_class(panel):
    panel.show_staging("Moderate", {"Mild": 0.02, "Moderate": 0.481, "Severe": 0.479,
                                    "End-stage": 0.02}, MODEL)
    assert panel.highlighted() == (DiseaseStage.MODERATE, DiseaseStage.SEVERE)
    assert panel.headline.text() == "Most probable: Moderate or Severe (48 % each)"


def test_a_close_call_highlights_both_and_says_the_model_does_not_separate_them(panel):
    panel.show_staging("Severe", {"Mild": 0.05, "Moderate": 0.40, "Severe": 0.46,
                                  "End-stage": 0.09}, MODEL)
    assert panel.highlighted() == (DiseaseStage.MODERATE, DiseaseStage.SEVERE)
    assert panel.headline.text() == ("Most probable: Severe (46 %)\nClose to it: Moderate "
                                     "(40 %); the model does not separate these stages.")
    panel.show_staging("Severe", {"Mild": 0.05, "Moderate": 0.34, "Severe": 0.52,
                                  "End-stage": 0.09}, MODEL)
    assert panel.highlighted() == (DiseaseStage.SEVERE,)


def test_class_names_are_matched_loosely_and_a_disagreeing_stage_is_noted(panel):
    panel.show_staging("severe", {"mild": 0.1, "moderate": 0.6, "SEVERE": 0.2,
                                  "end_stage": 0.1}, MODEL)
    assert panel.highlighted() == (DiseaseStage.MODERATE,)
    assert "The model reported 'severe', which is not its most probable class." in (
        panel.headline.text())


@pytest.mark.parametrize(("probabilities", "message"), [
    ({"Mild": 0.5, "Moderate": 0.5, "Severe": 0.0}, "no probability for End-stage"),
    ({"Mild": 0.5, "Moderate": 0.5, "Severe": 0.0, "End-stage": 0.0, "Cirrhosis": 0.0},
     "unknown class(es) Cirrhosis"),
    ({"Mild": 0.5, "Moderate": 0.5, "Severe": 0.5, "End-stage": 0.5},
     "the probabilities add up to 2.000, not 1"),
    ({"Mild": 1.5, "Moderate": -0.5, "Severe": 0.0, "End-stage": 0.0},
     "Mild probability 1.5 is outside 0-1"),
    ({"Mild": float("nan"), "Moderate": 0.5, "Severe": 0.5, "End-stage": 0.0},
     "Mild probability nan is outside 0-1"),
    ({"Mild": 0.5, "mild": 0.5, "Moderate": 0.0, "Severe": 0.0, "End-stage": 0.0},
     "Mild is given more than once"),
])
def test_a_malformed_result_is_described_not_drawn(panel, probabilities, message):
    panel.show_staging("Mild", probabilities, MODEL)
    assert panel.rows.isHidden() and panel.note.isHidden()
    assert panel.highlighted() == ()
    assert panel.reason_label.isVisible()
    assert message in panel.reason_label.text()


def test_unavailable_says_why_and_hides_the_bars(panel):
    panel.show_staging("Mild", {"Mild": 0.7, "Moderate": 0.2, "Severe": 0.05,
                                "End-stage": 0.05}, MODEL)
    panel.show_unavailable("no staging model installed")
    assert panel.reason_label.text() == "Staging: no staging model installed"
    assert panel.reason_label.isVisible()
    assert panel.rows.isHidden() and panel.headline.isHidden() and panel.model_label.isHidden()
    assert panel.highlighted() == ()


@pytest.mark.parametrize(("p", "text"), [(0.0, "0 %"), (0.001, "<1 %"), (0.005, "1 %"),
                                         (0.5, "50 %"), (0.994, "99 %"), (0.995, ">99 %"),
                                         (1.0, "100 %")])
def test_format_probability(p, text):
    assert format_probability(p) == text
