"""Run a command with one gateway (embedded Asterisk) for every SDK's tests.

    python tests/conformance/with_gateway.py -- COMMAND [ARG...]

Starts `mediastream serve` on a free port, waits for its JSON ready line, runs
COMMAND with MEDIASTREAM_READY set to that line (the Go, TypeScript and Python
runners then use this gateway instead of starting their own), stops the
gateway, and exits with COMMAND's exit code.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.conftest import start_gateway, stop_gateway  # noqa: E402


def main(argv: list[str]) -> int:
    if argv[:1] == ["--"]:
        argv = argv[1:]
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    gw = start_gateway()
    try:
        ready = {"grpc": gw.grpc, "ari_url": gw.ari_url, "demo": gw.demo, "websocket": gw.websocket}
        env = {**os.environ, "MEDIASTREAM_READY": json.dumps(ready)}
        print(f"gateway for the SDK tests: {gw.grpc}", flush=True)
        return subprocess.run(argv, env=env, check=False).returncode
    except KeyboardInterrupt:
        return 130
    finally:
        code = stop_gateway(gw)
        if code != 0:
            print(f"the gateway exited with {code}", file=sys.stderr)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
