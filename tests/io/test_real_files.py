"""Every real DICOM file we can get either loads as an image or is reported with a reason.

The corpus is pydicom's own test files and PyPI's ``pydicom-data`` (a test dependency), read
from the venv: nothing is downloaded. Each file goes through the pipeline *on its own*
(``discover([file])`` then ``load_stack`` per stack): many of these files share UIDs, so
opening them together would mix unrelated images into one series.

``EXPECTED`` states the outcome per file, reviewed by hand against pydicom's own behaviour;
pydicom is also the reference for shapes and voxel values. Where pydicom decodes a file that
radview gets wrong, the entry keeps the *correct* expectation and the test is a strict xfail
naming the radview bug.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.errors import InvalidDicomError
from pydicom.pixels import apply_color_lut, apply_modality_lut
from pydicom.uid import (
    JPEG2000,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSNearLossless,
    RLELossless,
)

from radview.io.dicom_header import FileProblem
from radview.io.dicom_load import LoadResult, load_stack
from radview.io.dicom_series import SeriesStack
from radview.io.discover import Discovery, discover


# ---------------------------------------------------------------------------- the corpus
def _source_roots() -> dict[str, Path]:
    """The installed sources (test_corpus_is_installed insists on both)."""
    import pydicom.data

    roots = {"pydicom": Path(pydicom.data.__file__).parent / "test_files"}
    try:
        import data_store  # the import name of PyPI's pydicom-data
    except ImportError:
        pass
    else:
        roots["pydicom-data"] = Path(data_store.__file__).parent / "data"
    return roots


ROOTS = _source_roots()


def _files_on_disk() -> dict[str, Path]:
    files = {}
    for prefix, root in ROOTS.items():
        for path in sorted(root.rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                files[f"{prefix}/{path.relative_to(root).as_posix()}"] = path
    return files


FILES = _files_on_disk()

_TINY = "pydicom/dicomdirtests/TINY_ALPHA/PT000000/ST000000/SE000000/"

#: The outcome of every file, keyed by source ("pydicom/" or "pydicom-data/") and path.
#: "image": at least one stack loads, with the shape in EXPECTED_SHAPES and no problem;
#: "image_with_problems": loads, but some frames are reported; "not_dicom", "not_image",
#: "unsupported", "corrupt": nothing loads and the file is reported with that FileProblem.kind.
#: Every non-image entry says why; ``test_pydicom_agrees`` checks that pydicom cannot decode
#: any of them either, so none of these reasons hides a readable image.
EXPECTED: dict[str, str] = {
    "pydicom/693_J2KI.dcm": "image",
    "pydicom/CT_small.dcm": "image",
    "pydicom/ExplVR_BigEnd.dcm": "image",
    "pydicom/ExplVR_BigEndNoMeta.dcm": "not_image",  # RT plan, no pixels (no file meta)
    "pydicom/ExplVR_LitEndNoMeta.dcm": "not_image",  # RT plan, no pixels (no file meta)
    "pydicom/GDCMJ2K_TextGBR.dcm": "image",
    "pydicom/J2K_pixelrep_mismatch.dcm": "image",
    "pydicom/JPEG-lossy.dcm": "corrupt",  # bad JPEG SOS params; pydicom fails
    "pydicom/JPEG2000-embedded-sequence-delimiter.dcm": "corrupt",  # bad J2K stream; pydicom fails
    "pydicom/JPEG2000.dcm": "image",
    "pydicom/JPEGLSNearLossless_08.dcm": "image",
    "pydicom/JPEGLSNearLossless_16.dcm": "image",
    "pydicom/JPGExtended.dcm": "image",
    "pydicom/MR_small.dcm": "image",
    "pydicom/MR_small_RLE.dcm": "image",
    "pydicom/MR_small_bigendian.dcm": "image",
    "pydicom/MR_small_expb.dcm": "image",
    "pydicom/MR_small_implicit.dcm": "image",
    "pydicom/MR_small_jp2klossless.dcm": "image",
    "pydicom/MR_small_jpeg_ls_lossless.dcm": "image",
    "pydicom/MR_small_padded.dcm": "image",
    "pydicom/MR_truncated.dcm": "corrupt",  # pixel data deliberately cut short (8130 of 8192 bytes)
    "pydicom/README.txt": "not_dicom",  # text
    "pydicom/SC_jpeg_no_color_transform.dcm": "image",
    "pydicom/SC_jpeg_no_color_transform_2.dcm": "image",
    "pydicom/SC_rgb_dcmtk_+eb+cr.dcm": "image",
    "pydicom/SC_rgb_dcmtk_+eb+cy+n1.dcm": "image",
    "pydicom/SC_rgb_dcmtk_+eb+cy+n2.dcm": "image",
    "pydicom/SC_rgb_dcmtk_+eb+cy+np.dcm": "image",
    "pydicom/SC_rgb_dcmtk_+eb+cy+s2.dcm": "image",
    "pydicom/SC_rgb_dcmtk_+eb+cy+s4.dcm": "image",
    "pydicom/SC_rgb_gdcm_KY.dcm": "image",
    "pydicom/SC_rgb_jls_lossy_line.dcm": "image",
    "pydicom/SC_rgb_jls_lossy_sample.dcm": "image",
    "pydicom/SC_rgb_jpeg.dcm": "image",  # pydicom decodes it; radview bug, see OUTCOME_BUGS
    "pydicom/SC_rgb_jpeg_app14_dcmd.dcm": "image",
    "pydicom/SC_rgb_jpeg_dcmd.dcm": "image",
    "pydicom/SC_rgb_jpeg_dcmtk.dcm": "image",
    "pydicom/SC_rgb_jpeg_gdcm.dcm": "image",
    "pydicom/SC_rgb_jpeg_lossy_gdcm.dcm": "image",
    "pydicom/SC_rgb_rle.dcm": "image",
    "pydicom/SC_rgb_rle_16bit.dcm": "image",
    "pydicom/SC_rgb_rle_16bit_2frame.dcm": "image",
    "pydicom/SC_rgb_rle_2frame.dcm": "image",
    "pydicom/SC_rgb_rle_32bit.dcm": "image",
    "pydicom/SC_rgb_rle_32bit_2frame.dcm": "image",
    "pydicom/SC_rgb_small_odd.dcm": "image",
    "pydicom/SC_rgb_small_odd_big_endian.dcm": "image",
    "pydicom/SC_rgb_small_odd_jpeg.dcm": "image",
    "pydicom/SC_ybr_full_422_uncompressed.dcm": "image",
    "pydicom/UN_sequence.dcm": "not_image",  # UN-sequence fixture, no pixels
    "pydicom/badVR.dcm": "corrupt",  # rtdose.dcm with Number of Frames '1A': refused, named
    "pydicom/crayons.icc": "not_dicom",  # ICC colour profile
    "pydicom/dicomdirtests/77654033/CR1/6154": "image",
    "pydicom/dicomdirtests/77654033/CR2/6247": "image",
    "pydicom/dicomdirtests/77654033/CR3/6278": "image",
    "pydicom/dicomdirtests/77654033/CT2/17106": "image",
    "pydicom/dicomdirtests/77654033/CT2/17136": "image",
    "pydicom/dicomdirtests/77654033/CT2/17166": "image",
    "pydicom/dicomdirtests/77654033/CT2/17196": "image",
    "pydicom/dicomdirtests/98892001/CT2N/6293": "image",
    "pydicom/dicomdirtests/98892001/CT2N/6924": "image",
    "pydicom/dicomdirtests/98892001/CT5N/2062": "image",
    "pydicom/dicomdirtests/98892001/CT5N/2392": "image",
    "pydicom/dicomdirtests/98892001/CT5N/2693": "image",
    "pydicom/dicomdirtests/98892001/CT5N/3023": "image",
    "pydicom/dicomdirtests/98892001/CT5N/3353": "image",
    "pydicom/dicomdirtests/98892003/MR1/15820": "image",
    "pydicom/dicomdirtests/98892003/MR1/4919": "image",
    "pydicom/dicomdirtests/98892003/MR1/5641": "image",
    "pydicom/dicomdirtests/98892003/MR2/15970": "image",
    "pydicom/dicomdirtests/98892003/MR2/4950": "image",
    "pydicom/dicomdirtests/98892003/MR2/4981": "image",
    "pydicom/dicomdirtests/98892003/MR2/5011": "image",
    "pydicom/dicomdirtests/98892003/MR2/6273": "image",
    "pydicom/dicomdirtests/98892003/MR2/6605": "image",
    "pydicom/dicomdirtests/98892003/MR2/6935": "image",
    "pydicom/dicomdirtests/98892003/MR700/4467": "image",
    "pydicom/dicomdirtests/98892003/MR700/4528": "image",
    "pydicom/dicomdirtests/98892003/MR700/4558": "image",
    "pydicom/dicomdirtests/98892003/MR700/4588": "image",
    "pydicom/dicomdirtests/98892003/MR700/4618": "image",
    "pydicom/dicomdirtests/98892003/MR700/4648": "image",
    "pydicom/dicomdirtests/98892003/MR700/4678": "image",
    "pydicom/dicomdirtests/DICOMDIR": "not_image",  # media index
    "pydicom/dicomdirtests/DICOMDIR-bigEnd": "not_image",  # media index
    "pydicom/dicomdirtests/DICOMDIR-empty.dcm": "not_image",  # media index
    "pydicom/dicomdirtests/DICOMDIR-implicit": "not_image",  # media index
    "pydicom/dicomdirtests/DICOMDIR-nooffset": "not_image",  # media index
    "pydicom/dicomdirtests/DICOMDIR-nopatient": "not_image",  # media index
    "pydicom/dicomdirtests/DICOMDIR-reordered": "not_image",  # media index
    "pydicom/dicomdirtests/README.txt": "not_dicom",  # text
    "pydicom/dicomdirtests/TINY_ALPHA/DICOMDIR": "not_image",  # media index
    _TINY + "IM000000": "corrupt",  # CT Image Storage header, no Pixel Data (File-set fixture)
    _TINY + "IM000001": "corrupt",  # CT Image Storage header, no Pixel Data (File-set fixture)
    _TINY + "IM000002": "corrupt",  # CT Image Storage header, no Pixel Data (File-set fixture)
    _TINY + "IM000003": "corrupt",  # CT Image Storage header, no Pixel Data (File-set fixture)
    _TINY + "IM000004": "corrupt",  # CT Image Storage header, no Pixel Data (File-set fixture)
    _TINY + "IM000005": "corrupt",  # CT Image Storage header, no Pixel Data (File-set fixture)
    _TINY + "IM000006": "corrupt",  # CT Image Storage header, no Pixel Data (File-set fixture)
    _TINY + "IM000007": "corrupt",  # CT Image Storage header, no Pixel Data (File-set fixture)
    _TINY + "IM000008": "corrupt",  # CT Image Storage header, no Pixel Data (File-set fixture)
    _TINY + "IM000009": "corrupt",  # CT Image Storage header, no Pixel Data (File-set fixture)
    _TINY + "IM00000A": "corrupt",  # CT Image Storage header, no Pixel Data (File-set fixture)
    _TINY + "IM00000B": "corrupt",  # CT Image Storage header, no Pixel Data (File-set fixture)
    _TINY + "IM00000C": "corrupt",  # CT Image Storage header, no Pixel Data (File-set fixture)
    _TINY + "IM00000D": "corrupt",  # CT Image Storage header, no Pixel Data (File-set fixture)
    _TINY + "IM00000E": "corrupt",  # CT Image Storage header, no Pixel Data (File-set fixture)
    _TINY + "IM00000F": "corrupt",  # CT Image Storage header, no Pixel Data (File-set fixture)
    _TINY + "IM00000G": "corrupt",  # CT Image Storage header, no Pixel Data (File-set fixture)
    _TINY + "IM00000H": "corrupt",  # CT Image Storage header, no Pixel Data (File-set fixture)
    _TINY + "IM00000I": "corrupt",  # CT Image Storage header, no Pixel Data (File-set fixture)
    _TINY + "IM00000J": "corrupt",  # CT Image Storage header, no Pixel Data (File-set fixture)
    _TINY + "IM00000K": "corrupt",  # CT Image Storage header, no Pixel Data (File-set fixture)
    _TINY + "IM00000L": "corrupt",  # CT Image Storage header, no Pixel Data (File-set fixture)
    _TINY + "IM00000M": "corrupt",  # CT Image Storage header, no Pixel Data (File-set fixture)
    _TINY + "IM00000N": "corrupt",  # CT Image Storage header, no Pixel Data (File-set fixture)
    _TINY + "IM00000O": "corrupt",  # CT Image Storage header, no Pixel Data (File-set fixture)
    _TINY + "IM00000P": "corrupt",  # CT Image Storage header, no Pixel Data (File-set fixture)
    _TINY + "IM00000Q": "corrupt",  # CT Image Storage header, no Pixel Data (File-set fixture)
    _TINY + "IM00000R": "corrupt",  # CT Image Storage header, no Pixel Data (File-set fixture)
    _TINY + "IM00000S": "corrupt",  # CT Image Storage header, no Pixel Data (File-set fixture)
    _TINY + "IM00000T": "corrupt",  # CT Image Storage header, no Pixel Data (File-set fixture)
    _TINY + "IM00000U": "corrupt",  # CT Image Storage header, no Pixel Data (File-set fixture)
    _TINY + "IM00000V": "corrupt",  # CT Image Storage header, no Pixel Data (File-set fixture)
    _TINY + "IM00000W": "corrupt",  # CT Image Storage header, no Pixel Data (File-set fixture)
    _TINY + "IM00000X": "corrupt",  # CT Image Storage header, no Pixel Data (File-set fixture)
    _TINY + "IM00000Y": "corrupt",  # CT Image Storage header, no Pixel Data (File-set fixture)
    _TINY + "IM00000Z": "corrupt",  # CT Image Storage header, no Pixel Data (File-set fixture)
    _TINY + "IM000010": "corrupt",  # CT Image Storage header, no Pixel Data (File-set fixture)
    _TINY + "IM000011": "corrupt",  # CT Image Storage header, no Pixel Data (File-set fixture)
    _TINY + "IM000012": "corrupt",  # CT Image Storage header, no Pixel Data (File-set fixture)
    _TINY + "IM000013": "corrupt",  # CT Image Storage header, no Pixel Data (File-set fixture)
    _TINY + "IM000014": "corrupt",  # CT Image Storage header, no Pixel Data (File-set fixture)
    _TINY + "IM000015": "corrupt",  # CT Image Storage header, no Pixel Data (File-set fixture)
    _TINY + "IM000016": "corrupt",  # CT Image Storage header, no Pixel Data (File-set fixture)
    _TINY + "IM000017": "corrupt",  # CT Image Storage header, no Pixel Data (File-set fixture)
    _TINY + "IM000018": "corrupt",  # CT Image Storage header, no Pixel Data (File-set fixture)
    _TINY + "IM000019": "corrupt",  # CT Image Storage header, no Pixel Data (File-set fixture)
    _TINY + "IM00001A": "corrupt",  # CT Image Storage header, no Pixel Data (File-set fixture)
    _TINY + "IM00001B": "corrupt",  # CT Image Storage header, no Pixel Data (File-set fixture)
    _TINY + "IM00001C": "corrupt",  # CT Image Storage header, no Pixel Data (File-set fixture)
    _TINY + "IM00001D": "corrupt",  # CT Image Storage header, no Pixel Data (File-set fixture)
    "pydicom/dicomdirtests/TINY_ALPHA/README": "not_dicom",  # text (File-set descriptor)
    "pydicom/empty_charset_LEI.dcm": "not_image",  # header-only charset fixture, no pixels
    "pydicom/examples_jpeg2k.dcm": "image",
    "pydicom/examples_overlay.dcm": "image",
    "pydicom/examples_palette.dcm": "image",
    "pydicom/examples_rgb_color.dcm": "image",
    "pydicom/examples_ybr_color.dcm": "image",
    "pydicom/image_dfl.dcm": "image",
    "pydicom/liver_1frame.dcm": "image",
    "pydicom/liver_expb_1frame.dcm": "image",
    "pydicom/meta_missing_tsyntax.dcm": "not_image",  # priv. SQ fixture; no Rows/Bits
    "pydicom/nested_priv_SQ.dcm": "not_image",  # priv. SQ fixture; no Rows/Bits
    "pydicom/no_meta.dcm": "not_dicom",  # raw dataset preceded by a stray byte: unparseable
    "pydicom/no_meta_group_length.dcm": "not_image",  # RT image header without pixel data
    "pydicom/priv_SQ.dcm": "not_image",  # private-sequence fixture, no pixels
    "pydicom/reportsi.dcm": "not_image",  # structured report
    "pydicom/reportsi_with_empty_number_tags.dcm": "not_image",  # structured report
    "pydicom/rtdose.dcm": "image",
    "pydicom/rtdose_1frame.dcm": "image",
    "pydicom/rtdose_expb.dcm": "image",
    "pydicom/rtdose_expb_1frame.dcm": "image",
    "pydicom/rtdose_rle.dcm": "image",
    "pydicom/rtdose_rle_1frame.dcm": "image",
    "pydicom/rtplan.dcm": "not_image",  # RT plan, no pixels
    "pydicom/rtplan.dump": "not_dicom",  # text dump of rtplan.dcm
    "pydicom/rtplan_truncated.dcm": "not_image",  # RT plan (truncated), no pixels
    "pydicom/rtstruct.dcm": "not_image",  # RT structure set, no pixels (no preamble)
    "pydicom/rtstruct.dump": "not_dicom",  # text dump of rtstruct.dcm
    "pydicom/test-SR.dcm": "not_image",  # structured report
    "pydicom/test1.json": "not_dicom",  # DICOM JSON, not a DICOM file
    "pydicom/test_PN.json": "not_dicom",  # DICOM JSON, not a DICOM file
    "pydicom/waveform_ecg.dcm": "not_image",  # ECG waveform, no pixels
    "pydicom/zipMR.gz": "not_dicom",  # gzip archive
    "pydicom-data/693_J2KR.dcm": "image",
    "pydicom-data/693_UNCI.dcm": "image",
    "pydicom-data/693_UNCR.dcm": "image",
    "pydicom-data/JPEG-LL.dcm": "image",
    "pydicom-data/JPEG2000_UNC.dcm": "image",
    "pydicom-data/JPGLosslessP14SV1_1s_1f_8b.dcm": "image",
    "pydicom-data/MR-SIEMENS-DICOM-WithOverlays.dcm": "image",
    "pydicom-data/MR2_J2KI.dcm": "image",
    "pydicom-data/MR2_J2KR.dcm": "image",
    "pydicom-data/MR2_UNCI.dcm": "image",
    "pydicom-data/MR2_UNCR.dcm": "image",
    "pydicom-data/OBXXXX1A.dcm": "image",
    "pydicom-data/OBXXXX1A_2frame.dcm": "image",
    "pydicom-data/OBXXXX1A_expb.dcm": "image",
    "pydicom-data/OBXXXX1A_expb_2frame.dcm": "image",
    "pydicom-data/OBXXXX1A_rle.dcm": "image",
    "pydicom-data/OBXXXX1A_rle_2frame.dcm": "image",
    "pydicom-data/OT-PAL-8-face.dcm": "image",  # no preamble: needs force
    "pydicom-data/RG1_J2KI.dcm": "image",
    "pydicom-data/RG1_J2KR.dcm": "image",
    "pydicom-data/RG1_UNCI.dcm": "image",
    "pydicom-data/RG1_UNCR.dcm": "image",
    "pydicom-data/RG3_J2KI.dcm": "image",
    "pydicom-data/RG3_J2KR.dcm": "image",
    "pydicom-data/RG3_UNCI.dcm": "image",
    "pydicom-data/RG3_UNCR.dcm": "image",
    "pydicom-data/SC_rgb.dcm": "image",
    "pydicom-data/SC_rgb_16bit.dcm": "image",
    "pydicom-data/SC_rgb_16bit_2frame.dcm": "image",
    "pydicom-data/SC_rgb_2frame.dcm": "image",
    "pydicom-data/SC_rgb_32bit.dcm": "image",
    "pydicom-data/SC_rgb_32bit_2frame.dcm": "image",
    "pydicom-data/SC_rgb_dcmtk_ebcr_dcmd.dcm": "image",
    "pydicom-data/SC_rgb_dcmtk_ebcyn1_dcmd.dcm": "image",
    "pydicom-data/SC_rgb_dcmtk_ebcyn2_dcmd.dcm": "image",
    "pydicom-data/SC_rgb_dcmtk_ebcynp_dcmd.dcm": "image",
    "pydicom-data/SC_rgb_dcmtk_ebcys2_dcmd.dcm": "image",
    "pydicom-data/SC_rgb_dcmtk_ebcys4_dcmd.dcm": "image",
    "pydicom-data/SC_rgb_expb.dcm": "image",
    "pydicom-data/SC_rgb_expb_16bit.dcm": "image",
    "pydicom-data/SC_rgb_expb_16bit_2frame.dcm": "image",
    "pydicom-data/SC_rgb_expb_2frame.dcm": "image",
    "pydicom-data/SC_rgb_expb_32bit.dcm": "image",
    "pydicom-data/SC_rgb_expb_32bit_2frame.dcm": "image",
    "pydicom-data/SC_rgb_gdcm2k_uncompressed.dcm": "image",
    "pydicom-data/SC_ybr_full_uncompressed.dcm": "image",
    "pydicom-data/US1_J2KI.dcm": "image",
    "pydicom-data/US1_J2KR.dcm": "image",
    "pydicom-data/US1_UNCI.dcm": "image",
    "pydicom-data/US1_UNCR.dcm": "image",
    "pydicom-data/bad_sequence.dcm": "image",
    "pydicom-data/color-pl.dcm": "image",
    "pydicom-data/color-px.dcm": "image",
    "pydicom-data/color3d_jpeg_baseline.dcm": "image",
    "pydicom-data/eCT_Supplemental.dcm": "image",
    "pydicom-data/emri_small.dcm": "image",
    "pydicom-data/emri_small_RLE.dcm": "image",
    "pydicom-data/emri_small_big_endian.dcm": "image",
    "pydicom-data/emri_small_jpeg_2k_lossless.dcm": "image",
    "pydicom-data/emri_small_jpeg_2k_lossless_too_short.dcm": "corrupt",  # deliberately truncated
    "pydicom-data/emri_small_jpeg_ls_lossless.dcm": "image",
    "pydicom-data/explicit_VR-UN.dcm": "image",
    "pydicom-data/gdcm-US-ALOKA-16.dcm": "image",
    "pydicom-data/gdcm-US-ALOKA-16_big.dcm": "image",
    "pydicom-data/liver.dcm": "image",
    "pydicom-data/liver_expb.dcm": "image",
    "pydicom-data/mlut_18.dcm": "image",
    "pydicom-data/vlut_04.dcm": "image",
}

#: (frames, rows, columns) of the volume of every image entry, colour collapsed to greyscale;
#: test_pydicom_agrees checks each against pydicom's own dcmread(...).pixel_array.
EXPECTED_SHAPES: dict[str, tuple[int, int, int]] = {
    "pydicom/693_J2KI.dcm": (1, 512, 512),
    "pydicom/CT_small.dcm": (1, 128, 128),
    "pydicom/ExplVR_BigEnd.dcm": (1, 60, 80),
    "pydicom/GDCMJ2K_TextGBR.dcm": (1, 400, 400),
    "pydicom/J2K_pixelrep_mismatch.dcm": (1, 512, 512),
    "pydicom/JPEG2000.dcm": (1, 1024, 256),
    "pydicom/JPEGLSNearLossless_08.dcm": (1, 45, 10),
    "pydicom/JPEGLSNearLossless_16.dcm": (1, 50, 10),
    "pydicom/JPGExtended.dcm": (1, 1024, 256),
    "pydicom/MR_small.dcm": (1, 64, 64),
    "pydicom/MR_small_RLE.dcm": (1, 64, 64),
    "pydicom/MR_small_bigendian.dcm": (1, 64, 64),
    "pydicom/MR_small_expb.dcm": (1, 64, 64),
    "pydicom/MR_small_implicit.dcm": (1, 64, 64),
    "pydicom/MR_small_jp2klossless.dcm": (1, 64, 64),
    "pydicom/MR_small_jpeg_ls_lossless.dcm": (1, 64, 64),
    "pydicom/MR_small_padded.dcm": (1, 64, 64),
    "pydicom/SC_jpeg_no_color_transform.dcm": (1, 256, 256),
    "pydicom/SC_jpeg_no_color_transform_2.dcm": (1, 256, 256),
    "pydicom/SC_rgb_dcmtk_+eb+cr.dcm": (1, 100, 100),
    "pydicom/SC_rgb_dcmtk_+eb+cy+n1.dcm": (1, 100, 100),
    "pydicom/SC_rgb_dcmtk_+eb+cy+n2.dcm": (1, 100, 100),
    "pydicom/SC_rgb_dcmtk_+eb+cy+np.dcm": (1, 100, 100),
    "pydicom/SC_rgb_dcmtk_+eb+cy+s2.dcm": (1, 100, 100),
    "pydicom/SC_rgb_dcmtk_+eb+cy+s4.dcm": (1, 100, 100),
    "pydicom/SC_rgb_gdcm_KY.dcm": (1, 100, 100),
    "pydicom/SC_rgb_jls_lossy_line.dcm": (1, 100, 100),
    "pydicom/SC_rgb_jls_lossy_sample.dcm": (1, 100, 100),
    "pydicom/SC_rgb_jpeg.dcm": (1, 256, 256),
    "pydicom/SC_rgb_jpeg_app14_dcmd.dcm": (1, 256, 256),
    "pydicom/SC_rgb_jpeg_dcmd.dcm": (1, 256, 256),
    "pydicom/SC_rgb_jpeg_dcmtk.dcm": (1, 100, 100),
    "pydicom/SC_rgb_jpeg_gdcm.dcm": (1, 100, 100),
    "pydicom/SC_rgb_jpeg_lossy_gdcm.dcm": (1, 100, 100),
    "pydicom/SC_rgb_rle.dcm": (1, 100, 100),
    "pydicom/SC_rgb_rle_16bit.dcm": (1, 100, 100),
    "pydicom/SC_rgb_rle_16bit_2frame.dcm": (2, 100, 100),
    "pydicom/SC_rgb_rle_2frame.dcm": (2, 100, 100),
    "pydicom/SC_rgb_rle_32bit.dcm": (1, 100, 100),
    "pydicom/SC_rgb_rle_32bit_2frame.dcm": (2, 100, 100),
    "pydicom/SC_rgb_small_odd.dcm": (1, 3, 3),
    "pydicom/SC_rgb_small_odd_big_endian.dcm": (1, 3, 3),
    "pydicom/SC_rgb_small_odd_jpeg.dcm": (1, 3, 3),
    "pydicom/SC_ybr_full_422_uncompressed.dcm": (1, 100, 100),
    "pydicom/dicomdirtests/77654033/CR1/6154": (1, 16, 16),
    "pydicom/dicomdirtests/77654033/CR2/6247": (1, 16, 16),
    "pydicom/dicomdirtests/77654033/CR3/6278": (1, 16, 16),
    "pydicom/dicomdirtests/77654033/CT2/17106": (1, 16, 16),
    "pydicom/dicomdirtests/77654033/CT2/17136": (1, 16, 16),
    "pydicom/dicomdirtests/77654033/CT2/17166": (1, 16, 16),
    "pydicom/dicomdirtests/77654033/CT2/17196": (1, 16, 16),
    "pydicom/dicomdirtests/98892001/CT2N/6293": (1, 16, 16),
    "pydicom/dicomdirtests/98892001/CT2N/6924": (1, 16, 16),
    "pydicom/dicomdirtests/98892001/CT5N/2062": (1, 16, 16),
    "pydicom/dicomdirtests/98892001/CT5N/2392": (1, 16, 16),
    "pydicom/dicomdirtests/98892001/CT5N/2693": (1, 16, 16),
    "pydicom/dicomdirtests/98892001/CT5N/3023": (1, 16, 16),
    "pydicom/dicomdirtests/98892001/CT5N/3353": (1, 16, 16),
    "pydicom/dicomdirtests/98892003/MR1/15820": (1, 16, 16),
    "pydicom/dicomdirtests/98892003/MR1/4919": (1, 16, 16),
    "pydicom/dicomdirtests/98892003/MR1/5641": (1, 16, 16),
    "pydicom/dicomdirtests/98892003/MR2/15970": (1, 16, 16),
    "pydicom/dicomdirtests/98892003/MR2/4950": (1, 16, 16),
    "pydicom/dicomdirtests/98892003/MR2/4981": (1, 16, 16),
    "pydicom/dicomdirtests/98892003/MR2/5011": (1, 16, 16),
    "pydicom/dicomdirtests/98892003/MR2/6273": (1, 16, 16),
    "pydicom/dicomdirtests/98892003/MR2/6605": (1, 16, 16),
    "pydicom/dicomdirtests/98892003/MR2/6935": (1, 16, 16),
    "pydicom/dicomdirtests/98892003/MR700/4467": (1, 16, 16),
    "pydicom/dicomdirtests/98892003/MR700/4528": (1, 16, 16),
    "pydicom/dicomdirtests/98892003/MR700/4558": (1, 16, 16),
    "pydicom/dicomdirtests/98892003/MR700/4588": (1, 16, 16),
    "pydicom/dicomdirtests/98892003/MR700/4618": (1, 16, 16),
    "pydicom/dicomdirtests/98892003/MR700/4648": (1, 16, 16),
    "pydicom/dicomdirtests/98892003/MR700/4678": (1, 16, 16),
    "pydicom/examples_jpeg2k.dcm": (1, 480, 640),
    "pydicom/examples_overlay.dcm": (1, 300, 484),
    "pydicom/examples_palette.dcm": (1, 350, 800),
    "pydicom/examples_rgb_color.dcm": (1, 240, 320),
    "pydicom/examples_ybr_color.dcm": (30, 240, 320),
    "pydicom/image_dfl.dcm": (1, 512, 512),
    "pydicom/liver_1frame.dcm": (1, 512, 512),
    "pydicom/liver_expb_1frame.dcm": (1, 512, 512),
    "pydicom/rtdose.dcm": (15, 10, 10),
    "pydicom/rtdose_1frame.dcm": (1, 10, 10),
    "pydicom/rtdose_expb.dcm": (15, 10, 10),
    "pydicom/rtdose_expb_1frame.dcm": (1, 10, 10),
    "pydicom/rtdose_rle.dcm": (15, 10, 10),
    "pydicom/rtdose_rle_1frame.dcm": (1, 10, 10),
    "pydicom-data/693_J2KR.dcm": (1, 512, 512),
    "pydicom-data/693_UNCI.dcm": (1, 512, 512),
    "pydicom-data/693_UNCR.dcm": (1, 512, 512),
    "pydicom-data/JPEG-LL.dcm": (1, 1024, 256),
    "pydicom-data/JPEG2000_UNC.dcm": (1, 1024, 256),
    "pydicom-data/JPGLosslessP14SV1_1s_1f_8b.dcm": (1, 768, 1024),
    "pydicom-data/MR-SIEMENS-DICOM-WithOverlays.dcm": (1, 484, 484),
    "pydicom-data/MR2_J2KI.dcm": (1, 1024, 1024),
    "pydicom-data/MR2_J2KR.dcm": (1, 1024, 1024),
    "pydicom-data/MR2_UNCI.dcm": (1, 1024, 1024),
    "pydicom-data/MR2_UNCR.dcm": (1, 1024, 1024),
    "pydicom-data/OBXXXX1A.dcm": (1, 600, 800),
    "pydicom-data/OBXXXX1A_2frame.dcm": (2, 600, 800),
    "pydicom-data/OBXXXX1A_expb.dcm": (1, 600, 800),
    "pydicom-data/OBXXXX1A_expb_2frame.dcm": (2, 600, 800),
    "pydicom-data/OBXXXX1A_rle.dcm": (1, 600, 800),
    "pydicom-data/OBXXXX1A_rle_2frame.dcm": (2, 600, 800),
    "pydicom-data/OT-PAL-8-face.dcm": (1, 480, 640),
    "pydicom-data/RG1_J2KI.dcm": (1, 1955, 1841),
    "pydicom-data/RG1_J2KR.dcm": (1, 1955, 1841),
    "pydicom-data/RG1_UNCI.dcm": (1, 1955, 1841),
    "pydicom-data/RG1_UNCR.dcm": (1, 1955, 1841),
    "pydicom-data/RG3_J2KI.dcm": (1, 1760, 1760),
    "pydicom-data/RG3_J2KR.dcm": (1, 1760, 1760),
    "pydicom-data/RG3_UNCI.dcm": (1, 1760, 1760),
    "pydicom-data/RG3_UNCR.dcm": (1, 1760, 1760),
    "pydicom-data/SC_rgb.dcm": (1, 100, 100),
    "pydicom-data/SC_rgb_16bit.dcm": (1, 100, 100),
    "pydicom-data/SC_rgb_16bit_2frame.dcm": (2, 100, 100),
    "pydicom-data/SC_rgb_2frame.dcm": (2, 100, 100),
    "pydicom-data/SC_rgb_32bit.dcm": (1, 100, 100),
    "pydicom-data/SC_rgb_32bit_2frame.dcm": (2, 100, 100),
    "pydicom-data/SC_rgb_dcmtk_ebcr_dcmd.dcm": (1, 100, 100),
    "pydicom-data/SC_rgb_dcmtk_ebcyn1_dcmd.dcm": (1, 100, 100),
    "pydicom-data/SC_rgb_dcmtk_ebcyn2_dcmd.dcm": (1, 100, 100),
    "pydicom-data/SC_rgb_dcmtk_ebcynp_dcmd.dcm": (1, 100, 100),
    "pydicom-data/SC_rgb_dcmtk_ebcys2_dcmd.dcm": (1, 100, 100),
    "pydicom-data/SC_rgb_dcmtk_ebcys4_dcmd.dcm": (1, 100, 100),
    "pydicom-data/SC_rgb_expb.dcm": (1, 100, 100),
    "pydicom-data/SC_rgb_expb_16bit.dcm": (1, 100, 100),
    "pydicom-data/SC_rgb_expb_16bit_2frame.dcm": (2, 100, 100),
    "pydicom-data/SC_rgb_expb_2frame.dcm": (2, 100, 100),
    "pydicom-data/SC_rgb_expb_32bit.dcm": (1, 100, 100),
    "pydicom-data/SC_rgb_expb_32bit_2frame.dcm": (2, 100, 100),
    "pydicom-data/SC_rgb_gdcm2k_uncompressed.dcm": (1, 100, 100),
    "pydicom-data/SC_ybr_full_uncompressed.dcm": (1, 100, 100),
    "pydicom-data/US1_J2KI.dcm": (1, 480, 640),
    "pydicom-data/US1_J2KR.dcm": (1, 480, 640),
    "pydicom-data/US1_UNCI.dcm": (1, 480, 640),
    "pydicom-data/US1_UNCR.dcm": (1, 480, 640),
    "pydicom-data/bad_sequence.dcm": (1, 512, 512),
    "pydicom-data/color-pl.dcm": (1, 120, 256),
    "pydicom-data/color-px.dcm": (1, 120, 256),
    "pydicom-data/color3d_jpeg_baseline.dcm": (120, 480, 640),
    "pydicom-data/eCT_Supplemental.dcm": (2, 512, 512),
    "pydicom-data/emri_small.dcm": (10, 64, 64),
    "pydicom-data/emri_small_RLE.dcm": (10, 64, 64),
    "pydicom-data/emri_small_big_endian.dcm": (10, 64, 64),
    "pydicom-data/emri_small_jpeg_2k_lossless.dcm": (10, 64, 64),
    "pydicom-data/emri_small_jpeg_ls_lossless.dcm": (10, 64, 64),
    "pydicom-data/explicit_VR-UN.dcm": (1, 512, 512),
    "pydicom-data/gdcm-US-ALOKA-16.dcm": (1, 480, 640),
    "pydicom-data/gdcm-US-ALOKA-16_big.dcm": (1, 480, 640),
    "pydicom-data/liver.dcm": (3, 512, 512),
    "pydicom-data/liver_expb.dcm": (3, 512, 512),
    "pydicom-data/mlut_18.dcm": (1, 512, 512),
    "pydicom-data/vlut_04.dcm": (1, 512, 512),
}

#: Files pydicom itself refuses to decode, though radview can and should read them.
PYDICOM_REFUSES: dict[str, str] = {}

#: radview bugs in a file's outcome or shape. Strict xfail: a fix makes the test fail here,
#: as a reminder to drop the entry.
OUTCOME_BUGS: dict[str, str] = {}

#: radview bugs in voxel values (strict xfail in test_voxels_match_pydicom). Fixed so far:
#: implicit-VR data under an explicit transfer syntax, 32-bit RGB luminance wrapping, 8-bit
#: samples in big-endian OW data, palette colour shown as indices.
VOXEL_BUGS: dict[str, str] = {}

#: Every PALETTE COLOR image of the corpus: like other colour images they are shown as the
#: luminance of their palette colours (indices are not intensities).
PALETTE_COLOUR: tuple[str, ...] = (
    "pydicom/examples_palette.dcm",
    "pydicom-data/OBXXXX1A.dcm",
    "pydicom-data/OBXXXX1A_2frame.dcm",
    "pydicom-data/OBXXXX1A_expb.dcm",
    "pydicom-data/OBXXXX1A_expb_2frame.dcm",
    "pydicom-data/OBXXXX1A_rle.dcm",
    "pydicom-data/OBXXXX1A_rle_2frame.dcm",
    "pydicom-data/OT-PAL-8-face.dcm",
    "pydicom-data/gdcm-US-ALOKA-16.dcm",
    "pydicom-data/gdcm-US-ALOKA-16_big.dcm",
)

OUTCOMES = {"image", "image_with_problems", "not_dicom", "not_image", "unsupported", "corrupt"}
PROBLEM_KINDS = {"not_dicom", "not_image", "unsupported", "corrupt", "unreadable", "duplicate"}

#: What pydicom raises for files it cannot decode (no pixels, broken or truncated data).
_PYDICOM_FAILURES = (InvalidDicomError, AttributeError, ValueError, RuntimeError,
                     NotImplementedError, KeyError, TypeError, EOFError)
_BT601 = np.array([0.299, 0.587, 0.114])


# ---------------------------------------------------------------------------- helpers
@dataclass
class _Run:
    """What radview made of one file."""

    path: Path
    discovery: Discovery
    loaded: list[tuple[SeriesStack, LoadResult]]
    leaked_warnings: list[str] = field(default_factory=list)

    @property
    def problems(self) -> list[FileProblem]:
        return [*self.discovery.problems, *(p for _, r in self.loaded for p in r.problems)]


def _run(path: Path) -> _Run:
    """The whole pipeline on one file. Warnings radview lets out are recorded (and then
    asserted absent) rather than raised, so a leak is reported with its message."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        discovery = discover([path])
        loaded = [(stack, load_stack(stack)) for stack in discovery.stacks]
    leaked = [f"{w.category.__name__}: {w.message}" for w in caught]
    return _Run(path, discovery, loaded, leaked)


