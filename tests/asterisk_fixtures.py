"""Access to the traffic recorded from a real Asterisk 23.4.1 (../shared/fixtures)."""

from __future__ import annotations

import json
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "asterisk-23.4.1"


def fixture_path(name: str) -> Path:
    """Path of a recorded file; skips the test when shared/ is not beside the repo."""
    path = FIXTURES / name
    if not path.exists():
        pytest.skip(f"recorded fixture {name} not found at {FIXTURES}", allow_module_level=True)
    return path


def records(name: str) -> Iterator[tuple[float, bytes]]:
    """(t, data) records of a `*_from_asterisk.bin` / `*_to_asterisk.bin` file."""
    b, i = fixture_path(name).read_bytes(), 0
    while i < len(b):
        t, n = struct.unpack_from("!dH", b, i)
        yield t, b[i + 10 : i + 10 + n]
        i += 10 + n


def case(name: str) -> Any:
    """The parsed JSON of a recorded case (`<case>.json`)."""
    return json.loads(fixture_path(name).read_text())
