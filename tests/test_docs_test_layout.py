"""tests/ mirrors the package: each test file is named for the src/gloria part it tests, and every tests/ file
a page names exists (docs/architecture.md, tests/ entry)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "gloria"
TESTS = ROOT / "tests"

# The package's parts: its folders (subpackages) and its top-level modules. data/synth/ is tested as
# test_data_synth_*, which the data prefix covers.
AREAS = frozenset(
    p.stem
    for p in PACKAGE.iterdir()
    if not p.name.startswith("_") and ((p.is_dir() and (p / "__init__.py").is_file()) or p.suffix == ".py")
)

# Prefixes for tests whose subject is a repository folder, not a part of the package. Keep this short:
# a test of package code takes the package part's name.
CROSS_CUTTING = {
    "docs": "the pages in docs/ agree with the tree (architecture, this layout)",
    "configs": "the experiment files shipped in configs/ (a repository folder, not gloria.config)",
}

# Where a reference to a test file must name one that exists.
PAGES = sorted([ROOT / "README.md", *(ROOT / "docs").rglob("*.md"), *(ROOT / "scripts").glob("*.sh")])
TEST_REF = re.compile(r"\btests/(test_\w+\.py)(?:::(\w+))?")


def file_names() -> list[str]:
    return sorted(p.name for p in TESTS.glob("test_*.py"))


def test_areas_are_found() -> None:
    assert {"alignment", "cli", "data", "tasks", "training", "model", "config"} <= AREAS, sorted(AREAS)


def test_cross_cutting_prefixes_are_not_package_parts_and_are_used() -> None:
    assert not set(CROSS_CUTTING) & AREAS, "a package part needs no cross-cutting entry"
    names = file_names()
    unused = [p for p in CROSS_CUTTING if not any(re.match(rf"test_{p}(_|\.py$)", n) for n in names)]
    assert not unused, f"cross-cutting prefixes no test uses: {unused}"


def test_every_test_file_is_named_for_a_package_part() -> None:
    allowed = sorted(AREAS | set(CROSS_CUTTING), key=len, reverse=True)
    pattern = re.compile(rf"test_({'|'.join(map(re.escape, allowed))})(_\w+)?\.py")
    misnamed = [n for n in file_names() if not pattern.fullmatch(n)]
    assert not misnamed, (
        f"tests/ files not named test_<area>[_<topic>].py, <area> one of {sorted(AREAS)} "
        f"or {sorted(CROSS_CUTTING)}: {misnamed}"
    )


def test_pages_name_only_existing_test_files() -> None:
    assert any(TEST_REF.search(p.read_text(encoding="utf-8")) for p in PAGES), "no page names a test file"
    missing = []
    for page in PAGES:
        for match in TEST_REF.finditer(page.read_text(encoding="utf-8")):
            name, function = match.groups()
            path = TESTS / name
            if not path.is_file():
                missing.append(f"{page.relative_to(ROOT)}: tests/{name}")
            elif function and not re.search(rf"^def {function}\(", path.read_text(encoding="utf-8"), re.M):
                missing.append(f"{page.relative_to(ROOT)}: tests/{name}::{function}")
    assert not missing, f"pages name test files or tests that do not exist: {missing}"
