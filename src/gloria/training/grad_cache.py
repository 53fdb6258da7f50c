"""Gradient caching: a contrastive batch larger than the encoders' memory (both GLoRIA losses).

The idea is Gao et al. 2021 ("Scaling Deep Contrastive Learning Batch Size under Memory Limited Setup");
this is our own implementation, for the global and the local (word-region) loss. One step over a batch of
k chunks:

1. encode every chunk without a graph (BatchNorm running statistics are restored afterwards, and the RNG
   state each chunk started from is kept);
2. the loss of the whole batch on those features (leaves): its value and its gradient with respect to every
   feature (regions, image embedding, words, text embedding). Negatives from other processes are gathered
   here as in a plain step;
3. for each chunk, encode again with a graph from the same RNG state and backpropagate the cached feature
   gradients (``sum(feature * gradient)``), accumulating parameter gradients.

Memory is one chunk's encoder activations plus the features of the whole batch (and the loss, whose local
scores are blocked and recomputed: linear in the batch). The price is a second forward of the encoders.

The result equals one step on the whole batch (losses and every parameter gradient) when the encoders are
the same function of each sample in both: no dropout or BatchNorm in eval mode. With dropout, each chunk
sees the same masks in both passes but not those the whole batch would draw. With BatchNorm in training
mode, each chunk is normalised by its own statistics (as DDP without SyncBatchNorm normalises each
process's share), and the running statistics take one momentum step per chunk (k per optimiser step).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

import torch
from torch import Tensor, nn

from gloria.types import ImageFeatures, TextFeatures

Encode = Callable[[Mapping[str, Any]], tuple[ImageFeatures, TextFeatures]]
LossFn = Callable[[ImageFeatures, TextFeatures], dict[str, Tensor]]
Backward = Callable[[Tensor, bool], None]  # (surrogate scalar, is this the last chunk)


def _sliced(value: Any, size: int, lo: int, hi: int) -> Any:
    if isinstance(value, Mapping):  # e.g. tokenised text: {"caption_ids": [B, T], ...}
        return {key: _sliced(v, size, lo, hi) for key, v in value.items()}
    if isinstance(value, Tensor | list | tuple) and len(value) == size:
        return value[lo:hi]
    return value


def split_batch(batch: Mapping[str, Any], chunks: int) -> list[dict[str, Any]]:
    """The batch as ``chunks`` consecutive parts (sizes differing by at most one): every tensor, list or
    tuple as long as ``batch["image"]`` (also inside nested mappings) is sliced along its first dimension,
    other values are shared."""
    size = len(batch["image"])
    if not 1 <= chunks <= size:
        raise ValueError(f"cannot split a batch of {size} pairs into {chunks} chunks (1..{size})")
    bounds = [round(i * size / chunks) for i in range(chunks + 1)]
    return [
        {key: _sliced(value, size, lo, hi) for key, value in batch.items()}
        for lo, hi in itertools.pairwise(bounds)
    ]


@contextmanager
def kept_batchnorm_statistics(module: nn.Module) -> Iterator[None]:
    """Restore every BatchNorm's running statistics on exit (the graph-free pass must not move them)."""
    saved = [
        (m, [b.detach().clone() for b in m.buffers(recurse=False)])
        for m in module.modules()
        if isinstance(m, nn.modules.batchnorm._BatchNorm)
    ]
    try:
        yield
    finally:
        with torch.no_grad():
            for m, buffers in saved:
                for b, old in zip(m.buffers(recurse=False), buffers):
                    b.copy_(old)


def _rng_state(device: torch.device) -> tuple[Tensor, Tensor | None]:
    cuda = torch.cuda.get_rng_state(device) if device.type == "cuda" else None
    return torch.get_rng_state(), cuda


def _set_rng_state(state: tuple[Tensor, Tensor | None], device: torch.device) -> None:
    torch.set_rng_state(state[0])
    if state[1] is not None:
        torch.cuda.set_rng_state(state[1], device)


def _features(image: ImageFeatures, text: TextFeatures) -> list[Tensor]:
    return [image.regions, image.embedding, text.words, text.embedding]


def _joined(parts: Sequence[tuple[ImageFeatures, TextFeatures]]) -> tuple[ImageFeatures, TextFeatures]:
    """The chunks' features as one batch, the four float tensors as leaves that require gradients."""

    def leaf(tensors: list[Tensor]) -> Tensor:
        return torch.cat(tensors).detach().requires_grad_(True)

    images = [p[0] for p in parts]
    texts = [p[1] for p in parts]
    image = ImageFeatures(
        regions=leaf([i.regions for i in images]), embedding=leaf([i.embedding for i in images])
    )
    text = replace(
        texts[0],
        words=leaf([t.words for t in texts]),
        embedding=leaf([t.embedding for t in texts]),
        word_mask=torch.cat([t.word_mask for t in texts]),
        legacy_word_counts=torch.cat([t.legacy_word_counts for t in texts]),
        word_strings=[s for t in texts for s in t.word_strings],
    )
    return image, text


def grad_cache_step(
    encode: Encode,
    loss_fn: LossFn,
    batch: Mapping[str, Any],
    chunks: int,
    model: nn.Module,
    backward: Backward,
) -> dict[str, Tensor]:
    """One gradient-cached step (module docstring): parameter gradients accumulated through ``backward``
    (called once per chunk, ``True`` for the last), the whole batch's losses returned detached."""
    parts = split_batch(batch, chunks)
    device = batch["image"].device
    states, encoded = [], []
    with kept_batchnorm_statistics(model), torch.no_grad():
        for part in parts:
            states.append(_rng_state(device))
            encoded.append(encode(part))
    image, text = _joined(encoded)
    losses = loss_fn(image, text)
    leaves = _features(image, text)
    grads = torch.autograd.grad(losses["loss"], leaves, allow_unused=True)
    cached = [torch.zeros_like(x) if g is None else g for x, g in zip(leaves, grads)]
    after = _rng_state(device)
    start = 0
    for index, part in enumerate(parts):
        _set_rng_state(states[index], device)
        features = _features(*encode(part))
        n = features[0].shape[0]
        surrogate = sum((f * g[start : start + n].to(f.dtype)).sum() for f, g in zip(features, cached))
        assert isinstance(surrogate, Tensor)
        backward(surrogate, index == len(parts) - 1)
        start += n
    _set_rng_state(after, device)
    return {key: value.detach() for key, value in losses.items()}


__all__ = ["grad_cache_step", "kept_batchnorm_statistics", "split_batch"]
