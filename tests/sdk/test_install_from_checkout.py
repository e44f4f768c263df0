"""Each SDK installs in one step from a checkout, into a fresh project outside the repo.

What a new user does, from each SDK's README (issue 21, item 1): a new project in a temp
dir, the SDK installed from this checkout the way its ecosystem expects, and a tiny
program that hears the demo tone call and gets CALL_NOT_FOUND for an unknown call,
against a gateway on free ports. Real processes throughout; these tests reach the
package registries for the SDKs' dependencies (as CI does).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from mediastream.emulator import TONE_CALL_ID
from tests.conftest import RunningGateway

ROOT = Path(__file__).resolve().parents[2]
SDK = ROOT / "sdk"
GO_MODULE = "github.com/voipbin/mediastream/sdk/go"
"""The Go SDK's module path (sdk/go/go.mod), the one it will have when published."""

# Every program prints this line: 10 chunks of 20 ms slin (320 bytes) heard, and the
# unknown call's reason.
EXPECTED = "chunks=10 bytes=320 error=CALL_NOT_FOUND"

PYTHON_PROGRAM = """
import asyncio, sys
from mediastream_client import AudioFormat, MediaStreamClient, RPCError

async def main(address: str, call_id: str) -> None:
    async with MediaStreamClient(address) as client:
        n, size = 0, 0
        async with client.listen(call_id=call_id, format=AudioFormat.SLIN) as stream:
            async for chunk in stream.audio():
                n, size = n + 1, len(chunk.data)
                if n == 10:
                    break
        try:
            async with client.listen(call_id="no-such-call") as stream:
                pass
            reason = "none"
        except RPCError as e:
            reason = e.reason
        print(f"chunks={n} bytes={size} error={reason}")

asyncio.run(main(sys.argv[1], sys.argv[2]))
"""

GO_PROGRAM = """package main

import (
	"context"
	"errors"
	"fmt"
	"os"

	mediastream "github.com/voipbin/mediastream/sdk/go"
)

func main() {
	ctx := context.Background()
	client, err := mediastream.Dial(ctx, os.Args[1])
	if err != nil {
		panic(err)
	}
	defer client.Close()
	cfg := mediastream.Config{CallID: os.Args[2], Format: mediastream.FormatSLIN}
	stream, err := client.Listen(ctx, cfg)
	if err != nil {
		panic(err)
	}
	n, size := 0, 0
	for n < 10 {
		ev, err := stream.Recv()
		if err != nil {
			panic(err)
		}
		if a, ok := ev.(mediastream.AudioChunk); ok {
			n, size = n+1, len(a.Data)
		}
	}
	stream.Cancel()
	reason := "none"
	var rpcErr *mediastream.RPCError
	_, err = client.Listen(ctx, mediastream.Config{CallID: "no-such-call"})
	if errors.As(err, &rpcErr) {
		reason = rpcErr.Reason
	}
	fmt.Printf("chunks=%d bytes=%d error=%s\\n", n, size, reason)
}
"""

TS_PROGRAM = """
import { AudioFormat, MediaStreamClient, RPCError } from "@voipbin/mediastream";

const [address, callId] = process.argv.slice(2);
const client = new MediaStreamClient(address);
let n = 0, size = 0;
const stream = await client.listen({ callId, format: AudioFormat.SLIN });
for await (const ev of stream) {
  if (ev.kind === "audio") { n += 1; size = ev.data.length; }
  if (n === 10) break;
}
stream.cancel();
let reason = "none";
try {
  await client.listen({ callId: "no-such-call" });
} catch (e) {
  if (e instanceof RPCError) reason = e.reason;
}
console.log(`chunks=${n} bytes=${size} error=${reason}`);
client.close();
"""


def _run(cmd: list[str], cwd: Path, timeout: float = 300, **env: str) -> str:
    """Run one step of an install; fail the test with its output if it fails."""
    result = subprocess.run(
        cmd,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **env},
        check=False,
    )
    assert result.returncode == 0, (
        f"{' '.join(cmd)} exited {result.returncode}\n{result.stdout}\n{result.stderr}"
    )
    return result.stdout


def _outside_env() -> dict[str, str]:
    """The environment of a user's shell: not this repository's virtualenv."""
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    venv_bin = str(Path(sys.prefix) / "bin")
    env["PATH"] = os.pathsep.join(p for p in env["PATH"].split(os.pathsep) if p != venv_bin)
    return env


def _needs(tool: str) -> None:
    if shutil.which(tool) is None:
        pytest.skip(f"{tool} is not installed (make sdk-setup's tools)")


