"""Command line: ``mediastream serve``."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Coroutine, Sequence
from typing import Any

from mediastream import config, logs
from mediastream.app import Gateway
from mediastream.workers import Supervisor, worker_role_from_env


def _run(main: Coroutine[Any, Any, None], event_loop: str) -> None:
    """Run `main` on the configured event loop (uvloop: a quarter of the loop's CPU)."""
    if event_loop != "asyncio":
        try:
            import uvloop
        except ImportError:
            if event_loop == "uvloop":
                main.close()
                raise SystemExit(
                    "mediastream: event_loop is uvloop but uvloop is not installed"
                ) from None
        else:
            uvloop.run(main)
            return
    asyncio.run(main)


def _supervise(settings: config.Settings) -> int:
    async def main() -> None:
        supervisor = Supervisor(settings)
        try:
            ready = await supervisor.start()
        except BaseException:
            await supervisor.stop()
            raise
        if settings.embedded:
            ready["demo"] = _demo_ids()
        print(json.dumps(ready), flush=True)
        await supervisor.run_until_signal()

    _run(main(), settings.event_loop)
    return 0


def _demo_ids() -> dict[str, str]:
    from mediastream.emulator import demo

    return {
        "tone_call": demo.TONE_CALL_ID,
        "echo_call": demo.ECHO_CALL_ID,
        "dtmf_call": demo.DTMF_CALL_ID,
        "conference": demo.CONFERENCE_ID,
    }


def _serve(settings: config.Settings) -> int:
    worker = worker_role_from_env(os.environ)
    if settings.workers > 1 and worker is None:
        return _supervise(settings)

    async def main() -> None:
        gateway = Gateway(settings, worker)
        endpoints = await gateway.start()
        ready: dict[str, object] = {
            "event": "ready",
            "grpc": endpoints.grpc,
            "ari_url": endpoints.ari_url,
            "embedded_asterisk": endpoints.embedded,
            "metrics": endpoints.metrics,
            "websocket": endpoints.websocket,
        }
        if endpoints.embedded:
            ready["demo"] = _demo_ids()
        # One JSON line on stdout: scripts and tests wait for it.
        print(json.dumps(ready), flush=True)
        await gateway.run_until_signal()

    _run(main(), settings.event_loop)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``mediastream`` command."""
    parser = argparse.ArgumentParser(prog="mediastream", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the gateway (embedded Asterisk by default)")
    config.add_arguments(serve)
    serve.add_argument(
        "--check-config", action="store_true", help="validate the settings, print them and exit"
    )
    args = parser.parse_args(argv)
    try:
        settings = config.load(args)
    except config.ConfigError as exc:
        print(f"mediastream: configuration error: {exc}", file=sys.stderr)
        return 2
    logs.configure(settings.log_level, settings.log_format)
    if args.check_config:
        print(settings)
        return 0
    return _serve(settings)


if __name__ == "__main__":
    raise SystemExit(main())
