"""Checkpoint writing that never leaves a broken or NaN file under a checkpoint's name.

Lightning's default writer stages the bytes through fsspec's temporary file (in the system temp folder) and
moves it across file systems at the end, so a full disk can leave a truncated ``last.ckpt`` behind. Here the
temporary file lives in the target folder, is flushed and fsynced, and ``os.replace`` puts it in place
(atomic on POSIX): a failed write leaves the previous checkpoint as it was. A state dict holding NaN or
infinite weights is refused before anything is written, so ``last.ckpt`` always holds finite weights.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO

log = logging.getLogger(__name__)


class NonFiniteError(RuntimeError):
    """Training produced NaN or infinite values (loss or weights); the run stops."""


def non_finite_tensor(state: Mapping[str, Any]) -> str | None:
    """The name of the first floating tensor of ``state`` holding NaN or inf, or None."""
    for name, value in state.items():
        floating = isinstance(value, torch.Tensor) and value.is_floating_point() and value.numel() > 0
        if floating and not bool(torch.isfinite(value).all()):
            return str(name)
    return None


def atomic_torch_save(obj: Any, path: str | Path) -> None:
    """``torch.save(obj)`` to ``path`` through a temporary file in the same folder and ``os.replace``.

    On any failure (disk full, permission, interrupt) the temporary file is removed, ``path`` keeps its
    previous content and the error is raised again naming ``path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()  # serialised first: torch's zip writer turns a failed write into a RuntimeError
    torch.save(obj, buffer)
    handle, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(buffer.getbuffer())
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        with contextlib.suppress(OSError):
            tmp.unlink()
        if isinstance(err, OSError):
            raise OSError(
                err.errno, f"could not write checkpoint {path} ({err.strerror}); the previous file is kept"
            ) from err
        raise
    with contextlib.suppress(OSError):  # make the rename itself durable
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


class SafeCheckpointIO(TorchCheckpointIO):
    """Lightning checkpoint IO: atomic writes in the target folder, no checkpoint of non-finite weights."""

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any | None = None
    ) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options")
        state = checkpoint.get("state_dict")
        bad = non_finite_tensor(state) if isinstance(state, Mapping) else None
        if bad is not None:
            raise NonFiniteError(
                f"weight {bad!r} is NaN or infinite at step {checkpoint.get('global_step')} "
                f"(epoch {checkpoint.get('epoch')}): not writing {path}; the last finite checkpoint is kept"
            )
        atomic_torch_save(checkpoint, path)