def test_python_pip_install_from_checkout(tmp_path: Path, gateway: RunningGateway) -> None:
    # A fresh virtualenv (the interpreter's own venv module, as a user would) and
    # `pip install <path>`, then the program run by that environment's python.
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", str(venv)], tmp_path)
    python = str(venv / "bin" / "python")
    _run([python, "-m", "pip", "install", "-q", str(SDK / "python")], tmp_path)
    (tmp_path / "main.py").write_text(PYTHON_PROGRAM)
    out = _run([python, "main.py", gateway.grpc, TONE_CALL_ID], tmp_path, timeout=60)
    assert out.strip() == EXPECTED


def test_python_uv_add_from_checkout(tmp_path: Path, gateway: RunningGateway) -> None:
    # `uv run` names itself in $UV; otherwise the one on PATH.
    uv_bin = os.environ.get("UV") or shutil.which("uv")
    if uv_bin is None:
        pytest.skip("uv is not installed")
    uv = [uv_bin]
    project = tmp_path / "app"
    project.mkdir()
    env = _outside_env()
    for cmd in (
        [*uv, "init", "--quiet", "--bare", "--name", "app", "--python", sys.executable],
        [*uv, "add", "--quiet", "--python", sys.executable, str(SDK / "python")],
    ):
        result = subprocess.run(cmd, cwd=project, env=env, capture_output=True, text=True)
        assert result.returncode == 0, f"{cmd}: {result.stdout}\n{result.stderr}"
    assert "voipbin-mediastream-client" in (project / "pyproject.toml").read_text()
    (project / "main.py").write_text(PYTHON_PROGRAM)
    result = subprocess.run(
        [*uv, "run", "--quiet", "python", "main.py", gateway.grpc, TONE_CALL_ID],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == EXPECTED


@pytest.mark.parametrize("how", ["replace", "go-work"])
def test_go_from_checkout(tmp_path: Path, gateway: RunningGateway, how: str) -> None:
    _needs("go")
    app = tmp_path / "app"
    app.mkdir()
    (app / "main.go").write_text(GO_PROGRAM)
    _run(["go", "mod", "init", "example.com/app"], app)
    sdk = str(SDK / "go")
    if how == "replace":
        # The README's steps: point the module path at the checkout, then tidy.
        _run(["go", "mod", "edit", f"-replace={GO_MODULE}={sdk}"], app)
        _run(["go", "mod", "edit", f"-require={GO_MODULE}@v0.0.0"], app)
        _run(["go", "mod", "tidy"], app)
        assert f"{GO_MODULE} => {sdk}" in (app / "go.mod").read_text()
    else:
        # A workspace beside the app: no change to the app's go.mod.
        _run(["go", "work", "init", str(app), sdk], tmp_path)
    out = _run(["go", "run", ".", gateway.grpc, TONE_CALL_ID], app, timeout=300)
    assert out.strip() == EXPECTED


def test_typescript_npm_install_from_checkout(tmp_path: Path, gateway: RunningGateway) -> None:
    _needs("npm")
    # A checkout as a user has it: no node_modules or dist in sdk/typescript.
    sdk = tmp_path / "checkout" / "typescript"
    shutil.copytree(SDK / "typescript", sdk, ignore=shutil.ignore_patterns("node_modules", "dist"))
    app = tmp_path / "app"
    app.mkdir()
    _run(["npm", "init", "-y"], app)
    _run(["npm", "pkg", "set", "type=module"], app)
    _run(["npm", "install", "--no-audit", "--no-fund", str(sdk)], app)
    # `prepare` built the package: JavaScript and its types.
    assert (sdk / "dist" / "src" / "index.js").is_file()
    assert (sdk / "dist" / "src" / "index.d.ts").is_file()
    (app / "main.mjs").write_text(TS_PROGRAM)
    out = _run(["node", "main.mjs", gateway.grpc, TONE_CALL_ID], app, timeout=60)
    assert out.strip() == EXPECTED


def test_typescript_npm_pack_holds_built_files_and_types(tmp_path: Path) -> None:
    _needs("npm")
    sdk = tmp_path / "typescript"
    shutil.copytree(SDK / "typescript", sdk, ignore=shutil.ignore_patterns("node_modules", "dist"))
    out = _run(["npm", "pack", "--silent", "--pack-destination", str(tmp_path)], sdk)
    with tarfile.open(tmp_path / out.strip().splitlines()[-1]) as tar:
        names = set(tar.getnames())
    for entry in ("index", "browser", "client", "errors", "types"):
        assert f"package/dist/src/{entry}.js" in names
        assert f"package/dist/src/{entry}.d.ts" in names
    # Tests and sources of the build are not shipped.
    assert not any(n.startswith("package/dist/test/") for n in names)
