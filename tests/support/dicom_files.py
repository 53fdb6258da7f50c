"""Write small DICOM files in the real format for tests (pydicom): grayscale radiographs with any bit depth.

Typical use::

    from support.dicom_files import write_dicom
    path = write_dicom(tmp_path / "x.dcm", pixels, photometric="MONOCHROME1", bits_stored=12,
                       window=(2048, 4096), rescale=(1.0, -1024.0))

Every option maps onto one DICOM attribute, so a test states exactly which part of the display pipeline
(modality LUT -> VOI LUT/window -> photometric interpretation) it exercises.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import (
    ExplicitVRLittleEndian,
    JPEGLSLossless,
    SecondaryCaptureImageStorage,
    generate_uid,
)

__all__ = ["write_compressed_stub", "write_dicom"]


def _base_dataset(path: Path, transfer_syntax: str, preamble: bool) -> FileDataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = transfer_syntax
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128 if preamble else None)
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "CR"
    ds.PatientID = "TEST"
    return ds


def write_dicom(
    path: str | Path,
    pixels: np.ndarray,
    *,
    photometric: str = "MONOCHROME2",
    bits_stored: int | None = None,
    rescale: tuple[float, float] | None = None,
    window: tuple[float, float] | None = None,
    voi_function: str | None = None,
    voi_lut: tuple[int, Sequence[int], int] | None = None,
    preamble: bool = True,
) -> Path:
    """Write ``pixels`` [H, W] (stored values) as an uncompressed single-frame grayscale DICOM.

    pixels:       uint8 -> 8 bits allocated; uint16 / int16 -> 16 bits allocated (int16: signed,
                  PixelRepresentation 1).
    photometric:  "MONOCHROME2" (high = bright) or "MONOCHROME1" (high = dark).
    bits_stored:  BitsStored (default: all allocated bits); values must fit in it.
    rescale:      (RescaleSlope, RescaleIntercept) -- the modality LUT.
    window:       (WindowCenter, WindowWidth); ``voi_function`` sets VOILUTFunction (LINEAR, LINEAR_EXACT,
                  SIGMOID).
    voi_lut:      (first mapped value, LUT entries, bits per entry) -- a VOILUTSequence with one item.
    preamble:     False writes no 128-byte preamble / ``DICM`` marker (pydicom still reads it).
    Returns the path.
    """
    path = Path(path)
    arr = np.ascontiguousarray(pixels)
    if arr.ndim != 2:
        raise ValueError(f"pixels must be [H, W], got shape {arr.shape}")
    if arr.dtype not in (np.uint8, np.uint16, np.int16):
        raise ValueError(f"pixels must be uint8, uint16 or int16, got {arr.dtype}")
    allocated = arr.dtype.itemsize * 8
    stored = allocated if bits_stored is None else bits_stored
    signed = arr.dtype == np.int16
    low, high = (-(2 ** (stored - 1)), 2 ** (stored - 1) - 1) if signed else (0, 2**stored - 1)
    if arr.size and (int(arr.min()) < low or int(arr.max()) > high):
        raise ValueError(f"pixel values {int(arr.min())}..{int(arr.max())} do not fit in {stored} bits")

    ds = _base_dataset(path, ExplicitVRLittleEndian, preamble)
    ds.Rows, ds.Columns = arr.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated = allocated
    ds.BitsStored = stored
    ds.HighBit = stored - 1
    ds.PixelRepresentation = 1 if signed else 0
    if rescale is not None:
        ds.RescaleSlope = f"{rescale[0]:g}"
        ds.RescaleIntercept = f"{rescale[1]:g}"
        ds.RescaleType = "US"
    if window is not None:
        ds.WindowCenter = f"{window[0]:g}"
        ds.WindowWidth = f"{window[1]:g}"
    if voi_function is not None:
        ds.VOILUTFunction = voi_function
    if voi_lut is not None:
        first, entries, depth = voi_lut
        if any(not 0 <= int(v) < 2**depth for v in entries):
            raise ValueError(f"VOI LUT entries must fit in {depth} bits")
        item = Dataset()
        item.LUTDescriptor = [len(entries), first, depth]
        item.LUTData = [int(v) for v in entries]
        item["LUTDescriptor"].VR = "SS" if first < 0 else "US"
        item["LUTData"].VR = "US"
        ds.VOILUTSequence = DicomSequence([item])
    ds.PixelData = arr.tobytes()
    ds["PixelData"].VR = "OW" if allocated > 8 else "OB"
    ds.save_as(path, enforce_file_format=preamble)
    return path


def write_compressed_stub(
    path: str | Path, *, shape: tuple[int, int] = (8, 8), syntax: str = JPEGLSLossless
) -> Path:
    """A DICOM whose pixel data claims a compressed transfer syntax (default JPEG-LS) but holds junk bytes.

    Parsing works; decoding needs a plugin -- the test of the "decoder missing" error when none is installed.
    """
    path = Path(path)
    ds = _base_dataset(path, syntax, True)
    ds.Rows, ds.Columns = shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    ds.PixelData = encapsulate([b"\xff\xd8" + b"\x00" * 30 + b"\xff\xd9"])
    ds["PixelData"].VR = "OB"
    ds["PixelData"].is_undefined_length = True
    ds.save_as(path, enforce_file_format=True)
    return path
