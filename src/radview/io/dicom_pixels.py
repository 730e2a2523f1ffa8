"""Pixel data: validate the pixel description, plan the voxel type, decode frames.

Two decode paths:

* **native** (uncompressed little/big endian with a known Pixel Data offset): the frame's bytes
  are read straight from the file at the offset the header scan recorded, so a 500-slice CT
  series costs little more than reading the bytes;
* **codec** (JPEG, JPEG-LS, JPEG 2000, RLE, deflate, anything unusual): pydicom's pixel
  decoders with the pylibjpeg plugins. Their codecs hold the GIL, so the loader runs these in
  worker processes (see :mod:`radview.io.dicom_load`).

Both return *stored* values (masked to Bits Stored, sign-extended); the loader applies the
modality LUT (rescale) and MONOCHROME1 inversion while copying into the volume.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pydicom
from pydicom.pixels import get_decoder
from pydicom.uid import (
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)

from radview.core.errors import (
    DecodeError,
    ImageTooLargeError,
    InvalidPixelDescriptionError,
    PixelDataSizeError,
    UnsupportedTransferSyntaxError,
)
from radview.io.dicom_header import InstanceHeader

__all__ = [
    "MAX_MATRIX",
    "PixelFormat",
    "check_pixel_description",
    "check_decoder_available",
    "pixel_format",
    "read_native_frames",
    "decode_frames",
]

#: Rows/Columns above this are refused before allocating: no CT/MR/PET matrix comes close,
#: and a damaged header claiming 65535 x 65535 would otherwise ask for 8 GB per frame.
MAX_MATRIX = 16384

_NATIVE_SYNTAXES = {ImplicitVRLittleEndian, ExplicitVRLittleEndian, ExplicitVRBigEndian}


@dataclass(frozen=True)
class PixelFormat:
    """How one file's stored samples look in memory."""

    stored_dtype: np.dtype  # what a decoded frame holds (native byte order)
    file_dtype: np.dtype  # byte order as written in the file (native path)
    bits_stored: int
    signed: bool
    stored_min: int
    stored_max: int

    @property
    def frame_bytes_per_pixel(self) -> int:
        return self.file_dtype.itemsize


def check_pixel_description(header: InstanceHeader) -> None:
    """Refuse inconsistent or absurd pixel descriptions before anything is allocated."""
    path = header.path
    if header.rows <= 0 or header.columns <= 0:
        raise InvalidPixelDescriptionError(
            path, f"image matrix {header.rows} x {header.columns} is empty"
        )
    if header.rows > MAX_MATRIX or header.columns > MAX_MATRIX:
        raise ImageTooLargeError(
            path, f"image matrix {header.rows} x {header.columns} exceeds {MAX_MATRIX} x "
            f"{MAX_MATRIX}; refused before allocating"
        )
    if header.number_of_frames > 100_000:
        raise ImageTooLargeError(path, f"{header.number_of_frames} frames declared; refused")
    ba, bs, hb = header.bits_allocated, header.bits_stored, header.high_bit
    if ba not in (1, 8, 16, 32):
        raise InvalidPixelDescriptionError(path, f"Bits Allocated {ba} is not 1, 8, 16 or 32")
    if not 1 <= bs <= ba:
        raise InvalidPixelDescriptionError(
            path, f"Bits Stored {bs} is not between 1 and Bits Allocated {ba}"
        )
    if hb != bs - 1:
        raise InvalidPixelDescriptionError(
            path, f"High Bit {hb} should be Bits Stored - 1 = {bs - 1}"
        )
    if header.pixel_representation not in (0, 1):
        raise InvalidPixelDescriptionError(
            path, f"Pixel Representation {header.pixel_representation} is not 0 or 1"
        )
    if header.samples_per_pixel not in (1, 3):
        raise InvalidPixelDescriptionError(
            path, f"Samples per Pixel {header.samples_per_pixel} is not 1 or 3"
        )
    syntax = UID(header.transfer_syntax_uid)
    if (
        syntax in _NATIVE_SYNTAXES
        and header.pixel_data_length is not None
        and header.pixel_data_offset is not None
    ):
        needed = _native_frame_bytes(header) * header.number_of_frames
        available = min(header.pixel_data_length, header.file_size - header.pixel_data_offset)
        if available < needed:
            raise PixelDataSizeError(
                path, f"pixel data holds {available} bytes, {header.rows} x {header.columns} x "
                f"{header.number_of_frames} frames x {max(ba, 8) // 8} bytes needs {needed}"
            )
        if header.pixel_data_length >= 2 * needed:
            # Whole extra frames: the header under-declares (a damaged Number of Frames);
            # showing only part of the data without a word would mislead.
            raise InvalidPixelDescriptionError(
                path, f"pixel data holds {header.pixel_data_length} bytes, "
                f"{header.pixel_data_length // needed} times what {header.number_of_frames} "
                "frame(s) need; Number of Frames is probably wrong"
            )


