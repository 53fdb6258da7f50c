"""DICOM reading for the image tower's inputs (method.md section 7, datasets.md "DICOM handling").

``mode="voi"`` (ours): rescale slope/intercept, VOI LUT or window, MONOCHROME1 inverted, any bit depth.
``mode="release"``: the release's ``pixel_array`` scaled by 255/max, inverted when MONOCHROME1.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.pixels import apply_modality_lut, apply_voi_lut

log = logging.getLogger(__name__)

DicomMode = Literal["voi", "release"]

# Packages that add pixel-data decoders to pydicom, per family of compressed transfer syntaxes.
_DECODER_HINTS: dict[str, str] = {
    "JPEG 2000": "pylibjpeg pylibjpeg-openjpeg (or python-gdcm)",
    "JPEG-LS": "pylibjpeg pylibjpeg-libjpeg (or pyjpegls, python-gdcm)",
    "JPEG Lossless": "pylibjpeg pylibjpeg-libjpeg (or python-gdcm)",
    "JPEG": "pylibjpeg pylibjpeg-libjpeg (or pillow, python-gdcm)",
    "RLE": "pylibjpeg pylibjpeg-rle (or python-gdcm)",
    "High-Throughput JPEG 2000": "pylibjpeg pylibjpeg-openjpeg (or python-gdcm)",
}


class DicomDecoderMissingError(RuntimeError):
    """The pixel data is compressed and no installed pydicom plugin can decode it."""


def _decoder_hint(syntax_name: str) -> str:
    for family in sorted(_DECODER_HINTS, key=len, reverse=True):
        if family.lower() in syntax_name.lower():
            return _DECODER_HINTS[family]
    return "pylibjpeg with its plugins, or python-gdcm"


def read_dataset(path: str | Path) -> Dataset:
    """Parse a DICOM file; ``FileNotFoundError`` / ``ValueError`` name the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"DICOM file not found: {path}")
    try:
        return pydicom.dcmread(path)
    except InvalidDicomError as err:
        forced = _read_without_preamble(path)
        if forced is None:
            raise ValueError(f"{path} is not a readable DICOM file: {err}") from err
        return forced
    except (OSError, EOFError, KeyError, TypeError, ValueError) as err:
        raise ValueError(f"{path}: corrupt DICOM file ({type(err).__name__}: {err})") from err


def _read_without_preamble(path: Path) -> Dataset | None:
    """Old files without the 128-byte preamble / ``DICM`` marker: parsed with ``force=True``, accepted only
    when they describe an image (Rows, Columns and PixelData present)."""
    try:
        ds = pydicom.dcmread(path, force=True)
        if all(key in ds for key in ("Rows", "Columns", "PixelData")):
            return ds
    except Exception:  # any parse failure means "not DICOM"
        return None
    return None


def pixel_array(ds: Dataset, path: str | Path) -> np.ndarray:
    """Stored pixel values of the first frame [H, W] (grayscale); clear errors for missing decoders."""
    if "PixelData" not in ds:
        raise ValueError(f"{path}: DICOM file has no pixel data")
    syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    try:
        arr: np.ndarray = ds.pixel_array
    except (RuntimeError, NotImplementedError) as err:
        if syntax is not None and syntax.is_compressed:
            raise DicomDecoderMissingError(
                f"{path}: cannot decode pixel data compressed with transfer syntax {syntax} "
                f"({syntax.name}); install a decoder plugin for pydicom, e.g. "
                f"`pip install {_decoder_hint(syntax.name)}` ({err})"
            ) from err
        raise ValueError(f"{path}: cannot decode pixel data ({err})") from err
    except (ValueError, AttributeError, KeyError, TypeError) as err:
        raise ValueError(f"{path}: corrupt or incomplete pixel data ({type(err).__name__}: {err})") from err
    samples = int(ds.get("SamplesPerPixel", 1))
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    if frames > 1:
        log.warning("%s has %d frames; using the first", path, frames)
        arr = arr[0]
    if samples > 1:
        raise ValueError(
            f"{path}: colour DICOM ({samples} samples per pixel, {ds.get('PhotometricInterpretation')}) "
            "is not a radiograph; convert it to grayscale first"
        )
    if arr.ndim != 2:
        raise ValueError(f"{path}: expected a 2-D image, got pixel array of shape {arr.shape}")
    return arr


