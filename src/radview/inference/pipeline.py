"""Liver/tumour segmentation: preprocess a Volume as its model's manifest says, run the model
slice by slice in batches, and put the labels back on the source grid.

Long work (DESIGN rule 4): :func:`segment` is a pure function with ``progress(done, total)``
(throttled, per batch) and ``cancel()`` (polled between batches, raises
:class:`~radview.core.errors.LoadCancelled`).

Preprocessing (in this order)
-----------------------------
1. **Non-finite voxels** (NaN/inf, possible in NIfTI) are replaced by the window minimum (the
   image minimum when the manifest has no window), with a warning.
2. **Body crop** (CT only, to save work): voxels above :data:`BODY_THRESHOLD_HU` (-500 HU) form
   the body mask; its largest 26-connected component (found on an in-plane subsampled mask
   for bounded memory) gives a bounding box, widened by :data:`BODY_MARGIN_VOXELS` on each side.
   Only that box is processed; everything outside it is background. No body -> no crop.
3. **Resampling** with SimpleITK (linear) to the manifest's ``input.spacing_mm``: in-plane for
   two values, in-plane and through-plane for three, onto a patient-aligned axial grid (LPS
   identity direction: rows anterior to posterior, columns patient right to left, slices
   inferior to superior) centred on the old one, so a NIfTI stored flipped or a series stored
   superior to inferior reaches the model in the orientation it was trained in. Skipped when
   the grid already is that grid (identity direction, spacing within 1e-3 mm). A manifest with
   ``input.antialias = true`` first has each slice smoothed in-plane (:func:`antialias_sigmas`),
   so a model pixel averages the source pixels it covers, as a coarser reconstruction would.
4. **Normalisation** from the manifest: clip to ``[window_low, window_high]`` when given, then
   map the window linearly onto ``scale``, or subtract ``mean`` and divide by ``std``.
5. **Neighbouring slices** (2.5D): ``channels = 2k + 1`` slices centred on each slice; slices
   beyond the first/last are replaced by the first/last (edge replication).
6. **Pad or crop** each slice to the model's ``[H, W]``, centred: a smaller image is padded
   with the normalised window minimum (air); a larger one is centre-cropped with a warning
   (the part outside is left as background).

Inference runs ``batch_size`` slices at a time; each batch's logits are reduced at once to
uint8 probabilities of the foreground classes (softmax unless the manifest says the output
already is probabilities; 255 = 1), so at most one batch of logits is ever held.

Putting back and post-processing
--------------------------------
Un-pad/un-crop, resample each foreground class's probability linearly to the (cropped) source
grid, inside the box where a foreground class can win, and take the most probable class there
(background's probability is 1 minus the rest). Label edges thus fall where the probabilities
cross, between model voxels, instead of on the model grid's 2 mm staircase that nearest-
neighbour label resampling gave. Then, on the source grid:

* **largest component**: the largest 26-connected component of liver + tumour (tumour counts
  as liver for connectivity) is kept; everything else becomes background;
* **tumour inside the liver**: tumour voxels are kept only inside the liver envelope (the liver
  label with its holes filled, slice by slice and in 3D) dilated by
  :data:`TUMOUR_MARGIN_MM` (2 mm, an ellipsoid in voxels from the spacing); others become
  background. A lesion bulging out of the liver by more than 2 mm is trimmed to that margin;
* **specks**: tumour components smaller than :data:`TUMOUR_MIN_VOLUME_MM3` become liver;
* **hole filling**: background enclosed by liver + tumour within an axial slice becomes liver
  (vessels, partial-volume gaps);
* **lesion filter** (only when the manifest has ``[lesion_filter]``): each remaining tumour
  component gets a probability of being a real lesion from its size, the model's tumour
  probability inside it, its contrast to the liver around it, its shape and its place at the
  liver's edge (:mod:`radview.inference.lesion_filter`); below the manifest's threshold it
  becomes liver, and ``SegmentationResult.set_aside`` says where it was (for the user to
  look at).

An empty result (no liver) is not an error here; the caller reports "no liver found".
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from radview.core.errors import LoadCancelled, RadviewError
from radview.core.labelmap import LiverLabel
from radview.core.volume import Rescale, Volume
from radview.inference.lesion_filter import SetAside, filter_lesions
from radview.inference.manifest import ModelManifest, OutputKind
from radview.inference.registry import RegisteredModel, check_modality
from radview.inference.runtime import SessionCache

__all__ = [
    "BODY_THRESHOLD_HU",
    "BODY_MARGIN_VOXELS",
    "TUMOUR_MARGIN_MM",
    "TUMOUR_MIN_VOLUME_MM3",
    "UnsupportedModelError",
    "SegmentationResult",
    "SetAsideCandidate",
    "segment",
    "postprocess_liver",
    "segments_tumour",
    "labels_from_foreground",
    "ModelGridImage",
    "to_model_grid",
    "antialias_sigmas",
    "normalise_intensities",
]

ProgressCallback = Callable[[int, int], None]
CancelCallback = Callable[[], bool]

#: CT voxels above this (HU) are "body" for the crop; air and lung-free background are below.
BODY_THRESHOLD_HU = -500.0
#: Voxels added around the body's bounding box on each side (interpolation support).
BODY_MARGIN_VOXELS = 2
#: Tumour voxels farther than this outside the (hole-filled) liver are removed.
TUMOUR_MARGIN_MM = 2.0
#: Tumour components smaller than this (mm^3, a 7.8 mm sphere) become liver. Chosen on the
#: validation phantoms, never the test set, by the rule in ``python -m training.tune_postprocess``
#: (the table is in the liver-tumor-seg model card): for the shipped U-Net it halves the
#: false-positive lesions there and loses one of 82 lesions of 10 mm or more. Smaller lesions
#: are not reported.
TUMOUR_MIN_VOLUME_MM3 = 250.0
#: Progress is reported at most this often (seconds), plus once at the end.
PROGRESS_INTERVAL_S = 0.05
_SPACING_TOLERANCE_MM = 1e-3
_BODY_MASK_TARGET = 128  # the body mask is subsampled in-plane to about this many voxels
_LIVER_NAMES = frozenset({"liver"})
_TUMOUR_NAMES = frozenset({"tumor", "tumour", "lesion", "liver tumor", "liver tumour"})


class UnsupportedModelError(RadviewError):
    """A registered model this pipeline cannot run (3D/sequence layout, no liver label)."""


@dataclass(frozen=True)
class SegmentationResult:
    """Labels (uint8, 0 background, 1 liver, 2 tumour) on the source grid and how they came."""

    labels: Volume
    provider: str
    seconds: float
    fallback_reason: str | None = None
    warnings: tuple[str, ...] = field(default_factory=tuple)
    #: (z, y, x) uint8 (255 = 1) on the source grid, only when asked for
    tumour_probability: np.ndarray | None = None
    #: tumour components the manifest's lesion filter turned into liver, most likely lesion
    #: first (None: no filter ran)
    set_aside: tuple[SetAsideCandidate, ...] | None = None

    @property
    def has_liver(self) -> bool:
        return bool(np.any(self.labels.voxels == LiverLabel.LIVER))

    @property
    def lesions_set_aside(self) -> int | None:
        """How many candidates the lesion filter set aside (None: no filter ran)."""
        return None if self.set_aside is None else len(self.set_aside)


@dataclass(frozen=True)
class SetAsideCandidate:
    """A tumour candidate the lesion filter set aside (labelled liver), for the user to look
    at: its centre (LPS mm), the source slice (array axis 0) it lies on, its volume and the
    filter's probability that it is a lesion."""

    position_lps: tuple[float, float, float]
    slice_index: int
    volume_ml: float
    lesion_probability: float


