"""Measurements of annotations: reference lengths/angles, ROI statistics against numpy."""

import dataclasses
import math

import numpy as np
import pytest

from radview.core.annotations import Annotation, AnnotationKind
from radview.core.measurements import (
    Measurement,
    MeasurementName,
    format_measurement,
    measure,
    measurement_lines,
    region_mask,
    summary_label,
)
from radview.core.volume import Rescale, ViewPlane, Volume

AXIAL, CORONAL, SAGITTAL = ViewPlane.AXIAL, ViewPlane.CORONAL, ViewPlane.SAGITTAL


def _gradient_ct(direction: np.ndarray | None = None, **changes: object) -> Volume:
    """A CT whose every voxel value is distinct: HU = i + 3 j + 200 k - 500.

    Anisotropic (0.7 x 0.7 x 2.5 mm), not at the origin, 24 slices of 150 x 160.
    """
    k, j, i = np.meshgrid(np.arange(24), np.arange(150), np.arange(160), indexing="ij")
    voxels = (i + 3 * j + 200 * k - 500).astype(np.int16)
    values: dict[str, object] = dict(
        spacing=(0.7, 0.7, 2.5), origin=(-56.0, -80.0, 12.5), modality="CT",
        rescale=Rescale(unit="HU"), direction=np.eye(3) if direction is None else direction,
    )
    values.update(changes)
    return Volume(voxels, **values)  # type: ignore[arg-type]


def _on_plane(volume: Volume, kind: AnnotationKind, plane: ViewPlane, index: int,
              *pixels: tuple[float, float], label: str = "") -> Annotation:
    """An annotation whose points are the LPS positions of (row, col) pixels of a slice."""
    points = tuple(
        tuple(float(v) for v in volume.world_of_plane_pixel(plane, index, row, col))
        for row, col in pixels
    )
    return Annotation(kind, plane, index, points, label=label)


def _by_name(measurements: tuple[Measurement, ...]) -> dict[str, Measurement]:
    names = [m.name for m in measurements]
    assert len(names) == len(set(names)), names
    return {m.name: m for m in measurements}


def _expected_stats(values: np.ndarray) -> dict[str, float]:
    values = values.astype(np.float64)
    return {"Mean": values.mean(), "SD": values.std(ddof=0), "Min": values.min(),
            "Max": values.max(), "Pixel count": values.size}


def _assert_stats(measurements: tuple[Measurement, ...], pixels: np.ndarray,
                  pixel_area_mm2: float, unit: str = "HU") -> None:
    found = _by_name(measurements)
    assert pixels.size > 0
    for name, value in _expected_stats(pixels).items():
        assert found[name].value == pytest.approx(value, rel=1e-12, abs=1e-9), name
    for name in ("Mean", "SD", "Min", "Max"):
        assert found[name].unit == unit
    assert found["Area"].value == pytest.approx(pixels.size * pixel_area_mm2)
    assert found["Area"].unit == "mm²"
    assert "pixel count" in found["Area"].method and "pixel area" in found["Area"].method


# ---------------------------------------------------------------------------- ruler
def test_axial_ruler_of_100_pixels_at_0_7_mm_is_70_mm() -> None:
    volume = _gradient_ct()
    ruler = _on_plane(volume, AnnotationKind.RULER, AXIAL, 5, (40, 20), (40, 120))
    (length,) = measure(ruler, volume)
    assert length == Measurement("Length", pytest.approx(70.0), "mm", length.method)
    assert length.name is MeasurementName.LENGTH
    assert isinstance(length.value, float)
    assert format_measurement(length) == "70.0 mm"


def test_vertical_coronal_ruler_of_20_pixels_on_2_5_mm_slices_is_50_mm() -> None:
    volume = _gradient_ct()
    assert volume.plane_geometry(CORONAL).pixel_spacing == (2.5, 0.7)
    ruler = _on_plane(volume, AnnotationKind.RULER, CORONAL, 75, (2, 30), (22, 30))
    (length,) = measure(ruler, volume)
    assert length.value == pytest.approx(50.0)
    assert length.unit == "mm"


def test_diagonal_sagittal_ruler_uses_both_spacings() -> None:
    volume = _gradient_ct()
    ruler = _on_plane(volume, AnnotationKind.RULER, SAGITTAL, 80, (3, 10), (7, 13))
    (length,) = measure(ruler, volume)
    assert length.value == pytest.approx(math.hypot(4 * 2.5, 3 * 0.7))


def test_ruler_on_an_oblique_flipped_series() -> None:
    a = np.radians(25)
    rotation = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    volume = _gradient_ct(direction=rotation @ np.diag([1.0, -1.0, -1.0]))
    ruler = _on_plane(volume, AnnotationKind.RULER, AXIAL, 3, (10, 10), (40, 50))
    (length,) = measure(ruler, volume)
    assert length.value == pytest.approx(0.7 * 50.0)


