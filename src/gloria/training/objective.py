"""Batch -> dict of losses for each task, framework-free (method.md sections 4 and 9): the GLoRIA
contrastive objective, the linear probe's BCE and the segmentation loss 10 * focal(gamma=2) - log(soft Dice).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops import sigmoid_focal_loss

from gloria.alignment.losses import gloria_objective
from gloria.alignment.options import LossOptions
from gloria.model import GLoRIA
from gloria.types import ImageFeatures, TextFeatures

FOCAL_WEIGHT = 10.0  # the release's segmentation loss: 10 * focal - log(dice)
FOCAL_GAMMA = 2.0
TRAINING_LOSS_KEYS = ("loss", "global_loss", "local_loss")  # logged as train_/val_/test_<key>


class PretrainObjective:
    """{"image" [B,3,H,W], "text" list[str] (B)} -> {"loss", "global_loss", "local_loss"}.

    A batch with ``caption_ids`` etc. (tokenised by the dataset's workers) is used as it is; otherwise texts
    are cleaned and tokenised by ``model.process_text`` (``encode``). ``loss`` is the GLoRIA objective
    (``gloria.alignment.losses.gloria_objective``) with ``options``: with ``gather_negatives`` and several
    processes the negatives come from every process; with ``false_negatives: same_text`` the pairs whose
    ``caption_ids`` are equal (``groups``) are positives of each other.
    """

    def __init__(self, model: GLoRIA, options: LossOptions | None = None) -> None:
        self.model = model
        self.options = options or LossOptions()

    def with_tokens(self, batch: Mapping[str, Any]) -> Mapping[str, Any]:
        """The batch with its text tensors: as it is when the loader's workers tokenised it, else with the
        texts tokenised here (once per step: rows tokenise alike in any batch, padded to max_length)."""
        if "caption_ids" in batch:
            return batch
        return {**batch, **self.model.process_text(list(batch["text"]), batch["image"].device)}

    def encode(self, batch: Mapping[str, Any]) -> tuple[ImageFeatures, TextFeatures]:
        images: Tensor = batch["image"]
        return self.model.encode_images(images), self.model.encode_texts(self.with_tokens(batch))

    def groups(self, batch: Mapping[str, Any]) -> Tensor | None:
        """The group keys of ``options.false_negatives``: None for ``"none"``, the [B, T] token ids the
        text encoder sees for ``"same_text"`` (identical cleaned and truncated texts, identical keys); a
        batch already through :meth:`with_tokens` is not tokenised again."""
        if self.options.false_negatives == "none":
            return None
        ids: Tensor = self.with_tokens(batch)["caption_ids"]
        return ids.to(batch["image"].device)

    def loss(
        self, image: ImageFeatures, text: TextFeatures, groups: Tensor | None = None
    ) -> dict[str, Tensor]:
        """The objective of encoded pairs (``groups``: :meth:`groups` of their batch) -> {"loss",
        "global_loss", "local_loss"}."""
        # the contrastive losses run in float32 outside autocast (16-mixed / bf16-mixed encoders): the
        # temperatures (x10, exp(5 x cos)) and the log-sum-exps are where half precision loses accuracy
        with torch.autocast(device_type=image.embedding.device.type, enabled=False):
            image = ImageFeatures(regions=image.regions.float(), embedding=image.embedding.float())
            text = replace(text, words=text.words.float(), embedding=text.embedding.float())
            losses = gloria_objective(image, text, self.model.alignment, self.options, groups=groups)
        return {key: losses[key] for key in TRAINING_LOSS_KEYS}

    def __call__(self, batch: Mapping[str, Any]) -> dict[str, Tensor]:
        batch = self.with_tokens(batch)
        return self.loss(*self.encode(batch), self.groups(batch))


def masked_bce(logits: Tensor, labels: Tensor) -> Tensor:
    """Mean BCE-with-logits over the labels that are not NaN (ignored uncertain labels): [B, C] -> scalar."""
    keep = ~torch.isnan(labels)
    if not bool(keep.any()):
        return logits.sum() * 0.0
    return F.binary_cross_entropy_with_logits(logits[keep], labels[keep])


class ClassificationObjective:
    """{"image" [B,3,H,W], "labels" [B,C]} -> {"loss", "logits" [B,C] (detached)} for a classifier module."""

    def __init__(self, classifier: nn.Module) -> None:
        self.classifier = classifier

    def __call__(self, batch: Mapping[str, Any]) -> dict[str, Tensor]:
        logits: Tensor = self.classifier(batch["image"])
        labels: Tensor = batch["labels"].to(logits.dtype)
        if logits.shape != labels.shape:
            shapes = f"{tuple(logits.shape)} logits for {tuple(labels.shape)} labels"
            raise ValueError(f"classifier gives {shapes}: data.classes must match the model's classes")
        return {"loss": masked_bce(logits, labels), "logits": logits.detach()}


def soft_dice(logits: Tensor, masks: Tensor, smooth: float = 1.0) -> Tensor:
    """Soft Dice over the whole batch: (2 sum(p t) + s) / (sum p + sum t + s), p = sigmoid(logits)."""
    probs = torch.sigmoid(logits.float())
    target = masks.float()
    return (2.0 * (probs * target).sum() + smooth) / (probs.sum() + target.sum() + smooth)


def segmentation_loss(logits: Tensor, masks: Tensor) -> dict[str, Tensor]:
    """The release's loss: ``10 * focal(gamma=2) - log(soft Dice)``; logits, masks [B,1,H,W]."""
    focal = sigmoid_focal_loss(logits.float(), masks.float(), alpha=-1, gamma=FOCAL_GAMMA, reduction="mean")
    dice = soft_dice(logits, masks)
    return {"loss": FOCAL_WEIGHT * focal - torch.log(dice), "focal_loss": focal, "soft_dice": dice}


def dice_per_image(logits: Tensor, masks: Tensor, threshold: float = 0.5) -> Tensor:
    """Hard Dice of each image at ``threshold`` on sigmoid(logits): [B,1,H,W] -> [B].

    An empty truth scores 1 when the prediction is empty too, else 0.
    """
    pred = (torch.sigmoid(logits.float()) > threshold).flatten(1).float()
    truth = (masks > 0.5).flatten(1).float()
    inter = (pred * truth).sum(dim=1)
    total = pred.sum(dim=1) + truth.sum(dim=1)
    empty = total == 0
    return torch.where(empty, torch.ones_like(total), 2.0 * inter / total.clamp_min(1.0))


class SegmentationObjective:
    """{"image" [B,3,H,W], "mask" [B,1,H,W]} -> {"loss", "focal_loss", "soft_dice", "logits" (detached)}."""

    def __init__(self, unet: nn.Module) -> None:
        self.unet = unet

    def __call__(self, batch: Mapping[str, Any]) -> dict[str, Tensor]:
        logits: Tensor = self.unet(batch["image"])
        masks: Tensor = batch["mask"]
        if logits.shape != masks.shape:
            raise ValueError(f"U-Net gives {tuple(logits.shape)} logits for {tuple(masks.shape)} masks")
        return {**segmentation_loss(logits, masks), "logits": logits.detach()}