def _candidate(volume: Volume, item: SetAside, crop: tuple[slice, ...]) -> SetAsideCandidate:
    z, y, x = (c + s.start for c, s in zip(item.centre_zyx, crop, strict=True))
    position = volume.index_to_world((x, y, z))
    return SetAsideCandidate(tuple(float(v) for v in position), int(round(z)),
                             item.volume_mm3 / 1000.0, item.lesion_probability)


# ---------------------------------------------------------------------------- segment
def segment(
    volume: Volume,
    model: RegisteredModel,
    sessions: SessionCache,
    *,
    device: str = "auto",
    progress: ProgressCallback | None = None,
    cancel: CancelCallback | None = None,
    batch_size: int = 1,
    force: bool = False,
    apply_lesion_filter: bool = True,
    keep_tumour_probability: bool = False,
    tumour_weight: float | None = None,
) -> SegmentationResult:
    """Segment liver and tumour in ``volume`` with ``model`` (see the module docstring).

    Parameters
    ----------
    volume
        The image (HU for CT), any grid.
    model
        A registered segmentation model with an N, C, H, W layout (any axis order).
    sessions
        Where onnxruntime sessions are cached.
    device
        ``"auto"``, ``"cpu"`` or ``"gpu"`` (see :func:`radview.inference.runtime.choose_providers`).
    progress
        ``progress(done, total)`` in model-grid slices, after a batch, at most every 50 ms and
        always at the end.
    cancel
        Polled between batches; True stops with :class:`LoadCancelled`.
    batch_size
        Slices per inference call (1 when the model's batch axis is fixed).
    force
        Run a model on a series of another modality (a warning is recorded).
    apply_lesion_filter
        Apply the manifest's lesion filter, if it has one (False: to fit one, in training).
    keep_tumour_probability
        Return the tumour probability on the source grid too (uint8, 255 = 1).
    tumour_weight
        The tumour probability's weight in the choice of class (see
        :func:`labels_from_foreground`); None: the lesion filter's ``tumour_weight`` when it
        is applied, else 1.

    Returns
    -------
    SegmentationResult
        ``labels`` on ``volume``'s grid; may hold no liver.

    Raises
    ------
    ModalityMismatchError
        The modalities differ and ``force`` is False.
    UnsupportedModelError
        The model's layout or labels are not those of a 2D/2.5D liver segmentation model.
    LoadCancelled
        ``cancel()`` returned True.
    InferenceError
        onnxruntime failed.
    """
    started = time.perf_counter()
    manifest = model.manifest
    warnings: list[str] = []
    mismatch = check_modality(model, volume.modality, force)
    if mismatch:
        warnings.append(mismatch)
    lut = _label_lookup(manifest)
    layout = manifest.input.layout
    if set(layout) != set("NCHW"):
        raise UnsupportedModelError(f"model {manifest.id}: input layout {layout} is not supported "
                                    "by the slice pipeline (needs N, C, H, W)")
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    if "N" not in manifest.input.dynamic_axes:
        batch_size = 1

    prepared = _prepare(volume, manifest.input.spacing_mm, manifest.normalization.window_low,
                        ct=_is_ct(volume, manifest), warnings=warnings,
                        antialias=manifest.input.antialias)
    fill_hu, crop = prepared.fill_hu, prepared.crop
    source_grid, model_grid, resampled = prepared.source_grid, prepared.model_grid, prepared.hu
    del prepared  # its image would otherwise outlive inference (peak memory)

    session = sessions.open(model.onnx_path, device)
    foreground, provider, fallback = _infer(
        resampled, manifest, session, fill_hu, batch_size, progress, cancel, warnings)
    del resampled

    labels = np.zeros(volume.shape, np.uint8)
    lesion_filter = manifest.lesion_filter if apply_lesion_filter else None
    # the tumour probability on the source grid inside the body crop, for the lesion filter
    # (uint8, 255 = 1; the whole grid only when the caller keeps it)
    tumour_channel = _tumour_channel(lut)
    tumour_probability = probability_out = None
    if tumour_channel is not None and keep_tumour_probability:
        tumour_probability = np.zeros(volume.shape, np.uint8)
        probability_out = tumour_probability[crop]
    elif tumour_channel is not None and lesion_filter is not None:
        probability_out = np.zeros(labels[crop].shape, np.uint8)
    weight = (tumour_weight if tumour_weight is not None else
              lesion_filter.tumour_weight if lesion_filter is not None else 1.0)
    weights = None
    if tumour_channel is not None and weight != 1.0:
        weights = np.ones(foreground.shape[0], np.float32)
        weights[tumour_channel] = weight
    if model_grid is not source_grid:  # straight into the source grid: no second full copy
        _resample_foreground_into(foreground, model_grid, source_grid, lut, labels[crop],
                                  tumour_channel=tumour_channel, probability_out=probability_out,
                                  weights=weights)
    else:
        labels[crop] = lut[labels_from_foreground(foreground, weights)]
        if probability_out is not None:
            probability_out[...] = foreground[tumour_channel]
    del foreground
    _postprocess_into(labels[crop], volume.spacing)
    set_aside = None
    if lesion_filter is not None and probability_out is not None:
        found = filter_lesions(labels[crop], volume.voxels[crop], probability_out,
                               volume.spacing, lesion_filter)
        set_aside = tuple(_candidate(volume, item, crop) for item in found)
    label_volume = volume.with_voxels(labels, rescale=Rescale(unit=""), warnings=(),
                                      display_inverted=False)
    return SegmentationResult(label_volume, provider, time.perf_counter() - started, fallback,
                              tuple(warnings), tumour_probability, set_aside)


