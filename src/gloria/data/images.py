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


MAX_PIXELS = 2**30  # OpenCV's default decode limit (CV_IO_MAX_IMAGE_PIXELS); refused before decoding
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
JPEG_START, JPEG_END = b"\xff\xd8", b"\xff\xd9"
JPEG_TAIL = 1 << 16  # the end-of-image marker must lie in the last 64 KiB (trailing padding allowed)
_SOF_MARKERS = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF})


class ImageFileError(ValueError):
    """A raster file that is recognised but refused: truncated, or too many pixels."""


def _png_header(head: bytes) -> tuple[int, int, int] | None:
    """(width, height, bit depth) from a PNG's IHDR chunk, or None."""
    if not head.startswith(PNG_SIGNATURE) or len(head) < 25 or head[12:16] != b"IHDR":
        return None
    return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big"), head[24]


def _png_significant_bits(path: Path) -> int | None:
    """The gray channel's significant bits from a PNG's ``sBIT`` chunk (before the image data), or None."""
    with path.open("rb") as handle:
        handle.seek(8)
        while True:
            header = handle.read(8)
            if len(header) < 8:
                return None
            length, kind = int.from_bytes(header[:4], "big"), header[4:8]
            if kind == b"sBIT":
                data = handle.read(length)
                return data[0] if data else None
            if kind in (b"IDAT", b"IEND"):
                return None
            handle.seek(length + 4, 1)  # data and CRC


def _jpeg_size(path: Path) -> tuple[int, int] | None:
    """(width, height) from a JPEG's start-of-frame segment, or None."""
    with path.open("rb") as handle:
        if handle.read(2) != JPEG_START:
            return None
        while True:
            marker = handle.read(2)
            if len(marker) < 2 or marker[0] != 0xFF:
                return None
            if marker[1] in (0xD8, 0x01) or 0xD0 <= marker[1] <= 0xD7:
                continue
            size = handle.read(2)
            if len(size) < 2:
                return None
            length = int.from_bytes(size, "big")
            if marker[1] in _SOF_MARKERS:
                frame = handle.read(5)
                return (
                    (int.from_bytes(frame[3:5], "big"), int.from_bytes(frame[1:3], "big"))
                    if len(frame) == 5
                    else None
                )
            handle.seek(length - 2, 1)


def check_raster_file(path: Path) -> int | None:
    """Checks before decoding: a JPEG must end with its end-of-image marker (OpenCV decodes a truncated one
    with a grey lower part and no error); an image over ``MAX_PIXELS`` is refused with its size. Returns the
    PNG bit depth (None for other formats). Raises ``ValueError`` naming the file."""
    with path.open("rb") as handle:
        head = handle.read(32)
        handle.seek(0, 2)
        end = handle.tell()
        handle.seek(max(0, end - JPEG_TAIL))
        tail = handle.read()
    size: tuple[int, int] | None = None
    depth = None
    png = _png_header(head)
    if png is not None:
        size, depth = png[:2], png[2]
    elif head.startswith(JPEG_START):
        if JPEG_END not in tail:
            raise ImageFileError(f"truncated JPEG {path}: no end-of-image marker (the file is cut short)")
        size = _jpeg_size(path)
    if size is not None and size[0] * size[1] > MAX_PIXELS:
        raise ImageFileError(
            f"image {path} is {size[0]} x {size[1]} = {size[0] * size[1]:,} pixels, over the limit of "
            f"{MAX_PIXELS:,} (OpenCV's decode limit); downscale it first"
        )
    return depth


def _deep_png_to_uint8(image: np.ndarray, path: Path) -> np.ndarray:
    """A 16-bit gray PNG to 8 bits by its real bit depth: the ``sBIT`` chunk when present, otherwise the
    bits its largest value needs (a 12-bit image in a 16-bit file is scaled by 255/4095, not taken >> 8).
    A full 16-bit image is ``>> 8`` (what OpenCV's 8-bit read gives)."""
    peak = int(image.max()) if image.size else 0
    bits = _png_significant_bits(path) or max(8, peak.bit_length())
    bits = max(bits, peak.bit_length())  # an sBIT smaller than the values would overflow
    if bits >= 16:
        return np.asarray(image >> 8, dtype=np.uint8)
    scaled = np.rint(image.astype(np.float32) * np.float32(255.0 / (2**bits - 1)))
    return np.asarray(np.clip(scaled, 0, 255), dtype=np.uint8)


def _read_raster(path: Path) -> np.ndarray:
    """JPEG/PNG/... through ``cv2.imread(path, IMREAD_GRAYSCALE)``; a 16-bit PNG is read at its depth and
    scaled by its real bit depth (``_deep_png_to_uint8``). Truncated JPEGs and images over ``MAX_PIXELS``
    raise ``ValueError`` (``check_raster_file``)."""
    depth = check_raster_file(path)
    if depth == 16:
        deep = cv2.imread(str(path), cv2.IMREAD_ANYDEPTH)
        if deep is not None and deep.dtype == np.uint16 and deep.ndim == 2:
            return _deep_png_to_uint8(deep, path)
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
        except ImageFileError:
            raise
        except ValueError:
            try:  # a DICOM without preamble and without a .dcm name
                return read_dicom(path, mode=dicom_mode, out_dtype=np.uint8)
            except (ValueError, RuntimeError):
                pass
            raise
    if hasattr(source, "convert") and hasattr(source, "size"):  # PIL.Image.Image without importing PIL
        return array_to_gray(np.asarray(source.convert("L")), name="PIL image")
    raise ValueError(f"cannot read an image from a {type(source).__name__}; pass a path, array or PIL image")