def _decoded_slices(stack: SeriesStack, result: LoadResult) -> int:
    """Slices holding decoded pixels. The loader fills a slice it could not decode with one
    blank value, so when problems were reported a constant slice counts as not decoded."""
    voxels = result.volume.voxels
    return sum(
        1 for k, frame in enumerate(stack.slots) if frame is not None and np.ptp(voxels[k]) != 0
    )


def _outcome(run: _Run) -> str:
    if run.loaded:
        if not run.problems:
            return "image"
        if any(_decoded_slices(stack, result) for stack, result in run.loaded):
            return "image_with_problems"
    kinds = {p.kind for p in run.problems}
    if len(kinds) == 1:
        return kinds.pop()
    return (f"unclear: {len(run.loaded)} stack(s), {len(run.discovery.volume_files)} volume "
            f"file(s), problem kinds {sorted(kinds)}")


def _check_reports(run: _Run) -> None:
    """Every problem and warning is one non-empty line; every problem names the file."""
    for problem in run.problems:
        assert problem.path == str(run.path), problem
        assert problem.kind in PROBLEM_KINDS, problem
        assert isinstance(problem.reason, str) and problem.reason.strip(), problem
        assert len(problem.reason.splitlines()) == 1, problem
    for _, result in run.loaded:
        for text in result.volume.warnings:
            assert text.strip() and len(text.splitlines()) == 1, text
        assert result.volume.voxels.dtype != np.float64  # DESIGN: never float64 volumes
    assert not run.leaked_warnings, f"warnings escaped radview: {run.leaked_warnings}"