# ---------------------------------------------------------------------------- preprocessing
@dataclass(frozen=True)
class ModelGridImage:
    """A volume on a model's grid: ``hu`` (z, H, W) float32, and the labels there when given.

    Used by the staging and triage pipelines and by ``training/`` (so a model is trained on
    exactly the preprocessing it will get). ``source_slice[k]`` is the source volume's slice
    index (voxels axis 0) that model slice ``k`` lies nearest to.
    """

    hu: np.ndarray
    labels: np.ndarray | None
    fill_hu: float
    source_slice: np.ndarray


def to_model_grid(
    volume: Volume,
    spacing_mm: tuple[float, ...],
    size_hw: tuple[int, int],
    *,
    labels: np.ndarray | None = None,
    window_low: float | None = None,
    warnings: list[str] | None = None,
    antialias: bool = False,
) -> ModelGridImage:
    """Steps 1-3 and 6 of the module docstring: non-finite fill, body crop (CT), resampling to
    ``spacing_mm`` (SimpleITK, linear; labels nearest) and a centred pad/crop to ``size_hw``.

    Intensities stay in the volume's units (HU); normalisation is the caller's (manifest's).
    ``labels`` (same shape as the volume) are carried along on the same grid. ``antialias``:
    smooth in-plane before downsampling (the manifest's ``input.antialias``).
    """
    is_ct = (volume.modality or "CT").upper() == "CT"
    prepared = _prepare(volume, tuple(spacing_mm), window_low, ct=is_ct, warnings=warnings,
                        antialias=antialias)
    cropped, fill_hu = prepared.hu, prepared.fill_hu
    crop, source_grid, model_grid = prepared.crop, prepared.source_grid, prepared.model_grid
    cropped_labels = None
    if labels is not None:
        cropped_labels = np.asarray(labels, np.uint8)[crop]
        if model_grid is not source_grid:
            cropped_labels = _resample_slabs(cropped_labels, source_grid, model_grid,
                                             linear=False, fill=0, dtype=np.uint8)
    depth, rows, columns = cropped.shape
    height, width = size_hw
    src_y, dst_y = _placement(rows, height)
    src_x, dst_x = _placement(columns, width)
    hu = np.full((depth, height, width), fill_hu, np.float32)
    hu[:, dst_y, dst_x] = cropped[:, src_y, src_x]
    out_labels = None
    if cropped_labels is not None:
        out_labels = np.zeros((depth, height, width), np.uint8)
        out_labels[:, dst_y, dst_x] = cropped_labels[:, src_y, src_x]
    return ModelGridImage(hu, out_labels, fill_hu, _source_slices(model_grid, source_grid)
                          + crop[0].start)


def _source_slices(model: _Grid, source: _Grid) -> np.ndarray:
    """For each model slice, the nearest source slice index (axis 0) at the grid's centre."""
    depth, rows, columns = model.shape
    k = np.arange(depth, dtype=float)
    index = np.stack([np.full(depth, (columns - 1) / 2), np.full(depth, (rows - 1) / 2), k], 1)
    world = np.asarray(model.origin) + (index * np.asarray(model.spacing)) @ \
        np.asarray(model.direction, float).T
    to_index = np.linalg.inv(np.asarray(source.direction, float) * np.asarray(source.spacing))
    source_index = (world - np.asarray(source.origin)) @ to_index.T
    return np.clip(np.rint(source_index[:, 2]), 0, source.shape[0] - 1).astype(np.int64)