def _widen_8bit_voi_lut(ds: Dataset) -> None:
    """Declare an 8-bit VOI LUT as 16-bit (same values) in place.

    pydicom's ``apply_voi`` indexes through an array of the LUT's entry dtype, so with 8-bit entries and more
    than 256 of them the indices wrap around (uint8); 16-bit entries give the same values without wrapping.
    """
    for item in ds.get("VOILUTSequence", []):
        descriptor = [int(v) for v in item.LUTDescriptor]
        if descriptor[2] == 8:
            item.LUTDescriptor = [descriptor[0], descriptor[1], 16]


def _voi_output_range(ds: Dataset) -> tuple[float, float] | None:
    """The output range of the VOI transform that ``apply_voi_lut`` will use, or None when there is none."""
    if ds.get("VOILUTSequence"):
        item = ds.VOILUTSequence[0]
        entries = int(item.LUTDescriptor[0]) or 2**16
        first = int(item.LUTDescriptor[1])
        probe = np.arange(first, first + entries, dtype=np.int64)
    elif "WindowCenter" in ds and "WindowWidth" in ds:
        center = float(_first(ds.WindowCenter))
        width = abs(float(_first(ds.WindowWidth)))
        reach = 16.0 * max(width, 1.0)  # far enough that even the SIGMOID function reaches its limits
        probe = np.array([center - reach, center + reach], dtype=np.float64)
    else:
        return None
    out = np.asarray(apply_voi_lut(probe, ds), dtype=np.float64)
    return float(out.min()), float(out.max())


def _first(value: Any) -> Any:
    return value[0] if isinstance(value, pydicom.multival.MultiValue | list | tuple) else value


def _to_dtype(unit: np.ndarray, out_dtype: Any) -> np.ndarray:
    """[0, 1] floats to ``out_dtype``: uint8 rounds to 0..255, float dtypes keep [0, 1]."""
    dtype = np.dtype(out_dtype)
    if dtype == np.uint8:
        return np.rint(np.clip(unit, 0.0, 1.0) * 255.0).astype(np.uint8)
    if dtype.kind == "f":
        return np.clip(unit, 0.0, 1.0).astype(dtype)
    raise ValueError(f"out_dtype must be uint8 or a float dtype, got {dtype}")


def _has_voi(ds: Dataset) -> bool:
    return bool(ds.get("VOILUTSequence")) or ("WindowCenter" in ds and "WindowWidth" in ds)


def display_intensities(ds: Dataset, stored: np.ndarray) -> np.ndarray:
    """Stored values (any shape) -> display intensities in [0, 1] (float64), computed element by element."""
    values = np.asarray(apply_modality_lut(stored, ds), dtype=np.float64)
    out_range = _voi_output_range(ds)
    if out_range is not None:
        source = values if not ds.get("VOILUTSequence") else np.rint(values).astype(np.int64)
        values = np.asarray(apply_voi_lut(source, ds), dtype=np.float64)
        low, high = out_range
    else:
        low, high = float(values.min()), float(values.max())
    unit = (values - low) / (high - low) if high > low else np.zeros_like(values)
    if str(ds.get("PhotometricInterpretation", "MONOCHROME2")).strip() == "MONOCHROME1":
        unit = 1.0 - unit
    return unit