def test_zero_length_ruler_is_zero_mm() -> None:
    volume = _gradient_ct()
    ruler = _on_plane(volume, AnnotationKind.RULER, AXIAL, 0, (5, 5), (5, 5))
    assert measure(ruler, volume)[0].value == 0.0


# ---------------------------------------------------------------------------- angle
@pytest.mark.parametrize(
    ("arm_a", "arm_b", "degrees"),
    [
        ((50, 80), (20, 50), 90.0),  # up and left of the vertex (50, 50): a right angle
        ((50, 80), (50, 20), 180.0),
        ((50, 80), (50, 90), 0.0),
        ((50, 80), (20, 80), 45.0),
        ((50, 80), (30, 30), 135.0),
    ],
)
def test_angle_at_the_vertex(arm_a, arm_b, degrees) -> None:
    volume = Volume(np.zeros((2, 100, 100), np.int16), spacing=(0.8, 0.8, 3.0))
    angle_annotation = _on_plane(volume, AnnotationKind.ANGLE, AXIAL, 1, arm_a, (50, 50), arm_b)
    (angle,) = measure(angle_annotation, volume)
    assert angle.name == "Angle" and angle.unit == "°"
    assert angle.value == pytest.approx(degrees, abs=1e-9)


def test_angle_in_an_anisotropic_coronal_view_uses_millimetres() -> None:
    # 10 px up (2.5 mm rows) and 10 px right (0.7 mm columns) is not 45 degrees in the patient
    volume = _gradient_ct()
    annotation = _on_plane(volume, AnnotationKind.ANGLE, CORONAL, 10, (12, 40), (12, 30),
                           (2, 30))
    (angle,) = measure(annotation, volume)
    assert angle.value == pytest.approx(90.0)
    slanted = _on_plane(volume, AnnotationKind.ANGLE, CORONAL, 10, (12, 40), (12, 30), (2, 40))
    assert measure(slanted, volume)[0].value == pytest.approx(
        math.degrees(math.atan2(10 * 2.5, 10 * 0.7))
    )


def test_angle_with_a_zero_length_arm_measures_nothing() -> None:
    volume = _gradient_ct()
    annotation = _on_plane(volume, AnnotationKind.ANGLE, AXIAL, 1, (5, 5), (5, 5), (9, 9))
    assert measure(annotation, volume) == ()
    assert summary_label(annotation, ()) == ""


# ---------------------------------------------------------------------------- regions
def test_axial_rectangle_statistics_match_numpy() -> None:
    volume = _gradient_ct()
    # corners on pixel centres: rows 10..19 and columns 30..49 are inside (boundary included)
    rect = _on_plane(volume, AnnotationKind.RECTANGLE, AXIAL, 7, (10, 30), (19, 49))
    found = measure(rect, volume)
    image = volume.voxels[7]  # identity geometry: axial slice 7 is k = 7 as stored
    _assert_stats(found, image[10:20, 30:50], 0.7 * 0.7)
    assert _by_name(found)["Pixel count"].value == 200
    assert "ddof=0" in _by_name(found)["SD"].method
    # population SD, not the sample SD
    assert _by_name(found)["SD"].value != pytest.approx(image[10:20, 30:50].std(ddof=1))
    assert "Ellipse area" not in _by_name(found)


def test_rectangle_corner_order_does_not_matter() -> None:
    volume = _gradient_ct()
    a = _on_plane(volume, AnnotationKind.RECTANGLE, AXIAL, 7, (10, 30), (19, 49))
    b = _on_plane(volume, AnnotationKind.RECTANGLE, AXIAL, 7, (19, 30), (10, 49))
    assert [m.value for m in measure(a, volume)] == [m.value for m in measure(b, volume)]


def _ellipse_mask(shape: tuple[int, int], corner_a, corner_b) -> np.ndarray:
    """Pixel centres inside the ellipse inscribed in the box of two corners (independent)."""
    rows, cols = np.mgrid[0 : shape[0], 0 : shape[1]].astype(float)
    (r0, c0), (r1, c1) = corner_a, corner_b
    rc, cc, a, b = (r0 + r1) / 2, (c0 + c1) / 2, abs(r1 - r0) / 2, abs(c1 - c0) / 2
    return ((rows - rc) / a) ** 2 + ((cols - cc) / b) ** 2 <= 1.0