@dataclass(frozen=True)
class _Grid:
    shape: tuple[int, int, int]  # (z, y, x)
    spacing: tuple[float, float, float]  # (x, y, z)
    origin: tuple[float, float, float]
    direction: np.ndarray


def _is_ct(volume: Volume, manifest: ModelManifest) -> bool:
    modality = (volume.modality or manifest.modality).upper()
    return modality == "CT"


def segments_tumour(manifest: ModelManifest) -> bool:
    """Whether one of the model's labels is a liver tumour (by the names the pipeline maps)."""
    return any(name.strip().lower() in _TUMOUR_NAMES for name in manifest.labels.values())


def _tumour_channel(lut: np.ndarray) -> int | None:
    """The foreground channel (model class - 1) that is tumour, or None."""
    hits = np.flatnonzero(lut[1:] == LiverLabel.TUMOUR)
    return int(hits[0]) if hits.size else None


def _label_lookup(manifest: ModelManifest) -> np.ndarray:
    """Model output value -> radview label (1 liver, 2 tumour, 0 anything else)."""
    lut = np.zeros(256, np.uint8)
    for value, name in manifest.labels.items():
        key = name.strip().lower()
        if key in _LIVER_NAMES:
            lut[value] = LiverLabel.LIVER
        elif key in _TUMOUR_NAMES:
            lut[value] = LiverLabel.TUMOUR
    if not np.any(lut == LiverLabel.LIVER):
        raise UnsupportedModelError(f"model {manifest.id}: its labels name no 'liver' "
                                    f"({', '.join(manifest.labels.values())})")
    return lut


def _body_box(image: np.ndarray) -> tuple[slice, slice, slice] | None:
    """Bounding box of the largest connected body component (> -500 HU), with a margin."""
    z, y, x = image.shape
    step = max(1, math.ceil(max(y, x) / _BODY_MASK_TARGET))
    mask = image[:, ::step, ::step] > BODY_THRESHOLD_HU
    labelled, count = ndimage.label(mask, structure=np.ones((3, 3, 3), bool))
    if count == 0:
        return None
    sizes = np.bincount(labelled.ravel())
    sizes[0] = 0
    largest = int(np.argmax(sizes))
    box = ndimage.find_objects((labelled == largest).astype(np.uint8))[0]
    margin = BODY_MARGIN_VOXELS
    return (
        slice(max(0, box[0].start - margin), min(z, box[0].stop + margin)),
        slice(max(0, box[1].start * step - margin - step), min(y, box[1].stop * step + margin)),
        slice(max(0, box[2].start * step - margin - step), min(x, box[2].stop * step + margin)),
    )


def _model_grid(grid: _Grid, spacing_mm: tuple[float, ...]) -> _Grid:
    """The axial, patient-aligned grid at the model's spacing covering ``grid``, centred on it.

    The model grid's direction is the identity (LPS): rows run anterior to posterior, columns
    patient right to left, slices inferior to superior -- the orientation the models were
    trained in -- whatever the source's direction (a NIfTI stored flipped, a sagittal series).
    Through-plane spacing is the model's third value, else the source spacing along the axis
    nearest to the body axis. Returns ``grid`` itself when it already is that grid.
    """
    direction = np.asarray(grid.direction, float)
    source_spacing = np.asarray(grid.spacing, float)
    # for each world axis (x, y, z): the spacing of the source axis most aligned with it
    aligned = source_spacing[np.argmax(np.abs(direction), axis=1)]
    target = np.array([spacing_mm[0], spacing_mm[1],
                       spacing_mm[2] if len(spacing_mm) == 3 else aligned[2]], float)
    if (np.allclose(direction, np.eye(3), atol=1e-4)
            and np.all(np.abs(target - source_spacing) <= _SPACING_TOLERANCE_MM)):
        return grid
    last = np.array(grid.shape[::-1], float) - 1
    corners = np.array([[a, b, c] for a in (0, last[0]) for b in (0, last[1])
                        for c in (0, last[2])])
    world = np.asarray(grid.origin) + (corners * source_spacing) @ direction.T
    low, high = world.min(axis=0), world.max(axis=0)
    new_size = np.maximum(1, np.rint((high - low + aligned) / target)).astype(int)
    origin = (low + high) / 2 - (new_size - 1) * target / 2
    return _Grid(tuple(int(n) for n in new_size[::-1]), tuple(float(t) for t in target),
                 tuple(float(v) for v in origin), np.eye(3))


def _sitk_image(array: np.ndarray, grid: _Grid):
    import SimpleITK as sitk

    image = sitk.GetImageFromArray(np.ascontiguousarray(array), isVector=False)
    image.SetSpacing(tuple(float(s) for s in grid.spacing))
    image.SetOrigin(grid.origin)
    image.SetDirection(tuple(float(v) for v in np.asarray(grid.direction).ravel()))
    return image


def _resample(array: np.ndarray, source: _Grid, target: _Grid, *, linear: bool,
              fill: float) -> np.ndarray:
    import SimpleITK as sitk

    image = _sitk_image(array, source)
    resampled = sitk.Resample(
        image, [int(n) for n in target.shape[::-1]], sitk.Transform(),
        sitk.sitkLinear if linear else sitk.sitkNearestNeighbor,
        target.origin, tuple(float(s) for s in target.spacing),
        tuple(float(v) for v in np.asarray(target.direction).ravel()), float(fill),
        image.GetPixelID())
    return sitk.GetArrayFromImage(resampled)


