"""Safe reading of pickled ``torch.save`` files (the release's Lightning 1.1 checkpoints).

``torch.load(weights_only=True)`` with an explicit allow-list: the few pytorch_lightning and omegaconf globals
such a file names are mapped to inert stand-ins (no code of theirs runs), everything else is refused by name.
"""

from __future__ import annotations

import logging
import pickle
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class GlobalRef:
    """A class or function a pickle refers to by path, kept as its name (never imported, never called)."""

    path: str

    def __repr__(self) -> str:
        return f"<{self.path}>"


class PickledObject:
    """An object rebuilt from a pickle without its class: the state the pickle gave it, as data."""

    source: str = "object"

    def __init__(self) -> None:
        self.state: Any = None

    def __setstate__(self, state: Any) -> None:
        self.state = state


class PickledDictConfig(PickledObject):
    source = "omegaconf.dictconfig.DictConfig"


class PickledListConfig(PickledObject):
    source = "omegaconf.listconfig.ListConfig"


class PickledNode(PickledObject):
    source = "omegaconf.nodes.ValueNode"


class PickledMetadata(PickledObject):
    source = "omegaconf.base.Metadata"


class PickledAttributeDict(dict[Any, Any]):
    """Stand-in for ``pytorch_lightning.utilities.parsing.AttributeDict`` (a plain dict subclass)."""

    def __setstate__(self, state: Any) -> None:
        if isinstance(state, Mapping):
            self.update(state)


def _plain_defaultdict(default_factory: Any = None, *items: Any) -> dict[Any, Any]:
    """``collections.defaultdict`` rebuilt as a plain dict (omegaconf's resolver cache is one)."""
    return dict(*items)


_OMEGACONF_NODES = (
    "AnyNode",
    "StringNode",
    "IntegerNode",
    "FloatNode",
    "BooleanNode",
    "BytesNode",
    "PathNode",
    "EnumNode",
    "ValueNode",
    "InterpolationResultNode",
)
_LIGHTNING_CLASSES = (
    "pytorch_lightning.callbacks.model_checkpoint.ModelCheckpoint",
    "pytorch_lightning.callbacks.early_stopping.EarlyStopping",
    "pytorch_lightning.callbacks.lr_monitor.LearningRateMonitor",
    "pytorch_lightning.callbacks.gpu_stats_monitor.GPUStatsMonitor",
    "pytorch_lightning.callbacks.progress.ProgressBar",
)

# Every global a release checkpoint may name (beyond torch's own tensor-rebuild allow-list) -> its stand-in.
ALLOWED_GLOBALS: dict[str, Any] = {
    "omegaconf.dictconfig.DictConfig": PickledDictConfig,
    "omegaconf.listconfig.ListConfig": PickledListConfig,
    "omegaconf.base.ContainerMetadata": PickledMetadata,
    "omegaconf.base.Metadata": PickledMetadata,
    **{f"omegaconf.nodes.{name}": PickledNode for name in _OMEGACONF_NODES},
    "typing.Any": GlobalRef("typing.Any"),
    "builtins.dict": GlobalRef("builtins.dict"),
    "builtins.list": GlobalRef("builtins.list"),
    "builtins.int": GlobalRef("builtins.int"),
    "builtins.float": GlobalRef("builtins.float"),
    "builtins.str": GlobalRef("builtins.str"),
    "builtins.bool": GlobalRef("builtins.bool"),
    "builtins.object": GlobalRef("builtins.object"),
    "collections.defaultdict": _plain_defaultdict,
    "pytorch_lightning.utilities.parsing.AttributeDict": PickledAttributeDict,
    **{path: GlobalRef(path) for path in _LIGHTNING_CLASSES},
}


PICKLE_PROTO = (
    b"\x80"  # the PROTO opcode every pickle of protocol >= 2 (and torch's legacy format) starts with
)


class UnsafeCheckpointError(ValueError):
    """A checkpoint names globals outside the allow-list; loading it would run code of the file's choosing."""


def _safe_globals() -> list[Any]:
    return [(obj, path) for path, obj in ALLOWED_GLOBALS.items()]


def _check_readable(path: Path) -> None:
    if not path.exists():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    if not path.is_file():
        raise ValueError(f"checkpoint {path} is not a file")
    if path.stat().st_size == 0:
        raise ValueError(f"checkpoint {path} is empty (0 bytes)")


def _describe_failure(path: Path, err: BaseException) -> str:
    """Why ``torch.load`` failed, in words a user can act on."""
    text = str(err)
    if zipfile.is_zipfile(path) or "zip archive" in text or "central directory" in text:
        first = text.splitlines()[0] if text else type(err).__name__
        return f"checkpoint {path} is corrupt or truncated (its zip archive cannot be read: {first})"
    first_line = text.splitlines()[0] if text else ""
    return (
        f"{path} is not a readable PyTorch checkpoint (torch.save file); "
        f"it may be truncated or of another format ({type(err).__name__}: {first_line})"
    )


def unsafe_globals(path: str | Path) -> list[str]:
    """The globals the file names that are neither torch's tensor machinery nor on ``ALLOWED_GLOBALS``."""
    with torch.serialization.safe_globals(_safe_globals()):
        return sorted(torch.serialization.get_unsafe_globals_in_checkpoint(str(path)))


