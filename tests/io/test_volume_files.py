"""Reading NIfTI, NRRD and MetaImage files into LPS Volumes (radview.io.volume_files)."""

from __future__ import annotations

import gzip
import hashlib
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk

from radview.core.errors import (
    DegenerateAffineError,
    ImageTooLargeError,
    InputFileError,
    NonOrthonormalAffineError,
    TruncatedFileError,
    UnsupportedVolumeFileError,
)
from radview.core.volume import Volume
from radview.io import volume_files
from radview.io.convert import LPS_TO_RAS, volume_to_nifti, volume_to_sitk
from radview.io.volume_files import is_volume_file, read_volume_file

MRICRON_TEMPLATES = Path("/usr/share/mricron/templates")
NO_MRICRON = "Debian package mricron-data is not installed (apt-get install mricron-data)"


# ---------------------------------------------------------------------- helpers


def _rotation(ax: float, ay: float, az: float) -> np.ndarray:
    cx, sx, cy, sy, cz, sz = (f(np.deg2rad(a)) for a in (ax, ay, az) for f in (np.cos, np.sin))
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return rz @ ry @ rx


OBLIQUE = _rotation(17.0, -23.0, 31.0)  # det +1
FLIPPED = _rotation(-8.0, 12.0, 95.0) @ np.diag([1.0, -1.0, 1.0])  # det -1
DIRECTIONS = pytest.mark.parametrize(
    "direction", [OBLIQUE, FLIPPED], ids=["oblique-det+1", "flipped-det-1"]
)
SPACING = (0.625, 0.8, 2.5)
ORIGIN = (-112.5, 30.25, 101.0)


def _volume(direction: np.ndarray, dtype: type = np.int16, shape=(5, 6, 7)) -> Volume:
    rng = np.random.default_rng(7)
    info = np.iinfo(dtype) if np.dtype(dtype).kind in "iu" else None
    if info is None:
        voxels = rng.normal(0, 100, size=shape).astype(dtype)
    else:
        voxels = rng.integers(info.min, info.max, size=shape, endpoint=True, dtype=dtype)
    return Volume(voxels=voxels, spacing=SPACING, origin=ORIGIN, direction=direction)


def _assert_same_volume(actual: Volume, expected: Volume, *, atol_mm: float) -> None:
    assert actual.voxels.dtype == expected.voxels.dtype
    np.testing.assert_array_equal(actual.voxels, expected.voxels)
    np.testing.assert_allclose(actual.spacing, expected.spacing, rtol=1e-6)
    np.testing.assert_allclose(actual.origin, expected.origin, atol=atol_mm)
    np.testing.assert_allclose(actual.direction, expected.direction, atol=1e-6)
    assert np.sign(np.linalg.det(actual.direction)) == np.sign(np.linalg.det(expected.direction))


def _write_nifti(
    path: Path,
    data: np.ndarray,
    *,
    sform: np.ndarray | None = None,
    sform_code: int = 0,
    qform: np.ndarray | None = None,
    qform_code: int = 0,
    slope: float = np.nan,
    inter: float = np.nan,
    units: str = "mm",
    endianness: str = "<",
    fields: dict | None = None,
) -> Path:
    """A single-file NIfTI-1 written byte by byte, so every header field is what the test says.

    (nibabel's image writer recomputes scaling and fixes some fields; this does not.)
    """
    header = nib.Nifti1Header(endianness=endianness)
    header.set_data_dtype(data.dtype)
    header.set_data_shape(data.shape)
    header.set_xyzt_units(units)
    if qform is not None:
        header.set_qform(qform)
    if sform is not None:
        header.set_sform(sform)
    header["qform_code"] = qform_code
    header["sform_code"] = sform_code
    header["scl_slope"] = slope
    header["scl_inter"] = inter
    header.set_data_offset(352)
    payload = data.astype(header.get_data_dtype(), copy=False).tobytes(order="F")
    for name, value in (fields or {}).items():
        header[name] = value
    content = header.binaryblock + b"\x00" * 4 + payload
    if path.name.endswith(".gz"):
        content = gzip.compress(content)
    path.write_bytes(content)
    return path


def _ras_affine(linear: np.ndarray, translation) -> np.ndarray:
    affine = np.eye(4)
    affine[:3, :3] = linear
    affine[:3, 3] = translation
    return affine


def _sitk_geometry(image: sitk.Image) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return (
        np.asarray(image.GetSpacing()),
        np.asarray(image.GetOrigin()),
        np.asarray(image.GetDirection()).reshape(3, 3),
    )


def _assert_one_line_naming(error: pytest.ExceptionInfo, path: Path) -> None:
    message = str(error.value)
    assert path.name in message
    assert "\n" not in message
    assert "Traceback" not in message


# ---------------------------------------------------------------------- file names


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("a.nii", True),
        ("a.nii.gz", True),
        ("A.NII.GZ", True),
        ("a.nrrd", True),
        ("a.nhdr", True),
        ("a.mha", True),
        ("a.mhd", True),
        ("a.gz", False),
        ("a.dcm", False),
        ("nii", False),
        ("a.raw", False),
    ],
)
def test_is_volume_file_by_suffix(name: str, expected: bool) -> None:
    assert is_volume_file(name) is expected
    assert is_volume_file(Path("/some/folder") / name) is expected


def test_unknown_suffix_and_missing_file_are_clean_errors(tmp_path: Path) -> None:
    other = tmp_path / "scan.txt"
    other.write_text("hello")
    with pytest.raises(UnsupportedVolumeFileError) as error:
        read_volume_file(other)
    _assert_one_line_naming(error, other)
    missing = tmp_path / "missing.nii.gz"
    with pytest.raises(InputFileError) as error:
        read_volume_file(missing)
    _assert_one_line_naming(error, missing)
    folder = tmp_path / "folder.nii"
    folder.mkdir()
    with pytest.raises(InputFileError):
        read_volume_file(folder)


# ---------------------------------------------------------------------- round trips