@dataclass(frozen=True)
class _Prepared:
    hu: np.ndarray  # float32 on model_grid (not yet padded to the model's size)
    fill_hu: float
    crop: tuple[slice, slice, slice]
    source_grid: _Grid
    model_grid: _Grid


def antialias_sigmas(source_spacing_xy: tuple[float, float],
                     model_spacing_xy: tuple[float, float]) -> tuple[float, float]:
    """In-plane Gaussian SDs (rows, columns; in source pixels) smoothed before downsampling by
    ``f = model / source`` spacing: (f - 1) / 2, as scikit-image's ``rescale`` does; 0 where
    the model grid is as fine as the source. Without it a 0.7 mm scan keeps its full pixel
    noise on a 4 mm grid (linear interpolation reads ~4 of ~30 source pixels per model pixel),
    while a scanner's 4 mm reconstruction would average it away."""
    (sx, sy), (mx, my) = source_spacing_xy, model_spacing_xy
    return max(0.0, (my / sy - 1.0) / 2.0), max(0.0, (mx / sx - 1.0) / 2.0)


def _prepare(volume: Volume, spacing_mm: tuple[float, ...], window_low: float | None, *,
             ct: bool, warnings: list[str] | None, antialias: bool = False) -> _Prepared:
    """Steps 1-3 in bounded memory: the volume is never copied whole as float32; slabs of it
    are converted, cleaned of NaN/inf, smoothed in-plane when ``antialias`` (see
    :func:`antialias_sigmas`) and resampled one at a time."""
    voxels = volume.voxels
    bad_total = 0
    if np.issubdtype(voxels.dtype, np.floating):
        finite = np.isfinite(voxels)
        finite_min = float(np.min(voxels, where=finite, initial=np.inf)) if finite.any() else 0.0
        del finite
    else:
        finite_min = float(voxels.min(initial=0))
    fill_hu = float(window_low) if window_low is not None else finite_min
    crop = _body_box(voxels) if ct else None
    if crop is None:
        crop = tuple(slice(0, n) for n in voxels.shape)
    offset_kji = tuple(s.start for s in crop)
    crop_origin = tuple(float(v) for v in volume.index_to_world(offset_kji[::-1]))
    shape = tuple(s.stop - s.start for s in crop)
    source_grid = _Grid(shape, volume.spacing, crop_origin, volume.direction)
    model_grid = _model_grid(source_grid, tuple(spacing_mm))
    cropped = voxels[crop]  # a view
    counter = [0]
    sigma_rows, sigma_columns = (antialias_sigmas(volume.spacing[:2], spacing_mm[:2])
                                 if antialias else (0.0, 0.0))

    def clean(block: np.ndarray) -> np.ndarray:
        out = block.astype(np.float32)
        bad = ~np.isfinite(out)
        if bad.any():
            counter[0] += int(bad.sum())
            out[bad] = fill_hu
        if sigma_rows > 0 or sigma_columns > 0:  # per slice: slabs need no overlap
            out = ndimage.gaussian_filter(out, (0.0, sigma_rows, sigma_columns), mode="nearest",
                                          truncate=3.0)
        return out

    if model_grid is source_grid:
        hu = clean(cropped)
    else:
        hu = _resample_slabs(cropped, source_grid, model_grid, linear=True, fill=fill_hu,
                             dtype=np.float32, convert=clean)
    bad_total = counter[0]
    if bad_total and warnings is not None:
        warnings.append(f"{bad_total} voxel(s) were not numbers (NaN/inf); replaced by "
                        f"{fill_hu:g} before inference")
    return _Prepared(hu, fill_hu, crop, source_grid, model_grid)


#: Model-grid slices resampled per SimpleITK call: bounds the float32 copy of the source.
RESAMPLE_SLAB = 16


def _covering_box(inner: _Grid, outer: _Grid, margin: int = 1
                  ) -> tuple[slice, slice, slice] | None:
    """The (z, y, x) index box of ``outer`` that covers ``inner``'s extent with ``margin``
    voxels to spare (interpolation support), clipped to ``outer``; None when they miss."""
    depth, rows, columns = inner.shape
    corners = np.array([[a, b, c] for a in (0, columns - 1) for b in (0, rows - 1)
                        for c in (0, depth - 1)], float)
    world = np.asarray(inner.origin) + (corners * np.asarray(inner.spacing, float)) @ \
        np.asarray(inner.direction, float).T
    to_index = np.linalg.inv(np.asarray(outer.direction, float) * np.asarray(outer.spacing))
    index = (world - np.asarray(outer.origin)) @ to_index.T  # i, j, k
    limits = np.array(outer.shape[::-1]) - 1
    if np.any(index.max(axis=0) < -margin) or np.any(index.min(axis=0) > limits + margin):
        return None
    low = np.clip(np.floor(index.min(axis=0)).astype(int) - margin, 0, limits)
    high = np.clip(np.ceil(index.max(axis=0)).astype(int) + margin, 0, limits)
    return tuple(slice(int(lo), int(hi) + 1) for lo, hi in zip(low[::-1], high[::-1],
                                                                strict=True))


def _sub_grid(grid: _Grid, box: tuple[slice, slice, slice]) -> _Grid:
    """The part of ``grid`` inside the (z, y, x) index ``box``."""
    start = np.array([box[2].start, box[1].start, box[0].start], float)  # i, j, k
    origin = np.asarray(grid.origin) + np.asarray(grid.direction, float) @ (
        np.asarray(grid.spacing) * start)
    return _Grid(tuple(s.stop - s.start for s in box), grid.spacing,
                 tuple(float(v) for v in origin), grid.direction)