def safe_torch_load(path: str | Path, *, trust: bool = False) -> Any:
    """Load a ``torch.save`` file on CPU, running no code from it unless ``trust=True``.

    Without ``trust`` only torch's tensor machinery and the stand-ins of ``ALLOWED_GLOBALS`` may be named;
    any other global raises ``UnsafeCheckpointError`` naming it. ``trust=True`` unpickles fully (the file
    can run arbitrary code) and logs a warning. Corrupt, truncated and non-torch files raise ``ValueError``.
    """
    path = Path(path)
    _check_readable(path)
    if trust:
        log.warning("loading %s with full unpickling (trust=True): the file can run arbitrary code", path)
        return _load(path, lambda: torch.load(path, map_location="cpu", weights_only=False))
    _refuse_unsafe(path)

    def load() -> Any:
        with torch.serialization.safe_globals(_safe_globals()):
            return torch.load(path, map_location="cpu", weights_only=True)

    return _load(path, load)


def _refuse_unsafe(path: Path) -> bool:
    """Refuse a file that is not a torch.save file, or a zip one naming a global outside the allow-list.

    Returns whether the file was scanned (zip format); torch's legacy format cannot be scanned statically.
    """
    with path.open("rb") as fh:
        head = fh.read(4)
    zip_magic = head == b"PK\x03\x04"
    if not zip_magic and not head.startswith(PICKLE_PROTO):
        raise ValueError(
            f"{path} is not a checkpoint: not a readable PyTorch checkpoint (torch.save file); it is neither "
            f"a zip archive nor a pickle (first bytes {head!r})"
        )
    if not zip_magic:
        return False
    if not zipfile.is_zipfile(path):
        raise ValueError(
            f"checkpoint {path} is corrupt or truncated: its zip archive has no central directory"
        )
    try:
        refused = unsafe_globals(path)
    except Exception as err:  # the static scan reads the archive: a broken file fails here first
        raise ValueError(_describe_failure(path, err)) from err
    if refused:
        raise UnsafeCheckpointError(
            f"refusing to load {path}: it names globals outside the allow-list: {refused}. "
            "Loading it could run code of the file's choosing; pass trust=True (--trust) only if you trust "
            "where the file came from."
        )
    return True


def check_checkpoint(path: str | Path, *, trust: bool = False) -> Path:
    """Before handing ``path`` to a loader that unpickles it (Lightning's resume and test): the same refusals
    as ``safe_torch_load`` (an unscannable legacy-format file is read by it in full). ``trust`` skips them."""
    path = Path(path)
    _check_readable(path)
    if trust:
        log.warning("%s will be unpickled in full (--trust): the file can run arbitrary code", path)
        return path
    if not _refuse_unsafe(path):
        safe_torch_load(path)
    return path


def _load(path: Path, loader: Callable[[], Any]) -> Any:
    try:
        return loader()
    except pickle.UnpicklingError as err:
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        if "Weights only load failed" in str(err) and _names_a_global(str(err)):
            raise UnsafeCheckpointError(f"refusing to load {path}: {_weights_only_reason(str(err))}") from err
        raise ValueError(f"{path} is not a readable PyTorch checkpoint: {first}") from err
    except Exception as err:  # torch's readers raise many types (RuntimeError, EOFError, IndexError, ...)
        raise ValueError(_describe_failure(path, err)) from err


def _names_a_global(message: str) -> bool:
    """Whether torch's weights-only refusal is about a global (code) rather than a malformed stream."""
    return any(word in message for word in ("GLOBAL", "global", "Unsupported class", "REDUCE"))


def _weights_only_reason(message: str) -> str:
    for line in message.splitlines():
        if "Unsupported" in line or "GLOBAL" in line or "unrecognized" in line or "Can only" in line:
            return line.strip()
    return message.splitlines()[0]


# ------------------------------------------------------------------------------------------ to plain data


def to_plain(obj: Any) -> Any:
    """Stand-ins -> plain Python data: DictConfig -> dict, ListConfig -> list, nodes -> their values,
    class references -> their dotted names. Tensors and plain values are returned unchanged."""
    if isinstance(obj, PickledDictConfig):
        content = _state_get(obj.state, "_content")
        if content is None:
            return None
        if not isinstance(content, Mapping):  # "???" (missing) or an interpolation string
            return content
        return {to_plain(k): to_plain(v) for k, v in content.items()}
    if isinstance(obj, PickledListConfig):
        content = _state_get(obj.state, "_content")
        if content is None or isinstance(content, str):
            return content
        return [to_plain(v) for v in content]
    if isinstance(obj, PickledNode):
        return to_plain(_state_get(obj.state, "_val"))
    if isinstance(obj, PickledMetadata | PickledObject):
        return to_plain(obj.state)
    if isinstance(obj, GlobalRef):
        return obj.path
    if isinstance(obj, type) and issubclass(obj, PickledObject):
        return obj.source
    if isinstance(obj, type):  # a real class (fully unpickled file): its dotted name
        return f"{obj.__module__}.{obj.__qualname__}"
    if type(obj).__module__.startswith("omegaconf."):  # a real DictConfig/ListConfig (trust=True)
        from omegaconf import OmegaConf

        return to_plain(OmegaConf.to_container(obj, resolve=False))
    if isinstance(obj, Mapping):
        return {to_plain(k): to_plain(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        items = [to_plain(v) for v in obj]
        return items if isinstance(obj, list) else tuple(items)
    return obj


def _state_get(state: Any, key: str) -> Any:
    if isinstance(state, tuple) and len(state) == 2 and isinstance(state[0], Mapping):
        state = state[0]
    if isinstance(state, Mapping):
        return state.get(key)
    return None