@DIRECTIONS
@pytest.mark.parametrize(
    "dtype", [np.int16, np.uint16, np.uint8, np.int8, np.int32, np.uint32, np.float32]
)
def test_nifti_round_trip(tmp_path: Path, direction: np.ndarray, dtype: type) -> None:
    original = _volume(direction, dtype)
    path = tmp_path / "volume.nii.gz"
    nib.save(volume_to_nifti(original), path)

    loaded = read_volume_file(path)

    # srow/qoffset are float32: a few micrometres of rounding at ~100 mm.
    _assert_same_volume(loaded, original, atol_mm=1e-4)
    assert loaded.warnings == ()
    assert loaded.source.kind == "nifti"
    assert loaded.source.paths == (str(path),)
    assert loaded.source.description == "volume.nii.gz"
    assert loaded.modality == ""
    assert loaded.rescale.slope == 1.0 and loaded.rescale.intercept == 0.0


@DIRECTIONS
def test_uncompressed_nifti_round_trip(tmp_path: Path, direction: np.ndarray) -> None:
    original = _volume(direction)
    path = tmp_path / "volume.nii"
    nib.save(volume_to_nifti(original), path)
    _assert_same_volume(read_volume_file(path), original, atol_mm=1e-4)


@DIRECTIONS
@pytest.mark.parametrize(
    ("suffix", "kind"),
    [(".nrrd", "nrrd"), (".nhdr", "nrrd"), (".mha", "metaimage"), (".mhd", "metaimage")],
)
@pytest.mark.parametrize("dtype", [np.int16, np.uint16, np.float32])
def test_itk_format_round_trip(
    tmp_path: Path, direction: np.ndarray, suffix: str, kind: str, dtype: type
) -> None:
    original = _volume(direction, dtype)
    path = tmp_path / f"volume{suffix}"
    sitk.WriteImage(volume_to_sitk(original), str(path))

    loaded = read_volume_file(path)

    # NRRD and MetaImage store the geometry as decimal text of doubles.
    _assert_same_volume(loaded, original, atol_mm=1e-9)
    assert loaded.warnings == ()
    assert loaded.source.kind == kind
    assert loaded.source.paths == (str(path),)
    assert loaded.source.description == path.name


@pytest.mark.parametrize("suffix", [".nrrd", ".mha"])
def test_itk_compressed_round_trip(tmp_path: Path, suffix: str) -> None:
    original = _volume(OBLIQUE)
    path = tmp_path / f"volume{suffix}"
    sitk.WriteImage(volume_to_sitk(original), str(path), useCompression=True)
    _assert_same_volume(read_volume_file(path), original, atol_mm=1e-9)


def test_reading_never_modifies_the_file(tmp_path: Path) -> None:
    path = tmp_path / "volume.nii.gz"
    nib.save(volume_to_nifti(_volume(OBLIQUE)), path)
    before = (hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_mtime_ns)
    read_volume_file(path)
    after = (hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_mtime_ns)
    assert before == after
    assert sorted(p.name for p in tmp_path.iterdir()) == ["volume.nii.gz"]


# ---------------------------------------------------------------------- NIfTI geometry


def test_known_ras_affine_gives_expected_lps_geometry(tmp_path: Path) -> None:
    affine = _ras_affine(np.diag([-1.0, 2.0, 3.0]), (10.0, -20.0, 30.0))
    data = np.arange(4 * 5 * 6, dtype=np.int16).reshape(4, 5, 6)  # (i, j, k)
    path = tmp_path / "known.nii.gz"
    nib.save(nib.Nifti1Image(data, affine), path)

    volume = read_volume_file(path)

    assert volume.shape == (6, 5, 4)
    assert volume.spacing == (1.0, 2.0, 3.0)
    # RAS (10, -20, 30) is LPS (-10, 20, 30); RAS axis -x is LPS +x, RAS +y is LPS -y.
    assert volume.origin == (-10.0, 20.0, 30.0)
    np.testing.assert_array_equal(volume.direction, np.diag([1.0, -1.0, 1.0]))
    np.testing.assert_array_equal(volume.voxels, data.transpose(2, 1, 0))
    assert volume.voxels[5, 4, 3] == data[3, 4, 5]


@pytest.mark.parametrize(
    "linear",
    [
        np.diag([-1.0, 2.0, 3.0]),
        _rotation(10.0, 20.0, -30.0) @ np.diag([0.9, 1.1, 4.0]),
        _rotation(0.0, 90.0, 0.0) @ np.diag([-0.5, 0.5, 1.5]),
    ],
    ids=["diagonal", "oblique", "permuted-flipped"],
)
def test_index_to_world_matches_nibabel_affine(tmp_path: Path, linear: np.ndarray) -> None:
    affine = _ras_affine(linear, (12.0, -34.5, 56.25))
    path = tmp_path / "affine.nii.gz"
    image = nib.Nifti1Image(np.zeros((7, 8, 9), dtype=np.uint8), affine)
    nib.save(image, path)
    volume = read_volume_file(path)

    ijk = np.array([[0, 0, 0], [6, 0, 0], [0, 7, 0], [0, 0, 8], [6, 7, 8], [3, 2, 5]], float)
    ras = nib.affines.apply_affine(nib.load(path).affine, ijk)
    expected_lps = ras @ LPS_TO_RAS.T
    np.testing.assert_allclose(volume.index_to_world(ijk), expected_lps, atol=1e-4)
    np.testing.assert_allclose(volume.world_to_index(expected_lps), ijk, atol=1e-4)


@DIRECTIONS
def test_agrees_with_simpleitk(tmp_path: Path, direction: np.ndarray) -> None:
    original = _volume(direction)
    path = tmp_path / "volume.nii.gz"
    nib.save(volume_to_nifti(original), path)  # sform and qform agree

    ours = read_volume_file(path)
    theirs = sitk.ReadImage(str(path))

    spacing, origin, itk_direction = _sitk_geometry(theirs)
    np.testing.assert_allclose(ours.spacing, spacing, rtol=1e-6)
    np.testing.assert_allclose(ours.origin, origin, atol=1e-4)
    np.testing.assert_allclose(ours.direction, itk_direction, atol=1e-5)
    np.testing.assert_array_equal(ours.voxels, sitk.GetArrayFromImage(theirs))


