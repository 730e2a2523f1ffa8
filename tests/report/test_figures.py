"""Key images and charts (numpy + Pillow): orientation, mm aspect, overlays, encoding."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from radview.core.labelmap import LiverLabel
from radview.core.lesions import measure_liver
from radview.core.volume import Rescale, ViewPlane, Volume
from radview.core.windowing import WindowPreset
from radview.report import figures
from radview.report.figures import (
    LESION_OUTLINE_RGB,
    LIVER_OUTLINE_RGB,
    LONG_AXIS_RGB,
    key_image,
    key_images,
    probability_chart,
    triage_plot,
)

# Synthetic anisotropic CT: 48 x 64 columns/rows of 1 mm, 20 slices of 5 mm (LPS identity).
SHAPE = (20, 64, 48)  # (k, j, i)
SPACING = (1.0, 1.0, 5.0)  # (x, y, z) mm
BACKGROUND_HU, LIVER_HU, TUMOUR_HU, MARKER_HU = -1000, 60, 10, 1000


def _synthetic(direction: np.ndarray | None = None) -> tuple[Volume, Volume]:
    """CT + labels: a liver box with one ellipsoid tumour, and two bright markers.

    Marker "left-superior": columns i 40..47 (patient left for the identity direction), slices
    16..19 (superior), every row. Marker "left-posterior": i 40..47, rows j 56..63, every slice.
    """
    ct = np.full(SHAPE, BACKGROUND_HU, dtype=np.int16)
    labels = np.zeros(SHAPE, dtype=np.uint8)
    labels[4:16, 16:56, 8:40] = LiverLabel.LIVER
    k, j, i = np.indices(SHAPE)
    tumour = ((i - 24) / 8.5) ** 2 + ((j - 36) / 6.5) ** 2 + ((k - 10) / 2.2) ** 2 <= 1.0
    labels[tumour] = LiverLabel.TUMOUR
    ct[labels == LiverLabel.LIVER] = LIVER_HU
    ct[labels == LiverLabel.TUMOUR] = TUMOUR_HU
    ct[16:20, :, 40:48] = MARKER_HU
    ct[:, 56:64, 40:48] = MARKER_HU
    kwargs = {} if direction is None else {"direction": direction}
    image = Volume(ct, spacing=SPACING, modality="CT", rescale=Rescale(unit="HU"), **kwargs)
    return image, image.with_voxels(labels, modality="SEG")


@pytest.fixture(scope="module")
def study():
    image, labels = _synthetic()
    findings = measure_liver(labels, image)
    assert len(findings.lesions) == 1
    return image, labels, findings.lesions[0]


def _decode(rendered) -> np.ndarray:
    picture = Image.open(io.BytesIO(rendered.data))
    assert picture.size == (rendered.width_px, rendered.height_px)
    return np.asarray(picture.convert("RGB")).astype(np.int16)


def _mean_grey(rgb: np.ndarray, rows: slice, cols: slice) -> float:
    return float(rgb[rows, cols].mean())


# ---------------------------------------------------------------------------- geometry
def test_coronal_image_has_the_mm_aspect_of_its_field_of_view(study):
    image, labels, lesion = study
    key = key_image(image, labels, lesion, ViewPlane.CORONAL, image_format="PNG")
    # The whole coronal plane fits in the automatic field of view: 48 mm wide, 100 mm high
    # (20 slices x 5 mm), although the array slice is only 20 x 48 pixels.
    assert key.field_of_view_mm == pytest.approx((48.0, 100.0))
    assert key.image.height_px == 512
    ratio = key.image.height_px / key.image.width_px
    assert ratio == pytest.approx(100.0 / 48.0, rel=0.01)
    assert image.plane_geometry(ViewPlane.CORONAL).pixel_spacing == (5.0, 1.0)


@pytest.mark.parametrize(
    ("plane", "letters", "fov"),
    [
        (ViewPlane.AXIAL, ("A", "P", "R", "L"), (48.0, 64.0)),
        (ViewPlane.CORONAL, ("S", "I", "R", "L"), (48.0, 100.0)),
        (ViewPlane.SAGITTAL, ("S", "I", "A", "P"), (64.0, 100.0)),
    ],
)
def test_edge_letters_and_extent_of_each_plane(study, plane, letters, fov):
    image, labels, lesion = study
    key = key_image(image, labels, lesion, plane, image_format="PNG")
    assert key.edge_letters == letters
    assert key.field_of_view_mm == pytest.approx(fov)
    ratio = key.image.height_px / key.image.width_px
    assert ratio == pytest.approx(fov[1] / fov[0], rel=0.01)
    assert key.scale_bar_mm <= 0.4 * fov[0]


def test_coronal_shows_patient_left_on_the_right_and_superior_at_the_top(study):
    image, labels, lesion = study
    key = key_image(image, labels, lesion, ViewPlane.CORONAL, image_format="PNG")
    rgb = _decode(key.image)
    h, w = rgb.shape[:2]
    # corners, away from the edge letters (edge middles) and the scale bar (bottom left)
    top_right = _mean_grey(rgb, slice(int(0.03 * h), int(0.12 * h)), slice(int(0.88 * w), w - 2))
    top_left = _mean_grey(rgb, slice(int(0.03 * h), int(0.12 * h)), slice(2, int(0.12 * w)))
    bottom_right = _mean_grey(rgb, slice(int(0.6 * h), int(0.7 * h)), slice(int(0.9 * w), w - 2))
    assert top_right > 240  # the left-superior marker
    assert top_left < 15 and bottom_right < 15


def test_axial_shows_patient_left_on_the_right_and_posterior_at_the_bottom(study):
    image, labels, lesion = study
    key = key_image(image, labels, lesion, ViewPlane.AXIAL, image_format="PNG")
    rgb = _decode(key.image)
    h, w = rgb.shape[:2]
    bottom_right = _mean_grey(rgb, slice(int(0.9 * h), h - 2), slice(int(0.88 * w), w - 2))
    top_right = _mean_grey(rgb, slice(2, int(0.1 * h)), slice(int(0.88 * w), w - 2))
    assert bottom_right > 240  # the left-posterior marker
    assert top_right < 15


def test_a_flipped_series_is_still_shown_in_radiological_orientation():
    # Columns run towards the patient's RIGHT: the marker columns are now on the patient's
    # right, so the axial image must show them on the screen's LEFT.
    image, labels = _synthetic(direction=np.diag([-1.0, 1.0, 1.0]))
    lesion = measure_liver(labels, image).lesions[0]
    key = key_image(image, labels, lesion, ViewPlane.AXIAL, image_format="PNG")
    rgb = _decode(key.image)
    h, w = rgb.shape[:2]
    bottom_left = _mean_grey(rgb, slice(int(0.9 * h), h - 2), slice(2, int(0.12 * w)))
    bottom_right = _mean_grey(rgb, slice(int(0.9 * h), h - 2), slice(int(0.88 * w), w - 2))
    assert bottom_left > 200 and bottom_right < 15
    assert key.edge_letters == ("A", "P", "R", "L")


# ---------------------------------------------------------------------------- overlays
def test_recist_axes_are_drawn_on_the_recist_slice_where_the_end_points_map(study):
    image, labels, lesion = study
    key = key_image(image, labels, lesion, ViewPlane.AXIAL, image_format="PNG")
    assert key.slice_index == lesion.recist_slice
    assert key.axes_drawn
    rgb = _decode(key.image)
    h, w = rgb.shape[:2]
    a, b = (np.asarray(p) for p in lesion.long_axis_endpoints_lps)
    n_rows, n_cols = image.plane_slice(ViewPlane.AXIAL, 0).shape
    for fraction in (0.2, 0.35, 0.65, 0.8):  # away from the crossing with the short axis
        _s, row, col = image.plane_pixel_of_world(ViewPlane.AXIAL, a + fraction * (b - a))
        x, y = int((col + 0.5) * w / n_cols), int((row + 0.5) * h / n_rows)
        patch = rgb[y - 2:y + 3, x - 2:x + 3].reshape(-1, 3)
        distance = np.abs(patch - np.asarray(LONG_AXIS_RGB)).sum(axis=1).min()
        assert distance < 30, f"no long-axis colour at {fraction:.0%} of the axis"


def test_outlines_use_their_colours_and_axes_only_in_the_acquisition_plane(study):
    image, labels, lesion = study
    axial = key_image(image, labels, lesion, ViewPlane.AXIAL, image_format="PNG")
    coronal = key_image(image, labels, lesion, ViewPlane.CORONAL, image_format="PNG")
    assert not coronal.axes_drawn
    for key in (axial, coronal):
        rgb = _decode(key.image).reshape(-1, 3)
        for colour in (LIVER_OUTLINE_RGB, LESION_OUTLINE_RGB):
            assert np.count_nonzero(np.all(rgb == colour, axis=1)) > 50


def test_window_defaults_to_liver_for_ct_and_jpeg_is_the_default_format(study):
    image, labels, lesion = study
    key = key_image(image, labels, lesion, ViewPlane.AXIAL)
    assert key.window == WindowPreset.LIVER.window()
    assert key.image.format == "JPEG" and key.image.data[:2] == b"\xff\xd8"
    assert _decode(key.image).shape[:2] == (key.image.height_px, key.image.width_px)


def test_key_images_take_every_plane_of_the_largest_lesions_up_to_the_limit(study):
    image, labels, lesion = study
    images = key_images(image, labels, [lesion, lesion, lesion, lesion], max_images=6)
    assert len(images) == 6  # three lesions x (axial, coronal); a fourth would exceed six
    assert [k.plane for k in images[:2]] == [ViewPlane.AXIAL, ViewPlane.CORONAL]
    assert key_images(image, labels, [], max_images=6) == ()


def test_labels_off_the_grid_and_unknown_formats_are_refused(study):
    image, labels, lesion = study
    with pytest.raises(ValueError, match="grid"):
        key_image(image, Volume(labels.voxels[:-1]), lesion, ViewPlane.AXIAL)
    with pytest.raises(ValueError, match="JPEG or PNG"):
        key_image(image, labels, lesion, ViewPlane.AXIAL, image_format="GIF")


def test_outline_does_not_mark_the_border_of_the_picture():
    mask = np.ones((10, 10), dtype=bool)
    assert not figures._outline(mask).any()
    mask[:, 6:] = False
    outline = figures._outline(mask, width=2)
    assert outline[:, 4:6].all() and not outline[:, :4].any()


# ---------------------------------------------------------------------------- charts
def test_probability_chart_and_triage_plot_are_png():
    chart = probability_chart(["0", "A", "B"], [0.1, 0.7, 0.2], highlight=[1])
    assert chart.format == "PNG" and chart.data[:8] == b"\x89PNG\r\n\x1a\n"
    assert _decode(chart).shape[:2] == (chart.height_px, chart.width_px)
    plot = triage_plot([0.1, 0.9, 0.4, 0.6], marks=[1, 99])
    assert _decode(plot).shape[:2] == (plot.height_px, plot.width_px)
    assert triage_plot([0.3]).width_px > 0  # one slice still draws


def test_probability_chart_draws_every_highlighted_class_in_orange():
    # the predicted class and a close call beside it are both orange; the others blue
    pixels = _decode(probability_chart(["A", "B", "C", "D"], [0.05, 0.40, 0.46, 0.09],
                                       highlight=[2, 1]))
    orange = np.all(pixels == (230, 159, 0), axis=2)
    blue = np.all(pixels == (0, 114, 178), axis=2)
    rows = np.array_split(np.arange(pixels.shape[0]), 4)  # one band per class, top to bottom
    assert [bool(orange[band].any()) for band in rows] == [False, True, True, False]
    assert [bool(blue[band].any()) for band in rows] == [True, False, False, True]


def test_charts_refuse_mismatched_or_empty_data():
    with pytest.raises(ValueError):
        probability_chart(["a", "b"], [0.5])
    with pytest.raises(ValueError):
        probability_chart([], [])
    with pytest.raises(ValueError):
        triage_plot([])
