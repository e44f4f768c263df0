"""docs/reliability.md names only tests that exist, and every fuzz target is in it."""

from __future__ import annotations

import re
from pathlib import Path

from tests.fuzz.targets import TARGETS

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "reliability.md"


def test_every_test_the_doc_names_exists() -> None:
    named = 0
    for line in DOC.read_text().splitlines():
        path: str | None = None
        for match in re.finditer(r"`((?:tests/[\w/]+\.py)?)::(\w+)(?:\[[^\]`]*\])?`", line):
            path = match.group(1) or path
            assert path, f"'::{match.group(2)}' without a file before it: {line!r}"
            source = (ROOT / path).read_text()
            assert re.search(rf"def {match.group(2)}\(", source), f"{path}::{match.group(2)}"
            named += 1
    assert named > 50


def test_every_fuzz_target_is_described() -> None:
    text = DOC.read_text()
    for target in TARGETS:
        assert f"| `{target}` |" in text, target
