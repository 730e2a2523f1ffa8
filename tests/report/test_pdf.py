"""The PDF report: validity (qpdf), text (pdftotext), fonts, rendering, hostile headers."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace

import pytest
from PIL import Image

from radview import __version__
from radview.core.lesions import measure_liver
from radview.inference.clinical import ClinicalValues, clinical_summary
from radview.io.dicom_load import load_stack
from radview.io.discover import discover
from radview.io.open_study import load_label_map
from radview.io.sample_study import write_sample_study
from radview.report import pdf
from radview.report.content import DECISION_SUPPORT_STATEMENT, build_report_content
from radview.report.fonts import report_fonts
from radview.report.pdf import (
    format_date,
    format_measurement,
    format_value,
    render_report_pdf,
    write_report_pdf,
)

GENERATED = datetime(2026, 3, 4, 5, 6, tzinfo=UTC)
HEADER = {
    "patient_name": "Doe^Jane",
    "patient_id": "PID-12345",
    "birth_date": "19600101",
    "sex": "F",
    "study_date": "20250102",
    "study_description": "CT ABDOMEN PORTAL VENOUS",
    "accession": "ACC-999",
    "referring_physician": "Who^Doctor",
    "institution": "Example Hospital",
    "series_description": "Axial 5 mm",
    "kvp": "120",
}
PROVENANCE = [{"model_id": "liver-tumour-seg", "version": "2.1.0",
               "sha256": "c0ffee1234567890deadbeef", "provider": "CPUExecutionProvider",
               "seconds": 3.21}]
HOSTILE = ["<font>", "<script>alert(1)</script>", "Tom & Jerry", "Müller^Zoë", "山田, 太郎",
           "Ωμέγα"]


def _tool(name: str):
    return pytest.mark.skipif(shutil.which(name) is None,
                              reason=f"{name} not installed (Debian poppler-utils / qpdf)")


def _external(func):
    """Needs poppler-utils (pdftotext, pdffonts, pdfinfo, pdftoppm)."""
    return pytest.mark.external(_tool("pdftotext")(_tool("pdftoppm")(func)))


def _run(*command: str) -> str:
    completed = subprocess.run(command, capture_output=True, text=True, check=False, timeout=60)
    assert completed.returncode == 0, completed.stderr
    return completed.stdout


def _text(path: Path) -> str:
    return _run("pdftotext", "-enc", "UTF-8", str(path), "-")


def _words(text: str) -> str:
    return " ".join(text.split())


def _squeezed(text: str) -> str:
    return "".join(text.split())


def _pages(data: bytes) -> int:
    return len(re.findall(rb"/Type /Page\b(?!s)", data))


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    folder = tmp_path_factory.mktemp("sample")
    paths = write_sample_study(folder, matrix=128, slices=40, seed=3)
    stack = discover([paths.dicom_dir]).stacks[0]
    image = load_stack(stack).volume
    labels = load_label_map(paths.labels_nifti, image)
    findings = measure_liver(labels, image)
    values = ClinicalValues(bilirubin_mg_dl=1.0, albumin_g_dl=3.8, inr=1.0,
                            creatinine_mg_dl=0.8, sodium_mmol_l=140, ascites="none",
                            encephalopathy="none", ecog=0, on_dialysis=False,
                            vascular_invasion=False, extrahepatic_spread=False)
    clinical = clinical_summary(values, [les.long_axis.value for les in findings.lesions])
    return SimpleNamespace(image=image, labels=labels, findings=findings, clinical=clinical,
                           out=tmp_path_factory.mktemp("pdf"))


def _content(sample, header=HEADER, **options):
    options.setdefault("generated_at", GENERATED)
    options.setdefault("provenance", PROVENANCE)
    return build_report_content(sample.findings, sample.image, sample.labels, header, **options)


@pytest.fixture(scope="module")
def full(sample):
    """The full report (clinical scores, staging, triage) written to a file."""
    content = _content(
        sample, clinical=sample.clinical,
        staging={"probabilities": {"BCLC A": 0.25, "BCLC B": 0.75}, "model": "stager-1"},
        triage=[0.1] * 30 + [0.8] * 10, warnings=["gantry tilt 3.0 deg <not corrected>"],
    )
    path = write_report_pdf(content, sample.out / "full.pdf")
    return SimpleNamespace(content=content, path=path, data=path.read_bytes())


# ---------------------------------------------------------------------------- no tools needed
def test_format_value_rounds_per_unit():
    def m(value, unit):
        return SimpleNamespace(value=value, unit=unit)

    assert format_value(m(34.637, "mm")) == "34.6"
    assert format_value(m(1843.26, "mL")) == "1843"
    assert format_value(m(15.92, "mL")) == "15.9"
    assert format_value(m(2.4153, "mL")) == "2.42"
    assert format_value(m(31.43, "HU")) == "31"
    assert format_value(m(-0.2, "HU")) == "0"
    assert format_value(m(0.864, "%")) == "0.86"
    assert format_value(m(float("nan"), "mm")) == "n/a"
    assert format_measurement(m(3.21, "s")) == "3.21 s"
    assert format_date("20250102") == "2025-01-02" and format_date("2.1.2025") == "2.1.2025"


def test_pdf_bytes_metadata_and_page_count(full):
    data = full.data
    assert data.startswith(b"%PDF-1.") and data.rstrip().endswith(b"%%EOF")
    assert 1 <= _pages(data) <= 3
    assert f"radview {__version__}".encode() in data  # author / creator
    assert len(data) < 3_000_000


def test_write_is_atomic(sample, full, monkeypatch):
    target = sample.out / "atomic.pdf"
    write_report_pdf(full.content, target)
    assert target.read_bytes().startswith(b"%PDF")
    assert not [p for p in sample.out.iterdir() if p.name.startswith(".")]

    def broken(*_args, **_kwargs):
        raise RuntimeError("render failed")

    monkeypatch.setattr(pdf, "render_report_pdf", broken)
    with pytest.raises(RuntimeError):
        write_report_pdf(full.content, sample.out / "never.pdf")
    assert not (sample.out / "never.pdf").exists()
    monkeypatch.undo()
    with pytest.raises(FileNotFoundError):
        write_report_pdf(full.content, sample.out / "missing-folder" / "x.pdf")


def test_font_runs_escape_and_fall_back_for_cjk():
    fonts = report_fonts()
    runs = fonts.runs("Müller 山田")
    assert runs[0] == (fonts.regular, "Müller ") and runs[1][1] == "山田"
    markup = fonts.markup("<font>&山")
    assert markup.startswith("&lt;font&gt;&amp;")
    assert "<font face=" in markup  # the CJK fallback run
    assert "<font>" not in markup


def test_without_truetype_fonts_the_report_still_renders_and_says_why(sample):
    data = render_report_pdf(_content(sample), fonts=report_fonts([]))
    assert data.startswith(b"%PDF") and _pages(data) >= 1


# ---------------------------------------------------------------------------- external tools
@pytest.mark.external
@_tool("qpdf")
def test_qpdf_check_passes(full):
    _run("qpdf", "--check", str(full.path))


@_external
def test_text_holds_the_lesion_table_provenance_and_statement(full):
    text = _text(full.path)
    words = text.split()
    flat = _words(text)
    for row in full.content.findings.lesions:
        for measurement in (row.long_axis, row.short_axis, row.max_diameter, row.volume,
                            row.mean):
            assert format_value(measurement) in words, (row.lesion_id, measurement.name)
    assert flat.count(" target ") + flat.count(" target\n") >= 2
    recist = full.content.findings.recist
    assert f"{recist.sum_of_diameters.value:.1f} mm" in flat
    assert format_measurement(full.content.findings.liver_volume) in flat
    for value in ("liver-tumour-seg", "2.1.0", "c0ffee123456", "CPUExecutionProvider",
                  "3.21 s", "radview", __version__):
        assert value in flat, value
    assert "c0ffee1234567" not in flat  # a 12-character prefix
    assert DECISION_SUPPORT_STATEMENT in flat
    assert "gantry tilt 3.0 deg <not corrected>" in flat
    assert "BCLC B (intermediate)" in flat and "multidisciplinary team" in flat
    assert "Reig M" in flat  # the BCLC citation
    assert "most probable BCLC B" in flat and "75.0 %" in flat
    pages = _pages(full.data)
    for page in range(1, pages + 1):
        assert f"page {page} of {pages}" in flat
    assert flat.count("Generated 2026-03-04 05:06 UTC") >= pages
    # PN is shown as "Family, Given"
    assert "Doe, Jane" in flat and "PID-12345" in flat and "1960-01-01" in flat


@_external
def test_sections_without_models_say_not_available(sample):
    path = write_report_pdf(_content(sample), sample.out / "bare.pdf")
    flat = _words(_text(path))
    assert "AI staging: not available: no staging model was run" in flat
    assert "AI triage: not available: no triage model was run" in flat
    assert "Clinical scores: not available" in flat


@_external
def test_fonts_are_embedded_subsets_and_metadata_is_set(full):
    fonts = _run("pdffonts", str(full.path)).splitlines()[2:]
    assert fonts
    for line in fonts:
        columns = line.split()
        assert columns[-5:-3] == ["yes", "yes"], line  # emb, sub
        assert "+" in columns[0], line  # subset tag
    info = _run("pdfinfo", str(full.path))
    assert re.search(r"^Title:\s+Liver CT analysis report$", info, re.M)
    assert re.search(rf"^Author:\s+radview {re.escape(__version__)}$", info, re.M)
    assert re.search(rf"^Creator:\s+radview {re.escape(__version__)}$", info, re.M)
    assert re.search(r"^Subject:\s+\S", info, re.M)
    assert re.search(r"^Page size:.*\(A4\)", info, re.M)
    assert "Doe" not in info and "PID-12345" not in info


@_external
def test_page_one_renders(full, tmp_path):
    _run("pdftoppm", "-r", "60", "-f", "1", "-l", "1", "-png", str(full.path),
         str(tmp_path / "page"))
    (page,) = tmp_path.glob("page*.png")
    with Image.open(page) as picture:
        width, height = picture.size  # A4 at 60 dpi: 496.1 x 701.6 pixels
        assert abs(width - 496) <= 1 and abs(height - 702) <= 1
        extrema = picture.convert("L").getextrema()
    assert extrema == (0, 255) or extrema[1] - extrema[0] > 200  # not blank


@_external
def test_hostile_header_strings_print_literally(sample):
    description = ("Very long study description with words " * 20)[:500]
    header = dict(HEADER, patient_name="山田^太郎 <font>", patient_id="Tom & Jerry",
                  study_description=description, referring_physician="Müller^Zoë",
                  series_description="<script>alert(1)</script> Ωμέγα",
                  institution="Clinic <b>Bold</b> & \u202eEvil")
    content = _content(sample, header=header)
    path = write_report_pdf(content, sample.out / "hostile.pdf")
    data = path.read_bytes()
    assert 1 <= _pages(data) <= 4
    if shutil.which("qpdf"):
        _run("qpdf", "--check", str(path))
    flat = _words(_text(path))
    for value in HOSTILE:
        assert value in flat, value
    assert "Clinic <b>Bold</b> & Evil" in flat  # the bidi override is gone
    assert "\u202e" not in flat
    squeezed = _squeezed(flat)
    shown = pdf.MAX_FIELD_CHARS - 1
    assert _squeezed(description[:shown]) in squeezed
    assert _squeezed(description[:shown].rstrip()) + "…" in squeezed
    assert _squeezed(description) not in squeezed  # cut, not spilled over the page


@_external
def test_unbroken_long_strings_do_not_break_the_layout(sample):
    header = dict(HEADER, patient_name="X" * 500, institution="I" * 500,
                  study_description="D" * 500, patient_id="9" * 200)
    path = write_report_pdf(_content(sample, header=header), sample.out / "long.pdf")
    assert 1 <= _pages(path.read_bytes()) <= 4
    squeezed = _squeezed(_text(path))
    assert "X" * 100 in squeezed and "D" * 100 in squeezed


@_external
def test_a_near_tie_in_staging_is_reported_as_one(sample):
    content = _content(sample, staging={"probabilities": {"Mild": 0.05, "Moderate": 0.427,
                                                          "Severe": 0.431, "End-stage": 0.092}})
    flat = _words(_text(write_report_pdf(content, sample.out / "close.pdf")))
    assert ("most probable Severe, close to Moderate (42.7 %): the model does not separate "
            "these stages") in flat
    given = _content(sample, staging={"probabilities": {"Mild": 0.1, "Moderate": 0.7,
                                                        "Severe": 0.2}, "stage": "Mild"})
    flat = _words(_text(write_report_pdf(given, sample.out / "given.pdf")))
    # a stage the model reported that is not its most probable is not called "most probable"
    assert ("AI staging (model output): reported stage Mild (not its most probable stage, "
            "Moderate at 70.0 %), close to Severe (20.0 %)") in flat
    assert "most probable Mild" not in flat


@_external
def test_deidentified_report_shows_no_patient_name_or_id(sample):
    content = _content(sample, deidentified=True,
                       staging={"probabilities": {"A": 0.5, "B": 0.5}})
    path = write_report_pdf(content, sample.out / "deid.pdf")
    text = _text(path)
    for secret in ("Doe", "Jane", "PID-12345", "1960", "ACC-999", "Who^Doctor"):
        assert secret not in text, secret
    assert "de-identified" in text
    assert "CT ABDOMEN PORTAL VENOUS" in text  # the study itself is still described
    info = _run("pdfinfo", str(path))
    assert "Doe" not in info and "PID" not in info


@_external
def test_helvetica_fallback_report_carries_the_font_warning(sample):
    data = render_report_pdf(_content(sample), fonts=report_fonts([]))
    path = sample.out / "helvetica.pdf"
    path.write_bytes(data)
    assert "no TrueType font found" in _words(_text(path))


@_external
def test_characters_no_font_has_are_named_in_the_warnings(sample):
    header = dict(HEADER, patient_name="Pharaoh \U00013000")  # Egyptian hieroglyph A001
    path = write_report_pdf(_content(sample, header=header), sample.out / "glyph.pdf")
    assert "U+13000" in _words(_text(path))
    plain = write_report_pdf(_content(sample), sample.out / "plain.pdf")
    assert "no installed font has" not in _words(_text(plain))


def test_helvetica_fallback_survives_non_latin_text(sample):
    header = dict(HEADER, patient_name="山田^太郎 Ωμέγα", study_description="<font> &")
    data = render_report_pdf(_content(sample, header=header), fonts=report_fonts([]))
    assert data.startswith(b"%PDF")


def test_a_liver_without_lesions_still_makes_a_report(sample):
    labels = sample.labels.volume
    voxels = labels.voxels.copy()
    voxels[voxels == 2] = 1
    clean = labels.with_voxels(voxels)
    findings = measure_liver(clean, sample.image)
    content = build_report_content(findings, sample.image, clean, HEADER,
                                   generated_at=GENERATED)
    assert content.findings.lesions == () and content.key_images == ()
    assert content.findings.recist.sum_of_diameters.value == 0.0
    assert render_report_pdf(content).startswith(b"%PDF")


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_report_benchmark_runs_at_a_tiny_size(tmp_path, capsys):
    from benchmarks.report import main

    out = tmp_path / "report.json"
    assert main(["--matrix", "64", "--slices", "20", "--repeat", "1", "--out", str(out),
                 "--data-dir", str(tmp_path / "data")]) == 0
    results = json.loads(out.read_text())
    assert set(results["targets"]) == {"report_seconds", "report_megabytes", "six_key_images",
                                       "pdf_valid"}
    for contender in ("radview_jpeg", "png_peer", "radview_jpeg_cjk"):
        assert results[contender]["key_images"] == 6
        assert len(results[contender]["runs"]) == 2
    for name, target in results["targets"].items():
        assert {"value", "limit", "pass"} <= target.keys()
        if not target["pass"]:
            assert f"FAIL  {name}" in capsys.readouterr().out