def _path(key: str) -> Path:
    source, relative = key.split("/", 1)
    if source not in ROOTS:
        pytest.skip(f"{source} is not installed")
    return ROOTS[source] / relative


def _params(keys, bugs: dict[str, str]) -> list:
    return [
        pytest.param(key, id=key, marks=pytest.mark.xfail(strict=True, reason=bugs[key]))
        if key in bugs else pytest.param(key, id=key)
        for key in keys
    ]


def _pydicom_pixels(path: Path) -> tuple[pydicom.Dataset, np.ndarray]:
    """pydicom's own reading, the reference (its complaints about these files are not tested)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = pydicom.dcmread(path, force=True)
        if "TransferSyntaxUID" not in ds.file_meta:
            # A preamble-less file: decode with the encoding pydicom guessed, as radview does.
            implicit, little = ds.original_encoding
            ds.file_meta.TransferSyntaxUID = (
                ImplicitVRLittleEndian if implicit
                else ExplicitVRLittleEndian if little else ExplicitVRBigEndian
            )
        return ds, ds.pixel_array


def _frames_of(ds: pydicom.Dataset, array: np.ndarray) -> np.ndarray:
    """pydicom's array as (frames, rows, columns[, samples])."""
    sample_axes = 3 if int(ds.get("SamplesPerPixel", 1) or 1) > 1 else 2
    return array.reshape(-1, *array.shape[-sample_axes:])


