"""YAML from users' files without alias expansion.

``yaml.safe_load`` runs no code, but aliases (``*name``) let a few hundred bytes expand to gigabytes
("billion laughs") and a self-referencing anchor builds a cyclic value that later recursion dies on. The
project's own files never use anchors, so an alias is refused with an error naming the file and line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from yaml.events import AliasEvent
from yaml.nodes import Node


class _NoAliasLoader(yaml.SafeLoader):
    """``SafeLoader`` that raises on the first alias instead of sharing (and expanding) the anchored node."""

    def compose_node(self, parent: Node | None, index: Any) -> Node | None:
        if self.check_event(AliasEvent):
            event = self.peek_event()
            raise yaml.composer.ComposerError(
                None,
                None,
                f"YAML alias *{event.anchor} is not accepted (aliases can expand a small file to gigabytes "
                "or build a cycle); write the value out",
                event.start_mark,
            )
        return super().compose_node(parent, index)


def load_yaml_text(text: str, source: str | Path) -> Any:
    """Parse ``text`` (YAML, no aliases); a syntax error raises ``ValueError`` naming ``source``, line."""
    try:
        return yaml.load(text, Loader=_NoAliasLoader)  # a SafeLoader subclass
    except yaml.YAMLError as err:
        raise ValueError(f"{source}: not valid YAML: {err}") from err


def load_yaml_file(path: str | Path) -> Any:
    """Read and parse a YAML file (see ``load_yaml_text``); a missing file raises ``FileNotFoundError``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"YAML file not found: {path}")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise ValueError(f"{path}: not a UTF-8 text file ({err})") from err
    return load_yaml_text(text, path)
