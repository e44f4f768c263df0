"""Access to the traffic recorded from a real Asterisk 23.4.1 (../shared/fixtures).

``MEDIASTREAM_SHARED`` names another ``shared`` directory (as for the real-Asterisk suite):
`make test-busy` runs the suite in a clone with no ``../shared`` beside it.
"""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("MEDIASTREAM_SHARED") or ROOT.parent / "shared")
FIXTURES = SHARED / "fixtures" / "asterisk-23.4.1"


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