def _functional_group_item(ds: pydicom.Dataset, frame: int, keyword: str):
    per_frame = ds.get("PerFrameFunctionalGroupsSequence")
    if per_frame and frame < len(per_frame) and keyword in per_frame[frame]:
        return per_frame[frame][keyword][0]
    shared = ds.get("SharedFunctionalGroupsSequence")
    if shared and keyword in shared[0]:
        return shared[0][keyword][0]
    return None


def _expected_slice(ds: pydicom.Dataset, pixels: np.ndarray, frame: int) -> np.ndarray:
    """What radview should show for one frame of pydicom's array."""
    if pixels.ndim == 3:  # colour (already RGB from pydicom): ITU-R BT.601 luminance
        return np.rint(pixels.astype(np.float64) @ _BT601)
    photometric = str(ds.PhotometricInterpretation).upper()
    if photometric == "PALETTE COLOR":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return np.rint(apply_color_lut(pixels, ds).astype(np.float64) @ _BT601)
    stored = pixels.astype(np.int64)  # MONOCHROME1 keeps its values (displayed inverted)
    # Enhanced objects keep their rescale in functional groups; pydicom's apply_modality_lut
    # reads only the top-level Rescale Slope/Intercept and Modality LUT Sequence.
    transform = _functional_group_item(ds, frame, "PixelValueTransformationSequence")
    if transform is not None:
        return stored * float(transform.RescaleSlope) + float(transform.RescaleIntercept)
    if "DoseGridScaling" in ds and "RescaleSlope" not in ds:  # RT Dose: scaled to Gy
        return stored * float(ds.DoseGridScaling)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return apply_modality_lut(stored, ds)


