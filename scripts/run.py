"""`make run`: start the gateway on its embedded Asterisk and show audio flowing.

Starts `mediastream serve`, records 5 s of the demo tone call through the
Python SDK into out/tone.wav, prints its length, level and dominant frequency,
then keeps serving until Ctrl-C (or exits at once with --once).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np

from mediastream_client.cli import record
from mediastream_client.types import AudioFormat
from mediastream_client.wav import level_dbfs

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--once", action="store_true", help="stop after the demo recording")
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    server = subprocess.Popen(
        [sys.executable, "-m", "mediastream.cli", "serve"],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert server.stdout is not None
        line = server.stdout.readline()
        if not line:
            print("the gateway did not start; see the log above", file=sys.stderr)
            return 1
        ready = json.loads(line)
        websocket = f", WebSocket on {ready['websocket']}" if ready.get("websocket") else ""
        print(
            f"gateway ready: gRPC on {ready['grpc']}{websocket}, Asterisk: "
            f"{'embedded emulator' if ready['embedded_asterisk'] else ready['ari_url']}"
        )
        if ready.get("websocket"):
            print(f"  listen-in page: http://{ready['websocket']}/ui/")
        for name, ident in ready.get("demo", {}).items():
            print(f"  demo {name:<11} {ident}")
        out = ROOT / "out"
        out.mkdir(exist_ok=True)
        wav = out / "tone.wav"
        pcm = asyncio.run(
            record(
                ready["grpc"],
                ready["demo"]["tone_call"],
                None,
                args.seconds,
                AudioFormat.SLIN,
                str(wav),
            )
        )
        samples = np.frombuffer(pcm, "<i2").astype(np.float64)
        spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
        peak_hz = np.fft.rfftfreq(len(samples), 1 / 8000)[int(np.argmax(spectrum))]
        print(
            f"recorded {wav.relative_to(ROOT)}: {len(samples) / 8000:.2f} s, "
            f"level {level_dbfs(pcm):.1f} dBFS, dominant frequency {peak_hz:.0f} Hz"
        )
        if args.once:
            return 0
        print("serving; Ctrl-C to stop")
        server.wait()
        return server.returncode
    except KeyboardInterrupt:
        return 0
    finally:
        if server.poll() is None:
            server.send_signal(signal.SIGTERM)
            try:
                server.wait(10)
            except subprocess.TimeoutExpired:
                server.kill()


if __name__ == "__main__":
    raise SystemExit(main())
