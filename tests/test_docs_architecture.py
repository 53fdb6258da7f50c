"""docs/architecture.md names every module of src/gloria in its folder's block, and no module that is gone."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "architecture.md"
PACKAGE = ROOT / "src" / "gloria"
SEARCHED = ("src/gloria", "tests", "bench", "scripts")
PY_NAME = re.compile(r"\b(\w+\.py)\b")
ENTRY = re.compile(r"^  (\S+)")


def tree_blocks() -> dict[str, str]:
    """The ``src/gloria/`` tree of the doc: entry (``model.py``, ``data/``, ``data/synth/``) -> its text.

    An entry starts at two spaces of indentation; deeper-indented lines continue the entry above.
    """
    text = DOC.read_text(encoding="utf-8")
    tree = text.split("```\nsrc/gloria/\n", 1)[1].split("```", 1)[0]
    blocks: dict[str, str] = {}
    current = None
    for line in tree.splitlines():
        match = ENTRY.match(line)
        if match:
            current = match.group(1)
            blocks[current] = line[match.end() :]
        elif line.startswith("   ") and current is not None:
            blocks[current] += "\n" + line
        else:
            current = None  # tests/, bench/ ... at column 0 are outside the package
    return blocks


MODULES = sorted(p.relative_to(PACKAGE) for p in PACKAGE.rglob("*.py") if p.name != "__init__.py")


def test_tree_is_found() -> None:
    blocks = tree_blocks()
    assert "model.py" in blocks and "data/" in blocks and "data/synth/" in blocks, sorted(blocks)


@pytest.mark.parametrize("module", MODULES, ids=[str(m) for m in MODULES])
def test_module_named_in_its_folder_block(module: Path) -> None:
    blocks = tree_blocks()
    folder = module.parent.as_posix()
    if folder == ".":
        assert module.name in blocks, f"{module.name}: no top-level entry in {DOC.name}"
        return
    key = f"{folder}/"
    assert key in blocks, f"{key}: no block in {DOC.name}"
    assert module.name in PY_NAME.findall(blocks[key]), f"{module}: not named in the {key} block"


def test_every_named_file_exists() -> None:
    present = {p.name for base in SEARCHED for p in (ROOT / base).rglob("*.py")}
    named = set(PY_NAME.findall(DOC.read_text(encoding="utf-8")))
    missing = sorted(named - present)
    assert not missing, f"{DOC.name} names files that do not exist: {missing}"