def voi_pixels(ds: Dataset, arr: np.ndarray, out_dtype: Any = np.float64) -> np.ndarray:
    """Display image [H, W]: modality LUT, VOI LUT/window, MONOCHROME1 inverted (``out_dtype``: read_dicom).

    With a VOI LUT or window the window's output range maps to [0, 1] (values outside the window saturate);
    without one, the image's own min..max does. Integer images are mapped through a table over their
    min..max stored values (the same numbers as per pixel, one lookup per pixel). An 8-bit VOI LUT descriptor
    in ``ds`` is rewritten as 16-bit (see ``_widen_8bit_voi_lut``).
    """
    _widen_8bit_voi_lut(ds)
    if np.issubdtype(arr.dtype, np.integer) and arr.size:
        low, high = int(arr.min()), int(arr.max())
        # a non-linear modality LUT without VOI would take min/max over the table, not the image: per pixel
        if high - low <= 2**17 and (_has_voi(ds) or not ds.get("ModalityLUTSequence")):
            domain = np.arange(low, high + 1, dtype=np.int64).astype(arr.dtype)
            table = _to_dtype(display_intensities(ds, domain), out_dtype)
            index = arr - low if np.issubdtype(arr.dtype, np.unsignedinteger) else arr.astype(np.int64) - low
            return table[index]
    return _to_dtype(display_intensities(ds, arr), out_dtype)


def release_pixels(ds: Dataset, arr: np.ndarray) -> np.ndarray:
    """The release's 8-bit image (uint8 [H, W]): ``|x * 255 / max|`` saturated, inverted when MONOCHROME1."""
    peak = float(arr.max())
    if peak <= 0:
        log.warning("DICOM pixel maximum is %s: the release's 255/max scaling is undefined; zeros", peak)
        out: np.ndarray = np.zeros(arr.shape, dtype=np.uint8)
    else:
        native = arr.dtype in (np.uint8, np.int8, np.uint16, np.int16, np.int32)
        src = arr if native else arr.astype(np.float64)
        out = np.asarray(cv2.convertScaleAbs(src, alpha=255.0 / peak))
    if str(ds.get("PhotometricInterpretation", "MONOCHROME2")).strip() == "MONOCHROME1":
        out = np.asarray(cv2.bitwise_not(out))
    return np.asarray(out, dtype=np.uint8)


def _check_rescale(ds: Dataset, path: str | Path) -> None:
    """A RescaleSlope of 0 (or not a finite number) maps every pixel to the intercept: a black image.
    It is invalid (PS3.3 C.11.1.1.2), so it is replaced by the identity (1, and intercept 0 when that is not
    finite either), with a warning naming the file."""
    for key, identity in (("RescaleSlope", 1.0), ("RescaleIntercept", 0.0)):
        if key not in ds:
            continue
        raw = ds.get(key)
        try:
            value = float(raw)
        except (TypeError, ValueError):
            value = math.nan
        if not math.isfinite(value) or (key == "RescaleSlope" and value == 0.0):
            log.warning("%s: %s %r is invalid; using %g (identity)", path, key, raw, identity)
            setattr(ds, key, identity)


def read_dicom(path: str | Path, *, mode: DicomMode = "voi", out_dtype: Any = np.uint8) -> np.ndarray:
    """Read a DICOM radiograph as grayscale [H, W].

    ``out_dtype=np.uint8`` gives 0..255; a float dtype gives [0, 1] ("release" mode: the 8-bit image / 255).
    Raises ``FileNotFoundError`` (missing), ``ValueError`` (not DICOM, corrupt, colour) and
    ``DicomDecoderMissingError`` (a ``RuntimeError``: compressed and no decoder plugin), each naming the file.
    """
    if mode not in ("voi", "release"):
        raise ValueError(f"DICOM mode must be 'voi' or 'release', got {mode!r}")
    _to_dtype(np.zeros(1), out_dtype)  # validates out_dtype before any file work
    ds = read_dataset(path)
    arr = pixel_array(ds, path)
    if mode == "release":
        eight_bit = release_pixels(ds, arr)
        if np.dtype(out_dtype) == np.uint8:
            return eight_bit
        return _to_dtype(eight_bit.astype(np.float64) / 255.0, out_dtype)
    _check_rescale(ds, path)
    try:
        return voi_pixels(ds, arr, out_dtype)
    except (ValueError, NotImplementedError, OverflowError, AttributeError, KeyError, IndexError) as err:
        raise ValueError(
            f"{path}: invalid modality/VOI LUT attributes ({type(err).__name__}: {err})"
        ) from err