def check_decoder_available(header: InstanceHeader) -> None:
    """Raise UnsupportedTransferSyntaxError (with what to install) when no decoder can help."""
    syntax = UID(header.transfer_syntax_uid)
    if syntax in _NATIVE_SYNTAXES or syntax == DeflatedExplicitVRLittleEndian:
        return
    name = syntax.name if syntax.is_valid else header.transfer_syntax_uid
    try:
        decoder = get_decoder(syntax)
    except NotImplementedError as error:
        raise UnsupportedTransferSyntaxError(
            header.path, f"transfer syntax {name} is not supported"
        ) from error
    if not decoder.is_available:
        missing = "; ".join(decoder.missing_dependencies) or "a decoder plugin"
        raise UnsupportedTransferSyntaxError(
            header.path, f"no decoder installed for {name} (install one of: {missing})"
        )


def pixel_format(header: InstanceHeader) -> PixelFormat:
    """Stored sample type of a file (call :func:`check_pixel_description` first)."""
    if header.photometric == "PALETTE COLOR":  # shown as luminance of 8- or 16-bit LUTs
        native = np.dtype(np.uint16)
        return PixelFormat(native, native, 16, False, 0, 65535)
    signed = header.pixel_representation == 1
    ba = max(header.bits_allocated, 8)  # 1-bit data is unpacked to bytes by pydicom
    kind = "i" if signed else "u"
    stored = np.dtype(f"{kind}{ba // 8}")
    big = UID(header.transfer_syntax_uid) == ExplicitVRBigEndian
    file_dtype = stored.newbyteorder(">" if big else "<")
    bs = header.bits_stored if header.bits_allocated != 1 else 1
    lo, hi = (-(1 << (bs - 1)), (1 << (bs - 1)) - 1) if signed else (0, (1 << bs) - 1)
    return PixelFormat(stored.newbyteorder("="), file_dtype, bs, signed, lo, hi)


def is_native_readable(header: InstanceHeader) -> bool:
    """True when frames can be read straight from the file (no codec, no pydicom)."""
    syntax = UID(header.transfer_syntax_uid)
    return (
        syntax in _NATIVE_SYNTAXES
        and header.pixel_data_offset is not None
        and header.pixel_data_length is not None
        and header.bits_allocated in (8, 16, 32)
        and header.samples_per_pixel == 1
        and header.photometric != "PALETTE COLOR"
        # 8-bit samples in big-endian OW data are byte-swapped in pairs: let pydicom do it
        and not (syntax == ExplicitVRBigEndian and header.bits_allocated == 8)
    )


def _native_frame_bytes(header: InstanceHeader) -> int:
    if header.photometric == "YBR_FULL_422":  # chroma subsampled: 2 samples per pixel
        return header.rows * header.columns * 2 * header.bits_allocated // 8
    if header.bits_allocated == 1:
        return (header.rows * header.columns * header.samples_per_pixel + 7) // 8
    return header.rows * header.columns * header.samples_per_pixel * header.bits_allocated // 8


def read_native_frames(
    header: InstanceHeader, frames: list[int], out: list[np.ndarray] | None = None
) -> list[np.ndarray]:
    """Stored values of ``frames`` of a native file, read at the recorded Pixel Data offset.

    When ``out`` gives one preallocated ``(rows, columns)`` array per frame whose dtype is the
    file's stored dtype in native byte order, bytes are read straight into it (no copy).
    """
    fmt = pixel_format(header)
    frame_bytes = _native_frame_bytes(header)
    assert header.pixel_data_offset is not None
    results: list[np.ndarray] = []
    with open(header.path, "rb", buffering=0) as handle:
        for n, frame in enumerate(frames):
            handle.seek(header.pixel_data_offset + frame * frame_bytes)
            target = out[n] if out is not None else None
            direct = (
                target is not None
                and target.dtype == fmt.file_dtype
                and target.flags.c_contiguous
                and target.nbytes == frame_bytes
            )
            if direct:
                image = target
            else:
                image = np.empty((header.rows, header.columns), dtype=fmt.file_dtype)
            read = handle.readinto(memoryview(image).cast("B"))
            if read != frame_bytes:
                raise PixelDataSizeError(
                    header.path, f"frame {frame}: file ends after {read} of {frame_bytes} bytes"
                )
            results.append(_to_stored_values(image, fmt, header.bits_allocated))
    return results


