"""The training phantom generator: determinism, truth, orientation, HU ranges, stages, speed."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
from scipy import ndimage
from training.phantoms import (
    STAGE_RANGES,
    TISSUE_HU,
    ContrastPhase,
    LesionKind,
    LiverStage,
    PhantomCase,
    PhantomConfig,
    Tissue,
    generate_case,
    stage_from_features,
)
from training.phantoms.disease import sample_disease

# Coarse grid: a whole abdomen in 96 x 96 x 24 voxels (FOV ~370 mm, 120-144 mm long).
SMALL = PhantomConfig(
    matrix=96, slices=24, pixel_spacing_mm=(3.6, 4.0), slice_thickness_mm=(5.0, 6.0)
)


@pytest.fixture(scope="module")
def case() -> PhantomCase:
    return generate_case(7, config=SMALL)


def _world_x(case: PhantomCase, mask: np.ndarray) -> np.ndarray:
    return case.ct.origin[0] + case.ct.spacing[0] * np.nonzero(mask)[2]


def test_same_seed_is_byte_identical(case: PhantomCase) -> None:
    again = generate_case(7, config=SMALL)
    assert again.ct.voxels.tobytes() == case.ct.voxels.tobytes()
    assert again.labels.voxels.tobytes() == case.labels.voxels.tobytes()
    assert again.organs.voxels.tobytes() == case.organs.voxels.tobytes()
    assert again.lesions == case.lesions
    assert json.dumps(again.params, sort_keys=True) == json.dumps(case.params, sort_keys=True)


def test_other_seed_differs(case: PhantomCase) -> None:
    other = generate_case(8, config=SMALL)
    assert not np.array_equal(other.ct.voxels, case.ct.voxels)
    assert not np.array_equal(other.labels.voxels, case.labels.voxels)


def test_types_geometry_and_params(case: PhantomCase) -> None:
    assert case.ct.voxels.dtype == np.int16
    assert case.labels.voxels.dtype == np.uint8
    assert case.organs.voxels.dtype == np.uint8
    assert case.ct.shape == case.labels.shape == case.organs.shape == (24, 96, 96)
    assert case.ct.spacing == case.labels.spacing and case.ct.origin == case.labels.origin
    assert case.ct.rescale.unit == "HU"
    assert set(np.unique(case.labels.voxels)) <= {0, 1, 2}
    assert set(np.unique(case.organs.voxels)) <= {int(t) for t in Tissue}
    params = json.loads(json.dumps(case.params))
    assert params["seed"] == 7 and params["phase"] == case.phase.value
    assert params["disease"]["stage"] == case.stage.value


def test_labels_match_the_rendered_regions(case: PhantomCase) -> None:
    labels, organs = case.labels.voxels, case.organs.voxels
    assert np.array_equal(labels == 2, organs == Tissue.TUMOUR)
    liver_tissues = np.isin(organs, (Tissue.LIVER, Tissue.PORTAL_VEIN, Tissue.HEPATIC_VEIN))
    assert np.all(liver_tissues[labels == 1])
    assert np.all(labels[organs == Tissue.LIVER] == 1)


def test_liver_is_on_the_patients_right_and_spleen_left(case: PhantomCase) -> None:
    assert _world_x(case, case.labels.voxels == 1).mean() < -20.0
    assert _world_x(case, case.organs.voxels == Tissue.SPLEEN).mean() > 20.0


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_tumours_lie_inside_the_liver_with_matching_truth(seed: int) -> None:
    cfg = PhantomConfig(
        matrix=96,
        slices=24,
        pixel_spacing_mm=(3.6, 4.0),
        slice_thickness_mm=(5.0, 6.0),
        lesion_count=(4, 8),
    )
    c = generate_case(seed, config=cfg)
    tumour = c.labels.voxels == 2
    # Every tumour voxel's neighbours are liver or tumour: fully inside, never on the edge.
    grown = ndimage.binary_dilation(tumour)
    assert np.all(c.labels.voxels[grown] > 0)
    for lesion in c.lesions:
        assert 5.0 - 1e-6 <= max(lesion.axes_mm) <= 100.0 + 1e-6
        LesionKind(lesion.kind)
    assert len(c.lesions) <= 8


def test_lesion_truth_volume_matches_label_voxels() -> None:
    cfg = PhantomConfig(
        matrix=128,
        slices=48,
        pixel_spacing_mm=(1.8, 2.0),
        slice_thickness_mm=(1.8, 2.0),
        lesion_count=(3, 6),
        lesion_diameter_mm=(15.0, 40.0),
    )
    checked = 0
    for seed in (11, 12):
        c = generate_case(seed, config=cfg)
        voxel_ml = float(np.prod(c.ct.spacing)) / 1000.0
        organs = c.organs.voxels
        for lesion in c.lesions:
            if min(lesion.axes_mm) < 15.0:
                continue
            # Label the lesion's own voxels: the component containing its centre.
            parts, _ = ndimage.label(organs == Tissue.TUMOUR)
            ijk = np.rint(c.ct.world_to_index(lesion.centre_lps_mm)).astype(int)
            part = parts[ijk[2], ijk[1], ijk[0]]
            assert part > 0
            counted = float((parts == part).sum()) * voxel_ml
            assert counted == pytest.approx(lesion.volume_ml, rel=0.10)
            checked += 1
    assert checked >= 2


@pytest.mark.parametrize("phase", list(ContrastPhase))
def test_tissue_hu_within_documented_ranges(phase: ContrastPhase) -> None:
    c = generate_case(
        21,
        config=PhantomConfig(
            matrix=96,
            slices=24,
            pixel_spacing_mm=(2.0, 2.0),
            slice_thickness_mm=(3.0, 3.0),
            phase=phase,
            stage=LiverStage.MILD,
            noise_sd_hu=(6.0, 10.0),
        ),
    )
    ct, organs = c.ct.voxels.astype(np.float32), c.organs.voxels

    def core_median(tissue: Tissue) -> float:
        core = ndimage.binary_erosion(organs == tissue, iterations=2)
        assert core.sum() > 20, tissue
        return float(np.median(ct[core]))

    tol = 8.0  # blur, texture and the noise left in a median
    steatosis = c.params["disease"]["steatosis_hu"]
    lo, hi = TISSUE_HU[Tissue.LIVER][phase]
    assert lo - steatosis - tol <= core_median(Tissue.LIVER) <= hi - steatosis + tol
    lo, hi = TISSUE_HU[Tissue.SUBCUTANEOUS_FAT][phase]
    assert lo - tol <= core_median(Tissue.SUBCUTANEOUS_FAT) <= hi + tol
    lo, hi = TISSUE_HU[Tissue.CANCELLOUS_BONE][phase]
    assert lo - tol <= core_median(Tissue.CANCELLOUS_BONE) <= hi + tol
    # Air outside the patient (away from the body and the table).
    corner = ct[:, :4, :4]
    assert float(np.median(corner)) <= -950.0


def test_contrast_phase_changes_vessels_and_liver() -> None:
    base = dict(matrix=64, slices=16, pixel_spacing_mm=(4.0, 4.0), slice_thickness_mm=(5.0, 5.0))
    means = {}
    for phase in ContrastPhase:
        c = generate_case(5, config=PhantomConfig(phase=phase, **base))
        assert c.phase is phase
        means[phase] = c.params["tissue_hu"]
    assert means[ContrastPhase.ARTERIAL]["AORTA"] > means[ContrastPhase.PORTAL_VENOUS]["AORTA"]
    assert means[ContrastPhase.PORTAL_VENOUS]["LIVER"] > means[ContrastPhase.NON_CONTRAST]["LIVER"]


def test_stage_rule_recovers_every_sampled_stage() -> None:
    seen = set()
    for seed in range(300):
        features = sample_disease(np.random.default_rng(seed), None)
        stage = stage_from_features(features)
        assert stage.value == features["stage"]
        seen.add(stage)
        for name, (lo, hi) in STAGE_RANGES[stage].items():
            assert lo - 1e-3 <= features[name] <= hi + 1e-3, name
    assert seen == set(LiverStage)


STAGE_GRID = dict(
    matrix=80,
    slices=32,
    pixel_spacing_mm=(4.5, 4.5),
    slice_thickness_mm=(6.0, 6.0),
    phase=ContrastPhase.PORTAL_VENOUS,
    lesion_count=(0, 0),
)


@pytest.fixture(scope="module")
def staged() -> dict[LiverStage, PhantomCase]:
    return {s: generate_case(3, config=PhantomConfig(stage=s, **STAGE_GRID)) for s in LiverStage}


def test_stage_features_are_measurable(staged: dict[LiverStage, PhantomCase]) -> None:
    def count(stage: LiverStage, tissue: Tissue) -> int:
        return int((staged[stage].organs.voxels == tissue).sum())

    def liver_voxels(stage: LiverStage) -> int:
        return int((staged[stage].labels.voxels > 0).sum())

    for stage, c in staged.items():
        assert c.stage is stage
    mild, end = LiverStage.MILD, LiverStage.END_STAGE
    assert liver_voxels(end) < 0.85 * liver_voxels(mild)
    assert count(end, Tissue.ASCITES) > 100
    assert count(mild, Tissue.ASCITES) == 0
    assert count(LiverStage.SEVERE, Tissue.SPLEEN) > 1.2 * count(mild, Tissue.SPLEEN)
    assert count(end, Tissue.SPLEEN) > 1.2 * count(mild, Tissue.SPLEEN)

    # Steatosis: the mild (fatty) liver is darker than the end-stage one of the same seed.
    def liver_hu(stage: LiverStage) -> tuple[float, float]:
        c = staged[stage]
        core = ndimage.binary_erosion(c.organs.voxels == Tissue.LIVER)
        values = c.ct.voxels[core].astype(np.float32)
        return float(values.mean()), float(values.std())

    assert liver_hu(mild)[0] < liver_hu(end)[0] - 5.0
    # Heterogeneous parenchyma from MODERATE on.
    assert liver_hu(LiverStage.MODERATE)[1] > liver_hu(mild)[1]


def test_spacing_and_thickness_ranges_are_respected() -> None:
    cfg = PhantomConfig(matrix=32, slices=6)
    for seed in range(6):
        c = generate_case(seed, config=cfg)
        sx, sy, sz = c.ct.spacing
        assert sx == sy and 0.6 <= sx <= 1.0
        assert 1.0 <= sz <= 5.0
        assert c.params["geometry"]["fov_mm"] == pytest.approx(32 * sx, abs=1e-2)


def test_working_size_case_is_fast() -> None:
    generate_case(0, config=PhantomConfig(matrix=32, slices=4))  # warm imports and caches
    start = time.perf_counter()
    c = generate_case(1)
    elapsed = time.perf_counter() - start
    assert c.ct.shape == (64, 256, 256)
    assert elapsed < 3.0, f"256x256x64 case took {elapsed:.2f} s"