def _slabs(source: _Grid, target: _Grid, slab: int):
    """Per slab of ``slab`` target slices: (target slice range, the slab's grid, the source box
    it needs or None when it lies outside the source)."""
    depth, rows, columns = target.shape
    for start in range(0, depth, slab):
        stop = min(depth, start + slab)
        sub_target = _sub_grid(target, (slice(start, stop), slice(0, rows), slice(0, columns)))
        yield slice(start, stop), sub_target, _covering_box(sub_target, source)


def _resample_slabs(array: np.ndarray, source: _Grid, target: _Grid, *, linear: bool,
                    fill: float, dtype, convert=None, slab: int = RESAMPLE_SLAB,
                    out: np.ndarray | None = None) -> np.ndarray:
    """``_resample`` a slab of ``slab`` target slices at a time, each from only the part of the
    source it needs (one voxel of margin), converted by ``convert`` (default: a plain copy).
    Written into ``out`` (an array or view of the target's shape) when given."""
    out = np.empty(target.shape, dtype) if out is None else out
    for rows, sub_target, box in _slabs(source, target, slab):
        if box is None:
            out[rows] = fill  # this slab lies outside the source
            continue
        block = array[box]
        block = convert(block) if convert is not None else np.ascontiguousarray(block)
        out[rows] = _resample(block, _sub_grid(source, box), sub_target, linear=linear,
                              fill=fill)
    return out


#: Foreground probabilities are kept as uint8, 255 = 1.
_PROBABILITY_SCALE = 255


def labels_from_foreground(foreground: np.ndarray, weights: np.ndarray | None = None
                           ) -> np.ndarray:
    """Model class per voxel from foreground probabilities (F, ...) on the 0-255 scale: the
    most probable of background (255 minus their sum) and the F classes; ties go to
    background, then to the lower class. ``weights`` (F,): each foreground probability is
    multiplied by its weight before the comparison (a tumour weight above 1 makes more
    candidate regions for the lesion filter to judge)."""
    background = _PROBABILITY_SCALE - foreground.sum(axis=0, dtype=np.float32)
    if weights is not None:
        foreground = foreground * np.asarray(weights, np.float32).reshape(
            (-1,) + (1,) * (foreground.ndim - 1))
    best = foreground.argmax(axis=0)
    wins = np.take_along_axis(foreground, best[None], axis=0)[0] > background
    return np.where(wins, best + 1, 0).astype(np.uint8)


def _resample_foreground_into(foreground: np.ndarray, model: _Grid, source: _Grid,
                              lut: np.ndarray, out: np.ndarray, *,
                              tumour_channel: int | None = None,
                              probability_out: np.ndarray | None = None,
                              weights: np.ndarray | None = None) -> None:
    """Labels on ``source`` (written into ``out``, which is zero) from foreground
    probabilities on ``model``: each class's probability is resampled linearly and the most
    probable class taken, so label edges fall between model voxels, where the probabilities
    cross, rather than on the model's 2 mm staircase. Only the box where a foreground class
    can win is resampled. With ``probability_out`` (zero, ``out``'s shape), foreground channel
    ``tumour_channel``'s resampled probability is written there too. ``weights``: see
    :func:`labels_from_foreground`."""
    # Of C classes the winner has at least 1/C, and an interpolated value is a weighted mean
    # of neighbours: a class can only win next to a model voxel where it has 1/C (less one
    # step for the uint8 rounding).
    can_win = _PROBABILITY_SCALE // (foreground.shape[0] + 1) - 1
    if weights is not None:  # a weighted class wins from a lower probability
        can_win = int(can_win / max(1.0, float(np.max(weights))))
    candidates = foreground.max(axis=0) >= can_win
    if not candidates.any():
        return
    inner = tuple(slice(max(0, s.start - 1), min(n, s.stop + 1))
                  for s, n in zip(_box_of(candidates), candidates.shape, strict=True))
    del candidates
    region = _covering_box(_sub_grid(model, inner), source, margin=1)
    if region is None:
        return
    foreground = foreground[(slice(None), *inner)]
    model = _sub_grid(model, inner)
    target = _sub_grid(source, region)
    destination = out[region]
    for rows, sub_target, box in _slabs(model, target, RESAMPLE_SLAB):
        if box is None:
            continue
        sub_model = _sub_grid(model, box)
        channels = np.stack([
            _resample(np.ascontiguousarray(channel[box], np.float32), sub_model, sub_target,
                      linear=True, fill=0.0) for channel in foreground])
        destination[rows] = lut[labels_from_foreground(channels, weights)]
        if probability_out is not None:
            probability_out[region][rows] = np.clip(np.rint(channels[tumour_channel]), 0,
                                                    _PROBABILITY_SCALE)


def normalise_intensities(values: np.ndarray, manifest: ModelManifest) -> np.ndarray:
    """Step 4: the manifest's window clip, then its linear range map or z-score (float32)."""
    norm = manifest.normalization
    out = values
    if norm.window_low is not None and norm.window_high is not None:
        out = np.clip(out, norm.window_low, norm.window_high)
    if norm.scale is not None:
        low, high = float(norm.window_low), float(norm.window_high)  # type: ignore[arg-type]
        factor = (norm.scale[1] - norm.scale[0]) / (high - low)
        out = (out - low) * np.float32(factor) + np.float32(norm.scale[0])
    else:
        out = (out - np.float32(norm.mean)) / np.float32(norm.std)
    return out.astype(np.float32, copy=False)