def test_no_transform_agrees_with_simpleitk(tmp_path: Path) -> None:
    path = _write_nifti(
        tmp_path / "analyze.nii.gz",
        np.arange(24, dtype=np.int16).reshape(2, 3, 4),
        fields={"pixdim": [1.0, 0.5, 0.75, 3.0, 1.0, 1.0, 1.0, 1.0]},
    )
    ours = read_volume_file(path)
    spacing, origin, direction = _sitk_geometry(sitk.ReadImage(str(path)))
    np.testing.assert_allclose(ours.spacing, spacing)
    np.testing.assert_allclose(ours.origin, origin)
    np.testing.assert_allclose(ours.direction, direction)


@pytest.mark.parametrize(("units", "factor"), [("micron", 0.001), ("meter", 1000.0)])
def test_spatial_units_are_converted_to_mm_like_simpleitk(
    tmp_path: Path, units: str, factor: float
) -> None:
    affine = _ras_affine(OBLIQUE @ np.diag([2.0, 3.0, 4.0]), (10.0, 20.0, 30.0))
    path = _write_nifti(
        tmp_path / "units.nii.gz",
        np.zeros((3, 4, 5), dtype=np.int16),
        sform=affine,
        sform_code=1,
        qform=affine,
        qform_code=1,
        units=units,
    )
    ours = read_volume_file(path)
    np.testing.assert_allclose(ours.spacing, np.array([2.0, 3.0, 4.0]) * factor, rtol=1e-6)
    np.testing.assert_allclose(ours.origin, np.array([-10.0, -20.0, 30.0]) * factor, rtol=1e-6)
    assert any(units in w for w in ours.warnings)
    spacing, origin, _ = _sitk_geometry(sitk.ReadImage(str(path)))
    np.testing.assert_allclose(ours.spacing, spacing, rtol=1e-5)
    np.testing.assert_allclose(ours.origin, origin, rtol=1e-5, atol=1e-9)