@pytest.mark.parametrize(
    ("plane", "index"), [(AXIAL, 11), (CORONAL, 60), (SAGITTAL, 90)], ids=lambda v: str(v)
)
def test_ellipse_statistics_match_numpy(plane: ViewPlane, index: int) -> None:
    volume = _gradient_ct()
    corner_a, corner_b = (3.3, 20.6), (17.9, 71.2)
    ellipse = _on_plane(volume, AnnotationKind.ELLIPSE, plane, index, corner_a, corner_b)
    image = volume.plane_slice(plane, index)
    mask = _ellipse_mask(image.shape, corner_a, corner_b)
    row_mm, col_mm = volume.plane_geometry(plane).pixel_spacing
    found = measure(ellipse, volume)
    _assert_stats(found, image[mask], row_mm * col_mm)
    analytic = _by_name(found)["Ellipse area"]
    semi_rows_mm = (17.9 - 3.3) / 2 * row_mm
    semi_cols_mm = (71.2 - 20.6) / 2 * col_mm
    assert analytic.value == pytest.approx(math.pi * semi_rows_mm * semi_cols_mm)
    # pixel area approximates the analytic one
    assert _by_name(found)["Area"].value == pytest.approx(analytic.value, rel=0.05)


def test_coronal_ellipse_on_anisotropic_grid_reference_numbers() -> None:
    volume = _gradient_ct()
    assert volume.plane_geometry(CORONAL).pixel_spacing == (2.5, 0.7)
    # coronal slice j = 40: HU = i + 120 + 200 k - 500; rows run from k = 23 (top) downwards
    corner_a, corner_b = (0.5, 9.5), (8.5, 29.5)
    ellipse = _on_plane(volume, AnnotationKind.ELLIPSE, CORONAL, 40, corner_a, corner_b)
    k, i = np.mgrid[0:24, 0:160]
    values = (i + 3 * 40 + 200 * k - 500)[::-1]  # screen row 0 = most superior slice
    mask = _ellipse_mask(values.shape, corner_a, corner_b)
    found = _by_name(measure(ellipse, volume))
    assert found["Mean"].value == pytest.approx(values[mask].mean())
    assert found["Pixel count"].value == mask.sum()
    assert found["Area"].value == pytest.approx(mask.sum() * 2.5 * 0.7)


def test_flipped_volume_region_matches_the_displayed_pixels() -> None:
    # every index axis runs against its patient axis: rows, columns and slices all flip
    volume = _gradient_ct(direction=np.diag([-1.0, -1.0, -1.0]))
    rect = _on_plane(volume, AnnotationKind.RECTANGLE, AXIAL, 2, (4, 6), (9, 20))
    image = volume.plane_slice(AXIAL, 2)
    _assert_stats(measure(rect, volume), image[4:10, 6:21], 0.49)
    assert not np.array_equal(image, volume.voxels[2])  # the flip is really exercised


def test_region_partly_outside_the_image_counts_only_image_pixels() -> None:
    volume = _gradient_ct()
    rect = _on_plane(volume, AnnotationKind.RECTANGLE, AXIAL, 0, (-20, 150), (4, 400))
    image = volume.voxels[0]
    _assert_stats(measure(rect, volume), image[0:5, 150:160], 0.49)


def test_region_entirely_outside_the_image_has_no_statistics() -> None:
    volume = _gradient_ct()
    rect = _on_plane(volume, AnnotationKind.RECTANGLE, AXIAL, 0, (-20, -30), (-5, -2))
    found = _by_name(measure(rect, volume))
    assert set(found) == {"Pixel count", "Area"}
    assert found["Pixel count"].value == 0 and found["Area"].value == 0


def test_flat_shapes_have_no_pixels() -> None:
    volume = _gradient_ct()
    for kind in (AnnotationKind.RECTANGLE, AnnotationKind.ELLIPSE):
        flat = _on_plane(volume, kind, AXIAL, 0, (10, 10), (10, 30))
        mask, _ = region_mask(flat, volume)
        assert not mask.any()
        assert _by_name(measure(flat, volume))["Pixel count"].value == 0


def test_region_mask_refuses_rulers() -> None:
    volume = _gradient_ct()
    with pytest.raises(ValueError, match="no region"):
        region_mask(_on_plane(volume, AnnotationKind.RULER, AXIAL, 0, (1, 1), (2, 2)), volume)


def test_stored_values_are_rescaled_when_the_loader_did_not() -> None:
    stored = _gradient_ct(rescale=Rescale(slope=2.0, intercept=-1024.0, unit="HU",
                                          applied=False))
    rect = _on_plane(stored, AnnotationKind.RECTANGLE, AXIAL, 3, (0, 0), (9, 9))
    expected = stored.voxels[3, 0:10, 0:10] * 2.0 - 1024.0
    _assert_stats(measure(rect, stored), expected, 0.49)