def _placement(have: int, want: int) -> tuple[slice, slice]:
    """(source slice, destination slice) of a centred pad (have < want) or crop."""
    if have <= want:
        start = (want - have) // 2
        return slice(0, have), slice(start, start + have)
    start = (have - want) // 2
    return slice(start, start + want), slice(0, want)


# ---------------------------------------------------------------------------- inference
def _infer(
    image: np.ndarray,
    manifest: ModelManifest,
    session,
    fill_hu: float,
    batch_size: int,
    progress: ProgressCallback | None,
    cancel: CancelCallback | None,
    warnings: list[str],
) -> tuple[np.ndarray, str, str | None]:
    spec = manifest.input
    depth, rows, columns = image.shape
    height, width = spec.size
    src_y, dst_y = _placement(rows, height)
    src_x, dst_x = _placement(columns, width)
    if rows > height or columns > width:
        sy, sx = spec.spacing_mm[1], spec.spacing_mm[0]
        warnings.append(
            f"the body ({columns * sx:.0f} x {rows * sy:.0f} mm) is larger than the model's field "
            f"of view ({width * sx:.0f} x {height * sy:.0f} mm); only its centre was segmented")
    half = spec.channels // 2
    offsets = np.arange(spec.channels) - half
    pad_value = float(normalise_intensities(np.array([fill_hu], np.float32), manifest)[0])
    axis_order = ["NCHW".index(axis) for axis in spec.layout]
    dtype = np.float16 if spec.dtype == "float16" else np.float32
    foreground = None  # (classes - 1, depth, rows, columns), once the output shows classes
    provider, fallback = session.provider, session.fallback_reason
    last_report = -math.inf
    for start in range(0, depth, batch_size):
        if cancel is not None and cancel():
            raise LoadCancelled("segmentation cancelled")
        stop = min(depth, start + batch_size)
        index = np.clip(np.arange(start, stop)[:, None] + offsets[None, :], 0, depth - 1)
        batch = np.full((stop - start, spec.channels, height, width), pad_value, np.float32)
        batch[:, :, dst_y, dst_x] = normalise_intensities(image[index][:, :, src_y, src_x],
                                                          manifest)
        feed = np.ascontiguousarray(batch.transpose(axis_order).astype(dtype, copy=False))
        result = session.run({spec.name: feed}, [manifest.output.name])
        provider, fallback = result.provider, result.fallback_reason
        logits = np.asarray(result.outputs[manifest.output.name])
        if (logits.ndim != 4 or logits.shape[0] != stop - start or logits.shape[1] < 2
                or logits.shape[2:] != (height, width)):
            raise UnsupportedModelError(
                f"model {manifest.id}: output {manifest.output.name} has shape "
                f"{tuple(logits.shape)}, expected (N, classes >= 2, {height}, {width})")
        if foreground is None:
            foreground = np.zeros((logits.shape[1] - 1, depth, rows, columns), np.uint8)
        # reduced per batch to uint8 probabilities: the logits of the volume are never held
        foreground[:, start:stop, src_y, src_x] = _foreground_probabilities(
            logits[:, :, dst_y, dst_x], manifest.output.kind).transpose(1, 0, 2, 3)
        del logits, batch, feed
        now = time.perf_counter()
        if progress is not None and (stop == depth or now - last_report >= PROGRESS_INTERVAL_S):
            progress(stop, depth)
            last_report = now
    if foreground is None:  # no slices
        foreground = np.zeros((1, depth, rows, columns), np.uint8)
    return foreground, provider, fallback


def _foreground_probabilities(scores: np.ndarray, kind: OutputKind) -> np.ndarray:
    """(N, C, H, W) logits or probabilities -> (N, C - 1, H, W) uint8 probabilities of the
    classes after the first (background), 255 = 1."""
    scores = np.asarray(scores, np.float32)
    if kind is OutputKind.PROBABILITIES:
        probabilities = scores[:, 1:] / np.maximum(scores.sum(axis=1, keepdims=True), 1e-12)
    else:
        shifted = np.exp(scores - scores.max(axis=1, keepdims=True))
        probabilities = shifted[:, 1:] / shifted.sum(axis=1, keepdims=True)
    scaled = probabilities * _PROBABILITY_SCALE + 0.5
    return np.clip(scaled, 0, _PROBABILITY_SCALE).astype(np.uint8)


# ---------------------------------------------------------------------------- post-processing
def postprocess_liver(labels: np.ndarray, spacing_xyz: tuple[float, float, float],
                      min_tumour_mm3: float | None = None) -> np.ndarray:
    """A cleaned copy of ``labels``; see :func:`_postprocess_box`."""
    result = np.asarray(labels, np.uint8).copy()
    _postprocess_into(result, spacing_xyz, min_tumour_mm3)
    return result


def _postprocess_into(labels: np.ndarray, spacing_xyz: tuple[float, float, float],
                      min_tumour_mm3: float | None = None) -> None:
    """Post-process ``labels`` (a uint8 array or view) in place, without a full-size copy."""
    found = _postprocess_box(labels, spacing_xyz, min_tumour_mm3)
    if found is None:
        labels[...] = 0
        return
    box, out = found  # out is a new array: wiping labels does not touch it
    labels[...] = 0
    labels[box] = out