def _assert_slice(actual: np.ndarray, expected: np.ndarray, what: str, colour: bool) -> None:
    if actual.dtype.kind == "f":
        np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-3, err_msg=what)
    elif colour:  # radview rounds float32 luminance: a .5 may round the other way
        np.testing.assert_allclose(actual.astype(np.float64), expected, rtol=0, atol=1,
                                   err_msg=what)
    else:
        np.testing.assert_array_equal(actual, expected, err_msg=what)


# ---------------------------------------------------------------------------- the tables
def test_corpus_is_installed():
    """Both sources are test dependencies; losing one would silently shrink this test."""
    assert set(ROOTS) == {"pydicom", "pydicom-data"}, "pip install pydicom-data (test extra)"
    assert all(root.is_dir() for root in ROOTS.values()), ROOTS
    assert len(FILES) == len(EXPECTED)


def test_every_file_on_disk_has_an_expectation():
    assert sorted(set(FILES) - set(EXPECTED)) == []


def test_every_expectation_names_a_file_on_disk():
    stale = [key for key in EXPECTED if key.split("/", 1)[0] in ROOTS and key not in FILES]
    assert stale == []


def test_tables_agree_with_each_other():
    assert set(EXPECTED.values()) <= OUTCOMES
    images = {k for k, v in EXPECTED.items() if v in ("image", "image_with_problems")}
    assert set(EXPECTED_SHAPES) == images
    assert set(PYDICOM_REFUSES) <= images
    assert set(OUTCOME_BUGS) <= set(EXPECTED)
    assert set(VOXEL_BUGS) <= images - set(PYDICOM_REFUSES)
    assert set(PALETTE_COLOUR) <= images