def test_volume_without_a_unit_reports_no_unit() -> None:
    volume = _gradient_ct(modality="MR", rescale=Rescale())
    rect = _on_plane(volume, AnnotationKind.RECTANGLE, AXIAL, 3, (0, 0), (9, 9))
    found = _by_name(measure(rect, volume))
    assert found["Mean"].unit == ""
    assert format_measurement(found["Mean"]) == f"{found['Mean'].value:.1f}"


def test_slice_outside_the_volume_is_an_index_error() -> None:
    volume = _gradient_ct()
    points = ((0.0, 0.0, 0.0), (5.0, 5.0, 0.0))
    with pytest.raises(IndexError):
        measure(Annotation(AnnotationKind.ELLIPSE, AXIAL, 99, points), volume)


def test_unknown_geometry_measures_nothing_across_slices() -> None:
    volume = _gradient_ct(geometry_known=False)
    axial = _on_plane(volume, AnnotationKind.RULER, AXIAL, 1, (0, 0), (0, 10))
    assert measure(axial, volume)[0].value == pytest.approx(7.0)
    coronal = _on_plane(volume, AnnotationKind.RULER, CORONAL, 1, (0, 0), (10, 0))
    assert measure(coronal, volume) == ()
    angle = _on_plane(volume, AnnotationKind.ANGLE, CORONAL, 1, (0, 0), (10, 0), (10, 5))
    assert measure(angle, volume) == ()
    roi = _on_plane(volume, AnnotationKind.ELLIPSE, CORONAL, 1, (0, 0), (10, 10))
    names = set(_by_name(measure(roi, volume)))
    assert names == {"Mean", "SD", "Min", "Max", "Pixel count"}


def test_measurements_are_frozen_data() -> None:
    volume = _gradient_ct()
    rect = _on_plane(volume, AnnotationKind.RECTANGLE, AXIAL, 3, (0, 0), (9, 9))
    for m in measure(rect, volume):
        assert isinstance(m.value, float) and isinstance(m.unit, str) and m.method
        with pytest.raises(dataclasses.FrozenInstanceError):
            m.value = 1.0  # type: ignore[misc]


# ---------------------------------------------------------------------------- formatting
def test_format_measurement_examples() -> None:
    mean = Measurement(MeasurementName.MEAN, 41.23, "HU", "")
    sd = Measurement(MeasurementName.SD, 8.14, "HU", "")
    assert format_measurement(Measurement("Length", 23.43, "mm", "")) == "23.4 mm"
    assert format_measurement(mean, sd) == "41.2 HU ± 8.1"
    assert format_measurement(Measurement("Angle", 112.0, "°", "")) == "112.0°"
    assert format_measurement(Measurement("Area", 315.2, "mm²", "")) == "315 mm²"
    assert format_measurement(Measurement("Area", 4.86, "mm²", "")) == "4.9 mm²"
    assert format_measurement(Measurement("Pixel count", 450.0, "px", "")) == "450 px"
    assert format_measurement(Measurement("Mean", -0.04, "HU", "")) == "0.0 HU"
    assert format_measurement(Measurement("Mean", -12.0, "HU", "")) == "-12.0 HU"
    assert format_measurement(Measurement("Mean", float("nan"), "HU", "")) == "n/a HU"


def test_measurement_lines_pair_mean_and_sd() -> None:
    volume = _gradient_ct()
    rect = _on_plane(volume, AnnotationKind.RECTANGLE, AXIAL, 0, (0, 0), (1, 1))
    lines = measurement_lines(measure(rect, volume))
    # HU = i + 3 j - 500 over i, j in {0, 1}: -500, -499, -497, -496
    assert lines == [
        "Mean ± SD: -498.0 HU ± 1.6",
        "Min: -500.0 HU",
        "Max: -496.0 HU",
        "Pixel count: 4 px",
        "Area: 2.0 mm²",
    ]


def test_summary_labels() -> None:
    volume = _gradient_ct()
    ruler = _on_plane(volume, AnnotationKind.RULER, AXIAL, 5, (40, 20), (40, 120))
    assert summary_label(ruler, measure(ruler, volume)) == "70.0 mm"
    angle = _on_plane(volume, AnnotationKind.ANGLE, AXIAL, 5, (50, 80), (50, 50), (20, 50))
    assert summary_label(angle, measure(angle, volume)) == "90.0°"
    rect = _on_plane(volume, AnnotationKind.RECTANGLE, AXIAL, 0, (0, 0), (1, 1),
                     label="Lesion <1>")
    assert summary_label(rect, measure(rect, volume)) == "Lesion <1>\n-498.0 HU ± 1.6\n2.0 mm²"