def _postprocess_box(labels: np.ndarray, spacing_xyz: tuple[float, float, float],
                     min_tumour_mm3: float | None = None
                     ) -> tuple[tuple[slice, ...], np.ndarray] | None:
    """Clean a liver/tumour label array (z, y, x) as the module docstring describes: the
    largest 26-connected liver+tumour component, tumour only within :data:`TUMOUR_MARGIN_MM` of
    the hole-filled liver, specks dropped, enclosed holes filled as liver.

    Returns (the organ's bounding box, a new uint8 array of the cleaned labels inside it), or
    None when there is no organ; everything outside the box is background.
    """
    organ = labels > 0
    if not organ.any():
        return None
    # Work inside the organ's bounding box (one voxel wider, so holes and the dilation see the
    # outside): labelling and morphology then cost the liver's size, not the volume's.
    box = tuple(slice(max(0, int(hits[0]) - 1), min(n, int(hits[-1]) + 2)) for hits, n in (
        (np.flatnonzero(organ.any(axis=axes)), labels.shape[axis])
        for axis, axes in ((0, (1, 2)), (1, (0, 2)), (2, (0, 1)))))
    organ = organ[box]
    components, count = ndimage.label(organ, structure=np.ones((3, 3, 3), bool))
    if count > 1:
        sizes = np.bincount(components.ravel())
        sizes[0] = 0
        organ = components == int(np.argmax(sizes))
    del components
    out = np.where(organ, labels[box], 0).astype(np.uint8)
    del organ
    liver = out == LiverLabel.LIVER
    tumour = out == LiverLabel.TUMOUR
    if tumour.any():
        envelope = _fill_holes(liver) | _fill_holes_per_slice(liver)
        # The dilated envelope is only needed at tumour voxels: dilate within the tumour's box
        # widened by the ball's radius, which gives the same values inside the tumour's box.
        ball = _ball(TUMOUR_MARGIN_MM, spacing_xyz)
        near = tuple(slice(max(0, s.start - r), min(n, s.stop + r)) for s, r, n in
                     zip(_box_of(tumour), (b // 2 for b in ball.shape), out.shape, strict=True))
        grown = ndimage.binary_dilation(envelope[near], structure=ball)
        out[near][tumour[near] & ~grown] = 0
        del envelope, grown
        _drop_small_tumours(out, spacing_xyz, min_tumour_mm3)
    filled = _fill_holes_per_slice(out > 0)
    out[filled & (out == 0)] = LiverLabel.LIVER
    return box, out


def _drop_small_tumours(out: np.ndarray, spacing_xyz: tuple[float, float, float],
                        min_tumour_mm3: float | None) -> None:
    """Tumour components (26-connected) smaller than ``min_tumour_mm3`` become liver, in
    place: specks far below a measurable lesion that would count as false detections."""
    minimum = TUMOUR_MIN_VOLUME_MM3 if min_tumour_mm3 is None else min_tumour_mm3
    if minimum <= 0:
        return
    tumour = out == LiverLabel.TUMOUR
    if not tumour.any():
        return
    box = _box_of(tumour)  # label only where the tumour is
    components, count = ndimage.label(tumour[box], structure=np.ones((3, 3, 3), bool))
    out = out[box]
    voxel_mm3 = float(np.prod(spacing_xyz))
    sizes = np.bincount(components.ravel()) * voxel_mm3
    small = sizes < minimum
    small[0] = False
    out[small[components]] = LiverLabel.LIVER


def _box_of(mask: np.ndarray) -> tuple[slice, slice, slice]:
    """The bounding box of a non-empty mask."""
    spans = []
    for others in ((1, 2), (0, 2), (0, 1)):
        hits = np.flatnonzero(np.any(mask, axis=others))
        spans.append(slice(int(hits[0]), int(hits[-1]) + 1))
    return tuple(spans)  # type: ignore[return-value]


def _fill_holes_per_slice(mask: np.ndarray) -> np.ndarray:
    structure = np.zeros((3, 3, 3), bool)
    structure[1] = ndimage.generate_binary_structure(2, 1)  # in-plane only: slice by slice
    return _fill_holes(mask, structure, in_plane=True)


def _fill_holes(mask: np.ndarray, structure: np.ndarray | None = None, *,
                in_plane: bool = False) -> np.ndarray:
    """``ndimage.binary_fill_holes`` by one labelling pass instead of iterated dilations:
    background components (connected by ``structure``, default 6-connectivity) that touch the
    array's border are outside, every other one is a hole. ``in_plane``: only the row/column
    borders count (components do not cross slices then)."""
    if structure is None:
        structure = ndimage.generate_binary_structure(3, 1)
    components, count = ndimage.label(~mask, structure=structure)
    if count == 0:
        return mask.copy()
    faces = [components[:, 0, :], components[:, -1, :], components[:, :, 0],
             components[:, :, -1]]
    if not in_plane:
        faces += [components[0], components[-1]]
    outside = np.zeros(count + 1, bool)
    for face in faces:
        outside[np.unique(face)] = True
    outside[0] = True  # label 0 is the mask itself
    return mask | ~outside[components]


def _ball(radius_mm: float, spacing_xyz: tuple[float, float, float]) -> np.ndarray:
    """An ellipsoidal structuring element (z, y, x) of ``radius_mm`` in voxel units."""
    sx, sy, sz = spacing_xyz
    rz, ry, rx = (int(radius_mm // s) for s in (sz, sy, sx))
    z, y, x = np.ogrid[-rz:rz + 1, -ry:ry + 1, -rx:rx + 1]
    return (z * sz) ** 2 + (y * sy) ** 2 + (x * sx) ** 2 <= radius_mm ** 2 + 1e-9