# ---------------------------------------------------------------------------- per file
@pytest.mark.timeout(60)
@pytest.mark.parametrize("key", _params(sorted(EXPECTED), OUTCOME_BUGS))
def test_file_loads_or_is_reported(key):
    """Loads as an image of the expected shape, or is reported with the expected kind; never
    an unhandled exception (it would fail this test with its traceback), never a hang."""
    run = _run(_path(key))
    _check_reports(run)
    outcome = _outcome(run)
    assert outcome == EXPECTED[key], [(p.kind, p.reason) for p in run.problems]
    if outcome in ("image", "image_with_problems"):
        assert [r.volume.voxels.shape for _, r in run.loaded] == [EXPECTED_SHAPES[key]]
    if run.loaded and outcome == "corrupt":  # decode failures name themselves
        assert all("cannot decode" in p.reason for p in run.problems), run.problems


@pytest.mark.timeout(60)
@pytest.mark.parametrize("key", sorted(EXPECTED))
def test_pydicom_agrees(key):
    """pydicom decodes every image entry to the expected shape, and none of the others: no
    reported file hides an image that pydicom could read."""
    path = _path(key)
    if EXPECTED[key] in ("image", "image_with_problems") and key not in PYDICOM_REFUSES:
        ds, array = _pydicom_pixels(path)
        assert _frames_of(ds, array).shape[:3] == EXPECTED_SHAPES[key]
    else:
        with pytest.raises(_PYDICOM_FAILURES):
            _pydicom_pixels(path)


