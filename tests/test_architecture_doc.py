"""docs/architecture.md's package map names every module under src/ferkit, and nothing else.

The map is the first fenced block after ``## Package map``: a tree, two spaces of indent per
level, one entry a line (its name first, then what it is); a folder ends with ``/`` and stands
for its package's ``__init__.py`` too.
"""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "ferkit"
DOC = ROOT / "docs" / "architecture.md"


def map_entries(text: str) -> list[str]:
    """The paths the package map lists, relative to ``src/ferkit/`` (folders end with ``/``)."""
    section = text.split("## Package map", 1)[1]
    block = section.split("```", 2)[1].splitlines()[1:]  # after the fence's own line
    assert block and block[0].strip() == "src/ferkit/", "the map starts at src/ferkit/"
    entries, folders = [], []
    for line in block[1:]:
        if not line.strip():
            continue
        indent = len(line) - len(line.lstrip(" "))
        assert indent % 2 == 0 and indent >= 2, f"odd indent: {line!r}"
        level = indent // 2 - 1
        assert level <= len(folders), f"indented below no folder: {line!r}"
        del folders[level:]
        name = line.split()[0]
        path = "".join(folders) + name
        entries.append(path)
        if name.endswith("/"):
            folders.append(name)
    return entries


def test_the_map_reader_follows_the_tree():
    text = "## Package map\n```\nsrc/ferkit/\n  a.py  x\n  b/  y\n    c.py  z\n  d.py\n```\n"
    assert map_entries(text) == ["a.py", "b/", "b/c.py", "d.py"]


def test_every_module_is_in_the_package_map_and_every_entry_exists():
    entries = map_entries(DOC.read_text())
    assert len(entries) == len(set(entries)), "an entry is listed twice"
    listed = set(entries)
    modules = {path.relative_to(PACKAGE).as_posix() for path in PACKAGE.rglob("*.py")}
    # A package's folder line stands for its __init__.py.
    named = {
        module
        for module in modules
        if module in listed or (module.endswith("__init__.py") and module[:-11] in listed)
    }
    assert modules - named == set(), f"modules missing from docs/architecture.md: {modules - named}"
    missing = {entry for entry in listed if not (PACKAGE / entry).exists()}
    assert missing == set(), f"docs/architecture.md lists what is not in src/ferkit: {missing}"


@pytest.mark.parametrize("entry", ["utils/", "faces/detection.py", "inference/pipeline.py"])
def test_the_map_names_the_stages(entry):
    assert entry in map_entries(DOC.read_text())
