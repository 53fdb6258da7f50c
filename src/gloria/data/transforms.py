"""Image preprocessing of the release (method.md section 7) with its geometry recorded.

Resize the longer side to ``imsize`` (INTER_AREA, float-ratio rule), zero-pad to a square, 3 channels,
centre/random crop, normalise -> [3, crop, crop]; ``PreprocessGeometry`` maps crop-grid maps back to pixels.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision import transforms as T

from gloria.config import ImageTransformConfig

NORMALISATION: dict[str, tuple[tuple[float, float, float], tuple[float, float, float]]] = {
    "half": ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
}


def resized_size(height: int, width: int, imsize: int) -> tuple[int, int]:
    """(h', w') with the longer side = ``imsize``: the release computes the ratio first, in floating point.

    h >= w: ``(imsize, int(w * (imsize / h)))``, else ``(int(h * (imsize / w)), imsize)`` -- which differs
    from ``int(w * imsize / h)`` for some sizes. A short side that would round to 0 becomes 1.
    """
    if height < 1 or width < 1:
        raise ValueError(f"image size must be positive, got {height}x{width}")
    if imsize < 1:
        raise ValueError(f"imsize must be positive, got {imsize}")
    if height >= width:
        return imsize, max(1, int(width * (imsize / height)))
    return max(1, int(height * (imsize / width))), imsize


def pad_split(pad: int) -> tuple[int, int]:
    """Zero padding before/after: floor(pad / 2) before, ceil(pad / 2) after."""
    return pad // 2, pad - pad // 2


def resize_pad(gray: np.ndarray, imsize: int, *, interpolation: int = cv2.INTER_AREA) -> np.ndarray:
    """[H, W] -> [imsize, imsize]: aspect-preserving resize (``resized_size``) then centred zero padding."""
    if gray.ndim != 2:
        raise ValueError(f"expected a 2-D grayscale image, got shape {gray.shape}")
    new_h, new_w = resized_size(gray.shape[0], gray.shape[1], imsize)
    resized = cv2.resize(gray, (new_w, new_h), interpolation=interpolation)
    top, bottom = pad_split(imsize - new_h)
    left, right = pad_split(imsize - new_w)
    return np.pad(resized, ((top, bottom), (left, right)), mode="constant", constant_values=0)


def resize_pad_mask(
    mask: np.ndarray,
    imsize: int,
    *,
    interpolation: Literal["nearest", "area"] = "nearest",
    threshold: float = 0.5,
) -> np.ndarray:
    """A segmentation mask [H, W] through the same geometry as ``resize_pad``; uint8 {0, 1} [imsize, imsize].

    The mask is binarised (``> threshold``; a 0/255 mask works too) before and after the resize, so an
    "area" resize (fractional coverage) is re-binarised at ``threshold`` of coverage.
    """
    if mask.ndim != 2:
        raise ValueError(f"expected a 2-D mask, got shape {mask.shape}")
    binary = (np.asarray(mask) > threshold).astype(np.float32 if interpolation == "area" else np.uint8)
    flag = {"nearest": cv2.INTER_NEAREST, "area": cv2.INTER_AREA}.get(interpolation)
    if flag is None:
        raise ValueError(f"mask interpolation must be 'nearest' or 'area', got {interpolation!r}")
    padded = resize_pad(binary, imsize, interpolation=flag)
    return (padded > (threshold if interpolation == "area" else 0)).astype(np.uint8)


@dataclass(frozen=True)
class PreprocessGeometry:
    """Where the pixels of one original image [H, W] end up in the network's crop [crop, crop].

    original -> (resize by ``resized / original`` per axis) -> padded canvas at (+pad_top, +pad_left)
    -> crop window starting at (crop_top, crop_left) of size ``crop_size``.
    """

    original_height: int
    original_width: int
    scale: float  # the release's float ratio imsize / longer side
    resized_height: int
    resized_width: int
    pad_top: int
    pad_left: int
    padded_size: int
    crop_top: int
    crop_left: int
    crop_size: int

    def original_to_crop(self, y: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Continuous pixel coordinates (edges at integers) of the original -> of the crop."""
        sy = self.resized_height / self.original_height
        sx = self.resized_width / self.original_width
        return y * sy + self.pad_top - self.crop_top, x * sx + self.pad_left - self.crop_left

    def crop_to_original(self, maps: np.ndarray | Tensor, *, mode: str = "bilinear") -> np.ndarray:
        """Maps over the crop grid [..., h, w] -> maps over the original pixels [..., H, W] (float32).

        Equivalent to upsampling the map to the crop size, placing it in the padded canvas, removing the
        padding and undoing the resize, but each original pixel centre is sampled once from the map
        (``grid_sample``, ``align_corners=False``), so no NaN bleeds. NaN where the pixel was cropped away.
        """
        if mode not in ("bilinear", "nearest", "bicubic"):
            raise ValueError(f"mode must be 'bilinear', 'nearest' or 'bicubic', got {mode!r}")
        values = torch.as_tensor(np.asarray(maps) if not isinstance(maps, Tensor) else maps.detach().cpu())
        if values.ndim < 2:
            raise ValueError(f"maps must have shape [..., h, w], got {tuple(values.shape)}")
        lead, (h, w) = values.shape[:-2], values.shape[-2:]
        flat = values.reshape(1, -1, h, w).to(torch.float32)
        ys = np.arange(self.original_height, dtype=np.float64) + 0.5
        xs = np.arange(self.original_width, dtype=np.float64) + 0.5
        cy, cx = self.original_to_crop(ys, xs)
        gy = torch.from_numpy(2.0 * cy / self.crop_size - 1.0).to(torch.float32)
        gx = torch.from_numpy(2.0 * cx / self.crop_size - 1.0).to(torch.float32)
        grid = torch.stack(torch.meshgrid(gy, gx, indexing="ij")[::-1], dim=-1)[None]  # [1, H, W, 2] (x, y)
        out = F.grid_sample(flat, grid, mode=mode, padding_mode="border", align_corners=False)[0]
        inside_y = torch.from_numpy((cy >= 0) & (cy <= self.crop_size))
        inside_x = torch.from_numpy((cx >= 0) & (cx <= self.crop_size))
        inside = inside_y[:, None] & inside_x[None, :]
        out = torch.where(inside, out, torch.tensor(float("nan")))
        return out.reshape(*lead, self.original_height, self.original_width).numpy()