def _to_stored_values(image: np.ndarray, fmt: PixelFormat, bits_allocated: int) -> np.ndarray:
    """Native byte order; bits above Bits Stored cleared (unsigned) or sign-extended (signed)."""
    if not image.dtype.isnative:  # big endian file on a little endian machine
        image = image.astype(image.dtype.newbyteorder("="))
    unused = bits_allocated - fmt.bits_stored
    if unused > 0:
        if fmt.signed:
            image <<= unused
            image >>= unused  # arithmetic shift on a signed type sign-extends
        else:
            image &= (1 << fmt.bits_stored) - 1
    return image


def decode_frames(
    path: str, frames: list[int], number_of_frames: int, deflated: bool = False,
    palette: bool = False,
) -> list[np.ndarray]:
    """Stored values of ``frames`` decoded by pydicom (compressed, deflated, 1-bit, colour).

    Colour and palette-colour images are converted to luminance (ITU-R BT.601) because the
    viewer is greyscale. Runs in a worker process, so it takes and returns only plain
    picklable values.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # standard violations are not the user's problem
        try:
            images = _decode(path, frames, number_of_frames, deflated)
        except (MemoryError, KeyboardInterrupt):
            raise
        except Exception as error:  # noqa: BLE001 - codecs raise anything; report it
            message = str(error).strip().splitlines()
            detail = " ".join(line.strip() for line in message[:3])[:200] if message else (
                type(error).__name__
            )
            first = frames[0] + 1
            where = f"frame {first}" if len(frames) == 1 else f"frames {first}-{frames[-1] + 1}"
            raise DecodeError(path, f"{where}: cannot decode ({detail})") from None
        if palette:
            from pydicom.pixels import apply_color_lut

            header = pydicom.dcmread(path, stop_before_pixels=True, force=True)
            images = [apply_color_lut(image, header) for image in images]
    results = []
    for image in images:
        if image.ndim == 3 and image.shape[-1] == 3:
            image = _luminance(image)
        results.append(np.ascontiguousarray(image))
    return results


def _decode(path: str, frames: list[int], number_of_frames: int,
            deflated: bool) -> list[np.ndarray]:
    from pydicom.pixels import iter_pixels

    first_error: Exception | None = None
    if not deflated:
        try:
            # One parse of the file for all the frames of this task.
            return list(iter_pixels(path, indices=frames if number_of_frames > 1 else None))
        except (MemoryError, KeyboardInterrupt):
            raise
        except Exception as error:  # noqa: BLE001 - codecs raise anything; retried below
            # pydicom's path-based reader trusts the transfer syntax; dcmread also copes
            # with files whose dataset encoding contradicts it (seen in real files).
            first_error = error
    try:
        dataset = pydicom.dcmread(path, force=True)  # the scan accepted this file
        if "TransferSyntaxUID" not in dataset.file_meta:  # preamble-less file: its encoding
            implicit, little = dataset.original_encoding
            dataset.file_meta.TransferSyntaxUID = (
                ImplicitVRLittleEndian if implicit
                else ExplicitVRLittleEndian if little else ExplicitVRBigEndian
            )
        pixels = dataset.pixel_array
    except Exception:
        if first_error is not None:
            raise first_error from None  # the codec's own reason, not the retry's
        raise
    if number_of_frames == 1:
        return [pixels]
    return [pixels[frame] for frame in frames]


def _luminance(rgb: np.ndarray) -> np.ndarray:
    """BT.601 luma in the samples' own type (float64 maths: 32-bit samples must not wrap)."""
    weights = np.array([0.299, 0.587, 0.114])
    grey = np.rint(rgb.astype(np.float64) @ weights)
    info = np.iinfo(rgb.dtype) if rgb.dtype.kind in "iu" else None
    if info is not None:
        np.clip(grey, info.min, info.max, out=grey)
    return grey.astype(rgb.dtype)


def read_dataset_for_modality_lut(path: str) -> pydicom.Dataset:
    """The full header (without pixels) for the rare files with a Modality LUT Sequence."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pydicom.dcmread(path, stop_before_pixels=True, force=True)
