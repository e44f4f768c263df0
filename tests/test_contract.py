"""The contract: buf lint, and generated code that cannot go stale unnoticed."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GENERATE = ROOT / "scripts" / "generate.py"


def _copy_repo(tmp: Path) -> Path:
    for rel in ("proto", "server/mediastream/_proto", "sdk/python/src/mediastream_client/_proto"):
        shutil.copytree(ROOT / rel, tmp / rel)
    return tmp


def _check(root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(GENERATE), "--check", "--root", str(root)],
        capture_output=True,
        text=True,
    )


def test_committed_generated_code_is_fresh(tmp_path: Path) -> None:
    result = _check(_copy_repo(tmp_path))
    assert result.returncode == 0, result.stdout


def test_stale_check_fails_when_a_proto_changes(tmp_path: Path) -> None:
    root = _copy_repo(tmp_path)
    proto = root / "proto/voipbin/mediastream/v1/mediastream.proto"
    proto.write_text(
        proto.read_text().replace(
            "  uint64 timestamp = 3;\n}",
            "  uint64 timestamp = 3;\n  // New.\n  bool extra = 4;\n}",
            1,
        )
    )
    result = _check(root)
    assert result.returncode == 1
    assert "server/mediastream/_proto/mediastream_pb2.py" in result.stdout
    assert "sdk/python/src/mediastream_client/_proto/mediastream_pb2.py" in result.stdout


def test_regenerating_makes_it_fresh_again(tmp_path: Path) -> None:
    root = _copy_repo(tmp_path)
    (root / "server/mediastream/_proto/mediastream_pb2.py").write_text("# edited by hand\n")
    assert _check(root).returncode == 1
    subprocess.run(
        [sys.executable, str(GENERATE), "--root", str(root)], check=True, capture_output=True
    )
    assert _check(root).returncode == 0