VOXEL_KEYS = sorted(k for k, v in EXPECTED.items() if v == "image" and k not in PYDICOM_REFUSES)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("key", _params(VOXEL_KEYS, VOXEL_BUGS))
def test_voxels_match_pydicom(key):
    """Voxels are pydicom's pixels after the modality LUT (rescale or Modality LUT Sequence),
    with colour as luminance, slice by slice in radview's order (MONOCHROME1 keeps its values)."""
    path = _path(key)
    ds, array = _pydicom_pixels(path)
    frames = _frames_of(ds, array)
    if str(ds.PhotometricInterpretation).upper() == "PALETTE COLOR":
        assert key in PALETTE_COLOUR
    [(stack, result)] = _run(path).loaded
    voxels = result.volume.voxels
    for slot, frame in enumerate(stack.slots):
        assert frame is not None
        expected = _expected_slice(ds, frames[frame.frame], frame.frame)
        _assert_slice(voxels[slot], expected, f"{key} slice {slot} = frame {frame.frame}",
                      colour=frames.ndim == 4)


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    "key",
    [pytest.param(k, id=k) for k in PALETTE_COLOUR],
)
def test_palette_colour_is_shown_as_luminance(key):
    path = _path(key)
    ds, array = _pydicom_pixels(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rgb = _frames_of(ds, array)
        rgb = apply_color_lut(rgb, ds)
    [(stack, result)] = _run(path).loaded
    for slot, frame in enumerate(stack.slots):
        assert frame is not None
        expected = np.rint(rgb[frame.frame].astype(np.float64) @ _BT601)
        _assert_slice(result.volume.voxels[slot], expected, f"{key} slice {slot}", colour=True)


#: Transfer syntaxes the voxel comparison must cover with single-frame greyscale files.
_GREYSCALE_SYNTAXES = {
    ExplicitVRLittleEndian, ImplicitVRLittleEndian, ExplicitVRBigEndian,
    DeflatedExplicitVRLittleEndian, RLELossless, JPEGExtended12Bit, JPEGLosslessSV1,
    JPEGLSLossless, JPEGLSNearLossless, JPEG2000Lossless, JPEG2000,
}


def test_voxel_comparison_covers_syntaxes_and_sample_types():
    """The files whose voxels are compared (and pass) span the codecs and sample types."""
    if set(ROOTS) != {"pydicom", "pydicom-data"}:
        pytest.skip("needs both sources")
    greyscale, colour_syntaxes = [], set()
    for key in VOXEL_KEYS:
        if key in VOXEL_BUGS:
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(_path(key), stop_before_pixels=True, force=True)
        syntax = getattr(ds, "file_meta", pydicom.Dataset()).get("TransferSyntaxUID")
        photometric = str(ds.PhotometricInterpretation).upper()
        single_frame = int(ds.get("NumberOfFrames") or 1) == 1
        if photometric in ("MONOCHROME1", "MONOCHROME2") and single_frame:
            greyscale.append((syntax, int(ds.BitsAllocated), int(ds.PixelRepresentation)))
        elif int(ds.SamplesPerPixel) == 3:
            colour_syntaxes.add(syntax)
    assert len(greyscale) >= 15
    assert {s for s, _, _ in greyscale} >= _GREYSCALE_SYNTAXES
    assert {1, 8, 16, 32} <= {bits for _, bits, _ in greyscale}
    assert {0, 1} <= {sign for _, _, sign in greyscale}
    assert JPEGBaseline8Bit in colour_syntaxes  # no greyscale baseline JPEG in the corpus
