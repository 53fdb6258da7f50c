"""LightningDataModule for every task: records per split from the ``data`` section, datasets, and loaders
whose order comes from ``SeededSampler`` (exact resume; an equal share per process under DDP).
"""

from __future__ import annotations

import logging
from typing import Any

import lightning.pytorch as L
import torch
from torch.utils.data import DataLoader, Dataset

from gloria.config import ImageTransformConfig
from gloria.data.shards import SPLITS, ShardDataset, read_manifest
from gloria.encoders.tokens import TextTokenizer
from gloria.training.datasets import (
    ImageReportDataset,
    LabelledImageDataset,
    SegmentationDataset,
    ShardImageReportDataset,
    collate,
    usable_reports,
)
from gloria.training.experiment import DataSection, Task
from gloria.training.resumable import ResumableLoader, batches_done
from gloria.training.samplers import SeededSampler
from gloria.training.sources import SplitRecords, load_split_records

log = logging.getLogger(__name__)

Stage = str  # "train" | "valid" | "test"


class GloriaDataModule(L.LightningDataModule):
    """Loaders for ``task`` (pretrain: image-report pairs; classification: labelled images; segmentation:
    image/mask pairs). ``seed`` drives ``train_pct`` subsampling, data order and per-sample draws."""

    def __init__(
        self,
        task: Task,
        data: DataSection,
        transforms: ImageTransformConfig,
        *,
        seed: int,
        classes: list[str],
        tokenizer: TextTokenizer | None = None,
    ) -> None:
        super().__init__()
        self.tokenizer = tokenizer  # pretraining: texts tokenised in the loader's workers
        self.task = task
        self.data = data
        self.transforms = transforms
        self.seed = seed
        self.classes = classes
        self.records: SplitRecords | None = None
        self.datasets: dict[Stage, Dataset[Any]] = {}
        self.shards: dict[Stage, ShardDataset] = {}  # data.shards: each split's litdata reader

    def load(self) -> SplitRecords:
        """Read the records once (also used by the runner before building the model); with
        ``data.shards`` the split sizes (the items stay in the shards)."""
        if self.records is None and self.data.shards is not None:
            self.records = self._open_shards(self.data.shards)
        if self.records is None:
            records = load_split_records(self.data, seed=self.seed)
            if self.task == "pretrain":
                for name in ("train", "valid", "test"):
                    kept, dropped = usable_reports(getattr(records, name))
                    if dropped:
                        log.warning("%s: dropped %d reports without a sentence of two words", name, dropped)
                    setattr(records, name, kept)
                    records.info[f"{name}_rows"] = len(kept)
            self.records = records
        return self.records

    def _open_shards(self, root: str) -> SplitRecords:
        manifest = read_manifest(root)
        imsize = manifest.get("imsize", self.transforms.imsize)
        if imsize != self.transforms.imsize:
            raise ValueError(
                f"data.shards {root}: images stored at imsize {imsize}, the model preprocesses at "
                f"{self.transforms.imsize} (write them again with --shard-imsize {self.transforms.imsize})"
            )
        base = root.rstrip("/")
        names = [n for n in SPLITS if n in manifest.get("counts", {})] if manifest else list(SPLITS[:2])
        for name in names:
            self.shards[name] = ShardDataset.open(f"{base}/{name}")
        if "train" not in self.shards or "valid" not in self.shards:
            raise ValueError(f"data.shards {root}: needs train/ and valid/ shards, has {sorted(self.shards)}")
        info: dict[str, Any] = {"shards": root, "imsize": imsize}
        info.update({f"{name}_rows": len(shards) for name, shards in self.shards.items()})
        empty: list[Any] = []
        return SplitRecords(train=empty, valid=empty, test=empty, info=info)

    def dataset(self, stage: Stage) -> Dataset[Any]:
        """The dataset of ``stage`` (built once; ``valid`` also feeds the attention snapshots)."""
        if stage not in self.datasets and self.data.shards is not None:
            self.load()
            self.datasets[stage] = ShardImageReportDataset(
                self.shards[stage],
                self.transforms,
                train=stage == "train",
                full_report=self.data.full_report,
                tokenizer=self.tokenizer,
            )
        if stage not in self.datasets:
            records = getattr(self.load(), stage)
            train = stage == "train"
            dataset: Dataset[Any]
            if self.task == "pretrain":
                dataset = ImageReportDataset(
                    records,
                    self.transforms,
                    train=train,
                    full_report=self.data.full_report,
                    tokenizer=self.tokenizer,
                )
            elif self.task == "classification":
                dataset = LabelledImageDataset(records, self.classes, self.transforms, train=train)
            else:
                dataset = SegmentationDataset(records, self.transforms)
            self.datasets[stage] = dataset
        return self.datasets[stage]

    def setup(self, stage: str | None = None) -> None:
        self.load()

    def _loader(self, stage: Stage) -> DataLoader[Any]:
        dataset = self.dataset(stage)
        size = len(dataset)  # type: ignore[arg-type]
        if size == 0:
            raise ValueError(f"the {stage!r} split of data source {self.data.source!r} is empty")
        train = stage == "train"
        batch = self.data.batch_size if train else (self.data.eval_batch_size or self.data.batch_size)
        # contrastive pretraining needs full batches of at least two pairs (equal sizes on every process)
        drop_last = train and self.task == "pretrain" and size >= batch
        sampler = SeededSampler(size, seed=self.seed, shuffle=train)
        options: dict[str, Any] = {
            "batch_size": batch,
            "sampler": sampler,
            "drop_last": drop_last,
            "collate_fn": collate,
            "num_workers": self.data.num_workers,
            "persistent_workers": self.data.num_workers > 0,
            "pin_memory": torch.cuda.is_available() if self.data.pin_memory is None else self.data.pin_memory,
        }
        if self.data.prefetch_factor is not None:
            options["prefetch_factor"] = self.data.prefetch_factor
        if train:  # its position goes into every checkpoint (resume in the middle of an epoch)
            return ResumableLoader(dataset, progress=self._train_progress, **options)
        return DataLoader(dataset, **options)

    def _train_progress(self) -> tuple[int, int]:
        """(batches of this epoch done, batches per epoch) of the running fit, for the loader's state."""
        trainer = self.trainer
        if trainer is None:
            return 0, 1
        return batches_done(trainer), int(trainer.num_training_batches)

    def train_dataloader(self) -> DataLoader[Any]:
        return self._loader("train")

    def val_dataloader(self) -> DataLoader[Any]:
        return self._loader("valid")

    def test_dataloader(self) -> DataLoader[Any]:
        records = self.load()
        if not (records.test or "test" in self.shards):
            log.warning("no test split for data source %r: testing on the validation split", self.data.source)
            return self._loader("valid")
        return self._loader("test")
