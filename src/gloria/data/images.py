"""Image reading for the image tower (method.md section 7): any supported source to 8-bit grayscale [H, W].

JPEG/PNG are read by OpenCV as 8-bit grayscale like the release; DICOM goes through ``gloria.data.dicom``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from gloria.data.dicom import DicomMode, read_dicom

log = logging.getLogger(__name__)

DICOM_SUFFIXES = (".dcm", ".dicom")
ImageSource = str | Path | np.ndarray


def is_dicom(path: str | Path) -> bool:
    """True for a ``.dcm``/``.dicom`` name or a file with the DICOM preamble (``DICM`` at byte 128)."""
    path = Path(path)
    if path.suffix.lower() in DICOM_SUFFIXES:
        return True
    try:
        with path.open("rb") as handle:
            head = handle.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:132] == b"DICM"


def array_to_gray(array: np.ndarray, name: str = "array") -> np.ndarray:
    """An image array as uint8 [H, W].

    Shapes: [H, W], [H, W, 1], [H, W, 3] (RGB) or [H, W, 4] (RGBA); colour is converted with OpenCV's
    luma weights. Scaling: uint8 is kept; other integer arrays whose values lie in 0..255 are cast, wider
    ranges are min-max scaled to 0..255; float arrays with all values in [0, 1] are multiplied by 255 and
    rounded, other float arrays are min-max scaled. NaN/inf raise ``ValueError``.
    """
    arr = np.asarray(array)
    if arr.ndim == 3 and arr.shape[2] in (1, 3, 4):
        if arr.shape[2] == 1:
            arr = arr[:, :, 0]
        else:
            arr = _scale_to_uint8(arr, name)
            code = cv2.COLOR_RGB2GRAY if arr.shape[2] == 3 else cv2.COLOR_RGBA2GRAY
            return np.ascontiguousarray(cv2.cvtColor(np.ascontiguousarray(arr), code))
    if arr.ndim != 2:
        raise ValueError(f"{name}: expected an image of shape [H, W] or [H, W, 1|3|4], got {arr.shape}")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(f"{name}: empty image of shape {arr.shape}")
    return np.ascontiguousarray(_scale_to_uint8(arr, name))


def _scale_to_uint8(arr: np.ndarray, name: str) -> np.ndarray:
    if arr.dtype == np.uint8:
        return arr
    if arr.dtype == np.bool_:
        return arr.astype(np.uint8) * 255
    if not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
        raise ValueError(f"{name}: unsupported image dtype {arr.dtype}")
    values = arr.astype(np.float64)
    if not np.isfinite(values).all():
        raise ValueError(f"{name}: image contains NaN or infinite values")
    low, high = float(values.min()), float(values.max())
    if np.issubdtype(arr.dtype, np.integer) and low >= 0 and high <= 255:
        return arr.astype(np.uint8)
    if np.issubdtype(arr.dtype, np.floating) and low >= 0.0 and high <= 1.0:
        return np.rint(values * 255.0).astype(np.uint8)
    if high == low:
        return np.zeros(arr.shape, dtype=np.uint8)
    return np.rint((values - low) * (255.0 / (high - low))).astype(np.uint8)


def _read_raster(path: Path) -> np.ndarray:
    """JPEG/PNG/... through ``cv2.imread(path, IMREAD_GRAYSCALE)`` (16-bit PNGs are reduced to 8 bits)."""
    image = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if image is None:
        raise ValueError(f"cannot read image file {path}: not a supported image format or corrupt")
    return np.asarray(image, dtype=np.uint8)


def read_image(source: ImageSource | Any, *, dicom_mode: DicomMode = "voi") -> np.ndarray:
    """Read one image as uint8 grayscale [H, W].

    ``source`` is a path (JPEG/PNG/any OpenCV format; DICOM by ``.dcm``/``.dicom`` or the ``DICM`` preamble,
    read with ``dicom_mode``), a numpy array (see ``array_to_gray`` for the scaling) or a PIL image
    (converted with ``convert("L")``). A missing file raises ``FileNotFoundError``; an unreadable one
    ``ValueError``; both name the file.
    """
    if isinstance(source, np.ndarray):
        return array_to_gray(source)
    if isinstance(source, str | Path):
        path = Path(source)
        if not path.is_file():
            raise FileNotFoundError(f"image file not found: {path}")
        if is_dicom(path):
            return read_dicom(path, mode=dicom_mode, out_dtype=np.uint8)
        try:
            return _read_raster(path)
        except ValueError:
            try:  # a DICOM without preamble and without a .dcm name
                return read_dicom(path, mode=dicom_mode, out_dtype=np.uint8)
            except (ValueError, RuntimeError):
                pass
            raise
    if hasattr(source, "convert") and hasattr(source, "size"):  # PIL.Image.Image without importing PIL
        return array_to_gray(np.asarray(source.convert("L")), name="PIL image")
    raise ValueError(f"cannot read an image from a {type(source).__name__}; pass a path, array or PIL image")
