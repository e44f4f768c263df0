"""README.md's snippets run as written, against a gateway on free ports.

Each ```python block of README.md is a whole program, and the ```sh block that starts
with `uv run python -c` is a shell command. They are run as written except for one
explicit substitution: the addresses the README shows (`127.0.0.1:50051` for gRPC,
`127.0.0.1:8080` for WebSocket, the defaults of `make run`) become the test gateway's,
and `uv run python` becomes this interpreter (the environment is already the project's).
Each must exit 0 and print what the README says it prints.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import RunningGateway

README = Path(__file__).resolve().parent.parent / "README.md"
BLOCK = re.compile(r"^```(\w+)\n(.*?)^```$", re.S | re.M)


def _blocks(lang: str) -> list[str]:
    return [body for kind, body in BLOCK.findall(README.read_text()) if kind == lang]


def _substitute(text: str, gw: RunningGateway) -> str:
    text = text.replace("127.0.0.1:50051", gw.grpc).replace("127.0.0.1:8080", gw.websocket)
    return text.replace("uv run python", f"'{sys.executable}'")


def _run(argv: list[str]) -> str:
    # 60 s: the programs stream a few seconds of real-time audio; generous for a loaded host.
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.parametrize("index", range(len(_blocks("python"))))
def test_python_snippet_runs_as_a_program(index: int, gateway: RunningGateway) -> None:
    source = _substitute(_blocks("python")[index], gateway)
    out = _run([sys.executable, "-c", source])
    assert out.splitlines() == ["heard 1.00 s", "sent 1.00 s, stopped: CLIENT_DONE"]


def test_websocket_shell_snippet_runs(gateway: RunningGateway) -> None:
    (command,) = [b for b in _blocks("sh") if b.lstrip().startswith(("# With", "uv run python -c"))]
    out = _run(["bash", "-c", _substitute(command, gateway)])
    assert re.fullmatch(r"50 packets of 172 bytes; header 80[0-9a-f]{22}\n", out), out


def test_the_substitution_is_needed() -> None:
    # If the README stops showing these addresses, the substitution silently does nothing.
    text = README.read_text()
    assert "127.0.0.1:50051" in text and "127.0.0.1:8080" in text
