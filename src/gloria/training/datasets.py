"""Training items from records: image-report pairs (one random cleaned sentence per access), labelled
images and image/mask pairs, each read with ``read_image`` and preprocessed as in method.md section 7.

Every random choice (sentence, crop) is drawn from the access's seed (``SeededSampler``), never from the
global RNG state, so an interrupted and resumed run sees the same items.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from gloria.config import ImageTransformConfig
from gloria.data.images import read_image
from gloria.data.records import ImageReportRecord, LabelledImageRecord, SegmentationRecord
from gloria.data.reports import report_sentences, sample_sentence
from gloria.data.rle import rle_decode_union
from gloria.data.shards import ShardDataset
from gloria.data.transforms import ImagePreprocessor, resize_pad_mask
from gloria.encoders.tokens import TextTokenizer

Item = dict[str, Any]


def _split_index(item: int | tuple[int, int]) -> tuple[int, int]:
    """A sampler item (index, draw seed) or a plain index (seed 0) -> (index, seed)."""
    if isinstance(item, tuple):
        return int(item[0]), int(item[1])
    return int(item), 0


def _preprocess(preprocess: ImagePreprocessor, gray: np.ndarray, seed: int) -> Tensor:
    """Run the (possibly random-crop) preprocessor under a local torch RNG seeded by ``seed``."""
    if not preprocess.train:
        return preprocess(gray)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return preprocess(gray)


class ImageReportDataset(Dataset[Item]):
    """Image-report pairs -> {"image" [3,S,S], "text" str, "index" int}, with ``tokenizer`` also the text's
    tensors ``caption_ids`` / ``attention_mask`` / ``token_type_ids`` [T] and ``word_counts`` [] (cleaned and
    tokenised here, in the DataLoader workers, not in the training step).

    ``full_report=False`` (the release): one sentence drawn per access from the report's cleaned sentences;
    ``True``: all cleaned sentences joined. Records whose report has no usable sentence are rejected by
    :func:`usable_reports` before this point.
    """

    def __init__(
        self,
        records: Sequence[ImageReportRecord],
        transforms: ImageTransformConfig,
        *,
        train: bool,
        full_report: bool = False,
        tokenizer: TextTokenizer | None = None,
    ) -> None:
        self.records = list(records)
        self.preprocess = ImagePreprocessor(transforms, train=train)
        self.full_report = full_report
        self.tokenizer = tokenizer
        self.sentences = [report_sentences(r.report) for r in self.records]

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, item: int | tuple[int, int]) -> Item:
        index, seed = _split_index(item)
        return self.pair(read_image(self.records[index].path), self.sentences[index], index, seed)

    def pair(self, gray: np.ndarray, sentences: list[str], index: int, seed: int) -> Item:
        """The item of one access: image preprocessed and sentence drawn from ``seed``, text tokenised."""
        text = " ".join(sentences) if self.full_report else sample_sentence(sentences, random.Random(seed))
        image = _preprocess(self.preprocess, gray, seed)
        out: Item = {"image": image, "text": text, "index": index}
        if self.tokenizer is not None:
            out.update(self.tokenizer.item(text))
        return out


class ShardImageReportDataset(ImageReportDataset):
    """:class:`ImageReportDataset` over one split of litdata shards (``gloria.data.shards``): the stored
    image (longer side ``imsize``) and cleaned sentences; the same item as the CSV path for the same record
    and seed."""

    def __init__(
        self,
        shards: ShardDataset,
        transforms: ImageTransformConfig,
        *,
        train: bool,
        full_report: bool = False,
        tokenizer: TextTokenizer | None = None,
    ) -> None:
        super().__init__([], transforms, train=train, full_report=full_report, tokenizer=tokenizer)
        self.shards = shards

    def __len__(self) -> int:
        return len(self.shards)

    def __getitem__(self, item: int | tuple[int, int]) -> Item:
        index, seed = _split_index(item)
        stored = self.shards.item(index)
        return self.pair(stored.image, stored.sentences, index, seed)


def usable_reports(records: Sequence[ImageReportRecord]) -> tuple[list[ImageReportRecord], int]:
    """Records whose report has at least one sentence of two or more words, and the count dropped."""
    kept = [r for r in records if report_sentences(r.report)]
    return kept, len(records) - len(kept)


class LabelledImageDataset(Dataset[Item]):
    """Labelled images -> {"image" [3,S,S], "labels" [C] float (NaN = ignore), "index"}."""

    def __init__(
        self,
        records: Sequence[LabelledImageRecord],
        classes: Sequence[str],
        transforms: ImageTransformConfig,
        *,
        train: bool,
    ) -> None:
        self.records = list(records)
        self.classes = list(classes)
        self.preprocess = ImagePreprocessor(transforms, train=train)
        for record in self.records:
            missing = [c for c in self.classes if c not in record.labels]
            if missing:
                raise ValueError(f"{record.path}: no label(s) {missing}; has {sorted(record.labels)}")

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, item: int | tuple[int, int]) -> Item:
        index, seed = _split_index(item)
        record = self.records[index]
        labels = torch.tensor([float(record.labels[c]) for c in self.classes], dtype=torch.float32)
        image = _preprocess(self.preprocess, read_image(record.path), seed)
        return {"image": image, "labels": labels, "index": index}


class SegmentationDataset(Dataset[Item]):
    """SIIM images with their RLE regions -> {"image" [3,S,S], "mask" [1,S,S] float {0,1}, "index"}.

    Image and mask go through the same resize/pad (``imsize``); the mask is re-binarised after resizing.
    ``crop_size`` must equal ``imsize`` (the release trained on the whole 512 px image).
    """

    def __init__(self, records: Sequence[SegmentationRecord], transforms: ImageTransformConfig) -> None:
        if transforms.crop_size != transforms.imsize:
            raise ValueError(
                f"segmentation needs crop_size == imsize, got {transforms.crop_size} and {transforms.imsize}"
            )
        self.records = list(records)
        self.preprocess = ImagePreprocessor(transforms, train=False)
        self.imsize = transforms.imsize

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, item: int | tuple[int, int]) -> Item:
        index, _ = _split_index(item)
        record = self.records[index]
        gray = read_image(record.path)
        try:
            full = rle_decode_union(record.rles, gray.shape[0], gray.shape[1])
        except ValueError as err:
            raise ValueError(f"{record.image_id}: {err}") from err
        mask = torch.from_numpy(resize_pad_mask(full, self.imsize).astype(np.float32)).unsqueeze(0)
        return {"image": self.preprocess(gray), "mask": mask, "index": index}


def collate(items: Sequence[Item]) -> dict[str, Any]:
    """Stack tensors, keep strings as a list: {"image": [B,3,S,S], "text": list[str] | ..., "index": [B]}."""
    out: dict[str, Any] = {}
    for key in items[0]:
        values = [item[key] for item in items]
        if isinstance(values[0], Tensor):
            out[key] = torch.stack(values)
        elif isinstance(values[0], int):
            out[key] = torch.tensor(values, dtype=torch.long)
        else:
            out[key] = values
    return out