def _expected_lps(affine_ras: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    lps = LPS_TO_RAS @ affine_ras[:3, :]
    spacing = np.linalg.norm(lps[:, :3], axis=0)
    return spacing, lps[:, 3], lps[:, :3] / spacing


SFORM = _ras_affine(OBLIQUE @ np.diag([0.7, 0.9, 3.0]), (-20.0, 35.0, -50.0))
QFORM = _ras_affine(FLIPPED @ np.diag([0.7, 0.9, 3.0]), (5.0, -6.0, 7.0))


def test_qform_only(tmp_path: Path) -> None:
    # The sform fields hold something else, but its code 0 says they mean nothing.
    path = _write_nifti(
        tmp_path / "q.nii.gz",
        np.zeros((4, 5, 6), np.int16),
        sform=SFORM,
        sform_code=0,
        qform=QFORM,
        qform_code=1,
    )
    volume = read_volume_file(path)
    spacing, origin, direction = _expected_lps(QFORM)
    np.testing.assert_allclose(volume.spacing, spacing, rtol=1e-6)
    np.testing.assert_allclose(volume.origin, origin, atol=1e-4)
    np.testing.assert_allclose(volume.direction, direction, atol=1e-6)
    assert np.linalg.det(volume.direction) < 0
    assert volume.warnings == ()


def test_sform_only(tmp_path: Path) -> None:
    path = _write_nifti(
        tmp_path / "s.nii.gz",
        np.zeros((4, 5, 6), np.int16),
        sform=SFORM,
        sform_code=2,
        qform=QFORM,
        qform_code=0,
    )
    volume = read_volume_file(path)
    spacing, origin, direction = _expected_lps(SFORM)
    np.testing.assert_allclose(volume.spacing, spacing, rtol=1e-6)
    np.testing.assert_allclose(volume.origin, origin, atol=1e-4)
    np.testing.assert_allclose(volume.direction, direction, atol=1e-6)
    assert volume.warnings == ()


def test_neither_transform_uses_pixdim_and_warns(tmp_path: Path) -> None:
    path = _write_nifti(
        tmp_path / "none.nii",
        np.zeros((4, 5, 6), np.int16),
        fields={"pixdim": [1.0, 0.5, 0.75, 3.0, 1.0, 1.0, 1.0, 1.0]},
    )
    volume = read_volume_file(path)
    assert volume.spacing == (0.5, 0.75, 3.0)
    assert volume.origin == (0.0, 0.0, 0.0)
    np.testing.assert_array_equal(volume.direction, np.eye(3))
    assert len(volume.warnings) == 1
    assert "orientation unknown" in volume.warnings[0]


def test_disagreeing_sform_and_qform_warn_in_mm_and_use_the_sform(tmp_path: Path) -> None:
    path = _write_nifti(
        tmp_path / "both.nii.gz",
        np.zeros((4, 5, 6), np.int16),
        sform=SFORM,
        sform_code=1,
        qform=QFORM,
        qform_code=1,
    )
    volume = read_volume_file(path)
    spacing, origin, direction = _expected_lps(SFORM)
    np.testing.assert_allclose(volume.origin, origin, atol=1e-4)
    np.testing.assert_allclose(volume.direction, direction, atol=1e-6)
    assert len(volume.warnings) == 1
    assert "mm" in volume.warnings[0]
    assert "sform" in volume.warnings[0] and "qform" in volume.warnings[0]


def test_disagreement_size_is_reported(tmp_path: Path) -> None:
    shifted = SFORM.copy()
    shifted[:3, 3] += (3.0, 0.0, 4.0)  # a pure 5 mm translation
    path = _write_nifti(
        tmp_path / "shift.nii.gz",
        np.zeros((4, 5, 6), np.int16),
        sform=SFORM,
        sform_code=1,
        qform=shifted,
        qform_code=1,
    )
    (warning,) = read_volume_file(path).warnings
    assert "5 mm" in warning


def test_agreeing_sform_and_qform_do_not_warn(tmp_path: Path) -> None:
    path = _write_nifti(
        tmp_path / "same.nii.gz",
        np.zeros((4, 5, 6), np.int16),
        sform=SFORM,
        sform_code=1,
        qform=SFORM,
        qform_code=1,
    )
    assert read_volume_file(path).warnings == ()


def test_nifti2_is_read(tmp_path: Path) -> None:
    original = _volume(FLIPPED)
    one = volume_to_nifti(original)
    two = nib.Nifti2Image(one.get_fdata(dtype=np.float32).astype(np.int16), one.affine)
    two.set_qform(one.affine, code=1)
    two.set_sform(one.affine, code=1)
    path = tmp_path / "two.nii.gz"
    nib.save(two, path)
    _assert_same_volume(read_volume_file(path), original, atol_mm=1e-9)


# ---------------------------------------------------------------------- broken geometry


def test_shear_is_refused(tmp_path: Path) -> None:
    shear = np.array([[1.0, 0.2, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    path = _write_nifti(
        tmp_path / "shear.nii.gz",
        np.zeros((4, 5, 6), np.int16),
        sform=_ras_affine(shear @ np.diag([1.0, 1.0, 2.0]), (0, 0, 0)),
        sform_code=1,
    )
    with pytest.raises(NonOrthonormalAffineError) as error:
        read_volume_file(path)
    _assert_one_line_naming(error, path)
    assert "shear" in str(error.value)
    assert "78.69" in str(error.value)  # the angle between i and j: atan2(1, 0.2)


def test_tiny_non_orthogonality_is_corrected(tmp_path: Path) -> None:
    nearly = np.array([[1.0, 5e-4, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    path = _write_nifti(
        tmp_path / "nearly.nii.gz",
        np.zeros((200, 200, 10), np.int16),
        sform=_ras_affine(nearly, (0, 0, 0)),
        sform_code=1,
    )
    volume = read_volume_file(path)
    np.testing.assert_allclose(volume.direction.T @ volume.direction, np.eye(3), atol=1e-12)
    assert any("perpendicular" in w and "mm" in w for w in volume.warnings)


@pytest.mark.parametrize(
    ("linear", "reason"),
    [
        (np.diag([1.0, 0.0, 1.0]), "spacing of 0"),
        (np.array([[1.0, 1.0, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 1.0]]), "singular"),
        (np.array([[1.0, 2.0, 0.0], [1.0, 2.0, 0.0], [0.0, 0.0, 1.0]]), "singular"),
        (np.diag([1.0, np.nan, 1.0]), "NaN"),
        (np.diag([1.0, 1.0, np.inf]), "NaN or infinite"),
    ],
    ids=["zero-column", "singular-zero-row", "parallel-columns", "nan", "inf"],
)
def test_degenerate_sform_is_refused(tmp_path: Path, linear: np.ndarray, reason: str) -> None:
    path = _write_nifti(
        tmp_path / "bad.nii.gz",
        np.zeros((4, 5, 6), np.int16),
        sform=_ras_affine(linear, (0, 0, 0)),
        sform_code=1,
    )
    with pytest.raises(DegenerateAffineError) as error:
        read_volume_file(path)
    _assert_one_line_naming(error, path)
    assert reason in str(error.value)


def test_nan_origin_is_refused(tmp_path: Path) -> None:
    path = _write_nifti(
        tmp_path / "nan.nii",
        np.zeros((4, 5, 6), np.int16),
        sform=_ras_affine(np.eye(3), (0.0, np.nan, 0.0)),
        sform_code=1,
    )
    with pytest.raises(DegenerateAffineError):
        read_volume_file(path)


@pytest.mark.parametrize("pixdim", [(1.0, 0.0, 1.0), (1.0, -2.0, 1.0), (1.0, np.nan, 1.0)])
def test_bad_qform_pixdim_is_refused_not_fixed(tmp_path: Path, pixdim) -> None:
    # nibabel's loader would silently turn 0 into 1 and -2 into 2.
    path = _write_nifti(
        tmp_path / "pix.nii.gz",
        np.zeros((4, 5, 6), np.int16),
        qform=np.eye(4),
        qform_code=1,
        fields={"pixdim": [1.0, *pixdim, 1.0, 1.0, 1.0, 1.0]},
    )
    with pytest.raises(DegenerateAffineError) as error:
        read_volume_file(path)
    assert "pixdim" in str(error.value)


def test_qfac_zero_counts_as_one(tmp_path: Path) -> None:
    path = _write_nifti(
        tmp_path / "qfac.nii",
        np.zeros((4, 5, 6), np.int16),
        qform=np.diag([2.0, 3.0, 4.0, 1.0]),
        qform_code=1,
        fields={"pixdim": [0.0, 2.0, 3.0, 4.0, 1.0, 1.0, 1.0, 1.0]},
    )
    volume = read_volume_file(path)
    np.testing.assert_allclose(volume.direction, np.diag([-1.0, -1.0, 1.0]))
    assert volume.spacing == (2.0, 3.0, 4.0)


@pytest.mark.parametrize("offset", [np.nan, 100.0])
def test_bad_vox_offset_is_refused(tmp_path: Path, offset: float) -> None:
    path = _write_nifti(
        tmp_path / "offset.nii",
        np.zeros((2, 3, 4), np.int16),
        sform=np.eye(4),
        sform_code=1,
        fields={"vox_offset": offset},
    )
    with pytest.raises(UnsupportedVolumeFileError, match="vox_offset"):
        read_volume_file(path)


def test_zero_pixdim_without_transform_is_refused(tmp_path: Path) -> None:
    path = _write_nifti(
        tmp_path / "pix0.nii",
        np.zeros((4, 5, 6), np.int16),
        fields={"pixdim": [1.0, 1.0, 0.0, 1.0, 1.0, 1.0, 1.0, 1.0]},
    )
    with pytest.raises(DegenerateAffineError):
        read_volume_file(path)


def test_unusable_qform_next_to_sform_is_a_warning(tmp_path: Path) -> None:
    path = _write_nifti(
        tmp_path / "s_badq.nii.gz",
        np.zeros((4, 5, 6), np.int16),
        sform=SFORM,
        sform_code=1,
        qform=np.eye(4),
        qform_code=1,
        fields={"pixdim": [1.0, 0.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0]},
    )
    volume = read_volume_file(path)
    np.testing.assert_allclose(volume.origin, _expected_lps(SFORM)[1], atol=1e-4)
    assert any("qform is unusable" in w for w in volume.warnings)


def test_single_slice_with_zero_slice_spacing_reads(tmp_path: Path) -> None:
    linear = OBLIQUE @ np.diag([0.5, 0.5, 0.0])
    path = _write_nifti(
        tmp_path / "slice.nii.gz",
        np.arange(12, dtype=np.int16).reshape(3, 4, 1),
        sform=_ras_affine(linear, (1.0, 2.0, 3.0)),
        sform_code=1,
    )
    volume = read_volume_file(path)
    assert volume.shape == (1, 4, 3)
    assert volume.spacing[2] == 1.0
    np.testing.assert_allclose(np.linalg.det(volume.direction), 1.0)


# ---------------------------------------------------------------------- voxel types


def test_scl_slope_gives_float32_values(tmp_path: Path) -> None:
    stored = np.arange(-30, 30, dtype=np.int16).reshape(3, 4, 5)
    path = _write_nifti(
        tmp_path / "scaled.nii.gz", stored, sform=np.eye(4), sform_code=1, slope=2.0, inter=-7.5
    )
    volume = read_volume_file(path)
    assert volume.voxels.dtype == np.float32
    np.testing.assert_array_equal(volume.voxels, (2.0 * stored - 7.5).transpose(2, 1, 0))
    assert volume.rescale.slope == 2.0
    assert volume.rescale.intercept == -7.5
    assert volume.rescale.applied


def test_intercept_only_scaling_gives_float32(tmp_path: Path) -> None:
    stored = np.arange(60, dtype=np.uint16).reshape(3, 4, 5)
    path = _write_nifti(
        tmp_path / "inter.nii", stored, sform=np.eye(4), sform_code=1, slope=1.0, inter=-1024.0
    )
    volume = read_volume_file(path)
    assert volume.voxels.dtype == np.float32
    np.testing.assert_array_equal(volume.voxels, (stored - 1024.0).transpose(2, 1, 0))


@pytest.mark.parametrize(
    ("slope", "inter"),
    [(np.nan, np.nan), (0.0, 0.0), (1.0, 0.0), (1.0, np.nan), (0.0, 5.0), (np.inf, 0.0)],
)
def test_identity_scaling_keeps_stored_type(tmp_path: Path, slope: float, inter: float) -> None:
    stored = np.arange(60, dtype=np.int16).reshape(3, 4, 5)
    path = _write_nifti(
        tmp_path / "plain.nii.gz", stored, sform=np.eye(4), sform_code=1, slope=slope, inter=inter
    )
    volume = read_volume_file(path)
    assert volume.voxels.dtype == np.int16
    np.testing.assert_array_equal(volume.voxels, stored.transpose(2, 1, 0))
    assert volume.rescale.slope == 1.0 and volume.rescale.intercept == 0.0


def test_infinite_intercept_is_refused(tmp_path: Path) -> None:
    path = _write_nifti(
        tmp_path / "inf.nii",
        np.zeros((2, 2, 2), np.int16),
        sform=np.eye(4),
        sform_code=1,
        slope=2.0,
        inter=np.inf,
    )
    with pytest.raises(UnsupportedVolumeFileError, match="scl_inter"):
        read_volume_file(path)


@pytest.mark.parametrize("dtype", [np.int16, np.uint16, np.int32, np.float32])
def test_big_endian_keeps_type(tmp_path: Path, dtype: type) -> None:
    stored = np.arange(60).reshape(3, 4, 5).astype(dtype)
    path = _write_nifti(
        tmp_path / "big.nii.gz", stored, sform=np.eye(4), sform_code=1, endianness=">"
    )
    volume = read_volume_file(path)
    assert volume.voxels.dtype == np.dtype(dtype)
    assert volume.voxels.dtype.isnative
    np.testing.assert_array_equal(volume.voxels, stored.transpose(2, 1, 0))


def test_float64_becomes_float32(tmp_path: Path) -> None:
    stored = np.linspace(-1, 1, 60).reshape(3, 4, 5)
    path = _write_nifti(tmp_path / "f64.nii.gz", stored, sform=np.eye(4), sform_code=1)
    volume = read_volume_file(path)
    assert volume.voxels.dtype == np.float32
    np.testing.assert_allclose(volume.voxels, stored.transpose(2, 1, 0), rtol=1e-7)


def test_int64_is_narrowed_when_values_fit_and_refused_otherwise(tmp_path: Path) -> None:
    small = np.arange(-30, 30, dtype=np.int64).reshape(3, 4, 5)
    path = _write_nifti(tmp_path / "i64.nii.gz", small, sform=np.eye(4), sform_code=1)
    volume = read_volume_file(path)
    assert volume.voxels.dtype.itemsize <= 4 and volume.voxels.dtype.kind == "i"
    np.testing.assert_array_equal(volume.voxels, small.transpose(2, 1, 0))

    huge = small * 2**40
    path = _write_nifti(tmp_path / "huge.nii.gz", huge, sform=np.eye(4), sform_code=1)
    with pytest.raises(UnsupportedVolumeFileError, match="32-bit"):
        read_volume_file(path)


@pytest.mark.parametrize(
    ("dtype", "name"),
    [
        (np.dtype([("R", "u1"), ("G", "u1"), ("B", "u1")]), "RGB"),
        (np.dtype([("R", "u1"), ("G", "u1"), ("B", "u1"), ("A", "u1")]), "RGBA"),
        (np.dtype(np.complex64), "complex64"),
        (np.dtype(np.complex128), "complex128"),
    ],
)
def test_unsupported_voxel_types_are_named(tmp_path: Path, dtype: np.dtype, name: str) -> None:
    path = _write_nifti(
        tmp_path / "odd.nii.gz", np.zeros((2, 3, 4), dtype=dtype), sform=np.eye(4), sform_code=1
    )
    with pytest.raises(UnsupportedVolumeFileError) as error:
        read_volume_file(path)
    _assert_one_line_naming(error, path)
    assert name in str(error.value)


def test_unknown_datatype_code_is_refused(tmp_path: Path) -> None:
    path = _write_nifti(
        tmp_path / "code.nii",
        np.zeros((2, 3, 4), np.int16),
        sform=np.eye(4),
        sform_code=1,
        fields={"datatype": 7},
    )
    with pytest.raises(UnsupportedVolumeFileError, match="datatype code 7"):
        read_volume_file(path)


# ---------------------------------------------------------------------- dimensionality


def test_4d_gives_first_volume_and_warns(tmp_path: Path) -> None:
    data = np.stack([np.full((3, 4, 5), t, dtype=np.int16) for t in range(7)], axis=-1)
    data[1, 2, 3, 0] = 99
    path = _write_nifti(tmp_path / "4d.nii.gz", data, sform=SFORM, sform_code=1)
    volume = read_volume_file(path)
    assert volume.shape == (5, 4, 3)
    np.testing.assert_array_equal(volume.voxels, data[..., 0].transpose(2, 1, 0))
    assert volume.voxels[3, 2, 1] == 99
    (warning,) = volume.warnings
    assert "7 volumes" in warning and "6 ignored" in warning


def test_4d_with_one_volume_does_not_warn(tmp_path: Path) -> None:
    data = np.ones((3, 4, 5, 1), dtype=np.int16)
    path = _write_nifti(tmp_path / "4d1.nii", data, sform=SFORM, sform_code=1)
    volume = read_volume_file(path)
    assert volume.shape == (5, 4, 3)
    assert volume.warnings == ()


def test_2d_becomes_one_slice(tmp_path: Path) -> None:
    data = np.arange(12, dtype=np.uint8).reshape(3, 4)
    path = _write_nifti(
        tmp_path / "2d.nii.gz",
        data,
        sform=_ras_affine(np.diag([0.5, 0.25, 0.0]), (0, 0, 0)),
        sform_code=1,
    )
    volume = read_volume_file(path)
    assert volume.shape == (1, 4, 3)
    np.testing.assert_array_equal(volume.voxels[0], data.T)
    assert volume.spacing == (0.5, 0.25, 1.0)


def test_vector_image_is_refused(tmp_path: Path) -> None:
    data = np.zeros((3, 4, 5, 1, 3), dtype=np.float32)
    path = _write_nifti(tmp_path / "vec.nii.gz", data, sform=np.eye(4), sform_code=1)
    with pytest.raises(UnsupportedVolumeFileError, match="5-D"):
        read_volume_file(path)


def test_declared_size_limit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _write_nifti(
        tmp_path / "big.nii", np.zeros((10, 10, 10), np.int16), sform=np.eye(4), sform_code=1
    )
    monkeypatch.setattr(volume_files, "MAX_VOLUME_BYTES", 1000)
    with pytest.raises(ImageTooLargeError):
        read_volume_file(path)


# ---------------------------------------------------------------------- damaged NIfTI files


def _good_nifti_bytes(tmp_path: Path, name: str) -> bytes:
    path = tmp_path / name
    nib.save(volume_to_nifti(_volume(OBLIQUE, shape=(20, 30, 40))), path)
    return path.read_bytes()


@pytest.mark.parametrize("fraction", [0.05, 0.5, 0.99])
def test_truncated_nii_gz(tmp_path: Path, fraction: float) -> None:
    content = _good_nifti_bytes(tmp_path, "good.nii.gz")
    path = tmp_path / "cut.nii.gz"
    path.write_bytes(content[: int(len(content) * fraction)])
    with pytest.raises(TruncatedFileError) as error:
        read_volume_file(path)
    _assert_one_line_naming(error, path)


def test_truncated_nii(tmp_path: Path) -> None:
    content = _good_nifti_bytes(tmp_path, "good.nii")
    path = tmp_path / "cut.nii"
    path.write_bytes(content[: len(content) - 100])
    with pytest.raises(TruncatedFileError) as error:
        read_volume_file(path)
    _assert_one_line_naming(error, path)
    header_only = tmp_path / "header.nii"
    header_only.write_bytes(content[:200])
    with pytest.raises(TruncatedFileError):
        read_volume_file(header_only)


def test_damaged_gzip_is_detected(tmp_path: Path) -> None:
    content = bytearray(_good_nifti_bytes(tmp_path, "good.nii.gz"))
    content[-8] ^= 0xFF  # the CRC32 in the gzip trailer
    path = tmp_path / "crc.nii.gz"
    path.write_bytes(bytes(content))
    with pytest.raises(UnsupportedVolumeFileError) as error:
        read_volume_file(path)
    _assert_one_line_naming(error, path)
    assert "gzip" in str(error.value)


@pytest.mark.parametrize("name", ["x.nii", "x.nii.gz"])
def test_text_file_named_nifti(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_text("this is not an image\n" * 40)
    with pytest.raises(UnsupportedVolumeFileError) as error:
        read_volume_file(path)
    _assert_one_line_naming(error, path)


@pytest.mark.parametrize("name", ["empty.nii", "empty.nii.gz"])
def test_empty_file(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_bytes(gzip.compress(b"") if name.endswith(".gz") else b"")
    with pytest.raises(UnsupportedVolumeFileError):
        read_volume_file(path)


def test_misnamed_uncompressed_nii_gz_is_read(tmp_path: Path) -> None:
    content = _good_nifti_bytes(tmp_path, "good.nii")
    path = tmp_path / "plain.nii.gz"
    path.write_bytes(content)
    assert read_volume_file(path).shape == (20, 30, 40)


def test_pair_header_is_refused(tmp_path: Path) -> None:
    path = _write_nifti(
        tmp_path / "pair.nii",
        np.zeros((2, 3, 4), np.int16),
        sform=np.eye(4),
        sform_code=1,
        fields={"magic": b"ni1"},
    )
    with pytest.raises(UnsupportedVolumeFileError, match="ni1"):
        read_volume_file(path)


# ---------------------------------------------------------------------- NRRD / MetaImage


def _write_mha(path: Path, header_lines: dict[str, str], payload: bytes) -> Path:
    fields = {
        "ObjectType": "Image",
        "NDims": "3",
        "BinaryData": "True",
        "BinaryDataByteOrderMSB": "False",
        "TransformMatrix": "1 0 0 0 1 0 0 0 1",
        "Offset": "0 0 0",
        "ElementSpacing": "1 1 1",
        "DimSize": "2 2 2",
        "ElementType": "MET_SHORT",
    }
    fields.update(header_lines)
    text = "".join(f"{k} = {v}\n" for k, v in fields.items()) + "ElementDataFile = LOCAL\n"
    path.write_bytes(text.encode() + payload)
    return path


SHORTS = np.arange(8, dtype="<i2").tobytes()


def test_sheared_metaimage_is_refused(tmp_path: Path) -> None:
    path = _write_mha(tmp_path / "shear.mha", {"TransformMatrix": "1 0 0 0.2 1 0 0 0 1"}, SHORTS)
    with pytest.raises(NonOrthonormalAffineError) as error:
        read_volume_file(path)
    _assert_one_line_naming(error, path)


def test_sheared_nrrd_is_refused(tmp_path: Path) -> None:
    header = (
        "NRRD0004\ntype: short\ndimension: 3\nspace: left-posterior-superior\nsizes: 2 2 2\n"
        "space directions: (1,0,0) (0.2,1,0) (0,0,1)\nkinds: domain domain domain\n"
        "endian: little\nencoding: raw\nspace origin: (0,0,0)\n\n"
    )
    path = tmp_path / "shear.nrrd"
    path.write_bytes(header.encode() + SHORTS)
    with pytest.raises(NonOrthonormalAffineError):
        read_volume_file(path)


@pytest.mark.parametrize(
    "fields",
    [{"ElementSpacing": "0 1 1"}, {"TransformMatrix": "1 0 0 1 0 0 0 0 1"}],
    ids=["zero-spacing", "singular"],
)
def test_degenerate_metaimage_is_refused(tmp_path: Path, fields: dict[str, str]) -> None:
    path = _write_mha(tmp_path / "bad.mha", fields, SHORTS)
    with pytest.raises(DegenerateAffineError) as error:
        read_volume_file(path)
    _assert_one_line_naming(error, path)


def test_metaimage_modality(tmp_path: Path) -> None:
    path = _write_mha(tmp_path / "ct.mha", {"Modality": "MET_MOD_CT"}, SHORTS)
    assert read_volume_file(path).modality == "CT"
    path = _write_mha(tmp_path / "other.mha", {"Modality": "MET_MOD_OTHER"}, SHORTS)
    assert read_volume_file(path).modality == ""


def test_nrrd_without_space_warns(tmp_path: Path) -> None:
    header = (
        "NRRD0004\ntype: short\ndimension: 3\nsizes: 2 2 2\nspacings: 1 2 3\n"
        "endian: little\nencoding: raw\n\n"
    )
    path = tmp_path / "nospace.nrrd"
    path.write_bytes(header.encode() + SHORTS)
    volume = read_volume_file(path)
    assert volume.spacing == (1.0, 2.0, 3.0)
    assert any("orientation unknown" in w for w in volume.warnings)


def test_nrrd_in_ras_space_is_converted_by_itk(tmp_path: Path) -> None:
    header = (
        "NRRD0004\ntype: short\ndimension: 3\nspace: right-anterior-superior\nsizes: 2 2 2\n"
        "space directions: (1,0,0) (0,2,0) (0,0,3)\nspace origin: (10,20,30)\n"
        "endian: little\nencoding: raw\n\n"
    )
    path = tmp_path / "ras.nrrd"
    path.write_bytes(header.encode() + SHORTS)
    volume = read_volume_file(path)
    assert volume.origin == (-10.0, -20.0, 30.0)
    np.testing.assert_allclose(volume.direction, np.diag([-1.0, -1.0, 1.0]))
    assert volume.warnings == ()


@pytest.mark.parametrize("suffix", [".mha", ".nrrd"])
def test_itk_4d_gives_first_volume(tmp_path: Path, suffix: str) -> None:
    frames = [sitk.GetImageFromArray(np.full((2, 3, 4), t, dtype=np.int16)) for t in range(3)]
    path = tmp_path / f"4d{suffix}"
    sitk.WriteImage(sitk.JoinSeries(frames), str(path))
    volume = read_volume_file(path)
    assert volume.shape == (2, 3, 4)
    assert np.all(volume.voxels == 0)
    assert any("3 volumes" in w and "2 ignored" in w for w in volume.warnings)


@pytest.mark.parametrize("suffix", [".mha", ".nrrd"])
def test_itk_2d_becomes_one_slice(tmp_path: Path, suffix: str) -> None:
    image = sitk.GetImageFromArray(np.arange(12, dtype=np.int16).reshape(3, 4))
    image.SetSpacing((0.5, 0.7))
    image.SetOrigin((1.0, 2.0))
    path = tmp_path / f"2d{suffix}"
    sitk.WriteImage(image, str(path))
    volume = read_volume_file(path)
    assert volume.shape == (1, 3, 4)
    assert volume.spacing == (0.5, 0.7, 1.0)
    assert volume.origin == (1.0, 2.0, 0.0)


def test_itk_float64_becomes_float32_and_int64_is_narrowed(tmp_path: Path) -> None:
    doubles = sitk.GetImageFromArray(np.linspace(0, 1, 24).reshape(2, 3, 4))
    sitk.WriteImage(doubles, str(tmp_path / "f64.mha"))
    assert read_volume_file(tmp_path / "f64.mha").voxels.dtype == np.float32
    longs = sitk.GetImageFromArray(np.arange(24, dtype=np.int64).reshape(2, 3, 4))
    sitk.WriteImage(longs, str(tmp_path / "i64.nrrd"))
    volume = read_volume_file(tmp_path / "i64.nrrd")
    assert volume.voxels.dtype.itemsize <= 4
    np.testing.assert_array_equal(volume.voxels, np.arange(24).reshape(2, 3, 4))


@pytest.mark.parametrize("suffix", [".mha", ".nrrd"])
def test_itk_vector_and_complex_are_refused(tmp_path: Path, suffix: str) -> None:
    rgb = sitk.Image([2, 2, 2], sitk.sitkVectorUInt8, 3)
    path = tmp_path / f"rgb{suffix}"
    sitk.WriteImage(rgb, str(path))
    with pytest.raises(UnsupportedVolumeFileError, match="vector of 8-bit unsigned"):
        read_volume_file(path)


@pytest.mark.parametrize("suffix", [".mha", ".nrrd"])
def test_itk_truncated(tmp_path: Path, suffix: str) -> None:
    good = tmp_path / f"good{suffix}"
    sitk.WriteImage(volume_to_sitk(_volume(OBLIQUE, shape=(10, 20, 30))), str(good))
    content = good.read_bytes()
    path = tmp_path / f"cut{suffix}"
    path.write_bytes(content[: len(content) // 2])
    with pytest.raises(TruncatedFileError) as error:
        read_volume_file(path)
    _assert_one_line_naming(error, path)


@pytest.mark.parametrize("name", ["x.mha", "x.nrrd", "x.mhd", "x.nhdr"])
def test_text_file_named_itk_format(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_text("this is not an image\n")
    with pytest.raises(UnsupportedVolumeFileError) as error:
        read_volume_file(path)
    _assert_one_line_naming(error, path)
    assert "sitk::ERROR" not in str(error.value) and ".cxx" not in str(error.value)


def test_detached_header_with_missing_data_file(tmp_path: Path) -> None:
    path = tmp_path / "volume.mhd"
    sitk.WriteImage(volume_to_sitk(_volume(OBLIQUE)), str(path))
    (tmp_path / "volume.raw").unlink()
    with pytest.raises(UnsupportedVolumeFileError) as error:
        read_volume_file(path)
    _assert_one_line_naming(error, path)


# ---------------------------------------------------------------------- real data (mricron-data)


def _mricron(name: str) -> Path:
    path = MRICRON_TEMPLATES / name
    if not path.is_file():
        pytest.skip(NO_MRICRON)
    return path


def _mricron_templates() -> list[str]:
    return sorted(p.name for p in MRICRON_TEMPLATES.glob("*.nii.gz")) or ["ch2.nii.gz"]


@pytest.mark.external
def test_ch2_loads_as_nibabel_says() -> None:
    path = _mricron("ch2.nii.gz")
    reference = nib.load(path)
    volume = read_volume_file(path)
    assert volume.size_xyz == reference.shape == (181, 217, 181)
    np.testing.assert_allclose(volume.spacing, reference.header.get_zooms()[:3])
    assert volume.voxels.dtype == reference.get_data_dtype() == np.uint8
    np.testing.assert_array_equal(volume.voxels, np.asarray(reference.dataobj).transpose(2, 1, 0))
    assert volume.source.kind == "nifti"
    assert volume.warnings == ()


@pytest.mark.external
@pytest.mark.parametrize("name", ["ch2.nii.gz", "ch2better.nii.gz", "inia19-t1-brain.nii.gz"])
def test_real_file_geometry_matches_simpleitk(name: str) -> None:
    # These have only an sform, or an sform and qform that agree, so both readers must agree.
    path = _mricron(name)
    volume = read_volume_file(path)
    image = sitk.ReadImage(str(path))
    spacing, origin, direction = _sitk_geometry(image)
    np.testing.assert_allclose(volume.spacing, spacing, rtol=1e-6)
    np.testing.assert_allclose(volume.origin, origin, atol=1e-4)
    np.testing.assert_allclose(volume.direction, direction, atol=1e-6)
    np.testing.assert_array_equal(volume.voxels, sitk.GetArrayFromImage(image))


@pytest.mark.external
@pytest.mark.parametrize("name", _mricron_templates())
def test_every_template_matches_nibabel_affine(name: str) -> None:
    path = _mricron(name)
    reference = nib.load(path)
    volume = read_volume_file(path)
    assert volume.size_xyz == reference.shape[:3]
    corners = np.array([[0, 0, 0], [n - 1 for n in reference.shape[:3]], [3, 5, 7]], float)
    expected = nib.affines.apply_affine(reference.affine, corners) @ LPS_TO_RAS.T
    np.testing.assert_allclose(volume.index_to_world(corners), expected, atol=1e-3)


@pytest.mark.external
def test_real_file_with_disagreeing_forms_warns() -> None:
    # AICHAmc.nii.gz: sform and qform (both code 2) differ by a translation of 126 mm in y and
    # 72 mm in z; SimpleITK takes the qform, nibabel and radview the sform.
    path = _mricron("AICHAmc.nii.gz")
    volume = read_volume_file(path)
    (warning,) = volume.warnings
    assert "mm" in warning and "sform" in warning
    assert volume.origin == (-90.0, 126.0, -72.0)
