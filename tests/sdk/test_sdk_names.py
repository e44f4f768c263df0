"""The table of names in sdk/README.md holds: each name exists in its SDK (issue 21).

Every cell's first code span is `Type` or `Type.member`; the test finds it in the Python
package (by import), the Go sources and the TypeScript sources (by their declarations).
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "sdk" / "README.md"


def _rows() -> list[tuple[str, str, str, str]]:
    text = README.read_text()
    table = text[text.index("| concept | Python | Go | TypeScript |") :]
    rows: list[tuple[str, str, str, str]] = []
    for line in table.splitlines()[2:]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip("|").split("|")]
        names = []
        for cell in cells[1:]:
            found = re.search(r"`([^`]+)`", cell)
            assert found, f"a cell without a name: {line}"
            names.append(found.group(1))
        python, go, ts = names
        rows.append((cells[0], python, go, ts))
    return rows


ROWS = _rows()


def _python_has(name: str) -> bool:
    module = importlib.import_module("mediastream_client")
    kind, _, member = name.partition(".")
    cls = getattr(module, kind, None)
    if cls is None:
        return False
    if not member:
        return True
    if dataclasses.is_dataclass(cls) and member in {f.name for f in dataclasses.fields(cls)}:
        return True
    if hasattr(cls, member):
        return True
    # An instance attribute set in __init__ of the class or a base.
    return any(f"self.{member} =" in inspect.getsource(c) for c in cls.__mro__ if c is not object)


def _go_has(name: str) -> bool:
    src = "\n".join(
        p.read_text() for p in (ROOT / "sdk" / "go").glob("*.go") if not p.name.endswith("_test.go")
    )
    kind, _, member = name.partition(".")
    if not re.search(rf"^type {kind}\b|^\s+{kind}\s+=", src, re.M):
        return False
    if not member:
        return True
    if re.search(rf"^func \(\w+ \*?{kind}\) {member}\(", src, re.M):
        return True
    body = re.search(rf"^type {kind} struct \{{(.*?)^\}}", src, re.M | re.S)
    return body is not None and re.search(rf"^\s+{member}\s", body.group(1), re.M) is not None


def _ts_has(name: str) -> bool:
    src = "\n".join(p.read_text() for p in (ROOT / "sdk" / "typescript" / "src").glob("*.ts"))
    kind, _, member = name.partition(".")
    found = re.search(rf"^export (?:interface|class|type|const) {kind}\b", src, re.M)
    if found is None:
        return False
    if not member:
        return True
    # The declaration's body: up to the next top-level closing brace.
    body = src[found.start() : src.index("\n}\n", found.start())]
    return re.search(rf"^\s+(?:readonly )?(?:get )?{member}\??[(:= ]", body, re.M) is not None


@pytest.mark.parametrize(("concept", "python", "go", "ts"), ROWS, ids=[r[0] for r in ROWS])
def test_each_name_exists_in_its_sdk(concept: str, python: str, go: str, ts: str) -> None:
    checks = (("Python", python, _python_has), ("Go", go, _go_has), ("TypeScript", ts, _ts_has))
    missing = [f"{sdk} {name}" for sdk, name, has in checks if not has(name)]
    assert not missing, f"{concept}: not found: {', '.join(missing)}"


def test_the_table_is_read() -> None:
    assert len(ROWS) >= 20