class ImagePreprocessor:
    """uint8 grayscale [H, W] -> normalised Tensor [3, crop, crop] (the release's ``process_img`` steps).

    Eval: CenterCrop; ``train=True``: RandomCrop (torchvision's global RNG). ``norm="half"`` maps [0, 1] to
    [-1, 1] (the release); ``"imagenet"`` uses the ImageNet mean/std.
    """

    def __init__(self, cfg: ImageTransformConfig, train: bool = False) -> None:
        if cfg.crop_size > cfg.imsize:
            raise ValueError(f"crop_size {cfg.crop_size} is larger than imsize {cfg.imsize}")
        if cfg.norm not in NORMALISATION:
            raise ValueError(f"unknown normalisation {cfg.norm!r}; known: {sorted(NORMALISATION)}")
        self.cfg = cfg
        self.train = train
        mean, std = NORMALISATION[cfg.norm]
        self.crop: torch.nn.Module = T.RandomCrop(cfg.crop_size) if train else T.CenterCrop(cfg.crop_size)
        self.mean = torch.tensor(mean).view(3, 1, 1)
        self.std = torch.tensor(std).view(3, 1, 1)

    def __call__(self, gray: np.ndarray) -> Tensor:
        if gray.dtype != np.uint8 or gray.ndim != 2:
            raise ValueError(f"expected uint8 [H, W] grayscale, got {gray.dtype} {gray.shape}")
        padded = resize_pad(gray, self.cfg.imsize)
        # Crop the single uint8 channel, then scale and normalise: the same float32 operations, element
        # by element, as ToTensor -> crop -> Normalize on three identical channels, at a third of the work.
        cropped: Tensor = self.crop(torch.from_numpy(padded).unsqueeze(0))
        scaled = cropped.to(torch.float32).div(255)
        return (scaled.expand(3, -1, -1) - self.mean) / self.std

    def geometry(self, height: int, width: int) -> PreprocessGeometry:
        """The eval (centre-crop) geometry of an original image of ``height`` x ``width`` pixels."""
        imsize, crop = self.cfg.imsize, self.cfg.crop_size
        new_h, new_w = resized_size(height, width, imsize)
        offset = round((imsize - crop) / 2.0)  # torchvision's center_crop offset
        return PreprocessGeometry(
            original_height=height,
            original_width=width,
            scale=imsize / max(height, width),
            resized_height=new_h,
            resized_width=new_w,
            pad_top=pad_split(imsize - new_h)[0],
            pad_left=pad_split(imsize - new_w)[0],
            padded_size=imsize,
            crop_top=offset,
            crop_left=offset,
            crop_size=crop,
        )
