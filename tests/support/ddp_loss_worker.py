"""Worker for the 2-process gloo test of the gathered GLoRIA loss: fixed inputs, a shared linear 'encoder'
wrapped in DDP; each rank writes its loss and parameter gradients for the parent test to compare."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from gloria.config import AlignmentConfig
from gloria.training.distributed import gathered_gloria_loss
from gloria.types import ImageFeatures, TextFeatures

D_IN, D, H, W, T = 6, 5, 3, 3, 7


class ToyEncoders(nn.Module):
    """Linear maps standing in for the towers, so gradients reach shared parameters."""

    def __init__(self) -> None:
        super().__init__()
        self.region_proj = nn.Conv2d(D_IN, D, 1, bias=False)
        self.image_proj = nn.Linear(D_IN, D)
        self.word_proj = nn.Linear(D_IN, D)
        self.text_proj = nn.Linear(D_IN, D)

    def forward(self, inputs: dict[str, torch.Tensor]) -> tuple[ImageFeatures, TextFeatures]:
        image = ImageFeatures(
            regions=self.region_proj(inputs["regions"]), embedding=self.image_proj(inputs["image"])
        )
        words = self.word_proj(inputs["words"].transpose(1, 2)).transpose(1, 2)  # [K, D, T]
        text = TextFeatures(
            words=words,
            embedding=self.text_proj(inputs["text"]),
            word_mask=inputs["mask"],
            legacy_word_counts=inputs["counts"],
            word_strings=[],
        )
        return image, text


def make_inputs(n: int, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    counts = torch.randint(1, T - 1, (n,), generator=g)
    mask = torch.arange(T).unsqueeze(0) <= counts.unsqueeze(1)
    return {
        "regions": torch.randn(n, D_IN, H, W, generator=g, dtype=torch.float64),
        "image": torch.randn(n, D_IN, generator=g, dtype=torch.float64),
        "words": torch.randn(n, D_IN, T, generator=g, dtype=torch.float64) * mask.unsqueeze(1),
        "text": torch.randn(n, D_IN, generator=g, dtype=torch.float64),
        "mask": mask,
        "counts": counts,
    }


def make_model() -> ToyEncoders:
    torch.manual_seed(1)
    return ToyEncoders().double()


@contextmanager
def gloo_group(rank: int, world_size: int, port: int) -> Iterator[None]:
    """One gloo process group on localhost for the body, one torch thread."""
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world_size)
    try:
        yield
    finally:
        dist.destroy_process_group()


def run(
    rank: int, world_size: int, batch: int, out_dir: str, port: int, keys: torch.Tensor | None = None
) -> None:
    """The gathered loss of this rank's pairs; with ``keys`` (the group keys of every pair) the objective
    with ``loss.false_negatives: same_text``, each rank passing its pairs' keys."""
    with gloo_group(rank, world_size, port):
        inputs = make_inputs(batch * world_size)
        mine = {k: v[rank * batch : (rank + 1) * batch] for k, v in inputs.items()}
        model = DistributedDataParallel(make_model())
        image, text = model(mine)
        if keys is None:
            losses = gathered_gloria_loss(image, text, AlignmentConfig())
        else:
            from gloria.alignment.losses import gloria_objective
            from gloria.alignment.options import LossOptions

            options = LossOptions(false_negatives="same_text")
            groups = keys[rank * batch : (rank + 1) * batch]
            losses = gloria_objective(image, text, AlignmentConfig(), options, groups=groups)
        losses["loss"].backward()
        grads = {name: p.grad.detach().clone() for name, p in model.module.named_parameters()}
        values = {k: v.detach() for k, v in losses.items()}
        torch.save({"losses": values, "grads": grads}, Path(out_dir) / f"rank{rank}.pt")


def grad_cache_losses(
    encode, model: nn.Module, inputs: dict[str, torch.Tensor], chunks: int, backward
) -> dict:
    """One gradient-cached step of the toy encoders under the GLoRIA objective (negatives gathered)."""
    from gloria.alignment.losses import gloria_objective
    from gloria.training.grad_cache import grad_cache_step

    def loss(image: ImageFeatures, text: TextFeatures) -> dict[str, torch.Tensor]:
        return gloria_objective(image, text, AlignmentConfig())

    return grad_cache_step(encode, loss, inputs, chunks, model, backward)


def run_grad_cache(rank: int, world_size: int, batch: int, out_dir: str, port: int, chunks: int) -> None:
    """As ``run``, by gradient caching in ``chunks`` chunks. DDP synchronises only the last chunk's backward:
    the earlier chunks run the bare module under ``no_sync`` (accumulating locally), the last one runs
    through the DDP wrapper, whose forward prepares the reducer (Lightning's ``manual_backward`` prepares it
    the same way), so its backward all-reduces the accumulated gradients."""
    with gloo_group(rank, world_size, port):
        inputs = make_inputs(batch * world_size)
        mine = {k: v[rank * batch : (rank + 1) * batch] for k, v in inputs.items()}
        model = DistributedDataParallel(make_model())
        left = [chunks]  # chunks still to encode with a graph

        def encode(part: dict[str, torch.Tensor]) -> tuple[ImageFeatures, TextFeatures]:
            if not torch.is_grad_enabled():
                return model.module(part)  # the graph-free pass
            left[0] -= 1
            return model(part) if left[0] == 0 else model.module(part)

        def backward(surrogate: torch.Tensor, last: bool) -> None:
            if last:
                surrogate.backward()
            else:
                with model.no_sync():
                    surrogate.backward()

        losses = grad_cache_losses(encode, model.module, mine, chunks, backward)
        grads = {name: p.grad.detach().clone() for name, p in model.module.named_parameters()}
        torch.save({"losses": losses, "grads": grads}, Path(out_dir) / f"rank{rank}.pt")
