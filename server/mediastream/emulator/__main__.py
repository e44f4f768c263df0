"""Run the emulator standalone: ``python -m mediastream.emulator --port 8088``."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Sequence

from mediastream.emulator import demo
from mediastream.emulator.server import Emulator, EmulatorConfig


async def _serve(config: EmulatorConfig) -> None:
    emulator = Emulator(config)
    await emulator.start()
    print(f"ARI: {emulator.ari_url} (user {config.username!r})", flush=True)
    print(
        f"events: ws://{config.host}:{emulator.port}/ari/events"
        f"?app=<app>&api_key={config.username}:<password>",
        flush=True,
    )
    if config.demo:
        print(f"demo tone call (440 Hz): {demo.TONE_CALL_ID}", flush=True)
        print(f"demo echo call:          {demo.ECHO_CALL_ID}", flush=True)
        print(f"demo DTMF call:          {demo.DTMF_CALL_ID}", flush=True)
        print(f"demo conference:         {demo.CONFERENCE_ID}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await emulator.stop()


def main(argv: Sequence[str] | None = None) -> int:
    """Parse arguments and run until interrupted."""
    parser = argparse.ArgumentParser(
        prog="python -m mediastream.emulator", description="Emulated Asterisk 23.4.1 (ARI)."
    )
    parser.add_argument("--host", default="127.0.0.1", help="listen address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8088, help="ARI HTTP port (default 8088)")
    parser.add_argument("--username", default="asterisk")
    parser.add_argument("--password", default="asterisk")
    parser.add_argument("--rtp-start", type=int, default=20000, help="first RTP port")
    parser.add_argument("--rtp-end", type=int, default=20999, help="last RTP port")
    parser.add_argument("--no-demo", action="store_true", help="do not create the demo calls")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO)
    config = EmulatorConfig(
        host=args.host,
        port=args.port,
        username=args.username,
        password=args.password,
        rtp_port_start=args.rtp_start,
        rtp_port_end=args.rtp_end,
        demo=not args.no_demo,
    )
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(config))
    return 0


if __name__ == "__main__":
    sys.exit(main())
